#include "halfserve/import/tf_graph.h"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <map>
#include <set>

#include "halfserve/import/tf_checkpoint.h"
#include "halfserve/util/error.h"
#include "halfserve/util/mapped_file.h"
#include "import/tf_tensor_proto.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/protobuf/saved_model.pb.h"

namespace halfserve {

namespace fs = std::filesystem;

namespace {

// protobuf cannot parse messages of 2 GiB or more.
constexpr size_t kMaxProtobufBytes = (size_t{2} << 30) - 1;
// How far role inference follows the graph from a signature tensor.
constexpr size_t kMaxNodesVisited = 20000;

std::string node_of(const std::string& tensor) {
  std::string name = tensor;
  if (!name.empty() && name[0] == '^') name.erase(0, 1);
  const auto colon = name.find(':');
  return colon == std::string::npos ? name : name.substr(0, colon);
}

bool contains(const std::string& text, const std::string& fragment) { return text.find(fragment) != std::string::npos; }

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

template <typename Message>
Message parse_protobuf_file(const std::string& path, const std::string& what) {
  const std::string bytes = read_file_bounded(path, kMaxProtobufBytes);
  Message message;
  if (!message.ParseFromString(bytes)) throw Error(path + ": not a valid " + what + " (protobuf parse failed)");
  return message;
}

void check_graph(const tensorflow::GraphDef& graph, const std::string& path, const std::string& what) {
  if (graph.node_size() == 0) throw Error(path + ": not a " + what + " (no graph nodes)");
  for (const auto& node : graph.node())
    if (node.name().empty() || node.op().empty()) throw Error(path + ": not a " + what + " (a node without name or op)");
}

TfTensorBinding binding(const std::string& alias, const tensorflow::TensorInfo& info) {
  TfTensorBinding result{alias, info.name(), tf_dtype_name(info.dtype()), {}};
  for (const auto& dim : info.tensor_shape().dim()) result.shape.push_back(dim.size());
  return result;
}

}  // namespace

struct TfGraphSource::State {
  std::string format;
  std::string path;
  tensorflow::GraphDef graph;
  std::map<std::string, const tensorflow::NodeDef*> nodes;
  std::map<std::string, std::vector<const tensorflow::NodeDef*>> consumers;
  std::map<std::string, const tensorflow::TensorProto*> constants;
  std::unique_ptr<TensorSource> variables;
  std::vector<SourceTensorInfo> infos;
  std::vector<std::string> tags;
  std::vector<TfSignatureDef> signatures;
  std::vector<std::string> notes;

  void index_graph() {
    for (const auto& node : graph.node()) {
      nodes[node.name()] = &node;
      for (const auto& input : node.input())
        if (input.empty() || input[0] != '^') consumers[node_of(input)].push_back(&node);
    }
    for (const auto& node : graph.node()) {
      if (node.op() != "Const") continue;
      const auto value = node.attr().find("value");
      if (value == node.attr().end() || !value->second.has_tensor()) continue;
      const auto& proto = value->second.tensor();
      const auto dtype = dtype_from_tf(proto.dtype());
      if (!dtype) continue;  // string constants and the like
      try {
        infos.push_back({node.name(), *dtype, shape_from_tf(proto.tensor_shape(), "constant " + node.name())});
        constants[node.name()] = &proto;
      } catch (const Error& e) {
        notes.push_back(std::string("skipped ") + e.what());
      }
    }
  }

  // The first embedding table read downstream of `start` (breadth first, so the nearest wins).
  std::string nearest_embedding(const std::string& start) const {
    std::deque<std::string> queue{start};
    std::set<std::string> seen{start};
    while (!queue.empty() && seen.size() < kMaxNodesVisited) {
      const std::string name = queue.front();
      queue.pop_front();
      const auto found = consumers.find(name);
      if (found == consumers.end()) continue;
      for (const tensorflow::NodeDef* consumer : found->second) {
        for (const auto& input : consumer->input()) {
          const std::string source = node_of(input);
          if (contains(source, "word_embeddings")) return "word_embeddings";
          if (contains(source, "token_type_embeddings")) return "token_type_embeddings";
        }
        if (seen.insert(consumer->name()).second) queue.push_back(consumer->name());
      }
    }
    return "";
  }

  bool reaches_attention(const std::string& start) const {
    std::deque<std::string> queue{start};
    std::set<std::string> seen{start};
    while (!queue.empty() && seen.size() < kMaxNodesVisited) {
      const std::string name = queue.front();
      queue.pop_front();
      if (contains(name, "attention")) return true;
      const auto found = consumers.find(name);
      if (found == consumers.end()) continue;
      for (const tensorflow::NodeDef* consumer : found->second)
        if (seen.insert(consumer->name()).second) queue.push_back(consumer->name());
    }
    return false;
  }

  std::optional<InputRole> infer_input(const TfTensorBinding& input) const {
    const std::string node = node_of(input.tensor);
    if (!nodes.count(node)) return std::nullopt;
    const std::string table = nearest_embedding(node);
    if (table == "word_embeddings") return InputRole::input_ids;
    if (table == "token_type_embeddings") return InputRole::token_type_ids;
    if (reaches_attention(node)) return InputRole::attention_mask;
    const std::string names = lower(input.alias + " " + node);
    if (contains(names, "mask")) return InputRole::attention_mask;
    if (contains(names, "segment") || contains(names, "type")) return InputRole::token_type_ids;
    if (contains(names, "ids") || contains(names, "input")) return InputRole::input_ids;  // graph gave no answer
    return std::nullopt;
  }

  std::optional<OutputRole> infer_output(const TfTensorBinding& output) const {
    static const std::set<std::string> kPassThrough = {"Identity", "Reshape", "Cast", "Squeeze", "ExpandDims",
                                                       "StopGradient", "IdentityN", "Snapshot"};
    std::string name = node_of(output.tensor);
    for (int hops = 0; hops < 64; ++hops) {
      const auto found = nodes.find(name);
      if (found == nodes.end()) return std::nullopt;
      const tensorflow::NodeDef& node = *found->second;
      if (node.op() == "ArgMax") return OutputRole::label_ids;
      if (node.op() == "Softmax") return OutputRole::probabilities;
      if (!kPassThrough.count(node.op()) || node.input_size() == 0) {
        if (name.rfind("bert/encoder/", 0) == 0) return OutputRole::last_hidden_state;
        if (name.rfind("bert/pooler/", 0) == 0 || name.rfind("bert/embeddings/", 0) == 0) return std::nullopt;
        if (node.op() == "MatMul" || node.op() == "BiasAdd" || node.op() == "Add" || node.op() == "AddV2" ||
            node.op() == "Einsum" || node.op() == "BatchMatMulV2")
          return OutputRole::logits;
        return std::nullopt;
      }
      name = node_of(node.input(0));
    }
    return std::nullopt;
  }
};

TfGraphSource::TfGraphSource(std::unique_ptr<State> state) : state_(std::move(state)) {}
TfGraphSource::~TfGraphSource() = default;

std::string TfGraphSource::format() const { return state_->format; }
const std::vector<SourceTensorInfo>& TfGraphSource::tensors() const { return state_->infos; }
std::vector<std::string> TfGraphSource::notes() const { return state_->notes; }
const std::vector<std::string>& TfGraphSource::tags() const { return state_->tags; }
const std::vector<TfSignatureDef>& TfGraphSource::signature_defs() const { return state_->signatures; }

LoadedTensor TfGraphSource::read(const std::string& name) {
  const auto constant = state_->constants.find(name);
  if (constant != state_->constants.end())
    return decode_tensor_proto(*constant->second, state_->path + ": constant " + name);
  if (state_->variables) return state_->variables->read(name);
  throw Error(state_->path + ": no tensor named " + name);
}

Signature TfGraphSource::map_signature(const TfSignatureDef& definition) const {
  Signature signature;
  signature.name = definition.name;
  signature.method_name = definition.method_name.empty() ? "tensorflow/serving/predict" : definition.method_name;
  for (const auto& input : definition.inputs) {
    const auto role = state_->infer_input(input);
    if (!role)
      throw Error(state_->path + ": signature '" + definition.name + "': cannot tell what input '" + input.alias + "' (" +
                  input.tensor + ") feeds: it reaches neither the word or token-type embedding lookup nor the attention");
    for (const auto& [name, existing] : signature.inputs)
      if (existing == *role)
        throw Error(state_->path + ": signature '" + definition.name + "': inputs '" + name + "' and '" + input.alias +
                    "' both map to " + std::string(input_role_name(*role)));
    signature.inputs.emplace_back(input.alias, *role);
  }
  for (const auto& output : definition.outputs) {
    const auto role = state_->infer_output(output);
    if (!role)
      throw Error(state_->path + ": signature '" + definition.name + "': cannot map output '" + output.alias + "' (" +
                  output.tensor + ") to logits, label ids, probabilities or the encoder output");
    signature.outputs.emplace_back(output.alias, *role);
  }
  if (!signature.input_name(InputRole::input_ids))
    throw Error(state_->path + ": signature '" + definition.name + "' has no input that feeds the word-embedding lookup");
  return signature;
}

std::optional<int64_t> TfGraphSource::attention_heads(int64_t hidden) const {
  const auto scalar = [&](const std::string& input) -> std::optional<int64_t> {
    const auto found = state_->nodes.find(node_of(input));
    if (found == state_->nodes.end() || found->second->op() != "Const") return std::nullopt;
    const auto value = found->second->attr().find("value");
    if (value == found->second->attr().end() || !value->second.has_tensor()) return std::nullopt;
    const auto& proto = value->second.tensor();
    if (proto.int_val_size() == 1) return proto.int_val(0);
    if (proto.int64_val_size() == 1) return proto.int64_val(0);
    return std::nullopt;
  };
  for (const auto& node : state_->graph.node()) {
    if (node.op() != "Reshape" || node.input_size() < 2 || node.name().find("layer_0/attention/self") == std::string::npos)
      continue;
    const auto shape = state_->nodes.find(node_of(node.input(1)));
    if (shape == state_->nodes.end()) continue;
    std::vector<int64_t> dims;
    if (shape->second->op() == "Pack" && shape->second->input_size() == 4) {
      for (const auto& input : shape->second->input()) dims.push_back(scalar(input).value_or(-1));
    } else if (shape->second->op() == "Const") {
      const auto value = shape->second->attr().find("value");
      // A shape has 4 entries: anything else is not the attention reshape, and is never decoded.
      if (value != shape->second->attr().end() && value->second.has_tensor() &&
          shape_numel(shape_from_tf(value->second.tensor().tensor_shape(), "shape constant")) == 4) {
        const LoadedTensor constant = decode_tensor_proto(value->second.tensor(), "shape constant");
        if (constant.view.dtype == DType::i32 && constant.view.numel() == 4)
          for (int64_t i = 0; i < 4; ++i) dims.push_back(reinterpret_cast<const int32_t*>(constant.view.data.data())[i]);
      }
    }
    if (dims.size() == 4 && dims[2] > 0 && dims[3] > 0 && dims[2] * dims[3] == hidden) return dims[2];
  }
  return std::nullopt;
}

std::unique_ptr<TfGraphSource> open_saved_model(const std::string& path, const std::string& tags) {
  const fs::path folder = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  const fs::path pb = folder / "saved_model.pb";
  if (!fs::exists(pb)) throw Error(path + ": no saved_model.pb (a SavedModel folder holds saved_model.pb and variables/)");
  auto saved_model = parse_protobuf_file<tensorflow::SavedModel>(pb.string(), "SavedModel");
  if (saved_model.meta_graphs_size() == 0) throw Error(pb.string() + ": not a SavedModel (no MetaGraph)");

  std::set<std::string> wanted;
  for (size_t start = 0; start <= tags.size();) {
    const size_t end = std::min(tags.find(',', start), tags.size());
    if (end > start) wanted.insert(tags.substr(start, end - start));
    start = end + 1;
  }
  tensorflow::MetaGraphDef* chosen = nullptr;
  std::string available;
  for (auto& meta_graph : *saved_model.mutable_meta_graphs()) {
    const auto& have = meta_graph.meta_info_def().tags();
    available += (available.empty() ? "" : "; ") + std::string("{");
    for (int i = 0; i < have.size(); ++i) available += (i ? "," : "") + have[i];
    available += "}";
    if (std::all_of(wanted.begin(), wanted.end(), [&](const std::string& tag) {
          return std::find(have.begin(), have.end(), tag) != have.end();
        }) && chosen == nullptr)
      chosen = &meta_graph;
  }
  if (chosen == nullptr && saved_model.meta_graphs_size() == 1) chosen = saved_model.mutable_meta_graphs(0);
  if (chosen == nullptr) throw Error(pb.string() + ": no MetaGraph with tags '" + tags + "' (available: " + available + ")");

  auto state = std::make_unique<TfGraphSource::State>();
  state->format = "saved-model";
  state->path = folder.string();
  state->graph.Swap(chosen->mutable_graph_def());
  check_graph(state->graph, pb.string(), "SavedModel graph");
  for (const auto& tag : chosen->meta_info_def().tags()) state->tags.push_back(tag);
  std::map<std::string, TfSignatureDef> ordered;  // protobuf maps have no order; sort by name
  for (const auto& [name, definition] : chosen->signature_def()) {
    TfSignatureDef signature{name, definition.method_name(), {}, {}};
    for (const auto& [alias, info] : definition.inputs()) signature.inputs.push_back(binding(alias, info));
    for (const auto& [alias, info] : definition.outputs()) signature.outputs.push_back(binding(alias, info));
    auto by_alias = [](const TfTensorBinding& a, const TfTensorBinding& b) { return a.alias < b.alias; };
    std::sort(signature.inputs.begin(), signature.inputs.end(), by_alias);
    std::sort(signature.outputs.begin(), signature.outputs.end(), by_alias);
    ordered[name] = std::move(signature);
  }
  for (auto& [name, signature] : ordered) state->signatures.push_back(std::move(signature));
  state->index_graph();

  const fs::path variables = folder / "variables" / "variables";
  if (fs::exists(variables.string() + ".index")) {
    state->variables = open_tf_checkpoint(variables.string());
    for (const auto& info : state->variables->tensors())
      if (!state->constants.count(info.name)) state->infos.push_back(info);
    for (const auto& note : state->variables->notes()) state->notes.push_back(note);
  } else {
    state->notes.push_back("no variables/ folder: weights come from the graph's constants");
  }
  return std::unique_ptr<TfGraphSource>(new TfGraphSource(std::move(state)));
}

std::unique_ptr<TfGraphSource> open_graphdef(const std::string& path) {
  auto state = std::make_unique<TfGraphSource::State>();
  state->format = "graphdef";
  state->path = path;
  state->graph = parse_protobuf_file<tensorflow::GraphDef>(path, "GraphDef");
  check_graph(state->graph, path, "GraphDef");
  state->index_graph();
  return std::unique_ptr<TfGraphSource>(new TfGraphSource(std::move(state)));
}

bool is_saved_model(const std::string& path) {
  return fs::is_directory(path) ? fs::exists(fs::path(path) / "saved_model.pb")
                                : fs::path(path).filename() == "saved_model.pb";
}

bool is_graphdef(const std::string& path) {
  if (!fs::is_regular_file(path) || fs::file_size(path) > kMaxProtobufBytes) return false;
  try {
    const auto graph = parse_protobuf_file<tensorflow::GraphDef>(path, "GraphDef");
    check_graph(graph, path, "GraphDef");
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace halfserve

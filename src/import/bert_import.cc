#include "import/bert_import.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <regex>
#include <set>

#include "halfserve/import/label_names.h"
#include "halfserve/format/bert_tensors.h"
#include "halfserve/format/vocabulary.h"
#include "halfserve/util/error.h"
#include "halfserve/version.h"
#include "import/model_config.h"

namespace halfserve {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTf2Suffix = "/.ATTRIBUTES/VARIABLE_VALUE";

// Where a canonical tensor comes from.
struct SourceBinding {
  std::string source_name;
  bool transpose = false;  // TF kernels are [in, out]; the frozen file stores [out, in]
};

std::string strip_tf2_suffix(const std::string& name) {
  const size_t length = std::strlen(kTf2Suffix);
  return name.size() > length && name.ends_with(kTf2Suffix) ? name.substr(0, name.size() - length) : name;
}

// Training state a model never uses.
bool is_training_state(const std::string& name) {
  static const std::vector<std::string> kMarkers = {"adam_m", "adam_v", "/Adam", "Momentum", "global_step", "beta1_power",
                                                    "beta2_power", "_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter",
                                                    "OPTIMIZER_SLOT", "ExponentialMovingAverage", "/RMSProp",
                                                    "/Adagrad", "_power", "/LAMB", "/lamb_"};
  return std::any_of(kMarkers.begin(), kMarkers.end(), [&](const std::string& marker) { return name.find(marker) != std::string::npos; });
}

// "bert/encoder/layer_3/attention/self/query/kernel" -> bert.encoder.layer.3.attention.self.query.weight.
std::optional<SourceBinding> canonical_from_tf(const std::string& source_name, std::string& canonical) {
  const std::string name = strip_tf2_suffix(source_name);
  if (name.rfind("bert/", 0) != 0) return std::nullopt;
  static const std::regex kLayer(R"(^layer_(\d+)$)");
  std::string result;
  bool transpose = false;
  size_t start = 0;
  std::vector<std::string> parts;
  while (start <= name.size()) {
    const size_t end = std::min(name.find('/', start), name.size());
    parts.push_back(name.substr(start, end - start));
    start = end + 1;
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string part = parts[i];
    std::smatch match;
    if (std::regex_match(part, match, kLayer)) part = "layer." + match[1].str();
    if (i + 1 == parts.size()) {
      if (part == "kernel") part = "weight", transpose = true;
      else if (part == "gamma") part = "weight";
      else if (part == "beta") part = "bias";
      else if (part.ends_with("_embeddings")) part += ".weight";
    }
    result += (result.empty() ? "" : ".") + part;
  }
  canonical = result;
  return SourceBinding{source_name, transpose};
}

// "encoder.layer.0.attention.self.query.weight" or with "bert." -> canonical, unchanged layout.
std::optional<SourceBinding> canonical_from_hf(const std::string& source_name, std::string& canonical) {
  if (source_name.rfind("classifier.", 0) == 0) {
    canonical = source_name;
    return SourceBinding{source_name, false};
  }
  const std::string stripped = source_name.rfind("bert.", 0) == 0 ? source_name.substr(5) : source_name;
  if (stripped.rfind("embeddings.", 0) != 0 && stripped.rfind("encoder.", 0) != 0) return std::nullopt;
  canonical = "bert." + stripped;
  return SourceBinding{source_name, false};
}

bool uses_tf_names(const TensorSource& source) {
  return std::any_of(source.tensors().begin(), source.tensors().end(),
                     [](const SourceTensorInfo& info) { return strip_tf2_suffix(info.name).rfind("bert/embeddings/", 0) == 0; });
}

struct HeadCandidate {
  std::string scope;
  SourceBinding weight, bias;
  int64_t labels = 0;
};

std::string scope_of(const std::string& name) {
  const std::string stripped = strip_tf2_suffix(name);
  const auto slash = stripped.rfind('/');
  return slash == std::string::npos ? "" : stripped.substr(0, slash);
}

// A dense layer [hidden, labels] (or [labels, hidden] output_weights) with its bias, in one scope.
std::optional<HeadCandidate> head_in_scope(const std::vector<const SourceTensorInfo*>& tensors, const std::string& scope,
                                           int64_t hidden) {
  std::vector<const SourceTensorInfo*> matrices, vectors;
  for (const auto* info : tensors) {
    if (!is_floating(info->dtype)) continue;
    if (info->shape.size() == 2) matrices.push_back(info);
    if (info->shape.size() == 1) vectors.push_back(info);
  }
  if (matrices.size() != 1) return std::nullopt;
  const SourceTensorInfo& matrix = *matrices.front();
  const std::string leaf = strip_tf2_suffix(matrix.name).substr(scope.empty() ? 0 : scope.size() + 1);
  // TF dense kernels are [in, out]; google-research classifiers' output_weights are [labels, hidden].
  const bool transposed_layout = leaf.find("output_weights") != std::string::npos || leaf.find("weight") == 0;
  const int64_t in = transposed_layout ? matrix.shape[1] : matrix.shape[0];
  const int64_t out = transposed_layout ? matrix.shape[0] : matrix.shape[1];
  if (in != hidden) return std::nullopt;
  for (const auto* vector : vectors)
    if (vector->shape[0] == out) return HeadCandidate{scope, {matrix.name, !transposed_layout}, {vector->name, false}, out};
  return std::nullopt;
}

TensorView transposed(const TensorView& matrix, std::shared_ptr<const void>& owner) {
  const std::vector<float> values = matrix.to_float();
  const int64_t rows = matrix.shape[0], cols = matrix.shape[1];
  auto result = std::make_shared<std::vector<float>>(values.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) (*result)[static_cast<size_t>(c * rows + r)] = values[static_cast<size_t>(r * cols + c)];
  owner = result;
  return TensorView{DType::f32, {cols, rows},
                    std::span<const std::byte>(reinterpret_cast<const std::byte*>(result->data()), result->size() * sizeof(float))};
}

// BERT-large has 24 layers; a name claiming more than this is a broken or hostile file, refused before anything is
// sized by it.
constexpr int64_t kMaxLayers = 1024;

int64_t count_layers(const std::string& path, const std::map<std::string, SourceBinding>& bindings) {
  static const std::regex kLayer(R"(^bert\.encoder\.layer\.(\d+)\.)");
  int64_t layers = 0;
  for (const auto& [name, binding] : bindings) {
    std::smatch match;
    if (!std::regex_search(name, match, kLayer)) continue;
    const std::string digits = match[1].str();
    if (digits.size() > 4 || std::stoll(digits) >= kMaxLayers)
      throw Error(path + ": tensor " + binding.source_name + " names encoder layer " + digits + "; at most " +
                  std::to_string(kMaxLayers) + " layers are supported");
    layers = std::max<int64_t>(layers, std::stoll(digits) + 1);
  }
  return layers;
}

// The tensor's shape, which must have `rank` dimensions: a scalar where a table belongs is a clear error, never a
// read past the end of the shape.
const Shape& shape_of_rank(const std::string& path, const SourceTensorInfo& info, size_t rank) {
  if (info.shape.size() != rank)
    throw Error(path + ": tensor " + info.name + " has shape " + shape_string(info.shape) + ", expected " +
                std::to_string(rank) + " dimensions");
  return info.shape;
}

// What an import has found so far: each stage below reads it and adds to it.
struct Import {
  TensorSource& source;
  const std::string& path;
  const ImportOptions& options;
  FrozenModel model;
  std::vector<std::string>& notes = model.metadata.provenance.notes;
  bool tf_names = false;
  std::map<std::string, const SourceTensorInfo*> infos;  // source name -> its shape and dtype
  std::map<std::string, SourceBinding> bindings;          // canonical name -> where it comes from
  std::map<std::string, int> dropped;                     // category -> count
  std::vector<const SourceTensorInfo*> others;            // TF tensors outside the encoder: head candidates
  int64_t hidden = 0;
  std::optional<HeadCandidate> head;
  std::optional<fs::path> config_path;

  Import(TensorSource& source, const std::string& path, const ImportOptions& options)
      : source(source), path(path), options(options) {}

  const Shape& shape_of(const std::string& canonical, size_t rank) const {
    const auto it = bindings.find(canonical);
    if (it == bindings.end()) throw Error(path + ": missing tensor for " + canonical);
    return shape_of_rank(path, *infos.at(it->second.source_name), rank);
  }
};

// Stage 1: canonical names for the encoder's tensors; everything else is a head candidate or dropped.
void map_tensor_names(Import& in) {
  for (const auto& note : in.source.notes()) in.notes.push_back(note);
  in.tf_names = uses_tf_names(in.source);
  for (const auto& info : in.source.tensors()) in.infos[info.name] = &info;
  for (const auto& info : in.source.tensors()) {
    if (is_training_state(info.name)) {
      ++in.dropped["optimizer and training state"];
      continue;
    }
    std::string canonical;
    const auto binding = in.tf_names ? canonical_from_tf(info.name, canonical) : canonical_from_hf(info.name, canonical);
    if (binding && !canonical.starts_with("classifier.")) {
      if (canonical.find(".pooler.") != std::string::npos) {
        ++in.dropped["pooler"];
        continue;
      }
      if (in.bindings.count(canonical))
        throw Error(in.path + ": tensors " + in.bindings[canonical].source_name + " and " + info.name + " both map to " +
                    canonical);
      in.bindings[canonical] = *binding;
    } else if (binding) {
      in.bindings[canonical] = *binding;
    } else if (info.name.rfind("cls/", 0) == 0 || info.name.rfind("cls.", 0) == 0) {
      ++in.dropped["pre-training heads (cls)"];
    } else if (info.name.find("pooler") != std::string::npos) {
      ++in.dropped["pooler"];
    } else if (!in.tf_names) {
      ++in.dropped["tensors outside the encoder and classifier"];  // Hugging Face heads are classifier.* only
    } else {
      in.others.push_back(&info);
    }
  }
  const std::string word = bert_names::embedding("word_embeddings");
  if (!in.bindings.count(word))
    throw Error(in.path + ": no BERT word-embedding table found (expected bert/embeddings/word_embeddings or "
                "[bert.]embeddings.word_embeddings.weight among " + std::to_string(in.source.tensors().size()) + " tensors)");
  in.hidden = shape_of_rank(in.path, *in.infos.at(in.bindings[word].source_name), 2)[1];
}

// A TF graph's head: the --head scope, or the single dense [hidden, labels] layer outside the encoder.
std::optional<HeadCandidate> find_tf_head(Import& in, const std::map<std::string, std::vector<const SourceTensorInfo*>>& by_scope) {
  if (!in.options.head_scope.empty()) {
    std::vector<const SourceTensorInfo*> in_scope;
    for (const auto& [scope, tensors] : by_scope)
      if (scope == in.options.head_scope || scope.rfind(in.options.head_scope + "/", 0) == 0)
        in_scope.insert(in_scope.end(), tensors.begin(), tensors.end());
    auto head = head_in_scope(in_scope, in.options.head_scope, in.hidden);
    if (!head)
      throw Error(in.path + ": --head " + in.options.head_scope + ": no single dense layer [" + std::to_string(in.hidden) +
                  ", labels] with its bias under that scope (" + std::to_string(in_scope.size()) + " tensors there)");
    head->scope = in.options.head_scope;
    return head;
  }
  std::vector<HeadCandidate> candidates;
  for (const auto& [scope, tensors] : by_scope)
    if (auto candidate = head_in_scope(tensors, scope, in.hidden)) candidates.push_back(*candidate);
  if (candidates.size() > 1) {
    std::string scopes;
    for (const auto& candidate : candidates) scopes += (scopes.empty() ? "" : ", ") + candidate.scope;
    throw Error(in.path + ": several dense layers could be the token head (" + scopes + "); choose one with --head SCOPE");
  }
  if (candidates.empty()) return std::nullopt;
  in.notes.push_back("token head found automatically: " + candidates.front().scope + " (" +
                     std::to_string(candidates.front().labels) + " labels)");
  return candidates.front();
}

// Stage 2: the token head — classifier.*, or one found in a TF graph — and the notes on what was dropped.
void find_head(Import& in) {
  using bert_names::kClassifierBias, bert_names::kClassifierWeight;
  if (in.bindings.count(kClassifierWeight)) {
    if (!in.bindings.count(kClassifierBias)) throw Error(in.path + ": classifier.weight without classifier.bias");
    in.head = HeadCandidate{"classifier", in.bindings[kClassifierWeight], in.bindings[kClassifierBias],
                            shape_of_rank(in.path, *in.infos.at(in.bindings[kClassifierWeight].source_name), 2)[0]};
    in.bindings.erase(kClassifierWeight);
    in.bindings.erase(kClassifierBias);
  } else {
    std::map<std::string, std::vector<const SourceTensorInfo*>> by_scope;
    for (const auto* info : in.others) by_scope[scope_of(info->name)].push_back(info);
    in.head = find_tf_head(in, by_scope);
    if (in.head)
      for (const auto* info : by_scope[in.head->scope])
        if (info->name != in.head->weight.source_name && info->name != in.head->bias.source_name)
          ++in.dropped["other tensors in the head scope"];
    for (const auto& [scope, tensors] : by_scope)
      if (!in.head || scope != in.head->scope) in.dropped["tensors outside the encoder and head"] += static_cast<int>(tensors.size());
  }
  if (!in.head) in.notes.push_back("no token head: encoder only (outputs last_hidden_state)");
  for (const auto& [category, count] : in.dropped) in.notes.push_back("dropped " + std::to_string(count) + " " + category);
}

// The number of attention heads: the config, the graph's attention reshape, or BERT's head size 64.
int64_t settle_heads(Import& in, const StatedConfig& stated, const TfGraphSource* graph, int64_t hidden_size) {
  if (stated.num_heads) return *stated.num_heads;
  if (const auto from_graph = graph != nullptr ? graph->attention_heads(hidden_size) : std::nullopt) {
    in.notes.push_back("num_heads " + std::to_string(*from_graph) + " read from the graph's attention reshape");
    return *from_graph;
  }
  if (hidden_size % 64 != 0)
    throw Error(in.path + ": the number of attention heads cannot be inferred from shapes (hidden " +
                std::to_string(hidden_size) + " is not a multiple of 64); give --config with num_attention_heads");
  in.notes.push_back("num_heads inferred as hidden/64 = " + std::to_string(hidden_size / 64) + " (BERT's head size 64)");
  return hidden_size / 64;
}

Activation settle_activation(Import& in, const StatedConfig& stated) {
  if (in.options.activation) return *in.options.activation;
  if (in.tf_names) {
    in.notes.push_back("google-research (TF) names: tanh-form GELU, as modeling.py computes it");
    return Activation::gelu_tanh;
  }
  const Activation activation = parse_activation(stated.hidden_act.value_or("gelu"));
  in.notes.push_back("activation from hidden_act '" + stated.hidden_act.value_or("gelu") + "': " +
                     std::string(activation_name(activation)));
  return activation;
}

// Stage 3: the architecture — the config file where there is one, the tensor shapes for the rest.
StatedConfig settle_architecture(Import& in, const std::vector<fs::path>& companions, const TfGraphSource* graph) {
  in.config_path = in.options.config_file.empty() ? find_beside(companions, {"config.json", "bert_config.json"})
                                                  : std::optional<fs::path>(in.options.config_file);
  StatedConfig stated = in.config_path ? read_stated_config(*in.config_path) : StatedConfig{};
  if (!in.config_path) in.notes.push_back("no config.json or bert_config.json: architecture inferred from tensor shapes");
  auto settle = [&](const char* field, const std::optional<int64_t>& from_config, int64_t from_shapes) {
    if (from_config) return *from_config;
    if (in.config_path)
      in.notes.push_back(std::string(field) + " not in the config: " + std::to_string(from_shapes) + " from tensor shapes");
    return from_shapes;
  };
  BertConfig& c = in.model.metadata.config;
  c.hidden_size = settle("hidden_size", stated.hidden_size, in.hidden);
  c.vocab_size = settle("vocab_size", stated.vocab_size, in.shape_of(bert_names::embedding("word_embeddings"), 2)[0]);
  c.max_positions = settle("max_positions", stated.max_positions, in.shape_of(bert_names::embedding("position_embeddings"), 2)[0]);
  c.type_vocab_size = settle("type_vocab_size", stated.type_vocab_size, in.shape_of(bert_names::embedding("token_type_embeddings"), 2)[0]);
  c.num_layers = settle("num_layers", stated.num_layers, count_layers(in.path, in.bindings));
  if (c.num_layers < 1 || c.num_layers > kMaxLayers)
    throw Error(in.path + ": " + std::to_string(c.num_layers) + " encoder layers; 1.." + std::to_string(kMaxLayers) +
                " are supported");
  const auto intermediate = in.bindings.find(bert_names::layer(0, "intermediate.dense.weight"));
  if (intermediate == in.bindings.end()) throw Error(in.path + ": no layer 0 intermediate dense weight");
  const Shape& intermediate_shape = shape_of_rank(in.path, *in.infos.at(intermediate->second.source_name), 2);
  c.intermediate_size = settle("intermediate_size", stated.intermediate_size,
                               intermediate->second.transpose ? intermediate_shape.at(1) : intermediate_shape.at(0));
  c.num_heads = settle_heads(in, stated, graph, c.hidden_size);
  c.layer_norm_eps = stated.layer_norm_eps.value_or(1e-12f);
  c.activation = settle_activation(in, stated);
  return stated;
}

// Stage 4: labels (--labels, id2label, or numbered) and the tokenizer (vocab.txt, tokenizer_config.json).
void read_labels_and_tokenizer(Import& in, const StatedConfig& stated, const std::vector<fs::path>& companions) {
  ModelMetadata& m = in.model.metadata;
  if (in.head) {
    const int64_t outputs = in.head->labels;
    if (!in.options.labels_file.empty()) {
      m.labels = read_labels_file(in.options.labels_file);
      if (static_cast<int64_t>(m.labels.size()) != outputs)
        throw Error(in.options.labels_file + ": " + std::to_string(m.labels.size()) + " labels but the head has " +
                    std::to_string(outputs) + " outputs");
    } else if (!stated.id2label.empty()) {
      if (static_cast<int64_t>(stated.id2label.size()) != outputs)
        throw Error(stated.path + ": id2label has " + std::to_string(stated.id2label.size()) + " labels but the head has " +
                    std::to_string(outputs) + " outputs");
      for (const auto& name : stated.id2label) m.labels.push_back(label_for_name(name));
    } else {
      for (int64_t i = 0; i < outputs; ++i) m.labels.push_back({"LABEL_" + std::to_string(i), ""});
      in.notes.push_back("labels unknown: numbered LABEL_0..LABEL_" + std::to_string(outputs - 1) +
                         " with no punctuation marks (give --labels FILE)");
    }
  } else if (!in.options.labels_file.empty()) {
    throw Error(in.path + ": --labels given but the model has no token head");
  }
  const std::optional<fs::path> vocab_path = in.options.vocab_file.empty() ? find_beside(companions, {"vocab.txt"})
                                                                           : std::optional<fs::path>(in.options.vocab_file);
  if (vocab_path) m.tokenizer.vocab = read_vocabulary(vocab_path->string());
  else in.notes.push_back("no vocab.txt found: the model cannot tokenize text (give --vocab FILE)");
  if (const auto tokenizer_config = find_beside(companions, {"tokenizer_config.json"}))
    apply_tokenizer_config(*tokenizer_config, m.tokenizer);
}

// One tensor the architecture needs: its declared shape checked before a byte is read, TF kernels transposed.
void read_tensor(Import& in, const ExpectedTensor& tensor) {
  const auto binding = in.bindings.find(tensor.name);
  if (binding == in.bindings.end())
    throw Error(in.path + ": missing tensor for " + tensor.name + " " + shape_string(tensor.shape) +
                (in.tf_names ? " (TF name expected under bert/)" : ""));
  const SourceBinding& from = binding->second;
  Shape declared = in.infos.at(from.source_name)->shape;
  if (from.transpose && declared.size() == 2) std::swap(declared[0], declared[1]);
  if (declared != tensor.shape)
    throw Error(in.path + ": tensor " + from.source_name + " has shape " + shape_string(in.infos.at(from.source_name)->shape) +
                ", the architecture needs " + shape_string(tensor.shape) + " for " + tensor.name +
                (from.transpose ? " (after transposing)" : ""));
  LoadedTensor loaded = in.source.read(from.source_name);
  if (!is_floating(loaded.view.dtype))
    throw Error(in.path + ": tensor " + from.source_name + " is " + std::string(dtype_name(loaded.view.dtype)) +
                ", not floating point");
  TensorView view = loaded.view;
  std::shared_ptr<const void> owner = loaded.owner;
  if (from.transpose) {
    if (view.shape.size() != 2) throw Error(in.path + ": kernel " + from.source_name + " is not a matrix");
    view = transposed(loaded.view, owner);
  }
  in.model.tensors.add_view(tensor.name, view);
  in.model.tensors.keep_alive(owner);
}

// Stage 5: every tensor the architecture needs, in its order.
void read_tensors(Import& in) {
  const auto expected = expected_bert_tensors(in.model.metadata.config, in.head ? in.head->labels : 0);
  if (in.head) {
    in.bindings[bert_names::kClassifierWeight] = in.head->weight;
    in.bindings[bert_names::kClassifierBias] = in.head->bias;
  }
  size_t done = 0;
  for (const auto& tensor : expected) {
    read_tensor(in, tensor);
    if (in.options.progress && (++done % 16 == 0 || done == expected.size()))
      in.options.progress("read " + std::to_string(done) + " of " + std::to_string(expected.size()) + " tensors");
  }
  std::set<std::string> expected_names;
  for (const auto& tensor : expected) expected_names.insert(tensor.name);
  int unused_encoder_tensors = 0;
  for (const auto& [canonical, binding] : in.bindings) unused_encoder_tensors += expected_names.count(canonical) ? 0 : 1;
  if (unused_encoder_tensors > 0)
    in.notes.push_back("ignored " + std::to_string(unused_encoder_tensors) +
                       " other tensors named under bert/ (graph constants, unused weights)");
}

// Stage 6: signatures — TF ones carried over (serving_default added when absent), else the default.
void carry_signatures(Import& in, const TfGraphSource* graph) {
  ModelMetadata& m = in.model.metadata;
  if (graph != nullptr) {
    for (const auto& definition : graph->signature_defs()) {
      // Internal (__saved_model_init_op) and classify/regress signatures take tf.Example strings, not token ids.
      if (definition.name.rfind("__", 0) == 0 ||
          (!definition.method_name.empty() && definition.method_name != "tensorflow/serving/predict")) {
        in.notes.push_back("signature '" + definition.name + "' (" + definition.method_name + ") not carried over");
        continue;
      }
      m.signatures.push_back(graph->map_signature(definition));
    }
  }
  if (!m.find_signature("serving_default")) m.signatures.insert(m.signatures.begin(), Signature::default_for(in.head.has_value()));
  std::stable_partition(m.signatures.begin(), m.signatures.end(),
                        [](const Signature& s) { return s.name == "serving_default"; });
}

}  // namespace

FrozenModel import_bert(TensorSource& source, const std::string& path, const std::vector<fs::path>& companions,
                        const ImportOptions& options, const TfGraphSource* graph) {
  Import in(source, path, options);
  map_tensor_names(in);
  find_head(in);
  const StatedConfig stated = settle_architecture(in, companions, graph);
  read_labels_and_tokenizer(in, stated, companions);
  read_tensors(in);
  carry_signatures(in, graph);
  Provenance& provenance = in.model.metadata.provenance;
  provenance.source_format = source.format();
  provenance.source = fs::absolute(path).lexically_normal().string();
  provenance.precision = Precision::fp32;
  provenance.tool = std::string("halfserve ") + kVersion;
  provenance.created = utc_timestamp();
  try {
    in.model.validate();
  } catch (const Error& e) {
    throw Error(path + ": " + e.what() + (in.config_path ? " (config: " + in.config_path->string() + ")" : ""));
  }
  return std::move(in.model);
}

}  // namespace halfserve

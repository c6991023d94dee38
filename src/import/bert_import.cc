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

}  // namespace

FrozenModel import_bert(TensorSource& source, const std::string& path, const std::vector<fs::path>& companions,
                        const ImportOptions& options, const TfGraphSource* graph) {
  FrozenModel model;
  ModelMetadata& m = model.metadata;
  std::vector<std::string>& notes = m.provenance.notes;
  for (const auto& note : source.notes()) notes.push_back(note);
  const bool tf_names = uses_tf_names(source);
  std::map<std::string, const SourceTensorInfo*> infos;
  for (const auto& info : source.tensors()) infos[info.name] = &info;

  // Canonical names for the encoder; everything else is a head candidate or dropped.
  std::map<std::string, SourceBinding> bindings;
  std::map<std::string, int> dropped;  // category -> count
  std::vector<const SourceTensorInfo*> others;
  for (const auto& info : source.tensors()) {
    if (is_training_state(info.name)) {
      ++dropped["optimizer and training state"];
      continue;
    }
    std::string canonical;
    const auto binding = tf_names ? canonical_from_tf(info.name, canonical) : canonical_from_hf(info.name, canonical);
    if (binding && !canonical.starts_with("classifier.")) {
      if (canonical.find(".pooler.") != std::string::npos) {
        ++dropped["pooler"];
        continue;
      }
      if (bindings.count(canonical))
        throw Error(path + ": tensors " + bindings[canonical].source_name + " and " + info.name + " both map to " + canonical);
      bindings[canonical] = *binding;
    } else if (binding) {
      bindings[canonical] = *binding;
    } else if (info.name.rfind("cls/", 0) == 0 || info.name.rfind("cls.", 0) == 0) {
      ++dropped["pre-training heads (cls)"];
    } else if (info.name.find("pooler") != std::string::npos) {
      ++dropped["pooler"];
    } else if (!tf_names) {
      ++dropped["tensors outside the encoder and classifier"];  // Hugging Face heads are classifier.* only
    } else {
      others.push_back(&info);
    }
  }

  const std::string word = bert_names::embedding("word_embeddings");
  if (!bindings.count(word))
    throw Error(path + ": no BERT word-embedding table found (expected bert/embeddings/word_embeddings or "
                "[bert.]embeddings.word_embeddings.weight among " + std::to_string(source.tensors().size()) + " tensors)");
  const Shape& word_shape = infos.at(bindings[word].source_name)->shape;
  if (word_shape.size() != 2) throw Error(path + ": " + bindings[word].source_name + " is not a matrix");
  const int64_t hidden = word_shape[1];

  // The token head: classifier.*, the --head scope, or the single dense [hidden, labels] layer outside the encoder.
  std::optional<HeadCandidate> head;
  if (bindings.count(bert_names::kClassifierWeight)) {
    if (!bindings.count(bert_names::kClassifierBias)) throw Error(path + ": classifier.weight without classifier.bias");
    head = HeadCandidate{"classifier", bindings[bert_names::kClassifierWeight], bindings[bert_names::kClassifierBias],
                         shape_of_rank(path, *infos.at(bindings[bert_names::kClassifierWeight].source_name), 2)[0]};
    bindings.erase(bert_names::kClassifierWeight);
    bindings.erase(bert_names::kClassifierBias);
  } else {
    std::map<std::string, std::vector<const SourceTensorInfo*>> by_scope;
    for (const auto* info : others) by_scope[scope_of(info->name)].push_back(info);
    if (!options.head_scope.empty()) {
      std::vector<const SourceTensorInfo*> in_scope;
      for (const auto& [scope, tensors] : by_scope)
        if (scope == options.head_scope || scope.rfind(options.head_scope + "/", 0) == 0)
          in_scope.insert(in_scope.end(), tensors.begin(), tensors.end());
      head = head_in_scope(in_scope, options.head_scope, hidden);
      if (!head)
        throw Error(path + ": --head " + options.head_scope + ": no single dense layer [" + std::to_string(hidden) +
                    ", labels] with its bias under that scope (" + std::to_string(in_scope.size()) + " tensors there)");
      head->scope = options.head_scope;
    } else {
      std::vector<HeadCandidate> candidates;
      for (const auto& [scope, tensors] : by_scope)
        if (auto candidate = head_in_scope(tensors, scope, hidden)) candidates.push_back(*candidate);
      if (candidates.size() > 1) {
        std::string scopes;
        for (const auto& candidate : candidates) scopes += (scopes.empty() ? "" : ", ") + candidate.scope;
        throw Error(path + ": several dense layers could be the token head (" + scopes + "); choose one with --head SCOPE");
      }
      if (candidates.size() == 1) {
        head = candidates.front();
        notes.push_back("token head found automatically: " + head->scope + " (" + std::to_string(head->labels) + " labels)");
      }
    }
    if (head) {
      for (const auto* info : by_scope[head->scope])
        if (info->name != head->weight.source_name && info->name != head->bias.source_name) ++dropped["other tensors in the head scope"];
    }
    for (const auto& [scope, tensors] : by_scope)
      if (!head || scope != head->scope) dropped["tensors outside the encoder and head"] += static_cast<int>(tensors.size());
  }
  if (!head) notes.push_back("no token head: encoder only (outputs last_hidden_state)");
  for (const auto& [category, count] : dropped) notes.push_back("dropped " + std::to_string(count) + " " + category);

  // Architecture: the config file where there is one, the tensor shapes for the rest.
  std::optional<fs::path> config_path = options.config_file.empty()
                                            ? find_beside(companions, {"config.json", "bert_config.json"})
                                            : std::optional<fs::path>(options.config_file);
  StatedConfig stated = config_path ? read_stated_config(*config_path) : StatedConfig{};
  if (!config_path) notes.push_back("no config.json or bert_config.json: architecture inferred from tensor shapes");
  auto shape_of = [&](const std::string& canonical, size_t rank) -> const Shape& {
    const auto it = bindings.find(canonical);
    if (it == bindings.end()) throw Error(path + ": missing tensor for " + canonical);
    return shape_of_rank(path, *infos.at(it->second.source_name), rank);
  };
  BertConfig& c = m.config;
  auto settle = [&](const char* field, const std::optional<int64_t>& from_config, int64_t from_shapes) {
    if (from_config) return *from_config;
    if (config_path) notes.push_back(std::string(field) + " not in the config: " + std::to_string(from_shapes) + " from tensor shapes");
    return from_shapes;
  };
  c.hidden_size = settle("hidden_size", stated.hidden_size, hidden);
  c.vocab_size = settle("vocab_size", stated.vocab_size, word_shape[0]);
  c.max_positions = settle("max_positions", stated.max_positions, shape_of(bert_names::embedding("position_embeddings"), 2)[0]);
  c.type_vocab_size = settle("type_vocab_size", stated.type_vocab_size, shape_of(bert_names::embedding("token_type_embeddings"), 2)[0]);
  c.num_layers = settle("num_layers", stated.num_layers, count_layers(path, bindings));
  if (c.num_layers < 1 || c.num_layers > kMaxLayers)
    throw Error(path + ": " + std::to_string(c.num_layers) + " encoder layers; 1.." + std::to_string(kMaxLayers) + " are supported");
  const SourceBinding& intermediate = bindings.count(bert_names::layer(0, "intermediate.dense.weight"))
                                          ? bindings[bert_names::layer(0, "intermediate.dense.weight")]
                                          : throw Error(path + ": no layer 0 intermediate dense weight");
  const Shape& intermediate_shape = shape_of_rank(path, *infos.at(intermediate.source_name), 2);
  c.intermediate_size = settle("intermediate_size", stated.intermediate_size,
                               intermediate.transpose ? intermediate_shape.at(1) : intermediate_shape.at(0));
  const std::optional<int64_t> graph_heads = graph != nullptr ? graph->attention_heads(c.hidden_size) : std::nullopt;
  if (stated.num_heads) {
    c.num_heads = *stated.num_heads;
  } else if (graph_heads) {
    c.num_heads = *graph_heads;
    notes.push_back("num_heads " + std::to_string(c.num_heads) + " read from the graph's attention reshape");
  } else {
    if (c.hidden_size % 64 != 0)
      throw Error(path + ": the number of attention heads cannot be inferred from shapes (hidden " + std::to_string(c.hidden_size) +
                  " is not a multiple of 64); give --config with num_attention_heads");
    c.num_heads = c.hidden_size / 64;
    notes.push_back("num_heads inferred as hidden/64 = " + std::to_string(c.num_heads) + " (BERT's head size 64)");
  }
  c.layer_norm_eps = stated.layer_norm_eps.value_or(1e-12f);
  if (options.activation) {
    c.activation = *options.activation;
  } else if (tf_names) {
    c.activation = Activation::gelu_tanh;
    notes.push_back("google-research (TF) names: tanh-form GELU, as modeling.py computes it");
  } else {
    c.activation = parse_activation(stated.hidden_act.value_or("gelu"));
    notes.push_back("activation from hidden_act '" + stated.hidden_act.value_or("gelu") + "': " + std::string(activation_name(c.activation)));
  }

  // Labels: --labels, id2label, or numbered.
  if (head) {
    if (!options.labels_file.empty()) {
      m.labels = read_labels_file(options.labels_file);
      if (static_cast<int64_t>(m.labels.size()) != head->labels)
        throw Error(options.labels_file + ": " + std::to_string(m.labels.size()) + " labels but the head has " +
                    std::to_string(head->labels) + " outputs");
    } else if (!stated.id2label.empty()) {
      if (static_cast<int64_t>(stated.id2label.size()) != head->labels)
        throw Error(stated.path + ": id2label has " + std::to_string(stated.id2label.size()) + " labels but the head has " +
                    std::to_string(head->labels) + " outputs");
      for (const auto& name : stated.id2label) m.labels.push_back(label_for_name(name));
    } else {
      for (int64_t i = 0; i < head->labels; ++i) m.labels.push_back({"LABEL_" + std::to_string(i), ""});
      notes.push_back("labels unknown: numbered LABEL_0..LABEL_" + std::to_string(head->labels - 1) +
                      " with no punctuation marks (give --labels FILE)");
    }
  } else if (!options.labels_file.empty()) {
    throw Error(path + ": --labels given but the model has no token head");
  }

  // Vocabulary and tokenizer settings.
  const std::optional<fs::path> vocab_path = options.vocab_file.empty() ? find_beside(companions, {"vocab.txt"})
                                                                        : std::optional<fs::path>(options.vocab_file);
  if (vocab_path) m.tokenizer.vocab = read_vocabulary(vocab_path->string());
  else notes.push_back("no vocab.txt found: the model cannot tokenize text (give --vocab FILE)");
  if (const auto tokenizer_config = find_beside(companions, {"tokenizer_config.json"}))
    apply_tokenizer_config(*tokenizer_config, m.tokenizer);

  // Tensors, transposing TF kernels.
  const auto expected = expected_bert_tensors(c, head ? head->labels : 0);
  if (head) {
    bindings[bert_names::kClassifierWeight] = head->weight;
    bindings[bert_names::kClassifierBias] = head->bias;
  }
  size_t done = 0;
  for (const auto& tensor : expected) {
    const auto binding = bindings.find(tensor.name);
    if (binding == bindings.end())
      throw Error(path + ": missing tensor for " + tensor.name + " " + shape_string(tensor.shape) +
                  (tf_names ? " (TF name expected under bert/)" : ""));
    // The declared shape must be the architecture's before a byte is read or decoded.
    Shape declared = infos.at(binding->second.source_name)->shape;
    if (binding->second.transpose && declared.size() == 2) std::swap(declared[0], declared[1]);
    if (declared != tensor.shape)
      throw Error(path + ": tensor " + binding->second.source_name + " has shape " +
                  shape_string(infos.at(binding->second.source_name)->shape) + ", the architecture needs " +
                  shape_string(tensor.shape) + " for " + tensor.name + (binding->second.transpose ? " (after transposing)" : ""));
    LoadedTensor loaded = source.read(binding->second.source_name);
    if (!is_floating(loaded.view.dtype))
      throw Error(path + ": tensor " + binding->second.source_name + " is " + std::string(dtype_name(loaded.view.dtype)) + ", not floating point");
    TensorView view = loaded.view;
    std::shared_ptr<const void> owner = loaded.owner;
    if (binding->second.transpose) {
      if (view.shape.size() != 2) throw Error(path + ": kernel " + binding->second.source_name + " is not a matrix");
      view = transposed(loaded.view, owner);
    }
    model.tensors.add_view(tensor.name, view);
    model.tensors.keep_alive(owner);
    if (options.progress && (++done % 16 == 0 || done == expected.size()))
      options.progress("read " + std::to_string(done) + " of " + std::to_string(expected.size()) + " tensors");
  }
  std::set<std::string> expected_names;
  for (const auto& tensor : expected) expected_names.insert(tensor.name);
  int unused_encoder_tensors = 0;
  for (const auto& [canonical, binding] : bindings) unused_encoder_tensors += expected_names.count(canonical) ? 0 : 1;
  if (unused_encoder_tensors > 0)
    notes.push_back("ignored " + std::to_string(unused_encoder_tensors) + " other tensors named under bert/ (graph constants, unused weights)");

  // Signatures: TF ones carried over (serving_default added when absent), else the default.
  const bool has_head = head.has_value();
  if (graph != nullptr) {
    for (const auto& definition : graph->signature_defs()) {
      // Internal (__saved_model_init_op) and classify/regress signatures take tf.Example strings, not token ids.
      if (definition.name.rfind("__", 0) == 0 || (!definition.method_name.empty() &&
                                                  definition.method_name != "tensorflow/serving/predict")) {
        notes.push_back("signature '" + definition.name + "' (" + definition.method_name + ") not carried over");
        continue;
      }
      m.signatures.push_back(graph->map_signature(definition));
    }
  }
  if (!m.find_signature("serving_default")) m.signatures.insert(m.signatures.begin(), Signature::default_for(has_head));
  std::stable_partition(m.signatures.begin(), m.signatures.end(),
                        [](const Signature& s) { return s.name == "serving_default"; });

  m.provenance.source_format = source.format();
  m.provenance.source = fs::absolute(path).lexically_normal().string();
  m.provenance.precision = Precision::fp32;
  m.provenance.tool = std::string("halfserve ") + kVersion;
  m.provenance.created = utc_timestamp();
  try {
    model.validate();
  } catch (const Error& e) {
    throw Error(path + ": " + e.what() + (config_path ? " (config: " + config_path->string() + ")" : ""));
  }
  return model;
}

}  // namespace halfserve

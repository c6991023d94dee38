#include "halfserve/import/hf_folder.h"

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "halfserve/format/bert_tensors.h"
#include "halfserve/format/safetensors.h"
#include "halfserve/text/vocabulary.h"
#include "halfserve/util/error.h"
#include "halfserve/util/json_depth.h"
#include "halfserve/util/mapped_file.h"
#include "halfserve/version.h"

namespace halfserve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;

json read_json_file(const fs::path& path) {
  try {
    const std::string text = read_file_bounded(path.string(), kMaxConfigBytes);
    check_json_depth(text, path.string());
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(path.string() + ": not valid JSON: " + e.what());
  }
}

int64_t config_int(const json& config, const fs::path& path, const char* key, std::optional<int64_t> fallback = {}) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) {
    if (fallback) return *fallback;
    throw Error(path.string() + ": missing '" + key + "'");
  }
  if (!it->is_number_integer()) throw Error(path.string() + ": '" + key + "' must be an integer, got " + it->dump());
  return it->get<int64_t>();
}

BertConfig parse_config(const json& config, const fs::path& path, std::vector<std::string>& notes) {
  if (!config.is_object()) throw Error(path.string() + ": not a JSON object");
  const std::string model_type = config.value("model_type", "bert");
  if (model_type != "bert")
    throw Error(path.string() + ": model_type '" + model_type + "' is not supported (halfserve runs BERT encoders)");
  const std::string position_type = config.value("position_embedding_type", "absolute");
  if (position_type != "absolute")
    throw Error(path.string() + ": position_embedding_type '" + position_type + "' is not supported (only absolute)");
  BertConfig c;
  c.num_layers = config_int(config, path, "num_hidden_layers");
  c.hidden_size = config_int(config, path, "hidden_size");
  c.num_heads = config_int(config, path, "num_attention_heads");
  c.intermediate_size = config_int(config, path, "intermediate_size");
  c.vocab_size = config_int(config, path, "vocab_size");
  c.max_positions = config_int(config, path, "max_position_embeddings", 512);
  c.type_vocab_size = config_int(config, path, "type_vocab_size", 2);
  const std::string act = config.value("hidden_act", "gelu");
  c.activation = parse_activation(act);
  notes.push_back("activation from hidden_act '" + act + "': " + std::string(activation_name(c.activation)));
  if (config.contains("layer_norm_eps")) {
    if (!config["layer_norm_eps"].is_number()) throw Error(path.string() + ": 'layer_norm_eps' must be a number");
    c.layer_norm_eps = config["layer_norm_eps"].get<float>();
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(path.string() + ": " + e.what());
  }
  return c;
}

// Labels ordered by id from `id2label`; empty when the config has none.
std::vector<std::string> parse_id2label(const json& config, const fs::path& path) {
  std::vector<std::string> labels;
  const auto it = config.find("id2label");
  if (it == config.end() || !it->is_object()) return labels;
  std::map<int64_t, std::string> by_id;
  for (const auto& [key, value] : it->items()) {
    int64_t id = -1;
    try {
      size_t used = 0;
      id = std::stoll(key, &used);
      if (used != key.size()) id = -1;
    } catch (const std::exception&) {
    }
    if (id < 0 || !value.is_string()) throw Error(path.string() + ": id2label entry '" + key + "' is malformed");
    by_id[id] = value.get<std::string>();
  }
  for (const auto& [id, name] : by_id) {
    if (id != static_cast<int64_t>(labels.size()))
      throw Error(path.string() + ": id2label ids are not 0..N-1 (missing id " + std::to_string(labels.size()) + ")");
    labels.push_back(name);
  }
  return labels;
}

// Canonical name for a Hugging Face tensor name, "" for tensors the token classifier does not use.
std::string canonical_name(const std::string& name) {
  static const std::vector<std::string> kUnused = {"pooler.", "cls.", "embeddings.position_ids"};
  std::string stripped = name.rfind("bert.", 0) == 0 ? name.substr(5) : name;
  for (const auto& prefix : kUnused)
    if (stripped.rfind(prefix, 0) == 0) return "";
  if (stripped.rfind("classifier.", 0) == 0) return stripped;
  return "bert." + stripped;
}

void apply_tokenizer_config(const fs::path& folder, TokenizerSettings& tokenizer, std::vector<std::string>& notes) {
  const fs::path path = folder / "tokenizer_config.json";
  if (!fs::exists(path)) {
    notes.push_back("no tokenizer_config.json: BertTokenizer defaults (do_lower_case true)");
    return;
  }
  const json config = read_json_file(path);
  if (!config.is_object()) throw Error(path.string() + ": not a JSON object");
  auto read_bool = [&](const char* key, bool& target) {
    if (config.contains(key) && config[key].is_boolean()) target = config[key].get<bool>();
  };
  read_bool("do_lower_case", tokenizer.do_lower_case);
  read_bool("tokenize_chinese_chars", tokenizer.tokenize_chinese_chars);
  if (config.contains("strip_accents") && config["strip_accents"].is_boolean())
    tokenizer.strip_accents = config["strip_accents"].get<bool>();
  auto read_token = [&](const char* key, std::string& target) {
    if (config.contains(key) && config[key].is_string()) target = config[key].get<std::string>();
  };
  read_token("unk_token", tokenizer.unk_token);
  read_token("cls_token", tokenizer.cls_token);
  read_token("sep_token", tokenizer.sep_token);
  read_token("pad_token", tokenizer.pad_token);
  read_token("mask_token", tokenizer.mask_token);
}

}  // namespace

bool is_hf_folder(const std::string& folder) {
  return fs::is_directory(folder) && fs::exists(fs::path(folder) / "config.json") &&
         fs::exists(fs::path(folder) / "model.safetensors");
}

bool is_hf_weights_file(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  if (!fs::is_regular_file(path) || !fs::exists(parent / "config.json")) return false;
  try {
    return read_safetensors(path).metadata.count("halfserve.format_version") == 0;
  } catch (const Error&) {
    return false;
  }
}

FrozenModel import_hf_folder(const std::string& folder_name) {
  // A folder, or one weights file whose folder holds config.json and vocab.txt.
  const bool is_folder = fs::is_directory(folder_name);
  const fs::path folder = is_folder ? fs::path(folder_name) : fs::path(folder_name).parent_path().empty()
                                                                  ? fs::path(".")
                                                                  : fs::path(folder_name).parent_path();
  const fs::path weights_path = is_folder ? folder / "model.safetensors" : fs::path(folder_name);
  const fs::path config_path = folder / "config.json";
  if (!fs::exists(config_path)) throw Error(folder.string() + ": no config.json (not a Hugging Face model folder?)");
  if (!fs::exists(weights_path)) throw Error(folder_name + ": no model.safetensors");

  FrozenModel model;
  ModelMetadata& m = model.metadata;
  std::vector<std::string>& notes = m.provenance.notes;
  const json config = read_json_file(config_path);
  m.config = parse_config(config, config_path, notes);

  const fs::path vocab_path = folder / "vocab.txt";
  if (!fs::exists(vocab_path)) throw Error(folder_name + ": no vocab.txt");
  m.tokenizer.vocab = read_vocabulary(vocab_path.string());
  apply_tokenizer_config(folder, m.tokenizer, notes);

  SafetensorsFile weights = read_safetensors(weights_path.string());
  model.tensors.keep_alive(weights.file);
  for (const auto& name : weights.tensors.names()) {
    const std::string canonical = canonical_name(name);
    if (canonical.empty()) {
      notes.push_back("dropped unused tensor " + name);
      continue;
    }
    if (model.tensors.contains(canonical))
      throw Error(weights_path.string() + ": tensors " + name + " and another both map to " + canonical);
    model.tensors.add_view(canonical, weights.tensors.at(name));
  }

  const TensorView* classifier = model.tensors.find(bert_names::kClassifierWeight);
  std::vector<std::string> label_names = parse_id2label(config, config_path);
  if (classifier != nullptr) {
    const int64_t rows = classifier->shape.empty() ? 0 : classifier->shape[0];
    if (label_names.empty()) {
      for (int64_t i = 0; i < rows; ++i) label_names.push_back("LABEL_" + std::to_string(i));
      notes.push_back("config.json has no id2label: labels numbered LABEL_0..LABEL_" + std::to_string(rows - 1));
    } else if (static_cast<int64_t>(label_names.size()) != rows) {
      throw Error(config_path.string() + ": id2label has " + std::to_string(label_names.size()) +
                  " labels but classifier.weight has " + std::to_string(rows) + " rows");
    }
    for (const auto& name : label_names) m.labels.push_back({name, punctuation_mark_for_label(name)});
  } else if (!label_names.empty()) {
    notes.push_back("no classifier.* tensors: encoder only, id2label ignored");
  }

  m.signatures = {Signature::default_for(m.has_head())};
  m.provenance.source_format = "hf";
  m.provenance.source = fs::absolute(is_folder ? folder : weights_path).lexically_normal().string();
  m.provenance.precision = Precision::fp32;
  m.provenance.tool = std::string("halfserve ") + kVersion;
  m.provenance.created = utc_timestamp();
  try {
    model.validate();
  } catch (const Error& e) {
    throw Error(folder_name + ": " + e.what());
  }
  return model;
}

}  // namespace halfserve

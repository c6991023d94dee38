#include "import/model_config.h"

#include <map>
#include <nlohmann/json.hpp>

#include "halfserve/import/label_names.h"
#include "halfserve/util/error.h"
#include "halfserve/util/json_depth.h"
#include "halfserve/util/mapped_file.h"
#include "halfserve/format/vocabulary.h"

namespace halfserve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;

json read_json_file(const fs::path& path) {
  const std::string text = read_file_bounded(path.string(), kMaxConfigBytes);
  check_json_depth(text, path.string());
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(path.string() + ": not valid JSON: " + e.what());
  }
}

std::optional<int64_t> optional_int(const json& config, const fs::path& path, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) throw Error(path.string() + ": '" + key + "' must be an integer");
  return it->get<int64_t>();
}

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

}  // namespace

StatedConfig read_stated_config(const fs::path& path) {
  const json config = read_json_file(path);
  if (!config.is_object()) throw Error(path.string() + ": not a JSON object");
  const std::string model_type = config.value("model_type", "bert");
  if (model_type != "bert")
    throw Error(path.string() + ": model_type '" + model_type + "' is not supported (halfserve runs BERT encoders)");
  const std::string position_type = config.value("position_embedding_type", "absolute");
  if (position_type != "absolute")
    throw Error(path.string() + ": position_embedding_type '" + position_type + "' is not supported (only absolute)");
  StatedConfig stated;
  stated.path = path.string();
  stated.num_layers = optional_int(config, path, "num_hidden_layers");
  stated.hidden_size = optional_int(config, path, "hidden_size");
  stated.num_heads = optional_int(config, path, "num_attention_heads");
  stated.intermediate_size = optional_int(config, path, "intermediate_size");
  stated.vocab_size = optional_int(config, path, "vocab_size");
  stated.max_positions = optional_int(config, path, "max_position_embeddings");
  stated.type_vocab_size = optional_int(config, path, "type_vocab_size");
  if (config.contains("hidden_act")) {
    if (!config["hidden_act"].is_string()) throw Error(path.string() + ": 'hidden_act' must be a string");
    stated.hidden_act = config["hidden_act"].get<std::string>();
  }
  if (config.contains("layer_norm_eps")) {
    if (!config["layer_norm_eps"].is_number()) throw Error(path.string() + ": 'layer_norm_eps' must be a number");
    stated.layer_norm_eps = config["layer_norm_eps"].get<float>();
  }
  stated.id2label = parse_id2label(config, path);
  return stated;
}

std::optional<fs::path> find_beside(const std::vector<fs::path>& folders, const std::vector<std::string>& names) {
  for (const auto& folder : folders)
    for (const auto& name : names)
      if (fs::is_regular_file(folder / name)) return folder / name;
  return std::nullopt;
}

std::vector<Label> read_labels_file(const std::string& path) {
  const std::vector<std::string> lines = read_vocabulary(path);  // same rules: UTF-8 lines, CRLF tolerated
  std::vector<Label> labels;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.empty()) {
      if (i + 1 == lines.size()) break;
      throw Error(path + ": line " + std::to_string(i + 1) + " is empty (one label per line)");
    }
    const auto tab = line.find('\t');
    Label label = label_for_name(line.substr(0, tab));
    if (tab != std::string::npos) label.mark = line.substr(tab + 1);
    labels.push_back(std::move(label));
  }
  return labels;
}

void apply_tokenizer_config(const fs::path& path, TokenizerSettings& tokenizer) {
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

}  // namespace halfserve

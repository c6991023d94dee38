#include "halfserve/format/model_metadata.h"

#include <array>
#include <nlohmann/json.hpp>

#include "halfserve/util/error.h"
#include "halfserve/util/json_depth.h"

namespace halfserve {

// ordered_json keeps signature inputs and outputs in the order they were declared.
using json = nlohmann::ordered_json;

namespace {

constexpr const char* kArchitectureKey = "halfserve.architecture";
constexpr const char* kLabelsKey = "halfserve.labels";
constexpr const char* kTokenizerKey = "halfserve.tokenizer";
constexpr const char* kSignaturesKey = "halfserve.signatures";
constexpr const char* kProvenanceKey = "halfserve.provenance";

constexpr std::array<std::string_view, 3> kInputRoles{"input_ids", "attention_mask", "token_type_ids"};
constexpr std::array<std::string_view, 4> kOutputRoles{"logits", "label_ids", "last_hidden_state", "probabilities"};

// A value for an error message. Arrays and objects are named, not dumped: dump() and copies recurse once per
// nesting level, so a deeply nested value from a hostile file would overflow the stack.
std::string quote(const json& value) {
  return value.is_structured() ? "a JSON " + std::string(value.type_name()) : value.dump();
}

// `object[name]` without copying it, with an error naming the metadata key and field when absent.
const json& member(const json& object, const char* key, const char* name) {
  const auto it = object.find(name);
  if (it == object.end()) throw Error(std::string("metadata ") + key + ": missing field '" + name + "'");
  return *it;
}

// Reads `object[key]` as T, with an error naming the metadata key and field.
template <typename T>
T field(const json& object, const char* key, const char* name) {
  const json& value = member(object, key, name);
  try {
    return value.get<T>();
  } catch (const json::exception&) {
    throw Error(std::string("metadata ") + key + ": field '" + name + "' has the wrong type: " + quote(value));
  }
}

template <typename T>
T field_or(const json& object, const char* key, const char* name, T fallback) {
  return object.contains(name) ? field<T>(object, key, name) : fallback;
}

json parse_key(const std::map<std::string, std::string>& strings, const char* key) {
  const auto it = strings.find(key);
  if (it == strings.end()) throw Error(std::string("metadata key '") + key + "' is missing (not a halfserve frozen file?)");
  try {
    check_json_depth(it->second, std::string("metadata key '") + key + "'");
    return json::parse(it->second);
  } catch (const json::exception& e) {
    throw Error(std::string("metadata key '") + key + "' is not valid JSON: " + e.what());
  }
}

json report_to_json(const TensorCastReport& r) {
  return {{"name", r.name},           {"source_dtype", dtype_name(r.source_dtype)},
          {"target_dtype", dtype_name(r.target_dtype)}, {"numel", r.numel},
          {"max_abs", r.max_abs},     {"max_abs_error", r.max_abs_error},
          {"clamped", r.clamped},     {"underflowed", r.underflowed},
          {"nan", r.nan_count},       {"inf", r.inf_count},
          {"kept_fp32", r.kept_fp32}};
}

DType dtype_field(const json& object, const char* key, const char* name) {
  const auto text = field<std::string>(object, key, name);
  const auto dtype = dtype_from_name(text);
  if (!dtype) throw Error(std::string("metadata ") + key + ": unknown dtype '" + text + "'");
  return *dtype;
}

TensorCastReport report_from_json(const json& j) {
  TensorCastReport r;
  r.name = field<std::string>(j, kProvenanceKey, "name");
  r.source_dtype = dtype_field(j, kProvenanceKey, "source_dtype");
  r.target_dtype = dtype_field(j, kProvenanceKey, "target_dtype");
  r.numel = field<int64_t>(j, kProvenanceKey, "numel");
  r.max_abs = field<float>(j, kProvenanceKey, "max_abs");
  r.max_abs_error = field<double>(j, kProvenanceKey, "max_abs_error");
  r.clamped = field<int64_t>(j, kProvenanceKey, "clamped");
  r.underflowed = field<int64_t>(j, kProvenanceKey, "underflowed");
  r.nan_count = field<int64_t>(j, kProvenanceKey, "nan");
  r.inf_count = field<int64_t>(j, kProvenanceKey, "inf");
  r.kept_fp32 = field<bool>(j, kProvenanceKey, "kept_fp32");
  return r;
}

}  // namespace

std::string_view activation_name(Activation activation) {
  return activation == Activation::gelu_tanh ? "gelu_tanh" : "gelu_erf";
}

Activation parse_activation(std::string_view name) {
  if (name == "gelu_erf" || name == "gelu" || name == "gelu_python") return Activation::gelu_erf;
  if (name == "gelu_tanh" || name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast")
    return Activation::gelu_tanh;
  throw Error("unsupported activation '" + std::string(name) + "' (halfserve runs GELU in erf or tanh form)");
}

void BertConfig::validate() const {
  const std::pair<const char*, int64_t> positives[] = {
      {"num_layers", num_layers},       {"hidden_size", hidden_size},         {"num_heads", num_heads},
      {"intermediate_size", intermediate_size}, {"vocab_size", vocab_size}, {"max_positions", max_positions},
      {"type_vocab_size", type_vocab_size}};
  for (const auto& [name, value] : positives)
    if (value <= 0) throw Error(std::string("architecture: ") + name + " must be positive, got " + std::to_string(value));
  if (hidden_size % num_heads != 0)
    throw Error("architecture: hidden_size " + std::to_string(hidden_size) + " is not divisible by num_heads " +
                std::to_string(num_heads));
  if (!(layer_norm_eps > 0) || layer_norm_eps > 1)
    throw Error("architecture: layer_norm_eps must be in (0, 1], got " + std::to_string(layer_norm_eps));
  // Bounds that keep every buffer size far from overflow; real BERTs are orders of magnitude below.
  if (hidden_size > 65536 || intermediate_size > 262144 || num_layers > 1024 || max_positions > 1 << 20 ||
      vocab_size > 1 << 24 || type_vocab_size > 1 << 16)
    throw Error("architecture: dimensions beyond what halfserve supports");
}

std::string_view input_role_name(InputRole role) { return kInputRoles[static_cast<size_t>(role)]; }
std::string_view output_role_name(OutputRole role) { return kOutputRoles[static_cast<size_t>(role)]; }

std::optional<InputRole> parse_input_role(std::string_view name) {
  for (size_t i = 0; i < kInputRoles.size(); ++i)
    if (kInputRoles[i] == name) return static_cast<InputRole>(i);
  return std::nullopt;
}

std::optional<OutputRole> parse_output_role(std::string_view name) {
  for (size_t i = 0; i < kOutputRoles.size(); ++i)
    if (kOutputRoles[i] == name) return static_cast<OutputRole>(i);
  return std::nullopt;
}

Signature Signature::default_for(bool has_head) {
  Signature signature;
  signature.inputs = {{"input_ids", InputRole::input_ids},
                      {"attention_mask", InputRole::attention_mask},
                      {"token_type_ids", InputRole::token_type_ids}};
  if (has_head)
    signature.outputs = {{"logits", OutputRole::logits}, {"label_ids", OutputRole::label_ids}};
  else
    signature.outputs = {{"last_hidden_state", OutputRole::last_hidden_state}};
  return signature;
}

std::optional<InputRole> Signature::input_role(const std::string& name) const {
  for (const auto& [input, role] : inputs)
    if (input == name) return role;
  return std::nullopt;
}

std::optional<std::string> Signature::input_name(InputRole role) const {
  for (const auto& [input, input_role] : inputs)
    if (input_role == role) return input;
  return std::nullopt;
}

std::optional<std::string> Signature::output_name(OutputRole role) const {
  for (const auto& [output, output_role] : outputs)
    if (output_role == role) return output;
  return std::nullopt;
}

const Signature* ModelMetadata::find_signature(const std::string& name) const {
  for (const auto& signature : signatures)
    if (signature.name == name) return &signature;
  return nullptr;
}

namespace {
std::map<std::string, std::string> metadata_strings(const ModelMetadata& m);
}  // namespace

std::map<std::string, std::string> metadata_to_strings(const ModelMetadata& m) {
  try {
    return metadata_strings(m);
  } catch (const json::exception& e) {
    // nlohmann refuses to write invalid UTF-8 (a vocabulary token, label or signature name).
    throw Error(std::string("model metadata cannot be written: ") + e.what());
  }
}

namespace {
std::map<std::string, std::string> metadata_strings(const ModelMetadata& m) {
  std::map<std::string, std::string> strings;
  strings["format"] = "pt";  // lets transformers' safetensors loader accept the file as a PyTorch state dict
  strings[kModelFormatVersionKey] = std::to_string(kModelFormatVersion);

  const BertConfig& c = m.config;
  strings[kArchitectureKey] = json{{"model_type", "bert"},
                                   {"num_layers", c.num_layers},
                                   {"hidden_size", c.hidden_size},
                                   {"num_heads", c.num_heads},
                                   {"intermediate_size", c.intermediate_size},
                                   {"vocab_size", c.vocab_size},
                                   {"max_positions", c.max_positions},
                                   {"type_vocab_size", c.type_vocab_size},
                                   {"activation", activation_name(c.activation)},
                                   {"layer_norm_eps", c.layer_norm_eps}}
                                  .dump();

  json labels = json::array();
  for (const auto& label : m.labels) {
    json entry = {{"name", label.name}, {"mark", label.mark}};
    if (label.capitalize) entry["capitalize"] = true;  // absent in files written before capitalization labels
    labels.push_back(entry);
  }
  strings[kLabelsKey] = labels.dump();

  const TokenizerSettings& t = m.tokenizer;
  json tokenizer = {{"type", t.type},
                    {"do_lower_case", t.do_lower_case},
                    {"strip_accents", t.strip_accents ? json(*t.strip_accents) : json(nullptr)},
                    {"tokenize_chinese_chars", t.tokenize_chinese_chars},
                    {"max_input_chars_per_word", t.max_input_chars_per_word},
                    {"unk_token", t.unk_token},
                    {"cls_token", t.cls_token},
                    {"sep_token", t.sep_token},
                    {"pad_token", t.pad_token},
                    {"mask_token", t.mask_token},
                    {"vocab", t.vocab}};
  strings[kTokenizerKey] = tokenizer.dump();

  json signatures = json::array();
  for (const auto& s : m.signatures) {
    json inputs = json::object(), outputs = json::object();
    for (const auto& [name, role] : s.inputs) inputs[name] = std::string(input_role_name(role));
    for (const auto& [name, role] : s.outputs) outputs[name] = std::string(output_role_name(role));
    signatures.push_back({{"name", s.name}, {"method_name", s.method_name}, {"inputs", inputs}, {"outputs", outputs}});
  }
  strings[kSignaturesKey] = signatures.dump();

  const Provenance& p = m.provenance;
  json report = json::array();
  for (const auto& r : p.conversion_report) report.push_back(report_to_json(r));
  strings[kProvenanceKey] = json{{"source_format", p.source_format}, {"source", p.source},
                                 {"precision", precision_name(p.precision)}, {"tool", p.tool},
                                 {"created", p.created}, {"notes", p.notes}, {"conversion_report", report}}
                                .dump();
  return strings;
}
}  // namespace

namespace {

BertConfig architecture_from_strings(const std::map<std::string, std::string>& strings) {
  const json arch = parse_key(strings, kArchitectureKey);
  if (!arch.is_object()) throw Error(std::string("metadata ") + kArchitectureKey + " is not a JSON object");
  const auto model_type = field<std::string>(arch, kArchitectureKey, "model_type");
  if (model_type != "bert") throw Error("unsupported model_type '" + model_type + "' (halfserve runs BERT encoders)");
  BertConfig c;
  c.num_layers = field<int64_t>(arch, kArchitectureKey, "num_layers");
  c.hidden_size = field<int64_t>(arch, kArchitectureKey, "hidden_size");
  c.num_heads = field<int64_t>(arch, kArchitectureKey, "num_heads");
  c.intermediate_size = field<int64_t>(arch, kArchitectureKey, "intermediate_size");
  c.vocab_size = field<int64_t>(arch, kArchitectureKey, "vocab_size");
  c.max_positions = field<int64_t>(arch, kArchitectureKey, "max_positions");
  c.type_vocab_size = field<int64_t>(arch, kArchitectureKey, "type_vocab_size");
  c.activation = parse_activation(field<std::string>(arch, kArchitectureKey, "activation"));
  c.layer_norm_eps = field<float>(arch, kArchitectureKey, "layer_norm_eps");
  c.validate();
  return c;
}

std::vector<Label> labels_from_strings(const std::map<std::string, std::string>& strings) {
  std::vector<Label> result;
  const json labels = parse_key(strings, kLabelsKey);
  if (!labels.is_array()) throw Error(std::string("metadata ") + kLabelsKey + " is not a JSON array");
  for (const auto& label : labels)
    result.push_back({field<std::string>(label, kLabelsKey, "name"), field<std::string>(label, kLabelsKey, "mark"),
                        field_or<bool>(label, kLabelsKey, "capitalize", false)});
  return result;
}

TokenizerSettings tokenizer_from_strings(const std::map<std::string, std::string>& strings) {
  TokenizerSettings t;
  const json tok = parse_key(strings, kTokenizerKey);
  if (!tok.is_object()) throw Error(std::string("metadata ") + kTokenizerKey + " is not a JSON object");
  t.type = field<std::string>(tok, kTokenizerKey, "type");
  t.do_lower_case = field<bool>(tok, kTokenizerKey, "do_lower_case");
  if (tok.contains("strip_accents") && !tok["strip_accents"].is_null())
    t.strip_accents = field<bool>(tok, kTokenizerKey, "strip_accents");
  t.tokenize_chinese_chars = field_or<bool>(tok, kTokenizerKey, "tokenize_chinese_chars", true);
  t.max_input_chars_per_word = field_or<int64_t>(tok, kTokenizerKey, "max_input_chars_per_word", 100);
  t.unk_token = field<std::string>(tok, kTokenizerKey, "unk_token");
  t.cls_token = field<std::string>(tok, kTokenizerKey, "cls_token");
  t.sep_token = field<std::string>(tok, kTokenizerKey, "sep_token");
  t.pad_token = field<std::string>(tok, kTokenizerKey, "pad_token");
  t.mask_token = field<std::string>(tok, kTokenizerKey, "mask_token");
  t.vocab = field<std::vector<std::string>>(tok, kTokenizerKey, "vocab");
  return t;
}

Signature signature_from_json(const json& s) {
  Signature signature;
  signature.name = field<std::string>(s, kSignaturesKey, "name");
  signature.method_name = field<std::string>(s, kSignaturesKey, "method_name");
  const json& inputs = member(s, kSignaturesKey, "inputs");
  const json& outputs = member(s, kSignaturesKey, "outputs");
  if (!inputs.is_object() || !outputs.is_object())
    throw Error("signature '" + signature.name + "': inputs and outputs must be JSON objects");
  for (const auto& [name, role] : inputs.items()) {
    const auto parsed = role.is_string() ? parse_input_role(role.get<std::string>()) : std::nullopt;
    if (!parsed) throw Error("signature '" + signature.name + "': input '" + name + "' has unknown role " + quote(role));
    signature.inputs.emplace_back(name, *parsed);
  }
  for (const auto& [name, role] : outputs.items()) {
    const auto parsed = role.is_string() ? parse_output_role(role.get<std::string>()) : std::nullopt;
    if (!parsed) throw Error("signature '" + signature.name + "': output '" + name + "' has unknown role " + quote(role));
    signature.outputs.emplace_back(name, *parsed);
  }
  if (!signature.input_name(InputRole::input_ids))
    throw Error("signature '" + signature.name + "' has no input for input_ids");
  return signature;
}

std::vector<Signature> signatures_from_strings(const std::map<std::string, std::string>& strings) {
  const json signatures = parse_key(strings, kSignaturesKey);
  if (!signatures.is_array() || signatures.empty())
    throw Error(std::string("metadata ") + kSignaturesKey + " must be a non-empty JSON array");
  std::vector<Signature> result;
  for (const auto& s : signatures) result.push_back(signature_from_json(s));
  return result;
}

Provenance provenance_from_strings(const std::map<std::string, std::string>& strings) {
  Provenance p;
  const json prov = parse_key(strings, kProvenanceKey);
  p.source_format = field<std::string>(prov, kProvenanceKey, "source_format");
  p.source = field<std::string>(prov, kProvenanceKey, "source");
  p.precision = parse_precision(field<std::string>(prov, kProvenanceKey, "precision"));
  p.tool = field<std::string>(prov, kProvenanceKey, "tool");
  p.created = field<std::string>(prov, kProvenanceKey, "created");
  p.notes = field_or<std::vector<std::string>>(prov, kProvenanceKey, "notes", {});
  const json& report = member(prov, kProvenanceKey, "conversion_report");
  if (!report.is_array()) throw Error(std::string("metadata ") + kProvenanceKey + ": conversion_report must be an array");
  for (const auto& r : report) p.conversion_report.push_back(report_from_json(r));
  return p;
}

}  // namespace

ModelMetadata metadata_from_strings(const std::map<std::string, std::string>& strings) {
  const auto version = strings.find(kModelFormatVersionKey);
  if (version == strings.end())
    throw Error(std::string("metadata key '") + kModelFormatVersionKey + "' is missing (not a halfserve frozen file?)");
  if (version->second != std::to_string(kModelFormatVersion))
    throw Error("unsupported frozen file format version '" + version->second + "' (this build reads version " +
                std::to_string(kModelFormatVersion) + ")");
  ModelMetadata m;
  m.config = architecture_from_strings(strings);
  m.labels = labels_from_strings(strings);
  m.tokenizer = tokenizer_from_strings(strings);
  m.signatures = signatures_from_strings(strings);
  m.provenance = provenance_from_strings(strings);
  return m;
}

}  // namespace halfserve

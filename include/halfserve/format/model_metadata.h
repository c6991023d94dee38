#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "halfserve/format/dtype.h"

namespace halfserve {

enum class Activation : uint8_t { gelu_erf, gelu_tanh };
std::string_view activation_name(Activation activation);  // "gelu_erf", "gelu_tanh"
Activation parse_activation(std::string_view name);        // accepts Hugging Face names too ("gelu", "gelu_new")

// The encoder's shape and numerics: everything needed to rebuild the computation from the tensors.
struct BertConfig {
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_heads = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_positions = 0;
  int64_t type_vocab_size = 0;
  Activation activation = Activation::gelu_erf;
  float layer_norm_eps = 1e-12f;

  int64_t head_size() const { return hidden_size / num_heads; }
  // Throws Error naming the field that is missing, non-positive or inconsistent.
  void validate() const;
};

// One output class of the token-classification head. `mark` is the text a punctuation label inserts after its
// token ("" for the no-punctuation label).
// A label as a frozen file records it: the importer decided what mark its name stands for (import/label_names.h),
// the file keeps the answer, and the text layer inserts it.
struct Label {
  std::string name;
  std::string mark;
  bool capitalize = false;  // also upper-case the first letter of the word it labels
};

struct TokenizerSettings {
  std::string type = "bert_wordpiece";
  bool do_lower_case = true;
  std::optional<bool> strip_accents;  // unset: follow do_lower_case, as BertTokenizer does
  bool tokenize_chinese_chars = true;
  int64_t max_input_chars_per_word = 100;
  std::string unk_token = "[UNK]";
  std::string cls_token = "[CLS]";
  std::string sep_token = "[SEP]";
  std::string pad_token = "[PAD]";
  std::string mask_token = "[MASK]";
  std::vector<std::string> vocab;  // index = token id
};

// Roles the engine understands; signatures map the names clients use onto them.
enum class InputRole : uint8_t { input_ids, attention_mask, token_type_ids };
enum class OutputRole : uint8_t { logits, label_ids, last_hidden_state, probabilities };
std::string_view input_role_name(InputRole role);
std::string_view output_role_name(OutputRole role);
std::optional<InputRole> parse_input_role(std::string_view name);
std::optional<OutputRole> parse_output_role(std::string_view name);

// A TF Serving signature: its name, method and the client-visible names of its inputs and outputs.
struct Signature {
  std::string name = "serving_default";
  std::string method_name = "tensorflow/serving/predict";
  std::vector<std::pair<std::string, InputRole>> inputs;
  std::vector<std::pair<std::string, OutputRole>> outputs;

  // `serving_default` with inputs input_ids, attention_mask, token_type_ids and outputs logits and label_ids
  // (or last_hidden_state for an encoder without a head).
  static Signature default_for(bool has_head);
  std::optional<InputRole> input_role(const std::string& name) const;
  std::optional<std::string> input_name(InputRole role) const;
  std::optional<std::string> output_name(OutputRole role) const;
};

// What one cast did to one tensor.
struct TensorCastReport {
  std::string name;
  DType source_dtype = DType::f32;
  DType target_dtype = DType::f32;
  int64_t numel = 0;
  float max_abs = 0;           // largest finite magnitude in the source
  double max_abs_error = 0;    // largest |cast - source| over finite, unclamped values
  int64_t clamped = 0;         // finite values beyond the target's range, clamped to its largest value
  int64_t underflowed = 0;     // non-zero values that became zero
  int64_t nan_count = 0;       // NaN in the source (replaced by 0 when allowed)
  int64_t inf_count = 0;       // ±Inf in the source (clamped when allowed)
  bool kept_fp32 = false;      // left in fp32 on purpose (LayerNorm parameters)
};

struct Provenance {
  std::string source_format;  // "hf", "synth", "frozen", ...
  std::string source;         // path or description
  Precision precision = Precision::fp32;
  std::string tool;           // "halfserve 0.1.0"
  std::string created;        // ISO 8601 UTC
  std::vector<std::string> notes;  // what was inferred or assumed during import
  std::vector<TensorCastReport> conversion_report;
};

struct ModelMetadata {
  BertConfig config;
  std::vector<Label> labels;  // empty: encoder only, no classification head
  TokenizerSettings tokenizer;
  std::vector<Signature> signatures;
  Provenance provenance;

  bool has_head() const { return !labels.empty(); }
  const Signature& default_signature() const { return signatures.front(); }
  const Signature* find_signature(const std::string& name) const;
};

inline constexpr int kModelFormatVersion = 1;
// The metadata key holding kModelFormatVersion: its presence marks a halfserve frozen file.
inline constexpr const char* kModelFormatVersionKey = "halfserve.format_version";

// The safetensors "__metadata__" entries (all strings, so every safetensors reader accepts them).
std::map<std::string, std::string> metadata_to_strings(const ModelMetadata& metadata);
// Throws Error naming the missing or malformed key.
ModelMetadata metadata_from_strings(const std::map<std::string, std::string>& strings);

}  // namespace halfserve

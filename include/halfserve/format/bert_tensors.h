#pragma once

#include <optional>
#include <string>
#include <vector>

#include "halfserve/format/model_metadata.h"
#include "halfserve/format/tensor.h"

namespace halfserve {

// Frozen files name tensors as Hugging Face's BertForTokenClassification does (`bert.` prefix, weights
// [out, in]), so the file also loads into transformers and any safetensors tool shows familiar names.
namespace bert_names {
std::string embedding(const std::string& which);  // "word_embeddings" -> "bert.embeddings.word_embeddings.weight"
std::string embedding_layer_norm(const std::string& param);                  // param: "weight" | "bias"
std::string layer(int64_t index, const std::string& suffix);                 // "attention.self.query.weight"
// An int8 tensor's per-row scales (per output channel for a weight): "...query.weight" -> "...query.weight_scale".
std::string weight_scale(const std::string& weight_name);
inline const std::string kClassifierWeight = "classifier.weight";
inline const std::string kClassifierBias = "classifier.bias";
}  // namespace bert_names

// What a tensor is for; decides how precision conversion treats it.
enum class TensorRole : uint8_t { embedding, weight, bias, layer_norm, weight_scale };

struct ExpectedTensor {
  std::string name;
  Shape shape;
  TensorRole role;
  // Set where the file's precision fixes the dtype (int8: I8 encoder weights, I8 word embeddings and their F32
  // scales); unset: any float dtype.
  std::optional<DType> dtype = std::nullopt;
};

// Every tensor a model with this architecture (and `num_labels` head outputs, 0 for none) must hold in a file of
// `precision`. int8 files add, right after each encoder weight (I8), its scales (F32 [out]); the classifier
// weight is not quantized. The word embeddings of an int8 file are I8 rows with F32 scales [vocab] beside them
// when `i8_word_embeddings` (what halfserve writes), or a float dtype (int8 files written before 2026-12 held
// them fp16); other precisions ignore the flag.
std::vector<ExpectedTensor> expected_bert_tensors(const BertConfig& config, int64_t num_labels,
                                                  Precision precision = Precision::fp32, bool i8_word_embeddings = true);

}  // namespace halfserve

#include "halfserve/format/bert_tensors.h"

namespace halfserve {

namespace bert_names {
std::string embedding(const std::string& which) { return "bert.embeddings." + which + ".weight"; }
std::string embedding_layer_norm(const std::string& param) { return "bert.embeddings.LayerNorm." + param; }
std::string layer(int64_t index, const std::string& suffix) {
  return "bert.encoder.layer." + std::to_string(index) + "." + suffix;
}
std::string weight_scale(const std::string& weight_name) { return weight_name + "_scale"; }
}  // namespace bert_names

std::vector<ExpectedTensor> expected_bert_tensors(const BertConfig& c, int64_t num_labels, Precision precision,
                                                  bool i8_word_embeddings) {
  using namespace bert_names;
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  const bool quantized = precision == Precision::int8;
  std::vector<ExpectedTensor> tensors;
  // A tensor [rows, cols] quantized per row when `quantize`: I8 followed by its F32 scales [rows].
  auto add_maybe_quantized = [&](const std::string& name, int64_t rows, int64_t cols, TensorRole role, bool quantize) {
    if (!quantize) {
      tensors.push_back({name, {rows, cols}, role});
      return;
    }
    tensors.push_back({name, {rows, cols}, role, DType::i8});
    tensors.push_back({weight_scale(name), {rows}, TensorRole::weight_scale, DType::f32});
  };
  add_maybe_quantized(embedding("word_embeddings"), c.vocab_size, h, TensorRole::embedding, quantized && i8_word_embeddings);
  tensors.push_back({embedding("position_embeddings"), {c.max_positions, h}, TensorRole::embedding});
  tensors.push_back({embedding("token_type_embeddings"), {c.type_vocab_size, h}, TensorRole::embedding});
  tensors.push_back({embedding_layer_norm("weight"), {h}, TensorRole::layer_norm});
  tensors.push_back({embedding_layer_norm("bias"), {h}, TensorRole::layer_norm});
  auto add_encoder_weight = [&](const std::string& name, int64_t out, int64_t in) {
    add_maybe_quantized(name, out, in, TensorRole::weight, quantized);
  };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    for (const char* projection : {"attention.self.query", "attention.self.key", "attention.self.value",
                                   "attention.output.dense"}) {
      add_encoder_weight(layer(i, std::string(projection) + ".weight"), h, h);
      tensors.push_back({layer(i, std::string(projection) + ".bias"), {h}, TensorRole::bias});
    }
    tensors.push_back({layer(i, "attention.output.LayerNorm.weight"), {h}, TensorRole::layer_norm});
    tensors.push_back({layer(i, "attention.output.LayerNorm.bias"), {h}, TensorRole::layer_norm});
    add_encoder_weight(layer(i, "intermediate.dense.weight"), f, h);
    tensors.push_back({layer(i, "intermediate.dense.bias"), {f}, TensorRole::bias});
    add_encoder_weight(layer(i, "output.dense.weight"), h, f);
    tensors.push_back({layer(i, "output.dense.bias"), {h}, TensorRole::bias});
    tensors.push_back({layer(i, "output.LayerNorm.weight"), {h}, TensorRole::layer_norm});
    tensors.push_back({layer(i, "output.LayerNorm.bias"), {h}, TensorRole::layer_norm});
  }
  if (num_labels > 0) {
    tensors.push_back({bert_names::kClassifierWeight, {num_labels, h}, TensorRole::weight});
    tensors.push_back({bert_names::kClassifierBias, {num_labels}, TensorRole::bias});
  }
  return tensors;
}

}  // namespace halfserve

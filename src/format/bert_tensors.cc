#include "halfserve/format/bert_tensors.h"

namespace halfserve {

namespace bert_names {
std::string embedding(const std::string& which) { return "bert.embeddings." + which + ".weight"; }
std::string embedding_layer_norm(const std::string& param) { return "bert.embeddings.LayerNorm." + param; }
std::string layer(int64_t index, const std::string& suffix) {
  return "bert.encoder.layer." + std::to_string(index) + "." + suffix;
}
}  // namespace bert_names

std::vector<ExpectedTensor> expected_bert_tensors(const BertConfig& c, int64_t num_labels) {
  using namespace bert_names;
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  std::vector<ExpectedTensor> tensors = {
      {embedding("word_embeddings"), {c.vocab_size, h}, TensorRole::embedding},
      {embedding("position_embeddings"), {c.max_positions, h}, TensorRole::embedding},
      {embedding("token_type_embeddings"), {c.type_vocab_size, h}, TensorRole::embedding},
      {embedding_layer_norm("weight"), {h}, TensorRole::layer_norm},
      {embedding_layer_norm("bias"), {h}, TensorRole::layer_norm},
  };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    for (const char* projection : {"attention.self.query", "attention.self.key", "attention.self.value",
                                   "attention.output.dense"}) {
      tensors.push_back({layer(i, std::string(projection) + ".weight"), {h, h}, TensorRole::weight});
      tensors.push_back({layer(i, std::string(projection) + ".bias"), {h}, TensorRole::bias});
    }
    tensors.push_back({layer(i, "attention.output.LayerNorm.weight"), {h}, TensorRole::layer_norm});
    tensors.push_back({layer(i, "attention.output.LayerNorm.bias"), {h}, TensorRole::layer_norm});
    tensors.push_back({layer(i, "intermediate.dense.weight"), {f, h}, TensorRole::weight});
    tensors.push_back({layer(i, "intermediate.dense.bias"), {f}, TensorRole::bias});
    tensors.push_back({layer(i, "output.dense.weight"), {h, f}, TensorRole::weight});
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

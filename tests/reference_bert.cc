#include "reference_bert.h"

#include <cmath>
#include <numbers>

#include "halfserve/format/bert_tensors.h"

namespace halfserve::testing {

double reference_gelu(double x, Activation activation) {
  if (activation == Activation::gelu_erf) return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2));
  const double inner = std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + std::tanh(inner));
}

std::vector<float> reference_linear(const std::vector<float>& src, int64_t rows, int64_t in, const std::vector<float>& weight,
                                    const std::vector<float>& bias, int64_t out, const Activation* activation,
                                    const std::vector<float>* residual) {
  std::vector<float> dst(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double sum = bias[static_cast<size_t>(o)];
      for (int64_t i = 0; i < in; ++i)
        sum += static_cast<double>(src[static_cast<size_t>(r * in + i)]) * weight[static_cast<size_t>(o * in + i)];
      if (activation != nullptr) sum = reference_gelu(sum, *activation);
      if (residual != nullptr) sum += (*residual)[static_cast<size_t>(r * out + o)];
      dst[static_cast<size_t>(r * out + o)] = static_cast<float>(sum);
    }
  }
  return dst;
}

std::vector<float> reference_layer_norm(const std::vector<float>& src, int64_t rows, int64_t cols,
                                        const std::vector<float>& gamma, const std::vector<float>& beta, double eps) {
  std::vector<float> dst(src.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = src.data() + r * cols;
    double mean = 0, variance = 0;
    for (int64_t c = 0; c < cols; ++c) mean += row[c];
    mean /= static_cast<double>(cols);
    for (int64_t c = 0; c < cols; ++c) variance += (row[c] - mean) * (row[c] - mean);
    variance /= static_cast<double>(cols);
    for (int64_t c = 0; c < cols; ++c)
      dst[static_cast<size_t>(r * cols + c)] =
          static_cast<float>((row[c] - mean) / std::sqrt(variance + eps) * gamma[static_cast<size_t>(c)] + beta[static_cast<size_t>(c)]);
  }
  return dst;
}

std::vector<float> reference_attention(const std::vector<float>& qkv, const std::vector<int32_t>& mask, int64_t batch,
                                       int64_t length, int64_t heads, int64_t head_size) {
  const int64_t hidden = heads * head_size;
  std::vector<float> context(static_cast<size_t>(batch * length * hidden));
  auto at = [&](int64_t b, int64_t position, int64_t part, int64_t h, int64_t d) {
    return static_cast<double>(qkv[static_cast<size_t>((b * length + position) * 3 * hidden + part * hidden + h * head_size + d)]);
  };
  std::vector<double> scores(static_cast<size_t>(length));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < length; ++i) {
        double largest = -1e300;
        for (int64_t j = 0; j < length; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < head_size; ++d) dot += at(b, i, 0, h, d) * at(b, j, 1, h, d);
          double score = dot / std::sqrt(static_cast<double>(head_size));
          if (mask[static_cast<size_t>(b * length + j)] == 0) score += -10000.0;
          scores[static_cast<size_t>(j)] = score;
          largest = std::max(largest, score);
        }
        double total = 0;
        for (auto& score : scores) total += (score = std::exp(score - largest));
        for (int64_t d = 0; d < head_size; ++d) {
          double sum = 0;
          for (int64_t j = 0; j < length; ++j) sum += scores[static_cast<size_t>(j)] / total * at(b, j, 2, h, d);
          context[static_cast<size_t>((b * length + i) * hidden + h * head_size + d)] = static_cast<float>(sum);
        }
      }
  return context;
}

ReferenceOutputs reference_forward(const FrozenModel& model, const InputBatch& in) {
  const BertConfig& c = model.metadata.config;
  const int64_t tokens = in.batch * in.length, h = c.hidden_size, f = c.intermediate_size;
  auto values = [&](const std::string& name) { return model.tensors.at(name).to_float(); };
  using namespace bert_names;
  const auto word = values(embedding("word_embeddings")), position = values(embedding("position_embeddings")),
             type = values(embedding("token_type_embeddings"));
  std::vector<int32_t> mask = in.attention_mask, types = in.token_type_ids;
  if (mask.empty()) mask.assign(static_cast<size_t>(tokens), 1);
  if (types.empty()) types.assign(static_cast<size_t>(tokens), 0);

  std::vector<float> hidden(static_cast<size_t>(tokens * h));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t k = 0; k < h; ++k)
      hidden[static_cast<size_t>(t * h + k)] = word[static_cast<size_t>(in.input_ids[static_cast<size_t>(t)] * h + k)] +
                                               position[static_cast<size_t>((t % in.length) * h + k)] +
                                               type[static_cast<size_t>(types[static_cast<size_t>(t)] * h + k)];
  hidden = reference_layer_norm(hidden, tokens, h, values(embedding_layer_norm("weight")), values(embedding_layer_norm("bias")),
                                c.layer_norm_eps);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    auto w = [&](const std::string& suffix) { return values(layer(i, suffix)); };
    std::vector<float> qkv_weight, qkv_bias;
    for (const char* part : {"query", "key", "value"}) {
      const auto weight = w(std::string("attention.self.") + part + ".weight");
      const auto bias = w(std::string("attention.self.") + part + ".bias");
      qkv_weight.insert(qkv_weight.end(), weight.begin(), weight.end());
      qkv_bias.insert(qkv_bias.end(), bias.begin(), bias.end());
    }
    const auto qkv = reference_linear(hidden, tokens, h, qkv_weight, qkv_bias, 3 * h, nullptr, nullptr);
    const auto context = reference_attention(qkv, mask, in.batch, in.length, c.num_heads, c.head_size());
    auto attention = reference_linear(context, tokens, h, w("attention.output.dense.weight"), w("attention.output.dense.bias"), h,
                                      nullptr, &hidden);
    hidden = reference_layer_norm(attention, tokens, h, w("attention.output.LayerNorm.weight"),
                                  w("attention.output.LayerNorm.bias"), c.layer_norm_eps);
    const auto intermediate = reference_linear(hidden, tokens, h, w("intermediate.dense.weight"), w("intermediate.dense.bias"), f,
                                               &c.activation, nullptr);
    auto output = reference_linear(intermediate, tokens, f, w("output.dense.weight"), w("output.dense.bias"), h, nullptr, &hidden);
    hidden = reference_layer_norm(output, tokens, h, w("output.LayerNorm.weight"), w("output.LayerNorm.bias"), c.layer_norm_eps);
  }
  ReferenceOutputs out;
  if (model.metadata.has_head())
    out.logits = reference_linear(hidden, tokens, h, values(kClassifierWeight), values(kClassifierBias),
                                  static_cast<int64_t>(model.metadata.labels.size()), nullptr, nullptr);
  out.last_hidden_state = std::move(hidden);
  return out;
}

}  // namespace halfserve::testing

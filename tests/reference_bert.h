#pragma once

#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/format/frozen_model.h"

// A plain, loop-by-loop BERT forward pass with double accumulation: the independent reference every backend
// is checked against. Slow on purpose; tiny models only.
namespace halfserve::testing {

struct ReferenceOutputs {
  std::vector<float> logits;             // [batch, length, labels]
  std::vector<float> last_hidden_state;  // [batch, length, hidden]
};

ReferenceOutputs reference_forward(const FrozenModel& model, const InputBatch& inputs);

// Building blocks, exposed for the per-op tests. Matrices are row-major.
// dst[r][o] = act(sum_i src[r][i] * weight[o][i] + bias[o]) (+ residual[r][o])
std::vector<float> reference_linear(const std::vector<float>& src, int64_t rows, int64_t in, const std::vector<float>& weight,
                                    const std::vector<float>& bias, int64_t out, const Activation* activation,
                                    const std::vector<float>* residual);
std::vector<float> reference_layer_norm(const std::vector<float>& src, int64_t rows, int64_t cols,
                                        const std::vector<float>& gamma, const std::vector<float>& beta, double eps);
// qkv [batch*length, 3*hidden] -> context [batch*length, hidden]; masked keys get -10000.
std::vector<float> reference_attention(const std::vector<float>& qkv, const std::vector<int32_t>& mask, int64_t batch,
                                       int64_t length, int64_t heads, int64_t head_size);
double reference_gelu(double x, Activation activation);

}  // namespace halfserve::testing

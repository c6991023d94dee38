#pragma once

#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <tuple>

#include "halfserve/engine/backend.h"

namespace halfserve::cpu {

// The process-wide oneDNN CPU engine and this thread's stream on it.
dnnl::engine& cpu_engine();
dnnl::stream& thread_stream();
dnnl::memory::data_type dnnl_type(DType dtype);
// Whether the CPU runs bf16 GEMMs natively (AVX512-BF16 or AMX).
bool has_native_bf16();
// Whether oneDNN's int8 GEMMs are exact on this CPU (VNNI's 32-bit dot products; without it they saturate).
bool has_int8_dot_product();

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);

  Device device() const override { return Device::cpu; }
  std::string description() const override;
  DType compute_dtype(Precision precision) const override;

  std::shared_ptr<void> allocate(size_t bytes) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  DeviceTensor upload(const TensorView& tensor, std::optional<DType> as) override;

  std::unique_ptr<LinearWeights> prepare_linear(const TensorView& weight, const TensorView& bias,
                                                const LinearSpec& spec, const TensorView* weight_scales) override;
  void linear(const LinearWeights& weights, const MatrixRef& src, const MatrixRef& dst, const float* residual) override;
  void embed_layer_norm(const PackedTokens& tokens, const EmbeddingTables& tables, const LayerNormParams& norm,
                        const MatrixRef& dst, const MatrixRef* dst_low) override;
  void layer_norm(const float* src, const LayerNormParams& norm, const MatrixRef& dst, const MatrixRef* dst_low) override;
  void attention(const AttentionArgs& args) override;
  // Runs the ops with this backend's thread count, whatever the caller's OpenMP team is (see the .cc).
  void run_sequence(std::unique_ptr<CallerState>& state, const OpSequence& sequence, const std::function<void()>& ops) override;

 private:
  struct AttentionPrimitives {
    dnnl::matmul scores;
    dnnl::softmax_v2_forward softmax;
    dnnl::matmul context;
  };
  // sequences, length, heads, head size, activation dtype, key mask
  using AttentionKey = std::tuple<int64_t, int64_t, int64_t, int64_t, DType, bool>;
  AttentionPrimitives attention_primitives(const AttentionKey& key);
  // Attention of `count` consecutive sequences of `length` tokens, starting at sequence `first`.
  void attend_run(const AttentionArgs& args, size_t first, int64_t count, int64_t length);

  int threads_;
  std::mutex attention_mutex_;
  std::map<AttentionKey, AttentionPrimitives> attention_cache_;
};

}  // namespace halfserve::cpu

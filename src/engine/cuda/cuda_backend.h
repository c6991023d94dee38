#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "halfserve/engine/backend.h"

namespace halfserve::cuda {

// What one host thread uses on the device: its own stream (a serving worker's batches never wait on another's),
// cuBLASLt workspace, and pinned staging memory for the small per-batch uploads (token ids, offsets). Contexts live
// as long as the backend: callers are fixed worker threads (the server's batch workers, the CLI's main thread), not
// a thread per request. Ops queue on the calling thread's stream; results are read with copy_to_host or
// synchronize() from that same thread.
struct StreamContext {
  cudaStream_t stream = nullptr;
  std::shared_ptr<void> gemm_workspace;
  size_t gemm_workspace_bytes = 0;
  std::shared_ptr<void> pinned;  // host memory, page-locked
  size_t pinned_bytes = 0;
  size_t pinned_used = 0;  // bytes handed out since the stream last synchronized
  std::shared_ptr<void> offsets;  // device copy of the attention's sequence offsets; the stream orders its reuse
  size_t offsets_bytes = 0;

  ~StreamContext();
};

class CudaBackend final : public Backend {
 public:
  // Throws Error naming the problem when there is no usable CUDA device.
  explicit CudaBackend(int device_index);
  ~CudaBackend() override;

  Device device() const override { return Device::cuda; }
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
  void synchronize() override;
  // Records a batch shape's forward pass as a CUDA graph the second time it is seen and replays it afterwards.
  void run_sequence(std::unique_ptr<CallerState>& state, const OpSequence& sequence, const std::function<void()>& ops) override;

  cublasLtHandle_t cublas() const { return cublas_; }
  // The calling thread's stream and buffers, created on its first call.
  StreamContext& context();
  // Copies `bytes` from host memory through this thread's pinned staging buffer, asynchronously on its stream.
  void stage_to_device(void* dst, const void* src, size_t bytes);

 private:
  int device_index_ = 0;
  cudaDeviceProp properties_{};
  cublasLtHandle_t cublas_ = nullptr;
  const uint64_t generation_;  // tells a thread's cached context apart from one of a destroyed backend
  std::mutex contexts_mutex_;
  std::unordered_map<std::thread::id, std::unique_ptr<StreamContext>> contexts_;
};

}  // namespace halfserve::cuda

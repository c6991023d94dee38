#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "halfserve/engine/device.h"
#include "halfserve/format/model_metadata.h"
#include "halfserve/format/tensor.h"

// The whole contract between the model code (engine/bert_model.cc, device-agnostic) and a compute backend.
// A backend owns its device memory, prepares weights once at load, and runs the handful of ops a BERT token
// classifier needs. Activations are row-major matrices: rows = tokens, cols = features.
namespace halfserve {

// A tensor resident in a backend's memory. `owner` keeps it alive (null for views into the model file).
struct DeviceTensor {
  std::shared_ptr<void> owner;
  const void* data = nullptr;
  DType dtype = DType::f32;
  Shape shape;
};

// A matrix in backend memory an op reads or writes.
struct MatrixRef {
  void* data = nullptr;
  DType dtype = DType::f32;
  int64_t rows = 0;
  int64_t cols = 0;
};

// dst = act(src · weightᵀ + bias) [+ residual]; weight is [out_features, in_features] as stored in the file.
struct LinearSpec {
  int64_t in_features = 0;
  int64_t out_features = 0;
  // f32, bf16 or f16 (CUDA): the type of src and of the packed weights. i8: I8 weights with per-output-channel scales; src
  // is f32, quantized per row on each call, and dst f32.
  DType compute_dtype = DType::f32;
  DType dst_dtype = DType::f32;  // f32 or the 16-bit compute type (f32 for i8)
  std::optional<Activation> activation;
  bool add_residual = false;  // residual is f32 [rows, out_features]
};

class LinearWeights {
 public:
  explicit LinearWeights(LinearSpec spec) : spec_(std::move(spec)) {}
  virtual ~LinearWeights() = default;
  const LinearSpec& spec() const { return spec_; }

 private:
  LinearSpec spec_;
};

struct LayerNormParams {
  const float* gamma = nullptr;  // f32 [cols], backend memory
  const float* beta = nullptr;
  float eps = 1e-12f;
};

// The tokens of a batch packed back to back, padding removed (backend memory, int32, [tokens] each): every op
// works on real tokens only, so a batch of short and long rows costs what its tokens cost.
struct PackedTokens {
  const int32_t* input_ids = nullptr;
  const int32_t* token_type_ids = nullptr;
  const int32_t* positions = nullptr;  // each token's position in its own sequence
  int64_t tokens = 0;
};

struct EmbeddingTables {
  DeviceTensor word;      // [vocab, hidden], any float dtype, or I8 with word_scales
  DeviceTensor position;  // [max_positions, hidden]
  DeviceTensor token_type;  // [type_vocab, hidden]
  DeviceTensor word_scales;  // F32 [vocab] where word is I8 (row r holds word[r] × word_scales[r]); empty otherwise
};

// Multi-head self-attention of each sequence over its own tokens, from a fused projection qkv = [Q | K | V]
// ([tokens, 3*hidden], f32 or bf16). Sequence s holds packed tokens [sequence_offsets[s], sequence_offsets[s+1]).
// Scores, the mask and the softmax are fp32; keys whose key_mask is 0 (a row whose mask has holes) get −10000
// added to their scores.
struct AttentionArgs {
  const void* qkv = nullptr;
  DType qkv_dtype = DType::f32;
  std::span<const int64_t> sequence_offsets;  // host memory, sequences + 1 entries
  const int32_t* key_mask = nullptr;          // backend memory, [tokens]; null when every key is real
  int64_t num_heads = 0;
  int64_t head_size = 0;
  MatrixRef context;  // [tokens, hidden], same dtype as qkv
  const int32_t* device_offsets = nullptr;  // optional: sequence_offsets as int32 in backend memory
};

// What a backend keeps for one caller between calls (CUDA: its recorded graphs); the caller's Workspace holds it.
class CallerState {
 public:
  virtual ~CallerState() = default;
};

// A forward pass's fixed sequence of ops, described by what decides every op and argument in it.
struct OpSequence {
  uint64_t model_id = 0;                      // the model issuing the ops (its weights)
  std::span<const int64_t> sequence_offsets;  // the packed batch's shape (host memory)
  bool key_mask = false;                      // some sequence has masked keys
  bool head = false;                          // the classifier runs
  uint64_t generation = 0;                    // the caller's buffers: the same generation means the same addresses
  int64_t tokens = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  // One line for logs and tables: device, library, ISA, threads.
  virtual std::string description() const = 0;
  // The GEMM input type used for a requested precision (fp16 weights may compute in f32 or bf16).
  virtual DType compute_dtype(Precision precision) const = 0;

  virtual std::shared_ptr<void> allocate(size_t bytes) = 0;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  // Places a tensor in backend memory, converted to `as` when given (LayerNorm and biases go to f32).
  virtual DeviceTensor upload(const TensorView& tensor, std::optional<DType> as) = 0;

  // `weight_scales` (F32 [out_features]) accompany I8 weights: weight[o][i] = int8[o][i] * scale[o].
  virtual std::unique_ptr<LinearWeights> prepare_linear(const TensorView& weight, const TensorView& bias,
                                                        const LinearSpec& spec, const TensorView* weight_scales = nullptr) = 0;
  virtual void linear(const LinearWeights& weights, const MatrixRef& src, const MatrixRef& dst,
                      const float* residual) = 0;

  // dst = LayerNorm(word[id] + position[position] + token_type[type]); dst_low, when given, gets a copy in
  // the 16-bit activation type (bf16 on CPU, f16 or bf16 on CUDA).
  virtual void embed_layer_norm(const PackedTokens& tokens, const EmbeddingTables& tables, const LayerNormParams& norm,
                                const MatrixRef& dst, const MatrixRef* dst_low) = 0;
  // dst = LayerNorm(src) with fp32 statistics; src and dst f32 (may alias); dst_low as above.
  virtual void layer_norm(const float* src, const LayerNormParams& norm, const MatrixRef& dst,
                          const MatrixRef* dst_low) = 0;
  virtual void attention(const AttentionArgs& args) = 0;

  // Waits for queued work (a no-op on CPU).
  virtual void synchronize() {}

  // Issues `ops`. A backend may record them the first times a sequence is seen and replay the recording later
  // (CUDA graphs: one launch instead of one per op, which is what bounds small batches on a GPU). The default
  // simply runs them.
  virtual void run_sequence(std::unique_ptr<CallerState>& state, const OpSequence& sequence, const std::function<void()>& ops) {
    ops();
  }
};

struct BackendOptions {
  Device device = Device::cpu;
  int threads = 0;  // 0: all cores
};

// Throws Error when the device is unavailable (CUDA not built in, or no GPU), saying which.
std::shared_ptr<Backend> create_backend(const BackendOptions& options);

}  // namespace halfserve

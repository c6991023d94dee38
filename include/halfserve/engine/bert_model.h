#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "halfserve/engine/backend.h"
#include "halfserve/format/frozen_model.h"

namespace halfserve {

// A padded batch on the host, row-major [batch, length]. Missing masks mean "all ones", missing type ids "all
// zeros".
struct InputBatch {
  int64_t batch = 0;
  int64_t length = 0;
  std::vector<int32_t> input_ids;
  std::vector<int32_t> attention_mask;
  std::vector<int32_t> token_type_ids;
};

struct OutputSelection {
  bool logits = true;
  bool label_ids = true;
  bool last_hidden_state = false;
  bool probabilities = false;
};

struct OutputBatch {
  int64_t batch = 0;
  int64_t length = 0;
  std::vector<float> logits;             // [batch, length, num_labels]
  std::vector<int32_t> label_ids;        // [batch, length], argmax of logits
  std::vector<float> last_hidden_state;  // [batch, length, hidden]
  std::vector<float> probabilities;      // [batch, length, num_labels], softmax of logits (fp32)
};

struct EngineOptions {
  Device device = Device::cpu;
  std::optional<Precision> precision;  // unset: the file's own precision
  int threads = 0;                     // 0: all cores
};

// Reusable activation buffers for one caller at a time; grows to the largest batch seen and is then reused.
class Workspace {
 public:
  void* buffer(size_t slot, size_t bytes, Backend& backend);
  // Changes whenever a buffer is (re)allocated, so recordings of ops on the old addresses are not replayed.
  uint64_t generation() const { return generation_; }
  std::unique_ptr<CallerState>& backend_state() { return backend_state_; }

 private:
  std::vector<std::pair<std::shared_ptr<void>, size_t>> slots_;
  const Backend* owner_ = nullptr;  // the backend whose memory the slots are
  uint64_t generation_ = 0;
  std::unique_ptr<CallerState> backend_state_;  // declared last: destroyed before the buffers it refers to
};

// A BERT token classifier prepared on a backend: weights converted and packed once, immutable afterwards, so
// many threads may run it at once, each with its own Workspace.
class BertModel {
 public:
  // Padded tokens (rows × length) one call may run: bounds the activations a call allocates (the FFN buffer is
  // tokens × intermediate floats).
  static constexpr int64_t kMaxBatchTokens = int64_t{1} << 18;

  BertModel(std::shared_ptr<const FrozenModel> model, std::shared_ptr<Backend> backend, Precision precision);
  ~BertModel();

  // Loads a frozen file; casts it when the requested precision differs from the file's.
  static std::shared_ptr<const BertModel> load(const std::string& path, const EngineOptions& options);
  static std::shared_ptr<const BertModel> from_model(FrozenModel model, const EngineOptions& options);

  // Throws InvalidArgument naming the first bad element: shape, id outside the vocabulary, length beyond the
  // model's positions, mask value not 0/1, type id outside the type vocabulary.
  void validate(const InputBatch& inputs) const;
  OutputBatch run(const InputBatch& inputs, const OutputSelection& outputs, Workspace& workspace) const;

  const ModelMetadata& metadata() const { return model_->metadata; }
  const BertConfig& config() const { return model_->metadata.config; }
  Precision precision() const { return precision_; }
  DType compute_dtype() const { return compute_dtype_; }
  // The type of the activations between GEMMs (Q, K, V, attention context, FFN intermediate): bf16 when the GEMMs
  // run in bf16, f32 otherwise. Residual sums and LayerNorm outputs are always f32.
  DType activation_dtype() const { return activation_dtype_; }
  const Backend& backend() const { return *backend_; }
  // "fp16 weights computed as F32 GEMMs on cpu: oneDNN 2.6.3, avx512_core_bf16, 2 threads"
  std::string describe() const;

 private:
  struct Layer;
  std::shared_ptr<const FrozenModel> model_;
  std::shared_ptr<Backend> backend_;
  Precision precision_;
  DType compute_dtype_;
  DType activation_dtype_;
  EmbeddingTables embeddings_;
  DeviceTensor embedding_norm_gamma_, embedding_norm_beta_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::unique_ptr<LinearWeights> classifier_;
  uint64_t id_;  // unique per model in this process: recorded op sequences are tied to it
};

}  // namespace halfserve

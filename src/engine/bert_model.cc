#include "halfserve/engine/bert_model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "halfserve/engine/precision_cast.h"
#include "halfserve/format/bert_tensors.h"
#include "halfserve/util/error.h"

namespace halfserve {

namespace {

// Workspace slots; each is one activation buffer reused across layers and calls.
enum Slot : size_t {
  kIds, kTypes, kPositions, kKeyMask, kOffsets, kHidden, kHiddenLow, kQkv, kContext, kResidualSum, kIntermediate, kLogits, kSlotCount
};

// The real tokens of a padded batch, packed back to back: each row ends after its last unmasked token (trailing
// padding is dropped, so nothing is computed for it); masked tokens inside a row stay, as keys no one attends to.
struct PackedBatch {
  std::vector<int64_t> offsets{0};  // sequences + 1
  std::vector<int64_t> source;      // packed token -> its index in the padded [batch, length] layout
  std::vector<int32_t> ids, types, positions, key_mask;
  bool has_holes = false;           // some row masks a token before its last real one

  explicit PackedBatch(const InputBatch& in) {
    for (int64_t r = 0; r < in.batch; ++r) {
      const size_t row = static_cast<size_t>(r * in.length);
      int64_t real = in.length;
      if (!in.attention_mask.empty())
        while (real > 0 && in.attention_mask[row + static_cast<size_t>(real) - 1] == 0) --real;
      for (int64_t t = 0; t < real; ++t) {
        source.push_back(static_cast<int64_t>(row) + t);
        ids.push_back(in.input_ids[row + static_cast<size_t>(t)]);
        types.push_back(in.token_type_ids.empty() ? 0 : in.token_type_ids[row + static_cast<size_t>(t)]);
        positions.push_back(static_cast<int32_t>(t));
        const int32_t mask = in.attention_mask.empty() ? 1 : in.attention_mask[row + static_cast<size_t>(t)];
        key_mask.push_back(mask);
        has_holes |= mask == 0;
      }
      offsets.push_back(static_cast<int64_t>(source.size()));
    }
  }
  int64_t tokens() const { return static_cast<int64_t>(source.size()); }
};

// Spreads packed rows of `width` values back to the padded layout; padding positions stay zero.
template <typename T>
std::vector<T> unpack(const std::vector<T>& packed, const PackedBatch& batch, int64_t padded_tokens, int64_t width) {
  std::vector<T> padded(static_cast<size_t>(padded_tokens * width), T{});
  for (size_t i = 0; i < batch.source.size(); ++i)
    std::copy_n(packed.begin() + static_cast<std::ptrdiff_t>(i * static_cast<size_t>(width)), width,
                padded.begin() + static_cast<std::ptrdiff_t>(batch.source[i] * width));
  return padded;
}

TensorView concatenate_rows(const std::vector<const TensorView*>& parts, std::vector<float>& storage) {
  storage.clear();
  int64_t rows = 0;
  for (const TensorView* part : parts) {
    const std::vector<float> values = part->to_float();
    storage.insert(storage.end(), values.begin(), values.end());
    rows += part->shape[0];
  }
  Shape shape = parts.front()->shape;
  shape[0] = rows;
  return TensorView{DType::f32, shape,
                    std::span<const std::byte>(reinterpret_cast<const std::byte*>(storage.data()), storage.size() * sizeof(float))};
}

// Q, K and V stacked as rows of one [3·hidden, hidden] weight, so one GEMM computes all three. Float weights are
// widened to f32; I8 weights (int8 files) stay I8, with their per-row scales stacked likewise.
struct StackedWeight {
  TensorView weight;
  std::optional<TensorView> scales;
  std::vector<float> values, scale_values;
  std::vector<std::byte> levels;

  const TensorView* scales_or_null() const { return scales ? &*scales : nullptr; }
};

StackedWeight stack_weights(const TensorStore& tensors, const std::vector<std::string>& names) {
  StackedWeight stacked;
  std::vector<const TensorView*> parts, scales;
  for (const auto& name : names) parts.push_back(&tensors.at(name));
  if (parts.front()->dtype != DType::i8) {
    stacked.weight = concatenate_rows(parts, stacked.values);
    return stacked;
  }
  int64_t rows = 0;
  for (const TensorView* part : parts) {
    stacked.levels.insert(stacked.levels.end(), part->data.begin(), part->data.end());
    rows += part->shape[0];
  }
  stacked.weight = TensorView{DType::i8, {rows, parts.front()->shape[1]}, stacked.levels};
  for (const auto& name : names) scales.push_back(&tensors.at(bert_names::weight_scale(name)));
  stacked.scales = concatenate_rows(scales, stacked.scale_values);
  return stacked;
}

std::vector<float> softmax_rows(const std::vector<float>& logits, int64_t width) {
  std::vector<float> probabilities(logits.size());
  for (size_t row = 0; row < logits.size(); row += static_cast<size_t>(width)) {
    const float largest = *std::max_element(logits.begin() + static_cast<std::ptrdiff_t>(row),
                                            logits.begin() + static_cast<std::ptrdiff_t>(row) + width);
    double total = 0;
    for (int64_t k = 0; k < width; ++k) total += probabilities[row + k] = std::exp(logits[row + k] - largest);
    for (int64_t k = 0; k < width; ++k) probabilities[row + k] = static_cast<float>(probabilities[row + k] / total);
  }
  return probabilities;
}

std::string position(int64_t row, int64_t column) {
  return "[" + std::to_string(row) + "][" + std::to_string(column) + "]";
}

}  // namespace

struct BertModel::Layer {
  std::unique_ptr<LinearWeights> qkv, attention_output, intermediate, output;
  DeviceTensor attention_norm_gamma, attention_norm_beta, output_norm_gamma, output_norm_beta;
};

void* Workspace::buffer(size_t slot, size_t bytes, Backend& backend) {
  if (owner_ != &backend) {
    // Another backend (a CPU model after a CUDA one): its memory is elsewhere.
    slots_.clear();
    owner_ = &backend;
    ++generation_;
  }
  if (slots_.size() <= slot) slots_.resize(slot + 1);
  auto& [memory, capacity] = slots_[slot];
  if (capacity < bytes || memory == nullptr) {
    memory = backend.allocate(bytes);
    capacity = bytes;
    ++generation_;
  }
  return memory.get();
}

namespace {
std::atomic<uint64_t> next_model_id{1};
}  // namespace

BertModel::BertModel(std::shared_ptr<const FrozenModel> model, std::shared_ptr<Backend> backend, Precision precision)
    : model_(std::move(model)), backend_(std::move(backend)), precision_(precision), id_(next_model_id++) {
  model_->validate();
  compute_dtype_ = backend_->compute_dtype(precision_);
  // 16-bit GEMMs read and write 16-bit activations; f32 and int8 GEMMs (int8 quantizes each row itself) read f32.
  activation_dtype_ = compute_dtype_ == DType::bf16 || compute_dtype_ == DType::f16 ? compute_dtype_ : DType::f32;
  const BertConfig& c = model_->metadata.config;
  const TensorStore& t = model_->tensors;
  Backend& b = *backend_;
  using namespace bert_names;

  const std::string word_embeddings = embedding("word_embeddings");
  embeddings_ = {b.upload(t.at(word_embeddings), std::nullopt),
                 b.upload(t.at(embedding("position_embeddings")), std::nullopt),
                 b.upload(t.at(embedding("token_type_embeddings")), std::nullopt), {}};
  if (const TensorView* word_scales = t.find(weight_scale(word_embeddings)))
    embeddings_.word_scales = b.upload(*word_scales, DType::f32);
  embedding_norm_gamma_ = b.upload(t.at(embedding_layer_norm("weight")), DType::f32);
  embedding_norm_beta_ = b.upload(t.at(embedding_layer_norm("bias")), DType::f32);

  const int64_t h = c.hidden_size, f = c.intermediate_size;
  auto spec = [&](int64_t in, int64_t out, DType dst, std::optional<Activation> activation, bool residual) {
    return LinearSpec{in, out, compute_dtype_, dst, activation, residual};
  };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    auto layer = std::make_unique<Layer>();
    auto w = [&](const char* suffix) -> const TensorView& { return t.at(bert_names::layer(i, suffix)); };
    // The per-output-channel scales of an int8 file's weight `suffix`; null in other files.
    auto scales = [&](const char* suffix) { return t.find(weight_scale(bert_names::layer(i, suffix))); };
    const StackedWeight qkv_weight =
        stack_weights(t, {bert_names::layer(i, "attention.self.query.weight"), bert_names::layer(i, "attention.self.key.weight"),
                          bert_names::layer(i, "attention.self.value.weight")});
    std::vector<float> bias_scratch;
    const TensorView qkv_bias = concatenate_rows(
        {&w("attention.self.query.bias"), &w("attention.self.key.bias"), &w("attention.self.value.bias")}, bias_scratch);
    layer->qkv = b.prepare_linear(qkv_weight.weight, qkv_bias, spec(h, 3 * h, activation_dtype_, std::nullopt, false),
                                  qkv_weight.scales_or_null());
    layer->attention_output = b.prepare_linear(w("attention.output.dense.weight"), w("attention.output.dense.bias"),
                                               spec(h, h, DType::f32, std::nullopt, true), scales("attention.output.dense.weight"));
    layer->intermediate = b.prepare_linear(w("intermediate.dense.weight"), w("intermediate.dense.bias"),
                                           spec(h, f, activation_dtype_, c.activation, false), scales("intermediate.dense.weight"));
    layer->output = b.prepare_linear(w("output.dense.weight"), w("output.dense.bias"),
                                     spec(f, h, DType::f32, std::nullopt, true), scales("output.dense.weight"));
    layer->attention_norm_gamma = b.upload(w("attention.output.LayerNorm.weight"), DType::f32);
    layer->attention_norm_beta = b.upload(w("attention.output.LayerNorm.bias"), DType::f32);
    layer->output_norm_gamma = b.upload(w("output.LayerNorm.weight"), DType::f32);
    layer->output_norm_beta = b.upload(w("output.LayerNorm.bias"), DType::f32);
    layers_.push_back(std::move(layer));
  }
  // The head is never quantized (int8 files keep it fp16): it computes in the GEMM inputs' type, f32 for int8.
  if (model_->metadata.has_head())
    classifier_ = b.prepare_linear(t.at(kClassifierWeight), t.at(kClassifierBias),
                                   {h, static_cast<int64_t>(model_->metadata.labels.size()), activation_dtype_, DType::f32,
                                    std::nullopt, false});
}

BertModel::~BertModel() = default;

std::shared_ptr<const BertModel> BertModel::from_model(FrozenModel model, const EngineOptions& options) {
  auto backend = create_backend({options.device, options.threads});
  const Precision file_precision = model.metadata.provenance.precision;
  const Precision precision = options.precision.value_or(file_precision);
  auto shared = std::make_shared<FrozenModel>(precision == file_precision ? std::move(model)
                                                                          : cast_model(model, {precision, false}));
  return std::make_shared<const BertModel>(std::move(shared), std::move(backend), precision);
}

std::shared_ptr<const BertModel> BertModel::load(const std::string& path, const EngineOptions& options) {
  return from_model(load_frozen_model(path), options);
}

std::string BertModel::describe() const {
  const std::string scales = compute_dtype_ == DType::i8 ? " (per-channel weight scales, per-row dynamic activation scales)" : "";
  return std::string(precision_name(precision_)) + " weights computed as " + std::string(dtype_name(compute_dtype_)) +
         " GEMMs" + scales + " on " + backend_->description();
}

void BertModel::validate(const InputBatch& in) const {
  const BertConfig& c = config();
  if (in.batch < 1 || in.length < 1)
    throw InvalidArgument("empty batch: " + std::to_string(in.batch) + " rows of length " + std::to_string(in.length));
  if (in.length > c.max_positions)
    throw InvalidArgument("sequence length " + std::to_string(in.length) + " exceeds the model's maximum of " +
                          std::to_string(c.max_positions) + " positions");
  if (in.batch * in.length > kMaxBatchTokens)
    throw InvalidArgument("batch of " + std::to_string(in.batch * in.length) + " tokens exceeds the limit of " +
                          std::to_string(kMaxBatchTokens) + "; split it into smaller batches");
  const size_t count = static_cast<size_t>(in.batch * in.length);
  if (in.input_ids.size() != count)
    throw InvalidArgument("input_ids holds " + std::to_string(in.input_ids.size()) + " values, expected " +
                          std::to_string(in.batch) + " x " + std::to_string(in.length));
  if (!in.attention_mask.empty() && in.attention_mask.size() != count)
    throw InvalidArgument("attention_mask shape does not match input_ids");
  if (!in.token_type_ids.empty() && in.token_type_ids.size() != count)
    throw InvalidArgument("token_type_ids shape does not match input_ids");
  for (size_t i = 0; i < count; ++i) {
    const int64_t row = static_cast<int64_t>(i) / in.length, column = static_cast<int64_t>(i) % in.length;
    if (in.input_ids[i] < 0 || in.input_ids[i] >= c.vocab_size)
      throw InvalidArgument("input_ids" + position(row, column) + " = " + std::to_string(in.input_ids[i]) +
                            " is outside the vocabulary (0.." + std::to_string(c.vocab_size - 1) + ")");
    if (!in.attention_mask.empty() && in.attention_mask[i] != 0 && in.attention_mask[i] != 1)
      throw InvalidArgument("attention_mask" + position(row, column) + " = " + std::to_string(in.attention_mask[i]) +
                            " (must be 0 or 1)");
    if (!in.token_type_ids.empty() && (in.token_type_ids[i] < 0 || in.token_type_ids[i] >= c.type_vocab_size))
      throw InvalidArgument("token_type_ids" + position(row, column) + " = " + std::to_string(in.token_type_ids[i]) +
                            " is outside 0.." + std::to_string(c.type_vocab_size - 1));
  }
}

namespace {

// The outputs asked for, copied from the device and put back in the request's padded [batch, length] layout.
OutputBatch read_outputs(Backend& b, const PackedBatch& packed, const InputBatch& in, const OutputSelection& selection,
                         const MatrixRef* logits, const MatrixRef& hidden, int64_t labels) {
  const int64_t tokens = packed.tokens(), h = hidden.cols;
  OutputBatch out;
  out.batch = in.batch;
  out.length = in.length;
  const int64_t padded_tokens = in.batch * in.length;
  auto copy_back = [&](const MatrixRef& matrix, int64_t cols) {
    std::vector<float> values(static_cast<size_t>(tokens * cols));
    if (tokens > 0) {
      b.synchronize();
      b.copy_to_host(values.data(), matrix.data, values.size() * sizeof(float));
    }
    return values;
  };
  if (logits != nullptr) {
    const std::vector<float> values = copy_back(*logits, labels);
    if (selection.label_ids) {
      std::vector<int32_t> label_ids(static_cast<size_t>(tokens));
      for (int64_t i = 0; i < tokens; ++i) {
        const float* row = values.data() + i * labels;
        label_ids[static_cast<size_t>(i)] = static_cast<int32_t>(std::max_element(row, row + labels) - row);
      }
      out.label_ids = unpack(label_ids, packed, padded_tokens, 1);
    }
    if (selection.probabilities) out.probabilities = unpack(softmax_rows(values, labels), packed, padded_tokens, labels);
    if (selection.logits) out.logits = unpack(values, packed, padded_tokens, labels);
  }
  if (selection.last_hidden_state) out.last_hidden_state = unpack(copy_back(hidden, h), packed, padded_tokens, h);
  return out;
}

}  // namespace

OutputBatch BertModel::run(const InputBatch& in, const OutputSelection& selection, Workspace& ws) const {
  validate(in);
  const bool need_head = selection.logits || selection.label_ids || selection.probabilities;
  if (need_head && classifier_ == nullptr)
    throw InvalidArgument("this model has no classification head: only last_hidden_state is available");
  const BertConfig& c = config();
  Backend& b = *backend_;
  const PackedBatch packed(in);
  const int64_t tokens = packed.tokens(), h = c.hidden_size, f = c.intermediate_size;
  const bool low = activation_dtype_ != DType::f32;

  auto upload = [&](Slot slot, const std::vector<int32_t>& values) {
    auto* device = static_cast<int32_t*>(ws.buffer(slot, std::max<size_t>(1, values.size()) * sizeof(int32_t), b));
    b.copy_to_device(device, values.data(), values.size() * sizeof(int32_t));
    return device;
  };
  const PackedTokens batch{upload(kIds, packed.ids), upload(kTypes, packed.types), upload(kPositions, packed.positions), tokens};
  const int32_t* key_mask = packed.has_holes ? upload(kKeyMask, packed.key_mask) : nullptr;
  std::vector<int32_t> offsets32(packed.offsets.begin(), packed.offsets.end());
  const int32_t* device_offsets = upload(kOffsets, offsets32);

  // Every buffer is in place before the ops are issued: their addresses are part of what a backend may record.
  auto matrix = [&](Slot slot, DType dtype, int64_t cols) {
    return MatrixRef{ws.buffer(slot, static_cast<size_t>(std::max<int64_t>(1, tokens) * cols) * dtype_size(dtype), b), dtype,
                     tokens, cols};
  };
  const int64_t labels = static_cast<int64_t>(metadata().labels.size());
  const MatrixRef hidden = matrix(kHidden, DType::f32, h);
  const MatrixRef hidden_low = low ? matrix(kHiddenLow, activation_dtype_, h) : MatrixRef{};
  const MatrixRef& gemm_input = low ? hidden_low : hidden;
  const MatrixRef qkv = matrix(kQkv, activation_dtype_, 3 * h);
  const MatrixRef context = matrix(kContext, activation_dtype_, h);
  const MatrixRef residual_sum = matrix(kResidualSum, DType::f32, h);
  const MatrixRef intermediate = matrix(kIntermediate, activation_dtype_, f);
  const MatrixRef logits = need_head ? matrix(kLogits, DType::f32, labels) : MatrixRef{};

  auto norm = [&](const DeviceTensor& gamma, const DeviceTensor& beta) {
    return LayerNormParams{static_cast<const float*>(gamma.data), static_cast<const float*>(beta.data), c.layer_norm_eps};
  };
  auto forward = [&] {
    b.embed_layer_norm(batch, embeddings_, norm(embedding_norm_gamma_, embedding_norm_beta_), hidden,
                       low ? &hidden_low : nullptr);
    for (const auto& layer : layers_) {
      b.linear(*layer->qkv, gemm_input, qkv, nullptr);
      b.attention({qkv.data, activation_dtype_, packed.offsets, key_mask, c.num_heads, c.head_size(), context, device_offsets});
      b.linear(*layer->attention_output, context, residual_sum, static_cast<const float*>(hidden.data));
      b.layer_norm(static_cast<const float*>(residual_sum.data), norm(layer->attention_norm_gamma, layer->attention_norm_beta),
                   hidden, low ? &hidden_low : nullptr);
      b.linear(*layer->intermediate, gemm_input, intermediate, nullptr);
      b.linear(*layer->output, intermediate, residual_sum, static_cast<const float*>(hidden.data));
      b.layer_norm(static_cast<const float*>(residual_sum.data), norm(layer->output_norm_gamma, layer->output_norm_beta),
                   hidden, low ? &hidden_low : nullptr);
    }
    if (need_head) b.linear(*classifier_, gemm_input, logits, nullptr);
  };
  // The ops and their arguments follow from the sequence lengths, mask holes and the head alone.
  if (tokens > 0) b.run_sequence(ws.backend_state(), {id_, packed.offsets, packed.has_holes, need_head, ws.generation(), tokens}, forward);

  OutputBatch out = read_outputs(b, packed, in, selection, need_head ? &logits : nullptr, hidden, labels);
  // Nothing stays queued on a device after run() returns, even when no output was read back.
  b.synchronize();
  return out;
}

}  // namespace halfserve

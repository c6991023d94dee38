// Every backend op against the plain reference, for every available backend and compute type (ggml's
// test-backend-ops idea): a new backend is covered by adding it to backends_under_test().
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "halfserve/engine/backend.h"
#include "halfserve/util/error.h"
#include "halfserve/util/half.h"
#include "reference_bert.h"

namespace halfserve {
namespace {

using testing::reference_attention;
using testing::reference_layer_norm;
using testing::reference_linear;

struct OpCase {
  Device device;
  DType compute;
};

std::string case_name(const ::testing::TestParamInfo<OpCase>& info) {
  return std::string(device_name(info.param.device)) + "_" + std::string(dtype_name(info.param.compute));
}

std::vector<float> random_values(size_t count, float scale, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-scale, scale);
  std::vector<float> values(count);
  for (auto& value : values) value = distribution(generator);
  return values;
}

std::vector<float> round_to(const std::vector<float>& values, DType dtype) {
  std::vector<float> rounded(values);
  if (dtype == DType::bf16)
    for (auto& value : rounded) value = bfloat16_to_float(float_to_bfloat16(value));
  if (dtype == DType::f16)
    for (auto& value : rounded) value = half_to_float(float_to_half(value));
  return rounded;
}

TensorView view_of(const std::vector<float>& values, Shape shape) {
  return TensorView{DType::f32, std::move(shape), std::as_bytes(std::span(values))};
}

class BackendOpsTest : public ::testing::TestWithParam<OpCase> {
 protected:
  void SetUp() override {
    try {
      backend_ = create_backend({GetParam().device, 0});
    } catch (const Error& e) {
      GTEST_SKIP() << "backend " << device_name(GetParam().device) << " unavailable: " << e.what();
    }
    const DType compute = GetParam().compute;
    const Precision precision = compute == DType::bf16 ? Precision::bf16 : compute == DType::f16 ? Precision::fp16 : Precision::fp32;
    if (backend_->compute_dtype(precision) != compute)
      GTEST_SKIP() << "this device computes " << precision_name(precision) << " as "
                   << dtype_name(backend_->compute_dtype(precision)) << ", not " << dtype_name(compute);
  }

  // Device copy of host values in `dtype` (f32, bf16 or f16).
  void* to_device(const std::vector<float>& values, DType dtype) {
    auto memory = backend_->allocate(values.size() * dtype_size(dtype));
    if (dtype != DType::f32) {
      std::vector<uint16_t> narrowed(values.size());
      for (size_t i = 0; i < values.size(); ++i)
        narrowed[i] = dtype == DType::bf16 ? float_to_bfloat16(values[i]) : float_to_half(values[i]);
      backend_->copy_to_device(memory.get(), narrowed.data(), narrowed.size() * 2);
    } else {
      backend_->copy_to_device(memory.get(), values.data(), values.size() * 4);
    }
    keep_.push_back(memory);
    return memory.get();
  }
  void* device_buffer(size_t bytes) {
    keep_.push_back(backend_->allocate(bytes));
    return keep_.back().get();
  }
  std::vector<float> to_host(const void* data, size_t count, DType dtype) {
    backend_->synchronize();
    std::vector<float> values(count);
    if (dtype != DType::f32) {
      std::vector<uint16_t> narrowed(count);
      backend_->copy_to_host(narrowed.data(), data, count * 2);
      for (size_t i = 0; i < count; ++i)
        values[i] = dtype == DType::bf16 ? bfloat16_to_float(narrowed[i]) : half_to_float(narrowed[i]);
    } else {
      backend_->copy_to_host(values.data(), data, count * 4);
    }
    return values;
  }

  // An output buffer with sentinel guard bytes on both sides; check_guards() fails when an op wrote past its end
  // or before its start.
  void* guarded_buffer(size_t bytes) {
    std::vector<unsigned char> pattern(bytes + 2 * kGuardBytes, kSentinel);
    void* memory = device_buffer(pattern.size());
    backend_->copy_to_device(memory, pattern.data(), pattern.size());
    guarded_.push_back({memory, bytes});
    return static_cast<unsigned char*>(memory) + kGuardBytes;
  }
  void check_guards() {
    backend_->synchronize();
    for (const auto& [memory, bytes] : guarded_) {
      std::vector<unsigned char> content(bytes + 2 * kGuardBytes);
      backend_->copy_to_host(content.data(), memory, content.size());
      for (size_t i = 0; i < kGuardBytes; ++i) {
        ASSERT_EQ(content[i], kSentinel) << "written " << kGuardBytes - i << " bytes before the output";
        ASSERT_EQ(content[kGuardBytes + bytes + i], kSentinel) << "written " << i << " bytes past the output's end";
      }
    }
    guarded_.clear();
  }

  static constexpr size_t kGuardBytes = 64;  // keeps the output 64-byte aligned as the allocation is
  static constexpr unsigned char kSentinel = 0xA5;
  std::shared_ptr<Backend> backend_;
  std::vector<std::shared_ptr<void>> keep_;
  std::vector<std::pair<void*, size_t>> guarded_;
};

// Normalized mean squared error, ggml's measure: sum (actual - expected)^2 / sum expected^2.
double nmse(const std::vector<float>& actual, const std::vector<float>& expected) {
  double error = 0, norm = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    error += (static_cast<double>(actual[i]) - expected[i]) * (static_cast<double>(actual[i]) - expected[i]);
    norm += static_cast<double>(expected[i]) * expected[i];
  }
  return norm == 0 ? error : error / norm;
}

// The NMSE an op may reach in a dtype: f32's accumulation order, or a rounding or two of 8 (bf16) or 11 (f16)
// significant bits.
double max_nmse(DType dtype) { return dtype == DType::bf16 ? 5e-4 : dtype == DType::f16 ? 5e-5 : 1e-8; }

void expect_close(const std::vector<float>& actual, const std::vector<float>& expected, double relative, double absolute) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i)
    ASSERT_NEAR(actual[i], expected[i], absolute + relative * std::fabs(expected[i])) << "element " << i;
}

// Relative error of one rounding to `dtype` (with a margin), or f32's accumulation-order noise.
double relative_rounding(DType dtype) { return dtype == DType::bf16 ? 1.0 / 128 : dtype == DType::f16 ? 1.0 / 1024 : 1e-5; }

TEST_P(BackendOpsTest, Linear) {
  const DType compute = GetParam().compute;
  const int64_t rows = 37, in = 48, out = 80;
  const auto src = round_to(random_values(rows * in, 1.0f, 1), compute);
  const auto weight = round_to(random_values(out * in, 0.2f, 2), compute);
  const auto bias = random_values(out, 0.5f, 3);
  const auto residual = random_values(rows * out, 1.0f, 4);
  const Activation erf = Activation::gelu_erf, tanh = Activation::gelu_tanh;
  struct Variant {
    const Activation* activation;
    bool residual;
    DType dst;
  };
  for (const Variant& variant : {Variant{nullptr, false, DType::f32}, Variant{&erf, false, DType::f32},
                                 Variant{&tanh, false, compute}, Variant{nullptr, true, DType::f32}}) {
    LinearSpec spec{in, out, compute, variant.dst, std::nullopt, variant.residual};
    if (variant.activation) spec.activation = *variant.activation;
    const auto weights = backend_->prepare_linear(view_of(weight, {out, in}), view_of(bias, {out}), spec);
    const MatrixRef src_ref{to_device(src, compute), compute, rows, in};
    const MatrixRef dst_ref{device_buffer(rows * out * dtype_size(variant.dst)), variant.dst, rows, out};
    const float* residual_device = variant.residual ? static_cast<const float*>(to_device(residual, DType::f32)) : nullptr;
    backend_->linear(*weights, src_ref, dst_ref, residual_device);
    const auto expected = reference_linear(src, rows, in, weight, bias, out, variant.activation, variant.residual ? &residual : nullptr);
    // bf16 destinations round to 8 significant bits, f16 to 11; f32 accumulation differs from double only slightly.
    // A backend may round the GEMM result before GELU and again after it (CUDA does): near GELU's flat tail that
    // is an absolute error of about one rounding of an O(1) value.
    const double absolute = variant.dst == DType::f32 ? 1e-5 : relative_rounding(variant.dst);
    expect_close(to_host(dst_ref.data, rows * out, variant.dst), expected, relative_rounding(variant.dst), absolute);
  }
}

TEST_P(BackendOpsTest, LayerNorm) {
  const int64_t rows = 19, cols = 48;
  // Large offset and small spread: E[x^2] - E[x]^2 would lose the variance here.
  auto src = random_values(rows * cols, 0.01f, 5);
  for (auto& value : src) value += 300.0f;
  const auto gamma = random_values(cols, 1.0f, 6), beta = random_values(cols, 1.0f, 7);
  const float* gamma_device = static_cast<const float*>(to_device(gamma, DType::f32));
  const float* beta_device = static_cast<const float*>(to_device(beta, DType::f32));
  const MatrixRef dst{device_buffer(rows * cols * 4), DType::f32, rows, cols};
  const DType low_dtype = GetParam().compute == DType::f16 ? DType::f16 : DType::bf16;
  const MatrixRef low{device_buffer(rows * cols * 2), low_dtype, rows, cols};
  backend_->layer_norm(static_cast<const float*>(to_device(src, DType::f32)), {gamma_device, beta_device, 1e-12f}, dst, &low);
  const auto expected = reference_layer_norm(src, rows, cols, gamma, beta, 1e-12);
  expect_close(to_host(dst.data, rows * cols, DType::f32), expected, 2e-3, 2e-3);
  expect_close(to_host(low.data, rows * cols, low_dtype), expected, relative_rounding(low_dtype), 2e-3);
}

TEST_P(BackendOpsTest, EmbeddingLayerNormReadsEveryTableType) {
  const int64_t vocab = 11, positions = 9, types = 2, hidden = 24;
  const auto word = random_values(vocab * hidden, 1.0f, 8), position = random_values(positions * hidden, 1.0f, 9),
             type = random_values(types * hidden, 1.0f, 10);
  std::vector<uint16_t> word_half(word.size());
  for (size_t i = 0; i < word.size(); ++i) word_half[i] = float_to_half(word[i]);
  const TensorView word_view{DType::f16, {vocab, hidden}, std::as_bytes(std::span(word_half))};
  const EmbeddingTables tables{backend_->upload(word_view, std::nullopt), backend_->upload(view_of(position, {positions, hidden}), std::nullopt),
                               backend_->upload(view_of(type, {types, hidden}), std::nullopt), {}};
  // Two packed sequences of 6 and 3 tokens.
  const std::vector<int32_t> ids = {2, 5, 10, 0, 3, 7, 7, 1, 4}, type_ids = {0, 0, 1, 1, 0, 1, 0, 0, 1},
                             token_positions = {0, 1, 2, 3, 4, 5, 0, 1, 2};
  auto upload_ints = [&](const std::vector<int32_t>& values) {
    void* memory = device_buffer(values.size() * 4);
    backend_->copy_to_device(memory, values.data(), values.size() * 4);
    return static_cast<const int32_t*>(memory);
  };
  const int64_t tokens = static_cast<int64_t>(ids.size());
  const PackedTokens packed{upload_ints(ids), upload_ints(type_ids), upload_ints(token_positions), tokens};
  const std::vector<float> gamma(hidden, 1.5f), beta(hidden, -0.25f);
  const MatrixRef dst{device_buffer(tokens * hidden * 4), DType::f32, tokens, hidden};
  const LayerNormParams norm{static_cast<const float*>(to_device(gamma, DType::f32)),
                             static_cast<const float*>(to_device(beta, DType::f32)), 1e-12f};
  backend_->embed_layer_norm(packed, tables, norm, dst, nullptr);
  auto expected_rows = [&](const std::function<float(int64_t)>& word_value) {
    std::vector<float> sums(static_cast<size_t>(tokens * hidden));
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t k = 0; k < hidden; ++k)
        sums[t * hidden + k] = word_value(ids[t] * hidden + k) + position[token_positions[t] * hidden + k] + type[type_ids[t] * hidden + k];
    return reference_layer_norm(sums, tokens, hidden, gamma, beta, 1e-12);
  };
  expect_close(to_host(dst.data, tokens * hidden, DType::f32),
               expected_rows([&](int64_t i) { return half_to_float(word_half[i]); }), 1e-4, 1e-4);

  // I8 word rows with per-row scales (int8 files), where the backend takes them: each row is level × its scale.
  std::vector<int8_t> word_levels(word.size());
  for (size_t i = 0; i < word.size(); ++i) word_levels[i] = static_cast<int8_t>(static_cast<int>(i * 37 % 255) - 127);
  std::vector<float> word_scales(vocab);
  for (int64_t r = 0; r < vocab; ++r) word_scales[r] = 0.001f * static_cast<float>(r + 1);
  EmbeddingTables quantized = tables;
  try {
    quantized.word = backend_->upload(TensorView{DType::i8, {vocab, hidden}, std::as_bytes(std::span(word_levels))}, std::nullopt);
  } catch (const InvalidArgument& e) {
    GTEST_SKIP() << "this backend runs no int8: " << e.what();
  }
  quantized.word_scales = backend_->upload(view_of(word_scales, {vocab}), DType::f32);
  backend_->embed_layer_norm(packed, quantized, norm, dst, nullptr);
  expect_close(to_host(dst.data, tokens * hidden, DType::f32),
               expected_rows([&](int64_t i) { return word_levels[i] * word_scales[i / hidden]; }), 1e-4, 1e-4);
}

// Reference attention of packed sequences: each one on its own tokens, with its own key mask.
std::vector<float> packed_reference(const std::vector<float>& qkv, const std::vector<int64_t>& offsets,
                                    const std::vector<int32_t>& key_mask, int64_t heads, int64_t head_size) {
  const int64_t hidden = heads * head_size;
  std::vector<float> context;
  for (size_t s = 0; s + 1 < offsets.size(); ++s) {
    const int64_t length = offsets[s + 1] - offsets[s];
    const std::vector<float> part(qkv.begin() + offsets[s] * 3 * hidden, qkv.begin() + offsets[s + 1] * 3 * hidden);
    const std::vector<int32_t> mask(key_mask.begin() + offsets[s], key_mask.begin() + offsets[s + 1]);
    const auto result = reference_attention(part, mask, 1, length, heads, head_size);
    context.insert(context.end(), result.begin(), result.end());
  }
  return context;
}

TEST_P(BackendOpsTest, AttentionOfPackedSequencesOfEveryLength) {
  const DType dtype = GetParam().compute;
  const int64_t heads = 4, head_size = 8, hidden = heads * head_size;
  // Equal lengths side by side (one call), a single token, a long one, and one with a masked key inside.
  const std::vector<int64_t> offsets = {0, 7, 14, 21, 22, 39, 44};
  const int64_t tokens = offsets.back();
  const auto qkv = round_to(random_values(tokens * 3 * hidden, 2.0f, 11), dtype);
  for (const bool holes : {false, true}) {
    std::vector<int32_t> key_mask(static_cast<size_t>(tokens), 1);
    if (holes) key_mask[41] = key_mask[42] = 0;
    const MatrixRef context{device_buffer(tokens * hidden * dtype_size(dtype)), dtype, tokens, hidden};
    void* mask_device = device_buffer(key_mask.size() * 4);
    backend_->copy_to_device(mask_device, key_mask.data(), key_mask.size() * 4);
    backend_->attention({to_device(qkv, dtype), dtype, offsets, holes ? static_cast<const int32_t*>(mask_device) : nullptr, heads,
                         head_size, context});
    const auto expected = packed_reference(qkv, offsets, key_mask, heads, head_size);
    // bf16: probabilities and context round to 8 significant bits (f16: 11).
    expect_close(to_host(context.data, expected.size(), dtype), expected,
                 dtype == DType::bf16 ? 1.0 / 64 : dtype == DType::f16 ? 1.0 / 256 : 1e-5,
                 dtype == DType::bf16 ? 1e-2 : dtype == DType::f16 ? 2e-3 : 1e-5);
  }
}

// The sweeps below (ggml's test-backend-ops): generated shapes per op — one row to many, K with tails off every
// SIMD width, BERT's head sizes — every dtype the backend computes in, masks with holes, outputs fenced by guard bytes,
// and an NMSE bound per dtype rather than per-element tolerances tuned to one shape.
TEST_P(BackendOpsTest, LinearSweepOverShapes) {
  const DType compute = GetParam().compute;
  const Activation erf = Activation::gelu_erf;
  uint32_t seed = 100;
  for (const int64_t rows : {1, 2, 7, 64, 129, 300})
    for (const auto& [in, out] : std::vector<std::pair<int64_t, int64_t>>{{16, 16}, {17, 33}, {63, 130}, {256, 96}, {768, 64}})
      for (const bool gelu : {false, true}) {
        SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(in) + " -> " + std::to_string(out) + (gelu ? " gelu" : ""));
        const auto src = round_to(random_values(rows * in, 1.0f, ++seed), compute);
        const auto weight = round_to(random_values(out * in, 0.1f, ++seed), compute);
        const auto bias = random_values(out, 0.5f, ++seed);
        const auto residual = random_values(rows * out, 1.0f, ++seed);
        const DType dst_dtype = gelu ? compute : DType::f32;  // as the model runs: FFN-in to compute, the rest to f32
        LinearSpec spec{in, out, compute, dst_dtype, std::nullopt, !gelu};
        if (gelu) spec.activation = erf;
        const auto weights = backend_->prepare_linear(view_of(weight, {out, in}), view_of(bias, {out}), spec);
        const MatrixRef dst{guarded_buffer(rows * out * dtype_size(dst_dtype)), dst_dtype, rows, out};
        backend_->linear(*weights, {to_device(src, compute), compute, rows, in}, dst,
                         gelu ? nullptr : static_cast<const float*>(to_device(residual, DType::f32)));
        const auto expected = reference_linear(src, rows, in, weight, bias, out, gelu ? &erf : nullptr, gelu ? nullptr : &residual);
        EXPECT_LE(nmse(to_host(dst.data, rows * out, dst_dtype), expected), max_nmse(dst_dtype));
        check_guards();
      }
}

TEST_P(BackendOpsTest, LayerNormSweepOverWidths) {
  const DType low_dtype = GetParam().compute == DType::f16 ? DType::f16 : DType::bf16;
  uint32_t seed = 300;
  for (const int64_t rows : {1, 5, 64})
    for (const int64_t cols : {16, 17, 100, 384, 768, 1024}) {
      SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols));
      auto src = random_values(rows * cols, 2.0f, ++seed);
      for (auto& value : src) value += 3.0f;
      const auto gamma = random_values(cols, 1.0f, ++seed), beta = random_values(cols, 1.0f, ++seed);
      const MatrixRef dst{guarded_buffer(rows * cols * 4), DType::f32, rows, cols};
      const MatrixRef low{guarded_buffer(rows * cols * 2), low_dtype, rows, cols};
      backend_->layer_norm(static_cast<const float*>(to_device(src, DType::f32)),
                           {static_cast<const float*>(to_device(gamma, DType::f32)),
                            static_cast<const float*>(to_device(beta, DType::f32)), 1e-12f},
                           dst, &low);
      const auto expected = reference_layer_norm(src, rows, cols, gamma, beta, 1e-12);
      EXPECT_LE(nmse(to_host(dst.data, rows * cols, DType::f32), expected), max_nmse(DType::f32));
      EXPECT_LE(nmse(to_host(low.data, rows * cols, low_dtype), expected), max_nmse(low_dtype));
      check_guards();
    }
}

TEST_P(BackendOpsTest, AttentionSweepOverHeadSizesLengthsAndMasks) {
  const DType dtype = GetParam().compute;
  uint32_t seed = 500;
  for (const int64_t head_size : {8, 16, 32, 64, 96, 128})
    for (const int64_t heads : {1, 3})
      for (const bool holes : {false, true}) {
        SCOPED_TRACE("head size " + std::to_string(head_size) + ", " + std::to_string(heads) + " heads" +
                     (holes ? ", masked keys" : ""));
        const int64_t hidden = heads * head_size;
        // A single token, short and long sequences, one of 128 tokens, side by side in one packed batch.
        const std::vector<int64_t> offsets = {0, 1, 6, 39, 167, 170};
        const int64_t tokens = offsets.back();
        const auto qkv = round_to(random_values(tokens * 3 * hidden, 1.5f, ++seed), dtype);
        std::vector<int32_t> key_mask(static_cast<size_t>(tokens), 1);
        if (holes)  // holes inside sequences (never every key of one): padding in the middle, and at the end
          for (const int64_t t : {3, 10, 11, 50, 99, 160, 166, 168}) key_mask[static_cast<size_t>(t)] = 0;
        void* mask_device = device_buffer(key_mask.size() * 4);
        backend_->copy_to_device(mask_device, key_mask.data(), key_mask.size() * 4);
        const MatrixRef context{guarded_buffer(tokens * hidden * dtype_size(dtype)), dtype, tokens, hidden};
        backend_->attention({to_device(qkv, dtype), dtype, offsets, holes ? static_cast<const int32_t*>(mask_device) : nullptr,
                             heads, head_size, context});
        const auto expected = packed_reference(qkv, offsets, key_mask, heads, head_size);
        EXPECT_LE(nmse(to_host(context.data, expected.size(), dtype), expected), max_nmse(dtype));
        check_guards();
      }
}

std::vector<OpCase> backends_under_test() {
  return {{Device::cpu, DType::f32}, {Device::cpu, DType::bf16}, {Device::cuda, DType::f32}, {Device::cuda, DType::f16},
          {Device::cuda, DType::bf16}};
}

INSTANTIATE_TEST_SUITE_P(AllBackends, BackendOpsTest, ::testing::ValuesIn(backends_under_test()), case_name);

TEST(BackendTest, CudaWithoutDeviceIsAClearError) {
  try {
    create_backend({Device::cuda, 0});
    GTEST_SKIP() << "a CUDA device is present";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace halfserve

// int8 end to end: per-output-channel weight quantization and the int8 file format, the CPU int8 linear against
// the double-precision reference, whole models against fp32 and PyTorch, and the CLI.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "halfserve/engine/precision_cast.h"
#include "halfserve/engine/bert_model.h"
#include "halfserve/format/bert_tensors.h"
#include "halfserve/format/safetensors.h"
#include "halfserve/import/model_source.h"
#include "halfserve/synth/synth_model.h"
#include "halfserve/util/error.h"
#include "halfserve/util/half.h"
#include "reference_bert.h"
#include "test_support.h"

namespace halfserve {
namespace {

using testing::random_batch;

namespace fs = std::filesystem;
using testing::Contains;

constexpr const char* kQueryWeight = "bert.encoder.layer.0.attention.self.query.weight";

TensorView f32_view(const std::vector<float>& values, Shape shape) {
  return TensorView{DType::f32, std::move(shape), std::as_bytes(std::span(values))};
}

std::vector<float> random_values(size_t count, float scale, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-scale, scale);
  std::vector<float> values(count);
  for (auto& value : values) value = distribution(generator);
  return values;
}

std::vector<int8_t> levels_of(const TensorView& tensor) {
  const auto* data = reinterpret_cast<const int8_t*>(tensor.data.data());
  return {data, data + tensor.numel()};
}

std::vector<float> dequantize(const std::vector<int8_t>& levels, const std::vector<float>& scales) {
  const size_t cols = levels.size() / scales.size();
  std::vector<float> values(levels.size());
  for (size_t i = 0; i < levels.size(); ++i) values[i] = static_cast<float>(levels[i]) * scales[i / cols];
  return values;
}

// What the CPU int8 linear does to its f32 input, written out independently: per row, scale = max|x| / 127 and
// level = round-to-nearest-even(x · (127 / max|x|)); a zero row has scale 1 and levels 0. Returns the
// dequantized rows (level × scale), the values the GEMM effectively multiplies.
std::vector<float> quantize_rows_like_the_engine(const std::vector<float>& src, int64_t rows, int64_t cols,
                                                 std::vector<float>& scales) {
  std::vector<float> dequantized(src.size());
  scales.assign(static_cast<size_t>(rows), 1.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float max_abs = 0.0f;
    for (int64_t c = 0; c < cols; ++c) max_abs = std::max(max_abs, std::fabs(src[r * cols + c]));
    if (max_abs == 0.0f) {
      for (int64_t c = 0; c < cols; ++c) dequantized[r * cols + c] = 0.0f;
      continue;
    }
    const float inverse = 127.0f / max_abs;
    scales[r] = max_abs / 127.0f;
    for (int64_t c = 0; c < cols; ++c)
      dequantized[r * cols + c] = std::clamp(std::nearbyint(src[r * cols + c] * inverse), -127.0f, 127.0f) * scales[r];
  }
  return dequantized;
}

// ---------------------------------------------------------------------------------------------------------------
// Quantization

TEST(Int8QuantizationTest, LevelsScalesAndDequantizedValuesAreExact) {
  const float third = 1.0f / 3.0f;
  const std::vector<float> weight = {
      0.9921875f, -0.5f, 0.25f, 0.0078125f,  // max 127/128: scale 1/128 exactly, every value a whole level
      0.0f, 0.0f, 0.0f, 0.0f,                // zero row: scale 1, levels 0
      2.0f, third, -0.7f, 0.004f,            // values between levels
  };
  const QuantizedWeight q = quantize_weight("w", f32_view(weight, {3, 4}), false);
  ASSERT_EQ(q.scales.size(), 3u);
  EXPECT_EQ(q.scales[0], 1.0f / 128);
  EXPECT_EQ(q.scales[1], 1.0f);
  EXPECT_EQ(q.scales[2], 2.0f / 127);
  const std::vector<int8_t> expected_levels = {127, -64, 32, 1, 0, 0, 0, 0, 127, 21, -44, 0};
  EXPECT_EQ(q.values, expected_levels);  // 1/3 · 63.5 = 21.17 -> 21; -0.7 · 63.5 = -44.45 -> -44; 0.004 -> 0

  const std::vector<float> dequantized = dequantize(q.values, q.scales);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(dequantized[i], weight[i]) << i;  // exact: whole levels and zeros
  double worst = 0;
  for (size_t i = 0; i < weight.size(); ++i) {
    const double error = std::fabs(static_cast<double>(q.values[i]) * q.scales[i / 4] - weight[i]);
    worst = std::max(worst, error);
    EXPECT_LE(error, q.scales[i / 4] / 2 * (1 + 1e-6)) << i;  // never more than half a level
  }
  EXPECT_EQ(q.report.target_dtype, DType::i8);
  EXPECT_EQ(q.report.numel, 12);
  EXPECT_EQ(q.report.max_abs, 2.0f);
  EXPECT_DOUBLE_EQ(q.report.max_abs_error, worst);
  EXPECT_EQ(q.report.clamped + q.report.nan_count + q.report.inf_count, 0);
}

TEST(Int8QuantizationTest, NonFiniteValuesFollowTheCastRules) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> weight = {1.0f, nan, inf, -2.0f, -inf, 0.5f};
  try {
    quantize_weight("bad", f32_view(weight, {2, 3}), false);
    FAIL() << "NaN and Inf must be refused unless allowed";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "bad"));
    EXPECT_TRUE(Contains(e.what(), "1 NaN and 2 Inf"));
    EXPECT_TRUE(Contains(e.what(), "--allow-nonfinite"));
  }
  const QuantizedWeight q = quantize_weight("bad", f32_view(weight, {2, 3}), true);
  EXPECT_EQ(q.report.nan_count, 1);
  EXPECT_EQ(q.report.inf_count, 2);
  EXPECT_EQ(q.scales[0], 1.0f / 127);  // from the finite values only
  EXPECT_EQ(q.scales[1], 2.0f / 127);
  EXPECT_EQ(q.values, (std::vector<int8_t>{127, 0, 127, -127, -127, 32}));
}

// ---------------------------------------------------------------------------------------------------------------
// The int8 file

TEST(Int8FileTest, EncoderWeightsAndWordEmbeddingsAreI8WithScalesAndEverythingElseFloat) {
  const FrozenModel source = testing::tiny_model();
  const FrozenModel q = cast_model(source, {Precision::int8, false});
  EXPECT_EQ(q.metadata.provenance.precision, Precision::int8);
  int quantized = 0;
  for (const auto& expected : expected_bert_tensors(source.metadata.config, 6)) {
    const TensorView& tensor = q.tensors.at(expected.name);
    const bool quantized_rows = (expected.role == TensorRole::weight && expected.name != bert_names::kClassifierWeight) ||
                                expected.name == bert_names::embedding("word_embeddings");
    const DType wanted = quantized_rows ? DType::i8
                         : expected.role == TensorRole::embedding || expected.role == TensorRole::weight ? DType::f16
                                                                                                         : DType::f32;
    EXPECT_EQ(tensor.dtype, wanted) << expected.name;
    if (!quantized_rows) continue;
    ++quantized;
    const TensorView& scales = q.tensors.at(bert_names::weight_scale(expected.name));
    EXPECT_EQ(scales.dtype, DType::f32);
    EXPECT_EQ(scales.shape, Shape{expected.shape[0]});
    // The file holds exactly quantize_weight's levels and scales.
    const QuantizedWeight direct = quantize_weight(expected.name, source.tensors.at(expected.name), false);
    EXPECT_EQ(levels_of(tensor), direct.values) << expected.name;
    EXPECT_EQ(scales.to_float(), direct.scales) << expected.name;
  }
  EXPECT_EQ(quantized, 2 * 6 + 1);
  EXPECT_EQ(q.tensors.size(), expected_bert_tensors(source.metadata.config, 6, Precision::int8).size());

  const std::string summary = format_cast_report(q.metadata.provenance.conversion_report);
  EXPECT_TRUE(Contains(summary, "quantized to int8 13 (per-row scales)")) << summary;
  for (const auto& report : q.metadata.provenance.conversion_report) {
    if (report.target_dtype != DType::i8) continue;
    EXPECT_GT(report.max_abs_error, 0.0) << report.name;
    EXPECT_LE(report.max_abs_error, report.max_abs / 127 / 2 * (1 + 1e-6)) << "more than half a level: " << report.name;
  }

  testing::TempDir dir;
  save_frozen_model(q, (dir / "q.safetensors").string());
  const FrozenModel reloaded = load_frozen_model((dir / "q.safetensors").string());
  EXPECT_EQ(reloaded.metadata.provenance.precision, Precision::int8);
  EXPECT_EQ(levels_of(reloaded.tensors.at(kQueryWeight)), levels_of(q.tensors.at(kQueryWeight)));
}

TEST(Int8FileTest, Int8ToFloatDequantizesAndInt8ToInt8KeepsTheValues) {
  const FrozenModel q = cast_model(testing::tiny_model(), {Precision::int8, false});
  const std::vector<float> expected =
      dequantize(levels_of(q.tensors.at(kQueryWeight)), q.tensors.at(bert_names::weight_scale(kQueryWeight)).to_float());
  const FrozenModel fp32 = cast_model(q, {Precision::fp32, false});
  EXPECT_EQ(fp32.tensors.at(kQueryWeight).dtype, DType::f32);
  EXPECT_EQ(fp32.tensors.at(kQueryWeight).to_float(), expected);
  EXPECT_FALSE(fp32.tensors.contains(bert_names::weight_scale(kQueryWeight)));
  EXPECT_NO_THROW(fp32.validate());
  for (const Precision half : {Precision::fp16, Precision::bf16}) EXPECT_NO_THROW(cast_model(q, {half, false}).validate());

  const FrozenModel again = cast_model(q, {Precision::int8, false});
  for (const auto& name : q.tensors.names()) {
    const auto before = q.tensors.at(name).data, after = again.tensors.at(name).data;
    EXPECT_TRUE(std::equal(before.begin(), before.end(), after.begin(), after.end())) << name;
  }
}

TEST(Int8FileTest, SeedArchitectureFileIsAQuarterOfFp32) {
  const FrozenModel model = synthesize_model({});
  const uint64_t fp32 = frozen_model_file_size(model);
  const uint64_t int8 = frozen_model_file_size(cast_model(model, {Precision::int8, false}));
  const BertConfig& c = model.metadata.config;
  const uint64_t encoder_weights = static_cast<uint64_t>(c.num_layers * (4 * c.hidden_size * c.hidden_size +
                                                                          2 * c.hidden_size * c.intermediate_size));
  const uint64_t word_embeddings = static_cast<uint64_t>(c.vocab_size * c.hidden_size);
  const uint64_t small_tables = static_cast<uint64_t>((c.max_positions + c.type_vocab_size) * c.hidden_size);
  std::cout << "seed architecture: fp32 " << fp32 << " bytes, int8 " << int8 << " (" << 100.0 * int8 / fp32
            << " %): encoder weights and word embeddings " << encoder_weights + word_embeddings
            << " bytes as I8, position and type tables " << 2 * small_tables << " bytes as F16\n";
  // I8 encoder weights and word embeddings + F16 small tables; scales, biases, LayerNorm, the head and the
  // metadata are the rest.
  EXPECT_NEAR(static_cast<double>(int8), static_cast<double>(encoder_weights + word_embeddings + 2 * small_tables),
              0.01 * fp32);
  EXPECT_LT(static_cast<double>(int8), 0.27 * fp32);
}

class Int8CorruptFileTest : public ::testing::Test {
 protected:
  Int8CorruptFileTest() : model_(cast_model(testing::tiny_model(), {Precision::int8, false})) {}

  // Writes the int8 model with `edit` applied to its tensor list, bypassing save_frozen_model's checks.
  fs::path write_edited(const std::string& file, const std::function<void(std::vector<NamedTensor>&)>& edit) {
    std::vector<NamedTensor> tensors;
    for (const auto& name : model_.tensors.names()) tensors.push_back({name, model_.tensors.at(name)});
    edit(tensors);
    const fs::path path = dir_ / file;
    SafetensorsLayout(tensors, metadata_to_strings(model_.metadata)).write(path.string());
    return path;
  }

  static NamedTensor& find(std::vector<NamedTensor>& tensors, const std::string& name) {
    for (auto& tensor : tensors)
      if (tensor.name == name) return tensor;
    throw std::runtime_error("no tensor " + name);
  }

  static void expect_load_error(const fs::path& path, const std::vector<std::string>& fragments) {
    try {
      load_frozen_model(path.string());
      ADD_FAILURE() << path << " was accepted";
    } catch (const Error& e) {
      EXPECT_TRUE(Contains(e.what(), path.string()));
      for (const auto& fragment : fragments) EXPECT_TRUE(Contains(e.what(), fragment));
    }
  }

  testing::TempDir dir_;
  FrozenModel model_;
  std::vector<float> other_scales_ = std::vector<float>(31, 0.01f);
  std::vector<int8_t> int8_bias_ = std::vector<int8_t>(32, 1);
};

TEST_F(Int8CorruptFileTest, MissingScaleWrongShapeAndWrongDtypesAreLoadErrors) {
  const std::string scale = bert_names::weight_scale(kQueryWeight);
  EXPECT_NO_THROW(load_frozen_model(write_edited("valid.safetensors", [](auto&) {}).string()));

  expect_load_error(write_edited("missing.safetensors",
                                 [&](auto& tensors) { std::erase_if(tensors, [&](const NamedTensor& t) { return t.name == scale; }); }),
                    {"missing tensor " + scale + " [32]", "per-row scales"});
  expect_load_error(write_edited("shape.safetensors",
                                 [&](auto& tensors) { find(tensors, scale).view = f32_view(other_scales_, {31}); }),
                    {"tensor " + scale + " has shape [31], the architecture needs [32]"});
  expect_load_error(write_edited("i8-scale.safetensors",
                                 [&](auto& tensors) {
                                   find(tensors, scale).view = TensorView{DType::i8, {32}, std::as_bytes(std::span(int8_bias_))};
                                 }),
                    {"tensor " + scale + " has dtype I8 (expected F32 in an int8 file)"});
  const std::string bias = "bert.encoder.layer.0.attention.self.query.bias";
  expect_load_error(write_edited("i8-bias.safetensors",
                                 [&](auto& tensors) {
                                   find(tensors, bias).view = TensorView{DType::i8, {32}, std::as_bytes(std::span(int8_bias_))};
                                 }),
                    {"tensor " + bias + " has dtype I8", "only encoder weights and word embeddings are I8"});
  const std::vector<float> float_weight(32 * 32, 0.0f);
  expect_load_error(write_edited("f32-weight.safetensors",
                                 [&](auto& tensors) { find(tensors, kQueryWeight).view = f32_view(float_weight, {32, 32}); }),
                    {"tensor " + std::string(kQueryWeight) + " has dtype F32 (expected I8 in an int8 file)"});
}

TEST_F(Int8CorruptFileTest, I8WordEmbeddingsNeedTheirScalesAndOlderFp16OnesLoadWithout) {
  const std::string words = bert_names::embedding("word_embeddings"), scale = bert_names::weight_scale(words);
  auto without_scales = [&](std::vector<NamedTensor>& tensors) {
    std::erase_if(tensors, [&](const NamedTensor& t) { return t.name == scale; });
  };
  expect_load_error(write_edited("no-word-scales.safetensors", without_scales),
                    {"missing tensor " + scale + " [" + std::to_string(model_.metadata.config.vocab_size) + "]"});

  // An int8 file as halfserve wrote them before word embeddings were quantized: fp16 rows, no scales.
  const FrozenModel source = testing::tiny_model();
  std::vector<uint16_t> half_rows;
  for (const float value : source.tensors.at(words).to_float()) half_rows.push_back(float_to_half(value));
  const fs::path older = write_edited("fp16-words.safetensors", [&](auto& tensors) {
    without_scales(tensors);
    find(tensors, words).view = TensorView{DType::f16, source.tensors.at(words).shape, std::as_bytes(std::span(half_rows))};
  });
  const FrozenModel loaded = load_frozen_model(older.string());
  EXPECT_EQ(loaded.tensors.at(words).dtype, DType::f16);
  // Both layouts run, and agree: the I8 rows are the fp16 ones within half a level.
  const InputBatch in = random_batch(source.metadata.config, 4, 24, 3);
  Workspace a, b;
  const OutputBatch from_older = BertModel::from_model(loaded, {})->run(in, {}, a);
  const OutputBatch from_current = BertModel::from_model(model_, {})->run(in, {}, b);
  int64_t same = 0;
  for (size_t t = 0; t < from_older.label_ids.size(); ++t) same += from_older.label_ids[t] == from_current.label_ids[t];
  EXPECT_GE(same * 100, static_cast<int64_t>(from_older.label_ids.size()) * 95);
  // Converting the older file to int8 again quantizes its word embeddings.
  EXPECT_EQ(cast_model(loaded, {Precision::int8, false}).tensors.at(words).dtype, DType::i8);
}

TEST_F(Int8CorruptFileTest, OtherPrecisionsRejectScalesAndI8Weights) {
  model_.metadata.provenance.precision = Precision::fp16;  // an int8 file that claims another precision
  expect_load_error(write_edited("claims-fp16.safetensors", [](auto&) {}),
                    {"tensor " + bert_names::embedding("word_embeddings") + " has dtype I8 (expected F32, F16 or BF16)"});
}

// ---------------------------------------------------------------------------------------------------------------
// The CPU int8 linear

class Int8LinearTest : public ::testing::Test {
 protected:
  void* to_device(const std::vector<float>& values) {
    keep_.push_back(backend_->allocate(values.size() * sizeof(float)));
    backend_->copy_to_device(keep_.back().get(), values.data(), values.size() * sizeof(float));
    return keep_.back().get();
  }
  std::vector<float> to_host(const void* data, size_t count) {
    std::vector<float> values(count);
    backend_->copy_to_host(values.data(), data, count * sizeof(float));
    return values;
  }

  // Runs one int8 linear and checks it against the double-precision reference computed on the dequantized
  // weights and the per-row-quantized src: the integer GEMM is exact, so what remains is f32 rounding of the
  // scales, bias, GELU and residual (1e-5) plus, where a product lands exactly between two levels, one level of
  // one input element (the "quantization ULP": the row's scale times the largest weight).
  void check(int64_t rows, int64_t in, int64_t out, const Activation* activation, bool add_residual, uint32_t seed) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(in) + " -> " + std::to_string(out) +
                 (activation ? " gelu" : "") + (add_residual ? " + residual" : ""));
    auto src = random_values(static_cast<size_t>(rows * in), 2.0f, seed);
    if (rows > 3) std::fill(src.begin() + 3 * in, src.begin() + 4 * in, 0.0f);  // a zero row: scale 1, levels 0
    if (rows > 5)
      for (int64_t c = 0; c < in; ++c) src[5 * in + c] *= 1e-3f;  // a row of small values gets its own scale
    const auto weight = random_values(static_cast<size_t>(out * in), 0.2f, seed + 1);
    const auto bias = random_values(static_cast<size_t>(out), 0.5f, seed + 2);
    const auto residual = random_values(static_cast<size_t>(rows * out), 1.0f, seed + 3);
    const QuantizedWeight q = quantize_weight("w", f32_view(weight, {out, in}), false);
    const TensorView levels{DType::i8, {out, in}, std::as_bytes(std::span(q.values))};
    const TensorView scales = f32_view(q.scales, {out});

    LinearSpec spec{in, out, DType::i8, DType::f32, std::nullopt, add_residual};
    if (activation) spec.activation = *activation;
    const auto linear = backend_->prepare_linear(levels, f32_view(bias, {out}), spec, &scales);
    const MatrixRef src_ref{to_device(src), DType::f32, rows, in};
    const MatrixRef dst_ref{to_device(std::vector<float>(static_cast<size_t>(rows * out))), DType::f32, rows, out};
    backend_->linear(*linear, src_ref, dst_ref, add_residual ? static_cast<const float*>(to_device(residual)) : nullptr);
    const auto actual = to_host(dst_ref.data, static_cast<size_t>(rows * out));

    std::vector<float> row_scales;
    const auto quantized_src = quantize_rows_like_the_engine(src, rows, in, row_scales);
    const auto expected = testing::reference_linear(quantized_src, rows, in, dequantize(q.values, q.scales), bias, out,
                                                    activation, add_residual ? &residual : nullptr);
    float largest_weight = 0;
    for (const float w : dequantize(q.values, q.scales)) largest_weight = std::max(largest_weight, std::fabs(w));
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) {
        const size_t i = static_cast<size_t>(r * out + o);
        const double quantization_ulp = row_scales[r] * largest_weight;
        const double error = std::fabs(actual[i] - expected[i]);
        worst = std::max(worst, error);
        ASSERT_LE(error, 1e-5 * (1 + std::fabs(expected[i])) + quantization_ulp) << "row " << r << " column " << o;
      }
    std::cout << "int8 linear " << rows << "x" << in << " -> " << out << ": worst error " << worst << "\n";
  }

  std::shared_ptr<Backend> backend_ = create_backend({Device::cpu, 0});
  std::vector<std::shared_ptr<void>> keep_;
};

TEST_F(Int8LinearTest, MatchesTheReferenceOnDequantizedWeightsAndQuantizedRows) {
  const Activation erf = Activation::gelu_erf, tanh = Activation::gelu_tanh;
  check(37, 48, 80, nullptr, false, 1);
  check(37, 50, 80, &erf, false, 2);  // 50 columns: a partial 16-lane tail in the row quantizer
  check(37, 48, 80, &tanh, true, 3);
  check(37, 48, 80, nullptr, true, 4);
  check(1, 64, 96, nullptr, false, 5);
  check(160, 256, 96, &erf, true, 6);  // enough elements for the row-parallel quantizer
}

TEST_F(Int8LinearTest, BadSpecsAreClearErrors) {
  const std::vector<int8_t> levels(4 * 8, 1);
  const std::vector<float> bias(4, 0.0f), scales(4, 0.5f);
  const TensorView weight{DType::i8, {4, 8}, std::as_bytes(std::span(levels))};
  const TensorView scale_view = f32_view(scales, {4});
  auto error_of = [&](const LinearSpec& spec, const TensorView* weight_scales) -> std::string {
    try {
      backend_->prepare_linear(weight, f32_view(bias, {4}), spec, weight_scales);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_TRUE(Contains(error_of({8, 4, DType::i8, DType::bf16, std::nullopt, false}, &scale_view), "int8 linear writes F32"));
  EXPECT_TRUE(Contains(error_of({8, 4, DType::i8, DType::f32, std::nullopt, false}, nullptr), "per-output-channel scales"));
  EXPECT_EQ(error_of({8, 4, DType::i8, DType::f32, std::nullopt, false}, &scale_view), "");
}

// ---------------------------------------------------------------------------------------------------------------
// Whole models

TEST(Int8ModelTest, TinyModelAgreesWithFp32) {
  const FrozenModel source = testing::tiny_model();
  const auto fp32_model = BertModel::from_model(source, {Device::cpu, Precision::fp32, 0});
  const auto int8_model = BertModel::from_model(source, {Device::cpu, Precision::int8, 0});
  EXPECT_TRUE(Contains(int8_model->describe(),
                       "int8 weights computed as I8 GEMMs (per-channel weight scales, per-row dynamic activation scales) on cpu"));
  int64_t differing = 0, counted = 0;
  double worst = 0, largest_logit = 0;
  for (uint32_t seed = 0; seed < 4; ++seed) {
    const InputBatch in = random_batch(source.metadata.config, 8, 48, 100 + seed);
    Workspace fp32_workspace, int8_workspace;
    const OutputBatch fp32 = fp32_model->run(in, {}, fp32_workspace);
    const OutputBatch int8 = int8_model->run(in, {}, int8_workspace);
    for (size_t t = 0; t < in.input_ids.size(); ++t) {
      if (in.attention_mask[t] == 0) continue;
      ++counted;
      differing += int8.label_ids[t] != fp32.label_ids[t];
      for (size_t k = 0; k < 6; ++k) {
        worst = std::max(worst, static_cast<double>(std::fabs(int8.logits[t * 6 + k] - fp32.logits[t * 6 + k])));
        largest_logit = std::max(largest_logit, static_cast<double>(std::fabs(fp32.logits[t * 6 + k])));
      }
    }
  }
  std::cout << "int8 (" << int8_model->describe() << "): " << differing << " of " << counted
            << " labels differ from fp32; worst logit error " << worst << " (largest |logit| " << largest_logit << ")\n";
  EXPECT_LE(differing * 50, counted) << "more than 2 % of labels changed";
  // Weights and activations each carry up to half a level (1/254 of their row's largest magnitude); over a dot
  // product those errors are independent and mostly cancel, leaving each GEMM's output within a few tenths of a
  // percent of its range. The 8 int8 GEMMs of two layers feed LayerNorms, which do not amplify relative error,
  // and the head is f32: 1 % of the logits' range is a safe bound (measured: about 0.04 %).
  EXPECT_LE(worst, 0.01 * largest_logit);
}

TEST(Int8ModelTest, Int8FileRunsNativelyAndAsFp32) {
  const FrozenModel q = cast_model(testing::tiny_model(), {Precision::int8, false});
  const auto native = BertModel::from_model(q, {});
  EXPECT_EQ(native->precision(), Precision::int8);
  EXPECT_EQ(native->compute_dtype(), DType::i8);
  const auto widened = BertModel::from_model(q, {Device::cpu, Precision::fp32, 0});
  const InputBatch in = random_batch(q.metadata.config, 3, 17, 7);
  Workspace a, b;
  const OutputBatch int8 = native->run(in, {}, a), fp32 = widened->run(in, {}, b);
  int64_t same = 0;
  for (size_t t = 0; t < int8.label_ids.size(); ++t) same += int8.label_ids[t] == fp32.label_ids[t];
  EXPECT_GE(same * 100, static_cast<int64_t>(int8.label_ids.size()) * 90);
}

TEST(Int8ModelTest, ConcurrentCallersGetIdenticalResults) {
  // Each calling thread quantizes into its own buffer; a shared one would mix callers' activations.
  const FrozenModel source = testing::tiny_model();
  const auto model = BertModel::from_model(source, {Device::cpu, Precision::int8, 0});
  std::vector<InputBatch> inputs;
  std::vector<OutputBatch> expected;
  for (uint32_t i = 0; i < 4; ++i) {
    inputs.push_back(random_batch(source.metadata.config, 2 + i, 20 + 7 * i, 40 + i));
    Workspace workspace;
    expected.push_back(model->run(inputs.back(), {}, workspace));
  }
  std::vector<std::thread> threads;
  std::vector<char> identical(4, 1);  // not vector<bool>: its packed bits are not separate objects for threads
  for (size_t i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      Workspace own;
      for (int repeat = 0; repeat < 5; ++repeat) identical[i] = identical[i] && model->run(inputs[i], {}, own).logits == expected[i].logits;
    });
  for (auto& thread : threads) thread.join();
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(identical[i]) << "caller " << i;
}

TEST(Int8ModelTest, TokenClassifierFixtureArgmaxAgreesWithPyTorch) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const auto expected = testing::read_json(fixtures / "torch_bert_tokcls" / "expected.json");
  InputBatch in;
  in.batch = static_cast<int64_t>(expected["input_ids"].size());
  in.length = static_cast<int64_t>(expected["input_ids"][0].size());
  for (const auto& row : expected["input_ids"]) for (const auto& v : row) in.input_ids.push_back(v.get<int32_t>());
  for (const auto& row : expected["attention_mask"]) for (const auto& v : row) in.attention_mask.push_back(v.get<int32_t>());
  for (const auto& row : expected["token_type_ids"]) for (const auto& v : row) in.token_type_ids.push_back(v.get<int32_t>());

  const auto model = BertModel::from_model(import_model((fixtures / "torch_bert_tokcls").string()), {Device::cpu, Precision::int8, 0});
  Workspace workspace;
  const OutputBatch out = model->run(in, {true, true, false}, workspace);
  int64_t agree = 0, counted = 0;
  double worst = 0;
  for (int64_t b = 0; b < in.batch; ++b)
    for (int64_t t = 0; t < in.length; ++t) {
      const int64_t i = b * in.length + t;
      if (in.attention_mask[i] == 0) continue;
      ++counted;
      agree += out.label_ids[i] == expected["argmax"][b][t].get<int32_t>();
      for (int64_t k = 0; k < 4; ++k)
        worst = std::max(worst, std::fabs(out.logits[i * 4 + k] - expected["logits"][b][t][k].get<double>()));
    }
  std::cout << "int8 on torch_bert_tokcls: argmax agrees with PyTorch on " << agree << " of " << counted
            << " unpadded positions (" << 100.0 * agree / counted << " %), worst logit error " << worst << "\n";
  EXPECT_GE(agree * 10, counted * 9);
}

// ---------------------------------------------------------------------------------------------------------------
// The CLI

TEST(Int8CliTest, ConvertWritesAFileThatInspectAndPredictAccept) {
  testing::TempDir dir;
  const fs::path source = dir / "tiny.safetensors", output = dir / "tiny-int8.safetensors";
  save_frozen_model(testing::tiny_model(), source.string());
  const auto converted = testing::run_cli("convert '" + source.string() + "' -o '" + output.string() + "' --precision int8");
  ASSERT_EQ(converted.exit_code, 0) << converted.err;
  EXPECT_TRUE(Contains(converted.out, "quantized to int8 13 (per-row scales)"));
  EXPECT_TRUE(Contains(converted.out, "int8, "));
  EXPECT_LT(fs::file_size(output), fs::file_size(source));

  const auto inspect = testing::run_cli("inspect '" + output.string() + "'");
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_TRUE(Contains(inspect.out, "bytes, int8"));
  EXPECT_TRUE(Contains(inspect.out, std::string(kQueryWeight) + " I8 [32, 32]"));
  EXPECT_TRUE(Contains(inspect.out, std::string(kQueryWeight) + "_scale F32 [32]"));
  const auto inspect_json = testing::run_cli("inspect '" + output.string() + "' --json");
  ASSERT_EQ(inspect_json.exit_code, 0) << inspect_json.err;
  EXPECT_EQ(nlohmann::json::parse(inspect_json.out).at("provenance").at("precision"), "int8");

  const std::string request = R"({"inputs": {"input_ids": [[2, 10, 11, 3], [2, 12, 3, 0]], "attention_mask": [[1, 1, 1, 1], [1, 1, 1, 0]]}})";
  const auto native = testing::run_cli("predict --model '" + output.string() + "'", request);
  ASSERT_EQ(native.exit_code, 0) << native.err;
  const auto cast_in_memory = testing::run_cli("predict --model '" + source.string() + "' --precision int8", request);
  ASSERT_EQ(cast_in_memory.exit_code, 0) << cast_in_memory.err;
  // Both quantize the same fp32 weights the same way.
  EXPECT_EQ(nlohmann::json::parse(native.out).at("outputs").at("label_ids"),
            nlohmann::json::parse(cast_in_memory.out).at("outputs").at("label_ids"));
  EXPECT_EQ(testing::run_cli("predict --model '" + output.string() + "' --precision int4", request).exit_code, 2);
}

}  // namespace
}  // namespace halfserve

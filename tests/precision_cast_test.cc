#include <gtest/gtest.h>

#include <cmath>

#include "halfserve/engine/precision_cast.h"
#include "halfserve/format/bert_tensors.h"
#include "halfserve/import/model_source.h"
#include "halfserve/synth/synth_model.h"
#include "halfserve/util/error.h"
#include "test_support.h"

namespace halfserve {
namespace {

const TensorCastReport& report_for(const FrozenModel& model, const std::string& name) {
  for (const auto& report : model.metadata.provenance.conversion_report)
    if (report.name == name) return report;
  throw std::runtime_error("no report for " + name);
}

void expect_all_finite(const FrozenModel& model) {
  for (const auto& name : model.tensors.names())
    for (float value : model.tensors.at(name).to_float()) ASSERT_TRUE(std::isfinite(value)) << name;
}

TEST(PrecisionCastTest, Fp16HazardsAreReportedAndNanIsRefused) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  testing::TempDir dir;
  // The hazard file holds the token classifier's weights with values fp16 cannot hold; its config and
  // vocabulary are the ones beside it.
  const FrozenModel source = import_model((fixtures / "torch_bert_tokcls" / "fp16_hazards.safetensors").string());

  try {
    cast_model(source, {Precision::fp16, false});
    FAIL() << "a NaN in the source must be refused";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("bert.encoder.layer.1.output.dense.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("NaN"), std::string::npos) << message;
  }

  const FrozenModel converted = cast_model(source, {Precision::fp16, true});
  const auto& key_bias = report_for(converted, "bert.encoder.layer.0.attention.self.key.bias");
  EXPECT_EQ(key_bias.clamped, 2);      // 1e5 and -7e4 lie beyond ±65504
  EXPECT_EQ(key_bias.underflowed, 1);  // 1e-9 is below half the smallest fp16 subnormal
  EXPECT_FLOAT_EQ(key_bias.max_abs, 1e5f);
  const auto values = converted.tensors.at("bert.encoder.layer.0.attention.self.key.bias").to_float();
  EXPECT_EQ(*std::max_element(values.begin(), values.end()), 65504.0f);
  EXPECT_EQ(*std::min_element(values.begin(), values.end()), -65504.0f);
  EXPECT_EQ(report_for(converted, "bert.encoder.layer.1.output.dense.weight").nan_count, 1);
  expect_all_finite(converted);

  const std::string summary = format_cast_report(converted.metadata.provenance.conversion_report);
  EXPECT_NE(summary.find("clamped to range 2"), std::string::npos) << summary;
  EXPECT_NE(summary.find("NaN replaced 1"), std::string::npos) << summary;

  // The written file never holds NaN or Inf, and the report survives in its metadata.
  save_frozen_model(converted, (dir / "out.safetensors").string());
  const FrozenModel reloaded = load_frozen_model((dir / "out.safetensors").string());
  expect_all_finite(reloaded);
  EXPECT_EQ(report_for(reloaded, "bert.encoder.layer.0.attention.self.key.bias").clamped, 2);
}

TEST(PrecisionCastTest, LayerNormStaysFp32AndEverythingElseIsCast) {
  const FrozenModel source = testing::tiny_model();
  for (const Precision precision : {Precision::fp16, Precision::bf16}) {
    const FrozenModel converted = cast_model(source, {precision, false});
    EXPECT_EQ(converted.metadata.provenance.precision, precision);
    for (const auto& expected : expected_bert_tensors(source.metadata.config, 6)) {
      const TensorView& tensor = converted.tensors.at(expected.name);
      const DType wanted = expected.role == TensorRole::layer_norm ? DType::f32 : storage_dtype(precision);
      EXPECT_EQ(tensor.dtype, wanted) << expected.name;
      // Every value is the source value rounded to the target precision.
      const auto before = source.tensors.at(expected.name).to_float();
      const auto after = tensor.to_float();
      const float tolerance = precision == Precision::fp16 ? 1.0f / 1024 : 1.0f / 128;
      for (size_t i = 0; i < before.size(); ++i)
        ASSERT_NEAR(after[i], before[i], std::fabs(before[i]) * tolerance + 1e-7f) << expected.name;
    }
  }
}

TEST(PrecisionCastTest, HalfFileOfTheSeedArchitectureIsAtMost51Percent) {
  const FrozenModel model = synthesize_model({});
  const uint64_t fp32 = frozen_model_file_size(model);
  const uint64_t fp16 = frozen_model_file_size(cast_model(model, {Precision::fp16, false}));
  const uint64_t bf16 = frozen_model_file_size(cast_model(model, {Precision::bf16, false}));
  std::cout << "seed architecture: fp32 " << fp32 << " bytes, fp16 " << fp16 << " (" << 100.0 * fp16 / fp32 << " %), bf16 "
            << bf16 << "\n";
  EXPECT_LE(static_cast<double>(fp16), 0.51 * static_cast<double>(fp32));
  EXPECT_LE(static_cast<double>(bf16), 0.51 * static_cast<double>(fp32));
  // ~30.8 M parameters, as the seed's 118 MB model.
  EXPECT_NEAR(static_cast<double>(fp32), 123.2e6, 1e6);
}

TEST(PrecisionCastTest, InfinityIsRefusedUnlessAllowed) {
  const TensorView view{DType::f32, {3}, {}};
  const float values[3] = {1.0f, std::numeric_limits<float>::infinity(), -2.0f};
  TensorView tensor = view;
  tensor.data = std::as_bytes(std::span(values));
  std::vector<std::byte> out;
  EXPECT_THROW(cast_tensor("t", tensor, DType::bf16, false, out), Error);
  const TensorCastReport report = cast_tensor("t", tensor, DType::bf16, true, out);
  EXPECT_EQ(report.inf_count, 1);
  TensorView result{DType::bf16, {3}, out};
  EXPECT_TRUE(std::isfinite(result.float_at(1)));
  EXPECT_GT(result.float_at(1), 3e38f);
}

}  // namespace
}  // namespace halfserve

namespace halfserve {
namespace {

TEST(PrecisionCastTest, ConvertCommandRefusesNanAndLeavesNoFile) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  testing::TempDir dir;
  const std::string source = "'" + (fixtures / "torch_bert_tokcls" / "fp16_hazards.safetensors").string() + "'";
  const std::string output = (dir / "hazards-fp16.safetensors").string();
  const auto refused = testing::run_cli("convert " + source + " -o '" + output + "' --precision fp16");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("NaN"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--allow-nonfinite"), std::string::npos) << refused.err;
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "no output or temporary file may be left behind";

  const auto allowed = testing::run_cli("convert " + source + " -o '" + output + "' --precision fp16 --allow-nonfinite");
  ASSERT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_NE(allowed.out.find("clamped to range 2"), std::string::npos) << allowed.out;
  EXPECT_NE(allowed.out.find("NaN replaced 1"), std::string::npos) << allowed.out;
  EXPECT_NE(allowed.out.find("bert.encoder.layer.0.attention.self.key.bias"), std::string::npos) << allowed.out;
  EXPECT_TRUE(std::filesystem::exists(output));
}

}  // namespace
}  // namespace halfserve

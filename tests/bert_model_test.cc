#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <thread>

#include "halfserve/engine/bert_model.h"
#include "halfserve/import/model_source.h"
#include "halfserve/synth/synth_model.h"
#include "halfserve/util/error.h"
#include "reference_bert.h"
#include "test_support.h"

namespace halfserve {
namespace {

using testing::random_batch;

InputBatch batch_from_fixture(const nlohmann::json& expected) {
  InputBatch in;
  in.batch = static_cast<int64_t>(expected["input_ids"].size());
  in.length = static_cast<int64_t>(expected["input_ids"][0].size());
  for (const char* key : {"input_ids", "attention_mask", "token_type_ids"}) {
    auto& target = std::string(key) == "input_ids" ? in.input_ids
                   : std::string(key) == "attention_mask" ? in.attention_mask : in.token_type_ids;
    for (const auto& row : expected[key])
      for (const auto& value : row) target.push_back(value.get<int32_t>());
  }
  return in;
}

// Worst absolute difference over unpadded positions of a [batch, length, width] tensor.
double worst_error(const std::vector<float>& actual, const nlohmann::json& expected, const InputBatch& in, int64_t width) {
  double worst = 0;
  for (int64_t b = 0; b < in.batch; ++b)
    for (int64_t t = 0; t < in.length; ++t) {
      if (in.attention_mask[b * in.length + t] == 0) continue;
      for (int64_t k = 0; k < width; ++k)
        worst = std::max(worst, std::fabs(actual[(b * in.length + t) * width + k] - expected[b][t][k].get<double>()));
    }
  return worst;
}

// The numeric tests run on every backend (ggml's idea: one test checks each backend against the reference); a
// backend this build or machine lacks (CUDA without a GPU) is skipped with the reason.
class BertModelOnDevice : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    try {
      create_backend({GetParam(), 0});
    } catch (const Error& e) {
      GTEST_SKIP() << "device " << device_name(GetParam()) << " unavailable: " << e.what();
    }
  }
  std::shared_ptr<const BertModel> load(const FrozenModel& source, Precision precision) const {
    return BertModel::from_model(source, {GetParam(), precision, 0});
  }
  // The 16-bit precision whose activations stay 16-bit on this device (bf16 on CPU, fp16 on CUDA).
  Precision native_half() const { return GetParam() == Device::cuda ? Precision::fp16 : Precision::bf16; }
};

INSTANTIATE_TEST_SUITE_P(Devices, BertModelOnDevice, ::testing::Values(Device::cpu, Device::cuda),
                         [](const auto& info) { return std::string(device_name(info.param)); });

TEST_P(BertModelOnDevice, MatchesPyTorchOnTheTokenClassifierFixture) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const auto expected = testing::read_json(fixtures / "torch_bert_tokcls" / "expected.json");
  const InputBatch in = batch_from_fixture(expected);
  const FrozenModel source = import_model((fixtures / "torch_bert_tokcls").string());
  for (const Precision precision : {Precision::fp32, Precision::fp16, Precision::bf16}) {
    const auto model = load(source, precision);
    Workspace workspace;
    const OutputBatch out = model->run(in, {true, true, true}, workspace);
    const double logits_error = worst_error(out.logits, expected["logits"], in, 4);
    const double hidden_error = worst_error(out.last_hidden_state, expected["last_hidden_state"], in, 32);
    std::cout << precision_name(precision) << " (" << model->describe() << "): worst logit error " << logits_error
              << ", worst hidden-state error " << hidden_error << "\n";
    if (precision == Precision::fp32) {
      EXPECT_LE(logits_error, 1e-4);
      EXPECT_LE(hidden_error, 1e-4);
    }
    for (int64_t b = 0; b < in.batch; ++b) {
      for (int64_t t = 0; t < in.length; ++t) {
        if (in.attention_mask[b * in.length + t] == 0) continue;
        EXPECT_EQ(out.label_ids[b * in.length + t], expected["argmax"][b][t].get<int32_t>())
            << precision_name(precision) << " row " << b << " position " << t;
      }
    }
  }
}

TEST_P(BertModelOnDevice, Fp32MatchesTheReferenceOnRealTokensAndPaddingIsZero) {
  const FrozenModel source = testing::tiny_model();
  const auto model = load(source, Precision::fp32);
  for (const auto& [batch, length] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 17}, {5, 64}}) {
    const InputBatch in = random_batch(source.metadata.config, batch, length, static_cast<uint32_t>(batch * 100 + length));
    Workspace workspace;
    const OutputBatch out = model->run(in, {true, true, true}, workspace);
    const testing::ReferenceOutputs reference = testing::reference_forward(source, in);
    ASSERT_EQ(out.logits.size(), reference.logits.size());
    const size_t labels = source.metadata.labels.size(), hidden = 32;
    for (size_t t = 0; t < in.attention_mask.size(); ++t) {
      const bool real = in.attention_mask[t] != 0;  // random_batch pads at the end of rows
      for (size_t k = 0; k < labels; ++k)
        ASSERT_NEAR(out.logits[t * labels + k], real ? reference.logits[t * labels + k] : 0.0f, 1e-4) << t;
      for (size_t k = 0; k < hidden; ++k)
        ASSERT_NEAR(out.last_hidden_state[t * hidden + k], real ? reference.last_hidden_state[t * hidden + k] : 0.0f, 1e-4) << t;
    }
  }
}

TEST_P(BertModelOnDevice, ReducedPrecisionsAgreeWithFp32OnLabels) {
  const FrozenModel source = testing::tiny_model();
  const InputBatch in = random_batch(source.metadata.config, 8, 32, 99);
  Workspace workspace;
  const OutputBatch fp32 = load(source, Precision::fp32)->run(in, {}, workspace);
  for (const Precision precision : {Precision::fp16, Precision::bf16}) {
    const auto model = load(source, precision);
    Workspace own;
    const OutputBatch out = model->run(in, {}, own);
    int64_t differing = 0, counted = 0;
    double worst = 0;
    for (size_t t = 0; t < out.label_ids.size(); ++t) {
      if (in.attention_mask[t] == 0) continue;
      ++counted;
      differing += out.label_ids[t] != fp32.label_ids[t];
    }
    for (size_t i = 0; i < out.logits.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(out.logits[i] - fp32.logits[i])));
    std::cout << precision_name(precision) << ": " << differing << " of " << counted << " labels differ from fp32, worst logit error "
              << worst << "\n";
    EXPECT_LE(differing * 50, counted) << "more than 2 % of labels changed";
    // CUDA fp16 also rounds the activations to fp16 (the CPU widens fp16 weights to f32).
    EXPECT_LT(worst, precision == Precision::fp16 ? (GetParam() == Device::cuda ? 0.1 : 0.05) : 0.5);
  }
}

TEST(BertModelTest, PaddingDoesNotChangeRealTokens) {
  const FrozenModel source = testing::tiny_model();
  const auto model = BertModel::from_model(source, {Device::cpu, Precision::fp32, 0});
  InputBatch alone = random_batch(source.metadata.config, 1, 9, 5);
  std::fill(alone.attention_mask.begin(), alone.attention_mask.end(), 1);
  InputBatch padded = alone;
  padded.length = 20;
  padded.input_ids.resize(20, 0);
  padded.attention_mask.resize(20, 0);
  padded.token_type_ids.resize(20, 0);
  Workspace workspace;
  const OutputBatch a = model->run(alone, {true, true, false}, workspace);
  const OutputBatch b = model->run(padded, {true, true, false}, workspace);
  for (size_t i = 0; i < a.logits.size(); ++i) EXPECT_NEAR(a.logits[i], b.logits[i], 1e-5);
}

TEST_P(BertModelOnDevice, RaggedBatchMatchesEachRowRunAlone) {
  const FrozenModel source = testing::tiny_model();
  const int64_t longest = source.metadata.config.max_positions;
  std::vector<Precision> precisions = {Precision::fp32, native_half()};
  if (GetParam() == Device::cpu) precisions.push_back(Precision::int8);  // int8 is a CPU precision
  for (const Precision precision : precisions) {
    const auto model = load(source, precision);
    // Lengths 1 and the model's maximum side by side, with rows of equal length in between.
    InputBatch in = random_batch(source.metadata.config, 6, longest, 21);
    const std::vector<int64_t> lengths = {1, longest, 17, 17, 2, longest - 1};
    for (int64_t r = 0; r < in.batch; ++r)
      for (int64_t t = 0; t < longest; ++t) in.attention_mask[r * longest + t] = t < lengths[r] ? 1 : 0;
    Workspace workspace;
    const OutputBatch together = model->run(in, {true, true, false}, workspace);
    const size_t labels = source.metadata.labels.size();
    for (int64_t r = 0; r < in.batch; ++r) {
      InputBatch alone;
      alone.batch = 1;
      alone.length = lengths[r];
      const auto row = [&](const std::vector<int32_t>& values) {
        return std::vector<int32_t>(values.begin() + r * longest, values.begin() + r * longest + lengths[r]);
      };
      alone.input_ids = row(in.input_ids);
      alone.attention_mask = row(in.attention_mask);
      alone.token_type_ids = row(in.token_type_ids);
      const OutputBatch single = model->run(alone, {true, true, false}, workspace);
      const double tolerance = precision == Precision::fp32 ? 1e-5 : 2e-2;
      for (int64_t t = 0; t < lengths[r]; ++t)
        for (size_t k = 0; k < labels; ++k)
          ASSERT_NEAR(together.logits[(r * longest + t) * labels + k], single.logits[t * labels + k], tolerance)
              << precision_name(precision) << " row " << r << " token " << t;
    }
  }
}

// The same batch again and again gives the first run's numbers, also across a larger batch that moves the
// workspace's buffers in between (on CUDA: op-by-op, then a recorded graph, then its replays, then re-recording).
TEST_P(BertModelOnDevice, RepeatedBatchesReproduceTheFirstRun) {
  const FrozenModel source = testing::tiny_model();
  const auto model = load(source, native_half());
  const InputBatch small = random_batch(source.metadata.config, 2, 12, 31), large = random_batch(source.metadata.config, 16, 64, 32);
  Workspace workspace;
  const OutputBatch first = model->run(small, {true, true, false}, workspace);
  for (int repeat = 0; repeat < 3; ++repeat) EXPECT_EQ(model->run(small, {true, true, false}, workspace).logits, first.logits) << repeat;
  const OutputBatch large_first = model->run(large, {true, true, false}, workspace);
  for (int repeat = 0; repeat < 3; ++repeat) {
    EXPECT_EQ(model->run(small, {true, true, false}, workspace).logits, first.logits) << "after the large batch, " << repeat;
    EXPECT_EQ(model->run(large, {true, true, false}, workspace).logits, large_first.logits) << repeat;
  }
  // Same lengths, other ids and type ids, and masked keys inside the rows: a replay must read this batch's inputs,
  // not the recorded ones (compared with a fresh Workspace, which runs op by op).
  InputBatch other = random_batch(source.metadata.config, 2, 12, 77);
  other.attention_mask = small.attention_mask;
  for (int64_t r = 0; r < other.batch; ++r) other.attention_mask[r * other.length] = 0;  // position 0 masked, row kept
  InputBatch another = random_batch(source.metadata.config, 2, 12, 78);
  another.attention_mask = other.attention_mask;  // the same shape again, with its own ids
  for (int repeat = 0; repeat < 3; ++repeat)
    for (const InputBatch* batch : {&other, &another}) {
      Workspace fresh;
      EXPECT_EQ(model->run(*batch, {true, true, false}, workspace).logits, model->run(*batch, {true, true, false}, fresh).logits)
          << repeat;
    }
  EXPECT_NE(model->run(other, {true, true, false}, workspace).logits, first.logits);
}

TEST_P(BertModelOnDevice, ConcurrentCallersGetIdenticalResults) {
  const FrozenModel source = testing::tiny_model();
  const auto model = load(source, native_half());
  const InputBatch in = random_batch(source.metadata.config, 4, 24, 7);
  Workspace workspace;
  const OutputBatch expected = model->run(in, {}, workspace);
  std::vector<std::thread> threads;
  std::vector<OutputBatch> results(4);
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      Workspace own;
      for (int repeat = 0; repeat < 5; ++repeat) results[i] = model->run(in, {}, own);
    });
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_EQ(result.logits, expected.logits);
}

// A model computes with its own thread count, whatever OpenMP team its caller has: oneDNN splits a GEMM by the
// team it is created and run with, so without this a shape's first caller (a serving worker with a smaller team,
// the thread that warmed the model up) would decide the last bits of every later answer for that shape — a
// request's bytes would depend on what else the server had been running.
TEST(BertModelTest, AnswersDoNotDependOnTheCallersOpenMpThreads) {
  SynthOptions options;
  options.seed = 5;
  options.config.num_layers = 1;
  options.config.hidden_size = 256;
  options.config.num_heads = 4;
  options.config.intermediate_size = 1024;
  options.config.vocab_size = 300;
  options.config.max_positions = 128;
  const FrozenModel source = synthesize_model(options);
  const InputBatch in = random_batch(source.metadata.config, 4, 96, 3);
  const int cores = std::max(2, omp_get_num_procs());
  const auto run_in_thread = [&](const BertModel& model, int caller_threads) {
    OutputBatch out;
    std::thread([&] {
      omp_set_num_threads(caller_threads);
      Workspace workspace;
      out = model.run(in, {true, true, true, false}, workspace);
    }).join();
    return out;
  };
  // The first call of this shape comes from a caller with one thread, the next from one with every core.
  const auto shared = BertModel::from_model(source, {Device::cpu, Precision::fp32, cores});
  const OutputBatch first = run_in_thread(*shared, 1);
  const OutputBatch second = run_in_thread(*shared, cores);
  // A fresh model whose first caller has every core.
  const auto fresh = BertModel::from_model(source, {Device::cpu, Precision::fp32, cores});
  const OutputBatch alone = run_in_thread(*fresh, cores);
  EXPECT_EQ(first.logits, alone.logits);
  EXPECT_EQ(second.logits, alone.logits);
  EXPECT_EQ(first.last_hidden_state, alone.last_hidden_state);
}

void expect_invalid(const BertModel& model, const InputBatch& in, const std::string& fragment) {
  try {
    model.validate(in);
    FAIL() << "expected an error mentioning '" << fragment << "'";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(BertModelTest, BadInputsAreNamed) {
  const FrozenModel source = testing::tiny_model();
  const auto model = BertModel::from_model(source, {Device::cpu, Precision::fp32, 0});
  InputBatch in = random_batch(source.metadata.config, 2, 4, 1);
  model->validate(in);
  InputBatch bad = in;
  bad.input_ids[5] = 300;
  expect_invalid(*model, bad, "input_ids[1][1] = 300 is outside the vocabulary (0..299)");
  bad = in;
  bad.input_ids[0] = -1;
  expect_invalid(*model, bad, "input_ids[0][0] = -1");
  bad = in;
  bad.attention_mask[2] = 2;
  expect_invalid(*model, bad, "attention_mask[0][2] = 2");
  bad = in;
  bad.token_type_ids[3] = 2;
  expect_invalid(*model, bad, "token_type_ids[0][3] = 2");
  bad = in;
  bad.attention_mask.pop_back();
  expect_invalid(*model, bad, "attention_mask shape");
  bad = random_batch(source.metadata.config, 1, 65, 2);
  expect_invalid(*model, bad, "sequence length 65 exceeds the model's maximum of 64");
  bad = InputBatch{};
  expect_invalid(*model, bad, "empty batch");
}

TEST(BertModelTest, EncoderOnlyModelGivesHiddenStates) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const auto model = BertModel::from_model(import_model((fixtures / "hf_tiny_bert").string()), {});
  InputBatch in;
  in.batch = 1;
  in.length = 3;
  in.input_ids = {2, 10, 3};
  Workspace workspace;
  EXPECT_THROW(model->run(in, {true, true, false}, workspace), InvalidArgument);
  const OutputBatch out = model->run(in, {false, false, true}, workspace);
  EXPECT_EQ(out.last_hidden_state.size(), 3u * 32u);
}

}  // namespace
}  // namespace halfserve

namespace halfserve {
namespace {

TEST(BertModelTest, ProbabilitiesAreTheSoftmaxOfTheLogits) {
  const FrozenModel source = testing::tiny_model();
  const auto model = BertModel::from_model(source, {});
  InputBatch in = random_batch(source.metadata.config, 2, 5, 11);
  Workspace workspace;
  const OutputBatch out = model->run(in, {true, true, false, true}, workspace);
  const size_t labels = source.metadata.labels.size();
  ASSERT_EQ(out.probabilities.size(), out.logits.size());
  for (size_t row = 0; row < out.logits.size() / labels; ++row) {
    if (in.attention_mask[row] == 0) {  // padding is not computed: zeros
      for (size_t k = 0; k < labels; ++k) EXPECT_EQ(out.probabilities[row * labels + k], 0.0f);
      continue;
    }
    double total = 0, exp_total = 0;
    for (size_t k = 0; k < labels; ++k) exp_total += std::exp(static_cast<double>(out.logits[row * labels + k]));
    for (size_t k = 0; k < labels; ++k) {
      total += out.probabilities[row * labels + k];
      EXPECT_NEAR(out.probabilities[row * labels + k], std::exp(out.logits[row * labels + k]) / exp_total, 1e-6);
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

}  // namespace
}  // namespace halfserve

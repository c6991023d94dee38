// The serving core without its front ends: config files, the batch scheduler and the model manager.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <thread>

#include "halfserve/serve/batch_scheduler.h"
#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/serve/server_config.h"
#include "test_support.h"

namespace halfserve {
namespace {

namespace fs = std::filesystem;
using testing::Contains;

TEST(ServerConfigTest, ReadsTfServingModelConfigAndBatchingFiles) {
  testing::TempDir dir;
  std::ofstream(dir / "models.config") << R"(
model_config_list {
  config {
    name: "punctuation"
    base_path: "/models/punctuation"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 2 versions: 3 } }
    version_labels { key: "stable" value: 2 }
    version_labels { key: "canary" value: 3 }
    logging_config { }
  }
  config { name: "other" base_path: "/models/other" model_version_policy { latest { num_versions: 2 } } }
  config { name: "all" base_path: "/models/all" model_version_policy { all { } } }
}
)";
  const auto models = read_model_config_file((dir / "models.config").string());
  ASSERT_EQ(models.size(), 3u);
  EXPECT_EQ(models[0].name, "punctuation");
  EXPECT_EQ(models[0].policy.kind, VersionPolicy::Kind::specific);
  EXPECT_EQ(models[0].policy.versions, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(models[0].version_labels.at("canary"), 3);
  EXPECT_EQ(models[1].policy.kind, VersionPolicy::Kind::latest);
  EXPECT_EQ(models[1].policy.latest_count, 2);
  EXPECT_EQ(models[2].policy.kind, VersionPolicy::Kind::all);

  std::ofstream(dir / "batching.config") << "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 5000 }\n"
                                            "max_enqueued_batches { value: 8 }\nnum_batch_threads { value: 2 }\n"
                                            "pad_variable_length_inputs: true\n";
  const BatchingOptions batching = read_batching_parameters_file((dir / "batching.config").string());
  EXPECT_EQ(batching.max_batch_size, 16);
  EXPECT_EQ(batching.batch_timeout_micros, 5000);
  EXPECT_EQ(batching.max_enqueued_batches, 8);
  EXPECT_EQ(batching.num_batch_threads, 2);

  // allowed_batch_sizes is checked as TF Serving checks it (and then not needed: batches are never padded).
  const auto batching_with = [&](const std::string& sizes) {
    std::ofstream(dir / "sizes.config") << "max_batch_size { value: 16 }\n" << sizes;
    return read_batching_parameters_file((dir / "sizes.config").string());
  };
  EXPECT_EQ(batching_with("allowed_batch_sizes: 4\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n").max_batch_size, 16);
  for (const std::string sizes : {"allowed_batch_sizes: 8\nallowed_batch_sizes: 4\nallowed_batch_sizes: 16\n",
                                  "allowed_batch_sizes: 0\nallowed_batch_sizes: 16\n"}) {
    try {
      batching_with(sizes);
      ADD_FAILURE() << "accepted " << sizes;
    } catch (const Error& e) {
      EXPECT_TRUE(Contains(e.what(), "positive and increasing")) << e.what();
    }
  }
  try {
    batching_with("allowed_batch_sizes: 4\nallowed_batch_sizes: 8\n");
    ADD_FAILURE() << "accepted a list that stops short of max_batch_size";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "must equal max_batch_size (16)")) << e.what();
  }

  std::ofstream(dir / "bad.config") << "model_config_list {\n  config { name: \"x\" base_path: 12 }\n";
  try {
    read_model_config_file((dir / "bad.config").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "bad.config"));
    EXPECT_TRUE(Contains(e.what(), "line 2"));
  }
}

InputBatch random_request(const BertConfig& config, int64_t rows, int64_t length, uint32_t seed) {
  std::mt19937 random(seed);
  InputBatch in;
  in.batch = rows;
  in.length = length;
  for (int64_t i = 0; i < rows * length; ++i)
    in.input_ids.push_back(static_cast<int32_t>(random() % static_cast<uint32_t>(config.vocab_size)));
  if (seed % 2 == 0) {  // half the requests bring their own padding mask
    in.attention_mask.assign(in.input_ids.size(), 1);
    in.attention_mask.back() = 0;
  }
  return in;
}

TEST(BatchSchedulerTest, MixedLengthsBatchedGiveEachRequestItsOwnResult) {
  const auto model = BertModel::from_model(testing::tiny_model(), {});
  ServingMetrics metrics;
  BatchingOptions batching;
  batching.max_batch_size = 16;
  batching.batch_timeout_micros = 20000;  // long enough for concurrent requests to meet
  BatchScheduler scheduler(model, batching, true, "tiny", &metrics);
  std::vector<InputBatch> requests;
  for (uint32_t i = 0; i < 24; ++i) requests.push_back(random_request(model->config(), 1 + i % 3, 3 + (i * 7) % 40, i));
  std::vector<std::future<OutputBatch>> results;
  for (const auto& request : requests)
    results.push_back(std::async(std::launch::async, [&] { return scheduler.run(request, {true, true, true, true}); }));
  Workspace workspace;
  for (size_t i = 0; i < requests.size(); ++i) {
    const OutputBatch batched = results[i].get();
    const OutputBatch alone = model->run(requests[i], {true, true, true, true}, workspace);
    ASSERT_EQ(batched.logits.size(), alone.logits.size()) << i;
    EXPECT_EQ(batched.label_ids, alone.label_ids) << i;
    // Equal up to float rounding: softmax and GEMM sum in a different order over a longer padded row.
    for (size_t k = 0; k < alone.logits.size(); ++k) ASSERT_NEAR(batched.logits[k], alone.logits[k], 1e-5) << i;
    for (size_t k = 0; k < alone.last_hidden_state.size(); ++k)
      ASSERT_NEAR(batched.last_hidden_state[k], alone.last_hidden_state[k], 1e-5) << i;
  }
  const std::string text = metrics.prometheus_text();
  EXPECT_TRUE(Contains(text, ":halfserve:batch_size_bucket{model_name=\"tiny\""));
  // Some model calls held several requests.
  EXPECT_FALSE(Contains(text, ":halfserve:batch_size_count{model_name=\"tiny\"} 24"));
}

TEST(BatchSchedulerTest, FullQueueIsResourceExhaustedAndBadRequestsFailAlone) {
  const auto model = BertModel::from_model(testing::tiny_model(), {});
  BatchingOptions batching;
  batching.max_batch_size = 1;
  batching.max_enqueued_batches = 1;
  BatchScheduler scheduler(model, batching, false, "tiny", nullptr);
  const InputBatch request = random_request(model->config(), 1, 60, 1);
  std::atomic<int> refused = 0, served = 0;
  std::vector<std::thread> clients;
  for (int i = 0; i < 32; ++i)
    clients.emplace_back([&] {
      try {
        scheduler.run(request, {});
        ++served;
      } catch (const ServingError& e) {
        if (e.code() == ServingCode::resource_exhausted) ++refused;
      }
    });
  for (auto& client : clients) client.join();
  EXPECT_GT(refused.load(), 0);
  EXPECT_GT(served.load(), 0);
  EXPECT_EQ(refused + served, 32);

  InputBatch bad = request;
  bad.input_ids[3] = 1 << 20;
  EXPECT_THROW(scheduler.run(bad, {}), InvalidArgument);
  EXPECT_NO_THROW(scheduler.run(request, {}));
}

TEST(BatchSchedulerTest, MergedBatchesStayWithinTheEnginesTokenLimit) {
  // Three requests of 2000 full rows of 64 tokens: any two merged exceed 2^18 padded tokens, which the engine
  // refuses, so each must run in a batch of its own instead of failing together.
  const auto model = BertModel::from_model(testing::tiny_model(), {});
  BatchingOptions batching;
  batching.max_batch_size = 10000;
  batching.batch_timeout_micros = 200000;
  BatchScheduler scheduler(model, batching, true, "tiny", nullptr);
  const InputBatch request = random_request(model->config(), 2000, 64, 5);
  std::vector<std::future<OutputBatch>> results;
  for (int i = 0; i < 3; ++i) results.push_back(std::async(std::launch::async, [&] { return scheduler.run(request, {}); }));
  for (auto& result : results) EXPECT_EQ(result.get().label_ids.size(), 2000u * 64u);
}

TEST(BatchSchedulerTest, RequestsLargerThanABatchRunInPiecesWhileOthersQueue) {
  // Before, a request of more rows than the queue holds got "queue full" whenever anything else was queued, so it
  // could never succeed under load; and one over the engine's 2^18 tokens was refused outright.
  const auto model = BertModel::from_model(testing::tiny_model(), {});
  BatchingOptions batching;
  batching.max_batch_size = 4;
  batching.max_enqueued_batches = 2;
  batching.batch_timeout_micros = 1000;
  BatchScheduler scheduler(model, batching, true, "tiny", nullptr);
  const InputBatch large = random_request(model->config(), 37, 12, 7);
  std::atomic<bool> busy = true;
  std::atomic<int> other_served = 0;
  auto others = std::async(std::launch::async, [&] {
    const InputBatch small = random_request(model->config(), 1, 12, 8);
    while (busy) {
      try {
        scheduler.run(small, {});
        ++other_served;
      } catch (const ServingError&) {
      }
    }
  });
  const OutputBatch pieced = scheduler.run(large, {true, true, false, true});
  busy = false;
  others.get();
  Workspace workspace;
  const OutputBatch alone = model->run(large, {true, true, false, true}, workspace);
  EXPECT_EQ(pieced.batch, 37);
  EXPECT_EQ(pieced.label_ids, alone.label_ids);
  ASSERT_EQ(pieced.logits.size(), alone.logits.size());
  for (size_t k = 0; k < alone.logits.size(); ++k) ASSERT_NEAR(pieced.logits[k], alone.logits[k], 1e-5);
  EXPECT_EQ(pieced.probabilities.size(), alone.probabilities.size());
  EXPECT_GT(other_served.load(), 0);

  // Over the engine's token limit in one request: runs in pieces too.
  BatchingOptions unbounded;
  unbounded.max_batch_size = 100000;
  BatchScheduler big(model, unbounded, true, "tiny", nullptr);
  const int64_t rows = BertModel::kMaxBatchTokens / 64 + 3;
  EXPECT_EQ(big.run(random_request(model->config(), rows, 64, 9), {}).label_ids.size(), static_cast<size_t>(rows * 64));
  // A bad row in a late piece refuses the whole request before any piece runs.
  InputBatch bad = large;
  bad.input_ids.back() = 1 << 20;
  EXPECT_THROW(scheduler.run(bad, {}), InvalidArgument);
}

// The nice value of each of this process's threads (field 19 of /proc/self/task/TID/stat).
std::vector<int> thread_niceness() {
  std::vector<int> values;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream stat(task.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19 && fields >> field; ++i)
      if (i == 19) values.push_back(std::stoi(field));
  }
  return values;
}

TEST(BatchSchedulerTest, ModelCallsRunBelowThePriorityOfTheThreadsThatAnswerRequests) {
  const int own = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  const auto model = BertModel::from_model(testing::tiny_model(), {});
  BatchScheduler scheduler(model, {}, false, "tiny", nullptr);
  scheduler.run(random_request(model->config(), 2, 16, 3), {});
  const std::vector<int> niceness = thread_niceness();
  EXPECT_NE(std::find(niceness.begin(), niceness.end(), std::min(19, own + 5)), niceness.end())
      << "no thread runs model calls at nice " << own + 5;
  EXPECT_EQ(getpriority(PRIO_PROCESS, static_cast<id_t>(gettid())), own) << "the caller's priority changed";
}

TEST(BatchSchedulerTest, BadRequestsAreAnsweredWithoutWaitingInTheQueue) {
  const auto model = BertModel::from_model(testing::tiny_model(), {});
  BatchingOptions batching;
  batching.max_batch_size = 64;
  batching.batch_timeout_micros = 60'000'000;  // a valid request waits a minute for company
  BatchScheduler scheduler(model, batching, true, "tiny", nullptr);
  const InputBatch request = random_request(model->config(), 1, 8, 1);
  auto waiting = std::async(std::launch::async, [&] { return scheduler.run(request, {}); });
  InputBatch bad = request;
  bad.input_ids[3] = 1 << 20;
  auto refused = std::async(std::launch::async, [&] { scheduler.run(bad, {}); });
  // Validated before it is queued: the error comes now, not after the batch timeout.
  ASSERT_EQ(refused.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  try {
    refused.get();
    FAIL() << "an id outside the vocabulary was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_TRUE(Contains(e.what(), "outside the vocabulary"));
  }
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  // 63 more rows fill the batch, which then runs at once with the waiting request in it.
  EXPECT_NO_THROW(scheduler.run(random_request(model->config(), 63, 8, 2), {}));
  EXPECT_NO_THROW(waiting.get());
}

class ModelManagerTest : public ::testing::Test {
 protected:
  void write_version(int64_t version, uint64_t seed) {
    fs::create_directories(base_ / std::to_string(version));
    save_frozen_model(testing::tiny_model(seed), (base_ / std::to_string(version) / "model.safetensors").string());
  }
  ModelManager manager(VersionPolicy policy = {}) {
    ModelManagerOptions options;
    options.poll_seconds = 0;
    options.log = [this](const std::string& line) { log_ += line + "\n"; };
    return ModelManager({{"tiny", base_.string(), policy, {{"stable", 1}}}}, options);
  }
  testing::TempDir dir_;
  fs::path base_ = dir_ / "tiny";
  std::string log_;
};

TEST_F(ModelManagerTest, TruncatingOrOverwritingTheServedFileCannotCrashIt) {
  write_version(1, 1);
  ModelManager models = manager();
  models.start();
  const auto serving = models.find("tiny");
  InputBatch in;
  in.batch = 1;
  in.length = 3;
  in.input_ids = {1, 2, 3};
  const OutputBatch before = serving->run(in, {});
  const fs::path file = base_ / "1" / "model.safetensors";
  fs::resize_file(file, 0);  // `truncate -s 0`: a mapped embedding table would now raise SIGBUS
  EXPECT_EQ(serving->run(in, {}).logits, before.logits);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << std::string(4096, 'x');  // `cp` of another file over it
  EXPECT_EQ(serving->run(in, {}).logits, before.logits);
}

TEST_F(ModelManagerTest, ServesTheNewestVersionAndSwapsSafely) {
  write_version(1, 1);
  write_version(2, 2);
  ModelManager models = manager();
  EXPECT_FALSE(models.ready());
  models.start();
  EXPECT_TRUE(models.ready());
  auto serving = models.find("tiny");
  EXPECT_EQ(serving->version(), 2);
  EXPECT_THROW(models.find("tiny", 1), ServingError);  // latest policy: only 2 is loaded
  EXPECT_THROW(models.find("nope"), ServingError);
  EXPECT_THROW(models.find("tiny", std::nullopt, "canary"), ServingError);

  // A corrupt new version is reported and never replaces the serving one.
  fs::create_directories(base_ / "3");
  std::ofstream(base_ / "3" / "model.safetensors") << "not a model";
  models.poll();
  EXPECT_EQ(models.find("tiny")->version(), 2);
  const auto statuses = models.status("tiny");
  ASSERT_FALSE(statuses.empty());
  EXPECT_EQ(statuses.front().version, 3);
  EXPECT_EQ(statuses.front().state, VersionState::end);
  EXPECT_TRUE(Contains(statuses.front().error_message, "failed to load"));
  EXPECT_EQ(models.status("tiny", 2).front().state, VersionState::available);

  // A good version 4 takes over; a request holding version 2 still finishes on it.
  write_version(4, 4);
  models.poll();
  EXPECT_EQ(models.find("tiny")->version(), 4);
  EXPECT_EQ(models.status("tiny", 2).front().state, VersionState::end);
  InputBatch in;
  in.batch = 1;
  in.length = 3;
  in.input_ids = {1, 2, 3};
  EXPECT_EQ(serving->run(in, {}).label_ids.size(), 3u);
  EXPECT_TRUE(Contains(log_, "version 4: available"));
}

TEST_F(ModelManagerTest, SpecificPolicyAndLabels) {
  write_version(1, 1);
  write_version(2, 2);
  VersionPolicy policy;
  policy.kind = VersionPolicy::Kind::specific;
  policy.versions = {1, 2};
  ModelManager models = manager(policy);
  models.start();
  EXPECT_EQ(models.find("tiny", 1)->version(), 1);
  EXPECT_EQ(models.find("tiny", std::nullopt, "stable")->version(), 1);
  EXPECT_EQ(models.find("tiny")->version(), 2);
  EXPECT_EQ(models.status("tiny").size(), 2u);
  EXPECT_THROW(models.status("tiny", 7), ServingError);
}

}  // namespace
}  // namespace halfserve

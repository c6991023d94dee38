#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/serve/server_config.h"

namespace halfserve {

class ServingMetrics;

// Runs requests on one model with a fixed set of worker threads (so concurrent requests never oversubscribe the
// cores) and, when batching is on, merges queued requests into one model call: rows of different lengths are
// padded to the longest with id 0 and mask 0 — never with copies of real data — and each request gets back
// exactly its own rows and length. A full queue refuses work with RESOURCE_EXHAUSTED.
class BatchScheduler {
 public:
  // `batching.max_batch_size` 0 or `enabled` false: every request is its own model call.
  BatchScheduler(std::shared_ptr<const BertModel> model, BatchingOptions batching, bool enabled,
                 std::string model_name, ServingMetrics* metrics);
  ~BatchScheduler();  // finishes queued work, then joins the workers
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  // Blocks until the result is ready. A request of more rows than one batch (max_batch_size, or the engine's token
  // limit) runs as several pieces in turn. Throws ServingError (RESOURCE_EXHAUSTED when the queue is full now) or
  // the model's InvalidArgument for a bad batch.
  OutputBatch run(const InputBatch& inputs, const OutputSelection& outputs);

 private:
  struct Task {
    const InputBatch* inputs;
    OutputSelection outputs;
    std::promise<OutputBatch> result;
    std::chrono::steady_clock::time_point enqueued;
  };
  int64_t rows_per_piece(int64_t length) const;
  // Queues one validated batch of at most rows_per_piece rows and waits for its result.
  OutputBatch run_piece(const InputBatch& inputs, const OutputSelection& outputs);
  void work();
  std::vector<std::unique_ptr<Task>> next_batch(std::unique_lock<std::mutex>& lock);
  void execute(std::vector<std::unique_ptr<Task>>& valid, Workspace& workspace);

  std::shared_ptr<const BertModel> model_;
  BatchingOptions batching_;
  bool enabled_;
  std::string model_name_;
  ServingMetrics* metrics_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Task>> queue_;
  int64_t queued_rows_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace halfserve

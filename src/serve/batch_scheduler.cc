#include "halfserve/serve/batch_scheduler.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "halfserve/serve/metrics.h"
#include "halfserve/serve/serving_error.h"

namespace halfserve {

namespace {

using clock = std::chrono::steady_clock;

double microseconds_since(clock::time_point start) {
  return std::chrono::duration<double, std::micro>(clock::now() - start).count();
}

// Copies rows of a [rows, length, width] output into a request's result, trimming the batch's padding columns.
template <typename T>
std::vector<T> slice_rows(const std::vector<T>& values, int64_t first_row, int64_t rows, int64_t batch_length,
                          int64_t length, int64_t width) {
  if (values.empty()) return {};
  std::vector<T> result(static_cast<size_t>(rows * length * width));
  for (int64_t r = 0; r < rows; ++r) {
    const T* source = values.data() + ((first_row + r) * batch_length) * width;
    std::copy(source, source + length * width, result.data() + r * length * width);
  }
  return result;
}

// Model calls run at a lower priority than the threads that read requests and answer them (this worker's OpenMP
// team is started by it, so inherits it): when inference fills every core, a request that needs no model — an
// invalid one, a status query — is still answered in milliseconds instead of waiting for a time slice. Under no
// contention it changes nothing. Raising one's own nice value needs no privilege.
constexpr int kModelCallNiceness = 5;

void lower_this_threads_priority() {
  const auto thread = static_cast<id_t>(gettid());
  errno = 0;
  const int current = getpriority(PRIO_PROCESS, thread);
  if (errno == 0) setpriority(PRIO_PROCESS, thread, std::min(19, current + kModelCallNiceness));
}

}  // namespace

BatchScheduler::BatchScheduler(std::shared_ptr<const BertModel> model, BatchingOptions batching, bool enabled,
                               std::string model_name, ServingMetrics* metrics)
    : model_(std::move(model)),
      batching_(batching),
      enabled_(enabled && batching.max_batch_size > 1),
      model_name_(std::move(model_name)),
      metrics_(metrics) {
  const int64_t workers = std::max<int64_t>(1, batching_.num_batch_threads);
  for (int64_t i = 0; i < workers; ++i) workers_.emplace_back([this] { work(); });
}

BatchScheduler::~BatchScheduler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

namespace {

// Rows [first, first + count) of `in`.
InputBatch row_slice(const InputBatch& in, int64_t first, int64_t count) {
  InputBatch piece;
  piece.batch = count;
  piece.length = in.length;
  auto slice = [&](const std::vector<int32_t>& values) {
    if (values.empty()) return std::vector<int32_t>();
    return std::vector<int32_t>(values.begin() + first * in.length, values.begin() + (first + count) * in.length);
  };
  piece.input_ids = slice(in.input_ids);
  piece.attention_mask = slice(in.attention_mask);
  piece.token_type_ids = slice(in.token_type_ids);
  return piece;
}

// The pieces' outputs as one batch: every output is row-major with the batch first, so rows append.
OutputBatch append_rows(std::vector<OutputBatch>& pieces) {
  OutputBatch all = std::move(pieces.front());
  for (size_t p = 1; p < pieces.size(); ++p) {
    OutputBatch& piece = pieces[p];
    all.batch += piece.batch;
    all.logits.insert(all.logits.end(), piece.logits.begin(), piece.logits.end());
    all.label_ids.insert(all.label_ids.end(), piece.label_ids.begin(), piece.label_ids.end());
    all.last_hidden_state.insert(all.last_hidden_state.end(), piece.last_hidden_state.begin(), piece.last_hidden_state.end());
    all.probabilities.insert(all.probabilities.end(), piece.probabilities.begin(), piece.probabilities.end());
  }
  return all;
}

}  // namespace

int64_t BatchScheduler::rows_per_piece(int64_t length) const {
  const int64_t by_tokens = BertModel::kMaxBatchTokens / std::max<int64_t>(1, length);
  return std::max<int64_t>(1, std::min(std::max<int64_t>(1, batching_.max_batch_size), by_tokens));
}

OutputBatch BatchScheduler::run(const InputBatch& inputs, const OutputSelection& outputs) {
  // A bad request is answered at once (400 naming the bad id, length or mask), never after waiting in the queue,
  // and never with "queue full" when it could not have run anyway.
  const int64_t piece_rows = rows_per_piece(inputs.length);
  if (inputs.batch <= piece_rows) {
    model_->validate(inputs);
    return run_piece(inputs, outputs);
  }
  // Larger than one batch (or than the engine's token limit): split by rows into pieces that each fit, every one
  // validated before any runs, then run in turn. Each piece queues like any request, so a large request is never
  // refused as "queue full" for being large, only when the queue is full now.
  std::vector<InputBatch> pieces;
  for (int64_t first = 0; first < inputs.batch; first += piece_rows)
    pieces.push_back(row_slice(inputs, first, std::min(piece_rows, inputs.batch - first)));
  for (const InputBatch& piece : pieces) model_->validate(piece);
  std::vector<OutputBatch> results;
  for (const InputBatch& piece : pieces) results.push_back(run_piece(piece, outputs));
  return append_rows(results);
}

OutputBatch BatchScheduler::run_piece(const InputBatch& inputs, const OutputSelection& outputs) {
  auto task = std::make_unique<Task>();
  task->inputs = &inputs;
  task->outputs = outputs;
  task->enqueued = clock::now();
  std::future<OutputBatch> result = task->result.get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw ServingError(ServingCode::unavailable, "model " + model_name_ + " is shutting down");
    const int64_t capacity = std::max<int64_t>(1, batching_.max_enqueued_batches) * std::max<int64_t>(1, batching_.max_batch_size);
    if (queued_rows_ + inputs.batch > capacity && !queue_.empty())
      throw ServingError(ServingCode::resource_exhausted,
                         "the request queue of model " + model_name_ + " is full (" + std::to_string(queued_rows_) +
                             " rows waiting, limit " + std::to_string(capacity) + "); retry later");
    queued_rows_ += inputs.batch;
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
  return result.get();
}

std::vector<std::unique_ptr<BatchScheduler::Task>> BatchScheduler::next_batch(std::unique_lock<std::mutex>& lock) {
  std::vector<std::unique_ptr<Task>> batch;
  wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
  if (queue_.empty()) return batch;
  if (enabled_) {
    // Wait for the batch to fill or for its oldest request's timeout, whichever comes first.
    const auto deadline = queue_.front()->enqueued + std::chrono::microseconds(batching_.batch_timeout_micros);
    wake_.wait_until(lock, deadline, [&] { return stopping_ || queued_rows_ >= batching_.max_batch_size; });
    if (queue_.empty()) return batch;  // another worker took them
  }
  int64_t rows = 0, length = 0;
  while (!queue_.empty()) {
    const int64_t task_rows = queue_.front()->inputs->batch;
    // The merged batch pads every row to the longest: it must stay a batch the engine accepts.
    const int64_t merged_length = std::max(length, queue_.front()->inputs->length);
    if (!batch.empty() && (!enabled_ || rows + task_rows > batching_.max_batch_size ||
                           (rows + task_rows) * merged_length > BertModel::kMaxBatchTokens))
      break;
    rows += task_rows;
    length = merged_length;
    queued_rows_ -= task_rows;
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return batch;
}

void BatchScheduler::work() {
  // The model computes with its own thread count (the model manager splits the cores between the workers).
  lower_this_threads_priority();
  Workspace workspace;  // one per worker: buffers grow to the largest batch once and are reused
  std::unique_lock lock(mutex_);
  while (true) {
    auto batch = next_batch(lock);
    if (batch.empty()) {
      if (stopping_ && queue_.empty()) return;
      continue;
    }
    lock.unlock();
    execute(batch, workspace);
    lock.lock();
  }
}

void BatchScheduler::execute(std::vector<std::unique_ptr<Task>>& valid, Workspace& workspace) {
  // Every task was validated before it was queued (run()), so none can spoil a merged batch.
  if (valid.empty()) return;
  int64_t rows = 0, length = 0;
  OutputSelection outputs{false, false, false, false};
  for (const auto& task : valid) {
    rows += task->inputs->batch;
    length = std::max(length, task->inputs->length);
    outputs.logits |= task->outputs.logits;
    outputs.label_ids |= task->outputs.label_ids;
    outputs.last_hidden_state |= task->outputs.last_hidden_state;
    outputs.probabilities |= task->outputs.probabilities;
  }
  if (metrics_ != nullptr) metrics_->observe_batch(model_name_, rows, microseconds_since(valid.front()->enqueued));
  try {
    if (valid.size() == 1) {
      valid.front()->result.set_value(model_->run(*valid.front()->inputs, valid.front()->outputs, workspace));
      return;
    }
    // Merge: pad every row to the longest with id 0, type 0 and mask 0, so padding is never attended to.
    InputBatch merged;
    merged.batch = rows;
    merged.length = length;
    const size_t total = static_cast<size_t>(rows * length);
    merged.input_ids.assign(total, 0);
    merged.attention_mask.assign(total, 0);
    merged.token_type_ids.assign(total, 0);
    int64_t row = 0;
    for (const auto& task : valid) {
      const InputBatch& in = *task->inputs;
      for (int64_t r = 0; r < in.batch; ++r, ++row) {
        for (int64_t t = 0; t < in.length; ++t) {
          const size_t from = static_cast<size_t>(r * in.length + t), to = static_cast<size_t>(row * length + t);
          merged.input_ids[to] = in.input_ids[from];
          merged.attention_mask[to] = in.attention_mask.empty() ? 1 : in.attention_mask[from];
          merged.token_type_ids[to] = in.token_type_ids.empty() ? 0 : in.token_type_ids[from];
        }
      }
    }
    const OutputBatch out = model_->run(merged, outputs, workspace);
    const int64_t labels = static_cast<int64_t>(model_->metadata().labels.size()), hidden = model_->config().hidden_size;
    row = 0;
    for (const auto& task : valid) {
      const InputBatch& in = *task->inputs;
      OutputBatch result;
      result.batch = in.batch;
      result.length = in.length;
      if (task->outputs.logits) result.logits = slice_rows(out.logits, row, in.batch, length, in.length, labels);
      if (task->outputs.label_ids) result.label_ids = slice_rows(out.label_ids, row, in.batch, length, in.length, 1);
      if (task->outputs.probabilities) result.probabilities = slice_rows(out.probabilities, row, in.batch, length, in.length, labels);
      if (task->outputs.last_hidden_state)
        result.last_hidden_state = slice_rows(out.last_hidden_state, row, in.batch, length, in.length, hidden);
      row += in.batch;
      task->result.set_value(std::move(result));
    }
  } catch (...) {
    for (auto& task : valid) {
      try {
        task->result.set_exception(std::current_exception());
      } catch (const std::future_error&) {
        // this task already has its result
      }
    }
  }
}

}  // namespace halfserve

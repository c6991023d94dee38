#include "serve/request_threads.h"

#include <system_error>

namespace halfserve {

bool RequestThreads::enqueue(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    const bool needs_thread = jobs_.size() >= idle_;
    if (needs_thread && threads_.size() >= max_threads_ && jobs_.size() - idle_ >= max_waiting_) return false;
    jobs_.push_back(std::move(job));
    if (needs_thread && threads_.size() < max_threads_) {
      try {
        threads_.emplace_back([this] { work(); });
        return true;
      } catch (const std::system_error&) {
        // Out of threads: the job waits for a running one, as beyond the limit.
      }
    }
  }
  wake_.notify_one();
  return true;
}

void RequestThreads::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
}

void RequestThreads::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    --idle_;
    if (jobs_.empty()) return;
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    try {
      job();
    } catch (...) {
      // One request's failure must never take the server down.
    }
    lock.lock();
  }
}

}  // namespace halfserve

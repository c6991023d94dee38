#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace halfserve {

// Runs jobs on threads started on demand, up to a limit, that then stay: a server that never sees more than a few
// requests at once never holds hundreds of threads. Beyond the limit, jobs wait in turn. Each job is a request
// that may block (on its model's batch), which is why they run here and not on the event loop.
class RequestThreads {
 public:
  // `max_waiting`: jobs that may wait for a thread at once; enqueue refuses more.
  explicit RequestThreads(size_t max_threads, size_t max_waiting = SIZE_MAX)
      : max_threads_(max_threads), max_waiting_(max_waiting) {}
  ~RequestThreads() { shutdown(); }
  RequestThreads(const RequestThreads&) = delete;
  RequestThreads& operator=(const RequestThreads&) = delete;

  // False (and the job dropped) when max_waiting jobs already wait.
  bool enqueue(std::function<void()> job);
  // Runs the queued jobs, then joins every thread.
  void shutdown();

 private:
  void work();

  size_t max_threads_;
  size_t max_waiting_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace halfserve

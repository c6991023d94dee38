#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace halfserve {

// CPU contention for a measurement: `threads` busy loops in other processes, the way a sidecar, a log shipper or a
// neighbour under the same CPU limit takes cores from a server. Started by the constructor, stopped by the
// destructor; each loop also ends by itself after `max_seconds` and when this process dies, so none outlives the
// run.
class CpuContention {
 public:
  CpuContention(int threads, double max_seconds);
  ~CpuContention();
  CpuContention(const CpuContention&) = delete;
  CpuContention& operator=(const CpuContention&) = delete;

  // "2 busy threads of another process", for reports.
  std::string description() const;
  const std::vector<pid_t>& processes() const { return loops_; }

 private:
  void stop();

  std::vector<pid_t> loops_;
};

}  // namespace halfserve

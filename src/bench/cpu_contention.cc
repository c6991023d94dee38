#include "halfserve/bench/cpu_contention.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "halfserve/util/error.h"

namespace halfserve {

namespace {

// The child only calls async-signal-safe functions: the parent may have other threads (OpenMP's) when it forks.
[[noreturn]] void spin_until_killed(unsigned seconds) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  alarm(seconds);  // SIGALRM's default action ends the process
  volatile unsigned long counter = 0;
  for (;;) counter = counter + 1;
}

}  // namespace

CpuContention::CpuContention(int threads, double max_seconds) {
  if (threads < 0) throw InvalidArgument("contention needs a thread count of 0 or more, got " + std::to_string(threads));
  if (!(max_seconds > 0)) throw InvalidArgument("contention needs a time limit above 0 seconds");
  const auto seconds = static_cast<unsigned>(std::ceil(std::min(max_seconds, 86400.0)));
  for (int i = 0; i < threads; ++i) {
    const pid_t child = fork();
    if (child == 0) spin_until_killed(seconds);
    if (child < 0) {
      const std::string reason = std::strerror(errno);
      stop();
      throw Error("cannot start a busy loop for --contend: " + reason);
    }
    loops_.push_back(child);
  }
}

CpuContention::~CpuContention() { stop(); }

void CpuContention::stop() {
  for (const pid_t child : loops_) kill(child, SIGKILL);
  for (const pid_t child : loops_) waitpid(child, nullptr, 0);
  loops_.clear();
}

std::string CpuContention::description() const {
  return std::to_string(loops_.size()) + " busy thread" + (loops_.size() == 1 ? "" : "s") + " of other processes";
}

}  // namespace halfserve

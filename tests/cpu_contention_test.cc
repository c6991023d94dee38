#include "halfserve/bench/cpu_contention.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "halfserve/util/error.h"

namespace halfserve {
namespace {

// A process's state letter from /proc/PID/stat ("R" running, "Z" zombie...), or "" once it is gone.
std::string process_state(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return "";
  const auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() ? "" : line.substr(close + 2, 1);
}

TEST(CpuContention, BusyLoopsRunWhileHeldAndAreGoneAfter) {
  std::vector<pid_t> loops;
  {
    CpuContention contention(2, 30);
    loops = contention.processes();
    ASSERT_EQ(loops.size(), 2u);
    EXPECT_EQ(contention.description(), "2 busy threads of other processes");
    for (const pid_t pid : loops) {
      EXPECT_EQ(kill(pid, 0), 0);
      EXPECT_NE(process_state(pid), "Z");
    }
  }
  for (const pid_t pid : loops) {
    EXPECT_EQ(kill(pid, 0), -1);
    EXPECT_EQ(errno, ESRCH);
  }
}

TEST(CpuContention, BadArgumentsAreClearErrors) {
  EXPECT_THROW(CpuContention(-1, 1), InvalidArgument);
  EXPECT_THROW(CpuContention(1, 0), InvalidArgument);
  EXPECT_NO_THROW(CpuContention(0, 1));
}

}  // namespace
}  // namespace halfserve

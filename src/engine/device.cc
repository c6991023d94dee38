#include "halfserve/engine/device.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "halfserve/util/error.h"

namespace halfserve {

std::string_view device_name(Device device) { return device == Device::cuda ? "cuda" : "cpu"; }

Device parse_device(std::string_view name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda" || name == "gpu") return Device::cuda;
  throw InvalidArgument("unknown device '" + std::string(name) + "' (expected cpu or cuda)");
}

int available_cpus() {
  int cpus = 1;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) == 0) cpus = std::max(1, CPU_COUNT(&mask));
  else cpus = std::max(1u, std::thread::hardware_concurrency());  // more CPUs than a cpu_set_t holds
  // cgroup v2: "max 100000" (no limit) or "QUOTA PERIOD" in microseconds.
  std::ifstream limit("/sys/fs/cgroup/cpu.max");
  std::string quota;
  double period = 0;
  if (limit >> quota >> period && quota != "max" && period > 0) {
    try {
      const double share = std::stod(quota) / period;
      if (share > 0) cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(share))));
    } catch (const std::exception&) {
      // an unreadable limit is no limit
    }
  }
  return cpus;
}

int default_cpu_threads() {
  if (const char* setting = std::getenv("OMP_NUM_THREADS"); setting != nullptr) {
    const long threads = std::strtol(setting, nullptr, 10);  // "4" or a nested list "4,2": its first number
    if (threads > 0) return static_cast<int>(std::min<long>(threads, 4096));
  }
  return available_cpus();
}

}  // namespace halfserve

#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace halfserve {

enum class Device : uint8_t { cpu, cuda };

std::string_view device_name(Device device);
Device parse_device(std::string_view name);  // "cpu" | "cuda"; throws InvalidArgument otherwise

// The CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (a container's or a
// Kubernetes pod's limit) rounded up; at least 1.
int available_cpus();
// What a thread count of 0 ("all cores") resolves to everywhere: OMP_NUM_THREADS when the user set it (its first
// number), else available_cpus().
int default_cpu_threads();

}  // namespace halfserve

#include "halfserve/engine/device.h"

#include "halfserve/util/error.h"

namespace halfserve {

std::string_view device_name(Device device) { return device == Device::cuda ? "cuda" : "cpu"; }

Device parse_device(std::string_view name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda" || name == "gpu") return Device::cuda;
  throw InvalidArgument("unknown device '" + std::string(name) + "' (expected cpu or cuda)");
}

}  // namespace halfserve

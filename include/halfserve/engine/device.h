#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace halfserve {

enum class Device : uint8_t { cpu, cuda };

std::string_view device_name(Device device);
Device parse_device(std::string_view name);  // "cpu" | "cuda"; throws InvalidArgument otherwise

}  // namespace halfserve

#pragma once

#include <string>

namespace halfserve {

inline constexpr const char* kVersion = "0.1.0";

// The current time as ISO 8601 UTC ("2026-11-26T10:00:00Z"), for provenance records.
std::string utc_timestamp();

}  // namespace halfserve

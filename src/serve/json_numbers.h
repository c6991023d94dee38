#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

// Numbers in JSON replies, written by hand rather than through a document: every protocol's reply holds up to
// millions of them.
namespace halfserve {

// Shortest round-trip form; NaN and infinities (which JSON cannot hold) as null. Floats stay recognisable as floats
// ("7.0", "-0.0"), as TF Serving writes them.
inline void append_json_float(std::string& out, float value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
  if (std::find_if(buffer, result.ptr, [](char c) { return c == '.' || c == 'e'; }) == result.ptr) out += ".0";
}

inline void append_json_int(std::string& out, int64_t value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

// A float as a document value: its shortest round-trip text read back as a double, so the reply shows 0.25 rather
// than 0.2500000037… and parsing it back gives the exact float (as predict replies do); null when not finite.
inline nlohmann::json json_float(float value) {
  if (!std::isfinite(value)) return nullptr;
  char buffer[32];
  const auto written = std::to_chars(buffer, buffer + sizeof buffer, value);
  double shortest = 0;
  std::from_chars(buffer, written.ptr, shortest);
  return shortest;
}

}  // namespace halfserve

#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
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

}  // namespace halfserve

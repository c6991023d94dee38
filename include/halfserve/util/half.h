#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

// Scalar IEEE half and bfloat16 conversions with round-to-nearest-even. They are portable (no F16C needed),
// so a binary built here runs on any x86-64; the hot paths convert whole rows and the compiler vectorises.
namespace halfserve {

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Subnormal half: mantissa * 2^-24 is exact in float.
  const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return sign ? -magnitude : magnitude;
}

inline uint16_t float_to_half(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return sign | 0x7e00u;  // NaN stays NaN (quiet)
  if (abs_bits >= 0x477ff000u) return sign | 0x7c00u;  // rounds past 65504: infinity
  if (abs_bits < 0x38800000u) {
    // Result is subnormal or zero: scale so that the half ulp (2^-24) becomes 1 and round to integer.
    const float magnitude = std::bit_cast<float>(abs_bits) * 0x1p24f;
    return sign | static_cast<uint16_t>(std::nearbyint(magnitude));
  }
  // Normal: rebias exponent, round the 13 dropped bits to nearest even.
  uint32_t rounded = abs_bits + 0xfffu + ((abs_bits >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - (112u << 23)) >> 13);
}

inline float bfloat16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

inline uint16_t float_to_bfloat16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

inline constexpr float kHalfMax = 65504.0f;
inline constexpr float kBfloat16Max = 3.38953139e38f;

}  // namespace halfserve

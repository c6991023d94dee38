#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "halfserve/util/half.h"

namespace halfserve {
namespace {

// GCC's _Float16 conversions (libgcc soft-float) are the independent reference for IEEE half rounding.
uint16_t reference_half_bits(float value) {
  const _Float16 half = static_cast<_Float16>(value);
  uint16_t bits;
  std::memcpy(&bits, &half, sizeof bits);
  return bits;
}

TEST(HalfTest, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const float value = half_to_float(static_cast<uint16_t>(bits));
    _Float16 reference;
    const uint16_t raw = static_cast<uint16_t>(bits);
    std::memcpy(&reference, &raw, sizeof raw);
    if (std::isnan(value)) {
      EXPECT_TRUE(std::isnan(static_cast<float>(reference))) << bits;
      continue;
    }
    ASSERT_EQ(value, static_cast<float>(reference)) << "bits " << bits;
    ASSERT_EQ(float_to_half(value), static_cast<uint16_t>(bits)) << "bits " << bits;
  }
}

TEST(HalfTest, FloatToHalfRoundsLikeIeee) {
  // Sweep float bit patterns across the whole half range and beyond, including ties and subnormals.
  for (uint64_t bits = 0; bits < (1ull << 32); bits += 4093) {
    const float value = std::bit_cast<float>(static_cast<uint32_t>(bits));
    if (std::isnan(value)) continue;
    ASSERT_EQ(float_to_half(value), reference_half_bits(value)) << "value " << value;
  }
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(float_to_half(1e-9f), 0x0000);     // underflows to zero
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
}

TEST(HalfTest, Bfloat16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bfloat16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(float_to_bfloat16(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(float_to_bfloat16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  EXPECT_EQ(float_to_bfloat16(1.0f + 3 * 0x1p-8f), 0x3f82);  // halfway above odd 0x3f81: up to even
  EXPECT_TRUE(std::isnan(bfloat16_to_float(float_to_bfloat16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(bfloat16_to_float(float_to_bfloat16(std::numeric_limits<float>::max()))));
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const float value = bfloat16_to_float(static_cast<uint16_t>(bits));
    if (std::isnan(value)) continue;
    ASSERT_EQ(float_to_bfloat16(value), bits);
  }
}

}  // namespace
}  // namespace halfserve

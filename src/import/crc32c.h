#pragma once

#include <cstddef>
#include <cstdint>

// CRC32C (Castagnoli, reflected polynomial 0x82f63b78), the checksum TensorFlow and LevelDB put on checkpoint
// data and table blocks. Debian 12 ships no crc32c library, hence this one.
namespace halfserve::crc32c {

// The CRC32C of `data` appended to a stream whose CRC32C so far is `crc` (0 for an empty stream), so a large
// buffer can be checked in pieces: extend(extend(0, a), b) == value(a + b).
uint32_t extend(uint32_t crc, const void* data, size_t size);
inline uint32_t value(const void* data, size_t size) { return extend(0, data, size); }

// The table-driven path alone; extend() picks the SSE4.2 instruction where the CPU has it. Exposed so tests
// can check both paths agree.
uint32_t extend_portable(uint32_t crc, const void* data, size_t size);
bool hardware_accelerated();

// Files store CRCs masked, because a CRC computed over bytes that themselves embed CRCs is weak.
// TensorFlow and LevelDB use the same mask.
constexpr uint32_t kMaskDelta = 0xa282ead8u;
constexpr uint32_t mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
constexpr uint32_t unmask(uint32_t masked) {
  const uint32_t rotated = masked - kMaskDelta;
  return (rotated >> 17) | (rotated << 15);
}

}  // namespace halfserve::crc32c

#include "import/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HALFSERVE_CRC32C_SSE42 1
#include <nmmintrin.h>
#endif

namespace halfserve::crc32c {

namespace {

constexpr uint32_t kPolynomial = 0x82f63b78u;  // Castagnoli, bit-reversed

// Slicing-by-8: table[k][b] is the CRC of byte b followed by k zero bytes, so eight input bytes fold in with
// eight lookups instead of eight dependent shift loops.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables make_tables() {
  Tables tables{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? kPolynomial : 0u);
    tables[0][byte] = crc;
  }
  for (size_t k = 1; k < 8; ++k)
    for (size_t byte = 0; byte < 256; ++byte)
      tables[k][byte] = (tables[k - 1][byte] >> 8) ^ tables[0][tables[k - 1][byte] & 0xffu];
  return tables;
}

constexpr Tables kTables = make_tables();

uint32_t load_u32_le(const uint8_t* bytes) {
  return uint32_t{bytes[0]} | (uint32_t{bytes[1]} << 8) | (uint32_t{bytes[2]} << 16) | (uint32_t{bytes[3]} << 24);
}

// Works on the inverted register, as the CRC32C definition and the SSE4.2 instruction both do.
uint32_t update_portable(uint32_t state, const uint8_t* bytes, size_t size) {
  while (size >= 8) {
    const uint32_t low = load_u32_le(bytes) ^ state;
    const uint32_t high = load_u32_le(bytes + 4);
    state = kTables[7][low & 0xff] ^ kTables[6][(low >> 8) & 0xff] ^ kTables[5][(low >> 16) & 0xff] ^
            kTables[4][low >> 24] ^ kTables[3][high & 0xff] ^ kTables[2][(high >> 8) & 0xff] ^
            kTables[1][(high >> 16) & 0xff] ^ kTables[0][high >> 24];
    bytes += 8;
    size -= 8;
  }
  for (; size > 0; --size, ++bytes) state = (state >> 8) ^ kTables[0][(state ^ *bytes) & 0xff];
  return state;
}

#ifdef HALFSERVE_CRC32C_SSE42
__attribute__((target("sse4.2"))) uint32_t update_sse42(uint32_t state, const uint8_t* bytes, size_t size) {
  uint64_t wide = state;
  while (size >= 8) {
    uint64_t word;
    std::memcpy(&word, bytes, sizeof word);
    wide = _mm_crc32_u64(wide, word);
    bytes += 8;
    size -= 8;
  }
  auto narrow = static_cast<uint32_t>(wide);
  for (; size > 0; --size, ++bytes) narrow = _mm_crc32_u8(narrow, *bytes);
  return narrow;
}

bool cpu_has_sse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

}  // namespace

uint32_t extend_portable(uint32_t crc, const void* data, size_t size) {
  return ~update_portable(~crc, static_cast<const uint8_t*>(data), size);
}

bool hardware_accelerated() {
#ifdef HALFSERVE_CRC32C_SSE42
  return cpu_has_sse42();
#else
  return false;
#endif
}

uint32_t extend(uint32_t crc, const void* data, size_t size) {
#ifdef HALFSERVE_CRC32C_SSE42
  if (cpu_has_sse42()) return ~update_sse42(~crc, static_cast<const uint8_t*>(data), size);
#endif
  return extend_portable(crc, data, size);
}

}  // namespace halfserve::crc32c

// crc32c.cc — the portable CRC-32C kernel (slice-by-8), the polynomial arithmetic the SIMD
// kernels derive their constants from, and the run-time choice of kernel.
#include "crc32c.h"

#include <cstring>

namespace stratakv {
namespace {

constexpr uint32_t kPolynomialReflected = 0x82f63b78u;

// Tables for slice-by-8: table[k][b] is the CRC of byte b followed by k zero bytes.
struct SliceTables {
  uint32_t table[8][256];
  SliceTables() {
    for (uint32_t byte = 0; byte < 256; byte++) {
      uint32_t crc = byte;
      for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (kPolynomialReflected & (0u - (crc & 1u)));
      table[0][byte] = crc;
    }
    for (uint32_t byte = 0; byte < 256; byte++) {
      for (int k = 1; k < 8; k++) table[k][byte] = (table[k - 1][byte] >> 8) ^ table[0][table[k - 1][byte] & 0xff];
    }
  }
};

const SliceTables& Tables() {
  static const SliceTables tables;
  return tables;
}

// MultiplyModP multiplies two reflected polynomials modulo P (zlib's multmodp).
uint32_t MultiplyModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t mask = 1u << 31; mask != 0; mask >>= 1) {
    if (a & mask) product ^= b;
    b = (b & 1u) ? (b >> 1) ^ kPolynomialReflected : b >> 1;
  }
  return product;
}

}  // namespace

uint32_t Crc32cXPowMod(uint64_t n) {
  uint32_t result = 1u << 31;  // x^0
  uint32_t square = 1u << 30;  // x^1, squared once per bit of n
  while (n != 0) {
    if (n & 1u) result = MultiplyModP(result, square);
    square = MultiplyModP(square, square);
    n >>= 1;
  }
  return result;
}

uint32_t Crc32cTableUpdate(uint32_t state, const uint8_t* data, size_t length) {
  const SliceTables& t = Tables();
  // Bytes one at a time up to an 8-byte boundary is not needed for correctness (memcpy
  // loads are unaligned-safe); the 8-byte steps are what make this ~1 byte/cycle.
  while (length >= 8) {
    uint64_t word;
    std::memcpy(&word, data, 8);
    word ^= state;  // little-endian: the register meets the first four bytes
    state = t.table[7][word & 0xff] ^ t.table[6][(word >> 8) & 0xff] ^ t.table[5][(word >> 16) & 0xff] ^
            t.table[4][(word >> 24) & 0xff] ^ t.table[3][(word >> 32) & 0xff] ^
            t.table[2][(word >> 40) & 0xff] ^ t.table[1][(word >> 48) & 0xff] ^ t.table[0][word >> 56];
    data += 8;
    length -= 8;
  }
  while (length-- > 0) state = (state >> 8) ^ t.table[0][(state ^ *data++) & 0xff];
  return state;
}

const char* Crc32cImplementationName(Crc32cImplementation implementation) {
  switch (implementation) {
    case Crc32cImplementation::kTable: return "table";
    case Crc32cImplementation::kSse42: return "sse42";
    case Crc32cImplementation::kSse42Pclmul: return "sse42-pclmul";
    case Crc32cImplementation::kAvx512: return "avx512-vpclmulqdq";
    case Crc32cImplementation::kArmv8: return "armv8-crc";
    case Crc32cImplementation::kCount: break;
  }
  return "unknown";
}

Crc32cKernel Crc32cKernelFor(Crc32cImplementation implementation) {
  switch (implementation) {
    case Crc32cImplementation::kTable: return Crc32cTableUpdate;
    case Crc32cImplementation::kSse42:
    case Crc32cImplementation::kSse42Pclmul:
    case Crc32cImplementation::kAvx512: return Crc32cX86Kernel(implementation);
    case Crc32cImplementation::kArmv8: return Crc32cArmKernel(implementation);
    case Crc32cImplementation::kCount: break;
  }
  return nullptr;
}

Crc32cImplementation Crc32cBest() {
  static const Crc32cImplementation best = [] {
    const Crc32cImplementation preference[] = {Crc32cImplementation::kAvx512, Crc32cImplementation::kSse42Pclmul,
                                               Crc32cImplementation::kArmv8, Crc32cImplementation::kSse42};
    for (Crc32cImplementation candidate : preference) {
      if (Crc32cKernelFor(candidate) != nullptr) return candidate;
    }
    return Crc32cImplementation::kTable;
  }();
  return best;
}

uint32_t Crc32c(uint32_t seed, const uint8_t* data, size_t length) {
  static const Crc32cKernel kernel = Crc32cKernelFor(Crc32cBest());
  return ~kernel(~seed, data, length);
}

}  // namespace stratakv

// crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) with run-time dispatch to
// the fastest implementation this CPU supports. Every implementation works on the raw CRC
// register (already inverted), so callers chain chunks by passing the previous result back.
#ifndef STRATAKV_NATIVE_CRC32C_H_
#define STRATAKV_NATIVE_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace stratakv {

// Crc32cKernel updates a raw CRC register over `length` bytes.
using Crc32cKernel = uint32_t (*)(uint32_t state, const uint8_t* data, size_t length);

// Crc32cImplementation names one kernel; the order is from slowest to fastest.
enum class Crc32cImplementation : int {
  kTable = 0,        // slice-by-8 tables, any CPU
  kSse42 = 1,        // x86-64 crc32 instruction, one stream
  kSse42Pclmul = 2,  // x86-64 crc32 in three interleaved streams, joined by pclmulqdq
  kAvx512 = 3,       // x86-64 VPCLMULQDQ folding over 512-bit registers
  kArmv8 = 4,        // arm64 CRC32C instructions
  kCount = 5,
};

// Crc32cImplementationName is the stable name of an implementation ("table", ...).
const char* Crc32cImplementationName(Crc32cImplementation implementation);

// Crc32cKernelFor returns the kernel of `implementation`, or nullptr when this CPU or build
// cannot run it.
Crc32cKernel Crc32cKernelFor(Crc32cImplementation implementation);

// Crc32cBest is the fastest implementation this CPU supports (chosen once, by cpuid/hwcap).
Crc32cImplementation Crc32cBest();

// Crc32c computes the CRC-32C of data, continuing from `seed` (the CRC of the bytes before,
// 0 for none) with the best kernel.
uint32_t Crc32c(uint32_t seed, const uint8_t* data, size_t length);

// Crc32cTableUpdate is the portable kernel; the SIMD kernels use it for short tails.
uint32_t Crc32cTableUpdate(uint32_t state, const uint8_t* data, size_t length);

// Crc32cXPowMod returns x^n mod P in the reflected 32-bit form (bit 31 is x^0). The SIMD
// kernels derive their folding and stream-joining constants from it, so no magic numbers
// are copied from elsewhere.
uint32_t Crc32cXPowMod(uint64_t n);

// Kernels defined per architecture (nullptr-returning stubs elsewhere).
Crc32cKernel Crc32cX86Kernel(Crc32cImplementation implementation);
Crc32cKernel Crc32cArmKernel(Crc32cImplementation implementation);

}  // namespace stratakv

#endif  // STRATAKV_NATIVE_CRC32C_H_

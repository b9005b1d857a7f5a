// crc32c-arm.cc — CRC-32C with the ARMv8 CRC32C instructions (one stream), chosen at run time
// from the kernel's hwcaps so the addon also loads on arm64 cores without the extension.
#include "crc32c.h"

#if defined(__aarch64__)

#include <arm_acle.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>

#include <cstring>

namespace stratakv {
namespace {

__attribute__((target("+crc"))) uint32_t Armv8Update(uint32_t state, const uint8_t* data, size_t length) {
  while (length > 0 && (reinterpret_cast<uintptr_t>(data) & 7) != 0) {
    state = __crc32cb(state, *data++);
    length--;
  }
  while (length >= 8) {
    uint64_t word;
    std::memcpy(&word, data, sizeof word);
    state = __crc32cd(state, word);
    data += 8;
    length -= 8;
  }
  while (length-- > 0) state = __crc32cb(state, *data++);
  return state;
}

}  // namespace

Crc32cKernel Crc32cArmKernel(Crc32cImplementation implementation) {
  if (implementation != Crc32cImplementation::kArmv8) return nullptr;
  return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0 ? Armv8Update : nullptr;
}

}  // namespace stratakv

#else  // not arm64

namespace stratakv {
Crc32cKernel Crc32cArmKernel(Crc32cImplementation) { return nullptr; }
}  // namespace stratakv

#endif

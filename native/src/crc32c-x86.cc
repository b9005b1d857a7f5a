// crc32c-x86.cc — CRC-32C kernels for x86-64, compiled with function-level target attributes
// so the addon still loads on CPUs without them; Crc32cX86Kernel hands out only what cpuid
// says this CPU runs.
//
// Three kernels:
// - sse42: the crc32 instruction over 8 bytes at a time. Its latency is 3 cycles and its
//   throughput 1 per cycle, so one stream uses a third of the unit.
// - sse42-pclmul: three independent crc32 streams over three adjacent slices of a block,
//   joined by multiplying the first two by x^(8·slice bytes) mod P with pclmulqdq.
// - avx512-vpclmulqdq: folding. Four 512-bit accumulators (16 lanes of 128 bits) each
//   multiply their high and low halves by x^d mod P and absorb the next 256 bytes; at the end
//   the lanes fold into one 128-bit value, which the crc32 instruction finishes.
//
// Polynomial arithmetic, reflected (bit 0 of a byte is its highest power): a 128-bit lane
// loaded from memory is H·x^64 + L with H in the low quadword. Moving it d bits forward is
// H·x^(64+d) + L·x^d. pclmulqdq of two reflected 64-bit values yields their product times x
// (the result is one bit short of 128), so the constants are x^(d+63) and x^(d-1) mod P,
// shifted into the high half of their quadword. All constants come from Crc32cXPowMod.
#include "crc32c.h"

#if defined(__x86_64__)

// GCC 12 warns that its own _mm512_undefined_* placeholders "may be used uninitialized"
// inside the intrinsics; they are fully overwritten, so the warning is noise here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#define STRATAKV_TARGET_SSE42 __attribute__((target("sse4.2")))
#define STRATAKV_TARGET_PCLMUL __attribute__((target("sse4.2,pclmul")))
#define STRATAKV_TARGET_AVX512 __attribute__((target("sse4.2,pclmul,avx512f,avx512vl,vpclmulqdq")))

namespace stratakv {
namespace {

// Slice sizes of the three-stream kernel: long slices amortise the join, short ones serve
// medium inputs. Both are multiples of 8 so the streams run on whole quadwords.
constexpr size_t kLongSliceBytes = 8192;
constexpr size_t kShortSliceBytes = 256;
// Below this the folding kernel's set-up costs more than it saves.
constexpr size_t kFoldingMinimumBytes = 256;

uint64_t Load64(const uint8_t* data) {
  uint64_t word;
  std::memcpy(&word, data, sizeof word);
  return word;
}

// JoinConstant(n) multiplies a register by x^(8n) mod P through pclmulqdq + crc32 (see Shift).
uint64_t JoinConstant(size_t bytes) { return Crc32cXPowMod(8 * static_cast<uint64_t>(bytes) - 33); }

// FoldConstant(d) is the lane constant that moves a 128-bit lane d bits forward: the low
// quadword multiplies H, the high one L.
struct FoldConstant {
  uint64_t high_part;  // x^(d+63) mod P, for the lane's low quadword (H)
  uint64_t low_part;   // x^(d-1) mod P, for the lane's high quadword (L)
};
FoldConstant MakeFoldConstant(uint64_t distance_bits) {
  return FoldConstant{static_cast<uint64_t>(Crc32cXPowMod(distance_bits + 63)) << 32,
                      static_cast<uint64_t>(Crc32cXPowMod(distance_bits - 1)) << 32};
}

struct Constants {
  uint64_t join_long_twice = JoinConstant(2 * kLongSliceBytes);
  uint64_t join_long_once = JoinConstant(kLongSliceBytes);
  uint64_t join_short_twice = JoinConstant(2 * kShortSliceBytes);
  uint64_t join_short_once = JoinConstant(kShortSliceBytes);
  FoldConstant fold_2048 = MakeFoldConstant(2048);
  FoldConstant fold_512 = MakeFoldConstant(512);
  FoldConstant fold_384 = MakeFoldConstant(384);
  FoldConstant fold_256 = MakeFoldConstant(256);
  FoldConstant fold_128 = MakeFoldConstant(128);
};

const Constants& GetConstants() {
  static const Constants constants;
  return constants;
}

STRATAKV_TARGET_SSE42 uint32_t Sse42Update(uint32_t state, const uint8_t* data, size_t length) {
  uint64_t crc = state;
  // Unaligned crc32q loads cost little, but one that splits a cache line costs two.
  while (length > 0 && (reinterpret_cast<uintptr_t>(data) & 7) != 0) {
    crc = _mm_crc32_u8(static_cast<uint32_t>(crc), *data++);
    length--;
  }
  while (length >= 32) {
    crc = _mm_crc32_u64(crc, Load64(data));
    crc = _mm_crc32_u64(crc, Load64(data + 8));
    crc = _mm_crc32_u64(crc, Load64(data + 16));
    crc = _mm_crc32_u64(crc, Load64(data + 24));
    data += 32;
    length -= 32;
  }
  while (length >= 8) {
    crc = _mm_crc32_u64(crc, Load64(data));
    data += 8;
    length -= 8;
  }
  while (length-- > 0) crc = _mm_crc32_u8(static_cast<uint32_t>(crc), *data++);
  return static_cast<uint32_t>(crc);
}

// Shift returns crc·x^(8n) mod P given constant = JoinConstant(n): the carry-less product
// is crc·x^(8n-33)·x as a 64-bit message, and crc32 of a message multiplies it by x^32.
STRATAKV_TARGET_PCLMUL uint64_t ShiftProduct(uint64_t crc, uint64_t constant) {
  __m128i product = _mm_clmulepi64_si128(_mm_cvtsi64_si128(static_cast<int64_t>(crc)),
                                         _mm_cvtsi64_si128(static_cast<int64_t>(constant)), 0x00);
  return static_cast<uint64_t>(_mm_cvtsi128_si64(product));
}

// ThreeStreams runs the crc32 unit on three adjacent slices at once and joins them.
STRATAKV_TARGET_PCLMUL uint32_t ThreeStreams(uint64_t crc_a, const uint8_t* data, size_t slice_bytes,
                                             uint64_t join_twice, uint64_t join_once) {
  uint64_t crc_b = 0;
  uint64_t crc_c = 0;
  const uint8_t* a = data;
  const uint8_t* b = data + slice_bytes;
  const uint8_t* c = data + 2 * slice_bytes;
  for (size_t offset = 0; offset < slice_bytes; offset += 16) {
    crc_a = _mm_crc32_u64(crc_a, Load64(a + offset));
    crc_b = _mm_crc32_u64(crc_b, Load64(b + offset));
    crc_c = _mm_crc32_u64(crc_c, Load64(c + offset));
    crc_a = _mm_crc32_u64(crc_a, Load64(a + offset + 8));
    crc_b = _mm_crc32_u64(crc_b, Load64(b + offset + 8));
    crc_c = _mm_crc32_u64(crc_c, Load64(c + offset + 8));
  }
  // CRC(A‖B‖C) = crc_a·x^(8·2s) + crc_b·x^(8s) + crc_c: both shifts share one crc32.
  uint64_t joined = ShiftProduct(crc_a, join_twice) ^ ShiftProduct(crc_b, join_once);
  return static_cast<uint32_t>(_mm_crc32_u64(0, joined)) ^ static_cast<uint32_t>(crc_c);
}

STRATAKV_TARGET_PCLMUL uint32_t Sse42PclmulUpdate(uint32_t state, const uint8_t* data, size_t length) {
  const Constants& k = GetConstants();
  while (length > 0 && (reinterpret_cast<uintptr_t>(data) & 7) != 0) {
    state = _mm_crc32_u8(state, *data++);
    length--;
  }
  while (length >= 3 * kLongSliceBytes) {
    state = ThreeStreams(state, data, kLongSliceBytes, k.join_long_twice, k.join_long_once);
    data += 3 * kLongSliceBytes;
    length -= 3 * kLongSliceBytes;
  }
  while (length >= 3 * kShortSliceBytes) {
    state = ThreeStreams(state, data, kShortSliceBytes, k.join_short_twice, k.join_short_once);
    data += 3 * kShortSliceBytes;
    length -= 3 * kShortSliceBytes;
  }
  return Sse42Update(state, data, length);
}

STRATAKV_TARGET_AVX512 __m512i Broadcast(FoldConstant constant) {
  return _mm512_broadcast_i32x4(
      _mm_set_epi64x(static_cast<int64_t>(constant.low_part), static_cast<int64_t>(constant.high_part)));
}

// Fold512 moves every lane of `accumulator` forward by the constant's distance and adds `next`.
STRATAKV_TARGET_AVX512 __m512i Fold512(__m512i accumulator, __m512i constant, __m512i next) {
  __m512i high = _mm512_clmulepi64_epi128(accumulator, constant, 0x00);
  __m512i low = _mm512_clmulepi64_epi128(accumulator, constant, 0x11);
  return _mm512_ternarylogic_epi64(high, low, next, 0x96);  // 0x96: a ^ b ^ c
}

STRATAKV_TARGET_AVX512 __m128i Fold128(__m128i accumulator, FoldConstant constant) {
  __m128i k = _mm_set_epi64x(static_cast<int64_t>(constant.low_part), static_cast<int64_t>(constant.high_part));
  return _mm_xor_si128(_mm_clmulepi64_si128(accumulator, k, 0x00), _mm_clmulepi64_si128(accumulator, k, 0x11));
}

STRATAKV_TARGET_AVX512 uint32_t Avx512Update(uint32_t state, const uint8_t* data, size_t length) {
  if (length < kFoldingMinimumBytes) return Sse42PclmulUpdate(state, data, length);
  const Constants& k = GetConstants();
  // The register enters as the first four message bytes: CRC(s, M) = CRC(0, M ^ s).
  __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(data),
                                _mm512_inserti32x4(_mm512_setzero_si512(), _mm_cvtsi32_si128(static_cast<int>(state)), 0));
  __m512i x1 = _mm512_loadu_si512(data + 64);
  __m512i x2 = _mm512_loadu_si512(data + 128);
  __m512i x3 = _mm512_loadu_si512(data + 192);
  data += 256;
  length -= 256;
  const __m512i fold_2048 = Broadcast(k.fold_2048);
  while (length >= 256) {
    x0 = Fold512(x0, fold_2048, _mm512_loadu_si512(data));
    x1 = Fold512(x1, fold_2048, _mm512_loadu_si512(data + 64));
    x2 = Fold512(x2, fold_2048, _mm512_loadu_si512(data + 128));
    x3 = Fold512(x3, fold_2048, _mm512_loadu_si512(data + 192));
    data += 256;
    length -= 256;
  }
  const __m512i fold_512 = Broadcast(k.fold_512);
  __m512i x = Fold512(Fold512(Fold512(x0, fold_512, x1), fold_512, x2), fold_512, x3);
  while (length >= 64) {
    x = Fold512(x, fold_512, _mm512_loadu_si512(data));
    data += 64;
    length -= 64;
  }
  // Lanes sit 48, 32 and 16 bytes before the last one.
  __m128i accumulator = _mm_xor_si128(
      _mm_xor_si128(Fold128(_mm512_extracti32x4_epi32(x, 0), k.fold_384),
                    Fold128(_mm512_extracti32x4_epi32(x, 1), k.fold_256)),
      _mm_xor_si128(Fold128(_mm512_extracti32x4_epi32(x, 2), k.fold_128), _mm512_extracti32x4_epi32(x, 3)));
  while (length >= 16) {
    accumulator = _mm_xor_si128(Fold128(accumulator, k.fold_128),
                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(data)));
    data += 16;
    length -= 16;
  }
  // The folded value is congruent to the whole prefix, so its CRC from zero is the prefix's.
  uint64_t crc = _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(accumulator)));
  crc = _mm_crc32_u64(crc, static_cast<uint64_t>(_mm_extract_epi64(accumulator, 1)));
  return Sse42Update(static_cast<uint32_t>(crc), data, length);
}

}  // namespace

Crc32cKernel Crc32cX86Kernel(Crc32cImplementation implementation) {
  __builtin_cpu_init();
  const bool sse42 = __builtin_cpu_supports("sse4.2");
  const bool pclmul = sse42 && __builtin_cpu_supports("pclmul");
  // libgcc also checks (xgetbv) that the OS saves the 512-bit register state.
  const bool avx512 = pclmul && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("vpclmulqdq");
  switch (implementation) {
    case Crc32cImplementation::kSse42: return sse42 ? Sse42Update : nullptr;
    case Crc32cImplementation::kSse42Pclmul: return pclmul ? Sse42PclmulUpdate : nullptr;
    case Crc32cImplementation::kAvx512: return avx512 ? Avx512Update : nullptr;
    default: return nullptr;
  }
}

}  // namespace stratakv

#else  // not x86-64

namespace stratakv {
Crc32cKernel Crc32cX86Kernel(Crc32cImplementation) { return nullptr; }
}  // namespace stratakv

#endif

// CRC32c (Castagnoli), the checksum on every stored record and every byte stratakv moves.
//
// This file is the one place that chooses the implementation: our native addon's hardware
// CRC32c (src/native: AVX-512/VPCLMULQDQ folding, SSE4.2 with three interleaved streams,
// ARMv8 CRC, a table fallback; picked at run time). Callers use crc32c() and the LevelDB
// mask helpers only. The addon must be built (`npm run build:native`, which `npm test` runs
// when it is missing); without it the first call throws NATIVE_UNAVAILABLE.
export { crc32c, maskCrc32c, unmaskCrc32c } from '../native/index.ts';

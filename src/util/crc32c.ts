// CRC32c (Castagnoli), the checksum on every stored record and every byte stratakv moves.
//
// This file is the one place that chooses the implementation: today the @node-rs/crc32
// package (SIMD, prebuilt binaries); later our own native addon. Callers use crc32c() and
// the LevelDB mask helpers only, so switching is a change here and nowhere else.

import { crc32c as packageCrc32c } from '@node-rs/crc32';

/**
 * crc32c returns the CRC32c of `data`, continuing from `initial` (the CRC of the bytes
 * before it, 0 for none), as an unsigned 32-bit integer.
 */
export function crc32c(data: Uint8Array, initial = 0): number {
  return packageCrc32c(data, initial) >>> 0;
}

// LevelDB masks stored CRCs because computing the CRC of a string that contains embedded
// CRCs is problematic (a record holding its own checksum would checksum to a fixed point).
const MASK_DELTA = 0xa282ead8;

/** maskCrc32c masks a CRC for storage the way LevelDB does (rotate right 15, add a constant). */
export function maskCrc32c(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

/** unmaskCrc32c inverts maskCrc32c. */
export function unmaskCrc32c(masked: number): number {
  const rotated = (masked - MASK_DELTA) >>> 0;
  return ((rotated >>> 17) | (rotated << 15)) >>> 0;
}

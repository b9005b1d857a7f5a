// Little-endian u64 fields holding safe integers, shared by every stored format here
// (log records, KV commands, stored values). JavaScript numbers are exact up to 2^53, which
// bounds indexes, terms and revisions far beyond any cluster's lifetime.

import { assert } from '../util/assert.ts';

const TWO_POW_32 = 0x1_0000_0000;
// The high word of the largest safe integer (2^53 - 1).
const SAFE_HIGH_WORD_MAX = 0x1f_ffff;

/** writeU64 stores a non-negative safe integer as a little-endian u64. */
export function writeU64(view: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64: ${value} is not a non-negative safe integer`);
  view.setUint32(offset, value % TWO_POW_32, true);
  view.setUint32(offset + 4, Math.floor(value / TWO_POW_32), true);
}

/** readU64 reads a little-endian u64, or undefined when it is beyond the safe integers (corrupt). */
export function readU64(view: DataView, offset: number): number | undefined {
  const high = view.getUint32(offset + 4, true);
  if (high > SAFE_HIGH_WORD_MAX) return undefined;
  return high * TWO_POW_32 + view.getUint32(offset, true);
}

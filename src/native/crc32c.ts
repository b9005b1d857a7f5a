// crc32c.ts — CRC32c (Castagnoli) through the addon's hardware kernels, and the LevelDB mask
// that stored CRCs carry.
import { assert } from '../util/assert.ts';
import { nativeAddon } from './addon.ts';

/** Crc32cImplementation names one of the addon's CRC32c kernels. */
export type Crc32cImplementation = 'table' | 'sse42' | 'sse42-pclmul' | 'avx512-vpclmulqdq' | 'armv8-crc';

function checkArguments(data: Uint8Array, seed: number): void {
  assert(data instanceof Uint8Array, 'crc32c: data must be a Uint8Array');
  assert(Number.isInteger(seed), 'crc32c: seed must be an integer');
  assert(seed >= 0 && seed <= 0xffffffff, 'crc32c: seed must be an unsigned 32-bit integer');
}

/**
 * crc32c returns the CRC32c of `data` as an unsigned 32-bit integer, continuing from `seed`
 * (the CRC of the bytes before it; 0 for none), so crc32c(b, crc32c(a)) === crc32c(a ‖ b).
 */
export function crc32c(data: Uint8Array, seed = 0): number {
  checkArguments(data, seed);
  return nativeAddon().crc32c(data, seed);
}

/** crc32cWith runs one named kernel (tests and benchmarks compare them); see crc32cImplementations. */
export function crc32cWith(implementation: Crc32cImplementation, data: Uint8Array, seed = 0): number {
  checkArguments(data, seed);
  assert(crc32cImplementations().includes(implementation), `crc32c: this CPU cannot run ${implementation}`);
  return nativeAddon().crc32cWith(implementation, data, seed);
}

// The CPU does not change under a running process, so the list is read once.
let implementations: readonly Crc32cImplementation[] | undefined;

/** crc32cImplementations lists the kernels this CPU runs, slowest first ('table' is always there). */
export function crc32cImplementations(): readonly Crc32cImplementation[] {
  implementations ??= Object.freeze(nativeAddon().crc32cImplementations() as Crc32cImplementation[]);
  return implementations;
}

/** crc32cImplementation names the kernel crc32c() uses on this CPU. */
export function crc32cImplementation(): Crc32cImplementation {
  return nativeAddon().crc32cBest as Crc32cImplementation;
}

// LevelDB masks stored CRCs: the CRC of bytes that embed their own CRC tends to a fixed
// point, so a record would checksum its checksum badly.
const MASK_DELTA = 0xa282ead8;

/** maskCrc32c masks a CRC for storage the way LevelDB does (rotate right by 15, add a constant). */
export function maskCrc32c(crc: number): number {
  assert(Number.isInteger(crc) && crc >= 0 && crc <= 0xffffffff, 'maskCrc32c: crc must be an unsigned 32-bit integer');
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

/** unmaskCrc32c inverts maskCrc32c. */
export function unmaskCrc32c(masked: number): number {
  assert(
    Number.isInteger(masked) && masked >= 0 && masked <= 0xffffffff,
    'unmaskCrc32c: masked must be an unsigned 32-bit integer',
  );
  const rotated = (masked - MASK_DELTA) >>> 0;
  return ((rotated >>> 17) | (rotated << 15)) >>> 0;
}

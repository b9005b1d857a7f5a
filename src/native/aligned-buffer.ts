// aligned-buffer.ts — page-aligned, zero-filled buffers for O_DIRECT I/O. The memory comes
// from posix_memalign in the addon and is lent to JavaScript as an external ArrayBuffer:
// the garbage collector knows its size (external-memory accounting) and its finalizer frees
// it. Under a V8 sandbox, which refuses external memory, the buffer is an ordinary copy
// instead (`external: false`); the aligned file I/O still accepts it (through an aligned
// bounce buffer), only slower.
import { ErrorCode, StrataError } from '../util/errors.ts';
import { nativeAddon, nativeError } from './addon.ts';

/** ALIGNED_BUFFER_BYTES_MAX bounds one aligned buffer (1 GiB, the addon's limit). */
export const ALIGNED_BUFFER_BYTES_MAX = 1 << 30;

/** DIRECT_IO_ALIGNMENT_BYTES is the unit of O_DIRECT offsets and lengths, and the least buffer alignment. */
export const DIRECT_IO_ALIGNMENT_BYTES = 4096;

/** AlignedBuffer is one allocation: `bytes` covers it all; `external` is false for the sandbox copy. */
export interface AlignedBuffer {
  readonly bytes: Uint8Array;
  readonly external: boolean;
}

/**
 * allocateAligned returns `byteLength` zeroed bytes starting on a page boundary (at least
 * DIRECT_IO_ALIGNMENT_BYTES; larger pages where the system has them).
 */
export function allocateAligned(byteLength: number): AlignedBuffer {
  if (!Number.isInteger(byteLength) || byteLength < 0 || byteLength > ALIGNED_BUFFER_BYTES_MAX) {
    throw new StrataError(
      ErrorCode.INVALID_ARGUMENT,
      `aligned buffer length ${byteLength} is not an integer in [0, ${ALIGNED_BUFFER_BYTES_MAX}]`,
      { details: { byteLength } },
    );
  }
  try {
    const { buffer, external } = nativeAddon().allocateAligned(byteLength);
    return { bytes: new Uint8Array(buffer), external };
  } catch (error) {
    throw nativeError(error, 'allocateAligned');
  }
}

/** pageBytes is the alignment allocateAligned guarantees on this machine. */
export function pageBytes(): number {
  return nativeAddon().pageBytes;
}

/** alignmentOffset is the address of `view` modulo `alignment` (0 when aligned). */
export function alignmentOffset(view: Uint8Array, alignment: number): number {
  return nativeAddon().alignmentOffset(view, alignment);
}

/** NativeMemoryStats counts the memory the addon still holds for JavaScript. */
export interface NativeMemoryStats {
  /** regions: aligned buffers and mappings whose memory is not yet returned. */
  readonly regions: number;
  readonly bytes: number;
  /** pinned: regions a running native read or write is using. */
  readonly pinned: number;
}

/** nativeMemoryStats reports what the addon holds (for metrics, and for tests that prove finalizers run). */
export function nativeMemoryStats(): NativeMemoryStats {
  return nativeAddon().regionStats();
}

// The state machine's layout inside LevelDB, and etcd's key-range conventions.
//
// Every LevelDB key starts with a one-byte area tag so that areas never mix:
//   'k' + user key        -> the key's current value and counters (StoredValue)
//   'm' + "state"         -> the applied index, the revision and the digest's root (MetaState)
//   'm' + "mirror"        -> the mirror state, only while the store is a mirror (MirrorRequest)
//   'h' + u16 leaf + key  -> the key's two hashes (the digest's index of a leaf's keys)
//   'd' + u16 leaf        -> a digest leaf's two sums
// (the digest: src/storage/state-digest.ts). The tag 'r' is kept free for a revision history
// (etcd's MVCC history) when it comes.

import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { crc32c, maskCrc32c } from '../native/index.ts';
import { readU64, writeU64 } from './binary.ts';
import type { DigestRoot, KeyHashes } from './state-digest.ts';
import { DIGEST_BYTES, keyHashesOf, LEAF_COUNT } from './state-digest.ts';

const KEY_TAG = 0x6b; // 'k'
const KEY_TAG_END = 0x6c; // 'l': the first LevelDB key after every user key
// Stored value format 1: u8 format, 4 × u64, value. Format 2: u8 format, u32 masked CRC32c of
// everything after it (checked on every read), the key's full and content hashes (16 bytes
// each: an overwrite or delete then takes the old hashes out of the digest without hashing
// the old value again), 4 × u64, value. The four u64 are createRevision, modRevision and
// version (safe integers) and the lease id (a full u64, read as a bigint), little-endian.
const STORED_VALUE_FORMAT_WITHOUT_CRC = 1;
const STORED_VALUE_FORMAT = 2;
// Format 1: applied index, term, revision. Format 2 adds the digest's key count and roots.
const META_FORMAT_WITHOUT_DIGEST = 1;
const META_FORMAT = 2;
const META_BYTES_WITHOUT_DIGEST = 1 + 3 * 8;
const META_BYTES = META_BYTES_WITHOUT_DIGEST + 8 + 2 * DIGEST_BYTES;
const HASH_INDEX_TAG = 0x68; // 'h'
const DIGEST_LEAF_TAG = 0x64; // 'd'
const STORED_VALUE_HEADER_BYTES_WITHOUT_CRC = 1 + 4 * 8;
const STORED_VALUE_HEADER_BYTES = 1 + 4 + 2 * DIGEST_BYTES + 4 * 8;
const COUNTERS_OFFSET = 1 + 4 + 2 * DIGEST_BYTES;
const U64_MAX = 2n ** 64n - 1n;

/** META_KEY is where the applied index and revision are kept. */
export const META_KEY: Uint8Array = Uint8Array.of(0x6d, ...new TextEncoder().encode('state'));

/**
 * MIRROR_KEY is where the mirror state is kept while the store is a mirror (absent otherwise).
 * It is written in the same LevelDB batch as the META of the applied index that set it.
 */
export const MIRROR_KEY: Uint8Array = Uint8Array.of(0x6d, ...new TextEncoder().encode('mirror'));

const MIRROR_FORMAT = 1;
const MIRROR_HEADER_BYTES = 1 + 4;

/**
 * encodeMirrorState lays the mirror state out: a format byte, the masked CRC32c of the state,
 * the state. It is read once, at open, and the CRC catches a damaged block there (LevelDB does
 * not verify its own block checksums on reads).
 */
export function encodeMirrorState(state: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(MIRROR_HEADER_BYTES + state.byteLength);
  bytes[0] = MIRROR_FORMAT;
  new DataView(bytes.buffer).setUint32(1, maskCrc32c(crc32c(state)), true);
  bytes.set(state, MIRROR_HEADER_BYTES);
  return bytes;
}

/** decodeMirrorState reads encodeMirrorState's bytes (a copy of the state); bad bytes or a failed CRC are CORRUPTION. */
export function decodeMirrorState(bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength < MIRROR_HEADER_BYTES || bytes[0] !== MIRROR_FORMAT) {
    throw new StrataError(ErrorCode.CORRUPTION, 'state machine: malformed mirror state', { details: { check: 'malformed' } });
  }
  const state = bytes.slice(MIRROR_HEADER_BYTES);
  if (new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1, true) !== maskCrc32c(crc32c(state))) {
    throw new StrataError(ErrorCode.CORRUPTION, 'state machine: the stored mirror state fails its CRC32c (damaged on disk)', { details: { check: 'stored-value-crc' } });
  }
  return state;
}

/** KEY_AREA_TAG is the first byte of every user key's LevelDB key. */
export const KEY_AREA_TAG = KEY_TAG;

/** KEY_AREA_END is the first LevelDB key after every user key (the 'k' area ends before it). */
export const KEY_AREA_END: Uint8Array = Uint8Array.of(KEY_TAG_END);

/** compareBytes orders byte strings as etcd and LevelDB do (unsigned, shorter first on a tie). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** storageKey is the LevelDB key of a user key. */
export function storageKey(userKey: Uint8Array): Uint8Array {
  const key = new Uint8Array(userKey.byteLength + 1);
  key[0] = KEY_TAG;
  key.set(userKey, 1);
  return key;
}

/** userKeyOf is the user key of a LevelDB key from the 'k' area. */
export function userKeyOf(key: Uint8Array): Uint8Array {
  assert(key[0] === KEY_TAG, 'userKeyOf: not a user key');
  return key.subarray(1);
}

/** LevelRange is a LevelDB range [gte, lt) over the 'k' area. */
export interface LevelRange {
  readonly gte: Uint8Array;
  readonly lt: Uint8Array;
}

/**
 * levelRange turns etcd's (key, rangeEnd) into a LevelDB range, or undefined for a single
 * key: an empty rangeEnd is the key alone; "\0" is every key >= key; otherwise
 * [key, rangeEnd), empty when rangeEnd <= key.
 */
export function levelRange(key: Uint8Array, rangeEnd: Uint8Array | undefined): LevelRange | undefined {
  if (rangeEnd === undefined || rangeEnd.byteLength === 0) return undefined;
  const gte = storageKey(key);
  if (rangeEnd.byteLength === 1 && rangeEnd[0] === 0) return { gte, lt: Uint8Array.of(KEY_TAG_END) };
  return { gte, lt: storageKey(rangeEnd) };
}

/** inLevelRange tells whether a LevelDB key lies in a range. */
export function inLevelRange(key: Uint8Array, range: LevelRange): boolean {
  return compareBytes(range.gte, key) <= 0 && compareBytes(key, range.lt) < 0;
}

/** StoredValue is a key's current state as stored. */
export interface StoredValue {
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The lease id, a full u64 as stored (0n: none). */
  readonly lease: bigint;
  readonly value: Uint8Array;
  /**
   * The key's state-digest hashes (state-digest.ts), as stored beside the value (format 2) or
   * computed when it was written; undefined when unknown (a format-1 value).
   */
  readonly hashes?: KeyHashes | undefined;
}

/**
 * encodeStoredValue lays a key's StoredValue out: a format byte, the masked CRC32c of
 * everything after it, the key's two digest hashes (stored.hashes, or computed), four u64 and
 * the value. The CRC is checked on every read (decodeStoredValue): a block LevelDB reads back
 * damaged (it does not verify its own block checksums on reads) is refused, not served.
 */
export function encodeStoredValue(key: Uint8Array, stored: StoredValue): Uint8Array {
  // setBigUint64 would store any bigint modulo 2^64: a lease out of range is a bug upstream.
  assert(typeof stored.lease === 'bigint', 'a stored lease is a bigint');
  assert(stored.lease >= 0n && stored.lease <= U64_MAX, `stored lease ${stored.lease} is not a u64`);
  const hashes = stored.hashes ?? keyHashesOf(key, stored.value, stored);
  const bytes = new Uint8Array(STORED_VALUE_HEADER_BYTES + stored.value.byteLength);
  const view = new DataView(bytes.buffer);
  bytes[0] = STORED_VALUE_FORMAT;
  bytes.set(hashes.full, 5);
  bytes.set(hashes.content, 5 + DIGEST_BYTES);
  writeU64(view, COUNTERS_OFFSET, stored.createRevision);
  writeU64(view, COUNTERS_OFFSET + 8, stored.modRevision);
  writeU64(view, COUNTERS_OFFSET + 16, stored.version);
  view.setBigUint64(COUNTERS_OFFSET + 24, stored.lease, true);
  bytes.set(stored.value, STORED_VALUE_HEADER_BYTES);
  view.setUint32(1, maskCrc32c(crc32c(bytes.subarray(5))), true);
  return bytes;
}

/**
 * storedValueOver answers `stored` with its value read from `encoded` (what
 * encodeStoredValue(stored) returned), so that it holds no view into the caller's buffers,
 * without decoding the counters again.
 */
export function storedValueOver(stored: StoredValue, encoded: Uint8Array): StoredValue {
  return {
    ...stored,
    value: encoded.subarray(STORED_VALUE_HEADER_BYTES),
    hashes: { full: encoded.subarray(5, 5 + DIGEST_BYTES), content: encoded.subarray(5 + DIGEST_BYTES, 5 + 2 * DIGEST_BYTES) },
  };
}

/** decodeStoredValue reads a StoredValue (either format); bad bytes, or a CRC that does not match, are CORRUPTION. */
export function decodeStoredValue(bytes: Uint8Array): StoredValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] === STORED_VALUE_FORMAT && bytes.byteLength >= STORED_VALUE_HEADER_BYTES) {
    if (view.getUint32(1, true) !== maskCrc32c(crc32c(bytes.subarray(5)))) {
      throw new StrataError(ErrorCode.CORRUPTION, 'state machine: a stored value fails its CRC32c (damaged on disk)', { details: { check: 'stored-value-crc' } });
    }
    return {
      createRevision: storedU64(view, COUNTERS_OFFSET),
      modRevision: storedU64(view, COUNTERS_OFFSET + 8),
      version: storedU64(view, COUNTERS_OFFSET + 16),
      lease: view.getBigUint64(COUNTERS_OFFSET + 24, true),
      value: bytes.subarray(STORED_VALUE_HEADER_BYTES),
      hashes: { full: bytes.subarray(5, 5 + DIGEST_BYTES), content: bytes.subarray(5 + DIGEST_BYTES, 5 + 2 * DIGEST_BYTES) },
    };
  }
  if (bytes[0] === STORED_VALUE_FORMAT_WITHOUT_CRC && bytes.byteLength >= STORED_VALUE_HEADER_BYTES_WITHOUT_CRC) {
    return {
      createRevision: storedU64(view, 1),
      modRevision: storedU64(view, 9),
      version: storedU64(view, 17),
      lease: view.getBigUint64(25, true),
      value: bytes.subarray(STORED_VALUE_HEADER_BYTES_WITHOUT_CRC),
    };
  }
  throw new StrataError(ErrorCode.CORRUPTION, 'state machine: malformed stored value', { details: { check: 'malformed' } });
}

/** MetaState is what the state machine has applied: the last entry and the revision it reached. */
export interface MetaState {
  readonly appliedIndex: number;
  readonly appliedTerm: number;
  readonly revision: number;
}

/** StoredMeta is META as stored: the applied state and, since format 2, the digest's root. */
export interface StoredMeta extends MetaState {
  /** Undefined for a database written before the digest existed (it is built at open). */
  readonly digest: DigestRoot | undefined;
}

/** encodeMetaState lays the applied state and the digest's root out: a format byte, four u64 and two sums. */
export function encodeMetaState(meta: MetaState, digest: DigestRoot): Uint8Array {
  const bytes = new Uint8Array(META_BYTES);
  const view = new DataView(bytes.buffer);
  bytes[0] = META_FORMAT;
  writeU64(view, 1, meta.appliedIndex);
  writeU64(view, 9, meta.appliedTerm);
  writeU64(view, 17, meta.revision);
  writeU64(view, 25, digest.keyCount);
  bytes.set(digest.full, 33);
  bytes.set(digest.content, 33 + DIGEST_BYTES);
  return bytes;
}

/** decodeMetaState reads META (either format); bad bytes are CORRUPTION. */
export function decodeMetaState(bytes: Uint8Array): StoredMeta {
  const format = bytes[0];
  const expected = format === META_FORMAT ? META_BYTES : format === META_FORMAT_WITHOUT_DIGEST ? META_BYTES_WITHOUT_DIGEST : -1;
  if (bytes.byteLength !== expected) throw new StrataError(ErrorCode.CORRUPTION, 'state machine: malformed meta state');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const meta = { appliedIndex: storedU64(view, 1), appliedTerm: storedU64(view, 9), revision: storedU64(view, 17) };
  if (format === META_FORMAT_WITHOUT_DIGEST) return { ...meta, digest: undefined };
  return {
    ...meta,
    digest: { keyCount: storedU64(view, 25), full: bytes.slice(33, 33 + DIGEST_BYTES), content: bytes.slice(33 + DIGEST_BYTES, META_BYTES) },
  };
}

/** hashIndexKey is the LevelDB key of a user key's entry in the digest's index of leaf `leaf`. */
export function hashIndexKey(leaf: number, userKey: Uint8Array): Uint8Array {
  const key = new Uint8Array(3 + userKey.byteLength);
  key[0] = HASH_INDEX_TAG;
  key[1] = leaf >>> 8;
  key[2] = leaf & 0xff;
  key.set(userKey, 3);
  return key;
}

/** hashIndexRange is the LevelDB range of the digest's index of leaves [fromLeaf, toLeaf). */
export function hashIndexRange(fromLeaf: number, toLeaf: number): LevelRange {
  assert(fromLeaf >= 0 && fromLeaf < toLeaf && toLeaf <= LEAF_COUNT, 'hashIndexRange: bad leaves');
  const bound = (leaf: number): Uint8Array => (leaf === LEAF_COUNT ? Uint8Array.of(HASH_INDEX_TAG + 1) : Uint8Array.of(HASH_INDEX_TAG, leaf >>> 8, leaf & 0xff));
  return { gte: bound(fromLeaf), lt: bound(toLeaf) };
}

/** parseHashIndexKey splits a LevelDB key of the digest's index into its leaf and user key. */
export function parseHashIndexKey(key: Uint8Array): { leaf: number; userKey: Uint8Array } {
  if (key.byteLength < 3 || key[0] !== HASH_INDEX_TAG) throw new StrataError(ErrorCode.CORRUPTION, 'state machine: malformed digest index key');
  return { leaf: ((key[1] as number) << 8) | (key[2] as number), userKey: key.subarray(3) };
}

/** digestLeafKey is the LevelDB key of a stored digest leaf. */
export function digestLeafKey(leaf: number): Uint8Array {
  return Uint8Array.of(DIGEST_LEAF_TAG, leaf >>> 8, leaf & 0xff);
}

/** DIGEST_LEAF_RANGE is the LevelDB range of every stored digest leaf. */
export const DIGEST_LEAF_RANGE: LevelRange = { gte: Uint8Array.of(DIGEST_LEAF_TAG), lt: Uint8Array.of(DIGEST_LEAF_TAG + 1) };

/** leafOfDigestLeafKey is the leaf a stored digest leaf's key names. */
export function leafOfDigestLeafKey(key: Uint8Array): number {
  if (key.byteLength !== 3 || key[0] !== DIGEST_LEAF_TAG) throw new StrataError(ErrorCode.CORRUPTION, 'state machine: malformed digest leaf key');
  return ((key[1] as number) << 8) | (key[2] as number);
}

function storedU64(view: DataView, offset: number): number {
  const value = readU64(view, offset);
  if (value === undefined) throw new StrataError(ErrorCode.CORRUPTION, 'state machine: stored integer beyond 2^53');
  return value;
}



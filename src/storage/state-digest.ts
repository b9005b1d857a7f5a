// The state digest: a summary of every key the state machine holds, kept up to date by
// apply() and written in the same LevelDB batch as the applied index, so that a replica can
// prove its data is what it applied (at open, by the scrubber) and two replicas or two
// clusters can be compared without moving their data.
//
// Per key, two 128-bit hashes (the first 16 bytes of a SHA-256):
//   content = SHA-256(u32 LE key length | key | value)             — what a user reads
//   full    = SHA-256(content | u64 createRevision | u64 modRevision | u64 version | u64 lease)
// (each u64 little-endian; the lease id is a bigint, the others safe integers: the bytes are
// the same as when the lease was a number, so digests stored before stay valid).
// `full` covers everything a replica of the same cluster must agree on; `content` is what two
// different clusters holding the same data agree on (their revisions differ).
//
// Keys fall into LEAF_COUNT leaves by a hash of the key alone (CRC32c, its top 16 bits), so a
// key stays in its leaf whatever its value and the tree has the same shape on every replica and
// every cluster. A leaf is the sum, modulo 2^128, of its keys' hashes: order-independent, and
// updated in O(1) when a key changes (subtract the old hash, add the new). An inner node of
// the tree (FANOUT children) is the sum of its children, and the root the sum of every key's
// hash. Sums rather than XOR: a key counted twice does not cancel out. The hashes are not a
// defence against someone choosing keys to collide; they detect decay, lost writes and bugs.
//
// Stored beside the data (src/storage/kv-keys.ts):
//   'h' + u16 BE leaf + user key -> full (16) | content (16)   — which keys a leaf holds
//   'd' + u16 BE leaf            -> full sum (16) | content sum (16) of the leaf
//   META                          -> ..., key count, full root, content root
// Every batch writes the leaves it changed and the roots, so a batch LevelDB dropped in the
// middle of its log (a corrupt block is skipped on recovery, see the research notes §0)
// leaves stored leaves that no longer sum to the stored root, or data that no longer sums to
// the stored leaves: the check at open finds both.

import { hash as oneShotHash } from 'node:crypto';

import { crc32c, stateKeyHashes } from '../native/index.ts';
import { assert } from '../util/assert.ts';

/** LEAF_BITS is the number of key-hash bits that pick a leaf. */
export const LEAF_BITS = 16;
/** LEAF_COUNT is the number of leaves of the digest tree (65,536: about 15 keys a leaf at 1M keys). */
export const LEAF_COUNT = 1 << LEAF_BITS;
/** DIGEST_BYTES is the length of one hash or sum (128 bits). */
export const DIGEST_BYTES = 16;
/** FANOUT is the number of children of an inner node of the digest tree. */
export const FANOUT = 16;
/** TREE_DEPTH is the number of levels below the root: FANOUT ** TREE_DEPTH === LEAF_COUNT. */
export const TREE_DEPTH = 4;

const LIMBS = DIGEST_BYTES / 4;
const TWO_POW_32 = 0x1_0000_0000;

/** KeyHashes are the two hashes of one key's stored state. */
export interface KeyHashes {
  readonly full: Uint8Array;
  readonly content: Uint8Array;
}

/** KeyCounters are the fields of a stored key that `full` covers beside the content. */
export interface KeyCounters {
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The lease id, a u64 (0n: none). */
  readonly lease: bigint;
}

/** leafOf is the leaf a user key belongs to. */
export function leafOf(key: Uint8Array): number {
  return crc32c(key) >>> (32 - LEAF_BITS);
}

/** contentHashOf is the content hash of a key and its value. */
export function contentHashOf(key: Uint8Array, value: Uint8Array): Uint8Array {
  const input = Buffer.allocUnsafe(4 + key.byteLength + value.byteLength);
  input.writeUInt32LE(key.byteLength, 0);
  input.set(key, 4);
  input.set(value, 4 + key.byteLength);
  return oneShotHash('sha256', input, 'buffer').subarray(0, DIGEST_BYTES);
}

/** LeafAndHashes is a stored key's leaf and hashes. */
export interface LeafAndHashes {
  readonly leaf: number;
  readonly hashes: KeyHashes;
}

/**
 * keyDigestOf computes a stored key's leaf and both hashes in one call to the addon (it equals
 * leafOf and keyHashesOfReference: the tests hold them to it).
 */
export function keyDigestOf(key: Uint8Array, value: Uint8Array, counters: KeyCounters): LeafAndHashes {
  const out = new Uint8Array(2 * DIGEST_BYTES);
  const leaf = stateKeyHashes(key, value, counters.createRevision, counters.modRevision, counters.version, counters.lease, out);
  return { leaf, hashes: { full: out.subarray(0, DIGEST_BYTES), content: out.subarray(DIGEST_BYTES) } };
}

/** keyHashesOf computes both hashes of a stored key. */
export function keyHashesOf(key: Uint8Array, value: Uint8Array, counters: KeyCounters): KeyHashes {
  return keyDigestOf(key, value, counters).hashes;
}

/** keyHashesOfReference is the JavaScript definition of keyHashesOf (node:crypto), for tests. */
export function keyHashesOfReference(key: Uint8Array, value: Uint8Array, counters: KeyCounters): KeyHashes {
  const content = contentHashOf(key, value);
  const input = Buffer.allocUnsafe(DIGEST_BYTES + 32);
  input.set(content, 0);
  writeCounter(input, DIGEST_BYTES, counters.createRevision);
  writeCounter(input, DIGEST_BYTES + 8, counters.modRevision);
  writeCounter(input, DIGEST_BYTES + 16, counters.version);
  input.writeBigUInt64LE(counters.lease, DIGEST_BYTES + 24);
  const full = oneShotHash('sha256', input, 'buffer').subarray(0, DIGEST_BYTES);
  return { full, content };
}

function writeCounter(target: Buffer, offset: number, value: number): void {
  target.writeUInt32LE(value % TWO_POW_32, offset);
  target.writeUInt32LE(Math.floor(value / TWO_POW_32), offset + 4);
}

/** encodeKeyHashes lays out an index entry's value: full | content. */
export function encodeKeyHashes(hashes: KeyHashes): Uint8Array {
  const bytes = new Uint8Array(2 * DIGEST_BYTES);
  bytes.set(hashes.full, 0);
  bytes.set(hashes.content, DIGEST_BYTES);
  return bytes;
}

/** decodeKeyHashes reads an index entry's value, or undefined when it has the wrong length. */
export function decodeKeyHashes(bytes: Uint8Array): KeyHashes | undefined {
  if (bytes.byteLength !== 2 * DIGEST_BYTES) return undefined;
  return { full: bytes.subarray(0, DIGEST_BYTES), content: bytes.subarray(DIGEST_BYTES) };
}

// ---- 128-bit sums, as four little-endian u32 limbs ----

// addInto adds (sign 1) or subtracts (sign -1) the 16 bytes `hash` to the sum at
// `sums[offset .. offset + 4)`, modulo 2^128.
function addInto(sums: Uint32Array, offset: number, hash: Uint8Array, sign: 1 | -1): void {
  // Subtracting x is adding its two's complement: ~x + 1.
  let carry = sign === 1 ? 0 : 1;
  for (let limb = 0; limb < LIMBS; limb += 1) {
    const at = limb * 4;
    let word = ((hash[at] as number) | ((hash[at + 1] as number) << 8) | ((hash[at + 2] as number) << 16) | ((hash[at + 3] as number) << 24)) >>> 0;
    if (sign === -1) word = ~word >>> 0;
    const total = (sums[offset + limb] as number) + word + carry;
    sums[offset + limb] = total >>> 0;
    carry = total >= TWO_POW_32 ? 1 : 0;
  }
}

// addSums adds the sum at `from[fromOffset..]` into `into[intoOffset..]`, modulo 2^128.
function addSums(into: Uint32Array, intoOffset: number, from: Uint32Array, fromOffset: number): void {
  let carry = 0;
  for (let limb = 0; limb < LIMBS; limb += 1) {
    const total = (into[intoOffset + limb] as number) + (from[fromOffset + limb] as number) + carry;
    into[intoOffset + limb] = total >>> 0;
    carry = total >= TWO_POW_32 ? 1 : 0;
  }
}

function sumBytes(sums: Uint32Array, offset: number): Uint8Array {
  const bytes = new Uint8Array(DIGEST_BYTES);
  const view = new DataView(bytes.buffer);
  for (let limb = 0; limb < LIMBS; limb += 1) view.setUint32(limb * 4, sums[offset + limb] as number, true);
  return bytes;
}

function setSum(sums: Uint32Array, offset: number, bytes: Uint8Array): void {
  assert(bytes.byteLength === DIGEST_BYTES, 'a digest sum is 16 bytes');
  const view = new DataView(bytes.buffer, bytes.byteOffset, DIGEST_BYTES);
  for (let limb = 0; limb < LIMBS; limb += 1) sums[offset + limb] = view.getUint32(limb * 4, true);
}

function sumsEqual(a: Uint32Array, aOffset: number, b: Uint32Array, bOffset: number): boolean {
  for (let limb = 0; limb < LIMBS; limb += 1) if (a[aOffset + limb] !== b[bOffset + limb]) return false;
  return true;
}

/** DigestRoot is the summary of a whole state: its key count and the two root sums. */
export interface DigestRoot {
  readonly keyCount: number;
  readonly full: Uint8Array;
  readonly content: Uint8Array;
}

/** EMPTY_DIGEST_ROOT is the root of a state without keys. */
export const EMPTY_DIGEST_ROOT: DigestRoot = Object.freeze({ keyCount: 0, full: new Uint8Array(DIGEST_BYTES), content: new Uint8Array(DIGEST_BYTES) });

/** digestRootsEqual tells whether two roots describe the same state (`content` only: ignoring revisions). */
export function digestRootsEqual(a: DigestRoot, b: DigestRoot, which: 'full' | 'content' = 'full'): boolean {
  return a.keyCount === b.keyCount && Buffer.compare(a[which], b[which]) === 0;
}

/** formatDigest writes a 16-byte sum as 32 hex digits. */
export function formatDigest(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * DigestSums is a digest tree's leaves and root, for both hashes, with the key count. It is
 * what the state machine keeps in memory (about 2 MiB) and what a verification computes from
 * the data. `dirty` collects the leaves changed since the last takeDirty().
 */
export class DigestSums {
  // Leaf i's sum is at [i * LIMBS, (i + 1) * LIMBS); the root follows the last leaf.
  private readonly full = new Uint32Array((LEAF_COUNT + 1) * LIMBS);
  private readonly content = new Uint32Array((LEAF_COUNT + 1) * LIMBS);
  private keys = 0;
  private readonly dirty = new Set<number>();

  /** keyCount is the number of keys counted. */
  get keyCount(): number {
    return this.keys;
  }

  /** add counts a key (sign 1) or takes it out (sign -1). */
  add(leaf: number, hashes: KeyHashes, sign: 1 | -1): void {
    assert(Number.isInteger(leaf) && leaf >= 0 && leaf < LEAF_COUNT, `leaf ${leaf} out of range`);
    const offset = leaf * LIMBS;
    const root = LEAF_COUNT * LIMBS;
    addInto(this.full, offset, hashes.full, sign);
    addInto(this.full, root, hashes.full, sign);
    addInto(this.content, offset, hashes.content, sign);
    addInto(this.content, root, hashes.content, sign);
    this.keys += sign;
    assert(this.keys >= 0, 'the digest counted a key out that it never counted in');
    this.dirty.add(leaf);
  }

  /** root is the state's summary now. */
  root(): DigestRoot {
    return { keyCount: this.keys, full: sumBytes(this.full, LEAF_COUNT * LIMBS), content: sumBytes(this.content, LEAF_COUNT * LIMBS) };
  }

  /** leaf is one leaf's two sums. */
  leaf(leaf: number): KeyHashes {
    return { full: sumBytes(this.full, leaf * LIMBS), content: sumBytes(this.content, leaf * LIMBS) };
  }

  /** leafEquals tells whether leaf `leaf` of this and of `other` agree on both sums. */
  leafEquals(other: DigestSums, leaf: number): boolean {
    const offset = leaf * LIMBS;
    return sumsEqual(this.full, offset, other.full, offset) && sumsEqual(this.content, offset, other.content, offset);
  }

  /** leafIsZero tells whether a leaf's two sums are 0 (no keys, or keys that cancel out: never in practice). */
  leafIsZero(leaf: number): boolean {
    const offset = leaf * LIMBS;
    for (let limb = 0; limb < LIMBS; limb += 1) if (this.full[offset + limb] !== 0 || this.content[offset + limb] !== 0) return false;
    return true;
  }

  /** takeDirty returns the leaves changed since the last call, in order, and forgets them. */
  takeDirty(): number[] {
    const leaves = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    return leaves;
  }

  /** setLeaf sets a stored leaf (loading the stored tree; it does not touch the root or the count). */
  setLeaf(leaf: number, sums: KeyHashes): void {
    setSum(this.full, leaf * LIMBS, sums.full);
    setSum(this.content, leaf * LIMBS, sums.content);
  }

  /** setRoot sets the stored root and key count (loading the stored tree). */
  setRoot(root: DigestRoot): void {
    setSum(this.full, LEAF_COUNT * LIMBS, root.full);
    setSum(this.content, LEAF_COUNT * LIMBS, root.content);
    this.keys = root.keyCount;
  }

  /** leavesRoot sums the leaves (not the kept root): equal to root() when the leaves are consistent. */
  leavesRoot(): DigestRoot {
    const full = new Uint32Array(LIMBS);
    const content = new Uint32Array(LIMBS);
    for (let leaf = 0; leaf < LEAF_COUNT; leaf += 1) {
      addSums(full, 0, this.full, leaf * LIMBS);
      addSums(content, 0, this.content, leaf * LIMBS);
    }
    return { keyCount: this.keys, full: sumBytes(full, 0), content: sumBytes(content, 0) };
  }

  /**
   * children returns the sums of the FANOUT nodes at `level` (1 .. TREE_DEPTH, TREE_DEPTH
   * being the leaves) under node `parent` of level - 1, for the `which` hash.
   */
  children(level: number, parent: number, which: 'full' | 'content'): Uint8Array[] {
    assert(Number.isInteger(level) && level >= 1 && level <= TREE_DEPTH, `level ${level} out of range`);
    const width = FANOUT ** (level - 1);
    assert(Number.isInteger(parent) && parent >= 0 && parent < width, `node ${parent} of level ${level - 1} out of range`);
    const sums = which === 'full' ? this.full : this.content;
    const leavesPerNode = LEAF_COUNT / FANOUT ** level;
    const answer: Uint8Array[] = [];
    for (let child = 0; child < FANOUT; child += 1) {
      const node = parent * FANOUT + child;
      const total = new Uint32Array(LIMBS);
      for (let leaf = node * leavesPerNode; leaf < (node + 1) * leavesPerNode; leaf += 1) addSums(total, 0, sums, leaf * LIMBS);
      answer.push(sumBytes(total, 0));
    }
    return answer;
  }

  /** copy returns an independent copy (a view pinned at one index). */
  copy(): DigestSums {
    const copy = new DigestSums();
    copy.full.set(this.full);
    copy.content.set(this.content);
    copy.keys = this.keys;
    return copy;
  }
}

/**
 * DigestDelta collects the changes of one batch being applied, applied to the DigestSums
 * when the batch commits. rootOver() gives the root with the changes so far, so a checkpoint
 * in the middle of a batch sees the exact state at its index.
 */
export class DigestDelta {
  private readonly changes: { leaf: number; hashes: KeyHashes; sign: 1 | -1 }[] = [];
  // The change of the two roots so far: full at [0, LIMBS), content at [LIMBS, 2 * LIMBS).
  private readonly rootChange = new Uint32Array(2 * LIMBS);
  private keyChange = 0;

  add(leaf: number, hashes: KeyHashes, sign: 1 | -1): void {
    this.changes.push({ leaf, hashes, sign });
    addInto(this.rootChange, 0, hashes.full, sign);
    addInto(this.rootChange, LIMBS, hashes.content, sign);
    this.keyChange += sign;
  }

  /** applyTo moves the batch's changes into `sums`. */
  applyTo(sums: DigestSums): void {
    for (const { leaf, hashes, sign } of this.changes) sums.add(leaf, hashes, sign);
  }

  /** rootOver is the root of `base` with this batch's changes so far. */
  rootOver(base: DigestSums): DigestRoot {
    const root = base.root();
    const sums = new Uint32Array(2 * LIMBS);
    setSum(sums, 0, root.full);
    setSum(sums, LIMBS, root.content);
    addSums(sums, 0, this.rootChange, 0);
    addSums(sums, LIMBS, this.rootChange, LIMBS);
    return { keyCount: root.keyCount + this.keyChange, full: sumBytes(sums, 0), content: sumBytes(sums, LIMBS) };
  }
}

// The Merkle diff: which keys differ between two digest trees (src/storage's state digest),
// moving only the sums of the subtrees that differ and the keys of the leaves that differ.
//
// Both trees have the same shape on every replica and every cluster (a key's leaf depends on
// the key alone), so the descent compares node for node:
//   1. the roots (from opening the trees, no call): equal roots, equal trees;
//   2. level by level, 1 .. TREE_DEPTH, the FANOUT children of every parent that differed,
//      fetched from both sides in one batched call per side and level (in parallel): only the
//      children whose sums differ are descended; at TREE_DEPTH the children are the leaves;
//   3. the keys of every differing leaf, with each key's hash, from both sides (batched, in
//      parallel), merged by key: a key on side A only is `missing` (from B), on side B only
//      `extra` (in B), on both with different hashes `different`.
// Side A is the reference (`stratakv diff --endpoints A --against B`): what B lacks is
// missing, what B has beyond A is extra. Which hash is compared is the trees' business: two
// replicas of one cluster compare `full` (revisions count), two clusters `content` (key and
// value only) — see DigestTreeSource.
//
// Everything is bounded: at most differencesMax differences are collected (then the diff
// stops fetching leaves and says it is truncated), a call carries at most
// PARENTS_PER_REQUEST_MAX parents or LEAVES_PER_REQUEST_MAX leaves (a side may answer fewer
// leaves, bounded by bytes; the rest is asked again). The answers are checked: a side that
// answers sums of the wrong length, or leaves it was not asked for, is CORRUPTION.
//
// The diff also checks each side against itself on the leaves it fetched: the keys' hashes
// must sum to the leaf's sum. A leaf that does not is reported (`inconsistencies`), since
// then the side's digest index disagrees with its own leaves — a damaged replica.

import { DIGEST_BYTES, FANOUT, LEAF_COUNT, TREE_DEPTH } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';

/** DigestHash names the hash a diff compares: `full` (with revisions: replicas) or `content` (key and value: clusters). */
export type DigestHash = 'full' | 'content';

/** TreeRoot is a tree's root: its key count and the root sum of the hash compared. */
export interface TreeRoot {
  readonly keyCount: number;
  readonly sum: Uint8Array;
}

/** LeafKeyHash is one key of a leaf with its hash (the one the tree compares). */
export interface LeafKeyHash {
  readonly key: Uint8Array;
  readonly hash: Uint8Array;
}

/** DiffValue is a key's stored value as a diff prints it: the value's first bytes, its size and counters. */
export interface DiffValue {
  readonly key: Uint8Array;
  /** At most the valueBytesMax asked for: the value's first bytes. */
  readonly value: Uint8Array;
  /** The whole value's size. */
  readonly valueBytes: number;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The key's lease id (0n: none), exactly: etcd's ids are above 2^53. */
  readonly lease: bigint;
}

/**
 * DigestTreeSource is one side of a diff: a digest tree pinned at one index (the whole state,
 * or only a key range), compared on one hash. In process it is a ViewTree over a
 * DigestView; over the wire, src/client's diff client.
 */
export interface DigestTreeSource {
  readonly root: TreeRoot;
  /**
   * children answers the sums of the FANOUT children of each of `parents` (nodes of level
   * `level - 1`; level 1 .. TREE_DEPTH), parent by parent: parents.length * FANOUT *
   * DIGEST_BYTES bytes.
   */
  children(level: number, parents: readonly number[]): Promise<Uint8Array>;
  /**
   * leafKeys answers the keys of the first n of `leaves` (1 <= n <= leaves.length; a side
   * may stop early to bound its answer), one list per leaf in the order asked, each list
   * sorted by key.
   */
  leafKeys(leaves: readonly number[]): Promise<readonly (readonly LeafKeyHash[])[]>;
  /** values reads `keys` (undefined for a key it does not hold), values cut to valueBytesMax. */
  values(keys: readonly Uint8Array[], valueBytesMax: number): Promise<readonly (DiffValue | undefined)[]>;
}

/** DIFFERENCES_MAX is the default bound on the differences a diff collects. */
export const DIFFERENCES_MAX = 10_000;
/** PARENTS_PER_REQUEST_MAX bounds the parents of one children call (answer: 4,096 * 256 bytes = 1 MiB). */
export const PARENTS_PER_REQUEST_MAX = 4_096;
/** LEAVES_PER_REQUEST_MAX bounds the leaves of one leafKeys call. */
export const LEAVES_PER_REQUEST_MAX = 1_024;
/** VALUE_KEYS_PER_REQUEST_MAX bounds the keys of one values call. */
export const VALUE_KEYS_PER_REQUEST_MAX = 1_024;
/** VALUE_BYTES_DEFAULT is how much of a value a diff fetches to show by default. */
export const VALUE_BYTES_DEFAULT = 64;
/** VALUE_BYTES_MAX bounds how much of one value a diff fetches. */
export const VALUE_BYTES_MAX = 64 * 1024;

/** DifferenceKind: `missing` (on A, not on B), `extra` (on B, not on A), `different` (on both, hashes differ). */
export type DifferenceKind = 'missing' | 'extra' | 'different';

/** KeyDifference is one key that differs. */
export interface KeyDifference {
  readonly kind: DifferenceKind;
  readonly key: Uint8Array;
  readonly leaf: number;
}

/** Inconsistency is a side whose own digest disagrees with itself where the diff looked. */
export type Inconsistency =
  /** The leaf's keys' hashes do not sum to the leaf's sum on that side. */
  | { readonly kind: 'leaf-keys'; readonly side: 'a' | 'b'; readonly leaf: number }
  /** The roots differ but no node of a level below does (a root that is not the sum of its leaves). */
  | { readonly kind: 'root'; readonly level: number };

/** DiffProgress tells where a diff is: descending a level, or exchanging leaf keys. */
export type DiffProgress =
  | { readonly phase: 'descend'; readonly level: number; readonly nodes: number }
  | { readonly phase: 'leaves'; readonly leavesDone: number; readonly leavesTotal: number; readonly differences: number };

/** MerkleDiffOptions bound and observe a diff. */
export interface MerkleDiffOptions {
  /** Collect at most this many differences (default DIFFERENCES_MAX). */
  readonly differencesMax?: number;
  /** Default PARENTS_PER_REQUEST_MAX. */
  readonly parentsPerRequestMax?: number;
  /** Default LEAVES_PER_REQUEST_MAX. */
  readonly leavesPerRequestMax?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: DiffProgress) => void;
}

/** MerkleDiffResult is what a diff found and what it took. */
export interface MerkleDiffResult {
  /** No difference: equal roots, or differing roots that led to no differing key and no inconsistency (never in practice). */
  readonly equal: boolean;
  /** The differences, sorted by key; at most differencesMax. */
  readonly differences: readonly KeyDifference[];
  /** More than differencesMax differences exist: the diff stopped looking. */
  readonly truncated: boolean;
  /** The differing nodes found at each level 1 .. TREE_DEPTH (index 0 is level 1). */
  readonly differingNodes: readonly number[];
  /** Sums compared, per side (the root not counted). */
  readonly sumsCompared: number;
  /** Leaves whose keys were exchanged. */
  readonly leavesCompared: number;
  /** Keys received from both sides. */
  readonly keysReceived: number;
  /** Rounds of calls (each asks both sides in parallel). */
  readonly rounds: number;
  readonly inconsistencies: readonly Inconsistency[];
}

/**
 * merkleDiff compares tree `a` (the reference) with tree `b` (see the file comment). It
 * rejects with CANCELED when `signal` aborts, CORRUPTION when a side answers out of
 * protocol, and with whatever a side rejects with.
 */
export async function merkleDiff(a: DigestTreeSource, b: DigestTreeSource, options: MerkleDiffOptions = {}): Promise<MerkleDiffResult> {
  const differencesMax = options.differencesMax ?? DIFFERENCES_MAX;
  const parentsPerRequestMax = options.parentsPerRequestMax ?? PARENTS_PER_REQUEST_MAX;
  const leavesPerRequestMax = options.leavesPerRequestMax ?? LEAVES_PER_REQUEST_MAX;
  assert(Number.isSafeInteger(differencesMax) && differencesMax >= 1, 'differencesMax must be a positive integer');
  assert(Number.isSafeInteger(parentsPerRequestMax) && parentsPerRequestMax >= 1 && parentsPerRequestMax <= PARENTS_PER_REQUEST_MAX, 'parentsPerRequestMax out of range');
  assert(Number.isSafeInteger(leavesPerRequestMax) && leavesPerRequestMax >= 1 && leavesPerRequestMax <= LEAVES_PER_REQUEST_MAX, 'leavesPerRequestMax out of range');
  const state = { rounds: 0, sumsCompared: 0 };
  const differingNodes: number[] = [];
  const inconsistencies: Inconsistency[] = [];
  if (a.root.keyCount === b.root.keyCount && bytesEqual(a.root.sum, b.root.sum)) {
    return { equal: true, differences: [], truncated: false, differingNodes: [], sumsCompared: 0, leavesCompared: 0, keysReceived: 0, rounds: 0, inconsistencies };
  }

  // Descend: `parents` are the differing nodes of level - 1; the last level's are leaves.
  let parents: number[] = [0];
  // The two sides' sums of the differing leaves, to check each side's leaf keys against.
  const leafSums = new Map<number, { a: Uint8Array; b: Uint8Array }>();
  for (let level = 1; level <= TREE_DEPTH && parents.length > 0; level += 1) {
    checkAborted(options.signal);
    options.onProgress?.({ phase: 'descend', level, nodes: parents.length });
    const differing: number[] = [];
    for (let start = 0; start < parents.length; start += parentsPerRequestMax) {
      const batch = parents.slice(start, start + parentsPerRequestMax);
      const [sumsA, sumsB] = await Promise.all([a.children(level, batch), b.children(level, batch)]);
      state.rounds += 1;
      const expected = batch.length * FANOUT * DIGEST_BYTES;
      if (sumsA.byteLength !== expected) throw outOfProtocol('a', `answered ${sumsA.byteLength} bytes of sums for ${batch.length} parents at level ${level}, not ${expected}`);
      if (sumsB.byteLength !== expected) throw outOfProtocol('b', `answered ${sumsB.byteLength} bytes of sums for ${batch.length} parents at level ${level}, not ${expected}`);
      state.sumsCompared += batch.length * FANOUT;
      for (let index = 0; index < batch.length; index += 1) {
        for (let child = 0; child < FANOUT; child += 1) {
          const offset = (index * FANOUT + child) * DIGEST_BYTES;
          const sumA = sumsA.subarray(offset, offset + DIGEST_BYTES);
          const sumB = sumsB.subarray(offset, offset + DIGEST_BYTES);
          if (bytesEqual(sumA, sumB)) continue;
          const node = (batch[index] as number) * FANOUT + child;
          differing.push(node);
          if (level === TREE_DEPTH) leafSums.set(node, { a: sumA, b: sumB });
        }
      }
    }
    differingNodes.push(differing.length);
    if (differing.length === 0) inconsistencies.push({ kind: 'root', level });
    parents = differing;
  }
  const leaves = differingNodes.length === TREE_DEPTH ? parents : [];
  assert(leaves.every((leaf) => leaf >= 0 && leaf < LEAF_COUNT), 'a differing leaf out of range');

  // Exchange the keys of the differing leaves, in order, until done or over the bound.
  const differences: KeyDifference[] = [];
  let truncated = false;
  let leavesCompared = 0;
  let keysReceived = 0;
  options.onProgress?.({ phase: 'leaves', leavesDone: 0, leavesTotal: leaves.length, differences: 0 });
  for (let next = 0; next < leaves.length && !truncated; ) {
    checkAborted(options.signal);
    const batch = leaves.slice(next, next + leavesPerRequestMax);
    const [answerA, answerB] = await Promise.all([leafKeysOf(a, 'a', batch), leafKeysOf(b, 'b', batch)]);
    state.rounds += Math.max(answerA.passes, answerB.passes);
    const keysA = answerA.lists;
    const keysB = answerB.lists;
    for (const [index, leaf] of batch.entries()) {
      const listA = keysA[index] as readonly LeafKeyHash[];
      const listB = keysB[index] as readonly LeafKeyHash[];
      keysReceived += listA.length + listB.length;
      const sums = leafSums.get(leaf);
      assert(sums !== undefined, 'a differing leaf without its sums');
      if (!bytesEqual(sumOfHashes(listA), sums.a)) inconsistencies.push({ kind: 'leaf-keys', side: 'a', leaf });
      if (!bytesEqual(sumOfHashes(listB), sums.b)) inconsistencies.push({ kind: 'leaf-keys', side: 'b', leaf });
      for (const difference of mergeLeaf(leaf, listA, listB)) {
        if (differences.length === differencesMax) {
          truncated = true;
          break;
        }
        differences.push(difference);
      }
      leavesCompared += 1;
      if (truncated) break;
    }
    next += batch.length;
    options.onProgress?.({ phase: 'leaves', leavesDone: Math.min(next, leaves.length), leavesTotal: leaves.length, differences: differences.length });
  }
  differences.sort((x, y) => compareBytes(x.key, y.key));
  return {
    equal: differences.length === 0 && !truncated && inconsistencies.length === 0,
    differences,
    truncated,
    differingNodes,
    sumsCompared: state.sumsCompared,
    leavesCompared,
    keysReceived,
    rounds: state.rounds,
    inconsistencies,
  };
}

// leafKeysOf asks `source` for the keys of every leaf of `leaves`, again for the rest when it
// answers only the first ones, and checks each list is sorted by key without repeats. It
// answers the lists and the calls it took.
async function leafKeysOf(source: DigestTreeSource, side: 'a' | 'b', leaves: readonly number[]): Promise<{ lists: (readonly LeafKeyHash[])[]; passes: number }> {
  const answer: (readonly LeafKeyHash[])[] = [];
  let passes = 0;
  // Each pass answers at least one leaf, so this ends within leaves.length passes.
  while (answer.length < leaves.length) {
    assert(passes < leaves.length, 'leafKeys made no progress');
    const lists = await source.leafKeys(leaves.slice(answer.length));
    passes += 1;
    if (lists.length === 0 || lists.length > leaves.length - answer.length) throw outOfProtocol(side, `answered ${lists.length} leaves when asked for ${leaves.length - answer.length}`);
    for (const list of lists) {
      for (let index = 0; index < list.length; index += 1) {
        const item = list[index] as LeafKeyHash;
        if (item.hash.byteLength !== DIGEST_BYTES) throw outOfProtocol(side, `answered a hash of ${item.hash.byteLength} bytes`);
        if (index > 0 && compareBytes((list[index - 1] as LeafKeyHash).key, item.key) >= 0) throw outOfProtocol(side, `answered the keys of leaf ${leaves[answer.length] ?? '?'} out of order`);
      }
      answer.push(list);
    }
  }
  return { lists: answer, passes };
}

// mergeLeaf classifies the keys of one leaf on both sides (each list sorted by key).
function* mergeLeaf(leaf: number, listA: readonly LeafKeyHash[], listB: readonly LeafKeyHash[]): Generator<KeyDifference> {
  let indexA = 0;
  let indexB = 0;
  while (indexA < listA.length || indexB < listB.length) {
    const itemA = listA[indexA];
    const itemB = listB[indexB];
    const order = itemA === undefined ? 1 : itemB === undefined ? -1 : compareBytes(itemA.key, itemB.key);
    if (order < 0) {
      yield { kind: 'missing', key: (itemA as LeafKeyHash).key, leaf };
      indexA += 1;
    } else if (order > 0) {
      yield { kind: 'extra', key: (itemB as LeafKeyHash).key, leaf };
      indexB += 1;
    } else {
      if (!bytesEqual((itemA as LeafKeyHash).hash, (itemB as LeafKeyHash).hash)) yield { kind: 'different', key: (itemA as LeafKeyHash).key, leaf };
      indexA += 1;
      indexB += 1;
    }
  }
}

/** DescribedDifference is a difference with both sides' values (undefined where a side lacks the key). */
export interface DescribedDifference extends KeyDifference {
  readonly a: DiffValue | undefined;
  readonly b: DiffValue | undefined;
}

/**
 * describeDifferences reads the differing keys' values on both sides (cut to valueBytesMax),
 * VALUE_KEYS_PER_REQUEST_MAX keys a call, for printing. A value that is not where the
 * classification put it (a `missing` key B holds) is left as read: the views are pinned, so
 * it only happens when a side's digest index disagrees with its data.
 */
export async function describeDifferences(
  a: DigestTreeSource,
  b: DigestTreeSource,
  differences: readonly KeyDifference[],
  options: { readonly valueBytesMax?: number; readonly signal?: AbortSignal } = {},
): Promise<DescribedDifference[]> {
  const valueBytesMax = options.valueBytesMax ?? VALUE_BYTES_DEFAULT;
  assert(Number.isSafeInteger(valueBytesMax) && valueBytesMax >= 0 && valueBytesMax <= VALUE_BYTES_MAX, 'valueBytesMax out of range');
  const described: DescribedDifference[] = [];
  for (let start = 0; start < differences.length; start += VALUE_KEYS_PER_REQUEST_MAX) {
    checkAborted(options.signal);
    const batch = differences.slice(start, start + VALUE_KEYS_PER_REQUEST_MAX);
    const keysA = batch.filter((difference) => difference.kind !== 'extra').map((difference) => difference.key);
    const keysB = batch.filter((difference) => difference.kind !== 'missing').map((difference) => difference.key);
    const [valuesA, valuesB] = await Promise.all([keysA.length === 0 ? [] : a.values(keysA, valueBytesMax), keysB.length === 0 ? [] : b.values(keysB, valueBytesMax)]);
    if (valuesA.length !== keysA.length) throw outOfProtocol('a', `answered ${valuesA.length} values for ${keysA.length} keys`);
    if (valuesB.length !== keysB.length) throw outOfProtocol('b', `answered ${valuesB.length} values for ${keysB.length} keys`);
    let nextA = 0;
    let nextB = 0;
    for (const difference of batch) {
      const valueA = difference.kind === 'extra' ? undefined : valuesA[nextA++];
      const valueB = difference.kind === 'missing' ? undefined : valuesB[nextB++];
      described.push({ ...difference, a: valueA, b: valueB });
    }
  }
  return described;
}

/** compareBytes orders byte strings as LevelDB and etcd do (unsigned, then by length). */
export function compareBytes(x: Uint8Array, y: Uint8Array): number {
  return Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength));
}

function bytesEqual(x: Uint8Array, y: Uint8Array): boolean {
  return x.byteLength === y.byteLength && compareBytes(x, y) === 0;
}

/**
 * sumOfHashes adds 16-byte hashes modulo 2^128 as the state digest does (four little-endian
 * u32 limbs): the leaf sum a list of keys should have.
 */
export function sumOfHashes(items: readonly LeafKeyHash[]): Uint8Array {
  const limbs = new Uint32Array(DIGEST_BYTES / 4);
  for (const { hash } of items) {
    const view = new DataView(hash.buffer, hash.byteOffset, DIGEST_BYTES);
    let carry = 0;
    for (let limb = 0; limb < limbs.length; limb += 1) {
      const total = (limbs[limb] as number) + view.getUint32(limb * 4, true) + carry;
      limbs[limb] = total >>> 0;
      carry = total >= 0x1_0000_0000 ? 1 : 0;
    }
  }
  const bytes = new Uint8Array(DIGEST_BYTES);
  const out = new DataView(bytes.buffer);
  for (let limb = 0; limb < limbs.length; limb += 1) out.setUint32(limb * 4, limbs[limb] as number, true);
  return bytes;
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the diff was cancelled');
}

function outOfProtocol(side: 'a' | 'b', what: string): StrataError {
  return new StrataError(ErrorCode.CORRUPTION, `diff: side ${side.toUpperCase()} ${what}`, { details: { side } });
}

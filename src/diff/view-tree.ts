// ViewTree: one side of a Merkle diff in process — a digest tree over a DigestView (src/storage:
// the state digest and the data pinned at one applied index), compared on one hash, over the
// whole state or over one key range. The diff server answers the wire's calls with it; tests
// and embedders diff two state machines with it directly (merkleDiff(treeA, treeB)).
//
// The whole state's tree is the view's own sums (kept by apply, no read). A range's tree is
// computed once by reading the range at the view's index (view.rangeSums): the stored tree
// covers every key, and a prefix's keys are spread over every leaf. Leaf keys come from the
// digest's index ('h' entries: each key's recorded hashes), filtered to the range.

import type { DigestSums, DigestView } from '../storage/index.ts';
import { DIGEST_BYTES, FANOUT, LEAF_COUNT, TREE_DEPTH } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import type { DiffValue, DigestHash, DigestTreeSource, LeafKeyHash, TreeRoot } from './merkle-diff.ts';
import { compareBytes, LEAVES_PER_REQUEST_MAX, PARENTS_PER_REQUEST_MAX, VALUE_BYTES_MAX, VALUE_KEYS_PER_REQUEST_MAX } from './merkle-diff.ts';

/** LEAF_KEYS_BYTES_MAX bounds one leafKeys answer (encoded); one leaf always goes whole. */
export const LEAF_KEYS_BYTES_MAX = 2 * 1024 * 1024;
/** LEAF_READ_RUN_MAX bounds the leaves read from the index at once. */
const LEAF_READ_RUN_MAX = 64;

/**
 * KeyRange is etcd's range: [key, rangeEnd); rangeEnd empty means the key alone, rangeEnd
 * "\0" every key from `key` on.
 */
export interface KeyRange {
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
}

/** ViewTreeOptions choose the hash and the range of a ViewTree. */
export interface ViewTreeOptions {
  readonly hash: DigestHash;
  /** Only these keys (a full read of them at the view's index); the whole state when absent. */
  readonly range?: KeyRange;
  /** Told the keys read so far while a range is read. */
  readonly onKeys?: (keysRead: number) => void;
}

/** prefixRange is the range of every key that starts with `prefix` (etcd's --prefix); the whole key space for an empty prefix. */
export function prefixRange(prefix: Uint8Array): KeyRange {
  if (prefix.byteLength === 0) return { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };
  const end = Uint8Array.from(prefix);
  for (let index = end.byteLength - 1; index >= 0; index -= 1) {
    if ((end[index] as number) < 0xff) {
      end[index] = (end[index] as number) + 1;
      return { key: prefix, rangeEnd: end.subarray(0, index + 1) };
    }
  }
  // Every byte is 0xff: every key from the prefix on.
  return { key: prefix, rangeEnd: Uint8Array.of(0) };
}

/** inKeyRange tells whether `key` is in `range` (etcd's rules, see KeyRange). */
export function inKeyRange(key: Uint8Array, range: KeyRange): boolean {
  if (range.rangeEnd.byteLength === 0) return compareBytes(key, range.key) === 0;
  if (compareBytes(key, range.key) < 0) return false;
  if (range.rangeEnd.byteLength === 1 && range.rangeEnd[0] === 0) return true;
  return compareBytes(key, range.rangeEnd) < 0;
}

/** leafKeysEncodedBytes is what one key costs in a leafKeys answer (varint length, key, hash). */
export function leafKeysEncodedBytes(key: Uint8Array): number {
  return varintBytes(key.byteLength) + key.byteLength + DIGEST_BYTES;
}

/** ViewTree is a DigestTreeSource over a DigestView (see the file comment). */
export class ViewTree implements DigestTreeSource {
  readonly root: TreeRoot;
  readonly view: DigestView;
  readonly hash: DigestHash;
  readonly range: KeyRange | undefined;
  readonly #sums: DigestSums;

  private constructor(view: DigestView, sums: DigestSums, hash: DigestHash, range: KeyRange | undefined) {
    this.view = view;
    this.#sums = sums;
    this.hash = hash;
    this.range = range;
    const root = sums.root();
    this.root = { keyCount: root.keyCount, sum: root[hash] };
  }

  /** open makes the tree of `view` (reading the range first when one is given). The view stays the caller's to close. */
  static async open(view: DigestView, options: ViewTreeOptions): Promise<ViewTree> {
    const range = options.range;
    const sums = range === undefined ? view.sums : await view.rangeSums(range.key, range.rangeEnd, options.onKeys);
    return new ViewTree(view, sums, options.hash, range);
  }

  /** over makes the tree of a range whose sums were read before (rangeSums of a view at the same index). */
  static over(view: DigestView, sums: DigestSums, options: { readonly hash: DigestHash; readonly range: KeyRange }): ViewTree {
    return new ViewTree(view, sums, options.hash, options.range);
  }

  /** sums are the tree's sums (the view's, or the range's). */
  get sums(): DigestSums {
    return this.#sums;
  }

  /** withHash is the same tree compared on another hash (no read). */
  withHash(hash: DigestHash): ViewTree {
    return hash === this.hash ? this : new ViewTree(this.view, this.#sums, hash, this.range);
  }

  children(level: number, parents: readonly number[]): Promise<Uint8Array> {
    assert(Number.isInteger(level) && level >= 1 && level <= TREE_DEPTH, `level ${level} out of range`);
    assert(parents.length >= 1 && parents.length <= PARENTS_PER_REQUEST_MAX, `${parents.length} parents in one call`);
    const answer = new Uint8Array(parents.length * FANOUT * DIGEST_BYTES);
    for (const [index, parent] of parents.entries()) {
      const sums = this.#sums.children(level, parent, this.hash);
      for (const [child, sum] of sums.entries()) answer.set(sum, (index * FANOUT + child) * DIGEST_BYTES);
    }
    return Promise.resolve(answer);
  }

  leafKeys(leaves: readonly number[]): Promise<(readonly LeafKeyHash[])[]> {
    return this.leafKeysBounded(leaves, LEAF_KEYS_BYTES_MAX);
  }

  /**
   * leafKeysBounded answers the keys of the first leaves of `leaves` whose encoding fits in
   * `bytesMax` (at least the first leaf, whatever its size), reading runs of adjacent leaves
   * from the index at once.
   */
  async leafKeysBounded(leaves: readonly number[], bytesMax: number): Promise<(readonly LeafKeyHash[])[]> {
    assert(leaves.length >= 1 && leaves.length <= LEAVES_PER_REQUEST_MAX, `${leaves.length} leaves in one call`);
    for (const leaf of leaves) assert(Number.isInteger(leaf) && leaf >= 0 && leaf < LEAF_COUNT, `leaf ${leaf} out of range`);
    const answer: LeafKeyHash[][] = [];
    let bytes = 0;
    for (let next = 0; next < leaves.length; ) {
      // A run of adjacent leaves, read with one iterator.
      let end = next + 1;
      while (end < leaves.length && end - next < LEAF_READ_RUN_MAX && leaves[end] === (leaves[end - 1] as number) + 1) end += 1;
      const first = leaves[next] as number;
      const read = await this.view.leafKeys(first, first + (end - next));
      const lists: LeafKeyHash[][] = Array.from({ length: end - next }, () => []);
      for (const item of read) {
        if (this.range !== undefined && !inKeyRange(item.key, this.range)) continue;
        const list = lists[item.leaf - first];
        assert(list !== undefined, `the index answered leaf ${item.leaf} outside ${first}..${first + end - next - 1}`);
        list.push({ key: item.key, hash: item.hashes[this.hash] });
      }
      for (const list of lists) {
        const listBytes = varintBytes(list.length) + list.reduce((total, item) => total + leafKeysEncodedBytes(item.key), 0);
        if (answer.length > 0 && bytes + listBytes > bytesMax) return answer;
        bytes += listBytes;
        answer.push(list);
      }
      next = end;
    }
    return answer;
  }

  async values(keys: readonly Uint8Array[], valueBytesMax: number): Promise<(DiffValue | undefined)[]> {
    assert(keys.length >= 1 && keys.length <= VALUE_KEYS_PER_REQUEST_MAX, `${keys.length} keys in one call`);
    assert(Number.isSafeInteger(valueBytesMax) && valueBytesMax >= 0 && valueBytesMax <= VALUE_BYTES_MAX, `valueBytesMax ${valueBytesMax} out of range`);
    const answer: (DiffValue | undefined)[] = [];
    for (const key of keys) {
      const found = await this.view.get(key);
      answer.push(
        found === undefined
          ? undefined
          : {
              key,
              value: found.value.subarray(0, valueBytesMax),
              valueBytes: found.value.byteLength,
              createRevision: found.createRevision,
              modRevision: found.modRevision,
              version: found.version,
              lease: found.lease,
            },
      );
    }
    return answer;
  }
}

function varintBytes(value: number): number {
  let bytes = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) bytes += 1;
  return bytes;
}

// Lowe's memoization for the Wing & Gong search: two search nodes with the same set of
// linearized operations and the same model state have the same future, so the search enters
// each (set, state) pair at most once. Without it the search is exponential in the number of
// concurrent operations even on histories that are linearizable.
//
// We extend it with subsumption on operations without a response (unknown). Such an
// operation need never be linearized (placed last, it changes nothing observed), so a node
// that has linearized a set U of them can do everything a node with the same state, the same
// operations with a response, and more unknown ones linearized (a superset of U) can do. Once
// the first is entered, the second is pruned. Without this, every unknown write pending at a
// point doubles the nodes a failing search must visit before it can say "not linearizable".
//
// LinearizedSet is a bitset with an incremental Zobrist hash over the operations with a
// response only (one random 64-bit word per operation, XORed in and out), so nodes that
// differ only in unknown operations share a hash, and a lookup hashes in O(1). MemoCache
// stores each entered node in one growing Uint32Array arena (the set's words, then the
// state), chained by hash; it reports its size so that the checker can bound it.

import { assert } from '../../src/util/index.ts';
import type { SeededRandom } from '../../src/util/index.ts';
import type { StateId } from './register-model.ts';

// Two halves of a hash combine into one Map key below 2^53: 32 bits from one, 21 from the other.
const HIGH_BITS_MULTIPLIER = 0x20_0000;
const LOW_BITS_MASK = 0x1f_ffff;
// A rough cost of one Map entry in V8, for the memo's size estimate.
const MAP_ENTRY_BYTES = 40;
const ARENA_RECORDS_INITIAL = 1024;
const NONE = -1;

/** LinearizedSet is the set of operations the search has linearized, with an O(1) hash. */
export class LinearizedSet {
  /** words holds one bit per operation: bit i set means operation i is linearized. */
  readonly words: Uint32Array;
  private readonly zobristLow: Uint32Array;
  private readonly zobristHigh: Uint32Array;
  private hashLow = 0;
  private hashHigh = 0;

  /** definiteMask has bit i set when operation i has a response: only those are hashed. */
  readonly definiteMask: Uint32Array;

  constructor(definite: readonly boolean[], random: SeededRandom) {
    const size = definite.length;
    this.words = new Uint32Array(Math.max(1, Math.ceil(size / 32)));
    this.definiteMask = new Uint32Array(this.words.length);
    this.zobristLow = new Uint32Array(size);
    this.zobristHigh = new Uint32Array(size);
    for (let i = 0; i < size; i += 1) {
      // Drawn for every operation, so the words do not depend on which ones are unknown.
      const low = random.nextUint32();
      const high = random.nextUint32();
      if (definite[i] !== true) continue;
      this.zobristLow[i] = low;
      this.zobristHigh[i] = high;
      this.definiteMask[i >>> 5] = ((this.definiteMask[i >>> 5] ?? 0) | (1 << (i & 31))) >>> 0;
    }
  }

  /** has reports whether operation i is in the set. */
  has(i: number): boolean {
    return ((this.words[i >>> 5] ?? 0) & (1 << (i & 31))) !== 0;
  }

  /** add puts operation i into the set; it must not be there. */
  add(i: number): void {
    assert(!this.has(i), `operation ${i} is already linearized`);
    this.flip(i);
  }

  /** remove takes operation i out of the set; it must be there. */
  remove(i: number): void {
    assert(this.has(i), `operation ${i} is not linearized`);
    this.flip(i);
  }

  /** keyWith returns a hash of the set's operations with a response and a model state, as a Map key below 2^53. */
  keyWith(state: StateId): number {
    const low = (this.hashLow ^ Math.imul(state + 1, 0x9e3779b1)) >>> 0;
    const high = (this.hashHigh ^ Math.imul(state + 1, 0x85ebca6b)) & LOW_BITS_MASK;
    return low * HIGH_BITS_MULTIPLIER + high;
  }

  private flip(i: number): void {
    const word = i >>> 5;
    this.words[word] = ((this.words[word] ?? 0) ^ (1 << (i & 31))) >>> 0;
    this.hashLow = (this.hashLow ^ (this.zobristLow[i] ?? 0)) >>> 0;
    this.hashHigh = (this.hashHigh ^ (this.zobristHigh[i] ?? 0)) >>> 0;
  }
}

/**
 * MemoCache remembers every (linearized set, state) node the search has entered, and answers
 * whether a node is subsumed by one of them: same state, same operations with a response,
 * and a subset of its unknown ones.
 */
export class MemoCache {
  private readonly wordsPerSet: number;
  private readonly recordWords: number;
  // Invariant: records 0 .. count-1 are in the arena, each reachable from heads by its key.
  private arena: Uint32Array;
  private chain: Int32Array;
  private readonly heads = new Map<number, number>();
  private count = 0;

  private readonly definiteMask: Uint32Array;

  constructor(definiteMask: Uint32Array) {
    const wordsPerSet = definiteMask.length;
    assert(wordsPerSet > 0, 'a set has at least one word');
    this.definiteMask = definiteMask;
    this.wordsPerSet = wordsPerSet;
    this.recordWords = wordsPerSet + 1;
    this.arena = new Uint32Array(ARENA_RECORDS_INITIAL * this.recordWords);
    this.chain = new Int32Array(ARENA_RECORDS_INITIAL);
  }

  /** size is how many nodes the cache holds. */
  get size(): number {
    return this.count;
  }

  /** bytes estimates the memory the cache holds: its arrays, and its Map at MAP_ENTRY_BYTES an entry. */
  get bytes(): number {
    return this.arena.byteLength + this.chain.byteLength + this.heads.size * MAP_ENTRY_BYTES;
  }

  /** insert adds (set, state) and returns true, or returns false if an entered node subsumes it. */
  insert(set: LinearizedSet, state: StateId): boolean {
    assert(set.words.length === this.wordsPerSet, 'set does not match the cache');
    assert(Number.isInteger(state) && state >= 0, 'state must be a StateId');
    const key = set.keyWith(state);
    const head = this.heads.get(key) ?? NONE;
    for (let record = head; record !== NONE; record = this.chain[record] ?? NONE) {
      if (this.subsumes(record, set.words, state)) return false;
    }
    const record = this.append(set.words, state);
    this.chain[record] = head;
    this.heads.set(key, record);
    return true;
  }

  // The record subsumes the node if their states are equal, their operations with a response
  // are equal, and the record's operations are a subset of the node's.
  private subsumes(record: number, words: Uint32Array, state: StateId): boolean {
    const base = record * this.recordWords;
    if (this.arena[base + this.wordsPerSet] !== state) return false;
    for (let i = 0; i < this.wordsPerSet; i += 1) {
      const stored = this.arena[base + i] as number;
      const current = words[i] as number;
      if ((stored & ~current) !== 0) return false;
      if (((stored ^ current) & (this.definiteMask[i] as number)) !== 0) return false;
    }
    return true;
  }

  private append(words: Uint32Array, state: StateId): number {
    if (this.count === this.chain.length) this.grow();
    const record = this.count;
    const base = record * this.recordWords;
    this.arena.set(words, base);
    this.arena[base + this.wordsPerSet] = state;
    this.count += 1;
    return record;
  }

  private grow(): void {
    const capacity = this.chain.length * 2;
    const arena = new Uint32Array(capacity * this.recordWords);
    arena.set(this.arena);
    const chain = new Int32Array(capacity);
    chain.set(this.chain);
    this.arena = arena;
    this.chain = chain;
  }
}

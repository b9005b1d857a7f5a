// The in-memory index of the disk log: for every entry after the dummy, its term and where
// its record lies (segment, offset, length), plus a bounded cache of the most recent entries.
//
// It is what lets the synchronous reads of the Raft core be answered without touching the
// disk for terms, and with one positional read for older entries. Columns are typed arrays
// and the cache is a ring: a JavaScript array of millions of small objects makes garbage
// collection dominate the append path.

import type { Entry, Index, Term } from '../raft/types.ts';
import { ENTRY_OVERHEAD_BYTES } from '../raft/types.ts';
import { assert } from '../util/assert.ts';

/** LOG_INDEX_CACHE_ENTRIES_MAX bounds how many recent entries the cache holds (a power of two). */
export const LOG_INDEX_CACHE_ENTRIES_MAX = 65_536;
const INITIAL_CAPACITY = 1024;
const UINT32_MAX = 0xffff_ffff;

/** RecordLocation is where an entry's record lies on disk. */
export interface RecordLocation {
  readonly segment: number;
  readonly offset: number;
  readonly bytes: number;
}

/** LogIndex maps log positions to terms and record locations, with a cache of recent entries. */
export class LogIndex {
  private dummy: Index = 0;
  private dummyTermValue: Term = 0;
  // Entry `index` is at column position head + (index - dummy - 1).
  // Invariant: head + count <= capacity of every column.
  private head = 0;
  private count = 0;
  private terms = new Float64Array(INITIAL_CAPACITY);
  private segments = new Uint32Array(INITIAL_CAPACITY);
  private offsets = new Uint32Array(INITIAL_CAPACITY);
  private sizes = new Uint32Array(INITIAL_CAPACITY);

  // Entries cacheFirst..lastIndex() are cached, entry i in ring slot i & RING_MASK.
  // Invariant: lastIndex() - cacheFirst + 1 <= LOG_INDEX_CACHE_ENTRIES_MAX and cacheFirst > dummy.
  private readonly ring: (Entry | undefined)[] = new Array<Entry | undefined>(LOG_INDEX_CACHE_ENTRIES_MAX);
  private cacheFirst: Index = 1;
  private cacheBytes = 0;
  private readonly cacheBytesMax: number;

  constructor(cacheBytesMax: number) {
    assert(cacheBytesMax >= 0, 'cacheBytesMax must not be negative');
    this.cacheBytesMax = cacheBytesMax;
  }

  /** dummyIndex is the index before the first entry (the snapshot or compaction point). */
  get dummyIndex(): Index {
    return this.dummy;
  }

  /** dummyTerm is the term at dummyIndex. */
  get dummyTerm(): Term {
    return this.dummyTermValue;
  }

  /** lastIndex is the index of the last entry (dummyIndex when empty). */
  lastIndex(): Index {
    return this.dummy + this.count;
  }

  /** term returns the term of a stored entry (dummyIndex < index <= lastIndex()). */
  term(index: Index): Term {
    return this.terms[this.column(index)] as number;
  }

  /** location returns where a stored entry's record lies. */
  location(index: Index): RecordLocation {
    const column = this.column(index);
    return { segment: this.segments[column] as number, offset: this.offsets[column] as number, bytes: this.sizes[column] as number };
  }

  /** recordBytes returns the length of a stored entry's record. */
  recordBytes(index: Index): number {
    return this.sizes[this.column(index)] as number;
  }

  /** cached returns a stored entry when it is in the cache. */
  cached(index: Index): Entry | undefined {
    return index >= this.cacheFirst ? this.ring[index & (LOG_INDEX_CACHE_ENTRIES_MAX - 1)] : undefined;
  }

  /**
   * append records an entry's record. An index at or before lastIndex() first truncates
   * that suffix; an index at or before the dummy is ignored (compacted already). `entry`
   * joins the cache when given; an entry appended without it empties the cache, which must
   * stay a suffix of the log.
   */
  append(index: Index, term: Term, location: RecordLocation, entry: Entry | undefined): void {
    if (index <= this.dummy) return;
    assert(index <= this.lastIndex() + 1, `gap in log: last ${this.lastIndex()}, appending ${index}`);
    assert(location.segment <= UINT32_MAX && location.offset <= UINT32_MAX && location.bytes <= UINT32_MAX, 'record location out of range');
    if (index <= this.lastIndex()) this.truncateFrom(index);
    if (this.head + this.count === this.terms.length) this.grow();
    const column = this.head + this.count;
    this.terms[column] = term;
    this.segments[column] = location.segment;
    this.offsets[column] = location.offset;
    this.sizes[column] = location.bytes;
    this.count += 1;
    if (entry === undefined) {
      this.evictThrough(this.lastIndex());
      return;
    }
    this.ring[index & (LOG_INDEX_CACHE_ENTRIES_MAX - 1)] = entry;
    this.cacheBytes += entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
    while (this.cacheFirst <= index && (this.cacheBytes > this.cacheBytesMax || index - this.cacheFirst + 1 > LOG_INDEX_CACHE_ENTRIES_MAX)) {
      this.evictThrough(this.cacheFirst);
    }
  }

  /** compact drops entries through `index`, which becomes the dummy with `term`. */
  compact(index: Index, term: Term): void {
    assert(index > this.dummy && index <= this.lastIndex(), `compact: ${index} outside (${this.dummy}, ${this.lastIndex()}]`);
    this.evictThrough(index);
    const drop = index - this.dummy;
    this.head += drop;
    this.count -= drop;
    this.dummy = index;
    this.dummyTermValue = term;
  }

  /** reset empties the log and puts the dummy at (index, term), as a snapshot install does. */
  reset(index: Index, term: Term): void {
    this.evictThrough(this.lastIndex());
    this.head = 0;
    this.count = 0;
    this.dummy = index;
    this.dummyTermValue = term;
    this.cacheFirst = index + 1;
  }

  private column(index: Index): number {
    assert(index > this.dummy && index <= this.lastIndex(), `log index ${index} outside (${this.dummy}, ${this.lastIndex()}]`);
    return this.head + (index - this.dummy - 1);
  }

  private truncateFrom(index: Index): void {
    const last = this.lastIndex();
    for (let i = Math.max(index, this.cacheFirst); i <= last; i += 1) this.uncache(i);
    this.count = index - this.dummy - 1;
    if (this.cacheFirst > index) this.cacheFirst = index;
  }

  // evictThrough removes entries up to and including `index` from the cache.
  private evictThrough(index: Index): void {
    for (let i = this.cacheFirst; i <= index; i += 1) this.uncache(i);
    if (this.cacheFirst <= index) this.cacheFirst = index + 1;
  }

  private uncache(index: Index): void {
    const slot = index & (LOG_INDEX_CACHE_ENTRIES_MAX - 1);
    const entry = this.ring[slot];
    if (entry === undefined) return;
    this.cacheBytes -= entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
    this.ring[slot] = undefined;
  }

  // grow makes room at the end: it moves the live columns to the front when compaction left
  // at least half the space unused, and doubles the columns otherwise.
  private grow(): void {
    const capacity = this.terms.length;
    const target = this.count * 2 <= capacity ? capacity : capacity * 2;
    const move = <T extends Float64Array | Uint32Array>(column: T, make: (length: number) => T): T => {
      if (target === capacity) {
        column.copyWithin(0, this.head, this.head + this.count);
        return column;
      }
      const next = make(target);
      next.set(column.subarray(this.head, this.head + this.count), 0);
      return next;
    };
    this.terms = move(this.terms, (length) => new Float64Array(length));
    this.segments = move(this.segments, (length) => new Uint32Array(length));
    this.offsets = move(this.offsets, (length) => new Uint32Array(length));
    this.sizes = move(this.sizes, (length) => new Uint32Array(length));
    this.head = 0;
  }
}

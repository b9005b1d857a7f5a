// The read interface the core uses to reach stable storage, and its in-memory reference
// implementation (after etcd-io/raft's Storage and MemoryStorage).
//
// The core only reads. The driver writes: after persisting a Ready it appends the Ready's
// entries, sets its hard state and installs its snapshot, so that what the core reads here
// is exactly what is durable. Reads are synchronous because the core is; a disk-backed
// implementation serves them from memory or with synchronous reads.

import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { ConfState, Entry, HardState, Index, Snapshot, Term } from './types.ts';
import { EMPTY_CONF_STATE, EMPTY_HARD_STATE, entrySizeBytes } from './types.ts';

/** InitialState is what a node restarts from. */
export interface InitialState {
  readonly hardState: HardState;
  readonly confState: ConfState;
}

/**
 * LogStorage is the stable log as the core sees it. Errors are StrataErrors:
 * COMPACTED for an index before firstIndex() - 1, UNAVAILABLE for one after lastIndex(),
 * SNAPSHOT_TEMPORARILY_UNAVAILABLE when snapshot() cannot answer yet.
 */
export interface LogStorage {
  /** initialState returns the persisted hard state and configuration. */
  initialState(): InitialState;
  /**
   * entries returns entries in [lo, hi), stopping before the total size passes maxBytes
   * but always returning at least one entry when lo < hi.
   */
  entries(lo: Index, hi: Index, maxBytes: number): readonly Entry[];
  /** term returns the term of the entry at index, valid from firstIndex() - 1 to lastIndex(). */
  term(index: Index): Term;
  /** firstIndex is the index of the first entry still stored (snapshot index + 1). */
  firstIndex(): Index;
  /** lastIndex is the index of the last entry stored. */
  lastIndex(): Index;
  /** snapshot returns the most recent snapshot. */
  snapshot(): Snapshot;
}

/** limitEntriesBySize keeps a prefix of entries whose total size is within maxBytes (at least one). */
export function limitEntriesBySize(entries: readonly Entry[], maxBytes: number): readonly Entry[] {
  if (entries.length === 0) return entries;
  let size = entrySizeBytes(entries[0] as Entry);
  let count = 1;
  while (count < entries.length) {
    size += entrySizeBytes(entries[count] as Entry);
    if (size > maxBytes) break;
    count += 1;
  }
  return count === entries.length ? entries : entries.slice(0, count);
}

/**
 * MemoryLogStorage keeps the stable log in memory. It is the reference implementation of
 * LogStorage for tests and the simulator, and it is what the simulator "persists" into.
 */
export class MemoryLogStorage implements LogStorage {
  private hardState: HardState = EMPTY_HARD_STATE;
  private latestSnapshot: Snapshot;
  // Invariant: entries[0] is a dummy whose index and term are the snapshot's; the real
  // entries follow contiguously.
  private log: Entry[];

  constructor(confState: ConfState = EMPTY_CONF_STATE) {
    this.latestSnapshot = { metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) };
    this.log = [{ index: 0, term: 0, type: 0, data: new Uint8Array(0) }];
  }

  initialState(): InitialState {
    return { hardState: this.hardState, confState: this.latestSnapshot.metadata.confState };
  }

  /** setConfState replaces the configuration reported by initialState (bootstrap only). */
  setConfState(confState: ConfState): void {
    this.latestSnapshot = { ...this.latestSnapshot, metadata: { ...this.latestSnapshot.metadata, confState } };
  }

  /** setHardState records the persisted hard state. */
  setHardState(hardState: HardState): void {
    this.hardState = hardState;
  }

  entries(lo: Index, hi: Index, maxBytes: number): readonly Entry[] {
    assert(lo <= hi, `entries: lo ${lo} > hi ${hi}`);
    const offset = this.dummy().index;
    if (lo <= offset) throw compactedError(lo, offset);
    if (hi > this.lastIndex() + 1) throw unavailableError(hi - 1, this.lastIndex());
    if (lo === hi) return [];
    return limitEntriesBySize(this.log.slice(lo - offset, hi - offset), maxBytes);
  }

  term(index: Index): Term {
    const offset = this.dummy().index;
    if (index < offset) throw compactedError(index, offset);
    if (index - offset >= this.log.length) throw unavailableError(index, this.lastIndex());
    return (this.log[index - offset] as Entry).term;
  }

  firstIndex(): Index {
    return this.dummy().index + 1;
  }

  lastIndex(): Index {
    return this.dummy().index + this.log.length - 1;
  }

  snapshot(): Snapshot {
    return this.latestSnapshot;
  }

  /** applySnapshot replaces the whole log with a snapshot received from the leader. */
  applySnapshot(snapshot: Snapshot): void {
    const current = this.latestSnapshot.metadata.index;
    if (snapshot.metadata.index <= current) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot at ${snapshot.metadata.index} is not newer than ${current}`);
    }
    this.latestSnapshot = snapshot;
    this.log = [{ index: snapshot.metadata.index, term: snapshot.metadata.term, type: 0, data: new Uint8Array(0) }];
  }

  /**
   * createSnapshot records a snapshot of the applied state at `index` (which must still be
   * in the log) and returns it. It does not compact; call compact() for that.
   */
  createSnapshot(index: Index, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.latestSnapshot.metadata.index) {
      throw new StrataError(ErrorCode.SNAPSHOT_TEMPORARILY_UNAVAILABLE, `snapshot at ${index} is out of date`);
    }
    assert(index <= this.lastIndex(), `createSnapshot: index ${index} > last ${this.lastIndex()}`);
    this.latestSnapshot = { metadata: { index, term: this.term(index), confState }, data };
    return this.latestSnapshot;
  }

  /** compact discards entries before compactIndex; compactIndex becomes the dummy. */
  compact(compactIndex: Index): void {
    const offset = this.dummy().index;
    if (compactIndex <= offset) throw compactedError(compactIndex, offset);
    assert(compactIndex <= this.lastIndex(), `compact ${compactIndex} is out of bound last ${this.lastIndex()}`);
    const position = compactIndex - offset;
    const kept = this.log.slice(position);
    const first = kept[0] as Entry;
    kept[0] = { index: first.index, term: first.term, type: 0, data: new Uint8Array(0) };
    this.log = kept;
  }

  /** append adds entries, replacing any stored suffix that they overlap. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = (entries[entries.length - 1] as Entry).index;
    if (last < first) return; // all compacted already
    let toAppend = entries;
    if (first > (entries[0] as Entry).index) toAppend = entries.slice(first - (entries[0] as Entry).index);
    const start = (toAppend[0] as Entry).index;
    const offset = start - this.dummy().index;
    assert(offset <= this.log.length, `append: gap in log, last ${this.lastIndex()}, appending at ${start}`);
    this.log.length = offset;
    for (const entry of toAppend) this.log.push(entry);
  }

  private dummy(): Entry {
    return this.log[0] as Entry;
  }
}

function compactedError(index: Index, offset: Index): StrataError {
  return new StrataError(ErrorCode.COMPACTED, `index ${index} is compacted (log starts after ${offset})`, {
    details: { index, compactedThrough: offset },
  });
}

function unavailableError(index: Index, last: Index): StrataError {
  return new StrataError(ErrorCode.UNAVAILABLE, `index ${index} is not in the log (last is ${last})`, {
    details: { index, lastIndex: last },
  });
}

// The part of the log not yet known to be durable: entries (and possibly a snapshot)
// handed to the driver in a Ready and not yet acknowledged by advance() (after
// etcd-io/raft's log_unstable.go).

import { assert } from '../util/assert.ts';
import type { Entry, Index, Snapshot, Term } from './types.ts';

/** UnstableLog holds entries and a snapshot that the driver has yet to persist. */
export class UnstableLog {
  /** snapshot is a snapshot received from the leader and not yet persisted. */
  snapshot: Snapshot | undefined;
  // Invariant: entries[i].index === offset + i.
  entries: Entry[] = [];
  offset: Index;

  constructor(offset: Index) {
    this.offset = offset;
  }

  /** maybeFirstIndex is the first index when an unstable snapshot defines it. */
  maybeFirstIndex(): Index | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  /** maybeLastIndex is the last index held here, if any. */
  maybeLastIndex(): Index | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    if (this.snapshot !== undefined) return this.snapshot.metadata.index;
    return undefined;
  }

  /** maybeTerm is the term at index, if this part of the log decides it. */
  maybeTerm(index: Index): Term | undefined {
    if (index < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === index) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || index > last) return undefined;
    if (this.entries.length === 0) return undefined;
    return (this.entries[index - this.offset] as Entry).term;
  }

  /** stableTo drops entries up to index once persisted, unless they were replaced meanwhile. */
  stableTo(index: Index, term: Term): void {
    const stored = this.maybeTerm(index);
    // A term mismatch means the entry was replaced after the Ready was handed out: the
    // replacement is still unstable and will be handed out again.
    if (stored === undefined || stored !== term) return;
    if (index < this.offset) return;
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.offset = index + 1;
  }

  /** stableSnapTo forgets the snapshot once persisted. */
  stableSnapTo(index: Index): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === index) this.snapshot = undefined;
  }

  /** restore replaces everything with a snapshot. */
  restore(snapshot: Snapshot): void {
    this.offset = snapshot.metadata.index + 1;
    this.entries = [];
    this.snapshot = snapshot;
  }

  /** truncateAndAppend appends entries, replacing any held suffix they overlap. */
  truncateAndAppend(entries: readonly Entry[]): void {
    const first = entries[0];
    assert(first !== undefined, 'truncateAndAppend needs entries');
    const after = first.index;
    if (after === this.offset + this.entries.length) {
      for (const entry of entries) this.entries.push(entry);
    } else if (after <= this.offset) {
      // Replace everything held: the log is rewritten from `after`.
      this.offset = after;
      this.entries = [...entries];
    } else {
      this.entries = this.entries.slice(0, after - this.offset);
      for (const entry of entries) this.entries.push(entry);
    }
  }

  /** slice returns held entries in [lo, hi). */
  slice(lo: Index, hi: Index): Entry[] {
    assert(lo <= hi, `unstable slice ${lo} > ${hi}`);
    assert(lo >= this.offset && hi <= this.offset + this.entries.length, `unstable slice [${lo},${hi}) out of [${this.offset},${this.offset + this.entries.length}]`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

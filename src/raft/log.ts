// The Raft log as the core sees it: what stable storage holds, plus the unstable tail,
// plus the commit and apply positions (after etcd-io/raft's log.go).

import { assert } from '../util/assert.ts';
import { ErrorCode, isStrataError } from '../util/errors.ts';
import { UnstableLog } from './log-unstable.ts';
import type { LogStorage } from './storage.ts';
import { limitEntriesBySize } from './storage.ts';
import type { Entry, Index, Snapshot, Term } from './types.ts';

/** RaftLog combines stable storage and the unstable tail. */
export class RaftLog {
  readonly storage: LogStorage;
  readonly unstable: UnstableLog;
  // Invariant: applied <= committed <= lastIndex().
  /** committed is the highest index known to be committed. */
  committed: Index;
  /** applied is the highest index the driver has applied (acknowledged by advance). */
  applied: Index;

  constructor(storage: LogStorage) {
    this.storage = storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new UnstableLog(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): Index {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): Index {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): Term {
    const term = this.term(this.lastIndex());
    assert(term !== undefined, 'the last entry always has a term');
    return term;
  }

  /** term is the term at index, or undefined when compacted away or past the end. */
  term(index: Index): Term | undefined {
    // The valid range is [firstIndex - 1, lastIndex]: firstIndex - 1 is the snapshot's.
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return undefined;
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return unstableTerm;
    try {
      return this.storage.term(index);
    } catch (error) {
      if (isStrataError(error, ErrorCode.COMPACTED) || isStrataError(error, ErrorCode.UNAVAILABLE)) return undefined;
      throw error;
    }
  }

  matchTerm(index: Index, term: Term): boolean {
    return this.term(index) === term;
  }

  /** isUpToDate tells whether a log ending at (lastIndex, lastTerm) is at least as up to date as ours (§5.4.1). */
  isUpToDate(lastIndex: Index, lastTerm: Term): boolean {
    const ourLastTerm = this.lastTerm();
    return lastTerm > ourLastTerm || (lastTerm === ourLastTerm && lastIndex >= this.lastIndex());
  }

  /** append adds entries at the end of the unstable tail (possibly replacing a suffix). */
  append(entries: readonly Entry[]): Index {
    const first = entries[0];
    if (first === undefined) return this.lastIndex();
    assert(first.index - 1 >= this.committed, `append at ${first.index} would overwrite committed ${this.committed}`);
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /**
   * maybeAppend handles the leader's append after (index, logTerm): when our log matches
   * there it appends what is new and moves commit; otherwise it returns undefined (§5.3).
   */
  maybeAppend(index: Index, logTerm: Term, leaderCommit: Index, entries: readonly Entry[]): Index | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNewIndex = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, `entry ${conflict} conflicts with committed entry (committed ${this.committed})`);
      this.append(entries.slice(conflict - (index + 1)));
    }
    this.commitTo(Math.min(leaderCommit, lastNewIndex));
    return lastNewIndex;
  }

  /** findConflict is the index of the first entry whose term differs from ours (or is new), else 0. */
  findConflict(entries: readonly Entry[]): Index {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * findConflictByTerm returns the largest index <= index whose term is <= term, with that
   * term: where a leader whose log has `term` at `index` may next find a match (fast back-off).
   */
  findConflictByTerm(index: Index, term: Term): { index: Index; term: Term } {
    let candidate = Math.min(index, this.lastIndex());
    const floor = this.firstIndex() - 1;
    while (candidate >= floor) {
      const ourTerm = this.term(candidate);
      if (ourTerm === undefined) return { index: candidate, term: 0 };
      if (ourTerm <= term) return { index: candidate, term: ourTerm };
      candidate -= 1;
    }
    return { index: floor, term: 0 };
  }

  commitTo(index: Index): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), `commit ${index} is out of range (last ${this.lastIndex()})`);
    this.committed = index;
  }

  /** maybeCommit commits `index` if its entry is of `term` (§5.4.2: only current-term entries by counting). */
  maybeCommit(index: Index, term: Term): boolean {
    if (index > this.committed && this.term(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  appliedTo(index: Index): void {
    if (index === 0) return;
    assert(index <= this.committed, `applied ${index} > committed ${this.committed}`);
    assert(index >= this.applied, `applied ${index} < previous applied ${this.applied}`);
    this.applied = index;
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > this.applied && this.applied + 1 >= this.firstIndex();
  }

  /** nextCommittedEntries are the committed entries not yet applied, limited by size. */
  nextCommittedEntries(maxBytes: number): readonly Entry[] {
    if (!this.hasNextCommittedEntries()) return [];
    return this.slice(this.applied + 1, this.committed + 1, maxBytes);
  }

  /** slice returns entries in [lo, hi), limited by size (at least one). Throws COMPACTED below firstIndex. */
  slice(lo: Index, hi: Index, maxBytes: number): readonly Entry[] {
    assert(lo <= hi, `slice ${lo} > ${hi}`);
    assert(hi <= this.lastIndex() + 1, `slice hi ${hi} beyond last ${this.lastIndex()}`);
    if (lo === hi) return [];
    const unstableOffset = this.unstable.offset;
    let result: Entry[] = [];
    if (lo < unstableOffset) {
      const stored = this.storage.entries(lo, Math.min(hi, unstableOffset), maxBytes);
      // Storage stopped early because of the size limit: do not add unstable entries.
      if (stored.length < Math.min(hi, unstableOffset) - lo) return stored;
      result = [...stored];
    }
    if (hi > unstableOffset) {
      const fromUnstable = this.unstable.slice(Math.max(lo, unstableOffset), hi);
      for (const entry of fromUnstable) result.push(entry);
    }
    return limitEntriesBySize(result, maxBytes);
  }

  /** snapshot is the newest snapshot: the unstable one if any, else the stored one. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** restore replaces the log with a snapshot received from the leader. */
  restore(snapshot: Snapshot): void {
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }

  stableTo(index: Index, term: Term): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapTo(index: Index): void {
    this.unstable.stableSnapTo(index);
  }
}

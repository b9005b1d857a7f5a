// The safety properties of Raft (§5.2 election safety, §5.3 log matching, §5.4 leader
// completeness and state machine safety), checked against global knowledge that no single
// node has: every (term, leader) ever seen, every entry any log ever held, every entry any
// state machine applied, every commit index any node reported. One rule of §5.3 is checked
// per message as well, because its violation can stay harmless for a long time: a follower
// commits only entries an append verified. A violation throws a SimulationFailure naming
// the invariant.

import type { AppendMessage, ConfState, Entry, HardState, Index, NodeId, Snapshot, Term } from '../../../src/raft/index.ts';
import type { SeededRandom } from '../../../src/util/index.ts';
import { entryHash } from './sim-state-machine.ts';
import type { SimStateMachine } from './sim-state-machine.ts';

/** SimulationFailure is a broken invariant (or a core that threw); it ends the run. */
export class SimulationFailure extends Error {
  override name = 'SimulationFailure';
  /** invariant names the property that failed, e.g. 'election safety'. */
  readonly invariant: string;

  constructor(invariant: string, detail: string) {
    super(`${invariant}: ${detail}`);
    this.invariant = invariant;
  }
}

/** failInvariant throws a SimulationFailure. */
export function failInvariant(invariant: string, detail: string): never {
  throw new SimulationFailure(invariant, detail);
}

/** LEADER_COMPLETENESS_WINDOW is how many committed indexes below the newest a new leader is checked at. */
export const LEADER_COMPLETENESS_WINDOW = 256;
/** LEADER_COMPLETENESS_SAMPLES is how many older committed indexes are sampled in addition. */
export const LEADER_COMPLETENESS_SAMPLES = 16;
/** LOG_MATCHING_PREFIX_CHECKS is how many indexes below a common entry each sample compares. */
export const LOG_MATCHING_PREFIX_CHECKS = 8;

// (index, term) pairs are keyed as index * TERM_KEY_BASE + term; runs are far shorter than
// a million terms, and the product stays below 2^53.
const TERM_KEY_BASE = 1_000_000;

interface SeenEntry {
  readonly prevTerm: Term | undefined;
  readonly hash: number;
  readonly node: NodeId;
}

interface AppliedEntry {
  readonly term: Term;
  readonly hash: number;
  readonly chain: number;
  readonly node: NodeId;
}

interface CommitAdvance {
  readonly index: Index;
  // The term of the node that reported the commit index: the entries up to `index` were
  // committed in this term or an earlier one, so every leader of a higher term holds them.
  readonly term: Term;
}

/** LogView is what the checker reads from a live node's Raft log. */
export interface LogView {
  readonly id: NodeId;
  readonly lastIndex: Index;
  logTermAt(index: Index): Term | undefined;
}

/** InvariantChecker holds the global knowledge the safety checks compare against. */
export class InvariantChecker {
  private readonly leaderByTerm = new Map<Term, { readonly id: NodeId; readonly incarnation: number }>();
  private readonly seenEntries = new Map<number, SeenEntry>();
  private readonly applied = new Map<Index, AppliedEntry>();
  private readonly appliedIndexByData = new Map<string, Index>();
  private readonly persisted = new Map<NodeId, HardState>();
  private readonly confByIndex = new Map<Index, string>();
  private readonly commitAdvances: CommitAdvance[] = [];
  private maxAppliedIndex: Index = 0;
  private readonly confAgreementFromIndex: Index;

  /**
   * `confAgreementFromIndex` exempts the bootstrap entries of a RaftConfig.voters bootstrap:
   * a first start installs the whole configuration before applying them, a restart rebuilds
   * it one entry at a time, so only the configuration after the last of them must agree.
   */
  constructor(confAgreementFromIndex: Index = 0) {
    this.confAgreementFromIndex = confAgreementFromIndex;
  }

  /** maxCommitIndex is the highest commit index any node has reported. */
  get maxCommitIndex(): Index {
    return this.commitAdvances.at(-1)?.index ?? 0;
  }

  /**
   * observeLeader records that `id` is leader of `term`. It returns true the first time the
   * pair is seen, after checking election safety and leader completeness for it.
   */
  observeLeader(id: NodeId, term: Term, incarnation: number, log: LogView): boolean {
    const known = this.leaderByTerm.get(term);
    if (known !== undefined && known.id === id && known.incarnation === incarnation) return false;
    if (known !== undefined && known.id !== id) failInvariant('election safety', `term ${term} has two leaders: ${known.id} and ${id}`);
    // Campaigning always moves to a new term, so leading one term again after a restart means
    // the first leadership's term never reached the disk — yet its appends may have left.
    if (known !== undefined) {
      failInvariant('election safety', `node ${id} leads term ${term} again after a restart (incarnations ${known.incarnation} and ${incarnation}): that term was never persisted`);
    }
    this.leaderByTerm.set(term, { id, incarnation });
    this.checkLeaderCompleteness(term, log);
    return true;
  }

  /** observeCommit records a node's commit index (reported while in `term`). */
  observeCommit(commit: Index, term: Term): void {
    if (commit > this.maxCommitIndex) this.commitAdvances.push({ index: commit, term });
  }

  /**
   * observeLogEntries records entries a node is about to persist (a Ready's entries), with
   * the term of the entry before the first one. One (index, term) must always carry the same
   * content and the same previous term — by induction that is log matching for every log.
   */
  observeLogEntries(node: NodeId, entries: readonly Entry[], prevTerm: Term | undefined): void {
    let previous = prevTerm;
    let expectedIndex = entries[0]?.index ?? 0;
    for (const entry of entries) {
      if (entry.index !== expectedIndex) failInvariant('log matching', `node ${node} Ready entries skip from ${expectedIndex - 1} to ${entry.index}`);
      if (entry.term >= TERM_KEY_BASE) failInvariant('simulator bound', `term ${entry.term} exceeds the key space`);
      if (previous !== undefined && entry.term < previous) {
        failInvariant('log matching', `node ${node} log term goes back at ${entry.index}: t${entry.term} after t${previous}`);
      }
      const key = entry.index * TERM_KEY_BASE + entry.term;
      const hash = entryHash(entry);
      const seen = this.seenEntries.get(key);
      if (seen === undefined) {
        this.seenEntries.set(key, { prevTerm: previous, hash, node });
      } else {
        if (seen.hash !== hash) {
          failInvariant('log matching', `entry ${entry.index}/t${entry.term} has different content at node ${node} and node ${seen.node}`);
        }
        if (seen.prevTerm !== undefined && previous !== undefined && seen.prevTerm !== previous) {
          failInvariant('log matching', `entry ${entry.index}/t${entry.term} follows t${previous} at node ${node} but t${seen.prevTerm} at node ${seen.node}`);
        }
      }
      previous = entry.term;
      expectedIndex += 1;
    }
  }

  /**
   * checkLogPair samples two live logs: where both hold the same term at an index, they must
   * agree below it, and each sampled (index, term) must follow the term recorded for it.
   */
  checkLogPair(a: LogView, b: LogView, random: SeededRandom): void {
    const high = Math.min(a.lastIndex, b.lastIndex);
    if (high < 1) return;
    const probes = [high, 1 + random.intBelow(high)];
    for (const index of probes) {
      const termA = a.logTermAt(index);
      if (termA === undefined || termA !== b.logTermAt(index)) continue;
      this.checkRecordedPrevious(a, index, termA);
      this.checkRecordedPrevious(b, index, termA);
      for (let back = 1; back <= LOG_MATCHING_PREFIX_CHECKS && index - back >= 1; back += 1) {
        const j = index - back;
        const ta = a.logTermAt(j);
        const tb = b.logTermAt(j);
        if (ta === undefined || tb === undefined) break;
        if (ta !== tb) {
          failInvariant('log matching', `nodes ${a.id} and ${b.id} agree on t${termA} at ${index} but differ at ${j}: t${ta} vs t${tb}`);
        }
      }
    }
  }

  /**
   * observeAppendCommit checks a follower's commit index across one append it stepped
   * (§5.3, Figure 2: commitIndex = min(leaderCommit, index of last new entry)). Entries
   * past the last one the append carried were not checked against the leader's log by it:
   * they may be a stale suffix of an earlier term that the leader's log does not hold. This
   * core's leader never lets such a suffix be committed (it sends a follower entries from
   * the first conflicting index on, and heartbeats carry min(match, commit)), so a follower
   * that breaks the rule breaks no global property, today; this check sees it anyway.
   */
  observeAppendCommit(node: NodeId, append: AppendMessage, commitBefore: Index, commitAfter: Index): void {
    if (commitAfter <= commitBefore) return;
    const lastVerified = append.index + append.entries.length;
    const allowed = Math.min(append.commit, lastVerified);
    if (commitAfter > allowed) {
      failInvariant('commit only verified entries', `node ${node} moved its commit from ${commitBefore} to ${commitAfter} on an append from ${append.from} in t${append.term} that verified up to ${lastVerified} with leader commit ${append.commit}`);
    }
  }

  /** observePersistedHardState checks what a node wrote to its disk against what it wrote before. */
  observePersistedHardState(node: NodeId, hardState: HardState): void {
    const before = this.persisted.get(node);
    if (before !== undefined) {
      if (hardState.term < before.term) failInvariant('persisted term monotonic', `node ${node} persisted t${hardState.term} after t${before.term}`);
      if (hardState.commit < before.commit) {
        failInvariant('persisted commit monotonic', `node ${node} persisted commit ${hardState.commit} after ${before.commit}`);
      }
      if (hardState.term === before.term && before.vote !== 0 && hardState.vote !== before.vote) {
        failInvariant('one vote per term', `node ${node} voted for ${before.vote} and then ${hardState.vote} in term ${hardState.term}`);
      }
    }
    this.persisted.set(node, hardState);
  }

  /** observeApply checks one applied entry (state machine safety) after `machine` applied it. */
  observeApply(node: NodeId, entry: Entry, machine: SimStateMachine): void {
    const hash = entryHash(entry);
    const known = this.applied.get(entry.index);
    if (known === undefined) {
      this.applied.set(entry.index, { term: entry.term, hash, chain: machine.chain, node });
      if (entry.index > this.maxAppliedIndex) this.maxAppliedIndex = entry.index;
    } else {
      if (known.term !== entry.term || known.hash !== hash) {
        failInvariant('state machine safety', `index ${entry.index}: node ${node} applied t${entry.term}, node ${known.node} applied t${known.term}${known.hash === hash ? '' : ' with other data'}`);
      }
      if (known.chain !== machine.chain) {
        failInvariant('state machine safety', `node ${node} reached index ${entry.index} with a state that differs from node ${known.node}'s`);
      }
    }
    if (entry.data.byteLength > 0 && entry.type === 0) {
      const dataKey = Buffer.from(entry.data).toString('latin1');
      const firstIndex = this.appliedIndexByData.get(dataKey);
      if (firstIndex === undefined) this.appliedIndexByData.set(dataKey, entry.index);
      else if (firstIndex !== entry.index) {
        failInvariant('proposal applied once', `one proposal was applied at ${firstIndex} and at ${entry.index}`);
      }
    }
  }

  /** observeSnapshotRestore checks a state machine rebuilt from a snapshot against what was applied. */
  observeSnapshotRestore(node: NodeId, snapshot: Snapshot, machine: SimStateMachine): void {
    const { index, term } = snapshot.metadata;
    if (machine.appliedIndex !== index) {
      failInvariant('snapshot integrity', `node ${node}: snapshot metadata says ${index} but its data says ${machine.appliedIndex}`);
    }
    const known = this.applied.get(index);
    if (known === undefined || index === 0) return;
    if (known.term !== term) failInvariant('snapshot integrity', `node ${node} got a snapshot at ${index}/t${term}, but t${known.term} was applied there`);
    if (known.chain !== machine.chain) failInvariant('snapshot integrity', `node ${node} got a snapshot at ${index} whose state differs from node ${known.node}'s`);
  }

  /** observeConfApplied checks that every node reaches the same configuration at one conf-change index. */
  observeConfApplied(node: NodeId, index: Index, confState: ConfState): void {
    if (index < this.confAgreementFromIndex) return;
    const text = describeConfState(confState);
    const known = this.confByIndex.get(index);
    if (known === undefined) this.confByIndex.set(index, text);
    else if (known !== text) failInvariant('configuration agreement', `node ${node} reached ${text} at ${index}, another node ${known}`);
  }

  /** appliedTermAt returns the term of the entry applied at index, if any node applied it. */
  appliedTermAt(index: Index): Term | undefined {
    return this.applied.get(index)?.term;
  }

  // Raft §5.4: an entry committed in term U is in the log of every leader of a term above U.
  private checkLeaderCompleteness(term: Term, log: LogView): void {
    let mustHold = 0;
    for (const advance of this.commitAdvances) if (advance.term < term && advance.index > mustHold) mustHold = advance.index;
    if (mustHold === 0) return;
    if (log.lastIndex < mustHold) {
      failInvariant('leader completeness', `node ${log.id} leads term ${term} with last index ${log.lastIndex}, but ${mustHold} was committed before`);
    }
    const top = Math.min(mustHold, this.maxAppliedIndex);
    for (let index = top; index >= 1 && index > top - LEADER_COMPLETENESS_WINDOW; index -= 1) {
      if (!this.checkLeaderHolds(term, log, index)) return;
    }
    // A few older indexes too, spread deterministically over the rest of the committed log.
    const below = top - LEADER_COMPLETENESS_WINDOW;
    for (let sample = 1; sample <= LEADER_COMPLETENESS_SAMPLES && below > 0; sample += 1) {
      this.checkLeaderHolds(term, log, Math.max(1, Math.floor((below * sample) / LEADER_COMPLETENESS_SAMPLES)));
    }
  }

  // Returns false once the leader's log is compacted at `index` (nothing lower to compare).
  private checkLeaderHolds(term: Term, log: LogView, index: Index): boolean {
    const committedTerm = this.applied.get(index)?.term;
    if (committedTerm === undefined) return true;
    const held = log.logTermAt(index);
    if (held === undefined) return false;
    if (held !== committedTerm) {
      failInvariant('leader completeness', `node ${log.id} leads term ${term} holding t${held} at ${index}, where t${committedTerm} was committed`);
    }
    return true;
  }

  private checkRecordedPrevious(log: LogView, index: Index, term: Term): void {
    const seen = this.seenEntries.get(index * TERM_KEY_BASE + term);
    if (seen === undefined || seen.prevTerm === undefined || index < 2) return;
    const previous = log.logTermAt(index - 1);
    if (previous !== undefined && previous !== seen.prevTerm) {
      failInvariant('log matching', `node ${log.id} holds ${index}/t${term} after t${previous}, but it was written after t${seen.prevTerm}`);
    }
  }
}

/** describeConfState renders a configuration compactly, e.g. `voters=1,2,3 learners=4`. */
export function describeConfState(confState: ConfState): string {
  const parts = [`voters=${[...confState.voters].sort((a, b) => a - b).join(',')}`];
  if (confState.learners.length > 0) parts.push(`learners=${[...confState.learners].sort((a, b) => a - b).join(',')}`);
  if (confState.votersOutgoing.length > 0) parts.push(`outgoing=${[...confState.votersOutgoing].sort((a, b) => a - b).join(',')}`);
  if (confState.learnersNext.length > 0) parts.push(`learnersNext=${[...confState.learnersNext].sort((a, b) => a - b).join(',')}`);
  if (confState.autoLeave) parts.push('autoLeave');
  return parts.join(' ');
}

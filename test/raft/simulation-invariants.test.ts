// The simulator's invariant checker must not be vacuous: each check is fed a history that
// breaks its property and must name it (and a history that keeps it must pass).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AppendMessage, Entry, Index, Term } from '../../src/raft/index.ts';
import { EMPTY_CONF_STATE, EntryType } from '../../src/raft/index.ts';
import { SeededRandom } from '../../src/util/index.ts';
import { InvariantChecker, SimulationFailure } from './sim/invariant-checker.ts';
import type { LogView } from './sim/invariant-checker.ts';
import { SimStateMachine } from './sim/sim-state-machine.ts';

const encoder = new TextEncoder();

function entry(index: Index, term: Term, data = `e${index}`): Entry {
  return { index, term, type: EntryType.Normal, data: encoder.encode(data) };
}

// A log view over explicit terms: terms[i] is the term at index i + 1.
function logView(id: number, terms: readonly Term[]): LogView {
  return { id, lastIndex: terms.length, logTermAt: (index) => (index >= 1 ? terms[index - 1] : index === 0 ? 0 : undefined) };
}

function failsWith(invariant: string, action: () => void): void {
  assert.throws(action, (error: unknown) => error instanceof SimulationFailure && error.invariant === invariant);
}

function applyAll(checker: InvariantChecker, node: number, entries: readonly Entry[]): SimStateMachine {
  const machine = new SimStateMachine();
  for (const e of entries) {
    machine.apply(e);
    checker.observeApply(node, e, machine);
  }
  return machine;
}

test('election safety: two leaders in one term fail, one leadership seen twice passes', () => {
  const checker = new InvariantChecker();
  assert.equal(checker.observeLeader(1, 3, 1, logView(1, [1, 1])), true);
  assert.equal(checker.observeLeader(1, 3, 1, logView(1, [1, 1])), false);
  failsWith('election safety', () => checker.observeLeader(2, 3, 1, logView(2, [1, 1])));
  // The same node leading the same term in a later incarnation lost that term on its disk.
  failsWith('election safety', () => checker.observeLeader(1, 3, 2, logView(1, [1, 1])));
});

test('log matching: one (index, term) with other content or another previous term fails', () => {
  const checker = new InvariantChecker();
  checker.observeLogEntries(1, [entry(1, 1), entry(2, 1)], 0);
  checker.observeLogEntries(2, [entry(2, 1)], 1);
  checker.observeLogEntries(1, [entry(3, 2)], 1);
  failsWith('log matching', () => checker.observeLogEntries(3, [entry(2, 1, 'other')], 1));
  // Entry 3/t2 was written after t1; a log that holds it after t2 broke the prefix.
  failsWith('log matching', () => checker.observeLogEntries(3, [entry(3, 2)], 2));
  failsWith('log matching', () => checker.observeLogEntries(3, [entry(5, 2), entry(7, 2)], 2));
  failsWith('log matching', () => checker.observeLogEntries(3, [entry(9, 1)], 2));
});

test('log matching: two logs that agree at an index but differ below it fail', () => {
  const checker = new InvariantChecker();
  const random = new SeededRandom(1);
  checker.checkLogPair(logView(1, [1, 1, 2, 3]), logView(2, [1, 1, 2, 3]), random);
  failsWith('log matching', () => checker.checkLogPair(logView(1, [1, 1, 2, 3]), logView(2, [1, 2, 2, 3]), random));
});

test('state machine safety: another entry applied at an index fails, and so does one proposal at two indexes', () => {
  const checker = new InvariantChecker();
  applyAll(checker, 1, [entry(1, 1), entry(2, 1)]);
  applyAll(checker, 2, [entry(1, 1), entry(2, 1)]);
  failsWith('state machine safety', () => applyAll(checker, 3, [entry(1, 1), entry(2, 2)]));
  failsWith('proposal applied once', () => applyAll(new InvariantChecker(), 1, [entry(1, 1, 'x'), entry(2, 1, 'x')]));
});

test('leader completeness: a new leader of a later term missing a committed entry fails', () => {
  const checker = new InvariantChecker();
  applyAll(checker, 1, [entry(1, 1), entry(2, 1), entry(3, 2)]);
  checker.observeCommit(3, 2);
  // A leader of term 2 itself is not bound by what term 2 committed.
  checker.observeLeader(2, 2, 1, logView(2, [1, 1]));
  checker.observeLeader(1, 3, 1, logView(1, [1, 1, 2]));
  failsWith('leader completeness', () => checker.observeLeader(3, 4, 1, logView(3, [1, 1])));
  failsWith('leader completeness', () => checker.observeLeader(3, 5, 1, logView(3, [1, 1, 3])));
});

test('commit only verified entries: a follower that commits past the last entry an append carried fails (§5.3)', () => {
  const checker = new InvariantChecker();
  // Entries 5..6 after 4/t2, the leader's commit at 9: the follower may commit up to 6 only.
  const append: AppendMessage = { type: 'append', from: 1, to: 2, term: 3, logTerm: 2, index: 4, entries: [entry(5, 3), entry(6, 3)], commit: 9 };
  checker.observeAppendCommit(2, append, 3, 6);
  checker.observeAppendCommit(2, append, 3, 3);
  // A commit already past the append's end, from earlier appends, is not this append's doing.
  checker.observeAppendCommit(2, append, 8, 8);
  failsWith('commit only verified entries', () => checker.observeAppendCommit(2, append, 3, 7));
  failsWith('commit only verified entries', () => checker.observeAppendCommit(2, { ...append, commit: 5 }, 3, 6));
});

test('persisted hard state: commit or term going back, or a second vote in a term, fail', () => {
  const checker = new InvariantChecker();
  checker.observePersistedHardState(1, { term: 2, vote: 1, commit: 5 });
  checker.observePersistedHardState(1, { term: 2, vote: 1, commit: 6 });
  failsWith('persisted commit monotonic', () => checker.observePersistedHardState(1, { term: 2, vote: 1, commit: 4 }));
  failsWith('one vote per term', () => checker.observePersistedHardState(1, { term: 2, vote: 3, commit: 6 }));
  failsWith('persisted term monotonic', () => checker.observePersistedHardState(1, { term: 1, vote: 0, commit: 6 }));
});

test('configuration agreement: two configurations at one index fail (bootstrap entries exempt)', () => {
  const checker = new InvariantChecker(3);
  checker.observeConfApplied(1, 1, { ...EMPTY_CONF_STATE, voters: [1] });
  checker.observeConfApplied(2, 1, { ...EMPTY_CONF_STATE, voters: [1, 2, 3] });
  checker.observeConfApplied(1, 3, { ...EMPTY_CONF_STATE, voters: [1, 2, 3] });
  failsWith('configuration agreement', () => checker.observeConfApplied(2, 3, { ...EMPTY_CONF_STATE, voters: [1, 2] }));
});

test('snapshot integrity: a snapshot whose state differs from what was applied at its index fails', () => {
  const checker = new InvariantChecker();
  const machine = applyAll(checker, 1, [entry(1, 1), entry(2, 1)]);
  const restored = SimStateMachine.restore(machine.encode());
  checker.observeSnapshotRestore(2, { metadata: { index: 2, term: 1, confState: EMPTY_CONF_STATE }, data: machine.encode() }, restored);
  const other = new SimStateMachine(2, 12345);
  failsWith('snapshot integrity', () =>
    checker.observeSnapshotRestore(2, { metadata: { index: 2, term: 1, confState: EMPTY_CONF_STATE }, data: other.encode() }, other));
});

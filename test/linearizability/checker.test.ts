// The checker on histories small enough to reason about by hand: each test states the
// history, the verdict, and for a violation which operation the explanation blames.
// Times are [invoke, response]; every key starts absent.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AssertionFailure } from '../../src/util/index.ts';
import { checkLinearizability } from './checker.ts';
import type { CheckOptions } from './checker.ts';
import type { CasOperation, ClientId, DeleteOperation, History, Operation, ReadOperation, WriteOperation } from './history.ts';
import { generateLinearizableHistory } from './random-history.ts';
import type { Verdict } from './verdict.ts';

type Interval = readonly [number, number];

function read(key: string, value: string | null, [invokeTime, responseTime]: Interval, client: ClientId = 0): ReadOperation {
  return { kind: 'read', key, client, invokeTime, outcome: { status: 'ok', responseTime, value } };
}

function write(key: string, value: string, [invokeTime, responseTime]: Interval, client: ClientId = 0): WriteOperation {
  return { kind: 'write', key, value, client, invokeTime, outcome: { status: 'ok', responseTime } };
}

function cas(key: string, expected: string | null, value: string, succeeded: boolean, [invokeTime, responseTime]: Interval, client: ClientId = 0): CasOperation {
  return { kind: 'cas', key, expected, value, client, invokeTime, outcome: { status: 'ok', responseTime, succeeded } };
}

function del(key: string, [invokeTime, responseTime]: Interval, deleted?: 0 | 1, client: ClientId = 0): DeleteOperation {
  const outcome = deleted === undefined ? { status: 'ok' as const, responseTime } : { status: 'ok' as const, responseTime, deleted };
  return { kind: 'delete', key, client, invokeTime, outcome };
}

// The same operation, but its response never came: it may take effect at any time after its invocation, or never.
function unknown(operation: Operation): Operation {
  return { ...operation, outcome: { status: 'unknown' } } as Operation;
}

// The same operation, but refused: it did not take effect.
function failed(operation: Operation): Operation {
  assert.notEqual(operation.outcome.status, 'unknown');
  const responseTime = operation.outcome.status === 'unknown' ? operation.invokeTime : operation.outcome.responseTime;
  return { ...operation, outcome: { status: 'fail', responseTime } } as Operation;
}

function check(history: History, options?: CheckOptions): Verdict {
  return checkLinearizability(history, options);
}

function assertLinearizable(history: History): void {
  const verdict = check(history);
  assert.equal(verdict.result, 'linearizable', JSON.stringify(verdict, null, 2));
}

// Asserts a violation on `key` that blames the operation at `blockedIndex`, and returns it.
function assertViolation(history: History, key: string, blockedIndex: number): Extract<Verdict, { result: 'not-linearizable' }> {
  const verdict = check(history);
  assert.equal(verdict.result, 'not-linearizable', JSON.stringify(verdict, null, 2));
  assert.equal(verdict.key, key);
  assert.equal(verdict.explanation.blocked.index, blockedIndex, verdict.explanation.summary);
  assert.equal(verdict.explanation.blocked.operation, history[blockedIndex]);
  return verdict;
}

test('an empty history, and one of only fails and unknown reads, are linearizable', () => {
  assertLinearizable([]);
  assertLinearizable([failed(read('k', 'x', [0, 1])), unknown(read('k', 'y', [2, 3])), failed(write('k', 'a', [4, 5]))]);
});

test('sequential histories: every read sees the last write', () => {
  assertLinearizable([
    read('k', null, [0, 1]),
    write('k', 'a', [2, 3]),
    read('k', 'a', [4, 5]),
    write('k', 'b', [6, 7]),
    read('k', 'b', [8, 9]),
    cas('k', 'b', 'c', true, [10, 11]),
    cas('k', 'b', 'd', false, [12, 13]),
    read('k', 'c', [14, 15]),
    del('k', [16, 17], 1),
    read('k', null, [18, 19]),
  ]);
});

test('concurrent writes: a read overlapping both may see either, or neither', () => {
  const writes = [write('k', 'a', [0, 10], 1), write('k', 'b', [0, 10], 2)];
  assertLinearizable([...writes, read('k', 'a', [5, 15], 3)]);
  assertLinearizable([...writes, read('k', 'b', [5, 15], 3)]);
  assertLinearizable([...writes, read('k', null, [5, 15], 3)]);
  // After both completed, the key cannot be absent.
  assertViolation([...writes, read('k', null, [11, 15], 3)], 'k', 2);
  // Two reads after both writes must agree on the winner.
  assertLinearizable([...writes, read('k', 'b', [11, 12], 3), read('k', 'b', [13, 14], 4)]);
  assertViolation([...writes, read('k', 'b', [11, 12], 3), read('k', 'a', [13, 14], 4)], 'k', 3);
});

test('a stale read (it starts after a newer write completed, and returns the older value) is not linearizable', () => {
  const verdict = assertViolation([write('k', 'a', [0, 1]), write('k', 'b', [2, 3]), read('k', 'a', [4, 5], 1)], 'k', 2);
  assert.deepEqual(verdict.explanation.valuesRefused, ['b']);
  assert.deepEqual(verdict.explanation.writers.map((writer) => writer.index), [0]);
  assert.deepEqual(verdict.explanation.prefix.map((step) => [step.index, step.valueAfter]), [[0, 'a'], [1, 'b']]);
  assert.equal(verdict.explanation.valueAfterPrefix, 'b');
});

test('a lost write (acknowledged, then a later read sees the value before it) is not linearizable', () => {
  assertViolation([write('k', 'a', [0, 1]), read('k', null, [2, 3], 1)], 'k', 1);
  assertViolation([write('k', 'a', [0, 1]), write('k', 'b', [2, 3], 1), read('k', 'a', [4, 5], 2)], 'k', 2);
});

test('a read of a value never written is not linearizable', () => {
  const verdict = assertViolation([write('k', 'a', [0, 1]), read('k', 'z', [2, 3])], 'k', 1);
  assert.deepEqual(verdict.explanation.valuesRefused, ['a']);
  assertViolation([read('k', 'z', [0, 1])], 'k', 0);
});

test('CAS success and failure must agree with the value', () => {
  // Two concurrent CASes from the same expected value cannot both succeed.
  const both = assertViolation([cas('k', null, 'a', true, [0, 10], 1), cas('k', null, 'b', true, [0, 10], 2)], 'k', 1);
  assert.deepEqual(both.explanation.prefix.map((step) => step.index), [0]);
  // One succeeds and the other fails: linearizable, in either role.
  assertLinearizable([cas('k', null, 'a', true, [0, 10], 1), cas('k', null, 'b', false, [0, 10], 2), read('k', 'a', [11, 12])]);
  assertLinearizable([cas('k', null, 'a', false, [0, 10], 1), cas('k', null, 'b', true, [0, 10], 2), read('k', 'b', [11, 12])]);
  // A CAS that failed while the value was what it expected, with nothing concurrent.
  assertViolation([write('k', 'a', [0, 1]), cas('k', 'a', 'b', false, [2, 3])], 'k', 1);
  // A CAS that succeeded while the value was something else.
  assertViolation([write('k', 'a', [0, 1]), cas('k', null, 'b', true, [2, 3])], 'k', 1);
  // A successful CAS sets its value.
  assertViolation([cas('k', null, 'a', true, [0, 1]), read('k', null, [2, 3])], 'k', 1);
});

test('delete: a later read sees absent, and an observed deleted count must match', () => {
  assertLinearizable([write('k', 'a', [0, 1]), del('k', [2, 3]), read('k', null, [4, 5])]);
  assertLinearizable([write('k', 'a', [0, 1]), del('k', [2, 3], 1), del('k', [4, 5], 0), read('k', null, [6, 7])]);
  assertViolation([write('k', 'a', [0, 1]), del('k', [2, 3]), read('k', 'a', [4, 5])], 'k', 2);
  assertViolation([del('k', [0, 1], 1)], 'k', 0);
  assertViolation([write('k', 'a', [0, 1]), del('k', [2, 3], 0)], 'k', 1);
  // Concurrent with the write, a delete may report either count.
  assertLinearizable([write('k', 'a', [0, 10]), del('k', [5, 15], 1)]);
  assertLinearizable([write('k', 'a', [0, 10]), del('k', [5, 15], 0), read('k', 'a', [16, 17])]);
});

test('unknown writes: seen by later reads, or never seen, are both linearizable', () => {
  // Seen, long after the client gave up.
  assertLinearizable([unknown(write('k', 'a', [0, 1])), read('k', null, [50, 51]), read('k', 'a', [100, 101])]);
  // Never seen.
  assertLinearizable([unknown(write('k', 'a', [0, 1])), read('k', null, [50, 51]), read('k', null, [100, 101])]);
  // Seen, then not seen again: it took effect once; it cannot be undone without another write.
  assertViolation([unknown(write('k', 'a', [0, 1])), read('k', 'a', [50, 51]), read('k', null, [100, 101])], 'k', 2);
  // Seen before it was invoked.
  assertViolation([read('k', 'a', [0, 1]), unknown(write('k', 'a', [5, 6]))], 'k', 0);
  // An unknown read is dropped, whatever it claims.
  assertLinearizable([write('k', 'a', [0, 1]), unknown(read('k', 'zzz', [2, 3]))]);
});

test('an unknown CAS acts as a CAS whose result nobody saw', () => {
  assertLinearizable([unknown(cas('k', null, 'a', true, [0, 1])), read('k', 'a', [5, 6])]);
  assertLinearizable([unknown(cas('k', null, 'a', true, [0, 1])), read('k', null, [5, 6])]);
  // By the time it could run, the key held b, so it could not have set a.
  assertViolation([write('k', 'b', [0, 1]), unknown(cas('k', null, 'a', true, [2, 3])), read('k', 'a', [5, 6])], 'k', 2);
  // An unknown delete may empty the key at any time after its invocation.
  assertLinearizable([write('k', 'a', [0, 1]), unknown(del('k', [2, 3])), read('k', 'a', [4, 5]), read('k', null, [6, 7])]);
});

test('a failed write did not take effect: reading its value is a violation', () => {
  const verdict = assertViolation([failed(write('k', 'a', [0, 1])), read('k', 'a', [2, 3])], 'k', 1);
  assert.match(verdict.explanation.summary, /#0/);
  // The failed write is listed among the operations concurrent with the read only if it overlaps.
  assert.deepEqual(verdict.explanation.concurrent, []);
  const overlapping = assertViolation([failed(write('k', 'a', [0, 5])), read('k', 'a', [2, 3])], 'k', 1);
  assert.deepEqual(overlapping.explanation.concurrent.map((other) => other.index), [0]);
});

test('keys are independent: each key is checked alone, and the violation names its key', () => {
  // Across keys these operations are interleaved; per key each is sequential and fine, except y.
  const history = [
    write('x', 'a', [0, 1]),
    write('y', 'a', [0, 1]),
    read('x', 'a', [2, 3]),
    write('y', 'b', [2, 3]),
    read('x', 'a', [4, 5]),
    read('y', 'a', [4, 5]),
  ];
  assertViolation(history, 'y', 5);
  assertLinearizable(history.slice(0, 5));
  // The same value on two keys does not leak from one to the other.
  assertViolation([write('x', 'a', [0, 1]), read('y', 'a', [2, 3])], 'y', 1);
});

test('equal timestamps: operations that touch at an instant are concurrent', () => {
  // The write's response and the read's invocation share time 5: the read may precede it.
  assertLinearizable([write('k', 'a', [0, 5]), read('k', null, [5, 6])]);
  // One tick later the write has certainly happened.
  assertViolation([write('k', 'a', [0, 5]), read('k', null, [6, 7])], 'k', 1);
  // Zero-length operations at one instant may go in either order.
  assertLinearizable([write('k', 'a', [3, 3]), read('k', null, [3, 3]), read('k', 'a', [3, 3])]);
});

test('bounds: an exhausted budget is unknown, naming the bound and the key', () => {
  const history = generateLinearizableHistory({
    seed: 3, operations: 300, keys: 1, clients: 8, values: 3, latencyMax: 20, unknownPercent: 5, failPercent: 5,
  });
  assert.equal(check(history).result, 'linearizable');

  const steps = check(history, { stepsMax: 10 });
  assert.equal(steps.result, 'unknown');
  assert.equal(steps.limit, 'stepsMax');
  assert.equal(steps.key, 'k0');

  const operations = check(history, { operationsPerKeyMax: 10 });
  assert.equal(operations.result, 'unknown');
  assert.equal(operations.limit, 'operationsPerKeyMax');

  const memo = check(history, { memoBytesMax: 1 });
  assert.equal(memo.result, 'unknown');
  assert.equal(memo.limit, 'memoBytesMax');

  // A clock that jumps a second at every reading: the deadline passes at the first look.
  let clockMs = 0;
  const time = check(history, { timeMsMax: 500, nowMs: () => (clockMs += 1_000) });
  assert.equal(time.result, 'unknown');
  assert.equal(time.limit, 'timeMsMax');
});

test('bounds: a violation on a small key is still found when a large key is over a bound', () => {
  const large = generateLinearizableHistory({
    seed: 4, operations: 200, keys: 1, clients: 4, values: 3, latencyMax: 10, unknownPercent: 0, failPercent: 0,
  });
  const history = [...large, write('small', 'a', [0, 1]), read('small', null, [2, 3])];
  const verdict = check(history, { operationsPerKeyMax: 50 });
  assert.equal(verdict.result, 'not-linearizable');
  assert.equal(verdict.key, 'small');
  // Without the violation, the large key's bound makes the verdict unknown, never linearizable.
  const unknownVerdict = check([...large, write('small', 'a', [0, 1])], { operationsPerKeyMax: 50 });
  assert.equal(unknownVerdict.result, 'unknown');
  assert.equal(unknownVerdict.limit, 'operationsPerKeyMax');
  assert.equal(unknownVerdict.key, 'k0');
});

test('a check is deterministic: the same history and budget give the same verdict and steps', () => {
  const history = generateLinearizableHistory({
    seed: 9, operations: 400, keys: 4, clients: 6, values: 4, latencyMax: 15, unknownPercent: 5, failPercent: 5,
  });
  const first = check(history);
  assert.equal(first.result, 'linearizable');
  assert.deepEqual(check(history), first);
  const bounded = check(history, { stepsMax: first.steps - 1 });
  assert.equal(bounded.result, 'unknown');
  assert.deepEqual(check(history, { stepsMax: first.steps - 1 }), bounded);
});

test('a malformed history is a programmer error, not a verdict', () => {
  assert.throws(() => check([write('k', 'a', [5, 4])]), AssertionFailure);
  assert.throws(() => check([write('k', 'a', [Number.NaN, 4])]), AssertionFailure);
  const wrongShape = { kind: 'cas', key: 'k', expected: null, value: 'a', client: 0, invokeTime: 0, outcome: { status: 'ok', responseTime: 1 } };
  assert.throws(() => check([wrongShape as unknown as Operation]), AssertionFailure);
  assert.throws(() => check([], { stepsMax: -1 }), AssertionFailure);
});

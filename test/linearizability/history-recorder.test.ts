// HistoryRecorder: what it records for each outcome, and the assertions that keep a
// harness honest (settled once, from this recorder, with a clock that never goes back).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AssertionFailure } from '../../src/util/index.ts';
import { checkLinearizability } from './checker.ts';
import { HistoryRecorder } from './history-recorder.ts';
import type { PendingOperation } from './history-recorder.ts';
import type { OperationInput } from './history.ts';

// A clock the test moves by hand.
function manualClock(): { clock: () => number; set: (time: number) => void } {
  let time = 0;
  return { clock: () => time, set: (next) => { time = next; } };
}

test('records each outcome with its times, in invocation order', () => {
  const { clock, set } = manualClock();
  const recorder = new HistoryRecorder(clock);
  set(1);
  const put = recorder.invoke(1, { kind: 'write', key: 'k', value: 'a' });
  set(2);
  const get = recorder.invoke(2, { kind: 'read', key: 'k' });
  const swap = recorder.invoke(3, { kind: 'cas', key: 'k', expected: 'a', value: 'b' });
  const remove = recorder.invoke('chaos-4', { kind: 'delete', key: 'k' });
  const lost = recorder.invoke(5, { kind: 'write', key: 'k', value: 'z' });
  const never = recorder.invoke(6, { kind: 'write', key: 'k', value: 'y' });
  set(3);
  recorder.ok(put);
  recorder.ok(get, { value: 'a' });
  set(4);
  recorder.ok(swap, { succeeded: true });
  recorder.ok(remove, { deleted: 1 });
  recorder.fail(lost);
  set(9);
  recorder.unknown(never);
  const stray = recorder.invoke(7, { kind: 'read', key: 'k' });
  assert.equal(stray.id, 6);
  assert.equal(recorder.size, 7);
  assert.equal(recorder.pendingCount, 1);

  assert.deepEqual(recorder.history(), [
    { kind: 'write', key: 'k', value: 'a', client: 1, invokeTime: 1, outcome: { status: 'ok', responseTime: 3 } },
    { kind: 'read', key: 'k', client: 2, invokeTime: 2, outcome: { status: 'ok', responseTime: 3, value: 'a' } },
    { kind: 'cas', key: 'k', expected: 'a', value: 'b', client: 3, invokeTime: 2, outcome: { status: 'ok', responseTime: 4, succeeded: true } },
    { kind: 'delete', key: 'k', client: 'chaos-4', invokeTime: 2, outcome: { status: 'ok', responseTime: 4, deleted: 1 } },
    { kind: 'write', key: 'k', value: 'z', client: 5, invokeTime: 2, outcome: { status: 'fail', responseTime: 4 } },
    { kind: 'write', key: 'k', value: 'y', client: 6, invokeTime: 2, outcome: { status: 'unknown', giveUpTime: 9 } },
    // Never settled: unknown, with no time at which the client gave up.
    { kind: 'read', key: 'k', client: 7, invokeTime: 9, outcome: { status: 'unknown' } },
  ]);
  assert.equal(checkLinearizability(recorder.history()).result, 'linearizable');
});

test('a delete may be settled without a count; only the fields of its kind are kept', () => {
  const recorder = new HistoryRecorder(() => 0);
  const remove = recorder.invoke(1, { kind: 'delete', key: 'k' });
  recorder.ok(remove);
  const get = recorder.invoke(1, { kind: 'read', key: 'k' });
  // A caller passing a richer response object: only the value is recorded.
  recorder.ok(get, { value: null, revision: 7 } as { value: null });
  assert.deepEqual(recorder.history().map((operation) => operation.outcome), [
    { status: 'ok', responseTime: 0 },
    { status: 'ok', responseTime: 0, value: null },
  ]);
});

test('the input is copied at invocation: reusing the request object does not rewrite history', () => {
  const recorder = new HistoryRecorder(() => 0);
  const input = { kind: 'write' as const, key: 'k', value: 'a' };
  const op = recorder.invoke(1, input);
  (input as { value: string }).value = 'changed';
  recorder.ok(op);
  const [recorded] = recorder.history();
  assert.equal(recorded?.kind === 'write' && recorded.value, 'a');
});

test('an operation is settled at most once', () => {
  const recorder = new HistoryRecorder(() => 0);
  const op = recorder.invoke(1, { kind: 'write', key: 'k', value: 'a' });
  recorder.ok(op);
  assert.throws(() => recorder.ok(op), AssertionFailure);
  assert.throws(() => recorder.fail(op), AssertionFailure);
  assert.throws(() => recorder.unknown(op), AssertionFailure);
});

test('a handle from another recorder, or a forged one, is refused', () => {
  const first = new HistoryRecorder(() => 0);
  const second = new HistoryRecorder(() => 0);
  const op = first.invoke(1, { kind: 'read', key: 'k' });
  second.invoke(1, { kind: 'read', key: 'k' });
  assert.throws(() => second.ok(op, { value: null }), AssertionFailure);
  const forged: PendingOperation<OperationInput> = { ...op };
  assert.throws(() => first.fail(forged), AssertionFailure);
});

test('the clock must not go backwards, nor return a time that is not finite', () => {
  const { clock, set } = manualClock();
  const recorder = new HistoryRecorder(clock);
  set(5);
  const op = recorder.invoke(1, { kind: 'read', key: 'k' });
  set(4);
  assert.throws(() => recorder.ok(op, { value: null }), AssertionFailure);
  set(Number.NaN);
  assert.throws(() => recorder.invoke(1, { kind: 'read', key: 'k' }), AssertionFailure);
  // Equal readings are fine: events at one instant are concurrent.
  set(5);
  recorder.ok(op, { value: null });
});

test('results of the wrong shape, and more operations than the bound, are refused', () => {
  const recorder = new HistoryRecorder(() => 0, { operationsMax: 3 });
  const get = recorder.invoke(1, { kind: 'read', key: 'k' });
  assert.throws(() => recorder.ok(get, {} as { value: null }), AssertionFailure);
  const swap = recorder.invoke(1, { kind: 'cas', key: 'k', expected: null, value: 'a' });
  assert.throws(() => recorder.ok(swap, { succeeded: 'yes' } as unknown as { succeeded: boolean }), AssertionFailure);
  recorder.invoke(1, { kind: 'write', key: 'k', value: 'a' });
  assert.throws(() => recorder.invoke(1, { kind: 'write', key: 'k', value: 'b' }), AssertionFailure);
});

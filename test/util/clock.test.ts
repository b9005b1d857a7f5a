// SYSTEM_CLOCK and its in-memory twin VirtualClock pass the same conformance suite, and the
// virtual one's own promises: time moves only when run, tasks due together keep their order,
// a run settles promises between tasks, and a runaway scheduler is stopped.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SYSTEM_CLOCK, VirtualClock } from '../../src/util/index.ts';
import { runClockConformance } from './clock-conformance.ts';

runClockConformance('SYSTEM_CLOCK', () => ({
  clock: SYSTEM_CLOCK,
  advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
}));

runClockConformance('VirtualClock', () => {
  const clock = new VirtualClock(1_000);
  return { clock, advance: async (ms) => void (await clock.run({ untilMs: clock.now() + ms })) };
});

test('VirtualClock: time stands still until run, then jumps to each task', async () => {
  const clock = new VirtualClock();
  const seen: number[] = [];
  clock.setTimeout(() => seen.push(clock.now()), 250);
  clock.setTimeout(() => seen.push(clock.now()), 100);
  assert.equal(clock.now(), 0);
  assert.equal(clock.nextDueMs(), 100);
  assert.equal(clock.runNext(), true);
  assert.deepEqual(seen, [100]);
  assert.equal(await clock.run({ untilMs: 1_000 }), 1);
  assert.deepEqual(seen, [100, 250]);
  assert.equal(clock.now(), 1_000);
  assert.equal(clock.runNext(), false);
});

test('VirtualClock: promises a task starts settle before the next task runs', async () => {
  const clock = new VirtualClock();
  const order: string[] = [];
  clock.setTimeout(() => {
    void Promise.resolve().then(() => order.push('promise of the first task'));
  }, 10);
  clock.setTimeout(() => order.push('second task'), 10);
  await clock.run({ untilMs: 20 });
  assert.deepEqual(order, ['promise of the first task', 'second task']);
});

test('VirtualClock: a task that reschedules itself forever is stopped at tasksMax', async () => {
  const clock = new VirtualClock();
  const again = (): void => clock.setImmediate(again);
  again();
  await assert.rejects(clock.run({ untilMs: 10, tasksMax: 100, settle: async () => {} }), /reschedules itself forever/);
});

test('VirtualClock: two runs of the same schedule give the same order (determinism)', async () => {
  const trace = async (): Promise<string[]> => {
    const clock = new VirtualClock();
    const order: string[] = [];
    for (let index = 0; index < 50; index += 1) clock.setTimeout(() => order.push(`t${index}@${clock.now()}`), (index * 7) % 13);
    const interval = clock.setInterval(() => order.push(`i@${clock.now()}`), 4);
    await clock.run({ untilMs: 12 });
    clock.clearInterval(interval);
    return order;
  };
  assert.deepEqual(await trace(), await trace());
});

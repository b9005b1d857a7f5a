// The conformance suite every Clock passes: SYSTEM_CLOCK with real time, VirtualClock with
// time that moves only through advance(). What the driver relies on: timers run in due order
// (equal delays in the order they were set), cleared timers never run, intervals repeat until
// cleared, setImmediate runs soon and before later timers, and now() never goes back and has
// moved by at least a timer's delay when it runs.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { Clock } from '../../src/util/index.ts';

/** ClockUnderTest is a clock and a way to let `ms` of its time pass (and its due work run). */
export interface ClockUnderTest {
  readonly clock: Clock;
  advance(ms: number): Promise<void>;
}

/** runClockConformance registers the suite's tests for one Clock implementation. */
export function runClockConformance(name: string, make: () => ClockUnderTest): void {
  test(`${name}: timeouts run in due order, equal delays in the order they were set`, async () => {
    const { clock, advance } = make();
    const order: string[] = [];
    clock.setTimeout(() => order.push('c30'), 30);
    clock.setTimeout(() => order.push('a10'), 10);
    clock.setTimeout(() => order.push('b10'), 10);
    clock.setTimeout(() => order.push('zero'), 0);
    await advance(80);
    assert.deepEqual(order, ['zero', 'a10', 'b10', 'c30']);
  });

  test(`${name}: a cleared timeout or interval never runs; clearing twice is harmless`, async () => {
    const { clock, advance } = make();
    let ran = 0;
    const timeout = clock.setTimeout(() => (ran += 1), 5);
    const interval = clock.setInterval(() => (ran += 100), 5);
    clock.clearTimeout(timeout);
    clock.clearInterval(interval);
    clock.clearTimeout(timeout);
    await advance(40);
    assert.equal(ran, 0);
  });

  test(`${name}: an interval repeats until cleared`, async () => {
    const { clock, advance } = make();
    let ticks = 0;
    const interval = clock.setInterval(() => (ticks += 1), 10);
    await advance(55);
    clock.clearInterval(interval);
    const atClear = ticks;
    await advance(40);
    // A loaded machine may run fewer ticks than the elapsed time allows, never more.
    assert.ok(atClear >= 1 && atClear <= 5, `ticked ${atClear} times in 55 ms of 10 ms intervals`);
    assert.equal(ticks, atClear, 'no tick after clearInterval');
  });

  test(`${name}: setImmediate runs after the current code and before a later timer`, async () => {
    const { clock, advance } = make();
    const order: string[] = [];
    clock.setTimeout(() => order.push('timer'), 20);
    clock.setImmediate(() => order.push('immediate'));
    order.push('sync');
    await advance(50);
    assert.deepEqual(order, ['sync', 'immediate', 'timer']);
  });

  test(`${name}: now() never goes back and has moved by the delay when a timer runs`, async () => {
    const { clock, advance } = make();
    const start = clock.now();
    let seenAt: number | undefined;
    clock.setTimeout(() => (seenAt = clock.now()), 15);
    await advance(40);
    assert.ok(seenAt !== undefined);
    // libuv starts a timer from its loop's cached millisecond time, which may lag the clock's
    // reading by up to a millisecond: a 15 ms timer may run 14.x ms after now() (seen: 14.41).
    assert.ok(seenAt - start >= 14, `a 15 ms timer ran after ${seenAt - start} ms`);
    assert.ok(clock.now() >= seenAt);
  });
}

// VirtualClock: the in-memory twin of SYSTEM_CLOCK (clock.ts). Time stands still until the
// owner runs tasks: runNext() advances the time to the earliest timer and runs it; run()
// does that up to a time, letting promises settle between tasks. Tasks due at the same time
// run in the order they were scheduled, so a run is a pure function of what was scheduled:
// with a seeded simulator on top, a seed replays exactly.
//
// Invariant: every task in the queue is due at or after `time` (time only moves to the next
// task's due time or to the end of a run(), never past a task that is still queued).

import { assert } from './assert.ts';
import type { Clock, TimerId } from './clock.ts';

// A scheduled callback; an interval task is put back after each run.
interface Task {
  readonly id: number;
  dueMs: number;
  // Assigned by push(): the order among tasks due at the same time.
  sequence: number;
  readonly callback: () => void;
  readonly intervalMs: number | undefined;
  cancelled: boolean;
}

/** VIRTUAL_TASKS_MAX bounds the tasks a VirtualClock holds at once (a runaway scheduler is a bug). */
export const VIRTUAL_TASKS_MAX = 1_000_000;

/** VirtualRunOptions bound one run(). */
export interface VirtualRunOptions {
  /** Run every task due at or before this time, then leave the clock there. */
  readonly untilMs: number;
  /** Awaited after each task so that the promises it started can settle (default: one macrotask turn). */
  readonly settle?: () => Promise<void>;
  /** At most this many tasks (default 10,000,000); reaching it is an error: something reschedules forever. */
  readonly tasksMax?: number;
}

/** settleMacrotask resolves after the real event loop's current turn: promises started before it have settled. */
export function settleMacrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** settleMacrotasks waits `count` turns of the real event loop (work that takes a few turns of its own, such as memory-level's, settles). */
export async function settleMacrotasks(count: number): Promise<void> {
  for (let turn = 0; turn < count; turn += 1) await settleMacrotask();
}

/** VirtualClock is a Clock whose time moves only when runNext() or run() is called. */
export class VirtualClock implements Clock {
  private time: number;
  private sequence = 0; // the next task's place among equals
  private nextId = 1;
  // A binary min-heap on (dueMs, sequence).
  private readonly heap: Task[] = [];
  private readonly byId = new Map<number, Task>();

  constructor(startMs = 0) {
    assert(Number.isFinite(startMs), 'VirtualClock: the start time must be finite');
    this.time = startMs;
  }

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, delayMs: number): TimerId {
    return this.schedule(callback, Math.max(0, delayMs), undefined);
  }

  clearTimeout(timer: TimerId): void {
    this.cancel(timer);
  }

  setInterval(callback: () => void, intervalMs: number): TimerId {
    assert(intervalMs > 0, 'VirtualClock: an interval must be positive');
    return this.schedule(callback, intervalMs, intervalMs);
  }

  clearInterval(timer: TimerId): void {
    this.cancel(timer);
  }

  setImmediate(callback: () => void): void {
    this.schedule(callback, 0, undefined);
  }

  /** pendingTasks counts the tasks not yet run (an interval counts once). */
  get pendingTasks(): number {
    return this.byId.size;
  }

  /** nextDueMs is when the earliest task is due, or undefined when none is queued. */
  nextDueMs(): number | undefined {
    this.dropCancelledTop();
    return this.heap[0]?.dueMs;
  }

  /** runNext advances the time to the earliest task and runs it; false when none is queued. */
  runNext(): boolean {
    this.dropCancelledTop();
    const task = this.pop();
    if (task === undefined) return false;
    assert(task.dueMs >= this.time, 'VirtualClock: a queued task is never due in the past');
    this.time = task.dueMs;
    if (task.intervalMs !== undefined) {
      task.dueMs += task.intervalMs;
      this.push(task);
    } else {
      this.byId.delete(task.id);
    }
    task.callback();
    return true;
  }

  /** run runs every task due up to `untilMs`, settling promises after each, then sets the time to `untilMs`. */
  async run(options: VirtualRunOptions): Promise<number> {
    assert(options.untilMs >= this.time, 'VirtualClock: run() cannot go back in time');
    const settle = options.settle ?? settleMacrotask;
    const tasksMax = options.tasksMax ?? 10_000_000;
    let ran = 0;
    for (;;) {
      const due = this.nextDueMs();
      if (due === undefined || due > options.untilMs) break;
      assert(ran < tasksMax, `VirtualClock: more than ${tasksMax} tasks before ${options.untilMs} ms: something reschedules itself forever`);
      this.runNext();
      ran += 1;
      await settle();
    }
    this.time = options.untilMs;
    return ran;
  }

  private schedule(callback: () => void, delayMs: number, intervalMs: number | undefined): TimerId {
    assert(Number.isFinite(delayMs), 'VirtualClock: a delay must be finite');
    assert(this.byId.size < VIRTUAL_TASKS_MAX, `VirtualClock: more than ${VIRTUAL_TASKS_MAX} tasks queued`);
    const task: Task = { id: this.nextId, dueMs: this.time + delayMs, sequence: 0, callback, intervalMs, cancelled: false };
    this.nextId += 1;
    this.byId.set(task.id, task);
    this.push(task);
    return { virtualTimer: task.id };
  }

  private cancel(timer: TimerId): void {
    const id = (timer as { virtualTimer?: unknown }).virtualTimer;
    if (typeof id !== 'number') return;
    const task = this.byId.get(id);
    if (task === undefined) return;
    task.cancelled = true;
    this.byId.delete(id);
  }

  private dropCancelledTop(): void {
    while (this.heap[0]?.cancelled === true) this.pop();
  }

  private static before(a: Task, b: Task): boolean {
    return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.sequence < b.sequence);
  }

  private push(task: Task): void {
    // An interval task goes back with a new due time; it keeps its place among equals by
    // taking a new sequence number, as a freshly scheduled timer would.
    task.sequence = this.sequence;
    this.sequence += 1;
    const heap = this.heap;
    heap.push(task);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      const parentTask = heap[parent] as Task;
      if (!VirtualClock.before(task, parentTask)) break;
      heap[index] = parentTask;
      index = parent;
    }
    heap[index] = task;
  }

  private pop(): Task | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let index = 0;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && VirtualClock.before(heap[right] as Task, heap[left] as Task) ? right : left;
      const childTask = heap[child] as Task;
      if (!VirtualClock.before(childTask, last)) break;
      heap[index] = childTask;
      index = child;
    }
    heap[index] = last;
    return top;
  }
}

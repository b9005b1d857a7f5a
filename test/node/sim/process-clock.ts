// ProcessClock: one simulated member's view of the shared VirtualClock. A crash kills the
// process: every timer it set is cancelled and whatever it schedules afterwards never runs,
// as with a process that is gone (its promises simply never settle). A restarted member gets
// a new ProcessClock on the same VirtualClock.

import type { Clock, TimerId } from '../../../src/util/index.ts';
import type { VirtualClock } from '../../../src/util/index.ts';

/** ProcessClock is a Clock whose timers all die with kill(). */
export class ProcessClock implements Clock {
  private readonly clock: VirtualClock;
  private readonly timers = new Set<TimerId>();
  private alive = true;

  constructor(clock: VirtualClock) {
    this.clock = clock;
  }

  /** isAlive tells whether kill() has not been called. */
  get isAlive(): boolean {
    return this.alive;
  }

  now(): number {
    return this.clock.now();
  }

  setTimeout(callback: () => void, delayMs: number): TimerId {
    const timer = this.clock.setTimeout(() => {
      this.timers.delete(timer);
      if (this.alive) callback();
    }, delayMs);
    if (this.alive) this.timers.add(timer);
    else this.clock.clearTimeout(timer);
    return timer;
  }

  clearTimeout(timer: TimerId): void {
    this.timers.delete(timer);
    this.clock.clearTimeout(timer);
  }

  setInterval(callback: () => void, intervalMs: number): TimerId {
    const timer = this.clock.setInterval(() => {
      if (this.alive) callback();
    }, intervalMs);
    if (this.alive) this.timers.add(timer);
    else this.clock.clearInterval(timer);
    return timer;
  }

  clearInterval(timer: TimerId): void {
    this.timers.delete(timer);
    this.clock.clearInterval(timer);
  }

  setImmediate(callback: () => void): void {
    if (!this.alive) return;
    this.clock.setImmediate(() => {
      if (this.alive) callback();
    });
  }

  /** kill cancels every timer of this process; nothing it schedules later runs. */
  kill(): void {
    this.alive = false;
    for (const timer of this.timers) this.clock.clearTimeout(timer);
    this.timers.clear();
  }
}

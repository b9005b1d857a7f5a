// Clock: the only source of time and of deferred work for the driver (src/node) and the
// in-memory transport (src/transport). RaftNode and its parts never call Date, performance,
// setTimeout, setInterval or setImmediate themselves; they ask the Clock they were given.
// SYSTEM_CLOCK is the real one (the default); VirtualClock (virtual-clock.ts) is its
// in-memory twin, under which a seeded simulation runs real RaftNodes with time that moves
// only when the simulator says so. Both pass one conformance suite
// (test/util/clock-conformance.ts). It lives in src/util so that every layer may take one.

/** TimerId identifies a timer a Clock started; it is only ever handed back to that Clock. */
export type TimerId = object;

/** Clock tells the time in milliseconds (monotonic, arbitrary origin) and runs work later. */
export interface Clock {
  /** now is the time in milliseconds; it never goes back. */
  now(): number;
  /** setTimeout runs `callback` once, `delayMs` (>= 0) from now. */
  setTimeout(callback: () => void, delayMs: number): TimerId;
  /** clearTimeout cancels a timer from setTimeout; a timer that ran or was cleared is ignored. */
  clearTimeout(timer: TimerId): void;
  /** setInterval runs `callback` every `intervalMs` (> 0) until cleared. */
  setInterval(callback: () => void, intervalMs: number): TimerId;
  /** clearInterval cancels a timer from setInterval. */
  clearInterval(timer: TimerId): void;
  /**
   * setImmediate runs `callback` after the work already due: after the current I/O phase on
   * the real clock, after every task due now on the virtual one. It cannot be cancelled.
   */
  setImmediate(callback: () => void): void;
}

/** SYSTEM_CLOCK is the real clock: performance.now() and Node's timers. */
export const SYSTEM_CLOCK: Clock = Object.freeze({
  now: () => performance.now(),
  setTimeout: (callback: () => void, delayMs: number): TimerId => setTimeout(callback, delayMs),
  clearTimeout: (timer: TimerId) => clearTimeout(timer as ReturnType<typeof setTimeout>),
  setInterval: (callback: () => void, intervalMs: number): TimerId => setInterval(callback, intervalMs),
  clearInterval: (timer: TimerId) => clearInterval(timer as ReturnType<typeof setInterval>),
  setImmediate: (callback: () => void) => {
    setImmediate(callback);
  },
});

/** sleep resolves after `delayMs` on `clock`. */
export function sleep(clock: Clock, delayMs: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, delayMs));
}

/** pauseOrAbort resolves after `delayMs` (real time), or as soon as `signal` aborts; never rejects. */
export function pauseOrAbort(delayMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, delayMs);
    signal.addEventListener('abort', done, { once: true });
  });
}

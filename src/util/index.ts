// The public surface of src/util: assertions, the error catalogue, seeded randomness, clocks. It imports
// nothing (ARCHITECTURE.md, Layers): CRC32c lives in src/native, beside the addon that computes it.
export { assert, assertNever, AssertionFailure } from './assert.ts';
export { ErrorCode, StrataError, isErrorCode, isStrataError } from './errors.ts';
export { SeededRandom, type RandomSource } from './random.ts';
export { SYSTEM_CLOCK, sleep } from './clock.ts';
export type { Clock, TimerId } from './clock.ts';
export { VirtualClock, settleMacrotask, settleMacrotasks, VIRTUAL_TASKS_MAX } from './virtual-clock.ts';
export type { VirtualRunOptions } from './virtual-clock.ts';

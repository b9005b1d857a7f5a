// The public surface of src/util: assertions, the error catalogue, seeded randomness.
export { assert, assertNever, AssertionFailure } from './assert.ts';
export { ErrorCode, StrataError, isStrataError } from './errors.ts';
export { SeededRandom, type RandomSource } from './random.ts';

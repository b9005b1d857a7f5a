// The public surface of src/util: assertions, the error catalogue, seeded randomness. It imports
// nothing (ARCHITECTURE.md, Layers): CRC32c lives in src/native, beside the addon that computes it.
export { assert, assertNever, AssertionFailure } from './assert.ts';
export { ErrorCode, StrataError, isErrorCode, isStrataError } from './errors.ts';
export { SeededRandom, type RandomSource } from './random.ts';

// The public surface of src/util: assertions, the error catalogue, seeded randomness.
export { assert, assertNever, AssertionFailure } from './assert.ts';
export { ErrorCode, StrataError, isErrorCode, isStrataError } from './errors.ts';
export { SeededRandom, type RandomSource } from './random.ts';
export { crc32c, maskCrc32c, unmaskCrc32c } from './crc32c.ts';

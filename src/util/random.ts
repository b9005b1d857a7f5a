// A seeded pseudo-random source. The Raft core takes one in its config so that a seed
// reproduces a simulation exactly; it must never reach for Math.random.

import { assert } from './assert.ts';

/** RandomSource yields deterministic pseudo-random integers. */
export interface RandomSource {
  /** intBelow returns an integer in [0, bound). */
  intBelow(bound: number): number;
}

/**
 * SeededRandom is xoshiro128** seeded through splitmix32: fast, 32-bit state words, and a
 * period far longer than any simulation runs.
 */
export class SeededRandom implements RandomSource {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    assert(Number.isInteger(seed), 'seed must be an integer');
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    assert((this.s0 | this.s1 | this.s2 | this.s3) !== 0, 'xoshiro state must not be all zero');
  }

  /** nextUint32 returns the next 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  intBelow(bound: number): number {
    assert(Number.isInteger(bound) && bound > 0 && bound <= 0x1_0000_0000, 'bound must be in [1, 2^32]');
    // Multiply-shift maps a 32-bit draw onto [0, bound) with negligible bias for our bounds.
    return Math.floor((this.nextUint32() / 0x1_0000_0000) * bound);
  }

  /** chance returns true with probability numerator/denominator. */
  chance(numerator: number, denominator: number): boolean {
    return this.intBelow(denominator) < numerator;
  }

  /** pick returns one element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    assert(items.length > 0, 'pick from an empty array');
    return items[this.intBelow(items.length)] as T;
  }
}

function rotl(value: number, shift: number): number {
  return ((value << shift) | (value >>> (32 - shift))) >>> 0;
}

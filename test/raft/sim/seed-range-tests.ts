// Declares node:test cases that run a range of simulator seeds in chunks, so each chunk
// reports its seed range and a failure names its seed and the command that replays it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatFailure, formatSummary, runSeedRange } from './seed-range.ts';

/** SEEDS_PER_TEST is how many seeds one test case runs (one line of test output). */
export const SEEDS_PER_TEST = 250;
/** SEEDS_PER_TEST_TIMEOUT_MS bounds one test case in time (about 10 s on a laptop core). */
export const SEEDS_PER_TEST_TIMEOUT_MS = 120_000;

/** defineSeedRangeTests declares test cases covering seeds from..from+count-1. */
export function defineSeedRangeTests(from: number, count: number): void {
  for (let start = from; start < from + count; start += SEEDS_PER_TEST) {
    const chunk = Math.min(SEEDS_PER_TEST, from + count - start);
    test(`raft simulation seeds ${start}..${start + chunk - 1}`, { timeout: SEEDS_PER_TEST_TIMEOUT_MS }, (t) => {
      const summary = runSeedRange({ from: start, count: chunk });
      t.diagnostic(formatSummary(summary));
      if (summary.failure !== undefined) assert.fail(formatFailure(summary.failure));
    });
  }
}

// The printed form of operations and verdicts: what a failing seed shows a person. These
// tests pin the text because the text is the product here.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkLinearizability } from './checker.ts';
import { formatHistory, formatOperation, formatVerdict, PREFIX_LINES_MAX } from './format.ts';
import type { Operation } from './history.ts';
import { valueFromBytes } from './history.ts';

const history: Operation[] = [
  { kind: 'write', key: 'k', value: 'a', client: 1, invokeTime: 0, outcome: { status: 'ok', responseTime: 2 } },
  { kind: 'write', key: 'k', value: 'b', client: 2, invokeTime: 3, outcome: { status: 'ok', responseTime: 4 } },
  { kind: 'read', key: 'k', client: 3, invokeTime: 5, outcome: { status: 'ok', responseTime: 6, value: 'a' } },
  { kind: 'cas', key: 'k', expected: null, value: 'c', client: 4, invokeTime: 1, outcome: { status: 'unknown', giveUpTime: 9 } },
  { kind: 'delete', key: 'other', client: 'x', invokeTime: 1, outcome: { status: 'ok', responseTime: 1, deleted: 0 } },
  { kind: 'write', key: 'k', value: 'z', client: 1, invokeTime: 7, outcome: { status: 'fail', responseTime: 8 } },
];

test('formatOperation: index, client, call, result, interval', () => {
  assert.deepEqual(history.map(formatOperation), [
    '#0 client=1 write("k", "a") ok [0, 2]',
    '#1 client=2 write("k", "b") ok [3, 4]',
    '#2 client=3 read("k") -> "a" [5, 6]',
    '#3 client=4 cas("k", absent -> "c") unknown (gave up at 9) [1, ∞)',
    '#4 client=x delete("other") deleted=0 [1]',
    '#5 client=1 write("k", "z") fail [7, 8]',
  ]);
});

test('formatHistory: invocation order, one key, capped', () => {
  assert.deepEqual(formatHistory(history, { key: 'k', linesMax: 3 }), [
    '#0 client=1 write("k", "a") ok [0, 2]',
    '#3 client=4 cas("k", absent -> "c") unknown (gave up at 9) [1, ∞)',
    '#1 client=2 write("k", "b") ok [3, 4]',
    '... 2 more operations not shown',
  ]);
});

test('formatVerdict: a violation names the operation, the prefix before it, what ran beside it, and who wrote what it saw', () => {
  const verdict = checkLinearizability(history);
  assert.equal(verdict.result, 'not-linearizable');
  assert.deepEqual(formatVerdict(verdict), [
    `not linearizable: key "k" (${verdict.steps} search steps)`,
    '  #2 client=3 read("k") -> "a" [5, 6] has no place in any order: after the longest linearizable prefix found'
      + ' (2 operations, leaving "b"), it was refused where the key held "b"',
    // The unknown CAS is not in the prefix: the search tries unknown operations last.
    '  longest linearizable prefix found: 2 operations',
    '    #0 client=1 write("k", "a") ok [0, 2]   => "a"',
    '    #1 client=2 write("k", "b") ok [3, 4]   => "b"',
    '  value after the prefix: "b"',
    '  could not be placed next:',
    '    #2 client=3 read("k") -> "a" [5, 6]',
    '  values the key held wherever it was tried: "b"',
    '  operations on the key concurrent with it: 1',
    '    #3 client=4 cas("k", absent -> "c") unknown (gave up at 9) [1, ∞)',
    '  operations that wrote the value it saw: 1',
    '    #0 client=1 write("k", "a") ok [0, 2]',
  ]);
});

test('formatVerdict: a long prefix shows only its last steps', () => {
  const writes: Operation[] = Array.from({ length: 50 }, (_, i) => ({
    kind: 'write', key: 'k', value: `v${i}`, client: 1, invokeTime: 2 * i, outcome: { status: 'ok', responseTime: 2 * i + 1 },
  }));
  const stale: Operation = { kind: 'read', key: 'k', client: 2, invokeTime: 100, outcome: { status: 'ok', responseTime: 101, value: 'v0' } };
  const lines = formatVerdict(checkLinearizability([...writes, stale]));
  assert.ok(lines.includes(`  longest linearizable prefix found: 50 operations, the last ${PREFIX_LINES_MAX} shown`));
  assert.equal(lines.filter((line) => line.includes('   => ')).length, PREFIX_LINES_MAX);
  assert.ok(lines.some((line) => line.startsWith('    #49 ')));
});

test('formatVerdict: linearizable and unknown verdicts are one line', () => {
  const fine = history.slice(0, 2);
  const verdict = checkLinearizability(fine);
  assert.deepEqual(formatVerdict(verdict), [`linearizable (${verdict.steps} search steps)`]);
  const bounded = checkLinearizability(fine, { stepsMax: 1 });
  assert.deepEqual(formatVerdict(bounded), [
    'unknown: stepsMax reached while checking key "k" (2 operations): the step budget of 1 is spent (2 search steps)',
  ]);
});

test('valueFromBytes is a bijection that keeps ASCII readable', () => {
  assert.equal(valueFromBytes(new TextEncoder().encode('hello')), 'hello');
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const text = valueFromBytes(all);
  assert.equal(text.length, 256);
  assert.deepEqual([...text].map((character) => character.charCodeAt(0)), [...all]);
  // A view into a larger buffer converts only its own bytes.
  assert.equal(valueFromBytes(all.subarray(65, 68)), 'ABC');
});

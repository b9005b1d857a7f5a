// The checker on seeded random histories. A history observed from a real sequential
// execution must always pass. On small histories the checker is compared, verdict for
// verdict, with a brute-force search written independently here (its own register, no memo,
// no entry list). Larger mutated histories show how often one wrong read is caught. The last
// test is a performance check, not a timed assertion: it prints how long a check took.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SeededRandom } from '../../src/util/index.ts';
import { checkLinearizability } from './checker.ts';
import { formatHistory, formatVerdict } from './format.ts';
import type { History, Operation } from './history.ts';
import { generateLinearizableHistory, mutateOneRead } from './random-history.ts';
import type { RandomHistoryOptions } from './random-history.ts';

// Brute force: try every order of a key's operations that respects real time (an operation
// must follow every one whose response came strictly before its invocation); an operation
// without a response may also be left out, which is the same as placing it last.
function bruteForceLinearizable(history: History): boolean {
  const keys = new Set(history.map((operation) => operation.key));
  for (const key of keys) {
    const operations = history.filter((operation) => operation.key === key
      && operation.outcome.status !== 'fail'
      && !(operation.kind === 'read' && operation.outcome.status === 'unknown'));
    if (!bruteForceKey(operations)) return false;
  }
  return true;
}

function bruteForceKey(operations: readonly Operation[]): boolean {
  const placed = operations.map(() => false);
  const responded = operations.map((operation) => operation.outcome.status === 'ok');
  const responseOf = (operation: Operation): number => (operation.outcome.status === 'ok' ? operation.outcome.responseTime : Infinity);
  const mustFollow = operations.map((operation) => operations.flatMap((other, j) => (responseOf(other) < operation.invokeTime ? [j] : [])));
  const search = (value: string | null, respondedLeft: number): boolean => {
    if (respondedLeft === 0) return true;
    for (let i = 0; i < operations.length; i += 1) {
      const operation = operations[i] as Operation;
      if (placed[i] || !(mustFollow[i] as number[]).every((j) => placed[j])) continue;
      const after = applyToRegister(value, operation);
      if (after === 'refused') continue;
      placed[i] = true;
      const found = search(after, respondedLeft - (responded[i] ? 1 : 0));
      placed[i] = false;
      if (found) return true;
    }
    return false;
  };
  return search(null, responded.filter(Boolean).length);
}

function applyToRegister(value: string | null, operation: Operation): string | null | 'refused' {
  switch (operation.kind) {
    case 'read':
      return operation.outcome.status === 'ok' && operation.outcome.value === value ? value : 'refused';
    case 'write':
      return operation.value;
    case 'cas': {
      const holds = value === operation.expected;
      if (operation.outcome.status === 'ok' && operation.outcome.succeeded !== holds) return 'refused';
      return holds ? operation.value : value;
    }
    case 'delete':
      if (operation.outcome.status === 'ok' && operation.outcome.deleted !== undefined
        && (operation.outcome.deleted === 1) !== (value !== null)) return 'refused';
      return null;
  }
}

const SMALL: Omit<RandomHistoryOptions, 'seed'> = {
  operations: 10, keys: 2, clients: 3, values: 3, latencyMax: 6, unknownPercent: 15, failPercent: 10,
};

function failureReport(history: History, seed: number): string {
  return [`seed ${seed}`, ...formatVerdict(checkLinearizability(history)), ...formatHistory(history)].join('\n');
}

test('generated histories always pass, and the checker agrees with brute force on them and on mutations', () => {
  let mutatedViolations = 0;
  let mutations = 0;
  for (let seed = 1; seed <= 400; seed += 1) {
    const history = generateLinearizableHistory({ seed, ...SMALL });
    assert.equal(checkLinearizability(history).result, 'linearizable', failureReport(history, seed));
    assert.ok(bruteForceLinearizable(history), `brute force disagrees on generated seed ${seed}`);
    const mutated = mutateOneRead(history, new SeededRandom(seed));
    if (mutated === undefined) continue;
    mutations += 1;
    const expected = bruteForceLinearizable(mutated.history);
    const verdict = checkLinearizability(mutated.history);
    assert.equal(verdict.result, expected ? 'linearizable' : 'not-linearizable', failureReport(mutated.history, seed));
    if (!expected) mutatedViolations += 1;
  }
  assert.ok(mutations > 300);
  // Most single wrong reads are caught; some wrong values are still possible orders.
  assert.ok(mutatedViolations > mutations / 2, `${mutatedViolations} of ${mutations}`);
});

test('the checker agrees with brute force on histories with random read results', () => {
  // Reads that see arbitrary values from a small pool: some orders work, most do not.
  for (let seed = 1; seed <= 300; seed += 1) {
    const random = new SeededRandom(seed * 7919);
    const history: Operation[] = generateLinearizableHistory({ seed, ...SMALL, operations: 8 }).map((operation) => {
      if (operation.kind !== 'read' || operation.outcome.status !== 'ok') return operation;
      const value = random.pick([null, 'v0', 'v1', 'v2']);
      return { ...operation, outcome: { ...operation.outcome, value } };
    });
    const verdict = checkLinearizability(history);
    const expected = bruteForceLinearizable(history) ? 'linearizable' : 'not-linearizable';
    assert.equal(verdict.result, expected, failureReport(history, seed));
  }
});

test('the checker agrees with brute force on one busy key with many unknown outcomes', () => {
  // Four clients on one key, two values, a third of the outcomes unknown: the pure-operation
  // reduction and the memo's subsumption of unknown operations both get exercised.
  const busy = { operations: 9, keys: 1, clients: 4, values: 2, latencyMax: 8, unknownPercent: 30, failPercent: 10 };
  let violations = 0;
  for (let seed = 1; seed <= 300; seed += 1) {
    const random = new SeededRandom(seed * 104729);
    const history: Operation[] = generateLinearizableHistory({ seed, ...busy }).map((operation) => {
      if (operation.kind !== 'read' || operation.outcome.status !== 'ok' || !random.chance(1, 3)) return operation;
      return { ...operation, outcome: { ...operation.outcome, value: random.pick([null, 'v0', 'v1']) } };
    });
    const expected = bruteForceLinearizable(history) ? 'linearizable' : 'not-linearizable';
    if (expected === 'not-linearizable') violations += 1;
    assert.equal(checkLinearizability(history).result, expected, failureReport(history, seed));
  }
  // Both answers are common enough for the comparison to mean something.
  assert.ok(violations > 30 && violations < 270, `${violations} of 300`);
});

test('larger generated histories pass; one mutated read is usually caught', (t) => {
  let caught = 0;
  let unknown = 0;
  const seeds = 40;
  for (let seed = 1; seed <= seeds; seed += 1) {
    const options = { seed, operations: 300, keys: 3, clients: 6, values: 0, latencyMax: 20, unknownPercent: 5, failPercent: 5 };
    const history = generateLinearizableHistory(options);
    assert.equal(checkLinearizability(history).result, 'linearizable', failureReport(history, seed));
    const mutated = mutateOneRead(history, new SeededRandom(seed));
    assert.ok(mutated !== undefined);
    const verdict = checkLinearizability(mutated.history, { stepsMax: 1_000_000 });
    if (verdict.result === 'not-linearizable') caught += 1;
    if (verdict.result === 'unknown') unknown += 1;
  }
  t.diagnostic(`one mutated read caught in ${caught} of ${seeds} histories of 300 operations (${unknown} unknown)`);
  assert.equal(unknown, 0);
  assert.ok(caught > seeds / 2, `${caught} of ${seeds}`);
});

test('performance: 2,000 operations over 10 keys with 8 concurrent clients', (t) => {
  const history = generateLinearizableHistory({
    seed: 2026, operations: 2_000, keys: 10, clients: 8, values: 5, latencyMax: 20, unknownPercent: 3, failPercent: 3,
  });
  const startMs = performance.now();
  const verdict = checkLinearizability(history, { stepsMax: 2_000_000 });
  const elapsedMs = performance.now() - startMs;
  t.diagnostic(`checked 2,000 operations over 10 keys, 8 clients, in ${elapsedMs.toFixed(1)} ms, ${verdict.steps} steps`);
  assert.equal(verdict.result, 'linearizable', formatVerdict(verdict).join('\n'));
});

test('performance: 2,000 operations on one key with 16 concurrent clients', (t) => {
  // The hard shape for this search: every operation on one key, 16 in flight at a time.
  const history = generateLinearizableHistory({
    seed: 2026, operations: 2_000, keys: 1, clients: 16, values: 5, latencyMax: 20, unknownPercent: 3, failPercent: 3,
  });
  const startMs = performance.now();
  const verdict = checkLinearizability(history, { stepsMax: 5_000_000 });
  const elapsedMs = performance.now() - startMs;
  t.diagnostic(`checked 2,000 operations on one key, 16 clients, in ${elapsedMs.toFixed(1)} ms, ${verdict.steps} steps`);
  assert.equal(verdict.result, 'linearizable', formatVerdict(verdict).join('\n'));
});

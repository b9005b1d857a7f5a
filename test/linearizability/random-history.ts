// Seeded histories for the checker's own tests: a real sequential execution of a key-value
// store, observed through random overlapping intervals, is linearizable by construction.
// Each operation gets a linearization point inside its interval; the points are applied in
// order to one register per key, and that execution decides what each operation observed.
// Mutating one read's value then gives a history that is usually not linearizable.

import { assert, SeededRandom } from '../../src/util/index.ts';
import type { ClientId, Operation, OperationKind, Outcome } from './history.ts';

/** RandomHistoryOptions shapes a generated history. */
export interface RandomHistoryOptions {
  readonly seed: number;
  readonly operations: number;
  readonly keys: number;
  readonly clients: number;
  /** values is how many distinct values a key cycles through; 0 gives every write its own. */
  readonly values: number;
  /** latencyMax bounds the time from invocation to linearization point, and from there to response. */
  readonly latencyMax: number;
  /** unknownPercent of operations lose their response (and take effect half of the time). */
  readonly unknownPercent: number;
  /** failPercent of operations are refused and take no effect. */
  readonly failPercent: number;
}

interface Draft {
  readonly client: ClientId;
  readonly kind: OperationKind;
  readonly key: string;
  readonly value: string;
  readonly expected: string | null;
  readonly invokeTime: number;
  readonly responseTime: number;
  readonly giveUpTime: number;
  readonly status: 'ok' | 'fail' | 'unknown';
  // Where the operation takes effect, or undefined if it never does.
  readonly pointTime: number | undefined;
}

// What the execution decided each operation observed.
interface Observed {
  value: string | null;
  succeeded: boolean;
  deleted: 0 | 1;
}

/** generateLinearizableHistory returns a linearizable history drawn from `options.seed`. */
export function generateLinearizableHistory(options: RandomHistoryOptions): Operation[] {
  assert(options.operations >= 0 && options.keys > 0 && options.clients > 0, 'bad generator options');
  const random = new SeededRandom(options.seed);
  const clientFreeTime = Array.from({ length: options.clients }, () => random.intBelow(options.latencyMax + 1));
  const lastValue = new Map<string, string>();
  const drafts: Draft[] = [];
  for (let i = 0; i < options.operations; i += 1) {
    // The client that is free first issues the next operation: each client is sequential.
    let client = 0;
    clientFreeTime.forEach((time, c) => {
      if (time < (clientFreeTime[client] as number)) client = c;
    });
    const invokeTime = clientFreeTime[client] as number;
    const key = `k${random.intBelow(options.keys)}`;
    const roll = random.intBelow(100);
    const kind: OperationKind = roll < 40 ? 'read' : roll < 70 ? 'write' : roll < 85 ? 'cas' : 'delete';
    const value = options.values === 0 ? `v${i}` : `v${random.intBelow(options.values)}`;
    const expectedRoll = random.intBelow(4);
    const expected = expectedRoll === 0 ? null : expectedRoll === 1 ? value : (lastValue.get(key) ?? null);
    if (kind === 'write' || kind === 'cas') lastValue.set(key, value);
    const statusRoll = random.intBelow(100);
    const status = statusRoll < options.unknownPercent ? 'unknown' : statusRoll < options.unknownPercent + options.failPercent ? 'fail' : 'ok';
    const pointTime = invokeTime + random.intBelow(options.latencyMax + 1);
    const responseTime = pointTime + random.intBelow(options.latencyMax + 1);
    const giveUpTime = invokeTime + 2 * options.latencyMax + 1;
    let effectTime: number | undefined = pointTime;
    if (status === 'fail') effectTime = undefined;
    // An unknown operation takes effect half of the time, possibly long after the client gave up.
    if (status === 'unknown') effectTime = random.chance(1, 2) ? invokeTime + random.intBelow(4 * options.latencyMax + 1) : undefined;
    drafts.push({ client, kind, key, value, expected, invokeTime, responseTime, giveUpTime, status, pointTime: effectTime });
    clientFreeTime[client] = (status === 'unknown' ? giveUpTime : responseTime) + 1 + random.intBelow(3);
  }

  // The sequential execution: linearization points in time order (ties in draft order).
  const observed: Observed[] = drafts.map(() => ({ value: null, succeeded: false, deleted: 0 }));
  const order = drafts.map((_, i) => i).filter((i) => drafts[i]?.pointTime !== undefined);
  order.sort((a, b) => (drafts[a]?.pointTime as number) - (drafts[b]?.pointTime as number) || a - b);
  const register = new Map<string, string>();
  for (const i of order) {
    const draft = drafts[i] as Draft;
    const seen = observed[i] as Observed;
    const current = register.get(draft.key) ?? null;
    seen.value = current;
    switch (draft.kind) {
      case 'read':
        break;
      case 'write':
        register.set(draft.key, draft.value);
        break;
      case 'cas':
        seen.succeeded = current === draft.expected;
        if (seen.succeeded) register.set(draft.key, draft.value);
        break;
      case 'delete':
        seen.deleted = current === null ? 0 : 1;
        register.delete(draft.key);
        break;
    }
  }
  return drafts.map((draft, i) => toOperation(draft, observed[i] as Observed));
}

function toOperation(draft: Draft, seen: Observed): Operation {
  const base = { client: draft.client, invokeTime: draft.invokeTime };
  const other: Outcome<never> | undefined = draft.status === 'fail'
    ? { status: 'fail', responseTime: draft.responseTime }
    : draft.status === 'unknown' ? { status: 'unknown', giveUpTime: draft.giveUpTime } : undefined;
  const responseTime = draft.responseTime;
  switch (draft.kind) {
    case 'read':
      return { kind: 'read', key: draft.key, ...base, outcome: other ?? { status: 'ok', responseTime, value: seen.value } };
    case 'write':
      return { kind: 'write', key: draft.key, value: draft.value, ...base, outcome: other ?? { status: 'ok', responseTime } };
    case 'cas':
      return {
        kind: 'cas', key: draft.key, expected: draft.expected, value: draft.value, ...base,
        outcome: other ?? { status: 'ok', responseTime, succeeded: seen.succeeded },
      };
    case 'delete':
      return { kind: 'delete', key: draft.key, ...base, outcome: other ?? { status: 'ok', responseTime, deleted: seen.deleted } };
  }
}

/**
 * mutateOneRead returns a copy of the history with one ok read's value changed to another
 * value (one written to that key, absent, or one never written), and the read's index; or
 * undefined when the history has no ok read.
 */
export function mutateOneRead(history: readonly Operation[], random: SeededRandom): { history: Operation[]; index: number } | undefined {
  const reads = history.flatMap((operation, index) => (operation.kind === 'read' && operation.outcome.status === 'ok' ? [index] : []));
  if (reads.length === 0) return undefined;
  const index = random.pick(reads);
  const read = history[index];
  assert(read !== undefined && read.kind === 'read' && read.outcome.status === 'ok', 'picked a read that is not ok');
  const seen = read.outcome.value;
  const candidates: (string | null)[] = [null, 'never-written'];
  for (const operation of history) {
    if (operation.key === read.key && (operation.kind === 'write' || operation.kind === 'cas')) candidates.push(operation.value);
  }
  const others = [...new Set(candidates)].filter((value) => value !== seen);
  const value = random.pick(others);
  const mutated = [...history];
  mutated[index] = { ...read, outcome: { ...read.outcome, value } };
  return { history: mutated, index };
}

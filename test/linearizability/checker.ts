// The linearizability checker: Wing & Gong's search with Lowe's memoization, as Porcupine
// runs it, over each key's sub-history alone (P-compositionality; see history.ts).
//
// For one key, every operation becomes a call entry at its invocation time and, if it has a
// response, a return entry at its response time; the entries sit in one doubly linked list
// sorted by time. The search walks the list from the front. At a call, it tries to linearize
// that operation next: if the register accepts it and the pair (linearized set, new state)
// has not been entered before (memo-cache.ts), it pushes the operation on a stack, lifts
// both its entries out of the list, and starts again from the front. At a return, the
// operation it belongs to should have been linearized already and was not: this order
// cannot be completed, so the search pops the last operation, puts its entries back, and
// tries the next call after it. The key is linearizable when every operation with a
// response is on the stack; not linearizable when the search pops from an empty stack.
//
// Two additions of ours, neither in Porcupine, both sound (they never lose an order):
// - A pure operation (a read, a CAS seen to fail, a delete seen to remove nothing) never
//   changes the register. If the register accepts one now, every order that places it later
//   can place it now instead: real time allows it (it is a candidate, so everything that
//   returned before its call is already placed), and moving it changes no state. So a node
//   first scans for an accepted pure operation and, if there is one, takes it and tries
//   nothing else there; if its node was entered before, this node fails at once.
// - Unknown operations are tried last at each node (a node scans pure operations, then the
//   other operations with a response, then the unknown ones), and the memo lets a node that
//   linearized fewer of them subsume one that linearized more (memo-cache.ts).
// Without them, a linearizable history of 2,000 operations on one key from 16 clients ran out
// of 5,000,000 steps; with them it takes a few hundred thousand (checker-random.test.ts).
//
// Equal times: a call sorts before a return at the same time, so two operations that touch
// at one instant are concurrent. That is the conservative order: it allows every order the
// other would allow and more, so a clock too coarse to separate two events can hide a
// violation but never report one that did not happen.
//
// Unknown outcomes: an unknown write, CAS or delete has no return entry (its response time is
// +infinity), so it may be linearized anywhere after its call or not at all: placed at the
// end it affects nothing observed, which is the same as never. Those operations are accepted
// in every state (register-model.ts), so the search stops as soon as every operation with a
// response is placed. Fails and unknown reads are dropped.
//
// Bounds: a step is one visit to one entry. The step budget and the wall-clock budget are
// shared by all keys; the memo's size and the operations per key are bounded per key. When a
// bound is reached the verdict is `unknown`, naming it. The verdict depends only on the
// history and the step budget, unless the wall-clock budget ends the check first.

import { assert, SeededRandom } from '../../src/util/index.ts';
import { formatOperation, formatValue } from './format.ts';
import type { History, IndexedOperation, Operation } from './history.ts';
import { partitionByKey, responseTimeOf, validateOperation } from './history.ts';
import { LinearizedSet, MemoCache } from './memo-cache.ts';
import type { ModelOperation, StateId } from './register-model.ts';
import {
  ABSENT_STATE, REFUSED, ValueTable, acceptsEveryState, compileOperation, neverChangesState, stepRegister,
} from './register-model.ts';
import type { CheckLimit, Explanation, PrefixStep, Verdict } from './verdict.ts';

/** CHECK_STEPS_MAX is the default step budget for a whole check. */
export const CHECK_STEPS_MAX = 5_000_000;
/** CHECK_TIME_MS_MAX is the default wall-clock budget for a whole check. */
export const CHECK_TIME_MS_MAX = 10_000;
/** CHECK_OPERATIONS_PER_KEY_MAX is the default bound on one key's operations (after dropping fails and unknown reads). */
export const CHECK_OPERATIONS_PER_KEY_MAX = 10_000;
/** CHECK_MEMO_BYTES_MAX is the default bound on one key's memo, as MemoCache estimates it. */
export const CHECK_MEMO_BYTES_MAX = 256 * 1024 * 1024;
/** REFUSED_VALUES_MAX is how many refused values an explanation keeps for one operation. */
export const REFUSED_VALUES_MAX = 8;
/** CONCURRENT_OPERATIONS_MAX is how many operations an explanation lists as concurrent, and as writers. */
export const CONCURRENT_OPERATIONS_MAX = 16;

// The clock is read once every this many steps (a power of two, as a mask): reading it costs
// more than a step.
const TIME_CHECK_MASK = 1023;
// The Zobrist words come from a fixed seed, so that a check is the same on every run.
const ZOBRIST_SEED = 0x5eed;
const NONE = -1;

/** CheckOptions bounds a check; every field has a default. */
export interface CheckOptions {
  /** stepsMax is the step budget, shared by all keys; CHECK_STEPS_MAX by default. */
  readonly stepsMax?: number;
  /** timeMsMax is the wall-clock budget, shared by all keys; CHECK_TIME_MS_MAX by default. */
  readonly timeMsMax?: number;
  /** operationsPerKeyMax skips (as unknown) a key with more operations; CHECK_OPERATIONS_PER_KEY_MAX by default. */
  readonly operationsPerKeyMax?: number;
  /** memoBytesMax stops (as unknown) a key whose memo grows past it; CHECK_MEMO_BYTES_MAX by default. */
  readonly memoBytesMax?: number;
  /** nowMs reads the wall clock, in milliseconds; performance.now by default. Tests inject one. */
  readonly nowMs?: () => number;
}

// One operation of one key, compiled, with its times; `responseTime` is +Infinity when unknown.
interface KeyOperation {
  readonly index: number;
  readonly model: ModelOperation;
  readonly invokeTime: number;
  readonly responseTime: number;
}

interface Budget {
  stepsUsed: number;
  readonly stepsMax: number;
  readonly deadlineMs: number;
  readonly memoBytesMax: number;
  readonly nowMs: () => number;
}

interface StuckStep {
  readonly operation: number;
  readonly stateAfter: StateId;
}

type SearchResult =
  | { readonly kind: 'linearizable' }
  | { readonly kind: 'stuck'; readonly prefix: readonly StuckStep[]; readonly blocked: number; readonly refused: readonly StateId[] }
  | { readonly kind: 'limit'; readonly limit: 'stepsMax' | 'timeMsMax' | 'memoBytesMax' };

/**
 * checkLinearizability decides whether a history of a key-value store is linearizable, key
 * by key, within the bounds of `options`. Keys are checked fewest operations first (ties by
 * key), so a violation on a small key is found even if a large one would use up the budget.
 */
export function checkLinearizability(history: History, options: CheckOptions = {}): Verdict {
  const stepsMax = options.stepsMax ?? CHECK_STEPS_MAX;
  const timeMsMax = options.timeMsMax ?? CHECK_TIME_MS_MAX;
  const operationsPerKeyMax = options.operationsPerKeyMax ?? CHECK_OPERATIONS_PER_KEY_MAX;
  const memoBytesMax = options.memoBytesMax ?? CHECK_MEMO_BYTES_MAX;
  const nowMs = options.nowMs ?? (() => performance.now());
  assert(Number.isInteger(stepsMax) && stepsMax >= 0, 'stepsMax must be a non-negative integer');
  assert(timeMsMax >= 0, 'timeMsMax must be non-negative');
  assert(Number.isInteger(operationsPerKeyMax) && operationsPerKeyMax > 0, 'operationsPerKeyMax must be a positive integer');
  assert(memoBytesMax > 0, 'memoBytesMax must be positive');
  history.forEach(validateOperation);

  const budget: Budget = { stepsUsed: 0, stepsMax, deadlineMs: nowMs() + timeMsMax, memoBytesMax, nowMs };
  const keys = [...partitionByKey(history)].map(([key, indices]) => ({ key, indices, ...compileKey(history, indices) }));
  keys.sort((a, b) => a.operations.length - b.operations.length || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

  let firstUnknown: Verdict | undefined;
  const unknown = (limit: CheckLimit, key: string, count: number): Verdict => ({
    result: 'unknown',
    limit,
    key,
    reason: `${limit} reached while checking key ${JSON.stringify(key)} (${count} operations): ${limitDetail(limit, options)}`,
    steps: budget.stepsUsed,
  });
  for (const { key, indices, operations, values } of keys) {
    if (operations.length === 0) continue;
    if (operations.length > operationsPerKeyMax) {
      firstUnknown ??= unknown('operationsPerKeyMax', key, operations.length);
      continue;
    }
    const result = searchKey(operations, budget);
    switch (result.kind) {
      case 'linearizable':
        break;
      case 'stuck':
        return {
          result: 'not-linearizable',
          key,
          explanation: explain(history, indices, operations, values, result),
          steps: budget.stepsUsed,
        };
      case 'limit':
        // The memo is per key: the other keys can still be checked. Steps and time are not.
        if (result.limit === 'memoBytesMax') {
          firstUnknown ??= unknown(result.limit, key, operations.length);
          break;
        }
        return firstUnknown ?? unknown(result.limit, key, operations.length);
    }
  }
  return firstUnknown ?? { result: 'linearizable', steps: budget.stepsUsed };
}

function limitDetail(limit: CheckLimit, options: CheckOptions): string {
  switch (limit) {
    case 'stepsMax':
      return `the step budget of ${options.stepsMax ?? CHECK_STEPS_MAX} is spent`;
    case 'timeMsMax':
      return `the time budget of ${options.timeMsMax ?? CHECK_TIME_MS_MAX} ms is spent`;
    case 'operationsPerKeyMax':
      return `the key has more than ${options.operationsPerKeyMax ?? CHECK_OPERATIONS_PER_KEY_MAX} operations`;
    case 'memoBytesMax':
      return `the memo grew past ${options.memoBytesMax ?? CHECK_MEMO_BYTES_MAX} bytes`;
  }
}

// Compiles one key's operations, dropping those that tell the checker nothing.
function compileKey(history: History, indices: readonly number[]): { operations: KeyOperation[]; values: ValueTable } {
  const values = new ValueTable();
  const operations: KeyOperation[] = [];
  for (const index of indices) {
    const operation = history[index] as Operation;
    const model = compileOperation(operation, values);
    if (model === undefined) continue;
    const responseTime = responseTimeOf(operation);
    // The search stops once every operation with a response is placed; that is sound only
    // because the others are accepted in every state.
    assert(responseTime !== Number.POSITIVE_INFINITY || acceptsEveryState(model), `operation #${index}: unknown yet observed`);
    operations.push({ index, model, invokeTime: operation.invokeTime, responseTime });
  }
  return { operations, values };
}

// The entry list: entries 0 .. count-1 (calls, then returns of operations with a response),
// linked in time order after the sentinel `head` (= count). NONE ends the list.
interface EntryList {
  readonly head: number;
  readonly next: Int32Array;
  readonly prev: Int32Array;
  readonly entryOperation: Int32Array;
  readonly entryIsReturn: Uint8Array;
  readonly callEntry: Int32Array;
  readonly returnEntry: Int32Array;
}

function buildEntryList(operations: readonly KeyOperation[]): EntryList {
  const n = operations.length;
  const definite = operations.filter((operation) => operation.responseTime !== Number.POSITIVE_INFINITY).length;
  const count = n + definite;
  const entryOperation = new Int32Array(count);
  const entryIsReturn = new Uint8Array(count);
  const entryTime = new Float64Array(count);
  const callEntry = new Int32Array(n);
  const returnEntry = new Int32Array(n).fill(NONE);
  let entry = 0;
  operations.forEach((operation, i) => {
    entryOperation[entry] = i;
    entryTime[entry] = operation.invokeTime;
    callEntry[i] = entry;
    entry += 1;
    if (operation.responseTime === Number.POSITIVE_INFINITY) return;
    entryOperation[entry] = i;
    entryIsReturn[entry] = 1;
    entryTime[entry] = operation.responseTime;
    returnEntry[i] = entry;
    entry += 1;
  });
  assert(entry === count, 'entry count mismatch');
  // Time order; at equal times calls before returns (concurrent, the conservative order: see
  // the header); then operation order, so the search is the same on every run.
  const order = Array.from({ length: count }, (_, i) => i);
  order.sort((a, b) => (entryTime[a] as number) - (entryTime[b] as number)
    || (entryIsReturn[a] as number) - (entryIsReturn[b] as number)
    || (entryOperation[a] as number) - (entryOperation[b] as number));
  const head = count;
  const next = new Int32Array(count + 1).fill(NONE);
  const prev = new Int32Array(count + 1).fill(NONE);
  let last = head;
  for (const current of order) {
    next[last] = current;
    prev[current] = last;
    last = current;
  }
  return { head, next, prev, entryOperation, entryIsReturn, callEntry, returnEntry };
}

// Dancing links: an entry taken out keeps its own pointers, so putting entries back in the
// reverse order restores the list exactly. The search lifts and unlifts in stack order.
function lift(list: EntryList, operation: number): void {
  unlink(list, list.callEntry[operation] as number);
  const ret = list.returnEntry[operation] as number;
  if (ret !== NONE) unlink(list, ret);
}

function unlift(list: EntryList, operation: number): void {
  const ret = list.returnEntry[operation] as number;
  if (ret !== NONE) relink(list, ret);
  relink(list, list.callEntry[operation] as number);
}

function unlink(list: EntryList, entry: number): void {
  const before = list.prev[entry] as number;
  const after = list.next[entry] as number;
  list.next[before] = after;
  if (after !== NONE) list.prev[after] = before;
}

function relink(list: EntryList, entry: number): void {
  const before = list.prev[entry] as number;
  const after = list.next[entry] as number;
  assert(list.next[before] === after, 'entry list restored out of order');
  list.next[before] = entry;
  if (after !== NONE) list.prev[after] = entry;
}

// The scans of a node, in order (see the header). An operation is tried only in its own.
const PHASE_PURE = 0;
const PHASE_DEFINITE = 1;
const PHASE_UNKNOWN = 2;

// The Wing & Gong search over one key (see the header).
function searchKey(operations: readonly KeyOperation[], budget: Budget): SearchResult {
  const n = operations.length;
  const list = buildEntryList(operations);
  const definite = operations.map((operation) => operation.responseTime !== Number.POSITIVE_INFINITY);
  const definiteCount = definite.filter(Boolean).length;
  if (definiteCount === 0) return { kind: 'linearizable' };
  const phaseOf = Uint8Array.from(operations, (operation, i) => {
    if (!definite[i]) return PHASE_UNKNOWN;
    return neverChangesState(operation.model) ? PHASE_PURE : PHASE_DEFINITE;
  });
  const linearized = new LinearizedSet(definite, new SeededRandom(ZOBRIST_SEED));
  const memo = new MemoCache(linearized.definiteMask);
  // The stack of linearized operations, the state before each, and the scan that took each
  // (PHASE_PURE: forced, the node it was taken at has no other choice). Invariant: depth is
  // the number of operations in `linearized`, and `state` is the register after them all.
  const stackOperation = new Int32Array(n);
  const stackStateBefore = new Int32Array(n);
  const stackPhase = new Uint8Array(n);
  let depth = 0;
  let state: StateId = ABSENT_STATE;
  let linearizedDefinite = 0;
  // For the explanation: the deepest point where the search got stuck, and for each
  // operation some states in which the register refused it.
  let best: Extract<SearchResult, { kind: 'stuck' }> | undefined;
  let bestDepth = NONE;
  const refused: (Set<StateId> | undefined)[] = new Array<Set<StateId> | undefined>(n);
  const noteRefused = (operation: number): void => {
    let states = refused[operation];
    if (states === undefined) {
      states = new Set();
      refused[operation] = states;
    }
    if (states.size < REFUSED_VALUES_MAX) states.add(state);
  };

  let phase = PHASE_PURE;
  let entry = list.next[list.head] as number;
  while (true) {
    budget.stepsUsed += 1;
    if (budget.stepsUsed > budget.stepsMax) return { kind: 'limit', limit: 'stepsMax' };
    if ((budget.stepsUsed & TIME_CHECK_MASK) === 0 && budget.nowMs() > budget.deadlineMs) return { kind: 'limit', limit: 'timeMsMax' };
    // A return of an unplaced operation always lies ahead until every one is placed.
    assert(entry !== NONE, 'search ran off the end of the entry list');
    const operation = list.entryOperation[entry] as number;
    let backtrack = false;
    if (list.entryIsReturn[entry] === 1) {
      if (phase !== PHASE_UNKNOWN) {
        // The candidates of this scan are exhausted: the next scan starts from the front.
        phase += 1;
        entry = list.next[list.head] as number;
        continue;
      }
      // `operation` has returned but is not linearized: no order extends this prefix.
      if (depth > bestDepth) {
        bestDepth = depth;
        best = stuckAt(stackOperation, stackStateBefore, depth, state, operation);
      }
      backtrack = true;
    } else if (phaseOf[operation] !== phase) {
      entry = list.next[entry] as number;
      continue;
    } else {
      const after = stepRegister(state, (operations[operation] as KeyOperation).model);
      if (after === REFUSED) {
        noteRefused(operation);
        entry = list.next[entry] as number;
        continue;
      }
      linearized.add(operation);
      if (memo.insert(linearized, after)) {
        if (memo.bytes > budget.memoBytesMax) return { kind: 'limit', limit: 'memoBytesMax' };
        stackOperation[depth] = operation;
        stackStateBefore[depth] = state;
        stackPhase[depth] = phase;
        depth += 1;
        state = after;
        lift(list, operation);
        if (definite[operation] === true) {
          linearizedDefinite += 1;
          // The rest are unknown writes, CASes and deletes: accepted anywhere, so last.
          if (linearizedDefinite === definiteCount) return { kind: 'linearizable' };
        }
        phase = PHASE_PURE;
        entry = list.next[list.head] as number;
        continue;
      }
      // Subsumed by a node entered before, so nothing new follows from here.
      linearized.remove(operation);
      if (phase === PHASE_PURE) {
        // Every order from this node can begin with this pure operation, so it fails too.
        backtrack = true;
      } else {
        entry = list.next[entry] as number;
        continue;
      }
    }
    assert(backtrack, 'search step fell through');
    // Pop until a node with a choice left; a forced operation's node has none.
    let resumed = false;
    while (depth > 0 && !resumed) {
      depth -= 1;
      const undone = stackOperation[depth] as number;
      state = stackStateBefore[depth] as number;
      linearized.remove(undone);
      unlift(list, undone);
      if (definite[undone] === true) linearizedDefinite -= 1;
      phase = stackPhase[depth] as number;
      if (phase !== PHASE_PURE) {
        resumed = true;
        entry = list.next[list.callEntry[undone] as number] as number;
      }
    }
    if (!resumed) {
      assert(best !== undefined, 'stuck without a record');
      return { ...best, refused: [...(refused[best.blocked] ?? [])] };
    }
  }
}

function stuckAt(
  stackOperation: Int32Array, stackStateBefore: Int32Array, depth: number, state: StateId, blocked: number,
): Extract<SearchResult, { kind: 'stuck' }> {
  const prefix: StuckStep[] = [];
  for (let i = 0; i < depth; i += 1) {
    const stateAfter = i + 1 < depth ? stackStateBefore[i + 1] as number : state;
    prefix.push({ operation: stackOperation[i] as number, stateAfter });
  }
  return { kind: 'stuck', prefix, blocked, refused: [] };
}

// Turns the search's record into an Explanation: operations by history index, states as values.
function explain(
  history: History,
  keyIndices: readonly number[],
  operations: readonly KeyOperation[],
  values: ValueTable,
  stuck: Extract<SearchResult, { kind: 'stuck' }>,
): Explanation {
  const indexed = (index: number): IndexedOperation => ({ index, operation: history[index] as Operation });
  const prefix: PrefixStep[] = stuck.prefix.map((step) => {
    const index = (operations[step.operation] as KeyOperation).index;
    return { index, operation: history[index] as Operation, valueAfter: values.valueOf(step.stateAfter) };
  });
  const valueAfterPrefix = prefix.at(-1)?.valueAfter ?? null;
  const blocked = indexed((operations[stuck.blocked] as KeyOperation).index);
  const valuesRefused = stuck.refused.map((state) => values.valueOf(state));

  const blockedResponse = responseTimeOf(blocked.operation);
  const byInvocation = (a: number, b: number): number => (history[a] as Operation).invokeTime - (history[b] as Operation).invokeTime || a - b;
  const concurrentAll = keyIndices.filter((index) => {
    const other = history[index] as Operation;
    return index !== blocked.index && other.invokeTime <= blockedResponse && responseTimeOf(other) >= blocked.operation.invokeTime;
  });
  concurrentAll.sort(byInvocation);
  const concurrent = concurrentAll.slice(0, CONCURRENT_OPERATIONS_MAX).map(indexed);

  // For a read of a value: every write or CAS of the key that would set that value.
  const operation = blocked.operation;
  const seen = operation.kind === 'read' && operation.outcome.status === 'ok' ? operation.outcome.value : null;
  const writersAll = seen === null ? [] : keyIndices.filter((index) => {
    const other = history[index] as Operation;
    return (other.kind === 'write' || other.kind === 'cas') && other.value === seen;
  });
  writersAll.sort(byInvocation);
  const writers = writersAll.slice(0, CONCURRENT_OPERATIONS_MAX).map(indexed);

  return {
    summary: summarize(blocked, writersAll.map(indexed), prefix.length, valueAfterPrefix, valuesRefused),
    prefix,
    valueAfterPrefix,
    blocked,
    valuesRefused,
    concurrent,
    concurrentOmitted: concurrentAll.length - concurrent.length,
    writers,
    writersOmitted: writersAll.length - writers.length,
  };
}

function summarize(
  blocked: IndexedOperation,
  writers: readonly IndexedOperation[],
  prefixLength: number,
  valueAfterPrefix: string | null,
  valuesRefused: readonly (string | null)[],
): string {
  const subject = formatOperation(blocked.operation, blocked.index);
  // The plainest violation: a read of a value that nothing which took effect could have written.
  if (blocked.operation.kind === 'read' && blocked.operation.outcome.status === 'ok' && blocked.operation.outcome.value !== null) {
    const effective = writers.filter(({ operation }) => {
      if (operation.outcome.status === 'fail') return false;
      return !(operation.kind === 'cas' && operation.outcome.status === 'ok' && !operation.outcome.succeeded);
    });
    if (effective.length === 0) {
      const failed = writers.length === 0 ? '' : ` (${writers.map(({ index }) => `#${index}`).join(', ')} would have, but did not take effect)`;
      return `${subject} saw a value that no operation on the key wrote${failed}`;
    }
  }
  const where = `after the longest linearizable prefix found (${prefixLength} operations, leaving ${formatValue(valueAfterPrefix)})`;
  if (valuesRefused.length === 0) return `${subject} has no place in any order: ${where}, every place for it left a later operation with none`;
  return `${subject} has no place in any order: ${where}, it was refused where the key held ${orList(valuesRefused.map(formatValue))}`;
}

function orList(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} or ${items.at(-1) as string}`;
}

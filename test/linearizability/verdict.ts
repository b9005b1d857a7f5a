// What the checker answers. Three results, and only the first two are facts:
// - linearizable: every key's sub-history has an order that the register accepts.
// - not-linearizable: some key's has none; the explanation says which operation could not
//   be placed after the longest order found, and what the value was where it was tried.
// - unknown: a bound was reached first (steps, wall-clock time, operations per key, memo
//   size). The checker never guesses: an unknown verdict says which bound, on which key.

import type { IndexedOperation, Operation } from './history.ts';

/** CheckLimit names the bound that stopped a check: the option of CheckOptions it comes from. */
export type CheckLimit = 'stepsMax' | 'timeMsMax' | 'operationsPerKeyMax' | 'memoBytesMax';

/** PrefixStep is one operation of a linearizable prefix, with the key's value after it. */
export interface PrefixStep {
  readonly index: number;
  readonly operation: Operation;
  readonly valueAfter: string | null;
}

/**
 * Explanation says why a key's sub-history is not linearizable, in terms a person can act on.
 * The search found no order for the key; `prefix` is the longest order it found that the
 * register accepts, and `blocked` is the operation that had to come next (its response had
 * arrived) but could not. `valuesRefused` are the values the key held wherever the search
 * tried `blocked` and the register refused it, over the whole search; for a read, they are
 * the values it could have seen. `concurrent` are the key's operations whose intervals
 * overlap the blocked one, including fails, which the checker ignores. For a blocked read of
 * a value, `writers` are the key's writes and CASes of that value, whatever their outcome.
 * Both lists are capped, in invocation order.
 */
export interface Explanation {
  readonly summary: string;
  readonly prefix: readonly PrefixStep[];
  readonly valueAfterPrefix: string | null;
  readonly blocked: IndexedOperation;
  readonly valuesRefused: readonly (string | null)[];
  readonly concurrent: readonly IndexedOperation[];
  /** concurrentOmitted is how many concurrent operations the cap left out. */
  readonly concurrentOmitted: number;
  readonly writers: readonly IndexedOperation[];
  /** writersOmitted is how many writers the cap left out. */
  readonly writersOmitted: number;
}

/** Verdict is the checker's answer; `steps` is the search steps spent, over all keys. */
export type Verdict =
  | { readonly result: 'linearizable'; readonly steps: number }
  | { readonly result: 'not-linearizable'; readonly key: string; readonly explanation: Explanation; readonly steps: number }
  | { readonly result: 'unknown'; readonly reason: string; readonly limit: CheckLimit; readonly key: string; readonly steps: number };

// A history of operations on a key-value store, as its clients saw them: what each client asked
// for, when it asked, and what came back and when. The checker reads it; the recorder
// (history-recorder.ts) writes it, and hand-written tests build it as literals.
//
// An operation ends in one of three outcomes:
// - ok: it happened, and the client observed its result (a read's value, a CAS's success).
// - fail: it definitely did not take effect (refused before it was proposed). The checker
//   drops it, so a later read of the value it would have written is a violation.
// - unknown: the client cannot tell (timed out, connection lost). It may take effect at any
//   time after its invocation, or never: the checker gives it a response time of +infinity.
//
// Values are strings, compared with ===; a key that holds no value is `null` ("absent").
// Keys and values that are bytes go through valueFromBytes, a bijection, so that equal bytes
// give equal strings and unequal bytes unequal ones.

import { Buffer } from 'node:buffer';
import { assert, assertNever } from '../../src/util/index.ts';

/** ClientId names the client that issued an operation; the checker only prints it. */
export type ClientId = number | string;

/** ReadInput asks for the value of one key. */
export interface ReadInput {
  readonly kind: 'read';
  readonly key: string;
}

/** WriteInput puts a value under a key (etcd's Put). */
export interface WriteInput {
  readonly kind: 'write';
  readonly key: string;
  readonly value: string;
}

/**
 * CasInput compares the key's current value with `expected` and, if they are equal, sets
 * `value`. `expected: null` means "the key is absent" (etcd: a Txn comparing the key's
 * create revision with 0).
 */
export interface CasInput {
  readonly kind: 'cas';
  readonly key: string;
  readonly expected: string | null;
  readonly value: string;
}

/** DeleteInput removes one key (etcd's DeleteRange of a single key). */
export interface DeleteInput {
  readonly kind: 'delete';
  readonly key: string;
}

/** OperationInput is what a client asked for. */
export type OperationInput = ReadInput | WriteInput | CasInput | DeleteInput;

/** OperationKind is the kind of an operation: 'read', 'write', 'cas' or 'delete'. */
export type OperationKind = OperationInput['kind'];

/** ReadResult is what a read that succeeded observed: the value, or null when the key was absent. */
export interface ReadResult {
  readonly value: string | null;
}

/** WriteResult is what a write that succeeded observed: nothing the model checks. */
export type WriteResult = Readonly<Record<never, never>>;

/** CasResult says whether the comparison held and the new value was set. */
export interface CasResult {
  readonly succeeded: boolean;
}

/**
 * DeleteResult may say how many keys the delete removed (etcd's `deleted`): 1 means the key
 * held a value, 0 that it was absent. Without it the delete observed nothing.
 */
export interface DeleteResult {
  readonly deleted?: 0 | 1;
}

/**
 * Outcome is how an operation ended. Times are in the caller's unit (simulated ticks or
 * milliseconds): the checker only compares them. `giveUpTime` is when the client stopped
 * waiting for an unknown operation; it is printed, never checked, because the operation may
 * still take effect after it.
 */
export type Outcome<R> =
  | ({ readonly status: 'ok'; readonly responseTime: number } & R)
  | { readonly status: 'fail'; readonly responseTime: number }
  | { readonly status: 'unknown'; readonly giveUpTime?: number };

/** OutcomeStatus is 'ok', 'fail' or 'unknown'. */
export type OutcomeStatus = Outcome<unknown>['status'];

/** OperationRecord is what every operation carries besides its input: who, when, how it ended. */
export interface OperationRecord<R> {
  readonly client: ClientId;
  readonly invokeTime: number;
  readonly outcome: Outcome<R>;
}

/** ReadOperation is a recorded read. */
export type ReadOperation = ReadInput & OperationRecord<ReadResult>;
/** WriteOperation is a recorded write. */
export type WriteOperation = WriteInput & OperationRecord<WriteResult>;
/** CasOperation is a recorded compare-and-set. */
export type CasOperation = CasInput & OperationRecord<CasResult>;
/** DeleteOperation is a recorded delete. */
export type DeleteOperation = DeleteInput & OperationRecord<DeleteResult>;

/** Operation is one recorded operation, discriminated by `kind`. */
export type Operation = ReadOperation | WriteOperation | CasOperation | DeleteOperation;

/** History is every operation of a run, in any order; an operation's index names it (#index). */
export type History = readonly Operation[];

/** IndexedOperation is an operation with its index in the history it came from. */
export interface IndexedOperation {
  readonly index: number;
  readonly operation: Operation;
}

/**
 * responseTimeOf returns when the operation's response arrived, or +Infinity when it never
 * did: an unknown operation may take effect at any time after its invocation.
 */
export function responseTimeOf(operation: Operation): number {
  return operation.outcome.status === 'unknown' ? Number.POSITIVE_INFINITY : operation.outcome.responseTime;
}

/**
 * validateOperation asserts that an operation is well formed: finite times, a response no
 * earlier than the invocation, and a result of the shape its kind needs. A malformed history
 * is a bug in whoever recorded it, so this is an assertion, not a verdict.
 */
export function validateOperation(operation: Operation, index: number): void {
  const where = `operation #${index}`;
  assert(typeof operation.key === 'string', `${where}: key must be a string`);
  assert(typeof operation.client === 'number' || typeof operation.client === 'string', `${where}: client must be a number or a string`);
  assert(Number.isFinite(operation.invokeTime), `${where}: invokeTime must be finite`);
  const outcome = operation.outcome;
  if (outcome.status === 'unknown') {
    assert(outcome.giveUpTime === undefined || outcome.giveUpTime >= operation.invokeTime, `${where}: giveUpTime before invokeTime`);
  } else {
    assert(outcome.status === 'ok' || outcome.status === 'fail', `${where}: unexpected status`);
    assert(Number.isFinite(outcome.responseTime), `${where}: responseTime must be finite`);
    assert(outcome.responseTime >= operation.invokeTime, `${where}: responseTime before invokeTime`);
  }
  switch (operation.kind) {
    case 'read':
      if (operation.outcome.status === 'ok') {
        const value = operation.outcome.value;
        assert(value === null || typeof value === 'string', `${where}: a read's value must be a string or null`);
      }
      return;
    case 'write':
      assert(typeof operation.value === 'string', `${where}: a write's value must be a string`);
      return;
    case 'cas':
      assert(operation.expected === null || typeof operation.expected === 'string', `${where}: expected must be a string or null`);
      assert(typeof operation.value === 'string', `${where}: a CAS's value must be a string`);
      if (operation.outcome.status === 'ok') {
        assert(typeof operation.outcome.succeeded === 'boolean', `${where}: a CAS's result must say whether it succeeded`);
      }
      return;
    case 'delete':
      if (operation.outcome.status === 'ok') {
        const deleted = operation.outcome.deleted;
        assert(deleted === undefined || deleted === 0 || deleted === 1, `${where}: deleted must be 0, 1 or absent`);
      }
      return;
    default:
      assertNever(operation, 'operation kind');
  }
}

/**
 * partitionByKey splits a history into one sub-history per key, as lists of indices in
 * history order. A history is linearizable if and only if each key's sub-history is
 * (P-compositionality: every operation touches exactly one key), so each is checked alone.
 */
export function partitionByKey(history: History): Map<string, number[]> {
  const byKey = new Map<string, number[]>();
  for (let index = 0; index < history.length; index += 1) {
    const operation = history[index];
    assert(operation !== undefined, 'history has a hole');
    let indices = byKey.get(operation.key);
    if (indices === undefined) {
      indices = [];
      byKey.set(operation.key, indices);
    }
    indices.push(index);
  }
  return byKey;
}

/**
 * valueFromBytes turns a key or value that is bytes into the string the history holds. It
 * maps each byte to the code point of the same number (Latin-1), a bijection, so equality
 * is preserved exactly and printable ASCII stays readable in a failure report.
 */
export function valueFromBytes(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

// The sequential specification of one key: a register that holds a value or nothing. The
// checker asks it one question, "in this state, could this operation have happened with the
// outcome the client saw, and what state follows?", and searches for an order in which the
// answer is always yes.
//
// Every key starts absent: histories come from a fresh cluster or from keys no one else
// touches. Values are interned to small integers (StateId) so that a state is a number:
// stepping compares integers, and the search's memo keys on one.
//
// An operation is compiled once, with its outcome folded in:
// - fail (any kind) is dropped: it did not take effect.
// - unknown read is dropped: it observed nothing and changed nothing.
// - unknown write, CAS or delete keeps its effect but no observation, so it is accepted in
//   every state (acceptsEveryState). The checker relies on that to end its search once every
//   operation with a response is placed: the rest can go last, where they affect nothing seen.

import { assert, assertNever } from '../../src/util/index.ts';
import type { Operation } from './history.ts';

/** StateId is an interned value of a key; ABSENT_STATE is the key holding no value. */
export type StateId = number;

/** ABSENT_STATE is the state of a key that holds no value, and every key's initial state. */
export const ABSENT_STATE: StateId = 0;

/** REFUSED is what stepRegister returns when the operation cannot happen in that state. */
export const REFUSED = -1;

/** ValueTable interns values: one StateId per distinct value, ABSENT_STATE for null. */
export class ValueTable {
  private readonly ids = new Map<string, StateId>();
  private readonly values: (string | null)[] = [null];

  /** intern returns the StateId of a value, adding it if new. */
  intern(value: string | null): StateId {
    if (value === null) return ABSENT_STATE;
    let id = this.ids.get(value);
    if (id === undefined) {
      id = this.values.length;
      this.values.push(value);
      this.ids.set(value, id);
    }
    return id;
  }

  /** valueOf returns the value a StateId stands for (null: absent). */
  valueOf(state: StateId): string | null {
    const value = this.values[state];
    assert(value !== undefined, `no value interned as ${state}`);
    return value;
  }
}

/**
 * ModelOperation is an operation compiled for the register: values interned, outcome folded
 * in. An `undefined` observation (`succeeded`, `deleted`) means none was made.
 */
export type ModelOperation =
  | { readonly kind: 'read'; readonly observed: StateId }
  | { readonly kind: 'write'; readonly value: StateId }
  | { readonly kind: 'cas'; readonly expected: StateId; readonly value: StateId; readonly succeeded: boolean | undefined }
  | { readonly kind: 'delete'; readonly deleted: 0 | 1 | undefined };

/**
 * compileOperation turns a recorded operation into a ModelOperation, or undefined when the
 * operation tells the checker nothing (a fail, an unknown read).
 */
export function compileOperation(operation: Operation, values: ValueTable): ModelOperation | undefined {
  const outcome = operation.outcome;
  if (outcome.status === 'fail') return undefined;
  const known = outcome.status === 'ok';
  switch (operation.kind) {
    case 'read':
      if (operation.outcome.status !== 'ok') return undefined;
      return { kind: 'read', observed: values.intern(operation.outcome.value) };
    case 'write':
      return { kind: 'write', value: values.intern(operation.value) };
    case 'cas': {
      const succeeded = operation.outcome.status === 'ok' ? operation.outcome.succeeded : undefined;
      assert(known === (succeeded !== undefined), 'a CAS observes success exactly when it is ok');
      return { kind: 'cas', expected: values.intern(operation.expected), value: values.intern(operation.value), succeeded };
    }
    case 'delete': {
      const deleted = operation.outcome.status === 'ok' ? operation.outcome.deleted : undefined;
      return { kind: 'delete', deleted };
    }
    default:
      return assertNever(operation, 'operation kind');
  }
}

/** stepRegister returns the state after `operation` in `state`, or REFUSED if it could not happen there. */
export function stepRegister(state: StateId, operation: ModelOperation): StateId | typeof REFUSED {
  switch (operation.kind) {
    case 'read':
      return operation.observed === state ? state : REFUSED;
    case 'write':
      return operation.value;
    case 'cas': {
      const holds = operation.expected === state;
      if (operation.succeeded === undefined) return holds ? operation.value : state;
      if (operation.succeeded !== holds) return REFUSED;
      return holds ? operation.value : state;
    }
    case 'delete':
      if (operation.deleted === 1 && state === ABSENT_STATE) return REFUSED;
      if (operation.deleted === 0 && state !== ABSENT_STATE) return REFUSED;
      return ABSENT_STATE;
    default:
      return assertNever(operation, 'model operation kind');
  }
}

/**
 * acceptsEveryState reports whether the register accepts the operation in any state: true of
 * a write, and of a CAS or delete that observed nothing.
 */
export function acceptsEveryState(operation: ModelOperation): boolean {
  switch (operation.kind) {
    case 'read':
      return false;
    case 'write':
      return true;
    case 'cas':
      return operation.succeeded === undefined;
    case 'delete':
      return operation.deleted === undefined;
    default:
      return assertNever(operation, 'model operation kind');
  }
}

/**
 * neverChangesState reports whether the operation leaves the register as it found it in every
 * state that accepts it: a read, a CAS seen to fail, a delete seen to remove nothing. The
 * search linearizes such an operation as soon as the register accepts it and tries nothing
 * else there (checker.ts explains why that loses no order).
 */
export function neverChangesState(operation: ModelOperation): boolean {
  switch (operation.kind) {
    case 'read':
      return true;
    case 'write':
      return false;
    case 'cas':
      return operation.succeeded === false;
    case 'delete':
      return operation.deleted === 0;
    default:
      return assertNever(operation, 'model operation kind');
  }
}

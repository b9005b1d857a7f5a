// HistoryRecorder: what a simulation or a chaos harness calls around each client request to
// build a History. invoke() stamps the invocation and returns a handle; ok(), fail() or
// unknown() settles it and stamps the response.
//
// States of a recorded operation: pending (invoked, not settled) → settled (ok, fail or
// unknown), once. Invariant: settled[id] is undefined exactly while operation `id` is
// pending. An operation still pending when history() is called counts as unknown: the
// client never learned what became of it.
//
// The clock is read on every event and must never go backwards (asserted). Events at the
// same reading are concurrent for the checker (see checker.ts), so a coarse clock can hide
// a violation but never invent one.

import { assert, assertNever } from '../../src/util/index.ts';
import type {
  CasInput, CasResult, ClientId, DeleteInput, DeleteResult, History, Operation, OperationInput, ReadInput, ReadResult,
} from './history.ts';
import { validateOperation } from './history.ts';

/** HistoryClock reads the current time, in the caller's unit (simulated ticks or milliseconds). */
export type HistoryClock = () => number;

/** RECORDER_OPERATIONS_MAX is how many operations one recorder holds unless told otherwise. */
export const RECORDER_OPERATIONS_MAX = 1_000_000;

/** PendingOperation is the handle invoke() returns; settle it once with ok(), fail() or unknown(). */
export interface PendingOperation<I extends OperationInput = OperationInput> {
  /** id is the operation's index in the history this recorder builds. */
  readonly id: number;
  readonly client: ClientId;
  readonly input: I;
  readonly invokeTime: number;
}

/**
 * ResultArguments is what ok() takes after the handle: a read's value, a CAS's success, a
 * delete's optional `deleted` count, and nothing for a write.
 */
export type ResultArguments<I extends OperationInput> =
  I extends ReadInput ? [result: ReadResult]
    : I extends CasInput ? [result: CasResult]
      : I extends DeleteInput ? [result?: DeleteResult]
        : [];

/** HistoryRecorderOptions bounds a recorder. */
export interface HistoryRecorderOptions {
  /** operationsMax is how many operations may be invoked; RECORDER_OPERATIONS_MAX by default. */
  readonly operationsMax?: number;
}

/** HistoryRecorder records invocations and responses into a History, in invocation order. */
export class HistoryRecorder {
  private readonly clock: HistoryClock;
  private readonly operationsMax: number;
  private readonly handles: PendingOperation[] = [];
  // Invariant: settled[id] === undefined exactly while handles[id] is pending.
  private readonly settled: (Operation | undefined)[] = [];
  private pending = 0;
  // The last clock reading: readings must be non-decreasing.
  private timeLast = Number.NEGATIVE_INFINITY;

  constructor(clock: HistoryClock, options: HistoryRecorderOptions = {}) {
    const operationsMax = options.operationsMax ?? RECORDER_OPERATIONS_MAX;
    assert(Number.isInteger(operationsMax) && operationsMax > 0, 'operationsMax must be a positive integer');
    this.clock = clock;
    this.operationsMax = operationsMax;
  }

  /** size is how many operations have been invoked. */
  get size(): number {
    return this.handles.length;
  }

  /** pendingCount is how many invoked operations are not settled yet. */
  get pendingCount(): number {
    return this.pending;
  }

  /** invoke records that `client` asked for `input` now, and returns the handle to settle. */
  invoke<I extends OperationInput>(client: ClientId, input: I): PendingOperation<I> {
    assert(this.handles.length < this.operationsMax, `more than ${this.operationsMax} operations recorded`);
    assert(typeof client === 'number' || typeof client === 'string', 'client must be a number or a string');
    assert(typeof input.key === 'string', 'key must be a string');
    const handle: PendingOperation<I> = {
      id: this.handles.length,
      client,
      // A copy: the caller may reuse its request object, and the history must show what was asked.
      input: { ...input },
      invokeTime: this.now(),
    };
    this.handles.push(handle);
    this.settled.push(undefined);
    this.pending += 1;
    return handle;
  }

  /** ok records that the operation happened and what it observed. */
  ok<I extends OperationInput>(op: PendingOperation<I>, ...result: ResultArguments<I>): void {
    this.checkPending(op);
    const responseTime = this.now();
    this.settle(op, okOperation(op, responseTime, result[0]));
  }

  /** fail records that the operation definitely did not take effect (refused before being proposed). */
  fail(op: PendingOperation): void {
    this.checkPending(op);
    const responseTime = this.now();
    this.settle(op, withOutcome(op, { status: 'fail', responseTime }));
  }

  /** unknown records that the client gave up on the operation: it may take effect later, or never. */
  unknown(op: PendingOperation): void {
    this.checkPending(op);
    const giveUpTime = this.now();
    this.settle(op, withOutcome(op, { status: 'unknown', giveUpTime }));
  }

  /** history returns every operation in invocation order; one still pending counts as unknown. */
  history(): History {
    const operations: Operation[] = [];
    for (let id = 0; id < this.handles.length; id += 1) {
      const handle = this.handles[id];
      assert(handle !== undefined, 'recorder lost a handle');
      operations.push(this.settled[id] ?? withOutcome(handle, { status: 'unknown' }));
    }
    return operations;
  }

  private checkPending(op: PendingOperation): void {
    assert(this.handles[op.id] === op, 'operation was not invoked on this recorder');
    assert(this.settled[op.id] === undefined, `operation #${op.id} is settled twice`);
  }

  private settle(op: PendingOperation, operation: Operation): void {
    validateOperation(operation, op.id);
    this.settled[op.id] = operation;
    this.pending -= 1;
    assert(this.pending >= 0, 'pending count went negative');
  }

  private now(): number {
    const time = this.clock();
    assert(Number.isFinite(time), 'clock returned a time that is not finite');
    assert(time >= this.timeLast, `clock went backwards: ${time} after ${this.timeLast}`);
    this.timeLast = time;
    return time;
  }
}

// The outcomes fail and unknown carry no result, so they fit every kind.
type PlainOutcome = { readonly status: 'fail'; readonly responseTime: number } | { readonly status: 'unknown'; readonly giveUpTime?: number };

function withOutcome(handle: PendingOperation, outcome: PlainOutcome): Operation {
  return { ...handle.input, client: handle.client, invokeTime: handle.invokeTime, outcome };
}

// Builds an ok operation field by field, so a result carrying stray fields does not reach the
// history, and a result of the wrong shape stops here with the operation's id.
function okOperation(handle: PendingOperation, responseTime: number, result: unknown): Operation {
  const input = handle.input;
  const base = { client: handle.client, invokeTime: handle.invokeTime };
  const where = `operation #${handle.id}`;
  switch (input.kind) {
    case 'read': {
      assert(typeof result === 'object' && result !== null && 'value' in result, `${where}: a read needs a result with a value`);
      const value = (result as ReadResult).value;
      return { ...input, ...base, outcome: { status: 'ok', responseTime, value } };
    }
    case 'write':
      assert(result === undefined, `${where}: a write takes no result`);
      return { ...input, ...base, outcome: { status: 'ok', responseTime } };
    case 'cas': {
      assert(typeof result === 'object' && result !== null && 'succeeded' in result, `${where}: a CAS needs a result with succeeded`);
      const succeeded = (result as CasResult).succeeded;
      return { ...input, ...base, outcome: { status: 'ok', responseTime, succeeded } };
    }
    case 'delete': {
      assert(result === undefined || (typeof result === 'object' && result !== null), `${where}: a delete's result must be an object`);
      const deleted = (result as DeleteResult | undefined)?.deleted;
      if (deleted === undefined) return { ...input, ...base, outcome: { status: 'ok', responseTime } };
      return { ...input, ...base, outcome: { status: 'ok', responseTime, deleted } };
    }
    default:
      return assertNever(input, 'operation kind');
  }
}

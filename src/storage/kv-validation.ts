// Request checks with etcd's rules and etcd's error texts (etcdserver/api/v3rpc/key.go and
// rpctypes), applied before a request is proposed and again when it is applied, so that a
// bad request never changes state whichever node proposed it.

import { deflateRawSync } from 'node:zlib';

import { ErrorCode, isStrataError, StrataError } from '../util/errors.ts';
import { decodeKvCommand, encodeKvCommand } from './kv-command-codec.ts';
import { compareBytes } from './kv-keys.ts';
import type { KvCommand, KvLimits, KvRequest, MirrorRequest, TxnOperation } from './kv-types.ts';
import { DEFAULT_KV_LIMITS, LEASE_ID_MAX, MIRROR_REPLAY_COMMANDS_MAX, MIRROR_STATE_BYTES_MAX, MIRROR_STATE_FOOTER_BYTES_MAX } from './kv-types.ts';

/**
 * validateKvRequest throws KEY_NOT_PROVIDED, REQUEST_TOO_LARGE, TOO_MANY_OPERATIONS or
 * DUPLICATE_KEY (with etcd's messages) when `request` breaks a rule or a limit; a mirror
 * request that breaks one is INVALID_ARGUMENT naming the field (details.field).
 */
export function validateKvRequest(request: KvRequest, limits: KvLimits = DEFAULT_KV_LIMITS): void {
  switch (request.type) {
    case 'put':
      checkKey(request.key, limits);
      if (request.value.byteLength > limits.valueBytesMax) throw tooLarge(`value of ${request.value.byteLength} bytes`);
      return;
    case 'range':
      checkInteger('limit', request.limit);
      checkInteger('revision', request.revision);
      checkKey(request.key, limits);
      if ((request.rangeEnd?.byteLength ?? 0) > limits.keyBytesMax) throw tooLarge('range end');
      return;
    case 'deleteRange':
      checkKey(request.key, limits);
      if ((request.rangeEnd?.byteLength ?? 0) > limits.keyBytesMax) throw tooLarge('range end');
      return;
    case 'txn': {
      const max = limits.txnOperationsMax;
      if (request.compare.length > max || request.success.length > max || request.failure.length > max) {
        throw new StrataError(ErrorCode.TOO_MANY_OPERATIONS, 'etcdserver: too many operations in txn request', {
          details: { compare: request.compare.length, success: request.success.length, failure: request.failure.length, max },
        });
      }
      for (const compare of request.compare) {
        checkKey(compare.key, limits);
        if (compare.target === 'lease') checkCompareLease(compare.lease);
        else if (compare.target !== 'value') checkInteger('compare operand', compare.number);
      }
      // etcd's order: every operation of both branches first, then duplicates per branch.
      for (const operation of [...request.success, ...request.failure]) validateKvRequest(operation, limits);
      checkDuplicateWrites(request.success);
      checkDuplicateWrites(request.failure);
      return;
    }
    case 'mirrorBegin':
    case 'mirrorApply':
    case 'mirrorEnd':
    case 'mirrorReplay':
      validateMirrorRequest(request, limits);
      return;
  }
}

/**
 * replayedRequests decodes the commands of a mirrorReplay: INVALID_ARGUMENT naming
 * `commands[i]` when one does not decode as a KV command or is itself a mirror request. What
 * a command asks is not checked here: the state machine applies it as the source did, refusals
 * included (see MirrorRequest).
 */
export function replayedRequests(request: Extract<MirrorRequest, { type: 'mirrorReplay' }>): KvRequest[] {
  return request.commands.map((data, i) => {
    const field = `commands[${i}]`;
    let replayed: KvRequest;
    try {
      replayed = decodeKvCommand(data).request;
    } catch (error) {
      if (!isStrataError(error, ErrorCode.CORRUPTION)) throw error;
      throw invalidMirror(field, `${field} is not a KV command (${error.message})`);
    }
    if (isMirrorRequest(replayed)) throw invalidMirror(field, `${field} is a ${replayed.type}: a replay carries client commands only (the source must not be a mirror over them)`);
    return replayed;
  });
}

function isMirrorRequest(request: KvRequest): request is MirrorRequest {
  return request.type === 'mirrorBegin' || request.type === 'mirrorApply' || request.type === 'mirrorEnd' || request.type === 'mirrorReplay';
}

/**
 * encodeValidKvCommand validates a command's request, encodes it and checks the encoded size
 * (REQUEST_TOO_LARGE over limits.requestBytesMax, for every kind: the copier sizes its mirror
 * batches by it). Two checks run here only, before proposing, not again at apply: the size
 * (as for every request: the limit is each member's flag, and a member configured lower must
 * not refuse an entry the others applied) and a mirror state's fit in a snapshot footer
 * (MIRROR_STATE_FOOTER_BYTES_MAX).
 */
export function encodeValidKvCommand(command: KvCommand, limits: KvLimits = DEFAULT_KV_LIMITS): Uint8Array {
  validateKvRequest(command.request, limits);
  const { request } = command;
  if (request.type === 'mirrorBegin' || request.type === 'mirrorApply' || request.type === 'mirrorReplay') checkMirrorStateFitsFooter(request.state);
  const data = encodeKvCommand(command);
  if (data.byteLength > limits.requestBytesMax) throw tooLarge(`request of ${data.byteLength} bytes`);
  return data;
}

// validateMirrorRequest checks what the copier proposes (kv-types.ts: MirrorRequest). Rules
// that depend on the applied state (the compare-and-set, the revision not going back) are the
// state machine's, answered MIRROR_CONFLICT.
function validateMirrorRequest(request: MirrorRequest, limits: KvLimits): void {
  switch (request.type) {
    case 'mirrorBegin':
      checkMirrorState('state', request.state);
      if (request.requireRevision !== undefined) checkCounter('requireRevision', request.requireRevision, 1);
      return;
    case 'mirrorEnd':
      checkMirrorState('expectState', request.expectState);
      return;
    case 'mirrorApply': {
      checkMirrorState('expectState', request.expectState);
      checkMirrorState('state', request.state);
      checkCounter('revision', request.revision, 1);
      // Byte strings as latin1 text: the field that named a key first.
      const seen = new Map<string, string>();
      const checkOnce = (key: Uint8Array, field: string): void => {
        checkMirrorKey(key, field, limits);
        const name = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
        const first = seen.get(name);
        if (first !== undefined) throw invalidMirror(field, `${field} names the same key as ${first}`);
        seen.set(name, field);
      };
      request.puts.forEach((put, i) => {
        const field = `puts[${i}]`;
        checkOnce(put.key, `${field}.key`);
        if (put.value.byteLength > limits.valueBytesMax) throw invalidMirror(`${field}.value`, `${field}.value is ${put.value.byteLength} bytes, more than ${limits.valueBytesMax}`);
        checkCounter(`${field}.createRevision`, put.createRevision, 1);
        checkCounter(`${field}.modRevision`, put.modRevision, put.createRevision);
        if (put.modRevision > request.revision) throw invalidMirror(`${field}.modRevision`, `${field}.modRevision ${put.modRevision} is above the request's revision ${request.revision}`);
        checkCounter(`${field}.version`, put.version, 1);
        checkLease(`${field}.lease`, put.lease);
      });
      request.deletes.forEach((key, i) => checkOnce(key, `deletes[${i}]`));
      return;
    }
    case 'mirrorReplay':
      checkMirrorState('expectState', request.expectState);
      checkMirrorState('state', request.state);
      if (request.commands.length > MIRROR_REPLAY_COMMANDS_MAX) {
        throw invalidMirror('commands', `commands holds ${request.commands.length} commands, more than ${MIRROR_REPLAY_COMMANDS_MAX}`);
      }
      replayedRequests(request);
      return;
  }
}

function checkMirrorState(field: string, state: Uint8Array): void {
  if (!(state instanceof Uint8Array)) throw invalidMirror(field, `${field} must be bytes`);
  if (state.byteLength > MIRROR_STATE_BYTES_MAX) throw invalidMirror(field, `${field} is ${state.byteLength} bytes, more than ${MIRROR_STATE_BYTES_MAX}`);
}

// checkMirrorStateFitsFooter refuses a state that a snapshot's footer could not carry (raw, or
// deflated as the footer would store it): see MIRROR_STATE_FOOTER_BYTES_MAX.
function checkMirrorStateFitsFooter(state: Uint8Array): void {
  if (state.byteLength <= MIRROR_STATE_FOOTER_BYTES_MAX) return;
  const deflatedBytes = deflateRawSync(state).byteLength;
  if (deflatedBytes > MIRROR_STATE_FOOTER_BYTES_MAX) {
    throw invalidMirror('state', `state is ${state.byteLength} bytes, ${deflatedBytes} deflated, more than the ${MIRROR_STATE_FOOTER_BYTES_MAX} a snapshot footer can carry`);
  }
}

function checkMirrorKey(key: Uint8Array, field: string, limits: KvLimits): void {
  if (key.byteLength === 0) throw invalidMirror(field, `${field} is empty`);
  if (key.byteLength > limits.keyBytesMax) throw invalidMirror(field, `${field} is ${key.byteLength} bytes, more than ${limits.keyBytesMax}`);
}

// checkCounter refuses a revision or version that is not a safe integer of at least `min`.
function checkCounter(field: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw invalidMirror(field, `${field} must be an integer of at least ${min}, got ${value}`);
}

// checkLease refuses a lease id that is not a bigint in [0, LEASE_ID_MAX]: etcd's ids are
// int64 and positive (0 is none), and a wider value would not fit etcd's wire.
function checkLease(field: string, value: bigint): void {
  if (typeof value !== 'bigint' || value < 0n || value > LEASE_ID_MAX) throw invalidMirror(field, `${field} must be a bigint from 0 to 2^63 - 1, got ${String(value)}`);
}

function invalidMirror(field: string, message: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, `mirror request: ${message}`, { details: { field } });
}

// checkInteger refuses numbers that are not safe integers. Negative limits and revisions are
// allowed: as in etcd they mean "no limit" and "the current revision".
function checkInteger(what: string, value: number | undefined): void {
  if (value !== undefined && !Number.isSafeInteger(value)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${what} must be an integer, got ${value}`, { details: { what, value } });
  }
}

// checkCompareLease refuses a lease compare's operand that is not an int64 (etcd's Compare.lease).
function checkCompareLease(value: bigint): void {
  if (typeof value !== 'bigint' || value < INT64_MIN || value > LEASE_ID_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `compare operand must be an int64 lease id (a bigint), got ${String(value)}`, { details: { what: 'compare operand', value: String(value) } });
  }
}

const INT64_MIN = -(2n ** 63n);

function checkKey(key: Uint8Array, limits: KvLimits): void {
  if (key.byteLength === 0) throw new StrataError(ErrorCode.KEY_NOT_PROVIDED, 'etcdserver: key is not provided');
  if (key.byteLength > limits.keyBytesMax) throw tooLarge(`key of ${key.byteLength} bytes`);
}

function tooLarge(what: string): StrataError {
  return new StrataError(ErrorCode.REQUEST_TOO_LARGE, 'etcdserver: request is too large', { details: { what } });
}

// checkDuplicateWrites is etcd's checkIntervals for one branch: a key may be Put once, and
// not inside a DeleteRange of the same branch. Like etcd it reads rangeEnd literally here
// (a "\0" rangeEnd makes an empty interval), so the answers match etcd's exactly.
function checkDuplicateWrites(branch: readonly TxnOperation[]): void {
  const deletes: { key: Uint8Array; rangeEnd: Uint8Array | undefined }[] = [];
  for (const operation of branch) {
    if (operation.type === 'deleteRange') deletes.push({ key: operation.key, rangeEnd: operation.rangeEnd });
  }
  const puts = new Set<string>();
  for (const operation of branch) {
    if (operation.type !== 'put') continue;
    const name = Buffer.from(operation.key).toString('latin1');
    const insideDelete = deletes.some(({ key, rangeEnd }) =>
      rangeEnd === undefined || rangeEnd.byteLength === 0
        ? compareBytes(key, operation.key) === 0
        : compareBytes(key, operation.key) <= 0 && compareBytes(operation.key, rangeEnd) < 0,
    );
    if (puts.has(name) || insideDelete) {
      throw new StrataError(ErrorCode.DUPLICATE_KEY, 'etcdserver: duplicate key given in txn request', { details: { key: name } });
    }
    puts.add(name);
  }
}

// Request checks with etcd's rules and etcd's error texts (etcdserver/api/v3rpc/key.go and
// rpctypes), applied before a request is proposed and again when it is applied, so that a
// bad request never changes state whichever node proposed it.

import { ErrorCode, StrataError } from '../util/errors.ts';
import { encodeKvCommand } from './kv-command-codec.ts';
import { compareBytes } from './kv-keys.ts';
import type { KvCommand, KvLimits, KvRequest, TxnOperation } from './kv-types.ts';
import { DEFAULT_KV_LIMITS } from './kv-types.ts';

/**
 * validateKvRequest throws KEY_NOT_PROVIDED, REQUEST_TOO_LARGE, TOO_MANY_OPERATIONS or
 * DUPLICATE_KEY (with etcd's messages) when `request` breaks a rule or a limit.
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
        if (compare.target !== 'value') checkInteger('compare operand', compare.number);
      }
      // etcd's order: every operation of both branches first, then duplicates per branch.
      for (const operation of [...request.success, ...request.failure]) validateKvRequest(operation, limits);
      checkDuplicateWrites(request.success);
      checkDuplicateWrites(request.failure);
      return;
    }
  }
}

/** encodeValidKvCommand validates a command's request, encodes it and checks the encoded size. */
export function encodeValidKvCommand(command: KvCommand, limits: KvLimits = DEFAULT_KV_LIMITS): Uint8Array {
  validateKvRequest(command.request, limits);
  const data = encodeKvCommand(command);
  if (data.byteLength > limits.requestBytesMax) throw tooLarge(`request of ${data.byteLength} bytes`);
  return data;
}

// checkInteger refuses numbers that are not safe integers. Negative limits and revisions are
// allowed: as in etcd they mean "no limit" and "the current revision".
function checkInteger(what: string, value: number | undefined): void {
  if (value !== undefined && !Number.isSafeInteger(value)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${what} must be an integer, got ${value}`, { details: { what, value } });
  }
}

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

// Between etcd's wire messages and the KV requests and answers of src/storage. Decoding
// checks what the storage layer cannot see (enum values, oneofs, fields stratakv does not
// support) and says what was wrong; the storage layer checks keys, sizes and Txn rules with
// etcd's messages. Encoding builds fixed-shape objects with no defaults to fill, because this
// is the per-request path.

import type {
  Compare,
  CompareResult,
  DeleteRangeRequest,
  KeyValue,
  PutRequest,
  RangeRequest,
  RangeResponse,
  TxnOperation,
  TxnOperationResponse,
  TxnRequest,
} from '../storage/index.ts';
import { assertNever } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { GrpcStatus } from '../util/etcd-errors.ts';
import type { ResponseHeaderInfo } from './backend.ts';
import type {
  WireCompare,
  WireDeleteRangeRequest,
  WireKeyValue,
  WireOperationHeader,
  WirePutRequest,
  WireRangeRequest,
  WireRangeResponse,
  WireRequestOp,
  WireResponseHeader,
  WireResponseOp,
  WireTxnRequest,
} from './etcd-wire.ts';
import { RangeSortOrder, RangeSortTarget, WireCompareResult, WireCompareTarget } from './etcd-wire.ts';

const EMPTY = new Uint8Array(0);

/**
 * LEASE_NOT_FOUND_STATUS is etcd's answer to a Put or Txn naming a lease: stratakv has no
 * leases yet, so every lease is one the server does not know (etcd's ErrGRPCLeaseNotFound).
 * It is a status the services send as it is; it has no code in our catalogue.
 */
export const LEASE_NOT_FOUND_STATUS = { code: GrpcStatus.NOT_FOUND, details: 'etcdserver: requested lease not found' } as const;

/**
 * WireStatusError carries a gRPC status the services answer exactly as given: an etcd
 * answer with no code in our catalogue (LEASE_NOT_FOUND_STATUS).
 */
export class WireStatusError extends Error {
  override name = 'WireStatusError';
  readonly status: { readonly code: number; readonly details: string };

  constructor(status: { readonly code: number; readonly details: string }) {
    super(status.details);
    this.status = status;
  }
}

/** decodeRangeRequest maps a RangeRequest to the storage's request (sorting and filters aside). */
export function decodeRangeRequest(wire: WireRangeRequest): RangeRequest {
  return {
    type: 'range',
    key: wire.key ?? EMPTY,
    rangeEnd: wire.range_end ?? EMPTY,
    limit: wire.limit ?? 0,
    revision: wire.revision ?? 0,
    keysOnly: wire.keys_only === true,
    countOnly: wire.count_only === true,
    serializable: wire.serializable === true,
  };
}

/**
 * needsRangePostProcessing tells whether a Range asks for sorting or revision filters,
 * which the service does on the whole range (as etcd does), then applies the limit. It also
 * refuses unknown sort enums.
 */
export function needsRangePostProcessing(wire: WireRangeRequest): boolean {
  const order = wire.sort_order ?? RangeSortOrder.NONE;
  const target = wire.sort_target ?? RangeSortTarget.KEY;
  if (order !== RangeSortOrder.NONE && order !== RangeSortOrder.ASCEND && order !== RangeSortOrder.DESCEND) {
    throw invalid(`range: unknown sort_order ${order} (NONE=0, ASCEND=1, DESCEND=2)`);
  }
  if (!Number.isInteger(target) || target < RangeSortTarget.KEY || target > RangeSortTarget.VALUE) {
    throw invalid(`range: unknown sort_target ${target} (KEY=0, VERSION=1, CREATE=2, MOD=3, VALUE=4)`);
  }
  return (
    order !== RangeSortOrder.NONE ||
    target !== RangeSortTarget.KEY ||
    (wire.min_mod_revision ?? 0) !== 0 ||
    (wire.max_mod_revision ?? 0) !== 0 ||
    (wire.min_create_revision ?? 0) !== 0 ||
    (wire.max_create_revision ?? 0) !== 0
  );
}

/**
 * postProcessRange is etcd's applierV3backend.Range after its read: drop pairs outside the
 * mod/create revision bounds, sort (a non-KEY target with order NONE sorts ascending, since
 * the keys already come by key), then apply the limit and set `more`. `answer` must be the
 * whole range (read without a limit). `count` stays the count of the whole range, as etcd's.
 */
export function postProcessRange(wire: WireRangeRequest, answer: RangeResponse): RangeResponse {
  let kvs = answer.kvs;
  const maxMod = wire.max_mod_revision ?? 0;
  const minMod = wire.min_mod_revision ?? 0;
  const maxCreate = wire.max_create_revision ?? 0;
  const minCreate = wire.min_create_revision ?? 0;
  if (maxMod !== 0 || minMod !== 0 || maxCreate !== 0 || minCreate !== 0) {
    kvs = kvs.filter(
      (kv) =>
        !(maxMod !== 0 && kv.modRevision > maxMod) &&
        !(minMod !== 0 && kv.modRevision < minMod) &&
        !(maxCreate !== 0 && kv.createRevision > maxCreate) &&
        !(minCreate !== 0 && kv.createRevision < minCreate),
    );
  }
  const target = wire.sort_target ?? RangeSortTarget.KEY;
  let order = wire.sort_order ?? RangeSortOrder.NONE;
  if (target !== RangeSortTarget.KEY && order === RangeSortOrder.NONE) order = RangeSortOrder.ASCEND;
  if (order !== RangeSortOrder.NONE) {
    const compare = sortComparator(target);
    // The pairs come ascending by key; a stable sort keeps that order between equal targets.
    const sorted = kvs === answer.kvs ? [...kvs] : (kvs as KeyValue[]);
    sorted.sort(order === RangeSortOrder.ASCEND ? compare : (a, b) => compare(b, a));
    kvs = sorted;
  }
  const limit = wire.limit ?? 0;
  let more = false;
  if (limit > 0 && kvs.length > limit) {
    kvs = kvs.slice(0, limit);
    more = true;
  }
  return { type: 'range', revision: answer.revision, kvs, more, count: answer.count };
}

function sortComparator(target: number): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case RangeSortTarget.KEY:
      return (a, b) => Buffer.compare(a.key, b.key);
    case RangeSortTarget.VERSION:
      return (a, b) => a.version - b.version;
    case RangeSortTarget.CREATE:
      return (a, b) => a.createRevision - b.createRevision;
    case RangeSortTarget.MOD:
      return (a, b) => a.modRevision - b.modRevision;
    default:
      return (a, b) => Buffer.compare(a.value, b.value);
  }
}

/** decodePutRequest maps a PutRequest, refusing leases and the fields stratakv lacks. */
export function decodePutRequest(wire: WirePutRequest): PutRequest {
  if (wire.ignore_value === true) throw unimplemented('put: ignore_value is not supported by stratakv yet');
  if (wire.ignore_lease === true) throw unimplemented('put: ignore_lease is not supported by stratakv yet (there are no leases)');
  // A bigint from the codec, a number inside a Txn (etcd-wire.ts): either way 0 is none.
  if (wire.lease !== undefined && wire.lease !== 0n && wire.lease !== 0) throw new WireStatusError(LEASE_NOT_FOUND_STATUS);
  return { type: 'put', key: wire.key ?? EMPTY, value: wire.value ?? EMPTY, prevKv: wire.prev_kv === true };
}

/** decodeDeleteRangeRequest maps a DeleteRangeRequest. */
export function decodeDeleteRangeRequest(wire: WireDeleteRangeRequest): DeleteRangeRequest {
  return { type: 'deleteRange', key: wire.key ?? EMPTY, rangeEnd: wire.range_end ?? EMPTY, prevKv: wire.prev_kv === true };
}

/**
 * decodeTxnRequest maps a TxnRequest. Ranges inside a Txn may not sort or filter (the
 * storage answers them inside the Txn, and the service cannot post-process them there).
 */
export function decodeTxnRequest(wire: WireTxnRequest): TxnRequest {
  const compare = (wire.compare ?? []).map((each, index) => decodeCompare(each, index));
  return { type: 'txn', compare, success: decodeBranch(wire.success ?? [], 'success'), failure: decodeBranch(wire.failure ?? [], 'failure') };
}

function decodeBranch(branch: readonly WireRequestOp[], name: string): TxnOperation[] {
  return branch.map((op, index) => {
    if (op.request_put != null) return decodePutRequest(op.request_put);
    if (op.request_delete_range != null) return decodeDeleteRangeRequest(op.request_delete_range);
    if (op.request_range != null) {
      if (needsRangePostProcessing(op.request_range)) {
        throw unimplemented(`txn ${name}[${index}]: sorting or revision filters in a range inside a txn are not supported by stratakv yet`);
      }
      return decodeRangeRequest(op.request_range);
    }
    if (op.request_txn != null) throw unimplemented(`txn ${name}[${index}]: nested txn requests are not supported by stratakv yet`);
    throw invalid(`txn ${name}[${index}]: RequestOp has no request (set one of request_range, request_put, request_delete_range)`);
  });
}

function decodeCompare(wire: WireCompare, index: number): Compare {
  const result = compareResultOf(wire.result ?? WireCompareResult.EQUAL, index);
  const key = wire.key ?? EMPTY;
  const rangeEnd = wire.range_end ?? EMPTY;
  const target = wire.target ?? WireCompareTarget.VERSION;
  switch (target) {
    case WireCompareTarget.VALUE:
      return { target: 'value', result, key, rangeEnd, value: wire.value ?? EMPTY };
    case WireCompareTarget.VERSION:
      return { target: 'version', result, key, rangeEnd, number: wire.version ?? 0 };
    case WireCompareTarget.CREATE:
      return { target: 'createRevision', result, key, rangeEnd, number: wire.create_revision ?? 0 };
    case WireCompareTarget.MOD:
      return { target: 'modRevision', result, key, rangeEnd, number: wire.mod_revision ?? 0 };
    case WireCompareTarget.LEASE:
      return { target: 'lease', result, key, rangeEnd, lease: wire.lease ?? 0n };
    default:
      throw invalid(`txn compare[${index}]: unknown target ${target} (VERSION=0, CREATE=1, MOD=2, VALUE=3, LEASE=4)`);
  }
}

function compareResultOf(result: number, index: number): CompareResult {
  switch (result) {
    case WireCompareResult.EQUAL:
      return 'equal';
    case WireCompareResult.GREATER:
      return 'greater';
    case WireCompareResult.LESS:
      return 'less';
    case WireCompareResult.NOT_EQUAL:
      return 'notEqual';
    default:
      throw invalid(`txn compare[${index}]: unknown result ${result} (EQUAL=0, GREATER=1, LESS=2, NOT_EQUAL=3)`);
  }
}

/**
 * requestBytesEstimate is the bytes of keys and values a write carries: a lower bound of its
 * encoded size, checked against maxRequestBytes before anything is proposed (etcd checks the
 * encoded Raft request; the backend checks ours exactly).
 */
export function requestBytesEstimate(request: PutRequest | DeleteRangeRequest | TxnRequest): number {
  switch (request.type) {
    case 'put':
      return request.key.byteLength + request.value.byteLength;
    case 'deleteRange':
      return request.key.byteLength + (request.rangeEnd?.byteLength ?? 0);
    case 'txn': {
      let bytes = 0;
      for (const compare of request.compare) {
        bytes += compare.key.byteLength + (compare.rangeEnd?.byteLength ?? 0) + (compare.target === 'value' ? compare.value.byteLength : 0);
      }
      for (const operation of request.success) bytes += operationBytes(operation);
      for (const operation of request.failure) bytes += operationBytes(operation);
      return bytes;
    }
    default:
      return assertNever(request, 'write request');
  }
}

function operationBytes(operation: TxnOperation): number {
  return operation.type === 'range' ? operation.key.byteLength + (operation.rangeEnd?.byteLength ?? 0) : requestBytesEstimate(operation);
}

/** encodeHeader is the wire header: this member now, with the answer's revision. */
export function encodeHeader(info: ResponseHeaderInfo, revision: number): WireResponseHeader {
  return { cluster_id: info.clusterId, member_id: info.memberId, revision, raft_term: info.raftTerm };
}

/** encodeKeyValue is mvccpb.KeyValue. */
export function encodeKeyValue(kv: KeyValue): WireKeyValue {
  return { key: kv.key, create_revision: kv.createRevision, mod_revision: kv.modRevision, version: kv.version, value: kv.value, lease: kv.lease };
}

/** encodeRangeResponse is etcdserverpb.RangeResponse. */
export function encodeRangeResponse(header: WireOperationHeader, answer: RangeResponse): WireRangeResponse {
  return { header, kvs: answer.kvs.map(encodeKeyValue), more: answer.more, count: answer.count };
}

/**
 * encodeTxnOperationResponse is one ResponseOp. As in etcd, the responses inside a Txn carry a
 * header holding only the revision.
 */
export function encodeTxnOperationResponse(answer: TxnOperationResponse): WireResponseOp {
  const header = { revision: answer.revision };
  switch (answer.type) {
    case 'range':
      return { response_range: encodeRangeResponse(header, answer) };
    case 'put':
      return { response_put: answer.prevKv === undefined ? { header } : { header, prev_kv: encodeKeyValue(answer.prevKv) } };
    case 'deleteRange':
      return { response_delete_range: { header, deleted: answer.deleted, prev_kvs: answer.prevKvs.map(encodeKeyValue) } };
    default:
      return assertNever(answer, 'txn operation response');
  }
}

function invalid(message: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, message);
}

function unimplemented(message: string): StrataError {
  return new StrataError(ErrorCode.UNIMPLEMENTED, message);
}

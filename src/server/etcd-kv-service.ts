// etcdserverpb.KV: Range, Put, DeleteRange and Txn over an EtcdBackend; Compact answers
// UNIMPLEMENTED until the store keeps a revision history. With a tracer every call is a SERVER
// span (`etcdserverpb.KV/Put`, ...), whose sampled context goes with the request to the backend.

import type { Metadata, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { SpanContext, Tracer } from '@opentelemetry/api';

import type { DeleteRangeRequest, KvResponse, PutRequest, TxnRequest } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { EtcdBackend } from './backend.ts';
import {
  decodeDeleteRangeRequest,
  decodePutRequest,
  decodeRangeRequest,
  decodeTxnRequest,
  encodeHeader,
  encodeKeyValue,
  encodeRangeResponse,
  encodeTxnOperationResponse,
  needsRangePostProcessing,
  postProcessRange,
  requestBytesEstimate,
} from './etcd-request-mapping.ts';
import type {
  WireDeleteRangeRequest,
  WireDeleteRangeResponse,
  WirePutRequest,
  WirePutResponse,
  WireRangeRequest,
  WireRangeResponse,
  WireTxnRequest,
  WireTxnResponse,
} from './etcd-wire.ts';
import type { EtcdServerLogger, UnaryTracing } from './unary-call.ts';
import { isMirrorReader, unaryCall } from './unary-call.ts';

/** KvServiceOptions configures the KV service. */
export interface KvServiceOptions {
  readonly backend: EtcdBackend;
  /** Writes whose keys and values pass this are refused with etcd's "request is too large". */
  readonly maxRequestBytes: number;
  readonly logger: EtcdServerLogger | undefined;
  /** Undefined: no spans (the untraced call wrapper). */
  readonly tracer?: Tracer | undefined;
}

/** KV_SERVICE_NAME is etcd's fully qualified KV service: the first half of its span names. */
export const KV_SERVICE_NAME = 'etcdserverpb.KV';

/** createKvService implements etcdserverpb.KV. */
export function createKvService(options: KvServiceOptions): UntypedServiceImplementation {
  const { backend, maxRequestBytes, logger, tracer } = options;
  const hasLeader = (): boolean => backend.hasLeader();

  const checkSize = (request: PutRequest | DeleteRangeRequest | TxnRequest): void => {
    const bytes = requestBytesEstimate(request);
    if (bytes > maxRequestBytes) {
      throw new StrataError(ErrorCode.REQUEST_TOO_LARGE, 'etcdserver: request is too large', { details: { bytes, maxRequestBytes } });
    }
  };

  const range = async (wire: WireRangeRequest, signal: AbortSignal, metadata: Metadata, traceParent: SpanContext | undefined): Promise<WireRangeResponse> => {
    const request = decodeRangeRequest(wire);
    const options = { signal, mirrorReader: isMirrorReader(metadata), traceParent };
    if (!needsRangePostProcessing(wire)) {
      const answer = expect(await backend.kv(request, options), 'range');
      return encodeRangeResponse(encodeHeader(backend.header(), answer.revision), answer);
    }
    // Sorting and filters need the whole range; the limit applies afterwards, as in etcd.
    const whole = expect(await backend.kv({ ...request, limit: 0 }, options), 'range');
    const answer = request.countOnly === true ? whole : postProcessRange(wire, whole);
    return encodeRangeResponse(encodeHeader(backend.header(), answer.revision), answer);
  };

  const put = async (wire: WirePutRequest, signal: AbortSignal, _metadata: Metadata, traceParent: SpanContext | undefined): Promise<WirePutResponse> => {
    const request = decodePutRequest(wire);
    checkSize(request);
    const answer = expect(await backend.kv(request, { signal, traceParent }), 'put');
    const header = encodeHeader(backend.header(), answer.revision);
    return answer.prevKv === undefined ? { header } : { header, prev_kv: encodeKeyValue(answer.prevKv) };
  };

  const deleteRange = async (wire: WireDeleteRangeRequest, signal: AbortSignal, _metadata: Metadata, traceParent: SpanContext | undefined): Promise<WireDeleteRangeResponse> => {
    const request = decodeDeleteRangeRequest(wire);
    checkSize(request);
    const answer = expect(await backend.kv(request, { signal, traceParent }), 'deleteRange');
    return { header: encodeHeader(backend.header(), answer.revision), deleted: answer.deleted, prev_kvs: answer.prevKvs.map(encodeKeyValue) };
  };

  const txn = async (wire: WireTxnRequest, signal: AbortSignal, metadata: Metadata, traceParent: SpanContext | undefined): Promise<WireTxnResponse> => {
    const request = decodeTxnRequest(wire);
    checkSize(request);
    const answer = expect(await backend.kv(request, { signal, mirrorReader: isMirrorReader(metadata), traceParent }), 'txn');
    return { header: encodeHeader(backend.header(), answer.revision), succeeded: answer.succeeded, responses: answer.responses.map(encodeTxnOperationResponse) };
  };

  const compact = (): Promise<never> =>
    Promise.reject(new StrataError(ErrorCode.UNIMPLEMENTED, 'compact: stratakv keeps no revision history yet, so there is nothing to compact'));

  const tracing = (method: string): UnaryTracing | undefined => (tracer === undefined ? undefined : { tracer, service: KV_SERVICE_NAME, method });
  return {
    Range: unaryCall('KV.Range', range, logger, hasLeader, tracing('Range')),
    Put: unaryCall('KV.Put', put, logger, hasLeader, tracing('Put')),
    DeleteRange: unaryCall('KV.DeleteRange', deleteRange, logger, hasLeader, tracing('DeleteRange')),
    Txn: unaryCall('KV.Txn', txn, logger, hasLeader, tracing('Txn')),
    Compact: unaryCall('KV.Compact', compact, logger, hasLeader, tracing('Compact')),
  };
}

// expect checks that the backend answered the kind of request it was asked.
function expect<T extends KvResponse['type']>(answer: KvResponse, type: T): Extract<KvResponse, { type: T }> {
  assert(answer.type === type, `backend answered a ${type} request with a ${answer.type} response`);
  return answer as Extract<KvResponse, { type: T }>;
}

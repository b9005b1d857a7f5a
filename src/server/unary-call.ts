// The one wrapper every etcd unary method goes through: it hands the handler an AbortSignal
// that fires when the client cancels or its deadline passes, and turns a rejection into
// etcd's status. It is on the per-request path, so it allocates only the controller, one
// listener and the handler's promise. With a tracer (UnaryTracing) each call is also a SERVER
// span, joined to the trace of a client that sends a W3C traceparent; without one the
// untraced wrapper is used, and tracing costs nothing per call.

import type { handleUnaryCall, Metadata, ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import type { Span, SpanContext, Tracer } from '@opentelemetry/api';
import { SpanKind } from '@opentelemetry/api';
import { ATTR_RPC_GRPC_STATUS_CODE, ATTR_RPC_METHOD, ATTR_RPC_SERVICE, ATTR_RPC_SYSTEM, contextOf, failSpan, parseTraceparent, sampledContext, TRACEPARENT_HEADER, TRACESTATE_HEADER } from '../obs/index.ts';

import { AssertionFailure } from '../util/assert.ts';
import { ErrorCode, isStrataError, StrataError } from '../util/errors.ts';
import { toGrpcStatus } from '../util/etcd-errors.ts';
import { WireStatusError } from './etcd-request-mapping.ts';

/** EtcdServerLogger receives what the server cannot answer a client about. */
export interface EtcdServerLogger {
  error(message: string, fields: Record<string, unknown>): void;
}

/**
 * UnaryHandler runs one call; it rejects with a StrataError for an operating error.
 * `traceParent` is the call's span context when it is traced and sampled (else undefined):
 * the handler passes it on, so the work it asks for joins the call's trace.
 */
export type UnaryHandler<Request, Response> = (request: Request, signal: AbortSignal, metadata: Metadata, traceParent: SpanContext | undefined) => Promise<Response>;

/** UnaryTracing makes every call of one method a SERVER span named `etcdserverpb.<service>/<method>`, as gRPC's own instrumentation names it. */
export interface UnaryTracing {
  readonly tracer: Tracer;
  /** The fully qualified service, e.g. `etcdserverpb.KV`. */
  readonly service: string;
  /** The method, e.g. `Put`. */
  readonly method: string;
}

/** MIRROR_READER_METADATA marks a call allowed to read a read-only mirror linearizably (src/client's retry-policy.ts sends it). */
export const MIRROR_READER_METADATA = 'stratakv-mirror-reader';

/** isMirrorReader tells whether a call carries MIRROR_READER_METADATA. */
export function isMirrorReader(metadata: Metadata): boolean {
  return metadata.get(MIRROR_READER_METADATA).length > 0;
}

/** REQUIRE_LEADER_METADATA is etcd's metadata key (clientv3.WithRequireLeader) asking to be refused when the member has no leader. */
export const REQUIRE_LEADER_METADATA = 'hasleader';

// Built once: the answer to every call that requires a leader while there is none.
const NO_LEADER_STATUS = toGrpcStatus(new StrataError(ErrorCode.NO_LEADER, 'etcdserver: no leader'));

/**
 * unaryCall adapts a handler to grpc-js. A call whose metadata carries `hasleader: true`
 * (etcd clients send it on watches, careful clients on every call) is refused at once with
 * UNAVAILABLE "etcdserver: no leader" while `hasLeader()` says this member knows none, as
 * etcd's interceptor does: a member cut off by a partition then sends the client on to
 * another member at once instead of holding the call until its deadline. An AssertionFailure from below is a programmer
 * error: the client gets UNKNOWN and the failure is rethrown outside the promise chain so
 * that it stops the process (ARCHITECTURE.md, "Errors"). Errors that are neither StrataErrors nor
 * assertions are logged, since they are bugs the client cannot act on.
 */
export function unaryCall<Request, Response>(
  method: string,
  handler: UnaryHandler<Request, Response>,
  logger: EtcdServerLogger | undefined,
  hasLeader: () => boolean,
  tracing?: UnaryTracing,
): handleUnaryCall<Request, Response> {
  if (tracing !== undefined) return tracedUnaryCall(method, handler, logger, hasLeader, tracing);
  return (call: ServerUnaryCall<Request, Response>, callback: sendUnaryData<Response>) => answerCall(method, handler, logger, hasLeader, call, callback, undefined);
}

// tracedUnaryCall is unaryCall with a SERVER span around each call: the parent is the
// client's W3C traceparent (metadata), the span's sampled context goes to the handler, and the
// answer ends it with the gRPC status (ERROR and the error's code when the call failed).
function tracedUnaryCall<Request, Response>(
  method: string,
  handler: UnaryHandler<Request, Response>,
  logger: EtcdServerLogger | undefined,
  hasLeader: () => boolean,
  tracing: UnaryTracing,
): handleUnaryCall<Request, Response> {
  const { tracer } = tracing;
  const spanName = `${tracing.service}/${tracing.method}`;
  return (call: ServerUnaryCall<Request, Response>, callback: sendUnaryData<Response>) => {
    const parent = parseTraceparent(call.metadata.get(TRACEPARENT_HEADER)[0], call.metadata.get(TRACESTATE_HEADER)[0]);
    const span = tracer.startSpan(spanName, { kind: SpanKind.SERVER }, contextOf(parent));
    if (span.isRecording()) span.setAttributes({ [ATTR_RPC_SYSTEM]: 'grpc', [ATTR_RPC_SERVICE]: tracing.service, [ATTR_RPC_METHOD]: tracing.method });
    answerCall(method, handler, logger, hasLeader, call, callback, span);
  };
}

// answerCall runs one call (see unaryCall) and, when it is traced, ends its span with the answer.
function answerCall<Request, Response>(
  method: string,
  handler: UnaryHandler<Request, Response>,
  logger: EtcdServerLogger | undefined,
  hasLeader: () => boolean,
  call: ServerUnaryCall<Request, Response>,
  callback: sendUnaryData<Response>,
  span: Span | undefined,
): void {
  if (!hasLeader() && call.metadata.get(REQUIRE_LEADER_METADATA)[0] === 'true') {
    if (span !== undefined) endServerSpan(span, NO_LEADER_STATUS.code, new StrataError(ErrorCode.NO_LEADER, NO_LEADER_STATUS.details));
    callback(NO_LEADER_STATUS);
    return;
  }
  const controller = new AbortController();
  // grpc-js also reports 'cancelled' when the stream closes after the answer was sent:
  // aborting then would only cost a DOMException per call (and wake the handler's listeners).
  let answered = false;
  call.once('cancelled', () => {
    if (!answered) controller.abort();
  });
  handler(call.request, controller.signal, call.metadata, span === undefined ? undefined : sampledContext(span)).then(
    (response) => {
      answered = true;
      if (span !== undefined) endServerSpan(span, 0, undefined);
      callback(null, response);
    },
    (error: unknown) => {
      answered = true;
      const status = errorStatus(method, error, logger);
      if (span !== undefined) endServerSpan(span, status.code, error);
      callback(status);
    },
  );
}

function endServerSpan(span: Span, grpcStatus: number, error: unknown): void {
  span.setAttribute(ATTR_RPC_GRPC_STATUS_CODE, grpcStatus);
  if (error !== undefined) failSpan(span, error);
  span.end();
}

/**
 * errorStatus is the status a failed call answers (unary or streaming): etcd's for a
 * StrataError (toGrpcStatus). An AssertionFailure is rethrown outside the promise chain so
 * that it stops the process; any other unexpected error is logged.
 */
export function errorStatus(method: string, error: unknown, logger: EtcdServerLogger | undefined): { code: number; details: string } {
  if (error instanceof WireStatusError) return { code: error.status.code, details: error.status.details };
  if (!isStrataError(error)) {
    if (error instanceof AssertionFailure) {
      queueMicrotask(() => {
        throw error;
      });
    } else if (!(error instanceof Error && error.name === 'AbortError')) {
      logger?.error('etcd call failed with an unexpected error', { method, error });
    }
  }
  return toGrpcStatus(error);
}

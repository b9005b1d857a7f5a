// stratakv.admin.Admin (proto/stratakv/admin.proto), served by startEtcdServer beside etcd's
// services on the same port when it is given a LogDeltaSource. Its one method today is
// LogStream, the log-delta stream: this file connects a gRPC bidirectional call to src/diff's
// LogDeltaProducer, which owns the stream's rules (what is sent, the window, the chunk sizes).
//
// One call goes: waiting for its start (at most START_WAIT_MS_MAX) → running (the producer
// sends; acks reach it as they arrive) → ended (the producer's end chunk, then the call ends
// OK) or failed (the call ends with the error's gRPC status, its message, and its catalogue
// code in the `stratakv-code` trailer, as the peer protocol does; for INVALID_ARGUMENT the
// field in `stratakv-field`). A cancel by the consumer, a malformed request (INVALID_ARGUMENT
// naming the field), a consumer that takes nothing for ACK_STALL_MS_MAX (TIMEOUT) and the
// member stopping (STOPPED) end the call from any state.
// At most LOG_STREAMS_MAX calls run at once; more are refused UNAVAILABLE.
// LogHold, the stream's consumers' unary call, keeps the log from an index on for a while on
// every member (src/node/log-holds.ts) through the source's holdLog; a source without one
// answers UNIMPLEMENTED. Its errors travel as the unary methods' do.
// Given a DigestPinSource, the service also answers the Merkle diff's Diff* methods
// (diff-service.ts); without one they answer UNIMPLEMENTED. The unary methods of the other
// parts are assembled here too, each from its own file when its option is given: integrity,
// ClusterInfo, migration, and mirror mode (mirror-service.ts, over the server's backend and,
// for MirrorScan, the digest pins).

import { loadPackageDefinition, Metadata, status as GrpcStatusCode } from '@grpc/grpc-js';
import type { GrpcObject, ServerDuplexStream, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

import type { DigestPinSource, LogChunk, LogDeltaSource, WireLogChunk, WireLogStreamRequest } from '../diff/index.ts';
import { ACK_STALL_MS_MAX, ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS, CODE_METADATA_KEY, FIELD_METADATA_KEY, LogDeltaProducer, parseLogStreamRequest, toWireChunk } from '../diff/index.ts';
import { assert } from '../util/assert.ts';
import type { Clock } from '../util/clock.ts';
import { SYSTEM_CLOCK } from '../util/clock.ts';
import { ErrorCode, isStrataError, StrataError } from '../util/errors.ts';
import { toGrpcStatus } from '../util/etcd-errors.ts';
import { checkLogHoldRequest } from '../node/index.ts';
import type { ClusterInfoNode } from './cluster-info-service.ts';
import { createClusterInfoService } from './cluster-info-service.ts';
import { createDiffService, unary } from './diff-service.ts';
import type { IntegrityNode } from './integrity-service.ts';
import { createIntegrityService } from './integrity-service.ts';
import type { MigrationNode } from './migration-service.ts';
import { createMigrationService } from './migration-service.ts';
import type { MirrorBackend } from './mirror-service.ts';
import { createMirrorService } from './mirror-service.ts';
import type { EtcdServerLogger } from './unary-call.ts';
import { errorStatus } from './unary-call.ts';

/** LOG_STREAMS_MAX bounds the log streams one server runs at once (following ones last long). */
export const LOG_STREAMS_MAX = 32;
/** START_WAIT_MS_MAX: a call that sends no start request this long after it opened is ended (INVALID_ARGUMENT). */
export const START_WAIT_MS_MAX = 10_000;
/** LOG_HOLD_TIMEOUT_MS_MAX bounds a LogHold request's timeout_ms (the wait for the hold to be applied). */
export const LOG_HOLD_TIMEOUT_MS_MAX = 60_000;

/** WireLogHoldRequest is admin.proto's LogHoldRequest as proto-loader gives it. */
export interface WireLogHoldRequest {
  consumer?: string;
  index?: number;
  ttl_ms?: number;
  timeout_ms?: number;
}

/** WireLogHoldResponse is admin.proto's LogHoldResponse. */
export interface WireLogHoldResponse {
  member_id: number;
  expires_at_ms: number;
}

const METHOD = 'Admin.LogStream';

let loaded: ServiceDefinition | undefined;

/** loadAdminService loads admin.proto's stratakv.admin.Admin once per process. */
export function loadAdminService(): ServiceDefinition {
  if (loaded !== undefined) return loaded;
  const grpcObject = loadPackageDefinition(loadSync(ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS));
  const stratakv = grpcObject['stratakv'] as GrpcObject | undefined;
  const admin = stratakv?.['admin'] as GrpcObject | undefined;
  const constructor = admin?.['Admin'] as { service?: ServiceDefinition } | undefined;
  assert(constructor?.service !== undefined, 'admin.proto has no service stratakv.admin.Admin');
  loaded = constructor.service;
  return loaded;
}

/** AdminServiceOptions configure createAdminService. */
export interface AdminServiceOptions {
  /** The member's committed log (raftNodeLogSource(node) in production). */
  readonly source: LogDeltaSource;
  readonly logger?: EtcdServerLogger | undefined;
  /** The clock of the stream's windows and heartbeats (default SYSTEM_CLOCK). */
  readonly clock?: Clock;
  /** The member's digest views, for the Merkle diff (raftNodeDigestPins(node) in production). */
  readonly digestPins?: DigestPinSource | undefined;
  /** The member's integrity checks and rebuild (the RaftNode itself in production). */
  readonly integrity?: IntegrityNode | undefined;
  /** The member's view of the cluster, for ClusterInfo (cluster-info-service.ts; the RaftNode itself in production). */
  readonly clusterInfo?: ClusterInfoNode | undefined;
  /** The member's migration calls: the journal, replication, membership steps (the RaftNode itself in production). */
  readonly migration?: MigrationNode | undefined;
  /** The backend that runs mirror mode's MirrorRead and MirrorWrite (mirror-service.ts; startEtcdServer's backend); with digestPins, MirrorScan too. */
  readonly mirror?: MirrorBackend | undefined;
}

/** AdminService is the service's implementation, and a way to end its calls when the server closes. */
export interface AdminService {
  readonly implementation: UntypedServiceImplementation;
  /**
   * endAll ends every running call with STOPPED (the server is closing). grpc-js's
   * forceShutdown does not cancel calls when channelz is off (it destroys only the sessions
   * channelz tracks), and a following stream would otherwise hold tryShutdown until it ends.
   */
  endAll(): void;
}

/** createAdminService implements stratakv.admin.Admin over `options.source` (see the file comment). */
export function createAdminService(options: AdminServiceOptions): AdminService {
  const clock = options.clock ?? SYSTEM_CLOCK;
  // Invariant: running.size <= LOG_STREAMS_MAX; a call is in it from its start to its end.
  const running = new Set<LogStreamCall>();
  const logStream = (call: ServerDuplexStream<WireLogStreamRequest, WireLogChunk>): void => {
    if (running.size >= LOG_STREAMS_MAX) {
      fail(call, new StrataError(ErrorCode.UNAVAILABLE, `${LOG_STREAMS_MAX} log streams run here already; retry later or ask another member`), options.logger);
      return;
    }
    const stream: LogStreamCall = new LogStreamCall(call, options.source, clock, options.logger, () => running.delete(stream));
    running.add(stream);
    stream.open();
  };
  const diff = options.digestPins === undefined ? undefined : createDiffService({ pins: options.digestPins, logger: options.logger, clock });
  const { source } = options;
  const holdLog = source.holdLog?.bind(source);
  const logHold =
    holdLog === undefined
      ? undefined
      : unary('Admin.LogHold', options.logger, async (request: WireLogHoldRequest, signal): Promise<WireLogHoldResponse> => {
          const consumer = request.consumer ?? '';
          const index = request.index ?? 0;
          const ttlMs = request.ttl_ms ?? 0;
          checkLogHoldRequest(consumer, index, ttlMs);
          const timeoutMs = Math.min(request.timeout_ms ?? 0, LOG_HOLD_TIMEOUT_MS_MAX);
          const answer = await holdLog(consumer, index, ttlMs, { signal, ...(timeoutMs > 0 ? { timeoutMs } : {}) });
          return { member_id: answer.memberId, expires_at_ms: answer.expiresAtMs };
        });
  return {
    implementation: {
      LogStream: logStream,
      ...(logHold === undefined ? {} : { LogHold: logHold }),
      ...diff?.implementation,
      ...(options.integrity === undefined ? {} : createIntegrityService({ node: options.integrity, logger: options.logger })),
      ...(options.clusterInfo === undefined ? {} : createClusterInfoService({ node: options.clusterInfo, logger: options.logger })),
      ...(options.migration === undefined ? {} : createMigrationService({ node: options.migration, logger: options.logger })),
      ...(options.mirror === undefined ? {} : createMirrorService({ backend: options.mirror, pins: options.digestPins, logger: options.logger })),
    },
    endAll: () => {
      diff?.close();
      for (const stream of [...running]) stream.end(new StrataError(ErrorCode.STOPPED, 'the server is closing; resume from another member'));
    },
  };
}

// LogStreamCall is one call's glue between grpc-js and the producer.
class LogStreamCall {
  readonly #call: ServerDuplexStream<WireLogStreamRequest, WireLogChunk>;
  readonly #source: LogDeltaSource;
  readonly #clock: Clock;
  readonly #logger: EtcdServerLogger | undefined;
  readonly #onEnded: () => unknown;
  readonly #cancelled = new AbortController();
  #producer: LogDeltaProducer | undefined;
  #ended = false;
  #startTimer: ReturnType<Clock['setTimeout']> | undefined;
  // Woken by 'drain', a cancel or the end of the call, while a write waits.
  #drainWaiter: (() => void) | undefined;

  constructor(call: ServerDuplexStream<WireLogStreamRequest, WireLogChunk>, source: LogDeltaSource, clock: Clock, logger: EtcdServerLogger | undefined, onEnded: () => unknown) {
    this.#call = call;
    this.#source = source;
    this.#clock = clock;
    this.#logger = logger;
    this.#onEnded = onEnded;
  }

  open(): void {
    const call = this.#call;
    call.on('data', (wire: WireLogStreamRequest) => this.#onRequest(wire));
    call.on('drain', () => this.#drainWaiter?.());
    call.once('cancelled', () => this.end(new StrataError(ErrorCode.CANCELED, 'the consumer cancelled the log stream')));
    call.on('error', () => this.end(new StrataError(ErrorCode.CANCELED, 'the log stream broke')));
    this.#startTimer = this.#clock.setTimeout(() => {
      this.end(new StrataError(ErrorCode.INVALID_ARGUMENT, `log stream: no start request within ${START_WAIT_MS_MAX} ms`, { details: { field: 'start' } }));
    }, START_WAIT_MS_MAX);
  }

  #onRequest(wire: WireLogStreamRequest): void {
    if (this.#ended) return;
    let request;
    try {
      request = parseLogStreamRequest(wire);
    } catch (error) {
      this.end(error);
      return;
    }
    if (request.type === 'ack') {
      if (this.#producer === undefined) {
        this.end(new StrataError(ErrorCode.INVALID_ARGUMENT, 'log stream: an ack came before the start request', { details: { field: 'ack' } }));
        return;
      }
      this.#producer.acknowledge(request.ack);
      return;
    }
    if (this.#producer !== undefined) {
      this.end(new StrataError(ErrorCode.INVALID_ARGUMENT, 'log stream: a second start request; a call streams from one start', { details: { field: 'start' } }));
      return;
    }
    if (this.#startTimer !== undefined) this.#clock.clearTimeout(this.#startTimer);
    const producer = new LogDeltaProducer({
      start: request.start,
      source: this.#source,
      sink: { send: (chunk) => this.#send(chunk) },
      clock: this.#clock,
      signal: this.#cancelled.signal,
    });
    this.#producer = producer;
    producer.run().then(
      () => this.end(undefined),
      (error: unknown) => this.end(error),
    );
  }

  // #send writes one chunk; it resolves at once, or, when grpc-js asks for a drain, once the
  // drain comes (TIMEOUT after ACK_STALL_MS_MAX without one, CANCELED when the call ends).
  #send(chunk: LogChunk): Promise<void> {
    if (this.#ended) return Promise.reject(new StrataError(ErrorCode.CANCELED, 'the log stream ended'));
    if (this.#call.write(toWireChunk(chunk))) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => finish(new StrataError(ErrorCode.TIMEOUT, `log stream: the consumer took no bytes for ${ACK_STALL_MS_MAX} ms`)), ACK_STALL_MS_MAX);
      const finish = (error?: StrataError): void => {
        this.#clock.clearTimeout(timer);
        this.#drainWaiter = undefined;
        if (error !== undefined) reject(error);
        else if (this.#ended) reject(new StrataError(ErrorCode.CANCELED, 'the log stream ended'));
        else resolve();
      };
      this.#drainWaiter = () => finish();
    });
  }

  /** end ends the call once: OK after the producer's end chunk (error undefined), else with the error's status and code. */
  end(error: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#startTimer !== undefined) this.#clock.clearTimeout(this.#startTimer);
    this.#cancelled.abort();
    this.#drainWaiter?.();
    this.#onEnded();
    if (error === undefined) {
      this.#call.end();
      return;
    }
    if (isStrataError(error, ErrorCode.CANCELED) && this.#call.cancelled) return;
    fail(this.#call, error, this.#logger);
  }
}

// fail ends a call with `error`: a StrataError keeps its own message and travels with its code
// in the `stratakv-code` trailer (the etcd table's fixed texts would lose what the stream
// knows, such as which chunk or field); anything else is errorStatus's (logged, or rethrown
// when it is an assertion).
function fail(call: ServerDuplexStream<WireLogStreamRequest, WireLogChunk>, error: unknown, logger: EtcdServerLogger | undefined): void {
  const metadata = new Metadata();
  if (isStrataError(error)) {
    metadata.set(CODE_METADATA_KEY, error.code);
    const field = error.details['field'];
    if (typeof field === 'string') metadata.set(FIELD_METADATA_KEY, field);
    call.emit('error', { code: toGrpcStatus(error).code, details: error.message, metadata });
    return;
  }
  const status = errorStatus(METHOD, error, logger);
  call.emit('error', { code: status.code === GrpcStatusCode.OK ? GrpcStatusCode.UNKNOWN : status.code, details: status.details, metadata });
}

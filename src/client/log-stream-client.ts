// LogStreamClient consumes stratakv's log-delta stream (proto/stratakv/admin.proto's
// Admin.LogStream): the committed entries of a cluster from an index, or its snapshot and then
// the entries after it when that index is compacted. `stratakv log` prints it; a mirror of one
// cluster into another (issue 16) tails it.
//
// stream() is an async generator of events (src/diff's LogDeltaEvent, plus the endpoint that
// sent each). Every chunk is checked by src/diff's LogDeltaCursor before it is yielded (CRC32c,
// order, continuity) and acknowledged once the caller asks for the next event, so a slow
// caller slows the server (its window holds at most four chunks) rather than filling memory.
// A broken stream — the connection lost, the member stopped, a damaged chunk, a stream silent
// for idleTimeoutMs (the server sends heartbeats every 2 s while it waits for commits) — is
// resumed on the next endpoint from the last verified index (and, within a snapshot, from the
// bytes verified): the caller sees nothing lost or repeated. Resuming is bounded:
// reconnectsMax attempts in a row without an accepted chunk, and reconnectTimeoutMs since the
// last accepted chunk, with the backoff EtcdClient uses after each round of endpoints.
// Errors are StrataErrors with the server's catalogue code and the endpoint.
//
// hold() is the stream's companion (Admin.LogHold): it has every member keep the log from an
// index on for a while, so that a consumer that stops reading (killed, restarting) finds its
// position still in the log when it comes back (src/node/log-holds.ts). Any member answers it
// (a follower passes it to the leader): it goes to the endpoints in turn as the admin calls do.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type { LogDeltaEvent, LogStreamStart, WireLogChunk, WireLogStreamRequest } from '../diff/index.ts';
import {
  ADMIN_PROTO_FILE,
  ADMIN_PROTO_LOADER_OPTIONS,
  ADMIN_SERVICE_NAME,
  checkStart,
  CODE_METADATA_KEY,
  FIELD_METADATA_KEY,
  fromWireChunk,
  IDLE_TIMEOUT_MS_DEFAULT,
  LogDeltaCursor,
  toWireStart,
} from '../diff/index.ts';
import { checkLogHoldRequest } from '../node/log-holds.ts';
import { ErrorCode, isErrorCode, StrataError } from '../util/errors.ts';
import { fromGrpcStatus } from '../util/etcd-errors.ts';
import { AdminCalls } from './admin-calls.ts';
import { EndpointPicker } from './endpoint-picker.ts';
import type { ClientLogger } from './etcd-client.ts';
import { backoffMs } from './retry-policy.ts';

/** RECONNECTS_MAX bounds the attempts in a row that accept no chunk before stream() fails. */
export const RECONNECTS_MAX = 20;
/** RECONNECT_TIMEOUT_MS_DEFAULT bounds the time since the last accepted chunk spent reconnecting. */
export const RECONNECT_TIMEOUT_MS_DEFAULT = 30_000;
/** LOG_STREAM_MESSAGE_BYTES_MAX is the largest chunk the client accepts (a 16 MiB snapshot block, one large entry). */
export const LOG_STREAM_MESSAGE_BYTES_MAX = 64 * 1024 * 1024;
/** LOG_HOLD_TIMEOUT_MS_DEFAULT is hold()'s deadline across the endpoints tried when none is given. */
export const LOG_HOLD_TIMEOUT_MS_DEFAULT = 10_000;

/** LogStreamClientOptions configure a LogStreamClient. */
export interface LogStreamClientOptions {
  /** Members of one cluster: `host:port` or `http://host:port`. */
  readonly endpoints: readonly string[];
  readonly logger?: ClientLogger;
}

/** LogStreamOptions say what to stream. */
export interface LogStreamOptions {
  /** The first index wanted (>= 1). */
  readonly fromIndex: number;
  /** Keep streaming new commits after catching up (never ends unless cancelled). */
  readonly follow?: boolean;
  /** The last index wanted (default: the commit index when the stream started; none when following). */
  readonly toIndex?: number;
  /** The largest chunk (64 KiB..4 MiB; default 4 MiB). */
  readonly maxChunkBytes?: number;
  /** Cancels the stream (CANCELED). */
  readonly signal?: AbortSignal;
  /** How long the stream may go without an accepted chunk while reconnecting (default 30 s). */
  readonly reconnectTimeoutMs?: number;
  /** How long a call may stay silent while the caller waits for it (default 10 s). */
  readonly idleTimeoutMs?: number;
  /** Attempts in a row without an accepted chunk (default RECONNECTS_MAX). */
  readonly reconnectsMax?: number;
}

/** LogHoldOptions bound one hold() call. */
export interface LogHoldOptions {
  /** The deadline across every endpoint tried (default LOG_HOLD_TIMEOUT_MS_DEFAULT). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal | undefined;
}

/** LogHoldAnswer is a member's answer to a hold: who applied it, and when it expires by that member's wall clock (0 for a release). */
export interface LogHoldAnswer {
  readonly memberId: number;
  readonly expiresAtMs: number;
  readonly endpoint: string;
}

/** LogStreamEvent is one event of the stream, with the endpoint that sent it. */
export type LogStreamEvent = LogDeltaEvent & { readonly endpoint: string };

// What an attempt to stream from one endpoint ended with.
interface AttemptFailure {
  readonly error: StrataError;
  /** Whether the next endpoint may resume the stream. */
  readonly retryable: boolean;
}

/** LogStreamClient consumes the log-delta stream of a stratakv cluster (see the file comment). */
export class LogStreamClient {
  readonly #picker: EndpointPicker;
  readonly #logger: ClientLogger | undefined;
  readonly #method: protoLoader.MethodDefinition<WireLogStreamRequest, WireLogChunk>;
  readonly #connections = new Map<string, grpc.Client>();
  // Made at the first hold() (it loads admin.proto again).
  #holdCalls: AdminCalls | undefined;
  #closed = false;

  constructor(options: LogStreamClientOptions) {
    if (!Array.isArray(options.endpoints)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'endpoints must be an array');
    this.#picker = new EndpointPicker(options.endpoints);
    this.#logger = options.logger;
    this.#method = loadLogStreamMethod();
  }

  /** endpoints lists the client's endpoints as host:port. */
  get endpoints(): readonly string[] {
    return this.#picker.endpoints;
  }

  /**
   * stream yields the log from `fromIndex` (see the file comment). It ends after the end event
   * (not following), or throws: INVALID_ARGUMENT for a bad option (naming it), CANCELED on
   * abort, the last failure once resuming is out of attempts or time, or a failure no other
   * endpoint can help with (INVALID_ARGUMENT from the server, UNIMPLEMENTED). Stopping the
   * iteration early cancels the call.
   */
  async *stream(options: LogStreamOptions): AsyncGenerator<LogStreamEvent, void, undefined> {
    const follow = options.follow === true;
    const start = checkStart({ fromIndex: options.fromIndex, follow, toIndex: options.toIndex ?? 0, maxChunkBytes: options.maxChunkBytes ?? 0 });
    const reconnectTimeoutMs = positive('reconnectTimeoutMs', options.reconnectTimeoutMs ?? RECONNECT_TIMEOUT_MS_DEFAULT);
    const idleTimeoutMs = positive('idleTimeoutMs', options.idleTimeoutMs ?? IDLE_TIMEOUT_MS_DEFAULT);
    const reconnectsMax = positive('reconnectsMax', options.reconnectsMax ?? RECONNECTS_MAX);
    const cursor = new LogDeltaCursor({ fromIndex: start.fromIndex, follow, toIndex: start.toIndex, maxChunkBytes: start.maxChunkBytes });
    const signal = options.signal;
    const endpointCount = this.#picker.endpoints.length;
    let failures = 0;
    let lastProgressMs = performance.now();
    // Each pass is one call; a call that accepts a chunk resets `failures`, so the loop ends
    // by the end chunk, or within reconnectsMax failed calls or reconnectTimeoutMs.
    for (;;) {
      if (this.#closed) throw new StrataError(ErrorCode.STOPPED, 'the client is closed');
      if (signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the log stream was cancelled');
      const endpoint = this.#picker.current();
      const request = cursor.beginCall(`log stream from ${endpoint}`);
      let accepted = false;
      let failure: AttemptFailure | undefined;
      const attempt = this.#attempt(endpoint, request, cursor, idleTimeoutMs, signal, () => {
        accepted = true;
        failures = 0;
        lastProgressMs = performance.now();
      });
      try {
        yield* attempt;
      } catch (error) {
        if (!(error instanceof AttemptError)) throw error;
        failure = error.failure;
      }
      if (failure === undefined) return;
      if (!failure.retryable || (endpointCount === 1 && failure.error.code === ErrorCode.INVALID_ARGUMENT)) throw failure.error;
      if (!accepted) failures += 1;
      this.#picker.reportFailure(endpoint);
      const sinceProgressMs = performance.now() - lastProgressMs;
      if (failures >= reconnectsMax || sinceProgressMs >= reconnectTimeoutMs) {
        throw new StrataError(failure.error.code, `log stream: no progress after ${failures} attempts over ${Math.round(sinceProgressMs)} ms; last: ${failure.error.message}`, {
          details: { ...failure.error.details, verifiedIndex: cursor.verifiedIndex },
          cause: failure.error,
        });
      }
      this.#logger?.debug('log stream broke; resuming', { endpoint, verifiedIndex: cursor.verifiedIndex, code: failure.error.code, reason: failure.error.message });
      // The first round tries each endpoint at once; later ones back off.
      if (failures >= endpointCount) await pause(Math.min(backoffMs(failures - endpointCount + 1), Math.max(0, reconnectTimeoutMs - sinceProgressMs)), signal);
    }
  }

  /**
   * hold has every member of the cluster keep its log from `index` on for `ttlMs` for
   * `consumer` (one hold per consumer: the next replaces it; index 0 releases it), through any
   * member; resolves once the answering member applied it. Renew it well within its ttl.
   * INVALID_ARGUMENT for a bad consumer (1..64 bytes of UTF-8, no control characters), index or
   * ttl (1..LOG_HOLD_TTL_MS_MAX, naming the field); UNAVAILABLE when 64 other consumers hold the
   * log or no member answered; UNIMPLEMENTED from a member without log holds.
   */
  async hold(consumer: string, index: number, ttlMs: number, options: LogHoldOptions = {}): Promise<LogHoldAnswer> {
    if (this.#closed) throw new StrataError(ErrorCode.STOPPED, 'the client is closed');
    checkLogHoldRequest(consumer, index, ttlMs);
    const timeoutMs = positive('timeoutMs', options.timeoutMs ?? LOG_HOLD_TIMEOUT_MS_DEFAULT);
    this.#holdCalls ??= new AdminCalls(['LogHold']);
    const { value, endpoint } = await this.#holdCalls.callFirst<{ member_id: number; expires_at_ms: number }>(
      this.#picker,
      'LogHold',
      (remainingMs) => ({ consumer, index, ttl_ms: ttlMs, timeout_ms: remainingMs }),
      { timeoutMs, signal: options.signal },
    );
    return { memberId: value.member_id, expiresAtMs: value.expires_at_ms, endpoint };
  }

  /** close closes every connection; a stream running fails (STOPPED or UNAVAILABLE). Twice is harmless. */
  close(): void {
    this.#closed = true;
    for (const connection of this.#connections.values()) connection.close();
    this.#connections.clear();
    this.#holdCalls?.close();
  }

  // #attempt runs one call: it yields the events of every chunk accepted, acknowledging each
  // chunk once the caller asks for more, and returns after the end chunk. Anything else ends
  // it with an AttemptError saying whether another call may resume.
  async *#attempt(
    endpoint: string,
    request: LogStreamStart,
    cursor: LogDeltaCursor,
    idleTimeoutMs: number,
    signal: AbortSignal | undefined,
    onAccepted: () => void,
  ): AsyncGenerator<LogStreamEvent, void, undefined> {
    const method = this.#method;
    const call = this.#connection(endpoint).makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, new grpc.Metadata(), {});
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const armIdleTimer = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        call.cancel();
      }, idleTimeoutMs);
    };
    const onAbort = (): void => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      call.write({ start: toWireStart(request) });
      armIdleTimer();
      for await (const wire of call as AsyncIterable<WireLogChunk>) {
        clearTimeout(timer);
        const events = cursor.accept(fromWireChunk(wire, `log stream from ${endpoint}`));
        onAccepted();
        // The caller's time on an event is not the server's silence: the timer is off meanwhile.
        for (const event of events) yield { ...event, endpoint };
        if (cursor.ended) return;
        call.write({ ack: { sequence: cursor.sequence, verified_index: cursor.verifiedIndex } });
        armIdleTimer();
      }
      throw new StrataError(ErrorCode.UNAVAILABLE, `log stream from ${endpoint} ended before its end chunk`, { details: { endpoint } });
    } catch (error) {
      throw new AttemptError(this.#failureOf(error, endpoint, timedOut, idleTimeoutMs, signal));
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  #failureOf(error: unknown, endpoint: string, timedOut: boolean, idleTimeoutMs: number, signal: AbortSignal | undefined): AttemptFailure {
    if (signal?.aborted === true) return { error: new StrataError(ErrorCode.CANCELED, 'the log stream was cancelled', { details: { endpoint } }), retryable: false };
    if (timedOut) return { error: new StrataError(ErrorCode.TIMEOUT, `log stream from ${endpoint}: nothing for ${idleTimeoutMs} ms`, { details: { endpoint } }), retryable: true };
    if (this.#closed) return { error: new StrataError(ErrorCode.STOPPED, 'the client is closed', { details: { endpoint } }), retryable: false };
    if (error instanceof StrataError) return { error: withEndpoint(error, endpoint), retryable: isResumable(error.code, error.details['field']) };
    if (isServiceError(error)) {
      const code = error.metadata?.get(CODE_METADATA_KEY)[0];
      const field = error.metadata?.get(FIELD_METADATA_KEY)[0];
      const failure =
        typeof code === 'string' && isErrorCode(code)
          ? new StrataError(code, error.details, { details: { endpoint, grpcCode: error.code, ...(typeof field === 'string' ? { field } : {}) } })
          : withEndpoint(fromGrpcStatus(error.code, error.details), endpoint);
      return { error: failure, retryable: isResumable(failure.code, field) };
    }
    throw error;
  }

  #connection(endpoint: string): grpc.Client {
    let connection = this.#connections.get(endpoint);
    if (connection === undefined) {
      connection = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
        'grpc.max_receive_message_length': LOG_STREAM_MESSAGE_BYTES_MAX,
        // A member that comes back should be used again within a second, not grpc's two minutes.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        'grpc.enable_channelz': 0,
      });
      this.#connections.set(endpoint, connection);
    }
    return connection;
  }
}

// AttemptError carries an attempt's failure out of #attempt.
class AttemptError extends Error {
  readonly failure: AttemptFailure;
  constructor(failure: AttemptFailure) {
    super(failure.error.message);
    this.failure = failure;
  }
}

// isResumable: which failures another call may get past. A broken or stopped member, a
// damaged or inconsistent chunk (CORRUPTION), a silent stream, a member that cannot keep up
// with its compaction (UNAVAILABLE) are; a refused request is not, except follow on a removed
// member (another member sees the commits).
function isResumable(code: string, field: unknown): boolean {
  switch (code) {
    case ErrorCode.UNAVAILABLE:
    case ErrorCode.TIMEOUT:
    case ErrorCode.CORRUPTION:
    case ErrorCode.STOPPED:
    case ErrorCode.MEMBER_REMOVED:
    case ErrorCode.NO_LEADER:
    case ErrorCode.COMPACTED:
    case ErrorCode.SNAPSHOT_NOT_FOUND:
    case ErrorCode.SNAPSHOT_TEMPORARILY_UNAVAILABLE:
    case ErrorCode.CANCELED:
    case ErrorCode.IO_ERROR:
      return true;
    case ErrorCode.INVALID_ARGUMENT:
      return field === 'follow';
    default:
      return false;
  }
}

let method: protoLoader.MethodDefinition<WireLogStreamRequest, WireLogChunk> | undefined;

// loadLogStreamMethod loads admin.proto once per process.
function loadLogStreamMethod(): protoLoader.MethodDefinition<WireLogStreamRequest, WireLogChunk> {
  if (method !== undefined) return method;
  const definition = protoLoader.loadSync(ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS);
  const service = definition[ADMIN_SERVICE_NAME] as protoLoader.ServiceDefinition | undefined;
  const found = service?.['LogStream'];
  if (found === undefined) throw new Error(`admin.proto has no method ${ADMIN_SERVICE_NAME}.LogStream`);
  method = found as protoLoader.MethodDefinition<WireLogStreamRequest, WireLogChunk>;
  return method;
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `log stream: ${name} must be a positive integer, not ${String(value)}`, { details: { field: name } });
  return value;
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number' && 'details' in error;
}

function withEndpoint(error: StrataError, endpoint: string): StrataError {
  return new StrataError(error.code, error.message, { details: { ...error.details, endpoint }, ...(error.cause === undefined ? {} : { cause: error.cause }) });
}

// pause waits `ms`; an abort ends it early (the loop then reports it).
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

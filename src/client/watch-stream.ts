// WatchStream follows one etcd watch (rpc.proto's Watch.Watch, a bidirectional stream) on one
// endpoint, as an async iterator of batches: the events of one or more whole revisions, in
// order, or a progress notification. EtcdClient.watch opens it; it never moves to another
// endpoint by itself. When it fails it says how far it got (details.lastRevision), and the
// caller opens a new watch from lastRevision + 1 (the client has meanwhile moved its preferred
// endpoint on), which continues with no gap and no duplicate.
//
// What etcd 3.4 sends, measured against 3.4.23 (test/client/etcd-client-watch.test.ts):
// - A response holds whole revisions: the events of one transaction go into one response, and
//   a replay of history (a start revision in the past) sends up to 1000 revisions per
//   response, never splitting one. Without `fragment`, one response is one gRPC message of any
//   size (a 14 × 100 KiB transaction watched with prevKv arrived as one 2.8 MB message). With
//   `fragment` (which we ask for), a response larger than the server's --max-request-bytes is
//   cut into messages of about that size, anywhere, also inside a revision (the same
//   transaction came as 10 + 4 events); every piece but the last has fragment=true. Joining
//   the pieces gives back the whole response, so a batch here is one joined response and a
//   revision is never split across batches. A response whose events do not come after the
//   previous one's is refused (CORRUPTION) rather than yielded.
// - Progress: with progress_notify the server sends the watch an empty response at its own
//   interval (--experimental-watch-progress-notify-interval, 10 min by default), only once the
//   watch has caught up and only through the watch's own queue, so it never overtakes events.
//   A WatchProgressRequest (requestProgress) is answered with the store's current revision and
//   watch id -1 — and etcd 3.4.23 answers it at once, ahead of events the watch has not sent
//   yet: a watch started 2000 revisions back was told "2019" before any of the history came
//   (etcd-io/etcd#15220; its fix, #15237, was marked for 3.4 and 3.5). The events that follow are still
//   whole and in order and are yielded; the stream logs a warning. lastRevision counts such a
//   progress; lastEventRevision does not, and is the resume point to use on such a server.
//
// Measured too: a compacted start revision is answered `created`, then canceled with
// compact_revision (and no header); a start revision in the future is accepted, and progress
// answers below it are dropped here. With hasleader metadata, a member without a leader refuses
// a new watch at once and ends an open one after a few election timeouts (about 2 s with a
// 500 ms election timeout), both with UNAVAILABLE "etcdserver: no leader".
//
// Errors are StrataErrors whose details carry endpoint, lastRevision and lastEventRevision:
//   COMPACTED (details.compactRevision) — a revision the watch needed was compacted;
//   UNAVAILABLE — the stream broke: the member was killed or stopped, the connection was lost,
//                 the member has no leader (the cause has the server's code, e.g. NO_LEADER);
//   TIMEOUT — no `created` within timeoutMs, or no message within idleTimeoutMs of a progress
//             request;
//   CORRUPTION — a response that could only be yielded by splitting or reordering revisions;
//   REQUEST_TOO_LARGE — one joined response over WATCH_RESPONSE_BYTES_MAX;
//   STOPPED — the client was closed;
//   another code — the server cancelled the watch with a reason (details.reason): the code of
//                  etcd's message, INVALID_ARGUMENT for one we do not know.
// UNAVAILABLE and TIMEOUT move the client's preferred endpoint on.
//
// States of a stream:
//   created  — constructed; start() opens the call (an already aborted signal ends it at once).
//   opening  — the call is open and the create request sent; waiting for the server's `created`
//              answer (within timeoutMs). Nothing is yielded before it.
//   open     — each response (fragments joined) becomes one batch in #queue.
//   ended    — closed (close(), return(), the signal, the client closing) or failed (the
//              server cancelled the watch, the stream broke, no answer after requestProgress,
//              a malformed response). On entry the call is cancelled, every timer cleared and
//              the lease released (onEnd), exactly once. A failed stream yields what it had
//              queued, then throws; a closed one drops its queue and is done.
// Invariants: #queue.length <= WATCH_QUEUE_RESPONSES_MAX + 1 and reading is paused while the queue
// is at its bounds; #yieldedRevision <= #queuedRevision; every event queued has a modRevision
// above every event queued before it.

import * as grpc from '@grpc/grpc-js';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { fromGrpcStatus } from '../util/etcd-errors.ts';
import type { ClientLogger } from './etcd-client.ts';
import { decodeWatchResponse, encodeWatchCreate, encodeWatchProgressRequest, type WatchCreate, type WatchEvent, type WatchResponseMessage } from './wire.ts';

/** WATCH_QUEUE_RESPONSES_MAX bounds the batches a stream holds for a slow caller before it stops reading. */
export const WATCH_QUEUE_RESPONSES_MAX = 64;
/** WATCH_QUEUE_BYTES_MAX bounds the bytes (keys and values) a stream holds for a slow caller before it stops reading. */
export const WATCH_QUEUE_BYTES_MAX = 16 * 1024 * 1024;
/**
 * WATCH_RESPONSE_BYTES_MAX bounds one joined response: a revision is yielded whole, and one
 * revision can be large (a DeleteRange of a big prefix with prevKv). Larger: REQUEST_TOO_LARGE.
 */
export const WATCH_RESPONSE_BYTES_MAX = 512 * 1024 * 1024;
/** WATCH_IDLE_TIMEOUT_MS_DEFAULT is how long a stream waits for any message after requestProgress. */
export const WATCH_IDLE_TIMEOUT_MS_DEFAULT = 30_000;
/** REQUIRE_LEADER_METADATA_KEY is etcd's metadata (clientv3.WithRequireLeader): a member without a leader ends the stream. */
export const REQUIRE_LEADER_METADATA_KEY = 'hasleader';
// What one event costs beyond its keys and values, in the byte estimate.
const EVENT_OVERHEAD_BYTES = 64;
// The watch id etcd gives progress notifications meant for every watch of a stream.
const BROADCAST_WATCH_ID = -1;
// Reading resumes once the queue is down to half its bounds, so it does not flap.
const RESUME_FRACTION = 2;

/** WatchOptions say what a watch follows: `key`, or a range (at most one of rangeEnd, prefix and fromKey). */
export interface WatchOptions {
  /** The key watched, or where the range starts. */
  readonly key: Uint8Array | string;
  /** The first revision to report (a positive integer); history from it is replayed first. */
  readonly startRevision: number;
  /** Watch [key, rangeEnd). */
  readonly rangeEnd?: Uint8Array | string;
  /** Watch every key that starts with `key`. */
  readonly prefix?: boolean;
  /** Watch every key >= `key`. */
  readonly fromKey?: boolean;
  /** Report with each event the pair as it was before it. */
  readonly prevKv?: boolean;
  /**
   * After this many milliseconds without a message, the stream asks for progress itself
   * (requestProgress), so a quiet watch still yields a progress batch that often and a silent
   * connection is noticed (idleTimeoutMs later). Absent: only when the caller asks.
   */
  readonly progressNotifyIntervalMs?: number;
  /** How long to wait for any message after a progress request before TIMEOUT (default WATCH_IDLE_TIMEOUT_MS_DEFAULT). */
  readonly idleTimeoutMs?: number;
  /** How long to wait for the server to confirm the watch (default: the client's timeoutMs). */
  readonly timeoutMs?: number;
  /** Ends the stream, as close() does. */
  readonly signal?: AbortSignal;
}

/** WatchBatch is what a WatchStream yields. */
export type WatchBatch =
  | {
      readonly kind: 'events';
      /**
       * The store's revision when the server sent the batch (header.revision): at least every
       * event's modRevision, but not a resume point — a replay of history is sent with the
       * current revision while more history follows.
       */
      readonly revision: number;
      /** The events of one or more whole revisions, in order (kv.modRevision non-decreasing). */
      readonly events: readonly WatchEvent[];
    }
  | {
      readonly kind: 'progress';
      /** The server says every event up to this revision has been sent (see the file comment for etcd 3.4). */
      readonly revision: number;
    };

/** WatchStream is one watch: iterate it for batches; close() (or the signal) ends it cleanly. */
export interface WatchStream extends AsyncIterableIterator<WatchBatch, undefined> {
  /** The endpoint (host:port) the watch runs on. */
  readonly endpoint: string;
  /**
   * lastRevision is how far the caller has been given everything: the last event yielded, or
   * a progress revision yielded after it. startRevision - 1 before anything is yielded. A new
   * watch from lastRevision + 1 continues the stream.
   */
  readonly lastRevision: number;
  /** lastEventRevision is lastRevision counting events only (the safe resume point on etcd with #15220). */
  readonly lastEventRevision: number;
  /**
   * requestProgress asks the server for a progress notification (WatchProgressRequest). If no
   * message at all arrives within idleTimeoutMs, the iteration throws TIMEOUT. A request while
   * one is unanswered is not sent again. Does nothing once the stream has ended.
   */
  requestProgress(): void;
  /** close ends the stream: the iteration is done (queued batches are dropped) and the call cancelled. Idempotent. */
  close(): void;
}

/** WatchStreamInit is what EtcdClient gives a stream: the request, its bounds, and the leased channel. */
export interface WatchStreamInit {
  readonly endpoint: string;
  readonly create: WatchCreate;
  readonly timeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly progressNotifyIntervalMs: number | undefined;
  readonly signal: AbortSignal | undefined;
  readonly logger: ClientLogger | undefined;
  /** open starts the bidirectional call on the leased channel. */
  open(metadata: grpc.Metadata): grpc.ClientDuplexStream<object, unknown>;
  /** onEnd is called once when the stream ends: it releases the lease; `endpointFailed` says the endpoint let the watch down. */
  onEnd(endpointFailed: boolean): void;
}

/** checkWatchOptions checks the numeric options of a watch; answers the idle timeout and the progress interval. */
export function checkWatchOptions(options: WatchOptions): { idleTimeoutMs: number; progressNotifyIntervalMs: number | undefined } {
  if (typeof options !== 'object' || options === null) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'watch needs options with a key and a startRevision');
  const startRevision = options.startRevision;
  if (!Number.isSafeInteger(startRevision) || startRevision <= 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `startRevision must be a positive integer, not ${String(startRevision)}`);
  }
  for (const name of ['idleTimeoutMs', 'progressNotifyIntervalMs', 'timeoutMs'] as const) {
    const value = options[name];
    if (value !== undefined && (!Number.isSafeInteger(value) || value <= 0)) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${name} must be a positive integer, not ${String(value)}`);
    }
  }
  return { idleTimeoutMs: options.idleTimeoutMs ?? WATCH_IDLE_TIMEOUT_MS_DEFAULT, progressNotifyIntervalMs: options.progressNotifyIntervalMs };
}

// One batch waiting for the caller, with the bytes it counts against WATCH_QUEUE_BYTES_MAX.
interface Queued {
  readonly batch: WatchBatch;
  readonly bytes: number;
}

// A failure, built when it is thrown so that it names the revision the caller really reached.
interface Failure {
  readonly code: ErrorCode;
  readonly why: string;
  readonly details?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

type State = 'created' | 'opening' | 'open' | 'ended';

/** EtcdWatchStream is the WatchStream EtcdClient.watch answers; stop() is for the client's close(). */
export class EtcdWatchStream implements WatchStream {
  readonly #init: WatchStreamInit;
  #state: State = 'created';
  #call: grpc.ClientDuplexStream<object, unknown> | undefined;
  // The call has reported its status (ended on either side); nothing more may be written.
  #callDone = false;
  #watchId: number | undefined;
  readonly #queue: Queued[] = [];
  #queuedBytes = 0;
  #paused = false;
  // Pieces of a fragmented response; bytes counted in #fragmentBytes.
  #fragments: WatchEvent[] = [];
  #fragmentCount = 0;
  #fragmentBytes = 0;
  // Revisions queued and yielded: every event and progress up to them.
  // Invariant: #yieldedRevision <= #queuedRevision, #yieldedEventRevision <= #queuedEventRevision.
  #queuedRevision: number;
  #queuedEventRevision: number;
  #yieldedRevision: number;
  #yieldedEventRevision: number;
  // The highest progress revision queued: events at or below it overtook it (etcd #15220).
  #progressRevision = 0;
  #overtakenWarned = false;
  #progressOutstanding = false;
  #openTimer: ReturnType<typeof setTimeout> | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #intervalTimer: ReturnType<typeof setTimeout> | undefined;
  #failure: Failure | undefined;
  #waiter: { resolve: (result: IteratorResult<WatchBatch, undefined>) => void; reject: (error: unknown) => void } | undefined;
  readonly #onAbort = (): void => this.close();

  constructor(init: WatchStreamInit) {
    assert(Number.isSafeInteger(init.create.startRevision) && init.create.startRevision > 0, 'a watch starts at a positive revision');
    assert(init.idleTimeoutMs > 0 && init.timeoutMs > 0, 'a watch has positive timeouts');
    this.#init = init;
    this.#queuedRevision = init.create.startRevision - 1;
    this.#queuedEventRevision = this.#queuedRevision;
    this.#yieldedRevision = this.#queuedRevision;
    this.#yieldedEventRevision = this.#queuedRevision;
  }

  get endpoint(): string {
    return this.#init.endpoint;
  }

  get lastRevision(): number {
    return this.#yieldedRevision;
  }

  get lastEventRevision(): number {
    return this.#yieldedEventRevision;
  }

  /** start opens the call and sends the create request; called once, by the client. */
  start(): void {
    assert(this.#state === 'created', 'a watch starts once');
    const signal = this.#init.signal;
    if (signal?.aborted === true) {
      this.#state = 'opening';
      this.#finish(undefined, false);
      return;
    }
    signal?.addEventListener('abort', this.#onAbort, { once: true });
    const metadata = new grpc.Metadata();
    metadata.set(REQUIRE_LEADER_METADATA_KEY, 'true');
    let call: grpc.ClientDuplexStream<object, unknown>;
    try {
      call = this.#init.open(metadata);
    } catch (error) {
      signal?.removeEventListener('abort', this.#onAbort);
      this.#state = 'opening';
      this.#finish({ code: ErrorCode.UNAVAILABLE, why: `could not open the watch on ${this.#init.endpoint}`, cause: error }, true);
      return;
    }
    this.#call = call;
    this.#state = 'opening';
    // The listeners stay for the call's life: grpc-js reports our own cancel as an 'error',
    // which must never go unhandled.
    call.on('data', (message: unknown) => this.#onMessage(message));
    call.on('error', (error: unknown) => this.#onCallError(error));
    call.on('status', (status: grpc.StatusObject) => this.#onCallStatus(status));
    this.#openTimer = setTimeout(() => {
      this.#finish({ code: ErrorCode.TIMEOUT, why: `the server did not confirm the watch within ${this.#init.timeoutMs} ms` }, true);
    }, this.#init.timeoutMs);
    call.write(encodeWatchCreate(this.#init.create));
  }

  requestProgress(): void {
    if (this.#state === 'ended' || this.#state === 'created' || this.#callDone) return;
    if (this.#progressOutstanding) return;
    this.#progressOutstanding = true;
    this.#call?.write(encodeWatchProgressRequest());
    this.#armTimers();
  }

  close(): void {
    this.#finish(undefined, false);
  }

  /** stop ends the stream with `error` (the client is closing): queued batches are still yielded first. */
  stop(error: StrataError): void {
    this.#finish({ code: error.code, why: error.message, cause: error }, false);
  }

  next(): Promise<IteratorResult<WatchBatch, undefined>> {
    if (this.#waiter !== undefined) {
      return Promise.reject(new StrataError(ErrorCode.INVALID_ARGUMENT, 'a watch is read by one caller: next() was called before the previous one settled'));
    }
    const queued = this.#queue.shift();
    if (queued !== undefined) {
      this.#queuedBytes -= queued.bytes;
      assert(this.#queuedBytes >= 0, 'the queue\'s bytes are counted once');
      return Promise.resolve(this.#yield(queued));
    }
    if (this.#state === 'ended') return this.#endResult();
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<WatchBatch, undefined>> {
    this.close();
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  // ---- receiving ----

  #onMessage(message: unknown): void {
    if (this.#state === 'ended') return;
    try {
      const response = decodeWatchResponse(message);
      if (this.#state === 'opening') this.#onCreateAnswer(response);
      else this.#onResponse(response);
    } catch (error) {
      // Bad input from the server is an operating error; anything else is a bug and stops the process.
      if (!(error instanceof StrataError)) throw error;
      this.#finish({ code: ErrorCode.CORRUPTION, why: `the server sent a malformed watch response: ${error.message}`, cause: error }, true);
    }
  }

  #onCreateAnswer(response: WatchResponseMessage): void {
    // etcd holds a watch's events until it has answered `created`, so nothing else comes first.
    if (!response.created) throw this.#corrupt('the server answered before it confirmed the watch');
    clearTimeout(this.#openTimer);
    this.#openTimer = undefined;
    if (response.canceled) {
      this.#onCancel(response);
      return;
    }
    this.#watchId = response.watchId;
    this.#state = 'open';
    this.#armTimers();
  }

  #onResponse(response: WatchResponseMessage): void {
    assert(this.#state === 'open', 'responses are read once the watch is open');
    if (response.watchId !== this.#watchId && response.watchId !== BROADCAST_WATCH_ID) {
      throw this.#corrupt(`a response for watch ${response.watchId}, not this stream's ${String(this.#watchId)}`);
    }
    if (response.created) throw this.#corrupt('a second `created` answer');
    // Any message shows the stream is alive: an outstanding progress request is served.
    this.#progressOutstanding = false;
    if (response.canceled) {
      this.#onCancel(response);
      return;
    }
    if (response.fragment) {
      if (response.events.length === 0) throw this.#corrupt('an empty fragment');
      // One by one: a fragment can hold more events than a call may take arguments.
      for (const event of response.events) this.#fragments.push(event);
      this.#fragmentCount += 1;
      this.#fragmentBytes += eventBytes(response.events);
      if (this.#fragmentBytes > WATCH_RESPONSE_BYTES_MAX) {
        this.#finish({ code: ErrorCode.REQUEST_TOO_LARGE, why: `a watch response of more than ${WATCH_RESPONSE_BYTES_MAX} bytes` }, false);
        return;
      }
      this.#armTimers();
      return;
    }
    let events = response.events;
    let bytes = eventBytes(events);
    if (this.#fragmentCount > 0) {
      if (events.length === 0) throw this.#corrupt('a fragmented response was interrupted');
      this.#init.logger?.debug('watch: joined a fragmented response', {
        endpoint: this.#init.endpoint,
        fragments: this.#fragmentCount + 1,
        events: this.#fragments.length + events.length,
      });
      events = [...this.#fragments, ...events];
      bytes += this.#fragmentBytes;
      this.#fragments = [];
      this.#fragmentCount = 0;
      this.#fragmentBytes = 0;
    }
    if (events.length === 0) this.#onProgress(response.header.revision);
    else this.#onEvents(response.header.revision, events, bytes);
    this.#armTimers();
  }

  #onEvents(revision: number, events: readonly WatchEvent[], bytes: number): void {
    let previous = this.#queuedEventRevision;
    const first = events[0]?.kv.modRevision ?? 0;
    // A revision is yielded whole: one that began in an earlier batch cannot be completed now.
    if (first <= previous) throw this.#corrupt(`events at revision ${first} after revision ${previous} was sent`);
    for (const event of events) {
      if (event.kv.modRevision < previous) throw this.#corrupt(`events out of order (${event.kv.modRevision} after ${previous})`);
      previous = event.kv.modRevision;
    }
    if (previous > revision) throw this.#corrupt(`an event at revision ${previous} in a response of revision ${revision}`);
    if (first <= this.#progressRevision && !this.#overtakenWarned) {
      this.#overtakenWarned = true;
      this.#init.logger?.warn('watch: events arrived after a progress notification that covered them (etcd-io/etcd#15220); resume from lastEventRevision + 1 on this server', {
        endpoint: this.#init.endpoint,
        progressRevision: this.#progressRevision,
        eventRevision: first,
      });
    }
    this.#queuedEventRevision = previous;
    this.#queuedRevision = Math.max(this.#queuedRevision, previous);
    this.#enqueue({ batch: { kind: 'events', revision, events }, bytes });
  }

  #onProgress(revision: number): void {
    // Older than what is already queued (an answer that crossed later events): it says nothing new.
    if (revision < this.#queuedRevision) return;
    this.#queuedRevision = revision;
    this.#progressRevision = Math.max(this.#progressRevision, revision);
    // A progress waiting behind another is replaced: the newer one says more.
    const last = this.#queue.at(-1);
    if (last?.batch.kind === 'progress') this.#queue.pop();
    this.#enqueue({ batch: { kind: 'progress', revision }, bytes: 0 });
  }

  #onCancel(response: WatchResponseMessage): void {
    if (response.compactRevision > 0) {
      this.#finish(
        {
          code: ErrorCode.COMPACTED,
          why: `revision ${this.#queuedRevision + 1} is compacted (compacted up to ${response.compactRevision})`,
          details: { compactRevision: response.compactRevision },
        },
        false,
      );
      return;
    }
    const reason = response.cancelReason === '' ? 'no reason given' : response.cancelReason;
    // A reason that is one of etcd's messages keeps its code; any other is not worth retrying.
    const code = fromGrpcStatus(grpc.status.FAILED_PRECONDITION, reason).code;
    this.#finish({ code, why: `the server cancelled the watch: ${reason}`, details: { reason } }, false);
  }

  #onCallError(error: unknown): void {
    this.#callDone = true;
    if (this.#state === 'ended') return;
    if (!isServiceError(error)) {
      this.#finish({ code: ErrorCode.UNAVAILABLE, why: 'the watch stream failed', cause: error }, true);
      return;
    }
    const cause = fromGrpcStatus(error.code, error.details);
    const causeWithEndpoint = new StrataError(cause.code, cause.message, { details: { ...cause.details, endpoint: this.#init.endpoint } });
    if (LIVENESS_STATUSES.has(error.code)) {
      this.#finish({ code: ErrorCode.UNAVAILABLE, why: `the watch stream broke: ${error.details}`, cause: causeWithEndpoint }, true);
    } else {
      this.#finish({ code: cause.code, why: `the server refused the watch: ${error.details}`, cause: causeWithEndpoint }, false);
    }
  }

  #onCallStatus(status: grpc.StatusObject): void {
    this.#callDone = true;
    // A failed status came as an 'error' first; only a server that ends the stream cleanly is left.
    if (this.#state === 'ended' || status.code !== grpc.status.OK) return;
    this.#finish({ code: ErrorCode.UNAVAILABLE, why: 'the server ended the watch stream' }, true);
  }

  // ---- the queue and the caller ----

  #enqueue(queued: Queued): void {
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      assert(this.#queue.length === 0, 'a caller waits only on an empty queue');
      this.#waiter = undefined;
      waiter.resolve(this.#yield(queued));
      return;
    }
    this.#queue.push(queued);
    this.#queuedBytes += queued.bytes;
    // Reading stops at the bound, so at most the response being read when it was reached is over it.
    assert(this.#queue.length <= WATCH_QUEUE_RESPONSES_MAX + 1, 'the queue is bounded');
    if (!this.#paused && (this.#queue.length >= WATCH_QUEUE_RESPONSES_MAX || this.#queuedBytes >= WATCH_QUEUE_BYTES_MAX)) {
      this.#paused = true;
      this.#call?.pause();
      this.#armTimers();
      this.#init.logger?.debug('watch: the caller is behind; paused reading', { endpoint: this.#init.endpoint, queued: this.#queue.length, bytes: this.#queuedBytes });
    }
  }

  #yield(queued: Queued): IteratorResult<WatchBatch, undefined> {
    const batch = queued.batch;
    if (batch.kind === 'events') {
      const last = batch.events.at(-1)?.kv.modRevision ?? 0;
      assert(last > this.#yieldedEventRevision, 'events are yielded in revision order');
      this.#yieldedEventRevision = last;
      this.#yieldedRevision = Math.max(this.#yieldedRevision, last);
    } else {
      this.#yieldedRevision = Math.max(this.#yieldedRevision, batch.revision);
    }
    assert(this.#yieldedRevision <= this.#queuedRevision, 'nothing is yielded before it was queued');
    if (this.#paused && this.#state !== 'ended' && this.#queue.length <= WATCH_QUEUE_RESPONSES_MAX / RESUME_FRACTION && this.#queuedBytes <= WATCH_QUEUE_BYTES_MAX / RESUME_FRACTION) {
      this.#paused = false;
      this.#call?.resume();
      this.#armTimers();
    }
    return { done: false, value: batch };
  }

  #endResult(): Promise<IteratorResult<WatchBatch, undefined>> {
    const failure = this.#failure;
    if (failure === undefined) return Promise.resolve({ done: true, value: undefined });
    // Thrown once; the iteration is then done, as a generator's is.
    this.#failure = undefined;
    return Promise.reject(this.#error(failure));
  }

  #error(failure: Failure): StrataError {
    const lastRevision = this.#yieldedRevision;
    return new StrataError(failure.code, `watch on ${this.#init.endpoint}: ${failure.why} (everything up to revision ${lastRevision} was yielded)`, {
      details: { ...failure.details, endpoint: this.#init.endpoint, lastRevision, lastEventRevision: this.#yieldedEventRevision },
      ...(failure.cause === undefined ? {} : { cause: failure.cause }),
    });
  }

  #corrupt(why: string): StrataError {
    return new StrataError(ErrorCode.CORRUPTION, why);
  }

  // ---- timers ----

  /**
   * #armTimers sets the timers for the present state: the idle timer while a progress request
   * is unanswered, the progress interval while the stream is quiet; neither while reading is
   * paused (the silence is then the caller's).
   */
  #armTimers(): void {
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#intervalTimer);
    this.#idleTimer = undefined;
    this.#intervalTimer = undefined;
    if (this.#state === 'ended' || this.#paused) return;
    if (this.#progressOutstanding) {
      this.#idleTimer = setTimeout(() => {
        this.#finish({ code: ErrorCode.TIMEOUT, why: `no message within ${this.#init.idleTimeoutMs} ms of a progress request`, details: { idleTimeoutMs: this.#init.idleTimeoutMs } }, true);
      }, this.#init.idleTimeoutMs);
    }
    const intervalMs = this.#init.progressNotifyIntervalMs;
    if (intervalMs !== undefined && this.#state === 'open' && !this.#progressOutstanding) {
      this.#intervalTimer = setTimeout(() => this.requestProgress(), intervalMs);
    }
  }

  // ---- ending ----

  /**
   * #finish ends the stream once: with a failure (thrown after the queued batches) or without
   * (closed: the queue is dropped). The call is cancelled, timers cleared, the lease released.
   */
  #finish(failure: Failure | undefined, endpointFailed: boolean): void {
    if (this.#state === 'ended') return;
    this.#state = 'ended';
    clearTimeout(this.#openTimer);
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#intervalTimer);
    this.#openTimer = undefined;
    this.#idleTimer = undefined;
    this.#intervalTimer = undefined;
    this.#init.signal?.removeEventListener('abort', this.#onAbort);
    this.#fragments = [];
    this.#fragmentCount = 0;
    this.#fragmentBytes = 0;
    if (failure === undefined) {
      this.#queue.length = 0;
      this.#queuedBytes = 0;
    }
    this.#failure = failure;
    if (this.#call !== undefined && !this.#callDone) {
      this.#callDone = true;
      this.#call.cancel();
    }
    if (failure !== undefined) {
      this.#init.logger?.debug('watch: ended', { endpoint: this.#init.endpoint, code: failure.code, why: failure.why, lastQueuedRevision: this.#queuedRevision });
    }
    this.#init.onEnd(endpointFailed);
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      assert(this.#queue.length === 0, 'a caller waits only on an empty queue');
      this.#waiter = undefined;
      this.#endResult().then(waiter.resolve, waiter.reject);
    }
  }
}

// Statuses that mean the member or the path to it failed, not the request: the caller resumes elsewhere.
const LIVENESS_STATUSES: ReadonlySet<number> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.UNKNOWN,
  grpc.status.INTERNAL,
  grpc.status.ABORTED,
  grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED,
]);

function eventBytes(events: readonly WatchEvent[]): number {
  let bytes = 0;
  for (const event of events) {
    bytes += EVENT_OVERHEAD_BYTES + event.kv.key.byteLength + event.kv.value.byteLength;
    if (event.prevKv !== undefined) bytes += event.prevKv.key.byteLength + event.prevKv.value.byteLength;
  }
  return bytes;
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number' && 'details' in error;
}

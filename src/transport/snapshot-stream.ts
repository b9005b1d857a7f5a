// snapshot-stream.ts — the snapshot stream both transports run (Transport.sendSnapshot and
// TransportHandlers.onSnapshot): SnapshotSend, the sender's side of one send across as many
// attempts as it takes, and SnapshotReceiver with its IncomingSnapshot per stream, the
// receiver's side. A transport only carries the frames (GrpcTransport over the Snapshot RPC,
// MemoryTransport through its network); the rules — window, rate, progress timeout, resume,
// CRC, bounds — live here once, so the in-memory twin runs the same code as the real one.
//
// A send is, at any time, in one of these states:
//   attempt, handshake  the hello is out; it waits for the receiver's resume offset.
//   attempt, chunks     chunks go out in order from the resume offset: at most
//                       SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX unacknowledged, plus one being read
//                       or waiting for the rate limit.
//   attempt, finishing  every byte is acknowledged and done sent; it waits for the last ack.
//   backing off         between attempts, after one that failed in a way worth retrying.
//   settled             resolved by the last ack, or rejected: a terminal error, too many
//                       attempts in a row without progress, its signal, or close.
// Invariants: at most one attempt at a time, and a new one starts only once the last one's
// payload read settled, so the buffers a send holds are at most window + 1 chunks. The
// progress timer runs exactly while the send waits on the receiver (handshake, or chunks
// unacknowledged); never while it reads its own payload or waits for the rate limit, so a
// slow disk or a low rate is not blamed on the receiver. It does not run while finishing:
// checking the whole file takes time proportional to its size, and a deadline would have to
// scale with it (it never does here); a lost connection still ends the attempt (gRPC
// keepalive, a memory link cut), and the signal or close settle it.
//
// An incoming stream is in one of: opening (waiting for the previous stream's pending sink
// call, then onSnapshot), receiving, finishing (done received, finish() running), and the
// terminal finished, refused (an error answered) or broken (the stream ended first).
// Invariants: the transport calls one peer's sinks one call at a time, across streams; a
// stream holds at most SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX chunks not yet written; at most
// SNAPSHOT_INCOMING_STREAMS_PER_PEER_MAX streams per peer and SNAPSHOT_INCOMING_STREAMS_MAX in
// all are open (not terminal). The transport never aborts a sink.

import { crc32c, maskCrc32c } from '../native/index.ts';
import type { Logger, NodeId, SnapshotMessage } from '../raft/index.ts';
import type { Clock, TimerId } from '../util/index.ts';
import { assert, ErrorCode, isStrataError, StrataError } from '../util/index.ts';
import { decodeMessages, encodeMessages } from './message-codec.ts';
import type { SnapshotPayload, SnapshotSendOptions, SnapshotSink } from './transport.ts';
import {
  SNAPSHOT_BLOCK_BYTES_MAX,
  SNAPSHOT_CHUNK_BYTES_DEFAULT,
  SNAPSHOT_CHUNK_BYTES_MAX,
  SNAPSHOT_CHUNK_BYTES_MIN,
  SNAPSHOT_INCOMING_STREAMS_MAX,
  SNAPSHOT_INCOMING_STREAMS_PER_PEER_MAX,
  SNAPSHOT_PROGRESS_TIMEOUT_MS,
  SNAPSHOT_RATE_BYTES_PER_SECOND_DEFAULT,
  SNAPSHOT_STALLED_ATTEMPTS_MAX,
  SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX,
} from './transport.ts';

/** SNAPSHOT_HELLO_MESSAGE_BYTES_MAX bounds the encoded Raft message in a hello (its data is a small descriptor). */
export const SNAPSHOT_HELLO_MESSAGE_BYTES_MAX = 1024 * 1024;
/** SNAPSHOT_FRAME_OVERHEAD_BYTES is what a frame may carry besides a block: framing, offset, CRC. */
export const SNAPSHOT_FRAME_OVERHEAD_BYTES = 64 * 1024;
/** SNAPSHOT_FRAME_BYTES_MAX is the largest snapshot frame either side sends or accepts (gRPC message length). */
export const SNAPSHOT_FRAME_BYTES_MAX = SNAPSHOT_BLOCK_BYTES_MAX + SNAPSHOT_FRAME_OVERHEAD_BYTES;
/** SNAPSHOT_ACK_BYTES_MAX bounds an ack on the wire (an error's message and details included). */
export const SNAPSHOT_ACK_BYTES_MAX = 1024 * 1024;
/** SNAPSHOT_RETRY_BACKOFF_MS_MIN is the pause after an attempt that made progress, and the first after one that did not. */
export const SNAPSHOT_RETRY_BACKOFF_MS_MIN = 50;
/** SNAPSHOT_RETRY_BACKOFF_MS_MAX bounds the pause between attempts (it doubles after each attempt without progress). */
export const SNAPSHOT_RETRY_BACKOFF_MS_MAX = 2_000;
/**
 * SNAPSHOT_SEND_ATTEMPTS_MAX bounds the attempts of one send even when each makes progress (a
 * link that breaks every few chunks, a receiver that keeps losing what it received).
 */
export const SNAPSHOT_SEND_ATTEMPTS_MAX = 1_000;

/** SnapshotHello opens a stream: who sends which snapshot, and its length. */
export interface SnapshotHello {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly message: SnapshotMessage;
  /** `message` encoded as a one-message batch (message-codec.ts), as the wire carries it. */
  readonly messageBytes: Uint8Array;
  readonly byteLength: number;
}

/** SnapshotChunk is a run of snapshot bytes at `offset` with the masked CRC32c of `data`. */
export interface SnapshotChunk {
  readonly offset: number;
  readonly data: Uint8Array;
  readonly crc32c: number;
}

/** SnapshotSenderFrame is what a sender writes after its hello; 'invalid' stands for a frame that is neither. */
export type SnapshotSenderFrame =
  | { readonly kind: 'chunk'; readonly chunk: SnapshotChunk }
  | { readonly kind: 'done' }
  | { readonly kind: 'invalid'; readonly what: string };

/** SnapshotAck is the receiver's answer: where to resume (after the hello), progress (after a chunk), or done. */
export interface SnapshotAck {
  readonly verifiedBytes: number;
  readonly done: boolean;
}

/** SnapshotAttemptEvents are how a transport reports one attempt's stream to its SnapshotSend; never from inside open(). */
export interface SnapshotAttemptEvents {
  ack(ack: SnapshotAck): void;
  /** drain follows a write() that returned false, once the stream takes more. */
  drain(): void;
  /** refused: the receiver answered with a StrataError and ended the stream. */
  refused(error: StrataError): void;
  /** broken: the stream ended without an answer (connection lost, receiver gone, frame lost). */
  broken(error: StrataError): void;
}

/** SnapshotAttemptStream is one attempt's stream as the sender drives it; its hello is already out. */
export interface SnapshotAttemptStream {
  /** write sends one frame; false asks the sender to wait for events.drain() before the next. */
  write(frame: SnapshotSenderFrame): boolean;
  /** end closes the stream after the last ack. */
  end(): void;
  /** cancel abandons the stream; no event follows. */
  cancel(): void;
}

/**
 * SnapshotAttemptOpener opens one attempt's stream and sends the hello; it throws a
 * StrataError when no attempt can be made at all (peer unknown or removed, transport closed),
 * which fails the send.
 */
export type SnapshotAttemptOpener = (hello: SnapshotHello, events: SnapshotAttemptEvents) => SnapshotAttemptStream;

/** SnapshotStats count a transport's snapshot traffic (tests assert resume with them). */
export interface SnapshotStats {
  /** sendSnapshot calls. */
  sends: number;
  /** Streams opened by those sends. */
  attempts: number;
  chunksSent: number;
  bytesSent: number;
  /** Bytes sent again at offsets a send had already sent (after a broken attempt). */
  bytesResent: number;
  /** Incoming streams refused because of the per-peer or total bound. */
  incomingRefused: number;
}

/** newSnapshotStats returns zeroed counters. */
export function newSnapshotStats(): SnapshotStats {
  return { sends: 0, attempts: 0, chunksSent: 0, bytesSent: 0, bytesResent: 0, incomingRefused: 0 };
}

/** ResolvedSnapshotSendOptions are SnapshotSendOptions with defaults filled in and checked. */
export interface ResolvedSnapshotSendOptions {
  readonly signal: AbortSignal | undefined;
  readonly bytesPerSecond: () => number;
  readonly chunkBytes: number;
  readonly progressTimeoutMs: number;
  readonly stalledAttemptsMax: number;
  readonly onProgress: ((acknowledgedBytes: number, byteLength: number) => void) | undefined;
}

function invalidOption(field: string, what: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot send option ${field} ${what}`, { details: { field } });
}

/** resolveSnapshotSendOptions fills in defaults; an option out of range is INVALID_ARGUMENT. */
export function resolveSnapshotSendOptions(options: SnapshotSendOptions): ResolvedSnapshotSendOptions {
  const chunkBytes = options.chunkBytes ?? SNAPSHOT_CHUNK_BYTES_DEFAULT;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < SNAPSHOT_CHUNK_BYTES_MIN || chunkBytes > SNAPSHOT_CHUNK_BYTES_MAX) {
    throw invalidOption('chunkBytes', `must be an integer from ${SNAPSHOT_CHUNK_BYTES_MIN} to ${SNAPSHOT_CHUNK_BYTES_MAX}`);
  }
  const rate = options.bytesPerSecond ?? SNAPSHOT_RATE_BYTES_PER_SECOND_DEFAULT;
  const checkRate = (value: number): number => {
    if (!Number.isFinite(value) || value <= 0) throw invalidOption('bytesPerSecond', `must be a positive number, got ${value}`);
    return value;
  };
  // A function is checked each time it is asked; a number once, here.
  const bytesPerSecond = typeof rate === 'function' ? () => checkRate(rate()) : ((fixed: number) => () => fixed)(checkRate(rate));
  bytesPerSecond();
  const progressTimeoutMs = options.progressTimeoutMs ?? SNAPSHOT_PROGRESS_TIMEOUT_MS;
  if (!Number.isFinite(progressTimeoutMs) || progressTimeoutMs <= 0) throw invalidOption('progressTimeoutMs', 'must be a positive number');
  const stalledAttemptsMax = options.stalledAttemptsMax ?? SNAPSHOT_STALLED_ATTEMPTS_MAX;
  if (!Number.isSafeInteger(stalledAttemptsMax) || stalledAttemptsMax <= 0) throw invalidOption('stalledAttemptsMax', 'must be a positive integer');
  return { signal: options.signal, bytesPerSecond, chunkBytes, progressTimeoutMs, stalledAttemptsMax, onProgress: options.onProgress };
}

/** chunkCrc32c is the CRC a chunk carries: the masked CRC32c of its bytes. */
export function chunkCrc32c(data: Uint8Array): number {
  return maskCrc32c(crc32c(data));
}

/** snapshotHello builds the hello a send opens its streams with; a message too large for a hello is INVALID_ARGUMENT. */
export function snapshotHello(message: SnapshotMessage, byteLength: number): SnapshotHello {
  const messageBytes = encodeMessages([message]);
  if (messageBytes.byteLength > SNAPSHOT_HELLO_MESSAGE_BYTES_MAX) {
    throw new StrataError(
      ErrorCode.INVALID_ARGUMENT,
      `the snapshot message is ${messageBytes.byteLength} bytes encoded; a hello carries at most ${SNAPSHOT_HELLO_MESSAGE_BYTES_MAX}`,
      { details: { field: 'message' } },
    );
  }
  return { from: message.from, to: message.to, message, messageBytes, byteLength };
}

/**
 * decodeSnapshotHello checks a received hello's message and length: one snapshot message from
 * `from` to `localId`, and a safe byte length. Anything else is INVALID_ARGUMENT.
 */
export function decodeSnapshotHello(localId: NodeId, from: NodeId, messageBytes: Uint8Array, byteLength: number): SnapshotHello {
  if (!Number.isSafeInteger(byteLength) || byteLength < 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot byte length ${String(byteLength)} is not a length`, { details: { field: 'byteLength' } });
  }
  if (messageBytes.byteLength > SNAPSHOT_HELLO_MESSAGE_BYTES_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'the snapshot message is too large for a hello', { details: { field: 'message' } });
  }
  const messages = decodeMessages(messageBytes);
  const message = messages[0];
  if (messages.length !== 1 || message === undefined || message.type !== 'snapshot') {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a snapshot hello carries exactly one snapshot message', { details: { field: 'message' } });
  }
  if (message.from !== from || message.to !== localId) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `the snapshot message goes from ${message.from} to ${message.to}, not from ${from} to ${localId}`, {
      details: { field: 'message' },
    });
  }
  return { from, to: localId, message, messageBytes, byteLength };
}

/** asStrataError keeps a StrataError and wraps anything else as `code`. */
function asStrataError(error: unknown, code: ErrorCode, what: string): StrataError {
  if (isStrataError(error)) return error;
  return new StrataError(code, `${what}: ${String(error)}`, { cause: error });
}

/**
 * TokenBucket limits a send's rate: `bytesPerSecond`, in bursts of at most `capacityBytes`
 * (one chunk). A chunk larger than the capacity (one big block) waits for a full bucket and
 * leaves it in debt, so the long-run rate holds whatever the chunk sizes. A rate given as a
 * function is read at every refill: the time since the last refill is paid at the rate of now.
 */
export class TokenBucket {
  private tokens: number;
  private refilledAtMs: number;
  private readonly bytesPerSecond: () => number;
  private readonly capacityBytes: number;
  private readonly clock: Clock;

  constructor(options: { bytesPerSecond: number | (() => number); capacityBytes: number; clock: Clock }) {
    const rate = options.bytesPerSecond;
    this.bytesPerSecond = typeof rate === 'function' ? rate : () => rate;
    assert(this.bytesPerSecond() > 0, 'TokenBucket: the rate must be positive');
    assert(options.capacityBytes > 0, 'TokenBucket: the capacity must be positive');
    this.capacityBytes = options.capacityBytes;
    this.clock = options.clock;
    this.tokens = options.capacityBytes;
    this.refilledAtMs = options.clock.now();
  }

  /** delayMs is how long `bytes` must wait before take(bytes) keeps the rate (0: now). */
  delayMs(bytes: number): number {
    const rate = this.refill();
    const needed = Math.min(bytes, this.capacityBytes);
    if (this.tokens >= needed) return 0;
    return Math.ceil(((needed - this.tokens) * 1000) / rate);
  }

  /** take spends `bytes` (after delayMs said they may go). */
  take(bytes: number): void {
    this.refill();
    this.tokens -= bytes;
  }

  // refill adds what the time since the last refill earned at the current rate, which it returns.
  private refill(): number {
    const rate = this.bytesPerSecond();
    assert(rate > 0, 'TokenBucket: the rate must be positive');
    const now = this.clock.now();
    this.tokens = Math.min(this.capacityBytes, this.tokens + ((now - this.refilledAtMs) * rate) / 1000);
    this.refilledAtMs = now;
    return rate;
  }
}

type AttemptPhase = 'handshake' | 'chunks' | 'finishing';

interface Attempt {
  readonly number: number;
  stream: SnapshotAttemptStream | undefined;
  phase: AttemptPhase;
  /** The next byte to read and send. */
  nextOffset: number;
  /** The end offsets of the chunks written and not yet acknowledged, oldest first (at most the window). */
  readonly unacknowledgedEnds: number[];
  /** The receiver's verified bytes, as last acknowledged; where the attempt started counts as none new. */
  verifiedBytes: number;
  /** True once an ack moved verifiedBytes past where this attempt started. */
  progressed: boolean;
  /** A chunk is being read from the payload or waits for the rate limit. */
  reading: boolean;
  waitingForDrain: boolean;
  progressTimer: TimerId | undefined;
  rateTimer: TimerId | undefined;
}

/** SnapshotSendParams are what one SnapshotSend needs from its transport. */
export interface SnapshotSendParams {
  readonly hello: SnapshotHello;
  readonly payload: SnapshotPayload;
  readonly options: ResolvedSnapshotSendOptions;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly stats: SnapshotStats;
  readonly open: SnapshotAttemptOpener;
}

/**
 * SnapshotSend is one Transport.sendSnapshot: attempts, each a stream that resumes where the
 * receiver's verified bytes say, until the receiver finished or the send fails (see the file
 * comment for its states). `promise` always settles: by the last ack, a terminal error,
 * stalledAttemptsMax attempts in a row without progress, SNAPSHOT_SEND_ATTEMPTS_MAX attempts,
 * the signal (CANCELED) or fail() (close, removePeer).
 */
export class SnapshotSend {
  readonly peer: NodeId;
  readonly promise: Promise<void>;
  private resolvePromise!: () => void;
  private rejectPromise!: (error: StrataError) => void;
  private readonly hello: SnapshotHello;
  private readonly payload: SnapshotPayload;
  private readonly options: ResolvedSnapshotSendOptions;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly stats: SnapshotStats;
  private readonly open: SnapshotAttemptOpener;
  private readonly tokens: TokenBucket;
  private settled = false;
  // Invariant: at most one attempt; undefined while backing off, before start and once settled.
  private attempt: Attempt | undefined;
  private attemptsMade = 0;
  private stalledAttempts = 0;
  private backoffMs = SNAPSHOT_RETRY_BACKOFF_MS_MIN;
  private backoffTimer: TimerId | undefined;
  // The payload read in progress, if any (settles whatever the read does); the next attempt waits for it.
  private pendingRead: Promise<void> | undefined;
  // The highest offset any attempt sent up to, to count bytes sent again.
  private sentHighWater = 0;
  private readonly onAbort = (): void => {
    this.fail(new StrataError(ErrorCode.CANCELED, `the snapshot send to peer ${this.peer} was canceled`, {
      cause: this.options.signal?.reason,
      details: { peer: this.peer },
    }));
  };

  constructor(params: SnapshotSendParams) {
    assert(Number.isSafeInteger(params.hello.byteLength) && params.hello.byteLength >= 0, 'SnapshotSend: the byte length is a length');
    this.peer = params.hello.to;
    this.hello = params.hello;
    this.payload = params.payload;
    this.options = params.options;
    this.clock = params.clock;
    this.logger = params.logger;
    this.stats = params.stats;
    this.open = params.open;
    this.tokens = new TokenBucket({ bytesPerSecond: params.options.bytesPerSecond, capacityBytes: params.options.chunkBytes, clock: params.clock });
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
  }

  /** start makes the first attempt (or fails at once when the signal already aborted). */
  start(): void {
    assert(this.attemptsMade === 0 && !this.settled, 'SnapshotSend: start once');
    this.stats.sends += 1;
    const signal = this.options.signal;
    if (signal?.aborted === true) {
      this.onAbort();
      return;
    }
    signal?.addEventListener('abort', this.onAbort, { once: true });
    this.startAttempt();
  }

  /** fail settles the send with `error` at once and cancels its stream (close, removePeer, signal). */
  fail(error: StrataError): void {
    if (this.settled) return;
    this.settled = true;
    const attempt = this.attempt;
    this.attempt = undefined;
    if (attempt !== undefined) {
      this.clearTimers(attempt);
      attempt.stream?.cancel();
    }
    if (this.backoffTimer !== undefined) this.clock.clearTimeout(this.backoffTimer);
    this.backoffTimer = undefined;
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.logger.info('snapshot send failed', { peer: this.peer, code: error.code, attempts: this.attemptsMade });
    this.rejectPromise(error);
  }

  private succeed(attempt: Attempt): void {
    assert(!this.settled && this.attempt === attempt, 'SnapshotSend: succeed the current attempt');
    this.settled = true;
    this.attempt = undefined;
    this.clearTimers(attempt);
    attempt.stream?.end();
    this.options.signal?.removeEventListener('abort', this.onAbort);
    // The driver logs the send as a whole ('snapshot sent'); this says how the stream went.
    this.logger.debug('snapshot stream finished', { peer: this.peer, bytes: this.hello.byteLength, attempts: this.attemptsMade });
    this.resolvePromise();
  }

  private startAttempt(): void {
    if (this.settled) return;
    assert(this.attempt === undefined, 'SnapshotSend: one attempt at a time');
    if (this.attemptsMade >= SNAPSHOT_SEND_ATTEMPTS_MAX) {
      this.fail(new StrataError(ErrorCode.UNAVAILABLE, `snapshot send to peer ${this.peer} gave up after ${this.attemptsMade} attempts`, {
        details: { peer: this.peer, attempts: this.attemptsMade },
      }));
      return;
    }
    this.attemptsMade += 1;
    this.stats.attempts += 1;
    const attempt: Attempt = {
      number: this.attemptsMade,
      stream: undefined,
      phase: 'handshake',
      nextOffset: 0,
      unacknowledgedEnds: [],
      verifiedBytes: 0,
      progressed: false,
      reading: false,
      waitingForDrain: false,
      progressTimer: undefined,
      rateTimer: undefined,
    };
    this.attempt = attempt;
    const events: SnapshotAttemptEvents = {
      ack: (ack) => this.onAck(attempt, ack),
      drain: () => this.onDrain(attempt),
      refused: (error) => this.onRefused(attempt, error),
      broken: (error) => this.onBroken(attempt, error),
    };
    try {
      attempt.stream = this.open(this.hello, events);
    } catch (error) {
      this.attempt = undefined;
      this.fail(asStrataError(error, ErrorCode.UNAVAILABLE, `cannot open a snapshot stream to peer ${this.peer}`));
      return;
    }
    this.armProgressTimer(attempt);
  }

  private onAck(attempt: Attempt, ack: SnapshotAck): void {
    if (this.attempt !== attempt) return;
    const byteLength = this.hello.byteLength;
    const verified = ack.verifiedBytes;
    if (!Number.isSafeInteger(verified) || verified < 0 || verified > byteLength) {
      this.endAttempt(attempt, this.protocolError(`acknowledged ${String(verified)} of ${byteLength} bytes`));
      return;
    }
    switch (attempt.phase) {
      case 'handshake': {
        if (ack.done) {
          this.endAttempt(attempt, this.protocolError('answered the hello with done'));
          return;
        }
        attempt.phase = 'chunks';
        attempt.nextOffset = verified;
        attempt.verifiedBytes = verified;
        this.disarmProgressTimer(attempt);
        if (verified > 0) this.logger.info('snapshot send resumes', { peer: this.peer, offset: verified, attempt: attempt.number });
        this.pump(attempt);
        return;
      }
      case 'chunks': {
        const end = attempt.unacknowledgedEnds.shift();
        if (ack.done || end === undefined || verified < attempt.verifiedBytes || verified > end) {
          this.endAttempt(attempt, this.protocolError(`acknowledged ${verified} bytes out of turn`));
          return;
        }
        if (verified > attempt.verifiedBytes) {
          attempt.verifiedBytes = verified;
          attempt.progressed = true;
          // Progress: the receiver gets a fresh progressTimeoutMs for what is still on the wire.
          this.disarmProgressTimer(attempt);
          this.options.onProgress?.(verified, byteLength);
          if (this.attempt !== attempt) return; // onProgress may cancel the send
        }
        if (attempt.unacknowledgedEnds.length === 0) this.disarmProgressTimer(attempt);
        else if (attempt.progressTimer === undefined) this.armProgressTimer(attempt);
        this.pump(attempt);
        return;
      }
      case 'finishing': {
        if (!ack.done || verified !== byteLength) {
          this.endAttempt(attempt, this.protocolError('answered done with something else'));
          return;
        }
        this.succeed(attempt);
        return;
      }
    }
  }

  // pump sends what the window, the stream and the rate allow: the next chunk (one read at a
  // time), or done once every byte is acknowledged.
  private pump(attempt: Attempt): void {
    if (this.attempt !== attempt || attempt.phase !== 'chunks' || attempt.reading || attempt.waitingForDrain) return;
    const byteLength = this.hello.byteLength;
    if (attempt.nextOffset >= byteLength) {
      if (attempt.unacknowledgedEnds.length > 0) return;
      if (attempt.verifiedBytes !== byteLength) {
        // The receiver took every chunk but holds fewer bytes checked: resume where it says.
        this.endAttempt(attempt, this.protocolError(`verified ${attempt.verifiedBytes} of the ${byteLength} bytes it acknowledged`));
        return;
      }
      attempt.phase = 'finishing';
      this.disarmProgressTimer(attempt);
      attempt.stream?.write({ kind: 'done' });
      return;
    }
    if (attempt.unacknowledgedEnds.length >= SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX) return;
    attempt.reading = true;
    const offset = attempt.nextOffset;
    let read: Promise<Uint8Array>;
    try {
      read = this.payload.read(offset, this.options.chunkBytes);
    } catch (error) {
      read = Promise.reject(error);
    }
    const settled = read.then(
      (bytes) => this.onRead(attempt, offset, bytes),
      (error: unknown) => this.onReadFailed(attempt, error),
    );
    this.pendingRead = settled;
    void settled.finally(() => {
      if (this.pendingRead === settled) this.pendingRead = undefined;
    });
  }

  private onRead(attempt: Attempt, offset: number, bytes: Uint8Array): void {
    if (this.attempt !== attempt) return; // the attempt ended: drop the buffer
    const limit = Math.max(this.options.chunkBytes, SNAPSHOT_BLOCK_BYTES_MAX);
    if (!(bytes instanceof Uint8Array) || bytes.byteLength === 0 || bytes.byteLength > limit || offset + bytes.byteLength > this.hello.byteLength) {
      this.fail(new StrataError(ErrorCode.INVALID_ARGUMENT, `the snapshot payload returned ${String(bytes?.byteLength)} bytes at offset ${offset}`, {
        details: { peer: this.peer, offset },
      }));
      return;
    }
    const crc = chunkCrc32c(bytes);
    const delayMs = this.tokens.delayMs(bytes.byteLength);
    if (delayMs === 0) {
      this.writeChunk(attempt, { offset, data: bytes, crc32c: crc });
      return;
    }
    attempt.rateTimer = this.clock.setTimeout(() => {
      attempt.rateTimer = undefined;
      this.writeChunk(attempt, { offset, data: bytes, crc32c: crc });
    }, delayMs);
  }

  private writeChunk(attempt: Attempt, chunk: SnapshotChunk): void {
    if (this.attempt !== attempt) return;
    const length = chunk.data.byteLength;
    const end = chunk.offset + length;
    this.tokens.take(length);
    attempt.reading = false;
    attempt.nextOffset = end;
    attempt.unacknowledgedEnds.push(end);
    assert(attempt.unacknowledgedEnds.length <= SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX, 'SnapshotSend: the window holds');
    this.stats.chunksSent += 1;
    this.stats.bytesSent += length;
    this.stats.bytesResent += Math.max(0, Math.min(end, this.sentHighWater) - chunk.offset);
    this.sentHighWater = Math.max(this.sentHighWater, end);
    if (attempt.progressTimer === undefined) this.armProgressTimer(attempt);
    const writable = attempt.stream?.write({ kind: 'chunk', chunk }) ?? false;
    if (!writable) attempt.waitingForDrain = true;
    this.pump(attempt);
  }

  private onReadFailed(attempt: Attempt, error: unknown): void {
    if (this.attempt !== attempt) return;
    // The payload checks every byte it returns: a failed read is the snapshot's, not the link's.
    this.fail(asStrataError(error, ErrorCode.UNAVAILABLE, 'the snapshot payload failed to read'));
  }

  private onDrain(attempt: Attempt): void {
    if (this.attempt !== attempt) return;
    attempt.waitingForDrain = false;
    this.pump(attempt);
  }

  private onRefused(attempt: Attempt, error: StrataError): void {
    if (this.attempt !== attempt) return;
    // Worth another attempt: a busy or briefly unavailable receiver, and a chunk that arrived
    // damaged (the next attempt resends it). Anything else is the receiver's answer, and so is
    // any error once done was sent (finish() checked the whole and refused it).
    const retry =
      attempt.phase !== 'finishing' &&
      (error.code === ErrorCode.UNAVAILABLE || error.code === ErrorCode.TIMEOUT || (attempt.phase === 'chunks' && error.code === ErrorCode.CORRUPTION));
    if (retry) this.endAttempt(attempt, error);
    else this.fail(error);
  }

  private onBroken(attempt: Attempt, error: StrataError): void {
    if (this.attempt !== attempt) return;
    this.endAttempt(attempt, error);
  }

  private onStalled(attempt: Attempt): void {
    attempt.progressTimer = undefined;
    if (this.attempt !== attempt) return;
    this.endAttempt(
      attempt,
      new StrataError(ErrorCode.UNAVAILABLE, `peer ${this.peer} acknowledged nothing new for ${this.options.progressTimeoutMs} ms`, {
        details: { peer: this.peer, phase: attempt.phase, verifiedBytes: attempt.verifiedBytes },
      }),
    );
  }

  // endAttempt abandons an attempt that can be retried, and backs off before the next, or
  // fails the send after stalledAttemptsMax attempts in a row without progress.
  private endAttempt(attempt: Attempt, error: StrataError): void {
    assert(this.attempt === attempt && !this.settled, 'SnapshotSend: end the current attempt');
    this.attempt = undefined;
    this.clearTimers(attempt);
    attempt.stream?.cancel();
    if (attempt.progressed) {
      this.stalledAttempts = 0;
      this.backoffMs = SNAPSHOT_RETRY_BACKOFF_MS_MIN;
    } else {
      this.stalledAttempts += 1;
    }
    this.logger.info('snapshot stream attempt failed', {
      peer: this.peer,
      attempt: attempt.number,
      code: error.code,
      error: error.message,
      verifiedBytes: attempt.verifiedBytes,
      stalledAttempts: this.stalledAttempts,
    });
    if (this.stalledAttempts >= this.options.stalledAttemptsMax) {
      this.fail(new StrataError(ErrorCode.UNAVAILABLE, `snapshot send to peer ${this.peer} made no progress in ${this.stalledAttempts} attempts: ${error.message}`, {
        cause: error,
        details: { peer: this.peer, attempts: this.attemptsMade, lastCode: error.code },
      }));
      return;
    }
    const delayMs = this.backoffMs;
    if (!attempt.progressed) this.backoffMs = Math.min(SNAPSHOT_RETRY_BACKOFF_MS_MAX, this.backoffMs * 2);
    this.backoffTimer = this.clock.setTimeout(() => {
      this.backoffTimer = undefined;
      // The next attempt starts once the last one's read settled: never two chunk buffers read at once.
      const pending = this.pendingRead;
      if (pending === undefined) this.startAttempt();
      else void pending.then(() => this.startAttempt());
    }, delayMs);
  }

  private protocolError(what: string): StrataError {
    return new StrataError(ErrorCode.UNAVAILABLE, `peer ${this.peer} broke the snapshot protocol: it ${what}`, { details: { peer: this.peer } });
  }

  private armProgressTimer(attempt: Attempt): void {
    this.disarmProgressTimer(attempt);
    attempt.progressTimer = this.clock.setTimeout(() => this.onStalled(attempt), this.options.progressTimeoutMs);
  }

  private disarmProgressTimer(attempt: Attempt): void {
    if (attempt.progressTimer !== undefined) this.clock.clearTimeout(attempt.progressTimer);
    attempt.progressTimer = undefined;
  }

  private clearTimers(attempt: Attempt): void {
    this.disarmProgressTimer(attempt);
    if (attempt.rateTimer !== undefined) this.clock.clearTimeout(attempt.rateTimer);
    attempt.rateTimer = undefined;
  }
}

/** StartSnapshotSendParams is what startSnapshotSend needs of a transport. */
export interface StartSnapshotSendParams {
  readonly localId: NodeId;
  /** The transport is closed: the send fails UNAVAILABLE at once. */
  readonly closed: boolean;
  readonly message: SnapshotMessage;
  readonly payload: SnapshotPayload;
  readonly options: SnapshotSendOptions;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly stats: SnapshotStats;
  /** The transport's running sends: the new one is in it until it settles (close() fails them). */
  readonly sends: Set<SnapshotSend>;
  readonly open: SnapshotAttemptOpener;
}

/**
 * startSnapshotSend checks a Transport.sendSnapshot call and starts it: both transports run
 * it, so the memory twin sends exactly as the gRPC one does.
 */
export function startSnapshotSend(params: StartSnapshotSendParams): Promise<void> {
  const { message, payload } = params;
  assert(message.type === 'snapshot', 'sendSnapshot sends a snapshot message');
  assert(message.from === params.localId, 'a snapshot message from this member');
  assert(Number.isSafeInteger(message.to) && message.to > 0 && message.to !== params.localId, 'a snapshot message to a peer');
  const peer = message.to;
  if (params.closed) return Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport is closed', { details: { peer } }));
  let send: SnapshotSend;
  try {
    if (!Number.isSafeInteger(payload.byteLength) || payload.byteLength < 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot payload length ${String(payload.byteLength)} is not a length`, { details: { field: 'byteLength' } });
    }
    send = new SnapshotSend({
      hello: snapshotHello(message, payload.byteLength),
      payload,
      options: resolveSnapshotSendOptions(params.options),
      clock: params.clock,
      logger: params.logger,
      stats: params.stats,
      open: params.open,
    });
  } catch (error) {
    return Promise.reject(error);
  }
  const sends = params.sends;
  sends.add(send);
  void send.promise.then(
    () => sends.delete(send),
    () => sends.delete(send),
  );
  send.start();
  return send.promise;
}

/** SnapshotReplyPort is how an IncomingSnapshot answers on its stream. */
export interface SnapshotReplyPort {
  ack(ack: SnapshotAck): void;
  /** refuse answers with the receiver's StrataError and ends the stream. */
  refuse(error: StrataError): void;
  /** end ends the stream after the last ack. */
  end(): void;
  /** abandon ends the stream without an answer (the receiving transport closes, the peer was removed). */
  abandon(error: StrataError): void;
}

/** SnapshotReceiverOptions configure a transport's SnapshotReceiver. */
export interface SnapshotReceiverOptions {
  readonly logger: Logger;
  readonly stats: SnapshotStats;
  /** The driver's onSnapshot (TransportHandlers). */
  readonly onSnapshot: (from: NodeId, message: SnapshotMessage, byteLength: number, signal: AbortSignal) => Promise<SnapshotSink>;
}

/**
 * SnapshotReceiver admits a transport's incoming snapshot streams under the per-peer and total
 * bounds and keeps one peer's sink calls one at a time across its streams.
 */
export class SnapshotReceiver {
  private readonly logger: Logger;
  private readonly stats: SnapshotStats;
  private readonly onSnapshot: SnapshotReceiverOptions['onSnapshot'];
  // Streams admitted and not yet terminal (at most SNAPSHOT_INCOMING_STREAMS_MAX).
  private readonly open = new Set<IncomingSnapshot>();
  // The sink call in progress for a peer (there is at most one: calls are serial per peer).
  private readonly sinkCalls = new Map<NodeId, Promise<void>>();

  constructor(options: SnapshotReceiverOptions) {
    this.logger = options.logger;
    this.stats = options.stats;
    this.onSnapshot = options.onSnapshot;
  }

  /** openStreams counts the streams admitted and not yet ended. */
  get openStreams(): number {
    return this.open.size;
  }

  /**
   * accept admits a stream whose hello the transport checked (identity, message), or returns
   * the UNAVAILABLE refusal when the peer already has a stream or the total bound is reached.
   */
  accept(hello: SnapshotHello, port: SnapshotReplyPort): IncomingSnapshot | StrataError {
    let fromPeer = 0;
    for (const incoming of this.open) if (incoming.from === hello.from) fromPeer += 1;
    if (fromPeer >= SNAPSHOT_INCOMING_STREAMS_PER_PEER_MAX || this.open.size >= SNAPSHOT_INCOMING_STREAMS_MAX) {
      this.stats.incomingRefused += 1;
      const reason = fromPeer >= SNAPSHOT_INCOMING_STREAMS_PER_PEER_MAX ? `a snapshot stream from member ${hello.from} is already open` : `${this.open.size} snapshot streams are open`;
      this.logger.info('refused a snapshot stream', { from: hello.from, reason });
      return new StrataError(ErrorCode.UNAVAILABLE, `${reason}; try again later`, { details: { peer: hello.from } });
    }
    const incoming = new IncomingSnapshot(this, hello, port);
    this.open.add(incoming);
    const busy = this.sinkCalls.get(hello.from);
    if (busy === undefined) incoming.begin();
    else void busy.then(() => incoming.begin());
    return incoming;
  }

  /** endAll ends every open stream without an answer (close, or `peer` removed when given). */
  endAll(error: StrataError, peer?: NodeId): void {
    for (const incoming of [...this.open]) {
      if (peer === undefined || incoming.from === peer) incoming.abandon(error);
    }
  }

  /** callSink runs one sink call for `from`, recording it so that the peer's next stream waits for it. */
  callSink<T>(from: NodeId, call: () => Promise<T>): Promise<T> {
    assert(!this.sinkCalls.has(from), 'SnapshotReceiver: one sink call per peer at a time');
    let result: Promise<T>;
    try {
      result = call();
    } catch (error) {
      result = Promise.reject(error);
    }
    // Cleared by the first callback on the call's result, before the caller's own: a caller
    // that makes its next sink call from there finds the peer free.
    const clear = (): void => {
      if (this.sinkCalls.get(from) === done) this.sinkCalls.delete(from);
    };
    const done: Promise<void> = result.then(clear, clear);
    this.sinkCalls.set(from, done);
    return result;
  }

  /** openSink calls the driver's onSnapshot for one stream. */
  openSink(from: NodeId, message: SnapshotMessage, byteLength: number, signal: AbortSignal): Promise<SnapshotSink> {
    return this.onSnapshot(from, message, byteLength, signal);
  }

  /** released is called by a stream once it is terminal. */
  released(incoming: IncomingSnapshot): void {
    this.open.delete(incoming);
  }

  /** warn logs for the streams. */
  warn(message: string, fields: Record<string, unknown>): void {
    this.logger.warn(message, fields);
  }
}

type IncomingState = 'opening' | 'receiving' | 'finishing' | 'finished' | 'refused' | 'broken';

/** IncomingSnapshot is the receiver's side of one snapshot stream (see the file comment for its states). */
export class IncomingSnapshot {
  readonly from: NodeId;
  private readonly receiver: SnapshotReceiver;
  private readonly hello: SnapshotHello;
  private readonly port: SnapshotReplyPort;
  private readonly controller = new AbortController();
  private state: IncomingState = 'opening';
  private sink: SnapshotSink | undefined;
  // The offset the next chunk must start at: the resume offset, then each chunk's end.
  private expectedOffset = 0;
  // Chunks received and not yet written, then done; at most SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX chunks.
  private readonly queue: SnapshotSenderFrame[] = [];
  private sinkBusy = false;

  constructor(receiver: SnapshotReceiver, hello: SnapshotHello, port: SnapshotReplyPort) {
    this.receiver = receiver;
    this.from = hello.from;
    this.hello = hello;
    this.port = port;
  }

  /** begin opens the sink (called once the peer's previous sink call settled). */
  begin(): void {
    if (this.state !== 'opening') return; // the stream ended while it waited
    this.sinkBusy = true;
    const { from, message, byteLength } = this.hello;
    this.receiver.callSink(from, () => this.receiver.openSink(from, message, byteLength, this.controller.signal)).then(
      (sink) => {
        this.sinkBusy = false;
        if (this.state !== 'opening') return; // ended meanwhile: the sink stays as it is, for the next stream
        const verified = sink.verifiedBytes();
        if (!Number.isSafeInteger(verified) || verified < 0 || verified > byteLength) {
          this.refuse(new StrataError(ErrorCode.INVALID_ARGUMENT, `the snapshot sink holds ${String(verified)} of ${byteLength} bytes`));
          return;
        }
        this.sink = sink;
        this.expectedOffset = verified;
        this.state = 'receiving';
        this.port.ack({ verifiedBytes: verified, done: false });
      },
      (error: unknown) => {
        this.sinkBusy = false;
        this.refuse(this.sinkError(error, 'onSnapshot'));
      },
    );
  }

  /** receive takes one frame after the hello. */
  receive(frame: SnapshotSenderFrame): void {
    if (this.isTerminal()) return;
    if (this.state !== 'receiving') {
      this.refuse(new StrataError(ErrorCode.INVALID_ARGUMENT, `a snapshot frame arrived while the stream was ${this.state}`));
      return;
    }
    switch (frame.kind) {
      case 'chunk': {
        const { offset, data } = frame.chunk;
        if (offset !== this.expectedOffset || data.byteLength === 0 || offset + data.byteLength > this.hello.byteLength) {
          this.refuse(new StrataError(ErrorCode.INVALID_ARGUMENT, `a snapshot chunk of ${data.byteLength} bytes at ${offset} does not follow ${this.expectedOffset}`));
          return;
        }
        if (this.queue.length >= SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX) {
          this.refuse(new StrataError(ErrorCode.INVALID_ARGUMENT, `more than ${SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX} snapshot chunks unacknowledged`));
          return;
        }
        if (chunkCrc32c(data) !== frame.chunk.crc32c) {
          // Damaged in transit: refused; the sender resumes from what the sink verified.
          this.refuse(new StrataError(ErrorCode.CORRUPTION, `snapshot chunk at ${offset} failed its CRC32c`, { details: { offset } }));
          return;
        }
        this.expectedOffset = offset + data.byteLength;
        this.queue.push(frame);
        break;
      }
      case 'done':
        if (this.expectedOffset !== this.hello.byteLength) {
          this.refuse(new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot done after ${this.expectedOffset} of ${this.hello.byteLength} bytes`));
          return;
        }
        this.queue.push(frame);
        break;
      case 'invalid':
        this.refuse(new StrataError(ErrorCode.INVALID_ARGUMENT, `malformed snapshot frame: ${frame.what}`));
        return;
    }
    this.writeNext();
  }

  /** streamEnded: the stream ended before the last answer (broken, cancelled); the sink is left as it is. */
  streamEnded(reason: StrataError): void {
    if (this.isTerminal()) return;
    this.state = 'broken';
    this.queue.length = 0;
    this.receiver.released(this);
    this.controller.abort(reason);
  }

  /** abandon ends the stream from this side without an answer (close, peer removed). */
  abandon(error: StrataError): void {
    if (this.isTerminal()) return;
    this.streamEnded(error);
    this.port.abandon(error);
  }

  private writeNext(): void {
    if (this.sinkBusy || this.state !== 'receiving') return;
    const frame = this.queue.shift();
    const sink = this.sink;
    if (frame === undefined) return;
    assert(sink !== undefined, 'IncomingSnapshot: a receiving stream has its sink');
    this.sinkBusy = true;
    if (frame.kind === 'chunk') {
      const { offset, data } = frame.chunk;
      this.receiver.callSink(this.from, () => sink.write(offset, data)).then(
        () => {
          this.sinkBusy = false;
          if (this.state !== 'receiving') return;
          this.port.ack({ verifiedBytes: sink.verifiedBytes(), done: false });
          this.writeNext();
        },
        (error: unknown) => {
          this.sinkBusy = false;
          this.refuse(this.sinkError(error, 'write'));
        },
      );
      return;
    }
    assert(frame.kind === 'done' && this.queue.length === 0, 'IncomingSnapshot: done comes last');
    this.state = 'finishing';
    this.receiver.callSink(this.from, () => sink.finish()).then(
      () => {
        this.sinkBusy = false;
        if (this.state !== 'finishing') return; // broken meanwhile: the sender will ask again
        this.state = 'finished';
        this.receiver.released(this);
        this.port.ack({ verifiedBytes: this.hello.byteLength, done: true });
        this.port.end();
      },
      (error: unknown) => {
        this.sinkBusy = false;
        this.refuse(this.sinkError(error, 'finish'));
      },
    );
  }

  private refuse(error: StrataError): void {
    if (this.isTerminal()) return;
    this.state = 'refused';
    this.queue.length = 0;
    this.receiver.released(this);
    this.port.refuse(error);
    // The sink's own calls are over; nothing should wait on this stream any more.
    this.controller.abort(error);
  }

  private sinkError(error: unknown, call: string): StrataError {
    if (isStrataError(error)) return error;
    this.receiver.warn('snapshot sink failed without a StrataError', { from: this.from, call, error: String(error) });
    return new StrataError(ErrorCode.UNAVAILABLE, `snapshot ${call} failed: ${String(error)}`);
  }

  private isTerminal(): boolean {
    return this.state === 'finished' || this.state === 'refused' || this.state === 'broken';
  }
}

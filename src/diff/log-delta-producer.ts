// LogDeltaProducer: the serving side of one log-delta call (admin.proto's LogStream), apart
// from gRPC: it reads a member's committed log (or its snapshot, when the log is compacted
// past the index asked for) through a LogDeltaSource, cuts chunks sized by the
// ChunkSizeController, seals them (log-delta-frame.ts) and hands them to a ChunkSink, holding
// at most a window of unacknowledged chunks. src/server/admin-service.ts connects it to a
// gRPC call; the tests connect it to an array.
//
// A call goes: start checked → [snapshot: begin, data…, end] → entries… → (following: wait
// for commits, heartbeats) → end chunk. Every way out settles run(): the end chunk sent
// (resolves), the consumer's cancel (CANCELED), a consumer silent for ACK_STALL_MS_MAX while
// the window is full (TIMEOUT), a protocol violation reported with fail() (its error), or the
// source's error (STOPPED, …). A snapshot opened is closed on every way out.
//
// Invariants: 0 <= acknowledged <= sequence (the last chunk sent); the window holds exactly
// the chunks acknowledged < s <= sequence, at most WINDOW_CHUNKS_MAX of them and
// WINDOW_BYTES_MAX bytes, unless one chunk larger than that goes alone; entries sent are
// contiguous from where the call started (or from a snapshot's index + 1) and never beyond
// what the source says is committed.

import { createHash } from 'node:crypto';

import type { Entry, Index } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import type { Clock, TimerId } from '../util/clock.ts';
import { ErrorCode, isStrataError, StrataError } from '../util/errors.ts';
import { ChunkSizeController, CHUNK_BYTES_MAX } from './chunk-size-controller.ts';
import type { LogChunk, LogChunkFields, SnapshotMeta } from './log-delta-frame.ts';
import { ChunkKind, encodeEntries, encodeSnapshotMeta, entryEncodedBytes, sealChunk } from './log-delta-frame.ts';
import type { LogStreamAck, LogStreamStart } from './log-delta-protocol.ts';
import { ACK_STALL_MS_MAX, HEARTBEAT_INTERVAL_MS, WINDOW_BYTES_MAX, WINDOW_CHUNKS_MAX } from './log-delta-protocol.ts';

/** ENTRIES_PER_CHUNK_MAX bounds the entries one read asks for (tiny entries would otherwise make 200,000-entry chunks). */
export const ENTRIES_PER_CHUNK_MAX = 65_536;
/** SNAPSHOTS_PER_CALL_MAX bounds the snapshots one call sends (the log compacted past each before its entries were read). */
export const SNAPSHOTS_PER_CALL_MAX = 4;
/** SNAPSHOT_PREFIX_READ_BYTES is one read while hashing the part of a snapshot a resumed consumer holds. */
export const SNAPSHOT_PREFIX_READ_BYTES = 4 * 1024 * 1024;

/** LogDeltaSnapshot is a snapshot file pinned for one call: whole checked blocks from an offset. */
export interface LogDeltaSnapshot {
  readonly meta: SnapshotMeta;
  /**
   * read answers the file's bytes from `offset` (0, or where a read ended): whole blocks, at
   * least one even when it is larger than `maxBytes`; empty at the end. CORRUPTION for a
   * block that fails its check.
   */
  read(offset: number, maxBytes: number): Promise<Uint8Array>;
  /** close releases the snapshot; twice is harmless. */
  close(): Promise<void>;
}

/** LogDeltaSource is the member's committed log as the stream reads it (RaftNode in production). */
export interface LogDeltaSource {
  /** committedIndex is the last index the stream may send: committed, durable and applied here. */
  committedIndex(): Index;
  /** firstIndex is the first index the log still holds (before it: compacted). */
  firstIndex(): Index;
  /**
   * readCommittedEntries answers entries from..toInclusive (toInclusive <= committedIndex()),
   * stopping before their size passes maxBytes but at least one; COMPACTED when `from` is
   * no longer held.
   */
  readCommittedEntries(from: Index, toInclusive: Index, maxBytes: number): readonly Entry[];
  /**
   * openSnapshot pins a snapshot whose index is at most committedIndex() and from whose
   * index + 1 the log continues: snapshot `id` when it still is one, else the newest (taking
   * one if none is). STOPPED when the member stops.
   */
  openSnapshot(options: { readonly id?: string }): Promise<LogDeltaSnapshot>;
  /**
   * waitForCommit resolves true once committedIndex() > afterIndex, false after timeoutMs;
   * rejects CANCELED when `signal` aborts, STOPPED when the member stops.
   */
  waitForCommit(afterIndex: Index, options: { readonly signal: AbortSignal; readonly timeoutMs: number }): Promise<boolean>;
  /** isRemoved tells whether this member was removed from its cluster (it sees no new commits). */
  isRemoved(): boolean;
  /**
   * holdLog has every member keep the log from `index` on for `ttlMs` for `consumer` (a log
   * hold: src/node/log-holds.ts; index 0 releases it) and resolves once it is applied on this
   * member, with the member's id and the hold's deadline by its wall clock. Not the stream's
   * business, but its consumers': Admin.LogHold, beside LogStream, answers UNIMPLEMENTED when a
   * source has none.
   */
  holdLog?(
    consumer: string,
    index: Index,
    ttlMs: number,
    options: { readonly signal: AbortSignal; readonly timeoutMs?: number },
  ): Promise<{ readonly memberId: number; readonly expiresAtMs: number }>;
}

/** ChunkSink is where chunks go (a gRPC call's write side). */
export interface ChunkSink {
  /**
   * send hands one chunk to the transport and resolves once the transport takes more (gRPC's
   * own flow control: a write that asked for 'drain'); rejects when the call ended.
   */
  send(chunk: LogChunk): Promise<void>;
}

/** LogDeltaSummary counts what one call sent. */
export interface LogDeltaSummary {
  readonly chunks: number;
  readonly entries: number;
  readonly payloadBytes: number;
  readonly snapshots: number;
  /** The last index the call covered (entries or a snapshot's index). */
  readonly lastIndex: Index;
}

/** LogDeltaProducerOptions build a LogDeltaProducer. */
export interface LogDeltaProducerOptions {
  readonly start: LogStreamStart;
  readonly source: LogDeltaSource;
  readonly sink: ChunkSink;
  readonly clock: Clock;
  /** Aborted when the consumer cancels the call. */
  readonly signal: AbortSignal;
  /** Overrides HEARTBEAT_INTERVAL_MS (tests). */
  readonly heartbeatIntervalMs?: number;
  /** Overrides ACK_STALL_MS_MAX (tests). */
  readonly ackStallMs?: number;
}

interface InFlight {
  readonly sequence: number;
  readonly bytes: number;
  readonly sizedFor: number;
  readonly sentAtMs: number;
}

/** LogDeltaProducer serves one call; see the file comment. */
export class LogDeltaProducer {
  readonly #start: LogStreamStart;
  readonly #source: LogDeltaSource;
  readonly #sink: ChunkSink;
  readonly #clock: Clock;
  readonly #controller: ChunkSizeController;
  readonly #abort = new AbortController();
  readonly #heartbeatIntervalMs: number;
  readonly #ackStallMs: number;
  readonly #window: InFlight[] = [];
  #windowBytes = 0;
  #sequence = 0;
  #acknowledged = 0;
  #lastAckMs: number;
  #failure: StrataError | undefined;
  #wake: (() => void) | undefined;
  // The sink's last send, until the transport takes more (gRPC's drain).
  #pendingSend: Promise<void> | undefined;
  #lastSentMs: number;
  #entries = 0;
  #payloadBytes = 0;
  #snapshots = 0;

  constructor(options: LogDeltaProducerOptions) {
    this.#start = options.start;
    this.#source = options.source;
    this.#sink = options.sink;
    this.#clock = options.clock;
    this.#heartbeatIntervalMs = options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.#ackStallMs = options.ackStallMs ?? ACK_STALL_MS_MAX;
    assert(this.#heartbeatIntervalMs > 0 && this.#ackStallMs > 0, 'intervals are positive');
    this.#controller = new ChunkSizeController({ bytesMax: options.start.maxChunkBytes === 0 ? CHUNK_BYTES_MAX : options.start.maxChunkBytes });
    this.#lastAckMs = this.#clock.now();
    this.#lastSentMs = this.#lastAckMs;
    const onAbort = (): void => this.fail(new StrataError(ErrorCode.CANCELED, 'the consumer cancelled the log stream'));
    if (options.signal.aborted) onAbort();
    else options.signal.addEventListener('abort', onAbort, { once: true });
  }

  /** chunkBytes is the size the next chunk is cut for. */
  get chunkBytes(): number {
    return this.#controller.chunkBytes;
  }

  /** unacknowledged is how many chunks are in the window now. */
  get unacknowledged(): number {
    return this.#window.length;
  }

  /**
   * acknowledge takes a consumer's acknowledgement: every chunk up to `ack.sequence` was
   * verified and consumed. An older one is ignored; one of a chunk never sent fails the call
   * with INVALID_ARGUMENT.
   */
  acknowledge(ack: LogStreamAck): void {
    if (ack.sequence > this.#sequence) {
      this.fail(new StrataError(ErrorCode.INVALID_ARGUMENT, `log stream: ack.sequence ${ack.sequence} acknowledges a chunk never sent (${this.#sequence} were)`, { details: { field: 'ack.sequence' } }));
      return;
    }
    if (ack.sequence <= this.#acknowledged) return;
    const nowMs = this.#clock.now();
    while (this.#window.length > 0 && (this.#window[0] as InFlight).sequence <= ack.sequence) {
      const done = this.#window.shift() as InFlight;
      this.#windowBytes -= done.bytes;
      this.#controller.onAcknowledged({ bytes: done.bytes, sizedFor: done.sizedFor, sentAtMs: done.sentAtMs, ackedAtMs: nowMs });
    }
    this.#acknowledged = ack.sequence;
    this.#lastAckMs = nowMs;
    assert(this.#window.length === this.#sequence - this.#acknowledged, 'the window holds exactly the unacknowledged chunks');
    this.#wake?.();
  }

  /** fail ends the call with `error` (the first failure wins); whatever run() waits on throws it. */
  fail(error: StrataError): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    this.#abort.abort();
    this.#wake?.();
  }

  /** run serves the call to its end chunk; see the file comment for how it settles. */
  async run(): Promise<LogDeltaSummary> {
    try {
      return await this.#serve();
    } catch (error) {
      throw this.#failure ?? error;
    }
  }

  async #serve(): Promise<LogDeltaSummary> {
    const start = this.#start;
    const source = this.#source;
    if (start.follow && source.isRemoved()) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'log stream: follow is refused: this member was removed from the cluster and sees no new commits; ask another member', { details: { field: 'follow' } });
    }
    const endIndex = start.toIndex > 0 ? start.toIndex : start.follow ? Number.POSITIVE_INFINITY : source.committedIndex();
    let resume = start.resumeSnapshot;
    let next = start.fromIndex;
    for (;;) {
      this.#checkRunning();
      if (next > endIndex) {
        await this.#emitWhenRoom({ kind: ChunkKind.End, firstIndex: next - 1, lastIndex: next - 1 });
        return this.#summary(next - 1);
      }
      if (next < source.firstIndex()) {
        if (this.#snapshots >= SNAPSHOTS_PER_CALL_MAX) {
          throw new StrataError(ErrorCode.UNAVAILABLE, `log stream: the log was compacted past each of ${SNAPSHOTS_PER_CALL_MAX} snapshots before its entries were sent; retry`);
        }
        next = (await this.#sendSnapshot(next, resume)) + 1;
        resume = undefined;
        continue;
      }
      const limit = Math.min(source.committedIndex(), endIndex);
      if (next <= limit) {
        await this.#waitForRoom();
        const sent = this.#sendEntries(next, limit);
        if (sent !== undefined) next = sent + 1;
        continue;
      }
      // Caught up: wait for the next commit, with a heartbeat when none comes.
      const committed = await source.waitForCommit(next - 1, { signal: this.#abort.signal, timeoutMs: this.#heartbeatIntervalMs });
      if (!committed) this.#heartbeat(next - 1);
    }
  }

  // #sendEntries sends one Entries chunk from `next` (at most to `limit`); answers its last
  // index, or undefined when `next` was compacted meanwhile (the loop then sends a snapshot).
  #sendEntries(next: Index, limit: Index): Index | undefined {
    const sizedFor = this.#controller.chunkBytes;
    let entries: readonly Entry[];
    try {
      entries = this.#source.readCommittedEntries(next, Math.min(limit, next + ENTRIES_PER_CHUNK_MAX - 1), sizedFor);
    } catch (error) {
      if (isStrataError(error, ErrorCode.COMPACTED) && next < this.#source.firstIndex()) return undefined;
      throw error;
    }
    const chunkEntries = fitEntries(entries, sizedFor);
    const first = chunkEntries[0];
    const last = chunkEntries[chunkEntries.length - 1];
    assert(first !== undefined && last !== undefined && first.index === next, 'a read answers entries from the index asked for');
    assert(last.index <= limit, 'no entry past the committed index is sent');
    this.#emit({ kind: ChunkKind.Entries, firstIndex: next, lastIndex: last.index, payload: encodeEntries(chunkEntries) }, sizedFor);
    this.#entries += chunkEntries.length;
    return last.index;
  }

  // #sendSnapshot sends a snapshot covering `next - 1` (resuming `resume` when it is the one
  // the source gives); answers its index.
  async #sendSnapshot(next: Index, resume: LogStreamStart['resumeSnapshot']): Promise<Index> {
    const snapshot = await this.#withHeartbeats(this.#source.openSnapshot(resume === undefined ? {} : { id: resume.id }), next - 1);
    try {
      this.#checkRunning();
      const { meta } = snapshot;
      if (meta.index + 1 < next || meta.index + 1 < this.#source.firstIndex()) {
        throw new StrataError(ErrorCode.UNAVAILABLE, `log stream: snapshot ${meta.id} at index ${meta.index} does not reach the log (from ${next}, first held ${this.#source.firstIndex()}); retry`);
      }
      const resumeAt = resume !== undefined && resume.id === meta.id ? resume.offset : 0;
      if (resumeAt > meta.byteLength) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `log stream: snapshot_offset ${resumeAt} is past the end of snapshot ${meta.id} (${meta.byteLength} bytes)`, { details: { field: 'snapshot_offset' } });
      }
      const hash = createHash('sha256');
      let offset = await this.#hashPrefix(snapshot, resumeAt, hash);
      this.#snapshots += 1;
      await this.#emitWhenRoom({ kind: ChunkKind.SnapshotBegin, firstIndex: meta.index, lastIndex: meta.index, snapshotOffset: resumeAt, payload: encodeSnapshotMeta(meta) });
      // Each read moves the offset by at least one block (an empty read throws), so the loop
      // ends within byteLength / SNAPSHOT_ALIGNMENT_BYTES passes.
      while (offset < meta.byteLength) {
        await this.#waitForRoom();
        const sizedFor = this.#controller.chunkBytes;
        const bytes = await snapshot.read(offset, sizedFor);
        this.#checkRunning();
        if (bytes.byteLength === 0 || offset + bytes.byteLength > meta.byteLength) {
          throw new StrataError(ErrorCode.CORRUPTION, `snapshot ${meta.id}: a read at ${offset} answered ${bytes.byteLength} bytes of a ${meta.byteLength}-byte file`, { details: { snapshotId: meta.id, offset } });
        }
        hash.update(bytes);
        // A copy: the reader may reuse its buffer while the transport still holds this chunk.
        this.#emit({ kind: ChunkKind.SnapshotData, firstIndex: meta.index, lastIndex: meta.index, snapshotOffset: offset, payload: bytes.slice() }, sizedFor);
        offset += bytes.byteLength;
      }
      await this.#emitWhenRoom({ kind: ChunkKind.SnapshotEnd, firstIndex: meta.index, lastIndex: meta.index, payload: hash.digest() });
      return meta.index;
    } finally {
      await snapshot.close();
    }
  }

  // #hashPrefix reads the first `offset` bytes a resumed consumer already holds into `hash`,
  // so that the snapshot's end chunk still carries the SHA-256 of the whole file.
  async #hashPrefix(snapshot: LogDeltaSnapshot, offset: number, hash: ReturnType<typeof createHash>): Promise<number> {
    let at = 0;
    while (at < offset) {
      this.#checkRunning();
      const bytes = await snapshot.read(at, Math.min(SNAPSHOT_PREFIX_READ_BYTES, offset - at));
      if (bytes.byteLength === 0) throw new StrataError(ErrorCode.CORRUPTION, `snapshot ${snapshot.meta.id}: a read at ${at} answered nothing`);
      if (at + bytes.byteLength > offset) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `log stream: snapshot_offset ${offset} is not where a chunk of snapshot ${snapshot.meta.id} ended`, { details: { field: 'snapshot_offset' } });
      }
      hash.update(bytes);
      at += bytes.byteLength;
    }
    return at;
  }

  // #withHeartbeats waits for a snapshot being opened, sending a heartbeat every interval
  // meanwhile (taking a snapshot may take a while, and a consumer must not take the silence
  // for a dead stream). When the call ends first, the snapshot is closed once it arrives.
  async #withHeartbeats(opening: Promise<LogDeltaSnapshot>, lastIndex: Index): Promise<LogDeltaSnapshot> {
    let settled = false;
    const watched = opening.finally(() => {
      settled = true;
      this.#wake?.();
    });
    // Each pass sleeps until the next heartbeat is due (a full interval when one was due but
    // the window had no room) or until a wake-up: the snapshot, an ack, a drain, a failure.
    for (;;) {
      const dueInMs = this.#lastSentMs + this.#heartbeatIntervalMs - this.#clock.now();
      await this.#sleepUnlessWoken(dueInMs > 0 ? dueInMs : this.#heartbeatIntervalMs);
      if (settled) return watched;
      if (this.#failure !== undefined) {
        watched.then((snapshot) => snapshot.close(), () => undefined).catch(() => undefined);
        throw this.#failure;
      }
      if (this.#clock.now() - this.#lastSentMs >= this.#heartbeatIntervalMs) this.#heartbeat(lastIndex);
    }
  }

  #heartbeat(lastIndex: Index): void {
    // A full window means the consumer has chunks it has not acknowledged: it hears from us.
    if (!this.#hasRoom()) return;
    this.#emit({ kind: ChunkKind.Heartbeat, firstIndex: lastIndex, lastIndex }, this.#controller.chunkBytes);
  }

  async #emitWhenRoom(fields: Omit<LogChunkFields, 'sequence' | 'commitIndex' | 'snapshotOffset' | 'payload'> & Partial<Pick<LogChunkFields, 'snapshotOffset' | 'payload'>>): Promise<void> {
    await this.#waitForRoom();
    this.#emit(fields, this.#controller.chunkBytes);
  }

  // #emit seals the next chunk, puts it in the window and hands it to the sink; a sink that
  // asks to wait (gRPC's drain) is waited for before the next chunk, through #pendingSend.
  #emit(fields: Omit<LogChunkFields, 'sequence' | 'commitIndex' | 'snapshotOffset' | 'payload'> & Partial<Pick<LogChunkFields, 'snapshotOffset' | 'payload'>>, sizedFor: number): void {
    this.#checkRunning();
    const chunk = sealChunk({
      sequence: this.#sequence + 1,
      kind: fields.kind,
      firstIndex: fields.firstIndex,
      lastIndex: fields.lastIndex,
      snapshotOffset: fields.snapshotOffset ?? 0,
      commitIndex: this.#source.committedIndex(),
      payload: fields.payload ?? EMPTY,
    });
    this.#sequence = chunk.sequence;
    this.#lastSentMs = this.#clock.now();
    this.#window.push({ sequence: chunk.sequence, bytes: chunk.payload.byteLength, sizedFor, sentAtMs: this.#clock.now() });
    this.#windowBytes += chunk.payload.byteLength;
    this.#payloadBytes += chunk.payload.byteLength;
    const sending = this.#sink.send(chunk);
    this.#pendingSend = sending.then(
      () => {
        this.#pendingSend = undefined;
        this.#wake?.();
      },
      (error: unknown) => this.fail(isStrataError(error) ? error : new StrataError(ErrorCode.UNAVAILABLE, `log stream: the call ended: ${String(error)}`, { cause: error })),
    );
  }

  #hasRoom(): boolean {
    if (this.#pendingSend !== undefined) return false;
    if (this.#window.length === 0) return true;
    return this.#window.length < WINDOW_CHUNKS_MAX && this.#windowBytes + this.#controller.chunkBytes <= WINDOW_BYTES_MAX;
  }

  // #waitForRoom waits until the window and the transport take another chunk; TIMEOUT when
  // the consumer acknowledges nothing for the stall time meanwhile.
  async #waitForRoom(): Promise<void> {
    const startedMs = this.#clock.now();
    // Each pass waits for a wake-up (an ack, a drain, a failure) or the stall deadline.
    for (;;) {
      this.#checkRunning();
      if (this.#hasRoom()) return;
      const stalledSinceMs = Math.max(startedMs, this.#lastAckMs);
      const remainingMs = stalledSinceMs + this.#ackStallMs - this.#clock.now();
      if (remainingMs <= 0) {
        throw new StrataError(ErrorCode.TIMEOUT, `log stream: the consumer acknowledged nothing for ${this.#ackStallMs} ms with ${this.#window.length} chunks unacknowledged`);
      }
      await this.#sleepUnlessWoken(remainingMs);
    }
  }

  // #sleepUnlessWoken resolves after `ms`, or sooner on a wake-up (ack, drain, failure).
  #sleepUnlessWoken(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.#clock.clearTimeout(timer);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer: TimerId = this.#clock.setTimeout(done, ms);
      this.#wake = done;
    });
  }

  #checkRunning(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  #summary(lastIndex: Index): LogDeltaSummary {
    return { chunks: this.#sequence, entries: this.#entries, payloadBytes: this.#payloadBytes, snapshots: this.#snapshots, lastIndex };
  }
}

const EMPTY = new Uint8Array(0);

/** fitEntries keeps the longest prefix of `entries` whose Entries payload fits `bytesMax`; at least one entry. */
export function fitEntries(entries: readonly Entry[], bytesMax: number): readonly Entry[] {
  assert(entries.length > 0, 'a read answers at least one entry');
  let bytes = entryEncodedBytes(entries[0] as Entry);
  let count = 1;
  while (count < entries.length) {
    bytes += entryEncodedBytes(entries[count] as Entry);
    if (bytes > bytesMax) break;
    count += 1;
  }
  return count === entries.length ? entries : entries.slice(0, count);
}

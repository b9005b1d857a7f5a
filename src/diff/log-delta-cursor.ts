// LogDeltaCursor: the consuming side of the log-delta stream, apart from gRPC. It checks every
// chunk (its CRC, its number within the call, that it continues exactly where the consumer
// is), turns it into events, and remembers where the consumer is, so that after a broken
// call the next one starts from the last verified index (and, in the middle of a snapshot,
// from the snapshot bytes verified) with nothing lost or repeated. Pure but for SHA-256.
//
// Position: `verifiedIndex` is the last index the consumer holds: the last entry handed over,
// or the index of the last snapshot handed over whole. The next call starts at
// verifiedIndex + 1. A snapshot in progress is `snapshot` (its metadata, the bytes verified,
// their running SHA-256); a new call offers to resume it. If that call does not (its first
// chunk is not the snapshot's begin at the bytes verified), the partial snapshot is
// abandoned: the consumer is told, and its position is unchanged. Heartbeats (sent while the
// producer opens a snapshot) come before that first chunk and decide nothing.
//
// Invariants: a chunk is accepted only with sequence = the previous one's + 1 within a call;
// entries accepted are contiguous from verifiedIndex + 1; a snapshot's bytes are accepted
// only in order from 0, and it counts only once its length and its file SHA-256 matched.

import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';

import type { Entry, Index } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import type { LogChunk, SnapshotMeta } from './log-delta-frame.ts';
import { ChunkKind, chunkCorruption, decodeEntries, decodeSnapshotMeta, SHA256_BYTES, verifyChunk } from './log-delta-frame.ts';
import type { LogStreamStart } from './log-delta-protocol.ts';

/** LogDeltaEvent is what one chunk means to the consumer. */
export type LogDeltaEvent =
  /** Committed entries firstIndex..lastIndex, in order. */
  | { readonly type: 'entries'; readonly entries: readonly Entry[]; readonly firstIndex: Index; readonly lastIndex: Index; readonly commitIndex: Index }
  /**
   * A snapshot replaces everything up to its index: its bytes follow (from `resumedAt`, 0 for
   * a new one; a resumed snapshot continues the bytes already received).
   */
  | { readonly type: 'snapshot-begin'; readonly snapshot: SnapshotMeta; readonly resumedAt: number; readonly commitIndex: Index }
  /** The snapshot file's bytes at `offset`. */
  | { readonly type: 'snapshot-data'; readonly snapshot: SnapshotMeta; readonly offset: number; readonly bytes: Uint8Array; readonly commitIndex: Index }
  /** The snapshot is whole: its length and the SHA-256 of its bytes (fileSha256, hex) matched. */
  | { readonly type: 'snapshot-end'; readonly snapshot: SnapshotMeta; readonly fileSha256: string; readonly commitIndex: Index }
  /** A partial snapshot will not be continued (a new call chose otherwise): drop what was received. */
  | { readonly type: 'snapshot-abandoned'; readonly snapshot: SnapshotMeta; readonly receivedBytes: number }
  /** Nothing new is committed; the stream is alive. */
  | { readonly type: 'heartbeat'; readonly lastIndex: Index; readonly commitIndex: Index }
  /** The stream is complete through lastIndex. */
  | { readonly type: 'end'; readonly lastIndex: Index; readonly commitIndex: Index };

/** LogDeltaCursorOptions say what the consumer asks for. */
export interface LogDeltaCursorOptions {
  readonly fromIndex: Index;
  readonly follow: boolean;
  /** 0: none given. */
  readonly toIndex: Index;
  /** 0: the default. */
  readonly maxChunkBytes: number;
}

interface SnapshotProgress {
  readonly meta: SnapshotMeta;
  receivedBytes: number;
  readonly hash: Hash;
}

/** LogDeltaCursor follows one logical stream across calls; see the file comment. */
export class LogDeltaCursor {
  readonly #options: LogDeltaCursorOptions;
  #verifiedIndex: Index;
  #snapshot: SnapshotProgress | undefined;
  // Within the current call: the last sequence accepted, and whether a snapshot in progress
  // may still be resumed (until the call's first chunk).
  #sequence = 0;
  #resumeOffered = false;
  #ended = false;
  #commitIndex: Index = 0;
  #where = 'log-delta stream';

  constructor(options: LogDeltaCursorOptions) {
    assert(Number.isSafeInteger(options.fromIndex) && options.fromIndex >= 1, 'fromIndex is a log index');
    this.#options = options;
    this.#verifiedIndex = options.fromIndex - 1;
  }

  /** verifiedIndex is the last index the consumer holds (see the file comment). */
  get verifiedIndex(): Index {
    return this.#verifiedIndex;
  }

  /** ended tells whether the end chunk arrived. */
  get ended(): boolean {
    return this.#ended;
  }

  /** commitIndex is the highest commit index a chunk reported (the producer's), for lag. */
  get commitIndex(): Index {
    return this.#commitIndex;
  }

  /** sequence is the last chunk accepted in the current call (what an ack names). */
  get sequence(): number {
    return this.#sequence;
  }

  /**
   * beginCall starts a new call from `where` (for messages) and answers its start request:
   * from the last verified index + 1, offering the snapshot in progress when there is one.
   * `toIndex`, when the consumer gave none and is not following, is what an earlier call
   * reported as committed, so a lagging member does not end the stream short of it.
   */
  beginCall(where: string): LogStreamStart {
    assert(!this.#ended, 'no call begins after the end');
    this.#where = where;
    this.#sequence = 0;
    this.#resumeOffered = this.#snapshot !== undefined && this.#snapshot.receivedBytes > 0;
    const { follow, toIndex, maxChunkBytes } = this.#options;
    const fromIndex = this.#verifiedIndex + 1;
    const impliedTo = toIndex === 0 && !follow && this.#commitIndex > 0 ? Math.max(this.#commitIndex, fromIndex - 1) : toIndex;
    const snapshot = this.#snapshot;
    return {
      fromIndex,
      follow,
      toIndex: impliedTo,
      maxChunkBytes,
      ...(this.#resumeOffered && snapshot !== undefined ? { resumeSnapshot: { id: snapshot.meta.id, offset: snapshot.receivedBytes } } : {}),
    };
  }

  /**
   * accept checks one chunk of the current call and answers its events (usually one; a
   * snapshot abandoned comes before what replaces it). CORRUPTION naming the chunk when it
   * fails its CRC, is out of order, or does not continue where the consumer is; the position
   * is then unchanged, and a new call resumes from it.
   */
  accept(chunk: LogChunk): LogDeltaEvent[] {
    assert(!this.#ended, 'no chunk is accepted after the end');
    verifyChunk(chunk, this.#where);
    if (chunk.sequence !== this.#sequence + 1) throw this.#corrupt(chunk, `arrived where chunk ${this.#sequence + 1} was due`);
    const events: LogDeltaEvent[] = [];
    const snapshot = this.#snapshot;
    // Heartbeats while the producer opens the snapshot decide nothing; the first other chunk does.
    const decides = chunk.kind !== ChunkKind.Heartbeat;
    const abandons = decides && this.#resumeOffered && snapshot !== undefined && !(chunk.kind === ChunkKind.SnapshotBegin && chunk.snapshotOffset > 0);
    if (abandons) {
      // The new call does not continue the partial snapshot.
      this.#snapshot = undefined;
      events.push({ type: 'snapshot-abandoned', snapshot: snapshot.meta, receivedBytes: snapshot.receivedBytes });
    }
    try {
      events.push(this.#take(chunk));
    } catch (error) {
      // Refused: the position stays as it was, the partial snapshot included.
      this.#snapshot = snapshot;
      throw error;
    }
    if (decides) this.#resumeOffered = false;
    this.#sequence = chunk.sequence;
    this.#commitIndex = Math.max(this.#commitIndex, chunk.commitIndex);
    return events;
  }

  #take(chunk: LogChunk): LogDeltaEvent {
    const commitIndex = chunk.commitIndex;
    switch (chunk.kind) {
      case ChunkKind.Entries: {
        if (this.#snapshot !== undefined) throw this.#corrupt(chunk, `holds entries in the middle of snapshot ${this.#snapshot.meta.id}`);
        if (chunk.firstIndex !== this.#verifiedIndex + 1) throw this.#corrupt(chunk, `starts at ${chunk.firstIndex}, but the consumer holds through ${this.#verifiedIndex}`);
        if (this.#options.toIndex > 0 && chunk.lastIndex > this.#options.toIndex) throw this.#corrupt(chunk, `goes past to_index ${this.#options.toIndex}`);
        const entries = decodeEntries(chunk, this.#where);
        this.#verifiedIndex = chunk.lastIndex;
        return { type: 'entries', entries, firstIndex: chunk.firstIndex, lastIndex: chunk.lastIndex, commitIndex };
      }
      case ChunkKind.SnapshotBegin: {
        const meta = decodeSnapshotMeta(chunk, this.#where);
        if (meta.index < this.#verifiedIndex) throw this.#corrupt(chunk, `sends snapshot ${meta.id} at ${meta.index}, behind the consumer's ${this.#verifiedIndex}`);
        if (chunk.snapshotOffset > 0) {
          const current = this.#snapshot;
          if (current === undefined || current.meta.id !== meta.id || current.receivedBytes !== chunk.snapshotOffset) {
            throw this.#corrupt(chunk, `resumes snapshot ${meta.id} at byte ${chunk.snapshotOffset}, which the consumer does not hold`);
          }
          return { type: 'snapshot-begin', snapshot: current.meta, resumedAt: chunk.snapshotOffset, commitIndex };
        }
        if (this.#snapshot !== undefined) throw this.#corrupt(chunk, `begins snapshot ${meta.id} in the middle of snapshot ${this.#snapshot.meta.id}`);
        this.#snapshot = { meta, receivedBytes: 0, hash: createHash('sha256') };
        return { type: 'snapshot-begin', snapshot: meta, resumedAt: 0, commitIndex };
      }
      case ChunkKind.SnapshotData: {
        const current = this.#snapshot;
        if (current === undefined) throw this.#corrupt(chunk, 'holds snapshot bytes outside a snapshot');
        if (chunk.firstIndex !== current.meta.index || chunk.snapshotOffset !== current.receivedBytes) {
          throw this.#corrupt(chunk, `holds bytes at ${chunk.snapshotOffset} of the snapshot at ${chunk.firstIndex}; ${current.receivedBytes} bytes of ${current.meta.id} are held`);
        }
        if (chunk.payload.byteLength === 0 || current.receivedBytes + chunk.payload.byteLength > current.meta.byteLength) {
          throw this.#corrupt(chunk, `holds ${chunk.payload.byteLength} bytes at ${chunk.snapshotOffset} of a ${current.meta.byteLength}-byte snapshot`);
        }
        current.hash.update(chunk.payload);
        current.receivedBytes += chunk.payload.byteLength;
        return { type: 'snapshot-data', snapshot: current.meta, offset: chunk.snapshotOffset, bytes: chunk.payload, commitIndex };
      }
      case ChunkKind.SnapshotEnd: {
        const current = this.#snapshot;
        if (current === undefined) throw this.#corrupt(chunk, 'ends a snapshot that did not begin');
        if (current.receivedBytes !== current.meta.byteLength) throw this.#corrupt(chunk, `ends snapshot ${current.meta.id} after ${current.receivedBytes} of ${current.meta.byteLength} bytes`);
        if (chunk.payload.byteLength !== SHA256_BYTES) throw this.#corrupt(chunk, `holds ${chunk.payload.byteLength} bytes, not a SHA-256`);
        // A copy of the hash: a failed end leaves the snapshot resumable from its bytes.
        const digest = current.hash.copy().digest();
        if (!digest.equals(chunk.payload)) {
          throw this.#corrupt(chunk, `says the snapshot's SHA-256 is ${Buffer.from(chunk.payload).toString('hex')}; the bytes received hash to ${digest.toString('hex')}`);
        }
        this.#snapshot = undefined;
        this.#verifiedIndex = current.meta.index;
        return { type: 'snapshot-end', snapshot: current.meta, fileSha256: digest.toString('hex'), commitIndex };
      }
      case ChunkKind.Heartbeat:
        // A partial snapshot offered for resuming is still held (not yet decided).
        if (this.#resumeOffered) this.#checkPosition(chunk);
        else this.#checkCaughtUp(chunk);
        return { type: 'heartbeat', lastIndex: chunk.lastIndex, commitIndex };
      case ChunkKind.End:
        this.#checkCaughtUp(chunk);
        this.#ended = true;
        return { type: 'end', lastIndex: chunk.lastIndex, commitIndex };
    }
  }

  #checkCaughtUp(chunk: LogChunk): void {
    if (this.#snapshot !== undefined) throw this.#corrupt(chunk, `comes in the middle of snapshot ${this.#snapshot.meta.id}`);
    this.#checkPosition(chunk);
  }

  #checkPosition(chunk: LogChunk): void {
    if (chunk.lastIndex !== this.#verifiedIndex) throw this.#corrupt(chunk, `says the stream is at ${chunk.lastIndex}; the consumer holds through ${this.#verifiedIndex}`);
  }

  #corrupt(chunk: LogChunk, why: string): Error {
    return chunkCorruption(chunk, this.#where, why);
  }
}

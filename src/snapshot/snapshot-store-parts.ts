// snapshot-store-parts.ts — what DiskSnapshotStore and MemorySnapshotStore share besides the
// file format: leases and retention, reading a SnapshotSource under an AbortSignal, the
// readBlocks() walk, and the receive assembler that turns arbitrary chunks into verified
// whole blocks. Each store supplies only its I/O (a file, or an array of bytes).

import type { Clock } from '../util/clock.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError, isStrataError } from '../util/errors.ts';
import {
  SNAPSHOT_ALIGNMENT_BYTES,
  SNAPSHOT_BLOCK_BYTES_MAX,
  SNAPSHOT_FOOTER_BYTES,
  alignUp,
  checkBlockRun,
  dataBlockLength,
  isSnapshotFileLength,
  parseSnapshotId,
  snapshotCorruption,
  type SnapshotFooter,
  type SnapshotVerifier,
} from './snapshot-format.ts';
import type { SnapshotInfo, SnapshotLease, SnapshotProgress, SnapshotRecord, SnapshotSource } from './snapshot-store.ts';

/** RECEIVES_MAX bounds the receives a store keeps (in progress or broken off); the oldest is dropped first. */
export const RECEIVES_MAX = 2;

/** SNAPSHOT_LEASES_MAX bounds the live leases of one store. */
export const SNAPSHOT_LEASES_MAX = 1024;

/** SNAPSHOT_LEASE_TTL_MS_MAX bounds one lease's time to live (one day). */
export const SNAPSHOT_LEASE_TTL_MS_MAX = 24 * 60 * 60 * 1000;

/** READ_BLOCKS_BYTES_MAX bounds what one readBlocks() call returns (64 MiB), whatever `maxBytes` says. */
export const READ_BLOCKS_BYTES_MAX = 64 << 20;

/** RECEIVE_STAGING_BYTES is how much a receive holds before writing its verified blocks out (4 MiB, one O_DIRECT write). */
export const RECEIVE_STAGING_BYTES = 4 << 20;

/**
 * RECEIVE_RECORDS_BUFFERED_BYTES_MAX bounds the checked blocks a receive holds for its
 * records() reader (8 MiB): while more wait, write() waits too, so a slow reader slows the
 * sender (through the stream's window) instead of filling memory.
 */
export const RECEIVE_RECORDS_BUFFERED_BYTES_MAX = 8 << 20;

/** SNAPSHOT_NOT_FOUND_CODE is the code for an id that is not listed. */
export const SNAPSHOT_NOT_FOUND_CODE: ErrorCode = ErrorCode.SNAPSHOT_NOT_FOUND;

/** snapshotNotFound is the error for an id that is not listed. */
export function snapshotNotFound(id: string): StrataError {
  return new StrataError(SNAPSHOT_NOT_FOUND_CODE, `snapshot ${id} is not listed`, { details: { id } });
}

/** snapshotStoreStopped is the error for a call on a closed store, reader or receiver. */
export function snapshotStoreStopped(what: string): StrataError {
  return new StrataError(ErrorCode.STOPPED, `${what} is closed`);
}

/** snapshotCanceled is the error for work stopped by its AbortSignal. */
export function snapshotCanceled(what: string, signal: AbortSignal | undefined): StrataError {
  return new StrataError(ErrorCode.CANCELED, `${what} canceled`, { cause: signal?.reason });
}

/** receiveEnded is why a receive's records() stream fails when the receive ends short of a checked whole. */
export function receiveEnded(id: string): StrataError {
  return new StrataError(ErrorCode.CANCELED, `snapshot receive of ${id} ended before the whole was received and checked`, { details: { id } });
}

/** checkSnapshotIdArgument refuses a string that is not a snapshot id (INVALID_ARGUMENT). */
export function checkSnapshotIdArgument(id: string): void {
  if (typeof id !== 'string' || parseSnapshotId(id) === undefined) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${JSON.stringify(id)} is not a snapshot id (<term>-<index>, 16 hex digits each)`, {
      details: { id },
    });
  }
}

/** checkReceiveLength refuses a byte length no snapshot can have (INVALID_ARGUMENT). */
export function checkReceiveLength(id: string, byteLength: number): void {
  if (!isSnapshotFileLength(byteLength)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot ${id}: ${byteLength} bytes is not a snapshot length`, {
      details: { id, byteLength },
    });
  }
}

/** checkFooterMatchesId refuses (CORRUPTION) a verified file whose footer names another (term, index) than its id. */
export function checkFooterMatchesId(id: string, footer: SnapshotFooter, location: string, byteLength: number): void {
  const named = parseSnapshotId(id);
  assert(named !== undefined, 'ids are checked before files are read');
  if (named.term !== footer.metadata.term || named.index !== footer.metadata.index) {
    throw snapshotCorruption(
      { location, offset: byteLength - SNAPSHOT_FOOTER_BYTES, block: 'footer' },
      `holds term ${footer.metadata.term} index ${footer.metadata.index}, not the ${named.term} and ${named.index} of its id ${id}`,
    );
  }
}

/** compareNewestFirst orders snapshots by index, then term, highest first (list()'s order). */
export function compareNewestFirst(a: SnapshotInfo, b: SnapshotInfo): number {
  return b.index - a.index || b.term - a.term;
}

// ---------------------------------------------------------------------------------------
// Leases

// One lease. Invariant: a released entry is not in the table.
interface LeaseEntry {
  readonly id: string;
  expiresAtMs: number;
}

/**
 * SnapshotLeaseTable holds the leases of one store, timed by its Clock. A lease is live while
 * now < its expiry; expired and released leases are forgotten when the table needs room.
 */
export class SnapshotLeaseTable {
  readonly #clock: Clock;
  readonly #entries = new Set<LeaseEntry>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** lease pins `id` for `ttlMs`; the caller checked that it is listed. */
  lease(id: string, ttlMs: number): SnapshotLease {
    checkTtl(ttlMs);
    if (this.#entries.size >= SNAPSHOT_LEASES_MAX) this.#forgetExpired();
    if (this.#entries.size >= SNAPSHOT_LEASES_MAX) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot ${id}: more than ${SNAPSHOT_LEASES_MAX} live leases`, { details: { id } });
    }
    const entry: LeaseEntry = { id, expiresAtMs: this.#clock.now() + ttlMs };
    this.#entries.add(entry);
    const entries = this.#entries;
    const clock = this.#clock;
    return {
      id,
      renew(renewTtlMs: number): void {
        checkTtl(renewTtlMs);
        // A released (or store-crashed) lease is over: renewing it pins nothing.
        if (!entries.has(entry)) return;
        entry.expiresAtMs = clock.now() + renewTtlMs;
      },
      release(): void {
        entries.delete(entry);
      },
    };
  }

  /** isLeased tells whether `id` has a live lease now. */
  isLeased(id: string): boolean {
    const now = this.#clock.now();
    for (const entry of this.#entries) if (entry.id === id && entry.expiresAtMs > now) return true;
    return false;
  }

  /** clear forgets every lease (a crash: leases live in the process that took them). */
  clear(): void {
    this.#entries.clear();
  }

  #forgetExpired(): void {
    const now = this.#clock.now();
    for (const entry of [...this.#entries]) if (entry.expiresAtMs <= now) this.#entries.delete(entry);
  }
}

function checkTtl(ttlMs: number): void {
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0 || ttlMs > SNAPSHOT_LEASE_TTL_MS_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a snapshot lease lasts more than 0 and at most ${SNAPSHOT_LEASE_TTL_MS_MAX} ms, not ${ttlMs}`, {
      details: { ttlMs },
    });
  }
}

/**
 * retentionVictims picks what retain(keep, protect) deletes from `listed` (newest first):
 * everything beyond the newest `keep` that is neither leased nor protected.
 */
export function retentionVictims(
  listed: readonly SnapshotInfo[],
  keep: number,
  protect: readonly string[],
  isLeased: (id: string) => boolean,
): SnapshotInfo[] {
  if (!Number.isSafeInteger(keep) || keep < 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `retain: keep must be a non-negative integer, not ${keep}`, { details: { keep } });
  }
  const protectedIds = new Set(protect);
  return listed.slice(keep).filter((info) => !protectedIds.has(info.id) && !isLeased(info.id));
}

// ---------------------------------------------------------------------------------------
// Reading a source

/** throwIfAborted throws CANCELED when `signal` fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted === true) throw snapshotCanceled(what, signal);
}

// Resolves with `promise`, or rejects with CANCELED as soon as `signal` fires: a source that
// hangs cannot keep create() from settling.
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(snapshotCanceled(what, signal));
    if (signal.aborted) {
      onAbort();
      promise.catch(() => undefined);
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error as Error);
      },
    );
  });
}

/**
 * forEachSourceBatch feeds the source's batches to `onBatch` in order, checking `signal`
 * before each; the source's iterator is closed (return()) when this stops early. A source
 * that throws is reported as it threw (a StrataError keeps its code; anything else becomes
 * INVALID_ARGUMENT with it as the cause).
 */
export async function forEachSourceBatch(
  source: SnapshotSource,
  signal: AbortSignal | undefined,
  onBatch: (batch: readonly SnapshotRecord[]) => Promise<void> | void,
): Promise<void> {
  const what = 'snapshot create';
  throwIfAborted(signal, what);
  const iterator = source.records()[Symbol.asyncIterator]();
  let finished = false;
  try {
    while (true) {
      throwIfAborted(signal, what);
      let next: IteratorResult<readonly SnapshotRecord[]>;
      try {
        next = await raceAbort(iterator.next(), signal, what);
      } catch (error) {
        if (isStrataError(error, ErrorCode.CANCELED) || isStrataError(error)) throw error;
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot source failed: ${String(error)}`, { cause: error });
      }
      if (next.done === true) {
        finished = true;
        return;
      }
      if (!Array.isArray(next.value)) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'snapshot source yielded something other than an array of records');
      }
      await onBatch(next.value);
    }
  } finally {
    if (!finished && iterator.return !== undefined) {
      const closing = Promise.resolve(iterator.return()).catch(() => undefined);
      // An aborted source may be stuck inside next(); its return() then waits behind it, so
      // it is not awaited: create() settles now, the source closes when it can.
      if (signal?.aborted !== true) await closing;
    }
  }
}

/** progressReporter calls `onProgress` with the bytes done so far, and never lets it throw into the store. */
export function progressReporter(
  onProgress: ((progress: SnapshotProgress) => void) | undefined,
  bytesTotal: number | undefined,
): (bytesDone: number) => void {
  if (onProgress === undefined) return () => undefined;
  return (bytesDone) => onProgress({ bytesDone, bytesTotal });
}

// ---------------------------------------------------------------------------------------
// readBlocks

/**
 * readBlockRun is readBlocks() over `read(offset, length)`: whole blocks from block boundary
 * `offset`, as many as fit in `maxBytes` (at least one), each checked on its own.
 */
export async function readBlockRun(
  read: (offset: number, length: number) => Promise<Uint8Array>,
  offset: number,
  maxBytes: number,
  byteLength: number,
  location: string,
): Promise<Uint8Array> {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > byteLength || offset % SNAPSHOT_ALIGNMENT_BYTES !== 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot ${location}: readBlocks offset ${offset} is not a block boundary of a ${byteLength}-byte file`, {
      details: { location, offset, byteLength },
    });
  }
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot ${location}: readBlocks maxBytes ${maxBytes} must be a positive integer`, {
      details: { location, maxBytes },
    });
  }
  if (offset === byteLength) return new Uint8Array(0);
  const wanted = Math.floor(Math.min(maxBytes, READ_BLOCKS_BYTES_MAX) / SNAPSHOT_ALIGNMENT_BYTES) * SNAPSHOT_ALIGNMENT_BYTES;
  const length = Math.min(byteLength - offset, Math.max(SNAPSHOT_ALIGNMENT_BYTES, wanted));
  let bytes = await read(offset, length);
  let whole = checkBlockRun(bytes, offset, byteLength, location);
  if (whole === 0) {
    // The first block is longer than maxBytes: return it alone, as the contract says.
    const blockLength = dataBlockLength(bytes, { location, offset, block: 'data' });
    assert(blockLength > bytes.byteLength && offset + blockLength <= byteLength, 'checkBlockRun stops short only before a longer block');
    bytes = await read(offset, blockLength);
    whole = checkBlockRun(bytes, offset, byteLength, location);
    assert(whole === blockLength, 'a block read whole checks whole');
  }
  return bytes.subarray(0, whole);
}

// ---------------------------------------------------------------------------------------
// Serial work

/** SerialQueue runs async calls one after another (a receiver's writes, its finish, its abort). */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** run queues `work` after everything queued before it and settles as it does. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(work);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

// ---------------------------------------------------------------------------------------
// Receiving

/**
 * ReceiveAssembler takes a snapshot's bytes in chunks of any size and hands whole, verified
 * blocks to `writeRun` in file order. Chunks are copied into a staging buffer (aligned when
 * the store's allocator is: the runs are written with O_DIRECT); the bytes of a block not yet
 * complete stay there, so it holds at most RECEIVE_STAGING_BYTES or one block.
 *
 * States of the bytes, in file order:
 *   [0, writtenBytes)                  checked and written (verifiedBytes)
 *   [writtenBytes, verifier.verifiedBytes)   checked, in staging, not written yet
 *   [verifier.verifiedBytes, + tail)    received, not yet a whole block
 * Invariant: staging[0] is the byte at writtenBytes; a take() ends with everything checked
 * written, so between calls writtenBytes === verifier.verifiedBytes.
 * A failed writeRun leaves the assembler broken (the verifier is past what was written): the
 * store must discard the receive.
 */
export class ReceiveAssembler {
  readonly verifier: SnapshotVerifier;
  readonly #allocate: (byteLength: number) => Uint8Array;
  readonly #writeRun: (offset: number, bytes: Uint8Array) => Promise<void>;
  #staging: Uint8Array | undefined;
  #filled = 0;
  #writtenBytes = 0;
  #broken = false;
  // The records() stream, once taken: every data block checked after that is handed to it.
  #records: ReceivedRecords | undefined;

  constructor(
    verifier: SnapshotVerifier,
    allocate: (byteLength: number) => Uint8Array,
    writeRun: (offset: number, bytes: Uint8Array) => Promise<void>,
  ) {
    this.verifier = verifier;
    this.#allocate = allocate;
    this.#writeRun = writeRun;
  }

  /** writtenBytes is the end of the checked bytes handed to writeRun (the receiver's verifiedBytes). */
  get writtenBytes(): number {
    return this.#writtenBytes;
  }

  /** expectedOffset is where the next chunk must start. */
  get expectedOffset(): number {
    return this.#writtenBytes + this.#filled;
  }

  /** broken tells whether a writeRun failed: the receive cannot go on. */
  get broken(): boolean {
    return this.#broken;
  }

  /**
   * records starts the stream of the content's records as blocks are checked (see
   * SnapshotReceiver.records); undefined once a data block was checked without it, or when
   * it was taken already.
   */
  records(): ReceivedRecords | undefined {
    if (this.#records !== undefined || this.verifier.blockCount > 0 || this.verifier.complete) return undefined;
    this.#records = new ReceivedRecords(this.verifier.location);
    return this.#records;
  }

  /**
   * finish checks the whole (SnapshotVerifier.finish, then `check`) and ends the records()
   * stream with the footer; on a failure the stream fails with the same error.
   */
  finish(check: (footer: SnapshotFooter) => void): SnapshotFooter {
    let footer: SnapshotFooter;
    try {
      footer = this.verifier.finish();
      check(footer);
    } catch (error) {
      this.#records?.fail(error);
      throw error;
    }
    this.#records?.end(footer);
    return footer;
  }

  /** abandon fails the records() stream (the receive ended short of a checked whole); harmless after finish. */
  abandon(reason: unknown): void {
    this.#records?.fail(reason);
  }

  /** dropTail forgets the received bytes that are not a whole block yet (a restarted transfer resends them). */
  dropTail(): void {
    assert(this.#writtenBytes === this.verifier.verifiedBytes, 'only an incomplete block is ever dropped');
    this.#filled = 0;
  }

  /**
   * take checks and writes out `bytes`, which start at expectedOffset. INVALID_ARGUMENT for a
   * chunk at the wrong offset or beyond the end; CORRUPTION (naming the block) when a
   * completed block fails: the blocks before it are written, it and the rest are dropped.
   */
  async take(offset: number, bytes: Uint8Array): Promise<void> {
    assert(!this.#broken, 'ReceiveAssembler.take after a failed write');
    const location = this.verifier.location;
    if (!Number.isSafeInteger(offset) || offset !== this.expectedOffset) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot ${location}: write at offset ${offset}, expected ${this.expectedOffset}`, {
        details: { location, offset, expectedOffset: this.expectedOffset },
      });
    }
    if (!(bytes instanceof Uint8Array) || offset + bytes.byteLength > this.verifier.byteLength) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot ${location}: write of ${bytes?.byteLength} bytes at ${offset} runs past its ${this.verifier.byteLength} bytes`, {
        details: { location, offset, byteLength: this.verifier.byteLength },
      });
    }
    let consumed = 0;
    while (consumed < bytes.byteLength) {
      const staging = this.#stagingFor(this.#nextBlockBytes());
      const count = Math.min(staging.byteLength - this.#filled, bytes.byteLength - consumed);
      staging.set(bytes.subarray(consumed, consumed + count), this.#filled);
      this.#filled += count;
      consumed += count;
      let failure: unknown;
      try {
        this.#checkWholeBlocks(staging);
      } catch (error) {
        failure = error;
      }
      const full = this.#filled === staging.byteLength;
      if (failure !== undefined || full || consumed === bytes.byteLength) await this.#flush(staging);
      if (failure !== undefined) {
        this.#filled = 0;
        throw failure;
      }
    }
    // The records() reader lags: hold this write (and so the sender's window) until it catches up.
    await this.#records?.whenRoom();
  }

  // The length of the block at the verifier's position when staging already holds its
  // header, so the staging can grow to hold it whole; 0 when not known yet.
  #nextBlockBytes(): number {
    if (this.verifier.complete || this.#staging === undefined) return 0;
    const at = this.verifier.verifiedBytes - this.#writtenBytes;
    try {
      return this.verifier.nextBlockLength(this.#staging.subarray(at, this.#filled)) ?? 0;
    } catch {
      return 0; // a bad block header: #checkWholeBlocks reports it
    }
  }

  #stagingFor(blockBytes: number): Uint8Array {
    const needed = Math.max(RECEIVE_STAGING_BYTES, alignUp(blockBytes) + (this.verifier.verifiedBytes - this.#writtenBytes));
    assert(needed <= RECEIVE_STAGING_BYTES + SNAPSHOT_BLOCK_BYTES_MAX, 'a receive stages at most one block beyond its run');
    if (this.#staging === undefined || this.#staging.byteLength < needed) {
      const grown = this.#allocate(needed);
      if (this.#staging !== undefined) grown.set(this.#staging.subarray(0, this.#filled));
      this.#staging = grown;
    }
    return this.#staging;
  }

  #checkWholeBlocks(staging: Uint8Array): void {
    const verifier = this.verifier;
    while (!verifier.complete) {
      const at = verifier.verifiedBytes - this.#writtenBytes;
      const length = verifier.nextBlockLength(staging.subarray(at, this.#filled));
      if (length === undefined || at + length > this.#filled) return;
      const records = this.#records;
      if (records === undefined || verifier.nextBlockKind !== 'data') {
        verifier.verifyBlock(staging.subarray(at, at + length));
        continue;
      }
      // The records are views into the block: a copy, since staging is reused.
      const block = staging.slice(at, at + length);
      const decoded = verifier.verifyBlock(block, true);
      if (decoded !== undefined && decoded.length > 0) records.push(decoded, block.byteLength);
    }
  }

  // Writes the checked blocks in staging and moves the incomplete tail to the front.
  async #flush(staging: Uint8Array): Promise<void> {
    const checked = this.verifier.verifiedBytes - this.#writtenBytes;
    if (checked === 0) return;
    try {
      await this.#writeRun(this.#writtenBytes, staging.subarray(0, checked));
    } catch (error) {
      this.#broken = true;
      throw error;
    }
    this.#writtenBytes += checked;
    staging.copyWithin(0, checked, this.#filled);
    this.#filled -= checked;
  }
}

/**
 * ReceivedRecords is a receive's records() stream: the records of each data block once it
 * was checked, in order, across resumed receives of the same snapshot. It ends only once the
 * whole was checked (the footer's counts and the SHA-256), with `footer` set; it fails when
 * the receive ends any other way. It buffers at most RECEIVE_RECORDS_BUFFERED_BYTES_MAX of
 * blocks beyond one (whenRoom() holds the writer), and drops everything when its reader stops.
 */
export class ReceivedRecords implements AsyncIterable<readonly SnapshotRecord[]> {
  readonly #location: string;
  #queue: { readonly records: readonly SnapshotRecord[]; readonly bytes: number }[] = [];
  #bufferedBytes = 0;
  #footer: SnapshotFooter | undefined;
  #failed = false;
  #failure: unknown;
  #iterated = false;
  #readerGone = false;
  #wakeReader: (() => void) | undefined;
  #roomWaiters: (() => void)[] = [];

  constructor(location: string) {
    this.#location = location;
  }

  /** footer is the checked footer once the stream ended; undefined before. */
  get footer(): SnapshotFooter | undefined {
    return this.#footer;
  }

  get #settled(): boolean {
    return this.#footer !== undefined || this.#failed;
  }

  /** @internal push adds one checked block's records (`bytes` long). */
  push(records: readonly SnapshotRecord[], bytes: number): void {
    if (this.#settled || this.#readerGone) return;
    this.#queue.push({ records, bytes });
    this.#bufferedBytes += bytes;
    this.#wake();
  }

  /** @internal end: the whole was checked. */
  end(footer: SnapshotFooter): void {
    if (this.#settled) return;
    this.#footer = footer;
    this.#wake();
  }

  /** @internal fail: the receive ended short of a checked whole; the reader gets `reason`. */
  fail(reason: unknown): void {
    if (this.#settled) return;
    this.#failed = true;
    this.#failure = reason;
    this.#drop();
    this.#wake();
  }

  /** @internal whenRoom resolves once the buffered blocks are within the bound (or nobody will read them). */
  whenRoom(): Promise<void> {
    if (this.#bufferedBytes <= RECEIVE_RECORDS_BUFFERED_BYTES_MAX || this.#settled || this.#readerGone) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<readonly SnapshotRecord[]> {
    assert(!this.#iterated, `the received records of ${this.#location} are read once`);
    this.#iterated = true;
    try {
      for (;;) {
        const next = this.#queue.shift();
        if (next !== undefined) {
          this.#bufferedBytes -= next.bytes;
          this.#wakeRoom();
          yield next.records;
          continue;
        }
        if (this.#failed) throw this.#failure;
        if (this.#footer !== undefined) return;
        await new Promise<void>((resolve) => {
          this.#wakeReader = resolve;
        });
      }
    } finally {
      this.#readerGone = true;
      this.#drop();
    }
  }

  #drop(): void {
    this.#queue = [];
    this.#bufferedBytes = 0;
    this.#wakeRoom();
  }

  #wake(): void {
    const wake = this.#wakeReader;
    this.#wakeReader = undefined;
    wake?.();
    if (this.#settled) this.#wakeRoom();
  }

  #wakeRoom(): void {
    if (this.#bufferedBytes > RECEIVE_RECORDS_BUFFERED_BYTES_MAX && !this.#settled && !this.#readerGone) return;
    for (const wake of this.#roomWaiters.splice(0)) wake();
  }
}

// ---------------------------------------------------------------------------------------
// Reading in chunks

/**
 * BlockSplitter cuts a file read in chunks (each a multiple of SNAPSHOT_ALIGNMENT_BYTES, in
 * order from offset 0) into whole blocks for `verifier`. A block that spans chunks is
 * gathered into a fresh array of its own. The caller must pass each block to
 * verifier.verifyBlock() before asking for the next one (the next block's length is read at
 * the verifier's position).
 */
export class BlockSplitter {
  readonly #verifier: SnapshotVerifier;
  #carry: Uint8Array | undefined;
  #carryFilled = 0;

  constructor(verifier: SnapshotVerifier) {
    this.#verifier = verifier;
  }

  /** blocks yields the whole blocks `chunk` completes, in order. */
  *blocks(chunk: Uint8Array): Generator<Uint8Array> {
    assert(chunk.byteLength % SNAPSHOT_ALIGNMENT_BYTES === 0, 'chunks are whole alignment units');
    let position = 0;
    if (this.#carry !== undefined) {
      const carry = this.#carry;
      const count = Math.min(carry.byteLength - this.#carryFilled, chunk.byteLength);
      carry.set(chunk.subarray(0, count), this.#carryFilled);
      this.#carryFilled += count;
      position = count;
      if (this.#carryFilled < carry.byteLength) return;
      this.#carry = undefined;
      yield* this.#checked(carry);
    }
    while (position < chunk.byteLength && !this.#verifier.complete) {
      const length = this.#verifier.nextBlockLength(chunk.subarray(position));
      assert(length !== undefined, 'an alignment unit holds a whole block header');
      if (position + length > chunk.byteLength) {
        this.#carry = new Uint8Array(length);
        this.#carry.set(chunk.subarray(position));
        this.#carryFilled = chunk.byteLength - position;
        return;
      }
      yield* this.#checked(chunk.subarray(position, position + length));
      position += length;
    }
  }

  *#checked(block: Uint8Array): Generator<Uint8Array> {
    const before = this.#verifier.verifiedBytes;
    yield block;
    assert(this.#verifier.verifiedBytes === before + block.byteLength, 'BlockSplitter: each block is verified before the next');
  }
}

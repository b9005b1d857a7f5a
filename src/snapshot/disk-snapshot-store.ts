// disk-snapshot-store.ts — DiskSnapshotStore: one member's snapshots as files in a
// directory, written and read with O_DIRECT through the native addon (src/native).
//
// Files in the directory:
//   <id>.snap                 a whole snapshot (snapshot-format.ts), listed once verified
//   .<id>.snap.<random>.tmp   a create in progress (AtomicFileWriter's temporary)
//   .receive-<id>.part        a receive in progress
//   <id>.snap.corrupt[.N]     a snapshot that failed its check at open: set aside, never deleted
// open() removes the temporaries (a create or receive a crash broke off cannot be resumed by
// a new process) and verifies every .snap file completely (every block's CRC32c, the key
// order, the footer's counts and the SHA-256) before listing it.
//
// Guarantees:
// - a name <id>.snap appears only by a rename after fdatasync, followed by a directory fsync
//   (AtomicFileWriter for create, the same sequence for receive), so a crash leaves either
//   the whole file or nothing under that name;
// - create() writes at most CREATE_WRITES_IN_FLIGHT_MAX units of CREATE_WRITE_BYTES at once
//   and reads each unit back with O_DIRECT, comparing it with what it wrote, while the next
//   units are written: memory stays bounded and the check costs little time;
// - nothing is listed before it was checked; a failure removes the temporary and changes
//   nothing listed.
//
// States of a snapshot id: absent → creating (temporary) or receiving (.part) → listed
// (.snap) → deleted (retain) or set aside (.corrupt, at open).

import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

import {
  AlignedFile,
  AtomicFileWriter,
  allocateAligned,
  isAtomicWriterTemporary,
  renameAndSyncDirectory,
  syncDirectory,
} from '../native/index.ts';
import type { Logger } from '../raft/index.ts';
import { SILENT_LOGGER } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import { SYSTEM_CLOCK, type Clock } from '../util/clock.ts';
import { ErrorCode, StrataError, isStrataError } from '../util/errors.ts';
import {
  SNAPSHOT_BLOCK_BYTES_TARGET,
  SNAPSHOT_FOOTER_BYTES,
  SNAPSHOT_HEADER_BYTES,
  SnapshotEncoder,
  SnapshotVerifier,
  checkBlockBytesTarget,
  checkSnapshotMetadata,
  decodeSnapshotFooter,
  decodeSnapshotHeader,
  parseSnapshotId,
  snapshotCorruption,
  snapshotInfoOf,
  type SnapshotFooter,
} from './snapshot-format.ts';
import { HASH_WORKER_CONTENT_BYTES_MIN, HashWorker, InlineContentHasher, type ContentHasher } from './snapshot-hasher.ts';
import {
  BlockSplitter,
  RECEIVES_MAX,
  ReceiveAssembler,
  SerialQueue,
  SnapshotLeaseTable,
  checkFooterMatchesId,
  checkReceiveLength,
  checkSnapshotIdArgument,
  compareNewestFirst,
  forEachSourceBatch,
  progressReporter,
  readBlockRun,
  receiveEnded,
  retentionVictims,
  snapshotCanceled,
  snapshotNotFound,
  snapshotStoreStopped,
  throwIfAborted,
} from './snapshot-store-parts.ts';
import {
  type ReceivedRecordStream,
  snapshotId,
  type SnapshotFileMetadata,
  type SnapshotInfo,
  type SnapshotLease,
  type SnapshotOperationOptions,
  type SnapshotReader,
  type SnapshotReceiver,
  type SnapshotRecord,
  type SnapshotSource,
  type SnapshotStore,
} from './snapshot-store.ts';

/** SNAPSHOT_FILE_SUFFIX ends the name of every listed snapshot file. */
export const SNAPSHOT_FILE_SUFFIX = '.snap';

/** SNAPSHOT_CORRUPT_SUFFIX is added to a snapshot file that failed its check at open. */
export const SNAPSHOT_CORRUPT_SUFFIX = '.corrupt';

/** SNAPSHOT_FILES_MAX bounds the .snap files open() looks at; more means retention is not running, and open refuses. */
export const SNAPSHOT_FILES_MAX = 64;

/** SNAPSHOT_CORRUPT_NAMES_MAX bounds the `.corrupt.N` names tried when setting a damaged file aside. */
export const SNAPSHOT_CORRUPT_NAMES_MAX = 100;

/**
 * CREATE_WRITE_BYTES is one O_DIRECT write of create() (4 MiB: whole blocks, four of the
 * default size). bench:native found 4 MiB × 2 in flight close to the best on the project's
 * disk, and 1 MiB writes clearly slower.
 */
export const CREATE_WRITE_BYTES = 4 << 20;

/** CREATE_WRITES_IN_FLIGHT_MAX bounds create()'s writes (each with its read-back) running at once. */
export const CREATE_WRITES_IN_FLIGHT_MAX = 2;

/** READ_BYTES is one O_DIRECT read of records() and of the checks (4 MiB); one more is read ahead. */
export const READ_BYTES = 4 << 20;

const RECEIVE_PREFIX = '.receive-';
const RECEIVE_SUFFIX = '.part';

/** isReceiveTemporary tells whether a directory entry is a receive's temporary file. */
export function isReceiveTemporary(name: string): boolean {
  return name.startsWith(RECEIVE_PREFIX) && name.endsWith(RECEIVE_SUFFIX);
}

/** DiskSnapshotStoreOptions: clock for leases, logger for what open() sets aside, and knobs for tests. */
export interface DiskSnapshotStoreOptions {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Data block target (default SNAPSHOT_BLOCK_BYTES_TARGET). */
  readonly blockBytesTarget?: number;
  /** The footer's createdAtMs (default Date.now). */
  readonly wallClockMs?: () => number;
  /** O_DIRECT (default true); where the filesystem refuses it, the addon falls back to buffered I/O. */
  readonly direct?: boolean;
  /**
   * readBack (default true): create() reads every unit back with O_DIRECT and compares it
   * with what it wrote before listing the file. It costs a full device read of the file:
   * about half of create()'s throughput on the project's disk (measured: ~1.3-1.6 GB/s of
   * raw 4 MiB x 2 writes without it, ~0.55-0.7 GB/s with it). Off, a file is still checked
   * by every later read and at every open().
   */
  readonly readBack?: boolean;
}

interface ListedSnapshot {
  readonly info: SnapshotInfo;
  readonly metadata: SnapshotFileMetadata;
}

// A receive in progress or broken off. Invariant: only `owner`'s calls act on it, one at a
// time through `queue`; `file` is open until the receive ends.
interface DiskReceive {
  readonly id: string;
  readonly byteLength: number;
  readonly path: string;
  readonly file: AlignedFile;
  readonly assembler: ReceiveAssembler;
  readonly queue: SerialQueue;
  owner: DiskSnapshotReceiver | undefined;
  ended: boolean;
}

/** DiskSnapshotStore keeps snapshots as files in one directory; see the file header. */
export class DiskSnapshotStore implements SnapshotStore {
  readonly directory: string;
  readonly #logger: Logger;
  readonly #blockBytesTarget: number;
  readonly #wallClockMs: () => number;
  readonly #direct: boolean;
  readonly #readBack: boolean;
  readonly #listed = new Map<string, ListedSnapshot>();
  // Insertion order is age: the first is dropped when a receive needs room.
  readonly #receives = new Map<string, DiskReceive>();
  readonly #creating = new Map<string, Promise<unknown>>();
  // receive() calls one at a time: two for one id must not both open its .part file.
  readonly #receiveCalls = new SerialQueue();
  readonly #readers = new Set<DiskSnapshotReader>();
  readonly #leases: SnapshotLeaseTable;
  // Hashes large content off the main thread (snapshot-hasher.ts); started on first use.
  readonly #hashWorker = new HashWorker();
  // Fired by close(): creates in progress stop.
  readonly #closing = new AbortController();
  #closed = false;

  /** The constructor is internal: use DiskSnapshotStore.open(). */
  constructor(directory: string, options: DiskSnapshotStoreOptions) {
    this.directory = directory;
    this.#logger = options.logger ?? SILENT_LOGGER;
    this.#blockBytesTarget = options.blockBytesTarget ?? SNAPSHOT_BLOCK_BYTES_TARGET;
    checkBlockBytesTarget(this.#blockBytesTarget);
    this.#wallClockMs = options.wallClockMs ?? Date.now;
    this.#direct = options.direct ?? true;
    this.#readBack = options.readBack ?? true;
    this.#leases = new SnapshotLeaseTable(options.clock ?? SYSTEM_CLOCK);
  }

  /**
   * open opens (creating it if needed) the snapshot directory: removes temporaries, verifies
   * every snapshot file completely and lists the good ones; a file that fails is renamed
   * `.corrupt` and reported to the logger. INVALID_ARGUMENT when there are more than
   * SNAPSHOT_FILES_MAX snapshot files; IO_ERROR when the directory cannot be read.
   */
  static async open(directory: string, options: DiskSnapshotStoreOptions = {}): Promise<DiskSnapshotStore> {
    assert(typeof directory === 'string' && directory.length > 0, 'DiskSnapshotStore.open: directory must be a non-empty string');
    const store = new DiskSnapshotStore(directory, options);
    await store.#load();
    return store;
  }

  list(): readonly SnapshotInfo[] {
    return [...this.#listed.values()].map((listed) => listed.info).sort(compareNewestFirst);
  }

  get(id: string): SnapshotInfo | undefined {
    return this.#listed.get(id)?.info;
  }

  async create(source: SnapshotSource, options: SnapshotOperationOptions = {}): Promise<SnapshotInfo> {
    this.#checkOpen();
    checkSnapshotMetadata(source.metadata);
    const id = snapshotId(source.metadata.term, source.metadata.index);
    // One create per id at a time; a second waits and then finds the first one's result.
    for (let pending = this.#creating.get(id); pending !== undefined; pending = this.#creating.get(id)) {
      await pending.catch(() => undefined);
    }
    this.#checkOpen();
    const listed = this.#listed.get(id);
    if (listed !== undefined) return listed.info;
    const creating = this.#create(id, source, options);
    this.#creating.set(id, creating);
    try {
      return await creating;
    } finally {
      this.#creating.delete(id);
    }
  }

  async open(id: string): Promise<SnapshotReader> {
    this.#checkOpen();
    checkSnapshotIdArgument(id);
    const listed = this.#listed.get(id);
    if (listed === undefined) throw snapshotNotFound(id);
    const reader = await DiskSnapshotReader.open(this, listed.info, this.#direct);
    if (this.#closed) {
      await reader.close();
      throw snapshotStoreStopped(`snapshot store ${this.directory}`);
    }
    this.#readers.add(reader);
    return reader;
  }

  async receive(id: string, byteLength: number): Promise<SnapshotReceiver> {
    this.#checkOpen();
    checkSnapshotIdArgument(id);
    checkReceiveLength(id, byteLength);
    return this.#receiveCalls.run(() => this.#receive(id, byteLength));
  }

  async #receive(id: string, byteLength: number): Promise<SnapshotReceiver> {
    this.#checkOpen();
    let state = this.#receives.get(id);
    if (state !== undefined && (state.byteLength !== byteLength || state.assembler.broken || state.ended)) {
      await this.#endReceiveQueued(state, { remove: true });
      state = undefined;
    }
    if (state === undefined) {
      for (let dropped = 0; this.#receives.size >= RECEIVES_MAX; dropped += 1) {
        assert(dropped <= RECEIVES_MAX, 'dropping receives ends');
        const oldest = this.#receives.values().next().value;
        assert(oldest !== undefined, 'a full table has an oldest receive');
        await this.#endReceiveQueued(oldest, { remove: true });
      }
      state = await this.#startReceive(id, byteLength);
    } else {
      // Resumed: it becomes the newest and starts again at the end of its last good block
      // (after whatever the previous receiver still had running).
      this.#receives.delete(id);
      const resumed = state;
      await resumed.queue.run(async () => resumed.assembler.dropTail());
    }
    this.#checkOpen();
    this.#receives.set(id, state);
    const receiver = new DiskSnapshotReceiver(this, state);
    state.owner = receiver;
    return receiver;
  }

  lease(id: string, ttlMs: number): SnapshotLease {
    this.#checkOpen();
    checkSnapshotIdArgument(id);
    if (!this.#listed.has(id)) throw snapshotNotFound(id);
    return this.#leases.lease(id, ttlMs);
  }

  async retain(keep: number, protect: readonly string[] = []): Promise<string[]> {
    this.#checkOpen();
    const victims = retentionVictims(this.list(), keep, protect, (id) => this.#leases.isLeased(id));
    if (victims.length === 0) return [];
    // Unlisted first, so no new reader opens a file being removed (open readers keep theirs).
    for (const victim of victims) this.#listed.delete(victim.id);
    for (const victim of victims) await rm(victim.location, { force: true });
    await syncDirectory(this.directory);
    return victims.map((victim) => victim.id);
  }

  /**
   * close stops creates in progress (they reject with STOPPED and leave nothing), closes open
   * readers (their reads fail with STOPPED) and the files of receives (which the next open()
   * removes). Closing twice is harmless.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(snapshotStoreStopped(`snapshot store ${this.directory}`));
    await Promise.allSettled([...this.#creating.values()]);
    await Promise.allSettled([...this.#readers].map((reader) => reader.close()));
    this.#readers.clear();
    await Promise.allSettled([...this.#receives.values()].map((state) => this.#endReceiveQueued(state, { remove: false })));
    this.#receives.clear();
    this.#leases.clear();
    await this.#hashWorker.close();
  }

  /** @internal a hasher for `contentBytes` of content: the worker for large content when it is free. */
  hasherFor(contentBytes: number): ContentHasher {
    return contentBytes >= HASH_WORKER_CONTENT_BYTES_MIN ? this.#hashWorker.acquire() : new InlineContentHasher();
  }

  /** @internal */
  forgetReader(reader: DiskSnapshotReader): void {
    this.#readers.delete(reader);
  }

  /** @internal the end of a receive: checked whole, durable, renamed, listed. */
  async finishReceive(state: DiskReceive): Promise<SnapshotInfo> {
    this.#checkOpen();
    const { assembler, id } = state;
    if (assembler.expectedOffset !== state.byteLength || assembler.writtenBytes !== state.byteLength) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot ${id}: finish after ${assembler.writtenBytes} of ${state.byteLength} bytes`, {
        details: { id, verifiedBytes: assembler.writtenBytes, byteLength: state.byteLength },
      });
    }
    const finalPath = this.#pathOf(id);
    let footer: SnapshotFooter;
    try {
      footer = assembler.finish((checked) => checkFooterMatchesId(id, checked, finalPath, state.byteLength));
    } catch (error) {
      await this.#endReceive(state, { remove: true });
      throw error;
    }
    state.ended = true;
    this.#receives.delete(id);
    try {
      await state.file.datasync();
      await state.file.close();
      const listed = this.#listed.get(id);
      if (listed !== undefined) {
        await rm(state.path, { force: true });
        return listed.info;
      }
      await renameAndSyncDirectory(state.path, finalPath);
    } catch (error) {
      await this.#endReceive(state, { remove: true }).catch(() => undefined);
      throw error;
    }
    return this.#list(id, footer, state.byteLength);
  }

  /** @internal (from inside the receive's queue) */
  async abortReceive(state: DiskReceive): Promise<void> {
    await this.#endReceive(state, { remove: true });
  }

  /** @internal */
  isClosed(): boolean {
    return this.#closed;
  }

  #pathOf(id: string): string {
    return join(this.directory, `${id}${SNAPSHOT_FILE_SUFFIX}`);
  }

  #checkOpen(): void {
    if (this.#closed) throw snapshotStoreStopped(`snapshot store ${this.directory}`);
  }

  #list(id: string, footer: SnapshotFooter, byteLength: number): SnapshotInfo {
    const info = snapshotInfoOf(id, this.#pathOf(id), byteLength, footer);
    this.#listed.set(id, { info, metadata: footer.metadata });
    return info;
  }

  async #load(): Promise<void> {
    await mkdir(this.directory, { recursive: true });
    const names = (await readdir(this.directory)).sort();
    let changed = false;
    for (const name of names) {
      if (isAtomicWriterTemporary(name) || isReceiveTemporary(name)) {
        await rm(join(this.directory, name), { force: true });
        changed = true;
      }
    }
    const snapshotNames = names.filter((name) => name.endsWith(SNAPSHOT_FILE_SUFFIX) && !isAtomicWriterTemporary(name));
    if (snapshotNames.length > SNAPSHOT_FILES_MAX) {
      throw new StrataError(
        ErrorCode.INVALID_ARGUMENT,
        `snapshot directory ${this.directory} holds ${snapshotNames.length} snapshot files, more than ${SNAPSHOT_FILES_MAX}: is retention running?`,
        { details: { directory: this.directory, files: snapshotNames.length } },
      );
    }
    for (const name of snapshotNames) {
      const id = name.slice(0, -SNAPSHOT_FILE_SUFFIX.length);
      const path = join(this.directory, name);
      if (parseSnapshotId(id) === undefined) {
        this.#logger.warn('ignoring a file that is not named like a snapshot', { path });
        continue;
      }
      try {
        const { footer, byteLength } = await verifySnapshotFile(path, { direct: this.#direct, hashWorker: this.#hashWorker });
        checkFooterMatchesId(id, footer, path, byteLength);
        this.#list(id, footer, byteLength);
      } catch (error) {
        if (!isStrataError(error, ErrorCode.CORRUPTION)) throw error;
        const aside = await this.#setAside(path);
        changed = true;
        this.#logger.warn('snapshot file failed its check and was set aside', { path, renamedTo: aside, reason: error.message, ...error.details });
      }
    }
    if (changed) await syncDirectory(this.directory);
  }

  // Renames a damaged file to a free `.corrupt` name (never over an older one: nothing here deletes evidence).
  async #setAside(path: string): Promise<string> {
    for (let attempt = 0; attempt < SNAPSHOT_CORRUPT_NAMES_MAX; attempt += 1) {
      const target = attempt === 0 ? `${path}${SNAPSHOT_CORRUPT_SUFFIX}` : `${path}${SNAPSHOT_CORRUPT_SUFFIX}.${attempt}`;
      const exists = await stat(target).then(
        () => true,
        () => false,
      );
      if (exists) continue;
      await rename(path, target);
      return target;
    }
    throw new StrataError(ErrorCode.IO_ERROR, `${path}: ${SNAPSHOT_CORRUPT_NAMES_MAX} .corrupt names are taken; move them away`, {
      details: { path },
    });
  }

  async #create(id: string, source: SnapshotSource, options: SnapshotOperationOptions): Promise<SnapshotInfo> {
    const signal = options.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal]);
    const finalPath = this.#pathOf(id);
    const encoder = new SnapshotEncoder({
      metadata: source.metadata,
      createdAtMs: this.#wallClockMs(),
      blockBytesTarget: this.#blockBytesTarget,
      externalDigest: true,
    });
    const writer = await AtomicFileWriter.create(finalPath, { direct: this.#direct });
    let pipeline: WritePipeline | undefined;
    try {
      const hasher = (): ContentHasher => this.#hashWorker.acquire();
      pipeline = await WritePipeline.start(writer, finalPath, { direct: this.#direct, readBack: this.#readBack }, hasher, progressReporter(options.onProgress, undefined));
      const output = pipeline;
      await output.append(encoder.header());
      await forEachSourceBatch(source, signal, async (batch) => {
        for (let from = 0; from < batch.length; ) {
          from += encoder.push(batch, from);
          const block = encoder.takeBlock();
          if (block !== undefined) await output.append(block);
        }
      });
      throwIfAborted(signal, 'snapshot create');
      encoder.finish();
      const last = encoder.takeBlock();
      if (last !== undefined) await output.append(last);
      const { block, footer, byteLength } = encoder.footer(await output.contentDigest());
      await output.append(block);
      await output.end();
      assert(output.bytesWritten === byteLength, 'the file is what the encoder produced');
      throwIfAborted(signal, 'snapshot create');
      await writer.commit(byteLength);
      return this.#list(id, footer, byteLength);
    } catch (error) {
      await pipeline?.close();
      await writer.abort().catch(() => undefined);
      if (this.#closed && isStrataError(error, ErrorCode.CANCELED)) throw snapshotStoreStopped(`snapshot store ${this.directory}`);
      throw error;
    } finally {
      await pipeline?.close();
    }
  }

  async #startReceive(id: string, byteLength: number): Promise<DiskReceive> {
    const path = join(this.directory, `${RECEIVE_PREFIX}${id}${RECEIVE_SUFFIX}`);
    const file = await AlignedFile.open(path, { write: true, create: true, truncate: true, direct: this.#direct });
    try {
      // Reserving the blocks up front fails at once on a full disk, and speeds O_DIRECT writes.
      await file.allocate(byteLength);
    } catch (error) {
      await file.close().catch(() => undefined);
      await rm(path, { force: true });
      throw error;
    }
    const assembler = new ReceiveAssembler(
      new SnapshotVerifier(path, byteLength),
      (length) => allocateAligned(length).bytes,
      (offset, run) => file.writeAt(run, offset),
    );
    return { id, byteLength, path, file, assembler, queue: new SerialQueue(), owner: undefined, ended: false };
  }

  // Ends a receive from outside its queue: after the call it may be running (a write in the
  // middle of its flushes must not see its file closed).
  async #endReceiveQueued(state: DiskReceive, how: { remove: boolean }): Promise<void> {
    await state.queue.run(() => this.#endReceive(state, how));
  }

  // Ends a receive; called from inside its queue, or through #endReceiveQueued. Harmless twice.
  async #endReceive(state: DiskReceive, how: { remove: boolean }): Promise<void> {
    state.ended = true;
    state.owner = undefined;
    state.assembler.abandon(receiveEnded(state.id));
    if (this.#receives.get(state.id) === state) this.#receives.delete(state.id);
    await state.file.close();
    if (how.remove) await rm(state.path, { force: true });
  }
}

/** VerifySnapshotFileOptions: O_DIRECT (default true), and a worker to hash large files on. */
export interface VerifySnapshotFileOptions {
  readonly direct?: boolean;
  readonly hashWorker?: HashWorker;
}

/**
 * verifySnapshotFile reads a whole file with O_DIRECT and checks everything (each block's
 * CRC32c and framing, the key order, the footer's counts, the SHA-256); resolves with its
 * footer. CORRUPTION names the file and the block.
 */
export async function verifySnapshotFile(path: string, options: VerifySnapshotFileOptions = {}): Promise<{ footer: SnapshotFooter; byteLength: number }> {
  const byteLength = (await stat(path)).size;
  const verifier = new SnapshotVerifier(path, byteLength, { externalDigest: true });
  const file = await AlignedFile.open(path, { direct: options.direct ?? true });
  try {
    const contentBytes = byteLength - SNAPSHOT_FOOTER_BYTES;
    const hasher = options.hashWorker !== undefined && contentBytes >= HASH_WORKER_CONTENT_BYTES_MIN ? options.hashWorker.acquire() : new InlineContentHasher();
    for await (const batch of readVerified(file, verifier, hasher, { wantRecords: false, stopped: () => false })) {
      assert(batch.length === 0, 'a check yields no records');
    }
    return { footer: verifier.finish(await hasher.digest()), byteLength };
  } finally {
    await file.close();
  }
}

/** ReadVerifiedOptions: whether to decode records, and when to stop (a reader closed meanwhile). */
interface ReadVerifiedOptions {
  readonly wantRecords: boolean;
  readonly stopped: () => boolean;
  readonly signal?: AbortSignal | undefined;
  readonly onChunk?: (verifiedBytes: number) => void;
}

/**
 * readVerified reads the whole file behind `verifier` (which must hash externally) in
 * READ_BYTES chunks with one read ahead, into two reused aligned buffers; hands each chunk's
 * content bytes to `hasher`; checks every block; and yields each data block's records (as
 * views into a copy of the block, so they stay valid however long they are kept; with
 * `wantRecords` false, empty batches are not yielded at all). The caller calls
 * verifier.finish(await hasher.digest()) after the loop. The hasher is abandoned when the
 * loop stops early or fails.
 */
async function* readVerified(
  file: AlignedFile,
  verifier: SnapshotVerifier,
  hasher: ContentHasher,
  options: ReadVerifiedOptions,
): AsyncGenerator<SnapshotRecord[]> {
  const { byteLength } = verifier;
  const contentBytes = byteLength - SNAPSHOT_FOOTER_BYTES;
  // The first read takes the header too, so that the next ones start where data blocks of the
  // default size start: a block that spans two reads has to be gathered (copied) apart.
  const firstReadBytes = READ_BYTES + SNAPSHOT_HEADER_BYTES;
  const buffers = [allocateAligned(firstReadBytes).bytes, allocateAligned(firstReadBytes).bytes];
  const splitter = new BlockSplitter(verifier);
  const start = (offset: number, sequence: number): Promise<Uint8Array> => {
    const length = Math.min(offset === 0 ? firstReadBytes : READ_BYTES, byteLength - offset);
    const bytes = (buffers[sequence % 2] as Uint8Array).subarray(0, length);
    const reading = file.readAt(bytes, offset).then((count) => {
      if (count !== length) {
        throw snapshotCorruption({ location: file.path, offset: offset + count, block: 'file' }, `ends at ${offset + count}, expected ${byteLength} bytes (truncated)`);
      }
      return bytes;
    });
    // Handled here so that a read abandoned by an early return is not an unhandled rejection.
    reading.catch(() => undefined);
    return reading;
  };
  let offset = 0;
  let sequence = 0;
  // Chunk n is in buffers[n % 2]; chunk n + 1 is read while n is checked; chunk n + 2 reuses
  // n's buffer, and is started only when n is done with.
  let next: Promise<Uint8Array> | undefined = start(0, 0);
  let completed = false;
  try {
    while (next !== undefined) {
      const chunk: Uint8Array = await next;
      const chunkOffset = offset;
      offset += chunk.byteLength;
      sequence += 1;
      next = undefined;
      if (offset < byteLength) {
        if (options.stopped()) throw snapshotStoreStopped(`snapshot reader of ${file.path}`);
        next = start(offset, sequence);
      }
      if (chunkOffset < contentBytes) await hasher.update(chunk.subarray(0, Math.min(chunk.byteLength, contentBytes - chunkOffset)));
      for (const block of splitter.blocks(chunk)) {
        if (options.stopped()) throw snapshotStoreStopped(`snapshot reader of ${file.path}`);
        if (options.signal?.aborted === true) throw snapshotCanceled('snapshot read', options.signal);
        if (!options.wantRecords) {
          verifier.verifyBlock(block);
          continue;
        }
        // A block gathered from two reads is a fresh array already; one inside a read buffer
        // is copied out, since the buffer is reused two reads later.
        const owned = block.buffer !== chunk.buffer ? block : block.slice();
        const records = verifier.verifyBlock(owned, true);
        if (records !== undefined && records.length > 0) yield records;
      }
      options.onChunk?.(verifier.verifiedBytes);
    }
    assert(verifier.complete, 'the chunks cover the file');
    completed = true;
  } finally {
    if (!completed) hasher.abandon();
    // Settled before the caller goes on (and maybe closes the file).
    if (next !== undefined) await next.catch(() => undefined);
  }
}

/**
 * WritePipeline gathers create()'s blocks into CREATE_WRITE_BYTES aligned units, writes up to
 * CREATE_WRITES_IN_FLIGHT_MAX of them at once, and reads each back (O_DIRECT, from the
 * temporary file) to compare with what was written. Memory: three write units (two in
 * flight, one filling) and two read-back units, plus one unit for a block larger than a unit.
 */
class WritePipeline {
  readonly #writer: AtomicFileWriter;
  // Undefined when the store does not read back (DiskSnapshotStoreOptions.readBack).
  readonly #readBack: AlignedFile | undefined;
  readonly #location: string;
  readonly #acquireHasher: () => ContentHasher;
  readonly #report: (bytesDone: number) => void;
  // Chosen at the first content hashed: the worker when a whole unit comes before the end
  // (large content), inline otherwise.
  #hasher: ContentHasher | undefined;
  // The bytes at the start of the current unit already hashed; everything after
  // contentDigest() (the footer) is not content.
  #hashedInUnit = 0;
  #contentEnded = false;
  readonly #freeUnits: Uint8Array[] = [];
  readonly #freeReadBacks: Uint8Array[] = [];
  readonly #inFlight: { readonly end: number; readonly done: Promise<void> }[] = [];
  #unit: Uint8Array;
  #filled = 0;
  #offset = 0;
  #closed = false;

  constructor(writer: AtomicFileWriter, readBack: AlignedFile | undefined, location: string, acquireHasher: () => ContentHasher, report: (bytesDone: number) => void) {
    this.#writer = writer;
    this.#readBack = readBack;
    this.#location = location;
    this.#acquireHasher = acquireHasher;
    this.#report = report;
    for (let unit = 0; unit < CREATE_WRITES_IN_FLIGHT_MAX; unit += 1) {
      this.#freeUnits.push(allocateAligned(CREATE_WRITE_BYTES).bytes);
      if (readBack !== undefined) this.#freeReadBacks.push(allocateAligned(CREATE_WRITE_BYTES).bytes);
    }
    this.#unit = allocateAligned(CREATE_WRITE_BYTES).bytes;
  }

  static async start(
    writer: AtomicFileWriter,
    location: string,
    io: { readonly direct: boolean; readonly readBack: boolean },
    acquireHasher: () => ContentHasher,
    report: (bytesDone: number) => void,
  ): Promise<WritePipeline> {
    const readBack = io.readBack ? await AlignedFile.open(writer.temporaryPath, { direct: io.direct }) : undefined;
    return new WritePipeline(writer, readBack, location, acquireHasher, report);
  }

  /** contentDigest hashes what was appended so far and gives the SHA-256 of it: the content. Later appends are the footer. */
  async contentDigest(): Promise<Uint8Array> {
    await this.#hashPending(true);
    this.#contentEnded = true;
    this.#hasher ??= new InlineContentHasher();
    return this.#hasher.digest();
  }

  /** bytesWritten is the end of what was written and read back. */
  get bytesWritten(): number {
    return this.#offset;
  }

  /** append copies `block` (whole alignment units) into the current unit, writing units out as they fill. */
  async append(block: Uint8Array): Promise<void> {
    if (this.#filled + block.byteLength > this.#unit.byteLength) await this.#flush();
    if (block.byteLength > this.#unit.byteLength) {
      // A block larger than a unit (one big record) gets a unit of its own, used once.
      this.#freeUnits.push(this.#unit);
      this.#unit = allocateAligned(block.byteLength).bytes;
    }
    this.#unit.set(block, this.#filled);
    this.#filled += block.byteLength;
    if (this.#filled === this.#unit.byteLength) await this.#flush();
  }

  /** end writes the last unit and waits for every write and read-back. */
  async end(): Promise<void> {
    await this.#flush();
    while (this.#inFlight.length > 0) await this.#settleOldest();
  }

  /** close waits for whatever still runs and closes the read-back file; harmless twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#contentEnded) this.#hasher?.abandon();
    await Promise.allSettled(this.#inFlight.map((write) => write.done));
    await this.#readBack?.close();
  }

  // Hashes the current unit's bytes not hashed yet (in file order: units are hashed as they
  // are flushed, the last one by contentDigest()).
  async #hashPending(final: boolean): Promise<void> {
    if (this.#contentEnded || this.#filled === this.#hashedInUnit) return;
    this.#hasher ??= final ? new InlineContentHasher() : this.#acquireHasher();
    await this.#hasher.update(this.#unit.subarray(this.#hashedInUnit, this.#filled));
    this.#hashedInUnit = this.#filled;
  }

  async #flush(): Promise<void> {
    if (this.#filled === 0) return;
    await this.#hashPending(false);
    while (this.#inFlight.length >= CREATE_WRITES_IN_FLIGHT_MAX) await this.#settleOldest();
    const unit = this.#unit;
    const bytes = unit.subarray(0, this.#filled);
    const offset = this.#offset;
    const done = this.#writeAndCheck(unit, bytes, offset);
    done.catch(() => undefined); // awaited in order by #settleOldest; handled here meanwhile
    this.#inFlight.push({ end: offset + bytes.byteLength, done });
    this.#offset += bytes.byteLength;
    this.#filled = 0;
    this.#hashedInUnit = 0;
    const free = this.#freeUnits.pop();
    assert(free !== undefined, 'a write unit is free once fewer than the maximum are in flight');
    this.#unit = free.byteLength >= CREATE_WRITE_BYTES ? free : allocateAligned(CREATE_WRITE_BYTES).bytes;
  }

  async #writeAndCheck(unit: Uint8Array, bytes: Uint8Array, offset: number): Promise<void> {
    await this.#writer.writeAt(bytes, offset);
    if (this.#readBack === undefined) {
      if (unit.byteLength === CREATE_WRITE_BYTES) this.#freeUnits.push(unit);
      return;
    }
    let readBack = this.#freeReadBacks.pop();
    if (readBack === undefined || readBack.byteLength < bytes.byteLength) readBack = allocateAligned(Math.max(bytes.byteLength, CREATE_WRITE_BYTES)).bytes;
    const view = readBack.subarray(0, bytes.byteLength);
    const count = await this.#readBack.readAt(view, offset);
    if (count !== bytes.byteLength || Buffer.compare(view, bytes) !== 0) {
      throw snapshotCorruption(
        { location: this.#location, offset, block: 'file' },
        `reads back ${count} bytes at offset ${offset} that differ from the ${bytes.byteLength} written`,
      );
    }
    // Standard units go back to the pool; a one-off unit for a big block goes to the garbage
    // collector (append() put the standard unit it replaced back in the pool).
    if (readBack.byteLength === CREATE_WRITE_BYTES) this.#freeReadBacks.push(readBack);
    if (unit.byteLength === CREATE_WRITE_BYTES) this.#freeUnits.push(unit);
  }

  async #settleOldest(): Promise<void> {
    const oldest = this.#inFlight[0];
    assert(oldest !== undefined, 'something is in flight');
    await oldest.done;
    this.#inFlight.shift();
    this.#report(oldest.end);
  }
}

/** DiskSnapshotReader reads one snapshot file with O_DIRECT; every block it returns is checked. */
class DiskSnapshotReader implements SnapshotReader {
  readonly info: SnapshotInfo;
  readonly metadata: SnapshotFileMetadata;
  readonly #store: DiskSnapshotStore;
  readonly #file: AlignedFile;
  #closed = false;

  constructor(store: DiskSnapshotStore, info: SnapshotInfo, metadata: SnapshotFileMetadata, file: AlignedFile) {
    this.#store = store;
    this.info = info;
    this.metadata = metadata;
    this.#file = file;
  }

  /** open opens the file and checks its header and footer (the whole file was checked when listed). */
  static async open(store: DiskSnapshotStore, info: SnapshotInfo, direct: boolean): Promise<DiskSnapshotReader> {
    const file = await AlignedFile.open(info.location, { direct });
    try {
      const footerOffset = info.byteLength - SNAPSHOT_FOOTER_BYTES;
      const header = allocateAligned(SNAPSHOT_HEADER_BYTES).bytes;
      const footerBlock = allocateAligned(SNAPSHOT_FOOTER_BYTES).bytes;
      const [headerCount, footerCount] = await Promise.all([file.readAt(header, 0), file.readAt(footerBlock, footerOffset)]);
      if (headerCount !== SNAPSHOT_HEADER_BYTES || footerCount !== SNAPSHOT_FOOTER_BYTES) {
        throw snapshotCorruption({ location: info.location, offset: footerOffset, block: 'file' }, `is shorter than the ${info.byteLength} bytes listed (truncated)`);
      }
      decodeSnapshotHeader(header, info.location);
      const footer = decodeSnapshotFooter(footerBlock, info.location, footerOffset);
      if (sha256HexOf(footer) !== info.sha256) {
        throw snapshotCorruption({ location: info.location, offset: footerOffset, block: 'footer' }, 'is not the footer the file had when it was listed');
      }
      return new DiskSnapshotReader(store, info, footer.metadata, file);
    } catch (error) {
      await file.close();
      throw error;
    }
  }

  async *records(options: SnapshotOperationOptions = {}): AsyncIterable<readonly SnapshotRecord[]> {
    this.#checkOpen();
    const report = progressReporter(options.onProgress, this.info.byteLength);
    const verifier = new SnapshotVerifier(this.info.location, this.info.byteLength, { externalDigest: true });
    const hasher = this.#store.hasherFor(this.info.byteLength - SNAPSHOT_FOOTER_BYTES);
    yield* readVerified(this.#file, verifier, hasher, {
      wantRecords: true,
      stopped: () => this.#closed || this.#store.isClosed(),
      signal: options.signal,
      onChunk: report,
    });
    verifier.finish(await hasher.digest());
  }

  async readBlocks(offset: number, maxBytes: number): Promise<Uint8Array> {
    this.#checkOpen();
    return readBlockRun(
      async (at, length) => {
        this.#checkOpen();
        const bytes = allocateAligned(length).bytes;
        const count = await this.#file.readAt(bytes, at);
        if (count !== length) {
          throw snapshotCorruption({ location: this.info.location, offset: at + count, block: 'file' }, `ends at ${at + count}, expected ${this.info.byteLength} bytes (truncated)`);
        }
        return bytes;
      },
      offset,
      maxBytes,
      this.info.byteLength,
      this.info.location,
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#store.forgetReader(this);
    await this.#file.close();
  }

  #checkOpen(): void {
    if (this.#closed || this.#store.isClosed()) throw snapshotStoreStopped(`snapshot reader of ${this.info.location}`);
  }
}

function sha256HexOf(footer: SnapshotFooter): string {
  return Buffer.from(footer.sha256).toString('hex');
}

/** DiskSnapshotReceiver takes one snapshot's bytes into `.receive-<id>.part`; see SnapshotReceiver. */
class DiskSnapshotReceiver implements SnapshotReceiver {
  readonly byteLength: number;
  readonly #store: DiskSnapshotStore;
  readonly #state: DiskReceive;
  #finished: SnapshotInfo | undefined;

  constructor(store: DiskSnapshotStore, state: DiskReceive) {
    this.#store = store;
    this.#state = state;
    this.byteLength = state.byteLength;
  }

  get verifiedBytes(): number {
    return this.#state.assembler.writtenBytes;
  }

  write(offset: number, bytes: Uint8Array): Promise<void> {
    return this.#state.queue.run(async () => {
      this.#checkOwner();
      try {
        await this.#state.assembler.take(offset, bytes);
      } catch (error) {
        // A failed write leaves the receive unusable: drop it (the next receive starts over).
        if (this.#state.assembler.broken) await this.#store.abortReceive(this.#state).catch(() => undefined);
        throw error;
      }
    });
  }

  finish(): Promise<SnapshotInfo> {
    return this.#state.queue.run(async () => {
      if (this.#finished !== undefined) return this.#finished;
      this.#checkOwner();
      this.#finished = await this.#store.finishReceive(this.#state);
      return this.#finished;
    });
  }

  abort(): Promise<void> {
    return this.#state.queue.run(async () => {
      if (this.#finished !== undefined || this.#state.owner !== this || this.#state.ended) return;
      await this.#store.abortReceive(this.#state);
    });
  }

  records(): ReceivedRecordStream | undefined {
    if (this.#state.ended || this.#state.owner !== this) return undefined;
    return this.#state.assembler.records();
  }

  #checkOwner(): void {
    if (this.#store.isClosed()) throw snapshotStoreStopped(`snapshot receive of ${this.#state.id}: the store`);
    if (this.#state.owner !== this || this.#state.ended) {
      throw new StrataError(ErrorCode.CANCELED, `snapshot receive of ${this.#state.id} was ended or taken over by a newer receive()`, {
        details: { id: this.#state.id },
      });
    }
  }
}

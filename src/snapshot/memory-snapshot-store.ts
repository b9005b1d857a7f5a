// memory-snapshot-store.ts — MemorySnapshotStore: snapshots kept as byte arrays, in exactly
// the file format of snapshot-format.ts, for the deterministic simulator and tests. It uses
// no timers and no randomness (leases are timed by the injected Clock), and settles every
// promise through the microtask queue only.
//
// It models a member's snapshot directory across crashes: crash() is a power cut followed by
// a restart. What was listed survives it; what was not finished does not (creates and
// receives in progress, and the readers, receivers and leases of the dead process); and each
// stored snapshot is checked again, as DiskSnapshotStore.open() checks its files, so one
// damaged with corrupt() is set aside instead of listed.
//
// States of a snapshot id: absent → creating or receiving (not listed) → listed → deleted by
// retain(). Invariant: a listed snapshot's bytes passed verifySnapshotBytes() when listed.

import type { Logger } from '../raft/index.ts';
import { SILENT_LOGGER } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import { SYSTEM_CLOCK, type Clock } from '../util/clock.ts';
import { ErrorCode, StrataError, isStrataError } from '../util/errors.ts';
import {
  SNAPSHOT_BLOCK_BYTES_TARGET,
  SnapshotEncoder,
  SnapshotVerifier,
  checkBlockBytesTarget,
  checkSnapshotMetadata,
  SNAPSHOT_FOOTER_BYTES,
  SNAPSHOT_HEADER_BYTES,
  concatBytes,
  decodeSnapshotFooter,
  decodeSnapshotHeader,
  snapshotInfoOf,
  verifySnapshotBytes,
  type SnapshotFooter,
} from './snapshot-format.ts';
import {
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

/** MEMORY_CORRUPTED_SNAPSHOTS_MAX bounds the damaged snapshots crash() sets aside (the oldest are forgotten). */
export const MEMORY_CORRUPTED_SNAPSHOTS_MAX = 16;

/** MemorySnapshotStoreOptions: the clock for leases, where warnings go, the block target (tests). */
export interface MemorySnapshotStoreOptions {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Data block target (default SNAPSHOT_BLOCK_BYTES_TARGET); small ones make many blocks cheaply. */
  readonly blockBytesTarget?: number;
  /** The footer's createdAtMs; default: the clock's now, so a simulation stays a function of its seed. */
  readonly wallClockMs?: () => number;
}

interface StoredSnapshot {
  readonly bytes: Uint8Array;
  readonly info: SnapshotInfo;
  readonly metadata: SnapshotFileMetadata;
}

// A receive in progress or broken off. Invariant: `owner` is the only receiver whose calls act.
interface MemoryReceive {
  readonly id: string;
  readonly byteLength: number;
  readonly assembler: ReceiveAssembler;
  readonly pieces: Uint8Array[];
  readonly queue: SerialQueue;
  owner: MemorySnapshotReceiver | undefined;
  ended: boolean;
}

/** MemorySnapshotStore keeps snapshots in memory; see the file header. */
export class MemorySnapshotStore implements SnapshotStore {
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #blockBytesTarget: number;
  readonly #wallClockMs: () => number;
  readonly #snapshots = new Map<string, StoredSnapshot>();
  readonly #corrupted = new Map<string, Uint8Array>();
  // Insertion order is age: the first is dropped when a receive needs room.
  readonly #receives = new Map<string, MemoryReceive>();
  readonly #creating = new Map<string, Promise<unknown>>();
  // receive() calls one at a time, as the disk store does.
  readonly #receiveCalls = new SerialQueue();
  readonly #readers = new Set<MemorySnapshotReader>();
  readonly #leases: SnapshotLeaseTable;
  // Bumped by crash() and close(): work begun under an older epoch belongs to a dead process.
  #epoch = 0;

  constructor(options: MemorySnapshotStoreOptions = {}) {
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#logger = options.logger ?? SILENT_LOGGER;
    this.#blockBytesTarget = options.blockBytesTarget ?? SNAPSHOT_BLOCK_BYTES_TARGET;
    checkBlockBytesTarget(this.#blockBytesTarget);
    this.#wallClockMs = options.wallClockMs ?? (() => Math.max(0, Math.floor(this.#clock.now())));
    this.#leases = new SnapshotLeaseTable(this.#clock);
  }

  list(): readonly SnapshotInfo[] {
    return [...this.#snapshots.values()].map((stored) => stored.info).sort(compareNewestFirst);
  }

  get(id: string): SnapshotInfo | undefined {
    return this.#snapshots.get(id)?.info;
  }

  async create(source: SnapshotSource, options: SnapshotOperationOptions = {}): Promise<SnapshotInfo> {
    checkSnapshotMetadata(source.metadata);
    const id = snapshotId(source.metadata.term, source.metadata.index);
    // One create per id at a time; a second waits and then finds the first one's result.
    for (let pending = this.#creating.get(id); pending !== undefined; pending = this.#creating.get(id)) {
      await pending.catch(() => undefined);
    }
    const listed = this.#snapshots.get(id);
    if (listed !== undefined) return listed.info;
    const creating = this.#create(id, source, options);
    this.#creating.set(id, creating);
    try {
      return await creating;
    } finally {
      this.#creating.delete(id);
    }
  }

  async #create(id: string, source: SnapshotSource, options: SnapshotOperationOptions): Promise<SnapshotInfo> {
    const epoch = this.#epoch;
    const location = `memory:${id}`;
    const encoder = new SnapshotEncoder({ metadata: source.metadata, createdAtMs: this.#wallClockMs(), blockBytesTarget: this.#blockBytesTarget });
    const pieces: Uint8Array[] = [encoder.header()];
    let bytesDone = pieces[0]?.byteLength ?? 0;
    const report = progressReporter(options.onProgress, undefined);
    const take = (): void => {
      const block = encoder.takeBlock();
      if (block === undefined) return;
      pieces.push(block.slice());
      bytesDone += block.byteLength;
      report(bytesDone);
    };
    await forEachSourceBatch(source, options.signal, (batch) => {
      this.#checkEpoch(epoch, 'snapshot create');
      for (let from = 0; from < batch.length; ) {
        from += encoder.push(batch, from);
        take();
      }
    });
    throwIfAborted(options.signal, 'snapshot create');
    this.#checkEpoch(epoch, 'snapshot create');
    encoder.finish();
    take();
    const { block, byteLength } = encoder.footer();
    pieces.push(block);
    const bytes = concatBytes(pieces, byteLength);
    // Verify before listing, as the disk store reads its file back.
    const footer = verifySnapshotBytes(bytes, location);
    this.#list(id, bytes, footer);
    report(byteLength);
    const info = this.#snapshots.get(id)?.info;
    assert(info !== undefined, 'a created snapshot is listed');
    return info;
  }

  async open(id: string): Promise<SnapshotReader> {
    checkSnapshotIdArgument(id);
    const stored = this.#snapshots.get(id);
    if (stored === undefined) throw snapshotNotFound(id);
    const reader = new MemorySnapshotReader(this, stored, this.#epoch);
    // The header and footer are checked at open, as the disk reader does.
    reader.checkEnds();
    this.#readers.add(reader);
    return reader;
  }

  async receive(id: string, byteLength: number): Promise<SnapshotReceiver> {
    checkSnapshotIdArgument(id);
    checkReceiveLength(id, byteLength);
    return this.#receiveCalls.run(() => this.#receive(id, byteLength));
  }

  async #receive(id: string, byteLength: number): Promise<SnapshotReceiver> {
    let state = this.#receives.get(id);
    if (state !== undefined && (state.byteLength !== byteLength || state.assembler.broken || state.ended)) {
      this.#dropReceive(state);
      state = undefined;
    }
    if (state === undefined) {
      while (this.#receives.size >= RECEIVES_MAX) {
        const oldest = this.#receives.values().next().value;
        assert(oldest !== undefined, 'a full table has an oldest receive');
        this.#dropReceive(oldest);
      }
      const pieces: Uint8Array[] = [];
      const assembler = new ReceiveAssembler(
        new SnapshotVerifier(`memory:receive:${id}`, byteLength),
        (length) => new Uint8Array(length),
        async (_offset, run) => {
          pieces.push(run.slice());
        },
      );
      state = { id, byteLength, assembler, pieces, queue: new SerialQueue(), owner: undefined, ended: false };
    } else {
      // Resumed: it becomes the newest, and starts again at the end of its last good block
      // (after whatever the previous receiver still had running).
      this.#receives.delete(id);
      const resumed = state;
      await resumed.queue.run(async () => resumed.assembler.dropTail());
    }
    this.#receives.set(id, state);
    const receiver = new MemorySnapshotReceiver(this, state, this.#epoch);
    state.owner = receiver;
    return receiver;
  }

  lease(id: string, ttlMs: number): SnapshotLease {
    checkSnapshotIdArgument(id);
    if (!this.#snapshots.has(id)) throw snapshotNotFound(id);
    return this.#leases.lease(id, ttlMs);
  }

  async retain(keep: number, protect: readonly string[] = []): Promise<string[]> {
    const victims = retentionVictims(this.list(), keep, protect, (id) => this.#leases.isLeased(id));
    for (const victim of victims) this.#snapshots.delete(victim.id);
    return victims.map((victim) => victim.id);
  }

  /**
   * close ends the process's use of the store: open readers and receivers fail from now on,
   * creates in progress are refused, receives and leases are dropped. The listed snapshots
   * stay, and the store can be used again (by the next incarnation of the member), as a
   * directory outlives the process that closed it.
   */
  async close(): Promise<void> {
    this.#endProcess();
  }

  /**
   * crash is a power cut and a restart: what close() drops is lost too, and every listed
   * snapshot is checked again; one that fails is set aside (not listed) and reported.
   */
  crash(): void {
    this.#endProcess();
    for (const [id, stored] of [...this.#snapshots]) {
      try {
        verifySnapshotBytes(stored.bytes, stored.info.location);
      } catch (error) {
        if (!isStrataError(error, ErrorCode.CORRUPTION)) throw error;
        this.#snapshots.delete(id);
        this.#corrupted.set(id, stored.bytes);
        if (this.#corrupted.size > MEMORY_CORRUPTED_SNAPSHOTS_MAX) {
          const oldest = this.#corrupted.keys().next().value;
          if (oldest !== undefined) this.#corrupted.delete(oldest);
        }
        this.#logger.warn('snapshot failed its check at restart and is set aside', { id, reason: (error as Error).message, ...error.details });
      }
    }
  }

  /**
   * corrupt flips bit `bit` (0-7) of byte `offset` of a stored snapshot, as decay on a disk
   * would: it stays listed; the next read of that block, or crash(), refuses it with CORRUPTION.
   */
  corrupt(id: string, offset: number, bit: number): void {
    const stored = this.#snapshots.get(id);
    assert(stored !== undefined, `corrupt: snapshot ${id} is not listed`);
    assert(Number.isInteger(offset) && offset >= 0 && offset < stored.bytes.byteLength, 'corrupt: offset within the file');
    assert(Number.isInteger(bit) && bit >= 0 && bit < 8, 'corrupt: bit in 0..7');
    stored.bytes[offset] = (stored.bytes[offset] ?? 0) ^ (1 << bit);
  }

  /** corruptedIds lists the snapshots crash() set aside, oldest first (the disk store's .corrupt files). */
  corruptedIds(): string[] {
    return [...this.#corrupted.keys()];
  }

  /** @internal the receiver's and reader's way back into the store. */
  isCurrent(epoch: number): boolean {
    return epoch === this.#epoch;
  }

  /** @internal */
  forgetReader(reader: MemorySnapshotReader): void {
    this.#readers.delete(reader);
  }

  /** @internal finish of a receive: the whole checked, then listed. */
  finishReceive(state: MemoryReceive): SnapshotInfo {
    const { assembler, id } = state;
    const location = `memory:${id}`;
    if (assembler.expectedOffset !== state.byteLength || assembler.writtenBytes !== state.byteLength) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot ${id}: finish after ${assembler.writtenBytes} of ${state.byteLength} bytes`, {
        details: { id, verifiedBytes: assembler.writtenBytes, byteLength: state.byteLength },
      });
    }
    let footer: SnapshotFooter;
    try {
      footer = assembler.finish((checked) => checkFooterMatchesId(id, checked, location, state.byteLength));
    } finally {
      state.ended = true;
      this.#dropReceive(state);
    }
    const listed = this.#snapshots.get(id);
    if (listed !== undefined) return listed.info;
    this.#list(id, concatBytes(state.pieces, state.byteLength), footer);
    const info = this.#snapshots.get(id)?.info;
    assert(info !== undefined, 'a received snapshot is listed');
    return info;
  }

  /** @internal */
  abortReceive(state: MemoryReceive): void {
    state.ended = true;
    this.#dropReceive(state);
  }

  #list(id: string, bytes: Uint8Array, footer: SnapshotFooter): void {
    const location = `memory:${id}`;
    this.#snapshots.set(id, { bytes, info: snapshotInfoOf(id, location, bytes.byteLength, footer), metadata: footer.metadata });
  }

  #dropReceive(state: MemoryReceive): void {
    state.ended = true;
    state.owner = undefined;
    state.assembler.abandon(receiveEnded(state.id));
    if (this.#receives.get(state.id) === state) this.#receives.delete(state.id);
  }

  #endProcess(): void {
    this.#epoch += 1;
    for (const state of [...this.#receives.values()]) this.#dropReceive(state);
    for (const reader of [...this.#readers]) reader.invalidate();
    this.#readers.clear();
    this.#leases.clear();
  }

  #checkEpoch(epoch: number, what: string): void {
    if (epoch !== this.#epoch) throw snapshotStoreStopped(`${what}: the store`);
  }
}

/** MemorySnapshotReader reads one stored snapshot; every block it returns is checked. */
class MemorySnapshotReader implements SnapshotReader {
  readonly info: SnapshotInfo;
  readonly metadata: SnapshotFileMetadata;
  readonly #store: MemorySnapshotStore;
  readonly #bytes: Uint8Array;
  readonly #epoch: number;
  #closed = false;

  constructor(store: MemorySnapshotStore, stored: StoredSnapshot, epoch: number) {
    this.#store = store;
    this.#bytes = stored.bytes;
    this.info = stored.info;
    this.metadata = stored.metadata;
    this.#epoch = epoch;
  }

  /** checkEnds checks the header and the footer blocks (CORRUPTION after corrupt() hit them). */
  checkEnds(): void {
    const footerOffset = this.#bytes.byteLength - SNAPSHOT_FOOTER_BYTES;
    decodeSnapshotHeader(this.#bytes.subarray(0, SNAPSHOT_HEADER_BYTES), this.info.location);
    decodeSnapshotFooter(this.#bytes.subarray(footerOffset), this.info.location, footerOffset);
  }

  invalidate(): void {
    this.#closed = true;
  }

  async *records(options: SnapshotOperationOptions = {}): AsyncIterable<readonly SnapshotRecord[]> {
    this.#checkOpen();
    const { signal } = options;
    const report = progressReporter(options.onProgress, this.#bytes.byteLength);
    const verifier = new SnapshotVerifier(this.info.location, this.#bytes.byteLength);
    while (!verifier.complete) {
      this.#checkOpen();
      if (signal?.aborted === true) throw snapshotCanceled('snapshot read', signal);
      const at = verifier.verifiedBytes;
      const length = verifier.nextBlockLength(this.#bytes.subarray(at));
      assert(length !== undefined, 'a stored snapshot is whole');
      // A copy per block: the records must not change if the stored bytes are corrupted later.
      const block = this.#bytes.slice(at, at + length);
      const records = verifier.verifyBlock(block, true);
      report(verifier.verifiedBytes);
      if (records !== undefined && records.length > 0) yield records;
    }
    verifier.finish();
  }

  async readBlocks(offset: number, maxBytes: number): Promise<Uint8Array> {
    this.#checkOpen();
    // A copy: the caller may keep or change what it gets.
    return readBlockRun(async (at, length) => this.#bytes.slice(at, at + length), offset, maxBytes, this.#bytes.byteLength, this.info.location);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#store.forgetReader(this);
  }

  #checkOpen(): void {
    if (this.#closed || !this.#store.isCurrent(this.#epoch)) throw snapshotStoreStopped(`snapshot reader of ${this.info.id}`);
  }
}

/** MemorySnapshotReceiver takes one snapshot's bytes into memory; see SnapshotReceiver. */
class MemorySnapshotReceiver implements SnapshotReceiver {
  readonly byteLength: number;
  readonly #store: MemorySnapshotStore;
  readonly #state: MemoryReceive;
  readonly #epoch: number;
  #finished: SnapshotInfo | undefined;

  constructor(store: MemorySnapshotStore, state: MemoryReceive, epoch: number) {
    this.#store = store;
    this.#state = state;
    this.byteLength = state.byteLength;
    this.#epoch = epoch;
  }

  get verifiedBytes(): number {
    return this.#state.assembler.writtenBytes;
  }

  write(offset: number, bytes: Uint8Array): Promise<void> {
    return this.#state.queue.run(async () => {
      this.#checkOwner();
      await this.#state.assembler.take(offset, bytes);
    });
  }

  finish(): Promise<SnapshotInfo> {
    return this.#state.queue.run(async () => {
      if (this.#finished !== undefined) return this.#finished;
      this.#checkOwner();
      try {
        this.#finished = this.#store.finishReceive(this.#state);
      } catch (error) {
        // A mismatch ends the receive (the contract: the temporary is removed); a finish called
        // too early does not, the rest can still come.
        if (isStrataError(error, ErrorCode.CORRUPTION)) this.#store.abortReceive(this.#state);
        throw error;
      }
      return this.#finished;
    });
  }

  abort(): Promise<void> {
    return this.#state.queue.run(async () => {
      if (this.#finished !== undefined || this.#state.owner !== this) return;
      this.#store.abortReceive(this.#state);
    });
  }

  records(): ReceivedRecordStream | undefined {
    if (this.#state.ended || this.#state.owner !== this || !this.#store.isCurrent(this.#epoch)) return undefined;
    return this.#state.assembler.records();
  }

  #checkOwner(): void {
    if (!this.#store.isCurrent(this.#epoch)) throw snapshotStoreStopped(`snapshot receive of ${this.#state.id}: the store`);
    if (this.#state.owner !== this || this.#state.ended) {
      throw new StrataError(ErrorCode.CANCELED, `snapshot receive of ${this.#state.id} was ended or taken over by a newer receive()`, {
        details: { id: this.#state.id },
      });
    }
  }
}

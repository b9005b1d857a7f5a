// SimDisk is a simulated node's disk: either the in-memory reference log (MemoryLogStore)
// or the real durable log (src/storage's DiskLogStore: CRC32c-framed segment files,
// checkpoints, compaction records) on the fault-injecting in-memory file system. With the
// latter, every simulated crash is a power cut of that file system (unsynced writes lost or
// torn) followed by the store's real recovery on restart, so thousands of seeds also
// exercise the storage layer's replay under Raft's write patterns.
import { ErrorCode, StrataError } from '../../../src/util/errors.ts';
import type { ConfState, Entry, HardState, Index, InitialState, LogStorage, Snapshot, Term } from '../../../src/raft/index.ts';
import { SILENT_LOGGER } from '../../../src/raft/index.ts';
import type { CrashMode, LogStore } from '../../../src/storage/index.ts';
import { DiskLogStore, FaultyFileSystem, MemoryLogStore } from '../../../src/storage/index.ts';

/** DiskKind chooses what a simulated node persists into. */
export type DiskKind = 'memory' | 'faulty-disk';

/** SIM_SEGMENT_BYTES_MAX keeps segments small so seeds roll and delete segments often. */
export const SIM_SEGMENT_BYTES_MAX = 16 * 1024;

/** PersistRequest is what one Ready asks the disk to make durable, in this order. */
export interface PersistRequest {
  readonly snapshot: Snapshot | undefined;
  readonly entries: readonly Entry[];
  readonly hardState: HardState | undefined;
}

/** SimDisk is the storage a simulated node reads (LogStorage) and writes, across crashes. */
export class SimDisk implements LogStorage {
  readonly kind: DiskKind;
  private readonly fileSystem: FaultyFileSystem | undefined;
  private readonly directory: string;
  // Replaced on every crash of the durable store (recovery opens a new one).
  private store: LogStore;

  constructor(kind: DiskKind, seed: number, directory: string) {
    this.kind = kind;
    this.directory = directory;
    this.fileSystem = kind === 'faulty-disk' ? new FaultyFileSystem({ seed }) : undefined;
    this.store = this.fileSystem === undefined ? new MemoryLogStore() : this.openDisk(this.fileSystem);
  }

  private openDisk(fileSystem: FaultyFileSystem): DiskLogStore {
    return DiskLogStore.openSync({
      fileSystem,
      directory: this.directory,
      segmentBytesMax: SIM_SEGMENT_BYTES_MAX,
      logger: SILENT_LOGGER,
      // A disk error is never injected here: one would be a bug in the simulator or the store.
      onFatal: (error: unknown) => {
        throw new StrataError(ErrorCode.CORRUPTION, `simulated disk failed unexpectedly: ${String(error)}`);
      },
    });
  }

  initialState(): InitialState {
    return this.store.initialState();
  }

  entries(lo: Index, hi: Index, maxBytes: number): readonly Entry[] {
    return this.store.entries(lo, hi, maxBytes);
  }

  term(index: Index): Term {
    return this.store.term(index);
  }

  firstIndex(): Index {
    return this.store.firstIndex();
  }

  lastIndex(): Index {
    return this.store.lastIndex();
  }

  snapshot(): Snapshot {
    return this.store.snapshot();
  }

  /** persist makes a Ready's snapshot, entries and hard state durable before it returns. */
  persist(request: PersistRequest): void {
    this.store.saveSync({
      ...(request.snapshot === undefined ? {} : { snapshot: request.snapshot }),
      entries: request.entries,
      ...(request.hardState === undefined ? {} : { hardState: request.hardState }),
    });
  }

  /**
   * snapshotAndCompact records a snapshot of the applied state at `index` and compacts the
   * log before `compactIndex` (when given). Both reach the disk with the next persist (or
   * flush); a crash before that leaves the older snapshot and the longer log.
   */
  snapshotAndCompact(index: Index, confState: ConfState, data: Uint8Array, compactIndex: Index | undefined): void {
    this.store.createSnapshot(index, confState, data);
    if (compactIndex !== undefined) this.store.compact(compactIndex);
  }

  /** flush makes a pending snapshot record and compaction durable. */
  flush(): void {
    this.store.saveSync({});
  }

  /** crash models a power cut: unsynced writes are lost (or torn), then the store recovers. */
  crash(mode: CrashMode): void {
    if (this.fileSystem === undefined) return;
    this.fileSystem.crash(mode);
    this.store = this.openDisk(this.fileSystem);
  }
}

// The durable Raft log on disk: CRC32c-framed records in append-only segment files, one
// fdatasync per group of concurrent saves, reads served from memory.
//
// Layout: `<directory>/<sequence as 16 hex digits>.wal`, each segment at most about
// SEGMENT_BYTES_MAX, each starting with a checkpoint record (the hard state, the latest
// snapshot and the last entry at the time it was started) so that older segments can be
// deleted once the log is compacted past them. Records are only ever appended: an entry
// whose index is already stored replaces that entry and everything after it, exactly as in
// memory (etcd's WAL does the same), so a conflicting-suffix truncation is one more record
// under the same fdatasync rather than an ftruncate.
//
// Reads are synchronous because the Raft core is: every entry's term and position are held
// in memory, recent entries are cached (CACHE_BYTES_MAX), older ones are read back with
// positional reads and their CRC verified again.

import path from 'node:path';
import type { InitialState } from '../raft/storage.ts';
import type { ConfState, Entry, HardState, Index, Logger, Snapshot, Term } from '../raft/types.ts';
import { EMPTY_CONF_STATE, EMPTY_HARD_STATE, ENTRY_OVERHEAD_BYTES, SILENT_LOGGER } from '../raft/types.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { FatalHandler } from './fatal.ts';
import { abortOnFatal } from './fatal.ts';
import type { StorageFileSystem } from './file-system.ts';
import type { Checkpoint, LogRecord } from './log-record.ts';
import { ENTRY_RECORD_FIXED_BYTES, corruption, decodeRecordAt, encodeBatch, encodeRecords, entryRecordBytes, recordBytes, scanSegment } from './log-record.ts';
import { LogIndex } from './log-index.ts';
import type { LogStore, SaveRequest } from './log-store.ts';

/** SEGMENT_BYTES_MAX is the size after which writes move to a new segment (etcd's is 64 MiB too). */
export const SEGMENT_BYTES_MAX = 64 * 1024 * 1024;
/** CACHE_BYTES_MAX bounds the entry data kept in memory for reads by default. */
export const CACHE_BYTES_MAX = 64 * 1024 * 1024;
/** GROUP_BYTES_MAX bounds the bytes one group commit writes before its fdatasync. */
export const GROUP_BYTES_MAX = 16 * 1024 * 1024;
/**
 * PENDING_SAVES_MAX bounds the saves waiting for a flush. The driver waits for each Ready's
 * save, so more than this many at once is a programmer error, not load.
 */
export const PENDING_SAVES_MAX = 65_536;

const SEGMENT_SUFFIX = '.wal';
const TEMPORARY_SUFFIX = '.tmp';
const SEGMENT_NAME = /^([0-9a-f]{16})\.wal$/;

/** DiskLogStoreOptions configures a DiskLogStore. */
export interface DiskLogStoreOptions {
  /** The disk: NodeFileSystem in production, FaultyFileSystem in crash tests and the simulator. */
  readonly fileSystem: StorageFileSystem;
  /** The directory that holds the segments (created when missing). */
  readonly directory: string;
  /** Where start-up reports a torn tail and similar events (default: nowhere, as the other stores). */
  readonly logger?: Logger;
  /** Called when an fdatasync or write fails; the default aborts the process. */
  readonly onFatal?: FatalHandler;
  /** Called after each group commit's fdatasync with how long it took (etcd_disk_wal_fsync_duration_seconds). */
  readonly onSynced?: (durationMs: number) => void;
  /** The configuration a brand-new log starts with. */
  readonly initialConfState?: ConfState;
  /** Overrides SEGMENT_BYTES_MAX (tests use small segments). */
  readonly segmentBytesMax?: number;
  /** Overrides CACHE_BYTES_MAX (tests use a small cache to exercise disk reads). */
  readonly cacheBytesMax?: number;
}

/** RecoveryReport says what start-up found. */
export interface RecoveryReport {
  readonly segments: number;
  readonly records: number;
  /** Set when a torn tail was cut off the last segment. */
  readonly tornTail?: { readonly file: string; readonly offset: number; readonly bytes: number };
}

interface Segment {
  readonly sequence: number;
  readonly path: string;
  readonly fd: number;
  // The last index when the segment was started (its checkpoint).
  readonly startLastIndex: Index;
  // The smallest index of an entry record in the segment (Infinity when none).
  minEntryIndex: Index;
  size: number;
}

// One save waiting for its group: records before its entries (queued compactions and
// snapshots, a snapshot install), its entries (already trimmed of compacted ones), records
// after them (the hard state), and all of it encoded.
interface PendingSave {
  readonly bytes: Uint8Array;
  readonly before: readonly LogRecord[];
  readonly entries: readonly Entry[];
  readonly after: readonly LogRecord[];
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

interface PreparedSave {
  readonly before: readonly LogRecord[];
  readonly entries: readonly Entry[];
  readonly after: readonly LogRecord[];
}

/** DiskLogStore is the LogStore on disk. Open it with DiskLogStore.openSync(). */
export class DiskLogStore implements LogStore {
  private readonly fileSystem: StorageFileSystem;
  private readonly directory: string;
  private readonly logger: Logger;
  private readonly onFatal: FatalHandler;
  private readonly onSynced: ((durationMs: number) => void) | undefined;
  private readonly segmentBytesMax: number;

  // The durable view that reads see.
  private hardState: HardState = EMPTY_HARD_STATE;
  private latestSnapshot: Snapshot;
  private readonly index: LogIndex;

  // Invariant: segments are in sequence order with no gaps; the last is the one written.
  private segments: Segment[] = [];
  private pending: PendingSave[] = [];
  // compact() and createSnapshot() records waiting for the next flush.
  private queued: LogRecord[] = [];
  private flushing = false;
  // Set while a group is written and not yet acknowledged.
  private writing = false;
  private failure: StrataError | undefined;
  private closed = false;
  // Segment files being removed after a compaction, one after another (removeSegmentFile).
  private removals: Promise<void> = Promise.resolve();
  private removalsPending = 0;
  // The view including saves accepted but not yet durable, to validate new saves against.
  private acceptedLastIndex: Index = 0;
  private acceptedSnapshotIndex: Index = 0;
  // The highest compaction or snapshot install that is durable: segments wholly before it go.
  private durableFloor: Index = 0;

  /** recovery says what openSync() found on disk. */
  readonly recovery: RecoveryReport;

  private constructor(options: DiskLogStoreOptions) {
    this.fileSystem = options.fileSystem;
    this.directory = options.directory;
    this.logger = options.logger ?? SILENT_LOGGER;
    this.onFatal = options.onFatal ?? abortOnFatal;
    this.onSynced = options.onSynced;
    this.segmentBytesMax = options.segmentBytesMax ?? SEGMENT_BYTES_MAX;
    assert(this.segmentBytesMax > 0, 'segmentBytesMax must be positive');
    this.index = new LogIndex(options.cacheBytesMax ?? CACHE_BYTES_MAX);
    this.latestSnapshot = {
      metadata: { index: 0, term: 0, confState: options.initialConfState ?? EMPTY_CONF_STATE },
      data: new Uint8Array(0),
    };
    this.recovery = this.recover();
    this.acceptedLastIndex = this.lastIndex();
    this.acceptedSnapshotIndex = this.latestSnapshot.metadata.index;
  }

  /**
   * openSync opens (or creates) the log in `options.directory` and replays it. A torn tail is
   * cut off and logged; any other damage throws CORRUPTION naming the file and offset.
   */
  static openSync(options: DiskLogStoreOptions): DiskLogStore {
    return new DiskLogStore(options);
  }

  // ---- LogStorage (reads) ----

  initialState(): InitialState {
    return { hardState: this.hardState, confState: this.latestSnapshot.metadata.confState };
  }

  entries(lo: Index, hi: Index, maxBytes: number): readonly Entry[] {
    assert(lo <= hi, `entries: lo ${lo} > hi ${hi}`);
    const dummy = this.index.dummyIndex;
    if (lo <= dummy) throw compactedError(lo, dummy);
    if (hi > this.lastIndex() + 1) throw unavailableError(hi - 1, this.lastIndex());
    if (lo === hi) return [];
    // Decide the count from the stored sizes first, so that only needed entries are read.
    let end = lo + 1;
    let size = this.entryLimitBytes(lo);
    while (end < hi) {
      size += this.entryLimitBytes(end);
      if (size > maxBytes) break;
      end += 1;
    }
    const result: Entry[] = [];
    let index = lo;
    while (index < end) {
      const cached = this.index.cached(index);
      if (cached !== undefined) {
        result.push(cached);
        index += 1;
      } else {
        index = this.readRun(index, end, result);
      }
    }
    return result;
  }

  term(index: Index): Term {
    const dummy = this.index.dummyIndex;
    if (index < dummy) throw compactedError(index, dummy);
    if (index === dummy) return this.index.dummyTerm;
    if (index > this.lastIndex()) throw unavailableError(index, this.lastIndex());
    return this.index.term(index);
  }

  firstIndex(): Index {
    return this.index.dummyIndex + 1;
  }

  lastIndex(): Index {
    return this.index.lastIndex();
  }

  snapshot(): Snapshot {
    return this.latestSnapshot;
  }

  // ---- writes ----

  save(request: SaveRequest): Promise<void> {
    let prepared: PreparedSave;
    try {
      prepared = this.prepare(request);
    } catch (error) {
      if (error instanceof StrataError) return Promise.reject(error);
      throw error;
    }
    assert(this.pending.length < PENDING_SAVES_MAX, `more than ${PENDING_SAVES_MAX} saves pending`);
    const bytes = encodeBatch(prepared.before, prepared.entries, prepared.after);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ ...prepared, bytes, resolve, reject });
      if (!this.flushing) void this.flushLoop();
    });
  }

  saveSync(request: SaveRequest): void {
    assert(!this.writing && this.pending.length === 0, 'saveSync while asynchronous saves are in flight');
    const prepared = this.prepare(request);
    const bytes = encodeBatch(prepared.before, prepared.entries, prepared.after);
    if (bytes.byteLength === 0) return;
    this.rollIfFull();
    const segment = this.activeSegment();
    const position = segment.size;
    try {
      this.fileSystem.writeSync(segment.fd, bytes, position);
      segment.size += bytes.byteLength;
      this.fileSystem.fdatasyncSync(segment.fd);
    } catch (error) {
      throw this.fail(error);
    }
    this.applyDurable(prepared, segment, position);
    this.deleteObsoleteSegments('now');
  }

  async sync(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.queued.length > 0 || this.pending.length > 0 || this.flushing) await this.save({});
    // The segments freed by what is now durable are removed in the background; wait for them.
    await this.removals;
    if (this.failure !== undefined) throw this.failure;
  }

  compact(index: Index): void {
    assert(!this.closed, 'compact on a closed log');
    const dummy = this.index.dummyIndex;
    if (index <= dummy) throw compactedError(index, dummy);
    assert(index <= this.lastIndex(), `compact ${index} is out of bound last ${this.lastIndex()}`);
    const term = this.term(index);
    this.index.compact(index, term);
    this.queued.push({ kind: 'compact', index, term });
  }

  createSnapshot(index: Index, confState: ConfState, data: Uint8Array): Snapshot {
    assert(!this.closed, 'createSnapshot on a closed log');
    if (index <= this.latestSnapshot.metadata.index) {
      throw new StrataError(ErrorCode.SNAPSHOT_TEMPORARILY_UNAVAILABLE, `snapshot at ${index} is out of date`);
    }
    assert(index <= this.lastIndex(), `createSnapshot: index ${index} > last ${this.lastIndex()}`);
    const snapshot: Snapshot = { metadata: { index, term: this.term(index), confState }, data };
    this.latestSnapshot = snapshot;
    this.acceptedSnapshotIndex = Math.max(this.acceptedSnapshotIndex, index);
    this.queued.push({ kind: 'snapshot', install: false, snapshot });
    return snapshot;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.failure === undefined && (this.pending.length > 0 || this.queued.length > 0 || this.flushing)) {
      await this.sync().catch(() => undefined);
    }
    this.closed = true;
    await this.removals;
    for (const segment of this.segments) this.fileSystem.closeSync(segment.fd);
    this.segments = [];
  }

  // ---- write path ----

  // prepare validates a request against the accepted view (durable plus pending saves) and
  // splits it into records; it takes the queued compactions and snapshots along.
  private prepare(request: SaveRequest): PreparedSave {
    assert(!this.closed, 'save on a closed log');
    if (this.failure !== undefined) throw this.failure;
    let floor = this.index.dummyIndex;
    let snapshotRecord: LogRecord | undefined;
    if (request.snapshot !== undefined) {
      const index = request.snapshot.metadata.index;
      if (index <= this.acceptedSnapshotIndex) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot at ${index} is not newer than ${this.acceptedSnapshotIndex}`);
      }
      snapshotRecord = { kind: 'snapshot', install: true, snapshot: request.snapshot };
      floor = index;
    }
    let entries = request.entries ?? [];
    let last = request.snapshot === undefined ? this.acceptedLastIndex : floor;
    let skip = 0;
    for (let i = 0; i < entries.length; i += 1) {
      const entry = entries[i] as Entry;
      if (i > 0) assert(entry.index === (entries[i - 1] as Entry).index + 1, 'save: entries are not contiguous');
      if (entry.index <= floor) {
        skip = i + 1; // compacted already, as MemoryLogStorage.append skips them
        continue;
      }
      assert(entry.index <= last + 1, `save: gap in log, last ${last}, appending at ${entry.index}`);
      assert(Number.isSafeInteger(entry.term) && entry.term >= 0, 'save: bad entry term');
      last = entry.index;
    }
    if (skip > 0) entries = entries.slice(skip);
    const before = this.queued.splice(0);
    if (snapshotRecord !== undefined) before.push(snapshotRecord);
    const after: LogRecord[] = request.hardState === undefined ? [] : [{ kind: 'hardState', hardState: request.hardState }];
    if (request.snapshot !== undefined) this.acceptedSnapshotIndex = request.snapshot.metadata.index;
    this.acceptedLastIndex = last;
    return { before, entries, after };
  }

  // flushLoop writes everything pending as one group, fdatasyncs once, acknowledges the
  // group, and repeats while saves arrived during the flush (group commit).
  private async flushLoop(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0 && this.failure === undefined) {
        let bytes = 0;
        let count = 0;
        while (count < this.pending.length && (count === 0 || bytes + (this.pending[count] as PendingSave).bytes.byteLength <= GROUP_BYTES_MAX)) {
          bytes += (this.pending[count] as PendingSave).bytes.byteLength;
          count += 1;
        }
        const group = this.pending.splice(0, count);
        await this.writeGroup(group, bytes);
      }
    } finally {
      this.flushing = false;
    }
  }

  private async writeGroup(group: readonly PendingSave[], bytes: number): Promise<void> {
    let segment: Segment;
    let position: number;
    this.writing = true;
    try {
      this.rollIfFull();
      segment = this.activeSegment();
      position = segment.size;
      const buffer = group.length === 1 ? (group[0] as PendingSave).bytes : concat(group.map((save) => save.bytes), bytes);
      this.fileSystem.writeSync(segment.fd, buffer, position);
      segment.size += bytes;
      const syncStartedMs = this.onSynced === undefined ? 0 : performance.now();
      await this.fileSystem.fdatasync(segment.fd);
      this.onSynced?.(performance.now() - syncStartedMs);
    } catch (error) {
      const failure = this.fail(error);
      for (const save of group) save.reject(failure);
      for (const save of this.pending.splice(0)) save.reject(failure);
      this.writing = false;
      return;
    }
    let offset = position;
    for (const save of group) {
      this.applyDurable(save, segment, offset);
      offset += save.bytes.byteLength;
    }
    this.writing = false;
    try {
      this.deleteObsoleteSegments('background');
    } catch {
      // fail() has reported it and the store refuses further writes; this group is durable.
    }
    for (const save of group) save.resolve();
  }

  // fail makes the store refuse all further writes and reports the error as fatal.
  private fail(error: unknown): StrataError {
    if (this.failure === undefined) {
      this.failure = new StrataError(ErrorCode.IO_ERROR, `write or fdatasync failed in ${this.directory}; the log refuses further writes`, {
        cause: error,
      });
      this.onFatal(this.failure);
    }
    return this.failure;
  }

  // applyDurable makes a save that is now durable at `position` of `segment` visible to reads.
  private applyDurable(save: PreparedSave, segment: Segment, position: number): void {
    let offset = position;
    for (const record of save.before) offset = this.applyRecord(record, offset);
    for (const entry of save.entries) {
      const bytes = entryRecordBytes(entry);
      this.index.append(entry.index, entry.term, { segment: segment.sequence, offset, bytes }, entry);
      offset += bytes;
    }
    if (save.entries.length > 0) segment.minEntryIndex = Math.min(segment.minEntryIndex, (save.entries[0] as Entry).index);
    for (const record of save.after) offset = this.applyRecord(record, offset);
  }

  private applyRecord(record: LogRecord, offset: number): number {
    switch (record.kind) {
      case 'hardState':
        this.hardState = record.hardState;
        break;
      case 'snapshot':
        if (record.install) this.installSnapshot(record.snapshot);
        break;
      case 'compact':
        // Already applied to memory when compact() was called.
        this.durableFloor = Math.max(this.durableFloor, record.index);
        break;
      case 'entry':
      case 'checkpoint':
        assert(false, `a ${record.kind} record is not written this way`);
    }
    return offset + recordBytes(record);
  }

  // installSnapshot replaces the log with a durable snapshot (the log restarts after it).
  private installSnapshot(snapshot: Snapshot): void {
    this.index.reset(snapshot.metadata.index, snapshot.metadata.term);
    this.latestSnapshot = snapshot;
    this.durableFloor = Math.max(this.durableFloor, snapshot.metadata.index);
  }

  private rollIfFull(): void {
    if (this.activeSegment().size < this.segmentBytesMax) return;
    const sequence = this.activeSegment().sequence + 1;
    this.segments.push(this.createSegment(sequence));
  }

  // createSegment writes a new segment under a temporary name, makes it durable, then
  // renames it into place, so a crash never leaves a segment without its checkpoint.
  private createSegment(sequence: number): Segment {
    const finalPath = path.join(this.directory, segmentName(sequence));
    const temporaryPath = finalPath + TEMPORARY_SUFFIX;
    const lastIndex = this.lastIndex();
    const checkpoint: Checkpoint = {
      sequence,
      lastIndex,
      lastTerm: this.term(lastIndex),
      hardState: this.hardState,
      snapshot: this.latestSnapshot,
    };
    const bytes = encodeRecords([{ kind: 'checkpoint', checkpoint }]);
    try {
      const fd = this.fileSystem.openSync(temporaryPath, true);
      this.fileSystem.writeSync(fd, bytes, 0);
      this.fileSystem.fdatasyncSync(fd);
      this.fileSystem.renameSync(temporaryPath, finalPath);
      this.fileSystem.fsyncDirectorySync(this.directory);
      return { sequence, path: finalPath, fd, startLastIndex: lastIndex, minEntryIndex: Infinity, size: bytes.byteLength };
    } catch (error) {
      throw this.fail(error);
    }
  }

  // deleteObsoleteSegments removes the oldest segment while replay could start from the next
  // one instead: the next one starts at or before the durable compaction point, and no later
  // segment rewrites an entry at or before that start (a conflicting-suffix append can reach
  // back into an older segment until compaction passes it).
  // `now` (saveSync's synchronous callers: the simulator, start-up) removes each file before
  // returning; `background` (the write path) hands the removals to removeSegmentFile.
  private deleteObsoleteSegments(when: 'now' | 'background'): void {
    assert(when === 'background' || this.removalsPending === 0, 'segments removed synchronously while background removals are pending');
    while (this.segments.length > 1) {
      const next = this.segments[1] as Segment;
      if (next.startLastIndex > this.durableFloor) break;
      let minLaterEntryIndex = Infinity;
      for (let i = 1; i < this.segments.length; i += 1) {
        minLaterEntryIndex = Math.min(minLaterEntryIndex, (this.segments[i] as Segment).minEntryIndex);
      }
      if (minLaterEntryIndex <= next.startLastIndex) break;
      const obsolete = this.segments.shift() as Segment;
      try {
        this.fileSystem.closeSync(obsolete.fd);
        if (when === 'now') {
          this.fileSystem.unlinkSync(obsolete.path);
          // One directory fsync per deletion, oldest first, so a crash never leaves a gap.
          this.fileSystem.fsyncDirectorySync(this.directory);
        }
      } catch (error) {
        throw this.fail(error);
      }
      if (when === 'now') this.logger.info('deleted compacted log segment', { file: obsolete.path });
      else this.removeSegmentFile(obsolete.path);
    }
  }

  // removeSegmentFile removes a segment no longer listed, in the background: one at a time,
  // oldest first, each followed by a directory fsync, so a crash never leaves a gap (recovery
  // deletes again what a crash left). A failure is fatal like any other write's.
  private removeSegmentFile(file: string): void {
    this.removalsPending += 1;
    this.removals = this.removals.then(async () => {
      try {
        if (this.failure !== undefined) return;
        await this.fileSystem.removeDurably(file, this.directory);
        this.logger.info('deleted compacted log segment', { file });
      } catch (error) {
        this.fail(error);
      } finally {
        this.removalsPending -= 1;
      }
    });
  }

  // ---- reading back from disk ----

  private entryLimitBytes(index: Index): number {
    return this.index.recordBytes(index) - ENTRY_RECORD_FIXED_BYTES + ENTRY_OVERHEAD_BYTES;
  }

  // readRun reads uncached entries from `index` while they lie back to back in one segment
  // (one positional read for the run), verifies each record, and returns the next index.
  private readRun(index: Index, end: Index, into: Entry[]): Index {
    const first = this.index.location(index);
    let runEnd = index + 1;
    let bytes = first.bytes;
    while (runEnd < end && this.index.cached(runEnd) === undefined) {
      const next = this.index.location(runEnd);
      if (next.segment !== first.segment || next.offset !== first.offset + bytes) break;
      bytes += next.bytes;
      runEnd += 1;
    }
    const segment = this.segments.find((candidate) => candidate.sequence === first.segment);
    assert(segment !== undefined, `entry ${index} is in deleted segment ${first.segment}`);
    const buffer = new Uint8Array(bytes);
    const read = this.fileSystem.readSync(segment.fd, buffer, first.offset);
    if (read !== bytes) throw corruption(segment.path, first.offset, `expected ${bytes} bytes of records, the file has ${read}`);
    let offset = 0;
    for (let i = index; i < runEnd; i += 1) {
      const { record, end: recordEnd } = decodeRecordAt(buffer, offset, segment.path, first.offset + offset);
      if (record.kind !== 'entry' || record.entry.index !== i || record.entry.term !== this.index.term(i)) {
        throw corruption(segment.path, first.offset + offset, `expected entry ${i}, found another record`);
      }
      into.push(record.entry);
      offset = recordEnd;
    }
    return runEnd;
  }

  private activeSegment(): Segment {
    const segment = this.segments[this.segments.length - 1];
    assert(segment !== undefined, 'the log has no segment');
    return segment;
  }

  // ---- recovery ----

  private recover(): RecoveryReport {
    this.fileSystem.mkdirSync(this.directory);
    const sequences: number[] = [];
    for (const name of this.fileSystem.listSync(this.directory)) {
      if (name.endsWith(TEMPORARY_SUFFIX)) {
        // A segment whose creation a crash interrupted: it was never renamed into use.
        this.fileSystem.unlinkSync(path.join(this.directory, name));
        this.logger.warn('removed an unfinished segment', { file: path.join(this.directory, name) });
        continue;
      }
      const match = SEGMENT_NAME.exec(name);
      if (match !== null) sequences.push(Number.parseInt(match[1] as string, 16));
    }
    sequences.sort((a, b) => a - b);
    if (sequences.length === 0) {
      this.segments.push(this.createSegment(0));
      return { segments: 1, records: 1 };
    }
    let records = 0;
    let tornTail: { file: string; offset: number; bytes: number } | undefined;
    for (let i = 0; i < sequences.length; i += 1) {
      const sequence = sequences[i] as number;
      const segmentPath = path.join(this.directory, segmentName(sequence));
      if (i > 0 && sequence !== (sequences[i - 1] as number) + 1) {
        throw corruption(segmentPath, 0, `segment ${sequences[i - 1]} is followed by ${sequence}: segments are missing`);
      }
      const isLast = i === sequences.length - 1;
      const scan = scanSegment(this.fileSystem.readFileSync(segmentPath), segmentPath, isLast);
      const fd = this.fileSystem.openSync(segmentPath, false);
      const segment = this.replaySegment(scan.records, segmentPath, sequence, fd, i === 0);
      segment.size = scan.validBytes;
      this.segments.push(segment);
      records += scan.records.length;
      if (scan.tornBytes > 0) {
        tornTail = { file: segmentPath, offset: scan.validBytes, bytes: scan.tornBytes };
        this.logger.warn('truncated a torn record at the end of the log (a write cut short by a crash)', tornTail);
        this.fileSystem.truncateSync(fd, scan.validBytes);
        this.fileSystem.fdatasyncSync(fd);
      }
    }
    return tornTail === undefined ? { segments: sequences.length, records } : { segments: sequences.length, records, tornTail };
  }

  private replaySegment(
    records: readonly { readonly record: LogRecord; readonly offset: number; readonly bytes: number }[],
    segmentPath: string,
    sequence: number,
    fd: number,
    isFirst: boolean,
  ): Segment {
    const head = records[0];
    if (head === undefined || head.record.kind !== 'checkpoint' || head.record.checkpoint.sequence !== sequence) {
      throw corruption(segmentPath, 0, 'segment does not start with its checkpoint');
    }
    const checkpoint = head.record.checkpoint;
    let minEntryIndex = Infinity;
    if (isFirst) {
      // Older segments were deleted after compaction: the log starts where this one did.
      this.index.reset(checkpoint.lastIndex, checkpoint.lastTerm);
      this.hardState = checkpoint.hardState;
      this.latestSnapshot = checkpoint.snapshot;
      this.durableFloor = checkpoint.lastIndex;
    } else if (checkpoint.lastIndex !== this.lastIndex() || checkpoint.lastTerm !== this.term(this.lastIndex())) {
      throw corruption(segmentPath, 0, `checkpoint says the log ended at ${checkpoint.lastIndex}, replay says ${this.lastIndex()}`);
    }
    for (let i = 1; i < records.length; i += 1) {
      const { record, offset, bytes } = records[i] as (typeof records)[number];
      switch (record.kind) {
        case 'entry': {
          const index = record.entry.index;
          if (index <= this.index.dummyIndex || index > this.lastIndex() + 1) {
            throw corruption(segmentPath, offset, `entry ${index} does not follow the log (${this.index.dummyIndex}, ${this.lastIndex()}]`);
          }
          this.index.append(index, record.entry.term, { segment: sequence, offset, bytes }, undefined);
          minEntryIndex = Math.min(minEntryIndex, index);
          break;
        }
        case 'hardState':
          this.hardState = record.hardState;
          break;
        case 'snapshot':
          if (record.install) {
            this.installSnapshot(record.snapshot);
          } else if (record.snapshot.metadata.index > this.latestSnapshot.metadata.index) {
            this.latestSnapshot = record.snapshot;
          }
          break;
        case 'compact':
          if (record.index > this.lastIndex()) throw corruption(segmentPath, offset, `compaction to ${record.index} beyond the log`);
          if (record.index > this.index.dummyIndex) this.index.compact(record.index, record.term);
          this.durableFloor = Math.max(this.durableFloor, record.index);
          break;
        case 'checkpoint':
          throw corruption(segmentPath, offset, 'a checkpoint in the middle of a segment');
      }
    }
    return { sequence, path: segmentPath, fd, startLastIndex: checkpoint.lastIndex, minEntryIndex, size: 0 };
  }
}

function segmentName(sequence: number): string {
  return sequence.toString(16).padStart(16, '0') + SEGMENT_SUFFIX;
}

function concat(parts: readonly Uint8Array[], bytes: number): Uint8Array {
  const result = new Uint8Array(bytes);
  let offset = 0;
  for (const part of parts) {
    result.set(part, offset);
    offset += part.byteLength;
  }
  return result;
}

function compactedError(index: Index, dummyIndex: Index): StrataError {
  return new StrataError(ErrorCode.COMPACTED, `index ${index} is compacted (log starts after ${dummyIndex})`, {
    details: { index, compactedThrough: dummyIndex },
  });
}

function unavailableError(index: Index, last: Index): StrataError {
  return new StrataError(ErrorCode.UNAVAILABLE, `index ${index} is not in the log (last is ${last})`, {
    details: { index, lastIndex: last },
  });
}

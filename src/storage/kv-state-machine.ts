// The KV state machine: etcd's KV semantics (global revision, per-key create/mod revision
// and version, Put/Range/DeleteRange/Txn) on LevelDB (classic-level), or on memory-level
// for tests and the simulator; both speak the same abstract-level API.
//
// Write-behind, as etcd applies into its backend's in-memory buffer and commits the backend
// in the background: apply() executes a batch of committed entries in memory, moves its
// writes into the pending layer (writes applied but perhaps not yet in LevelDB) and
// resolves at once; one LevelDB batch at a time writes everything pending together with the
// applied index and the revision (group commit), and reads consult the pending layer before
// LevelDB. So LevelDB always holds the state of some applied index, written atomically with
// it, and after a crash the driver replays the log from there (entries at or below it are
// skipped). The batches are written without sync: the Raft log is the durable record, and
// anything the state machine loses in a power cut is re-applied from it. Reads see exactly
// the applied state, never part of a batch being applied. A failed LevelDB write is fatal.
//
// Mirror mode (kv-types.ts: MirrorRequest): while a mirror state is held, client writes are
// refused at apply (MIRROR_READ_ONLY), the copier's mirrorApply sets keys with the source's
// counters, and its mirrorReplay applies a stratakv source's commands through the same path
// as an entry's (applyRequest), so the store computes what the source computed. The state is
// applied state like any key: it moves with the applied index in the same commit, reaches
// LevelDB ('m' + "mirror") in the same batch as the META of that index, is captured by
// snapshot views and carried by restore().

import { hash as oneShotHash } from 'node:crypto';
import type { AbstractLevel } from 'abstract-level';
import type { Entry, Index } from '../raft/types.ts';
import { EntryType } from '../raft/types.ts';
import { assert, assertNever } from '../util/assert.ts';
import { ErrorCode, StrataError, isStrataError } from '../util/errors.ts';
import type { FatalHandler } from './fatal.ts';
import { abortOnFatal } from './fatal.ts';
import { CHECKPOINT_FORMAT, decodeKvCommand, isKvCommand } from './kv-command-codec.ts';
import { loadStoredDigest, verifyStoredDigest, writeIndexEntries } from './kv-digest-check.ts';
import type { DigestVerification } from './kv-digest-check.ts';
import type { LevelRange, MetaState, StoredValue } from './kv-keys.ts';
import {
  KEY_AREA_END,
  KEY_AREA_TAG,
  META_KEY,
  MIRROR_KEY,
  compareBytes,
  decodeMetaState,
  decodeMirrorState,
  decodeStoredValue,
  digestLeafKey,
  encodeMetaState,
  encodeMirrorState,
  encodeStoredValue,
  hashIndexKey,
  hashIndexRange,
  inLevelRange,
  parseHashIndexKey,
  levelRange,
  storageKey,
  storedValueOver,
  userKeyOf,
} from './kv-keys.ts';
import type { DigestRoot, KeyHashes } from './state-digest.ts';
import { DigestDelta, DigestSums, LEAF_COUNT, decodeKeyHashes, digestRootsEqual, encodeKeyHashes, formatDigest, keyDigestOf, keyHashesOf, leafOf } from './state-digest.ts';
import type {
  Compare,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KeyValue,
  KvLimits,
  MirrorPut,
  KvRequest,
  KvResponse,
  MirrorRequest,
  MirrorResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from './kv-types.ts';
import { DEFAULT_KV_LIMITS, MIRROR_STATE_BYTES_MAX } from './kv-types.ts';
import { replayedRequests, validateKvRequest } from './kv-validation.ts';

/**
 * KvLevel is a LevelDB database (ClassicLevel) or an in-memory one (MemoryLevel), opened
 * with keyEncoding and valueEncoding 'view'.
 */
export type KvLevel = AbstractLevel<string | Buffer | Uint8Array, Uint8Array, Uint8Array>;

/** INITIAL_REVISION is the revision of an empty store; the first write makes it 2, as in etcd. */
export const INITIAL_REVISION = 1;
/** APPLY_ENTRIES_MAX bounds the entries one apply() call takes (the driver applies per Ready). */
export const APPLY_ENTRIES_MAX = 65_536;
/**
 * PENDING_KEYS_MAX bounds the keys applied but not yet written to LevelDB: past it, apply()
 * waits for the writes before it resolves, so memory stays bounded when LevelDB is slower
 * than Raft.
 */
export const PENDING_KEYS_MAX = 65_536;
/** PENDING_BYTES_MAX bounds the LevelDB keys and values applied but not yet written (see PENDING_KEYS_MAX). */
export const PENDING_BYTES_MAX = 64 * 1024 * 1024;

// Any condition on the state applied so far holds once at most two writes have landed: the
// one in flight, then the one that carries everything applied after it started.
const WRITE_WAIT_ROUNDS_MAX = 2;

/** ApplyResult is the outcome of one applied entry that carried a KV command. */
export interface ApplyResult {
  readonly index: Index;
  /** The command id its proposer waits on. */
  readonly id: number;
  readonly response?: KvResponse;
  /** A request refused when applied (limits, future or compacted revision); nothing changed. */
  readonly error?: StrataError;
  /** For a checkpoint entry (CHECKPOINT_FORMAT, id 0): the state digest exactly at its index. */
  readonly checkpoint?: DigestAt;
  /** With KvStateMachineOptions.recordChanges: what the command changed, one entry per key, in the order first written. */
  readonly changes?: readonly KvChange[];
}

/** KvChange is one key's change by one command: its state after (with every counter), or undefined when deleted. */
export interface KvChange {
  readonly key: Uint8Array;
  readonly put: MirrorPut | undefined;
}

/** DigestAt is the state digest exactly at one applied index. */
export interface DigestAt {
  readonly appliedIndex: Index;
  readonly revision: number;
  readonly digest: DigestRoot;
}

/** KvSnapshotRecord is one stored pair in a snapshot: the user key and its encoded stored value. */
export interface KvSnapshotRecord {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

/**
 * KvSnapshotView is the applied state at one index, captured at once and read while apply
 * goes on: `records()` yields every key in order, in batches.
 */
export interface KvSnapshotView {
  readonly appliedIndex: Index;
  readonly appliedTerm: number;
  readonly revision: number;
  /** The state digest's root at appliedIndex; records() fails with CORRUPTION when the records do not sum to it. */
  readonly digest: DigestRoot;
  /** The mirror state at appliedIndex (undefined: not a mirror): a snapshot carries it, so a member restored from it is a mirror too. */
  readonly mirror: Uint8Array | undefined;
  /** records can be iterated once; stopping early (return()) releases the LevelDB snapshot. */
  records(): AsyncIterable<readonly KvSnapshotRecord[]>;
  /** close releases the LevelDB snapshot whether or not records() was read (idempotent). */
  close(): Promise<void>;
}

/**
 * KvSnapshotContent is what restore() fills an empty database from. restore() reads
 * `revision` and `keyCount` only after the records ended: a restore fed while the snapshot
 * is still being received learns them from its footer, checked at the end.
 */
export interface KvSnapshotContent {
  readonly appliedIndex: Index;
  readonly appliedTerm: number;
  readonly revision: number;
  /** Batches of records in strictly increasing key order. */
  readonly records: AsyncIterable<readonly KvSnapshotRecord[]>;
  /** The number of keys the snapshot says it holds; restore() refuses a different count. */
  readonly keyCount: number;
  /**
   * The state digest's root the snapshot says its records sum to (read after the records
   * ended, like `revision`); restore() refuses a different one. Undefined for a snapshot
   * written before snapshots carried it: the restored digest is then computed, not checked.
   */
  readonly digest: DigestRoot | undefined;
  /**
   * The mirror state at appliedIndex, undefined when the store was not a mirror (read after the
   * records ended, like `revision`). Required, so that every way of restoring says what it
   * passes: a member that joins a mirror by a snapshot must be a mirror too.
   */
  readonly mirror: Uint8Array | undefined;
}

/** LeafKey is one key of a digest leaf as its index records it. */
export interface LeafKey {
  readonly leaf: number;
  readonly key: Uint8Array;
  readonly hashes: KeyHashes;
}

/**
 * DigestView is the state digest and the data at one applied index, pinned while the state
 * machine goes on (a LevelDB snapshot and a copy of the pending writes and of the sums):
 * what a Merkle diff descends and the keys of the leaves it finds different.
 */
export interface DigestView {
  readonly appliedIndex: Index;
  readonly revision: number;
  /** The digest's sums at appliedIndex (a copy). */
  readonly sums: DigestSums;
  /** leafKeys lists the keys of leaves [fromLeaf, toLeaf) with their recorded hashes, by leaf, then key. */
  leafKeys(fromLeaf: number, toLeaf: number): Promise<LeafKey[]>;
  /** get reads one key at appliedIndex. */
  get(key: Uint8Array): Promise<KeyValue | undefined>;
  /**
   * range reads the keys of [key, rangeEnd) at appliedIndex (etcd's range rules: an empty
   * rangeEnd reads the one key, "\0" every key >= key) in key order, with their values, every
   * counter and the lease: at most `limit` keys (1..DIGEST_VIEW_RANGE_LIMIT_MAX) and, past the
   * first, no more than `bytesMax` of keys and values (default: no bound). `more` tells that
   * the range holds keys after the last one answered. A copier scans a source cluster through
   * it, page by page, at one index while the source goes on.
   */
  range(key: Uint8Array, rangeEnd: Uint8Array, limit: number, options?: { readonly bytesMax?: number }): Promise<{ kvs: KeyValue[]; more: boolean }>;
  /**
   * rangeSums computes a digest of the keys in [key, rangeEnd) (etcd's range rules) by reading
   * them at appliedIndex: the tree a diff restricted to a prefix descends (a full read of the
   * range; the stored tree covers every key). `onKeys` is told the keys read so far.
   */
  rangeSums(key: Uint8Array, rangeEnd: Uint8Array, onKeys?: (keysRead: number) => void): Promise<DigestSums>;
  /** close releases the LevelDB snapshot (idempotent). */
  close(): Promise<void>;
}

/** DIGEST_VIEWS_MAX bounds the digest views open at once (each pins a LevelDB snapshot and 2 MiB of sums). */
export const DIGEST_VIEWS_MAX = 8;
/** DIGEST_VIEW_RANGE_LIMIT_MAX bounds the keys one DigestView.range answers. */
export const DIGEST_VIEW_RANGE_LIMIT_MAX = 10_000;

/** SCAN_READ_BATCH_KEYS_MIN and _MAX bound the pairs one LevelDB read of a scan fetches (nextv), doubling from the first. */
export const SCAN_READ_BATCH_KEYS_MIN = 16;
export const SCAN_READ_BATCH_KEYS_MAX = 1_024;
/** SNAPSHOT_READ_BATCH_KEYS is how many keys one LevelDB read of a snapshot view fetches (nextv). */
export const SNAPSHOT_READ_BATCH_KEYS = 1_024;
/** RESTORE_BATCH_BYTES_MAX bounds one LevelDB batch written by restore(). */
export const RESTORE_BATCH_BYTES_MAX = 4 * 1024 * 1024;

/** KvStateMachineOptions configures a KvStateMachine. */
export interface KvStateMachineOptions {
  readonly limits?: KvLimits;
  /** Called once when a background LevelDB write fails; the default aborts the process. */
  readonly onFatal?: FatalHandler;
  /** Overrides PENDING_KEYS_MAX (tests use a small bound to exercise back-pressure). */
  readonly pendingKeysMax?: number;
  /** Overrides PENDING_BYTES_MAX. */
  readonly pendingBytesMax?: number;
  /**
   * Whether open() checks every stored key against the stored digest (a full read of the
   * data) before the state machine can serve. Default true. A failure is CORRUPTION naming
   * what differs. open() always checks the stored leaves against the stored root (cheap).
   */
  readonly verifyAtOpen?: boolean;
  /**
   * FOR BENCHMARKS ONLY: apply() keeps no digest (no hashing, no index, no leaves), so the
   * cost of the digest can be measured against its absence in one run. The data can then not
   * be verified: nothing is checked at open or in snapshot views, checkpoints report an empty
   * digest, and a later open with the digest kept refuses the database (data-vs-leaves).
   */
  readonly unsafeSkipDigest?: boolean;
  /**
   * Called once when a read of the stored state fails while applying (a damaged LevelDB
   * block, a stored value failing its CRC): the state machine is then corrupt. It stops
   * applying (every later entry's command gets an outcome-unknown error, nothing is written),
   * refuses reads and views, and waits to be replaced (the driver rebuilds it). The default
   * leaves it at that.
   */
  readonly onCorrupt?: (error: StrataError) => void;
  /** Called after each LevelDB batch of applied state landed, with how long it took (etcd_disk_backend_commit_duration_seconds). */
  readonly onBatchWritten?: (durationMs: number) => void;
  /**
   * Whether apply() reports each command's changes (ApplyResult.changes): the keys it wrote,
   * each with its state after. The reverse copy into etcd (src/migrate/copy) turns a
   * command into the writes etcd takes with them; a member does not pay for it.
   */
  readonly recordChanges?: boolean;
}

// PendingWrite is a user key's state that apply() produced and LevelDB may not hold yet (the
// digest's index entries wait in pendingIndex).
interface PendingWrite {
  readonly levelKey: Uint8Array;
  /** The key's value and counters, or null when it was deleted. */
  readonly stored: StoredValue | null;
  /** What the LevelDB batch writes, null for a deletion: encodeStoredValue(stored) (stored.value is a view into it), or an index entry's hashes. */
  readonly encoded: Uint8Array | null;
  /** The apply() that wrote the key last. */
  readonly sequence: number;
}

// IndexOverlayPair is a pending write of the digest's index, as a digest view merges it.
interface IndexOverlayPair {
  readonly levelKey: Uint8Array;
  readonly stored: null;
  readonly encoded: Uint8Array | null;
}

// OverlayPair is one write of a layer over the database, as reads merge it.
interface OverlayPair {
  readonly levelKey: Uint8Array;
  readonly stored: StoredValue | null;
}

type Visitor = (key: Uint8Array, stored: StoredValue) => boolean;
const ALWAYS = (): boolean => true;
// COUNTED_ONLY stands for a stored value a scan did not decode (see ReadView.scan); it is never kept.
const COUNTED_ONLY: StoredValue = Object.freeze({ createRevision: 0, modRevision: 0, version: 0, lease: 0n, value: new Uint8Array(0), hashes: undefined });
type LevelOperation = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

// `sync` is classic-level's write option (LevelDB's WriteOptions.sync); memory-level ignores it.
const SYNC_OPTIONS = { sync: true } as NonNullable<Parameters<KvLevel['put']>[2]>;

/** KvStateMachine applies committed KV commands to a LevelDB database and serves reads. */
export class KvStateMachine {
  private readonly db: KvLevel;
  private readonly limits: KvLimits;
  private readonly onFatal: FatalHandler;
  private readonly pendingKeysMax: number;
  private readonly pendingBytesMax: number;
  // The applied state: what apply() has resolved with, in memory, and its digest.
  private meta: MetaState;
  private readonly sums: DigestSums;
  // The applied mirror state (undefined: not a mirror). Never mutated: replaced by commit().
  private mirror: Uint8Array | undefined;
  private readonly verification: DigestVerification | undefined;
  private readonly options: KvStateMachineOptions;
  // Set when a read of the stored state failed while applying: see KvStateMachineOptions.onCorrupt.
  private corrupt: StrataError | undefined;
  private applying = false;
  private closed = false;

  // The write-behind. Sequences number the apply() calls that changed the applied state;
  // the state at open() is sequence 0, already in LevelDB.
  // Invariant: syncedSequence <= writtenSequence <= appliedSequence.
  // Invariant: every pending write has writtenSequence < sequence <= appliedSequence, so a
  // write is in flight whenever `pending` is not empty (or the state machine has failed).
  private readonly pending = new Map<string, PendingWrite>();
  private pendingBytes = 0;
  // The digest's index entries written by batches not yet in LevelDB, in batch order (a key's
  // later entry follows its earlier one, and LevelDB applies a batch's operations in order):
  // a list rather than map entries, since nothing reads them but a digest view.
  private pendingIndex: { readonly sequence: number; readonly levelKey: Uint8Array; readonly encoded: Uint8Array | null }[] = [];
  private pendingIndexBytes = 0;
  // The mirror state's LevelDB write (null: its deletion) when a batch not yet in LevelDB
  // changed it; it rides the next write with that batch's data and META.
  // Invariant: pendingMirror.sequence > writtenSequence.
  private pendingMirror: { readonly sequence: number; readonly encoded: Uint8Array | null } | undefined;
  private appliedSequence = 0;
  private writtenSequence = 0;
  private syncedSequence = -1;
  private syncWantedSequence = -1;
  // The one LevelDB write in flight (it never rejects: a failure lands in `failure`).
  // classic-level runs each write on a thread-pool thread, so two in flight could land in
  // either order: there is never more than one.
  private inFlight: Promise<void> | undefined;
  private failure: StrataError | undefined;
  // Open iterators (range scans, snapshot views): close() waits for them, so a state
  // machine being replaced finishes the reads it started.
  private readonly scans = new ScanCounter();
  private digestViews = 0;

  private constructor(db: KvLevel, meta: MetaState, sums: DigestSums, mirror: Uint8Array | undefined, options: KvStateMachineOptions, verification?: DigestVerification) {
    assert(mirror === undefined || mirror.byteLength <= MIRROR_STATE_BYTES_MAX, 'a mirror state over MIRROR_STATE_BYTES_MAX');
    this.options = options;
    this.db = db;
    this.meta = meta;
    this.sums = sums;
    this.mirror = mirror;
    this.verification = verification;
    this.limits = options.limits ?? DEFAULT_KV_LIMITS;
    this.onFatal = options.onFatal ?? abortOnFatal;
    this.pendingKeysMax = options.pendingKeysMax ?? PENDING_KEYS_MAX;
    this.pendingBytesMax = options.pendingBytesMax ?? PENDING_BYTES_MAX;
    assert(Number.isSafeInteger(this.pendingKeysMax) && this.pendingKeysMax > 0, 'pendingKeysMax must be a positive integer');
    assert(Number.isSafeInteger(this.pendingBytesMax) && this.pendingBytesMax > 0, 'pendingBytesMax must be a positive integer');
  }

  /**
   * open reads the applied state of `db` (opening it if needed); an empty db starts at
   * revision 1. It loads the stored digest and checks it (see verifyAtOpen): CORRUPTION when
   * the data is not what was applied. A database written before the digest existed gets one
   * built from its data (a full read, once).
   */
  static async open(db: KvLevel, options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
    if (db.status !== 'open') await db.open();
    // Range reads rely on an iterator reading from a snapshot taken when it is created.
    assert(db.supports.implicitSnapshots, 'the state machine needs a database with implicit snapshots');
    try {
      return await KvStateMachine.load(db, options);
    } catch (error) {
      // A database that fails its checks is closed, so that a repair can move or reopen it.
      await db.close().catch(() => undefined);
      throw error;
    }
  }

  private static async load(db: KvLevel, options: KvStateMachineOptions): Promise<KvStateMachine> {
    const stored = await db.get(META_KEY);
    const storedMeta = stored === undefined ? undefined : decodeMetaState(stored);
    const meta: MetaState =
      storedMeta === undefined
        ? { appliedIndex: 0, appliedTerm: 0, revision: INITIAL_REVISION }
        : { appliedIndex: storedMeta.appliedIndex, appliedTerm: storedMeta.appliedTerm, revision: storedMeta.revision };
    const storedMirror = await db.get(MIRROR_KEY);
    const mirror = storedMirror === undefined ? undefined : decodeMirrorState(storedMirror);
    if (mirror !== undefined && mirror.byteLength > MIRROR_STATE_BYTES_MAX) {
      throw new StrataError(ErrorCode.CORRUPTION, `state machine: the stored mirror state is ${mirror.byteLength} bytes, more than ${MIRROR_STATE_BYTES_MAX}`, { details: { check: 'malformed' } });
    }
    if (storedMeta !== undefined && storedMeta.digest === undefined) {
      // Written before the digest: build it from the data, with its index, in one synced batch.
      const built = await verifyStoredDigest(db, undefined);
      await writeIndexEntries(db, built.indexEntries);
      const operations: LevelOperation[] = [];
      for (let leaf = 0; leaf < LEAF_COUNT; leaf += 1) if (!built.sums.leafIsZero(leaf)) operations.push({ type: 'put', key: digestLeafKey(leaf), value: encodeKeyHashes(built.sums.leaf(leaf)) });
      operations.push({ type: 'put', key: META_KEY, value: encodeMetaState(meta, built.sums.root()) });
      await db.batch(operations, SYNC_OPTIONS);
      return new KvStateMachine(db, meta, built.sums, mirror, options, built.verification);
    }
    const sums = await loadStoredDigest(db, storedMeta?.digest);
    if (options.verifyAtOpen === false || options.unsafeSkipDigest === true) return new KvStateMachine(db, meta, sums, mirror, options);
    const checked = await verifyStoredDigest(db, sums);
    return new KvStateMachine(db, meta, sums, mirror, options, checked.verification);
  }

  /** openVerification reports the check of the data against the digest at open (undefined when skipped). */
  openVerification(): DigestVerification | undefined {
    return this.verification;
  }

  /** stateDigest is the digest of the applied state, with the applied index and revision it describes. */
  stateDigest(): DigestAt {
    return { appliedIndex: this.meta.appliedIndex, revision: this.meta.revision, digest: this.sums.root() };
  }

  /** appliedIndex is the index of the last entry applied. */
  appliedIndex(): Index {
    return this.meta.appliedIndex;
  }

  /** revision is the store's current revision. */
  revision(): number {
    return this.meta.revision;
  }

  /**
   * mirrorState is the applied mirror state (a copy), undefined when the store is not a
   * mirror: what the server checks to refuse a client write before proposing it (the state
   * machine refuses it again when applying, whatever was proposed).
   */
  mirrorState(): Uint8Array | undefined {
    return this.mirror?.slice();
  }

  /**
   * apply applies committed entries in order and returns the results of the entries that
   * carried commands. It resolves once the results are computed and visible to reads; the
   * LevelDB write of the batch, with the new applied index and revision, follows in the
   * background. Entries at or below the applied index are skipped (replay after a crash).
   * Empty entries (a new leader's no-op) and configuration changes only advance the applied
   * index; a checkpoint entry's result carries the state digest at its index. It rejects with IO_ERROR once a background write has failed.
   */
  async apply(entries: readonly Entry[]): Promise<ApplyResult[]> {
    assert(!this.applying, 'apply calls must not overlap');
    assert(!this.closed, 'apply after close');
    assert(entries.length <= APPLY_ENTRIES_MAX, `apply of ${entries.length} entries is over ${APPLY_ENTRIES_MAX}`);
    if (this.failure !== undefined) throw this.failure;
    if (this.corrupt !== undefined) return this.refuseCorrupt(entries);
    this.applying = true;
    try {
      return await this.applyBatch(entries);
    } catch (error) {
      if (!isReadCorruption(error)) throw error;
      // The batch is dropped (not committed): its commands' outcomes are unknown here (the
      // entries are committed, and other members apply them).
      this.corrupt = new StrataError(
        ErrorCode.CORRUPTION,
        `state machine: reading the stored state failed while applying entries ${entries[0]?.index}..${entries[entries.length - 1]?.index}: ${error instanceof Error ? error.message : String(error)}; it must be rebuilt`,
        { cause: error, details: { check: 'read-failed', appliedIndex: this.meta.appliedIndex } },
      );
      this.options.onCorrupt?.(this.corrupt);
      return this.refuseCorrupt(entries);
    } finally {
      this.applying = false;
    }
  }

  /** corruption answers why the state machine is corrupt, or undefined. */
  corruption(): StrataError | undefined {
    return this.corrupt;
  }

  // refuseCorrupt answers a corrupt state machine's apply: every command's outcome unknown.
  private refuseCorrupt(entries: readonly Entry[]): ApplyResult[] {
    const results: ApplyResult[] = [];
    for (const entry of entries) {
      if (entry.index <= this.meta.appliedIndex || entry.type !== EntryType.Normal || entry.data.byteLength === 0 || !isKvCommand(entry.data)) continue;
      const error = new StrataError(ErrorCode.TIMEOUT, 'etcdserver: request timed out (this member\'s state machine is corrupt: the outcome is unknown here)', {
        details: { index: entry.index },
      });
      results.push({ index: entry.index, id: decodeKvCommand(entry.data).id, error });
    }
    return results;
  }

  private async applyBatch(entries: readonly Entry[]): Promise<ApplyResult[]> {
    // The view's writes stay in its own overlay, invisible to reads, until commit() makes
    // them and the new applied state visible in one synchronous step: the commands await
    // (range scans), and a read in between must not see half a batch.
    const view = new ApplyView(this.db, this.pending, this.meta.revision, { keepDigest: this.options.unsafeSkipDigest !== true, mirror: this.mirror, limits: this.limits });
    const results: ApplyResult[] = [];
    let appliedIndex = this.meta.appliedIndex;
    let appliedTerm = this.meta.appliedTerm;
    for (const entry of entries) {
      if (entry.index <= appliedIndex) continue;
      assert(entry.index === appliedIndex + 1, `apply: entry ${entry.index} does not follow applied index ${appliedIndex}`);
      if (entry.type === EntryType.Normal && entry.data.byteLength > 0 && isKvCommand(entry.data)) {
        const command = decodeKvCommand(entry.data);
        view.entryIndex = entry.index;
        if (this.options.recordChanges === true) {
          view.changeLog = new Map();
          const outcome = await applyRequest(view, command.request);
          results.push({ index: entry.index, id: command.id, ...outcome, changes: [...view.changeLog.values()] });
          view.changeLog = undefined;
        } else {
          results.push({ index: entry.index, id: command.id, ...(await applyRequest(view, command.request)) });
        }
      } else if (entry.type === EntryType.Normal && entry.data[0] === CHECKPOINT_FORMAT) {
        // The digest exactly at this index: the applied state plus this batch so far.
        const checkpoint = { appliedIndex: entry.index, revision: view.revision, digest: view.digestDelta.rootOver(this.sums) };
        results.push({ index: entry.index, id: 0, checkpoint });
      }
      appliedIndex = entry.index;
      appliedTerm = entry.term;
    }
    if (appliedIndex === this.meta.appliedIndex) return results;
    if (this.failure !== undefined) throw this.failure;
    this.commit(view, { appliedIndex, appliedTerm, revision: view.revision });
    // Back-pressure: LevelDB is behind by more than the bound; wait for it to catch up.
    if (this.overBound()) await this.waitForWrites(() => !this.overBound());
    return results;
  }

  /**
   * sync makes everything applied so far durable: it waits for the pending writes to reach
   * LevelDB and writes the applied index with sync (apply() writes without). Call it
   * before compacting the Raft log up to the applied index: after a power cut the state
   * machine restarts from its durable applied index and needs the log entries after it.
   */
  async sync(): Promise<void> {
    assert(!this.closed, 'sync after close');
    if (this.failure !== undefined) throw this.failure;
    const target = this.appliedSequence;
    this.syncWantedSequence = Math.max(this.syncWantedSequence, target);
    this.startWrite();
    await this.waitForWrites(() => this.syncedSequence >= target);
  }

  /**
   * whenWritten resolves once everything applied so far is in LevelDB (not synced), and
   * rejects with IO_ERROR if a write failed.
   */
  async whenWritten(): Promise<void> {
    const target = this.appliedSequence;
    await this.waitForWrites(() => this.writtenSequence >= target);
  }

  /**
   * openSnapshotView captures the applied state as it is now, synchronously: the LevelDB
   * snapshot of a new iterator and a copy of the pending layer, taken in the same tick, with
   * the applied index, term and revision. apply() may run on while the view is read; the
   * view keeps showing the state it captured (the caller reads Raft's configuration in the
   * same tick, so the two agree). Its records() end with CORRUPTION when they do not sum to
   * the digest: each value's CRC32c is checked, and the hashes stored with the values are
   * summed, or computed again from the values with `recomputeHashes` (the scrubber).
   */
  openSnapshotView(options: { readonly recomputeHashes?: boolean } = {}): KvSnapshotView {
    assert(!this.closed, 'openSnapshotView after close');
    assert(!this.applying, 'openSnapshotView during apply: the applied state is between two batches');
    if (this.failure !== undefined) throw this.failure;
    if (this.corrupt !== undefined) throw this.corrupt;
    const range: LevelRange = { gte: storageKey(new Uint8Array(0)), lt: KEY_AREA_END };
    const iterator = this.db.iterator({ gte: range.gte, lt: range.lt });
    const pending = overlayIn(this.pending.values(), range);
    const { appliedIndex, appliedTerm, revision } = this.meta;
    const digest = this.sums.root();
    const mirror = this.mirror;
    const skipDigest = this.options.unsafeSkipDigest === true;
    const scans = this.scans;
    scans.opened();
    let taken = false;
    let released: Promise<void> | undefined;
    // Once, however the view ends: the iterator is closed and close() of the state machine
    // stops waiting for it.
    const release = (): Promise<void> => {
      released ??= iterator.close().finally(() => scans.closed());
      return released;
    };
    return {
      appliedIndex,
      appliedTerm,
      revision,
      digest,
      mirror,
      records(): AsyncIterable<readonly KvSnapshotRecord[]> {
        assert(!taken, 'a snapshot view is read once');
        taken = true;
        const records = mergedRecords(iterator, pending, release);
        return skipDigest ? records : checkedAgainstDigest(records, digest, `the snapshot view at index ${appliedIndex}`, options.recomputeHashes === true);
      },
      close: release,
    };
  }

  /**
   * compactStorage has LevelDB compact all of the state machine's keys, which is when the space
   * of deleted and overwritten keys is given back (a delete writes a tombstone); answers false
   * on a database that cannot compact (memory-level). It runs on LevelDB's thread while the
   * state machine serves.
   */
  async compactStorage(): Promise<boolean> {
    assert(!this.closed, 'compactStorage after close');
    const db = this.db as unknown as { compactRange?: (start: Uint8Array, end: Uint8Array) => Promise<void> };
    if (typeof db.compactRange !== 'function') return false;
    // Every LevelDB key starts with a one-byte area tag below 0xff (kv-keys.ts).
    this.scans.opened();
    try {
      await db.compactRange.call(this.db, Uint8Array.of(0x00), Uint8Array.of(0xff));
    } finally {
      this.scans.closed();
    }
    return true;
  }

  /**
   * openDigestView pins the applied state as it is now, synchronously (between two applies),
   * for a Merkle diff: the digest's sums, and the keys and values behind them. UNAVAILABLE
   * when DIGEST_VIEWS_MAX views are open.
   */
  openDigestView(): DigestView {
    assert(!this.closed, 'openDigestView after close');
    assert(!this.applying, 'openDigestView during apply: the applied state is between two batches');
    if (this.failure !== undefined) throw this.failure;
    if (this.corrupt !== undefined) throw this.corrupt;
    if (this.digestViews >= DIGEST_VIEWS_MAX) {
      throw new StrataError(ErrorCode.UNAVAILABLE, `${DIGEST_VIEWS_MAX} digest views are open already; try again when a diff ended`, { details: { open: this.digestViews } });
    }
    const db = this.db;
    const snapshot = db.snapshot();
    const pending = new Map(this.pending);
    // The index entries not yet in LevelDB, the last of each key winning.
    const pendingIndex = new Map<string, { levelKey: Uint8Array; stored: null; encoded: Uint8Array | null }>();
    for (const entry of this.pendingIndex) pendingIndex.set(mapKeyOf(entry.levelKey), { levelKey: entry.levelKey, stored: null, encoded: entry.encoded });
    const sums = this.sums.copy();
    const { appliedIndex, revision } = this.meta;
    const scans = this.scans;
    scans.opened();
    this.digestViews += 1;
    let released: Promise<void> | undefined;
    const release = (): Promise<void> => {
      released ??= snapshot.close().finally(() => {
        this.digestViews -= 1;
        scans.closed();
      });
      return released;
    };
    // scanPinned visits the user keys of `range` at the pinned index, in order, until `visit` says stop.
    const scanPinned = (range: LevelRange, visit: Visitor): Promise<void> =>
      scanMerged(
        overlayIn([...pending.values()].filter((write) => write.levelKey[0] === KEY_AREA_TAG), range),
        async (visitBelow) => {
          const iterator = db.iterator({ gte: range.gte, lt: range.lt, snapshot });
          try {
            for await (const [levelKey, value] of iterator) {
              if (!visitBelow(userKeyOf(levelKey), decodeStoredValue(value))) break;
            }
          } finally {
            await iterator.close();
          }
        },
        visit,
      );
    return {
      appliedIndex,
      revision,
      sums,
      async leafKeys(fromLeaf: number, toLeaf: number): Promise<LeafKey[]> {
        assert(released === undefined, 'a digest view read after close');
        const range = hashIndexRange(fromLeaf, toLeaf);
        const overlay = overlayIn(pendingIndex.values(), range);
        const answer: LeafKey[] = [];
        const push = (levelKey: Uint8Array, value: Uint8Array): void => {
          const { leaf, userKey } = parseHashIndexKey(levelKey);
          const hashes = decodeKeyHashes(value);
          if (hashes === undefined) throw new StrataError(ErrorCode.CORRUPTION, `state machine: the digest index entry of a key in leaf ${leaf} is malformed`, { details: { leaf } });
          answer.push({ leaf, key: userKey.slice(), hashes: { full: hashes.full.slice(), content: hashes.content.slice() } });
        };
        let next = 0;
        const iterator = db.iterator({ gte: range.gte, lt: range.lt, snapshot });
        try {
          for await (const [levelKey, value] of iterator) {
            while (next < overlay.length && compareBytes((overlay[next] as IndexOverlayPair).levelKey, levelKey) < 0) {
              const pair = overlay[next] as IndexOverlayPair;
              if (pair.encoded !== null) push(pair.levelKey, pair.encoded);
              next += 1;
            }
            if (next < overlay.length && compareBytes((overlay[next] as IndexOverlayPair).levelKey, levelKey) === 0) {
              const pair = overlay[next] as IndexOverlayPair;
              if (pair.encoded !== null) push(pair.levelKey, pair.encoded);
              next += 1;
              continue;
            }
            push(levelKey, value);
          }
        } finally {
          await iterator.close();
        }
        for (; next < overlay.length; next += 1) {
          const pair = overlay[next] as IndexOverlayPair;
          if (pair.encoded !== null) push(pair.levelKey, pair.encoded);
        }
        return answer;
      },
      async get(key: Uint8Array): Promise<KeyValue | undefined> {
        assert(released === undefined, 'a digest view read after close');
        const levelKey = storageKey(key);
        const write = pending.get(mapKeyOf(levelKey));
        if (write !== undefined) return write.stored === null ? undefined : toKeyValue(key, write.stored, false);
        const value = await db.get(levelKey, { snapshot });
        return value === undefined ? undefined : toKeyValue(key, decodeStoredValue(value), false);
      },
      async rangeSums(key: Uint8Array, rangeEnd: Uint8Array, onKeys?: (keysRead: number) => void): Promise<DigestSums> {
        assert(released === undefined, 'a digest view read after close');
        const answer = new DigestSums();
        const range = levelRange(key, rangeEnd);
        const add = (userKey: Uint8Array, stored: StoredValue): void => answer.add(leafOf(userKey), keyHashesOf(userKey, stored.value, stored), 1);
        if (range === undefined) {
          const one = await this.get(key);
          if (one !== undefined) add(key, { createRevision: one.createRevision, modRevision: one.modRevision, version: one.version, lease: one.lease, value: one.value });
          return answer;
        }
        let keysRead = 0;
        await scanPinned(range, (userKey, stored) => {
          add(userKey, stored);
          keysRead += 1;
          if (keysRead % 10_000 === 0) onKeys?.(keysRead);
          return true;
        });
        answer.takeDirty();
        return answer;
      },
      async range(key: Uint8Array, rangeEnd: Uint8Array, limit: number, options: { readonly bytesMax?: number } = {}): Promise<{ kvs: KeyValue[]; more: boolean }> {
        assert(released === undefined, 'a digest view read after close');
        assert(Number.isSafeInteger(limit) && limit >= 1 && limit <= DIGEST_VIEW_RANGE_LIMIT_MAX, `a digest view range limit must be 1..${DIGEST_VIEW_RANGE_LIMIT_MAX}, got ${limit}`);
        const bytesMax = options.bytesMax ?? Number.POSITIVE_INFINITY;
        assert(bytesMax > 0, 'a digest view range bytesMax must be positive');
        const range = levelRange(key, rangeEnd);
        if (range === undefined) {
          const one = await this.get(key);
          return { kvs: one === undefined ? [] : [one], more: false };
        }
        const kvs: KeyValue[] = [];
        let bytes = 0;
        let more = false;
        await scanPinned(range, (userKey, stored) => {
          const pairBytes = userKey.byteLength + stored.value.byteLength;
          if (kvs.length === limit || (kvs.length > 0 && bytes + pairBytes > bytesMax)) {
            more = true;
            return false;
          }
          kvs.push(toKeyValue(userKey, stored, false));
          bytes += pairBytes;
          return true;
        });
        return { kvs, more };
      },
      close: release,
    };
  }

  /**
   * restore fills an empty database with a snapshot's content, then writes the applied state
   * and syncs, and returns the state machine over it. Every stored value is decoded on the
   * way (CORRUPTION when one is malformed), keys must increase, and the count must match:
   * a database that fails any of this must be thrown away by the caller.
   */
  static async restore(db: KvLevel, content: KvSnapshotContent, options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
    if (db.status !== 'open') await db.open();
    const existing = db.iterator({ limit: 1 });
    try {
      const first = await existing.next();
      assert(first === undefined, 'restore needs an empty database');
    } finally {
      await existing.close();
    }
    let keyCount = 0;
    let previousKey: Uint8Array | undefined;
    let operations: LevelOperation[] = [];
    let operationBytes = 0;
    // The digest is rebuilt from the records (with its index) and checked against the one
    // the snapshot carries.
    const sums = new DigestSums();
    // One batch is written while the next is decoded: LevelDB's write overlaps the decoding.
    let writing: Promise<void> = Promise.resolve();
    for await (const batch of content.records) {
      for (const record of batch) {
        if (previousKey !== undefined && compareBytes(previousKey, record.key) >= 0) {
          throw new StrataError(ErrorCode.CORRUPTION, `snapshot restore: keys out of order at key number ${keyCount}`, { details: { keyNumber: keyCount } });
        }
        previousKey = record.key;
        const stored = decodeStoredValue(record.value);
        const { leaf, hashes } = keyDigestOf(record.key, stored.value, stored);
        if (stored.hashes !== undefined && (Buffer.compare(stored.hashes.full, hashes.full) !== 0 || Buffer.compare(stored.hashes.content, hashes.content) !== 0)) {
          throw new StrataError(ErrorCode.CORRUPTION, `snapshot restore: the hashes stored with key number ${keyCount} are not its value's`, { details: { keyNumber: keyCount } });
        }
        sums.add(leaf, hashes, 1);
        operations.push({ type: 'put', key: storageKey(record.key), value: record.value });
        operations.push({ type: 'put', key: hashIndexKey(leaf, record.key), value: encodeKeyHashes(hashes) });
        operationBytes += 2 * record.key.byteLength + record.value.byteLength + 3 + 2 * 16;
        keyCount += 1;
        if (operationBytes >= RESTORE_BATCH_BYTES_MAX) {
          const full = operations;
          await writing;
          writing = db.batch(full);
          operations = [];
          operationBytes = 0;
        }
      }
    }
    await writing;
    if (keyCount !== content.keyCount) {
      throw new StrataError(ErrorCode.CORRUPTION, `snapshot restore: ${keyCount} keys read, the snapshot says ${content.keyCount}`, {
        details: { keysRead: keyCount, keyCount: content.keyCount },
      });
    }
    const root = sums.root();
    const expected = content.digest;
    if (expected !== undefined && !digestRootsEqual(root, expected)) {
      throw new StrataError(
        ErrorCode.CORRUPTION,
        `snapshot restore: the records' state digest ${formatDigest(root.full)} (${root.keyCount} keys) is not the snapshot's ${formatDigest(expected.full)} (${expected.keyCount} keys)`,
        { details: { digest: formatDigest(root.full), expected: formatDigest(expected.full) } },
      );
    }
    for (const leaf of sums.takeDirty()) operations.push({ type: 'put', key: digestLeafKey(leaf), value: encodeKeyHashes(sums.leaf(leaf)) });
    const meta: MetaState = { appliedIndex: content.appliedIndex, appliedTerm: content.appliedTerm, revision: content.revision };
    operations.push({ type: 'put', key: META_KEY, value: encodeMetaState(meta, root) });
    // The mirror state with the applied state, in the same synced batch.
    const mirror = content.mirror?.slice();
    if (mirror !== undefined && mirror.byteLength > MIRROR_STATE_BYTES_MAX) {
      throw new StrataError(ErrorCode.CORRUPTION, `snapshot restore: the mirror state is ${mirror.byteLength} bytes, more than ${MIRROR_STATE_BYTES_MAX}`, { details: { mirrorBytes: mirror.byteLength } });
    }
    if (mirror !== undefined) operations.push({ type: 'put', key: MIRROR_KEY, value: encodeMirrorState(mirror) });
    await db.batch(operations, SYNC_OPTIONS);
    return new KvStateMachine(db, meta, sums, mirror, options);
  }

  /**
   * range answers a Range from the applied state, at one consistent point: the pending
   * writes over LevelDB, at the in-memory revision (LevelDB's own may lag behind).
   */
  async range(request: RangeRequest): Promise<RangeResponse> {
    if (this.failure !== undefined) throw this.failure;
    if (this.corrupt !== undefined) throw this.corrupt;
    validateKvRequest(request, this.limits);
    // One key is read synchronously (the pending map, then getSync), so the value and the
    // revision describe the same state. A range scan takes its LevelDB snapshot (the
    // iterator's) and its copy of the pending writes in the range in the same tick as this
    // call, before its first await, and the revision now: see ReadView.scan.
    this.scans.opened();
    try {
      return await new ReadView(this.db, this.pending, this.meta.revision).range(request);
    } catch (error) {
      // A LevelDB block that does not read is the state's corruption, as a CRC failure is.
      if (!isStrataError(error) && isReadCorruption(error)) {
        throw new StrataError(ErrorCode.CORRUPTION, `state machine: reading the stored state failed: ${(error as Error).message}`, { cause: error, details: { check: 'read-failed' } });
      }
      throw error;
    } finally {
      this.scans.closed();
    }
  }

  /**
   * close writes everything pending to LevelDB and closes it. If a background write has
   * failed, it closes the database and rejects with that failure (nothing more was written).
   */
  async close(): Promise<void> {
    assert(!this.applying, 'close during apply');
    this.closed = true;
    try {
      // Everything applied, and the synced write a sync() may still be waiting for.
      const target = this.appliedSequence;
      const syncTarget = this.syncWantedSequence;
      if (this.failure === undefined) await this.waitForWrites(() => this.writtenSequence >= target && this.syncedSequence >= syncTarget);
      await this.scans.whenNone();
    } finally {
      await this.db.close();
    }
    if (this.failure !== undefined) throw this.failure;
  }

  // ---- the write-behind ----

  // commit makes an applied batch visible: its writes join the pending layer and the
  // applied state moves, in one synchronous step; then a write starts if none is in flight.
  private commit(view: ApplyView, meta: MetaState): void {
    assert(meta.appliedIndex > this.meta.appliedIndex, 'commit: the applied index must move');
    assert(meta.revision >= this.meta.revision, 'commit: the revision must not go back');
    this.appliedSequence += 1;
    const sequence = this.appliedSequence;
    for (const { levelKey, encoded } of view.indexWrites().values()) {
      this.pendingIndex.push({ sequence, levelKey, encoded });
      this.pendingIndexBytes += levelKey.byteLength + (encoded?.byteLength ?? 0);
    }
    view.digestDelta.applyTo(this.sums);
    for (const [mapKey, { levelKey, stored }] of view.writes()) {
      // Encoding copies the value, so the pending layer holds no view into the entries.
      const encoded = stored === null ? null : encodeStoredValue(userKeyOf(levelKey), stored);
      const kept = stored === null || encoded === null ? null : storedValueOver(stored, encoded);
      this.setPending(mapKey, { levelKey, stored: kept, encoded, sequence });
    }
    if (view.mirrorChanged) {
      this.mirror = view.mirror;
      this.pendingMirror = { sequence, encoded: view.mirror === undefined ? null : encodeMirrorState(view.mirror) };
    }
    this.meta = meta;
    this.startWrite();
  }

  private setPending(mapKey: string, write: PendingWrite): void {
    const previous = this.pending.get(mapKey);
    if (previous !== undefined) this.pendingBytes -= pendingWriteBytes(previous);
    this.pending.set(mapKey, write);
    this.pendingBytes += pendingWriteBytes(write);
  }

  // startWrite writes everything pending (group commit) with the applied state's META, as
  // one LevelDB batch, unless a write is in flight (it starts the next when it lands).
  private startWrite(): void {
    if (this.inFlight !== undefined || this.failure !== undefined) return;
    const syncing = this.syncWantedSequence > this.syncedSequence;
    if (this.writtenSequence === this.appliedSequence && !syncing) return;
    const sequence = this.appliedSequence;
    const operations: LevelOperation[] = [];
    const mapKeys: string[] = [];
    for (const [mapKey, write] of this.pending) {
      assert(write.sequence > this.writtenSequence, 'a pending write is older than the written state');
      assert(write.sequence <= sequence, 'a pending write is newer than the applied state');
      operations.push(write.encoded === null ? { type: 'del', key: write.levelKey } : { type: 'put', key: write.levelKey, value: write.encoded });
      mapKeys.push(mapKey);
    }
    for (const entry of this.pendingIndex) {
      assert(entry.sequence > this.writtenSequence && entry.sequence <= sequence, 'a pending index entry outside the batches being written');
      operations.push(entry.encoded === null ? { type: 'del', key: entry.levelKey } : { type: 'put', key: entry.levelKey, value: entry.encoded });
    }
    // The mirror state goes with the data and the META of the batch that changed it.
    const mirrorWrite = this.pendingMirror;
    if (mirrorWrite !== undefined) {
      assert(mirrorWrite.sequence > this.writtenSequence && mirrorWrite.sequence <= sequence, 'the pending mirror state is outside the batches being written');
      operations.push(mirrorWrite.encoded === null ? { type: 'del', key: MIRROR_KEY } : { type: 'put', key: MIRROR_KEY, value: mirrorWrite.encoded });
    }
    // The digest leaves this batch changed, and the root with the applied state: all absolute
    // values, so whatever batches LevelDB keeps, the stored leaves must sum to the stored root.
    for (const leaf of this.sums.takeDirty()) operations.push({ type: 'put', key: digestLeafKey(leaf), value: encodeKeyHashes(this.sums.leaf(leaf)) });
    operations.push({ type: 'put', key: META_KEY, value: encodeMetaState(this.meta, this.sums.root()) });
    const appliedIndex = this.meta.appliedIndex;
    let written: Promise<void>;
    try {
      written = syncing ? this.db.batch(operations, SYNC_OPTIONS) : this.db.batch(operations);
    } catch (error) {
      written = Promise.reject(error);
    }
    const onBatchWritten = this.options.onBatchWritten;
    const startedMs = onBatchWritten === undefined ? 0 : performance.now();
    this.inFlight = written.then(
      () => {
        onBatchWritten?.(performance.now() - startedMs);
        this.landed(sequence, mapKeys, syncing);
      },
      (error: unknown) => this.fail(error, appliedIndex),
    );
  }

  // landed drops the keys a write carried from the pending layer, unless a later batch
  // wrote them again (they stay for the next write), and starts the next write.
  private landed(sequence: number, mapKeys: readonly string[], synced: boolean): void {
    assert(this.inFlight !== undefined, 'a write landed while none was in flight');
    assert(sequence >= this.writtenSequence, 'writes land in order');
    this.inFlight = undefined;
    this.writtenSequence = sequence;
    if (synced) this.syncedSequence = sequence;
    for (const mapKey of mapKeys) {
      const write = this.pending.get(mapKey);
      assert(write !== undefined, 'a written key left the pending layer before its write landed');
      if (write.sequence > sequence) continue;
      this.pending.delete(mapKey);
      this.pendingBytes -= pendingWriteBytes(write);
    }
    let landedIndex = 0;
    while (landedIndex < this.pendingIndex.length && (this.pendingIndex[landedIndex] as { sequence: number }).sequence <= sequence) {
      const entry = this.pendingIndex[landedIndex] as { levelKey: Uint8Array; encoded: Uint8Array | null };
      this.pendingIndexBytes -= entry.levelKey.byteLength + (entry.encoded?.byteLength ?? 0);
      landedIndex += 1;
    }
    if (landedIndex > 0) this.pendingIndex = this.pendingIndex.slice(landedIndex);
    if (this.pendingMirror !== undefined && this.pendingMirror.sequence <= sequence) this.pendingMirror = undefined;
    assert(this.pending.size > 0 || this.pendingBytes === 0, 'pending bytes without pending keys');
    this.startWrite();
  }

  // fail records a failed write: the applied state is no longer reaching LevelDB, so the
  // state machine refuses every later call and reports the failure as fatal, once.
  private fail(error: unknown, appliedIndex: Index): void {
    this.inFlight = undefined;
    if (this.failure !== undefined) return;
    this.failure = new StrataError(
      ErrorCode.IO_ERROR,
      `state machine: the LevelDB write of the entries applied up to index ${appliedIndex} failed; the state machine refuses further calls`,
      { cause: error, details: { appliedIndex } },
    );
    this.onFatal(this.failure);
  }

  // waitForWrites waits for writes to land until `condition` holds; it rejects with the
  // failure if one fails. The condition must be about the state applied when it was called.
  private async waitForWrites(condition: () => boolean): Promise<void> {
    for (let round = 0; round <= WRITE_WAIT_ROUNDS_MAX; round += 1) {
      if (this.failure !== undefined) throw this.failure;
      if (condition()) return;
      assert(this.inFlight !== undefined, 'waiting for a write while none is in flight');
      await this.inFlight;
    }
    assert(false, `a write condition did not hold after ${WRITE_WAIT_ROUNDS_MAX} writes`);
  }

  private overBound(): boolean {
    return this.pending.size > this.pendingKeysMax || this.pendingBytes + this.pendingIndexBytes > this.pendingBytesMax;
  }
}

// ScanCounter counts the reads that hold an iterator, and wakes close() when none is left.
class ScanCounter {
  private open = 0;
  private readonly waiters: (() => void)[] = [];

  opened(): void {
    this.open += 1;
  }

  closed(): void {
    assert(this.open > 0, 'a scan closed that was never opened');
    this.open -= 1;
    if (this.open === 0) for (const wake of this.waiters.splice(0)) wake();
  }

  whenNone(): Promise<void> {
    if (this.open === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

// mergedRecords yields every pair of the 'k' area in key order, in batches: the LevelDB
// snapshot of `iterator` under the copied pending layer (a pending deletion hides the key).
async function* mergedRecords(
  iterator: ReturnType<KvLevel['iterator']>,
  pending: readonly OverlayPair[],
  release: () => Promise<void>,
): AsyncGenerator<readonly KvSnapshotRecord[]> {
  let next = 0;
  try {
    for (;;) {
      // The database was opened with 'view' encodings: keys and values are Uint8Arrays.
      const entries = (await iterator.nextv(SNAPSHOT_READ_BATCH_KEYS)) as [Uint8Array, Uint8Array][];
      const batch: KvSnapshotRecord[] = [];
      const last = entries.length === 0 ? undefined : (entries[entries.length - 1] as [Uint8Array, Uint8Array])[0];
      for (const [levelKey, value] of entries) {
        // Pending pairs before this key come first; one with the same key replaces it.
        let replaced = false;
        while (next < pending.length) {
          const candidate = pending[next] as OverlayPair;
          const order = compareBytes(candidate.levelKey, levelKey);
          if (order > 0) break;
          next += 1;
          if (candidate.stored !== null) batch.push({ key: userKeyOf(candidate.levelKey), value: encodeStoredValue(userKeyOf(candidate.levelKey), candidate.stored) });
          if (order === 0) replaced = true;
        }
        if (!replaced) batch.push({ key: userKeyOf(levelKey), value });
      }
      if (last === undefined) {
        // LevelDB is done: the pending pairs after its last key remain.
        while (next < pending.length) {
          const candidate = pending[next] as OverlayPair;
          next += 1;
          if (candidate.stored !== null) batch.push({ key: userKeyOf(candidate.levelKey), value: encodeStoredValue(userKeyOf(candidate.levelKey), candidate.stored) });
        }
      }
      if (batch.length > 0) yield batch;
      if (last === undefined) return;
    }
  } finally {
    await release();
  }
}

// ZERO_HASHES stand in for a key's hashes when the digest is not kept (unsafeSkipDigest).
const ZERO_HASHES: KeyHashes = Object.freeze({ full: new Uint8Array(16), content: new Uint8Array(16) });

// isReadCorruption tells a failed read of the stored state (CORRUPTION from decoding, or a
// LevelDB read error) from other failures (assertions stay fatal).
function isReadCorruption(error: unknown): boolean {
  if (isStrataError(error)) return error.code === ErrorCode.CORRUPTION;
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'LEVEL_CORRUPTION' || code === 'LEVEL_IO_ERROR';
}

// checkedAgainstDigest passes a snapshot's records through and fails with CORRUPTION at the
// end when they do not sum to the digest the view captured: a snapshot is never built from
// data that is not what was applied.
async function* checkedAgainstDigest(
  records: AsyncIterable<readonly KvSnapshotRecord[]>,
  expected: DigestRoot,
  what: string,
  recompute: boolean,
): AsyncGenerator<readonly KvSnapshotRecord[]> {
  const sums = new DigestSums();
  for await (const batch of records) {
    for (const record of batch) {
      // Decoding checks each value's CRC32c; the hashes stored with it are summed (a snapshot
      // being built), or computed again from the value (the scrubber).
      const stored = decodeStoredValue(record.value);
      if (recompute || stored.hashes === undefined) {
        const { leaf, hashes } = keyDigestOf(record.key, stored.value, stored);
        sums.add(leaf, hashes, 1);
      } else {
        sums.add(leafOf(record.key), stored.hashes, 1);
      }
    }
    yield batch;
  }
  const root = sums.root();
  if (!digestRootsEqual(root, expected)) {
    throw new StrataError(
      ErrorCode.CORRUPTION,
      `${what}: the stored keys sum to digest ${formatDigest(root.full)} (${root.keyCount} keys), the applied state's is ${formatDigest(expected.full)} (${expected.keyCount} keys): this member's data is not what it applied`,
      { details: { digest: formatDigest(root.full), expected: formatDigest(expected.full), keys: root.keyCount, expectedKeys: expected.keyCount } },
    );
  }
}

function pendingWriteBytes(write: PendingWrite): number {
  return write.levelKey.byteLength + (write.encoded?.byteLength ?? 0);
}

// mapKeyOf is the key of a LevelDB key in the pending and overlay maps (a string, so that
// equal bytes find the same entry), without copying the bytes.
function mapKeyOf(levelKey: Uint8Array): string {
  return Buffer.from(levelKey.buffer, levelKey.byteOffset, levelKey.byteLength).toString('latin1');
}

// overlayIn returns an overlay's pairs in a range, in key order.
function overlayIn<Pair extends { readonly levelKey: Uint8Array }>(overlay: Iterable<Pair>, range: LevelRange): Pair[] {
  const pairs: Pair[] = [];
  for (const pair of overlay) if (inLevelRange(pair.levelKey, range)) pairs.push(pair);
  pairs.sort((a, b) => compareBytes(a.levelKey, b.levelKey));
  return pairs;
}

// scanMerged visits, in key order, the pairs of a sorted overlay over those of the layer
// below it (`scanBelow`): an overlay pair replaces the pair below with the same key, and a
// deletion (stored null) hides it. It stops when `visit` returns false.
async function scanMerged(overlay: readonly OverlayPair[], scanBelow: (visit: Visitor) => Promise<void>, visit: Visitor): Promise<void> {
  let next = 0;
  let going = true;
  // emitOverlayBefore visits the overlay pairs up to `key` (all that are left when it is
  // undefined) and tells whether the pair below with `key` still counts.
  const emitOverlayBefore = (key: Uint8Array | undefined): boolean => {
    while (going && next < overlay.length) {
      const candidate = overlay[next] as OverlayPair;
      const candidateKey = userKeyOf(candidate.levelKey);
      const order = key === undefined ? -1 : compareBytes(candidateKey, key);
      if (order > 0) break;
      next += 1;
      if (candidate.stored !== null) going = visit(candidateKey, candidate.stored);
      if (order === 0) return false; // the overlay replaces the pair below
    }
    return true;
  };
  await scanBelow((key, stored) => {
    if (emitOverlayBefore(key) && going) going = visit(key, stored);
    return going;
  });
  emitOverlayBefore(undefined);
}

// ReadView reads the applied state at one revision: the pending writes over the database.
class ReadView {
  protected readonly db: KvLevel;
  // The pending layer, live: it changes as writes land (which moves keys into LevelDB,
  // leaving what a read sees unchanged) and as batches are committed (not during an apply).
  private readonly pending: ReadonlyMap<string, PendingWrite>;
  revision: number;

  constructor(db: KvLevel, pending: ReadonlyMap<string, PendingWrite>, revision: number) {
    this.db = db;
    this.pending = pending;
    this.revision = revision;
  }

  protected getStored(key: Uint8Array): StoredValue | undefined {
    const levelKey = storageKey(key);
    return this.getStoredAt(levelKey, mapKeyOf(levelKey));
  }

  // getStoredAt reads one key synchronously: the pending layer, then LevelDB. A key the
  // pending layer does not have is in LevelDB with its latest value, and a write that lands
  // meanwhile is in both until its keys leave the pending layer, so the two reads agree.
  protected getStoredAt(levelKey: Uint8Array, mapKey: string): StoredValue | undefined {
    const pending = this.pending.get(mapKey);
    if (pending !== undefined) return pending.stored ?? undefined;
    const bytes = this.db.getSync(levelKey);
    return bytes === undefined ? undefined : decodeStoredValue(bytes);
  }

  // scan visits the pairs of a range in key order until `visit` returns false. While
  // `wantsValue()` is false a LevelDB pair is visited with COUNTED_ONLY instead of its decoded
  // value (Range's count past its limit needs the keys only).
  protected async scan(range: LevelRange, visit: Visitor, wantsValue: () => boolean = ALWAYS): Promise<void> {
    // The iterator reads from a LevelDB snapshot it takes when created (implicit snapshots,
    // checked at open), and the pending writes in the range are copied in the same tick: a
    // write that lands during the scan removes its keys from the pending layer, and the
    // snapshot does not have them.
    const iterator = this.db.iterator({ gte: range.gte, lt: range.lt });
    const pending = overlayIn(this.pending.values(), range);
    try {
      await scanMerged(
        pending,
        async (visitBelow) => {
          // Batches (nextv) rather than one awaited step per pair: a Range that counts 100,000
          // keys past its limit took 0.7 s in per-pair steps. They start small, so a short read
          // does not fetch far past what it needs, and double up to SCAN_READ_BATCH_KEYS_MAX.
          for (let batchKeys = SCAN_READ_BATCH_KEYS_MIN; ; batchKeys = Math.min(SCAN_READ_BATCH_KEYS_MAX, batchKeys * 2)) {
            const entries = (await iterator.nextv(batchKeys)) as [Uint8Array, Uint8Array][];
            if (entries.length === 0) return;
            for (const [key, value] of entries) {
              if (!visitBelow(userKeyOf(key), wantsValue() ? decodeStoredValue(value) : COUNTED_ONLY)) return;
            }
          }
        },
        visit,
      );
    } finally {
      await iterator.close();
    }
  }

  // pairs returns the pairs of (key, rangeEnd): one key, or a range in order.
  protected async pairs(key: Uint8Array, rangeEnd: Uint8Array | undefined, visit: Visitor, wantsValue: () => boolean = ALWAYS): Promise<void> {
    const range = levelRange(key, rangeEnd);
    if (range === undefined) {
      const stored = this.getStored(key);
      if (stored !== undefined) visit(key, stored);
      return;
    }
    await this.scan(range, visit, wantsValue);
  }

  async range(request: RangeRequest): Promise<RangeResponse> {
    checkReadRevision(request, this.revision);
    const limit = Math.max(0, request.limit ?? 0); // etcd: a limit <= 0 is no limit
    const kvs: KeyValue[] = [];
    let count = 0;
    // Past the limit a key is only counted: its value is neither decoded nor checked (a page
    // of 1,000 keys from the start of a 100,000-key range decoded them all before).
    const wantsValue = (): boolean => request.countOnly !== true && (limit === 0 || kvs.length < limit);
    await this.pairs(
      request.key,
      request.rangeEnd,
      (key, stored) => {
        count += 1;
        if (wantsValue()) {
          assert(stored !== COUNTED_ONLY, 'a pair kept by a Range was decoded');
          kvs.push(toKeyValue(key, stored, request.keysOnly === true));
        }
        return true;
      },
      wantsValue,
    );
    return { type: 'range', revision: this.revision, kvs, more: limit > 0 && count > limit, count };
  }
}

// applyRequest applies one command's request in a batch: validated with the store's limits,
// then executed. It is the one path for an entry's command and for each command a mirrorReplay
// carries, so that a replay computes exactly what the source computed.
async function applyRequest(view: ApplyView, request: KvRequest): Promise<{ response: KvResponse } | { error: StrataError }> {
  try {
    validateKvRequest(request, view.limits);
    return { response: await view.execute(request) };
  } catch (error) {
    // Refusals are deterministic (they depend only on the request and the applied state),
    // so every replica refuses the same entries and stays identical.
    if (isStrataError(error) && error.code !== ErrorCode.CORRUPTION) return { error };
    throw error;
  }
}

// ApplyView is a ReadView with the writes of the batch being applied on top: requests later
// in the batch (and later operations of a Txn) read what earlier ones wrote.
class ApplyView extends ReadView {
  // LevelDB key (latin1) -> the batch's write of a user key: a value, or null for deleted.
  private readonly overlay = new Map<string, OverlayPair>();
  // The batch's changes of the digest, and of its index ('h' LevelDB key -> hashes, or null).
  readonly digestDelta = new DigestDelta();
  private readonly keepDigest: boolean;
  private readonly indexOverlay = new Map<string, { levelKey: Uint8Array; encoded: Uint8Array | null }>();
  // Writes in the request being executed; the revision moves once per request that wrote.
  private changes = 0;
  // The mirror state as the batch leaves it, and whether a mirror request of the batch set it.
  mirror: Uint8Array | undefined;
  mirrorChanged = false;
  readonly limits: KvLimits;
  // The index of the entry being applied: a mirror answer carries it.
  entryIndex: Index = 0;
  // While set (recordChanges), the changes of the command being applied, by key (latin1).
  changeLog: Map<string, KvChange> | undefined;
  // Set while a mirrorReplay applies the source's commands: a mirror does not refuse those.
  // Invariant: false whenever no mirrorReplay is being executed.
  private replaying = false;

  constructor(db: KvLevel, pending: ReadonlyMap<string, PendingWrite>, revision: number, options: { readonly keepDigest: boolean; readonly mirror: Uint8Array | undefined; readonly limits: KvLimits }) {
    super(db, pending, revision);
    this.keepDigest = options.keepDigest;
    this.mirror = options.mirror;
    this.limits = options.limits;
  }

  // writes are the batch's writes, for commit().
  writes(): ReadonlyMap<string, OverlayPair> {
    return this.overlay;
  }

  // indexWrites are the batch's writes of the digest's index, for commit().
  indexWrites(): ReadonlyMap<string, { levelKey: Uint8Array; encoded: Uint8Array | null }> {
    return this.indexOverlay;
  }

  async execute(request: KvRequest): Promise<KvResponse> {
    this.changes = 0;
    switch (request.type) {
      case 'put': {
        this.refuseWhileMirror(request.type);
        const response = this.put(request);
        return { ...response, revision: this.finishRequest() };
      }
      case 'range':
        return this.range(request);
      case 'deleteRange': {
        this.refuseWhileMirror(request.type);
        const response = await this.deleteRange(request);
        return { ...response, revision: this.finishRequest() };
      }
      case 'txn':
        // Whichever branch the compares would pick: a Txn that could write is refused.
        if ([...request.success, ...request.failure].some((operation) => operation.type !== 'range')) this.refuseWhileMirror(request.type);
        return this.txn(request);
      case 'mirrorBegin':
      case 'mirrorApply':
      case 'mirrorEnd':
      case 'mirrorReplay':
        return { ...(await this.mirrorRequest(request)), index: this.entryIndex };
      default:
        return assertNever(request, 'KV request');
    }
  }

  // refuseWhileMirror refuses a client write while the store is a mirror (nothing is done),
  // unless it is a source's command that a mirrorReplay applies.
  private refuseWhileMirror(type: KvRequest['type']): void {
    if (this.mirror === undefined || this.replaying) return;
    throw new StrataError(ErrorCode.MIRROR_READ_ONLY, 'the cluster is a read-only mirror of another (a cross-cluster copy runs): writes go to the source until it is switched over', {
      details: { request: type },
    });
  }

  // mirrorRequest applies the copier's request: every check first, then the writes, so a
  // refusal changes nothing.
  private async mirrorRequest(request: MirrorRequest): Promise<MirrorResponse> {
    switch (request.type) {
      case 'mirrorBegin': {
        if (this.mirror !== undefined) throw mirrorConflict('mirrorBegin: the store is a mirror already', undefined, this.mirror);
        if (request.requireRevision !== undefined && request.requireRevision !== this.revision) {
          throw new StrataError(ErrorCode.MIRROR_CONFLICT, `mirrorBegin: the revision is ${this.revision}, the request requires ${request.requireRevision}`, {
            details: { revision: this.revision, requireRevision: request.requireRevision },
          });
        }
        if (request.requireEmpty) {
          const holdsKeys = await this.holdsAnyKey();
          if (holdsKeys || this.revision !== INITIAL_REVISION) {
            throw new StrataError(ErrorCode.MIRROR_CONFLICT, `mirrorBegin: the store is not empty (revision ${this.revision}${holdsKeys ? ', keys present' : ''})`, {
              details: { revision: this.revision, holdsKeys },
            });
          }
        }
        this.setMirror(request.state);
        return { type: request.type, revision: this.revision, state: request.state.slice() };
      }
      case 'mirrorApply': {
        this.checkExpected(request.type, request.expectState);
        // MIRROR_CONFLICT rather than INVALID_ARGUMENT: the request alone is well formed (it
        // passed validation); it is the store, ahead of the copier, that refuses it.
        if (request.revision < this.revision) {
          throw new StrataError(ErrorCode.MIRROR_CONFLICT, `mirrorApply: the revision would move back from ${this.revision} to ${request.revision}`, {
            details: { revision: this.revision, requested: request.revision },
          });
        }
        for (const key of request.deletes) {
          const levelKey = storageKey(key);
          const previous = this.getStoredAt(levelKey, mapKeyOf(levelKey));
          if (previous !== undefined) this.write(key, levelKey, previous, null);
        }
        for (const put of request.puts) {
          const levelKey = storageKey(put.key);
          const previous = this.getStoredAt(levelKey, mapKeyOf(levelKey));
          this.write(put.key, levelKey, previous, { createRevision: put.createRevision, modRevision: put.modRevision, version: put.version, lease: put.lease, value: put.value });
        }
        // The revision is the source's, not one per write.
        this.changes = 0;
        this.revision = request.revision;
        this.setMirror(request.state);
        return { type: request.type, revision: this.revision, state: request.state.slice() };
      }
      case 'mirrorEnd':
        this.checkExpected(request.type, request.expectState);
        this.mirror = undefined;
        this.mirrorChanged = true;
        return { type: request.type, revision: this.revision, state: undefined };
      case 'mirrorReplay': {
        this.checkExpected(request.type, request.expectState);
        // Validated already (applyRequest): every command decodes and none is a mirror request.
        const requests = replayedRequests(request);
        assert(!this.replaying, 'a mirrorReplay inside a mirrorReplay');
        this.replaying = true;
        try {
          // Each as the source applied it: its answer or refusal is dropped, its writes stay,
          // and the revision moves once per command that wrote (finishRequest), not here.
          for (const replayed of requests) await applyRequest(this, replayed);
        } finally {
          this.replaying = false;
        }
        this.changes = 0;
        this.setMirror(request.state);
        return { type: request.type, revision: this.revision, state: request.state.slice() };
      }
      default:
        return assertNever(request, 'mirror request');
    }
  }

  // checkExpected is the compare-and-set of mirrorApply and mirrorEnd.
  private checkExpected(type: MirrorRequest['type'], expected: Uint8Array): void {
    if (this.mirror !== undefined && compareBytes(this.mirror, expected) === 0) return;
    throw mirrorConflict(this.mirror === undefined ? `${type}: the store is not a mirror` : `${type}: the mirror state differs`, expected, this.mirror);
  }

  private setMirror(state: Uint8Array): void {
    // A copy: the request's bytes may view an entry's data.
    this.mirror = state.slice();
    this.mirrorChanged = true;
  }

  // holdsAnyKey tells whether any user key exists in the batch's view (a scan that stops at the first).
  private async holdsAnyKey(): Promise<boolean> {
    let found = false;
    await this.scan({ gte: storageKey(new Uint8Array(0)), lt: KEY_AREA_END }, () => {
      found = true;
      return false;
    });
    return found;
  }

  // finishRequest moves the revision if the request wrote anything, and returns it.
  private finishRequest(): number {
    if (this.changes > 0) this.revision += 1;
    this.changes = 0;
    return this.revision;
  }

  // The revision that writes of the current request carry.
  private writeRevision(): number {
    return this.revision + 1;
  }

  protected override getStoredAt(levelKey: Uint8Array, mapKey: string): StoredValue | undefined {
    const written = this.overlay.get(mapKey);
    if (written !== undefined) return written.stored ?? undefined;
    return super.getStoredAt(levelKey, mapKey);
  }

  protected override async scan(range: LevelRange, visit: Visitor, wantsValue: () => boolean = ALWAYS): Promise<void> {
    // The batch's writes over the applied state (the pending writes over the database).
    await scanMerged(overlayIn(this.overlay.values(), range), (visitBelow) => super.scan(range, visitBelow, wantsValue), visit);
  }

  // write records the batch's new state of a user key (null: deleted), whose state before
  // was `previous`, and moves the digest: the old hashes out, the new ones in.
  private write(key: Uint8Array, levelKey: Uint8Array, previous: StoredValue | undefined, stored: StoredValue | null): void {
    this.overlay.set(mapKeyOf(levelKey), { levelKey, stored });
    this.changes += 1;
    if (this.changeLog !== undefined) {
      const put: MirrorPut | undefined =
        stored === null ? undefined : { key: key.slice(), value: stored.value.slice(), createRevision: stored.createRevision, modRevision: stored.modRevision, version: stored.version, lease: stored.lease };
      // A later write of the same key in one command replaces the earlier one, keeping its place.
      this.changeLog.set(mapKeyOf(levelKey), { key: key.slice(), put });
    }
    if (!this.keepDigest) {
      // Benchmarks only: no hashing at all (the stored value carries zero hashes).
      if (stored !== null) this.overlay.set(mapKeyOf(levelKey), { levelKey, stored: { ...stored, hashes: ZERO_HASHES } });
      return;
    }
    let leaf = -1;
    let hashes: KeyHashes | undefined;
    if (stored !== null) {
      const now = keyDigestOf(key, stored.value, stored);
      leaf = now.leaf;
      hashes = now.hashes;
      // The stored value carries them (encodeStoredValue), so an overwrite takes them out as they are.
      this.overlay.set(mapKeyOf(levelKey), { levelKey, stored: { ...stored, hashes } });
      this.digestDelta.add(leaf, hashes, 1);
    }
    if (previous !== undefined) {
      if (leaf < 0) leaf = leafOf(key);
      this.digestDelta.add(leaf, previous.hashes ?? keyHashesOf(key, previous.value, previous), -1);
    }
    assert(leaf >= 0, 'a write has a state before or after it');
    const indexKey = hashIndexKey(leaf, key);
    this.indexOverlay.set(mapKeyOf(indexKey), { levelKey: indexKey, encoded: hashes === undefined ? null : encodeKeyHashes(hashes) });
  }

  private put(request: PutRequest): Omit<PutResponse, 'revision'> {
    const levelKey = storageKey(request.key);
    const previous = this.getStoredAt(levelKey, mapKeyOf(levelKey));
    const revision = this.writeRevision();
    this.write(request.key, levelKey, previous, {
      createRevision: previous?.createRevision ?? revision,
      modRevision: revision,
      version: (previous?.version ?? 0) + 1,
      // A client Put names no lease (the server refuses one): as in etcd, it detaches any.
      lease: 0n,
      value: request.value,
    });
    return request.prevKv === true && previous !== undefined ? { type: 'put', prevKv: toKeyValue(request.key, previous, false) } : { type: 'put' };
  }

  private async deleteRange(request: DeleteRangeRequest): Promise<Omit<DeleteRangeResponse, 'revision'>> {
    const doomed: { key: Uint8Array; stored: StoredValue }[] = [];
    await this.pairs(request.key, request.rangeEnd, (key, stored) => {
      doomed.push({ key: key.slice(), stored });
      return true;
    });
    for (const { key, stored } of doomed) this.write(key, storageKey(key), stored, null);
    const prevKvs = request.prevKv === true ? doomed.map(({ key, stored }) => toKeyValue(key, stored, false)) : [];
    return { type: 'deleteRange', deleted: doomed.length, prevKvs };
  }

  private async txn(request: TxnRequest): Promise<TxnResponse> {
    let succeeded = true;
    for (const compare of request.compare) {
      if (!(await this.holds(compare))) {
        succeeded = false;
        break;
      }
    }
    const branch = succeeded ? request.success : request.failure;
    // Refuse before writing anything, as etcd checks a Txn's reads before applying it.
    for (const operation of branch) if (operation.type === 'range') checkReadRevision(operation, this.revision);
    const responses: (Omit<PutResponse, 'revision'> | Omit<DeleteRangeResponse, 'revision'> | RangeResponse)[] = [];
    for (const operation of branch) {
      switch (operation.type) {
        case 'put':
          responses.push(this.put(operation));
          break;
        case 'deleteRange':
          responses.push(await this.deleteRange(operation));
          break;
        case 'range':
          // A read inside a Txn sees the Txn's earlier writes (its revision was checked above).
          responses.push(await this.range({ ...operation, revision: 0 }));
          break;
        default:
          assertNever(operation, 'Txn operation');
      }
    }
    const revision = this.finishRequest();
    return { type: 'txn', revision, succeeded, responses: responses.map((response) => ({ ...response, revision }) as TxnResponse['responses'][number]) };
  }

  private async holds(compare: Compare): Promise<boolean> {
    const found: StoredValue[] = [];
    await this.pairs(compare.key, compare.rangeEnd, (_key, stored) => {
      found.push(stored);
      return true;
    });
    if (found.length === 0) {
      // etcd: a value compare on a missing key always fails; other targets compare with 0.
      if (compare.target === 'value') return false;
      return compareHolds(compare, undefined);
    }
    return found.every((stored) => compareHolds(compare, stored));
  }
}

function compareHolds(compare: Compare, stored: StoredValue | undefined): boolean {
  let order: number;
  if (compare.target === 'value') {
    order = compareBytes(stored?.value ?? new Uint8Array(0), compare.value);
  } else if (compare.target === 'lease') {
    // Both bigints: exact over the whole int64 range.
    const lease = stored?.lease ?? 0n;
    order = lease < compare.lease ? -1 : lease > compare.lease ? 1 : 0;
  } else {
    const field =
      compare.target === 'version'
        ? (stored?.version ?? 0)
        : compare.target === 'createRevision'
          ? (stored?.createRevision ?? 0)
          : (stored?.modRevision ?? 0);
    order = Math.sign(field - compare.number);
  }
  switch (compare.result) {
    case 'equal':
      return order === 0;
    case 'notEqual':
      return order !== 0;
    case 'less':
      return order < 0;
    case 'greater':
      return order > 0;
    default:
      return assertNever(compare.result, 'compare result');
  }
}

// mirrorConflict is MIRROR_CONFLICT saying what the request expected and what the store holds,
// by length and a SHA-256 prefix, never the whole states (they travel in logs and responses).
function mirrorConflict(what: string, expected: Uint8Array | undefined, found: Uint8Array | undefined): StrataError {
  const expectedText = describeMirrorState(expected);
  const foundText = describeMirrorState(found);
  return new StrataError(ErrorCode.MIRROR_CONFLICT, `${what} (expected ${expected === undefined ? 'none' : expectedText}, found ${foundText})`, {
    details: { expected: expected === undefined ? null : expectedText, found: found === undefined ? null : foundText },
  });
}

function describeMirrorState(state: Uint8Array | undefined): string {
  if (state === undefined) return 'no mirror state';
  return `${state.byteLength} bytes, SHA-256 ${oneShotHash('sha256', state, 'hex').slice(0, 16)}`;
}

// checkReadRevision refuses reads at another revision: no history is kept yet, so every
// older revision counts as compacted (etcd: ErrCompacted) and a later one is in the future.
function checkReadRevision(request: RangeRequest, current: number): void {
  const revision = request.revision ?? 0;
  if (revision <= 0 || revision === current) return;
  if (revision > current) {
    throw new StrataError(ErrorCode.FUTURE_REVISION, 'mvcc: required revision is a future revision', { details: { revision, current } });
  }
  throw new StrataError(ErrorCode.COMPACTED, 'mvcc: required revision has been compacted', { details: { revision, current } });
}

function toKeyValue(key: Uint8Array, stored: StoredValue, keysOnly: boolean): KeyValue {
  return {
    key: key.slice(),
    value: keysOnly ? new Uint8Array(0) : stored.value.slice(),
    createRevision: stored.createRevision,
    modRevision: stored.modRevision,
    version: stored.version,
    lease: stored.lease,
  };
}

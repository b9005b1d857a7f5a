// The KV state machine: etcd's KV semantics (global revision, per-key create/mod revision
// and version, Put/Range/DeleteRange/Txn) on LevelDB (classic-level), or on memory-level
// for tests and the simulator; both speak the same abstract-level API.
//
// A batch of committed entries is applied as one atomic LevelDB batch together with the
// applied index and the revision, so after a crash the state is exactly that of some
// applied index, and entries at or below it are skipped when the driver replays the log.
// The batch is written without sync: the Raft log is the durable record, and anything the
// state machine loses in a power cut is re-applied from it. Reads see only applied state.

import type { AbstractLevel } from 'abstract-level';
import type { Entry, Index } from '../raft/types.ts';
import { EntryType } from '../raft/types.ts';
import { assert, assertNever } from '../util/assert.ts';
import { ErrorCode, StrataError, isStrataError } from '../util/errors.ts';
import { decodeKvCommand, isKvCommand } from './kv-command-codec.ts';
import type { LevelRange, MetaState, StoredValue } from './kv-keys.ts';
import {
  META_KEY,
  compareBytes,
  decodeMetaState,
  decodeStoredValue,
  encodeMetaState,
  encodeStoredValue,
  inLevelRange,
  levelRange,
  storageKey,
  userKeyOf,
} from './kv-keys.ts';
import type {
  Compare,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KeyValue,
  KvLimits,
  KvRequest,
  KvResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from './kv-types.ts';
import { DEFAULT_KV_LIMITS } from './kv-types.ts';
import { validateKvRequest } from './kv-validation.ts';

/**
 * KvLevel is a LevelDB database (ClassicLevel) or an in-memory one (MemoryLevel), opened
 * with keyEncoding and valueEncoding 'view'.
 */
export type KvLevel = AbstractLevel<string | Buffer | Uint8Array, Uint8Array, Uint8Array>;

/** INITIAL_REVISION is the revision of an empty store; the first write makes it 2, as in etcd. */
export const INITIAL_REVISION = 1;
/** APPLY_ENTRIES_MAX bounds the entries one apply() call takes (the driver applies per Ready). */
export const APPLY_ENTRIES_MAX = 65_536;

/** ApplyResult is the outcome of one applied entry that carried a KV command. */
export interface ApplyResult {
  readonly index: Index;
  /** The command id its proposer waits on. */
  readonly id: number;
  readonly response?: KvResponse;
  /** A request refused when applied (limits, future or compacted revision); nothing changed. */
  readonly error?: StrataError;
}

/** KvStateMachineOptions configures a KvStateMachine. */
export interface KvStateMachineOptions {
  readonly limits?: KvLimits;
}

/** KvStateMachine applies committed KV commands to a LevelDB database and serves reads. */
export class KvStateMachine {
  private readonly db: KvLevel;
  private readonly limits: KvLimits;
  private meta: MetaState;
  private applying = false;

  private constructor(db: KvLevel, limits: KvLimits, meta: MetaState) {
    this.db = db;
    this.limits = limits;
    this.meta = meta;
  }

  /** open reads the applied state of `db` (opening it if needed); an empty db starts at revision 1. */
  static async open(db: KvLevel, options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
    if (db.status !== 'open') await db.open();
    const stored = await db.get(META_KEY);
    const meta = stored === undefined ? { appliedIndex: 0, appliedTerm: 0, revision: INITIAL_REVISION } : decodeMetaState(stored);
    return new KvStateMachine(db, options.limits ?? DEFAULT_KV_LIMITS, meta);
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
   * apply applies committed entries in order, as one atomic batch with the new applied index
   * and revision, and returns the results of the entries that carried commands. Entries at or
   * below the applied index are skipped (replay after a crash). Empty entries (a new leader's
   * no-op) and configuration changes only advance the applied index.
   */
  async apply(entries: readonly Entry[]): Promise<ApplyResult[]> {
    assert(!this.applying, 'apply calls must not overlap');
    assert(entries.length <= APPLY_ENTRIES_MAX, `apply of ${entries.length} entries is over ${APPLY_ENTRIES_MAX}`);
    this.applying = true;
    try {
      const view = new ApplyView(this.db, this.meta.revision);
      const results: ApplyResult[] = [];
      let appliedIndex = this.meta.appliedIndex;
      let appliedTerm = this.meta.appliedTerm;
      for (const entry of entries) {
        if (entry.index <= appliedIndex) continue;
        assert(entry.index === appliedIndex + 1, `apply: entry ${entry.index} does not follow applied index ${appliedIndex}`);
        if (entry.type === EntryType.Normal && entry.data.byteLength > 0 && isKvCommand(entry.data)) {
          const command = decodeKvCommand(entry.data);
          results.push({ index: entry.index, id: command.id, ...(await this.applyCommand(view, command.request)) });
        }
        appliedIndex = entry.index;
        appliedTerm = entry.term;
      }
      if (appliedIndex === this.meta.appliedIndex) return results;
      const meta: MetaState = { appliedIndex, appliedTerm, revision: view.revision };
      await this.db.batch([...view.operations(), { type: 'put', key: META_KEY, value: encodeMetaState(meta) }]);
      this.meta = meta;
      return results;
    } finally {
      this.applying = false;
    }
  }

  private async applyCommand(view: ApplyView, request: KvRequest): Promise<{ response: KvResponse } | { error: StrataError }> {
    try {
      validateKvRequest(request, this.limits);
      return { response: await view.execute(request) };
    } catch (error) {
      // Refusals are deterministic (they depend only on the request and the applied state),
      // so every replica refuses the same entries and stays identical.
      if (isStrataError(error) && error.code !== ErrorCode.CORRUPTION) return { error };
      throw error;
    }
  }

  /**
   * sync makes everything applied so far durable (apply() writes without sync). Call it
   * before compacting the Raft log up to the applied index: after a power cut the state
   * machine restarts from its durable applied index and needs the log entries after it.
   */
  async sync(): Promise<void> {
    assert(!this.applying, 'sync during apply');
    // `sync` is classic-level's write option (LevelDB's WriteOptions.sync); memory-level ignores it.
    const options = { sync: true } as Parameters<KvLevel['put']>[2];
    await this.db.put(META_KEY, encodeMetaState(this.meta), options);
  }

  /** range answers a Range from the applied state, at one consistent point. */
  async range(request: RangeRequest): Promise<RangeResponse> {
    validateKvRequest(request, this.limits);
    if (!this.applying && (request.rangeEnd === undefined || request.rangeEnd.byteLength === 0)) {
      // One key, read synchronously (getSync) while no batch is being written: the value and
      // the in-memory revision describe the same state, so no LevelDB snapshot is needed.
      return new ReadView(this.db, this.meta.revision, undefined).range(request);
    }
    const snapshot = this.db.snapshot();
    try {
      const stored = await this.db.get(META_KEY, { snapshot });
      const revision = stored === undefined ? INITIAL_REVISION : decodeMetaState(stored).revision;
      return await new ReadView(this.db, revision, snapshot).range(request);
    } finally {
      await snapshot.close();
    }
  }

  /** close closes the database. */
  async close(): Promise<void> {
    await this.db.close();
  }
}

type LevelSnapshot = ReturnType<KvLevel['snapshot']>;

// ReadView reads the database at one revision (through a snapshot when given).
class ReadView {
  protected readonly db: KvLevel;
  protected readonly snapshot: LevelSnapshot | undefined;
  revision: number;

  constructor(db: KvLevel, revision: number, snapshot: LevelSnapshot | undefined) {
    this.db = db;
    this.revision = revision;
    this.snapshot = snapshot;
  }

  protected getStored(key: Uint8Array): StoredValue | undefined {
    const bytes = this.snapshot === undefined ? this.db.getSync(storageKey(key)) : this.db.getSync(storageKey(key), { snapshot: this.snapshot });
    return bytes === undefined ? undefined : decodeStoredValue(bytes);
  }

  // scan visits the pairs of a range in key order until `visit` returns false.
  protected async scan(range: LevelRange, visit: (key: Uint8Array, stored: StoredValue) => boolean): Promise<void> {
    const options = this.snapshot === undefined ? { gte: range.gte, lt: range.lt } : { gte: range.gte, lt: range.lt, snapshot: this.snapshot };
    for await (const [key, value] of this.db.iterator(options)) {
      if (!visit(userKeyOf(key), decodeStoredValue(value))) break;
    }
  }

  // pairs returns the pairs of (key, rangeEnd): one key, or a range in order.
  protected async pairs(key: Uint8Array, rangeEnd: Uint8Array | undefined, visit: (key: Uint8Array, stored: StoredValue) => boolean): Promise<void> {
    const range = levelRange(key, rangeEnd);
    if (range === undefined) {
      const stored = this.getStored(key);
      if (stored !== undefined) visit(key, stored);
      return;
    }
    await this.scan(range, visit);
  }

  async range(request: RangeRequest): Promise<RangeResponse> {
    checkReadRevision(request, this.revision);
    const limit = Math.max(0, request.limit ?? 0); // etcd: a limit <= 0 is no limit
    const kvs: KeyValue[] = [];
    let count = 0;
    await this.pairs(request.key, request.rangeEnd, (key, stored) => {
      count += 1;
      if (request.countOnly !== true && (limit === 0 || kvs.length < limit)) kvs.push(toKeyValue(key, stored, request.keysOnly === true));
      return true;
    });
    return { type: 'range', revision: this.revision, kvs, more: limit > 0 && count > limit, count };
  }
}

// ApplyView is a ReadView with the writes of the batch being applied on top: requests later
// in the batch (and later operations of a Txn) read what earlier ones wrote.
class ApplyView extends ReadView {
  // LevelDB key (latin1) -> the pending state of a user key: a value, or null for deleted.
  private readonly overlay = new Map<string, { readonly key: Uint8Array; readonly stored: StoredValue | null }>();
  // Writes in the request being executed; the revision moves once per request that wrote.
  private changes = 0;

  constructor(db: KvLevel, revision: number) {
    super(db, revision, undefined);
  }

  operations(): ({ type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array })[] {
    const operations: ({ type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array })[] = [];
    for (const { key, stored } of this.overlay.values()) {
      operations.push(stored === null ? { type: 'del', key: storageKey(key) } : { type: 'put', key: storageKey(key), value: encodeStoredValue(stored) });
    }
    return operations;
  }

  async execute(request: KvRequest): Promise<KvResponse> {
    this.changes = 0;
    switch (request.type) {
      case 'put': {
        const response = this.put(request);
        return { ...response, revision: this.finishRequest() };
      }
      case 'range':
        return this.range(request);
      case 'deleteRange': {
        const response = await this.deleteRange(request);
        return { ...response, revision: this.finishRequest() };
      }
      case 'txn':
        return this.txn(request);
      default:
        return assertNever(request, 'KV request');
    }
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

  protected override getStored(key: Uint8Array): StoredValue | undefined {
    const pending = this.overlay.get(Buffer.from(storageKey(key)).toString('latin1'));
    if (pending !== undefined) return pending.stored ?? undefined;
    return super.getStored(key);
  }

  protected override async scan(range: LevelRange, visit: (key: Uint8Array, stored: StoredValue) => boolean): Promise<void> {
    // Merge the database's pairs with the pending writes in the range, in key order.
    const pending = [...this.overlay.values()].filter(({ key }) => inLevelRange(storageKey(key), range));
    pending.sort((a, b) => compareBytes(a.key, b.key));
    let next = 0;
    let going = true;
    const emitPendingBefore = (key: Uint8Array | undefined): boolean => {
      while (going && next < pending.length) {
        const candidate = pending[next] as { key: Uint8Array; stored: StoredValue | null };
        const order = key === undefined ? -1 : compareBytes(candidate.key, key);
        if (order > 0) break;
        next += 1;
        if (candidate.stored !== null) going = visit(candidate.key, candidate.stored);
        if (order === 0) return false; // the pending write replaces the stored pair
      }
      return true;
    };
    await super.scan(range, (key, stored) => {
      if (emitPendingBefore(key) && going) going = visit(key, stored);
      return going;
    });
    emitPendingBefore(undefined);
  }

  private write(key: Uint8Array, stored: StoredValue | null): void {
    this.overlay.set(Buffer.from(storageKey(key)).toString('latin1'), { key, stored });
    this.changes += 1;
  }

  private put(request: PutRequest): Omit<PutResponse, 'revision'> {
    const previous = this.getStored(request.key);
    const revision = this.writeRevision();
    this.write(request.key, {
      createRevision: previous?.createRevision ?? revision,
      modRevision: revision,
      version: (previous?.version ?? 0) + 1,
      lease: 0,
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
    for (const { key } of doomed) this.write(key, null);
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
  } else {
    const field =
      compare.target === 'version'
        ? (stored?.version ?? 0)
        : compare.target === 'createRevision'
          ? (stored?.createRevision ?? 0)
          : compare.target === 'modRevision'
            ? (stored?.modRevision ?? 0)
            : (stored?.lease ?? 0);
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

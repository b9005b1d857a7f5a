// BackendQuota: etcd's --quota-backend-bytes for this member (etcd's server/etcdserver/quota.go
// and the quota check of api/v3rpc/quota.go). A write that would take the state machine's
// database past the quota is refused before it is proposed, and the member raises a NOSPACE
// alarm (RaftNode does both); while any NOSPACE alarm is raised every member refuses such
// writes.
//
// The size is the state machine's LevelDB directory on disk (data-dir.ts, dbSizeBytes). It is
// measured in the background, at most once per QUOTA_SIZE_MAX_AGE_MS, so a put never waits for
// a directory listing: a burst of writes can pass the quota by what it writes in that time.
// After a compaction (settleAfter) the size is measured again before the next check, since
// that is when it falls: LevelDB keeps deleted data on disk until it compacts it.
//
// States: `measuring` (a background measurement runs; at most one) and `settling` (checks wait
// for a compaction and the measurement after it; at most one, later ones chain after it).

import type { Logger } from '../raft/index.ts';
import type { KvRequest, KvStateMachine, PutRequest, TxnOperation } from '../storage/index.ts';
import { replayedRequests } from '../storage/index.ts';
import type { Clock } from '../util/index.ts';
import { assert } from '../util/index.ts';

/** QUOTA_BACKEND_BYTES_DEFAULT is etcd's DefaultQuotaBytes (2 GiB): the quota when the flag is absent or 0. */
export const QUOTA_BACKEND_BYTES_DEFAULT = 2 * 1024 * 1024 * 1024;
/** QUOTA_BACKEND_BYTES_SUGGESTED_MAX is etcd's MaxQuotaBytes (8 GiB): a larger quota works, with a warning. */
export const QUOTA_BACKEND_BYTES_SUGGESTED_MAX = 8 * 1024 * 1024 * 1024;
/** QUOTA_SIZE_MAX_AGE_MS: the measured size is refreshed when it is older than this. */
export const QUOTA_SIZE_MAX_AGE_MS = 1_000;
/** QUOTA_KV_OVERHEAD_BYTES is etcd's kvOverhead: what a key's metadata is assumed to cost. */
export const QUOTA_KV_OVERHEAD_BYTES = 256;

/**
 * quotaBytesFor turns the flag into the quota in bytes, as etcd's NewBackendQuota does: 0 (or
 * absent) is the default, a negative value disables the quota (Infinity).
 */
export function quotaBytesFor(flag: number | undefined): number {
  if (flag === undefined || flag === 0) return QUOTA_BACKEND_BYTES_DEFAULT;
  assert(Number.isSafeInteger(flag), `quotaBackendBytes must be an integer, not ${flag}`);
  return flag < 0 ? Number.POSITIVE_INFINITY : flag;
}

/**
 * quotaCost is etcd's Cost: a Put costs its key, its value and QUOTA_KV_OVERHEAD_BYTES; a Txn
 * costs its costlier branch's Puts, a mirrorApply its puts and a mirrorReplay what its commands
 * cost; anything else costs 0 and is never refused for space (reads and deletes keep working
 * past the quota, which is how an operator frees space).
 */
export function quotaCost(request: KvRequest): number {
  switch (request.type) {
    case 'put':
      return costPut(request);
    case 'txn':
      return Math.max(costOperations(request.success), costOperations(request.failure));
    case 'range':
    case 'deleteRange':
    case 'mirrorBegin':
    case 'mirrorEnd':
      return 0;
    case 'mirrorApply': {
      // A mirror batch writes like Puts: the quota stops a copy that would fill the disk.
      let cost = 0;
      for (const put of request.puts) cost += QUOTA_KV_OVERHEAD_BYTES + put.key.byteLength + put.value.byteLength;
      return cost;
    }
    case 'mirrorReplay': {
      // A replay costs what its commands cost a client; one that does not decode costs nothing
      // here (validation refuses it before it is proposed).
      let replayed: KvRequest[];
      try {
        replayed = replayedRequests(request);
      } catch {
        return 0;
      }
      let cost = 0;
      for (const command of replayed) cost += quotaCost(command);
      return cost;
    }
  }
}

function costPut(request: PutRequest): number {
  return QUOTA_KV_OVERHEAD_BYTES + request.key.byteLength + request.value.byteLength;
}

function costOperations(operations: readonly TxnOperation[]): number {
  let cost = 0;
  for (const operation of operations) if (operation.type === 'put') cost += costPut(operation);
  return cost;
}

/** BackendQuotaHost is what the quota needs of its member. */
export interface BackendQuotaHost {
  readonly clock: Clock;
  readonly logger: Logger;
  /** measure answers the state machine's size on disk now (0 in memory). */
  measure(): Promise<number>;
}

/** BackendQuota holds the quota and the last measured size (see the file comment). */
export class BackendQuota {
  /** quotaBytes is the quota; Infinity when disabled. */
  readonly quotaBytes: number;
  private readonly host: BackendQuotaHost;
  private measuredBytes = 0;
  private measuredAtMs = Number.NEGATIVE_INFINITY;
  private measuring: Promise<void> | undefined;
  private settling: Promise<void> | undefined;

  constructor(host: BackendQuotaHost, quotaBytes: number) {
    assert(quotaBytes > 0, `a quota is positive, not ${quotaBytes}`);
    this.host = host;
    this.quotaBytes = quotaBytes;
  }

  /** enabled tells whether writes are checked at all. */
  get enabled(): boolean {
    return Number.isFinite(this.quotaBytes);
  }

  /** sizeBytes is the size last measured. */
  get sizeBytes(): number {
    return this.measuredBytes;
  }

  /** whenSettled is a promise to wait for before checking, while a compaction settles; undefined otherwise. */
  get whenSettled(): Promise<void> | undefined {
    return this.settling;
  }

  /**
   * available tells whether a write of this cost fits (etcd: size + cost < quota), from the
   * size last measured; it starts a new measurement when that one is stale.
   */
  available(cost: number): boolean {
    if (!this.enabled || cost === 0) return true;
    this.refreshIfStale();
    return this.measuredBytes + cost < this.quotaBytes;
  }

  /** refreshIfStale starts a background measurement when the last one is older than QUOTA_SIZE_MAX_AGE_MS. */
  refreshIfStale(): void {
    if (!this.enabled || this.measuring !== undefined) return;
    if (this.host.clock.now() - this.measuredAtMs < QUOTA_SIZE_MAX_AGE_MS) return;
    void this.measureNow();
  }

  /**
   * settleAfter makes checks wait for `work` (a compaction) and a fresh measurement after it;
   * a failure of `work` is logged, and the size is measured all the same.
   */
  settleAfter(work: Promise<unknown>): Promise<void> {
    // Handled at once: `work` may fail before the settling in front of it ends.
    const done = work.then(
      () => undefined,
      (error: unknown) => this.host.logger.warn('compacting the state machine failed', { reason: String(error) }),
    );
    const previous = this.settling ?? Promise.resolve();
    const settled = previous.then(() => done).then(() => this.measureNow());
    this.settling = settled;
    void settled.then(() => {
      if (this.settling === settled) this.settling = undefined;
    });
    return settled;
  }

  /** idle resolves once no measurement or compaction is running (stop waits for it). */
  async idle(): Promise<void> {
    await this.settling;
    await this.measuring;
  }

  private measureNow(): Promise<void> {
    const running = (this.measuring ?? Promise.resolve()).then(async () => {
      try {
        this.measuredBytes = await this.host.measure();
      } catch (error) {
        this.host.logger.warn('measuring the state machine size failed', { reason: String(error) });
      }
      this.measuredAtMs = this.host.clock.now();
    });
    this.measuring = running;
    void running.then(() => {
      if (this.measuring === running) this.measuring = undefined;
    });
    return running;
  }
}

/**
 * compactStateMachine has LevelDB compact the whole state machine, which is when the space of
 * deleted and overwritten keys is given back (a delete only writes a tombstone); answers false
 * when the state machine cannot compact (memory-level). It runs on LevelDB's thread, while
 * the member keeps serving.
 */
export function compactStateMachine(stateMachine: KvStateMachine): Promise<boolean> {
  return stateMachine.compactStorage();
}

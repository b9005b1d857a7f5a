// Snapshotter: when this member snapshots its state, and how much log it keeps behind.
//
// A snapshot is taken when `snapshotCount` entries were applied since the last one (etcd's
// --snapshot-count) or `snapshotLogBytes` were appended, but never more often than keeps
// snapshot writing under `snapshotDutyCycleMax` of the time (a snapshot copies the whole
// state: 1 GiB every 10,000 writes would never stop). The state is captured at once, at
// an applied index, between two applies (the state machine's view, Raft's configuration and
// the member table agree), and written in the background while apply goes on. Once the file
// is durable and verified, the log records it, the state machine is synced (so a restart
// never needs an entry before the snapshot from the log), the log is compacted behind it, and
// snapshots past the newest `retainedSnapshots` are deleted unless leased.
//
// How much log stays (the catch-up tail), so that a follower installing the snapshot under
// full write load can catch up from the log afterwards (the snapshot loop of etcd#4055 and
// consul#9609): at least `catchUpEntries`, and at least twice what is written while a
// snapshot of this size is sent and restored at the measured write rate. On a leader the
// log is also never compacted past a live follower's match index (unless the log is over
// `compactionLogBytesMax`), nor past a snapshot being sent (never). On every member, the log
// is never compacted past an unexpired log hold's index - 1 (log-holds.ts: a consumer reading
// the log from outside, such as a cross-cluster copier), unless the log from that index on is
// over `compactionLogBytesMax` too: then that hold is ignored, and a warning names its consumer,
// once per snapshot.
//
// Failures: a snapshot that fails to be written is discarded (the store lists only whole,
// verified files), and the previous one stays in use. After `failuresBeforeBackoff` failures
// in a row, snapshotting backs off exponentially (a circuit breaker: logged, in status(), no
// crash loop); a success closes it. A failed fdatasync of a snapshot file is not fatal here,
// unlike the log's: the file is discarded and never read, so no lost page can be served.
//
// States: idle → taking → idle. Invariant: at most one snapshot is taken at a time
// (`taking`), and the recorded snapshot index only grows.

import type { Tracer } from '@opentelemetry/api';
import { ATTR_SNAPSHOT_BYTES, ATTR_SNAPSHOT_ID, ATTR_SNAPSHOT_INDEX, withSpan } from '../obs/index.ts';
import type { ConfState, Index, Logger, RaftStatus, Term } from '../raft/index.ts';
import type { SnapshotInfo, SnapshotStore } from '../snapshot/index.ts';
import { snapshotId } from '../snapshot/index.ts';
import type { KvSnapshotView, KvStateMachine, LogStore } from '../storage/index.ts';
import { assert, ErrorCode, isStrataError, StrataError } from '../util/index.ts';
import type { Clock } from '../util/index.ts';
import type { LogHold } from './log-holds.ts';
import type { MembershipState } from './membership.ts';
import { encodeMembershipState, encodeSnapshotDescriptor } from './snapshot-descriptor.ts';

/** SnapshotPolicy says when snapshots are taken, how much log is kept and how snapshots are sent. */
export interface SnapshotPolicy {
  /** --snapshot-count: applied entries since the last snapshot that trigger the next (etcd 3.6: 10,000). */
  readonly snapshotCount: number;
  /** Log bytes appended since the last snapshot that trigger the next. */
  readonly snapshotLogBytes: number;
  /** --snapshot-catchup-entries: entries kept before the snapshot index at least (etcd: 5,000). */
  readonly catchUpEntries: number;
  /** Above this many log bytes, live followers' match indexes and log holds no longer hold compaction back. */
  readonly compactionLogBytesMax: number;
  /** Snapshots kept on disk (the newest ones). */
  readonly retainedSnapshots: number;
  /** Failures in a row before snapshotting backs off. */
  readonly failuresBeforeBackoff: number;
  readonly backoffMsBase: number;
  readonly backoffMsMax: number;
  /** The rate the leader's snapshot sends share while it has no client load (--snapshot-send-rate-bytes). */
  readonly sendBytesPerSecond: number;
  /**
   * The rate the leader's snapshot sends share while it serves clients: writes applied or
   * requests taken in the last FOREGROUND_WINDOW_MS (--snapshot-send-rate-bytes-under-load).
   * A send competes with the foreground for CPU, disk and network: measured on 2 cores, a send
   * at 100 MiB/s doubled the leader's put p99, one at 25 MiB/s moved it by about a fifth.
   */
  readonly sendBytesPerSecondUnderLoad: number;
  /** Snapshot sends at once. */
  readonly sendsMax: number;
  /** How long a lease pins a snapshot being read; renewed as the read progresses. */
  readonly leaseMs: number;
  /** Restore rate assumed until one is measured, for sizing the catch-up tail. */
  readonly restoreBytesPerSecondAssumed: number;
  /**
   * The largest share of time spent writing snapshots: after one that took D ms, the next
   * starts no sooner than D ÷ this after that one started. A snapshot copies the whole state, so
   * with a large state and many writes --snapshot-count alone would rewrite gigabytes every
   * few seconds.
   */
  readonly snapshotDutyCycleMax: number;
}

/** SNAPSHOT_POLICY_DEFAULTS are etcd 3.6's counts and TiKV's send rate. */
export const SNAPSHOT_POLICY_DEFAULTS: SnapshotPolicy = {
  snapshotCount: 10_000,
  snapshotLogBytes: 256 * 1024 * 1024,
  catchUpEntries: 5_000,
  compactionLogBytesMax: 1024 * 1024 * 1024,
  retainedSnapshots: 2,
  failuresBeforeBackoff: 3,
  backoffMsBase: 10_000,
  backoffMsMax: 5 * 60_000,
  sendBytesPerSecond: 100 * 1024 * 1024,
  sendBytesPerSecondUnderLoad: 24 * 1024 * 1024,
  sendsMax: 2,
  leaseMs: 60_000,
  restoreBytesPerSecondAssumed: 32 * 1024 * 1024,
  snapshotDutyCycleMax: 0.1,
};

/** WRITE_RATE_WINDOW_MS is how far back the write rate that sizes the catch-up tail looks. */
export const WRITE_RATE_WINDOW_MS = 30_000;
/** CATCH_UP_SAFETY_FACTOR: the tail covers this many times the writes expected during a send and restore. */
export const CATCH_UP_SAFETY_FACTOR = 2;
// The fixed part of a catch-up: connection set-up, the follower's first appends after it.
const CATCH_UP_FIXED_MS = 5_000;
const RATE_SAMPLES_MAX = 64;
const LOG_BYTE_CHECKPOINTS_MAX = 4_096;
const LOG_BYTE_CHECKPOINT_ENTRIES = 256;

/** CapturedState is the applied state at one index, captured between two applies. */
export interface CapturedState {
  readonly view: KvSnapshotView;
  readonly confState: ConfState;
  readonly membership: MembershipState;
}

/** SnapshotterHost is what the snapshotter needs of its member. */
export interface SnapshotterHost {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly log: LogStore;
  readonly snapshots: SnapshotStore;
  /** capture reads the applied state between two applies (now, or when the current apply ends), synchronously then. */
  capture(): CapturedState | Promise<CapturedState>;
  stateMachine(): KvStateMachine;
  appliedIndex(): Index;
  /** The core's status (role, progress), for the leader's compaction limits. */
  raftStatus(): RaftStatus;
  /** The indexes of snapshots being sent now. */
  sendingIndexes(): readonly Index[];
  /** The log holds applied on this member (log-holds.ts), expired ones not pruned yet included. */
  logHolds(): readonly LogHold[];
  /** The wall clock in ms since the epoch, which log holds expire by (their deadlines are the proposer's wall clock plus a ttl). */
  wallClockMs(): number;
  onSaved(info: SnapshotInfo, elapsedMs: number): void;
  /** onFailed: a snapshot build failed (metrics; the snapshotter logs and backs off itself). */
  onFailed?(): void;
  /** Each snapshot built is a `snapshot.build` span; undefined: no tracing. */
  readonly tracer?: Tracer | undefined;
}

/** SnapshotterStatus is what status() reports. */
export interface SnapshotterStatus {
  readonly latest: SnapshotInfo | undefined;
  readonly taking: boolean;
  readonly consecutiveFailures: number;
  /** How long snapshots stay paused after repeated failures; 0 when they are not. */
  readonly backoffRemainingMs: number;
  readonly lastError: string | undefined;
  /** Entries up to here are compacted away. */
  readonly compactedThrough: Index;
  readonly catchUpEntries: number;
  /** Unexpired log holds on this member (log-holds.ts). */
  readonly logHolds: number;
  /** The lowest index an unexpired log hold keeps; undefined without one. */
  readonly logHoldIndexLowest: Index | undefined;
}

/** CompactionLimit is how far the log may be compacted, and what the log holds did to it. */
export interface CompactionLimit {
  readonly index: Index;
  /** The hold that set the limit, if one did. */
  readonly heldBy: LogHold | undefined;
  /** Unexpired holds below the limit that were ignored: the log from their index on is over compactionLogBytesMax. */
  readonly holdsIgnored: readonly LogHold[];
}

/** Snapshotter takes snapshots and compacts the log; see the header of this file. */
export class Snapshotter {
  readonly policy: SnapshotPolicy;
  private readonly host: SnapshotterHost;
  private taking: Promise<SnapshotInfo | undefined> | undefined;
  private abortTaking: AbortController | undefined;
  private stopped = false;
  private consecutiveFailures = 0;
  private backoffUntilMs = 0;
  // The duty-cycle limit: no snapshot starts before this time (see SnapshotPolicy).
  private nextAllowedMs = 0;
  private lastError: string | undefined;
  // The index of the snapshot the log records (taken here or installed from the leader).
  private recordedIndex: Index;
  private appendedBytesSinceSnapshot = 0;
  // (index, bytes appended up to it) every LOG_BYTE_CHECKPOINT_ENTRIES entries: the log's size
  // after a compaction point is estimated from them.
  private logBytes: { index: Index; cumulativeBytes: number }[] = [];
  private cumulativeBytes = 0;
  // (time, applied index) samples for the write rate.
  private rateSamples: { atMs: number; index: Index }[] = [];

  constructor(host: SnapshotterHost, policy: Partial<SnapshotPolicy> = {}) {
    this.host = host;
    this.policy = { ...SNAPSHOT_POLICY_DEFAULTS, ...policy };
    checkPolicy(this.policy);
    this.recordedIndex = host.log.snapshot().metadata.index;
  }

  /** status reports the snapshotter's state. */
  status(): SnapshotterStatus {
    const holds = this.unexpiredHolds();
    return {
      latest: this.host.snapshots.list()[0],
      taking: this.taking !== undefined,
      consecutiveFailures: this.consecutiveFailures,
      backoffRemainingMs: Math.max(0, this.backoffUntilMs - this.host.clock.now()),
      lastError: this.lastError,
      compactedThrough: this.host.log.firstIndex() - 1,
      catchUpEntries: this.catchUpTailEntries(this.host.snapshots.list()[0]?.byteLength ?? 0),
      logHolds: holds.length,
      logHoldIndexLowest: holds[0]?.index,
    };
  }

  /** noteAppended counts the bytes of entries appended to the log (the byte trigger and cap). */
  noteAppended(entries: readonly { readonly index: Index; readonly data: Uint8Array }[]): void {
    for (const entry of entries) {
      this.cumulativeBytes += entry.data.byteLength;
      this.appendedBytesSinceSnapshot += entry.data.byteLength;
      const last = this.logBytes[this.logBytes.length - 1];
      if (last === undefined || entry.index - last.index >= LOG_BYTE_CHECKPOINT_ENTRIES || entry.index < last.index) {
        // A rewritten suffix (entry.index below the last checkpoint) drops the checkpoints past it.
        while (this.logBytes.length > 0 && (this.logBytes[this.logBytes.length - 1] as { index: Index }).index >= entry.index) this.logBytes.pop();
        this.logBytes.push({ index: entry.index, cumulativeBytes: this.cumulativeBytes });
        if (this.logBytes.length > LOG_BYTE_CHECKPOINTS_MAX) this.logBytes = this.logBytes.filter((_, position) => position % 2 === 0);
      }
    }
  }

  /**
   * noteApplied is called between two applies, with the applied index: it samples the write
   * rate and starts a snapshot when one is due.
   */
  noteApplied(appliedIndex: Index): void {
    const nowMs = this.host.clock.now();
    const lastSample = this.rateSamples[this.rateSamples.length - 1];
    if (lastSample === undefined || nowMs - lastSample.atMs >= WRITE_RATE_WINDOW_MS / RATE_SAMPLES_MAX) {
      this.rateSamples.push({ atMs: nowMs, index: appliedIndex });
      while (this.rateSamples.length > RATE_SAMPLES_MAX || (this.rateSamples.length > 2 && nowMs - (this.rateSamples[0] as { atMs: number }).atMs > WRITE_RATE_WINDOW_MS)) this.rateSamples.shift();
    }
    if (this.stopped || this.taking !== undefined || nowMs < this.backoffUntilMs || nowMs < this.nextAllowedMs) return;
    const dueByCount = appliedIndex - this.recordedIndex >= this.policy.snapshotCount;
    const dueByBytes = this.appendedBytesSinceSnapshot >= this.policy.snapshotLogBytes && appliedIndex > this.recordedIndex;
    if (dueByCount || dueByBytes) void this.start();
  }

  /**
   * takeNow takes a snapshot of the state applied now, whatever the triggers say (a client
   * asked for one), after the one being taken, and resolves with it; when nothing was applied
   * since the newest snapshot, that one is returned.
   */
  async takeNow(): Promise<SnapshotInfo> {
    if (this.stopped) throw new StrataError(ErrorCode.STOPPED, 'etcdserver: server stopped');
    await this.taking?.catch(() => undefined);
    const newest = this.host.snapshots.list()[0];
    if (newest !== undefined && newest.index >= this.host.appliedIndex()) return newest;
    const info = await (this.taking ?? this.start());
    if (info === undefined) throw new StrataError(ErrorCode.UNAVAILABLE, `the snapshot could not be taken: ${this.lastError ?? 'it was abandoned'}`);
    return info;
  }

  /**
   * noteInstalled records a snapshot installed from the leader: it counts as the newest, the
   * log now starts after it, and a snapshot being taken of the replaced state is abandoned.
   * Its restore, `restoreMs` long, wrote the whole state as a snapshot does, so it counts in
   * the duty cycle: without that, a new member that installed a large snapshot under write
   * load took one of its own at once (--snapshot-count was long past), copying the whole
   * state again while the other new members were still restoring (measured in bench:migrate:
   * 84 MiB in 10 s on each of two learners, right after their restores).
   */
  noteInstalled(index: Index, restoreMs: number): void {
    assert(index >= this.recordedIndex, 'an installed snapshot is newer than the recorded one');
    assert(Number.isFinite(restoreMs) && restoreMs >= 0, 'restoreMs is a duration');
    const nowMs = this.host.clock.now();
    const writeMs = Math.max(1, restoreMs);
    this.nextAllowedMs = Math.max(this.nextAllowedMs, nowMs + writeMs / this.policy.snapshotDutyCycleMax - writeMs);
    this.recordedIndex = index;
    this.appendedBytesSinceSnapshot = 0;
    this.logBytes = [];
    void this.retain();
  }

  /** abandon stops a snapshot being taken (its state machine is about to be replaced) and waits for it. */
  async abandon(): Promise<void> {
    this.abortTaking?.abort();
    await this.taking?.catch(() => undefined);
  }

  /** stop abandons a snapshot being taken; no other starts. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.abandon();
  }

  private start(): Promise<SnapshotInfo | undefined> {
    assert(this.taking === undefined, 'one snapshot at a time');
    const abort = new AbortController();
    this.abortTaking = abort;
    const taking = this.take(abort.signal).finally(() => {
      this.taking = undefined;
      this.abortTaking = undefined;
    });
    this.taking = taking;
    return taking;
  }

  private take(signal: AbortSignal): Promise<SnapshotInfo | undefined> {
    return withSpan(this.host.tracer, 'snapshot.build', {}, async (span) => {
      const info = await this.build(signal);
      if (info !== undefined) span?.setAttributes({ [ATTR_SNAPSHOT_ID]: info.id, [ATTR_SNAPSHOT_INDEX]: info.index, [ATTR_SNAPSHOT_BYTES]: info.byteLength });
      else span?.setAttribute('stratakv.snapshot.abandoned', true);
      return info;
    });
  }

  private async build(signal: AbortSignal): Promise<SnapshotInfo | undefined> {
    let captured: CapturedState;
    try {
      captured = await this.host.capture();
    } catch (error) {
      // The state cannot be read (a corrupt state machine waiting to be rebuilt): no snapshot
      // now, retried after the usual backoff. An automatic snapshot's promise has no reader,
      // so this must not reject (an unhandled rejection would stop the member).
      if (!isStrataError(error, ErrorCode.CORRUPTION)) throw error;
      this.failed(error, this.host.appliedIndex());
      return undefined;
    }
    const { view } = captured;
    const index = view.appliedIndex;
    const term: Term = view.appliedTerm;
    const startedMs = this.host.clock.now();
    let info: SnapshotInfo;
    try {
      const members = encodeMembershipState(captured.membership);
      info = await this.host.snapshots.create(
        {
          // The mirror state goes with the records it was captured with: a member that installs
          // the snapshot is a mirror exactly when this one was at `index`.
          metadata: { index, term, confState: captured.confState, revision: view.revision, members, digest: { full: view.digest.full, content: view.digest.content }, mirror: view.mirror },
          records: () => view.records(),
        },
        { signal },
      );
    } catch (error) {
      if (signal.aborted) {
        this.host.logger.info('snapshot abandoned', { index });
        return undefined;
      }
      this.failed(error, index);
      return undefined;
    } finally {
      // The store may have stopped before reading it all, or before reading it at all.
      await view.close();
    }
    assert(info.id === snapshotId(term, index), 'the store names a snapshot by its term and index');
    // The duty cycle counts the file's writing, the part that costs I/O in proportion to the state.
    const writtenMs = this.host.clock.now();
    const writeMs = Math.max(1, writtenMs - startedMs);
    this.nextAllowedMs = writtenMs + writeMs / this.policy.snapshotDutyCycleMax - writeMs;
    try {
      await this.record(info, captured);
    } catch (error) {
      if (isStrataError(error, ErrorCode.SNAPSHOT_TEMPORARILY_UNAVAILABLE)) {
        // A newer snapshot was installed from the leader meanwhile: this one is obsolete.
        this.host.logger.info('snapshot superseded by an installed one', { index });
        return undefined;
      }
      throw error; // the log or the state machine failed: fatal to the member
    }
    const elapsedMs = Math.max(1, this.host.clock.now() - startedMs);
    this.consecutiveFailures = 0;
    this.backoffUntilMs = 0;
    this.lastError = undefined;
    this.host.logger.info('snapshot saved', { id: info.id, index, bytes: info.byteLength, keys: info.keyCount, ms: elapsedMs, compactedThrough: this.host.log.firstIndex() - 1 });
    this.host.onSaved(info, elapsedMs);
    return info;
  }

  // record makes the log point at the new snapshot, makes the state machine durable past it,
  // compacts the log behind it and applies retention.
  private async record(info: SnapshotInfo, captured: CapturedState): Promise<void> {
    const { log } = this.host;
    const descriptor = encodeSnapshotDescriptor({ snapshotId: info.id, byteLength: info.byteLength, sha256: info.sha256, membership: captured.membership });
    if (info.index <= this.recordedIndex) {
      throw new StrataError(ErrorCode.SNAPSHOT_TEMPORARILY_UNAVAILABLE, `snapshot at ${info.index} is not newer than ${this.recordedIndex}`);
    }
    log.createSnapshot(info.index, captured.confState, descriptor);
    this.recordedIndex = info.index;
    this.appendedBytesSinceSnapshot = 0;
    // The state machine must hold everything up to the snapshot durably before the log stops
    // holding it: after a power cut it restarts from its durable applied index.
    await this.host.stateMachine().sync();
    const { index: compactIndex, heldBy, holdsIgnored } = this.compactionLimit(info);
    for (const hold of holdsIgnored) {
      this.host.logger.warn('a log hold is ignored: the log from its index on is over compactionLogBytesMax, so it is compacted past; its consumer will find its position compacted', {
        consumer: hold.consumer,
        index: hold.index,
        logBytesAfter: this.logBytesAfter(hold.index - 1),
        compactionLogBytesMax: this.policy.compactionLogBytesMax,
      });
    }
    if (heldBy !== undefined) this.host.logger.info('compaction held back by a log hold', { consumer: heldBy.consumer, index: heldBy.index, compactIndex });
    if (compactIndex > log.firstIndex() - 1) log.compact(compactIndex);
    await log.sync();
    await this.retain();
  }

  /**
   * compactionIndex is how far the log may be compacted after a snapshot at `info.index`:
   * the catch-up tail before it, not past a snapshot being sent, on a leader not past a live
   * follower's match index, and on any member not past an unexpired log hold's index - 1
   * (both unless the log they keep is over its byte cap).
   */
  compactionIndex(info: Pick<SnapshotInfo, 'index' | 'byteLength'>): Index {
    return this.compactionLimit(info).index;
  }

  /** compactionLimit is compactionIndex with what the log holds did to it. */
  compactionLimit(info: Pick<SnapshotInfo, 'index' | 'byteLength'>): CompactionLimit {
    const { log } = this.host;
    let limit = Math.min(info.index, log.lastIndex()) - this.catchUpTailEntries(info.byteLength);
    for (const sending of this.host.sendingIndexes()) limit = Math.min(limit, sending);
    const status = this.host.raftStatus();
    if (status.role === 'leader') {
      let followersLimit = Number.POSITIVE_INFINITY;
      for (const [id, progress] of status.progress) {
        if (id === status.id) continue;
        if (progress.state === 'snapshot') continue; // it will install a snapshot, not read this log
        if (progress.recentActive) followersLimit = Math.min(followersLimit, progress.match);
      }
      if (followersLimit < limit && this.logBytesAfter(followersLimit) <= this.policy.compactionLogBytesMax) limit = followersLimit;
    }
    // Log holds, lowest index first: the first whose kept log is within the byte cap sets the
    // limit; the ones below it are ignored. A hold whose index is compacted already keeps nothing.
    let heldBy: LogHold | undefined;
    const holdsIgnored: LogHold[] = [];
    const firstIndex = log.firstIndex();
    for (const hold of this.unexpiredHolds()) {
      const holdLimit = hold.index - 1;
      if (holdLimit >= limit) break;
      if (hold.index < firstIndex) continue;
      if (this.logBytesAfter(holdLimit) > this.policy.compactionLogBytesMax) {
        holdsIgnored.push(hold);
        continue;
      }
      limit = holdLimit;
      heldBy = hold;
      break;
    }
    const index = Math.max(0, Math.min(limit, info.index));
    assert(index <= info.index, 'the log is never compacted past the snapshot');
    return { index, heldBy, holdsIgnored };
  }

  // unexpiredHolds lists the log holds unexpired by the wall clock now, lowest index first.
  private unexpiredHolds(): LogHold[] {
    const nowMs = this.host.wallClockMs();
    return this.host
      .logHolds()
      .filter((hold) => hold.expiresAtMs > nowMs)
      .sort((a, b) => a.index - b.index);
  }

  /** catchUpTailEntries is how many entries stay before a snapshot of `snapshotBytes` bytes. */
  catchUpTailEntries(snapshotBytes: number): number {
    const entriesPerSecond = this.writeRateEntriesPerSecond();
    // Writes arrive while the send runs, so it runs at the rate under load.
    const sendBytesPerSecond = Math.min(this.policy.sendBytesPerSecond, this.policy.sendBytesPerSecondUnderLoad);
    const catchUpMs = CATCH_UP_FIXED_MS + (1000 * snapshotBytes) / sendBytesPerSecond + (1000 * snapshotBytes) / this.policy.restoreBytesPerSecondAssumed;
    const needed = Math.ceil((CATCH_UP_SAFETY_FACTOR * entriesPerSecond * catchUpMs) / 1000);
    return Math.max(this.policy.catchUpEntries, needed);
  }

  /** writeRateEntriesPerSecond is the applied rate over the last WRITE_RATE_WINDOW_MS. */
  writeRateEntriesPerSecond(): number {
    const first = this.rateSamples[0];
    const last = this.rateSamples[this.rateSamples.length - 1];
    if (first === undefined || last === undefined || last.atMs <= first.atMs) return 0;
    return ((last.index - first.index) * 1000) / (last.atMs - first.atMs);
  }

  // logBytesAfter estimates the log's bytes after `index` from the append checkpoints.
  private logBytesAfter(index: Index): number {
    let before = 0;
    for (const checkpoint of this.logBytes) {
      if (checkpoint.index > index) break;
      before = checkpoint.cumulativeBytes;
    }
    if (this.logBytes.length === 0 || (this.logBytes[0] as { index: Index }).index > index) return this.cumulativeBytes;
    return this.cumulativeBytes - before;
  }

  private async retain(): Promise<void> {
    const { log, snapshots, logger } = this.host;
    const recorded = log.snapshot();
    const protect: string[] = [];
    if (recorded.metadata.index > 0) protect.push(snapshotId(recorded.metadata.term, recorded.metadata.index));
    try {
      const deleted = await snapshots.retain(this.policy.retainedSnapshots, protect);
      if (deleted.length > 0) logger.info('deleted old snapshots', { ids: deleted });
    } catch (error) {
      logger.warn('deleting old snapshots failed', { reason: String(error) });
    }
  }

  private failed(error: unknown, index: Index): void {
    this.consecutiveFailures += 1;
    this.host.onFailed?.();
    this.lastError = error instanceof Error ? error.message : String(error);
    const fields = { index, failures: this.consecutiveFailures, reason: this.lastError };
    if (this.consecutiveFailures >= this.policy.failuresBeforeBackoff) {
      const exponent = this.consecutiveFailures - this.policy.failuresBeforeBackoff;
      const backoffMs = Math.min(this.policy.backoffMsMax, this.policy.backoffMsBase * 2 ** Math.min(exponent, 20));
      this.backoffUntilMs = this.host.clock.now() + backoffMs;
      this.host.logger.warn('snapshots keep failing: backing off; the previous snapshot stays in use', { ...fields, backoffMs });
    } else {
      this.host.logger.warn('snapshot failed; the previous snapshot stays in use', fields);
    }
  }
}

function checkPolicy(policy: SnapshotPolicy): void {
  const positive = (name: keyof SnapshotPolicy): void => {
    const value = policy[name];
    if (!(Number.isFinite(value) && value > 0)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot policy: ${name} must be positive, got ${value}`);
  };
  for (const name of Object.keys(SNAPSHOT_POLICY_DEFAULTS) as (keyof SnapshotPolicy)[]) positive(name);
  if (policy.snapshotDutyCycleMax > 1) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot policy: snapshotDutyCycleMax is a share of time, at most 1, got ${policy.snapshotDutyCycleMax}`);
  if (!Number.isSafeInteger(policy.snapshotCount) || !Number.isSafeInteger(policy.catchUpEntries) || !Number.isSafeInteger(policy.retainedSnapshots)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'snapshot policy: counts must be integers');
  }
}

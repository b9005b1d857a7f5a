// Cross-replica integrity checks at a Raft-agreed index (TiKV's and CockroachDB's model,
// on by default, where etcd's is off by default and skips lagging members).
//
// 1. Every `checkpointEntries` applied entries, or `checkpointIntervalMs` after the last
//    checkpoint if anything was applied since, the leader proposes a checkpoint entry
//    (src/storage's CHECKPOINT_FORMAT). Its index is the agreed point.
// 2. Every member that applies it — voters, learners, members far behind that apply it later
//    — gets from its state machine the state digest exactly at that index (O(1): the digest
//    is kept on apply, nothing is scanned) and proposes a digest report (a node command) with
//    its revision, key count and full root.
// 3. Every member applies every report and tallies them per checkpoint (deterministically,
//    from the log), but only the leader acts: once the reports of a majority of the voters
//    (as of the checkpoint) agree, every member whose report differs — voter or learner, the
//    leader included — gets a CORRUPT alarm, proposed as an ordinary alarm command. When every
//    voter has reported and no value has a majority, the cluster gets CORRUPT with member id
//    0 (writes refused everywhere). A member that does not report (down, or it installed a
//    snapshot past the checkpoint) is simply not judged at that checkpoint.
//
// A restarted member rebuilds the tallies of the checkpoints whose entries it replays; the
// alarms themselves are in the alarm set (replicated, in snapshots), so a decision is never
// lost, only a checkpoint in progress may be left undecided until the next one.

import type { Index } from '../raft/index.ts';
import type { DigestAt } from '../storage/index.ts';
import { CHECKPOINT_FORMAT, formatDigest } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';

/** IntegrityCheckPolicy says how often the leader proposes a checkpoint. */
export interface IntegrityCheckPolicy {
  /** Applied entries between two checkpoints; 0 turns periodic checkpoints off. */
  readonly checkpointEntries: number;
  /** Milliseconds after which a checkpoint is proposed if anything was applied since the last; 0: never by time. */
  readonly checkpointIntervalMs: number;
}

/** DEFAULT_INTEGRITY_CHECK_POLICY: every 10,000 entries or every minute. */
export const DEFAULT_INTEGRITY_CHECK_POLICY: IntegrityCheckPolicy = { checkpointEntries: 10_000, checkpointIntervalMs: 60_000 };

/** CHECKPOINTS_KEPT bounds the checkpoints whose reports are tallied (the oldest is forgotten). */
export const CHECKPOINTS_KEPT = 8;

/** DigestReport is one member's state digest at a checkpoint, as its report command carries it. */
export interface DigestReport {
  readonly type: 'digestReport';
  readonly checkpointIndex: Index;
  readonly memberId: number;
  readonly revision: number;
  readonly keyCount: number;
  /** The full root, 32 hex digits. */
  readonly digest: string;
}

/** CheckpointVerdict is where a checkpoint's tally stands. */
export type CheckpointVerdict = 'pending' | 'agreed' | 'corrupt-members' | 'no-majority';

/** CheckpointState is a checkpoint's tally, as `stratakv check` prints it. */
export interface CheckpointState {
  readonly index: Index;
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  readonly reports: readonly DigestReport[];
  readonly verdict: CheckpointVerdict;
  /** The majority's revision, key count and digest, once there is one. */
  readonly majority?: { readonly revision: number; readonly keyCount: number; readonly digest: string } | undefined;
  /** Members whose report differs from the majority's. */
  readonly corrupt: readonly number[];
}

/** isCheckpointEntry tells whether an entry's data is a checkpoint. */
export function isCheckpointEntry(data: Uint8Array): boolean {
  return data.byteLength > 0 && data[0] === CHECKPOINT_FORMAT;
}

/** reportOf turns the state machine's digest at a checkpoint into this member's report. */
export function reportOf(memberId: number, digestAt: DigestAt): DigestReport {
  return {
    type: 'digestReport',
    checkpointIndex: digestAt.appliedIndex,
    memberId,
    revision: digestAt.revision,
    keyCount: digestAt.digest.keyCount,
    digest: formatDigest(digestAt.digest.full),
  };
}

/** checkDigestReport refuses a malformed report (it passed a CRC: CORRUPTION). */
export function checkDigestReport(value: Record<string, unknown>): DigestReport {
  const count = (field: string): number => {
    const item = value[field];
    if (typeof item !== 'number' || !Number.isSafeInteger(item) || item < 0) throw new StrataError(ErrorCode.CORRUPTION, `digestReport: bad ${field}`);
    return item;
  };
  const digest = value['digest'];
  if (typeof digest !== 'string' || !/^[0-9a-f]{32}$/.test(digest)) throw new StrataError(ErrorCode.CORRUPTION, 'digestReport: bad digest');
  return {
    type: 'digestReport',
    checkpointIndex: count('checkpointIndex'),
    memberId: count('memberId'),
    revision: count('revision'),
    keyCount: count('keyCount'),
    digest,
  };
}

function valueKey(report: DigestReport): string {
  return `${report.revision}/${report.keyCount}/${report.digest}`;
}

/**
 * CheckpointTally is the deterministic part: checkpoints and their reports, as applied, and
 * the verdict of each. Every member holds one; what it decides depends only on the log.
 */
export class CheckpointTally {
  private readonly checkpoints = new Map<Index, { voters: number[]; learners: number[]; reports: Map<number, DigestReport> }>();

  /** onCheckpoint records a checkpoint entry applied at `index` with the configuration at that point. */
  onCheckpoint(index: Index, voters: readonly number[], learners: readonly number[]): void {
    if (this.checkpoints.has(index)) return; // replayed
    this.checkpoints.set(index, { voters: [...voters].sort((a, b) => a - b), learners: [...learners].sort((a, b) => a - b), reports: new Map() });
    while (this.checkpoints.size > CHECKPOINTS_KEPT) {
      const oldest = Math.min(...this.checkpoints.keys());
      this.checkpoints.delete(oldest);
    }
  }

  /**
   * onReport records an applied report and answers the checkpoint's state, or undefined when
   * the checkpoint is unknown (forgotten, or before this member's snapshot). A member's first
   * report counts; a repeat (a replay, a retried proposal) is ignored.
   */
  onReport(report: DigestReport): CheckpointState | undefined {
    const checkpoint = this.checkpoints.get(report.checkpointIndex);
    if (checkpoint === undefined) return undefined;
    if (!checkpoint.reports.has(report.memberId)) checkpoint.reports.set(report.memberId, report);
    return this.state(report.checkpointIndex);
  }

  /** state answers a checkpoint's tally, or undefined when it is not kept. */
  state(index: Index): CheckpointState | undefined {
    const checkpoint = this.checkpoints.get(index);
    if (checkpoint === undefined) return undefined;
    return judge(index, checkpoint.voters, checkpoint.learners, [...checkpoint.reports.values()]);
  }

  /** indexes answers the kept checkpoints' indexes, oldest first. */
  indexes(): Index[] {
    return [...this.checkpoints.keys()].sort((a, b) => a - b);
  }

  /** latest answers the newest checkpoint's index, or undefined. */
  latest(): Index | undefined {
    return this.checkpoints.size === 0 ? undefined : Math.max(...this.checkpoints.keys());
  }
}

/**
 * judge decides a checkpoint from its reports: a value reported by a majority of the voters
 * wins, and every report that differs names a corrupt member; when every voter reported and
 * none has a majority, there is none.
 */
export function judge(index: Index, voters: readonly number[], learners: readonly number[], reports: readonly DigestReport[]): CheckpointState {
  assert(voters.length > 0, 'a checkpoint has voters');
  const majority = Math.floor(voters.length / 2) + 1;
  const counts = new Map<string, number>();
  for (const report of reports) if (voters.includes(report.memberId)) counts.set(valueKey(report), (counts.get(valueKey(report)) ?? 0) + 1);
  const sortedReports = [...reports].sort((a, b) => a.memberId - b.memberId);
  let winner: string | undefined;
  for (const [key, count] of counts) if (count >= majority) winner = key;
  if (winner !== undefined) {
    const corrupt = sortedReports.filter((report) => valueKey(report) !== winner).map((report) => report.memberId);
    const sample = sortedReports.find((report) => valueKey(report) === winner) as DigestReport;
    return {
      index,
      voters,
      learners,
      reports: sortedReports,
      verdict: corrupt.length === 0 ? 'agreed' : 'corrupt-members',
      majority: { revision: sample.revision, keyCount: sample.keyCount, digest: sample.digest },
      corrupt,
    };
  }
  const votersReported = sortedReports.filter((report) => voters.includes(report.memberId)).length;
  const best = Math.max(0, ...counts.values());
  // No value can reach a majority any more: every voter reported, or too few are left.
  const noMajority = votersReported === voters.length || best + (voters.length - votersReported) < majority;
  return { index, voters, learners, reports: sortedReports, verdict: noMajority ? 'no-majority' : 'pending', corrupt: [] };
}

/** CheckpointPayload is what a checkpoint entry carries after its format byte. */
export interface CheckpointPayload {
  readonly by: number;
  /** Tells the proposer which entry is its checkpoint (unique per proposer while it runs). */
  readonly nonce: number;
  /** Every member pins a digest view exactly at this checkpoint (a Merkle diff asked for it). */
  readonly pin: boolean;
}

/** encodeCheckpoint encodes a checkpoint entry's data. */
export function encodeCheckpoint(payload: CheckpointPayload): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify({ type: 'checkpoint', by: payload.by, nonce: payload.nonce, pin: payload.pin }));
  const data = new Uint8Array(json.byteLength + 1);
  data[0] = CHECKPOINT_FORMAT;
  data.set(json, 1);
  return data;
}

/** decodeCheckpoint reads a checkpoint entry's payload; malformed bytes are CORRUPTION (they passed a CRC). */
export function decodeCheckpoint(data: Uint8Array): CheckpointPayload {
  assert(isCheckpointEntry(data), 'decodeCheckpoint of an entry that is no checkpoint');
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data.subarray(1)));
  } catch (error) {
    throw new StrataError(ErrorCode.CORRUPTION, 'checkpoint entry is not valid JSON', { cause: error });
  }
  const record = value as Record<string, unknown> | null;
  if (record === null || typeof record !== 'object' || record['type'] !== 'checkpoint' || typeof record['by'] !== 'number') {
    throw new StrataError(ErrorCode.CORRUPTION, 'malformed checkpoint entry');
  }
  return { by: record['by'], nonce: typeof record['nonce'] === 'number' ? record['nonce'] : 0, pin: record['pin'] === true };
}

/** IntegrityCheckHost is what the checker needs of its member (RaftNode). */
export interface IntegrityCheckHost {
  readonly memberId: number;
  now(): number;
  isLeader(): boolean;
  appliedIndex(): Index;
  revision(): number;
  /** proposeCheckpoint puts a checkpoint entry in the log; resolves once it is applied (by the leader). */
  proposeCheckpoint(payload: CheckpointPayload): Promise<void>;
  proposeReport(report: DigestReport): Promise<void>;
  hasCorruptAlarm(memberId: number): boolean;
  /** setTimer calls `fire` after `delayMs` on the member's clock; answers a cancel. */
  setTimer(fire: () => void, delayMs: number): () => void;
  raiseCorrupt(memberId: number, why: string): Promise<void>;
  warn(message: string, fields: Record<string, unknown>): void;
  /** onVerdict: a checkpoint's tally here reached its verdict (once per checkpoint; metrics). */
  onVerdict?(index: Index, verdict: Exclude<CheckpointVerdict, 'pending'>): void;
}

/**
 * IntegrityChecker is the driver's side: it proposes checkpoints when due (leader), reports
 * this member's digest at each, tallies every report, and has the leader raise the alarms
 * the tally names. Proposals are never awaited by the apply path (a failure is logged and the
 * next checkpoint tries again).
 */
export class IntegrityChecker {
  private readonly host: IntegrityCheckHost;
  private readonly policy: IntegrityCheckPolicy;
  private readonly tally = new CheckpointTally();
  // The newest checkpoint whose verdict was reported to host.onVerdict.
  private verdictReportedIndex: Index = 0;
  private proposing = false;
  private lastCheckpoint: { index: Index; revision: number; atMs: number } | undefined;
  // Alarms the leader proposed (checkpoint/member), so that it asks once.
  private readonly raised = new Set<string>();
  private readonly waiters = new Set<{ index: Index; wake: () => void }>();
  // This member's own checkpoint proposals, by nonce, until applied here (then: their index).
  private nonce = 0;
  private readonly proposed = new Map<number, { index: Index | undefined; wake: (() => void) | undefined }>();

  constructor(host: IntegrityCheckHost, policy: IntegrityCheckPolicy) {
    assert(Number.isSafeInteger(policy.checkpointEntries) && policy.checkpointEntries >= 0, 'checkpointEntries must be a non-negative integer');
    assert(Number.isFinite(policy.checkpointIntervalMs) && policy.checkpointIntervalMs >= 0, 'checkpointIntervalMs must be non-negative');
    this.host = host;
    this.policy = policy;
  }

  /** tick proposes a checkpoint when this member leads and one is due. */
  tick(): void {
    if (this.proposing || !this.host.isLeader()) return;
    const applied = this.host.appliedIndex();
    const last = this.lastCheckpoint;
    const sinceIndex = applied - (last?.index ?? 0);
    const byEntries = this.policy.checkpointEntries > 0 && sinceIndex >= this.policy.checkpointEntries;
    // By time only when the state changed since (an idle cluster's digest does not move).
    const byTime =
      this.policy.checkpointIntervalMs > 0 && (last === undefined || this.host.now() - last.atMs >= this.policy.checkpointIntervalMs) && this.host.revision() !== (last?.revision ?? 1);
    if (!byEntries && !byTime) return;
    this.proposing = true;
    void this.host
      .proposeCheckpoint({ by: this.host.memberId, nonce: this.nextNonce(), pin: false })
      .catch((error: unknown) => this.host.warn('proposing an integrity checkpoint failed', { reason: String(error) }))
      .finally(() => {
        this.proposing = false;
      });
  }

  /** onCheckpointApplied records a checkpoint entry applied with the configuration at that point. */
  onCheckpointApplied(index: Index, payload: CheckpointPayload, voters: readonly number[], learners: readonly number[], revision: number): void {
    if (payload.by === this.host.memberId) {
      const own = this.proposed.get(payload.nonce);
      if (own !== undefined) {
        own.index = index;
        own.wake?.();
      }
    }
    if (voters.length === 0) return;
    this.tally.onCheckpoint(index, voters, learners);
    this.lastCheckpoint = { index, revision, atMs: this.host.now() };
  }

  /** onLocalDigest reports this member's digest at a checkpoint it applied. */
  onLocalDigest(digestAt: DigestAt): void {
    const report = reportOf(this.host.memberId, digestAt);
    void this.host.proposeReport(report).catch((error: unknown) =>
      this.host.warn('reporting the state digest at a checkpoint failed', { checkpointIndex: digestAt.appliedIndex, reason: String(error) }),
    );
  }

  /** onReportApplied tallies an applied report; the leader acts on the verdict. */
  onReportApplied(report: DigestReport): void {
    const state = this.tally.onReport(report);
    if (state === undefined) return;
    for (const waiter of [...this.waiters]) if (waiter.index === state.index) waiter.wake();
    if (state.verdict !== 'pending' && state.index > this.verdictReportedIndex) {
      this.verdictReportedIndex = state.index;
      this.host.onVerdict?.(state.index, state.verdict);
    }
    if (this.host.isLeader()) this.act(state);
  }

  /** onBecameLeader acts on the verdicts a previous leader may not have acted on. */
  onBecameLeader(): void {
    for (const index of this.tally.indexes()) {
      const state = this.tally.state(index);
      if (state !== undefined) this.act(state);
    }
  }

  /** state answers a kept checkpoint's tally. */
  state(index: Index): CheckpointState | undefined {
    return this.tally.state(index);
  }

  /**
   * check proposes a checkpoint now (pinning digest views when asked) and waits until every
   * member of its configuration reported, or `timeoutMs` passed: `stratakv check`.
   */
  async check(options: { readonly pin: boolean; readonly timeoutMs: number; readonly signal?: AbortSignal | undefined; readonly waitForReports: boolean }): Promise<CheckpointState> {
    const index = await this.checkpointNow(options.pin, options.timeoutMs);
    const done = (): CheckpointState | undefined => {
      const state = this.tally.state(index);
      if (state === undefined) return undefined;
      if (!options.waitForReports) return state;
      const everyone = [...state.voters, ...state.learners];
      return everyone.every((id) => state.reports.some((report) => report.memberId === id)) ? state : undefined;
    };
    const deadline = this.host.now() + options.timeoutMs;
    for (;;) {
      const state = done();
      if (state !== undefined) return state;
      const remaining = deadline - this.host.now();
      if (remaining <= 0 || options.signal?.aborted === true) {
        const partial = this.tally.state(index);
        if (partial !== undefined) return partial;
        throw new StrataError(ErrorCode.TIMEOUT, `checkpoint ${index} is not kept on this member any more`);
      }
      await new Promise<void>((resolve) => {
        const waiter = {
          index,
          wake: () => {
            this.waiters.delete(waiter);
            cancel();
            resolve();
          },
        };
        const cancel = this.host.setTimer(waiter.wake, Math.min(remaining, 250));
        this.waiters.add(waiter);
      });
    }
  }

  /**
   * checkpointNow proposes a checkpoint (pinning digest views on every member when `pin`) and
   * resolves with its index once this member applied it.
   */
  async checkpointNow(pin: boolean, timeoutMs: number): Promise<Index> {
    const nonce = this.nextNonce();
    const own: { index: Index | undefined; wake: (() => void) | undefined } = { index: undefined, wake: undefined };
    this.proposed.set(nonce, own);
    try {
      await this.host.proposeCheckpoint({ by: this.host.memberId, nonce, pin });
      if (own.index === undefined) {
        // Applied by the leader; this member applies it soon after.
        await new Promise<void>((resolve) => {
          const cancel = this.host.setTimer(() => {
            own.wake = undefined;
            resolve();
          }, timeoutMs);
          own.wake = () => {
            cancel();
            own.wake = undefined;
            resolve();
          };
        });
      }
      if (own.index === undefined) throw new StrataError(ErrorCode.TIMEOUT, `the checkpoint was committed but not applied on this member within ${timeoutMs} ms`);
      return own.index;
    } finally {
      this.proposed.delete(nonce);
    }
  }

  private nextNonce(): number {
    this.nonce = (this.nonce + 1) % Number.MAX_SAFE_INTEGER;
    return this.nonce;
  }

  private act(state: CheckpointState): void {
    const raise = (memberId: number, why: string): void => {
      const key = `${state.index}/${memberId}`;
      if (this.raised.has(key) || this.host.hasCorruptAlarm(memberId)) return;
      this.raised.add(key);
      if (this.raised.size > 4 * CHECKPOINTS_KEPT * 16) this.raised.clear();
      void this.host.raiseCorrupt(memberId, why).catch((error: unknown) => {
        this.raised.delete(key);
        this.host.warn('raising a CORRUPT alarm failed', { memberId: memberId.toString(16), reason: String(error) });
      });
    };
    if (state.verdict === 'corrupt-members') {
      for (const memberId of state.corrupt) {
        const report = state.reports.find((item) => item.memberId === memberId);
        raise(
          memberId,
          `at checkpoint ${state.index} member ${memberId.toString(16)} reported revision ${report?.revision}, ${report?.keyCount} keys, digest ${report?.digest}; ` +
            `the majority reported revision ${state.majority?.revision}, ${state.majority?.keyCount} keys, digest ${state.majority?.digest}`,
        );
      }
    } else if (state.verdict === 'no-majority') {
      raise(0, `at checkpoint ${state.index} no digest has a majority of the voters: ${state.reports.map((report) => `${report.memberId.toString(16)}=${report.digest}`).join(', ')}`);
    }
  }
}

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

/** encodeCheckpointEntry is a checkpoint entry's data (the CHECKPOINT_FORMAT byte and who proposed it). */
export function encodeCheckpointEntry(proposerId: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify({ type: 'checkpoint', by: proposerId }));
  const data = new Uint8Array(json.byteLength + 1);
  data[0] = CHECKPOINT_FORMAT;
  data.set(json, 1);
  return data;
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

// The four things an operator does with a migration — plan, run, status, rollback — over a
// MigrationCluster. plan gathers what makePlan needs (the leader's view, the alarms, the
// journal, a probe of every new member) and answers the plan without changing anything. run
// plans, refuses an unsafe plan, writes the record (compare-and-set: two runs cannot both
// start one) and executes it; given no targets it resumes the journal's. rollback looks at
// the cluster, not only at the record: before the voters were swapped it removes the learners
// the migration added; after, it moves the voters back to the old members (still learners,
// caught up); once old members are being removed it refuses, since they are gone.

import { randomBytes } from 'node:crypto';

import type { ReplicationInfo } from '../client/index.ts';
import type { Clock } from '../util/clock.ts';
import { sleep } from '../util/clock.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { ExecutorOptions } from './executor.ts';
import { runRecord } from './executor.ts';
import type { MigrationCluster } from './migration-cluster.ts';
import type { MigrationRecord } from './migration-record.ts';
import { decodeRecord, encodeRecord, isBeforeSwap, RECORD_FORMAT } from './migration-record.ts';
import type { JoinProbe, Plan, TargetSpec } from './plan.ts';
import { describe, makePlan } from './plan.ts';

/** HEALTH_SAMPLES_MAX bounds the looks a plan takes at the leader's view before it calls a voter unreachable. */
export const HEALTH_SAMPLES_MAX = 5;
/** HEALTH_SAMPLE_INTERVAL_MS is the pause between two of those looks. */
export const HEALTH_SAMPLE_INTERVAL_MS = 500;

function everyVoterAnswers(replication: ReplicationInfo): boolean {
  return replication.voters.every((id) => id === replication.leaderId || replication.peers.some((peer) => peer.id === id && peer.recentActive && peer.rttMs !== undefined));
}

/** ProbeJoiner asks a new member's peer URL whether it waits to be added. */
export type ProbeJoiner = (peerUrl: string) => Promise<JoinProbe>;

/** PlanOptions configure plan and run. */
export interface PlanOptions {
  readonly targets: readonly TargetSpec[];
  readonly probeJoiner: ProbeJoiner;
  readonly requireZoneSpread?: boolean;
  readonly clock: Clock;
}

/** MigrationStatus is what status answers: the journal's record (if any) and its steps. */
export interface MigrationStatus {
  readonly record: MigrationRecord | undefined;
  readonly version: number;
  readonly steps: ReturnType<typeof describe>;
  readonly inProgress: boolean;
}

/** planMigration answers the plan a run would follow now (see the file comment). */
export async function planMigration(cluster: MigrationCluster, options: PlanOptions): Promise<Plan & { readonly version: number }> {
  const [first, alarms, journal] = await Promise.all([cluster.replication(), cluster.alarms(), cluster.readJournal()]);
  // A voter is judged unreachable only if it misses the leader's probe in every one of a few
  // samples: one slow answer on a loaded machine is not an unhealthy cluster.
  let replication = first;
  for (let sample = 1; sample < HEALTH_SAMPLES_MAX && !everyVoterAnswers(replication); sample += 1) {
    await sleep(options.clock, HEALTH_SAMPLE_INTERVAL_MS);
    replication = await cluster.replication();
  }
  cluster.followEndpoints(replication.members);
  const record = journal.record === undefined ? undefined : decodeRecord(journal.record);
  const probes = new Map<string, JoinProbe>();
  await Promise.all(
    options.targets.map(async (target) => {
      const isMember = replication.members.some((member) => member.peerUrls.some((url) => target.peerUrls.includes(url)));
      const url = target.peerUrls[0];
      if (isMember || url === undefined) return;
      probes.set(target.name, await options.probeJoiner(url));
    }),
  );
  const plan = makePlan({
    replication,
    alarms,
    journal: record,
    targets: options.targets,
    probes,
    requireZoneSpread: options.requireZoneSpread ?? false,
    nowMs: Date.now(),
    newId: () => randomBytes(8).toString('hex'),
  });
  return { ...plan, version: journal.version };
}

/** runMigration plans, refuses an unsafe plan (INVALID_ARGUMENT listing why), records it and runs it to the end. */
export async function runMigration(cluster: MigrationCluster, options: PlanOptions & Omit<ExecutorOptions, 'clock'>): Promise<{ record: MigrationRecord; plan: Plan }> {
  const plan = await planMigration(cluster, options);
  if (plan.refusals.length > 0 || plan.record === undefined) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `the migration is refused:\n  - ${plan.refusals.join('\n  - ')}`, { details: { refusals: plan.refusals } });
  }
  if (plan.record.kind === 'move' && plan.record.rollbackOf !== undefined && options.targets.length > 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a rollback is in progress; stratakv migrate rollback resumes it');
  }
  let version = plan.version;
  if (!plan.resuming) version = await cluster.writeJournal(plan.version, encodeRecord(plan.record));
  const done = await runRecord(cluster, { record: plan.record, version }, options);
  return { record: done.record, plan };
}

/** migrationStatus reads the journal. */
export async function migrationStatus(cluster: MigrationCluster): Promise<MigrationStatus> {
  const journal = await cluster.readJournal();
  if (journal.record === undefined) return { record: undefined, version: journal.version, steps: [], inProgress: false };
  const record = decodeRecord(journal.record);
  return { record, version: journal.version, steps: describe(record), inProgress: record.next !== undefined };
}

/** rollbackMigration undoes the migration in progress (see the file comment); answers the record it ran. */
export async function rollbackMigration(cluster: MigrationCluster, options: Omit<ExecutorOptions, 'clock'> & { readonly clock: Clock }): Promise<MigrationRecord> {
  const journal = await cluster.readJournal();
  if (journal.record === undefined) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'no migration was ever recorded in this cluster; nothing to roll back');
  const record = decodeRecord(journal.record);
  if (record.next === undefined) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `migration ${record.id} is finished (${record.kind === 'abort' ? 'rolled back' : 'done'}); nothing to roll back`);
  // A rollback in progress (an abort, or a move back): resume it.
  if (record.kind === 'abort' || record.rollbackOf !== undefined) return (await runRecord(cluster, { record, version: journal.version }, options)).record;
  const replication = await cluster.replication();
  cluster.followEndpoints(replication.members);
  const fromIds = new Set(record.from.map((spec) => spec.id));
  const toIds = new Set(record.to.map((spec) => spec.id).filter((id) => id !== 0));
  const swapped = replication.votersOutgoing.length > 0 || replication.voters.some((id) => toIds.has(id) && !fromIds.has(id));
  let next: MigrationRecord;
  const nowMs = Date.now();
  if (!swapped && isBeforeSwap(record)) {
    next = { format: RECORD_FORMAT, id: record.id, kind: 'abort', from: record.from, to: record.to, next: 'remove-learners', startedAtMs: nowMs, updatedAtMs: nowMs, log: record.log };
  } else {
    const oldGone = record.from.some((spec) => !fromIds.has(spec.id) || !replication.members.some((member) => member.id === spec.id));
    if (oldGone) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `migration ${record.id} has removed old members already; it can only be finished (stratakv migrate run)`);
    // The old members are learners (or still outgoing voters): move back to them.
    next = { format: RECORD_FORMAT, id: randomBytes(8).toString('hex'), kind: 'move', rollbackOf: record.id, from: record.to, to: record.from, next: 'catch-up', startedAtMs: nowMs, updatedAtMs: nowMs, log: [] };
  }
  const version = await cluster.writeJournal(journal.version, encodeRecord(next));
  return (await runRecord(cluster, { record: next, version }, options)).record;
}

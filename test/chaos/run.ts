// One chaos run, start to verdict: the Docker engine (started if needed), the member image,
// a cluster in containers, the workload, the seeded fault schedule, then healing and the
// checks — linearizability of the whole history (with a final read of every key, so no
// acknowledged write can be lost unnoticed), the revision checks, and every member's state
// digest equal at one checkpoint. Everything the run made is removed at the end, also when it
// fails; the folder with the members' data and logs is kept when the run does not pass.
//
// Teeth (`teeth: true`): the same machinery, but reads are serializable and go to one member
// that the schedule keeps isolated from the others most of the time, while the history still
// calls them linearizable. The checker must flag that run; the test asserts it does.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { IntegrityClient, type EtcdClient } from '../../src/client/index.ts';
import { makeWaitFor } from '../integration/cluster-process.ts';
import { parseLogRecords } from '../obs/log-records.ts';
import { checkLinearizability, formatVerdict, type Verdict } from '../linearizability/index.ts';
import { ChaosCluster } from './chaos-cluster.ts';
import { checkRevisions, type RevisionReport } from './checks.ts';
import { cleanupStaleChaos } from './containers.ts';
import { ensureDockerEngine } from './docker-engine.ts';
import { buildMemberImage } from './image.ts';
import { startFault, type FaultEvent } from './nemesis.ts';
import { buildSchedule, describePlan, type FaultPlan, type Nemesis } from './schedule.ts';
import { startWorkload, type WorkloadResult } from './workload.ts';

/** ChaosRunOptions configures runChaos. */
export interface ChaosRunOptions {
  readonly seed: number;
  readonly nemeses: readonly Nemesis[];
  readonly runMs: number;
  readonly members?: number;
  readonly clients?: number;
  readonly keys?: number;
  readonly teeth?: boolean;
  /** keepFolderOnFailure keeps the members' data and logs of a run that did not pass (default true). */
  readonly keepFolderOnFailure?: boolean;
  /** keepFolder keeps the run's folder whatever the verdict (to read a passing run's member logs); default false. */
  readonly keepFolder?: boolean;
  readonly log?: (line: string) => void;
}

/** ChaosReport is what a run found. */
export interface ChaosReport {
  readonly seed: number;
  readonly passed: boolean;
  /** reasons the run failed (empty when it passed). */
  readonly reasons: readonly string[];
  readonly schedule: readonly FaultPlan[];
  readonly events: readonly FaultEvent[];
  readonly workload: Pick<WorkloadResult, 'counts' | 'failures'> & { readonly operations: number };
  readonly verdict: Verdict;
  readonly verdictLines: readonly string[];
  readonly revisions: RevisionReport;
  readonly convergence: string;
  readonly leaderChanges: number;
  readonly leaders: readonly string[];
  /** members: the cluster's members at the end (replace-member and migrate change them). */
  readonly members: readonly string[];
  readonly alarms: string;
  readonly folder: string | undefined;
  readonly seconds: number;
}

export const MEMBERS_DEFAULT = 3;
export const CLIENTS_DEFAULT = 6;
export const KEYS_DEFAULT = 6;
/** KEY_ROTATE_MS: how long one set of keys is used (workload.ts). */
export const KEY_ROTATE_MS = 15_000;
const CALL_DEADLINE_MS = 2_000;
/** CLIENT_AUTO_SYNC_MS: how often the workload's clients ask MemberList for the members' endpoints. */
const CLIENT_AUTO_SYNC_MS = 1_000;
const NEMESIS_CALL_TIMEOUT_MS = 3_000;
const LEADER_POLL_MS = 500;
const START_LEADER_TIMEOUT_MS = 30_000;
const CONVERGE_TIMEOUT_MS = 60_000;
const CONVERGE_POLL_MS = 1_000;
const CHECK_STEPS_MAX = 20_000_000;
const CHECK_TIME_MS_MAX = 120_000;
/** OPERATION_PAUSE_MS keeps each key's concurrency low enough for the checker. */
const OPERATION_PAUSE_MS = 5;
const TEETH_ISOLATE_MS = 6_000;
/** SNAPSHOTS_FAILING_LINE begins what a member logs when its snapshots fail again and again (src/node/snapshotter.ts). */
const SNAPSHOTS_FAILING_LINE = 'snapshots keep failing';
const TEETH_HEAL_MS = 1_500;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** waitFor polls `probe` (an error counts as "not yet" and is quoted if time runs out). */
async function waitFor<T>(description: string, timeoutMs: number, pollMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  let lastError = '';
  const probeQuietly = async (): Promise<T | undefined> => {
    try {
      return await probe();
    } catch (error) {
      lastError = (error as Error).message;
      return undefined;
    }
  };
  return makeWaitFor(pollMs)(description, timeoutMs, probeQuietly, () => (lastError === '' ? 'no answer' : `last error: ${lastError}`));
}

/** teethSchedule isolates the reads' member for most of the run (see the file comment). */
function teethSchedule(runMs: number): FaultPlan[] {
  const plans: FaultPlan[] = [];
  for (let atMs = 2_000; atMs + TEETH_ISOLATE_MS < runMs - 2_000 && plans.length < 1_000; atMs += TEETH_ISOLATE_MS + TEETH_HEAL_MS) {
    // pick 0 with 'isolate-one' over names rotated by 0: n1, the reads' member.
    plans.push({ ordinal: plans.length + 1, atMs, durationMs: TEETH_ISOLATE_MS, nemesis: 'partition', variant: 'isolate-one', pick: 0, delayMs: 0, jitterMs: 0, lossPercent: 0 });
  }
  return plans;
}

/** runChaos runs one chaos run (see the file comment). Throws only when the run could not be set up. */
export async function runChaos(options: ChaosRunOptions): Promise<ChaosReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const startedMs = performance.now();
  const now = (): number => performance.now() - startedMs;
  const engine = await ensureDockerEngine({ log });
  if ('unavailable' in engine) throw new Error(`Docker cannot run here: ${engine.unavailable}`);
  const folder = mkdtempSync(join(tmpdir(), `stratakv-chaos-${options.seed}-`));
  let cluster: ChaosCluster | undefined;
  const clients: EtcdClient[] = [];
  let passed = false;
  try {
    await cleanupStaleChaos({ log });
    const image = await buildMemberImage({ log });
    const size = options.members ?? MEMBERS_DEFAULT;
    cluster = await ChaosCluster.start({
      image,
      size,
      seed: options.seed,
      folder,
      // Small snapshots and frequent checkpoints, so that faults meet snapshot sends and
      // installs and the disk nemesis finds snapshot files.
      serveFlags: ['--snapshot-count', '400', '--snapshot-catchup-entries', '100', '--heartbeat-interval', '100', '--election-timeout', '1000', '--integrity-check-entries', '2000'],
      log,
    });
    const running = cluster;
    const firstLeader = await waitFor('a leader', START_LEADER_TIMEOUT_MS, 250, () => running.leaderName(1_000));
    log(`cluster of ${size} in containers (${running.members.map((member) => `${member.name} ${member.container.ip()}`).join(', ')}); leader ${firstLeader}; ${(now() / 1000).toFixed(1)} s`);

    const clientCount = options.clients ?? CLIENTS_DEFAULT;
    const teeth = options.teeth === true;
    const readsMember = running.members[0]?.name ?? 'n1';
    const writerEndpoints = teeth ? running.members.filter((member) => member.name !== readsMember).map((member) => running.fabric.clientEndpointOf(member.name)) : running.clientEndpoints();
    // The workload follows the members (replace-member and migrate change them); the teeth
    // run's clients keep their endpoints, since the point is where each one goes.
    const autoSync = teeth ? {} : { autoSyncIntervalMs: CLIENT_AUTO_SYNC_MS };
    for (let index = 0; index < clientCount; index += 1) clients.push(running.client({ endpoints: writerEndpoints, timeoutMs: CALL_DEADLINE_MS, ...autoSync }));
    const readClients = teeth ? [running.client({ endpoints: [running.fabric.clientEndpointOf(readsMember)], timeoutMs: CALL_DEADLINE_MS })] : undefined;
    if (readClients !== undefined) clients.push(...readClients);

    const schedule = teeth ? teethSchedule(options.runMs) : buildSchedule({ seed: options.seed, nemeses: options.nemeses, runMs: options.runMs });
    log(`schedule: ${schedule.length} fault(s)${teeth ? ' (teeth: n1 isolated again and again, serializable reads from it labelled linearizable)' : ''}`);
    for (const plan of schedule) log(`  ${describePlan(plan)}`);

    const workload = startWorkload(clients.slice(0, clientCount), {
      keys: options.keys ?? KEYS_DEFAULT,
      keyPrefix: 'chaos/g',
      keyRotateMs: KEY_ROTATE_MS,
      seed: options.seed,
      now,
      deadlineMs: CALL_DEADLINE_MS,
      reads: teeth ? 'serializable' : 'linearizable',
      ...(readClients !== undefined ? { readClients } : {}),
      pauseMs: OPERATION_PAUSE_MS,
    });

    // What the cluster did: the leader seen by a majority, every LEADER_POLL_MS.
    const leaders: string[] = [firstLeader];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const leader = await running.leaderName(1_000).catch(() => undefined);
        if (leader !== undefined && leader !== leaders[leaders.length - 1]) leaders.push(leader);
        await sleep(LEADER_POLL_MS);
      }
    })();

    const events: FaultEvent[] = [];
    const context = { cluster: running, now, log, events, callTimeoutMs: NEMESIS_CALL_TIMEOUT_MS, busy: new Set<string>() };
    const faultRuns = schedule.map(async (plan) => {
      const waitMs = plan.atMs - now();
      if (waitMs > 0) await sleep(waitMs);
      let heal: () => Promise<void> = async () => undefined;
      try {
        heal = await startFault(context, plan);
      } catch (error) {
        events.push({ atMs: now(), ordinal: plan.ordinal, phase: 'note', text: `could not start: ${(error as Error).message}` });
        log(`  #${plan.ordinal} could not start: ${(error as Error).message}`);
      }
      const holdMs = plan.atMs + plan.durationMs - now();
      if (holdMs > 0) await sleep(holdMs);
      try {
        await heal();
      } catch (error) {
        events.push({ atMs: now(), ordinal: plan.ordinal, phase: 'note', text: `could not heal: ${(error as Error).message}` });
        log(`  #${plan.ordinal} could not heal: ${(error as Error).message}`);
      }
    });
    // A membership change may outlast its scheduled time (a migration under faults); each
    // bounds its own steps, and its heal waits for them, so this wait is bounded too.
    await Promise.all(faultRuns);
    const restMs = options.runMs - now();
    if (restMs > 0) await sleep(restMs);

    // Heal everything that could still be off, then let the cluster converge. Only the current
    // members: those a membership change removed are gone (retired), not down.
    running.clearNetworkFaults();
    running.fabric.restoreAll();
    for (const member of running.members) {
      if (member.container.paused) await member.container.unpause();
      if (!member.container.running) {
        await member.container.start();
        running.memberRestarted(member.name);
      }
    }
    const healedLeader = await waitFor('a leader after healing', CONVERGE_TIMEOUT_MS, 500, () => running.leaderName(1_000));
    const finalReader = running.client({ timeoutMs: CALL_DEADLINE_MS * 3 });
    clients.push(finalReader);
    const result = await workload.stop({ finalReader });
    watching = false;
    await watcher;
    const finalMembers = running.members.map((member) => member.name);
    log(`healed; members ${finalMembers.join(' ')}; leader ${healedLeader}; ${result.history.length} operations: ${result.counts.ok} ok, ${result.counts.fail} fail, ${result.counts.unknown} unknown`);

    // Every member's state digest, learners included, equal at one checkpoint.
    const integrity = new IntegrityClient();
    let convergence: string;
    try {
      const endpoints = running.clientEndpoints();
      const agreed = await waitFor('every member to report an equal digest at one checkpoint', CONVERGE_TIMEOUT_MS, CONVERGE_POLL_MS, async () => {
        const check = await integrity.check(endpoints, { timeoutMs: 10_000 });
        return check.verdict === 'agreed' && check.reports.length === endpoints.length ? check : undefined;
      }).catch((error: unknown) => error as Error);
      convergence = agreed instanceof Error ? `NOT converged: ${agreed.message}` : `converged: ${agreed.reports.length} members agree at index ${agreed.index} (revision ${agreed.majority?.revision ?? '?'}, ${agreed.majority?.keyCount ?? '?'} keys, digest ${agreed.majority?.digest ?? '?'})`;
    } finally {
      integrity.close();
    }
    const alarmClient = running.client({ timeoutMs: NEMESIS_CALL_TIMEOUT_MS });
    const alarms = await alarmClient
      .alarmList()
      .then((list) => (list.length === 0 ? 'none' : list.map((alarm) => `${alarm.alarm} on ${alarm.memberId.toString(16)}`).join(', ')))
      .catch((error: unknown) => `could not list: ${(error as Error).message}`)
      .finally(() => alarmClient.close());

    // A member whose snapshots keep failing serves correctly but never compacts its log again:
    // nothing in the history shows it, so the members' own words are read (this is how the
    // migration journal's overflow of the snapshot footer was found, seed 2 of the migrate
    // nemesis).
    const snapshotTrouble: string[] = [];
    for (const member of running.members) {
      const failing = parseLogRecords(await member.container.logs().catch(() => '')).filter((record) => record.msg.startsWith(SNAPSHOTS_FAILING_LINE));
      if (failing.length > 0) snapshotTrouble.push(`${member.name} (${failing.length}×: ${String(failing[0]?.fields['reason'] ?? '?')})`);
    }

    const verdict = checkLinearizability(result.history, { stepsMax: CHECK_STEPS_MAX, timeMsMax: CHECK_TIME_MS_MAX });
    const verdictLines = formatVerdict(verdict);
    const revisions = checkRevisions(result.mutations, result.reads, { linearizableReads: !teeth });
    const reasons: string[] = [];
    if (verdict.result !== 'linearizable') reasons.push(`history ${verdict.result}`);
    if (!revisions.ok) reasons.push(`${revisions.violations} revision violation(s)`);
    if (!convergence.startsWith('converged')) reasons.push('members did not converge');
    if (alarms !== 'none') reasons.push(`alarms left: ${alarms}`);
    if (result.counts.ok === 0) reasons.push('no operation succeeded');
    if (snapshotTrouble.length > 0) reasons.push(`snapshots keep failing on ${snapshotTrouble.join(', ')}`);
    const findings = events.filter((event) => event.phase === 'finding');
    if (findings.length > 0) reasons.push(`the nemesis found: ${findings.map((event) => event.text).join('; ')}`);
    passed = reasons.length === 0;
    return {
      seed: options.seed,
      passed,
      reasons,
      schedule,
      events,
      workload: { counts: result.counts, failures: result.failures, operations: result.history.length },
      verdict,
      verdictLines,
      revisions,
      convergence,
      leaderChanges: leaders.length - 1,
      leaders,
      members: finalMembers,
      alarms,
      folder: options.keepFolder === true || (!passed && options.keepFolderOnFailure !== false) ? folder : undefined,
      seconds: now() / 1000,
    };
  } finally {
    for (const client of clients) client.close();
    if (cluster !== undefined) {
      await cluster.close().catch((error: unknown) => log(`cleanup: ${(error as Error).message}`));
    }
    await cleanupStaleChaos({ log }).catch((error: unknown) => log(`cleanup: ${(error as Error).message}`));
    await engine.stop().catch((error: unknown) => log(`stopping dockerd: ${(error as Error).message}`));
    if (options.keepFolder !== true && (passed || options.keepFolderOnFailure === false)) rmSync(folder, { recursive: true, force: true });
    else log(`the run's folder (member data and logs) is kept: ${folder}`);
  }
}

/** formatReport is the report's lines, the verdict last. */
export function formatReport(report: ChaosReport): string[] {
  const { counts, failures, operations } = report.workload;
  const lines = [
    `seed ${report.seed}: ${report.schedule.length} fault(s) in ${report.seconds.toFixed(0)} s`,
    `operations ${operations}: ok ${counts.ok}, fail ${counts.fail}, unknown ${counts.unknown}${failures.size > 0 ? ` (errors: ${[...failures].map(([code, count]) => `${code} ×${count}`).join(', ')})` : ''}`,
    `leader changes ${report.leaderChanges} (${report.leaders.join(' → ')}); alarms ${report.alarms}`,
    `members at the end: ${report.members.join(' ')}`,
    `faults: ${report.events.filter((event) => event.phase === 'start').length} started, ${report.events.filter((event) => event.phase === 'heal').length} healed, ${report.events.filter((event) => event.phase === 'note').length} notes`,
    `state: ${report.convergence}`,
    `revisions: ${report.revisions.ok ? 'ok' : `${report.revisions.violations} violation(s)`}`,
    ...report.revisions.lines.map((line) => `  ${line}`),
    `linearizability: ${report.verdict.result} (${report.verdict.steps} steps)`,
  ];
  if (report.verdict.result !== 'linearizable') lines.push(...report.verdictLines.map((line) => `  ${line}`));
  if (report.folder !== undefined) lines.push(`kept: ${report.folder}`);
  lines.push(`verdict: ${report.passed ? 'PASS' : `FAIL (${report.reasons.join('; ')})`} — seed ${report.seed}`);
  return lines;
}

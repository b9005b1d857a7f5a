// `stratakv migrate plan|run|status|rollback`: live migration of a running cluster onto new
// members (src/migrate). Every form prints, last, the command to run next; `-w json` prints one
// JSON object with the same facts (and `next`) for automation. Exit codes: 0 done (or a plan
// that would run), 1 refused or failed (the journal keeps the step: run again to resume),
// 2 usage error.

import type { JoinProbe, LearnerProgress, MigrationEvent, MigrationRecord, Plan, PlannedStep, TargetSpec } from '../src/migrate/index.ts';
import { clusterOver, migrationStatus, planMigration, rollbackMigration, runMigration } from '../src/migrate/index.ts';
import { normalizeEndpoint, probeJoiner } from '../src/client/index.ts';
import { startTracing } from '../src/obs/index.ts';
import { SYSTEM_CLOCK } from '../src/util/clock.ts';
import { isStrataError } from '../src/util/errors.ts';
import type { FlagKind } from './client-verbs.ts';
import { DEFAULT_ENDPOINTS, parseCommandArgs, parseDuration, parseEndpoints, writeOut } from './client-verbs.ts';
import { COPY_USAGE, runCopyCommand } from './copy-verb.ts';
import { UsageError } from './serve-flags.ts';

/** MIGRATE_USAGE is the help of `stratakv migrate`. */
export const MIGRATE_USAGE = `  migrate plan --endpoints E --to NAME=PEER_URL,... [--zone-spread] [-w simple|json]
                                       the exact steps a migration would take, or why it must not run
  migrate run --endpoints E [--to NAME=PEER_URL,...] [--zone-spread] [--stall-timeout 5m] [-w simple|json]
                                       move the cluster's voters onto the new members (started with
                                       stratakv serve --join); without --to, resume the migration in progress
  migrate status --endpoints E [-w simple|json]
                                       the migration in progress (or the last one) and its steps
  migrate rollback --endpoints E [-w simple|json]
                                       undo the migration in progress: remove the learners it added, or
                                       move the voters back to the old members
${COPY_USAGE}`;

const COMMON: Readonly<Record<string, FlagKind>> = { endpoints: 'value', 'write-out': 'value', w: 'value' };
const FLAGS: Readonly<Record<string, Readonly<Record<string, FlagKind>>>> = {
  plan: { ...COMMON, to: 'value', 'zone-spread': 'boolean' },
  run: { ...COMMON, to: 'value', 'zone-spread': 'boolean', 'stall-timeout': 'value' },
  status: COMMON,
  rollback: { ...COMMON, 'stall-timeout': 'value' },
};

/** MigrateIo is where the verb writes; `err` carries progress, `isTerminal` says whether bars may be drawn. */
export interface MigrateIo {
  readonly out: (line: string) => void;
  readonly err: (text: string) => void;
  readonly isTerminal: boolean;
  readonly signal?: AbortSignal;
  /** Reads one line the operator types (undefined at the end of input): `copy switch` of an etcd source asks whether the writers moved. */
  readonly readLine?: () => Promise<string | undefined>;
}

/** parseTargets reads --to NAME=PEER_URL,...; a name given twice gets both URLs. */
export function parseTargets(text: string): TargetSpec[] {
  const targets = new Map<string, string[]>();
  for (const part of text.split(',')) {
    const at = part.indexOf('=');
    if (at <= 0 || at === part.length - 1) throw new UsageError('--to', `invalid value ${JSON.stringify(part)} for flag --to: want NAME=PEER_URL`);
    const name = part.slice(0, at).trim();
    const url = part.slice(at + 1).trim();
    try {
      normalizeEndpoint(url);
    } catch (error) {
      throw new UsageError('--to', `invalid peer URL ${JSON.stringify(url)} for ${name}: ${(error as Error).message}`);
    }
    if (!/^https?:\/\//.test(url)) throw new UsageError('--to', `peer URL ${JSON.stringify(url)} for ${name} must start with http://`);
    targets.set(name, [...(targets.get(name) ?? []), url]);
  }
  return [...targets].map(([name, peerUrls]) => ({ name, peerUrls }));
}

/** runMigrateCommand runs `stratakv migrate <sub> ...`; answers the exit code. */
export async function runMigrateCommand(args: readonly string[], io: MigrateIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'copy') return await runCopyCommand(rest, io);
  if (sub !== 'plan' && sub !== 'run' && sub !== 'status' && sub !== 'rollback') {
    throw new UsageError(sub ?? 'migrate', `unknown migrate command ${JSON.stringify(sub ?? '')}: one of plan, run, status, rollback, copy`);
  }
  const { flags } = parseCommandArgs(`migrate ${sub}`, rest, FLAGS[sub] ?? COMMON, []);
  const merged = new Map(flags);
  const short = flags.get('w');
  if (typeof short === 'string') merged.set('write-out', short);
  const format = writeOut(merged, ['simple', 'json']);
  const endpointsText = typeof flags.get('endpoints') === 'string' ? (flags.get('endpoints') as string) : DEFAULT_ENDPOINTS;
  const endpoints = parseEndpoints(endpointsText).map((endpoint) => normalizeEndpoint(endpoint));
  const toText = flags.get('to');
  const targets = typeof toText === 'string' ? parseTargets(toText) : [];
  if (sub === 'plan' && targets.length === 0) throw new UsageError('--to', 'migrate plan needs --to NAME=PEER_URL,... (the new members)');
  const stallText = flags.get('stall-timeout');
  const stallTimeoutMs = typeof stallText === 'string' ? parseDuration('--stall-timeout', stallText) : undefined;
  const zoneSpread = flags.get('zone-spread') === true;

  const cluster = clusterOver(endpoints);
  const next = (command: string): string => `stratakv migrate ${command} --endpoints ${cluster.endpoints.join(',')}`;
  const probe = async (url: string): Promise<JoinProbe> => {
    const answer = await probeJoiner(url);
    return answer.waiting ? { waiting: true, name: answer.name, zone: answer.zone } : { waiting: false, reason: answer.reason };
  };
  const progress = new ProgressLines(io);
  try {
    switch (sub) {
      case 'plan': {
        const plan = await planMigration(cluster, { targets, probeJoiner: probe, requireZoneSpread: zoneSpread, clock: SYSTEM_CLOCK });
        const refused = plan.refusals.length > 0;
        const nextCommand = refused ? undefined : `${next('run')}${plan.resuming ? '' : ` --to ${toText as string}`}${zoneSpread ? ' --zone-spread' : ''}`;
        if (format === 'json') io.out(JSON.stringify({ ...planJson(plan), next: nextCommand ?? null }));
        else printPlan(io, plan, nextCommand);
        return refused ? 1 : 0;
      }
      case 'status': {
        const status = await migrationStatus(cluster);
        const nextCommand = status.inProgress ? next(status.record?.rollbackOf !== undefined || status.record?.kind === 'abort' ? 'rollback' : 'run') : undefined;
        if (format === 'json') io.out(JSON.stringify({ inProgress: status.inProgress, journalVersion: status.version, record: status.record ?? null, steps: status.steps, next: nextCommand ?? null }));
        else printStatus(io, status.record, status.steps, nextCommand);
        return 0;
      }
      case 'run':
      case 'rollback': {
        const onEvent = (event: MigrationEvent): void => {
          if (format === 'json') return;
          progress.event(event);
        };
        const failpoint = killFailpoint();
        // Traced when the OTEL_* variables ask for it, as `stratakv serve` is (src/obs/tracing.ts).
        const tracing = await startTracing({ memberName: 'migrate', memberId: `migrate-${process.pid}` });
        const options = {
          clock: SYSTEM_CLOCK,
          onEvent,
          ...(stallTimeoutMs !== undefined ? { stallTimeoutMs } : {}),
          ...(io.signal !== undefined ? { signal: io.signal } : {}),
          ...(failpoint !== undefined ? { beforeJournalWrite: failpoint } : {}),
          ...(tracing !== undefined ? { tracer: tracing.tracer } : {}),
        };
        let record: MigrationRecord;
        try {
          if (sub === 'run') record = (await runMigration(cluster, { ...options, targets, probeJoiner: probe, requireZoneSpread: zoneSpread })).record;
          else record = await rollbackMigration(cluster, options);
        } finally {
          await tracing?.shutdown();
        }
        progress.clear();
        const outcome = record.kind === 'abort' || record.rollbackOf !== undefined ? 'rolled back' : 'done';
        if (format === 'json') io.out(JSON.stringify({ result: outcome, record, next: next('status') }));
        else {
          io.out(`migration ${record.rollbackOf ?? record.id}: ${outcome}; the voters are ${record.to.map((spec) => spec.name).join(', ')}`);
          io.out(`next: ${next('status')}`);
        }
        return 0;
      }
    }
  } catch (error) {
    progress.clear();
    if (!isStrataError(error)) throw error;
    const resume = sub === 'rollback' ? next('rollback') : sub === 'run' ? next('run') : undefined;
    if (format === 'json') io.out(JSON.stringify({ result: 'failed', code: error.code, error: error.message, next: resume ?? null }));
    else {
      io.err(`stratakv migrate ${sub}: ${error.message} (${error.code})\n`);
      if (resume !== undefined) io.err(`the journal keeps the step; resume with: ${resume}\n`);
    }
    return 1;
  } finally {
    cluster.close();
  }
  return 0;
}

/**
 * MIGRATE_FAILPOINT_ENV names the tests' failpoint: `kill-before-journal:STEP` kills this
 * process (SIGKILL) once STEP is done, before the journal records it; `pause-before-journal:STEP:MS`
 * waits MS milliseconds there instead (≤ FAILPOINT_PAUSE_MS_MAX), so a test can look at a
 * migration that is running (the status page).
 */
export const MIGRATE_FAILPOINT_ENV = 'STRATAKV_MIGRATE_FAILPOINT';
/** FAILPOINT_PAUSE_MS_MAX bounds a pause failpoint. */
export const FAILPOINT_PAUSE_MS_MAX = 120_000;

// killFailpoint reads MIGRATE_FAILPOINT_ENV (tests kill the migration between a step and its
// journal write, the worst moment for a resume, as etcd's failpoints do; or hold it there).
function killFailpoint(): ((step: string) => Promise<void> | void) | undefined {
  const text = process.env[MIGRATE_FAILPOINT_ENV];
  if (text === undefined || text === '') return undefined;
  const pause = /^pause-before-journal:([a-z-]+):([0-9]+)$/.exec(text);
  if (pause !== null && Number(pause[2]) <= FAILPOINT_PAUSE_MS_MAX) {
    return (step) => (step === pause[1] ? new Promise<void>((resolve) => setTimeout(resolve, Number(pause[2]))) : undefined);
  }
  const match = /^kill-before-journal:([a-z-]+)$/.exec(text);
  if (match === null) throw new UsageError(MIGRATE_FAILPOINT_ENV, `${MIGRATE_FAILPOINT_ENV}=${text}: want kill-before-journal:STEP or pause-before-journal:STEP:MS (MS ≤ ${FAILPOINT_PAUSE_MS_MAX})`);
  return (step) => {
    if (step === match[1]) process.kill(process.pid, 'SIGKILL');
  };
}

function planJson(plan: Plan): Record<string, unknown> {
  return { resuming: plan.resuming, refusals: plan.refusals, warnings: plan.warnings, steps: plan.steps, record: plan.record ?? null };
}

function printPlan(io: MigrateIo, plan: Plan, nextCommand: string | undefined): void {
  if (plan.resuming && plan.record !== undefined) io.out(`migration ${plan.record.id} is in progress; a run resumes it at ${plan.record.next ?? 'its end'}`);
  printSteps(io, plan.steps);
  for (const warning of plan.warnings) io.out(`warning: ${warning}`);
  if (plan.refusals.length > 0) {
    io.out('refused:');
    for (const refusal of plan.refusals) io.out(`  - ${refusal}`);
    return;
  }
  if (nextCommand !== undefined) io.out(`next: ${nextCommand}`);
}

function printStatus(io: MigrateIo, record: MigrationRecord | undefined, steps: readonly PlannedStep[], nextCommand: string | undefined): void {
  if (record === undefined) {
    io.out('no migration recorded');
    return;
  }
  const what = record.kind === 'abort' ? 'rollback (removing the learners)' : record.rollbackOf !== undefined ? `rollback of ${record.rollbackOf} (moving back)` : 'migration';
  io.out(`${what} ${record.id}: ${record.next === undefined ? 'finished' : `next step ${record.next}`}`);
  io.out(`  from ${record.from.map((spec) => spec.name).join(', ')} to ${record.to.map((spec) => `${spec.name}${spec.zone !== '' ? ` (zone ${spec.zone})` : ''}`).join(', ')}`);
  printSteps(io, steps);
  for (const item of record.log) io.out(`  ${new Date(item.doneAtMs).toISOString()} ${item.step} (${((item.doneAtMs - item.startedAtMs) / 1000).toFixed(1)} s): ${item.detail}`);
  if (nextCommand !== undefined) io.out(`next: ${nextCommand}`);
}

function printSteps(io: MigrateIo, steps: readonly PlannedStep[]): void {
  for (const [at, step] of steps.entries()) io.out(`  ${step.done ? '[done]' : `${at + 1}.`.padEnd(6)} ${step.step}: ${step.does}`);
}

// ProgressLines draws the run's progress: one line per finished step, and while learners
// catch up one bar each (bytes of the snapshot, entries of the log, ETA), redrawn in place on
// a terminal and printed every few seconds otherwise.
class ProgressLines {
  readonly #io: MigrateIo;
  #barLines = 0;
  #lastPlainMs = 0;
  readonly #samples = new Map<number, { atMs: number; behind: number; bytes: number }[]>();

  constructor(io: MigrateIo) {
    this.#io = io;
  }

  event(event: MigrationEvent): void {
    switch (event.type) {
      case 'step-started':
        this.clear();
        this.#io.err(`${event.step} ...\n`);
        return;
      case 'step-done':
        this.clear();
        this.#io.err(`${event.step} done in ${(event.elapsedMs / 1000).toFixed(1)} s: ${event.detail}\n`);
        return;
      case 'note':
        this.clear();
        this.#io.err(`${event.text}\n`);
        return;
      case 'catch-up':
        this.#catchUp(event.learners);
        return;
    }
  }

  clear(): void {
    if (this.#barLines > 0 && this.#io.isTerminal) this.#io.err(`\x1b[${this.#barLines}A\x1b[J`);
    this.#barLines = 0;
  }

  #catchUp(learners: readonly LearnerProgress[]): void {
    const nowMs = Date.now();
    const lines = learners.map((learner) => formatLearner(learner, this.#rate(learner, nowMs)));
    if (this.#io.isTerminal) {
      this.clear();
      this.#io.err(`${lines.join('\n')}\n`);
      this.#barLines = lines.length;
    } else if (nowMs - this.#lastPlainMs >= 5_000) {
      this.#lastPlainMs = nowMs;
      this.#io.err(`${lines.join('\n')}\n`);
    }
  }

  // #rate is the learner's recent speed over the last ~10 s of samples: how fast it closes
  // its distance to the leader's log (the leader's log grows meanwhile) and snapshot bytes/s.
  #rate(learner: LearnerProgress, nowMs: number): { entriesPerSecond: number; bytesPerSecond: number } {
    const samples = this.#samples.get(learner.id) ?? [];
    samples.push({ atMs: nowMs, behind: Math.max(0, learner.lastIndex - learner.match), bytes: learner.snapshot?.acknowledgedBytes ?? 0 });
    while (samples.length > 2 && (samples[0]?.atMs ?? nowMs) < nowMs - 10_000) samples.shift();
    this.#samples.set(learner.id, samples);
    const first = samples[0];
    const last = samples[samples.length - 1];
    if (first === undefined || last === undefined || nowMs - first.atMs < 500) return { entriesPerSecond: 0, bytesPerSecond: 0 };
    const seconds = (nowMs - first.atMs) / 1000;
    return { entriesPerSecond: Math.max(0, (first.behind - last.behind) / seconds), bytesPerSecond: Math.max(0, (last.bytes - first.bytes) / seconds) };
  }
}

/** formatLearner is one learner's progress line: snapshot bytes or log entries, with an ETA when the rate is known. */
export function formatLearner(learner: LearnerProgress, rate: { entriesPerSecond: number; bytesPerSecond: number }): string {
  const width = 24;
  const bar = (fraction: number): string => {
    const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
    return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  };
  const eta = (remaining: number, perSecond: number): string => (perSecond > 0 ? `ETA ${formatSeconds(remaining / perSecond)}` : 'ETA --');
  if (learner.caughtUp) return `  ${learner.name.padEnd(12)} ${bar(1)} caught up (entry ${learner.match})`;
  if (learner.snapshot !== undefined) {
    const { acknowledgedBytes, byteLength } = learner.snapshot;
    return `  ${learner.name.padEnd(12)} ${bar(acknowledgedBytes / Math.max(1, byteLength))} snapshot ${mib(acknowledgedBytes)} / ${mib(byteLength)} MiB  ${mib(rate.bytesPerSecond)} MiB/s  ${eta(byteLength - acknowledgedBytes, rate.bytesPerSecond)}`;
  }
  const behind = Math.max(0, learner.lastIndex - learner.match);
  return `  ${learner.name.padEnd(12)} ${bar(learner.match / Math.max(1, learner.lastIndex))} log ${learner.match} / ${learner.lastIndex} entries (${behind} behind, closing ${Math.round(rate.entriesPerSecond)}/s)  ${eta(behind, rate.entriesPerSecond)}`;
}

function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1);
}

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
}

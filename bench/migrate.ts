// bench/migrate.ts — `npm run bench:migrate`: issue 14's benchmark. A 3-member cluster holding
// --size-bytes of state (default 1 GiB: 262,144 keys of 4 KiB random values) is moved onto
// three new members while 16 clients write, and the same is done to etcd 3.4 by its manual
// procedure, for comparison. Each run uses fresh clusters; runs alternate which system goes
// first; one heavy thing at a time on a shared 2-core machine.
//
// stratakv (bench/migrate/stratakv-move.ts): three members in zone a, three started with
// `stratakv serve --join` in zone b, then `stratakv migrate run -w json` as a child process.
// etcd (bench/migrate/etcd-move.ts): etcdctl member add --learner / start / member promote
// (retried until etcd accepts it), one new member at a time, then move-leader and member remove.
//
// The load (bench/migrate/load-worker.ts, its own process): --clients EtcdClients (the stratakv
// client, with auto-sync, given only the old members), each putting fresh --put-bytes values one
// after another; every put's start, end and outcome is kept. The windows (bench/migrate/
// timeline.ts), cut from that one record in the same run:
//   before — the load without a migration, just before it, as long as the migration took
//            (the load runs --before-ms first; when the migration took longer, the window is
//            shorter and the table says so);
//   during — the migration, start to end;
//   after  — the load after it, as long as it took (the drift between before and after).
// Figures: the longest write gap (the longest interval in which no client's put was
// acknowledged) during against before (goal ≤ 1.5×); p50, p99, p99.9 (goal: p99.9 during ≤
// before + 100 ms); put p99 while the learners are added and catch up (stratakv: from the start
// of the add-learners step to the end of catch-up in the journal's step log; etcd: each member's
// add → promoted) against p99 before (goal ≤ 1.1×); failed and ambiguous puts (goal 0); leader
// changes seen by Maintenance.Status polls of every member every 200 ms (goal 1); whether
// every acknowledged put is there afterwards; total time and each step's.
//
// Options: --size-bytes N (1GiB; suffixes KiB, MiB, GiB), --value-bytes B (4096),
// --etcd-size-bytes N (as --size-bytes), --runs N (1), --only stratakv,etcd, --clients N (16),
// --put-bytes B (100), --auto-sync-ms N (500), --client-timeout-ms N (15000), --warmup-ms N
// (5000), --before-ms N (an estimate from the size, then the previous run's migration × 1.25),
// --zone-delay-ms N (0: the new members' peer ports direct; > 0: behind test/net's TCP proxy,
// that many ms one way, as the integration test does), --serve-flags "…" (extra `stratakv
// serve` flags for every member), --new-members-nice N (0; the new members of both systems are
// started with `nice -n N`, so that on this shared host their catch-up takes only the CPU the old
// members and the load leave, as on separate machines), --keep-logs DIR (copy the members' logs there before their
// folders are removed), --results-file PATH, --no-results-file. The Markdown part
// of the output is appended to bench/results/migrate-<UTC date>.md.
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { REPOSITORY } from './cluster/launchers.ts';
import { cleanupSync, installCleanupHandlers, keepLogsIn } from './cluster/processes.ts';
import { printRunHeader, readRunHeader, runHeaderMarkdown } from './cluster/run-header.ts';
import { loadAverage, median, summarize } from './cluster/stats.ts';
import { describeGaps, errorsIn, gapsByStep, signedSeconds } from './migrate/analysis.ts';
import { describeCpu } from './migrate/cpu-sampler.ts';
import { etcdUnavailable, runEtcd } from './migrate/etcd-move.ts';
import { OUTCOME_AMBIGUOUS, OUTCOME_FAILED } from './migrate/load-types.ts';
import type { RunSettings, SystemRun } from './migrate/state.ts';
import { runStratakv } from './migrate/stratakv-move.ts';

const { values: options } = parseArgs({
  options: {
    'size-bytes': { type: 'string', default: '1GiB' },
    'value-bytes': { type: 'string', default: '4096' },
    'etcd-size-bytes': { type: 'string' },
    runs: { type: 'string', default: '1' },
    only: { type: 'string', default: 'stratakv,etcd' },
    clients: { type: 'string', default: '16' },
    'put-bytes': { type: 'string', default: '100' },
    'auto-sync-ms': { type: 'string', default: '500' },
    'client-timeout-ms': { type: 'string', default: '15000' },
    'warmup-ms': { type: 'string', default: '5000' },
    'before-ms': { type: 'string' },
    'zone-delay-ms': { type: 'string', default: '0' },
    'serve-flags': { type: 'string', default: '' },
    'keep-logs': { type: 'string' },
    'new-members-nice': { type: 'string', default: '0' },
    'results-file': { type: 'string' },
    'no-results-file': { type: 'boolean', default: false },
  },
});

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
const SYSTEMS = ['stratakv', 'etcd'] as const;
type System = (typeof SYSTEMS)[number];

function parseSize(name: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|K|M|G)?$/i.exec(text.trim());
  if (match === null) throw new Error(`--${name}: ${JSON.stringify(text)} is not a size (bytes, or with KiB, MiB, GiB)`);
  const unit = (match[2] ?? '').toUpperCase().replace('IB', '');
  const scale = unit === 'K' ? KIB : unit === 'M' ? MIB : unit === 'G' ? GIB : 1;
  return Math.round(Number(match[1]) * scale);
}

function integer(name: string, text: string | undefined, min: number, max: number): number {
  const value = Number(text);
  if (!(Number.isInteger(value) && value >= min && value <= max)) throw new Error(`--${name} must be an integer in ${min}..${max}`);
  return value;
}

const SIZE_BYTES = parseSize('size-bytes', options['size-bytes']);
const ETCD_SIZE_BYTES = parseSize('etcd-size-bytes', options['etcd-size-bytes'] ?? options['size-bytes']);
const VALUE_BYTES = integer('value-bytes', options['value-bytes'], 1, 1 * MIB);
const RUNS = integer('runs', options.runs, 1, 10);
const CLIENTS = integer('clients', options.clients, 1, 256);
const PUT_BYTES = integer('put-bytes', options['put-bytes'], 1, 64 * KIB);
const AUTO_SYNC_MS = integer('auto-sync-ms', options['auto-sync-ms'], 1, 600_000);
const CLIENT_TIMEOUT_MS = integer('client-timeout-ms', options['client-timeout-ms'], 100, 600_000);
const WARMUP_MS = integer('warmup-ms', options['warmup-ms'], 0, 600_000);
const BEFORE_MS = options['before-ms'] === undefined ? undefined : integer('before-ms', options['before-ms'], 1_000, 3_600_000);
const ZONE_DELAY_MS = integer('zone-delay-ms', options['zone-delay-ms'], 0, 1_000);
const NEW_MEMBERS_NICE = integer('new-members-nice', options['new-members-nice'], 0, 19);
const SERVE_FLAGS = options['serve-flags'].split(' ').filter((item) => item !== '');
const ONLY: System[] = [];
for (const part of options.only.split(',').map((item) => item.trim()).filter((item) => item !== '')) {
  if (!(SYSTEMS as readonly string[]).includes(part)) throw new Error(`--only: unknown system ${part} (stratakv, etcd)`);
  if (!ONLY.includes(part as System)) ONLY.push(part as System);
}
if (ONLY.length === 0) throw new Error('--only: none given');
for (const [name, size] of [['size-bytes', SIZE_BYTES], ['etcd-size-bytes', ETCD_SIZE_BYTES]] as const) {
  if (!(size >= VALUE_BYTES && size <= 16 * GIB)) throw new Error(`--${name} must be between --value-bytes and 16 GiB`);
}
/** Before the first run, the migration is guessed to move the state at this rate (it only sizes the stretch before it). */
const GUESS_BYTES_PER_SECOND: Readonly<Record<System, number>> = { stratakv: 5 * MIB, etcd: 16 * MIB };
const GUESS_FIXED_MS = 30_000;
const BEFORE_FACTOR = 1.25;

function describe(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

installCleanupHandlers();
if (options['keep-logs'] !== undefined) keepLogsIn(options['keep-logs']);
const runHeader = await readRunHeader('migrate');
const { startedAt, command } = runHeader;
const keysOf = (system: System): number => Math.max(1, Math.round((system === 'etcd' ? ETCD_SIZE_BYTES : SIZE_BYTES) / VALUE_BYTES));
const sizeText = (system: System): string => `${keysOf(system)} keys × ${VALUE_BYTES} B = ${((keysOf(system) * VALUE_BYTES) / MIB).toFixed(0)} MiB of values`;
const sizes =
  `${ONLY.map((system) => `${system}: ${sizeText(system)}`).join('; ')}; load: ${CLIENTS} clients, ${PUT_BYTES}-byte puts, auto-sync ${AUTO_SYNC_MS} ms, ` +
  `put deadline ${CLIENT_TIMEOUT_MS} ms; ${WARMUP_MS} ms warm-up; zone delay ${ZONE_DELAY_MS === 0 ? 'none (no proxy)' : `${ZONE_DELAY_MS} ms one way`}` +
  `${NEW_MEMBERS_NICE > 0 ? `; new members started with nice ${NEW_MEMBERS_NICE} (both systems: models new machines)` : ''}` +
  `${SERVE_FLAGS.length > 0 ? `; serve flags ${SERVE_FLAGS.join(' ')}` : ''}; ${RUNS} run(s)`;
printRunHeader(runHeader, sizes);

const runs: Record<System, SystemRun[]> = { stratakv: [], etcd: [] };
const failures: string[] = [];
const skipped: Partial<Record<System, string>> = {};
const etcdReason = etcdUnavailable();
if (ONLY.includes('etcd') && etcdReason !== undefined) skipped.etcd = etcdReason;
try {
  for (let run = 1; run <= RUNS; run += 1) {
    const order = run % 2 === 1 ? ONLY : [...ONLY].reverse();
    for (const system of order) {
      if (skipped[system] !== undefined) continue;
      const previous = runs[system][runs[system].length - 1];
      const stateBytes = keysOf(system) * VALUE_BYTES;
      const beforeMs =
        BEFORE_MS ??
        (previous !== undefined
          ? Math.round((previous.timeline.moveToMs - previous.timeline.moveFromMs) * BEFORE_FACTOR)
          : Math.round(GUESS_FIXED_MS + (stateBytes / GUESS_BYTES_PER_SECOND[system]) * 1000));
      const settings: RunSettings = {
        keys: keysOf(system),
        valueBytes: VALUE_BYTES,
        load: { clients: CLIENTS, valueBytes: PUT_BYTES, autoSyncIntervalMs: AUTO_SYNC_MS, timeoutMs: CLIENT_TIMEOUT_MS },
        warmupMs: WARMUP_MS,
        beforeMs,
        zoneDelayMs: ZONE_DELAY_MS,
        newMembersNice: NEW_MEMBERS_NICE,
        log: (line) => console.log(line),
      };
      console.log(`\nrun ${run}/${RUNS}, ${system}: ${sizeText(system)}; load average ${loadAverage()}`);
      const started = performance.now();
      try {
        const result = system === 'stratakv' ? await runStratakv(settings, SERVE_FLAGS) : await runEtcd(settings);
        runs[system].push(result);
        printRun(result);
      } catch (error) {
        failures.push(`run ${run} ${system}: ${describe(error).split('\n')[0] ?? ''}`);
        console.log(`  FAILED: ${describe(error)}`);
      }
      console.log(`  (${system} run took ${((performance.now() - started) / 1000).toFixed(0)} s)`);
    }
  }
} finally {
  cleanupSync();
}
report();
if (failures.length > 0 || ONLY.some((system) => runs[system].some((run) => !run.timeline.outcome.ok))) process.exitCode = 1;

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

// printRun prints one run's figures as it ends (the table at the end has them all).
function printRun(result: SystemRun): void {
  const { timeline } = result;
  const origin = timeline.moveFromMs;
  for (const window of [timeline.before, timeline.during, timeline.after]) {
    console.log(
      `  ${window.name.padEnd(6)} ${seconds(window.toMs - window.fromMs).padStart(6)} s: ${window.acknowledged} puts (${window.putsPerSecond.toFixed(0)}/s), ` +
        `p50 ${window.p50Ms.toFixed(1)} p99 ${window.p99Ms.toFixed(1)} p99.9 ${window.p999Ms.toFixed(1)} max ${window.maxMs.toFixed(0)} ms; ` +
        `failed ${window.failed}, ambiguous ${window.ambiguous}; longest gaps ${describeGaps(window, window.name === 'during' ? timeline.outcome.steps : [], origin)}`,
    );
    console.log(`         CPU: ${describeCpu(timeline.cpu[window.name as 'before' | 'during' | 'after'])}`);
  }
  if (timeline.outcome.steps.length > 0) console.log(`  longest gap inside each step: ${gapsByStep(timeline.report, timeline.outcome.steps)}`);
  console.log(`  learners added and catching up: ${timeline.catchUp.seconds.toFixed(1)} s, ${timeline.catchUp.acknowledged} puts, p99 ${timeline.catchUp.p99Ms.toFixed(1)} ms; CPU ${describeCpu(timeline.cpu.catchUp)}`);
  console.log(`  leaders seen: ${timeline.leaders.leaders.map((leader) => `${leader.id.toString(16)} (term ${leader.term}, ${signedSeconds(leader.atMs - origin)})`).join(' → ')}; changes during the move ${timeline.leaderChangesDuring}, outside ${timeline.leaderChangesOutside}`);
  console.log(`  ${result.acknowledged.text}; ${result.oldMembers}`);
  for (const note of timeline.outcome.notes) console.log(`  step: ${note}`);
  for (const note of result.notes) console.log(`  note: ${note}`);
}

interface Figure {
  readonly name: string;
  readonly unit: string;
  readonly digits: number;
  readonly value: (run: SystemRun) => number;
  /** goal applies to stratakv (etcd is the comparison). */
  readonly goal?: { readonly text: string; readonly met: (value: number) => boolean };
}

function report(): void {
  const endedAt = new Date();
  const ratio = (top: number, bottom: number): number => top / bottom;
  const figures: Figure[] = [
    { name: 'migration, start to end', unit: 's', digits: 1, value: (run) => (run.timeline.moveToMs - run.timeline.moveFromMs) / 1000 },
    { name: 'window before (as long as the migration unless shorter)', unit: 's', digits: 1, value: (run) => (run.timeline.before.toMs - run.timeline.before.fromMs) / 1000 },
    { name: 'longest write gap, during', unit: 'ms', digits: 0, value: (run) => run.timeline.during.longestGapMs },
    { name: 'longest write gap, before', unit: 'ms', digits: 0, value: (run) => run.timeline.before.longestGapMs },
    { name: 'longest write gap, after', unit: 'ms', digits: 0, value: (run) => run.timeline.after.longestGapMs },
    { name: 'longest gap during ÷ before', unit: '×', digits: 2, value: (run) => ratio(run.timeline.during.longestGapMs, run.timeline.before.longestGapMs), goal: { text: '≤ 1.5', met: (value) => value <= 1.5 } },
    { name: 'longest gap during ÷ after', unit: '×', digits: 2, value: (run) => ratio(run.timeline.during.longestGapMs, run.timeline.after.longestGapMs) },
    { name: 'put p50 before / during / after', unit: 'ms', digits: 1, value: () => Number.NaN },
    { name: 'put p99, before', unit: 'ms', digits: 1, value: (run) => run.timeline.before.p99Ms },
    { name: 'put p99, during', unit: 'ms', digits: 1, value: (run) => run.timeline.during.p99Ms },
    { name: 'put p99, after', unit: 'ms', digits: 1, value: (run) => run.timeline.after.p99Ms },
    { name: 'put p99.9, before', unit: 'ms', digits: 1, value: (run) => run.timeline.before.p999Ms },
    { name: 'put p99.9, during', unit: 'ms', digits: 1, value: (run) => run.timeline.during.p999Ms },
    { name: 'put p99.9, after', unit: 'ms', digits: 1, value: (run) => run.timeline.after.p999Ms },
    { name: 'p99.9 during − before', unit: 'ms', digits: 1, value: (run) => run.timeline.during.p999Ms - run.timeline.before.p999Ms, goal: { text: '≤ +100 ms', met: (value) => value <= 100 } },
    { name: 'p99.9 during − after', unit: 'ms', digits: 1, value: (run) => run.timeline.during.p999Ms - run.timeline.after.p999Ms },
    { name: 'puts/s, before', unit: 'puts/s', digits: 0, value: (run) => run.timeline.before.putsPerSecond },
    { name: 'puts/s, during', unit: 'puts/s', digits: 0, value: (run) => run.timeline.during.putsPerSecond },
    { name: 'puts/s, after', unit: 'puts/s', digits: 0, value: (run) => run.timeline.after.putsPerSecond },
    { name: 'learners added → caught up (stratakv) / add → promoted, summed (etcd)', unit: 's', digits: 1, value: (run) => run.timeline.catchUp.seconds },
    { name: 'put p99 while learners catch up', unit: 'ms', digits: 1, value: (run) => run.timeline.catchUp.p99Ms },
    { name: 'put p99 while learners catch up ÷ p99 before', unit: '×', digits: 2, value: (run) => ratio(run.timeline.catchUp.p99Ms, run.timeline.before.p99Ms), goal: { text: '≤ 1.1', met: (value) => value <= 1.1 } },
    { name: 'CPU busy, whole machine, before', unit: 'cores', digits: 2, value: (run) => run.timeline.cpu.before?.machineCores ?? Number.NaN },
    { name: 'CPU busy, whole machine, during', unit: 'cores', digits: 2, value: (run) => run.timeline.cpu.during?.machineCores ?? Number.NaN },
    { name: 'CPU busy, whole machine, while learners catch up', unit: 'cores', digits: 2, value: (run) => run.timeline.cpu.catchUp?.machineCores ?? Number.NaN },
    { name: "old members' CPU while learners catch up", unit: 'cores', digits: 2, value: (run) => run.timeline.cpu.catchUp?.byGroup['old members'] ?? Number.NaN },
    { name: "new members' CPU while learners catch up", unit: 'cores', digits: 2, value: (run) => run.timeline.cpu.catchUp?.byGroup['new members'] ?? Number.NaN },
    { name: 'failed puts, whole run', unit: 'puts', digits: 0, value: (run) => sumOutcome(run, 'failed'), goal: { text: '0', met: (value) => value === 0 } },
    { name: 'ambiguous puts, whole run', unit: 'puts', digits: 0, value: (run) => sumOutcome(run, 'ambiguous'), goal: { text: '0', met: (value) => value === 0 } },
    { name: 'leader changes during the migration', unit: 'changes', digits: 0, value: (run) => run.timeline.leaderChangesDuring, goal: { text: '1', met: (value) => value === 1 } },
    { name: 'leader changes outside it', unit: 'changes', digits: 0, value: (run) => run.timeline.leaderChangesOutside },
    { name: 'acknowledged puts missing afterwards', unit: 'puts', digits: 0, value: (run) => (run.acknowledged.checked ? run.acknowledged.missing : Number.NaN), goal: { text: '0', met: (value) => value === 0 } },
    { name: 'leader database size before', unit: 'MiB', digits: 0, value: (run) => run.dbSizeBytes / MIB },
    { name: 'preload', unit: 's', digits: 0, value: (run) => run.preloadSeconds },
  ];
  const cell = (values: readonly number[], digits: number): string => {
    const finite = values.filter(Number.isFinite);
    if (finite.length === 0) return '–';
    const summary = summarize(finite);
    return summary.runs === 1 ? summary.median.toFixed(digits) : `${summary.median.toFixed(digits)} [${summary.min.toFixed(digits)}–${summary.max.toFixed(digits)}]`;
  };
  const p50Cell = (system: System): string => {
    const list = runs[system];
    if (list.length === 0) return '–';
    return ['before', 'during', 'after'].map((name) => cell(list.map((run) => run.timeline[name as 'before' | 'during' | 'after'].p50Ms), 1)).join(' / ');
  };
  const rows: string[][] = [];
  const json: object[] = [];
  for (const figure of figures) {
    const cells = ONLY.map((system) => (figure.name.startsWith('put p50') ? p50Cell(system) : cell(runs[system].map(figure.value), figure.digits)));
    const stratakvMedian = median(runs.stratakv.map(figure.value));
    const verdict = figure.goal === undefined || !ONLY.includes('stratakv') || !Number.isFinite(stratakvMedian) ? '' : figure.goal.met(stratakvMedian) ? 'met' : 'NOT met';
    const worst = figure.goal === undefined ? '' : runs.stratakv.filter((run) => !figure.goal!.met(figure.value(run))).length;
    rows.push([`${figure.name} (${figure.unit})`, ...cells, figure.goal?.text ?? '–', verdict === '' ? '' : `${verdict}${runs.stratakv.length > 1 ? ` (${worst} of ${runs.stratakv.length} runs miss)` : ''}`]);
    for (const system of ONLY) {
      const values = runs[system].map(figure.value).filter(Number.isFinite);
      if (values.length === 0) continue;
      json.push({ bench: 'migrate', system, name: figure.name, unit: figure.unit, median: median(values), min: Math.min(...values), max: Math.max(...values), runs: values.length, ...(figure.goal !== undefined && system === 'stratakv' ? { goal: figure.goal.text, met: figure.goal.met(median(values)) } : {}) });
    }
  }
  const header = ['figure', ...ONLY.map((system) => (system === 'stratakv' ? 'stratakv migrate run' : 'etcd, manual procedure')), 'goal (stratakv)', 'verdict'];
  const markdown: string[] = [];
  markdown.push(`## Run ${startedAt.toISOString().slice(0, 16).replace('T', ' ')}–${endedAt.toISOString().slice(11, 16)} UTC`);
  markdown.push('');
  markdown.push(`- **Command:** \`${command}\`, run once`);
  markdown.push(`- **Sizes:** ${sizes}`);
  markdown.push(...runHeaderMarkdown(runHeader));
  markdown.push(`- median [min–max] over ${RUNS} run(s), each on fresh clusters; a goal is judged on the stratakv median`);
  markdown.push('');
  markdown.push(`| ${header.join(' | ')} |`);
  markdown.push(`|${header.map(() => '---').join('|')}|`);
  for (const row of rows) markdown.push(`| ${row.join(' | ')} |`);
  markdown.push('');
  for (const system of ONLY) {
    if (skipped[system] !== undefined) markdown.push(`- ${system} was not measured: ${skipped[system]}`);
    for (const [index, run] of runs[system].entries()) {
      const { timeline } = run;
      const origin = timeline.moveFromMs;
      markdown.push(`- ${system}, run ${index + 1}: ${run.description}; ${run.keys} keys × ${run.valueBytes} B, leader database ${(run.dbSizeBytes / MIB).toFixed(0)} MiB; preload ${run.preloadSeconds.toFixed(0)} s`);
      markdown.push(`  - migration ${timeline.outcome.ok ? 'finished' : `FAILED (${timeline.outcome.error ?? ''})`} in ${seconds(timeline.moveToMs - timeline.moveFromMs)} s; steps: ${timeline.outcome.steps.map((step) => `${step.name} ${seconds(step.toMs - step.fromMs)} s`).join(', ')}`);
      if (timeline.beforeShortMs > 0) markdown.push(`  - the window before is ${seconds(timeline.beforeShortMs)} s shorter than the migration (the load ran only ${seconds(timeline.before.toMs - timeline.before.fromMs)} s before it: --before-ms, or the guess from the size)`);
      for (const window of [timeline.before, timeline.during, timeline.after]) {
        markdown.push(
          `  - ${window.name}: ${seconds(window.toMs - window.fromMs)} s, ${window.acknowledged} puts, failed ${window.failed}, ambiguous ${window.ambiguous}, max ${window.maxMs.toFixed(0)} ms; ` +
            `longest gaps ${describeGaps(window, window.name === 'during' ? timeline.outcome.steps : [], origin)} (times from the migration's start); ` +
            `CPU ${describeCpu(timeline.cpu[window.name as 'before' | 'during' | 'after'])}`,
        );
      }
      markdown.push(`  - while the learners were added and caught up: ${timeline.catchUp.acknowledged} puts in ${timeline.catchUp.seconds.toFixed(1)} s, p50 ${timeline.catchUp.p50Ms.toFixed(1)} p99 ${timeline.catchUp.p99Ms.toFixed(1)} p99.9 ${timeline.catchUp.p999Ms.toFixed(1)} ms; CPU ${describeCpu(timeline.cpu.catchUp)}`);
      if (timeline.outcome.steps.length > 0) markdown.push(`  - longest gap inside each step: ${gapsByStep(timeline.report, timeline.outcome.steps)}`);
      const errors = errorsIn(timeline.report, { name: 'run', fromMs: 0, toMs: Number.MAX_VALUE });
      if (Object.keys(errors).length > 0) markdown.push(`  - errors: ${Object.entries(errors).map(([kind, count]) => `${count} × ${kind}`).join('; ')}`);
      markdown.push(`  - leaders seen (Status every 200 ms): ${timeline.leaders.leaders.map((leader) => `${leader.id.toString(16)} (term ${leader.term}, at ${signedSeconds(leader.atMs - origin)})`).join(' → ')}; terms ${timeline.leaders.firstTerm} → ${timeline.leaders.lastTerm}; ${seconds(timeline.leaders.withoutLeaderMs)} s of polls with no leader named`);
      markdown.push(`  - ${run.acknowledged.text}; ${run.oldMembers}; the clients ended on ${[...new Set(timeline.report.endpointsAtEnd.map((list) => list.join(',')))].join(' | ')}`);
      for (const note of timeline.outcome.notes) markdown.push(`  - step: ${note}`);
      for (const note of run.notes) markdown.push(`  - ${note}`);
    }
  }
  if (failures.length > 0) markdown.push(`- FAILED: ${failures.join('; ')}`);
  console.log('');
  console.log(markdown.join('\n'));
  console.log('');
  for (const line of json) console.log(JSON.stringify(line));
  if (!options['no-results-file']) {
    const path = options['results-file'] ?? join(REPOSITORY, 'bench', 'results', `migrate-${startedAt.toISOString().slice(0, 10)}.md`);
    if (!existsSync(path)) {
      appendFileSync(
        path,
        `# bench:migrate — ${startedAt.toISOString().slice(0, 10)}: a cluster moved onto new members under load, stratakv and etcd (issue 14)\n\n` +
          'Each run below was appended by `npm run bench:migrate` as it ended; notes after a run were added by hand and say so.\n\n',
      );
    }
    appendFileSync(path, `${markdown.join('\n')}\n\n`);
    console.log(`\nappended to ${path}`);
  }
}

function sumOutcome(run: SystemRun, kind: 'failed' | 'ambiguous'): number {
  const { report } = run.timeline;
  const wanted = kind === 'failed' ? OUTCOME_FAILED : OUTCOME_AMBIGUOUS;
  return report.outcomes.filter((outcome) => outcome === wanted).length;
}

// bench/integrity.ts — `npm run bench:integrity`: the state-integrity figures of issue 13 in one
// run, each beside its baseline measured in the same run, interleaved, on this machine.
//
// Five phases, one after the other (one heavy thing at a time on a shared 2-core machine):
//  put     (bench/integrity/put.ts): 3-process clusters that differ only in their serve flags —
//          the digest off (--unsafe-no-state-digest), on without checkpoints, on with the default
//          checkpoints, on with a checkpoint every --check-entries entries — one put window each
//          per round, order rotating: puts/s, p50, p99, the members' CPU per put; then
//          `etcdctl endpoint hashkv` on every member (the digest-off cluster must answer 0);
//  check   (bench/integrity/check.ts): Admin.Check (IntegrityClient, what `stratakv check`
//          calls) on the leader of a 3-process cluster, and RaftNode.checkIntegrity() on three
//          RaftNodes on disk in this process: ms per check, quiet and beside a put load, and the
//          entries one check adds;
//  open    (bench/integrity/open.ts): KvStateMachine.open() verifying every key against the
//          digest, cold (files evicted from the page cache) and warm, per GiB, against a plain
//          classic-level iteration of the same database and dd iflag=direct of its files;
//  diff    (bench/integrity/diff.ts): the Merkle diff between single-member clusters of
//          --diff-keys keys with 1 and with 100 planted differences: bytes on the wire both
//          ways (every TCP byte, and the messages), round trips, seconds;
//  stream  (bench/integrity/stream.ts): one member's log-delta stream of the entries that built
//          a state against its Maintenance.Snapshot stream of that state, alternating, with dd
//          of the snapshot file and of the WAL.
// The end is a Markdown table (medians, [min–max] over rounds, ratios of medians with the
// per-round ratios' range where the two sides alternate in a round), the run's details, and
// JSON lines. The Markdown part is also appended to bench/results/integrity-<UTC date>.md
// (--results-file PATH, or --no-results-file).
//
// Options: --rounds R (check, open, diff, stream; default 3), --put-rounds R (default 8),
// --only put,check,open,diff,stream, --put-concurrency N (64), --put-value-bytes B (100),
// --put-window-ms N (5000), --put-warmup-ms N (1000), --check-entries N (1000: the put
// phase's "checks" cluster), --checks N (checks per side per round, 20),
// --check-load-concurrency N (16), --open-keys N (1,000,000) --open-value-bytes B (1024: about
// 1 GiB of LevelDB), --diff-keys N (1,000,000), --diff-value-bytes B
// (100), --stream-keys N (200,000), --stream-value-bytes B (1024), --stream-puts-per-entry N
// (1), --serve-flags "…" (extra `stratakv serve` flags for every member).
// STRATAKV_BENCH_NODE_ARGS passes flags to the members' node (--cpu-prof, say).
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { LoadHarness } from './cluster/harness.ts';
import { REPOSITORY } from './cluster/launchers.ts';
import { cleanupSync, installCleanupHandlers, makeTempFolder, removeTempFolder } from './cluster/processes.ts';
import { printRunHeader, readRunHeader, runHeaderMarkdown } from './cluster/run-header.ts';
import { loadAverage, median, printFooter, summarize } from './cluster/stats.ts';
import { measureCheck, measureProcessCheck, type CheckFigures, type ProcessCheckFigures } from './integrity/check.ts';
import { measureDiffs, type DiffFigures, type DiffSample } from './integrity/diff.ts';
import { measureOpen, type OpenFigures } from './integrity/open.ts';
import { measurePut, type PutConfig, type PutFigures, type PutWindow } from './integrity/put.ts';
import { measureStreams, type StreamFigures } from './integrity/stream.ts';

const { values: options } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'put-rounds': { type: 'string', default: '8' },
    only: { type: 'string', default: 'put,check,open,diff,stream' },
    'put-concurrency': { type: 'string', default: '64' },
    'put-value-bytes': { type: 'string', default: '100' },
    'put-window-ms': { type: 'string', default: '5000' },
    'put-warmup-ms': { type: 'string', default: '1000' },
    'check-entries': { type: 'string', default: '1000' },
    checks: { type: 'string', default: '20' },
    'check-load-concurrency': { type: 'string', default: '16' },
    'open-keys': { type: 'string', default: '1000000' },
    'open-value-bytes': { type: 'string', default: '1024' },
    'diff-keys': { type: 'string', default: '1000000' },
    'diff-value-bytes': { type: 'string', default: '100' },
    'stream-keys': { type: 'string', default: '200000' },
    'stream-value-bytes': { type: 'string', default: '1024' },
    'stream-puts-per-entry': { type: 'string', default: '1' },
    'serve-flags': { type: 'string', default: '' },
    'results-file': { type: 'string' },
    'no-results-file': { type: 'boolean', default: false },
  },
});

const PHASE_NAMES = ['put', 'check', 'open', 'diff', 'stream'] as const;
type Phase = (typeof PHASE_NAMES)[number];
const integer = (name: string, min: number, max: number): number => {
  const value = Number(options[name as keyof typeof options]);
  if (!(Number.isInteger(value) && value >= min && value <= max)) throw new Error(`--${name} must be an integer in ${min}..${max}`);
  return value;
};
const ROUNDS = integer('rounds', 1, 15);
const PUT_ROUNDS = integer('put-rounds', 1, 30);
const PUT_CONCURRENCY = integer('put-concurrency', 1, 1_024);
const PUT_VALUE_BYTES = integer('put-value-bytes', 1, 65_536);
const PUT_WINDOW_MS = integer('put-window-ms', 500, 60_000);
const PUT_WARMUP_MS = integer('put-warmup-ms', 0, 60_000);
const CHECK_ENTRIES = integer('check-entries', 10, 1_000_000);
const CHECKS = integer('checks', 1, 1_000);
const CHECK_LOAD_CONCURRENCY = integer('check-load-concurrency', 1, 256);
const OPEN_KEYS = integer('open-keys', 1_000, 20_000_000);
const OPEN_VALUE_BYTES = integer('open-value-bytes', 1, 65_536);
const DIFF_KEYS = integer('diff-keys', 1_000, 10_000_000);
const DIFF_VALUE_BYTES = integer('diff-value-bytes', 1, 65_536);
const STREAM_KEYS = integer('stream-keys', 1_000, 10_000_000);
const STREAM_VALUE_BYTES = integer('stream-value-bytes', 1, 65_536);
const STREAM_PUTS_PER_ENTRY = integer('stream-puts-per-entry', 1, 128);
const SERVE_FLAGS = options['serve-flags'].split(' ').filter((item) => item !== '');
const PHASES = new Set<Phase>();
for (const item of options.only.split(',').map((part) => part.trim()).filter((part) => part !== '')) {
  if (!(PHASE_NAMES as readonly string[]).includes(item)) throw new Error(`--only: unknown phase ${item} (${PHASE_NAMES.join(', ')})`);
  PHASES.add(item as Phase);
}
const CHECK_PRELOAD_KEYS = 1_000;
const GIB = 2 ** 30;
const KIB = 1024;
const NO_CHECKS = ['--integrity-check-entries', '0', '--integrity-check-interval', '0'];
const PUT_CONFIGS: readonly PutConfig[] = [
  { name: 'off', description: 'digest off (--unsafe-no-state-digest), no checkpoints', serveFlags: [...SERVE_FLAGS, '--unsafe-no-state-digest', ...NO_CHECKS] },
  { name: 'on', description: 'digest on, no checkpoints', serveFlags: [...SERVE_FLAGS, ...NO_CHECKS] },
  { name: 'default', description: 'digest on, default checkpoints (10,000 entries or 60 s)', serveFlags: [...SERVE_FLAGS] },
  {
    name: 'checks',
    description: `digest on, a checkpoint every ${CHECK_ENTRIES} entries`,
    serveFlags: [...SERVE_FLAGS, '--integrity-check-entries', String(CHECK_ENTRIES), '--integrity-check-interval', '0'],
  },
];

function describe(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

installCleanupHandlers();
const runHeader = await readRunHeader('integrity');
const { startedAt, command } = runHeader;
const log = (line: string): void => console.log(line);
const sizes =
  `put: ${PUT_ROUNDS} rounds × ${PUT_CONFIGS.length} clusters, ${PUT_CONCURRENCY} outstanding ${PUT_VALUE_BYTES}-byte puts, ${PUT_WARMUP_MS} + ${PUT_WINDOW_MS} ms windows; ` +
  `check: ${CHECKS} checks per side per round; open: ${OPEN_KEYS} keys × ${OPEN_VALUE_BYTES} B; diff: ${DIFF_KEYS} keys × ${DIFF_VALUE_BYTES} B; ` +
  `stream: ${STREAM_KEYS} keys × ${STREAM_VALUE_BYTES} B, ${STREAM_PUTS_PER_ENTRY} put(s) per entry; ${ROUNDS} round(s) for check, open, diff, stream`;
printRunHeader(runHeader, `${sizes}; phases ${[...PHASES].join(', ')}`);

let put: PutFigures | undefined;
let check: CheckFigures | undefined;
let processCheck: ProcessCheckFigures | undefined;
let open: OpenFigures | undefined;
let diff: DiffFigures | undefined;
let stream: StreamFigures | undefined;
const failures: string[] = [];
const phaseSeconds: Record<string, number> = {};
const harness = PHASES.has('put') || PHASES.has('check') ? LoadHarness.start(1) : undefined;
const runPhase = async (phase: Phase, title: string, work: () => Promise<void>): Promise<void> => {
  if (!PHASES.has(phase)) return;
  console.log(`\n${phase}: ${title}`);
  const started = performance.now();
  try {
    await work();
  } catch (error) {
    failures.push(`${phase}: ${describe(error).split('\n')[0] ?? ''}`);
    console.log(`  FAILED: ${describe(error)}`);
  }
  phaseSeconds[phase] = (performance.now() - started) / 1000;
  console.log(`  (${phase} took ${phaseSeconds[phase].toFixed(0)} s; load average ${loadAverage()})`);
};
try {
  await runPhase('put', 'put throughput with the digest on and off, and with periodic checks', async () => {
    if (harness === undefined) throw new Error('no harness');
    put = await measurePut({ configs: PUT_CONFIGS, rounds: PUT_ROUNDS, concurrency: PUT_CONCURRENCY, valueBytes: PUT_VALUE_BYTES, windowMs: PUT_WINDOW_MS, warmupMs: PUT_WARMUP_MS, harness, log });
  });
  await runPhase('check', 'one cross-replica check: Admin.Check on 3 processes, RaftNode.checkIntegrity in this process', async () => {
    if (harness === undefined) throw new Error('no harness');
    processCheck = await measureProcessCheck({ rounds: ROUNDS, checks: CHECKS, loadConcurrency: CHECK_LOAD_CONCURRENCY, serveFlags: SERVE_FLAGS, harness, log });
    const folder = makeTempFolder('stratakv-bench-integrity-check-');
    try {
      check = await measureCheck({ folder, rounds: ROUNDS, checks: CHECKS, loadConcurrency: CHECK_LOAD_CONCURRENCY, preloadKeys: CHECK_PRELOAD_KEYS, log });
    } finally {
      removeTempFolder(folder);
    }
  });
  await runPhase('open', 'verification at open vs a plain LevelDB iteration and dd', async () => {
    const folder = makeTempFolder('stratakv-bench-integrity-open-');
    try {
      open = await measureOpen({ folder, keys: OPEN_KEYS, valueBytes: OPEN_VALUE_BYTES, rounds: ROUNDS, log });
    } finally {
      removeTempFolder(folder);
    }
  });
  await runPhase('diff', `the Merkle diff of ${DIFF_KEYS} keys, 1 and 100 differences`, async () => {
    const folder = makeTempFolder('stratakv-bench-integrity-diff-');
    try {
      diff = await measureDiffs({ folder, keys: DIFF_KEYS, valueBytes: DIFF_VALUE_BYTES, rounds: ROUNDS, serveFlags: SERVE_FLAGS, log });
    } finally {
      removeTempFolder(folder);
    }
  });
  await runPhase('stream', 'the log-delta stream against the snapshot stream, one member', async () => {
    const folder = makeTempFolder('stratakv-bench-integrity-stream-');
    try {
      stream = await measureStreams({ folder, keys: STREAM_KEYS, valueBytes: STREAM_VALUE_BYTES, putsPerEntry: STREAM_PUTS_PER_ENTRY, rounds: ROUNDS, serveFlags: SERVE_FLAGS, log });
    } finally {
      removeTempFolder(folder);
    }
  });
} finally {
  await harness?.close();
  cleanupSync();
}
report();
if (failures.length > 0) process.exitCode = 1;

function report(): void {
  const endedAt = new Date();
  const rows: string[][] = [];
  const json: object[] = [];
  const spread = (values: readonly number[], digits: number, scale = 1): string => {
    const finite = values.filter(Number.isFinite);
    if (finite.length === 0) return '–';
    const summary = summarize(finite.map((value) => value / scale));
    return summary.runs === 1 ? summary.median.toFixed(digits) : `${summary.median.toFixed(digits)} [${summary.min.toFixed(digits)}–${summary.max.toFixed(digits)}]`;
  };
  const ratioCell = (top: readonly number[], bottom: readonly number[], paired: boolean): string => {
    const ratio = median(top) / median(bottom);
    if (!Number.isFinite(ratio)) return '–';
    const perRound = paired && top.length === bottom.length ? top.map((value, index) => value / (bottom[index] ?? Number.NaN)).filter(Number.isFinite) : [];
    return perRound.length > 1 ? `${ratio.toFixed(2)} [${Math.min(...perRound).toFixed(2)}–${Math.max(...perRound).toFixed(2)}]` : ratio.toFixed(2);
  };
  interface Goal {
    readonly text: string;
    readonly value: number;
    readonly atLeast: boolean;
    readonly on: 'ratio' | 'value';
  }
  const verdict = (value: number, goal: Goal): string => (!Number.isFinite(value) ? '–' : (goal.atLeast ? value >= goal.value : value <= goal.value) ? 'met' : 'NOT met');
  const row = (
    phase: string,
    name: string,
    values: readonly number[],
    unit: string,
    digits: number,
    baseline?: { readonly name: string; readonly values: readonly number[]; readonly paired: boolean },
    goal?: Goal,
    scale = 1,
  ): void => {
    const base = baseline?.values ?? [];
    const ratio = median(values) / median(base);
    const checked = goal === undefined ? Number.NaN : goal.on === 'ratio' ? ratio : median(values) / scale;
    rows.push([
      phase,
      `${name} (${unit})`,
      spread(values, digits, scale),
      baseline === undefined ? '–' : `${baseline.name}: ${spread(base, digits, scale)}`,
      baseline === undefined ? '–' : ratioCell(values, base, baseline.paired),
      goal?.text ?? '–',
      goal === undefined ? '' : verdict(checked, goal),
    ]);
    const finite = values.filter(Number.isFinite);
    json.push({
      bench: 'integrity',
      phase,
      name,
      unit,
      median: median(values) / scale,
      min: finite.length > 0 ? Math.min(...finite) / scale : Number.NaN,
      max: finite.length > 0 ? Math.max(...finite) / scale : Number.NaN,
      runs: finite.length,
      ...(baseline !== undefined ? { baseline: baseline.name, baselineMedian: median(base) / scale, ratio } : {}),
      ...(goal !== undefined ? { goal: goal.text, met: verdict(checked, goal) === 'met' } : {}),
    });
  };

  if (put !== undefined) {
    const of = (name: string, pick: (window: PutWindow) => number): number[] => (put?.windows[name] ?? []).map(pick);
    const rate = (window: PutWindow): number => window.perSecond;
    const p99 = (window: PutWindow): number => window.p99Ms;
    const cpu = (window: PutWindow): number => window.membersCpuUsPerPut;
    const paired = (name: string, values: readonly number[]): { name: string; values: readonly number[]; paired: boolean } => ({ name, values, paired: true });
    row('put', 'puts/s, digest on (no checkpoints)', of('on', rate), 'puts/s', 0, paired('digest off', of('off', rate)), { text: '≥ 0.95 × off (cost ≤ 5 %)', value: 0.95, atLeast: true, on: 'ratio' });
    row('put', 'put p99, digest on (no checkpoints)', of('on', p99), 'ms', 1, paired('digest off', of('off', p99)));
    row('put', "members' CPU per put, digest on", of('on', cpu), 'µs', 0, paired('digest off', of('off', cpu)));
    row('put', 'puts/s, digest on + default checkpoints (what ships)', of('default', rate), 'puts/s', 0, paired('digest off', of('off', rate)), { text: '≥ 0.95 × off', value: 0.95, atLeast: true, on: 'ratio' });
    row('put', 'put p99, digest on + default checkpoints', of('default', p99), 'ms', 1, paired('digest off', of('off', p99)));
    row('put', 'puts/s, digest on + default checkpoints', of('default', rate), 'puts/s', 0, paired('digest on, no checkpoints', of('on', rate)));
    row('put', `puts/s, a checkpoint every ${CHECK_ENTRIES} entries`, of('checks', rate), 'puts/s', 0, paired('digest on, no checkpoints', of('on', rate)));
    row('put', `put p99, a checkpoint every ${CHECK_ENTRIES} entries`, of('checks', p99), 'ms', 1, paired('digest on, no checkpoints', of('on', p99)));
    row('put', `members' CPU per put, a checkpoint every ${CHECK_ENTRIES} entries`, of('checks', cpu), 'µs', 0, paired('digest on, no checkpoints', of('on', cpu)));
  }
  const roundMedians = (samples: CheckFigures['quiet']): number[] => samples.map((sample) => median(sample.checkMs));
  if (processCheck !== undefined) {
    row('check', 'one Admin.Check on the leader, 3 processes, quiet (median of each round)', roundMedians(processCheck.quiet), 'ms', 2);
    row('check', `one Admin.Check beside ${CHECK_LOAD_CONCURRENCY} outstanding puts`, roundMedians(processCheck.loaded), 'ms', 2);
    row('check', 'log entries one check adds (checkpoint + one report per member)', processCheck.quiet.map((sample) => sample.entriesPerCheck), 'entries', 1);
  }
  if (check !== undefined) {
    row('check', 'one RaftNode.checkIntegrity(), in this process, quiet', roundMedians(check.quiet), 'ms', 2);
    row('check', `one RaftNode.checkIntegrity() beside ${CHECK_LOAD_CONCURRENCY} outstanding puts in the same process`, roundMedians(check.loaded), 'ms', 2);
  }
  if (open !== undefined) {
    const gib = open.dbBytes / GIB;
    const perGiB = (seconds: readonly number[]): number[] => seconds.map((value) => value / gib);
    const paired = (name: string, values: readonly number[]): { name: string; values: readonly number[]; paired: boolean } => ({ name, values: perGiB(values), paired: true });
    row('open', 'open with verification, files not in the page cache', perGiB(open.verifyColdS), 's/GiB', 2, paired('classic-level full iteration, same state', open.iterateColdS));
    row('open', 'open with verification, files not in the page cache', perGiB(open.verifyColdS), 's/GiB', 2, paired('dd iflag=direct of the files', open.ddDirectS));
    row('open', 'open with verification, files in the page cache', perGiB(open.verifyWarmS), 's/GiB', 2, paired('classic-level full iteration, warm', open.iterateWarmS));
    row('open', '  of which the data scan (openVerification().durationMs), cold', perGiB(open.verifyScanColdS), 's/GiB', 2);
    row('open', 'open without verification (verifyAtOpen false), cold', open.openNoVerifyColdS, 's', 2);
  }
  if (diff !== undefined) {
    const socket = (samples: readonly DiffSample[]): number[] => samples.map((sample) => sample.socketBytesSent + sample.socketBytesReceived);
    const messages = (samples: readonly DiffSample[]): number[] => samples.map((sample) => sample.messageBytesSent + sample.messageBytesReceived);
    const keys = `${diff.keys.toLocaleString('en-US')} keys`;
    row('diff', `1 difference among ${keys}: TCP bytes both ways`, socket(diff.one), 'KiB', 1, undefined, { text: '≤ 64 KiB', value: 64, atLeast: false, on: 'value' }, KIB);
    row('diff', `1 difference: seconds, hello to release`, diff.one.map((sample) => sample.seconds), 's', 3, undefined, { text: '≤ 2 s', value: 2, atLeast: false, on: 'value' });
    row('diff', '1 difference: gRPC messages both ways', messages(diff.one), 'KiB', 1, undefined, undefined, KIB);
    row('diff', '1 difference: calls (both sides)', diff.one.map((sample) => sample.calls), 'calls', 0);
    row('diff', '1 difference: descent and leaf rounds (one parallel call per side each)', diff.one.map((sample) => sample.rounds), 'rounds', 0);
    row('diff', `100 differences among ${keys}: TCP bytes both ways`, socket(diff.hundred), 'KiB', 1, undefined, undefined, KIB);
    row('diff', '100 differences: seconds', diff.hundred.map((sample) => sample.seconds), 's', 3);
    row('diff', '100 differences: gRPC messages both ways', messages(diff.hundred), 'KiB', 1, undefined, undefined, KIB);
    row('diff', '100 differences: calls (both sides)', diff.hundred.map((sample) => sample.calls), 'calls', 0);
    row('diff', '100 differences: descent and leaf rounds', diff.hundred.map((sample) => sample.rounds), 'rounds', 0);
  }
  if (stream !== undefined) {
    row('stream', 'log-delta stream from index 1 (entry data)', stream.deltaMBps, 'MB/s', 0, { name: 'Maintenance.Snapshot of the same state', values: stream.snapshotMBps, paired: true });
    row('stream', 'log-delta stream', stream.deltaMBps, 'MB/s', 0, { name: 'dd iflag=direct of the WAL', values: stream.ddWalMBps, paired: true });
    row('stream', 'Maintenance.Snapshot stream, call to end', stream.snapshotMBps, 'MB/s', 0, { name: 'dd iflag=direct of the snapshot file', values: stream.ddSnapshotMBps, paired: true });
    row('stream', 'Maintenance.Snapshot stream, first message to end', stream.snapshotAfterFirstByteMBps, 'MB/s', 0);
    row('stream', 'seconds to hand out the state as entries', stream.deltaSeconds, 's', 2, { name: 'as a snapshot', values: stream.snapshotSeconds, paired: true });
    row('stream', 'log-delta stream', stream.deltaEntriesPerSecond, 'entries/s', 0);
  }

  const lines: string[] = [];
  const out = (line = ''): void => {
    lines.push(line);
  };
  const time = (date: Date): string => date.toISOString().slice(11, 16);
  out(`## Run ${startedAt.toISOString().slice(0, 10)} ${time(startedAt)}–${time(endedAt)} UTC`);
  out();
  out(`- **Command:** \`${command}\`${SERVE_FLAGS.length > 0 ? ` (serve flags \`${SERVE_FLAGS.join(' ')}\`)` : ''}, run once`);
  out(`- **Sizes:** ${sizes}`);
  for (const line of runHeaderMarkdown(runHeader)) out(line);
  out(`- **Phases:** ${Object.entries(phaseSeconds).map(([phase, seconds]) => `${phase} ${seconds.toFixed(0)} s`).join(', ')}`);
  out('- [min–max] over rounds; ratio = median ÷ baseline median, [range of the per-round ratios] where both sides ran in every round');
  out();
  out('| phase | figure | median [min–max] | baseline, same run | ratio | goal | |');
  out('|---|---|---|---|---|---|---|');
  for (const cells of rows) out(`| ${cells.join(' | ')} |`);
  out();
  if (put !== undefined) {
    for (const config of put.configs) {
      const windows = put.windows[config.name] ?? [];
      const errors = windows.reduce((sum, window) => sum + window.errors, 0);
      const hashes = (put.hashKv[config.name] ?? []).map((answer) => (answer.hash === undefined ? `error: ${answer.error ?? '?'}` : String(answer.hash))).join(', ');
      const snapshots = put.snapshots[config.name];
      out(
        `- put, \`${config.name}\`: ${config.description}; serve flags \`${config.serveFlags.join(' ') || '(none)'}\`; p50 ${spread(windows.map((window) => window.p50Ms), 1)} ms; ` +
          `client CPU ${spread(windows.map((window) => window.clientCpuPercent), 0)} %; ${errors} errors; ` +
          `puts/s by round ${windows.map((window) => window.perSecond.toFixed(0)).join(', ')}; members' CPU µs/put by round ${windows.map((window) => window.membersCpuUsPerPut.toFixed(0)).join(', ')}; ` +
          (snapshots === undefined ? '' : `${snapshots.count} snapshots logged by the three members, ${(snapshots.totalMs / 1000).toFixed(1)} s in all, the largest ${snapshots.largestBytes} bytes; `) +
          `\`etcdctl endpoint hashkv\` on the three members: ${hashes}`,
      );
    }
    const checksPerWindow = median((put.windows['checks'] ?? []).map((window) => window.completed)) / CHECK_ENTRIES;
    out(`- put: about ${checksPerWindow.toFixed(0)} checkpoints per window in \`checks\` (puts in the window ÷ ${CHECK_ENTRIES}; the warm-up had more).`);
  }
  if (processCheck !== undefined) {
    const all = processCheck.quiet.flatMap((sample) => sample.checkMs);
    const loadedAll = processCheck.loaded.flatMap((sample) => sample.checkMs);
    out(
      `- check, processes: ${processCheck.description}; ${all.length} quiet checks, max ${Math.max(...all).toFixed(2)} ms; ` +
        `${loadedAll.length} beside the load, max ${Math.max(...loadedAll).toFixed(2)} ms, the load at ${spread(processCheck.loaded.map((sample) => sample.putsPerSecond), 0)} puts/s ` +
        `with put p99 ${spread(processCheck.loadedPutP99Ms, 1)} ms (checks back to back); verdicts ${JSON.stringify(processCheck.verdicts)}; Admin.Check is the working tree's (uncommitted when measured, if the commit line says so).`,
    );
  }
  if (check !== undefined) {
    const all = check.quiet.flatMap((sample) => sample.checkMs).sort((a, b) => a - b);
    const loadedAll = check.loaded.flatMap((sample) => sample.checkMs).sort((a, b) => a - b);
    out(
      `- check, in process: ${all.length} quiet checks, max ${Math.max(...all).toFixed(2)} ms; ${loadedAll.length} under load, max ${Math.max(...loadedAll).toFixed(2)} ms, ` +
        `beside ${spread(check.loaded.map((sample) => sample.putsPerSecond), 0)} puts/s; verdicts ${JSON.stringify(check.verdicts)}; ${check.preloadKeys} keys preloaded; ` +
        'three RaftNodes in one process on disk (durable log, LevelDB) and the memory transport: no gRPC hop, one event loop for all three and the load.',
    );
  }
  if (open !== undefined) {
    const resident = open.residentAfterEvictBytes.filter(Number.isFinite);
    out(
      `- open: ${open.keys} keys × ${open.valueBytes} B random values, filled through apply() in ${open.fillSeconds.toFixed(0)} s and compacted (compactRange) in ${open.compactSeconds.toFixed(0)} s; ` +
        `LevelDB ${open.dbBytes} bytes (${(open.dbBytes / GIB).toFixed(3)} GiB) in ${open.dbFiles} files; the verification read ${open.verifiedKeys} keys, ${open.verifiedBytes} bytes of keys and stored values; ` +
        `cold = every file dropped from the page cache (posix_fadvise DONTNEED via dd iflag=nocache), ${resident.length > 0 ? `at most ${(Math.max(...resident) / 2 ** 20).toFixed(1)} MiB left resident (fincore)` : 'not checked (no fincore)'}; ` +
        `seconds (cold): verified open ${spread(open.verifyColdS, 2)}, iteration ${spread(open.iterateColdS, 2)}, dd ${spread(open.ddDirectS, 2)}; dd rate ${spread(open.ddDirectS.map((seconds) => open!.dbBytes / seconds / 1e6), 0)} MB/s.`,
    );
  }
  if (diff !== undefined) {
    const sentReceived = (samples: readonly DiffSample[]): string =>
      `${spread(samples.map((sample) => sample.socketBytesSent), 0)} bytes sent, ${spread(samples.map((sample) => sample.socketBytesReceived), 0)} received`;
    out(
      `- diff: 3 single-member clusters preloaded side by side in ${diff.preloadSeconds.toFixed(0)} s (Txns of 128 puts, ${diff.valueBytes}-byte values); cluster diffs (content hashes), ` +
        `each member behind a counting TCP proxy; 1 difference: ${sentReceived(diff.one)}; 100: ${sentReceived(diff.hundred)}; ` +
        `planted: ${diff.plantedOne.join(', ')}; 100 = a third each missing, extra, different; every diff named exactly the planted keys.`,
    );
  }
  if (stream !== undefined) {
    out(
      `- stream: one member, ${stream.keys} keys × ${stream.valueBytes} B random values, ${stream.putsPerEntry} put(s) per entry, preloaded in ${stream.preloadSeconds.toFixed(0)} s; ` +
        `${stream.entries} entries, ${stream.entryBytes} bytes of entry data; snapshot file ${stream.snapshotBytes} bytes, written in ${stream.snapshotCreateSeconds.toFixed(1)} s before the rounds ` +
        `(not in the stream's figures; each stream's first message came ${spread(stream.snapshotFirstByteMs, 0)} ms after the call); WAL ${stream.walBytes} bytes.`,
    );
  }
  for (const failure of failures) out(`- FAILED: ${failure}`);

  console.log(`\n${lines.join('\n')}`);
  writeResults(lines);
  const { commit, dirtyFiles, machine } = runHeader;
  json.push({ bench: 'integrity', name: 'run', command, commit, dirty: dirtyFiles.length > 0, machine, startedAt: startedAt.toISOString(), endedAt: endedAt.toISOString(), failures });
  printFooter('integrity', json, {}, runHeader.loadBefore, runHeader.busyBeforePercent);
}

// writeResults appends the run's Markdown to the day's results file (bench/results/README.md),
// creating it with its title.
function writeResults(lines: readonly string[]): void {
  if (options['no-results-file']) return;
  const path = options['results-file'] ?? join(REPOSITORY, 'bench', 'results', `integrity-${startedAt.toISOString().slice(0, 10)}.md`);
  const title =
    `# bench:integrity — ${startedAt.toISOString().slice(0, 10)}: the cost of state integrity (issue 13)\n\n` +
    'Each run below was appended by `npm run bench:integrity` as it ended; notes after a run were added by hand and say so.\n\n';
  appendFileSync(path, `${existsSync(path) ? '\n' : title}${lines.join('\n')}\n`);
  console.log(`\n(appended to ${path})`);
}

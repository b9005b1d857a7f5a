// bench/transfer.ts — `npm run bench:transfer`: leader transfer under a write load, for a
// 3-node etcd and a 3-node stratakv in the same run.
//
// Each trial: 16 closed-loop writers (the harness of bench:kv, in its own process) put 100-byte
// values to fresh keys; after a warm-up and a quiet stretch (the baseline), the benchmark
// calls Maintenance.MoveLeader on the leader towards a follower, keeps the writers going for
// a while after the call returns, then stops them and waits (bounded) for every outstanding
// write. Recorded per trial:
//  - the pause: the longest gap between consecutive successful writes from the moment of the
//    MoveLeader call to the end of the trial (the gap from the last write before the call
//    counts, and so does a gap still open at the end); beside it the longest gap of the
//    baseline stretch before the call, i.e. what the machine does without a transfer;
//  - failed writes by gRPC code and message, with the ambiguous ones (deadline exceeded,
//    unavailable, cancelled, unknown, internal, or never answered: the write may or may not
//    have happened) counted apart from definite failures;
//  - the hand-over gap: the longest gap that overlaps the MoveLeader call itself (the stall of
//    the hand-over, without unrelated stalls later in the trial);
//  - the MoveLeader call's own latency, and whether the leader is then the chosen follower.
// Variants: "leader" (every writer on the old leader's endpoint, which becomes a follower
// mid-trial and must forward) and "all" (writers spread over the three endpoints, one channel
// each). Trials alternate between systems; figures are medians and maxima over the trials.
// The run ends with one JSON line per figure.
//
// Options: --quick, --targets etcd,stratakv, --trials N (default 5), --writers N (16),
// --variants leader,all, --warmup-ms N, --baseline-ms N, --after-ms N, --deadline-ms N.
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';

import { LoadHarness, type MergedResult } from './cluster/harness.ts';
import { parseTargets, startTargets, type Member, type RunningCluster, type SystemName } from './cluster/launchers.ts';
import { probeFdatasync } from './cluster/disk-probe.ts';
import { cleanupSync, installCleanupHandlers, makeTempFolder, sleep } from './cluster/processes.ts';
import { describeError, moveLeader } from './cluster/rpc.ts';
import { formatNumber, formatTable, loadAverage, machineBusyPercent, median, printFooter } from './cluster/stats.ts';

const { values: options } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    targets: { type: 'string', default: 'etcd,stratakv' },
    trials: { type: 'string' },
    writers: { type: 'string', default: '16' },
    variants: { type: 'string', default: 'leader,all' },
    'warmup-ms': { type: 'string' },
    'baseline-ms': { type: 'string' },
    'after-ms': { type: 'string' },
    'deadline-ms': { type: 'string', default: '3000' },
  },
});
const QUICK = options.quick;
const TRIALS = Number(options.trials ?? (QUICK ? 2 : 5));
const WRITERS = Number(options.writers);
const WARMUP_MS = Number(options['warmup-ms'] ?? (QUICK ? 500 : 1_000));
const BASELINE_MS = Number(options['baseline-ms'] ?? (QUICK ? 500 : 1_000));
const AFTER_MS = Number(options['after-ms'] ?? (QUICK ? 1_000 : 2_000));
const DEADLINE_MS = Number(options['deadline-ms']);
const TARGETS = parseTargets(options.targets).filter((system) => system !== 'echo');
const VARIANTS = options.variants.split(',').filter((item) => item !== '');
const VALUE_BYTES = 100;
const TRIALS_MAX = 50;
const PHASE_MS_MAX = 60_000;
const MOVE_LEADER_DEADLINE_MS = 10_000;
const TRIAL_BOUND_MS = 120_000;
const SETTLE_MS = 300;
const FAILURE_OFFSETS_MAX = 20;
const DISK_PROBE_WRITERS = 3;
if (!(TRIALS >= 1 && TRIALS <= TRIALS_MAX)) throw new Error(`--trials must be 1..${TRIALS_MAX}`);
if (!(WRITERS >= 1 && WRITERS <= 1_024)) throw new Error('--writers must be 1..1024');
for (const value of [WARMUP_MS, BASELINE_MS, AFTER_MS, DEADLINE_MS]) if (!(value >= 0 && value <= PHASE_MS_MAX)) throw new Error('bad phase length');
for (const variant of VARIANTS) if (variant !== 'leader' && variant !== 'all') throw new Error(`--variants: unknown ${variant} (leader, all)`);
if (TARGETS.length === 0) throw new Error('--targets: etcd and/or stratakv');

interface Trial {
  readonly pauseMs: number;
  readonly handOverGapMs: number;
  readonly baselineGapMs: number;
  readonly moveLeaderMs: number;
  readonly moveLeaderError: string | undefined;
  readonly moved: boolean;
  readonly failed: number;
  readonly ambiguous: number;
  readonly errors: Record<string, number>;
  readonly writesPerSecond: number;
  /** failureOffsetsMs: when failed writes ended, relative to the MoveLeader call (first FAILURE_OFFSETS_MAX). */
  readonly failureOffsetsMs: readonly number[];
}
const trials = new Map<string, Trial[]>();
// The disk's own longest fdatasync over a trial-length window, three writers at once (as the
// three members persist), measured after each round of trials with the clusters idle: a
// system that persists before it answers cannot pause for less than that.
const diskLongestSyncMs: number[] = [];
const diskSyncP50Ms: number[] = [];

const epochMs = (): number => performance.timeOrigin + performance.now();
installCleanupHandlers();
const loadBefore = loadAverage();
const busyBeforePercent = await machineBusyPercent();
console.log(
  `bench:transfer on ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, node ${process.version}, load average ${loadBefore}, CPUs ${busyBeforePercent.toFixed(0)} % busy with other work` +
    ' (other work on this machine makes figures noisy)',
);
console.log(
  `${WRITERS} closed-loop writers (${VALUE_BYTES}-byte puts, deadline ${DEADLINE_MS} ms, one client process); warm-up ${WARMUP_MS} ms, ` +
    `baseline ${BASELINE_MS} ms, MoveLeader, then ${AFTER_MS} ms; ${TRIALS} trial(s) per system and variant (${VARIANTS.join(', ')})`,
);

const clusters: RunningCluster[] = [];
const skipped: Record<string, string> = {};
const harness = LoadHarness.start(1);
const diskFolder = makeTempFolder('stratakv-bench-disk-');
try {
  await startTargets(TARGETS, clusters, skipped);

  for (let trial = 0; trial < TRIALS; trial++) {
    for (const variant of VARIANTS) {
      const order = clusters.map((_, index) => clusters[(index + trial) % clusters.length] as RunningCluster);
      for (const cluster of order) {
        const outcome = await runTrial(cluster, variant, trial);
        const key = `${cluster.system} ${variant}`;
        trials.set(key, [...(trials.get(key) ?? []), outcome]);
        console.log(
          `  trial ${trial + 1}/${TRIALS} ${cluster.system.padEnd(8)} ${variant.padEnd(6)} pause ${formatNumber(outcome.pauseMs)} ms ` +
            `(hand-over gap ${formatNumber(outcome.handOverGapMs)} ms) ` +
            `(baseline gap ${formatNumber(outcome.baselineGapMs)} ms), MoveLeader ${formatNumber(outcome.moveLeaderMs)} ms` +
            `${outcome.moveLeaderError === undefined ? '' : ` FAILED: ${outcome.moveLeaderError}`}${outcome.moved ? '' : ' (leader did not move)'}, ` +
            `failed ${outcome.failed}, ambiguous ${outcome.ambiguous}, ${formatNumber(outcome.writesPerSecond, 0)} writes/s  (load ${loadAverage()})`,
        );
        await sleep(SETTLE_MS);
      }
    }
    const disk = await probeFdatasync(diskFolder, DISK_PROBE_WRITERS, BASELINE_MS + AFTER_MS);
    diskLongestSyncMs.push(disk.latencyMs.max);
    diskSyncP50Ms.push(disk.latencyMs.p50);
    console.log(
      `  disk after trial ${trial + 1}: ${DISK_PROBE_WRITERS} writers of 4 KiB + fdatasync for ${BASELINE_MS + AFTER_MS} ms: ` +
        `p50 ${formatNumber(disk.latencyMs.p50)} ms, longest ${formatNumber(disk.latencyMs.max)} ms`,
    );
  }
} finally {
  await Promise.all(clusters.map((cluster) => cluster.stop()));
  await harness.close();
  cleanupSync();
}
report();

async function runTrial(cluster: RunningCluster, variant: string, trial: number): Promise<Trial> {
  const leader = await cluster.leader();
  const followers = cluster.members.filter((member) => member.id !== leader.id);
  const target = followers[trial % followers.length] as Member;
  const endpoints = variant === 'leader' ? [leader.endpoint] : cluster.members.map((member) => member.endpoint);
  const job = harness.startJob({
    operation: 'put',
    endpoints,
    channels: endpoints.length,
    concurrency: WRITERS,
    warmupMs: WARMUP_MS,
    durationMs: TRIAL_BOUND_MS,
    requestsMax: 10_000_000,
    deadlineMs: DEADLINE_MS,
    keyPrefix: `transfer/t${trial}/${variant}`,
    getPrefix: 'unused',
    getKeys: 1,
    valueBytes: VALUE_BYTES,
    recordCompletions: true,
  });
  let result: MergedResult;
  let transferStart = 0;
  let transferEnd = 0;
  let moveLeaderError: string | undefined;
  let windowStart = 0;
  try {
    windowStart = await job.measuring;
    await sleep(BASELINE_MS);
    transferStart = epochMs();
    try {
      await moveLeader(leader.endpoint, target.id, MOVE_LEADER_DEADLINE_MS);
    } catch (error) {
      moveLeaderError = describeError(error);
    }
    transferEnd = epochMs();
    await sleep(AFTER_MS);
  } finally {
    job.stop();
    result = await job.result;
  }
  const trialEnd = transferEnd + AFTER_MS;
  const completions = result.completionsMs;
  const baselineGapMs = longestGap(completions, windowStart, transferStart);
  const pauseMs = longestGap(completions, transferStart, trialEnd);
  const handOverGapMs = longestGapOverlapping(completions, transferStart, transferEnd, trialEnd);
  const newLeader = await cluster.leader().catch(() => undefined);
  const errors: Record<string, number> = { ...result.errors };
  if (result.unfinished > 0) errors['never answered'] = result.unfinished;
  const inWindow = countBetween(completions, windowStart, trialEnd);
  return {
    pauseMs,
    handOverGapMs,
    baselineGapMs,
    moveLeaderMs: transferEnd - transferStart,
    moveLeaderError,
    moved: newLeader?.id === target.id,
    failed: result.failed,
    ambiguous: result.ambiguous + result.unfinished,
    errors,
    writesPerSecond: (inWindow * 1000) / (trialEnd - windowStart),
    failureOffsetsMs: result.failures.slice(0, FAILURE_OFFSETS_MAX).map((failure) => Math.round(failure.atMs - transferStart)),
  };
}

/**
 * longestGap is the longest time in [from, to] without a completion in ascending `times`:
 * the first gap runs from the last completion before `from` (or `from`), the last one to `to`.
 */
function longestGap(times: Float64Array, from: number, to: number): number {
  // Start from the last completion at or before `from`, so a pause already under way counts whole.
  let previous = from;
  for (const time of times) {
    if (time > from) break;
    previous = time;
  }
  let longest = 0;
  for (const time of times) {
    if (time <= from) continue;
    if (time > to) break;
    longest = Math.max(longest, time - previous);
    previous = time;
  }
  return Math.max(longest, to - previous);
}

/**
 * longestGapOverlapping is the longest gap between consecutive completions that overlaps
 * [from, to] (the MoveLeader call): the stall of the hand-over itself, without unrelated
 * stalls later in the trial. A gap still open at `end` ends there.
 */
function longestGapOverlapping(times: Float64Array, from: number, to: number, end: number): number {
  let previous = Number.NEGATIVE_INFINITY;
  let longest = 0;
  for (const time of times) {
    if (time > end) break;
    if (previous !== Number.NEGATIVE_INFINITY && previous < to && time > from) longest = Math.max(longest, time - previous);
    if (previous >= to) return longest;
    previous = time;
  }
  if (previous !== Number.NEGATIVE_INFINITY && previous < to) longest = Math.max(longest, end - previous);
  return longest;
}

function countBetween(times: Float64Array, from: number, to: number): number {
  let count = 0;
  for (const time of times) if (time >= from && time <= to) count += 1;
  return count;
}

function report(): void {
  const rows: string[][] = [];
  const json: object[] = [];
  for (const [key, list] of trials) {
    const [system, variant] = key.split(' ') as [SystemName, string];
    const pauses = list.map((trial) => trial.pauseMs);
    const handOvers = list.map((trial) => trial.handOverGapMs);
    const baselines = list.map((trial) => trial.baselineGapMs);
    const calls = list.map((trial) => trial.moveLeaderMs);
    const failed = list.reduce((sum, trial) => sum + trial.failed, 0);
    const ambiguous = list.reduce((sum, trial) => sum + trial.ambiguous, 0);
    const moved = list.filter((trial) => trial.moved && trial.moveLeaderError === undefined).length;
    const errors: Record<string, number> = {};
    for (const trial of list) for (const [error, count] of Object.entries(trial.errors)) errors[error] = (errors[error] ?? 0) + count;
    const moveErrors = list.flatMap((trial) => (trial.moveLeaderError === undefined ? [] : [trial.moveLeaderError]));
    rows.push([
      system,
      variant,
      formatNumber(median(pauses)),
      formatNumber(Math.max(...pauses)),
      formatNumber(median(handOvers)),
      formatNumber(Math.max(...handOvers)),
      formatNumber(median(baselines)),
      formatNumber(median(calls)),
      formatNumber(Math.max(...calls)),
      String(failed),
      String(ambiguous),
      `${moved}/${list.length}`,
      formatNumber(median(list.map((trial) => trial.writesPerSecond)), 0),
    ]);
    const base = { bench: 'transfer', system, variant, trials: list.length };
    json.push({ ...base, name: `${system} ${variant} pause`, unit: 'ms', median: median(pauses), min: Math.min(...pauses), max: Math.max(...pauses) });
    json.push({ ...base, name: `${system} ${variant} hand-over gap`, unit: 'ms', median: median(handOvers), min: Math.min(...handOvers), max: Math.max(...handOvers) });
    json.push({ ...base, name: `${system} ${variant} baseline gap`, unit: 'ms', median: median(baselines), min: Math.min(...baselines), max: Math.max(...baselines) });
    json.push({ ...base, name: `${system} ${variant} MoveLeader call`, unit: 'ms', median: median(calls), min: Math.min(...calls), max: Math.max(...calls), errors: moveErrors });
    json.push({
      ...base,
      name: `${system} ${variant} failed writes`,
      unit: 'writes',
      failed,
      ambiguous,
      kinds: errors,
      endedMsAfterMoveLeader: list.map((trial) => trial.failureOffsetsMs),
    });
    json.push({ ...base, name: `${system} ${variant} leader moved`, unit: 'trials', median: moved });
    if (Object.keys(errors).length > 0) console.log(`  ${key} write errors: ${JSON.stringify(errors)}`);
    if (moveErrors.length > 0) console.log(`  ${key} MoveLeader errors: ${JSON.stringify(moveErrors)}`);
  }
  console.log(`\nLeader transfer under ${WRITERS} writers, ${TRIALS} trial(s) each (ms; failed/ambiguous writes summed over trials):`);
  console.log('  pause: longest gap between successful writes from the MoveLeader call to the end of the trial; hand-over: longest gap overlapping');
  console.log('  the MoveLeader call; baseline gap: longest gap in the same-length stretch before the call (the machine\'s own jitter)');
  console.log(formatTable(['system', 'variant', 'pause p50', 'pause max', 'hand-over p50', 'hand-over max', 'baseline gap', 'MoveLeader p50', 'MoveLeader max', 'failed', 'ambiguous', 'moved', 'writes/s'], rows));
  if (diskLongestSyncMs.length > 0) {
    console.log(
      `\nDisk alone (${DISK_PROBE_WRITERS} writers of 4 KiB + fdatasync, ${BASELINE_MS + AFTER_MS} ms after each round, clusters idle): ` +
        `fdatasync p50 ${formatNumber(median(diskSyncP50Ms))} ms; longest fdatasync per window median ${formatNumber(median(diskLongestSyncMs))} ms, ` +
        `max ${formatNumber(Math.max(...diskLongestSyncMs))} ms`,
    );
    json.push({
      bench: 'transfer',
      name: `disk longest fdatasync per ${BASELINE_MS + AFTER_MS} ms window, ${DISK_PROBE_WRITERS} writers`,
      unit: 'ms',
      median: median(diskLongestSyncMs),
      min: Math.min(...diskLongestSyncMs),
      max: Math.max(...diskLongestSyncMs),
      fdatasyncP50Ms: median(diskSyncP50Ms),
    });
  }
  const stratakv = [...trials.entries()].filter(([key]) => key.startsWith('stratakv '));
  if (stratakv.length > 0) {
    console.log('\nGoals of issue 4 (stratakv): no failed or ambiguous write, longest pause ≤ 25 ms');
    for (const [key, list] of stratakv) {
      const worst = Math.max(...list.map((trial) => trial.pauseMs));
      const bad = list.reduce((sum, trial) => sum + trial.failed + trial.ambiguous, 0);
      const worstHandOver = Math.max(...list.map((trial) => trial.handOverGapMs));
      console.log(
        `  ${bad === 0 && worst <= 25 ? 'met    ' : 'NOT met'}  ${key}: worst pause ${formatNumber(worst)} ms ` +
          `(worst hand-over gap ${formatNumber(worstHandOver)} ms), failed+ambiguous ${bad}`,
      );
      json.push({ bench: 'transfer', name: `goal ${key} pause ≤ 25 ms and no failed write`, unit: 'ms', median: worst, failedOrAmbiguous: bad, met: bad === 0 && worst <= 25 });
    }
  }
  printFooter('transfer', json, skipped, loadBefore, busyBeforePercent);
}

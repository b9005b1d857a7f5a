// Runs a range of seeds and summarizes them: shared by the CLI (`npm run sim`) and the
// simulation tests, so both run seeds the same way and a failure in either replays with
// the same command.

import { performance } from 'node:perf_hooks';
import { replayCommand, runSimulation } from './cluster-simulation.ts';
import type { SimResult, SimStats } from './cluster-simulation.ts';

/** SEEDS_PER_RANGE_MAX bounds one call of runSeedRange. */
export const SEEDS_PER_RANGE_MAX = 10_000_000;

/** SeedRangeOptions says which seeds to run and whether to stream their traces. */
export interface SeedRangeOptions {
  readonly from: number;
  readonly count: number;
  /** Run every seed instead of stopping at the first failure (the CLI's --keep-going). */
  readonly keepGoing?: boolean;
  /** Receives every trace line of every run (the CLI's --trace). */
  readonly stream?: (line: string) => void;
  /** Called after each seed, e.g. for progress output. */
  readonly onResult?: (result: SimResult) => void;
}

/** FAILED_SEEDS_LISTED_MAX bounds the failing seeds a --keep-going summary lists per invariant. */
export const FAILED_SEEDS_LISTED_MAX = 20;

/** SeedRangeSummary totals a range of runs. */
export interface SeedRangeSummary {
  readonly from: number;
  readonly seedsRun: number;
  readonly elapsedMs: number;
  readonly totals: SimStats;
  /** The first failure. */
  readonly failure: SimResult | undefined;
  /** With keepGoing: per invariant, how many seeds failed it and the first few of them. */
  readonly failuresByInvariant: ReadonlyMap<string, { count: number; seeds: number[] }>;
}

/** runSeedRange runs seeds from..from+count-1 in order and stops at the first failure. */
export function runSeedRange(options: SeedRangeOptions): SeedRangeSummary {
  if (!Number.isSafeInteger(options.from) || options.from < 0 || options.from > 0xffff_ffff) {
    throw new RangeError(`--from must be an integer in [0, 2^32), got ${options.from}`);
  }
  if (!Number.isSafeInteger(options.count) || options.count < 1 || options.count > SEEDS_PER_RANGE_MAX) {
    throw new RangeError(`--seeds must be an integer in [1, ${SEEDS_PER_RANGE_MAX}], got ${options.count}`);
  }
  const started = performance.now();
  let totals: SimStats | undefined;
  let seedsRun = 0;
  let failure: SimResult | undefined;
  const failuresByInvariant = new Map<string, { count: number; seeds: number[] }>();
  for (let seed = options.from; seed < options.from + options.count; seed += 1) {
    const result = runSimulation(seed, options.stream);
    seedsRun += 1;
    totals = totals === undefined ? { ...result.stats } : addStats(totals, result.stats);
    options.onResult?.(result);
    if (result.failure === undefined) continue;
    failure ??= result;
    const tally = failuresByInvariant.get(result.failure.invariant) ?? { count: 0, seeds: [] };
    tally.count += 1;
    if (tally.seeds.length < FAILED_SEEDS_LISTED_MAX) tally.seeds.push(seed);
    failuresByInvariant.set(result.failure.invariant, tally);
    if (options.keepGoing !== true) break;
  }
  return { from: options.from, seedsRun, elapsedMs: performance.now() - started, totals: totals as SimStats, failure, failuresByInvariant };
}

function addStats(total: SimStats, more: SimStats): SimStats {
  const sum = { ...total };
  for (const key of Object.keys(sum) as Array<keyof SimStats>) sum[key] += more[key];
  return sum;
}

/** formatFailure renders a failed seed: the seed, the invariant, the trace tail and the replay command. */
export function formatFailure(result: SimResult): string {
  const failure = result.failure;
  if (failure === undefined) return `seed ${result.seed} passed`;
  return [
    `SIMULATION FAILED at seed ${result.seed}`,
    `invariant: ${failure.invariant}`,
    `detail: ${failure.detail}`,
    `run: ${failure.options}`,
    `last ${failure.traceTail.length} trace lines:`,
    ...failure.traceTail.map((line) => `  ${line}`),
    `seed: ${result.seed}`,
    `replay: ${replayCommand(result.seed)}`,
  ].join('\n');
}

/** formatSummary renders a range's totals: what the runs exercised and how fast they went. */
export function formatSummary(summary: SeedRangeSummary): string {
  const t = summary.totals;
  const seconds = summary.elapsedMs / 1000;
  const last = summary.from + summary.seedsRun - 1;
  return [
    `seeds ${summary.from}..${last} (${summary.seedsRun} run) in ${seconds.toFixed(1)} s: ${summary.failure === undefined ? 'all passed' : `FAILED at seed ${summary.failure.seed}`}`,
    `  steps ${t.steps} (${Math.round(t.steps / Math.max(seconds, 1e-9))}/s), heal steps ${t.healSteps} (mean ${(t.healSteps / summary.seedsRun).toFixed(0)} a seed)`,
    `  leader changes ${t.leaderChanges}, transfers ${t.transfersCompleted}/${t.transfersRequested} completed, crashes ${t.crashes}, restarts ${t.restarts}, partitions ${t.partitions}`,
    `  conf changes applied ${t.confChangesApplied} (joint ${t.jointConfigs}), snapshots taken ${t.snapshotsTaken}, snapshots sent ${t.snapshotsSent}`,
    `  proposals accepted ${t.proposalsAccepted} (refused ${t.proposalsRefused}), entries applied ${t.entriesApplied}, reads checked ${t.readStatesChecked}`,
    `  messages sent ${t.messagesSent}, dropped ${t.messagesDropped}, duplicated ${t.messagesDuplicated}, late (held back, late copies, replays) ${t.messagesLate}`,
    ...[...summary.failuresByInvariant].map(([invariant, tally]) => `  failed ${invariant}: ${tally.count} seeds, e.g. ${tally.seeds.join(' ')}`),
  ].join('\n');
}

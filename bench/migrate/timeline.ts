// One move of a cluster under load, the same for both systems: the write load starts (its own
// process, load.ts) with the leader watch beside it; after a warm-up and a stretch without a
// migration, the move runs (stratakv's `migrate run`, or etcd's scripted procedure); after it,
// the load goes on for as long as the move took. The windows are then cut from the one record
// of every put:
//   before — the W ms just before the move started (W = the move's duration; shorter when the
//            stretch before was shorter than the move, which the result says);
//   during — the move, start to end;
//   after  — the W ms after it.
// Both baselines are measured in the same run as the move, with the same clients.
import { sleep } from '../cluster/processes.ts';
import { CpuSampler, type CpuFigures, type WatchedProcess } from './cpu-sampler.ts';
import { latencyOver, windowFigures, type Interval, type LatencyFigures, type WindowFigures } from './analysis.ts';
import { LeaderWatch, type LeaderWatchResult } from './leader-watch.ts';
import { startLoad } from './load.ts';
import type { LoadReport } from './load-types.ts';

/** MOVE_MS_MAX bounds a move (the window after it is as long, at most this). */
export const MOVE_MS_MAX = 30 * 60_000;
/** LOAD_OPS_MAX bounds the puts of one run (a bound, not a target: 16 clients do far fewer). */
const LOAD_OPS_MAX = 20_000_000;
const LOAD_SLACK_MS = 10 * 60_000;

/** MoveOutcome is what a move did: whether it finished, its steps and its catch-up intervals (epoch ms). */
export interface MoveOutcome {
  readonly ok: boolean;
  readonly error?: string;
  /** steps: each step of the move, in order. */
  readonly steps: readonly Interval[];
  /** catchUp: the intervals in which new members were added and caught up (disjoint). */
  readonly catchUp: readonly Interval[];
  /** notes: what the move said of itself (the journal's step details, the commands run). */
  readonly notes: readonly string[];
}

/** LoadOptions are the write load's settings. */
export interface LoadOptions {
  readonly clients: number;
  readonly valueBytes: number;
  readonly autoSyncIntervalMs: number;
  readonly timeoutMs: number;
}

/** TimelineOptions: where the load starts, whom to watch, how long to wait before the move, and the move. */
export interface TimelineOptions {
  readonly load: LoadOptions;
  readonly loadEndpoints: readonly string[];
  readonly watchEndpoints: readonly string[];
  readonly keyPrefix: string;
  readonly warmupMs: number;
  readonly beforeMs: number;
  readonly move: () => Promise<MoveOutcome>;
  /** watched: the members' processes to sample CPU of, by group (asked every second: members come and go). */
  readonly watched: () => readonly WatchedProcess[];
  readonly log: (line: string) => void;
}

/** Timeline is a move under load, its windows cut. */
export interface Timeline {
  readonly report: LoadReport;
  readonly outcome: MoveOutcome;
  readonly moveFromMs: number;
  readonly moveToMs: number;
  readonly before: WindowFigures;
  /** beforeShortMs: how much shorter the before window is than the move (0: as long). */
  readonly beforeShortMs: number;
  readonly during: WindowFigures;
  readonly after: WindowFigures;
  readonly catchUp: LatencyFigures;
  readonly leaders: LeaderWatchResult;
  /** leaderChangesDuring: leaders first seen during the move (or within one poll after it). */
  readonly leaderChangesDuring: number;
  readonly leaderChangesOutside: number;
  /** cpu: each window's CPU use (the load process counts as "load"). */
  readonly cpu: { readonly before?: CpuFigures; readonly during?: CpuFigures; readonly after?: CpuFigures; readonly catchUp?: CpuFigures };
}

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** runTimeline runs the load, the watch and the move, and cuts the windows (see the file comment). */
export async function runTimeline(options: TimelineOptions): Promise<Timeline> {
  const { log } = options;
  const load = await startLoad({
    endpoints: options.loadEndpoints,
    clients: options.load.clients,
    valueBytes: options.load.valueBytes,
    autoSyncIntervalMs: options.load.autoSyncIntervalMs,
    timeoutMs: options.load.timeoutMs,
    keyPrefix: options.keyPrefix,
    durationMsMax: options.warmupMs + options.beforeMs + 2 * MOVE_MS_MAX + LOAD_SLACK_MS,
    opsMax: LOAD_OPS_MAX,
  });
  const watch = new LeaderWatch(options.watchEndpoints);
  const sampler = new CpuSampler(() => [...options.watched(), { group: 'load', pid: load.pid }]);
  let outcome: MoveOutcome | undefined;
  let moveFromMs = Number.NaN;
  let moveToMs = Number.NaN;
  let failure: { error: unknown } | undefined;
  try {
    log(`  load: ${options.load.clients} clients, ${options.load.valueBytes}-byte puts; ${(options.warmupMs / 1000).toFixed(0)} s warm-up, then ${(options.beforeMs / 1000).toFixed(0)} s before the move`);
    await sleep(options.warmupMs + options.beforeMs);
    moveFromMs = epochMs();
    outcome = await options.move();
    moveToMs = epochMs();
    const afterMs = Math.min(MOVE_MS_MAX, moveToMs - moveFromMs);
    log(`  the move took ${((moveToMs - moveFromMs) / 1000).toFixed(1)} s (${outcome.ok ? 'finished' : `FAILED: ${outcome.error ?? ''}`}); the load goes on ${(afterMs / 1000).toFixed(1)} s more`);
    await sleep(afterMs);
  } catch (error) {
    failure = { error };
  }
  // Stop both on every way out; a failure in stopping must not hide the first one.
  sampler.stop();
  const [stoppedLoad, stoppedWatch] = await Promise.allSettled([load.stop(), watch.stop()]);
  if (failure !== undefined) throw failure.error;
  if (stoppedLoad.status === 'rejected') throw stoppedLoad.reason;
  if (stoppedWatch.status === 'rejected') throw stoppedWatch.reason;
  const report = stoppedLoad.value;
  const leaders = stoppedWatch.value;
  if (outcome === undefined) throw new Error('the timeline ended without the move\'s outcome');
  const moveMs = moveToMs - moveFromMs;
  const measuredFromMs = load.readyAtMs + options.warmupMs;
  const beforeFromMs = Math.max(measuredFromMs, moveFromMs - moveMs);
  const lastEndMs = report.endsMs.reduce((latest, end) => Math.max(latest, end), moveToMs);
  const afterToMs = Math.min(moveToMs + Math.min(MOVE_MS_MAX, moveMs), lastEndMs);
  const pollSlackMs = 1_000;
  const leaderChangesDuring = leaders.leaders.slice(1).filter((leader) => leader.atMs >= moveFromMs && leader.atMs <= moveToMs + pollSlackMs).length;
  const before = windowFigures(report, { name: 'before', fromMs: beforeFromMs, toMs: moveFromMs });
  const after = windowFigures(report, { name: 'after', fromMs: moveToMs, toMs: afterToMs });
  const catchUpFromMs = Math.min(...outcome.catchUp.map((interval) => interval.fromMs));
  const catchUpToMs = Math.max(...outcome.catchUp.map((interval) => interval.toMs));
  const cpuOf = (fromMs: number, toMs: number): CpuFigures | undefined => (Number.isFinite(fromMs) && Number.isFinite(toMs) ? sampler.window(fromMs, toMs) : undefined);
  const cpuBefore = cpuOf(before.fromMs, before.toMs);
  const cpuDuring = cpuOf(moveFromMs, moveToMs);
  const cpuAfter = cpuOf(after.fromMs, after.toMs);
  const cpuCatchUp = cpuOf(catchUpFromMs, catchUpToMs);
  return {
    report,
    outcome,
    moveFromMs,
    moveToMs,
    before,
    beforeShortMs: Math.max(0, moveMs - (moveFromMs - beforeFromMs)),
    during: windowFigures(report, { name: 'during', fromMs: moveFromMs, toMs: moveToMs }),
    after,
    catchUp: latencyOver(report, outcome.catchUp),
    leaders,
    leaderChangesDuring,
    leaderChangesOutside: leaders.changes - leaderChangesDuring,
    cpu: {
      ...(cpuBefore === undefined ? {} : { before: cpuBefore }),
      ...(cpuDuring === undefined ? {} : { during: cpuDuring }),
      ...(cpuAfter === undefined ? {} : { after: cpuAfter }),
      ...(cpuCatchUp === undefined ? {} : { catchUp: cpuCatchUp }),
    },
  };
}

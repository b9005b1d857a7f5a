// The figures of one window of the write load: puts acknowledged, failed and ambiguous, the
// latency percentiles of the acknowledged puts, and the longest write gap — the longest
// interval inside the window in which no put was acknowledged by any client (the window's
// edges count as bounds, so a stall that straddles an edge counts up to the edge).
//
// A put belongs to the window its end falls in (all figures use the same rule).
import { percentileOfSorted } from '../cluster/stats.ts';
import { OUTCOME_AMBIGUOUS, OUTCOME_FAILED, OUTCOME_OK, type LoadReport } from './load-types.ts';

/** GAPS_LISTED is how many of the longest gaps a window names. */
export const GAPS_LISTED = 3;

/** Interval is a named span of epoch milliseconds. */
export interface Interval {
  readonly name: string;
  readonly fromMs: number;
  readonly toMs: number;
}

/** Gap is an interval without an acknowledged put: where it starts (epoch ms) and how long it is. */
export interface Gap {
  readonly atMs: number;
  readonly ms: number;
}

/** WindowFigures are one window's figures. */
export interface WindowFigures {
  readonly name: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly acknowledged: number;
  readonly failed: number;
  readonly ambiguous: number;
  readonly putsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  readonly longestGapMs: number;
  /** gaps: the GAPS_LISTED longest, longest first. */
  readonly gaps: readonly Gap[];
}

/** windowFigures computes `interval`'s figures from the load's report. */
export function windowFigures(report: LoadReport, interval: Interval): WindowFigures {
  if (!(interval.toMs >= interval.fromMs)) throw new Error(`windowFigures: ${interval.name} ends before it starts`);
  const latencies: number[] = [];
  const ends: number[] = [];
  let failed = 0;
  let ambiguous = 0;
  for (let row = 0; row < report.endsMs.length; row += 1) {
    const endMs = report.endsMs[row] ?? Number.NaN;
    if (!(endMs >= interval.fromMs && endMs <= interval.toMs)) continue;
    const outcome = report.outcomes[row];
    if (outcome === OUTCOME_OK) {
      latencies.push(endMs - (report.startsMs[row] ?? endMs));
      ends.push(endMs);
    } else if (outcome === OUTCOME_FAILED) failed += 1;
    else if (outcome === OUTCOME_AMBIGUOUS) ambiguous += 1;
  }
  const sorted = Float64Array.from(latencies).sort();
  const gaps = longestGaps(Float64Array.from(ends).sort(), interval.fromMs, interval.toMs, GAPS_LISTED);
  const seconds = (interval.toMs - interval.fromMs) / 1000;
  return {
    name: interval.name,
    fromMs: interval.fromMs,
    toMs: interval.toMs,
    acknowledged: sorted.length,
    failed,
    ambiguous,
    putsPerSecond: seconds > 0 ? sorted.length / seconds : Number.NaN,
    p50Ms: percentileOfSorted(sorted, 0.5),
    p99Ms: percentileOfSorted(sorted, 0.99),
    p999Ms: percentileOfSorted(sorted, 0.999),
    maxMs: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] ?? Number.NaN),
    longestGapMs: gaps[0]?.ms ?? interval.toMs - interval.fromMs,
    gaps,
  };
}

/** longestGaps answers the `count` longest intervals between consecutive times of ascending `ends`, bounded by from and to. */
export function longestGaps(ends: Float64Array, fromMs: number, toMs: number, count: number): Gap[] {
  const gaps: Gap[] = [];
  let previous = fromMs;
  const consider = (next: number): void => {
    const ms = next - previous;
    if (gaps.length < count || ms > (gaps[gaps.length - 1]?.ms ?? 0)) {
      gaps.push({ atMs: previous, ms });
      gaps.sort((a, b) => b.ms - a.ms);
      if (gaps.length > count) gaps.length = count;
    }
    previous = next;
  };
  for (const end of ends) consider(end);
  consider(toMs);
  return gaps;
}

/** stepsOverlapping names the intervals of `steps` that overlap [fromMs, toMs] ("–" for none). */
export function stepsOverlapping(steps: readonly Interval[], fromMs: number, toMs: number): string {
  const names = steps.filter((step) => step.fromMs <= toMs && step.toMs >= fromMs).map((step) => step.name);
  return names.length === 0 ? 'between steps' : names.join(' + ');
}

/** describeGaps prints a window's longest gaps with the steps they fell in (none given: no steps named), relative to `originMs`. */
export function describeGaps(figures: WindowFigures, steps: readonly Interval[], originMs: number): string {
  return figures.gaps
    .map((gap) => `${gap.ms.toFixed(0)} ms at ${signedSeconds(gap.atMs - originMs)}${steps.length === 0 ? '' : ` (${stepsOverlapping(steps, gap.atMs, gap.atMs + gap.ms)})`}`)
    .join(', ');
}

/** signedSeconds prints a time relative to an origin: "+1.2 s", "-3.4 s". */
export function signedSeconds(ms: number): string {
  return `${ms < 0 ? '-' : '+'}${(Math.abs(ms) / 1000).toFixed(1)} s`;
}

/** gapsByStep names the longest gap inside each step (bounded by the step's start and end). */
export function gapsByStep(report: LoadReport, steps: readonly Interval[]): string {
  return steps.map((step) => `${step.name} ${windowFigures(report, step).longestGapMs.toFixed(0)} ms`).join(', ');
}

/** errorsIn counts the report's failures (failed and ambiguous) that ended in `interval`, by kind. */
export function errorsIn(report: LoadReport, interval: Interval): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const failure of report.failures) {
    if (failure.endMs < interval.fromMs || failure.endMs > interval.toMs) continue;
    const kind = `${failure.ambiguous ? 'ambiguous' : 'failed'} ${failure.code}: ${failure.message.slice(0, 120)}`;
    counts[kind] = (counts[kind] ?? 0) + 1;
  }
  return counts;
}

/** LatencyFigures are the percentiles of the puts acknowledged in a set of intervals. */
export interface LatencyFigures {
  readonly acknowledged: number;
  readonly seconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
}

/** latencyOver computes the percentiles of the acknowledged puts that ended in any of `intervals` (disjoint). */
export function latencyOver(report: LoadReport, intervals: readonly Interval[]): LatencyFigures {
  const latencies: number[] = [];
  for (let row = 0; row < report.endsMs.length; row += 1) {
    if (report.outcomes[row] !== OUTCOME_OK) continue;
    const endMs = report.endsMs[row] ?? Number.NaN;
    if (!intervals.some((interval) => endMs >= interval.fromMs && endMs <= interval.toMs)) continue;
    latencies.push(endMs - (report.startsMs[row] ?? endMs));
  }
  const sorted = Float64Array.from(latencies).sort();
  return {
    acknowledged: sorted.length,
    seconds: intervals.reduce((sum, interval) => sum + (interval.toMs - interval.fromMs) / 1000, 0),
    p50Ms: percentileOfSorted(sorted, 0.5),
    p99Ms: percentileOfSorted(sorted, 0.99),
    p999Ms: percentileOfSorted(sorted, 0.999),
  };
}

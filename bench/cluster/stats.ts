// Percentiles of one run and medians over runs, for the cluster benchmarks.
import { cpus, loadavg } from 'node:os';
import { summarize, type Summary } from '../native/stats.ts';

export { summarize, type Summary };

/** LatencySummary is one run's latency distribution in milliseconds. */
export interface LatencySummary {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly samples: number;
}

/** percentileOfSorted returns the q-quantile (0..1) of ascending `sorted` by the nearest-rank rule. */
export function percentileOfSorted(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** latencySummary sorts a copy of `latenciesMs` and returns p50, p99 and max. */
export function latencySummary(latenciesMs: Float64Array): LatencySummary {
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    p50: percentileOfSorted(sorted, 0.5),
    p99: percentileOfSorted(sorted, 0.99),
    max: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] ?? Number.NaN),
    samples: sorted.length,
  };
}

/** median is the median of `values` (NaN for none). */
export function median(values: readonly number[]): number {
  const finite = values.filter((value) => Number.isFinite(value));
  return finite.length === 0 ? Number.NaN : summarize(finite).median;
}

/** formatNumber prints a figure with a precision that suits its size, or "–" when there is none. */
export function formatNumber(value: number, digits?: number): string {
  if (!Number.isFinite(value)) return '–';
  if (digits !== undefined) return value.toFixed(digits);
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** formatTable lays out rows under a header with columns padded to their widest cell. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join('  ');
  return [line(header), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

/** loadAverage is the 1, 5 and 15 minute load averages as text. */
export function loadAverage(): string {
  return loadavg().map((value) => value.toFixed(2)).join(' ');
}

/**
 * printFooter ends a benchmark's output the same way for every benchmark: the targets that
 * were skipped, the load average before and after (with a warning when other work was running at the start),
 * then the JSON lines of every figure.
 */
export function printFooter(bench: string, json: object[], skipped: Record<string, string>, loadBefore: string): void {
  for (const [system, reason] of Object.entries(skipped)) {
    console.log(`\n${system} was not measured: ${reason}`);
    json.push({ bench, name: `${system} skipped`, unavailable: reason });
  }
  console.log(
    `\nload average before ${loadBefore} (other work), after ${loadAverage()} (this benchmark's own processes included; ` +
      'Linux also counts processes waiting for fdatasync, so a disk-bound run reads above its CPU use)',
  );
  // Only the load before the run tells of other work: during it, the benchmark's own members,
  // harness and their waits on the disk make up the load.
  const before = Number(loadBefore.split(' ')[0]);
  if (before > cpus().length / 2) {
    console.log(
      `WARNING: the load average was ${before.toFixed(1)} on ${cpus().length} cores when the run started: other work competed for CPU, ` +
        'which hurts single-threaded Node processes (the echo server, the harness, stratakv) more than multi-threaded etcd; treat the ratios with care.',
    );
  }
  for (const line of json) console.log(JSON.stringify(line));
}

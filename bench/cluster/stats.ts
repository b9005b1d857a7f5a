// Percentiles of one run and medians over runs, for the cluster benchmarks.
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
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

// cpuTicks reads the machine's CPU time from /proc/stat: busy (everything but idle and
// iowait) and total, in clock ticks.
function cpuTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.slice(0, 8).reduce((sum, value) => sum + value, 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * machineBusyPercent samples how busy the machine's CPUs are over `windowMs` (0..100, all
 * cores together): measured before a benchmark starts its processes, it is other work.
 */
export async function machineBusyPercent(windowMs = 1_000): Promise<number> {
  const before = cpuTicks();
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  const after = cpuTicks();
  const total = after.total - before.total;
  return total > 0 ? ((after.busy - before.busy) / total) * 100 : Number.NaN;
}

/** BUSY_BEFORE_WARN_PERCENT: other work above this share of the CPUs makes a run suspect. */
const BUSY_BEFORE_WARN_PERCENT = 25;

/**
 * printFooter ends a benchmark's output the same way for every benchmark: the targets that
 * were skipped, the machine's CPU use by other work just before the run (with a warning when
 * it was high) and the load average, then the JSON lines of every figure.
 */
export function printFooter(bench: string, json: object[], skipped: Record<string, string>, loadBefore: string, busyBeforePercent: number): void {
  for (const [system, reason] of Object.entries(skipped)) {
    console.log(`\n${system} was not measured: ${reason}`);
    json.push({ bench, name: `${system} skipped`, unavailable: reason });
  }
  console.log(
    `\nother work just before the run: CPUs ${busyBeforePercent.toFixed(0)} % busy; load average before ${loadBefore}, after ${loadAverage()} ` +
      "(the load includes this benchmark's own processes, and Linux counts processes waiting for fdatasync too)",
  );
  json.push({ bench, name: 'CPU busy with other work before the run', unit: '%', median: busyBeforePercent });
  if (busyBeforePercent > BUSY_BEFORE_WARN_PERCENT) {
    console.log(
      `WARNING: other work kept the CPUs ${busyBeforePercent.toFixed(0)} % busy when the run started: it competed for CPU, ` +
        'which hurts single-threaded Node processes (the echo server, the harness, stratakv) more than multi-threaded etcd; treat the ratios with care.',
    );
  }
  for (const line of json) console.log(JSON.stringify(line));
}

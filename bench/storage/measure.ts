// Timing helpers for bench/storage.ts: bounded timed loops, medians and spreads.

/** TIMED_LOOP_ITERATIONS_MAX bounds every timed loop, whatever the clock does. */
export const TIMED_LOOP_ITERATIONS_MAX = 10_000_000;

/** Rate is one measurement: operations per second over a measured wall time and CPU time. */
export interface Rate {
  readonly perSecond: number;
  readonly operations: number;
  readonly wallMs: number;
  /** User CPU time of this process over the wall time (JavaScript and native code, not the disk wait). */
  readonly userCpuFraction: number;
}

/** timeLoopSync runs `step` until `durationMs` passes (or the iteration bound) and returns its rate. */
export function timeLoopSync(durationMs: number, step: () => void): Rate {
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  let operations = 0;
  while (operations < TIMED_LOOP_ITERATIONS_MAX && performance.now() - start < durationMs) {
    step();
    operations += 1;
  }
  return rate(operations, performance.now() - start, process.cpuUsage(cpuStart));
}

/** timeLoop is timeLoopSync for an asynchronous step, awaited one at a time. */
export async function timeLoop(durationMs: number, step: () => Promise<unknown>): Promise<Rate> {
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  let operations = 0;
  while (operations < TIMED_LOOP_ITERATIONS_MAX && performance.now() - start < durationMs) {
    await step();
    operations += 1;
  }
  return rate(operations, performance.now() - start, process.cpuUsage(cpuStart));
}

/** timeConcurrent runs `workers` loops of `step` at once until `durationMs` passes; the rate counts all steps. */
export async function timeConcurrent(durationMs: number, workers: number, step: () => Promise<unknown>): Promise<Rate> {
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  let operations = 0;
  const worker = async (): Promise<void> => {
    while (operations < TIMED_LOOP_ITERATIONS_MAX && performance.now() - start < durationMs) {
      await step();
      operations += 1;
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  return rate(operations, performance.now() - start, process.cpuUsage(cpuStart));
}

function rate(operations: number, wallMs: number, cpu: NodeJS.CpuUsage): Rate {
  return { perSecond: (operations * 1000) / wallMs, operations, wallMs, userCpuFraction: cpu.user / 1000 / wallMs };
}

/** median returns the median of a non-empty list. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** spread describes a list as "median [min–max]" with `digits` decimals. */
export function spread(values: readonly number[], digits = 0): string {
  return `${median(values).toFixed(digits)} [${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}]`;
}

// The benchmark's side of the client harness: forks load-client.ts processes (so the load is
// generated on event loops of its own, apart from the benchmark and the servers), hands them
// jobs, and merges what they measured. With several processes the concurrency and channels
// are split between them and each uses its own key prefix.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

import type { Failure, LoadEvent, LoadFailure, LoadJob, LoadResult } from './load-types.ts';
import { exited, stopChild, trackChild } from './processes.ts';
import { latencySummary, type LatencySummary } from './stats.ts';

const PROCESSES_MAX = 8;
const RESULT_GRACE_MS = 30_000;

/** JobOptions is a LoadJob for the whole harness (all its processes together). */
export type JobOptions = Omit<LoadJob, 'type'>;

/** MergedResult is a job's outcome over all harness processes. */
export interface MergedResult {
  /** perSecond is the sum over processes of completions in the window per second. */
  readonly perSecond: number;
  readonly completed: number;
  readonly windowMs: number;
  readonly latency: LatencySummary;
  readonly errors: Record<string, number>;
  readonly ambiguous: number;
  readonly failed: number;
  readonly wrongAnswers: number;
  readonly unfinished: number;
  /** completionsMs: sorted epoch times of all successes (only with recordCompletions). */
  readonly completionsMs: Float64Array;
  readonly failures: readonly Failure[];
  /** clientCpuPercent is the harness processes' CPU time over the window, in % of one core (summed). */
  readonly clientCpuPercent: number;
}

/** RunningJob is a job under way: when its window opens, how to end it early, and its result. */
export interface RunningJob {
  readonly measuring: Promise<number>;
  stop(): void;
  readonly result: Promise<MergedResult>;
}

/** LoadHarness is a set of client-harness processes. */
export class LoadHarness {
  private readonly children: readonly ChildProcess[];

  private constructor(children: readonly ChildProcess[]) {
    this.children = children;
  }

  /** start forks `processes` harness processes. */
  static start(processes: number): LoadHarness {
    if (!(Number.isInteger(processes) && processes >= 1 && processes <= PROCESSES_MAX)) throw new Error(`LoadHarness: bad process count ${processes}`);
    const children = Array.from({ length: processes }, () => {
      const child = fork(join(import.meta.dirname, 'load-client.ts'), [], { execArgv: [], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      trackChild(child);
      return child;
    });
    return new LoadHarness(children);
  }

  /** processes is the number of harness processes. */
  get processes(): number {
    return this.children.length;
  }

  /** run runs a job to its end. */
  run(options: JobOptions): Promise<MergedResult> {
    return this.startJob(options).result;
  }

  /** startJob starts a job on min(processes, concurrency) processes, splitting concurrency and channels. */
  startJob(options: JobOptions): RunningJob {
    const used = this.children.slice(0, Math.min(this.children.length, options.concurrency));
    const share = (total: number, index: number): number => Math.floor(total / used.length) + (index < total % used.length ? 1 : 0);
    const measuring: Promise<number>[] = [];
    const results: Promise<LoadResult>[] = [];
    for (const [index, child] of used.entries()) {
      const job: LoadJob = {
        ...options,
        type: 'job',
        concurrency: share(options.concurrency, index),
        channels: Math.max(1, share(options.channels, index)),
        requestsMax: Math.max(1, share(options.requestsMax, index)),
        keyPrefix: used.length === 1 ? options.keyPrefix : `${options.keyPrefix}/p${index}`,
      };
      let onMeasuring: (atMs: number) => void = () => {};
      measuring.push(new Promise((resolve) => (onMeasuring = resolve)));
      results.push(
        new Promise<LoadResult>((resolve, reject) => {
          const timeoutMs = job.warmupMs + job.durationMs + job.deadlineMs + RESULT_GRACE_MS;
          const timer = setTimeout(() => finish(new Error(`harness process ${child.pid} gave no result within ${timeoutMs} ms`)), timeoutMs);
          const onMessage = (message: LoadResult | LoadEvent | LoadFailure): void => {
            if (message.type === 'measuring') onMeasuring(message.atMs);
            else if (message.type === 'result') finish(undefined, message);
            else finish(new Error(`harness process ${child.pid}: ${message.message}`));
          };
          const onExit = (): void => finish(new Error(`harness process ${child.pid} exited`));
          const finish = (error?: Error, result?: LoadResult): void => {
            clearTimeout(timer);
            child.off('message', onMessage);
            child.off('exit', onExit);
            if (result !== undefined) resolve(result);
            else reject(error ?? new Error('no result'));
          };
          child.on('message', onMessage);
          child.once('exit', onExit);
          child.send(job);
        }),
      );
    }
    const result = Promise.all(results).then(merge);
    // A job that ends (or fails) before every window opened must not leave a waiter hanging.
    const endedFirst = result.then(
      () => Promise.reject(new Error('the harness job ended before its measured window opened')),
      (error: unknown) => Promise.reject(error instanceof Error ? error : new Error(String(error))),
    );
    endedFirst.catch(() => {});
    return {
      measuring: Promise.race([Promise.all(measuring).then((times) => Math.max(...times)), endedFirst]),
      stop: () => {
        for (const child of used) if (child.connected) child.send({ type: 'stop' });
      },
      result,
    };
  }

  /** close ends the harness processes (by PID). */
  async close(): Promise<void> {
    for (const child of this.children) if (child.connected) child.disconnect();
    await Promise.all(this.children.map(async (child) => {
      const timer = setTimeout(() => void stopChild(child), 2_000);
      await exited(child);
      clearTimeout(timer);
    }));
  }
}

function merge(results: readonly LoadResult[]): MergedResult {
  const latencies = new Float64Array(results.reduce((sum, result) => sum + result.latenciesMs.length, 0));
  const completions = new Float64Array(results.reduce((sum, result) => sum + result.completionsMs.length, 0));
  let latencyOffset = 0;
  let completionOffset = 0;
  const errors: Record<string, number> = {};
  for (const result of results) {
    latencies.set(result.latenciesMs, latencyOffset);
    latencyOffset += result.latenciesMs.length;
    completions.set(result.completionsMs, completionOffset);
    completionOffset += result.completionsMs.length;
    for (const [error, count] of Object.entries(result.errors)) errors[error] = (errors[error] ?? 0) + count;
  }
  const sum = (pick: (result: LoadResult) => number): number => results.reduce((total, result) => total + pick(result), 0);
  return {
    perSecond: sum((result) => (result.windowMs > 0 ? (result.completed * 1000) / result.windowMs : 0)),
    completed: sum((result) => result.completed),
    windowMs: Math.max(...results.map((result) => result.windowMs)),
    latency: latencySummary(latencies),
    errors,
    ambiguous: sum((result) => result.ambiguous),
    failed: sum((result) => result.failed),
    wrongAnswers: sum((result) => result.wrongAnswers),
    unfinished: sum((result) => result.unfinished),
    completionsMs: completions.sort(),
    clientCpuPercent: sum((result) => (result.windowMs > 0 ? (result.cpuMs * 100) / result.windowMs : 0)),
    failures: results.flatMap((result) => result.failures).sort((left, right) => left.atMs - right.atMs),
  };
}

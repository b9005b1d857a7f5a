// The bench's side of the write load: forks load-worker.ts, starts it, moves its clients to
// other endpoints, stops it and takes its report. The process is recorded with bench/cluster/processes.ts, so cleanup ends it (by PID).
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

import { stopChild, trackChild } from '../cluster/processes.ts';
import { OUTCOME_OK, type LoadCommand, type LoadMessage, type LoadReport, type LoadStart } from './load-types.ts';

const READY_TIMEOUT_MS = 30_000;
/** MOVE_TIMEOUT_MS bounds the wait for the load to say its clients moved. */
const MOVE_TIMEOUT_MS = 10_000;
/** REPORT_TIMEOUT_MS bounds the wait for the report after "stop": the longest put (its deadline) and the transfer. */
const REPORT_GRACE_MS = 60_000;

/** RunningLoad is a load under way. */
export interface RunningLoad {
  /** readyAtMs: when the clients started (epoch ms). */
  readonly readyAtMs: number;
  /** pid is the load process's. */
  readonly pid: number;
  /**
   * move points every client at `endpoints` (EtcdClient.setEndpoints) and answers when the
   * load did so (epoch ms); one move at a time.
   */
  move(endpoints: readonly string[]): Promise<number>;
  /** pace makes every client wait `delayMs` after each put from its next one on (0: none). */
  pace(delayMs: number): void;
  /** stop ends the load and answers its report; the process exits. */
  stop(): Promise<LoadReport>;
}

/** startLoad forks the load process, starts `job` and resolves once its clients run. */
export async function startLoad(job: Omit<LoadStart, 'type'>): Promise<RunningLoad> {
  const child: ChildProcess = fork(join(import.meta.dirname, 'load-worker.ts'), [], { execArgv: [], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  trackChild(child);
  let report: ((value: LoadReport) => void) | undefined;
  let fail: ((error: Error) => void) | undefined;
  const reported = new Promise<LoadReport>((resolve, reject) => {
    report = resolve;
    fail = reject;
  });
  reported.catch(() => {});
  let onReady: ((atMs: number) => void) | undefined;
  let readyTimer: NodeJS.Timeout | undefined;
  const ready = new Promise<number>((resolve, reject) => {
    onReady = resolve;
    readyTimer = setTimeout(() => reject(new Error(`the load process gave no sign within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    // A process that fails before it is ready fails the start.
    reported.catch((error: unknown) => reject(error instanceof Error ? error : new Error(String(error))));
  });
  // The move waiting for its answer, if one is.
  let moving: { resolve: (atMs: number) => void; reject: (error: Error) => void } | undefined;
  child.on('message', (message: LoadMessage) => {
    if (message.type === 'ready') onReady?.(message.atMs);
    else if (message.type === 'report') report?.(message);
    else if (message.type === 'moved') moving?.resolve(message.atMs);
    else {
      const error = new Error(`load process: ${message.message}`);
      moving?.reject(error);
      fail?.(error);
    }
  });
  child.once('exit', (code, signal) => fail?.(new Error(`the load process exited (code ${code}, signal ${signal}) before its report`)));
  child.send({ type: 'start', ...job } satisfies LoadStart);
  let readyAtMs: number;
  try {
    readyAtMs = await ready;
  } catch (error) {
    await stopChild(child);
    throw error;
  } finally {
    clearTimeout(readyTimer);
  }
  return {
    readyAtMs,
    pid: child.pid ?? 0,
    async move(endpoints) {
      if (moving !== undefined) throw new Error('move: a move is under way');
      if (endpoints.length === 0) throw new Error('move: no endpoints');
      if (!child.connected) throw new Error('move: the load process is gone');
      let timer: NodeJS.Timeout | undefined;
      const answered = new Promise<number>((resolve, reject) => {
        moving = { resolve, reject };
        timer = setTimeout(() => reject(new Error(`the load did not move its clients within ${MOVE_TIMEOUT_MS} ms`)), MOVE_TIMEOUT_MS);
      });
      try {
        child.send({ type: 'move', endpoints } satisfies LoadCommand);
        return await answered;
      } finally {
        clearTimeout(timer);
        moving = undefined;
      }
    },
    pace(delayMs) {
      if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error(`pace: ${delayMs} is not a delay`);
      if (child.connected) child.send({ type: 'pace', delayMs } satisfies LoadCommand);
    },
    async stop() {
      if (child.connected) child.send({ type: 'stop' });
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no load report within ${job.timeoutMs + REPORT_GRACE_MS} ms of the stop`)), job.timeoutMs + REPORT_GRACE_MS);
      });
      try {
        return await Promise.race([reported, late]);
      } finally {
        clearTimeout(timer);
        if (child.connected) child.disconnect();
        await stopChild(child);
      }
    },
  };
}

/** WindowFigures are what the load did in a window of epoch milliseconds. */
export interface WindowFigures {
  /** acknowledgedPerSecond: puts acknowledged in the window ÷ its length. */
  readonly acknowledgedPerSecond: number;
  /**
   * longestGapMs: the longest time between two successive acknowledgements (of any client)
   * where the gap overlaps the window — the pause the writers saw. NaN with fewer than two.
   */
  readonly longestGapMs: number;
  /** longestGapFromMs: when that gap began (epoch ms). */
  readonly longestGapFromMs: number;
  /** notAcknowledged: puts failed or timed out (ambiguous) that overlap the window. */
  readonly notAcknowledged: number;
}

/** windowFigures reads `report` between `fromMs` and `toMs` (epoch ms, fromMs <= toMs). */
export function windowFigures(report: LoadReport, fromMs: number, toMs: number): WindowFigures {
  if (!(fromMs <= toMs)) throw new Error(`windowFigures: the window ${fromMs}..${toMs} is reversed`);
  const acknowledgedEnds: number[] = [];
  let notAcknowledged = 0;
  for (let row = 0; row < report.outcomes.length; row += 1) {
    const startMs = report.startsMs[row] ?? 0;
    const endMs = report.endsMs[row] ?? 0;
    if (report.outcomes[row] === OUTCOME_OK) acknowledgedEnds.push(endMs);
    else if (endMs >= fromMs && startMs <= toMs) notAcknowledged += 1;
  }
  const ends = Float64Array.from(acknowledgedEnds).sort();
  let inWindow = 0;
  let longestGapMs = Number.NaN;
  let longestGapFromMs = Number.NaN;
  for (let index = 0; index < ends.length; index += 1) {
    const endMs = ends[index] ?? 0;
    if (endMs >= fromMs && endMs <= toMs) inWindow += 1;
    const nextMs = ends[index + 1];
    // A gap [endMs, nextMs] overlaps the window when it begins before its end and ends after its start.
    if (nextMs !== undefined && endMs <= toMs && nextMs >= fromMs) {
      const gapMs = nextMs - endMs;
      if (!(gapMs <= longestGapMs)) {
        longestGapMs = gapMs;
        longestGapFromMs = endMs;
      }
    }
  }
  return { acknowledgedPerSecond: inWindow / Math.max(0.001, (toMs - fromMs) / 1000), longestGapMs, longestGapFromMs, notAcknowledged };
}

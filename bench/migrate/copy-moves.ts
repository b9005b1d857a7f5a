// What bench:migrate-copy does the same way around a move of the writes (`copy switch`, `copy
// reverse`), whatever the source: the verb's figures as the writers saw them (from the load's
// report), the wait for a copier to exit once a move took its copy over or fenced its source,
// and the wait for a mirror to reach a revision. Every wait is bounded in count and time.
import type { EtcdClient } from '../../src/client/index.ts';
import { sleep } from '../cluster/processes.ts';
import type { Copier, CopyCliAnswer } from './copy-tools.ts';
import { windowFigures } from './load.ts';
import type { LoadReport } from './load-types.ts';

/** STEP_ASIDE_TIMEOUT_MS bounds the wait for a copier to exit after a move took its copy over. */
export const STEP_ASIDE_TIMEOUT_MS = 30_000;

/** MoveFigures are one `copy switch` or `copy reverse` under the load. */
export interface MoveFigures {
  /** writePauseMs: the verb's JSON (stratakv: fence → the new primary writable; etcd: see the verb). */
  readonly writePauseMs: number;
  /** clientPauseMs: the longest gap between two successive acknowledged writes around the verb. */
  readonly clientPauseMs: number;
  /** notAcknowledged: the load's puts that failed or timed out during the verb. */
  readonly notAcknowledged: number;
  /** gapAtSeconds: when that gap began, in seconds from the verb's start (its process's spawn). */
  readonly gapAtSeconds: number;
  readonly verbSeconds: number;
  readonly verifiedEqual: boolean;
}

/**
 * moveFigures reads a finished move verb's answer and the load's report over the verb's run,
 * from its spawn to `untilMs` (epoch ms; its exit by default — later when the writers are moved
 * after it, so that the gap they saw is whole).
 */
export function moveFigures(answer: CopyCliAnswer, report: LoadReport, untilMs = answer.endedMs): MoveFigures {
  const window = windowFigures(report, answer.startedMs, Math.max(answer.endedMs, untilMs));
  const verified = answer.json['verified'] as { equal?: unknown } | null | undefined;
  return {
    writePauseMs: Number(answer.json['writePauseMs'] ?? Number.NaN),
    clientPauseMs: window.longestGapMs,
    notAcknowledged: window.notAcknowledged,
    gapAtSeconds: (window.longestGapFromMs - answer.startedMs) / 1000,
    verbSeconds: answer.seconds,
    verifiedEqual: verified?.equal === true,
  };
}

/**
 * stepAside waits (bounded) for a copier whose copy a move took over (or whose source it
 * fenced) to exit by itself; a note if it did not, or exited without printing `said`.
 */
export async function stepAside(copier: Copier, what: string, notes: string[], said: RegExp = /stepped aside/): Promise<void> {
  if (await copier.exitedWithin(STEP_ASIDE_TIMEOUT_MS)) {
    if (!said.test(copier.output()) || copier.child.exitCode !== 0) notes.push(`the ${what} copier exited without ${String(said)} (code ${String(copier.child.exitCode)}): ${copier.output().slice(-300)}`);
    return;
  }
  notes.push(`the ${what} copier did not exit within ${STEP_ASIDE_TIMEOUT_MS} ms of the move; stopped`);
  await copier.stop();
}

/**
 * waitForMirror polls the mirror until it is at or past `revision`; answers performance.now()
 * then. `hopeless`, asked before each poll, ends the wait early with the reason it answers (a
 * copier that exited will not bring the mirror there).
 */
export async function waitForMirror(mirror: EtcdClient, revision: number, pollIntervalMs: number, timeoutMs: number, hopeless: () => string | undefined = () => undefined): Promise<number> {
  const started = performance.now();
  for (let poll = 0; poll * pollIntervalMs <= timeoutMs; poll += 1) {
    const answer = await mirror.get('probe/heartbeat', { countOnly: true });
    if (answer.header.revision >= revision) return performance.now();
    if (performance.now() - started > timeoutMs) break;
    const why = hopeless();
    if (why !== undefined) throw new Error(`the mirror will not reach revision ${revision} (at ${answer.header.revision}): ${why}`);
    await sleep(pollIntervalMs);
  }
  throw new Error(`the mirror did not reach revision ${revision} within ${timeoutMs} ms`);
}

/** copierGone answers why `copier` will not copy any more (it exited), or undefined while it runs. */
export function copierGone(copier: Copier, what: string): string | undefined {
  if (copier.child.exitCode === null && copier.child.signalCode === null) return undefined;
  return `the ${what} copier exited (code ${String(copier.child.exitCode)}, signal ${String(copier.child.signalCode)}): ${copier.output().trim().split('\n').slice(-2).join(' | ')}`;
}

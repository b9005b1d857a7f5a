// switchCopy moves the writes of a copy from a stratakv source to its mirror, and sets up the
// reverse copy, so that the old source keeps following the new primary (and `copy reverse`
// can move back). Vitess's SwitchTraffic is the model, with its known failures designed out:
// the switch refuses to begin unless the reverse copy can start (vitess#16794), never leaves
// both sides read-only half way without a way on (vitess#17326: every step is re-run by
// running `copy switch` again), never promotes a mirror that differs from its source
// (vitess#6951: a Merkle diff of both sides at the fence), and loses no write at the switch
// (vitess PR #9481: the fence is an entry in the source's log, and the mirror applies every
// command before it and none after it).
//
// The steps, each recorded where a re-run finds it:
//   1. take the copy over: the mirror's state becomes `switching` (a running copier steps
//      aside on its next write), and the switch catches the mirror up itself;
//   2. fence the source: a mirrorBegin makes it a read-only mirror with a `fenced` state
//      (client writes are refused from that entry on: the write pause begins);
//   3. replay the source's log up to the fence (the copier stops at a source's mirrorBegin);
//   4. verify: both clusters are still; their applied views are pinned and compared with the
//      full hashes (values and every revision). A difference undoes the fence (the source
//      takes writes again) and fails the switch, listing the differences;
//   5. end mirror mode on the mirror: it takes writes (the pause ends);
//   6. find the mirror's mirrorEnd entry in its log and make the source's state the reverse
//      copy's: `tailing` from that index, which `copy create --from stratakv://<new primary>
//      --to <old source>` resumes.

import { randomBytes } from 'node:crypto';

import type { DiffReport } from '../../client/index.ts';
import { decodeKvCommand, isKvCommand } from '../../storage/index.ts';
import { pauseOrAbort } from '../../util/clock.ts';
import { ErrorCode, isStrataError, StrataError } from '../../util/errors.ts';
import { base64, rangeOf, RETRYABLE, runCopy, type CopyEvent } from './copier.ts';
import type { CopyTarget, LogCopySource, PinnedSourceView } from './copy-ends.ts';
import { COPY_ENDPOINTS_MAX, COPY_STATE_FORMAT, decodeCopyState, encodeCopyState, sameBytes, type CopyDirection, type CopySourceKind, type CopyState } from './copy-state.ts';
import { diffPinned } from './copy-verify-merkle.ts';
import { LOG_HOLD_TTL_MS, logHoldConsumer } from './log-hold-renewer.ts';

/** SWITCH_STEP_ATTEMPTS_MAX bounds the attempts of one compare-and-set step of a switch. */
export const SWITCH_STEP_ATTEMPTS_MAX = 20;
/** FIND_MIRROR_END_ENTRIES_MAX bounds the mirror's log read to find its mirrorEnd. */
export const FIND_MIRROR_END_ENTRIES_MAX = 1_000_000;
// Bounds the pins tried until one is on a member that applied everything.
const PIN_ATTEMPTS_MAX = 50;
const PIN_PAUSE_MS = 50;

/** SwitchEvent reports a switch's steps. */
export type SwitchEvent =
  | { readonly kind: 'taken-over'; readonly switchId: string; readonly resumed: boolean }
  | { readonly kind: 'caught-up'; readonly appliedIndex: number }
  | { readonly kind: 'fenced'; readonly atMs: number }
  | { readonly kind: 'replayed-to-fence'; readonly appliedIndex: number; readonly revision: number }
  | { readonly kind: 'verified'; readonly equal: boolean; readonly keyCount: number }
  | { readonly kind: 'writable'; readonly revision: number; readonly writePauseMs: number }
  | { readonly kind: 'reverse-ready'; readonly fromIndex: number }
  | { readonly kind: 'undone'; readonly why: string }
  | { readonly kind: 'copier'; readonly event: CopyEvent };

/** SwitchOptions configure switchCopy. */
export interface SwitchOptions {
  /** The mirror, made writable: its mirror calls and its log (where its mirrorEnd is found). */
  readonly mirror: CopyTarget;
  readonly mirrorLog: LogCopySource;
  readonly mirrorEndpoints: readonly string[];
  /** The source, fenced: its log and its mirror calls. */
  readonly source: LogCopySource;
  readonly sourceTarget: CopyTarget;
  readonly sourceEndpoints: readonly string[];
  /** `switch` moves a forward copy; `reverse` moves back (the mirror holds a reverse copy). */
  readonly expect: 'switch' | 'reverse';
  readonly signal: AbortSignal;
  readonly now?: () => number;
  readonly onEvent?: (event: SwitchEvent) => void;
}

/** SwitchResult is a finished switch. */
export interface SwitchResult {
  readonly switchId: string;
  /** The revision both clusters held when the new primary became writable. */
  readonly revision: number;
  /** From the fence to the new primary taking writes (undefined when a re-run finished a switch whose pause was measured before). */
  readonly writePauseMs: number | undefined;
  readonly verify: DiffReport | undefined;
  /** The old source's state now: the reverse copy, `tailing` from `reverseFromIndex`. */
  readonly reverseState: CopyState;
  readonly reverseFromIndex: number;
}

/** switchCopy runs (or finishes) a switch; see the file comment. */
export async function switchCopy(options: SwitchOptions): Promise<SwitchResult> {
  const { mirror, source, sourceTarget, signal } = options;
  const now = options.now ?? Date.now;
  const view = await mirror.read(signal);
  const sourceView = await sourceTarget.read(signal);
  const sourceState = sourceView.state === undefined ? undefined : decodeCopyState(sourceView.state);

  if (view.state === undefined) {
    // The mirror takes writes: a switch that ended mirror mode and died before step 6?
    if (sourceState?.phase === 'fenced' && sourceState.switchInfo !== undefined && sourceView.state !== undefined) {
      const head = await options.mirrorLog.head(signal);
      if (head.clusterId === sourceState.source.clusterId) return await finishReverse(options, sourceView.state, sourceState, undefined, undefined, now);
    }
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the cluster at --to is not a mirror: there is nothing to ${options.expect}${sourceState === undefined ? '' : ` (the other cluster is ${sourceState.phase})`}`);
  }
  let state = decodeCopyState(view.state);
  let stateBytes = view.state;
  if (state.source.kind !== 'stratakv') {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'switching a copy of an etcd source is not built yet: etcd cannot be fenced or made a mirror; stop its writers, wait for `copy status` to show no lag, then `copy verify`');
  }
  const direction = state.direction ?? 'forward';
  if (options.expect === 'switch' && direction !== 'forward') throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'this mirror follows the new primary after a switch: `copy reverse` moves the writes back to it');
  if (options.expect === 'reverse' && direction !== 'reverse') throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'this mirror is a forward copy: `copy switch` moves the writes to it (`copy reverse` only moves back after a switch)');
  const head = await source.head(signal);
  if (head.clusterId !== state.source.clusterId) {
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the mirror follows cluster ${state.source.clusterId}, but --from answers as cluster ${head.clusterId}`);
  }

  // ---- 1. take the copy over ----
  let switchId: string;
  let resumed = false;
  if (state.phase === 'switching' && state.switchInfo !== undefined) {
    switchId = state.switchInfo.switchId;
    resumed = true;
  } else if (state.phase === 'tailing') {
    if (sourceState !== undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the source is itself a mirror (${sourceState.phase}): it cannot be fenced`);
    switchId = randomBytes(8).toString('hex');
    // The reverse copy must be able to start: the mirror's log is readable from its applied index.
    await checkLogReadable(options.mirrorLog, signal);
    const taken = await takeOver(mirror, state, stateBytes, switchId, now, signal);
    state = taken.state;
    stateBytes = taken.bytes;
  } else {
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the copy is ${state.phase}: switch once its scan is done and it follows the source (\`copy status\`)`);
  }
  options.onEvent?.({ kind: 'taken-over', switchId, resumed });
  const copyEvents = (event: CopyEvent): void => options.onEvent?.({ kind: 'copier', event });
  const common = { logSource: source, target: mirror, sourceKind: 'stratakv' as const, sourceEndpoints: options.sourceEndpoints, signal, switchId, onEvent: copyEvents };

  // The mirror's applied index now: its mirrorEnd comes after it (step 6 searches from here).
  const mirrorIndexBefore = (await options.mirrorLog.head(signal)).index;

  // ---- 2. fence the source (unless a re-run finds it fenced) ----
  let fencedAtMs: number | undefined;
  const fencedBySelf = sourceState?.phase === 'fenced' && sourceState.switchInfo?.switchId === switchId;
  if (!fencedBySelf) {
    // Catch up first, so that the pause covers only the last few commands.
    const caught = await runCopy({ ...common, stopWhenCaughtUp: true });
    if (caught.reason !== 'caught-up' && caught.reason !== 'source-fenced') throw stoppedEarly(caught.reason);
    options.onEvent?.({ kind: 'caught-up', appliedIndex: caught.state.appliedIndex ?? 0 });
    const fence = fenceState({
      mirrorEndpoints: options.mirrorEndpoints,
      mirrorClusterId: await clusterIdOf(options.mirrorLog, signal),
      direction: direction === 'forward' ? 'reverse' : 'forward',
      mirrorIndexBefore,
      switchId,
      startedAtMs: state.switchInfo?.startedAtMs ?? now(),
      nowMs: now(),
    });
    await beginFence(sourceTarget, encodeCopyState(fence), signal);
    fencedAtMs = performance.now();
    options.onEvent?.({ kind: 'fenced', atMs: now() });
  }

  // ---- 3. replay up to the fence ----
  const replayed = await runCopy({ ...common });
  if (replayed.reason !== 'source-fenced') throw stoppedEarly(replayed.reason);
  const after = await mirror.read(signal);
  const fenceView = await sourceTarget.read(signal);
  if (after.state === undefined || fenceView.state === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'a mirror state vanished during the switch (another `copy` command ran?)');
  state = decodeCopyState(after.state);
  stateBytes = after.state;
  const fenced = decodeCopyState(fenceView.state);
  if (after.revision !== fenceView.revision) {
    throw new StrataError(ErrorCode.CORRUPTION, `after replaying up to the fence the mirror's revision is ${after.revision} and the source's ${fenceView.revision}: they must be equal`, { details: { check: 'switch-revision' } });
  }
  options.onEvent?.({ kind: 'replayed-to-fence', appliedIndex: state.appliedIndex ?? 0, revision: after.revision });

  // ---- 4. verify: both are still ----
  const verify = await verifyStill(sourceTarget, mirror, after.revision, signal);
  options.onEvent?.({ kind: 'verified', equal: verify.equal, keyCount: verify.a.keyCount });
  if (!verify.equal) {
    await undo(options, fenceView.state, state, stateBytes, signal);
    options.onEvent?.({ kind: 'undone', why: 'the clusters differ at the fence' });
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the switch was undone: the mirror differs from the source at revision ${after.revision} (${verify.differences.length}${verify.truncated ? '+' : ''} keys; run \`copy verify\` for the list); the source takes writes again`, {
      details: { differences: verify.differences.length, revision: after.revision },
    });
  }

  // ---- 5. the mirror takes writes ----
  await endMirror(mirror, stateBytes, signal);
  const writePauseMs = fencedAtMs === undefined ? undefined : performance.now() - fencedAtMs;
  options.onEvent?.({ kind: 'writable', revision: after.revision, writePauseMs: writePauseMs ?? -1 });

  // ---- 6. the reverse copy ----
  return await finishReverse(options, fenceView.state, fenced, verify, writePauseMs, now);
}

/**
 * fenceState is the state a switch's fence gives the source: read-only (`fenced`) while the
 * switch finishes, then the reverse copy's (finishReverse), following the mirror from after
 * `mirrorIndexBefore` (where the search for the mirror's mirrorEnd starts). The etcd switch
 * builds its states with it too: `sourceKind` etcd (the way back: no log index), and
 * `appliedRevision` when the state already holds everything up to a revision (caught up now).
 */
export function fenceState(fence: {
  readonly mirrorEndpoints: readonly string[];
  readonly mirrorClusterId: string;
  readonly direction: CopyDirection;
  readonly mirrorIndexBefore?: number;
  readonly switchId: string;
  readonly startedAtMs: number;
  readonly nowMs: number;
  readonly sourceKind?: CopySourceKind;
  readonly appliedRevision?: number;
}): CopyState {
  const every = rangeOf(undefined);
  return {
    format: COPY_STATE_FORMAT,
    copyId: randomBytes(8).toString('hex'),
    source: { kind: fence.sourceKind ?? 'stratakv', endpoints: fence.mirrorEndpoints.slice(0, COPY_ENDPOINTS_MAX), clusterId: fence.mirrorClusterId },
    range: { key: base64(every.key), rangeEnd: base64(every.rangeEnd) },
    prefix: null,
    phase: 'fenced',
    scan: null,
    appliedRevision: fence.appliedRevision ?? 0,
    sourceRevisionSeen: fence.appliedRevision ?? 0,
    caughtUpAtMs: fence.appliedRevision === undefined ? 0 : fence.nowMs,
    leasedPuts: 0,
    rescans: 0,
    createdAtMs: fence.nowMs,
    updatedAtMs: fence.nowMs,
    direction: fence.direction,
    ...(fence.mirrorIndexBefore === undefined ? {} : { appliedIndex: fence.mirrorIndexBefore }),
    switchInfo: { switchId: fence.switchId, startedAtMs: fence.startedAtMs },
  };
}

/** completeCopy ends a copy after its switch: the old source (the reverse copy's mirror) stays read-only and no copier resumes it. */
export async function completeCopy(target: CopyTarget, options: { readonly signal?: AbortSignal; readonly now?: () => number } = {}): Promise<CopyState> {
  const now = options.now ?? Date.now;
  const view = await target.read(options.signal);
  if (view.state === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the cluster at --to is not a mirror: give the old source (the reverse copy\'s mirror) after a switch');
  const state = decodeCopyState(view.state);
  if (state.phase === 'completed') return state;
  if ((state.direction ?? 'forward') !== 'reverse' || state.phase !== 'tailing') {
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `\`copy complete\` ends a copy after its switch, on the old source; this cluster's copy is ${state.direction ?? 'forward'} and ${state.phase}${(state.direction ?? 'forward') === 'forward' ? ' (before a switch, `copy cancel` ends it)' : ''}`);
  }
  const next: CopyState = { ...state, phase: 'completed', updatedAtMs: now() };
  await casState(target, view.state, encodeCopyState(next), options.signal);
  return next;
}

// ---- the steps ----

export async function takeOver(mirror: CopyTarget, first: CopyState, firstBytes: Uint8Array, switchId: string, now: () => number, signal: AbortSignal): Promise<{ state: CopyState; bytes: Uint8Array }> {
  let state = first;
  let bytes = firstBytes;
  for (let attempt = 1; attempt <= SWITCH_STEP_ATTEMPTS_MAX; attempt += 1) {
    const next: CopyState = { ...state, phase: 'switching', switchInfo: { switchId, startedAtMs: now(), previousState: base64(bytes) }, updatedAtMs: now() };
    const nextBytes = encodeCopyState(next);
    try {
      await casState(mirror, bytes, nextBytes, signal);
      return { state: next, bytes: nextBytes };
    } catch (error) {
      if (!isStrataError(error, ErrorCode.MIRROR_CONFLICT)) throw error;
      // A running copier wrote a batch meanwhile: take over from its newer state.
      const view = await mirror.read(signal);
      if (view.state === undefined) throw error;
      const current = decodeCopyState(view.state);
      if (current.copyId !== first.copyId || current.phase !== 'tailing') throw error;
      state = current;
      bytes = view.state;
    }
  }
  throw new StrataError(ErrorCode.UNAVAILABLE, `could not take the copy over in ${SWITCH_STEP_ATTEMPTS_MAX} attempts (a copier keeps writing?)`);
}

/** beginFence makes the source a mirror with the fence state (a re-sent fence that landed is recognised). */
export async function beginFence(sourceTarget: CopyTarget, fence: Uint8Array, signal: AbortSignal): Promise<void> {
  for (let attempt = 1; attempt <= SWITCH_STEP_ATTEMPTS_MAX; attempt += 1) {
    try {
      await sourceTarget.mirror({ type: 'mirrorBegin', state: fence, requireEmpty: false });
      return;
    } catch (error) {
      if (!isStrataError(error) || (!RETRYABLE.has(error.code) && error.code !== ErrorCode.MIRROR_CONFLICT)) throw error;
      const view = await readRetrying(sourceTarget, signal);
      if (sameBytes(view.state, fence)) return;
      if (view.state !== undefined) throw error;
      await pauseOrAbort(retryPauseMs(attempt), signal);
    }
  }
  throw new StrataError(ErrorCode.UNAVAILABLE, `the source did not take the fence in ${SWITCH_STEP_ATTEMPTS_MAX} attempts`);
}

export async function endMirror(target: CopyTarget, expect: Uint8Array, signal: AbortSignal): Promise<void> {
  for (let attempt = 1; attempt <= SWITCH_STEP_ATTEMPTS_MAX; attempt += 1) {
    try {
      await target.mirror({ type: 'mirrorEnd', expectState: expect });
      return;
    } catch (error) {
      if (!isStrataError(error) || (!RETRYABLE.has(error.code) && error.code !== ErrorCode.MIRROR_CONFLICT)) throw error;
      const view = await readRetrying(target, signal);
      if (view.state === undefined) return;
      if (!sameBytes(view.state, expect)) throw error;
      await pauseOrAbort(retryPauseMs(attempt), signal);
    }
  }
  throw new StrataError(ErrorCode.UNAVAILABLE, `mirror mode did not end in ${SWITCH_STEP_ATTEMPTS_MAX} attempts`);
}

/** casState replaces a mirror state with no data (a mirrorReplay without commands); a re-sent write that landed is recognised. */
export async function casState(target: CopyTarget, expect: Uint8Array, next: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
  for (let attempt = 1; attempt <= SWITCH_STEP_ATTEMPTS_MAX; attempt += 1) {
    try {
      await target.mirror({ type: 'mirrorReplay', expectState: expect, state: next, commands: [] });
      return;
    } catch (error) {
      if (!isStrataError(error) || (!RETRYABLE.has(error.code) && error.code !== ErrorCode.MIRROR_CONFLICT)) throw error;
      const view = await readRetrying(target, signal);
      if (sameBytes(view.state, next)) return;
      if (!sameBytes(view.state, expect)) {
        throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the mirror state changed under the switch (another `copy` command ran?)', { cause: error });
      }
      await pauseOrAbort(retryPauseMs(attempt), signal ?? NEVER);
    }
  }
  throw new StrataError(ErrorCode.UNAVAILABLE, `a mirror state write did not land in ${SWITCH_STEP_ATTEMPTS_MAX} attempts`);
}

/** verifyStill compares both clusters' applied views, each pinned on a member that holds `revision`. */
async function verifyStill(source: CopyTarget, mirror: CopyTarget, revision: number, signal: AbortSignal): Promise<DiffReport> {
  const sourcePin = await pinAt(source, revision, signal);
  try {
    const mirrorPin = await pinAt(mirror, revision, signal);
    try {
      return await diffPinned(sourcePin, mirrorPin, { signal });
    } finally {
      await mirror.release(mirrorPin);
    }
  } finally {
    await source.release(sourcePin);
  }
}

async function pinAt(target: CopyTarget, revision: number, signal: AbortSignal): Promise<PinnedSourceView> {
  for (let attempt = 1; attempt <= PIN_ATTEMPTS_MAX; attempt += 1) {
    const pin = await target.pin(signal);
    if (pin.revision === revision) return pin;
    await target.release(pin);
    // A follower that has not applied the last entries yet; nothing else writes.
    await pauseOrAbort(PIN_PAUSE_MS, signal);
  }
  throw new StrataError(ErrorCode.UNAVAILABLE, `no member reached revision ${revision} to be pinned`);
}

/** undo puts both clusters back as before the fence: the source takes writes, the copy follows it again. */
async function undo(options: SwitchOptions, fenceBytes: Uint8Array, state: CopyState, stateBytes: Uint8Array, signal: AbortSignal): Promise<void> {
  await endMirror(options.sourceTarget, fenceBytes, signal);
  const { switchInfo: _switchInfo, ...rest } = state;
  await casState(options.mirror, stateBytes, encodeCopyState({ ...rest, phase: 'tailing', updatedAtMs: Date.now() }), signal);
}

/** finishReverse finds the new primary's mirrorEnd entry and makes the old source's state the reverse copy's, tailing after it. */
async function finishReverse(
  options: SwitchOptions,
  fenceBytes: Uint8Array,
  fence: CopyState,
  verify: DiffReport | undefined,
  writePauseMs: number | undefined,
  now: () => number,
): Promise<SwitchResult> {
  const { signal } = options;
  const switchId = fence.switchInfo?.switchId ?? '';
  const fromIndex = await findMirrorEnd(options.mirrorLog, fence.appliedIndex ?? 0, switchId, signal);
  const head = await options.mirrorLog.head(signal);
  const revision = (await options.sourceTarget.read(signal)).revision;
  const nowMs = now();
  const reverse: CopyState = {
    ...fence,
    phase: 'tailing',
    appliedIndex: fromIndex,
    commitIndexSeen: Math.max(fromIndex, head.index),
    appliedRevision: revision,
    sourceRevisionSeen: Math.max(revision, head.revision),
    caughtUpAtMs: nowMs,
    updatedAtMs: nowMs,
    switchInfo: { switchId, startedAtMs: fence.switchInfo?.startedAtMs ?? nowMs, revision, switchedAtMs: nowMs },
  };
  await casState(options.sourceTarget, fenceBytes, encodeCopyState(reverse), signal);
  // The new primary keeps its log for the reverse copy until its copier runs (and renews this hold).
  await options.mirrorLog.hold(logHoldConsumer('copy', reverse.copyId), fromIndex + 1, LOG_HOLD_TTL_MS, signal).catch(() => undefined);
  options.onEvent?.({ kind: 'reverse-ready', fromIndex });
  return { switchId, revision, writePauseMs, verify, reverseState: reverse, reverseFromIndex: fromIndex };
}

/**
 * findMirrorEnd reads the new primary's log after `fromIndex` for the mirrorEnd of this switch
 * (its expected state is the `switching` state with this switch's id): the reverse copy
 * replays from the entry after it. Every command before it was refused by the mirror (or is
 * the copier's), so none of them may be replayed; the first such entry is the one that
 * applied (a re-sent one after it found no mirror state and was refused).
 */
export async function findMirrorEnd(mirrorLog: LogCopySource, fromIndex: number, switchId: string, signal: AbortSignal | undefined): Promise<number> {
  let read = 0;
  const stream = new AbortController();
  const onAbort = (): void => stream.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const batch of mirrorLog.follow(fromIndex + 1, stream.signal)) {
      if (batch.kind === 'idle') continue;
      for (const entry of batch.entries) {
        read += 1;
        if (read > FIND_MIRROR_END_ENTRIES_MAX) throw new StrataError(ErrorCode.UNAVAILABLE, `no mirrorEnd of switch ${switchId} in ${FIND_MIRROR_END_ENTRIES_MAX} entries of the new primary's log after index ${fromIndex}`);
        if (!entry.normal || entry.data.byteLength === 0 || !isKvCommand(entry.data)) continue;
        const request = decodeKvCommand(entry.data).request;
        if (request.type !== 'mirrorEnd') continue;
        try {
          const ended = decodeCopyState(request.expectState);
          if (ended.switchInfo?.switchId === switchId && ended.phase === 'switching') return entry.index;
        } catch {
          // Another tool's mirrorEnd: not this switch's.
        }
      }
    }
  } finally {
    stream.abort();
    signal?.removeEventListener('abort', onAbort);
  }
  throw new StrataError(ErrorCode.UNAVAILABLE, 'the new primary\'s log stream ended before its mirrorEnd');
}

/** checkLogReadable: the reverse copy reads the mirror's log from its current index; refuse to switch if it cannot. */
export async function checkLogReadable(log: LogCopySource, signal: AbortSignal): Promise<void> {
  const head = await log.head(signal);
  const stream = new AbortController();
  const onAbort = (): void => stream.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const _batch of log.follow(Math.max(1, head.index), stream.signal)) return;
  } catch (error) {
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the switch was refused: the reverse copy could not start (the mirror's log cannot be read from index ${head.index}: ${(error as Error).message})`, { cause: error });
  } finally {
    stream.abort();
    signal.removeEventListener('abort', onAbort);
  }
}

async function clusterIdOf(log: LogCopySource, signal: AbortSignal): Promise<string> {
  return (await log.head(signal)).clusterId;
}

async function readRetrying(target: CopyTarget, signal: AbortSignal | undefined): Promise<{ readonly state: Uint8Array | undefined; readonly revision: number }> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await target.read(signal);
    } catch (error) {
      if (!isStrataError(error) || !RETRYABLE.has(error.code) || attempt >= SWITCH_STEP_ATTEMPTS_MAX) throw error;
      await pauseOrAbort(retryPauseMs(attempt), signal ?? NEVER);
    }
  }
}

export function stoppedEarly(reason: string): StrataError {
  return new StrataError(ErrorCode.CANCELED, `the switch stopped before it finished (${reason}); run \`copy switch\` again to go on from where it is`);
}

function retryPauseMs(attempt: number): number {
  return Math.min(2_000, 50 * 2 ** Math.min(6, attempt - 1));
}

const NEVER = new AbortController().signal;

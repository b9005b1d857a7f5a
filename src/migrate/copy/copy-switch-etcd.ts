// The switch of a copy whose source is etcd, and the way back.
//
// etcd cannot be fenced (it has no read-only mode; an alarm would also stop the reverse copy's
// writes), so `copy switch` relies on the operator moving the writers, and checks that they
// did: it verifies the whole copy while the writes still go to etcd, asks the operator to
// move the writers to the new endpoints, waits for a **quiet window** (etcd's revision still
// for `quietMs`), takes the copy over, catches up, verifies again only the keys etcd changed
// since the first verify (from etcd's own history, so the pause stays short), writes the
// reverse copy's state into etcd (REVERSE_STATE_KEY, at revision R+1, which the mirror then
// copies too, so both clusters stay at one revision), and ends mirror mode: the new primary
// takes writes. A write that reaches etcd after the quiet window is caught, not lost silently:
// the checks of etcd's revision before the state is written and before mirror mode ends undo
// the switch (the copy follows etcd again), and after that the reverse copy stops at it.
//
// The switch refuses to begin unless the reverse copy can start: the new primary's log is
// readable, etcd holds no other reverse copy in progress, and the copy covers every key (the
// reverse copy keeps revisions equal only for a whole keyspace).
//
// `copy reverse` moves the writes back: it verifies the new primary's pinned view against etcd
// at the same revision (the reverse copy brings etcd there first), fences the new primary (a
// mirrorBegin: it refuses writes from that entry on), runs the reverse copy up to the fence,
// verifies the keys changed since, marks the reverse copy completed, and makes the new
// primary's state a forward copy of etcd again, `tailing` from etcd's revision (the
// revisions are equal, so nothing is scanned again): `copy create --from etcd://…` resumes it.

import { randomBytes } from 'node:crypto';

import type { EtcdClient } from '../../client/index.ts';
import { assert } from '../../util/assert.ts';
import { pauseOrAbort } from '../../util/clock.ts';
import { ErrorCode, isStrataError, StrataError } from '../../util/errors.ts';
import { fromBase64, keyAfter, rangeOf, runCopy, type CopyEvent } from './copier.ts';
import type { CopySource, CopyTarget, KeyRange, LogCopySource, SourceKv } from './copy-ends.ts';
import { decodeCopyState, encodeCopyState, isStateKey, REVERSE_STATE_KEY, type CopyState } from './copy-state.ts';
import { beginFence, casState, checkLogReadable, endMirror, fenceState, stoppedEarly, takeOver } from './copy-switch.ts';
import { DIFFERENCES_LISTED_MAX, differingFields, verifyCopy, type CopyDifference, type VerifyReport } from './copy-verify.ts';
import { LOG_HOLD_TTL_MS, logHoldConsumer, releaseLogHold } from './log-hold-renewer.ts';
import { EtcdReverse, readReverseState, REPLICA_KEYS_MAX, type ReverseEvent, type ReverseHead } from './etcd-reverse.ts';

/** QUIET_MS_DEFAULT is how long etcd's revision must stand still before the switch goes on. */
export const QUIET_MS_DEFAULT = 300;
/** QUIET_TIMEOUT_MS_DEFAULT bounds the wait for a quiet window. */
export const QUIET_TIMEOUT_MS_DEFAULT = 60_000;
/** QUIET_POLL_MS is how often etcd's revision is read while waiting for a quiet window. */
export const QUIET_POLL_MS = 25;
/** DELTA_KEYS_MAX bounds the keys a second verify compares one by one; over it, it compares everything. */
export const DELTA_KEYS_MAX = 100_000;
/** VERIFY_PASSES_MAX bounds the passes over what changed since the last one, before the operator is asked to move the writers. */
export const VERIFY_PASSES_MAX = 5;
/** DELTA_KEYS_SMALL: a pass that compared this few keys (or took under DELTA_PASS_SHORT_MS) leaves little for the pause. */
export const DELTA_KEYS_SMALL = 500;
export const DELTA_PASS_SHORT_MS = 250;
/** GROUP_KEYS is how many changed keys one pair of range reads covers (compareKeyGroups). */
export const GROUP_KEYS = 256;
/** GROUP_READ_KEYS_MAX bounds one range read of compareKeyGroups. */
export const GROUP_READ_KEYS_MAX = 2_048;
/** GROUP_READ_LIMIT_PER_KEY: a group's read takes up to this many keys per changed key in it (at least GROUP_READ_LIMIT_MIN). */
export const GROUP_READ_LIMIT_PER_KEY = 4;
export const GROUP_READ_LIMIT_MIN = 8;
/** DELTA_READS_IN_FLIGHT bounds the single-key reads a second verify has in flight. */
export const DELTA_READS_IN_FLIGHT = 8;
// Bounds the steps a result lists.
const STEPS_KEPT_MAX = 64;
// Bounds the catch-up rounds until the mirror holds etcd's revision (or the reverse copy the new primary's head).
const CATCH_UP_ROUNDS_MAX = 20;
/** PIN_GAP_ENTRIES_MAX: the reverse copy is pinned against once it is at most this many entries behind. */
export const PIN_GAP_ENTRIES_MAX = 2_000;
/** FENCE_GAP_ENTRIES_MAX: `copy reverse` fences once the reverse copy is at most this many entries behind (what is left is copied inside the pause). */
export const FENCE_GAP_ENTRIES_MAX = 100;
/** FENCE_BEHIND_ENTRIES_MAX: `copy reverse` refuses to fence while the reverse copy is still more entries behind than this after its catch-up rounds (a pause of several seconds). */
export const FENCE_BEHIND_ENTRIES_MAX = 2_000;
// Bounds the wait for etcd's history of the keys changed since the first verify.
const DELTA_WAIT_MS = 30_000;
/** HISTORY_WATCHERS_MAX bounds the watchers changedKeys reads one window of etcd's history with. */
export const HISTORY_WATCHERS_MAX = 8;
/** HISTORY_SLICE_REVISIONS_MIN: a window is cut into slices of at least this many revisions (one sync round of etcd's is 1,000). */
export const HISTORY_SLICE_REVISIONS_MIN = 2_000;

/** EtcdSwitchEvent reports the steps of an etcd switch or reverse. */
export type EtcdSwitchEvent =
  | { readonly kind: 'verified'; readonly equal: boolean; readonly keysCompared: number; readonly revision: number; readonly ms: number }
  | { readonly kind: 'confirm-wanted'; readonly endpoints: readonly string[] }
  | { readonly kind: 'confirmed' }
  | { readonly kind: 'quiet'; readonly revision: number; readonly waitedMs: number }
  | { readonly kind: 'taken-over'; readonly switchId: string; readonly resumed: boolean }
  | { readonly kind: 'caught-up'; readonly revision: number }
  | { readonly kind: 'fenced'; readonly atMs: number }
  | ({ readonly kind: 'delta-verified'; readonly equal: boolean } & DeltaPass)
  | { readonly kind: 'state-written'; readonly revision: number }
  | { readonly kind: 'writable'; readonly revision: number; readonly writePauseMs: number }
  | { readonly kind: 'undone'; readonly why: string }
  | { readonly kind: 'copier'; readonly event: CopyEvent }
  | { readonly kind: 'reverse'; readonly event: ReverseEvent };

/**
 * DeltaPass is one verify of the keys etcd changed in (fromRevision, revision], and what it cost:
 * reading etcd's history of the window, then the range reads that compared the keys.
 */
export interface DeltaPass {
  readonly fromRevision: number;
  readonly revision: number;
  /** Keys the history showed changed; -1 when everything was compared (`full`). */
  readonly changedKeys: number;
  readonly keysCompared: number;
  /** Range reads per side (0 for a full compare). */
  readonly reads: number;
  readonly historyMs: number;
  readonly compareMs: number;
  /** Everything compared: the history was compacted, too long, or there was no first verify. */
  readonly full: boolean;
  /** Both clusters stood still at `revision` (the pause); otherwise the copy ran on. */
  readonly still: boolean;
}

/** EtcdSwitchOptions configure switchEtcdCopy. */
export interface EtcdSwitchOptions {
  /** The mirror (made writable), its log (the reverse copy follows it) and endpoints. */
  readonly mirror: CopyTarget;
  readonly mirrorLog: LogCopySource;
  readonly mirrorEndpoints: readonly string[];
  /** etcd: read as the copy's source, written with the reverse copy's state. */
  readonly source: CopySource;
  readonly etcd: EtcdClient;
  readonly sourceEndpoints: readonly string[];
  /**
   * Resolves once the operator says the writers have moved to the mirror's endpoints (they
   * are refused there until the switch ends, and retry). Called after the first verify.
   */
  readonly confirmWritersMoved: () => Promise<void>;
  readonly quietMs?: number;
  readonly quietTimeoutMs?: number;
  readonly signal: AbortSignal;
  readonly now?: () => number;
  readonly onEvent?: (event: EtcdSwitchEvent) => void;
}

/** EtcdSwitchResult is a finished etcd switch or reverse. */
export interface EtcdSwitchResult {
  readonly switchId: string;
  /** The revision both clusters held when the writes moved. */
  readonly revision: number;
  /** From the operator's confirmation (switch) or the fence (reverse) to the other side taking writes; undefined when a re-run finished it. */
  readonly writePauseMs: number | undefined;
  readonly verify: VerifyReport | undefined;
  readonly deltaKeys: number;
  /** The reverse copy's state (switch), or the forward copy's (reverse). */
  readonly state: CopyState;
  /**
   * Keys that carry an etcd lease (from the first verify): etcd deletes them when their lease
   * expires (its keep-alives moved with the writers), a write outside the reverse copy that
   * stops it. Reported so the operator can let such keys go, or revoke their leases first.
   */
  readonly leasedKeys: number;
  /** When each step ended, in ms since the command began (the pause's make-up). */
  readonly steps: readonly { readonly step: EtcdSwitchEvent['kind']; readonly atMs: number }[];
  /** Each verify of the changed keys, in order, and what it cost. */
  readonly passes: readonly DeltaPass[];
}

/** switchEtcdCopy switches the writes of an etcd source to its mirror; see the file comment. */
export async function switchEtcdCopy(given: EtcdSwitchOptions): Promise<EtcdSwitchResult> {
  const { steps, passes, options } = timed(given);
  const { mirror, source, etcd, signal } = options;
  const now = options.now ?? Date.now;
  const view = await mirror.read(signal);
  const reverse = await readReverseState(etcd, signal);
  const mirrorHead = await options.mirrorLog.head(signal);
  if (view.state === undefined) {
    // A switch that ended mirror mode, then died: the reverse copy's state in etcd says so.
    if (reverse !== undefined && reverse.state.phase === 'fenced' && reverse.state.source.clusterId === mirrorHead.clusterId && reverse.state.switchInfo !== undefined) {
      return { switchId: reverse.state.switchInfo.switchId, revision: reverse.state.appliedRevision, writePauseMs: undefined, verify: undefined, deltaKeys: 0, leasedKeys: 0, state: reverse.state, steps, passes };
    }
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the cluster at --to is not a mirror: there is nothing to switch');
  }
  let state = decodeCopyState(view.state);
  let stateBytes = view.state;
  if (state.source.kind !== 'etcd' || (state.direction ?? 'forward') !== 'forward') throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'this mirror does not copy an etcd source');
  const etcdHead = await source.head(signal);
  if (etcdHead.clusterId !== state.source.clusterId) throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the mirror copies etcd cluster ${state.source.clusterId}, but --from answers as cluster ${etcdHead.clusterId}`);
  const range: KeyRange = { key: fromBase64(state.range.key), rangeEnd: fromBase64(state.range.rangeEnd) };

  let switchId: string;
  let resumed = false;
  let verify: VerifyReport | undefined;
  let confirmedAt: number | undefined;
  let verifiedFrom: number;
  if (state.phase === 'switching' && state.switchInfo !== undefined) {
    // A re-run: the operator confirmed before the copy was taken over; compare everything again at the end.
    switchId = state.switchInfo.switchId;
    resumed = true;
    verifiedFrom = 0;
  } else if (state.phase === 'tailing') {
    // ---- refuse unless the reverse copy can start ----
    if (state.prefix !== null) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'only a copy of every key can be switched: the reverse copy keeps both clusters at one revision, which a prefix copy does not');
    if (reverse !== undefined && reverse.state.phase !== 'completed') {
      throw new StrataError(ErrorCode.MIRROR_CONFLICT, `etcd holds a reverse copy in progress (${reverse.state.phase}, of cluster ${reverse.state.source.clusterId}): finish it (\`copy reverse\` or \`copy complete\`) first`);
    }
    await checkLogReadable(options.mirrorLog, signal);
    // ---- 1. verify everything while the writes still go to etcd ----
    const started = performance.now();
    verify = await verifyCopy({ source, target: mirror, signal });
    options.onEvent?.({ kind: 'verified', equal: verify.equal, keysCompared: verify.keysCompared, revision: verify.toRevision, ms: performance.now() - started });
    if (!verify.equal) {
      throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the switch was refused: the mirror differs from etcd (${verify.differencesCount} keys; run \`copy verify\` for the list)`, { details: { differences: verify.differencesCount } });
    }
    if (verify.keysCompared > REPLICA_KEYS_MAX) throw new StrataError(ErrorCode.REQUEST_TOO_LARGE, `the switch was refused: the reverse copy's replica holds at most ${REPLICA_KEYS_MAX} keys, and the copy has ${verify.keysCompared}`);
    verifiedFrom = verify.fromRevision;
    // ---- 1b. verify again what changed meanwhile, until little is left for the pause ----
    let previousKeys = Number.POSITIVE_INFINITY;
    for (let pass = 1; pass <= VERIFY_PASSES_MAX; pass += 1) {
      const passStarted = performance.now();
      const to = (await source.head(signal)).revision;
      const again = await verifyDelta(source, mirror, range, verifiedFrom, to, signal, false);
      options.onEvent?.({ kind: 'delta-verified', equal: again.differences.length === 0, ...again.pass });
      if (again.differences.length > 0) {
        throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the switch was refused: the mirror differs from etcd (${again.differences.length} keys changed after revision ${verifiedFrom}; run \`copy verify\` for the list)`, { details: { differences: again.differences.length } });
      }
      verifiedFrom = again.verifiedThrough;
      // Small enough for the pause, or not shrinking (the writes outpace the passes): ask now.
      if (again.pass.keysCompared <= DELTA_KEYS_SMALL || performance.now() - passStarted < DELTA_PASS_SHORT_MS || again.pass.keysCompared >= previousKeys) break;
      previousKeys = again.pass.keysCompared;
    }
    // ---- 2. the operator moves the writers ----
    options.onEvent?.({ kind: 'confirm-wanted', endpoints: options.mirrorEndpoints });
    await options.confirmWritersMoved();
    confirmedAt = performance.now();
    options.onEvent?.({ kind: 'confirmed' });
    switchId = randomBytes(8).toString('hex');
  } else {
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the copy is ${state.phase}: switch once its scan is done and it follows the source (\`copy status\`)`);
  }

  // ---- 3. a quiet window: nothing writes etcd any more (meanwhile, the last writes are verified) ----
  let quiet: { revision: number; waitedMs: number };
  try {
    const waited = await quietAndVerify(options, range, resumed ? undefined : verifiedFrom);
    quiet = waited.quiet;
    verifiedFrom = waited.verifiedFrom ?? verifiedFrom;
  } catch (error) {
    // A re-run of a switch that took the copy over and died: if etcd is not quiet, its writers
    // are back there; hand the copy back to its copier rather than leave it taken over.
    if (resumed && isStrataError(error, ErrorCode.UNAVAILABLE) && (await readReverseState(etcd, signal))?.state.switchInfo?.switchId !== switchId) {
      const { switchInfo: _switchInfo, ...rest } = state;
      await casState(mirror, stateBytes, encodeCopyState({ ...rest, phase: 'tailing', updatedAtMs: now() }), signal);
      options.onEvent?.({ kind: 'undone', why: 'etcd is not quiet' });
    }
    throw error;
  }
  options.onEvent?.({ kind: 'quiet', revision: quiet.revision, waitedMs: quiet.waitedMs });

  // ---- 4. take the copy over and catch up to etcd's revision ----
  if (!resumed) {
    const taken = await takeOver(mirror, state, stateBytes, switchId, now, signal);
    state = taken.state;
    stateBytes = taken.bytes;
  }
  options.onEvent?.({ kind: 'taken-over', switchId, resumed });
  await catchUpMirror(options, switchId, quiet.revision);
  const caughtView = await mirror.read(signal);
  if (caughtView.state === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the mirror state vanished during the switch (another `copy` command ran?)');
  state = decodeCopyState(caughtView.state);
  stateBytes = caughtView.state;
  const revision = caughtView.revision;
  options.onEvent?.({ kind: 'caught-up', revision });
  const undoSwitch = async (why: string): Promise<never> => {
    const { switchInfo: _switchInfo, ...rest } = state;
    await casState(mirror, stateBytes, encodeCopyState({ ...rest, phase: 'tailing', updatedAtMs: now() }), signal);
    options.onEvent?.({ kind: 'undone', why });
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the switch was undone: ${why}; the copy follows etcd again`);
  };
  if (revision !== quiet.revision && (await readReverseState(etcd, signal))?.state.switchInfo?.switchId !== switchId) await undoSwitch(`etcd was written after the quiet window (its revision moved from ${quiet.revision} to ${revision}): its writers have not all moved`);

  // A re-run that finds this switch's reverse state in etcd: steps 5 and 6 were done.
  const current = await readReverseState(etcd, signal);
  const ours = current !== undefined && current.state.phase === 'fenced' && current.state.switchInfo?.switchId === switchId ? current : undefined;
  if (ours !== undefined) return { ...(await finishSwitch(options, ours, state, undefined)), steps, passes };

  // ---- 5. verify the keys etcd changed since the first verify ----
  const delta = await verifyDelta(source, mirror, range, verifiedFrom, revision, signal, true);
  options.onEvent?.({ kind: 'delta-verified', equal: delta.differences.length === 0, ...delta.pass });
  if (delta.differences.length > 0) await undoSwitch(`the mirror differs from etcd at revision ${revision} (${delta.differences.length} keys, first ${JSON.stringify(Buffer.from(delta.differences[0]?.key ?? new Uint8Array()).toString('utf8'))})`);

  // ---- 6. the reverse copy's state, into etcd at revision + 1 ----
  const mirrorIndexBefore = (await options.mirrorLog.head(signal)).index;
  const nowMs = now();
  const reverseState = fenceState({
    mirrorEndpoints: options.mirrorEndpoints,
    mirrorClusterId: mirrorHead.clusterId,
    direction: 'reverse',
    mirrorIndexBefore,
    appliedRevision: revision + 1,
    switchId,
    startedAtMs: state.switchInfo?.startedAtMs ?? nowMs,
    nowMs,
  });

  const written = await etcd.txn(
    {
      type: 'txn',
      compare: [{ target: 'modRevision', result: 'equal', key: REVERSE_STATE_KEY, number: current?.stateModRevision ?? 0 }],
      success: [{ type: 'put', key: REVERSE_STATE_KEY, value: encodeCopyState(reverseState) }],
      failure: [],
    },
    { signal },
  );
  if (!written.succeeded) await undoSwitch('the reverse copy state in etcd changed under the switch (another `copy` command ran?)');
  const removeState = async (why: string): Promise<never> => {
    await etcd.txn({ type: 'txn', compare: [{ target: 'modRevision', result: 'equal', key: REVERSE_STATE_KEY, number: written.header.revision }], success: [{ type: 'deleteRange', key: REVERSE_STATE_KEY }], failure: [] }, { signal });
    return await undoSwitch(why);
  };
  if (written.header.revision !== revision + 1) await removeState(`etcd was written after the quiet window (the reverse copy's state landed at revision ${written.header.revision}, not ${revision + 1}): its writers have not all moved`);
  options.onEvent?.({ kind: 'state-written', revision: revision + 1 });
  const result = await finishSwitch(options, { state: reverseState, stateModRevision: written.header.revision, etcdRevision: written.header.revision, clusterId: etcdHead.clusterId }, state, confirmedAt, removeState);
  return { ...result, verify, deltaKeys: delta.pass.keysCompared, leasedKeys: verify?.leasedKeys ?? 0, steps, passes };
}

/** finishSwitch: the mirror copies the reverse state's write too (etcd must still be at it), then takes writes. */
async function finishSwitch(
  options: EtcdSwitchOptions,
  written: ReverseHead,
  firstState: CopyState,
  confirmedAt: number | undefined,
  removeState?: (why: string) => Promise<never>,
): Promise<EtcdSwitchResult> {
  const { signal } = options;
  const switchId = firstState.switchInfo?.switchId ?? '';
  const revision = written.stateModRevision;
  // The new primary keeps its log from the switch on, for the reverse copy (which renews this
  // hold once it runs). Asked for now and awaited after the mirror takes writes: it is needed
  // only before the log grows past a snapshot's worth of entries, not inside the pause.
  const holding = options.mirrorLog.hold(logHoldConsumer('reverse-copy', written.state.copyId), (written.state.appliedIndex ?? 0) + 1, LOG_HOLD_TTL_MS, signal).catch((error: unknown) => {
    if (isStrataError(error) && error.code !== ErrorCode.UNIMPLEMENTED) options.onEvent?.({ kind: 'copier', event: { kind: 'retry', what: 'hold the new primary\'s log for the reverse copy', error, attempt: 1 } });
  });
  try {
    return await finishSwitchHeld(options, written, switchId, revision, confirmedAt, removeState);
  } finally {
    await holding;
  }
}

async function finishSwitchHeld(
  options: EtcdSwitchOptions,
  written: ReverseHead,
  switchId: string,
  revision: number,
  confirmedAt: number | undefined,
  removeState: ((why: string) => Promise<never>) | undefined,
): Promise<EtcdSwitchResult> {
  const { mirror, source, signal } = options;
  await copyStateWrite(options, switchId, revision);
  options.onEvent?.({ kind: 'caught-up', revision });
  const last = await mirror.read(signal);
  const etcdNow = await source.head(signal);
  if (last.state === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the mirror state vanished during the switch (another `copy` command ran?)');
  if (last.revision !== revision || etcdNow.revision !== revision) {
    const why = `etcd was written during the switch (etcd at revision ${etcdNow.revision}, the mirror at ${last.revision}, both should be at ${revision}): its writers have not all moved`;
    if (removeState !== undefined) await removeState(why);
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `${why}; stop them, then run \`copy switch\` again`);
  }
  // ---- 8. the mirror takes writes ----
  await endMirror(mirror, last.state, signal);
  const writePauseMs = confirmedAt === undefined ? undefined : performance.now() - confirmedAt;
  options.onEvent?.({ kind: 'writable', revision, writePauseMs: writePauseMs ?? -1 });
  return { switchId, revision, writePauseMs, verify: undefined, deltaKeys: 0, leasedKeys: 0, state: written.state, steps: [], passes: [] };
}

/**
 * copyStateWrite brings the mirror to `revision`, the reverse state's write into etcd: the
 * switch copies that one put itself (one mirrorApply with etcd's counters of the key), since
 * a copier run (a watch opened, a progress round) took 0.5–0.9 s of the pause in the bench.
 * A mirror anywhere else (a re-run), or a state that changed under it, is left to the copier.
 */
async function copyStateWrite(options: EtcdSwitchOptions, switchId: string, revision: number): Promise<void> {
  const { mirror, etcd, signal } = options;
  const view = await mirror.read(signal);
  if (view.revision >= revision) return;
  const kv = view.revision === revision - 1 && view.state !== undefined ? (await etcd.get(REVERSE_STATE_KEY, { revision, signal })).kvs[0] : undefined;
  if (view.state !== undefined && kv !== undefined && kv.modRevision === revision) {
    const state = decodeCopyState(view.state);
    const next: CopyState = { ...state, appliedRevision: revision, sourceRevisionSeen: Math.max(state.sourceRevisionSeen, revision), updatedAtMs: (options.now ?? Date.now)() };
    const put = { key: kv.key, value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version, lease: kv.lease };
    try {
      await mirror.mirror({ type: 'mirrorApply', expectState: view.state, state: encodeCopyState(next), revision, puts: [put], deletes: [] }, signal);
      return;
    } catch (error) {
      if (!isStrataError(error, ErrorCode.MIRROR_CONFLICT) && !isStrataError(error, ErrorCode.UNAVAILABLE) && !isStrataError(error, ErrorCode.TIMEOUT)) throw error;
      // Landed or not, or moved on: the copier finds out from the mirror's state.
    }
  }
  await catchUpMirror(options, switchId, revision);
}

/** catchUpMirror runs the copier (as the switch's own) until the mirror holds `revision`. */
async function catchUpMirror(options: EtcdSwitchOptions, switchId: string, revision: number): Promise<void> {
  const { mirror, source, signal } = options;
  for (let round = 1; round <= CATCH_UP_ROUNDS_MAX; round += 1) {
    const caught = await runCopy({
      source,
      target: mirror,
      sourceKind: 'etcd',
      sourceEndpoints: options.sourceEndpoints,
      signal,
      switchId,
      stopWhenCaughtUp: true,
      onEvent: (event) => options.onEvent?.({ kind: 'copier', event }),
    });
    if (caught.reason !== 'caught-up') throw stoppedEarly(caught.reason);
    if ((await mirror.read(signal)).revision >= revision) return;
  }
  throw new StrataError(ErrorCode.UNAVAILABLE, `the mirror did not reach etcd's revision ${revision} in ${CATCH_UP_ROUNDS_MAX} rounds`);
}

/** EtcdReverseOptions configure reverseEtcdCopy. */
export interface EtcdReverseOptions {
  /** The new primary (fenced, then a forward copy of etcd again): its mirror calls, its log, its endpoints. */
  readonly primary: CopyTarget;
  readonly primaryLog: LogCopySource;
  readonly primaryEndpoints: readonly string[];
  readonly source: CopySource;
  readonly etcd: EtcdClient;
  readonly sourceEndpoints: readonly string[];
  /** How far behind the new primary the reverse copy may still be when the fence is placed (FENCE_BEHIND_ENTRIES_MAX). */
  readonly fenceBehindEntriesMax?: number;
  readonly signal: AbortSignal;
  readonly now?: () => number;
  readonly onEvent?: (event: EtcdSwitchEvent) => void;
}

/** reverseEtcdCopy moves the writes back to etcd after an etcd switch; see the file comment. */
export async function reverseEtcdCopy(given: EtcdReverseOptions): Promise<EtcdSwitchResult> {
  const { steps, passes, options } = timed(given);
  const { primary, primaryLog, source, etcd, signal } = options;
  const now = options.now ?? Date.now;
  const reverseEvents = (event: ReverseEvent): void => options.onEvent?.({ kind: 'reverse', event });
  const head = await readReverseState(etcd, signal);
  const primaryHead = await primaryLog.head(signal);
  const view = await primary.read(signal);
  const primaryState = view.state === undefined ? undefined : decodeCopyState(view.state);
  if (head === undefined || head.state.phase === 'completed') {
    // A reverse that finished everything but the last step (the forward copy's state) is done once that is written.
    if (primaryState?.phase === 'tailing' && primaryState.source.kind === 'etcd') throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the writes are with etcd already: --to is its forward copy (`copy create --from etcd://…` resumes it)');
    if (head === undefined || primaryState?.phase !== 'fenced') throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'etcd holds no reverse copy in progress: nothing to reverse');
  }
  if (head.state.source.clusterId !== primaryHead.clusterId) throw new StrataError(ErrorCode.MIRROR_CONFLICT, `etcd's reverse copy follows cluster ${head.state.source.clusterId}, but --to answers as cluster ${primaryHead.clusterId}`);
  const etcdHead = await source.head(signal);
  let switchId: string;
  let fenceBytes: Uint8Array;
  let fencedAt: number | undefined;
  let verifiedFrom = 0;
  let verifyReport: VerifyReport | undefined;
  // One reverse copy, its replica loaded once, for the verify and for the run up to the fence.
  let reverseCopy: EtcdReverse | undefined;
  const openReverse = async (): Promise<EtcdReverse> => {
    const opened = await EtcdReverse.open({ log: primaryLog, etcd, signal, onEvent: reverseEvents });
    if (!(opened instanceof EtcdReverse)) throw new StrataError(ErrorCode.MIRROR_CONFLICT, `etcd's reverse copy is ${opened.reason}: nothing to reverse`);
    reverseCopy = opened;
    return opened;
  };
  try {
    if (primaryState !== undefined) {
      if (primaryState.phase !== 'fenced' || primaryState.source.kind !== 'etcd' || primaryState.switchInfo === undefined) {
        throw new StrataError(ErrorCode.MIRROR_CONFLICT, `--to is a mirror (${primaryState.phase}) already: it does not take the writes`);
      }
      // A re-run after the fence: compare everything again at the end.
      switchId = primaryState.switchInfo.switchId;
      fenceBytes = view.state as Uint8Array;
    } else {
      if (head.state.phase !== 'tailing' && head.state.phase !== 'fenced') throw new StrataError(ErrorCode.MIRROR_CONFLICT, `etcd's reverse copy is ${head.state.phase}`);
      checkExact(head);
      // ---- 1. bring etcd up to the new primary, and compare the two at one revision ----
      const started = performance.now();
      const reverse = await openReverse();
      const pinned = await verifyPinned(options, reverse);
      verifiedFrom = pinned.revision;
      options.onEvent?.({ kind: 'verified', equal: pinned.differences.length === 0, keysCompared: pinned.keysCompared, revision: pinned.revision, ms: performance.now() - started });
      const refuse = (report: { readonly revision: number; readonly differences: readonly CopyDifference[] }): never => {
        throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the reverse was refused: etcd differs from the new primary at revision ${report.revision} (${report.differences.length} keys, first ${JSON.stringify(Buffer.from(report.differences[0]?.key ?? new Uint8Array()).toString('utf8'))})`);
      };
      if (pinned.differences.length > 0) refuse(pinned);
      // ---- 1b. again for what changed meanwhile, until little is left for the pause ----
      let previousKeys = Number.POSITIVE_INFINITY;
      for (let pass = 1; pass <= VERIFY_PASSES_MAX; pass += 1) {
        const passStarted = performance.now();
        const again = await verifyPinnedChanges(options, reverse, verifiedFrom);
        options.onEvent?.({ kind: 'delta-verified', equal: again.differences.length === 0, ...again.pass });
        if (again.differences.length > 0) refuse({ revision: again.pass.revision, differences: again.differences });
        verifiedFrom = again.pass.revision;
        if (again.pass.keysCompared <= DELTA_KEYS_SMALL || performance.now() - passStarted < DELTA_PASS_SHORT_MS || again.pass.keysCompared >= previousKeys) break;
        previousKeys = again.pass.keysCompared;
      }
      // The run to the fence is inside the pause: bring etcd close to the new primary's head first,
      // and do not fence while it is far behind (the writes outpace the reverse copy).
      const { behindEntries } = await catchUpReverse(primaryLog, reverse, signal, FENCE_GAP_ENTRIES_MAX);
      const behindMax = options.fenceBehindEntriesMax ?? FENCE_BEHIND_ENTRIES_MAX;
      if (behindEntries > behindMax) {
        throw new StrataError(
          ErrorCode.UNAVAILABLE,
          `the reverse was refused before the fence: the reverse copy is still ${behindEntries} entries behind the new primary after ${CATCH_UP_ROUNDS_MAX} rounds (it writes each command as one etcd Txn, a few hundred a second), and fencing now would pause the writes until it caught up; lower the write rate on the new primary, then run \`copy reverse\` again`,
          { details: { behindEntries, behindMax } },
        );
      }
      // ---- 2. fence the new primary ----
      switchId = randomBytes(8).toString('hex');
      const nowMs = now();
      const fence = fenceState({ mirrorEndpoints: options.sourceEndpoints, mirrorClusterId: etcdHead.clusterId, sourceKind: 'etcd', direction: 'forward', switchId, startedAtMs: nowMs, nowMs });

      fenceBytes = encodeCopyState(fence);
      await beginFence(primary, fenceBytes, signal);
      fencedAt = performance.now();
      options.onEvent?.({ kind: 'fenced', atMs: now() });
    }
    const fence = decodeCopyState(fenceBytes);
    const undoFence = async (why: string): Promise<never> => {
      await endMirror(primary, fenceBytes, signal);
      options.onEvent?.({ kind: 'undone', why });
      throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the reverse was undone: ${why}; --to takes writes again`);
    };

    // ---- 3. the reverse copy up to the fence ----
    let revision: number;
    if (head.state.phase !== 'completed') {
      const reversed = await (reverseCopy ?? (await openReverse())).run({});
      if (reversed.reason !== 'source-fenced') throw stoppedEarly(reversed.reason);
      const after = await readReverseState(etcd, signal);
      const fencedView = await primary.read(signal);
      if (after === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the reverse copy state vanished from etcd during the reverse');
      revision = fencedView.revision;
      if (after.etcdRevision !== revision) await undoFence(`etcd is at revision ${after.etcdRevision} and the new primary at ${revision} after the reverse copy reached the fence: etcd was written outside the reverse copy`);
      options.onEvent?.({ kind: 'caught-up', revision });
      // ---- 4. verify the keys changed since the first verify ----
      const delta = await verifyDelta(source, primary, rangeOf(undefined), verifiedFrom, revision, signal, true);
      options.onEvent?.({ kind: 'delta-verified', equal: delta.differences.length === 0, ...delta.pass });
      if (delta.pass.full) verifyReport = delta.report;
      if (delta.differences.length > 0) await undoFence(`etcd differs from the new primary at revision ${revision} (${delta.differences.length} keys)`);
      // ---- 5. the reverse copy is done: etcd takes the writes (revision + 1 is this write) ----
      const done: CopyState = { ...after.state, phase: 'completed', updatedAtMs: now() };
      const written = await etcd.txn(
        { type: 'txn', compare: [{ target: 'modRevision', result: 'equal', key: REVERSE_STATE_KEY, number: after.stateModRevision }], success: [{ type: 'put', key: REVERSE_STATE_KEY, value: encodeCopyState(done) }], failure: [] },
        { signal },
      );
      if (!written.succeeded) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the reverse copy state in etcd changed under the reverse (another `copy` command ran?)');
      await releaseLogHold(primaryLog, logHoldConsumer('reverse-copy', after.state.copyId));
      options.onEvent?.({ kind: 'state-written', revision: written.header.revision });
    } else {
      revision = (await primary.read(signal)).revision;
    }
    const writePauseMs = fencedAt === undefined ? undefined : performance.now() - fencedAt;
    options.onEvent?.({ kind: 'writable', revision, writePauseMs: writePauseMs ?? -1 });

    // ---- 6. the new primary becomes etcd's forward copy again, tailing from the revision both hold ----
    const nowMs = now();
    const forward: CopyState = { ...fence, phase: 'tailing', appliedRevision: revision, sourceRevisionSeen: revision, caughtUpAtMs: nowMs, updatedAtMs: nowMs, switchInfo: { switchId, startedAtMs: fence.switchInfo?.startedAtMs ?? nowMs, revision, switchedAtMs: nowMs } };
    await casState(primary, fenceBytes, encodeCopyState(forward), signal);
    return { switchId, revision, writePauseMs, verify: verifyReport, deltaKeys: 0, leasedKeys: 0, state: forward, steps, passes };
  } finally {
    await (reverseCopy as EtcdReverse | undefined)?.close();
  }
}

/** timed wraps the options' onEvent so that every step's time is kept for the result. */
function timed<T extends { readonly onEvent?: (event: EtcdSwitchEvent) => void }>(given: T): { steps: { step: EtcdSwitchEvent['kind']; atMs: number }[]; passes: DeltaPass[]; options: T } {
  const startedAt = performance.now();
  const steps: { step: EtcdSwitchEvent['kind']; atMs: number }[] = [];
  const passes: DeltaPass[] = [];
  const onEvent = (event: EtcdSwitchEvent): void => {
    if (event.kind === 'delta-verified' && passes.length < STEPS_KEPT_MAX) {
      const { kind: _kind, equal: _equal, ...pass } = event;
      passes.push({ ...pass, historyMs: Math.round(pass.historyMs), compareMs: Math.round(pass.compareMs) });
    }
    if (event.kind !== 'copier' && event.kind !== 'reverse' && steps.length < STEPS_KEPT_MAX) steps.push({ step: event.kind, atMs: Math.round(performance.now() - startedAt) });
    given.onEvent?.(event);
  };
  return { steps, passes, options: { ...given, onEvent } };
}

function checkExact(head: ReverseHead): void {
  if (head.etcdRevision !== head.stateModRevision || head.state.appliedRevision !== head.stateModRevision) {
    throw new StrataError(
      ErrorCode.MIRROR_CONFLICT,
      `etcd was written outside the reverse copy (etcd at revision ${head.etcdRevision}, the reverse copy's last write at ${head.stateModRevision}): moving the writes back would lose those writes' order; end the copy (\`copy complete\`) instead`,
    );
  }
}

/** EtcdReverseVerify is `copy verify` of a reverse copy into etcd. */
export interface EtcdReverseVerify {
  readonly equal: boolean;
  readonly revision: number;
  readonly keysCompared: number;
  readonly differences: readonly CopyDifference[];
}

/**
 * verifyEtcdReverse compares a pinned view of the new primary with etcd at the view's revision,
 * key by key (values and every counter), after bringing etcd up to the view with the reverse
 * copy's own Txns (a running reverse copier writes the same ones: the compare-and-set lets one
 * of each land).
 */
export async function verifyEtcdReverse(options: { readonly primaryLog: LogCopySource; readonly etcd: EtcdClient; readonly signal: AbortSignal; readonly onEvent?: (event: ReverseEvent) => void }): Promise<EtcdReverseVerify> {
  const opened = await EtcdReverse.open({ log: options.primaryLog, etcd: options.etcd, signal: options.signal, ...(options.onEvent === undefined ? {} : { onEvent: options.onEvent }) });
  if (!(opened instanceof EtcdReverse)) throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the reverse copy is ${opened.reason}: there is nothing to verify`);
  try {
    const pinned = await verifyPinned(options, opened);
    return { equal: pinned.differences.length === 0, ...pinned };
  } finally {
    await opened.close();
  }
}

/**
 * catchUpReverse runs the reverse copy up to the new primary's head, again while that leaves
 * over `gapEntriesMax` behind (at most CATCH_UP_ROUNDS_MAX rounds; a copy slower than the writes
 * goes on as it is), so that the run up to a view pinned next is short (a pinned view expires: a
 * bench's `copy reverse` lost its pin while the reverse copy worked off a backlog of ~11k
 * commands), and so is the run up to the fence, inside the pause (6.2 s of an 8 s pause in a
 * bench before).
 */
async function catchUpReverse(primaryLog: LogCopySource, reverse: EtcdReverse, signal: AbortSignal, gapEntriesMax = PIN_GAP_ENTRIES_MAX): Promise<{ behindEntries: number }> {
  let behindEntries = Number.POSITIVE_INFINITY;
  for (let round = 1; round <= CATCH_UP_ROUNDS_MAX; round += 1) {
    const head = await primaryLog.head(signal);
    await waitForOtherReverseCopier(reverse, head.index, signal);
    const reached = await reverse.run({ stopAtIndex: head.index });
    if (reached.reason !== 'at-index') throw stoppedEarly(reached.reason);
    const after = await primaryLog.head(signal);
    behindEntries = after.index - (reached.state.appliedIndex ?? 0);
    if (behindEntries <= gapEntriesMax) break;
  }
  return { behindEntries };
}

/** OTHER_COPIER_POLL_MS is how often `copy reverse` reads how far a reverse copier running elsewhere got. */
export const OTHER_COPIER_POLL_MS = 250;
/** OTHER_COPIER_IDLE_MS: a reverse copier elsewhere that wrote nothing for this long is not waited for. */
export const OTHER_COPIER_IDLE_MS = 1_000;
// Bounds the wait for a reverse copier elsewhere within one catch-up round.
const OTHER_COPIER_WAIT_MS = 120_000;

/**
 * waitForOtherReverseCopier: while a reverse copier running elsewhere (the operator's `copy
 * create --from stratakv://…`) moves etcd's state towards `index`, `copy reverse` lets it, and
 * then skips through what it wrote (EtcdReverse.run applies those commands to its replica
 * only). Two copiers sending the same compare-and-set chain refuse each other's Txns, and each
 * refusal costs etcd a Raft round: in a bench, `copy reverse` took 350 s to catch a 2,600-
 * command backlog up that way. Returns at once when nothing else writes the state.
 */
async function waitForOtherReverseCopier(reverse: EtcdReverse, index: number, signal: AbortSignal): Promise<void> {
  const started = performance.now();
  let last = await reverse.writtenIndex(signal);
  let movedAt = performance.now();
  let moved = false;
  while (last < index && performance.now() - started < OTHER_COPIER_WAIT_MS) {
    await pauseOrAbort(OTHER_COPIER_POLL_MS, signal);
    const now = await reverse.writtenIndex(signal);
    if (now > last) {
      last = now;
      movedAt = performance.now();
      moved = true;
    } else if (!moved || performance.now() - movedAt >= OTHER_COPIER_IDLE_MS) {
      return;
    }
  }
}

/**
 * verifyPinned pins the new primary's view, has the reverse copy bring etcd up to it, and
 * compares the whole view with etcd at the view's revision.
 */
async function verifyPinned(options: { readonly primaryLog: LogCopySource; readonly etcd: EtcdClient; readonly signal: AbortSignal }, reverse: EtcdReverse): Promise<{ revision: number; keysCompared: number; differences: CopyDifference[] }> {
  const { primaryLog, etcd, signal } = options;
  await catchUpReverse(primaryLog, reverse, signal);
  const pin = await primaryLog.pin(signal);
  try {
    const reached = await reverse.run({ stopAtIndex: pin.index });
    if (reached.reason !== 'at-index') throw stoppedEarly(reached.reason);
    const range = rangeOf(undefined);
    const differences: CopyDifference[] = [];
    let keysCompared = 0;
    let from = range.key;
    for (let pages = 0; ; pages += 1) {
      if (pages > REPLICA_KEYS_MAX) throw new StrataError(ErrorCode.UNAVAILABLE, 'the pinned view did not end');
      const page = await primaryLog.scan(pin, { key: from, rangeEnd: range.rangeEnd }, 1_000, signal);
      const last = page.kvs.at(-1);
      const end = page.more && last !== undefined ? keyAfter(last.key) : range.rangeEnd;
      const theirs: SourceKv[] = [];
      let at = from;
      for (let etcdPages = 0; ; etcdPages += 1) {
        if (etcdPages > REPLICA_KEYS_MAX) throw new StrataError(ErrorCode.UNAVAILABLE, 'etcd\'s pages did not end');
        const answer = await etcd.get(at, { rangeEnd: end, revision: pin.revision, limit: 1_000, signal });
        theirs.push(...answer.kvs);
        const lastTheirs = answer.kvs.at(-1);
        if (!answer.more || lastTheirs === undefined) break;
        at = keyAfter(lastTheirs.key);
      }
      keysCompared += compareSorted(page.kvs, theirs, pin.revision, differences);
      if (!page.more) break;
      from = end;
    }
    return { revision: pin.revision, keysCompared, differences };
  } finally {
    await primaryLog.release(pin);
  }
}

/**
 * verifyPinnedChanges pins the new primary's view again, has the reverse copy bring etcd up to
 * it, and compares the keys etcd changed after `fromRevision` (from its watch history) in the
 * view and in etcd at the view's revision. A history it cannot read compares everything.
 */
async function verifyPinnedChanges(options: EtcdReverseOptions, reverse: EtcdReverse, fromRevision: number): Promise<{ pass: DeltaPass; differences: CopyDifference[] }> {
  const { primaryLog, source, signal } = options;
  await catchUpReverse(primaryLog, reverse, signal);
  const pin = await primaryLog.pin(signal);
  try {
    const reached = await reverse.run({ stopAtIndex: pin.index });
    if (reached.reason !== 'at-index') throw stoppedEarly(reached.reason);
    const started = performance.now();
    const keys = fromRevision <= pin.revision ? await changedKeys(source, rangeOf(undefined), fromRevision, pin.revision, false, signal) : undefined;
    const historyMs = performance.now() - started;
    if (keys === undefined) {
      const all = await verifyPinned(options, reverse);
      return { pass: { fromRevision, revision: all.revision, changedKeys: -1, keysCompared: all.keysCompared, reads: 0, historyMs, compareMs: performance.now() - started - historyMs, full: true, still: false }, differences: all.differences };
    }
    const differences: CopyDifference[] = [];
    const compared = await compareKeyGroups(
      [...keys.values()],
      async (range, limit) => ({ ...(await primaryLog.scan(pin, range, limit, signal)), revision: pin.revision }),
      async (range, _at, limit) => await source.page(range, pin.revision, limit, signal),
      differences,
    );
    const pass: DeltaPass = { fromRevision, revision: pin.revision, changedKeys: keys.size, keysCompared: compared.keysCompared, reads: compared.reads, historyMs, compareMs: performance.now() - started - historyMs, full: false, still: false };
    return { pass, differences };
  } finally {
    await primaryLog.release(pin);
  }
}

/** compareSorted merges two key-ordered lists (stratakv's, etcd's), noting each difference; answers the keys on both. */
function compareSorted(ours: readonly SourceKv[], theirs: readonly SourceKv[], revision: number, differences: CopyDifference[]): number {
  let compared = 0;
  let a = 0;
  let b = 0;
  while (a < theirs.length || b < ours.length) {
    const source = theirs[a];
    const target = ours[b];
    if (source !== undefined && isStateKey(source.key)) {
      a += 1;
      continue;
    }
    if (target !== undefined && isStateKey(target.key)) {
      b += 1;
      continue;
    }
    const order = source === undefined ? 1 : target === undefined ? -1 : Buffer.compare(source.key, target.key);
    if (order < 0 && source !== undefined) {
      note(differences, { key: source.key, kind: 'missing', fields: [], source, target: undefined, revision });
      a += 1;
    } else if (order > 0 && target !== undefined) {
      note(differences, { key: target.key, kind: 'extra', fields: [], source: undefined, target, revision });
      b += 1;
    } else if (source !== undefined && target !== undefined) {
      const fields = differingFields(source, target);
      if (fields.length > 0) note(differences, { key: source.key, kind: 'different', fields, source, target, revision });
      compared += 1;
      a += 1;
      b += 1;
    }
  }
  return compared;
}

function note(differences: CopyDifference[], difference: CopyDifference): void {
  if (differences.length < DIFFERENCES_LISTED_MAX) differences.push(difference);
}

/**
 * quietAndVerify waits for etcd's quiet window and, from `verifiedFrom` on (undefined: no
 * passes, a re-run compares everything later), verifies the keys changed before the writers
 * moved while it waits, with the copy still running: the pass that verified the writes made
 * during the last pass before the question took 0.7 s of a 1.2 s pause in the bench when it ran
 * after the window. The verify in the pause then covers only what the copy had not applied yet
 * when a pass read the mirror. A pass under way when the window ends is finished (what it read
 * is kept). Answers the window and where the next verify starts.
 */
async function quietAndVerify(options: EtcdSwitchOptions, range: KeyRange, verifiedFrom: number | undefined): Promise<{ quiet: { revision: number; waitedMs: number }; verifiedFrom: number | undefined }> {
  const { source, mirror, signal } = options;
  const waiting = new AbortController();
  const onAbort = (): void => waiting.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  let quietSettled = false;
  const quieting = waitQuiet(source, options.quietMs ?? QUIET_MS_DEFAULT, options.quietTimeoutMs ?? QUIET_TIMEOUT_MS_DEFAULT, waiting.signal).finally(() => {
    quietSettled = true;
  });
  // Awaited below, or abandoned on a refusal: a rejection meanwhile must not go unhandled.
  quieting.catch(() => undefined);
  let from = verifiedFrom;
  try {
    for (let pass = 1; from !== undefined && pass <= VERIFY_PASSES_MAX && !quietSettled; pass += 1) {
      const to = (await source.head(signal)).revision;
      if (to <= from) break;
      const again = await verifyDelta(source, mirror, range, from, to, signal, false);
      options.onEvent?.({ kind: 'delta-verified', equal: again.differences.length === 0, ...again.pass });
      if (again.differences.length > 0) {
        throw new StrataError(
          ErrorCode.MIRROR_CONFLICT,
          `the switch was refused: the mirror differs from etcd (${again.differences.length} keys changed after revision ${from}; run \`copy verify\` for the list); the mirror still refuses writes: move the writers back to etcd`,
          { details: { differences: again.differences.length } },
        );
      }
      from = again.verifiedThrough;
    }
    return { quiet: await quieting, verifiedFrom: from };
  } catch (error) {
    waiting.abort();
    await quieting.catch(() => undefined);
    throw error;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * waitQuiet waits until etcd's revision has not moved for `quietMs`; UNAVAILABLE after
 * `timeoutMs` (its writers still write).
 */
async function waitQuiet(source: CopySource, quietMs: number, timeoutMs: number, signal: AbortSignal): Promise<{ revision: number; waitedMs: number }> {
  const started = performance.now();
  let revision = (await source.head(signal)).revision;
  let since = performance.now();
  let moves = 0;
  while (performance.now() - since < quietMs) {
    if (performance.now() - started > timeoutMs) {
      throw new StrataError(ErrorCode.UNAVAILABLE, `etcd's revision moved ${moves} times in ${(timeoutMs / 1000).toFixed(0)} s (now ${revision}): its writers still write; move them, then run \`copy switch\` again`, { details: { moves, revision } });
    }
    await pauseOrAbort(QUIET_POLL_MS, signal);
    const now = (await source.head(signal)).revision;
    if (now !== revision) {
      revision = now;
      since = performance.now();
      moves += 1;
    }
  }
  return { revision, waitedMs: performance.now() - started };
}

/**
 * verifyDelta compares the keys etcd changed after `fromRevision` up to `revision` (from its
 * watch history: puts and deletes) on both sides, one by one. `still`: both clusters stand at
 * `revision` (the pause), and each key is compared there. Otherwise the copy runs on: each key
 * is read from the target first, whose answer gives the target's revision T (a source revision
 * by construction), then from etcd at T; a change after T is left to the next pass, which
 * starts at `verifiedThrough`. A history compacted past `fromRevision`, too many keys, or no
 * first verify (`fromRevision` 0) compare everything instead (verifyCopy; the target must be a
 * mirror).
 */
async function verifyDelta(
  source: CopySource,
  target: CopyTarget,
  range: KeyRange,
  fromRevision: number,
  revision: number,
  signal: AbortSignal,
  still: boolean,
): Promise<{ pass: DeltaPass; differences: readonly CopyDifference[]; verifiedThrough: number; report?: VerifyReport }> {
  const started = performance.now();
  const keys = fromRevision > 0 && fromRevision <= revision ? await changedKeys(source, range, fromRevision, revision, still, signal) : undefined;
  const historyMs = performance.now() - started;
  if (keys === undefined) {
    const report = await verifyCopy({ source, target, signal });
    if (still && (report.toRevision !== revision || report.fromRevision !== revision)) {
      throw new StrataError(ErrorCode.MIRROR_CONFLICT, `a cluster moved during the verify at revision ${revision} (pages were read at ${report.fromRevision}..${report.toRevision})`);
    }
    const pass: DeltaPass = { fromRevision, revision, changedKeys: -1, keysCompared: report.keysCompared, reads: 0, historyMs, compareMs: performance.now() - started - historyMs, full: true, still };
    return { pass, differences: report.differences, verifiedThrough: report.fromRevision, report };
  }
  const differences: CopyDifference[] = [];
  const compared = await compareKeyGroups(
    [...keys.values()],
    async (group, limit) => {
      // Before the pause a member's own view will do (no leader round per read; a lagging one
      // answers an older revision, and the next pass starts there). Still: the leader's, at R.
      const ours = await target.page(group, limit, { keysOnly: false, serializable: !still, signal });
      if (still && ours.revision !== revision) throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the other cluster moved to revision ${ours.revision} during the verify (at ${revision})`);
      return ours;
    },
    async (group, at, limit) => await source.page(group, still ? revision : at, limit, signal),
    differences,
  );
  const pass: DeltaPass = { fromRevision, revision, changedKeys: keys.size, keysCompared: compared.keysCompared, reads: compared.reads, historyMs, compareMs: performance.now() - started - historyMs, full: false, still };
  return { pass, differences, verifiedThrough: Math.min(revision, compared.lowestRevision) };
}

/**
 * compareKeyGroups compares the given keys (changed ones) on both sides, a group of sorted keys
 * at a time: one range read per side covers the group (the keys between them are compared too,
 * which costs little when changes cluster, as fresh keys written one after another do), ours
 * first — its answer's revision is the one theirs is read at. Answers the keys compared and the
 * lowest revision a group was compared at.
 *
 * A read is limited to GROUP_READ_LIMIT_PER_KEY keys per changed key of its group (at most
 * GROUP_READ_KEYS_MAX). When a read fills its limit, what it covered (up to its last key) is
 * compared and the rest of the group goes on from the next changed key: a group that spans a
 * gap of unchanged keys (the end of one writer's keys and the start of the next one's) costs
 * one read more, not a cascade of halvings (measured: 40k changed keys among 200k, 315 reads
 * of 206k keys, 6.6 s, before). When a read covered under an eighth of its group, the rest is
 * halved, so that sparse changes come down to small reads.
 */
export async function compareKeyGroups(
  keys: readonly Uint8Array[],
  readOurs: (range: KeyRange, limit: number) => Promise<{ readonly kvs: readonly SourceKv[]; readonly more: boolean; readonly revision: number }>,
  readTheirs: (range: KeyRange, at: number, limit: number) => Promise<{ readonly kvs: readonly SourceKv[]; readonly more: boolean }>,
  differences: CopyDifference[],
): Promise<{ keysCompared: number; lowestRevision: number; reads: number }> {
  const sorted = keys.filter((key) => !isStateKey(key)).sort((a, b) => Buffer.compare(a, b));
  const pending: (readonly Uint8Array[])[] = [];
  for (const run of prefixRuns(sorted)) {
    for (let at = 0; at < run.length; at += GROUP_KEYS) pending.push(run.slice(at, at + GROUP_KEYS));
  }
  let keysCompared = 0;
  let reads = 0;
  let lowestRevision = Number.POSITIVE_INFINITY;
  // Groups come back (the rest of a group a read did not cover): a worker without one waits
  // while another still reads, so that all DELTA_READS_IN_FLIGHT read from the start even when
  // the keys begin as one group (a small window: a bench's 113 changed keys read one after
  // another took 1.6 s).
  let reading = 0;
  let failed = false;
  const waiting: (() => void)[] = [];
  const wakeAll = (): void => {
    for (const wake of waiting.splice(0)) wake();
  };
  const compareGroup = async (group: readonly Uint8Array[]): Promise<void> => {
    const first = group[0] as Uint8Array;
    const limit = Math.min(GROUP_READ_KEYS_MAX, Math.max(GROUP_READ_LIMIT_MIN, group.length * GROUP_READ_LIMIT_PER_KEY));
    const ours = await readOurs({ key: first, rangeEnd: keyAfter(group[group.length - 1] as Uint8Array) }, limit);
    reads += 1;
    // A full answer covers the keys up to its last one; the rest of the range is read again.
    let coveredEnd = ours.more ? keyAfter(lastKey(ours.kvs)) : keyAfter(group[group.length - 1] as Uint8Array);
    const theirs = await readTheirs({ key: first, rangeEnd: coveredEnd }, ours.revision, limit);
    let ourKvs = ours.kvs;
    if (theirs.more) {
      coveredEnd = keyAfter(lastKey(theirs.kvs));
      ourKvs = ourKvs.filter((kv) => Buffer.compare(kv.key, coveredEnd) < 0);
    }
    lowestRevision = Math.min(lowestRevision, ours.revision);
    keysCompared += compareSorted(ourKvs, theirs.kvs, ours.revision, differences);
    let covered = 0;
    while (covered < group.length && Buffer.compare(group[covered] as Uint8Array, coveredEnd) < 0) covered += 1;
    assert(covered > 0, 'a read covers at least the first key of its group');
    const rest = group.slice(covered);
    if (rest.length === 0) return;
    if (covered * 8 < group.length && rest.length > 1) {
      const half = Math.ceil(rest.length / 2);
      pending.push(rest.slice(0, half), rest.slice(half));
    } else {
      pending.push(rest);
    }
  };
  const worker = async (): Promise<void> => {
    // Each turn takes a group (every read covers at least one key: at most keys.length turns
    // read) or waits for one a reading worker puts back or for the end.
    while (!failed) {
      const group = pending.pop();
      if (group === undefined) {
        if (reading === 0) return;
        await new Promise<void>((resolve) => waiting.push(resolve));
        continue;
      }
      reading += 1;
      try {
        await compareGroup(group);
      } catch (error) {
        failed = true;
        throw error;
      } finally {
        reading -= 1;
        wakeAll();
      }
    }
  };
  await Promise.all(Array.from({ length: DELTA_READS_IN_FLIGHT }, worker));
  return { keysCompared, lowestRevision, reads };
}

/** PREFIX_DROP_BYTES: keys are cut into runs where the common prefix of two neighbours is this much shorter than on either side. */
export const PREFIX_DROP_BYTES = 3;
/** PREFIX_RUN_KEYS_MIN: runs averaging fewer keys than this are not worth a read each; the keys stay in plain groups. */
export const PREFIX_RUN_KEYS_MIN = 4;

/**
 * prefixRuns cuts sorted changed keys into runs at the places where the key space likely has
 * many unchanged keys between two changed ones: where two neighbours share a prefix at least
 * PREFIX_DROP_BYTES shorter than each shares with its other neighbour (one writer's keys end,
 * "load/c3/5999", and the next one's begin, "load/c4/5800"; or a counter's keys wrap past a
 * digit, "…/10100" to "…/9900"). A group reads what lies between its first and last key, so a
 * group across such a place read thousands of keys nobody changed: in the bench, 16 writers'
 * 3,000 fresh keys cost 15,000 keys read a side. Only a cost decision: every changed key is
 * compared whatever the runs. Too many runs (keys without such structure) keep one run.
 */
export function prefixRuns(sorted: readonly Uint8Array[]): (readonly Uint8Array[])[] {
  if (sorted.length < 3) return [sorted];
  const common = new Array<number>(sorted.length).fill(0);
  for (let at = 1; at < sorted.length; at += 1) common[at] = commonPrefixBytes(sorted[at - 1] as Uint8Array, sorted[at] as Uint8Array);
  const runs: (readonly Uint8Array[])[] = [];
  let start = 0;
  for (let at = 1; at < sorted.length; at += 1) {
    const here = common[at] as number;
    const before = at > 1 ? (common[at - 1] as number) : Number.POSITIVE_INFINITY;
    const after = at + 1 < sorted.length ? (common[at + 1] as number) : Number.POSITIVE_INFINITY;
    if (here + PREFIX_DROP_BYTES <= Math.min(before, after)) {
      runs.push(sorted.slice(start, at));
      start = at;
    }
  }
  runs.push(sorted.slice(start));
  return runs.length * PREFIX_RUN_KEYS_MIN > sorted.length ? [sorted] : runs;
}

function commonPrefixBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.byteLength, b.byteLength);
  let at = 0;
  while (at < length && a[at] === b[at]) at += 1;
  return at;
}

function lastKey(kvs: readonly SourceKv[]): Uint8Array {
  const last = kvs[kvs.length - 1];
  assert(last !== undefined, 'a full page holds keys');
  return last.key;
}

/**
 * changedKeys lists the keys etcd's history shows changed in (fromRevision, revision]; undefined
 * when it cannot (compacted, too many).
 *
 * etcd replays history to a watcher that starts in the past at most 1,000 revisions per sync
 * round (watchBatchMaxRevs), and waits 100 ms between rounds while it makes no headway: one
 * watcher reads ~8k revisions/s here (40k revisions in 5.2 s), slower than 16 writers add them,
 * so the passes before the prompt never shrank. Over the whole keyspace every revision has at
 * least one event, so the window is cut into slices of at least HISTORY_SLICE_REVISIONS_MIN,
 * each read by its own watcher (etcd serves all of them in each round), up to
 * HISTORY_WATCHERS_MAX at once. A prefix range has revisions without events in it: one watcher
 * reads it to `revision`'s events, as before.
 */
export async function changedKeys(source: CopySource, range: KeyRange, fromRevision: number, revision: number, still: boolean, signal: AbortSignal): Promise<Map<string, Uint8Array> | undefined> {
  const keys = new Map<string, Uint8Array>();
  if (fromRevision === revision) return keys;
  const whole = isWholeKeyspace(range);
  const span = revision - fromRevision;
  const sliceCount = whole ? Math.max(1, Math.min(HISTORY_WATCHERS_MAX, Math.floor(span / HISTORY_SLICE_REVISIONS_MIN))) : 1;
  const slices = Array.from({ length: sliceCount }, (_, index) => ({
    first: fromRevision + 1 + Math.floor((span * index) / sliceCount),
    last: fromRevision + Math.floor((span * (index + 1)) / sliceCount),
  }));
  const stream = new AbortController();
  const onAbort = (): void => stream.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  const deadline = setTimeout(() => stream.abort(), DELTA_WAIT_MS);
  let tooMany = false;
  const readSlice = async (slice: { readonly first: number; readonly last: number }): Promise<void> => {
    const tail = source.tail(range, slice.first, stream.signal);
    try {
      for await (const batch of tail) {
        if (tooMany) return;
        // Progress marks prove nothing here: etcd 3.4 answers one with its current revision while
        // events before it may still be on their way (etcd#15220). Every revision is a write, so
        // its events are the proof that the history up to it was read.
        if (batch.kind === 'progress') continue;
        for (const event of batch.events) {
          const at = event.kv.modRevision;
          // Still: nothing may write etcd after the quiet window. Otherwise: the next pass's.
          if (at > revision && still) throw new StrataError(ErrorCode.MIRROR_CONFLICT, `etcd was written at revision ${at}, after the quiet window at ${revision}`);
          if (at < slice.first || at > slice.last) continue;
          keys.set(Buffer.from(event.kv.key).toString('latin1'), event.kv.key);
          if (keys.size > DELTA_KEYS_MAX) {
            tooMany = true;
            return;
          }
        }
        // A revision's events come whole in one batch: once the slice's last one came, it is read.
        if (batch.events.some((event) => event.kv.modRevision >= slice.last)) return;
      }
      throw new StrataError(ErrorCode.UNAVAILABLE, 'etcd\'s watch ended before it reached the switch\'s revision');
    } finally {
      tail.close();
    }
  };
  try {
    const settled = await Promise.allSettled(slices.map(readSlice));
    const failed = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    return tooMany ? undefined : keys;
  } catch (error) {
    if (isStrataError(error, ErrorCode.COMPACTED)) return undefined;
    if (stream.signal.aborted && !signal.aborted) throw new StrataError(ErrorCode.TIMEOUT, `etcd's history from revision ${fromRevision + 1} to ${revision} was not read in ${DELTA_WAIT_MS / 1000} s`);
    throw error;
  } finally {
    clearTimeout(deadline);
    stream.abort();
    signal.removeEventListener('abort', onAbort);
  }
}

// isWholeKeyspace: the range of rangeOf(undefined), from the first key to the end.
function isWholeKeyspace(range: KeyRange): boolean {
  return range.key.byteLength === 1 && range.key[0] === 0 && range.rangeEnd.byteLength === 1 && range.rangeEnd[0] === 0;
}

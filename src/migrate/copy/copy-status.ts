// copyStatus answers where a copy stands, from the target's mirror state (written with every
// batch) and the source's current revision: the phase, the lag in revisions and in seconds,
// and while scanning the keys copied of the total, the rate and an ETA.

import { ErrorCode, StrataError } from '../../util/errors.ts';
import type { CopyTarget } from './copy-ends.ts';

/** StatusSource is what status asks of the source: where it stands (an etcd source has no log index). */
export interface StatusSource {
  head(signal?: AbortSignal): Promise<{ readonly revision: number; readonly index?: number }>;
}
import { decodeCopyState, type CopyState } from './copy-state.ts';

/** CopyStatus is copyStatus's answer. */
export interface CopyStatus {
  readonly state: CopyState;
  /** The target's revision now. */
  readonly targetRevision: number;
  /** The source's revision now, or undefined when the source did not answer (`sourceError` says why). */
  readonly sourceRevision: number | undefined;
  readonly sourceError: string | undefined;
  /** Source revisions not yet applied (undefined while scanning or without the source). */
  readonly lagRevisions: number | undefined;
  /** A stratakv source: its log index now, and the entries not yet replayed. */
  readonly sourceIndex: number | undefined;
  readonly lagEntries: number | undefined;
  /**
   * Seconds since the target last held everything the source had (0 when caught up now;
   * undefined before the first catch-up).
   */
  readonly lagSeconds: number | undefined;
  /** While scanning: progress of the scan. */
  readonly scan: { readonly keysCopied: number; readonly keysTotal: number; readonly bytesCopied: number; readonly keysPerSecond: number; readonly etaSeconds: number | undefined } | undefined;
  /** Seconds since the copier last wrote to the target (a large value: no copier is running). */
  readonly idleSeconds: number;
}

/** copyStatus reads the copy's state; the source is asked too when given (a failure there is reported, not thrown). */
export async function copyStatus(target: CopyTarget, source: StatusSource | undefined, options: { readonly signal?: AbortSignal; readonly now?: () => number } = {}): Promise<CopyStatus> {
  const now = options.now ?? Date.now;
  const view = await target.read(options.signal);
  if (view.state === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the target is not a mirror: no copy is in progress (or it was switched or cancelled)');
  const state = decodeCopyState(view.state);
  let sourceRevision: number | undefined;
  let sourceIndex: number | undefined;
  let sourceError: string | undefined;
  if (source !== undefined) {
    try {
      const head = await source.head(options.signal);
      sourceRevision = head.revision;
      sourceIndex = head.index;
    } catch (error) {
      sourceError = (error as Error).message;
    }
  }
  const nowMs = now();
  // A replayed copy's revision is the target's own (it is the source's by construction).
  const appliedRevision = state.appliedIndex === undefined ? state.appliedRevision : view.revision;
  const lagRevisions = state.phase === 'tailing' && sourceRevision !== undefined ? Math.max(0, sourceRevision - appliedRevision) : undefined;
  const lagEntries = state.phase === 'tailing' && state.appliedIndex !== undefined && sourceIndex !== undefined ? Math.max(0, sourceIndex - state.appliedIndex) : undefined;
  const lagSeconds = lagRevisions === 0 ? 0 : state.caughtUpAtMs === 0 ? undefined : Math.max(0, (nowMs - state.caughtUpAtMs) / 1000);
  let scan: CopyStatus['scan'];
  if (state.scan !== null) {
    const elapsedSeconds = Math.max(0.001, (state.updatedAtMs - state.scan.startedAtMs) / 1000);
    const keysPerSecond = state.scan.keysCopied / elapsedSeconds;
    const left = Math.max(0, state.scan.keysTotal - state.scan.keysCopied);
    scan = {
      keysCopied: state.scan.keysCopied,
      keysTotal: state.scan.keysTotal,
      bytesCopied: state.scan.bytesCopied,
      keysPerSecond,
      etaSeconds: keysPerSecond > 0 ? left / keysPerSecond : undefined,
    };
  }
  return {
    state,
    targetRevision: view.revision,
    sourceRevision,
    sourceError,
    lagRevisions,
    sourceIndex,
    lagEntries,
    lagSeconds,
    scan,
    idleSeconds: Math.max(0, (nowMs - state.updatedAtMs) / 1000),
  };
}

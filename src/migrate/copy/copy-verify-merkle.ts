// verifyLogCopy verifies a copy of a stratakv source with a Merkle diff of the two clusters'
// state digests (src/diff) at one common point, while the copy goes on:
//
//   1. a checkpoint through the source's Raft pins the source's view on every source member
//      (pin `i<index>`);
//   2. the copier, replaying the source's log, meets that checkpoint entry, stops its batch
//      there, pins the target's view (the target then holds exactly what the source held at
//      the checkpoint: the copier is its only writer) and records the pin in the copy state;
//   3. the two views are compared with the `full` hashes — key, value, create and mod
//      revision, version and lease: a replayed copy has the source's revisions, so a single
//      differing counter is a difference. Equal roots end it in one comparison; otherwise the
//      descent lists every differing key (src/diff's bounds).
//
// With no copier running, step 2 never happens: verify waits `waitMs` and says so. A cluster
// that is still (a switch fenced the source and the copier caught up) is compared with
// diffStill: both applied views pinned at once.

import { DiffClient, type DiffReport } from '../../client/index.ts';
import { pauseOrAbort } from '../../util/clock.ts';
import { ErrorCode, StrataError } from '../../util/errors.ts';
import type { CopyTarget, LogCopySource, PinnedSourceView } from './copy-ends.ts';
import { decodeCopyState, type CopyState } from './copy-state.ts';

/** VERIFY_WAIT_MS_DEFAULT is how long verify waits for the copier to replay its checkpoint. */
export const VERIFY_WAIT_MS_DEFAULT = 60_000;
const POLL_MS = 200;
// How long the copier has, once past the checkpoint, to record the target's pin (its pin attempts take at most ~5 s).
const PASSED_GRACE_MS = 15_000;

/** MerkleVerifyReport is the outcome of a Merkle verify. */
export interface MerkleVerifyReport {
  readonly equal: boolean;
  /** The source's log index and the revision both sides were compared at. */
  readonly sourceIndex: number;
  readonly revision: number;
  readonly keyCount: number;
  readonly diff: DiffReport;
  readonly state: CopyState;
  /** Seconds spent waiting for the copier to reach the checkpoint. */
  readonly waitedSeconds: number;
}

/** MerkleVerifyOptions configure verifyLogCopy. */
export interface MerkleVerifyOptions {
  readonly source: LogCopySource;
  readonly target: CopyTarget;
  readonly signal?: AbortSignal;
  readonly waitMs?: number;
  readonly differencesMax?: number;
  readonly now?: () => number;
  readonly onProgress?: (progress: { readonly phase: 'checkpoint' | 'waiting' | 'diff'; readonly sourceIndex?: number; readonly appliedIndex?: number }) => void;
}

/** verifyLogCopy runs the Merkle verify of a copy from a stratakv source (see the file comment). */
export async function verifyLogCopy(options: MerkleVerifyOptions): Promise<MerkleVerifyReport> {
  const { source, target, signal } = options;
  const now = options.now ?? Date.now;
  const waitMs = options.waitMs ?? VERIFY_WAIT_MS_DEFAULT;
  const first = await target.read(signal);
  if (first.state === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the target is not a mirror: there is no copy to verify');
  const state = decodeCopyState(first.state);
  if (state.source.kind !== 'stratakv') throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'verifyLogCopy verifies copies of stratakv sources; an etcd source is verified key by key (verifyCopy)');
  if (state.phase !== 'tailing') throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the copy is ${state.phase}: verify once its scan is done and while it follows the source (\`copy status\`)`);
  options.onProgress?.({ phase: 'checkpoint' });
  const sourcePin = await source.checkpoint(signal);
  // Use the source's pin at once: an unused pin is dropped after 30 s, a used one after 5 minutes idle.
  await source.scan(sourcePin, { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) }, 1, signal);
  const startedMs = now();
  let targetPin: PinnedSourceView | undefined;
  let latest = state;
  let passedAtMs: number | undefined;
  try {
    for (;;) {
      const view = await target.read(signal);
      if (view.state === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the target stopped being a mirror during verify (switched or cancelled)');
      latest = decodeCopyState(view.state);
      const pin = latest.verifyPins?.find((candidate) => candidate.sourceIndex === sourcePin.index);
      if (pin !== undefined) {
        targetPin = { endpoint: pin.endpoint, pinId: pin.pinId, index: 0, revision: pin.revision };
        break;
      }
      const applied = latest.appliedIndex ?? 0;
      // The copier records the pin in a write of its own after the batch that reached the
      // checkpoint: past the checkpoint without a pin is final only after a while.
      if (applied >= sourcePin.index) passedAtMs ??= now();
      if (passedAtMs !== undefined && now() - passedAtMs >= PASSED_GRACE_MS) {
        throw new StrataError(ErrorCode.UNAVAILABLE, `the copier went past the source's checkpoint ${sourcePin.index} without pinning the target there (it restarted, or no target member reached its revision): run verify again`);
      }
      if (now() - startedMs >= waitMs) {
        throw new StrataError(ErrorCode.TIMEOUT, `the copy did not reach the source's checkpoint ${sourcePin.index} in ${Math.round(waitMs / 1000)} s (applied index ${applied}, last written ${Math.round((now() - latest.updatedAtMs) / 1000)} s ago): is a copier running? (\`stratakv migrate copy create\` resumes it)`);
      }
      options.onProgress?.({ phase: 'waiting', sourceIndex: sourcePin.index, appliedIndex: applied });
      await pauseOrAbort(POLL_MS, signal ?? new AbortController().signal);
    }
    const waitedSeconds = (now() - startedMs) / 1000;
    options.onProgress?.({ phase: 'diff', sourceIndex: sourcePin.index });
    const diff = await diffPinned(sourcePin, targetPin, { ...(signal === undefined ? {} : { signal }), ...(options.differencesMax === undefined ? {} : { differencesMax: options.differencesMax }) });
    return { equal: diff.equal, sourceIndex: sourcePin.index, revision: diff.a.revision, keyCount: diff.a.keyCount, diff, state: latest, waitedSeconds };
  } finally {
    await source.release(sourcePin);
    if (targetPin !== undefined) await target.release(targetPin);
  }
}

/**
 * diffPinned compares two pinned views with the `full` hashes: A (the source) is the
 * reference, so `missing` keys are on the source and not on the target.
 */
export async function diffPinned(a: PinnedSourceView, b: PinnedSourceView, options: { readonly signal?: AbortSignal; readonly differencesMax?: number } = {}): Promise<DiffReport> {
  const client = new DiffClient();
  try {
    return await client.diff({
      endpoints: [a.endpoint],
      against: [b.endpoint],
      pins: { a: { endpoint: a.endpoint, pinId: a.pinId }, b: { endpoint: b.endpoint, pinId: b.pinId }, hash: 'full' },
      valueBytesMax: 64,
      ...(options.differencesMax === undefined ? {} : { differencesMax: options.differencesMax }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  } finally {
    client.close();
  }
}

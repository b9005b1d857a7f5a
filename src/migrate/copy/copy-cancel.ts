// cancelCopy undoes a copy before its switch: the source was only read, so it is untouched;
// the target's copied keys are deleted (in batches, each compare-and-set on the same state,
// so a cancel killed half way is run again) and then the mirror state is dropped, leaving an
// empty cluster that takes writes again. Its revision stays where the copy brought it (a
// revision never goes back).

import { ErrorCode, StrataError } from '../../util/errors.ts';
import type { CopyTarget } from './copy-ends.ts';
import { decodeCopyState, type CopyState } from './copy-state.ts';
import { fromBase64, keyAfter, PAGE_KEYS } from './copier.ts';

// Bounds the pages a cancel deletes (each PAGE_KEYS keys): 100 million keys.
const CANCEL_PAGES_MAX = 100_000;

/** CancelResult says what a cancel removed. */
export interface CancelResult {
  readonly state: CopyState;
  readonly keysDeleted: number;
}

/** cancelCopy deletes the copied keys and drops the mirror state (see the file comment). */
export async function cancelCopy(target: CopyTarget, options: { readonly signal?: AbortSignal; readonly onProgress?: (keysDeleted: number) => void } = {}): Promise<CancelResult> {
  const view = await target.read(options.signal);
  if (view.state === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the target is not a mirror: there is no copy to cancel');
  const stateBytes = view.state;
  const state = decodeCopyState(stateBytes);
  if ((state.direction ?? 'forward') === 'reverse' || (state.phase !== 'copying' && state.phase !== 'tailing')) {
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `\`copy cancel\` undoes a copy before its switch; this one is ${state.direction ?? 'forward'} and ${state.phase} (after a switch: \`copy reverse\` moves back, \`copy complete\` ends it)`);
  }
  const rangeEnd = fromBase64(state.range.rangeEnd);
  let from = fromBase64(state.range.key);
  let keysDeleted = 0;
  for (let page = 0; page < CANCEL_PAGES_MAX; page += 1) {
    const keys = await target.page({ key: from, rangeEnd }, PAGE_KEYS, { keysOnly: true, ...(options.signal === undefined ? {} : { signal: options.signal }) });
    // Batches under the target's request limit (keys may be large).
    const budget = Math.max(1, target.requestBytesMax - 2 * stateBytes.byteLength - 1_024);
    for (let at = 0; at < keys.kvs.length; ) {
      const deletes: Uint8Array[] = [];
      let bytes = 0;
      for (; at < keys.kvs.length; at += 1) {
        const key = keys.kvs[at]?.key ?? new Uint8Array();
        if (deletes.length > 0 && bytes + key.byteLength + 16 > budget) break;
        deletes.push(key);
        bytes += key.byteLength + 16;
      }
      await target.mirror({ type: 'mirrorApply', expectState: stateBytes, state: stateBytes, revision: keys.revision, puts: [], deletes }, options.signal);
      keysDeleted += deletes.length;
      options.onProgress?.(keysDeleted);
    }
    const last = keys.kvs[keys.kvs.length - 1];
    if (!keys.more || last === undefined) {
      await target.mirror({ type: 'mirrorEnd', expectState: stateBytes }, options.signal);
      return { state, keysDeleted };
    }
    from = keyAfter(last.key);
  }
  throw new StrataError(ErrorCode.INVALID_ARGUMENT, `cancel stopped after ${CANCEL_PAGES_MAX} pages of keys; run it again`);
}

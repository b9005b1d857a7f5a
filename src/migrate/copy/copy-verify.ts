// verifyCopy compares the target with the source key by key: value, create and mod revision,
// version and lease, at one common revision per page. It can run while the copier follows the
// source: each page is read from the target first (a linearizable read, which answers the
// target's revision T), then the same key range from the source *at revision T* (etcd keeps
// its history until compacted), so both sides are compared as of the same source revision.
// Every difference is listed (up to DIFFERENCES_LISTED_MAX, counted beyond).

import { ErrorCode, isStrataError, StrataError } from '../../util/errors.ts';
import type { CopySource, CopyTarget, KeyRange, SourceKv } from './copy-ends.ts';
import { decodeCopyState, isStateKey, type CopyState } from './copy-state.ts';
import { base64, fromBase64, keyAfter, PAGE_KEYS } from './copier.ts';

/** DIFFERENCES_LISTED_MAX bounds the differences a report lists (all are counted). */
export const DIFFERENCES_LISTED_MAX = 1_000;
/** VERIFY_PAGE_ATTEMPTS_MAX bounds the re-reads of one page whose revision the source compacted meanwhile. */
export const VERIFY_PAGE_ATTEMPTS_MAX = 5;
/** VERIFY_PAGES_IN_FLIGHT bounds the pages read at once when the source names page ranges (pageRanges). */
export const VERIFY_PAGES_IN_FLIGHT = 4;
// Bounds the source pages read for one target page (the source may hold many keys the target lacks).
const SOURCE_PAGES_PER_PAGE_MAX = 10_000;

/** CopyDifference is one key on which the two sides disagree. */
export interface CopyDifference {
  readonly key: Uint8Array;
  /** missing: on the source only; extra: on the target only; different: on both, unequal. */
  readonly kind: 'missing' | 'extra' | 'different';
  /** The fields that differ (for `different`). */
  readonly fields: readonly ('value' | 'createRevision' | 'modRevision' | 'version' | 'lease')[];
  readonly source: SourceKv | undefined;
  readonly target: SourceKv | undefined;
  /** The source revision this key was compared at. */
  readonly revision: number;
}

/** VerifyReport is the outcome of verifyCopy. */
export interface VerifyReport {
  readonly equal: boolean;
  readonly keysCompared: number;
  readonly bytesCompared: number;
  readonly differencesCount: number;
  readonly differences: readonly CopyDifference[];
  /** The lowest and highest revisions the pages were compared at (equal when the source was quiet). */
  readonly fromRevision: number;
  readonly toRevision: number;
  /** Keys on the target that carry an etcd lease id (kept, but stratakv does not expire them). */
  readonly leasedKeys: number;
  readonly pages: number;
  readonly state: CopyState;
}

/** VerifyOptions configure verifyCopy. */
export interface VerifyOptions {
  readonly source: CopySource;
  readonly target: CopyTarget;
  readonly signal?: AbortSignal;
  readonly pageKeys?: number;
  readonly onPage?: (progress: { readonly keysCompared: number; readonly differencesCount: number; readonly revision: number }) => void;
}

/** verifyCopy compares the whole copied range (see the file comment); the target must be a mirror that finished its scan. */
export async function verifyCopy(options: VerifyOptions): Promise<VerifyReport> {
  const { source, target, signal } = options;
  const pageKeys = options.pageKeys ?? PAGE_KEYS;
  const view = await target.read(signal);
  if (view.state === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the target is not a mirror: there is no copy to verify');
  const state = decodeCopyState(view.state);
  // A switch's (`switching`, `fenced`) holds the whole data too.
  if (state.phase === 'copying' || state.phase === 'completed') {
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the copy is ${state.phase === 'copying' ? 'still scanning the source' : state.phase}: verify once its scan is done (\`copy status\`)`);
  }
  const range: KeyRange = { key: fromBase64(state.range.key), rangeEnd: fromBase64(state.range.rangeEnd) };
  const differences: CopyDifference[] = [];
  let differencesCount = 0;
  let keysCompared = 0;
  let bytesCompared = 0;
  let leasedKeys = 0;
  let fromRevision = Number.POSITIVE_INFINITY;
  let toRevision = 0;
  let pages = 0;
  const note = (difference: CopyDifference): void => {
    differencesCount += 1;
    if (differences.length < DIFFERENCES_LISTED_MAX) differences.push(difference);
  };
  const fold = ({ targetKvs, sourceKvs, revision }: ComparedPage): void => {
    pages += 1;
    fromRevision = Math.min(fromRevision, revision);
    toRevision = Math.max(toRevision, revision);
    let s = 0;
    let t = 0;
    while (s < sourceKvs.length || t < targetKvs.length) {
      const a = sourceKvs[s];
      const b = targetKvs[t];
      // A reverse copy's state: its value and counters differ between the clusters by design.
      if (a !== undefined && isStateKey(a.key)) {
        s += 1;
        continue;
      }
      if (b !== undefined && isStateKey(b.key)) {
        t += 1;
        continue;
      }
      const order = a === undefined ? 1 : b === undefined ? -1 : Buffer.compare(a.key, b.key);
      if (order < 0 && a !== undefined) {
        note({ key: a.key, kind: 'missing', fields: [], source: a, target: undefined, revision });
        s += 1;
      } else if (order > 0 && b !== undefined) {
        note({ key: b.key, kind: 'extra', fields: [], source: undefined, target: b, revision });
        if (b.lease !== 0n) leasedKeys += 1;
        t += 1;
      } else if (a !== undefined && b !== undefined) {
        const fields = differingFields(a, b);
        if (fields.length > 0) note({ key: a.key, kind: 'different', fields, source: a, target: b, revision });
        if (b.lease !== 0n) leasedKeys += 1;
        keysCompared += 1;
        bytesCompared += a.key.byteLength + a.value.byteLength;
        s += 1;
        t += 1;
      }
    }
    options.onPage?.({ keysCompared, differencesCount, revision });
  };
  const ranges = source.pageRanges === undefined ? undefined : await source.pageRanges(range, 0, pageKeys, signal);
  if (ranges === undefined) {
    let from = range.key;
    for (;;) {
      if (signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'verify was cancelled');
      const page = await comparePage(source, target, { key: from, rangeEnd: range.rangeEnd }, pageKeys, signal, false);
      fold(page);
      if (!page.more) break;
      from = page.end;
    }
  } else {
    // Each range names its end: no read walks past it, and VERIFY_PAGES_IN_FLIGHT are read at
    // once, compared in key order (200k keys in etcd 3.4: 27 s one limited page after another).
    const inFlight: Promise<ComparedPage[]>[] = [];
    let next = 0;
    const startNext = (): void => {
      const pageRange = ranges[next];
      if (pageRange === undefined) return;
      next += 1;
      const reading = compareRange(source, target, pageRange, pageKeys, signal);
      // Awaited in order below; one failing while an earlier one is awaited must not go unhandled.
      reading.catch(() => undefined);
      inFlight.push(reading);
    };
    for (let at = 0; at < VERIFY_PAGES_IN_FLIGHT; at += 1) startNext();
    for (let reading = inFlight.shift(); reading !== undefined; reading = inFlight.shift()) {
      if (signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'verify was cancelled');
      const compared = await reading;
      startNext();
      for (const page of compared) fold(page);
    }
  }
  // A re-scan that started meanwhile (the source compacted past the copier) makes the
  // comparison of its pages meaningless: say so rather than report its differences.
  const after = await target.read(signal);
  const stateAfter = after.state === undefined ? undefined : decodeCopyState(after.state);
  if (stateAfter === undefined || stateAfter.copyId !== state.copyId || stateAfter.rescans !== state.rescans) {
    throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the copy changed while it was verified (a re-scan after a compaction, a cancel or a switch): run verify again');
  }
  return {
    equal: differencesCount === 0,
    keysCompared,
    bytesCompared,
    differencesCount,
    differences,
    fromRevision: Number.isFinite(fromRevision) ? fromRevision : view.revision,
    toRevision,
    leasedKeys,
    pages,
    state: stateAfter,
  };
}

/** ComparedPage is one page's keys on both sides, compared as of `revision`; `end` is where it stopped. */
interface ComparedPage {
  readonly targetKvs: readonly SourceKv[];
  readonly sourceKvs: readonly SourceKv[];
  readonly end: Uint8Array;
  readonly revision: number;
  readonly more: boolean;
}

/** compareRange reads one range of the source's pageRanges on both sides: one page, or more when the target holds extra keys there. */
async function compareRange(source: CopySource, target: CopyTarget, range: KeyRange, pageKeys: number, signal: AbortSignal | undefined): Promise<ComparedPage[]> {
  const pages: ComparedPage[] = [];
  let from = range.key;
  // Each page covers at least one key of the target's (a full target page) or the rest of the range.
  for (let count = 0; ; count += 1) {
    if (count >= SOURCE_PAGES_PER_PAGE_MAX) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `the target holds over ${SOURCE_PAGES_PER_PAGE_MAX} pages of keys in one page range of the source's, after ${base64(range.key)}`);
    const page = await comparePage(source, target, { key: from, rangeEnd: range.rangeEnd }, pageKeys, signal, true);
    pages.push(page);
    if (!page.more) return pages;
    from = page.end;
  }
}

/**
 * comparePage compares one page: the source's next keys (at its current revision) bound the
 * key range, unless `bounded` (the range is one of the source's pageRanges already); the
 * target's keys in that range are read (which gives its revision T); the source's keys in the
 * same range are read again at T. Bounding the target's read by a page of the source keeps
 * each read to a page's keys: a Range with a limit still counts its whole range, and from the
 * start of a large range that is every key.
 */
async function comparePage(source: CopySource, target: CopyTarget, range: KeyRange, pageKeys: number, signal: AbortSignal | undefined, bounded: boolean): Promise<ComparedPage> {
  const withSignal = signal === undefined ? {} : { signal };
  for (let attempt = 1; ; attempt += 1) {
    let end = range.rangeEnd;
    let more = false;
    if (!bounded) {
      const bound = await source.page(range, 0, pageKeys, signal);
      const lastBound = bound.kvs[bound.kvs.length - 1];
      if (bound.more && lastBound !== undefined) end = keyAfter(lastBound.key);
      more = bound.more;
    }
    // The target may hold more keys in that range than the source (extra keys): a bounded read.
    const targetPage = await target.page({ key: range.key, rangeEnd: end }, pageKeys * 4, { keysOnly: false, ...withSignal });
    const lastTarget = targetPage.kvs[targetPage.kvs.length - 1];
    if (targetPage.more && lastTarget !== undefined) {
      end = keyAfter(lastTarget.key);
      more = true;
    }
    try {
      const sourceKvs: SourceKv[] = [];
      let from = range.key;
      for (let sourcePages = 0; ; sourcePages += 1) {
        if (sourcePages >= SOURCE_PAGES_PER_PAGE_MAX) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `the source holds over ${SOURCE_PAGES_PER_PAGE_MAX} pages of keys the target lacks after ${base64(range.key)}`);
        const sourcePage = await source.page({ key: from, rangeEnd: end }, targetPage.revision, pageKeys, signal);
        sourceKvs.push(...sourcePage.kvs);
        const lastSource = sourcePage.kvs[sourcePage.kvs.length - 1];
        if (!sourcePage.more || lastSource === undefined) break;
        from = keyAfter(lastSource.key);
      }
      return { targetKvs: targetPage.kvs, sourceKvs, end, revision: targetPage.revision, more };
    } catch (error) {
      // The source compacted past the target's revision between the two reads: read both again.
      if (!isStrataError(error, ErrorCode.COMPACTED) || attempt >= VERIFY_PAGE_ATTEMPTS_MAX) throw error;
    }
  }
}

export function differingFields(a: SourceKv, b: SourceKv): CopyDifference['fields'] {
  const fields: ('value' | 'createRevision' | 'modRevision' | 'version' | 'lease')[] = [];
  if (!Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength).equals(b.value)) fields.push('value');
  if (a.createRevision !== b.createRevision) fields.push('createRevision');
  if (a.modRevision !== b.modRevision) fields.push('modRevision');
  if (a.version !== b.version) fields.push('version');
  if (a.lease !== b.lease) fields.push('lease');
  return fields;
}

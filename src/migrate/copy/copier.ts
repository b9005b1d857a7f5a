// runCopy fills a target cluster from a source cluster and keeps it following, with the
// source's own revisions: a consistent scan at one source revision, then the source's changes
// from the next revision on (see README.md for the phases and why each is safe).
//
// Every change to the target is one mirror request carrying the data and the next copy state
// (copy-state.ts), compare-and-set on the state before it. After an answer that leaves the
// outcome unknown (a timeout, a leader change), the copier reads the state: the new one means
// the batch landed, the old one that it did not (it is sent again, byte for byte: if the first
// send lands after all, the second fails its compare and the read finds the new state), and
// anything else that another copier owns the target (MIRROR_CONFLICT, the copier stops).

import { pauseOrAbort } from '../../util/clock.ts';
import { randomBytes } from 'node:crypto';

import { prefixEnd } from '../../client/index.ts';
import { decodeCheckpoint, isCheckpointEntry } from '../../node/index.ts';
import { isKvCommand, kvCommandType, type MirrorPut, type MirrorRequest } from '../../storage/index.ts';
import { holdLogWhile, logHoldConsumer } from './log-hold-renewer.ts';
import { assert } from '../../util/assert.ts';
import { ErrorCode, isStrataError, StrataError } from '../../util/errors.ts';
import type { CopySource, CopyTarget, KeyRange, LogBatch, LogCopySource, LogEntry, PinnedSourceView, SourceEvent, SourcePage, SourceTail } from './copy-ends.ts';
import {
  COPY_ENDPOINTS_MAX,
  COPY_STATE_FORMAT,
  STATE_KEY_BYTES_MAX,
  VERIFY_PINS_MAX,
  decodeCopyState,
  encodeCopyState,
  sameBytes,
  type CopyDirection,
  type CopySourceKind,
  type CopyState,
  type ScanPosition,
} from './copy-state.ts';

/** PAGE_KEYS is how many keys one page of a scan asks the source for. */
export const PAGE_KEYS = 1_000;
/** PROGRESS_INTERVAL_MS is how often an idle tail asks the source how far it is (so the target's revision follows). */
export const PROGRESS_INTERVAL_MS = 1_000;
/** COMMIT_ATTEMPTS_MAX bounds the sends of one batch while the target's answers leave the outcome unknown. */
export const COMMIT_ATTEMPTS_MAX = 20;
/** RECONNECTS_MAX bounds the tail's reconnections in a row without progress before the copier gives up. */
export const RECONNECTS_MAX = 60;
/** TAIL_QUEUE_BATCHES_MAX bounds the watch responses read ahead of the writes to the target. */
export const TAIL_QUEUE_BATCHES_MAX = 256;
/** RETRY_PAUSE_MS_MAX caps the pause between retries (they start at 100 ms and double). */
export const RETRY_PAUSE_MS_MAX = 2_000;
// What a mirror request costs beyond its keys and values: per key, its counters and framing;
// per request, the two states and the framing. Conservative: the target refuses an oversized
// request, so the estimate must not be low.
const PUT_OVERHEAD_BYTES = 64;
const REQUEST_OVERHEAD_BYTES = 1_024;

/** CopyEvent reports the copier's progress (the CLI draws it). */
export type CopyEvent =
  | { readonly kind: 'began'; readonly state: CopyState }
  | { readonly kind: 'resumed'; readonly state: CopyState }
  | { readonly kind: 'scanned'; readonly state: CopyState }
  | { readonly kind: 'scan-done'; readonly state: CopyState }
  | { readonly kind: 'rescan'; readonly state: CopyState; readonly compactRevision: number; readonly reason: string }
  | { readonly kind: 'applied'; readonly state: CopyState; readonly revisions: number; readonly events: number }
  | { readonly kind: 'retry'; readonly what: string; readonly error: StrataError; readonly attempt: number };

/** CopyOptions configure runCopy. */
export interface CopyOptions {
  /** An etcd source (sourceKind `etcd`). */
  readonly source?: CopySource;
  /** A stratakv source (sourceKind `stratakv`): its commands are replayed. */
  readonly logSource?: LogCopySource;
  readonly target: CopyTarget;
  /** The source's kind and endpoints, kept in the state for `copy status` and resumes. */
  readonly sourceKind: CopySourceKind;
  readonly sourceEndpoints: readonly string[];
  /** Copy only keys with this prefix; undefined: every key. A resume must give the same (or none). */
  readonly prefix?: Uint8Array;
  /** Stops the copier; runCopy then returns the state it reached. */
  readonly signal: AbortSignal;
  /** Return once the target holds everything the source held at a progress mark (tests, `--until-caught-up`). */
  readonly stopWhenCaughtUp?: boolean;
  /** Only resume a copy in progress; refuse to begin one. */
  readonly resumeOnly?: boolean;
  readonly pageKeys?: number;
  readonly progressIntervalMs?: number;
  readonly now?: () => number;
  readonly onEvent?: (event: CopyEvent) => void;
  /** A stratakv source: return (reason `at-index`) once every source entry up to this index is applied (a switch's last catch-up). */
  readonly stopAtIndex?: number;
  /** The direction a new copy records (default `forward`). */
  readonly direction?: CopyDirection;
  /** A switch's own catch-up: resume the copy this switch took over (phase `switching`). */
  readonly switchId?: string;
}

/** CopyResult is where runCopy stopped. */
export interface CopyResult {
  readonly state: CopyState;
  /**
   * `switched`: a `copy switch` took the copy over (the copier stepped aside); `at-index`:
   * stopAtIndex reached; `source-fenced`: the source became a mirror itself (a switch fenced
   * it): every command before the fence is applied, and none after it may be (the source
   * refused them).
   */
  readonly reason: 'stopped' | 'caught-up' | 'switched' | 'at-index' | 'source-fenced';
}

/** rangeOf is the key range a copy covers: the prefix's, or every key. */
export function rangeOf(prefix: Uint8Array | undefined): KeyRange {
  if (prefix === undefined || prefix.byteLength === 0) return { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };
  return { key: prefix, rangeEnd: prefixEnd(prefix) };
}

/** runCopy runs the copy until `signal` (or until caught up, when asked); see the file comment. */
export async function runCopy(options: CopyOptions): Promise<CopyResult> {
  return await new Copier(options).run();
}

class Copier {
  readonly #options: CopyOptions;
  readonly #source: CopySource | undefined;
  readonly #log: LogCopySource | undefined;
  readonly #target: CopyTarget;
  readonly #now: () => number;
  readonly #pageKeys: number;
  #state: CopyState | undefined;
  #stateBytes: Uint8Array | undefined;
  #range: KeyRange = rangeOf(undefined);
  // The target's revision as its last answer gave it (a scan moves it ahead of appliedRevision).
  #targetRevision = 0;
  // The next page of the scan, read while the current one is written.
  #readAhead: { readonly from: Uint8Array; readonly revision: number; readonly page: Promise<SourcePage> } | undefined;
  // Where the scan reads next, exactly (the state keeps at most STATE_KEY_BYTES_MAX of it).
  #scanFrom: Uint8Array | undefined;
  // performance.now() when the tail last brought events.
  #lastEventAtMs = 0;
  // The last progress mark that could not be proven (not asked about again).
  #unprovenProgress = 0;
  // Set when the copier must step aside (a switch took the copy over).
  #stopReason: 'switched' | undefined;
  // A stratakv source: the pinned view the scan reads (released when the scan ends).
  #pin: PinnedSourceView | undefined;

  constructor(options: CopyOptions) {
    this.#options = options;
    this.#source = options.source;
    this.#log = options.logSource;
    assert(options.sourceKind === 'stratakv' ? this.#log !== undefined && this.#source === undefined : this.#source !== undefined && this.#log === undefined, 'runCopy takes the source its sourceKind names');
    this.#target = options.target;
    this.#now = options.now ?? Date.now;
    this.#pageKeys = options.pageKeys ?? PAGE_KEYS;
    assert(Number.isSafeInteger(this.#pageKeys) && this.#pageKeys > 0, 'pageKeys is a positive integer');
  }

  async run(): Promise<CopyResult> {
    try {
      // Inside the try: a refused begin releases the pin it made.
      await this.#start();
      for (;;) {
        if (this.#options.signal.aborted) return { state: this.#current(), reason: 'stopped' };
        const state = this.#current();
        if (this.#stopReason !== undefined) return { state, reason: this.#stopReason };
        try {
          if (state.phase === 'copying') {
            await this.#scanPage();
          } else if (this.#log !== undefined) {
            const reason = await this.#tailLog(this.#log);
            if (reason !== undefined) return { state: this.#current(), reason };
          } else {
            const caughtUp = await this.#tail();
            if (caughtUp) return { state: this.#current(), reason: 'caught-up' };
          }
        } catch (error) {
          // A read cut short by the stop: the target's state says where a resume starts.
          if (this.#options.signal.aborted && isStrataError(error, ErrorCode.CANCELED)) return { state: this.#current(), reason: 'stopped' };
          if (this.#stopReason !== undefined) return { state: this.#current(), reason: this.#stopReason };
          throw error;
        }
      }
    } finally {
      // A pin the state records is the scan's: a resume reads on from it (it expires on its own
      // if no copier comes back). Any other is released.
      const pin = this.#pin;
      if (pin !== undefined && this.#log !== undefined && this.#state?.scan?.pin?.pinId !== pin.pinId) void this.#log.release(pin);
    }
  }

  #current(): CopyState {
    assert(this.#state !== undefined, 'the copier has a state once started');
    return this.#state;
  }

  // ---- start: begin a copy, or resume the one the target holds ----

  async #start(): Promise<void> {
    const { signal } = this.#options;
    const view = await this.#retrying('read the target', () => this.#target.read(signal));
    const head = await this.#retrying('read the source', () => this.#head(signal));
    this.#targetRevision = view.revision;
    if (view.state !== undefined) {
      const state = decodeCopyState(view.state);
      const ownSwitch = state.phase === 'switching' && this.#options.switchId !== undefined && state.switchInfo?.switchId === this.#options.switchId;
      if (state.phase !== 'copying' && state.phase !== 'tailing' && !ownSwitch) {
        throw conflict(`the copy is ${describePhase(state)}: there is nothing for a copier to do`);
      }
      if (state.source.kind !== this.#options.sourceKind) throw conflict(`the target mirrors a ${state.source.kind} cluster, not a ${this.#options.sourceKind} one`);
      if (state.source.clusterId !== head.clusterId) {
        throw conflict(`the target mirrors cluster ${state.source.clusterId}, but the source answers as cluster ${head.clusterId}`);
      }
      const prefix = this.#options.prefix === undefined ? undefined : base64(this.#options.prefix);
      if (prefix !== undefined && state.prefix !== prefix) {
        throw conflict(`the target mirrors ${describePrefix(state.prefix)}, not ${describePrefix(prefix)}; cancel that copy first`);
      }
      this.#state = state;
      this.#stateBytes = view.state;
      this.#range = { key: fromBase64(state.range.key), rangeEnd: fromBase64(state.range.rangeEnd) };
      this.#pin = state.scan?.pin;
      this.#options.onEvent?.({ kind: 'resumed', state });
      return;
    }
    if (this.#options.resumeOnly === true) throw conflict('the target is not a mirror: there is no copy to resume');
    if (this.#log !== undefined && this.#options.prefix !== undefined) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a stratakv source is copied whole (its commands are replayed, and a command may touch any key): --prefix is for etcd sources', { details: { field: 'prefix' } });
    }
    if (this.#options.prefix !== undefined && this.#options.prefix.byteLength > STATE_KEY_BYTES_MAX) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a copy's prefix is at most ${STATE_KEY_BYTES_MAX} bytes, not ${this.#options.prefix.byteLength}`, { details: { field: 'prefix' } });
    }
    this.#range = rangeOf(this.#options.prefix);
    const pin = this.#log === undefined ? undefined : await this.#retrying('pin a view of the source', () => (this.#log as LogCopySource).pin(signal));
    this.#pin = pin;
    const scanRevision = pin?.revision ?? head.revision;
    const keysTotal = await this.#retrying('count the source', () => this.#count(scanRevision, signal));
    const nowMs = this.#now();
    const state: CopyState = {
      format: COPY_STATE_FORMAT,
      copyId: randomBytes(8).toString('hex'),
      source: { kind: this.#options.sourceKind, endpoints: this.#options.sourceEndpoints.slice(0, COPY_ENDPOINTS_MAX), clusterId: head.clusterId },
      range: { key: base64(this.#range.key), rangeEnd: base64(this.#range.rangeEnd) },
      prefix: this.#options.prefix === undefined ? null : base64(this.#options.prefix),
      phase: 'copying',
      scan: this.#newScan(scanRevision, keysTotal, false, nowMs, pin),
      appliedRevision: 0,
      sourceRevisionSeen: Math.max(head.revision, scanRevision),
      caughtUpAtMs: 0,
      leasedPuts: 0,
      rescans: 0,
      createdAtMs: nowMs,
      updatedAtMs: nowMs,
      direction: this.#options.direction ?? 'forward',
      ...(pin === undefined ? {} : { appliedIndex: 0, commitIndexSeen: head.index }),
    };
    const bytes = encodeCopyState(state);
    await this.#commit(state, bytes, () => ({ type: 'mirrorBegin', state: bytes, requireEmpty: true }), undefined);
    this.#options.onEvent?.({ kind: 'began', state });
  }

  /** #newScan is a scan of the whole range from its start (a re-scan also deletes what the source dropped). */
  #newScan(revision: number, keysTotal: number, deleteMissing: boolean, nowMs: number, pin: PinnedSourceView | undefined): ScanPosition {
    return { revision, nextKey: base64(this.#range.key), keysCopied: 0, bytesCopied: 0, keysTotal, deleteMissing, startedAtMs: nowMs, ...(pin === undefined ? {} : { pin: pinOf(pin) }) };
  }

  /** #head reads where the source stands (a stratakv source that is itself a mirror is refused). */
  async #head(signal: AbortSignal): Promise<{ readonly clusterId: string; readonly revision: number; readonly index: number }> {
    if (this.#source !== undefined) return { ...(await this.#source.head(signal)), index: 0 };
    const head = await (this.#log as LogCopySource).head(signal);
    if (head.mirrorState !== undefined) {
      let phase = 'unknown';
      try {
        const sourceState = decodeCopyState(head.mirrorState);
        // This switch's own fence: its catch-up replays up to the fence entry.
        if (this.#options.switchId !== undefined && sourceState.phase === 'fenced' && sourceState.switchInfo?.switchId === this.#options.switchId) return head;
        phase = describePhase(sourceState);
      } catch {
        // Another tool's state: described as unknown.
      }
      throw conflict(`the source cluster ${head.clusterId} is itself a read-only mirror (${phase}): copy from the cluster that takes writes`);
    }
    return head;
  }

  /** #count counts the source's keys in range (a stratakv source: now, not at the pin; for the progress bar only). */
  async #count(revision: number, signal: AbortSignal): Promise<number> {
    if (this.#source !== undefined) return await this.#source.count(this.#range, revision, signal);
    return await (this.#log as LogCopySource).count(this.#range, signal);
  }

  /** #readPage reads one page of the scan from `from`. */
  #readPage(from: Uint8Array, revision: number, signal: AbortSignal): Promise<SourcePage> {
    const range = { key: from, rangeEnd: this.#range.rangeEnd };
    if (this.#source !== undefined) {
      const source = this.#source;
      return this.#retrying('read a page of the source', () => source.page(range, revision, this.#pageKeys, signal));
    }
    const log = this.#log as LogCopySource;
    const pin = this.#pin;
    assert(pin !== undefined, 'a stratakv scan has a pinned view');
    return this.#retrying('read a page of the source', () => log.scan(pin, range, this.#pageKeys, signal));
  }

  // ---- the scan ----

  /** #scanPage copies one page of the scan (in batches under the target's request limit). */
  async #scanPage(): Promise<void> {
    const { signal } = this.#options;
    const scan = this.#current().scan;
    assert(scan !== null, 'a copying state has a scan');
    const from = this.#scanFrom ?? fromBase64(scan.nextKey);
    let page;
    try {
      // The page read ahead while the previous one was written, if it is this one.
      const ahead = this.#readAhead;
      this.#readAhead = undefined;
      const readPage = (key: Uint8Array): Promise<SourcePage> => this.#readPage(key, scan.revision, signal);
      page = ahead !== undefined && ahead.revision === scan.revision && sameBytes(ahead.from, from) ? await ahead.page : await readPage(from);
      // Read the next page while this one is written to the target: the two ends overlap.
      const lastKv = page.kvs[page.kvs.length - 1];
      if (page.more && lastKv !== undefined) {
        const nextFrom = keyAfter(lastKv.key);
        const nextPage = readPage(nextFrom);
        nextPage.catch(() => undefined); // read again (and its error seen) when it is used
        this.#readAhead = { from: nextFrom, revision: scan.revision, page: nextPage };
      }
    } catch (error) {
      // A stratakv source whose pinned view's member is down: the pin is gone with it.
      const pinLost = this.#log !== undefined && isStrataError(error, ErrorCode.UNAVAILABLE) && error.details['pinId'] !== undefined;
      if (!isStrataError(error, ErrorCode.COMPACTED) && !pinLost) throw error;
      await this.#rescan(error as StrataError);
      return;
    }
    let start = from;
    let index = 0;
    do {
      const budget = this.#budget();
      const puts: MirrorPut[] = [];
      let bytes = 0;
      while (index < page.kvs.length) {
        const kv = page.kvs[index];
        assert(kv !== undefined, 'index within the page');
        const cost = kv.key.byteLength + kv.value.byteLength + PUT_OVERHEAD_BYTES;
        if (puts.length > 0 && bytes + cost > budget) break;
        puts.push(kv);
        bytes += cost;
        index += 1;
      }
      const last = puts[puts.length - 1];
      const scanEnds = index === page.kvs.length && !page.more;
      const end = scanEnds || last === undefined ? this.#range.rangeEnd : keyAfter(last.key);
      if (scan.deleteMissing) await this.#deleteMissing({ key: start, rangeEnd: end }, puts, scan.revision);
      const current = this.#current();
      assert(current.scan !== null, 'still scanning');
      const nowMs = this.#now();
      const next: CopyState = scanEnds
        ? {
            ...current,
            phase: 'tailing',
            scan: null,
            appliedRevision: scan.revision,
            sourceRevisionSeen: Math.max(current.sourceRevisionSeen, scan.revision),
            leasedPuts: current.leasedPuts + leased(puts),
            updatedAtMs: nowMs,
            ...(scan.pin === undefined ? {} : { appliedIndex: scan.pin.index }),
          }
        : {
            ...current,
            scan: {
              ...current.scan,
              nextKey: base64(end.subarray(0, STATE_KEY_BYTES_MAX)),
              keysCopied: current.scan.keysCopied + puts.length,
              bytesCopied: current.scan.bytesCopied + bytes,
            },
            leasedPuts: current.leasedPuts + leased(puts),
            updatedAtMs: nowMs,
          };
      await this.#apply(next, scan.revision, puts, []);
      if (scanEnds && this.#pin !== undefined && this.#log !== undefined) {
        void this.#log.release(this.#pin);
        this.#pin = undefined;
      }
      this.#scanFrom = scanEnds ? undefined : end;
      this.#options.onEvent?.({ kind: scanEnds ? 'scan-done' : 'scanned', state: next });
      start = end;
    } while (index < page.kvs.length);
  }

  /** #rescan starts the scan again at the source's current revision, deleting what the source no longer holds. */
  async #rescan(cause: StrataError): Promise<void> {
    const { signal } = this.#options;
    const head = await this.#retrying('read the source', () => this.#head(signal));
    if (this.#pin !== undefined && this.#log !== undefined) void this.#log.release(this.#pin);
    const pin = this.#log === undefined ? undefined : await this.#retrying('pin a view of the source', () => (this.#log as LogCopySource).pin(signal));
    this.#pin = pin;
    const scanRevision = pin?.revision ?? head.revision;
    const keysTotal = await this.#retrying('count the source', () => this.#count(scanRevision, signal));
    const current = this.#current();
    const nowMs = this.#now();
    const next: CopyState = {
      ...current,
      phase: 'copying',
      scan: this.#newScan(scanRevision, keysTotal, true, nowMs, pin),
      sourceRevisionSeen: Math.max(current.sourceRevisionSeen, scanRevision),
      rescans: current.rescans + 1,
      updatedAtMs: nowMs,
    };
    // The revision stays: the re-scan moves it to head.revision with its first batch.
    await this.#apply(next, this.#targetRevision, [], []);
    this.#scanFrom = undefined;
    const compactRevision = typeof cause.details['compactRevision'] === 'number' ? cause.details['compactRevision'] : 0;
    this.#options.onEvent?.({ kind: 'rescan', state: next, compactRevision, reason: cause.message });
  }

  /** #deleteMissing deletes the target's keys in `range` that are not among `keep` (a re-scan's page). */
  async #deleteMissing(range: KeyRange, keep: readonly MirrorPut[], revision: number): Promise<void> {
    const { signal } = this.#options;
    const kept = new Set(keep.map((kv) => base64(kv.key)));
    let from = range.key;
    for (let pageCount = 0; pageCount < DELETE_PAGES_MAX; pageCount += 1) {
      const page = await this.#retrying('read a page of the target', () => this.#target.page({ key: from, rangeEnd: range.rangeEnd }, this.#pageKeys, { keysOnly: true, signal }));
      const deletes = page.kvs.map((kv) => kv.key).filter((key) => !kept.has(base64(key)));
      if (deletes.length > 0) {
        // The state is unchanged: deleting is idempotent, so a batch sent twice is harmless.
        await this.#apply(this.#current(), Math.max(this.#targetRevision, revision), [], deletes);
      }
      const last = page.kvs[page.kvs.length - 1];
      if (!page.more || last === undefined) return;
      from = keyAfter(last.key);
    }
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `deleting the target's keys missing from the source took over ${DELETE_PAGES_MAX} pages`);
  }

  // ---- the tail ----

  /** #tail follows the source until stopped (false), caught up when asked (true), or a compaction forced a re-scan (false). */
  async #tail(): Promise<boolean> {
    const { signal } = this.#options;
    let failures = 0;
    for (;;) {
      if (signal.aborted) return false;
      const state = this.#current();
      // `switching`: a switch's own catch-up (the copy it took over).
      assert(state.phase === 'tailing' || state.phase === 'switching', 'tail only after the scan');
      const source = this.#source;
      assert(source !== undefined, 'an etcd tail has an etcd source');
      const tail = source.tail(this.#range, state.appliedRevision + 1, signal);
      // Progress is asked for only while no events come: under a write load the events move
      // the revision, and every progress mark past them costs the source a range read.
      const intervalMs = this.#options.progressIntervalMs ?? PROGRESS_INTERVAL_MS;
      this.#lastEventAtMs = 0;
      const progressTimer = setInterval(() => {
        if (performance.now() - this.#lastEventAtMs >= intervalMs) tail.requestProgress();
      }, intervalMs);
      const before = state.appliedRevision;
      try {
        tail.requestProgress();
        const caughtUp = await this.#follow(tail);
        if (caughtUp) return true;
        if (signal.aborted) return false;
      } catch (error) {
        if (signal.aborted) return false;
        if (isStrataError(error, ErrorCode.COMPACTED)) {
          await this.#rescan(error);
          return false;
        }
        if (!isStrataError(error) || !RETRYABLE.has(error.code)) throw error;
        failures = this.#current().appliedRevision > before ? 1 : failures + 1;
        if (failures > RECONNECTS_MAX) {
          throw new StrataError(ErrorCode.UNAVAILABLE, `the source's change stream failed ${failures} times in a row without progress (last: ${error.message})`, { cause: error });
        }
        this.#options.onEvent?.({ kind: 'retry', what: 'follow the source', error, attempt: failures });
        await pauseOrAbort(retryPauseMs(failures), signal);
      } finally {
        clearInterval(progressTimer);
        tail.close();
      }
    }
  }

  /**
   * #follow applies the tail. A pump reads the stream into a bounded queue while a batch is
   * being written, and each write takes every event queued by then (group commit): under a
   * write load one mirror request carries what arrived during the last one's round trip,
   * instead of one request per watch response, which fell behind (lag of seconds, bench).
   */
  async #follow(tail: SourceTail): Promise<boolean> {
    const pump = new ReadAhead(tail, TAIL_QUEUE_BATCHES_MAX);
    // The highest progress mark received on this stream.
    let progressSeen = 0;
    try {
      for (;;) {
        if (this.#options.signal.aborted) return false;
        const batch = await pump.next();
        if (batch.kind === 'progress') {
          progressSeen = Math.max(progressSeen, batch.revision);
          if (await this.#progress(batch.revision)) return true;
          continue;
        }
        // This batch and every events batch queued behind it, in one go.
        const events = [...batch.events];
        for (const next of pump.takeWhile((queued) => queued.kind === 'events')) if (next.kind === 'events') events.push(...next.events);
        this.#lastEventAtMs = performance.now();
        // Events a proven progress mark already covered are in the target: skip them.
        const applied = this.#current().appliedRevision;
        const fresh = events.filter((event) => event.kv.modRevision > applied);
        if (fresh.length > 0) await this.#applyEvents(fresh);
        if (this.#options.stopWhenCaughtUp === true) {
          // Events come in revision order: once they reach a progress mark's revision, the
          // target holds what the source held at that mark (a switch's catch-up waits on this,
          // not on the next mark, which etcd may answer before the events: etcd#15220).
          if (progressSeen > 0 && this.#current().appliedRevision >= progressSeen) return true;
          tail.requestProgress();
        }
      }
    } finally {
      tail.close();
      pump.close();
    }
  }

  /** #progress takes a progress mark; true when the copier was asked to stop once caught up and is. */
  async #progress(revision: number): Promise<boolean> {
    const state = this.#current();
    const nowMs = this.#now();
    if (revision > state.appliedRevision) {
      if (await this.#provenAt(revision)) {
        // The target holds what the source held at `revision`: its revision follows the source's.
        await this.#apply({ ...state, appliedRevision: revision, sourceRevisionSeen: Math.max(state.sourceRevisionSeen, revision), caughtUpAtMs: nowMs, updatedAtMs: nowMs }, revision, [], []);
      }
    } else if (revision === state.appliedRevision && state.caughtUpAtMs < nowMs - (this.#options.progressIntervalMs ?? PROGRESS_INTERVAL_MS)) {
      // Record that the copier was caught up now (status's lag in seconds), at most once an interval.
      await this.#apply({ ...state, sourceRevisionSeen: Math.max(state.sourceRevisionSeen, revision), caughtUpAtMs: nowMs, updatedAtMs: nowMs }, revision, [], []);
    }
    return this.#options.stopWhenCaughtUp === true && revision <= this.#current().appliedRevision;
  }

  /**
   * #provenAt tells whether the target holds exactly what the source held at `revision`. A
   * progress mark alone does not say so: etcd 3.4 answers a progress request with its current
   * revision even while events before it are still on their way (etcd#15220). The proof: no
   * key in range live at `revision` was written after the applied revision, and the source
   * holds as many keys in range at `revision` as the target does. Then every source key at
   * `revision` is in the target unchanged, and the counts leave no room for another.
   */
  async #provenAt(revision: number): Promise<boolean> {
    if (revision === this.#unprovenProgress) return false;
    const { signal } = this.#options;
    const applied = this.#current().appliedRevision;
    const etcd = this.#source;
    assert(etcd !== undefined, 'progress marks come from an etcd source');
    const source = await this.#retrying('check the source', () => etcd.changedSince(this.#range, applied, revision, signal));
    if (source.changed) {
      this.#unprovenProgress = revision;
      return false;
    }
    const targetCount = await this.#retrying('count the target', () => this.#target.count(this.#range, signal));
    if (targetCount !== source.count) {
      this.#unprovenProgress = revision;
      return false;
    }
    return true;
  }

  /** #applyEvents applies whole revisions, as many per request as fit. */
  async #applyEvents(events: readonly SourceEvent[]): Promise<void> {
    let index = 0;
    while (index < events.length) {
      const budget = this.#budget();
      const puts: MirrorPut[] = [];
      const deletes: Uint8Array[] = [];
      let bytes = 0;
      let revisions = 0;
      let revision = this.#current().appliedRevision;
      let count = 0;
      while (index < events.length) {
        // One revision: the events that share its mod revision.
        const first = events[index];
        assert(first !== undefined, 'index within the events');
        const revisionOf = first.kv.modRevision;
        let end = index;
        let cost = 0;
        while (end < events.length && events[end]?.kv.modRevision === revisionOf) {
          const event = events[end];
          assert(event !== undefined, 'end within the events');
          cost += event.kv.key.byteLength + (event.type === 'put' ? event.kv.value.byteLength : 0) + PUT_OVERHEAD_BYTES;
          end += 1;
        }
        if (revisions > 0 && bytes + cost > budget) break;
        if (revisionOf <= revision) {
          throw new StrataError(ErrorCode.CORRUPTION, `the source sent revision ${revisionOf} after ${revision}: its changes must come in revision order`, { details: { check: 'source-order' } });
        }
        for (let at = index; at < end; at += 1) {
          const event = events[at];
          assert(event !== undefined, 'at within the events');
          // A later event of the same key in this batch replaces an earlier one (a key deleted
          // and put again in two revisions of one request).
          removeKey(puts, deletes, event.kv.key);
          if (event.type === 'put') puts.push(event.kv);
          else deletes.push(event.kv.key);
        }
        bytes += cost;
        revisions += 1;
        count += end - index;
        revision = revisionOf;
        index = end;
      }
      const state = this.#current();
      const nowMs = this.#now();
      const next: CopyState = {
        ...state,
        appliedRevision: revision,
        sourceRevisionSeen: Math.max(state.sourceRevisionSeen, revision),
        leasedPuts: state.leasedPuts + leased(puts),
        updatedAtMs: nowMs,
      };
      await this.#apply(next, revision, puts, deletes);
      this.#options.onEvent?.({ kind: 'applied', state: next, revisions, events: count });
    }
  }

  // ---- the tail of a stratakv source: its log, replayed ----

  #appliedIndex(): number {
    return this.#current().appliedIndex ?? 0;
  }

  /**
   * #tailLog follows a stratakv source's log from the applied index on, replaying its KV
   * commands on the target. It returns why the copier stops, or undefined after a re-scan
   * began (the log no longer held the copier's index).
   */
  async #tailLog(log: LogCopySource): Promise<CopyResult['reason'] | undefined> {
    // The source keeps its log from the copier's position while it runs (and for a while after):
    // a copier restarted soon resumes without a re-scan.
    const holder = holdLogWhile(log, logHoldConsumer('copy', this.#current().copyId), () => this.#appliedIndex() + 1, (error) => this.#options.onEvent?.({ kind: 'retry', what: 'hold the source\'s log', error, attempt: 1 }));
    try {
      return await this.#tailLogHeld(log);
    } finally {
      holder.stop();
    }
  }

  async #tailLogHeld(log: LogCopySource): Promise<CopyResult['reason'] | undefined> {
    const { signal } = this.#options;
    let failures = 0;
    for (;;) {
      if (signal.aborted) return 'stopped';
      const before = this.#appliedIndex();
      // The copy reached the source's fence: nothing after it may be replayed.
      if (this.#current().sourceFencedAt !== undefined) return 'source-fenced';
      if (this.#options.stopAtIndex !== undefined && before >= this.#options.stopAtIndex) return 'at-index';
      // The stream is closed when this attempt ends, whichever way.
      const stream = new AbortController();
      const onAbort = (): void => stream.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        const reason = await this.#followLog(log.follow(before + 1, stream.signal));
        if (reason !== undefined) return reason;
      } catch (error) {
        if (signal.aborted) return 'stopped';
        if (this.#stopReason !== undefined) return this.#stopReason;
        if (isStrataError(error, ErrorCode.COMPACTED)) {
          await this.#rescan(error);
          return undefined;
        }
        if (!isStrataError(error) || !RETRYABLE.has(error.code)) throw error;
        failures = this.#appliedIndex() > before ? 1 : failures + 1;
        if (failures > RECONNECTS_MAX) {
          throw new StrataError(ErrorCode.UNAVAILABLE, `the source's log stream failed ${failures} times in a row without progress (last: ${error.message})`, { cause: error });
        }
        this.#options.onEvent?.({ kind: 'retry', what: 'follow the source\'s log', error, attempt: failures });
        await pauseOrAbort(retryPauseMs(failures), signal);
      } finally {
        stream.abort();
        signal.removeEventListener('abort', onAbort);
      }
    }
  }

  /**
   * #followLog replays one log stream. As the etcd tail does, a pump reads ahead into a
   * bounded queue while a batch is written, and each write takes the KV commands of every
   * entry queued by then (group commit), cut at the target's request limit, at a checkpoint
   * a verify asked for (the target's view is pinned there), and at stopAtIndex.
   */
  async #followLog(batches: AsyncIterable<LogBatch>): Promise<CopyResult['reason'] | undefined> {
    const pump = new ReadAhead(batches, TAIL_QUEUE_BATCHES_MAX);
    const intervalMs = this.#options.progressIntervalMs ?? PROGRESS_INTERVAL_MS;
    const commands: Uint8Array[] = [];
    let commandBytes = 0;
    let consumed = this.#appliedIndex();
    let commitSeen = Math.max(this.#current().commitIndexSeen ?? 0, consumed);
    const flush = async (caughtUp: boolean, fencedAt?: number): Promise<void> => {
      const state = this.#current();
      if (commands.length === 0 && consumed === this.#appliedIndex() && !caughtUp && fencedAt === undefined) return;
      const nowMs = this.#now();
      const next: CopyState = {
        ...state,
        ...(fencedAt === undefined ? {} : { sourceFencedAt: fencedAt }),
        appliedIndex: consumed,
        commitIndexSeen: Math.max(commitSeen, consumed),
        // The revision before this batch: its own commands move the target's further (the target's revision is the source's).
        appliedRevision: this.#targetRevision,
        sourceRevisionSeen: Math.max(state.sourceRevisionSeen, this.#targetRevision),
        caughtUpAtMs: caughtUp ? nowMs : state.caughtUpAtMs,
        updatedAtMs: nowMs,
      };
      const count = commands.length;
      await this.#replay(next, commands.splice(0));
      commandBytes = 0;
      this.#options.onEvent?.({ kind: 'applied', state: this.#current(), revisions: count, events: count });
    };
    try {
      for (;;) {
        if (this.#options.signal.aborted) return 'stopped';
        const first = await pump.next();
        for (const batch of [first, ...pump.drain()]) {
          commitSeen = Math.max(commitSeen, batch.commitIndex);
          if (batch.kind === 'idle') continue;
          for (const entry of batch.entries) {
            if (entry.index <= consumed) continue;
            if (entry.index !== consumed + 1) {
              throw new StrataError(ErrorCode.CORRUPTION, `the source's log stream sent entry ${entry.index} after ${consumed}`, { details: { check: 'source-order' } });
            }
            const kind = classify(entry);
            if (kind === 'command') {
              const cost = entry.data.byteLength + REPLAY_COMMAND_OVERHEAD_BYTES;
              if (commands.length > 0 && (commandBytes + cost > this.#budget() || commands.length >= REPLAY_COMMANDS_MAX)) await flush(false);
              commands.push(entry.data);
              commandBytes += cost;
            }
            consumed = entry.index;
            if (kind === 'fence') {
              await flush(false, consumed);
              return 'source-fenced';
            }
            if (kind === 'verify-checkpoint') {
              await flush(false);
              await this.#pinForVerify(consumed);
            }
            if (this.#options.stopAtIndex !== undefined && consumed >= this.#options.stopAtIndex) {
              await flush(false);
              return 'at-index';
            }
          }
        }
        const caughtUp = pump.queued() === 0 && consumed >= commitSeen;
        // Write now: commands waiting, or (idle) the index moved past entries with none, or a
        // caught-up mark, at most once an interval.
        const sinceMs = this.#now() - this.#current().updatedAtMs;
        if (commands.length > 0 || ((consumed > this.#appliedIndex() || caughtUp) && sinceMs >= intervalMs)) await flush(caughtUp);
        if (caughtUp && this.#options.stopWhenCaughtUp === true) {
          await flush(true);
          return 'caught-up';
        }
      }
    } finally {
      pump.close();
    }
  }

  /** #replay sends one mirrorReplay: the source's commands and the next state, compare-and-set on the last. */
  async #replay(next: CopyState, commands: readonly Uint8Array[]): Promise<void> {
    const expect = this.#stateBytes;
    assert(expect !== undefined, 'replay after begin');
    const bytes = encodeCopyState(next);
    await this.#commit(next, bytes, () => ({ type: 'mirrorReplay', expectState: expect, state: bytes, commands }), expect);
  }

  /**
   * #pinForVerify pins the target's view where the source's checkpoint `sourceIndex` was
   * replayed and records it in the state, for `copy verify` to diff against the source's view
   * pinned at that checkpoint. The copier holds until then, so the target's state is the
   * source's at the checkpoint: a member whose revision is the copier's last answer's has
   * applied every batch (each batch that changes data moves the revision).
   */
  async #pinForVerify(sourceIndex: number): Promise<void> {
    const { signal } = this.#options;
    for (let attempt = 1; attempt <= VERIFY_PIN_ATTEMPTS_MAX; attempt += 1) {
      let pin: PinnedSourceView;
      try {
        pin = await this.#target.pin(signal);
      } catch (error) {
        if (!isStrataError(error) || !RETRYABLE.has(error.code)) throw error;
        this.#options.onEvent?.({ kind: 'retry', what: 'pin the target for verify', error, attempt });
        await pauseOrAbort(VERIFY_PIN_PAUSE_MS, signal);
        continue;
      }
      if (pin.revision !== this.#targetRevision) {
        await this.#target.release(pin);
        await pauseOrAbort(VERIFY_PIN_PAUSE_MS, signal);
        continue;
      }
      const state = this.#current();
      const nowMs = this.#now();
      const verifyPins = [...(state.verifyPins ?? []), { sourceIndex, endpoint: pin.endpoint, pinId: pin.pinId, revision: pin.revision, atMs: nowMs }].slice(-VERIFY_PINS_MAX);
      await this.#replay({ ...state, verifyPins, updatedAtMs: nowMs }, []);
      return;
    }
    // Verify then times out waiting for the pin and says so; the copy itself goes on.
    this.#options.onEvent?.({ kind: 'retry', what: `pin the target at source checkpoint ${sourceIndex} (gave up)`, error: new StrataError(ErrorCode.UNAVAILABLE, 'no target member reached the copier\'s revision'), attempt: VERIFY_PIN_ATTEMPTS_MAX });
  }

  // ---- writing to the target ----

  #budget(): number {
    return Math.max(1, this.#target.requestBytesMax - 2 * (this.#stateBytes?.byteLength ?? 0) - REQUEST_OVERHEAD_BYTES);
  }

  async #apply(next: CopyState, revision: number, puts: readonly MirrorPut[], deletes: readonly Uint8Array[]): Promise<void> {
    const expect = this.#stateBytes;
    assert(expect !== undefined, 'apply after begin');
    const bytes = encodeCopyState(next);
    await this.#commit(next, bytes, () => ({ type: 'mirrorApply', expectState: expect, state: bytes, revision, puts, deletes }), expect);
  }

  /**
   * #commit sends one mirror request until its outcome is known (see the file comment);
   * `expect` is the state it replaces (undefined: a begin).
   */
  async #commit(next: CopyState, bytes: Uint8Array, request: () => MirrorRequest, expect: Uint8Array | undefined): Promise<void> {
    // The stop signal is not passed on: a batch once sent is seen through to a known outcome
    // (bounded by the attempts), so a stopped copier leaves no batch in doubt behind it.
    const signal = NEVER_ABORTED;
    let lastError: StrataError | undefined;
    for (let attempt = 1; attempt <= COMMIT_ATTEMPTS_MAX; attempt += 1) {
      try {
        const answer = await this.#target.mirror(request());
        this.#state = next;
        this.#stateBytes = bytes;
        this.#targetRevision = answer.revision;
        return;
      } catch (error) {
        if (!isStrataError(error) || (!RETRYABLE.has(error.code) && error.code !== ErrorCode.MIRROR_CONFLICT)) throw error;
        lastError = error;
        const view = await this.#retrying('read the target', () => this.#target.read(signal), signal);
        // A batch whose state does not change (deletes only) cannot be told landed from not:
        // it is sent again, which is harmless because deleting is idempotent.
        if (sameBytes(view.state, bytes) && (expect === undefined || !sameBytes(expect, bytes))) {
          this.#state = next;
          this.#stateBytes = bytes;
          this.#targetRevision = view.revision;
          return;
        }
        if (!sameBytes(view.state, expect)) {
          if (view.state !== undefined && tookOver(view.state, this.#current().copyId)) {
            this.#stopReason = 'switched';
            throw conflict('a `copy switch` took the copy over: this copier steps aside');
          }
          if (error.code === ErrorCode.MIRROR_CONFLICT) throw error;
          throw conflict(`the target's mirror state changed under this copier (another copier, or \`copy cancel\`): ${view.state === undefined ? 'it has none now' : 'it holds another'}`);
        }
        if (error.code === ErrorCode.MIRROR_CONFLICT) throw error;
        this.#options.onEvent?.({ kind: 'retry', what: request().type, error, attempt });
        await pauseOrAbort(retryPauseMs(attempt), signal);
      }
    }
    throw new StrataError(ErrorCode.UNAVAILABLE, `the target did not take a ${request().type} in ${COMMIT_ATTEMPTS_MAX} attempts (last: ${lastError?.message ?? 'none'})`, { cause: lastError });
  }

  /** #retrying runs a read again while its failure is one a retry can cure, bounded. */
  async #retrying<T>(what: string, call: () => Promise<T>, signal: AbortSignal = this.#options.signal): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await call();
      } catch (error) {
        if (!isStrataError(error) || !RETRYABLE.has(error.code) || attempt >= COMMIT_ATTEMPTS_MAX || signal.aborted) throw error;
        this.#options.onEvent?.({ kind: 'retry', what, error, attempt });
        await pauseOrAbort(retryPauseMs(attempt), signal);
      }
    }
  }
}

// What a replayed command adds to a mirrorReplay beyond its bytes (its length prefix; conservative).
const REPLAY_COMMAND_OVERHEAD_BYTES = 8;
/** REPLAY_COMMANDS_MAX bounds the commands of one mirrorReplay (the target's MIRROR_REPLAY_COMMANDS_MAX). */
export const REPLAY_COMMANDS_MAX = 10_000;
// Bounds the attempts to pin the target where a verify's checkpoint was replayed.
const VERIFY_PIN_ATTEMPTS_MAX = 50;
const VERIFY_PIN_PAUSE_MS = 100;

/**
 * classify says what the copier does with a source entry: replay a KV command; pin the target
 * at a checkpoint that asked for pins (a verify's); stop at the source's fence; skip anything
 * else (empty entries, membership changes, the cluster's own commands, and the source's other
 * mirror commands).
 */
export function classify(entry: LogEntry): 'command' | 'verify-checkpoint' | 'fence' | 'skip' {
  if (!entry.normal || entry.data.byteLength === 0) return 'skip';
  if (isCheckpointEntry(entry.data)) return decodeCheckpoint(entry.data).pin ? 'verify-checkpoint' : 'skip';
  if (!isKvCommand(entry.data)) return 'skip';
  const type = kvCommandType(entry.data);
  // The source's mirrorBegin is a switch's fence: the source refuses client writes from there
  // on, and those refused commands must not be replayed (here they would apply).
  if (type === 'mirrorBegin') return 'fence';
  return type.startsWith('mirror') ? 'skip' : 'command';
}

/**
 * ReadAhead reads an async iterable into a bounded queue ahead of its consumer: next() waits
 * for one item, drain() takes what else is queued; the source's error (or end, as UNAVAILABLE)
 * comes out of next() once the queue is empty.
 */
class ReadAhead<T> {
  readonly #queue: T[] = [];
  readonly #iterator: AsyncIterator<T>;
  #ended: { readonly error: unknown } | undefined;
  #wakeConsumer: (() => void) | undefined;
  #wakeReader: (() => void) | undefined;
  #closed = false;
  readonly #reading: Promise<void>;
  readonly max: number;

  constructor(source: AsyncIterable<T>, max: number) {
    this.max = max;
    this.#iterator = source[Symbol.asyncIterator]();
    this.#reading = this.#read();
  }

  async #read(): Promise<void> {
    try {
      for (;;) {
        while (this.#queue.length >= this.max && !this.#closed) await new Promise<void>((resolve) => (this.#wakeReader = resolve));
        if (this.#closed) break;
        const step = await this.#iterator.next();
        if (step.done === true) {
          this.#ended = { error: new StrataError(ErrorCode.UNAVAILABLE, 'the source\'s change stream ended') };
          break;
        }
        this.#queue.push(step.value);
        this.#wakeConsumer?.();
      }
    } catch (error) {
      this.#ended = { error };
    }
    this.#ended ??= { error: new StrataError(ErrorCode.CANCELED, 'the stream was closed') };
    this.#wakeConsumer?.();
  }

  async next(): Promise<T> {
    for (;;) {
      const item = this.#queue.shift();
      if (item !== undefined) {
        this.#wakeReader?.();
        return item;
      }
      if (this.#ended !== undefined) throw this.#ended.error;
      await new Promise<void>((resolve) => (this.#wakeConsumer = resolve));
      this.#wakeConsumer = undefined;
    }
  }

  drain(): T[] {
    return this.takeWhile(() => true);
  }

  /** takeWhile takes the queued items from the front while `wanted` says so. */
  takeWhile(wanted: (item: T) => boolean): T[] {
    let count = 0;
    while (count < this.#queue.length && wanted(this.#queue[count] as T)) count += 1;
    const items = this.#queue.splice(0, count);
    this.#wakeReader?.();
    return items;
  }

  queued(): number {
    return this.#queue.length;
  }

  /** close stops reading; the caller ends the source (its signal) so a read in progress returns. */
  close(): void {
    this.#closed = true;
    this.#wakeReader?.();
    void this.#reading.then(() => this.#iterator.return?.()).catch(() => undefined);
  }
}

/** RETRYABLE: failures that say nothing about the request's effect and may pass: the copier (and a switch) retries them. */
export const RETRYABLE: ReadonlySet<string> = new Set([ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.NO_LEADER, ErrorCode.LEADER_CHANGED, ErrorCode.NOT_LEADER, ErrorCode.STOPPED, ErrorCode.MEMBER_REMOVED]);
const NEVER_ABORTED = new AbortController().signal;
// Bounds the pages one batch's missing-key check reads (each PAGE_KEYS keys).
const DELETE_PAGES_MAX = 100_000;

function removeKey(puts: MirrorPut[], deletes: Uint8Array[], key: Uint8Array): void {
  const at = puts.findIndex((kv) => sameBytes(kv.key, key));
  if (at !== -1) puts.splice(at, 1);
  const deleteAt = deletes.findIndex((other) => sameBytes(other, key));
  if (deleteAt !== -1) deletes.splice(deleteAt, 1);
}

function leased(puts: readonly MirrorPut[]): number {
  let count = 0;
  for (const kv of puts) if (kv.lease !== 0n) count += 1;
  return count;
}

/** keyAfter is the smallest key greater than `key` (key + "\0"). */
export function keyAfter(key: Uint8Array): Uint8Array {
  const next = new Uint8Array(key.byteLength + 1);
  next.set(key);
  return next;
}


/** base64 and fromBase64 carry keys in the JSON state. */
export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** pinOf keeps what the state records of a pinned view. */
function pinOf(pin: PinnedSourceView): PinnedSourceView {
  return { endpoint: pin.endpoint, pinId: pin.pinId, index: pin.index, revision: pin.revision };
}

/** tookOver tells whether `state` is this copy taken over by a switch (or ended by one). */
function tookOver(state: Uint8Array, copyId: string): boolean {
  try {
    const decoded = decodeCopyState(state);
    return decoded.copyId === copyId && decoded.phase !== 'copying' && decoded.phase !== 'tailing';
  } catch {
    return false;
  }
}

/** describePhase says in words where a copy stands. */
export function describePhase(state: CopyState): string {
  switch (state.phase) {
    case 'copying':
      return 'copying (scanning the source)';
    case 'tailing':
      return 'following the source';
    case 'switching':
      return 'being switched over by `copy switch`';
    case 'fenced':
      return 'fenced by a switch (read-only while the switch finishes)';
    case 'completed':
      return 'completed (`copy complete`: no copier resumes it)';
    default:
      return String(state.phase);
  }
}

function describePrefix(prefix: string | null): string {
  return prefix === null ? 'every key' : `prefix ${JSON.stringify(Buffer.from(prefix, 'base64').toString('utf8'))}`;
}

function conflict(message: string): StrataError {
  return new StrataError(ErrorCode.MIRROR_CONFLICT, message);
}

function retryPauseMs(attempt: number): number {
  return Math.min(RETRY_PAUSE_MS_MAX, 100 * 2 ** Math.min(10, attempt - 1));
}


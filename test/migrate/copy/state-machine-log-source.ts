// A LogCopySource over one real KvStateMachine (memory-level), without Raft or gRPC: the test
// drives the "source cluster" by appending entries to an in-memory log, each applied to the
// state machine at once, as a member applies what it committed. The copier's tests use it to
// run a stratakv copy against the real apply path (the target replays the very entries this
// log holds) with faults of their own: a log compacted past the copier, pinned views lost
// mid-scan, a log stream that breaks.
//
// The log and the state machine move together: an entry is in the log exactly when it is
// applied. Invariant: kv.appliedIndex() === lastIndex, and the log holds [firstIndex, lastIndex].
// Every apply and every view opened goes through one queue (#serially), so a view is pinned
// between two applies and a checkpoint's view is exactly the state at its entry.
//
// Log holds: hold() appends a logHold node command to the log (as a real member proposes one:
// a follow sees it, and a copier must skip it) and applies it to the real LogHolds table, by
// the wall clock the test gives (`wallClockMs`, Date.now by default). compact() then agrees with
// a real member's snapshotter: it never drops entries at or past an unexpired hold's index
// (that is, it stops at the lowest such index - 1, and answers where it stopped), unless asked
// to compact `pastHolds`: what a member whose log from the hold's index on is over
// compactionLogBytesMax does (the twin keeps no byte counts, so the test says when). A hold at
// an index compacted already keeps nothing, as on a member.

import { encodeCheckpoint } from '../../../src/node/integrity-checks.ts';
import { encodeNodeCommand } from '../../../src/node/node-command.ts';
import type { LogHold } from '../../../src/node/log-holds.ts';
import { checkLogHoldRequest, LogHolds, tooManyLogHolds } from '../../../src/node/log-holds.ts';
import { encodeConfChange, EntryType, type Entry } from '../../../src/raft/index.ts';
import { DIGEST_VIEW_RANGE_LIMIT_MAX, encodeKvCommand, openMemoryKvStateMachine } from '../../../src/storage/index.ts';
import type { ApplyResult, DigestAt, DigestView, KvRequest, KvResponse, KvStateMachine } from '../../../src/storage/index.ts';
import type { KeyRange, LogBatch, LogCopySource, LogEntry, LogSourceHead, PinnedSourceView, SourcePage } from '../../../src/migrate/copy/index.ts';
import { assert } from '../../../src/util/assert.ts';
import { ErrorCode, StrataError } from '../../../src/util/errors.ts';
import { SeededRandom } from '../../../src/util/random.ts';

/** LOG_SOURCE_ENDPOINT is the one "member" every pin of this source lives on. */
export const LOG_SOURCE_ENDPOINT = 'state-machine-source';
/** LOG_SOURCE_CLUSTER_ID is the source's cluster id unless the test gives another. */
export const LOG_SOURCE_CLUSTER_ID = '5a17c0de0f5eed01';
/** FOLLOW_BATCH_ENTRIES_MAX bounds the entries of one batch a follow yields (sizes are seeded in 1..max). */
export const FOLLOW_BATCH_ENTRIES_MAX = 48;
/** FOLLOW_IDLE_MS is how long a caught-up follow waits for a new entry before it yields an idle batch. */
export const FOLLOW_IDLE_MS = 10;
/** APPEND_ENTRIES_MAX bounds the entries of one appendMany (one apply call). */
export const APPEND_ENTRIES_MAX = 4_096;

/** NoiseKind is an entry that carries no KV command: what a real log holds between commands. */
export type NoiseKind = 'empty' | 'conf-change' | 'node-command' | 'checkpoint';

/** SourceWrite is what applying one command on the source did: its answer, or its refusal. */
export interface SourceWrite {
  readonly index: number;
  readonly response?: KvResponse;
  readonly error?: StrataError;
}

/** SourceCheckpoint is a pinned checkpoint: the pin (as the copier's verify gets it) and the digest its apply reported. */
export interface SourceCheckpoint {
  readonly pin: PinnedSourceView;
  readonly digestAt: DigestAt;
}

interface HeldView {
  readonly view: DigestView;
  // Reads in flight: a view dropped or released is closed only once they ended.
  readonly reads: Set<Promise<unknown>>;
}

/** StateMachineLogSource is the LogCopySource over a KvStateMachine driven by the test; see the file comment. */
export class StateMachineLogSource implements LogCopySource {
  readonly kv: KvStateMachine;
  readonly clusterId: string;
  /** Log streams opened by follow() (each attempt of the copier's tail opens one). */
  streamsOpened = 0;
  /** Scans answered COMPACTED because their pin was gone. */
  scansRefused = 0;
  readonly #random: SeededRandom;
  // Entries [#firstIndex, #lastIndex]: #log[i] has index #firstIndex + i.
  #log: LogEntry[] = [];
  #firstIndex = 1;
  #lastIndex = 0;
  #nextCommandId = 1;
  #nextPinId = 1;
  #nextNonce = 1;
  readonly #views = new Map<string, HeldView>();
  readonly #checkpoints = new Map<string, DigestAt>();
  // Follows waiting for an entry past the last one.
  readonly #waiters = new Set<() => void>();
  // The next stream fails UNAVAILABLE after this many batches (breakStreamAfter).
  #breakAfterBatches: number | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  // The log holds applied (hold()), as a member keeps them; they expire by #wallClockMs.
  readonly #holds = new LogHolds();
  readonly #wallClockMs: () => number;
  /** Holds applied by hold() (releases included). */
  holdsApplied = 0;

  private constructor(kv: KvStateMachine, seed: number, clusterId: string, wallClockMs: () => number) {
    this.kv = kv;
    this.#random = new SeededRandom(seed);
    this.clusterId = clusterId;
    this.#wallClockMs = wallClockMs;
  }

  /** open makes a source; `wallClockMs` is the clock log holds expire by (default Date.now). */
  static async open(options: { readonly seed: number; readonly clusterId?: string; readonly wallClockMs?: () => number }): Promise<StateMachineLogSource> {
    const clusterId = options.clusterId ?? LOG_SOURCE_CLUSTER_ID;
    assert(/^[0-9a-f]+$/.test(clusterId), 'a cluster id is hex');
    return new StateMachineLogSource(await openMemoryKvStateMachine(), options.seed, clusterId, options.wallClockMs ?? (() => Date.now()));
  }

  /** firstIndex is the first entry the log still holds (lastIndex + 1 when empty). */
  get firstIndex(): number {
    return this.#firstIndex;
  }

  get lastIndex(): number {
    return this.#lastIndex;
  }

  // ---- driving the source ----

  /** write applies one client command (a Normal entry at the next index) and says what it did. */
  write(request: KvRequest): Promise<SourceWrite> {
    return this.#serially(async () => {
      const [written] = await this.#append([{ type: EntryType.Normal, data: encodeKvCommand({ id: this.#nextCommandId++, request }) }]);
      assert(written !== undefined, 'one command, one result');
      return written;
    });
  }

  /** writeMany applies several client commands as one batch (a preload), in order. */
  writeMany(requests: readonly KvRequest[]): Promise<SourceWrite[]> {
    assert(requests.length > 0 && requests.length <= APPEND_ENTRIES_MAX, `writeMany takes 1..${APPEND_ENTRIES_MAX} commands`);
    return this.#serially(async () => await this.#append(requests.map((request) => ({ type: EntryType.Normal, data: encodeKvCommand({ id: this.#nextCommandId++, request }) }))));
  }

  /**
   * appendNoise appends an entry without a KV command: an empty entry (a new leader's), a
   * membership change (its JSON data starts with '{', which isKvCommand does not rule out:
   * only `normal: false` tells a copier not to replay it), a member's publish, or an
   * integrity checkpoint that asks for no pins.
   */
  appendNoise(kind: NoiseKind): Promise<number> {
    return this.#serially(async () => {
      const entry = ((): { type: EntryType; data: Uint8Array } => {
        switch (kind) {
          case 'empty':
            return { type: EntryType.Normal, data: new Uint8Array(0) };
          case 'conf-change':
            return { type: EntryType.ConfChange, data: encodeConfChange({ transition: 'auto', changes: [{ type: 'addLearner', nodeId: 9 }] }) };
          case 'node-command':
            return { type: EntryType.Normal, data: encodeNodeCommand({ type: 'publish', memberId: 1, name: 'source-1', clientUrls: ['http://127.0.0.1:2379'] }) };
          case 'checkpoint':
            return { type: EntryType.Normal, data: encodeCheckpoint({ by: 1, nonce: this.#nextNonce++, pin: false }) };
        }
      })();
      await this.#append([entry]);
      return this.#lastIndex;
    });
  }

  /** fence appends a switch's fence: a mirrorBegin (requireEmpty false) that makes the source a read-only mirror holding `state`. */
  async fence(state: Uint8Array): Promise<SourceWrite> {
    const written = await this.write({ type: 'mirrorBegin', state, requireEmpty: false });
    assert(written.error === undefined, `the fence applied (${written.error?.message ?? ''})`);
    return written;
  }

  /**
   * compact drops the entries up to `index`, or up to the lowest unexpired log hold's index - 1
   * when that is lower (see the file comment; `pastHolds` ignores the holds, as a member over
   * its log byte cap does), and answers the index it compacted to: a follow from at or below
   * it fails COMPACTED.
   */
  compact(index: number, options: { readonly pastHolds?: boolean } = {}): number {
    assert(Number.isSafeInteger(index) && index >= this.#firstIndex - 1 && index <= this.#lastIndex, `compact to ${index} within [${this.#firstIndex - 1}, ${this.#lastIndex}]`);
    let limit = index;
    if (options.pastHolds !== true) {
      const held = this.holds().find((hold) => hold.index >= this.#firstIndex);
      if (held !== undefined) limit = Math.min(limit, held.index - 1);
    }
    this.#log = this.#log.slice(limit + 1 - this.#firstIndex);
    this.#firstIndex = limit + 1;
    assert(this.#log.length === this.#lastIndex - this.#firstIndex + 1, 'the log holds [firstIndex, lastIndex]');
    return limit;
  }

  /** holds lists the log holds unexpired now, lowest index first. */
  holds(): LogHold[] {
    return this.#holds.unexpired(this.#wallClockMs());
  }

  /**
   * dropPins loses every pinned view at once, as a member restart does: a scan of any of them
   * is COMPACTED from now on (synchronously); the views close once their reads in flight end.
   */
  dropPins(): Promise<void> {
    const held = [...this.#views.values()];
    this.#views.clear();
    return Promise.all(held.map((one) => closeHeld(one))).then(() => undefined);
  }

  /** breakStreamAfter makes the next stream follow() opens fail UNAVAILABLE after `batches` batches. */
  breakStreamAfter(batches: number): void {
    assert(Number.isSafeInteger(batches) && batches >= 0, 'a batch count');
    this.#breakAfterBatches = batches;
  }

  /** viewOf is the pinned view behind `pin` (undefined once released or dropped). */
  viewOf(pin: PinnedSourceView): DigestView | undefined {
    return this.#views.get(pin.pinId)?.view;
  }

  /** openViews counts the views pinned now (the state machine allows DIGEST_VIEWS_MAX). */
  openViews(): number {
    return this.#views.size;
  }

  /**
   * pinnedCheckpoint appends a checkpoint that asks for pins, right after the commands
   * `before` in the same apply (so a follow sends them with it), and returns its pin and the
   * digest its apply reported.
   */
  async pinnedCheckpoint(before: readonly KvRequest[] = []): Promise<SourceCheckpoint> {
    assert(before.length < APPEND_ENTRIES_MAX, `at most ${APPEND_ENTRIES_MAX - 1} commands before a checkpoint`);
    const pin = await this.#checkpointAfter(before);
    const digestAt = this.#checkpoints.get(pin.pinId);
    assert(digestAt !== undefined, 'a pinned checkpoint has its digest');
    return { pin, digestAt };
  }

  // ---- LogCopySource ----

  async head(): Promise<LogSourceHead> {
    this.#checkOpen();
    // Read in one tick: the three go together.
    return { clusterId: this.clusterId, revision: this.kv.revision(), index: this.kv.appliedIndex(), mirrorState: this.kv.mirrorState() };
  }

  async count(range: KeyRange): Promise<number> {
    this.#checkOpen();
    return (await this.kv.range({ type: 'range', key: range.key, rangeEnd: range.rangeEnd, countOnly: true })).count;
  }

  pin(): Promise<PinnedSourceView> {
    this.#checkOpen();
    return this.#serially(async () => this.#pinNow());
  }

  async scan(pin: PinnedSourceView, range: KeyRange, limit: number, signal?: AbortSignal): Promise<SourcePage> {
    this.#checkOpen();
    assert(Number.isSafeInteger(limit) && limit > 0, 'a scan limit is a positive integer');
    if (signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the scan was cancelled');
    const held = pin.endpoint === LOG_SOURCE_ENDPOINT ? this.#views.get(pin.pinId) : undefined;
    if (held === undefined) {
      this.scansRefused += 1;
      throw new StrataError(ErrorCode.COMPACTED, `the source's pinned view ${pin.pinId} is gone`, { details: { pinId: pin.pinId, compactRevision: pin.revision } });
    }
    assert(held.view.appliedIndex === pin.index && held.view.revision === pin.revision, 'a pin names its view');
    const read = held.view.range(range.key, range.rangeEnd, Math.min(limit, DIGEST_VIEW_RANGE_LIMIT_MAX));
    held.reads.add(read);
    try {
      const page = await read;
      return { kvs: page.kvs, more: page.more, revision: pin.revision };
    } finally {
      held.reads.delete(read);
    }
  }

  async release(pin: PinnedSourceView): Promise<void> {
    const held = this.#views.get(pin.pinId);
    if (held === undefined) return;
    this.#views.delete(pin.pinId);
    await closeHeld(held);
  }

  follow(fromIndex: number, signal?: AbortSignal): AsyncIterable<LogBatch> {
    assert(Number.isSafeInteger(fromIndex) && fromIndex >= 1, 'a follow starts at an index >= 1');
    const breakAfter = this.#breakAfterBatches;
    this.#breakAfterBatches = undefined;
    this.streamsOpened += 1;
    return { [Symbol.asyncIterator]: () => this.#stream(fromIndex, breakAfter, signal) };
  }

  /** checkpoint appends a checkpoint entry that asks for pins and pins the source's view exactly at it. */
  checkpoint(): Promise<PinnedSourceView> {
    return this.#checkpointAfter([]);
  }

  /** hold appends a logHold node command and applies it to the holds, as a member does (see the file comment). */
  async hold(consumer: string, index: number, ttlMs: number, signal?: AbortSignal): Promise<void> {
    this.#checkOpen();
    checkLogHoldRequest(consumer, index, ttlMs);
    if (signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the hold was cancelled');
    const nowMs = this.#wallClockMs();
    if (index > 0 && !this.#holds.admits(consumer, nowMs)) throw tooManyLogHolds(consumer);
    const command = { type: 'logHold' as const, consumer, index, expiresAtMs: index === 0 ? 0 : nowMs + ttlMs };
    await this.#serially(async () => {
      await this.#append([{ type: EntryType.Normal, data: encodeNodeCommand(command) }]);
      const applied = this.#holds.apply(command, this.#wallClockMs());
      if (applied.error !== undefined) throw applied.error;
      this.holdsApplied += 1;
    });
  }

  close(): void {
    this.#closed = true;
    for (const wake of this.#waiters) wake();
    void this.dropPins();
  }

  // ---- inside ----

  #checkpointAfter(before: readonly KvRequest[]): Promise<PinnedSourceView> {
    this.#checkOpen();
    return this.#serially(async () => {
      const entries = before.map((request) => ({ type: EntryType.Normal, data: encodeKvCommand({ id: this.#nextCommandId++, request }) }));
      const results = await this.#applyEntries([...entries, { type: EntryType.Normal, data: encodeCheckpoint({ by: 1, nonce: this.#nextNonce++, pin: true }) }]);
      const digestAt = results[results.length - 1]?.checkpoint;
      assert(digestAt !== undefined && digestAt.appliedIndex === this.#lastIndex, 'the state machine answers a checkpoint with the digest at its index');
      // Still inside the queue: nothing applied after the checkpoint yet.
      const pin = this.#pinNow();
      assert(pin.index === digestAt.appliedIndex, 'the checkpoint\'s view is at its index');
      this.#checkpoints.set(pin.pinId, digestAt);
      return pin;
    });
  }

  #checkOpen(): void {
    if (this.#closed) throw new StrataError(ErrorCode.UNAVAILABLE, 'the source is closed');
  }

  #pinNow(): PinnedSourceView {
    const view = this.kv.openDigestView();
    const pinId = `p${this.#nextPinId++}`;
    this.#views.set(pinId, { view, reads: new Set() });
    return { endpoint: LOG_SOURCE_ENDPOINT, pinId, index: view.appliedIndex, revision: view.revision };
  }

  /** #serially runs `step` after every step queued before it (applies must not overlap, and views pin between two). */
  #serially<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(step);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** #append applies entries and answers each KV command's outcome (inside the queue). */
  async #append(entries: readonly { readonly type: EntryType; readonly data: Uint8Array }[]): Promise<SourceWrite[]> {
    const results = await this.#applyEntries(entries);
    return results.filter((result) => result.id !== 0).map((result) => ({ index: result.index, ...(result.response === undefined ? {} : { response: result.response }), ...(result.error === undefined ? {} : { error: result.error }) }));
  }

  /** #applyEntries gives entries the next indexes, applies them, then keeps them in the log and wakes the follows. */
  async #applyEntries(entries: readonly { readonly type: EntryType; readonly data: Uint8Array }[]): Promise<ApplyResult[]> {
    this.#checkOpen();
    assert(this.kv.appliedIndex() === this.#lastIndex, 'the state machine applied exactly the log');
    const indexed: Entry[] = entries.map((entry, at) => ({ index: this.#lastIndex + 1 + at, term: 1, type: entry.type, data: entry.data }));
    const results = await this.kv.apply(indexed);
    for (const entry of indexed) this.#log.push({ index: entry.index, data: entry.data, normal: entry.type === EntryType.Normal });
    this.#lastIndex += indexed.length;
    assert(this.kv.appliedIndex() === this.#lastIndex, 'every entry applied');
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
    return results;
  }

  /**
   * #stream yields the log from `fromIndex` in batches of seeded sizes, then follows it: an
   * idle batch whenever nothing new came for FOLLOW_IDLE_MS. It ends by throwing: CANCELED
   * when `signal` aborts, COMPACTED when the log no longer holds the next index, UNAVAILABLE
   * after `breakAfter` batches.
   */
  async *#stream(fromIndex: number, breakAfter: number | undefined, signal: AbortSignal | undefined): AsyncGenerator<LogBatch> {
    let next = fromIndex;
    let batches = 0;
    for (;;) {
      if (signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the log stream was cancelled');
      if (this.#closed) throw new StrataError(ErrorCode.UNAVAILABLE, 'the source closed the log stream');
      if (next < this.#firstIndex) {
        throw new StrataError(ErrorCode.COMPACTED, `the source compacted its log past index ${next} (it holds ${this.#firstIndex}..${this.#lastIndex})`, { details: { compactIndex: this.#firstIndex - 1, fromIndex: next } });
      }
      if (breakAfter !== undefined && batches >= breakAfter) throw new StrataError(ErrorCode.UNAVAILABLE, `test: the log stream broke after ${batches} batches`);
      if (next <= this.#lastIndex) {
        const size = 1 + this.#random.intBelow(FOLLOW_BATCH_ENTRIES_MAX);
        const entries = this.#log.slice(next - this.#firstIndex, Math.min(this.#lastIndex, next + size - 1) - this.#firstIndex + 1);
        assert(entries.length > 0 && entries[0]?.index === next, 'a batch starts at the next index');
        next += entries.length;
        batches += 1;
        yield { kind: 'entries', entries, commitIndex: this.#lastIndex };
        continue;
      }
      if (!(await this.#waitForEntry(signal))) {
        batches += 1;
        yield { kind: 'idle', lastIndex: this.#lastIndex, commitIndex: this.#lastIndex };
      }
    }
  }

  /** #waitForEntry resolves true when an entry was appended, false after FOLLOW_IDLE_MS or an abort. */
  #waitForEntry(signal: AbortSignal | undefined): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (appended: boolean): void => {
        clearTimeout(timer);
        this.#waiters.delete(onEntry);
        signal?.removeEventListener('abort', onAbort);
        resolve(appended);
      };
      const onEntry = (): void => done(true);
      const onAbort = (): void => done(false);
      const timer = setTimeout(() => done(false), FOLLOW_IDLE_MS);
      this.#waiters.add(onEntry);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

async function closeHeld(held: HeldView): Promise<void> {
  await Promise.allSettled([...held.reads]);
  await held.view.close();
}

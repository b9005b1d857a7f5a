// runEtcdReverse keeps an etcd cluster following the stratakv cluster its writes were switched
// to (`copy switch` of an etcd source), so that `copy reverse` can move the writes back.
//
// etcd cannot replay a stratakv command (mirrorReplay is ours), and replaying it through etcd's
// own API would be wrong as soon as anything differs (a Txn's compares would take the other
// branch). So the copier turns each command into its **effects**: it keeps a replica of the
// new primary — a memory state machine loaded with etcd's keys and counters at the switch —
// applies each command of the new primary's log to it (the very apply path the primary used,
// recordChanges on), and writes what changed into etcd in one Txn per command that wrote.
//
// **Revisions stay equal.** At the switch both clusters hold the same keys at the same revision
// (the switch verified it). A command that writes moves stratakv's revision by one; its Txn
// moves etcd's by one. So while nothing else writes etcd, every key keeps the same
// create_revision, mod_revision and version on both sides, and a later forward copy can follow
// etcd from where the reverse copy stopped without scanning again. Each Txn checks this: its
// answer's revision must be the replica's; if not, something else wrote etcd, and the copy is
// marked `exactRevisions: false` (values are still right; revisions no longer are).
//
// **The position lives in etcd, with the data.** The copy state (copy-state.ts, direction
// `reverse`, the stratakv log index and revision applied) is the value of REVERSE_STATE_KEY,
// written in the same Txn as the effects, which compares the key's mod_revision with the one
// the copier wrote last. A copier killed anywhere resumes from it: a Txn whose answer was lost
// either landed (the state says so) or did not (it is sent again). Commands that changed
// nothing write nothing: on a resume they are applied to the replica again, and change nothing
// again.
//
// **A resume reloads the replica from etcd** at its current revision, which is the replica's
// state at the position exactly when the revisions are still equal. When they are not (or the
// new primary's log was compacted past the position), the copy cannot resume: it says so, and
// says how to start again (the forward copy's rescan has no reverse counterpart yet).

import type { EtcdClient } from '../../client/index.ts';
import { decodeKvCommand, encodeKvCommand, openMemoryKvStateMachine, type KvChange, type KvResponse, type KvStateMachine, type MirrorPut, type TxnOperation } from '../../storage/index.ts';
import { EntryType, type Entry } from '../../raft/index.ts';
import { assert } from '../../util/assert.ts';
import { pauseOrAbort } from '../../util/clock.ts';
import { ErrorCode, isStrataError, StrataError } from '../../util/errors.ts';
import { classify, fromBase64, PAGE_KEYS, RETRYABLE } from './copier.ts';
import type { KeyRange, LogCopySource } from './copy-ends.ts';
import { decodeCopyState, encodeCopyState, isStateKey, REVERSE_STATE_KEY, type CopyState } from './copy-state.ts';
import { findMirrorEnd } from './copy-switch.ts';
import { etcdPageRanges } from './etcd-source.ts';
import { holdLogWhile, logHoldConsumer } from './log-hold-renewer.ts';

/** TXN_OPS_MAX is etcd's default --max-txn-ops: a command's effects and the state must fit one Txn. */
export const TXN_OPS_MAX = 128;
/** REVERSE_CALL_TIMEOUT_MS is the deadline of one call to etcd. */
export const REVERSE_CALL_TIMEOUT_MS = 10_000;
/** REVERSE_ATTEMPTS_MAX bounds the attempts of one Txn (each after finding out whether the last landed). */
export const REVERSE_ATTEMPTS_MAX = 20;
/** REVERSE_TXNS_IN_FLIGHT bounds the Txns the reverse copy has sent and not yet settled (etcd commits those that arrive together in one fsync). */
export const REVERSE_TXNS_IN_FLIGHT = 32;
/** REVERSE_BURSTS_MAX bounds the sends of one Txn in bursts; past it, a refused Txn is settled one at a time (writeEffects). */
export const REVERSE_BURSTS_MAX = 8;
/** REPLICA_READS_IN_FLIGHT bounds the pages the replica's load reads from etcd ahead of the one it applies. */
export const REPLICA_READS_IN_FLIGHT = 4;
/** REPLICA_KEYS_MAX bounds the keys the replica holds in memory (about 100 bytes of overhead each, plus the values). */
export const REPLICA_KEYS_MAX = 10_000_000;

const REPLICA_STATE = new TextEncoder().encode('stratakv reverse-copy replica');

/** ReverseEvent reports the reverse copy's progress. */
export type ReverseEvent =
  | { readonly kind: 'loaded'; readonly keys: number; readonly revision: number; readonly fromIndex: number; readonly ms: number }
  | { readonly kind: 'applied'; readonly state: CopyState; readonly txns: number }
  | { readonly kind: 'caught-up'; readonly appliedIndex: number; readonly revision: number }
  | { readonly kind: 'diverged'; readonly etcdRevision: number; readonly expectedRevision: number }
  | { readonly kind: 'retry'; readonly what: string; readonly error: StrataError; readonly attempt: number };

/** ReverseOptions configure runEtcdReverse. */
export interface ReverseOptions {
  /** The new primary (a stratakv cluster): its log is followed. */
  readonly log: LogCopySource;
  /** The old source (etcd), written with the effects. */
  readonly etcd: EtcdClient;
  readonly signal: AbortSignal;
  /** Return once every command the new primary has committed is in etcd. */
  readonly stopWhenCaughtUp?: boolean;
  /** Return (reason `at-index`) once every command up to this index is in etcd. */
  readonly stopAtIndex?: number;
  readonly now?: () => number;
  readonly onEvent?: (event: ReverseEvent) => void;
}

/** ReverseResult is where the reverse copy stopped; `source-fenced`: the new primary was fenced (`copy reverse`) and everything before the fence is in etcd. */
export interface ReverseResult {
  readonly state: CopyState;
  readonly reason: 'stopped' | 'caught-up' | 'at-index' | 'source-fenced' | 'completed';
  /** The index of the fence (the new primary's mirrorBegin) when `source-fenced`. */
  readonly fenceIndex?: number;
  /** etcd's revision when it stopped. */
  readonly etcdRevision: number;
}

/** ReverseHead is a reverse copy's state as etcd holds it. */
export interface ReverseHead {
  readonly state: CopyState;
  /** The state key's mod_revision: the revision of the copier's last Txn (or the switch's). */
  readonly stateModRevision: number;
  /** etcd's revision with the read. */
  readonly etcdRevision: number;
  readonly clusterId: string;
}

/** readReverseState reads the reverse copy's state from etcd; undefined when etcd holds none. */
export async function readReverseState(etcd: EtcdClient, signal?: AbortSignal): Promise<ReverseHead | undefined> {
  const answer = await etcd.get(REVERSE_STATE_KEY, { ...(signal === undefined ? {} : { signal }), timeoutMs: REVERSE_CALL_TIMEOUT_MS });
  const kv = answer.kvs[0];
  if (kv === undefined) return undefined;
  return { state: decodeCopyState(kv.value), stateModRevision: kv.modRevision, etcdRevision: answer.header.revision, clusterId: answer.header.clusterId.toString(16) };
}

/** runEtcdReverse runs the reverse copy until `signal`, or until caught up or fenced; see the file comment. */
export async function runEtcdReverse(options: ReverseOptions): Promise<ReverseResult> {
  const opened = await EtcdReverse.open(options);
  if (!(opened instanceof EtcdReverse)) return opened;
  try {
    return await opened.run(options);
  } finally {
    await opened.close();
  }
}

/**
 * EtcdReverse is an open reverse copy: its replica loaded, runnable several times (a `copy
 * reverse` runs it up to a pinned view, then up to the fence, without loading the replica
 * twice). One run at a time.
 */
export class EtcdReverse {
  readonly #options: ReverseOptions;
  readonly #kv: KvStateMachine;
  #state: CopyState;
  #appliedIndex: number;
  #replicaIndex: number;
  #stateModRevision: number;
  #etcdRevision: number;
  // Commands up to here are in etcd already (written by another copier of this copy while this one replays them into its replica).
  #writtenUpTo = 0;
  // The state another copier had written when this run began, until this run's replica reaches it.
  #ahead: ReverseHead | undefined;
  #txns = 0;
  #running = false;
  // Set when a run stopped with Txns in flight: the replica may be ahead of etcd.
  #replicaAhead = false;

  private constructor(options: ReverseOptions, kv: KvStateMachine, replicaIndex: number, head: ReverseHead, appliedIndex: number) {
    this.#options = options;
    this.#kv = kv;
    this.#replicaIndex = replicaIndex;
    this.#state = head.state;
    this.#stateModRevision = head.stateModRevision;
    this.#etcdRevision = head.etcdRevision;
    this.#appliedIndex = appliedIndex;
  }

  /** open reads the state in etcd and loads the replica; answers a result instead when there is nothing to run (completed, fenced). */
  static async open(options: ReverseOptions): Promise<EtcdReverse | ReverseResult> {
    const { etcd, log, signal } = options;
    const head = await readReverseState(etcd, signal);
    if (head === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'etcd holds no reverse copy state: `copy switch` of an etcd source writes it');
    const state = head.state;
    if ((state.direction ?? 'forward') !== 'reverse' || state.source.kind !== 'stratakv') throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the reverse copy state in etcd is a ${state.direction ?? 'forward'} copy of a ${state.source.kind} source: not a reverse copy`);
    if (state.phase === 'completed') return { state, reason: 'completed', etcdRevision: head.etcdRevision };
    if (state.phase !== 'fenced' && state.phase !== 'tailing') throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the reverse copy is ${state.phase}: nothing to follow`);
    const primary = await log.head(signal);
    if (primary.clusterId !== state.source.clusterId) throw new StrataError(ErrorCode.MIRROR_CONFLICT, `the reverse copy follows cluster ${state.source.clusterId}, but --from answers as cluster ${primary.clusterId}`);
    // Equal revisions are what make the replica loaded from etcd the new primary's state.
    if (head.etcdRevision !== head.stateModRevision || state.appliedRevision !== head.stateModRevision) {
      throw new StrataError(
        ErrorCode.MIRROR_CONFLICT,
        `etcd was written outside the reverse copy (its revision is ${head.etcdRevision}, the reverse copy's last write ${head.stateModRevision}, the new primary's revision then ${state.appliedRevision}): the copy cannot resume key for key; end it (\`copy complete\`) and copy again`,
        { details: { etcdRevision: head.etcdRevision, stateModRevision: head.stateModRevision } },
      );
    }
    const range: KeyRange = { key: fromBase64(state.range.key), rangeEnd: fromBase64(state.range.rangeEnd) };
    // A switch that just ended: the copy starts after the new primary's mirrorEnd.
    const appliedIndex = state.phase === 'fenced' ? await findMirrorEnd(log, state.appliedIndex ?? 0, state.switchInfo?.switchId ?? '', signal) : (state.appliedIndex ?? 0);
    const loadStartedMs = performance.now();
    const replica = await loadReplica(etcd, range, head.etcdRevision, signal);
    options.onEvent?.({ kind: 'loaded', keys: replica.keys, revision: head.etcdRevision, fromIndex: appliedIndex + 1, ms: performance.now() - loadStartedMs });
    return new EtcdReverse(options, replica.kv, replica.nextIndex, head, appliedIndex);
  }

  /** run follows the new primary until `signal`, the fence, or the stop asked for. */
  async run(stop: { readonly stopWhenCaughtUp?: boolean; readonly stopAtIndex?: number }): Promise<ReverseResult> {
    assert(!this.#running, 'one run of a reverse copy at a time');
    assert(!this.#replicaAhead, 'a reverse copy whose run stopped with Txns in flight is opened again, not run again');
    this.#running = true;
    const { etcd, log, signal } = this.#options;
    const now = this.#options.now ?? Date.now;
    const kv = this.#kv;
    const stream = new AbortController();
    const onAbort = (): void => stream.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    let commitIndexSeen = this.#appliedIndex;
    // Where the replica is: commands up to here are applied to it, and their Txns sent (or not needed).
    let preparedIndex = this.#appliedIndex;
    // The state key's mod_revision once every Txn sent has landed (revisions are equal: the replica's).
    let predictedModRevision = this.#stateModRevision;
    const queue: QueuedEffect[] = [];
    // The new primary keeps its log from here while this copy runs (and LOG_HOLD_TTL_MS after).
    const holder = holdLogWhile(log, logHoldConsumer('reverse-copy', this.#state.copyId), () => this.#appliedIndex + 1, (error) => this.#options.onEvent?.({ kind: 'retry', what: 'hold the new primary\'s log', error, attempt: 1 }));
    const result = (reason: ReverseResult['reason'], fenceIndex?: number): ReverseResult => ({ state: this.#state, reason, etcdRevision: this.#etcdRevision, ...(fenceIndex === undefined ? {} : { fenceIndex }) });
    const reached = (): boolean => stop.stopAtIndex !== undefined && preparedIndex >= stop.stopAtIndex;
    const drain = async (): Promise<void> => {
      while (queue.length > 0) await this.#settle(queue);
    };
    try {
      if (reached()) return result('at-index');
      // Another copier of this copy (a running `copy create`, next to `copy reverse`'s own) may
      // have written further than this one: its commands are only applied to the replica here,
      // not sent again (each would be refused, and cost etcd a Raft round).
      const current = await readReverseState(etcd, signal);
      if (current !== undefined && current.state.copyId === this.#state.copyId && current.state.phase === 'tailing' && (current.state.appliedIndex ?? 0) > this.#appliedIndex) {
        this.#writtenUpTo = Math.max(this.#writtenUpTo, current.state.appliedIndex ?? 0);
        this.#ahead = current;
      }
      for await (const batch of log.follow(this.#appliedIndex + 1, stream.signal)) {
        commitIndexSeen = Math.max(commitIndexSeen, batch.commitIndex);
        if (batch.kind === 'idle') {
          await drain();
          if (batch.commitIndex <= this.#appliedIndex) {
            this.#options.onEvent?.({ kind: 'caught-up', appliedIndex: this.#appliedIndex, revision: kv.revision() });
            if (stop.stopWhenCaughtUp === true) return result('caught-up');
          }
          continue;
        }
        for (const entry of batch.entries) {
          const what = classify(entry);
          // `copy reverse` fenced the new primary: nothing after this entry may be copied (it was refused there).
          if (what === 'fence') {
            await drain();
            return result('source-fenced', entry.index);
          }
          if (what !== 'command') {
            queue.push({ kind: 'skip', entryIndex: entry.index });
          } else {
            const replicaEntry: Entry = { index: this.#replicaIndex, term: 1, type: EntryType.Normal, data: entry.data };
            this.#replicaIndex += 1;
            const [applied] = await kv.apply([replicaEntry]);
            const wrote = applied?.error === undefined && (applied?.changes?.length ?? 0) > 0;
            if (!wrote || entry.index <= this.#writtenUpTo) {
              // Nothing changed (nothing to write: a resume applies it to its replica again), or
              // another copier of this reverse copy wrote it already (the same effects of the
              // same command: the state key then moved to this command's revision).
              if (wrote) predictedModRevision = kv.revision();
              queue.push({ kind: 'skip', entryIndex: entry.index });
            } else {
              const changes = (applied?.changes ?? []).filter((change) => !isStateKey(change.key));
              const operations = effectOperations(changes, entry.data, applied?.response);
              const next: CopyState = {
                ...this.#state,
                phase: 'tailing',
                appliedIndex: entry.index,
                commitIndexSeen: Math.max(commitIndexSeen, entry.index),
                appliedRevision: kv.revision(),
                sourceRevisionSeen: Math.max(this.#state.sourceRevisionSeen, kv.revision()),
                caughtUpAtMs: batch.commitIndex <= entry.index ? now() : this.#state.caughtUpAtMs,
                updatedAtMs: now(),
              };
              const expectModRevision = predictedModRevision;
              predictedModRevision = kv.revision();
              const answer = sendEffects(etcd, operations, next, expectModRevision, signal);
              const item: QueuedTxn = { kind: 'txn', entryIndex: entry.index, operations, next, expectModRevision, revision: kv.revision(), answer, attempts: 1 };
              noteLatest(item, answer);
              queue.push(item);
            }
          }
          preparedIndex = entry.index;
          // Txns in flight let etcd commit several in one fsync; each names its predecessor's revision.
          while (queue.length > REVERSE_TXNS_IN_FLIGHT || (queue.length > 0 && queue[0]?.kind === 'skip')) await this.#settle(queue);
          if (reached()) {
            await drain();
            return result('at-index');
          }
        }
      }
      await drain();
      return result('stopped');
    } catch (error) {
      // The replica may hold commands whose Txns did not land: it is loaded again before another run.
      if (queue.length > 0) this.#replicaAhead = true;
      if (error instanceof ReverseCompleted) return result('completed');
      if (signal.aborted) return result('stopped');
      if (isStrataError(error, ErrorCode.COMPACTED)) {
        throw new StrataError(ErrorCode.COMPACTED, `the new primary's log no longer holds index ${this.#appliedIndex + 1} (it was compacted past the reverse copy's position: its log hold expired or was over compactionLogBytesMax): the reverse copy cannot resume; end it (\`copy complete\`) and copy again`, { cause: error });
      }
      throw error;
    } finally {
      holder.stop();
      stream.abort();
      signal.removeEventListener('abort', onAbort);
      this.#running = false;
    }
  }

  // settle takes the oldest queued command: its Txn's answer, in order. A Txn refused (etcd
  // proposed it before its predecessor) or unanswered is settled by writeEffects, now that its
  // predecessors have landed: it sends it again, or finds that it (or another copier) landed.
  async #settle(queue: QueuedEffect[]): Promise<void> {
    const item = queue[0];
    assert(item !== undefined, 'settle with a queued command');
    if (item.kind === 'skip') {
      queue.shift();
      this.#appliedIndex = item.entryIndex;
      const ahead = this.#ahead;
      if (ahead !== undefined && item.entryIndex >= (ahead.state.appliedIndex ?? 0)) {
        // Skipped up to where the other copier had written: its state is this one's now.
        this.#state = ahead.state;
        this.#stateModRevision = ahead.stateModRevision;
        this.#etcdRevision = Math.max(this.#etcdRevision, ahead.stateModRevision);
        this.#ahead = undefined;
      }
      return;
    }
    const { etcd, signal } = this.#options;
    let outcome = await item.answer;
    if (outcome.failed !== true && outcome.succeeded === false && item.attempts < REVERSE_BURSTS_MAX) {
      // Refused: etcd took it before its predecessor (it runs concurrent requests in any order),
      // and most likely the Txns after it too. Its predecessors have all landed now: send it
      // again, with every later one already refused, in one burst. (Each Txn lands at most once:
      // the compare fails once it did.)
      for (const queued of queue) if (queued.kind === 'txn' && (queued === item || queued.latest?.succeeded === false)) sendQueued(etcd, queued, signal);
      outcome = await item.answer;
    }
    if (outcome.failed === true) {
      if (!isStrataError(outcome.error) || !RETRYABLE.has(outcome.error.code) || signal.aborted) throw outcome.error;
      this.#options.onEvent?.({ kind: 'retry', what: 'etcd txn', error: outcome.error, attempt: 1 });
    }
    const written: { revision: number; ahead?: CopyState; completed?: CopyState } =
      outcome.succeeded === true && outcome.revision !== undefined ? { revision: outcome.revision } : await writeEffects(etcd, item.operations, item.next, item.expectModRevision, signal, this.#options.onEvent);
    if (written.completed !== undefined) {
      this.#state = written.completed;
      this.#etcdRevision = written.revision;
      throw new ReverseCompleted();
    }
    queue.shift();
    this.#stateModRevision = written.revision;
    this.#etcdRevision = written.revision;
    this.#appliedIndex = item.entryIndex;
    if (written.ahead !== undefined) {
      this.#writtenUpTo = written.ahead.appliedIndex ?? 0;
      this.#state = written.ahead;
      return;
    }
    this.#txns += 1;
    this.#state = item.next;
    if (written.revision !== item.revision) {
      // Something else wrote etcd: the values stay right, the revisions no longer match.
      this.#options.onEvent?.({ kind: 'diverged', etcdRevision: written.revision, expectedRevision: item.revision });
      throw new StrataError(
        ErrorCode.MIRROR_CONFLICT,
        `etcd was written outside the reverse copy: its revision is ${written.revision} after the reverse copy's Txn, the new primary's ${item.revision}; its writers have not all moved (the reverse copy stopped at index ${item.entryIndex}; end it with \`copy complete\`)`,
        { details: { etcdRevision: written.revision, expectedRevision: item.revision, appliedIndex: item.entryIndex } },
      );
    }
    this.#options.onEvent?.({ kind: 'applied', state: this.#state, txns: this.#txns });
  }

  /** writtenIndex reads how far etcd's state says this copy got (another copier of it may be running): its appliedIndex, or this one's when the state is not this copy's, tailing. */
  async writtenIndex(signal: AbortSignal): Promise<number> {
    const head = await readReverseState(this.#options.etcd, signal);
    if (head === undefined || head.state.copyId !== this.#state.copyId || head.state.phase !== 'tailing') return this.#appliedIndex;
    return Math.max(this.#appliedIndex, head.state.appliedIndex ?? 0);
  }

  async close(): Promise<void> {
    await this.#kv.close();
  }
}

/** loadReplica reads etcd's keys in `range` at `revision` into a memory state machine that records its changes. */
export async function loadReplica(etcd: EtcdClient, range: KeyRange, revision: number, signal: AbortSignal): Promise<{ kv: KvStateMachine; keys: number; nextIndex: number }> {
  const kv = await openMemoryKvStateMachine({ recordChanges: true, verifyAtOpen: false });
  let index = 1;
  const apply = async (request: Parameters<typeof encodeKvCommand>[0]['request']): Promise<void> => {
    const [result] = await kv.apply([{ index, term: 1, type: EntryType.Normal, data: encodeKvCommand({ id: index, request }) }]);
    index += 1;
    if (result?.error !== undefined) throw result.error;
  };
  try {
    await apply({ type: 'mirrorBegin', state: REPLICA_STATE, requireEmpty: true });
    // Exact page ranges (etcdPageRanges: a limited Range walks the rest of the range in etcd
    // 3.4), read REPLICA_READS_IN_FLIGHT at a time and applied in order.
    const pages = await etcdPageRanges(etcd, range, revision, PAGE_KEYS, signal);
    if (pages.length > REPLICA_KEYS_MAX / PAGE_KEYS + 1) throw new StrataError(ErrorCode.REQUEST_TOO_LARGE, `etcd holds more than ${REPLICA_KEYS_MAX} keys: too many for the reverse copy's replica`);
    const read = (page: KeyRange): ReturnType<EtcdClient['get']> => {
      const reading = etcd.get(page.key, { rangeEnd: page.rangeEnd, revision, signal, timeoutMs: REVERSE_CALL_TIMEOUT_MS });
      // Awaited in order below, or abandoned when an earlier one failed: never left rejected unobserved.
      reading.catch(() => undefined);
      return reading;
    };
    const reading = pages.slice(0, REPLICA_READS_IN_FLIGHT).map(read);
    let keys = 0;
    for (let at = 0; at < pages.length; at += 1) {
      const answer = await (reading[at] as ReturnType<EtcdClient['get']>);
      const ahead = pages[at + REPLICA_READS_IN_FLIGHT];
      if (ahead !== undefined) reading.push(read(ahead));
      const puts: MirrorPut[] = answer.kvs.map((pair) => ({ key: pair.key, value: pair.value, createRevision: pair.createRevision, modRevision: pair.modRevision, version: pair.version, lease: pair.lease }));
      await apply({ type: 'mirrorApply', expectState: REPLICA_STATE, state: REPLICA_STATE, revision, puts, deletes: [] });
      keys += puts.length;
    }
    // An empty range still moves the replica to etcd's revision.
    await apply({ type: 'mirrorApply', expectState: REPLICA_STATE, state: REPLICA_STATE, revision, puts: [], deletes: [] });
    await apply({ type: 'mirrorEnd', expectState: REPLICA_STATE });
    return { kv, keys, nextIndex: index };
  } catch (error) {
    await kv.close();
    throw error;
  }
}

/** ReverseCompleted ends a run that found the copy completed by `copy reverse` (thrown from deep in settling, caught by run). */
class ReverseCompleted extends Error {
  constructor() {
    super('the reverse copy was completed');
  }
}

/** QueuedEffect is a command of the new primary the replica applied, in log order: its Txn in flight, or nothing to write. */
type QueuedEffect = { readonly kind: 'skip'; readonly entryIndex: number } | QueuedTxn;

interface QueuedTxn {
  readonly kind: 'txn';
  readonly entryIndex: number;
  readonly operations: readonly TxnOperation[];
  readonly next: CopyState;
  /** The state key's mod_revision the Txn compares with: its predecessor's revision. */
  readonly expectModRevision: number;
  /** The revision it must land at: the replica's after the command. */
  readonly revision: number;
  /** The latest attempt's answer (an earlier attempt may still land: then this one is refused). */
  answer: Promise<SentEffects>;
  /** The latest attempt's answer once it came. */
  latest?: SentEffects | undefined;
  attempts: number;
}

/** sendQueued sends a queued command's Txn again. */
function sendQueued(etcd: EtcdClient, item: QueuedTxn, signal: AbortSignal): void {
  const attempt = sendEffects(etcd, item.operations, item.next, item.expectModRevision, signal);
  item.answer = attempt;
  item.latest = undefined;
  item.attempts += 1;
  noteLatest(item, attempt);
}

// noteLatest keeps `attempt`'s answer on the item when it comes, unless a later attempt replaced it.
function noteLatest(item: QueuedTxn, attempt: Promise<SentEffects>): void {
  void attempt.then((outcome) => {
    if (item.answer === attempt) item.latest = outcome;
  });
}

/** SentEffects is one attempt's answer: etcd's, or the error it failed with (never a rejection). */
interface SentEffects {
  readonly succeeded?: boolean;
  readonly revision?: number;
  readonly failed?: true;
  readonly error?: unknown;
}

/** sendEffects sends one command's Txn once (writeEffects settles whatever it answered). */
function sendEffects(etcd: EtcdClient, operations: readonly TxnOperation[], next: CopyState, expectModRevision: number, signal: AbortSignal): Promise<SentEffects> {
  return etcd.txn(effectsTxn(operations, next, expectModRevision), { signal, timeoutMs: REVERSE_CALL_TIMEOUT_MS }).then(
    (answer) => ({ succeeded: answer.succeeded, revision: answer.header.revision }),
    (error: unknown) => ({ failed: true, error }),
  );
}

// effectsTxn: the command's operations and the next state, if the state key is at expectModRevision.
function effectsTxn(operations: readonly TxnOperation[], next: CopyState, expectModRevision: number): Parameters<EtcdClient['txn']>[0] {
  const success: TxnOperation[] = [...operations, { type: 'put', key: REVERSE_STATE_KEY, value: encodeCopyState(next) }];
  return { type: 'txn', compare: [{ target: 'modRevision', result: 'equal', key: REVERSE_STATE_KEY, number: expectModRevision }], success, failure: [] };
}

/**
 * writeEffects writes one command's changes and the next state in one Txn, compare-and-set on
 * the state key's mod_revision; answers the Txn's revision. An answer lost (or a Txn refused
 * as its compare failed) is settled by reading the state: the Txn landed if it holds `next`.
 */
async function writeEffects(
  etcd: EtcdClient,
  operations: readonly TxnOperation[],
  next: CopyState,
  expectModRevision: number,
  signal: AbortSignal,
  onEvent: ((event: ReverseEvent) => void) | undefined,
): Promise<{ revision: number; ahead?: CopyState; completed?: CopyState }> {
  const request = effectsTxn(operations, next, expectModRevision);
  for (let attempt = 1; attempt <= REVERSE_ATTEMPTS_MAX; attempt += 1) {
    try {
      const answer = await etcd.txn(request, { signal, timeoutMs: REVERSE_CALL_TIMEOUT_MS });
      if (answer.succeeded) return { revision: answer.header.revision };
    } catch (error) {
      if (!isStrataError(error) || !RETRYABLE.has(error.code) || signal.aborted) throw error;
      onEvent?.({ kind: 'retry', what: 'etcd txn', error, attempt });
    }
    // Refused or unanswered: did an earlier attempt land?
    const head = await readStateRetrying(etcd, signal, onEvent);
    // `copy reverse` ran this copy to its fence (with a copier of its own) and ended it.
    if (head !== undefined && head.state.copyId === next.copyId && head.state.phase === 'completed') return { revision: head.stateModRevision, completed: head.state };
    if (head !== undefined && head.state.copyId === next.copyId && head.state.phase === 'tailing' && (head.state.appliedIndex ?? 0) >= (next.appliedIndex ?? 0)) {
      // This Txn landed (its answer was lost), or another copier of this copy wrote up to further on.
      return (head.state.appliedIndex ?? 0) === (next.appliedIndex ?? 0) ? { revision: head.stateModRevision } : { revision: head.stateModRevision, ahead: head.state };
    }
    if (head === undefined || head.stateModRevision !== expectModRevision) {
      throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the reverse copy state in etcd changed under the copier (another `copy` command ran, or someone wrote the key)');
    }
    await pauseOrAbort(Math.min(2_000, 50 * 2 ** Math.min(6, attempt - 1)), signal);
  }
  throw new StrataError(ErrorCode.UNAVAILABLE, `etcd did not take a reverse copy Txn in ${REVERSE_ATTEMPTS_MAX} attempts`);
}

/**
 * effectOperations turns a command's changes into etcd Txn operations: a put or a delete per
 * key changed. A command that changed more keys than a Txn takes (a DeleteRange over many
 * keys) is written as the operations it executed instead — its DeleteRanges and Puts, or those
 * of the Txn branch it took — which change exactly the same keys in etcd, since etcd holds the
 * replica's state (the revisions are equal: checked after every Txn). TOO_MANY_OPERATIONS when
 * neither fits.
 */
export function effectOperations(changes: readonly KvChange[], command: Uint8Array, response: KvResponse | undefined): TxnOperation[] {
  if (changes.length < TXN_OPS_MAX) return changes.map((change) => (change.put === undefined ? { type: 'deleteRange', key: change.key } : { type: 'put', key: change.key, value: change.put.value }));
  const request = decodeKvCommand(command).request;
  let executed: readonly TxnOperation[] = [];
  if (request.type === 'deleteRange' || request.type === 'put') executed = [request];
  else if (request.type === 'txn' && response?.type === 'txn') executed = response.succeeded ? request.success : request.failure;
  const writes: TxnOperation[] = [];
  for (const operation of executed) {
    if (operation.type === 'put') writes.push({ type: 'put', key: operation.key, value: operation.value });
    else if (operation.type === 'deleteRange') writes.push({ type: 'deleteRange', key: operation.key, ...(operation.rangeEnd === undefined ? {} : { rangeEnd: operation.rangeEnd }) });
  }
  const touchesState = executed.some((operation) => operation.type !== 'range' && rangeHolds(operation.key, operation.type === 'deleteRange' ? operation.rangeEnd : undefined, REVERSE_STATE_KEY));
  if (writes.length === 0 || writes.length >= TXN_OPS_MAX || touchesState) {
    throw new StrataError(
      ErrorCode.TOO_MANY_OPERATIONS,
      `a command of the new primary changed ${changes.length} keys: more than one etcd Txn takes (${TXN_OPS_MAX - 1} with the copy state), and its own operations do not fit one either; the reverse copy cannot write it as one revision`,
      { details: { keys: changes.length } },
    );
  }
  return writes;
}

// rangeHolds tells whether [key, rangeEnd) (etcd's conventions; no rangeEnd: the key alone) holds `target`.
function rangeHolds(key: Uint8Array, rangeEnd: Uint8Array | undefined, target: Uint8Array): boolean {
  if (rangeEnd === undefined || rangeEnd.byteLength === 0) return Buffer.compare(key, target) === 0;
  if (Buffer.compare(target, key) < 0) return false;
  return (rangeEnd.byteLength === 1 && rangeEnd[0] === 0) || Buffer.compare(target, rangeEnd) < 0;
}

async function readStateRetrying(etcd: EtcdClient, signal: AbortSignal, onEvent: ((event: ReverseEvent) => void) | undefined): Promise<ReverseHead | undefined> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await readReverseState(etcd, signal);
    } catch (error) {
      if (!isStrataError(error) || !RETRYABLE.has(error.code) || attempt >= REVERSE_ATTEMPTS_MAX || signal.aborted) throw error;
      onEvent?.({ kind: 'retry', what: 'read the reverse copy state', error, attempt });
      await pauseOrAbort(Math.min(2_000, 50 * 2 ** Math.min(6, attempt - 1)), signal);
    }
  }
}

// ReadyLoop: the driver contract of src/raft/README.md, one Ready at a time, as etcd's
// server/etcdserver/raft.go does it:
//
//   before   proposals and reads gathered since the last Ready go to the core
//   send     Ready.messages leave at once (the leader's appends overlap its own fsync)
//   persist  entries + hard state in one LogStore.save (group commit: what arrives meanwhile
//            waits for the next Ready), then messagesAfterPersist (votes, acknowledgements)
//   apply    committed entries — while the save runs when earlier Readys persisted them all,
//            after it otherwise (nothing is applied before it is in the local log)
//   advance  raft.advance(ready)
//
// A Ready that carries a snapshot (received from the leader, whole and checked) has no
// committed entries. Its state machine is restored into a fresh place before the save,
// while the old one still serves (prepareSnapshot: a failure there changes nothing); the
// save records the snapshot in the log and drops the entries it covers; then the restored
// state machine replaces the old one (installSnapshot), and only then do the messages that
// waited for the save (the acknowledgement to the leader) leave.
//
// Between the steps are named failpoints (ReadyLoopFailpoints): a test or the simulator can
// delay a step, fail it, or observe the order, as etcd's gofail points do. They are not for
// production and cost one undefined check each when unset.
//
// Tracing (ReadyLoopTracing, entry-traces.ts) sees each Ready as it is taken and each save as it
// runs; without a tracer it is absent and costs one undefined check per Ready and per save.
//
// Room for asynchronous storage writes (etcd-io/raft's AsyncStorageWrites): `persist` and
// `apply` are separate steps with their own promises, so a later change can let the save of
// Ready N+1 start before Ready N's apply ends without touching the callers.
//
// Invariant: at most one loop() runs at a time (`running`), and after stop() none starts.

import type { Entry, HardState, Message, Ready, Snapshot } from '../raft/index.ts';
import type { LogStore } from '../storage/index.ts';
import { reportTo } from '../obs/index.ts';
import { isEmptySaveRequest } from '../storage/index.ts';
import { assert } from '../util/index.ts';
import type { Clock } from '../util/index.ts';

/** READY_ROUNDS_MAX bounds the Readys one loop() handles before yielding to the event loop. */
export const READY_ROUNDS_MAX = 1_000_000;

/** ReadyLoopFailpoints are optional hooks between the steps; each may await, or throw to fail the step. */
export interface ReadyLoopFailpoints {
  readonly beforeSend?: (ready: Ready) => void | Promise<void>;
  readonly beforePersist?: (ready: Ready) => void | Promise<void>;
  readonly afterPersist?: (ready: Ready) => void | Promise<void>;
  readonly beforeApply?: (entries: readonly Entry[]) => void | Promise<void>;
  readonly afterApply?: (entries: readonly Entry[]) => void | Promise<void>;
  readonly beforeAdvance?: (ready: Ready) => void | Promise<void>;
}

/** ReadyCore is the part of the Raft core the loop drives. */
export interface ReadyCore {
  hasReady(): boolean;
  ready(): Ready;
  advance(ready: Ready): void;
}

/** ReadyLoopHandlers are the driver's parts the loop calls. */
export interface ReadyLoopHandlers {
  /** Called before each Ready is taken: hand queued proposals and reads to the core. */
  readonly beforeReady: () => void;
  /** Whether there is work that a loop turn would do besides a Ready (queued proposals, pending reads). */
  readonly hasWork: () => boolean;
  /** A Ready's soft state (role, leader) changed. */
  readonly onSoftState: (ready: Ready) => void;
  /** Applies committed entries to the state machine and settles what waited for them. */
  readonly apply: (entries: readonly Entry[]) => Promise<void>;
  /** A Ready's read states, after its entries are applied. */
  readonly onReadStates: (ready: Ready) => void;
  /** After advance(): e.g. a sole voter campaigns once its configuration is applied. */
  readonly afterAdvance: () => void;
  /** Sends messages to peers (a snapshot message goes to the snapshot sender). */
  readonly send: (messages: readonly Message[]) => void;
  /** Restores the state machine of a received snapshot into a fresh place; the old one keeps serving. */
  readonly prepareSnapshot: (snapshot: Snapshot) => Promise<void>;
  /** After the snapshot is in the log: the prepared state machine replaces the old one. */
  readonly installSnapshot: (snapshot: Snapshot) => Promise<void>;
  /** A Ready's entries and hard state are durable (before its messagesAfterPersist leave). */
  readonly persisted: (ready: Ready) => void;
  /** A step failed: the log or the state machine can no longer be trusted. */
  readonly onFatal: (error: Error) => void;
}

/** ReadyLoopTracing is what tracing needs of the loop (entry-traces.ts's EntryTraces in production). */
export interface ReadyLoopTracing {
  /** A Ready was taken: its committed entries are known committed from now. */
  readyTaken(ready: Ready): void;
  /** A Ready's save starts: answers what to call when it ended (with its error if it failed), or undefined. */
  persisting(ready: Ready): ((error?: unknown) => void) | undefined;
}

/** ReadyLoopOptions builds a ReadyLoop. */
export interface ReadyLoopOptions {
  readonly core: ReadyCore;
  readonly log: LogStore;
  readonly clock: Clock;
  readonly handlers: ReadyLoopHandlers;
  readonly failpoints?: ReadyLoopFailpoints | undefined;
  /** Absent when the member does not trace. */
  readonly tracing?: ReadyLoopTracing | undefined;
}

/** ReadyLoop handles the core's Readys in the contract's order; see the header of this file. */
export class ReadyLoop {
  private readonly options: ReadyLoopOptions;
  private scheduled = false;
  private running: Promise<void> | undefined;
  private stopped = false;
  // A hard state whose only change is the commit index, not yet written (see persist()).
  private deferredHardState: HardState | undefined;

  constructor(options: ReadyLoopOptions) {
    this.options = options;
  }

  /** schedule runs the loop on the next turn of the clock, unless it runs or is scheduled already. */
  schedule(): void {
    if (this.scheduled || this.running !== undefined || this.stopped) return;
    this.scheduled = true;
    this.options.clock.setImmediate(() => {
      this.scheduled = false;
      if (this.running !== undefined || this.stopped) return;
      this.running = this.loop().finally(() => {
        this.running = undefined;
        if (this.hasWork()) this.schedule();
      });
    });
  }

  /** stop lets the Ready being handled finish, starts no other, and writes a deferred hard state. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running?.catch(() => undefined);
    const hardState = this.deferredHardState;
    this.deferredHardState = undefined;
    if (hardState !== undefined) await this.options.log.save({ hardState });
  }

  private hasWork(): boolean {
    return !this.stopped && (this.options.handlers.hasWork() || this.options.core.hasReady());
  }

  private async loop(): Promise<void> {
    const { core, handlers } = this.options;
    for (let round = 0; round < READY_ROUNDS_MAX && !this.stopped; round += 1) {
      try {
        handlers.beforeReady();
        if (!core.hasReady()) return;
        await this.handleReady(core.ready());
        handlers.afterAdvance();
      } catch (error) {
        // The log or the state machine can no longer be trusted: no further Ready is taken.
        // onFatal decides what happens to the process (abortOnFatal in production).
        this.stopped = true;
        handlers.onFatal(error instanceof Error ? error : new Error(String(error)));
        return;
      }
    }
  }

  private async handleReady(ready: Ready): Promise<void> {
    const { core, handlers, failpoints, tracing } = this.options;
    tracing?.readyTaken(ready);
    if (ready.softState !== undefined) handlers.onSoftState(ready);
    if (ready.snapshot !== undefined) {
      assert(ready.committedEntries.length === 0, 'a Ready with a snapshot has no committed entries');
      await handlers.prepareSnapshot(ready.snapshot);
    }
    await failpoints?.beforeSend?.(ready);
    if (ready.messages.length > 0) handlers.send(ready.messages);
    const persisted = this.persist(ready);
    if (ready.committedEntries.length > 0) {
      // Entries below this Ready's first new entry were made durable by earlier Readys (each
      // is persisted before the next is taken), so applying them need not wait for this
      // Ready's fdatasync: the two overlap. A committed entry that is in this Ready (a
      // leader's entries that the followers alone made a quorum for, or a follower's entries
      // that arrived with their commit) waits, since nothing is applied before it is in the
      // local log.
      const firstNew = ready.entries[0]?.index;
      const lastCommitted = (ready.committedEntries[ready.committedEntries.length - 1] as Entry).index;
      if (firstNew !== undefined && lastCommitted >= firstNew) {
        await persisted;
        await this.apply(ready.committedEntries);
      } else {
        await Promise.all([persisted, this.apply(ready.committedEntries)]);
      }
    } else {
      await persisted;
    }
    handlers.onReadStates(ready);
    await failpoints?.beforeAdvance?.(ready);
    core.advance(ready);
  }

  private async apply(entries: readonly Entry[]): Promise<void> {
    const { handlers, failpoints } = this.options;
    assert(entries.length > 0, 'apply gets entries');
    await failpoints?.beforeApply?.(entries);
    await handlers.apply(entries);
    await failpoints?.afterApply?.(entries);
  }

  // persist makes a Ready's entries and hard state durable (one fdatasync), then sends the
  // messages that had to wait for it: votes cast and acknowledgements leave as soon as the
  // disk has them, without waiting for the apply that may run meanwhile.
  private async persist(ready: Ready): Promise<void> {
    const { log, handlers, failpoints } = this.options;
    await failpoints?.beforePersist?.(ready);
    if (ready.hardState !== undefined && !ready.mustSync && ready.snapshot === undefined) {
      // Only the commit index moved. It need not be durable (a restarted member learns it
      // again from the leader), so it rides with the next save that must be synced instead
      // of costing an fdatasync of its own on every commit (etcd's mustSync rule).
      this.deferredHardState = ready.hardState;
    } else {
      const hardState = ready.hardState ?? this.deferredHardState;
      const save = { ...(hardState !== undefined ? { hardState } : {}), ...(ready.snapshot !== undefined ? { snapshot: ready.snapshot } : {}), entries: ready.entries };
      if (!isEmptySaveRequest(save)) {
        this.deferredHardState = undefined;
        const saved = this.options.tracing?.persisting(ready);
        await (saved === undefined ? log.save(save) : reportTo(log.save(save), saved));
      }
    }
    handlers.persisted(ready);
    await failpoints?.afterPersist?.(ready);
    if (ready.snapshot !== undefined) await handlers.installSnapshot(ready.snapshot);
    if (ready.messagesAfterPersist.length > 0) handlers.send(ready.messagesAfterPersist);
  }
}

// ReadIndexTracker: linearizable reads, from the request to the moment this member may
// answer from its state machine (Raft thesis §6.4: a read index confirmed by a quorum, then
// applied >= read index).
//
// A read is in exactly one of these states until it is settled, then in none:
//   pending  — waiting to be asked for (the next Ready loop turn asks once for all pending)
//   asked    — in a batch whose read-index request (its context) is with the leader
//   applying — has its read index; waits until the applied index reaches it
// It is settled exactly once: resolved once applied >= its read index, or rejected by its
// deadline (TIMEOUT), its AbortSignal (CANCELED), or failAll() (STOPPED). A batch whose
// request or answer was lost (leader change, a lost message) goes back to pending and is
// asked again.
//
// Invariant: `count` is the number of unsettled reads, at most READS_PENDING_MAX, and each is
// in the collection of its state (which may still hold settled reads, purged lazily).

import type { Index, ReadState } from '../raft/index.ts';
import { assert, ErrorCode, StrataError } from '../util/index.ts';
import type { Clock } from '../util/index.ts';
import { REQUEST_TIMEOUT_MS } from './proposal-tracker.ts';
import { requestCanceled, requestTimedOut } from './request-errors.ts';

/** READS_PENDING_MAX bounds linearizable reads waiting for a read index or for apply. */
export const READS_PENDING_MAX = 65_536;

type ReadStatus = 'pending' | 'asked' | 'applying' | 'settled';

interface Read {
  status: ReadStatus;
  readonly deadlineMs: number;
  readIndex: Index;
  detach: (() => void) | undefined;
  readonly resolve: () => void;
  readonly reject: (error: StrataError) => void;
}

interface Batch {
  readonly reads: Read[];
  readonly askedAtTick: number;
}

/** ReadOptions bound one read: an AbortSignal and/or a timeout. */
export interface ReadOptions {
  readonly signal?: AbortSignal | undefined;
  readonly timeoutMs?: number | undefined;
}

/** ReadIndexCore is the part of the Raft core a read needs. */
export interface ReadIndexCore {
  /** Asks for a read index; throws NOT_LEADER when no leader can answer it. */
  readIndex(context: Uint8Array): void;
}

/** ReadIndexTracker holds linearizable reads until they may be served; see the header of this file. */
export class ReadIndexTracker {
  private readonly clock: Clock;
  private readonly askAgainTicks: number;
  private pending: Read[] = [];
  private readonly batches = new Map<number, Batch>();
  private applying: Read[] = [];
  private count = 0;
  private sequence = 0;
  private appliedIndex: Index = 0;
  private closedWith: StrataError | undefined;
  // The core refused the last ask (no leader could answer it: a removed leader handing over,
  // say). Pending reads then wait for the next tick or leader change instead of being asked
  // again on every turn of the loop, which would spin without letting time pass.
  private refusedUntilNotice = false;

  /** `askAgainTicks`: a batch without an answer after this many ticks is asked again (one election timeout). */
  constructor(clock: Clock, askAgainTicks: number) {
    assert(askAgainTicks > 0, 'a read-index batch is asked again after a positive number of ticks');
    this.clock = clock;
    this.askAgainTicks = askAgainTicks;
  }

  /** unsettled counts the reads not yet settled. */
  get unsettled(): number {
    return this.count;
  }

  /** hasPending tells whether reads wait to be asked for now (not while the core refuses until a tick or leader change). */
  get hasPending(): boolean {
    return !this.refusedUntilNotice && this.pending.some((read) => read.status === 'pending');
  }

  /** wait resolves once this member may serve a linearizable read that starts now. */
  wait(options: ReadOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.closedWith !== undefined) {
        reject(this.closedWith);
        return;
      }
      if (this.count >= READS_PENDING_MAX) {
        reject(new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests'));
        return;
      }
      const signal = options.signal;
      if (signal?.aborted === true) {
        reject(requestCanceled());
        return;
      }
      const read: Read = {
        status: 'pending',
        deadlineMs: this.clock.now() + (options.timeoutMs ?? REQUEST_TIMEOUT_MS),
        readIndex: 0,
        detach: undefined,
        resolve,
        reject,
      };
      if (signal !== undefined) {
        const onAbort = (): void => this.settle(read, requestCanceled());
        signal.addEventListener('abort', onAbort, { once: true });
        read.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.count += 1;
      this.pending.push(read);
    });
  }

  /**
   * askPending asks the core for one read index for every pending read, tagged with a fresh
   * context. With no leader to ask, they stay pending (their deadlines still run).
   */
  askPending(core: ReadIndexCore, tick: number): void {
    if (this.refusedUntilNotice) return;
    const reads = this.pending.filter((read) => read.status === 'pending');
    this.pending = [];
    if (reads.length === 0) return;
    this.sequence += 1;
    const context = new Uint8Array(8);
    new DataView(context.buffer).setFloat64(0, this.sequence);
    try {
      core.readIndex(context);
    } catch (error) {
      if (!(error instanceof StrataError) || error.code !== ErrorCode.NOT_LEADER) throw error;
      this.pending = reads;
      this.refusedUntilNotice = true;
      return;
    }
    for (const read of reads) read.status = 'asked';
    this.batches.set(this.sequence, { reads, askedAtTick: tick });
  }

  /** onReadStates hands each answered batch its read index. */
  onReadStates(states: readonly ReadState[]): void {
    for (const state of states) {
      if (state.context.byteLength !== 8) continue;
      const sequence = new DataView(state.context.buffer, state.context.byteOffset, 8).getFloat64(0);
      const batch = this.batches.get(sequence);
      if (batch === undefined) continue;
      this.batches.delete(sequence);
      for (const read of batch.reads) {
        if (read.status !== 'asked') continue;
        read.readIndex = state.index;
        if (state.index <= this.appliedIndex) {
          this.settle(read, undefined);
        } else {
          read.status = 'applying';
          this.applying.push(read);
        }
      }
    }
  }

  /** onApplied serves every read whose read index is now applied. */
  onApplied(appliedIndex: Index): void {
    assert(appliedIndex >= this.appliedIndex, 'the applied index never goes back');
    this.appliedIndex = appliedIndex;
    if (this.applying.length === 0) return;
    const still: Read[] = [];
    for (const read of this.applying) {
      if (read.status !== 'applying') continue;
      if (read.readIndex <= appliedIndex) this.settle(read, undefined);
      else still.push(read);
    }
    this.applying = still;
  }

  /** askAgain puts every asked batch back to pending: the leader changed, so a request or its answer may be lost. */
  askAgain(): void {
    this.refusedUntilNotice = false;
    for (const batch of this.batches.values()) this.requeue(batch);
    this.batches.clear();
  }

  /** onTick asks again for batches unanswered for askAgainTicks, and settles reads past their deadline. */
  onTick(tick: number): void {
    this.refusedUntilNotice = false;
    for (const [sequence, batch] of this.batches) {
      if (tick - batch.askedAtTick >= this.askAgainTicks) {
        this.batches.delete(sequence);
        this.requeue(batch);
      }
    }
    this.sweepDeadlines();
  }

  /** sweepDeadlines settles every read past its deadline with TIMEOUT, whatever its state. */
  sweepDeadlines(): void {
    const nowMs = this.clock.now();
    const expire = (read: Read): void => {
      if (read.status !== 'settled' && nowMs > read.deadlineMs) this.settle(read, requestTimedOut());
    };
    for (const read of this.pending) expire(read);
    for (const batch of this.batches.values()) for (const read of batch.reads) expire(read);
    for (const read of this.applying) expire(read);
    this.pending = this.pending.filter((read) => read.status === 'pending');
    this.applying = this.applying.filter((read) => read.status === 'applying');
  }

  /** failAll rejects every read with `error` and closes the tracker: later reads are refused with it. */
  failAll(error: StrataError): void {
    this.closedWith ??= error;
    for (const read of this.pending) this.settle(read, error);
    for (const batch of this.batches.values()) for (const read of batch.reads) this.settle(read, error);
    for (const read of this.applying) this.settle(read, error);
    this.pending = [];
    this.batches.clear();
    this.applying = [];
    assert(this.count === 0, 'failAll settles every read');
  }

  private requeue(batch: Batch): void {
    for (const read of batch.reads) {
      if (read.status !== 'asked') continue;
      read.status = 'pending';
      this.pending.push(read);
    }
  }

  private settle(read: Read, error: StrataError | undefined): void {
    if (read.status === 'settled') return;
    read.status = 'settled';
    this.count -= 1;
    assert(this.count >= 0, 'the read count never goes below zero');
    read.detach?.();
    read.detach = undefined;
    if (error === undefined) read.resolve();
    else read.reject(error);
  }
}

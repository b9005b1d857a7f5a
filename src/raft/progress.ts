// What the leader knows of one follower's log, and the replication state machine that
// decides how it sends (after etcd-io/raft's tracker/progress.go):
//   probe     — one append per heartbeat interval until the follower's match is found;
//   replicate — optimistic pipelining: next advances as soon as an append is sent;
//   snapshot  — a snapshot is on its way; nothing else is sent until it is reported.

import { assert } from '../util/assert.ts';
import { Inflights } from './inflights.ts';
import type { Index } from './types.ts';

/** ProgressState is how the leader currently replicates to a follower. */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** Progress tracks one follower (or learner) from the leader's point of view. */
export class Progress {
  // Invariant: 0 <= match < next.
  /** match is the highest index known to be in the follower's log. */
  match: Index;
  /** next is the index of the next entry to send. */
  next: Index;
  state: ProgressState = 'probe';
  /** pendingSnapshot is the index of the snapshot being sent (snapshot state only). */
  pendingSnapshot: Index = 0;
  /** recentActive is set on any message from the follower; check-quorum clears it each round. */
  recentActive = false;
  /**
   * msgAppFlowPaused holds back appends: in probe state after one probe until the follower
   * answers; in replicate state while the in-flight window is full. A heartbeat response
   * clears it, so one (possibly empty) append goes out even with a full window: if every
   * append in the window was lost, that append's answer is what frees the window.
   */
  msgAppFlowPaused = false;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(options: { next: Index; match: Index; isLearner: boolean; inflightCountMax: number; inflightBytesMax: number }) {
    assert(options.match < options.next, 'progress match < next');
    this.match = options.match;
    this.next = options.next;
    this.isLearner = options.isLearner;
    this.inflights = new Inflights(options.inflightCountMax, options.inflightBytesMax);
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  /** becomeProbe falls back to probing, from the match index or a finished snapshot. */
  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pendingSnapshot = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pendingSnapshot + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  /** becomeReplicate starts pipelining after the match index. */
  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  /** becomeSnapshot waits for a snapshot at `snapshotIndex` to be reported. */
  becomeSnapshot(snapshotIndex: Index): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /**
   * sentEntries records an append of `entryCount` entries (`sizeBytes` total) from next.
   * In replicate state next moves on at once (pipelining); in probe state the follower is
   * paused until it answers.
   */
  sentEntries(entryCount: number, sizeBytes: number): void {
    switch (this.state) {
      case 'replicate':
        if (entryCount > 0) {
          this.next += entryCount;
          this.inflights.add(this.next - 1, sizeBytes);
        }
        this.msgAppFlowPaused = this.inflights.full();
        break;
      case 'probe':
        if (entryCount > 0) this.msgAppFlowPaused = true;
        break;
      case 'snapshot':
        assert(false, 'sending entries to a follower in snapshot state');
    }
  }

  /** maybeUpdate records an acknowledgement up to `index`; returns whether match moved. */
  maybeUpdate(index: Index): boolean {
    if (index <= this.match) return false;
    this.match = index;
    this.next = Math.max(this.next, index + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /**
   * maybeDecreaseTo handles a rejection of the append at `rejected`, with the follower's
   * hint of where the logs may match. Returns false for a stale rejection.
   */
  maybeDecreaseTo(rejected: Index, matchHint: Index): boolean {
    if (this.state === 'replicate') {
      // A rejection of something already matched is stale (reordered or duplicated).
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // In probe state only a rejection of the last probe (next - 1) counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /** isPaused tells whether the leader must not send appends now (flow control). */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
      case 'replicate':
        return this.msgAppFlowPaused;
      case 'snapshot':
        return true;
    }
  }
}

// CatchUpPacer: the leader's log catch-up of learners, held to a byte rate.
//
// Why: a learner added to a cluster that still holds its log (no snapshot taken since the
// data was written) catches up by plain appends, and Raft sends those as fast as the
// learner acknowledges them: up to maxInflightBytes (32 MiB) per learner per round trip, on
// localhost with no bound at all. Measured in bench:migrate with 1 GiB of log and three
// learners, the leader read, encoded and sent their catch-up at full speed beside its
// clients and its put p99 rose 5.8×. Snapshot sends already run at the snapshot rate
// (--snapshot-send-rate-bytes[-under-load]); a learner's catch-up by log is the same work
// and gets the same rate, shared by all learners being paced.
//
// What: messages to a paced peer (a learner that is not also a voter: never a member whose
// answer a quorum may need) go out while the bucket has bytes; past that, they wait in the
// peer's queue, in order (a heartbeat never overtakes an append), and leave as the bucket
// refills, round-robin over the peers. Only appends with entries draw on the bucket. Delaying
// a learner's messages is what a slow link does, which Raft is built to tolerate, and
// Raft's own inflight window bounds each queue (asserted below). A learner that becomes a
// voter, or is removed, is released at once (release), and stop() drops everything queued.
//
// Invariants: a peer's messages leave in the order they were offered; a queue is non-empty
// only while a timer is armed or the bucket is about to be drawn from.

import type { Message, NodeId } from '../raft/index.ts';
import { messageSizeBytes } from '../transport/index.ts';
import type { Clock, TimerId } from '../util/index.ts';
import { assert } from '../util/index.ts';

/** PACED_MESSAGES_PER_PEER_MAX bounds a paced peer's queue (Raft's inflight window keeps it far lower). */
export const PACED_MESSAGES_PER_PEER_MAX = 16_384;
/** PACER_BURST_SECONDS: the bucket holds at most this many seconds of the rate (and at least one message). */
export const PACER_BURST_SECONDS = 0.05;

/** CatchUpPacerOptions builds a CatchUpPacer. */
export interface CatchUpPacerOptions {
  readonly clock: Clock;
  /** The rate the paced peers share, asked again each time the bucket refills. */
  readonly bytesPerSecond: () => number;
  /** Sends messages that may leave now. */
  readonly send: (messages: Message[]) => void;
}

/** CatchUpPacer holds learners' catch-up appends to a byte rate; see the header of this file. */
export class CatchUpPacer {
  private readonly options: CatchUpPacerOptions;
  private readonly queues = new Map<NodeId, Message[]>();
  private tokensBytes = 0;
  private refilledAtMs: number;
  private timer: TimerId | undefined;
  private stopped = false;

  constructor(options: CatchUpPacerOptions) {
    this.options = options;
    this.refilledAtMs = options.clock.now();
  }

  /** queuedMessages counts the messages waiting, for status and tests. */
  get queuedMessages(): number {
    let count = 0;
    for (const queue of this.queues.values()) count += queue.length;
    return count;
  }

  /**
   * pace takes the messages bound for `paced` peers and answers the ones that may leave now,
   * in their order: every message to an unpaced peer, and to a paced peer what the bucket
   * allows. The rest leave later through options.send.
   */
  pace(messages: readonly Message[], paced: ReadonlySet<NodeId>): Message[] {
    if (this.stopped) return [];
    const now: Message[] = [];
    for (const message of messages) {
      if (!paced.has(message.to)) {
        now.push(message);
        continue;
      }
      const queue = this.queues.get(message.to);
      if (queue === undefined && this.take(message)) {
        now.push(message);
        continue;
      }
      if (queue === undefined) this.queues.set(message.to, [message]);
      else {
        assert(queue.length < PACED_MESSAGES_PER_PEER_MAX, `more than ${PACED_MESSAGES_PER_PEER_MAX} messages paced for one learner`);
        queue.push(message);
      }
    }
    if (this.queues.size > 0) this.arm();
    return now;
  }

  /** release sends at once what waits for `peer` (it became a voter, or left); later messages are not held. */
  release(peer: NodeId): void {
    const queue = this.queues.get(peer);
    if (queue === undefined) return;
    this.queues.delete(peer);
    this.options.send(queue);
  }

  /** releaseAllBut releases every queued peer not in `paced` (the configuration changed). */
  releaseAllBut(paced: ReadonlySet<NodeId>): void {
    for (const peer of [...this.queues.keys()]) if (!paced.has(peer)) this.release(peer);
  }

  /** stop drops what is queued (Raft resends what a learner misses) and arms nothing more. */
  stop(): void {
    this.stopped = true;
    this.queues.clear();
    if (this.timer !== undefined) this.options.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  // take draws a message's bytes if the bucket has any left (it may go below zero by one
  // message: an append is never split, and the debt delays the next one).
  private take(message: Message): boolean {
    if (message.type !== 'append' || message.entries.length === 0) return true;
    this.refill();
    if (this.tokensBytes <= 0) return false;
    this.tokensBytes -= messageSizeBytes(message);
    return true;
  }

  private refill(): void {
    const nowMs = this.options.clock.now();
    const rate = this.options.bytesPerSecond();
    assert(Number.isFinite(rate) && rate > 0, 'the pacing rate is a positive number');
    const burstBytes = rate * PACER_BURST_SECONDS;
    this.tokensBytes = Math.min(burstBytes, this.tokensBytes + ((nowMs - this.refilledAtMs) / 1_000) * rate);
    this.refilledAtMs = nowMs;
  }

  private arm(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.refill();
    const rate = this.options.bytesPerSecond();
    const waitMs = this.tokensBytes > 0 ? 0 : Math.ceil((-this.tokensBytes / rate) * 1_000) + 1;
    this.timer = this.options.clock.setTimeout(() => {
      this.timer = undefined;
      this.drain();
    }, waitMs);
  }

  // drain sends from the queues round-robin while the bucket allows, then re-arms.
  private drain(): void {
    if (this.stopped) return;
    const out: Message[] = [];
    let progressed = true;
    while (progressed && this.queues.size > 0) {
      progressed = false;
      for (const [peer, queue] of [...this.queues]) {
        const head = queue[0];
        if (head === undefined || !this.take(head)) continue;
        out.push(head);
        queue.shift();
        // Heartbeats and other messages behind it go with it, up to the next append.
        while (queue.length > 0 && (queue[0] as Message).type !== 'append') out.push(queue.shift() as Message);
        if (queue.length === 0) this.queues.delete(peer);
        progressed = true;
      }
    }
    if (out.length > 0) this.options.send(out);
    if (this.queues.size > 0) this.arm();
  }
}

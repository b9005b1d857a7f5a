// The pieces of sending both transports share: the bounded per-peer queue that batches a
// turn's messages into frames, and the rate-limited onUnreachable reporter.

import type { Message, NodeId } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import { messageSizeBytes } from './message-codec.ts';

/**
 * PeerSendQueue holds messages waiting for one peer's stream. It never holds more than
 * `messagesMax` messages, nor more than `bytesMax` estimated bytes unless a single message
 * alone is larger (so a snapshot message can still be sent).
 */
export class PeerSendQueue {
  private messages: Message[] = [];
  private sizes: number[] = [];
  private bytes = 0;
  private readonly messagesMax: number;
  private readonly bytesMax: number;

  constructor(options: { messagesMax: number; bytesMax: number }) {
    assert(options.messagesMax > 0, 'messagesMax must be positive');
    assert(options.bytesMax > 0, 'bytesMax must be positive');
    this.messagesMax = options.messagesMax;
    this.bytesMax = options.bytesMax;
  }

  /** length is the number of queued messages. */
  get length(): number {
    return this.messages.length;
  }

  /** queuedBytes is the estimated size of the queued messages. */
  get queuedBytes(): number {
    return this.bytes;
  }

  /** push queues a message and returns true, or returns false when it does not fit. */
  push(message: Message): boolean {
    if (this.messages.length >= this.messagesMax) return false;
    const size = messageSizeBytes(message);
    if (this.messages.length > 0 && this.bytes + size > this.bytesMax) return false;
    this.messages.push(message);
    this.sizes.push(size);
    this.bytes += size;
    return true;
  }

  /** takeFrame removes and returns the oldest messages up to frameBytesMax (at least one). */
  takeFrame(frameBytesMax: number): Message[] {
    assert(this.messages.length > 0, 'takeFrame from an empty queue');
    let count = 0;
    let bytes = 0;
    while (count < this.messages.length) {
      const size = this.sizes[count] as number;
      if (count > 0 && bytes + size > frameBytesMax) break;
      bytes += size;
      count += 1;
    }
    const taken = count === this.messages.length ? this.messages : this.messages.slice(0, count);
    if (count === this.messages.length) {
      this.messages = [];
      this.sizes = [];
    } else {
      this.messages = this.messages.slice(count);
      this.sizes = this.sizes.slice(count);
    }
    this.bytes -= bytes;
    assert(this.bytes >= 0, 'queued bytes went negative');
    return taken;
  }

  /** clear drops every queued message and returns how many there were. */
  clear(): number {
    const dropped = this.messages.length;
    this.messages = [];
    this.sizes = [];
    this.bytes = 0;
    return dropped;
  }
}

/**
 * UnreachableReporter collects peers whose messages were dropped and reports each at most
 * once per interval. Reports are delivered by flush(), never from inside send(), so the
 * driver is not re-entered while it is handing messages over.
 */
export class UnreachableReporter {
  private readonly pending = new Set<NodeId>();
  private readonly lastReportMs = new Map<NodeId, number>();
  private readonly intervalMs: number;
  private readonly now: () => number;

  constructor(options: { intervalMs: number; now?: () => number }) {
    this.intervalMs = options.intervalMs;
    this.now = options.now ?? (() => performance.now());
  }

  /** mark records that messages to `peer` were dropped. */
  mark(peer: NodeId): void {
    this.pending.add(peer);
  }

  /** hasPending tells whether flush() has anything to report. */
  get hasPending(): boolean {
    return this.pending.size > 0;
  }

  /** flush calls report(peer) for each marked peer not reported within the interval. */
  flush(report: (peer: NodeId) => void): void {
    if (this.pending.size === 0) return;
    const now = this.now();
    const peers = [...this.pending];
    this.pending.clear();
    for (const peer of peers) {
      const last = this.lastReportMs.get(peer);
      if (last !== undefined && now - last < this.intervalMs) continue;
      this.lastReportMs.set(peer, now);
      report(peer);
    }
  }

  /** forget drops what is remembered about a peer (it was removed). */
  forget(peer: NodeId): void {
    this.pending.delete(peer);
    this.lastReportMs.delete(peer);
  }
}

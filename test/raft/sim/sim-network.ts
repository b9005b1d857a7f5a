// The simulated network: every message sent between nodes waits in one bounded queue until
// its delivery step. Faults are drawn per message from the run's seeded source: loss,
// duplication, random delay (which reorders), rare long delays (heavy reordering) and
// partitions, which are directed links that are down (so they can be asymmetric).

import type { Message, NodeId } from '../../../src/raft/index.ts';
import type { SeededRandom } from '../../../src/util/index.ts';
import type { NetworkFaults } from './sim-options.ts';

/** QUEUED_MESSAGES_MAX bounds the messages in flight; more are dropped as overflow. */
export const QUEUED_MESSAGES_MAX = 4_000;

/** LONG_DELAY_FACTOR is how many usual delays a long-delayed message may take. */
export const LONG_DELAY_FACTOR = 6;

/** DropReason says why the network did not deliver a message. */
export type DropReason = 'loss' | 'partition' | 'overflow' | 'down';

/** NetworkCounters count what the network did in a run. */
export interface NetworkCounters {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
}

interface InFlight {
  readonly message: Message;
  readonly deliverAtStep: number;
  // A random tie-break among messages due in the same step, so same-step order is shuffled.
  readonly order: number;
}

/** SimNetwork queues, delays, loses, duplicates and partitions messages. */
export class SimNetwork {
  /** counters are the network's totals for the run's summary. */
  readonly counters: NetworkCounters = { sent: 0, delivered: 0, dropped: 0, duplicated: 0 };
  private queue: InFlight[] = [];
  private faults: NetworkFaults;
  // Directed links that are down, keyed from * LINK_KEY_BASE + to.
  private readonly downLinks = new Set<number>();
  // For in-order links: the step the last message queued on each link is due, and a
  // sequence number that orders messages due in the same step.
  private readonly linkLastDueStep = new Map<number, number>();
  private sequence = 0;
  private readonly random: SeededRandom;
  private readonly onDrop: (message: Message, reason: DropReason) => void;

  constructor(random: SeededRandom, faults: NetworkFaults, onDrop: (message: Message, reason: DropReason) => void) {
    this.random = random;
    this.faults = faults;
    this.onDrop = onDrop;
  }

  /** setFaults replaces the fault rates (healing sets loss and duplication to zero). */
  setFaults(faults: NetworkFaults): void {
    this.faults = faults;
  }

  /** send puts a message on the wire at `step`; it may be lost, duplicated or delayed. */
  send(step: number, message: Message): void {
    this.counters.sent += 1;
    if (this.random.intBelow(1000) < this.faults.lossPerMille) {
      this.drop(message, 'loss');
      return;
    }
    this.enqueue(step, message);
    if (this.random.intBelow(1000) < this.faults.duplicatePerMille) {
      this.counters.duplicated += 1;
      this.enqueue(step, message);
    }
  }

  /**
   * takeDue removes and returns the messages due at `step` whose link is up, in delivery
   * order; messages on a link that is down are dropped (a partition cuts what is in flight).
   */
  takeDue(step: number): Message[] {
    const due: InFlight[] = [];
    const waiting: InFlight[] = [];
    for (const item of this.queue) (item.deliverAtStep <= step ? due : waiting).push(item);
    if (due.length === 0) return [];
    this.queue = waiting;
    due.sort((a, b) => a.deliverAtStep - b.deliverAtStep || a.order - b.order);
    const out: Message[] = [];
    for (const item of due) {
      if (this.isLinkDown(item.message.from, item.message.to)) this.drop(item.message, 'partition');
      else out.push(item.message);
    }
    return out;
  }

  /** dropDelivery records a due message whose receiver was not running. */
  dropDelivery(message: Message): void {
    this.drop(message, 'down');
  }

  /** countDelivered records that a message reached its receiver. */
  countDelivered(): void {
    this.counters.delivered += 1;
  }

  /** queuedCount is the number of messages in flight. */
  queuedCount(): number {
    return this.queue.length;
  }

  /** isLinkDown tells whether messages from `from` to `to` are cut. */
  isLinkDown(from: NodeId, to: NodeId): boolean {
    return this.downLinks.size > 0 && this.downLinks.has(linkKey(from, to));
  }

  /** partition cuts the directed links from every node in `from` to every node in `to`. */
  partition(from: readonly NodeId[], to: readonly NodeId[]): void {
    for (const a of from) {
      for (const b of to) if (a !== b) this.downLinks.add(linkKey(a, b));
    }
  }

  /** heal brings every link back up. */
  heal(): void {
    this.downLinks.clear();
  }

  /** describeLinksDown lists the cut links for the trace. */
  describeLinksDown(): string {
    const links = [...this.downLinks].sort((a, b) => a - b).map((key) => `${Math.floor(key / LINK_KEY_BASE)}->${key % LINK_KEY_BASE}`);
    return links.length === 0 ? 'none' : links.join(' ');
  }

  private enqueue(step: number, message: Message): void {
    if (this.queue.length >= QUEUED_MESSAGES_MAX) {
      this.drop(message, 'overflow');
      return;
    }
    const { delayStepsMax, longDelayPerMille, inOrder } = this.faults;
    const long = this.random.intBelow(1000) < longDelayPerMille;
    const delay = 1 + this.random.intBelow(long ? delayStepsMax * LONG_DELAY_FACTOR : delayStepsMax);
    if (!inOrder) {
      this.queue.push({ message, deliverAtStep: step + delay, order: this.random.nextUint32() });
      return;
    }
    const key = linkKey(message.from, message.to);
    const deliverAtStep = Math.max(step + delay, this.linkLastDueStep.get(key) ?? 0);
    this.linkLastDueStep.set(key, deliverAtStep);
    this.sequence += 1;
    this.queue.push({ message, deliverAtStep, order: this.sequence });
  }

  private drop(message: Message, reason: DropReason): void {
    this.counters.dropped += 1;
    this.onDrop(message, reason);
  }
}

// Node ids are small (at most NODE_IDS_MAX), so a fixed base keys a directed link.
const LINK_KEY_BASE = 1_000;

function linkKey(from: NodeId, to: NodeId): number {
  return from * LINK_KEY_BASE + to;
}

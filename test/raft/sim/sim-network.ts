// The simulated network: every message sent between nodes waits in one bounded queue until
// its delivery step. Faults are drawn per message from the run's seeded source: loss,
// duplication, random delay (which reorders), rare long delays (heavy reordering), held
// messages and late duplicates (a message, or a second copy of it, delivered more than an
// election timeout after it was sent, as a stalled connection or a late retransmission
// delivers it: into a later term) and partitions, which are directed links that are down
// (so they can be asymmetric). The network also keeps copies of the last responses it
// carried, which the simulation has it deliver again when that hurts most (replay).

import type { Message, NodeId } from '../../../src/raft/index.ts';
import type { SeededRandom } from '../../../src/util/index.ts';
import type { NetworkFaults } from './sim-options.ts';

/** QUEUED_MESSAGES_MAX bounds the messages in flight; more are dropped as overflow. */
export const QUEUED_MESSAGES_MAX = 4_000;

/** LONG_DELAY_FACTOR is how many usual delays a long-delayed message may take. */
export const LONG_DELAY_FACTOR = 6;

/** DropReason says why the network did not deliver a message. */
export type DropReason = 'loss' | 'partition' | 'overflow' | 'down';

/** RESPONSES_REMEMBERED_MAX bounds the copies of old responses the network keeps, per kind. */
export const RESPONSES_REMEMBERED_MAX = 16;

/**
 * LateKind says how a message comes late: held back past an election timeout, a second
 * copy held back as long, or an old copy delivered again (replayed) at a moment the
 * simulation picks.
 */
export type LateKind = 'held' | 'late duplicate' | 'replayed';

/** RememberedResponse is a copy of a response the network may deliver again, late. */
export interface RememberedResponse {
  readonly message: Message;
  readonly sentStep: number;
}

/** NetworkCounters count what the network did in a run. */
export interface NetworkCounters {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  /** Messages or copies held back past an election timeout, or old copies replayed. */
  late: number;
}

/** NetworkEvents is how the network reports what it did to a message, for the trace. */
export interface NetworkEvents {
  onDrop(message: Message, reason: DropReason): void;
  onLate(message: Message, kind: LateKind, dueStep: number, sentStep: number): void;
}

interface InFlight {
  readonly message: Message;
  readonly deliverAtStep: number;
  // A random tie-break among messages due in the same step, so same-step order is shuffled.
  readonly order: number;
}

/** SimNetwork queues, delays, loses, duplicates, holds back, replays and partitions messages. */
export class SimNetwork {
  /** counters are the network's totals for the run's summary. */
  readonly counters: NetworkCounters = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, late: 0 };
  private queue: InFlight[] = [];
  private faults: NetworkFaults;
  // Directed links that are down, keyed from * LINK_KEY_BASE + to.
  private readonly downLinks = new Set<number>();
  // For in-order links: the step the last message queued on each link is due, and a
  // sequence number that orders messages due in the same step.
  private readonly linkLastDueStep = new Map<number, number>();
  private sequence = 0;
  // Rings of the last responses sent, one for elections and one for replication, so vote
  // responses are not pushed out by the far more numerous append responses.
  private readonly voteResponses: RememberedResponse[] = [];
  private readonly appendResponses: RememberedResponse[] = [];
  private voteResponsesNext = 0;
  private appendResponsesNext = 0;
  private readonly random: SeededRandom;
  private readonly events: NetworkEvents;

  constructor(random: SeededRandom, faults: NetworkFaults, events: NetworkEvents) {
    this.random = random;
    this.faults = faults;
    this.events = events;
  }

  /** setFaults replaces the fault rates (healing sets loss, duplication and holds to zero). */
  setFaults(faults: NetworkFaults): void {
    this.faults = faults;
  }

  /**
   * send puts a message on the wire at `step`; it may be lost, duplicated, delayed, held
   * back past an election timeout, or delivered once more after such a delay.
   */
  send(step: number, message: Message): void {
    this.counters.sent += 1;
    if (this.random.intBelow(1000) < this.faults.lossPerMille) {
      this.drop(message, 'loss');
      return;
    }
    this.remember(step, message);
    // Rates of zero draw nothing: runs without holds pay no extra draws per message.
    const { heldPerMille, lateDuplicatePerMille } = this.faults;
    this.enqueue(step, message, heldPerMille > 0 && this.random.intBelow(1000) < heldPerMille ? 'held' : undefined, step);
    if (this.random.intBelow(1000) < this.faults.duplicatePerMille) {
      this.counters.duplicated += 1;
      this.enqueue(step, message, undefined, step);
    }
    if (lateDuplicatePerMille > 0 && this.random.intBelow(1000) < lateDuplicatePerMille) {
      this.counters.duplicated += 1;
      this.enqueue(step, message, 'late duplicate', step);
    }
  }

  /** rememberedResponses lists the old responses the network keeps copies of, oldest first per kind. */
  rememberedResponses(): RememberedResponse[] {
    const rotate = (ring: RememberedResponse[], next: number): RememberedResponse[] => [...ring.slice(next), ...ring.slice(0, next)];
    return [...rotate(this.voteResponses, this.voteResponsesNext), ...rotate(this.appendResponses, this.appendResponsesNext)];
  }

  /** replay delivers one more copy of an old response after the usual delay (a late duplicate). */
  replay(step: number, copy: RememberedResponse): void {
    this.counters.duplicated += 1;
    this.enqueue(step, copy.message, 'replayed', copy.sentStep);
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

  // `late` set: a held message or late duplicate waits heldDelayStepsMin..heldDelayStepsMax
  // steps, a replayed copy the usual delay. On an in-order link a held message holds back
  // what follows it too, as a stalled TCP stream does; late and replayed copies come from
  // outside the stream (a retransmission on a connection the stream replaced), so they
  // hold back nothing.
  private enqueue(step: number, message: Message, late: LateKind | undefined, sentStep: number): void {
    if (this.queue.length >= QUEUED_MESSAGES_MAX) {
      this.drop(message, 'overflow');
      return;
    }
    const { delayStepsMax, longDelayPerMille, inOrder } = this.faults;
    let delay: number;
    if (late === 'held' || late === 'late duplicate') {
      const { heldDelayStepsMin, heldDelayStepsMax } = this.faults;
      delay = heldDelayStepsMin + this.random.intBelow(heldDelayStepsMax - heldDelayStepsMin + 1);
    } else {
      const long = this.random.intBelow(1000) < longDelayPerMille;
      delay = 1 + this.random.intBelow(long ? delayStepsMax * LONG_DELAY_FACTOR : delayStepsMax);
    }
    if (late !== undefined) {
      this.counters.late += 1;
      this.events.onLate(message, late, step + delay, sentStep);
    }
    if (!inOrder || (late !== undefined && late !== 'held')) {
      this.queue.push({ message, deliverAtStep: step + delay, order: this.random.nextUint32() });
      return;
    }
    const key = linkKey(message.from, message.to);
    const deliverAtStep = Math.max(step + delay, this.linkLastDueStep.get(key) ?? 0);
    this.linkLastDueStep.set(key, deliverAtStep);
    this.sequence += 1;
    this.queue.push({ message, deliverAtStep, order: this.sequence });
  }

  private remember(step: number, message: Message): void {
    if (message.type === 'voteResponse' || message.type === 'preVoteResponse') {
      this.voteResponsesNext = rememberInRing(this.voteResponses, this.voteResponsesNext, { message, sentStep: step });
    } else if (message.type === 'appendResponse') {
      this.appendResponsesNext = rememberInRing(this.appendResponses, this.appendResponsesNext, { message, sentStep: step });
    }
  }

  private drop(message: Message, reason: DropReason): void {
    this.counters.dropped += 1;
    this.events.onDrop(message, reason);
  }
}

// Puts `copy` in a ring of RESPONSES_REMEMBERED_MAX slots at `next`; returns the next slot.
function rememberInRing(ring: RememberedResponse[], next: number, copy: RememberedResponse): number {
  if (ring.length < RESPONSES_REMEMBERED_MAX) ring.push(copy);
  else ring[next] = copy;
  return (next + 1) % RESPONSES_REMEMBERED_MAX;
}

// Node ids are small (at most NODE_IDS_MAX), so a fixed base keys a directed link.
const LINK_KEY_BASE = 1_000;

function linkKey(from: NodeId, to: NodeId): number {
  return from * LINK_KEY_BASE + to;
}

// ProposalTracker: every write this member accepted and has not answered yet.
//
// A proposal is in exactly one of these states until it is settled, then in none:
//   taken      — just created or taken out of a queue: the router is deciding where it goes
//                (transient: never survives a synchronous step of the driver)
//   queued     — waiting for this leader's next Ready (flushProposals hands it to the core)
//   held       — no leader is known, or leadership is being handed over: waits for one
//   forwarding — on its way to the leader: gathered for a batch, or in a peer call
//   in flight  — appended to this leader's log at (index, term), waiting to be applied
// It is settled exactly once: by its outcome (applied), a refusal, its deadline (TIMEOUT),
// its AbortSignal (CANCELED), failHeld() (MEMBER_REMOVED: a removed member has nobody to pass
// held writes to) or failAll() (STOPPED). A `taken` proposal is in no collection, so only a
// synchronous step of the driver may hold one; after failAll() the
// tracker is closed: whatever arrives later (a forwarding reply that says "not leader"
// during stop(), say) is settled with the same error instead of being held forever.
//
// Invariant: `counts[state]` is the number of unsettled proposals whose `state` is that state,
// and each is in that state's collection (collections may still hold settled proposals,
// which are skipped and purged lazily).

import type { Span } from '@opentelemetry/api';
import type { Index, Term } from '../raft/index.ts';
import type { KvResponse } from '../storage/index.ts';
import { assert, ErrorCode, StrataError } from '../util/index.ts';
import type { Clock } from '../util/index.ts';
import { requestCanceled, requestTimedOut } from './request-errors.ts';

/** PROPOSALS_QUEUED_MAX bounds proposals waiting for the next Ready (beyond it: "too many requests"). */
export const PROPOSALS_QUEUED_MAX = 16_384;
/** PROPOSALS_HELD_MAX bounds proposals held while there is no leader or leadership is being handed over. */
export const PROPOSALS_HELD_MAX = 16_384;
/** PROPOSALS_IN_FLIGHT_MAX bounds proposals appended and not yet applied. */
export const PROPOSALS_IN_FLIGHT_MAX = 65_536;
/** PROPOSALS_FORWARDING_MAX bounds proposals on their way to the leader. */
export const PROPOSALS_FORWARDING_MAX = 65_536;
/** REQUEST_TIMEOUT_MS is a request's deadline when the caller gives none (etcd: 5 s + election). */
export const REQUEST_TIMEOUT_MS = 7_000;

/** Outcome is what an applied command produced: its KV response (none for internal commands), or the refusal the state machine gave. */
export interface Outcome {
  readonly response?: KvResponse;
  readonly error?: StrataError;
}

/** ProposalState names where a proposal is; see the header of proposal-tracker.ts. */
export type ProposalState = 'taken' | 'queued' | 'held' | 'forwarding' | 'in-flight' | 'settled';

/** Proposal is one write on its journey; only the tracker changes its state. */
export interface Proposal {
  readonly data: Uint8Array;
  readonly deadlineMs: number;
  /** How often it was passed from member to member before reaching this one. */
  readonly hops: number;
  readonly state: ProposalState;
  /** Its `raft.propose` span when its trace is sampled (entry-traces.ts); undefined otherwise, and always with tracing off. */
  readonly trace: Span | undefined;
}

// The tracker's own view of a proposal: the public fields plus how to settle it.
interface TrackedProposal extends Proposal {
  state: ProposalState;
  detach: (() => void) | undefined;
  readonly resolve: (outcome: Outcome) => void;
  readonly reject: (error: StrataError) => void;
}

/** ProposalOptions bound one proposal: an AbortSignal and/or a timeout. */
export interface ProposalOptions {
  readonly signal?: AbortSignal | undefined;
  readonly timeoutMs?: number | undefined;
}

/** ProposalCounts reports how many unsettled proposals are in each state. */
export type ProposalCounts = Readonly<Record<Exclude<ProposalState, 'settled'>, number>>;

const BOUNDS: Readonly<Record<'queued' | 'held' | 'forwarding' | 'in-flight', number>> = {
  queued: PROPOSALS_QUEUED_MAX,
  held: PROPOSALS_HELD_MAX,
  forwarding: PROPOSALS_FORWARDING_MAX,
  'in-flight': PROPOSALS_IN_FLIGHT_MAX,
};

/** ProposalTracker holds every accepted write until it is settled; see the header of this file. */
export class ProposalTracker {
  private readonly clock: Clock;
  private queued: TrackedProposal[] = [];
  private held: TrackedProposal[] = [];
  private readonly forwarding = new Set<TrackedProposal>();
  private readonly inFlight = new Map<Index, { readonly term: Term; readonly proposal: TrackedProposal }>();
  private readonly counts: Record<Exclude<ProposalState, 'settled'>, number> = { taken: 0, queued: 0, held: 0, forwarding: 0, 'in-flight': 0 };
  private closedWith: StrataError | undefined;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  /**
   * create accepts a write and returns it (in state `taken`: route it next) with the promise
   * its caller awaits. A closed tracker, or an already aborted signal, settles it at once.
   */
  create(data: Uint8Array, options: ProposalOptions, hops: number, trace?: Span): { readonly proposal: Proposal; readonly outcome: Promise<Outcome> } {
    assert(Number.isInteger(hops) && hops >= 0, 'a proposal has a whole number of hops');
    let resolve: (outcome: Outcome) => void = () => undefined;
    let reject: (error: StrataError) => void = () => undefined;
    const outcome = new Promise<Outcome>((resolveOutcome, rejectOutcome) => {
      resolve = resolveOutcome;
      reject = rejectOutcome;
    });
    const proposal: TrackedProposal = {
      data,
      deadlineMs: this.clock.now() + (options.timeoutMs ?? REQUEST_TIMEOUT_MS),
      hops,
      state: 'taken',
      trace,
      detach: undefined,
      resolve,
      reject,
    };
    this.counts.taken += 1;
    const signal = options.signal;
    if (this.closedWith !== undefined) {
      this.settle(proposal, this.closedWith);
    } else if (signal?.aborted === true) {
      this.settle(proposal, requestCanceled());
    } else if (signal !== undefined) {
      const onAbort = (): void => this.settle(proposal, requestCanceled());
      signal.addEventListener('abort', onAbort, { once: true });
      proposal.detach = () => signal.removeEventListener('abort', onAbort);
    }
    return { proposal, outcome };
  }

  /** isClosed tells whether failAll() has closed the tracker. */
  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }

  /** counts reports the unsettled proposals in each state. */
  stateCounts(): ProposalCounts {
    return { ...this.counts };
  }

  /** unsettled counts every proposal not yet settled. */
  get unsettled(): number {
    const counts = this.counts;
    return counts.taken + counts.queued + counts.held + counts.forwarding + counts['in-flight'];
  }

  /** queue puts a taken proposal into the next Ready; when full it is settled with PROPOSAL_DROPPED. */
  queue(proposal: Proposal): void {
    const tracked = this.take(proposal);
    if (tracked === undefined) return;
    if (this.counts.queued >= BOUNDS.queued || this.counts['in-flight'] >= BOUNDS['in-flight']) {
      this.settle(tracked, new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests'));
      return;
    }
    this.move(tracked, 'queued');
    this.queued.push(tracked);
  }

  /** hold keeps a taken proposal until a leader is known; when full it is settled with NO_LEADER. */
  hold(proposal: Proposal): void {
    const tracked = this.take(proposal);
    if (tracked === undefined) return;
    if (this.counts.held >= BOUNDS.held) {
      this.settle(tracked, new StrataError(ErrorCode.NO_LEADER, 'etcdserver: no leader'));
      return;
    }
    this.move(tracked, 'held');
    this.held.push(tracked);
  }

  /** startForwarding marks a taken proposal as on its way to the leader; when full it is settled with PROPOSAL_DROPPED. */
  startForwarding(proposal: Proposal): boolean {
    const tracked = this.take(proposal);
    if (tracked === undefined) return false;
    if (this.counts.forwarding >= BOUNDS.forwarding) {
      this.settle(tracked, new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests'));
      return false;
    }
    this.move(tracked, 'forwarding');
    this.forwarding.add(tracked);
    return true;
  }

  /** forwardingRefused takes a forwarded proposal back (state `taken`) to be routed again. */
  forwardingRefused(proposal: Proposal): boolean {
    const tracked = proposal as TrackedProposal;
    if (tracked.state === 'settled') return false;
    assert(tracked.state === 'forwarding', `forwardingRefused: the proposal is ${tracked.state}, not forwarding`);
    this.forwarding.delete(tracked);
    this.move(tracked, 'taken');
    return this.stillOpen(tracked);
  }

  /** markInFlight records that a taken proposal was appended at (index, term). */
  markInFlight(proposal: Proposal, index: Index, term: Term): void {
    const tracked = proposal as TrackedProposal;
    assert(tracked.state === 'taken', `markInFlight: the proposal is ${tracked.state}, not taken`);
    assert(!this.inFlight.has(index), `markInFlight: index ${index} already has a proposal`);
    this.move(tracked, 'in-flight');
    this.inFlight.set(index, { term, proposal: tracked });
  }

  /** takeQueued returns the queued proposals (now `taken`), oldest first. */
  takeQueued(): Proposal[] {
    const taken = this.takeAll(this.queued);
    this.queued = [];
    return taken;
  }

  /** takeHeld returns the held proposals (now `taken`), oldest first. */
  takeHeld(): Proposal[] {
    const taken = this.takeAll(this.held);
    this.held = [];
    return taken;
  }

  /** hasQueued tells whether a proposal waits for the next Ready. */
  get hasQueued(): boolean {
    return this.counts.queued > 0;
  }

  /** hasHeld tells whether a proposal waits for a leader. */
  get hasHeld(): boolean {
    return this.counts.held > 0;
  }

  /**
   * applied settles the proposal appended at `index` when the entry applied there is ours
   * (same term) and returns undefined; when another entry took the index, ours was never
   * committed and never will be, so it is returned (state `taken`) to be routed again: it
   * cannot be applied twice.
   */
  applied(index: Index, term: Term, outcome: Outcome): Proposal | undefined {
    const waiting = this.inFlight.get(index);
    if (waiting === undefined) return undefined;
    this.inFlight.delete(index);
    const { proposal } = waiting;
    if (proposal.state === 'settled') return undefined;
    if (waiting.term === term) {
      this.settle(proposal, outcome);
      return undefined;
    }
    this.move(proposal, 'taken');
    return this.stillOpen(proposal) ? proposal : undefined;
  }

  /** settle answers a proposal (outcome or error); a settled proposal is left alone. */
  settle(proposal: Proposal, result: Outcome | StrataError): void {
    const tracked = proposal as TrackedProposal;
    if (tracked.state === 'settled') return;
    this.counts[tracked.state] -= 1;
    assert(this.counts[tracked.state] >= 0, 'proposal counts never go below zero');
    if (tracked.state === 'forwarding') this.forwarding.delete(tracked);
    tracked.state = 'settled';
    tracked.detach?.();
    tracked.detach = undefined;
    if (result instanceof StrataError) tracked.reject(result);
    else tracked.resolve(result);
  }

  /**
   * sweepDeadlines settles every proposal past its deadline with TIMEOUT. An in-flight one may
   * still commit later; its caller just stops waiting, as with etcd.
   */
  sweepDeadlines(): void {
    const nowMs = this.clock.now();
    const expired = (proposal: TrackedProposal): boolean => proposal.state !== 'settled' && nowMs > proposal.deadlineMs;
    for (const proposal of [...this.queued, ...this.held, ...this.forwarding]) if (expired(proposal)) this.settle(proposal, requestTimedOut());
    for (const [index, { proposal }] of this.inFlight) {
      if (expired(proposal)) {
        this.inFlight.delete(index);
        this.settle(proposal, requestTimedOut());
      }
    }
    this.queued = this.queued.filter((proposal) => proposal.state === 'queued');
    this.held = this.held.filter((proposal) => proposal.state === 'held');
  }

  /**
   * coveredBySnapshot settles the in-flight proposals at or below a snapshot this member
   * installed with `error`: their entries may or may not be in the snapshot's state, and
   * their outcomes were never computed here, so the answer is unknown (a timeout, as etcd
   * answers a write whose fate it cannot tell). Returns how many were settled.
   */
  coveredBySnapshot(snapshotIndex: Index, error: StrataError): number {
    let settled = 0;
    for (const [index, { proposal }] of this.inFlight) {
      if (index > snapshotIndex) continue;
      this.inFlight.delete(index);
      this.settle(proposal, error);
      settled += 1;
    }
    return settled;
  }

  /**
   * failAll settles every proposal and closes the tracker: later ones are settled with `error`
   * too. Proposals that never left this member (queued, held) get `error`, which says they did
   * nothing; those already forwarded or in the log may still be applied, so they get
   * `ambiguous` (default `error`), which must not tell a client it may send them again.
   */
  failAll(error: StrataError, ambiguous: StrataError = error): void {
    this.closedWith ??= error;
    for (const proposal of [...this.queued, ...this.held]) this.settle(proposal, error);
    for (const proposal of [...this.forwarding, ...[...this.inFlight.values()].map((waiting) => waiting.proposal)]) this.settle(proposal, ambiguous);
    this.queued = [];
    this.held = [];
    this.forwarding.clear();
    this.inFlight.clear();
  }

  /** failHeld settles the held proposals with `error` (a removed member has nobody to pass them to). */
  failHeld(error: StrataError): void {
    for (const proposal of this.held) this.settle(proposal, error);
    this.held = [];
  }

  // take checks that a proposal may move and returns it; a settled one is skipped.
  private take(proposal: Proposal): TrackedProposal | undefined {
    const tracked = proposal as TrackedProposal;
    if (tracked.state === 'settled') return undefined;
    assert(tracked.state === 'taken', `a proposal moves only from taken, not from ${tracked.state}`);
    return this.stillOpen(tracked) ? tracked : undefined;
  }

  // stillOpen settles a proposal with the closing error once the tracker is closed.
  private stillOpen(tracked: TrackedProposal): boolean {
    if (this.closedWith === undefined) return true;
    this.settle(tracked, this.closedWith);
    return false;
  }

  private takeAll(list: readonly TrackedProposal[]): Proposal[] {
    const taken: Proposal[] = [];
    for (const proposal of list) {
      if (proposal.state === 'settled') continue;
      this.move(proposal, 'taken');
      taken.push(proposal);
    }
    return taken;
  }

  private move(proposal: TrackedProposal, to: Exclude<ProposalState, 'settled'>): void {
    assert(proposal.state !== 'settled', 'a settled proposal does not move');
    this.counts[proposal.state] -= 1;
    this.counts[to] += 1;
    proposal.state = to;
  }
}

// ProposalRouter: where a write goes next. On the leader it joins the next Ready; with no
// leader it is held; on a follower it is passed to the leader. Writes bound for one leader in
// one turn of the event loop leave together as one peer call ('propose'), so that after a
// leader transfer every held write goes at once and a member that clients write through pays
// one call per batch. The wire format of that call lives here too.
//
// A leader that refuses a forwarded write before proposing it (NOT_LEADER, NO_LEADER, or
// MEMBER_REMOVED from a leader that was just removed and is handing over: a removed member
// proposes nothing) has appended nothing, so the write is routed again; any other answer
// settles it. The router
// owns no proposal: the ProposalTracker does, and it settles whatever arrives after stop().
//
// A traced write (one with a `raft.propose` span) is forwarded under a `raft.forward` span of
// its own, whose traceparent rides beside it in the call: the call carries a batch, and each
// write in it belongs to its own trace, which one context in the call's metadata could not say.
// The leader's `raft.propose` span for it is that span's child (entry-traces.ts).

import type { Span, Tracer } from '@opentelemetry/api';
import { SpanKind } from '@opentelemetry/api';
import { Packr } from 'msgpackr';
import { ATTR_RAFT_BATCH_SIZE, ATTR_RAFT_LEADER, contextOf, endSpan, formatTraceparent, TRACEPARENT_LENGTH } from '../obs/index.ts';
import type { NodeId } from '../raft/index.ts';
import { NO_NODE } from '../raft/index.ts';
import type { KvResponse } from '../storage/index.ts';
import type { Transport } from '../transport/index.ts';
import { ErrorCode, isErrorCode, isStrataError, StrataError } from '../util/index.ts';
import type { Clock } from '../util/index.ts';
import type { Outcome, Proposal, ProposalTracker } from './proposal-tracker.ts';
import { requestTimedOut } from './request-errors.ts';

/** FORWARD_HOPS_MAX bounds how often a proposal is passed from member to member. */
export const FORWARD_HOPS_MAX = 3;
/** FORWARD_BATCH_MAX bounds the proposals one forwarding peer call carries. */
export const FORWARD_BATCH_MAX = 1_024;

// Peer payloads are small structured values: msgpackr keeps Uint8Array keys and values as bytes.
const packr = new Packr({ useRecords: false, moreTypes: false });

/** RouterContext is what the router needs of the driver. */
export interface RouterContext {
  readonly selfId: NodeId;
  readonly clock: Clock;
  readonly transport: Transport;
  readonly tracker: ProposalTracker;
  /** The leader the core knows now (NO_NODE: none): the one source of truth for routing. */
  readonly leader: () => NodeId;
  /** Wakes the Ready loop after a proposal was queued. */
  readonly scheduleLoop: () => void;
  /** The member's tracer; undefined when it does not trace. */
  readonly tracer?: Tracer | undefined;
}

/** FORWARD_SPAN is the span a traced write is forwarded under. */
export const FORWARD_SPAN = 'raft.forward';

/** ProposalRouter sends proposals where they can make progress; see the header of this file. */
export class ProposalRouter {
  private readonly context: RouterContext;
  // Proposals gathered for one leader in this turn of the event loop.
  private readonly toForward = new Map<NodeId, Proposal[]>();
  private flushScheduled = false;

  constructor(context: RouterContext) {
    this.context = context;
  }

  /** route sends a taken proposal into this leader's next Ready, to the leader, or into the held queue. */
  route(proposal: Proposal): void {
    const { tracker, clock } = this.context;
    if (proposal.state === 'settled') return;
    if (clock.now() > proposal.deadlineMs) {
      tracker.settle(proposal, requestTimedOut());
      return;
    }
    const leaderId = this.context.leader();
    if (leaderId === this.context.selfId) {
      tracker.queue(proposal);
      this.context.scheduleLoop();
    } else if (leaderId === NO_NODE) {
      tracker.hold(proposal);
    } else {
      this.forward(proposal, leaderId);
    }
  }

  /** releaseHeld routes every held proposal again (a leader is known now, or its deadline is checked). */
  releaseHeld(): void {
    for (const proposal of this.context.tracker.takeHeld()) this.route(proposal);
  }

  /**
   * serve answers a forwarding call from a follower: each write is proposed here (`submit`,
   * with the traceparent of its forward span when it is traced) and answered in order with
   * its response or the error that refused or failed it.
   */
  async serve(body: Uint8Array, submit: (data: Uint8Array, hops: number, traceparent: string | undefined) => Promise<Outcome>): Promise<Uint8Array> {
    const forwarded = decodeForwardedProposals(body);
    const outcomes = await Promise.all(
      forwarded.map(([hops, data, traceparent]) =>
        submit(data, hops, traceparent).then(
          (outcome): ForwardOutcome => (outcome.error !== undefined ? { error: wireError(outcome.error) } : { response: outcome.response }),
          (error: unknown): ForwardOutcome => {
            if (!isStrataError(error)) throw error;
            return { error: wireError(error) };
          },
        ),
      ),
    );
    return packr.pack(outcomes);
  }

  private forward(proposal: Proposal, leaderId: NodeId): void {
    const { tracker } = this.context;
    if (proposal.hops >= FORWARD_HOPS_MAX) {
      tracker.settle(proposal, new StrataError(ErrorCode.NO_LEADER, 'etcdserver: no leader (the proposal was passed on too often)'));
      return;
    }
    if (!tracker.startForwarding(proposal)) return;
    let batch = this.toForward.get(leaderId);
    if (batch === undefined) {
      batch = [];
      this.toForward.set(leaderId, batch);
    }
    batch.push(proposal);
    if (batch.length >= FORWARD_BATCH_MAX) {
      this.toForward.delete(leaderId);
      this.send(leaderId, batch);
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the I/O phase, so that writes parsed from one read of the sockets share a call.
      this.context.clock.setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const batches = [...this.toForward];
    this.toForward.clear();
    for (const [leaderId, batch] of batches) this.send(leaderId, batch);
  }

  private send(leaderId: NodeId, batch: readonly Proposal[]): void {
    const { tracker, clock, transport } = this.context;
    const proposals = batch.filter((proposal) => proposal.state === 'forwarding');
    if (proposals.length === 0) return;
    // An aborted proposal is settled at once (its signal); the leader may still apply it, as
    // with any write cancelled after it was sent.
    const tracer = this.context.tracer;
    const spans = tracer === undefined ? undefined : this.startForwardSpans(tracer, leaderId, proposals);
    const body = packr.pack(
      spans === undefined
        ? proposals.map((proposal): ForwardedProposal => [proposal.hops + 1, proposal.data])
        : proposals.map((proposal, offset): ForwardedProposal => {
            const span = spans[offset];
            return span === undefined ? [proposal.hops + 1, proposal.data] : [proposal.hops + 1, proposal.data, formatTraceparent(span.spanContext())];
          }),
    );
    const deadlineMs = Math.max(...proposals.map((proposal) => proposal.deadlineMs));
    transport.request(leaderId, 'propose', body, { timeoutMs: Math.max(1, deadlineMs - clock.now()) }).then(
      (reply) => {
        let outcomes: ForwardOutcome[];
        try {
          outcomes = decodeForwardOutcomes(reply, proposals.length);
        } catch (error) {
          if (spans !== undefined) endForwardSpans(spans, () => error);
          for (const proposal of proposals) tracker.settle(proposal, asStrataError(error));
          return;
        }
        if (spans !== undefined) endForwardSpans(spans, (offset) => forwardError(outcomes[offset] as ForwardOutcome));
        for (const [offset, proposal] of proposals.entries()) {
          const outcome = outcomes[offset] as ForwardOutcome;
          if ('error' in outcome) this.refused(proposal, outcomeError(outcome.error));
          else tracker.settle(proposal, outcome.response !== undefined ? { response: outcome.response } : {});
        }
      },
      (error: unknown) => {
        if (spans !== undefined) endForwardSpans(spans, () => asStrataError(error));
        for (const proposal of proposals) this.refused(proposal, asStrataError(error));
      },
    );
  }

  // startForwardSpans starts a `raft.forward` span under each traced write's propose span;
  // undefined when the batch holds no traced write.
  private startForwardSpans(tracer: Tracer, leaderId: NodeId, proposals: readonly Proposal[]): (Span | undefined)[] | undefined {
    let spans: (Span | undefined)[] | undefined;
    for (const [offset, proposal] of proposals.entries()) {
      if (proposal.trace === undefined) continue;
      spans ??= new Array<Span | undefined>(proposals.length).fill(undefined);
      const attributes = { [ATTR_RAFT_LEADER]: leaderId.toString(16), [ATTR_RAFT_BATCH_SIZE]: proposals.length };
      spans[offset] = tracer.startSpan(FORWARD_SPAN, { kind: SpanKind.CLIENT, attributes }, contextOf(proposal.trace.spanContext()));
    }
    return spans;
  }

  private refused(proposal: Proposal, error: StrataError): void {
    const { tracker } = this.context;
    // Refused before being proposed (the callee is no longer the leader, has none, or was
    // removed): nothing was appended, so the write may safely be routed again.
    if (error.code === ErrorCode.NOT_LEADER || error.code === ErrorCode.NO_LEADER || error.code === ErrorCode.MEMBER_REMOVED) {
      if (tracker.forwardingRefused(proposal)) tracker.hold(proposal);
      return;
    }
    tracker.settle(proposal, error);
  }
}

// A forwarded batch ('propose' peer request) is a msgpack array of [hops, command data], with
// a third item, the traceparent of its forward span, for a traced write; the reply is an array
// of outcomes in the same order: the response (absent for a command that answers nothing) or
// the error that refused or failed it.
type ForwardedProposal = [hops: number, data: Uint8Array, traceparent?: string];
type ForwardOutcome = { readonly response?: KvResponse | undefined } | { readonly error: WireError };
interface WireError {
  readonly code: string;
  readonly message: string;
}

function decodeForwardedProposals(body: Uint8Array): ForwardedProposal[] {
  const value: unknown = packr.unpack(body);
  const bad = (what: string): never => {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `forwarded proposals: ${what}`);
  };
  if (!Array.isArray(value) || value.length === 0 || value.length > FORWARD_BATCH_MAX) return bad(`expected 1..${FORWARD_BATCH_MAX} proposals`);
  for (const [position, item] of value.entries()) {
    if (!Array.isArray(item) || (item.length !== 2 && item.length !== 3) || !Number.isInteger(item[0]) || !(item[1] instanceof Uint8Array)) bad(`proposal ${position} is not [hops, data] or [hops, data, traceparent]`);
    if (item.length === 3 && (typeof item[2] !== 'string' || item[2].length > 4 * TRACEPARENT_LENGTH)) bad(`proposal ${position}'s traceparent is not a string of at most ${4 * TRACEPARENT_LENGTH} characters`);
  }
  return value as ForwardedProposal[];
}

function decodeForwardOutcomes(reply: Uint8Array, count: number): ForwardOutcome[] {
  const value: unknown = packr.unpack(reply);
  if (!Array.isArray(value) || value.length !== count) {
    throw new StrataError(ErrorCode.UNAVAILABLE, `the leader answered ${Array.isArray(value) ? value.length : 'no list of'} outcomes for ${count} forwarded proposals`);
  }
  return value as ForwardOutcome[];
}

function endForwardSpans(spans: readonly (Span | undefined)[], errorAt: (offset: number) => unknown): void {
  for (const [offset, span] of spans.entries()) if (span !== undefined) endSpan(span, errorAt(offset));
}

function forwardError(outcome: ForwardOutcome): StrataError | undefined {
  return 'error' in outcome ? outcomeError(outcome.error) : undefined;
}

function wireError(error: StrataError): WireError {
  return { code: error.code, message: error.message };
}

function outcomeError(wire: WireError): StrataError {
  return new StrataError(isErrorCode(wire.code) ? wire.code : ErrorCode.UNAVAILABLE, wire.message);
}

// A transport settles calls with StrataErrors; anything else is wrapped so that the tracker
// always hands its callers a coded error.
function asStrataError(error: unknown): StrataError {
  return isStrataError(error) ? error : new StrataError(ErrorCode.UNAVAILABLE, `forwarding failed: ${String(error)}`, { cause: error });
}

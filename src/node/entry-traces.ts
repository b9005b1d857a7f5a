// EntryTraces: the spans of traced writes on their way through the driver, and of the batched
// work they share. It exists only when the member has a tracer (RaftNodeOptions.tracer): with
// tracing off the driver holds no EntryTraces and pays one `undefined` check per step.
//
// A write is traced when its caller's span is sampled (NodeCallOptions.traceParent, or a
// traceparent beside a forwarded write): it gets a `raft.propose` span, and once appended, its
// index is recorded here with that span's context. The Raft core knows nothing of it: the
// driver maps entries to spans by (index, term). Batched work then makes one span per batch
// that holds a traced entry, parented to the first traced entry's span (so it is sampled with
// it and shows in its trace) and linked to every traced entry's span (at most SPAN_LINKS_MAX):
//   raft.persist    the save of a Ready's entries (one fdatasync)
//   raft.replicate  an append to one follower, until it acknowledges the last entry
//   raft.commit     from the first traced entry's append here until the Ready that commits it
//   raft.apply      applying a Ready's committed entries
// An append that carries traced entries carries their span contexts too (MessageTrace, with
// the replicate span's own), so a follower records the same indexes and makes its persist,
// commit and apply spans under the leader's: one write's trace holds both members.
//
// Bounds: at most TRACED_ENTRIES_MAX recorded entries (past it a write is traced but not its
// batches: its propose span says so) and REPLICATE_SPANS_PER_PEER_MAX open replicate spans per
// follower (the oldest is ended unacknowledged). Records go when their entry is applied, or
// covered by an installed snapshot; a record whose term no longer matches its index's entry
// (the log was truncated) is never used and goes the same way. close() ends every open span.

import type { Attributes, Span, SpanContext, Tracer } from '@opentelemetry/api';
import { SpanKind } from '@opentelemetry/api';
import {
  ATTR_RAFT_COMMIT_INDEX,
  ATTR_RAFT_ENTRIES,
  ATTR_RAFT_FIRST_INDEX,
  ATTR_RAFT_FROM,
  ATTR_RAFT_HOPS,
  ATTR_RAFT_INDEX,
  ATTR_RAFT_LAST_INDEX,
  ATTR_RAFT_PEER,
  ATTR_RAFT_TERM,
  batchSpanOptions,
  contextOf,
  endSpan,
  epochMs,
  formatTraceparent,
  parseTraceparent,
} from '../obs/index.ts';
import type { Entry, Index, Message, NodeId, Ready, Term } from '../raft/index.ts';
import type { MessageTrace, TracedMessage } from '../transport/index.ts';
import { MESSAGE_TRACE_ENTRIES_MAX } from '../transport/index.ts';
import { assert } from '../util/index.ts';

/** TRACED_ENTRIES_MAX bounds the traced entries a member keeps span contexts for. */
export const TRACED_ENTRIES_MAX = 4_096;
/** REPLICATE_SPANS_PER_PEER_MAX bounds the replicate spans open towards one follower. */
export const REPLICATE_SPANS_PER_PEER_MAX = 64;

/** Span names of the write path (src/obs/README.md). */
export const SPAN_PROPOSE = 'raft.propose';
export const SPAN_FORWARD = 'raft.forward';
export const SPAN_PERSIST = 'raft.persist';
export const SPAN_REPLICATE = 'raft.replicate';
export const SPAN_COMMIT = 'raft.commit';
export const SPAN_APPLY = 'raft.apply';

/** ATTR_UNTRACKED marks a propose span whose entry was not recorded (TRACED_ENTRIES_MAX). */
const ATTR_UNTRACKED = 'stratakv.trace.untracked';
const ATTR_ACKNOWLEDGED = 'raft.acknowledged';
const ATTR_REJECTED = 'raft.rejected';

// One traced entry: its write's span context (this member's propose span; on a follower, the
// leader's), the span of the append that brought it (follower only), and when it was appended.
interface TracedEntry {
  readonly term: Term;
  readonly context: SpanContext;
  readonly via: SpanContext | undefined;
  readonly appendedAtMs: number;
}

interface OpenReplicate {
  readonly span: Span;
  readonly lastIndex: Index;
}

/** EntryTraces maps traced entries to their spans and makes the batch spans; see the header of this file. */
export class EntryTraces {
  readonly tracer: Tracer;
  // Invariant: at most TRACED_ENTRIES_MAX records; each names an index not yet applied here
  // (applied() and forgetThrough() remove the others).
  private readonly entries = new Map<Index, TracedEntry>();
  // Invariant: at most REPLICATE_SPANS_PER_PEER_MAX per peer, oldest first.
  private readonly replicates = new Map<NodeId, OpenReplicate[]>();
  private untracked = 0;

  constructor(tracer: Tracer) {
    this.tracer = tracer;
  }

  /** size is how many traced entries are recorded (the simulator's bound checks read it). */
  get size(): number {
    return this.entries.size;
  }

  /** untrackedCount is how many traced writes were not recorded because TRACED_ENTRIES_MAX were. */
  get untrackedCount(): number {
    return this.untracked;
  }

  /**
   * startPropose starts a write's `raft.propose` span under `parent`: INTERNAL for a write
   * made here, SERVER for one a follower forwarded (`from`), parented to its forward span.
   */
  startPropose(parent: SpanContext, hops: number, from: NodeId | undefined): Span {
    const attributes: Attributes = { [ATTR_RAFT_HOPS]: hops };
    if (from !== undefined) attributes[ATTR_RAFT_FROM] = from.toString(16);
    return this.tracer.startSpan(SPAN_PROPOSE, { kind: from === undefined ? SpanKind.INTERNAL : SpanKind.SERVER, attributes }, contextOf(parent));
  }

  /** appended records a traced write appended to this leader's log at (index, term). */
  appended(index: Index, term: Term, span: Span): void {
    span.setAttribute(ATTR_RAFT_INDEX, index);
    span.setAttribute(ATTR_RAFT_TERM, term);
    this.record(index, { term, context: span.spanContext(), via: undefined, appendedAtMs: epochMs() }, span);
  }

  /** readyTaken: a Ready's committed entries are known committed now; a `raft.commit` span covers their wait. */
  readyTaken(ready: Ready): void {
    const committed = ready.committedEntries;
    if (committed.length === 0 || this.entries.size === 0) return;
    const traced = this.tracedIn(committed);
    if (traced === undefined) return;
    let startMs = Number.POSITIVE_INFINITY;
    for (const entry of traced) startMs = Math.min(startMs, entry.appendedAtMs);
    const last = (committed[committed.length - 1] as Entry).index;
    const span = this.startBatchSpan(SPAN_COMMIT, traced, { ...rangeAttributes(committed), [ATTR_RAFT_COMMIT_INDEX]: last }, false, startMs);
    span.end();
  }

  /** persisting starts a `raft.persist` span when the Ready's entries hold a traced one; answers how to end it. */
  persisting(ready: Ready): ((error?: unknown) => void) | undefined {
    if (ready.entries.length === 0 || this.entries.size === 0) return undefined;
    const traced = this.tracedIn(ready.entries);
    if (traced === undefined) return undefined;
    const span = this.startBatchSpan(SPAN_PERSIST, traced, rangeAttributes(ready.entries), true);
    return (error?: unknown) => endSpan(span, error);
  }

  /**
   * replicating answers the messages to send: an append that carries traced entries becomes a
   * copy that carries their span contexts too (MessageTrace), under a `raft.replicate` span
   * that ends when the follower acknowledges its last entry. Untraced messages go as they are.
   */
  replicating(messages: readonly Message[]): readonly Message[] {
    if (this.entries.size === 0) return messages;
    let out: Message[] | undefined;
    for (let at = 0; at < messages.length; at += 1) {
      const message = messages[at] as Message;
      if (message.type !== 'append' || message.entries.length === 0) continue;
      const traced = this.tracedIn(message.entries);
      if (traced === undefined) continue;
      const span = this.startBatchSpan(SPAN_REPLICATE, traced, { ...rangeAttributes(message.entries), [ATTR_RAFT_PEER]: message.to.toString(16), [ATTR_RAFT_COMMIT_INDEX]: message.commit }, false, undefined, SpanKind.CLIENT);
      this.openReplicate(message.to, { span, lastIndex: (message.entries[message.entries.length - 1] as Entry).index });
      const trace: MessageTrace = {
        traceparent: formatTraceparent(span.spanContext()),
        entries: traced.slice(0, MESSAGE_TRACE_ENTRIES_MAX).map((entry) => ({ index: entry.index, traceparent: formatTraceparent(entry.context) })),
      };
      const copy: TracedMessage = { ...message, trace };
      out ??= messages.slice();
      out[at] = copy;
    }
    return out ?? messages;
  }

  /**
   * onMessages reads what arrived from peers before it is stepped: an append's trace context
   * (the entries it names are recorded under the sender's spans), and acknowledgements that
   * end this leader's replicate spans.
   */
  onMessages(messages: readonly Message[]): void {
    for (const message of messages) {
      if (message.type === 'append') {
        const trace = (message as TracedMessage).trace;
        if (trace !== undefined) this.received(message.entries, trace);
      } else if (message.type === 'appendResponse' && this.replicates.size > 0) {
        this.acknowledged(message.from, message.index, message.reject);
      }
    }
  }

  /** applying starts a `raft.apply` span when the entries hold a traced one; answers how to end it. */
  applying(entries: readonly Entry[]): ((error?: unknown) => void) | undefined {
    if (this.entries.size === 0) return undefined;
    const traced = this.tracedIn(entries);
    if (traced === undefined) return undefined;
    const span = this.startBatchSpan(SPAN_APPLY, traced, rangeAttributes(entries), false);
    return (error?: unknown) => endSpan(span, error);
  }

  /** forgetThrough drops the records of entries at or below `index` (applied here, or covered by an installed snapshot). */
  forgetThrough(index: Index): void {
    if (this.entries.size === 0) return;
    for (const recorded of this.entries.keys()) if (recorded <= index) this.entries.delete(recorded);
  }

  /** leadershipLost ends the replicate spans of a leader that no longer leads (no acknowledgement will end them). */
  leadershipLost(): void {
    if (this.replicates.size === 0) return;
    for (const open of this.replicates.values()) for (const replicate of open) endUnacknowledged(replicate.span);
    this.replicates.clear();
  }

  /** close ends every open span and forgets every record (the member stops). */
  close(): void {
    this.leadershipLost();
    this.entries.clear();
  }

  // received records the traced entries an append carries, under the leader's spans; an entry
  // recorded already with the same term keeps its record (a retransmission).
  private received(entries: readonly Entry[], trace: MessageTrace): void {
    const via = parseTraceparent(trace.traceparent);
    if (via === undefined || entries.length === 0) return;
    const first = (entries[0] as Entry).index;
    for (const named of trace.entries) {
      const entry = entries[named.index - first];
      const context = parseTraceparent(named.traceparent);
      if (entry === undefined || entry.index !== named.index || context === undefined) continue;
      if (this.entries.get(entry.index)?.term === entry.term) continue;
      this.record(entry.index, { term: entry.term, context, via, appendedAtMs: epochMs() }, undefined);
    }
  }

  private record(index: Index, entry: TracedEntry, span: Span | undefined): void {
    if (this.entries.size >= TRACED_ENTRIES_MAX && !this.entries.has(index)) {
      this.untracked += 1;
      span?.setAttribute(ATTR_UNTRACKED, true);
      return;
    }
    this.entries.set(index, entry);
  }

  // tracedIn answers the recorded entries among `entries` (contiguous, ascending) whose term
  // matches, in index order; undefined when none is. It walks the records, not the entries:
  // there are few records when few writes are sampled.
  private tracedIn(entries: readonly Entry[]): (TracedEntry & { readonly index: Index })[] | undefined {
    const first = (entries[0] as Entry).index;
    const last = (entries[entries.length - 1] as Entry).index;
    let found: (TracedEntry & { readonly index: Index })[] | undefined;
    let sorted = true;
    for (const [index, recorded] of this.entries) {
      if (index < first || index > last) continue;
      const entry = entries[index - first];
      if (entry === undefined || entry.term !== recorded.term) continue;
      found ??= [];
      if (found.length > 0 && (found[found.length - 1] as { index: Index }).index > index) sorted = false;
      found.push({ ...recorded, index });
    }
    if (found !== undefined && !sorted) found.sort((a, b) => a.index - b.index);
    return found;
  }

  // startBatchSpan starts a batch span under the first traced entry (its `via` on a follower,
  // when `underVia`: the leader's append that brought it), linked to every traced entry.
  private startBatchSpan(name: string, traced: readonly TracedEntry[], attributes: Attributes, underVia: boolean, startMs?: number, kind: SpanKind = SpanKind.INTERNAL): Span {
    const head = traced[0];
    assert(head !== undefined, 'a batch span has a traced entry');
    const parent = underVia ? (head.via ?? head.context) : head.context;
    const options = batchSpanOptions(
      traced.map((entry) => entry.context),
      { kind, attributes, ...(startMs !== undefined && Number.isFinite(startMs) ? { startTime: startMs } : {}) },
    );
    return this.tracer.startSpan(name, options, contextOf(parent));
  }

  private openReplicate(peer: NodeId, replicate: OpenReplicate): void {
    let open = this.replicates.get(peer);
    if (open === undefined) {
      open = [];
      this.replicates.set(peer, open);
    }
    if (open.length >= REPLICATE_SPANS_PER_PEER_MAX) endUnacknowledged((open.shift() as OpenReplicate).span);
    open.push(replicate);
  }

  // acknowledged ends the replicate spans to `peer` that its answer covers: those whose last
  // entry it acknowledges, or, for a rejection, every one (Raft probes and sends again).
  private acknowledged(peer: NodeId, index: Index, reject: boolean): void {
    const open = this.replicates.get(peer);
    if (open === undefined) return;
    const waiting: OpenReplicate[] = [];
    for (const replicate of open) {
      if (!reject && replicate.lastIndex > index) {
        waiting.push(replicate);
        continue;
      }
      if (reject) replicate.span.setAttribute(ATTR_REJECTED, true);
      replicate.span.setAttribute(ATTR_ACKNOWLEDGED, !reject);
      replicate.span.end();
    }
    if (waiting.length === 0) this.replicates.delete(peer);
    else this.replicates.set(peer, waiting);
  }
}

function rangeAttributes(entries: readonly Entry[]): Attributes {
  return {
    [ATTR_RAFT_ENTRIES]: entries.length,
    [ATTR_RAFT_FIRST_INDEX]: (entries[0] as Entry).index,
    [ATTR_RAFT_LAST_INDEX]: (entries[entries.length - 1] as Entry).index,
  };
}

function endUnacknowledged(span: Span): void {
  span.setAttribute(ATTR_ACKNOWLEDGED, false);
  span.end();
}

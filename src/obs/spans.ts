// What every span stratakv makes shares: its attribute names, how an error ends it, how a
// batch span links to the requests in its batch, and a wrapper for the spans of work that is
// not on the hot path (snapshots, integrity checks, migration steps). Each function takes the
// tracer explicitly: an undefined tracer means tracing is off, and then nothing here touches
// the OpenTelemetry API at all.

import type { Attributes, Context, Link, Span, SpanContext, SpanOptions, Tracer } from '@opentelemetry/api';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { isStrataError } from '../util/index.ts';
import { isSampled } from './trace-context.ts';

/** SPAN_LINKS_MAX bounds the links one batch span carries; the rest are counted in ATTR_LINKS_DROPPED. */
export const SPAN_LINKS_MAX = 128;

/** Span attribute names (OpenTelemetry's semantic conventions where one exists, `raft.*` and `stratakv.*` otherwise). */
export const ATTR_RPC_SYSTEM = 'rpc.system';
export const ATTR_RPC_SERVICE = 'rpc.service';
export const ATTR_RPC_METHOD = 'rpc.method';
export const ATTR_RPC_GRPC_STATUS_CODE = 'rpc.grpc.status_code';
export const ATTR_ERROR_TYPE = 'error.type';
/** The StrataError code (src/util/errors.ts) a span ended with. */
export const ATTR_ERROR_CODE = 'stratakv.error.code';
export const ATTR_RAFT_INDEX = 'raft.index';
export const ATTR_RAFT_TERM = 'raft.term';
export const ATTR_RAFT_HOPS = 'raft.hops';
export const ATTR_RAFT_PEER = 'raft.peer_id';
export const ATTR_RAFT_LEADER = 'raft.leader_id';
export const ATTR_RAFT_FROM = 'raft.from_id';
export const ATTR_RAFT_ENTRIES = 'raft.entries';
export const ATTR_RAFT_FIRST_INDEX = 'raft.first_index';
export const ATTR_RAFT_LAST_INDEX = 'raft.last_index';
export const ATTR_RAFT_COMMIT_INDEX = 'raft.commit_index';
/** How many entries of a batch span's batch are traced (each linked, up to SPAN_LINKS_MAX). */
export const ATTR_RAFT_TRACED_ENTRIES = 'raft.traced_entries';
export const ATTR_RAFT_BATCH_SIZE = 'raft.batch_size';
export const ATTR_LINKS_DROPPED = 'stratakv.links_dropped';
export const ATTR_SNAPSHOT_ID = 'stratakv.snapshot.id';
export const ATTR_SNAPSHOT_INDEX = 'stratakv.snapshot.index';
export const ATTR_SNAPSHOT_BYTES = 'stratakv.snapshot.bytes';
export const ATTR_MIGRATION_ID = 'stratakv.migration.id';
export const ATTR_MIGRATION_STEP = 'stratakv.migration.step';

/** epochMs is the time now in ms since the epoch, sub-millisecond, for a span's explicit start time. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** contextOf makes a parent context from a span context (the driver never uses the active context). */
export function contextOf(parent: SpanContext | undefined): Context {
  return parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
}

/** sampledContext answers a span's context when its trace is sampled (what may be handed on), else undefined. */
export function sampledContext(span: Span): SpanContext | undefined {
  const context = span.spanContext();
  return isSampled(context) ? context : undefined;
}

/**
 * batchSpanOptions shapes a span for batched work (a save, an append to a peer, a commit, an
 * apply): its parent is the first traced request of the batch, so that the span is sampled
 * with it and shows in its trace; it links to every traced request (the first included), at
 * most SPAN_LINKS_MAX, counting the others.
 */
export function batchSpanOptions(contexts: readonly SpanContext[], options: SpanOptions & { readonly attributes: Attributes }): SpanOptions {
  const links: Link[] = [];
  for (let at = 0; at < contexts.length && at < SPAN_LINKS_MAX; at += 1) links.push({ context: contexts[at] as SpanContext });
  const attributes: Attributes = { ...options.attributes, [ATTR_RAFT_TRACED_ENTRIES]: contexts.length };
  if (contexts.length > SPAN_LINKS_MAX) attributes[ATTR_LINKS_DROPPED] = contexts.length - SPAN_LINKS_MAX;
  return { ...options, attributes, links };
}

/** errorCodeOf names an error for a span: its StrataError code, else its name. */
export function errorCodeOf(error: unknown): string {
  if (isStrataError(error)) return error.code;
  return error instanceof Error ? error.name : 'Error';
}

/** endSpan ends a span: OK without an error; with one, status ERROR, its message, and its code as attributes. */
export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) failSpan(span, error);
  span.end();
}

/** failSpan marks a span failed by `error` (status ERROR, error.type and stratakv.error.code) without ending it. */
export function failSpan(span: Span, error: unknown): void {
  const code = errorCodeOf(error);
  span.setAttribute(ATTR_ERROR_TYPE, code);
  if (isStrataError(error)) span.setAttribute(ATTR_ERROR_CODE, code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/** reportTo calls `ended` once `work` settles (with its error when it failed), and answers work's own promise. */
export async function reportTo<T>(work: Promise<T>, ended: (error?: unknown) => void): Promise<T> {
  let result: T;
  try {
    result = await work;
  } catch (error) {
    ended(error);
    throw error;
  }
  ended();
  return result;
}

/**
 * withSpan runs `work` inside a span named `name` when tracing is on (`tracer` defined), and
 * ends it with the outcome; with tracing off it only runs `work`. For work off the hot path:
 * snapshots, integrity checks, migration steps. `work` gets the span (undefined when off) to
 * add attributes, and its sampled context to hand to the requests it makes.
 */
export async function withSpan<T>(
  tracer: Tracer | undefined,
  name: string,
  options: { readonly attributes?: Attributes; readonly parent?: SpanContext | undefined; readonly kind?: SpanKind },
  work: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  if (tracer === undefined) return work(undefined);
  const span = tracer.startSpan(name, { kind: options.kind ?? SpanKind.INTERNAL, ...(options.attributes !== undefined ? { attributes: options.attributes } : {}) }, contextOf(options.parent));
  try {
    const result = await work(span);
    span.end();
    return result;
  } catch (error) {
    endSpan(span, error);
    throw error;
  }
}

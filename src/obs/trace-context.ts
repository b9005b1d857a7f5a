// W3C Trace Context (https://www.w3.org/TR/trace-context/) as stratakv carries it: a
// `traceparent` string, in an etcd client's gRPC metadata and beside the writes and Raft
// entries one member hands another (a forwarded proposal, an append). Parsed and formatted
// here rather than through a global propagator: several members may share one process (tests,
// an embedding application), and the driver passes span contexts explicitly, never through
// the active context.

import type { SpanContext } from '@opentelemetry/api';
import { createTraceState, TraceFlags } from '@opentelemetry/api';

/** TRACEPARENT_HEADER is the metadata key (lower case, as gRPC metadata keys are) of a W3C traceparent. */
export const TRACEPARENT_HEADER = 'traceparent';
/** TRACESTATE_HEADER is the metadata key of the W3C tracestate that goes with it. */
export const TRACESTATE_HEADER = 'tracestate';
/** TRACEPARENT_LENGTH is the length of a version-00 traceparent: `00-<32 hex>-<16 hex>-<2 hex>`. */
export const TRACEPARENT_LENGTH = 55;
// A tracestate longer than this is dropped (the W3C limit is 32 members of at most 256 chars).
const TRACESTATE_CHARS_MAX = 512;

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ALL_ZERO = /^0+$/;

/**
 * parseTraceparent reads a W3C traceparent (from another process: the context is remote), or
 * answers undefined for anything that is not one: a malformed value, version ff, an all-zero
 * trace or span id. A future version's extra fields are ignored, as the spec asks; version 00
 * must be exactly 55 characters.
 */
export function parseTraceparent(value: unknown, tracestate?: unknown): SpanContext | undefined {
  if (typeof value !== 'string' || value.length < TRACEPARENT_LENGTH || value.length > 4 * TRACEPARENT_LENGTH) return undefined;
  const match = TRACEPARENT.exec(value);
  if (match === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (ALL_ZERO.test(traceId) || ALL_ZERO.test(spanId)) return undefined;
  const context: SpanContext = { traceId, spanId, traceFlags: Number.parseInt(flags, 16) & TraceFlags.SAMPLED, isRemote: true };
  if (typeof tracestate === 'string' && tracestate.length > 0 && tracestate.length <= TRACESTATE_CHARS_MAX) context.traceState = createTraceState(tracestate);
  return context;
}

/** formatTraceparent writes a span context as a version-00 W3C traceparent. */
export function formatTraceparent(context: SpanContext): string {
  const flags = context.traceFlags & TraceFlags.SAMPLED ? '01' : '00';
  return `00-${context.traceId}-${context.spanId}-${flags}`;
}

/** isSampled tells whether a span context's trace is sampled (its spans are recorded and exported). */
export function isSampled(context: SpanContext): boolean {
  return (context.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
}

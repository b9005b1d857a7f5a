// The bounds every transport implementation keeps, in one place so the real transport and
// its in-memory twin drop, batch and report under the same numbers.

import { ErrorCode, StrataError } from '../util/errors.ts';

/** TransportLimits are the named maximums of a transport. */
export interface TransportLimits {
  /** Messages waiting to a peer beyond this count are dropped (and the peer reported unreachable). */
  readonly queueMessagesMax: number;
  /**
   * Bytes (messageSizeBytes estimates) waiting to a peer beyond this are dropped. One message
   * larger than this is still accepted into an empty queue, so a snapshot always fits.
   */
  readonly queueBytesMax: number;
  /** A frame holds messages up to this many estimated bytes; a larger batch is split. */
  readonly frameBytesMax: number;
  /** The largest encoded frame or call either side sends or accepts (gRPC max message length). */
  readonly messageBytesMax: number;
  /** onUnreachable is called at most once per peer per this interval. */
  readonly unreachableIntervalMs: number;
  /** The first redial delay after a stream breaks; it doubles up to dialBackoffMsMax. */
  readonly dialBackoffMsMin: number;
  /** The longest redial delay. */
  readonly dialBackoffMsMax: number;
  /**
   * A higher id dials a lower one it knows only after this long without a stream (plus the
   * redial backoff): the lower id dials first, and the higher one dials when it does not.
   */
  readonly fallbackDialDelayMs: number;
  /** An accepted stream that sends no hello within this long is refused. */
  readonly handshakeTimeoutMs: number;
  /** Frames written to a peer but not yet drained before the transport stops writing and queues. */
  readonly framesInFlightMax: number;
}

/** TRANSPORT_LIMITS_DEFAULTS are the limits a transport uses unless told otherwise. */
export const TRANSPORT_LIMITS_DEFAULTS: TransportLimits = {
  queueMessagesMax: 4_096,
  queueBytesMax: 64 * 1024 * 1024,
  frameBytesMax: 4 * 1024 * 1024,
  // Snapshots travel inline in a SnapshotMessage until the chunked snapshot stream exists.
  messageBytesMax: 512 * 1024 * 1024 + 1024 * 1024,
  unreachableIntervalMs: 100,
  dialBackoffMsMin: 25,
  dialBackoffMsMax: 1_000,
  fallbackDialDelayMs: 250,
  handshakeTimeoutMs: 5_000,
  framesInFlightMax: 16,
};

/** resolveTransportLimits fills in defaults and checks that every limit is a positive integer. */
export function resolveTransportLimits(overrides: Partial<TransportLimits> | undefined): TransportLimits {
  const limits: TransportLimits = { ...TRANSPORT_LIMITS_DEFAULTS, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || (value as number) <= 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `transport limit ${name} must be a positive integer, got ${String(value)}`, {
        details: { field: name },
      });
    }
  }
  if (limits.dialBackoffMsMin > limits.dialBackoffMsMax) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'dialBackoffMsMin must not exceed dialBackoffMsMax', {
      details: { field: 'dialBackoffMsMin' },
    });
  }
  return limits;
}

// ChunkSizeController: how large the log-delta stream's next chunk is, from the
// acknowledgements of the chunks before it. Deterministic and pure: it is given each chunk's
// size and the times it was sent and acknowledged, and answers the next size; it reads no
// clock and owns no timer, so a test replays any history exactly.
//
// Per acknowledged chunk of `bytes`, sent at `sentAtMs` and acknowledged at `ackedAtMs`:
// - round trip: rttMs = ackedAtMs - sentAtMs;
// - service time: serviceMs = ackedAtMs - max(sentAtMs, the previous acknowledgement), the time
//   the chunk alone held the pipe: with several chunks in flight, a chunk's round trip also
//   holds the time it queued behind the earlier ones, which says nothing about its own size;
// - throughput sample: bytes / serviceMs. The measured throughput is the best of the last
//   SAMPLES_MAX samples (what the consumer and the network have shown they can take), and the
//   round-trip floor the lowest of the last SAMPLES_MAX round trips (the fixed cost of a chunk).
// Then, against the throughput and round trip measured:
// - fast: the chunk was served at 80 % of the measured throughput or better
//   (serviceMs <= FAST_SERVICE_RATIO_MAX × bytes / throughput), and a chunk 1.5 × the current
//   size would still be acknowledged within the round-trip target
//   (floor + 1.5 × size / throughput <= ROUND_TRIP_TARGET_MS): grow × GROWTH_FACTOR;
// - slow: the chunk was served at under half the measured throughput
//   (serviceMs >= SLOW_SERVICE_RATIO_MIN × bytes / throughput: the consumer or the network
//   slowed down), or took longer than the round-trip target on its own
//   (serviceMs > ROUND_TRIP_TARGET_MS: chunks are too large for the throughput now): shrink
//   × SHRINK_FACTOR;
// - otherwise the size stays.
// The size is clamped to CHUNK_BYTES_MIN..min(CHUNK_BYTES_MAX, the consumer's maximum). Only
// full chunks are judged (at least FULL_FRACTION_MIN of the size they were cut for): a chunk
// cut short because the log had no more entries (a following stream, a heartbeat) measures
// the wait for writes, not the pipe, and would shrink the size for nothing.
//
// Why a round-trip target: larger chunks cost less per byte, but a chunk is the unit of
// acknowledgement, of loss on a broken stream and of memory held in the window; 250 ms keeps
// a resumed stream's loss, and the consumer's view of progress, within a fraction of a second
// while letting a fast local consumer reach 4 MiB chunks.

import { assert } from '../util/assert.ts';

/** CHUNK_BYTES_MIN is the smallest chunk size (64 KiB). */
export const CHUNK_BYTES_MIN = 64 * 1024;
/** CHUNK_BYTES_MAX is the largest chunk size (4 MiB). */
export const CHUNK_BYTES_MAX = 4 * 1024 * 1024;
/** CHUNK_BYTES_INITIAL is the size a stream starts with (256 KiB). */
export const CHUNK_BYTES_INITIAL = 256 * 1024;
/** GROWTH_FACTOR multiplies the size after a fast chunk. */
export const GROWTH_FACTOR = 1.5;
/** SHRINK_FACTOR multiplies the size after a slow chunk. */
export const SHRINK_FACTOR = 0.7;
/** ROUND_TRIP_TARGET_MS is how long one chunk may take from sending to its acknowledgement. */
export const ROUND_TRIP_TARGET_MS = 250;
/** FAST_SERVICE_RATIO_MAX: served within 1.25 × the time the measured throughput predicts is fast. */
export const FAST_SERVICE_RATIO_MAX = 1.25;
/** SLOW_SERVICE_RATIO_MIN: served in 2 × the time the measured throughput predicts, or more, is slow. */
export const SLOW_SERVICE_RATIO_MIN = 2;
/** SAMPLES_MAX is how many recent acknowledgements the throughput and the round-trip floor look at. */
export const SAMPLES_MAX = 16;
/** FULL_FRACTION_MIN: a chunk of less than this share of its size is not judged. */
export const FULL_FRACTION_MIN = 0.5;
// A service time of 0 (two events in one millisecond of a coarse clock) counts as this much.
const SERVICE_MS_MIN = 0.001;

/** ChunkAcknowledgement is one acknowledged chunk, as the controller judges it. */
export interface ChunkAcknowledgement {
  /** The chunk's payload bytes. */
  readonly bytes: number;
  /** The size the chunk was cut for (the controller's chunkBytes when it was made). */
  readonly sizedFor: number;
  readonly sentAtMs: number;
  readonly ackedAtMs: number;
}

/** ChunkVerdict is what one acknowledgement did to the size. */
export type ChunkVerdict = 'fast' | 'slow' | 'steady' | 'not-judged';

/** ChunkSizeController answers the next chunk size (see the file comment). */
export class ChunkSizeController {
  readonly #bytesMax: number;
  // Invariant: CHUNK_BYTES_MIN <= #chunkBytes <= #bytesMax.
  #chunkBytes: number;
  // The last SAMPLES_MAX throughput samples (bytes per ms) and round trips (ms), oldest first.
  readonly #rates: number[] = [];
  readonly #roundTrips: number[] = [];
  #lastAckedAtMs = Number.NEGATIVE_INFINITY;

  /** `bytesMax` is the consumer's maximum (admin.proto's max_chunk_bytes), within the bounds. */
  constructor(options: { readonly bytesMax?: number } = {}) {
    const bytesMax = options.bytesMax ?? CHUNK_BYTES_MAX;
    assert(Number.isSafeInteger(bytesMax), 'bytesMax is an integer');
    assert(bytesMax >= CHUNK_BYTES_MIN && bytesMax <= CHUNK_BYTES_MAX, 'bytesMax is within CHUNK_BYTES_MIN..CHUNK_BYTES_MAX');
    this.#bytesMax = bytesMax;
    this.#chunkBytes = Math.min(CHUNK_BYTES_INITIAL, bytesMax);
  }

  /** chunkBytes is the size of the next chunk. */
  get chunkBytes(): number {
    return this.#chunkBytes;
  }

  /** throughputBytesPerMs is the measured throughput (0 before any full chunk was acknowledged). */
  get throughputBytesPerMs(): number {
    return this.#rates.length === 0 ? 0 : Math.max(...this.#rates);
  }

  /** roundTripFloorMs is the lowest recent round trip (0 before any). */
  get roundTripFloorMs(): number {
    return this.#roundTrips.length === 0 ? 0 : Math.min(...this.#roundTrips);
  }

  /**
   * onAcknowledged judges one acknowledged chunk and resizes; acknowledgements come in the
   * order the chunks were sent. Answers the verdict.
   */
  onAcknowledged(ack: ChunkAcknowledgement): ChunkVerdict {
    assert(ack.bytes >= 0 && ack.sizedFor > 0, 'a chunk has a size');
    assert(ack.ackedAtMs >= ack.sentAtMs, 'a chunk is acknowledged after it was sent');
    assert(ack.ackedAtMs >= this.#lastAckedAtMs, 'acknowledgements come in order');
    const serviceMs = Math.max(SERVICE_MS_MIN, ack.ackedAtMs - Math.max(ack.sentAtMs, this.#lastAckedAtMs));
    this.#lastAckedAtMs = ack.ackedAtMs;
    if (ack.bytes < FULL_FRACTION_MIN * ack.sizedFor) return 'not-judged';
    push(this.#rates, ack.bytes / serviceMs);
    push(this.#roundTrips, ack.ackedAtMs - ack.sentAtMs);
    const throughput = this.throughputBytesPerMs;
    const expectedServiceMs = ack.bytes / throughput;
    const grownRoundTripMs = this.roundTripFloorMs + (GROWTH_FACTOR * this.#chunkBytes) / throughput;
    if (serviceMs >= SLOW_SERVICE_RATIO_MIN * expectedServiceMs || serviceMs > ROUND_TRIP_TARGET_MS) {
      this.#resize(this.#chunkBytes * SHRINK_FACTOR);
      return 'slow';
    }
    if (serviceMs <= FAST_SERVICE_RATIO_MAX * expectedServiceMs && grownRoundTripMs <= ROUND_TRIP_TARGET_MS) {
      this.#resize(this.#chunkBytes * GROWTH_FACTOR);
      return 'fast';
    }
    return 'steady';
  }

  #resize(bytes: number): void {
    this.#chunkBytes = Math.min(this.#bytesMax, Math.max(CHUNK_BYTES_MIN, Math.round(bytes)));
    assert(this.#chunkBytes >= CHUNK_BYTES_MIN && this.#chunkBytes <= this.#bytesMax, 'the chunk size stays within its bounds');
  }
}

function push(samples: number[], value: number): void {
  samples.push(value);
  if (samples.length > SAMPLES_MAX) samples.shift();
}

// Log holds: how a reader of this cluster's Raft log from outside (a cross-cluster copier
// following Admin.LogStream) keeps the entries it has not read yet from being compacted while
// it is down for a while. A consumer says "keep the log from `index` on until `expiresAtMs`"
// with a `logHold` node command, proposed through the leader (Admin.LogHold), and every member
// applies it in log order; each member's snapshotter then never compacts past the lowest
// unexpired hold's index - 1, unless the log from there on is over compactionLogBytesMax (the
// cap that bounds a live follower's hold too: past it the hold is ignored, and logged).
//
// A consumer's hold is absent → held (a command with index >= 1 applied) → held (renewed or
// moved: the next command replaces it, whatever its index) → absent (released: a command with
// index 0; or expired: dropped when the table is pruned, and ignored by compaction at once).
//
// Expiry is wall-clock time: `expiresAtMs` is the proposing member's wall clock plus the ttl,
// written into the command, so a member that replays the command after a restart sees the same
// deadline (a ttl counted from apply would restart with every replay). Members' clocks differ by
// their skew, which shortens or lengthens a hold by as much: copiers renew every few seconds
// with a ttl of minutes.
//
// In memory only, not carried by snapshots: a member that restarts replays the log after its
// snapshot (holds applied since come back), and copiers renew their hold every few seconds;
// a hold applied before the snapshot is back by the next renewal, long before the member has
// applied --snapshot-count more entries and could compact again.
//
// Bound: at most LOG_HOLDS_MAX consumers. A new consumer is refused when the table is full of
// unexpired holds: at propose time by the member asked (`admits`), and again at apply time
// (after dropping the expired ones) for proposals that raced; a refused command changes nothing
// and is answered UNAVAILABLE. Holds of known consumers are always renewed.
//
// Invariant: size <= LOG_HOLDS_MAX, and every hold kept has index >= 1.

import type { Index } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';

/** LOG_HOLDS_MAX bounds the consumers holding a member's log at once. */
export const LOG_HOLDS_MAX = 64;
/** LOG_HOLD_CONSUMER_BYTES_MAX bounds a consumer's name, in UTF-8 bytes. */
export const LOG_HOLD_CONSUMER_BYTES_MAX = 64;
/** LOG_HOLD_TTL_MS_MAX bounds a hold's ttl: a consumer gone for good holds the log at most this long. */
export const LOG_HOLD_TTL_MS_MAX = 60 * 60_000;

/**
 * LogHoldCommand is the node command that places (index >= 1), renews, moves or releases
 * (index 0) `consumer`'s hold. `expiresAtMs` is the proposer's wall clock plus the ttl (0 on a
 * release).
 */
export interface LogHoldCommand {
  readonly type: 'logHold';
  readonly consumer: string;
  readonly index: Index;
  readonly expiresAtMs: number;
}

/** LogHold is one consumer's hold as applied on a member: keep the log from `index` on until `expiresAtMs` (wall clock). */
export interface LogHold {
  readonly consumer: string;
  readonly index: Index;
  readonly expiresAtMs: number;
}

/** logHoldConsumerProblem says what is wrong with a consumer's name, or undefined when it is good. */
export function logHoldConsumerProblem(consumer: unknown): string | undefined {
  if (typeof consumer !== 'string') return 'a consumer is a string';
  if (consumer.length === 0) return 'a consumer is not empty: name the reader (e.g. its copy\'s id)';
  const bytes = Buffer.byteLength(consumer, 'utf8');
  if (bytes > LOG_HOLD_CONSUMER_BYTES_MAX) return `a consumer is at most ${LOG_HOLD_CONSUMER_BYTES_MAX} bytes of UTF-8, got ${bytes}`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(consumer)) return 'a consumer has no control characters';
  // A lone surrogate does not survive UTF-8: the name would not be the one stored.
  if (Buffer.from(consumer, 'utf8').toString('utf8') !== consumer) return 'a consumer is well-formed Unicode';
  return undefined;
}

/**
 * checkLogHoldRequest refuses a hold before it is proposed: INVALID_ARGUMENT naming the field
 * (`consumer`, `index`, `ttl_ms`). A hold has index >= 1 and ttlMs in 1..LOG_HOLD_TTL_MS_MAX;
 * a release has index 0 (its ttl is ignored, but must still be in 0..LOG_HOLD_TTL_MS_MAX).
 */
export function checkLogHoldRequest(consumer: unknown, index: unknown, ttlMs: unknown): void {
  const consumerProblem = logHoldConsumerProblem(consumer);
  if (consumerProblem !== undefined) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `log hold: ${consumerProblem}`, { details: { field: 'consumer' } });
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `log hold: the index is a non-negative integer (0 releases the hold), got ${String(index)}`, { details: { field: 'index' } });
  }
  if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < (index === 0 ? 0 : 1) || ttlMs > LOG_HOLD_TTL_MS_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `log hold: the ttl is 1..${LOG_HOLD_TTL_MS_MAX} ms, got ${String(ttlMs)}`, { details: { field: 'ttl_ms' } });
  }
}

/** logHoldCommandProblem says what is wrong with a logHold command's fields, or undefined when they are good. */
export function logHoldCommandProblem(command: Readonly<Record<string, unknown>>): string | undefined {
  const consumerProblem = logHoldConsumerProblem(command.consumer);
  if (consumerProblem !== undefined) return consumerProblem;
  if (typeof command.index !== 'number' || !Number.isSafeInteger(command.index) || command.index < 0) return 'bad index';
  if (typeof command.expiresAtMs !== 'number' || !Number.isSafeInteger(command.expiresAtMs) || command.expiresAtMs < 0) return 'bad expiresAtMs';
  return undefined;
}

/** checkLogHoldCommand validates a decoded logHold command (malformed bytes passed a CRC: CORRUPTION). */
export function checkLogHoldCommand(command: Record<string, unknown>): LogHoldCommand {
  const problem = logHoldCommandProblem(command);
  if (problem !== undefined) throw new StrataError(ErrorCode.CORRUPTION, `logHold command: ${problem}`);
  return { type: 'logHold', consumer: command.consumer as string, index: command.index as number, expiresAtMs: command.expiresAtMs as number };
}

/** tooManyLogHolds is the refusal of a new consumer when LOG_HOLDS_MAX unexpired holds are kept. */
export function tooManyLogHolds(consumer: string): StrataError {
  return new StrataError(
    ErrorCode.UNAVAILABLE,
    `log hold: ${LOG_HOLDS_MAX} consumers hold the log already; ${JSON.stringify(consumer)} is refused until one releases its hold or lets it expire (at most ${LOG_HOLD_TTL_MS_MAX / 60_000} minutes)`,
    { details: { consumer } },
  );
}

/** LogHolds is the table of holds as applied on this member; see the file comment. */
export class LogHolds {
  // Invariant: holds.size <= LOG_HOLDS_MAX; every hold's index >= 1.
  readonly #holds = new Map<string, LogHold>();

  /** size counts the holds kept, expired ones not pruned yet included. */
  get size(): number {
    return this.#holds.size;
  }

  /** list lists the holds kept, expired ones not pruned yet included, in no order. */
  list(): LogHold[] {
    return [...this.#holds.values()];
  }

  /** unexpired lists the holds that have not expired at `nowMs`, lowest index first (ties by consumer). */
  unexpired(nowMs: number): LogHold[] {
    const alive = [...this.#holds.values()].filter((hold) => hold.expiresAtMs > nowMs);
    return alive.sort((a, b) => a.index - b.index || (a.consumer < b.consumer ? -1 : a.consumer > b.consumer ? 1 : 0));
  }

  /** admits tells whether a hold for `consumer` would be taken at `nowMs`: a known consumer always is, a new one while fewer than LOG_HOLDS_MAX holds are unexpired. */
  admits(consumer: string, nowMs: number): boolean {
    return this.#holds.has(consumer) || this.unexpired(nowMs).length < LOG_HOLDS_MAX;
  }

  /**
   * apply applies a committed logHold command at wall-clock time `nowMs`: a release or an
   * expired hold drops the consumer's; a hold replaces it; a new consumer over the bound
   * (once expired holds are dropped) is refused, changing nothing.
   */
  apply(command: LogHoldCommand, nowMs: number): { readonly error?: StrataError } {
    assert(Number.isSafeInteger(command.index) && command.index >= 0, 'a logHold command was checked when decoded');
    if (command.index === 0 || command.expiresAtMs <= nowMs) {
      // A hold that expired already (a command replayed after a restart) holds nothing: as a release.
      this.#holds.delete(command.consumer);
      return {};
    }
    if (!this.#holds.has(command.consumer) && this.#holds.size >= LOG_HOLDS_MAX) {
      this.#prune(nowMs);
      if (this.#holds.size >= LOG_HOLDS_MAX) return { error: tooManyLogHolds(command.consumer) };
    }
    this.#holds.set(command.consumer, { consumer: command.consumer, index: command.index, expiresAtMs: command.expiresAtMs });
    assert(this.#holds.size <= LOG_HOLDS_MAX, 'at most LOG_HOLDS_MAX holds');
    return {};
  }

  // #prune drops the holds expired at `nowMs`.
  #prune(nowMs: number): void {
    for (const [consumer, hold] of this.#holds) if (hold.expiresAtMs <= nowMs) this.#holds.delete(consumer);
  }
}

// DigestPinSource: what a member offers the Merkle diff — its identity, and views of its state
// digest pinned at one index (src/storage's DigestView), named by a pin id. In production it
// is RaftNode's pinDigestView / digestView / releaseDigestView (src/server's
// raft-node-digest-pins.ts); StateMachineDigestPins below is the reference over one
// KvStateMachine with no Raft (applied pins only), for tests and the benchmark.
//
// A pin is in one of two states: open (its view pinned; each use keeps it alive) or gone
// (released, expired after PIN_IDLE_MS_MAX unused, or never made): a request naming it is then
// refused with PIN_NOT_FOUND_CODE (INVALID_ARGUMENT, field `pin_id`: the catalogue has no
// NOT_FOUND). The state machine bounds the views open at once (DIGEST_VIEWS_MAX; UNAVAILABLE
// beyond).

import type { DigestView, KvStateMachine } from '../storage/index.ts';
import type { Clock } from '../util/clock.ts';
import { SYSTEM_CLOCK } from '../util/clock.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';

/** PinAt: the applied state of one member now, or a checkpoint agreed through Raft (every member at its index). */
export type PinAt = 'applied' | 'checkpoint';

/** DigestPin is a pin made: its id, and the index and revision its view shows. */
export interface DigestPin {
  readonly pinId: string;
  readonly index: number;
  readonly revision: number;
}

/** PinCallOptions bound one call: how long to wait, and a cancel. */
export interface PinCallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs: number;
}

/** DigestPinSource is one member's digest views (see the file comment). */
export interface DigestPinSource {
  /** The member's cluster (two members with one cluster id are replicas of each other). */
  readonly clusterId: number;
  readonly memberId: number;
  pin(options: PinCallOptions & { readonly at: PinAt }): Promise<DigestPin>;
  /** view answers a view pinned on this member (waiting up to timeoutMs for a checkpoint not applied yet); the view stays the source's. */
  view(pinId: string, options: PinCallOptions): Promise<DigestView>;
  /** release lets the view go (idempotent). */
  release(pinId: string): Promise<void>;
}

/** PIN_IDLE_MS_MAX: a pin unused this long expires. */
export const PIN_IDLE_MS_MAX = 5 * 60_000;

/** PIN_NOT_FOUND_CODE is the catalogue code of a request naming a pin that is gone. */
export const PIN_NOT_FOUND_CODE = ErrorCode.INVALID_ARGUMENT;

/** pinNotFound is the error for a pin that is gone, naming it (details.field = 'pin_id'). */
export function pinNotFound(pinId: string): StrataError {
  return new StrataError(PIN_NOT_FOUND_CODE, `no digest view is pinned as ${JSON.stringify(pinId)} on this member: it expired (${PIN_IDLE_MS_MAX / 60_000} minutes unused), was released, or was pinned on another member`, {
    details: { field: 'pin_id', pinId },
  });
}

/**
 * StateMachineDigestPins pins views of one KvStateMachine (see the file comment). Expired
 * pins are released when the next call comes (it keeps no timer).
 */
export class StateMachineDigestPins implements DigestPinSource {
  readonly clusterId: number;
  readonly memberId: number;
  readonly #machine: KvStateMachine;
  readonly #clock: Clock;
  // Invariant: every view here is open; lastUsedMs is when it was last pinned or read.
  readonly #pins = new Map<string, { view: DigestView; lastUsedMs: number }>();
  #made = 0;

  constructor(machine: KvStateMachine, identity: { readonly clusterId: number; readonly memberId: number }, clock: Clock = SYSTEM_CLOCK) {
    this.#machine = machine;
    this.clusterId = identity.clusterId;
    this.memberId = identity.memberId;
    this.#clock = clock;
  }

  async pin(options: PinCallOptions & { readonly at: PinAt }): Promise<DigestPin> {
    await this.#expire();
    if (options.at === 'checkpoint') throw new StrataError(ErrorCode.UNIMPLEMENTED, 'a state machine without Raft pins its applied state only');
    if (options.signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the pin was cancelled');
    const view = this.#machine.openDigestView();
    this.#made += 1;
    const pinId = `a${this.#made}`;
    this.#pins.set(pinId, { view, lastUsedMs: this.#clock.now() });
    return { pinId, index: view.appliedIndex, revision: view.revision };
  }

  async view(pinId: string, options: PinCallOptions): Promise<DigestView> {
    await this.#expire();
    if (options.signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the call was cancelled');
    const pin = this.#pins.get(pinId);
    if (pin === undefined) throw pinNotFound(pinId);
    pin.lastUsedMs = this.#clock.now();
    return pin.view;
  }

  async release(pinId: string): Promise<void> {
    const pin = this.#pins.get(pinId);
    this.#pins.delete(pinId);
    await pin?.view.close();
  }

  /** close releases every pin. */
  async close(): Promise<void> {
    for (const pinId of [...this.#pins.keys()]) await this.release(pinId);
  }

  async #expire(): Promise<void> {
    const nowMs = this.#clock.now();
    for (const [pinId, pin] of [...this.#pins]) if (nowMs - pin.lastUsedMs >= PIN_IDLE_MS_MAX) await this.release(pinId);
  }
}

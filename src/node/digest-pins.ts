// Digest views pinned on this member for a Merkle diff (src/diff), by pin id: `a<n>` for a
// view of the state applied when it was asked for, `i<index>` for the view every member
// pins exactly at a checkpoint entry that asked for it. Each pin holds a LevelDB snapshot and
// a copy of the digest's sums (2 MiB), so they are few (DIGEST_PINS_MAX), expire after
// PIN_IDLE_MS unused (PIN_NEVER_USED_MS when never read), and are all released before the state machine is replaced (a snapshot
// install) or closed.

import type { DigestView } from '../storage/index.ts';
import { ErrorCode, StrataError } from '../util/index.ts';

/** DIGEST_PINS_MAX bounds the views pinned at once on a member (below the state machine's DIGEST_VIEWS_MAX). */
export const DIGEST_PINS_MAX = 4;
/** PIN_IDLE_MS: a pin unused this long is released. */
export const PIN_IDLE_MS = 5 * 60_000;
/**
 * PIN_NEVER_USED_MS: a pin never read this long after it was made is released: every member
 * pins at a checkpoint a diff asked for, but the diff reads only the two it compares.
 */
export const PIN_NEVER_USED_MS = 30_000;

/** NodeDigestPins is a member's pinned digest views (see the file comment). */
export class NodeDigestPins {
  private readonly pins = new Map<string, { view: DigestView; madeMs: number; lastUsedMs: number; used: boolean }>();
  private made = 0;

  /** nextAppliedId names the next pin of the applied state. */
  nextAppliedId(): string {
    this.made += 1;
    return `a${this.made}`;
  }

  /** canPin tells whether another view may be pinned. */
  canPin(): boolean {
    return this.pins.size < DIGEST_PINS_MAX;
  }

  /** add keeps a view under `pinId` (a checkpoint pinned twice keeps its first view). */
  add(pinId: string, view: DigestView, nowMs: number): boolean {
    if (this.pins.has(pinId) || !this.canPin()) return false;
    this.pins.set(pinId, { view, madeMs: nowMs, lastUsedMs: nowMs, used: false });
    return true;
  }

  /** get answers a pinned view and keeps it alive, or undefined. */
  get(pinId: string, nowMs: number): DigestView | undefined {
    const pin = this.pins.get(pinId);
    if (pin === undefined) return undefined;
    pin.lastUsedMs = nowMs;
    pin.used = true;
    return pin.view;
  }

  /** release lets a view go (idempotent). */
  async release(pinId: string): Promise<void> {
    const pin = this.pins.get(pinId);
    this.pins.delete(pinId);
    await pin?.view.close();
  }

  /** sweep releases the views unused for PIN_IDLE_MS. */
  async sweep(nowMs: number): Promise<void> {
    for (const [pinId, pin] of [...this.pins]) {
      if (nowMs - pin.lastUsedMs >= PIN_IDLE_MS || (!pin.used && nowMs - pin.madeMs >= PIN_NEVER_USED_MS)) await this.release(pinId);
    }
  }

  /** releaseAll releases every view (before the state machine is replaced or closed). */
  async releaseAll(): Promise<void> {
    for (const pinId of [...this.pins.keys()]) await this.release(pinId);
  }
}

/** tooManyPins is the error when DIGEST_PINS_MAX views are pinned. */
export function tooManyPins(): StrataError {
  return new StrataError(ErrorCode.UNAVAILABLE, `${DIGEST_PINS_MAX} digest views are pinned on this member already; retry when a diff ended (or in ${PIN_IDLE_MS / 60_000} minutes)`);
}

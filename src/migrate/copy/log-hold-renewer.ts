// holdLogWhile keeps a log hold (Admin.LogHold) on a stratakv cluster a copier reads: the
// cluster then keeps its Raft log from the copier's position on, so a copier stopped for a
// while (killed, restarted by its supervisor) still finds the entries it needs instead of a
// compacted log (a forward copy would scan again; the reverse copy into etcd could not go on).
// The hold is renewed every LOG_HOLD_RENEW_MS with the copier's current position and expires
// LOG_HOLD_TTL_MS after the last renewal: a copier that never comes back stops holding the
// log then (and a member never keeps more than compactionLogBytesMax for it).

import { ErrorCode, isStrataError, type StrataError } from '../../util/errors.ts';
import type { LogCopySource } from './copy-ends.ts';

/** LOG_HOLD_TTL_MS is how long a hold outlives its copier's last renewal. */
export const LOG_HOLD_TTL_MS = 30 * 60_000;
/** LOG_HOLD_RENEW_MS is how often a running copier renews its hold. */
export const LOG_HOLD_RENEW_MS = 5_000;

/** LogHoldRenewer is a running renewal; stop() ends it (the hold stays until it expires or is released). */
export interface LogHoldRenewer {
  stop(): void;
}

/**
 * holdLogWhile holds `log` from `position()` (the next index the copier reads) now and every
 * LOG_HOLD_RENEW_MS until stopped. A failed renewal is reported and tried again at the next
 * one (the copy goes on without it); a cluster without log holds (UNIMPLEMENTED) is left alone.
 */
export function holdLogWhile(log: LogCopySource, consumer: string, position: () => number, onError: (error: StrataError) => void): LogHoldRenewer {
  let stopped = false;
  let inFlight = false;
  let unsupported = false;
  const renew = (): void => {
    if (stopped || inFlight || unsupported) return;
    inFlight = true;
    log
      .hold(consumer, Math.max(1, position()), LOG_HOLD_TTL_MS)
      .catch((error: unknown) => {
        if (isStrataError(error, ErrorCode.UNIMPLEMENTED)) unsupported = true;
        else if (isStrataError(error)) onError(error);
      })
      .finally(() => {
        inFlight = false;
      });
  };
  renew();
  const timer = setInterval(renew, LOG_HOLD_RENEW_MS);
  timer.unref();
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}

/** releaseLogHold drops a hold (a copy that ended); failures are left to the hold's expiry. */
export async function releaseLogHold(log: LogCopySource, consumer: string): Promise<void> {
  await log.hold(consumer, 0, 0).catch(() => undefined);
}

/** logHoldConsumer names a copy's hold: one per copy, so a resumed copier renews the hold its last run left. */
export function logHoldConsumer(direction: 'copy' | 'reverse-copy', copyId: string): string {
  return `stratakv-${direction}/${copyId}`;
}

// When a failed call may be sent again. The rule is clientv3's (etcd's retry interceptor):
// a call that only reads may be repeated after any UNAVAILABLE answer; a call that writes may
// be repeated only when the failure proves the server never ran it — the request never left
// this process (no connection, stream refused), or the server refused it before proposing
// ("etcdserver: no leader"). A timeout, a leader change or a connection that broke after the
// request was sent leave the outcome unknown: repeating such a write could apply it twice, so
// the error goes back to the caller.

import { GrpcStatus } from '../util/etcd-errors.ts';

/** CallKind says whether a call only reads (repeatable) or may change state (not repeatable). */
export type CallKind = 'read' | 'write';

/** ATTEMPTS_MAX bounds the attempts of one call, across every endpoint (the deadline usually ends them first). */
export const ATTEMPTS_MAX = 20;
/** BACKOFF_INITIAL_MS is the first pause, taken once every endpoint has failed once. */
export const BACKOFF_INITIAL_MS = 50;
/** BACKOFF_MAX_MS caps the pause between rounds of attempts. */
export const BACKOFF_MAX_MS = 1000;

// grpc-js's own texts for a request that never reached a server.
const NEVER_SENT_DETAILS: readonly string[] = [
  'No connection established',
  'Stream refused by server',
  'Channel closed before call started',
];

// etcd's refusals made before a request is proposed: the request did nothing. "unhealthy
// cluster" is MemberAdd/Remove/Promote refused by the strict reconfiguration check while a
// member has not been connected long enough; it clears within seconds.
// "permanently removed" comes from a member that has left the cluster (a migration retires
// every old member): a removed stratakv member refuses every request with it before doing
// anything (RaftNode's checkServing, ahead of any proposal, forward or read), also once it
// has stopped, so another member may run the request. "server stopped" is not here: real
// etcd also answers it to a proposal it was waiting on when it stopped, so a write that got
// it may have been applied.
const REFUSED_BEFORE_PROPOSING: readonly string[] = [
  'etcdserver: no leader',
  'etcdserver: rpc not supported for learner',
  'etcdserver: unhealthy cluster',
  'etcdserver: the member has been permanently removed from the cluster',
];

// A member with a CORRUPT alarm (or a cluster without a majority digest, for writes) refuses
// every request before doing anything with it; another member may serve it.
const CORRUPT_REFUSAL = 'etcdserver: corrupt cluster';

/** neverExecuted tells whether a failure proves the server did not run the request. */
export function neverExecuted(code: number, details: string): boolean {
  if (code === GrpcStatus.DATA_LOSS) return details === CORRUPT_REFUSAL;
  if (code !== GrpcStatus.UNAVAILABLE) return false;
  return NEVER_SENT_DETAILS.some((text) => details.includes(text)) || REFUSED_BEFORE_PROPOSING.includes(details);
}

/** isRetryable tells whether a call of this kind may be sent again after this failure. */
export function isRetryable(kind: CallKind, code: number, details: string): boolean {
  if (kind === 'read') return code === GrpcStatus.UNAVAILABLE || (code === GrpcStatus.DATA_LOSS && details === CORRUPT_REFUSAL);
  return neverExecuted(code, details);
}

/**
 * MIRROR_READER_METADATA marks a call that may read a read-only mirror linearizably (the
 * copier's and verify's own reads); src/server's unary-call.ts reads the same key.
 */
export const MIRROR_READER_METADATA = 'stratakv-mirror-reader';

// A mirror's refusal (etcd-errors.ts' MIRROR_READ_ONLY): refused before or at apply, nothing done.
const MIRROR_REFUSAL_PREFIX = 'stratakv: read-only mirror: ';

/** isMirrorRefusal tells whether a failure is a read-only mirror's refusal (the request did nothing). */
export function isMirrorRefusal(code: number, details: string): boolean {
  return code === GrpcStatus.FAILED_PRECONDITION && details.startsWith(MIRROR_REFUSAL_PREFIX);
}

/** MIRROR_BACKOFF_INITIAL_MS and MIRROR_BACKOFF_MAX_MS bound the pauses between rounds of a call refused by mirrors (failOverOnMirror). */
export const MIRROR_BACKOFF_INITIAL_MS = 25;
export const MIRROR_BACKOFF_MAX_MS = 100;

/**
 * mirrorBackoffMs is the `step`th pause of a call every endpoint refused as a read-only mirror:
 * a switch's pause lasts about half a second and ends at one moment, so the pauses stay short
 * (with backoffMs's doubling to 1 s, writers that waited out a 1.2 s switch pause saw 1.7 s).
 */
export function mirrorBackoffMs(step: number): number {
  return Math.min(MIRROR_BACKOFF_MAX_MS, MIRROR_BACKOFF_INITIAL_MS * 2 ** Math.min(30, Math.max(0, step - 1)));
}

/** backoffMs is the `step`th pause (1 for the first); it doubles up to BACKOFF_MAX_MS. */
export function backoffMs(step: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** Math.min(30, Math.max(0, step - 1)));
}

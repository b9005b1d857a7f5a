// The errors the driver's parts settle requests with. Their wording is etcd's, taken from the
// one catalogue src/util/etcd-errors.ts keeps (the gRPC layer maps the code; the text is what
// etcd clients show), so that the parts cannot drift apart in code or wording.

import { assert, ErrorCode, StrataError } from '../util/index.ts';
import { ETCD_ERRORS } from '../util/etcd-errors.ts';

function catalogued(code: ErrorCode, options: { readonly cause?: unknown; readonly detail?: string } = {}): StrataError {
  const base = ETCD_ERRORS[code].message;
  assert(base !== undefined, `the etcd error catalogue has a message for ${code}`);
  const message = options.detail === undefined ? base : `${base}, ${options.detail}`;
  return new StrataError(code, message, options.cause === undefined ? {} : { cause: options.cause });
}

/** requestCanceled: the caller's AbortSignal fired (etcd: ErrCanceled). */
export function requestCanceled(): StrataError {
  return catalogued(ErrorCode.CANCELED);
}

/** requestTimedOut: the request's deadline passed (etcd: ErrTimeout); `cause` or `detail` say what it was waiting for. */
export function requestTimedOut(options: { readonly cause?: unknown; readonly detail?: string } = {}): StrataError {
  return catalogued(ErrorCode.TIMEOUT, options);
}

/** serverStopped: the member is stopping or stopped (etcd: ErrStopped). */
export function serverStopped(): StrataError {
  return catalogued(ErrorCode.STOPPED);
}

/** memberRemoved: this member was removed from the cluster (etcd: ErrMemberRemoved). */
export function memberRemoved(): StrataError {
  return catalogued(ErrorCode.MEMBER_REMOVED);
}

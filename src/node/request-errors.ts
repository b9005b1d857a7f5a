// The errors every part of the driver settles a request with, worded as etcd words them (the
// gRPC layer maps the code; the text is what etcd clients show). One place, so that the
// parts cannot drift apart in code or wording.

import { ErrorCode, StrataError } from '../util/index.ts';

/** requestCanceled: the caller's AbortSignal fired (etcd: ErrCanceled). */
export function requestCanceled(): StrataError {
  return new StrataError(ErrorCode.CANCELED, 'etcdserver: request canceled');
}

/** requestTimedOut: the request's deadline passed (etcd: ErrTimeout); `cause` says what it was waiting for. */
export function requestTimedOut(options: { readonly cause?: unknown; readonly detail?: string } = {}): StrataError {
  const message = options.detail === undefined ? 'etcdserver: request timed out' : `etcdserver: request timed out, ${options.detail}`;
  return new StrataError(ErrorCode.TIMEOUT, message, options.cause === undefined ? {} : { cause: options.cause });
}

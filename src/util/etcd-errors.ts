// The one table between our error catalogue (errors.ts) and what etcd puts on the wire: a gRPC
// status code and, for the errors etcd defines, etcd's exact message (api/v3rpc/rpctypes/
// error.go, server/etcdserver/api/v3rpc/util.go). etcd clients match those messages
// (clientv3 turns them back into typed errors; etcdctl prints them), so the text is the
// contract here. The server turns a StrataError into a status with toGrpcStatus; our client
// turns a status back into a StrataError with fromGrpcStatus.
//
// src/util imports no gRPC library, so the numeric status codes are defined here; they are
// fixed by the gRPC specification (doc/statuscodes.md).

import { ErrorCode, StrataError } from './errors.ts';

/** GrpcStatus names gRPC's numeric status codes (the same numbers as grpc-js's `status`). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** GrpcStatus is the union of the numeric status codes. */
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/**
 * EtcdErrorMapping says how one ErrorCode goes on the wire. Exactly one of the text fields is
 * set, or none:
 * - `message`: etcd's exact text, sent instead of the error's own message;
 * - `prefix`: our own code with no etcd equivalent; sent as prefix + the error's message, and
 *   recognised by the prefix on the way back;
 * - neither: the error's message is sent as it is, and the code is the one fromGrpcStatus
 *   gives for any unrecognised message with this status (see STATUS_DEFAULTS).
 * `returnsAs` marks an alias: the code shares another code's etcd message, so it comes back
 * as that code.
 */
export interface EtcdErrorMapping {
  readonly status: GrpcStatus;
  readonly message?: string;
  readonly prefix?: string;
  readonly returnsAs?: ErrorCode;
}

/** ETCD_ERRORS is the table: every ErrorCode, its gRPC status and etcd's message. */
export const ETCD_ERRORS: { readonly [C in ErrorCode]: EtcdErrorMapping } = {
  // The request checks (etcd's rpctypes).
  KEY_NOT_PROVIDED: { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: key is not provided' },
  REQUEST_TOO_LARGE: { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: request is too large' },
  TOO_MANY_OPERATIONS: { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: too many operations in txn request' },
  DUPLICATE_KEY: { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: duplicate key given in txn request' },
  COMPACTED: { status: GrpcStatus.OUT_OF_RANGE, message: 'etcdserver: mvcc: required revision has been compacted' },
  FUTURE_REVISION: { status: GrpcStatus.OUT_OF_RANGE, message: 'etcdserver: mvcc: required revision is a future revision' },
  INVALID_ARGUMENT: { status: GrpcStatus.INVALID_ARGUMENT },
  UNIMPLEMENTED: { status: GrpcStatus.UNIMPLEMENTED },

  // Leadership and liveness.
  NOT_LEADER: { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: not leader' },
  NO_LEADER: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: no leader' },
  LEADER_CHANGED: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: leader changed' },
  // etcd has no separate error for a proposal refused during a hand-over: its clients see the
  // hand-over as a leader change, so ours say the same.
  LEADER_TRANSFER_IN_PROGRESS: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: leader changed', returnsAs: ErrorCode.LEADER_CHANGED },
  // etcd's ErrTooManyRequests: the leader is too far behind on applying; back off and retry.
  PROPOSAL_DROPPED: { status: GrpcStatus.RESOURCE_EXHAUSTED, message: 'etcdserver: too many requests' },
  TIMEOUT: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: request timed out' },
  STOPPED: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: server stopped' },
  CANCELED: { status: GrpcStatus.CANCELLED, message: 'etcdserver: request canceled' },
  NOT_SUPPORTED_FOR_LEARNER: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: rpc not supported for learner' },
  UNAVAILABLE: { status: GrpcStatus.UNAVAILABLE },
  SNAPSHOT_TEMPORARILY_UNAVAILABLE: { status: GrpcStatus.UNAVAILABLE, prefix: 'stratakv: snapshot temporarily unavailable: ' },
  SNAPSHOT_NOT_FOUND: { status: GrpcStatus.NOT_FOUND, prefix: 'stratakv: snapshot not found: ' },

  // Membership (etcd's membership errors as v3rpc maps them).
  MEMBER_NOT_FOUND: { status: GrpcStatus.NOT_FOUND, message: 'etcdserver: member not found' },
  PEER_URL_EXISTS: { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: Peer URLs already exists' },
  MEMBER_NOT_LEARNER: { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: can only promote a learner member' },
  LEARNER_NOT_READY: { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: can only promote a learner member which is in sync with leader' },
  TOO_MANY_LEARNERS: { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: too many learner members in cluster' },
  BAD_LEADER_TRANSFEREE: { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: bad leader transferee' },
  NOT_ENOUGH_STARTED_MEMBERS: { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: re-configuration failed due to not enough started members' },
  // etcd has no gRPC error for this (its server stops, and clients then see it unreachable);
  // UNAVAILABLE sends a client on to another member, which is what it should do.
  MEMBER_REMOVED: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: the member has been permanently removed from the cluster' },
  CONF_CHANGE_REFUSED: { status: GrpcStatus.FAILED_PRECONDITION, prefix: 'stratakv: configuration change refused: ' },
  // The driver retries a change refused for this until its deadline, so a client sees it only
  // as the cause of a TIMEOUT; UNAVAILABLE says "retry", which is right if it ever escapes.
  CONF_CHANGE_PENDING: { status: GrpcStatus.UNAVAILABLE, prefix: 'stratakv: another configuration change is pending: ' },
  CLUSTER_ID_MISMATCH: { status: GrpcStatus.FAILED_PRECONDITION, prefix: 'stratakv: cluster ID mismatch: ' },
  JOURNAL_CONFLICT: { status: GrpcStatus.FAILED_PRECONDITION, prefix: 'stratakv: migration journal conflict: ' },
  // FAILED_PRECONDITION, not UNAVAILABLE: every member of a mirror refuses, so a client must
  // not go round the members retrying; the message says where writes go.
  MIRROR_READ_ONLY: { status: GrpcStatus.FAILED_PRECONDITION, prefix: 'stratakv: read-only mirror: ' },
  MIRROR_CONFLICT: { status: GrpcStatus.FAILED_PRECONDITION, prefix: 'stratakv: mirror conflict: ' },

  // Broken storage or installation, and the alarms (etcd's ErrGRPCCorrupt and ErrGRPCNoSpace).
  CORRUPTION: { status: GrpcStatus.DATA_LOSS, message: 'etcdserver: corrupt cluster' },
  // etcd answers this for a call its CORRUPT alarm refuses; clients cannot tell it from a
  // failed checksum, so it comes back as CORRUPTION.
  CORRUPT_ALARM: { status: GrpcStatus.DATA_LOSS, message: 'etcdserver: corrupt cluster', returnsAs: ErrorCode.CORRUPTION },
  NO_SPACE: { status: GrpcStatus.RESOURCE_EXHAUSTED, message: 'etcdserver: mvcc: database space exceeded' },
  IO_ERROR: { status: GrpcStatus.INTERNAL, prefix: 'stratakv: disk I/O failed: ' },
  NATIVE_UNAVAILABLE: { status: GrpcStatus.INTERNAL, prefix: 'stratakv: native addon unavailable: ' },
};

// STATUS_DEFAULTS is the code for a status whose message we do not recognise: a message from
// an etcd error we do not model, or from the gRPC library itself ("Received message larger
// than max", "Deadline exceeded", "No connection established"). Retryable statuses map to
// retryable codes and the rest to INVALID_ARGUMENT, which no client retries.
const STATUS_DEFAULTS: readonly ErrorCode[] = [
  /* OK */ ErrorCode.INVALID_ARGUMENT,
  /* CANCELLED */ ErrorCode.CANCELED,
  /* UNKNOWN */ ErrorCode.UNAVAILABLE,
  /* INVALID_ARGUMENT */ ErrorCode.INVALID_ARGUMENT,
  /* DEADLINE_EXCEEDED */ ErrorCode.TIMEOUT,
  /* NOT_FOUND */ ErrorCode.INVALID_ARGUMENT,
  /* ALREADY_EXISTS */ ErrorCode.INVALID_ARGUMENT,
  /* PERMISSION_DENIED */ ErrorCode.INVALID_ARGUMENT,
  /* RESOURCE_EXHAUSTED */ ErrorCode.REQUEST_TOO_LARGE,
  /* FAILED_PRECONDITION */ ErrorCode.INVALID_ARGUMENT,
  /* ABORTED */ ErrorCode.UNAVAILABLE,
  /* OUT_OF_RANGE */ ErrorCode.INVALID_ARGUMENT,
  /* UNIMPLEMENTED */ ErrorCode.UNIMPLEMENTED,
  /* INTERNAL */ ErrorCode.UNAVAILABLE,
  /* UNAVAILABLE */ ErrorCode.UNAVAILABLE,
  /* DATA_LOSS */ ErrorCode.CORRUPTION,
  /* UNAUTHENTICATED */ ErrorCode.INVALID_ARGUMENT,
];

// Other etcd messages that mean one of our codes (etcd sends them; we never do).
const EXTRA_ETCD_MESSAGES: ReadonlyMap<string, ErrorCode> = new Map([
  ['etcdserver: request timed out, possibly due to previous leader failure', ErrorCode.TIMEOUT],
  ['etcdserver: request timed out, possibly due to connection lost', ErrorCode.TIMEOUT],
  ['etcdserver: context deadline exceeded', ErrorCode.TIMEOUT],
]);

const CODE_BY_MESSAGE: ReadonlyMap<string, ErrorCode> = buildCodeByMessage();
const PREFIXED: readonly (readonly [string, ErrorCode])[] = Object.entries(ETCD_ERRORS)
  .filter(([, mapping]) => mapping.prefix !== undefined)
  .map(([code, mapping]) => [mapping.prefix ?? '', code as ErrorCode] as const);

function buildCodeByMessage(): Map<string, ErrorCode> {
  const byMessage = new Map<string, ErrorCode>(EXTRA_ETCD_MESSAGES);
  for (const [code, mapping] of Object.entries(ETCD_ERRORS) as [ErrorCode, EtcdErrorMapping][]) {
    if (mapping.message !== undefined && mapping.returnsAs === undefined) byMessage.set(mapping.message, code);
  }
  return byMessage;
}

/** GrpcErrorStatus is a status code with its message (grpc-js's `details`). */
export interface GrpcErrorStatus {
  readonly code: number;
  readonly details: string;
}

/**
 * toGrpcStatus says what status a service answers for `error`: a StrataError by the table;
 * an AbortError (the caller's signal fired) as etcd's "request canceled"; anything else as
 * UNKNOWN with its message, as etcd does for errors it does not map.
 */
export function toGrpcStatus(error: unknown): GrpcErrorStatus {
  if (error instanceof StrataError) {
    const mapping = ETCD_ERRORS[error.code];
    if (mapping.message !== undefined) return { code: mapping.status, details: mapping.message };
    if (mapping.prefix !== undefined) return { code: mapping.status, details: mapping.prefix + error.message };
    return { code: mapping.status, details: error.message };
  }
  if (error instanceof Error && error.name === 'AbortError') {
    return { code: GrpcStatus.CANCELLED, details: ETCD_ERRORS.CANCELED.message ?? '' };
  }
  return { code: GrpcStatus.UNKNOWN, details: error instanceof Error ? error.message : String(error) };
}

/**
 * fromGrpcStatus turns a status a server answered into a StrataError: by etcd's exact message
 * when it is one we know, by our prefix, else by the status code alone. `details.grpcCode`
 * keeps the status code.
 */
export function fromGrpcStatus(code: number, details: string): StrataError {
  const byMessage = CODE_BY_MESSAGE.get(details);
  if (byMessage !== undefined) return new StrataError(byMessage, details, { details: { grpcCode: code } });
  for (const [prefix, prefixed] of PREFIXED) {
    if (details.startsWith(prefix)) return new StrataError(prefixed, details.slice(prefix.length), { details: { grpcCode: code } });
  }
  const byStatus = STATUS_DEFAULTS[code] ?? ErrorCode.UNAVAILABLE;
  return new StrataError(byStatus, details, { details: { grpcCode: code } });
}

// The catalogue of operating errors. Each has a stable `code` that callers and tests match
// on (never the message). gRPC services map codes to status codes the way etcd does.

/** ErrorCode lists every stable error code stratakv reports, with what it means. */
export const ErrorCode = {
  /** This node is not the leader; `leaderId` (when known) says who is. */
  NOT_LEADER: 'NOT_LEADER',
  /** The requested log index was compacted away (it lies before the first index). */
  COMPACTED: 'COMPACTED',
  /** The requested log index is not yet in the log (it lies after the last index). */
  UNAVAILABLE: 'UNAVAILABLE',
  /** A snapshot is being prepared; ask again later. */
  SNAPSHOT_TEMPORARILY_UNAVAILABLE: 'SNAPSHOT_TEMPORARILY_UNAVAILABLE',
  /** The snapshot named is not in the snapshot store (never there, deleted by retention, or set aside as corrupt). */
  SNAPSHOT_NOT_FOUND: 'SNAPSHOT_NOT_FOUND',
  /** Proposals are refused while leadership is being handed over. */
  LEADER_TRANSFER_IN_PROGRESS: 'LEADER_TRANSFER_IN_PROGRESS',
  /** The leader holds more uncommitted bytes than its configured maximum. */
  PROPOSAL_DROPPED: 'PROPOSAL_DROPPED',
  /** A configuration change is refused: it is invalid in the configuration it would change. */
  CONF_CHANGE_REFUSED: 'CONF_CHANGE_REFUSED',
  /** Another configuration change is proposed and not yet applied (one at a time, thesis §4.1); retry once it is. */
  CONF_CHANGE_PENDING: 'CONF_CHANGE_PENDING',
  /** Stored bytes failed their checksum or framing. */
  CORRUPTION: 'CORRUPTION',
  /**
   * A CORRUPT alarm refuses the call: this member's state disagrees with the cluster (it then
   * serves no KV call), or the cluster has no majority digest (writes are refused everywhere).
   * etcd: "etcdserver: corrupt cluster", which clients read back as CORRUPTION.
   */
  CORRUPT_ALARM: 'CORRUPT_ALARM',
  /**
   * The write is refused for space: a NOSPACE alarm is raised, or it would take the database
   * past --quota-backend-bytes (etcd: "etcdserver: mvcc: database space exceeded").
   */
  NO_SPACE: 'NO_SPACE',
  /** A deadline passed before the operation finished. */
  TIMEOUT: 'TIMEOUT',
  /** A request or configuration was malformed or out of bounds. */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /**
   * A disk write or fsync failed. After a failed fsync the page cache may have dropped the
   * unsynced data, so the store refuses every later write and the process must stop.
   */
  IO_ERROR: 'IO_ERROR',
  /** A KV request has no key (etcd: "etcdserver: key is not provided"). */
  KEY_NOT_PROVIDED: 'KEY_NOT_PROVIDED',
  /** A key, value or whole request is over its maximum (etcd: "etcdserver: request is too large"). */
  REQUEST_TOO_LARGE: 'REQUEST_TOO_LARGE',
  /** A Txn has more operations than allowed (etcd: "etcdserver: too many operations in txn request"). */
  TOO_MANY_OPERATIONS: 'TOO_MANY_OPERATIONS',
  /** A Txn writes one key twice (etcd: "etcdserver: duplicate key given in txn request"). */
  DUPLICATE_KEY: 'DUPLICATE_KEY',
  /** A read asked for a revision after the current one (etcd: "mvcc: required revision is a future revision"). */
  FUTURE_REVISION: 'FUTURE_REVISION',
  /** No leader is known right now (etcd: "etcdserver: no leader"); retry later. */
  NO_LEADER: 'NO_LEADER',
  /** Leadership changed while the request was in flight; its outcome is unknown (etcd: "etcdserver: leader changed"). */
  LEADER_CHANGED: 'LEADER_CHANGED',
  /** The node is stopping or stopped (etcd: "etcdserver: server stopped"). */
  STOPPED: 'STOPPED',
  /** The caller cancelled the request (etcd: "etcdserver: request canceled"). */
  CANCELED: 'CANCELED',
  /** No member has this id (etcd: "etcdserver: member not found"). */
  MEMBER_NOT_FOUND: 'MEMBER_NOT_FOUND',
  /** Another member already has one of these peer URLs (etcd: "etcdserver: Peer URLs already exists"). */
  PEER_URL_EXISTS: 'PEER_URL_EXISTS',
  /** Only a learner can be promoted (etcd: "etcdserver: can only promote a learner member"). */
  MEMBER_NOT_LEARNER: 'MEMBER_NOT_LEARNER',
  /** The learner is not caught up with the leader (etcd: "etcdserver: can only promote a learner member which is in sync with leader"). */
  LEARNER_NOT_READY: 'LEARNER_NOT_READY',
  /** The cluster already has its maximum of learners (etcd: "etcdserver: too many learner members in cluster"). */
  TOO_MANY_LEARNERS: 'TOO_MANY_LEARNERS',
  /** The leader-transfer target is not a voter of this cluster (etcd: "etcdserver: bad leader transferee"). */
  BAD_LEADER_TRANSFEREE: 'BAD_LEADER_TRANSFEREE',
  /** A change would leave too few started voters for a quorum (etcd: "etcdserver: re-configuration failed due to not enough started members"). */
  NOT_ENOUGH_STARTED_MEMBERS: 'NOT_ENOUGH_STARTED_MEMBERS',
  /** This member was removed from the cluster (etcd: "etcdserver: the member has been permanently removed from the cluster"). */
  MEMBER_REMOVED: 'MEMBER_REMOVED',
  /** A learner does not serve this call (etcd: "etcdserver: rpc not supported for learner"). */
  NOT_SUPPORTED_FOR_LEARNER: 'NOT_SUPPORTED_FOR_LEARNER',
  /** The call exists in etcd's API but stratakv does not implement it yet. */
  UNIMPLEMENTED: 'UNIMPLEMENTED',
  /** The peer or message belongs to another cluster (etcd: "cluster ID mismatch"). */
  CLUSTER_ID_MISMATCH: 'CLUSTER_ID_MISMATCH',
  /** The native addon (native/) is not built or does not load here; `npm run build:native` builds it. */
  NATIVE_UNAVAILABLE: 'NATIVE_UNAVAILABLE',
  /** The migration journal changed since the writer read it (another migrate process, or a retry that already landed). */
  JOURNAL_CONFLICT: 'JOURNAL_CONFLICT',
  /**
   * The cluster is a read-only mirror of another (`stratakv migrate copy`): client writes are
   * refused until the copy is switched over to it. Nothing was done; send the write to the source.
   */
  MIRROR_READ_ONLY: 'MIRROR_READ_ONLY',
  /**
   * A mirror command found the mirror state other than its writer expected (compare-and-set):
   * another copier, a retry that already landed, no mirror, or a cluster not empty.
   */
  MIRROR_CONFLICT: 'MIRROR_CONFLICT',
} as const;

/** ErrorCode is the union of the catalogue's codes. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const ERROR_CODES: ReadonlySet<unknown> = new Set<unknown>(Object.values(ErrorCode));

/** isErrorCode tells whether `value` (a code received from a peer, say) is in the catalogue. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return ERROR_CODES.has(value);
}

/** StrataError is an operating error with a stable code and an optional cause. */
export class StrataError extends Error {
  override name = 'StrataError';
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** isStrataError tells whether `error` is a StrataError, optionally with the given code. */
export function isStrataError(error: unknown, code?: ErrorCode): error is StrataError {
  return error instanceof StrataError && (code === undefined || error.code === code);
}

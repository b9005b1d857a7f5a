// The public surface of src/client: EtcdClient, a client of etcd's v3 gRPC API (real etcd or
// stratakv) with endpoint failover, leader discovery and retries only where they are safe.
export {
  EtcdClient,
  DEFAULT_TIMEOUT_MS,
  REQUEST_BYTES_MAX,
  RESPONSE_BYTES_MAX,
  LEADER_ATTEMPTS_MAX,
  STATUS_ALL_ATTEMPTS_MAX,
  SNAPSHOT_DIGEST_BYTES,
  CONNECTIONS_MAX,
  SYNC_ON_FAILURE_INTERVAL_MS_MIN,
  WATCH_STREAMS_MAX,
} from './etcd-client.ts';
export type {
  CallOptions,
  ClientLogger,
  DeleteOptions,
  EndpointStatusResult,
  EtcdClientOptions,
  GetOptions,
  MemberAddOptions,
  MemberAddResult,
  PutOptions,
  RangeOptions,
  SnapshotChunk,
  SnapshotOptions,
} from './etcd-client.ts';
export { LogStreamClient, LOG_HOLD_TIMEOUT_MS_DEFAULT, LOG_STREAM_MESSAGE_BYTES_MAX, RECONNECTS_MAX, RECONNECT_TIMEOUT_MS_DEFAULT } from './log-stream-client.ts';
export type { LogHoldAnswer, LogHoldOptions, LogStreamClientOptions, LogStreamEvent, LogStreamOptions } from './log-stream-client.ts';
export { ENDPOINTS_MAX, normalizeEndpoint } from './endpoint-picker.ts';
export { ATTEMPTS_MAX, BACKOFF_INITIAL_MS, BACKOFF_MAX_MS } from './retry-policy.ts';
export { prefixEnd } from './wire.ts';
export type { Bytes, ClusterAlarm, ClusterMember, EndpointStatus, MemberId, ResponseHeader, WatchEvent, WithHeader } from './wire.ts';
export {
  WATCH_IDLE_TIMEOUT_MS_DEFAULT,
  WATCH_QUEUE_BYTES_MAX,
  WATCH_QUEUE_RESPONSES_MAX,
  WATCH_RESPONSE_BYTES_MAX,
} from './watch-stream.ts';
export type { WatchBatch, WatchOptions, WatchStream } from './watch-stream.ts';
export { DiffClient, DIFF_CALL_TIMEOUT_MS_DEFAULT, DIFF_MESSAGE_BYTES_MAX, DIFF_OPEN_TIMEOUT_MS_DEFAULT, GRPC_MESSAGE_HEADER_BYTES } from './diff-client.ts';
export type { DiffClientOptions, DiffClientProgress, DiffMode, DiffOptions, DiffReport, DiffSide, DiffWireStats, PinnedView } from './diff-client.ts';
export { IntegrityClient } from './integrity-client.ts';
export type { IntegrityCheck, IntegrityReport, RebuildResult } from './integrity-client.ts';
export { ClusterInfoClient, CLUSTER_INFO_TIMEOUT_MS_DEFAULT } from './cluster-info-client.ts';
export type { ClusterInfo, ClusterInfoCallOptions, ClusterInfoClientOptions, ClusterInfoMember } from './cluster-info-client.ts';
export { AdminCalls, adminCallError, ADMIN_ATTEMPT_MS_MIN, ADMIN_CONNECTIONS_MAX, ADMIN_DEADLINE_GRACE_MS, ADMIN_PASS_OVER_CODES } from './admin-calls.ts';
export type { AdminCallOptions } from './admin-calls.ts';
export {
  MirrorClient,
  MIRROR_APPLY_OVERHEAD_BYTES,
  MIRROR_CALL_TIMEOUT_MS_DEFAULT,
  MIRROR_DELETE_OVERHEAD_BYTES,
  MIRROR_PUT_OVERHEAD_BYTES,
  MIRROR_REPLAY_COMMAND_OVERHEAD_BYTES,
  MIRROR_REPLAY_OVERHEAD_BYTES,
  MIRROR_REQUEST_BYTES_MAX_DEFAULT,
  encodePackedPuts,
  mirrorDeleteBytes,
  mirrorPutBytes,
  mirrorReplayCommandBytes,
  mirrorRequestBytes,
} from './mirror-client.ts';
export type {
  MirrorAnswer,
  MirrorApplyBatch,
  MirrorCallOptions,
  MirrorClientOptions,
  MirrorHeader,
  MirrorReplayBatch,
  MirrorScanOptions,
  MirrorScanPage,
  MirrorView,
  PinnedMirrorView,
} from './mirror-client.ts';
export { MigrationClient, MIGRATION_CALL_TIMEOUT_MS_DEFAULT } from './migration-client.ts';
export type { JournalInfo, MemberChange, MigrationMemberInfo, PeerReplicationInfo, ReplicationInfo } from './migration-client.ts';
export { probeJoiner, JOIN_PROBE_TIMEOUT_MS } from './join-probe.ts';
export type { JoinWaiting } from './join-probe.ts';

// The public surface of src/server: the etcd-compatible gRPC server, the backend contract it
// serves from, and RaftNodeBackend, which serves that contract from a RaftNode.
export { startEtcdServer, GRPC_OVERHEAD_BYTES, LISTEN_URLS_MAX } from './etcd-server.ts';
export type { EtcdServer, EtcdServerOptions, EtcdServerCloseOptions } from './etcd-server.ts';
export type { EtcdServerLogger } from './unary-call.ts';
export type { Alarm, AlarmCall, BackendSnapshot, BackendSnapshotInfo, EtcdBackend, HashKvAnswer, CallOptions, Member, MembersAnswer, MemberStatus, MirrorStatus, ResponseHeaderInfo } from './backend.ts';
export { SNAPSHOT_CALLS_MAX, SNAPSHOT_IN_FLIGHT_BYTES_MAX, SNAPSHOT_MESSAGE_BYTES_MAX, SNAPSHOT_READ_BYTES_MAX, SNAPSHOT_SEND_STALL_MS_MAX } from './snapshot-call.ts';
export { ETCD_PROTO_INCLUDE_DIR, ETCD_PROTO_FILE, ETCD_PROTO_LOADER_OPTIONS } from './proto-loading.ts';
export { MEMBER_PEER_URLS_MAX } from './etcd-cluster-service.ts';
export { RaftNodeBackend } from './raft-node-backend.ts';
export { raftNodeLogSource } from './raft-node-log-source.ts';
export { raftNodeDigestPins } from './raft-node-digest-pins.ts';
export type { DigestPinningNode } from './raft-node-digest-pins.ts';
export { createDiffService } from './diff-service.ts';
export type { DiffService, DiffServiceOptions } from './diff-service.ts';
export { createAdminService, loadAdminService, LOG_STREAMS_MAX, START_WAIT_MS_MAX } from './admin-service.ts';
export type { AdminService, AdminServiceOptions } from './admin-service.ts';
export { createClusterInfoService, toWireClusterInfo, toWireMember } from './cluster-info-service.ts';
export type { ClusterInfoNode, WireClusterInfoMember, WireClusterInfoResponse } from './cluster-info-service.ts';
export { createMigrationService, MIGRATION_CALL_TIMEOUT_MS_MAX } from './migration-service.ts';
export type { MigrationNode } from './migration-service.ts';
export {
  createMirrorService,
  decodeMirrorWriteRequest,
  decodePackedPuts,
  parseMirrorScanRequest,
  MIRROR_CALL_TIMEOUT_MS_MAX,
  MIRROR_PUTS_PER_REQUEST_MAX,
  MIRROR_SCAN_LIMIT_DEFAULT,
  MIRROR_SCAN_PAGE_BYTES_MAX,
} from './mirror-service.ts';
export type {
  MirrorBackend,
  MirrorScan,
  WireMirrorHeader,
  WireMirrorReplay,
  WireMirrorResponse,
  WireMirrorScanRequest,
  WireMirrorScanResponse,
  WireMirrorWriteRequest,
} from './mirror-service.ts';
export { startJoinWaitingServer } from './join-waiting-server.ts';
export type { JoinWaitingInfo, JoinWaitingServer } from './join-waiting-server.ts';

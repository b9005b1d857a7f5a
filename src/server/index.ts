// The public surface of src/server: the etcd-compatible gRPC server, the backend contract it
// serves from, and LocalBackend, the single-replica in-memory twin of that backend.
export { startEtcdServer, GRPC_OVERHEAD_BYTES, LISTEN_URLS_MAX } from './etcd-server.ts';
export type { EtcdServer, EtcdServerOptions, EtcdServerCloseOptions } from './etcd-server.ts';
export type { EtcdServerLogger } from './unary-call.ts';
export type { EtcdBackend, CallOptions, Member, MembersAnswer, MemberStatus, ResponseHeaderInfo } from './backend.ts';
export { LocalBackend, LOCAL_PENDING_WRITES_MAX, LOCAL_APPLY_BATCH_MAX, LOCAL_MEMBERS_MAX, LOCAL_LEARNERS_MAX } from './local-backend.ts';
export type { LocalBackendOptions } from './local-backend.ts';
export { ETCD_PROTO_INCLUDE_DIR, ETCD_PROTO_FILE, ETCD_PROTO_LOADER_OPTIONS } from './proto-loading.ts';
export { MEMBER_PEER_URLS_MAX } from './etcd-cluster-service.ts';
export { RaftNodeBackend } from './raft-node-backend.ts';

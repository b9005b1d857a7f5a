// The public surface of src/transport: the Transport contract, the gRPC implementation,
// its in-memory twin, the limits they share and the message codec.
export {
  PEER_REQUEST_TIMEOUT_MS,
  REMOVED_PEERS_REMEMBERED_MAX,
  SNAPSHOT_BLOCK_BYTES_MAX,
  SNAPSHOT_CHUNK_BYTES_DEFAULT,
  SNAPSHOT_CHUNK_BYTES_MAX,
  SNAPSHOT_CHUNK_BYTES_MIN,
  SNAPSHOT_INCOMING_STREAMS_MAX,
  SNAPSHOT_INCOMING_STREAMS_PER_PEER_MAX,
  SNAPSHOT_PROGRESS_TIMEOUT_MS,
  SNAPSHOT_RATE_BYTES_PER_SECOND_DEFAULT,
  SNAPSHOT_STALLED_ATTEMPTS_MAX,
  SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX,
} from './transport.ts';
export type {
  PeerRequestKind,
  PeerRequestOptions,
  SnapshotPayload,
  SnapshotSendOptions,
  SnapshotSink,
  Transport,
  TransportHandlers,
} from './transport.ts';
export { GrpcTransport, PEER_SERVICE_PROTO_PATH, parsePeerUrl } from './grpc-transport.ts';
export type { GrpcTransportOptions, PeerLinkStatus } from './grpc-transport.ts';
export { MemoryNetwork, MemoryTransport } from './memory-transport.ts';
export type { LinkTraffic, MemoryDropFilter, MemoryLinkModel, MemorySnapshotFault, MemoryTransportOptions } from './memory-transport.ts';
export { SNAPSHOT_FRAME_BYTES_MAX, SNAPSHOT_RETRY_BACKOFF_MS_MAX, SNAPSHOT_RETRY_BACKOFF_MS_MIN, SNAPSHOT_SEND_ATTEMPTS_MAX } from './snapshot-stream.ts';
export type { SnapshotStats } from './snapshot-stream.ts';
export { HTTP2_WINDOW_BYTES, widenHttp2Windows } from './http2-window.ts';
export { TRANSPORT_LIMITS_DEFAULTS } from './limits.ts';
export type { TransportLimits } from './limits.ts';
export { decodeMessages, encodeMessages, messageSizeBytes, MESSAGE_TRACE_ENTRIES_MAX, MESSAGE_TRACEPARENT_CHARS_MAX } from './message-codec.ts';
export type { MessageTrace, TracedMessage } from './message-codec.ts';

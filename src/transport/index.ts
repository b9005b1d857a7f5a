// The public surface of src/transport: the Transport contract, the gRPC implementation,
// its in-memory twin, the limits they share and the message codec.
export { PEER_REQUEST_TIMEOUT_MS, REMOVED_PEERS_REMEMBERED_MAX } from './transport.ts';
export type { PeerRequestKind, PeerRequestOptions, Transport, TransportHandlers } from './transport.ts';
export { GrpcTransport, PEER_SERVICE_PROTO_PATH, parsePeerUrl } from './grpc-transport.ts';
export type { GrpcTransportOptions, PeerLinkStatus } from './grpc-transport.ts';
export { MemoryNetwork, MemoryTransport } from './memory-transport.ts';
export type { LinkTraffic, MemoryDropFilter, MemoryLinkModel, MemoryTransportOptions } from './memory-transport.ts';
export { TRANSPORT_LIMITS_DEFAULTS } from './limits.ts';
export type { TransportLimits } from './limits.ts';
export { decodeMessages, encodeMessages, messageSizeBytes } from './message-codec.ts';

// The peer transport contract between src/node (the driver) and an implementation:
// GrpcTransport (real, src/transport/grpc-transport.ts) or MemoryTransport (the in-memory
// twin for tests). Both pass the same conformance suite (test/transport/conformance.ts).

import type { Message, NodeId } from '../raft/index.ts';

/** PeerRequestKind names a unary peer call: forwarding a proposal or a cluster call to the leader. */
export type PeerRequestKind = 'propose' | 'member' | 'status' | 'read';

/** TransportHandlers are the driver's callbacks; the transport never awaits onMessages. */
export interface TransportHandlers {
  /** onMessages receives Raft messages from peers, in the order each peer sent them. */
  onMessages(messages: readonly Message[]): void;
  /**
   * onUnreachable reports that messages to `peer` were dropped (queue full, stream broken,
   * peer unknown); the driver calls Raft.reportUnreachable(peer).
   */
  onUnreachable(peer: NodeId): void;
  /**
   * onRequest answers a unary call from a peer. A thrown StrataError reaches the caller as a
   * StrataError with the same code, message and details.
   */
  onRequest(from: NodeId, kind: PeerRequestKind, body: Uint8Array, signal: AbortSignal): Promise<Uint8Array>;
}

/** PeerRequestOptions bound one unary call. */
export interface PeerRequestOptions {
  readonly signal?: AbortSignal;
  /** The call fails with TIMEOUT after this long (default PEER_REQUEST_TIMEOUT_MS). */
  readonly timeoutMs?: number;
}

/** PEER_REQUEST_TIMEOUT_MS is a unary call's default deadline. */
export const PEER_REQUEST_TIMEOUT_MS = 5_000;

/** REMOVED_PEERS_REMEMBERED_MAX bounds the removed ids a transport refuses (see removePeer). */
export const REMOVED_PEERS_REMEMBERED_MAX = 1_024;

/**
 * Transport carries Raft messages between the members of one cluster and unary calls
 * between them. Sending never blocks and never grows without bound: each peer has a
 * bounded queue; a message that does not fit is dropped and reported with onUnreachable.
 */
export interface Transport {
  /** localId is this member's id. */
  readonly localId: NodeId;
  /** start begins accepting peers' streams and calls; handlers are fixed from here on. */
  start(handlers: TransportHandlers): Promise<void>;
  /** setPeer adds a peer or changes its URLs (http://host:port, as in --initial-cluster). */
  setPeer(peer: NodeId, urls: readonly string[]): void;
  /**
   * removePeer forgets a peer and closes its stream; queued messages to it are dropped. A
   * removed id is not learned again from its messages (its streams are refused, its frames
   * dropped), since a removed id never returns; setPeer lifts that. At most
   * REMOVED_PEERS_REMEMBERED_MAX ids are remembered, the oldest forgotten first.
   */
  removePeer(peer: NodeId): void;
  /** send queues messages (each to its `to`) and returns at once; batches leave together. */
  send(messages: readonly Message[]): void;
  /**
   * request makes a unary call to a peer and resolves with its answer; fails with
   * UNAVAILABLE (peer unknown or unreachable), TIMEOUT, or the peer's own StrataError.
   */
  request(peer: NodeId, kind: PeerRequestKind, body: Uint8Array, options?: PeerRequestOptions): Promise<Uint8Array>;
  /** close stops sending and receiving and releases sockets; pending requests fail UNAVAILABLE. */
  close(): Promise<void>;
}

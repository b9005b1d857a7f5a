// The peer transport contract between src/node (the driver) and an implementation:
// GrpcTransport (real, src/transport/grpc-transport.ts) or MemoryTransport (the in-memory
// twin for tests). Both pass the same conformance suite (test/transport/conformance.ts).

import type { Message, NodeId, SnapshotMessage } from '../raft/index.ts';

/**
 * PeerRequestKind names a unary peer call: forwarding a proposal or a cluster call to the
 * leader, or asking the leader for its snapshot (a member rebuilding its state).
 */
export type PeerRequestKind = 'propose' | 'member' | 'status' | 'read' | 'snapshot';

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
  /**
   * onSnapshot opens (or reopens, after a broken stream) the place a peer's snapshot is
   * received into. `message` is the Raft snapshot message the stream carries; the sink, not
   * the transport, hands it to Raft once the whole snapshot is in and checked (finish()). A
   * thrown StrataError refuses the stream and reaches the sender with its code.
   * `signal` aborts when the stream ends before its last answer (broken, cancelled by the
   * sender, transport closing): a sink call still pending should then settle. The transport
   * calls one peer's sinks one call at a time (a new stream from that peer waits until the
   * previous stream's pending call settled) and never calls abort(): a broken stream's partial
   * snapshot is the driver's to keep for the next onSnapshot, or to drop.
   */
  onSnapshot(from: NodeId, message: SnapshotMessage, byteLength: number, signal: AbortSignal): Promise<SnapshotSink>;
}

/**
 * SnapshotPayload is a snapshot being sent, read block-aligned by the transport. read()
 * returns bytes from `offset` (0, or an offset an earlier read ended at): whole blocks, at
 * least one, at most `maxBytes` when a block fits (else the one block, at most
 * SNAPSHOT_BLOCK_BYTES_MAX); every byte checked by the reader, so a corrupt snapshot is never
 * sent (the read rejects with CORRUPTION and the send fails). The transport reads one chunk at
 * a time and keeps no buffer once the receiver acknowledged it.
 */
export interface SnapshotPayload {
  readonly byteLength: number;
  read(offset: number, maxBytes: number): Promise<Uint8Array>;
}

/**
 * SnapshotSink receives one snapshot stream. write() takes bytes at `offset` in order and
 * checks them (CORRUPTION on a bad block); verifiedBytes() is where a broken stream resumes;
 * finish() checks the whole and installs or hands it on, resolving once the receiver is
 * done with it; abort() drops what was received.
 */
export interface SnapshotSink {
  verifiedBytes(): number;
  write(offset: number, bytes: Uint8Array): Promise<void>;
  finish(): Promise<void>;
  abort(): Promise<void>;
}

/** SnapshotSendOptions shape one snapshot send (see Transport.sendSnapshot). */
export interface SnapshotSendOptions {
  readonly signal?: AbortSignal;
  /**
   * Bytes per second this send may use (token bucket, bursts of one chunk); default
   * SNAPSHOT_RATE_BYTES_PER_SECOND_DEFAULT. A function is asked again before each chunk, so
   * the rate can follow the sender's load during the send.
   */
  readonly bytesPerSecond?: number | (() => number);
  /** Chunk size on the wire, 1–4 MiB; default SNAPSHOT_CHUNK_BYTES_DEFAULT. */
  readonly chunkBytes?: number;
  /** A stream that moves no acknowledged byte for this long is broken off and resumed; default SNAPSHOT_PROGRESS_TIMEOUT_MS. */
  readonly progressTimeoutMs?: number;
  /** The send fails after this many attempts in a row that acknowledged nothing new; default SNAPSHOT_STALLED_ATTEMPTS_MAX. */
  readonly stalledAttemptsMax?: number;
  /** Called as the receiver acknowledges bytes. */
  readonly onProgress?: (acknowledgedBytes: number, byteLength: number) => void;
}

/** SNAPSHOT_CHUNK_BYTES_DEFAULT is the default wire chunk (2 MiB, dragonboat's block size). */
export const SNAPSHOT_CHUNK_BYTES_DEFAULT = 2 * 1024 * 1024;
/** SNAPSHOT_CHUNK_BYTES_MIN is the smallest chunkBytes a send may ask for (1 MiB). */
export const SNAPSHOT_CHUNK_BYTES_MIN = 1024 * 1024;
/** SNAPSHOT_CHUNK_BYTES_MAX is the largest chunkBytes a send may ask for (4 MiB). */
export const SNAPSHOT_CHUNK_BYTES_MAX = 4 * 1024 * 1024;
/** SNAPSHOT_RATE_BYTES_PER_SECOND_DEFAULT is the default send rate (100 MiB/s, TiKV's). */
export const SNAPSHOT_RATE_BYTES_PER_SECOND_DEFAULT = 100 * 1024 * 1024;
/** SNAPSHOT_PROGRESS_TIMEOUT_MS: no acknowledged progress for this long breaks the stream (progress, never total size). */
export const SNAPSHOT_PROGRESS_TIMEOUT_MS = 10_000;
/** SNAPSHOT_STALLED_ATTEMPTS_MAX: attempts in a row without progress before the send fails. */
export const SNAPSHOT_STALLED_ATTEMPTS_MAX = 3;
/** SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX bounds the chunks a sender has on the wire, unacknowledged (bounded memory). */
export const SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX = 4;
/** SNAPSHOT_BLOCK_BYTES_MAX bounds one SnapshotPayload.read() result (a block larger than the chunk comes alone). */
export const SNAPSHOT_BLOCK_BYTES_MAX = 16 * 1024 * 1024;
/** SNAPSHOT_INCOMING_STREAMS_PER_PEER_MAX: snapshot streams a member receives from one peer at once; more are refused (UNAVAILABLE). */
export const SNAPSHOT_INCOMING_STREAMS_PER_PEER_MAX = 1;
/** SNAPSHOT_INCOMING_STREAMS_MAX: snapshot streams a member receives at once in all; more are refused (UNAVAILABLE). */
export const SNAPSHOT_INCOMING_STREAMS_MAX = 4;

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
  /**
   * sendSnapshot streams a snapshot to `message.to` beside the message stream: chunks with a
   * CRC32c each, then the end; it resolves once the receiver's sink has finished (checked
   * the whole and taken it). A broken stream is resumed from the receiver's verifiedBytes,
   * never from byte 0; timeouts count progress, not total size. Rejects with UNAVAILABLE
   * (peer unknown or unreachable, or stalled SNAPSHOT_STALLED_ATTEMPTS_MAX times),
   * CANCELED (signal), CORRUPTION (the payload failed its own check: nothing bad is sent),
   * or the receiver's StrataError.
   */
  sendSnapshot(message: SnapshotMessage, payload: SnapshotPayload, options?: SnapshotSendOptions): Promise<void>;
  /** close stops sending and receiving and releases sockets; pending requests fail UNAVAILABLE. */
  close(): Promise<void>;
}

// MemoryTransport: the in-memory twin of GrpcTransport, for tests of the driver and above.
//
// Transports register on a MemoryNetwork (the hub). The semantics follow the real one:
// messages queued in one turn leave as frames at the end of the turn, through the same
// codec (so a message that would not survive the wire does not survive here either), and
// arrive asynchronously, in order per pair; each peer has the same bounded queue; messages
// to a peer that is unknown, not started, closed or cut off are dropped and reported with
// onUnreachable (rate-limited); unary calls map errors the same way (UNAVAILABLE, TIMEOUT,
// CANCELED, or the callee's StrataError). Tests cut links with network.disconnect() and
// lose messages with network.setDropFilter(). Every delay goes through a Clock (SYSTEM_CLOCK
// by default): under a VirtualClock, and with a link model (network.setLinkModel()) that
// delays, loses, duplicates and so reorders frames and calls, a seeded simulation drives real
// RaftNodes over it deterministically.
//
// Snapshot streams (sendSnapshot) run snapshot-stream.ts's sender and receiver, as
// GrpcTransport does; here each attempt is a MemorySnapshotStream whose frames and acks cross
// the network one by one (chunks copied, as the wire does), in order, delayed by the link
// model (a stream neither duplicates nor reorders: the first delay applies, and a lost frame
// breaks the stream). A cut link (disconnect, isolate), a closed member, or a test's
// breakSnapshotStreams() breaks the streams between the two at once; injectSnapshotFault()
// breaks or damages one chunk in transit after a given number of bytes.

import type { Logger, Message, NodeId, SnapshotMessage } from '../raft/index.ts';
import { SILENT_LOGGER } from '../raft/index.ts';
import { assert, ErrorCode, isStrataError, StrataError, SYSTEM_CLOCK } from '../util/index.ts';
import type { Clock, TimerId } from '../util/index.ts';
import type { TransportLimits } from './limits.ts';
import { resolveTransportLimits } from './limits.ts';
import { decodeErrorDetails, decodeMessages, encodeErrorDetails, encodeMessages } from './message-codec.ts';
import { PeerSendQueue, UnreachableReporter } from './peer-queue.ts';
import type {
  IncomingSnapshot,
  SnapshotAck,
  SnapshotAttemptEvents,
  SnapshotAttemptStream,
  SnapshotChunk,
  SnapshotHello,
  SnapshotReplyPort,
  SnapshotSenderFrame,
  SnapshotStats,
  SnapshotSend,
} from './snapshot-stream.ts';
import { SnapshotReceiver, decodeSnapshotHello, newSnapshotStats, startSnapshotSend } from './snapshot-stream.ts';
import type { PeerRequestKind, PeerRequestOptions, SnapshotPayload, SnapshotSendOptions, Transport, TransportHandlers } from './transport.ts';
import { PEER_REQUEST_TIMEOUT_MS, REMOVED_PEERS_REMEMBERED_MAX } from './transport.ts';

/** MemoryDropFilter returns true for a message the network should lose in transit. */
export type MemoryDropFilter = (message: Message) => boolean;

/**
 * LinkTraffic names what crosses a link: a frame of Raft messages, a peer call, a call's
 * answer, or one frame or ack of a snapshot stream (`bytes` of snapshot data, 0 for an ack).
 */
export type LinkTraffic =
  | { readonly kind: 'frame'; readonly messages: readonly Message[] }
  | { readonly kind: 'request' | 'answer'; readonly peerRequest: PeerRequestKind }
  | { readonly kind: 'snapshot'; readonly bytes: number };

/**
 * MemorySnapshotFault is a one-shot fault on the snapshot chunks from one member to another
 * (MemoryNetwork.injectSnapshotFault): it hits the first chunk that would take the chunk bytes
 * delivered since the injection past `afterBytes`. 'break' loses that chunk and breaks its
 * stream; 'corrupt' flips one of its bytes after the sender computed its CRC.
 */
export interface MemorySnapshotFault {
  readonly kind: 'break' | 'corrupt';
  readonly afterBytes: number;
}

interface ArmedSnapshotFault {
  readonly fault: MemorySnapshotFault;
  deliveredBytes: number;
}

/**
 * MemoryLinkModel decides how one frame or call crosses the link from `from` to `to`: the
 * delays (ms) of the copies that arrive — [] loses it, [0] is the normal case, two entries
 * duplicate it, and unequal delays across frames reorder them.
 */
export type MemoryLinkModel = (from: NodeId, to: NodeId, traffic: LinkTraffic) => readonly number[];

// The delivery of a frame or call when no link model is set: one copy, on the next turn.
const NEXT_TURN: readonly number[] = Object.freeze([0]);
// The most copies a link model may deliver of one frame or call.
const LINK_COPIES_MAX = 4;

/** MemoryNetwork connects MemoryTransports and lets tests cut links and lose messages. */
export class MemoryNetwork {
  private readonly members = new Map<NodeId, MemoryTransport>();
  private readonly cut = new Set<string>();
  private dropFilter: MemoryDropFilter | undefined;
  private droppedCount = 0;
  private linkModel: MemoryLinkModel | undefined;
  private readonly snapshotStreams = new Set<MemorySnapshotStream>();
  private readonly snapshotFaults = new Map<string, ArmedSnapshotFault>();

  /** disconnect cuts the link between a and b both ways until reconnect(a, b); their snapshot streams break. */
  disconnect(a: NodeId, b: NodeId): void {
    this.cut.add(pairKey(a, b));
    this.breakSnapshotStreams(a, b);
  }

  /** breakSnapshotStreams breaks the snapshot streams between a and b (both ways) now, as a reset connection would; returns how many. */
  breakSnapshotStreams(a: NodeId, b: NodeId): number {
    let broken = 0;
    for (const stream of [...this.snapshotStreams]) {
      if (pairKey(stream.from, stream.to) !== pairKey(a, b)) continue;
      stream.break(`the snapshot stream between ${a} and ${b} was broken`);
      broken += 1;
    }
    return broken;
  }

  /** injectSnapshotFault arms a one-shot fault on the snapshot chunks from `from` to `to` (replacing one armed before). */
  injectSnapshotFault(from: NodeId, to: NodeId, fault: MemorySnapshotFault): void {
    assert(Number.isSafeInteger(fault.afterBytes) && fault.afterBytes >= 0, 'afterBytes is a byte count');
    this.snapshotFaults.set(`${from}>${to}`, { fault, deliveredBytes: 0 });
  }

  /** snapshotStreamsOpen counts the snapshot streams in progress on this network. */
  get snapshotStreamsOpen(): number {
    return this.snapshotStreams.size;
  }

  /** addSnapshotStream is called by a MemorySnapshotStream as it opens. */
  addSnapshotStream(stream: MemorySnapshotStream): void {
    this.snapshotStreams.add(stream);
  }

  /** removeSnapshotStream is called by a MemorySnapshotStream as it ends. */
  removeSnapshotStream(stream: MemorySnapshotStream): void {
    this.snapshotStreams.delete(stream);
  }

  /** chunkFault consumes and returns the fault that hits a chunk of `bytes` from `from` to `to`, if any. */
  chunkFault(from: NodeId, to: NodeId, bytes: number): MemorySnapshotFault['kind'] | undefined {
    const key = `${from}>${to}`;
    const armed = this.snapshotFaults.get(key);
    if (armed === undefined) return undefined;
    if (armed.deliveredBytes + bytes <= armed.fault.afterBytes) {
      armed.deliveredBytes += bytes;
      return undefined;
    }
    this.snapshotFaults.delete(key);
    return armed.fault.kind;
  }

  /** reconnect restores the link between a and b. */
  reconnect(a: NodeId, b: NodeId): void {
    this.cut.delete(pairKey(a, b));
  }

  /** isolate cuts every link of `node` to the members registered now. */
  isolate(node: NodeId): void {
    for (const other of this.members.keys()) if (other !== node) this.disconnect(node, other);
  }

  /** heal restores every link. */
  heal(): void {
    this.cut.clear();
  }

  /** isConnected tells whether messages can pass between a and b. */
  isConnected(a: NodeId, b: NodeId): boolean {
    return !this.cut.has(pairKey(a, b));
  }

  /** setDropFilter makes the network lose the messages the filter selects (undefined: none). */
  setDropFilter(filter: MemoryDropFilter | undefined): void {
    this.dropFilter = filter;
  }

  /** setLinkModel makes the network delay, lose or duplicate traffic as the model says (undefined: none). */
  setLinkModel(model: MemoryLinkModel | undefined): void {
    this.linkModel = model;
  }

  /** deliveries says when the copies of one frame or call from `from` arrive at `to` (delays in ms). */
  deliveries(from: NodeId, to: NodeId, traffic: LinkTraffic): readonly number[] {
    if (this.linkModel === undefined) return NEXT_TURN;
    const delays = this.linkModel(from, to, traffic);
    assert(delays.length <= LINK_COPIES_MAX, `a link model may deliver at most ${LINK_COPIES_MAX} copies`);
    assert(delays.every((delay) => Number.isFinite(delay) && delay >= 0), 'link delays are finite and not negative');
    return delays;
  }

  /** dropped counts the messages lost to the drop filter. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** register is called by MemoryTransport.start(). */
  register(transport: MemoryTransport): void {
    const existing = this.members.get(transport.localId);
    assert(existing === undefined || existing.isClosed, 'two open transports with one id on a MemoryNetwork');
    this.members.set(transport.localId, transport);
  }

  /** unregister is called by MemoryTransport.close(); the member's snapshot streams break. */
  unregister(transport: MemoryTransport): void {
    if (this.members.get(transport.localId) === transport) this.members.delete(transport.localId);
    for (const stream of [...this.snapshotStreams]) {
      if (stream.from === transport.localId || stream.to === transport.localId) stream.break(`member ${transport.localId} closed`);
    }
  }

  /** reachable returns the transport `to` if `from` can reach it now, else undefined. */
  reachable(from: MemoryTransport, to: NodeId): MemoryTransport | undefined {
    const target = this.members.get(to);
    if (target === undefined || target.isClosed || !this.isConnected(from.localId, to)) return undefined;
    if (target.clusterId !== from.clusterId) return undefined;
    return target;
  }

  /** shouldDrop applies the drop filter to one message in transit. */
  shouldDrop(message: Message): boolean {
    if (this.dropFilter === undefined || !this.dropFilter(message)) return false;
    this.droppedCount += 1;
    return true;
  }
}

/** MemoryTransportOptions configure a MemoryTransport. */
export interface MemoryTransportOptions {
  readonly localId: NodeId;
  /** Transports with different cluster ids cannot reach each other (default 1). */
  readonly clusterId?: number;
  readonly logger?: Logger;
  readonly limits?: Partial<TransportLimits>;
  /** The clock for delivery turns, delays and call timeouts (default SYSTEM_CLOCK). */
  readonly clock?: Clock;
}

interface MemoryPeer {
  readonly id: NodeId;
  readonly queue: PeerSendQueue;
  /** Frames handed to the network and not yet delivered. */
  framesInFlight: number;
}

/** MemoryTransport is the in-memory Transport (see the file comment). */
export class MemoryTransport implements Transport {
  readonly localId: NodeId;
  readonly clusterId: number;
  private readonly network: MemoryNetwork;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly limits: TransportLimits;
  private handlers: TransportHandlers | undefined;
  private closed = false;
  private readonly peers = new Map<NodeId, MemoryPeer>();
  // Ids given to removePeer and not set again since, oldest first (as GrpcTransport).
  private readonly removedPeers = new Set<NodeId>();
  private readonly dirty = new Set<MemoryPeer>();
  private flushScheduled = false;
  private readonly unreachable: UnreachableReporter;
  private readonly pendingRequests = new Set<{ fail(error: StrataError): void }>();
  private readonly servingRequests = new Set<AbortController>();
  private readonly snapshotCounters: SnapshotStats = newSnapshotStats();
  private readonly snapshotSends = new Set<SnapshotSend>();
  private readonly snapshotReceiver: SnapshotReceiver;

  constructor(network: MemoryNetwork, options: MemoryTransportOptions) {
    assert(Number.isSafeInteger(options.localId) && options.localId > 0, 'localId must be a positive safe integer');
    this.network = network;
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.localId = options.localId;
    this.clusterId = options.clusterId ?? 1;
    this.logger = options.logger ?? SILENT_LOGGER;
    this.limits = resolveTransportLimits(options.limits);
    this.unreachable = new UnreachableReporter({ intervalMs: this.limits.unreachableIntervalMs, now: () => this.clock.now() });
    this.snapshotReceiver = new SnapshotReceiver({
      logger: this.logger,
      stats: this.snapshotCounters,
      onSnapshot: (from, message, byteLength, signal) => {
        const handlers = this.handlers;
        assert(handlers !== undefined, 'a snapshot stream is accepted only after start');
        return handlers.onSnapshot(from, message, byteLength, signal);
      },
    });
  }

  /** snapshotStats counts this transport's snapshot sends and refused incoming streams (a copy). */
  get snapshotStats(): SnapshotStats {
    return { ...this.snapshotCounters };
  }

  /** incomingSnapshotStreams counts the snapshot streams being received now. */
  get incomingSnapshotStreams(): number {
    return this.snapshotReceiver.openStreams;
  }

  /** isClosed tells whether close() was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** isStarted tells whether start() was called and close() was not. */
  get isStarted(): boolean {
    return this.handlers !== undefined && !this.closed;
  }

  start(handlers: TransportHandlers): Promise<void> {
    assert(this.handlers === undefined, 'start called twice');
    assert(!this.closed, 'start after close');
    this.handlers = handlers;
    this.network.register(this);
    return Promise.resolve();
  }

  setPeer(peer: NodeId, urls: readonly string[]): void {
    assert(Number.isSafeInteger(peer) && peer > 0, 'peer id must be a positive safe integer');
    assert(peer !== this.localId, 'setPeer with the local id');
    if (urls.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `peer ${peer} has no URLs`, { details: { peer } });
    // The driver is the authority: a peer it sets again is no longer refused as removed.
    this.removedPeers.delete(peer);
    if (this.closed || this.peers.has(peer)) return;
    this.peers.set(peer, {
      id: peer,
      queue: new PeerSendQueue({ messagesMax: this.limits.queueMessagesMax, bytesMax: this.limits.queueBytesMax }),
      framesInFlight: 0,
    });
  }

  removePeer(peer: NodeId): void {
    if (!this.closed && !this.removedPeers.has(peer)) {
      if (this.removedPeers.size >= REMOVED_PEERS_REMEMBERED_MAX) {
        const oldest = this.removedPeers.values().next().value;
        if (oldest !== undefined) this.removedPeers.delete(oldest);
      }
      this.removedPeers.add(peer);
    }
    const state = this.peers.get(peer);
    if (state !== undefined) {
      state.queue.clear();
      this.dirty.delete(state);
      this.peers.delete(peer);
    }
    this.unreachable.forget(peer);
    for (const send of [...this.snapshotSends]) {
      if (send.peer === peer) send.fail(new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} was removed`, { details: { peer } }));
    }
    this.snapshotReceiver.endAll(new StrataError(ErrorCode.MEMBER_REMOVED, `member ${peer} was removed from the cluster`, { details: { peer } }), peer);
  }

  send(messages: readonly Message[]): void {
    assert(this.handlers !== undefined, 'send before start');
    if (this.closed) return;
    for (const message of messages) {
      assert(message.to !== this.localId && message.to !== 0, 'message to self or to nobody');
      const state = this.peers.get(message.to);
      if (state === undefined || !this.canReach(message.to) || !state.queue.push(message)) {
        this.unreachable.mark(message.to);
        continue;
      }
      this.dirty.add(state);
    }
    this.scheduleFlush();
  }

  request(peer: NodeId, kind: PeerRequestKind, body: Uint8Array, options: PeerRequestOptions = {}): Promise<Uint8Array> {
    const timeoutMs = options.timeoutMs ?? PEER_REQUEST_TIMEOUT_MS;
    assert(Number.isFinite(timeoutMs) && timeoutMs > 0, 'timeoutMs must be positive');
    if (this.closed) return Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport is closed', { details: { peer } }));
    if (!this.peers.has(peer)) return Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} is not known`, { details: { peer } }));
    const signal = options.signal;
    if (signal?.aborted === true) {
      return Promise.reject(new StrataError(ErrorCode.CANCELED, `request to peer ${peer} was canceled`, { cause: signal.reason, details: { peer } }));
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const remote = new AbortController();
      const settle = (error: StrataError | undefined, answer?: Uint8Array): void => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.pendingRequests.delete(pending);
        if (error !== undefined) {
          remote.abort(error);
          reject(error);
        } else {
          resolve(answer as Uint8Array);
        }
      };
      const pending = { fail: (error: StrataError): void => settle(error) };
      const onAbort = (): void =>
        settle(new StrataError(ErrorCode.CANCELED, `request to peer ${peer} was canceled`, { cause: signal?.reason, details: { peer } }));
      const timer = this.clock.setTimeout(
        () => settle(new StrataError(ErrorCode.TIMEOUT, `request to peer ${peer} timed out`, { details: { peer } })),
        timeoutMs,
      );
      this.pendingRequests.add(pending);
      signal?.addEventListener('abort', onAbort, { once: true });
      const requestBody = body.slice();
      // Like the wire, the call reaches the peer on a later turn and its answer on another
      // (or later, or twice, or never, as the network's link model says).
      const answered = (target: MemoryTransport, answer: Uint8Array | undefined, error: StrataError | undefined): void => {
        for (const delayMs of this.network.deliveries(peer, this.localId, { kind: 'answer', peerRequest: kind })) {
          this.later(delayMs, () => {
            if (error !== undefined) settle(error);
            else if (this.network.reachable(target, this.localId) === undefined && !this.closed) {
              settle(new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} became unreachable`, { details: { peer } }));
            } else settle(undefined, answer);
          });
        }
      };
      const delays = this.network.deliveries(this.localId, peer, { kind: 'request', peerRequest: kind });
      for (const [copy, delayMs] of delays.entries()) {
        this.later(delayMs, () => {
          if (settled) return;
          const target = this.network.reachable(this, peer);
          if (target === undefined) {
            settle(new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} is unreachable`, { details: { peer } }));
            return;
          }
          // A duplicated call is served twice (as a retried RPC would be); only the first answer counts.
          const served = target.serveRequest(this.localId, kind, copy === 0 ? requestBody : requestBody.slice(), remote.signal);
          served.then(
            (answer) => answered(target, answer, undefined),
            (error: unknown) => answered(target, undefined, error as StrataError),
          );
        });
      }
      // A lost call is noticed only at its deadline, as on a real network.
    });
  }

  sendSnapshot(message: SnapshotMessage, payload: SnapshotPayload, options: SnapshotSendOptions = {}): Promise<void> {
    assert(this.handlers !== undefined, 'sendSnapshot before start');
    return startSnapshotSend({
      localId: this.localId,
      closed: this.closed,
      message,
      payload,
      options,
      clock: this.clock,
      logger: this.logger,
      stats: this.snapshotCounters,
      sends: this.snapshotSends,
      open: (hello, events) => this.openSnapshotAttempt(hello, events),
    });
  }

  // openSnapshotAttempt opens one attempt's stream; UNAVAILABLE (thrown) fails the send at once.
  private openSnapshotAttempt(hello: SnapshotHello, events: SnapshotAttemptEvents): SnapshotAttemptStream {
    const peer = hello.to;
    if (this.closed) throw new StrataError(ErrorCode.UNAVAILABLE, 'peer transport is closed', { details: { peer } });
    if (!this.peers.has(peer)) throw new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} is not known`, { details: { peer } });
    return new MemorySnapshotStream({ sender: this, network: this.network, clock: this.clock, hello, events });
  }

  /**
   * acceptSnapshotStream admits a snapshot stream from `from` whose hello just arrived (called
   * by the stream): the refusal, or the receiving side that takes its frames.
   */
  acceptSnapshotStream(from: NodeId, messageBytes: Uint8Array, byteLength: number, port: SnapshotReplyPort): IncomingSnapshot | StrataError {
    if (this.closed || this.handlers === undefined) {
      return new StrataError(ErrorCode.UNAVAILABLE, `peer ${this.localId} is not serving`, { details: { peer: this.localId } });
    }
    // As GrpcTransport refuses a removed member's streams; an unknown member is served, not learned.
    if (this.removedPeers.has(from)) {
      return new StrataError(ErrorCode.MEMBER_REMOVED, `member ${from} was removed from the cluster`, { details: { peer: from } });
    }
    let hello: SnapshotHello;
    try {
      hello = decodeSnapshotHello(this.localId, from, messageBytes, byteLength);
    } catch (error) {
      if (!isStrataError(error)) throw error;
      return error;
    }
    return this.snapshotReceiver.accept(hello, port);
  }

  // later runs `callback` after `delayMs` on this transport's clock (a delay of 0: next turn).
  private later(delayMs: number, callback: () => void): void {
    if (delayMs === 0) this.clock.setImmediate(callback);
    else this.clock.setTimeout(callback, delayMs);
  }

  /** queuedMessages is how many messages wait to `peer` (tests check the bound). */
  queuedMessages(peer: NodeId): number {
    return this.peers.get(peer)?.queue.length ?? 0;
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const state of this.peers.values()) state.queue.clear();
    this.dirty.clear();
    for (const pending of [...this.pendingRequests]) pending.fail(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport closed'));
    for (const controller of this.servingRequests) controller.abort(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport closed'));
    this.servingRequests.clear();
    for (const send of [...this.snapshotSends]) send.fail(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport closed', { details: { peer: send.peer } }));
    this.snapshotReceiver.endAll(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport closed'));
    this.network.unregister(this);
    return Promise.resolve();
  }

  /** serveRequest runs this member's onRequest for a call from `from`, mapping errors as the wire does. */
  serveRequest(from: NodeId, kind: PeerRequestKind, body: Uint8Array, callerSignal: AbortSignal): Promise<Uint8Array> {
    const handlers = this.handlers;
    if (this.closed || handlers === undefined) {
      return Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, `peer ${this.localId} is not serving`, { details: { peer: this.localId } }));
    }
    const controller = new AbortController();
    const onCallerAbort = (): void => controller.abort(new StrataError(ErrorCode.CANCELED, 'the caller cancelled'));
    callerSignal.addEventListener('abort', onCallerAbort, { once: true });
    this.servingRequests.add(controller);
    let answer: Promise<Uint8Array>;
    try {
      answer = handlers.onRequest(from, kind, body, controller.signal);
    } catch (error) {
      answer = Promise.reject(error);
    }
    return answer.then(
      (result) => {
        this.servingRequests.delete(controller);
        callerSignal.removeEventListener('abort', onCallerAbort);
        return result.slice();
      },
      (error: unknown) => {
        this.servingRequests.delete(controller);
        callerSignal.removeEventListener('abort', onCallerAbort);
        // As over gRPC, a callee that shuts down mid-call leaves the caller with UNAVAILABLE.
        if (this.closed) throw new StrataError(ErrorCode.UNAVAILABLE, `peer ${this.localId} closed`, { details: { peer: this.localId } });
        if (!isStrataError(error)) {
          this.logger.warn('peer request handler failed without a StrataError', { from, kind, error: String(error) });
          throw new StrataError(ErrorCode.UNAVAILABLE, `peer request handler failed: ${String(error)}`);
        }
        // Rebuild the error as the caller would from the wire: code, message, encodable details.
        throw new StrataError(error.code, error.message, { details: decodeErrorDetails(encodeErrorDetails(error.details)) });
      },
    );
  }

  /** deliver hands an encoded frame from `from` to this member's onMessages. */
  deliver(from: NodeId, frame: Uint8Array): void {
    const handlers = this.handlers;
    if (this.closed || handlers === undefined) return;
    // A removed member is not learned again (GrpcTransport refuses its stream).
    if (this.removedPeers.has(from)) return;
    // A member that has not yet applied the change that added `from` still answers it, as
    // etcd's transport learns a remote from the sender's headers (GrpcTransport: the hello).
    this.learnRemote(from);
    // Like GrpcTransport, messages that do not come from the stream's peer to us are dropped.
    const messages = decodeMessages(frame).filter(
      (message) => message.from === from && message.to === this.localId && !this.network.shouldDrop(message),
    );
    if (messages.length > 0) handlers.onMessages(messages);
  }

  // learnRemote adds a peer this member heard from but does not know, so that it can answer.
  private learnRemote(from: NodeId): void {
    if (this.peers.has(from) || from === this.localId || this.closed) return;
    this.setPeer(from, [`memory://${from}`]);
    this.logger.info('learned a peer from its messages', { peer: from });
  }

  private canReach(peer: NodeId): boolean {
    const target = this.network.reachable(this, peer);
    return target !== undefined && target.isStarted;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.closed) return;
    const peers = [...this.dirty];
    this.dirty.clear();
    for (const state of peers) this.flushPeer(state);
    const handlers = this.handlers;
    if (handlers !== undefined) this.unreachable.flush((peer) => handlers.onUnreachable(peer));
  }

  private flushPeer(state: MemoryPeer): void {
    if (state.queue.length === 0) return;
    if (!this.canReach(state.id)) {
      state.queue.clear();
      this.unreachable.mark(state.id);
      return;
    }
    // Bounded by framesInFlightMax; the rest waits in the bounded queue, as behind a stream
    // that is not draining.
    while (state.queue.length > 0 && state.framesInFlight < this.limits.framesInFlightMax) {
      const messages = state.queue.takeFrame(this.limits.frameBytesMax);
      const frame = encodeMessages(messages);
      const delays = this.network.deliveries(this.localId, state.id, { kind: 'frame', messages });
      if (delays.length === 0) continue; // lost in transit: Raft retransmits
      state.framesInFlight += 1;
      for (const [copy, delayMs] of delays.entries()) {
        this.later(delayMs, () => {
          if (copy === 0) state.framesInFlight -= 1;
          if (this.closed) return;
          const target = this.network.reachable(this, state.id);
          if (target === undefined) {
            // The link broke in transit: the frame is lost, as with a broken stream.
            this.unreachable.mark(state.id);
            this.dirty.add(state);
            this.scheduleFlush();
            return;
          }
          target.deliver(this.localId, frame);
          if (state.queue.length > 0 && this.peers.get(state.id) === state) {
            this.dirty.add(state);
            this.scheduleFlush();
          }
        });
      }
    }
  }
}

/**
 * DeliveryQueue delivers one direction of a stream in order: each item no earlier than its
 * delay says and never before the item ahead of it (a stream does not reorder).
 */
class DeliveryQueue {
  private readonly clock: Clock;
  private items: Array<{ readonly readyAtMs: number; readonly deliver: () => void }> = [];
  private lastReadyAtMs = Number.NEGATIVE_INFINITY;
  private timer: TimerId | undefined;
  private scheduled = false;
  // Bumped by clear(): a run scheduled before it does nothing (setImmediate cannot be cancelled).
  private generation = 0;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  push(delayMs: number, deliver: () => void): void {
    const readyAtMs = Math.max(this.clock.now() + delayMs, this.lastReadyAtMs);
    this.lastReadyAtMs = readyAtMs;
    this.items.push({ readyAtMs, deliver });
    this.schedule();
  }

  clear(): void {
    this.items = [];
    this.generation += 1;
    this.scheduled = false;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    const head = this.items[0];
    if (this.scheduled || head === undefined) return;
    this.scheduled = true;
    const generation = this.generation;
    const run = (): void => {
      this.timer = undefined;
      if (generation !== this.generation) return;
      this.scheduled = false;
      this.run();
    };
    const delayMs = head.readyAtMs - this.clock.now();
    if (delayMs <= 0) this.clock.setImmediate(run);
    else this.timer = this.clock.setTimeout(run, delayMs);
  }

  private run(): void {
    const now = this.clock.now();
    // Bounded by the items queued: each pass removes one.
    while (this.items.length > 0) {
      const head = this.items[0];
      if (head === undefined || head.readyAtMs > now) break;
      this.items.shift();
      head.deliver(); // may clear() this queue (the stream broke)
    }
    this.schedule();
  }
}

/** MemorySnapshotStreamOptions are what one memory snapshot stream is opened with. */
interface MemorySnapshotStreamOptions {
  readonly sender: MemoryTransport;
  readonly network: MemoryNetwork;
  readonly clock: Clock;
  readonly hello: SnapshotHello;
  readonly events: SnapshotAttemptEvents;
}

/**
 * MemorySnapshotStream is one snapshot attempt over a MemoryNetwork: the hello, chunks and
 * done cross to the receiver, acks and the answer come back, each through the link (its
 * model's delay, in order; a loss or a cut breaks the stream). Both directions run on the
 * sender's clock.
 */
class MemorySnapshotStream implements SnapshotAttemptStream {
  readonly from: NodeId;
  readonly to: NodeId;
  private readonly sender: MemoryTransport;
  private readonly network: MemoryNetwork;
  private readonly clock: Clock;
  private readonly events: SnapshotAttemptEvents;
  private readonly forward: DeliveryQueue;
  private readonly backward: DeliveryQueue;
  private state: 'open' | 'ended' = 'open';
  private incoming: IncomingSnapshot | undefined;

  constructor(options: MemorySnapshotStreamOptions) {
    this.sender = options.sender;
    this.network = options.network;
    this.clock = options.clock;
    this.events = options.events;
    this.from = options.hello.from;
    this.to = options.hello.to;
    this.forward = new DeliveryQueue(options.clock);
    this.backward = new DeliveryQueue(options.clock);
    this.network.addSnapshotStream(this);
    const messageBytes = options.hello.messageBytes.slice();
    const byteLength = options.hello.byteLength;
    this.toReceiver(messageBytes.byteLength, () => this.deliverHello(messageBytes, byteLength));
  }

  write(frame: SnapshotSenderFrame): boolean {
    assert(frame.kind !== 'invalid', 'a sender writes chunks and done only');
    if (this.state !== 'open') return true;
    if (frame.kind === 'chunk') {
      // The wire copies: the sender may reuse its buffer, and the receiver gets its own bytes.
      const chunk: SnapshotChunk = { offset: frame.chunk.offset, data: frame.chunk.data.slice(), crc32c: frame.chunk.crc32c };
      this.toReceiver(chunk.data.byteLength, () => this.deliverChunk(chunk));
    } else {
      this.toReceiver(0, () => this.incoming?.receive(frame));
    }
    return true;
  }

  end(): void {
    this.close();
  }

  cancel(): void {
    if (this.state !== 'open') return;
    this.close();
    const incoming = this.incoming;
    // The receiver hears of it on a later turn, as a reset stream.
    if (incoming !== undefined) {
      this.clock.setImmediate(() => incoming.streamEnded(new StrataError(ErrorCode.UNAVAILABLE, `member ${this.from} cancelled the snapshot stream`)));
    }
  }

  /** break ends the stream on both sides without an answer (cut link, lost frame, closed member, a test). */
  break(reason: string): void {
    if (this.state !== 'open') return;
    this.close();
    const error = new StrataError(ErrorCode.UNAVAILABLE, reason, { details: { peer: this.to } });
    const incoming = this.incoming;
    this.clock.setImmediate(() => {
      incoming?.streamEnded(error);
      this.events.broken(error);
    });
  }

  private close(): void {
    this.state = 'ended';
    this.forward.clear();
    this.backward.clear();
    this.network.removeSnapshotStream(this);
  }

  // toReceiver sends `bytes` of traffic to the receiver; `deliver` runs there if the link holds.
  private toReceiver(bytes: number, deliver: () => void): void {
    const delayMs = this.network.deliveries(this.from, this.to, { kind: 'snapshot', bytes })[0];
    if (delayMs === undefined) {
      this.break(`a snapshot frame from ${this.from} to ${this.to} was lost`);
      return;
    }
    this.forward.push(delayMs, () => {
      if (this.state !== 'open') return;
      if (this.network.reachable(this.sender, this.to) === undefined) {
        this.break(`peer ${this.to} is unreachable`);
        return;
      }
      deliver();
    });
  }

  // toSender sends an answer back; `deliver` runs at the sender if the link holds.
  private toSender(deliver: () => void): void {
    const delayMs = this.network.deliveries(this.to, this.from, { kind: 'snapshot', bytes: 0 })[0];
    if (delayMs === undefined) {
      this.break(`a snapshot ack from ${this.to} to ${this.from} was lost`);
      return;
    }
    this.backward.push(delayMs, () => {
      if (this.state !== 'open') return;
      if (this.network.reachable(this.sender, this.to) === undefined) {
        this.break(`peer ${this.to} is unreachable`);
        return;
      }
      deliver();
    });
  }

  private deliverHello(messageBytes: Uint8Array, byteLength: number): void {
    const target = this.network.reachable(this.sender, this.to);
    assert(target !== undefined, 'toReceiver checked the link');
    const port: SnapshotReplyPort = {
      ack: (ack: SnapshotAck) => this.toSender(() => this.events.ack(ack)),
      refuse: (error: StrataError) => this.refuseToSender(error),
      end: () => {},
      abandon: (error: StrataError) => {
        // The receiver hung up (closing, or it removed the sender): the sender hears its code.
        if (this.state !== 'open') return;
        this.close();
        const rebuilt = wireError(error);
        this.clock.setImmediate(() => this.events.refused(rebuilt));
      },
    };
    const accepted = target.acceptSnapshotStream(this.from, messageBytes, byteLength, port);
    if (accepted instanceof StrataError) this.refuseToSender(accepted);
    else this.incoming = accepted;
  }

  private deliverChunk(chunk: SnapshotChunk): void {
    const fault = this.network.chunkFault(this.from, this.to, chunk.data.byteLength);
    if (fault === 'break') {
      this.break(`a snapshot fault broke the stream from ${this.from} to ${this.to} at ${chunk.offset}`);
      return;
    }
    if (fault === 'corrupt') {
      const index = chunk.data.byteLength >> 1;
      chunk.data[index] = (chunk.data[index] ?? 0) ^ 0xff;
    }
    this.incoming?.receive({ kind: 'chunk', chunk });
  }

  // refuseToSender carries the receiver's StrataError back as the wire would (code, message,
  // encodable details), and ends the stream once it arrives.
  private refuseToSender(error: StrataError): void {
    const rebuilt = wireError(error);
    this.toSender(() => {
      this.close();
      this.events.refused(rebuilt);
    });
  }
}

// wireError rebuilds a StrataError as the other side of the wire would see it.
function wireError(error: StrataError): StrataError {
  return new StrataError(error.code, error.message, { details: decodeErrorDetails(encodeErrorDetails(error.details)) });
}

function pairKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}

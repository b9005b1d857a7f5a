// GrpcTransport: the real peer transport, over @grpc/grpc-js (proto/stratakv/peer.proto).
//
// One bidirectional stream per pair of members carries Raft messages both ways: the member
// with the lower id dials and redials after a break (exponential backoff with jitter); the
// higher one accepts and writes to the server side of the same call. Messages sent in one
// turn of the event loop leave together at the end of that turn (a microtask), split into
// frames of at most frameBytesMax. Each peer has a bounded queue; messages wait there only
// while the stream is not draining. Anything that cannot be sent — no stream, queue full,
// peer unknown — is dropped and reported through onUnreachable (rate-limited): Raft
// retransmits on its own, so dropping is always safe and never blocks the driver.
//
// Unary calls (request()) go over a channel to the peer's URL independent of the stream.

import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger, Message, NodeId } from '../raft/index.ts';
import { SILENT_LOGGER } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError, isErrorCode, isStrataError } from '../util/errors.ts';
import type { RandomSource } from '../util/random.ts';
import type { TransportLimits } from './limits.ts';
import { resolveTransportLimits } from './limits.ts';
import { decodeErrorDetails, decodeMessages, encodeErrorDetails, encodeMessages } from './message-codec.ts';
import { PeerSendQueue, UnreachableReporter } from './peer-queue.ts';
import type { PeerRequestKind, PeerRequestOptions, Transport, TransportHandlers } from './transport.ts';
import { PEER_REQUEST_TIMEOUT_MS } from './transport.ts';

/** GrpcTransportOptions configure a GrpcTransport. */
export interface GrpcTransportOptions {
  /** This member's id (a positive safe integer). */
  readonly localId: NodeId;
  /** The cluster's id; streams and calls that name another are refused. */
  readonly clusterId: number;
  /** Where to listen, as http://host:port (port 0 picks a free port; see boundUrls). */
  readonly listenUrls: readonly string[];
  readonly logger?: Logger;
  /** Jitter for redial backoff; Math.random when not given. */
  readonly random?: RandomSource;
  readonly limits?: Partial<TransportLimits>;
}

/** PeerLinkStatus describes the stream to one peer, for tests and status pages. */
export interface PeerLinkStatus {
  readonly peer: NodeId;
  /** 'dialed' when this member dialled (lower id), 'accepted' when the peer did. */
  readonly direction: 'dialed' | 'accepted';
  readonly established: boolean;
  readonly queuedMessages: number;
  readonly queuedBytes: number;
}

/** PEER_SERVICE_PROTO_PATH is the file that defines the peer service. */
export const PEER_SERVICE_PROTO_PATH = fileURLToPath(new URL('../../proto/stratakv/peer.proto', import.meta.url));

/** CODE_METADATA_KEY is the trailer that carries a StrataError code on a refused stream. */
export const CODE_METADATA_KEY = 'stratakv-code';

// Keepalive pings find a peer that vanished without closing its socket (a partition, a
// powered-off machine) within about 15 s, so the lower id starts redialling.
const KEEPALIVE_TIME_MS = 10_000;
const UNARY_CHANNEL_IDLE_MS = 24 * 60 * 60 * 1000;
const KEEPALIVE_TIMEOUT_MS = 5_000;

interface FrameWire {
  clusterId: number;
  from: number;
  to: number;
  batch: Uint8Array;
}

interface CallRequestWire {
  clusterId: number;
  from: number;
  to: number;
  kind: string;
  body: Uint8Array;
}

interface CallErrorWire {
  code: string;
  message: string;
  details: Uint8Array;
}

interface CallReplyWire {
  body: Uint8Array;
  error: CallErrorWire | null;
}

type StreamCall = grpc.ClientDuplexStream<FrameWire, FrameWire> | grpc.ServerDuplexStream<FrameWire, FrameWire>;

interface Link {
  readonly peer: NodeId;
  readonly direction: 'dialed' | 'accepted';
  readonly call: StreamCall;
  /** A dialled link is established when the peer's hello arrives; an accepted one at once. */
  established: boolean;
  closed: boolean;
  /** Frames handed to grpc-js whose write callback has not run yet. */
  framesInFlight: number;
  /** Set after write() returned false, until 'drain'. */
  waitingForDrain: boolean;
}

interface PeerState {
  readonly id: NodeId;
  urls: readonly string[];
  urlIndex: number;
  client: grpc.Client | undefined;
  clientAddress: string;
  readonly queue: PeerSendQueue;
  dialTimer: ReturnType<typeof setTimeout> | undefined;
  backoffMs: number;
}

const PEER_REQUEST_KINDS: ReadonlySet<string> = new Set<PeerRequestKind>(['propose', 'member', 'status', 'read']);
const EMPTY_BYTES = new Uint8Array(0);

let peerService: grpc.ServiceDefinition | undefined;

function loadPeerService(): grpc.ServiceDefinition {
  if (peerService === undefined) {
    const definition = protoLoader.loadSync(PEER_SERVICE_PROTO_PATH, { keepCase: false, longs: Number, defaults: true, oneofs: false });
    peerService = definition['stratakv.peer.Peer'] as grpc.ServiceDefinition;
    assert(peerService !== undefined, 'peer.proto defines stratakv.peer.Peer');
  }
  return peerService;
}

/**
 * parsePeerUrl turns http://host:port into the host:port gRPC dials or binds; anything
 * else is INVALID_ARGUMENT.
 */
export function parsePeerUrl(url: string): { address: string; hostname: string; port: number } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `peer URL ${JSON.stringify(url)} is not a URL`, { cause: error, details: { url } });
  }
  if (parsed.protocol !== 'http:' || parsed.port === '' || parsed.pathname !== '/' || parsed.search !== '' || parsed.username !== '') {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `peer URL ${JSON.stringify(url)} must be http://host:port`, { details: { url } });
  }
  return { address: `${parsed.hostname}:${parsed.port}`, hostname: parsed.hostname, port: Number(parsed.port) };
}

function bytesView(value: Uint8Array): Uint8Array {
  return value.constructor === Uint8Array ? value : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

/** GrpcTransport is the Transport between cluster members over gRPC (see the file comment). */
export class GrpcTransport implements Transport {
  readonly localId: NodeId;
  readonly clusterId: number;
  private readonly listenUrls: readonly string[];
  private readonly logger: Logger;
  private readonly random: RandomSource;
  private readonly limits: TransportLimits;
  private readonly service: grpc.ServiceDefinition;
  private readonly channelOptions: grpc.ChannelOptions;

  private handlers: TransportHandlers | undefined;
  private server: grpc.Server | undefined;
  private bound: string[] = [];
  private closing: Promise<void> | undefined;
  private readonly peers = new Map<NodeId, PeerState>();
  // Invariant: at most one link per peer; a link in this map is not closed.
  private readonly links = new Map<NodeId, Link>();
  private readonly dirty = new Set<PeerState>();
  private flushScheduled = false;
  private readonly unreachable: UnreachableReporter;
  private readonly pendingRequests = new Set<{ fail(error: StrataError): void }>();
  private readonly servingRequests = new Set<AbortController>();
  private readonly linkWaiters = new Map<NodeId, Set<() => void>>();
  private streamsDialedCount = 0;
  private streamsAcceptedCount = 0;

  constructor(options: GrpcTransportOptions) {
    assert(Number.isSafeInteger(options.localId) && options.localId > 0, 'localId must be a positive safe integer');
    assert(Number.isSafeInteger(options.clusterId) && options.clusterId >= 0, 'clusterId must be a non-negative safe integer');
    assert(options.listenUrls.length > 0, 'listenUrls must not be empty');
    for (const url of options.listenUrls) parsePeerUrl(url);
    this.localId = options.localId;
    this.clusterId = options.clusterId;
    this.listenUrls = [...options.listenUrls];
    this.logger = options.logger ?? SILENT_LOGGER;
    this.random = options.random ?? { intBelow: (bound) => Math.floor(Math.random() * bound) };
    this.limits = resolveTransportLimits(options.limits);
    this.unreachable = new UnreachableReporter({ intervalMs: this.limits.unreachableIntervalMs });
    this.service = loadPeerService();
    this.channelOptions = {
      'grpc.max_receive_message_length': this.limits.messageBytesMax,
      'grpc.max_send_message_length': this.limits.messageBytesMax,
      'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
      'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': this.limits.dialBackoffMsMin,
      'grpc.max_reconnect_backoff_ms': this.limits.dialBackoffMsMax,
      'grpc.enable_retries': 0,
      'grpc.enable_channelz': 0,
      // grpc-js closes a channel without calls after 30 minutes; the unary channel is kept
      // warm (see notifyConnected) for forwarding, which may be idle for long stretches.
      'grpc.client_idle_timeout_ms': UNARY_CHANNEL_IDLE_MS,
      // A private subchannel pool: closing this transport never touches another's connections.
      'grpc.use_local_subchannel_pool': 1,
    };
  }

  /** boundUrls are the URLs the server listens on once start() resolved (port 0 replaced). */
  get boundUrls(): readonly string[] {
    return this.bound;
  }

  /** streamsDialed counts streams this transport has dialled (tests check the lower-id rule). */
  get streamsDialed(): number {
    return this.streamsDialedCount;
  }

  /** streamsAccepted counts streams this transport has accepted after their hello. */
  get streamsAccepted(): number {
    return this.streamsAcceptedCount;
  }

  async start(handlers: TransportHandlers): Promise<void> {
    assert(this.handlers === undefined, 'start called twice');
    assert(this.closing === undefined, 'start after close');
    this.handlers = handlers;
    const server = new grpc.Server({
      'grpc.max_receive_message_length': this.limits.messageBytesMax,
      'grpc.max_send_message_length': this.limits.messageBytesMax,
      'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
      'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
      // channelz keeps per-call statistics nobody reads here; it costs CPU on every frame.
      'grpc.enable_channelz': 0,
    });
    server.addService(this.service, {
      Stream: (call: grpc.ServerDuplexStream<FrameWire, FrameWire>) => this.acceptStream(call),
      Call: (call: grpc.ServerUnaryCall<CallRequestWire, CallReplyWire>, callback: grpc.sendUnaryData<CallReplyWire>) =>
        this.serveCall(call, callback),
    });
    this.server = server;
    for (const url of this.listenUrls) {
      const { address, hostname } = parsePeerUrl(url);
      const port = await new Promise<number>((resolve, reject) => {
        server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, boundPort) => {
          if (error !== null) {
            reject(new StrataError(ErrorCode.UNAVAILABLE, `cannot listen on ${url}: ${error.message}`, { cause: error, details: { url } }));
          } else {
            resolve(boundPort);
          }
        });
      });
      const host = hostname.includes(':') && !hostname.startsWith('[') ? `[${hostname}]` : hostname;
      this.bound.push(`http://${host}:${port}`);
    }
    this.logger.info('peer transport listening', { localId: this.localId, urls: this.bound });
    for (const peer of this.peers.values()) this.maybeDial(peer);
  }

  setPeer(peer: NodeId, urls: readonly string[]): void {
    assert(Number.isSafeInteger(peer) && peer > 0, 'peer id must be a positive safe integer');
    assert(peer !== this.localId, 'setPeer with the local id');
    if (urls.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `peer ${peer} has no URLs`, { details: { peer } });
    for (const url of urls) parsePeerUrl(url);
    if (this.closing !== undefined) return;
    const existing = this.peers.get(peer);
    if (existing !== undefined) {
      if (existing.urls.length === urls.length && existing.urls.every((url, i) => url === urls[i])) return;
      existing.urls = [...urls];
      existing.urlIndex = 0;
      this.closeClient(existing);
      // A dialled stream goes to the old address: drop it and dial the new one.
      const link = this.links.get(peer);
      if (link !== undefined && link.direction === 'dialed') this.breakLink(link, 'peer URLs changed');
      this.maybeDial(existing);
      return;
    }
    const state: PeerState = {
      id: peer,
      urls: [...urls],
      urlIndex: 0,
      client: undefined,
      clientAddress: '',
      queue: new PeerSendQueue({ messagesMax: this.limits.queueMessagesMax, bytesMax: this.limits.queueBytesMax }),
      dialTimer: undefined,
      backoffMs: this.limits.dialBackoffMsMin,
    };
    this.peers.set(peer, state);
    this.maybeDial(state);
  }

  removePeer(peer: NodeId): void {
    const state = this.peers.get(peer);
    if (state !== undefined) {
      this.peers.delete(peer);
      state.queue.clear();
      this.dirty.delete(state);
      if (state.dialTimer !== undefined) clearTimeout(state.dialTimer);
      state.dialTimer = undefined;
      this.closeClient(state);
    }
    const link = this.links.get(peer);
    if (link !== undefined) this.breakLink(link, 'peer removed');
    this.unreachable.forget(peer);
  }

  send(messages: readonly Message[]): void {
    assert(this.handlers !== undefined, 'send before start');
    if (this.closing !== undefined) return;
    for (const message of messages) {
      assert(message.to !== this.localId && message.to !== 0, 'message to self or to nobody');
      const state = this.peers.get(message.to);
      const link = this.links.get(message.to);
      if (state === undefined || link === undefined || !link.established || !state.queue.push(message)) {
        this.unreachable.mark(message.to);
        continue;
      }
      this.dirty.add(state);
    }
    this.scheduleFlush();
  }

  request(peer: NodeId, kind: PeerRequestKind, body: Uint8Array, options: PeerRequestOptions = {}): Promise<Uint8Array> {
    assert(PEER_REQUEST_KINDS.has(kind), 'unknown peer request kind');
    const timeoutMs = options.timeoutMs ?? PEER_REQUEST_TIMEOUT_MS;
    assert(Number.isFinite(timeoutMs) && timeoutMs > 0, 'timeoutMs must be positive');
    if (this.closing !== undefined) return Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport is closed', { details: { peer } }));
    const state = this.peers.get(peer);
    if (state === undefined) {
      return Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} is not known`, { details: { peer } }));
    }
    const signal = options.signal;
    if (signal?.aborted === true) {
      return Promise.reject(new StrataError(ErrorCode.CANCELED, `request to peer ${peer} was canceled`, { cause: signal.reason, details: { peer } }));
    }
    const client = this.clientFor(state);
    const method = this.service.Call;
    assert(method !== undefined, 'peer service has Call');
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const pending = {
        fail: (error: StrataError): void => {
          if (settled) return;
          settled = true;
          cleanup();
          reject(error);
          call.cancel();
        },
      };
      const onAbort = (): void => {
        pending.fail(new StrataError(ErrorCode.CANCELED, `request to peer ${peer} was canceled`, { cause: signal?.reason, details: { peer } }));
      };
      const cleanup = (): void => {
        this.pendingRequests.delete(pending);
        signal?.removeEventListener('abort', onAbort);
      };
      const request: CallRequestWire = { clusterId: this.clusterId, from: this.localId, to: peer, kind, body };
      const call = client.makeUnaryRequest<CallRequestWire, CallReplyWire>(
        method.path,
        method.requestSerialize as (value: CallRequestWire) => Buffer,
        method.responseDeserialize as (bytes: Buffer) => CallReplyWire,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, reply) => {
          if (settled) return;
          settled = true;
          cleanup();
          if (error !== null) reject(this.callError(peer, error));
          else if (reply === undefined) reject(new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} sent no reply`, { details: { peer } }));
          else if (reply.error !== null && reply.error !== undefined) reject(remoteError(peer, reply.error));
          else resolve(bytesView(reply.body));
        },
      );
      this.pendingRequests.add(pending);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** linkStatus describes the stream to `peer`, or undefined when there is none. */
  linkStatus(peer: NodeId): PeerLinkStatus | undefined {
    const link = this.links.get(peer);
    if (link === undefined) return undefined;
    const state = this.peers.get(peer);
    return {
      peer,
      direction: link.direction,
      established: link.established,
      queuedMessages: state?.queue.length ?? 0,
      queuedBytes: state?.queue.queuedBytes ?? 0,
    };
  }

  /**
   * whenConnected resolves once a stream to `peer` is established (at once if it is);
   * it rejects with CANCELED when the signal aborts and UNAVAILABLE when the transport closes.
   */
  whenConnected(peer: NodeId, signal?: AbortSignal): Promise<void> {
    if (this.links.get(peer)?.established === true) return Promise.resolve();
    if (this.closing !== undefined) return Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport is closed'));
    return new Promise<void>((resolve, reject) => {
      let waiters = this.linkWaiters.get(peer);
      if (waiters === undefined) {
        waiters = new Set();
        this.linkWaiters.set(peer, waiters);
      }
      const onAbort = (): void => {
        waiters.delete(waiter);
        reject(new StrataError(ErrorCode.CANCELED, `waiting for peer ${peer} was canceled`, { details: { peer } }));
      };
      const waiter = (): void => {
        signal?.removeEventListener('abort', onAbort);
        if (this.closing !== undefined) reject(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport is closed'));
        else resolve();
      };
      waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): Promise<void> {
    if (this.closing === undefined) this.closing = this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    for (const state of this.peers.values()) {
      if (state.dialTimer !== undefined) clearTimeout(state.dialTimer);
      state.dialTimer = undefined;
      state.queue.clear();
    }
    this.dirty.clear();
    for (const link of [...this.links.values()]) this.breakLink(link, 'transport closed');
    for (const pending of [...this.pendingRequests]) {
      pending.fail(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport closed'));
    }
    for (const controller of this.servingRequests) controller.abort(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport closed'));
    this.servingRequests.clear();
    for (const state of this.peers.values()) this.closeClient(state);
    for (const waiters of this.linkWaiters.values()) for (const waiter of waiters) waiter();
    this.linkWaiters.clear();
    // Streams and calls were ended above; forceShutdown drops the HTTP/2 sessions at once
    // instead of waiting for peers to hang up their channels.
    this.server?.forceShutdown();
    this.server = undefined;
    this.logger.info('peer transport closed', { localId: this.localId });
  }

  // ---- sending ----

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // A microtask sends at the end of the current turn: everything the driver hands over
    // in one Ready leaves as one frame, and nothing waits for a timer (no Nagle-like delay).
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.closing !== undefined) return;
    const peers = [...this.dirty];
    this.dirty.clear();
    for (const state of peers) this.flushPeer(state);
    const handlers = this.handlers;
    if (handlers !== undefined) this.unreachable.flush((peer) => handlers.onUnreachable(peer));
  }

  private flushPeer(state: PeerState): void {
    if (state.queue.length === 0) return;
    const link = this.links.get(state.id);
    if (link === undefined || !link.established) {
      state.queue.clear();
      this.unreachable.mark(state.id);
      return;
    }
    // Bounded: each pass takes at least one message off a queue of at most queueMessagesMax.
    while (state.queue.length > 0 && !link.waitingForDrain && link.framesInFlight < this.limits.framesInFlightMax) {
      const messages = state.queue.takeFrame(this.limits.frameBytesMax);
      const batch = encodeMessages(messages);
      if (batch.byteLength > this.limits.messageBytesMax) {
        this.logger.warn('dropping a frame larger than the message maximum', { peer: state.id, bytes: batch.byteLength });
        this.unreachable.mark(state.id);
        continue;
      }
      link.framesInFlight += 1;
      const writable = link.call.write({ clusterId: 0, from: 0, to: 0, batch }, () => {
        link.framesInFlight -= 1;
        if (!link.closed && link.framesInFlight === this.limits.framesInFlightMax - 1) this.markDirty(state.id);
      });
      if (!writable) {
        link.waitingForDrain = true;
        link.call.once('drain', () => {
          link.waitingForDrain = false;
          if (!link.closed) this.markDirty(state.id);
        });
      }
    }
  }

  private markDirty(peer: NodeId): void {
    const state = this.peers.get(peer);
    if (state === undefined || state.queue.length === 0) return;
    this.dirty.add(state);
    this.scheduleFlush();
  }

  // ---- streams ----

  private maybeDial(state: PeerState): void {
    if (this.handlers === undefined || this.closing !== undefined) return;
    if (state.id < this.localId) return; // the lower id dials; we wait for the peer
    if (this.links.has(state.id) || state.dialTimer !== undefined) return;
    this.dial(state);
  }

  private dial(state: PeerState): void {
    assert(!this.links.has(state.id), 'dial while a link exists');
    const method = this.service.Stream;
    assert(method !== undefined, 'peer service has Stream');
    const client = this.clientFor(state);
    const call = client.makeBidiStreamRequest<FrameWire, FrameWire>(
      method.path,
      method.requestSerialize as (value: FrameWire) => Buffer,
      method.responseDeserialize as (bytes: Buffer) => FrameWire,
      new grpc.Metadata(),
      {},
    );
    const link: Link = { peer: state.id, direction: 'dialed', call, established: false, closed: false, framesInFlight: 0, waitingForDrain: false };
    this.links.set(state.id, link);
    this.streamsDialedCount += 1;
    // A peer that accepts the call but never answers the hello would hold the link forever.
    const handshakeTimer = setTimeout(() => {
      if (!link.established) {
        this.logger.warn('peer did not answer our hello', { peer: state.id });
        this.breakLink(link, 'no hello from the peer');
      }
    }, this.limits.handshakeTimeoutMs);
    handshakeTimer.unref();
    call.on('data', (frame: FrameWire) => {
      if (!link.established) clearTimeout(handshakeTimer);
      this.onFrame(link, frame);
    });
    call.on('error', (error: grpc.ServiceError) => {
      clearTimeout(handshakeTimer);
      this.onDialedError(link, error);
    });
    call.on('end', () => {
      clearTimeout(handshakeTimer);
      this.breakLink(link, 'peer ended the stream');
    });
    call.write({ clusterId: this.clusterId, from: this.localId, to: state.id, batch: EMPTY_BYTES });
  }

  private onDialedError(link: Link, error: grpc.ServiceError): void {
    if (link.closed) return;
    const code = error.metadata?.get(CODE_METADATA_KEY)[0];
    if (code === ErrorCode.CLUSTER_ID_MISMATCH) {
      this.logger.warn('peer refused our stream: cluster id mismatch', { peer: link.peer, clusterId: this.clusterId, details: error.details });
    } else if (link.established) {
      this.logger.info('peer stream broke', { peer: link.peer, code: error.code, details: error.details });
    } else {
      this.logger.debug('peer stream failed', { peer: link.peer, code: error.code, details: error.details });
    }
    this.breakLink(link, 'stream error');
  }

  private acceptStream(call: grpc.ServerDuplexStream<FrameWire, FrameWire>): void {
    if (this.closing !== undefined) {
      refuse(call, grpc.status.UNAVAILABLE, ErrorCode.UNAVAILABLE, 'peer transport is closed');
      return;
    }
    let link: Link | undefined;
    const handshakeTimer = setTimeout(() => {
      if (link === undefined) refuse(call, grpc.status.DEADLINE_EXCEEDED, ErrorCode.TIMEOUT, 'no hello frame');
    }, this.limits.handshakeTimeoutMs);
    handshakeTimer.unref();
    call.on('data', (frame: FrameWire) => {
      if (link !== undefined) {
        this.onFrame(link, frame);
        return;
      }
      clearTimeout(handshakeTimer);
      link = this.acceptHello(call, frame);
    });
    const onGone = (reason: string): void => {
      clearTimeout(handshakeTimer);
      if (link !== undefined) this.breakLink(link, reason);
    };
    call.on('error', () => onGone('stream error'));
    call.on('end', () => onGone('peer ended the stream'));
    call.on('cancelled', () => onGone('peer cancelled the stream'));
  }

  private acceptHello(call: grpc.ServerDuplexStream<FrameWire, FrameWire>, hello: FrameWire): Link | undefined {
    if (this.closing !== undefined) {
      refuse(call, grpc.status.UNAVAILABLE, ErrorCode.UNAVAILABLE, 'peer transport is closed');
      return undefined;
    }
    if (hello.clusterId !== this.clusterId) {
      this.logger.warn('refused a peer stream: cluster id mismatch', { from: hello.from, theirs: hello.clusterId, ours: this.clusterId });
      refuse(call, grpc.status.FAILED_PRECONDITION, ErrorCode.CLUSTER_ID_MISMATCH, `cluster id mismatch: ours is ${this.clusterId}, the stream names ${hello.clusterId}`);
      return undefined;
    }
    if (hello.to !== this.localId) {
      this.logger.warn('refused a peer stream meant for another member', { from: hello.from, to: hello.to });
      refuse(call, grpc.status.INVALID_ARGUMENT, ErrorCode.INVALID_ARGUMENT, `this is member ${this.localId}, not ${hello.to}`);
      return undefined;
    }
    if (!Number.isSafeInteger(hello.from) || hello.from <= 0 || hello.from >= this.localId) {
      refuse(call, grpc.status.INVALID_ARGUMENT, ErrorCode.INVALID_ARGUMENT, `member ${hello.from} may not dial ${this.localId}: the lower id dials`);
      return undefined;
    }
    const previous = this.links.get(hello.from);
    if (previous !== undefined) this.breakLink(previous, 'replaced by a new stream');
    const link: Link = { peer: hello.from, direction: 'accepted', call, established: true, closed: false, framesInFlight: 0, waitingForDrain: false };
    this.links.set(hello.from, link);
    this.streamsAcceptedCount += 1;
    call.write({ clusterId: this.clusterId, from: this.localId, to: hello.from, batch: EMPTY_BYTES });
    this.logger.info('accepted peer stream', { peer: hello.from, known: this.peers.has(hello.from) });
    this.notifyConnected(hello.from);
    return link;
  }

  private onFrame(link: Link, frame: FrameWire): void {
    if (link.closed || this.closing !== undefined) return;
    if (!link.established) {
      // The dialled side's first frame from the peer is its hello.
      if (frame.clusterId !== this.clusterId || frame.from !== link.peer) {
        this.logger.warn('peer answered with the wrong identity', { peer: link.peer, from: frame.from, clusterId: frame.clusterId });
        this.breakLink(link, 'wrong identity');
        return;
      }
      link.established = true;
      const state = this.peers.get(link.peer);
      if (state !== undefined) state.backoffMs = this.limits.dialBackoffMsMin;
      this.logger.info('peer stream established', { peer: link.peer });
      this.notifyConnected(link.peer);
      return;
    }
    if (frame.batch.byteLength === 0) return;
    let messages: Message[];
    try {
      messages = decodeMessages(frame.batch);
    } catch (error) {
      this.logger.warn('peer sent a malformed frame; closing its stream', { peer: link.peer, error: String(error) });
      this.breakLink(link, 'malformed frame');
      return;
    }
    let accepted = messages;
    if (messages.some((message) => message.from !== link.peer || message.to !== this.localId)) {
      accepted = messages.filter((message) => message.from === link.peer && message.to === this.localId);
      this.logger.warn('dropped misaddressed messages', { peer: link.peer, count: messages.length - accepted.length });
    }
    if (accepted.length > 0) this.handlers?.onMessages(accepted);
  }

  /** breakLink closes a link once; the dialling side schedules a redial. */
  private breakLink(link: Link, reason: string): void {
    if (link.closed) return;
    link.closed = true;
    if (this.links.get(link.peer) === link) this.links.delete(link.peer);
    this.logger.debug('peer stream closed', { peer: link.peer, direction: link.direction, reason });
    if (link.direction === 'dialed') {
      (link.call as grpc.ClientDuplexStream<FrameWire, FrameWire>).cancel();
    } else {
      const call = link.call as grpc.ServerDuplexStream<FrameWire, FrameWire>;
      if (!call.cancelled && !call.writableEnded) call.end();
    }
    const state = this.peers.get(link.peer);
    if (state === undefined) return;
    if (state.queue.clear() > 0) {
      this.unreachable.mark(state.id);
      this.scheduleFlush();
    }
    if (link.direction === 'dialed' && this.closing === undefined) this.scheduleRedial(state, link.established);
  }

  private scheduleRedial(state: PeerState, wasEstablished: boolean): void {
    if (state.dialTimer !== undefined || this.closing !== undefined) return;
    if (!wasEstablished && state.urls.length > 1) {
      state.urlIndex = (state.urlIndex + 1) % state.urls.length;
      this.closeClient(state);
    }
    const base = state.backoffMs;
    state.backoffMs = Math.min(this.limits.dialBackoffMsMax, base * 2);
    // Jitter of ±20% keeps members that lost a common peer from redialling in lockstep.
    const jitter = Math.floor((base * 2) / 5);
    const delayMs = base - Math.floor(jitter / 2) + this.random.intBelow(jitter + 1);
    state.dialTimer = setTimeout(() => {
      state.dialTimer = undefined;
      if (this.peers.get(state.id) === state) this.maybeDial(state);
    }, delayMs);
  }

  private notifyConnected(peer: NodeId): void {
    // The peer is up: open the channel for unary calls now, so that the first call on it
    // (held writes forwarded to a new leader right after a transfer, say) does not wait for
    // a TCP and HTTP/2 handshake; measured, a cold first call took over 10 ms under load.
    const state = this.peers.get(peer);
    if (state !== undefined) this.clientFor(state).getChannel().getConnectivityState(true);
    const waiters = this.linkWaiters.get(peer);
    if (waiters === undefined) return;
    this.linkWaiters.delete(peer);
    for (const waiter of waiters) waiter();
  }

  // ---- unary calls ----

  private serveCall(call: grpc.ServerUnaryCall<CallRequestWire, CallReplyWire>, callback: grpc.sendUnaryData<CallReplyWire>): void {
    const request = call.request;
    const handlers = this.handlers;
    if (this.closing !== undefined || handlers === undefined) {
      callback({ code: grpc.status.UNAVAILABLE, details: 'peer transport is closed' });
      return;
    }
    const fail = (error: StrataError): void => callback(null, { body: EMPTY_BYTES, error: toCallError(error) });
    if (request.clusterId !== this.clusterId) {
      this.logger.warn('refused a peer call: cluster id mismatch', { from: request.from, theirs: request.clusterId, ours: this.clusterId });
      fail(new StrataError(ErrorCode.CLUSTER_ID_MISMATCH, `cluster id mismatch: ours is ${this.clusterId}, the call names ${request.clusterId}`));
      return;
    }
    if (request.to !== this.localId) {
      fail(new StrataError(ErrorCode.INVALID_ARGUMENT, `this is member ${this.localId}, not ${request.to}`));
      return;
    }
    if (!PEER_REQUEST_KINDS.has(request.kind)) {
      fail(new StrataError(ErrorCode.INVALID_ARGUMENT, `unknown peer request kind ${JSON.stringify(request.kind)}`, { details: { field: 'kind' } }));
      return;
    }
    const controller = new AbortController();
    this.servingRequests.add(controller);
    call.on('cancelled', () => controller.abort(new StrataError(ErrorCode.CANCELED, 'the caller cancelled')));
    let answer: Promise<Uint8Array>;
    try {
      answer = handlers.onRequest(request.from, request.kind as PeerRequestKind, bytesView(request.body), controller.signal);
    } catch (error) {
      answer = Promise.reject(error);
    }
    answer.then(
      (body) => {
        this.servingRequests.delete(controller);
        callback(null, { body, error: null });
      },
      (error: unknown) => {
        this.servingRequests.delete(controller);
        if (isStrataError(error)) {
          fail(error);
        } else {
          this.logger.warn('peer request handler failed without a StrataError', { from: request.from, kind: request.kind, error: String(error) });
          fail(new StrataError(ErrorCode.UNAVAILABLE, `peer request handler failed: ${String(error)}`));
        }
      },
    );
  }

  private callError(peer: NodeId, error: grpc.ServiceError): StrataError {
    const details = { peer, grpcCode: error.code };
    if (error.code === grpc.status.DEADLINE_EXCEEDED) {
      return new StrataError(ErrorCode.TIMEOUT, `request to peer ${peer} timed out`, { cause: error, details });
    }
    return new StrataError(ErrorCode.UNAVAILABLE, `request to peer ${peer} failed: ${error.details}`, { cause: error, details });
  }

  private clientFor(state: PeerState): grpc.Client {
    const url = state.urls[state.urlIndex];
    assert(url !== undefined, 'peer URL index in range');
    const { address } = parsePeerUrl(url);
    if (state.client !== undefined && state.clientAddress === address) return state.client;
    this.closeClient(state);
    state.client = new grpc.Client(address, grpc.credentials.createInsecure(), this.channelOptions);
    state.clientAddress = address;
    return state.client;
  }

  private closeClient(state: PeerState): void {
    state.client?.close();
    state.client = undefined;
    state.clientAddress = '';
  }
}

function refuse(call: grpc.ServerDuplexStream<FrameWire, FrameWire>, status: grpc.status, code: ErrorCode, details: string): void {
  const metadata = new grpc.Metadata();
  metadata.set(CODE_METADATA_KEY, code);
  call.emit('error', { code: status, details, metadata });
}

function toCallError(error: StrataError): CallErrorWire {
  return { code: error.code, message: error.message, details: encodeErrorDetails(error.details) };
}

function remoteError(peer: NodeId, wire: CallErrorWire): StrataError {
  if (!isErrorCode(wire.code)) {
    return new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} answered with unknown error code ${JSON.stringify(wire.code)}: ${wire.message}`, {
      details: { peer, remoteCode: wire.code },
    });
  }
  return new StrataError(wire.code, wire.message, { details: decodeErrorDetails(wire.details) });
}

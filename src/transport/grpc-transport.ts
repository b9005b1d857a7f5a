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
// A member that has not applied the change that added a newer member does not know it, yet
// must answer it (the newer one may lead; etcd's rafthttp learns such a remote from the
// sender's X-PeerURLs header). So:
// - A stream from a member not set with setPeer is accepted, whatever the ids, and its sender
//   is learned from the hello (with the URLs the hello carries, for unary calls) for as long
//   as that stream lasts: a learned peer is never dialled, and it is forgotten when its
//   stream ends. setPeer confirms it (it becomes an ordinary peer); removePeer removes it.
// - The higher id dials a lower peer it knows when no stream appeared for
//   fallbackDialDelayMs (the lower one may not know it). When both dial, the lower id's
//   stream wins: the lower refuses a higher id's stream while its own dial is open, and the
//   higher drops its own dial when it accepts the lower's stream. One stream per pair.
// - removePeer remembers the id (bounded, oldest forgotten first): its streams are refused
//   with MEMBER_REMOVED, so a removed member is not learned again; setPeer lifts that.
//
// Unary calls (request()) go over a channel to the peer's URL independent of the stream.
//
// Snapshots (sendSnapshot()) go over the Snapshot RPC, one call per attempt, each on a channel
// of its own so that a snapshot's megabytes never queue in front of heartbeats on the message
// stream's connection. The rules of a send and of a received stream (window, rate, progress
// timeout, resume, CRC, bounds) are snapshot-stream.ts's, shared with MemoryTransport; this
// file maps them to frames, gRPC status codes and the `stratakv-code` trailer.

import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger, Message, NodeId, SnapshotMessage } from '../raft/index.ts';
import { SILENT_LOGGER } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import type { Clock } from '../util/clock.ts';
import { SYSTEM_CLOCK } from '../util/clock.ts';
import { ErrorCode, StrataError, isErrorCode, isStrataError } from '../util/errors.ts';
import type { RandomSource } from '../util/random.ts';
import type { TransportLimits } from './limits.ts';
import { resolveTransportLimits } from './limits.ts';
import { widenHttp2Windows } from './http2-window.ts';
import { decodeErrorDetails, decodeMessages, encodeErrorDetails, encodeMessages } from './message-codec.ts';
import { PeerSendQueue, UnreachableReporter } from './peer-queue.ts';
import type {
  IncomingSnapshot,
  SnapshotAttemptEvents,
  SnapshotAttemptStream,
  SnapshotHello,
  SnapshotSend,
  SnapshotSenderFrame,
  SnapshotStats,
} from './snapshot-stream.ts';
import {
  SNAPSHOT_ACK_BYTES_MAX,
  SNAPSHOT_FRAME_BYTES_MAX,
  SnapshotReceiver,
  decodeSnapshotHello,
  newSnapshotStats,
  startSnapshotSend,
} from './snapshot-stream.ts';
import type { PeerRequestKind, PeerRequestOptions, SnapshotPayload, SnapshotSendOptions, Transport, TransportHandlers } from './transport.ts';
import { PEER_REQUEST_TIMEOUT_MS, REMOVED_PEERS_REMEMBERED_MAX } from './transport.ts';

/** GrpcTransportOptions configure a GrpcTransport. */
export interface GrpcTransportOptions {
  /** This member's id (a positive safe integer). */
  readonly localId: NodeId;
  /** The cluster's id; streams and calls that name another are refused. */
  readonly clusterId: number;
  /** Where to listen, as http://host:port (port 0 picks a free port; see boundUrls). */
  readonly listenUrls: readonly string[];
  /**
   * The URLs peers reach this member at (its advertised peer URLs), sent in the stream's
   * hello so that a member that does not know this one yet can call it. By default the
   * bound URLs, leaving out wildcard hosts (0.0.0.0, [::]), which name no reachable address.
   */
  readonly advertiseUrls?: readonly string[];
  readonly logger?: Logger;
  /** Jitter for redial backoff; Math.random when not given. */
  readonly random?: RandomSource;
  readonly limits?: Partial<TransportLimits>;
  /**
   * The clock of snapshot sends: their rate limit, progress timeouts and retry backoff
   * (SYSTEM_CLOCK when not given). The message stream keeps Node's timers.
   */
  readonly clock?: Clock;
}

/** PeerLinkStatus describes the stream to one peer, for tests and status pages. */
export interface PeerLinkStatus {
  readonly peer: NodeId;
  /**
   * 'dialed' when this member dialled (as the lower id, or as the higher one's fallback),
   * 'accepted' when the peer did.
   */
  readonly direction: 'dialed' | 'accepted';
  readonly established: boolean;
  /** True while the peer is known only from its stream's hello (not set with setPeer). */
  readonly learned: boolean;
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
// A hello names at most this many URLs, each at most this long; a longer one is refused.
const HELLO_URLS_MAX = 16;
const HELLO_URL_LENGTH_MAX = 1_024;
// Peers learned from their hello and not (yet) set with setPeer: a cluster in a membership
// change has one or two; a stream that would pass this many is refused.
const LEARNED_PEERS_MAX = 64;

interface FrameWire {
  clusterId: number;
  from: number;
  to: number;
  batch: Uint8Array;
  /** Set on the hello only; decoded as [] when the sender (an older member) leaves it out. */
  peerUrls: readonly string[];
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

interface SnapshotHelloWire {
  clusterId: number;
  from: number;
  to: number;
  message: Uint8Array;
  byteLength: number;
}

interface SnapshotChunkWire {
  offset: number;
  data: Uint8Array;
  crc32c: number;
}

/** Exactly one of hello, chunk and done is set; unset messages decode as null. */
interface SnapshotFrameWire {
  hello: SnapshotHelloWire | null;
  chunk: SnapshotChunkWire | null;
  done: boolean;
}

interface SnapshotAckWire {
  verifiedBytes: number;
  done: boolean;
  error: CallErrorWire | null;
}

type StreamCall = grpc.ClientDuplexStream<FrameWire, FrameWire> | grpc.ServerDuplexStream<FrameWire, FrameWire>;
type SnapshotServerCall = grpc.ServerDuplexStream<SnapshotFrameWire, SnapshotAckWire>;

/** Why a hello (of a Stream or a Snapshot call) is refused: the status, and the code for the trailer. */
interface HelloRefusal {
  readonly status: grpc.status;
  readonly code: ErrorCode;
  readonly details: string;
}

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
  /** Empty only for a learned peer whose hello named no URL (an older member). */
  urls: readonly string[];
  /**
   * True for a peer learned from its hello, until setPeer confirms it.
   * Invariant: a learned peer has an accepted link (it is never dialled and is forgotten
   * when that link closes), and no dial timer.
   */
  learned: boolean;
  urlIndex: number;
  client: grpc.Client | undefined;
  clientAddress: string;
  readonly queue: PeerSendQueue;
  dialTimer: ReturnType<typeof setTimeout> | undefined;
  backoffMs: number;
}

const PEER_REQUEST_KINDS: ReadonlySet<string> = new Set<PeerRequestKind>(['propose', 'member', 'status', 'read', 'snapshot']);
const EMPTY_BYTES = new Uint8Array(0);
const NO_URLS: readonly string[] = Object.freeze([]);

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

// isWildcardUrl tells whether a listen URL names every interface (no address a peer can dial).
function isWildcardUrl(url: string): boolean {
  const { hostname } = parsePeerUrl(url);
  return hostname === '0.0.0.0' || hostname === '[::]';
}

function bytesView(value: Uint8Array): Uint8Array {
  return value.constructor === Uint8Array ? value : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

/** GrpcTransport is the Transport between cluster members over gRPC (see the file comment). */
export class GrpcTransport implements Transport {
  readonly localId: NodeId;
  readonly clusterId: number;
  private readonly listenUrls: readonly string[];
  private readonly advertiseUrls: readonly string[] | undefined;
  private readonly logger: Logger;
  private readonly random: RandomSource;
  private readonly limits: TransportLimits;
  private readonly service: grpc.ServiceDefinition;
  private readonly channelOptions: grpc.ChannelOptions;

  private handlers: TransportHandlers | undefined;
  private server: grpc.Server | undefined;
  private bound: string[] = [];
  /** The URLs our hellos carry: advertiseUrls, or the bound ones without wildcards. */
  private helloUrls: readonly string[] = NO_URLS;
  private closing: Promise<void> | undefined;
  private readonly peers = new Map<NodeId, PeerState>();
  // Invariant: at most one link per peer; a link in this map is not closed.
  private readonly links = new Map<NodeId, Link>();
  private learnedCount = 0;
  // Ids given to removePeer and not set again since, oldest first (at most REMOVED_PEERS_REMEMBERED_MAX).
  private readonly removedPeers = new Set<NodeId>();
  private readonly dirty = new Set<PeerState>();
  private flushScheduled = false;
  private readonly unreachable: UnreachableReporter;
  private readonly pendingRequests = new Set<{ fail(error: StrataError): void }>();
  private readonly servingRequests = new Set<AbortController>();
  private readonly linkWaiters = new Map<NodeId, Set<() => void>>();
  private streamsDialedCount = 0;
  private streamsAcceptedCount = 0;
  private readonly clock: Clock;
  private readonly snapshotChannelOptions: grpc.ChannelOptions;
  private readonly snapshotCounters: SnapshotStats = newSnapshotStats();
  private readonly snapshotSends = new Set<SnapshotSend>();
  private readonly snapshotReceiver: SnapshotReceiver;

  constructor(options: GrpcTransportOptions) {
    assert(Number.isSafeInteger(options.localId) && options.localId > 0, 'localId must be a positive safe integer');
    assert(Number.isSafeInteger(options.clusterId) && options.clusterId >= 0, 'clusterId must be a non-negative safe integer');
    assert(options.listenUrls.length > 0, 'listenUrls must not be empty');
    for (const url of options.listenUrls) parsePeerUrl(url);
    if (options.advertiseUrls !== undefined) {
      if (options.advertiseUrls.length > HELLO_URLS_MAX) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `at most ${HELLO_URLS_MAX} advertised peer URLs`, { details: { field: 'advertiseUrls' } });
      }
      for (const url of options.advertiseUrls) checkHelloUrl(url);
    }
    this.localId = options.localId;
    this.clusterId = options.clusterId;
    this.listenUrls = [...options.listenUrls];
    this.advertiseUrls = options.advertiseUrls === undefined ? undefined : [...options.advertiseUrls];
    this.logger = options.logger ?? SILENT_LOGGER;
    this.random = options.random ?? { intBelow: (bound) => Math.floor(Math.random() * bound) };
    this.limits = resolveTransportLimits(options.limits);
    this.unreachable = new UnreachableReporter({ intervalMs: this.limits.unreachableIntervalMs });
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.snapshotReceiver = new SnapshotReceiver({
      logger: this.logger,
      stats: this.snapshotCounters,
      onSnapshot: (from, message, byteLength, signal) => {
        const handlers = this.handlers;
        assert(handlers !== undefined, 'a snapshot stream is accepted only after start');
        return handlers.onSnapshot(from, message, byteLength, signal);
      },
    });
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
    // A snapshot attempt gets a channel (and so, with the private pool, a connection) of its
    // own: its chunks never queue in front of the message stream, and an attempt abandoned on
    // a dead connection is retried on a fresh one.
    this.snapshotChannelOptions = {
      'grpc.max_send_message_length': SNAPSHOT_FRAME_BYTES_MAX,
      'grpc.max_receive_message_length': SNAPSHOT_ACK_BYTES_MAX,
      'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
      'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.enable_retries': 0,
      'grpc.enable_channelz': 0,
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

  /** snapshotStats counts this transport's snapshot sends and refused incoming streams (a copy). */
  get snapshotStats(): SnapshotStats {
    return { ...this.snapshotCounters };
  }

  /** incomingSnapshotStreams counts the snapshot streams being received now. */
  get incomingSnapshotStreams(): number {
    return this.snapshotReceiver.openStreams;
  }

  async start(handlers: TransportHandlers): Promise<void> {
    assert(this.handlers === undefined, 'start called twice');
    assert(this.closing === undefined, 'start after close');
    this.handlers = handlers;
    const server = new grpc.Server({
      // One limit for every method: a snapshot frame (a block of up to 16 MiB) must fit too.
      'grpc.max_receive_message_length': Math.max(this.limits.messageBytesMax, SNAPSHOT_FRAME_BYTES_MAX),
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
      Snapshot: (call: SnapshotServerCall) => this.acceptSnapshot(call),
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
      // Raft appends and snapshot chunks cross zones: 64 KiB windows would cap them per round trip.
      widenHttp2Windows(server);
      const host = hostname.includes(':') && !hostname.startsWith('[') ? `[${hostname}]` : hostname;
      this.bound.push(`http://${host}:${port}`);
    }
    this.helloUrls = this.advertiseUrls ?? this.bound.filter((url) => !isWildcardUrl(url)).slice(0, HELLO_URLS_MAX);
    this.logger.info('peer transport listening', { localId: this.localId, urls: this.bound, advertised: this.helloUrls });
    for (const peer of this.peers.values()) this.maybeDial(peer);
  }

  setPeer(peer: NodeId, urls: readonly string[]): void {
    assert(Number.isSafeInteger(peer) && peer > 0, 'peer id must be a positive safe integer');
    assert(peer !== this.localId, 'setPeer with the local id');
    if (urls.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `peer ${peer} has no URLs`, { details: { peer } });
    for (const url of urls) parsePeerUrl(url);
    if (this.closing !== undefined) return;
    // The driver is the authority: a peer it sets again is no longer refused as removed.
    this.removedPeers.delete(peer);
    const existing = this.peers.get(peer);
    if (existing !== undefined) {
      if (existing.learned) {
        // Confirmed: an ordinary peer from now on, kept (and redialled) after its stream ends.
        existing.learned = false;
        this.learnedCount -= 1;
        assert(this.learnedCount >= 0, 'learned peer count went negative');
        this.logger.info('a learned peer was confirmed', { peer });
      }
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
    this.addPeerState(peer, [...urls], false);
  }

  // addPeerState adds a peer (set by the driver, or learned from a hello) and dials if due.
  private addPeerState(peer: NodeId, urls: readonly string[], learned: boolean): PeerState {
    assert(!this.peers.has(peer), 'addPeerState for a known peer');
    assert(learned || urls.length > 0, 'a peer set with setPeer has URLs');
    const state: PeerState = {
      id: peer,
      urls,
      learned,
      urlIndex: 0,
      client: undefined,
      clientAddress: '',
      queue: new PeerSendQueue({ messagesMax: this.limits.queueMessagesMax, bytesMax: this.limits.queueBytesMax }),
      dialTimer: undefined,
      backoffMs: this.limits.dialBackoffMsMin,
    };
    this.peers.set(peer, state);
    if (learned) this.learnedCount += 1;
    this.maybeDial(state);
    return state;
  }

  removePeer(peer: NodeId): void {
    if (this.closing === undefined && !this.removedPeers.has(peer)) {
      // A removed id never returns (ids derive from peer URLs), so its streams are refused
      // from now on instead of teaching us the member again; the oldest id goes first.
      if (this.removedPeers.size >= REMOVED_PEERS_REMEMBERED_MAX) {
        const oldest = this.removedPeers.values().next().value;
        if (oldest !== undefined) this.removedPeers.delete(oldest);
      }
      this.removedPeers.add(peer);
    }
    this.forgetPeer(peer);
    const link = this.links.get(peer);
    if (link !== undefined) this.breakLink(link, 'peer removed');
    const removed = new StrataError(ErrorCode.MEMBER_REMOVED, `member ${peer} was removed from the cluster`, { details: { peer } });
    for (const send of [...this.snapshotSends]) {
      if (send.peer === peer) send.fail(new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} was removed`, { details: { peer } }));
    }
    this.snapshotReceiver.endAll(removed, peer);
  }

  // forgetPeer drops a peer's state: queue, dial timer, channel and unreachable reports.
  private forgetPeer(peer: NodeId): void {
    const state = this.peers.get(peer);
    if (state !== undefined) {
      this.peers.delete(peer);
      if (state.learned) this.learnedCount -= 1;
      assert(this.learnedCount >= 0, 'learned peer count went negative');
      state.queue.clear();
      this.dirty.delete(state);
      if (state.dialTimer !== undefined) clearTimeout(state.dialTimer);
      state.dialTimer = undefined;
      this.closeClient(state);
    }
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
    if (state.urls.length === 0) {
      // Learned from an older member's hello, which names no URL: only its stream reaches it.
      return Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} has no known URL`, { details: { peer } }));
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
      // While the message stream to the peer is up, the peer is up: a call then waits (within
      // its deadline) for the unary channel to connect instead of failing at once on the
      // channel's last failed attempt: a peer that restarts and dials us has its stream up
      // while our channel to it still waits out its redial backoff (up to dialBackoffMsMax).
      // Without a stream the call fails fast, so that a forward to a dead leader returns well
      // before its deadline.
      const waitForReady = this.links.get(peer)?.established === true;
      const call = client.makeUnaryRequest<CallRequestWire, CallReplyWire>(
        method.path,
        method.requestSerialize as (value: CallRequestWire) => Buffer,
        method.responseDeserialize as (bytes: Buffer) => CallReplyWire,
        request,
        new grpc.Metadata({ waitForReady }),
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

  sendSnapshot(message: SnapshotMessage, payload: SnapshotPayload, options: SnapshotSendOptions = {}): Promise<void> {
    assert(this.handlers !== undefined, 'sendSnapshot before start');
    return startSnapshotSend({
      localId: this.localId,
      closed: this.closing !== undefined,
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

  // openSnapshotAttempt opens one Snapshot call (on a channel of its own) and sends the hello.
  // Throws UNAVAILABLE when there is nothing to call: the send then fails at once.
  private openSnapshotAttempt(hello: SnapshotHello, events: SnapshotAttemptEvents): SnapshotAttemptStream {
    const peer = hello.to;
    if (this.closing !== undefined) throw new StrataError(ErrorCode.UNAVAILABLE, 'peer transport is closed', { details: { peer } });
    const state = this.peers.get(peer);
    if (state === undefined) throw new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} is not known`, { details: { peer } });
    const url = state.urls[state.urlIndex];
    if (url === undefined) throw new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} has no known URL`, { details: { peer } });
    const method = this.service.Snapshot;
    assert(method !== undefined, 'peer service has Snapshot');
    const client = new grpc.Client(parsePeerUrl(url).address, grpc.credentials.createInsecure(), this.snapshotChannelOptions);
    const call = client.makeBidiStreamRequest<SnapshotFrameWire, SnapshotAckWire>(
      method.path,
      method.requestSerialize as (value: SnapshotFrameWire) => Buffer,
      method.responseDeserialize as (bytes: Buffer) => SnapshotAckWire,
      new grpc.Metadata(),
      {},
    );
    // 'open' until the call fails or we end or cancel it; events go to the send only while open.
    let phase: 'open' | 'ending' | 'closed' = 'open';
    call.on('status', () => client.close());
    call.on('data', (ack: SnapshotAckWire) => {
      if (phase !== 'open') return;
      if (ack.error !== null && ack.error !== undefined) {
        phase = 'closed';
        events.refused(remoteError(peer, ack.error));
        return;
      }
      events.ack({ verifiedBytes: ack.verifiedBytes, done: ack.done });
    });
    call.on('error', (error: grpc.ServiceError) => {
      if (phase !== 'open') return;
      phase = 'closed';
      client.close();
      const code = error.metadata?.get(CODE_METADATA_KEY)[0];
      const details = { peer, grpcCode: error.code };
      if (typeof code === 'string' && isErrorCode(code)) {
        events.refused(new StrataError(code, `peer ${peer} refused the snapshot stream: ${error.details}`, { cause: error, details }));
      } else if (error.code === grpc.status.UNIMPLEMENTED) {
        events.refused(new StrataError(ErrorCode.UNIMPLEMENTED, `peer ${peer} does not receive snapshot streams`, { cause: error, details }));
      } else {
        events.broken(new StrataError(ErrorCode.UNAVAILABLE, `snapshot stream to peer ${peer} broke: ${error.details}`, { cause: error, details }));
      }
    });
    call.on('end', () => {
      if (phase !== 'open') return;
      phase = 'closed';
      events.broken(new StrataError(ErrorCode.UNAVAILABLE, `peer ${peer} ended the snapshot stream without an answer`, { details: { peer } }));
    });
    call.write({
      hello: { clusterId: this.clusterId, from: this.localId, to: peer, message: hello.messageBytes, byteLength: hello.byteLength },
      chunk: null,
      done: false,
    });
    return {
      write: (frame: SnapshotSenderFrame): boolean => {
        if (phase !== 'open') return true;
        assert(frame.kind !== 'invalid', 'a sender writes chunks and done only');
        const wire: SnapshotFrameWire = frame.kind === 'chunk' ? { hello: null, chunk: frame.chunk, done: false } : { hello: null, chunk: null, done: true };
        const writable = call.write(wire);
        if (!writable) {
          call.once('drain', () => {
            if (phase === 'open') events.drain();
          });
        }
        return writable;
      },
      end: (): void => {
        if (phase !== 'open') return;
        phase = 'ending';
        call.end(); // the status follows, and closes the channel
      },
      cancel: (): void => {
        // Also after the call failed: cancelling a finished call does nothing, and the
        // channel must go either way.
        phase = 'closed';
        call.cancel();
        client.close();
      },
    };
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
      learned: state?.learned ?? false,
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
    for (const send of [...this.snapshotSends]) send.fail(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport closed', { details: { peer: send.peer } }));
    this.snapshotReceiver.endAll(new StrataError(ErrorCode.UNAVAILABLE, 'peer transport closed'));
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
      const writable = link.call.write({ clusterId: 0, from: 0, to: 0, batch, peerUrls: NO_URLS }, () => {
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

  // maybeDial starts a stream to a peer that has none: at once to a higher id, after the
  // fallback delay to a lower one (which dials us first if it knows us).
  private maybeDial(state: PeerState): void {
    if (!this.mayDial(state)) return;
    if (state.id > this.localId) this.dial(state);
    else this.scheduleDial(state, { rotateUrl: false });
  }

  private mayDial(state: PeerState): boolean {
    if (this.handlers === undefined || this.closing !== undefined) return false;
    // A learned peer dials us; it is forgotten when its stream ends, never dialled.
    if (state.learned) return false;
    return !this.links.has(state.id) && state.dialTimer === undefined;
  }

  private dial(state: PeerState): void {
    assert(!this.links.has(state.id), 'dial while a link exists');
    assert(!state.learned, 'dial a learned peer');
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
    call.write({ clusterId: this.clusterId, from: this.localId, to: state.id, batch: EMPTY_BYTES, peerUrls: this.helloUrls });
  }

  private onDialedError(link: Link, error: grpc.ServiceError): void {
    if (link.closed) return;
    const code = error.metadata?.get(CODE_METADATA_KEY)[0];
    if (code === ErrorCode.CLUSTER_ID_MISMATCH) {
      this.logger.warn('peer refused our stream: cluster id mismatch', { peer: link.peer, clusterId: this.clusterId, details: error.details });
    } else if (code === ErrorCode.MEMBER_REMOVED) {
      this.logger.warn('peer refused our stream: it removed this member', { peer: link.peer, details: error.details });
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
    const refusal = this.helloRefusal('stream', hello);
    if (refusal !== undefined) {
      refuse(call, refusal.status, refusal.code, refusal.details);
      return undefined;
    }
    const from = hello.from;
    const urls = helloUrlsOf(hello);
    if (urls === undefined) {
      this.logger.warn('refused a peer stream: its hello names malformed peer URLs', { from });
      refuse(call, grpc.status.INVALID_ARGUMENT, ErrorCode.INVALID_ARGUMENT, `member ${from} sent malformed peer URLs (at most ${HELLO_URLS_MAX}, each http://host:port)`);
      return undefined;
    }
    const previous = this.links.get(from);
    if (previous !== undefined && previous.direction === 'dialed' && from > this.localId) {
      // Both dialled: the lower id's stream wins. Our dial is open (and the peer drops its
      // own when it accepts ours); refusing is deterministic where replacing could race.
      refuse(call, grpc.status.ALREADY_EXISTS, ErrorCode.UNAVAILABLE, `member ${this.localId} is dialling ${from}: the lower id's stream wins`);
      return undefined;
    }
    const state = this.peers.get(from);
    if (state === undefined && this.learnedCount >= LEARNED_PEERS_MAX) {
      this.logger.warn('refused a stream from an unknown member: too many learned peers', { from, learned: this.learnedCount });
      refuse(call, grpc.status.RESOURCE_EXHAUSTED, ErrorCode.UNAVAILABLE, `too many members not yet known to member ${this.localId}`);
      return undefined;
    }
    // A peer that redialled replaces its old stream; a dial of ours to a lower id (the
    // fallback) gives way to that id's own stream. Breaking a learned peer's link forgets it.
    if (previous !== undefined) this.breakLink(previous, 'replaced by a new stream');
    const known = this.peers.get(from);
    if (known === undefined) {
      // Not (yet) in our membership: learn it for as long as this stream lasts, so that we
      // answer it (the member that added it may lead while we lag behind that change).
      this.addPeerState(from, urls, true);
      this.logger.info('learned a peer from its stream', { peer: from, urls });
    } else {
      known.backoffMs = this.limits.dialBackoffMsMin;
    }
    const link: Link = { peer: from, direction: 'accepted', call, established: true, closed: false, framesInFlight: 0, waitingForDrain: false };
    this.links.set(from, link);
    this.streamsAcceptedCount += 1;
    call.write({ clusterId: this.clusterId, from: this.localId, to: from, batch: EMPTY_BYTES, peerUrls: this.helloUrls });
    this.logger.info('accepted peer stream', { peer: from, known: known !== undefined });
    this.notifyConnected(from);
    return link;
  }

  // helloRefusal checks the identity a hello claims, for a Stream and a Snapshot call alike:
  // our cluster, addressed to us, from a valid member id other than ours, not removed.
  private helloRefusal(kind: 'stream' | 'snapshot stream', hello: { clusterId: number; from: number; to: number }): HelloRefusal | undefined {
    if (hello.clusterId !== this.clusterId) {
      this.logger.warn(`refused a peer ${kind}: cluster id mismatch`, { from: hello.from, theirs: hello.clusterId, ours: this.clusterId });
      return { status: grpc.status.FAILED_PRECONDITION, code: ErrorCode.CLUSTER_ID_MISMATCH, details: `cluster id mismatch: ours is ${this.clusterId}, the ${kind} names ${hello.clusterId}` };
    }
    if (hello.to !== this.localId) {
      this.logger.warn(`refused a peer ${kind} meant for another member`, { from: hello.from, to: hello.to });
      return { status: grpc.status.INVALID_ARGUMENT, code: ErrorCode.INVALID_ARGUMENT, details: `this is member ${this.localId}, not ${hello.to}` };
    }
    const from = hello.from;
    if (!Number.isSafeInteger(from) || from <= 0 || from === this.localId) {
      return { status: grpc.status.INVALID_ARGUMENT, code: ErrorCode.INVALID_ARGUMENT, details: `member ${from} may not dial ${this.localId}: not a member id` };
    }
    if (this.removedPeers.has(from)) {
      this.logger.debug(`refused a ${kind} from a removed member`, { from });
      return { status: grpc.status.FAILED_PRECONDITION, code: ErrorCode.MEMBER_REMOVED, details: `member ${from} was removed from the cluster` };
    }
    return undefined;
  }

  // ---- snapshot streams (receiving) ----

  private acceptSnapshot(call: SnapshotServerCall): void {
    if (this.closing !== undefined || this.handlers === undefined) {
      refuse(call, grpc.status.UNAVAILABLE, ErrorCode.UNAVAILABLE, 'peer transport is closed');
      return;
    }
    let incoming: IncomingSnapshot | undefined;
    let refused = false;
    const handshakeTimer = setTimeout(() => {
      if (incoming !== undefined || refused) return;
      refused = true;
      refuse(call, grpc.status.DEADLINE_EXCEEDED, ErrorCode.TIMEOUT, 'no snapshot hello');
    }, this.limits.handshakeTimeoutMs);
    handshakeTimer.unref();
    call.on('data', (frame: SnapshotFrameWire) => {
      if (refused) return;
      if (incoming !== undefined) {
        incoming.receive(snapshotFrameFromWire(frame));
        return;
      }
      clearTimeout(handshakeTimer);
      incoming = this.acceptSnapshotHello(call, frame);
      if (incoming === undefined) refused = true;
    });
    const onGone = (reason: string): void => {
      clearTimeout(handshakeTimer);
      incoming?.streamEnded(new StrataError(ErrorCode.UNAVAILABLE, `the snapshot stream ended: ${reason}`));
    };
    call.on('error', () => onGone('stream error'));
    call.on('end', () => onGone('the sender ended it'));
    call.on('cancelled', () => onGone('the sender cancelled it'));
  }

  private acceptSnapshotHello(call: SnapshotServerCall, frame: SnapshotFrameWire): IncomingSnapshot | undefined {
    const hello = frame.hello;
    if (this.closing !== undefined) {
      refuse(call, grpc.status.UNAVAILABLE, ErrorCode.UNAVAILABLE, 'peer transport is closed');
      return undefined;
    }
    if (hello === null || hello === undefined || frame.chunk !== null || frame.done) {
      refuse(call, grpc.status.INVALID_ARGUMENT, ErrorCode.INVALID_ARGUMENT, 'the first snapshot frame must be a hello');
      return undefined;
    }
    const refusal = this.helloRefusal('snapshot stream', hello);
    if (refusal !== undefined) {
      refuse(call, refusal.status, refusal.code, refusal.details);
      return undefined;
    }
    let checked: SnapshotHello;
    try {
      checked = decodeSnapshotHello(this.localId, hello.from, bytesView(hello.message), hello.byteLength);
    } catch (error) {
      if (!isStrataError(error)) throw error;
      this.logger.warn('refused a snapshot stream: malformed hello', { from: hello.from, error: error.message });
      refuse(call, grpc.status.INVALID_ARGUMENT, error.code, error.message);
      return undefined;
    }
    // Streams from members we do not know are served (a new member gets its first state this
    // way, possibly from a leader it has not heard of yet), but not learned: Stream does that.
    let answered = false;
    const accepted = this.snapshotReceiver.accept(checked, {
      ack: (ack) => {
        if (answered || call.cancelled || call.writableEnded) return;
        call.write({ verifiedBytes: ack.verifiedBytes, done: ack.done, error: null });
      },
      refuse: (error) => {
        if (answered || call.cancelled || call.writableEnded) return;
        answered = true;
        call.write({ verifiedBytes: 0, done: false, error: toCallError(error) });
        call.end();
      },
      end: () => {
        if (answered || call.cancelled || call.writableEnded) return;
        answered = true;
        call.end();
      },
      abandon: (error) => {
        if (answered || call.cancelled || call.writableEnded) return;
        answered = true;
        refuse(call, error.code === ErrorCode.MEMBER_REMOVED ? grpc.status.FAILED_PRECONDITION : grpc.status.UNAVAILABLE, error.code, error.message);
      },
    });
    if (accepted instanceof StrataError) {
      refuse(call, grpc.status.RESOURCE_EXHAUSTED, accepted.code, accepted.message);
      return undefined;
    }
    this.logger.info('receiving a snapshot', { from: checked.from, bytes: checked.byteLength, index: checked.message.snapshot.metadata.index });
    return accepted;
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

  /**
   * breakLink closes a link once. A learned peer is forgotten with its link; a peer set with
   * setPeer gets a dial scheduled (maybeDial's rules: the higher id waits for the fallback).
   */
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
    if (state.learned) {
      assert(link.direction === 'accepted', 'a learned peer has only accepted links');
      this.logger.info('forgot a learned peer: its stream ended', { peer: state.id });
      this.forgetPeer(state.id);
      return;
    }
    if (state.queue.clear() > 0) {
      this.unreachable.mark(state.id);
      this.scheduleFlush();
    }
    if (this.closing === undefined) this.scheduleDial(state, { rotateUrl: link.direction === 'dialed' && !link.established });
  }

  // scheduleDial sets the one dial timer of a peer: the backoff (doubling, with jitter), plus
  // the fallback delay when the peer has the lower id. Bounded by dialBackoffMsMax +
  // fallbackDialDelayMs; the timer dials only if the peer still has no stream by then.
  private scheduleDial(state: PeerState, options: { rotateUrl: boolean }): void {
    assert(!state.learned, 'schedule a dial to a learned peer');
    if (state.dialTimer !== undefined || this.closing !== undefined) return;
    if (options.rotateUrl && state.urls.length > 1) {
      state.urlIndex = (state.urlIndex + 1) % state.urls.length;
      this.closeClient(state);
    }
    const base = state.backoffMs;
    state.backoffMs = Math.min(this.limits.dialBackoffMsMax, base * 2);
    // Jitter of ±20% keeps members that lost a common peer from redialling in lockstep.
    const jitter = Math.floor((base * 2) / 5);
    const fallbackMs = state.id < this.localId ? this.limits.fallbackDialDelayMs : 0;
    const delayMs = fallbackMs + base - Math.floor(jitter / 2) + this.random.intBelow(jitter + 1);
    state.dialTimer = setTimeout(() => {
      state.dialTimer = undefined;
      if (this.peers.get(state.id) === state && this.mayDial(state)) this.dial(state);
    }, delayMs);
  }

  private notifyConnected(peer: NodeId): void {
    // The peer is up: open the channel for unary calls now, so that the first call on it
    // (held writes forwarded to a new leader right after a transfer, say) does not wait for
    // a TCP and HTTP/2 handshake; measured, a cold first call took over 10 ms under load.
    const state = this.peers.get(peer);
    if (state !== undefined && state.urls.length > 0) this.clientFor(state).getChannel().getConnectivityState(true);
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

// checkHelloUrl throws INVALID_ARGUMENT for a URL a hello may not carry.
function checkHelloUrl(url: string): void {
  if (url.length > HELLO_URL_LENGTH_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `peer URL longer than ${HELLO_URL_LENGTH_MAX} characters`, { details: { field: 'peerUrls' } });
  }
  parsePeerUrl(url);
}

// helloUrlsOf returns the URLs a hello names ([] from an older member), or undefined when
// they are too many or malformed.
function helloUrlsOf(hello: FrameWire): readonly string[] | undefined {
  const urls = hello.peerUrls;
  if (!Array.isArray(urls) || urls.length === 0) return NO_URLS;
  if (urls.length > HELLO_URLS_MAX) return undefined;
  try {
    for (const url of urls) checkHelloUrl(url);
  } catch (error) {
    if (isStrataError(error, ErrorCode.INVALID_ARGUMENT)) return undefined;
    throw error;
  }
  return [...urls];
}

// snapshotFrameFromWire reads a frame after the hello: a chunk, done, or something invalid.
function snapshotFrameFromWire(frame: SnapshotFrameWire): SnapshotSenderFrame {
  const chunk = frame.chunk;
  if (frame.hello !== null && frame.hello !== undefined) return { kind: 'invalid', what: 'a second hello' };
  if (chunk !== null && chunk !== undefined) {
    if (frame.done) return { kind: 'invalid', what: 'a chunk marked done' };
    return { kind: 'chunk', chunk: { offset: chunk.offset, data: bytesView(chunk.data), crc32c: chunk.crc32c } };
  }
  if (frame.done) return { kind: 'done' };
  return { kind: 'invalid', what: 'an empty frame' };
}

function refuse<Request, Response>(call: grpc.ServerDuplexStream<Request, Response>, status: grpc.status, code: ErrorCode, details: string): void {
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

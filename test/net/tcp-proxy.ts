// tcp-proxy.ts — a userspace TCP proxy that delays, stalls and cuts a link, for tests.
//
// The kernel our tests run on has no netem, so latency and partitions are made here: a test
// points a member's peer URL at the proxy, and the proxy forwards each accepted connection to
// the target. It needs only node: modules.
//
// What it guarantees, per connection and per direction (up: client → target, down: target →
// client):
// - Bytes arrive unchanged and in order. A chunk read at time t is released no earlier than
//   t + delayMsOneWay + jitter (the delay as set at t; jitter is a seeded draw in
//   [0, jitterMs)), and never before an earlier chunk: release = max(previous release, that).
// - Memory is bounded. A connection queues at most queuedBytesMax bytes (and
//   QUEUED_CHUNKS_MAX chunks) plus the one read chunk that crossed the bound; at the bound it
//   stops reading both sockets, so TCP pushes back on the senders. Bytes are never dropped
//   while the connection lives.
// - Backpressure passes through: while a sink's write buffer is full (write returned false),
//   nothing more is released to it and its source is not read, until 'drain'.
// - Half-close passes through: when a side ends, the other side is ended after every byte
//   queued before the end has been written.
// - A socket that errors or is reset takes its pair down (the other socket is reset), except
//   during a blackhole, which carries nothing, not even a reset, until restore(). No 'error'
//   event goes unhandled.
// - close() settles once the listener is closed and every socket has emitted 'close'; after
//   it no timer or socket of the proxy is left.
//
// A connection is in one of three states:
// - held:   accepted during a blackhole; the target has not been dialled. Bytes from the
//           client queue (bounded) until restore() dials, or restore({ drop: true }) resets.
// - open:   the target is dialled (connecting or connected); bytes flow unless the link is
//           blackholed, in which case they queue.
// - closed: reset, or both sides finished; its queues are empty and its timers cleared. It
//           leaves the proxy's set when both of its sockets have emitted 'close'.
// Invariant: the proxy's queuedBytes is the sum of its connections' queued bytes, and a closed
// connection queues nothing.
//
// Link modes: pass (bytes flow after their delay), blackhole (a silent partition: sockets stay
// open, nothing flows, new connections are accepted and held), cut (a cut cable: every
// connection is reset and new ones are reset on accept). restore() returns to pass.
//
// Links: with a `classify` option, each accepted connection is put on a named link by its
// remote address (the chaos harness's peer fabric names the member that dialled), or refused
// when classify returns null. A link has its own mode and its own delay and jitter per
// direction. They combine with the proxy-wide ones: a connection's mode is the more severe of
// the two (cut > blackhole > pass), and its delay and jitter are the sums. Without classify,
// every connection is on no link and only the proxy-wide settings apply, as before.
// A connection is blackholed (holds its bytes) exactly while its combined mode is blackhole.
//
// Target: setTarget() changes where connections accepted from then on are dialled (a member
// restarted with a new address); connections already dialled keep their target. A null
// target refuses new connections until one is set.
//
// Replay: jitter comes from a seeded PRNG, one stream per connection and direction (by accept
// order), so the k-th chunk of a direction always gets the k-th draw. How the kernel splits
// bytes into chunks is not under our control, so timings replay only as far as that does.
import assert from 'node:assert/strict';
import net from 'node:net';

/** QUEUED_BYTES_MAX is the default bound on the bytes one connection holds (both directions). */
export const QUEUED_BYTES_MAX = 64 * 1024 * 1024;

/**
 * QUEUED_CHUNKS_MAX bounds the chunks one connection holds, so that many tiny chunks cannot
 * grow the queue's bookkeeping far past its bytes.
 */
export const QUEUED_CHUNKS_MAX = 64 * 1024;

/** CONNECTIONS_MAX bounds the connections a proxy forwards at once; more are reset on accept. */
export const CONNECTIONS_MAX = 1024;

/** DELAY_MS_MAX bounds delayMsOneWay + jitterMs: a link slower than an hour is a bug in the test. */
export const DELAY_MS_MAX = 60 * 60 * 1000;

/** LINKS_MAX bounds the distinct link names a proxy keeps; connections of more links are refused. */
export const LINKS_MAX = 1024;

/** TCP_PROXY_SEED_DEFAULT seeds the jitter when no seed is given, so runs replay by default. */
export const TCP_PROXY_SEED_DEFAULT = 0x5eed;

// A released prefix of a queue is compacted once it is this long and at least half the array.
const QUEUE_COMPACT_CHUNKS_MIN = 1024;

/** TcpProxyOptions configures startTcpProxy. */
export interface TcpProxyOptions {
  /** listenHost is the address to listen on; 127.0.0.1 by default. */
  listenHost?: string;
  /** listenPort is the port to listen on; 0 (any free port) by default. */
  listenPort?: number;
  /**
   * targetHost is where accepted connections are forwarded; null means no target yet:
   * connections are refused until setTarget() names one.
   */
  targetHost: string | null;
  /** targetPort is the port accepted connections are forwarded to. */
  targetPort: number;
  /** delayMsOneWay delays every chunk, in each direction separately; 0 by default. */
  delayMsOneWay?: number;
  /** jitterMs adds a seeded draw in [0, jitterMs) to each chunk's delay; 0 by default. */
  jitterMs?: number;
  /** seed (an integer in [0, 2^32)) makes the jitter replay; TCP_PROXY_SEED_DEFAULT by default. */
  seed?: number;
  /** queuedBytesMax bounds the bytes one connection holds; QUEUED_BYTES_MAX by default. */
  queuedBytesMax?: number;
  /**
   * classify names the link of an accepted connection from its remote address (as the
   * socket reports it, e.g. '172.18.0.3'), or returns null to refuse the connection (counted
   * in connectionsUnclassified). Without it, no connection is on a link.
   */
  classify?: (remoteAddress: string) => string | null;
}

/** TcpProxyLinkMode is what a link (or the whole proxy) does with bytes; see the file header. */
export type TcpProxyLinkMode = 'pass' | 'blackhole' | 'cut';

/**
 * TcpProxyLinkDelay is a link's own delay and jitter per direction, added to the proxy-wide
 * ones. Up is client → target, down is target → client. Jitter is 0 when omitted.
 */
export interface TcpProxyLinkDelay {
  upDelayMs: number;
  upJitterMs?: number;
  downDelayMs: number;
  downJitterMs?: number;
}

/** TcpProxyStats is a snapshot of a proxy's counters. */
export interface TcpProxyStats {
  /** connectionsOpen counts connections that are held or open (not yet reset or finished). */
  connectionsOpen: number;
  /** connectionsTotal counts connections accepted for forwarding (refused ones excluded). */
  connectionsTotal: number;
  /**
   * connectionsRefused counts connections reset on accept (cut, closing, no target,
   * unclassified, or CONNECTIONS_MAX).
   */
  connectionsRefused: number;
  /** connectionsUnclassified counts the refused connections whose source classify rejected. */
  connectionsUnclassified: number;
  /** bytesUp counts bytes written to targets (client → target). */
  bytesUp: number;
  /** bytesDown counts bytes written to clients (target → client). */
  bytesDown: number;
  /** queuedBytes counts bytes read and not yet written, over all connections. */
  queuedBytes: number;
}

/** TcpProxyLinkStats is a snapshot of one link's settings and counters. */
export interface TcpProxyLinkStats {
  /** mode is the link's own mode (the proxy-wide mode is not folded in). */
  mode: TcpProxyLinkMode;
  upDelayMs: number;
  upJitterMs: number;
  downDelayMs: number;
  downJitterMs: number;
  /** connectionsOpen counts the link's connections that are held or open. */
  connectionsOpen: number;
  /** connectionsTotal counts the link's connections accepted for forwarding. */
  connectionsTotal: number;
  /** connectionsRefused counts the link's connections reset on accept. */
  connectionsRefused: number;
  /** bytesUp counts the link's bytes written to targets. */
  bytesUp: number;
  /** bytesDown counts the link's bytes written to clients. */
  bytesDown: number;
  /** queuedBytes counts the link's bytes read and not yet written. */
  queuedBytes: number;
}

/** TcpProxyRestoreOptions says what restore() does with what a blackhole held. */
export interface TcpProxyRestoreOptions {
  /**
   * drop resets every connection that lived through the blackhole instead of releasing its
   * bytes: the partition lasted long enough for TCP to give up.
   */
  drop?: boolean;
}

/**
 * TcpProxy is a running proxy; see startTcpProxy. After close(), the fault methods (cut,
 * blackhole, restore, their per-link forms, resetConnections) do nothing, so a fault schedule
 * may race the teardown.
 */
export interface TcpProxy {
  /** port is the port the proxy listens on. */
  readonly port: number;
  /** address is `host:port` of the listener, for a peer URL. */
  readonly address: string;
  /** seed is the jitter seed in use; print it when a run fails. */
  readonly seed: number;
  /**
   * setDelay sets the one-way delay and jitter (0 when omitted) for bytes read from now on,
   * in each direction separately. Bytes already queued keep their release time.
   */
  setDelay(oneWayMs: number, jitterMs?: number): void;
  /** cut resets every connection and resets new ones on accept, until restore() or blackhole(). */
  cut(): void;
  /**
   * blackhole stops forwarding both ways without closing anything, until restore(): bytes are
   * held (within the queue bound, then the sources are paused), ends and resets are not passed
   * on, and new connections are accepted but their targets are not dialled.
   */
  blackhole(): void;
  /**
   * restore ends a cut or a blackhole. After a blackhole it releases what was held, in order
   * (dialling the targets of held connections), or with { drop: true } resets those
   * connections instead.
   */
  restore(options?: TcpProxyRestoreOptions): void;
  /**
   * setTarget changes where connections are dialled from now on (including held connections
   * released later); connections already dialled keep their target. null refuses new
   * connections until a target is set. The port stays unless given.
   */
  setTarget(host: string | null, port?: number): void;
  /** setLinkDelay sets the link's own delay and jitter per direction, for bytes read from now on. */
  setLinkDelay(link: string, delay: TcpProxyLinkDelay): void;
  /** cutLink is cut() for one link's connections; the proxy-wide mode is unchanged. */
  cutLink(link: string): void;
  /** blackholeLink is blackhole() for one link's connections. */
  blackholeLink(link: string): void;
  /**
   * restoreLink ends the link's own cut or blackhole. Its held connections are released once
   * the proxy-wide mode lets them pass too; with { drop: true } they are reset instead.
   */
  restoreLink(link: string, options?: TcpProxyRestoreOptions): void;
  /**
   * resetConnections resets every connection (or every connection of `link`) once, as a
   * restarted peer would; modes and delays are unchanged and new connections are accepted.
   */
  resetConnections(link?: string): void;
  /** stats returns the proxy's counters. */
  stats(): TcpProxyStats;
  /** linkStats returns one link's settings and counters (zeros for a link never seen). */
  linkStats(link: string): TcpProxyLinkStats;
  /** close stops listening and resets every connection; idempotent; settles when all is closed. */
  close(): Promise<void>;
}

/**
 * startTcpProxy listens on listenHost:listenPort and forwards each accepted connection to
 * targetHost:targetPort with the configured delay. It rejects if the listener cannot bind.
 */
export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  assertTargetHost(options.targetHost);
  assert.ok(isPort(options.targetPort) && options.targetPort > 0, 'targetPort must be a port in [1, 65535]');
  assert.ok(options.classify === undefined || typeof options.classify === 'function', 'classify must be a function');
  const listenPort = options.listenPort ?? 0;
  assert.ok(isPort(listenPort), 'listenPort must be a port in [0, 65535]');
  const delayMsOneWay = options.delayMsOneWay ?? 0;
  const jitterMs = options.jitterMs ?? 0;
  assertDelay(delayMsOneWay, jitterMs);
  const seed = options.seed ?? TCP_PROXY_SEED_DEFAULT;
  assert.ok(Number.isInteger(seed) && seed >= 0 && seed <= 0xffff_ffff, 'seed must be an integer in [0, 2^32)');
  const queuedBytesMax = options.queuedBytesMax ?? QUEUED_BYTES_MAX;
  assert.ok(Number.isSafeInteger(queuedBytesMax) && queuedBytesMax > 0, 'queuedBytesMax must be a positive integer');

  const server = net.createServer({ allowHalfOpen: true, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, options.listenHost ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  assert.ok(bound !== null && typeof bound === 'object', 'a TCP listener has an address');
  return new RunningTcpProxy({
    server,
    port: bound.port,
    host: bound.address,
    targetHost: options.targetHost,
    targetPort: options.targetPort,
    delayMsOneWay,
    jitterMs,
    seed,
    queuedBytesMax,
    classify: options.classify ?? null,
  });
}

interface ProxyConfig {
  server: net.Server;
  port: number;
  host: string;
  targetHost: string | null;
  targetPort: number;
  delayMsOneWay: number;
  jitterMs: number;
  seed: number;
  queuedBytesMax: number;
  classify: ((remoteAddress: string) => string | null) | null;
}

// LinkState is one link's settings and counters; a connection on the link points to it.
class LinkState {
  readonly name: string;
  mode: TcpProxyLinkMode = 'pass';
  upDelayMs = 0;
  upJitterMs = 0;
  downDelayMs = 0;
  downJitterMs = 0;
  connectionsTotal = 0;
  connectionsRefused = 0;
  bytesUp = 0;
  bytesDown = 0;

  constructor(name: string) {
    this.name = name;
  }
}

const MODE_SEVERITY: Readonly<Record<TcpProxyLinkMode, number>> = { pass: 0, blackhole: 1, cut: 2 };

// severer returns the more severe of two modes: a connection is as blocked as its worst level.
function severer(a: TcpProxyLinkMode, b: TcpProxyLinkMode): TcpProxyLinkMode {
  return MODE_SEVERITY[a] >= MODE_SEVERITY[b] ? a : b;
}

class RunningTcpProxy implements TcpProxy {
  readonly port: number;
  readonly address: string;
  readonly seed: number;
  readonly queuedBytesMax: number;
  targetHost: string | null;
  targetPort: number;
  // The proxy-wide mode; a connection's own mode folds in its link's (modeOf).
  mode: TcpProxyLinkMode = 'pass';
  delayMsOneWay: number;
  jitterMs: number;
  // Invariant: queuedBytes === the sum of queuedBytes over `connections`.
  queuedBytes = 0;
  bytesUp = 0;
  bytesDown = 0;
  private connectionsTotal = 0;
  private connectionsRefused = 0;
  private connectionsUnclassified = 0;
  // Every connection whose sockets have not both emitted 'close'; at most CONNECTIONS_MAX.
  private readonly connections = new Set<Connection>();
  // Every link named by classify or by a link method; at most LINKS_MAX.
  private readonly links = new Map<string, LinkState>();
  private readonly classify: ((remoteAddress: string) => string | null) | null;
  private readonly server: net.Server;
  private closing: Promise<void> | null = null;

  constructor(config: ProxyConfig) {
    this.server = config.server;
    this.port = config.port;
    this.address = config.host.includes(':') ? `[${config.host}]:${config.port}` : `${config.host}:${config.port}`;
    this.seed = config.seed;
    this.targetHost = config.targetHost;
    this.targetPort = config.targetPort;
    this.queuedBytesMax = config.queuedBytesMax;
    this.delayMsOneWay = config.delayMsOneWay;
    this.jitterMs = config.jitterMs;
    this.classify = config.classify;
    // Accept errors (EMFILE and the like) are operating errors: the listener goes on.
    this.server.on('error', () => {});
    this.server.on('connection', (client) => this.accept(client));
  }

  setDelay(oneWayMs: number, jitterMs = 0): void {
    assertDelay(oneWayMs, jitterMs);
    this.delayMsOneWay = oneWayMs;
    this.jitterMs = jitterMs;
  }

  setTarget(host: string | null, port: number = this.targetPort): void {
    assertTargetHost(host);
    assert.ok(isPort(port) && port > 0, 'port must be a port in [1, 65535]');
    this.targetHost = host;
    this.targetPort = port;
  }

  cut(): void {
    if (this.closing !== null) return;
    this.mode = 'cut';
    for (const connection of [...this.connections]) connection.abort();
  }

  blackhole(): void {
    if (this.closing !== null) return;
    this.mode = 'blackhole';
    for (const connection of [...this.connections]) connection.hold();
  }

  restore(options: TcpProxyRestoreOptions = {}): void {
    if (this.closing !== null) return;
    const previous = this.mode;
    this.mode = 'pass';
    if (previous !== 'blackhole') return;
    // Every connection was held by the proxy-wide blackhole; some may stay held by their link's.
    for (const connection of [...this.connections]) this.liftHold(connection, options);
  }

  setLinkDelay(link: string, delay: TcpProxyLinkDelay): void {
    const upJitterMs = delay.upJitterMs ?? 0;
    const downJitterMs = delay.downJitterMs ?? 0;
    assertDelay(delay.upDelayMs, upJitterMs);
    assertDelay(delay.downDelayMs, downJitterMs);
    const state = this.linkOf(assertLinkName(link));
    state.upDelayMs = delay.upDelayMs;
    state.upJitterMs = upJitterMs;
    state.downDelayMs = delay.downDelayMs;
    state.downJitterMs = downJitterMs;
  }

  cutLink(link: string): void {
    const state = this.linkOf(assertLinkName(link));
    if (this.closing !== null) return;
    state.mode = 'cut';
    for (const connection of [...this.connections]) if (connection.link === state) connection.abort();
  }

  blackholeLink(link: string): void {
    const state = this.linkOf(assertLinkName(link));
    if (this.closing !== null) return;
    state.mode = 'blackhole';
    for (const connection of [...this.connections]) if (connection.link === state) connection.hold();
  }

  restoreLink(link: string, options: TcpProxyRestoreOptions = {}): void {
    const state = this.linkOf(assertLinkName(link));
    if (this.closing !== null) return;
    const previous = state.mode;
    state.mode = 'pass';
    if (previous !== 'blackhole') return;
    for (const connection of [...this.connections]) if (connection.link === state) this.liftHold(connection, options);
  }

  resetConnections(link?: string): void {
    const state = link === undefined ? undefined : this.linkOf(assertLinkName(link));
    if (this.closing !== null) return;
    for (const connection of [...this.connections]) {
      if (state === undefined || connection.link === state) connection.abort();
    }
  }

  /** modeOf is the mode of a connection on `link`: the more severe of the proxy's and the link's. */
  modeOf(link: LinkState | null): TcpProxyLinkMode {
    return link === null ? this.mode : severer(this.mode, link.mode);
  }

  stats(): TcpProxyStats {
    let connectionsOpen = 0;
    for (const connection of this.connections) if (connection.state !== 'closed') connectionsOpen += 1;
    assert.ok(this.queuedBytes >= 0, 'queuedBytes is never negative');
    return {
      connectionsOpen,
      connectionsTotal: this.connectionsTotal,
      connectionsRefused: this.connectionsRefused,
      connectionsUnclassified: this.connectionsUnclassified,
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      queuedBytes: this.queuedBytes,
    };
  }

  linkStats(link: string): TcpProxyLinkStats {
    const state = this.links.get(assertLinkName(link)) ?? new LinkState(link);
    let connectionsOpen = 0;
    let queuedBytes = 0;
    for (const connection of this.connections) {
      if (connection.link !== state || connection.state === 'closed') continue;
      connectionsOpen += 1;
      queuedBytes += connection.queuedBytes;
    }
    return {
      mode: state.mode,
      upDelayMs: state.upDelayMs,
      upJitterMs: state.upJitterMs,
      downDelayMs: state.downDelayMs,
      downJitterMs: state.downJitterMs,
      connectionsOpen,
      connectionsTotal: state.connectionsTotal,
      connectionsRefused: state.connectionsRefused,
      bytesUp: state.bytesUp,
      bytesDown: state.bytesDown,
      queuedBytes,
    };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** forget is called by a connection once both of its sockets have emitted 'close'. */
  forget(connection: Connection): void {
    assert.ok(connection.state === 'closed', 'only a closed connection is forgotten');
    assert.ok(this.connections.delete(connection), 'a connection is forgotten once');
  }

  // liftHold ends one level's blackhole for a connection: with drop it resets the connection
  // if it was held; otherwise it releases it if no level holds it any more.
  private liftHold(connection: Connection, options: TcpProxyRestoreOptions): void {
    if (!connection.blackholed) return;
    if (options.drop === true) connection.abort();
    else if (this.modeOf(connection.link) === 'pass') connection.release();
  }

  // linkOf returns the state of `link`, made on first use. Past LINKS_MAX it throws: naming
  // that many links is a bug in the caller (accept() checks the bound before calling it).
  private linkOf(link: string): LinkState {
    let state = this.links.get(link);
    if (state === undefined) {
      assert.ok(this.links.size < LINKS_MAX, `a proxy keeps at most LINKS_MAX (${LINKS_MAX}) links`);
      state = new LinkState(link);
      this.links.set(link, state);
    }
    return state;
  }

  private async shutdown(): Promise<void> {
    const listenerClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const connections = [...this.connections];
    for (const connection of connections) connection.abort();
    await listenerClosed;
    await Promise.all(connections.map((connection) => connection.closed));
    assert.ok(this.connections.size === 0, 'no connection outlives close');
    assert.ok(this.queuedBytes === 0, 'nothing stays queued after close');
  }

  private accept(client: net.Socket): void {
    client.on('error', () => {});
    const link = this.classifyClient(client);
    if (link === undefined) {
      this.connectionsUnclassified += 1;
      this.refuse(client, null);
      return;
    }
    if (this.closing !== null || this.targetHost === null || this.modeOf(link) === 'cut'
      || this.connections.size >= CONNECTIONS_MAX) {
      this.refuse(client, link);
      return;
    }
    const ordinal = this.connectionsTotal;
    this.connectionsTotal += 1;
    if (link !== null) link.connectionsTotal += 1;
    const connection = new Connection(this, client, ordinal, link);
    this.connections.add(connection);
    connection.start();
  }

  // classifyClient returns the client's link, null when there is no classifier, or undefined
  // when the client must be refused: classify rejected its address, or threw, or named a link
  // past LINKS_MAX, or the socket is already gone (it has no address).
  private classifyClient(client: net.Socket): LinkState | null | undefined {
    if (this.classify === null) return null;
    const remoteAddress = client.remoteAddress;
    if (remoteAddress === undefined) return undefined;
    let name: string | null;
    try {
      name = this.classify(remoteAddress);
    } catch {
      return undefined;
    }
    if (name === null || typeof name !== 'string' || name.length === 0) return undefined;
    if (!this.links.has(name) && this.links.size >= LINKS_MAX) return undefined;
    return this.linkOf(name);
  }

  private refuse(client: net.Socket, link: LinkState | null): void {
    this.connectionsRefused += 1;
    if (link !== null) link.connectionsRefused += 1;
    resetSocket(client);
  }
}

interface QueuedChunk {
  readonly bytes: Buffer;
  readonly releaseAtMs: number;
}

// Direction is one way of a connection: a FIFO of chunks read from `source`, each written to
// `sink` at its release time.
class Direction {
  readonly up: boolean;
  readonly source: net.Socket;
  readonly sink: net.Socket;
  readonly random: () => number;
  // chunks[head..] are queued; chunks[..head] are released and awaiting compaction.
  private chunks: QueuedChunk[] = [];
  private head = 0;
  // Invariant: queuedBytes === the sum of chunks[head..].bytes.length.
  queuedBytes = 0;
  // Invariant: lastReleaseAtMs >= the release time of every chunk queued so far (order).
  lastReleaseAtMs = 0;
  // The one timer of this direction: it fires when the head of the queue is due.
  timer: NodeJS.Timeout | null = null;
  sinkBlocked = false;
  sourcePaused = false;
  sourceEnded = false;
  sinkEnded = false;

  constructor(options: { up: boolean; source: net.Socket; sink: net.Socket; seed: number }) {
    this.up = options.up;
    this.source = options.source;
    this.sink = options.sink;
    this.random = mulberry32(options.seed);
  }

  get length(): number {
    return this.chunks.length - this.head;
  }

  push(chunk: QueuedChunk): void {
    assert.ok(chunk.releaseAtMs >= this.lastReleaseAtMs, 'a chunk is never released before an earlier one');
    this.lastReleaseAtMs = chunk.releaseAtMs;
    this.chunks.push(chunk);
    this.queuedBytes += chunk.bytes.length;
  }

  peek(): QueuedChunk | undefined {
    return this.chunks[this.head];
  }

  shift(): QueuedChunk {
    const chunk = this.chunks[this.head];
    assert.ok(chunk !== undefined, 'shift from a non-empty queue');
    this.head += 1;
    this.queuedBytes -= chunk.bytes.length;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= QUEUE_COMPACT_CHUNKS_MIN && this.head * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
    return chunk;
  }

  /** clear drops every queued chunk and returns how many bytes that was. */
  clear(): number {
    const dropped = this.queuedBytes;
    this.chunks = [];
    this.head = 0;
    this.queuedBytes = 0;
    return dropped;
  }

  clearTimer(): void {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
  }
}

type ConnectionState = 'held' | 'open' | 'closed';

class Connection {
  state: ConnectionState = 'held';
  readonly closed: Promise<void>;
  // The link the connection was classified on, or null (no classifier).
  readonly link: LinkState | null;
  // Invariant: blackholed iff the connection is not closed and its mode (modeOf) is blackhole,
  // between the proxy's public calls. While blackholed, nothing is released or dialled.
  blackholed = false;
  private readonly proxy: RunningTcpProxy;
  private readonly client: net.Socket;
  private readonly target: net.Socket;
  private readonly upward: Direction;
  private readonly downward: Direction;
  // Invariant: queuedBytes === upward.queuedBytes + downward.queuedBytes.
  queuedBytes = 0;
  private socketsClosed = 0;
  // A socket failed during a blackhole; its partner is reset on restore().
  private failedWhileBlackholed = false;
  private resolveClosed: () => void = () => {};

  constructor(proxy: RunningTcpProxy, client: net.Socket, ordinal: number, link: LinkState | null) {
    this.proxy = proxy;
    this.client = client;
    this.link = link;
    this.target = new net.Socket({ allowHalfOpen: true });
    this.target.on('error', () => {});
    this.closed = new Promise<void>((resolve) => {
      this.resolveClosed = resolve;
    });
    const directionSeed = mixSeed(proxy.seed, ordinal);
    this.upward = new Direction({ up: true, source: client, sink: this.target, seed: directionSeed });
    this.downward = new Direction({ up: false, source: this.target, sink: client, seed: mixSeed(directionSeed, 1) });
  }

  /** start wires both sockets and dials the target unless the link is blackholed. */
  start(): void {
    const mode = this.proxy.modeOf(this.link);
    assert.ok(mode !== 'cut', 'a cut link refuses on accept');
    this.client.setNoDelay(true);
    this.wire(this.client, this.upward, this.downward);
    this.wire(this.target, this.downward, this.upward);
    if (mode === 'pass') this.dial();
    else this.blackholed = true;
  }

  /** hold stops releasing bytes: the link is now blackholed. */
  hold(): void {
    if (this.state === 'closed') return;
    this.blackholed = true;
    this.upward.clearTimer();
    this.downward.clearTimer();
  }

  /** release ends a blackhole for this connection: dial if held, then flush what is due. */
  release(): void {
    if (this.state === 'closed') return;
    assert.ok(this.proxy.modeOf(this.link) === 'pass', 'a connection is released only when no level holds it');
    this.blackholed = false;
    if (this.failedWhileBlackholed) {
      this.abort();
      return;
    }
    if (this.state === 'held') this.dial();
    this.pump(this.upward);
    this.pump(this.downward);
  }

  /** abort resets both sockets and drops what is queued; the connection is closed after it. */
  abort(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.blackholed = false;
    this.upward.clearTimer();
    this.downward.clearTimer();
    const dropped = this.upward.clear() + this.downward.clear();
    assert.ok(dropped === this.queuedBytes, 'the directions hold what the connection counts');
    this.queuedBytes = 0;
    this.proxy.queuedBytes -= dropped;
    resetSocket(this.client);
    resetSocket(this.target);
  }

  private dial(): void {
    assert.ok(this.state === 'held', 'a target is dialled once');
    const host = this.proxy.targetHost;
    if (host === null) {
      // The target was withdrawn (setTarget(null)) while the connection was held.
      this.abort();
      return;
    }
    this.state = 'open';
    this.target.setNoDelay(true);
    this.target.connect({ host, port: this.proxy.targetPort });
  }

  private wire(socket: net.Socket, outgoing: Direction, incoming: Direction): void {
    assert.ok(outgoing.source === socket, 'socket feeds its outgoing direction');
    assert.ok(incoming.sink === socket, 'socket drains its incoming direction');
    socket.on('data', (bytes: Buffer) => this.receive(outgoing, bytes));
    socket.on('end', () => {
      outgoing.sourceEnded = true;
      this.pump(outgoing);
    });
    socket.on('drain', () => {
      incoming.sinkBlocked = false;
      this.pump(incoming);
    });
    socket.on('close', (hadError: boolean) => this.socketClosed(socket, hadError));
  }

  private receive(direction: Direction, bytes: Buffer): void {
    if (this.state === 'closed') return;
    const nowMs = performance.now();
    const link = this.link;
    const delayMs = this.proxy.delayMsOneWay + (link === null ? 0 : direction.up ? link.upDelayMs : link.downDelayMs);
    const jitterMsMax = this.proxy.jitterMs + (link === null ? 0 : direction.up ? link.upJitterMs : link.downJitterMs);
    // Draw for every chunk, even at zero jitter, so the k-th chunk always gets the k-th draw.
    const jitterMs = jitterMsMax * direction.random();
    const releaseAtMs = Math.max(direction.lastReleaseAtMs, nowMs + delayMs + jitterMs);
    direction.push({ bytes, releaseAtMs });
    this.queuedBytes += bytes.length;
    this.proxy.queuedBytes += bytes.length;
    this.pump(direction);
  }

  // pump writes every due chunk of `direction` that the sink accepts, arms the timer for the
  // next one, forwards an end once the queue is empty, and then sets both sources' flow.
  private pump(direction: Direction): void {
    if (this.state === 'open' && !this.blackholed && !direction.sink.destroyed) {
      const nowMs = performance.now();
      const chunksQueued = direction.length;
      for (let index = 0; index < chunksQueued && !direction.sinkBlocked; index += 1) {
        const head = direction.peek();
        assert.ok(head !== undefined, 'the queue holds chunksQueued chunks');
        if (head.releaseAtMs > nowMs) {
          this.armTimer(direction, head.releaseAtMs - nowMs);
          break;
        }
        direction.shift();
        this.queuedBytes -= head.bytes.length;
        this.proxy.queuedBytes -= head.bytes.length;
        if (direction.up) this.proxy.bytesUp += head.bytes.length;
        else this.proxy.bytesDown += head.bytes.length;
        if (this.link !== null && direction.up) this.link.bytesUp += head.bytes.length;
        else if (this.link !== null) this.link.bytesDown += head.bytes.length;
        if (!direction.sink.write(head.bytes)) direction.sinkBlocked = true;
      }
      if (direction.length === 0 && direction.sourceEnded && !direction.sinkEnded) {
        direction.sinkEnded = true;
        direction.sink.end();
      }
    }
    this.setFlow();
  }

  private armTimer(direction: Direction, waitMs: number): void {
    assert.ok(waitMs > 0, 'a timer is armed only for a chunk not yet due');
    // A pending timer is for this head or an earlier one, so it fires no later than needed.
    if (direction.timer !== null) return;
    // Timers may fire a little early; pump re-arms until the head is really due. The timer is
    // not unref'd: the connection's sockets keep the process alive anyway, and a ref'd timer
    // shows up in process.getActiveResourcesInfo() if one ever outlives its connection.
    direction.timer = setTimeout(() => {
      direction.timer = null;
      this.pump(direction);
    }, Math.max(1, Math.ceil(waitMs)));
  }

  // setFlow pauses a source while its sink is blocked or the connection's queue is full, and
  // resumes it otherwise. Both directions share the bound, so both pause when it is reached.
  private setFlow(): void {
    if (this.state === 'closed') return;
    const full = this.queuedBytes >= this.proxy.queuedBytesMax
      || this.upward.length + this.downward.length >= QUEUED_CHUNKS_MAX;
    for (const direction of [this.upward, this.downward]) {
      const pause = full || direction.sinkBlocked;
      if (pause && !direction.sourcePaused) {
        direction.sourcePaused = true;
        direction.source.pause();
      } else if (!pause && direction.sourcePaused) {
        direction.sourcePaused = false;
        direction.source.resume();
      }
    }
  }

  private socketClosed(socket: net.Socket, hadError: boolean): void {
    this.socketsClosed += 1;
    assert.ok(this.socketsClosed <= 2, 'each socket closes once');
    if (this.state !== 'closed') {
      // Closed after both its ends finished: a graceful close, nothing was lost on it.
      const graceful = !hadError && socket.readableEnded && socket.writableFinished;
      if (!graceful) this.socketFailed();
    }
    if (this.socketsClosed < 2) return;
    if (this.state !== 'closed') {
      // Both ended gracefully (so both queues were flushed), or one failed in a blackhole and
      // now the other is gone too: what is still queued has nowhere to go.
      assert.ok(this.failedWhileBlackholed || this.queuedBytes === 0, 'graceful ends flush both queues');
      this.abort();
    }
    this.proxy.forget(this);
    this.resolveClosed();
  }

  private socketFailed(): void {
    if (this.blackholed && this.state === 'open') {
      // A silent partition carries no reset: the partner learns of it on restore().
      this.failedWhileBlackholed = true;
      return;
    }
    this.abort();
  }
}

// resetSocket destroys a socket abruptly: a connected one with a TCP reset (so the peer sees
// ECONNRESET rather than a clean end), a pending one by closing it.
function resetSocket(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.pending) socket.destroy();
  else socket.resetAndDestroy();
}

function assertTargetHost(host: string | null): void {
  assert.ok(host === null || (typeof host === 'string' && host.length > 0), 'targetHost must be a host name or null');
}

function assertLinkName(link: string): string {
  assert.ok(typeof link === 'string' && link.length > 0, 'a link name must be a non-empty string');
  return link;
}

function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 65535;
}

function assertDelay(delayMsOneWay: number, jitterMs: number): void {
  assert.ok(Number.isFinite(delayMsOneWay) && delayMsOneWay >= 0, 'delayMsOneWay must be a finite number >= 0');
  assert.ok(Number.isFinite(jitterMs) && jitterMs >= 0, 'jitterMs must be a finite number >= 0');
  assert.ok(delayMsOneWay + jitterMs <= DELAY_MS_MAX, 'delayMsOneWay + jitterMs must be at most DELAY_MS_MAX');
}

// mixSeed derives an independent 32-bit seed for stream `index` of `seed` (a splitmix32 step).
function mixSeed(seed: number, index: number): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b1) + Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

// mulberry32 is a small deterministic PRNG; it returns draws in [0, 1).
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

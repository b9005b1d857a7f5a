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
  /** targetHost is where accepted connections are forwarded. */
  targetHost: string;
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
}

/** TcpProxyStats is a snapshot of a proxy's counters. */
export interface TcpProxyStats {
  /** connectionsOpen counts connections that are held or open (not yet reset or finished). */
  connectionsOpen: number;
  /** connectionsTotal counts connections accepted for forwarding (refused ones excluded). */
  connectionsTotal: number;
  /** connectionsRefused counts connections reset on accept (cut, closing, or CONNECTIONS_MAX). */
  connectionsRefused: number;
  /** bytesUp counts bytes written to targets (client → target). */
  bytesUp: number;
  /** bytesDown counts bytes written to clients (target → client). */
  bytesDown: number;
  /** queuedBytes counts bytes read and not yet written, over all connections. */
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
 * TcpProxy is a running proxy; see startTcpProxy. After close(), cut(), blackhole() and
 * restore() do nothing, so a fault schedule may race the teardown.
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
  /** stats returns the proxy's counters. */
  stats(): TcpProxyStats;
  /** close stops listening and resets every connection; idempotent; settles when all is closed. */
  close(): Promise<void>;
}

/**
 * startTcpProxy listens on listenHost:listenPort and forwards each accepted connection to
 * targetHost:targetPort with the configured delay. It rejects if the listener cannot bind.
 */
export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  assert.ok(typeof options.targetHost === 'string' && options.targetHost.length > 0, 'targetHost must be a host name');
  assert.ok(isPort(options.targetPort) && options.targetPort > 0, 'targetPort must be a port in [1, 65535]');
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
  });
}

type LinkMode = 'pass' | 'blackhole' | 'cut';

interface ProxyConfig {
  server: net.Server;
  port: number;
  host: string;
  targetHost: string;
  targetPort: number;
  delayMsOneWay: number;
  jitterMs: number;
  seed: number;
  queuedBytesMax: number;
}

class RunningTcpProxy implements TcpProxy {
  readonly port: number;
  readonly address: string;
  readonly seed: number;
  readonly targetHost: string;
  readonly targetPort: number;
  readonly queuedBytesMax: number;
  mode: LinkMode = 'pass';
  delayMsOneWay: number;
  jitterMs: number;
  // Invariant: queuedBytes === the sum of queuedBytes over `connections`.
  queuedBytes = 0;
  bytesUp = 0;
  bytesDown = 0;
  private connectionsTotal = 0;
  private connectionsRefused = 0;
  // Every connection whose sockets have not both emitted 'close'; at most CONNECTIONS_MAX.
  private readonly connections = new Set<Connection>();
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
    // Accept errors (EMFILE and the like) are operating errors: the listener goes on.
    this.server.on('error', () => {});
    this.server.on('connection', (client) => this.accept(client));
  }

  setDelay(oneWayMs: number, jitterMs = 0): void {
    assertDelay(oneWayMs, jitterMs);
    this.delayMsOneWay = oneWayMs;
    this.jitterMs = jitterMs;
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
    for (const connection of [...this.connections]) {
      if (options.drop === true) connection.abort();
      else connection.release();
    }
  }

  stats(): TcpProxyStats {
    let connectionsOpen = 0;
    for (const connection of this.connections) if (connection.state !== 'closed') connectionsOpen += 1;
    assert.ok(this.queuedBytes >= 0, 'queuedBytes is never negative');
    return {
      connectionsOpen,
      connectionsTotal: this.connectionsTotal,
      connectionsRefused: this.connectionsRefused,
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      queuedBytes: this.queuedBytes,
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
    if (this.closing !== null || this.mode === 'cut' || this.connections.size >= CONNECTIONS_MAX) {
      this.connectionsRefused += 1;
      resetSocket(client);
      return;
    }
    const ordinal = this.connectionsTotal;
    this.connectionsTotal += 1;
    const connection = new Connection(this, client, ordinal);
    this.connections.add(connection);
    connection.start();
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
  private readonly proxy: RunningTcpProxy;
  private readonly client: net.Socket;
  private readonly target: net.Socket;
  private readonly upward: Direction;
  private readonly downward: Direction;
  // Invariant: queuedBytes === upward.queuedBytes + downward.queuedBytes.
  private queuedBytes = 0;
  private socketsClosed = 0;
  // A socket failed during a blackhole; its partner is reset on restore().
  private failedWhileBlackholed = false;
  private resolveClosed: () => void = () => {};

  constructor(proxy: RunningTcpProxy, client: net.Socket, ordinal: number) {
    this.proxy = proxy;
    this.client = client;
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
    this.client.setNoDelay(true);
    this.wire(this.client, this.upward, this.downward);
    this.wire(this.target, this.downward, this.upward);
    if (this.proxy.mode === 'pass') this.dial();
  }

  /** hold stops releasing bytes: the link is now blackholed. */
  hold(): void {
    if (this.state === 'closed') return;
    this.upward.clearTimer();
    this.downward.clearTimer();
  }

  /** release ends a blackhole for this connection: dial if held, then flush what is due. */
  release(): void {
    if (this.state === 'closed') return;
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
    this.state = 'open';
    this.target.setNoDelay(true);
    this.target.connect({ host: this.proxy.targetHost, port: this.proxy.targetPort });
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
    // Draw for every chunk, even at zero jitter, so the k-th chunk always gets the k-th draw.
    const jitterMs = this.proxy.jitterMs * direction.random();
    const releaseAtMs = Math.max(direction.lastReleaseAtMs, nowMs + this.proxy.delayMsOneWay + jitterMs);
    direction.push({ bytes, releaseAtMs });
    this.queuedBytes += bytes.length;
    this.proxy.queuedBytes += bytes.length;
    this.pump(direction);
  }

  // pump writes every due chunk of `direction` that the sink accepts, arms the timer for the
  // next one, forwards an end once the queue is empty, and then sets both sources' flow.
  private pump(direction: Direction): void {
    if (this.state === 'open' && this.proxy.mode === 'pass' && !direction.sink.destroyed) {
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
    if (this.proxy.mode === 'blackhole' && this.state === 'open') {
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

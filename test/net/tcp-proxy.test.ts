// Tests for the userspace TCP proxy (tcp-proxy.ts). Everything runs on 127.0.0.1 against a
// target server the test starts: bytes pass unchanged both ways with half-close, a delay
// gives a lower bound on the round trip (an upper bound only against a link delay of 300 ms,
// which an undelayed loopback trip does not approach: the machine is noisy), jitter keeps
// order, cut() resets and refuses, blackhole() holds and restore() releases or drops, a reset
// crosses the proxy (but not a blackhole), a slow reader keeps the queue within its bound, a
// reader that stops pushes back to the writer, close() leaves nothing running (a child process
// must exit on its own, with no timer or socket left), and a real grpc-js unary call pays the
// delay both ways. Links (connections classified by source address, 127.0.0.2 and .3) have
// their own delay per direction, cut and blackhole, combined with the proxy-wide ones;
// strangers are refused; setTarget moves new connections only. Waits are on events; the few
// waits for the proxy's own bookkeeping are bounded polls, and the waits for silence (a
// stalled writer) only ever make a check weaker, never flaky.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { QUEUED_BYTES_MAX, startTcpProxy } from './tcp-proxy.ts';
import type { TcpProxy, TcpProxyOptions } from './tcp-proxy.ts';
import { runModuleScript } from './child-script.ts';

const TEST_TIMEOUT_MS = 30_000;
// Every test is bounded on its own, so one hang fails that test and not the whole suite.
const BOUNDED = { timeout: TEST_TIMEOUT_MS };
const MIB = 1024 * 1024;
// The most a socket hands over in one 'data' event (libuv reads into 64 KiB buffers).
const READ_CHUNK_BYTES_MAX = 64 * 1024;
const POLL_INTERVAL_MS = 5;
const POLL_DEADLINE_MS = 10_000;
const CHILD_EXIT_DEADLINE_MS = 15_000;
// A writer whose 'drain' has not come for this long is taken as stalled.
const STALL_MS = 500;

/** seededBytes returns `length` deterministic pseudo-random bytes (xorshift32 from `seed`). */
function seededBytes(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed >>> 0 || 1;
  for (let offset = 0; offset < length; offset += 1) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    bytes[offset] = state & 0xff;
  }
  return bytes;
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}

/** waitFor polls `predicate` until it holds, failing after POLL_DEADLINE_MS. */
async function waitFor(predicate: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + POLL_DEADLINE_MS;
  while (!predicate()) {
    assert.ok(performance.now() < deadline, `timed out waiting for ${what}`);
    await sleep(POLL_INTERVAL_MS);
  }
}

/** Target is a TCP server the test starts; it remembers its sockets and closes them all. */
class Target {
  readonly sockets = new Set<net.Socket>();
  accepted = 0;
  private readonly server: net.Server;

  constructor(onConnection: (socket: net.Socket) => void, allowHalfOpen: boolean) {
    this.server = net.createServer({ allowHalfOpen, noDelay: true });
    this.server.on('connection', (socket) => {
      this.accepted += 1;
      this.sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => this.sockets.delete(socket));
      onConnection(socket);
    });
  }

  get port(): number {
    const address = this.server.address();
    assert.ok(address !== null && typeof address === 'object', 'the target is listening');
    return address.port;
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function startTarget(onConnection: (socket: net.Socket) => void, allowHalfOpen = false): Promise<Target> {
  const target = new Target(onConnection, allowHalfOpen);
  await target.listen();
  return target;
}

function startEchoTarget(): Promise<Target> {
  return startTarget((socket) => socket.pipe(socket));
}

/** Client is a connected test socket that keeps what it receives and can wait for it. */
class Client {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  private readonly chunks: Buffer[] = [];
  private receivedBytes = 0;
  private ended = false;
  private waiters: Array<{ bytes: number; resolve: () => void; reject: (error: Error) => void }> = [];

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    socket.on('data', (bytes: Buffer) => {
      this.chunks.push(bytes);
      this.receivedBytes += bytes.length;
      this.settle();
    });
    this.closed = new Promise((resolve) => socket.on('close', () => {
      this.ended = true;
      this.settle();
      resolve();
    }));
  }

  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** untilReceived resolves once `bytes` bytes arrived in total; rejects if the socket closes first. */
  untilReceived(bytes: number): Promise<Buffer> {
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ bytes, resolve, reject });
      this.settle();
    }).then(() => this.received());
  }

  private settle(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const waiter of waiting) {
      if (this.receivedBytes >= waiter.bytes) waiter.resolve();
      else if (this.ended) waiter.reject(new Error(`closed after ${this.receivedBytes} of ${waiter.bytes} bytes`));
      else this.waiters.push(waiter);
    }
  }
}

/** connect dials the proxy, from `localAddress` when given (any 127.0.0.0/8 address is local on Linux). */
function connect(port: number, localAddress?: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(new Client(socket));
    });
  });
}

/** bytesBeforeClose connects, writes, and resolves with how many bytes arrived before the socket closed. */
function bytesBeforeClose(port: number, localAddress?: string): Promise<number> {
  return new Promise((resolve) => {
    let receivedBytes = 0;
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) });
    socket.on('error', () => {});
    socket.on('connect', () => socket.write('lost'));
    socket.on('data', (bytes: Buffer) => {
      receivedBytes += bytes.length;
    });
    socket.on('close', () => resolve(receivedBytes));
  });
}

/** roundTripMs writes `message` and resolves with the time until its echo arrived in full. */
async function roundTripMs(client: Client, message: Buffer): Promise<number> {
  const expected = client.received().length + message.length;
  const startMs = performance.now();
  client.socket.write(message);
  await client.untilReceived(expected);
  return performance.now() - startMs;
}

/** writeSpaced writes each message in its own event-loop turn, so they tend to be separate chunks. */
async function writeSpaced(socket: net.Socket, messages: readonly Buffer[]): Promise<void> {
  for (const message of messages) {
    socket.write(message);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function numberedMessages(count: number, prefix: string): Buffer[] {
  return Array.from({ length: count }, (_, index) => Buffer.from(`${prefix}${index};`));
}

/** withProxy runs `body` with a started target and proxy, and closes both whatever happens. */
async function withProxy(
  target: Target,
  options: Omit<TcpProxyOptions, 'targetHost' | 'targetPort'>,
  body: (proxy: TcpProxy) => Promise<void>,
): Promise<void> {
  const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: target.port, ...options });
  try {
    await body(proxy);
  } finally {
    await proxy.close();
    await target.close();
  }
}

describe('tcp proxy', () => {
  test('checks its arguments', BOUNDED, async () => {
    await assert.rejects(startTcpProxy({ targetHost: '127.0.0.1', targetPort: 0 }), { code: 'ERR_ASSERTION' });
    await assert.rejects(startTcpProxy({ targetHost: '127.0.0.1', targetPort: 1, delayMsOneWay: -1 }), { code: 'ERR_ASSERTION' });
    await assert.rejects(startTcpProxy({ targetHost: '127.0.0.1', targetPort: 1, seed: 1.5 }), { code: 'ERR_ASSERTION' });
    await withProxy(await startEchoTarget(), {}, async (proxy) => {
      assert.throws(() => proxy.setDelay(Number.NaN), { code: 'ERR_ASSERTION' });
      assert.throws(() => proxy.setDelay(1, -1), { code: 'ERR_ASSERTION' });
      assert.equal(proxy.address, `127.0.0.1:${proxy.port}`);
    });
  });

  for (const link of [{ delayMsOneWay: 0, jitterMs: 0 }, { delayMsOneWay: 5, jitterMs: 5 }]) {
    test(`passes 4 MiB each way unchanged, with half-close (delay ${link.delayMsOneWay} ms, jitter ${link.jitterMs} ms)`, BOUNDED, async () => {
      const request = seededBytes(4 * MIB, 1);
      const response = seededBytes(4 * MIB, 2);
      let targetSaw = '';
      // The target reads until the client's end, then answers and ends: both ends must cross.
      const target = await startTarget((socket) => {
        const chunks: Buffer[] = [];
        socket.on('data', (bytes: Buffer) => chunks.push(bytes));
        socket.on('end', () => {
          targetSaw = sha256(Buffer.concat(chunks));
          socket.end(response);
        });
      }, true);
      await withProxy(target, { ...link, seed: 11 }, async (proxy) => {
        const client = await connect(proxy.port);
        const ended = new Promise<void>((resolve) => client.socket.once('end', resolve));
        client.socket.end(request);
        await ended;
        assert.equal(targetSaw, sha256(request));
        assert.equal(sha256(client.received()), sha256(response));
        await client.closed;
        await waitFor(() => proxy.stats().connectionsOpen === 0, 'the proxy to finish the connection');
        assert.deepEqual(proxy.stats(), {
          connectionsOpen: 0,
          connectionsTotal: 1,
          connectionsRefused: 0,
          connectionsUnclassified: 0,
          bytesUp: request.length,
          bytesDown: response.length,
          queuedBytes: 0,
        });
      });
    });
  }

  test('a round trip takes at least two one-way delays, and setDelay changes them', BOUNDED, async () => {
    await withProxy(await startEchoTarget(), { delayMsOneWay: 20 }, async (proxy) => {
      const client = await connect(proxy.port);
      for (let trip = 0; trip < 3; trip += 1) {
        const elapsedMs = await roundTripMs(client, Buffer.from(`ping ${trip}`));
        assert.ok(elapsedMs >= 40, `round trip ${trip} took ${elapsedMs} ms, expected >= 40`);
      }
      proxy.setDelay(35, 5);
      const elapsedMs = await roundTripMs(client, Buffer.from('slower'));
      assert.ok(elapsedMs >= 70, `round trip took ${elapsedMs} ms, expected >= 70`);
      client.socket.destroy();
    });
  });

  test('keeps byte order under jitter', BOUNDED, async () => {
    await withProxy(await startEchoTarget(), { delayMsOneWay: 1, jitterMs: 25, seed: 7 }, async (proxy) => {
      assert.equal(proxy.seed, 7);
      const client = await connect(proxy.port);
      const messages = numberedMessages(400, 'm');
      const sent = Buffer.concat(messages);
      await writeSpaced(client.socket, messages);
      const echoed = await client.untilReceived(sent.length);
      assert.equal(echoed.toString(), sent.toString());
      client.socket.destroy();
    });
  });

  test('cut() resets open connections and refuses new ones until restore()', BOUNDED, async () => {
    const target = await startEchoTarget();
    await withProxy(target, {}, async (proxy) => {
      const before = await connect(proxy.port);
      await roundTripMs(before, Buffer.from('hello'));
      assert.equal(target.sockets.size, 1);

      proxy.cut();
      await before.closed;
      await waitFor(() => target.sockets.size === 0, 'the target side to be reset');
      assert.equal(proxy.stats().connectionsOpen, 0);

      // The listener still accepts, then resets at once: the client sees its socket close
      // without a byte (or, if the reset wins the race, its connect fail).
      assert.equal(await bytesBeforeClose(proxy.port), 0);
      assert.equal(proxy.stats().connectionsRefused, 1);
      assert.equal(target.accepted, 1);

      proxy.restore();
      const after = await connect(proxy.port);
      await roundTripMs(after, Buffer.from('again'));
      assert.equal(after.received().toString(), 'again');
      assert.equal(target.accepted, 2);
      after.socket.destroy();
    });
  });

  test('blackhole() holds bytes without closing, and restore() releases them in order', BOUNDED, async () => {
    const target = await startEchoTarget();
    await withProxy(target, { delayMsOneWay: 2, jitterMs: 3 }, async (proxy) => {
      const early = await connect(proxy.port);
      await roundTripMs(early, Buffer.from('<'));

      proxy.blackhole();
      const earlyMessages = numberedMessages(50, 'a');
      await writeSpaced(early.socket, earlyMessages);
      // A connection made during the blackhole is accepted but the target is not dialled.
      const late = await connect(proxy.port);
      const lateMessages = numberedMessages(50, 'b');
      await writeSpaced(late.socket, lateMessages);
      const heldBytes = Buffer.concat(earlyMessages).length + Buffer.concat(lateMessages).length;
      await waitFor(() => proxy.stats().queuedBytes === heldBytes, 'the proxy to hold every byte written');
      assert.equal(target.accepted, 1);
      assert.equal(early.received().toString(), '<');
      assert.equal(late.received().length, 0);
      assert.equal(proxy.stats().connectionsOpen, 2);

      proxy.restore();
      const earlyEcho = await early.untilReceived(1 + Buffer.concat(earlyMessages).length);
      assert.equal(earlyEcho.toString(), `<${Buffer.concat(earlyMessages).toString()}`);
      const lateEcho = await late.untilReceived(Buffer.concat(lateMessages).length);
      assert.equal(lateEcho.toString(), Buffer.concat(lateMessages).toString());
      assert.equal(target.accepted, 2);
      early.socket.destroy();
      late.socket.destroy();
    });
  });

  test('restore({ drop: true }) resets what a blackhole held', BOUNDED, async () => {
    const target = await startEchoTarget();
    await withProxy(target, {}, async (proxy) => {
      const early = await connect(proxy.port);
      await roundTripMs(early, Buffer.from('<'));
      proxy.blackhole();
      early.socket.write('dropped');
      const late = await connect(proxy.port);
      late.socket.write('dropped too');
      await waitFor(() => proxy.stats().queuedBytes === 'dropped'.length + 'dropped too'.length, 'the proxy to hold the bytes');

      proxy.restore({ drop: true });
      await early.closed;
      await late.closed;
      assert.equal(early.received().toString(), '<');
      assert.equal(late.received().length, 0);
      await waitFor(() => target.sockets.size === 0, 'the target side to be reset');
      assert.equal(target.accepted, 1);
      assert.equal(proxy.stats().queuedBytes, 0);

      const after = await connect(proxy.port);
      await roundTripMs(after, Buffer.from('flows'));
      after.socket.destroy();
    });
  });

  test('a reset on one side resets the other, except during a blackhole; an unreachable target closes the client', BOUNDED, async () => {
    const target = await startEchoTarget();
    await withProxy(target, {}, async (proxy) => {
      const client = await connect(proxy.port);
      await roundTripMs(client, Buffer.from('up'));
      for (const socket of target.sockets) socket.resetAndDestroy();
      await client.closed;
      await waitFor(() => proxy.stats().connectionsOpen === 0, 'the proxy to drop the pair');

      // A silent partition carries no reset: the client learns of it only on restore().
      const partitioned = await connect(proxy.port);
      await roundTripMs(partitioned, Buffer.from('up'));
      proxy.blackhole();
      for (const socket of target.sockets) socket.resetAndDestroy();
      await waitFor(() => target.sockets.size === 0, 'the target side to be reset');
      await sleep(50);
      assert.equal(partitioned.socket.destroyed, false);
      proxy.restore();
      await partitioned.closed;
    });

    const gone = await startEchoTarget();
    const gonePort = gone.port;
    await gone.close();
    const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: gonePort });
    try {
      assert.equal(await bytesBeforeClose(proxy.port), 0);
      await waitFor(() => proxy.stats().connectionsOpen === 0, 'the proxy to drop the pair');
    } finally {
      await proxy.close();
    }
  });

  test('a slow reader keeps the queued bytes within the bound', BOUNDED, async () => {
    const queuedBytesMax = 1 * MIB;
    assert.ok(queuedBytesMax < QUEUED_BYTES_MAX);
    const payload = seededBytes(16 * MIB, 3);
    const targetChunks: Buffer[] = [];
    let targetBytes = 0;
    let targetSocket: net.Socket | null = null;
    let readBudgetBytes = 0;
    let peakQueuedBytes = 0;
    let sampled: TcpProxy | null = null;
    const sample = (): void => {
      if (sampled !== null) peakQueuedBytes = Math.max(peakQueuedBytes, sampled.stats().queuedBytes);
    };
    // The target reads about 128 KiB per 5 ms tick and is paused in between.
    const target = await startTarget((socket) => {
      targetSocket = socket;
      socket.pause();
      socket.on('data', (bytes: Buffer) => {
        targetChunks.push(bytes);
        targetBytes += bytes.length;
        readBudgetBytes -= bytes.length;
        sample();
        if (readBudgetBytes <= 0) socket.pause();
      });
    });
    const reader = setInterval(() => {
      sample();
      readBudgetBytes = 128 * 1024;
      targetSocket?.resume();
    }, 5);
    try {
      await withProxy(target, { delayMsOneWay: 20, queuedBytesMax }, async (proxy) => {
        sampled = proxy;
        const client = await connect(proxy.port);
        // Write as fast as the proxy takes it, honouring the client's own backpressure.
        for (let offset = 0; offset < payload.length; offset += READ_CHUNK_BYTES_MAX) {
          sample();
          if (!client.socket.write(payload.subarray(offset, offset + READ_CHUNK_BYTES_MAX))) {
            await new Promise((resolve) => client.socket.once('drain', resolve));
          }
        }
        await waitFor(() => targetBytes === payload.length, 'the slow reader to read everything');
        assert.equal(sha256(Buffer.concat(targetChunks)), sha256(payload));
        assert.ok(peakQueuedBytes <= queuedBytesMax + READ_CHUNK_BYTES_MAX, `queued ${peakQueuedBytes} bytes, bound ${queuedBytesMax}`);
        // The bound was reached, so the proxy's own backpressure (not only the kernel's) ran.
        assert.ok(peakQueuedBytes >= queuedBytesMax / 2, `queued at most ${peakQueuedBytes} bytes; the bound was not exercised`);
        client.socket.destroy();
      });
    } finally {
      clearInterval(reader);
    }
  });

  test('a reader that stops pushes back through the proxy to the writer', BOUNDED, async () => {
    const chunkCount = 512; // 32 MiB in 64 KiB chunks
    const chunkAt = (index: number): Buffer => seededBytes(READ_CHUNK_BYTES_MAX, 1000 + index);
    const sentHash = createHash('sha256');
    const receivedHash = createHash('sha256');
    let targetSocket: net.Socket | null = null;
    let targetBytes = 0;
    const target = await startTarget((socket) => {
      targetSocket = socket;
      socket.pause();
      socket.on('data', (bytes: Buffer) => {
        receivedHash.update(bytes);
        targetBytes += bytes.length;
      });
    });
    await withProxy(target, { queuedBytesMax: 1 * MIB }, async (proxy) => {
      const client = await connect(proxy.port);
      let stalledAtBytesUp: number | null = null;
      for (let index = 0; index < chunkCount; index += 1) {
        const chunk = chunkAt(index);
        sentHash.update(chunk);
        if (client.socket.write(chunk)) continue;
        let stall: NodeJS.Timeout | undefined;
        const drained = await Promise.race([
          new Promise<boolean>((resolve) => client.socket.once('drain', () => resolve(true))),
          new Promise<boolean>((resolve) => {
            stall = setTimeout(() => resolve(false), STALL_MS);
          }),
        ]);
        clearTimeout(stall);
        if (drained) continue;
        // Nothing moved for STALL_MS: the proxy stopped reading because its sink is full.
        // Without that, it would have read all 32 MiB into its own write buffer.
        stalledAtBytesUp = proxy.stats().bytesUp;
        assert.ok(stalledAtBytesUp <= 16 * MIB, `the proxy wrote ${stalledAtBytesUp} bytes to a reader that reads nothing`);
        // With no delay, a blocked sink pauses the source before the queue's own bound does.
        assert.ok(proxy.stats().queuedBytes <= READ_CHUNK_BYTES_MAX, `queued ${proxy.stats().queuedBytes} bytes behind a full sink`);
        assert.ok(targetSocket !== null);
        (targetSocket as net.Socket).resume();
        await new Promise((resolve) => client.socket.once('drain', resolve));
      }
      assert.notEqual(stalledAtBytesUp, null, 'the writer never stalled');
      await waitFor(() => targetBytes === chunkCount * READ_CHUNK_BYTES_MAX, 'the reader to read everything');
      assert.equal(receivedHash.digest('hex'), sentHash.digest('hex'));
      client.socket.destroy();
    });
  });

  test('close() resets every connection, is idempotent, and leaves nothing running', BOUNDED, async () => {
    const target = await startEchoTarget();
    const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: target.port, delayMsOneWay: 200 });
    const client = await connect(proxy.port);
    client.socket.write('in flight');
    await waitFor(() => proxy.stats().queuedBytes > 0, 'bytes to be queued behind the delay');
    const first = proxy.close();
    assert.equal(proxy.close(), first);
    await first;
    await client.closed;
    assert.equal(proxy.stats().connectionsOpen, 0);
    assert.equal(proxy.stats().queuedBytes, 0);
    proxy.cut();
    proxy.blackhole();
    proxy.restore();
    await target.close();
    await assert.rejects(connect(proxy.port), { code: 'ECONNREFUSED' });
  });

  test('a process exits on its own after close(), with timers and connections in flight', BOUNDED, async () => {
    const moduleUrl = new URL('./tcp-proxy.ts', import.meta.url).href;
    const script = `
      import net from 'node:net';
      import { startTcpProxy } from ${JSON.stringify(moduleUrl)};
      const server = net.createServer((socket) => { socket.on('error', () => {}); socket.pipe(socket); });
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: server.address().port, delayMsOneWay: 30, jitterMs: 30 });
      const sockets = [];
      for (let index = 0; index < 4; index += 1) {
        const socket = net.connect(proxy.port, '127.0.0.1');
        socket.on('error', () => {});
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.write('x'.repeat(1000 * (index + 1)));
        sockets.push(socket);
      }
      // Let the first chunks through and leave later ones queued behind their timers.
      await new Promise((resolve) => setTimeout(resolve, 40));
      for (const socket of sockets) socket.write('y'.repeat(500));
      await new Promise((resolve) => setTimeout(resolve, 5));
      await proxy.close();
      await new Promise((resolve) => server.close(resolve));
      await Promise.all(sockets.map((socket) => new Promise((resolve) => {
        if (socket.closed) resolve();
        else socket.once('close', resolve);
      })));
      // A closed handle leaves the list a loop turn or two after its 'close' event; a leaked
      // timer or socket stays for all of these turns.
      const leftOver = () => process.getActiveResourcesInfo().filter((name) => name === 'Timeout' || name.startsWith('TCP'));
      for (let turn = 0; turn < 20 && leftOver().length > 0; turn += 1) await new Promise((resolve) => setImmediate(resolve));
      console.log(JSON.stringify(leftOver()));
    `;
    const output = await runModuleScript(script, CHILD_EXIT_DEADLINE_MS);
    // Nothing of the proxy's is left: no timer, no socket, no listener.
    assert.equal(output.trim(), '[]');
  });

  test('a grpc-js unary call through a 20 ms link takes at least 40 ms', BOUNDED, async () => {
    const identity = (bytes: Buffer): Buffer => bytes;
    const echoMethod = {
      path: '/stratakv.test.Echo/Echo',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    };
    const definition: grpc.ServiceDefinition = { echo: echoMethod };
    const server = new grpc.Server();
    server.addService(definition, {
      echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, call.request),
    });
    const serverPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => (error === null ? resolve(port) : reject(error)));
    });
    const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: serverPort, delayMsOneWay: 20 });
    const client = new grpc.Client(proxy.address, grpc.credentials.createInsecure());
    const call = (request: Buffer): Promise<Buffer> => new Promise((resolve, reject) => {
      client.makeUnaryRequest(echoMethod.path, identity, identity, request, (error, response) => {
        if (error !== null) reject(error);
        else if (response === undefined) reject(new Error('no response'));
        else resolve(response);
      });
    });
    try {
      // The first call also opens the connection; every call, warm or not, pays both delays.
      for (let index = 0; index < 4; index += 1) {
        const request = seededBytes(1024, 100 + index);
        const startMs = performance.now();
        const response = await call(request);
        const elapsedMs = performance.now() - startMs;
        assert.ok(response.equals(request), 'the echo matches the request');
        assert.ok(elapsedMs >= 40, `call ${index} took ${elapsedMs} ms, expected >= 40`);
      }
      assert.equal(proxy.stats().connectionsTotal, 1);
    } finally {
      client.close();
      server.forceShutdown();
      await proxy.close();
    }
  });
});

// Links: the proxy classifies each connection by its source address. Two local addresses
// stand for two members; anything else is a stranger.
const SOURCE_X = '127.0.0.2';
const SOURCE_Y = '127.0.0.3';
const STRANGER = '127.0.0.4';
const classifyXY = (remoteAddress: string): string | null => {
  if (remoteAddress === SOURCE_X) return 'x';
  if (remoteAddress === SOURCE_Y) return 'y';
  return null;
};

describe('tcp proxy links', () => {
  test('classify puts each connection on its link; a stranger is refused and counted', BOUNDED, async () => {
    const target = await startEchoTarget();
    await withProxy(target, { classify: classifyXY }, async (proxy) => {
      const x = await connect(proxy.port, SOURCE_X);
      await roundTripMs(x, Buffer.from('x-bytes'));
      const y = await connect(proxy.port, SOURCE_Y);
      await roundTripMs(y, Buffer.from('y'));
      assert.equal(await bytesBeforeClose(proxy.port, STRANGER), 0);
      assert.equal(await bytesBeforeClose(proxy.port), 0, '127.0.0.1 is a stranger too');
      assert.equal(target.accepted, 2);
      assert.deepEqual(proxy.linkStats('x'), {
        mode: 'pass', upDelayMs: 0, upJitterMs: 0, downDelayMs: 0, downJitterMs: 0,
        connectionsOpen: 1, connectionsTotal: 1, connectionsRefused: 0, bytesUp: 7, bytesDown: 7, queuedBytes: 0,
      });
      assert.equal(proxy.linkStats('y').bytesUp, 1);
      assert.equal(proxy.linkStats('never').connectionsTotal, 0);
      const stats = proxy.stats();
      assert.equal(stats.connectionsUnclassified, 2);
      assert.equal(stats.connectionsRefused, 2);
      assert.equal(stats.connectionsTotal, 2);
      x.socket.destroy();
      y.socket.destroy();
    });
  });

  test('a link delay adds to the proxy-wide one, per direction, on that link only', BOUNDED, async () => {
    const linkDelayMs = 300;
    await withProxy(await startEchoTarget(), { classify: classifyXY, delayMsOneWay: 20 }, async (proxy) => {
      assert.throws(() => proxy.setLinkDelay('x', { upDelayMs: -1, downDelayMs: 0 }), { code: 'ERR_ASSERTION' });
      assert.throws(() => proxy.setLinkDelay('', { upDelayMs: 1, downDelayMs: 0 }), { code: 'ERR_ASSERTION' });
      proxy.setLinkDelay('x', { upDelayMs: linkDelayMs, downDelayMs: 0, upJitterMs: 5 });
      const x = await connect(proxy.port, SOURCE_X);
      const y = await connect(proxy.port, SOURCE_Y);
      const xMs = await roundTripMs(x, Buffer.from('slow'));
      assert.ok(xMs >= linkDelayMs + 40, `x's round trip took ${xMs} ms, expected >= ${linkDelayMs + 40}`);
      const yMs = Math.min(await roundTripMs(y, Buffer.from('1')), await roundTripMs(y, Buffer.from('2')));
      assert.ok(yMs >= 40, `y's round trip took ${yMs} ms, expected >= 40 (the proxy-wide delay)`);
      assert.ok(yMs < linkDelayMs, `y's round trip took ${yMs} ms: x's link delay leaked onto y`);
      // Now only the way down is slow on x's link.
      proxy.setLinkDelay('x', { upDelayMs: 0, downDelayMs: linkDelayMs });
      const downMs = await roundTripMs(x, Buffer.from('down'));
      assert.ok(downMs >= linkDelayMs + 40, `x's round trip took ${downMs} ms, expected >= ${linkDelayMs + 40}`);
      assert.equal(proxy.linkStats('x').downDelayMs, linkDelayMs);
      x.socket.destroy();
      y.socket.destroy();
    });
  });

  test('cutLink resets and refuses that link only, until restoreLink', BOUNDED, async () => {
    const target = await startEchoTarget();
    await withProxy(target, { classify: classifyXY }, async (proxy) => {
      const x = await connect(proxy.port, SOURCE_X);
      const y = await connect(proxy.port, SOURCE_Y);
      await roundTripMs(x, Buffer.from('x'));
      await roundTripMs(y, Buffer.from('y'));
      proxy.cutLink('x');
      await x.closed;
      assert.equal(await bytesBeforeClose(proxy.port, SOURCE_X), 0);
      assert.equal(proxy.linkStats('x').connectionsRefused, 1);
      await roundTripMs(y, Buffer.from('still'));
      proxy.restoreLink('x');
      const again = await connect(proxy.port, SOURCE_X);
      await roundTripMs(again, Buffer.from('again'));
      again.socket.destroy();
      y.socket.destroy();
    });
  });

  test('a link blackhole and a proxy-wide one combine: a connection flows once neither holds it', BOUNDED, async () => {
    const target = await startEchoTarget();
    await withProxy(target, { classify: classifyXY }, async (proxy) => {
      const x = await connect(proxy.port, SOURCE_X);
      const y = await connect(proxy.port, SOURCE_Y);
      await roundTripMs(x, Buffer.from('<'));
      await roundTripMs(y, Buffer.from('<'));
      proxy.blackholeLink('x');
      proxy.blackhole();
      x.socket.write('x1');
      y.socket.write('y1');
      await waitFor(() => proxy.stats().queuedBytes === 4, 'the proxy to hold both writes');

      // The proxy-wide blackhole ends; x's own still holds it.
      proxy.restore();
      await y.untilReceived(3);
      assert.equal(y.received().toString(), '<y1');
      assert.equal(proxy.linkStats('x').queuedBytes, 2);
      assert.equal(x.received().toString(), '<');

      // Once x's own blackhole ends too, what it held flows.
      proxy.restoreLink('x');
      await x.untilReceived(3);
      assert.equal(x.received().toString(), '<x1');

      // With { drop: true }, what the link's blackhole held is reset, not released.
      proxy.blackholeLink('x');
      x.socket.write('lost');
      await waitFor(() => proxy.linkStats('x').queuedBytes === 4, 'the proxy to hold x\'s write');
      proxy.restoreLink('x', { drop: true });
      await x.closed;
      await roundTripMs(y, Buffer.from('y2'));
      y.socket.destroy();
    });
  });

  test('setTarget retargets new connections only; a null target refuses; resetConnections resets once', BOUNDED, async () => {
    const first = await startEchoTarget();
    const second = await startEchoTarget();
    try {
      await withProxy(first, { classify: classifyXY }, async (proxy) => {
        const old = await connect(proxy.port, SOURCE_X);
        await roundTripMs(old, Buffer.from('first'));
        proxy.setTarget('127.0.0.1', second.port);
        const moved = await connect(proxy.port, SOURCE_X);
        await roundTripMs(moved, Buffer.from('second'));
        await roundTripMs(old, Buffer.from('still first'));
        assert.equal(first.accepted, 1);
        assert.equal(second.accepted, 1);

        // A connection held by a blackhole dials the target of the moment it is released.
        proxy.blackholeLink('y');
        const held = await connect(proxy.port, SOURCE_Y);
        held.socket.write('held');
        await waitFor(() => proxy.linkStats('y').queuedBytes === 4, 'the proxy to hold y\'s write');
        proxy.setTarget(null);
        assert.equal(await bytesBeforeClose(proxy.port, SOURCE_X), 0, 'no target: refused');
        proxy.restoreLink('y');
        await held.closed;
        assert.equal(second.accepted, 1, 'a released connection with no target is reset, not dialled');

        proxy.setTarget('127.0.0.1', second.port);
        const other = await connect(proxy.port, SOURCE_Y);
        await roundTripMs(other, Buffer.from('y'));
        proxy.resetConnections('x');
        await old.closed;
        await moved.closed;
        await roundTripMs(other, Buffer.from('untouched'));
        proxy.resetConnections();
        await other.closed;
        const after = await connect(proxy.port, SOURCE_X);
        await roundTripMs(after, Buffer.from('accepted again'));
        after.socket.destroy();
        assert.throws(() => proxy.setTarget(''), { code: 'ERR_ASSERTION' });
      });
    } finally {
      await second.close();
    }
  });
});

// Runs the Transport conformance suite against GrpcTransport, plus what only the real
// transport has: redialling after the accepting side restarts, refusing another cluster's
// streams, the lower-id-dials rule and its fallback (the higher id dials a lower one that
// does not know it; when both dial, the lower id's stream wins), learning a peer from its
// hello (with or without URLs), refusing a removed member, and refusing malformed streams.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger, NodeId } from '../../src/raft/index.ts';
import { GrpcTransport, PEER_SERVICE_PROTO_PATH } from '../../src/transport/grpc-transport.ts';
import { HTTP2_WINDOW_BYTES } from '../../src/transport/http2-window.ts';
import { serverWindows } from '../net/http2-windows.ts';
import type { TransportLimits } from '../../src/transport/limits.ts';
import { decodeMessages, encodeMessages } from '../../src/transport/message-codec.ts';
import { chunkCrc32c } from '../../src/transport/snapshot-stream.ts';
import { SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX } from '../../src/transport/transport.ts';
import { ErrorCode, StrataError, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';
import {
  FAST_BYTES_PER_SECOND,
  MIB,
  Recorder,
  SnapshotTestPayload,
  SnapshotTestSink,
  TEST_TIMEOUT_MS,
  aborted,
  describeTransportConformance,
  heartbeat,
  sameBytes,
  snapshotMessage,
} from './conformance.ts';

const CLUSTER_ID = 0x1234_5678_9abc;

function createTransport(
  id: NodeId,
  options: { limits?: Partial<TransportLimits>; clusterId?: number; logger?: Logger; listenUrl?: string; advertiseUrls?: string[] } = {},
): GrpcTransport {
  return new GrpcTransport({
    localId: id,
    clusterId: options.clusterId ?? CLUSTER_ID,
    listenUrls: [options.listenUrl ?? 'http://127.0.0.1:0'],
    random: new SeededRandom(id),
    ...(options.advertiseUrls === undefined ? {} : { advertiseUrls: options.advertiseUrls }),
    ...(options.limits === undefined ? {} : { limits: options.limits }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
}

function urlOf(transport: GrpcTransport): string {
  const url = transport.boundUrls[0];
  assert.ok(url !== undefined, 'transport is started');
  return url;
}

// connectedPair starts members 1 and 2 (with `optionsB` for 2), each knowing the other, and
// waits until their stream is up both ways.
async function connectedPair(optionsB: Parameters<typeof createTransport>[1] = {}): Promise<{ a: GrpcTransport; b: GrpcTransport; ra: Recorder; rb: Recorder }> {
  const a = createTransport(1);
  const b = createTransport(2, optionsB);
  const ra = new Recorder();
  const rb = new Recorder();
  await a.start(ra);
  await b.start(rb);
  a.setPeer(2, [urlOf(b)]);
  b.setPeer(1, [urlOf(a)]);
  await a.whenConnected(2);
  await b.whenConnected(1);
  return { a, b, ra, rb };
}

describeTransportConformance('grpc', {
  create: (id, options = {}) => createTransport(id, options),
  urlOf: (transport) => urlOf(transport as GrpcTransport),
  connected: (from, to) => (from as GrpcTransport).whenConnected(to),
  queued: (transport, peer) => (transport as GrpcTransport).linkStatus(peer)?.queuedMessages ?? 0,
  snapshotStats: (transport) => (transport as GrpcTransport).snapshotStats,
});

/** CapturingLogger records warnings and lets a test wait for the n-th one matching a text. */
class CapturingLogger implements Logger {
  readonly warnings: string[] = [];
  private waiters: Array<{ text: string; count: number; resolve: () => void }> = [];
  debug(): void {}
  info(): void {}
  warn(message: string): void {
    this.warnings.push(message);
    this.waiters = this.waiters.filter((waiter) => {
      if (this.count(waiter.text) < waiter.count) return true;
      waiter.resolve();
      return false;
    });
  }
  count(text: string): number {
    return this.warnings.filter((warning) => warning.includes(text)).length;
  }
  until(text: string, count: number): Promise<void> {
    if (this.count(text) >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ text, count, resolve }));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface FrameWire {
  clusterId: number;
  from: number;
  to: number;
  batch: Uint8Array;
  /** Left out by an older member (and by most raw streams here). */
  peerUrls?: string[];
}

interface RawStream {
  client: grpc.Client;
  call: grpc.ClientDuplexStream<FrameWire, FrameWire>;
  status: Promise<grpc.ServiceError | undefined>;
  /** frame resolves with the index-th frame the transport sent on this stream. */
  frame(index: number): Promise<FrameWire>;
}

/** rawStream opens a Stream call to `url` by hand, to send what a GrpcTransport never would. */
function rawStream(url: string): RawStream {
  const definition = protoLoader.loadSync(PEER_SERVICE_PROTO_PATH, { keepCase: false, longs: Number, defaults: true });
  const service = definition['stratakv.peer.Peer'] as grpc.ServiceDefinition;
  const method = service.Stream;
  assert.ok(method !== undefined);
  const client = new grpc.Client(new URL(url).host, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const call = client.makeBidiStreamRequest<FrameWire, FrameWire>(
    method.path,
    method.requestSerialize as (value: FrameWire) => Buffer,
    method.responseDeserialize as (bytes: Buffer) => FrameWire,
  );
  const frames: FrameWire[] = [];
  let waiters: Array<{ index: number; resolve: (frame: FrameWire) => void }> = [];
  const status = new Promise<grpc.ServiceError | undefined>((resolve) => {
    call.on('error', (error: grpc.ServiceError) => resolve(error));
    call.on('end', () => resolve(undefined));
    call.on('data', (frame: FrameWire) => {
      frames.push(frame);
      const ready = waiters.filter((waiter) => waiter.index < frames.length);
      waiters = waiters.filter((waiter) => waiter.index >= frames.length);
      for (const waiter of ready) waiter.resolve(frames[waiter.index] as FrameWire);
    });
  });
  const frame = (index: number): Promise<FrameWire> => {
    const arrived = frames[index];
    if (arrived !== undefined) return Promise.resolve(arrived);
    return new Promise((resolve) => waiters.push({ index, resolve }));
  };
  return { client, call, status, frame };
}

interface SnapshotFrameWire {
  hello?: { clusterId: number; from: number; to: number; message: Uint8Array; byteLength: number } | null;
  chunk?: { offset: number; data: Uint8Array; crc32c: number } | null;
  done?: boolean;
}

interface SnapshotAckWire {
  verifiedBytes: number;
  done: boolean;
  error: { code: string; message: string; details: Uint8Array } | null;
}

interface RawSnapshotStream {
  client: grpc.Client;
  call: grpc.ClientDuplexStream<SnapshotFrameWire, SnapshotAckWire>;
  status: Promise<grpc.ServiceError | undefined>;
  /** ack resolves with the index-th ack the receiver sent on this stream. */
  ack(index: number): Promise<SnapshotAckWire>;
}

/** rawSnapshotStream opens a Snapshot call to `url` by hand, to send what a GrpcTransport never would. */
function rawSnapshotStream(url: string): RawSnapshotStream {
  const definition = protoLoader.loadSync(PEER_SERVICE_PROTO_PATH, { keepCase: false, longs: Number, defaults: true });
  const service = definition['stratakv.peer.Peer'] as grpc.ServiceDefinition;
  const method = service.Snapshot;
  assert.ok(method !== undefined);
  const client = new grpc.Client(new URL(url).host, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const call = client.makeBidiStreamRequest<SnapshotFrameWire, SnapshotAckWire>(
    method.path,
    method.requestSerialize as (value: SnapshotFrameWire) => Buffer,
    method.responseDeserialize as (bytes: Buffer) => SnapshotAckWire,
  );
  const acks: SnapshotAckWire[] = [];
  let waiters: Array<{ index: number; resolve: (ack: SnapshotAckWire) => void }> = [];
  const status = new Promise<grpc.ServiceError | undefined>((resolve) => {
    call.on('error', (error: grpc.ServiceError) => resolve(error));
    call.on('end', () => resolve(undefined));
    call.on('data', (ack: SnapshotAckWire) => {
      acks.push(ack);
      const ready = waiters.filter((waiter) => waiter.index < acks.length);
      waiters = waiters.filter((waiter) => waiter.index >= acks.length);
      for (const waiter of ready) waiter.resolve(acks[waiter.index] as SnapshotAckWire);
    });
  });
  const ack = (index: number): Promise<SnapshotAckWire> => {
    const arrived = acks[index];
    if (arrived !== undefined) return Promise.resolve(arrived);
    return new Promise((resolve) => waiters.push({ index, resolve }));
  };
  return { client, call, status, ack };
}

function snapshotHelloWire(from: NodeId, to: NodeId, byteLength: number, clusterId = CLUSTER_ID): SnapshotFrameWire {
  return { hello: { clusterId, from, to, message: encodeMessages([snapshotMessage(from, to, 42)]), byteLength } };
}

describe('GrpcTransport snapshot streams', { timeout: TEST_TIMEOUT_MS }, () => {
  test('a snapshot to a member of another cluster fails with CLUSTER_ID_MISMATCH, at once', async () => {
    const a = createTransport(1, { clusterId: 111 });
    const b = createTransport(2, { clusterId: 222 });
    const rb = new Recorder();
    await a.start(new Recorder());
    await b.start(rb);
    a.setPeer(2, [urlOf(b)]);
    await assert.rejects(a.sendSnapshot(snapshotMessage(1, 2, 1), new SnapshotTestPayload(MIB, 1)), (error) => isStrataError(error, ErrorCode.CLUSTER_ID_MISMATCH));
    assert.equal(a.snapshotStats.attempts, 1);
    assert.equal(rb.snapshotOpens.length, 0);
    await a.close();
    await b.close();
  });

  test('on the wire: resume offset, per-chunk acks, a damaged chunk refused with CORRUPTION, one stream per member, malformed hellos', async () => {
    const b = createTransport(2);
    const rb = new Recorder();
    await b.start(rb);
    const sink = new SnapshotTestSink(4 * MIB);
    rb.snapshotHandler = () => Promise.resolve(sink);
    const block = new Uint8Array(MIB).fill(7);

    const first = rawSnapshotStream(urlOf(b));
    first.call.write(snapshotHelloWire(1, 2, 4 * MIB));
    assert.equal((await first.ack(0)).verifiedBytes, 0);
    // Member 1 already has a stream open: a second is refused, and says why in the trailer.
    const second = rawSnapshotStream(urlOf(b));
    second.call.write(snapshotHelloWire(1, 2, 4 * MIB));
    const busy = await second.status;
    assert.equal(busy?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(busy?.metadata.get('stratakv-code')[0], ErrorCode.UNAVAILABLE);
    second.client.close();
    first.call.write({ chunk: { offset: 0, data: block, crc32c: chunkCrc32c(block) } });
    assert.equal((await first.ack(1)).verifiedBytes, MIB);
    // A chunk whose CRC does not match: refused before the sink sees it; the call ends.
    first.call.write({ chunk: { offset: MIB, data: block, crc32c: chunkCrc32c(block) ^ 1 } });
    const refused = await first.ack(2);
    assert.equal(refused.error?.code, ErrorCode.CORRUPTION);
    assert.equal(await first.status, undefined, 'the call ends with OK after the error ack');
    assert.equal(sink.writes.length, 1);
    first.client.close();
    // The next stream resumes at what the sink verified.
    const third = rawSnapshotStream(urlOf(b));
    third.call.write(snapshotHelloWire(1, 2, 4 * MIB));
    assert.equal((await third.ack(0)).verifiedBytes, MIB);
    // A chunk that does not follow the verified bytes is a protocol error.
    third.call.write({ chunk: { offset: 2 * MIB, data: block, crc32c: chunkCrc32c(block) } });
    assert.equal((await third.ack(1)).error?.code, ErrorCode.INVALID_ARGUMENT);
    third.client.close();
    assert.equal(b.incomingSnapshotStreams, 0);

    const malformed: SnapshotFrameWire[] = [
      { chunk: { offset: 0, data: block, crc32c: 0 } }, // no hello first
      { hello: { clusterId: CLUSTER_ID, from: 1, to: 2, message: encodeMessages([heartbeat(1, 2, 0)]), byteLength: MIB } }, // not a snapshot
      { hello: { clusterId: CLUSTER_ID, from: 3, to: 2, message: encodeMessages([snapshotMessage(1, 2, 1)]), byteLength: MIB } }, // from someone else
      { hello: { clusterId: CLUSTER_ID, from: 1, to: 5, message: encodeMessages([snapshotMessage(1, 5, 1)]), byteLength: MIB } }, // meant for 5
      { hello: { clusterId: CLUSTER_ID, from: 2, to: 2, message: encodeMessages([snapshotMessage(2, 2, 1)]), byteLength: MIB } }, // from itself
    ];
    for (const frame of malformed) {
      const raw = rawSnapshotStream(urlOf(b));
      raw.call.write(frame);
      const error = await raw.status;
      assert.equal(error?.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(error?.metadata.get('stratakv-code')[0], ErrorCode.INVALID_ARGUMENT);
      raw.client.close();
    }
    assert.equal(rb.snapshotOpens.length, 2);
    await b.close();
  });

  test('a stream that sends no hello is refused with TIMEOUT after the handshake timeout', async () => {
    const b = createTransport(2, { limits: { handshakeTimeoutMs: 50 } });
    await b.start(new Recorder());
    const raw = rawSnapshotStream(urlOf(b));
    const error = await raw.status;
    assert.equal(error?.metadata.get('stratakv-code')[0], ErrorCode.TIMEOUT);
    raw.client.close();
    await b.close();
  });

  test('a block larger than the chunk (16 MiB) travels in one frame', async () => {
    const { a, b, rb } = await connectedPair();
    const payload = new SnapshotTestPayload(17 * MIB, 5);
    payload.blockStarts.splice(0, payload.blockStarts.length, 0, 16 * MIB);
    const sink = new SnapshotTestSink(payload.byteLength);
    rb.snapshotHandler = () => Promise.resolve(sink);
    await a.sendSnapshot(snapshotMessage(1, 2, 3), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND, chunkBytes: MIB });
    assert.deepEqual(sink.writes, [
      { offset: 0, length: 16 * MIB },
      { offset: 16 * MIB, length: MIB },
    ]);
    assert.ok(sameBytes(sink.bytes, payload.data));
    await a.close();
    await b.close();
  });

  test('the receiver restarts on the same port mid-send: the send resumes at what its sink verified, not at 0', async () => {
    const a = createTransport(1);
    const b1 = createTransport(2);
    await a.start(new Recorder());
    const rb1 = new Recorder();
    await b1.start(rb1);
    const url = urlOf(b1);
    a.setPeer(2, [url]);
    const payload = new SnapshotTestPayload(10 * MIB, 6);
    // The driver keeps the partial snapshot across its restart: one sink for both lives.
    const sink = new SnapshotTestSink(payload.byteLength);
    let restarted = false;
    sink.writeHook = async (index) => {
      if (index !== 4 || restarted) return;
      const signal = rb1.snapshotOpens.at(-1)?.signal;
      assert.ok(signal !== undefined);
      await aborted(signal); // the member closes under this write
      throw new StrataError(ErrorCode.UNAVAILABLE, 'closing');
    };
    rb1.snapshotHandler = () => Promise.resolve(sink);
    const sending = a.sendSnapshot(snapshotMessage(1, 2, 4), payload, {
      bytesPerSecond: FAST_BYTES_PER_SECOND,
      chunkBytes: MIB,
      stalledAttemptsMax: 20,
      progressTimeoutMs: 2_000,
    });
    for (let attempt = 0; attempt < 500 && sink.writes.length < 5; attempt += 1) await delay(10);
    assert.equal(sink.writes.length, 5);
    restarted = true;
    await b1.close();
    const b2 = createTransport(2, { listenUrl: url });
    const rb2 = new Recorder();
    const resumedAt: number[] = [];
    rb2.snapshotHandler = () => {
      resumedAt.push(sink.verifiedBytes());
      return Promise.resolve(sink);
    };
    await b2.start(rb2);
    await sending;
    assert.ok(sameBytes(sink.bytes, payload.data));
    assert.equal(resumedAt.length, 1);
    assert.ok((resumedAt[0] ?? 0) >= 4 * MIB, `resumed at ${resumedAt[0]}`);
    assert.equal(payload.reads.filter((read) => read.offset === 0).length, 1);
    assert.ok(a.snapshotStats.bytesResent < SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX * payload.largestBlock);
    await a.close();
    await b2.close();
  });
});

describe('GrpcTransport', { timeout: TEST_TIMEOUT_MS }, () => {
  test('the peer server offers 16 MiB HTTP/2 windows, not 64 KiB (which caps a 20 ms link at 1 MB/s)', async () => {
    const a = createTransport(1);
    await a.start(new Recorder());
    assert.deepEqual(await serverWindows(urlOf(a), HTTP2_WINDOW_BYTES), { streamWindowBytes: HTTP2_WINDOW_BYTES, connectionWindowBytes: HTTP2_WINDOW_BYTES });
    await a.close();
  });

  test('the lower id dials and both directions share that one stream', async () => {
    const { a, b, ra, rb } = await connectedPair();
    a.send([heartbeat(1, 2, 1)]);
    b.send([heartbeat(2, 1, 2)]);
    await rb.until(() => rb.messages.length === 1);
    await ra.until(() => ra.messages.length === 1);
    assert.equal(a.linkStatus(2)?.direction, 'dialed');
    assert.equal(b.linkStatus(1)?.direction, 'accepted');
    assert.equal(a.streamsDialed, 1);
    assert.equal(a.streamsAccepted, 0);
    assert.equal(b.streamsDialed, 0);
    assert.equal(b.streamsAccepted, 1);
    await a.close();
    await b.close();
  });

  test('a stream from a higher id is refused while the lower id dials it, and accepted (its sender learned) when not', async () => {
    const b = createTransport(2);
    const c = createTransport(3);
    await b.start(new Recorder());
    await c.start(new Recorder());
    b.setPeer(3, [urlOf(c)]);
    await b.whenConnected(3);
    // c does not know b: it learned b from the hello of b's stream.
    assert.deepEqual(c.linkStatus(2), { peer: 2, direction: 'accepted', established: true, learned: true, queuedMessages: 0, queuedBytes: 0 });
    assert.equal(c.streamsDialed, 0);
    // b dials 3, so a stream from 3 to b is refused: the lower id's stream wins.
    const refused = rawStream(urlOf(b));
    refused.call.write({ clusterId: CLUSTER_ID, from: 3, to: 2, batch: new Uint8Array(0) });
    const error = await refused.status;
    assert.equal(error?.code, grpc.status.ALREADY_EXISTS);
    assert.equal(error?.metadata.get('stratakv-code')[0], ErrorCode.UNAVAILABLE);
    assert.equal(b.streamsAccepted, 0);
    assert.equal(b.linkStatus(3)?.direction, 'dialed');
    refused.client.close();
    // b has no stream to 4 (nor knows it): 4's stream is accepted, and 4 learned.
    const accepted = rawStream(urlOf(b));
    accepted.call.write({ clusterId: CLUSTER_ID, from: 4, to: 2, batch: new Uint8Array(0), peerUrls: ['http://127.0.0.1:1'] });
    const hello = await accepted.frame(0);
    assert.equal(hello.from, 2);
    assert.equal(hello.to, 4);
    assert.deepEqual(hello.peerUrls, [urlOf(b)]);
    assert.equal(b.linkStatus(4)?.learned, true);
    assert.equal(b.streamsAccepted, 1);
    accepted.call.cancel();
    accepted.client.close();
    await b.close();
    await c.close();
  });

  test('a stream naming itself, no member, or malformed peer URLs is refused', async () => {
    const b = createTransport(2);
    await b.start(new Recorder());
    const hellos: FrameWire[] = [
      { clusterId: CLUSTER_ID, from: 2, to: 2, batch: new Uint8Array(0) },
      { clusterId: CLUSTER_ID, from: 0, to: 2, batch: new Uint8Array(0) },
      { clusterId: CLUSTER_ID, from: 1, to: 2, batch: new Uint8Array(0), peerUrls: ['https://127.0.0.1:1'] },
      { clusterId: CLUSTER_ID, from: 1, to: 2, batch: new Uint8Array(0), peerUrls: Array.from({ length: 17 }, (_, i) => `http://127.0.0.1:${i + 1}`) },
      { clusterId: CLUSTER_ID, from: 1, to: 2, batch: new Uint8Array(0), peerUrls: [`http://${'a'.repeat(2000)}:1`] },
    ];
    for (const frame of hellos) {
      const { client, call, status } = rawStream(urlOf(b));
      call.write(frame);
      const error = await status;
      assert.equal(error?.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(error?.metadata.get('stratakv-code')[0], ErrorCode.INVALID_ARGUMENT);
      client.close();
    }
    assert.equal(b.streamsAccepted, 0);
    await b.close();
  });

  test('a hello without peer URLs (an older member) is answered on its stream; calls need setPeer; the peer is forgotten with its stream', async () => {
    const b = createTransport(5);
    const rb = new Recorder();
    await b.start(rb);
    const raw = rawStream(urlOf(b));
    raw.call.write({ clusterId: CLUSTER_ID, from: 1, to: 5, batch: new Uint8Array(0) });
    const hello = await raw.frame(0);
    assert.equal(hello.from, 5);
    assert.equal(b.linkStatus(1)?.learned, true);
    b.send([heartbeat(5, 1, 3)]);
    const frame = await raw.frame(1);
    assert.deepEqual(decodeMessages(frame.batch), [heartbeat(5, 1, 3)]);
    raw.call.write({ clusterId: 0, from: 0, to: 0, batch: encodeMessages([heartbeat(1, 5, 9)]) });
    await rb.until(() => rb.messages.length === 1);
    assert.deepEqual(rb.messages, [heartbeat(1, 5, 9)]);
    // No URL to call it at: UNAVAILABLE, not a call to nowhere.
    await assert.rejects(b.request(1, 'status', new Uint8Array(0)), (error) => isStrataError(error, ErrorCode.UNAVAILABLE));
    assert.deepEqual(rb.unreachable, []);
    // The stream ends: the learned peer is forgotten, and sends to it are dropped and reported.
    raw.call.cancel();
    for (let attempt = 0; attempt < 500 && b.linkStatus(1) !== undefined; attempt += 1) await delay(10);
    assert.equal(b.linkStatus(1), undefined);
    b.send([heartbeat(5, 1, 4)]);
    await rb.until(() => rb.unreachable.length === 1);
    assert.deepEqual(rb.unreachable, [1]);
    assert.equal(b.streamsDialed, 0);
    raw.client.close();
    await b.close();
  });

  test('hellos carry advertiseUrls, or else the bound URLs without wildcard hosts', async () => {
    assert.throws(() => createTransport(2, { advertiseUrls: ['https://127.0.0.1:1'] }), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
    const cases: Array<{ transport: GrpcTransport; expected: string[] }> = [
      { transport: createTransport(2, { advertiseUrls: ['http://member-2.example:2380'] }), expected: ['http://member-2.example:2380'] },
      { transport: createTransport(2, { listenUrl: 'http://0.0.0.0:0' }), expected: [] },
    ];
    for (const { transport, expected } of cases) {
      await transport.start(new Recorder());
      const raw = rawStream(`http://127.0.0.1:${new URL(urlOf(transport)).port}`);
      raw.call.write({ clusterId: CLUSTER_ID, from: 1, to: 2, batch: new Uint8Array(0) });
      const hello = await raw.frame(0);
      assert.deepEqual(hello.peerUrls, expected);
      raw.call.cancel();
      raw.client.close();
      await transport.close();
    }
  });

  test('the higher id dials a lower one that does not know it; the lower calls it at its hello URLs; setPeer confirms it', async () => {
    const a = createTransport(1);
    const b = createTransport(2, { limits: { fallbackDialDelayMs: 20 } });
    const ra = new Recorder();
    const rb = new Recorder();
    await a.start(ra);
    await b.start(rb);
    b.setPeer(1, [urlOf(a)]);
    await b.whenConnected(1);
    assert.equal(b.linkStatus(1)?.direction, 'dialed');
    assert.equal(a.linkStatus(2)?.direction, 'accepted');
    assert.equal(a.linkStatus(2)?.learned, true);
    rb.requestHandler = (from, _kind, body) => Promise.resolve(Uint8Array.from([from, ...body]));
    assert.deepStrictEqual(await a.request(2, 'status', Uint8Array.from([7])), Uint8Array.from([1, 7]));
    // The driver applies the change that added 2: the same stream carries on.
    a.setPeer(2, [urlOf(b)]);
    assert.equal(a.linkStatus(2)?.learned, false);
    a.send([heartbeat(1, 2, 1)]);
    await rb.until(() => rb.messages.length === 1);
    assert.equal(a.streamsDialed, 0);
    assert.equal(a.streamsAccepted, 1);
    assert.equal(b.streamsDialed, 1);
    assert.deepEqual(ra.unreachable, []);
    await a.close();
    await b.close();
  });

  test('when both members dial, the lower id keeps its stream and the pair has one', async () => {
    const a = createTransport(1);
    const b = createTransport(2, { limits: { fallbackDialDelayMs: 1, dialBackoffMsMin: 1 } });
    const ra = new Recorder();
    const rb = new Recorder();
    await a.start(ra);
    await b.start(rb);
    b.setPeer(1, [urlOf(a)]);
    // As soon as b's fallback dial is open, a dials too (its setPeer dials at once).
    for (let attempt = 0; attempt < 5_000 && b.streamsDialed === 0; attempt += 1) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(b.streamsDialed, 1);
    a.setPeer(2, [urlOf(b)]);
    await a.whenConnected(2);
    await b.whenConnected(1);
    assert.equal(a.linkStatus(2)?.direction, 'dialed');
    assert.equal(b.linkStatus(1)?.direction, 'accepted');
    assert.equal(a.streamsAccepted, 0);
    a.send([heartbeat(1, 2, 1)]);
    b.send([heartbeat(2, 1, 2)]);
    await rb.until(() => rb.messages.length === 1);
    await ra.until(() => ra.messages.length === 1);
    assert.deepEqual(ra.unreachable, []);
    assert.deepEqual(rb.unreachable, []);
    await a.close();
    await b.close();
  });

  test('a removed member is refused with MEMBER_REMOVED, not learned again, until setPeer sets it again', async () => {
    const loggerB = new CapturingLogger();
    const { a, b, ra, rb } = await connectedPair({ logger: loggerB, limits: { fallbackDialDelayMs: 10 } });
    a.removePeer(2);
    // b still knows a and dials it (the fallback) when a's stream ends: refused, twice.
    await loggerB.until('it removed this member', 2);
    assert.equal(a.linkStatus(2), undefined);
    assert.equal(a.streamsAccepted, 0);
    a.setPeer(2, [urlOf(b)]);
    await a.whenConnected(2);
    a.send([heartbeat(1, 2, 1)]);
    await rb.until(() => rb.messages.length === 1);
    assert.deepEqual(ra.unreachable, []);
    await a.close();
    await b.close();
  });

  test('a malformed frame closes the stream', async () => {
    const logger = new CapturingLogger();
    const b = createTransport(5, { logger });
    const rb = new Recorder();
    await b.start(rb);
    const { client, call, status } = rawStream(urlOf(b));
    call.write({ clusterId: CLUSTER_ID, from: 1, to: 5, batch: new Uint8Array(0) });
    call.write({ clusterId: 0, from: 0, to: 0, batch: Uint8Array.from([0x93, 0x01, 0xc1, 0xff]) });
    await status;
    assert.equal(logger.count('malformed frame'), 1);
    assert.deepEqual(rb.messages, []);
    client.close();
    await b.close();
  });

  test('a stream naming another cluster id is refused and logged on both sides; calls too', async () => {
    const loggerA = new CapturingLogger();
    const loggerB = new CapturingLogger();
    const a = createTransport(1, { clusterId: 111, logger: loggerA });
    const b = createTransport(2, { clusterId: 222, logger: loggerB });
    const ra = new Recorder();
    await a.start(ra);
    await b.start(new Recorder());
    a.setPeer(2, [urlOf(b)]);
    b.setPeer(1, [urlOf(a)]);
    await loggerB.until('cluster id mismatch', 2);
    await loggerA.until('cluster id mismatch', 2);
    assert.equal(a.linkStatus(2)?.established ?? false, false);
    assert.equal(b.streamsAccepted, 0);
    await assert.rejects(a.request(2, 'status', new Uint8Array(0)), (error) => isStrataError(error, ErrorCode.CLUSTER_ID_MISMATCH));
    a.send([heartbeat(1, 2, 0)]);
    await ra.until(() => ra.unreachable.length === 1);
    await a.close();
    await b.close();
  });

  test('the dialler reconnects after the accepting side restarts on the same port', async () => {
    const a = createTransport(1);
    const b1 = createTransport(2);
    const ra = new Recorder();
    await a.start(ra);
    await b1.start(new Recorder());
    const url = urlOf(b1);
    a.setPeer(2, [url]);
    await a.whenConnected(2);
    await b1.close();
    // Bounded wait for a to notice the broken stream (it hears the server go away).
    for (let attempt = 0; attempt < 500 && a.linkStatus(2)?.established === true; attempt += 1) await delay(10);
    assert.notEqual(a.linkStatus(2)?.established, true);
    const b2 = createTransport(2, { listenUrl: url });
    const rb2 = new Recorder();
    await b2.start(rb2);
    assert.equal(urlOf(b2), url);
    await a.whenConnected(2);
    a.send([heartbeat(1, 2, 42)]);
    await rb2.until(() => rb2.messages.length === 1);
    assert.deepEqual(rb2.messages, [heartbeat(1, 2, 42)]);
    assert.ok(a.streamsDialed >= 2);
    await a.close();
    await b2.close();
  });

  test('a call to a restarted peer right after its stream came back waits for the call channel to reconnect', async () => {
    // 2 only accepts 1's stream, so its call channel to 1 reconnects on its own backoff; a call
    // made while that backoff runs must not fail on the channel's last refused attempt.
    const a = createTransport(2);
    const b1 = createTransport(1);
    await a.start(new Recorder());
    await b1.start(new Recorder());
    const url = urlOf(b1);
    a.setPeer(1, [url]);
    b1.setPeer(2, [urlOf(a)]);
    await a.whenConnected(1);
    await b1.close();
    for (let attempt = 0; attempt < 500 && a.linkStatus(1)?.established === true; attempt += 1) await delay(10);
    assert.notEqual(a.linkStatus(1)?.established, true);
    // Calls while 1 is down fail at once and push the channel's backoff up to its maximum.
    const downUntilMs = Date.now() + 2_500;
    for (let attempt = 0; attempt < 200 && Date.now() < downUntilMs; attempt += 1) {
      await assert.rejects(a.request(1, 'status', new Uint8Array(0), { timeoutMs: 1_000 }), (error) => isStrataError(error, ErrorCode.UNAVAILABLE));
      await delay(50);
    }
    const b2 = createTransport(1, { listenUrl: url });
    const rb2 = new Recorder();
    rb2.requestHandler = async () => Uint8Array.of(7);
    await b2.start(rb2);
    b2.setPeer(2, [urlOf(a)]);
    await a.whenConnected(1);
    assert.deepEqual([...(await a.request(1, 'status', new Uint8Array(0), { timeoutMs: 4_000 }))], [7]);
    await a.close();
    await b2.close();
  });

  test('request to a peer that is not listening fails with UNAVAILABLE', async () => {
    const a = createTransport(1);
    const b = createTransport(2);
    await a.start(new Recorder());
    await b.start(new Recorder());
    const url = urlOf(b);
    await b.close();
    a.setPeer(2, [url]);
    await assert.rejects(a.request(2, 'status', new Uint8Array(0), { timeoutMs: 2_000 }), (error) => isStrataError(error, ErrorCode.UNAVAILABLE));
    await a.close();
  });

  test('a silent peer is given up on after the handshake timeout, both ways', async () => {
    // A server that accepts Stream calls and never answers.
    const definition = protoLoader.loadSync(PEER_SERVICE_PROTO_PATH, { keepCase: false, longs: Number, defaults: true });
    const service = definition['stratakv.peer.Peer'] as grpc.ServiceDefinition;
    const silent = new grpc.Server();
    const held: Array<grpc.ServerDuplexStream<FrameWire, FrameWire>> = [];
    silent.addService(service, {
      Stream: (call: grpc.ServerDuplexStream<FrameWire, FrameWire>) => {
        held.push(call);
        call.on('data', () => {});
        call.on('error', () => {});
      },
      Call: () => {},
    });
    const port = await new Promise<number>((resolve, reject) =>
      silent.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))),
    );
    const logger = new CapturingLogger();
    const a = createTransport(1, { logger, limits: { handshakeTimeoutMs: 50 } });
    await a.start(new Recorder());
    a.setPeer(2, [`http://127.0.0.1:${port}`]);
    await logger.until('did not answer our hello', 2);
    assert.equal(a.linkStatus(2)?.established ?? false, false);
    await a.close();
    silent.forceShutdown();

    // And a transport refuses an accepted stream that never says hello.
    const b = createTransport(2, { limits: { handshakeTimeoutMs: 50 } });
    await b.start(new Recorder());
    const { client, status } = rawStream(urlOf(b));
    const error = await status;
    assert.equal(error?.metadata.get('stratakv-code')[0], ErrorCode.TIMEOUT);
    client.close();
    await b.close();
  });

  test('setPeer with new URLs moves the stream to the new address', async () => {
    const a = createTransport(1);
    const b = createTransport(2);
    const gone = createTransport(3);
    const rb = new Recorder();
    await a.start(new Recorder());
    await b.start(rb);
    await gone.start(new Recorder());
    const deadUrl = urlOf(gone);
    await gone.close();
    a.setPeer(2, [deadUrl]);
    a.setPeer(2, [deadUrl]); // the same URLs again change nothing
    a.setPeer(2, [urlOf(b)]);
    await a.whenConnected(2);
    a.send([heartbeat(1, 2, 5)]);
    await rb.until(() => rb.messages.length === 1);
    await a.close();
    await b.close();
  });

  test('setPeer refuses a URL that is not http://host:port', async () => {
    const a = createTransport(1);
    assert.throws(() => a.setPeer(2, ['https://127.0.0.1:1']), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => a.setPeer(2, ['127.0.0.1:1']), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => a.setPeer(2, []), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
    await a.close();
  });
});

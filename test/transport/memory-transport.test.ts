// Runs the Transport conformance suite against MemoryTransport, plus its test controls.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Logger, NodeId } from '../../src/raft/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/memory-transport.ts';
import { SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX } from '../../src/transport/transport.ts';
import type { SnapshotSendOptions } from '../../src/transport/transport.ts';
import { ErrorCode, StrataError, isStrataError } from '../../src/util/errors.ts';
import { VirtualClock } from '../../src/util/virtual-clock.ts';
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
  never,
  sameBytes,
  snapshotMessage,
} from './conformance.ts';

const network = new MemoryNetwork();

describeTransportConformance('memory', {
  create: (id, options = {}) =>
    new MemoryTransport(network, {
      localId: id,
      ...(options.clusterId === undefined ? {} : { clusterId: options.clusterId }),
      ...(options.limits === undefined ? {} : { limits: options.limits }),
    }),
  urlOf: (transport) => `memory://${transport.localId}`,
  connected: () => Promise.resolve(),
  queued: (transport, peer) => (transport as MemoryTransport).queuedMessages(peer),
  snapshotStats: (transport) => (transport as MemoryTransport).snapshotStats,
});

async function startPair(): Promise<{ network: MemoryNetwork; a: MemoryTransport; b: MemoryTransport; ra: Recorder; rb: Recorder }> {
  const net = new MemoryNetwork();
  const a = new MemoryTransport(net, { localId: 1 });
  const b = new MemoryTransport(net, { localId: 2 });
  const ra = new Recorder();
  const rb = new Recorder();
  await a.start(ra);
  await b.start(rb);
  a.setPeer(2, ['memory://2']);
  b.setPeer(1, ['memory://1']);
  return { network: net, a, b, ra, rb };
}

describe('MemoryNetwork controls', { timeout: TEST_TIMEOUT_MS }, () => {
  test('disconnect drops both ways and reports; reconnect restores delivery', async () => {
    const { network: net, a, b, ra, rb } = await startPair();
    net.disconnect(1, 2);
    assert.equal(net.isConnected(2, 1), false);
    a.send([heartbeat(1, 2, 0)]);
    b.send([heartbeat(2, 1, 0)]);
    await ra.until(() => ra.unreachable.length === 1);
    await rb.until(() => rb.unreachable.length === 1);
    await assert.rejects(a.request(2, 'status', new Uint8Array(0)), (error) => isStrataError(error, ErrorCode.UNAVAILABLE));
    net.reconnect(2, 1);
    a.send([heartbeat(1, 2, 1)]);
    await rb.until(() => rb.messages.length === 1);
    assert.deepEqual(rb.messages, [heartbeat(1, 2, 1)]);
    await a.close();
    await b.close();
  });

  test('a frame in flight when the link is cut is lost and reported', async () => {
    const { network: net, a, b, ra, rb } = await startPair();
    a.send([heartbeat(1, 2, 0)]);
    await Promise.resolve(); // the frame leaves at the end of this turn...
    await Promise.resolve();
    net.disconnect(1, 2); // ...and the link breaks before it lands
    await ra.until(() => ra.unreachable.length === 1);
    assert.deepEqual(rb.messages, []);
    await a.close();
    await b.close();
  });

  test('the drop filter loses selected messages silently and counts them', async () => {
    const { network: net, a, b, rb } = await startPair();
    net.setDropFilter((message) => message.type === 'heartbeat' && message.commit % 2 === 1);
    a.send([0, 1, 2, 3, 4].map((i) => heartbeat(1, 2, i)));
    await rb.until(() => rb.messages.length === 3);
    assert.deepEqual(rb.messages.map((m) => (m.type === 'heartbeat' ? m.commit : -1)), [0, 2, 4]);
    assert.equal(net.dropped, 2);
    net.setDropFilter(undefined);
    await a.close();
    await b.close();
  });

  test('transports of different clusters cannot reach each other', async () => {
    const net = new MemoryNetwork();
    const a = new MemoryTransport(net, { localId: 1, clusterId: 1 });
    const b = new MemoryTransport(net, { localId: 2, clusterId: 2 });
    const ra = new Recorder();
    await a.start(ra);
    await b.start(new Recorder());
    a.setPeer(2, ['memory://2']);
    a.send([heartbeat(1, 2, 0)]);
    await ra.until(() => ra.unreachable.length === 1);
    await a.close();
    await b.close();
  });
});

/** AttemptLog records the codes of failed snapshot attempts (from the transport's log). */
class AttemptLog implements Logger {
  readonly failedCodes: string[] = [];
  debug(): void {}
  warn(): void {}
  info(message: string, fields?: Record<string, unknown>): void {
    if (message === 'snapshot stream attempt failed') this.failedCodes.push(String(fields?.['code']));
  }
}

interface VirtualPair {
  clock: VirtualClock;
  net: MemoryNetwork;
  a: MemoryTransport;
  b: MemoryTransport;
  rb: Recorder;
  log: AttemptLog;
}

// virtualPair starts members 1 and 2 on one VirtualClock: time moves only in settle().
async function virtualPair(): Promise<VirtualPair> {
  const clock = new VirtualClock();
  const net = new MemoryNetwork();
  const log = new AttemptLog();
  const a = new MemoryTransport(net, { localId: 1, clock, logger: log });
  const b = new MemoryTransport(net, { localId: 2, clock });
  const rb = new Recorder();
  await a.start(new Recorder());
  await b.start(rb);
  a.setPeer(2, ['memory://2']);
  b.setPeer(1, ['memory://1']);
  return { clock, net, a, b, rb, log };
}

// settle runs the virtual clock until `promise` settles (bounded in steps and virtual time)
// and says when, in virtual ms, and how.
async function settle(clock: VirtualClock, promise: Promise<void>): Promise<{ atMs: number; error: unknown }> {
  let outcome: { atMs: number; error: unknown } | undefined;
  promise.then(
    () => (outcome = { atMs: clock.now(), error: undefined }),
    (error: unknown) => (outcome = { atMs: clock.now(), error }),
  );
  for (let step = 0; step < 10_000 && outcome === undefined; step += 1) await clock.run({ untilMs: clock.now() + 10 });
  assert.ok(outcome !== undefined, 'the send settled within 100 virtual seconds');
  return outcome;
}

function sendTo(pair: VirtualPair, payload: SnapshotTestPayload, index: number, options: SnapshotSendOptions = {}): Promise<void> {
  return pair.a.sendSnapshot(snapshotMessage(1, 2, index), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND, chunkBytes: MIB, ...options });
}

// mibBlocks makes a payload of `count` blocks of exactly 1 MiB, so that every chunk is one block.
function mibBlocks(count: number, seed: number): SnapshotTestPayload {
  const payload = new SnapshotTestPayload(count * MIB, seed);
  payload.blockStarts.splice(0, payload.blockStarts.length, ...Array.from({ length: count }, (_, i) => i * MIB));
  return payload;
}

describe('MemoryTransport snapshot streams', { timeout: TEST_TIMEOUT_MS }, () => {
  test('the rate limit under a virtual clock: 8 MiB at 4 MiB/s in 1 MiB chunks ends at exactly 1,750 ms', async () => {
    const pair = await virtualPair();
    const payload = mibBlocks(8, 31);
    const sink = new SnapshotTestSink(payload.byteLength);
    pair.rb.snapshotHandler = () => Promise.resolve(sink);
    // One chunk's burst at once, then 1 MiB per 250 ms: the eighth leaves at 7 × 250 ms.
    const outcome = await settle(pair.clock, sendTo(pair, payload, 1, { bytesPerSecond: 4 * MIB }));
    assert.equal(outcome.error, undefined);
    assert.equal(outcome.atMs, 1_750);
    assert.ok(sameBytes(sink.bytes, payload.data));
    await pair.a.close();
    await pair.b.close();
  });

  test('a stalled receiver fails the send at exactly stalledAttemptsMax progress timeouts plus the backoffs', async () => {
    const pair = await virtualPair();
    const sink = new SnapshotTestSink(4 * MIB);
    sink.writeHook = () => never();
    pair.rb.snapshotHandler = () => Promise.resolve(sink);
    const outcome = await settle(pair.clock, sendTo(pair, mibBlocks(4, 32), 2, { progressTimeoutMs: 1_000, stalledAttemptsMax: 3 }));
    assert.ok(isStrataError(outcome.error, ErrorCode.UNAVAILABLE));
    // Attempt 1 times out at 1,000; backoff 50; attempt 2 (waiting for the hung write) at
    // 2,050; backoff 100; attempt 3 at 3,150: the third without progress fails the send.
    assert.equal(outcome.atMs, 3_150);
    assert.deepEqual(pair.log.failedCodes, ['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
    assert.equal(sink.writes.length, 1, 'later streams wait for the hung write: one sink call at a time');
    await pair.a.close();
    await pair.b.close();
  });

  test('a stream broken after 3 MiB resumes at 3 MiB; at most one window is sent again', async () => {
    const pair = await virtualPair();
    const payload = mibBlocks(10, 33);
    const sink = new SnapshotTestSink(payload.byteLength);
    const resumedAt: number[] = [];
    pair.rb.snapshotHandler = () => {
      resumedAt.push(sink.verifiedBytes());
      return Promise.resolve(sink);
    };
    pair.net.injectSnapshotFault(1, 2, { kind: 'break', afterBytes: 3 * MIB });
    const outcome = await settle(pair.clock, sendTo(pair, payload, 3));
    assert.equal(outcome.error, undefined);
    assert.ok(sameBytes(sink.bytes, payload.data));
    assert.deepEqual(resumedAt, [0, 3 * MIB]);
    const stats = pair.a.snapshotStats;
    assert.equal(stats.attempts, 2);
    assert.ok(stats.bytesResent > 0 && stats.bytesResent <= SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX * MIB, `${stats.bytesResent} bytes resent`);
    assert.equal(stats.bytesSent, payload.byteLength + stats.bytesResent);
    assert.equal(payload.reads.filter((read) => read.offset === 0).length, 1);
    assert.deepEqual(sink.outOfOrder, []);
    await pair.a.close();
    await pair.b.close();
  });

  test('a chunk damaged in transit is refused with CORRUPTION and sent again; the sink never sees the damage', async () => {
    const pair = await virtualPair();
    const payload = mibBlocks(6, 34);
    const sink = new SnapshotTestSink(payload.byteLength);
    pair.rb.snapshotHandler = () => Promise.resolve(sink);
    pair.net.injectSnapshotFault(1, 2, { kind: 'corrupt', afterBytes: 2 * MIB });
    const outcome = await settle(pair.clock, sendTo(pair, payload, 4));
    assert.equal(outcome.error, undefined);
    assert.deepEqual(pair.log.failedCodes, ['CORRUPTION']);
    assert.ok(sameBytes(sink.bytes, payload.data));
    // Every write the sink took was good: the damaged chunk never reached it.
    assert.deepEqual(sink.writes.map((write) => write.offset), [0, 1, 2, 3, 4, 5].map((i) => i * MIB));
    assert.ok(pair.a.snapshotStats.bytesResent <= SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX * MIB);
    await pair.a.close();
    await pair.b.close();
  });

  test('a cut link breaks the stream; once healed, the next attempt resumes where the sink is', async () => {
    const pair = await virtualPair();
    const payload = mibBlocks(10, 35);
    const sink = new SnapshotTestSink(payload.byteLength);
    const resumedAt: number[] = [];
    pair.rb.snapshotHandler = () => {
      resumedAt.push(sink.verifiedBytes());
      return Promise.resolve(sink);
    };
    sink.writeHook = (index) => {
      if (index !== 4 || resumedAt.length > 1) return;
      pair.net.disconnect(1, 2);
      pair.clock.setTimeout(() => pair.net.reconnect(1, 2), 300);
    };
    const outcome = await settle(pair.clock, sendTo(pair, payload, 5, { stalledAttemptsMax: 10 }));
    assert.equal(outcome.error, undefined);
    assert.ok(sameBytes(sink.bytes, payload.data));
    assert.equal(resumedAt[0], 0);
    assert.equal(resumedAt.at(-1), 5 * MIB, 'the write under way when the link was cut still counts');
    assert.ok(pair.a.snapshotStats.attempts >= 3, 'attempts failed while the link was cut');
    assert.ok(pair.a.snapshotStats.bytesResent <= SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX * MIB);
    assert.equal(pair.net.snapshotStreamsOpen, 0);
    await pair.a.close();
    await pair.b.close();
  });

  test('a link model delays the stream without reordering it; a lost frame breaks it and the send resumes', async () => {
    const pair = await virtualPair();
    let snapshotTraffic = 0;
    // Uneven delays that would reorder frames if the stream let them; the tenth is lost.
    pair.net.setLinkModel((_from, _to, traffic) => {
      if (traffic.kind !== 'snapshot') return [0];
      snapshotTraffic += 1;
      if (snapshotTraffic === 10) return [];
      return [snapshotTraffic % 3 === 0 ? 40 : 3, 500];
    });
    const payload = mibBlocks(8, 36);
    const sink = new SnapshotTestSink(payload.byteLength);
    pair.rb.snapshotHandler = () => Promise.resolve(sink);
    const outcome = await settle(pair.clock, sendTo(pair, payload, 6));
    assert.equal(outcome.error, undefined);
    assert.ok(sameBytes(sink.bytes, payload.data));
    assert.deepEqual(sink.outOfOrder, [], 'delivered in order (and the second copies were not delivered)');
    assert.equal(pair.a.snapshotStats.attempts, 2);
    await pair.a.close();
    await pair.b.close();
  });

  test('a member receives at most 4 snapshot streams at once; a fifth sender is refused until one is done', async () => {
    const net = new MemoryNetwork();
    const receiver = new MemoryTransport(net, { localId: 9 });
    const recorder = new Recorder();
    await receiver.start(recorder);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const sinks = new Map<NodeId, SnapshotTestSink>();
    recorder.snapshotHandler = (from) => {
      let sink = sinks.get(from);
      if (sink === undefined) {
        sink = new SnapshotTestSink(2 * MIB);
        sink.writeHook = () => released;
        sinks.set(from, sink);
      }
      return Promise.resolve(sink);
    };
    const senders: MemoryTransport[] = [];
    const sends: Array<Promise<void>> = [];
    for (const id of [1, 2, 3, 4, 5]) {
      const sender = new MemoryTransport(net, { localId: id });
      await sender.start(new Recorder());
      sender.setPeer(9, ['memory://9']);
      senders.push(sender);
      const payload = new SnapshotTestPayload(2 * MIB, 40 + id);
      sends.push(sender.sendSnapshot(snapshotMessage(id, 9, 10 + id), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND, stalledAttemptsMax: 100 }));
    }
    for (let turn = 0; turn < 500 && receiver.snapshotStats.incomingRefused === 0; turn += 1) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.ok(receiver.snapshotStats.incomingRefused >= 1);
    assert.equal(receiver.incomingSnapshotStreams, 4);
    release();
    await Promise.all(sends);
    assert.equal(sinks.size, 5);
    for (const sink of sinks.values()) assert.equal(sink.finishCalls, 1);
    for (const sender of senders) await sender.close();
    await receiver.close();
  });

  test("removePeer fails the sends to that peer with UNAVAILABLE; closing the receiver aborts its streams' signals", async () => {
    const pair = await virtualPair();
    const sink = new SnapshotTestSink(4 * MIB);
    sink.writeHook = (index) => (index === 1 ? never() : undefined);
    pair.rb.snapshotHandler = () => Promise.resolve(sink);
    const pending = sendTo(pair, mibBlocks(4, 37), 7);
    for (let step = 0; step < 100 && sink.writes.length < 2; step += 1) await pair.clock.run({ untilMs: pair.clock.now() + 1 });
    pair.a.removePeer(2);
    const outcome = await settle(pair.clock, pending);
    assert.ok(isStrataError(outcome.error, ErrorCode.UNAVAILABLE));
    const opened = pair.rb.snapshotOpens[0];
    assert.ok(opened !== undefined);
    await pair.b.close();
    await aborted(opened.signal);
    assert.equal(sink.finishCalls, 0);
    await pair.a.close();
  });

  test('an answer from a member that closed meanwhile is lost with it: the send fails UNAVAILABLE, not with that answer', async () => {
    const pair = await virtualPair();
    const sink = new SnapshotTestSink(4 * MIB);
    sink.writeHook = (index) => {
      if (index === 1) void pair.b.close();
      if (index === 1) throw new StrataError(ErrorCode.IO_ERROR, 'too late');
    };
    pair.rb.snapshotHandler = () => Promise.resolve(sink);
    const outcome = await settle(pair.clock, sendTo(pair, mibBlocks(4, 38), 8, { stalledAttemptsMax: 2 }));
    assert.ok(isStrataError(outcome.error, ErrorCode.UNAVAILABLE));
    await pair.a.close();
  });
});

// Runs the Transport conformance suite against MemoryTransport, plus its test controls.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/memory-transport.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { Recorder, TEST_TIMEOUT_MS, describeTransportConformance, heartbeat } from './conformance.ts';

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

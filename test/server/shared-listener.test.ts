// gRPC and plain HTTP on one client port (etcd's /health and /version beside its gRPC API):
// connections are told apart by their first bytes, even when those arrive one at a time, and
// the gRPC server counts its calls with go-grpc-prometheus's metrics.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';

import { createMetricsRegistry, createObsRequestHandler, GrpcServerMetrics, startObsHttpServer, type MetricsRegistry } from '../../src/obs/index.ts';
import type { EtcdServer } from '../../src/server/index.ts';
import { startEtcdServer } from '../../src/server/index.ts';
import type { EtcdTestClient } from './etcd-test-client.ts';
import { connectEtcdTestClient } from './etcd-test-client.ts';
import type { SingleMember } from './single-member.ts';
import { freeClientUrl, startSingleMember } from './single-member.ts';

// rawHttp sends `request` over a plain socket in `pieces` (split at the given offsets, each
// after a pause) and answers the whole response text.
function rawHttp(url: string, request: string, splits: readonly number[]): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within 5 s; got ${JSON.stringify(answer)}`));
    }, 5_000);
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
    socket.on('connect', async () => {
      let from = 0;
      for (const to of [...splits, request.length]) {
        socket.write(request.slice(from, to));
        from = to;
        await new Promise((wait) => setTimeout(wait, 30));
      }
    });
  });
}

describe('one client port for gRPC and plain HTTP', () => {
  let member: SingleMember;
  let server: EtcdServer;
  let client: EtcdTestClient;
  let registry: MetricsRegistry;

  before(async () => {
    registry = await createMetricsRegistry();
    const clientUrl = await freeClientUrl();
    member = await startSingleMember({ name: 'one', peerUrls: ['http://127.0.0.1:2380'], clientUrls: [clientUrl] });
    server = await startEtcdServer({
      backend: member.backend,
      listenUrls: [clientUrl],
      maxRequestBytes: 1 << 20,
      grpcMetrics: new GrpcServerMetrics(registry.meter, { extensive: false }),
      httpHandler: createObsRequestHandler({
        health: { alarmTypes: () => [], hasLeader: () => true, linearizableRead: async () => undefined },
        version: () => ({ etcdserver: '3.4.0', etcdcluster: '3.4.0' }),
      }),
    });
    client = connectEtcdTestClient(server.urls[0] ?? '');
  });

  after(async () => {
    client.close();
    await server.close({ force: true });
    await member.stop();
    await registry.shutdown();
  });

  test('gRPC calls and HTTP/1.1 requests share the port, and the calls are counted', async () => {
    await client.kv.Put({ key: Buffer.from('k'), value: Buffer.from('v') });
    const got = await client.kv.Range({ key: Buffer.from('k') });
    assert.equal(Buffer.from(got.kvs[0]?.value ?? []).toString(), 'v');
    const health = await fetch(`${server.urls[0]}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { health: 'true', reason: '' });
    assert.deepEqual(await (await fetch(`${server.urls[0]}/version`)).json(), { etcdserver: '3.4.0', etcdcluster: '3.4.0' });
    // gRPC again after the HTTP requests, on the same client connection.
    await client.kv.Put({ key: Buffer.from('k'), value: Buffer.from('w') });

    const metrics = await startObsHttpServer(['http://127.0.0.1:0'], createObsRequestHandler({ metrics: registry }));
    try {
      const text = await (await fetch(`${metrics.urls[0]}/metrics`)).text();
      assert.match(text, /grpc_server_started_total\{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"\} 2/);
      assert.match(text, /grpc_server_handled_total\{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK"\} 2/);
      assert.match(text, /grpc_server_msg_sent_total\{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Range"\} 1/);
    } finally {
      await metrics.close();
    }
  });

  test('an HTTP request whose first bytes arrive one by one is still told apart', async () => {
    const answer = await rawHttp(server.urls[0] ?? '', 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', [1, 2, 3]);
    assert.match(answer, /^HTTP\/1\.1 200 OK/);
    assert.match(answer, /\{"health":"true","reason":""\}/);
  });

  test('a path it does not serve is 404, and gRPC keeps working', async () => {
    const answer = await rawHttp(server.urls[0] ?? '', 'GET /v3/kv/range HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', []);
    assert.match(answer, /^HTTP\/1\.1 404/);
    const got = await client.kv.Range({ key: Buffer.from('k') });
    assert.equal(Buffer.from(got.kvs[0]?.value ?? []).toString(), 'w');
  });
});

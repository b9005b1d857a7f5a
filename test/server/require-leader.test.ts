// etcd's `hasleader` metadata (clientv3.WithRequireLeader): a member that knows no leader —
// cut off from its peers by a partition — refuses such a call at once with UNAVAILABLE
// "etcdserver: no leader", so the client goes on to another member instead of waiting for its
// deadline; calls without the metadata still wait, and a member with a leader serves both.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';

import { RaftNodeBackend, startEtcdServer } from '../../src/server/index.ts';
import { leaderOf, put, startCluster } from '../node/fixture.ts';
import { connectEtcdTestClient } from './etcd-test-client.ts';

const UNAVAILABLE = 14;
const REQUIRE_LEADER = { hasleader: 'true' };

describe('hasleader metadata', () => {
  test('a member cut off from its peers refuses calls that require a leader at once, and serves them again once healed', async () => {
    // Real time: the gRPC server and client do real I/O.
    const { network, nodes, driver } = await startCluster({ clock: 'system' });
    const leader = leaderOf(nodes);
    const follower = nodes.find((node) => node !== leader);
    assert.ok(follower !== undefined);
    await driver.settle(put(leader, 'k', 'v'));
    const server = await startEtcdServer({ backend: new RaftNodeBackend(follower, 'test'), listenUrls: ['http://127.0.0.1:0'], maxRequestBytes: 1_572_864 });
    const client = connectEtcdTestClient(server.urls[0] ?? '');
    try {
      const key = Buffer.from('k');
      const served = await client.kv.Range({ key }, { metadata: REQUIRE_LEADER, deadline: Date.now() + 5_000 });
      assert.equal(served.kvs.length, 1, 'with a leader, a call that requires one is served');

      network.isolate(follower.memberId);
      await driver.until('the cut-off member no longer knows a leader', () => follower.status().leaderId === 0, 3_000);
      const startedAt = Date.now();
      for (const call of [
        () => client.kv.Range({ key }, { metadata: REQUIRE_LEADER, deadline: Date.now() + 5_000 }),
        () => client.kv.Put({ key, value: Buffer.from('w') }, { metadata: REQUIRE_LEADER, deadline: Date.now() + 5_000 }),
        () => client.cluster.MemberList({}, { metadata: REQUIRE_LEADER, deadline: Date.now() + 5_000 }),
      ]) {
        await assert.rejects(call(), (error: ServiceError) => error.code === UNAVAILABLE && error.details === 'etcdserver: no leader');
      }
      // Refused at once: far less than one of the 5 s deadlines.
      assert.ok(Date.now() - startedAt < 2_000, `refusals took ${Date.now() - startedAt} ms`);
      // Without the metadata the call waits for a leader until its own deadline, as etcd's does.
      await assert.rejects(client.kv.Range({ key }, { deadline: Date.now() + 300 }), (error: ServiceError) => error.code !== UNAVAILABLE || error.details !== 'etcdserver: no leader');

      network.heal();
      await driver.until('the member knows a leader again', () => follower.status().leaderId !== 0, 5_000);
      const again = await client.kv.Range({ key }, { metadata: REQUIRE_LEADER, deadline: Date.now() + 5_000 });
      assert.equal(again.kvs.length, 1);
    } finally {
      client.close();
      await server.close({ force: true });
    }
  });
});

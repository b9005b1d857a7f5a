// Admin.LogHold over gRPC: three real in-memory RaftNodes, each served by startEtcdServer with
// raftNodeLogSource, and the real LogStreamClient. A hold sent to a follower is proposed through
// the leader and answered once the answering member applied it (with its id and the deadline
// by its wall clock); every member applies it; a release drops it everywhere. A malformed
// request is refused INVALID_ARGUMENT naming the field by the server itself (not only by the
// client), and a source without holds answers UNIMPLEMENTED. That the members' snapshotters
// honour a hold is test/node's (log-holds.test.ts, snapshotter.test.ts) and, over processes,
// test/integration/log-hold.test.ts's.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { EndpointPicker } from '../../src/client/endpoint-picker.ts';
import { AdminCalls, LogStreamClient } from '../../src/client/index.ts';
import { LOG_HOLD_TTL_MS_MAX, RaftNode } from '../../src/node/index.ts';
import type { RaftNodeOptions } from '../../src/node/index.ts';
import type { EtcdServer } from '../../src/server/index.ts';
import { RaftNodeBackend, raftNodeLogSource, startEtcdServer } from '../../src/server/index.ts';
import { MemoryLogStore, openMemoryKvStateMachine } from '../../src/storage/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { ErrorCode, isStrataError, SYSTEM_CLOCK } from '../../src/util/index.ts';

const MEMBERS = ['a', 'b', 'c'];
const WAIT_MS_MAX = 15_000;

let nodes: RaftNode[] = [];
const servers: EtcdServer[] = [];
let leader: RaftNode;
let follower: RaftNode;
let followerEndpoint: string;
let withoutHoldsEndpoint: string;

const peerUrl = (name: string): string => `http://${name}.log-hold.test:2380`;
const endpointOf = (server: EtcdServer | undefined): string => (server?.urls[0] ?? '').replace('http://', '');

function memberOptions(network: MemoryNetwork, name: string): RaftNodeOptions {
  return {
    name,
    initialCluster: MEMBERS.map((member) => ({ name: member, peerUrls: [peerUrl(member)] })),
    initialClusterState: 'new',
    initialClusterToken: 'log-hold-test',
    advertisePeerUrls: [peerUrl(name)],
    advertiseClientUrls: [],
    heartbeatIntervalMs: 20,
    electionTimeoutMs: 200,
    clock: SYSTEM_CLOCK,
    createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
    storage: async () => ({ log: new MemoryLogStore(), stateMachine: await openMemoryKvStateMachine() }),
  };
}

async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS_MAX;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

before(async () => {
  const network = new MemoryNetwork();
  nodes = await Promise.all(MEMBERS.map((name) => RaftNode.start(memberOptions(network, name))));
  await until('a leader is known everywhere', () => nodes.every((node) => node.leaderId() !== 0));
  leader = nodes.find((node) => node.status().role === 'leader') as RaftNode;
  follower = nodes.find((node) => node !== leader) as RaftNode;
  for (let n = 0; n < 20; n += 1) await leader.kv({ type: 'put', key: Buffer.from(`k${n}`), value: Buffer.from('v') }, { timeoutMs: 10_000 });
  servers.push(await startEtcdServer({ backend: new RaftNodeBackend(follower, 'test'), logSource: raftNodeLogSource(follower), listenUrls: ['http://127.0.0.1:0'], maxRequestBytes: 1024 * 1024 }));
  followerEndpoint = endpointOf(servers[0]);
  // A log source without holds (an embedder's own): LogHold is not served.
  const { holdLog: _unused, ...withoutHolds } = raftNodeLogSource(leader);
  servers.push(await startEtcdServer({ backend: new RaftNodeBackend(leader, 'test'), logSource: withoutHolds, listenUrls: ['http://127.0.0.1:0'], maxRequestBytes: 1024 * 1024 }));
  withoutHoldsEndpoint = endpointOf(servers[1]);
});

after(async () => {
  for (const server of servers) await server.close({ force: true });
  for (const node of nodes) await node.stop({ transferLeadership: false });
});

test('a hold sent to a follower is answered once applied there, with its deadline, and every member applies it; a release drops it', async () => {
  const client = new LogStreamClient({ endpoints: [followerEndpoint] });
  try {
    const index = leader.status().appliedIndex;
    const beforeMs = Date.now();
    const answer = await client.hold('copy-1', index, 120_000);
    assert.equal(answer.memberId, follower.memberId);
    assert.equal(answer.endpoint, followerEndpoint);
    assert.ok(answer.expiresAtMs >= beforeMs + 120_000 && answer.expiresAtMs <= Date.now() + 120_000, `the deadline is the follower's wall clock plus the ttl (${answer.expiresAtMs})`);
    assert.deepEqual(follower.logHoldList(), [{ consumer: 'copy-1', index, expiresAtMs: answer.expiresAtMs }], 'applied on the answering member before the answer');
    await until('every member applied the hold', () => nodes.every((node) => node.logHoldList().length === 1));
    assert.ok(nodes.every((node) => node.status().snapshots.logHoldIndexLowest === index));
    const release = await client.hold('copy-1', 0, 0);
    assert.equal(release.expiresAtMs, 0);
    assert.deepEqual(follower.logHoldList(), []);
    await until('every member applied the release', () => nodes.every((node) => node.logHoldList().length === 0));
  } finally {
    client.close();
  }
});

test('the server refuses a malformed hold INVALID_ARGUMENT naming the field; a source without holds answers UNIMPLEMENTED', async () => {
  // Raw calls: the client checks the same before sending.
  const calls = new AdminCalls(['LogHold']);
  const picker = new EndpointPicker([followerEndpoint]);
  const refused = async (request: object, field: string): Promise<void> => {
    await assert.rejects(
      calls.callFirst(picker, 'LogHold', () => request, { timeoutMs: 5_000 }),
      (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === field,
      JSON.stringify(request),
    );
  };
  try {
    await refused({ consumer: '', index: 5, ttl_ms: 1_000 }, 'consumer');
    await refused({ consumer: 'x'.repeat(65), index: 5, ttl_ms: 1_000 }, 'consumer');
    await refused({ consumer: 'a\u0001b', index: 5, ttl_ms: 1_000 }, 'consumer');
    await refused({ consumer: 'copy', index: 5, ttl_ms: 0 }, 'ttl_ms');
    await refused({ consumer: 'copy', index: 5, ttl_ms: LOG_HOLD_TTL_MS_MAX + 1 }, 'ttl_ms');
    assert.ok(nodes.every((node) => node.logHoldList().length === 0), 'nothing was held');
    const client = new LogStreamClient({ endpoints: [withoutHoldsEndpoint] });
    try {
      await assert.rejects(client.hold('copy', 5, 1_000), (error: unknown) => isStrataError(error, ErrorCode.UNIMPLEMENTED));
      await assert.rejects(client.hold('copy', 5, 0), (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === 'ttl_ms', 'the client checks first');
    } finally {
      client.close();
    }
  } finally {
    calls.close();
  }
});

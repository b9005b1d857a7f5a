// `stratakv diff` against real in-memory RaftNodes served by startEtcdServer with their digest
// pins (raftNodeDigestPins): cluster X of three members and cluster Y of one, the same 400 keys
// with 6 differences planted in Y. It checks that X against Y is a cluster diff (content, each
// at its applied state) naming exactly the planted keys; that two healthy members of X are
// equal as replicas (full contents at one checkpoint pinned through Raft); and that a follower
// of X that applied one write differently — an entry applied to its state machine directly,
// so that it skips the cluster's entry at that index — is named by the replica diff: that key
// and nothing else, in both directions.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import type { DiffReport } from '../../src/client/index.ts';
import { DiffClient } from '../../src/client/index.ts';
import { RaftNode } from '../../src/node/index.ts';
import type { RaftNodeOptions } from '../../src/node/index.ts';
import type { Entry } from '../../src/raft/index.ts';
import type { EtcdServer } from '../../src/server/index.ts';
import { RaftNodeBackend, raftNodeDigestPins, raftNodeLogSource, startEtcdServer } from '../../src/server/index.ts';
import type { KvStateMachine } from '../../src/storage/index.ts';
import { encodeKvCommand, MemoryLogStore, openMemoryKvStateMachine } from '../../src/storage/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { SYSTEM_CLOCK } from '../../src/util/index.ts';

const KEYS = 400;
const WAIT_MS_MAX = 15_000;
const keyName = (n: number): string => `key/${String(n).padStart(4, '0')}`;

interface Member {
  readonly name: string;
  readonly node: RaftNode;
  readonly machine: KvStateMachine;
  server: EtcdServer | undefined;
  endpoint: string;
}

const members: Member[] = [];
let leaderX: Member;
let healthyX: Member;
let brokenX: Member;
let memberY: Member;
const plantedY: string[] = [];

async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS_MAX;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function startCluster(token: string, names: readonly string[]): Promise<Member[]> {
  const network = new MemoryNetwork();
  const peerUrl = (name: string): string => `http://${name}.${token}.test:2380`;
  const machines = new Map<string, KvStateMachine>();
  const options = (name: string): RaftNodeOptions => ({
    name,
    initialCluster: names.map((member) => ({ name: member, peerUrls: [peerUrl(member)] })),
    initialClusterState: 'new',
    initialClusterToken: token,
    advertisePeerUrls: [peerUrl(name)],
    advertiseClientUrls: [],
    heartbeatIntervalMs: 20,
    electionTimeoutMs: 200,
    clock: SYSTEM_CLOCK,
    createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
    storage: async () => {
      const stateMachine = await openMemoryKvStateMachine();
      machines.set(name, stateMachine);
      return { log: new MemoryLogStore(), stateMachine };
    },
  });
  const nodes = await Promise.all(names.map((name) => RaftNode.start(options(name))));
  await until(`${token} has a leader known everywhere`, () => nodes.every((node) => node.leaderId() !== 0));
  const started: Member[] = [];
  for (const [index, node] of nodes.entries()) {
    const name = names[index] ?? '';
    const machine = machines.get(name);
    assert.ok(machine !== undefined);
    const server = await startEtcdServer({
      backend: new RaftNodeBackend(node, 'test'),
      logSource: raftNodeLogSource(node),
      digestPins: raftNodeDigestPins(node),
      listenUrls: ['http://127.0.0.1:0'],
      maxRequestBytes: 1024 * 1024,
    });
    started.push({ name, node, machine, server, endpoint: (server.urls[0] ?? '').replace('http://', '') });
  }
  members.push(...started);
  return started;
}

const leaderOf = (cluster: readonly Member[]): Member => {
  const found = cluster.find((member) => member.node.status().role === 'leader');
  assert.ok(found !== undefined, 'a leader');
  return found;
};

const put = (member: Member, key: string, value: string): Promise<unknown> => member.node.kv({ type: 'put', key: Buffer.from(key), value: Buffer.from(value) }, { timeoutMs: 10_000 });

before(async () => {
  const clusterX = await startCluster('diff-x', ['x1', 'x2', 'x3']);
  const clusterY = await startCluster('diff-y', ['y1']);
  leaderX = leaderOf(clusterX);
  [healthyX, brokenX] = clusterX.filter((member) => member !== leaderX) as [Member, Member];
  memberY = leaderOf(clusterY);
  for (let n = 0; n < KEYS; n += 1) {
    await put(leaderX, keyName(n), `value ${n}`);
    await put(memberY, keyName(n), `value ${n}`);
  }
  // Y: two keys missing, two extra, two changed.
  for (const [kind, n] of [['missing', 11], ['missing', 222], ['extra', 33], ['extra', 333], ['different', 44], ['different', 399]] as const) {
    if (kind === 'missing') await memberY.node.kv({ type: 'deleteRange', key: Buffer.from(keyName(n)) });
    if (kind === 'extra') await put(memberY, `${keyName(n)}/extra`, 'only in Y');
    if (kind === 'different') await put(memberY, keyName(n), 'changed');
    plantedY.push(`${kind} ${kind === 'extra' ? `${keyName(n)}/extra` : keyName(n)}`);
  }
  plantedY.sort((x, y) => Buffer.compare(Buffer.from(x.split(' ')[1] ?? ''), Buffer.from(y.split(' ')[1] ?? '')));
  const applied = (): number => leaderX.node.streamCommittedIndex();
  await until('every member of X applied every write', () => [healthyX, brokenX].every((member) => member.node.streamCommittedIndex() === applied()));
});

after(async () => {
  for (const member of members) await member.server?.close({ force: true });
  for (const member of members) await member.node.stop({ transferLeadership: false });
});

// quiet waits until cluster X commits nothing new for QUIET_MS and every member applied it all.
async function quiet(): Promise<void> {
  const QUIET_MS = 400;
  let last = -1;
  let since = Date.now();
  await until('cluster X is quiet', () => {
    const committed = leaderX.node.streamCommittedIndex();
    if (committed !== last) {
      last = committed;
      since = Date.now();
    }
    return Date.now() - since >= QUIET_MS && [healthyX, brokenX].every((member) => member.node.streamCommittedIndex() === committed);
  });
}

const shape = (report: DiffReport): string[] => report.differences.map((difference) => `${difference.kind} ${Buffer.from(difference.key).toString()}`);

test('two clusters: exactly the planted differences, on key and value', async () => {
  const client = new DiffClient();
  try {
    const report = await client.diff({ endpoints: [healthyX.endpoint], against: [memberY.endpoint] });
    assert.equal(report.mode, 'clusters');
    assert.deepEqual(shape(report), plantedY);
    assert.equal(report.a.memberId, healthyX.node.memberId);
    assert.equal(report.b.clusterId, memberY.node.clusterId);
  } finally {
    client.close();
  }
});

test('two healthy members of one cluster are equal replicas at one checkpoint', async () => {
  const client = new DiffClient();
  try {
    const report = await client.diff({ endpoints: [leaderX.endpoint], against: [healthyX.endpoint] });
    assert.equal(report.mode, 'replicas');
    assert.equal(report.hash, 'full');
    assert.equal(report.equal, true);
    assert.equal(report.a.index, report.b.index, 'one checkpoint index');
    assert.equal(report.a.pinId, `i${report.a.index}`);
  } finally {
    client.close();
  }
});

test('a follower that applied one write differently: the replica diff names that key', async () => {
  // The cluster is idle (the checkpoint reports of the diff before have come in): the
  // follower's next index is the cluster's next entry.
  await quiet();
  const index = brokenX.machine.appliedIndex();
  assert.equal(index, leaderX.node.streamCommittedIndex(), 'the follower applied everything');
  const entry: Entry = { index: index + 1, term: leaderX.node.currentTerm(), type: 0, data: encodeKvCommand({ id: 1, request: { type: 'put', key: Buffer.from(keyName(123)), value: Buffer.from('rewritten') } }) };
  await brokenX.machine.apply([entry]);
  // The cluster's entry at that index writes the same key: the follower skips it (applied already).
  await put(leaderX, keyName(123), 'proper');
  assert.equal(leaderX.node.streamCommittedIndex(), index + 1, 'no other entry came in between');
  await until('the follower applied the cluster entry', () => brokenX.node.streamCommittedIndex() === index + 1);
  const client = new DiffClient();
  try {
    const report = await client.diff({ endpoints: [healthyX.endpoint], against: [brokenX.endpoint] });
    assert.equal(report.mode, 'replicas');
    assert.deepEqual(shape(report), [`different ${keyName(123)}`]);
    const [difference] = report.differences;
    assert.equal(Buffer.from(difference?.a?.value ?? []).toString(), 'proper');
    assert.equal(Buffer.from(difference?.b?.value ?? []).toString(), 'rewritten');
    assert.equal(difference?.a?.modRevision, difference?.b?.modRevision, 'the same revision, another value');
    const reverse = await client.diff({ endpoints: [brokenX.endpoint], against: [leaderX.endpoint], skipValues: true });
    assert.deepEqual(shape(reverse), [`different ${keyName(123)}`]);
  } finally {
    client.close();
  }
});

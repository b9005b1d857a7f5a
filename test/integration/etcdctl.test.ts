// etcdctl against a real 3-process stratakv cluster. The KV part runs the same etcdctl script
// against a real etcd (Debian's etcd-server) started by the test and requires the same
// output, byte for byte after masking what differs by nature (member and cluster ids).
// The cluster part (member list/add --learner/promote/remove, endpoint status, move-leader)
// checks etcdctl's answers against what etcd prints in the same situation.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { etcdctl, etcdctlSkipReason, freePort, TestCluster } from './cluster-process.ts';

const ETCD = '/usr/bin/etcd';
const skip = etcdctlSkipReason();

// The KV script: each step is etcdctl arguments and optional stdin.
const KV_SCRIPT: { readonly args: string[]; readonly input?: string }[] = [
  { args: ['put', 'foo', 'bar'] },
  { args: ['put', 'foo2', 'bar2'] },
  { args: ['put', 'fop', 'x'] },
  { args: ['put', 'foo', 'bar-again', '--prev-kv'] },
  { args: ['get', 'foo'] },
  { args: ['get', 'foo', '--prefix'] },
  { args: ['get', 'foo', '--prefix', '--limit', '1'] },
  { args: ['get', 'f', '--prefix', '--keys-only'] },
  { args: ['get', 'f', '--prefix', '--count-only', '-w', 'json'] },
  { args: ['get', 'foo', '--prefix', '--limit', '1', '-w', 'json'] },
  { args: ['get', 'foo', 'fop'] },
  { args: ['get', 'a', '--from-key'] },
  { args: ['get', 'f', '--prefix', '--sort-by', 'MODIFY', '--order', 'DESCEND'] },
  { args: ['get', 'missing'] },
  { args: ['txn'], input: 'value("foo2") = "bar2"\n\nput k1 v1\nget foo\n\nput k2 v2\n\n' },
  { args: ['txn'], input: 'mod("foo") < "2"\n\nput k3 v3\n\ndel foo2\n\n' },
  { args: ['txn', '-w', 'json'], input: 'version("k1") = "1"\n\nget k1\n\n\n' },
  { args: ['get', 'k', '--prefix'] },
  { args: ['del', 'foo'] },
  { args: ['del', 'k', '--prefix', '--prev-kv'] },
  { args: ['del', 'nothing'] },
  { args: ['get', '', '--prefix', '-w', 'fields'] },
  // Bad input: the same refusals as etcd.
  { args: ['put', 'big'], input: 'x'.repeat(1_600_000) },
  { args: ['put', 'huge'], input: 'x'.repeat(2_200_000) },
  { args: ['txn'], input: '\n\nput dup 1\nput dup 2\n\n\n' },
  { args: ['get', 'foo', '--rev', '99999'] },
];

// ids, revisions' raft terms and the like differ between two clusters; the data must not.
function mask(text: string): string {
  return text
    .replace(/"(cluster_id|member_id|raft_term)":\d+/g, '"$1":X')
    .replace(/"(ClusterID|MemberID|RaftTerm)" : \d+/g, '"$1" : X');
}

// etcdctl's own retry log lines carry timestamps and random connection names.
function withoutClientLogs(text: string): string {
  return text
    .split('\n')
    .filter((line) => !line.startsWith('{"level"'))
    .join('\n');
}

async function startEtcd(directory: string): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const child = spawn(
    ETCD,
    [
      '--name=ref',
      `--data-dir=${join(directory, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${clientPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=ref=http://127.0.0.1:${peerPort}`,
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const endpoint = `127.0.0.1:${clientPort}`;
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if (etcdctl([endpoint], ['endpoint', 'health']).status === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    endpoint,
    async stop() {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGTERM');
      await exited;
    },
  };
}

describe('etcdctl against a 3-process stratakv cluster', { skip }, () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start(3);
  });

  after(async () => {
    await cluster?.stop();
  });

  test('KV commands print what etcd prints', { skip: existsSync(ETCD) ? undefined : 'no /usr/bin/etcd to compare with' }, async () => {
    const directory = mkdtempSync(join(tmpdir(), 'stratakv-etcd-ref-'));
    const etcd = await startEtcd(directory);
    try {
      for (const step of KV_SCRIPT) {
        const expected = etcdctl([etcd.endpoint], step.args, step.input);
        const actual = etcdctl(cluster.endpoints(), step.args, step.input);
        const label = `etcdctl ${step.args.join(' ').slice(0, 80)}`;
        assert.equal(actual.status, expected.status, `${label}: exit status\n${actual.stderr}`);
        assert.equal(mask(actual.stdout), mask(expected.stdout), `${label}: stdout`);
        assert.equal(withoutClientLogs(actual.stderr), withoutClientLogs(expected.stderr), `${label}: stderr`);
      }
    } finally {
      await etcd.stop();
      rmSync(directory, { recursive: true, force: true });
    }
    // After the bad requests the cluster still serves.
    assert.equal(etcdctl(cluster.endpoints(), ['put', 'after', 'ok']).stdout, 'OK\n');
  });

  test('endpoint status shows one leader and the members agree on term and index', () => {
    const result = etcdctl(cluster.endpoints(), ['endpoint', 'status', '-w', 'json']);
    assert.equal(result.status, 0, result.stderr);
    const statuses = JSON.parse(result.stdout) as { Endpoint: string; Status: { header: { member_id: number }; leader: number; raftTerm: number; version: string } }[];
    assert.equal(statuses.length, 3);
    const leaders = new Set(statuses.map((entry) => entry.Status.leader));
    assert.equal(leaders.size, 1);
    assert.ok(statuses.some((entry) => entry.Status.header.member_id === [...leaders][0]));
    for (const entry of statuses) assert.match(entry.Status.version, /^3\.4\.0\+stratakv\./);
  });

  test('member add --learner, refused promote, start, promote, move-leader, remove', async () => {
    const endpoints = cluster.endpoints();
    assert.equal(etcdctl(endpoints, ['put', 'before-learner', 'ok']).stdout, 'OK\n');
    const list = etcdctl(endpoints, ['member', 'list']);
    assert.equal(list.status, 0, list.stderr);
    const lines = list.stdout.trim().split('\n');
    assert.equal(lines.length, 3);
    for (const line of lines) assert.match(line, /^[0-9a-f]+, started, n\d, http:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+, false$/);

    const clientPort = await freePort();
    const peerPort = await freePort();
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const added = etcdctl(endpoints, ['member', 'add', 'n4', `--peer-urls=${peerUrl}`, '--learner']);
    assert.equal(added.status, 0, added.stderr);
    const addedMatch = /^Member\s+([0-9a-f]+) added to cluster\s+([0-9a-f]+)\n\nETCD_NAME="n4"\nETCD_INITIAL_CLUSTER="([^"]+)"\nETCD_INITIAL_ADVERTISE_PEER_URLS="([^"]+)"\nETCD_INITIAL_CLUSTER_STATE="existing"\n$/.exec(added.stdout);
    assert.ok(addedMatch, added.stdout);
    const [, learnerId, , initialCluster] = addedMatch;
    assert.ok(learnerId !== undefined && initialCluster !== undefined);

    const unstarted = etcdctl(endpoints, ['member', 'list']).stdout;
    assert.match(unstarted, new RegExp(`^${learnerId}, unstarted, , ${peerUrl}, , true$`, 'm'));

    // A second learner is refused (etcd allows one), and so is promoting one that has not caught up.
    const second = etcdctl(endpoints, ['member', 'add', 'n5', `--peer-urls=http://127.0.0.1:${await freePort()}`, '--learner']);
    assert.equal(second.status, 1);
    assert.match(second.stderr, /etcdserver: too many learner members in cluster/);
    const early = etcdctl(endpoints, ['member', 'promote', learnerId]);
    assert.equal(early.status, 1);
    assert.match(early.stderr, /etcdserver: can only promote a learner member which is in sync with leader/);

    const learner = cluster.launch('n4', clientPort, peerPort, initialCluster, 'existing');
    // The learner catches up from the log and publishes its name and client URL.
    let started = '';
    for (let attempt = 0; attempt < 200; attempt += 1) {
      started = etcdctl(endpoints, ['member', 'list']).stdout;
      if (new RegExp(`^${learnerId}, started, n4, ${peerUrl}, ${learner.clientUrl}, true$`, 'm').test(started)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.match(started, new RegExp(`^${learnerId}, started, n4, `, 'm'), cluster.logOf(learner));
    assert.equal(etcdctl([learner.endpoint], ['get', 'before-learner', '--consistency=s']).stdout, 'before-learner\nok\n');

    let promoted = etcdctl(endpoints, ['member', 'promote', learnerId]);
    for (let attempt = 0; attempt < 50 && promoted.status !== 0; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      promoted = etcdctl(endpoints, ['member', 'promote', learnerId]);
    }
    assert.equal(promoted.status, 0, promoted.stderr);
    assert.match(promoted.stdout, new RegExp(`^Member\\s+${learnerId} promoted in cluster\\s+[0-9a-f]+\\n$`));
    const promotedAgain = etcdctl(endpoints, ['member', 'promote', learnerId]);
    assert.match(promotedAgain.stderr, /etcdserver: can only promote a learner member/);

    // move-leader to the new voter: etcdctl finds the leader itself.
    const allEndpoints = cluster.endpoints();
    const moved = etcdctl(allEndpoints, ['move-leader', learnerId]);
    assert.equal(moved.status, 0, moved.stderr);
    assert.match(moved.stdout, new RegExp(`^Leadership transferred from [0-9a-f]+ to ${learnerId}\\n$`));
    const leader = await cluster.waitForLeader();
    assert.equal(leader.name, 'n4');
    const badTarget = etcdctl(allEndpoints, ['move-leader', 'abcdef']);
    assert.equal(badTarget.status, 1);
    assert.match(badTarget.stderr, /etcdserver: bad leader transferee/);

    // Remove n1: it stops by itself after its grace period; the others keep serving.
    const n1 = cluster.members.find((member) => member.name === 'n1');
    assert.ok(n1 !== undefined);
    const n1Id = new RegExp(`^([0-9a-f]+), started, n1,`, 'm').exec(etcdctl(allEndpoints, ['member', 'list']).stdout)?.[1];
    assert.ok(n1Id !== undefined);
    const removed = etcdctl(allEndpoints, ['member', 'remove', n1Id]);
    // A CI run once saw this forwarded remove fail with ECONNREFUSED from a peer; the members'
    // logs (ids in decimal there) say which one was asked.
    const membersLog = (): string => cluster.members.map((member) => `--- ${member.name}\n${cluster.logOf(member)}`).join('\n');
    if (removed.status !== 0) assert.fail(`member remove failed: ${removed.stderr}\n${etcdctl(allEndpoints, ['member', 'list', '-w', 'json']).stdout}\n${membersLog()}`);
    assert.match(removed.stdout, new RegExp(`^Member\\s+${n1Id} removed from cluster\\s+[0-9a-f]+\\n$`));
    const exitCode = await Promise.race([n1.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 15_000))]);
    assert.equal(exitCode, 0, cluster.logOf(n1));
    const missing = etcdctl(cluster.endpoints(), ['member', 'remove', n1Id]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /etcdserver: member not found/);
    const remaining = etcdctl(cluster.endpoints(), ['member', 'list']).stdout.trim().split('\n');
    assert.equal(remaining.length, 3);
    assert.equal(etcdctl(cluster.endpoints(), ['put', 'after-remove', 'ok']).stdout, 'OK\n');
  });
});

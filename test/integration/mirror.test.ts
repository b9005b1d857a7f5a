// Mirror mode on a real 3-process cluster (`stratakv serve`), with the real MirrorClient and
// the real etcdctl: begin through a follower, apply the source's keys with their counters,
// etcdctl's put refused with the message that says where writes go, kill -9 the leader, the
// new leader still a mirror that refuses, end, then puts work from the revision reached.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { MirrorClient } from '../../src/client/index.ts';
import type { MirrorPut } from '../../src/storage/index.ts';
import { etcdctl, etcdctlSkipReason, TestCluster } from './cluster-process.ts';
import type { MemberProcess } from './cluster-process.ts';

const skip = etcdctlSkipReason();
const b = (text: string): Buffer => Buffer.from(text);
const STATE_BEGUN = b('it:begun');
const STATE_APPLIED = b('it:applied');
const SOURCE_REVISION = 50;

let cluster: TestCluster | undefined;
after(async () => {
  await cluster?.stop();
});

// refusesPut runs `etcdctl put` against one member and checks that it is refused as a mirror's.
function refusesPut(member: MemberProcess): void {
  const result = etcdctl([member.endpoint], ['put', 'client-key', 'v']);
  assert.notEqual(result.status, 0, `etcdctl put on ${member.name} was refused: ${result.stdout}`);
  assert.match(result.stderr, /stratakv: read-only mirror: /, result.stderr);
  // The member's own refusal names `stratakv migrate copy switch`; a member that has not applied
  // the begin yet passes the put to the leader, whose state machine refuses it in its own words.
  assert.match(result.stderr, /writes go to the source|send writes to the source cluster until `stratakv migrate copy switch`/, result.stderr);
}

// counters reads one key's counters with etcdctl (JSON output, as etcd prints them).
function counters(endpoints: readonly string[], key: string, consistency: 'l' | 's' = 'l'): { create: number; mod: number; version: number; headerRevision: number } {
  const result = etcdctl(endpoints, ['get', key, '-w', 'json', `--consistency=${consistency}`]);
  assert.equal(result.status, 0, result.stderr);
  const answer = JSON.parse(result.stdout) as { header: { revision: number }; kvs?: { create_revision: number; mod_revision: number; version: number }[] };
  const kv = answer.kvs?.[0];
  assert.ok(kv !== undefined, `${key} is there: ${result.stdout}`);
  return { create: kv.create_revision, mod: kv.mod_revision, version: kv.version, headerRevision: answer.header.revision };
}

test('a 3-member mirror: begun through a follower, refusing etcdctl put, still a mirror after kill -9 of the leader, taking writes after end', { skip }, async () => {
  cluster = await TestCluster.start(3);
  const leader = await cluster.waitForLeader();
  const follower = cluster.members.find((member) => member !== leader);
  assert.ok(follower !== undefined);

  const throughFollower = new MirrorClient({ endpoints: [follower.endpoint], timeoutMs: 10_000 });
  try {
    const begun = await throughFollower.begin(STATE_BEGUN, { requireEmpty: true });
    assert.equal(begun.header.endpoint, follower.endpoint);
    assert.notEqual(begun.header.memberId, 0);
    const puts: MirrorPut[] = [
      { key: b('src/a'), value: b('va'), createRevision: 3, modRevision: 40, version: 5, lease: 0n },
      // An etcd lease id (the member id in its top bits): far beyond 2^53.
      { key: b('src/b'), value: b('vb'), createRevision: 50, modRevision: 50, version: 1, lease: 2156839707291722977n },
    ];
    const applied = await throughFollower.apply({ expectState: STATE_BEGUN, state: STATE_APPLIED, revision: SOURCE_REVISION, puts, deletes: [] });
    assert.equal(applied.revision, SOURCE_REVISION);
  } finally {
    throughFollower.close();
  }

  // A mirror lags its source: a linearizable read is refused (as etcd's learners refuse it),
  // a serializable one is served. The leader applied the write it answered.
  const linearizable = etcdctl(cluster.endpoints(), ['get', 'src/a']);
  assert.notEqual(linearizable.status, 0, linearizable.stdout);
  assert.match(linearizable.stderr, /read-only mirror.*linearizable reads go to the source cluster/, linearizable.stderr);
  assert.deepEqual(counters([leader.endpoint], 'src/a', 's'), { create: 3, mod: 40, version: 5, headerRevision: SOURCE_REVISION });
  // etcdctl prints the lease id as a JSON number, which JSON.parse would round: read its text.
  const leased = etcdctl([leader.endpoint], ['get', 'src/b', '-w', 'json', '--consistency=s']);
  assert.equal(leased.status, 0, leased.stderr);
  assert.match(leased.stdout, /"lease":2156839707291722977[,}]/, leased.stdout);
  assert.doesNotMatch(etcdctl([leader.endpoint], ['get', 'src/a', '-w', 'json', '--consistency=s']).stdout, /"lease"/, 'no lease: left out, as etcd leaves zero fields out');
  for (const member of cluster.members) refusesPut(member);

  await cluster.kill(leader);
  const newLeader = await cluster.waitForLeader();
  assert.notEqual(newLeader.name, leader.name);

  // Every endpoint, the killed one first: the client passes over it.
  const mirror = new MirrorClient({ endpoints: [leader.endpoint, ...cluster.endpoints()], timeoutMs: 10_000 });
  try {
    const view = await mirror.read();
    assert.deepEqual(view.state, new Uint8Array(STATE_APPLIED));
    assert.equal(view.revision, SOURCE_REVISION);
    for (const member of cluster.members.filter((candidate) => candidate !== leader)) refusesPut(member);

    const ended = await mirror.end(STATE_APPLIED);
    assert.equal(ended.state, undefined);
    assert.equal(ended.revision, SOURCE_REVISION);
  } finally {
    mirror.close();
  }

  const put = etcdctl([newLeader.endpoint], ['put', 'after-switch', 'v']);
  assert.equal(put.status, 0, put.stderr);
  assert.equal(put.stdout.trim(), 'OK');
  assert.deepEqual(counters(cluster.endpoints(), 'after-switch'), { create: SOURCE_REVISION + 1, mod: SOURCE_REVISION + 1, version: 1, headerRevision: SOURCE_REVISION + 1 });
});

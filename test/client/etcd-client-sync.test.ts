// EtcdClient follows the cluster's members (clientv3's Sync and AutoSyncInterval), against
// real stratakv members: in-memory RaftNodes served by startEtcdServer (memory-cluster.ts).
// sync() learns every started voter from one endpoint and leaves out learners and members
// that never started; a member that was removed, or whose node stopped, makes a call sync and
// retry elsewhere; auto-sync carries a client that knew only one old member through a live
// migration that replaces every member, with no failed operation; close() stops the timer.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';

import type { ClientLogger } from '../../src/client/index.ts';
import { EtcdClient } from '../../src/client/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { MemoryCluster, WAIT_MS_MAX, type ServedMember } from './memory-cluster.ts';

const text = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? new Uint8Array()).toString('utf8');
const sorted = (list: readonly string[]): string[] => [...list].sort();

// recordingLogger keeps the client's diagnostics and wakes the cluster's waits on each.
function recordingLogger(cluster: MemoryCluster): ClientLogger & { readonly lines: string[] } {
  const lines: string[] = [];
  const record = (message: string): void => {
    lines.push(message);
    cluster.notify();
  };
  return { lines, debug: record, warn: record };
}

test('autoSyncIntervalMs is a non-negative integer; 0 is off', () => {
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => new EtcdClient({ endpoints: ['127.0.0.1:2379'], autoSyncIntervalMs: bad }), (error) => isStrataError(error, 'INVALID_ARGUMENT'), String(bad));
  }
  new EtcdClient({ endpoints: ['127.0.0.1:2379'], autoSyncIntervalMs: 0 }).close();
});

describe('sync against a 3-member stratakv cluster', () => {
  let cluster: MemoryCluster;
  const clients: EtcdClient[] = [];
  const client = (options: ConstructorParameters<typeof EtcdClient>[0]): EtcdClient => {
    const created = new EtcdClient(options);
    clients.push(created);
    return created;
  };

  before(async () => {
    cluster = await MemoryCluster.start('sync', ['s1', 's2', 's3']);
  });
  after(async () => {
    for (const created of clients) created.close();
    await cluster?.stop();
  });

  test('a client given one endpoint learns all three members, and logs the change', async () => {
    const logger = recordingLogger(cluster);
    const one = client({ endpoints: [`http://${cluster.member('s1').endpoint}`], logger });
    assert.deepEqual(one.endpoints, [cluster.member('s1').endpoint]);
    const learned = await one.sync();
    assert.deepEqual(sorted(learned), sorted(cluster.members.map((member) => member.endpoint)));
    assert.deepEqual(one.endpoints, learned);
    assert.ok(logger.lines.some((line) => line.startsWith('endpoints changed')), logger.lines.join('\n'));
    // The same answer again changes nothing, and logs nothing.
    const changes = (): number => logger.lines.filter((line) => line.startsWith('endpoints changed')).length;
    const before = changes();
    await one.sync();
    assert.equal(changes(), before);
  });

  test('the preferred endpoint stays preferred across a sync', async () => {
    const s2 = cluster.member('s2');
    const preferring = client({ endpoints: [s2.endpoint, cluster.member('s1').endpoint] });
    await preferring.sync();
    assert.equal(preferring.endpoints.length, 3);
    const answer = await preferring.get('anything', { serializable: true });
    assert.equal(answer.header.memberId, BigInt(s2.node.memberId));
  });

  test('learners and members that never started are left out', async () => {
    // A learner that runs (it has published its name) and a voter that was added but never started (no name).
    const learner = await cluster.addLearner('s4');
    const neverStarted = await cluster.leader().node.addMember([cluster.peerUrl('s5')], false, { timeoutMs: WAIT_MS_MAX });
    const following = client({ endpoints: [cluster.member('s3').endpoint] });
    const listed = await following.memberList();
    assert.equal(listed.length, 5);
    assert.ok(listed.some((member) => member.isLearner && member.name === 's4'));
    assert.ok(listed.some((member) => !member.isLearner && member.name === '' && member.id === BigInt(neverStarted.member.id)));
    const voters = ['s1', 's2', 's3'].map((name) => cluster.member(name).endpoint);
    assert.deepEqual(sorted(await following.sync()), sorted(voters));
    // Once promoted, the learner is a voter the client uses.
    await cluster.leader().node.promoteMember(learner.node.memberId, { timeoutMs: WAIT_MS_MAX });
    assert.deepEqual(sorted(await following.sync()), sorted([...voters, learner.endpoint]));
    await cluster.leader().node.removeMember(neverStarted.member.id, { timeoutMs: WAIT_MS_MAX });
  });

  test('a removed member makes a write sync and go to a member of the cluster, without waiting for the timer', async () => {
    const leader = cluster.leader();
    const victim = cluster.members.find((member) => member !== leader && !member.node.status().removed);
    assert.ok(victim !== undefined);
    const other = cluster.members.find((member) => member !== leader && member !== victim && !member.node.status().removed);
    assert.ok(other !== undefined);
    // The timer would fire only in ten minutes: any sync here is one a failure started.
    const logger = recordingLogger(cluster);
    const following = client({ endpoints: [victim.endpoint, other.endpoint], autoSyncIntervalMs: 600_000, logger });
    await leader.node.removeMember(victim.node.memberId, { timeoutMs: WAIT_MS_MAX });
    await cluster.until('the victim knows it was removed', () => victim.node.status().removed);
    const put = await following.put('after-removal', 'ok');
    assert.notEqual(put.header.memberId, BigInt(victim.node.memberId));
    const remaining = cluster.members.filter((member) => !member.node.status().removed).map((member) => member.endpoint);
    assert.equal(remaining.length, 3);
    assert.deepEqual(sorted(following.endpoints), sorted(remaining));
    assert.ok(logger.lines.some((line) => line.startsWith('endpoints changed')), logger.lines.join('\n'));
    const read = await following.get('after-removal');
    assert.equal(text(read.kvs[0]?.value), 'ok');
    assert.equal(read.kvs[0]?.version, 1);
  });

  test('a member whose node stopped makes a read sync and go to another member; a write is not repeated', async () => {
    const leader = cluster.leader();
    const live = cluster.members.filter((member) => !member.node.status().removed);
    const stopping = live.find((member) => member !== leader);
    assert.ok(stopping !== undefined);
    const others = live.filter((member) => member !== stopping);
    const following = client({ endpoints: [stopping.endpoint, ...others.map((member) => member.endpoint)], autoSyncIntervalMs: 600_000 });
    // The node stops; its server still answers, with "etcdserver: server stopped".
    await stopping.node.stop({ transferLeadership: false });
    const memberListsBefore = others.reduce((sum, member) => sum + member.memberListCalls(), 0);
    const read = await following.get('missing-key');
    assert.notEqual(read.header.memberId, BigInt(stopping.node.memberId));
    assert.ok(others.reduce((sum, member) => sum + member.memberListCalls(), 0) > memberListsBefore, 'the failure started a sync');
    // etcd answers "server stopped" also to a proposal it was waiting on, so a write that got it is not sent again.
    const refusing = client({ endpoints: [stopping.endpoint, ...others.map((member) => member.endpoint)] });
    await assert.rejects(refusing.put('after-stop', 'ok'), (error: unknown) => isStrataError(error, ErrorCode.STOPPED));
  });

});

describe('auto-sync carries a client through a live migration that replaces every member', () => {
  let cluster: MemoryCluster;
  let client: EtcdClient;

  before(async () => {
    cluster = await MemoryCluster.start('migrate', ['old1', 'old2', 'old3']);
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  test('the client, given one old endpoint, ends on the new members with every operation answered', async () => {
    const logger = recordingLogger(cluster);
    const old = ['old1', 'old2', 'old3'].map((name) => cluster.member(name));
    client = new EtcdClient({ endpoints: [old[0]?.endpoint ?? ''], autoSyncIntervalMs: 100, timeoutMs: 5000, logger });
    const endpointsAre = (members: readonly ServedMember[]): boolean =>
      JSON.stringify(sorted(client.endpoints)) === JSON.stringify(sorted(members.map((member) => member.endpoint)));
    await cluster.until('auto-sync learned the old members', () => endpointsAre(old));

    // The workload: writes of distinct keys, each read back, until the migration is over.
    const failures: unknown[] = [];
    let acknowledged = 0;
    let running = true;
    const workload = (async () => {
      for (let index = 0; running && failures.length === 0; index += 1) {
        try {
          await client.put(`migrate/${String(index).padStart(6, '0')}`, `value ${index}`);
          const read = await client.get(`migrate/${String(index).padStart(6, '0')}`);
          assert.equal(text(read.kvs[0]?.value), `value ${index}`);
          acknowledged = index + 1;
          cluster.notify();
        } catch (error) {
          failures.push(error);
          cluster.notify();
        }
      }
    })();
    // Each phase must see the workload go on.
    const progressed = async (phase: string): Promise<void> => {
      const mark = acknowledged;
      await cluster.until(`writes go on ${phase}`, () => acknowledged >= mark + 5 || failures.length > 0);
      assert.deepEqual(failures, [], `no failure ${phase}`);
    };
    await progressed('before the migration');

    // 1. New members join as learners, one at a time (etcd allows one learner), and are promoted.
    const added: ServedMember[] = [];
    for (const name of ['new1', 'new2', 'new3']) {
      const learner = await cluster.addLearner(name);
      await progressed(`while ${name} is a learner`);
      await cluster.leader().node.promoteMember(learner.node.memberId, { timeoutMs: WAIT_MS_MAX });
      added.push(learner);
    }
    await cluster.until('auto-sync learned all six voters', () => endpointsAre([...old, ...added]));
    await progressed('with six voters');

    // 2. Leadership moves to a new member.
    const newLeader = added[0];
    assert.ok(newLeader !== undefined);
    await cluster.leader().node.transferLeadership(newLeader.node.memberId, { timeoutMs: WAIT_MS_MAX });
    await progressed('after the leader transfer');

    // 3. The old members leave in one joint change; each stops by itself after its grace period.
    await newLeader.node.replaceMembers({ promote: [], remove: old.map((member) => member.node.memberId) }, { timeoutMs: WAIT_MS_MAX });
    await cluster.until('auto-sync dropped the old members', () => endpointsAre(added));
    await Promise.all(old.map((member) => member.node.whenStopped()));
    // Then their processes exit: nothing answers on the old endpoints any more.
    await Promise.all(old.map((member) => member.stop()));
    await progressed('after the old members are gone');

    running = false;
    await workload;
    assert.deepEqual(failures, []);
    assert.ok(endpointsAre(added));
    const last = await client.put('migrate/last', 'done');
    assert.ok(added.some((member) => BigInt(member.node.memberId) === last.header.memberId));
    // Every acknowledged write is there once; none was applied twice (each key has version 1).
    const all = await client.get('migrate/0', { rangeEnd: 'migrate/9' });
    assert.equal(all.count, acknowledged);
    assert.ok(all.kvs.every((kv) => kv.version === 1));
    assert.ok(logger.lines.some((line) => line.startsWith('endpoints changed')));
    assert.ok(logger.lines.some((line) => line.startsWith('closed the connection to an endpoint no longer listed')), logger.lines.join('\n'));
  });
});

describe('close stops auto-sync', () => {
  let cluster: MemoryCluster;

  before(async () => {
    cluster = await MemoryCluster.start('close', ['c1']);
  });
  after(async () => {
    await cluster?.stop();
  });

  test('no MemberList reaches the member after close()', async () => {
    const member = cluster.member('c1');
    const intervalMs = 20;
    const syncing = new EtcdClient({ endpoints: [member.endpoint], autoSyncIntervalMs: intervalMs });
    const before = member.memberListCalls();
    await cluster.until('auto-sync ran three times', () => member.memberListCalls() >= before + 3);
    syncing.close();
    const atClose = member.memberListCalls();
    // Absence can only be shown by waiting: many intervals, and no call.
    await new Promise((resolve) => setTimeout(resolve, 15 * intervalMs));
    assert.equal(member.memberListCalls(), atClose);
  });

  // runChild runs `lines` as an ES module in a new Node process and answers its exit code and output.
  async function runChild(lines: readonly string[]): Promise<{ code: number | null; output: string }> {
    const clientModule = pathToFileURL(join(import.meta.dirname, '../../src/client/index.ts')).href;
    const script = [`import { EtcdClient } from ${JSON.stringify(clientModule)};`, ...lines].join('\n');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('exit', resolve);
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the process did not exit within ${WAIT_MS_MAX} ms: ${output}`));
      }, WAIT_MS_MAX);
    }).finally(() => clearTimeout(timer));
    return { code, output };
  }

  for (const closes of [true, false]) {
    test(closes ? 'a process whose client auto-syncs exits by itself once the client is closed' : 'an auto-sync timer alone does not keep a process alive (it is unref\'d)', async () => {
      const { code, output } = await runChild([
        `const client = new EtcdClient({ endpoints: [${JSON.stringify(cluster.member('c1').endpoint)}], autoSyncIntervalMs: 10 });`,
        'await client.sync();',
        // Several auto-syncs run meanwhile.
        'await new Promise((resolve) => setTimeout(resolve, 100));',
        closes ? 'client.close();' : '',
        'console.log("done");',
      ]);
      assert.equal(code, 0, output);
      assert.match(output, /done/);
    });
  }
});

describe('a connection to an endpoint no longer listed closes only once no call uses it', () => {
  let first: MemoryCluster;
  let second: MemoryCluster;

  before(async () => {
    [first, second] = await Promise.all([MemoryCluster.start('listed-one', ['one']), MemoryCluster.start('listed-two', ['two'])]);
  });
  after(async () => {
    await Promise.all([first?.stop(), second?.stop()]);
  });

  test('a snapshot stream from an endpoint that a sync drops runs to its end; then its connection closes', async () => {
    const one = first.member('one');
    const two = second.member('two');
    const logger = recordingLogger(first);
    // The client starts from `two`: a sync answers with that cluster's member, which drops `one`.
    const client = new EtcdClient({ endpoints: [two.endpoint, one.endpoint], logger });
    try {
      const stream = client.snapshot(one.endpoint);
      const firstChunk = await stream.next();
      assert.equal(firstChunk.done, false);
      assert.deepEqual(await client.sync(), [two.endpoint]);
      assert.ok(!logger.lines.some((line) => line.startsWith('closed the connection')), 'the stream holds its connection');
      let last = firstChunk.value;
      for await (const chunk of stream) last = chunk;
      assert.equal(last?.kind, 'sha256');
      assert.ok(logger.lines.some((line) => line.startsWith('closed the connection')), logger.lines.join('\n'));
      // The dropped endpoint can still be asked directly; that connection is closed after the call too.
      const status = await client.status(one.endpoint);
      assert.equal(status.memberId, BigInt(one.node.memberId));
      assert.equal(logger.lines.filter((line) => line.startsWith('closed the connection')).length, 2);
    } finally {
      client.close();
    }
  });
});

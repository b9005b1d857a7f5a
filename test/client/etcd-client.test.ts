// EtcdClient against real etcd: the KV calls and their options on a single member (a key on a
// real lease, whose id is beyond 2^53, included); leader discovery, MoveLeader, learners, sync
// (clientv3's rule) and failover after a member is killed on a 3-member cluster.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { EtcdClient } from '../../src/client/index.ts';
import { isStrataError, type ErrorCode } from '../../src/util/errors.ts';
import { ETCDCTL_TIMEOUT_MS, etcdctlMissing, etcdSkipReason, freePorts, READY_ATTEMPTS_MAX, startEtcdCluster, type EtcdCluster } from './etcd-process.ts';

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isStrataError(error), `expected a StrataError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return { ...error.details };
  }
  assert.fail(`expected ${code}`);
}

describe('EtcdClient against a single etcd member', { skip: etcdSkipReason() }, () => {
  let cluster: EtcdCluster;
  let client: EtcdClient;

  before(async () => {
    cluster = await startEtcdCluster(1);
    client = new EtcdClient({ endpoints: [`http://${cluster.endpoints[0]}`], timeoutMs: 5000 });
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  test('put and get, with strings or bytes, and prevKv', async () => {
    const first = await client.put('greeting', 'hello');
    assert.ok(first.revision > 1);
    assert.equal(first.prevKv, undefined);
    const second = await client.put(Buffer.from('greeting'), new Uint8Array([0x68, 0x69]), { prevKv: true });
    assert.equal(second.revision, first.revision + 1);
    assert.equal(text(second.prevKv?.value ?? new Uint8Array()), 'hello');
    const read = await client.get('greeting');
    assert.equal(read.count, 1);
    assert.equal(text(read.kvs[0]?.value ?? new Uint8Array()), 'hi');
    assert.equal(read.kvs[0]?.version, 2);
    assert.equal(read.kvs[0]?.createRevision, first.revision);
    assert.equal(read.kvs[0]?.modRevision, second.revision);
    assert.ok(read.header.memberId > 0n);
    assert.ok(read.header.clusterId > 0n);
  });

  test('a get or delete without range options covers exactly one key', async () => {
    // Regression: an absent range end sent as an empty bytes field made etcd read a range.
    await client.put('a-single/a', '1');
    await client.put('a-single/ab', '2');
    assert.equal((await client.get('a-single/a')).count, 1);
    assert.equal((await client.delete('a-single/a')).deleted, 1);
    assert.equal((await client.get('a-single/', { prefix: true })).count, 1);
  });

  test('get covers a prefix, from a key, with limit, keys only, count only, serializable and a revision', async () => {
    for (const key of ['p/a', 'p/b', 'p/c', 'q']) await client.put(key, `v-${key}`);
    const prefixed = await client.get('p/', { prefix: true });
    assert.deepEqual(prefixed.kvs.map((kv) => text(kv.key)), ['p/a', 'p/b', 'p/c']);
    const limited = await client.get('p/', { prefix: true, limit: 2 });
    assert.equal(limited.kvs.length, 2);
    assert.equal(limited.more, true);
    assert.equal(limited.count, 3);
    const fromKey = await client.get('p/c', { fromKey: true });
    assert.deepEqual(fromKey.kvs.map((kv) => text(kv.key)), ['p/c', 'q']);
    const keysOnly = await client.get('p/', { prefix: true, keysOnly: true });
    assert.ok(keysOnly.kvs.every((kv) => kv.value.length === 0));
    const countOnly = await client.get('p/', { prefix: true, countOnly: true });
    assert.equal(countOnly.kvs.length, 0);
    assert.equal(countOnly.count, 3);
    const serializable = await client.get('q', { serializable: true });
    assert.equal(text(serializable.kvs[0]?.value ?? new Uint8Array()), 'v-q');
    const before = await client.get('q');
    await client.put('q', 'changed');
    const old = await client.get('q', { revision: before.header.revision });
    assert.equal(text(old.kvs[0]?.value ?? new Uint8Array()), 'v-q');
    const ranged = await client.get('p/a', { rangeEnd: 'p/c' });
    assert.equal(ranged.count, 2);
    const everything = await client.get('', { prefix: true, countOnly: true });
    assert.ok(everything.count >= 5);
  });

  test('delete a key or a prefix, with prevKv', async () => {
    await client.put('d/1', 'one');
    await client.put('d/2', 'two');
    const one = await client.delete('d/1', { prevKv: true });
    assert.equal(one.deleted, 1);
    assert.equal(text(one.prevKvs[0]?.value ?? new Uint8Array()), 'one');
    const none = await client.delete('d/1');
    assert.equal(none.deleted, 0);
    const rest = await client.delete('d/', { prefix: true });
    assert.equal(rest.deleted, 1);
  });

  test('txn compares and runs one branch', async () => {
    await client.put('t', '1');
    const key = Buffer.from('t');
    const swapped = await client.txn({
      type: 'txn',
      compare: [{ target: 'value', result: 'equal', key, value: Buffer.from('1') }],
      success: [{ type: 'put', key, value: Buffer.from('2') }, { type: 'range', key }],
      failure: [],
    });
    assert.equal(swapped.succeeded, true);
    const [put, range] = swapped.responses;
    assert.equal(put?.type, 'put');
    assert.equal(range?.type === 'range' ? text(range.kvs[0]?.value ?? new Uint8Array()) : undefined, '2');
    const refused = await client.txn({
      type: 'txn',
      compare: [{ target: 'version', result: 'greater', key, number: 10 }],
      success: [],
      failure: [{ type: 'deleteRange', key }],
    });
    assert.equal(refused.succeeded, false);
    assert.equal(refused.responses[0]?.type === 'deleteRange' ? refused.responses[0].deleted : -1, 1);
  });

  test("a key attached to a real etcd lease reads its exact id (beyond 2^53): get, a Txn's range and compare, a watch's kv and prevKv", async (context) => {
    const missing = etcdctlMissing();
    if (missing !== undefined) {
      context.skip(missing);
      return;
    }
    const endpoint = cluster.endpoints[0] ?? '';
    const etcdctl = (...args: string[]): string =>
      execFileSync('etcdctl', [`--endpoints=${endpoint}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: ETCDCTL_TIMEOUT_MS, encoding: 'utf8' });
    // "lease 1deeb2a5f4a0c3e1 granted with TTL(600s)": etcd's ids carry the member id in the top bits.
    const granted = /^lease ([0-9a-f]+) granted/.exec(etcdctl('lease', 'grant', '600'));
    assert.ok(granted?.[1] !== undefined, 'etcdctl lease grant printed an id');
    const hex = granted[1];
    const lease = BigInt(`0x${hex}`);
    assert.ok(lease > BigInt(Number.MAX_SAFE_INTEGER), `etcd granted ${lease}, beyond 2^53 as etcd's ids are`);
    const start = (await client.get('leased/')).header.revision + 1;
    const watch = client.watch({ key: 'leased/', prefix: true, startRevision: start, prevKv: true });
    try {
      etcdctl('put', `--lease=${hex}`, 'leased/key', 'one');
      etcdctl('put', `--lease=${hex}`, 'leased/key', 'two');
      const read = await client.get('leased/key');
      assert.equal(read.kvs[0]?.lease, lease);
      // etcdctl -w json prints the id as a JSON number: every digit is in its text.
      assert.match(etcdctl('get', 'leased/key', '-w', 'json'), new RegExp(`"lease":${lease}[,}]`));
      const txn = async (operand: bigint): Promise<boolean> =>
        (await client.txn({ type: 'txn', compare: [{ target: 'lease', result: 'equal', key: Buffer.from('leased/key'), lease: operand }], success: [{ type: 'range', key: Buffer.from('leased/key') }], failure: [] })).succeeded;
      assert.deepEqual([await txn(lease), await txn(lease + 1n), await txn(lease - 1n), await txn(0n)], [true, false, false, false], 'the compare operand travels exactly');
      const inTxn = (await client.txn({ type: 'txn', compare: [], success: [{ type: 'range', key: Buffer.from('leased/key') }], failure: [] })).responses[0];
      assert.ok(inTxn?.type === 'range');
      assert.equal(inTxn.kvs[0]?.lease, lease);
      const events: { kv: bigint; prevKv: bigint | undefined }[] = [];
      for (let read = 0; read < 100 && events.length < 2; read += 1) {
        const result = await watch.next();
        assert.equal(result.done, false, 'the watch ended early');
        if (result.value.kind === 'events') events.push(...result.value.events.map((event) => ({ kv: event.kv.lease, prevKv: event.prevKv?.lease })));
      }
      assert.deepEqual(events, [{ kv: lease, prevKv: undefined }, { kv: lease, prevKv: lease }]);
    } finally {
      watch.close();
      etcdctl('lease', 'revoke', hex);
    }
    assert.equal((await client.get('leased/key')).count, 0, 'revoking the lease deleted its key');
  });

  test('etcd errors come back with stable codes and the endpoint', async () => {
    const details = await rejectsWith(client.get(''), 'KEY_NOT_PROVIDED');
    assert.equal(details['endpoint'], cluster.endpoints[0]);
    await rejectsWith(client.get('x', { revision: 1_000_000 }), 'FUTURE_REVISION');
    await rejectsWith(client.txn({
      type: 'txn',
      compare: [],
      success: [{ type: 'put', key: Buffer.from('dup'), value: Buffer.from('1') }, { type: 'put', key: Buffer.from('dup'), value: Buffer.from('2') }],
      failure: [],
    }), 'DUPLICATE_KEY');
    await rejectsWith(client.memberRemove(0xdeadbeefn), 'MEMBER_NOT_FOUND');
  });

  test('bad arguments are INVALID_ARGUMENT before anything is sent', async () => {
    await rejectsWith(client.get('k', { prefix: true, fromKey: true }), 'INVALID_ARGUMENT');
    await rejectsWith(client.get('k', { limit: -1 }), 'INVALID_ARGUMENT');
    await rejectsWith(client.memberPromote(0), 'INVALID_ARGUMENT');
    assert.throws(() => new EtcdClient({ endpoints: ['https://127.0.0.1:2379'] }), (error) => isStrataError(error, 'INVALID_ARGUMENT'));
    assert.throws(() => new EtcdClient({ endpoints: [] }), (error) => isStrataError(error, 'INVALID_ARGUMENT'));
  });

  test('status and memberList describe the member', async () => {
    const endpoint = cluster.endpoints[0] ?? '';
    const status = await client.status(endpoint);
    assert.equal(status.endpoint, endpoint);
    assert.equal(status.leaderId, status.memberId);
    assert.match(status.version, /^3\./);
    assert.ok(status.raftAppliedIndex > 0);
    const members = await client.memberList();
    assert.equal(members.length, 1);
    assert.equal(members[0]?.id, status.memberId);
    assert.deepEqual(members[0]?.clientUrls, [`http://${endpoint}`]);
  });

  test('a dead endpoint first in the list is skipped for reads and writes', async () => {
    const [deadPort] = await freePorts(1);
    const failover = new EtcdClient({ endpoints: [`127.0.0.1:${deadPort}`, cluster.endpoints[0] ?? ''], timeoutMs: 5000 });
    try {
      await failover.put('failover', 'ok');
      assert.equal(text((await failover.get('failover')).kvs[0]?.value ?? new Uint8Array()), 'ok');
      const statuses = await failover.statusAll();
      assert.deepEqual(statuses.map((result) => result.ok), [false, true]);
      const failed = statuses[0];
      assert.equal(failed?.ok === false ? failed.error.code : undefined, 'UNAVAILABLE');
    } finally {
      failover.close();
    }
  });

  test('an endpoint that accepts connections and never answers (a frozen member) is passed after connectTimeoutMs, for reads and writes', async () => {
    // Regression (CI, containers.test.ts): the first endpoint's member had been killed and its
    // address was gone; grpc-js held the put "Waiting for LB pick" until its 5 s deadline.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as AddressInfo).port;
    const failover = new EtcdClient({ endpoints: [`127.0.0.1:${silentPort}`, cluster.endpoints[0] ?? ''], timeoutMs: 5000, connectTimeoutMs: 300 });
    try {
      await failover.put('frozen-first', 'ok');
      assert.equal(text((await failover.get('frozen-first')).kvs[0]?.value ?? new Uint8Array()), 'ok');
      assert.ok(sockets.size > 0, 'the client did connect to the silent endpoint');
      // With only the silent endpoint, the call waits for it until its deadline: TIMEOUT, and
      // the error says why.
      const alone = new EtcdClient({ endpoints: [`127.0.0.1:${silentPort}`], timeoutMs: 400 });
      try {
        await rejectsWith(alone.put('frozen-only', 'never'), 'TIMEOUT');
      } finally {
        alone.close();
      }
      assert.throws(() => new EtcdClient({ endpoints: [cluster.endpoints[0] ?? ''], connectTimeoutMs: 0 }), /connectTimeoutMs must be a positive integer/);
    } finally {
      failover.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  test('a call with no reachable endpoint ends at its deadline with TIMEOUT', async () => {
    const [deadPort] = await freePorts(1);
    const unreachable = new EtcdClient({ endpoints: [`127.0.0.1:${deadPort}`], timeoutMs: 300 });
    try {
      // Refused connections fail at once; the retries' backoff (50, 100, 200 ms...) then
      // outlasts the 300 ms deadline long before ATTEMPTS_MAX.
      const details = await rejectsWith(unreachable.get('k'), 'TIMEOUT');
      assert.equal(details['endpoint'], `127.0.0.1:${deadPort}`);
    } finally {
      unreachable.close();
    }
  });

  test('an aborted signal cancels the call; a closed client refuses calls', async () => {
    const controller = new AbortController();
    controller.abort();
    await rejectsWith(client.get('k', { signal: controller.signal }), 'CANCELED');
    const closing = new EtcdClient({ endpoints: cluster.endpoints });
    closing.close();
    await rejectsWith(closing.get('k'), 'STOPPED');
  });
});

describe('EtcdClient against a 3-member etcd cluster', { skip: etcdSkipReason() }, () => {
  let cluster: EtcdCluster;
  let client: EtcdClient;

  before(async () => {
    cluster = await startEtcdCluster(3);
    client = new EtcdClient({ endpoints: cluster.endpoints, timeoutMs: 5000 });
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  async function leaderId(): Promise<bigint> {
    const results = await client.statusAll();
    const ids = new Set(results.flatMap((result) => (result.ok ? [result.status.leaderId] : [])));
    assert.equal(ids.size, 1, 'the members agree on one leader');
    return [...ids][0] ?? 0n;
  }

  test('statusAll finds one leader, which memberList knows', async () => {
    const leader = await leaderId();
    assert.notEqual(leader, 0n);
    const members = await client.memberList();
    assert.equal(members.length, 3);
    assert.ok(members.some((member) => member.id === leader));
  });

  test('sync from one endpoint learns every member', async () => {
    const one = new EtcdClient({ endpoints: [cluster.endpoints[0] ?? ''], timeoutMs: 5000 });
    try {
      assert.equal(one.endpoints.length, 1);
      const startedFrom = await one.status(cluster.endpoints[0] ?? '');
      const learned = await one.sync();
      assert.deepEqual([...learned].sort(), [...cluster.endpoints].sort());
      assert.deepEqual(one.endpoints, learned);
      // The endpoint the client started from stays the one it prefers.
      assert.equal((await one.get('sync', { serializable: true })).header.memberId, startedFrom.memberId);
    } finally {
      one.close();
    }
  });

  test('moveLeader is sent to the leader and hands leadership to the target', async () => {
    const before = await leaderId();
    const members = await client.memberList();
    const target = members.find((member) => member.id !== before);
    assert.ok(target !== undefined);
    await client.moveLeader(target.id);
    // MoveLeader returns once the target has won; every member learns it within a few
    // heartbeats, so look a bounded number of times.
    let agreed = false;
    for (let attempt = 1; attempt <= READY_ATTEMPTS_MAX && !agreed; attempt++) {
      const results = await client.statusAll();
      agreed = results.every((result) => result.ok && result.status.leaderId === target.id);
      if (!agreed) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(agreed, 'every member reports the target as leader');
    await rejectsWith(client.moveLeader(0xdeadbeefn), 'BAD_LEADER_TRANSFEREE');
  });

  test('a learner can be added, is refused promotion until in sync, and can be removed', async () => {
    const [peerPort] = await freePorts(1);
    // etcd refuses membership changes ("unhealthy cluster") until its members have been
    // connected for 5 s; the client retries that refusal, so give it the time.
    const added = await client.memberAdd([`http://127.0.0.1:${peerPort}`], { isLearner: true, timeoutMs: 15_000 });
    assert.equal(added.member.isLearner, true);
    assert.equal(added.member.name, '');
    assert.equal(added.members.length, 4);
    // A learner that never started (no name, no client URL) is not an endpoint after a sync.
    const syncing = new EtcdClient({ endpoints: [cluster.endpoints[1] ?? ''], timeoutMs: 5000 });
    try {
      assert.deepEqual([...(await syncing.sync())].sort(), [...cluster.endpoints].sort());
    } finally {
      syncing.close();
    }
    await rejectsWith(client.memberPromote(added.member.id), 'LEARNER_NOT_READY');
    const voter = added.members.find((member) => !member.isLearner);
    assert.ok(voter !== undefined);
    await rejectsWith(client.memberPromote(voter.id), 'MEMBER_NOT_LEARNER');
    await rejectsWith(client.memberAdd([cluster.members[0]?.peerUrl ?? '']), 'PEER_URL_EXISTS');
    const remaining = await client.memberRemove(added.member.id);
    assert.equal(remaining.length, 3);
  });

  test('after a follower is killed, reads and writes go to the other members', async () => {
    const leader = await leaderId();
    const results = await client.statusAll();
    const follower = results.find((result) => result.ok && result.status.memberId !== leader);
    assert.ok(follower !== undefined);
    const victim = cluster.members.find((member) => member.clientEndpoint === follower.endpoint);
    assert.ok(victim !== undefined);
    // The victim first, so the client's connection to it is the one in use when it dies.
    const failover = new EtcdClient({ endpoints: [victim.clientEndpoint, ...cluster.endpoints], timeoutMs: 5000 });
    try {
      await failover.put('before-kill', '1');
      await cluster.kill(victim);
      // The first call after the kill may still go out on the dead connection. A read there
      // is retried on the next member; a write would be ambiguous (it may have been sent),
      // so the client answers it UNAVAILABLE and never retries it. Read first: the client
      // then knows the victim is gone, and the write goes to a live member.
      const before = await failover.get('before-kill');
      assert.equal(text(before.kvs[0]?.value ?? new Uint8Array()), '1');
      assert.notEqual(before.header.memberId, follower.ok ? follower.status.memberId : 0n);
      await failover.put('after-kill', '2');
      const read = await failover.get('after-kill');
      assert.equal(text(read.kvs[0]?.value ?? new Uint8Array()), '2');
      assert.notEqual(read.header.memberId, follower.ok ? follower.status.memberId : 0n);
      const statuses = await failover.statusAll();
      assert.equal(statuses.find((result) => result.endpoint === victim.clientEndpoint)?.ok, false);
    } finally {
      failover.close();
    }
  });
});

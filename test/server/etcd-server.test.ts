// The etcd services over one real in-memory RaftNode (RaftNodeBackend), through a plain
// grpc-js client: answers, headers, and etcd's status codes and messages for bad input (the
// etcd message is the contract here, so these tests compare it). After every refusal the
// server keeps serving.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { memberIdFor } from '../../src/node/index.ts';
import type { RaftNode } from '../../src/node/index.ts';
import type { EtcdBackend, EtcdServer } from '../../src/server/index.ts';
import { GRPC_OVERHEAD_BYTES, RaftNodeBackend, startEtcdServer } from '../../src/server/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { GrpcStatus } from '../../src/util/etcd-errors.ts';
import { HTTP2_WINDOW_BYTES } from '../../src/transport/index.ts';
import { serverWindows } from '../net/http2-windows.ts';
import type { EtcdTestClient } from './etcd-test-client.ts';
import { connectEtcdTestClient } from './etcd-test-client.ts';
import type { SingleMember } from './single-member.ts';
import { freeClientUrl, SINGLE_MEMBER_TOKEN, SINGLE_MEMBER_VERSION, startJoiningMember, startSingleMember } from './single-member.ts';

const MAX_REQUEST_BYTES = 4096;
const b = (text: string): Buffer => Buffer.from(text);
const text = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? []).toString();

let member: SingleMember;
let backend: RaftNodeBackend;
let server: EtcdServer;
let client: EtcdTestClient;

before(async () => {
  const clientUrl = await freeClientUrl();
  member = await startSingleMember({
    name: 'one',
    peerUrls: ['http://127.0.0.1:2380'],
    clientUrls: [clientUrl],
    limits: { requestBytesMax: MAX_REQUEST_BYTES, keyBytesMax: MAX_REQUEST_BYTES, valueBytesMax: MAX_REQUEST_BYTES, txnOperationsMax: 4 },
  });
  backend = member.backend;
  server = await startEtcdServer({ backend, listenUrls: [clientUrl], maxRequestBytes: MAX_REQUEST_BYTES });
  client = connectEtcdTestClient(server.urls[0] ?? '');
});

after(async () => {
  client.close();
  await server.close({ force: true });
  await member.stop();
});

async function rejects(promise: Promise<unknown>, code: number, details?: string | RegExp): Promise<void> {
  const error = await promise.then(
    () => assert.fail('expected a refusal'),
    (caught: { code: number; details: string }) => caught,
  );
  assert.equal(error.code, code, `status code (details: ${error.details})`);
  if (typeof details === 'string') assert.equal(error.details, details);
  else if (details !== undefined) assert.match(error.details, details);
  // The server still serves after the refusal.
  const status = await client.maintenance.Status({});
  assert.ok(status.header.member_id > 0);
}

describe('KV', () => {
  test('Put then Range answers the pair and a full header', async () => {
    const put = await client.kv.Put({ key: b('k/1'), value: b('v1') });
    const info = backend.header();
    assert.deepEqual(put.header, { cluster_id: info.clusterId, member_id: info.memberId, revision: info.revision, raft_term: info.raftTerm });
    const range = await client.kv.Range({ key: b('k/1') });
    assert.equal(range.header.revision, put.header.revision);
    assert.equal(range.kvs.length, 1);
    assert.equal(text(range.kvs[0].value), 'v1');
    assert.equal(range.kvs[0].create_revision, put.header.revision);
    assert.equal(range.kvs[0].mod_revision, put.header.revision);
    assert.equal(range.kvs[0].version, 1);
    assert.equal(range.count, 1);
  });

  test('Put with prev_kv answers the previous pair', async () => {
    await client.kv.Put({ key: b('prev'), value: b('old') });
    const put = await client.kv.Put({ key: b('prev'), value: b('new'), prev_kv: true });
    assert.equal(text(put.prev_kv.value), 'old');
  });

  test('Range over a prefix with limit, count_only, keys_only and sorting', async () => {
    for (const [key, value] of [['p/a', '3'], ['p/b', '1'], ['p/c', '2']] as const) await client.kv.Put({ key: b(key), value: b(value) });
    await client.kv.Put({ key: b('p/a'), value: b('3') }); // p/a now has the highest mod revision and version 2
    const all = await client.kv.Range({ key: b('p/'), range_end: b('p0') });
    assert.deepEqual(all.kvs.map((kv: { key: Buffer }) => text(kv.key)), ['p/a', 'p/b', 'p/c']);
    const limited = await client.kv.Range({ key: b('p/'), range_end: b('p0'), limit: 2 });
    assert.equal(limited.kvs.length, 2);
    assert.equal(limited.more, true);
    assert.equal(limited.count, 3);
    const counted = await client.kv.Range({ key: b('p/'), range_end: b('p0'), count_only: true });
    assert.equal(counted.count, 3);
    assert.equal(counted.kvs, undefined);
    const keysOnly = await client.kv.Range({ key: b('p/'), range_end: b('p0'), keys_only: true });
    assert.deepEqual(keysOnly.kvs.map((kv: { value?: Buffer }) => text(kv.value)), ['', '', '']);
    const byValue = await client.kv.Range({ key: b('p/'), range_end: b('p0'), sort_target: 4, sort_order: 2 });
    assert.deepEqual(byValue.kvs.map((kv: { key: Buffer }) => text(kv.key)), ['p/a', 'p/c', 'p/b']);
    const byModLimited = await client.kv.Range({ key: b('p/'), range_end: b('p0'), sort_target: 3, sort_order: 2, limit: 1 });
    assert.deepEqual(byModLimited.kvs.map((kv: { key: Buffer }) => text(kv.key)), ['p/a']);
    assert.equal(byModLimited.more, true);
    // A non-KEY target with order NONE sorts ascending, as etcd does.
    const byVersion = await client.kv.Range({ key: b('p/'), range_end: b('p0'), sort_target: 1 });
    assert.deepEqual(byVersion.kvs.map((kv: { key: Buffer }) => text(kv.key)), ['p/b', 'p/c', 'p/a']);
    const keyDescending = await client.kv.Range({ key: b('p/'), range_end: b('p0'), sort_order: 2 });
    assert.deepEqual(keyDescending.kvs.map((kv: { key: Buffer }) => text(kv.key)), ['p/c', 'p/b', 'p/a']);
  });

  test('Range filters by mod and create revision', async () => {
    const all = await client.kv.Range({ key: b('p/'), range_end: b('p0') });
    const [a, bb] = all.kvs as { key: Buffer; mod_revision: number; create_revision: number }[];
    assert.ok(a !== undefined && bb !== undefined);
    const recent = await client.kv.Range({ key: b('p/'), range_end: b('p0'), min_mod_revision: a.mod_revision });
    assert.deepEqual(recent.kvs.map((kv: { key: Buffer }) => text(kv.key)), ['p/a']);
    assert.equal(recent.count, 3); // count ignores filters, as etcd's
    const early = await client.kv.Range({ key: b('p/'), range_end: b('p0'), max_create_revision: a.create_revision });
    assert.deepEqual(early.kvs.map((kv: { key: Buffer }) => text(kv.key)), ['p/a']);
  });

  test('DeleteRange with prev_kv answers the deleted pairs', async () => {
    await client.kv.Put({ key: b('d/1'), value: b('x') });
    await client.kv.Put({ key: b('d/2'), value: b('y') });
    const deleted = await client.kv.DeleteRange({ key: b('d/'), range_end: b('d0'), prev_kv: true });
    assert.equal(deleted.deleted, 2);
    assert.deepEqual(deleted.prev_kvs.map((kv: { value: Buffer }) => text(kv.value)), ['x', 'y']);
    assert.equal((await client.kv.Range({ key: b('d/'), range_end: b('d0') })).count, 0);
  });

  test('Txn runs success when its compares hold and failure when not', async () => {
    await client.kv.Put({ key: b('t'), value: b('1') });
    const ok = await client.kv.Txn({
      compare: [{ key: b('t'), target: 3, result: 0, value: b('1') }, { key: b('t'), target: 0, result: 1, version: 0 }],
      success: [{ request_put: { key: b('t2'), value: b('s') } }, { request_range: { key: b('t') } }],
      failure: [{ request_put: { key: b('t2'), value: b('f') } }],
    });
    assert.equal(ok.succeeded, true);
    assert.equal(ok.responses.length, 2);
    assert.equal(ok.responses[0].response_put.header.revision, ok.header.revision);
    assert.equal(text(ok.responses[1].response_range.kvs[0].value), '1');
    const no = await client.kv.Txn({
      compare: [{ key: b('t'), range_end: b('t3'), target: 2, result: 2, mod_revision: 1 }],
      success: [{ request_put: { key: b('t2'), value: b('s2') } }],
      failure: [{ request_delete_range: { key: b('t2'), prev_kv: true } }],
    });
    assert.equal(no.succeeded, false);
    assert.equal(no.responses[0].response_delete_range.deleted, 1);
  });
});

describe('bad input gets etcd\'s answer and the server keeps serving', () => {
  test('an empty key', async () => {
    await rejects(client.kv.Put({ key: b(''), value: b('v') }), GrpcStatus.INVALID_ARGUMENT, 'etcdserver: key is not provided');
    await rejects(client.kv.Range({}), GrpcStatus.INVALID_ARGUMENT, 'etcdserver: key is not provided');
  });

  test('a request over maxRequestBytes but under the gRPC limit', async () => {
    await rejects(client.kv.Put({ key: b('big'), value: Buffer.alloc(MAX_REQUEST_BYTES + 1) }), GrpcStatus.INVALID_ARGUMENT, 'etcdserver: request is too large');
  });

  test('a request over the gRPC receive limit', async () => {
    await rejects(client.kv.Put({ key: b('huge'), value: Buffer.alloc(MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES + 1) }), GrpcStatus.RESOURCE_EXHAUSTED);
  });

  test('a Txn writing one key twice, or with too many operations', async () => {
    const put = { request_put: { key: b('dup'), value: b('v') } };
    await rejects(client.kv.Txn({ success: [put, put] }), GrpcStatus.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request');
    const many = Array.from({ length: 5 }, (_, i) => ({ request_put: { key: b(`many${i}`), value: b('v') } }));
    await rejects(client.kv.Txn({ success: many }), GrpcStatus.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request');
  });

  test('malformed requests say what was wrong', async () => {
    await rejects(client.kv.Txn({ success: [{}] }), GrpcStatus.INVALID_ARGUMENT, /success\[0\]: RequestOp has no request/);
    await rejects(client.kv.Txn({ compare: [{ key: b('a'), target: 9 }] }), GrpcStatus.INVALID_ARGUMENT, /compare\[0\]: unknown target 9/);
    await rejects(client.kv.Txn({ compare: [{ key: b('a'), result: 7 }] }), GrpcStatus.INVALID_ARGUMENT, /compare\[0\]: unknown result 7/);
    await rejects(client.kv.Range({ key: b('a'), sort_order: 5 }), GrpcStatus.INVALID_ARGUMENT, /unknown sort_order 5/);
    await rejects(client.kv.Range({ key: b('a'), sort_target: 8 }), GrpcStatus.INVALID_ARGUMENT, /unknown sort_target 8/);
    await rejects(client.kv.Range({ key: b('a'), revision: 1_000_000 }), GrpcStatus.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision');
  });

  test('what stratakv does not support yet', async () => {
    await rejects(client.kv.Put({ key: b('l'), value: b('v'), lease: 7 }), GrpcStatus.NOT_FOUND, 'etcdserver: requested lease not found');
    // etcd's ids are beyond 2^53 (and any int64 is one): still a lease this server does not know.
    for (const lease of [2156839707291722977n, 2n ** 63n - 1n, -1n]) {
      await rejects(client.kv.Put({ key: b('l'), value: b('v'), lease }), GrpcStatus.NOT_FOUND, 'etcdserver: requested lease not found');
      await rejects(client.kv.Txn({ success: [{ request_put: { key: b('l'), value: b('v'), lease } }] }), GrpcStatus.NOT_FOUND, 'etcdserver: requested lease not found');
    }
    await rejects(client.kv.Put({ key: b('l'), ignore_value: true }), GrpcStatus.UNIMPLEMENTED, /ignore_value/);
    await rejects(client.kv.Put({ key: b('l'), ignore_lease: true }), GrpcStatus.UNIMPLEMENTED, /ignore_lease/);
    await rejects(client.kv.Txn({ success: [{ request_txn: {} }] }), GrpcStatus.UNIMPLEMENTED, /nested txn/);
    await rejects(client.kv.Compact({ revision: 1 }), GrpcStatus.UNIMPLEMENTED);
    await rejects(client.cluster.MemberUpdate({ ID: 1, peerURLs: ['http://127.0.0.1:1'] }), GrpcStatus.UNIMPLEMENTED);
  });
});

describe('Cluster and Maintenance', () => {
  test('the client server offers 16 MiB HTTP/2 windows (a large put across a slow link is not sent 64 KiB per round trip)', async () => {
    assert.deepEqual(await serverWindows(server.urls[0] ?? '', HTTP2_WINDOW_BYTES), {
      streamWindowBytes: HTTP2_WINDOW_BYTES,
      connectionWindowBytes: HTTP2_WINDOW_BYTES,
    });
  });

  test('Status describes the member', async () => {
    const status = await client.maintenance.Status({});
    const info = backend.header();
    assert.equal(status.header.member_id, info.memberId);
    assert.equal(status.header.revision, info.revision);
    assert.equal(status.leader, info.memberId);
    // A new cluster's bootstrap entries are at term 1; its first leader is elected at term 2, as etcd's.
    assert.equal(status.raftTerm, info.raftTerm);
    assert.equal(status.raftTerm, 2);
    assert.ok(status.raftIndex >= status.raftAppliedIndex && status.raftAppliedIndex > 0);
    assert.equal(typeof status.version, 'string');
  });

  test("Alarm as etcd's: GET lists, ACTIVATE raises NOSPACE (Puts refused, deletes served, Status lists it), DEACTIVATE clears once; Defragment answers", async () => {
    const id = backend.header().memberId;
    const alarms = (response: { alarms?: unknown[] }): unknown[] => response.alarms ?? [];
    assert.deepEqual(alarms(await client.maintenance.Alarm({})), []);
    assert.deepEqual(alarms(await client.maintenance.Alarm({ action: 1, memberID: id, alarm: 1 })), [{ memberID: id, alarm: 1 }]);
    assert.deepEqual(alarms(await client.maintenance.Alarm({ action: 1, memberID: id, alarm: 0 })), [], 'activating NONE does nothing');
    await rejects(client.kv.Put({ key: b('alarm'), value: b('v') }), GrpcStatus.RESOURCE_EXHAUSTED, 'etcdserver: mvcc: database space exceeded');
    await client.kv.DeleteRange({ key: b('alarm') });
    await client.kv.Range({ key: b('alarm') });
    assert.ok((await client.maintenance.Status({})).errors.includes(`memberID:${id} alarm:NOSPACE `));
    assert.deepEqual(alarms(await client.maintenance.Alarm({ action: 0, alarm: 1 })), [{ memberID: id, alarm: 1 }]);
    assert.deepEqual(alarms(await client.maintenance.Alarm({ action: 0, alarm: 2 })), [], 'GET of one type lists only that type');
    await rejects(client.maintenance.Alarm({ action: 7 }), GrpcStatus.INVALID_ARGUMENT, /unknown alarm action 7/);
    await rejects(client.maintenance.Alarm({ action: 0, alarm: 9 }), GrpcStatus.INVALID_ARGUMENT, /unknown alarm type 9/);
    assert.deepEqual(alarms(await client.maintenance.Alarm({ action: 2, memberID: id, alarm: 1 })), [{ memberID: id, alarm: 1 }]);
    assert.deepEqual(alarms(await client.maintenance.Alarm({ action: 2, memberID: id, alarm: 1 })), [], 'clearing an alarm that is not raised answers nothing');
    await client.kv.Put({ key: b('alarm'), value: b('v') });
    const defragmented = await client.maintenance.Defragment({});
    assert.equal(defragmented.header.member_id, id);
  });

  test('MoveLeader to itself succeeds; to a stranger is a bad transferee', async () => {
    await client.maintenance.MoveLeader({ targetID: backend.header().memberId });
    await rejects(client.maintenance.MoveLeader({ targetID: 12345 }), GrpcStatus.FAILED_PRECONDITION, 'etcdserver: bad leader transferee');
  });

  test('members: list, add a learner, promote, remove, with etcd\'s refusals', async () => {
    const listed = await client.cluster.MemberList({});
    assert.equal(listed.members.length, 1);
    assert.equal(listed.members[0].name, 'one');
    assert.deepEqual(listed.members[0].clientURLs, server.urls);
    assert.equal(listed.header.cluster_id, backend.header().clusterId);

    await rejects(client.cluster.MemberAdd({ peerURLs: ['http://127.0.0.1:2380'] }), GrpcStatus.FAILED_PRECONDITION, 'etcdserver: Peer URLs already exists');
    await rejects(client.cluster.MemberAdd({ peerURLs: ['not a url'] }), GrpcStatus.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid');
    const learnerUrls = ['http://127.0.0.1:2480'];
    const added = await client.cluster.MemberAdd({ peerURLs: learnerUrls, isLearner: true });
    assert.equal(added.member.isLearner, true);
    assert.equal(added.member.ID, memberIdFor(learnerUrls, SINGLE_MEMBER_TOKEN));
    assert.equal(added.members.length, 2);
    await rejects(client.cluster.MemberAdd({ peerURLs: ['http://127.0.0.1:2580'], isLearner: true }), GrpcStatus.FAILED_PRECONDITION, 'etcdserver: too many learner members in cluster');
    await rejects(client.cluster.MemberPromote({ ID: backend.header().memberId }), GrpcStatus.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member');
    await rejects(client.cluster.MemberPromote({ ID: 424242 }), GrpcStatus.NOT_FOUND, 'etcdserver: member not found');
    // The learner has not started, so its log is empty: etcd refuses to promote it.
    await rejects(client.cluster.MemberPromote({ ID: added.member.ID }), GrpcStatus.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member which is in sync with leader');
    let learner: RaftNode | undefined;
    try {
      learner = await startJoiningMember(member, { name: 'two', peerUrls: learnerUrls });
      assert.equal(learner.memberId, added.member.ID);
      const promoted = await client.cluster.MemberPromote({ ID: added.member.ID });
      const voter = promoted.members.find((m: { ID: number }) => m.ID === added.member.ID);
      assert.notEqual(voter.isLearner, true);
      assert.equal(voter.name, 'two');
      const removed = await client.cluster.MemberRemove({ ID: added.member.ID });
      assert.equal(removed.members.length, 1);
      await rejects(client.cluster.MemberRemove({ ID: added.member.ID }), GrpcStatus.NOT_FOUND, 'etcdserver: member not found');
    } finally {
      await learner?.stop({ transferLeadership: false });
    }
  });

  // etcd's strict reconfiguration check: a cluster of two voters, one of them never started,
  // refuses a third voter, which would leave no quorum of started members.
  test('a voter that would leave no quorum of started members is refused', async () => {
    const alone = await startSingleMember({ name: 'alone' });
    try {
      // A one-member cluster may always grow to two voters.
      await alone.backend.memberAdd({ peerUrls: ['http://127.0.0.1:2481'], isLearner: false });
      await assert.rejects(
        alone.backend.memberAdd({ peerUrls: ['http://127.0.0.1:2482'], isLearner: false }, { signal: AbortSignal.timeout(2_000) }),
        (error) => isStrataError(error, ErrorCode.NOT_ENOUGH_STARTED_MEMBERS),
      );
    } finally {
      await alone.stop();
    }
  });
});

describe('cancellation', () => {
  test('a client deadline aborts the signal the backend gets', async () => {
    let seen: AbortSignal | undefined;
    // The real member's backend, whose Status never answers: only the server can end the call.
    const hanging: EtcdBackend = new RaftNodeBackend(member.node, SINGLE_MEMBER_VERSION);
    let release: () => void = () => undefined;
    const blocked = new Promise<void>((resolve) => {
      release = resolve;
    });
    const aborted = new Promise<void>((resolve) => {
      hanging.status = async (options) => {
        seen = options?.signal;
        seen?.addEventListener('abort', () => resolve());
        await blocked;
        throw new Error('released');
      };
    });
    const slow = await startEtcdServer({ backend: hanging, listenUrls: ['http://127.0.0.1:0'], maxRequestBytes: 1024 });
    const slowClient = connectEtcdTestClient(slow.urls[0] ?? '');
    try {
      const call = slowClient.maintenance.Status({}, { deadline: Date.now() + 200 });
      await assert.rejects(call, (error: { code: number }) => error.code === GrpcStatus.DEADLINE_EXCEEDED);
      await aborted;
      assert.equal(seen?.aborted, true);
    } finally {
      release();
      slowClient.close();
      await slow.close({ force: true });
    }
  });
});

test('startEtcdServer refuses listen URLs that are not http://host:port', async () => {
  for (const url of ['https://127.0.0.1:0', 'unix:///tmp/x', 'http://127.0.0.1:0/path']) {
    await assert.rejects(startEtcdServer({ backend, listenUrls: [url], maxRequestBytes: 1024 }), (error) => isStrataError(error, 'INVALID_ARGUMENT'));
  }
});

// Mirror mode over the wire: Admin.MirrorRead and Admin.MirrorWrite served by startEtcdServer
// over one real in-memory RaftNode (RaftNodeBackend), called with the real MirrorClient, beside
// etcd's KV service called with a plain grpc-js client and with EtcdClient. The tests run in
// order on one member, as a copy does: begin, client writes refused while reads work, applies
// that set the source's counters exactly, compare-and-set conflicts, end, writes again. Then
// malformed requests (INVALID_ARGUMENT naming the wire field), and the batch size a copier
// computes against what the member encodes and refuses.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';

import { AdminCalls, EtcdClient, encodePackedPuts, MIRROR_REQUEST_BYTES_MAX_DEFAULT, MirrorClient, mirrorRequestBytes } from '../../src/client/index.ts';
import { ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS, ADMIN_SERVICE_NAME } from '../../src/diff/index.ts';
import type { EtcdServer } from '../../src/server/index.ts';
import { decodePackedPuts, raftNodeLogSource, startEtcdServer } from '../../src/server/index.ts';
import type { MirrorPut, MirrorRequest } from '../../src/storage/index.ts';
import { encodePackedCommands, encodeValidKvCommand } from '../../src/storage/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { fromGrpcStatus, GrpcStatus } from '../../src/util/etcd-errors.ts';
import type { EtcdTestClient } from './etcd-test-client.ts';
import { connectEtcdTestClient } from './etcd-test-client.ts';
import type { SingleMember } from './single-member.ts';
import { strataRefusal } from './refusals.ts';
import { freeClientUrl, startSingleMember } from './single-member.ts';

const b = (text: string): Buffer => Buffer.from(text);
const text = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? []).toString();
const STATE_BEGUN = b('copy:begun');
const STATE_APPLIED = b('copy:applied-1');
const STATE_APPLIED_2 = b('copy:applied-2');
const EVERY_KEY = { key: Buffer.from([0]), range_end: Buffer.from([0]) };

let member: SingleMember;
let server: EtcdServer;
let url: string;
// The client endpoint as host:port (the gRPC target AdminCalls takes).
let endpoint: string;
let kv: EtcdTestClient;
let mirror: MirrorClient;
let raw: AdminCalls;

before(async () => {
  const clientUrl = await freeClientUrl();
  member = await startSingleMember({ name: 'mirror', clientUrls: [clientUrl] });
  server = await startEtcdServer({ backend: member.backend, listenUrls: [clientUrl], maxRequestBytes: MIRROR_REQUEST_BYTES_MAX_DEFAULT, logSource: raftNodeLogSource(member.node) });
  url = server.urls[0] ?? '';
  endpoint = url.slice('http://'.length);
  kv = connectEtcdTestClient(url);
  mirror = new MirrorClient({ endpoints: [url], timeoutMs: 5_000 });
  raw = new AdminCalls(['MirrorWrite']);
});

after(async () => {
  mirror.close();
  raw.close();
  kv.close();
  await server.close({ force: true });
  await member.stop();
});

// refusal answers the status a raw call failed with.
async function refusal(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  return promise.then(
    () => assert.fail('expected a refusal'),
    (error: { code: number; details: string }) => error,
  );
}

function put(key: string, value: string, counters: { createRevision: number; modRevision: number; version: number; lease?: bigint }): MirrorPut {
  return { key: b(key), value: b(value), lease: 0n, ...counters };
}

// ETCD_LEASE is a lease id as etcd grants them (etcdctl lease grant gave it): far beyond 2^53.
const ETCD_LEASE = 2156839707291722977n;
const LEASE_MAX = 2n ** 63n - 1n;

describe('a copy, in order', () => {
  test('MirrorRead on a cluster that is not a mirror: no state, its revision, who answered', async () => {
    const view = await mirror.read();
    assert.equal(view.state, undefined);
    assert.equal(view.revision, member.node.revision());
    assert.equal(view.header.memberId, member.node.memberId);
    assert.equal(view.header.clusterId, member.node.clusterId);
    assert.ok(view.header.raftTerm >= 1);
  });

  test('begin makes the cluster a mirror, and MirrorRead shows its state', async () => {
    const answer = await mirror.begin(STATE_BEGUN, { requireEmpty: true });
    assert.equal(answer.type, 'mirrorBegin');
    assert.deepEqual(answer.state, new Uint8Array(STATE_BEGUN));
    const view = await mirror.read();
    assert.deepEqual(view.state, new Uint8Array(STATE_BEGUN));
    assert.equal(view.revision, answer.revision);
  });

  test('a client write on a mirror is refused at once FAILED_PRECONDITION (MIRROR_READ_ONLY), naming where writes go; reads work', async () => {
    const lastIndex = member.node.status().lastIndex;
    const writes: Promise<unknown>[] = [
      kv.kv.Put({ key: b('k'), value: b('v') }),
      kv.kv.DeleteRange({ key: b('k') }),
      // A write in the failure branch only is a write.
      kv.kv.Txn({ compare: [], success: [{ request_range: { key: b('k') } }], failure: [{ request_put: { key: b('k'), value: b('v') } }] }),
    ];
    for (const write of writes) {
      const status = await refusal(write);
      assert.equal(status.code, GrpcStatus.FAILED_PRECONDITION);
      assert.equal(fromGrpcStatus(status.code, status.details).code, ErrorCode.MIRROR_READ_ONLY);
      assert.match(status.details, /^stratakv: read-only mirror: /);
      assert.match(status.details, /source cluster/);
      assert.match(status.details, /stratakv migrate copy switch/);
    }
    // Refused before proposing: nothing reached the log.
    assert.equal(member.node.status().lastIndex, lastIndex);

    // EtcdClient does not retry it (nothing to gain on another member) and answers the code.
    const client = new EtcdClient({ endpoints: [url], timeoutMs: 2_000 });
    try {
      await assert.rejects(client.put('k', 'v'), (error) => isStrataError(error, ErrorCode.MIRROR_READ_ONLY));
    } finally {
      client.close();
    }

    // A mirror lags its source: linearizable reads (and read-only Txns) are refused, as
    // etcd's learners refuse them; serializable reads are served.
    const linearizable = await refusal(kv.kv.Range(EVERY_KEY));
    assert.equal(linearizable.code, grpc.status.FAILED_PRECONDITION);
    assert.match(linearizable.details, /read-only mirror.*linearizable reads go to the source cluster/);
    const readOnlyTxn = await refusal(kv.kv.Txn({ compare: [], success: [{ request_range: { key: b('k') } }], failure: [] }));
    assert.equal(readOnlyTxn.code, grpc.status.FAILED_PRECONDITION);
    const range = await kv.kv.Range({ ...EVERY_KEY, serializable: true });
    assert.equal(range.kvs?.length ?? 0, 0);
  });

  test('apply sets the source\'s keys and counters exactly and moves the revision to the batch\'s', async () => {
    const answer = await mirror.apply({
      expectState: STATE_BEGUN,
      state: STATE_APPLIED,
      revision: 100,
      puts: [put('a', 'va', { createRevision: 5, modRevision: 90, version: 3, lease: ETCD_LEASE }), put('b', 'vb', { createRevision: 100, modRevision: 100, version: 1, lease: LEASE_MAX })],
      deletes: [],
    });
    assert.equal(answer.type, 'mirrorApply');
    assert.equal(answer.revision, 100);
    assert.deepEqual(answer.state, new Uint8Array(STATE_APPLIED));

    const range = await kv.kv.Range({ ...EVERY_KEY, serializable: true });
    assert.equal(range.header.revision, 100);
    assert.deepEqual(
      range.kvs.map((kv: { key: Buffer; value: Buffer; create_revision: number; mod_revision: number; version: number }) => [text(kv.key), text(kv.value), kv.create_revision, kv.mod_revision, kv.version]),
      [
        ['a', 'va', 5, 90, 3],
        ['b', 'vb', 100, 100, 1],
      ],
    );
    // The lease ids arrive exactly through etcd's KV API (the hand-written codec writes them;
    // EtcdClient reads them as decimal text), and a Txn compares them exactly.
    const client = new EtcdClient({ endpoints: [url], timeoutMs: 5_000, mirrorReader: true });
    try {
      const read = await client.get(b('a'), { prefix: true });
      assert.deepEqual(read.kvs.map((kv) => kv.lease), [ETCD_LEASE]);
      const both = await client.get(b('\0'), { rangeEnd: b('\0') });
      assert.deepEqual(both.kvs.map((kv) => [text(kv.key), kv.lease]), [['a', ETCD_LEASE], ['b', LEASE_MAX]]);
      const compare = async (lease: bigint): Promise<boolean> =>
        (await client.txn({ type: 'txn', compare: [{ target: 'lease', result: 'equal', key: b('a'), lease }], success: [{ type: 'range', key: b('b') }], failure: [] })).succeeded;
      assert.deepEqual([await compare(ETCD_LEASE), await compare(ETCD_LEASE + 1n), await compare(ETCD_LEASE - 1n)], [true, false, false]);
      const inTxn = await client.txn({ type: 'txn', compare: [], success: [{ type: 'range', key: b('a') }], failure: [] });
      const answer = inTxn.responses[0];
      assert.ok(answer?.type === 'range');
      assert.deepEqual(answer.kvs.map((kv) => kv.lease), [ETCD_LEASE], 'a Range inside a Txn (protobufjs encodes it) carries the exact id too');
    } finally {
      client.close();
    }

    const second = await mirror.apply({ expectState: STATE_APPLIED, state: STATE_APPLIED_2, revision: 104, puts: [put('c', 'vc', { createRevision: 103, modRevision: 104, version: 2 })], deletes: [b('a')] });
    assert.equal(second.revision, 104);
    const after = await kv.kv.Range({ ...EVERY_KEY, serializable: true });
    assert.equal(after.header.revision, 104);
    assert.deepEqual(
      after.kvs.map((kv: { key: Buffer; mod_revision: number }) => [text(kv.key), kv.mod_revision]),
      [
        ['b', 100],
        ['c', 104],
      ],
    );
  });

  test('a write whose expected state is not the mirror\'s is refused FAILED_PRECONDITION (MIRROR_CONFLICT), and a read tells a retry that landed', async () => {
    // The first apply sent again (as after a lost answer): it landed already, so its compare fails.
    const again = await strataRefusal(mirror.apply({ expectState: STATE_BEGUN, state: STATE_APPLIED, revision: 100, puts: [], deletes: [] }));
    assert.equal(again.code, ErrorCode.MIRROR_CONFLICT);
    assert.equal(again.details['grpcCode'], GrpcStatus.FAILED_PRECONDITION);
    // The documented way to tell: the state now is a later one.
    assert.deepEqual((await mirror.read()).state, new Uint8Array(STATE_APPLIED_2));

    const beginAgain = await strataRefusal(mirror.begin(b('another copier'), { requireEmpty: false }));
    assert.equal(beginAgain.code, ErrorCode.MIRROR_CONFLICT);
    const endWrong = await strataRefusal(mirror.end(STATE_APPLIED));
    assert.equal(endWrong.code, ErrorCode.MIRROR_CONFLICT);
    assert.deepEqual((await mirror.read()).state, new Uint8Array(STATE_APPLIED_2));
  });

  test('a batch of exactly --max-request-bytes as mirrorRequestBytes counts it is taken; one byte more is REQUEST_TOO_LARGE', async () => {
    const view = await mirror.read();
    assert.ok(view.state !== undefined);
    const batch = (valueBytes: number): Extract<MirrorRequest, { type: 'mirrorApply' }> => ({
      type: 'mirrorApply',
      expectState: view.state ?? new Uint8Array(0),
      state: STATE_APPLIED,
      revision: 105,
      puts: [put('big', 'x'.repeat(valueBytes), { createRevision: 105, modRevision: 105, version: 1 })],
      deletes: [],
    });
    const fits = MIRROR_REQUEST_BYTES_MAX_DEFAULT - mirrorRequestBytes(batch(0));
    assert.equal(mirrorRequestBytes(batch(fits)), MIRROR_REQUEST_BYTES_MAX_DEFAULT);
    const tooLarge = await strataRefusal(mirror.write(batch(fits + 1)));
    assert.equal(tooLarge.code, ErrorCode.REQUEST_TOO_LARGE);
    const taken = await mirror.write(batch(fits));
    assert.equal(taken.revision, 105);
    const range = await kv.kv.Range({ key: b('big'), serializable: true });
    assert.equal(range.kvs[0]?.value.length, fits);
  });

  test('end makes the cluster take writes again, from the revision the mirror reached', async () => {
    const answer = await mirror.end(STATE_APPLIED);
    assert.equal(answer.type, 'mirrorEnd');
    assert.equal(answer.state, undefined);
    assert.equal(answer.revision, 105);
    assert.equal((await mirror.read()).state, undefined);
    const written = await kv.kv.Put({ key: b('after'), value: b('v') });
    assert.equal(written.header.revision, 106);
    const range = await kv.kv.Range({ key: b('after') });
    assert.equal(range.kvs[0]?.create_revision, 106);
    // Ending twice: there is no mirror to end.
    assert.equal((await strataRefusal(mirror.end(STATE_APPLIED))).code, ErrorCode.MIRROR_CONFLICT);
  });
});

test('a MirrorClient call whose signal is aborted answers CANCELED', async () => {
  const controller = new AbortController();
  controller.abort();
  assert.equal((await strataRefusal(mirror.read({ signal: controller.signal }))).code, ErrorCode.CANCELED);
  assert.equal((await strataRefusal(mirror.end(STATE_APPLIED, { signal: controller.signal }))).code, ErrorCode.CANCELED);
});

describe('malformed MirrorWrite requests', () => {
  // invalidField sends a raw MirrorWrite and answers the field its INVALID_ARGUMENT names.
  async function invalidField(request: object): Promise<unknown> {
    const error = await strataRefusal(raw.call(endpoint, 'MirrorWrite', request, 5_000));
    assert.equal(error.code, ErrorCode.INVALID_ARGUMENT, error.message);
    assert.equal(error.details['grpcCode'], GrpcStatus.INVALID_ARGUMENT);
    return error.details['field'];
  }
  const goodPuts = encodePackedPuts([put('k', 'v', { createRevision: 2, modRevision: 3, version: 1 })]);

  test('no command, or two', async () => {
    assert.equal(await invalidField({}), 'command');
    assert.equal(await invalidField({ timeout_ms: 1_000 }), 'command');
    assert.equal(await invalidField({ begin: { state: b('s') }, end: { expect_state: b('s') } }), 'command');
  });

  test('packed puts that do not decode, or do not hold put_count puts', async () => {
    const apply = (fields: object): object => ({ apply: { expect_state: b('x'), state: b('y'), revision: 10, ...fields } });
    assert.equal(await invalidField(apply({ puts: goodPuts.subarray(0, goodPuts.byteLength - 1), put_count: 1 })), 'apply.puts');
    assert.equal(await invalidField(apply({ puts: Buffer.concat([goodPuts, Buffer.from([0])]), put_count: 1 })), 'apply.puts');
    assert.equal(await invalidField(apply({ puts: goodPuts, put_count: 2 })), 'apply.put_count');
    // A length that runs past the end.
    assert.equal(await invalidField(apply({ puts: Buffer.from([0x7f, 1, 2, 3, 4, 5, 6]), put_count: 1 })), 'apply.puts');
    // A varint of more than 53 bits.
    assert.equal(await invalidField(apply({ puts: Buffer.from([1, 0x6b, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 1, 0]), put_count: 1 })), 'apply.puts');
    // A lease varint past 64 bits.
    assert.equal(await invalidField(apply({ puts: Buffer.from([1, 0x6b, 0, 2, 3, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), put_count: 1 })), 'apply.puts');
  });

  test('states, revisions and puts the rules refuse name the wire field', async () => {
    assert.equal(await invalidField({ begin: { state: Buffer.alloc(8 * 1024 + 1) } }), 'begin.state');
    assert.equal(await invalidField({ begin: { state: b('s'), require_revision: 2 ** 60 } }), 'begin.require_revision');
    assert.equal(await invalidField({ end: { expect_state: Buffer.alloc(8 * 1024 + 1) } }), 'end.expect_state');
    // Checked by the node's validation; the field comes back under its wire name.
    const modAboveRevision = encodePackedPuts([put('k', 'v', { createRevision: 2, modRevision: 30, version: 1 })]);
    assert.equal(await invalidField({ apply: { expect_state: b('x'), state: b('y'), revision: 10, puts: modAboveRevision, put_count: 1 } }), 'apply.puts[0].mod_revision');
    assert.equal(await invalidField({ apply: { expect_state: b('x'), state: b('y'), revision: 10, deletes: [Buffer.alloc(0)] } }), 'apply.deletes[0]');
    // A lease of 2^63 or more decodes (a u64), but is no etcd lease id: the node refuses it.
    const leaseTooLarge = Buffer.from([1, 0x6b, 0, 2, 3, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    assert.deepEqual(decodePackedPuts(leaseTooLarge, 1)[0]?.lease, 2n ** 63n);
    assert.equal(await invalidField({ apply: { expect_state: b('x'), state: b('y'), revision: 10, puts: leaseTooLarge, put_count: 1 } }), 'apply.puts[0].lease');
  });
});

describe('the wire encoding of puts', () => {
  test('encodePackedPuts and decodePackedPuts agree, counters up to 2^53 - 1, lease ids up to 2^63 - 1, and with empty values', () => {
    const puts: MirrorPut[] = [
      put('k', '', { createRevision: 1, modRevision: 1, version: 1 }),
      { key: Buffer.alloc(300, 1), value: Buffer.alloc(70_000, 2), createRevision: 127, modRevision: 128, version: 16_384, lease: BigInt(Number.MAX_SAFE_INTEGER) },
      put('etcd', 'v', { createRevision: Number.MAX_SAFE_INTEGER, modRevision: Number.MAX_SAFE_INTEGER, version: Number.MAX_SAFE_INTEGER, lease: ETCD_LEASE }),
      put('max', 'v', { createRevision: 1, modRevision: 1, version: 1, lease: LEASE_MAX }),
      ...[0x7fn, 0x80n, 0x3fffn, 0x4000n, 2n ** 53n, 2n ** 56n - 1n, 2n ** 56n].map((lease) => put(`edge-${lease}`, 'v', { createRevision: 1, modRevision: 1, version: 1, lease })),
    ];
    const decoded = decodePackedPuts(encodePackedPuts(puts), puts.length);
    assert.deepEqual(
      decoded.map((item) => ({ ...item, key: Buffer.from(item.key), value: Buffer.from(item.value) })),
      puts.map((item) => ({ ...item, key: Buffer.from(item.key), value: Buffer.from(item.value) })),
    );
    // etcd's lease id, as a u64 varint: nine bytes, least significant group first.
    assert.equal(Buffer.from(encodePackedPuts([put('k', '', { createRevision: 1, modRevision: 1, version: 1, lease: ETCD_LEASE })])).toString('hex'), '016b00010101e1c9d2f494c9a8f71d');
    for (const lease of [-1n, 2n ** 63n, 5 as unknown as bigint]) {
      assert.throws(
        () => encodePackedPuts([put('k', 'v', { createRevision: 1, modRevision: 1, version: 1, lease })]),
        (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === 'puts[0].lease',
        `lease ${String(lease)}`,
      );
    }
  });

  test('mirrorRequestBytes is exactly what the member encodes, and the wire message is no larger', () => {
    const definition = protoLoader.loadSync(ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS);
    const method = (definition[ADMIN_SERVICE_NAME] as protoLoader.ServiceDefinition)['MirrorWrite'] as protoLoader.MethodDefinition<object, object>;
    const manyPuts = Array.from({ length: 2_000 }, (_, index) => put(`key/${index}`, 'v'.repeat(index % 50), { createRevision: 1 + index, modRevision: 3_000 + index, version: 1 + (index % 7), lease: [0n, 7n, ETCD_LEASE, LEASE_MAX][index % 4] ?? 0n }));
    const requests: MirrorRequest[] = [
      { type: 'mirrorBegin', state: b('state'), requireEmpty: true },
      { type: 'mirrorBegin', state: Buffer.alloc(8 * 1024), requireEmpty: false, requireRevision: 77 },
      { type: 'mirrorApply', expectState: b('before'), state: b('after'), revision: 5_000, puts: manyPuts, deletes: manyPuts.slice(0, 500).map((item) => b(`gone/${text(item.key)}`)) },
      { type: 'mirrorApply', expectState: new Uint8Array(0), state: new Uint8Array(0), revision: 1, puts: [], deletes: [] },
      { type: 'mirrorEnd', expectState: b('after') },
    ];
    for (const request of requests) {
      const exact = encodeValidKvCommand({ id: 1, request }).byteLength;
      assert.equal(mirrorRequestBytes(request), exact, request.type);
      const wire = wireRequest(request);
      assert.ok(method.requestSerialize(wire).byteLength <= exact, `${request.type}: the wire message is at most the command`);
    }
  });
});

// wireRequest is the MirrorWriteRequest MirrorClient sends for `request` (as its toWireCommand does).
function wireRequest(request: MirrorRequest): object {
  switch (request.type) {
    case 'mirrorBegin':
      return { begin: { state: request.state, require_empty: request.requireEmpty, require_revision: request.requireRevision ?? 0 }, timeout_ms: 10_000 };
    case 'mirrorApply':
      return {
        apply: { expect_state: request.expectState, state: request.state, revision: request.revision, puts: encodePackedPuts(request.puts), put_count: request.puts.length, deletes: [...request.deletes] },
        timeout_ms: 10_000,
      };
    case 'mirrorEnd':
      return { end: { expect_state: request.expectState }, timeout_ms: 10_000 };
    case 'mirrorReplay':
      return {
        replay: { expect_state: request.expectState, state: request.state, commands: encodePackedCommands(request.commands), command_count: request.commands.length },
        timeout_ms: 10_000,
      };
  }
}

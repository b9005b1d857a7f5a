// The Merkle diff over real gRPC: two stores of 100,000 keys (KvStateMachines on memory-level,
// bench/diff/measure.ts's fixture) each behind a gRPC server with the Admin service's Diff*
// methods over StateMachineDigestPins, compared by the real DiffClient as two clusters. It
// checks that the 10 planted differences come back exactly, with their values; that equal
// stores cost one round of opens and no descent; that a prefix diff names exactly the prefix's
// differences; that one difference costs a few KiB on the wire (the goal is <= 64 KiB); that
// the pins are released; and that bad requests are refused naming the field, an unknown pin
// with its code, and a member without the diff with UNIMPLEMENTED.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type { DiffStores, ServedPins } from '../../bench/diff/measure.ts';
import { buildDiffStores, measureDiff, serveDigestPins } from '../../bench/diff/measure.ts';
import type { DiffReport } from '../../src/client/index.ts';
import { DiffClient } from '../../src/client/index.ts';
import { ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS, ADMIN_SERVICE_NAME, CODE_METADATA_KEY, FIELD_METADATA_KEY, PIN_NOT_FOUND_CODE, StateMachineDigestPins, WireDigestHash, WirePinAt } from '../../src/diff/index.ts';
import { DIGEST_VIEWS_MAX } from '../../src/storage/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';

const KEYS = 100_000;
const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);

let stores: DiffStores;
let equal: DiffStores;
let servedA: ServedPins;
let servedB: ServedPins;
let servedEqual: ServedPins;
// The equal fixture's other side.
let servedEqualA: ServedPins;

before(async () => {
  stores = await buildDiffStores({ keys: KEYS, differences: 10, seed });
  // A store equal to A in content (written in another order): the fixture with no difference.
  equal = await buildDiffStores({ keys: 1_000, differences: 0 });
  servedA = await serveDigestPins(new StateMachineDigestPins(stores.a, { clusterId: 0xa, memberId: 0xa1 }));
  servedB = await serveDigestPins(new StateMachineDigestPins(stores.b, { clusterId: 0xb, memberId: 0xb1 }));
  servedEqual = await serveDigestPins(new StateMachineDigestPins(equal.b, { clusterId: 0xc, memberId: 0xc1 }));
  servedEqualA = await serveDigestPins(new StateMachineDigestPins(equal.a, { clusterId: 0xd, memberId: 0xd1 }));
});

after(async () => {
  for (const served of [servedA, servedB, servedEqual, servedEqualA]) await served?.close();
  await stores?.close();
  await equal?.close();
});

const shape = (report: DiffReport): string[] => report.differences.map((difference) => `${difference.kind} ${Buffer.from(difference.key).toString()}`);

test('two clusters of 100,000 keys with 10 planted differences: exactly those 10, with their values', async () => {
  const client = new DiffClient();
  try {
    const report = await client.diff({ endpoints: [servedA.endpoint], against: [servedB.endpoint], valueBytesMax: 9 });
    assert.deepEqual(shape(report), stores.planted, `seed ${seed}`);
    assert.equal(report.mode, 'clusters');
    assert.equal(report.hash, 'content');
    assert.equal(report.equal, false);
    assert.equal(report.truncated, false);
    assert.deepEqual(report.inconsistencies, []);
    assert.deepEqual({ endpoint: report.a.endpoint, memberId: report.a.memberId, keyCount: report.a.keyCount, index: report.a.index }, { endpoint: servedA.endpoint, memberId: 0xa1, keyCount: KEYS, index: stores.a.appliedIndex() });
    assert.deepEqual({ clusterId: report.b.clusterId, keyCount: report.b.keyCount, revision: report.b.revision }, { clusterId: 0xb, keyCount: stores.b.stateDigest().digest.keyCount, revision: stores.b.revision() });
    for (const difference of report.differences) {
      const name = Buffer.from(difference.key).toString();
      if (difference.kind === 'missing') assert.ok(difference.a !== undefined && difference.b === undefined, name);
      if (difference.kind === 'extra') assert.equal(Buffer.from(difference.b?.value ?? []).toString(), 'only in B', name);
      if (difference.kind === 'different') {
        assert.equal(Buffer.from(difference.a?.value ?? []).toString(), `value ${Number(name.slice(5))}`.padEnd(9, ' ').slice(0, 9), name);
        assert.equal(difference.a?.valueBytes, 32);
        assert.ok(Buffer.from(difference.b?.value ?? []).toString().startsWith('changed '), name);
      }
    }
    assert.equal(report.stats.rounds, 5, 'four levels and one leaf round');
    assert.ok(report.stats.leavesCompared <= 10);
  } finally {
    client.close();
  }
});

test('the sides swapped: missing and extra swap', async () => {
  const client = new DiffClient();
  try {
    const report = await client.diff({ endpoints: [servedB.endpoint], against: [servedA.endpoint], skipValues: true });
    const swapped = stores.planted.map((line) => line.replace(/^missing /, 'EXTRA ').replace(/^extra /, 'missing ').replace(/^EXTRA /, 'extra '));
    assert.deepEqual(shape(report), swapped);
    assert.ok(report.differences.every((difference) => difference.a === undefined && difference.b === undefined), 'no values fetched');
  } finally {
    client.close();
  }
});

test('a prefix diff names exactly the differences in the prefix', async () => {
  // The prefix of the first planted key's hundred (user/00NNN): 100 keys on A.
  const first = stores.planted[0] ?? '';
  const prefix = first.slice(first.indexOf(' ') + 1, first.indexOf(' ') + 1 + 'user/00NNN'.length);
  const events: string[] = [];
  const client = new DiffClient();
  try {
    const report = await client.diff({ endpoints: [servedA.endpoint], against: [servedB.endpoint], prefix: Buffer.from(prefix), onProgress: (event) => events.push(event.phase) });
    const expected = stores.planted.filter((line) => line.slice(line.indexOf(' ') + 1).startsWith(prefix));
    assert.ok(expected.length >= 1);
    assert.deepEqual(shape(report), expected);
    assert.equal(report.a.keyCount, 100, `keys in ${prefix}`);
    assert.deepEqual(Buffer.from(report.prefix ?? []).toString(), prefix);
    assert.ok(events.includes('open') && events.includes('descend') && events.includes('leaves'), events.join(','));
  } finally {
    client.close();
  }
});

test('equal content: no difference, nothing but hello, pin, open and release', async () => {
  const client = new DiffClient();
  try {
    const report = await client.diff({ endpoints: [servedEqual.endpoint], against: [serveEqualAgainst()] });
    assert.equal(report.equal, true);
    assert.deepEqual(report.differences, []);
    assert.equal(report.stats.rounds, 0);
    assert.equal(report.stats.calls, 8, 'hello, pin, open and release on each side');
  } finally {
    client.close();
  }
});

function serveEqualAgainst(): string {
  return servedEqualA.endpoint;
}

test('one difference among 100,000 keys costs a few KiB on the wire (goal: <= 64 KiB), and the pins are released', async () => {
  const one = await buildDiffStores({ keys: KEYS, differences: 1, seed: seed + 1 });
  const a = await serveDigestPins(new StateMachineDigestPins(one.a, { clusterId: 1, memberId: 1 }));
  const b = await serveDigestPins(new StateMachineDigestPins(one.b, { clusterId: 2, memberId: 2 }));
  try {
    const measured = await measureDiff({ endpoints: [a.endpoint], against: [b.endpoint], countSocketBytes: true });
    assert.equal(measured.differences, 1);
    assert.ok(measured.bytesSent + measured.bytesReceived < 16 * 1024, `${measured.bytesSent} + ${measured.bytesReceived} message bytes`);
    assert.ok((measured.socketBytesSent ?? 0) + (measured.socketBytesReceived ?? 0) < 64 * 1024, `${measured.socketBytesSent} + ${measured.socketBytesReceived} socket bytes`);
    assert.ok((measured.socketBytesSent ?? 0) > measured.bytesSent, 'the socket carries the messages and HTTP/2');
    assert.equal(measured.rounds, 5);
    // Every pin was released: the state machine can open its full allowance of views again.
    const views = Array.from({ length: DIGEST_VIEWS_MAX }, () => one.a.openDigestView());
    for (const view of views) await view.close();
  } finally {
    await a.close();
    await b.close();
    await one.close();
  }
});

// A raw client of the Admin service, to send what DiffClient never would.
function rawClient(endpoint: string): { call: (method: string, request: object) => Promise<unknown>; close: () => void } {
  const definition = protoLoader.loadSync(ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS);
  const service = definition[ADMIN_SERVICE_NAME] as protoLoader.ServiceDefinition;
  const client = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  return {
    call: (method, request) =>
      new Promise((resolve, reject) => {
        const definitionOf = service[method] as protoLoader.MethodDefinition<object, object>;
        client.makeUnaryRequest(definitionOf.path, definitionOf.requestSerialize, definitionOf.responseDeserialize, request, (error, response) => (error === null ? resolve(response) : reject(error)));
      }),
    close: () => client.close(),
  };
}

async function refusal(promise: Promise<unknown>): Promise<{ code: string | undefined; field: string | undefined }> {
  try {
    await promise;
  } catch (error) {
    const metadata = (error as grpc.ServiceError).metadata;
    return { code: metadata?.get(CODE_METADATA_KEY)[0] as string | undefined, field: metadata?.get(FIELD_METADATA_KEY)[0] as string | undefined };
  }
  assert.fail('expected the call to be refused');
}

test('bad requests are refused naming the field; an unknown pin with its code', async () => {
  const raw = rawClient(servedA.endpoint);
  try {
    const pin = (await raw.call('DiffPin', { at: WirePinAt.APPLIED })) as { pin_id: string };
    const tree = { pin_id: pin.pin_id, hash: WireDigestHash.CONTENT };
    assert.deepEqual(await refusal(raw.call('DiffPin', { at: 0 })), { code: ErrorCode.INVALID_ARGUMENT, field: 'at' });
    assert.deepEqual(await refusal(raw.call('DiffNodes', { tree, level: 0, parents: [0] })), { code: ErrorCode.INVALID_ARGUMENT, field: 'level' });
    assert.deepEqual(await refusal(raw.call('DiffNodes', { tree, level: 2, parents: [16] })), { code: ErrorCode.INVALID_ARGUMENT, field: 'parents' });
    assert.deepEqual(await refusal(raw.call('DiffNodes', { tree: { ...tree, hash: 0 }, level: 1, parents: [0] })), { code: ErrorCode.INVALID_ARGUMENT, field: 'tree.hash' });
    assert.deepEqual(await refusal(raw.call('DiffLeafKeys', { tree, leaves: [65_536] })), { code: ErrorCode.INVALID_ARGUMENT, field: 'leaves' });
    assert.deepEqual(await refusal(raw.call('DiffLeafKeys', { tree, leaves: Array.from({ length: 1_025 }, (_, leaf) => leaf) })), { code: ErrorCode.INVALID_ARGUMENT, field: 'leaves' });
    assert.deepEqual(await refusal(raw.call('DiffValues', { pin_id: pin.pin_id, keys: [Buffer.from('k')], value_bytes_max: 65_537 })), { code: ErrorCode.INVALID_ARGUMENT, field: 'value_bytes_max' });
    assert.deepEqual(await refusal(raw.call('DiffNodes', { tree: { ...tree, pin_id: 'nope' }, level: 1, parents: [0] })), { code: PIN_NOT_FOUND_CODE, field: 'pin_id' });
    // A good call answers 16 sums of 16 bytes per parent.
    const nodes = (await raw.call('DiffNodes', { tree, level: 2, parents: [3, 15] })) as { sums: Buffer };
    assert.equal(nodes.sums.byteLength, 2 * 16 * 16);
    await raw.call('DiffRelease', { pin_id: pin.pin_id });
    assert.deepEqual(await refusal(raw.call('DiffNodes', { tree, level: 1, parents: [0] })), { code: PIN_NOT_FOUND_CODE, field: 'pin_id' });
    // A state machine alone has no Raft to agree on a checkpoint.
    assert.deepEqual(await refusal(raw.call('DiffPin', { at: WirePinAt.CHECKPOINT })), { code: ErrorCode.UNIMPLEMENTED, field: undefined });
  } finally {
    raw.close();
  }
});

test('a member that does not serve the diff: UNIMPLEMENTED; no member answering: UNAVAILABLE', async () => {
  const server = new grpc.Server();
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))));
  const client = new DiffClient();
  try {
    await assert.rejects(client.diff({ endpoints: [`127.0.0.1:${port}`], against: [servedB.endpoint] }), (error) => isStrataError(error, ErrorCode.UNIMPLEMENTED));
    // A dead first endpoint is skipped for the next one of the same side.
    const dead = await deadEndpoint();
    const report = await client.diff({ endpoints: [dead, servedEqual.endpoint], against: [serveEqualAgainst()], callTimeoutMs: 2_000 });
    assert.equal(report.equal, true);
    assert.equal(report.a.endpoint, servedEqual.endpoint);
    await assert.rejects(client.diff({ endpoints: [dead], against: [servedB.endpoint], callTimeoutMs: 2_000 }), (error) => isStrataError(error, ErrorCode.UNAVAILABLE));
  } finally {
    client.close();
    server.forceShutdown();
  }
});

// deadEndpoint is a local port nothing listens on (bound, then closed).
async function deadEndpoint(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return `127.0.0.1:${port}`;
}

// EtcdClient.snapshot against a hand-made Maintenance.Snapshot server, to check what a real
// server never sends on purpose: a digest that does not match, a stream that ends early,
// byte counts that disagree, silence (the idle timeout) and a caller's abort.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';

import type { ServerWritableStream, ServiceDefinition } from '@grpc/grpc-js';
import { Server, ServerCredentials } from '@grpc/grpc-js';

import { EtcdClient } from '../../src/client/index.ts';
import { loadEtcdServices } from '../../src/server/proto-loading.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';

type Behaviour = (call: ServerWritableStream<unknown, object>) => void;

const BODY = Buffer.alloc(3 * 4096, 7);
const digest = (bytes: Uint8Array): Buffer => createHash('sha256').update(bytes).digest();

let behaviour: Behaviour = () => undefined;
let server: Server;
let endpoint: string;
let client: EtcdClient;

before(async () => {
  server = new Server();
  const maintenance: ServiceDefinition = loadEtcdServices().maintenance;
  server.addService(maintenance, { Snapshot: (call: ServerWritableStream<unknown, object>) => behaviour(call) });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
  });
  endpoint = `127.0.0.1:${port}`;
  client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 2_000 });
});

after(() => {
  client.close();
  server.forceShutdown();
});

// sends writes `messages` then ends the stream (OK).
function sends(messages: readonly { remaining_bytes: number; blob: Uint8Array }[]): Behaviour {
  return (call) => {
    for (const message of messages) call.write({ ...message, version: '' });
    call.end();
  };
}

async function drain(options: { signal?: AbortSignal; idleTimeoutMs?: number } = {}): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of client.snapshot(endpoint, options)) chunks.push(chunk.bytes);
  return chunks;
}

const rejectsWith = (code: ErrorCode) => (error: unknown) => isStrataError(error, code);

test('the data then a matching digest: every chunk, the digest last', async () => {
  behaviour = sends([
    { remaining_bytes: 8192, blob: BODY.subarray(0, 4096) },
    { remaining_bytes: 0, blob: BODY.subarray(4096) },
    { remaining_bytes: 0, blob: digest(BODY) },
  ]);
  const chunks = await drain();
  assert.equal(chunks.length, 3);
  assert.deepEqual(Buffer.concat(chunks.slice(0, 2)), BODY);
});

test('a digest that does not match is CORRUPTION', async () => {
  behaviour = sends([
    { remaining_bytes: 0, blob: BODY },
    { remaining_bytes: 0, blob: digest(Buffer.from('something else')) },
  ]);
  await assert.rejects(drain(), rejectsWith(ErrorCode.CORRUPTION));
});

test('a stream that ends before its digest, or whose counts disagree, is CORRUPTION', async () => {
  behaviour = sends([{ remaining_bytes: 4096, blob: BODY.subarray(0, 8192) }]);
  await assert.rejects(drain(), rejectsWith(ErrorCode.CORRUPTION));
  behaviour = sends([
    { remaining_bytes: 8192, blob: BODY.subarray(0, 4096) },
    { remaining_bytes: 100, blob: BODY.subarray(4096) },
  ]);
  await assert.rejects(drain(), rejectsWith(ErrorCode.CORRUPTION));
  behaviour = sends([
    { remaining_bytes: 0, blob: BODY },
    { remaining_bytes: 0, blob: digest(BODY) },
    { remaining_bytes: 0, blob: digest(BODY) },
  ]);
  await assert.rejects(drain(), rejectsWith(ErrorCode.CORRUPTION));
});

test('a silent server is TIMEOUT after the idle time; an abort is CANCELED', async () => {
  behaviour = (call) => call.write({ remaining_bytes: 4096, blob: BODY.subarray(0, 8192), version: '' });
  await assert.rejects(drain({ idleTimeoutMs: 200 }), rejectsWith(ErrorCode.TIMEOUT));
  const controller = new AbortController();
  behaviour = (call) => {
    call.write({ remaining_bytes: 4096, blob: BODY.subarray(0, 8192), version: '' });
    setImmediate(() => controller.abort());
  };
  await assert.rejects(drain({ signal: controller.signal, idleTimeoutMs: 10_000 }), rejectsWith(ErrorCode.CANCELED));
  await assert.rejects(drain({ signal: controller.signal }), rejectsWith(ErrorCode.CANCELED));
});

test('an error status from the server is its code', async () => {
  behaviour = (call) => call.emit('error', { code: 15, details: 'etcdserver: corrupt cluster' });
  await assert.rejects(drain(), rejectsWith(ErrorCode.CORRUPTION));
  behaviour = (call) => call.emit('error', { code: 14, details: 'etcdserver: server stopped' });
  await assert.rejects(drain(), rejectsWith(ErrorCode.STOPPED));
});

// The echo server: a grpc-js server on etcd's KV service whose Put and Range answer at once,
// without storing anything. It runs as its own process (like a real server) and is the
// ceiling the client harness reaches on this machine: a real server can only be slower.
//
//   node bench/cluster/echo-server.ts PORT [--raw] [--proto-wait-ms N]
//
// With proto/etcd/etcdserverpb/rpc.proto present it serves the service from that file through
// @grpc/proto-loader, so requests are decoded and responses encoded by protobufjs as a
// grpc-js server built the usual way does. Without it (or with --raw) it serves the same
// method paths with hand-written codecs (bench/cluster/wire.ts) and says so. Put answers with
// a ResponseHeader; Range answers with a header and one 100-byte KeyValue, the size of what
// etcd returns to the benchmark's gets.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';

import { KV_PUT, KV_RANGE } from './wire.ts';

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: { raw: { type: 'boolean', default: false }, 'proto-wait-ms': { type: 'string', default: '0' } },
});
const port = Number(positionals[0]);
if (!(Number.isInteger(port) && port > 0 && port < 65536)) throw new Error(`echo-server: bad port ${positionals[0]}`);
const PROTO_WAIT_MS_MAX = 30 * 60_000;
const protoWaitMs = Number(options['proto-wait-ms']);
if (!(protoWaitMs >= 0 && protoWaitMs <= PROTO_WAIT_MS_MAX)) throw new Error('echo-server: bad --proto-wait-ms');

const repository = join(import.meta.dirname, '..', '..');
const PROTO_PATH = join(repository, 'proto', 'etcd', 'etcdserverpb', 'rpc.proto');
const VALUE = Buffer.alloc(100, 0x61);
const KEY = Buffer.from('bench/echo');
const HEADER = { cluster_id: '1', member_id: '1', revision: '1', raft_term: '1' };

async function waitForProto(): Promise<boolean> {
  const deadline = Date.now() + protoWaitMs;
  while (!existsSync(PROTO_PATH)) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  return true;
}

async function protoService(server: Server): Promise<string> {
  const protoLoader = await import('@grpc/proto-loader');
  const grpc = await import('@grpc/grpc-js');
  const definition = protoLoader.loadSync(PROTO_PATH, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
    includeDirs: [join(repository, 'proto'), join(repository, 'proto', 'etcd')],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { etcdserverpb?: { KV?: { service: Parameters<Server['addService']>[0] } } };
  const service = loaded.etcdserverpb?.KV?.service;
  if (service === undefined) throw new Error(`${PROTO_PATH} has no etcdserverpb.KV service`);
  const kv = { key: KEY, value: VALUE, create_revision: '1', mod_revision: '1', version: '1' };
  const implementation: UntypedServiceImplementation = {
    Put: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => callback(null, { header: HEADER }),
    Range: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => callback(null, { header: HEADER, kvs: [kv], count: '1' }),
  };
  server.addService(service, implementation);
  return `proto-loader (${PROTO_PATH.slice(repository.length + 1)})`;
}

function rawService(server: Server): string {
  // PutResponse{header{cluster_id 1, member_id 1, revision 1, raft_term 1}}.
  const header = Buffer.from([0x08, 1, 0x10, 1, 0x18, 1, 0x20, 1]);
  const putResponse = Buffer.concat([Buffer.from([0x0a, header.length]), header]);
  // RangeResponse{header, kvs[KeyValue{key 1, create_revision 2, mod_revision 3, version 4, value 5}], count 4}.
  const keyValue = Buffer.concat([Buffer.from([0x0a, KEY.length]), KEY, Buffer.from([0x10, 1, 0x18, 1, 0x20, 1, 0x2a, VALUE.length]), VALUE]);
  const rangeResponse = Buffer.concat([Buffer.from([0x0a, header.length]), header, Buffer.from([0x12, keyValue.length]), keyValue, Buffer.from([0x20, 1])]);
  const identity = (bytes: Buffer): Buffer => bytes;
  const method = (path: string) => ({
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  });
  server.addService(
    { Put: method(KV_PUT), Range: method(KV_RANGE) },
    {
      Put: (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback(null, putResponse),
      Range: (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback(null, rangeResponse),
    },
  );
  return 'hand-written codecs (no proto/etcd/etcdserverpb/rpc.proto)';
}

// The same lean options as stratakv's server (src/server/etcd-server.ts), so the ceiling is fair.
const server = new Server({ 'grpc.enable_channelz': 0 });
let codecs: string;
if (!options.raw && (await waitForProto())) {
  try {
    codecs = await protoService(server);
  } catch (error) {
    console.error(`echo-server: could not serve from ${PROTO_PATH}: ${error instanceof Error ? error.message : String(error)}; using hand-written codecs`);
    codecs = rawService(server);
  }
} else {
  codecs = rawService(server);
}
await new Promise<void>((resolve, reject) => {
  server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error) => (error === null ? resolve() : reject(error)));
});
console.log(`echo-server listening on 127.0.0.1:${port} (node ${process.version}, ${codecs})`);
const stop = (): void => {
  server.tryShutdown(() => process.exit(0));
  setTimeout(() => process.exit(0), 1_000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

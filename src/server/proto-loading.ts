// Loading etcd's .proto files (proto/etcd) once per process, with the options the services'
// wire types (etcd-wire.ts) are written for.

import { fileURLToPath } from 'node:url';

import type { GrpcObject, ServiceDefinition } from '@grpc/grpc-js';
import { loadPackageDefinition } from '@grpc/grpc-js';
import type { Options } from '@grpc/proto-loader';
import { loadSync } from '@grpc/proto-loader';

import { assert } from '../util/assert.ts';
import {
  decodeDeleteRangeRequest,
  decodePutRequest,
  decodeRangeRequest,
  encodeDeleteRangeResponse,
  encodePutResponse,
  encodeRangeResponse,
  withExactCompareLeases,
} from './etcd-kv-codec.ts';
import type { WireTxnRequest } from './etcd-wire.ts';

/** ETCD_PROTO_INCLUDE_DIR is the include directory of etcd's .proto files (proto/etcd). */
export const ETCD_PROTO_INCLUDE_DIR: string = fileURLToPath(new URL('../../proto/etcd', import.meta.url));

/** ETCD_PROTO_FILE is etcd's rpc.proto, relative to ETCD_PROTO_INCLUDE_DIR. */
export const ETCD_PROTO_FILE = 'etcdserverpb/rpc.proto';

/**
 * ETCD_PROTO_LOADER_OPTIONS decode as etcd-wire.ts describes: names as in the .proto, 64-bit
 * integers as numbers (ids and revisions are safe integers), bytes as Buffer, enums as
 * numbers, and no defaults or oneof names filled in, which would cost per request.
 */
export const ETCD_PROTO_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: Number,
  bytes: Buffer,
  defaults: false,
  oneofs: false,
  includeDirs: [ETCD_PROTO_INCLUDE_DIR],
};

/** EtcdServices are the service definitions of etcd's API that stratakv serves. */
export interface EtcdServices {
  readonly kv: ServiceDefinition;
  readonly cluster: ServiceDefinition;
  readonly maintenance: ServiceDefinition;
}

let loaded: EtcdServices | undefined;

/**
 * loadEtcdServices loads etcd's services (once; later calls answer the same definitions).
 * The KV service's Put, Range and DeleteRange decode requests and encode responses with the
 * hand-written codec (withKvCodec); everything else stays on protobufjs.
 */
export function loadEtcdServices(): EtcdServices {
  if (loaded !== undefined) return loaded;
  const grpcObject = loadPackageDefinition(loadSync(ETCD_PROTO_FILE, ETCD_PROTO_LOADER_OPTIONS));
  const etcd = grpcObject['etcdserverpb'] as GrpcObject | undefined;
  assert(etcd !== undefined, 'rpc.proto has no package etcdserverpb');
  loaded = { kv: withKvCodec(serviceOf(etcd, 'KV')), cluster: serviceOf(etcd, 'Cluster'), maintenance: serviceOf(etcd, 'Maintenance') };
  return loaded;
}

/**
 * withKvCodec answers a copy of the KV service definition whose Put, Range and DeleteRange
 * use etcd-kv-codec.ts on the server's side (requestDeserialize, responseSerialize): those
 * are the calls on the hot path, and protobufjs's decode and encode are a measurable share of
 * their CPU. Txn stays on protobufjs, but its compares' lease operands are then read again
 * exactly by the codec (withExactCompareLeases: protobufjs rounds an int64 beyond 2^53). The
 * client's side (requestSerialize, responseDeserialize), the paths and the other fields stay
 * protobufjs's, so the definition still describes the same service.
 */
export function withKvCodec(kv: ServiceDefinition): ServiceDefinition {
  const put = kv['Put'];
  const range = kv['Range'];
  const deleteRange = kv['DeleteRange'];
  const txn = kv['Txn'];
  assert(put !== undefined, 'etcdserverpb.KV has no Put');
  assert(range !== undefined, 'etcdserverpb.KV has no Range');
  assert(deleteRange !== undefined, 'etcdserverpb.KV has no DeleteRange');
  assert(txn !== undefined, 'etcdserverpb.KV has no Txn');
  const txnDeserialize = txn.requestDeserialize;
  for (const [definition, path] of [[put, '/etcdserverpb.KV/Put'], [range, '/etcdserverpb.KV/Range'], [deleteRange, '/etcdserverpb.KV/DeleteRange'], [txn, '/etcdserverpb.KV/Txn']] as const) {
    assert(definition.path === path, `withKvCodec was given ${definition.path}, not ${path}`);
    assert(!definition.requestStream, `${path} streams requests; the KV codec serves unary calls only`);
    assert(!definition.responseStream, `${path} streams responses; the KV codec serves unary calls only`);
  }
  return {
    ...kv,
    Put: { ...put, requestDeserialize: decodePutRequest, responseSerialize: encodePutResponse },
    Range: { ...range, requestDeserialize: decodeRangeRequest, responseSerialize: encodeRangeResponse },
    DeleteRange: { ...deleteRange, requestDeserialize: decodeDeleteRangeRequest, responseSerialize: encodeDeleteRangeResponse },
    Txn: { ...txn, requestDeserialize: (buffer: Buffer) => withExactCompareLeases(txnDeserialize(buffer) as WireTxnRequest, buffer) },
  };
}

function serviceOf(etcd: GrpcObject, name: string): ServiceDefinition {
  const constructor = etcd[name] as { service?: ServiceDefinition } | undefined;
  assert(constructor?.service !== undefined, `rpc.proto has no service etcdserverpb.${name}`);
  return constructor.service;
}

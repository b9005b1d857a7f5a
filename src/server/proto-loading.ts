// Loading etcd's .proto files (proto/etcd) once per process, with the options the services'
// wire types (etcd-wire.ts) are written for.

import { fileURLToPath } from 'node:url';

import type { GrpcObject, ServiceDefinition } from '@grpc/grpc-js';
import { loadPackageDefinition } from '@grpc/grpc-js';
import type { Options } from '@grpc/proto-loader';
import { loadSync } from '@grpc/proto-loader';

import { assert } from '../util/assert.ts';

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

/** loadEtcdServices loads etcd's services (once; later calls answer the same definitions). */
export function loadEtcdServices(): EtcdServices {
  if (loaded !== undefined) return loaded;
  const grpcObject = loadPackageDefinition(loadSync(ETCD_PROTO_FILE, ETCD_PROTO_LOADER_OPTIONS));
  const etcd = grpcObject['etcdserverpb'] as GrpcObject | undefined;
  assert(etcd !== undefined, 'rpc.proto has no package etcdserverpb');
  loaded = { kv: serviceOf(etcd, 'KV'), cluster: serviceOf(etcd, 'Cluster'), maintenance: serviceOf(etcd, 'Maintenance') };
  return loaded;
}

function serviceOf(etcd: GrpcObject, name: string): ServiceDefinition {
  const constructor = etcd[name] as { service?: ServiceDefinition } | undefined;
  assert(constructor?.service !== undefined, `rpc.proto has no service etcdserverpb.${name}`);
  return constructor.service;
}

// A bare grpc-js client for etcd's services, for the server tests: each call answers a
// promise of the decoded response, or rejects with the grpc-js ServiceError.

import type { Client, GrpcObject, ServiceError } from '@grpc/grpc-js';
import { credentials, loadPackageDefinition, Metadata } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

import { ETCD_PROTO_FILE, ETCD_PROTO_LOADER_OPTIONS } from '../../src/server/index.ts';

type Call = (request: object, options?: { deadline?: number; metadata?: Readonly<Record<string, string>> }) => Promise<any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** EtcdTestClient has one promise-returning function per etcd method the tests call. */
export interface EtcdTestClient {
  readonly kv: Record<'Range' | 'Put' | 'DeleteRange' | 'Txn' | 'Compact', Call>;
  readonly cluster: Record<'MemberList' | 'MemberAdd' | 'MemberRemove' | 'MemberPromote' | 'MemberUpdate', Call>;
  readonly maintenance: Record<'Status' | 'MoveLeader' | 'Defragment' | 'Alarm', Call>;
  close(): void;
}

/** connectEtcdTestClient connects to `url` (http://host:port). */
export function connectEtcdTestClient(url: string, options: { maxSendBytes?: number } = {}): EtcdTestClient {
  const etcd = loadPackageDefinition(loadSync(ETCD_PROTO_FILE, ETCD_PROTO_LOADER_OPTIONS))['etcdserverpb'] as GrpcObject;
  const address = url.replace(/^http:\/\//, '');
  const channelOptions = { 'grpc.max_send_message_length': options.maxSendBytes ?? -1, 'grpc.max_receive_message_length': -1 };
  const clients: Client[] = [];
  const make = <M extends string>(service: string, methods: readonly M[]): Record<M, Call> => {
    const Constructor = etcd[service] as unknown as new (address: string, creds: unknown, options: object) => Client;
    const client = new Constructor(address, credentials.createInsecure(), channelOptions);
    clients.push(client);
    const calls = {} as Record<M, Call>;
    for (const method of methods) {
      calls[method] = (request, { metadata: fields = {}, ...callOptions } = {}) =>
        new Promise((resolve, reject) => {
          const fn = (client as unknown as Record<string, (...args: unknown[]) => void>)[method];
          const metadata = new Metadata();
          for (const [key, value] of Object.entries(fields)) metadata.set(key, value);
          fn?.call(client, request, metadata, callOptions, (error: ServiceError | null, response: unknown) => (error === null ? resolve(response) : reject(error)));
        });
    }
    return calls;
  };
  return {
    kv: make('KV', ['Range', 'Put', 'DeleteRange', 'Txn', 'Compact']),
    cluster: make('Cluster', ['MemberList', 'MemberAdd', 'MemberRemove', 'MemberPromote', 'MemberUpdate']),
    maintenance: make('Maintenance', ['Status', 'MoveLeader', 'Defragment', 'Alarm']),
    close: () => {
      for (const client of clients) client.close();
    },
  };
}

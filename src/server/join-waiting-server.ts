// The Join service (proto/stratakv/admin.proto) that a member started with --join serves on
// its peer URLs while it waits to be added, so that `stratakv migrate plan` can tell a
// started member (its name and zone) from one that is not running or a mistyped URL. It
// answers nothing else; the caller closes it before the member's peer transport binds the
// same ports.

import { loadPackageDefinition, Server } from '@grpc/grpc-js';
import type { GrpcObject, ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

import { ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS } from '../diff/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { unary } from './diff-service.ts';
import { bind, parseListenUrl } from './etcd-server.ts';

/** JoinWaitingInfo is what the waiting member says of itself. */
export interface JoinWaitingInfo {
  readonly name: string;
  readonly zone: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
}

/** JoinWaitingServer is the running Join service. */
export interface JoinWaitingServer {
  /** The listen URLs with the ports actually bound. */
  readonly urls: readonly string[];
  /** close stops serving and frees the ports (at once: the calls are tiny). */
  close(): Promise<void>;
}

let loaded: ServiceDefinition | undefined;

function joinService(): ServiceDefinition {
  if (loaded !== undefined) return loaded;
  const grpcObject = loadPackageDefinition(loadSync(ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS));
  const constructor = ((grpcObject['stratakv'] as GrpcObject | undefined)?.['admin'] as GrpcObject | undefined)?.['Join'] as { service?: ServiceDefinition } | undefined;
  assert(constructor?.service !== undefined, 'admin.proto has no service stratakv.admin.Join');
  loaded = constructor.service;
  return loaded;
}

/** startJoinWaitingServer serves Join.Waiting on `listenUrls` until closed. */
export async function startJoinWaitingServer(listenUrls: readonly string[], info: JoinWaitingInfo): Promise<JoinWaitingServer> {
  const addresses = listenUrls.map(parseListenUrl);
  const server = new Server({ 'grpc.enable_channelz': 0 });
  server.addService(joinService(), {
    Waiting: unary('Join.Waiting', undefined, () => Promise.resolve({ name: info.name, zone: info.zone, peer_urls: [...info.peerUrls], client_urls: [...info.clientUrls] })),
  });
  const urls: string[] = [];
  try {
    for (const address of addresses) urls.push(`http://${address.host}:${await bind(server, `${address.host}:${address.port}`)}`);
  } catch (error) {
    server.forceShutdown();
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `cannot listen on ${listenUrls[urls.length] ?? '?'} while waiting to join: ${(error as Error).message}`, { cause: error });
  }
  let closing: Promise<void> | undefined;
  return {
    urls,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      });
      return closing;
    },
  };
}

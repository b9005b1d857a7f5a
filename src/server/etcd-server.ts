// startEtcdServer: one gRPC server that serves etcd's KV, Cluster and Maintenance services
// over an EtcdBackend on every listen URL (and, given a log source, stratakv's Admin service).

import type { IntegrityNode } from './integrity-service.ts';
import type { ClusterInfoNode } from './cluster-info-service.ts';
import type { MigrationNode } from './migration-service.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Tracer } from '@opentelemetry/api';

import type { GrpcServerMetrics } from '../obs/index.ts';

import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { DigestPinSource, LogDeltaSource } from '../diff/index.ts';
import { widenHttp2Windows } from '../transport/index.ts';
import { createAdminService, loadAdminService } from './admin-service.ts';
import type { EtcdBackend } from './backend.ts';
import { createClusterService } from './etcd-cluster-service.ts';
import { createKvService } from './etcd-kv-service.ts';
import { createMaintenanceService } from './etcd-maintenance-service.ts';
import { loadEtcdServices } from './proto-loading.ts';
import { instrumentService } from './grpc-instrumentation.ts';
import { listenSharingHttp, type SharedListener } from './shared-listener.ts';
import type { EtcdServerLogger } from './unary-call.ts';

/**
 * GRPC_OVERHEAD_BYTES is etcd's grpcOverheadBytes: gRPC accepts messages this much larger
 * than --max-request-bytes, so that a request a little over the limit reaches the server and
 * gets etcd's "request is too large" instead of a transport error.
 */
export const GRPC_OVERHEAD_BYTES = 512 * 1024;

/** LISTEN_URLS_MAX bounds the URLs one server listens on. */
export const LISTEN_URLS_MAX = 16;

/** EtcdServerOptions configures startEtcdServer. */
export interface EtcdServerOptions {
  readonly backend: EtcdBackend;
  /** http://host:port URLs (etcd's --listen-client-urls); port 0 picks a free port. */
  readonly listenUrls: readonly string[];
  /** etcd's --max-request-bytes: the largest write request. */
  readonly maxRequestBytes: number;
  readonly logger?: EtcdServerLogger;
  /**
   * The member's committed log: when given, stratakv's own Admin service (the log-delta
   * stream, admin-service.ts) is served on the same URLs (raftNodeLogSource(node)), with
   * mirror mode's MirrorRead and MirrorWrite over `backend` (mirror-service.ts).
   */
  readonly logSource?: LogDeltaSource;
  /**
   * The member's digest views: with logSource, the Admin service also answers the Merkle
   * diff (`stratakv diff`, diff-service.ts) (raftNodeDigestPins(node)).
   */
  readonly digestPins?: DigestPinSource;
  /** The member's integrity checks and rebuild (Admin.Check, Admin.Rebuild; the RaftNode in production). */
  readonly integrity?: IntegrityNode;
  /** The member's view of the cluster (Admin.ClusterInfo; the RaftNode in production). */
  readonly clusterInfo?: ClusterInfoNode;
  /** The member's migration calls (Admin.Journal*, Replication, MemberChange, TransferLeader; the RaftNode in production). */
  readonly migration?: MigrationNode;
  /** gRPC server metrics (grpc_server_*_total); absent, nothing is counted. */
  readonly grpcMetrics?: GrpcServerMetrics;
  /**
   * Plain HTTP/1.1 on the client URLs (etcd serves /health and /version there): when given,
   * each URL's connections are told apart by their first bytes (shared-listener.ts), HTTP/2
   * to the gRPC server and HTTP/1.1 to this handler.
   */
  readonly httpHandler?: (request: IncomingMessage, response: ServerResponse) => void;
  /** With a tracer every KV call is a SERVER span (etcd-kv-service.ts); absent: no tracing. */
  readonly tracer?: Tracer;
}

/** EtcdServerCloseOptions says how close() treats calls in flight. */
export interface EtcdServerCloseOptions {
  /**
   * Cancel calls in flight (their backend signals abort) instead of waiting for them. Without
   * it close() waits for them, so stop the backend first if its calls may wait for long.
   */
  readonly force?: boolean;
}

/** EtcdServer is a running server. */
export interface EtcdServer {
  /** The listen URLs with the ports actually bound, in the order given. */
  readonly urls: readonly string[];
  /** close stops listening and ends the server (see EtcdServerCloseOptions). */
  close(options?: EtcdServerCloseOptions): Promise<void>;
}

/**
 * startEtcdServer starts serving etcd's API over `backend` on `listenUrls`. It refuses
 * URLs that are not http://host:port with INVALID_ARGUMENT; a port that cannot be bound
 * rejects with the cause, and nothing is left listening.
 */
export async function startEtcdServer(options: EtcdServerOptions): Promise<EtcdServer> {
  assert(Number.isSafeInteger(options.maxRequestBytes) && options.maxRequestBytes > 0, 'maxRequestBytes must be a positive integer');
  const addresses = options.listenUrls.map(parseListenUrl);
  if (addresses.length === 0 || addresses.length > LISTEN_URLS_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `listenUrls: give 1 to ${LISTEN_URLS_MAX} URLs, got ${addresses.length}`);
  }
  const server = new Server({
    'grpc.max_receive_message_length': options.maxRequestBytes + GRPC_OVERHEAD_BYTES,
    'grpc.max_send_message_length': -1,
    // channelz keeps per-call statistics nobody reads here; it costs CPU on every request.
    'grpc.enable_channelz': 0,
  });
  const services = loadEtcdServices();
  const logger = options.logger;
  const metrics = options.grpcMetrics;
  server.addService(services.kv, instrumentService(services.kv, createKvService({ backend: options.backend, maxRequestBytes: options.maxRequestBytes, logger, tracer: options.tracer }), metrics));
  server.addService(services.cluster, instrumentService(services.cluster, createClusterService(options.backend, logger), metrics));
  server.addService(services.maintenance, instrumentService(services.maintenance, createMaintenanceService(options.backend, logger), metrics));
  const admin =
    options.logSource === undefined
      ? undefined
      : createAdminService({ source: options.logSource, logger, digestPins: options.digestPins, integrity: options.integrity, migration: options.migration, clusterInfo: options.clusterInfo, mirror: options.backend });
  if (admin !== undefined) {
    const adminService = loadAdminService();
    server.addService(adminService, instrumentService(adminService, admin.implementation, metrics));
  }

  const urls: string[] = [];
  let shared: SharedListener | undefined;
  try {
    if (options.httpHandler !== undefined) {
      shared = await listenSharingHttp(server, addresses, options.httpHandler);
      widenHttp2Windows(server);
      urls.push(...shared.ports.map((port, index) => `http://${addresses[index]?.host ?? '?'}:${port}`));
    } else {
      for (const address of addresses) {
        const port = await bind(server, `${address.host}:${address.port}`);
        // A client across a slow link would otherwise send a 1.5 MiB put 64 KiB per round trip.
        widenHttp2Windows(server);
        urls.push(`http://${address.host}:${port}`);
      }
    }
  } catch (error) {
    server.forceShutdown();
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `cannot listen on ${options.listenUrls[urls.length] ?? '?'}: ${(error as Error).message}`, { cause: error });
  }

  let closing: Promise<void> | undefined;
  return {
    urls,
    close(closeOptions: EtcdServerCloseOptions = {}): Promise<void> {
      if (closeOptions.force === true) {
        admin?.endAll();
        shared?.destroy();
        server.forceShutdown();
      }
      closing ??= Promise.all([
        shared?.close(),
        new Promise<void>((resolve) => {
          server.tryShutdown(() => resolve());
        }),
      ]).then(() => undefined);
      return closing;
    },
  };
}

/** bind binds `address` (host:port) on `server`, answering the port bound. */
export function bind(server: Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (error, port) => (error === null ? resolve(port) : reject(error)));
  });
}

// parseListenUrl accepts etcd's client URL form, http://host:port (https needs TLS, which
// stratakv does not serve yet). The host keeps its brackets for IPv6, as grpc-js wants.
/** parseListenUrl reads a listen URL (http://host:port); INVALID_ARGUMENT otherwise. */
export function parseListenUrl(text: string): { host: string; port: number } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `listen URL ${JSON.stringify(text)} is not a URL (want http://host:port)`);
  }
  if (url.protocol !== 'http:') {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `listen URL ${text}: scheme must be http (TLS is not supported yet)`);
  }
  if (url.hostname === '' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '') {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `listen URL ${text}: want http://host:port`);
  }
  // URL drops the scheme's default port: http://host:80 and http://host both mean 80.
  return { host: url.hostname, port: url.port === '' ? 80 : Number(url.port) };
}

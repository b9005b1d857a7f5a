// `stratakv serve`: one cluster member as a process — a RaftNode with its gRPC peer transport
// and the etcd-compatible client API. SIGINT, SIGTERM or SIGHUP stop it gracefully: a leader hands its
// leadership over first, so clients see no election timeout.

import { RaftNode } from '../src/node/index.ts';
import { createMetricsRegistry, createObsRequestHandler, GrpcServerMetrics, renderStatusPage, startObsHttpServer, startTracing } from '../src/obs/index.ts';
import type { ObsHttpServer, StructuredLogger } from '../src/obs/index.ts';
import { RaftNodeBackend, raftNodeDigestPins, raftNodeLogSource, startEtcdServer, startJoinWaitingServer } from '../src/server/index.ts';
import { DEFAULT_KV_LIMITS } from '../src/storage/index.ts';
import { GrpcTransport } from '../src/transport/index.ts';
import { packageVersion } from './package-version.ts';
import type { ServeOptions } from './serve-flags.ts';
import { resolveJoin } from './serve-join.ts';
import { describeMigration, healthSource, ownRow, statusDocument } from './member-status.ts';
import { listenForStopSignals } from './stop-signals.ts';

/** ETCD_API_VERSION is the etcd release whose v3 API stratakv answers like. */
export const ETCD_API_VERSION = '3.4.0';

/** serverVersion is what Maintenance.Status reports: etcd's API level, with stratakv's version as build metadata. */
export function serverVersion(): string {
  return `${ETCD_API_VERSION}+stratakv.${packageVersion()}`;
}

/**
 * runServe runs one member until it is stopped by a signal or removed from the cluster; returns
 * the exit code. With --join it first waits, serving no client, until the cluster has added it
 * (serve-join.ts); a stop signal meanwhile ends it with 0. It logs through `logger` (made by
 * main.ts from --log-level and --log-format, which logs a refusal to start through it too).
 */
export async function runServe(given: ServeOptions, logger: StructuredLogger): Promise<number> {
  const options = await joinIfAsked(given, logger);
  if (options === undefined) {
    logger.info('stopped before joining the cluster');
    return 0;
  }
  // Metrics are created only when they are served: without --listen-metrics-urls nothing is counted.
  const registry = options.listenMetricsUrls.length > 0 ? await createMetricsRegistry() : undefined;
  // On only when the OTEL_* variables ask for it (src/obs/tracing.ts); undefined costs nothing.
  const tracing = await startTracing({ memberName: options.name, serviceVersion: packageVersion() });
  if (tracing !== undefined) logger.info('tracing on', { reason: tracing.reason });
  const node = await RaftNode.start({
    name: options.name,
    dataDir: options.dataDir,
    initialCluster: options.initialCluster,
    initialClusterState: options.initialClusterState,
    initialClusterToken: options.initialClusterToken,
    advertisePeerUrls: options.initialAdvertisePeerUrls,
    advertiseClientUrls: options.advertiseClientUrls,
    zone: options.zone,
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    electionTimeoutMs: options.electionTimeoutMs,
    limits: { ...DEFAULT_KV_LIMITS, requestBytesMax: options.maxRequestBytes },
    quotaBackendBytes: options.quotaBackendBytes,
    integrityCheckPolicy: { checkpointEntries: options.integrityCheckEntries, checkpointIntervalMs: options.integrityCheckIntervalMs },
    scrubPolicy: { cycleMs: options.scrubIntervalMs, rateBytesPerSecond: options.scrubRateBytes },
    repairCorruptState: options.repairCorruptState,
    unsafeSkipDigest: options.unsafeNoStateDigest,
    ...(tracing !== undefined ? { tracer: tracing.tracer } : {}),
    snapshotPolicy: { snapshotCount: options.snapshotCount, catchUpEntries: options.snapshotCatchupEntries, sendBytesPerSecond: options.snapshotSendRateBytes, sendBytesPerSecondUnderLoad: options.snapshotSendRateBytesUnderLoad },
    version: serverVersion(),
    ...(registry !== undefined ? { meter: registry.meter, describeMigration } : {}),
    logger,
    // The fsync-failure exit: its line is written synchronously before the abort.
    onFatal: (error) => {
      logger.fatal('fatal storage error, stopping', { error });
      process.abort();
    },
    createTransport: ({ localId, clusterId }) => new GrpcTransport({ localId, clusterId, listenUrls: options.listenPeerUrls, advertiseUrls: options.initialAdvertisePeerUrls, logger }),
    hooks: {
      onRoleChange: ({ role, leaderId, term }) => logger.info(`role ${role}`, { leader: leaderId.toString(16), term }),
      onRemoved: () => logger.warn('this member was removed from the cluster; stopping after a grace period'),
    },
  });
  const health = healthSource(node);
  const version = (): { etcdserver: string; etcdcluster: string } => ({ etcdserver: ETCD_API_VERSION, etcdcluster: ETCD_API_VERSION.replace(/\.\d+$/, '.0') });
  let server;
  let metricsServer: ObsHttpServer | undefined;
  try {
    server = await startEtcdServer({
      backend: new RaftNodeBackend(node, serverVersion()),
      logSource: raftNodeLogSource(node),
      digestPins: raftNodeDigestPins(node),
      integrity: node,
      clusterInfo: node,
      migration: node,
      listenUrls: options.listenClientUrls,
      maxRequestBytes: options.maxRequestBytes,
      logger,
      ...(registry !== undefined ? { grpcMetrics: new GrpcServerMetrics(registry.meter, { extensive: options.metrics === 'extensive' }) } : {}),
      // etcd answers /health and /version on its client URLs; our own row feeds other members' status pages.
      httpHandler: createObsRequestHandler({ health, version, member: () => ownRow(node) }),
      ...(tracing !== undefined ? { tracer: tracing.tracer } : {}),
    });
    if (registry !== undefined) {
      metricsServer = await startObsHttpServer(
        options.listenMetricsUrls,
        createObsRequestHandler({ health, version, metrics: registry, member: () => ownRow(node), status: () => statusDocument(node, serverVersion()), page: async () => renderStatusPage(await statusDocument(node, serverVersion())) }),
      );
    }
  } catch (error) {
    await server?.close({ force: true });
    await node.stop({ transferLeadership: false });
    throw error;
  }
  logger.info('serving', {
    member: node.memberId.toString(16),
    cluster: node.clusterId.toString(16),
    clientUrls: server.urls,
    peerUrls: options.listenPeerUrls,
    ...(metricsServer !== undefined ? { metricsUrls: metricsServer.urls } : {}),
    dataDir: options.dataDir,
    ...(options.zone === '' ? {} : { zone: options.zone }),
  });

  const stopSignals = listenForStopSignals((signal) => logger.warn(`${signal} again; already stopping`));
  const signalled: Promise<string> = stopSignals.first;
  const reason = await Promise.race([signalled, node.whenStopped().then(() => 'removed from the cluster')]);
  logger.info(`stopping: ${reason}`);
  // Stop the node first (a leader hands over while clients can still reach us, so their
  // writes are passed on), then the client API.
  await node.stop();
  await server.close({ force: true });
  await metricsServer?.close();
  await registry?.shutdown();
  await tracing?.shutdown();
  stopSignals.dispose();
  logger.info('stopped');
  return 0;
}

// joinIfAsked resolves --join (serve-join.ts) while a stop signal ends the wait; it answers the
// options to start with, or undefined when stopped. Without --join it answers `options` at once.
// While it waits, the peer URLs answer Join.Waiting (who is waiting there, in which zone), so
// that a migration plan can tell a started member from a wrong URL; the member's peer
// transport takes the port over once it is added.
async function joinIfAsked(options: ServeOptions, logger: StructuredLogger): Promise<ServeOptions | undefined> {
  if (options.join.length === 0) return options;
  const controller = new AbortController();
  const stopSignals = listenForStopSignals(() => undefined);
  void stopSignals.first.then((signal) => {
    logger.info(`${signal}: no longer waiting to join`);
    controller.abort();
  });
  try {
    return await resolveJoin(options, {
      logger,
      signal: controller.signal,
      whileWaiting: async () => {
        const info = { name: options.name, zone: options.zone, peerUrls: options.initialAdvertisePeerUrls, clientUrls: options.advertiseClientUrls };
        const waiting = await startJoinWaitingServer(options.listenPeerUrls, info);
        logger.info('--join: the peer URLs answer Join.Waiting until this member is added', { urls: waiting.urls });
        return () => waiting.close();
      },
    });
  } finally {
    stopSignals.dispose();
  }
}

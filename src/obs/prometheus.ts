// The metrics registry of one process: an OpenTelemetry MeterProvider whose one reader is
// the Prometheus exporter, served by our own HTTP server (obs-http-server.ts) at /metrics
// rather than the exporter's, so that /metrics, /health and the status page share the
// --listen-metrics-urls as etcd's do. Exposition is etcd-like: no timestamps, no otel_scope
// labels, no target_info series.

import type { IncomingMessage, ServerResponse } from 'node:http';

import type { Meter } from '@opentelemetry/api';

/** MetricsRegistry is a process's meter and its Prometheus exposition. */
export interface MetricsRegistry {
  /** The meter every instrument of this process is created from. */
  readonly meter: Meter;
  /** serveScrape answers a Prometheus scrape (text exposition format 0.0.4). */
  serveScrape(request: IncomingMessage, response: ServerResponse): void;
  /** shutdown stops collecting (idempotent). */
  shutdown(): Promise<void>;
}

/**
 * createMetricsRegistry starts a MeterProvider read by a Prometheus exporter that starts no
 * server of its own. The SDK is imported here, on first use: a member that serves no metrics
 * loads none of it.
 */
export async function createMetricsRegistry(): Promise<MetricsRegistry> {
  const [{ PrometheusExporter }, { MeterProvider }] = await Promise.all([import('@opentelemetry/exporter-prometheus'), import('@opentelemetry/sdk-metrics')]);
  const exporter = new PrometheusExporter({ preventServerStart: true, appendTimestamp: false, withoutScopeInfo: true, withoutTargetInfo: true });
  const provider = new MeterProvider({ readers: [exporter] });
  let stopped: Promise<void> | undefined;
  return {
    meter: provider.getMeter('stratakv'),
    serveScrape: (request, response) => exporter.getMetricsRequestHandler(request, response),
    shutdown: () => (stopped ??= provider.shutdown().catch(() => undefined)),
  };
}

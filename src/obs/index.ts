// The public surface of src/obs: logs (pino), metrics (the Prometheus endpoint), traces
// (OpenTelemetry, on when the OTEL_* variables ask), /health, the plain-HTTP server of a
// member and its status page.
export { grpcLogSink } from './grpc-log.ts';
export type { GrpcLogSink } from './grpc-log.ts';
export { createLogger, LOG_ITEMS_MAX, LOG_VALUE_DEPTH_MAX, RENAMED_FIELD_PREFIX, RESERVED_LOG_KEYS } from './logger.ts';
export type { LogFields, LogFormat, LoggerOptions, LogLevel, LogSink, StructuredLogger } from './logger.ts';
export { MemberMetrics, WAL_FSYNC_BUCKETS_SECONDS, BACKEND_COMMIT_BUCKETS_SECONDS, PEER_RTT_BUCKETS_SECONDS, SNAPSHOT_BUCKETS_SECONDS, PEERS_TRACKED_MAX } from './metrics.ts';
export type { MemberMetricSources, MigrationMetricView, KvRequestKind } from './metrics.ts';
export { GrpcServerMetrics, GrpcMethodCounters, GRPC_CODE_NAMES, GRPC_HANDLING_BUCKETS_SECONDS } from './grpc-metrics.ts';
export type { GrpcMethodType } from './grpc-metrics.ts';
export { createMetricsRegistry } from './prometheus.ts';
export type { MetricsRegistry } from './prometheus.ts';
export { checkHealth, HEALTH_READ_TIMEOUT_MS } from './health.ts';
export type { HealthSource, HealthAnswer } from './health.ts';
export { createObsRequestHandler, startObsHttpServer, OBS_LISTEN_URLS_MAX } from './obs-http-server.ts';
export type { ObsRoutes, ObsHttpServer } from './obs-http-server.ts';
export { renderStatusPage, STATUS_PAGE_REFRESH_MS } from './status-page.ts';
export type { MemberStatusRow, MigrationStatusView, StatusDocument } from './status-document.ts';
export { startTracing, tracingDecision, presampledTracer, rootSampleRatio, SHUTDOWN_TIMEOUT_MS_DEFAULT, SERVICE_NAME_DEFAULT, TRACER_NAME } from './tracing.ts';
export type { StartTracingOptions, TracingDecision, TracingEnvironment, TracingHandle } from './tracing.ts';
export { formatTraceparent, isSampled, parseTraceparent, TRACEPARENT_HEADER, TRACEPARENT_LENGTH, TRACESTATE_HEADER } from './trace-context.ts';
export * from './spans.ts';

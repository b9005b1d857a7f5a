// The public surface of src/obs: structured logs through pino (traces and metrics arrive with their issue).
export { grpcLogSink } from './grpc-log.ts';
export type { GrpcLogSink } from './grpc-log.ts';
export { createLogger, LOG_ITEMS_MAX, LOG_VALUE_DEPTH_MAX, RENAMED_FIELD_PREFIX, RESERVED_LOG_KEYS } from './logger.ts';
export type { LogFields, LogFormat, LoggerOptions, LogLevel, LogSink, StructuredLogger } from './logger.ts';

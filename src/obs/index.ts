// The public surface of src/obs: logging and tracing (metrics arrive with their issue).
export { createConsoleLogger } from './logger.ts';
export type { LogLevel } from './logger.ts';
export { startTracing, tracingDecision, SHUTDOWN_TIMEOUT_MS_DEFAULT, SERVICE_NAME_DEFAULT, TRACER_NAME } from './tracing.ts';
export type { StartTracingOptions, TracingDecision, TracingEnvironment, TracingHandle } from './tracing.ts';
export { formatTraceparent, isSampled, parseTraceparent, TRACEPARENT_HEADER, TRACEPARENT_LENGTH, TRACESTATE_HEADER } from './trace-context.ts';
export * from './spans.ts';

// Turning tracing on or off from OpenTelemetry's standard environment variables, and starting
// the SDK (@opentelemetry/sdk-node's NodeSDK) for traces only when it is on.
//
// When it is off nothing of the SDK is loaded (the import is dynamic, reached only when on) and
// startTracing answers undefined: every part of stratakv that traces takes its tracer as an
// option, and an undefined tracer is a single check on its hot path (src/obs/README.md).
//
// On means an exporter was asked for: OTEL_TRACES_EXPORTER names one (otlp, console, zipkin),
// or, with OTEL_TRACES_EXPORTER unset, an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). The spec's default exporter is otlp even with no
// endpoint, which would make every member export to localhost:4318 unasked; stratakv waits to
// be asked. Off wins: OTEL_SDK_DISABLED=true, OTEL_TRACES_EXPORTER=none, or
// OTEL_TRACES_SAMPLER=always_off (nothing would ever be recorded).

import type { Context, ContextManager, Span, SpanOptions, Tracer } from '@opentelemetry/api';

/** SHUTDOWN_TIMEOUT_MS_DEFAULT bounds how long shutdown() waits for the last spans to be exported. */
export const SHUTDOWN_TIMEOUT_MS_DEFAULT = 5_000;
/** SERVICE_NAME_DEFAULT is the resource's service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise. */
export const SERVICE_NAME_DEFAULT = 'stratakv';
/** TRACER_NAME is the instrumentation scope of stratakv's spans. */
export const TRACER_NAME = 'stratakv';

/** TracingEnvironment is the part of the environment tracing reads (process.env in production). */
export type TracingEnvironment = Readonly<Record<string, string | undefined>>;

/** TracingDecision says whether the environment turns tracing on, and why. */
export interface TracingDecision {
  readonly enabled: boolean;
  readonly reason: string;
}

/** TracingHandle is tracing once started: the tracer to pass down, and its shutdown. */
export interface TracingHandle {
  readonly tracer: Tracer;
  /** What the environment turned on, for a log line. */
  readonly reason: string;
  /** shutdown exports what is left and stops the SDK; it resolves within the shutdown timeout whatever the exporter does. */
  shutdown(): Promise<void>;
}

/** StartTracingOptions name the member whose spans these are. */
export interface StartTracingOptions {
  /** --name: the resource's stratakv.member.name. */
  readonly memberName: string;
  /** The member id in hex: the resource's service.instance.id (the member name when absent). */
  readonly memberId?: string;
  /** The resource's service.version. */
  readonly serviceVersion?: string;
  /** Default SHUTDOWN_TIMEOUT_MS_DEFAULT. */
  readonly shutdownTimeoutMs?: number;
  /** The environment to decide from; default process.env (which the SDK itself reads). */
  readonly env?: TracingEnvironment;
}

/** tracingDecision decides from OpenTelemetry's standard variables whether tracing is on (see the file header). */
export function tracingDecision(env: TracingEnvironment): TracingDecision {
  if (value(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return { enabled: false, reason: 'OTEL_SDK_DISABLED=true' };
  const exporters = list(env, 'OTEL_TRACES_EXPORTER').filter((name) => name !== 'null');
  if (exporters[0] === 'none') return { enabled: false, reason: 'OTEL_TRACES_EXPORTER=none' };
  if (value(env, 'OTEL_TRACES_SAMPLER')?.toLowerCase() === 'always_off') return { enabled: false, reason: 'OTEL_TRACES_SAMPLER=always_off' };
  if (exporters.length > 0) return { enabled: true, reason: `OTEL_TRACES_EXPORTER=${exporters.join(',')}` };
  const endpoint = value(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? value(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  if (endpoint !== undefined) return { enabled: true, reason: `OTLP export to ${endpoint}` };
  return { enabled: false, reason: 'no trace exporter asked for (OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_ENDPOINT are unset)' };
}

/**
 * startTracing starts the OpenTelemetry SDK for traces when the environment asks for it
 * (tracingDecision) and answers the tracer to pass to the member's parts; undefined when off,
 * having loaded nothing of the SDK. The SDK reads the rest of its configuration (exporter,
 * protocol, endpoint, sampler, batch delays) from the standard variables itself. It starts no
 * metrics or logs exporter unless OTEL_METRICS_EXPORTER or OTEL_LOGS_EXPORTER asks for one
 * (the SDK's own default is OTLP for both), no auto-instrumentation, no global context
 * manager and no global propagator: stratakv hands span contexts over explicitly.
 */
export async function startTracing(options: StartTracingOptions): Promise<TracingHandle | undefined> {
  const env = options.env ?? process.env;
  const decision = tracingDecision(env);
  if (!decision.enabled) return undefined;
  const [{ NodeSDK }, resources, { trace, ProxyTracerProvider, INVALID_SPAN_CONTEXT }, { AlwaysOnSampler, ParentBasedSampler }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/api'),
    import('@opentelemetry/sdk-trace'),
  ]);
  const rootRatio = rootSampleRatio(env);
  const base = resources.defaultResource().merge(
    resources.resourceFromAttributes({
      'service.name': SERVICE_NAME_DEFAULT,
      'service.instance.id': options.memberId ?? options.memberName,
      'stratakv.member.name': options.memberName,
      ...(options.serviceVersion !== undefined ? { 'service.version': options.serviceVersion } : {}),
    }),
  );
  const sdk = new NodeSDK({
    resource: base,
    // The environment's attributes last, so OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win;
    // no serviceInstanceIdDetector (it would replace the member's id with a random one).
    resourceDetectors: [resources.hostDetector, resources.processDetector, resources.envDetector],
    instrumentations: [],
    // parentbased_traceidratio: the root decision is ours (presampledTracer), the SDK follows it.
    ...(rootRatio !== undefined ? { sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }) } : {}),
    ...(value(env, 'OTEL_METRICS_EXPORTER') === undefined ? { metricReaders: [] } : {}),
    ...(value(env, 'OTEL_LOGS_EXPORTER') === undefined ? { logRecordProcessors: [] } : {}),
    // null: none registered (the SDK accepts it; its type does not say so).
    contextManager: null as unknown as ContextManager,
    textMapPropagator: null,
  });
  sdk.start();
  const global = trace.getTracerProvider();
  const provider = global instanceof ProxyTracerProvider ? global.getDelegate() : global;
  const sdkTracer = provider.getTracer(TRACER_NAME, options.serviceVersion);
  const tracer = rootRatio === undefined ? sdkTracer : presampledTracer(sdkTracer, rootRatio, trace.wrapSpanContext(INVALID_SPAN_CONTEXT), (context) => trace.getSpanContext(context) !== undefined);
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? SHUTDOWN_TIMEOUT_MS_DEFAULT;
  let stopping: Promise<void> | undefined;
  return {
    tracer,
    reason: decision.reason,
    shutdown: () => {
      stopping ??= boundedBy(sdk.shutdown(), shutdownTimeoutMs);
      return stopping;
    },
  };
}

/**
 * rootSampleRatio is the ratio of OTEL_TRACES_SAMPLER=parentbased_traceidratio
 * (OTEL_TRACES_SAMPLER_ARG, default 1 as the SDK's) when it is below 1; undefined for any other
 * sampler, which the SDK then applies itself.
 */
export function rootSampleRatio(env: TracingEnvironment): number | undefined {
  if (value(env, 'OTEL_TRACES_SAMPLER')?.toLowerCase() !== 'parentbased_traceidratio') return undefined;
  const ratio = Number(value(env, 'OTEL_TRACES_SAMPLER_ARG') ?? '1');
  return Number.isFinite(ratio) && ratio >= 0 && ratio < 1 ? ratio : undefined;
}

/**
 * presampledTracer makes the root sampling decision of parentbased_traceidratio before the SDK
 * is asked for a span: a root span not drawn (1 - ratio of them) is `unsampled`, a shared
 * non-recording span, and the SDK does nothing at all for it. Why: the SDK's own decision
 * costs an id generation, its sampler and its self-metrics per request, measured at 2 % of a
 * leader's CPU at 1 % sampling (bench:kv c256 profile, 2026-12-06) — most of what tracing cost.
 * A span with a parent goes to the SDK, whose ParentBased sampler follows the parent's flag;
 * a root span drawn goes to the SDK with an always-on root sampler. The draw is Math.random,
 * not the trace id, so the decision is not consistent across services for root spans — they
 * start here, there is no other service to agree with.
 */
export function presampledTracer(inner: Tracer, ratio: number, unsampled: Span, hasParent: (context: Context) => boolean): Tracer {
  return {
    startSpan(name: string, options?: SpanOptions, context?: Context): Span {
      const root = options?.root === true || context === undefined || !hasParent(context);
      if (root && Math.random() >= ratio) return unsampled;
      return inner.startSpan(name, options, context);
    },
    startActiveSpan: inner.startActiveSpan.bind(inner) as Tracer['startActiveSpan'],
  };
}

// boundedBy waits for `work` at most timeoutMs; its failure is swallowed (spans not exported
// at shutdown are lost either way, and stopping the member must not fail for it).
async function boundedBy(work: Promise<unknown>, timeoutMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
    timer.unref();
  });
  try {
    await Promise.race([work.then(() => undefined, () => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

function value(env: TracingEnvironment, name: string): string | undefined {
  const found = env[name]?.trim();
  return found === undefined || found === '' ? undefined : found;
}

function list(env: TracingEnvironment, name: string): string[] {
  return (value(env, name) ?? '')
    .split(',')
    .map((item) => item.trim().toLowerCase())
    .filter((item) => item !== '');
}

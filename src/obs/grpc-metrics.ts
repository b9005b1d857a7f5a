// gRPC server metrics with go-grpc-prometheus's names and labels, as etcd exports them:
// grpc_server_started_total, grpc_server_handled_total (with grpc_code),
// grpc_server_msg_received_total, grpc_server_msg_sent_total, and with --metrics=extensive
// grpc_server_handling_seconds. Each method's counters are one object fetched when the
// service is set up; a call adds to plain numbers, read at the scrape.

import type { Attributes, Histogram, Meter } from '@opentelemetry/api';

/** GrpcMethodType is go-grpc-prometheus's grpc_type label. */
export type GrpcMethodType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

/** GRPC_CODE_NAMES are the gRPC status codes by number, as go-grpc-prometheus labels them. */
export const GRPC_CODE_NAMES: readonly string[] = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied',
  'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
];

/** GRPC_HANDLING_BUCKETS_SECONDS are go-grpc-prometheus's default histogram buckets. */
export const GRPC_HANDLING_BUCKETS_SECONDS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** GrpcMethodCounters are one method's counters; the server's wrapper adds to them. */
export class GrpcMethodCounters {
  readonly attributes: Attributes;
  started = 0;
  received = 0;
  sent = 0;
  readonly handled: number[] = new Array<number>(GRPC_CODE_NAMES.length).fill(0);
  readonly #handling: Histogram | undefined;

  constructor(attributes: Attributes, handling: Histogram | undefined) {
    this.attributes = attributes;
    this.#handling = handling;
  }

  /** finished counts a call that ended with `code` (a gRPC status number) after `startedMs` (performance.now()). */
  finished(code: number, startedMs: number): void {
    const slot = Number.isInteger(code) && code >= 0 && code < GRPC_CODE_NAMES.length ? code : 2;
    this.handled[slot] = (this.handled[slot] ?? 0) + 1;
    if (this.#handling !== undefined) this.#handling.record((performance.now() - startedMs) / 1000, this.attributes);
  }

  /** Whether calls are timed (--metrics=extensive); the wrapper reads the clock only then. */
  get timed(): boolean {
    return this.#handling !== undefined;
  }
}

/** GrpcServerMetrics keeps the counters of every method a server serves. */
export class GrpcServerMetrics {
  readonly #methods = new Map<string, GrpcMethodCounters>();
  readonly #handling: Histogram | undefined;

  /** `extensive` adds grpc_server_handling_seconds (etcd's --metrics=extensive). */
  constructor(meter: Meter, options: { readonly extensive: boolean }) {
    this.#handling = options.extensive
      ? meter.createHistogram('grpc_server_handling_seconds', {
          description: 'Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.',
          advice: { explicitBucketBoundaries: [...GRPC_HANDLING_BUCKETS_SECONDS] },
        })
      : undefined;
    const methods = this.#methods;
    meter.createObservableCounter('grpc_server_started_total', { description: 'Total number of RPCs started on the server.' }).addCallback((result) => {
      for (const counters of methods.values()) result.observe(counters.started, counters.attributes);
    });
    meter.createObservableCounter('grpc_server_handled_total', { description: 'Total number of RPCs completed on the server, regardless of success or failure.' }).addCallback((result) => {
      for (const counters of methods.values()) {
        counters.handled.forEach((count, code) => {
          if (count > 0) result.observe(count, { ...counters.attributes, grpc_code: GRPC_CODE_NAMES[code] });
        });
      }
    });
    meter.createObservableCounter('grpc_server_msg_received_total', { description: 'Total number of RPC stream messages received on the server.' }).addCallback((result) => {
      for (const counters of methods.values()) result.observe(counters.received, counters.attributes);
    });
    meter.createObservableCounter('grpc_server_msg_sent_total', { description: 'Total number of gRPC stream messages sent by the server.' }).addCallback((result) => {
      for (const counters of methods.values()) result.observe(counters.sent, counters.attributes);
    });
  }

  /** method answers the counters of `service`/`name` (created on first use). */
  method(service: string, name: string, type: GrpcMethodType): GrpcMethodCounters {
    const key = `${service}/${name}`;
    let counters = this.#methods.get(key);
    if (counters === undefined) {
      counters = new GrpcMethodCounters({ grpc_type: type, grpc_service: service, grpc_method: name }, this.#handling);
      this.#methods.set(key, counters);
    }
    return counters;
  }
}

// gRPC server metrics (src/obs grpc-metrics.ts, go-grpc-prometheus's names) for every method a
// service implements: each handler is wrapped once, when the service is added, around the
// method's counters object, so a call costs a few additions. Unary calls are counted
// exactly; a stream's status is taken from how it ends ('finish' OK, 'error' its code,
// 'cancelled' Canceled), and its messages from its writes and reads.

import type { ServiceDefinition, UntypedHandleCall, UntypedServiceImplementation } from '@grpc/grpc-js';

import type { GrpcMethodCounters, GrpcMethodType, GrpcServerMetrics } from '../obs/index.ts';

const CANCELLED_CODE = 1;
const UNKNOWN_CODE = 2;

/** instrumentService answers `implementation` with every method counted in `metrics` (unchanged without metrics). */
export function instrumentService(definition: ServiceDefinition, implementation: UntypedServiceImplementation, metrics: GrpcServerMetrics | undefined): UntypedServiceImplementation {
  if (metrics === undefined) return implementation;
  const wrapped: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const method = definition[name];
    if (method === undefined) {
      wrapped[name] = handler;
      continue;
    }
    const [service = '', methodName = name] = method.path.replace(/^\//, '').split('/');
    const type: GrpcMethodType = method.requestStream ? (method.responseStream ? 'bidi_stream' : 'client_stream') : method.responseStream ? 'server_stream' : 'unary';
    wrapped[name] = wrapHandler(handler, type, metrics.method(service, methodName, type));
  }
  return wrapped;
}

interface StreamLike {
  write(...args: unknown[]): boolean;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

function wrapHandler(handler: UntypedHandleCall, type: GrpcMethodType, counters: GrpcMethodCounters): UntypedHandleCall {
  if (type === 'unary') {
    const unary = handler as (call: unknown, callback: (error: { code?: number } | null, ...rest: unknown[]) => void) => void;
    return ((call: unknown, callback: (error: { code?: number } | null, ...rest: unknown[]) => void) => {
      counters.started += 1;
      counters.received += 1;
      const startedMs = counters.timed ? performance.now() : 0;
      unary(call, (error, ...rest) => {
        if (error === null || error === undefined) counters.sent += 1;
        counters.finished(error === null || error === undefined ? 0 : (error.code ?? UNKNOWN_CODE), startedMs);
        callback(error, ...rest);
      });
    }) as UntypedHandleCall;
  }
  const streaming = handler as (call: StreamLike, ...rest: unknown[]) => void;
  return ((call: StreamLike, ...rest: unknown[]) => {
    counters.started += 1;
    const startedMs = counters.timed ? performance.now() : 0;
    let ended = false;
    const end = (code: number): void => {
      if (ended) return;
      ended = true;
      counters.finished(code, startedMs);
    };
    call.once('finish', () => end(0));
    call.once('error', (error) => end((error as { code?: number } | undefined)?.code ?? UNKNOWN_CODE));
    call.once('cancelled', () => end(CANCELLED_CODE));
    if (type === 'server_stream') counters.received += 1;
    else call.on('data', () => (counters.received += 1));
    if (type !== 'client_stream') {
      const write = call.write.bind(call);
      call.write = (...args: unknown[]) => {
        counters.sent += 1;
        return write(...args);
      };
    }
    if (type === 'client_stream' && typeof rest[0] === 'function') {
      // A client stream ends with its one answer, through the callback.
      const callback = rest[0] as (error: { code?: number } | null, ...values: unknown[]) => void;
      rest[0] = (error: { code?: number } | null, ...values: unknown[]) => {
        if (error === null || error === undefined) counters.sent += 1;
        end(error === null || error === undefined ? 0 : (error.code ?? UNKNOWN_CODE));
        callback(error, ...values);
      };
    }
    streaming(call, ...rest);
  }) as UntypedHandleCall;
}

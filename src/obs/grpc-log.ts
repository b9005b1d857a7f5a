// grpc-js logs through a console of its own (`console.error('E ' + message)` by default), which
// would put lines on a member's stderr that are not log lines. grpc-js's setLogger takes any
// object with its console's error, info and debug; grpcLogSink answers one that writes
// through a StructuredLogger instead, tagged `component: "grpc"`. Which grpc-js messages reach
// it is still grpc-js's choice (GRPC_VERBOSITY, errors only by default; GRPC_TRACE).

import { format } from 'node:util';

import type { StructuredLogger } from './logger.ts';

/** GrpcLogSink is what grpc-js's setLogger uses of a console. */
export interface GrpcLogSink {
  error(...args: unknown[]): void;
  info(...args: unknown[]): void;
  debug(...args: unknown[]): void;
}

/** grpcLogSink answers a GrpcLogSink that writes grpc-js's messages through `logger`, at the level grpc-js gives. */
export function grpcLogSink(logger: StructuredLogger): GrpcLogSink {
  const grpc = logger.child({ component: 'grpc' });
  // grpc-js passes console-style arguments (a message and values for its %s); the text is the message.
  return {
    error: (...args) => grpc.error(format(...args)),
    info: (...args) => grpc.info(format(...args)),
    debug: (...args) => grpc.debug(format(...args)),
  };
}

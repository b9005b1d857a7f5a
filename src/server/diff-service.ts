// The Merkle diff's methods of stratakv.admin.Admin (proto/stratakv/admin.proto, Diff*): this
// file connects grpc-js calls to src/diff's DiffServer, which answers them from the member's
// DigestPinSource (raftNodeDigestPins(node) in production). The admin service mounts these
// handlers beside LogStream when it is given a pin source.
//
// Each call is unary except DiffOpen (server streaming: progress while a key range is read,
// then the root). A request is checked first (INVALID_ARGUMENT naming the field); an error
// ends the call with the error's gRPC status, its message, and its catalogue code in the
// `stratakv-code` trailer (the field in `stratakv-field`), as LogStream's. A client that
// cancels aborts the call's waiting (for a checkpoint pin).

import { Metadata, status as GrpcStatusCode } from '@grpc/grpc-js';
import type { handleServerStreamingCall, handleUnaryCall, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';

import type {
  DigestPinSource,
  WireHelloResponse,
  WireLeafKeysRequest,
  WireLeafKeysResponse,
  WireNodesRequest,
  WireNodesResponse,
  WireOpenProgress,
  WireOpenRequest,
  WirePinRequest,
  WirePinResponse,
  WireReleaseRequest,
  WireValuesRequest,
  WireValuesResponse,
} from '../diff/index.ts';
import {
  CODE_METADATA_KEY,
  DIFF_TIMEOUT_MS_DEFAULT,
  DiffServer,
  FIELD_METADATA_KEY,
  parseLeafKeysRequest,
  parseNodesRequest,
  parsePinAt,
  parsePinId,
  parseTimeoutMs,
  parseTree,
  parseValuesRequest,
} from '../diff/index.ts';
import type { Clock } from '../util/clock.ts';
import { isStrataError } from '../util/errors.ts';
import { toGrpcStatus } from '../util/etcd-errors.ts';
import type { EtcdServerLogger } from './unary-call.ts';
import { errorStatus } from './unary-call.ts';

/** DiffServiceOptions configure createDiffService. */
export interface DiffServiceOptions {
  readonly pins: DigestPinSource;
  readonly logger?: EtcdServerLogger | undefined;
  readonly clock?: Clock;
}

/** DiffService is the Diff* handlers, and a way to forget what they keep. */
export interface DiffService {
  readonly implementation: UntypedServiceImplementation;
  /** close forgets the range trees kept (the pins are the source's). */
  close(): void;
}

/** createDiffService implements the Diff* methods of stratakv.admin.Admin over `options.pins` (see the file comment). */
export function createDiffService(options: DiffServiceOptions): DiffService {
  const server = new DiffServer({ pins: options.pins, ...(options.clock === undefined ? {} : { clock: options.clock }) });
  const logger = options.logger;
  const later = { timeoutMs: DIFF_TIMEOUT_MS_DEFAULT };
  const hello: handleUnaryCall<unknown, WireHelloResponse> = unary('Admin.DiffHello', logger, () => Promise.resolve(server.hello()));
  const pin: handleUnaryCall<WirePinRequest, WirePinResponse> = unary('Admin.DiffPin', logger, (request: WirePinRequest, signal) =>
    server.pin(parsePinAt(request.at), { timeoutMs: parseTimeoutMs(request.timeout_ms), signal }),
  );
  const nodes: handleUnaryCall<WireNodesRequest, WireNodesResponse> = unary('Admin.DiffNodes', logger, (request: WireNodesRequest, signal) => {
    const { tree, level, parents } = parseNodesRequest(request);
    return server.nodes(tree, level, parents, { ...later, signal });
  });
  const leafKeys: handleUnaryCall<WireLeafKeysRequest, WireLeafKeysResponse> = unary('Admin.DiffLeafKeys', logger, (request: WireLeafKeysRequest, signal) => {
    const { tree, leaves } = parseLeafKeysRequest(request);
    return server.leafKeys(tree, leaves, { ...later, signal });
  });
  const values: handleUnaryCall<WireValuesRequest, WireValuesResponse> = unary('Admin.DiffValues', logger, (request: WireValuesRequest, signal) => {
    const { pinId, keys, valueBytesMax } = parseValuesRequest(request);
    return server.values(pinId, keys, valueBytesMax, { ...later, signal });
  });
  const release: handleUnaryCall<WireReleaseRequest, Record<string, never>> = unary('Admin.DiffRelease', logger, async (request: WireReleaseRequest) => {
    await server.release(parsePinId(request.pin_id));
    return {};
  });
  const open: handleServerStreamingCall<WireOpenRequest, WireOpenProgress> = (call: ServerWritableStream<WireOpenRequest, WireOpenProgress>) => {
    const controller = new AbortController();
    let ended = false;
    call.once('cancelled', () => {
      if (!ended) controller.abort();
    });
    const run = async (): Promise<WireOpenProgress> => {
      const tree = parseTree(call.request.tree);
      const timeoutMs = parseTimeoutMs(call.request.timeout_ms);
      return server.open(tree, { timeoutMs, signal: controller.signal }, (keysRead) => {
        if (!ended) call.write({ keys_read: keysRead, done: false, index: 0, revision: 0, key_count: 0, root: new Uint8Array(0) });
      });
    };
    run().then(
      (root) => {
        ended = true;
        call.write(root);
        call.end();
      },
      (error: unknown) => {
        ended = true;
        if (call.cancelled) return;
        const status = statusOf('Admin.DiffOpen', error, logger);
        call.emit('error', status);
      },
    );
  };
  return {
    implementation: { DiffHello: hello, DiffPin: pin, DiffOpen: open, DiffNodes: nodes, DiffLeafKeys: leafKeys, DiffValues: values, DiffRelease: release },
    close: () => server.close(),
  };
}

// unary adapts a handler to grpc-js: the signal aborts when the client cancels; a rejection
// becomes statusOf's status.
export function unary<Request, Response>(method: string, logger: EtcdServerLogger | undefined, handler: (request: Request, signal: AbortSignal) => Promise<Response>): handleUnaryCall<Request, Response> {
  return (call: ServerUnaryCall<Request, Response>, callback) => {
    const controller = new AbortController();
    let answered = false;
    call.once('cancelled', () => {
      if (!answered) controller.abort();
    });
    let pending: Promise<Response>;
    try {
      pending = handler(call.request, controller.signal);
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (response) => {
        answered = true;
        callback(null, response);
      },
      (error: unknown) => {
        answered = true;
        callback(statusOf(method, error, logger));
      },
    );
  };
}

// statusOf is a failed call's status: a StrataError keeps its own message and travels with its
// code (and field) in the trailers; anything else is errorStatus's (logged, or rethrown when
// it is an assertion).
function statusOf(method: string, error: unknown, logger: EtcdServerLogger | undefined): { code: number; details: string; metadata: Metadata } {
  const metadata = new Metadata();
  if (isStrataError(error)) {
    metadata.set(CODE_METADATA_KEY, error.code);
    const field = error.details['field'];
    if (typeof field === 'string') metadata.set(FIELD_METADATA_KEY, field);
    return { code: toGrpcStatus(error).code, details: error.message, metadata };
  }
  const status = errorStatus(method, error, logger);
  return { code: status.code === GrpcStatusCode.OK ? GrpcStatusCode.UNKNOWN : status.code, details: status.details, metadata };
}

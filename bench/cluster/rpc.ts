// A bare grpc-js client for the cluster benchmarks: raw bytes in, raw bytes out.
//
// grpc-js's generic Client takes a serializer and a deserializer per call; with identity
// functions the harness hands grpc-js the bytes it encoded itself (wire.ts) and gets the
// response bytes back untouched, so a request costs the same whichever server answers.
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';

import {
  decodeStatusResponse,
  encodeMoveLeaderRequest,
  MAINTENANCE_MOVE_LEADER,
  MAINTENANCE_STATUS,
  type StatusResponse,
} from './wire.ts';

const identity = (bytes: Buffer): Buffer => bytes;
const EMPTY = Buffer.alloc(0);
const NO_METADATA = new Metadata();

/** hostPort turns "http://127.0.0.1:2379" into "127.0.0.1:2379" (grpc-js's target form). */
export function hostPort(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.hostname !== '127.0.0.1') throw new Error(`hostPort: benchmarks stay on 127.0.0.1, not ${endpoint}`);
  return `${url.hostname}:${url.port}`;
}

/**
 * openClient opens a grpc-js client (one channel, hence one HTTP/2 connection) to `endpoint`.
 * `connection` tells channels to the same endpoint apart: grpc-js shares one connection
 * between channels with equal options, and the harness wants one per channel.
 */
export function openClient(endpoint: string, connection = 0): Client {
  return new Client(hostPort(endpoint), credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.enable_channelz': 0,
    'stratakv.bench.connection': connection,
    'grpc.max_receive_message_length': 16 << 20,
  });
}

const NO_OPTIONS = {};

/**
 * unaryRaw sends `request` bytes to `path` and calls back with the response bytes or the error.
 * A `deadlineMs` of 0 sets no deadline (grpc-js then arms no timer for the call).
 */
export function unaryRaw(
  client: Client,
  path: string,
  request: Buffer,
  deadlineMs: number,
  callback: (error: ServiceError | null, response?: Buffer) => void,
): void {
  client.makeUnaryRequest(path, identity, identity, request, NO_METADATA, deadlineMs > 0 ? { deadline: Date.now() + deadlineMs } : NO_OPTIONS, callback);
}

/** unary is unaryRaw as a promise. */
export function unary(client: Client, path: string, request: Buffer, deadlineMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    unaryRaw(client, path, request, deadlineMs, (error, response) => {
      if (error !== null) reject(error);
      else resolve(response ?? EMPTY);
    });
  });
}

/** status calls Maintenance.Status on `endpoint` with a fresh client. */
export async function status(endpoint: string, deadlineMs: number): Promise<StatusResponse> {
  const client = openClient(endpoint);
  try {
    return decodeStatusResponse(await unary(client, MAINTENANCE_STATUS, EMPTY, deadlineMs));
  } finally {
    client.close();
  }
}

/** moveLeader calls Maintenance.MoveLeader on `endpoint` (the leader) towards member `targetId`. */
export async function moveLeader(endpoint: string, targetId: bigint, deadlineMs: number): Promise<void> {
  const client = openClient(endpoint);
  try {
    await unary(client, MAINTENANCE_MOVE_LEADER, encodeMoveLeaderRequest(targetId), deadlineMs);
  } finally {
    client.close();
  }
}

/** describeError gives "CODE_NAME: details" for a gRPC error, or the message of any other error. */
export function describeError(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'number') {
    const details = 'details' in error && typeof error.details === 'string' ? error.details : '';
    return `${GRPC_CODE_NAMES[error.code] ?? `code ${error.code}`}: ${details}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** GRPC_CODE_NAMES names gRPC status codes by number. */
export const GRPC_CODE_NAMES: readonly string[] = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE',
  'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];

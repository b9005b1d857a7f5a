// The log-delta stream's protocol as both ends see it (proto/stratakv/admin.proto): where the
// .proto is, how it is loaded, the wire shapes @grpc/proto-loader gives with those options,
// their conversion to and from src/diff's own types, the start request's checks, and the
// bounds both ends agree on. src/server serves it and src/client consumes it; neither may
// import the other, so what they share is here.

import { fileURLToPath } from 'node:url';

import type { Options } from '@grpc/proto-loader';

import type { Index } from '../raft/index.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { CHUNK_BYTES_MAX, CHUNK_BYTES_MIN } from './chunk-size-controller.ts';
import type { LogChunk } from './log-delta-frame.ts';
import { ChunkKind, chunkCorruption, isChunkKind } from './log-delta-frame.ts';

/** ADMIN_PROTO_FILE is the admin service's .proto. */
export const ADMIN_PROTO_FILE: string = fileURLToPath(new URL('../../proto/stratakv/admin.proto', import.meta.url));
/** ADMIN_SERVICE_NAME is the service's full name in ADMIN_PROTO_FILE. */
export const ADMIN_SERVICE_NAME = 'stratakv.admin.Admin';
/** LOG_STREAM_METHOD_PATH is the gRPC path of Admin.LogStream. */
export const LOG_STREAM_METHOD_PATH = '/stratakv.admin.Admin/LogStream';

/**
 * ADMIN_PROTO_LOADER_OPTIONS: names as in the .proto, 64-bit integers as numbers (indexes are
 * safe integers), bytes as Buffer, enums as numbers, and defaults filled in, so an absent
 * field reads as 0, false or "" as proto3 means it.
 */
export const ADMIN_PROTO_LOADER_OPTIONS: Options = { keepCase: true, longs: Number, enums: Number, bytes: Buffer, defaults: true, oneofs: false };

/** CODE_METADATA_KEY is the trailer that carries a StrataError code (as the peer protocol's). */
export const CODE_METADATA_KEY = 'stratakv-code';
/** FIELD_METADATA_KEY is the trailer that names the request field an INVALID_ARGUMENT is about. */
export const FIELD_METADATA_KEY = 'stratakv-field';

/** WINDOW_CHUNKS_MAX bounds the chunks sent and not acknowledged. */
export const WINDOW_CHUNKS_MAX = 4;
/** WINDOW_BYTES_MAX bounds their payload bytes (one larger chunk may go alone). */
export const WINDOW_BYTES_MAX = 16 * 1024 * 1024;
/** ACK_STALL_MS_MAX: a consumer that acknowledges nothing (or takes no bytes) for this long is dropped with TIMEOUT. */
export const ACK_STALL_MS_MAX = 30_000;
/** HEARTBEAT_INTERVAL_MS: a stream with nothing to send sends a heartbeat this often. */
export const HEARTBEAT_INTERVAL_MS = 2_000;
/** IDLE_TIMEOUT_MS_DEFAULT: a consumer that hears nothing for this long treats the stream as dead (several heartbeats). */
export const IDLE_TIMEOUT_MS_DEFAULT = 5 * HEARTBEAT_INTERVAL_MS;

/** LogStreamStart is a consumer's start request (admin.proto's LogStreamStart). */
export interface LogStreamStart {
  readonly fromIndex: Index;
  readonly follow: boolean;
  /** 0: the commit index at the start of the call (or no end when following). */
  readonly toIndex: Index;
  /** 0: CHUNK_BYTES_MAX. */
  readonly maxChunkBytes: number;
  /** A snapshot to resume, and the bytes of it the consumer holds. */
  readonly resumeSnapshot?: { readonly id: string; readonly offset: number };
}

/** LogStreamAck is a consumer's acknowledgement. */
export interface LogStreamAck {
  /** Every chunk up to this one is verified and consumed. */
  readonly sequence: number;
  readonly verifiedIndex: Index;
}

/** WireLogStreamStart is LogStreamStart as proto-loader gives it (ADMIN_PROTO_LOADER_OPTIONS). */
export interface WireLogStreamStart {
  readonly from_index?: number;
  readonly follow?: boolean;
  readonly to_index?: number;
  readonly max_chunk_bytes?: number;
  readonly snapshot_id?: string;
  readonly snapshot_offset?: number;
}

/** WireLogStreamRequest is one request message. */
export interface WireLogStreamRequest {
  readonly start?: WireLogStreamStart | null;
  readonly ack?: { readonly sequence?: number; readonly verified_index?: number } | null;
}

/** WireLogChunk is one chunk message. */
export interface WireLogChunk {
  readonly sequence: number;
  readonly kind: number;
  readonly first_index: number;
  readonly last_index: number;
  readonly snapshot_offset: number;
  readonly commit_index: number;
  readonly payload: Uint8Array;
  readonly crc32c: number;
}

/** ParsedLogStreamRequest is a request message, checked: a start, or an ack. */
export type ParsedLogStreamRequest = { readonly type: 'start'; readonly start: LogStreamStart } | { readonly type: 'ack'; readonly ack: LogStreamAck };

/**
 * parseLogStreamRequest checks one request message; a malformed one is INVALID_ARGUMENT
 * naming the field: from_index 0 or not an integer, to_index below from_index - 1,
 * max_chunk_bytes outside 64 KiB..4 MiB, a snapshot_offset without snapshot_id, both or
 * neither of start and ack.
 */
export function parseLogStreamRequest(wire: WireLogStreamRequest): ParsedLogStreamRequest {
  const start = wire.start ?? undefined;
  const ack = wire.ack ?? undefined;
  if (start !== undefined && ack !== undefined) throw invalid('request', 'carries both start and ack; send one');
  if (ack !== undefined) {
    const sequence = ack.sequence ?? 0;
    const verifiedIndex = ack.verified_index ?? 0;
    if (!Number.isSafeInteger(sequence) || sequence < 1) throw invalid('ack.sequence', `must be a chunk's sequence (>= 1), got ${String(sequence)}`);
    if (!Number.isSafeInteger(verifiedIndex) || verifiedIndex < 0) throw invalid('ack.verified_index', `must be a non-negative integer, got ${String(verifiedIndex)}`);
    return { type: 'ack', ack: { sequence, verifiedIndex } };
  }
  if (start === undefined) throw invalid('request', 'carries neither start nor ack');
  return { type: 'start', start: checkStart(fromWireStart(start)) };
}

/** checkStart checks a start request's fields (see parseLogStreamRequest); answers it. */
export function checkStart(start: LogStreamStart): LogStreamStart {
  if (!Number.isSafeInteger(start.fromIndex) || start.fromIndex < 1) {
    throw invalid('from_index', `must be a log index >= 1 (the first entry is 1), got ${String(start.fromIndex)}`);
  }
  if (!Number.isSafeInteger(start.toIndex) || (start.toIndex !== 0 && start.toIndex < start.fromIndex - 1)) {
    throw invalid('to_index', `must be 0 (no end given) or >= from_index - 1 (${start.fromIndex - 1}), got ${String(start.toIndex)}`);
  }
  if (start.maxChunkBytes !== 0 && !(Number.isSafeInteger(start.maxChunkBytes) && start.maxChunkBytes >= CHUNK_BYTES_MIN && start.maxChunkBytes <= CHUNK_BYTES_MAX)) {
    throw invalid('max_chunk_bytes', `must be 0 (the default, ${CHUNK_BYTES_MAX}) or ${CHUNK_BYTES_MIN}..${CHUNK_BYTES_MAX}, got ${String(start.maxChunkBytes)}`);
  }
  const resume = start.resumeSnapshot;
  if (resume !== undefined) {
    if (resume.id === '') throw invalid('snapshot_id', `must name the snapshot when snapshot_offset (${resume.offset}) is set`);
    if (!Number.isSafeInteger(resume.offset) || resume.offset < 1) throw invalid('snapshot_offset', `must be the bytes of snapshot_id already verified (>= 1), got ${String(resume.offset)}`);
  }
  return start;
}

/** toWireStart is the start request as it goes on the wire. */
export function toWireStart(start: LogStreamStart): WireLogStreamStart {
  return {
    from_index: start.fromIndex,
    follow: start.follow,
    to_index: start.toIndex,
    max_chunk_bytes: start.maxChunkBytes,
    ...(start.resumeSnapshot === undefined ? {} : { snapshot_id: start.resumeSnapshot.id, snapshot_offset: start.resumeSnapshot.offset }),
  };
}

function fromWireStart(wire: WireLogStreamStart): LogStreamStart {
  const id = wire.snapshot_id ?? '';
  const offset = wire.snapshot_offset ?? 0;
  if (id !== '' && offset === 0) throw invalid('snapshot_offset', `must be set (>= 1) with snapshot_id ${JSON.stringify(id)}; leave both out to start a snapshot from its first byte`);
  return {
    fromIndex: wire.from_index ?? 0,
    follow: wire.follow === true,
    toIndex: wire.to_index ?? 0,
    maxChunkBytes: wire.max_chunk_bytes ?? 0,
    ...(id === '' && offset === 0 ? {} : { resumeSnapshot: { id, offset } }),
  };
}

/** toWireChunk is a chunk as it goes on the wire. */
export function toWireChunk(chunk: LogChunk): WireLogChunk {
  return {
    sequence: chunk.sequence,
    kind: chunk.kind,
    first_index: chunk.firstIndex,
    last_index: chunk.lastIndex,
    snapshot_offset: chunk.snapshotOffset,
    commit_index: chunk.commitIndex,
    payload: chunk.payload,
    crc32c: chunk.crc32c,
  };
}

/**
 * fromWireChunk reads a chunk message; a kind it does not know, or numbers that are not safe
 * integers, are CORRUPTION naming the chunk. The CRC is checked by the consumer (verifyChunk).
 */
export function fromWireChunk(wire: WireLogChunk, where: string): LogChunk {
  const chunk: LogChunk = {
    sequence: wire.sequence,
    kind: wire.kind as ChunkKind,
    firstIndex: wire.first_index,
    lastIndex: wire.last_index,
    snapshotOffset: wire.snapshot_offset,
    commitIndex: wire.commit_index,
    payload: wire.payload ?? new Uint8Array(0),
    crc32c: wire.crc32c,
  };
  for (const value of [chunk.sequence, chunk.firstIndex, chunk.lastIndex, chunk.snapshotOffset, chunk.commitIndex, chunk.crc32c]) {
    if (!Number.isSafeInteger(value) || value < 0) throw chunkCorruption(chunk, where, `carries a number that is not a safe non-negative integer (${String(value)})`);
  }
  if (!isChunkKind(chunk.kind)) throw chunkCorruption(chunk, where, `has unknown kind ${String(wire.kind)}`);
  if (chunk.kind === ChunkKind.Entries && chunk.lastIndex < chunk.firstIndex) throw chunkCorruption(chunk, where, 'has its last index before its first');
  return chunk;
}

function invalid(field: string, why: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, `log stream: ${field} ${why}`, { details: { field } });
}

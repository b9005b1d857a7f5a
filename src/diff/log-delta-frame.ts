// The framing of the log-delta stream's chunks (proto/stratakv/admin.proto, LogChunk): what a
// chunk holds, its CRC32c, and the payloads of its kinds (entries, snapshot metadata). Pure:
// no I/O, no clock. The producer seals chunks here, the consumer checks them here.
//
// The CRC covers the chunk's position as well as its bytes: the masked CRC32c (the log's,
// src/native) of u8 kind | u64 sequence | u64 first_index | u64 last_index |
// u64 snapshot_offset | u64 commit_index | payload, big-endian. A chunk delivered under the
// wrong number, or with its range altered, fails the check like one with a flipped byte.

import { crc32c, maskCrc32c } from '../native/index.ts';
import type { Entry, Index } from '../raft/index.ts';
import { EntryType } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';

/** ChunkKind is what one chunk carries (admin.proto's ChunkKind, same numbers). */
export const ChunkKind = {
  Entries: 1,
  SnapshotBegin: 2,
  SnapshotData: 3,
  SnapshotEnd: 4,
  Heartbeat: 5,
  End: 6,
} as const;
/** ChunkKind is the union of chunk kinds. */
export type ChunkKind = (typeof ChunkKind)[keyof typeof ChunkKind];

const CHUNK_KINDS: ReadonlySet<number> = new Set(Object.values(ChunkKind));

/** chunkKindName names a kind for messages ("entries", "snapshot-begin", …). */
export function chunkKindName(kind: ChunkKind): string {
  switch (kind) {
    case ChunkKind.Entries:
      return 'entries';
    case ChunkKind.SnapshotBegin:
      return 'snapshot-begin';
    case ChunkKind.SnapshotData:
      return 'snapshot-data';
    case ChunkKind.SnapshotEnd:
      return 'snapshot-end';
    case ChunkKind.Heartbeat:
      return 'heartbeat';
    case ChunkKind.End:
      return 'end';
  }
}

/** isChunkKind tells whether a number received is a known kind. */
export function isChunkKind(value: number): value is ChunkKind {
  return CHUNK_KINDS.has(value);
}

/** LogChunkFields is a chunk before it is sealed with its CRC. */
export interface LogChunkFields {
  /** 1, 2, … within one call. */
  readonly sequence: number;
  readonly kind: ChunkKind;
  readonly firstIndex: Index;
  readonly lastIndex: Index;
  /** SnapshotBegin: where the bytes resume; SnapshotData: the payload's offset in the file; else 0. */
  readonly snapshotOffset: number;
  /** The producer's committed (and applied) index when it made the chunk. */
  readonly commitIndex: Index;
  readonly payload: Uint8Array;
}

/** LogChunk is one sealed chunk. */
export interface LogChunk extends LogChunkFields {
  /** The masked CRC32c described in the file comment. */
  readonly crc32c: number;
}

/** CHUNK_HEADER_BYTES is the length of the fields the CRC covers before the payload. */
export const CHUNK_HEADER_BYTES = 1 + 5 * 8;
/** ENTRY_HEADER_BYTES is an entry's framing in an Entries payload: u64 index, u64 term, u8 type, u32 length. */
export const ENTRY_HEADER_BYTES = 8 + 8 + 1 + 4;
/** ENTRY_DATA_BYTES_MAX bounds one entry's data in a payload (a corrupt length cannot ask for more). */
export const ENTRY_DATA_BYTES_MAX = 256 * 1024 * 1024;
/** SNAPSHOT_ID_BYTES_MAX bounds a snapshot id in SnapshotBegin. */
export const SNAPSHOT_ID_BYTES_MAX = 256;
/** SHA256_BYTES is the length of a SHA-256. */
export const SHA256_BYTES = 32;

/** chunkCrc computes the masked CRC32c of a chunk's fields and payload. */
export function chunkCrc(fields: LogChunkFields): number {
  const header = new Uint8Array(CHUNK_HEADER_BYTES);
  const view = new DataView(header.buffer);
  view.setUint8(0, fields.kind);
  writeU64(view, 1, fields.sequence);
  writeU64(view, 9, fields.firstIndex);
  writeU64(view, 17, fields.lastIndex);
  writeU64(view, 25, fields.snapshotOffset);
  writeU64(view, 33, fields.commitIndex);
  return maskCrc32c(crc32c(fields.payload, crc32c(header)));
}

/** sealChunk checks a chunk's fields (programmer errors are assertions) and adds its CRC. */
export function sealChunk(fields: LogChunkFields): LogChunk {
  assert(Number.isSafeInteger(fields.sequence) && fields.sequence >= 1, 'a chunk sequence is a positive integer');
  assert(isChunkKind(fields.kind), 'a chunk has a known kind');
  assert(Number.isSafeInteger(fields.firstIndex) && fields.firstIndex >= 0, 'first index is a safe integer');
  assert(Number.isSafeInteger(fields.lastIndex) && fields.lastIndex >= fields.firstIndex, 'last index >= first index');
  assert(Number.isSafeInteger(fields.snapshotOffset) && fields.snapshotOffset >= 0, 'snapshot offset is a safe integer');
  assert(Number.isSafeInteger(fields.commitIndex) && fields.commitIndex >= 0, 'commit index is a safe integer');
  return { ...fields, crc32c: chunkCrc(fields) };
}

/**
 * verifyChunk refuses a chunk whose CRC does not match its fields and payload, with
 * CORRUPTION naming the chunk (its sequence and kind) in the message and in `details`.
 */
export function verifyChunk(chunk: LogChunk, where = 'log-delta stream'): void {
  const expected = chunkCrc(chunk);
  if (expected !== chunk.crc32c >>> 0) {
    throw chunkCorruption(chunk, where, `fails its CRC32c (carries ${hex32(chunk.crc32c)}, its bytes give ${hex32(expected)})`);
  }
}

/** chunkCorruption is the CORRUPTION error for chunk `chunk`: the message names it. */
export function chunkCorruption(chunk: Pick<LogChunk, 'sequence' | 'kind' | 'firstIndex' | 'lastIndex'>, where: string, why: string): StrataError {
  const kind = isChunkKind(chunk.kind) ? chunkKindName(chunk.kind) : `kind ${String(chunk.kind)}`;
  return new StrataError(ErrorCode.CORRUPTION, `${where}: chunk ${chunk.sequence} (${kind}, index ${chunk.firstIndex}..${chunk.lastIndex}) ${why}`, {
    details: { sequence: chunk.sequence, kind, firstIndex: chunk.firstIndex, lastIndex: chunk.lastIndex },
  });
}

/** entryEncodedBytes is what one entry takes in an Entries payload. */
export function entryEncodedBytes(entry: Entry): number {
  return ENTRY_HEADER_BYTES + entry.data.byteLength;
}

/**
 * encodeEntries lays out contiguous entries as an Entries payload (see admin.proto): each
 * u64 index | u64 term | u8 type | u32 length | data.
 */
export function encodeEntries(entries: readonly Entry[]): Uint8Array {
  assert(entries.length > 0, 'an Entries chunk holds at least one entry');
  let bytes = 0;
  for (const entry of entries) bytes += entryEncodedBytes(entry);
  const payload = new Uint8Array(bytes);
  const view = new DataView(payload.buffer);
  let at = 0;
  let expectedIndex = (entries[0] as Entry).index;
  for (const entry of entries) {
    assert(entry.index === expectedIndex, 'the entries of a chunk are contiguous');
    assert(entry.data.byteLength <= ENTRY_DATA_BYTES_MAX, 'an entry fits a payload');
    writeU64(view, at, entry.index);
    writeU64(view, at + 8, entry.term);
    view.setUint8(at + 16, entry.type);
    view.setUint32(at + 17, entry.data.byteLength);
    payload.set(entry.data, at + ENTRY_HEADER_BYTES);
    at += entryEncodedBytes(entry);
    expectedIndex += 1;
  }
  return payload;
}

/**
 * decodeEntries reads an Entries payload that must hold exactly the entries
 * `firstIndex`..`lastIndex`, in order; anything else is CORRUPTION naming the chunk. The
 * entries' data are views of the payload (no copy).
 */
export function decodeEntries(chunk: LogChunk, where = 'log-delta stream'): Entry[] {
  const { payload, firstIndex, lastIndex } = chunk;
  const fail = (why: string): StrataError => chunkCorruption(chunk, where, why);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const entries: Entry[] = [];
  let at = 0;
  let expectedIndex = firstIndex;
  // Each pass consumes ENTRY_HEADER_BYTES at least, so the loop ends.
  while (at < payload.byteLength) {
    if (payload.byteLength - at < ENTRY_HEADER_BYTES) throw fail(`ends inside an entry header at byte ${at}`);
    const index = readU64(view, at, fail);
    const term = readU64(view, at + 8, fail);
    const type = view.getUint8(at + 16);
    const length = view.getUint32(at + 17);
    if (index !== expectedIndex) throw fail(`holds entry ${index} where ${expectedIndex} was due`);
    if (type !== EntryType.Normal && type !== EntryType.ConfChange) throw fail(`holds entry ${index} of unknown type ${type}`);
    if (length > payload.byteLength - at - ENTRY_HEADER_BYTES) throw fail(`entry ${index} says ${length} data bytes, past the payload's end`);
    const start = at + ENTRY_HEADER_BYTES;
    entries.push({ index, term, type, data: payload.subarray(start, start + length) });
    at = start + length;
    expectedIndex += 1;
  }
  if (entries.length === 0) throw fail('holds no entry');
  if (expectedIndex - 1 !== lastIndex) throw fail(`ends at entry ${expectedIndex - 1}, not at its last index ${lastIndex}`);
  return entries;
}

/** SnapshotMeta describes the snapshot a stream sends (SnapshotBegin's payload). */
export interface SnapshotMeta {
  /** The member's name for it (src/snapshot's snapshotId: term and index in hex). */
  readonly id: string;
  /** The applied index it is the state of, and that entry's term. */
  readonly index: Index;
  readonly term: number;
  /** The store's revision at `index`. */
  readonly revision: number;
  /** The file's length. */
  readonly byteLength: number;
  /** SHA-256 of the file's content as its footer records it (src/snapshot's SnapshotInfo.sha256), hex. */
  readonly sha256: string;
}

/** encodeSnapshotMeta lays out SnapshotBegin's payload: u64 index | u64 term | u64 revision | u64 byteLength | 32-byte SHA-256 | u16 id length | id (UTF-8). */
export function encodeSnapshotMeta(meta: SnapshotMeta): Uint8Array {
  const id = new TextEncoder().encode(meta.id);
  assert(id.byteLength > 0 && id.byteLength <= SNAPSHOT_ID_BYTES_MAX, 'a snapshot id is 1..256 bytes');
  assert(/^[0-9a-f]{64}$/.test(meta.sha256), 'a snapshot SHA-256 is 64 hex digits');
  const payload = new Uint8Array(32 + SHA256_BYTES + 2 + id.byteLength);
  const view = new DataView(payload.buffer);
  writeU64(view, 0, meta.index);
  writeU64(view, 8, meta.term);
  writeU64(view, 16, meta.revision);
  writeU64(view, 24, meta.byteLength);
  payload.set(Buffer.from(meta.sha256, 'hex'), 32);
  view.setUint16(32 + SHA256_BYTES, id.byteLength);
  payload.set(id, 32 + SHA256_BYTES + 2);
  return payload;
}

/** decodeSnapshotMeta reads SnapshotBegin's payload; CORRUPTION naming the chunk when malformed. */
export function decodeSnapshotMeta(chunk: LogChunk, where = 'log-delta stream'): SnapshotMeta {
  const { payload } = chunk;
  const fail = (why: string): StrataError => chunkCorruption(chunk, where, why);
  if (payload.byteLength < 32 + SHA256_BYTES + 2) throw fail(`holds ${payload.byteLength} bytes, too few for snapshot metadata`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const idBytes = view.getUint16(32 + SHA256_BYTES);
  if (idBytes === 0 || idBytes > SNAPSHOT_ID_BYTES_MAX || payload.byteLength !== 32 + SHA256_BYTES + 2 + idBytes) throw fail('holds malformed snapshot metadata');
  const meta: SnapshotMeta = {
    index: readU64(view, 0, fail),
    term: readU64(view, 8, fail),
    revision: readU64(view, 16, fail),
    byteLength: readU64(view, 24, fail),
    sha256: Buffer.from(payload.subarray(32, 32 + SHA256_BYTES)).toString('hex'),
    id: new TextDecoder('utf-8', { fatal: false }).decode(payload.subarray(32 + SHA256_BYTES + 2)),
  };
  if (meta.index !== chunk.firstIndex || meta.index !== chunk.lastIndex) throw fail(`describes snapshot index ${meta.index}, not the chunk's ${chunk.firstIndex}`);
  if (meta.byteLength === 0) throw fail('describes an empty snapshot');
  return meta;
}

function writeU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / 2 ** 32));
  view.setUint32(at + 4, value >>> 0);
}

function readU64(view: DataView, at: number, fail: (why: string) => StrataError): number {
  const value = view.getUint32(at) * 2 ** 32 + view.getUint32(at + 4);
  if (!Number.isSafeInteger(value)) throw fail(`holds a 64-bit number past 2^53 at byte ${at}`);
  return value;
}

function hex32(value: number): string {
  return `0x${(value >>> 0).toString(16).padStart(8, '0')}`;
}

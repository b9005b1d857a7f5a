// The on-disk record format of the Raft log, and the scan that recovers a segment.
//
// A record is an 8-byte header and a body:
//   u32 LE  body length
//   u32 LE  masked CRC32c of the body (LevelDB's mask, see src/native/crc32c.ts)
//   body:   u8 record type, then the type's fields (integers are u64 LE, safe integers)
// The CRC is verified on every read, at start-up and when an entry is read back later.

import { assert, assertNever } from '../util/assert.ts';
import { readU64, writeU64 } from './binary.ts';
import { crc32c, maskCrc32c, unmaskCrc32c } from '../native/index.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { ConfState, Entry, EntryType, HardState, Index, Snapshot, Term } from '../raft/types.ts';

/** RECORD_HEADER_BYTES is the length of a record's header (length and CRC). */
export const RECORD_HEADER_BYTES = 8;
/** RECORD_BODY_BYTES_MAX bounds one record's body; a longer length field means corruption. */
export const RECORD_BODY_BYTES_MAX = 64 * 1024 * 1024;
/** ENTRY_RECORD_FIXED_BYTES is an entry record's size without its data (header, type, index, term, entry type). */
export const ENTRY_RECORD_FIXED_BYTES = RECORD_HEADER_BYTES + 1 + 8 + 8 + 1;
// Sectors are the unit in which a torn write reaches the disk; see isTornRecord().
const SECTOR_BYTES = 512;
// A ConfState lists node ids; this bounds each list so a corrupt count cannot allocate wildly.
const CONF_STATE_NODES_MAX = 1024;

/** RecordType numbers the kinds of record; the numbers are on disk and never change. */
export const RecordType = {
  /** One log entry. A later entry with the same index replaces it and everything after it. */
  Entry: 1,
  /** The hard state (term, vote, commit). */
  HardState: 2,
  /** A snapshot's metadata and data: a mark (log kept) or an install (log replaced). */
  Snapshot: 3,
  /** The log before `index` was compacted; `index` becomes the log's dummy entry. */
  Compact: 4,
  /** The first record of every segment: the log state the segment starts from. */
  Checkpoint: 5,
} as const;

/** LogRecord is a decoded record. */
export type LogRecord =
  | { readonly kind: 'entry'; readonly entry: Entry }
  | { readonly kind: 'hardState'; readonly hardState: HardState }
  | { readonly kind: 'snapshot'; readonly install: boolean; readonly snapshot: Snapshot }
  | { readonly kind: 'compact'; readonly index: Index; readonly term: Term }
  | { readonly kind: 'checkpoint'; readonly checkpoint: Checkpoint };

/**
 * Checkpoint is the state a segment starts from, so that older segments can be deleted
 * without losing the hard state or the latest snapshot: the log's last entry when the
 * segment was started, the hard state and the latest snapshot.
 */
export interface Checkpoint {
  readonly sequence: number;
  readonly lastIndex: Index;
  readonly lastTerm: Term;
  readonly hardState: HardState;
  readonly snapshot: Snapshot;
}

/** recordBytes returns the encoded size of a record, header included. */
export function recordBytes(record: LogRecord): number {
  return RECORD_HEADER_BYTES + bodyBytes(record);
}

/** entryRecordBytes is recordBytes() for an entry, without building the record. */
export function entryRecordBytes(entry: Entry): number {
  return ENTRY_RECORD_FIXED_BYTES + entry.data.byteLength;
}

function bodyBytes(record: LogRecord): number {
  switch (record.kind) {
    case 'entry':
      return entryRecordBytes(record.entry) - RECORD_HEADER_BYTES;
    case 'hardState':
      return 1 + 24;
    case 'snapshot':
      return 1 + 1 + snapshotBytes(record.snapshot);
    case 'compact':
      return 1 + 16;
    case 'checkpoint':
      return 1 + 8 + 16 + 24 + snapshotBytes(record.checkpoint.snapshot);
    default:
      return assertNever(record, 'record');
  }
}

function snapshotBytes(snapshot: Snapshot): number {
  return 16 + confStateBytes(snapshot.metadata.confState) + 4 + snapshot.data.byteLength;
}

function confStateBytes(confState: ConfState): number {
  const lists = confState.voters.length + confState.learners.length + confState.votersOutgoing.length + confState.learnersNext.length;
  return 1 + 4 * 4 + 8 * lists;
}

/** encodeRecords encodes records back to back into one new buffer. */
export function encodeRecords(records: readonly LogRecord[]): Uint8Array {
  return encodeBatch(records, [], []);
}

/**
 * encodeBatch encodes `before`, then `entries` as entry records, then `after`, back to back
 * into one new buffer. Entries take a direct path without a LogRecord wrapper: this is the
 * append hot path.
 */
export function encodeBatch(before: readonly LogRecord[], entries: readonly Entry[], after: readonly LogRecord[]): Uint8Array {
  let size = 0;
  for (const record of before) size += recordBytes(record);
  for (const entry of entries) size += ENTRY_RECORD_FIXED_BYTES + entry.data.byteLength;
  for (const record of after) size += recordBytes(record);
  const target = new Uint8Array(size);
  // One writer (and one DataView) for the whole buffer.
  const writer = new ByteWriter(target, 0);
  for (const record of before) encodeRecord(record, writer);
  for (const entry of entries) encodeEntryRecord(entry, writer);
  for (const record of after) encodeRecord(record, writer);
  assert(writer.offset === size, 'encodeBatch: size mismatch');
  return target;
}

function encodeEntryRecord(entry: Entry, writer: ByteWriter): void {
  const start = writer.offset;
  const body = ENTRY_RECORD_FIXED_BYTES - RECORD_HEADER_BYTES + entry.data.byteLength;
  assert(body <= RECORD_BODY_BYTES_MAX, `entry ${entry.index} of ${entry.data.byteLength} bytes is over the record maximum`);
  writer.offset = start + RECORD_HEADER_BYTES;
  writer.u8(RecordType.Entry);
  writer.u64(entry.index);
  writer.u64(entry.term);
  writer.u8(entry.type);
  writer.bytes(entry.data);
  writer.offset = start;
  writer.u32(body);
  writer.u32(maskCrc32c(crc32c(writer.target.subarray(start + RECORD_HEADER_BYTES, start + RECORD_HEADER_BYTES + body))));
  writer.offset = start + RECORD_HEADER_BYTES + body;
}

// encodeRecord writes one record at the writer's offset: the body first, then the header
// with the body's length and masked CRC32c.
function encodeRecord(record: LogRecord, writer: ByteWriter): void {
  const start = writer.offset;
  const body = bodyBytes(record);
  assert(body <= RECORD_BODY_BYTES_MAX, `record body of ${body} bytes is over ${RECORD_BODY_BYTES_MAX}`);
  writer.offset = start + RECORD_HEADER_BYTES;
  switch (record.kind) {
    case 'entry':
      writer.u8(RecordType.Entry);
      writer.u64(record.entry.index);
      writer.u64(record.entry.term);
      writer.u8(record.entry.type);
      writer.bytes(record.entry.data);
      break;
    case 'hardState':
      writer.u8(RecordType.HardState);
      writeHardState(writer, record.hardState);
      break;
    case 'snapshot':
      writer.u8(RecordType.Snapshot);
      writer.u8(record.install ? 1 : 0);
      writeSnapshot(writer, record.snapshot);
      break;
    case 'compact':
      writer.u8(RecordType.Compact);
      writer.u64(record.index);
      writer.u64(record.term);
      break;
    case 'checkpoint':
      writer.u8(RecordType.Checkpoint);
      writer.u64(record.checkpoint.sequence);
      writer.u64(record.checkpoint.lastIndex);
      writer.u64(record.checkpoint.lastTerm);
      writeHardState(writer, record.checkpoint.hardState);
      writeSnapshot(writer, record.checkpoint.snapshot);
      break;
    default:
      assertNever(record, 'record');
  }
  const end = writer.offset;
  assert(end === start + RECORD_HEADER_BYTES + body, 'encodeRecord: size mismatch');
  writer.offset = start;
  writer.u32(body);
  writer.u32(maskCrc32c(crc32c(writer.target.subarray(start + RECORD_HEADER_BYTES, end))));
  writer.offset = end;
}

function writeHardState(writer: ByteWriter, hardState: HardState): void {
  writer.u64(hardState.term);
  writer.u64(hardState.vote);
  writer.u64(hardState.commit);
}

function writeSnapshot(writer: ByteWriter, snapshot: Snapshot): void {
  writer.u64(snapshot.metadata.index);
  writer.u64(snapshot.metadata.term);
  const confState = snapshot.metadata.confState;
  writer.u8(confState.autoLeave ? 1 : 0);
  for (const list of [confState.voters, confState.learners, confState.votersOutgoing, confState.learnersNext]) {
    writer.u32(list.length);
    for (const id of list) writer.u64(id);
  }
  writer.u32(snapshot.data.byteLength);
  writer.bytes(snapshot.data);
}

/**
 * decodeRecordAt decodes the record at `offset` of `source` (a whole record must be there),
 * verifying its CRC. It throws CORRUPTION, naming `where` and `fileOffset` (where the record
 * lies in its file, when `source` is a piece of the file), when the bytes are not a record.
 */
export function decodeRecordAt(
  source: Uint8Array,
  offset: number,
  where: string,
  fileOffset = offset,
): { record: LogRecord; end: number } {
  const view = new DataView(source.buffer, source.byteOffset, source.byteLength);
  if (offset + RECORD_HEADER_BYTES > source.byteLength) throw corruption(where, fileOffset, 'record header is cut short');
  const length = view.getUint32(offset, true);
  if (length === 0 || length > RECORD_BODY_BYTES_MAX) throw corruption(where, fileOffset, `record length ${length} is impossible`);
  const end = offset + RECORD_HEADER_BYTES + length;
  if (end > source.byteLength) throw corruption(where, fileOffset, 'record is cut short');
  const body = source.subarray(offset + RECORD_HEADER_BYTES, end);
  if (unmaskCrc32c(view.getUint32(offset + 4, true)) !== crc32c(body)) throw corruption(where, fileOffset, 'record CRC32c mismatch');
  return { record: decodeBody(body, where, fileOffset), end };
}

function decodeBody(body: Uint8Array, where: string, offset: number): LogRecord {
  const reader = new ByteReader(body, where, offset);
  const type = reader.u8();
  let record: LogRecord;
  switch (type) {
    case RecordType.Entry: {
      const index = reader.u64();
      const term = reader.u64();
      const entryType = reader.u8();
      if (entryType !== 0 && entryType !== 1) throw corruption(where, offset, `entry type ${entryType} is unknown`);
      record = { kind: 'entry', entry: { index, term, type: entryType as EntryType, data: reader.rest() } };
      break;
    }
    case RecordType.HardState:
      record = { kind: 'hardState', hardState: readHardState(reader) };
      break;
    case RecordType.Snapshot: {
      const install = reader.u8() === 1;
      record = { kind: 'snapshot', install, snapshot: readSnapshot(reader) };
      break;
    }
    case RecordType.Compact:
      record = { kind: 'compact', index: reader.u64(), term: reader.u64() };
      break;
    case RecordType.Checkpoint: {
      const sequence = reader.u64();
      const lastIndex = reader.u64();
      const lastTerm = reader.u64();
      const hardState = readHardState(reader);
      record = { kind: 'checkpoint', checkpoint: { sequence, lastIndex, lastTerm, hardState, snapshot: readSnapshot(reader) } };
      break;
    }
    default:
      throw corruption(where, offset, `record type ${type} is unknown`);
  }
  reader.expectEnd();
  return record;
}

function readHardState(reader: ByteReader): HardState {
  return { term: reader.u64(), vote: reader.u64(), commit: reader.u64() };
}

function readSnapshot(reader: ByteReader): Snapshot {
  const index = reader.u64();
  const term = reader.u64();
  const autoLeave = reader.u8() === 1;
  const lists: number[][] = [];
  for (let list = 0; list < 4; list += 1) {
    const count = reader.u32();
    reader.check(count <= CONF_STATE_NODES_MAX, `configuration list of ${count} nodes`);
    const ids: number[] = [];
    for (let i = 0; i < count; i += 1) ids.push(reader.u64());
    lists.push(ids);
  }
  const dataBytes = reader.u32();
  const data = reader.take(dataBytes).slice();
  const [voters = [], learners = [], votersOutgoing = [], learnersNext = []] = lists;
  return { metadata: { index, term, confState: { voters, learners, votersOutgoing, learnersNext, autoLeave } }, data };
}

/** SegmentScan is what scanSegment found in one segment file. */
export interface SegmentScan {
  /** The records, each with its offset and total length (header included). */
  readonly records: readonly { readonly record: LogRecord; readonly offset: number; readonly bytes: number }[];
  /** Where the valid records end; a torn tail starts here. */
  readonly validBytes: number;
  /** Set when the segment ended in a torn record (only possible for the last segment). */
  readonly tornBytes: number;
}

/**
 * scanSegment decodes a whole segment. In the last segment a torn tail (the record that was
 * being written at a crash: cut short, or with whole sectors never written) is reported in
 * `tornBytes`; any other bad record is CORRUPTION naming the file and offset, because an
 * acknowledged record must never be dropped silently.
 */
export function scanSegment(content: Uint8Array, where: string, isLastSegment: boolean): SegmentScan {
  const records: { record: LogRecord; offset: number; bytes: number }[] = [];
  const view = new DataView(content.buffer, content.byteOffset, content.byteLength);
  let offset = 0;
  while (offset < content.byteLength) {
    try {
      const { record, end } = decodeRecordAt(content, offset, where);
      records.push({ record, offset, bytes: end - offset });
      offset = end;
    } catch (error) {
      if (!isLastSegment || !isTornRecord(content, view, offset)) throw error;
      return { records, validBytes: offset, tornBytes: content.byteLength - offset };
    }
  }
  return { records, validBytes: offset, tornBytes: 0 };
}

// isTornRecord tells a record torn by a crash from a damaged one, the way etcd's WAL does: a
// torn write leaves the file short, or leaves whole sectors of the record unwritten (zeros),
// and nothing valid after it. A record whose bytes are all there but wrong is a bit flip.
function isTornRecord(content: Uint8Array, view: DataView, offset: number): boolean {
  const remaining = content.byteLength - offset;
  if (remaining < RECORD_HEADER_BYTES) return true;
  const length = view.getUint32(offset, true);
  if (length === 0) return isAllZero(content, offset, content.byteLength);
  if (length > RECORD_BODY_BYTES_MAX) return false;
  const end = offset + RECORD_HEADER_BYTES + length;
  if (end > content.byteLength) return true;
  if (!isAllZero(content, end, content.byteLength)) return false;
  // Look for a sector-aligned chunk of the record that is all zeros.
  let chunkStart = offset;
  while (chunkStart < end) {
    const chunkEnd = Math.min(end, (Math.floor(chunkStart / SECTOR_BYTES) + 1) * SECTOR_BYTES);
    if (isAllZero(content, chunkStart, chunkEnd)) return true;
    chunkStart = chunkEnd;
  }
  return false;
}

function isAllZero(content: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i += 1) if (content[i] !== 0) return false;
  return true;
}

/** corruption builds the CORRUPTION error for a bad record at `offset` of `where`. */
export function corruption(where: string, offset: number, what: string): StrataError {
  return new StrataError(ErrorCode.CORRUPTION, `${where} at offset ${offset}: ${what}`, { details: { file: where, offset } });
}

class ByteWriter {
  private readonly view: DataView;
  readonly target: Uint8Array;
  offset: number;

  constructor(target: Uint8Array, offset: number) {
    this.target = target;
    this.view = new DataView(target.buffer, target.byteOffset, target.byteLength);
    this.offset = offset;
  }

  u8(value: number): void {
    this.view.setUint8(this.offset, value);
    this.offset += 1;
  }

  u32(value: number): void {
    this.view.setUint32(this.offset, value, true);
    this.offset += 4;
  }

  u64(value: number): void {
    writeU64(this.view, this.offset, value);
    this.offset += 8;
  }

  bytes(data: Uint8Array): void {
    this.target.set(data, this.offset);
    this.offset += data.byteLength;
  }
}

class ByteReader {
  private readonly view: DataView;
  private readonly source: Uint8Array;
  private readonly where: string;
  private readonly recordOffset: number;
  private offset = 0;

  constructor(source: Uint8Array, where: string, recordOffset: number) {
    this.source = source;
    this.view = new DataView(source.buffer, source.byteOffset, source.byteLength);
    this.where = where;
    this.recordOffset = recordOffset;
  }

  check(condition: boolean, what: string): void {
    if (!condition) throw corruption(this.where, this.recordOffset, `malformed record: ${what}`);
  }

  u8(): number {
    this.check(this.offset + 1 <= this.source.byteLength, 'truncated field');
    const value = this.view.getUint8(this.offset);
    this.offset += 1;
    return value;
  }

  u32(): number {
    this.check(this.offset + 4 <= this.source.byteLength, 'truncated field');
    const value = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return value;
  }

  u64(): number {
    this.check(this.offset + 8 <= this.source.byteLength, 'truncated field');
    const value = readU64(this.view, this.offset);
    this.check(value !== undefined, 'integer beyond 2^53');
    this.offset += 8;
    return value as number;
  }

  take(count: number): Uint8Array {
    this.check(this.offset + count <= this.source.byteLength, 'truncated bytes');
    const slice = this.source.subarray(this.offset, this.offset + count);
    this.offset += count;
    return slice;
  }

  rest(): Uint8Array {
    return this.take(this.source.byteLength - this.offset);
  }

  expectEnd(): void {
    this.check(this.offset === this.source.byteLength, 'trailing bytes');
  }
}

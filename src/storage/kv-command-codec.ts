// How a KvCommand is stored in a Raft entry's data.
//
// A hand-written binary format rather than msgpackr: the bytes live in the log and in
// snapshots for as long as the cluster does, so the format is ours, versioned by its first
// byte, with one encoding per request (deterministic: the same request gives the same bytes
// on every node and in every version), and its length is the request size that etcd's
// --max-request-bytes limit is checked against. It is also about a third smaller than a
// self-describing encoding because field names are not repeated in every entry.
//
//   u8 format (1) | u64 id | request
//   request = u8 kind | fields; bytes are u32 length + bytes, integers u64, flags one byte.
//
// A Txn compare is u8 target | u8 result | bytes key | bytes rangeEnd | operand: bytes for a
// value, an f64 holding a safe integer for the counters. A lease compare's operand is etcd's
// int64: target 4 with an f64 when it is a safe integer (the only form before lease ids were
// bigints, so those entries read back the same), target 5 ('lease', wide) with an i64 when it
// is not. Decoding refuses an i64 that fits an f64, so each compare has one encoding.
//
// The mirror kinds (the cross-cluster copier's, kv-types.ts), decoded strictly (unknown flag
// bits are CORRUPTION, so one request has exactly one encoding):
//   5 mirrorBegin = u8 flags (1 requireEmpty, 2 requireRevision follows) | bytes state
//                   | [u64 requireRevision]
//   6 mirrorApply = bytes expectState | bytes state | u64 revision
//                   | u32 n | n × (bytes key | bytes value | u64 createRevision
//                                  | u64 modRevision | u64 version | u64 lease)
//                   | u32 m | m × bytes key (deletes)
//                   (the lease id, a full u64, is read as a bigint; validation keeps it below 2^63)
//   7 mirrorEnd   = bytes expectState
//   8 mirrorReplay = bytes expectState | bytes state | u32 n | n × bytes command
//                   (each command another entry's data, kept as bytes here: validation
//                   decodes it and refuses one that does not decode or is a mirror request)
// They are top-level requests only: inside a Txn they are CORRUPTION.

import { assert, assertNever } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { readU64, writeU64 } from './binary.ts';
import type { Compare, CompareResult, CompareTarget, KvCommand, KvRequest, MirrorPut, MirrorRequest, TxnOperation } from './kv-types.ts';

const FORMAT = 1;
/**
 * NODE_COMMAND_FORMAT is the first byte of entries that carry a cluster command for the driver
 * (src/node: a member publishing its name and client URLs). The KV state machine only moves
 * its applied index over them; any other first byte is refused as corruption.
 */
export const NODE_COMMAND_FORMAT = 2;
/**
 * CHECKPOINT_FORMAT is the first byte of an integrity checkpoint: the state machine reports
 * its state digest exactly at that entry's index (apply()'s `checkpoints`); the rest of the
 * data is the driver's (src/node).
 */
export const CHECKPOINT_FORMAT = 3;

/** isKvCommand tells whether an entry's data is a KV command (rather than a node command or a checkpoint). */
export function isKvCommand(data: Uint8Array): boolean {
  return data[0] !== NODE_COMMAND_FORMAT && data[0] !== CHECKPOINT_FORMAT;
}
const KIND = { put: 1, range: 2, deleteRange: 3, txn: 4, mirrorBegin: 5, mirrorApply: 6, mirrorEnd: 7, mirrorReplay: 8 } as const;
const MIRROR_BEGIN_REQUIRE_EMPTY = 1;
const MIRROR_BEGIN_REQUIRE_REVISION = 2;
// The fewest bytes one item of a mirrorApply list takes (a put: two empty byte strings and four
// u64; a delete: an empty byte string): a count that the remaining bytes cannot hold is
// corrupt, so a damaged count never allocates more than the entry's own length allows.
const MIRROR_PUT_BYTES_MIN = 2 * 4 + 4 * 8;
const MIRROR_DELETE_BYTES_MIN = 4;
// A replayed command: an empty byte string (refused by validation, but it fits).
const MIRROR_REPLAY_COMMAND_BYTES_MIN = 4;
const TARGETS: readonly CompareTarget[] = ['value', 'version', 'createRevision', 'modRevision', 'lease'];
// The target byte of a lease compare whose operand is beyond the safe integers (an i64 follows).
const TARGET_LEASE_WIDE = TARGETS.length;
const RESULTS: readonly CompareResult[] = ['equal', 'notEqual', 'less', 'greater'];
// Decoding bounds a Txn's lists so corrupt counts cannot allocate wildly (validation applies
// the configured, smaller limit before anything is proposed).
const TXN_LIST_DECODE_MAX = 65_536;

/** encodeKvCommand encodes a command for an entry's data (validate it first: see validateKvRequest). */
export function encodeKvCommand(command: KvCommand): Uint8Array {
  // One scratch writer for every command (encoding is synchronous and never nests): a fresh
  // zero-filled ArrayBuffer and DataView per put showed in profiles of the write path.
  const writer = SCRATCH_WRITER;
  writer.reset();
  writer.u8(FORMAT);
  writer.u64(command.id);
  writeRequest(writer, command.request);
  return writer.finish();
}

/** decodeKvCommand decodes an entry's data; malformed bytes are CORRUPTION (they passed a CRC). */
export function decodeKvCommand(data: Uint8Array): KvCommand {
  const reader = new Reader(data);
  const format = reader.u8();
  if (format !== FORMAT) throw malformed(`unknown command format ${format}`);
  const id = reader.u64();
  const request = readRequest(reader, 'command');
  if (!reader.atEnd()) throw malformed('trailing bytes after the command');
  return { id, request };
}

/**
 * kvCommandType reads only the request type of an encoded KV command (its kind byte, after the
 * format byte and the u64 id), without decoding the rest: a copier classifies every entry of a
 * source's log this way. CORRUPTION for a format or kind it does not know.
 */
export function kvCommandType(data: Uint8Array): KvRequest['type'] {
  if (data[0] !== FORMAT || data.byteLength < 10) throw malformed(`not a KV command (format ${String(data[0])}, ${data.byteLength} bytes)`);
  const kind = data[9];
  const type = (Object.keys(KIND) as KvRequest['type'][]).find((name) => KIND[name] === kind);
  if (type === undefined) throw malformed(`unknown request kind ${String(kind)}`);
  return type;
}

function writeRequest(writer: GrowingWriter, request: KvRequest): void {
  switch (request.type) {
    case 'put':
      writer.u8(KIND.put);
      writer.u8(request.prevKv === true ? 1 : 0);
      writer.bytes(request.key);
      writer.bytes(request.value);
      break;
    case 'range':
      writer.u8(KIND.range);
      writer.u8((request.keysOnly === true ? 1 : 0) | (request.countOnly === true ? 2 : 0) | (request.serializable === true ? 4 : 0));
      writer.bytes(request.key);
      writer.bytes(request.rangeEnd ?? EMPTY);
      // etcd reads a limit or revision <= 0 as "none" and "current": both are stored as 0.
      writer.u64(Math.max(0, request.limit ?? 0));
      writer.u64(Math.max(0, request.revision ?? 0));
      break;
    case 'deleteRange':
      writer.u8(KIND.deleteRange);
      writer.u8(request.prevKv === true ? 1 : 0);
      writer.bytes(request.key);
      writer.bytes(request.rangeEnd ?? EMPTY);
      break;
    case 'txn':
      writer.u8(KIND.txn);
      writer.u32(request.compare.length);
      for (const compare of request.compare) writeCompare(writer, compare);
      for (const branch of [request.success, request.failure]) {
        writer.u32(branch.length);
        for (const operation of branch) {
          assert(operation.type !== ('txn' as string), 'nested Txn requests are not supported');
          writeRequest(writer, operation);
        }
      }
      break;
    case 'mirrorBegin':
    case 'mirrorApply':
    case 'mirrorEnd':
    case 'mirrorReplay':
      writeMirrorRequest(writer, request);
      break;
    default:
      assertNever(request, 'KV request');
  }
}

function writeMirrorRequest(writer: GrowingWriter, request: MirrorRequest): void {
  switch (request.type) {
    case 'mirrorBegin':
      writer.u8(KIND.mirrorBegin);
      writer.u8((request.requireEmpty ? MIRROR_BEGIN_REQUIRE_EMPTY : 0) | (request.requireRevision !== undefined ? MIRROR_BEGIN_REQUIRE_REVISION : 0));
      writer.bytes(request.state);
      if (request.requireRevision !== undefined) writer.u64(request.requireRevision);
      break;
    case 'mirrorApply':
      writer.u8(KIND.mirrorApply);
      writer.bytes(request.expectState);
      writer.bytes(request.state);
      writer.u64(request.revision);
      writer.u32(request.puts.length);
      for (const put of request.puts) {
        writer.bytes(put.key);
        writer.bytes(put.value);
        writer.u64(put.createRevision);
        writer.u64(put.modRevision);
        writer.u64(put.version);
        writer.u64Big(put.lease);
      }
      writer.u32(request.deletes.length);
      for (const key of request.deletes) writer.bytes(key);
      break;
    case 'mirrorEnd':
      writer.u8(KIND.mirrorEnd);
      writer.bytes(request.expectState);
      break;
    case 'mirrorReplay':
      writer.u8(KIND.mirrorReplay);
      writer.bytes(request.expectState);
      writer.bytes(request.state);
      writer.u32(request.commands.length);
      for (const command of request.commands) writer.bytes(command);
      break;
    default:
      assertNever(request, 'mirror request');
  }
}

function writeCompare(writer: GrowingWriter, compare: Compare): void {
  const wide = compare.target === 'lease' && !isSafeLease(compare.lease);
  writer.u8(wide ? TARGET_LEASE_WIDE : TARGETS.indexOf(compare.target));
  writer.u8(RESULTS.indexOf(compare.result));
  writer.bytes(compare.key);
  writer.bytes(compare.rangeEnd ?? EMPTY);
  if (compare.target === 'value') writer.bytes(compare.value);
  else if (compare.target === 'lease') {
    if (wide) writer.i64Big(compare.lease);
    else writer.f64(Number(compare.lease));
  } else writer.f64(compare.number);
}

const SAFE_INTEGER_MAX = BigInt(Number.MAX_SAFE_INTEGER);

// isSafeLease tells whether a lease compare's operand is a safe integer (stored as an f64).
function isSafeLease(lease: bigint): boolean {
  return lease >= -SAFE_INTEGER_MAX && lease <= SAFE_INTEGER_MAX;
}

// readRequest reads a command's request, or one operation inside a Txn (where neither a Txn
// nor a mirror request may appear).
function readRequest(reader: Reader, level: 'command' | 'txnOperation'): KvRequest {
  const kind = reader.u8();
  switch (kind) {
    case KIND.put: {
      const prevKv = reader.u8() === 1;
      const key = reader.bytes();
      const value = reader.bytes();
      return prevKv ? { type: 'put', key, value, prevKv } : { type: 'put', key, value };
    }
    case KIND.range: {
      const flags = reader.u8();
      const key = reader.bytes();
      const rangeEnd = reader.bytes();
      const limit = reader.u64();
      const revision = reader.u64();
      return {
        type: 'range',
        key,
        ...(rangeEnd.byteLength > 0 ? { rangeEnd } : {}),
        ...(limit > 0 ? { limit } : {}),
        ...(revision > 0 ? { revision } : {}),
        ...((flags & 1) !== 0 ? { keysOnly: true } : {}),
        ...((flags & 2) !== 0 ? { countOnly: true } : {}),
        ...((flags & 4) !== 0 ? { serializable: true } : {}),
      };
    }
    case KIND.deleteRange: {
      const prevKv = reader.u8() === 1;
      const key = reader.bytes();
      const rangeEnd = reader.bytes();
      return { type: 'deleteRange', key, ...(rangeEnd.byteLength > 0 ? { rangeEnd } : {}), ...(prevKv ? { prevKv } : {}) };
    }
    case KIND.txn: {
      if (level !== 'command') throw malformed('nested Txn');
      const compare: Compare[] = [];
      const compareCount = reader.count();
      for (let i = 0; i < compareCount; i += 1) compare.push(readCompare(reader));
      const branches: TxnOperation[][] = [];
      for (let branch = 0; branch < 2; branch += 1) {
        const operations: TxnOperation[] = [];
        const count = reader.count();
        for (let i = 0; i < count; i += 1) operations.push(readRequest(reader, 'txnOperation') as TxnOperation);
        branches.push(operations);
      }
      return { type: 'txn', compare, success: branches[0] ?? [], failure: branches[1] ?? [] };
    }
    case KIND.mirrorBegin:
    case KIND.mirrorApply:
    case KIND.mirrorEnd:
    case KIND.mirrorReplay:
      if (level !== 'command') throw malformed('a mirror request inside a Txn');
      return readMirrorRequest(reader, kind);
    default:
      throw malformed(`unknown request kind ${kind}`);
  }
}

function readMirrorRequest(reader: Reader, kind: number): MirrorRequest {
  switch (kind) {
    case KIND.mirrorBegin: {
      const flags = reader.u8();
      if ((flags & ~(MIRROR_BEGIN_REQUIRE_EMPTY | MIRROR_BEGIN_REQUIRE_REVISION)) !== 0) throw malformed(`unknown mirrorBegin flags ${flags}`);
      const state = reader.bytes();
      const requireEmpty = (flags & MIRROR_BEGIN_REQUIRE_EMPTY) !== 0;
      if ((flags & MIRROR_BEGIN_REQUIRE_REVISION) === 0) return { type: 'mirrorBegin', state, requireEmpty };
      return { type: 'mirrorBegin', state, requireEmpty, requireRevision: reader.u64() };
    }
    case KIND.mirrorApply: {
      const expectState = reader.bytes();
      const state = reader.bytes();
      const revision = reader.u64();
      const puts: MirrorPut[] = [];
      const putCount = reader.countOf(MIRROR_PUT_BYTES_MIN);
      for (let i = 0; i < putCount; i += 1) {
        const key = reader.bytes();
        const value = reader.bytes();
        puts.push({ key, value, createRevision: reader.u64(), modRevision: reader.u64(), version: reader.u64(), lease: reader.u64Big() });
      }
      const deletes: Uint8Array[] = [];
      const deleteCount = reader.countOf(MIRROR_DELETE_BYTES_MIN);
      for (let i = 0; i < deleteCount; i += 1) deletes.push(reader.bytes());
      return { type: 'mirrorApply', expectState, state, revision, puts, deletes };
    }
    case KIND.mirrorEnd:
      return { type: 'mirrorEnd', expectState: reader.bytes() };
    case KIND.mirrorReplay: {
      const expectState = reader.bytes();
      const state = reader.bytes();
      const commands: Uint8Array[] = [];
      const commandCount = reader.countOf(MIRROR_REPLAY_COMMAND_BYTES_MIN);
      for (let i = 0; i < commandCount; i += 1) commands.push(reader.bytes());
      return { type: 'mirrorReplay', expectState, state, commands };
    }
    default:
      throw malformed(`unknown mirror request kind ${kind}`);
  }
}

function readCompare(reader: Reader): Compare {
  const targetByte = reader.u8();
  const wide = targetByte === TARGET_LEASE_WIDE;
  const target = wide ? 'lease' : TARGETS[targetByte];
  const result = RESULTS[reader.u8()];
  if (target === undefined || result === undefined) throw malformed('unknown compare target or result');
  const key = reader.bytes();
  const rangeEnd = reader.bytes();
  const range = rangeEnd.byteLength > 0 ? { rangeEnd } : {};
  if (target === 'value') return { target, result, key, ...range, value: reader.bytes() };
  if (target === 'lease') {
    if (!wide) return { target, result, key, ...range, lease: BigInt(reader.f64()) };
    const lease = reader.i64Big();
    if (isSafeLease(lease)) throw malformed(`a wide lease compare holding ${lease}, a safe integer`);
    return { target, result, key, ...range, lease };
  }
  return { target, result, key, ...range, number: reader.f64() };
}

function malformed(what: string): StrataError {
  return new StrataError(ErrorCode.CORRUPTION, `malformed KV command in a log entry: ${what}`);
}

const EMPTY = new Uint8Array(0);
const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

const SCRATCH_BYTES_INITIAL = 4_096;
const SCRATCH_BYTES_KEPT_MAX = 1024 * 1024;

// GrowingWriter appends to a buffer that doubles when full.
class GrowingWriter {
  private buffer = new Uint8Array(SCRATCH_BYTES_INITIAL);
  private view = new DataView(this.buffer.buffer);
  private offset = 0;

  u8(value: number): void {
    this.reserve(1);
    this.view.setUint8(this.offset, value);
    this.offset += 1;
  }

  u32(value: number): void {
    this.reserve(4);
    this.view.setUint32(this.offset, value, true);
    this.offset += 4;
  }

  u64(value: number): void {
    this.reserve(8);
    writeU64(this.view, this.offset, value);
    this.offset += 8;
  }

  // u64Big writes a bigint in [0, 2^64) (setBigUint64 alone would wrap anything else).
  u64Big(value: bigint): void {
    assert(value >= 0n && value <= U64_MAX, `u64: ${value} is out of range`);
    this.reserve(8);
    this.view.setBigUint64(this.offset, value, true);
    this.offset += 8;
  }

  // i64Big writes a bigint in [-2^63, 2^63) as two's complement.
  i64Big(value: bigint): void {
    assert(value >= I64_MIN && value <= I64_MAX, `i64: ${value} is out of range`);
    this.reserve(8);
    this.view.setBigInt64(this.offset, value, true);
    this.offset += 8;
  }

  f64(value: number): void {
    assert(Number.isSafeInteger(value), `compare operand ${value} is not a safe integer`);
    this.reserve(8);
    this.view.setFloat64(this.offset, value, true);
    this.offset += 8;
  }

  bytes(data: Uint8Array): void {
    this.u32(data.byteLength);
    this.reserve(data.byteLength);
    this.buffer.set(data, this.offset);
    this.offset += data.byteLength;
  }

  reset(): void {
    // A buffer grown by one huge command is not kept for the rest of the process.
    if (this.buffer.byteLength > SCRATCH_BYTES_KEPT_MAX) {
      this.buffer = new Uint8Array(SCRATCH_BYTES_INITIAL);
      this.view = new DataView(this.buffer.buffer);
    }
    this.offset = 0;
  }

  /** finish copies the command out (from Node's pool for small ones: cheaper than a new ArrayBuffer). */
  finish(): Uint8Array {
    const pooled = Buffer.allocUnsafe(this.offset);
    pooled.set(this.buffer.subarray(0, this.offset));
    // A plain Uint8Array view, as before, so that decoded keys and values are Uint8Arrays too.
    return new Uint8Array(pooled.buffer, pooled.byteOffset, pooled.byteLength);
  }

  private reserve(count: number): void {
    if (this.offset + count <= this.buffer.byteLength) return;
    const grown = new Uint8Array(Math.max(this.buffer.byteLength * 2, this.offset + count));
    grown.set(this.buffer.subarray(0, this.offset));
    this.buffer = grown;
    this.view = new DataView(grown.buffer);
  }
}

const SCRATCH_WRITER = new GrowingWriter();

class Reader {
  private readonly view: DataView;
  private readonly data: Uint8Array;
  private offset = 0;

  constructor(data: Uint8Array) {
    this.data = data;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  private need(count: number): void {
    if (this.offset + count > this.data.byteLength) throw malformed('truncated');
  }

  u8(): number {
    this.need(1);
    const value = this.view.getUint8(this.offset);
    this.offset += 1;
    return value;
  }

  u32(): number {
    this.need(4);
    const value = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return value;
  }

  count(): number {
    const value = this.u32();
    if (value > TXN_LIST_DECODE_MAX) throw malformed(`list of ${value} items`);
    return value;
  }

  // countOf reads a list's length, refusing one whose items (each at least `itemBytesMin`)
  // could not fit in the bytes left.
  countOf(itemBytesMin: number): number {
    assert(itemBytesMin > 0, 'a list item takes at least one byte');
    const value = this.u32();
    if (value * itemBytesMin > this.data.byteLength - this.offset) throw malformed(`list of ${value} items in ${this.data.byteLength - this.offset} bytes`);
    return value;
  }

  u64(): number {
    this.need(8);
    const value = readU64(this.view, this.offset);
    if (value === undefined) throw malformed('integer beyond 2^53');
    this.offset += 8;
    return value;
  }

  u64Big(): bigint {
    this.need(8);
    const value = this.view.getBigUint64(this.offset, true);
    this.offset += 8;
    return value;
  }

  i64Big(): bigint {
    this.need(8);
    const value = this.view.getBigInt64(this.offset, true);
    this.offset += 8;
    return value;
  }

  f64(): number {
    this.need(8);
    const value = this.view.getFloat64(this.offset, true);
    this.offset += 8;
    if (!Number.isSafeInteger(value)) throw malformed('compare operand is not an integer');
    return value;
  }

  bytes(): Uint8Array {
    const length = this.u32();
    this.need(length);
    const value = this.data.slice(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  atEnd(): boolean {
    return this.offset === this.data.byteLength;
  }
}

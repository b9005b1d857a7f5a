// A hand-written protobuf codec for the KV calls on the hot path: it decodes PutRequest,
// RangeRequest and DeleteRangeRequest into the Wire* shapes of etcd-wire.ts and encodes
// PutResponse, RangeResponse and DeleteRangeResponse from them. protobufjs (through
// @grpc/proto-loader) decodes into a message object and then copies it into a plain object
// (toObject), and encodes by copying into a message object (fromObject) and then through a
// writer that queues one operation per field; that cost and its garbage show in the leader's
// CPU per request. Here a request is read in one pass straight into the plain object, and a
// response is sized first and written into one Buffer of exactly that size.
//
// The contract is protobufjs's, with the loader options in proto-loading.ts:
// - Decoding yields the objects protobufjs yields: field names as in the .proto, a field
//   present only if it was on the wire (the last occurrence wins), int64 as a number, bytes
//   as a Buffer, enums as numbers (the low 32 bits, signed, as protobufjs reads int32). The
//   exception is a lease id (PutRequest.lease), an int64 read exactly as a bigint: etcd's ids
//   are above 2^53, where protobufjs (longs: Number) rounds.
// - Encoding yields protobufjs's bytes for the same object: fields in field-number order, a
//   scalar or message written whenever it is not null or undefined, even when it holds the
//   proto3 default (protobufjs writes `more: false`, `count: 0` and a header's zero fields;
//   only a repeated field that is empty is left out). KeyValue.lease is a bigint, written
//   exactly as protobufjs writes the same int64.
//
// Where protobufjs would accept a malformed request, this codec refuses it with a
// StrataError (INVALID_ARGUMENT) that names the problem and its byte offset; grpc-js answers
// a throwing deserializer with INTERNAL and keeps serving. Refused beyond protobufjs:
// - an int64 outside Number's safe integers: protobufjs (longs: Number) silently rounds it,
//   which would turn a revision or limit into a nearby different number; refusing is the
//   only answer that cannot mislead;
// - a known field with the wrong wire type, and field number 0: protobufjs reads them as if
//   they were right (or skips them), etcd's own decoder refuses them;
// - varints longer than 10 bytes or past 64 bits, tags and lengths past 32 bits, and groups
//   whose end tag does not match: protobufjs takes such varints' low bits or skips blindly.
// Bools are true for any non-zero varint, as in the protobuf spec and etcd; protobufjs looks
// only at the low 32 bits. Encoders that exist write 0 or 1, so the two agree in practice.
//
// Bytes fields are Buffer views of the request buffer, as protobufjs's are. That is safe:
// grpc-js's StreamDecoder builds every message with Buffer.concat, a fresh allocation per
// message that it never writes again (decompression also yields a fresh buffer). A view
// keeps the whole message's memory alive for as long as the view lives, as with protobufjs.

import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type {
  WireCompare,
  WireDeleteRangeRequest,
  WireDeleteRangeResponse,
  WireKeyValue,
  WireOperationHeader,
  WirePutRequest,
  WirePutResponse,
  WireRangeRequest,
  WireRangeResponse,
  WireResponseHeader,
  WireTxnRequest,
} from './etcd-wire.ts';

/**
 * ProtoDecodeProblem lists why a request buffer is refused; it is `details.problem` of the
 * StrataError (code INVALID_ARGUMENT) that the decoders throw, next to `details.offset`, the
 * byte offset where the offending varint, tag or field starts, and `details.message`.
 */
export const ProtoDecodeProblem = {
  /** The buffer ends inside a varint. */
  TRUNCATED_VARINT: 'TRUNCATED_VARINT',
  /** A varint runs past 10 bytes. */
  VARINT_TOO_LONG: 'VARINT_TOO_LONG',
  /** A 10-byte varint carries bits past the 64th. */
  VARINT_OVERFLOW: 'VARINT_OVERFLOW',
  /** A length-delimited field's length, or a fixed-width field, runs past the end. */
  LENGTH_PAST_END: 'LENGTH_PAST_END',
  /** A tag has wire type 6 or 7, which do not exist. */
  INVALID_WIRE_TYPE: 'INVALID_WIRE_TYPE',
  /** A tag's field number is 0 or does not fit in 29 bits. */
  INVALID_FIELD_NUMBER: 'INVALID_FIELD_NUMBER',
  /** A field this message defines arrives with another wire type than its type's. */
  WRONG_WIRE_TYPE: 'WRONG_WIRE_TYPE',
  /** An int64 field holds a value outside Number's safe integers. */
  UNSAFE_INTEGER: 'UNSAFE_INTEGER',
  /** An end-group tag arrives without its start group, or ends another group. */
  UNMATCHED_END_GROUP: 'UNMATCHED_END_GROUP',
  /** The buffer ends inside a group. */
  UNTERMINATED_GROUP: 'UNTERMINATED_GROUP',
  /** Groups nest deeper than GROUP_DEPTH_MAX. */
  GROUP_TOO_DEEP: 'GROUP_TOO_DEEP',
} as const;

/** ProtoDecodeProblem is the union of the problems' names. */
export type ProtoDecodeProblem = (typeof ProtoDecodeProblem)[keyof typeof ProtoDecodeProblem];

/**
 * GROUP_DEPTH_MAX bounds the nesting of unknown groups (a deprecated wire form no etcd client
 * sends) that the decoders skip, so a hostile request cannot recurse without limit.
 */
export const GROUP_DEPTH_MAX = 32;

/** decodePutRequest decodes etcdserverpb.PutRequest; it throws a StrataError for a malformed buffer. */
export function decodePutRequest(buffer: Buffer): WirePutRequest {
  const reader = new ProtoReader(buffer, 'PutRequest');
  const message: WirePutRequest = {};
  while (reader.offset < reader.end) {
    const tagOffset = reader.offset;
    const tag = reader.readTag();
    switch (tag) {
      case 0x0a: message.key = reader.readBytes(); break; // 1: bytes key
      case 0x12: message.value = reader.readBytes(); break; // 2: bytes value
      case 0x18: message.lease = reader.readInt64Exact(); break; // 3: int64 lease
      case 0x20: message.prev_kv = reader.readBool(); break; // 4: bool prev_kv
      case 0x28: message.ignore_value = reader.readBool(); break; // 5: bool ignore_value
      case 0x30: message.ignore_lease = reader.readBool(); break; // 6: bool ignore_lease
      default: reader.skipField(tag, tagOffset, PUT_REQUEST_FIELD_NUMBER_MAX);
    }
  }
  return message;
}

/** decodeRangeRequest decodes etcdserverpb.RangeRequest; it throws a StrataError for a malformed buffer. */
export function decodeRangeRequest(buffer: Buffer): WireRangeRequest {
  const reader = new ProtoReader(buffer, 'RangeRequest');
  const message: WireRangeRequest = {};
  while (reader.offset < reader.end) {
    const tagOffset = reader.offset;
    const tag = reader.readTag();
    switch (tag) {
      case 0x0a: message.key = reader.readBytes(); break; // 1: bytes key
      case 0x12: message.range_end = reader.readBytes(); break; // 2: bytes range_end
      case 0x18: message.limit = reader.readInt64(); break; // 3: int64 limit
      case 0x20: message.revision = reader.readInt64(); break; // 4: int64 revision
      case 0x28: message.sort_order = reader.readEnum(); break; // 5: SortOrder sort_order
      case 0x30: message.sort_target = reader.readEnum(); break; // 6: SortTarget sort_target
      case 0x38: message.serializable = reader.readBool(); break; // 7: bool serializable
      case 0x40: message.keys_only = reader.readBool(); break; // 8: bool keys_only
      case 0x48: message.count_only = reader.readBool(); break; // 9: bool count_only
      case 0x50: message.min_mod_revision = reader.readInt64(); break; // 10: int64 min_mod_revision
      case 0x58: message.max_mod_revision = reader.readInt64(); break; // 11: int64 max_mod_revision
      case 0x60: message.min_create_revision = reader.readInt64(); break; // 12: int64 min_create_revision
      case 0x68: message.max_create_revision = reader.readInt64(); break; // 13: int64 max_create_revision
      default: reader.skipField(tag, tagOffset, RANGE_REQUEST_FIELD_NUMBER_MAX);
    }
  }
  return message;
}

/** decodeDeleteRangeRequest decodes etcdserverpb.DeleteRangeRequest; it throws a StrataError for a malformed buffer. */
export function decodeDeleteRangeRequest(buffer: Buffer): WireDeleteRangeRequest {
  const reader = new ProtoReader(buffer, 'DeleteRangeRequest');
  const message: WireDeleteRangeRequest = {};
  while (reader.offset < reader.end) {
    const tagOffset = reader.offset;
    const tag = reader.readTag();
    switch (tag) {
      case 0x0a: message.key = reader.readBytes(); break; // 1: bytes key
      case 0x12: message.range_end = reader.readBytes(); break; // 2: bytes range_end
      case 0x18: message.prev_kv = reader.readBool(); break; // 3: bool prev_kv
      default: reader.skipField(tag, tagOffset, DELETE_RANGE_REQUEST_FIELD_NUMBER_MAX);
    }
  }
  return message;
}

/**
 * withExactCompareLeases sets each compare's lease operand of `message`, a TxnRequest that
 * protobufjs decoded from `buffer`, to the exact int64 read from `buffer` (a bigint): with
 * longs: Number protobufjs rounds an int64 beyond 2^53, and a lease id is one. protobufjs makes
 * one compare per Compare field on the wire, in order, as this reading does, and shows a lease
 * on each that has field 8 (of any wire type). It throws a StrataError (INVALID_ARGUMENT) for a
 * malformed buffer (a Compare field with the wrong wire type, say).
 */
export function withExactCompareLeases(message: WireTxnRequest, buffer: Buffer): WireTxnRequest {
  const compares = message.compare ?? [];
  // Most Txns compare no lease: protobufjs found none on the wire, so there is nothing to read.
  if (!compares.some((compare) => compare.lease !== undefined)) return message;
  const leases = readTxnCompareLeases(buffer);
  if (compares.length !== leases.length) {
    // Only a malformed buffer that protobufjs misreads gets here (see the quirks in the tests).
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `etcdserverpb.TxnRequest: protobufjs read ${compares.length} compares, the codec ${leases.length}`, {
      details: { message: 'TxnRequest', compares: compares.length, leases: leases.length },
    });
  }
  for (let index = 0; index < leases.length; index += 1) {
    const lease = leases[index];
    const compare = compares[index] as WireCompare;
    if (lease === undefined) delete compare.lease;
    else compare.lease = lease;
  }
  return message;
}

// readTxnCompareLeases reads the lease operand of each Compare of a TxnRequest (undefined
// where a compare has none), skipping everything else.
function readTxnCompareLeases(buffer: Buffer): (bigint | undefined)[] {
  const reader = new ProtoReader(buffer, 'TxnRequest');
  const leases: (bigint | undefined)[] = [];
  while (reader.offset < reader.end) {
    const tagOffset = reader.offset;
    const tag = reader.readTag();
    switch (tag) {
      case 0x0a: leases.push(readCompareLease(reader.readBytes())); break; // 1: repeated Compare compare
      case 0x12: reader.readBytes(); break; // 2: repeated RequestOp success
      case 0x1a: reader.readBytes(); break; // 3: repeated RequestOp failure
      default: reader.skipField(tag, tagOffset, TXN_REQUEST_FIELD_NUMBER_MAX);
    }
  }
  return leases;
}

// readCompareLease reads a Compare's lease (field 8, the last occurrence), or undefined.
function readCompareLease(buffer: Buffer): bigint | undefined {
  const reader = new ProtoReader(buffer, 'Compare');
  let lease: bigint | undefined;
  while (reader.offset < reader.end) {
    const tagOffset = reader.offset;
    const tag = reader.readTag();
    switch (tag) {
      case 0x08: // 1: CompareResult result
      case 0x10: // 2: CompareTarget target
      case 0x20: // 4: int64 version
      case 0x28: // 5: int64 create_revision
      case 0x30: // 6: int64 mod_revision
        reader.readVarint(reader.offset);
        break;
      case 0x1a: // 3: bytes key
      case 0x3a: // 7: bytes value
      case COMPARE_RANGE_END_TAG:
        reader.readBytes();
        break;
      case 0x40: lease = reader.readInt64Exact(); break; // 8: int64 lease
      default: reader.skipField(tag, tagOffset, COMPARE_FIELD_NUMBER_MAX);
    }
  }
  return lease;
}

/** encodePutResponse encodes etcdserverpb.PutResponse as protobufjs would. */
export function encodePutResponse(response: WirePutResponse): Buffer {
  const header = response.header as WireOperationHeader | null | undefined;
  const prevKv = response.prev_kv as WireKeyValue | null | undefined;
  let size = 0;
  if (header != null) size += messageFieldSize(headerSize(header));
  if (prevKv != null) size += messageFieldSize(keyValueSize(prevKv));
  const buffer = Buffer.allocUnsafe(size);
  let offset = 0;
  if (header != null) offset = writeHeaderField(buffer, offset, 0x0a, header); // 1: ResponseHeader header
  if (prevKv != null) offset = writeKeyValueField(buffer, offset, 0x12, prevKv); // 2: KeyValue prev_kv
  assert(offset === size, `PutResponse: wrote ${offset} bytes, sized ${size}`);
  return buffer;
}

/** encodeRangeResponse encodes etcdserverpb.RangeResponse as protobufjs would. */
export function encodeRangeResponse(response: WireRangeResponse): Buffer {
  const header = response.header as WireOperationHeader | null | undefined;
  const kvs = response.kvs as WireKeyValue[] | null | undefined;
  const more = response.more as boolean | null | undefined;
  const count = response.count as number | null | undefined;
  let size = 0;
  if (header != null) size += messageFieldSize(headerSize(header));
  if (kvs != null) size += keyValuesSize(kvs);
  if (more != null) size += 2;
  if (count != null) size += 1 + varintSize(count);
  const buffer = Buffer.allocUnsafe(size);
  let offset = 0;
  if (header != null) offset = writeHeaderField(buffer, offset, 0x0a, header); // 1: ResponseHeader header
  if (kvs != null) offset = writeKeyValueFields(buffer, offset, 0x12, kvs); // 2: repeated KeyValue kvs
  if (more != null) offset = writeBoolField(buffer, offset, 0x18, more); // 3: bool more
  if (count != null) offset = writeVarintField(buffer, offset, 0x20, count); // 4: int64 count
  assert(offset === size, `RangeResponse: wrote ${offset} bytes, sized ${size}`);
  return buffer;
}

/** encodeDeleteRangeResponse encodes etcdserverpb.DeleteRangeResponse as protobufjs would. */
export function encodeDeleteRangeResponse(response: WireDeleteRangeResponse): Buffer {
  const header = response.header as WireOperationHeader | null | undefined;
  const deleted = response.deleted as number | null | undefined;
  const prevKvs = response.prev_kvs as WireKeyValue[] | null | undefined;
  let size = 0;
  if (header != null) size += messageFieldSize(headerSize(header));
  if (deleted != null) size += 1 + varintSize(deleted);
  if (prevKvs != null) size += keyValuesSize(prevKvs);
  const buffer = Buffer.allocUnsafe(size);
  let offset = 0;
  if (header != null) offset = writeHeaderField(buffer, offset, 0x0a, header); // 1: ResponseHeader header
  if (deleted != null) offset = writeVarintField(buffer, offset, 0x10, deleted); // 2: int64 deleted
  if (prevKvs != null) offset = writeKeyValueFields(buffer, offset, 0x1a, prevKvs); // 3: repeated KeyValue prev_kvs
  assert(offset === size, `DeleteRangeResponse: wrote ${offset} bytes, sized ${size}`);
  return buffer;
}

// The highest field number each request message defines. Its fields are numbered 1..max
// without gaps, so a field number up to the max with an unexpected tag has the wrong wire type.
const PUT_REQUEST_FIELD_NUMBER_MAX = 6;
const RANGE_REQUEST_FIELD_NUMBER_MAX = 13;
const DELETE_RANGE_REQUEST_FIELD_NUMBER_MAX = 3;
const TXN_REQUEST_FIELD_NUMBER_MAX = 3;
// Compare numbers its fields 1..8, then range_end = 64 (bytes).
const COMPARE_FIELD_NUMBER_MAX = 8;
const COMPARE_RANGE_END_TAG = (64 << 3) | 2;

const WIRE_TYPE_VARINT = 0;
const WIRE_TYPE_FIXED64 = 1;
const WIRE_TYPE_LENGTH_DELIMITED = 2;
const WIRE_TYPE_START_GROUP = 3;
const WIRE_TYPE_END_GROUP = 4;
const WIRE_TYPE_FIXED32 = 5;

const TWO_TO_THE_32 = 0x1_0000_0000;

// ProtoReader reads one request buffer front to back. A 64-bit varint is read into
// varintLow/varintHigh (its two 32-bit halves, unsigned) so that no value object is made.
class ProtoReader {
  readonly buffer: Buffer;
  readonly end: number;
  readonly messageName: string;
  // Invariant: 0 <= offset <= end.
  offset = 0;
  varintLow = 0;
  varintHigh = 0;

  constructor(buffer: Buffer, messageName: string) {
    assert(Buffer.isBuffer(buffer), `${messageName}: grpc-js hands deserializers a Buffer`);
    this.buffer = buffer;
    this.end = buffer.length;
    this.messageName = messageName;
  }

  // readTag answers a tag (field number << 3 | wire type) with a valid wire type and field number.
  readTag(): number {
    const start = this.offset;
    const first = this.buffer[start] as number; // the caller checked offset < end
    let tag: number;
    if (first < 0x80) {
      this.offset = start + 1;
      tag = first;
    } else {
      this.readVarint(start);
      if (this.varintHigh !== 0) throw this.problem(ProtoDecodeProblem.INVALID_FIELD_NUMBER, start, 'a tag past 32 bits');
      tag = this.varintLow;
    }
    const wireType = tag & 7;
    if (wireType > WIRE_TYPE_FIXED32) throw this.problem(ProtoDecodeProblem.INVALID_WIRE_TYPE, start, `invalid wire type ${wireType}`);
    if (tag >>> 3 === 0) throw this.problem(ProtoDecodeProblem.INVALID_FIELD_NUMBER, start, 'field number 0');
    return tag;
  }

  readBytes(): Buffer {
    const length = this.readLength();
    const bytesStart = this.offset;
    this.offset = bytesStart + length;
    return this.buffer.subarray(bytesStart, this.offset);
  }

  readInt64(): number {
    const start = this.offset;
    if (start < this.end) {
      const first = this.buffer[start] as number;
      if (first < 0x80) {
        this.offset = start + 1;
        return first;
      }
    }
    this.readVarint(start);
    const low = this.varintLow;
    const high = this.varintHigh;
    // Two's complement: a set top bit is a negative number, sent as a 10-byte varint.
    const value = high >>> 31 === 0 ? high * TWO_TO_THE_32 + low : -((~high >>> 0) * TWO_TO_THE_32 + (~low >>> 0) + 1);
    // A magnitude of 2^53 or more rounds to a double of 2^53 or more, so this check is exact.
    if (!Number.isSafeInteger(value)) throw this.problem(ProtoDecodeProblem.UNSAFE_INTEGER, start, `int64 ${high >>> 31 === 0 ? '' : 'negative '}value beyond Number.MAX_SAFE_INTEGER`);
    return value;
  }

  // readInt64Exact reads an int64 exactly, as a bigint (a lease id: any int64, no rounding).
  readInt64Exact(): bigint {
    this.readVarint(this.offset);
    return BigInt.asIntN(64, (BigInt(this.varintHigh) << 32n) | BigInt(this.varintLow));
  }

  // readEnum reads an enum as protobufjs does (as an int32): the low 32 bits, signed.
  readEnum(): number {
    const start = this.offset;
    if (start < this.end) {
      const first = this.buffer[start] as number;
      if (first < 0x80) {
        this.offset = start + 1;
        return first;
      }
    }
    this.readVarint(start);
    return this.varintLow | 0;
  }

  readBool(): boolean {
    const start = this.offset;
    if (start < this.end) {
      const first = this.buffer[start] as number;
      if (first < 0x80) {
        this.offset = start + 1;
        return first !== 0;
      }
    }
    this.readVarint(start);
    return (this.varintLow | this.varintHigh) !== 0;
  }

  // readLength reads a length-delimited field's length and checks that its bytes are there.
  private readLength(): number {
    const start = this.offset;
    let length: number;
    const first = start < this.end ? (this.buffer[start] as number) : 0x80;
    if (first < 0x80) {
      this.offset = start + 1;
      length = first;
    } else {
      this.readVarint(start);
      if (this.varintHigh !== 0) throw this.problem(ProtoDecodeProblem.LENGTH_PAST_END, start, 'a length past 32 bits');
      length = this.varintLow;
    }
    if (length > this.end - this.offset) throw this.problem(ProtoDecodeProblem.LENGTH_PAST_END, start, `length ${length} past the end (${this.end - this.offset} bytes left)`);
    return length;
  }

  // readVarint reads the varint at `start` into varintLow/varintHigh and moves past it.
  readVarint(start: number): void {
    const buffer = this.buffer;
    const end = this.end;
    let offset = start;
    let low = 0;
    let high = 0;
    for (let index = 0; index < 10; index += 1) {
      if (offset >= end) throw this.problem(ProtoDecodeProblem.TRUNCATED_VARINT, start, 'truncated varint');
      const byte = buffer[offset] as number;
      offset += 1;
      if (index < 4) {
        low |= (byte & 0x7f) << (7 * index);
      } else if (index === 4) {
        low |= (byte & 0x0f) << 28;
        high = (byte & 0x7f) >>> 4;
      } else if (index < 9) {
        high |= (byte & 0x7f) << (7 * index - 32);
      } else {
        if (byte >= 0x80) break;
        if (byte > 1) throw this.problem(ProtoDecodeProblem.VARINT_OVERFLOW, start, 'varint past 64 bits');
        high |= byte << 31;
      }
      if (byte < 0x80) {
        this.varintLow = low >>> 0;
        this.varintHigh = high >>> 0;
        this.offset = offset;
        return;
      }
    }
    throw this.problem(ProtoDecodeProblem.VARINT_TOO_LONG, start, 'varint over 10 bytes');
  }

  // skipField skips a field this message does not know (the protobuf rule for unknown
  // fields); a known field number here arrived with the wrong wire type.
  skipField(tag: number, tagOffset: number, fieldNumberMax: number): void {
    const fieldNumber = tag >>> 3;
    if (fieldNumber <= fieldNumberMax) {
      throw this.problem(ProtoDecodeProblem.WRONG_WIRE_TYPE, tagOffset, `field ${fieldNumber} with wire type ${tag & 7}, which is not its type's`);
    }
    this.skipValue(tag, tagOffset, 0);
  }

  private skipValue(tag: number, tagOffset: number, groupDepth: number): void {
    switch (tag & 7) {
      case WIRE_TYPE_VARINT:
        this.readVarint(this.offset);
        return;
      case WIRE_TYPE_FIXED64:
        this.skipFixed(8);
        return;
      case WIRE_TYPE_LENGTH_DELIMITED: {
        const length = this.readLength(); // moves the offset past the length first
        this.offset += length;
        return;
      }
      case WIRE_TYPE_START_GROUP:
        this.skipGroup(tag >>> 3, tagOffset, groupDepth + 1);
        return;
      case WIRE_TYPE_END_GROUP:
        throw this.problem(ProtoDecodeProblem.UNMATCHED_END_GROUP, tagOffset, `end group ${tag >>> 3} without its start`);
      case WIRE_TYPE_FIXED32:
        this.skipFixed(4);
        return;
      default:
        assert(false, `readTag let wire type ${tag & 7} through`);
    }
  }

  private skipFixed(length: number): void {
    if (length > this.end - this.offset) throw this.problem(ProtoDecodeProblem.LENGTH_PAST_END, this.offset, `fixed ${length}-byte value past the end`);
    this.offset += length;
  }

  // skipGroup skips to the end tag of group `fieldNumber`. Each turn consumes at least one
  // byte, so the loop ends with the buffer; the recursion is bounded by GROUP_DEPTH_MAX.
  private skipGroup(fieldNumber: number, startOffset: number, groupDepth: number): void {
    if (groupDepth > GROUP_DEPTH_MAX) throw this.problem(ProtoDecodeProblem.GROUP_TOO_DEEP, startOffset, `groups nested deeper than ${GROUP_DEPTH_MAX}`);
    while (this.offset < this.end) {
      const tagOffset = this.offset;
      const tag = this.readTag();
      if ((tag & 7) === WIRE_TYPE_END_GROUP) {
        if (tag >>> 3 !== fieldNumber) throw this.problem(ProtoDecodeProblem.UNMATCHED_END_GROUP, tagOffset, `end group ${tag >>> 3} inside group ${fieldNumber}`);
        return;
      }
      this.skipValue(tag, tagOffset, groupDepth);
    }
    throw this.problem(ProtoDecodeProblem.UNTERMINATED_GROUP, startOffset, `group ${fieldNumber} without its end`);
  }

  private problem(problem: ProtoDecodeProblem, offset: number, what: string): StrataError {
    return new StrataError(ErrorCode.INVALID_ARGUMENT, `etcdserverpb.${this.messageName}: ${what} at byte offset ${offset}`, {
      details: { message: this.messageName, problem, offset },
    });
  }
}

// varintSize is the size of `value` as protobufjs writes an int64 or uint64: a negative
// number is its 64-bit two's complement, ten bytes.
function varintSize(value: number): number {
  assert(Number.isSafeInteger(value), `a 64-bit field holds ${value}, not a safe integer`);
  if (value < 0) return 10;
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x20_0000) return 3;
  if (value < 0x1000_0000) return 4;
  if (value < 0x8_0000_0000) return 5;
  if (value < 0x400_0000_0000) return 6;
  if (value < 0x2_0000_0000_0000) return 7;
  return 8; // safe integers stop below 2^53, so never 9 bytes
}

function messageFieldSize(messageBytes: number): number {
  return 1 + varintSize(messageBytes) + messageBytes;
}

function headerSize(header: WireOperationHeader): number {
  const full = header as Partial<WireResponseHeader>;
  let size = 0;
  if (full.cluster_id != null) size += 1 + varintSize(full.cluster_id);
  if (full.member_id != null) size += 1 + varintSize(full.member_id);
  if (full.revision != null) size += 1 + varintSize(full.revision);
  if (full.raft_term != null) size += 1 + varintSize(full.raft_term);
  return size;
}

function keyValueSize(kv: WireKeyValue): number {
  const partial = kv as Partial<WireKeyValue>;
  let size = 0;
  if (partial.key != null) size += 1 + varintSize(partial.key.length) + partial.key.length;
  if (partial.create_revision != null) size += 1 + varintSize(partial.create_revision);
  if (partial.mod_revision != null) size += 1 + varintSize(partial.mod_revision);
  if (partial.version != null) size += 1 + varintSize(partial.version);
  if (partial.value != null) size += 1 + varintSize(partial.value.length) + partial.value.length;
  if (partial.lease != null) size += 1 + int64VarintSize(partial.lease);
  return size;
}

function keyValuesSize(kvs: readonly WireKeyValue[]): number {
  let size = 0;
  for (let index = 0; index < kvs.length; index += 1) size += messageFieldSize(keyValueSize(kvs[index] as WireKeyValue));
  return size;
}

function writeHeaderField(buffer: Buffer, start: number, tag: number, header: WireOperationHeader): number {
  const full = header as Partial<WireResponseHeader>;
  let offset = writeVarint(buffer, start, tag);
  offset = writeVarint(buffer, offset, headerSize(header));
  if (full.cluster_id != null) offset = writeVarintField(buffer, offset, 0x08, full.cluster_id); // 1: uint64 cluster_id
  if (full.member_id != null) offset = writeVarintField(buffer, offset, 0x10, full.member_id); // 2: uint64 member_id
  if (full.revision != null) offset = writeVarintField(buffer, offset, 0x18, full.revision); // 3: int64 revision
  if (full.raft_term != null) offset = writeVarintField(buffer, offset, 0x20, full.raft_term); // 4: uint64 raft_term
  return offset;
}

function writeKeyValueFields(buffer: Buffer, start: number, tag: number, kvs: readonly WireKeyValue[]): number {
  let offset = start;
  for (let index = 0; index < kvs.length; index += 1) offset = writeKeyValueField(buffer, offset, tag, kvs[index] as WireKeyValue);
  return offset;
}

function writeKeyValueField(buffer: Buffer, start: number, tag: number, kv: WireKeyValue): number {
  const partial = kv as Partial<WireKeyValue>;
  let offset = writeVarint(buffer, start, tag);
  offset = writeVarint(buffer, offset, keyValueSize(kv));
  if (partial.key != null) offset = writeBytesField(buffer, offset, 0x0a, partial.key); // 1: bytes key
  if (partial.create_revision != null) offset = writeVarintField(buffer, offset, 0x10, partial.create_revision); // 2: int64 create_revision
  if (partial.mod_revision != null) offset = writeVarintField(buffer, offset, 0x18, partial.mod_revision); // 3: int64 mod_revision
  if (partial.version != null) offset = writeVarintField(buffer, offset, 0x20, partial.version); // 4: int64 version
  if (partial.value != null) offset = writeBytesField(buffer, offset, 0x2a, partial.value); // 5: bytes value
  if (partial.lease != null) offset = writeInt64VarintField(buffer, offset, 0x30, partial.lease); // 6: int64 lease
  return offset;
}

function writeBoolField(buffer: Buffer, offset: number, tag: number, value: boolean): number {
  buffer[offset] = tag;
  buffer[offset + 1] = value ? 1 : 0;
  return offset + 2;
}

function writeVarintField(buffer: Buffer, offset: number, tag: number, value: number): number {
  buffer[offset] = tag; // every tag written here is below 0x80
  return writeVarint(buffer, offset + 1, value);
}

function writeBytesField(buffer: Buffer, offset: number, tag: number, bytes: Uint8Array): number {
  buffer[offset] = tag;
  const start = writeVarint(buffer, offset + 1, bytes.length);
  // TypedArray.set has a fixed cost that a short key does not pay back.
  if (bytes.length <= BYTES_COPY_LOOP_MAX) {
    for (let index = 0; index < bytes.length; index += 1) buffer[start + index] = bytes[index] as number;
  } else {
    buffer.set(bytes, start);
  }
  return start + bytes.length;
}

// int64VarintSize is the size of a bigint int64 (a lease id) as protobufjs writes it: a
// negative value is its 64-bit two's complement, ten bytes.
function int64VarintSize(value: bigint): number {
  assert(typeof value === 'bigint', 'a lease id is a bigint');
  assert(value >= INT64_MIN && value <= INT64_MAX, `an int64 field holds ${value}, out of range`);
  if (value >= 0n && value <= 0x7fff_ffffn) return varintSize(Number(value));
  let bytes = 1;
  for (let rest = BigInt.asUintN(64, value); rest >= 0x80n; rest >>= 7n) bytes += 1;
  return bytes;
}

// writeInt64VarintField writes a bigint int64 (int64VarintSize checked it while sizing).
function writeInt64VarintField(buffer: Buffer, offset: number, tag: number, value: bigint): number {
  if (value >= 0n && value <= 0x7fff_ffffn) return writeVarintField(buffer, offset, tag, Number(value));
  buffer[offset] = tag; // every tag written here is below 0x80
  let at = offset + 1;
  let rest = BigInt.asUintN(64, value);
  while (rest >= 0x80n) {
    buffer[at] = Number(rest & 0x7fn) | 0x80;
    at += 1;
    rest >>= 7n;
  }
  buffer[at] = Number(rest);
  return at + 1;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// BYTES_COPY_LOOP_MAX is the longest bytes field copied byte by byte rather than with set().
const BYTES_COPY_LOOP_MAX = 16;

// writeVarint writes a safe integer (varintSize checked it while sizing) as protobufjs
// writes an int64: a negative number as its 64-bit two's complement.
function writeVarint(buffer: Buffer, start: number, value: number): number {
  let offset = start;
  if (value >= 0 && value <= 0x7fff_ffff) {
    let remaining = value;
    while (remaining > 0x7f) {
      buffer[offset] = (remaining & 0x7f) | 0x80;
      offset += 1;
      remaining >>>= 7;
    }
    buffer[offset] = remaining;
    return offset + 1;
  }
  const magnitude = value < 0 ? -value : value;
  let low = magnitude >>> 0;
  let high = Math.floor(magnitude / TWO_TO_THE_32) >>> 0;
  if (value < 0) {
    low = ~low >>> 0;
    high = ~high >>> 0;
    if (low === 0xffff_ffff) {
      low = 0;
      high = (high + 1) >>> 0;
    } else {
      low += 1;
    }
  }
  while (high !== 0 || low > 0x7f) {
    buffer[offset] = (low & 0x7f) | 0x80;
    offset += 1;
    low = ((low >>> 7) | (high << 25)) >>> 0;
    high >>>= 7;
  }
  buffer[offset] = low;
  return offset + 1;
}

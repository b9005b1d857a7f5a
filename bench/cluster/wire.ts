// The few etcd v3 messages the cluster benchmarks send and read, encoded by hand.
//
// The client harness sends the same bytes to every target (the echo server, etcd, stratakv),
// so whatever a target answers, the client's own cost is identical; encoding by hand keeps
// that cost small (no protobufjs objects on the hot path) and needs no .proto file. Field
// numbers are etcd's (api/etcdserverpb/rpc.proto, etcd v3.4).

/** WIRE_VARINT and WIRE_BYTES are the protobuf wire types the messages here use. */
const WIRE_VARINT = 0;
const WIRE_BYTES = 2;
const FIELD_NUMBER_MAX = 1 << 20;

/** KV_PUT and the other paths are the gRPC method paths of etcd's services. */
export const KV_PUT = '/etcdserverpb.KV/Put';
export const KV_RANGE = '/etcdserverpb.KV/Range';
export const MAINTENANCE_STATUS = '/etcdserverpb.Maintenance/Status';
export const MAINTENANCE_MOVE_LEADER = '/etcdserverpb.Maintenance/MoveLeader';

function varintBytes(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    bytes += 1;
  }
  return bytes;
}

function writeVarint(target: Buffer, offset: number, value: number): number {
  while (value >= 0x80) {
    target[offset++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  target[offset++] = value;
  return offset;
}

/** encodeBytesFields encodes length-delimited fields (field number, bytes), in order, then varint fields (`trailer`). */
export function encodeBytesFields(fields: readonly (readonly [number, Uint8Array])[], trailer: readonly (readonly [number, number])[] = []): Buffer {
  let size = 0;
  for (const [field, bytes] of fields) size += varintBytes(field << 3) + varintBytes(bytes.length) + bytes.length;
  for (const [field, value] of trailer) size += varintBytes(field << 3) + varintBytes(value);
  const out = Buffer.allocUnsafe(size);
  let offset = 0;
  for (const [field, bytes] of fields) {
    offset = writeVarint(out, offset, (field << 3) | WIRE_BYTES);
    offset = writeVarint(out, offset, bytes.length);
    out.set(bytes, offset);
    offset += bytes.length;
  }
  for (const [field, value] of trailer) {
    offset = writeVarint(out, offset, (field << 3) | WIRE_VARINT);
    offset = writeVarint(out, offset, value);
  }
  if (offset !== size) throw new Error('encodeBytesFields: size mismatch');
  return out;
}

/** encodePutRequest encodes PutRequest{key: 1, value: 2}. */
export function encodePutRequest(key: Uint8Array, value: Uint8Array): Buffer {
  return encodeBytesFields([[1, key], [2, value]]);
}

/**
 * encodeRangeRequest encodes RangeRequest{key: 1} for a single key; serializable (field 7)
 * is left false, so the read is linearizable.
 */
export function encodeRangeRequest(key: Uint8Array): Buffer {
  return encodeBytesFields([[1, key]]);
}

/** encodeMoveLeaderRequest encodes MoveLeaderRequest{targetID: 1 (uint64)}. */
export function encodeMoveLeaderRequest(targetId: bigint): Buffer {
  const bytes: number[] = [(1 << 3) | WIRE_VARINT];
  let value = BigInt.asUintN(64, targetId);
  while (value >= 0x80n) {
    bytes.push(Number(value & 0x7fn) | 0x80);
    value >>= 7n;
  }
  bytes.push(Number(value));
  return Buffer.from(bytes);
}

/** Field is one decoded protobuf field: a varint (as bigint) or a byte slice. */
export type Field = { readonly number: number; readonly varint: bigint } | { readonly number: number; readonly bytes: Buffer };

/** decodeFields splits a message into its top-level fields (varint and length-delimited only). */
export function decodeFields(message: Buffer): Field[] {
  const fields: Field[] = [];
  let offset = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (let step = 0; step < 10; step++) {
      const byte = message[offset++];
      if (byte === undefined) throw new Error('decodeFields: truncated varint');
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
    throw new Error('decodeFields: varint longer than 10 bytes');
  };
  while (offset < message.length) {
    const tag = Number(readVarint());
    const number = tag >>> 3;
    if (number === 0 || number > FIELD_NUMBER_MAX) throw new Error(`decodeFields: bad field number ${number}`);
    const wire = tag & 7;
    if (wire === WIRE_VARINT) {
      fields.push({ number, varint: readVarint() });
    } else if (wire === WIRE_BYTES) {
      const length = Number(readVarint());
      if (offset + length > message.length) throw new Error('decodeFields: truncated bytes field');
      fields.push({ number, bytes: message.subarray(offset, offset + length) });
      offset += length;
    } else if (wire === 1) {
      offset += 8;
    } else if (wire === 5) {
      offset += 4;
    } else {
      throw new Error(`decodeFields: unsupported wire type ${wire}`);
    }
  }
  return fields;
}

function varintField(fields: readonly Field[], number: number): bigint | undefined {
  for (const field of fields) if (field.number === number && 'varint' in field) return field.varint;
  return undefined;
}

function bytesField(fields: readonly Field[], number: number): Buffer | undefined {
  for (const field of fields) if (field.number === number && 'bytes' in field) return field.bytes;
  return undefined;
}

/** ResponseHeader is etcd's header: cluster_id 1, member_id 2, revision 3, raft_term 4. */
export interface ResponseHeader {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  readonly revision: bigint;
  readonly raftTerm: bigint;
}

function decodeHeader(bytes: Buffer | undefined): ResponseHeader {
  const fields = bytes === undefined ? [] : decodeFields(bytes);
  return {
    clusterId: varintField(fields, 1) ?? 0n,
    memberId: varintField(fields, 2) ?? 0n,
    revision: varintField(fields, 3) ?? 0n,
    raftTerm: varintField(fields, 4) ?? 0n,
  };
}

/** StatusResponse holds the fields of Maintenance.Status the launchers use. */
export interface StatusResponse {
  readonly header: ResponseHeader;
  readonly version: string;
  readonly leader: bigint;
  readonly raftIndex: bigint;
  readonly raftTerm: bigint;
  /** raftAppliedIndex (field 7) is the member's applied index. */
  readonly raftAppliedIndex: bigint;
}

/** decodeStatusResponse decodes StatusResponse{header 1, version 2, dbSize 3, leader 4, raftIndex 5, raftTerm 6, raftAppliedIndex 7}. */
export function decodeStatusResponse(message: Buffer): StatusResponse {
  const fields = decodeFields(message);
  return {
    header: decodeHeader(bytesField(fields, 1)),
    version: bytesField(fields, 2)?.toString('utf8') ?? '',
    leader: varintField(fields, 4) ?? 0n,
    raftIndex: varintField(fields, 5) ?? 0n,
    raftTerm: varintField(fields, 6) ?? 0n,
    raftAppliedIndex: varintField(fields, 7) ?? 0n,
  };
}

/** decodePutResponse decodes PutResponse{header 1} and returns its header. */
export function decodePutResponse(message: Buffer): ResponseHeader {
  return decodeHeader(bytesField(decodeFields(message), 1));
}

/** RangeResult is what the harness checks of a RangeResponse: how many kvs and the first value. */
export interface RangeResult {
  readonly header: ResponseHeader;
  readonly kvCount: number;
  readonly firstValue: Buffer | undefined;
}

/** decodeRangeResponse decodes RangeResponse{header 1, kvs 2 (KeyValue{key 1, …, value 5})}. */
export function decodeRangeResponse(message: Buffer): RangeResult {
  const fields = decodeFields(message);
  const kvs = fields.filter((field) => field.number === 2 && 'bytes' in field);
  const first = kvs[0];
  const firstValue = first !== undefined && 'bytes' in first ? bytesField(decodeFields(first.bytes), 5) : undefined;
  return { header: decodeHeader(bytesField(fields, 1)), kvCount: kvs.length, firstValue };
}

// The etcd wire format as @grpc/proto-loader gives it to us, and the conversions between it and
// our types. proto-loader answers plain objects: 64-bit integers as decimal strings (so member
// ids keep all 64 bits), bytes as Buffers, enums as their names, oneofs with a discriminator.
// Everything that leaves this file is typed; everything that enters from the wire is checked
// as far as our types need it.

import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type {
  Compare,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KeyValue,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnOperation,
  TxnOperationResponse,
  TxnRequest,
  TxnResponse,
} from '../storage/kv-types.ts';
import { LEASE_ID_MAX } from '../storage/kv-types.ts';

/** MemberId is a cluster member id: etcd's are random 64-bit numbers, beyond a double's safe range. */
export type MemberId = bigint;

/** ResponseHeader is what every etcd answer carries about the member that answered. */
export interface ResponseHeader {
  readonly clusterId: bigint;
  readonly memberId: MemberId;
  /** The store's revision when the answer was made. */
  readonly revision: number;
  readonly raftTerm: number;
}

// The client is a sibling of src/server (ARCHITECTURE.md, Layers): it describes what etcd's
// Cluster and Maintenance answers carry in its own types instead of importing the server's.

/** ClusterMember is one member as etcd's MemberList answers it, with a 64-bit id (etcd's member ids do not fit a number). */
export interface ClusterMember {
  readonly id: MemberId;
  /** Empty until the member has published its name. */
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
}

/** EndpointStatus is Maintenance.Status as one endpoint answered it, with 64-bit ids. */
export interface EndpointStatus {
  readonly version: string;
  /** Bytes the state machine's database takes on disk (or in memory). */
  readonly dbSizeBytes: number;
  /** The last index of the answering member's Raft log. */
  readonly raftIndex: number;
  readonly raftTerm: number;
  readonly raftAppliedIndex: number;
  readonly isLearner: boolean;
  /** Alarms or problems, as text (etcd's `errors`). */
  readonly errors: readonly string[];
  /** The endpoint that answered, as host:port. */
  readonly endpoint: string;
  readonly header: ResponseHeader;
  /** The answering member's id (from the header). */
  readonly memberId: MemberId;
  /** The leader's id as this member believes it; 0n when it knows none. */
  readonly leaderId: MemberId;
  /** Bytes of the database in use (etcd's dbSizeInUse). */
  readonly dbSizeInUseBytes: number;
}

/** ClusterAlarm is one raised alarm as etcd's Alarm answers it; member id 0n stands for the whole cluster. */
export interface ClusterAlarm {
  readonly memberId: MemberId;
  readonly alarm: 'NOSPACE' | 'CORRUPT';
}

/** WithHeader adds the answering member's header to a KV answer. */
export type WithHeader<T> = T & { readonly header: ResponseHeader };

const PROTO_ROOT = fileURLToPath(new URL('../../proto/etcd/', import.meta.url));

/** EtcdServices are the method tables of the etcd services the client calls. */
export interface EtcdServices {
  readonly kv: protoLoader.ServiceDefinition;
  readonly cluster: protoLoader.ServiceDefinition;
  readonly maintenance: protoLoader.ServiceDefinition;
  readonly watch: protoLoader.ServiceDefinition;
}

let loaded: EtcdServices | undefined;

/** loadEtcdServices loads rpc.proto once per process; the parse takes tens of milliseconds. */
export function loadEtcdServices(): EtcdServices {
  if (loaded !== undefined) return loaded;
  const definition = protoLoader.loadSync('etcdserverpb/rpc.proto', {
    includeDirs: [PROTO_ROOT],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const service = (name: string): protoLoader.ServiceDefinition => {
    const found = definition[`etcdserverpb.${name}`];
    if (found === undefined || 'format' in found) throw new Error(`rpc.proto has no service etcdserverpb.${name}`);
    return found as protoLoader.ServiceDefinition;
  };
  loaded = { kv: service('KV'), cluster: service('Cluster'), maintenance: service('Maintenance'), watch: service('Watch') };
  return loaded;
}

// ---- values ----

/** Bytes is a key or value as the caller gives it: bytes, or a string sent as UTF-8. */
export type Bytes = Uint8Array | string;

/** toBuffer turns a key or value into the bytes sent (strings as UTF-8), without copying bytes. */
export function toBuffer(bytes: Bytes): Buffer {
  if (typeof bytes === 'string') return Buffer.from(bytes, 'utf8');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** prefixEnd is etcd's GetPrefixRangeEnd: the first key after every key that starts with `prefix`. */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  for (let index = prefix.length - 1; index >= 0; index--) {
    const byte = prefix[index] ?? 0;
    if (byte < 0xff) {
      // A copy: Buffer's slice() is a view, and the caller's key must not change.
      const end = Uint8Array.prototype.slice.call(prefix, 0, index + 1);
      end[index] = byte + 1;
      return end;
    }
  }
  // Every byte is 0xff (or the prefix is empty): no key follows, so read to the end.
  return Uint8Array.of(0);
}

function safeNumber(field: string, text: unknown): number {
  const value = typeof text === 'number' ? text : Number(text);
  if (!Number.isSafeInteger(value)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `the server answered ${field}=${String(text)}, which is not a safe integer`);
  }
  return value;
}

// LEASE_ID_DIGITS matches what proto-loader gives for a non-negative int64 (longs: String): its
// decimal digits without sign or leading zeros, at most 19 of them (2^63 - 1 has 19).
const LEASE_ID_DIGITS = /^(?:0|[1-9][0-9]{0,18})$/;

/**
 * leaseId reads a key's int64 lease id exactly: proto-loader gives the decimal digits
 * (longs: String, from protobufjs's Long), turned into a bigint without passing through a
 * double (etcd's ids are above 2^53). A negative id, or text that is not one, is refused.
 */
function leaseId(field: string, text: unknown): bigint {
  if (typeof text === 'string' && LEASE_ID_DIGITS.test(text)) {
    const value = BigInt(text);
    if (value <= LEASE_ID_MAX) return value;
  } else if (typeof text === 'number' && Number.isSafeInteger(text) && text >= 0) {
    return BigInt(text);
  }
  throw new StrataError(ErrorCode.INVALID_ARGUMENT, `the server answered ${field}=${String(text)}, which is not a lease id (an integer from 0 to 2^63 - 1)`);
}

function uint64(text: unknown): bigint {
  return typeof text === 'string' || typeof text === 'number' ? BigInt(text) : 0n;
}

function bytesOf(value: unknown): Uint8Array {
  return value instanceof Uint8Array ? value : new Uint8Array(0);
}

function stringsOf(value: unknown): string[] {
  return Array.isArray(value) ? value.map((item) => String(item)) : [];
}

// The shapes proto-loader answers (with defaults on, every scalar is present).
type WireObject = Readonly<Record<string, unknown>>;

function object(value: unknown): WireObject {
  return typeof value === 'object' && value !== null ? (value as WireObject) : {};
}

/** decodeHeader reads an etcd ResponseHeader. */
export function decodeHeader(value: unknown): ResponseHeader {
  const header = object(value);
  return {
    clusterId: uint64(header['clusterId']),
    memberId: uint64(header['memberId']),
    revision: safeNumber('header.revision', header['revision'] ?? 0),
    raftTerm: safeNumber('header.raftTerm', header['raftTerm'] ?? 0),
  };
}

function decodeKeyValue(value: unknown): KeyValue {
  const kv = object(value);
  return {
    key: bytesOf(kv['key']),
    value: bytesOf(kv['value']),
    createRevision: safeNumber('kv.createRevision', kv['createRevision'] ?? 0),
    modRevision: safeNumber('kv.modRevision', kv['modRevision'] ?? 0),
    version: safeNumber('kv.version', kv['version'] ?? 0),
    lease: leaseId('kv.lease', kv['lease'] ?? '0'),
  };
}

/** decodeMember reads an etcd Member. */
export function decodeMember(value: unknown): ClusterMember {
  const member = object(value);
  return {
    id: uint64(member['ID']),
    name: String(member['name'] ?? ''),
    peerUrls: stringsOf(member['peerURLs']),
    clientUrls: stringsOf(member['clientURLs']),
    isLearner: member['isLearner'] === true,
  };
}

/** decodeMembers reads the `members` list of a Cluster answer. */
export function decodeMembers(value: unknown): ClusterMember[] {
  const members = object(value)['members'];
  return Array.isArray(members) ? members.map(decodeMember) : [];
}

/** decodeStatus reads a Maintenance.Status answer from `endpoint`. */
export function decodeStatus(endpoint: string, value: unknown): EndpointStatus {
  const status = object(value);
  const header = decodeHeader(status['header']);
  return {
    endpoint,
    header,
    memberId: header.memberId,
    version: String(status['version'] ?? ''),
    dbSizeBytes: safeNumber('dbSize', status['dbSize'] ?? 0),
    dbSizeInUseBytes: safeNumber('dbSizeInUse', status['dbSizeInUse'] ?? 0),
    leaderId: uint64(status['leader']),
    raftIndex: safeNumber('raftIndex', status['raftIndex'] ?? 0),
    raftTerm: safeNumber('raftTerm', status['raftTerm'] ?? 0),
    raftAppliedIndex: safeNumber('raftAppliedIndex', status['raftAppliedIndex'] ?? 0),
    isLearner: status['isLearner'] === true,
    errors: stringsOf(status['errors']),
  };
}

/** decodeAlarms reads the `alarms` of a Maintenance.Alarm answer; alarm types this client does not know are left out. */
export function decodeAlarms(value: unknown): ClusterAlarm[] {
  const alarms = object(value)['alarms'];
  if (!Array.isArray(alarms)) return [];
  const known: ClusterAlarm[] = [];
  for (const item of alarms) {
    const alarm = object(item);
    const type = alarm['alarm'];
    if (type === 'NOSPACE' || type === 'CORRUPT') known.push({ memberId: uint64(alarm['memberID']), alarm: type });
  }
  return known;
}

/** SnapshotResponseMessage is one message of a Maintenance.Snapshot stream. */
export interface SnapshotResponseMessage {
  /** Present on the first message (stratakv, etcd 3.5+); zeros otherwise. */
  readonly header: ResponseHeader;
  /** The snapshot bytes still to come after this message. */
  readonly remainingBytes: number;
  readonly blob: Uint8Array;
  /** The server's version (etcd 3.6+, stratakv); empty otherwise. */
  readonly version: string;
}

/** decodeSnapshotResponse reads one Maintenance.Snapshot message. */
export function decodeSnapshotResponse(value: unknown): SnapshotResponseMessage {
  const message = object(value);
  return {
    header: decodeHeader(message['header']),
    remainingBytes: safeNumber('remainingBytes', message['remainingBytes'] ?? 0),
    blob: bytesOf(message['blob']),
    version: String(message['version'] ?? ''),
  };
}

// ---- KV requests ----

// An absent range end must be left out, not sent empty: proto-loader writes an empty bytes
// field when it is set, and etcd then reads the request as a range instead of one key.
function rangeEndField(bytes: Uint8Array | undefined): { rangeEnd?: Buffer } {
  return bytes === undefined || bytes.length === 0 ? {} : { rangeEnd: toBuffer(bytes) };
}

/** encodePut is an etcd PutRequest. */
export function encodePut(request: PutRequest): object {
  return { key: toBuffer(request.key), value: toBuffer(request.value), prevKv: request.prevKv === true };
}

/** encodeRange is an etcd RangeRequest. */
export function encodeRange(request: RangeRequest): object {
  return {
    key: toBuffer(request.key),
    ...rangeEndField(request.rangeEnd),
    limit: request.limit ?? 0,
    revision: request.revision ?? 0,
    keysOnly: request.keysOnly === true,
    countOnly: request.countOnly === true,
    serializable: request.serializable === true,
  };
}

/** encodeDeleteRange is an etcd DeleteRangeRequest. */
export function encodeDeleteRange(request: DeleteRangeRequest): object {
  return { key: toBuffer(request.key), ...rangeEndField(request.rangeEnd), prevKv: request.prevKv === true };
}

const COMPARE_TARGETS = { value: 'VALUE', version: 'VERSION', createRevision: 'CREATE', modRevision: 'MOD', lease: 'LEASE' } as const;
const COMPARE_RESULTS = { equal: 'EQUAL', notEqual: 'NOT_EQUAL', less: 'LESS', greater: 'GREATER' } as const;

function encodeCompare(compare: Compare): object {
  const base = {
    target: COMPARE_TARGETS[compare.target],
    result: COMPARE_RESULTS[compare.result],
    key: toBuffer(compare.key),
    ...rangeEndField(compare.rangeEnd),
  };
  if (compare.target === 'value') return { ...base, value: toBuffer(compare.value) };
  // protobufjs's fromObject reads an int64 given as decimal text exactly (Long.fromString).
  if (compare.target === 'lease') return { ...base, lease: compare.lease.toString() };
  return { ...base, [compare.target]: compare.number };
}

function encodeOperation(operation: TxnOperation): object {
  switch (operation.type) {
    case 'put':
      return { requestPut: encodePut(operation) };
    case 'range':
      return { requestRange: encodeRange(operation) };
    case 'deleteRange':
      return { requestDeleteRange: encodeDeleteRange(operation) };
  }
}

/** encodeTxn is an etcd TxnRequest. */
export function encodeTxn(request: TxnRequest): object {
  return {
    compare: request.compare.map(encodeCompare),
    success: request.success.map(encodeOperation),
    failure: request.failure.map(encodeOperation),
  };
}

// ---- KV answers ----

/** decodePut reads an etcd PutResponse. */
export function decodePut(value: unknown): WithHeader<PutResponse> {
  const response = object(value);
  const header = decodeHeader(response['header']);
  const prevKv = response['prevKv'];
  return {
    type: 'put',
    header,
    revision: header.revision,
    ...(prevKv === null || prevKv === undefined ? {} : { prevKv: decodeKeyValue(prevKv) }),
  };
}

/** decodeRange reads an etcd RangeResponse. */
export function decodeRange(value: unknown): WithHeader<RangeResponse> {
  const response = object(value);
  const header = decodeHeader(response['header']);
  const kvs = response['kvs'];
  return {
    type: 'range',
    header,
    revision: header.revision,
    kvs: Array.isArray(kvs) ? kvs.map(decodeKeyValue) : [],
    more: response['more'] === true,
    count: safeNumber('count', response['count'] ?? 0),
  };
}

/** decodeDeleteRange reads an etcd DeleteRangeResponse. */
export function decodeDeleteRange(value: unknown): WithHeader<DeleteRangeResponse> {
  const response = object(value);
  const header = decodeHeader(response['header']);
  const prevKvs = response['prevKvs'];
  return {
    type: 'deleteRange',
    header,
    revision: header.revision,
    deleted: safeNumber('deleted', response['deleted'] ?? 0),
    prevKvs: Array.isArray(prevKvs) ? prevKvs.map(decodeKeyValue) : [],
  };
}

function decodeOperationResponse(value: unknown): TxnOperationResponse {
  const response = object(value);
  if (response['responsePut'] !== undefined && response['responsePut'] !== null) return decodePut(response['responsePut']);
  if (response['responseRange'] !== undefined && response['responseRange'] !== null) return decodeRange(response['responseRange']);
  if (response['responseDeleteRange'] !== undefined && response['responseDeleteRange'] !== null) {
    return decodeDeleteRange(response['responseDeleteRange']);
  }
  throw new StrataError(ErrorCode.UNIMPLEMENTED, 'the server answered a Txn operation the client does not know (nested Txn?)');
}

/** decodeTxn reads an etcd TxnResponse. */
export function decodeTxn(value: unknown): WithHeader<TxnResponse> {
  const response = object(value);
  const header = decodeHeader(response['header']);
  const responses = response['responses'];
  return {
    type: 'txn',
    header,
    revision: header.revision,
    succeeded: response['succeeded'] === true,
    responses: Array.isArray(responses) ? responses.map(decodeOperationResponse) : [],
  };
}

// ---- Watch ----

/** WatchCreate is what a watch asks etcd for (WatchCreateRequest; the client sends no filters). */
export interface WatchCreate {
  readonly key: Uint8Array;
  /** Absent: the one key. */
  readonly rangeEnd?: Uint8Array;
  /** The first revision whose events are wanted (> 0). */
  readonly startRevision: number;
  readonly prevKv: boolean;
  /** Ask the server for its periodic progress notifications (etcd's interval, 10 min by default). */
  readonly progressNotify: boolean;
  /** Let the server split a large response into fragments (the client joins them). */
  readonly fragment: boolean;
}

/** encodeWatchCreate is the WatchRequest that creates a watch; the server picks its id. */
export function encodeWatchCreate(create: WatchCreate): object {
  return {
    createRequest: {
      key: toBuffer(create.key),
      ...rangeEndField(create.rangeEnd),
      startRevision: create.startRevision,
      progressNotify: create.progressNotify,
      filters: [],
      prevKv: create.prevKv,
      watchId: 0,
      fragment: create.fragment,
    },
  };
}

/** encodeWatchProgressRequest is the WatchRequest that asks for a progress notification. */
export function encodeWatchProgressRequest(): object {
  return { progressRequest: {} };
}

/** WatchEvent is one change a watch reports: a put or a delete of one key, at kv.modRevision. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  /**
   * The pair after a put. For a delete, the key with modRevision the delete's revision (the
   * other fields are zero and the value is empty, as etcd sends them).
   */
  readonly kv: KeyValue;
  /** The pair before the change, when the watch asked for prevKv and the key existed. */
  readonly prevKv?: KeyValue;
}

/** WatchResponseMessage is one etcd WatchResponse. */
export interface WatchResponseMessage {
  readonly header: ResponseHeader;
  /** The watch the message is about; -1 for a progress notification sent to every watch of the stream. */
  readonly watchId: number;
  readonly created: boolean;
  readonly canceled: boolean;
  /** Set when the watch was cancelled because its start revision was compacted: the compaction's revision. */
  readonly compactRevision: number;
  readonly cancelReason: string;
  /** More of the same response follows (the server split it; the last piece has fragment false). */
  readonly fragment: boolean;
  readonly events: readonly WatchEvent[];
}

function decodeEvent(value: unknown): WatchEvent {
  const event = object(value);
  const type = event['type'];
  if (type !== 'PUT' && type !== 'DELETE') {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `the server answered an event of type ${String(type)}, which the client does not know`);
  }
  const kv = event['kv'];
  if (kv === null || kv === undefined) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'the server answered an event without kv');
  const prevKv = event['prevKv'];
  return {
    type: type === 'PUT' ? 'put' : 'delete',
    kv: decodeKeyValue(kv),
    ...(prevKv === null || prevKv === undefined ? {} : { prevKv: decodeKeyValue(prevKv) }),
  };
}

/** decodeWatchResponse reads one WatchResponse, its 64-bit numbers checked to be safe integers. */
export function decodeWatchResponse(value: unknown): WatchResponseMessage {
  const response = object(value);
  const events = response['events'];
  return {
    header: decodeHeader(response['header']),
    watchId: safeNumber('watchId', response['watchId'] ?? 0),
    created: response['created'] === true,
    canceled: response['canceled'] === true,
    compactRevision: safeNumber('compactRevision', response['compactRevision'] ?? 0),
    cancelReason: String(response['cancelReason'] ?? ''),
    fragment: response['fragment'] === true,
    events: Array.isArray(events) ? events.map(decodeEvent) : [],
  };
}

// The Merkle diff's wire protocol as both ends see it (proto/stratakv/admin.proto, Diff*): the
// wire shapes @grpc/proto-loader gives with ADMIN_PROTO_LOADER_OPTIONS, the requests' checks
// (INVALID_ARGUMENT naming the field), the compact encoding of leaf keys, and the bounds both
// ends agree on. src/server serves it (through DiffServer) and src/client calls it; neither
// may import the other, so what they share is here.

import type { Options } from '@grpc/proto-loader';

import { DIGEST_BYTES, FANOUT, LEAF_COUNT, LEASE_ID_MAX, TREE_DEPTH } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { PinAt } from './digest-pins.ts';
import { ADMIN_PROTO_LOADER_OPTIONS } from './log-delta-protocol.ts';
import type { DiffValue, DigestHash, LeafKeyHash } from './merkle-diff.ts';
import { LEAVES_PER_REQUEST_MAX, PARENTS_PER_REQUEST_MAX, VALUE_BYTES_MAX, VALUE_KEYS_PER_REQUEST_MAX } from './merkle-diff.ts';
import type { KeyRange } from './view-tree.ts';

/** DIFF_METHODS are the diff's method names in the Admin service. */
export const DIFF_METHODS = ['DiffHello', 'DiffPin', 'DiffOpen', 'DiffNodes', 'DiffLeafKeys', 'DiffValues', 'DiffRelease'] as const;
/** DiffMethod is one of DIFF_METHODS. */
export type DiffMethod = (typeof DIFF_METHODS)[number];

/**
 * DIFF_VALUES_LOADER_OPTIONS are ADMIN_PROTO_LOADER_OPTIONS with 64-bit integers as decimal
 * text: the diff client decodes DiffValues answers with them, so that a key's lease id (etcd's
 * are int64 beyond 2^53, where longs: Number rounds) arrives exactly (fromWireValue).
 */
export const DIFF_VALUES_LOADER_OPTIONS: Options = { ...ADMIN_PROTO_LOADER_OPTIONS, longs: String };

/** DIFF_TIMEOUT_MS_DEFAULT is how long a member waits for a checkpoint it has not applied (timeout_ms 0). */
export const DIFF_TIMEOUT_MS_DEFAULT = 10_000;
/** DIFF_TIMEOUT_MS_MAX bounds timeout_ms. */
export const DIFF_TIMEOUT_MS_MAX = 60_000;
/** PIN_ID_BYTES_MAX bounds a pin id. */
export const PIN_ID_BYTES_MAX = 64;
/** RANGE_KEY_BYTES_MAX bounds a tree's range key and range end (etcd's largest request). */
export const RANGE_KEY_BYTES_MAX = 1536 * 1024;
/** OPEN_PROGRESS_KEYS: a range read reports its progress every this many keys. */
export const OPEN_PROGRESS_KEYS = 10_000;

/** Wire enum values (admin.proto). */
export const WirePinAt = { APPLIED: 1, CHECKPOINT: 2 } as const;
export const WireDigestHash = { FULL: 1, CONTENT: 2 } as const;

/** TreeName names one tree on a member: a pinned view, the hash compared, the range (whole state when absent). */
export interface TreeName {
  readonly pinId: string;
  readonly hash: DigestHash;
  readonly range?: KeyRange;
}

/** WireTree is DiffTree as proto-loader gives it. */
export interface WireTree {
  readonly pin_id?: string;
  readonly hash?: number;
  readonly key?: Uint8Array;
  readonly range_end?: Uint8Array;
}

export interface WireHelloResponse {
  readonly cluster_id: number;
  readonly member_id: number;
}
export interface WirePinRequest {
  readonly at?: number;
  readonly timeout_ms?: number;
}
export interface WirePinResponse {
  readonly pin_id: string;
  readonly index: number;
  readonly revision: number;
}
export interface WireOpenRequest {
  readonly tree?: WireTree | null;
  readonly timeout_ms?: number;
}
export interface WireOpenProgress {
  readonly keys_read: number;
  readonly done: boolean;
  readonly index: number;
  readonly revision: number;
  readonly key_count: number;
  readonly root: Uint8Array;
}
export interface WireNodesRequest {
  readonly tree?: WireTree | null;
  readonly level?: number;
  readonly parents?: readonly number[];
}
export interface WireNodesResponse {
  readonly sums: Uint8Array;
}
export interface WireLeafKeysRequest {
  readonly tree?: WireTree | null;
  readonly leaves?: readonly number[];
}
export interface WireLeafKeysResponse {
  readonly leaves_answered: number;
  readonly keys: Uint8Array;
}
export interface WireValuesRequest {
  readonly pin_id?: string;
  readonly keys?: readonly Uint8Array[];
  readonly value_bytes_max?: number;
}
/**
 * WireValue is DiffValue. The server sends its integers as numbers and the lease as a bigint
 * (protobufjs writes one exactly); the diff client decodes DiffValues with 64-bit integers as
 * decimal text (DIFF_VALUES_LOADER_OPTIONS), so that a lease id beyond 2^53 arrives exactly.
 */
export interface WireValue {
  readonly found: boolean;
  readonly value: Uint8Array;
  readonly value_bytes: number | string;
  readonly create_revision: number | string;
  readonly mod_revision: number | string;
  readonly version: number | string;
  readonly lease: bigint | string;
}
export interface WireValuesResponse {
  readonly values: readonly WireValue[];
}
export interface WireReleaseRequest {
  readonly pin_id?: string;
}

/** toWireTree is a tree's name as it goes on the wire. */
export function toWireTree(name: TreeName): WireTree {
  return {
    pin_id: name.pinId,
    hash: name.hash === 'full' ? WireDigestHash.FULL : WireDigestHash.CONTENT,
    ...(name.range === undefined ? {} : { key: name.range.key, range_end: name.range.rangeEnd }),
  };
}

/** parsePinAt checks DiffPinRequest.at. */
export function parsePinAt(at: number | undefined): PinAt {
  if (at === WirePinAt.APPLIED) return 'applied';
  if (at === WirePinAt.CHECKPOINT) return 'checkpoint';
  throw invalid('at', `must be PIN_AT_APPLIED or PIN_AT_CHECKPOINT, got ${String(at)}`);
}

/** parseTimeoutMs checks a timeout_ms (0: the default). */
export function parseTimeoutMs(timeoutMs: number | undefined): number {
  const value = timeoutMs ?? 0;
  if (!Number.isSafeInteger(value) || value < 0 || value > DIFF_TIMEOUT_MS_MAX) throw invalid('timeout_ms', `must be 0 (${DIFF_TIMEOUT_MS_DEFAULT} ms) to ${DIFF_TIMEOUT_MS_MAX}, got ${String(value)}`);
  return value === 0 ? DIFF_TIMEOUT_MS_DEFAULT : value;
}

/** parsePinId checks a pin id. */
export function parsePinId(pinId: string | undefined, field = 'pin_id'): string {
  if (pinId === undefined || pinId === '' || Buffer.byteLength(pinId) > PIN_ID_BYTES_MAX) throw invalid(field, `must name a pin (1 to ${PIN_ID_BYTES_MAX} bytes), got ${JSON.stringify(pinId ?? '')}`);
  return pinId;
}

/** parseTree checks a DiffTree. */
export function parseTree(wire: WireTree | null | undefined): TreeName {
  if (wire === undefined || wire === null) throw invalid('tree', 'is required');
  const pinId = parsePinId(wire.pin_id, 'tree.pin_id');
  let hash: DigestHash;
  if (wire.hash === WireDigestHash.FULL) hash = 'full';
  else if (wire.hash === WireDigestHash.CONTENT) hash = 'content';
  else throw invalid('tree.hash', `must be HASH_FULL or HASH_CONTENT, got ${String(wire.hash)}`);
  const key = wire.key ?? new Uint8Array(0);
  const rangeEnd = wire.range_end ?? new Uint8Array(0);
  if (key.byteLength > RANGE_KEY_BYTES_MAX) throw invalid('tree.key', `is over ${RANGE_KEY_BYTES_MAX} bytes`);
  if (rangeEnd.byteLength > RANGE_KEY_BYTES_MAX) throw invalid('tree.range_end', `is over ${RANGE_KEY_BYTES_MAX} bytes`);
  if (key.byteLength === 0) {
    if (rangeEnd.byteLength > 0) throw invalid('tree.range_end', 'must be empty when key is (the whole state)');
    return { pinId, hash };
  }
  return { pinId, hash, range: { key, rangeEnd } };
}

/** parseNodesRequest checks a DiffNodesRequest. */
export function parseNodesRequest(wire: WireNodesRequest): { tree: TreeName; level: number; parents: readonly number[] } {
  const tree = parseTree(wire.tree);
  const level = wire.level ?? 0;
  if (!Number.isInteger(level) || level < 1 || level > TREE_DEPTH) throw invalid('level', `must be 1 to ${TREE_DEPTH}, got ${String(level)}`);
  const parents = wire.parents ?? [];
  if (parents.length < 1 || parents.length > PARENTS_PER_REQUEST_MAX) throw invalid('parents', `must name 1 to ${PARENTS_PER_REQUEST_MAX} nodes, got ${parents.length}`);
  const width = FANOUT ** (level - 1);
  for (const parent of parents) if (!Number.isInteger(parent) || parent < 0 || parent >= width) throw invalid('parents', `${String(parent)} is not a node of level ${level - 1} (0 to ${width - 1})`);
  return { tree, level, parents };
}

/** parseLeafKeysRequest checks a DiffLeafKeysRequest. */
export function parseLeafKeysRequest(wire: WireLeafKeysRequest): { tree: TreeName; leaves: readonly number[] } {
  const tree = parseTree(wire.tree);
  const leaves = wire.leaves ?? [];
  if (leaves.length < 1 || leaves.length > LEAVES_PER_REQUEST_MAX) throw invalid('leaves', `must name 1 to ${LEAVES_PER_REQUEST_MAX} leaves, got ${leaves.length}`);
  for (const leaf of leaves) if (!Number.isInteger(leaf) || leaf < 0 || leaf >= LEAF_COUNT) throw invalid('leaves', `${String(leaf)} is not a leaf (0 to ${LEAF_COUNT - 1})`);
  return { tree, leaves };
}

/** parseValuesRequest checks a DiffValuesRequest. */
export function parseValuesRequest(wire: WireValuesRequest): { pinId: string; keys: readonly Uint8Array[]; valueBytesMax: number } {
  const pinId = parsePinId(wire.pin_id);
  const keys = wire.keys ?? [];
  if (keys.length < 1 || keys.length > VALUE_KEYS_PER_REQUEST_MAX) throw invalid('keys', `must name 1 to ${VALUE_KEYS_PER_REQUEST_MAX} keys, got ${keys.length}`);
  const valueBytesMax = wire.value_bytes_max ?? 0;
  if (!Number.isSafeInteger(valueBytesMax) || valueBytesMax < 0 || valueBytesMax > VALUE_BYTES_MAX) throw invalid('value_bytes_max', `must be 0 to ${VALUE_BYTES_MAX}, got ${String(valueBytesMax)}`);
  return { pinId, keys, valueBytesMax };
}

/** toWireValue is a value (or its absence) as it goes on the wire. */
export function toWireValue(value: DiffValue | undefined): WireValue {
  if (value === undefined) return { found: false, value: new Uint8Array(0), value_bytes: 0, create_revision: 0, mod_revision: 0, version: 0, lease: 0n };
  return { found: true, value: value.value, value_bytes: value.valueBytes, create_revision: value.createRevision, mod_revision: value.modRevision, version: value.version, lease: value.lease };
}

/**
 * fromWireValue reads a value answered for `key` (its integers as numbers or decimal text);
 * an integer that is not one (or not a safe integer, the lease aside) is CORRUPTION.
 */
export function fromWireValue(key: Uint8Array, wire: WireValue, source = 'diff'): DiffValue | undefined {
  if (!wire.found) return undefined;
  return {
    key,
    value: wire.value ?? new Uint8Array(0),
    valueBytes: wireInteger(source, 'value_bytes', wire.value_bytes),
    createRevision: wireInteger(source, 'create_revision', wire.create_revision),
    modRevision: wireInteger(source, 'mod_revision', wire.mod_revision),
    version: wireInteger(source, 'version', wire.version),
    lease: wireLease(source, wire.lease),
  };
}

// wireInteger reads a safe integer >= 0 given as a number or as decimal text.
function wireInteger(source: string, field: string, text: number | string): number {
  const value = typeof text === 'number' ? text : /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 0) throw badValue(source, field, text);
  return value;
}

// wireLease reads a lease id (an int64 from 0 to LEASE_ID_MAX) exactly, from a bigint or decimal text.
function wireLease(source: string, text: bigint | string): bigint {
  const value = typeof text === 'bigint' ? text : /^[0-9]{1,19}$/.test(text) ? BigInt(text) : -1n;
  if (value < 0n || value > LEASE_ID_MAX) throw badValue(source, 'lease', text);
  return value;
}

function badValue(source: string, field: string, text: unknown): StrataError {
  return new StrataError(ErrorCode.CORRUPTION, `${source}: a value's ${field} is ${String(text)}, not an integer this diff reads`, { details: { field } });
}

/** encodeLeafKeys lays out the keys of consecutive leaves: per leaf varint count, per key varint length | key | hash. */
export function encodeLeafKeys(lists: readonly (readonly LeafKeyHash[])[]): Uint8Array {
  let bytes = 0;
  for (const list of lists) {
    bytes += varintBytes(list.length);
    for (const item of list) bytes += varintBytes(item.key.byteLength) + item.key.byteLength + DIGEST_BYTES;
  }
  const out = new Uint8Array(bytes);
  let offset = 0;
  for (const list of lists) {
    offset = writeVarint(out, offset, list.length);
    for (const item of list) {
      assert(item.hash.byteLength === DIGEST_BYTES, 'a key hash is 16 bytes');
      offset = writeVarint(out, offset, item.key.byteLength);
      out.set(item.key, offset);
      offset += item.key.byteLength;
      out.set(item.hash, offset);
      offset += DIGEST_BYTES;
    }
  }
  assert(offset === bytes, 'leaf keys encoded to their computed size');
  return out;
}

/**
 * decodeLeafKeys reads `leaves` leaves' keys (encodeLeafKeys's layout); bytes that do not
 * hold exactly that are CORRUPTION naming `where`. The keys and hashes are views of `bytes`.
 */
export function decodeLeafKeys(bytes: Uint8Array, leaves: number, where: string): LeafKeyHash[][] {
  const lists: LeafKeyHash[][] = [];
  let offset = 0;
  const corrupt = (why: string): StrataError => new StrataError(ErrorCode.CORRUPTION, `${where}: leaf keys ${why}`, { details: { offset } });
  for (let leaf = 0; leaf < leaves; leaf += 1) {
    const count = readVarint(bytes, offset);
    if (count === undefined) throw corrupt('end inside a count');
    offset = count.next;
    const list: LeafKeyHash[] = [];
    for (let index = 0; index < count.value; index += 1) {
      const length = readVarint(bytes, offset);
      if (length === undefined) throw corrupt('end inside a key length');
      offset = length.next;
      if (offset + length.value + DIGEST_BYTES > bytes.byteLength) throw corrupt('end inside a key');
      const key = bytes.subarray(offset, offset + length.value);
      offset += length.value;
      list.push({ key, hash: bytes.subarray(offset, offset + DIGEST_BYTES) });
      offset += DIGEST_BYTES;
    }
    lists.push(list);
  }
  if (offset !== bytes.byteLength) throw corrupt(`carry ${bytes.byteLength - offset} bytes after the last leaf`);
  return lists;
}

function varintBytes(value: number): number {
  let bytes = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) bytes += 1;
  return bytes;
}

function writeVarint(out: Uint8Array, offset: number, value: number): number {
  assert(Number.isSafeInteger(value) && value >= 0, 'a varint is a non-negative safe integer');
  let rest = value;
  let at = offset;
  while (rest >= 0x80) {
    out[at++] = (rest % 0x80) | 0x80;
    rest = Math.floor(rest / 0x80);
  }
  out[at++] = rest;
  return at;
}

// readVarint reads a varint of at most 7 bytes (49 bits) at `offset`, or undefined at the end.
function readVarint(bytes: Uint8Array, offset: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let at = offset; at < bytes.byteLength && at < offset + 7; at += 1) {
    const byte = bytes[at] as number;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return { value, next: at + 1 };
    scale *= 0x80;
  }
  return undefined;
}

function invalid(field: string, why: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, `diff: ${field} ${why}`, { details: { field } });
}

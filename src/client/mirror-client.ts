// MirrorClient: the Admin service's mirror-mode methods (proto/stratakv/admin.proto, "Mirror*")
// for the cross-cluster copier (src/migrate/copy) and for embedders. Any member answers both
// (a follower passes a MirrorWrite to its leader, and reads the state through a read index),
// so calls go through the endpoint list as EtcdClient's do: from the endpoint that answered
// last, passing over one that cannot answer (AdminCalls.callFirst), within one deadline.
//
// Every write is a compare-and-set on the mirror state, and that is what makes it safe to send
// again after a failure that leaves its outcome unknown (TIMEOUT, UNAVAILABLE, a member killed
// with it in flight; callFirst itself sends it to the next endpoint after such a failure): it
// applies at most once, and a second send of a write that landed is refused MIRROR_CONFLICT.
// So a caller that gets TIMEOUT, UNAVAILABLE or any unknown failure, or MIRROR_CONFLICT after
// sending a write more than once (by itself or through callFirst), must `read()` and compare:
// the state it wrote (none, after `end`) means the write landed; the state it expected means
// it did not (send it again); any other state means someone else writes the mirror.
//
// The size a batch may reach: the member checks the encoded command against its
// --max-request-bytes (1.5 MiB by default: MIRROR_REQUEST_BYTES_MAX_DEFAULT), refusing more
// with REQUEST_TOO_LARGE. mirrorRequestBytes is that encoded size exactly, and mirrorPutBytes /
// mirrorDeleteBytes what each put and delete adds, so that a copier can cut its batches as
// it fills them. The wire message itself is never the larger of the two (puts are packed with
// varints where the command has fixed-width integers; see encodePackedPuts).

import type { MirrorPut, MirrorRequest } from '../storage/index.ts';
import { DEFAULT_KV_LIMITS, LEASE_ID_MAX, MIRROR_STATE_BYTES_MAX } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { AdminCalls } from './admin-calls.ts';
import { EndpointPicker } from './endpoint-picker.ts';

/** MIRROR_CALL_TIMEOUT_MS_DEFAULT is a mirror call's deadline when none is given. */
export const MIRROR_CALL_TIMEOUT_MS_DEFAULT = 10_000;
/** MIRROR_REQUEST_BYTES_MAX_DEFAULT is a member's default --max-request-bytes: the largest mirrorRequestBytes it takes. */
export const MIRROR_REQUEST_BYTES_MAX_DEFAULT = DEFAULT_KV_LIMITS.requestBytesMax;

// The command's layout (src/storage/kv-command-codec.ts): u8 format | u64 id | u8 kind | fields,
// byte strings as u32 length + bytes, integers as u64.
const COMMAND_HEADER_BYTES = 1 + 8 + 1;
const BYTES_PREFIX = 4;
const U64 = 8;
/** MIRROR_PUT_OVERHEAD_BYTES is what a put adds to a mirrorApply beyond its key and value (two lengths, four counters). */
export const MIRROR_PUT_OVERHEAD_BYTES = 2 * BYTES_PREFIX + 4 * U64;
/** MIRROR_DELETE_OVERHEAD_BYTES is what a delete adds beyond its key. */
export const MIRROR_DELETE_OVERHEAD_BYTES = BYTES_PREFIX;
/** MIRROR_APPLY_OVERHEAD_BYTES is a mirrorApply's size without puts, deletes and states: header, two state lengths, revision, two counts. */
export const MIRROR_APPLY_OVERHEAD_BYTES = COMMAND_HEADER_BYTES + 2 * BYTES_PREFIX + U64 + 2 * 4;

/** MirrorHeader says who answered a mirror call: the cluster, the member and its term. */
export interface MirrorHeader {
  readonly clusterId: number;
  readonly memberId: number;
  readonly raftTerm: number;
  /** The endpoint that answered. */
  readonly endpoint: string;
}

/** MirrorView is the mirror state (undefined: not a mirror) with the revision it goes with, and who answered. */
export interface MirrorView {
  readonly state: Uint8Array | undefined;
  readonly revision: number;
  readonly header: MirrorHeader;
}

/** MirrorAnswer answers a mirror write: the request's type, the state and revision after it, and who answered. */
export interface MirrorAnswer extends MirrorView {
  readonly type: MirrorRequest['type'];
}

/** MirrorCallOptions bound one call. */
export interface MirrorCallOptions {
  /** The call's deadline across every endpoint tried (default MIRROR_CALL_TIMEOUT_MS_DEFAULT). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal | undefined;
}

/** MirrorClientOptions configure a MirrorClient. */
export interface MirrorClientOptions {
  /** The target cluster's client endpoints, host:port or http://host:port. */
  readonly endpoints: readonly string[];
  /** The default deadline of a call (MIRROR_CALL_TIMEOUT_MS_DEFAULT). */
  readonly timeoutMs?: number;
}

/** MirrorApplyBatch is a mirrorApply's content (kv-types.ts's MirrorRequest). */
export interface MirrorApplyBatch {
  readonly expectState: Uint8Array;
  readonly state: Uint8Array;
  readonly revision: number;
  readonly puts: readonly MirrorPut[];
  readonly deletes: readonly Uint8Array[];
}

interface WireMirrorResponse {
  header: { cluster_id: number; member_id: number; revision: number; raft_term: number } | null;
  has_state: boolean;
  state: Uint8Array;
}

const METHODS = ['MirrorRead', 'MirrorWrite'] as const;

/** MirrorClient calls the mirror-mode methods (see the file comment). */
export class MirrorClient {
  readonly #calls = new AdminCalls(METHODS);
  readonly #picker: EndpointPicker;
  readonly #timeoutMs: number;

  constructor(options: MirrorClientOptions) {
    this.#picker = new EndpointPicker(options.endpoints);
    this.#timeoutMs = options.timeoutMs ?? MIRROR_CALL_TIMEOUT_MS_DEFAULT;
    if (!Number.isSafeInteger(this.#timeoutMs) || this.#timeoutMs <= 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `timeoutMs must be a positive integer, got ${this.#timeoutMs}`, { details: { field: 'timeoutMs' } });
    }
  }

  /** endpoints are the endpoints tried, normalized to host:port. */
  get endpoints(): readonly string[] {
    return this.#picker.endpoints;
  }

  /** setEndpoints replaces the endpoints (the target's members changed). */
  setEndpoints(endpoints: readonly string[]): void {
    this.#picker.setEndpoints(endpoints);
  }

  /** read reads the mirror state and the revision it goes with, linearizably. */
  async read(options: MirrorCallOptions = {}): Promise<MirrorView> {
    const { value, endpoint } = await this.#calls.callFirst<WireMirrorResponse>(this.#picker, 'MirrorRead', (timeoutMs) => ({ timeout_ms: timeoutMs }), this.#callOptions(options));
    return fromWire(value, endpoint);
  }

  /**
   * begin makes the cluster a mirror holding `state`: refused with MIRROR_CONFLICT when it is a
   * mirror already, when `requireEmpty` and it holds a key or has been written, or when
   * `requireRevision` is given and differs from its revision.
   */
  begin(state: Uint8Array, conditions: { readonly requireEmpty: boolean; readonly requireRevision?: number | undefined }, options: MirrorCallOptions = {}): Promise<MirrorAnswer> {
    const { requireEmpty, requireRevision } = conditions;
    return this.write({ type: 'mirrorBegin', state, requireEmpty, ...(requireRevision !== undefined ? { requireRevision } : {}) }, options);
  }

  /**
   * apply deletes `deletes`, sets `puts` exactly and moves the revision to `revision`, storing
   * `state`, in one step, if the mirror state is `expectState` (else MIRROR_CONFLICT).
   */
  apply(batch: MirrorApplyBatch, options: MirrorCallOptions = {}): Promise<MirrorAnswer> {
    return this.write({ type: 'mirrorApply', ...batch }, options);
  }

  /** end drops the mirror state if it is `expectState` (else MIRROR_CONFLICT): the cluster takes writes again. */
  end(expectState: Uint8Array, options: MirrorCallOptions = {}): Promise<MirrorAnswer> {
    return this.write({ type: 'mirrorEnd', expectState }, options);
  }

  /** write runs any mirror request (begin, apply and end are written with it). */
  async write(request: MirrorRequest, options: MirrorCallOptions = {}): Promise<MirrorAnswer> {
    const command = toWireCommand(request);
    const { value, endpoint } = await this.#calls.callFirst<WireMirrorResponse>(this.#picker, 'MirrorWrite', (timeoutMs) => ({ ...command, timeout_ms: timeoutMs }), this.#callOptions(options));
    return { type: request.type, ...fromWire(value, endpoint) };
  }

  /** close closes the connections. */
  close(): void {
    this.#calls.close();
  }

  #callOptions(options: MirrorCallOptions): { timeoutMs: number; signal: AbortSignal | undefined } {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `timeoutMs must be a positive integer, got ${timeoutMs}`, { details: { field: 'timeoutMs' } });
    return { timeoutMs, signal: options.signal };
  }
}

/**
 * mirrorRequestBytes is the size of `request` as the member encodes it for its log (what it
 * checks against --max-request-bytes), computed without encoding it.
 */
export function mirrorRequestBytes(request: MirrorRequest): number {
  switch (request.type) {
    case 'mirrorBegin':
      return COMMAND_HEADER_BYTES + 1 + BYTES_PREFIX + request.state.byteLength + (request.requireRevision === undefined ? 0 : U64);
    case 'mirrorApply': {
      let bytes = MIRROR_APPLY_OVERHEAD_BYTES + request.expectState.byteLength + request.state.byteLength;
      for (const put of request.puts) bytes += mirrorPutBytes(put);
      for (const key of request.deletes) bytes += mirrorDeleteBytes(key);
      return bytes;
    }
    case 'mirrorEnd':
      return COMMAND_HEADER_BYTES + BYTES_PREFIX + request.expectState.byteLength;
  }
}

/** mirrorPutBytes is what one put adds to mirrorRequestBytes. */
export function mirrorPutBytes(put: Pick<MirrorPut, 'key' | 'value'>): number {
  return MIRROR_PUT_OVERHEAD_BYTES + put.key.byteLength + put.value.byteLength;
}

/** mirrorDeleteBytes is what one delete adds to mirrorRequestBytes. */
export function mirrorDeleteBytes(key: Uint8Array): number {
  return MIRROR_DELETE_OVERHEAD_BYTES + key.byteLength;
}

/**
 * encodePackedPuts lays puts out as MirrorApply.puts (admin.proto): per put, varint key length,
 * key, varint value length, value, then create_revision, mod_revision, version and lease as
 * varints. The three counters must be safe integers >= 0, the lease id a bigint from 0 to
 * LEASE_ID_MAX, written exactly as a u64 varint (INVALID_ARGUMENT naming the put otherwise).
 */
export function encodePackedPuts(puts: readonly MirrorPut[]): Uint8Array {
  let size = 0;
  puts.forEach((put, index) => {
    for (const [name, value] of [['createRevision', put.createRevision], ['modRevision', put.modRevision], ['version', put.version]] as const) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `puts[${index}].${name} must be an integer from 0 to 2^53 - 1, got ${value}`, { details: { field: `puts[${index}].${name}` } });
      }
    }
    if (typeof put.lease !== 'bigint' || put.lease < 0n || put.lease > LEASE_ID_MAX) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `puts[${index}].lease must be a bigint from 0 to 2^63 - 1, got ${String(put.lease)}`, { details: { field: `puts[${index}].lease` } });
    }
    size += varintBytes(put.key.byteLength) + put.key.byteLength + varintBytes(put.value.byteLength) + put.value.byteLength;
    size += varintBytes(put.createRevision) + varintBytes(put.modRevision) + varintBytes(put.version) + leaseVarintBytes(put.lease);
  });
  const bytes = new Uint8Array(size);
  let offset = 0;
  const varint = (value: number): void => {
    let rest = value;
    while (rest >= 0x80) {
      bytes[offset] = (rest % 0x80) | 0x80;
      offset += 1;
      rest = Math.floor(rest / 0x80);
    }
    bytes[offset] = rest;
    offset += 1;
  };
  const leaseVarint = (value: bigint): void => {
    let rest = value;
    while (rest >= 0x80n) {
      bytes[offset] = Number(rest & 0x7fn) | 0x80;
      offset += 1;
      rest >>= 7n;
    }
    bytes[offset] = Number(rest);
    offset += 1;
  };
  for (const put of puts) {
    varint(put.key.byteLength);
    bytes.set(put.key, offset);
    offset += put.key.byteLength;
    varint(put.value.byteLength);
    bytes.set(put.value, offset);
    offset += put.value.byteLength;
    varint(put.createRevision);
    varint(put.modRevision);
    varint(put.version);
    leaseVarint(put.lease);
  }
  assert(offset === size, 'encodePackedPuts sized its buffer exactly');
  return bytes;
}

// varintBytes is how many bytes a protobuf varint of `value` (a safe integer >= 0) takes.
function varintBytes(value: number): number {
  let bytes = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) bytes += 1;
  return bytes;
}

// leaseVarintBytes is how many bytes a protobuf varint of a lease id (a u64 bigint) takes.
function leaseVarintBytes(value: bigint): number {
  let bytes = 1;
  for (let rest = value; rest >= 0x80n; rest >>= 7n) bytes += 1;
  return bytes;
}

// toWireCommand is a MirrorWriteRequest's command (its oneof member).
function toWireCommand(request: MirrorRequest): object {
  switch (request.type) {
    case 'mirrorBegin':
      checkState('state', request.state);
      return { begin: { state: request.state, require_empty: request.requireEmpty, require_revision: request.requireRevision ?? 0 } };
    case 'mirrorApply':
      checkState('expectState', request.expectState);
      checkState('state', request.state);
      return {
        apply: {
          expect_state: request.expectState,
          state: request.state,
          revision: request.revision,
          puts: encodePackedPuts(request.puts),
          put_count: request.puts.length,
          deletes: [...request.deletes],
        },
      };
    case 'mirrorEnd':
      checkState('expectState', request.expectState);
      return { end: { expect_state: request.expectState } };
  }
}

// checkState refuses a state the member would refuse, before it travels.
function checkState(field: string, state: Uint8Array): void {
  if (state.byteLength > MIRROR_STATE_BYTES_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${field}: a mirror state is at most ${MIRROR_STATE_BYTES_MAX} bytes, got ${state.byteLength}`, { details: { field } });
  }
}

function fromWire(wire: WireMirrorResponse, endpoint: string): MirrorView {
  const header = wire.header ?? { cluster_id: 0, member_id: 0, revision: 0, raft_term: 0 };
  return {
    state: wire.has_state ? new Uint8Array(wire.state) : undefined,
    revision: header.revision,
    header: { clusterId: header.cluster_id, memberId: header.member_id, raftTerm: header.raft_term, endpoint },
  };
}

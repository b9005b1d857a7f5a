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
// mirrorDeleteBytes / mirrorReplayCommandBytes what each put, delete and replayed command
// adds, so that a copier can cut its batches as it fills them. The wire message itself is never
// the larger of the two (puts and commands are packed with varint lengths where the command
// has fixed-width ones; see src/storage's mirror-packing.ts).
//
// A copy from a stratakv source reads a view pinned on one source member: `pin`, `scan` and
// `release` are bound to that member's endpoint (a pin lives on its member; no failover).

import type { WirePinResponse } from '../diff/index.ts';
import { DIFF_TIMEOUT_MS_MAX, WirePinAt } from '../diff/index.ts';
import type { MirrorPut, MirrorRequest } from '../storage/index.ts';
import { DEFAULT_KV_LIMITS, DIGEST_VIEW_RANGE_LIMIT_MAX, decodePackedPuts, encodePackedCommands, encodePackedPuts, MIRROR_STATE_BYTES_MAX } from '../storage/index.ts';
import { ErrorCode, isStrataError, StrataError } from '../util/errors.ts';
import { ADMIN_DEADLINE_GRACE_MS, AdminCalls } from './admin-calls.ts';
import { EndpointPicker, normalizeEndpoint } from './endpoint-picker.ts';

// The packed layout of puts is src/storage's, shared with src/server (which decodes it).
export { encodePackedPuts } from '../storage/index.ts';

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
/** MIRROR_REPLAY_OVERHEAD_BYTES is a mirrorReplay's size without commands and states: header, two state lengths, the count. */
export const MIRROR_REPLAY_OVERHEAD_BYTES = COMMAND_HEADER_BYTES + 2 * BYTES_PREFIX + 4;
/** MIRROR_REPLAY_COMMAND_OVERHEAD_BYTES is what a replayed command adds beyond its bytes (its length). */
export const MIRROR_REPLAY_COMMAND_OVERHEAD_BYTES = BYTES_PREFIX;

/** MirrorHeader says who answered a mirror call: the cluster, the member and its term. */
export interface MirrorHeader {
  readonly clusterId: number;
  readonly memberId: number;
  readonly raftTerm: number;
  /** The endpoint that answered. */
  readonly endpoint: string;
}

/** MirrorView is the mirror state (undefined: not a mirror) with the revision and Raft index it goes with, and who answered. */
export interface MirrorView {
  readonly state: Uint8Array | undefined;
  readonly revision: number;
  /**
   * The Raft index the state and revision go with: for `read`, the answering member's applied
   * index when it served the read; for a write, the index of the entry that applied it (the
   * same on every member of the cluster). 0 from a member that predates the field.
   */
  readonly index: number;
  readonly header: MirrorHeader;
}

/** MirrorAnswer answers a mirror write: the request's type, the state, revision and index after it, and who answered. */
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

/** MirrorReplayBatch is a mirrorReplay's content: a stratakv source's KV commands (entries' data), in log order. */
export interface MirrorReplayBatch {
  readonly expectState: Uint8Array;
  readonly state: Uint8Array;
  readonly commands: readonly Uint8Array[];
}

/** PinnedMirrorView is a view pinned on one member (Admin.DiffPin at its applied state): its id, applied index and revision. */
export interface PinnedMirrorView {
  readonly pinId: string;
  readonly index: number;
  readonly revision: number;
}

/** MirrorScanOptions say which page of a pinned view `scan` reads. */
export interface MirrorScanOptions extends MirrorCallOptions {
  readonly pinId: string;
  /** The range, by etcd's rules (an empty key with rangeEnd "\0": every key). */
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
  /** The most keys (1..DIGEST_VIEW_RANGE_LIMIT_MAX; default: the member's, 1,000). */
  readonly limit?: number;
}

/** MirrorScanPage is one page of a pinned view: the keys with every counter and the lease, as a mirrorApply takes them. */
export interface MirrorScanPage {
  readonly puts: MirrorPut[];
  /** Keys of the range follow the last one (scan again from its key + "\0"). */
  readonly more: boolean;
  /** The pinned view's revision and applied index. */
  readonly revision: number;
  readonly index: number;
  readonly header: MirrorHeader;
}

interface WireHeader {
  cluster_id: number;
  member_id: number;
  revision: number;
  raft_term: number;
  index: number;
}

interface WireMirrorResponse {
  header: WireHeader | null;
  has_state: boolean;
  state: Uint8Array;
}

interface WireMirrorScanResponse {
  header: WireHeader | null;
  puts: Uint8Array;
  put_count: number;
  more: boolean;
}

const METHODS = ['MirrorRead', 'MirrorWrite', 'MirrorScan', 'DiffPin', 'DiffRelease'] as const;
const EMPTY_HEADER: WireHeader = { cluster_id: 0, member_id: 0, revision: 0, raft_term: 0, index: 0 };

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

  /** read reads the mirror state and the revision and applied index it goes with, linearizably. */
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

  /**
   * replay applies a stratakv source's commands as the source applied them, storing `state`,
   * in one step, if the mirror state is `expectState` (else MIRROR_CONFLICT); see admin.proto's
   * MirrorWrite. The target's limits must be at least the source's.
   */
  replay(batch: MirrorReplayBatch, options: MirrorCallOptions = {}): Promise<MirrorAnswer> {
    return this.write({ type: 'mirrorReplay', ...batch }, options);
  }

  /** end drops the mirror state if it is `expectState` (else MIRROR_CONFLICT): the cluster takes writes again. */
  end(expectState: Uint8Array, options: MirrorCallOptions = {}): Promise<MirrorAnswer> {
    return this.write({ type: 'mirrorEnd', expectState }, options);
  }

  /** write runs any mirror request (begin, apply, replay and end are written with it). */
  async write(request: MirrorRequest, options: MirrorCallOptions = {}): Promise<MirrorAnswer> {
    const command = toWireCommand(request);
    const { value, endpoint } = await this.#calls.callFirst<WireMirrorResponse>(this.#picker, 'MirrorWrite', (timeoutMs) => ({ ...command, timeout_ms: timeoutMs }), this.#callOptions(options));
    return { type: request.type, ...fromWire(value, endpoint) };
  }

  /**
   * pin pins a view of the applied state of the member at `endpoint` (Admin.DiffPin at
   * PIN_AT_APPLIED), for `scan`. The pin lives on that member only; release it with `release`
   * (an unused pin expires after five minutes; a member holds only a few: UNAVAILABLE beyond).
   */
  async pin(endpoint: string, options: MirrorCallOptions = {}): Promise<PinnedMirrorView> {
    const { timeoutMs, signal } = this.#callOptions(options);
    const target = normalizeEndpoint(endpoint);
    const answer = await this.#calls.call<WirePinResponse>(target, 'DiffPin', { at: WirePinAt.APPLIED, timeout_ms: Math.min(timeoutMs, DIFF_TIMEOUT_MS_MAX) }, timeoutMs + ADMIN_DEADLINE_GRACE_MS, signal);
    return { pinId: answer.pin_id, index: Number(answer.index), revision: Number(answer.revision) };
  }

  /**
   * scan reads a page of the view pinned as `pinId` on the member at `endpoint` (Admin.MirrorScan):
   * the keys of the range in order with every counter and the lease, at the view's index. A
   * pin that is gone is INVALID_ARGUMENT with details.field `pin_id`. A page that does not
   * decode is CORRUPTION.
   */
  async scan(endpoint: string, options: MirrorScanOptions): Promise<MirrorScanPage> {
    const limit = options.limit ?? 0;
    if (!Number.isSafeInteger(limit) || limit < 0 || limit > DIGEST_VIEW_RANGE_LIMIT_MAX) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `limit must be an integer from 1 to ${DIGEST_VIEW_RANGE_LIMIT_MAX}, got ${limit}`, { details: { field: 'limit' } });
    }
    const { timeoutMs, signal } = this.#callOptions(options);
    const target = normalizeEndpoint(endpoint);
    const request = { pin_id: options.pinId, key: options.key, range_end: options.rangeEnd, limit, timeout_ms: Math.min(timeoutMs, DIFF_TIMEOUT_MS_MAX) };
    const answer = await this.#calls.call<WireMirrorScanResponse>(target, 'MirrorScan', request, timeoutMs + ADMIN_DEADLINE_GRACE_MS, signal);
    let puts: MirrorPut[];
    try {
      puts = decodePackedPuts(answer.puts, answer.put_count, 'puts');
    } catch (error) {
      if (!isStrataError(error, ErrorCode.INVALID_ARGUMENT)) throw error;
      throw new StrataError(ErrorCode.CORRUPTION, `MirrorScan: ${target} answered puts that do not decode: ${error.message}`, { details: { endpoint: target }, cause: error });
    }
    const header = answer.header ?? EMPTY_HEADER;
    return { puts, more: answer.more, revision: header.revision, index: header.index, header: headerOf(header, target) };
  }

  /** release lets the view pinned as `pinId` on the member at `endpoint` go (Admin.DiffRelease; idempotent). */
  async release(endpoint: string, pinId: string, options: MirrorCallOptions = {}): Promise<void> {
    const { timeoutMs, signal } = this.#callOptions(options);
    await this.#calls.call(normalizeEndpoint(endpoint), 'DiffRelease', { pin_id: pinId }, timeoutMs + ADMIN_DEADLINE_GRACE_MS, signal);
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
    case 'mirrorReplay': {
      let bytes = MIRROR_REPLAY_OVERHEAD_BYTES + request.expectState.byteLength + request.state.byteLength;
      for (const command of request.commands) bytes += mirrorReplayCommandBytes(command);
      return bytes;
    }
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

/** mirrorReplayCommandBytes is what one replayed command (an entry's data) adds to mirrorRequestBytes. */
export function mirrorReplayCommandBytes(command: Uint8Array): number {
  return MIRROR_REPLAY_COMMAND_OVERHEAD_BYTES + command.byteLength;
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
    case 'mirrorReplay':
      checkState('expectState', request.expectState);
      checkState('state', request.state);
      return { replay: { expect_state: request.expectState, state: request.state, commands: encodePackedCommands(request.commands), command_count: request.commands.length } };
  }
}

// checkState refuses a state the member would refuse, before it travels.
function checkState(field: string, state: Uint8Array): void {
  if (state.byteLength > MIRROR_STATE_BYTES_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${field}: a mirror state is at most ${MIRROR_STATE_BYTES_MAX} bytes, got ${state.byteLength}`, { details: { field } });
  }
}

function fromWire(wire: WireMirrorResponse, endpoint: string): MirrorView {
  const header = wire.header ?? EMPTY_HEADER;
  return {
    state: wire.has_state ? new Uint8Array(wire.state) : undefined,
    revision: header.revision,
    index: header.index,
    header: headerOf(header, endpoint),
  };
}

function headerOf(header: WireHeader, endpoint: string): MirrorHeader {
  return { clusterId: header.cluster_id, memberId: header.member_id, raftTerm: header.raft_term, endpoint };
}

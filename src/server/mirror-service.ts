// The mirror-mode methods of stratakv.admin.Admin (proto/stratakv/admin.proto, "Mirror*"), for
// the cross-cluster copier (src/migrate/copy, through src/client/mirror-client.ts).
// MirrorRead answers the mirror state and the revision it goes with, linearizably
// (EtcdBackend.mirrorStatus). MirrorWrite decodes one mirror command and runs it as any write
// runs (EtcdBackend.kv: validated, proposed through Raft — a follower passes it to the leader —,
// applied, answered): the compare-and-set on the mirror state and every rule of a mirror are
// the state machine's (src/storage, kv-types.ts's MirrorRequest), this file only decodes.
// A malformed request is INVALID_ARGUMENT naming the wire field (`stratakv-field`), also when
// the node's validation finds it (its field is the request's, mapped to the wire's name).
// Errors travel as the other admin methods' do (the catalogue code in `stratakv-code`).

import type { handleUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';

import type { KvRequest, KvResponse, MirrorPut, MirrorRequest, MirrorResponse } from '../storage/index.ts';
import { MIRROR_STATE_BYTES_MAX } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, isStrataError, StrataError } from '../util/errors.ts';
import type { CallOptions, MirrorStatus, ResponseHeaderInfo } from './backend.ts';
import { unary } from './diff-service.ts';
import type { EtcdServerLogger } from './unary-call.ts';

/** MIRROR_CALL_TIMEOUT_MS_MAX bounds a mirror call's timeout_ms. */
export const MIRROR_CALL_TIMEOUT_MS_MAX = 10 * 60_000;
/**
 * MIRROR_PUTS_PER_REQUEST_MAX bounds put_count before anything is allocated: the smallest put
 * takes 6 bytes of `puts` (a one-byte key, an empty value, four one-byte varints), and a
 * request is at most --max-request-bytes plus gRPC's overhead allowance.
 */
export const MIRROR_PUTS_PER_REQUEST_MAX = 1 << 20;
// The fewest bytes one packed put takes (see MIRROR_PUTS_PER_REQUEST_MAX).
const PACKED_PUT_BYTES_MIN = 6;
// A varint of a safe integer takes at most 8 groups of 7 bits (53 bits).
const VARINT_GROUPS_MAX = 8;
// A varint of a u64 (the lease id) takes at most 10 groups, the last holding bit 63 alone.
const U64_VARINT_GROUPS_MAX = 10;

/** MirrorBackend is what the service needs of the backend (RaftNodeBackend has it). */
export interface MirrorBackend {
  header(): ResponseHeaderInfo;
  kv(request: KvRequest, options?: CallOptions): Promise<KvResponse>;
  mirrorStatus(options?: CallOptions): Promise<MirrorStatus>;
}

/** WireMirrorHeader is admin.proto's MirrorHeader. */
export interface WireMirrorHeader {
  cluster_id: number;
  member_id: number;
  revision: number;
  raft_term: number;
}

/** WireMirrorApply is admin.proto's MirrorApply as proto-loader gives it (ADMIN_PROTO_LOADER_OPTIONS). */
export interface WireMirrorApply {
  expect_state?: Uint8Array;
  state?: Uint8Array;
  revision?: number;
  puts?: Uint8Array;
  put_count?: number;
  deletes?: Uint8Array[];
}

/** WireMirrorWriteRequest is admin.proto's MirrorWriteRequest as proto-loader gives it (absent oneof members are undefined). */
export interface WireMirrorWriteRequest {
  begin?: { state?: Uint8Array; require_empty?: boolean; require_revision?: number } | null;
  apply?: WireMirrorApply | null;
  end?: { expect_state?: Uint8Array } | null;
  timeout_ms?: number;
}

/** WireMirrorResponse is admin.proto's MirrorReadResponse and MirrorWriteResponse (the same fields). */
export interface WireMirrorResponse {
  header: WireMirrorHeader;
  has_state: boolean;
  state: Uint8Array;
}

/** createMirrorService implements MirrorRead and MirrorWrite over `backend` (see the file comment). */
export function createMirrorService(options: { readonly backend: MirrorBackend; readonly logger?: EtcdServerLogger | undefined }): UntypedServiceImplementation {
  const { backend, logger } = options;
  const mirrorRead: handleUnaryCall<object, object> = unary('Admin.MirrorRead', logger, async (request: { timeout_ms?: number }, signal): Promise<WireMirrorResponse> => {
    const status = await backend.mirrorStatus(callOptions(request, signal));
    return toWireMirrorResponse(backend.header(), status.revision, status.state);
  });
  const mirrorWrite: handleUnaryCall<object, object> = unary('Admin.MirrorWrite', logger, async (request: WireMirrorWriteRequest, signal): Promise<WireMirrorResponse> => {
    const command = decodeMirrorWriteRequest(request);
    let answer: KvResponse;
    try {
      answer = await backend.kv(command, callOptions(request, signal));
    } catch (error) {
      throw withWireField(error, command);
    }
    assert(answer.type === command.type, `backend answered a ${command.type} request with a ${answer.type} response`);
    const response = answer as MirrorResponse;
    return toWireMirrorResponse(backend.header(), response.revision, response.state);
  });
  return { MirrorRead: mirrorRead, MirrorWrite: mirrorWrite };
}

/**
 * decodeMirrorWriteRequest turns a MirrorWriteRequest into the storage's MirrorRequest, or
 * throws INVALID_ARGUMENT naming the wire field (details.field): no command or more than one,
 * a state over MIRROR_STATE_BYTES_MAX, a revision that is not a safe integer, packed puts that
 * do not decode or do not hold put_count puts. The node validates the rest (validateKvRequest).
 * Keys and values are views of the received buffer (no copy).
 */
export function decodeMirrorWriteRequest(wire: WireMirrorWriteRequest): MirrorRequest {
  const given = [wire.begin, wire.apply, wire.end].filter((command) => command !== undefined && command !== null).length;
  if (given !== 1) throw invalid('command', `MirrorWrite: give exactly one of begin, apply, end (got ${given})`);
  if (wire.begin !== undefined && wire.begin !== null) {
    const requireRevision = wire.begin.require_revision ?? 0;
    checkSafe('begin.require_revision', requireRevision);
    return {
      type: 'mirrorBegin',
      state: stateOf('begin.state', wire.begin.state),
      requireEmpty: wire.begin.require_empty === true,
      ...(requireRevision > 0 ? { requireRevision } : {}),
    };
  }
  if (wire.apply !== undefined && wire.apply !== null) {
    const apply = wire.apply;
    const revision = apply.revision ?? 0;
    checkSafe('apply.revision', revision);
    const deletes = apply.deletes ?? [];
    return {
      type: 'mirrorApply',
      expectState: stateOf('apply.expect_state', apply.expect_state),
      state: stateOf('apply.state', apply.state),
      revision,
      puts: decodePackedPuts(apply.puts ?? new Uint8Array(0), apply.put_count ?? 0),
      deletes,
    };
  }
  assert(wire.end !== undefined && wire.end !== null, 'one command is given');
  return { type: 'mirrorEnd', expectState: stateOf('end.expect_state', wire.end.expect_state) };
}

/**
 * decodePackedPuts reads MirrorApply.puts (the layout is in admin.proto): exactly `count` puts
 * that end exactly at the end of `bytes`; INVALID_ARGUMENT on `apply.puts` otherwise (details
 * say which put and what). Keys and values are views of `bytes`.
 */
export function decodePackedPuts(bytes: Uint8Array, count: number): MirrorPut[] {
  if (!Number.isSafeInteger(count) || count < 0 || count > MIRROR_PUTS_PER_REQUEST_MAX || count * PACKED_PUT_BYTES_MIN > bytes.byteLength) {
    throw invalid('apply.put_count', `MirrorWrite: apply.put_count ${count} puts cannot fit in ${bytes.byteLength} bytes of apply.puts`);
  }
  const reader = new PackedReader(bytes);
  const puts: MirrorPut[] = new Array<MirrorPut>(count);
  for (let index = 0; index < count; index += 1) {
    reader.index = index;
    const key = reader.bytes('key');
    const value = reader.bytes('value');
    const createRevision = reader.varint('create_revision');
    const modRevision = reader.varint('mod_revision');
    const version = reader.varint('version');
    // The lease id is read exactly, as a u64; the node refuses one of 2^63 or more (validateKvRequest).
    const lease = reader.u64Varint('lease');
    puts[index] = { key, value, createRevision, modRevision, version, lease };
  }
  if (reader.offset !== bytes.byteLength) {
    throw invalid('apply.puts', `MirrorWrite: apply.puts has ${bytes.byteLength - reader.offset} bytes after its ${count} puts (apply.put_count)`, { count });
  }
  return puts;
}

/** toWireMirrorResponse is a MirrorReadResponse or MirrorWriteResponse: this member now, with the answer's revision and state. */
export function toWireMirrorResponse(info: ResponseHeaderInfo, revision: number, state: Uint8Array | undefined): WireMirrorResponse {
  return {
    header: { cluster_id: info.clusterId, member_id: info.memberId, revision, raft_term: info.raftTerm },
    has_state: state !== undefined,
    state: state ?? new Uint8Array(0),
  };
}

// PackedReader reads the packed puts, naming the put and its part in what it refuses.
class PackedReader {
  readonly #bytes: Uint8Array;
  offset = 0;
  index = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  bytes(part: string): Uint8Array {
    const length = this.varint(`${part} length`);
    if (length > this.#bytes.byteLength - this.offset) this.#fail(part, `its length ${length} passes the end of apply.puts`);
    const value = this.#bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  // varint reads a protobuf varint that must be a safe integer (at most 53 bits).
  varint(part: string): number {
    let value = 0;
    let scale = 1;
    for (let group = 0; group < VARINT_GROUPS_MAX; group += 1) {
      const byte = this.#bytes[this.offset];
      if (byte === undefined) return this.#fail(part, 'apply.puts ends inside it');
      this.offset += 1;
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) {
        if (!Number.isSafeInteger(value)) return this.#fail(part, `${value} is not below 2^53`);
        return value;
      }
      scale *= 128;
    }
    return this.#fail(part, 'a varint longer than 8 bytes (not below 2^53)');
  }

  // u64Varint reads a protobuf varint of up to 64 bits exactly, as a bigint.
  u64Varint(part: string): bigint {
    let value = 0n;
    for (let group = 0; group < U64_VARINT_GROUPS_MAX; group += 1) {
      const byte = this.#bytes[this.offset];
      if (byte === undefined) return this.#fail(part, 'apply.puts ends inside it');
      this.offset += 1;
      if (group === U64_VARINT_GROUPS_MAX - 1 && byte > 1) return this.#fail(part, 'a varint past 64 bits');
      value |= BigInt(byte & 0x7f) << BigInt(7 * group);
      if ((byte & 0x80) === 0) return value;
    }
    return this.#fail(part, 'a varint longer than 10 bytes');
  }

  #fail(part: string, problem: string): never {
    throw invalid('apply.puts', `MirrorWrite: apply.puts: put ${this.index}'s ${part}: ${problem}`, { put: this.index, part, offset: this.offset });
  }
}

// stateOf checks a state's size (the node checks it too; here the wire field is named).
function stateOf(field: string, state: Uint8Array | undefined): Uint8Array {
  const bytes = state ?? new Uint8Array(0);
  if (bytes.byteLength > MIRROR_STATE_BYTES_MAX) throw invalid(field, `MirrorWrite: ${field} is ${bytes.byteLength} bytes, more than ${MIRROR_STATE_BYTES_MAX}`);
  return bytes;
}

// checkSafe refuses a uint64 that proto-loader could not give exactly (at or above 2^53).
function checkSafe(field: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw invalid(field, `MirrorWrite: ${field} must be below 2^53, got ${value}`);
}

function callOptions(request: { timeout_ms?: number }, signal: AbortSignal): CallOptions {
  const timeoutMs = request.timeout_ms ?? 0;
  return timeoutMs > 0 ? { signal, timeoutMs: Math.min(timeoutMs, MIRROR_CALL_TIMEOUT_MS_MAX) } : { signal };
}

// withWireField renames the field of the node's INVALID_ARGUMENT (the MirrorRequest's, like
// `puts[3].modRevision`) to the wire's (`apply.puts[3].mod_revision`), so that the trailer
// names what the caller sent.
function withWireField(error: unknown, command: MirrorRequest): unknown {
  if (!isStrataError(error, ErrorCode.INVALID_ARGUMENT)) return error;
  const field = error.details['field'];
  if (typeof field !== 'string') return error;
  const prefix = command.type === 'mirrorBegin' ? 'begin' : command.type === 'mirrorApply' ? 'apply' : 'end';
  const wireField = `${prefix}.${field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)}`;
  return new StrataError(ErrorCode.INVALID_ARGUMENT, error.message, { details: { ...error.details, field: wireField }, cause: error });
}

function invalid(field: string, message: string, details: Record<string, unknown> = {}): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, message, { details: { ...details, field } });
}

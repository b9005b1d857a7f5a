// The mirror-mode methods of stratakv.admin.Admin (proto/stratakv/admin.proto, "Mirror*"), for
// the cross-cluster copier (src/migrate/copy, through src/client/mirror-client.ts).
// MirrorRead answers the mirror state and the revision and applied index it goes with,
// linearizably (EtcdBackend.mirrorStatus). MirrorWrite decodes one mirror command and runs it as
// any write runs (EtcdBackend.kv: validated, proposed through Raft — a follower passes it to the
// leader —, applied, answered with the index of the entry that applied it): the
// compare-and-set on the mirror state and every rule of a mirror are the state machine's
// (src/storage, kv-types.ts's MirrorRequest), this file only decodes. MirrorScan reads a page of
// a view pinned on this member (DiffPin; the member's DigestPinSource), for a copy whose source
// is a stratakv cluster: served here, never forwarded, since a pin lives on its member.
// A malformed request is INVALID_ARGUMENT naming the wire field (`stratakv-field`), also when
// the node's validation finds it (its field is the request's, mapped to the wire's name).
// Errors travel as the other admin methods' do (the catalogue code in `stratakv-code`).

import type { handleUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';

import type { DigestPinSource } from '../diff/index.ts';
import { parsePinId, parseTimeoutMs, RANGE_KEY_BYTES_MAX } from '../diff/index.ts';
import type { KvRequest, KvResponse, MirrorRequest, MirrorResponse } from '../storage/index.ts';
import { decodePackedCommands, decodePackedPuts, DIGEST_VIEW_RANGE_LIMIT_MAX, encodePackedPuts, MIRROR_STATE_BYTES_MAX } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, isStrataError, StrataError } from '../util/errors.ts';
import type { CallOptions, MirrorStatus, ResponseHeaderInfo } from './backend.ts';
import { unary } from './diff-service.ts';
import type { EtcdServerLogger } from './unary-call.ts';

// The packed layouts are src/storage's (mirror-packing.ts), shared with src/client.
export { decodePackedPuts, MIRROR_PUTS_PER_REQUEST_MAX } from '../storage/index.ts';

/** MIRROR_CALL_TIMEOUT_MS_MAX bounds a mirror call's timeout_ms. */
export const MIRROR_CALL_TIMEOUT_MS_MAX = 10 * 60_000;
/** MIRROR_SCAN_LIMIT_DEFAULT is the keys a MirrorScan answers when its limit is 0. */
export const MIRROR_SCAN_LIMIT_DEFAULT = 1_000;
/**
 * MIRROR_SCAN_PAGE_BYTES_MAX bounds the keys and values of one MirrorScan answer past its first
 * key: a client takes messages of up to 4 MiB (gRPC's default), and one key and value of etcd's
 * largest request (1.5 MiB each) still fit alone.
 */
export const MIRROR_SCAN_PAGE_BYTES_MAX = 2 * 1024 * 1024;

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
  index: number;
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

/** WireMirrorReplay is admin.proto's MirrorReplay as proto-loader gives it. */
export interface WireMirrorReplay {
  expect_state?: Uint8Array;
  state?: Uint8Array;
  commands?: Uint8Array;
  command_count?: number;
}

/** WireMirrorWriteRequest is admin.proto's MirrorWriteRequest as proto-loader gives it (absent oneof members are undefined). */
export interface WireMirrorWriteRequest {
  begin?: { state?: Uint8Array; require_empty?: boolean; require_revision?: number } | null;
  apply?: WireMirrorApply | null;
  end?: { expect_state?: Uint8Array } | null;
  replay?: WireMirrorReplay | null;
  timeout_ms?: number;
}

/** WireMirrorResponse is admin.proto's MirrorReadResponse and MirrorWriteResponse (the same fields). */
export interface WireMirrorResponse {
  header: WireMirrorHeader;
  has_state: boolean;
  state: Uint8Array;
}

/** WireMirrorScanRequest is admin.proto's MirrorScanRequest as proto-loader gives it. */
export interface WireMirrorScanRequest {
  pin_id?: string;
  key?: Uint8Array;
  range_end?: Uint8Array;
  limit?: number;
  timeout_ms?: number;
}

/** WireMirrorScanResponse is admin.proto's MirrorScanResponse. */
export interface WireMirrorScanResponse {
  header: WireMirrorHeader;
  puts: Uint8Array;
  put_count: number;
  more: boolean;
}

/** MirrorScan is a checked MirrorScanRequest. */
export interface MirrorScan {
  readonly pinId: string;
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
  /** 1..DIGEST_VIEW_RANGE_LIMIT_MAX. */
  readonly limit: number;
  readonly timeoutMs: number;
}

/**
 * createMirrorService implements MirrorRead and MirrorWrite over `backend`, and MirrorScan over
 * `pins` when given (without them MirrorScan answers UNIMPLEMENTED). See the file comment.
 */
export function createMirrorService(options: { readonly backend: MirrorBackend; readonly pins?: DigestPinSource | undefined; readonly logger?: EtcdServerLogger | undefined }): UntypedServiceImplementation {
  const { backend, pins, logger } = options;
  const mirrorRead: handleUnaryCall<object, object> = unary('Admin.MirrorRead', logger, async (request: { timeout_ms?: number }, signal): Promise<WireMirrorResponse> => {
    const status = await backend.mirrorStatus(callOptions(request, signal));
    return toWireMirrorResponse(backend.header(), status);
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
    // The state machine's answer carries the index of the entry that applied the command.
    assert(response.index !== undefined, 'a mirror answer from the state machine carries its entry index');
    return toWireMirrorResponse(backend.header(), { revision: response.revision, index: response.index, state: response.state });
  });
  if (pins === undefined) return { MirrorRead: mirrorRead, MirrorWrite: mirrorWrite };
  const mirrorScan: handleUnaryCall<object, object> = unary('Admin.MirrorScan', logger, async (request: WireMirrorScanRequest, signal): Promise<WireMirrorScanResponse> => {
    const scan = parseMirrorScanRequest(request);
    // A pin that is gone is INVALID_ARGUMENT on pin_id (the pin source's refusal).
    const view = await pins.view(scan.pinId, { timeoutMs: scan.timeoutMs, signal });
    const page = await view.range(scan.key, scan.rangeEnd, scan.limit, { bytesMax: MIRROR_SCAN_PAGE_BYTES_MAX });
    return {
      header: wireHeader(backend.header(), { revision: view.revision, index: view.appliedIndex }),
      puts: encodePackedPuts(page.kvs),
      put_count: page.kvs.length,
      more: page.more,
    };
  });
  return { MirrorRead: mirrorRead, MirrorWrite: mirrorWrite, MirrorScan: mirrorScan };
}

/**
 * decodeMirrorWriteRequest turns a MirrorWriteRequest into the storage's MirrorRequest, or
 * throws INVALID_ARGUMENT naming the wire field (details.field): no command or more than one,
 * a state over MIRROR_STATE_BYTES_MAX, a revision that is not a safe integer, packed puts or
 * commands that do not decode or do not hold their count. The node validates the rest
 * (validateKvRequest). Keys, values and commands are views of the received buffer (no copy).
 */
export function decodeMirrorWriteRequest(wire: WireMirrorWriteRequest): MirrorRequest {
  const given = [wire.begin, wire.apply, wire.end, wire.replay].filter((command) => command !== undefined && command !== null).length;
  if (given !== 1) throw invalid('command', `MirrorWrite: give exactly one of begin, apply, end, replay (got ${given})`);
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
      puts: decodePackedPuts(apply.puts ?? new Uint8Array(0), apply.put_count ?? 0, 'apply'),
      deletes,
    };
  }
  if (wire.replay !== undefined && wire.replay !== null) {
    const replay = wire.replay;
    return {
      type: 'mirrorReplay',
      expectState: stateOf('replay.expect_state', replay.expect_state),
      state: stateOf('replay.state', replay.state),
      commands: decodePackedCommands(replay.commands ?? new Uint8Array(0), replay.command_count ?? 0, 'replay'),
    };
  }
  assert(wire.end !== undefined && wire.end !== null, 'one command is given');
  return { type: 'mirrorEnd', expectState: stateOf('end.expect_state', wire.end.expect_state) };
}

/** toWireMirrorResponse is a MirrorReadResponse or MirrorWriteResponse: this member now, with the answer's revision, index and state. */
export function toWireMirrorResponse(info: ResponseHeaderInfo, answer: { readonly revision: number; readonly index: number; readonly state: Uint8Array | undefined }): WireMirrorResponse {
  return {
    header: wireHeader(info, answer),
    has_state: answer.state !== undefined,
    state: answer.state ?? new Uint8Array(0),
  };
}

/**
 * parseMirrorScanRequest checks a MirrorScanRequest (INVALID_ARGUMENT naming the field): a pin
 * id, a key and range end within RANGE_KEY_BYTES_MAX, a limit of at most
 * DIGEST_VIEW_RANGE_LIMIT_MAX (0: MIRROR_SCAN_LIMIT_DEFAULT), a timeout as the Diff calls'.
 */
export function parseMirrorScanRequest(wire: WireMirrorScanRequest): MirrorScan {
  const pinId = parsePinId(wire.pin_id);
  const key = wire.key ?? new Uint8Array(0);
  const rangeEnd = wire.range_end ?? new Uint8Array(0);
  if (key.byteLength > RANGE_KEY_BYTES_MAX) throw invalid('key', `MirrorScan: key is ${key.byteLength} bytes, more than ${RANGE_KEY_BYTES_MAX}`);
  if (rangeEnd.byteLength > RANGE_KEY_BYTES_MAX) throw invalid('range_end', `MirrorScan: range_end is ${rangeEnd.byteLength} bytes, more than ${RANGE_KEY_BYTES_MAX}`);
  const limit = wire.limit ?? 0;
  if (!Number.isSafeInteger(limit) || limit < 0 || limit > DIGEST_VIEW_RANGE_LIMIT_MAX) throw invalid('limit', `MirrorScan: limit must be 0 (${MIRROR_SCAN_LIMIT_DEFAULT}) to ${DIGEST_VIEW_RANGE_LIMIT_MAX}, got ${limit}`);
  return { pinId, key, rangeEnd, limit: limit === 0 ? MIRROR_SCAN_LIMIT_DEFAULT : limit, timeoutMs: parseTimeoutMs(wire.timeout_ms) };
}

function wireHeader(info: ResponseHeaderInfo, answer: { readonly revision: number; readonly index: number }): WireMirrorHeader {
  return { cluster_id: info.clusterId, member_id: info.memberId, revision: answer.revision, raft_term: info.raftTerm, index: answer.index };
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

// The oneof member of MirrorWriteRequest that carries each command.
const WIRE_COMMAND_NAMES: Readonly<Record<MirrorRequest['type'], string>> = { mirrorBegin: 'begin', mirrorApply: 'apply', mirrorEnd: 'end', mirrorReplay: 'replay' };

// withWireField renames the field of the node's INVALID_ARGUMENT (the MirrorRequest's, like
// `puts[3].modRevision`) to the wire's (`apply.puts[3].mod_revision`), so that the trailer
// names what the caller sent.
function withWireField(error: unknown, command: MirrorRequest): unknown {
  if (!isStrataError(error, ErrorCode.INVALID_ARGUMENT)) return error;
  const field = error.details['field'];
  if (typeof field !== 'string') return error;
  const prefix = WIRE_COMMAND_NAMES[command.type];
  const wireField = `${prefix}.${field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)}`;
  return new StrataError(ErrorCode.INVALID_ARGUMENT, error.message, { details: { ...error.details, field: wireField }, cause: error });
}

function invalid(field: string, message: string, details: Record<string, unknown> = {}): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, message, { details: { ...details, field } });
}

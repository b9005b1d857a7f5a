// The wire encoding of a batch of Raft messages: one msgpack array of messages, each message
// a compact positional array (no field names), entries flattened into their message's array.
// Positional arrays keep the hot path (appends carrying entries) small and fast to encode:
// there are no keys to write or hash, and no per-entry nested array headers.
//
// Layout (version 1). A batch is [1, m1, m2, ...]. Every message begins with
// [typeCode, from, to, term]; the rest depends on the type:
//   0 append             logTerm, index, commit, then 4 slots per entry: term, index, type, data,
//                        then, only for an append that carries trace context (MessageTrace), one
//                        more slot: [traceparent, index, traceparent, index, traceparent, ...]
//   1 appendResponse     index, reject, rejectHint, logTerm
//   2 vote / 3 preVote   logTerm, index, leaderTransfer
//   4 voteResponse / 5 preVoteResponse   reject, commit, commitTerm
//   6 snapshot           index, term, voters, learners, votersOutgoing, learnersNext, autoLeave, data
//   7 heartbeat          commit, context (bin or nil for undefined)
//   8 heartbeatResponse  context (bin or nil for undefined)
//   9 timeoutNow         (nothing)
//  10 readIndex          context
//  11 readIndexResponse  index, context
// Integers are msgpack integers (msgpackr writes those above 2^32 as float64, exact for safe
// integers); byte strings are msgpack bin; booleans are msgpack booleans.
//
// The trace slot is what tells an append with trace context from one without: its slots past
// the fixed ones are 4 per entry plus 1. Only appends carrying traced entries have it, so an
// untraced cluster sends exactly what it sent before; a member older than the trace slot
// refuses an append that has one, so tracing is turned on once every member understands it.
//
// Decoding takes untrusted bytes: every field is checked, and anything that is not exactly a
// well-formed message is a StrataError INVALID_ARGUMENT naming the message and field.

import { Packr, Unpackr } from 'msgpackr';
import type { ConfState, Entry, Message, NodeId } from '../raft/index.ts';
import { ENTRY_OVERHEAD_BYTES, EntryType } from '../raft/index.ts';
import { assertNever } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';

/** MESSAGE_BATCH_VERSION is the first element of every encoded batch. */
export const MESSAGE_BATCH_VERSION = 1;

/** MESSAGE_BATCH_MESSAGES_MAX bounds how many messages one decoded batch may hold. */
export const MESSAGE_BATCH_MESSAGES_MAX = 65_536;

/** MESSAGE_ENTRIES_MAX bounds how many entries one decoded append may carry. */
export const MESSAGE_ENTRIES_MAX = 1_048_576;

/** MESSAGE_CONF_NODES_MAX bounds each node list of a snapshot's configuration. */
export const MESSAGE_CONF_NODES_MAX = 65_536;

/** MESSAGE_TRACE_ENTRIES_MAX bounds the traced entries one append's MessageTrace names. */
export const MESSAGE_TRACE_ENTRIES_MAX = 128;

/** MESSAGE_TRACEPARENT_CHARS_MAX bounds one traceparent in a MessageTrace (a version-00 one has 55). */
export const MESSAGE_TRACEPARENT_CHARS_MAX = 256;

/**
 * MessageTrace is W3C trace context carried beside an append (src/obs says what it means; the
 * codec only carries it): `traceparent` is the sender's span for this append, and `entries`
 * names the traced entries it carries with the traceparent of each one's own span.
 */
export interface MessageTrace {
  readonly traceparent: string;
  readonly entries: readonly { readonly index: number; readonly traceparent: string }[];
}

/**
 * TracedMessage is a Raft message that may carry trace context: the Raft core never sees the
 * field (the driver adds it to a copy before sending, and reads it before stepping).
 */
export type TracedMessage = Message & { readonly trace?: MessageTrace | undefined };

// Fixed overhead counted per message in size estimates: header fields and framing.
const MESSAGE_OVERHEAD_BYTES = 48;

const TYPE_CODES = {
  append: 0,
  appendResponse: 1,
  vote: 2,
  preVote: 3,
  voteResponse: 4,
  preVoteResponse: 5,
  snapshot: 6,
  heartbeat: 7,
  heartbeatResponse: 8,
  timeoutNow: 9,
  readIndex: 10,
  readIndexResponse: 11,
} as const satisfies Record<Message['type'], number>;

const HEADER_SLOTS = 4;
const ENTRY_SLOTS = 4;
const APPEND_FIXED_SLOTS = HEADER_SLOTS + 3;

// One packer for the process: useRecords off keeps the output plain msgpack, which any
// implementation can read, and makes the unpacker treat 0x40-0x7f as integers, never as
// references to record structures a hostile frame might have defined.
const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/** messageSizeBytes estimates a message's encoded size, for queue and frame byte limits. */
export function messageSizeBytes(message: Message): number {
  switch (message.type) {
    case 'append': {
      let size = MESSAGE_OVERHEAD_BYTES;
      for (const entry of message.entries) size += entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
      const trace = (message as TracedMessage).trace;
      if (trace !== undefined) size += (trace.entries.length + 1) * (MESSAGE_TRACEPARENT_CHARS_MAX / 4);
      return size;
    }
    case 'snapshot': {
      const conf = message.snapshot.metadata.confState;
      const nodes = conf.voters.length + conf.learners.length + conf.votersOutgoing.length + conf.learnersNext.length;
      return MESSAGE_OVERHEAD_BYTES + message.snapshot.data.byteLength + nodes * 9;
    }
    case 'heartbeat':
    case 'heartbeatResponse':
      return MESSAGE_OVERHEAD_BYTES + (message.context?.byteLength ?? 0);
    case 'readIndex':
    case 'readIndexResponse':
      return MESSAGE_OVERHEAD_BYTES + message.context.byteLength;
    case 'appendResponse':
    case 'vote':
    case 'preVote':
    case 'voteResponse':
    case 'preVoteResponse':
    case 'timeoutNow':
      return MESSAGE_OVERHEAD_BYTES;
    default:
      return assertNever(message, 'message');
  }
}

/** encodeMessages encodes a batch of messages into one byte string. */
export function encodeMessages(messages: readonly Message[]): Uint8Array {
  const batch: unknown[] = new Array(messages.length + 1);
  batch[0] = MESSAGE_BATCH_VERSION;
  for (let i = 0; i < messages.length; i += 1) batch[i + 1] = toArray(messages[i] as Message);
  // A plain Uint8Array view, not msgpackr's Buffer: Buffer#slice shares memory, which would
  // surprise a caller who copies the frame with slice().
  const packed = packr.pack(batch);
  return new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength);
}

/**
 * decodeMessages decodes a batch from untrusted bytes. It throws StrataError INVALID_ARGUMENT
 * (details: `message` index and `field`) for anything but a well-formed batch.
 */
export function decodeMessages(bytes: Uint8Array): Message[] {
  let batch: unknown;
  try {
    batch = unpackr.unpack(bytes);
  } catch (error) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `message batch is not valid msgpack: ${String(error)}`, {
      cause: error,
      details: { field: 'batch' },
    });
  }
  if (!Array.isArray(batch) || batch.length === 0) throw invalid(-1, 'batch', 'is not a non-empty array');
  if (batch[0] !== MESSAGE_BATCH_VERSION) throw invalid(-1, 'version', `is ${String(batch[0])}, expected ${MESSAGE_BATCH_VERSION}`);
  if (batch.length - 1 > MESSAGE_BATCH_MESSAGES_MAX) throw invalid(-1, 'batch', 'holds too many messages');
  const messages: Message[] = new Array(batch.length - 1);
  for (let i = 1; i < batch.length; i += 1) messages[i - 1] = fromArray(batch[i], i - 1);
  return messages;
}

function toArray(message: Message): unknown[] {
  const code = TYPE_CODES[message.type];
  switch (message.type) {
    case 'append': {
      const trace = (message as TracedMessage).trace;
      const out: unknown[] = new Array(APPEND_FIXED_SLOTS + message.entries.length * ENTRY_SLOTS + (trace === undefined ? 0 : 1));
      out[0] = code;
      out[1] = message.from;
      out[2] = message.to;
      out[3] = message.term;
      out[4] = message.logTerm;
      out[5] = message.index;
      out[6] = message.commit;
      let slot = APPEND_FIXED_SLOTS;
      for (const entry of message.entries) {
        out[slot] = entry.term;
        out[slot + 1] = entry.index;
        out[slot + 2] = entry.type;
        out[slot + 3] = entry.data;
        slot += ENTRY_SLOTS;
      }
      if (trace !== undefined) out[slot] = traceToArray(trace);
      return out;
    }
    case 'appendResponse':
      return [code, message.from, message.to, message.term, message.index, message.reject, message.rejectHint, message.logTerm];
    case 'vote':
    case 'preVote':
      return [code, message.from, message.to, message.term, message.logTerm, message.index, message.leaderTransfer];
    case 'voteResponse':
    case 'preVoteResponse':
      return [code, message.from, message.to, message.term, message.reject, message.commit, message.commitTerm];
    case 'snapshot': {
      const { metadata, data } = message.snapshot;
      const conf = metadata.confState;
      return [
        code, message.from, message.to, message.term,
        metadata.index, metadata.term,
        conf.voters, conf.learners, conf.votersOutgoing, conf.learnersNext, conf.autoLeave,
        data,
      ];
    }
    case 'heartbeat':
      return [code, message.from, message.to, message.term, message.commit, message.context ?? null];
    case 'heartbeatResponse':
      return [code, message.from, message.to, message.term, message.context ?? null];
    case 'timeoutNow':
      return [code, message.from, message.to, message.term];
    case 'readIndex':
      return [code, message.from, message.to, message.term, message.context];
    case 'readIndexResponse':
      return [code, message.from, message.to, message.term, message.index, message.context];
    default:
      return assertNever(message, 'message');
  }
}

function fromArray(value: unknown, at: number): Message {
  if (!Array.isArray(value)) throw invalid(at, 'message', 'is not an array');
  const fields = value as unknown[];
  if (fields.length < HEADER_SLOTS) throw invalid(at, 'message', 'is shorter than its header');
  const code = fields[0];
  const from = integer(fields[1], at, 'from');
  const to = integer(fields[2], at, 'to');
  const term = integer(fields[3], at, 'term');
  switch (code) {
    case TYPE_CODES.append: {
      const traced = (fields.length - APPEND_FIXED_SLOTS) % ENTRY_SLOTS === 1;
      if (fields.length < APPEND_FIXED_SLOTS || ((fields.length - APPEND_FIXED_SLOTS) % ENTRY_SLOTS !== 0 && !traced)) {
        throw invalid(at, 'entries', 'do not fill whole entries');
      }
      const count = (fields.length - APPEND_FIXED_SLOTS - (traced ? 1 : 0)) / ENTRY_SLOTS;
      if (count > MESSAGE_ENTRIES_MAX) throw invalid(at, 'entries', 'are too many');
      const entries: Entry[] = new Array(count);
      let slot = APPEND_FIXED_SLOTS;
      for (let i = 0; i < count; i += 1) {
        const type = fields[slot + 2];
        if (type !== EntryType.Normal && type !== EntryType.ConfChange) throw invalid(at, `entries[${i}].type`, 'is not an entry type');
        entries[i] = {
          term: integer(fields[slot], at, `entries[${i}].term`),
          index: integer(fields[slot + 1], at, `entries[${i}].index`),
          type,
          data: bytes(fields[slot + 3], at, `entries[${i}].data`),
        };
        slot += ENTRY_SLOTS;
      }
      const append: Message = {
        type: 'append', from, to, term,
        logTerm: integer(fields[4], at, 'logTerm'),
        index: integer(fields[5], at, 'index'),
        commit: integer(fields[6], at, 'commit'),
        entries,
      };
      if (!traced) return append;
      const tracedAppend: TracedMessage = { ...append, trace: traceFromArray(fields[slot], at) };
      return tracedAppend;
    }
    case TYPE_CODES.appendResponse:
      exactLength(fields, 8, at);
      return {
        type: 'appendResponse', from, to, term,
        index: integer(fields[4], at, 'index'),
        reject: boolean(fields[5], at, 'reject'),
        rejectHint: integer(fields[6], at, 'rejectHint'),
        logTerm: integer(fields[7], at, 'logTerm'),
      };
    case TYPE_CODES.vote:
    case TYPE_CODES.preVote:
      exactLength(fields, 7, at);
      return {
        type: code === TYPE_CODES.vote ? 'vote' : 'preVote', from, to, term,
        logTerm: integer(fields[4], at, 'logTerm'),
        index: integer(fields[5], at, 'index'),
        leaderTransfer: boolean(fields[6], at, 'leaderTransfer'),
      };
    case TYPE_CODES.voteResponse:
    case TYPE_CODES.preVoteResponse:
      exactLength(fields, 7, at);
      return {
        type: code === TYPE_CODES.voteResponse ? 'voteResponse' : 'preVoteResponse', from, to, term,
        reject: boolean(fields[4], at, 'reject'),
        commit: integer(fields[5], at, 'commit'),
        commitTerm: integer(fields[6], at, 'commitTerm'),
      };
    case TYPE_CODES.snapshot: {
      exactLength(fields, 12, at);
      const confState: ConfState = {
        voters: nodeList(fields[6], at, 'voters'),
        learners: nodeList(fields[7], at, 'learners'),
        votersOutgoing: nodeList(fields[8], at, 'votersOutgoing'),
        learnersNext: nodeList(fields[9], at, 'learnersNext'),
        autoLeave: boolean(fields[10], at, 'autoLeave'),
      };
      return {
        type: 'snapshot', from, to, term,
        snapshot: {
          metadata: { index: integer(fields[4], at, 'snapshot.index'), term: integer(fields[5], at, 'snapshot.term'), confState },
          data: bytes(fields[11], at, 'snapshot.data'),
        },
      };
    }
    case TYPE_CODES.heartbeat:
      exactLength(fields, 6, at);
      return {
        type: 'heartbeat', from, to, term,
        commit: integer(fields[4], at, 'commit'),
        context: optionalBytes(fields[5], at, 'context'),
      };
    case TYPE_CODES.heartbeatResponse:
      exactLength(fields, 5, at);
      return { type: 'heartbeatResponse', from, to, term, context: optionalBytes(fields[4], at, 'context') };
    case TYPE_CODES.timeoutNow:
      exactLength(fields, 4, at);
      return { type: 'timeoutNow', from, to, term };
    case TYPE_CODES.readIndex:
      exactLength(fields, 5, at);
      return { type: 'readIndex', from, to, term, context: bytes(fields[4], at, 'context') };
    case TYPE_CODES.readIndexResponse:
      exactLength(fields, 6, at);
      return {
        type: 'readIndexResponse', from, to, term,
        index: integer(fields[4], at, 'index'),
        context: bytes(fields[5], at, 'context'),
      };
    default:
      throw invalid(at, 'type', `has unknown code ${String(code)}`);
  }
}

// A MessageTrace on the wire: [traceparent, index, traceparent, index, traceparent, ...].
function traceToArray(trace: MessageTrace): unknown[] {
  const out: unknown[] = new Array(1 + 2 * trace.entries.length);
  out[0] = trace.traceparent;
  let slot = 1;
  for (const entry of trace.entries) {
    out[slot] = entry.index;
    out[slot + 1] = entry.traceparent;
    slot += 2;
  }
  return out;
}

function traceFromArray(value: unknown, at: number): MessageTrace {
  if (!Array.isArray(value) || value.length < 1 || value.length % 2 !== 1) throw invalid(at, 'trace', 'is not [traceparent, index, traceparent, ...]');
  const count = (value.length - 1) / 2;
  if (count > MESSAGE_TRACE_ENTRIES_MAX) throw invalid(at, 'trace', 'names too many entries');
  const entries: { index: number; traceparent: string }[] = new Array(count);
  for (let i = 0; i < count; i += 1) {
    entries[i] = { index: integer(value[1 + 2 * i], at, `trace[${i}].index`), traceparent: traceparent(value[2 + 2 * i], at, `trace[${i}].traceparent`) };
  }
  return { traceparent: traceparent(value[0], at, 'trace.traceparent'), entries };
}

// The codec checks only the shape of a traceparent; src/obs parses it (and ignores a bad one).
function traceparent(value: unknown, at: number, field: string): string {
  if (typeof value !== 'string' || value.length > MESSAGE_TRACEPARENT_CHARS_MAX) throw invalid(at, field, `is not a string of at most ${MESSAGE_TRACEPARENT_CHARS_MAX} characters`);
  return value;
}

function invalid(at: number, field: string, what: string): StrataError {
  const where = at < 0 ? 'message batch' : `message ${at}`;
  return new StrataError(ErrorCode.INVALID_ARGUMENT, `${where}: ${field} ${what}`, { details: { message: at, field } });
}

function exactLength(fields: unknown[], length: number, at: number): void {
  if (fields.length !== length) throw invalid(at, 'message', `has ${fields.length} fields, expected ${length}`);
}

function integer(value: unknown, at: number, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(at, field, 'is not a non-negative safe integer');
  }
  return value;
}

function boolean(value: unknown, at: number, field: string): boolean {
  if (typeof value !== 'boolean') throw invalid(at, field, 'is not a boolean');
  return value;
}

// msgpackr decodes bin to a Buffer viewing the frame; a plain Uint8Array view over the same
// memory keeps decoded messages deep-equal to what was sent without copying.
function bytes(value: unknown, at: number, field: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid(at, field, 'is not a byte string');
  return value.constructor === Uint8Array ? value : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

function optionalBytes(value: unknown, at: number, field: string): Uint8Array | undefined {
  if (value === null) return undefined;
  return bytes(value, at, field);
}

function nodeList(value: unknown, at: number, field: string): NodeId[] {
  const name = `snapshot.confState.${field}`;
  if (!Array.isArray(value)) throw invalid(at, name, 'is not an array');
  if (value.length > MESSAGE_CONF_NODES_MAX) throw invalid(at, name, 'is too long');
  const nodes: NodeId[] = new Array(value.length);
  for (let i = 0; i < value.length; i += 1) nodes[i] = integer(value[i], at, `${name}[${i}]`);
  return nodes;
}

/** ERROR_DETAILS_BYTES_MAX bounds the encoded details of an error carried in a peer call's reply. */
export const ERROR_DETAILS_BYTES_MAX = 65_536;

/**
 * encodeErrorDetails encodes a StrataError's details for a peer call's reply; details that
 * cannot be encoded, or are larger than ERROR_DETAILS_BYTES_MAX, travel as an empty map.
 */
export function encodeErrorDetails(details: Readonly<Record<string, unknown>>): Uint8Array {
  if (Object.keys(details).length === 0) return new Uint8Array(0);
  try {
    const encoded = packr.pack(details);
    return encoded.byteLength <= ERROR_DETAILS_BYTES_MAX ? encoded : new Uint8Array(0);
  } catch {
    return new Uint8Array(0);
  }
}

/** decodeErrorDetails decodes what encodeErrorDetails made; anything but a plain map gives {}. */
export function decodeErrorDetails(bytes: Uint8Array): Record<string, unknown> {
  if (bytes.byteLength === 0 || bytes.byteLength > ERROR_DETAILS_BYTES_MAX) return {};
  try {
    const value: unknown = unpackr.unpack(bytes);
    if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) return {};
    return value as Record<string, unknown>;
  } catch {
    return {};
  }
}

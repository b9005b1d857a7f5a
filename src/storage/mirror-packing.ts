// The packed byte layouts of the mirror calls on the Admin wire (proto/stratakv/admin.proto:
// MirrorApply.puts, MirrorScanResponse.puts, MirrorReplay.commands). src/server and src/client
// are siblings that may not import each other, and each side both encodes and decodes (a
// MirrorWrite is encoded by the client and decoded by the server, a MirrorScan answer the other
// way), so the layouts live here, beside the MirrorPut and MirrorRequest they carry.
//
// Why packed rather than repeated messages: a batch of --max-request-bytes holds thousands of
// puts or commands, and protobufjs would build objects (and four Longs per put) for each; this
// decodes in one pass into views of the received buffer.
//
//   puts     = per put: varint key length | key | varint value length | value |
//              varint createRevision | varint modRevision | varint version | varint lease
//   commands = per command: varint length | the entry's data
//
// Varints are protobuf's (base 128, least significant group first): the counters below 2^53,
// the lease id a u64 read exactly as a bigint. The bytes end exactly after the last item, and
// the count travels beside them: a decoder refuses any other shape with INVALID_ARGUMENT
// naming the wire field (`<prefix>.puts`, `<prefix>.put_count`, ...).

import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { MirrorPut } from './kv-types.ts';
import { LEASE_ID_MAX, MIRROR_REPLAY_COMMANDS_MAX } from './kv-types.ts';

/**
 * MIRROR_PUTS_PER_REQUEST_MAX bounds a put count before anything is allocated: the smallest put
 * takes 6 bytes (a one-byte key, an empty value, four one-byte varints), and a request is at
 * most --max-request-bytes plus gRPC's overhead allowance.
 */
export const MIRROR_PUTS_PER_REQUEST_MAX = 1 << 20;
// The fewest bytes one packed put takes (see MIRROR_PUTS_PER_REQUEST_MAX).
const PACKED_PUT_BYTES_MIN = 6;
// The fewest bytes one packed command takes (its length; an empty command decodes here and is
// refused by validation).
const PACKED_COMMAND_BYTES_MIN = 1;
// A varint of a safe integer takes at most 8 groups of 7 bits (53 bits).
const VARINT_GROUPS_MAX = 8;
// A varint of a u64 (the lease id) takes at most 10 groups, the last holding bit 63 alone.
const U64_VARINT_GROUPS_MAX = 10;

/**
 * encodePackedPuts lays puts out packed (see the file comment). The three counters must be
 * safe integers >= 0, the lease id a bigint from 0 to LEASE_ID_MAX, written exactly as a u64
 * varint (INVALID_ARGUMENT naming the put otherwise).
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
  const writer = new PackedWriter(size);
  for (const put of puts) {
    writer.bytes(put.key);
    writer.bytes(put.value);
    writer.varint(put.createRevision);
    writer.varint(put.modRevision);
    writer.varint(put.version);
    writer.u64Varint(put.lease);
  }
  return writer.finish();
}

/**
 * decodePackedPuts reads packed puts: exactly `count` puts that end exactly at the end of
 * `bytes`; INVALID_ARGUMENT on `<prefix>.puts` or `<prefix>.put_count` otherwise (details say
 * which put and what). Keys and values are views of `bytes`.
 */
export function decodePackedPuts(bytes: Uint8Array, count: number, prefix = 'apply'): MirrorPut[] {
  if (!Number.isSafeInteger(count) || count < 0 || count > MIRROR_PUTS_PER_REQUEST_MAX || count * PACKED_PUT_BYTES_MIN > bytes.byteLength) {
    throw invalid(`${prefix}.put_count`, `${prefix}.put_count ${count} puts cannot fit in ${bytes.byteLength} bytes of ${prefix}.puts`);
  }
  const reader = new PackedReader(bytes, `${prefix}.puts`, 'put');
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
  reader.end(count, `${prefix}.put_count`);
  return puts;
}

/** encodePackedCommands lays replayed commands out packed (see the file comment). */
export function encodePackedCommands(commands: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const command of commands) size += varintBytes(command.byteLength) + command.byteLength;
  const writer = new PackedWriter(size);
  for (const command of commands) writer.bytes(command);
  return writer.finish();
}

/**
 * decodePackedCommands reads packed commands: exactly `count` (at most
 * MIRROR_REPLAY_COMMANDS_MAX) that end exactly at the end of `bytes`; INVALID_ARGUMENT on
 * `<prefix>.commands` or `<prefix>.command_count` otherwise. The commands are views of `bytes`.
 */
export function decodePackedCommands(bytes: Uint8Array, count: number, prefix = 'replay'): Uint8Array[] {
  if (!Number.isSafeInteger(count) || count < 0 || count > MIRROR_REPLAY_COMMANDS_MAX || count * PACKED_COMMAND_BYTES_MIN > bytes.byteLength) {
    throw invalid(`${prefix}.command_count`, `${prefix}.command_count ${count} must be at most ${MIRROR_REPLAY_COMMANDS_MAX} commands and fit in ${bytes.byteLength} bytes of ${prefix}.commands`);
  }
  const reader = new PackedReader(bytes, `${prefix}.commands`, 'command');
  const commands: Uint8Array[] = new Array<Uint8Array>(count);
  for (let index = 0; index < count; index += 1) {
    reader.index = index;
    commands[index] = reader.bytes('data');
  }
  reader.end(count, `${prefix}.command_count`);
  return commands;
}

// PackedWriter fills a buffer sized exactly beforehand.
class PackedWriter {
  readonly #bytes: Uint8Array;
  #offset = 0;

  constructor(size: number) {
    this.#bytes = new Uint8Array(size);
  }

  varint(value: number): void {
    let rest = value;
    while (rest >= 0x80) {
      this.#put((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    this.#put(rest);
  }

  u64Varint(value: bigint): void {
    let rest = value;
    while (rest >= 0x80n) {
      this.#put(Number(rest & 0x7fn) | 0x80);
      rest >>= 7n;
    }
    this.#put(Number(rest));
  }

  bytes(data: Uint8Array): void {
    this.varint(data.byteLength);
    this.#bytes.set(data, this.#offset);
    this.#offset += data.byteLength;
  }

  finish(): Uint8Array {
    assert(this.#offset === this.#bytes.byteLength, 'a packed writer is sized exactly');
    return this.#bytes;
  }

  #put(byte: number): void {
    this.#bytes[this.#offset] = byte;
    this.#offset += 1;
  }
}

// PackedReader reads packed items, naming the field, the item and its part in what it refuses.
class PackedReader {
  readonly #bytes: Uint8Array;
  readonly #field: string;
  readonly #item: string;
  offset = 0;
  index = 0;

  constructor(bytes: Uint8Array, field: string, item: string) {
    this.#bytes = bytes;
    this.#field = field;
    this.#item = item;
  }

  bytes(part: string): Uint8Array {
    const length = this.varint(`${part} length`);
    if (length > this.#bytes.byteLength - this.offset) this.#fail(part, `its length ${length} passes the end of ${this.#field}`);
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
      if (byte === undefined) return this.#fail(part, `${this.#field} ends inside it`);
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
      if (byte === undefined) return this.#fail(part, `${this.#field} ends inside it`);
      this.offset += 1;
      if (group === U64_VARINT_GROUPS_MAX - 1 && byte > 1) return this.#fail(part, 'a varint past 64 bits');
      value |= BigInt(byte & 0x7f) << BigInt(7 * group);
      if ((byte & 0x80) === 0) return value;
    }
    return this.#fail(part, 'a varint longer than 10 bytes');
  }

  // end refuses bytes left after the last item.
  end(count: number, countField: string): void {
    if (this.offset === this.#bytes.byteLength) return;
    throw invalid(this.#field, `${this.#field} has ${this.#bytes.byteLength - this.offset} bytes after its ${count} ${this.#item}s (${countField})`, { count });
  }

  #fail(part: string, problem: string): never {
    throw invalid(this.#field, `${this.#field}: ${this.#item} ${this.index}'s ${part}: ${problem}`, { [this.#item]: this.index, part, offset: this.offset });
  }
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

function invalid(field: string, message: string, details: Record<string, unknown> = {}): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, message, { details: { ...details, field } });
}

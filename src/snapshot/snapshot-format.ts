// snapshot-format.ts — the bytes of a snapshot file, as pure functions (no I/O): an
// incremental encoder that turns records into blocks, and an incremental verifier that checks
// blocks in file order. Both stores, the receiver and the readers share this one
// implementation, so a file made by one store is byte-for-byte what the other reads.
//
// A file is whole 4096-byte units (SNAPSHOT_ALIGNMENT_BYTES), written and read with O_DIRECT:
//
//   header block (4096) | data block 0 | data block 1 | ... | footer block (4096)
//
// Header (4096 bytes, little-endian):
//   0  8  magic "STRKVSNP"
//   8  4  u32 format version (1)
//  12  4  u32 block bytes target (the encoder's, for information)
//  16  4  u32 masked CRC32c of bytes [0, 16)
//  20     zero to the end (checked)
//
// Data block (a multiple of 4096 bytes):
//   0  4  magic "SKVB"
//   4  4  u32 masked CRC32c of bytes [8, block end): the rest of the block header, the payload
//         and the padding, so every byte of the block is covered
//   8  4  u32 payload length
//  12  4  u32 record count
//  16  8  u64 block sequence (0, 1, 2, ...: a block reordered or copied from elsewhere is caught)
//  24  8  u64 reserved (0)
//  32     payload: one msgpack array [key1, value1, key2, value2, ...] of bin values, with the
//         32-bit array header (0xdd) so records are encoded in place; then zero padding
//
// Footer (the last 4096 bytes):
//   0  8  magic "STRKVEND"
//   8  4  u32 format version (1)
//  12  4  u32 metadata length L
//  16  L  msgpack map: index, term, confState {voters, learners, votersOutgoing,
//         learnersNext, autoLeave}, revision, members (bin), keyCount, blockCount,
//         contentBytes (file length - 4096), sha256 (32-byte bin: SHA-256 of every byte
//         before the footer), createdAtMs
//  16+L 4 u32 masked CRC32c of bytes [0, 16 + L)
//         zero to the end (checked)
// Format 3 differs in one field: a member table longer than SNAPSHOT_MEMBERS_INLINE_BYTES_MAX
// is stored deflated (raw DEFLATE, RFC 1951) as `membersDeflated` instead of `members`. It
// carries the migration journal, whose record can reach several KiB after a migration;
// inline, it broke every later snapshot ("members must be at most 2048 bytes", found by the
// chaos harness). A file whose table fits inline is still written as format 2.
// Format 4 adds the mirror state (src/storage's MirrorRequest: a cluster that is a read-only
// copy of another), as `mirror` (bin, up to MIRROR_STATE_FOOTER_BYTES_MAX) or, when longer,
// `mirrorDeflated` (raw DEFLATE); format 4 may deflate members as format 3 does. It is written
// only when the state machine is a mirror, so other files stay readable by older code, and an
// older member refuses a mirror's snapshot (an unknown version) rather than install it without
// the mirror state and take writes.
//
// Records are in strictly increasing byte-wise key order across the whole file. Integers in
// the fixed fields are little-endian; msgpack's own integers are big-endian, as msgpack says.
//
// The payload is msgpack, readable by msgpackr (and any msgpack library), but it is encoded
// and decoded here by hand: it is one shape (an array of bin), and writing it directly into
// the block is about five times faster than msgpackr's general packer on 1 KiB values
// (measured: ~5.5 GB/s against ~1 GB/s), which matters when SHA-256 already costs about 1 ms
// per MiB on the same thread. The footer's map is small and structured: msgpackr packs it.

import { createHash, type Hash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';

import { Packr, Unpackr } from 'msgpackr';

import { crc32c, maskCrc32c } from '../native/index.ts';
import type { ConfState } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { MIRROR_STATE_BYTES_MAX, MIRROR_STATE_FOOTER_BYTES_MAX } from '../storage/kv-types.ts';
import type { SnapshotDigest, SnapshotFileMetadata, SnapshotInfo, SnapshotRecord } from './snapshot-store.ts';

/** SNAPSHOT_ALIGNMENT_BYTES is the unit of every block's length and offset (O_DIRECT's). */
export const SNAPSHOT_ALIGNMENT_BYTES = 4096;

/**
 * SNAPSHOT_FORMAT_VERSION is the version the header and the footer carry. Version 2 adds the
 * state digest's roots to the footer (`digestFull`, `digestContent`); version-1 files are
 * still read (their metadata has no digest).
 */
export const SNAPSHOT_FORMAT_VERSION = 2;
/** SNAPSHOT_FORMAT_VERSION_DEFLATED_MEMBERS is the version of a footer whose member table is deflated. */
export const SNAPSHOT_FORMAT_VERSION_DEFLATED_MEMBERS = 3;
/** SNAPSHOT_FORMAT_VERSION_MIRROR is the version of a footer that carries a mirror state (its member table may be deflated too). */
export const SNAPSHOT_FORMAT_VERSION_MIRROR = 4;
const SNAPSHOT_FORMAT_VERSIONS_READ: readonly number[] = [1, 2, 3, 4];
const SNAPSHOT_DIGEST_BYTES = 16;

/** SNAPSHOT_HEADER_BYTES is the header block's length. */
export const SNAPSHOT_HEADER_BYTES = SNAPSHOT_ALIGNMENT_BYTES;

/** SNAPSHOT_FOOTER_BYTES is the footer block's length. */
export const SNAPSHOT_FOOTER_BYTES = SNAPSHOT_ALIGNMENT_BYTES;

/** SNAPSHOT_BLOCK_HEADER_BYTES is the fixed header in front of every data block's payload. */
export const SNAPSHOT_BLOCK_HEADER_BYTES = 32;

/**
 * SNAPSHOT_BLOCK_BYTES_TARGET is how large a data block grows, header and padding included,
 * unless one record alone is larger (1 MiB): large enough that the per-block costs (a CRC
 * call, a header, a hash update, a yield to the consumer) vanish, small enough that a torn or
 * refused transfer loses little and a reader holds little. Four blocks fill one 4 MiB write.
 */
export const SNAPSHOT_BLOCK_BYTES_TARGET = 1 << 20;

/** SNAPSHOT_BLOCK_BYTES_MAX bounds one data block (16 MiB): a record that would not fit is refused. */
export const SNAPSHOT_BLOCK_BYTES_MAX = 16 << 20;

/**
 * SNAPSHOT_MEMBERS_BYTES_MAX bounds the member table (before deflating): the member list, the
 * removed ids and the migration journal (whose record is at most 64 KiB). The footer must
 * still fit in one 4096-byte block, deflated table included; a table that does not is refused
 * when the snapshot is written (INVALID_ARGUMENT), never silently cut.
 */
export const SNAPSHOT_MEMBERS_BYTES_MAX = 96 * 1024;

/** SNAPSHOT_MEMBERS_INLINE_BYTES_MAX: a longer member table is stored deflated (format 3). */
export const SNAPSHOT_MEMBERS_INLINE_BYTES_MAX = 2048;

/** SNAPSHOT_CONF_NODES_MAX bounds each node list of the footer's configuration. */
export const SNAPSHOT_CONF_NODES_MAX = 64;

/** SNAPSHOT_FILE_BYTES_MAX bounds a snapshot file (1 TiB). */
export const SNAPSHOT_FILE_BYTES_MAX = 2 ** 40;

/** SNAPSHOT_MIN_BYTES is the smallest file: a header and a footer, no data block. */
export const SNAPSHOT_MIN_BYTES = SNAPSHOT_HEADER_BYTES + SNAPSHOT_FOOTER_BYTES;

/** SNAPSHOT_SHA256_BYTES is the length of the content digest. */
export const SNAPSHOT_SHA256_BYTES = 32;

const HEADER_MAGIC = Uint8Array.from(Buffer.from('STRKVSNP', 'latin1'));

/** SNAPSHOT_HEADER_MAGIC_BYTES is the length of the magic every snapshot file starts with. */
export const SNAPSHOT_HEADER_MAGIC_BYTES = HEADER_MAGIC.byteLength;

/**
 * isSnapshotHeader tells whether `bytes` start with a stratakv snapshot's magic: a file that
 * does not is something else (an etcd snapshot is a bbolt file), not a damaged snapshot.
 */
export function isSnapshotHeader(bytes: Uint8Array): boolean {
  return bytes.byteLength >= HEADER_MAGIC.byteLength && startsWith(bytes, HEADER_MAGIC);
}
const FOOTER_MAGIC = Uint8Array.from(Buffer.from('STRKVEND', 'latin1'));
// "SKVB" read as a little-endian u32.
const BLOCK_MAGIC = 0x42564b53;
const HEADER_CRC_OFFSET = 16;
const FOOTER_FIXED_BYTES = 16;
const CRC_BYTES = 4;
// The block fields, by offset.
const BLOCK_CRC_OFFSET = 4;
const BLOCK_PAYLOAD_LENGTH_OFFSET = 8;
const BLOCK_RECORD_COUNT_OFFSET = 12;
const BLOCK_SEQUENCE_OFFSET = 16;
const BLOCK_RESERVED_OFFSET = 24;
// msgpack tags of the payload: array32 (what we write), array16 and fixarray (what msgpackr
// writes for shorter arrays; accepted so a payload packed by msgpackr reads too), bin8/16/32.
const MSGPACK_ARRAY32 = 0xdd;
const MSGPACK_ARRAY16 = 0xdc;
const MSGPACK_FIXARRAY = 0x90;
const MSGPACK_FIXARRAY_MASK = 0xf0;
const MSGPACK_BIN8 = 0xc4;
const MSGPACK_BIN16 = 0xc5;
const MSGPACK_BIN32 = 0xc6;
const ARRAY32_HEADER_BYTES = 5;
const TWO_POW_32 = 0x1_0000_0000;
const U32_MAX = 0xffff_ffff;

// The footer map: plain msgpack (no records extension), so any msgpack reader can read it.
const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

// A block of zeros to compare padding against.
const ZEROS = new Uint8Array(SNAPSHOT_ALIGNMENT_BYTES);

/** SnapshotFooter is what the footer says: the metadata and what the content must add up to. */
export interface SnapshotFooter {
  readonly metadata: SnapshotFileMetadata;
  readonly keyCount: number;
  readonly blockCount: number;
  /** The file's length minus the footer: the bytes the SHA-256 covers. */
  readonly contentBytes: number;
  readonly sha256: Uint8Array;
  readonly createdAtMs: number;
}

/** SnapshotHeader is what the header block says. */
export interface SnapshotHeader {
  readonly version: number;
  readonly blockBytesTarget: number;
}

/** alignUp rounds `byteLength` up to a multiple of SNAPSHOT_ALIGNMENT_BYTES. */
export function alignUp(byteLength: number): number {
  return Math.ceil(byteLength / SNAPSHOT_ALIGNMENT_BYTES) * SNAPSHOT_ALIGNMENT_BYTES;
}

/** isSnapshotFileLength tells whether a file of `byteLength` bytes could be a snapshot. */
export function isSnapshotFileLength(byteLength: number): boolean {
  return (
    Number.isSafeInteger(byteLength) &&
    byteLength >= SNAPSHOT_MIN_BYTES &&
    byteLength <= SNAPSHOT_FILE_BYTES_MAX &&
    byteLength % SNAPSHOT_ALIGNMENT_BYTES === 0
  );
}

const SNAPSHOT_ID_PATTERN = /^([0-9a-f]{16})-([0-9a-f]{16})$/;

/** parseSnapshotId returns the (term, index) an id names, or undefined when it is not an id. */
export function parseSnapshotId(id: string): { term: number; index: number } | undefined {
  const match = SNAPSHOT_ID_PATTERN.exec(id);
  if (match === null || match[1] === undefined || match[2] === undefined) return undefined;
  const term = Number.parseInt(match[1], 16);
  const index = Number.parseInt(match[2], 16);
  if (!Number.isSafeInteger(term) || !Number.isSafeInteger(index)) return undefined;
  return { term, index };
}

/** sha256Hex writes a digest as lower-case hex. */
export function sha256Hex(digest: Uint8Array): string {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex');
}

/** snapshotInfoOf describes a verified file from its footer. */
export function snapshotInfoOf(id: string, location: string, byteLength: number, footer: SnapshotFooter): SnapshotInfo {
  return {
    id,
    index: footer.metadata.index,
    term: footer.metadata.term,
    revision: footer.metadata.revision,
    keyCount: footer.keyCount,
    byteLength,
    sha256: sha256Hex(footer.sha256),
    location,
  };
}

// ---------------------------------------------------------------------------------------
// Errors

/** SnapshotCorruptionPlace says where in a file a check failed, for CORRUPTION's message and details. */
export interface SnapshotCorruptionPlace {
  readonly location: string;
  readonly offset: number;
  readonly block: 'header' | 'data' | 'footer' | 'file';
  readonly blockSequence?: number | undefined;
}

/**
 * snapshotCorruption builds the CORRUPTION error for a failed check: the message names the
 * file, the block and its offset ("snapshot /x/y.snap: block 17 at offset 17829888 fails its
 * CRC32c"); `details` carries {location, block, blockSequence, offset, reason}.
 */
export function snapshotCorruption(place: SnapshotCorruptionPlace, reason: string): StrataError {
  const what =
    place.block === 'data'
      ? `block ${place.blockSequence ?? '?'} at offset ${place.offset}`
      : place.block === 'file'
        ? 'file'
        : `${place.block} at offset ${place.offset}`;
  return new StrataError(ErrorCode.CORRUPTION, `snapshot ${place.location}: ${what} ${reason}`, {
    details: {
      location: place.location,
      block: place.block,
      blockSequence: place.blockSequence,
      offset: place.offset,
      reason,
    },
  });
}

function invalidArgument(message: string, details: Record<string, unknown> = {}): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, message, { details });
}

// ---------------------------------------------------------------------------------------
// Little-endian helpers over a block (a DataView per call would allocate; these read bytes).

function readU32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] ?? 0) | ((bytes[offset + 1] ?? 0) << 8) | ((bytes[offset + 2] ?? 0) << 16) | ((bytes[offset + 3] ?? 0) << 24)) >>> 0;
}

function writeU32(bytes: Uint8Array, offset: number, value: number): void {
  assert(Number.isInteger(value) && value >= 0 && value <= U32_MAX, `u32: ${value} out of range`);
  bytes[offset] = value & 0xff;
  bytes[offset + 1] = (value >>> 8) & 0xff;
  bytes[offset + 2] = (value >>> 16) & 0xff;
  bytes[offset + 3] = (value >>> 24) & 0xff;
}

// A u64 that must be a safe integer; undefined when it is not (corrupt).
function readU64(bytes: Uint8Array, offset: number): number | undefined {
  const high = readU32(bytes, offset + 4);
  if (high > 0x1f_ffff) return undefined;
  return high * TWO_POW_32 + readU32(bytes, offset);
}

function writeU64(bytes: Uint8Array, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64: ${value} is not a non-negative safe integer`);
  writeU32(bytes, offset, value % TWO_POW_32);
  writeU32(bytes, offset + 4, Math.floor(value / TWO_POW_32));
}

function isZero(bytes: Uint8Array): boolean {
  for (let at = 0; at < bytes.byteLength; at += ZEROS.byteLength) {
    const piece = bytes.subarray(at, Math.min(bytes.byteLength, at + ZEROS.byteLength));
    if (Buffer.compare(piece, ZEROS.subarray(0, piece.byteLength)) !== 0) return false;
  }
  return true;
}

function startsWith(bytes: Uint8Array, magic: Uint8Array): boolean {
  return bytes.byteLength >= magic.byteLength && Buffer.compare(bytes.subarray(0, magic.byteLength), magic) === 0;
}

function blockCrc(block: Uint8Array): number {
  return maskCrc32c(crc32c(block.subarray(BLOCK_CRC_OFFSET + CRC_BYTES)));
}

// ---------------------------------------------------------------------------------------
// Metadata checks (at write time: INVALID_ARGUMENT)

function checkCount(value: unknown, field: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(`snapshot metadata: ${field} ${String(value)} is not a non-negative safe integer`, { field });
  }
}

function checkNodes(nodes: readonly number[], field: string): void {
  if (!Array.isArray(nodes) || nodes.length > SNAPSHOT_CONF_NODES_MAX) {
    throw invalidArgument(`snapshot metadata: confState.${field} is not a list of at most ${SNAPSHOT_CONF_NODES_MAX} nodes`, { field });
  }
  for (const node of nodes) checkCount(node, `confState.${field}`);
}

/** checkSnapshotMetadata refuses metadata a footer cannot carry, with INVALID_ARGUMENT. */
export function checkSnapshotMetadata(metadata: SnapshotFileMetadata): void {
  checkCount(metadata.index, 'index');
  checkCount(metadata.term, 'term');
  checkCount(metadata.revision, 'revision');
  const conf = metadata.confState;
  checkNodes(conf.voters, 'voters');
  checkNodes(conf.learners, 'learners');
  checkNodes(conf.votersOutgoing, 'votersOutgoing');
  checkNodes(conf.learnersNext, 'learnersNext');
  if (typeof conf.autoLeave !== 'boolean') throw invalidArgument('snapshot metadata: confState.autoLeave is not a boolean');
  const digest = metadata.digest;
  if (
    digest !== undefined &&
    (!(digest.full instanceof Uint8Array) || digest.full.byteLength !== SNAPSHOT_DIGEST_BYTES || !(digest.content instanceof Uint8Array) || digest.content.byteLength !== SNAPSHOT_DIGEST_BYTES)
  ) {
    throw invalidArgument(`snapshot metadata: digest must hold two ${SNAPSHOT_DIGEST_BYTES}-byte roots (full, content)`);
  }
  const mirror = metadata.mirror;
  if (mirror !== undefined && (!(mirror instanceof Uint8Array) || mirror.byteLength > MIRROR_STATE_BYTES_MAX)) {
    throw invalidArgument(`snapshot metadata: mirror must be at most ${MIRROR_STATE_BYTES_MAX} bytes`, { mirrorBytes: (mirror as { byteLength?: number } | null)?.byteLength });
  }
  if (!(metadata.members instanceof Uint8Array) || metadata.members.byteLength > SNAPSHOT_MEMBERS_BYTES_MAX) {
    throw invalidArgument(`snapshot metadata: members must be at most ${SNAPSHOT_MEMBERS_BYTES_MAX} bytes`, {
      membersBytes: metadata.members?.byteLength,
    });
  }
}

// ---------------------------------------------------------------------------------------
// Header and footer

/** encodeSnapshotHeader returns the header block. */
export function encodeSnapshotHeader(blockBytesTarget: number): Uint8Array {
  checkBlockBytesTarget(blockBytesTarget);
  const header = new Uint8Array(SNAPSHOT_HEADER_BYTES);
  header.set(HEADER_MAGIC, 0);
  writeU32(header, 8, SNAPSHOT_FORMAT_VERSION);
  writeU32(header, 12, blockBytesTarget);
  writeU32(header, HEADER_CRC_OFFSET, maskCrc32c(crc32c(header.subarray(0, HEADER_CRC_OFFSET))));
  return header;
}

/** decodeSnapshotHeader checks a header block (CORRUPTION naming `location` when it is not one). */
export function decodeSnapshotHeader(block: Uint8Array, location: string): SnapshotHeader {
  const place: SnapshotCorruptionPlace = { location, offset: 0, block: 'header' };
  if (block.byteLength !== SNAPSHOT_HEADER_BYTES) throw snapshotCorruption(place, `is ${block.byteLength} bytes, not ${SNAPSHOT_HEADER_BYTES}`);
  if (!startsWith(block, HEADER_MAGIC)) throw snapshotCorruption(place, 'has no snapshot magic (not a snapshot file)');
  if (readU32(block, HEADER_CRC_OFFSET) !== maskCrc32c(crc32c(block.subarray(0, HEADER_CRC_OFFSET)))) {
    throw snapshotCorruption(place, 'fails its CRC32c');
  }
  const version = readU32(block, 8);
  if (!SNAPSHOT_FORMAT_VERSIONS_READ.includes(version)) throw snapshotCorruption(place, `has format version ${version}, this code reads ${SNAPSHOT_FORMAT_VERSIONS_READ.join(' and ')}`);
  const blockBytesTarget = readU32(block, 12);
  if (!isBlockBytesTarget(blockBytesTarget)) throw snapshotCorruption(place, `has a bad block target ${blockBytesTarget}`);
  if (!isZero(block.subarray(HEADER_CRC_OFFSET + CRC_BYTES))) throw snapshotCorruption(place, 'has non-zero bytes after its CRC');
  return { version, blockBytesTarget };
}

interface FooterMap {
  index: number;
  term: number;
  confState: { voters: number[]; learners: number[]; votersOutgoing: number[]; learnersNext: number[]; autoLeave: boolean };
  revision: number;
  members?: Uint8Array;
  membersDeflated?: Uint8Array;
  digestFull: Uint8Array | undefined;
  digestContent: Uint8Array | undefined;
  mirror?: Uint8Array;
  mirrorDeflated?: Uint8Array;
  keyCount: number;
  blockCount: number;
  contentBytes: number;
  sha256: Uint8Array;
  createdAtMs: number;
}

/**
 * encodeSnapshotFooter returns the footer block; INVALID_ARGUMENT when the metadata does not
 * fit in it (a member table near SNAPSHOT_MEMBERS_BYTES_MAX with a large configuration).
 */
export function encodeSnapshotFooter(footer: SnapshotFooter): Uint8Array {
  checkSnapshotMetadata(footer.metadata);
  for (const field of ['keyCount', 'blockCount', 'contentBytes', 'createdAtMs'] as const) checkCount(footer[field], field);
  assert(footer.sha256.byteLength === SNAPSHOT_SHA256_BYTES, 'a footer carries a 32-byte SHA-256');
  const { metadata } = footer;
  const deflated = metadata.members.byteLength > SNAPSHOT_MEMBERS_INLINE_BYTES_MAX;
  const mirror = metadata.mirror;
  // A state the copier keeps short is readable in a dump as it is; a longer one is deflated
  // (src/storage refuses, before proposing, one that would not deflate into its share).
  const mirrorField = mirror === undefined ? {} : mirror.byteLength <= MIRROR_STATE_FOOTER_BYTES_MAX ? { mirror } : { mirrorDeflated: deflateRawSync(mirror) };
  const map: FooterMap = {
    index: metadata.index,
    term: metadata.term,
    confState: {
      voters: [...metadata.confState.voters],
      learners: [...metadata.confState.learners],
      votersOutgoing: [...metadata.confState.votersOutgoing],
      learnersNext: [...metadata.confState.learnersNext],
      autoLeave: metadata.confState.autoLeave,
    },
    revision: metadata.revision,
    ...(deflated ? { membersDeflated: deflateRawSync(metadata.members) } : { members: metadata.members }),
    digestFull: metadata.digest?.full,
    digestContent: metadata.digest?.content,
    ...mirrorField,
    keyCount: footer.keyCount,
    blockCount: footer.blockCount,
    contentBytes: footer.contentBytes,
    sha256: footer.sha256,
    createdAtMs: footer.createdAtMs,
  };
  const encoded = packr.pack(map);
  if (FOOTER_FIXED_BYTES + encoded.byteLength + CRC_BYTES > SNAPSHOT_FOOTER_BYTES) {
    throw invalidArgument(
      `snapshot metadata does not fit in the ${SNAPSHOT_FOOTER_BYTES}-byte footer (${encoded.byteLength} bytes encoded; member table ${metadata.members.byteLength} bytes${deflated ? `, ${map.membersDeflated?.byteLength ?? 0} deflated` : ''}${mirror === undefined ? '' : `; mirror state ${mirror.byteLength} bytes${map.mirrorDeflated === undefined ? '' : `, ${map.mirrorDeflated.byteLength} deflated`}`})`,
      { metadataBytes: encoded.byteLength, membersBytes: metadata.members.byteLength, mirrorBytes: mirror?.byteLength },
    );
  }
  const block = new Uint8Array(SNAPSHOT_FOOTER_BYTES);
  block.set(FOOTER_MAGIC, 0);
  writeU32(block, 8, mirror !== undefined ? SNAPSHOT_FORMAT_VERSION_MIRROR : deflated ? SNAPSHOT_FORMAT_VERSION_DEFLATED_MEMBERS : SNAPSHOT_FORMAT_VERSION);
  writeU32(block, 12, encoded.byteLength);
  block.set(encoded, FOOTER_FIXED_BYTES);
  const crcOffset = FOOTER_FIXED_BYTES + encoded.byteLength;
  writeU32(block, crcOffset, maskCrc32c(crc32c(block.subarray(0, crcOffset))));
  return block;
}

/** decodeSnapshotFooter checks a footer block found at `offset` and returns what it says. */
export function decodeSnapshotFooter(block: Uint8Array, location: string, offset: number): SnapshotFooter {
  const place: SnapshotCorruptionPlace = { location, offset, block: 'footer' };
  if (block.byteLength !== SNAPSHOT_FOOTER_BYTES) throw snapshotCorruption(place, `is ${block.byteLength} bytes, not ${SNAPSHOT_FOOTER_BYTES}`);
  if (!startsWith(block, FOOTER_MAGIC)) throw snapshotCorruption(place, 'has no footer magic (truncated or damaged file)');
  const metadataBytes = readU32(block, 12);
  if (FOOTER_FIXED_BYTES + metadataBytes + CRC_BYTES > SNAPSHOT_FOOTER_BYTES) {
    throw snapshotCorruption(place, `claims ${metadataBytes} bytes of metadata, more than fit`);
  }
  const crcOffset = FOOTER_FIXED_BYTES + metadataBytes;
  if (readU32(block, crcOffset) !== maskCrc32c(crc32c(block.subarray(0, crcOffset)))) throw snapshotCorruption(place, 'fails its CRC32c');
  const version = readU32(block, 8);
  if (!SNAPSHOT_FORMAT_VERSIONS_READ.includes(version)) throw snapshotCorruption(place, `has format version ${version}, this code reads ${SNAPSHOT_FORMAT_VERSIONS_READ.join(' and ')}`);
  if (!isZero(block.subarray(crcOffset + CRC_BYTES))) throw snapshotCorruption(place, 'has non-zero bytes after its CRC');
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(block.subarray(FOOTER_FIXED_BYTES, crcOffset));
  } catch (cause) {
    throw snapshotCorruption(place, `has metadata that is not msgpack (${(cause as Error).message})`);
  }
  return footerFromMap(decoded, place, version);
}

function footerFromMap(decoded: unknown, place: SnapshotCorruptionPlace, version: number): SnapshotFooter {
  const bad = (field: string): StrataError => snapshotCorruption(place, `has a bad metadata field ${field}`);
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) throw bad('(not a map)');
  const map = decoded as Record<string, unknown>;
  const count = (field: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw bad(field);
    return value;
  };
  const bytes = (field: string, value: unknown): Uint8Array => {
    if (!(value instanceof Uint8Array)) throw bad(field);
    // A plain copy: msgpackr's Buffer views the footer block, which a reader may reuse.
    return new Uint8Array(value);
  };
  const nodes = (field: string, value: unknown): number[] => {
    if (!Array.isArray(value) || value.length > SNAPSHOT_CONF_NODES_MAX) throw bad(`confState.${field}`);
    return value.map((node) => count(`confState.${field}`, node));
  };
  const conf = map['confState'];
  if (typeof conf !== 'object' || conf === null || Array.isArray(conf)) throw bad('confState');
  const confMap = conf as Record<string, unknown>;
  if (typeof confMap['autoLeave'] !== 'boolean') throw bad('confState.autoLeave');
  const confState: ConfState = {
    voters: nodes('voters', confMap['voters']),
    learners: nodes('learners', confMap['learners']),
    votersOutgoing: nodes('votersOutgoing', confMap['votersOutgoing']),
    learnersNext: nodes('learnersNext', confMap['learnersNext']),
    autoLeave: confMap['autoLeave'],
  };
  const sha256 = bytes('sha256', map['sha256']);
  if (sha256.byteLength !== SNAPSHOT_SHA256_BYTES) throw bad('sha256');
  let members: Uint8Array;
  if (version >= SNAPSHOT_FORMAT_VERSION_DEFLATED_MEMBERS && map['membersDeflated'] !== undefined) {
    const deflatedMembers = bytes('membersDeflated', map['membersDeflated']);
    try {
      members = new Uint8Array(inflateRawSync(deflatedMembers, { maxOutputLength: SNAPSHOT_MEMBERS_BYTES_MAX }));
    } catch (cause) {
      throw snapshotCorruption(place, `has a member table that does not inflate within ${SNAPSHOT_MEMBERS_BYTES_MAX} bytes (${(cause as Error).message})`);
    }
  } else {
    members = bytes('members', map['members']);
  }
  if (members.byteLength > SNAPSHOT_MEMBERS_BYTES_MAX) throw bad('members');
  let digest: SnapshotDigest | undefined;
  // Format 2 carries the digest whenever the writer had one (src/node always has).
  if (version >= 2 && (map['digestFull'] !== undefined || map['digestContent'] !== undefined)) {
    const full = bytes('digestFull', map['digestFull']);
    const content = bytes('digestContent', map['digestContent']);
    if (full.byteLength !== SNAPSHOT_DIGEST_BYTES) throw bad('digestFull');
    if (content.byteLength !== SNAPSHOT_DIGEST_BYTES) throw bad('digestContent');
    digest = { full, content };
  }
  const mirror = mirrorFromMap(map, version, bad, place);
  return {
    metadata: {
      index: count('index', map['index']),
      term: count('term', map['term']),
      confState,
      revision: count('revision', map['revision']),
      members,
      ...(digest === undefined ? {} : { digest }),
      ...(mirror === undefined ? {} : { mirror }),
    },
    keyCount: count('keyCount', map['keyCount']),
    blockCount: count('blockCount', map['blockCount']),
    contentBytes: count('contentBytes', map['contentBytes']),
    sha256,
    createdAtMs: count('createdAtMs', map['createdAtMs']),
  };
}

// mirrorFromMap reads the mirror state of a format-4 footer (undefined: none). An older
// format has none: a mirror field there is damage, not something to drop.
function mirrorFromMap(map: Record<string, unknown>, version: number, bad: (field: string) => StrataError, place: SnapshotCorruptionPlace): Uint8Array | undefined {
  const raw = map['mirror'];
  const deflatedMirror = map['mirrorDeflated'];
  if (raw === undefined && deflatedMirror === undefined) return undefined;
  if (version < SNAPSHOT_FORMAT_VERSION_MIRROR || (raw !== undefined && deflatedMirror !== undefined)) throw bad('mirror');
  let mirror: Uint8Array;
  if (raw !== undefined) {
    if (!(raw instanceof Uint8Array)) throw bad('mirror');
    mirror = new Uint8Array(raw);
  } else {
    if (!(deflatedMirror instanceof Uint8Array)) throw bad('mirrorDeflated');
    try {
      mirror = new Uint8Array(inflateRawSync(deflatedMirror, { maxOutputLength: MIRROR_STATE_BYTES_MAX }));
    } catch (cause) {
      throw snapshotCorruption(place, `has a mirror state that does not inflate within ${MIRROR_STATE_BYTES_MAX} bytes (${(cause as Error).message})`);
    }
  }
  if (mirror.byteLength > MIRROR_STATE_BYTES_MAX) throw bad('mirror');
  return mirror;
}

function isBlockBytesTarget(value: number): boolean {
  return (
    Number.isSafeInteger(value) &&
    value >= SNAPSHOT_ALIGNMENT_BYTES &&
    value <= SNAPSHOT_BLOCK_BYTES_MAX &&
    value % SNAPSHOT_ALIGNMENT_BYTES === 0
  );
}

/** checkBlockBytesTarget refuses a data block target the format does not allow (INVALID_ARGUMENT). */
export function checkBlockBytesTarget(value: number): void {
  if (!isBlockBytesTarget(value)) {
    throw invalidArgument(
      `snapshot block target ${value} must be a multiple of ${SNAPSHOT_ALIGNMENT_BYTES} in [${SNAPSHOT_ALIGNMENT_BYTES}, ${SNAPSHOT_BLOCK_BYTES_MAX}]`,
      { blockBytesTarget: value },
    );
  }
}

// ---------------------------------------------------------------------------------------
// Data blocks

function binHeaderBytes(length: number): number {
  return length < 0x100 ? 2 : length < 0x1_0000 ? 3 : 5;
}

/** DecodedDataBlock is what one checked data block holds. */
export interface DecodedDataBlock {
  readonly sequence: number;
  readonly recordCount: number;
  /** The records, as views into the block's bytes; present when asked for. */
  readonly records: SnapshotRecord[] | undefined;
  /** The last key of the block (a copy), or undefined for a block without records. */
  readonly lastKey: Uint8Array | undefined;
}

/**
 * dataBlockLength reads the length of the data block whose first bytes are `head` (at least
 * SNAPSHOT_BLOCK_HEADER_BYTES of them), checking its magic and length bound.
 */
export function dataBlockLength(head: Uint8Array, place: SnapshotCorruptionPlace): number {
  assert(head.byteLength >= SNAPSHOT_BLOCK_HEADER_BYTES, 'dataBlockLength needs the whole block header');
  if (readU32(head, 0) !== BLOCK_MAGIC) throw snapshotCorruption(place, 'has no block magic (damaged, or not a block boundary)');
  const payloadLength = readU32(head, BLOCK_PAYLOAD_LENGTH_OFFSET);
  if (SNAPSHOT_BLOCK_HEADER_BYTES + payloadLength > SNAPSHOT_BLOCK_BYTES_MAX) {
    throw snapshotCorruption(place, `claims a ${payloadLength}-byte payload, beyond the ${SNAPSHOT_BLOCK_BYTES_MAX}-byte block bound`);
  }
  return alignUp(SNAPSHOT_BLOCK_HEADER_BYTES + payloadLength);
}

/**
 * decodeDataBlock checks one whole data block at `offset`: magic, CRC32c, reserved field, the
 * sequence (when `expectedSequence` is given), the payload's msgpack framing and record
 * count, and strictly increasing keys (after `previousKey`, when given). CORRUPTION names the
 * block. With `wantRecords` the records come back as views into `block`.
 */
export function decodeDataBlock(
  block: Uint8Array,
  location: string,
  offset: number,
  expectedSequence: number | undefined,
  previousKey: Uint8Array | undefined,
  wantRecords: boolean,
): DecodedDataBlock {
  const place: SnapshotCorruptionPlace = { location, offset, block: 'data', blockSequence: expectedSequence };
  const length = dataBlockLength(block, place);
  if (length !== block.byteLength) throw snapshotCorruption(place, `is ${block.byteLength} bytes where its header says ${length}`);
  if (readU32(block, BLOCK_CRC_OFFSET) !== blockCrc(block)) throw snapshotCorruption(place, 'fails its CRC32c');
  const sequence = readU64(block, BLOCK_SEQUENCE_OFFSET);
  const named: SnapshotCorruptionPlace = { ...place, blockSequence: sequence ?? expectedSequence };
  if (sequence === undefined || (expectedSequence !== undefined && sequence !== expectedSequence)) {
    throw snapshotCorruption(named, `has sequence ${sequence ?? 'beyond 2^53'}, expected ${expectedSequence} (blocks out of order or from another file)`);
  }
  if (readU32(block, BLOCK_RESERVED_OFFSET) !== 0 || readU32(block, BLOCK_RESERVED_OFFSET + 4) !== 0) {
    throw snapshotCorruption(named, 'has a non-zero reserved field');
  }
  const recordCount = readU32(block, BLOCK_RECORD_COUNT_OFFSET);
  const payloadEnd = SNAPSHOT_BLOCK_HEADER_BYTES + readU32(block, BLOCK_PAYLOAD_LENGTH_OFFSET);
  return decodePayload(block, payloadEnd, recordCount, named, previousKey, wantRecords, sequence);
}

function decodePayload(
  block: Uint8Array,
  payloadEnd: number,
  recordCount: number,
  place: SnapshotCorruptionPlace,
  previousKey: Uint8Array | undefined,
  wantRecords: boolean,
  sequence: number,
): DecodedDataBlock {
  const bad = (reason: string): StrataError => snapshotCorruption(place, reason);
  let at = SNAPSHOT_BLOCK_HEADER_BYTES;
  const tag = block[at] ?? 0;
  let itemCount: number;
  if (tag === MSGPACK_ARRAY32) {
    itemCount = readBigEndian(block, at + 1, 4);
    at += 5;
  } else if (tag === MSGPACK_ARRAY16) {
    itemCount = readBigEndian(block, at + 1, 2);
    at += 3;
  } else if ((tag & MSGPACK_FIXARRAY_MASK) === MSGPACK_FIXARRAY) {
    itemCount = tag & 0x0f;
    at += 1;
  } else {
    throw bad('has a payload that is not a msgpack array');
  }
  if (itemCount !== recordCount * 2) throw bad(`has ${itemCount} payload items for ${recordCount} records`);
  const records: SnapshotRecord[] | undefined = wantRecords ? new Array<SnapshotRecord>(recordCount) : undefined;
  const buffer = block.buffer;
  const base = block.byteOffset;
  let lastKey = previousKey;
  for (let record = 0; record < recordCount; record += 1) {
    let key: Uint8Array | undefined;
    for (let half = 0; half < 2; half += 1) {
      if (at >= payloadEnd) throw bad('has a payload that ends inside a record');
      const binTag = block[at];
      let length: number;
      if (binTag === MSGPACK_BIN8) {
        length = block[at + 1] ?? 0;
        at += 2;
      } else if (binTag === MSGPACK_BIN16) {
        length = readBigEndian(block, at + 1, 2);
        at += 3;
      } else if (binTag === MSGPACK_BIN32) {
        length = readBigEndian(block, at + 1, 4);
        at += 5;
      } else {
        throw bad(`has a payload item ${record * 2 + half} that is not msgpack bin`);
      }
      if (at + length > payloadEnd) throw bad('has a payload item that runs past the payload');
      if (half === 0) {
        const view = new Uint8Array(buffer, base + at, length);
        if (lastKey !== undefined && Buffer.compare(lastKey, view) >= 0) {
          throw bad(`has key ${record} out of order (keys must strictly increase)`);
        }
        lastKey = view;
        key = view;
      } else if (records !== undefined) {
        assert(key !== undefined, 'a value follows its key');
        records[record] = { key, value: new Uint8Array(buffer, base + at, length) };
      }
      at += length;
    }
  }
  if (at !== payloadEnd) throw bad(`has ${payloadEnd - at} bytes after its last record`);
  // A copy: the block's memory may be reused for the next read, the key must survive it.
  const blockLastKey = recordCount > 0 && lastKey !== undefined ? lastKey.slice() : undefined;
  return { sequence, recordCount, records, lastKey: blockLastKey };
}

function readBigEndian(bytes: Uint8Array, offset: number, width: 2 | 4): number {
  if (width === 2) return ((bytes[offset] ?? 0) << 8) | (bytes[offset + 1] ?? 0);
  return (((bytes[offset] ?? 0) << 24) | ((bytes[offset + 1] ?? 0) << 16) | ((bytes[offset + 2] ?? 0) << 8) | (bytes[offset + 3] ?? 0)) >>> 0;
}

// ---------------------------------------------------------------------------------------
// The encoder

/** SnapshotEncoderOptions: the metadata for the footer, the creation time, the block target. */
export interface SnapshotEncoderOptions {
  readonly metadata: SnapshotFileMetadata;
  /** Wall-clock milliseconds recorded in the footer (informational: not covered by the content SHA-256). */
  readonly createdAtMs: number;
  /** Data block target (default SNAPSHOT_BLOCK_BYTES_TARGET); tests use small ones to get many blocks. */
  readonly blockBytesTarget?: number;
  /**
   * When true the encoder does not hash: the caller hashes the blocks it takes (header
   * included, in order) itself, off the main thread, and hands the digest to footer().
   */
  readonly externalDigest?: boolean;
}

/** SnapshotEncoderResult is what the footer recorded. */
export interface SnapshotEncoderResult {
  readonly footer: SnapshotFooter;
  readonly byteLength: number;
}

/**
 * SnapshotEncoder turns records into the file's blocks, in file order:
 *
 *   const header = encoder.header();            // 4096 bytes, first
 *   for each batch: for (let from = 0; from < batch.length; ) {
 *     from += encoder.push(batch, from);        // stops when a block fills
 *     const block = encoder.takeBlock();        // a view, valid until the next push/finish
 *     if (block) write(block);
 *   }
 *   encoder.finish(); write(encoder.takeBlock()) if any; write(encoder.footer());
 *
 * Records are copied into the block as they are pushed, so a source may reuse its buffers
 * once push() returns. The SHA-256, key count and block count are computed as blocks are
 * taken; the footer carries them. Memory: one block (about the target) plus the footer.
 */
export class SnapshotEncoder {
  readonly blockBytesTarget: number;
  readonly #metadata: SnapshotFileMetadata;
  readonly #createdAtMs: number;
  // Undefined when the caller hashes (externalDigest).
  readonly #hash: Hash | undefined;
  // The block being filled: header room, then the array32 header, then the items.
  #staging: Uint8Array;
  #payloadEnd = SNAPSHOT_BLOCK_HEADER_BYTES + ARRAY32_HEADER_BYTES;
  #recordsInBlock = 0;
  // A sealed block waiting for takeBlock(); its bytes are #staging[0, #sealedBytes).
  #sealedBytes = 0;
  // The last key pushed (a reference to the caller's bytes until the next push: only
  // compared within one push, then copied).
  #lastKey: Uint8Array | undefined;
  #keyCount = 0;
  #blockCount = 0;
  #contentBytes = 0;
  #state: 'header' | 'records' | 'finished' | 'done' = 'header';

  constructor(options: SnapshotEncoderOptions) {
    checkSnapshotMetadata(options.metadata);
    checkCount(options.createdAtMs, 'createdAtMs');
    const target = options.blockBytesTarget ?? SNAPSHOT_BLOCK_BYTES_TARGET;
    checkBlockBytesTarget(target);
    this.blockBytesTarget = target;
    this.#metadata = options.metadata;
    this.#createdAtMs = options.createdAtMs;
    this.#hash = options.externalDigest === true ? undefined : createHash('sha256');
    this.#staging = new Uint8Array(target);
  }

  /** keyCount is how many records were pushed so far. */
  get keyCount(): number {
    return this.#keyCount;
  }

  /** header returns the header block; it comes first, once. */
  header(): Uint8Array {
    assert(this.#state === 'header', 'SnapshotEncoder.header() comes first, once');
    const header = encodeSnapshotHeader(this.blockBytesTarget);
    this.#hash?.update(header);
    this.#contentBytes += header.byteLength;
    this.#state = 'records';
    return header;
  }

  /**
   * push encodes records[from..] into the current block until it fills, and returns how many
   * it took (at least one unless a block is waiting in takeBlock()). INVALID_ARGUMENT when a
   * key does not follow the previous one or a record alone exceeds SNAPSHOT_BLOCK_BYTES_MAX.
   */
  push(records: readonly SnapshotRecord[], from = 0): number {
    assert(this.#state === 'records', `SnapshotEncoder.push() after ${this.#state}`);
    assert(this.#sealedBytes === 0, 'SnapshotEncoder.push(): take the sealed block first');
    assert(Number.isInteger(from) && from >= 0 && from <= records.length, 'SnapshotEncoder.push(): bad start');
    let taken = 0;
    for (let at = from; at < records.length; at += 1) {
      const record = records[at];
      assert(record !== undefined, 'records are dense');
      const { key, value } = record;
      if (!(key instanceof Uint8Array) || !(value instanceof Uint8Array)) {
        throw invalidArgument(`snapshot record ${this.#keyCount}: key and value must be Uint8Array`, { record: this.#keyCount });
      }
      if (this.#lastKey !== undefined && Buffer.compare(this.#lastKey, key) >= 0) {
        throw invalidArgument(`snapshot record ${this.#keyCount}: keys must strictly increase (byte-wise)`, { record: this.#keyCount });
      }
      const recordBytes = binHeaderBytes(key.byteLength) + key.byteLength + binHeaderBytes(value.byteLength) + value.byteLength;
      const end = this.#payloadEnd + recordBytes;
      if (alignUp(end) > this.blockBytesTarget && this.#recordsInBlock > 0) {
        this.#seal();
        break;
      }
      if (alignUp(end) > SNAPSHOT_BLOCK_BYTES_MAX) {
        throw invalidArgument(`snapshot record ${this.#keyCount}: ${recordBytes} bytes do not fit in one ${SNAPSHOT_BLOCK_BYTES_MAX}-byte block`, {
          record: this.#keyCount,
          recordBytes,
        });
      }
      if (alignUp(end) > this.#staging.byteLength) this.#grow(alignUp(end));
      this.#payloadEnd = this.#writeBin(key, this.#writeBinStart(key, this.#payloadEnd));
      this.#payloadEnd = this.#writeBin(value, this.#writeBinStart(value, this.#payloadEnd));
      this.#recordsInBlock += 1;
      this.#keyCount += 1;
      this.#lastKey = key;
      taken += 1;
      // A record larger than the target alone makes one bigger block: seal it at once.
      if (alignUp(this.#payloadEnd) >= this.blockBytesTarget) {
        this.#seal();
        break;
      }
    }
    // The caller may reuse its buffers after push(): keep a copy of the last key.
    if (taken > 0 && this.#lastKey !== undefined) this.#lastKey = this.#lastKey.slice();
    return taken;
  }

  /** takeBlock returns the sealed block (a view valid until the next push or finish), or undefined. */
  takeBlock(): Uint8Array | undefined {
    if (this.#sealedBytes === 0) return undefined;
    const block = this.#staging.subarray(0, this.#sealedBytes);
    this.#sealedBytes = 0;
    return block;
  }

  /** finish seals the last, partly filled block (take it with takeBlock()); no records after it. */
  finish(): void {
    assert(this.#state === 'records', `SnapshotEncoder.finish() after ${this.#state}`);
    assert(this.#sealedBytes === 0, 'SnapshotEncoder.finish(): take the sealed block first');
    if (this.#recordsInBlock > 0) this.#seal();
    this.#state = 'finished';
  }

  /**
   * footer returns the footer block, the last; `sha256` is the caller's digest of the content
   * when it hashes itself (externalDigest). INVALID_ARGUMENT when the metadata does not fit.
   */
  footer(sha256?: Uint8Array): SnapshotEncoderResult & { readonly block: Uint8Array } {
    assert(this.#state === 'finished' && this.#sealedBytes === 0, 'SnapshotEncoder.footer() after finish() and the last takeBlock()');
    assert((sha256 === undefined) === (this.#hash !== undefined), 'SnapshotEncoder.footer(): a digest exactly when the caller hashes');
    const footer: SnapshotFooter = {
      metadata: this.#metadata,
      keyCount: this.#keyCount,
      blockCount: this.#blockCount,
      contentBytes: this.#contentBytes,
      sha256: sha256 ?? new Uint8Array(this.#hash?.digest() ?? []),
      createdAtMs: this.#createdAtMs,
    };
    const block = encodeSnapshotFooter(footer);
    this.#state = 'done';
    return { block, footer, byteLength: this.#contentBytes + block.byteLength };
  }

  #grow(byteLength: number): void {
    const grown = new Uint8Array(byteLength);
    grown.set(this.#staging.subarray(0, this.#payloadEnd));
    this.#staging = grown;
  }

  #writeBinStart(bytes: Uint8Array, at: number): number {
    const staging = this.#staging;
    const length = bytes.byteLength;
    if (length < 0x100) {
      staging[at] = MSGPACK_BIN8;
      staging[at + 1] = length;
      return at + 2;
    }
    if (length < 0x1_0000) {
      staging[at] = MSGPACK_BIN16;
      staging[at + 1] = length >>> 8;
      staging[at + 2] = length & 0xff;
      return at + 3;
    }
    staging[at] = MSGPACK_BIN32;
    staging[at + 1] = length >>> 24;
    staging[at + 2] = (length >>> 16) & 0xff;
    staging[at + 3] = (length >>> 8) & 0xff;
    staging[at + 4] = length & 0xff;
    return at + 5;
  }

  #writeBin(bytes: Uint8Array, at: number): number {
    this.#staging.set(bytes, at);
    return at + bytes.byteLength;
  }

  #seal(): void {
    assert(this.#recordsInBlock > 0, 'a sealed block holds records');
    const staging = this.#staging;
    const payloadLength = this.#payloadEnd - SNAPSHOT_BLOCK_HEADER_BYTES;
    const length = alignUp(this.#payloadEnd);
    assert(length <= staging.byteLength && length <= SNAPSHOT_BLOCK_BYTES_MAX, 'a block fits its staging and its bound');
    // The array header: always array32, so the items could be written before the count was known.
    const items = this.#recordsInBlock * 2;
    staging[SNAPSHOT_BLOCK_HEADER_BYTES] = MSGPACK_ARRAY32;
    staging[SNAPSHOT_BLOCK_HEADER_BYTES + 1] = items >>> 24;
    staging[SNAPSHOT_BLOCK_HEADER_BYTES + 2] = (items >>> 16) & 0xff;
    staging[SNAPSHOT_BLOCK_HEADER_BYTES + 3] = (items >>> 8) & 0xff;
    staging[SNAPSHOT_BLOCK_HEADER_BYTES + 4] = items & 0xff;
    staging.fill(0, this.#payloadEnd, length);
    writeU32(staging, 0, BLOCK_MAGIC);
    writeU32(staging, BLOCK_PAYLOAD_LENGTH_OFFSET, payloadLength);
    writeU32(staging, BLOCK_RECORD_COUNT_OFFSET, this.#recordsInBlock);
    writeU64(staging, BLOCK_SEQUENCE_OFFSET, this.#blockCount);
    writeU64(staging, BLOCK_RESERVED_OFFSET, 0);
    const block = staging.subarray(0, length);
    writeU32(staging, BLOCK_CRC_OFFSET, blockCrc(block));
    this.#hash?.update(block);
    this.#blockCount += 1;
    this.#contentBytes += length;
    this.#sealedBytes = length;
    this.#recordsInBlock = 0;
    this.#payloadEnd = SNAPSHOT_BLOCK_HEADER_BYTES + ARRAY32_HEADER_BYTES;
  }
}

/**
 * encodeSnapshot encodes a whole snapshot in memory (the memory store, tests). The disk store
 * streams through SnapshotEncoder instead.
 */
export function encodeSnapshot(options: SnapshotEncoderOptions, records: readonly SnapshotRecord[]): Uint8Array {
  const encoder = new SnapshotEncoder(options);
  const pieces: Uint8Array[] = [encoder.header()];
  for (let from = 0; from < records.length; ) {
    from += encoder.push(records, from);
    const block = encoder.takeBlock();
    if (block !== undefined) pieces.push(block.slice());
  }
  encoder.finish();
  const last = encoder.takeBlock();
  if (last !== undefined) pieces.push(last.slice());
  const { block, byteLength } = encoder.footer();
  pieces.push(block);
  return concatBytes(pieces, byteLength);
}

/** concatBytes joins pieces into one new array of `byteLength` (their total). */
export function concatBytes(pieces: readonly Uint8Array[], byteLength: number): Uint8Array {
  const joined = new Uint8Array(byteLength);
  let at = 0;
  for (const piece of pieces) {
    joined.set(piece, at);
    at += piece.byteLength;
  }
  assert(at === byteLength, 'concatBytes: the pieces add up to byteLength');
  return joined;
}

// ---------------------------------------------------------------------------------------
// The verifier

/**
 * SnapshotVerifier checks a file of `byteLength` bytes block by block, in order, from its
 * start: every reader, the receiver and the stores' start-up check use it.
 *
 *   const length = verifier.nextBlockLength(bytesAtVerifiedBytes);  // undefined: need more
 *   verifier.verifyBlock(bytes.subarray(0, length), wantRecords);     // advances verifiedBytes
 *   ...                                                               // until complete
 *   const footer = verifier.finish();                                 // counts and SHA-256
 *
 * A block is hashed and counted only once it passed every check, so after a CORRUPTION the
 * verifier stands at the end of the last good block and can take a good copy of the next.
 * Invariant: verifiedBytes is a block boundary and every byte before it was checked.
 */
export class SnapshotVerifier {
  readonly location: string;
  readonly byteLength: number;
  // Undefined when the caller hashes the content (externalDigest) and gives finish() the digest.
  readonly #hash: Hash | undefined;
  #verifiedBytes = 0;
  #nextSequence = 0;
  #keyCount = 0;
  #lastKey: Uint8Array | undefined;
  #header: SnapshotHeader | undefined;
  #footer: SnapshotFooter | undefined;

  /**
   * The constructor refuses a length no snapshot can have with CORRUPTION (a truncated
   * file). With `externalDigest` the caller hashes the content and passes finish() the digest.
   */
  constructor(location: string, byteLength: number, options: { readonly externalDigest?: boolean } = {}) {
    this.location = location;
    this.byteLength = byteLength;
    this.#hash = options.externalDigest === true ? undefined : createHash('sha256');
    if (!isSnapshotFileLength(byteLength)) {
      throw snapshotCorruption(
        { location, offset: byteLength, block: 'file' },
        `is ${byteLength} bytes: a snapshot is at least ${SNAPSHOT_MIN_BYTES} bytes and a multiple of ${SNAPSHOT_ALIGNMENT_BYTES} (truncated?)`,
      );
    }
  }

  /** verifiedBytes is the end of the last block that passed (a block boundary). */
  get verifiedBytes(): number {
    return this.#verifiedBytes;
  }

  /** complete tells whether the footer was checked (call finish() for the whole-file checks). */
  get complete(): boolean {
    return this.#footer !== undefined;
  }

  /** header is the checked header, once verifyBlock() passed it. */
  get header(): SnapshotHeader | undefined {
    return this.#header;
  }

  /** keyCount counts the records of the blocks checked so far. */
  get keyCount(): number {
    return this.#keyCount;
  }

  /** blockCount counts the data blocks checked so far. */
  get blockCount(): number {
    return this.#nextSequence;
  }

  /** nextBlockKind says what the block at verifiedBytes must be. */
  get nextBlockKind(): 'header' | 'data' | 'footer' {
    assert(!this.complete, 'SnapshotVerifier: nothing follows the footer');
    if (this.#verifiedBytes === 0) return 'header';
    return this.#verifiedBytes === this.byteLength - SNAPSHOT_FOOTER_BYTES ? 'footer' : 'data';
  }

  /**
   * nextBlockLength is the length of the block at verifiedBytes, read from `head` (its first
   * bytes), or undefined when `head` is too short to tell. CORRUPTION when the block header
   * is bad or the block would run into the footer.
   */
  nextBlockLength(head: Uint8Array): number | undefined {
    const kind = this.nextBlockKind;
    if (kind === 'header') return SNAPSHOT_HEADER_BYTES;
    if (kind === 'footer') return SNAPSHOT_FOOTER_BYTES;
    if (head.byteLength < SNAPSHOT_BLOCK_HEADER_BYTES) return undefined;
    const place = this.#dataPlace();
    const length = dataBlockLength(head, place);
    if (this.#verifiedBytes + length > this.byteLength - SNAPSHOT_FOOTER_BYTES) {
      throw snapshotCorruption(place, `is ${length} bytes and would run into the footer at ${this.byteLength - SNAPSHOT_FOOTER_BYTES}`);
    }
    return length;
  }

  /**
   * verifyBlock checks the block at verifiedBytes (exactly its bytes) and moves past it. For
   * a data block with `wantRecords` it returns the records (views into `block`).
   */
  verifyBlock(block: Uint8Array, wantRecords = false): SnapshotRecord[] | undefined {
    const kind = this.nextBlockKind;
    const length = this.nextBlockLength(block);
    assert(length !== undefined && block.byteLength === length, 'verifyBlock takes exactly the next block');
    switch (kind) {
      case 'header':
        this.#header = decodeSnapshotHeader(block, this.location);
        this.#hash?.update(block);
        this.#verifiedBytes += length;
        return undefined;
      case 'footer':
        this.#footer = decodeSnapshotFooter(block, this.location, this.#verifiedBytes);
        this.#verifiedBytes += length;
        return undefined;
      case 'data': {
        const decoded = decodeDataBlock(block, this.location, this.#verifiedBytes, this.#nextSequence, this.#lastKey, wantRecords);
        this.#hash?.update(block);
        this.#verifiedBytes += length;
        this.#nextSequence += 1;
        this.#keyCount += decoded.recordCount;
        if (decoded.lastKey !== undefined) this.#lastKey = decoded.lastKey;
        return decoded.records;
      }
    }
  }

  /**
   * finish checks the whole once the footer passed: the footer's content length, block and
   * key counts and SHA-256 against what was read (`sha256`: the caller's digest when it
   * hashes). CORRUPTION naming the file otherwise.
   */
  finish(sha256?: Uint8Array): SnapshotFooter {
    const footer = this.#footer;
    assert(footer !== undefined, 'SnapshotVerifier.finish() after the footer');
    assert((sha256 === undefined) === (this.#hash !== undefined), 'SnapshotVerifier.finish(): a digest exactly when the caller hashes');
    const footerOffset = this.byteLength - SNAPSHOT_FOOTER_BYTES;
    const place: SnapshotCorruptionPlace = { location: this.location, offset: footerOffset, block: 'footer' };
    if (footer.contentBytes !== footerOffset) {
      throw snapshotCorruption(place, `says the content is ${footer.contentBytes} bytes, the file has ${footerOffset}`);
    }
    if (footer.blockCount !== this.#nextSequence) {
      throw snapshotCorruption(place, `says ${footer.blockCount} data blocks, the file has ${this.#nextSequence}`);
    }
    if (footer.keyCount !== this.#keyCount) throw snapshotCorruption(place, `says ${footer.keyCount} keys, the blocks hold ${this.#keyCount}`);
    const digest = sha256 ?? new Uint8Array(this.#hash?.digest() ?? []);
    if (Buffer.compare(digest, footer.sha256) !== 0) {
      throw snapshotCorruption(
        { location: this.location, offset: 0, block: 'file' },
        `content SHA-256 ${sha256Hex(digest)} does not match the footer's ${sha256Hex(footer.sha256)}`,
      );
    }
    return footer;
  }

  #dataPlace(): SnapshotCorruptionPlace {
    return { location: this.location, offset: this.#verifiedBytes, block: 'data', blockSequence: this.#nextSequence };
  }
}

/**
 * verifySnapshotBytes checks a whole file held in memory (the memory store, tests) and
 * returns its footer; CORRUPTION naming the block otherwise.
 */
export function verifySnapshotBytes(bytes: Uint8Array, location: string): SnapshotFooter {
  const verifier = new SnapshotVerifier(location, bytes.byteLength);
  while (!verifier.complete) {
    const at = verifier.verifiedBytes;
    const length = verifier.nextBlockLength(bytes.subarray(at));
    if (length === undefined || at + length > bytes.byteLength) {
      throw snapshotCorruption({ location, offset: at, block: 'file' }, 'ends inside a block (truncated)');
    }
    verifier.verifyBlock(bytes.subarray(at, at + length));
  }
  return verifier.finish();
}

/**
 * checkBlockRun checks the whole blocks of `bytes`, which start at block boundary `offset` of
 * a file of `byteLength` bytes, on their own (readBlocks: no sequence or key order against
 * earlier blocks, which a reader seeking to `offset` has not seen; within the run, each data
 * block must follow the previous one). Returns how many bytes of `bytes` are whole blocks
 * (0 when the first block is longer than `bytes`); CORRUPTION names the bad block;
 * INVALID_ARGUMENT when `offset` is not a block boundary.
 */
export function checkBlockRun(bytes: Uint8Array, offset: number, byteLength: number, location: string): number {
  const footerOffset = byteLength - SNAPSHOT_FOOTER_BYTES;
  let at = 0;
  let expectedSequence: number | undefined;
  let previousKey: Uint8Array | undefined;
  while (at < bytes.byteLength) {
    const fileOffset = offset + at;
    if (fileOffset === 0) {
      if (bytes.byteLength - at < SNAPSHOT_HEADER_BYTES) break;
      decodeSnapshotHeader(bytes.subarray(at, at + SNAPSHOT_HEADER_BYTES), location);
      at += SNAPSHOT_HEADER_BYTES;
      expectedSequence = 0;
      continue;
    }
    if (fileOffset === footerOffset) {
      if (bytes.byteLength - at < SNAPSHOT_FOOTER_BYTES) break;
      decodeSnapshotFooter(bytes.subarray(at, at + SNAPSHOT_FOOTER_BYTES), location, fileOffset);
      at += SNAPSHOT_FOOTER_BYTES;
      continue;
    }
    const head = bytes.subarray(at);
    if (head.byteLength < SNAPSHOT_BLOCK_HEADER_BYTES) break;
    const place: SnapshotCorruptionPlace = { location, offset: fileOffset, block: 'data', blockSequence: expectedSequence };
    if (at === 0 && readU32(head, 0) !== BLOCK_MAGIC) {
      throw invalidArgument(`snapshot ${location}: offset ${fileOffset} is not a block boundary`, { location, offset: fileOffset });
    }
    const length = dataBlockLength(head, place);
    if (fileOffset + length > footerOffset) throw snapshotCorruption(place, 'would run into the footer');
    if (length > head.byteLength) break;
    const decoded = decodeDataBlock(head.subarray(0, length), location, fileOffset, expectedSequence, previousKey, false);
    expectedSequence = decoded.sequence + 1;
    if (decoded.lastKey !== undefined) previousKey = decoded.lastKey;
    at += length;
  }
  return at;
}

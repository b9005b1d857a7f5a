// Damaging a stopped member's state machine the way a rotting disk or an operator below
// stratakv would, for the corruption tests with real processes: one byte of LevelDB's own
// write-ahead `.log` flipped, a run of bytes of a table (`.ldb`) flipped, and one key's stored
// value rewritten through LevelDB itself (valid checksums, so LevelDB cannot notice).
//
// Only for a member whose process has exited (LevelDB holds a lock on the directory while
// open), except flipTableRuns and flipWithinTables, which damage the tables of a running member.

import { closeSync, cpSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { decodeStoredValue, encodeStoredValue, storageKey } from '../../src/storage/kv-keys.ts';
import type { StoredValue } from '../../src/storage/kv-keys.ts';

/** LEVELDB_LOG_BLOCK_BYTES is the block size of LevelDB's log format: a bad record drops the rest of its block. */
export const LEVELDB_LOG_BLOCK_BYTES = 32 * 1024;
const LEVELDB_LOG_NAME = /^\d{6,}\.log$/;
const LEVELDB_TABLE_NAME = /^\d{6,}\.(ldb|sst)$/;

/** stateMachineDirectory is the LevelDB directory of a member's state machine (after a snapshot install it is the one state-machine.json names). */
export function stateMachineDirectory(dataDir: string): string {
  const memberDir = join(dataDir, 'member');
  const pointer = join(memberDir, 'state-machine.json');
  if (!existsSync(pointer)) return join(memberDir, 'kv');
  const { directory } = JSON.parse(readFileSync(pointer, 'utf8')) as { directory: string };
  return join(memberDir, directory);
}

/** FlippedBytes says where bytes were flipped. */
export interface FlippedBytes {
  readonly file: string;
  readonly fileBytes: number;
  readonly offset: number;
  readonly length: number;
}

/** largestFile is the largest file of `directory` whose name matches `pattern`, or undefined. */
export function largestFile(directory: string, pattern: RegExp): { path: string; bytes: number } | undefined {
  let largest: { path: string; bytes: number } | undefined;
  for (const name of readdirSync(directory)) {
    if (!pattern.test(name)) continue;
    const path = join(directory, name);
    const bytes = statSync(path).size;
    if (largest === undefined || bytes > largest.bytes) largest = { path, bytes };
  }
  return largest;
}

/** levelFiles lists the names of a LevelDB directory's write-ahead logs and tables with their sizes (for failure messages). */
export function levelFiles(directory: string): string {
  return readdirSync(directory)
    .filter((name) => LEVELDB_LOG_NAME.test(name) || LEVELDB_TABLE_NAME.test(name))
    .map((name) => `${name}:${statSync(join(directory, name)).size}`)
    .join(' ');
}

/** tableBytes is the size of all LevelDB tables of `directory` together. */
export function tableBytes(directory: string): number {
  return readdirSync(directory)
    .filter((name) => LEVELDB_TABLE_NAME.test(name))
    .reduce((sum, name) => sum + statSync(join(directory, name)).size, 0);
}

/** flipBytes inverts `length` bytes of `path` from `offset` in place (XOR 0xff: every bit changes). */
export function flipBytes(path: string, offset: number, length: number): void {
  const fd = openSync(path, 'r+');
  try {
    const bytes = Buffer.alloc(length);
    const read = readSync(fd, bytes, 0, length, offset);
    if (read !== length) throw new Error(`read ${read} of ${length} bytes at ${offset} of ${path}`);
    for (let index = 0; index < length; index += 1) bytes[index] = (bytes[index] as number) ^ 0xff;
    const written = writeSync(fd, bytes, 0, length, offset);
    if (written !== length) throw new Error(`wrote ${written} of ${length} bytes at ${offset} of ${path}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * flipLogByte flips one byte in the middle of the state machine's LevelDB write-ahead log, which
 * must hold at least `minimumBytes` (several of LevelDB's 32 KiB blocks, so that the damaged
 * block is followed by blocks LevelDB keeps: a batch lost in the middle, not at the end).
 */
export function flipLogByte(directory: string, minimumBytes: number): FlippedBytes {
  const log = largestFile(directory, LEVELDB_LOG_NAME);
  if (log === undefined) throw new Error(`no LevelDB .log in ${directory}: ${levelFiles(directory)}`);
  if (log.bytes < minimumBytes) throw new Error(`LevelDB's .log holds ${log.bytes} bytes, fewer than the ${minimumBytes} the test needs: ${levelFiles(directory)}`);
  // The middle of a block in the middle of the file: well inside, never the last block.
  const block = Math.floor(log.bytes / 2 / LEVELDB_LOG_BLOCK_BYTES);
  const offset = block * LEVELDB_LOG_BLOCK_BYTES + LEVELDB_LOG_BLOCK_BYTES / 2;
  if (offset + LEVELDB_LOG_BLOCK_BYTES >= log.bytes) throw new Error(`offset ${offset} is not well inside ${log.bytes} bytes`);
  flipBytes(log.path, offset, 1);
  return { file: log.path, fileBytes: log.bytes, offset, length: 1 };
}

/**
 * flipTableBytes flips `length` bytes in the middle of the largest LevelDB table, which must
 * hold at least `minimumBytes`. A run rather than one byte: one byte may land in a block's
 * CRC, which LevelDB does not read (classic-level reads without verify_checksums).
 */
export function flipTableBytes(directory: string, length: number, minimumBytes: number): FlippedBytes {
  const table = largestFile(directory, LEVELDB_TABLE_NAME);
  if (table === undefined) throw new Error(`no LevelDB table in ${directory}: ${levelFiles(directory)}`);
  if (table.bytes < minimumBytes) throw new Error(`the largest LevelDB table holds ${table.bytes} bytes, fewer than the ${minimumBytes} the test needs: ${levelFiles(directory)}`);
  const offset = Math.floor(table.bytes / 2);
  flipBytes(table.path, offset, length);
  return { file: table.path, fileBytes: table.bytes, offset, length };
}

/** TableDamage says how many runs of bytes flipTableRuns flipped, in how many tables. */
export interface TableDamage {
  readonly tables: number;
  readonly tableBytes: number;
  readonly runs: number;
  readonly bytesFlipped: number;
}

/** TableRuns says where flipTableRuns flips: a run every `strideBytes` from `startBytes`, none in the last `tailBytes` of a table. */
export interface TableRuns {
  readonly runBytes: number;
  readonly strideBytes: number;
  readonly startBytes: number;
  readonly tailBytes: number;
}

/**
 * flipTableRuns flips a run of bytes at regular offsets in every LevelDB table of `directory`,
 * which may be open in a running member: the writes go through the page cache that LevelDB's
 * reads (and mappings) of the files see. Not in a table's tail, where its index block and
 * footer are: LevelDB holds those in memory while the table is open, so only data blocks count.
 * Many runs, because LevelDB also caches data blocks (8 MiB by default) and a read served from
 * that cache does not see the damage.
 */
export function flipTableRuns(directory: string, runs: TableRuns): TableDamage {
  if (!(runs.runBytes > 0 && runs.strideBytes >= runs.runBytes && runs.startBytes >= 0 && runs.tailBytes >= 0)) throw new Error(`bad runs ${JSON.stringify(runs)}`);
  let tables = 0;
  let tableBytes = 0;
  let flipped = 0;
  for (const name of readdirSync(directory)) {
    if (!LEVELDB_TABLE_NAME.test(name)) continue;
    const path = join(directory, name);
    const bytes = statSync(path).size;
    tables += 1;
    tableBytes += bytes;
    for (let offset = runs.startBytes; offset + runs.runBytes <= bytes - runs.tailBytes; offset += runs.strideBytes) {
      flipBytes(path, offset, runs.runBytes);
      flipped += 1;
    }
  }
  return { tables, tableBytes, runs: flipped, bytesFlipped: flipped * runs.runBytes };
}

/**
 * flipWithinTables flips `length` bytes from `offset` of every occurrence of `needle` (bytes
 * that LevelDB stores as they are: a value in a block it did not compress) in the LevelDB
 * tables of `directory`, which may be open in a running member (see flipTableRuns). The block
 * keeps its structure: LevelDB reads the changed bytes back as the value, with no error. It
 * answers the number of occurrences flipped.
 */
export function flipWithinTables(directory: string, needle: Uint8Array, offset: number, length: number): number {
  if (!(offset >= 0 && length > 0 && offset + length <= needle.byteLength)) throw new Error(`flip ${length} bytes at ${offset} of a needle of ${needle.byteLength}`);
  let flipped = 0;
  for (const name of readdirSync(directory)) {
    if (!LEVELDB_TABLE_NAME.test(name)) continue;
    const path = join(directory, name);
    const content = readFileSync(path);
    for (let at = content.indexOf(needle), found = 0; at >= 0 && found < content.byteLength; at = content.indexOf(needle, at + needle.byteLength), found += 1) {
      flipBytes(path, at + offset, length);
      flipped += 1;
    }
  }
  return flipped;
}

/**
 * rewriteStoredValue replaces the value of `key` in the state machine's LevelDB, keeping its
 * counters, through LevelDB itself: its checksums stay valid, only stratakv's digest can tell.
 * It answers the stored value it replaced.
 */
export async function rewriteStoredValue(directory: string, key: string, value: string): Promise<StoredValue> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(directory, { keyEncoding: 'view', valueEncoding: 'view', createIfMissing: false });
  await db.open();
  try {
    const levelKey = storageKey(new TextEncoder().encode(key));
    const stored = await db.get(levelKey);
    if (stored === undefined) throw new Error(`key ${JSON.stringify(key)} is not stored in ${directory}`);
    const original = decodeStoredValue(stored);
    await db.put(levelKey, encodeStoredValue(new TextEncoder().encode(key), { ...original, hashes: undefined, value: new TextEncoder().encode(value) }), { sync: true });
    return { ...original, value: original.value.slice() };
  } finally {
    await db.close();
  }
}

/**
 * withLevelCopy opens a copy of a (closed) LevelDB directory and runs `read` on it: opening
 * LevelDB recovers its .log into a table, which would change the directory kept as evidence.
 */
export async function withLevelCopy<T>(directory: string, read: (db: ClassicLevel<Uint8Array, Uint8Array>) => Promise<T>): Promise<T> {
  const copy = mkdtempSync(join(tmpdir(), 'stratakv-level-copy-'));
  try {
    cpSync(directory, copy, { recursive: true });
    rmSync(join(copy, 'LOCK'), { force: true });
    const db = new ClassicLevel<Uint8Array, Uint8Array>(copy, { keyEncoding: 'view', valueEncoding: 'view', createIfMissing: false });
    await db.open();
    try {
      return await read(db);
    } finally {
      await db.close();
    }
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

/** readStoredValue reads the value of `key` from a copy of a (closed) state machine's LevelDB directory, or undefined. */
export async function readStoredValue(directory: string, key: string): Promise<string | undefined> {
  return withLevelCopy(directory, async (db) => {
    const stored = await db.get(storageKey(new TextEncoder().encode(key)));
    return stored === undefined ? undefined : new TextDecoder().decode(decodeStoredValue(stored).value);
  });
}

/**
 * levelDamage compares a copy of a (closed) state machine's LevelDB directory with what it
 * should hold, reading through LevelDB alone (no digest): how many keys it lost or changed, or
 * the error LevelDB reported. 'none' when LevelDB serves exactly `expected`.
 */
export async function levelDamage(directory: string, expected: ReadonlyMap<string, string>): Promise<string> {
  try {
    return await withLevelCopy(directory, async (db) => {
      let missing = 0;
      let different = 0;
      for (const [key, value] of expected) {
        const stored = await db.get(storageKey(new TextEncoder().encode(key)));
        if (stored === undefined) missing += 1;
        else if (new TextDecoder().decode(decodeStoredValue(stored).value) !== value) different += 1;
      }
      return missing + different === 0 ? 'none' : `${missing} keys missing, ${different} different`;
    });
  } catch (error) {
    return `LevelDB error: ${String(error)}`;
  }
}

/** walRecordEnds answers the offset after each whole record of a WAL segment (src/storage/log-record.ts: u32 length | u32 CRC | body). */
export function walRecordEnds(bytes: Buffer): number[] {
  const ends: number[] = [];
  for (let offset = 0; offset + 8 <= bytes.length && ends.length < 10_000_000; ) {
    const length = bytes.readUInt32LE(offset);
    if (length === 0 || offset + 8 + length > bytes.length) break;
    offset += 8 + length;
    ends.push(offset);
  }
  return ends;
}

// An in-memory disk with the faults real disks have, for crash tests and the Raft simulator.
//
// FaultyFileSystem implements StorageFileSystem in memory and remembers, per file, which
// writes are not yet durable (no fdatasync since) and, per directory, which creates,
// renames and unlinks are not yet durable (no directory fsync since). crash() then models
// a power cut: unsynced writes are lost or torn, unsynced directory changes are undone, all
// open files are closed. It is synchronous and deterministic (faults are drawn from a seeded
// source), so a simulator can drive it from its own clock:
//
//   const disk = new FaultyFileSystem({ seed });
//   let log = DiskLogStore.openSync({ fileSystem: disk, directory: '/n1' });
//   ... log.saveSync(...) ...
//   disk.crash('tear');                  // the process and its page cache are gone
//   log = DiskLogStore.openSync({ fileSystem: disk, directory: '/n1' });   // recovery
//
// It can also fail the next fdatasync calls with EIO and flip a stored bit.

import path from 'node:path';
import { assert } from '../util/assert.ts';
import { SeededRandom } from '../util/random.ts';
import type { StorageFileSystem } from './file-system.ts';

/** SECTOR_BYTES is the unit in which a torn write reaches the disk (whole sectors or none). */
export const SECTOR_BYTES = 512;

/** FaultyFileSystemOptions configures a FaultyFileSystem. */
export interface FaultyFileSystemOptions {
  /** Seed of the source that decides how much of an unsynced write survives a crash. */
  readonly seed: number;
}

/**
 * CrashMode says what happens to writes that were not made durable:
 * 'lose' drops them all; 'tear' keeps a random prefix of them in order, the last of which
 * survives only partly (a random byte prefix, or its length with trailing sectors zeroed).
 */
export type CrashMode = 'lose' | 'tear';

/** CrashReport says what a crash did to each file that had unsynced writes. */
export interface CrashReport {
  readonly files: readonly { readonly path: string; readonly keptWrites: number; readonly lostWrites: number; readonly torn: boolean }[];
}

// One not-yet-durable change to a file, with what it replaced so that a crash can undo it.
interface PendingWrite {
  readonly position: number;
  readonly data: Uint8Array;
  readonly lengthBefore: number;
  readonly replaced: Uint8Array;
}

class Inode {
  bytes = new Uint8Array(0);
  length = 0;
  // Invariant: applying `pending` in order to the durable content gives the current content.
  pending: PendingWrite[] = [];

  write(position: number, data: Uint8Array): void {
    const lengthBefore = this.length;
    const replaced = this.bytes.slice(position, Math.min(lengthBefore, position + data.byteLength));
    this.pending.push({ position, data: data.slice(), lengthBefore, replaced });
    this.place(position, data);
  }

  truncate(length: number): void {
    const lengthBefore = this.length;
    const replaced = this.bytes.slice(Math.min(length, lengthBefore), lengthBefore);
    // A truncation is a pending change whose "data" is empty; undoing restores the tail.
    this.pending.push({ position: Math.min(length, lengthBefore), data: new Uint8Array(0), lengthBefore, replaced });
    this.resize(length);
    if (length > lengthBefore) this.bytes.fill(0, lengthBefore, length);
  }

  place(position: number, data: Uint8Array): void {
    const end = position + data.byteLength;
    if (end > this.length) {
      this.resize(end);
    }
    this.bytes.set(data, position);
  }

  resize(length: number): void {
    if (length > this.bytes.byteLength) {
      const grown = new Uint8Array(Math.max(length, this.bytes.byteLength * 2, 4096));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    } else if (length < this.length) {
      this.bytes.fill(0, length, this.length);
    }
    if (length > this.length) this.bytes.fill(0, this.length, length);
    this.length = length;
  }

  undo(change: PendingWrite): void {
    this.resize(change.lengthBefore);
    this.bytes.set(change.replaced, change.position);
  }

  content(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }
}

/** FaultyFileSystem is an in-memory StorageFileSystem that injects crashes, torn writes, EIO and bit flips. */
export class FaultyFileSystem implements StorageFileSystem {
  private readonly random: SeededRandom;
  private entries = new Map<string, Inode>();
  // Invariant: durableEntries is what the directories held at their last fsync.
  private durableEntries = new Map<string, Inode>();
  private readonly directories = new Set<string>();
  private descriptors = new Map<number, Inode>();
  private nextDescriptor = 100;
  private fdatasyncFailures = 0;
  // While paused, asynchronous fdatasync calls wait here; nothing they cover is durable yet.
  private heldFdatasyncs: (() => void)[] | undefined;

  /** fdatasyncCount counts successful fdatasync calls (tests use it to check group commit). */
  fdatasyncCount = 0;

  constructor(options: FaultyFileSystemOptions) {
    this.random = new SeededRandom(options.seed);
  }

  /** failFdatasync makes the next `count` fdatasync calls fail with EIO (nothing becomes durable). */
  failFdatasync(count = 1): void {
    assert(Number.isInteger(count) && count >= 0, 'failFdatasync: count must be a non-negative integer');
    this.fdatasyncFailures = count;
  }

  /**
   * pauseFdatasync holds every later asynchronous fdatasync until resumeFdatasync(), so a
   * test can crash while a group commit is written but not yet durable.
   */
  pauseFdatasync(): void {
    this.heldFdatasyncs ??= [];
  }

  /** resumeFdatasync completes the held fdatasync calls (unless a crash came first). */
  resumeFdatasync(): void {
    const held = this.heldFdatasyncs ?? [];
    this.heldFdatasyncs = undefined;
    for (const complete of held) complete();
  }

  /** flipBit flips one bit of a stored file, in its durable and current content alike. */
  flipBit(filePath: string, byteOffset: number, bit = 0): void {
    const inode = this.entries.get(filePath);
    assert(inode !== undefined, `flipBit: no file ${filePath}`);
    assert(byteOffset >= 0 && byteOffset < inode.length, `flipBit: offset ${byteOffset} outside ${filePath}`);
    assert(inode.pending.length === 0, 'flipBit: sync the file first (a flip models decay of stored data)');
    inode.bytes[byteOffset] = (inode.bytes[byteOffset] as number) ^ (1 << bit);
  }

  /** fileContent returns a copy of a file's current bytes (for tests). */
  fileContent(filePath: string): Uint8Array {
    const inode = this.entries.get(filePath);
    assert(inode !== undefined, `fileContent: no file ${filePath}`);
    return inode.content().slice();
  }

  /**
   * crash models a power cut: every open file is closed, unsynced directory changes are
   * undone, and each file's unsynced writes are lost or torn according to `mode`.
   */
  crash(mode: CrashMode = 'lose'): CrashReport {
    this.descriptors.clear();
    this.heldFdatasyncs = undefined;
    this.entries = new Map(this.durableEntries);
    const files: { path: string; keptWrites: number; lostWrites: number; torn: boolean }[] = [];
    const seen = new Set<Inode>();
    for (const [filePath, inode] of this.entries) {
      if (seen.has(inode) || inode.pending.length === 0) continue;
      seen.add(inode);
      files.push({ path: filePath, ...this.crashFile(inode, mode) });
    }
    return { files };
  }

  private crashFile(inode: Inode, mode: CrashMode): { keptWrites: number; lostWrites: number; torn: boolean } {
    const pending = inode.pending;
    const kept = mode === 'tear' ? this.random.intBelow(pending.length + 1) : 0;
    for (let i = pending.length - 1; i >= kept; i -= 1) inode.undo(pending[i] as PendingWrite);
    let torn = false;
    const next = pending[kept];
    if (mode === 'tear' && next !== undefined && next.data.byteLength > 0) {
      torn = true;
      if (this.random.chance(1, 2)) {
        // The file grew by only part of the write: a random byte prefix arrived.
        inode.place(next.position, next.data.subarray(0, this.random.intBelow(next.data.byteLength)));
      } else {
        // The file has the write's length but its trailing sectors never arrived (zeros).
        const end = next.position + next.data.byteLength;
        const firstSector = Math.ceil(next.position / SECTOR_BYTES);
        const lastSector = Math.floor((end - 1) / SECTOR_BYTES);
        const zeroFromSector = firstSector + this.random.intBelow(Math.max(1, lastSector - firstSector + 1));
        const zeroFrom = Math.max(next.position, Math.min(end, zeroFromSector * SECTOR_BYTES));
        inode.place(next.position, next.data);
        inode.bytes.fill(0, zeroFrom, end);
      }
    }
    inode.pending = [];
    return { keptWrites: kept, lostWrites: pending.length - kept - (torn ? 1 : 0), torn };
  }

  mkdirSync(directory: string): void {
    let current = path.resolve(directory);
    while (!this.directories.has(current)) {
      this.directories.add(current);
      const parent = path.dirname(current);
      if (parent === current) break;
      current = parent;
    }
  }

  listSync(directory: string): string[] {
    const resolved = path.resolve(directory);
    if (!this.directories.has(resolved)) throw fsError('ENOENT', `no directory ${directory}`);
    const names: string[] = [];
    for (const filePath of this.entries.keys()) {
      if (path.dirname(filePath) === resolved) names.push(path.basename(filePath));
    }
    return names.sort();
  }

  readFileSync(filePath: string): Uint8Array {
    const inode = this.entries.get(path.resolve(filePath));
    if (inode === undefined) throw fsError('ENOENT', `no file ${filePath}`);
    return inode.content().slice();
  }

  openSync(filePath: string, create: boolean): number {
    const resolved = path.resolve(filePath);
    if (!this.directories.has(path.dirname(resolved))) throw fsError('ENOENT', `no directory for ${filePath}`);
    let inode = this.entries.get(resolved);
    if (inode === undefined) {
      if (!create) throw fsError('ENOENT', `no file ${filePath}`);
      inode = new Inode();
      this.entries.set(resolved, inode);
    } else if (create) {
      inode.truncate(0);
    }
    const fd = this.nextDescriptor;
    this.nextDescriptor += 1;
    this.descriptors.set(fd, inode);
    return fd;
  }

  writeSync(fd: number, data: Uint8Array, position: number): void {
    this.inode(fd).write(position, data);
  }

  readSync(fd: number, buffer: Uint8Array, position: number): number {
    const content = this.inode(fd).content();
    const available = content.subarray(Math.min(position, content.byteLength), Math.min(content.byteLength, position + buffer.byteLength));
    buffer.set(available);
    return available.byteLength;
  }

  sizeSync(fd: number): number {
    return this.inode(fd).length;
  }

  truncateSync(fd: number, length: number): void {
    this.inode(fd).truncate(length);
  }

  fdatasyncSync(fd: number): void {
    const inode = this.inode(fd);
    if (this.fdatasyncFailures > 0) {
      this.fdatasyncFailures -= 1;
      throw fsError('EIO', 'fdatasync: injected I/O error');
    }
    inode.pending = [];
    this.fdatasyncCount += 1;
  }

  fdatasync(fd: number): Promise<void> {
    const held = this.heldFdatasyncs;
    if (held !== undefined) {
      const inode = this.inode(fd);
      return new Promise((resolve, reject) => {
        held.push(() => {
          // A crash in between closed the file: the sync never happens and never answers.
          if (this.descriptors.get(fd) !== inode) return;
          this.fdatasync(fd).then(resolve, reject);
        });
      });
    }
    try {
      this.fdatasyncSync(fd);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  closeSync(fd: number): void {
    this.inode(fd);
    this.descriptors.delete(fd);
  }

  renameSync(from: string, to: string): void {
    const inode = this.entries.get(path.resolve(from));
    if (inode === undefined) throw fsError('ENOENT', `no file ${from}`);
    this.entries.delete(path.resolve(from));
    this.entries.set(path.resolve(to), inode);
  }

  unlinkSync(filePath: string): void {
    if (!this.entries.delete(path.resolve(filePath))) throw fsError('ENOENT', `no file ${filePath}`);
  }

  fsyncDirectorySync(directory: string): void {
    const resolved = path.resolve(directory);
    for (const filePath of [...this.durableEntries.keys()]) {
      if (path.dirname(filePath) === resolved && !this.entries.has(filePath)) this.durableEntries.delete(filePath);
    }
    for (const [filePath, inode] of this.entries) {
      if (path.dirname(filePath) === resolved) this.durableEntries.set(filePath, inode);
    }
  }

  removeDurably(file: string, directory: string): Promise<void> {
    try {
      this.unlinkSync(file);
      this.fsyncDirectorySync(directory);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  private inode(fd: number): Inode {
    const inode = this.descriptors.get(fd);
    if (inode === undefined) throw fsError('EBADF', `bad file descriptor ${fd}`);
    return inode;
  }
}

function fsError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

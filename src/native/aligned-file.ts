// aligned-file.ts — files read and written in whole DIRECT_IO_ALIGNMENT_BYTES blocks at
// explicit offsets, with O_DIRECT where the filesystem allows it and buffered I/O where it
// does not (`ioMode` says which). Every call runs on the libuv pool, so the event loop keeps
// serving while a snapshot is written, and several blocks may be in flight at once.
//
// The block rule holds in both modes, so code tested on tmpfs behaves the same on ext4; a
// file whose length is not whole blocks is cut to size with truncate() after the last write.
// An fdatasync failure is reported as IO_ERROR; the caller must treat it as fatal (see
// ARCHITECTURE.md, "Errors"): the kernel may already have dropped the unsynced pages.
//
// O_DIRECT buys a page cache left to LevelDB and steady latency, not raw speed: buffered
// writes + fdatasync were faster but noisier (npm run bench:native; the figures are in
// bench/results/native-2026-11-24.md).
import { dirname } from 'node:path';

import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { nativeAddon, nativeError, type NativeFileHandle } from './addon.ts';
import { DIRECT_IO_ALIGNMENT_BYTES } from './aligned-buffer.ts';

/** IO_BYTES_MAX bounds one readAt or writeAt (1 GiB, the addon's limit). */
export const IO_BYTES_MAX = 1 << 30;

/** IN_FLIGHT_OPERATIONS_MAX bounds the calls one file may have running at once. */
export const IN_FLIGHT_OPERATIONS_MAX = 64;

/** IoMode says whether a file bypasses the page cache ('direct') or not ('buffered'). */
export type IoMode = 'direct' | 'buffered';

/** OpenAlignedFileOptions: absent flags are false; `direct` asks for O_DIRECT. */
export interface OpenAlignedFileOptions {
  write?: boolean;
  create?: boolean;
  exclusive?: boolean;
  truncate?: boolean;
  direct?: boolean;
}

function checkBlock(operation: string, path: string, byteLength: number, offset: number): void {
  const whole = (value: number): boolean => Number.isSafeInteger(value) && value >= 0 && value % DIRECT_IO_ALIGNMENT_BYTES === 0;
  if (!whole(offset) || !whole(byteLength) || byteLength > IO_BYTES_MAX) {
    throw new StrataError(
      ErrorCode.INVALID_ARGUMENT,
      `${operation} ${path}: offset ${offset} and length ${byteLength} must be whole ` +
        `${DIRECT_IO_ALIGNMENT_BYTES}-byte blocks (length at most ${IO_BYTES_MAX})`,
      { details: { path, offset, byteLength } },
    );
  }
}

/** AlignedFile is an open file for block I/O. */
export class AlignedFile {
  readonly path: string;
  readonly #handle: NativeFileHandle;
  // Every running call, so close() can wait for them: the descriptor must outlive them all.
  readonly #running = new Set<Promise<unknown>>();
  #closing = false;

  /** AlignedFile's constructor is internal: use AlignedFile.open(). */
  constructor(path: string, handle: NativeFileHandle) {
    this.path = path;
    this.#handle = handle;
  }

  /** open opens `path`; IO_ERROR (details.systemCode, e.g. 'ENOENT') when it cannot. */
  static async open(path: string, options: OpenAlignedFileOptions = {}): Promise<AlignedFile> {
    assert(typeof path === 'string' && path.length > 0, 'AlignedFile.open: path must be a non-empty string');
    try {
      return new AlignedFile(path, await nativeAddon().openFile(path, { ...options }));
    } catch (error) {
      throw nativeError(error, `open ${path}`);
    }
  }

  /** ioMode tells whether O_DIRECT took effect. */
  get ioMode(): IoMode {
    return this.#handle.direct ? 'direct' : 'buffered';
  }

  /** closed tells whether close() was called. */
  get closed(): boolean {
    return this.#closing;
  }

  /** writeAt writes all of `data` at `offset`; `data` must stay unchanged until this settles. */
  async writeAt(data: Uint8Array, offset: number): Promise<void> {
    checkBlock('writeAt', this.path, data.byteLength, offset);
    await this.#run('writeAt', () => this.#handle.writeAt(data, offset));
  }

  /** readAt fills `target` from `offset` and returns how many bytes the file had there (less at its end). */
  async readAt(target: Uint8Array, offset: number): Promise<number> {
    checkBlock('readAt', this.path, target.byteLength, offset);
    return this.#run('readAt', () => this.#handle.readAt(target, offset));
  }

  /** datasync makes the written data durable (fdatasync); a failure is IO_ERROR and fatal to the caller. */
  async datasync(): Promise<void> {
    await this.#run('datasync', () => this.#handle.datasync());
  }

  /** truncate sets the file's length, e.g. to cut the last block to the real size. */
  async truncate(byteLength: number): Promise<void> {
    if (!Number.isSafeInteger(byteLength) || byteLength < 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `truncate ${this.path}: bad length ${byteLength}`, {
        details: { path: this.path, byteLength },
      });
    }
    await this.#run('truncate', () => this.#handle.truncate(byteLength));
  }

  /**
   * allocate reserves disk blocks for the first `byteLength` bytes (fallocate, which also sets
   * the length) and says whether the filesystem could. O_DIRECT writes into reserved blocks
   * skip the per-write block allocation of a growing file: about 20 % faster on ext4 here.
   */
  async allocate(byteLength: number): Promise<boolean> {
    if (!Number.isSafeInteger(byteLength) || byteLength <= 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `allocate ${this.path}: bad length ${byteLength}`, {
        details: { path: this.path, byteLength },
      });
    }
    return this.#run('allocate', () => this.#handle.allocate(byteLength));
  }

  /** close waits for the running calls, then closes the descriptor; closing twice is harmless. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    await Promise.allSettled([...this.#running]);
    assert(this.#handle.inFlight === 0, 'no native call runs once the wrapper saw them all settle');
    try {
      await this.#handle.close();
    } catch (error) {
      throw nativeError(error, `close ${this.path}`);
    }
  }

  async #run<T>(operation: string, call: () => Promise<T>): Promise<T> {
    assert(!this.#closing, `${operation} ${this.path}: file is closed`);
    assert(this.#running.size < IN_FLIGHT_OPERATIONS_MAX, `${operation} ${this.path}: too many calls in flight`);
    let promise: Promise<T>;
    try {
      promise = call();
    } catch (error) {
      throw nativeError(error, `${operation} ${this.path}`);
    }
    this.#running.add(promise);
    try {
      return await promise;
    } catch (error) {
      throw nativeError(error, `${operation} ${this.path}`);
    } finally {
      this.#running.delete(promise);
    }
  }
}

/** syncDirectory fsyncs a directory, making the names in it durable. */
export async function syncDirectory(directory: string): Promise<void> {
  try {
    await nativeAddon().syncDirectory(directory);
  } catch (error) {
    throw nativeError(error, `syncDirectory ${directory}`);
  }
}

/** renameAndSyncDirectory renames `from` to `to`, then fsyncs the directory of `to`. */
export async function renameAndSyncDirectory(from: string, to: string): Promise<void> {
  try {
    await nativeAddon().renameAndSyncDirectory(from, to, dirname(to));
  } catch (error) {
    throw nativeError(error, `rename ${from} -> ${to}`);
  }
}

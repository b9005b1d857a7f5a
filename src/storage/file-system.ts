// The narrow file-system surface the durable log uses, and its real implementation.
//
// The log reaches the disk only through StorageFileSystem so that the same code runs on
// the real disk (NodeFileSystem) and on FaultyFileSystem, an in-memory disk that loses
// unsynced writes on a simulated crash, tears the last write, fails fsync and flips bits.
// Everything is synchronous except fdatasync() and removeDurably(): reads must be synchronous
// because the Raft core is, writes into the page cache take microseconds, and only the flush
// is worth handing to the thread pool so that appends can gather while it runs (group
// commit). Removing compacted segments is the other exception: a directory fsync per segment
// on a busy disk took 35 ms each (0.5 s for a 1 GiB compaction, measured in bench:migrate),
// time the event loop must not be blocked for.

import fs from 'node:fs';

/** StorageFileSystem is what the log needs from a disk. Paths are plain strings. */
export interface StorageFileSystem {
  /** mkdirSync creates a directory and its parents; an existing one is fine. */
  mkdirSync(path: string): void;
  /** listSync returns the names in a directory. */
  listSync(directory: string): string[];
  /** readFileSync returns a whole file. */
  readFileSync(path: string): Uint8Array;
  /** openSync opens an existing file for reading and writing, or creates it when `create`. */
  openSync(path: string, create: boolean): number;
  /** writeSync writes all of `data` at `position`. */
  writeSync(fd: number, data: Uint8Array, position: number): void;
  /** readSync reads into `buffer` from `position`, returning the bytes read (short at end of file). */
  readSync(fd: number, buffer: Uint8Array, position: number): number;
  /** sizeSync returns a file's length. */
  sizeSync(fd: number): number;
  /** truncateSync sets a file's length. */
  truncateSync(fd: number, length: number): void;
  /** fdatasyncSync makes a file's data durable before it returns. */
  fdatasyncSync(fd: number): void;
  /** fdatasync makes a file's data durable, off the event loop. */
  fdatasync(fd: number): Promise<void>;
  /** closeSync closes a file. */
  closeSync(fd: number): void;
  /** renameSync renames a file within a directory (durable after fsyncDirectorySync). */
  renameSync(from: string, to: string): void;
  /** unlinkSync removes a file (durable after fsyncDirectorySync). */
  unlinkSync(path: string): void;
  /** fsyncDirectorySync makes the directory's entries (creates, renames, unlinks) durable. */
  fsyncDirectorySync(directory: string): void;
  /** removeDurably removes `file` and fsyncs `directory`, its directory, off the event loop. */
  removeDurably(file: string, directory: string): Promise<void>;
}

/** NodeFileSystem is StorageFileSystem on the real disk through node:fs. */
export class NodeFileSystem implements StorageFileSystem {
  mkdirSync(path: string): void {
    fs.mkdirSync(path, { recursive: true });
  }

  listSync(directory: string): string[] {
    return fs.readdirSync(directory);
  }

  readFileSync(path: string): Uint8Array {
    return fs.readFileSync(path);
  }

  openSync(path: string, create: boolean): number {
    return fs.openSync(path, create ? 'w+' : 'r+');
  }

  writeSync(fd: number, data: Uint8Array, position: number): void {
    // write(2) may write less than asked (a signal, a full disk); loop until done or it throws.
    let written = 0;
    while (written < data.byteLength) {
      written += fs.writeSync(fd, data, written, data.byteLength - written, position + written);
    }
  }

  readSync(fd: number, buffer: Uint8Array, position: number): number {
    let read = 0;
    while (read < buffer.byteLength) {
      const count = fs.readSync(fd, buffer, read, buffer.byteLength - read, position + read);
      if (count === 0) break;
      read += count;
    }
    return read;
  }

  sizeSync(fd: number): number {
    return fs.fstatSync(fd).size;
  }

  truncateSync(fd: number, length: number): void {
    fs.ftruncateSync(fd, length);
  }

  fdatasyncSync(fd: number): void {
    fs.fdatasyncSync(fd);
  }

  fdatasync(fd: number): Promise<void> {
    // The callback API skips the FileHandle machinery of fs.promises: one thread-pool hop.
    return new Promise((resolve, reject) => {
      fs.fdatasync(fd, (error) => (error === null ? resolve() : reject(error)));
    });
  }

  closeSync(fd: number): void {
    fs.closeSync(fd);
  }

  renameSync(from: string, to: string): void {
    fs.renameSync(from, to);
  }

  unlinkSync(path: string): void {
    fs.unlinkSync(path);
  }

  fsyncDirectorySync(directory: string): void {
    const fd = fs.openSync(directory, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  async removeDurably(file: string, directory: string): Promise<void> {
    await fs.promises.unlink(file);
    const handle = await fs.promises.open(directory, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

// File systems for bench/storage.ts: one that counts fdatasync calls on the real disk, and
// one that does no I/O at all, to measure what the log costs in JavaScript alone.
import { NodeFileSystem } from '../../src/storage/file-system.ts';
import type { StorageFileSystem } from '../../src/storage/file-system.ts';

/** CountingFileSystem is the real disk, counting fdatasync calls (to show group commit). */
export class CountingFileSystem extends NodeFileSystem {
  fdatasyncCount = 0;

  override fdatasync(fd: number): Promise<void> {
    this.fdatasyncCount += 1;
    return super.fdatasync(fd);
  }
}

/** NullFileSystem accepts every write and sync instantly and stores nothing (files only have sizes). */
export class NullFileSystem implements StorageFileSystem {
  private readonly sizes = new Map<number, number>();
  private readonly paths = new Map<string, number>();
  private nextDescriptor = 3;

  mkdirSync(): void {}
  listSync(): string[] {
    return [];
  }
  readFileSync(): Uint8Array {
    return new Uint8Array(0);
  }
  openSync(path: string): number {
    const fd = this.nextDescriptor;
    this.nextDescriptor += 1;
    this.paths.set(path, fd);
    this.sizes.set(fd, 0);
    return fd;
  }
  writeSync(fd: number, data: Uint8Array, position: number): void {
    this.sizes.set(fd, Math.max(this.sizes.get(fd) ?? 0, position + data.byteLength));
  }
  readSync(): number {
    return 0;
  }
  sizeSync(fd: number): number {
    return this.sizes.get(fd) ?? 0;
  }
  truncateSync(fd: number, length: number): void {
    this.sizes.set(fd, length);
  }
  fdatasyncSync(): void {}
  fdatasync(): Promise<void> {
    return Promise.resolve();
  }
  closeSync(): void {}
  renameSync(): void {}
  unlinkSync(): void {}
  fsyncDirectorySync(): void {}
  removeDurably(): Promise<void> {
    return Promise.resolve();
  }
}

// atomic-file-writer.ts — a file that appears under its final name complete or not at all.
//
// The writer fills a temporary file in the same directory, then commit() runs the sequence
// that survives a crash at any point: fdatasync the data, close, rename onto the final name,
// fsync the directory. Killed before the rename, the final name is untouched (absent, or the
// previous complete file); after it, the file is whole. A killed writer leaves its temporary
// file behind: isAtomicWriterTemporary() lets the owner of the directory find and remove it.
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { assert } from '../util/assert.ts';
import { AlignedFile, renameAndSyncDirectory, type IoMode } from './aligned-file.ts';

// Temporary names are `.<final name>.<random>.tmp`: hidden, never mistaken for a final file.
const TEMPORARY_SUFFIX = '.tmp';
const TEMPORARY_RANDOM_BYTES = 6;

/** isAtomicWriterTemporary tells whether a directory entry is an AtomicFileWriter's temporary file. */
export function isAtomicWriterTemporary(name: string): boolean {
  return /^\..+\.[0-9a-f]{12}\.tmp$/.test(name);
}

/**
 * AtomicFileWriterOptions: `direct` asks for O_DIRECT (default true); `expectedBytes`
 * reserves that much disk up front (see AlignedFile.allocate), and commit() cuts the file
 * back to what was written.
 */
export interface AtomicFileWriterOptions {
  direct?: boolean;
  expectedBytes?: number;
}

/** AtomicFileWriter writes blocks to a temporary file and publishes it by commit(). */
export class AtomicFileWriter {
  readonly finalPath: string;
  readonly temporaryPath: string;
  readonly #file: AlignedFile;
  #state: 'open' | 'committed' | 'aborted' = 'open';
  // The end of the furthest block written: the file's length at commit() unless told otherwise.
  #writtenEndOffset = 0;

  /** AtomicFileWriter's constructor is internal: use AtomicFileWriter.create(). */
  constructor(finalPath: string, temporaryPath: string, file: AlignedFile) {
    this.finalPath = finalPath;
    this.temporaryPath = temporaryPath;
    this.#file = file;
  }

  /** create opens a fresh temporary file beside `finalPath` (exclusive, so two writers never share one). */
  static async create(finalPath: string, options: AtomicFileWriterOptions = {}): Promise<AtomicFileWriter> {
    const suffix = `${randomBytes(TEMPORARY_RANDOM_BYTES).toString('hex')}${TEMPORARY_SUFFIX}`;
    const temporaryPath = join(dirname(finalPath), `.${basename(finalPath)}.${suffix}`);
    const file = await AlignedFile.open(temporaryPath, {
      write: true,
      create: true,
      exclusive: true,
      direct: options.direct ?? true,
    });
    const writer = new AtomicFileWriter(finalPath, temporaryPath, file);
    try {
      if (options.expectedBytes !== undefined) await file.allocate(options.expectedBytes);
    } catch (error) {
      await writer.abort();
      throw error;
    }
    return writer;
  }

  /** ioMode tells whether O_DIRECT took effect for the temporary file. */
  get ioMode(): IoMode {
    return this.#file.ioMode;
  }

  /** writeAt writes whole blocks at `offset` of the temporary file (see AlignedFile.writeAt). */
  async writeAt(data: Uint8Array, offset: number): Promise<void> {
    assert(this.#state === 'open', `write to ${this.finalPath} after ${this.#state}`);
    await this.#file.writeAt(data, offset);
    this.#writtenEndOffset = Math.max(this.#writtenEndOffset, offset + data.byteLength);
  }

  /**
   * commit publishes the file under its final name: truncate to `byteLength` (default: the
   * end of the furthest block written; smaller when the last block was padded), fdatasync,
   * close, rename, fsync the directory. On failure the final name is as it was before and
   * the writer should be aborted.
   */
  async commit(byteLength = this.#writtenEndOffset): Promise<void> {
    assert(this.#state === 'open', `commit of ${this.finalPath} after ${this.#state}`);
    await this.#file.truncate(byteLength);
    await this.#file.datasync();
    await this.#file.close();
    await renameAndSyncDirectory(this.temporaryPath, this.finalPath);
    this.#state = 'committed';
  }

  /** abort closes and removes the temporary file; the final name is untouched. Harmless after commit. */
  async abort(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'aborted';
    await this.#file.close();
    await rm(this.temporaryPath, { force: true });
  }
}

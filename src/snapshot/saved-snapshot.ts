// A snapshot file outside a member: what `stratakv snapshot save` (or `etcdctl snapshot
// save`) wrote, or a raw `<id>.snap` copied out of a data directory. A saved file is the
// snapshot's bytes followed by the 32-byte SHA-256 of those bytes, as etcd's
// Maintenance.Snapshot stream ends; a raw file has no trailer. The two are told apart by
// length: a snapshot is whole SNAPSHOT_ALIGNMENT_BYTES units, so only a saved file has 32
// bytes over.
//
// verifySavedSnapshot reads such a file once, in order, and checks everything before anyone
// uses it: the trailer against the bytes, and the snapshot itself with src/snapshot's
// verifier (the header, every block's CRC32c and key order, the footer's counts and the
// content's SHA-256). Memory: one read (READ_BYTES_MAX) plus one block being gathered.

import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

import { createHash } from 'node:crypto';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { SnapshotFooter } from './snapshot-format.ts';
import { isSnapshotHeader, SNAPSHOT_ALIGNMENT_BYTES, SNAPSHOT_HEADER_MAGIC_BYTES, SnapshotVerifier, snapshotCorruption, snapshotInfoOf } from './snapshot-format.ts';
import type { SnapshotInfo } from './snapshot-store.ts';
import { snapshotId } from './snapshot-store.ts';
import { BlockSplitter } from './snapshot-store-parts.ts';

/** SNAPSHOT_TRAILER_BYTES is the SHA-256 that ends a saved snapshot (etcd's Maintenance.Snapshot digest). */
export const SNAPSHOT_TRAILER_BYTES = 32;
/** SAVED_SNAPSHOT_READ_BYTES is one read of verifySavedSnapshot (whole alignment units). */
export const SAVED_SNAPSHOT_READ_BYTES = 4 * 1024 * 1024;

/** VerifiedSnapshot is a snapshot file that passed every check. */
export interface VerifiedSnapshot {
  readonly path: string;
  /** The file's length: the snapshot plus the trailer, when there is one. */
  readonly fileBytes: number;
  /** The snapshot's own length (a multiple of SNAPSHOT_ALIGNMENT_BYTES). */
  readonly snapshotBytes: number;
  /** The file ends with the SHA-256 of the snapshot's bytes (a saved file), which matched. */
  readonly hasTrailer: boolean;
  /** SHA-256 of the snapshot's bytes, footer included (what a trailer holds), lower-case hex. */
  readonly fileSha256: string;
  readonly footer: SnapshotFooter;
  /** The snapshot as a store would list it (id from its term and index; location = path). */
  readonly info: SnapshotInfo;
}

/** SavedSnapshotProgress is reported after each read. */
export interface SavedSnapshotProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

/** VerifySavedSnapshotOptions bound verifySavedSnapshot. */
export interface VerifySavedSnapshotOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: SavedSnapshotProgress) => void;
}

/**
 * notStratakvSnapshot is the error for a file that is not a stratakv snapshot at all
 * (INVALID_ARGUMENT: the input is wrong, not damaged), such as an etcd snapshot (bbolt).
 */
export function notStratakvSnapshot(path: string, why: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, `not a stratakv snapshot: ${path} ${why}`, { details: { location: path } });
}

/**
 * verifySavedSnapshot checks a saved or raw snapshot file (see the file comment). It rejects
 * with INVALID_ARGUMENT (notStratakvSnapshot) for a file that does not start as a stratakv
 * snapshot, CORRUPTION naming the file (and the block, for a block) for anything damaged,
 * and CANCELED when `signal` aborts.
 */
export async function verifySavedSnapshot(path: string, options: VerifySavedSnapshotOptions = {}): Promise<VerifiedSnapshot> {
  const file = await openForReading(path);
  try {
    const fileBytes = (await file.stat()).size;
    const head = await readExactly(file, path, 0, Math.min(fileBytes, SNAPSHOT_HEADER_MAGIC_BYTES));
    if (!isSnapshotHeader(head)) {
      throw notStratakvSnapshot(path, 'does not start with a stratakv snapshot header (an etcd snapshot is a bbolt file: use etcdutl for it)');
    }
    const over = fileBytes % SNAPSHOT_ALIGNMENT_BYTES;
    if (over !== 0 && over !== SNAPSHOT_TRAILER_BYTES) {
      throw snapshotCorruption(
        { location: path, offset: fileBytes, block: 'file' },
        `is ${fileBytes} bytes: a snapshot is whole ${SNAPSHOT_ALIGNMENT_BYTES}-byte units, plus ${SNAPSHOT_TRAILER_BYTES} when saved with its SHA-256 (truncated?)`,
      );
    }
    const hasTrailer = over === SNAPSHOT_TRAILER_BYTES;
    const snapshotBytes = fileBytes - (hasTrailer ? SNAPSHOT_TRAILER_BYTES : 0);
    const verifier = new SnapshotVerifier(path, snapshotBytes);
    const splitter = new BlockSplitter(verifier);
    const hash = createHash('sha256');
    // Each read takes at least one alignment unit (a short read throws), so the loop runs at
    // most snapshotBytes / SNAPSHOT_ALIGNMENT_BYTES times.
    for (let offset = 0; offset < snapshotBytes; ) {
      if (options.signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, `checking ${path} was cancelled`);
      // A fresh buffer per read: the splitter may keep a view of the last one's tail.
      const chunk = await readExactly(file, path, offset, Math.min(SAVED_SNAPSHOT_READ_BYTES, snapshotBytes - offset));
      hash.update(chunk);
      for (const block of splitter.blocks(chunk)) verifier.verifyBlock(block);
      offset += chunk.byteLength;
      options.onProgress?.({ bytesDone: offset, bytesTotal: fileBytes });
    }
    if (!verifier.complete) {
      throw snapshotCorruption({ location: path, offset: verifier.verifiedBytes, block: 'file' }, 'ends inside a block (truncated)');
    }
    const digest = hash.digest();
    if (hasTrailer) {
      const trailer = await readExactly(file, path, snapshotBytes, SNAPSHOT_TRAILER_BYTES);
      if (!digest.equals(trailer)) {
        throw snapshotCorruption(
          { location: path, offset: snapshotBytes, block: 'file' },
          `ends with SHA-256 ${trailer.toString('hex')}, but its ${snapshotBytes} snapshot bytes hash to ${digest.toString('hex')}`,
        );
      }
      options.onProgress?.({ bytesDone: fileBytes, bytesTotal: fileBytes });
    }
    const footer = verifier.finish();
    const id = snapshotId(footer.metadata.term, footer.metadata.index);
    return { path, fileBytes, snapshotBytes, hasTrailer, fileSha256: digest.toString('hex'), footer, info: snapshotInfoOf(id, path, snapshotBytes, footer) };
  } finally {
    await file.close();
  }
}

/**
 * readSnapshotBytes reads [offset, offset + length) of a verified file (for copying it into a
 * store); CORRUPTION when the file is shorter than it was.
 */
export async function readSnapshotBytes(file: FileHandle, path: string, offset: number, length: number): Promise<Buffer> {
  return readExactly(file, path, offset, length);
}

/** openForReading opens `path` read-only; INVALID_ARGUMENT naming it when it cannot be opened. */
export async function openForReading(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (error) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `cannot open ${path}: ${(error as Error).message}`, { cause: error, details: { location: path } });
  }
}

// A file that ends before `length` bytes (changed since it was measured) is truncated.
async function readExactly(file: FileHandle, path: string, offset: number, length: number): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(length);
  let filled = 0;
  // Each pass reads at least one byte or ends (0 = end of file), so at most `length` passes.
  while (filled < length) {
    const { bytesRead } = await file.read(bytes, filled, length - filled, offset + filled);
    if (bytesRead === 0) {
      throw snapshotCorruption({ location: path, offset: offset + filled, block: 'file' }, `ends at ${offset + filled}, before ${offset + length} (truncated)`);
    }
    filled += bytesRead;
  }
  return bytes;
}

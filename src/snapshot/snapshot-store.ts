// The contract of src/snapshot: snapshot files as the driver sees them, and the two stores
// that keep them (DiskSnapshotStore through the native addon, MemorySnapshotStore for the
// simulator). Both pass one conformance suite (test/snapshot/snapshot-store-conformance.ts).
//
// A snapshot is the state machine's state at one applied index: the KV pairs (opaque bytes
// here, in key order), with the Raft metadata that says which log prefix it replaces. Its
// file format is in snapshot-format.ts; the bytes are the same in both stores, so a file
// made by one can be sent to and installed by the other.
//
// Invariants every store keeps:
// - a snapshot is listed only once it is whole, durable and verified (every block's CRC32c
//   and the SHA-256 of the content); a failed or half-written one never replaces a good one;
// - a leased snapshot is never deleted while its lease is live (retain() skips it);
// - every read is checked: a block whose CRC32c does not match is refused with CORRUPTION
//   naming the file and the block, never returned.

import type { ConfState, Index, Term } from '../raft/index.ts';
import type { DigestRoot } from '../storage/index.ts';

/** SnapshotRecord is one key-value pair of the state machine, as the state machine stores it. */
export interface SnapshotRecord {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

/** SnapshotFileMetadata is what a snapshot's footer records besides its content. */
export interface SnapshotFileMetadata {
  /** The applied index the snapshot is the state of, and that entry's term. */
  readonly index: Index;
  readonly term: Term;
  /** Raft's configuration at `index`. */
  readonly confState: ConfState;
  /** The store's revision at `index` (etcd's). */
  readonly revision: number;
  /** The member table at `index`, encoded by src/node (opaque here). */
  readonly members: Uint8Array;
  /**
   * The state digest's two roots at `index` (src/storage's state-digest.ts; the key count is
   * the footer's). src/node gives it to every snapshot it makes; undefined in a format-1 file
   * (and where a test made one without).
   * Building checks the records against it (the state machine's view does), and so does
   * restoring.
   */
  readonly digest?: SnapshotDigest | undefined;
  /**
   * The mirror state at `index` (src/storage's MirrorRequest; opaque here): set while the
   * cluster is a read-only mirror of another, undefined otherwise. A member restored from the
   * snapshot must hold it too (src/node passes it to the state machine's restore).
   */
  readonly mirror?: Uint8Array | undefined;
}

/** SnapshotDigest is the state digest's two 16-byte roots a snapshot carries. */
export interface SnapshotDigest {
  readonly full: Uint8Array;
  readonly content: Uint8Array;
}

/** snapshotDigestRoot is the state digest a snapshot's records must sum to, or undefined for a format-1 file. */
export function snapshotDigestRoot(metadata: SnapshotFileMetadata, keyCount: number): DigestRoot | undefined {
  return metadata.digest === undefined ? undefined : { keyCount, full: metadata.digest.full, content: metadata.digest.content };
}

/** SnapshotSource is what a new snapshot is written from: its metadata and its records in key order. */
export interface SnapshotSource {
  readonly metadata: SnapshotFileMetadata;
  /** Batches of records in strictly increasing key order; the iterator is closed (return()) if writing stops early. */
  records(): AsyncIterable<readonly SnapshotRecord[]>;
}

/** SnapshotInfo describes one whole, verified snapshot. */
export interface SnapshotInfo {
  /** `<term as 16 hex digits>-<index as 16 hex digits>`: sorts by (term, index) as text. */
  readonly id: string;
  readonly index: Index;
  readonly term: Term;
  readonly revision: number;
  readonly keyCount: number;
  /** The file's length in bytes (a multiple of SNAPSHOT_ALIGNMENT_BYTES). */
  readonly byteLength: number;
  /** SHA-256 of the content (every byte before the footer), lower-case hex. */
  readonly sha256: string;
  /** Where the file is, for messages (a path, or `memory:<id>`). */
  readonly location: string;
}

/** SnapshotProgress is reported while a snapshot is written, read, sent or received. */
export interface SnapshotProgress {
  readonly bytesDone: number;
  /** The expected total, when known. */
  readonly bytesTotal: number | undefined;
}

/** SnapshotOperationOptions bound a long operation. */
export interface SnapshotOperationOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: SnapshotProgress) => void;
}

/** SnapshotReader reads one snapshot; every byte it returns was checked. */
export interface SnapshotReader {
  readonly info: SnapshotInfo;
  readonly metadata: SnapshotFileMetadata;
  /**
   * records yields the content in key order, each block checked as it is read; at the end
   * the SHA-256 of the content is checked too (a mismatch rejects with CORRUPTION, so a
   * restore that consumed the records must be discarded).
   */
  records(options?: SnapshotOperationOptions): AsyncIterable<readonly SnapshotRecord[]>;
  /**
   * readBlocks returns the file's bytes from `offset`, which must be a block boundary (0, or
   * an offset readBlocks ended at): as many whole blocks as fit in `maxBytes`, at least one,
   * each checked (header, footer and data blocks alike). An empty array at the end of the file.
   */
  readBlocks(offset: number, maxBytes: number): Promise<Uint8Array>;
  /** close releases the file; closing twice is harmless. */
  close(): Promise<void>;
}

/**
 * SnapshotReceiver takes a snapshot's bytes in order, from another member, a client or a
 * file, into a temporary place. Each write is checked block by block as it completes.
 */
export interface SnapshotReceiver {
  /** The bytes received and checked so far (a block boundary): a broken transfer resumes here. */
  readonly verifiedBytes: number;
  readonly byteLength: number;
  /**
   * write appends bytes at `offset`, which must equal verifiedBytes plus whatever earlier
   * writes hold that does not end on a block boundary yet. Rejects with CORRUPTION (naming
   * the block) when a complete block fails its check; the receiver then starts over from
   * the last good block.
   */
  write(offset: number, bytes: Uint8Array): Promise<void>;
  /**
   * finish checks the whole (length, footer, SHA-256), makes the file durable and lists it;
   * resolves with its info. Rejects with CORRUPTION when anything does not match (the
   * temporary file is removed).
   */
  finish(): Promise<SnapshotInfo>;
  /** abort removes what was received; harmless after finish. */
  abort(): Promise<void>;
  /**
   * records streams the content as it arrives, so that a restore can run beside the
   * transfer: each data block's records once the block is checked, in order, across resumed
   * receives of the same snapshot. The stream ends only after finish() checked the whole
   * (then `footer` is set); it fails when the receive ends any other way, so whatever was
   * built from it must then be thrown away. While its reader lags, write() waits (a bounded
   * buffer). Undefined when the receive already checked data blocks without a stream, or a
   * stream was taken: the caller then reads the finished snapshot instead.
   */
  records(): ReceivedRecordStream | undefined;
}

/** ReceivedRecordStream is a receive's content as it arrives (SnapshotReceiver.records). */
export interface ReceivedRecordStream extends AsyncIterable<readonly SnapshotRecord[]> {
  /** What the checked footer says, once the stream ended; undefined before. */
  readonly footer: { readonly metadata: SnapshotFileMetadata; readonly keyCount: number } | undefined;
}

/** SnapshotLease pins a snapshot against deletion until it is released or expires. */
export interface SnapshotLease {
  readonly id: string;
  /** renew moves the expiry to `ttlMs` from now. */
  renew(ttlMs: number): void;
  release(): void;
}

/** SnapshotStore keeps a member's snapshots. */
export interface SnapshotStore {
  /** list returns the whole, verified snapshots, newest (highest index) first. */
  list(): readonly SnapshotInfo[];
  /** get returns one snapshot's info, or undefined. */
  get(id: string): SnapshotInfo | undefined;
  /** create writes a snapshot of `source`, verifies it and lists it. Nothing is listed on failure. */
  create(source: SnapshotSource, options?: SnapshotOperationOptions): Promise<SnapshotInfo>;
  /** open reads a listed snapshot (NOT_FOUND when it is not listed). */
  open(id: string): Promise<SnapshotReader>;
  /**
   * receive starts (or resumes) taking snapshot `id` of `byteLength` bytes. A receive of the
   * same id and length that was broken off resumes from its verifiedBytes; at most
   * RECEIVES_MAX receives are kept, the oldest dropped first.
   */
  receive(id: string, byteLength: number): Promise<SnapshotReceiver>;
  /** lease pins a listed snapshot for `ttlMs` (NOT_FOUND when it is not listed). */
  lease(id: string, ttlMs: number): SnapshotLease;
  /**
   * retain deletes listed snapshots beyond the newest `keep`, except leased ones and the ids
   * in `protect`; returns the ids deleted.
   */
  retain(keep: number, protect?: readonly string[]): Promise<string[]>;
  /** close releases the store; reads still open fail afterwards. */
  close(): Promise<void>;
}

/** snapshotId is the id of the snapshot at (term, index). */
export function snapshotId(term: Term, index: Index): string {
  return `${term.toString(16).padStart(16, '0')}-${index.toString(16).padStart(16, '0')}`;
}

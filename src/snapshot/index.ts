// The public surface of src/snapshot: snapshot files (page-aligned blocks with a CRC32c
// each, a footer with the Raft metadata and a SHA-256), the stores that keep them, and the
// contract both stores pass (snapshot-store.ts).
export { snapshotDigestRoot, snapshotId } from './snapshot-store.ts';
export type {
  ReceivedRecordStream,
  SnapshotFileMetadata,
  SnapshotDigest,
  SnapshotInfo,
  SnapshotLease,
  SnapshotOperationOptions,
  SnapshotProgress,
  SnapshotReader,
  SnapshotReceiver,
  SnapshotRecord,
  SnapshotSource,
  SnapshotStore,
} from './snapshot-store.ts';
export { DiskSnapshotStore, SNAPSHOT_FILES_MAX, verifySnapshotFile } from './disk-snapshot-store.ts';
export type { DiskSnapshotStoreOptions } from './disk-snapshot-store.ts';
export { MemorySnapshotStore } from './memory-snapshot-store.ts';
export type { MemorySnapshotStoreOptions } from './memory-snapshot-store.ts';
export { RECEIVES_MAX, SNAPSHOT_NOT_FOUND_CODE } from './snapshot-store-parts.ts';
export {
  SNAPSHOT_ALIGNMENT_BYTES,
  SNAPSHOT_BLOCK_BYTES_MAX,
  SNAPSHOT_BLOCK_BYTES_TARGET,
  SNAPSHOT_FORMAT_VERSION,
  SNAPSHOT_MEMBERS_BYTES_MAX,
  isSnapshotHeader,
  parseSnapshotId,
} from './snapshot-format.ts';
export { notStratakvSnapshot, openForReading, readSnapshotBytes, SAVED_SNAPSHOT_READ_BYTES, SNAPSHOT_TRAILER_BYTES, verifySavedSnapshot } from './saved-snapshot.ts';
export type { SavedSnapshotProgress, VerifiedSnapshot, VerifySavedSnapshotOptions } from './saved-snapshot.ts';

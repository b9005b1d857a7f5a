// The public surface of src/storage: the durable Raft log (disk, memory, fault-injecting
// disk), the KV state machine with etcd semantics, and the encoding of KV commands in entries.
export type { LogStore, SaveRequest } from './log-store.ts';
export { isEmptySaveRequest } from './log-store.ts';
export { MemoryLogStore } from './memory-log-store.ts';
export { DiskLogStore, SEGMENT_BYTES_MAX, CACHE_BYTES_MAX, GROUP_BYTES_MAX, PENDING_SAVES_MAX } from './disk-log-store.ts';
export type { DiskLogStoreOptions, RecoveryReport } from './disk-log-store.ts';
export type { StorageFileSystem } from './file-system.ts';
export { NodeFileSystem } from './file-system.ts';
export { FaultyFileSystem, SECTOR_BYTES } from './faulty-file-system.ts';
export type { CrashMode, CrashReport, FaultyFileSystemOptions } from './faulty-file-system.ts';
export type { FatalHandler } from './fatal.ts';
export { abortOnFatal } from './fatal.ts';
export { KvStateMachine, DIGEST_VIEWS_MAX, DIGEST_VIEW_RANGE_LIMIT_MAX, INITIAL_REVISION, APPLY_ENTRIES_MAX, RESTORE_BATCH_BYTES_MAX, SNAPSHOT_READ_BATCH_KEYS } from './kv-state-machine.ts';
export type { ApplyResult, DigestAt, KvChange, DigestView, LeafKey, KvLevel, KvSnapshotContent, KvSnapshotRecord, KvSnapshotView, KvStateMachineOptions } from './kv-state-machine.ts';
export { openDiskKvStateMachine, openMemoryKvStateMachine, restoreDiskKvStateMachine, restoreMemoryKvStateMachine } from './kv-open.ts';
export { encodeKvCommand, decodeKvCommand, isKvCommand, kvCommandType, CHECKPOINT_FORMAT, NODE_COMMAND_FORMAT } from './kv-command-codec.ts';
export type { DigestRoot, KeyHashes } from './state-digest.ts';
export { DIGEST_BYTES, FANOUT, LEAF_COUNT, TREE_DEPTH, DigestSums, EMPTY_DIGEST_ROOT, digestRootsEqual, formatDigest, keyHashesOf, leafOf } from './state-digest.ts';
export type { DigestCheck, DigestVerification } from './kv-digest-check.ts';
export { validateKvRequest, encodeValidKvCommand, replayedRequests } from './kv-validation.ts';
export { DEFAULT_KV_LIMITS, LEASE_ID_MAX, MIRROR_REPLAY_COMMANDS_MAX, MIRROR_STATE_BYTES_MAX, MIRROR_STATE_FOOTER_BYTES_MAX } from './kv-types.ts';
export type * from './kv-types.ts';
export { decodePackedCommands, decodePackedPuts, encodePackedCommands, encodePackedPuts, MIRROR_PUTS_PER_REQUEST_MAX } from './mirror-packing.ts';

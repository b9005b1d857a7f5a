// The public surface of the Raft core. Everything outside src/raft imports from here.
export { Raft, RAFT_CONFIG_DEFAULTS } from './raft.ts';
export type { RaftConfig, RaftStatus, ProgressStatus, ReadOnlyOption } from './raft.ts';
export { MemoryLogStorage, limitEntriesBySize } from './storage.ts';
export type { LogStorage, InitialState } from './storage.ts';
export { encodeConfChange, decodeConfChange } from './conf-change.ts';
export type { ProgressState } from './progress.ts';
export * from './types.ts';

// The public surface of src/migrate/copy: the cross-cluster copy (`stratakv migrate copy`) from
// etcd or another stratakv cluster into a stratakv cluster kept as a read-only mirror.
export { runCopy, rangeOf, keyAfter, PAGE_KEYS, PROGRESS_INTERVAL_MS, COMMIT_ATTEMPTS_MAX, RECONNECTS_MAX } from './copier.ts';
export type { CopyEvent, CopyOptions, CopyResult } from './copier.ts';
export { COPY_STATE_FORMAT, decodeCopyState, encodeCopyState } from './copy-state.ts';
export type { CopyPhase, CopySourceKind, CopySourceSpec, CopyState, ScanPosition } from './copy-state.ts';
export type { CopySource, CopyTarget, KeyRange, SourceEvent, SourceKv, SourcePage, SourceTail, SourceTailBatch, TargetView } from './copy-ends.ts';
export { verifyCopy, DIFFERENCES_LISTED_MAX } from './copy-verify.ts';
export type { CopyDifference, VerifyOptions, VerifyReport } from './copy-verify.ts';
export { copyStatus } from './copy-status.ts';
export type { CopyStatus } from './copy-status.ts';
export { etcdSource, SOURCE_CALL_TIMEOUT_MS, WATCH_IDLE_TIMEOUT_MS } from './etcd-source.ts';
export { cancelCopy } from './copy-cancel.ts';
export type { CancelResult } from './copy-cancel.ts';
export { mirrorTarget, TARGET_CALL_TIMEOUT_MS } from './mirror-target.ts';

// The public surface of src/migrate/copy: the cross-cluster copy (`stratakv migrate copy`) from
// etcd or another stratakv cluster into a stratakv cluster kept as a read-only mirror.
export { runCopy, rangeOf, keyAfter, describePhase, PAGE_KEYS, PROGRESS_INTERVAL_MS, COMMIT_ATTEMPTS_MAX, RECONNECTS_MAX, REPLAY_COMMANDS_MAX } from './copier.ts';
export type { CopyEvent, CopyOptions, CopyResult } from './copier.ts';
export { COPY_STATE_FORMAT, VERIFY_PINS_MAX, REVERSE_STATE_KEY, decodeCopyState, encodeCopyState, isStateKey } from './copy-state.ts';
export type { CopyDirection, CopyPhase, CopySourceKind, CopySourceSpec, CopyState, ScanPosition, SourcePin, SwitchInfo, VerifyPin } from './copy-state.ts';
export type {
  CopySource,
  CopyTarget,
  KeyRange,
  LogBatch,
  LogCopySource,
  LogEntry,
  LogSourceHead,
  PinnedSourceView,
  SourceEvent,
  SourceKv,
  SourcePage,
  SourceTail,
  SourceTailBatch,
  TargetView,
} from './copy-ends.ts';
export { stratakvSource, LOG_SOURCE_CALL_TIMEOUT_MS, LOG_IDLE_TIMEOUT_MS } from './stratakv-source.ts';
export { verifyCopy, DIFFERENCES_LISTED_MAX } from './copy-verify.ts';
export type { CopyDifference, VerifyOptions, VerifyReport } from './copy-verify.ts';
export { copyStatus } from './copy-status.ts';
export type { CopyStatus, StatusSource } from './copy-status.ts';
export { verifyLogCopy, diffPinned, VERIFY_WAIT_MS_DEFAULT } from './copy-verify-merkle.ts';
export type { MerkleVerifyOptions, MerkleVerifyReport } from './copy-verify-merkle.ts';
export { switchCopy, completeCopy, fenceState, SWITCH_STEP_ATTEMPTS_MAX } from './copy-switch.ts';
export type { SwitchEvent, SwitchOptions, SwitchResult } from './copy-switch.ts';
export { etcdSource, SOURCE_CALL_TIMEOUT_MS, WATCH_IDLE_TIMEOUT_MS } from './etcd-source.ts';
export { cancelCopy } from './copy-cancel.ts';
export type { CancelResult } from './copy-cancel.ts';
export { mirrorTarget, TARGET_CALL_TIMEOUT_MS } from './mirror-target.ts';
export { EtcdReverse, readReverseState, runEtcdReverse, REPLICA_KEYS_MAX, TXN_OPS_MAX, REVERSE_CALL_TIMEOUT_MS, REVERSE_ATTEMPTS_MAX } from './etcd-reverse.ts';
export type { ReverseEvent, ReverseHead, ReverseOptions, ReverseResult } from './etcd-reverse.ts';
export { switchEtcdCopy, reverseEtcdCopy, verifyEtcdReverse, QUIET_MS_DEFAULT, QUIET_TIMEOUT_MS_DEFAULT, DELTA_KEYS_MAX } from './copy-switch-etcd.ts';
export type { EtcdSwitchEvent, EtcdSwitchOptions, EtcdSwitchResult, EtcdReverseOptions, EtcdReverseVerify } from './copy-switch-etcd.ts';
export { holdLogWhile, releaseLogHold, logHoldConsumer, LOG_HOLD_TTL_MS, LOG_HOLD_RENEW_MS } from './log-hold-renewer.ts';
export type { LogHoldRenewer } from './log-hold-renewer.ts';

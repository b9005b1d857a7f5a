// The public surface of the linearizability checker (README.md): record a history with
// HistoryRecorder, check it with checkLinearizability, print it with formatVerdict and
// formatHistory. The register model and the memo are internal.

export {
  checkLinearizability,
  CHECK_MEMO_BYTES_MAX,
  CHECK_OPERATIONS_PER_KEY_MAX,
  CHECK_STEPS_MAX,
  CHECK_TIME_MS_MAX,
  type CheckOptions,
} from './checker.ts';
export { formatHistory, formatOperation, formatValue, formatVerdict, type FormatHistoryOptions } from './format.ts';
export {
  partitionByKey,
  responseTimeOf,
  validateOperation,
  valueFromBytes,
  type CasInput,
  type CasOperation,
  type CasResult,
  type ClientId,
  type DeleteInput,
  type DeleteOperation,
  type DeleteResult,
  type History,
  type IndexedOperation,
  type Operation,
  type OperationInput,
  type OperationKind,
  type OperationRecord,
  type Outcome,
  type OutcomeStatus,
  type ReadInput,
  type ReadOperation,
  type ReadResult,
  type WriteInput,
  type WriteOperation,
  type WriteResult,
} from './history.ts';
export {
  HistoryRecorder,
  RECORDER_OPERATIONS_MAX,
  type HistoryClock,
  type HistoryRecorderOptions,
  type PendingOperation,
  type ResultArguments,
} from './history-recorder.ts';
export type { CheckLimit, Explanation, PrefixStep, Verdict } from './verdict.ts';

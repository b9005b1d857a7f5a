// The public surface of src/migrate: live migration of a running cluster onto new members
// (`stratakv migrate`): plans, the journaled executor, status and rollback.
export { clusterOver, MEMBER_CHANGE_TIMEOUT_MS, TRANSFER_TIMEOUT_MS, ENDPOINTS_FOLLOWED_MAX } from './migration-cluster.ts';
export type { MigrationCluster } from './migration-cluster.ts';
export { MOVE_STEPS, ABORT_STEPS, RECORD_FORMAT, STEP_LOG_MAX, decodeRecord, encodeRecord, isBeforeSwap, stepsOf } from './migration-record.ts';
export type { MemberSpec, MigrationRecord, RecordKind, StepLogItem, StepName } from './migration-record.ts';
export { makePlan, describe, TARGETS_MAX } from './plan.ts';
export type { JoinProbe, Plan, PlannedStep, PlanInput, TargetSpec } from './plan.ts';
export { runRecord, bestTransferee, CAUGHT_UP_LAG_ENTRIES, STALL_TIMEOUT_MS_DEFAULT, POLL_INTERVAL_MS, VERIFY_ATTEMPTS_MAX } from './executor.ts';
export type { ExecutorOptions, LearnerProgress, MigrationEvent } from './executor.ts';
export { planMigration, runMigration, rollbackMigration, migrationStatus } from './migration-run.ts';
export type { MigrationStatus, PlanOptions, ProbeJoiner } from './migration-run.ts';

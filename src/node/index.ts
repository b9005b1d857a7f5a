// The public surface of src/node: the driver and what it is started with (its Clock is src/util's).
export { RaftNode, REMOVED_GRACE_ELECTIONS } from './raft-node.ts';
export type { NodeStatus, NodeCallOptions, NodeQueues } from './raft-node.ts';
export type { RaftNodeOptions, RaftNodeHooks, InitialClusterMember, TransportIdentity } from './raft-node-options.ts';
export { REQUEST_TIMEOUT_MS, PROPOSALS_QUEUED_MAX, PROPOSALS_HELD_MAX, PROPOSALS_IN_FLIGHT_MAX, PROPOSALS_FORWARDING_MAX } from './proposal-tracker.ts';
export type { ProposalCounts } from './proposal-tracker.ts';
export { READS_PENDING_MAX } from './read-index.ts';
export { LEARNERS_MAX, LEARNER_READY_FRACTION, CONF_CHANGES_WAITING_MAX } from './membership-changes.ts';
export type { JointLeave } from './membership-changes.ts';
export { FORWARD_HOPS_MAX, FORWARD_BATCH_MAX } from './proposal-router.ts';
export type { ReadyLoopFailpoints } from './ready-loop.ts';
export type { MemberRecord } from './membership.ts';
export { ALARM_TYPES, ALARMS_MAX, CLUSTER_ALARM_MEMBER_ID, describeAlarm } from './alarms.ts';
export type { AlarmAction, AlarmChange, AlarmRecord, AlarmType } from './alarms.ts';
export { QUOTA_BACKEND_BYTES_DEFAULT, QUOTA_BACKEND_BYTES_SUGGESTED_MAX } from './backend-quota.ts';
export { memberIdFor, clusterIdFor, formatMemberId } from './member-identity.ts';
export { restoreDataDir } from './restore-data-dir.ts';
export type { RestoreDataDirOptions, RestoredDataDir, RestorePhase, RestoreProgress } from './restore-data-dir.ts';
export { verifySavedSnapshot, notStratakvSnapshot, SNAPSHOT_TRAILER_BYTES, SAVED_SNAPSHOT_READ_BYTES } from '../snapshot/index.ts';
export type { VerifiedSnapshot, VerifySavedSnapshotOptions, SavedSnapshotProgress } from '../snapshot/index.ts';
export { SNAPSHOT_POLICY_DEFAULTS } from './snapshotter.ts';
export type { SnapshotPolicy, SnapshotterStatus } from './snapshotter.ts';
export type { SnapshotStream } from './raft-node.ts';
// What the log-delta stream's readers need: the bound on its waits, and the decoding of node commands it shows.
export { APPLIED_WAITERS_MAX } from './raft-node.ts';
export { decodeNodeCommand } from './node-command.ts';
export type { NodeCommand } from './node-command.ts';
export type { RebuildReport } from './raft-node.ts';
export { REBUILD_CATCH_UP_ROUNDS_MAX } from './raft-node.ts';
export { DEFAULT_INTEGRITY_CHECK_POLICY, CHECKPOINTS_KEPT, judge, isCheckpointEntry, decodeCheckpoint } from './integrity-checks.ts';
export type { CheckpointState, CheckpointVerdict, DigestReport, IntegrityCheckPolicy } from './integrity-checks.ts';
export { DEFAULT_SCRUB_POLICY } from './scrubber.ts';
export type { ScrubPolicy, ScrubReport } from './scrubber.ts';
export { DIGEST_PINS_MAX, PIN_IDLE_MS, PIN_NEVER_USED_MS } from './digest-pins.ts';
// What a migration needs: the journal, the leader's view of replication.
export { JOURNAL_RECORD_BYTES_MAX } from './migration-journal.ts';
export type { JournalState } from './migration-journal.ts';
// What a log hold is (a consumer of the log keeping it from an index on; log-holds.ts).
export { LOG_HOLDS_MAX, LOG_HOLD_CONSUMER_BYTES_MAX, LOG_HOLD_TTL_MS_MAX, checkLogHoldRequest, logHoldConsumerProblem } from './log-holds.ts';
export type { LogHold, LogHoldCommand } from './log-holds.ts';
export { PROBE_TIMEOUT_MS } from './replication-status.ts';
export type { PeerReplication, ReplicationStatus } from './replication-status.ts';

// The public surface of src/node: the driver and what it is started with.
export { RaftNode, REQUEST_TIMEOUT_MS, PROPOSALS_QUEUED_MAX, PROPOSALS_HELD_MAX, LEARNERS_MAX, LEARNER_READY_FRACTION } from './raft-node.ts';
export type { NodeStatus, NodeCallOptions } from './raft-node.ts';
export type { RaftNodeOptions, RaftNodeHooks, InitialClusterMember, TransportIdentity } from './raft-node-options.ts';
export type { MemberRecord } from './membership.ts';
export { memberIdFor, clusterIdFor, formatMemberId } from './member-identity.ts';

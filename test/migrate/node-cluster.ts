// The in-memory twin of MigrationCluster: the same calls answered by RaftNodes of a test
// cluster (the fixture's, on a MemoryNetwork and a VirtualClock) instead of the Admin service
// over gRPC, so the executor's rules run in virtual time. Like the gRPC client it asks the
// first member that can answer: the leader for replication and transfers, any live member for
// the rest (followers pass membership changes and journal writes to their leader).

import type { IntegrityCheck, JournalInfo, MemberChange, MigrationMemberInfo, ReplicationInfo } from '../../src/client/index.ts';
import type { MigrationCluster } from '../../src/migrate/index.ts';
import type { MemberRecord, RaftNode } from '../../src/node/index.ts';
import { ErrorCode, isStrataError, StrataError } from '../../src/util/index.ts';

/** nodesCluster is the twin over the members `nodes()` lists (stopped ones are skipped). */
export function nodesCluster(nodes: () => readonly RaftNode[], stopped: ReadonlySet<RaftNode>): MigrationCluster {
  const live = (): RaftNode[] => nodes().filter((node) => !stopped.has(node) && !node.status().removed);
  // first asks each live member in turn, passing over those that cannot answer (as the gRPC client does).
  const first = async <T>(call: (node: RaftNode) => Promise<T>): Promise<T> => {
    let last: unknown = new StrataError(ErrorCode.UNAVAILABLE, 'no member is running');
    for (const node of live()) {
      try {
        return await call(node);
      } catch (error) {
        last = error;
        if (!isStrataError(error) || ![ErrorCode.NOT_LEADER, ErrorCode.UNAVAILABLE, ErrorCode.STOPPED, ErrorCode.MEMBER_REMOVED, ErrorCode.NO_LEADER].includes(error.code as never)) throw error;
      }
    }
    throw last;
  };
  const member = (record: MemberRecord): MigrationMemberInfo => ({ ...record, zone: (record as { zone?: string }).zone ?? '' });
  return {
    endpoints: [],
    readJournal: () => first(async (node): Promise<JournalInfo> => {
      const state = await node.migrationJournal({ timeoutMs: 5_000 });
      return { version: state.version, record: state.record };
    }),
    writeJournal: (expectedVersion, record) => first((node) => node.writeMigrationJournal(expectedVersion, record, { timeoutMs: 5_000 })),
    replication: () => first(async (node): Promise<ReplicationInfo> => {
      const status = await node.replicationStatus();
      return {
        leaderId: status.leaderId,
        term: status.term,
        commitIndex: status.commitIndex,
        lastIndex: status.lastIndex,
        appliedIndex: status.appliedIndex,
        voters: status.config.voters,
        learners: status.config.learners,
        votersOutgoing: status.config.votersOutgoing,
        autoLeave: status.config.autoLeave,
        members: status.members.map(member),
        peers: status.peers.map((peer) => ({ ...peer, snapshot: peer.snapshot, rttMs: peer.rttMs, appliedIndex: peer.appliedIndex })),
        endpoint: node.name,
      };
    }),
    changeMembers: (change: MemberChange) => first(async (node) => {
      const options = { timeoutMs: 5_000 };
      switch (change.op) {
        case 'add-learner': {
          const added = await node.addMember(change.peerUrls, true, { ...options, learnersMax: change.learnersMax });
          return { members: added.members.map(member), addedId: added.member.id };
        }
        case 'replace':
          return { members: (await node.replaceMembers({ promote: change.promote, remove: change.remove, demote: change.demote, leave: 'explicit' }, options)).map(member), addedId: 0 };
        case 'leave':
          return { members: (await node.leaveJointConfiguration(options)).map(member), addedId: 0 };
        case 'remove':
          return { members: (await node.removeMember(change.id, options)).map(member), addedId: 0 };
      }
    }),
    transferLeader: (targetId) => first((node) => node.transferLeadership(targetId, { timeoutMs: 5_000 })),
    check: (timeoutMs) => first(async (node): Promise<IntegrityCheck> => {
      const state = await node.checkIntegrity({ timeoutMs });
      return {
        index: state.index,
        verdict: state.verdict,
        voters: state.voters,
        learners: state.learners,
        reports: state.reports,
        corrupt: state.corrupt,
        majority: state.majority,
        memberId: node.memberId,
        endpoint: node.name,
      };
    }),
    alarms: () => Promise.resolve([]),
    followEndpoints: () => undefined,
    close: () => undefined,
  };
}

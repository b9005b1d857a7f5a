// The migration methods of stratakv.admin.Admin (proto/stratakv/admin.proto): the journal a
// `stratakv migrate` keeps in the cluster (JournalRead, JournalWrite), the leader's view of
// replication (Replication), one membership step (MemberChange) and a leader transfer
// (TransferLeader). Each maps one request onto one RaftNode call; the rules (compare-and-set
// on the journal, which changes are allowed, when a learner is ready) are the node's. Errors
// travel as the other admin methods' do (the catalogue code in the `stratakv-code` trailer).

import type { handleUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';

import type { JournalState, MemberRecord, NodeCallOptions, ReplicationStatus } from '../node/index.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { toWireMember } from './cluster-info-service.ts';
import { unary } from './diff-service.ts';
import type { EtcdServerLogger } from './unary-call.ts';

/** MIGRATION_CALL_TIMEOUT_MS_MAX bounds a request's timeout_ms. */
export const MIGRATION_CALL_TIMEOUT_MS_MAX = 10 * 60_000;

/** MigrationNode is what the service needs of a member (RaftNode has it). */
export interface MigrationNode {
  readonly memberId: number;
  migrationJournal(options?: NodeCallOptions): Promise<JournalState>;
  writeMigrationJournal(expectedVersion: number, record: string | undefined, options?: NodeCallOptions): Promise<number>;
  replicationStatus(options?: NodeCallOptions): Promise<ReplicationStatus>;
  addMember(peerUrls: readonly string[], isLearner: boolean, options?: NodeCallOptions & { readonly learnersMax?: number }): Promise<{ member: MemberRecord; members: MemberRecord[] }>;
  replaceMembers(
    change: { readonly promote: readonly number[]; readonly remove: readonly number[]; readonly demote?: readonly number[]; readonly leave?: 'auto' | 'explicit' },
    options?: NodeCallOptions,
  ): Promise<MemberRecord[]>;
  leaveJointConfiguration(options?: NodeCallOptions): Promise<MemberRecord[]>;
  removeMember(id: number, options?: NodeCallOptions): Promise<MemberRecord[]>;
  transferLeadership(targetId: number, options?: NodeCallOptions): Promise<void>;
}

interface MemberChangeRequest {
  op?: string;
  peer_urls?: string[];
  learners_max?: number;
  promote?: number[];
  remove?: number[];
  demote?: number[];
  id?: number;
  timeout_ms?: number;
}

/** createMigrationService implements the migration methods over `node`. */
export function createMigrationService(options: { readonly node: MigrationNode; readonly logger?: EtcdServerLogger | undefined }): UntypedServiceImplementation {
  const { node, logger } = options;
  const callOptions = (request: { timeout_ms?: number }, signal: AbortSignal): NodeCallOptions => {
    const timeoutMs = request.timeout_ms ?? 0;
    return timeoutMs > 0 ? { signal, timeoutMs: Math.min(timeoutMs, MIGRATION_CALL_TIMEOUT_MS_MAX) } : { signal };
  };
  const journalRead: handleUnaryCall<object, object> = unary('Admin.JournalRead', logger, async (_request: object, signal) => {
    const state = await node.migrationJournal({ signal });
    return { version: state.version, has_record: state.record !== undefined, record: state.record ?? '', member_id: node.memberId };
  });
  const journalWrite: handleUnaryCall<object, object> = unary(
    'Admin.JournalWrite',
    logger,
    async (request: { expected_version?: number; clear?: boolean; record?: string; timeout_ms?: number }, signal) => {
      const version = await node.writeMigrationJournal(request.expected_version ?? 0, request.clear === true ? undefined : (request.record ?? ''), callOptions(request, signal));
      return { version };
    },
  );
  const replication: handleUnaryCall<object, object> = unary('Admin.Replication', logger, async (_request: object, signal) => {
    const status = await node.replicationStatus({ signal });
    return {
      leader_id: status.leaderId,
      term: status.term,
      commit_index: status.commitIndex,
      last_index: status.lastIndex,
      applied_index: status.appliedIndex,
      voters: [...status.config.voters],
      learners: [...status.config.learners],
      voters_outgoing: [...status.config.votersOutgoing],
      auto_leave: status.config.autoLeave,
      members: status.members.map(toWireMember),
      peers: status.peers.map((peer) => ({
        id: peer.id,
        is_learner: peer.isLearner,
        match: peer.match,
        next: peer.next,
        state: peer.state,
        recent_active: peer.recentActive,
        sending_snapshot: peer.snapshot !== undefined,
        snapshot_index: peer.snapshot?.index ?? 0,
        snapshot_acknowledged_bytes: peer.snapshot?.acknowledgedBytes ?? 0,
        snapshot_bytes: peer.snapshot?.byteLength ?? 0,
        probed: peer.rttMs !== undefined,
        rtt_ms: peer.rttMs ?? 0,
        applied_index: peer.appliedIndex ?? 0,
      })),
    };
  });
  const memberChange: handleUnaryCall<object, object> = unary('Admin.MemberChange', logger, async (request: MemberChangeRequest, signal) => {
    const call = callOptions(request, signal);
    switch (request.op) {
      case 'add-learner': {
        const learnersMax = request.learners_max ?? 0;
        const added = await node.addMember(request.peer_urls ?? [], true, { ...call, ...(learnersMax > 0 ? { learnersMax } : {}) });
        return { members: added.members.map(toWireMember), added_id: added.member.id };
      }
      case 'replace': {
        const members = await node.replaceMembers({ promote: request.promote ?? [], remove: request.remove ?? [], demote: request.demote ?? [], leave: 'explicit' }, call);
        return { members: members.map(toWireMember), added_id: 0 };
      }
      case 'leave':
        return { members: (await node.leaveJointConfiguration(call)).map(toWireMember), added_id: 0 };
      case 'remove':
        return { members: (await node.removeMember(request.id ?? 0, call)).map(toWireMember), added_id: 0 };
      default:
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `MemberChange: unknown op ${JSON.stringify(request.op ?? '')}; one of add-learner, replace, leave, remove`, {
          details: { field: 'op' },
        });
    }
  });
  const transferLeader: handleUnaryCall<object, object> = unary('Admin.TransferLeader', logger, async (request: { target_id?: number; timeout_ms?: number }, signal) => {
    const targetId = request.target_id ?? 0;
    await node.transferLeadership(targetId, callOptions(request, signal));
    return { leader_id: targetId };
  });
  return { JournalRead: journalRead, JournalWrite: journalWrite, Replication: replication, MemberChange: memberChange, TransferLeader: transferLeader };
}

// MigrationClient: the Admin service's migration methods (proto/stratakv/admin.proto) for
// `stratakv migrate` and for embedders. Calls that only a leader answers (Replication,
// TransferLeader) and calls any member answers (the journal, membership steps, which a
// follower passes on to its leader) both go through `endpoints` in order until one answers:
// an endpoint that cannot answer (UNAVAILABLE, TIMEOUT, NOT_LEADER, STOPPED, MEMBER_REMOVED,
// a CORRUPT alarm) is passed over; any other error is the answer.

import { ErrorCode, StrataError } from '../util/errors.ts';
import { ADMIN_PASS_OVER_CODES, AdminCalls } from './admin-calls.ts';
import type { ClusterInfoMember, WireMember } from './cluster-info-client.ts';
import { fromWireMember } from './cluster-info-client.ts';

/** MIGRATION_CALL_TIMEOUT_MS_DEFAULT is a migration call's deadline when none is given. */
export const MIGRATION_CALL_TIMEOUT_MS_DEFAULT = 10_000;

/** MigrationMemberInfo is one member as a migration sees it (ClusterInfo's member). */
export type MigrationMemberInfo = ClusterInfoMember;

/** PeerReplicationInfo is the leader's view of one other member. */
export interface PeerReplicationInfo {
  readonly id: number;
  readonly isLearner: boolean;
  readonly match: number;
  readonly next: number;
  readonly state: string;
  readonly recentActive: boolean;
  readonly snapshot: { readonly index: number; readonly acknowledgedBytes: number; readonly byteLength: number } | undefined;
  /** The probe's measurement; undefined when the member did not answer in time. */
  readonly rttMs: number | undefined;
  readonly appliedIndex: number | undefined;
}

/** ReplicationInfo is the leader's view of the cluster. */
export interface ReplicationInfo {
  readonly leaderId: number;
  readonly term: number;
  readonly commitIndex: number;
  readonly lastIndex: number;
  readonly appliedIndex: number;
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  readonly votersOutgoing: readonly number[];
  readonly autoLeave: boolean;
  readonly members: readonly MigrationMemberInfo[];
  readonly peers: readonly PeerReplicationInfo[];
  /** The endpoint that answered (the leader's). */
  readonly endpoint: string;
}

/** JournalInfo is the journal as read: its version and record (undefined: none). */
export interface JournalInfo {
  readonly version: number;
  readonly record: string | undefined;
}

/** MemberChange is one membership step. */
export type MemberChange =
  | { readonly op: 'add-learner'; readonly peerUrls: readonly string[]; readonly learnersMax: number }
  | { readonly op: 'replace'; readonly promote: readonly number[]; readonly remove: readonly number[]; readonly demote: readonly number[] }
  | { readonly op: 'leave' }
  | { readonly op: 'remove'; readonly id: number };

interface WirePeer {
  id: number;
  is_learner: boolean;
  match: number;
  next: number;
  state: string;
  recent_active: boolean;
  sending_snapshot: boolean;
  snapshot_index: number;
  snapshot_acknowledged_bytes: number;
  snapshot_bytes: number;
  probed: boolean;
  rtt_ms: number;
  applied_index: number;
}

interface WireReplication {
  leader_id: number;
  term: number;
  commit_index: number;
  last_index: number;
  applied_index: number;
  voters: number[];
  learners: number[];
  voters_outgoing: number[];
  auto_leave: boolean;
  members: WireMember[];
  peers: WirePeer[];
}

const METHODS = ['JournalRead', 'JournalWrite', 'Replication', 'MemberChange', 'TransferLeader'] as const;


/** MigrationClient calls the migration methods (see the file comment). */
export class MigrationClient {
  readonly #calls = new AdminCalls(METHODS);
  #endpoints: readonly string[];

  constructor(endpoints: readonly string[]) {
    if (endpoints.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a migration needs at least one endpoint', { details: { field: 'endpoints' } });
    this.#endpoints = [...endpoints];
  }

  /** endpoints are the endpoints tried, in order. */
  get endpoints(): readonly string[] {
    return this.#endpoints;
  }

  /** setEndpoints replaces the endpoints (the cluster's members changed). */
  setEndpoints(endpoints: readonly string[]): void {
    if (endpoints.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a migration needs at least one endpoint', { details: { field: 'endpoints' } });
    this.#endpoints = [...endpoints];
  }

  /** readJournal reads the journal linearizably. */
  async readJournal(options: { readonly timeoutMs?: number } = {}): Promise<JournalInfo> {
    const { value } = await this.#first<{ version: number; has_record: boolean; record: string }>('JournalRead', {}, options.timeoutMs);
    return { version: value.version, record: value.has_record ? value.record : undefined };
  }

  /** writeJournal writes `record` (undefined clears it) if the journal is still at `expectedVersion`; answers the new version. */
  async writeJournal(expectedVersion: number, record: string | undefined, options: { readonly timeoutMs?: number } = {}): Promise<number> {
    const timeoutMs = options.timeoutMs ?? MIGRATION_CALL_TIMEOUT_MS_DEFAULT;
    const request = { expected_version: expectedVersion, clear: record === undefined, record: record ?? '', timeout_ms: timeoutMs };
    const { value } = await this.#first<{ version: number }>('JournalWrite', request, timeoutMs);
    return value.version;
  }

  /** replication answers the leader's view of every member (the first endpoint that leads). */
  async replication(options: { readonly timeoutMs?: number } = {}): Promise<ReplicationInfo> {
    const { value, endpoint } = await this.#first<WireReplication>('Replication', {}, options.timeoutMs);
    return fromWireReplication(value, endpoint);
  }

  /** changeMembers runs one membership step; answers the members after it (and the added member's id). */
  async changeMembers(change: MemberChange, options: { readonly timeoutMs?: number } = {}): Promise<{ members: MigrationMemberInfo[]; addedId: number }> {
    const timeoutMs = options.timeoutMs ?? MIGRATION_CALL_TIMEOUT_MS_DEFAULT;
    const request = {
      op: change.op,
      timeout_ms: timeoutMs,
      ...(change.op === 'add-learner' ? { peer_urls: [...change.peerUrls], learners_max: change.learnersMax } : {}),
      ...(change.op === 'replace' ? { promote: [...change.promote], remove: [...change.remove], demote: [...change.demote] } : {}),
      ...(change.op === 'remove' ? { id: change.id } : {}),
    };
    const { value } = await this.#first<{ members: WireMember[]; added_id: number }>('MemberChange', request, timeoutMs);
    return { members: value.members.map(fromWireMember), addedId: value.added_id };
  }

  /** transferLeader hands leadership to `targetId` (the call finds the leader) and resolves once it leads. */
  async transferLeader(targetId: number, options: { readonly timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? MIGRATION_CALL_TIMEOUT_MS_DEFAULT;
    await this.#first('TransferLeader', { target_id: targetId, timeout_ms: timeoutMs }, timeoutMs);
  }

  /** close closes the connections. */
  close(): void {
    this.#calls.close();
  }

  async #first<Response>(name: (typeof METHODS)[number], request: object, timeoutMs: number | undefined): Promise<{ value: Response; endpoint: string }> {
    const deadlineMs = timeoutMs ?? MIGRATION_CALL_TIMEOUT_MS_DEFAULT;
    let last: StrataError | undefined;
    for (const endpoint of this.#endpoints) {
      try {
        // A little past the member's own deadline, so that its answer (TIMEOUT with its reason) arrives first.
        return { value: await this.#calls.call<Response>(endpoint, name, request, deadlineMs + 2_000), endpoint };
      } catch (error) {
        if (!(error instanceof StrataError) || !ADMIN_PASS_OVER_CODES.has(error.code)) throw error;
        last = error;
      }
    }
    throw last ?? new StrataError(ErrorCode.UNAVAILABLE, `no endpoint answered ${name}`);
  }
}

function fromWireReplication(wire: WireReplication, endpoint: string): ReplicationInfo {
  return {
    leaderId: wire.leader_id,
    term: wire.term,
    commitIndex: wire.commit_index,
    lastIndex: wire.last_index,
    appliedIndex: wire.applied_index,
    voters: wire.voters,
    learners: wire.learners,
    votersOutgoing: wire.voters_outgoing,
    autoLeave: wire.auto_leave,
    members: wire.members.map(fromWireMember),
    peers: wire.peers.map((peer) => ({
      id: peer.id,
      isLearner: peer.is_learner,
      match: peer.match,
      next: peer.next,
      state: peer.state,
      recentActive: peer.recent_active,
      snapshot: peer.sending_snapshot ? { index: peer.snapshot_index, acknowledgedBytes: peer.snapshot_acknowledged_bytes, byteLength: peer.snapshot_bytes } : undefined,
      rttMs: peer.probed ? peer.rtt_ms : undefined,
      appliedIndex: peer.probed ? peer.applied_index : undefined,
    })),
    endpoint,
  };
}

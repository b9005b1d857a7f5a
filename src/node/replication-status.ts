// The leader's view of replication to every member, for a migration deciding when learners
// have caught up and which new voter should lead: Raft's progress per member (match, next,
// probe / replicate / snapshot), the snapshot being streamed to it (bytes acknowledged of
// the file's), and what a probe measured just now — the member's own applied index and the
// round-trip time of one peer call ('status'). Only a leader has progress; any other member
// answers NOT_LEADER with the leader it knows.
//
// The probes run concurrently, each bounded by PROBE_TIMEOUT_MS; a member that does not answer
// in time is reported without rttMs and appliedIndex (unreachable, or slow), never waited for.

import { Packr } from 'msgpackr';

import type { ConfState, Index, NodeId, ProgressState, RaftStatus, Term } from '../raft/index.ts';
import type { Transport } from '../transport/index.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { Clock } from '../util/clock.ts';
import type { MemberRecord } from './membership.ts';
import type { SnapshotSendStatus } from './snapshot-sender.ts';

/** PROBE_TIMEOUT_MS bounds one member's status probe. */
export const PROBE_TIMEOUT_MS = 1_000;

/** PeerReplication is the leader's view of one other member. */
export interface PeerReplication {
  readonly id: number;
  readonly isLearner: boolean;
  /** The highest log index known to be in the member's log. */
  readonly match: Index;
  readonly next: Index;
  readonly state: ProgressState;
  readonly recentActive: boolean;
  /** The snapshot being streamed to the member, if one is. */
  readonly snapshot?: { readonly index: Index; readonly acknowledgedBytes: number; readonly byteLength: number } | undefined;
  /** What the probe measured: the round trip of one peer call, and the member's applied index (absent: no answer in time). */
  readonly rttMs?: number | undefined;
  readonly appliedIndex?: Index | undefined;
}

/** ReplicationStatus is the leader's view of the cluster at one moment. */
export interface ReplicationStatus {
  readonly leaderId: number;
  readonly term: Term;
  readonly commitIndex: Index;
  readonly lastIndex: Index;
  readonly appliedIndex: Index;
  readonly config: ConfState;
  readonly members: readonly MemberRecord[];
  readonly peers: readonly PeerReplication[];
}

/** ReplicationStatusContext is what the part needs of the driver. */
export interface ReplicationStatusContext {
  readonly selfId: NodeId;
  readonly clock: Clock;
  readonly transport: Transport;
  readonly raftStatus: () => RaftStatus;
  readonly appliedIndex: () => Index;
  readonly members: () => MemberRecord[];
  readonly snapshotSends: () => readonly SnapshotSendStatus[];
}

const packr = new Packr({ useRecords: false, moreTypes: false });

/** encodeStatusProbeReply answers a 'status' peer call: this member's applied index. */
export function encodeStatusProbeReply(appliedIndex: Index): Uint8Array {
  return packr.pack({ appliedIndex });
}

function decodeStatusProbeReply(reply: Uint8Array): Index | undefined {
  const value = packr.unpack(reply) as { appliedIndex?: unknown } | null;
  return value !== null && typeof value.appliedIndex === 'number' && Number.isSafeInteger(value.appliedIndex) ? value.appliedIndex : undefined;
}

/** replicationStatus answers the leader's view (see the header of this file); NOT_LEADER elsewhere. */
export async function replicationStatus(context: ReplicationStatusContext, signal?: AbortSignal): Promise<ReplicationStatus> {
  const status = context.raftStatus();
  if (status.role !== 'leader') {
    throw new StrataError(ErrorCode.NOT_LEADER, 'etcdserver: not leader', { details: { leaderId: status.leaderId } });
  }
  const sends = new Map(context.snapshotSends().map((send) => [send.peer, send]));
  const others = [...status.progress.entries()].filter(([id]) => id !== context.selfId);
  const probes = await Promise.all(others.map(([id]) => probe(context, id, signal)));
  const peers = others.map(([id, progress], at): PeerReplication => {
    const send = sends.get(id);
    const measured = probes[at];
    return {
      id,
      isLearner: progress.isLearner,
      match: progress.match,
      next: progress.next,
      state: progress.state,
      recentActive: progress.recentActive,
      ...(send !== undefined ? { snapshot: { index: send.index, acknowledgedBytes: send.acknowledgedBytes, byteLength: send.byteLength } } : {}),
      ...(measured !== undefined ? { rttMs: measured.rttMs, appliedIndex: measured.appliedIndex } : {}),
    };
  });
  return {
    leaderId: context.selfId,
    term: status.term,
    commitIndex: status.commit,
    lastIndex: status.lastIndex,
    appliedIndex: context.appliedIndex(),
    config: status.config,
    members: context.members(),
    peers,
  };
}

async function probe(context: ReplicationStatusContext, id: NodeId, signal: AbortSignal | undefined): Promise<{ rttMs: number; appliedIndex: Index } | undefined> {
  const startedMs = context.clock.now();
  try {
    const reply = await context.transport.request(id, 'status', new Uint8Array(0), { timeoutMs: PROBE_TIMEOUT_MS, ...(signal !== undefined ? { signal } : {}) });
    const appliedIndex = decodeStatusProbeReply(reply);
    if (appliedIndex === undefined) return undefined;
    return { rttMs: context.clock.now() - startedMs, appliedIndex };
  } catch {
    // Unreachable or slow: reported without a measurement (the header says why).
    return undefined;
  }
}

// The contract between the etcd-compatible gRPC services (src/server) and what serves them:
// a RaftNode (src/node), through RaftNodeBackend, in production and in the service tests
// (which run one in-memory RaftNode).

import type { SpanContext } from '@opentelemetry/api';
import type { AlarmRecord, AlarmType, MemberRecord } from '../node/index.ts';
import type { KvRequest, KvResponse } from '../storage/index.ts';

/**
 * Member is one cluster member as etcd's MemberList shows it: the driver's member record
 * (id, name — empty until the member published it —, peer URLs, client URLs, learner flag).
 */
export type Member = MemberRecord;

/** ResponseHeaderInfo is what every etcd response header carries. */
export interface ResponseHeaderInfo {
  readonly clusterId: number;
  readonly memberId: number;
  /** The store's revision when the answer was made. */
  readonly revision: number;
  readonly raftTerm: number;
}

/** MemberStatus answers Maintenance.Status. */
export interface MemberStatus {
  readonly version: string;
  /** Bytes the state machine's database takes on disk (or in memory). */
  readonly dbSizeBytes: number;
  /** The leader's member id, 0 when there is none. */
  readonly leaderId: number;
  /** The last index of this member's Raft log. */
  readonly raftIndex: number;
  readonly raftTerm: number;
  readonly raftAppliedIndex: number;
  readonly isLearner: boolean;
  /** Alarms or problems, as text (etcd's `errors`). */
  readonly errors: readonly string[];
}

/** Alarm is one raised alarm as etcd's AlarmMember shows it (member id 0: the whole cluster). */
export type Alarm = AlarmRecord;

/**
 * AlarmCall is etcd's AlarmRequest: `get` lists the alarms raised (of one type, or all when
 * `alarm` is undefined, etcd's NONE); `activate` and `deactivate` change one through the log
 * (with `alarm` undefined they change nothing and answer nothing, as etcd's).
 */
export interface AlarmCall {
  readonly action: 'get' | 'activate' | 'deactivate';
  readonly memberId: number;
  readonly alarm: AlarmType | undefined;
}

/** MembersAnswer is the member list after a cluster change. */
export interface MembersAnswer {
  readonly members: readonly Member[];
}

/** BackendSnapshotInfo describes the snapshot a BackendSnapshot reads. */
export interface BackendSnapshotInfo {
  /** The store's name for it (for logs). */
  readonly id: string;
  readonly index: number;
  readonly term: number;
  readonly revision: number;
  /** The file's length: every byte Maintenance.Snapshot sends before its SHA-256. */
  readonly byteLength: number;
}

/**
 * BackendSnapshot is a snapshot pinned for reading by Maintenance.Snapshot: the backend keeps
 * it (against retention) until close(). It is RaftNode's SnapshotStream, described here in
 * the server's own terms.
 */
export interface BackendSnapshot {
  readonly info: BackendSnapshotInfo;
  /** The server's version, as Status reports it (SnapshotResponse.version). */
  readonly version: string;
  /**
   * read answers the file's bytes from `offset`, a block boundary (0, or where the previous
   * read ended): whole blocks, each checked, at least one even when it is longer than
   * `maxBytes`; an empty array at the end. A block that fails its check rejects with CORRUPTION.
   */
  read(offset: number, maxBytes: number): Promise<Uint8Array>;
  /** close releases the snapshot; calling it twice is harmless. */
  close(): Promise<void>;
}

/** CallOptions bound one backend call. */
export interface CallOptions {
  /** Aborted when the client cancels or its deadline passes. */
  readonly signal?: AbortSignal;
  /** How long the backend may wait (default: its request timeout); the Admin calls that carry a timeout_ms pass it. */
  readonly timeoutMs?: number;
  /** The caller may read a read-only mirror linearizably (src/node's NodeCallOptions). */
  readonly mirrorReader?: boolean;
  /** The call's span context when it is traced and sampled: the backend's work joins its trace (src/node's NodeCallOptions). */
  readonly traceParent?: SpanContext | undefined;
}

/** MirrorStatus is a mirror's state as read linearizably (Admin.MirrorRead). */
export interface MirrorStatus {
  /** The copier's mirror state; undefined: the cluster is not a mirror (it takes writes). */
  readonly state: Uint8Array | undefined;
  /** The store's revision, read in the same step as the state. */
  readonly revision: number;
  /** The member's applied index the state and revision were read at (same step). */
  readonly index: number;
}

/**
 * EtcdBackend is what the etcd services call. Every method either answers or throws a
 * StrataError with a catalogue code (src/util/errors.ts); src/server maps codes to etcd's
 * gRPC status codes and messages.
 *
 * Reads (`range`) are linearizable unless `serializable` is set; writes go through Raft
 * (a follower forwards them to the leader). Cluster calls are linearizable.
 */
export interface EtcdBackend {
  /** header describes this member now. */
  header(): ResponseHeaderInfo;
  /** hasLeader tells whether this member knows a leader now (etcd's check for `hasleader` metadata). */
  hasLeader(): boolean;
  /**
   * kv runs a Put, Range, DeleteRange or Txn and answers with etcd's semantics; it also runs
   * the copier's mirror commands (Admin.MirrorWrite). On a mirror, client writes are refused
   * with MIRROR_READ_ONLY.
   */
  kv(request: KvRequest, options?: CallOptions): Promise<KvResponse>;
  /**
   * mirrorStatus reads the mirror state and the revision it goes with, linearizably (the read
   * index a linearizable Range waits for).
   */
  mirrorStatus(options?: CallOptions): Promise<MirrorStatus>;
  status(options?: CallOptions): Promise<MemberStatus>;
  /**
   * moveLeader hands leadership to `targetId` (a voter). Only the leader accepts it
   * (NOT_LEADER otherwise, as etcd's "etcdserver: not leader").
   */
  moveLeader(targetId: number, options?: CallOptions): Promise<void>;
  memberList(options?: CallOptions): Promise<MembersAnswer>;
  /** memberAdd adds a member with these peer URLs; answers the new member and the list. */
  memberAdd(request: { readonly peerUrls: readonly string[]; readonly isLearner: boolean }, options?: CallOptions): Promise<MembersAnswer & { readonly member: Member }>;
  memberRemove(id: number, options?: CallOptions): Promise<MembersAnswer>;
  /** memberPromote makes a learner a voter; refused unless the learner has caught up. */
  memberPromote(id: number, options?: CallOptions): Promise<MembersAnswer>;
  /**
   * snapshot takes a snapshot of the state applied now (or answers the newest when nothing
   * was applied since) and pins it until the answer's close(). Rejects with CANCELED when
   * `signal` aborts first; a snapshot that arrives after that is closed, never leaked.
   */
  snapshot(options?: CallOptions): Promise<BackendSnapshot>;
  /**
   * alarm runs etcd's Alarm (see AlarmCall) and answers as etcd does: the alarms listed, the
   * alarm activated, or the alarm deactivated (none when it was not raised). It works under
   * any alarm.
   */
  alarm(call: AlarmCall, options?: CallOptions): Promise<readonly Alarm[]>;
  /**
   * defragment is etcd's Defragment for this member: its storage gives back the space of
   * deleted and overwritten keys (LevelDB compacts), and the quota measures it again.
   */
  defragment(options?: CallOptions): Promise<void>;
  /**
   * hashKv is etcd's HashKV for this member: a 32-bit hash of its whole key-value state at
   * `revision` (0: now), equal on members at the same revision. Only the current revision is
   * kept (no history): an older one is COMPACTED, a later one FUTURE_REVISION.
   */
  hashKv(revision: number, options?: CallOptions): Promise<HashKvAnswer>;
}

/** HashKvAnswer is what HashKV answers: the hash, the revision it is at, and the oldest revision kept. */
export interface HashKvAnswer {
  readonly hash: number;
  readonly revision: number;
  readonly compactRevision: number;
}

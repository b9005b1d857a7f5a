// LocalBackend is the single-replica, in-memory twin of the EtcdBackend a RaftNode provides:
// the same KV state machine and the same request checks, without Raft. Each write becomes the
// next log entry at once (term 1) and is applied; reads come from the applied state. The
// member list lives in memory and makes etcd's membership checks. The service tests and the
// client tests run against it; nothing in production does.

import { createHash } from 'node:crypto';

import type { Entry } from '../raft/index.ts';
import { EntryType } from '../raft/index.ts';
import type { KvLimits, KvRequest, KvResponse, KvStateMachine } from '../storage/index.ts';
import { DEFAULT_KV_LIMITS, encodeValidKvCommand, openMemoryKvStateMachine } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { CallOptions, EtcdBackend, Member, MembersAnswer, MemberStatus, ResponseHeaderInfo } from './backend.ts';

/** LOCAL_PENDING_WRITES_MAX bounds the writes waiting to be applied; more are PROPOSAL_DROPPED. */
export const LOCAL_PENDING_WRITES_MAX = 8192;
/** LOCAL_APPLY_BATCH_MAX bounds the entries applied together (group apply, as the driver does). */
export const LOCAL_APPLY_BATCH_MAX = 1024;
/** LOCAL_MEMBERS_MAX bounds the member list. */
export const LOCAL_MEMBERS_MAX = 64;
/** LOCAL_LEARNERS_MAX is etcd's maxLearners. */
export const LOCAL_LEARNERS_MAX = 1;

const TERM = 1;

/** LocalBackendOptions configures a LocalBackend; every field has a test-friendly default. */
export interface LocalBackendOptions {
  readonly clusterId?: number;
  readonly memberId?: number;
  readonly name?: string;
  readonly peerUrls?: readonly string[];
  readonly clientUrls?: readonly string[];
  readonly limits?: KvLimits;
  /** What Status reports as the server version. */
  readonly version?: string;
}

interface PendingWrite {
  readonly entry: Entry;
  readonly resolve: (response: KvResponse) => void;
  readonly reject: (error: unknown) => void;
}

/** LocalBackend is the single-replica in-memory EtcdBackend (see the file comment). */
export class LocalBackend implements EtcdBackend {
  private readonly stateMachine: KvStateMachine;
  private readonly limits: KvLimits;
  private readonly clusterId: number;
  private readonly memberId: number;
  private readonly version: string;
  private members: Member[];
  // Invariant: lastIndex >= stateMachine.appliedIndex(); entries in `pending` are the indexes after it.
  private lastIndex = 0;
  private pending: PendingWrite[] = [];
  private applying = false;
  private closed = false;
  private membersAdded = 0;

  private constructor(stateMachine: KvStateMachine, options: LocalBackendOptions) {
    this.stateMachine = stateMachine;
    this.limits = options.limits ?? DEFAULT_KV_LIMITS;
    this.clusterId = options.clusterId ?? 0x1c4d6b2a9e3f81;
    this.memberId = options.memberId ?? 0x1e9e05c5216469;
    this.version = options.version ?? '3.5.0';
    this.members = [
      {
        id: this.memberId,
        name: options.name ?? 'default',
        peerUrls: options.peerUrls ?? ['http://localhost:2380'],
        clientUrls: options.clientUrls ?? [],
        isLearner: false,
      },
    ];
    assert(Number.isSafeInteger(this.memberId) && this.memberId > 0, 'memberId must be a positive safe integer');
  }

  /** open creates an empty LocalBackend. */
  static async open(options: LocalBackendOptions = {}): Promise<LocalBackend> {
    const stateMachine = await openMemoryKvStateMachine({ limits: options.limits ?? DEFAULT_KV_LIMITS });
    return new LocalBackend(stateMachine, options);
  }

  /** publishClientUrls records this member's client URLs (known once the server listens). */
  publishClientUrls(urls: readonly string[]): void {
    this.members = this.members.map((member) => (member.id === this.memberId ? { ...member, clientUrls: [...urls] } : member));
  }

  /** close refuses later calls with STOPPED and closes the state machine once writes are applied. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.applying || this.pending.length > 0) await this.drain();
    await this.stateMachine.close();
  }

  /** hasLeader: the single replica always leads itself. */
  hasLeader(): boolean {
    return true;
  }

  header(): ResponseHeaderInfo {
    return { clusterId: this.clusterId, memberId: this.memberId, revision: this.stateMachine.revision(), raftTerm: TERM };
  }

  kv(request: KvRequest, options?: CallOptions): Promise<KvResponse> {
    try {
      this.checkCall(options);
      if (request.type === 'range') return this.stateMachine.range(request);
      if (this.pending.length >= LOCAL_PENDING_WRITES_MAX) {
        throw new StrataError(ErrorCode.PROPOSAL_DROPPED, `more than ${LOCAL_PENDING_WRITES_MAX} writes waiting`);
      }
      const data = encodeValidKvCommand({ id: this.lastIndex + 1, request }, this.limits);
      this.lastIndex += 1;
      const entry: Entry = { term: TERM, index: this.lastIndex, type: EntryType.Normal, data };
      return new Promise<KvResponse>((resolve, reject) => {
        this.pending.push({ entry, resolve, reject });
        if (!this.applying) void this.drain();
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  status(options?: CallOptions): Promise<MemberStatus> {
    this.checkCall(options);
    return Promise.resolve({
      version: this.version,
      // The in-memory database has no file; etcd's dbSize has nothing to measure here.
      dbSizeBytes: 0,
      leaderId: this.memberId,
      raftIndex: this.lastIndex,
      raftTerm: TERM,
      raftAppliedIndex: this.stateMachine.appliedIndex(),
      isLearner: false,
      errors: [],
    });
  }

  moveLeader(targetId: number, options?: CallOptions): Promise<void> {
    this.checkCall(options);
    if (targetId === this.memberId) return Promise.resolve();
    // The other members of a LocalBackend never start, so none can take over.
    return Promise.reject(new StrataError(ErrorCode.BAD_LEADER_TRANSFEREE, 'etcdserver: bad leader transferee', { details: { targetId } }));
  }

  memberList(options?: CallOptions): Promise<MembersAnswer> {
    this.checkCall(options);
    return Promise.resolve({ members: this.members });
  }

  memberAdd(request: { readonly peerUrls: readonly string[]; readonly isLearner: boolean }, options?: CallOptions): Promise<MembersAnswer & { readonly member: Member }> {
    try {
      this.checkCall(options);
      for (const member of this.members) {
        if (member.peerUrls.some((url) => request.peerUrls.includes(url))) {
          throw new StrataError(ErrorCode.PEER_URL_EXISTS, 'etcdserver: Peer URLs already exists', { details: { memberId: member.id } });
        }
      }
      if (this.members.length >= LOCAL_MEMBERS_MAX) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a cluster has at most ${LOCAL_MEMBERS_MAX} members`);
      if (request.isLearner) {
        if (this.members.filter((member) => member.isLearner).length >= LOCAL_LEARNERS_MAX) {
          throw new StrataError(ErrorCode.TOO_MANY_LEARNERS, 'etcdserver: too many learner members in cluster');
        }
      } else if (!this.readyToAddVoter()) {
        throw notEnoughStarted();
      }
      const member: Member = { id: this.newMemberId(request.peerUrls), name: '', peerUrls: [...request.peerUrls], clientUrls: [], isLearner: request.isLearner };
      this.members = [...this.members, member];
      return Promise.resolve({ member, members: this.members });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  memberRemove(id: number, options?: CallOptions): Promise<MembersAnswer> {
    try {
      this.checkCall(options);
      const member = this.findMember(id);
      if (!member.isLearner && !this.readyToRemoveVoter(id)) throw notEnoughStarted();
      this.members = this.members.filter((each) => each.id !== id);
      return Promise.resolve({ members: this.members });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  memberPromote(id: number, options?: CallOptions): Promise<MembersAnswer> {
    try {
      this.checkCall(options);
      const member = this.findMember(id);
      if (!member.isLearner) throw new StrataError(ErrorCode.MEMBER_NOT_LEARNER, 'etcdserver: can only promote a learner member');
      if (!this.readyToAddVoter()) throw notEnoughStarted();
      this.members = this.members.map((each) => (each.id === id ? { ...each, isLearner: false } : each));
      return Promise.resolve({ members: this.members });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private checkCall(options: CallOptions | undefined): void {
    if (this.closed) throw new StrataError(ErrorCode.STOPPED, 'etcdserver: server stopped');
    if (options?.signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'etcdserver: request canceled');
  }

  // drain applies the pending writes in batches, in order, one apply() at a time.
  private async drain(): Promise<void> {
    if (this.applying) return;
    this.applying = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.length <= LOCAL_APPLY_BATCH_MAX ? this.pending : this.pending.slice(0, LOCAL_APPLY_BATCH_MAX);
        this.pending = batch === this.pending ? [] : this.pending.slice(LOCAL_APPLY_BATCH_MAX);
        let results;
        try {
          results = await this.stateMachine.apply(batch.map((write) => write.entry));
        } catch (error) {
          for (const write of batch) write.reject(error);
          continue;
        }
        assert(results.length === batch.length, 'every local write carries a command');
        for (let i = 0; i < batch.length; i++) {
          const result = results[i];
          const write = batch[i];
          assert(result !== undefined && write !== undefined && result.index === write.entry.index, 'apply results follow the entries');
          if (result.error !== undefined) write.reject(result.error);
          else if (result.response !== undefined) write.resolve(result.response);
          else assert(false, 'an applied command has a response or an error');
        }
      }
    } finally {
      this.applying = false;
    }
  }

  private findMember(id: number): Member {
    const member = this.members.find((each) => each.id === id);
    if (member === undefined) throw new StrataError(ErrorCode.MEMBER_NOT_FOUND, 'etcdserver: member not found', { details: { id } });
    return member;
  }

  // A member has started once it has published its name (etcd's Member.IsStarted).
  private startedVoters(except?: number): { voters: number; started: number } {
    let voters = 0;
    let started = 0;
    for (const member of this.members) {
      if (member.isLearner || member.id === except) continue;
      voters += 1;
      if (member.name !== '') started += 1;
    }
    return { voters, started };
  }

  // etcd's IsReadyToAddVotingMember: after the change, the started voters still make a
  // quorum, except that a one-member cluster may always grow to two.
  private readyToAddVoter(): boolean {
    const { voters, started } = this.startedVoters();
    if (started === 1 && voters + 1 === 2) return true;
    return started >= Math.floor((voters + 1) / 2) + 1;
  }

  // etcd's IsReadyToRemoveVotingMember.
  private readyToRemoveVoter(id: number): boolean {
    const { voters, started } = this.startedVoters(id);
    return started >= Math.floor(voters / 2) + 1;
  }

  // newMemberId derives an id from the peer URLs and a counter, as etcd derives one from the
  // peer URLs, cluster name and time: deterministic here, so tests repeat.
  private newMemberId(peerUrls: readonly string[]): number {
    for (let attempt = 0; attempt < LOCAL_MEMBERS_MAX; attempt++) {
      this.membersAdded += 1;
      const digest = createHash('sha256').update(`${peerUrls.join(',')}#${this.clusterId}#${this.membersAdded}`).digest();
      const id = digest.readUIntBE(0, 6) * 32 + (digest[6] ?? 0) % 32; // 53 bits: a safe integer
      if (id !== 0 && !this.members.some((member) => member.id === id)) return id;
    }
    return assert(false, 'no free member id') as never;
  }
}

function notEnoughStarted(): StrataError {
  return new StrataError(ErrorCode.NOT_ENOUGH_STARTED_MEMBERS, 'etcdserver: re-configuration failed due to not enough started members');
}

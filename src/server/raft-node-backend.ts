// RaftNodeBackend serves the etcd services from a RaftNode: the production EtcdBackend.

import type { NodeStatus, RaftNode } from '../node/index.ts';
import { describeAlarm } from '../node/index.ts';
import { NO_NODE } from '../raft/index.ts';
import type { KvRequest, KvResponse } from '../storage/index.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { ETCD_ERRORS } from '../util/etcd-errors.ts';
import type { Alarm, AlarmCall, BackendSnapshot, CallOptions, EtcdBackend, HashKvAnswer, Member, MemberStatus, MembersAnswer, MirrorStatus, ResponseHeaderInfo } from './backend.ts';

/** RaftNodeBackend adapts a RaftNode to the EtcdBackend contract. */
export class RaftNodeBackend implements EtcdBackend {
  private readonly node: RaftNode;
  private readonly version: string;

  constructor(node: RaftNode, version: string) {
    this.node = node;
    this.version = version;
  }

  header(): ResponseHeaderInfo {
    return { clusterId: this.node.clusterId, memberId: this.node.memberId, revision: this.node.revision(), raftTerm: this.node.currentTerm() };
  }

  hasLeader(): boolean {
    return this.node.leaderId() !== NO_NODE;
  }

  kv(request: KvRequest, options: CallOptions = {}): Promise<KvResponse> {
    return this.node.kv(request, options);
  }

  mirrorStatus(options: CallOptions = {}): Promise<MirrorStatus> {
    return this.node.mirrorStatus(options);
  }

  async status(): Promise<MemberStatus> {
    const status = this.node.status();
    return {
      version: this.version,
      dbSizeBytes: await this.node.dbSizeBytes(),
      leaderId: status.leaderId,
      raftIndex: status.lastIndex,
      raftTerm: status.term,
      raftAppliedIndex: status.appliedIndex,
      isLearner: status.isLearner,
      errors: statusErrors(status),
    };
  }

  moveLeader(targetId: number, options: CallOptions = {}): Promise<void> {
    return this.node.transferLeadership(targetId, options);
  }

  async memberList(): Promise<MembersAnswer> {
    return { members: this.node.members() };
  }

  async memberAdd(request: { readonly peerUrls: readonly string[]; readonly isLearner: boolean }, options: CallOptions = {}): Promise<MembersAnswer & { readonly member: Member }> {
    return this.node.addMember(request.peerUrls, request.isLearner, options);
  }

  async memberRemove(id: number, options: CallOptions = {}): Promise<MembersAnswer> {
    return { members: await this.node.removeMember(id, options) };
  }

  async memberPromote(id: number, options: CallOptions = {}): Promise<MembersAnswer> {
    return { members: await this.node.promoteMember(id, options) };
  }

  async alarm(call: AlarmCall, options: CallOptions = {}): Promise<readonly Alarm[]> {
    const { alarm } = call;
    if (call.action === 'get') {
      const raised = await this.node.alarmList(options);
      return alarm === undefined ? raised : raised.filter((record) => record.alarm === alarm);
    }
    // etcd proposes these too, and its apply then changes nothing.
    if (alarm === undefined) return [];
    return this.node.changeAlarm(call.action, call.memberId, alarm, options);
  }

  async defragment(): Promise<void> {
    await this.node.compactStorage();
  }

  async hashKv(revision: number): Promise<HashKvAnswer> {
    // The digest and its revision are read in one step: they describe the same applied state.
    const { revision: current, digest } = this.node.stateDigest();
    if (revision > current) throw new StrataError(ErrorCode.FUTURE_REVISION, 'mvcc: required revision is a future revision', { details: { revision, current } });
    if (revision > 0 && revision < current) throw new StrataError(ErrorCode.COMPACTED, 'mvcc: required revision has been compacted', { details: { revision, current } });
    // The first 32 bits of the full root: it covers every key, value, revision and version.
    const hash = new DataView(digest.full.buffer, digest.full.byteOffset, digest.full.byteLength).getUint32(0, true);
    return { hash, revision: current, compactRevision: current };
  }

  /**
   * snapshot pins a snapshot with RaftNode.takeSnapshot. Taking one cannot be interrupted
   * (it may be writing the file), so an abort answers CANCELED at once and the snapshot,
   * when it arrives, is closed here: its lease is released and nothing leaks.
   */
  snapshot(options: CallOptions = {}): Promise<BackendSnapshot> {
    const { signal } = options;
    if (signal?.aborted === true) return Promise.reject(canceled());
    const taking = this.node.takeSnapshot();
    const version = this.version;
    return new Promise<BackendSnapshot>((resolve, reject) => {
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        reject(canceled());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      taking.then(
        (stream) => {
          signal?.removeEventListener('abort', onAbort);
          if (settled) {
            void stream.close().catch(() => undefined);
            return;
          }
          settled = true;
          const { id, index, term, revision, byteLength } = stream.info;
          resolve({
            info: { id, index, term, revision, byteLength },
            version,
            read: (offset, maxBytes) => stream.read(offset, maxBytes),
            close: () => stream.close(),
          });
        },
        (error: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          if (settled) return;
          settled = true;
          reject(error);
        },
      );
    });
  }
}

function canceled(): StrataError {
  return new StrataError(ErrorCode.CANCELED, ETCD_ERRORS.CANCELED.message ?? 'request canceled');
}

// statusErrors lists what an operator should know about this member (etcd's Status.errors):
// the alarms raised (in etcd's words), its removal, and snapshots that keep failing (the
// breaker is open; the previous snapshot stays in use).
function statusErrors(status: NodeStatus): string[] {
  const errors: string[] = status.alarms.map(describeAlarm);
  if (status.removed) errors.push('this member was removed from the cluster');
  const { consecutiveFailures, backoffRemainingMs, lastError } = status.snapshots;
  if (backoffRemainingMs > 0) {
    errors.push(`snapshots failed ${consecutiveFailures} times in a row and are paused for ${Math.ceil(backoffRemainingMs / 1000)} s more: ${lastError ?? 'unknown error'}`);
  }
  return errors;
}

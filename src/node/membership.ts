// The member table: who is in the cluster, under which name and URLs. Raft's configuration
// says which ids vote; this table adds what people and peers need (names, peer URLs for the
// transport, client URLs for clients). It is rebuilt from the log on every start (the log is
// not compacted yet), from three sources applied in log order: the bootstrap ConfChanges
// (ids only; names and URLs come from --initial-cluster), ConfChanges with a MemberContext,
// and publish commands.

import type { ConfChange, ConfState, NodeId } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import type { MemberContext, PublishCommand } from './node-command.ts';

/** MemberRecord is one member as the table knows it. */
export interface MemberRecord {
  readonly id: number;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
}

/** InitialMember is one entry of --initial-cluster with its derived id. */
export interface InitialMember {
  readonly id: number;
  readonly name: string;
  readonly peerUrls: readonly string[];
}

/** MEMBERS_MAX bounds the table (etcd clusters have a handful of members; this is a sanity bound). */
export const MEMBERS_MAX = 128;

/** Membership is the member table; it changes only as committed entries are applied. */
export class Membership {
  private readonly members = new Map<number, MemberRecord>();
  private readonly removed = new Set<number>();
  private readonly initial: ReadonlyMap<number, InitialMember>;

  constructor(initialMembers: readonly InitialMember[]) {
    this.initial = new Map(initialMembers.map((member) => [member.id, member]));
  }

  /** get returns a member, or undefined. */
  get(id: number): MemberRecord | undefined {
    return this.members.get(id);
  }

  /** list returns the members ordered by id. */
  list(): MemberRecord[] {
    return [...this.members.values()].sort((a, b) => a.id - b.id);
  }

  /** isRemoved tells whether `id` was a member and was removed (it may never return). */
  isRemoved(id: number): boolean {
    return this.removed.has(id);
  }

  /** findByPeerUrl returns the member that advertises `url`, if any. */
  findByPeerUrl(url: string): MemberRecord | undefined {
    for (const member of this.members.values()) if (member.peerUrls.includes(url)) return member;
    return undefined;
  }

  /**
   * applyConfChange records a committed membership change (after Raft applied it and returned
   * `confState`). Returns the ids added and removed, for the transport.
   */
  applyConfChange(change: ConfChange, context: MemberContext | undefined, confState: ConfState): { added: number[]; removed: number[] } {
    const added: number[] = [];
    const removed: number[] = [];
    for (const single of change.changes) {
      const id = single.nodeId;
      const existing = this.members.get(id);
      if (single.type === 'removeNode') {
        if (existing !== undefined) removed.push(id);
        this.members.delete(id);
        this.removed.add(id);
        continue;
      }
      const initial = this.initial.get(id);
      const peerUrls = context?.peerUrls ?? existing?.peerUrls ?? initial?.peerUrls ?? [];
      const name = existing?.name ?? (context?.name !== undefined && context.name !== '' ? context.name : initial?.name ?? '');
      if (existing === undefined) added.push(id);
      assert(this.members.size < MEMBERS_MAX || existing !== undefined, `more than ${MEMBERS_MAX} members`);
      this.members.set(id, {
        id,
        name,
        peerUrls,
        clientUrls: existing?.clientUrls ?? [],
        isLearner: single.type === 'addLearner',
      });
    }
    this.reconcile(confState);
    return { added, removed };
  }

  /** applyPublish records a member's name and client URLs. Unknown members are ignored (removed since). */
  applyPublish(command: PublishCommand): void {
    const existing = this.members.get(command.memberId);
    if (existing === undefined) return;
    this.members.set(command.memberId, { ...existing, name: command.name, clientUrls: command.clientUrls });
  }

  // reconcile makes the learner flags agree with Raft's configuration, which is the authority
  // (a joint change can move a member between roles in ways a single change does not show).
  private reconcile(confState: ConfState): void {
    const learners = new Set<NodeId>([...confState.learners, ...confState.learnersNext]);
    for (const [id, member] of this.members) {
      const isLearner = learners.has(id);
      if (member.isLearner !== isLearner) this.members.set(id, { ...member, isLearner });
    }
  }
}

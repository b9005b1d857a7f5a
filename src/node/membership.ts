// The member table: who is in the cluster, under which name and URLs. Raft's configuration
// says which ids vote; this table adds what people and peers need (names, peer URLs for the
// transport, client URLs for clients, zone labels for placement). It is rebuilt on every
// start from the latest snapshot (which carries the whole table, since the log before it is
// compacted: exportState and restoreState) and then from the log after it, from three sources
// applied in log order: the bootstrap ConfChanges (ids only; names and URLs come from
// --initial-cluster), ConfChanges with a MemberContext, and publish commands.

import type { ConfChange, ConfState, NodeId } from '../raft/index.ts';
import { assert } from '../util/assert.ts';
import type { AlarmRecord } from './alarms.ts';
import type { JournalState } from './migration-journal.ts';
import type { MemberContext, PublishCommand } from './node-command.ts';

/** MemberRecord is one member as the table knows it. */
export interface MemberRecord {
  readonly id: number;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
  /**
   * The member's zone label (its availability zone, `--zone`), as it last published it; ''
   * when it has none, has not published yet, or published before zones existed.
   */
  readonly zone: string;
}

/** ZONE_NAME_BYTES_MAX bounds a zone label (a DNS label's length). */
export const ZONE_NAME_BYTES_MAX = 63;

/** isZoneName tells whether `text` is a valid zone label: 1 to ZONE_NAME_BYTES_MAX of [A-Za-z0-9._-]. */
export function isZoneName(text: string): boolean {
  return text.length >= 1 && text.length <= ZONE_NAME_BYTES_MAX && /^[A-Za-z0-9._-]+$/.test(text);
}

/** InitialMember is one entry of --initial-cluster with its derived id. */
export interface InitialMember {
  readonly id: number;
  readonly name: string;
  readonly peerUrls: readonly string[];
}

/**
 * MembershipState is the whole table at one applied index, as a snapshot carries it: the
 * log before the snapshot is gone, so the table cannot be rebuilt from it.
 */
export interface MembershipState {
  readonly members: readonly MemberRecord[];
  readonly removed: readonly number[];
  readonly published: readonly number[];
  /**
   * The alarms raised at that index (alarms.ts), which the driver keeps beside the table and
   * a snapshot carries with it. Absent means none: snapshots written before alarms existed,
   * and a restore for a new cluster, which drops them.
   */
  readonly alarms?: readonly AlarmRecord[];
  /** The migration journal (migration-journal.ts), kept beside the table like the alarms. Absent: never written. */
  readonly journal?: JournalState;
}

/** REMOVED_IDS_KEPT_MAX bounds the removed ids a snapshot carries (the newest are kept). */
export const REMOVED_IDS_KEPT_MAX = 1_024;

/** MEMBERS_MAX bounds the table (etcd clusters have a handful of members; this is a sanity bound). */
export const MEMBERS_MAX = 128;

/** Membership is the member table; it changes only as committed entries are applied. */
export class Membership {
  private readonly members = new Map<number, MemberRecord>();
  private readonly removed = new Set<number>();
  // Members whose publish command was applied (their name and client URLs are their own).
  private readonly published = new Set<number>();
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

  /** isPublished tells whether member `id` has published its attributes (etcd: a started member). */
  isPublished(id: number): boolean {
    return this.published.has(id);
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
   * applyConfChange records a committed membership change after Raft applied it and returned
   * `confState`, which is the authority: the table holds exactly the ids in it. A voter that
   * a joint change removes stays in the table (and the transport keeps reaching it) until the
   * joint configuration is left, since its vote still counts in the outgoing half; a change
   * the core ignored as invalid changes nothing here either. `context` names the one member
   * the change brings in. Returns the ids added and removed, for the transport.
   */
  applyConfChange(change: ConfChange, context: MemberContext | undefined, confState: ConfState): { added: number[]; removed: number[] } {
    const inConfig = new Set<NodeId>([...confState.voters, ...confState.votersOutgoing, ...confState.learners, ...confState.learnersNext]);
    const learners = new Set<NodeId>([...confState.learners, ...confState.learnersNext]);
    const added: number[] = [];
    const removed: number[] = [];
    for (const id of [...this.members.keys()]) {
      if (inConfig.has(id)) continue;
      this.members.delete(id);
      this.published.delete(id);
      this.removed.add(id);
      removed.push(id);
    }
    // The member the change names (the one added or promoted), for its URLs and name.
    const named = change.changes.find((single) => single.type !== 'removeNode')?.nodeId;
    for (const id of [...inConfig].sort((a, b) => a - b)) {
      const existing = this.members.get(id);
      const fromContext = id === named ? context : undefined;
      const isLearner = learners.has(id);
      if (existing !== undefined) {
        const name = existing.name !== '' ? existing.name : fromContext?.name ?? '';
        if (existing.isLearner !== isLearner || existing.name !== name) this.members.set(id, { ...existing, name, isLearner });
        continue;
      }
      const initial = this.initial.get(id);
      assert(this.members.size < MEMBERS_MAX, `more than ${MEMBERS_MAX} members`);
      this.members.set(id, {
        id,
        name: fromContext?.name !== undefined && fromContext.name !== '' ? fromContext.name : initial?.name ?? '',
        peerUrls: fromContext?.peerUrls ?? initial?.peerUrls ?? [],
        clientUrls: [],
        isLearner,
        zone: '',
      });
      added.push(id);
    }
    return { added, removed };
  }

  /** removedIds lists the ids removed from the cluster, oldest first (at most REMOVED_IDS_KEPT_MAX after a snapshot). */
  removedIds(): number[] {
    return [...this.removed].slice(-REMOVED_IDS_KEPT_MAX);
  }

  /** exportState returns the table as it is now (for a snapshot). */
  exportState(): MembershipState {
    return {
      members: this.list(),
      removed: [...this.removed].slice(-REMOVED_IDS_KEPT_MAX),
      published: [...this.published].sort((a, b) => a - b),
    };
  }

  /** restoreState replaces the table with a snapshot's. */
  restoreState(state: MembershipState): void {
    assert(state.members.length <= MEMBERS_MAX, `a snapshot with ${state.members.length} members`);
    this.members.clear();
    this.removed.clear();
    this.published.clear();
    for (const member of state.members) this.members.set(member.id, member);
    for (const id of state.removed) this.removed.add(id);
    for (const id of state.published) if (this.members.has(id)) this.published.add(id);
  }

  /**
   * applyPublish records a member's name, client URLs and zone. Unknown members are ignored
   * (removed since). A publish without a zone (none given, or written before zones existed)
   * clears it: each publish states all of a member's attributes.
   */
  applyPublish(command: PublishCommand): void {
    const existing = this.members.get(command.memberId);
    if (existing === undefined) return;
    this.members.set(command.memberId, { ...existing, name: command.name, clientUrls: command.clientUrls, zone: command.zone ?? '' });
    this.published.add(command.memberId);
  }
}

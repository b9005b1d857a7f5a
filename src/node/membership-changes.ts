// MembershipChanges: etcd's MemberAdd / MemberRemove / MemberPromote, from the request to the
// moment the configuration change is applied here. A follower passes the operation to the
// leader (peer call 'member'); the leader checks it against the member table, proposes the
// ConfChange, and waits for its entry to be applied.
//
// A change the leader proposed is in exactly one state until settled: waiting for its entry
// (index, term) to be applied, then — for a replacement through a joint configuration that
// leaves itself — waiting for the joint configuration to be left. It is settled exactly once:
// resolved when that happened, rejected with LEADER_CHANGED when another entry took its index,
// or by its deadline (TIMEOUT), its AbortSignal (CANCELED) or failAll() (STOPPED). Only one
// change may be pending in the core at a time (thesis §4.1): a proposal refused with
// CONF_CHANGE_PENDING, or made while a joint configuration is about to leave itself, is
// retried every heartbeat until its deadline.
//
// Joint replacement (thesis §4.3, our addition to etcd's API): promote caught-up learners and
// remove voters in one change, so that the cluster never runs on a configuration weaker than
// both the old and the new one. With leave 'auto' the leader leaves the joint configuration by
// itself; with 'explicit' it stays joint until a 'leave' operation (a migration transfers
// leadership in between).
//
// Invariant: `waiters` holds only unsettled changes, at most one per index; `leaving` only
// unsettled changes waiting for the joint configuration to be left; together at most
// CONF_CHANGES_WAITING_MAX of them.

import { Packr } from 'msgpackr';
import type { ConfChange, ConfState, Index, NodeId, Raft, Term } from '../raft/index.ts';
import type { Transport } from '../transport/index.ts';
import { assert, ErrorCode, isStrataError, sleep, StrataError } from '../util/index.ts';
import type { Clock } from '../util/index.ts';
import { memberIdFor } from './member-identity.ts';
import { MEMBERS_MAX } from './membership.ts';
import type { MemberRecord, Membership } from './membership.ts';
import { encodeMemberContext } from './node-command.ts';
import { REQUEST_TIMEOUT_MS } from './proposal-tracker.ts';
import { requestCanceled, requestTimedOut } from './request-errors.ts';

/** LEARNER_READY_FRACTION: a learner may be promoted once its log reaches this share of the leader's (etcd: 90 %). */
export const LEARNER_READY_FRACTION = 0.9;
/** LEARNERS_MAX is how many learners a cluster may have at once (etcd's default). */
export const LEARNERS_MAX = 1;
/** CONF_CHANGES_WAITING_MAX bounds membership changes waiting for their entry to be applied. */
export const CONF_CHANGES_WAITING_MAX = 64;
// Bounds the retries of a change refused because another is pending (each waits a heartbeat).
const PENDING_RETRIES_MAX = 10_000;
// Bounds how often a follower asks a new leader after the one it asked stopped leading.
const FORWARD_ATTEMPTS_MAX = 100;

/** MemberOperation is one membership request, as it travels to the leader. */
export type MemberOperation =
  | { readonly op: 'add'; readonly peerUrls: readonly string[]; readonly isLearner: boolean; readonly learnersMax?: number }
  | { readonly op: 'remove'; readonly id: number }
  | { readonly op: 'promote'; readonly id: number }
  | { readonly op: 'replace'; readonly promote: readonly number[]; readonly remove: readonly number[]; readonly demote?: readonly number[]; readonly leave: JointLeave }
  | { readonly op: 'leave' };

/** JointLeave says who leaves the joint configuration a replacement enters: the leader by itself ('auto') or a later 'leave' operation. */
export type JointLeave = 'auto' | 'explicit';

/** ChangeOptions bound one change: an AbortSignal and/or a timeout. */
export interface ChangeOptions {
  readonly signal?: AbortSignal | undefined;
  readonly timeoutMs?: number | undefined;
}

/** MembershipChangesContext is what the part needs of the driver. */
export interface MembershipChangesContext {
  readonly selfId: NodeId;
  readonly clusterToken: string;
  readonly clock: Clock;
  readonly raft: Raft;
  readonly membership: Membership;
  readonly transport: Transport;
  readonly heartbeatIntervalMs: number;
  /** Resolves with the leader once one is known, within the deadline. */
  readonly waitForLeader: (options: ChangeOptions) => Promise<NodeId>;
  readonly scheduleLoop: () => void;
}

interface Waiter {
  /** The entry waited for; -1 once the waiter waits for the joint configuration to be left. */
  readonly index: Index;
  readonly term: Term;
  readonly deadlineMs: number;
  settled: boolean;
  detach: (() => void) | undefined;
  readonly resolve: () => void;
  readonly reject: (error: StrataError) => void;
}

/** MembershipChanges runs membership operations to their applied change; see the header of this file. */
export class MembershipChanges {
  private readonly context: MembershipChangesContext;
  private readonly waiters = new Map<Index, Waiter>();
  private readonly leaving = new Set<Waiter>();
  private closedWith: StrataError | undefined;

  constructor(context: MembershipChangesContext) {
    this.context = context;
  }

  /** waiting counts the changes waiting for their entry to be applied. */
  get waiting(): number {
    return this.waiters.size + this.leaving.size;
  }

  /** operate runs a membership operation (here when leading, else on the leader) and answers the member list after it. */
  async operate(operation: MemberOperation, options: ChangeOptions): Promise<MemberRecord[]> {
    const { clock, raft, transport } = this.context;
    const deadlineMs = clock.now() + (options.timeoutMs ?? REQUEST_TIMEOUT_MS);
    const remaining = (): number => Math.max(1, deadlineMs - clock.now());
    for (let hop = 0; hop < FORWARD_ATTEMPTS_MAX; hop += 1) {
      const leaderId = await this.context.waitForLeader({ ...options, timeoutMs: remaining() });
      if (leaderId === this.context.selfId) break;
      try {
        const reply = await transport.request(leaderId, 'member', encodeMemberOperation(operation), {
          timeoutMs: remaining(),
          ...(options.signal !== undefined ? { signal: options.signal } : {}),
        });
        return decodeMembersReply(reply);
      } catch (error) {
        // The member we took for the leader proposed nothing: it no longer leads, or it was
        // just removed and is handing over. Ask the next leader, within the deadline. (Any
        // other failure may come after the change was proposed, so it is the caller's.)
        if (!isStrataError(error, ErrorCode.NOT_LEADER) && !isStrataError(error, ErrorCode.MEMBER_REMOVED)) throw error;
        if (clock.now() + this.context.heartbeatIntervalMs > deadlineMs) throw requestTimedOut({ cause: error });
        await sleep(clock, this.context.heartbeatIntervalMs);
      }
    }
    if (raft.currentLeader() !== this.context.selfId) throw requestTimedOut({ detail: 'no leader accepted the change' });
    for (let attempt = 0; attempt < PENDING_RETRIES_MAX; attempt += 1) {
      this.checkOpen(options.signal);
      const config = raft.status().config;
      const joint = config.votersOutgoing.length > 0;
      // Leaving is idempotent: a retried leave after a lost answer finds the work done.
      if (operation.op === 'leave' && !joint) return this.context.membership.list();
      if (joint && operation.op !== 'leave' && !config.autoLeave) {
        throw new StrataError(ErrorCode.CONF_CHANGE_REFUSED, 'the cluster is in a joint configuration that must be left explicitly; leave it first', {
          details: { voters: config.voters, votersOutgoing: config.votersOutgoing },
        });
      }
      let proposed: { index: Index; term: Term } | undefined;
      let refusal: StrataError | undefined;
      if (joint && operation.op !== 'leave') {
        refusal = new StrataError(ErrorCode.CONF_CHANGE_PENDING, 'the joint configuration is being left');
      } else {
        // Checked against the member table as it is now: a change that was pending a moment
        // ago (a second learner, the same peer URLs) may have been applied since.
        const change = this.confChangeFor(operation);
        try {
          proposed = raft.proposeConfChange(change);
        } catch (error) {
          if (!isStrataError(error, ErrorCode.CONF_CHANGE_PENDING)) throw error;
          refusal = error;
        }
      }
      if (proposed === undefined) {
        // Only one change at a time: wait for the pending one, within the deadline.
        if (clock.now() + this.context.heartbeatIntervalMs > deadlineMs) {
          throw requestTimedOut({ cause: refusal });
        }
        await sleep(clock, this.context.heartbeatIntervalMs);
        continue;
      }
      this.context.scheduleLoop();
      await this.waitApplied(proposed.index, proposed.term, deadlineMs, options.signal);
      if (operation.op === 'replace' && operation.leave === 'auto') await this.waitLeft(deadlineMs, options.signal);
      return this.context.membership.list();
    }
    throw requestTimedOut();
  }

  /** onApplied settles the change waiting for the ConfChange entry applied at (index, term), and those waiting for a joint configuration to be left. */
  onApplied(index: Index, term: Term, confState: ConfState): void {
    if (confState.votersOutgoing.length === 0) for (const waiter of [...this.leaving]) this.settle(waiter, undefined);
    const waiter = this.waiters.get(index);
    if (waiter === undefined) return;
    if (waiter.term === term) this.settle(waiter, undefined);
    else this.settle(waiter, new StrataError(ErrorCode.LEADER_CHANGED, 'etcdserver: leader changed'));
  }

  /** sweepDeadlines settles every change past its deadline with TIMEOUT (the change may still be applied later). */
  sweepDeadlines(): void {
    const nowMs = this.context.clock.now();
    for (const waiter of [...this.waiters.values(), ...this.leaving]) {
      if (nowMs > waiter.deadlineMs) this.settle(waiter, requestTimedOut());
    }
  }

  /** failAll rejects every waiting change with `error`; later operations are refused with it. */
  failAll(error: StrataError): void {
    this.closedWith ??= error;
    for (const waiter of [...this.waiters.values(), ...this.leaving]) this.settle(waiter, error);
    assert(this.waiters.size === 0 && this.leaving.size === 0, 'failAll settles every change');
  }

  private checkOpen(signal: AbortSignal | undefined): void {
    if (this.closedWith !== undefined) throw this.closedWith;
    if (signal?.aborted === true) throw requestCanceled();
  }

  private waitApplied(index: Index, term: Term, deadlineMs: number, signal: AbortSignal | undefined): Promise<void> {
    assert(!this.waiters.has(index), `a membership change already waits at index ${index}`);
    return this.wait(index, term, deadlineMs, signal);
  }

  // waitLeft waits until the joint configuration this leader entered has been left (by the
  // leader's own empty change, which the core proposes once the joint entry is applied).
  private waitLeft(deadlineMs: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.context.raft.status().config.votersOutgoing.length === 0) return Promise.resolve();
    return this.wait(-1, 0, deadlineMs, signal);
  }

  private wait(index: Index, term: Term, deadlineMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.waiting >= CONF_CHANGES_WAITING_MAX) {
        reject(new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests'));
        return;
      }
      if (this.closedWith !== undefined) {
        reject(this.closedWith);
        return;
      }
      const waiter: Waiter = { index, term, deadlineMs, settled: false, detach: undefined, resolve, reject };
      if (signal !== undefined) {
        const onAbort = (): void => this.settle(waiter, requestCanceled());
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.detach = () => signal.removeEventListener('abort', onAbort);
      }
      if (index === -1) this.leaving.add(waiter);
      else this.waiters.set(index, waiter);
      // A deadline of its own, so that a change nobody acknowledges still ends on time even
      // when no tick sweeps (a node whose clock is not ticking is stopping anyway).
      const timer = this.context.clock.setTimeout(() => this.sweepDeadlines(), Math.max(0, deadlineMs - this.context.clock.now()) + 1);
      const detachSignal = waiter.detach;
      waiter.detach = () => {
        this.context.clock.clearTimeout(timer);
        detachSignal?.();
      };
    });
  }

  private settle(waiter: Waiter, error: StrataError | undefined): void {
    if (waiter.settled) return;
    waiter.settled = true;
    if (waiter.index === -1) this.leaving.delete(waiter);
    else this.waiters.delete(waiter.index);
    waiter.detach?.();
    if (error === undefined) waiter.resolve();
    else waiter.reject(error);
  }

  // checkStartedQuorum is etcd's strict reconfiguration check (--strict-reconfig-check, on by
  // default): the voters after the change must have a quorum of started members — members that
  // have published their name, i.e. ran at least once — or the change could leave a cluster
  // that cannot commit anything, this change's own entry included. Adding a second voter to a
  // one-member cluster is allowed (restoring a cluster from one member's data), as in etcd.
  private checkStartedQuorum(change: 'add' | 'remove' | 'promote', delta: { added?: number; addedStarted?: number; removedId?: number }): void {
    const voters = this.context.membership.list().filter((member) => !member.isLearner && member.id !== delta.removedId);
    const started = voters.filter((member) => member.name !== '').length + (delta.addedStarted ?? 0);
    const total = voters.length + (delta.added ?? 0);
    if (change === 'add' && started === 1 && total === 2) return;
    const quorum = Math.floor(total / 2) + 1;
    if (started < quorum) {
      throw new StrataError(ErrorCode.NOT_ENOUGH_STARTED_MEMBERS, 'etcdserver: re-configuration failed due to not enough started members', {
        details: { change, voters: total, started, quorum },
      });
    }
  }

  private confChangeFor(operation: MemberOperation): ConfChange {
    const { membership } = this.context;
    switch (operation.op) {
      case 'add': {
        for (const url of operation.peerUrls) {
          if (membership.findByPeerUrl(url) !== undefined) throw new StrataError(ErrorCode.PEER_URL_EXISTS, 'etcdserver: Peer URLs already exists');
        }
        const id = memberIdFor(operation.peerUrls, this.context.clusterToken);
        if (membership.isRemoved(id)) {
          throw new StrataError(ErrorCode.CONF_CHANGE_REFUSED, `member ${id.toString(16)} was removed before and cannot return under the same peer URLs; use other URLs`);
        }
        // etcd allows one learner; a migration adds all its new members at once and says how many.
        if (operation.isLearner && membership.list().filter((member) => member.isLearner).length >= Math.min(MEMBERS_MAX, operation.learnersMax ?? LEARNERS_MAX)) {
          throw new StrataError(ErrorCode.TOO_MANY_LEARNERS, 'etcdserver: too many learner members in cluster');
        }
        if (!operation.isLearner) this.checkStartedQuorum('add', { added: 1, addedStarted: 0 });
        return {
          transition: 'auto',
          changes: [{ type: operation.isLearner ? 'addLearner' : 'addVoter', nodeId: id }],
          context: encodeMemberContext({ peerUrls: operation.peerUrls, name: '' }),
        };
      }
      case 'remove': {
        const member = membership.get(operation.id);
        if (member === undefined) throw new StrataError(ErrorCode.MEMBER_NOT_FOUND, 'etcdserver: member not found');
        if (!member.isLearner) this.checkStartedQuorum('remove', { removedId: operation.id });
        return { transition: 'auto', changes: [{ type: 'removeNode', nodeId: operation.id }] };
      }
      case 'promote': {
        const member = membership.get(operation.id);
        if (member === undefined) throw new StrataError(ErrorCode.MEMBER_NOT_FOUND, 'etcdserver: member not found');
        if (!member.isLearner) throw new StrataError(ErrorCode.MEMBER_NOT_LEARNER, 'etcdserver: can only promote a learner member');
        this.checkLearnerReady(operation.id);
        // A caught-up learner is running: it counts as started.
        this.checkStartedQuorum('promote', { added: 1, addedStarted: 1 });
        return { transition: 'auto', changes: [{ type: 'addVoter', nodeId: operation.id }], context: encodeMemberContext({ peerUrls: member.peerUrls, name: member.name }) };
      }
      case 'replace':
        return this.replacementFor(operation.promote, operation.remove, operation.demote ?? [], operation.leave);
      case 'leave':
        return { transition: 'auto', changes: [] };
    }
  }

  // replacementFor checks a joint replacement: every promoted member a caught-up learner,
  // every removed or demoted one a member (a demoted one a voter), none named twice, and a
  // started quorum in the incoming voters. Demoted voters become learners when the joint
  // configuration is left: they keep replicating, so a migration can still go back to them.
  private replacementFor(promote: readonly number[], remove: readonly number[], demote: readonly number[], leave: JointLeave): ConfChange {
    const { membership } = this.context;
    if (promote.length + remove.length + demote.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a replacement needs a member to promote, remove or demote');
    const named = [...promote, ...remove, ...demote];
    const twice = named.find((id, at) => named.indexOf(id) !== at);
    if (twice !== undefined) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a replacement names member ${twice.toString(16)} twice`);
    for (const id of demote) {
      const member = membership.get(id);
      if (member === undefined) throw new StrataError(ErrorCode.MEMBER_NOT_FOUND, `etcdserver: member not found: ${id.toString(16)}`);
      if (member.isLearner) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `member ${id.toString(16)} is a learner already; only a voter is demoted`);
    }
    for (const id of promote) {
      const member = membership.get(id);
      if (member === undefined) throw new StrataError(ErrorCode.MEMBER_NOT_FOUND, `etcdserver: member not found: ${id.toString(16)}`);
      if (!member.isLearner) throw new StrataError(ErrorCode.MEMBER_NOT_LEARNER, `etcdserver: can only promote a learner member: ${id.toString(16)}`);
      this.checkLearnerReady(id);
    }
    for (const id of remove) {
      if (membership.get(id) === undefined) throw new StrataError(ErrorCode.MEMBER_NOT_FOUND, `etcdserver: member not found: ${id.toString(16)}`);
    }
    // The incoming voters: today's voters less the removed and demoted, plus the promoted (running: started).
    const incoming = membership.list().filter((member) => !member.isLearner && !remove.includes(member.id) && !demote.includes(member.id));
    const started = incoming.filter((member) => member.name !== '').length + promote.length;
    const total = incoming.length + promote.length;
    if (total === 0) throw new StrataError(ErrorCode.CONF_CHANGE_REFUSED, 'a replacement may not remove every voter');
    const quorum = Math.floor(total / 2) + 1;
    if (started < quorum) {
      throw new StrataError(ErrorCode.NOT_ENOUGH_STARTED_MEMBERS, 'etcdserver: re-configuration failed due to not enough started members', {
        details: { change: 'replace', voters: total, started, quorum },
      });
    }
    return {
      // 'implicit' enters a joint configuration even for a single change, so that a
      // replacement always has the same shape (and the same answer: after leaving, for 'auto').
      transition: leave === 'auto' ? 'implicit' : 'explicit',
      changes: [
        ...promote.map((nodeId) => ({ type: 'addVoter' as const, nodeId })),
        ...remove.map((nodeId) => ({ type: 'removeNode' as const, nodeId })),
        ...demote.map((nodeId) => ({ type: 'addLearner' as const, nodeId })),
      ],
    };
  }

  private checkLearnerReady(id: number): void {
    const status = this.context.raft.status();
    const learnerMatch = status.progress.get(id)?.match ?? 0;
    const leaderMatch = status.progress.get(this.context.selfId)?.match ?? status.lastIndex;
    if (learnerMatch < leaderMatch * LEARNER_READY_FRACTION) {
      throw new StrataError(ErrorCode.LEARNER_NOT_READY, 'etcdserver: can only promote a learner member which is in sync with leader', {
        details: { member: id.toString(16), learnerMatch, leaderMatch },
      });
    }
  }
}

// The 'member' peer call carries a MemberOperation, or the notice that a member was removed;
// its reply is the member list after the change.
const packr = new Packr({ useRecords: false, moreTypes: false });

/** MemberPeerRequest is what the 'member' peer call carries. */
export type MemberPeerRequest = MemberOperation | { readonly op: 'removed'; readonly id: number };

/** encodeMemberOperation encodes the body of a 'member' peer call. */
export function encodeMemberOperation(request: MemberPeerRequest): Uint8Array {
  return packr.pack(request);
}

/** decodeMemberOperation decodes the body of a 'member' peer call, refusing anything malformed. */
export function decodeMemberOperation(body: Uint8Array): MemberPeerRequest {
  const value = packr.unpack(body) as Partial<Record<string, unknown>> | null;
  const bad = (): never => {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'member peer request: malformed operation');
  };
  if (value === null || typeof value !== 'object') return bad();
  switch (value.op) {
    case 'add':
      if (!Array.isArray(value.peerUrls) || !value.peerUrls.every((url) => typeof url === 'string') || typeof value.isLearner !== 'boolean') bad();
      if (value.learnersMax !== undefined && (!Number.isSafeInteger(value.learnersMax) || (value.learnersMax as number) < 1)) bad();
      break;
    case 'remove':
    case 'promote':
    case 'removed':
      if (!Number.isInteger(value.id)) bad();
      break;
    case 'replace': {
      const ids = (list: unknown): boolean => Array.isArray(list) && list.length <= MEMBERS_MAX && list.every((id) => Number.isInteger(id));
      if (!ids(value.promote) || !ids(value.remove) || (value.demote !== undefined && !ids(value.demote)) || (value.leave !== 'auto' && value.leave !== 'explicit')) bad();
      break;
    }
    case 'leave':
      break;
    default:
      bad();
  }
  return value as MemberPeerRequest;
}

/** encodeMembersReply encodes the member list a 'member' peer call answers. */
export function encodeMembersReply(members: readonly MemberRecord[]): Uint8Array {
  return packr.pack({ members });
}

function decodeMembersReply(reply: Uint8Array): MemberRecord[] {
  const value = packr.unpack(reply) as { members?: unknown } | null;
  if (value === null || !Array.isArray(value.members)) throw new StrataError(ErrorCode.UNAVAILABLE, 'the leader answered a membership change without a member list');
  return value.members as MemberRecord[];
}

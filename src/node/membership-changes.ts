// MembershipChanges: etcd's MemberAdd / MemberRemove / MemberPromote, from the request to the
// moment the configuration change is applied here. A follower passes the operation to the
// leader (peer call 'member'); the leader checks it against the member table, proposes the
// ConfChange, and waits for its entry to be applied.
//
// A change the leader proposed is in exactly one state until settled: waiting for its entry
// (index, term) to be applied. It is settled exactly once: resolved when that entry is
// applied, rejected with LEADER_CHANGED when another entry took its index, or by its deadline
// (TIMEOUT), its AbortSignal (CANCELED) or failAll() (STOPPED). Only one change may be pending
// in the core at a time (thesis §4.1): a proposal refused with CONF_CHANGE_PENDING is retried
// every heartbeat until its deadline.
//
// Invariant: `waiters` holds only unsettled changes, at most one per index, and at most
// CONF_CHANGES_WAITING_MAX of them.

import { Packr } from 'msgpackr';
import type { ConfChange, Index, NodeId, Raft, Term } from '../raft/index.ts';
import type { Transport } from '../transport/index.ts';
import { assert, ErrorCode, isStrataError, sleep, StrataError } from '../util/index.ts';
import type { Clock } from '../util/index.ts';
import { memberIdFor } from './member-identity.ts';
import type { MemberRecord, Membership } from './membership.ts';
import { encodeMemberContext } from './node-command.ts';
import { REQUEST_TIMEOUT_MS } from './proposal-tracker.ts';

/** LEARNER_READY_FRACTION: a learner may be promoted once its log reaches this share of the leader's (etcd: 90 %). */
export const LEARNER_READY_FRACTION = 0.9;
/** LEARNERS_MAX is how many learners a cluster may have at once (etcd's default). */
export const LEARNERS_MAX = 1;
/** CONF_CHANGES_WAITING_MAX bounds membership changes waiting for their entry to be applied. */
export const CONF_CHANGES_WAITING_MAX = 64;
// Bounds the retries of a change refused because another is pending (each waits a heartbeat).
const PENDING_RETRIES_MAX = 10_000;

/** MemberOperation is one membership request, as it travels to the leader. */
export type MemberOperation =
  | { readonly op: 'add'; readonly peerUrls: readonly string[]; readonly isLearner: boolean }
  | { readonly op: 'remove'; readonly id: number }
  | { readonly op: 'promote'; readonly id: number };

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
  private closedWith: StrataError | undefined;

  constructor(context: MembershipChangesContext) {
    this.context = context;
  }

  /** waiting counts the changes waiting for their entry to be applied. */
  get waiting(): number {
    return this.waiters.size;
  }

  /** operate runs a membership operation (here when leading, else on the leader) and answers the member list after it. */
  async operate(operation: MemberOperation, options: ChangeOptions): Promise<MemberRecord[]> {
    const { clock, raft, transport } = this.context;
    const deadlineMs = clock.now() + (options.timeoutMs ?? REQUEST_TIMEOUT_MS);
    const remaining = (): number => Math.max(1, deadlineMs - clock.now());
    const leaderId = await this.context.waitForLeader({ ...options, timeoutMs: remaining() });
    if (leaderId !== this.context.selfId) {
      const reply = await transport.request(leaderId, 'member', encodeMemberOperation(operation), {
        timeoutMs: remaining(),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
      });
      return decodeMembersReply(reply);
    }
    for (let attempt = 0; attempt < PENDING_RETRIES_MAX; attempt += 1) {
      this.checkOpen(options.signal);
      // Checked against the member table as it is now: a change that was pending a moment
      // ago (a second learner, the same peer URLs) may have been applied since.
      const change = this.confChangeFor(operation);
      let proposed: { index: Index; term: Term };
      try {
        proposed = raft.proposeConfChange(change);
      } catch (error) {
        if (!isStrataError(error, ErrorCode.CONF_CHANGE_PENDING)) throw error;
        // Only one change at a time: wait for the pending one, within the deadline.
        if (clock.now() + this.context.heartbeatIntervalMs > deadlineMs) {
          throw new StrataError(ErrorCode.TIMEOUT, 'etcdserver: request timed out', { cause: error });
        }
        await sleep(clock, this.context.heartbeatIntervalMs);
        continue;
      }
      this.context.scheduleLoop();
      await this.waitApplied(proposed.index, proposed.term, deadlineMs, options.signal);
      return this.context.membership.list();
    }
    throw new StrataError(ErrorCode.TIMEOUT, 'etcdserver: request timed out');
  }

  /** onApplied settles the change waiting for the ConfChange entry applied at (index, term). */
  onApplied(index: Index, term: Term): void {
    const waiter = this.waiters.get(index);
    if (waiter === undefined) return;
    if (waiter.term === term) this.settle(waiter, undefined);
    else this.settle(waiter, new StrataError(ErrorCode.LEADER_CHANGED, 'etcdserver: leader changed'));
  }

  /** sweepDeadlines settles every change past its deadline with TIMEOUT (the change may still be applied later). */
  sweepDeadlines(): void {
    const nowMs = this.context.clock.now();
    for (const waiter of [...this.waiters.values()]) {
      if (nowMs > waiter.deadlineMs) this.settle(waiter, new StrataError(ErrorCode.TIMEOUT, 'etcdserver: request timed out'));
    }
  }

  /** failAll rejects every waiting change with `error`; later operations are refused with it. */
  failAll(error: StrataError): void {
    this.closedWith ??= error;
    for (const waiter of [...this.waiters.values()]) this.settle(waiter, error);
    assert(this.waiters.size === 0, 'failAll settles every change');
  }

  private checkOpen(signal: AbortSignal | undefined): void {
    if (this.closedWith !== undefined) throw this.closedWith;
    if (signal?.aborted === true) throw canceled();
  }

  private waitApplied(index: Index, term: Term, deadlineMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.waiters.size >= CONF_CHANGES_WAITING_MAX) {
        reject(new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests'));
        return;
      }
      assert(!this.waiters.has(index), `a membership change already waits at index ${index}`);
      const waiter: Waiter = { index, term, deadlineMs, settled: false, detach: undefined, resolve, reject };
      if (signal !== undefined) {
        const onAbort = (): void => this.settle(waiter, canceled());
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.waiters.set(index, waiter);
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
    this.waiters.delete(waiter.index);
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
    const { membership, raft, selfId } = this.context;
    switch (operation.op) {
      case 'add': {
        for (const url of operation.peerUrls) {
          if (membership.findByPeerUrl(url) !== undefined) throw new StrataError(ErrorCode.PEER_URL_EXISTS, 'etcdserver: Peer URLs already exists');
        }
        const id = memberIdFor(operation.peerUrls, this.context.clusterToken);
        if (membership.isRemoved(id)) {
          throw new StrataError(ErrorCode.CONF_CHANGE_REFUSED, `member ${id.toString(16)} was removed before and cannot return under the same peer URLs; use other URLs`);
        }
        if (operation.isLearner && membership.list().filter((member) => member.isLearner).length >= LEARNERS_MAX) {
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
        const status = raft.status();
        const learnerMatch = status.progress.get(operation.id)?.match ?? 0;
        const leaderMatch = status.progress.get(selfId)?.match ?? status.lastIndex;
        if (learnerMatch < leaderMatch * LEARNER_READY_FRACTION) {
          throw new StrataError(ErrorCode.LEARNER_NOT_READY, 'etcdserver: can only promote a learner member which is in sync with leader', {
            details: { learnerMatch, leaderMatch },
          });
        }
        // A caught-up learner is running: it counts as started.
        this.checkStartedQuorum('promote', { added: 1, addedStarted: 1 });
        return { transition: 'auto', changes: [{ type: 'addVoter', nodeId: operation.id }], context: encodeMemberContext({ peerUrls: member.peerUrls, name: member.name }) };
      }
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
      break;
    case 'remove':
    case 'promote':
    case 'removed':
      if (!Number.isInteger(value.id)) bad();
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

function canceled(): StrataError {
  return new StrataError(ErrorCode.CANCELED, 'etcdserver: request canceled');
}

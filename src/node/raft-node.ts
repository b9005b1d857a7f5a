// RaftNode: the one driver around the pure Raft core (src/raft). It owns the clock (ticks),
// the durable log, the KV state machine and the peer transport, and turns proposals and
// reads into promises. It follows the driver contract in src/raft/README.md:
//
//   one Ready at a time; send Ready.messages at once (the leader's appends leave while its
//   own fsync runs); persist entries + hard state in one LogStore.save (group commit:
//   proposals that arrive meanwhile wait for the next Ready), then messagesAfterPersist;
//   apply committed entries (applyConfChange for each ConfChange) — while the save runs
//   when they were persisted by earlier Readys, after it otherwise; then advance().
//
// Proposals are matched to their outcome by (index, term): the entry that is applied at
// the index a proposal got is ours exactly when its term is the term we proposed in. When
// another entry lands there, ours was never committed and never will be, so the proposal is
// routed again (safe: it cannot be applied twice). That is what lets a leader hand over
// without failing writes: proposals that arrive during a transfer are held, then passed on
// to the new leader.

import { randomInt } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import type { ConfChange, Entry, HardState, Index, Logger, Message, NodeId, Ready, Role, Term } from '../raft/index.ts';
import { decodeConfChange, EntryType, NO_NODE, Raft, RAFT_CONFIG_DEFAULTS, SILENT_LOGGER } from '../raft/index.ts';
import type { KvLimits, KvRequest, KvResponse, KvStateMachine, LogStore, RangeRequest, RangeResponse } from '../storage/index.ts';
import {
  abortOnFatal,
  APPLY_ENTRIES_MAX,
  DEFAULT_KV_LIMITS,
  DiskLogStore,
  encodeValidKvCommand,
  isEmptySaveRequest,
  isKvCommand,
  MemoryLogStore,
  NodeFileSystem,
  openDiskKvStateMachine,
  openMemoryKvStateMachine,
  validateKvRequest,
} from '../storage/index.ts';
import type { PeerRequestKind, Transport } from '../transport/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, isErrorCode, isStrataError, StrataError } from '../util/errors.ts';
import { SeededRandom } from '../util/random.ts';
import { clusterIdFor, memberIdFor } from './member-identity.ts';
import type { MemberIdentity } from './member-state-file.ts';
import { readMemberIdentity, writeMemberIdentity } from './member-state-file.ts';
import type { InitialMember, MemberRecord } from './membership.ts';
import { Membership } from './membership.ts';
import { decodeMemberContext, decodeNodeCommand, encodeMemberContext, encodeNodeCommand } from './node-command.ts';
import type { RaftNodeHooks, RaftNodeOptions } from './raft-node-options.ts';

/** PROPOSALS_QUEUED_MAX bounds proposals waiting for the next Ready (beyond it: "too many requests"). */
export const PROPOSALS_QUEUED_MAX = 16_384;
/** PROPOSALS_HELD_MAX bounds proposals held while there is no leader or leadership is being handed over. */
export const PROPOSALS_HELD_MAX = 16_384;
/** PROPOSALS_IN_FLIGHT_MAX bounds proposals appended and not yet applied. */
export const PROPOSALS_IN_FLIGHT_MAX = 65_536;
/** READS_PENDING_MAX bounds linearizable reads waiting for a read index or for apply. */
export const READS_PENDING_MAX = 65_536;
/** FORWARD_HOPS_MAX bounds how often a proposal is passed from member to member. */
export const FORWARD_HOPS_MAX = 3;
/** FORWARD_BATCH_MAX bounds the proposals one forwarding peer call carries. */
export const FORWARD_BATCH_MAX = 1_024;
/** REQUEST_TIMEOUT_MS is a request's deadline when the caller gives none (etcd: 5 s + election). */
export const REQUEST_TIMEOUT_MS = 7_000;
/** LEARNER_READY_FRACTION: a learner may be promoted once its log reaches this share of the leader's (etcd: 90 %). */
export const LEARNER_READY_FRACTION = 0.9;
/** LEARNERS_MAX is how many learners a cluster may have at once (etcd's default). */
export const LEARNERS_MAX = 1;
/** REMOVED_GRACE_ELECTIONS: a removed member keeps answering for this many election timeouts. */
export const REMOVED_GRACE_ELECTIONS = 3;
/** PUBLISH_ATTEMPTS_MAX bounds the attempts to publish this member's name and client URLs. */
export const PUBLISH_ATTEMPTS_MAX = 50;

/** NodeStatus is this member's view of itself and the cluster. */
export interface NodeStatus {
  readonly memberId: number;
  readonly clusterId: number;
  readonly name: string;
  readonly role: Role;
  readonly leaderId: number;
  readonly term: Term;
  readonly commitIndex: Index;
  readonly appliedIndex: Index;
  readonly lastIndex: Index;
  readonly revision: number;
  readonly isLearner: boolean;
  readonly removed: boolean;
}

/** CallOptions bound one call: an AbortSignal and/or a timeout. */
export interface NodeCallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

// The outcome of an applied command: the KV response, or the refusal the state machine gave.
interface Outcome {
  readonly response?: KvResponse;
  readonly error?: StrataError;
}

// A write waiting to be committed and applied, wherever it is in its journey.
interface Proposal {
  readonly data: Uint8Array;
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  hops: number;
  settled: boolean;
  /** Removes the abort listener once the proposal is settled. */
  detach: (() => void) | undefined;
  readonly resolve: (outcome: Outcome) => void;
  readonly reject: (error: unknown) => void;
}

interface InFlight {
  readonly term: Term;
  readonly proposal: Proposal;
}

interface ConfWaiter {
  readonly index: Index;
  readonly term: Term;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

interface ReadWaiter {
  readonly deadline: number;
  settled: boolean;
  detach: (() => void) | undefined;
  readonly resolve: (index: Index) => void;
  readonly reject: (error: unknown) => void;
}

interface ReadBatch {
  readonly waiters: ReadWaiter[];
  issuedAtTick: number;
}

interface AppliedWaiter {
  readonly index: Index;
  readonly resolve: () => void;
}

type MemberOperation =
  | { readonly op: 'add'; readonly peerUrls: readonly string[]; readonly isLearner: boolean }
  | { readonly op: 'remove'; readonly id: number }
  | { readonly op: 'promote'; readonly id: number }
  | { readonly op: 'removed'; readonly id: number };

// Peer payloads are small structured values (responses, member operations): msgpackr keeps
// Uint8Array keys and values as bytes.
const packr = new Packr({ useRecords: false, moreTypes: false });

function now(): number {
  return performance.now();
}

/** RaftNode is a cluster member: start one with RaftNode.start(options). */
export class RaftNode {
  /** memberId is this member's id (derived from its peer URLs and the cluster token). */
  readonly memberId: number;
  /** clusterId is the cluster's id (derived from the cluster token). */
  readonly clusterId: number;
  readonly name: string;

  private readonly options: RaftNodeOptions;
  private readonly logger: Logger;
  private readonly hooks: RaftNodeHooks;
  private readonly limits: KvLimits;
  private readonly raft: Raft;
  private readonly log: LogStore;
  private readonly stateMachine: KvStateMachine;
  private readonly transport: Transport;
  private readonly membership: Membership;
  private readonly electionTicks: number;

  private role: Role = 'follower';
  private leaderId: NodeId = NO_NODE;
  private appliedIndex: Index = 0;
  // A hard state whose only change is the commit index, not yet written (see handleReady).
  private deferredHardState: HardState | undefined;
  private tickCount = 0;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private loopScheduled = false;
  private loopRunning: Promise<void> | undefined;
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private resolveStopped: () => void = () => undefined;
  private readonly stoppedPromise = new Promise<void>((resolve) => {
    this.resolveStopped = resolve;
  });
  private removed = false;
  private removedAtTick = -1;
  private commandSequence = 0;
  private soleVoterCampaignPending = false;
  private readSequence = 0;

  private toPropose: Proposal[] = [];
  private held: Proposal[] = [];
  // Proposals on their way to the leader, sent once per turn of the event loop (forward()).
  private readonly toForward = new Map<NodeId, Proposal[]>();
  private forwardFlushScheduled = false;
  private readonly inFlight = new Map<Index, InFlight>();
  private readonly confWaiters = new Map<Index, ConfWaiter>();
  private pendingReads: ReadWaiter[] = [];
  private readonly readBatches = new Map<number, ReadBatch>();
  private appliedWaiters: AppliedWaiter[] = [];
  private readonly leaderWaiters = new Set<() => void>();

  private constructor(
    options: RaftNodeOptions,
    identity: MemberIdentity,
    log: LogStore,
    kv: KvStateMachine,
    freshCluster: boolean,
  ) {
    this.options = options;
    this.logger = options.logger ?? SILENT_LOGGER;
    this.hooks = options.hooks ?? {};
    this.limits = options.limits ?? DEFAULT_KV_LIMITS;
    this.memberId = identity.memberId;
    this.clusterId = identity.clusterId;
    this.name = identity.name;
    this.log = log;
    this.stateMachine = kv;
    this.membership = new Membership(identity.initialMembers);
    this.electionTicks = Math.max(2, Math.round(options.electionTimeoutMs / options.heartbeatIntervalMs));
    const seed = randomInt(0, 2 ** 31);
    this.raft = new Raft({
      ...RAFT_CONFIG_DEFAULTS,
      id: this.memberId,
      storage: log,
      random: new SeededRandom(seed),
      electionTicks: this.electionTicks,
      heartbeatTicks: 1,
      logger: this.logger,
      ...(freshCluster ? { voters: identity.initialMembers.map((member) => member.id) } : {}),
    });
    this.transport = options.createTransport({ localId: this.memberId, clusterId: this.clusterId });
  }

  /**
   * start opens (or creates) the member's storage, starts the transport and the clock, and
   * resolves once the node runs. A new member of a `new` cluster bootstraps the initial
   * configuration; a member of an `existing` cluster waits for the leader to contact it.
   */
  static async start(options: RaftNodeOptions): Promise<RaftNode> {
    checkOptions(options);
    const token = options.initialClusterToken;
    const initialMembers: InitialMember[] = options.initialCluster.map((member) => ({
      id: memberIdFor(member.peerUrls, token),
      name: member.name,
      peerUrls: [...member.peerUrls],
    }));
    const derived: MemberIdentity = {
      memberId: memberIdFor(options.advertisePeerUrls, token),
      clusterId: clusterIdFor(token),
      name: options.name,
      initialMembers,
    };
    let identity = derived;
    let log: LogStore;
    let kv: KvStateMachine;
    if (options.dataDir === undefined) {
      log = new MemoryLogStore();
      kv = await openMemoryKvStateMachine({ limits: options.limits ?? DEFAULT_KV_LIMITS });
    } else {
      const stored = readMemberIdentity(options.dataDir);
      if (stored !== undefined && stored.name !== options.name) {
        throw new StrataError(
          ErrorCode.INVALID_ARGUMENT,
          `--name ${JSON.stringify(options.name)} does not match the member ${JSON.stringify(stored.name)} stored in ${options.dataDir}`,
          { details: { dataDir: options.dataDir } },
        );
      }
      if (stored === undefined) writeMemberIdentity(options.dataDir, derived);
      identity = stored ?? derived;
      log = DiskLogStore.openSync({ fileSystem: new NodeFileSystem(), directory: join(options.dataDir, 'member', 'wal'), logger: options.logger ?? SILENT_LOGGER });
      kv = await openDiskKvStateMachine(join(options.dataDir, 'member', 'kv'), { limits: options.limits ?? DEFAULT_KV_LIMITS });
    }
    const logIsEmpty = log.lastIndex() === 0 && log.initialState().hardState.term === 0;
    const freshCluster = logIsEmpty && options.initialClusterState === 'new';
    if (freshCluster && !identity.initialMembers.some((member) => member.id === identity.memberId)) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `member ${options.name} is not in --initial-cluster with its advertised peer URLs`);
    }
    const node = new RaftNode(options, identity, log, kv, freshCluster);
    await node.run();
    return node;
  }

  // ---------------------------------------------------------------- lifecycle

  private async run(): Promise<void> {
    for (const member of this.membershipPeersFromInitialCluster()) this.transport.setPeer(member.id, member.peerUrls);
    await this.transport.start({
      onMessages: (messages) => this.onMessages(messages),
      onUnreachable: (peer) => this.raft.reportUnreachable(peer),
      onRequest: (from, kind, body, signal) => this.onPeerRequest(from, kind, body, signal),
    });
    this.ticker = setInterval(() => this.onTick(), this.options.heartbeatIntervalMs);
    // The only voter need not wait an election timeout for anyone: it campaigns as soon as
    // its committed configuration is applied (the core refuses to campaign before that).
    const voters = this.raft.status().config.voters;
    this.soleVoterCampaignPending = voters.length === 1 && voters[0] === this.memberId;
    this.scheduleLoop();
    this.logger.info('member started', { name: this.name, memberId: this.memberId.toString(16), clusterId: this.clusterId.toString(16) });
    this.hooks.onStarted?.({ memberId: this.memberId, clusterId: this.clusterId });
    void this.publishAttributes();
  }

  private membershipPeersFromInitialCluster(): InitialMember[] {
    const token = this.options.initialClusterToken;
    return this.options.initialCluster
      .map((member) => ({ id: memberIdFor(member.peerUrls, token), name: member.name, peerUrls: member.peerUrls }))
      .filter((member) => member.id !== this.memberId);
  }

  /**
   * stop stops the member: when it leads and another voter is caught up, leadership is
   * handed over first (bounded by two election timeouts), so the cluster does not wait an
   * election timeout to notice. Pending calls fail with STOPPED.
   */
  stop(options: { readonly transferLeadership?: boolean } = {}): Promise<void> {
    if (this.stopping === undefined) {
      this.stopping = this.stopNow(options.transferLeadership ?? true);
      this.stopping.then(this.resolveStopped, this.resolveStopped);
    }
    return this.stopping;
  }

  /** whenStopped resolves once the node has stopped (by stop(), or by itself after its removal). */
  whenStopped(): Promise<void> {
    return this.stoppedPromise;
  }

  private async stopNow(transferLeadership: boolean): Promise<void> {
    this.hooks.onStopping?.();
    if (transferLeadership && this.role === 'leader' && !this.removed) {
      const target = this.bestTransferTarget();
      if (target !== undefined) {
        try {
          await this.transferLeadership(target, { timeoutMs: 2 * this.options.electionTimeoutMs });
        } catch (error) {
          this.logger.warn('leadership hand-over before stopping failed', { reason: String(error) });
        }
      }
    }
    this.stopped = true;
    if (this.ticker !== undefined) clearInterval(this.ticker);
    const stoppedError = (): StrataError => new StrataError(ErrorCode.STOPPED, 'etcdserver: server stopped');
    for (const proposal of [...this.toPropose, ...this.held, ...[...this.toForward.values()].flat()]) this.settleProposal(proposal, stoppedError());
    this.toForward.clear();
    for (const { proposal } of this.inFlight.values()) this.settleProposal(proposal, stoppedError());
    for (const waiter of this.confWaiters.values()) waiter.reject(stoppedError());
    for (const waiter of this.pendingReads) this.settleRead(waiter, stoppedError());
    for (const batch of this.readBatches.values()) for (const waiter of batch.waiters) this.settleRead(waiter, stoppedError());
    for (const wake of [...this.leaderWaiters]) wake();
    this.toPropose = [];
    this.held = [];
    this.inFlight.clear();
    this.confWaiters.clear();
    this.pendingReads = [];
    this.readBatches.clear();
    await this.loopRunning;
    await this.transport.close();
    if (this.deferredHardState !== undefined) await this.log.save({ hardState: this.deferredHardState });
    await this.log.close();
    await this.stateMachine.close();
    this.logger.info('member stopped', { name: this.name });
  }

  private bestTransferTarget(): NodeId | undefined {
    const status = this.raft.status();
    let best: NodeId | undefined;
    let bestMatch = -1;
    for (const [id, progress] of status.progress) {
      if (id === this.memberId || progress.isLearner || !progress.recentActive) continue;
      if (!status.config.voters.includes(id)) continue;
      if (progress.match > bestMatch) {
        best = id;
        bestMatch = progress.match;
      }
    }
    return best;
  }

  // ---------------------------------------------------------------- observation

  /** status reports this member's view now. */
  status(): NodeStatus {
    const raftStatus = this.raft.status();
    return {
      memberId: this.memberId,
      clusterId: this.clusterId,
      name: this.name,
      role: raftStatus.role,
      leaderId: raftStatus.leaderId,
      term: raftStatus.term,
      commitIndex: raftStatus.commit,
      appliedIndex: this.appliedIndex,
      lastIndex: raftStatus.lastIndex,
      revision: this.stateMachine.revision(),
      isLearner: raftStatus.config.learners.includes(this.memberId),
      removed: this.removed,
    };
  }

  /** currentTerm is the Raft term this member is in (for response headers). */
  currentTerm(): Term {
    return this.raft.currentTerm();
  }

  /** revision is the state machine's current revision. */
  revision(): number {
    return this.stateMachine.revision();
  }

  /** members lists the members as this member has applied them. */
  members(): MemberRecord[] {
    return this.membership.list();
  }

  /** dbSizeBytes is the size of the state machine's files (0 in memory). */
  async dbSizeBytes(): Promise<number> {
    if (this.options.dataDir === undefined) return 0;
    const directory = join(this.options.dataDir, 'member', 'kv');
    let total = 0;
    const names = await readdir(directory).catch(() => [] as string[]);
    for (const name of names.slice(0, 10_000)) {
      const info = await stat(join(directory, name)).catch(() => undefined);
      if (info?.isFile() === true) total += info.size;
    }
    return total;
  }

  /** waitForLeader resolves once a leader is known (or rejects with TIMEOUT). */
  async waitForLeader(options: NodeCallOptions = {}): Promise<NodeId> {
    const deadline = now() + (options.timeoutMs ?? REQUEST_TIMEOUT_MS);
    for (let attempt = 0; attempt < 10_000; attempt += 1) {
      this.checkRunning();
      if (this.leaderId !== NO_NODE) return this.leaderId;
      const remaining = deadline - now();
      if (remaining <= 0) break;
      await this.leaderNoticeOrTimeout(Math.min(remaining, this.options.heartbeatIntervalMs));
    }
    throw new StrataError(ErrorCode.TIMEOUT, 'etcdserver: request timed out: no leader was elected in time');
  }

  // leaderNoticeOrTimeout resolves when this member learns of a leader, or after timeoutMs.
  private leaderNoticeOrTimeout(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.leaderWaiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, timeoutMs);
      this.leaderWaiters.add(wake);
    });
  }

  // ---------------------------------------------------------------- KV

  /**
   * kv runs a KV request: writes (Put, DeleteRange, Txn) are proposed through Raft (on a
   * follower, passed to the leader); a Range is linearizable (ReadIndex) unless
   * `serializable`, which answers from this member's applied state. A Txn whose branches
   * only read still goes through the log, as in etcd.
   */
  async kv(request: KvRequest, options: NodeCallOptions = {}): Promise<KvResponse> {
    if (request.type === 'range') return this.range(request, options);
    this.checkServing();
    const data = encodeValidKvCommand({ id: this.nextCommandId(), request }, this.limits);
    const outcome = await this.submit(data, options);
    if (outcome.error !== undefined) throw outcome.error;
    assert(outcome.response !== undefined, 'an applied KV command has a response or an error');
    return outcome.response;
  }

  /** range reads keys: linearizable by default, from this member's state when serializable. */
  async range(request: RangeRequest, options: NodeCallOptions = {}): Promise<RangeResponse> {
    this.checkServing();
    validateKvRequest(request, this.limits);
    if (request.serializable !== true) {
      const readIndex = await this.linearizableReadIndex(options);
      await this.waitApplied(readIndex);
    }
    return this.stateMachine.range(request);
  }

  private nextCommandId(): number {
    // Ids only help a reader of the log; outcomes are matched by (index, term).
    this.commandSequence = (this.commandSequence + 1) % Number.MAX_SAFE_INTEGER;
    return this.commandSequence;
  }

  private checkRunning(): void {
    if (this.stopped || this.stopping !== undefined) throw new StrataError(ErrorCode.STOPPED, 'etcdserver: server stopped');
  }

  private checkServing(): void {
    this.checkRunning();
    if (this.removed) throw new StrataError(ErrorCode.MEMBER_REMOVED, 'etcdserver: the member has been permanently removed from the cluster');
  }

  // ---------------------------------------------------------------- proposals

  private submit(data: Uint8Array, options: NodeCallOptions, hops = 0): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      const signal = options.signal;
      if (signal?.aborted === true) {
        reject(new StrataError(ErrorCode.CANCELED, 'etcdserver: request canceled'));
        return;
      }
      const proposal: Proposal = {
        data,
        deadline: now() + (options.timeoutMs ?? REQUEST_TIMEOUT_MS),
        signal,
        hops,
        settled: false,
        detach: undefined,
        resolve,
        reject,
      };
      if (signal !== undefined) {
        const onAbort = (): void => this.settleProposal(proposal, new StrataError(ErrorCode.CANCELED, 'etcdserver: request canceled'));
        signal.addEventListener('abort', onAbort, { once: true });
        proposal.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.route(proposal);
    });
  }

  private settleProposal(proposal: Proposal, result: Outcome | unknown): void {
    if (proposal.settled) return;
    proposal.settled = true;
    proposal.detach?.();
    if (result instanceof Error) proposal.reject(result);
    else proposal.resolve(result as Outcome);
  }

  // route sends a proposal where it can make progress: into this leader's next Ready, to the
  // leader, or into the held queue until a leader is known.
  private route(proposal: Proposal): void {
    if (proposal.settled) return;
    if (this.stopped) {
      this.settleProposal(proposal, new StrataError(ErrorCode.STOPPED, 'etcdserver: server stopped'));
      return;
    }
    if (now() > proposal.deadline) {
      this.settleProposal(proposal, new StrataError(ErrorCode.TIMEOUT, 'etcdserver: request timed out'));
      return;
    }
    const leaderId = this.raftLeader();
    if (leaderId === this.memberId) {
      if (this.toPropose.length >= PROPOSALS_QUEUED_MAX || this.inFlight.size >= PROPOSALS_IN_FLIGHT_MAX) {
        this.settleProposal(proposal, new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests'));
        return;
      }
      this.toPropose.push(proposal);
      this.scheduleLoop();
    } else if (leaderId === NO_NODE) {
      this.hold(proposal);
    } else {
      this.forward(proposal, leaderId);
    }
  }

  // The core's own view (our copies are updated per Ready, which can lag a step()).
  private raftRole(): Role {
    return this.raft.currentRole();
  }

  private raftLeader(): NodeId {
    return this.raft.currentLeader();
  }

  private hold(proposal: Proposal): void {
    if (this.held.length >= PROPOSALS_HELD_MAX) {
      this.settleProposal(proposal, new StrataError(ErrorCode.NO_LEADER, 'etcdserver: no leader'));
      return;
    }
    this.held.push(proposal);
  }

  private releaseHeld(): void {
    if (this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    for (const proposal of held) this.route(proposal);
  }

  // forward passes a proposal to the leader. Proposals for one leader gathered in one turn of
  // the event loop leave together as one peer call: after a leader transfer every held write
  // goes at once, and a member that clients write to through it pays one call per batch.
  private forward(proposal: Proposal, leaderId: NodeId): void {
    if (proposal.hops >= FORWARD_HOPS_MAX) {
      this.settleProposal(proposal, new StrataError(ErrorCode.NO_LEADER, 'etcdserver: no leader (the proposal was passed on too often)'));
      return;
    }
    let batch = this.toForward.get(leaderId);
    if (batch === undefined) {
      batch = [];
      this.toForward.set(leaderId, batch);
    }
    batch.push(proposal);
    if (batch.length >= FORWARD_BATCH_MAX) {
      this.toForward.delete(leaderId);
      this.sendForwardBatch(leaderId, batch);
      return;
    }
    if (!this.forwardFlushScheduled) {
      this.forwardFlushScheduled = true;
      // After the I/O phase, so that writes parsed from one read of the sockets share a call.
      setImmediate(() => this.flushForwards());
    }
  }

  private flushForwards(): void {
    this.forwardFlushScheduled = false;
    const batches = [...this.toForward];
    this.toForward.clear();
    for (const [leaderId, batch] of batches) this.sendForwardBatch(leaderId, batch);
  }

  private sendForwardBatch(leaderId: NodeId, batch: readonly Proposal[]): void {
    const proposals = batch.filter((proposal) => !proposal.settled);
    if (proposals.length === 0) return;
    // An aborted proposal is settled here at once (submit's listener); the leader may still
    // apply it, as with any write cancelled after it was sent.
    const body = packr.pack(proposals.map((proposal): ForwardedProposal => [proposal.hops + 1, proposal.data]));
    const deadline = Math.max(...proposals.map((proposal) => proposal.deadline));
    this.transport.request(leaderId, 'propose', body, { timeoutMs: Math.max(1, deadline - now()) }).then(
      (reply) => {
        const outcomes = decodeForwardOutcomes(reply, proposals.length);
        for (const [offset, proposal] of proposals.entries()) {
          const outcome = outcomes[offset] as ForwardOutcome;
          if ('error' in outcome) this.onForwardRefused(proposal, outcomeError(outcome.error));
          else this.settleProposal(proposal, outcome.response !== undefined ? { response: outcome.response } : {});
        }
      },
      (error: unknown) => {
        for (const proposal of proposals) this.onForwardRefused(proposal, error);
      },
    );
  }

  private onForwardRefused(proposal: Proposal, error: unknown): void {
    // The leader refused before proposing (it is no longer the leader, or has none): nothing
    // was appended, so the proposal may safely be routed again.
    if (isStrataError(error) && (error.code === ErrorCode.NOT_LEADER || error.code === ErrorCode.NO_LEADER)) {
      this.hold(proposal);
      return;
    }
    this.settleProposal(proposal, error);
  }

  // flushProposals hands queued proposals to the core as one batch, just before ready().
  private flushProposals(): void {
    if (this.toPropose.length === 0) return;
    const batch = this.toPropose.filter((proposal) => !proposal.settled);
    this.toPropose = [];
    if (batch.length === 0) return;
    try {
      const { firstIndex, term } = this.raft.proposeBatch(batch.map((proposal) => proposal.data));
      for (let offset = 0; offset < batch.length; offset += 1) {
        const proposal = batch[offset];
        assert(proposal !== undefined, 'batch index in range');
        this.inFlight.set(firstIndex + offset, { term, proposal });
      }
    } catch (error) {
      if (!isStrataError(error)) throw error;
      switch (error.code) {
        case ErrorCode.LEADER_TRANSFER_IN_PROGRESS:
        case ErrorCode.NOT_LEADER:
          // Nothing was appended: hold the batch until the new leader is known, then pass it on.
          for (const proposal of batch) this.hold(proposal);
          return;
        case ErrorCode.PROPOSAL_DROPPED:
          for (const proposal of batch) this.settleProposal(proposal, new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests', { cause: error }));
          return;
        default:
          throw error;
      }
    }
  }

  // ---------------------------------------------------------------- linearizable reads

  private linearizableReadIndex(options: NodeCallOptions): Promise<Index> {
    return new Promise<Index>((resolve, reject) => {
      if (this.pendingReads.length + this.readBatches.size >= READS_PENDING_MAX) {
        reject(new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests'));
        return;
      }
      const waiter: ReadWaiter = { deadline: now() + (options.timeoutMs ?? REQUEST_TIMEOUT_MS), settled: false, detach: undefined, resolve, reject };
      const signal = options.signal;
      if (signal !== undefined) {
        const onAbort = (): void => this.settleRead(waiter, new StrataError(ErrorCode.CANCELED, 'etcdserver: request canceled'));
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.pendingReads.push(waiter);
      this.scheduleLoop();
    });
  }

  private settleRead(waiter: ReadWaiter, result: Index | Error): void {
    if (waiter.settled) return;
    waiter.settled = true;
    waiter.detach?.();
    if (typeof result === 'number') waiter.resolve(result);
    else waiter.reject(result);
  }

  // flushReads asks the core for one read index for every read that arrived since the last.
  private flushReads(): void {
    if (this.pendingReads.length === 0) return;
    if (this.raftLeader() === NO_NODE) return; // wait for a leader; the tick sweep enforces deadlines
    const waiters = this.pendingReads.filter((waiter) => !waiter.settled);
    this.pendingReads = [];
    if (waiters.length === 0) return;
    this.readSequence += 1;
    const context = new Uint8Array(8);
    new DataView(context.buffer).setFloat64(0, this.readSequence);
    try {
      this.raft.readIndex(context);
    } catch (error) {
      if (!isStrataError(error, ErrorCode.NOT_LEADER)) throw error;
      this.pendingReads.push(...waiters);
      return;
    }
    this.readBatches.set(this.readSequence, { waiters, issuedAtTick: this.tickCount });
  }

  private onReadStates(ready: Ready): void {
    for (const state of ready.readStates) {
      if (state.context.byteLength !== 8) continue;
      const sequence = new DataView(state.context.buffer, state.context.byteOffset, 8).getFloat64(0);
      const batch = this.readBatches.get(sequence);
      if (batch === undefined) continue;
      this.readBatches.delete(sequence);
      for (const waiter of batch.waiters) this.settleRead(waiter, state.index);
    }
  }

  private waitApplied(index: Index): Promise<void> {
    if (this.appliedIndex >= index) return Promise.resolve();
    return new Promise<void>((resolve) => this.appliedWaiters.push({ index, resolve }));
  }

  // ---------------------------------------------------------------- the Ready loop

  private scheduleLoop(): void {
    if (this.loopScheduled || this.loopRunning !== undefined || this.stopped) return;
    this.loopScheduled = true;
    setImmediate(() => {
      this.loopScheduled = false;
      if (this.loopRunning !== undefined || this.stopped) return;
      this.loopRunning = this.loop().finally(() => {
        this.loopRunning = undefined;
        if (this.hasWork()) this.scheduleLoop();
      });
    });
  }

  private hasWork(): boolean {
    return !this.stopped && (this.toPropose.length > 0 || this.raft.hasReady() || (this.pendingReads.length > 0 && this.raftLeader() !== NO_NODE));
  }

  private async loop(): Promise<void> {
    for (let round = 0; round < 1_000_000 && !this.stopped; round += 1) {
      this.flushProposals();
      this.flushReads();
      if (!this.raft.hasReady()) return;
      try {
        await this.handleReady(this.raft.ready());
        if (this.soleVoterCampaignPending) this.campaignIfSoleVoter();
      } catch (error) {
        // A failure here means the log or the state machine can no longer be trusted.
        abortOnFatal(error instanceof Error ? error : new Error(String(error)));
        throw error;
      }
    }
  }

  private async handleReady(ready: Ready): Promise<void> {
    if (ready.softState !== undefined) this.onSoftState(ready.softState.role, ready.softState.leaderId);
    if (ready.messages.length > 0) this.transport.send(ready.messages);
    if (ready.snapshot !== undefined) {
      // The log is never compacted yet, so no leader sends a snapshot; src/snapshot adds it.
      throw new StrataError(ErrorCode.UNIMPLEMENTED, `received a snapshot at index ${ready.snapshot.metadata.index}: installing snapshots is not supported yet`);
    }
    const persisted = this.persist(ready);
    if (ready.committedEntries.length > 0) {
      // Entries below this Ready's first new entry were made durable by earlier Readys (each
      // is persisted before the next is taken), so applying them need not wait for this
      // Ready's fdatasync: the two overlap. A committed entry that is in this Ready (a
      // leader's entries that the followers alone made a quorum for, or a follower's entries
      // that arrived with their commit) waits, since nothing is applied before it is in the
      // local log.
      const firstNew = ready.entries[0]?.index;
      const lastCommitted = (ready.committedEntries[ready.committedEntries.length - 1] as Entry).index;
      if (firstNew !== undefined && lastCommitted >= firstNew) {
        await persisted;
        await this.applyCommitted(ready.committedEntries);
      } else {
        await Promise.all([persisted, this.applyCommitted(ready.committedEntries)]);
      }
    } else {
      await persisted;
    }
    this.onReadStates(ready);
    this.raft.advance(ready);
  }

  // persist makes a Ready's entries and hard state durable (one fdatasync), then sends the
  // messages that had to wait for it: votes cast and acknowledgements leave as soon as the
  // disk has them, without waiting for the apply that may run meanwhile.
  private async persist(ready: Ready): Promise<void> {
    if (ready.hardState !== undefined && !ready.mustSync) {
      // Only the commit index moved. It need not be durable (a restarted member learns it
      // again from the leader), so it rides with the next save that must be synced instead
      // of costing an fdatasync of its own on every commit.
      this.deferredHardState = ready.hardState;
    } else {
      const hardState = ready.hardState ?? this.deferredHardState;
      const save = { ...(hardState !== undefined ? { hardState } : {}), entries: ready.entries };
      if (!isEmptySaveRequest(save)) {
        this.deferredHardState = undefined;
        await this.log.save(save);
      }
    }
    if (ready.messagesAfterPersist.length > 0) this.transport.send(ready.messagesAfterPersist);
  }

  private campaignIfSoleVoter(): void {
    const status = this.raft.status();
    if (status.applied < status.commit) return;
    this.soleVoterCampaignPending = false;
    if (status.role === 'follower' && status.leaderId === NO_NODE && status.config.voters.length === 1) this.raft.campaign();
  }

  private onSoftState(role: Role, leaderId: NodeId): void {
    const leaderChanged = leaderId !== this.leaderId;
    this.role = role;
    this.leaderId = leaderId;
    this.hooks.onRoleChange?.({ role, leaderId, term: this.raft.currentTerm() });
    if (leaderId !== NO_NODE) for (const wake of [...this.leaderWaiters]) wake();
    if (leaderChanged) {
      this.logger.info('leader changed', { leaderId: leaderId.toString(16), role });
      // Read requests sent to the old leader may be lost with it: ask again.
      for (const batch of this.readBatches.values()) this.pendingReads.push(...batch.waiters);
      this.readBatches.clear();
    }
    // Held proposals go to the new leader (or into our own next Ready).
    this.releaseHeld();
  }

  private async applyCommitted(entries: readonly Entry[]): Promise<void> {
    const outcomes = new Map<Index, Outcome>();
    for (let start = 0; start < entries.length; start += APPLY_ENTRIES_MAX) {
      const results = await this.stateMachine.apply(entries.slice(start, start + APPLY_ENTRIES_MAX));
      for (const result of results) outcomes.set(result.index, result.error !== undefined ? { error: result.error } : { response: result.response as KvResponse });
    }
    for (const entry of entries) {
      if (entry.type === EntryType.ConfChange) this.applyConfChangeEntry(entry);
      else if (entry.data.byteLength > 0 && !isKvCommand(entry.data)) this.applyNodeCommand(entry);
      const waiting = this.inFlight.get(entry.index);
      if (waiting !== undefined) {
        this.inFlight.delete(entry.index);
        if (waiting.term === entry.term) this.settleProposal(waiting.proposal, outcomes.get(entry.index) ?? {});
        // Another entry took this index: ours was never committed and never will be. Route
        // it again; it cannot be applied twice.
        else this.route(waiting.proposal);
      }
    }
    const last = entries[entries.length - 1];
    assert(last !== undefined, 'applyCommitted got entries');
    this.appliedIndex = last.index;
    if (this.appliedWaiters.length > 0) {
      const ready = this.appliedWaiters.filter((waiter) => waiter.index <= this.appliedIndex);
      this.appliedWaiters = this.appliedWaiters.filter((waiter) => waiter.index > this.appliedIndex);
      for (const waiter of ready) waiter.resolve();
    }
    this.hooks.onApplied?.(this.appliedIndex);
  }

  private applyConfChangeEntry(entry: Entry): void {
    const change = decodeConfChange(entry.data);
    const confState = this.raft.applyConfChange(change);
    const context = decodeMemberContext(change.context);
    const { added, removed } = this.membership.applyConfChange(change, context, confState);
    for (const id of added) {
      const member = this.membership.get(id);
      if (id !== this.memberId && member !== undefined && member.peerUrls.length > 0) this.transport.setPeer(id, member.peerUrls);
    }
    for (const id of removed) this.onMemberRemoved(id);
    const waiter = this.confWaiters.get(entry.index);
    if (waiter !== undefined) {
      this.confWaiters.delete(entry.index);
      if (waiter.term === entry.term) waiter.resolve();
      else waiter.reject(new StrataError(ErrorCode.LEADER_CHANGED, 'etcdserver: leader changed'));
    }
  }

  private applyNodeCommand(entry: Entry): void {
    const command = decodeNodeCommand(entry.data);
    this.membership.applyPublish(command);
  }

  private onMemberRemoved(id: number): void {
    if (id === this.memberId) {
      this.markRemoved();
      return;
    }
    // Tell the removed member, which may not learn the commit from Raft any more (the
    // leader stops replicating to it), then forget it once it had time to hear.
    if (this.role === 'leader') {
      const body = packr.pack({ op: 'removed', id } satisfies MemberOperation);
      this.transport.request(id, 'member', body, { timeoutMs: this.options.electionTimeoutMs }).catch(() => undefined);
    }
    setTimeout(() => {
      if (!this.stopped && this.membership.get(id) === undefined) this.transport.removePeer(id);
    }, REMOVED_GRACE_ELECTIONS * this.options.electionTimeoutMs).unref();
  }

  private markRemoved(): void {
    if (this.removed) return;
    this.removed = true;
    this.logger.warn('this member was removed from the cluster; it keeps answering peers for a grace period, then stops', { name: this.name });
    for (const proposal of this.held) this.settleProposal(proposal, new StrataError(ErrorCode.MEMBER_REMOVED, 'etcdserver: the member has been permanently removed from the cluster'));
    this.held = [];
    this.hooks.onRemoved?.();
  }

  // ---------------------------------------------------------------- clock

  private onTick(): void {
    if (this.stopped) return;
    this.tickCount += 1;
    this.raft.tick();
    this.sendEagerMessages();
    this.sweepDeadlines();
    if (this.held.length > 0) this.releaseHeld();
    // A read index request or answer can be lost with a message: ask again after an election timeout.
    for (const [sequence, batch] of this.readBatches) {
      if (this.tickCount - batch.issuedAtTick >= this.electionTicks) {
        this.readBatches.delete(sequence);
        this.pendingReads.push(...batch.waiters);
      }
    }
    if (this.removed && this.raftRole() !== 'leader') {
      if (this.removedAtTick < 0) this.removedAtTick = this.tickCount;
      if (this.tickCount - this.removedAtTick >= REMOVED_GRACE_ELECTIONS * this.electionTicks) void this.stop({ transferLeadership: false });
    }
    this.scheduleLoop();
  }

  private sweepDeadlines(): void {
    const time = now();
    const timeout = (): StrataError => new StrataError(ErrorCode.TIMEOUT, 'etcdserver: request timed out');
    for (const { proposal } of this.inFlight.values()) if (time > proposal.deadline) this.settleProposal(proposal, timeout());
    for (const proposal of this.held) if (time > proposal.deadline) this.settleProposal(proposal, timeout());
    this.held = this.held.filter((proposal) => !proposal.settled);
    for (const waiter of this.pendingReads) if (time > waiter.deadline) this.settleRead(waiter, timeout());
    this.pendingReads = this.pendingReads.filter((waiter) => !waiter.settled);
    for (const batch of this.readBatches.values()) for (const waiter of batch.waiters) if (time > waiter.deadline) this.settleRead(waiter, timeout());
    // In-flight entries whose proposer gave up stay mapped until applied (they may still commit).
  }

  // ---------------------------------------------------------------- peers

  private onMessages(messages: readonly Message[]): void {
    if (this.stopped) return;
    for (const message of messages) {
      if (message.to !== this.memberId) continue;
      this.raft.step(message);
    }
    this.sendEagerMessages();
    // Writes held while there was no leader go to a newly known leader at once, rather than
    // when the Ready that reports the change is taken (after the current one's fsync).
    if (this.held.length > 0) {
      const leaderId = this.raftLeader();
      if (leaderId !== NO_NODE && leaderId !== this.memberId) this.releaseHeld();
    }
    this.scheduleLoop();
  }

  // Messages that may leave before anything is persisted (Ready.messages' kind) go at once,
  // even while a Ready is being handled: a TimeoutNow, a vote request or a new leader's
  // first append would otherwise wait for that Ready's fsync and apply.
  private sendEagerMessages(): void {
    if (this.stopped) return;
    const messages = this.raft.takeMessages();
    if (messages.length > 0) this.transport.send(messages);
  }

  private async onPeerRequest(from: NodeId, kind: PeerRequestKind, body: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    switch (kind) {
      case 'propose': {
        this.checkServing();
        const forwarded = decodeForwardedProposals(body);
        const outcomes = await Promise.all(
          forwarded.map(([hops, data]) =>
            this.submit(data, { signal }, hops).then(
              (outcome): ForwardOutcome => (outcome.error !== undefined ? { error: wireError(outcome.error) } : { response: outcome.response }),
              (error: unknown): ForwardOutcome => {
                if (!isStrataError(error)) throw error;
                return { error: wireError(error) };
              },
            ),
          ),
        );
        return packr.pack(outcomes);
      }
      case 'member': {
        const operation = packr.unpack(body) as MemberOperation;
        if (operation.op === 'removed') {
          if (operation.id === this.memberId) {
            this.logger.warn('a peer reports that this member was removed', { from: from.toString(16) });
            this.markRemoved();
          }
          return packr.pack({});
        }
        const members = await this.memberOperation(operation, { signal });
        return packr.pack({ members });
      }
      case 'status':
      case 'read':
        throw new StrataError(ErrorCode.UNIMPLEMENTED, `peer request ${kind} is not served`);
    }
  }

  // ---------------------------------------------------------------- cluster

  /** addMember adds a member with these peer URLs (as a learner or a voter) and answers it. */
  async addMember(peerUrls: readonly string[], isLearner: boolean, options: NodeCallOptions = {}): Promise<{ member: MemberRecord; members: MemberRecord[] }> {
    if (peerUrls.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid');
    const members = await this.memberOperation({ op: 'add', peerUrls, isLearner }, options);
    const id = memberIdFor(peerUrls, this.options.initialClusterToken);
    const member = members.find((candidate) => candidate.id === id);
    assert(member !== undefined, 'an added member is in the list');
    return { member, members };
  }

  /** removeMember removes a member. */
  async removeMember(id: number, options: NodeCallOptions = {}): Promise<MemberRecord[]> {
    return this.memberOperation({ op: 'remove', id }, options);
  }

  /** promoteMember makes a caught-up learner a voter. */
  async promoteMember(id: number, options: NodeCallOptions = {}): Promise<MemberRecord[]> {
    return this.memberOperation({ op: 'promote', id }, options);
  }

  private async memberOperation(operation: MemberOperation, options: NodeCallOptions): Promise<MemberRecord[]> {
    this.checkServing();
    const deadline = now() + (options.timeoutMs ?? REQUEST_TIMEOUT_MS);
    await this.waitForLeader({ ...options, timeoutMs: Math.max(1, deadline - now()) });
    if (this.raftRole() !== 'leader') {
      const reply = await this.transport.request(this.raftLeader(), 'member', packr.pack(operation), {
        timeoutMs: Math.max(1, deadline - now()),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
      });
      return (packr.unpack(reply) as { members: MemberRecord[] }).members;
    }
    const change = this.confChangeFor(operation);
    // Only one change may be pending: wait (bounded by the deadline) for the previous one.
    for (let attempt = 0; attempt < 1_000; attempt += 1) {
      try {
        const { index, term } = this.raft.proposeConfChange(change);
        this.scheduleLoop();
        await new Promise<void>((resolve, reject) => this.confWaiters.set(index, { index, term, resolve, reject }));
        return this.membership.list();
      } catch (error) {
        if (!isStrataError(error, ErrorCode.CONF_CHANGE_REFUSED) || now() > deadline || !/not yet applied/.test(error.message)) throw error;
        await new Promise((resolve) => setTimeout(resolve, this.options.heartbeatIntervalMs));
      }
    }
    throw new StrataError(ErrorCode.TIMEOUT, 'etcdserver: request timed out');
  }

  private confChangeFor(operation: MemberOperation): ConfChange {
    switch (operation.op) {
      case 'add': {
        for (const url of operation.peerUrls) {
          if (this.membership.findByPeerUrl(url) !== undefined) throw new StrataError(ErrorCode.PEER_URL_EXISTS, 'etcdserver: Peer URLs already exists');
        }
        const id = memberIdFor(operation.peerUrls, this.options.initialClusterToken);
        if (this.membership.isRemoved(id)) {
          throw new StrataError(ErrorCode.CONF_CHANGE_REFUSED, `member ${id.toString(16)} was removed before and cannot return under the same peer URLs; use other URLs`);
        }
        if (operation.isLearner && this.membership.list().filter((member) => member.isLearner).length >= LEARNERS_MAX) {
          throw new StrataError(ErrorCode.TOO_MANY_LEARNERS, 'etcdserver: too many learner members in cluster');
        }
        return {
          transition: 'auto',
          changes: [{ type: operation.isLearner ? 'addLearner' : 'addVoter', nodeId: id }],
          context: encodeMemberContext({ peerUrls: operation.peerUrls, name: '' }),
        };
      }
      case 'remove': {
        if (this.membership.get(operation.id) === undefined) throw new StrataError(ErrorCode.MEMBER_NOT_FOUND, 'etcdserver: member not found');
        return { transition: 'auto', changes: [{ type: 'removeNode', nodeId: operation.id }] };
      }
      case 'promote': {
        const member = this.membership.get(operation.id);
        if (member === undefined) throw new StrataError(ErrorCode.MEMBER_NOT_FOUND, 'etcdserver: member not found');
        if (!member.isLearner) throw new StrataError(ErrorCode.MEMBER_NOT_LEARNER, 'etcdserver: can only promote a learner member');
        const status = this.raft.status();
        const learnerMatch = status.progress.get(operation.id)?.match ?? 0;
        const leaderMatch = status.progress.get(this.memberId)?.match ?? status.lastIndex;
        if (learnerMatch < leaderMatch * LEARNER_READY_FRACTION) {
          throw new StrataError(ErrorCode.LEARNER_NOT_READY, 'etcdserver: can only promote a learner member which is in sync with leader', {
            details: { learnerMatch, leaderMatch },
          });
        }
        return { transition: 'auto', changes: [{ type: 'addVoter', nodeId: operation.id }], context: encodeMemberContext({ peerUrls: member.peerUrls, name: member.name }) };
      }
      case 'removed':
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'not a configuration change');
    }
  }

  /**
   * transferLeadership hands leadership to `targetId` (this member must lead; the target
   * must be a voter) and resolves once the target leads. Proposals that arrive meanwhile
   * are held and passed on to the new leader, so none fails.
   */
  async transferLeadership(targetId: number, options: NodeCallOptions = {}): Promise<void> {
    this.checkServing();
    if (this.raftRole() !== 'leader') throw new StrataError(ErrorCode.NOT_LEADER, 'etcdserver: not leader', { details: { leaderId: this.raftLeader() } });
    const status = this.raft.status();
    if (!status.config.voters.includes(targetId)) throw new StrataError(ErrorCode.BAD_LEADER_TRANSFEREE, 'etcdserver: bad leader transferee');
    if (targetId === this.memberId) return;
    this.raft.transferLeader(targetId);
    this.sendEagerMessages();
    this.scheduleLoop();
    const deadline = now() + (options.timeoutMs ?? 2 * this.options.electionTimeoutMs);
    for (let attempt = 0; attempt < 100_000; attempt += 1) {
      const leader = this.raftLeader();
      if (leader === targetId) return;
      if (options.signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'etcdserver: request canceled');
      if (now() > deadline) break;
      await this.leaderNoticeOrTimeout(Math.min(this.options.heartbeatIntervalMs, Math.max(1, deadline - now())));
    }
    throw new StrataError(ErrorCode.TIMEOUT, 'etcdserver: request timed out, leader transfer took too long');
  }

  private async publishAttributes(): Promise<void> {
    const command = encodeNodeCommand({ type: 'publish', memberId: this.memberId, name: this.name, clientUrls: [...this.options.advertiseClientUrls] });
    for (let attempt = 0; attempt < PUBLISH_ATTEMPTS_MAX && !this.stopped && this.stopping === undefined; attempt += 1) {
      try {
        await this.waitForLeader({ timeoutMs: this.options.electionTimeoutMs * 5 });
        const outcome = await this.submit(command, { timeoutMs: this.options.electionTimeoutMs * 5 });
        if (outcome.error === undefined) {
          this.logger.info('published member attributes', { name: this.name });
          return;
        }
      } catch (error) {
        if (isStrataError(error, ErrorCode.STOPPED) || isStrataError(error, ErrorCode.MEMBER_REMOVED)) return;
        this.logger.debug('publishing member attributes failed; retrying', { reason: String(error) });
      }
      await new Promise((resolve) => setTimeout(resolve, this.options.heartbeatIntervalMs * Math.min(10, attempt + 1)));
    }
  }
}

// A forwarded batch ('propose' peer request) is a msgpack array of [hops, command data]; the
// reply is an array of outcomes in the same order: the response (absent for a command that
// answers nothing) or the error that refused or failed it.
type ForwardedProposal = [hops: number, data: Uint8Array];
type ForwardOutcome = { readonly response?: KvResponse | undefined } | { readonly error: WireError };
interface WireError {
  readonly code: string;
  readonly message: string;
}

function decodeForwardedProposals(body: Uint8Array): ForwardedProposal[] {
  const value: unknown = packr.unpack(body);
  const bad = (what: string): never => {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `forwarded proposals: ${what}`);
  };
  if (!Array.isArray(value) || value.length === 0 || value.length > FORWARD_BATCH_MAX) return bad(`expected 1..${FORWARD_BATCH_MAX} proposals`);
  for (const [position, item] of value.entries()) {
    if (!Array.isArray(item) || item.length !== 2 || !Number.isInteger(item[0]) || !(item[1] instanceof Uint8Array)) bad(`proposal ${position} is not [hops, data]`);
  }
  return value as ForwardedProposal[];
}

function decodeForwardOutcomes(reply: Uint8Array, count: number): ForwardOutcome[] {
  const value: unknown = packr.unpack(reply);
  if (!Array.isArray(value) || value.length !== count) {
    throw new StrataError(ErrorCode.UNAVAILABLE, `the leader answered ${Array.isArray(value) ? value.length : 'no list of'} outcomes for ${count} forwarded proposals`);
  }
  return value as ForwardOutcome[];
}

function wireError(error: StrataError): WireError {
  return { code: error.code, message: error.message };
}

function outcomeError(wire: WireError): StrataError {
  return new StrataError(isErrorCode(wire.code) ? wire.code : ErrorCode.UNAVAILABLE, wire.message);
}

function checkOptions(options: RaftNodeOptions): void {
  const fail = (message: string): never => {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, message);
  };
  if (options.name === '') fail('name must not be empty');
  if (options.advertisePeerUrls.length === 0) fail('at least one advertised peer URL is needed');
  if (!(options.heartbeatIntervalMs > 0)) fail(`heartbeat interval must be positive, got ${options.heartbeatIntervalMs}`);
  if (options.electionTimeoutMs < 5 * options.heartbeatIntervalMs) {
    fail(`--election-timeout[${options.electionTimeoutMs}ms] should be at least as 5 times as --heartbeat-interval[${options.heartbeatIntervalMs}ms]`);
  }
  if (options.initialClusterState === 'new' && options.initialCluster.length === 0) fail('a new cluster needs --initial-cluster');
}

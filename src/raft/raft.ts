// The Raft state machine: elections (with pre-vote and check-quorum), log replication with
// flow control, commitment, ReadIndex and lease reads, membership changes and leader
// transfer. It is pure: no I/O, no clock, no randomness except the seeded source in its
// config. Inputs are tick(), step() and the propose/read/transfer calls; the output is a
// Ready, acknowledged by advance(). Section numbers cite the Raft paper (§) and Diego
// Ongaro's thesis ("thesis §").

import { assert, assertNever } from '../util/assert.ts';
import { ErrorCode, StrataError, isStrataError } from '../util/errors.ts';
import type { RandomSource } from '../util/random.ts';
import {
  computeConfChange,
  encodeConfChange,
  installConfChange,
  isLeaveJoint,
  restoreConfState,
} from './conf-change.ts';
import { RaftLog } from './log.ts';
import type { Progress, ProgressState } from './progress.ts';
import { jointVoteResult } from './quorum.ts';
import { ReadOnlyQueue } from './read-only.ts';
import type { LogStorage } from './storage.ts';
import { ProgressTracker, sortedIds } from './tracker.ts';
import type {
  AppendMessage,
  AppendResponseMessage,
  ConfChange,
  ConfState,
  Entry,
  HardState,
  HeartbeatMessage,
  HeartbeatResponseMessage,
  Index,
  Logger,
  Message,
  NodeId,
  ReadIndexMessage,
  ReadIndexResponseMessage,
  ReadState,
  Ready,
  Role,
  Snapshot,
  SnapshotMessage,
  SoftState,
  Term,
  VoteMessage,
  VoteResponseMessage,
} from './types.ts';
import { EntryType, NO_NODE, SILENT_LOGGER, isHardStateEqual } from './types.ts';

/** ReadOnlyOption chooses how linearizable reads confirm leadership. */
export type ReadOnlyOption = 'safe' | 'leaseBased';

/** RaftConfig configures one Raft node. */
export interface RaftConfig {
  readonly id: NodeId;
  readonly storage: LogStorage;
  readonly random: RandomSource;
  /** Ticks without hearing from a leader before campaigning (randomized in [n, 2n)). */
  readonly electionTicks: number;
  /** Ticks between a leader's heartbeats. */
  readonly heartbeatTicks: number;
  /** Bootstrap voters, used only when storage holds no configuration. */
  readonly voters?: readonly NodeId[];
  /** Bootstrap learners, used only when storage holds no configuration. */
  readonly learners?: readonly NodeId[];
  /** Run a pre-election first so a rejoining node does not disrupt a healthy leader (thesis §9.6). */
  readonly preVote: boolean;
  /** A leader steps down when it has not heard from a quorum for an election timeout (thesis §6.2). */
  readonly checkQuorum: boolean;
  readonly readOnlyOption: ReadOnlyOption;
  /** Appends in flight to one follower at most. */
  readonly maxInflightMessages: number;
  /** Bytes in flight to one follower at most. */
  readonly maxInflightBytes: number;
  /** Entry bytes in one append message at most (at least one entry is always sent). */
  readonly maxEntriesBytesPerMessage: number;
  /** Uncommitted payload bytes a leader holds at most; more proposals are refused. */
  readonly maxUncommittedBytes: number;
  /** Committed entry bytes handed out in one Ready at most. */
  readonly maxCommittedBytesPerReady: number;
  /** On restart: the last index the state machine has already applied. */
  readonly applied?: Index;
  readonly logger?: Logger;
}

/** RAFT_CONFIG_DEFAULTS are the tuning values stratakv runs with unless told otherwise. */
export const RAFT_CONFIG_DEFAULTS = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  readOnlyOption: 'safe' as ReadOnlyOption,
  maxInflightMessages: 256,
  maxInflightBytes: 32 * 1024 * 1024,
  maxEntriesBytesPerMessage: 1024 * 1024,
  maxUncommittedBytes: 64 * 1024 * 1024,
  maxCommittedBytesPerReady: 16 * 1024 * 1024,
} as const;

/** ProgressStatus is what status() reports of one follower. */
export interface ProgressStatus {
  readonly match: Index;
  readonly next: Index;
  readonly state: ProgressState;
  readonly isLearner: boolean;
  readonly recentActive: boolean;
}

/** RaftStatus is a snapshot of a node's state for observers and tests. */
export interface RaftStatus {
  readonly id: NodeId;
  readonly term: Term;
  readonly vote: NodeId;
  readonly commit: Index;
  readonly applied: Index;
  readonly leaderId: NodeId;
  readonly role: Role;
  readonly lastIndex: Index;
  readonly leadTransferee: NodeId;
  readonly config: ConfState;
  readonly progress: ReadonlyMap<NodeId, ProgressStatus>;
}

type CampaignType = 'preElection' | 'election' | 'transfer';

/** PENDING_READ_INDEX_REQUESTS_MAX bounds the reads a new leader holds until it commits in its term. */
export const PENDING_READ_INDEX_REQUESTS_MAX = 65_536;

// Messages that must not leave before the Ready that produced them is persisted: they
// promise something about this node's durable state (its vote, its term, its log).
function mustWaitForPersist(message: Message): boolean {
  switch (message.type) {
    // A vote request promises nothing durable: the candidate counts its own vote only once
    // its term and vote are persisted (advance), so it cannot win on an unpersisted vote, and
    // a crash before then leaves nothing that acted on it. Sending the requests while the
    // candidate's own fsync runs takes one fsync off an election's (and a transfer's) path,
    // as etcd-io/raft does.
    case 'append':
    case 'heartbeat':
    case 'snapshot':
    case 'timeoutNow':
    case 'readIndex':
    case 'readIndexResponse':
    case 'vote':
    case 'preVote':
      return false;
    case 'appendResponse':
    case 'voteResponse':
    case 'preVoteResponse':
    case 'heartbeatResponse':
      return true;
    default:
      return assertNever(message, 'message');
  }
}

function checkConfig(config: RaftConfig): void {
  const fail = (what: string): never => {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `raft config: ${what}`);
  };
  if (!Number.isSafeInteger(config.id) || config.id <= 0) fail(`id must be a positive integer, got ${config.id}`);
  if (!(config.heartbeatTicks >= 1)) fail('heartbeatTicks must be >= 1');
  if (!(config.electionTicks > config.heartbeatTicks)) fail('electionTicks must be greater than heartbeatTicks');
  if (!(config.maxInflightMessages >= 1)) fail('maxInflightMessages must be >= 1');
  if (!(config.maxInflightBytes >= 1)) fail('maxInflightBytes must be >= 1');
  if (!(config.maxEntriesBytesPerMessage >= 1)) fail('maxEntriesBytesPerMessage must be >= 1');
  if (!(config.maxUncommittedBytes >= 1)) fail('maxUncommittedBytes must be >= 1');
  if (!(config.maxCommittedBytesPerReady >= 1)) fail('maxCommittedBytesPerReady must be >= 1');
  // A lease is only sound when a leader that lost its quorum is sure to step down.
  if (config.readOnlyOption === 'leaseBased' && !config.checkQuorum) fail('leaseBased reads require checkQuorum');
}

/** Raft is one node's Raft state machine. */
export class Raft {
  readonly id: NodeId;
  private readonly config: RaftConfig;
  private readonly random: RandomSource;
  private readonly logger: Logger;
  private readonly raftLog: RaftLog;
  private readonly tracker: ProgressTracker;
  private readonly readOnly = new ReadOnlyQueue();

  private term: Term = 0;
  private vote: NodeId = NO_NODE;
  private role: Role = 'follower';
  private leaderId: NodeId = NO_NODE;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** leadTransferee is the node leadership is being handed to, or NO_NODE. */
  private leadTransferee: NodeId = NO_NODE;
  // Invariant: a leader proposes no conf change while pendingConfIndex > applied.
  private pendingConfIndex: Index = 0;
  private uncommittedBytes = 0;
  /** Reads that arrived before this leader committed an entry of its term (thesis §6.4). */
  private pendingReadIndexRequests: { from: NodeId; context: Uint8Array }[] = [];

  /**
   * campaignWhenApplied records a TimeoutNow that arrived while committed conf changes were
   * still unapplied: the transfer campaign starts as soon as they are applied, instead of
   * waiting a whole election timeout.
   */
  private campaignWhenApplied = false;
  /** Indexes of ConfChange entries handed out in Readies and not yet passed to applyConfChange. */
  private confChangesToApply: Index[] = [];
  /** handOver is set while a leader that applied its own removal hands leadership over. */
  private handOver: { readonly removalIndex: Index; readonly acknowledged: Set<NodeId>; electionsWaited: number } | undefined;
  /** bootstrapIndex is the last bootstrap entry this node wrote itself (0 if it joined or restarted). */
  private bootstrapIndex: Index = 0;
  /** configIndex is the log index the configuration reflects: the last conf change applied, or the snapshot restored. */
  private configIndex: Index = 0;

  private messages: Message[] = [];
  private readStates: ReadState[] = [];
  private previousSoftState: SoftState;
  private previousHardState: HardState;
  private outstandingReady: Ready | undefined;
  /** The term whose campaign (term and self-vote) the outstanding Ready persists, or 0. */
  private outstandingReadyCampaignTerm: Term = 0;

  constructor(config: RaftConfig) {
    checkConfig(config);
    this.id = config.id;
    this.config = config;
    this.random = config.random;
    this.logger = config.logger ?? SILENT_LOGGER;
    this.raftLog = new RaftLog(config.storage);
    this.tracker = new ProgressTracker(config.maxInflightMessages, config.maxInflightBytes);

    const { hardState, confState } = config.storage.initialState();
    const storageHasConfig = confState.voters.length > 0 || confState.learners.length > 0;
    const storageIsEmpty = !storageHasConfig && config.storage.lastIndex() === 0 && hardState.term === 0;
    if (storageHasConfig) {
      installConfChange(this.tracker, restoreConfState(confState), this.raftLog.lastIndex(), true);
      this.configIndex = config.storage.snapshot().metadata.index;
    }
    // Otherwise the configuration comes from conf change entries as they are applied.
    if (hardState.term !== 0 || hardState.vote !== NO_NODE || hardState.commit !== 0) {
      const first = this.raftLog.firstIndex();
      const last = this.raftLog.lastIndex();
      if (hardState.commit > last) {
        throw new StrataError(ErrorCode.CORRUPTION, `hard state commit ${hardState.commit} is past the last log index ${last}`, {
          details: { commit: hardState.commit, lastIndex: last },
        });
      }
      // A snapshot is committed by definition, so commit is at least its index: the log's
      // start, and the latest snapshot recorded in storage (which may be later than the
      // start when the log keeps a catch-up tail before it). The hard state's commit may
      // lag behind both, since a commit-only change is not synced.
      this.raftLog.committed = Math.max(hardState.commit, first - 1, config.storage.snapshot().metadata.index);
      this.term = hardState.term;
      this.vote = hardState.vote;
    }
    // The configuration restored above is the snapshot's, so the entries at or below the
    // snapshot's index (a catch-up tail may keep them in the log) are never handed out to
    // apply again: the driver restores its state machine from the snapshot instead.
    const appliedAtStart = Math.max(config.applied ?? 0, config.storage.snapshot().metadata.index);
    if (appliedAtStart > 0) this.raftLog.appliedTo(Math.min(appliedAtStart, this.raftLog.committed));
    this.becomeFollower(this.term, NO_NODE);
    this.previousSoftState = this.softState();
    this.previousHardState = this.hardState();
    if (storageIsEmpty && ((config.voters?.length ?? 0) > 0 || (config.learners?.length ?? 0) > 0)) {
      this.bootstrap(config.voters ?? [], config.learners ?? []);
    }
    this.logger.info('raft node started', {
      id: this.id,
      term: this.term,
      commit: this.raftLog.committed,
      applied: this.raftLog.applied,
      lastIndex: this.raftLog.lastIndex(),
      voters: sortedIds(this.tracker.config.voters.incoming),
    });
  }

  /**
   * bootstrap starts a brand-new cluster member (after etcd-io/raft's RawNode.Bootstrap):
   * one committed single-node ConfChange entry per initial member at term 1, applied to the
   * configuration at once. Because the initial membership lives in the log, a node that
   * joins later learns it from the log (or a snapshot) like every other change. The driver
   * persists these entries with the first Ready and applies them again, harmlessly.
   */
  private bootstrap(voters: readonly NodeId[], learners: readonly NodeId[]): void {
    const changes: ConfChange[] = [
      ...voters.map((nodeId): ConfChange => ({ transition: 'auto', changes: [{ type: 'addVoter', nodeId }] })),
      ...learners.map((nodeId): ConfChange => ({ transition: 'auto', changes: [{ type: 'addLearner', nodeId }] })),
    ];
    const entries = changes.map((change, offset): Entry => ({ term: 1, index: offset + 1, type: EntryType.ConfChange, data: encodeConfChange(change) }));
    this.becomeFollower(1, NO_NODE);
    this.raftLog.append(entries);
    this.raftLog.committed = entries.length;
    for (const change of changes) installConfChange(this.tracker, computeConfChange(this.tracker, change), this.raftLog.lastIndex(), false);
    // The driver applies these entries again from the first Ready; they are already in effect.
    this.configIndex = entries.length;
    this.bootstrapIndex = entries.length;
  }

  // ---------------------------------------------------------------- inputs

  /** tick advances logical time by one tick. */
  tick(): void {
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  /** campaign starts an election now, as if the election timeout had passed. */
  campaign(): void {
    this.hup(this.config.preVote ? 'preElection' : 'election');
  }

  /** propose appends one entry of application data; leader only. */
  propose(data: Uint8Array): { index: Index; term: Term } {
    const { firstIndex, term } = this.proposeBatch([data]);
    return { index: firstIndex, term };
  }

  /** proposeBatch appends several entries at once; leader only. */
  proposeBatch(data: readonly Uint8Array[]): { firstIndex: Index; lastIndex: Index; term: Term } {
    assert(data.length > 0, 'proposeBatch needs at least one entry');
    this.checkCanPropose();
    const entries = data.map((payload): Entry => ({ term: 0, index: 0, type: EntryType.Normal, data: payload }));
    const appended = this.appendEntries(entries);
    this.broadcastAppend();
    return { firstIndex: appended.firstIndex, lastIndex: appended.lastIndex, term: this.term };
  }

  /**
   * proposeConfChange proposes a membership change; leader only. Only one change may be
   * pending (proposed and not yet applied) at a time (thesis §4.1).
   */
  proposeConfChange(change: ConfChange): { index: Index; term: Term } {
    this.checkCanPropose();
    if (this.pendingConfIndex > this.raftLog.applied) {
      throw new StrataError(
        ErrorCode.CONF_CHANGE_PENDING,
        `a configuration change at index ${this.pendingConfIndex} is not yet applied (applied ${this.raftLog.applied})`,
      );
    }
    const joint = this.tracker.isJoint();
    if (isLeaveJoint(change)) {
      if (!joint) throw new StrataError(ErrorCode.CONF_CHANGE_REFUSED, 'not in a joint configuration: nothing to leave');
    } else {
      if (joint) throw new StrataError(ErrorCode.CONF_CHANGE_REFUSED, 'in a joint configuration: leave it first');
      // Validate against the current configuration, which is the one it will apply to:
      // no other change is pending, so nothing else changes it first.
      computeConfChange(this.tracker, change);
    }
    const entry: Entry = { term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(change) };
    const { firstIndex } = this.appendEntries([entry]);
    this.pendingConfIndex = firstIndex;
    this.broadcastAppend();
    return { index: firstIndex, term: this.term };
  }

  /**
   * applyConfChange applies a committed ConfChange entry; the driver calls it in apply
   * order. A change that is invalid in the current configuration is ignored (every node
   * ignores it alike, since all apply the same entries to the same configuration).
   */
  applyConfChange(change: ConfChange): ConfState {
    const index = this.confChangesToApply.shift();
    assert(index !== undefined, 'applyConfChange called for a conf change no Ready handed out');
    // Bootstrap entries took effect when they were written; applying them again changes nothing.
    if (index <= this.bootstrapIndex) return this.tracker.confState();
    // A snapshot is never installed while committed entries are being applied (see
    // handleSnapshot), so conf changes only move the configuration forward.
    assert(index > this.configIndex, `conf change at ${index} is not after the configuration at ${this.configIndex}`);
    this.configIndex = index;
    let result;
    try {
      result = computeConfChange(this.tracker, change);
    } catch (error) {
      if (!isStrataError(error, ErrorCode.CONF_CHANGE_REFUSED)) throw error;
      this.logger.warn('ignoring an invalid committed configuration change', { reason: error.message });
      return this.tracker.confState();
    }
    installConfChange(this.tracker, result, this.raftLog.lastIndex(), false);
    this.afterConfigSwitch();
    return this.tracker.confState();
  }

  /** readIndex asks for a linearizable read point; the answer arrives in Ready.readStates. */
  readIndex(context: Uint8Array): void {
    if (this.role === 'leader' && this.handOver !== undefined) {
      throw new StrataError(ErrorCode.NOT_LEADER, `node ${this.id} was removed and is handing leadership over`, {
        details: { leaderId: NO_NODE },
      });
    }
    if (this.role === 'leader') {
      this.handleReadIndex(this.id, context);
      return;
    }
    if (this.leaderId === NO_NODE) {
      throw new StrataError(ErrorCode.NOT_LEADER, 'no leader is known: cannot serve a linearizable read', {
        details: { leaderId: NO_NODE },
      });
    }
    const forward: ReadIndexMessage = { type: 'readIndex', from: this.id, to: this.leaderId, term: this.term, context };
    this.send(forward);
  }

  /**
   * transferLeader hands leadership to a caught-up voter (thesis §3.10): the leader stops
   * taking proposals, brings the target up to date and sends it TimeoutNow.
   */
  transferLeader(to: NodeId): void {
    if (this.role !== 'leader') {
      throw new StrataError(ErrorCode.NOT_LEADER, 'only the leader can transfer leadership', {
        details: { leaderId: this.leaderId },
      });
    }
    const progress = this.tracker.progress.get(to);
    if (progress === undefined || !this.tracker.isVoter(to)) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `node ${to} is not a voter and cannot become leader`);
    }
    if (progress.isLearner) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `node ${to} is a learner and cannot become leader`);
    if (to === this.id) return;
    if (this.leadTransferee !== NO_NODE) {
      if (this.leadTransferee === to) return;
      this.abortLeaderTransfer();
    }
    // The transfer must finish within one election timeout, counted from now.
    this.electionElapsed = 0;
    this.leadTransferee = to;
    this.logger.info('leader transfer started', { from: this.id, to, term: this.term });
    if (progress.match === this.raftLog.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to);
  }

  /** reportUnreachable tells the leader a message to `peer` could not be delivered. */
  reportUnreachable(peer: NodeId): void {
    if (this.role !== 'leader') return;
    const progress = this.tracker.progress.get(peer);
    // An append may have been lost: stop pipelining and probe again.
    if (progress !== undefined && progress.state === 'replicate') progress.becomeProbe();
  }

  /** reportSnapshot tells the leader whether a snapshot reached `peer`. */
  reportSnapshot(peer: NodeId, ok: boolean): void {
    if (this.role !== 'leader') return;
    const progress = this.tracker.progress.get(peer);
    if (progress === undefined || progress.state !== 'snapshot') return;
    if (!ok) progress.pendingSnapshot = 0;
    progress.becomeProbe();
    // After a snapshot, wait for the follower's answer (or a heartbeat) before appending.
    progress.msgAppFlowPaused = true;
  }

  /** step processes a message from a peer. */
  step(message: Message): void {
    assert(message.to === this.id, `message for ${message.to} stepped into ${this.id}`);
    if (message.term > this.term) {
      if (!this.acceptHigherTerm(message)) return;
    } else if (message.term < this.term) {
      this.handleStaleTerm(message);
      return;
    }
    switch (message.type) {
      case 'vote':
      case 'preVote':
        this.handleVoteRequest(message);
        return;
      case 'voteResponse':
      case 'preVoteResponse':
        this.learnCommitFromRefusal(message);
        break;
      default:
        break;
    }
    switch (this.role) {
      case 'leader':
        this.stepLeader(message);
        break;
      case 'candidate':
      case 'preCandidate':
        this.stepCandidate(message);
        break;
      case 'follower':
        this.stepFollower(message);
        break;
      default:
        assertNever(this.role, 'role');
    }
  }

  // ---------------------------------------------------------------- Ready

  /**
   * takeMessages hands out, between Readys or while one is outstanding, the queued messages
   * of the kind Ready.messages carries: those that never depend on this node's unpersisted
   * state. A driver that sends them at once, instead of with the next Ready, lets a
   * TimeoutNow, a vote request or a commit notice leave while the current Ready's fsync
   * runs. Messages that must wait for persistence stay queued for the next Ready.
   */
  takeMessages(): Message[] {
    if (this.messages.length === 0) return [];
    const immediate: Message[] = [];
    const waiting: Message[] = [];
    for (const message of this.messages) (mustWaitForPersist(message) ? waiting : immediate).push(message);
    this.messages = waiting;
    return immediate;
  }

  /** hasReady tells whether ready() has anything to hand out (false while a Ready is outstanding). */
  hasReady(): boolean {
    if (this.outstandingReady !== undefined) return false;
    const soft = this.softState();
    if (soft.leaderId !== this.previousSoftState.leaderId || soft.role !== this.previousSoftState.role) return true;
    if (!isHardStateEqual(this.hardState(), this.previousHardState)) return true;
    if (this.raftLog.unstable.snapshot !== undefined) return true;
    if (this.raftLog.unstable.entries.length > 0) return true;
    if (this.messages.length > 0 || this.readStates.length > 0) return true;
    return this.raftLog.hasNextCommittedEntries();
  }

  /** ready hands out what the driver must persist, send and apply. Call advance() before the next. */
  ready(): Ready {
    assert(this.outstandingReady === undefined, 'ready() called again before advance()');
    const soft = this.softState();
    const hard = this.hardState();
    const softChanged = soft.leaderId !== this.previousSoftState.leaderId || soft.role !== this.previousSoftState.role;
    const hardChanged = !isHardStateEqual(hard, this.previousHardState);
    const entries = [...this.raftLog.unstable.entries];
    const snapshot = this.raftLog.unstable.snapshot;
    const committedEntries = snapshot === undefined ? this.raftLog.nextCommittedEntries(this.config.maxCommittedBytesPerReady) : [];
    for (const entry of committedEntries) if (entry.type === EntryType.ConfChange) this.confChangesToApply.push(entry.index);
    const immediate: Message[] = [];
    const afterPersist: Message[] = [];
    for (const message of this.messages) (mustWaitForPersist(message) ? afterPersist : immediate).push(message);
    const ready: Ready = {
      softState: softChanged ? soft : undefined,
      hardState: hardChanged ? hard : undefined,
      entries,
      snapshot,
      committedEntries,
      messages: immediate,
      messagesAfterPersist: afterPersist,
      readStates: this.readStates,
      mustSync:
        entries.length > 0 || snapshot !== undefined || hard.term !== this.previousHardState.term || hard.vote !== this.previousHardState.vote,
    };
    this.messages = [];
    this.readStates = [];
    this.previousSoftState = soft;
    this.previousHardState = hard;
    this.outstandingReady = ready;
    this.outstandingReadyCampaignTerm = this.role === 'candidate' && hard.vote === this.id ? hard.term : 0;
    return ready;
  }

  /** advance acknowledges that a Ready was persisted, sent and applied. */
  advance(ready: Ready): void {
    assert(this.outstandingReady === ready, 'advance() must acknowledge the outstanding Ready');
    assert(this.confChangesToApply.length === 0, 'every committed ConfChange entry must be passed to applyConfChange() before advance()');
    this.outstandingReady = undefined;
    if (ready.snapshot !== undefined) {
      const snapshotIndex = ready.snapshot.metadata.index;
      this.raftLog.stableSnapTo(snapshotIndex);
      if (snapshotIndex > this.raftLog.applied) this.raftLog.appliedTo(snapshotIndex);
    }
    const lastEntry = ready.entries[ready.entries.length - 1];
    if (lastEntry !== undefined) this.raftLog.stableTo(lastEntry.index, lastEntry.term);
    const lastCommitted = ready.committedEntries[ready.committedEntries.length - 1];
    if (lastCommitted !== undefined) {
      if (lastCommitted.index > this.raftLog.applied) this.raftLog.appliedTo(lastCommitted.index);
      this.reduceUncommittedBytes(ready.committedEntries);
    }
    if (this.outstandingReadyCampaignTerm !== 0 && this.role === 'candidate' && this.term === this.outstandingReadyCampaignTerm) {
      // Our term and vote are durable now: the vote for ourselves counts.
      this.outstandingReadyCampaignTerm = 0;
      this.tracker.recordVote(this.id, true);
      this.tallyAndAct();
    }
    this.outstandingReadyCampaignTerm = 0;
    if (this.campaignWhenApplied && this.role === 'follower' && !this.hasUnappliedConfChanges()) {
      this.campaignWhenApplied = false;
      this.hup('transfer');
    }
    if (this.role !== 'leader') return;
    // The leader counts itself towards a quorum only for what it has persisted (thesis §10.2.1).
    const self = this.tracker.progress.get(this.id);
    if (self !== undefined && self.maybeUpdate(this.lastStableIndex()) && this.maybeCommit()) {
      this.onCommitAdvanced();
    }
    this.maybeAutoLeaveJoint();
  }

  // ---------------------------------------------------------------- observation

  /** status reports the node's state. */
  status(): RaftStatus {
    const progress = new Map<NodeId, ProgressStatus>();
    if (this.role === 'leader') {
      for (const [id, pr] of this.tracker.progress) {
        progress.set(id, { match: pr.match, next: pr.next, state: pr.state, isLearner: pr.isLearner, recentActive: pr.recentActive });
      }
    }
    return {
      id: this.id,
      term: this.term,
      vote: this.vote,
      commit: this.raftLog.committed,
      applied: this.raftLog.applied,
      leaderId: this.leaderId,
      role: this.role,
      lastIndex: this.raftLog.lastIndex(),
      leadTransferee: this.leadTransferee,
      config: this.tracker.confState(),
      progress,
    };
  }

  /** currentRole is the node's role now (cheaper than status() on hot paths). */
  currentRole(): Role {
    return this.role;
  }

  /** currentLeader is the leader this node knows now, or NO_NODE (cheaper than status()). */
  currentLeader(): NodeId {
    return this.leaderId;
  }

  /** currentTerm is the node's term now (cheaper than status()). */
  currentTerm(): Term {
    return this.term;
  }

  /** logTermAt is the term of the entry at index in this node's log, or undefined. */
  logTermAt(index: Index): Term | undefined {
    return this.raftLog.term(index);
  }

  private softState(): SoftState {
    return { leaderId: this.leaderId, role: this.role };
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  // ---------------------------------------------------------------- roles

  private resetForTerm(term: Term): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NO_NODE;
    }
    this.leaderId = NO_NODE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.config.electionTicks + this.random.intBelow(this.config.electionTicks);
    this.abortLeaderTransfer();
    this.tracker.resetVotes();
    const lastIndex = this.raftLog.lastIndex();
    for (const [id, progress] of this.tracker.progress) {
      progress.becomeProbe();
      progress.match = id === this.id ? this.lastStableIndex() : 0;
      progress.next = lastIndex + 1;
      progress.recentActive = id === this.id;
    }
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.campaignWhenApplied = false;
    this.handOver = undefined;
    this.readOnly.clear();
    this.pendingReadIndexRequests = [];
  }

  private becomeFollower(term: Term, leaderId: NodeId): void {
    this.resetForTerm(term);
    this.role = 'follower';
    this.leaderId = leaderId;
  }

  private becomePreCandidate(): void {
    assert(this.role !== 'leader', 'a leader cannot become a pre-candidate');
    // A pre-election changes neither term nor vote (thesis §9.6).
    this.tracker.resetVotes();
    this.leaderId = NO_NODE;
    this.role = 'preCandidate';
  }

  private becomeCandidate(): void {
    assert(this.role !== 'leader', 'a leader cannot become a candidate');
    this.resetForTerm(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(): void {
    assert(this.role !== 'follower', 'a follower cannot become leader without an election');
    assert(this.raftLog.unstable.snapshot === undefined, 'a node with an unpersisted snapshot cannot lead');
    this.resetForTerm(this.term);
    this.leaderId = this.id;
    this.role = 'leader';
    const self = this.tracker.progress.get(this.id);
    assert(self !== undefined && this.tracker.isVoter(this.id), 'a leader is a voter of its configuration');
    self.becomeReplicate();
    self.match = this.lastStableIndex();
    self.recentActive = true;
    // Entries of earlier terms may hold a conf change not yet applied: refuse new ones
    // until everything in the log is applied.
    this.pendingConfIndex = this.raftLog.lastIndex();
    // A new leader commits an entry of its own term before anything else (§5.4.2, §8).
    this.appendEntries([{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }]);
    this.logger.info('became leader', { id: this.id, term: this.term, lastIndex: this.raftLog.lastIndex() });
  }

  private promotable(): boolean {
    const self = this.tracker.progress.get(this.id);
    return self !== undefined && !self.isLearner && this.raftLog.unstable.snapshot === undefined;
  }

  private lastStableIndex(): Index {
    if (this.raftLog.unstable.snapshot !== undefined) return 0;
    return Math.min(this.raftLog.lastIndex(), this.raftLog.unstable.offset - 1);
  }

  // ---------------------------------------------------------------- time

  private tickElection(): void {
    this.electionElapsed += 1;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(this.config.preVote ? 'preElection' : 'election');
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed += 1;
    this.electionElapsed += 1;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum && !this.checkQuorumActive()) {
        this.logger.info('stepping down: no quorum heard from in an election timeout', { id: this.id, term: this.term });
        this.becomeFollower(this.term, NO_NODE);
        return;
      }
      // A transfer that did not finish within an election timeout is abandoned (a removed
      // leader's hand-over starts a new one: see maybeFinishHandOver).
      if (this.leadTransferee !== NO_NODE) this.abortLeaderTransfer();
      if (this.handOver !== undefined) {
        this.handOver.electionsWaited += 1;
        if (this.handOver.electionsWaited >= HAND_OVER_ELECTIONS_FOR_ALL && this.maybeFinishHandOver(true)) return;
      }
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  private checkQuorumActive(): boolean {
    const active = this.tracker.quorumActive();
    for (const [id, progress] of this.tracker.progress) progress.recentActive = id === this.id;
    return active;
  }

  // ---------------------------------------------------------------- elections

  private hup(type: CampaignType): void {
    if (this.role === 'leader') return;
    if (!this.promotable()) {
      this.logger.debug('not campaigning: not a voter', { id: this.id });
      return;
    }
    // Campaigning with an unapplied conf change could elect a leader under the wrong config.
    if (this.hasUnappliedConfChanges()) {
      this.logger.info('not campaigning yet: committed configuration changes are not yet applied', { id: this.id });
      if (type === 'transfer') this.campaignWhenApplied = true;
      return;
    }
    this.startCampaign(type);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.raftLog.committed <= this.raftLog.applied) return false;
    const lo = Math.max(this.raftLog.applied + 1, this.raftLog.firstIndex());
    const hi = this.raftLog.committed + 1;
    if (lo >= hi) return false;
    for (const entry of this.raftLog.slice(lo, hi, Number.POSITIVE_INFINITY)) {
      if (entry.type === EntryType.ConfChange) return true;
    }
    return false;
  }

  private startCampaign(type: CampaignType): void {
    let voteTerm: Term;
    let messageType: 'vote' | 'preVote';
    if (type === 'preElection') {
      this.becomePreCandidate();
      messageType = 'preVote';
      // A pre-vote asks about the term this node would campaign in, without entering it.
      voteTerm = this.term + 1;
    } else {
      this.becomeCandidate();
      messageType = 'vote';
      voteTerm = this.term;
    }
    // A pre-vote changes nothing durable, so it counts for itself at once. A real vote for
    // itself counts only once the new term and vote are persisted (see advance()): otherwise
    // the only voter of a configuration could win, crash before its term reached the disk,
    // restart in the old term and lead the same term a second time with a different log.
    if (type === 'preElection') {
      this.tracker.recordVote(this.id, true);
      if (this.tallyAndAct() !== 'pending') return;
    }
    const lastIndex = this.raftLog.lastIndex();
    const lastTerm = this.raftLog.lastTerm();
    for (const id of sortedIds(this.tracker.voterIds())) {
      if (id === this.id) continue;
      const request: VoteMessage = {
        type: messageType,
        from: this.id,
        to: id,
        term: voteTerm,
        logTerm: lastTerm,
        index: lastIndex,
        leaderTransfer: type === 'transfer',
      };
      this.send(request);
    }
  }

  // Counts votes; on a win moves to the next phase, on a loss back to follower.
  private tallyAndAct(): 'won' | 'lost' | 'pending' {
    const { result } = this.tracker.tallyVotes();
    if (result === 'won') {
      if (this.role === 'preCandidate') this.startCampaign('election');
      else {
        this.becomeLeader();
        this.broadcastAppend();
      }
    } else if (result === 'lost') {
      // A pre-candidate that lost stays in its term; a candidate that lost waits for a new timeout.
      this.becomeFollower(this.term, NO_NODE);
    }
    return result;
  }

  private acceptHigherTerm(message: Message): boolean {
    if (message.type === 'vote' || message.type === 'preVote') {
      // Lease check (thesis §4.2.3): while we hear from a leader, ignore candidates — unless
      // the leader itself asked for this election by sending TimeoutNow.
      const inLease = this.config.checkQuorum && this.leaderId !== NO_NODE && this.electionElapsed < this.config.electionTicks;
      if (inLease && !message.leaderTransfer) {
        this.logger.debug('ignoring vote request within leader lease', { id: this.id, from: message.from, term: message.term });
        return false;
      }
      // A pre-vote does not move our term: the sender has not entered it either.
      if (message.type === 'preVote') return true;
      this.becomeFollower(message.term, NO_NODE);
      return true;
    }
    if (message.type === 'preVoteResponse' && !message.reject) {
      // The granted pre-vote carries the term we would campaign in; we enter it on winning.
      return true;
    }
    const fromLeader = message.type === 'append' || message.type === 'heartbeat' || message.type === 'snapshot';
    this.becomeFollower(message.term, fromLeader ? message.from : NO_NODE);
    return true;
  }

  private handleStaleTerm(message: Message): void {
    if (message.type === 'heartbeat' || message.type === 'append') {
      // Tell a stale leader our term (§5.1). It still counts us as a member, or it would not
      // be sending to us, so it needs to know: neither its vote requests nor ours might
      // otherwise ever reach the other (under pre-vote or the lease they are ignored, and a
      // member far behind may not even have the leader in its configuration).
      this.send({ type: 'appendResponse', from: this.id, to: message.from, term: this.term, index: 0, reject: false, rejectHint: 0, logTerm: 0 });
    } else if (message.type === 'preVote' || message.type === 'vote') {
      // Refuse with our term (§5.1: a stale request is rejected with the current term). A
      // candidate outside our configuration would otherwise never learn the term it must
      // beat, and two candidates that cannot hear each other's requests could chase each
      // other's terms forever.
      this.sendVoteRefusal(message);
    }
  }

  private handleVoteRequest(message: VoteMessage): void {
    const canVote =
      this.vote === message.from ||
      (this.vote === NO_NODE && this.leaderId === NO_NODE) ||
      (message.type === 'preVote' && message.term > this.term);
    const responseType = message.type === 'vote' ? 'voteResponse' : 'preVoteResponse';
    if (canVote && this.raftLog.isUpToDate(message.index, message.logTerm)) {
      // Answer with the request's term, so a pre-candidate can count it for its next term.
      const grant: VoteResponseMessage = {
        type: responseType,
        from: this.id,
        to: message.from,
        term: message.term,
        reject: false,
        commit: 0,
        commitTerm: 0,
      };
      this.send(grant);
      if (message.type === 'vote') {
        this.electionElapsed = 0;
        this.vote = message.from;
      }
    } else {
      this.sendVoteRefusal(message);
    }
  }

  private sendVoteRefusal(request: VoteMessage): void {
    const commit = this.raftLog.committed;
    const refusal: VoteResponseMessage = {
      type: request.type === 'vote' ? 'voteResponse' : 'preVoteResponse',
      from: this.id,
      to: request.from,
      term: this.term,
      reject: true,
      commit,
      commitTerm: this.raftLog.term(commit) ?? 0,
    };
    this.send(refusal);
  }

  // A refusal carries the voter's commit point; where our log agrees there, it is ours too.
  private learnCommitFromRefusal(message: VoteResponseMessage): void {
    if (!message.reject || message.commit <= this.raftLog.committed || message.commitTerm === 0) return;
    if (this.raftLog.term(message.commit) !== message.commitTerm) return;
    this.raftLog.commitTo(message.commit);
    this.logger.info('learned the commit index from a vote refusal', { id: this.id, from: message.from, commit: message.commit });
  }

  // ---------------------------------------------------------------- role step functions

  private stepLeader(message: Message): void {
    switch (message.type) {
      case 'appendResponse':
        this.handleAppendResponse(message);
        return;
      case 'heartbeatResponse':
        this.handleHeartbeatResponse(message);
        return;
      case 'readIndex':
        // A leader handing over after its removal serves no reads; the follower retries.
        if (this.handOver === undefined) this.handleReadIndex(message.from, message.context);
        return;
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // Two leaders in one term would break election safety (§5.2).
        assert(false, `leader ${this.id} got ${message.type} from ${message.from} in its own term ${this.term}`);
        return;
      case 'voteResponse':
      case 'preVoteResponse':
      case 'timeoutNow':
      case 'readIndexResponse':
      case 'vote':
      case 'preVote':
        return;
      default:
        assertNever(message, 'message');
    }
  }

  private stepCandidate(message: Message): void {
    switch (message.type) {
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // A leader of our term exists (§5.2): follow it and handle the message as a follower.
        this.becomeFollower(message.term, message.from);
        this.stepFollower(message);
        return;
      case 'voteResponse':
      case 'preVoteResponse': {
        const expected = this.role === 'candidate' ? 'voteResponse' : 'preVoteResponse';
        if (message.type !== expected) return;
        this.tracker.recordVote(message.from, !message.reject);
        this.tallyAndAct();
        return;
      }
      case 'appendResponse':
      case 'heartbeatResponse':
      case 'timeoutNow':
      case 'readIndex':
      case 'readIndexResponse':
      case 'vote':
      case 'preVote':
        return;
      default:
        assertNever(message, 'message');
    }
  }

  private stepFollower(message: Message): void {
    switch (message.type) {
      case 'append':
        this.electionElapsed = 0;
        this.leaderId = message.from;
        this.handleAppend(message);
        return;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.leaderId = message.from;
        this.handleHeartbeat(message);
        return;
      case 'snapshot':
        this.electionElapsed = 0;
        this.leaderId = message.from;
        this.handleSnapshot(message);
        return;
      case 'timeoutNow':
        // The leader hands over: campaign at once, skipping pre-vote, overriding leases.
        this.logger.info('campaigning on TimeoutNow', { id: this.id, from: message.from, term: this.term });
        this.hup('transfer');
        return;
      case 'readIndex':
        if (this.leaderId === NO_NODE) return;
        this.send({ ...message, to: this.leaderId });
        return;
      case 'readIndexResponse':
        this.readStates.push({ index: message.index, context: message.context });
        return;
      case 'appendResponse':
      case 'heartbeatResponse':
      case 'voteResponse':
      case 'preVoteResponse':
      case 'vote':
      case 'preVote':
        return;
      default:
        assertNever(message, 'message');
    }
  }

  // ---------------------------------------------------------------- follower side

  private handleAppend(message: AppendMessage): void {
    if (message.index < this.raftLog.committed) {
      this.sendAppendResponse(message.from, { index: this.raftLog.committed, reject: false, rejectHint: 0, logTerm: 0 });
      return;
    }
    const lastNewIndex = this.raftLog.maybeAppend(message.index, message.logTerm, message.commit, message.entries);
    if (lastNewIndex !== undefined) {
      this.sendAppendResponse(message.from, { index: lastNewIndex, reject: false, rejectHint: 0, logTerm: 0 });
      return;
    }
    // Fast back-off (§5.3): tell the leader the last index at or below its probe whose term
    // is no greater than the probe's, so it can skip a whole term's worth of entries.
    const hint = this.raftLog.findConflictByTerm(Math.min(message.index, this.raftLog.lastIndex()), message.logTerm);
    this.sendAppendResponse(message.from, { index: message.index, reject: true, rejectHint: hint.index, logTerm: hint.term });
  }

  private sendAppendResponse(to: NodeId, fields: { index: Index; reject: boolean; rejectHint: Index; logTerm: Term }): void {
    const response: AppendResponseMessage = { type: 'appendResponse', from: this.id, to, term: this.term, ...fields };
    this.send(response);
  }

  private handleHeartbeat(message: HeartbeatMessage): void {
    this.raftLog.commitTo(message.commit);
    const response: HeartbeatResponseMessage = {
      type: 'heartbeatResponse',
      from: this.id,
      to: message.from,
      term: this.term,
      context: message.context,
    };
    this.send(response);
  }

  private handleSnapshot(message: SnapshotMessage): void {
    const { index, term } = message.snapshot.metadata;
    if (this.outstandingReady !== undefined && this.outstandingReady.committedEntries.length > 0) {
      // Committed entries are being applied right now; installing a snapshot under them
      // would let the driver apply older entries (and conf changes) over newer state. Drop
      // it: the leader sends it again after its next probe.
      this.logger.debug('deferring a snapshot while committed entries are applied', { id: this.id, index });
      return;
    }
    if (this.restore(message.snapshot)) {
      this.logger.info('restored snapshot', { id: this.id, index, term });
      this.sendAppendResponse(message.from, { index: this.raftLog.lastIndex(), reject: false, rejectHint: 0, logTerm: 0 });
    } else {
      this.sendAppendResponse(message.from, { index: this.raftLog.committed, reject: false, rejectHint: 0, logTerm: 0 });
    }
  }

  private restore(snapshot: Snapshot): boolean {
    const { index, term, confState } = snapshot.metadata;
    if (index <= this.raftLog.committed) return false;
    assert(this.role === 'follower', 'only a follower restores a snapshot');
    if (this.raftLog.matchTerm(index, term)) {
      // Our log already has the snapshot's last entry: just move commit forward.
      this.raftLog.commitTo(index);
      return false;
    }
    this.raftLog.restore(snapshot);
    installConfChange(this.tracker, restoreConfState(confState), this.raftLog.lastIndex(), true);
    this.configIndex = index;
    return true;
  }

  // ---------------------------------------------------------------- leader side

  private checkCanPropose(): void {
    if (this.role !== 'leader' || !this.tracker.isVoter(this.id)) {
      throw new StrataError(ErrorCode.NOT_LEADER, `node ${this.id} is not the leader`, { details: { leaderId: this.leaderId } });
    }
    if (this.leadTransferee !== NO_NODE) {
      throw new StrataError(ErrorCode.LEADER_TRANSFER_IN_PROGRESS, `leadership is moving to node ${this.leadTransferee}`, {
        details: { leaderId: this.id, transferee: this.leadTransferee },
      });
    }
  }

  private appendEntries(entries: readonly Entry[]): { firstIndex: Index; lastIndex: Index } {
    let payloadBytes = 0;
    for (const entry of entries) payloadBytes += entry.data.byteLength;
    // The first proposal is always admitted so a single large entry can make progress.
    if (this.uncommittedBytes > 0 && payloadBytes > 0 && this.uncommittedBytes + payloadBytes > this.config.maxUncommittedBytes) {
      throw new StrataError(ErrorCode.PROPOSAL_DROPPED, 'too many uncommitted bytes: the leader is not keeping up', {
        details: { uncommittedBytes: this.uncommittedBytes, maxUncommittedBytes: this.config.maxUncommittedBytes },
      });
    }
    this.uncommittedBytes += payloadBytes;
    const firstIndex = this.raftLog.lastIndex() + 1;
    const stamped = entries.map((entry, offset): Entry => ({ term: this.term, index: firstIndex + offset, type: entry.type, data: entry.data }));
    const lastIndex = this.raftLog.append(stamped);
    return { firstIndex, lastIndex };
  }

  private reduceUncommittedBytes(committed: readonly Entry[]): void {
    if (this.role !== 'leader') return;
    let payloadBytes = 0;
    for (const entry of committed) payloadBytes += entry.data.byteLength;
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - payloadBytes);
  }

  private maybeCommit(): boolean {
    // Only entries of the current term are committed by counting replicas (§5.4.2, Figure 8).
    return this.raftLog.maybeCommit(this.tracker.committed(), this.term);
  }

  private onCommitAdvanced(): void {
    this.releasePendingReadIndexRequests();
    this.broadcastAppend();
  }

  private broadcastAppend(): void {
    for (const id of this.tracker.progress.keys()) {
      if (id !== this.id) this.sendAppend(id);
    }
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  // Sends an append (or a snapshot when the entries are compacted away) to `to`, unless
  // flow control holds it back. With sendIfEmpty false, nothing is sent when there is
  // nothing new. Returns whether something was sent.
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const progress = this.tracker.progress.get(to);
    if (progress === undefined || progress.isPaused()) return false;
    const previousIndex = progress.next - 1;
    const previousTerm = this.raftLog.term(previousIndex);
    let entries: readonly Entry[] = [];
    if (previousTerm === undefined) return this.sendSnapshot(to, progress);
    // With a full window only an empty append goes out: its answer (accept or reject) frees
    // the window even when every append in it was lost.
    const windowFull = progress.state === 'replicate' && progress.inflights.full();
    if (!windowFull && progress.next <= this.raftLog.lastIndex()) {
      try {
        entries = this.raftLog.slice(progress.next, this.raftLog.lastIndex() + 1, this.config.maxEntriesBytesPerMessage);
      } catch (error) {
        if (isStrataError(error, ErrorCode.COMPACTED)) return this.sendSnapshot(to, progress);
        throw error;
      }
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    let sizeBytes = 0;
    for (const entry of entries) sizeBytes += entry.data.byteLength;
    const append: AppendMessage = {
      type: 'append',
      from: this.id,
      to,
      term: this.term,
      logTerm: previousTerm,
      index: previousIndex,
      entries,
      commit: this.raftLog.committed,
    };
    this.send(append);
    progress.sentEntries(entries.length, sizeBytes);
    return true;
  }

  private sendSnapshot(to: NodeId, progress: Progress): boolean {
    // A follower we have not heard from lately is probably down: do not stream to it.
    if (!progress.recentActive) return false;
    let snapshot: Snapshot;
    try {
      snapshot = this.raftLog.snapshot();
    } catch (error) {
      if (isStrataError(error, ErrorCode.SNAPSHOT_TEMPORARILY_UNAVAILABLE)) return false;
      throw error;
    }
    assert(snapshot.metadata.index > 0, 'a compacted log has a snapshot');
    progress.becomeSnapshot(snapshot.metadata.index);
    const message: SnapshotMessage = { type: 'snapshot', from: this.id, to, term: this.term, snapshot };
    this.send(message);
    this.logger.debug('sent snapshot', { id: this.id, to, index: snapshot.metadata.index });
    return true;
  }

  private broadcastHeartbeat(): void {
    if (this.handOver !== undefined && this.maybeFinishHandOver()) return;
    const context = this.config.readOnlyOption === 'safe' ? this.readOnly.lastContext() : undefined;
    for (const id of this.tracker.progress.keys()) {
      if (id !== this.id) this.sendHeartbeat(id, context);
    }
  }

  private sendHeartbeat(to: NodeId, readContext: Uint8Array | undefined): void {
    const progress = this.tracker.progress.get(to);
    assert(progress !== undefined, 'heartbeat to a member');
    // The follower may not have everything we committed: never tell it to commit past its match.
    const commit = Math.min(progress.match, this.raftLog.committed);
    // During a hand-over the context carries the commit sent, so the answer proves it arrived.
    const context = this.handOver === undefined ? readContext : encodeHandOverContext(commit);
    const heartbeat: HeartbeatMessage = { type: 'heartbeat', from: this.id, to, term: this.term, commit, context };
    this.send(heartbeat);
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: 'timeoutNow', from: this.id, to, term: this.term });
    if (!this.tracker.isVoter(this.id)) {
      // A removed leader's hand-over is done: the new leader will not talk to it (it is not
      // in the configuration), so it steps down now. If TimeoutNow is lost, the voters time
      // out and elect a leader, and this node, still running, can vote in that election.
      this.logger.info('stepping down after handing leadership over', { id: this.id, to, term: this.term });
      this.becomeFollower(this.term, NO_NODE);
    }
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = NO_NODE;
  }

  private handleAppendResponse(message: AppendResponseMessage): void {
    const progress = this.tracker.progress.get(message.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    if (message.reject) {
      let nextProbeIndex = message.rejectHint;
      if (message.logTerm > 0) nextProbeIndex = this.raftLog.findConflictByTerm(message.rejectHint, message.logTerm).index;
      if (progress.maybeDecreaseTo(message.index, nextProbeIndex)) {
        if (progress.state === 'replicate') progress.becomeProbe();
        this.sendAppend(message.from);
      }
      return;
    }
    const wasPaused = progress.isPaused();
    const updated = progress.maybeUpdate(message.index);
    if (updated || (progress.match === message.index && progress.state === 'probe')) {
      switch (progress.state) {
        case 'probe':
          progress.becomeReplicate();
          break;
        case 'snapshot':
          if (progress.match + 1 >= this.raftLog.firstIndex()) {
            progress.becomeProbe();
            progress.becomeReplicate();
          }
          break;
        case 'replicate':
          progress.inflights.freeLE(message.index);
          break;
        default:
          assertNever(progress.state, 'progress state');
      }
      if (this.maybeCommit()) this.onCommitAdvanced();
      else if (wasPaused) this.sendAppend(message.from);
      // Fill the pipeline: keep sending while flow control allows and there is more.
      let sends = 0;
      while (sends < this.config.maxInflightMessages && this.maybeSendAppend(message.from, false)) sends += 1;
      if (message.from === this.leadTransferee && progress.match === this.raftLog.lastIndex()) {
        this.logger.info('transferee caught up: sending TimeoutNow', { to: message.from });
        this.sendTimeoutNow(message.from);
      }
    }
  }

  private handleHeartbeatResponse(message: HeartbeatResponseMessage): void {
    const progress = this.tracker.progress.get(message.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    progress.msgAppFlowPaused = false;
    // A probing follower that is caught up still needs an append to return to replicate.
    if (progress.match < this.raftLog.lastIndex() || progress.state === 'probe') this.sendAppend(message.from);
    if (this.handOver !== undefined) {
      const commitSent = decodeHandOverContext(message.context);
      if (commitSent !== undefined && commitSent >= this.handOver.removalIndex) {
        this.handOver.acknowledged.add(message.from);
        this.maybeFinishHandOver();
      }
      return;
    }
    if (this.config.readOnlyOption !== 'safe' || message.context === undefined) return;
    const acks = this.readOnly.recordAck(message.from, message.context);
    if (acks === undefined) return;
    const votes = new Map<NodeId, boolean>();
    for (const id of acks) votes.set(id, true);
    if (jointVoteResult(this.tracker.config.voters, votes) !== 'won') return;
    for (const request of this.readOnly.release(message.context)) {
      this.respondToReadIndex(request.from, request.context, request.index);
    }
  }

  private handleReadIndex(from: NodeId, context: Uint8Array): void {
    // Until it commits an entry of its term, a new leader does not know the commit index
    // (thesis §6.4) — even as the only voter: the previous leader, in a larger configuration,
    // may have committed entries this node has not yet heard were committed.
    if (this.raftLog.term(this.raftLog.committed) !== this.term) {
      if (this.pendingReadIndexRequests.length < PENDING_READ_INDEX_REQUESTS_MAX) {
        this.pendingReadIndexRequests.push({ from, context });
      }
      return;
    }
    this.serveReadIndex(from, context);
  }

  private serveReadIndex(from: NodeId, context: Uint8Array): void {
    const voters = this.tracker.config.voters;
    if (voters.outgoing.size === 0 && voters.incoming.size === 1 && voters.incoming.has(this.id)) {
      // The only voter needs no heartbeat round to know it still leads.
      this.respondToReadIndex(from, context, this.raftLog.committed);
      return;
    }
    if (this.config.readOnlyOption === 'leaseBased') {
      // Check-quorum guarantees a leader that lost its quorum steps down within an
      // election timeout, before any other node can be elected (thesis §6.4.1).
      this.respondToReadIndex(from, context, this.raftLog.committed);
      return;
    }
    if (!this.readOnly.add(this.raftLog.committed, from, context)) return;
    this.readOnly.recordAck(this.id, context);
    for (const id of this.tracker.progress.keys()) {
      if (id !== this.id) this.sendHeartbeat(id, context);
    }
  }

  private releasePendingReadIndexRequests(): void {
    if (this.pendingReadIndexRequests.length === 0) return;
    if (this.raftLog.term(this.raftLog.committed) !== this.term) return;
    const pending = this.pendingReadIndexRequests;
    this.pendingReadIndexRequests = [];
    for (const request of pending) this.serveReadIndex(request.from, request.context);
  }

  private respondToReadIndex(from: NodeId, context: Uint8Array, index: Index): void {
    if (from === this.id) {
      this.readStates.push({ index, context });
      return;
    }
    const response: ReadIndexResponseMessage = { type: 'readIndexResponse', from: this.id, to: from, term: this.term, index, context };
    this.send(response);
  }

  // ---------------------------------------------------------------- configuration

  private afterConfigSwitch(): void {
    if ((this.role === 'candidate' || this.role === 'preCandidate') && !this.tracker.isVoter(this.id)) {
      // Removed or demoted while campaigning: a node outside the voters must not lead.
      this.becomeFollower(this.term, NO_NODE);
      return;
    }
    if (this.role === 'leader' && !this.tracker.isVoter(this.id)) {
      this.startHandOver();
      return;
    }
    if (this.role !== 'leader' || this.tracker.config.voters.incoming.size === 0) return;
    // The quorum may have changed: a commit may be possible now, and new members need appends.
    if (this.maybeCommit()) this.onCommitAdvanced();
    else {
      for (const id of this.tracker.progress.keys()) if (id !== this.id) this.maybeSendAppend(id, false);
    }
    if (this.leadTransferee !== NO_NODE && !this.tracker.isVoter(this.leadTransferee)) this.abortLeaderTransfer();
  }

  /**
   * startHandOver runs on a leader that applied its own removal (or demotion). It must not
   * just step down: a remaining voter that has not yet learned (durably) that the removal
   * is committed still counts the old leader in its quorum, and could be left needing a
   * vote the departed node no longer gives — or, if the departed node is a learner with a
   * longer log, refuses. So the old leader keeps leading (it takes no proposals and serves
   * no reads) until every remaining voter has acknowledged a heartbeat carrying a commit
   * index at or past the removal; heartbeat responses leave only after the follower
   * persisted that commit. Then it hands leadership to the most caught-up voter (thesis
   * §4.2.2, §3.10) and steps down.
   */
  private startHandOver(): void {
    if (this.handOver === undefined) {
      this.handOver = { removalIndex: this.configIndex, acknowledged: new Set(), electionsWaited: 0 };
      this.logger.info('removed from the configuration: handing leadership over', {
        id: this.id,
        term: this.term,
        removalIndex: this.configIndex,
      });
    }
    if (!this.maybeFinishHandOver()) this.broadcastHeartbeat();
  }

  // Finishes the hand-over once every remaining voter knows the removal is committed, or,
  // after HAND_OVER_ELECTIONS_FOR_ALL election timeouts (`quorumWillDo`), once a quorum of
  // the configuration does: that quorum uses the configuration without this node, so it can
  // elect without this node's vote, and a voter that has not answered (cut off, or no longer
  // listening to a removed member) learns the removal from the next leader. Waiting for every
  // voter forever let one such voter keep the cluster leaderless: the others follow this node
  // and refuse to elect. Returns whether this node is no longer leading.
  private maybeFinishHandOver(quorumWillDo = false): boolean {
    const handOver = this.handOver;
    assert(handOver !== undefined, 'finishing a hand-over that did not start');
    let target: NodeId = NO_NODE;
    let targetMatch = -1;
    const acknowledged = new Map<NodeId, boolean>();
    for (const id of sortedIds(this.tracker.voterIds())) {
      if (id === this.id) continue;
      if (!handOver.acknowledged.has(id)) {
        if (!quorumWillDo) return false;
        continue;
      }
      acknowledged.set(id, true);
      const match = this.tracker.progress.get(id)?.match ?? 0;
      if (match > targetMatch) {
        target = id;
        targetMatch = match;
      }
    }
    if (quorumWillDo && jointVoteResult(this.tracker.config.voters, acknowledged) !== 'won') return false;
    if (target === NO_NODE || this.leadTransferee === target) {
      if (target === NO_NODE) this.becomeFollower(this.term, NO_NODE);
      return target === NO_NODE;
    }
    // TimeoutNow steps this node down (sendTimeoutNow); if the target is behind, the
    // transfer waits for it to catch up and is retried after an election timeout.
    this.abortLeaderTransfer();
    this.transferLeader(target);
    return this.role !== 'leader';
  }

  private maybeAutoLeaveJoint(): void {
    if (!this.tracker.config.autoLeave || !this.tracker.isJoint()) return;
    if (this.pendingConfIndex > this.raftLog.applied || this.leadTransferee !== NO_NODE) return;
    // The joint configuration is applied: leave it by proposing the empty change (thesis §4.3).
    const entry: Entry = { term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange({ transition: 'auto', changes: [] }) };
    let firstIndex: Index;
    try {
      ({ firstIndex } = this.appendEntries([entry]));
    } catch (error) {
      // Over the uncommitted limit: try again after the next advance.
      if (isStrataError(error, ErrorCode.PROPOSAL_DROPPED)) return;
      throw error;
    }
    this.pendingConfIndex = firstIndex;
    this.logger.info('leaving joint configuration automatically', { id: this.id, index: firstIndex });
    this.broadcastAppend();
  }

  // ---------------------------------------------------------------- output

  private send(message: Message): void {
    assert(message.from === this.id, 'messages are sent from this node');
    assert(message.to !== this.id, 'no message to self');
    this.messages.push(message);
  }
}

// How many election timeouts a removed leader waits for every remaining voter to acknowledge
// its removal before a quorum of them will do (see maybeFinishHandOver).
const HAND_OVER_ELECTIONS_FOR_ALL = 3;

// A hand-over heartbeat's context: a marker no read context starts with, then the commit index.
const HAND_OVER_CONTEXT_PREFIX = [0xff, 0x68, 0x61, 0x6e, 0x64, 0x6f, 0x76, 0x65, 0x72]; // 0xff "handover"

function encodeHandOverContext(commit: Index): Uint8Array {
  const digits = new TextEncoder().encode(String(commit));
  const context = new Uint8Array(HAND_OVER_CONTEXT_PREFIX.length + digits.length);
  context.set(HAND_OVER_CONTEXT_PREFIX, 0);
  context.set(digits, HAND_OVER_CONTEXT_PREFIX.length);
  return context;
}

function decodeHandOverContext(context: Uint8Array | undefined): Index | undefined {
  if (context === undefined || context.length <= HAND_OVER_CONTEXT_PREFIX.length) return undefined;
  for (let i = 0; i < HAND_OVER_CONTEXT_PREFIX.length; i += 1) {
    if (context[i] !== HAND_OVER_CONTEXT_PREFIX[i]) return undefined;
  }
  const commit = Number(new TextDecoder().decode(context.subarray(HAND_OVER_CONTEXT_PREFIX.length)));
  return Number.isSafeInteger(commit) ? commit : undefined;
}

// RaftNode: the one driver around the pure Raft core (src/raft), as a façade over parts that
// each own one kind of state (ARCHITECTURE.md, src/node/README.md):
//
//   ready-loop.ts          the Ready loop: persist → send → apply → advance, with failpoints
//   proposal-tracker.ts    every accepted write until it is answered (queued, held,
//                          forwarding, in flight), settled exactly once
//   proposal-router.ts     where a write goes: this leader's next Ready, held, or the leader
//   read-index.ts          linearizable reads: read index, then applied >= read index
//   membership-changes.ts  member add / remove / promote to their applied ConfChange
//   snapshotter.ts         when snapshots are taken, and how much log is kept behind them
//   snapshot-sender.ts     the leader's snapshot sends to followers behind the compacted log
//   data-dir.ts            the identity, log, snapshots and state machine it runs on
//   alarms.ts              the raised alarms (NOSPACE, CORRUPT), applied from the log
//   log-holds.ts           consumers that keep the log from an index on, applied from the log
//   backend-quota.ts       --quota-backend-bytes: the measured size and the cost of a write
//   clock.ts               time and deferred work (SYSTEM_CLOCK, or a VirtualClock)
//
// What stays here is the glue: the clock's tick, messages from peers, applying committed
// entries (and telling each part what was applied), leadership notices, and the lifecycle.
// Every promise a part hands out settles by its result, its deadline, its AbortSignal, or
// stop() with STOPPED.
//
// Leadership has one source of truth, the core (raft.currentRole(), raft.currentLeader()).
// `announced` only remembers what was last reported to hooks and waiters, so that a change
// noticed after a step, a tick or a Ready is announced once.

import { randomInt } from 'node:crypto';
import type { SpanContext } from '@opentelemetry/api';
import { ATTR_SNAPSHOT_ID, ATTR_SNAPSHOT_INDEX, endSpan, isSampled, parseTraceparent, reportTo, sampledContext, withSpan } from '../obs/index.ts';
import type { ConfState, Entry, Index, Logger, Message, NodeId, Role, Snapshot, SnapshotMessage, Term } from '../raft/index.ts';
import type { SnapshotInfo, SnapshotReceiver, SnapshotStore } from '../snapshot/index.ts';
import { snapshotId as snapshotIdOf } from '../snapshot/index.ts';
import { decodeConfChange, EntryType, NO_NODE, Raft, RAFT_CONFIG_DEFAULTS, SILENT_LOGGER } from '../raft/index.ts';
import type { DigestAt, DigestView, KvLimits, KvRequest, KvResponse, KvStateMachine, LogStore, RangeRequest, RangeResponse } from '../storage/index.ts';
import { abortOnFatal, APPLY_ENTRIES_MAX, DEFAULT_KV_LIMITS, encodeValidKvCommand, isKvCommand, validateKvRequest } from '../storage/index.ts';
import type { PeerRequestKind, SnapshotSink, Transport } from '../transport/index.ts';
import { assert, ErrorCode, isStrataError, SeededRandom, sleep, StrataError, SYSTEM_CLOCK } from '../util/index.ts';
import type { Clock, TimerId } from '../util/index.ts';
import type { AlarmAction, AlarmChange, AlarmRecord, AlarmType } from './alarms.ts';
import { AlarmSet, CLUSTER_ALARM_MEMBER_ID, isAlarmMemberId, isAlarmType } from './alarms.ts';
import { BackendQuota, compactStateMachine, QUOTA_BACKEND_BYTES_SUGGESTED_MAX, quotaBytesFor, quotaCost } from './backend-quota.ts';
import type { RestoredStateMachine, StateMachineRestorer } from './data-dir.ts';
import { dbSizeBytes, openMemberStorage, restoreFromSnapshot, restoreWhileReceiving } from './data-dir.ts';
import { memberIdFor } from './member-identity.ts';
import type { InitialMember, MemberRecord } from './membership.ts';
import { isZoneName, Membership } from './membership.ts';
import type { JointLeave, MemberOperation } from './membership-changes.ts';
import { decodeMemberOperation, encodeMemberOperation, encodeMembersReply, MembershipChanges } from './membership-changes.ts';
import { DIGEST_PINS_MAX, NodeDigestPins, tooManyPins } from './digest-pins.ts';
import type { CheckpointState } from './integrity-checks.ts';
import { decodeCheckpoint, DEFAULT_INTEGRITY_CHECK_POLICY, encodeCheckpoint, IntegrityChecker, isCheckpointEntry } from './integrity-checks.ts';
import { decodeMemberContext, decodeNodeCommand, encodeNodeCommand } from './node-command.ts';
import type { JournalState } from './migration-journal.ts';
import type { ReplicationStatus } from './replication-status.ts';
import { encodeStatusProbeReply, replicationStatus } from './replication-status.ts';
import { checkJournalWrite, MigrationJournal } from './migration-journal.ts';
import type { LogHold } from './log-holds.ts';
import { checkLogHoldRequest, LogHolds, tooManyLogHolds } from './log-holds.ts';
import type { ScrubReport } from './scrubber.ts';
import { DEFAULT_SCRUB_POLICY, Scrubber } from './scrubber.ts';
import type { NodeCommand, PublishCommand } from './node-command.ts';
import type { Outcome, ProposalCounts } from './proposal-tracker.ts';
import { ProposalTracker, REQUEST_TIMEOUT_MS } from './proposal-tracker.ts';
import { ProposalRouter } from './proposal-router.ts';
import type { RaftNodeHooks, RaftNodeOptions } from './raft-node-options.ts';
import { ReadIndexTracker } from './read-index.ts';
import { ReadyLoop } from './ready-loop.ts';
import { memberRemoved, requestCanceled, requestTimedOut, serverStopped } from './request-errors.ts';
import type { SnapshotDescriptor } from './snapshot-descriptor.ts';
import { decodeSnapshotDescriptor } from './snapshot-descriptor.ts';
import type { SnapshotSendStatus } from './snapshot-sender.ts';
import { SnapshotSender } from './snapshot-sender.ts';
import { CatchUpPacer } from './catch-up-pacer.ts';
import { EntryTraces } from './entry-traces.ts';
import type { SnapshotterStatus } from './snapshotter.ts';
import { Snapshotter } from './snapshotter.ts';
import { MemberMetrics, type MemberMetricSources } from '../obs/index.ts';
import { HeartbeatTimer, migrationMetricView, StorageTimingSink } from './member-metrics.ts';

/** REMOVED_GRACE_ELECTIONS: a removed member keeps answering for this many election timeouts. */
export const REMOVED_GRACE_ELECTIONS = 3;
// Bounds the callers waiting in waitPublished() at once.
const PUBLISH_WAITERS_MAX = 1_024;
// How many grace periods a removed member that still leads here is kept as a peer.
const REMOVED_LEADER_CHECKS_MAX = 100;
/** PUBLISH_ATTEMPTS_MAX bounds the attempts to publish this member's name and client URLs. */
export const PUBLISH_ATTEMPTS_MAX = 50;
/** LEADER_WAITS_MAX bounds the wake-ups of one waitForLeader() or transferLeadership(). */
const LEADER_WAITS_MAX = 100_000;
/** REBUILD_CATCH_UP_ROUNDS_MAX bounds the rounds a rebuilt state machine catches up with the serving one's index. */
export const REBUILD_CATCH_UP_ROUNDS_MAX = 20;

/** RebuildReport says how a rebuild went: the snapshot taken, and the check after it. */
export interface RebuildReport {
  readonly snapshotId: string;
  readonly snapshotIndex: Index;
  readonly checkpoint: CheckpointState;
  /** This member's digest agrees with the majority's at the checkpoint. */
  readonly agrees: boolean;
  /** Its CORRUPT alarm was cleared (it had one, and it agrees). */
  readonly alarmCleared: boolean;
}

/** APPLIED_WAITERS_MAX bounds the log streams waiting in waitForApplied() at once. */
export const APPLIED_WAITERS_MAX = 1_024;

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
  /** Snapshots and compaction: the newest snapshot, the breaker, how far the log is compacted. */
  readonly snapshots: SnapshotterStatus & { readonly sending: readonly SnapshotSendStatus[] };
  /** The alarms raised, as applied here (etcd's alarm list). */
  readonly alarms: readonly AlarmRecord[];
  /** A snapshot from the leader is being received or installed here. */
  readonly receivingSnapshot: boolean;
}

/** SnapshotStream is a snapshot pinned for reading (Maintenance.Snapshot): whole verified blocks from an offset. */
export interface SnapshotStream {
  readonly info: SnapshotInfo;
  read(offset: number, maxBytes: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** FOREGROUND_WINDOW_MS: a client request or applied write this recent makes snapshot sends run at their rate under load. */
export const FOREGROUND_WINDOW_MS = 1_000;

// A restore fed by a receive's records() (restoreWhileReceiving). `receiver` is the receive's
// latest receiver (a resumed stream gets a new one), through which it can be ended.
interface StreamedRestore {
  readonly snapshotId: string;
  readonly index: Index;
  receiver: SnapshotReceiver;
  readonly restored: Promise<RestoredStateMachine>;
  // When the receive (and so the restore beside it) started, for the snapshotter's duty cycle.
  readonly startedMs: number;
}

// A snapshot received from the leader and restored beside the serving state machine, waiting
// for Raft to install it (or for a newer one to replace it).
interface PreparedInstall {
  readonly snapshotId: string;
  readonly index: Index;
  readonly descriptor: SnapshotDescriptor;
  readonly restored: RestoredStateMachine;
  // Restored beside the receive (restoreWhileReceiving), not from the file afterwards.
  readonly restoredWhileReceiving: boolean;
  // When the restore started: writing the whole state counts in the snapshot duty cycle.
  readonly restoreStartedMs: number;
}

/** NodeCallOptions bound one call: an AbortSignal and/or a timeout. */
export interface NodeCallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /**
   * Read a read-only mirror linearizably (the copier's and verify's own reads). Without it a
   * mirror refuses linearizable reads and read-only Txns with MIRROR_READ_ONLY, as etcd's
   * learners refuse them: its data lags the source, so a client given both clusters' endpoints
   * reads where it writes (serializable reads are served).
   */
  readonly mirrorReader?: boolean;
  /**
   * The caller's span context when its trace is sampled (a server span, say): the write is
   * traced under it (entry-traces.ts). Ignored by a member without a tracer, and by reads.
   */
  readonly traceParent?: SpanContext | undefined;
}

/** NodeQueues reports what the node holds right now (the simulator checks the bounds). */
export interface NodeQueues {
  readonly proposals: ProposalCounts;
  readonly reads: number;
  readonly membershipChanges: number;
}

type MemberStorageParts = Awaited<ReturnType<typeof openMemberStorage>>;

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
  private readonly clock: Clock;
  private readonly raft: Raft;
  private readonly log: LogStore;
  // Replaced when a snapshot from the leader is installed.
  private stateMachine: KvStateMachine;
  private readonly snapshots: SnapshotStore;
  private readonly restorer: StateMachineRestorer;
  private readonly snapshotter: Snapshotter;
  private readonly snapshotSender: SnapshotSender;
  // Holds learners' log catch-up to the snapshot send rate (catch-up-pacer.ts).
  private readonly catchUpPacer: CatchUpPacer;
  private prepared: PreparedInstall | undefined;
  // Set from prepareSnapshotInstall to installSnapshot: `prepared` is Raft's now, not replaced.
  private installing = false;
  // When this member last took a client request or applied a client write (snapshotSendRate).
  private lastForegroundMs = Number.NEGATIVE_INFINITY;
  // One restore from a received snapshot at a time.
  private preparing: Promise<void> = Promise.resolve();
  // The restore running beside a receive (restoreWhileReceiving), until the receive's finish
  // claims it; one at a time.
  private streamed: StreamedRestore | undefined;
  private readonly transport: Transport;
  private readonly membership: Membership;
  // Applied from the log like the member table, and carried by snapshots beside it.
  private readonly alarmSet = new AlarmSet();
  private readonly journal = new MigrationJournal();
  // Applied from the log but in memory only, not carried by snapshots (log-holds.ts says why).
  private readonly logHolds = new LogHolds();
  // The wall clock log holds expire by (RaftNodeOptions.wallClockMs).
  private readonly wallClockMs: () => number;
  private readonly quota: BackendQuota;
  // This member's own NOSPACE alarm being proposed (one at a time).
  private raisingNoSpace: Promise<void> | undefined;
  // A hand-over of leadership because this member has a CORRUPT alarm (one at a time), and
  // the tick when it last warned that no voter could take over (once an election timeout).
  private corruptHandOver: Promise<void> | undefined;
  private corruptHandOverWarnedTick = Number.NEGATIVE_INFINITY;
  // Cross-replica integrity checkpoints, and the digest views pinned here for a Merkle diff.
  private readonly integrity: IntegrityChecker;
  private readonly pins = new NodeDigestPins();
  private readonly scrubber: Scrubber;
  // While applyCommitted runs (it awaits the state machine), views of the applied state wait:
  // betweenApplies() queues them, and they run synchronously when it ends.
  private applyingCommitted = false;
  private rebuilding = false;
  // The state machine this member raised its own CORRUPT alarm for (a read failed applying to it).
  private corruptRaisedFor: KvStateMachine | undefined;
  private readonly betweenAppliesQueue: (() => void)[] = [];
  private readonly electionTicks: number;
  private readonly proposals: ProposalTracker;
  private readonly router: ProposalRouter;
  private readonly reads: ReadIndexTracker;
  private readonly changes: MembershipChanges;
  private readonly loop: ReadyLoop;
  // The spans of traced writes; undefined when this member does not trace (the hot path's one check).
  private readonly traces: EntryTraces | undefined;

  private appliedIndex: Index = 0;
  private tickCount = 0;
  private ticker: TimerId | undefined;
  // Timers that outlive a call (forgetting a removed peer); cleared by stop().
  private readonly timers = new Set<TimerId>();
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
  // What was last reported to hooks and waiters; the truth is the core's (see the header).
  private announced: { role: Role; leaderId: NodeId } = { role: 'follower', leaderId: NO_NODE };
  private readonly leaderWaiters = new Set<() => void>();
  // Callers of waitPublished(), woken when this member's publish is applied here or it stops.
  private readonly publishWaiters = new Set<(error?: StrataError) => void>();
  // Metrics (options.meter); undefined without them, and then nothing is counted.
  private readonly metrics: MemberMetrics | undefined;
  private readonly heartbeats: HeartbeatTimer | undefined;

  private constructor(options: RaftNodeOptions, storage: MemberStorageParts) {
    const { identity, log, stateMachine, freshCluster } = storage;
    this.options = options;
    this.logger = options.logger ?? SILENT_LOGGER;
    this.hooks = options.hooks ?? {};
    if (options.meter !== undefined) {
      // The sources are read at scrapes only, after the constructor finished.
      const sources: MemberMetricSources = {
        memberIdHex: identity.memberId.toString(16),
        serverVersion: options.version ?? '',
        hasLeader: () => this.raft.currentLeader() !== NO_NODE,
        isLeader: () => this.raft.currentRole() === 'leader',
        isLearner: () => this.raft.status().config.learners.includes(this.memberId),
        committedIndex: () => this.raft.status().commit,
        appliedIndex: () => this.appliedIndex,
        pendingProposals: () => this.proposals.unsettled,
        revision: () => this.stateMachine.revision(),
        dbSizeBytes: () => this.dbSizeBytes(),
        snapshotIndex: () => this.snapshotter.status().latest?.index ?? 0,
        snapshotsInstalling: () => (this.streamed !== undefined || this.installing ? 1 : 0),
        snapshotsSending: () => this.snapshotSender.sending().length,
        alarms: () => this.alarmSet.list().map((record) => ({ memberIdHex: record.memberId.toString(16), alarm: record.alarm })),
        migration: () => migrationMetricView(this.journal.current().record, options.describeMigration),
        mirrorRevision: () => (this.stateMachine.mirrorState() !== undefined ? this.stateMachine.revision() : undefined),
      };
      this.metrics = new MemberMetrics(options.meter, sources);
      this.heartbeats = new HeartbeatTimer(this.metrics, () => this.clock.now());
    }
    this.limits = options.limits ?? DEFAULT_KV_LIMITS;
    this.clock = options.clock ?? SYSTEM_CLOCK;
    const clock = this.clock;
    this.wallClockMs = options.wallClockMs ?? (clock === SYSTEM_CLOCK ? () => Date.now() : () => Math.floor(clock.now()));
    this.memberId = identity.memberId;
    this.clusterId = identity.clusterId;
    this.name = identity.name;
    this.log = log;
    this.stateMachine = stateMachine;
    this.snapshots = storage.snapshots;
    this.restorer = storage.restorer;
    this.membership = new Membership(identity.initialMembers);
    // The log before the latest snapshot may be compacted: the member table and the alarms come from it.
    const logSnapshot = log.snapshot();
    if (logSnapshot.metadata.index > 0) {
      const { membership } = decodeSnapshotDescriptor(logSnapshot.data);
      this.membership.restoreState(membership);
      this.alarmSet.restore(membership.alarms ?? []);
      this.journal.restore(membership.journal);
      this.appliedIndex = logSnapshot.metadata.index;
    }
    this.quota = new BackendQuota({ clock: this.clock, logger: this.logger, measure: () => this.dbSizeBytes() }, quotaBytesFor(options.quotaBackendBytes));
    this.electionTicks = Math.max(2, Math.round(options.electionTimeoutMs / options.heartbeatIntervalMs));
    this.raft = new Raft({
      ...RAFT_CONFIG_DEFAULTS,
      id: this.memberId,
      storage: log,
      random: options.random ?? new SeededRandom(randomInt(0, 2 ** 31)),
      electionTicks: this.electionTicks,
      heartbeatTicks: 1,
      logger: this.logger,
      ...(freshCluster ? { voters: identity.initialMembers.map((member) => member.id) } : {}),
    });
    this.transport = options.createTransport({ localId: this.memberId, clusterId: this.clusterId });
    this.proposals = new ProposalTracker(this.clock);
    this.traces = options.tracer === undefined ? undefined : new EntryTraces(options.tracer);
    this.router = new ProposalRouter({
      selfId: this.memberId,
      clock: this.clock,
      transport: this.transport,
      tracker: this.proposals,
      leader: () => this.raft.currentLeader(),
      scheduleLoop: () => this.loop.schedule(),
      tracer: options.tracer,
    });
    this.reads = new ReadIndexTracker(this.clock, this.electionTicks);
    this.integrity = new IntegrityChecker(
      {
        memberId: this.memberId,
        now: () => this.clock.now(),
        isLeader: () => this.raft.currentRole() === 'leader' && !this.alarmSet.has(this.memberId, 'CORRUPT'),
        appliedIndex: () => this.appliedIndex,
        revision: () => this.stateMachine.revision(),
        proposeCheckpoint: (payload) =>
          withSpan(options.tracer, 'integrity.checkpoint', { attributes: { 'stratakv.checkpoint.pin': payload.pin } }, async (span) => {
            const outcome = await this.submit(encodeCheckpoint(payload), { traceParent: span === undefined ? undefined : sampledContext(span) }, 0);
            if (outcome.error !== undefined) throw outcome.error;
          }),
        proposeReport: async (report) => {
          const outcome = await this.submit(encodeNodeCommand(report), {}, 0);
          if (outcome.error !== undefined) throw outcome.error;
        },
        hasCorruptAlarm: (memberId) => this.alarmSet.has(memberId, 'CORRUPT'),
        onVerdict: (_index, verdict) => this.metrics?.integrityChecked(verdict === 'agreed'),
        raiseCorrupt: async (memberId, why) => {
          this.logger.warn('integrity check: raising a CORRUPT alarm', { memberId: memberId.toString(16), why });
          await this.proposeAlarmChange({ action: 'activate', memberId, alarm: 'CORRUPT' }, {});
        },
        setTimer: (fire, delayMs) => {
          const timer = this.clock.setTimeout(() => {
            this.timers.delete(timer);
            fire();
          }, delayMs);
          this.timers.add(timer);
          return () => {
            this.timers.delete(timer);
            this.clock.clearTimeout(timer);
          };
        },
        warn: (message, fields) => this.logger.warn(message, fields),
      },
      { ...DEFAULT_INTEGRITY_CHECK_POLICY, ...options.integrityCheckPolicy },
    );
    this.scrubber = new Scrubber(
      {
        clock: this.clock,
        logger: this.logger,
        // The scrubber hashes every value again (a snapshot sums the hashes stored with them).
        openView: () => this.betweenApplies(() => this.stateMachine.openSnapshotView({ recomputeHashes: true })),
        onCorrupt: async () => this.proposeAlarmChange({ action: 'activate', memberId: this.memberId, alarm: 'CORRUPT' }, {}),
        onReport: (report) => this.metrics?.scrubbed(report.failure === undefined),
      },
      { ...DEFAULT_SCRUB_POLICY, ...options.scrubPolicy },
      options.tracer,
    );
    this.snapshotter = new Snapshotter(
      {
        clock: this.clock,
        logger: this.logger,
        log,
        snapshots: this.snapshots,
        capture: () =>
          this.betweenApplies(() => ({
            view: this.stateMachine.openSnapshotView(),
            confState: this.raft.status().config,
            membership: { ...this.membership.exportState(), alarms: this.alarmSet.list(), journal: this.journal.current() },
          })),
        stateMachine: () => this.stateMachine,
        appliedIndex: () => this.appliedIndex,
        raftStatus: () => this.raft.status(),
        sendingIndexes: () => this.snapshotSender.sendingIndexes(),
        logHolds: () => this.logHolds.list(),
        wallClockMs: () => this.wallClockMs(),
        onSaved: (info, elapsedMs) => {
          this.metrics?.snapshotSaved(elapsedMs / 1000);
          this.hooks.onSnapshotSaved?.(info);
        },
        onFailed: () => this.metrics?.snapshotSaveFailed(),
        tracer: options.tracer,
      },
      options.snapshotPolicy,
    );
    this.catchUpPacer = new CatchUpPacer({
      clock: this.clock,
      bytesPerSecond: () => this.snapshotSendRate(),
      send: (messages) => {
        if (!this.stopped) this.transport.send(messages);
      },
    });
    this.snapshotSender = new SnapshotSender({
      transport: this.transport,
      snapshots: this.snapshots,
      logger: this.logger,
      clock: this.clock,
      sendsMax: this.snapshotter.policy.sendsMax,
      bytesPerSecond: () => this.snapshotSendRate(),
      leaseMs: this.snapshotter.policy.leaseMs,
      report: (peer, ok) => {
        if (this.stopped) return;
        this.metrics?.snapshotSendEnded(ok);
        this.raft.reportSnapshot(peer, ok);
        this.loop.schedule();
      },
      tracer: options.tracer,
    });
    this.changes = new MembershipChanges({
      selfId: this.memberId,
      clusterToken: options.initialClusterToken,
      clock: this.clock,
      raft: this.raft,
      membership: this.membership,
      transport: this.transport,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      waitForLeader: (callOptions) => this.waitForLeader(definedOnly(callOptions)),
      scheduleLoop: () => this.loop.schedule(),
    });
    this.loop = new ReadyLoop({
      core: this.raft,
      log,
      clock: this.clock,
      failpoints: options.failpoints,
      tracing: this.traces,
      handlers: {
        beforeReady: () => {
          this.flushProposals();
          if (this.raft.currentLeader() !== NO_NODE) this.reads.askPending(this.raft, this.tickCount);
        },
        hasWork: () => this.proposals.hasQueued || (this.reads.hasPending && this.raft.currentLeader() !== NO_NODE),
        onSoftState: () => this.noticeLeadership(),
        apply: (entries) => this.applyCommitted(entries),
        send: (messages) => this.sendMessages(messages),
        persisted: (ready) => this.snapshotter.noteAppended(ready.entries),
        prepareSnapshot: (snapshot) => this.prepareSnapshotInstall(snapshot),
        installSnapshot: (snapshot) => this.installSnapshot(snapshot),
        onReadStates: (ready) => this.reads.onReadStates(ready.readStates),
        afterAdvance: () => {
          if (this.soleVoterCampaignPending) this.campaignIfSoleVoter();
          // A CORRUPT alarm applied in this Ready, or leadership won while it is raised.
          this.handOverIfCorrupt();
        },
        onFatal: options.onFatal ?? abortOnFatal,
      },
    });
  }

  /**
   * start opens (or creates) the member's storage, starts the transport and the clock, and
   * resolves once the node runs. A new member of a `new` cluster bootstraps the initial
   * configuration; a member of an `existing` cluster waits for the leader to contact it.
   */
  static async start(options: RaftNodeOptions): Promise<RaftNode> {
    checkOptions(options);
    const timings = new StorageTimingSink();
    const node = new RaftNode(options, await openMemberStorage(options, timings));
    timings.target = node.metrics;
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
      onSnapshot: (from, message, byteLength, signal) => this.onPeerSnapshot(from, message, byteLength, signal),
    });
    this.ticker = this.clock.setInterval(() => this.onTick(), this.options.heartbeatIntervalMs);
    this.scrubber.start();
    // The only voter need not wait an election timeout for anyone: it campaigns as soon as
    // its committed configuration is applied (the core refuses to campaign before that).
    const voters = this.raft.status().config.voters;
    this.soleVoterCampaignPending = voters.length === 1 && voters[0] === this.memberId;
    this.loop.schedule();
    this.quota.refreshIfStale();
    if (this.quota.enabled && this.quota.quotaBytes > QUOTA_BACKEND_BYTES_SUGGESTED_MAX) {
      this.logger.warn('--quota-backend-bytes exceeds the suggested maximum (etcd: larger databases degrade)', { quotaBytes: this.quota.quotaBytes, suggestedMaxBytes: QUOTA_BACKEND_BYTES_SUGGESTED_MAX });
    }
    this.logger.info('member started', { name: this.name, memberId: this.memberId.toString(16), clusterId: this.clusterId.toString(16), quotaBackendBytes: this.quota.quotaBytes });
    for (const record of this.alarmSet.list()) this.logger.warn('alarm raised (restored)', { alarm: record.alarm, memberId: record.memberId.toString(16) });
    this.hooks.onStarted?.({ memberId: this.memberId, clusterId: this.clusterId });
    void this.publishAttributes();
  }

  private membershipPeersFromInitialCluster(): InitialMember[] {
    // After a snapshot the member table knows the peers; --initial-cluster may be long gone.
    if (this.log.snapshot().metadata.index > 0) {
      return this.membership
        .list()
        .filter((member) => member.id !== this.memberId && member.peerUrls.length > 0)
        .map((member) => ({ id: member.id, name: member.name, peerUrls: member.peerUrls }));
    }
    const token = this.options.initialClusterToken;
    return this.options.initialCluster
      .map((member) => ({ id: memberIdFor(member.peerUrls, token), name: member.name, peerUrls: member.peerUrls }))
      .filter((member) => member.id !== this.memberId);
  }

  /**
   * stop stops the member: when it leads and another voter is caught up, leadership is
   * handed over first (bounded by two election timeouts), so the cluster does not wait an
   * election timeout to notice. Every pending call fails with STOPPED.
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
    if (transferLeadership && this.raft.currentRole() === 'leader' && !this.removed) {
      const target = this.bestTransferTarget();
      if (target !== undefined) {
        try {
          await this.handOver(target, { timeoutMs: 2 * this.options.electionTimeoutMs });
        } catch (error) {
          this.logger.warn('leadership hand-over before stopping failed', { reason: String(error) });
        }
      }
    }
    this.stopped = true;
    this.catchUpPacer.stop();
    if (this.ticker !== undefined) this.clock.clearInterval(this.ticker);
    for (const timer of this.timers) this.clock.clearTimeout(timer);
    this.timers.clear();
    const stoppedError = serverStopped();
    // A write this member passed on or put in the log may still be applied by the others:
    // its outcome is unknown, which "server stopped" (a refusal) must not claim.
    this.proposals.failAll(stoppedError, requestTimedOut({ detail: 'the member stopped while the write was pending; its outcome is unknown' }));
    this.reads.failAll(stoppedError);
    this.changes.failAll(stoppedError);
    for (const wake of [...this.leaderWaiters]) wake();
    for (const wake of [...this.publishWaiters]) wake(stoppedError);
    this.wakeAppliedWaiters(stoppedError);
    this.snapshotSender.failAll();
    this.traces?.close();
    await this.snapshotter.stop();
    await this.loop.stop();
    await this.transport.close();
    await this.log.close();
    // A compaction (NOSPACE cleared, Defragment) runs on the state machine closed next.
    await this.quota.idle();
    await this.prepared?.restored.discard();
    this.prepared = undefined;
    await this.pins.releaseAll();
    await this.scrubber.stop();
    await this.stateMachine.close();
    await this.snapshots.close();
    // The store's close ended every receive, so a restore beside one settles now.
    await this.dropStreamedRestore(this.streamed?.snapshotId);
    this.logger.info('member stopped', { name: this.name });
  }

  // bestTransferTarget is the most caught-up voter in reach that `acceptable` allows.
  private bestTransferTarget(acceptable: (id: NodeId) => boolean = () => true): NodeId | undefined {
    const status = this.raft.status();
    let best: NodeId | undefined;
    let bestMatch = -1;
    for (const [id, progress] of status.progress) {
      if (id === this.memberId || progress.isLearner || !progress.recentActive) continue;
      if (!status.config.voters.includes(id) || !acceptable(id)) continue;
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
      snapshots: { ...this.snapshotter.status(), sending: this.snapshotSender.sending() },
      alarms: this.alarmSet.list(),
      receivingSnapshot: this.streamed !== undefined || this.installing,
    };
  }

  /** mirrorStateNow is the copy state this member's state machine holds in mirror mode, as applied here (no Raft round; undefined: not a mirror). */
  mirrorStateNow(): Uint8Array | undefined {
    return this.stateMachine.mirrorState();
  }

  /** migrationJournalNow is the migration journal's record as applied here (no Raft round; undefined: none). */
  migrationJournalNow(): string | undefined {
    return this.journal.current().record;
  }

  /**
   * takeSnapshot takes a snapshot of the state applied now (or returns the newest when
   * nothing was applied since) and pins it for reading until close() (or the lease expires
   * and is not renewed by reads): for etcd's Maintenance.Snapshot and `stratakv snapshot save`.
   */
  async takeSnapshot(): Promise<SnapshotStream> {
    this.checkRunning();
    // A member with a CORRUPT alarm hands out none of its state, a backup included.
    if (this.alarmSet.has(this.memberId, 'CORRUPT')) throw corruptAlarm(`member ${this.memberId.toString(16)} has a CORRUPT alarm: take the snapshot from another member`);
    const info = await this.snapshotter.takeNow();
    return this.leasedSnapshotStream(info);
  }

  /** queues reports how many calls wait in each part (the simulator checks they stay bounded). */
  queues(): NodeQueues {
    return { proposals: this.proposals.stateCounts(), reads: this.reads.unsettled, membershipChanges: this.changes.waiting };
  }

  /** currentTerm is the Raft term this member is in (for response headers). */
  currentTerm(): Term {
    return this.raft.currentTerm();
  }

  /** leaderId is the leader this member knows now, 0 when none (etcd's hasleader check). */
  leaderId(): NodeId {
    return this.raft.currentLeader();
  }

  /** revision is the state machine's current revision. */
  revision(): number {
    return this.stateMachine.revision();
  }

  /** members lists the members as this member has applied them. */
  members(): MemberRecord[] {
    return this.membership.list();
  }

  /** removedMemberIds lists the ids removed from the cluster as applied here (a removed id never returns). */
  removedMemberIds(): number[] {
    return this.membership.removedIds();
  }

  /** clusterToken is --initial-cluster-token, from which this member derives the ids of members it adds. */
  get clusterToken(): string {
    return this.options.initialClusterToken;
  }

  /** dbSizeBytes is the size of the state machine's files (0 in memory). */
  dbSizeBytes(): Promise<number> {
    return dbSizeBytes(this.options.storage === undefined ? this.options.dataDir : undefined);
  }

  // ---------------------------------------------------------------- integrity

  /** stateDigest is this member's state digest now, with the applied index and revision it describes. */
  stateDigest(): DigestAt {
    return this.stateMachine.stateDigest();
  }

  /**
   * checkIntegrity proposes a checkpoint now and waits until every member of its
   * configuration reported its digest at that index (or timeoutMs passed): each member's
   * report and the verdict (`stratakv check`). A verdict naming members raises their alarms
   * through the leader, as a periodic checkpoint does.
   */
  async checkIntegrity(options: NodeCallOptions = {}): Promise<CheckpointState> {
    // A removed member's checkpoint would never be applied by the cluster it left.
    if (this.removed) throw memberRemoved();
    this.checkRunning();
    return withSpan(this.options.tracer, 'integrity.check', { parent: options.traceParent }, () =>
      this.integrity.check({ pin: false, waitForReports: true, timeoutMs: options.timeoutMs ?? REQUEST_TIMEOUT_MS, signal: options.signal }),
    );
  }

  /**
   * pinDigestView pins a view of the state digest for a Merkle diff. 'applied': this member's
   * state applied now. 'checkpoint': a checkpoint through Raft at which every member pins its
   * view (pin id `i<index>`, the same on every member).
   */
  async pinDigestView(options: { readonly at: 'applied' | 'checkpoint'; readonly signal?: AbortSignal; readonly timeoutMs?: number }): Promise<{ pinId: string; index: number; revision: number }> {
    this.checkServing();
    if (this.alarmSet.has(this.memberId, 'CORRUPT') && options.at === 'applied') throw corruptAlarm(`member ${this.memberId.toString(16)} has a CORRUPT alarm: diff against another member`);
    const timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
    if (options.at === 'checkpoint') {
      const index = await this.integrity.checkpointNow(true, timeoutMs);
      const view = this.pins.get(`i${index}`, this.clock.now());
      if (view === undefined) throw tooManyPins();
      return { pinId: `i${index}`, index, revision: view.revision };
    }
    if (!this.pins.canPin()) throw tooManyPins();
    const pinId = this.pins.nextAppliedId();
    const view = await this.betweenApplies(() => this.stateMachine.openDigestView());
    if (!this.pins.add(pinId, view, this.clock.now())) {
      await view.close();
      throw tooManyPins();
    }
    return { pinId, index: view.appliedIndex, revision: view.revision };
  }

  /**
   * digestView answers a view pinned here. A checkpoint pin (`i<index>`) this member has not
   * applied yet is waited for, up to timeoutMs; a pin that is gone is NOT_FOUND... reported as
   * INVALID_ARGUMENT naming the pin (src/diff's pinNotFound).
   */
  async digestView(pinId: string, options: { readonly signal?: AbortSignal; readonly timeoutMs?: number } = {}): Promise<DigestView> {
    this.checkServing();
    const checkpoint = /^i(\d+)$/.exec(pinId);
    if (checkpoint !== null) {
      const index = Number(checkpoint[1]);
      if (this.appliedIndex < index) {
        const timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
        const reached = await this.waitForApplied(index - 1, { timeoutMs, ...(options.signal === undefined ? {} : { signal: options.signal }) });
        if (!reached) throw requestTimedOut({ detail: `member ${this.memberId.toString(16)} did not apply checkpoint ${index} within ${timeoutMs} ms` });
      }
      // The view is pinned once the apply that reached the checkpoint ended.
      await this.betweenApplies(() => undefined);
    }
    const view = this.pins.get(pinId, this.clock.now());
    if (view === undefined) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `no digest view is pinned as ${JSON.stringify(pinId)} on member ${this.memberId.toString(16)}: it expired, was released, was never pinned here, or this member installed a snapshot since`, {
        details: { field: 'pin_id', pinId },
      });
    }
    return view;
  }

  /** scrubNow re-reads the whole applied state against its digest now (the scrubber's cycle does it daily). */
  scrubNow(): Promise<ScrubReport> {
    this.checkRunning();
    return this.scrubber.scrubNow();
  }

  /** lastScrub describes the last scrub that ended. */
  lastScrub(): ScrubReport | undefined {
    return this.scrubber.lastReport();
  }

  /** releaseDigestView lets a pinned view go (idempotent). */
  async releaseDigestView(pinId: string): Promise<void> {
    await this.pins.release(pinId);
  }

  // ---------------------------------------------------------------- alarms

  // ---------------------------------------------------------------- migration journal

  /** migrationJournal answers the migration journal, linearizably (migration-journal.ts). */
  async migrationJournal(options: NodeCallOptions = {}): Promise<JournalState> {
    this.checkServing();
    await this.readBarrier(options);
    return this.journal.current();
  }

  /**
   * writeMigrationJournal replaces the journal's record (or clears it, given undefined) if it
   * is still at `expectedVersion`, through the log; resolves with the new version once
   * applied here, or rejects with JOURNAL_CONFLICT.
   */
  async writeMigrationJournal(expectedVersion: number, record: string | undefined, options: NodeCallOptions = {}): Promise<number> {
    this.checkServing();
    checkJournalWrite(expectedVersion, record);
    const outcome = await this.submit(encodeNodeCommand({ type: 'journal', expectedVersion, ...(record !== undefined ? { record } : {}) }), options, 0);
    if (outcome.error !== undefined) throw outcome.error;
    await this.readBarrier(options);
    return expectedVersion + 1;
  }

  // ---------------------------------------------------------------- log holds

  /**
   * holdLog keeps the log from `index` on, on every member, for `ttlMs` from now by this
   * member's wall clock, for `consumer` (one hold per consumer: the next replaces it); index 0
   * releases the consumer's hold. The hold goes through the log (log-holds.ts) and this
   * resolves once it is applied here, with its deadline (0 for a release). INVALID_ARGUMENT
   * for a bad consumer, index or ttl (naming the field); UNAVAILABLE when LOG_HOLDS_MAX other
   * consumers hold the log.
   */
  async holdLog(consumer: string, index: Index, ttlMs: number, options: NodeCallOptions = {}): Promise<{ readonly expiresAtMs: number }> {
    this.checkServing();
    checkLogHoldRequest(consumer, index, ttlMs);
    const nowMs = this.wallClockMs();
    // Refused here rather than proposed for nothing; the apply checks again (proposals race).
    if (index > 0 && !this.logHolds.admits(consumer, nowMs)) throw tooManyLogHolds(consumer);
    const expiresAtMs = index === 0 ? 0 : nowMs + ttlMs;
    const outcome = await this.submit(encodeNodeCommand({ type: 'logHold', consumer, index, expiresAtMs }), options, 0);
    if (outcome.error !== undefined) throw outcome.error;
    await this.readBarrier(options);
    return { expiresAtMs };
  }

  /** logHoldList lists the log holds unexpired now, as applied here, lowest index first. */
  logHoldList(): LogHold[] {
    return this.logHolds.unexpired(this.wallClockMs());
  }

  /** alarms lists the alarms raised, as applied here (it may lag the cluster; alarmList does not). */
  alarms(): readonly AlarmRecord[] {
    return this.alarmSet.list();
  }

  /** alarmList lists the alarms raised, linearizably (etcd's Alarm GET, which goes through its log). */
  async alarmList(options: NodeCallOptions = {}): Promise<AlarmRecord[]> {
    this.checkServing();
    await this.readBarrier(options);
    return this.alarmSet.list();
  }

  /**
   * changeAlarm raises (activate) or clears (deactivate) `alarm` for `memberId` (0: the whole
   * cluster) through the log, and resolves once the change is applied on this member too.
   * It answers as etcd's Alarm does: the alarm, when activating; when deactivating, the alarm
   * if it was raised (as far as a linearizable read just before the change saw), else nothing.
   */
  async changeAlarm(action: AlarmAction, memberId: number, alarm: AlarmType, options: NodeCallOptions = {}): Promise<AlarmRecord[]> {
    this.checkServing();
    if (action !== 'activate' && action !== 'deactivate') throw new StrataError(ErrorCode.INVALID_ARGUMENT, `unknown alarm action ${String(action)}`);
    if (!isAlarmMemberId(memberId)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `an alarm's member id is 0 (the cluster) or a member id, not ${memberId}`);
    if (!isAlarmType(alarm)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `unknown alarm ${String(alarm)}`);
    let wasRaised = true;
    if (action === 'deactivate') {
      await this.readBarrier(options);
      wasRaised = this.alarmSet.has(memberId, alarm);
    }
    await this.proposeAlarmChange({ action, memberId, alarm }, options);
    return wasRaised ? [{ memberId, alarm }] : [];
  }

  /**
   * compactStorage has the state machine's LevelDB compact everything now, giving back the
   * space of deleted and overwritten keys (etcd's Defragment, for this member only), and
   * measures the size again for the quota. Clearing a NOSPACE alarm does the same on every
   * member. Answers false when the state machine cannot compact (in memory); rejects when
   * LevelDB fails to.
   */
  async compactStorage(): Promise<boolean> {
    this.checkRunning();
    const compacted = compactStateMachine(this.stateMachine);
    await this.quota.settleAfter(compacted);
    return compacted;
  }

  // proposeAlarmChange puts an alarm command in the log and resolves once it is applied here:
  // its outcome comes from the member that applied it first (the leader, for a forwarded
  // one), so a linearizable read then waits until this member has applied as far.
  private async proposeAlarmChange(change: AlarmChange, options: NodeCallOptions): Promise<void> {
    const outcome = await this.submit(encodeNodeCommand({ type: 'alarm', action: change.action, memberId: change.memberId, alarm: change.alarm }), options, 0);
    if (outcome.error !== undefined) throw outcome.error;
    await this.readBarrier(options);
  }

  // readBarrier resolves once this member has applied everything committed when it was called
  // (a ReadIndex round, as a linearizable read waits).
  private async readBarrier(options: NodeCallOptions): Promise<void> {
    const readable = this.reads.wait(options);
    this.loop.schedule();
    await readable;
  }

  // applyAlarmChange applies one alarm change, deterministically at its index on every member
  // (an alarm command, or a decision the driver takes at apply time): answers whether the set
  // changed. A raised alarm is logged loudly; a CORRUPT alarm of this member makes it give up
  // leadership (handOverIfCorrupt, after this Ready); a cleared NOSPACE alarm has LevelDB
  // compact this member's state machine, so that the space freed by deletes is given back
  // before the quota is checked again.
  private applyAlarmChange(change: AlarmChange): boolean {
    const changed = change.action === 'activate' ? this.alarmSet.activate(change.memberId, change.alarm) : this.alarmSet.deactivate(change.memberId, change.alarm);
    if (!changed) return false;
    const fields = { alarm: change.alarm, memberId: change.memberId.toString(16), self: change.memberId === this.memberId };
    if (change.action === 'activate') {
      const consequence =
        change.alarm === 'NOSPACE'
          ? 'Puts are refused on every member until it is cleared'
          : change.memberId === CLUSTER_ALARM_MEMBER_ID
            ? 'writes are refused on every member until it is cleared'
            : `member ${fields.memberId} serves no reads or writes until it is repaired and the alarm is cleared`;
      this.logger.warn(`ALARM RAISED: ${change.alarm}: ${consequence}`, fields);
      this.metrics?.alarmRaised();
    } else {
      this.logger.warn(`alarm cleared: ${change.alarm}`, fields);
      if (change.alarm === 'NOSPACE') void this.compactStorageQuietly();
    }
    this.hooks.onAlarm?.(change);
    return true;
  }

  // compactStorageQuietly compacts in the background; a failure is logged by the quota.
  private async compactStorageQuietly(): Promise<void> {
    if (this.stopped || this.stopping !== undefined) return;
    await this.compactStorage().catch(() => false);
  }

  // handOverIfCorrupt hands leadership to a healthy voter when this member leads with its own
  // CORRUPT alarm raised: it keeps voting and replicating (the quorum needs it), but its state
  // must not be what the cluster serves or sends in snapshots. One attempt at a time, tried
  // again every tick until it no longer leads: with no healthy voter in reach (none answered
  // since check-quorum last looked, or none is left) it warns, once an election timeout.
  private handOverIfCorrupt(): void {
    if (this.stopped || this.stopping !== undefined || this.corruptHandOver !== undefined) return;
    if (this.raft.currentRole() !== 'leader' || !this.alarmSet.has(this.memberId, 'CORRUPT')) return;
    const target = this.bestTransferTarget((id) => !this.alarmSet.has(id, 'CORRUPT'));
    if (target === undefined) {
      if (this.tickCount - this.corruptHandOverWarnedTick >= this.electionTicks) {
        this.corruptHandOverWarnedTick = this.tickCount;
        this.logger.warn('this member leads with a CORRUPT alarm, and no healthy voter is in reach to take over; trying again', { memberId: this.memberId.toString(16) });
      }
      return;
    }
    this.logger.warn('this member leads with a CORRUPT alarm: handing leadership over', { to: target.toString(16) });
    const handOver = this.handOver(target, { timeoutMs: 2 * this.options.electionTimeoutMs })
      .catch((error: unknown) => {
        if (!this.stopped) this.logger.warn('handing leadership over from a CORRUPT member failed; trying again', { to: target.toString(16), reason: String(error) });
      })
      .finally(() => {
        if (this.corruptHandOver === handOver) this.corruptHandOver = undefined;
      });
    this.corruptHandOver = handOver;
  }

  /** waitForLeader resolves once a leader is known (or rejects with TIMEOUT, CANCELED or STOPPED). */
  async waitForLeader(options: NodeCallOptions = {}): Promise<NodeId> {
    const deadlineMs = this.clock.now() + (options.timeoutMs ?? REQUEST_TIMEOUT_MS);
    for (let attempt = 0; attempt < LEADER_WAITS_MAX; attempt += 1) {
      this.checkRunning();
      if (options.signal?.aborted === true) throw requestCanceled();
      const leaderId = this.raft.currentLeader();
      if (leaderId !== NO_NODE) return leaderId;
      const remaining = deadlineMs - this.clock.now();
      if (remaining <= 0) break;
      await this.leaderNoticeOrTimeout(Math.min(remaining, this.options.heartbeatIntervalMs));
    }
    throw requestTimedOut({ detail: 'no leader was elected in time' });
  }

  /**
   * waitPublished resolves once this member's name and client URLs are in its own member
   * table, through the log (etcd's ReadyNotify: a member serves as itself only after
   * publishing), or rejects with TIMEOUT, CANCELED or STOPPED.
   */
  async waitPublished(options: NodeCallOptions = {}): Promise<void> {
    this.checkRunning();
    const published = (): boolean => this.membership.isPublished(this.memberId);
    if (published()) return;
    if (options.signal?.aborted === true) throw requestCanceled();
    if (this.publishWaiters.size >= PUBLISH_WAITERS_MAX) throw new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests');
    await new Promise<void>((resolve, reject) => {
      const wake = (error?: StrataError): void => {
        if (error === undefined && !published()) return;
        this.publishWaiters.delete(wake);
        this.clock.clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = (): void => wake(requestCanceled());
      const timer = this.clock.setTimeout(() => wake(requestTimedOut({ detail: 'this member has not published its attributes yet' })), options.timeoutMs ?? REQUEST_TIMEOUT_MS);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.publishWaiters.add(wake);
    });
  }

  // leaderNoticeOrTimeout resolves when this member learns of a leader, or after timeoutMs.
  private leaderNoticeOrTimeout(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        this.clock.clearTimeout(timer);
        this.leaderWaiters.delete(wake);
        resolve();
      };
      const timer = this.clock.setTimeout(wake, timeoutMs);
      this.leaderWaiters.add(wake);
    });
  }

  // ---------------------------------------------------------------- log-delta stream
  //
  // A read-only view of the committed log for the log-delta stream (src/diff's LogDeltaSource,
  // served by src/server/admin-service.ts): how far it may read (committed, durable and
  // applied here: never past what this member knows is committed), the entries, a snapshot
  // file to send when they are compacted, and a wait for the next apply. It changes nothing.

  // Callers of waitForApplied(), woken after every apply and on stop; at most APPLIED_WAITERS_MAX.
  private readonly appliedWaiters = new Set<(error?: StrataError) => void>();

  /** streamCommittedIndex is the last index a log stream may send: committed and applied here. */
  streamCommittedIndex(): Index {
    return this.appliedIndex;
  }

  /** logFirstIndex is the first index the log still holds (the entries before it are compacted). */
  logFirstIndex(): Index {
    return this.log.firstIndex();
  }

  /**
   * readCommittedEntries answers the entries from..toInclusive (toInclusive at most
   * streamCommittedIndex()), stopping before their size passes maxBytes but at least one.
   * COMPACTED when `from` is no longer in the log (send a snapshot instead).
   */
  readCommittedEntries(from: Index, toInclusive: Index, maxBytes: number): readonly Entry[] {
    this.checkRunning();
    assert(Number.isSafeInteger(from) && from >= 1, 'entries are read from a log index');
    assert(toInclusive >= from && toInclusive <= this.appliedIndex, 'a stream reads only entries applied here');
    assert(maxBytes > 0, 'a read has a byte budget');
    const firstIndex = this.log.firstIndex();
    if (from < firstIndex) throw new StrataError(ErrorCode.COMPACTED, `log index ${from} is compacted: the log starts at ${firstIndex}`, { details: { index: from, firstIndex } });
    return this.log.entries(from, toInclusive + 1, maxBytes);
  }

  // leasedSnapshotStream opens a stored snapshot for reading, leased while it is read (the
  // retention keeps it) until close().
  private async leasedSnapshotStream(info: SnapshotInfo): Promise<SnapshotStream> {
    const leaseMs = this.snapshotter.policy.leaseMs;
    const lease = this.snapshots.lease(info.id, leaseMs);
    let reader;
    try {
      reader = await this.snapshots.open(info.id);
    } catch (error) {
      lease.release();
      throw error;
    }
    let closed = false;
    return {
      info,
      read: async (offset, maxBytes) => {
        lease.renew(leaseMs);
        return reader.readBlocks(offset, maxBytes);
      },
      close: async () => {
        if (closed) return;
        closed = true;
        lease.release();
        await reader.close();
      },
    };
  }

  /**
   * openSnapshotForStream pins a snapshot for a log stream: snapshot `id` when it is still
   * one the log continues from and is applied here, else the newest such one, else one taken
   * now. Read it like takeSnapshot's; close() releases it.
   */
  async openSnapshotForStream(options: { readonly id?: string } = {}): Promise<SnapshotStream> {
    this.checkRunning();
    if (this.alarmSet.has(this.memberId, 'CORRUPT')) throw corruptAlarm(`member ${this.memberId.toString(16)} has a CORRUPT alarm: stream from another member`);
    const usable = (info: SnapshotInfo): boolean => info.index <= this.appliedIndex && info.index + 1 >= this.log.firstIndex();
    const wanted = options.id === undefined ? undefined : this.snapshots.get(options.id);
    const info = wanted !== undefined && usable(wanted) ? wanted : (this.snapshots.list().find(usable) ?? (await this.snapshotter.takeNow()));
    return this.leasedSnapshotStream(info);
  }

  /**
   * waitForApplied resolves true once streamCommittedIndex() > afterIndex, false after
   * timeoutMs; rejects CANCELED when `signal` aborts, STOPPED when the member stops, and
   * UNAVAILABLE when APPLIED_WAITERS_MAX callers wait already.
   */
  async waitForApplied(afterIndex: Index, options: { readonly signal?: AbortSignal; readonly timeoutMs: number }): Promise<boolean> {
    this.checkRunning();
    if (this.appliedIndex > afterIndex) return true;
    if (options.signal?.aborted === true) throw requestCanceled();
    if (this.appliedWaiters.size >= APPLIED_WAITERS_MAX) throw new StrataError(ErrorCode.UNAVAILABLE, `${APPLIED_WAITERS_MAX} log streams wait for commits here already; retry later or ask another member`);
    return new Promise<boolean>((resolve, reject) => {
      const finish = (result: boolean | StrataError): void => {
        this.appliedWaiters.delete(wake);
        this.clock.clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (result instanceof StrataError) reject(result);
        else resolve(result);
      };
      const wake = (error?: StrataError): void => {
        if (error !== undefined) finish(error);
        else if (this.appliedIndex > afterIndex) finish(true);
      };
      const onAbort = (): void => finish(requestCanceled());
      const timer = this.clock.setTimeout(() => finish(false), Math.max(0, options.timeoutMs));
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.appliedWaiters.add(wake);
    });
  }

  // wakeAppliedWaiters tells waitForApplied's callers that the applied index moved (or, with
  // an error, that the member stops).
  private wakeAppliedWaiters(error?: StrataError): void {
    for (const wake of [...this.appliedWaiters]) wake(error);
  }

  // ---------------------------------------------------------------- KV

  /**
   * kv runs a KV request: writes (Put, DeleteRange, Txn) are proposed through Raft (on a
   * follower, passed to the leader); a Range is linearizable (ReadIndex) unless
   * `serializable`, which answers from this member's applied state. A Txn whose branches
   * only read still goes through the log, as in etcd. Raised alarms refuse calls with
   * CORRUPT_ALARM or NO_SPACE, and so does --quota-backend-bytes (src/node/README.md, Alarms).
   * Mirror commands (the copier's) go through the log too; while this member's applied state
   * is a mirror, a client write is refused with MIRROR_READ_ONLY before anything is proposed.
   */
  async kv(request: KvRequest, options: NodeCallOptions = {}): Promise<KvResponse> {
    if (request.type === 'range') return this.range(request, options);
    this.metrics?.kvRequest(request.type === 'deleteRange' ? 'delete' : request.type === 'txn' ? 'txn' : 'put');
    this.checkServing();
    this.checkAlarms(request);
    // The fast path of the mirror's rule (the state machine refuses at apply, deterministically):
    // nothing is proposed for a client write this member already knows will be refused.
    if (clientWrites(request) && this.stateMachine.mirrorState() !== undefined) throw mirrorReadOnly();
    if (request.type === 'txn' && !clientWrites(request) && options.mirrorReader !== true && this.stateMachine.mirrorState() !== undefined) throw mirrorReadOnly('read');
    this.lastForegroundMs = this.clock.now();
    const data = encodeValidKvCommand({ id: this.nextCommandId(), request }, this.limits);
    const cost = quotaCost(request);
    if (cost > 0 && (this.quota.whenSettled !== undefined || !this.quota.available(cost))) {
      await this.checkQuotaSlowly(request, cost);
    }
    const outcome = await this.submit(data, options, 0).catch((error: unknown) => {
      this.metrics?.proposalFailed();
      throw error;
    });
    if (outcome.error !== undefined) throw outcome.error;
    assert(outcome.response !== undefined, 'an applied KV command has a response or an error');
    return outcome.response;
  }

  /** range reads keys: linearizable by default, from this member's state when serializable. */
  async range(request: RangeRequest, options: NodeCallOptions = {}): Promise<RangeResponse> {
    this.metrics?.kvRequest('range');
    this.checkServing();
    this.checkAlarms(request);
    this.lastForegroundMs = this.clock.now();
    validateKvRequest(request, this.limits);
    if (request.serializable !== true) {
      const readable = this.reads.wait(options);
      this.loop.schedule();
      await readable;
      // A CORRUPT alarm applied while the read waited: its state is not served either.
      this.checkAlarms(request);
      // A mirror's state lags its source: not linearizable for the source's clients.
      if (options.mirrorReader !== true && this.stateMachine.mirrorState() !== undefined) throw mirrorReadOnly('read');
    }
    const machine = this.stateMachine;
    try {
      return await machine.range(request);
    } catch (error) {
      // A stored value that fails its CRC, a LevelDB block that does not read: nothing was
      // served, and this member raises its own CORRUPT alarm (the client tries another).
      if (isStrataError(error, ErrorCode.CORRUPTION)) this.raiseOwnCorrupt(machine, 'A READ FOUND THIS MEMBER\'S STATE DAMAGED: it raises a CORRUPT alarm for itself', error.message);
      throw error;
    }
  }

  /**
   * mirrorStatus answers the mirror state (undefined: not a mirror) and the revision and
   * applied index it goes with, linearizably: the read index a linearizable Range waits for,
   * then this member's applied state, all read in one step.
   */
  async mirrorStatus(options: NodeCallOptions = {}): Promise<{ readonly state: Uint8Array | undefined; readonly revision: number; readonly index: number }> {
    this.checkServing();
    await this.readBarrier(options);
    // As a Range: a member with its own CORRUPT alarm serves no reads.
    if (this.alarmSet.has(this.memberId, 'CORRUPT')) throw corruptAlarm(`member ${this.memberId.toString(16)} has a CORRUPT alarm: it serves no reads until it is repaired and the alarm is cleared`);
    const machine = this.stateMachine;
    return { state: machine.mirrorState(), revision: machine.revision(), index: machine.appliedIndex() };
  }

  // checkAlarms refuses what the raised alarms refuse (src/node/README.md, Alarms), before
  // anything is proposed or read: every KV call on a member with its own CORRUPT alarm,
  // writes while the cluster's CORRUPT alarm (member 0) is raised, and writes that cost space
  // (a Put, a Txn with a Put) while any NOSPACE alarm is raised.
  private checkAlarms(request: KvRequest): void {
    if (this.alarmSet.size === 0) return;
    if (this.alarmSet.has(this.memberId, 'CORRUPT')) {
      throw corruptAlarm(`member ${this.memberId.toString(16)} has a CORRUPT alarm: it serves no reads or writes until it is repaired and the alarm is cleared`);
    }
    if (writes(request) && this.alarmSet.has(CLUSTER_ALARM_MEMBER_ID, 'CORRUPT')) {
      throw corruptAlarm('the cluster has a CORRUPT alarm (its members disagree with no majority): writes are refused until it is cleared');
    }
    if (quotaCost(request) > 0 && this.alarmSet.hasType('NOSPACE')) throw noSpace('a NOSPACE alarm is raised: free space, then clear it (etcdctl alarm disarm)');
  }

  // checkQuotaSlowly is the quota check of a write that does not obviously fit: it waits for a
  // compaction being measured, and when the write still does not fit, raises this member's
  // NOSPACE alarm (as etcd's quota check does) and refuses it.
  private async checkQuotaSlowly(request: KvRequest, cost: number): Promise<void> {
    const settling = this.quota.whenSettled;
    if (settling !== undefined) await settling;
    this.checkServing();
    this.checkAlarms(request);
    if (this.quota.available(cost)) return;
    this.logger.warn('database space exceeded: refusing the write and raising NOSPACE', { sizeBytes: this.quota.sizeBytes, costBytes: cost, quotaBytes: this.quota.quotaBytes });
    await this.raiseNoSpace();
    throw noSpace(`the database would pass --quota-backend-bytes (${this.quota.sizeBytes} bytes + ${cost} > ${this.quota.quotaBytes})`);
  }

  // raiseNoSpace proposes this member's NOSPACE alarm unless it is raised (one proposal at a
  // time) and waits for it; a failure is logged (the next write over the quota tries again).
  private async raiseNoSpace(): Promise<void> {
    if (this.alarmSet.has(this.memberId, 'NOSPACE')) return;
    this.raisingNoSpace ??= this.proposeAlarmChange({ action: 'activate', memberId: this.memberId, alarm: 'NOSPACE' }, {})
      .catch((error: unknown) => this.logger.warn('raising the NOSPACE alarm failed', { reason: String(error) }))
      .finally(() => {
        this.raisingNoSpace = undefined;
      });
    await this.raisingNoSpace;
  }

  private nextCommandId(): number {
    // Ids only help a reader of the log; outcomes are matched by (index, term).
    this.commandSequence = (this.commandSequence + 1) % Number.MAX_SAFE_INTEGER;
    return this.commandSequence;
  }

  private checkRunning(): void {
    if (this.stopped || this.stopping !== undefined) throw serverStopped();
  }

  // checkServing refuses a request before anything is done with it. A removed member says so
  // even once stopped: clients take "permanently removed" as a refusal and try another member
  // (src/client/retry-policy.ts), which "server stopped" does not promise.
  private checkServing(): void {
    if (this.removed) throw memberRemoved();
    this.checkRunning();
  }

  // ---------------------------------------------------------------- proposals

  // submit accepts a write and routes it. A write whose caller's trace is sampled
  // (options.traceParent) on a member that traces gets a `raft.propose` span, ended when the
  // write is answered; `from` is the member that forwarded it here.
  private submit(
    data: Uint8Array,
    options: { readonly signal?: AbortSignal | undefined; readonly timeoutMs?: number | undefined; readonly traceParent?: SpanContext | undefined },
    hops: number,
    from?: NodeId,
  ): Promise<Outcome> {
    if (this.traces === undefined || options.traceParent === undefined || !isSampled(options.traceParent)) {
      const { proposal, outcome } = this.proposals.create(data, options, hops);
      this.router.route(proposal);
      return outcome;
    }
    const span = this.traces.startPropose(options.traceParent, hops, from);
    const { proposal, outcome } = this.proposals.create(data, options, hops, span);
    this.router.route(proposal);
    return outcome.then(
      (answer) => {
        endSpan(span, answer.error);
        return answer;
      },
      (error: unknown) => {
        endSpan(span, error);
        throw error;
      },
    );
  }

  // flushProposals hands queued proposals to the core as one batch, just before ready().
  private flushProposals(): void {
    if (!this.proposals.hasQueued) return;
    const batch = this.proposals.takeQueued();
    if (batch.length === 0) return;
    try {
      const { firstIndex, term } = this.raft.proposeBatch(batch.map((proposal) => proposal.data));
      for (const [offset, proposal] of batch.entries()) {
        this.proposals.markInFlight(proposal, firstIndex + offset, term);
        if (proposal.trace !== undefined) this.traces?.appended(firstIndex + offset, term, proposal.trace);
      }
    } catch (error) {
      if (!isStrataError(error)) throw error;
      switch (error.code) {
        case ErrorCode.LEADER_TRANSFER_IN_PROGRESS:
        case ErrorCode.NOT_LEADER:
          // Nothing was appended: hold the batch until the new leader is known, then pass it on.
          for (const proposal of batch) this.proposals.hold(proposal);
          return;
        case ErrorCode.PROPOSAL_DROPPED:
          for (const proposal of batch) this.proposals.settle(proposal, new StrataError(ErrorCode.PROPOSAL_DROPPED, 'etcdserver: too many requests', { cause: error }));
          return;
        default:
          throw error;
      }
    }
  }

  // ---------------------------------------------------------------- applying

  private async applyCommitted(entries: readonly Entry[]): Promise<void> {
    assert(!this.applyingCommitted, 'applies do not overlap');
    this.applyingCommitted = true;
    try {
      await this.applyCommittedNow(entries);
    } finally {
      this.applyingCommitted = false;
      for (const run of this.betweenAppliesQueue.splice(0)) run();
    }
  }

  // betweenApplies runs `capture` synchronously at a moment no apply is in progress (now, or
  // right after the current one): the state machine, Raft's configuration and the member
  // table then agree, and the state machine may open views.
  private betweenApplies<T>(capture: () => T): Promise<T> {
    if (!this.applyingCommitted) return Promise.resolve(capture());
    return new Promise<T>((resolve, reject) => {
      this.betweenAppliesQueue.push(() => {
        try {
          resolve(capture());
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  private async applyCommittedNow(entries: readonly Entry[]): Promise<void> {
    const applied = this.traces?.applying(entries);
    await (applied === undefined ? this.applyEntries(entries) : reportTo(this.applyEntries(entries), applied));
  }

  private async applyEntries(entries: readonly Entry[]): Promise<void> {
    const outcomes = new Map<Index, Outcome>();
    const digests: DigestAt[] = [];
    // A checkpoint that pins digest views ends an apply batch: the view is opened exactly at it.
    for (let start = 0; start < entries.length; ) {
      let end = Math.min(entries.length, start + APPLY_ENTRIES_MAX);
      let pinAt: Index | undefined;
      for (let at = start; at < end; at += 1) {
        const entry = entries[at] as Entry;
        if (entry.type === EntryType.Normal && isCheckpointEntry(entry.data) && entry.index > this.stateMachine.appliedIndex() && decodeCheckpoint(entry.data).pin) {
          end = at + 1;
          pinAt = entry.index;
          break;
        }
      }
      const results = await this.stateMachine.apply(entries.slice(start, end));
      for (const result of results) {
        if (result.checkpoint !== undefined) digests.push(result.checkpoint);
        else outcomes.set(result.index, result.error !== undefined ? { error: result.error } : { response: result.response as KvResponse });
      }
      if (pinAt !== undefined) this.pinCheckpointView(pinAt);
      start = end;
    }
    let clientWrites = false;
    for (const entry of entries) {
      if (entry.type === EntryType.ConfChange) this.applyConfChangeEntry(entry);
      else if (entry.type === EntryType.Normal && isCheckpointEntry(entry.data)) this.applyCheckpointEntry(entry);
      else if (entry.data.byteLength > 0 && !isKvCommand(entry.data)) {
        const outcome = this.applyNodeCommand(decodeNodeCommand(entry.data));
        if (outcome !== undefined) outcomes.set(entry.index, outcome);
      }
      else if (entry.data.byteLength > 0) clientWrites = true;
      const reroute = this.proposals.applied(entry.index, entry.term, outcomes.get(entry.index) ?? {});
      if (reroute !== undefined) this.router.route(reroute);
    }
    const last = entries[entries.length - 1];
    assert(last !== undefined, 'applyCommitted got entries');
    assert(last.index > this.appliedIndex, 'the applied index only moves forward');
    this.appliedIndex = last.index;
    this.traces?.forgetThrough(last.index);
    // Writes from any member's clients pass through here (not the cluster's own entries:
    // membership changes, a member publishing itself, a new leader's empty entry).
    if (clientWrites) this.lastForegroundMs = this.clock.now();
    this.reads.onApplied(this.appliedIndex);
    this.hooks.onApplied?.(this.appliedIndex);
    this.wakeAppliedWaiters();
    // This member's digest at each checkpoint it applied: reported to the cluster.
    for (const digest of digests) this.integrity.onLocalDigest(digest);
    // A read of the stored state failed while applying: the state machine stopped applying
    // and serves nothing; this member raises its own CORRUPT alarm (once) and waits to be
    // rebuilt (stratakv member rebuild), taking part in Raft meanwhile.
    const corruption = this.stateMachine.corruption();
    if (corruption !== undefined) this.raiseOwnCorrupt(this.stateMachine, 'THIS MEMBER\'S STATE MACHINE IS CORRUPT: it stops applying and raises a CORRUPT alarm for itself', corruption.message);
    // Between two applies: the state machine, Raft's configuration and the member table
    // agree, so a snapshot may capture them here.
    this.snapshotter.noteApplied(this.appliedIndex);
    // A received snapshot Raft did not install (the log caught up instead) is dropped.
    if (this.prepared !== undefined && !this.installing && this.prepared.index <= this.appliedIndex) {
      const stale = this.prepared;
      this.prepared = undefined;
      void stale.restored.discard().catch((error: unknown) => this.logger.warn('dropping an unused restored state machine failed', { reason: String(error) }));
    }
  }

  // ---------------------------------------------------------------- snapshots

  // sendMessages sends a Ready's messages; a snapshot message becomes a snapshot stream.
  private sendMessages(messages: readonly Message[]): void {
    let plain: Message[] | undefined;
    for (const message of messages) {
      if (message.type === 'snapshot') {
        plain ??= messages.filter((candidate) => candidate.type !== 'snapshot');
        if (this.alarmSet.has(this.memberId, 'CORRUPT')) this.refuseSnapshotSend(message);
        else this.snapshotSender.send(message);
      }
    }
    const untraced = plain ?? messages;
    const toSend = this.traces === undefined ? untraced : this.traces.replicating(untraced);
    if (toSend.length === 0) return;
    this.heartbeats?.sent(toSend);
    const paced = this.pacedPeers(toSend);
    const now = paced === undefined ? toSend : this.catchUpPacer.pace(toSend, paced);
    if (now.length > 0) this.transport.send(now);
  }

  // pacedPeers: the peers whose messages the catch-up pacer holds to the snapshot rate, when
  // this leader sends appends with entries: learners that are no voter of either half of a
  // joint configuration (their answers never count for a quorum). Undefined when none is.
  private pacedPeers(messages: readonly Message[]): ReadonlySet<NodeId> | undefined {
    const appending = this.raft.currentRole() === 'leader' && messages.some((message) => message.type === 'append' && message.entries.length > 0);
    if (!appending && this.catchUpPacer.queuedMessages === 0) return undefined;
    const { config } = this.raft.status();
    const paced = new Set<NodeId>();
    if (this.raft.currentRole() === 'leader') {
      for (const learner of config.learners) if (!config.voters.includes(learner) && !config.votersOutgoing.includes(learner)) paced.add(learner);
    }
    // A peer that is no longer paced (promoted, removed, or this member stepped down) goes first.
    this.catchUpPacer.releaseAllBut(paced);
    return paced.size === 0 ? undefined : paced;
  }

  // refuseSnapshotSend: a member with a CORRUPT alarm never sends its state, even in the
  // moments it still leads (handOverIfCorrupt is handing over): the send is reported failed
  // to Raft, after a heartbeat (never inside the Ready that asked for it).
  private refuseSnapshotSend(message: SnapshotMessage): void {
    this.logger.debug('not sending a snapshot: this member has a CORRUPT alarm', { to: message.to.toString(16) });
    const timer = this.clock.setTimeout(() => {
      this.timers.delete(timer);
      if (this.stopped) return;
      this.raft.reportSnapshot(message.to, false);
      this.loop.schedule();
    }, this.options.heartbeatIntervalMs);
    this.timers.add(timer);
  }

  // onPeerSnapshot opens the place a leader's snapshot stream is received into. Once the whole
  // file is in and checked, it is restored into a fresh state machine beside the serving one,
  // and only then is the Raft message stepped: Raft's install (prepareSnapshotInstall,
  // installSnapshot) then only swaps it in. A failure anywhere leaves the old state serving.
  private async onPeerSnapshot(from: NodeId, message: SnapshotMessage, byteLength: number, signal: AbortSignal): Promise<SnapshotSink> {
    this.checkServing();
    const { index, term } = message.snapshot.metadata;
    const descriptor = decodeSnapshotDescriptor(message.snapshot.data);
    const id = snapshotIdOf(term, index);
    if (descriptor.snapshotId !== id || descriptor.byteLength !== byteLength) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot stream from ${from.toString(16)} describes ${descriptor.snapshotId} of ${descriptor.byteLength} bytes, not ${id} of ${byteLength}`);
    }
    const finish = async (): Promise<void> => {
      if (signal.aborted || this.stopped) throw serverStopped();
      await this.prepareFromReceived(descriptor, index, term);
      this.onMessages([message]);
    };
    const existing = this.snapshots.get(id);
    if (existing !== undefined) {
      if (existing.sha256 !== descriptor.sha256) {
        throw new StrataError(ErrorCode.CORRUPTION, `snapshot ${id} here has SHA-256 ${existing.sha256}, the leader's is ${descriptor.sha256}`, { details: { snapshotId: id } });
      }
      return {
        verifiedBytes: () => byteLength,
        write: async () => {
          throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot ${id} is already here`);
        },
        finish,
        abort: async () => undefined,
      };
    }
    await this.supersedeStreamedRestore(id, index);
    const receiver = await this.snapshots.receive(id, byteLength);
    if (this.streamed?.snapshotId === id) this.streamed.receiver = receiver;
    this.startStreamedRestore(receiver, id, index, term);
    return {
      verifiedBytes: () => receiver.verifiedBytes,
      write: (offset, bytes) => receiver.write(offset, bytes),
      finish: async () => {
        try {
          const info = await receiver.finish();
          if (info.sha256 !== descriptor.sha256) {
            throw new StrataError(ErrorCode.CORRUPTION, `snapshot ${id} received with SHA-256 ${info.sha256}, the leader's is ${descriptor.sha256}`, { details: { snapshotId: id } });
          }
        } catch (error) {
          // Ended here whatever finish() left (it keeps a receive open when called before the
          // last byte): the restore beside it then settles, and is dropped.
          await receiver.abort().catch(() => undefined);
          await this.dropStreamedRestore(id);
          throw error;
        }
        await finish();
      },
      abort: () => receiver.abort(),
    };
  }

  // startStreamedRestore starts restoring from `receiver` while it receives, when the snapshot
  // may be needed and no other such restore runs; a resumed receive keeps feeding the running
  // one. Without it, the finished file is restored instead (prepareFromReceived).
  private startStreamedRestore(receiver: SnapshotReceiver, snapshotId: string, index: Index, term: Term): void {
    if (this.streamed !== undefined || this.installing || !this.mayNeedSnapshot(index, term)) return;
    const stream = receiver.records();
    if (stream === undefined) return;
    const restored = restoreWhileReceiving(this.restorer, stream, index, term);
    const entry: StreamedRestore = { snapshotId, index, receiver, restored, startedMs: this.clock.now() };
    this.streamed = entry;
    // A failure is handled where it is claimed (falling back to the file), or here.
    restored.then(
      () => undefined,
      (error: unknown) => {
        if (this.streamed === entry) this.streamed = undefined;
        this.logger.debug('restore beside a receive ended', { snapshotId, reason: String(error) });
      },
    );
  }

  // supersedeStreamedRestore ends the restore beside an older snapshot's receive when the
  // leader streams a newer one (it moved on: the older receive would wait for bytes that never
  // come, holding a half-built state machine): its receive is aborted, the restore discarded.
  private async supersedeStreamedRestore(snapshotId: string, index: Index): Promise<void> {
    const entry = this.streamed;
    if (entry === undefined || entry.snapshotId === snapshotId || entry.index >= index) return;
    this.logger.info('a newer snapshot replaces the one being received', { replaced: entry.snapshotId, by: snapshotId });
    await entry.receiver.abort().catch(() => undefined);
    await this.dropStreamedRestore(entry.snapshotId);
  }

  // claimStreamedRestore takes the restore that ran beside the receive of `snapshotId`, if it
  // succeeded; undefined otherwise (the caller restores from the file).
  private async claimStreamedRestore(snapshotId: string): Promise<RestoredStateMachine | undefined> {
    const entry = this.streamed;
    if (entry === undefined || entry.snapshotId !== snapshotId) return undefined;
    this.streamed = undefined;
    try {
      return await entry.restored;
    } catch (error) {
      this.logger.warn('restore beside the receive failed; restoring from the received file', { snapshotId, reason: String(error) });
      return undefined;
    }
  }

  // dropStreamedRestore discards the restore beside the receive of `snapshotId` (its receive
  // failed, or the member stops); it waits for it to settle.
  private async dropStreamedRestore(snapshotId: string | undefined): Promise<void> {
    if (snapshotId === undefined) return;
    const restored = await this.claimStreamedRestore(snapshotId).catch(() => undefined);
    await restored?.discard().catch((error: unknown) => this.logger.warn('dropping an unused restored state machine failed', { reason: String(error) }));
  }

  // snapshotSendRate is the rate of a snapshot send now: the policy's rate under load while
  // clients are served (a request or an applied write within FOREGROUND_WINDOW_MS), its full
  // rate otherwise, so that a quiet cluster moves a snapshot as fast as it may and a busy one
  // keeps its latency.
  private snapshotSendRate(): number {
    const { sendBytesPerSecond, sendBytesPerSecondUnderLoad } = this.snapshotter.policy;
    const busy = this.clock.now() - this.lastForegroundMs < FOREGROUND_WINDOW_MS;
    return busy ? Math.min(sendBytesPerSecond, sendBytesPerSecondUnderLoad) : sendBytesPerSecond;
  }

  // mayNeedSnapshot: Raft will not install a snapshot it has committed, or whose last entry
  // its log holds, so there is nothing to prepare (were it wrong, the install restores it then).
  private mayNeedSnapshot(index: Index, term: Term): boolean {
    if (index <= this.raft.status().commit) return false;
    return !(index <= this.log.lastIndex() && index >= this.log.firstIndex() && this.log.term(index) === term);
  }

  // prepareFromReceived restores a received snapshot beside the serving state machine (one at
  // a time; a newer one replaces an older prepared one), or takes the restore that already ran
  // beside its receive.
  private prepareFromReceived(descriptor: SnapshotDescriptor, index: Index, term: Term): Promise<void> {
    const attributes = { [ATTR_SNAPSHOT_ID]: descriptor.snapshotId, [ATTR_SNAPSHOT_INDEX]: index };
    const next = this.preparing.then(() => withSpan(this.options.tracer, 'snapshot.restore', { attributes }, async () => {
      const streamedStartedMs = this.streamed?.snapshotId === descriptor.snapshotId ? this.streamed.startedMs : undefined;
      const streamed = await this.claimStreamedRestore(descriptor.snapshotId);
      if (this.installing || this.prepared?.snapshotId === descriptor.snapshotId || !this.mayNeedSnapshot(index, term)) {
        await streamed?.discard();
        return;
      }
      const restoreStartedMs = (streamed === undefined ? undefined : streamedStartedMs) ?? this.clock.now();
      const restored = streamed ?? (await restoreFromSnapshot(this.snapshots, this.restorer, descriptor.snapshotId, index));
      const previous = this.prepared;
      this.prepared = { snapshotId: descriptor.snapshotId, index, descriptor, restored, restoredWhileReceiving: streamed !== undefined, restoreStartedMs };
      await previous?.restored.discard();
    }));
    this.preparing = next.catch(() => undefined);
    return next;
  }

  // prepareSnapshotInstall runs before Raft's snapshot is saved to the log: the state
  // machine restored from it must be ready (it normally is, from onPeerSnapshot).
  private async prepareSnapshotInstall(snapshot: Snapshot): Promise<void> {
    this.installing = true;
    await this.snapshotter.abandon();
    await this.preparing;
    const descriptor = decodeSnapshotDescriptor(snapshot.data);
    if (this.prepared?.snapshotId === descriptor.snapshotId) return;
    const restoreStartedMs = this.clock.now();
    const restored = await restoreFromSnapshot(this.snapshots, this.restorer, descriptor.snapshotId, snapshot.metadata.index);
    await this.prepared?.restored.discard();
    this.prepared = { snapshotId: descriptor.snapshotId, index: snapshot.metadata.index, descriptor, restored, restoredWhileReceiving: false, restoreStartedMs };
  }

  // installSnapshot runs once the log records the snapshot: the restored state machine
  // replaces the serving one, and the member table is the snapshot's.
  private installSnapshot(snapshot: Snapshot): Promise<void> {
    const attributes = { [ATTR_SNAPSHOT_INDEX]: snapshot.metadata.index, ...(this.prepared !== undefined ? { [ATTR_SNAPSHOT_ID]: this.prepared.snapshotId } : {}) };
    return withSpan(this.options.tracer, 'snapshot.install', { attributes }, () => this.installPrepared(snapshot));
  }

  private async installPrepared(snapshot: Snapshot): Promise<void> {
    const prepared = this.prepared;
    assert(prepared !== undefined && prepared.index === snapshot.metadata.index, 'a snapshot is installed after it was prepared');
    this.prepared = undefined;
    this.installing = false;
    const previous = this.stateMachine;
    this.stateMachine = prepared.restored.stateMachine;
    // Pinned views and a scrub hold the replaced state machine open: let them go.
    await this.pins.releaseAll();
    await this.scrubber.abandon();
    await previous.close();
    await prepared.restored.commit();
    const before = new Set(this.membership.list().map((member) => member.id));
    this.membership.restoreState(prepared.descriptor.membership);
    for (const member of this.membership.list()) {
      before.delete(member.id);
      if (member.id !== this.memberId && member.peerUrls.length > 0) this.transport.setPeer(member.id, member.peerUrls);
    }
    for (const id of before) this.onMemberRemoved(id);
    this.alarmSet.restore(prepared.descriptor.membership.alarms ?? []);
    this.journal.restore(prepared.descriptor.membership.journal);
    const index = snapshot.metadata.index;
    this.appliedIndex = Math.max(this.appliedIndex, index);
    this.traces?.forgetThrough(this.appliedIndex);
    const unknown = this.proposals.coveredBySnapshot(index, requestTimedOut({ detail: 'a snapshot replaced the entries this write was in' }));
    this.reads.onApplied(this.appliedIndex);
    this.snapshotter.noteInstalled(index, this.clock.now() - prepared.restoreStartedMs);
    const { restoredWhileReceiving } = prepared;
    this.logger.info('installed snapshot', { snapshotId: prepared.snapshotId, index, term: snapshot.metadata.term, restoredWhileReceiving, proposalsSettledUnknown: unknown, alarms: this.alarmSet.size });
    this.hooks.onApplied?.(this.appliedIndex);
    this.wakeAppliedWaiters();
    this.metrics?.snapshotInstalled();
    this.hooks.onSnapshotInstalled?.({ index, term: snapshot.metadata.term, snapshotId: prepared.snapshotId, restoredWhileReceiving });
  }

  // applyNodeCommand applies one node command; a journal write answers its own outcome.
  private applyNodeCommand(command: NodeCommand): Outcome | undefined {
    switch (command.type) {
      case 'publish':
        this.applyPublish(command);
        return undefined;
      case 'alarm':
        this.applyAlarmChange(command);
        return undefined;
      case 'digestReport':
        this.integrity.onReportApplied(command);
        return undefined;
      case 'journal': {
        const applied = this.journal.apply(command);
        if ('error' in applied) return { error: applied.error };
        this.metrics?.migrationStepApplied();
        this.hooks.onMigrationStep?.({ version: this.journal.current().version, record: command.record });
        return {};
      }
      case 'logHold': {
        const applied = this.logHolds.apply(command, this.wallClockMs());
        return applied.error !== undefined ? { error: applied.error } : undefined;
      }
    }
  }

  // raiseOwnCorrupt raises this member's CORRUPT alarm once per state machine found damaged
  // (by an apply or a read; the scrubber raises it too): loudly logged, tried again after a
  // failed proposal.
  private raiseOwnCorrupt(machine: KvStateMachine, message: string, reason: string): void {
    if (this.corruptRaisedFor === machine || this.alarmSet.has(this.memberId, 'CORRUPT')) return;
    this.corruptRaisedFor = machine;
    this.logger.warn(message, { reason });
    void this.proposeAlarmChange({ action: 'activate', memberId: this.memberId, alarm: 'CORRUPT' }, {}).catch((error: unknown) => {
      if (this.corruptRaisedFor === machine) this.corruptRaisedFor = undefined;
      this.logger.warn('raising this member\'s CORRUPT alarm failed; it is tried again when the damage is met again', { reason: String(error) });
    });
  }

  // applyCheckpointEntry records an integrity checkpoint with the configuration it was applied in.
  private applyCheckpointEntry(entry: Entry): void {
    const payload = decodeCheckpoint(entry.data);
    const members = this.membership.list();
    const voters = members.filter((member) => !member.isLearner).map((member) => member.id);
    const learners = members.filter((member) => member.isLearner).map((member) => member.id);
    this.integrity.onCheckpointApplied(entry.index, payload, voters, learners, this.stateMachine.revision());
  }

  // pinCheckpointView pins the digest view of a checkpoint that asked for one, exactly at its
  // index (applyCommittedNow ended the batch there). A member with too many pins skips it:
  // the diff then reports that this member has no view at that checkpoint.
  private pinCheckpointView(index: Index): void {
    if (!this.pins.canPin()) {
      this.logger.warn('not pinning a digest view at a checkpoint: too many are pinned', { index, pinned: DIGEST_PINS_MAX });
      return;
    }
    this.pins.add(`i${index}`, this.stateMachine.openDigestView(), this.clock.now());
  }

  private applyPublish(command: PublishCommand): void {
    this.membership.applyPublish(command);
    if (command.memberId === this.memberId) for (const wake of [...this.publishWaiters]) wake();
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
    this.changes.onApplied(entry.index, entry.term, confState);
  }

  private onMemberRemoved(id: number): void {
    if (id === this.memberId) {
      this.markRemoved();
      return;
    }
    // Tell the removed member, which may not learn the commit from Raft any more (the
    // leader stops replicating to it), then forget it once it had time to hear.
    if (this.raft.currentRole() === 'leader') {
      this.transport.request(id, 'member', encodeMemberOperation({ op: 'removed', id }), { timeoutMs: this.options.electionTimeoutMs }).catch(() => undefined);
    }
    this.forgetRemovedPeerLater(id, 0);
  }

  // A removed leader keeps leading until its hand-over is done, which needs this member's
  // acknowledgement: its peer is kept for as long as it is the leader here (the core drops it
  // once another leads or an election starts), checked every grace period, a bounded number
  // of times.
  private forgetRemovedPeerLater(id: number, checks: number): void {
    const timer = this.clock.setTimeout(() => {
      this.timers.delete(timer);
      if (this.stopped || this.membership.get(id) !== undefined) return;
      if (this.raft.currentLeader() === id && checks < REMOVED_LEADER_CHECKS_MAX) this.forgetRemovedPeerLater(id, checks + 1);
      else this.transport.removePeer(id);
    }, REMOVED_GRACE_ELECTIONS * this.options.electionTimeoutMs);
    this.timers.add(timer);
  }

  private markRemoved(): void {
    if (this.removed) return;
    this.removed = true;
    this.logger.warn('this member was removed from the cluster; it keeps answering peers for a grace period, then stops', { name: this.name });
    this.proposals.failHeld(memberRemoved());
    this.hooks.onRemoved?.();
  }

  // ---------------------------------------------------------------- leadership

  private campaignIfSoleVoter(): void {
    const status = this.raft.status();
    if (status.applied < status.commit) return;
    this.soleVoterCampaignPending = false;
    if (status.role === 'follower' && status.leaderId === NO_NODE && status.config.voters.length === 1) this.raft.campaign();
  }

  // noticeLeadership reports a change of role or leader once, whether a step, a tick or a
  // Ready revealed it: hooks, leader waiters, reads to ask again, held writes to route.
  private noticeLeadership(): void {
    const role = this.raft.currentRole();
    const leaderId = this.raft.currentLeader();
    const leaderChanged = leaderId !== this.announced.leaderId;
    if (role === this.announced.role && !leaderChanged) return;
    this.announced = { role, leaderId };
    this.hooks.onRoleChange?.({ role, leaderId, term: this.raft.currentTerm() });
    if (role !== 'leader') this.traces?.leadershipLost();
    if (leaderId !== NO_NODE) for (const wake of [...this.leaderWaiters]) wake();
    if (role === 'leader') this.integrity.onBecameLeader();
    if (leaderChanged) {
      if (leaderId !== NO_NODE) this.metrics?.leaderChanged();
      this.logger.info('leader changed', { leaderId: leaderId.toString(16), role });
      // Read requests sent to the old leader may be lost with it: ask again.
      this.reads.askAgain();
    }
    // Held proposals go to the new leader (or into our own next Ready).
    if (leaderId !== NO_NODE) this.router.releaseHeld();
  }

  // ---------------------------------------------------------------- clock

  private onTick(): void {
    if (this.stopped) return;
    this.tickCount += 1;
    this.raft.tick();
    this.sendEagerMessages();
    this.noticeLeadership();
    this.proposals.sweepDeadlines();
    this.reads.onTick(this.tickCount);
    this.changes.sweepDeadlines();
    // Held writes are routed again each tick: their deadlines are checked, and a leader that
    // answered NOT_LEADER may have been replaced without a change this member noticed.
    if (this.proposals.hasHeld) this.router.releaseHeld();
    this.handOverIfCorrupt();
    this.integrity.tick();
    if (this.tickCount % this.electionTicks === 0) void this.pins.sweep(this.clock.now());
    if (this.removed && this.raft.currentRole() !== 'leader') {
      if (this.removedAtTick < 0) this.removedAtTick = this.tickCount;
      if (this.tickCount - this.removedAtTick >= REMOVED_GRACE_ELECTIONS * this.electionTicks) void this.stop({ transferLeadership: false });
    }
    this.loop.schedule();
  }

  // ---------------------------------------------------------------- peers

  private onMessages(messages: readonly Message[]): void {
    if (this.stopped) return;
    this.heartbeats?.received(messages);
    this.traces?.onMessages(messages);
    for (const message of messages) {
      if (message.to !== this.memberId) continue;
      this.raft.step(message);
    }
    this.sendEagerMessages();
    // Writes held while there was no leader go to a newly known leader at once, rather than
    // when the Ready that reports the change is taken (after the current one's fsync).
    this.noticeLeadership();
    this.loop.schedule();
  }

  // Messages that may leave before anything is persisted (Ready.messages' kind) go at once,
  // even while a Ready is being handled: a TimeoutNow, a vote request or a new leader's
  // first append would otherwise wait for that Ready's fsync and apply.
  private sendEagerMessages(): void {
    if (this.stopped) return;
    const messages = this.raft.takeMessages();
    if (messages.length > 0) this.sendMessages(messages);
  }

  private async onPeerRequest(from: NodeId, kind: PeerRequestKind, body: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    switch (kind) {
      case 'propose':
        this.checkServing();
        return this.router.serve(body, (data, hops, traceparent) => this.submit(data, { signal, traceParent: this.traces === undefined ? undefined : parseTraceparent(traceparent) }, hops, from));
      case 'member': {
        const operation = decodeMemberOperation(body);
        if (operation.op === 'removed') {
          if (operation.id === this.memberId) {
            this.logger.warn('a peer reports that this member was removed', { from: from.toString(16) });
            this.markRemoved();
          }
          return encodeMembersReply([]);
        }
        this.checkServing();
        return encodeMembersReply(await this.changes.operate(operation, { signal }));
      }
      case 'snapshot':
        return this.sendSnapshotForRebuild(from);
      case 'status':
        // The leader's probe (replication-status.ts): cheap, answered even while catching up.
        return encodeStatusProbeReply(this.appliedIndex);
      case 'read':
        throw new StrataError(ErrorCode.UNIMPLEMENTED, `peer request ${kind} is not served`);
    }
  }

  // sendSnapshotForRebuild answers a member rebuilding its state: this leader takes a snapshot
  // (or uses the newest, if nothing was applied since), streams it to the member as it would
  // for Raft, and answers its id and index once the member holds the whole file, checked.
  private async sendSnapshotForRebuild(to: NodeId): Promise<Uint8Array> {
    this.checkServing();
    if (this.raft.currentRole() !== 'leader') throw new StrataError(ErrorCode.NOT_LEADER, 'etcdserver: not leader');
    if (this.alarmSet.has(this.memberId, 'CORRUPT')) throw corruptAlarm(`member ${this.memberId.toString(16)} has a CORRUPT alarm: it sends no snapshot`);
    if (this.membership.get(to) === undefined) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `member ${to.toString(16)} is not in the cluster`);
    const info = await this.snapshotter.takeNow();
    const snapshot = this.log.snapshot();
    if (snapshot.metadata.index !== info.index) throw new StrataError(ErrorCode.UNAVAILABLE, `the leader's newest snapshot moved on while it was taken (${info.index}, now ${snapshot.metadata.index}); try again`);
    const sent = await this.snapshotSender.sendAndWait({ type: 'snapshot', from: this.memberId, to, term: this.raft.currentTerm(), snapshot });
    if (!sent) throw new StrataError(ErrorCode.UNAVAILABLE, `the snapshot ${info.id} did not reach member ${to.toString(16)} (a send to it runs already, or it failed); try again`);
    return new TextEncoder().encode(JSON.stringify({ snapshotId: info.id, index: info.index }));
  }

  /**
   * rebuildState discards this member's state machine and takes the leader's: the leader
   * streams a snapshot (checked by its SHA-256 on receipt and by its state digest when
   * restored), the restored state catches up with this member's own log, and replaces the
   * serving one between two applies. Then a checkpoint compares this member's digest with the
   * others'; when it agrees with the majority, this member's CORRUPT alarm is cleared
   * (`stratakv member rebuild`). A leader hands leadership over first.
   */
  async rebuildState(options: NodeCallOptions = {}): Promise<RebuildReport> {
    this.checkServing();
    if (this.rebuilding) throw new StrataError(ErrorCode.UNAVAILABLE, 'this member is rebuilding its state already');
    this.rebuilding = true;
    try {
      return await withSpan(this.options.tracer, 'state.rebuild', { parent: options.traceParent }, () => this.rebuildNow(options));
    } finally {
      this.rebuilding = false;
    }
  }

  private async rebuildNow(options: NodeCallOptions): Promise<RebuildReport> {
    const timeoutMs = options.timeoutMs ?? 10 * REQUEST_TIMEOUT_MS;
    const deadlineMs = this.clock.now() + timeoutMs;
    const remaining = (): number => Math.max(1, deadlineMs - this.clock.now());
    if (this.raft.currentRole() === 'leader') {
      const target = this.bestTransferTarget((id) => !this.alarmSet.has(id, 'CORRUPT'));
      if (target === undefined) throw new StrataError(ErrorCode.UNAVAILABLE, 'this member leads and no healthy voter can take over: it cannot rebuild from a leader');
      await this.handOver(target, { timeoutMs: remaining() });
    }
    const leaderId = await this.waitForLeader({ timeoutMs: remaining() });
    this.logger.warn('REBUILDING THIS MEMBER\'S STATE from the leader\'s snapshot', { leader: leaderId.toString(16) });
    const reply = await this.transport.request(leaderId, 'snapshot', new Uint8Array(0), { timeoutMs: remaining() });
    const { snapshotId, index } = JSON.parse(new TextDecoder().decode(reply)) as { snapshotId: string; index: number };
    const restored = await restoreFromSnapshot(this.snapshots, this.restorer, snapshotId, index);
    let previous: KvStateMachine | undefined;
    try {
      // The driver reaches the snapshot's index, then the restored state the driver's.
      if (this.appliedIndex < index) await this.waitForApplied(index - 1, { timeoutMs: remaining() });
      for (let round = 0; round < REBUILD_CATCH_UP_ROUNDS_MAX && previous === undefined; round += 1) {
        const machine = restored.stateMachine;
        while (machine.appliedIndex() < this.appliedIndex) {
          const from = machine.appliedIndex() + 1;
          if (from < this.log.firstIndex()) throw new StrataError(ErrorCode.UNAVAILABLE, `this member's log no longer holds index ${from} (compacted): rebuild again`);
          const entries = this.log.entries(from, Math.min(this.appliedIndex, from + APPLY_ENTRIES_MAX - 1) + 1, 64 * 1024 * 1024);
          await machine.apply(entries);
        }
        previous = await this.betweenApplies(() => {
          if (machine.appliedIndex() !== this.appliedIndex) return undefined;
          const serving = this.stateMachine;
          this.stateMachine = machine;
          return serving;
        });
      }
      if (previous === undefined) throw new StrataError(ErrorCode.UNAVAILABLE, 'the rebuilt state could not catch up with this member\'s applied index; rebuild again');
    } catch (error) {
      await restored.discard().catch(() => undefined);
      throw error;
    }
    // A snapshot of the replaced state being taken is abandoned (it must not be recorded), and
    // views of it let go; then a snapshot of the rebuilt state replaces this member's older
    // ones as the one it restarts from and sends.
    await this.snapshotter.abandon();
    await this.pins.releaseAll();
    await this.scrubber.abandon();
    await previous.close();
    await restored.commit();
    this.logger.warn('state rebuilt from the leader\'s snapshot', { snapshotId, index, appliedIndex: this.appliedIndex });
    await this.snapshotter.takeNow().catch((error: unknown) => this.logger.warn('a snapshot of the rebuilt state failed; the next one is taken as usual', { reason: String(error) }));
    // Checked against the cluster at one agreed index; agreeing with the majority clears the alarm.
    const check = await this.integrity.check({ pin: false, waitForReports: false, timeoutMs: remaining() });
    let state = check;
    for (let attempt = 0; attempt < 50 && state.verdict === 'pending' && this.clock.now() < deadlineMs; attempt += 1) {
      await sleep(this.clock, Math.min(100, remaining()));
      state = this.integrity.state(check.index) ?? state;
    }
    const mine = state.reports.find((report) => report.memberId === this.memberId);
    const agrees = state.majority !== undefined && mine !== undefined && mine.digest === state.majority.digest && mine.revision === state.majority.revision && mine.keyCount === state.majority.keyCount;
    let alarmCleared = false;
    if (agrees && this.alarmSet.has(this.memberId, 'CORRUPT')) {
      await this.proposeAlarmChange({ action: 'deactivate', memberId: this.memberId, alarm: 'CORRUPT' }, { timeoutMs: remaining() });
      alarmCleared = true;
    }
    return { snapshotId, snapshotIndex: index, checkpoint: state, agrees, alarmCleared };
  }

  // ---------------------------------------------------------------- cluster

  /** addMember adds a member with these peer URLs (as a learner or a voter) and answers it. */
  async addMember(peerUrls: readonly string[], isLearner: boolean, options: NodeCallOptions & { readonly learnersMax?: number } = {}): Promise<{ member: MemberRecord; members: MemberRecord[] }> {
    if (peerUrls.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid');
    const members = await this.memberOperation({ op: 'add', peerUrls, isLearner, ...(options.learnersMax !== undefined ? { learnersMax: options.learnersMax } : {}) }, options);
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

  /**
   * replaceMembers promotes caught-up learners and removes members in one joint-consensus
   * change (thesis §4.3), so the cluster never runs on a configuration weaker than both the
   * old and the new one. With leave 'auto' it resolves once the joint configuration is left;
   * with 'explicit' once it is entered, and leaveJointConfiguration() ends it.
   */
  async replaceMembers(
    change: { readonly promote: readonly number[]; readonly remove: readonly number[]; readonly demote?: readonly number[]; readonly leave?: JointLeave },
    options: NodeCallOptions = {},
  ): Promise<MemberRecord[]> {
    return this.memberOperation({ op: 'replace', promote: [...change.promote], remove: [...change.remove], demote: [...(change.demote ?? [])], leave: change.leave ?? 'auto' }, options);
  }

  /** leaveJointConfiguration leaves a joint configuration entered with leave 'explicit'; when not joint it answers at once. */
  async leaveJointConfiguration(options: NodeCallOptions = {}): Promise<MemberRecord[]> {
    return this.memberOperation({ op: 'leave' }, options);
  }

  /** replicationStatus answers the leader's view of replication to every member, probed now (replication-status.ts); NOT_LEADER elsewhere. */
  async replicationStatus(options: NodeCallOptions = {}): Promise<ReplicationStatus> {
    this.checkServing();
    return replicationStatus(
      {
        selfId: this.memberId,
        clock: this.clock,
        transport: this.transport,
        raftStatus: () => this.raft.status(),
        appliedIndex: () => this.appliedIndex,
        members: () => this.membership.list(),
        snapshotSends: () => this.snapshotSender.sending(),
      },
      options.signal,
    );
  }

  /** configuration is Raft's configuration as applied here: voters, learners and, while joint, the outgoing voters. */
  configuration(): ConfState {
    return this.raft.status().config;
  }

  // Async, so that a refusal (STOPPED, MEMBER_REMOVED) rejects the promise instead of throwing at the caller.
  private async memberOperation(operation: MemberOperation, options: NodeCallOptions): Promise<MemberRecord[]> {
    this.checkServing();
    return this.changes.operate(operation, options);
  }

  /**
   * transferLeadership hands leadership to `targetId` (this member must lead; the target
   * must be a voter) and resolves once the target leads. Proposals that arrive meanwhile
   * are held and passed on to the new leader, so none fails.
   */
  async transferLeadership(targetId: number, options: NodeCallOptions = {}): Promise<void> {
    this.checkServing();
    return this.handOver(targetId, options);
  }

  private async handOver(targetId: number, options: NodeCallOptions): Promise<void> {
    if (this.raft.currentRole() !== 'leader') throw new StrataError(ErrorCode.NOT_LEADER, 'etcdserver: not leader', { details: { leaderId: this.raft.currentLeader() } });
    const status = this.raft.status();
    if (!status.config.voters.includes(targetId)) throw new StrataError(ErrorCode.BAD_LEADER_TRANSFEREE, 'etcdserver: bad leader transferee');
    if (targetId === this.memberId) return;
    this.raft.transferLeader(targetId);
    this.sendEagerMessages();
    this.loop.schedule();
    const deadlineMs = this.clock.now() + (options.timeoutMs ?? 2 * this.options.electionTimeoutMs);
    for (let attempt = 0; attempt < LEADER_WAITS_MAX; attempt += 1) {
      if (this.raft.currentLeader() === targetId) return;
      if (options.signal?.aborted === true) throw requestCanceled();
      if (this.clock.now() > deadlineMs) break;
      await this.leaderNoticeOrTimeout(Math.min(this.options.heartbeatIntervalMs, Math.max(1, deadlineMs - this.clock.now())));
    }
    throw requestTimedOut({ detail: 'leader transfer took too long' });
  }

  private async publishAttributes(): Promise<void> {
    const zone = this.options.zone === undefined || this.options.zone === '' ? {} : { zone: this.options.zone };
    const command = encodeNodeCommand({ type: 'publish', memberId: this.memberId, name: this.name, clientUrls: [...this.options.advertiseClientUrls], ...zone });
    for (let attempt = 0; attempt < PUBLISH_ATTEMPTS_MAX && !this.stopped && this.stopping === undefined; attempt += 1) {
      try {
        await this.waitForLeader({ timeoutMs: this.options.electionTimeoutMs * 5 });
        const outcome = await this.submit(command, { timeoutMs: this.options.electionTimeoutMs * 5 }, 0);
        if (outcome.error === undefined) {
          this.logger.info('published member attributes', { name: this.name, ...zone });
          return;
        }
      } catch (error) {
        if (isStrataError(error, ErrorCode.STOPPED) || isStrataError(error, ErrorCode.MEMBER_REMOVED)) return;
        this.logger.debug('publishing member attributes failed; retrying', { reason: String(error) });
      }
      await sleep(this.clock, this.options.heartbeatIntervalMs * Math.min(10, attempt + 1));
    }
  }
}

// definedOnly drops undefined fields (exactOptionalPropertyTypes keeps `undefined` distinct from absent).
function definedOnly(options: { readonly signal?: AbortSignal | undefined; readonly timeoutMs?: number | undefined }): NodeCallOptions {
  return { ...(options.signal !== undefined ? { signal: options.signal } : {}), ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) };
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
  if (options.zone !== undefined && options.zone !== '' && !isZoneName(options.zone)) fail(`--zone must be 1 to 63 of A-Z a-z 0-9 . _ -, got ${JSON.stringify(options.zone)}`);
  if (options.quotaBackendBytes !== undefined && !Number.isSafeInteger(options.quotaBackendBytes)) fail(`--quota-backend-bytes must be an integer, got ${options.quotaBackendBytes}`);
}

// writes tells whether a request changes keys (a Put or DeleteRange, or a Txn with one in either
// branch, or a mirror command).
function writes(request: KvRequest): boolean {
  switch (request.type) {
    case 'range':
      return false;
    case 'put':
    case 'deleteRange':
    case 'mirrorBegin':
    case 'mirrorApply':
    case 'mirrorEnd':
    case 'mirrorReplay':
      return true;
    case 'txn':
      return [...request.success, ...request.failure].some((operation) => operation.type !== 'range');
  }
}

// clientWrites tells whether a request is a client's write: one a mirror refuses.
function clientWrites(request: KvRequest): boolean {
  return request.type !== 'mirrorBegin' && request.type !== 'mirrorApply' && request.type !== 'mirrorEnd' && request.type !== 'mirrorReplay' && writes(request);
}

// mirrorReadOnly refuses a client write (or linearizable read) on a mirror, saying where they go instead.
function mirrorReadOnly(what: 'write' | 'read' = 'write'): StrataError {
  if (what === 'read') {
    return new StrataError(
      ErrorCode.MIRROR_READ_ONLY,
      'this cluster is a read-only mirror of another cluster (stratakv migrate copy) and lags it: linearizable reads go to the source cluster (a serializable read of the mirror is served)',
    );
  }
  return new StrataError(
    ErrorCode.MIRROR_READ_ONLY,
    'this cluster is a read-only mirror of another cluster (stratakv migrate copy): send writes to the source cluster until `stratakv migrate copy switch` makes this one take them',
  );
}

// corruptAlarm is etcd's ErrCorrupt for a call a CORRUPT alarm refuses.
function corruptAlarm(detail: string): StrataError {
  return new StrataError(ErrorCode.CORRUPT_ALARM, detail);
}

// noSpace is etcd's ErrNoSpace.
function noSpace(detail: string): StrataError {
  return new StrataError(ErrorCode.NO_SPACE, detail);
}

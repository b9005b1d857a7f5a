// What a RaftNode is started with, and the hooks it calls.

import type { Tracer } from '@opentelemetry/api';
import type { IntegrityCheckPolicy } from './integrity-checks.ts';
import type { ScrubPolicy } from './scrubber.ts';
import type { Logger, Role } from '../raft/index.ts';
import type { SnapshotInfo, SnapshotStore } from '../snapshot/index.ts';
import type { FatalHandler, KvLimits, KvStateMachine, LogStore } from '../storage/index.ts';
import type { Transport } from '../transport/index.ts';
import type { Clock, RandomSource } from '../util/index.ts';
import type { AlarmChange } from './alarms.ts';
import type { StateMachineRestorer } from './data-dir.ts';
import type { ReadyLoopFailpoints } from './ready-loop.ts';
import type { SnapshotPolicy } from './snapshotter.ts';
import type { Meter } from '@opentelemetry/api';
import type { MigrationMetricView } from '../obs/index.ts';

/** InitialClusterMember is one `name=url,...` entry of --initial-cluster. */
export interface InitialClusterMember {
  readonly name: string;
  readonly peerUrls: readonly string[];
}

/** TransportIdentity is what a transport needs to know about its node. */
export interface TransportIdentity {
  readonly localId: number;
  readonly clusterId: number;
}

/** RaftNodeHooks are the lifecycle callbacks for embedders; each is optional and must not throw. */
export interface RaftNodeHooks {
  /** onStarted: storage is open, the transport is up and ticks have started. */
  readonly onStarted?: (info: { readonly memberId: number; readonly clusterId: number }) => void;
  /** onRoleChange: this node became leader, follower, candidate, or learned a new leader. */
  readonly onRoleChange?: (change: { readonly role: Role; readonly leaderId: number; readonly term: number }) => void;
  /** onApplied: committed entries up to `index` are applied to the state machine. */
  readonly onApplied?: (index: number) => void;
  /** onStopping: stop() was called; leadership is handed over next if this node leads. */
  readonly onStopping?: () => void;
  /** onRemoved: this member was removed from the cluster; the node stops by itself after a grace period. */
  readonly onRemoved?: () => void;
  /** onSnapshotSaved: a snapshot of this member's state is durable and verified (the log before it may be compacted). */
  readonly onSnapshotSaved?: (info: SnapshotInfo) => void;
  /**
   * onSnapshotInstalled: a snapshot received from the leader replaced this member's state;
   * `restoredWhileReceiving` tells whether it was restored beside the transfer (the usual
   * way) or from the received file afterwards.
   */
  readonly onSnapshotInstalled?: (info: { readonly index: number; readonly term: number; readonly snapshotId: string; readonly restoredWhileReceiving: boolean }) => void;
  /**
   * onAlarm: an alarm was raised or cleared here, as its change was applied (every member
   * calls it at the same index; a restart calls it again for the log it replays after its
   * snapshot). Not called for the alarms a snapshot brings back; RaftNode.alarms() lists those.
   */
  readonly onAlarm?: (change: AlarmChange) => void;
  /**
   * onMigrationStep: a write of the migration journal was applied here (every member calls it
   * at the same index): a `stratakv migrate` step began, ended, or the journal was cleared
   * (`record` undefined). `record` is src/migrate's format (its readJournalRecord reads it).
   */
  readonly onMigrationStep?: (step: { readonly version: number; readonly record: string | undefined }) => void;
}

/** RaftNodeOptions configures a RaftNode; flag names in comments are etcd's. */
export interface RaftNodeOptions {
  /** --name: this member's human-readable name. */
  readonly name: string;
  /** --data-dir: where the log and the state machine live; undefined keeps everything in memory. */
  readonly dataDir?: string;
  /**
   * repairCorruptState: when the state machine in dataDir fails its integrity check at start,
   * move it aside (to <dataDir>/corrupt/) and rebuild it from this member's snapshot and log,
   * loudly logged, instead of refusing to start (--repair-corrupt-state; off by default).
   */
  readonly repairCorruptState?: boolean;
  /**
   * FOR BENCHMARKS ONLY: the state machine keeps no digest (KvStateMachineOptions.unsafeSkipDigest),
   * so that its cost can be measured; nothing this member holds can then be verified.
   */
  readonly unsafeSkipDigest?: boolean;
  /** --initial-cluster: the members a new cluster starts with (or, when joining, the members now). */
  readonly initialCluster: readonly InitialClusterMember[];
  /** --initial-cluster-state: `new` bootstraps a cluster, `existing` joins one that added this member. */
  readonly initialClusterState: 'new' | 'existing';
  /** --initial-cluster-token: gives the cluster its id; use one per cluster. */
  readonly initialClusterToken: string;
  /** --initial-advertise-peer-urls: this member's peer URLs (its id derives from them). */
  readonly advertisePeerUrls: readonly string[];
  /** --advertise-client-urls: published to the cluster once the member has started. */
  readonly advertiseClientUrls: readonly string[];
  /**
   * --zone: this member's zone label (its availability zone; membership.ts's isZoneName),
   * published with its name and client URLs at every start, so a member whose zone changed
   * across a restart republishes it. Absent or '': none.
   */
  readonly zone?: string;
  /** --heartbeat-interval in ms: one Raft tick. */
  readonly heartbeatIntervalMs: number;
  /** --election-timeout in ms: rounded to whole ticks. */
  readonly electionTimeoutMs: number;
  /** Request limits (--max-request-bytes is limits.requestBytesMax). */
  readonly limits?: KvLimits;
  /**
   * --quota-backend-bytes: writes that would take the state machine's size on disk past this
   * are refused and raise a NOSPACE alarm. 0 or absent is etcd's default (2 GiB); a negative
   * value disables the quota, as in etcd.
   */
  readonly quotaBackendBytes?: number;
  /** createTransport builds the peer transport once the node knows its ids. */
  readonly createTransport: (identity: TransportIdentity) => Transport;
  /** Reported by Maintenance.Status. */
  readonly version?: string;
  readonly logger?: Logger;
  readonly hooks?: RaftNodeHooks;
  /**
   * The meter this member's metrics are created from (src/obs MemberMetrics: etcd's names,
   * served by a Prometheus endpoint); absent, nothing is counted.
   */
  readonly meter?: Meter;
  /** Reads the migration journal's record (src/migrate's format) for the metrics; absent, no migration metrics. */
  readonly describeMigration?: (record: string) => MigrationMetricView | undefined;
  /** The clock for ticks, deadlines and deferred work (default: SYSTEM_CLOCK; a VirtualClock under simulation). */
  readonly clock?: Clock;
  /**
   * The wall clock in ms since the epoch, which log holds expire by (log-holds.ts): their
   * deadlines are the proposing member's wall clock plus a ttl, so they must mean the same on
   * every member. Default: Date.now with SYSTEM_CLOCK (whose time has an arbitrary origin),
   * else the clock's own time, so that a seeded simulation replays exactly.
   */
  readonly wallClockMs?: () => number;
  /** The source of the core's election jitter (default: seeded from the system's randomness). */
  readonly random?: RandomSource;
  /**
   * Opens the log and the state machine instead of `dataDir` (the simulator's DiskLogStore on
   * a fault-injecting disk, say). The identity is then derived, never read from a file.
   */
  readonly storage?: () => Promise<{
    readonly log: LogStore;
    readonly stateMachine: KvStateMachine;
    /** Default: a MemorySnapshotStore. */
    readonly snapshots?: SnapshotStore;
    /** Default: restores into memory-level. */
    readonly restorer?: StateMachineRestorer;
  }>;
  /** When snapshots are taken, how much log is kept, how snapshots are sent (defaults: SNAPSHOT_POLICY_DEFAULTS). */
  readonly snapshotPolicy?: Partial<SnapshotPolicy>;
  /** How often the leader proposes an integrity checkpoint (DEFAULT_INTEGRITY_CHECK_POLICY: 10,000 entries or a minute). */
  readonly integrityCheckPolicy?: Partial<IntegrityCheckPolicy>;
  /** How often and how fast the scrubber re-reads the state against its digest (DEFAULT_SCRUB_POLICY: daily, 16 MiB/s). */
  readonly scrubPolicy?: Partial<ScrubPolicy>;
  /** Hooks between the Ready loop's steps, for fault injection in tests (ready-loop.ts). */
  readonly failpoints?: ReadyLoopFailpoints;
  /**
   * Called when persisting or applying fails (an fsync error, a broken disk): the member
   * stops taking Readys. The default aborts the process; the simulator treats it as a crash.
   * With `dataDir` the log and the state machine call it too, so one failure may call it
   * twice (the store's report, then the Ready loop's); a handler that returns must allow that.
   */
  readonly onFatal?: FatalHandler;
  /**
   * The tracer this member's spans are made with (src/obs's startTracing, or any
   * OpenTelemetry tracer; entry-traces.ts). Passed explicitly, never taken from the global
   * API, so that members sharing a process keep their own. Absent: no tracing at all.
   */
  readonly tracer?: Tracer;
}

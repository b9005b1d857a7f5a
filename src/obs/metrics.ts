// A member's metrics, through the OpenTelemetry metrics API, named after etcd's where the
// meaning is the same (so a Grafana board or an alert written for etcd works unchanged), plus
// stratakv's own under `stratakv_`.
//
// Cost on the request path: what changes per request (proposals, KV calls, gRPC calls) is
// counted in plain numbers here and read by observable instruments only when Prometheus
// scrapes; what the driver already has (indexes, leader, term, sizes) is read from `sources`
// at the scrape too. The synchronous instruments are histograms recorded once per batch (an
// fdatasync of a group of entries, a LevelDB batch, a heartbeat round trip), not per request.
// Without metrics (no --listen-metrics-urls) a member holds no MemberMetrics at all and its
// call sites are `metrics?.…`: nothing is counted.

import type { Attributes, Histogram, Meter, ObservableResult } from '@opentelemetry/api';

/** MemberMetricSources is what a member reads out at each scrape (the RaftNode answers them). */
export interface MemberMetricSources {
  /** This member's id, in hex (etcd's etcd_server_id label). */
  readonly memberIdHex: string;
  /** The server version (etcd_server_version's label). */
  readonly serverVersion: string;
  hasLeader(): boolean;
  isLeader(): boolean;
  isLearner(): boolean;
  /** The commit index (etcd_server_proposals_committed_total is a gauge of it). */
  committedIndex(): number;
  /** The applied index (etcd_server_proposals_applied_total). */
  appliedIndex(): number;
  /** Proposals waiting for their outcome here (etcd_server_proposals_pending). */
  pendingProposals(): number;
  /** The store's current revision. */
  revision(): number;
  /** The state machine's size on disk (etcd_mvcc_db_total_size_in_bytes). */
  dbSizeBytes(): Promise<number>;
  /** The newest snapshot's index (0: none). */
  snapshotIndex(): number;
  /** Snapshots being received or installed here now. */
  snapshotsInstalling(): number;
  /** Snapshots this member (as leader) is sending now. */
  snapshotsSending(): number;
  /** The alarms raised in the cluster, as applied here. */
  alarms(): readonly { readonly memberIdHex: string; readonly alarm: string }[];
  /** The migration recorded in the cluster's journal, if any. */
  migration(): MigrationMetricView | undefined;
  /** A copy's position when this cluster is a copy's target in mirror mode (undefined: not a mirror). */
  mirrorRevision(): number | undefined;
}

/** MigrationMetricView is the part of a migration the metrics show. */
export interface MigrationMetricView {
  readonly id: string;
  readonly state: string;
  readonly phase: string;
  /** 1-based step of `steps`. */
  readonly step: number;
  readonly steps: number;
}

/** KvRequestKind is what etcd_mvcc_*_total counts. */
export type KvRequestKind = 'put' | 'delete' | 'txn' | 'range';

// etcd's buckets (prometheus.ExponentialBuckets(start, 2, count)), so histograms line up with
// etcd's in a side-by-side board.
function exponentialBuckets(start: number, count: number): number[] {
  return Array.from({ length: count }, (_unused, index) => start * 2 ** index);
}
/** WAL_FSYNC_BUCKETS_SECONDS are etcd's etcd_disk_wal_fsync_duration_seconds buckets (1 ms … 8 s). */
export const WAL_FSYNC_BUCKETS_SECONDS: readonly number[] = exponentialBuckets(0.001, 14);
/** BACKEND_COMMIT_BUCKETS_SECONDS are etcd's etcd_disk_backend_commit_duration_seconds buckets (1 ms … 8 s). */
export const BACKEND_COMMIT_BUCKETS_SECONDS: readonly number[] = exponentialBuckets(0.001, 14);
/** PEER_RTT_BUCKETS_SECONDS are etcd's etcd_network_peer_round_trip_time_seconds buckets (0.1 ms … 3.3 s). */
export const PEER_RTT_BUCKETS_SECONDS: readonly number[] = exponentialBuckets(0.0001, 16);
/** SNAPSHOT_BUCKETS_SECONDS are etcd's etcd_debugging_snap_save_total_duration_seconds buckets (10 ms … 655 s). */
export const SNAPSHOT_BUCKETS_SECONDS: readonly number[] = exponentialBuckets(0.01, 17);

/** PEERS_TRACKED_MAX bounds the peers a round-trip histogram keeps a label for. */
export const PEERS_TRACKED_MAX = 64;

/**
 * MemberMetrics holds one member's instruments. The driver and the storage call its record
 * methods; everything else is read from `sources` when Prometheus scrapes.
 */
export class MemberMetrics {
  readonly #sources: MemberMetricSources;
  readonly #walFsync: Histogram;
  readonly #backendCommit: Histogram;
  readonly #peerRoundTrip: Histogram;
  readonly #snapshotSave: Histogram;
  readonly #peerAttributes = new Map<string, Attributes>();
  #leaderChanges = 0;
  #proposalsFailed = 0;
  #snapshotsSaved = 0;
  #snapshotSaveFailures = 0;
  #snapshotsInstalled = 0;
  #snapshotSendsSucceeded = 0;
  #snapshotSendsFailed = 0;
  #integrityMatches = 0;
  #integrityMismatches = 0;
  #scrubsClean = 0;
  #scrubsFailed = 0;
  #migrationSteps = 0;
  #alarmsRaised = 0;
  readonly #kvRequests: Record<KvRequestKind, number> = { put: 0, delete: 0, txn: 0, range: 0 };

  constructor(meter: Meter, sources: MemberMetricSources) {
    this.#sources = sources;
    this.#walFsync = meter.createHistogram('etcd_disk_wal_fsync_duration_seconds', {
      description: 'The latency distributions of fsync called by WAL.',
      advice: { explicitBucketBoundaries: [...WAL_FSYNC_BUCKETS_SECONDS] },
    });
    this.#backendCommit = meter.createHistogram('etcd_disk_backend_commit_duration_seconds', {
      description: 'The latency distributions of commit called by backend.',
      advice: { explicitBucketBoundaries: [...BACKEND_COMMIT_BUCKETS_SECONDS] },
    });
    this.#peerRoundTrip = meter.createHistogram('etcd_network_peer_round_trip_time_seconds', {
      description: 'Round-Trip-Time histogram between peers (a heartbeat and its answer).',
      advice: { explicitBucketBoundaries: [...PEER_RTT_BUCKETS_SECONDS] },
    });
    this.#snapshotSave = meter.createHistogram('etcd_debugging_snap_save_total_duration_seconds', {
      description: 'The total latency distributions of save called by snapshot (build, write, verify).',
      advice: { explicitBucketBoundaries: [...SNAPSHOT_BUCKETS_SECONDS] },
    });

    const gauge = (name: string, description: string, read: (result: ObservableResult) => void | Promise<void>): void => {
      meter.createObservableGauge(name, { description }).addCallback(read);
    };
    const counter = (name: string, description: string, read: (result: ObservableResult) => void): void => {
      meter.createObservableCounter(name, { description }).addCallback(read);
    };
    const flag = (value: boolean): number => (value ? 1 : 0);

    gauge('etcd_server_has_leader', 'Whether or not a leader exists. 1 is existence, 0 is not.', (result) => result.observe(flag(sources.hasLeader())));
    gauge('etcd_server_is_leader', 'Whether or not this member is a leader. 1 if is, 0 otherwise.', (result) => result.observe(flag(sources.isLeader())));
    gauge('etcd_server_is_learner', 'Whether or not this member is a learner. 1 if is, 0 otherwise.', (result) => result.observe(flag(sources.isLearner())));
    counter('etcd_server_leader_changes_seen_total', 'The number of leader changes seen.', (result) => result.observe(this.#leaderChanges));
    // etcd keeps these two as gauges of the indexes despite the _total in their names.
    gauge('etcd_server_proposals_committed_total', 'The total number of consensus proposals committed.', (result) => result.observe(sources.committedIndex()));
    gauge('etcd_server_proposals_applied_total', 'The total number of consensus proposals applied.', (result) => result.observe(sources.appliedIndex()));
    gauge('etcd_server_proposals_pending', 'The current number of pending proposals to commit.', (result) => result.observe(sources.pendingProposals()));
    counter('etcd_server_proposals_failed_total', 'The total number of failed proposals seen.', (result) => result.observe(this.#proposalsFailed));
    gauge('etcd_server_version', 'Which version is running. 1 for \'server_version\' label with current version.', (result) => result.observe(1, { server_version: sources.serverVersion }));
    gauge('etcd_server_id', 'Server or member ID in hexadecimal format. 1 for \'server_id\' label with current ID.', (result) => result.observe(1, { server_id: sources.memberIdHex }));
    gauge('etcd_server_snapshot_apply_in_progress_total', '1 if the server is applying the incoming snapshot. 0 if none.', (result) => result.observe(sources.snapshotsInstalling()));
    gauge('etcd_mvcc_db_total_size_in_bytes', 'Total size of the underlying database physically allocated in bytes.', async (result) => {
      result.observe(await sources.dbSizeBytes().catch(() => 0));
    });
    gauge('etcd_debugging_mvcc_current_revision', 'The current revision of store.', (result) => result.observe(sources.revision()));
    counter('etcd_mvcc_put_total', 'Total number of puts seen by this member.', (result) => result.observe(this.#kvRequests.put));
    counter('etcd_mvcc_delete_total', 'Total number of deletes seen by this member.', (result) => result.observe(this.#kvRequests.delete));
    counter('etcd_mvcc_txn_total', 'Total number of txns seen by this member.', (result) => result.observe(this.#kvRequests.txn));
    counter('etcd_mvcc_range_total', 'Total number of ranges seen by this member.', (result) => result.observe(this.#kvRequests.range));

    counter('stratakv_snapshots_saved_total', 'Snapshots of this member\'s state made durable and verified.', (result) => result.observe(this.#snapshotsSaved));
    counter('stratakv_snapshot_save_failures_total', 'Snapshot builds that failed here.', (result) => result.observe(this.#snapshotSaveFailures));
    gauge('stratakv_snapshot_index', 'The newest snapshot\'s log index (0: none).', (result) => result.observe(sources.snapshotIndex()));
    counter('stratakv_snapshot_installs_total', 'Snapshots received from the leader and installed here.', (result) => result.observe(this.#snapshotsInstalled));
    counter('stratakv_snapshot_sends_total', 'Snapshot sends to followers that ended, by result.', (result) => {
      result.observe(this.#snapshotSendsSucceeded, { result: 'ok' });
      result.observe(this.#snapshotSendsFailed, { result: 'failed' });
    });
    gauge('stratakv_snapshot_sends_in_progress', 'Snapshots this member is sending now.', (result) => result.observe(sources.snapshotsSending()));
    counter('stratakv_integrity_checks_total', 'Cross-replica integrity checkpoints compared here, by result.', (result) => {
      result.observe(this.#integrityMatches, { result: 'match' });
      result.observe(this.#integrityMismatches, { result: 'mismatch' });
    });
    counter('stratakv_scrubs_total', 'Full re-reads of the state against its digest, by result.', (result) => {
      result.observe(this.#scrubsClean, { result: 'clean' });
      result.observe(this.#scrubsFailed, { result: 'failed' });
    });
    counter('stratakv_alarms_raised_total', 'Alarms raised (applied here).', (result) => result.observe(this.#alarmsRaised));
    gauge('stratakv_alarm_active', 'Alarms raised in the cluster and not cleared: 1 per member and alarm.', (result) => {
      for (const alarm of sources.alarms()) result.observe(1, { member_id: alarm.memberIdHex, alarm: alarm.alarm });
    });
    counter('stratakv_migration_steps_total', 'Migration journal steps applied here.', (result) => result.observe(this.#migrationSteps));
    gauge('stratakv_migration_step', 'The recorded migration\'s current step (1-based; labels: id, state, phase).', (result) => {
      const migration = sources.migration();
      if (migration !== undefined) result.observe(migration.step, { migration_id: migration.id, state: migration.state, phase: migration.phase });
    });
    gauge('stratakv_migration_steps', 'The recorded migration\'s number of steps.', (result) => {
      const migration = sources.migration();
      if (migration !== undefined) result.observe(migration.steps, { migration_id: migration.id });
    });
    gauge('stratakv_mirror_revision', 'As a copy\'s target (mirror mode): the source revision copied so far.', (result) => {
      const revision = sources.mirrorRevision();
      if (revision !== undefined) result.observe(revision);
    });
  }

  /** leaderChanged counts a new leader seen (etcd counts each change to a different, known leader). */
  leaderChanged(): void {
    this.#leaderChanges += 1;
  }

  /** proposalFailed counts a proposal that did not commit (dropped, timed out, refused by the core). */
  proposalFailed(): void {
    this.#proposalsFailed += 1;
  }

  /** kvRequest counts one KV request of `kind` served by this member. */
  kvRequest(kind: KvRequestKind): void {
    this.#kvRequests[kind] += 1;
  }

  /** walSynced records one group commit's fdatasync. */
  walSynced(durationSeconds: number): void {
    this.#walFsync.record(durationSeconds);
  }

  /** backendCommitted records one LevelDB batch written to the state machine. */
  backendCommitted(durationSeconds: number): void {
    this.#backendCommit.record(durationSeconds);
  }

  /** peerRoundTrip records a heartbeat's round trip to the peer `toHex`. */
  peerRoundTrip(toHex: string, durationSeconds: number): void {
    let attributes = this.#peerAttributes.get(toHex);
    if (attributes === undefined) {
      if (this.#peerAttributes.size >= PEERS_TRACKED_MAX) return;
      attributes = { To: toHex };
      this.#peerAttributes.set(toHex, attributes);
    }
    this.#peerRoundTrip.record(durationSeconds, attributes);
  }

  /** snapshotSaved counts a durable, verified snapshot and records how long it took. */
  snapshotSaved(durationSeconds: number): void {
    this.#snapshotsSaved += 1;
    this.#snapshotSave.record(durationSeconds);
  }

  /** snapshotSaveFailed counts a snapshot build that failed. */
  snapshotSaveFailed(): void {
    this.#snapshotSaveFailures += 1;
  }

  /** snapshotInstalled counts a snapshot from the leader installed here. */
  snapshotInstalled(): void {
    this.#snapshotsInstalled += 1;
  }

  /** snapshotSendEnded counts a snapshot send that ended, by whether it was accepted. */
  snapshotSendEnded(succeeded: boolean): void {
    if (succeeded) this.#snapshotSendsSucceeded += 1;
    else this.#snapshotSendsFailed += 1;
  }

  /** integrityChecked counts a checkpoint compared here. */
  integrityChecked(matched: boolean): void {
    if (matched) this.#integrityMatches += 1;
    else this.#integrityMismatches += 1;
  }

  /** scrubbed counts a finished scrub. */
  scrubbed(clean: boolean): void {
    if (clean) this.#scrubsClean += 1;
    else this.#scrubsFailed += 1;
  }

  /** alarmRaised counts an alarm raised (applied here). */
  alarmRaised(): void {
    this.#alarmsRaised += 1;
  }

  /** migrationStepApplied counts a migration journal write applied here. */
  migrationStepApplied(): void {
    this.#migrationSteps += 1;
  }

  /** The sources this member reads at scrapes (the status page reads the same). */
  get sources(): MemberMetricSources {
    return this.#sources;
  }
}

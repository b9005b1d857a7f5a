// The metrics registry's exposition (etcd's names, no OpenTelemetry decorations), what a
// member's counters and sources turn into, /health's answers under alarms, without a leader
// and with a failing read, and the plain-HTTP routes of a member.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  checkHealth,
  createMetricsRegistry,
  createObsRequestHandler,
  GrpcServerMetrics,
  MemberMetrics,
  startObsHttpServer,
  type HealthSource,
  type MemberMetricSources,
  type MetricsRegistry,
} from '../../src/obs/index.ts';

function sources(overrides: Partial<MemberMetricSources> = {}): MemberMetricSources {
  return {
    memberIdHex: '8e9e05c52164694d',
    serverVersion: '3.4.0+stratakv.test',
    hasLeader: () => true,
    isLeader: () => false,
    isLearner: () => false,
    committedIndex: () => 42,
    appliedIndex: () => 41,
    pendingProposals: () => 3,
    revision: () => 17,
    dbSizeBytes: async () => 123_456,
    snapshotIndex: () => 40,
    snapshotsInstalling: () => 0,
    snapshotsSending: () => 1,
    alarms: () => [{ memberIdHex: '8e9e05c52164694d', alarm: 'NOSPACE' }],
    migration: () => ({ id: 'm-1', state: 'running', phase: 'catch-up', step: 2, steps: 8 }),
    mirrorRevision: () => undefined,
    ...overrides,
  };
}

async function scrape(registry: MetricsRegistry): Promise<string> {
  const server = await startObsHttpServer(['http://127.0.0.1:0'], createObsRequestHandler({ metrics: registry }));
  try {
    const answer = await fetch(`${server.urls[0]}/metrics`);
    assert.equal(answer.status, 200);
    assert.match(answer.headers.get('content-type') ?? '', /text\/plain/);
    return await answer.text();
  } finally {
    await server.close();
  }
}

// sample finds one series' value in an exposition.
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics exposition', () => {
  test('a member\'s metrics carry etcd\'s names and values, without timestamps or scope labels', async () => {
    const registry = await createMetricsRegistry();
    const metrics = new MemberMetrics(registry.meter, sources());
    metrics.leaderChanged();
    metrics.leaderChanged();
    metrics.proposalFailed();
    metrics.kvRequest('put');
    metrics.kvRequest('put');
    metrics.kvRequest('range');
    metrics.walSynced(0.0015);
    metrics.walSynced(0.003);
    metrics.backendCommitted(0.02);
    metrics.peerRoundTrip('a1', 0.0003);
    metrics.snapshotSaved(1.5);
    metrics.snapshotSendEnded(true);
    metrics.snapshotSendEnded(false);
    metrics.integrityChecked(true);
    metrics.alarmRaised();
    const text = await scrape(registry);
    assert.equal(sample(text, 'etcd_server_has_leader'), 1);
    assert.equal(sample(text, 'etcd_server_is_leader'), 0);
    assert.equal(sample(text, 'etcd_server_leader_changes_seen_total'), 2);
    assert.equal(sample(text, 'etcd_server_proposals_committed_total'), 42);
    assert.equal(sample(text, 'etcd_server_proposals_applied_total'), 41);
    assert.equal(sample(text, 'etcd_server_proposals_pending'), 3);
    assert.equal(sample(text, 'etcd_server_proposals_failed_total'), 1);
    assert.equal(sample(text, 'etcd_mvcc_db_total_size_in_bytes'), 123_456);
    assert.equal(sample(text, 'etcd_mvcc_put_total'), 2);
    assert.equal(sample(text, 'etcd_mvcc_range_total'), 1);
    assert.equal(sample(text, 'etcd_server_version{server_version="3.4.0+stratakv.test"}'), 1);
    assert.equal(sample(text, 'etcd_server_id{server_id="8e9e05c52164694d"}'), 1);
    assert.equal(sample(text, 'etcd_disk_wal_fsync_duration_seconds_count'), 2);
    assert.equal(sample(text, 'etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"}'), 1);
    assert.equal(sample(text, 'etcd_disk_wal_fsync_duration_seconds_bucket{le="0.004"}'), 2);
    assert.equal(sample(text, 'etcd_disk_backend_commit_duration_seconds_count'), 1);
    assert.equal(sample(text, 'etcd_network_peer_round_trip_time_seconds_count{To="a1"}'), 1);
    assert.equal(sample(text, 'stratakv_snapshots_saved_total'), 1);
    assert.equal(sample(text, 'stratakv_snapshot_sends_total{result="failed"}'), 1);
    assert.equal(sample(text, 'stratakv_snapshot_index'), 40);
    assert.equal(sample(text, 'stratakv_integrity_checks_total{result="match"}'), 1);
    assert.equal(sample(text, 'stratakv_alarm_active{member_id="8e9e05c52164694d",alarm="NOSPACE"}'), 1);
    assert.equal(sample(text, 'stratakv_migration_step{migration_id="m-1",state="running",phase="catch-up"}'), 2);
    assert.equal(sample(text, 'stratakv_mirror_revision'), undefined, 'not a mirror: no series');
    assert.doesNotMatch(text, /otel_scope|target_info/);
    // Counters keep etcd's _total once (no doubled suffix), and no sample carries a timestamp.
    assert.doesNotMatch(text, /_total_total/);
    for (const line of text.split('\n').filter((candidate) => candidate !== '' && !candidate.startsWith('#'))) {
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+$|^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (\+Inf|NaN)$/, `exposition line ${line}`);
    }
    await registry.shutdown();
  });

  test('gRPC server metrics carry go-grpc-prometheus\'s labels and codes', async () => {
    const registry = await createMetricsRegistry();
    const grpc = new GrpcServerMetrics(registry.meter, { extensive: true });
    const put = grpc.method('etcdserverpb.KV', 'Put', 'unary');
    put.started += 2;
    put.finished(0, performance.now());
    put.finished(14, performance.now());
    put.finished(99, performance.now());
    const text = await scrape(registry);
    const labels = 'grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"';
    assert.equal(sample(text, `grpc_server_started_total{${labels}}`), 2);
    assert.equal(sample(text, `grpc_server_handled_total{${labels},grpc_code="OK"}`), 1);
    assert.equal(sample(text, `grpc_server_handled_total{${labels},grpc_code="Unavailable"}`), 1);
    assert.equal(sample(text, `grpc_server_handled_total{${labels},grpc_code="Unknown"}`), 1, 'an unknown code counts as Unknown');
    assert.equal(sample(text, `grpc_server_handling_seconds_count{${labels}}`), 3);
    await registry.shutdown();
  });
});

describe('/health', () => {
  const healthy: HealthSource = { alarmTypes: () => [], hasLeader: () => true, linearizableRead: async () => undefined };

  test('healthy; an alarm, no leader or a failing read make it false with etcd\'s reasons', async () => {
    assert.deepEqual(await checkHealth(healthy, new URLSearchParams()), { health: 'true', reason: '' });
    assert.deepEqual(await checkHealth({ ...healthy, alarmTypes: () => ['NOSPACE', 'CORRUPT', 'NOSPACE'] }, new URLSearchParams()), { health: 'false', reason: 'ALARM NOSPACE,CORRUPT' });
    assert.deepEqual(await checkHealth({ ...healthy, alarmTypes: () => ['NOSPACE'] }, new URLSearchParams('exclude=NOSPACE')), { health: 'true', reason: '' });
    assert.deepEqual(await checkHealth({ ...healthy, hasLeader: () => false }, new URLSearchParams()), { health: 'false', reason: 'RAFT NO LEADER' });
    const failing: HealthSource = { ...healthy, linearizableRead: async () => Promise.reject(new Error('request timed out')) };
    assert.deepEqual(await checkHealth(failing, new URLSearchParams()), { health: 'false', reason: 'QGET ERROR: request timed out' });
    assert.deepEqual(await checkHealth(failing, new URLSearchParams('serializable=true')), { health: 'true', reason: '' }, 'serializable skips the read');
  });

  test('the HTTP route answers 200 or 503 with the JSON; other paths 404, other methods 405', async () => {
    let leader = true;
    const server = await startObsHttpServer(['http://127.0.0.1:0'], createObsRequestHandler({ health: { ...healthy, hasLeader: () => leader } }));
    try {
      const url = server.urls[0] ?? '';
      const ok = await fetch(`${url}/health`);
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get('content-type'), 'application/json');
      assert.deepEqual(await ok.json(), { health: 'true', reason: '' });
      leader = false;
      const down = await fetch(`${url}/health`);
      assert.equal(down.status, 503);
      assert.deepEqual(await down.json(), { health: 'false', reason: 'RAFT NO LEADER' });
      assert.equal((await fetch(`${url}/metrics`)).status, 404, 'no registry: no /metrics');
      assert.equal((await fetch(`${url}/health`, { method: 'POST' })).status, 405);
    } finally {
      await server.close();
    }
  });

  test('a metrics URL that is not http://host:port is refused, naming it', async () => {
    await assert.rejects(startObsHttpServer(['https://127.0.0.1:0'], () => undefined), /https:\/\/127\.0\.0\.1:0: scheme must be http/);
    await assert.rejects(startObsHttpServer(['http://127.0.0.1:0/metrics'], () => undefined), /nothing after the port/);
    await assert.rejects(startObsHttpServer([], () => undefined), /give 1 to 16/);
  });
});

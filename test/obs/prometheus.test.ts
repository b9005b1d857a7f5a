// A real Prometheus (Debian's `prometheus`) scrapes a real 3-member cluster at each member's
// --listen-metrics-urls, and PromQL answers what an operator asks of etcd's metrics: who
// leads, how often the leader changed (after `etcdctl move-leader`), that the WAL is synced
// and gRPC calls are counted. The metric names are etcd's, so these queries are the ones an
// etcd dashboard runs.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, createWriteStream, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { etcdctl, etcdctlSkipReason, freePort, TestCluster, type MemberProcess } from '../integration/cluster-process.ts';

const PROMETHEUS = '/usr/bin/prometheus';
const READY_TIMEOUT_MS = 30_000;
const QUERY_TIMEOUT_MS = 40_000;
const POLL_MS = 500;

function prometheusSkipReason(): string | undefined {
  if (existsSync(PROMETHEUS)) return etcdctlSkipReason();
  if (process.env.CI === 'true') throw new Error(`${PROMETHEUS} is missing: .ci/run installs Debian's prometheus`);
  return `${PROMETHEUS} is not installed (Debian package prometheus)`;
}

interface Sample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

// query runs an instant PromQL query through Prometheus's HTTP API.
async function query(base: string, promql: string): Promise<Sample[]> {
  const answer = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`, { signal: AbortSignal.timeout(5_000) });
  const body = (await answer.json()) as { status: string; data?: { resultType: string; result: Sample[] }; error?: string };
  assert.equal(body.status, 'success', `PromQL ${promql}: ${body.error ?? answer.status}`);
  return body.data?.result ?? [];
}

// waitForQuery polls `promql` until `accept` holds for its samples (bounded), answering them.
async function waitForQuery(base: string, promql: string, accept: (samples: Sample[]) => boolean, what: string): Promise<Sample[]> {
  const deadline = Date.now() + QUERY_TIMEOUT_MS;
  let last: Sample[] = [];
  while (Date.now() < deadline) {
    last = await query(base, promql);
    if (accept(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  assert.fail(`${what}: ${promql} gave ${JSON.stringify(last)} for ${QUERY_TIMEOUT_MS} ms`);
}

const skip = prometheusSkipReason();

describe('Prometheus scrapes a 3-member cluster', { skip, timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let prometheus: ChildProcess | undefined;
  let directory: string;
  let base: string;
  const targets = new Map<string, MemberProcess>();

  before(async () => {
    cluster = await TestCluster.start(3, { metrics: true });
    directory = mkdtempSync(join(tmpdir(), 'stratakv-prom-'));
    const instances = cluster.members.map((member) => {
      assert.ok(member.metricsUrl !== undefined, 'every member serves metrics');
      const instance = new URL(member.metricsUrl).host;
      targets.set(instance, member);
      return instance;
    });
    const config = join(directory, 'prometheus.yml');
    writeFileSync(
      config,
      ['global:', '  scrape_interval: 1s', '  evaluation_interval: 1s', 'scrape_configs:', '  - job_name: stratakv', '    static_configs:', `      - targets: [${instances.map((instance) => `'${instance}'`).join(', ')}]`, ''].join('\n'),
    );
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const log = createWriteStream(join(directory, 'prometheus.log'));
    prometheus = spawn(PROMETHEUS, [`--config.file=${config}`, `--storage.tsdb.path=${join(directory, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    prometheus.stdout?.pipe(log);
    prometheus.stderr?.pipe(log);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (prometheus.exitCode !== null) assert.fail(`prometheus exited with ${prometheus.exitCode}: ${readFileSync(join(directory, 'prometheus.log'), 'utf8')}`);
      const ready = await fetch(`${base}/-/ready`, { signal: AbortSignal.timeout(1_000) }).then((answer) => answer.ok, () => false);
      if (ready) break;
      if (Date.now() > deadline) assert.fail(`prometheus not ready within ${READY_TIMEOUT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  after(async () => {
    if (prometheus !== undefined && prometheus.exitCode === null && prometheus.pid !== undefined) {
      const exited = new Promise((resolve) => prometheus?.once('exit', resolve));
      process.kill(prometheus.pid, 'SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
      if (prometheus.exitCode === null) process.kill(prometheus.pid, 'SIGKILL');
    }
    await cluster?.stop();
    if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
  });

  test('PromQL sees one leader, then the leader change that move-leader made', async () => {
    await waitForQuery(base, 'sum(up{job="stratakv"})', (samples) => samples[0]?.value[1] === '3', 'all three members scraped');
    const leaders = await waitForQuery(base, 'etcd_server_is_leader == 1', (samples) => samples.length === 1, 'exactly one leader');
    const oldLeader = targets.get(leaders[0]?.metric.instance ?? '');
    assert.ok(oldLeader !== undefined, 'the leader is one of the targets');
    await waitForQuery(base, 'min(etcd_server_has_leader)', (samples) => samples[0]?.value[1] === '1', 'every member knows a leader');
    const before = Number((await query(base, 'sum(etcd_server_leader_changes_seen_total)'))[0]?.value[1]);
    assert.ok(before >= 3, `each member saw the first election (${before})`);

    const ids = await waitForQuery(base, 'etcd_server_id', (samples) => samples.length === 3, 'every member id');
    const target = ids.find((sample) => sample.metric.instance !== leaders[0]?.metric.instance);
    const targetId = target?.metric.server_id;
    assert.ok(targetId !== undefined && target !== undefined);
    const moved = etcdctl(cluster.endpoints(), ['move-leader', targetId]);
    assert.equal(moved.status, 0, moved.stderr);

    // Every member counts the change it saw: the sum grows by 3 (etcd counts the same way).
    await waitForQuery(base, 'sum(etcd_server_leader_changes_seen_total)', (samples) => Number(samples[0]?.value[1]) >= before + 3, 'the leader change counted on every member');
    const changes = await query(base, `increase(etcd_server_leader_changes_seen_total[2m]) > 0`);
    assert.ok(changes.length >= 1, 'increase() over the counter shows the change');
    await waitForQuery(base, 'etcd_server_is_leader == 1', (samples) => samples.length === 1 && samples[0]?.metric.instance === target.metric.instance, 'the new leader is the move-leader target');
    await waitForQuery(base, 'sum(grpc_server_handled_total{grpc_service="etcdserverpb.Maintenance",grpc_method="MoveLeader",grpc_code="OK"})', (samples) => Number(samples[0]?.value[1]) >= 1, 'the MoveLeader call counted');
    await waitForQuery(base, 'sum(etcd_disk_wal_fsync_duration_seconds_count)', (samples) => Number(samples[0]?.value[1]) > 0, 'WAL fsyncs recorded');
    await waitForQuery(base, 'count(etcd_network_peer_round_trip_time_seconds_bucket{le="+Inf"})', (samples) => Number(samples[0]?.value[1]) >= 2, 'peer round trips recorded');
  });

  test('/health and /version answer curl on the client and the metrics URLs', async () => {
    for (const member of cluster.members) {
      for (const base of [member.clientUrl, member.metricsUrl ?? '']) {
        const health = await fetch(`${base}/health`, { signal: AbortSignal.timeout(5_000) });
        assert.equal(health.status, 200, `${base}/health`);
        assert.deepEqual(await health.json(), { health: 'true', reason: '' });
        const version = await fetch(`${base}/version`, { signal: AbortSignal.timeout(5_000) });
        assert.deepEqual(await version.json(), { etcdserver: '3.4.0', etcdcluster: '3.4.0' });
      }
    }
    // gRPC still works on the shared client port.
    const put = etcdctl(cluster.endpoints(), ['put', 'after-health', 'v']);
    assert.equal(put.status, 0, put.stderr);
  });
});

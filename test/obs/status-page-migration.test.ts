// The status page of a real cluster in the middle of `stratakv migrate run`, loaded in headless
// Chromium (Debian's `chromium`): three members in zone a serve metrics URLs; three members
// started with --join in zone b are added by the migration, which a failpoint holds after its
// catch-up step (the process runs and waits; the journal says catch-up). The page, rendered by
// the leader, must show all six members with their zones and roles, and the migration's phase,
// step and progress; after the hold, the migration finishes. UPDATE_STATUS_PAGE_PNG=1 writes
// the picture the README shows (docs/status-page.png).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { probeJoiner } from '../../src/client/index.ts';
import type { StatusDocument } from '../../src/obs/index.ts';
import { PortRange, TestCluster } from '../integration/cluster-process.ts';
import { CHROMIUM_MISSING, dumpDom, findChromium, screenshot } from './chromium.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
const JOIN_PORTS = new PortRange(21_800, 21_999);
const HOLD_MS = 25_000;
const MIGRATE_TIMEOUT_MS = 120_000;
const POLL_MS = 200;

function chromiumSkipReason(): string | undefined {
  if (findChromium() !== undefined) return undefined;
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM_MISSING}: .ci/run installs Debian's chromium`);
  return CHROMIUM_MISSING;
}

const clusters: TestCluster[] = [];
after(async () => {
  for (const cluster of clusters.splice(0)) await cluster.stop();
});

describe('the status page during a migration, in headless Chromium', { skip: chromiumSkipReason(), timeout: 240_000 }, () => {
  test('shows every member with zone and role, and the migration\'s phase and progress', async () => {
    const cluster = await TestCluster.start(3, { metrics: true, serveArgs: ['--zone=a'] }, async () => (await JOIN_PORTS.take(1))[0] as number);
    clusters.push(cluster);
    const old = [...cluster.members];
    const client = cluster.client();
    try {
      for (let index = 0; index < 100; index += 1) await client.put(`pre/${index}`, `v${index}`);
    } finally {
      client.close();
    }
    const ports = await JOIN_PORTS.take(6);
    const targets: string[] = [];
    for (let index = 0; index < 3; index += 1) {
      const name = `b${index + 1}`;
      const peerUrl = `http://127.0.0.1:${ports[2 * index + 1] as number}`;
      cluster.launchJoining(name, { clientPort: ports[2 * index] as number, peerPort: ports[2 * index + 1] as number, advertisePeerUrl: peerUrl, joinUrls: old.map((member) => member.clientUrl), zone: 'b' });
      targets.push(`${name}=${peerUrl}`);
      let waiting = false;
      for (let attempt = 0; attempt < 100 && !waiting; attempt += 1) {
        waiting = (await probeJoiner(peerUrl, 1_000)).waiting;
        if (!waiting) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
      assert.ok(waiting, `${name} waits to be added`);
    }

    const endpoints = old.map((member) => member.endpoint).join(',');
    const migration = spawn(process.execPath, [CLI, 'migrate', 'run', `--endpoints=${endpoints}`, `--to=${targets.join(',')}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, STRATAKV_MIGRATE_FAILPOINT: `pause-before-journal:catch-up:${HOLD_MS}` },
    });
    let output = '';
    migration.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    migration.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => migration.kill('SIGKILL'), MIGRATE_TIMEOUT_MS);
    const finished = new Promise<number | null>((resolve) => migration.once('close', (code) => resolve(code)));
    try {
      // The leader's page (any old member's would do; the leader knows every member first).
      const leader = await cluster.waitForLeader();
      const metricsUrl = leader.metricsUrl ?? assert.fail('the leader serves metrics');
      let document: StatusDocument | undefined;
      const deadline = Date.now() + HOLD_MS - 5_000;
      while (Date.now() < deadline) {
        document = (await (await fetch(`${metricsUrl}/status.json`, { signal: AbortSignal.timeout(5_000) })).json()) as StatusDocument;
        const reachable = document.members.filter((row) => row.reachable).length;
        if (document.migration?.phase === 'catch-up' && document.members.length === 6 && reachable === 6) break;
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
      assert.equal(document?.migration?.phase, 'catch-up', `the migration is held after catch-up: ${JSON.stringify(document)}\n${output}`);
      assert.equal(document?.migration?.step, 2);
      assert.equal(document?.migration?.steps, 8);
      assert.ok((document?.migration?.progress?.total ?? 0) > 0, 'progress in entries');
      assert.deepEqual(document?.members.map((row) => `${row.name}/${row.zone}`).sort(), ['b1/b', 'b2/b', 'b3/b', 'n1/a', 'n2/a', 'n3/a']);

      const dom = await dumpDom(metricsUrl, { budgetMs: 3_000 });
      for (const name of ['n1', 'n2', 'n3', 'b1', 'b2', 'b3']) assert.match(dom, new RegExp(`>${name}<`), `member ${name} on the page`);
      assert.match(dom, /learner/, 'the new members show as learners');
      assert.match(dom, /leader/);
      assert.match(dom, /catch-up/, 'the phase');
      assert.match(dom, /step 2 of 8/i, 'the step');
      assert.match(dom, /<b>\d+<\/b> \/ \d+ entries/, 'the progress in entries');
      assert.match(dom, /\d+%/, 'the progress in percent');
      assert.match(dom, new RegExp(document?.migration?.id ?? 'no id'), 'the migration id');

      const directory = process.env['UPDATE_STATUS_PAGE_PNG'] === '1' ? undefined : await mkdtemp(join(tmpdir(), 'stratakv-status-'));
      const path = directory === undefined ? 'docs/status-page.png' : join(directory, 'status-page.png');
      try {
        assert.deepEqual(await screenshot(metricsUrl, path, { width: 1280, height: 800, budgetMs: 1_000 }), { widthPx: 1280, heightPx: 800 });
      } finally {
        if (directory !== undefined) await rm(directory, { recursive: true, force: true });
      }
      assert.equal(await finished, 0, `the migration finishes after the hold:\n${output}`);
    } finally {
      clearTimeout(timer);
      if (migration.exitCode === null && migration.signalCode === null) migration.kill('SIGKILL');
    }
  });
});


// `stratakv migrate copy` end to end: a real etcd (Debian's 3.4) as the source under a write
// load of 4 clients (puts, deletes, txns), a real 3-process stratakv cluster as the mirror, and
// the copier run as the CLI — killed with SIGKILL at 5 seeded moments (the first during the
// scan) and started again each time. At the end: `copy status` says caught up, `copy verify`
// finds no difference, our own full comparison finds every key's value, create and mod
// revision and version equal with the revisions equal, etcdctl's put is refused on the mirror,
// and `copy cancel` leaves an empty cluster that takes writes.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { EtcdClient } from '../../src/client/index.ts';
import { etcdSkipReason, startEtcdCluster, type EtcdCluster } from '../client/etcd-process.ts';
import { copyCli as runCopyCli, COPY_CLI, seeded } from './copy-cli.ts';
import { etcdctl, etcdctlSkipReason, TestCluster } from './cluster-process.ts';

const CLI = COPY_CLI;
const SEED = Number(process.env['COPY_TEST_SEED'] ?? 16_101);
const KEYS = 5_000;
const WRITERS = 4;
const KILLS = 5;
// After this kill (0-based) etcd is compacted while the copier is down.
const COMPACT_AFTER_KILL = 2;
const CLI_TIMEOUT_MS = 60_000;
const skip = etcdSkipReason() || etcdctlSkipReason() || false;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** copyCli runs `stratakv migrate copy ...` to its end and answers its JSON (-w json). */
function copyCli(args: readonly string[]): ReturnType<typeof runCopyCli> {
  return runCopyCli(args, CLI_TIMEOUT_MS);
}

describe('migrate copy from etcd into a 3-member stratakv mirror', { skip }, () => {
  let source: EtcdCluster;
  let target: TestCluster;
  let sourceClient: EtcdClient;
  let from: string;
  let to: string;

  before(async () => {
    source = await startEtcdCluster(1);
    target = await TestCluster.start(3);
    await target.waitForLeader();
    sourceClient = new EtcdClient({ endpoints: source.endpoints, timeoutMs: 10_000 });
    from = `etcd://${source.endpoints.join(',')}`;
    to = target.endpoints().join(',');
  });
  after(async () => {
    sourceClient?.close();
    await target?.stop();
    await source?.stop();
  });

  test(`${KEYS} keys under ${WRITERS} writers, the copier killed ${KILLS} times: verify equal, counters and revisions equal`, async (t) => {
    const random = seeded(SEED);
    // The preload, 100 puts a txn.
    for (let at = 0; at < KEYS; at += 100) {
      const success = Array.from({ length: Math.min(100, KEYS - at) }, (_, offset) => ({ type: 'put' as const, key: Buffer.from(`k/${String(at + offset).padStart(6, '0')}`), value: Buffer.from(`preload-${at + offset}`) }));
      await sourceClient.txn({ type: 'txn', compare: [], success, failure: [] });
    }

    // The load: each writer does puts, deletes and two-key txns until stopped (bounded in count).
    let writing = true;
    let writes = 0;
    const writer = async (index: number): Promise<void> => {
      const mine = seeded(SEED * 31 + index);
      for (let count = 0; writing && count < 20_000; count += 1) {
        const key = `k/${String(Math.floor(mine() * (KEYS + 500))).padStart(6, '0')}`;
        const roll = mine();
        if (roll < 0.6) await sourceClient.put(key, `w${index}-${count}`);
        else if (roll < 0.8) await sourceClient.delete(key);
        else {
          const other = `k/${String(Math.floor(mine() * (KEYS + 500))).padStart(6, '0')}`;
          if (other !== key) await sourceClient.txn({ type: 'txn', compare: [], success: [{ type: 'put', key: Buffer.from(key), value: Buffer.from(`t${index}-${count}`) }, { type: 'deleteRange', key: Buffer.from(other) }], failure: [] });
        }
        writes += 1;
      }
    };
    const writers = Array.from({ length: WRITERS }, (_, index) => writer(index));
    const kills: string[] = [];
    try {

    // The copier, killed with SIGKILL at seeded moments; the first kill lands during the scan.
    for (let kill = 0; kill < KILLS; kill += 1) {
      const child: ChildProcess = spawn(process.execPath, [CLI, 'migrate', 'copy', 'create', '--from', from, '--to', to], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      // Kill only once the copier has started (began or resumed), then after a seeded delay:
      // the first one early in the scan.
      const started = (async (): Promise<boolean> => {
        for (let poll = 0; poll < 300 && !/(began|resumed) copy/.test(stderr); poll += 1) await sleep(50);
        return /(began|resumed) copy/.test(stderr);
      })();
      assert.equal(await started, true, `the copier started: ${stderr}`);
      const waitMs = kill === 0 ? 50 + Math.floor(random() * 150) : 100 + Math.floor(random() * 1_500);
      const early = await Promise.race([exited.then(() => true), sleep(waitMs).then(() => false)]);
      assert.equal(early, false, `the copier ran until killed: ${stderr}`);
      child.kill('SIGKILL');
      await exited;
      kills.push(`after ${waitMs} ms (${stderr.split('\n').filter((line) => line.trim() !== '').pop() ?? 'no output'})`);
      if (kill === COMPACT_AFTER_KILL) {
        // While the copier is down, etcd compacts its history up to now: the copier's next
        // revision is gone, so the resume scans again and deletes what etcd dropped.
        await sleep(300);
        const { header } = await sourceClient.get('k/', { countOnly: true });
        const compacted = etcdctl(source.endpoints, ['compact', String(header.revision)]);
        assert.equal(compacted.status, 0, compacted.stderr);
        kills.push(`etcd compacted at ${header.revision}`);
      }
    }
    } finally {
      writing = false;
      await Promise.allSettled(writers);
    }
    const status = copyCli(['status', '--to', to]);
    assert.equal(status.status, 0, `${JSON.stringify(status.json)}\n${status.stderr}\nkills: ${kills.join('; ')}`);

    assert.ok(writes > 100, `the writers wrote (${writes})`);
    t.diagnostic(`seed ${SEED}: ${writes} writes; copier killed ${kills.join('; ')}`);

    // The last run catches up and returns.
    const last = copyCli(['create', '--from', from, '--to', to, '--until-caught-up']);
    assert.equal(last.status, 0, `${JSON.stringify(last.json)}\n${last.stderr}\nkills: ${kills.join('; ')}`);
    assert.equal(last.json['result'], 'caught-up');

    const caughtUp = copyCli(['status', '--to', to]);
    assert.equal(caughtUp.json['phase'], 'tailing');
    assert.equal(caughtUp.json['lagRevisions'], 0);
    assert.ok((caughtUp.json['rescans'] as number) >= 1, `the copier scanned again after etcd's compaction: ${JSON.stringify(caughtUp.json)}\nkills: ${kills.join('; ')}`);

    const verified = copyCli(['verify', '--to', to]);
    assert.equal(verified.status, 0, JSON.stringify(verified.json).slice(0, 2_000));
    assert.equal(verified.json['equal'], true);
    assert.ok((verified.json['keysCompared'] as number) > KEYS / 2);

    // Our own comparison, through both clusters' KV APIs.
    const mirror = new EtcdClient({ endpoints: target.endpoints(), timeoutMs: 10_000, mirrorReader: true });
    try {
      const theirs = await sourceClient.get('k/', { prefix: true });
      const ours = await mirror.get('k/', { prefix: true });
      assert.equal(ours.kvs.length, theirs.kvs.length);
      for (const [at, kv] of theirs.kvs.entries()) {
        const other = ours.kvs[at];
        assert.ok(other !== undefined);
        assert.deepEqual(
          [Buffer.from(other.key).toString(), Buffer.from(other.value).toString(), other.createRevision, other.modRevision, other.version],
          [Buffer.from(kv.key).toString(), Buffer.from(kv.value).toString(), kv.createRevision, kv.modRevision, kv.version],
        );
      }
      assert.equal(ours.header.revision, theirs.header.revision, 'the mirror is at the source\'s revision');

      // The mirror refuses a client's write, saying why.
      const refused = etcdctl(target.endpoints(), ['put', 'k/new', 'x']);
      assert.notEqual(refused.status, 0);
      assert.match(refused.stderr, /read-only mirror/);

      // Cancel: the copied keys are gone and the cluster takes writes; the source is untouched.
      const cancelled = copyCli(['cancel', '--to', to]);
      assert.equal(cancelled.status, 0, cancelled.stderr);
      assert.equal((await mirror.get('k/', { prefix: true, countOnly: true })).count, 0);
      await mirror.put('k/after-cancel', 'writable');
      assert.equal((await sourceClient.get('k/', { prefix: true, countOnly: true })).count, theirs.count);
    } finally {
      mirror.close();
    }
  });
});

describe('migrate copy follows through a source member killed and the target\'s leader killed', { skip }, () => {
  let source: EtcdCluster;
  let target: TestCluster;
  let sourceClient: EtcdClient;

  before(async () => {
    source = await startEtcdCluster(3);
    target = await TestCluster.start(3);
    await target.waitForLeader();
    sourceClient = new EtcdClient({ endpoints: source.endpoints, timeoutMs: 10_000 });
  });
  after(async () => {
    sourceClient?.close();
    await target?.stop();
    await source?.stop();
  });

  test('kill -9 of the etcd member the copier reads first, then of the stratakv leader: the copier goes on, stops on SIGTERM, and the copy verifies equal', async (t) => {
    const from = `etcd://${source.endpoints.join(',')}`;
    const to = target.endpoints().join(',');
    for (let at = 0; at < 1_000; at += 100) {
      const success = Array.from({ length: 100 }, (_, offset) => ({ type: 'put' as const, key: Buffer.from(`f/${String(at + offset).padStart(5, '0')}`), value: Buffer.from(`v${at + offset}`) }));
      await sourceClient.txn({ type: 'txn', compare: [], success, failure: [] });
    }
    let writing = true;
    let writes = 0;
    const writer = (async () => {
      for (let count = 0; writing && count < 50_000; count += 1) {
        try {
          await sourceClient.put(`f/${String(count % 1_200).padStart(5, '0')}`, `w${count}`);
          writes += 1;
        } catch {
          // A put in flight when its member died: the writer goes on (its outcome is whatever etcd says).
        }
      }
    })();
    const child = spawn(process.execPath, [CLI, 'migrate', 'copy', 'create', '--from', from, '--to', to], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      for (let poll = 0; poll < 600 && !/scan done/.test(stderr); poll += 1) await sleep(50);
      assert.match(stderr, /scan done/, stderr);
      await sleep(500);
      const first = source.members[0];
      assert.ok(first !== undefined);
      await source.kill(first);
      await sleep(2_000);
      const leader = await target.waitForLeader();
      await target.kill(leader);
      await target.waitForLeader();
      await sleep(2_000);
      assert.equal(child.exitCode, null, `the copier is still running: ${stderr}`);
    } finally {
      writing = false;
      await writer;
    }
    child.kill('SIGTERM');
    assert.equal(await exited, 0, `the copier stopped cleanly on SIGTERM: ${stderr}`);
    t.diagnostic(`${writes} writes; copier said: ${stderr.split('\n').filter((line) => line.trim() !== '').slice(-6).join(' | ')}`);

    const last = copyCli(['create', '--from', from, '--to', to, '--until-caught-up']);
    assert.equal(last.status, 0, `${JSON.stringify(last.json)}\n${last.stderr}`);
    const verified = copyCli(['verify', '--to', to]);
    assert.equal(verified.json['equal'], true, JSON.stringify(verified.json).slice(0, 2_000));
  });
});

// `stratakv migrate copy` between two stratakv clusters, end to end with real processes: a
// 3-member source under a write load, a 3-member mirror, the copier run as the CLI and killed
// with SIGKILL at 5 seeded moments (the first during the scan; after the third it stays down
// while the source snapshots and compacts its log past the copier's position, so the resume
// must scan again and delete what the source dropped), then `copy verify` (a Merkle
// diff at a source checkpoint, while the copy follows the load), `copy switch` (the writes
// move to the mirror; the source becomes a read-only mirror of it), the reverse copy, `copy
// verify` of the reverse copy, `copy reverse` (the writes move back) and a last verify.
//
// Four linearizable clients run through all of it with the endpoints of both clusters
// (EtcdClient's failOverOnMirror: a mirror's refusal moves them to the other cluster), and the
// history they record — across both switches — must be linearizable, with no operation left
// failed or ambiguous. A bulk writer keeps putting and deleting keys on whichever cluster
// takes writes, so the copy has work.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { EtcdClient, MirrorClient } from '../../src/client/index.ts';
import { decodeCopyState, logHoldConsumer, stratakvSource } from '../../src/migrate/copy/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { checkLinearizability, formatVerdict } from '../linearizability/index.ts';
import { copyCli as runCopyCli, COPY_CLI, seeded } from './copy-cli.ts';
import { etcdctl, etcdctlSkipReason, TestCluster } from './cluster-process.ts';
import { startWorkload } from './linearizable-workload.ts';

const CLI = COPY_CLI;
const SEED = Number(process.env['COPY_TEST_SEED'] ?? 16_201);
const BULK_KEYS = 3_000;
const KILLS = 5;
const CLIENTS = 4;
// The source snapshots every 300 entries and keeps 50 after it: a copier down for a few
// seconds under the load finds its position compacted.
const SOURCE_SERVE_ARGS = ['--snapshot-count=300', '--snapshot-catchup-entries=50'];
const DOWN_DURING_COMPACTION = 2;
const CLI_TIMEOUT_MS = 120_000;
const skip = etcdctlSkipReason() ?? false;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** copyCli runs `stratakv migrate copy ...` to its end and answers its JSON (-w json). */
function copyCli(args: readonly string[]): ReturnType<typeof runCopyCli> {
  return runCopyCli(args, CLI_TIMEOUT_MS);
}

/** Copier is a `copy create` running in the background. */
interface Copier {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  stderr(): string;
}

function startCopier(from: string, to: string): Copier {
  const child = spawn(process.execPath, [CLI, 'migrate', 'copy', 'create', '--from', from, '--to', to], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Both streams in one: progress goes to stderr, the result line to stdout.
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  child.stdout?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, stderr: () => stderr };
}

async function started(copier: Copier): Promise<void> {
  for (let poll = 0; poll < 600 && !/(began|resumed) copy/.test(copier.stderr()); poll += 1) await sleep(50);
  assert.match(copier.stderr(), /(began|resumed) copy/, `the copier started: ${copier.stderr()}`);
}

/** caughtUp waits (bounded) until `copy status` says the mirror at `to` follows with little lag. */
async function caughtUp(to: string): Promise<Record<string, unknown>> {
  let last: Record<string, unknown> = {};
  for (let poll = 0; poll < 240; poll += 1) {
    const status = copyCli(['status', '--to', to]);
    last = status.json;
    if (status.status === 0 && last['phase'] === 'tailing' && typeof last['lagSeconds'] === 'number' && last['lagSeconds'] < 3) return last;
    await sleep(500);
  }
  assert.fail(`the copy into ${to} did not catch up: ${JSON.stringify(last)}`);
}

/**
 * waitForCompaction waits (bounded) until the source's log, read from the member the copier
 * reads first, no longer holds the index after the mirror's position (the scan's pinned index
 * while it scans): the copier, resumed, must scan again. Answers that index.
 */
async function waitForCompaction(sourceEndpoints: readonly string[], mirrorEndpoints: string): Promise<number> {
  const mirror = new MirrorClient({ endpoints: mirrorEndpoints.split(','), timeoutMs: 10_000 });
  const log = stratakvSource(sourceEndpoints);
  try {
    const view = await mirror.read();
    assert.ok(view.state !== undefined, 'the mirror holds a copy state');
    const state = decodeCopyState(view.state);
    const next = (state.scan?.pin?.index ?? state.appliedIndex ?? 0) + 1;
    // The killed copier's log hold would keep the log for LOG_HOLD_TTL_MS: release it, as its expiry would.
    await log.hold(logHoldConsumer('copy', state.copyId), 0, 0);
    for (let poll = 0; poll < 240; poll += 1) {
      const stream = new AbortController();
      try {
        for await (const _batch of log.follow(next, stream.signal)) break;
      } catch (error) {
        if (isStrataError(error, ErrorCode.COMPACTED)) return next;
        throw error;
      } finally {
        stream.abort();
      }
      await sleep(250);
    }
    assert.fail(`the source's log still held index ${next} after a minute of writes`);
  } finally {
    mirror.close();
    log.close();
  }
}

describe('migrate copy between two 3-member stratakv clusters: kill -9, verify, switch, reverse', { skip }, () => {
  let source: TestCluster;
  let mirror: TestCluster;
  let from: string;
  let to: string;
  const copiers: Copier[] = [];

  before(async () => {
    source = await TestCluster.start(3, { serveArgs: SOURCE_SERVE_ARGS });
    mirror = await TestCluster.start(3);
    await Promise.all([source.waitForLeader(), mirror.waitForLeader()]);
    from = source.endpoints().join(',');
    to = mirror.endpoints().join(',');
  });
  after(async () => {
    for (const copier of copiers) if (copier.child.exitCode === null && copier.child.signalCode === null) copier.child.kill('SIGKILL');
    await mirror?.stop();
    await source?.stop();
  });

  test(`${BULK_KEYS} keys, the copier killed ${KILLS} times, switch and reverse under ${CLIENTS} linearizable clients`, async () => {
    const random = seeded(SEED);
    const both = [...source.endpoints(), ...mirror.endpoints()];
    const preload = new EtcdClient({ endpoints: source.endpoints(), timeoutMs: 10_000 });
    for (let at = 0; at < BULK_KEYS; at += 100) {
      const success = Array.from({ length: Math.min(100, BULK_KEYS - at) }, (_, offset) => ({ type: 'put' as const, key: Buffer.from(`bulk/${String(at + offset).padStart(6, '0')}`), value: Buffer.from(`preload-${at + offset}`) }));
      await preload.txn({ type: 'txn', compare: [], success, failure: [] });
    }
    preload.close();

    // The clients follow the writes: both clusters' endpoints, a mirror's refusal passes over.
    const clients = Array.from({ length: CLIENTS }, () => new EtcdClient({ endpoints: both, timeoutMs: 15_000, failOverOnMirror: true }));
    const workload = startWorkload(clients, { keys: ['a', 'b', 'c', 'd', 'e'], seed: SEED, pauseMs: 5 });
    const bulkClient = new EtcdClient({ endpoints: both, timeoutMs: 15_000, failOverOnMirror: true });
    let bulkWriting = true;
    let bulkWrites = 0;
    const bulk = (async (): Promise<void> => {
      const mine = seeded(SEED * 31);
      for (let count = 0; bulkWriting && count < 100_000; count += 1) {
        const key = `bulk/${String(Math.floor(mine() * (BULK_KEYS + 300))).padStart(6, '0')}`;
        if (mine() < 0.75) await bulkClient.put(key, `b-${count}`);
        else await bulkClient.delete(key);
        bulkWrites += 1;
      }
    })();
    try {
      // ---- the copier, SIGKILLed at seeded moments; the first lands during the scan ----
      const kills: string[] = [];
      for (let kill = 0; kill < KILLS; kill += 1) {
        const copier = startCopier(`stratakv://${from}`, to);
        copiers.push(copier);
        await started(copier);
        const waitMs = kill === 0 ? 30 + Math.floor(random() * 100) : 100 + Math.floor(random() * 1_500);
        const early = await Promise.race([copier.exited.then(() => true), sleep(waitMs).then(() => false)]);
        assert.equal(early, false, `the copier ran until killed: ${copier.stderr()}`);
        copier.child.kill('SIGKILL');
        await copier.exited;
        kills.push(`after ${waitMs} ms: ${copier.stderr().split('\n').filter((line) => line.trim() !== '').pop() ?? 'no output'}`);
        if (kill === DOWN_DURING_COMPACTION) {
          // Down while the source writes on, until its log is compacted past the copier's position.
          const compacted = await waitForCompaction(source.endpoints(), to);
          kills.push(`down until the source's log no longer held index ${compacted}`);
        }
      }
      const forward = startCopier(`stratakv://${from}`, to);
      copiers.push(forward);
      await started(forward);
      const followed = await caughtUp(to);
      assert.ok((followed['rescans'] as number) >= 1, `the copier scanned again after the source compacted past it: ${JSON.stringify(followed)}\n${kills.join('\n')}`);

      // ---- verify while the copy follows the load ----
      const verified = copyCli(['verify', '--to', to]);
      assert.equal(verified.status, 0, `verify: ${JSON.stringify(verified.json)} ${verified.stderr}\nkills: ${kills.join('\n')}`);
      assert.equal(verified.json['equal'], true);
      assert.equal(verified.json['method'], 'merkle');
      assert.ok((verified.json['keyCount'] as number) > BULK_KEYS / 2, `keys compared: ${String(verified.json['keyCount'])}`);
      // A mirror refuses client writes and linearizable reads.
      assert.notEqual(etcdctl(mirror.endpoints(), ['put', 'x', 'y']).status, 0);

      // ---- switch: the mirror takes the writes, the source follows it ----
      const okBeforeSwitch = workload.okCount();
      const switched = copyCli(['switch', '--to', to]);
      assert.equal(switched.status, 0, `switch: ${JSON.stringify(switched.json)} ${switched.stderr}`);
      assert.equal(switched.json['result'], 'switched');
      assert.equal((switched.json['verified'] as { equal: boolean }).equal, true);
      const switchPauseMs = switched.json['writePauseMs'];
      // The running copier steps aside.
      assert.equal(await Promise.race([forward.exited, sleep(30_000).then(() => 'still running')]), 0, `the forward copier stepped aside: ${forward.stderr()}`);
      assert.match(forward.stderr(), /stepped aside for a `copy switch`/);
      // The source refuses writes now; the mirror takes them.
      assert.notEqual(etcdctl(source.endpoints(), ['put', 'x', 'y']).status, 0);
      assert.equal(etcdctl(mirror.endpoints(), ['put', 'switched', 'yes']).status, 0);

      const reverseCopier = startCopier(`stratakv://${to}`, from);
      copiers.push(reverseCopier);
      await started(reverseCopier);
      for (let poll = 0; poll < 200 && workload.okCount() < okBeforeSwitch + 200; poll += 1) await sleep(50);
      await caughtUp(from);
      const reverseVerified = copyCli(['verify', '--to', from]);
      assert.equal(reverseVerified.status, 0, `verify of the reverse copy: ${JSON.stringify(reverseVerified.json)} ${reverseVerified.stderr}`);

      // ---- reverse: the writes move back ----
      const okBeforeReverse = workload.okCount();
      const reversed = copyCli(['reverse', '--to', from]);
      assert.equal(reversed.status, 0, `reverse: ${JSON.stringify(reversed.json)} ${reversed.stderr}`);
      const reversePauseMs = reversed.json['writePauseMs'];
      assert.equal(await Promise.race([reverseCopier.exited, sleep(30_000).then(() => 'still running')]), 0, `the reverse copier stepped aside: ${reverseCopier.stderr()}`);
      const again = startCopier(`stratakv://${from}`, to);
      copiers.push(again);
      await started(again);
      for (let poll = 0; poll < 200 && workload.okCount() < okBeforeReverse + 200; poll += 1) await sleep(50);

      // ---- the end: the history across both switches, and a last verify ----
      bulkWriting = false;
      await bulk;
      const result = await workload.stop();
      assert.ok(result.ok > 500, `the clients made progress (${result.ok} operations)`);
      assert.equal(result.failed, 0, `no operation failed or was left ambiguous: ${JSON.stringify([...result.failures])}`);
      const verdict = checkLinearizability(result.history);
      assert.equal(verdict.result, 'linearizable', formatVerdict(verdict).join('\n'));
      await caughtUp(to);
      const last = copyCli(['verify', '--to', to]);
      assert.equal(last.status, 0, `the last verify: ${JSON.stringify(last.json)} ${last.stderr}`);
      again.child.kill('SIGTERM');
      await again.exited;
      // What the run did, for the log (the pauses are measured by bench/, not asserted here).
      console.log(`copy-stratakv: ${result.ok} client operations, ${bulkWrites} bulk writes; switch pause ${String(switchPauseMs)} ms, reverse pause ${String(reversePauseMs)} ms; kills: ${kills.join(' | ')}`);
    } finally {
      bulkWriting = false;
      await bulk.catch(() => undefined);
      await workload.stop().catch(() => undefined);
      for (const client of clients) client.close();
      bulkClient.close();
    }
  });
  test('a switch and a reverse killed half way (kill -9) finish when run again', async () => {
    // After the first test: the mirror follows the source again (forward), nothing running.
    const both = [...source.endpoints(), ...mirror.endpoints()];
    const writer = new EtcdClient({ endpoints: both, timeoutMs: 15_000, failOverOnMirror: true });
    let writing = true;
    let acknowledged = 0;
    const writes = (async (): Promise<void> => {
      for (let count = 0; writing && count < 50_000; count += 1) {
        await writer.put(`again/${count % 200}`, `v${count}`);
        acknowledged += 1;
      }
    })();
    try {
      const killedAt = async (args: readonly string[], line: RegExp): Promise<string> => {
        const child = spawn(process.execPath, [CLI, 'migrate', 'copy', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
        const seen = new Promise<void>((resolve) => {
          const onData = (chunk: Buffer): void => {
            output += chunk.toString('utf8');
            if (line.test(output)) {
              child.kill('SIGKILL');
              resolve();
            }
          };
          child.stdout?.on('data', onData);
          child.stderr?.on('data', onData);
          child.on('exit', () => resolve());
        });
        await Promise.race([seen, sleep(CLI_TIMEOUT_MS)]);
        child.kill('SIGKILL');
        await exited;
        return output;
      };
      // Killed once the source is fenced: the mirror is `switching`, the source `fenced`.
      const first = await killedAt(['switch', '--to', to], /the source is fenced/);
      assert.match(first, /the source is fenced/, first);
      const finished = copyCli(['switch', '--to', to]);
      assert.equal(finished.status, 0, `switch run again: ${JSON.stringify(finished.json)} ${finished.stderr}\nfirst run: ${first}`);
      assert.equal(finished.json['result'], 'switched');
      assert.equal((finished.json['verified'] as { equal: boolean }).equal, true);

      // Killed once the old source takes writes again, before the reverse copy is set up.
      const second = await killedAt(['reverse', '--to', from], /takes writes at revision/);
      assert.match(second, /takes writes at revision/, second);
      // The old source takes writes and is no mirror: the rerun names the other cluster.
      const reversed = copyCli(['reverse', '--to', from, '--from', `stratakv://${to}`]);
      assert.equal(reversed.status, 0, `reverse run again: ${JSON.stringify(reversed.json)} ${reversed.stderr}\nfirst run: ${second}`);
      assert.equal(reversed.json['result'], 'switched');

      // The mirror follows the source again: caught up, and equal.
      const before = acknowledged;
      for (let poll = 0; poll < 200 && acknowledged < before + 100; poll += 1) await sleep(50);
      writing = false;
      await writes;
      const caught = copyCli(['create', '--from', `stratakv://${from}`, '--to', to, '--until-caught-up']);
      assert.equal(caught.status, 0, JSON.stringify(caught.json));
      // Verify needs a copier to replay its checkpoint: one runs alongside.
      const copier = startCopier(`stratakv://${from}`, to);
      copiers.push(copier);
      await started(copier);
      const verified = copyCli(['verify', '--to', to]);
      copier.child.kill('SIGTERM');
      await copier.exited;
      assert.equal(verified.status, 0, `verify: ${JSON.stringify(verified.json)} ${verified.stderr}`);
    } finally {
      writing = false;
      await writes.catch(() => undefined);
      writer.close();
    }
  });
});

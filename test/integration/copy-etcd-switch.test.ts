// The switch of a copy from etcd, end to end with real processes: Debian's etcd as the source,
// a 3-process stratakv mirror, and the CLI. Four linearizable clients and a bulk writer write
// etcd; the copier follows it; `copy switch` verifies, asks for the writers to move (the test
// moves them with EtcdClient.setEndpoints, then types "moved"), waits for etcd to be quiet and
// makes the mirror writable; the reverse copy keeps etcd following the new primary, killed with
// SIGKILL at seeded moments and started again (once after it stayed down while the new primary
// snapshotted past its position: the log hold kept the entries it needs); `copy reverse` moves the writes back to etcd;
// the forward copy resumes from etcd without a scan (the revisions are equal), and a last
// verify compares every key's value and counters.
//
// The clients' history across both moves must be linearizable with no operation failed, and
// etcd's and stratakv's revisions must be equal at the end: every command the new primary
// took became exactly one etcd revision.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { EtcdClient } from '../../src/client/index.ts';
import { REVERSE_STATE_KEY, decodeCopyState, stratakvSource } from '../../src/migrate/copy/index.ts';
import { checkLinearizability, formatVerdict } from '../linearizability/index.ts';
import { etcdSkipReason, startEtcdCluster, type EtcdCluster } from '../client/etcd-process.ts';
import { copyCli as runCopyCli, COPY_CLI, seeded } from './copy-cli.ts';
import { etcdctlSkipReason, TestCluster } from './cluster-process.ts';
import { startWorkload } from './linearizable-workload.ts';

const SEED = Number(process.env['COPY_TEST_SEED'] ?? 16_301);
const BULK_KEYS = 2_000;
const CLIENTS = 4;
const REVERSE_KILLS = 3;
const CLI_TIMEOUT_MS = 120_000;
const skip = etcdSkipReason() || etcdctlSkipReason() || false;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function copyCli(args: readonly string[]): ReturnType<typeof runCopyCli> {
  return runCopyCli(args, CLI_TIMEOUT_MS);
}

/** Running is a CLI process left running (a copier), with what it printed. */
interface Running {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly output: () => string;
}

// Every CLI process a test started: the ones still running when it ends are killed.
const spawned: ChildProcess[] = [];

function startCli(args: readonly string[], stdin: 'ignore' | 'pipe' = 'ignore'): Running {
  const child = spawn(process.execPath, [COPY_CLI, 'migrate', 'copy', ...args], { stdio: [stdin, 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  spawned.push(child);
  return { child, exited, output: () => output };
}

async function waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const started = performance.now();
  while (!check()) {
    if (performance.now() - started > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

async function exitWithin(running: Running, timeoutMs: number): Promise<number | null> {
  const code = await Promise.race([running.exited, sleep(timeoutMs).then(() => 'timeout' as const)]);
  if (code === 'timeout') {
    running.child.kill('SIGKILL');
    assert.fail(`the CLI did not exit in ${timeoutMs} ms: ${running.output()}`);
  }
  return code;
}

describe('migrate copy switch of an etcd source, the reverse copy into etcd, and back', { skip }, () => {
  let source: EtcdCluster;
  let target: TestCluster;
  let etcdUrl: string;
  let to: string;

  before(async () => {
    source = await startEtcdCluster(1);
    // Snapshots every 300 entries, 50 kept behind: without the reverse copy's log hold, a
    // reverse copier down for a few seconds under the load would find its position compacted.
    target = await TestCluster.start(3, { serveArgs: ['--snapshot-count=300', '--snapshot-catchup-entries=50'] });
    await target.waitForLeader();
    etcdUrl = `etcd://${source.endpoints.join(',')}`;
    to = target.endpoints().join(',');
  });
  after(async () => {
    for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await target?.stop();
    await source?.stop();
  });

  test(`${CLIENTS} linearizable clients and a bulk writer across switch and reverse; the reverse copy killed ${REVERSE_KILLS} times; revisions equal at the end`, async () => {
    const random = seeded(SEED);
    const preload = new EtcdClient({ endpoints: source.endpoints, timeoutMs: 10_000 });
    try {
      for (let at = 0; at < BULK_KEYS; at += 100) {
        const success = Array.from({ length: 100 }, (_, offset) => ({ type: 'put' as const, key: Buffer.from(`bulk/${String(at + offset).padStart(5, '0')}`), value: Buffer.from(`preload-${at + offset}`) }));
        await preload.txn({ type: 'txn', compare: [], success, failure: [] });
      }
    } finally {
      preload.close();
    }
    const first = copyCli(['create', '--from', etcdUrl, '--to', to, '--until-caught-up']);
    assert.equal(first.status, 0, `${JSON.stringify(first.json)} ${first.stderr}`);
    let forward = startCli(['create', '--from', etcdUrl, '--to', to]);

    // The writers: every client writes where the test points it (etcd first). A mirror's
    // refusal is retried on the same endpoints until the switch ends (failOverOnMirror).
    const clients = Array.from({ length: CLIENTS }, () => new EtcdClient({ endpoints: source.endpoints, timeoutMs: 20_000, failOverOnMirror: true }));
    const bulkClient = new EtcdClient({ endpoints: source.endpoints, timeoutMs: 20_000, failOverOnMirror: true });
    const everyClient = [...clients, bulkClient];
    const moveTo = (endpoints: readonly string[]): void => {
      for (const client of everyClient) client.setEndpoints(endpoints);
    };
    const workload = startWorkload(clients, { keys: ['a', 'b', 'c', 'd', 'e'], seed: SEED, pauseMs: 5 });
    let bulkWriting = true;
    let bulkWrites = 0;
    const bulk = (async (): Promise<void> => {
      const mine = seeded(SEED * 7);
      for (let count = 0; bulkWriting && count < 200_000; count += 1) {
        const key = `bulk/${String(Math.floor(mine() * (BULK_KEYS + 200))).padStart(5, '0')}`;
        const roll = mine();
        if (roll < 0.6) await bulkClient.put(key, `b-${count}`);
        else if (roll < 0.75) await bulkClient.delete(key);
        else if (roll < 0.85) await bulkClient.delete(`bulk/${String(Math.floor(mine() * 20)).padStart(4, '0')}`, { prefix: true });
        else {
          const other = `bulk/${String(Math.floor(mine() * (BULK_KEYS + 200))).padStart(5, '0')}`;
          if (other !== key) {
            await bulkClient.txn({
              type: 'txn',
              compare: [{ target: 'version', result: 'greater', key: Buffer.from(key), number: 1 }],
              success: [{ type: 'put', key: Buffer.from(key), value: Buffer.from(`t-${count}`) }, { type: 'deleteRange', key: Buffer.from(other) }],
              failure: [{ type: 'put', key: Buffer.from(other), value: Buffer.from(`f-${count}`) }],
            });
          }
        }
        bulkWrites += 1;
        await sleep(2);
      }
    })();
    const notes: string[] = [];
    try {
      await sleep(1_500);

      // ---- the switch: the test is the operator ----
      const okBeforeSwitch = workload.okCount();
      const switching = startCli(['switch', '--from', etcdUrl, '--to', to, '-w', process.env['SWITCH_DEBUG'] === undefined ? 'json' : 'simple'], 'pipe');
      await waitFor('the switch asking for the writers to move', () => /move the writers/.test(switching.output()) || switching.child.exitCode !== null, 120_000);
      assert.match(switching.output(), /move the writers/, switching.output());
      moveTo(target.endpoints());
      switching.child.stdin?.write('moved\n');
      assert.equal(await exitWithin(switching, CLI_TIMEOUT_MS), 0, switching.output());
      const switched = JSON.parse(switching.output().trim().split('\n').filter((line) => line.startsWith('{')).pop() ?? '{}') as Record<string, unknown>;
      assert.equal(switched['result'], 'switched', switching.output());
      notes.push(`switch pause ${String(switched['writePauseMs'])} ms, ${String(switched['deltaKeys'])} keys verified again, steps ${JSON.stringify(switched['steps'])}`);
      // The forward copier steps aside on its own.
      assert.equal(await exitWithin(forward, 30_000), 0, forward.output());
      await waitFor('the clients writing to the new primary', () => workload.okCount() > okBeforeSwitch + 100, 30_000);

      // ---- the reverse copy, killed at seeded moments ----
      let reverse: Running | undefined;
      for (let kill = 0; kill <= REVERSE_KILLS; kill += 1) {
        reverse = startCli(['create', '--from', `stratakv://${to}`, '--to', etcdUrl]);
        const running = reverse;
        await waitFor('the reverse copy loading etcd', () => /reverse copy: loaded/.test(running.output()) || running.child.exitCode !== null, 60_000);
        assert.match(running.output(), /reverse copy: loaded/, running.output());
        if (kill === REVERSE_KILLS) break;
        await sleep(100 + Math.floor(random() * 1_200));
        assert.equal(running.child.exitCode, null, `the reverse copy ran until killed: ${running.output()}`);
        running.child.kill('SIGKILL');
        await running.exited;
        notes.push(`reverse kill ${kill + 1}`);
        if (kill === 1) {
          // Down while the new primary writes on and snapshots several times: its log hold keeps
          // the entries the reverse copy needs.
          const position = Number(copyCli(['status', '--to', etcdUrl]).json['appliedIndex']);
          const log = stratakvSource(target.endpoints());
          try {
            let head = (await log.head()).index;
            for (let poll = 0; poll < 600 && head < position + 1_500; poll += 1) {
              await sleep(100);
              head = (await log.head()).index;
            }
            assert.ok(head >= position + 1_500, `the new primary wrote 1,500 entries past the reverse copy's position ${position} (at ${head})`);
            notes.push(`reverse copy down from index ${position} to ${head}`);
          } finally {
            log.close();
          }
        }
      }
      await sleep(1_000);
      const status = copyCli(['status', '--to', etcdUrl]);
      assert.equal(status.status, 0, JSON.stringify(status.json));
      assert.equal(status.json['exactRevisions'], true, JSON.stringify(status.json));
      // `copy verify` of the reverse copy: a pinned view of the new primary against etcd, while both copiers run.
      const reverseVerify = copyCli(['verify', '--to', etcdUrl]);
      assert.equal(reverseVerify.status, 0, `${JSON.stringify(reverseVerify.json)} ${reverseVerify.stderr}`);
      assert.equal(reverseVerify.json['equal'], true);
      assert.ok(Number(reverseVerify.json['keysCompared']) > BULK_KEYS / 2, JSON.stringify(reverseVerify.json));

      // ---- back to etcd ----
      const okBeforeReverse = workload.okCount();
      const back = copyCli(['reverse', '--from', `stratakv://${to}`, '--to', etcdUrl]);
      assert.equal(back.status, 0, `${JSON.stringify(back.json)} ${back.stderr}`);
      notes.push(`reverse pause ${String(back.json['writePauseMs'])} ms, steps ${JSON.stringify(back.json['steps'])}`);
      moveTo(source.endpoints);
      // The running reverse copier stops at the fence.
      assert.equal(await exitWithin(reverse as Running, 30_000), 0, (reverse as Running).output());
      await waitFor('the clients writing to etcd again', () => workload.okCount() > okBeforeReverse + 100, 30_000);

      // ---- the forward copy resumes from etcd without a scan ----
      forward = startCli(['create', '--from', etcdUrl, '--to', to]);
      await sleep(1_000);
    } catch (error) {
      bulkWriting = false;
      for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await workload.stop().catch(() => undefined);
      for (const client of everyClient) client.close();
      throw error;
    } finally {
      bulkWriting = false;
      await bulk.catch(() => undefined);
    }
    const result = await workload.stop();
    for (const client of everyClient) client.close();
    const caught = copyCli(['create', '--from', etcdUrl, '--to', to, '--until-caught-up']);
    forward.child.kill('SIGTERM');
    await exitWithin(forward, 30_000);
    assert.equal(caught.status, 0, `${JSON.stringify(caught.json)} ${caught.stderr}`);
    const state = caught.json['state'] as { rescans: number; phase: string };
    assert.equal(state.phase, 'tailing');
    assert.equal(state.rescans, 0, 'the forward copy resumed without a scan');

    assert.ok(result.ok > 300, `the clients made progress (${result.ok} operations)`);
    assert.equal(result.failed, 0, `no operation failed or was left ambiguous: ${JSON.stringify([...result.failures])}`);
    const verdict = checkLinearizability(result.history);
    assert.equal(verdict.result, 'linearizable', formatVerdict(verdict).join('\n'));

    const verify = copyCli(['verify', '--to', to]);
    assert.equal(verify.status, 0, `${JSON.stringify(verify.json)} ${verify.stderr}`);
    assert.equal(verify.json['equal'], true);
    // The revisions are equal: every command of the new primary became one etcd revision.
    const etcd = new EtcdClient({ endpoints: source.endpoints, timeoutMs: 10_000 });
    const mirror = new EtcdClient({ endpoints: target.endpoints(), timeoutMs: 10_000, mirrorReader: true });
    try {
      const etcdHead = await etcd.get('a');
      const mirrorHead = await mirror.get('a');
      assert.equal(mirrorHead.header.revision, etcdHead.header.revision, 'the mirror is at etcd\'s revision');
      assert.deepEqual(mirrorHead.kvs, etcdHead.kvs);
      const reverseState = await etcd.get(REVERSE_STATE_KEY);
      assert.equal(decodeCopyState(reverseState.kvs[0]?.value ?? new Uint8Array()).phase, 'completed');
    } finally {
      etcd.close();
      mirror.close();
    }
    console.log(`copy-etcd-switch: ${result.ok} client operations, ${bulkWrites} bulk writes; ${notes.join('; ')}`);
  });
});

// The copier against a real etcd (Debian's 3.4) as the source and a real state machine as the
// target: the scan at one revision, the tail under writes (puts, deletes, txns, a leased key),
// resumes after stops at seeded random moments and lost answers, and the re-scan after a
// compaction. Every run ends with verifyCopy and a full comparison of our own: every key's
// value, create and mod revision, version and lease equal, nothing extra, the revisions equal.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { EtcdClient } from '../../../src/client/index.ts';
import { etcdSource, runCopy, verifyCopy, type CopyEvent, type CopySource } from '../../../src/migrate/copy/index.ts';
import { ErrorCode, isStrataError } from '../../../src/util/errors.ts';
import { SeededRandom } from '../../../src/util/random.ts';
import { etcdSkipReason, startEtcdCluster, type EtcdCluster } from '../../client/etcd-process.ts';
import { StateMachineTarget } from './state-machine-target.ts';

const ETCDCTL = '/usr/bin/etcdctl';
const SEED = Number(process.env['COPY_TEST_SEED'] ?? 16_001);
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');

/** seeded draws in [0, 1) from the project's seeded generator. */
function seeded(seed: number): () => number {
  const random = new SeededRandom(seed);
  return () => random.nextUint32() / 0x1_0000_0000;
}

function etcdctl(endpoint: string, ...args: string[]): string {
  return execFileSync(ETCDCTL, [`--endpoints=${endpoint}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, encoding: 'utf8', timeout: 10_000 });
}

/** assertSame compares every key of the source (at its current revision) with the target, and the revisions. */
async function assertSame(client: EtcdClient, target: StateMachineTarget, prefix: string): Promise<void> {
  const source = await client.get(prefix, { prefix: true });
  const end = Buffer.from(prefix);
  end[end.length - 1] = (end[end.length - 1] ?? 0) + 1;
  const mirrored = await target.kv.range({ type: 'range', key: Buffer.from(prefix), rangeEnd: end });
  assert.equal(mirrored.kvs.length, source.kvs.length, 'as many keys on both sides');
  for (const [at, kv] of source.kvs.entries()) {
    const other = mirrored.kvs[at];
    assert.ok(other !== undefined);
    assert.deepEqual(
      { key: text(other.key), value: text(other.value), createRevision: other.createRevision, modRevision: other.modRevision, version: other.version, lease: other.lease },
      { key: text(kv.key), value: text(kv.value), createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version, lease: kv.lease },
    );
  }
}

/** writeLoad runs `count` seeded writes on keys under `prefix`: puts, deletes and two-key txns. */
async function writeLoad(client: EtcdClient, prefix: string, count: number, random: () => number): Promise<void> {
  for (let at = 0; at < count; at += 1) {
    const key = `${prefix}${String(Math.floor(random() * 400)).padStart(4, '0')}`;
    const roll = random();
    if (roll < 0.6) await client.put(key, `v${at}`);
    else if (roll < 0.8) await client.delete(key);
    else {
      const other = `${prefix}${String(Math.floor(random() * 400)).padStart(4, '0')}`;
      if (other === key) continue;
      await client.txn({ type: 'txn', compare: [], success: [{ type: 'put', key: Buffer.from(key), value: Buffer.from(`t${at}`) }, { type: 'deleteRange', key: Buffer.from(other) }], failure: [] });
    }
  }
}

describe('copy from etcd into a mirror state machine', { skip: etcdSkipReason() }, () => {
  let cluster: EtcdCluster;
  let client: EtcdClient;
  let endpoint: string;

  before(async () => {
    cluster = await startEtcdCluster(1);
    endpoint = cluster.endpoints[0] ?? '';
    client = new EtcdClient({ endpoints: cluster.endpoints, timeoutMs: 10_000 });
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  test('scan, then tail under puts, deletes, txns and a leased key: every key and counter equal, revisions equal', async () => {
    const random = seeded(SEED);
    const prefix = 'scan/';
    for (let at = 0; at < 1_500; at += 1) await client.put(`${prefix}${String(at % 400).padStart(4, '0')}`, `initial-${at}`);
    const lease = /lease ([0-9a-f]+) granted/.exec(etcdctl(endpoint, 'lease', 'grant', '600'))?.[1];
    assert.ok(lease !== undefined, 'etcdctl granted a lease');
    etcdctl(endpoint, 'put', `--lease=${lease}`, `${prefix}leased`, 'with a lease');
    await client.put('other/outside-the-prefix', 'not copied');

    const target = await StateMachineTarget.open(16 * 1024);
    const source = etcdSource([endpoint]);
    const events: CopyEvent[] = [];
    const stop = new AbortController();
    const copying = runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [endpoint], prefix: Buffer.from(prefix), signal: stop.signal, pageKeys: 100, progressIntervalMs: 200, onEvent: (event) => events.push(event) });
    await writeLoad(client, prefix, 600, random);
    await client.put('other/outside-again', 'not copied either');
    const caughtUp = await runCopyUntilCaughtUp(copying, stop, source, target, prefix);
    assert.equal(caughtUp.reason, 'caught-up');
    assert.equal(caughtUp.state.phase, 'tailing');
    assert.ok(events.some((event) => event.kind === 'scan-done'), 'the scan finished');
    assert.ok(events.some((event) => event.kind === 'applied'), 'the tail applied changes');
    await assertSame(client, target, prefix);
    const head = await client.get('any', { countOnly: true });
    assert.equal(target.kv.revision(), head.header.revision, 'the target is at the source\'s revision (progress marks move it past writes outside the prefix)');
    const report = await verifyCopy({ source, target, pageKeys: 64 });
    assert.equal(report.equal, true, JSON.stringify(report.differences.slice(0, 3)));
    assert.equal(report.leasedKeys, 1, 'the leased key is reported');
    const leased = await target.kv.range({ type: 'range', key: Buffer.from(`${prefix}leased`) });
    assert.equal(leased.kvs[0]?.lease, BigInt(`0x${lease}`), 'the lease id is kept exactly (etcd\'s ids are above 2^53)');
    assert.ok(caughtUp.state.leasedPuts >= 1);
    source.close();
  });

  test('stopped at 5 seeded moments and with lost answers, each resume ends equal, nothing applied twice', async () => {
    const random = seeded(SEED + 1);
    const prefix = 'resume/';
    for (let at = 0; at < 2_000; at += 1) await client.put(`${prefix}${String(at % 400).padStart(4, '0')}`, `initial-${at}`);
    const target = await StateMachineTarget.open(8 * 1024);
    const source = etcdSource([endpoint]);
    const writes = writeLoad(client, prefix, 800, random);
    for (let stopAt = 0; stopAt < 5; stopAt += 1) {
      const stop = new AbortController();
      // A lost answer after the entry applied and a request lost before it: the copier must
      // find out which from the state, and never apply a batch twice.
      target.faults.push(...(random() < 0.5 ? (['drop-answer', 'drop-request'] as const) : (['drop-request', 'drop-answer'] as const)));
      const running = runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [endpoint], prefix: Buffer.from(prefix), signal: stop.signal, pageKeys: 50, progressIntervalMs: 200 });
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.floor(random() * 400)));
      stop.abort();
      const stopped = await running;
      assert.equal(stopped.reason, 'stopped');
    }
    await writes;
    const last = await runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [endpoint], signal: new AbortController().signal, stopWhenCaughtUp: true, resumeOnly: true, pageKeys: 50, progressIntervalMs: 100 });
    assert.equal(last.reason, 'caught-up');
    await assertSame(client, target, prefix);
    const report = await verifyCopy({ source, target });
    assert.equal(report.equal, true, JSON.stringify(report.differences.slice(0, 3)));
    source.close();
  });

  test('a compaction past the copier\'s position makes it scan again and delete what the source dropped', async () => {
    const prefix = 'compact/';
    for (let at = 0; at < 300; at += 1) await client.put(`${prefix}${String(at).padStart(4, '0')}`, `initial-${at}`);
    const target = await StateMachineTarget.open(8 * 1024);
    const source = etcdSource([endpoint]);
    const first = await runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [endpoint], prefix: Buffer.from(prefix), signal: new AbortController().signal, stopWhenCaughtUp: true, pageKeys: 64, progressIntervalMs: 100 });
    assert.equal(first.state.rescans, 0);
    // While no copier runs: deletes and puts, then a compaction at the current revision.
    for (let at = 0; at < 300; at += 3) await client.delete(`${prefix}${String(at).padStart(4, '0')}`);
    for (let at = 0; at < 50; at += 1) await client.put(`${prefix}new-${at}`, 'after the stop');
    const { header } = await client.get('x', { countOnly: true });
    etcdctl(endpoint, 'compact', String(header.revision));
    const events: CopyEvent[] = [];
    const second = await runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [endpoint], signal: new AbortController().signal, stopWhenCaughtUp: true, resumeOnly: true, pageKeys: 64, progressIntervalMs: 100, onEvent: (event) => events.push(event) });
    assert.equal(second.state.rescans, 1, 'one re-scan');
    assert.ok(events.some((event) => event.kind === 'rescan'));
    await assertSame(client, target, prefix);
    const report = await verifyCopy({ source, target });
    assert.equal(report.equal, true, JSON.stringify(report.differences.slice(0, 3)));
    source.close();
  });

  test('verify lists every difference, page ranges read at once or pages read one after another', async () => {
    const prefix = 'differ/';
    const keyOf = (at: number): string => `${prefix}${String(at).padStart(5, '0')}`;
    for (let at = 0; at < 3_000; at += 1) await client.put(keyOf(at), `value-${at}`);
    const target = await StateMachineTarget.open(64 * 1024);
    const source = etcdSource([endpoint]);
    const copied = await runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [endpoint], prefix: Buffer.from(prefix), signal: new AbortController().signal, stopWhenCaughtUp: true, pageKeys: 200, progressIntervalMs: 100 });
    assert.equal(copied.reason, 'caught-up');
    // The target changed behind the copier's back, at its own revision: one value, one key
    // gone, and 900 keys etcd never had between two of its keys (over 4 pages of the target's
    // in one page range of 100 keys: the range is read in several target pages).
    const view = await target.read();
    const kept = (await target.page({ key: Buffer.from(keyOf(1_500)), rangeEnd: Buffer.from(keyOf(1_501)) }, 1, { keysOnly: false })).kvs[0];
    assert.ok(kept !== undefined && view.state !== undefined);
    const extras = Array.from({ length: 900 }, (_, at) => ({ key: Buffer.from(`${keyOf(2_000)}/extra-${String(at).padStart(4, '0')}`), value: Buffer.from('only on the target'), createRevision: view.revision, modRevision: view.revision, version: 1, lease: 0n }));
    await target.mirror({ type: 'mirrorApply', expectState: view.state, state: view.state, revision: view.revision, puts: [{ ...kept, value: Buffer.from('changed on the target') }, ...extras], deletes: [Buffer.from(keyOf(10))] });
    const { pageRanges: _pageRanges, ...withoutRanges } = source;
    for (const [name, from] of [['page ranges', source], ['pages one after another', withoutRanges]] as const) {
      const report = await verifyCopy({ source: from, target, pageKeys: 100 });
      assert.equal(report.equal, false, name);
      assert.equal(report.differencesCount, 902, name);
      const kinds = new Map<string, string>(report.differences.map((difference) => [Buffer.from(difference.key).toString(), difference.kind]));
      assert.equal(kinds.get(keyOf(1_500)), 'different', name);
      assert.deepEqual(report.differences.find((difference) => Buffer.from(difference.key).toString() === keyOf(1_500))?.fields, ['value'], name);
      assert.equal(kinds.get(keyOf(10)), 'missing', name);
      assert.equal([...kinds.values()].filter((kind) => kind === 'extra').length, 900, name);
      // Listed in key order, and every key of the source compared once.
      const listed = report.differences.map((difference) => Buffer.from(difference.key));
      assert.deepEqual(listed, [...listed].sort(Buffer.compare), name);
      assert.equal(report.keysCompared, 2_999, name);
    }
    source.close();
  });

  test('a resume against another prefix, or with no copy on the target, is refused with MIRROR_CONFLICT', async () => {
    const target = await StateMachineTarget.open();
    const source = etcdSource([endpoint]);
    await assert.rejects(
      runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [endpoint], signal: new AbortController().signal, resumeOnly: true }),
      (error: unknown) => isStrataError(error, ErrorCode.MIRROR_CONFLICT) && /not a mirror/.test(error.message),
    );
    await client.put('refuse/a', '1');
    await runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [endpoint], prefix: Buffer.from('refuse/'), signal: new AbortController().signal, stopWhenCaughtUp: true, progressIntervalMs: 100 });
    await assert.rejects(
      runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [endpoint], prefix: Buffer.from('other/'), signal: new AbortController().signal }),
      (error: unknown) => isStrataError(error, ErrorCode.MIRROR_CONFLICT) && /prefix/.test(error.message),
    );
    source.close();
  });
});

/** runCopyUntilCaughtUp stops a running copier and resumes it until caught up (bounded). */
async function runCopyUntilCaughtUp(running: Promise<unknown>, stop: AbortController, source: CopySource, target: StateMachineTarget, prefix: string) {
  stop.abort();
  await running;
  return await runCopy({ source, target, sourceKind: 'etcd', sourceEndpoints: [], prefix: Buffer.from(prefix), signal: AbortSignal.timeout(60_000), stopWhenCaughtUp: true, progressIntervalMs: 100 });
}

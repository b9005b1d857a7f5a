// Cross-replica integrity checks in running clusters of real RaftNodes (in memory, virtual
// time): periodic checkpoints agree on a healthy cluster; a member whose applied state
// diverged gets a CORRUPT alarm from the majority at the next checkpoint — a follower, and the
// leader itself, which then hands leadership over; the majority's data wins. checkIntegrity()
// reports every member at one index; a checkpoint pin gives every member a digest view exactly
// at its index; the scrubber finds data changed below the state machine and raises CORRUPT.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { RaftNode } from '../../src/node/index.ts';
import { digestRootsEqual, keyHashesOf, leafOf } from '../../src/storage/index.ts';
import type { DigestSums, KvLevel } from '../../src/storage/index.ts';
import { encodeStoredValue, storageKey } from '../../src/storage/kv-keys.ts';
import { ErrorCode, isStrataError } from '../../src/util/index.ts';
import { encoder, leaderOf, put, read, startCluster } from './fixture.ts';

const CHECK_EVERY = { integrityCheckPolicy: { checkpointEntries: 20, checkpointIntervalMs: 0 } };

// diverge makes a member's applied state differ from the others' without touching its log:
// its digest counts one key more, as a replica that applied something else would.
function diverge(node: RaftNode): void {
  const machine = (node as unknown as { stateMachine: { sums: DigestSums } }).stateMachine;
  const key = encoder.encode('phantom');
  machine.sums.add(leafOf(key), keyHashesOf(key, encoder.encode('x'), { createRevision: 2, modRevision: 2, version: 1, lease: 0n }), 1);
}

const hasCorrupt = (node: RaftNode, memberId: number): boolean => node.alarms().some((alarm) => alarm.alarm === 'CORRUPT' && alarm.memberId === memberId);

describe('integrity checkpoints in a cluster', () => {
  test('a healthy cluster agrees at every checkpoint and raises nothing; checkIntegrity names every member', async () => {
    const { nodes, driver } = await startCluster({ nodeOptions: CHECK_EVERY });
    const leader = leaderOf(nodes);
    for (let i = 0; i < 60; i += 1) await driver.settle(put(nodes[i % 3] as RaftNode, `k${i % 7}`, `v${i}`));
    const state = await driver.settle(nodes[1]!.checkIntegrity({ timeoutMs: 5_000 }));
    assert.equal(state.verdict, 'agreed');
    assert.deepEqual(state.reports.map((report) => report.memberId).sort(), nodes.map((node) => node.memberId).sort());
    assert.equal(new Set(state.reports.map((report) => report.digest)).size, 1);
    assert.deepEqual(leader.alarms(), []);
  });

  for (const who of ['follower', 'leader'] as const) {
    test(`a ${who} whose applied state diverged gets CORRUPT from the majority, and the majority's data wins`, async () => {
      const { nodes, driver } = await startCluster({ nodeOptions: CHECK_EVERY });
      const leader = leaderOf(nodes);
      await driver.settle(put(leader, 'a', '1'));
      const bad = who === 'leader' ? leader : (nodes.find((node) => node !== leader) as RaftNode);
      diverge(bad);
      for (let i = 0; i < 30; i += 1) await driver.settle(put(nodes.find((node) => node !== bad) as RaftNode, `k${i}`, `v${i}`)).catch(() => undefined);
      await driver.until(`every member applied CORRUPT for the ${who}`, () => nodes.every((node) => hasCorrupt(node, bad.memberId)));
      for (const node of nodes) assert.deepEqual(node.alarms().map((alarm) => alarm.memberId), [bad.memberId], 'only the diverged member is named');
      await assert.rejects(driver.settle(read(bad, 'a')), (error: unknown) => isStrataError(error, ErrorCode.CORRUPT_ALARM));
      const healthy = nodes.filter((node) => node !== bad);
      await driver.until('a healthy member leads', () => healthy.some((node) => node.status().role === 'leader'));
      await driver.settle(put(healthy[0] as RaftNode, 'after', 'yes'));
      assert.equal(await driver.settle(read(healthy[1] as RaftNode, 'after')), 'yes');
    });
  }

  test('rebuildState: a member with CORRUPT takes the leader\'s snapshot, agrees at the next checkpoint, and its alarm is cleared', async () => {
    const { nodes, driver } = await startCluster({ nodeOptions: CHECK_EVERY });
    const leader = leaderOf(nodes);
    for (let i = 0; i < 10; i += 1) await driver.settle(put(leader, `k${i}`, `v${i}`));
    const bad = nodes.find((node) => node !== leader) as RaftNode;
    diverge(bad);
    for (let i = 0; i < 30; i += 1) await driver.settle(put(leader, `w${i}`, `x${i}`));
    await driver.until('every member applied CORRUPT for the diverged member', () => nodes.every((node) => hasCorrupt(node, bad.memberId)));
    const report = await driver.settle(bad.rebuildState({ timeoutMs: 20_000 }), 30_000);
    assert.ok(report.agrees, JSON.stringify(report.checkpoint));
    assert.ok(report.alarmCleared);
    await driver.until('every member cleared the alarm', () => nodes.every((node) => node.alarms().length === 0));
    assert.equal(await driver.settle(read(bad, 'w29')), 'x29');
    const digests = nodes.map((node) => node.stateDigest());
    await driver.until('all at one index', () => new Set(nodes.map((node) => node.status().appliedIndex)).size === 1);
    assert.ok(nodes.every((node) => digestRootsEqual(node.stateDigest().digest, leader.stateDigest().digest)), JSON.stringify(digests.map((d) => d.revision)));
  });

  test('a read of a damaged value is refused and raises CORRUPT for its member', async () => {
    const { nodes, driver } = await startCluster({ nodeOptions: { integrityCheckPolicy: { checkpointEntries: 0, checkpointIntervalMs: 0 } } });
    const leader = leaderOf(nodes);
    for (let i = 0; i < 5; i += 1) await driver.settle(put(leader, `k${i}`, `v${i}`));
    const victim = nodes.find((node) => node !== leader) as RaftNode;
    await driver.until('the victim applied everything', () => victim.status().appliedIndex >= leader.status().appliedIndex);
    const machine = (victim as unknown as { stateMachine: { db: KvLevel; whenWritten(): Promise<void> } }).stateMachine;
    await driver.settle(machine.whenWritten());
    const stored = (await driver.settle(machine.db.get(storageKey(encoder.encode('k2'))))) as Uint8Array;
    const damaged = stored.slice();
    damaged[7] = (damaged[7] as number) ^ 0x10;
    await driver.settle(machine.db.put(storageKey(encoder.encode('k2')), damaged));
    await assert.rejects(driver.settle(read(victim, 'k2', true)), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION), 'a damaged value is refused, never served');
    await driver.until('every member applied CORRUPT for the victim', () => nodes.every((node) => hasCorrupt(node, victim.memberId)));
    assert.equal(await driver.settle(read(leader, 'k2')), 'v2');
  });

  test('a follower whose stored value decayed stops applying when it reads it, raises CORRUPT for itself without crashing, and a rebuild brings it back', async () => {
    const { nodes, driver } = await startCluster({ nodeOptions: { integrityCheckPolicy: { checkpointEntries: 0, checkpointIntervalMs: 0 } } });
    const leader = leaderOf(nodes);
    for (let i = 0; i < 10; i += 1) await driver.settle(put(leader, `k${i}`, `v${i}`));
    const victim = nodes.find((node) => node !== leader) as RaftNode;
    await driver.until('the victim applied everything', () => victim.status().appliedIndex >= leader.status().appliedIndex);
    const machine = (victim as unknown as { stateMachine: { db: KvLevel; whenWritten(): Promise<void> } }).stateMachine;
    await driver.settle(machine.whenWritten());
    const stored = (await driver.settle(machine.db.get(storageKey(encoder.encode('k4'))))) as Uint8Array;
    const damaged = stored.slice();
    damaged[damaged.byteLength - 1] = (damaged[damaged.byteLength - 1] as number) ^ 1;
    await driver.settle(machine.db.put(storageKey(encoder.encode('k4')), damaged));
    await driver.settle(put(leader, 'k4', 'overwritten'));
    await driver.until('every member applied CORRUPT for the victim', () => nodes.every((node) => hasCorrupt(node, victim.memberId)));
    assert.ok((victim as unknown as { stateMachine: { corruption(): unknown } }).stateMachine.corruption() !== undefined, 'the apply found it');
    await assert.rejects(driver.settle(read(victim, 'k4', true)), (error: unknown) => isStrataError(error, ErrorCode.CORRUPT_ALARM) || isStrataError(error, ErrorCode.CORRUPTION));
    await driver.settle(put(leader, 'after', 'yes'));
    const report = await driver.settle(victim.rebuildState({ timeoutMs: 20_000 }), 30_000);
    assert.ok(report.alarmCleared, JSON.stringify(report.checkpoint));
    assert.equal(await driver.settle(read(victim, 'k4')), 'overwritten');
    assert.equal(await driver.settle(read(victim, 'after', true)), 'yes');
  });

  test('a checkpoint pin gives every member a digest view exactly at its index', async () => {
    const { nodes, driver } = await startCluster({ nodeOptions: { integrityCheckPolicy: { checkpointEntries: 0, checkpointIntervalMs: 0 } } });
    const leader = leaderOf(nodes);
    for (let i = 0; i < 20; i += 1) await driver.settle(put(leader, `k${i}`, `v${i}`));
    const follower = nodes.find((node) => node !== leader) as RaftNode;
    const pin = await driver.settle(follower.pinDigestView({ at: 'checkpoint', timeoutMs: 5_000 }));
    assert.match(pin.pinId, /^i\d+$/);
    for (let i = 0; i < 10; i += 1) await driver.settle(put(leader, `later${i}`, 'x'));
    const views = await Promise.all(nodes.map((node) => driver.settle(node.digestView(pin.pinId, { timeoutMs: 5_000 }))));
    for (const view of views) {
      assert.equal(view.appliedIndex, pin.index);
      assert.equal(view.revision, pin.revision);
      assert.ok(digestRootsEqual(view.sums.root(), (views[0] as (typeof views)[0]).sums.root()));
    }
    assert.equal((views[0] as (typeof views)[0]).sums.root().keyCount, 20);
    await assert.rejects(driver.settle(leader.digestView('i1', { timeoutMs: 100 })), (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
    for (const node of nodes) await driver.settle(node.releaseDigestView(pin.pinId));
    const applied = await driver.settle(leader.pinDigestView({ at: 'applied' }));
    assert.equal((await driver.settle(leader.digestView(applied.pinId))).sums.root().keyCount, 30);
  });

  test('the scrubber finds a value changed below the state machine and raises CORRUPT for its member', async () => {
    const { nodes, driver } = await startCluster({ nodeOptions: { integrityCheckPolicy: { checkpointEntries: 0, checkpointIntervalMs: 0 } } });
    const leader = leaderOf(nodes);
    for (let i = 0; i < 20; i += 1) await driver.settle(put(leader, `k${i}`, `v${i}`));
    const victim = nodes.find((node) => node !== leader) as RaftNode;
    await driver.until('the victim applied everything', () => victim.status().appliedIndex >= leader.status().appliedIndex);
    const clean = await driver.settle(victim.scrubNow());
    assert.equal(clean.failure, undefined);
    assert.equal(clean.keys, 20);
    const machine = (victim as unknown as { stateMachine: { db: KvLevel; whenWritten(): Promise<void> } }).stateMachine;
    await driver.settle(machine.whenWritten());
    await driver.settle(machine.db.put(storageKey(encoder.encode('k3')), encodeStoredValue(encoder.encode('k3'), { createRevision: 5, modRevision: 5, version: 1, lease: 0n, value: encoder.encode('rotten') })));
    const report = await driver.settle(victim.scrubNow());
    assert.match(report.failure ?? '', /not what it applied/);
    await driver.until('every member applied CORRUPT for the victim', () => nodes.every((node) => hasCorrupt(node, victim.memberId)));
    assert.equal(await driver.settle(read(leader, 'k3')), 'v3', 'the others serve the right value');
  });
});

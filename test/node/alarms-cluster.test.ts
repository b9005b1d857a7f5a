// Alarms in running clusters of real RaftNodes: an alarm raised through one member is applied
// by all; NOSPACE refuses Puts (and Txns with a Put) everywhere but not reads or deletes; a
// member's CORRUPT alarm makes it refuse every KV call while the others serve, and a leader
// with one gives up leadership (again after winning it back); the cluster's CORRUPT alarm
// (member 0) refuses writes everywhere. Alarms reach a member that catches up by snapshot,
// and survive a restart whether the log or the snapshot holds them (on disk, in real time).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { RaftNode } from '../../src/node/index.ts';
import type { AlarmRecord, RaftNodeOptions } from '../../src/node/index.ts';
import type { DeleteRangeRequest, KvRequest, PutRequest, RangeRequest, RangeResponse } from '../../src/storage/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { ErrorCode, isStrataError, SYSTEM_CLOCK } from '../../src/util/index.ts';
import { decoder, ELECTION_MS, encoder, leaderOf, peerUrl, put, read, startCluster, systemDriver, track } from './fixture.ts';
import type { Driver } from './fixture.ts';

const POLICY = { snapshotCount: 40, catchUpEntries: 10, restoreBytesPerSecondAssumed: 1024 * 1024 * 1024, snapshotDutyCycleMax: 1 };

const key = (text: string): Uint8Array => encoder.encode(text);
const putRequest = (name: string): PutRequest => ({ type: 'put', key: key(name), value: key('v') });
const rangeRequest = (name: string, serializable = false): RangeRequest => ({ type: 'range', key: key(name), serializable });
const deleteRequest = (name: string): DeleteRangeRequest => ({ type: 'deleteRange', key: key(name) });
const txnWithPutOnFailure: KvRequest = { type: 'txn', compare: [{ target: 'version', result: 'equal', key: key('x'), number: 0 }], success: [rangeRequest('x')], failure: [putRequest('x')] };
const txnReadOnly: KvRequest = { type: 'txn', compare: [], success: [rangeRequest('x')], failure: [] };
const txnWithDelete: KvRequest = { type: 'txn', compare: [], success: [deleteRequest('x')], failure: [] };

function listed(node: RaftNode, record: AlarmRecord): boolean {
  return node.alarms().some((raised) => raised.memberId === record.memberId && raised.alarm === record.alarm);
}

async function refusedWith(driver: Driver, node: RaftNode, request: KvRequest, code: ErrorCode): Promise<void> {
  await assert.rejects(driver.settle(node.kv(request, { timeoutMs: 2_000 })), (error: unknown) => isStrataError(error, code), `${node.name}: ${request.type} should be refused with ${code}`);
}

async function served(driver: Driver, node: RaftNode, request: KvRequest): Promise<void> {
  await driver.settle(node.kv(request, { timeoutMs: 2_000 }));
}

describe('alarms in a cluster', () => {
  test('an alarm raised through one member is listed on all; NOSPACE refuses Puts everywhere but not reads or deletes; disarm restores writes', async () => {
    const { nodes, driver } = await startCluster();
    const leader = leaderOf(nodes);
    const [follower, other] = nodes.filter((node) => node !== leader) as [RaftNode, RaftNode];
    await driver.settle(put(leader, 'x', 'before'));
    const record: AlarmRecord = { memberId: follower.memberId, alarm: 'NOSPACE' };
    assert.deepEqual(await driver.settle(follower.changeAlarm('activate', follower.memberId, 'NOSPACE')), [record]);
    assert.ok(listed(follower, record), 'applied on the member that raised it when the call resolves');
    assert.deepEqual(await driver.settle(other.alarmList()), [record], 'a linearizable list on another member sees it');
    await driver.until('every member applied the alarm', () => nodes.every((node) => listed(node, record)));
    assert.deepEqual(leader.status().alarms, [record]);
    for (const node of nodes) {
      await refusedWith(driver, node, putRequest(`p-${node.name}`), ErrorCode.NO_SPACE);
      await refusedWith(driver, node, txnWithPutOnFailure, ErrorCode.NO_SPACE);
      assert.equal(await driver.settle(read(node, 'x')), 'before');
      assert.equal(await driver.settle(read(node, 'x', true)), 'before');
      await served(driver, node, txnReadOnly);
    }
    await served(driver, other, deleteRequest('x'));
    assert.equal(await driver.settle(read(leader, 'x')), undefined, 'a delete went through');
    // Clearing: the alarm comes back once; a second clear is a no-op that answers nothing.
    assert.deepEqual(await driver.settle(leader.changeAlarm('deactivate', follower.memberId, 'NOSPACE')), [record]);
    assert.deepEqual(await driver.settle(other.changeAlarm('deactivate', follower.memberId, 'NOSPACE')), []);
    await driver.until('every member cleared the alarm', () => nodes.every((node) => node.alarms().length === 0));
    for (const node of nodes) await served(driver, node, putRequest(`after-${node.name}`));
  });

  test("a member's CORRUPT alarm: it refuses every KV call while the others serve, keeps applying, and hands out no snapshot; the cluster's CORRUPT alarm refuses writes everywhere", async () => {
    const { nodes, driver } = await startCluster();
    const leader = leaderOf(nodes);
    const [corrupt, healthy] = nodes.filter((node) => node !== leader) as [RaftNode, RaftNode];
    await driver.settle(put(leader, 'x', 'v1'));
    await driver.settle(leader.changeAlarm('activate', corrupt.memberId, 'CORRUPT'));
    await driver.until('every member applied the alarm', () => nodes.every((node) => listed(node, { memberId: corrupt.memberId, alarm: 'CORRUPT' })));
    for (const request of [rangeRequest('x'), rangeRequest('x', true), putRequest('y'), deleteRequest('x'), txnReadOnly, txnWithDelete]) {
      await refusedWith(driver, corrupt, request, ErrorCode.CORRUPT_ALARM);
    }
    await assert.rejects(driver.settle(corrupt.takeSnapshot()), (error: unknown) => isStrataError(error, ErrorCode.CORRUPT_ALARM));
    for (const node of [leader, healthy]) {
      await driver.settle(put(node, `from-${node.name}`, 'ok'));
      assert.equal(await driver.settle(read(node, 'x')), 'v1');
    }
    // It still takes part in Raft: it applies what the others write.
    await driver.until('the corrupt member applied the later writes', () => corrupt.status().appliedIndex >= leader.status().appliedIndex);
    // The alarm calls, membership and status keep working on it.
    assert.equal((await driver.settle(corrupt.alarmList())).length, 1);
    assert.equal(corrupt.members().length, 3);
    assert.equal(corrupt.status().alarms.length, 1);

    await driver.settle(corrupt.changeAlarm('activate', 0, 'CORRUPT'));
    await driver.until('every member applied the cluster alarm', () => nodes.every((node) => listed(node, { memberId: 0, alarm: 'CORRUPT' })));
    for (const node of [leader, healthy]) {
      for (const request of [putRequest('z'), deleteRequest('x'), txnWithDelete, txnWithPutOnFailure]) await refusedWith(driver, node, request, ErrorCode.CORRUPT_ALARM);
      assert.equal(await driver.settle(read(node, 'x')), 'v1', 'reads are still served');
      await served(driver, node, txnReadOnly);
    }
    await driver.settle(healthy.changeAlarm('deactivate', 0, 'CORRUPT'));
    await driver.settle(healthy.changeAlarm('deactivate', corrupt.memberId, 'CORRUPT'));
    await driver.until('every member cleared the alarms', () => nodes.every((node) => node.alarms().length === 0));
    assert.equal(await driver.settle(read(corrupt, 'x')), 'v1', 'a cleared member serves again');
  });

  test('a leader with its own CORRUPT alarm hands leadership over, and again after it wins it back', async () => {
    const { nodes, driver } = await startCluster();
    const leader = leaderOf(nodes);
    const follower = nodes.find((node) => node !== leader) as RaftNode;
    await driver.settle(follower.changeAlarm('activate', leader.memberId, 'CORRUPT'));
    await driver.until('another member leads', () => nodes.some((node) => node !== leader && node.status().role === 'leader' && node.status().leaderId === node.memberId));
    await driver.advance(10 * ELECTION_MS);
    assert.notEqual(leader.status().role, 'leader', 'the corrupt member does not lead again by itself');
    const next = leaderOf(nodes);
    await driver.settle(put(next, 'k', 'v'));
    // Given leadership back explicitly, it hands it over again.
    await driver.settle(next.transferLeadership(leader.memberId));
    await driver.until('the corrupt member handed leadership over again', () => {
      const current = nodes.find((node) => node.status().role === 'leader');
      return current !== undefined && current !== leader;
    });
    assert.equal(await driver.settle(read(leaderOf(nodes), 'k')), 'v');
  });

  test('a member that catches up by snapshot gets the alarms the snapshot carries', async () => {
    const { nodes, driver, network } = await startCluster({ snapshotPolicy: POLICY });
    const leader = leaderOf(nodes);
    const [lagging, corrupt] = nodes.filter((node) => node !== leader) as [RaftNode, RaftNode];
    network.isolate(lagging.memberId);
    const record: AlarmRecord = { memberId: corrupt.memberId, alarm: 'CORRUPT' };
    await driver.settle(leader.changeAlarm('activate', corrupt.memberId, 'CORRUPT'));
    const alarmIndex = leader.status().appliedIndex;
    for (let i = 0; i < 200; i += 1) await driver.settle(put(leader, `key-${i % 40}`, `value-${i}`));
    await driver.until('the leader compacted its log past the alarm and the lagging member', () => {
      const compacted = leader.status().snapshots.compactedThrough;
      return compacted > alarmIndex && compacted > lagging.status().lastIndex;
    });
    assert.equal(listed(lagging, record), false, 'cut off, it never saw the alarm');
    const before = lagging.status().snapshots.latest?.index ?? 0;
    network.heal();
    await driver.until('the lagging member installed a snapshot and caught up', () => {
      const status = lagging.status();
      return (status.snapshots.latest?.index ?? 0) > before && status.appliedIndex >= leader.status().appliedIndex;
    });
    assert.ok((lagging.status().snapshots.latest?.index ?? 0) > alarmIndex, 'the installed snapshot is past the alarm');
    assert.ok(listed(lagging, record), 'the alarm came with the snapshot');
    // The alarm is about another member: this one serves.
    assert.equal(await driver.settle(read(lagging, 'key-1')), 'value-161');
    await refusedWith(driver, corrupt, rangeRequest('key-1'), ErrorCode.CORRUPT_ALARM);
  });
});

// ---- on disk, in real time: restarts ----

const DISK_HEARTBEAT_MS = 20;
const DISK_ELECTION_MS = 200;
const PACED_PUT_GAP_MS = 100;
const directories: string[] = [];
after(() => {
  for (const directory of directories) rmSync(directory, { recursive: true, force: true });
});

function diskOptions(directory: string, network: MemoryNetwork, name: string, cluster: readonly { name: string; peerUrls: string[] }[]): RaftNodeOptions {
  return {
    name,
    dataDir: join(directory, name),
    initialCluster: cluster,
    initialClusterState: 'new',
    initialClusterToken: 'alarms-disk-test',
    advertisePeerUrls: [peerUrl(name)],
    advertiseClientUrls: [`http://${name}.test:2379`],
    heartbeatIntervalMs: DISK_HEARTBEAT_MS,
    electionTimeoutMs: DISK_ELECTION_MS,
    clock: SYSTEM_CLOCK,
    snapshotPolicy: POLICY,
    createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
  };
}

describe('alarms across restarts', () => {
  test('a restarted member has the alarms its snapshot carries and those in the log after it', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'stratakv-alarms-'));
    directories.push(directory);
    const driver = systemDriver();
    const network = new MemoryNetwork();
    const cluster = ['n1', 'n2', 'n3'].map((name) => ({ name, peerUrls: [peerUrl(name)] }));
    const nodes = await Promise.all(cluster.map((member) => RaftNode.start(diskOptions(directory, network, member.name, cluster))));
    for (const node of nodes) track(node, driver);
    await driver.until('a leader is known everywhere', () => nodes.every((node) => node.status().leaderId !== 0));
    const leader = leaderOf(nodes);
    const [restarted, corrupt] = nodes.filter((node) => node !== leader) as [RaftNode, RaftNode];
    const corruptRecord: AlarmRecord = { memberId: corrupt.memberId, alarm: 'CORRUPT' };
    await driver.settle(leader.changeAlarm('activate', corrupt.memberId, 'CORRUPT'));
    await driver.until('the member to restart applied the alarm', () => listed(restarted, corruptRecord));
    const alarmIndex = restarted.status().appliedIndex;
    // Paced: the log keeps a catch-up tail of twice the writes of a 5 s catch-up at the measured
    // write rate (snapshotter.ts), so 120 puts as fast as the machine goes (~85/s) keep all of
    // them and compact nothing past the alarm. At 10 puts/s the tail is ~100 entries, and the
    // snapshot at index 120 compacts the alarm's entry away on any machine that keeps up.
    for (let i = 0; i < 120; i += 1) {
      await driver.settle(put(leader, `k${i % 30}`, `v${i}`));
      await new Promise((resolve) => setTimeout(resolve, PACED_PUT_GAP_MS));
    }
    await driver.until('the member to restart snapshotted and compacted its log past the alarm', () => restarted.status().snapshots.compactedThrough >= alarmIndex, 30_000);
    // One more alarm, only in the log after that snapshot.
    const noSpaceRecord: AlarmRecord = { memberId: restarted.memberId, alarm: 'NOSPACE' };
    await driver.settle(restarted.changeAlarm('activate', restarted.memberId, 'NOSPACE'));
    await driver.settle(restarted.stop());
    const again = track(await RaftNode.start(diskOptions(directory, network, restarted.name, cluster)), driver);
    assert.ok(listed(again, corruptRecord), 'the snapshot brought the CORRUPT alarm back before anything was replayed');
    assert.ok(again.status().snapshots.compactedThrough >= alarmIndex, 'the log no longer holds the alarm entry');
    await driver.until('the restarted member replayed the log after its snapshot', () => listed(again, noSpaceRecord));
    assert.deepEqual(again.alarms(), [corruptRecord, noSpaceRecord].sort((a, b) => a.memberId - b.memberId || (a.alarm === 'NOSPACE' ? -1 : 1)));
    await refusedWith(driver, again, putRequest('refused'), ErrorCode.NO_SPACE);
    const range = (await driver.settle(again.kv(rangeRequest('k1')))) as RangeResponse;
    assert.equal(decoder.decode(range.kvs[0]?.value), 'v91');
  });
});

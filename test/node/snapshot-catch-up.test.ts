// Snapshots in a running cluster of real RaftNodes on the in-memory twins: members snapshot
// and compact their logs as they apply; a member cut off while the log moved past it, and a
// member added later, catch up by a snapshot streamed from the leader (not the log), and end
// with the same state as the others; a restart starts from the snapshot and the tail.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RaftNode } from '../../src/node/index.ts';
import type { RangeResponse } from '../../src/storage/index.ts';
import { decoder, encoder, leaderOf, put, startCluster, track } from './fixture.ts';

const POLICY = { snapshotCount: 40, catchUpEntries: 10, restoreBytesPerSecondAssumed: 1024 * 1024 * 1024, snapshotDutyCycleMax: 1 };

async function everything(node: RaftNode): Promise<string[]> {
  const response = (await node.kv({ type: 'range', key: encoder.encode('\0'), rangeEnd: encoder.encode('\0'), serializable: true })) as RangeResponse;
  return response.kvs.map((kv) => `${decoder.decode(kv.key)}=${decoder.decode(kv.value)}@${kv.createRevision}/${kv.modRevision}/${kv.version}`);
}

describe('snapshots and catch-up by snapshot', () => {
  test('members snapshot and compact as they apply; the log keeps only a tail', async () => {
    const { nodes, driver } = await startCluster({ snapshotPolicy: POLICY });
    const leader = leaderOf(nodes);
    for (let i = 0; i < 200; i += 1) await driver.settle(put(leader, `k${i % 50}`, `v${i}`));
    await driver.until('every member has snapshotted', () => nodes.every((node) => (node.status().snapshots.latest?.index ?? 0) >= 150));
    for (const node of nodes) {
      const { snapshots, lastIndex } = node.status();
      assert.ok(snapshots.compactedThrough > 0, `${node.name} compacted its log`);
      assert.ok(lastIndex - snapshots.compactedThrough < 200, `${node.name} keeps a tail, not the whole log`);
    }
  });

  test('a member cut off while the log moved on catches up by snapshot and holds the same state', async () => {
    const { nodes, driver, network } = await startCluster({ snapshotPolicy: POLICY });
    const leader = leaderOf(nodes);
    const lagging = nodes.find((node) => node !== leader) as RaftNode;
    network.isolate(lagging.memberId);
    for (let i = 0; i < 300; i += 1) await driver.settle(put(leader, `key-${i % 70}`, `value-${i}`));
    await driver.until('the leader compacted past the lagging member', () => leader.status().snapshots.compactedThrough > lagging.status().lastIndex);
    const before = lagging.status().snapshots.latest?.index ?? 0;
    network.heal();
    // The snapshot it holds now came from the leader: it applied nothing while cut off.
    await driver.until('the lagging member installed a snapshot and caught up', () => {
      const status = lagging.status();
      return (status.snapshots.latest?.index ?? 0) > before && status.appliedIndex >= leader.status().appliedIndex;
    });
    assert.deepEqual(await driver.settle(everything(lagging)), await driver.settle(everything(leader)));
  });

  test('a member added after the log was compacted joins by snapshot', async () => {
    const { nodes, driver, options } = await startCluster({ snapshotPolicy: POLICY });
    const leader = leaderOf(nodes);
    for (let i = 0; i < 200; i += 1) await driver.settle(put(leader, `a${i % 30}`, `b${i}`));
    await driver.until('the leader compacted its log', () => leader.status().snapshots.compactedThrough > 50);
    const peerUrls = ['http://n4.test:2380'];
    const { members } = await driver.settle(leader.addMember(peerUrls, false));
    const cluster = members.map((member) => ({ name: member.name === '' ? 'n4' : member.name, peerUrls: [...member.peerUrls] }));
    const { RaftNode: Node } = await import('../../src/node/index.ts');
    let installs = 0;
    const joining = track(
      await driver.settle(Node.start({ ...options('n4', 'existing', cluster), snapshotPolicy: POLICY, hooks: { onSnapshotInstalled: () => (installs += 1) } })),
      driver,
    );
    await driver.until('the new member caught up', () => joining.status().appliedIndex >= leader.status().appliedIndex && installs > 0);
    for (let i = 0; i < 20; i += 1) await driver.settle(put(leader, `after${i}`, 'x'));
    await driver.until('the new member applied the later writes', () => joining.status().appliedIndex >= leader.status().appliedIndex);
    assert.deepEqual(await driver.settle(everything(joining)), await driver.settle(everything(leader)));
    assert.ok(joining.members().length === 4);
  });
});

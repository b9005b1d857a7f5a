// A mirror's snapshots (kv-types.ts: MirrorRequest) in a running cluster of real RaftNodes on
// the in-memory twins: the mirror state is captured with the snapshot's records and travels in
// its footer, so a member that catches up by snapshot, and a member that joins by one, is a
// mirror too (it refuses client writes) and holds the same state; after mirrorEnd every member
// takes writes again from the revision reached.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RaftNode } from '../../src/node/index.ts';
import type { KvRequest, MirrorPut, MirrorResponse, RangeResponse } from '../../src/storage/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/index.ts';
import { decoder, encoder, leaderOf, put, startCluster, track } from './fixture.ts';

const POLICY = { snapshotCount: 40, catchUpEntries: 10, restoreBytesPerSecondAssumed: 1024 * 1024 * 1024, snapshotDutyCycleMax: 1 };

async function everything(node: RaftNode): Promise<string[]> {
  const response = (await node.kv({ type: 'range', key: encoder.encode('\0'), rangeEnd: encoder.encode('\0'), serializable: true })) as RangeResponse;
  return response.kvs.map((kv) => `${decoder.decode(kv.key)}=${decoder.decode(kv.value)}@${kv.createRevision}/${kv.modRevision}/${kv.version}/${kv.lease}`);
}

const state = (step: number): Uint8Array => encoder.encode(JSON.stringify({ phase: 'copying', step }));
// Every other key carries an etcd lease id (beyond 2^53): snapshots move them exactly.
const ETCD_LEASE = 2156839707291722977n;
const mirrorPut = (key: string, value: string, revision: number, lease: bigint): MirrorPut => ({ key: encoder.encode(key), value: encoder.encode(value), createRevision: revision, modRevision: revision, version: 1, lease });

// copy runs `batches` mirror batches on the leader, each moving the revision by 2 (from 10), and
// answers the state and revision reached.
async function copy(leader: RaftNode, settle: <T>(promise: Promise<T>) => Promise<T>, from: number, batches: number): Promise<{ state: Uint8Array; revision: number }> {
  let revision = 10 + 2 * from;
  for (let step = from; step < from + batches; step += 1) {
    revision += 2;
    const request: KvRequest = { type: 'mirrorApply', expectState: state(step), state: state(step + 1), revision, puts: [mirrorPut(`key-${step % 30}`, `value-${step}`, revision, step % 2 === 0 ? ETCD_LEASE + BigInt(step) : 0n)], deletes: [] };
    await settle(leader.kv(request, { timeoutMs: 5_000 }));
  }
  return { state: state(from + batches), revision };
}

async function mirrorOf(node: RaftNode, settle: <T>(promise: Promise<T>) => Promise<T>): Promise<string | undefined> {
  const { state: current } = await settle(node.mirrorStatus({ timeoutMs: 5_000 }));
  return current === undefined ? undefined : decoder.decode(current);
}

describe('snapshots of a mirror', () => {
  test('a member that catches up by snapshot, and one that joins by snapshot, are mirrors too; after mirrorEnd all take writes', async () => {
    const { nodes, driver, network, options } = await startCluster({ snapshotPolicy: POLICY });
    const settle = <T>(promise: Promise<T>): Promise<T> => driver.settle(promise);
    const leader = leaderOf(nodes);
    const lagging = nodes.find((node) => node !== leader) as RaftNode;
    network.isolate(lagging.memberId);
    const begun = (await settle(leader.kv({ type: 'mirrorBegin', state: state(0), requireEmpty: true }, { timeoutMs: 5_000 }))) as MirrorResponse;
    assert.equal(begun.type, 'mirrorBegin');
    const reached = await copy(leader, settle, 0, 150);
    await driver.until('the leader compacted past the lagging member', () => leader.status().snapshots.compactedThrough > lagging.status().lastIndex);
    const before = lagging.status().snapshots.latest?.index ?? 0;
    network.heal();
    await driver.until('the lagging member installed a snapshot and caught up', () => {
      const status = lagging.status();
      return (status.snapshots.latest?.index ?? 0) > before && status.appliedIndex >= leader.status().appliedIndex;
    });
    // It never applied mirrorBegin from the log: the snapshot made it a mirror.
    assert.equal(await mirrorOf(lagging, settle), decoder.decode(reached.state));
    assert.deepEqual(await settle(everything(lagging)), await settle(everything(leader)));
    assert.ok((await settle(everything(lagging))).includes(`key-28=value-148@308/308/1/${ETCD_LEASE + 148n}`), 'the lease ids came through the snapshot exactly');
    await assert.rejects(settle(put(lagging, 'client', 'x')), (error: unknown) => isStrataError(error, ErrorCode.MIRROR_READ_ONLY));

    // A member added now joins by a snapshot (restored beside its receive).
    const more = await copy(leader, settle, 150, 60);
    // The log is compacted (above), so a member starting from nothing needs a snapshot.
    assert.ok(leader.status().snapshots.compactedThrough > 0);
    const { members } = await settle(leader.addMember(['http://n4.test:2380'], false));
    const cluster = members.map((member) => ({ name: member.name === '' ? 'n4' : member.name, peerUrls: [...member.peerUrls] }));
    const { RaftNode: Node } = await import('../../src/node/index.ts');
    let installs = 0;
    const joining = track(await settle(Node.start({ ...options('n4', 'existing', cluster), snapshotPolicy: POLICY, hooks: { onSnapshotInstalled: () => (installs += 1) } })), driver);
    await driver.until('the new member caught up', () => joining.status().appliedIndex >= leader.status().appliedIndex && installs > 0);
    assert.equal(await mirrorOf(joining, settle), decoder.decode(more.state));
    assert.deepEqual(await settle(everything(joining)), await settle(everything(leader)));
    await assert.rejects(settle(put(joining, 'client', 'x')), (error: unknown) => isStrataError(error, ErrorCode.MIRROR_READ_ONLY));

    // The switch: every member takes writes again, from the revision the copy reached.
    await settle(leader.kv({ type: 'mirrorEnd', expectState: more.state }, { timeoutMs: 5_000 }));
    await driver.until('every member applied the end', () => [...nodes, joining].every((node) => node.status().appliedIndex >= leader.status().appliedIndex));
    for (const node of [...nodes, joining]) assert.equal(await mirrorOf(node, settle), undefined, node.name);
    const written = await settle(put(joining, 'after', 'x'));
    assert.equal(written.revision, more.revision + 1);
  });
});

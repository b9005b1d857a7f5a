// Snapshots in a running cluster of real RaftNodes on the in-memory twins: members snapshot
// and compact their logs as they apply; a member cut off while the log moved past it, and a
// member added later, catch up by a snapshot streamed from the leader (not the log), and end
// with the same state as the others; a restart starts from the snapshot and the tail.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RaftNode } from '../../src/node/index.ts';
import { FOREGROUND_WINDOW_MS } from '../../src/node/raft-node.ts';
import type { RangeResponse } from '../../src/storage/index.ts';
import type { TransportHandlers } from '../../src/transport/index.ts';
import { MemoryTransport } from '../../src/transport/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/index.ts';
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
    let restoredWhileReceiving = 0;
    const onSnapshotInstalled = (info: { readonly restoredWhileReceiving: boolean }): void => {
      installs += 1;
      if (info.restoredWhileReceiving) restoredWhileReceiving += 1;
    };
    const joining = track(await driver.settle(Node.start({ ...options('n4', 'existing', cluster), snapshotPolicy: POLICY, hooks: { onSnapshotInstalled } })), driver);
    await driver.until('the new member caught up', () => joining.status().appliedIndex >= leader.status().appliedIndex && installs > 0);
    // A fresh member takes the snapshot's records as they arrive: nothing is restored after the transfer.
    assert.equal(restoredWhileReceiving, installs, 'every install was restored beside its receive');
    for (let i = 0; i < 20; i += 1) await driver.settle(put(leader, `after${i}`, 'x'));
    await driver.until('the new member applied the later writes', () => joining.status().appliedIndex >= leader.status().appliedIndex);
    assert.deepEqual(await driver.settle(everything(joining)), await driver.settle(everything(leader)));
    assert.ok(joining.members().length === 4);
  });

  test('a snapshot send runs at the full rate on a quiet cluster and at the rate under load while clients write', async () => {
    // A send starts with a burst of one chunk (2 MiB): the state is several times that.
    const fullRate = 32 * 1024 * 1024;
    const rateUnderLoad = 2 * 1024 * 1024;
    const { nodes, driver, options } = await startCluster({ snapshotPolicy: { ...POLICY, sendBytesPerSecond: fullRate, sendBytesPerSecondUnderLoad: rateUnderLoad } });
    const leader = leaderOf(nodes);
    const big = 'x'.repeat(16 * 1024);
    for (let i = 0; i < 600; i += 1) await driver.settle(put(leader, `state-${i}`, big));
    await driver.until('the leader compacted its log', () => leader.status().snapshots.compactedThrough > 50);
    // Quiet: no client request for longer than the leader's window of load.
    await driver.advance(2 * FOREGROUND_WINDOW_MS);
    const { RaftNode: Node } = await import('../../src/node/index.ts');
    // join adds a member and answers the virtual ms from its start to its install, and the snapshot's size.
    const join = async (name: string, learner: boolean): Promise<{ ms: number; bytes: number }> => {
      const { members } = await driver.settle(leaderOf(nodes).addMember([`http://${name}.test:2380`], learner));
      const cluster = members.map((member) => ({ name: member.name === '' ? name : member.name, peerUrls: [...member.peerUrls] }));
      let installedAtMs: number | undefined;
      const startedAtMs = driver.clock.now();
      const policy = { ...POLICY, sendBytesPerSecond: fullRate, sendBytesPerSecondUnderLoad: rateUnderLoad };
      const member = track(await driver.settle(Node.start({ ...options(name, 'existing', cluster), snapshotPolicy: policy, hooks: { onSnapshotInstalled: () => (installedAtMs ??= driver.clock.now()) } })), driver);
      await driver.until(`${name} installed a snapshot`, () => installedAtMs !== undefined, 60_000);
      nodes.push(member);
      return { ms: (installedAtMs as number) - startedAtMs, bytes: leaderOf(nodes).status().snapshots.latest?.byteLength ?? 0 };
    };
    const quiet = await join('n4', false);
    // Under load: a put every 100 virtual ms until the second learner installed its snapshot.
    let writing = true;
    let written = 0;
    const writeLater = (): void => {
      driver.clock.setTimeout(() => {
        if (!writing) return;
        written += 1;
        put(leader, `load-${written}`, 'v').catch(() => undefined);
        writeLater();
      }, 100);
    };
    writeLater();
    await driver.advance(500);
    const before = written;
    const loaded = await join('n5', true);
    writing = false;
    assert.ok(written - before > 5, `the load ran during the send (${written - before} puts)`);
    assert.ok(quiet.bytes > 8 * 1024 * 1024, `a snapshot of the state was sent (${quiet.bytes} bytes)`);
    // Beyond the first chunk: quiet, about 0.25 s at the full rate; under load, about 4 s.
    const chunk = 2 * 1024 * 1024;
    assert.ok(quiet.ms < (1000 * (quiet.bytes - chunk)) / rateUnderLoad / 4, `the quiet send ran at the full rate (${quiet.ms} ms for ${quiet.bytes} bytes)`);
    assert.ok(loaded.ms >= (0.9 * 1000 * (loaded.bytes - chunk)) / rateUnderLoad, `the send under load kept to its rate (${loaded.ms} ms for ${loaded.bytes} bytes)`);
  });

  test('a sink finished before the last byte refuses at once, and the member still catches up by snapshot', async () => {
    // A misbehaving sender: the lagging member's first snapshot stream is told to finish
    // after its first chunk. That finish must settle (the restore beside the receive must not
    // hold it), and the retried send must still install.
    let earlyFinish: Promise<unknown> | undefined;
    let lagging = 0; // the lagging member's id, once known
    // Bytes the first stream's sink took, in all and when the early finish settled.
    let writtenBytes = 0;
    let writtenWhenSettled: number | undefined;
    let streamBytes = 0;
    class EarlyFinishTransport extends MemoryTransport {
      override start(handlers: TransportHandlers): Promise<void> {
        return super.start({
          ...handlers,
          onSnapshot: async (from, message, byteLength, signal) => {
            const sink = await handlers.onSnapshot(from, message, byteLength, signal);
            if (this.localId !== lagging || earlyFinish !== undefined) return sink;
            streamBytes = byteLength;
            return {
              ...sink,
              verifiedBytes: () => sink.verifiedBytes(),
              write: async (offset, bytes) => {
                await sink.write(offset, bytes);
                writtenBytes += bytes.byteLength;
                earlyFinish ??= sink.finish().then(
                  () => 'finished',
                  (error: unknown) => error,
                );
                void earlyFinish.then(() => (writtenWhenSettled ??= writtenBytes));
              },
            };
          },
        });
      }
    }
    const { nodes, driver, network } = await startCluster({
      snapshotPolicy: POLICY,
      createTransport: (memoryNetwork, identity) => new EarlyFinishTransport(memoryNetwork, identity),
    });
    const leader = leaderOf(nodes);
    const follower = nodes.find((node) => node !== leader) as RaftNode;
    lagging = follower.memberId;
    network.isolate(follower.memberId);
    const big = 'y'.repeat(8 * 1024);
    for (let i = 0; i < 400; i += 1) await driver.settle(put(leader, `key-${i % 300}`, big));
    await driver.until('the leader compacted past the lagging member', () => leader.status().snapshots.compactedThrough > follower.status().lastIndex);
    network.heal();
    await driver.until('the early finish was called', () => earlyFinish !== undefined);
    const outcome = await driver.settle(earlyFinish as Promise<unknown>, 5_000);
    assert.ok(isStrataError(outcome, ErrorCode.INVALID_ARGUMENT), `the early finish is refused (${String(outcome)})`);
    // At once: not only once the rest of the file came in (the restore beside the receive
    // would have kept it waiting for the end of the stream, holding the peer's sink calls).
    assert.ok(writtenWhenSettled !== undefined && writtenWhenSettled < streamBytes, `settled after ${writtenWhenSettled} of ${streamBytes} bytes`);
    await driver.until('the lagging member caught up', () => follower.status().appliedIndex >= leader.status().appliedIndex, 60_000);
    assert.deepEqual(await driver.settle(everything(follower)), await driver.settle(everything(leader)));
  });
});

// MemorySnapshotStore: the conformance suite, plus what only the simulator's store does:
// corrupt() for bit rot, crash() for a power cut, and the same bytes for the same input.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { Logger } from '../../src/raft/types.ts';
import { MemorySnapshotStore } from '../../src/snapshot/memory-snapshot-store.ts';
import { snapshotId, type SnapshotRecord, type SnapshotSource, type SnapshotStore } from '../../src/snapshot/snapshot-store.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { VirtualClock } from '../../src/util/virtual-clock.ts';
import { describeSnapshotStoreConformance } from './snapshot-store-conformance.ts';

describeSnapshotStoreConformance('memory', {
  open: async ({ clock, blockBytesTarget }) => new MemorySnapshotStore({ clock, blockBytesTarget }),
  reopen: async (store) => {
    assert.ok(store instanceof MemorySnapshotStore);
    store.crash();
    return store;
  },
});

const CONF = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

function source(index: number, count: number): SnapshotSource {
  const records: SnapshotRecord[] = Array.from({ length: count }, (_, i) => ({
    key: new TextEncoder().encode(`k${String(i).padStart(6, '0')}`),
    value: new Uint8Array(50).fill(i & 0xff),
  }));
  return {
    metadata: { index, term: 2, confState: CONF, revision: index, members: new Uint8Array(0) },
    async *records() {
      for (let at = 0; at < records.length; at += 100) yield records.slice(at, at + 100);
    },
  };
}

async function drain(store: SnapshotStore, id: string): Promise<number> {
  const reader = await store.open(id);
  let count = 0;
  try {
    for await (const batch of reader.records()) count += batch.length;
  } finally {
    await reader.close();
  }
  return count;
}

function recordingLogger(): Logger & { warnings: { message: string; fields: Record<string, unknown> | undefined }[] } {
  const warnings: { message: string; fields: Record<string, unknown> | undefined }[] = [];
  return { warnings, debug() {}, info() {}, warn: (message, fields) => warnings.push({ message, fields }) };
}

describe('MemorySnapshotStore', () => {
  test('corrupt() in a data block: reads refuse with CORRUPTION naming the block; crash() sets it aside', async () => {
    const logger = recordingLogger();
    const store = new MemorySnapshotStore({ clock: new VirtualClock(), blockBytesTarget: 8192, logger });
    const info = await store.create(source(7, 1_000));
    const good = await store.create(source(8, 10));
    const flipAt = 4096 + 3 * 8192 + 100;
    store.corrupt(info.id, flipAt, 3);
    const reader = await store.open(info.id);
    await assert.rejects(
      (async () => {
        for await (const batch of reader.records()) assert.ok(batch.length > 0);
      })(),
      (error) => {
        assert.ok(isStrataError(error, ErrorCode.CORRUPTION));
        assert.equal(error.details['location'], `memory:${info.id}`);
        assert.equal(typeof error.details['blockSequence'], 'number');
        assert.ok((error.details['offset'] as number) <= flipAt);
        return true;
      },
    );
    await assert.rejects(reader.readBlocks(4096, 1 << 20), (error) => isStrataError(error, ErrorCode.CORRUPTION));
    await reader.close();
    store.crash();
    assert.deepEqual(store.list().map((listed) => listed.id), [good.id]);
    assert.deepEqual(store.corruptedIds(), [info.id]);
    assert.equal(logger.warnings.length, 1);
    assert.equal(logger.warnings[0]?.fields?.['id'], info.id);
  });

  test('corrupt() in the header or the footer: open refuses with CORRUPTION', async () => {
    const store = new MemorySnapshotStore({ clock: new VirtualClock() });
    const info = await store.create(source(3, 10));
    const other = await store.create(source(4, 10));
    store.corrupt(info.id, 5, 0);
    await assert.rejects(store.open(info.id), (error) => isStrataError(error, ErrorCode.CORRUPTION) && error.details['block'] === 'header');
    store.corrupt(other.id, other.byteLength - 4096 + 20, 7);
    await assert.rejects(store.open(other.id), (error) => isStrataError(error, ErrorCode.CORRUPTION) && error.details['block'] === 'footer');
  });

  test('crash() loses receives and creates in progress, and the readers of the dead process', async () => {
    const clock = new VirtualClock();
    const store = new MemorySnapshotStore({ clock, blockBytesTarget: 8192 });
    const info = await store.create(source(1, 500));
    const reader = await store.open(info.id);
    const bytes = await reader.readBlocks(0, 1 << 20);
    const all = new Uint8Array(info.byteLength);
    for (let at = 0; at < info.byteLength; ) {
      const piece = await reader.readBlocks(at, 1 << 20);
      all.set(piece, at);
      at += piece.byteLength;
    }
    assert.ok(bytes.byteLength > 0);
    const other = new MemorySnapshotStore({ clock });
    const receiver = await other.receive(info.id, info.byteLength);
    await receiver.write(0, all.subarray(0, 20_000));
    assert.ok(receiver.verifiedBytes > 0);
    let release: () => void = () => undefined;
    const slow: SnapshotSource = {
      metadata: { index: 9, term: 2, confState: CONF, revision: 9, members: new Uint8Array(0) },
      async *records() {
        yield [{ key: Uint8Array.of(1), value: Uint8Array.of(2) }];
        await new Promise<void>((resolve) => (release = resolve));
        yield [{ key: Uint8Array.of(3), value: Uint8Array.of(4) }];
      },
    };
    const creating = other.create(slow);
    await new Promise((resolve) => setImmediate(resolve));
    other.crash();
    release();
    await assert.rejects(creating, (error) => isStrataError(error, ErrorCode.STOPPED));
    await assert.rejects(receiver.write(20_000, all.subarray(20_000, 30_000)), (error) => isStrataError(error, ErrorCode.STOPPED));
    assert.deepEqual(other.list(), []);
    assert.equal((await other.receive(info.id, info.byteLength)).verifiedBytes, 0, 'the partial receive is gone');
    store.crash();
    await assert.rejects(reader.readBlocks(0, 4096), (error) => isStrataError(error, ErrorCode.STOPPED));
    assert.equal(await drain(store, info.id), 500, 'what was listed survives');
  });

  test('close() leaves the store usable by the next incarnation', async () => {
    const store = new MemorySnapshotStore({ clock: new VirtualClock() });
    const info = await store.create(source(1, 10));
    await store.close();
    assert.equal(await drain(store, info.id), 10);
    assert.equal((await store.create(source(2, 5))).id, snapshotId(2, 2));
  });

  test('the same input on the same virtual time makes the same bytes', async () => {
    const a = new MemorySnapshotStore({ clock: new VirtualClock(5_000) });
    const b = new MemorySnapshotStore({ clock: new VirtualClock(5_000) });
    const infoA = await a.create(source(3, 2_000));
    const infoB = await b.create(source(3, 2_000));
    assert.deepEqual(infoA, infoB);
    const readerA = await a.open(infoA.id);
    const readerB = await b.open(infoB.id);
    assert.deepEqual(await readerA.readBlocks(0, 1 << 24), await readerB.readBlocks(0, 1 << 24));
  });
});

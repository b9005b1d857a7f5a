// The state machine's snapshot view and restore: a view captured at one applied index keeps
// showing that state while apply goes on (pending writes over LevelDB's snapshot), and
// restore() rebuilds an identical state machine from it, refusing malformed content.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import type { Entry } from '../../src/raft/types.ts';
import { encodeKvCommand } from '../../src/storage/kv-command-codec.ts';
import { openDiskKvStateMachine, openMemoryKvStateMachine, restoreDiskKvStateMachine, restoreMemoryKvStateMachine } from '../../src/storage/kv-open.ts';
import type { KvSnapshotRecord, KvStateMachine } from '../../src/storage/kv-state-machine.ts';
import type { KvRequest } from '../../src/storage/kv-types.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (value: Uint8Array): string => new TextDecoder().decode(value);
const entryAt = (index: number, request: KvRequest): Entry => ({ index, term: 3, type: 0, data: encodeKvCommand({ id: index, request }) });

async function dump(machine: KvStateMachine): Promise<string[]> {
  const response = await machine.range({ type: 'range', key: bytes('\0'), rangeEnd: bytes('\0') });
  return response.kvs.map((kv) => `${text(kv.key)}=${text(kv.value)}@${kv.createRevision}/${kv.modRevision}/${kv.version}`);
}

async function collect(records: AsyncIterable<readonly KvSnapshotRecord[]>): Promise<KvSnapshotRecord[]> {
  const all: KvSnapshotRecord[] = [];
  for await (const batch of records) all.push(...batch);
  return all;
}

async function* batchesOf(records: readonly KvSnapshotRecord[], size: number): AsyncGenerator<readonly KvSnapshotRecord[]> {
  for (let start = 0; start < records.length; start += size) yield records.slice(start, start + size);
}

const root = mkdtempSync(path.join(tmpdir(), 'stratakv-kv-snapshot-'));
after(() => rmSync(root, { recursive: true, force: true }));

for (const backend of ['memory-level', 'LevelDB'] as const) {
  describe(`snapshot view and restore on ${backend}`, () => {
    let databases = 0;
    const open = (): Promise<KvStateMachine> => {
      databases += 1;
      return backend === 'memory-level' ? openMemoryKvStateMachine() : openDiskKvStateMachine(path.join(root, `${backend}-${databases}`));
    };

    test('a view shows the state it captured while apply goes on, and restore rebuilds it', async () => {
      const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
      const random = new SeededRandom(seed);
      const machine = await open();
      let index = 0;
      const apply = async (count: number): Promise<void> => {
        const entries: Entry[] = [];
        for (let i = 0; i < count; i += 1) {
          index += 1;
          const key = `key-${random.intBelow(400).toString().padStart(4, '0')}`;
          const request: KvRequest = random.intBelow(10) === 0 ? { type: 'deleteRange', key: bytes(key) } : { type: 'put', key: bytes(key), value: bytes(`v${index}`) };
          entries.push(entryAt(index, request));
        }
        await machine.apply(entries);
      };
      for (let round = 0; round < 20; round += 1) await apply(50);
      await machine.whenWritten();
      await apply(30); // some of it pending, not yet in LevelDB
      const expected = await dump(machine);
      const view = machine.openSnapshotView();
      assert.equal(view.appliedIndex, index, `seed ${seed}`);
      assert.equal(view.revision, machine.revision());
      for (let round = 0; round < 10; round += 1) await apply(40); // overwrites, deletes, new keys
      const records = await collect(view.records());
      assert.ok(records.length > 100, `seed ${seed}: ${records.length} records`);
      for (let i = 1; i < records.length; i += 1) assert.ok(Buffer.compare((records[i - 1] as KvSnapshotRecord).key, (records[i] as KvSnapshotRecord).key) < 0, 'keys increase');
      const restored = await restoreMemoryKvStateMachine({
        appliedIndex: view.appliedIndex,
        appliedTerm: view.appliedTerm,
        revision: view.revision,
        records: batchesOf(records, 37),
        keyCount: records.length,
        digest: view.digest,
        mirror: view.mirror,
      });
      assert.deepEqual(restored.stateDigest().digest, view.digest, 'the restored digest is the view\'s');
      assert.deepEqual(await dump(restored), expected, `seed ${seed}`);
      assert.equal(restored.appliedIndex(), view.appliedIndex);
      assert.equal(restored.revision(), view.revision);
      await restored.close();
      await machine.close();
    });

    test('close waits for a view being read', async () => {
      const machine = await open();
      await machine.apply([entryAt(1, { type: 'put', key: bytes('a'), value: bytes('1') }), entryAt(2, { type: 'put', key: bytes('b'), value: bytes('2') })]);
      const view = machine.openSnapshotView();
      const iterator = view.records()[Symbol.asyncIterator]();
      const first = await iterator.next();
      let closed = false;
      const closing = machine.close().then(() => {
        closed = true;
      });
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(closed, false, 'close waits for the open view');
      assert.equal(first.done, false);
      await iterator.return?.(undefined);
      await closing;
      assert.equal(closed, true);
    });
  });
}

describe('restore refuses bad content', () => {
  const good = (key: string): KvSnapshotRecord => ({ key: bytes(key), value: Uint8Array.of(1, ...new Uint8Array(32), 120) });
  const restoreFrom = (records: KvSnapshotRecord[], keyCount = records.length) =>
    restoreDiskKvStateMachine(path.join(root, `bad-${Math.random().toString(16).slice(2)}`), {
      appliedIndex: 9,
      appliedTerm: 2,
      revision: 5,
      records: batchesOf(records, 2),
      keyCount,
      digest: undefined,
      mirror: undefined,
    });

  test('a good one restores, to LevelDB', async () => {
    const machine = await restoreFrom([good('a'), good('b'), good('c')]);
    assert.equal(machine.appliedIndex(), 9);
    assert.equal((await dump(machine)).length, 3);
    await machine.close();
  });
  test('keys out of order', async () => {
    await assert.rejects(restoreFrom([good('b'), good('a')]), (error) => isStrataError(error, ErrorCode.CORRUPTION));
  });
  test('a malformed stored value', async () => {
    await assert.rejects(restoreFrom([good('a'), { key: bytes('b'), value: Uint8Array.of(9, 9) }]), (error) => isStrataError(error, ErrorCode.CORRUPTION));
  });
  test('a key count that does not match', async () => {
    await assert.rejects(restoreFrom([good('a'), good('b')], 3), (error) => isStrataError(error, ErrorCode.CORRUPTION));
  });
});

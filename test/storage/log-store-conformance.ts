// The LogStore conformance suite: every implementation (memory, disk, fault-injecting disk)
// runs these same tests. After etcd-io/raft's storage_test.go, plus durability across reopen
// and a seeded model test against MemoryLogStorage.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryLogStorage } from '../../src/raft/storage.ts';
import type { ConfState, Entry, HardState, Snapshot } from '../../src/raft/types.ts';
import type { LogStore } from '../../src/storage/log-store.ts';
import { AssertionFailure } from '../../src/util/assert.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';

/** LogStoreHarness opens a fresh store and reopens one as after a restart (or a crash). */
export interface LogStoreHarness {
  open(): LogStore;
  /** reopen closes (or crashes) `store` and opens what is durable again. */
  reopen(store: LogStore): Promise<LogStore>;
}

const CONF: ConfState = { voters: [1, 2, 3], learners: [4], votersOutgoing: [], learnersNext: [], autoLeave: false };

function entry(index: number, term: number, size = 8): Entry {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += 1) data[i] = (index * 31 + term * 7 + i) & 0xff;
  return { index, term, type: 0, data };
}

function range(lo: number, hi: number, term: number, size = 8): Entry[] {
  const result: Entry[] = [];
  for (let i = lo; i < hi; i += 1) result.push(entry(i, term, size));
  return result;
}

function rejectsWith(code: ErrorCode): (error: unknown) => boolean {
  return (error) => isStrataError(error, code);
}

function assertEntries(actual: readonly Entry[], expected: readonly Entry[]): void {
  assert.deepEqual(
    actual.map((e) => ({ index: e.index, term: e.term, type: e.type, data: [...e.data] })),
    expected.map((e) => ({ index: e.index, term: e.term, type: e.type, data: [...e.data] })),
  );
}

/** describeLogStoreConformance registers the suite for one implementation. */
export function describeLogStoreConformance(name: string, harness: LogStoreHarness): void {
  describe(`LogStore conformance: ${name}`, () => {
    test('a fresh log is empty', async () => {
      const log = harness.open();
      assert.equal(log.firstIndex(), 1);
      assert.equal(log.lastIndex(), 0);
      assert.equal(log.term(0), 0);
      assert.deepEqual(log.entries(1, 1, Infinity), []);
      assert.throws(() => log.term(1), rejectsWith(ErrorCode.UNAVAILABLE));
      assert.deepEqual(log.initialState().hardState, { term: 0, vote: 0, commit: 0 });
      await log.close();
    });

    test('save appends entries and the hard state, visible once resolved', async () => {
      const log = harness.open();
      await log.save({ entries: range(1, 6, 1), hardState: { term: 1, vote: 2, commit: 3 } });
      assert.equal(log.lastIndex(), 5);
      assert.equal(log.term(5), 1);
      assertEntries(log.entries(2, 5, Infinity), range(2, 5, 1));
      assert.deepEqual(log.initialState().hardState, { term: 1, vote: 2, commit: 3 });
      await log.close();
    });

    test('entries stops at maxBytes but returns at least one', async () => {
      const log = harness.open();
      await log.save({ entries: range(1, 6, 1, 10) });
      assert.equal(log.entries(1, 6, 0).length, 1);
      assert.equal(log.entries(1, 6, 26).length, 1); // one entry counts 10 + 16
      assert.equal(log.entries(1, 6, 52).length, 2);
      assert.equal(log.entries(1, 6, 53).length, 2);
      assert.equal(log.entries(1, 6, Infinity).length, 5);
      await log.close();
    });

    test('an append that overlaps replaces the conflicting suffix (§5.3)', async () => {
      const log = harness.open();
      await log.save({ entries: range(1, 6, 1) });
      await log.save({ entries: range(3, 5, 2) });
      assert.equal(log.lastIndex(), 4);
      assert.equal(log.term(2), 1);
      assert.equal(log.term(3), 2);
      assert.throws(() => log.term(5), rejectsWith(ErrorCode.UNAVAILABLE));
      await log.save({ entries: range(5, 8, 2) });
      assertEntries(log.entries(1, 8, Infinity), [...range(1, 3, 1), ...range(3, 8, 2)]);
      await log.close();
    });

    test('an append that leaves a gap is a programmer error', async () => {
      const log = harness.open();
      await log.save({ entries: range(1, 3, 1) });
      assert.throws(() => log.saveSync({ entries: range(5, 6, 1) }), AssertionFailure);
      await log.close();
    });

    test('reads outside the log answer COMPACTED or UNAVAILABLE', async () => {
      const log = harness.open();
      await log.save({ entries: range(1, 11, 1) });
      log.compact(4);
      assert.equal(log.firstIndex(), 5);
      assert.equal(log.term(4), 1);
      assert.throws(() => log.term(3), rejectsWith(ErrorCode.COMPACTED));
      assert.throws(() => log.entries(4, 6, Infinity), rejectsWith(ErrorCode.COMPACTED));
      assert.throws(() => log.entries(5, 12, Infinity), rejectsWith(ErrorCode.UNAVAILABLE));
      assert.throws(() => log.compact(4), rejectsWith(ErrorCode.COMPACTED));
      assertEntries(log.entries(5, 11, Infinity), range(5, 11, 1));
      await log.close();
    });

    test('entries before the first index are skipped on append', async () => {
      const log = harness.open();
      await log.save({ entries: range(1, 6, 1) });
      log.compact(3);
      await log.save({ entries: range(2, 8, 1) });
      assert.equal(log.firstIndex(), 4);
      assertEntries(log.entries(4, 8, Infinity), range(4, 8, 1));
      await log.close();
    });

    test('a saved snapshot replaces the log; an older one is refused', async () => {
      const log = harness.open();
      await log.save({ entries: range(1, 4, 1) });
      const snapshot: Snapshot = { metadata: { index: 10, term: 3, confState: CONF }, data: Uint8Array.of(1, 2, 3) };
      await log.save({ snapshot, entries: range(11, 13, 3), hardState: { term: 3, vote: 1, commit: 10 } });
      assert.equal(log.firstIndex(), 11);
      assert.equal(log.lastIndex(), 12);
      assert.equal(log.term(10), 3);
      assert.deepEqual(log.snapshot(), snapshot);
      assert.deepEqual(log.initialState().confState, CONF);
      const older: Snapshot = { metadata: { index: 9, term: 3, confState: CONF }, data: new Uint8Array(0) };
      await assert.rejects(log.save({ snapshot: older }), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await log.close();
    });

    test('createSnapshot records a snapshot; an out-of-date one is refused', async () => {
      const log = harness.open();
      await log.save({ entries: range(1, 6, 2) });
      const snapshot = log.createSnapshot(4, CONF, Uint8Array.of(9));
      assert.deepEqual(snapshot.metadata, { index: 4, term: 2, confState: CONF });
      assert.deepEqual(log.snapshot(), snapshot);
      assert.equal(log.lastIndex(), 5); // not compacted
      assert.throws(() => log.createSnapshot(4, CONF, new Uint8Array(0)), rejectsWith(ErrorCode.SNAPSHOT_TEMPORARILY_UNAVAILABLE));
      await log.close();
    });

    test('concurrent saves all resolve, in order', async () => {
      const log = harness.open();
      const saves: Promise<void>[] = [];
      const order: number[] = [];
      for (let i = 1; i <= 50; i += 1) saves.push(log.save({ entries: [entry(i, 1)] }).then(() => void order.push(i)));
      await Promise.all(saves);
      assert.deepEqual(order, range(1, 51, 1).map((e) => e.index));
      assertEntries(log.entries(1, 51, Infinity), range(1, 51, 1));
      await log.close();
    });

    test('what was saved, compacted and snapshotted survives a reopen', async () => {
      let log = harness.open();
      await log.save({ entries: range(1, 21, 1), hardState: { term: 1, vote: 1, commit: 15 } });
      await log.save({ entries: range(18, 25, 2), hardState: { term: 2, vote: 3, commit: 17 } });
      log.createSnapshot(12, CONF, Uint8Array.of(7, 7));
      log.compact(10);
      await log.sync();
      log = await harness.reopen(log);
      assert.equal(log.firstIndex(), 11);
      assert.equal(log.lastIndex(), 24);
      assert.equal(log.term(10), 1);
      assertEntries(log.entries(11, 25, Infinity), [...range(11, 18, 1), ...range(18, 25, 2)]);
      assert.deepEqual(log.initialState(), { hardState: { term: 2, vote: 3, commit: 17 }, confState: CONF });
      assert.deepEqual(log.snapshot().metadata, { index: 12, term: 1, confState: CONF });
      assert.deepEqual([...log.snapshot().data], [7, 7]);
      await log.close();
    });

    test('seeded model test against MemoryLogStorage, with reopens', async () => {
      const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
      const random = new SeededRandom(seed);
      const model = new MemoryLogStorage();
      let modelHardState: HardState = { term: 0, vote: 0, commit: 0 };
      let log = harness.open();
      const STEPS_MAX = 300;
      const deadline = Date.now() + 30_000; // a bound in time as well as in steps
      let term = 1;
      try {
        for (let step = 0; step < STEPS_MAX && Date.now() < deadline; step += 1) {
          const choice = random.intBelow(10);
          if (choice < 6) {
            // Append, sometimes overlapping the tail with a new term.
            const last = model.lastIndex();
            const first = model.firstIndex();
            const overlap = random.chance(1, 3) ? random.intBelow(Math.min(5, last - first + 2)) : 0;
            if (overlap > 0) term += 1;
            const start = last + 1 - overlap;
            const batch = range(start, start + 1 + random.intBelow(8), term, random.intBelow(40));
            modelHardState = { term, vote: random.intBelow(4), commit: Math.max(modelHardState.commit, first - 1) };
            model.append(batch);
            model.setHardState(modelHardState);
            await log.save({ entries: batch, hardState: modelHardState });
          } else if (choice < 7 && model.lastIndex() >= model.firstIndex() + 2) {
            const index = model.firstIndex() + random.intBelow(model.lastIndex() - model.firstIndex());
            model.compact(index);
            log.compact(index);
          } else if (choice < 8) {
            await log.sync();
            log = await harness.reopen(log);
          } else {
            const lo = model.firstIndex() + random.intBelow(model.lastIndex() - model.firstIndex() + 2);
            const hi = lo + random.intBelow(model.lastIndex() + 2 - lo);
            const maxBytes = random.intBelow(300);
            assertEntries(log.entries(lo, hi, maxBytes), model.entries(lo, hi, maxBytes));
          }
          assert.equal(log.firstIndex(), model.firstIndex());
          assert.equal(log.lastIndex(), model.lastIndex());
          assert.equal(log.term(log.lastIndex()), model.term(model.lastIndex()));
          assert.equal(log.term(log.firstIndex() - 1), model.term(model.firstIndex() - 1));
        }
        assertEntries(log.entries(log.firstIndex(), log.lastIndex() + 1, Infinity), model.entries(model.firstIndex(), model.lastIndex() + 1, Infinity));
        assert.deepEqual(log.initialState().hardState, modelHardState);
      } catch (error) {
        console.error(`log store model test failed with seed ${seed}; replay with STRATAKV_SEED=${seed}`);
        throw error;
      } finally {
        await log.close();
      }
    });
  });
}

// The state machine under faults: a background LevelDB write that fails is fatal (reported
// once, every later call refuses with IO_ERROR, LevelDB keeps the last state written), and a
// crash that loses the last batches (they are written behind and without sync) converges to
// the same state once the log is re-applied. Seeded; the seed is printed on failure.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryLevel } from 'memory-level';
import type { Entry } from '../../src/raft/types.ts';
import { encodeKvCommand } from '../../src/storage/kv-command-codec.ts';
import { KvStateMachine } from '../../src/storage/kv-state-machine.ts';
import type { KvRequest } from '../../src/storage/kv-types.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';

type Level = MemoryLevel<Uint8Array, Uint8Array>;
const newLevel = (): Level => new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
const bytes = (value: string): Uint8Array => new TextEncoder().encode(value);

// copyLevel is "what reached the disk": a separate database with the same pairs.
async function copyLevel(source: Level): Promise<Level> {
  const copy = newLevel();
  await copy.open();
  const pairs = await source.iterator().all();
  await copy.batch(pairs.map(([key, value]) => ({ type: 'put' as const, key, value })));
  return copy;
}

async function dump(db: Level): Promise<string[]> {
  return (await db.iterator().all()).map(([key, value]) => `${Buffer.from(key).toString('hex')}=${Buffer.from(value).toString('hex')}`);
}

function randomRequest(random: SeededRandom): KvRequest {
  const key = bytes(`k${random.intBelow(12)}`);
  const choice = random.intBelow(10);
  if (choice < 5) return { type: 'put', key, value: bytes(`v${random.intBelow(1000)}`), prevKv: random.chance(1, 2) };
  if (choice < 7) return { type: 'deleteRange', key, ...(random.chance(1, 2) ? { rangeEnd: bytes(`k${random.intBelow(12)}`) } : {}) };
  if (choice < 8) return { type: 'range', key: bytes('k'), rangeEnd: bytes('l'), limit: random.intBelow(4) };
  return {
    type: 'txn',
    compare: [{ target: 'version', result: random.pick(['equal', 'greater', 'less', 'notEqual'] as const), key, number: random.intBelow(3) }],
    success: [{ type: 'put', key: bytes(`t${random.intBelow(5)}`), value: bytes('s') }],
    failure: [{ type: 'deleteRange', key: bytes(`k${random.intBelow(12)}`) }],
  };
}

test('a failed background LevelDB write is fatal: reported once, and every later call refuses with IO_ERROR', async () => {
  const db = newLevel();
  const fatal: Error[] = [];
  const machine = await KvStateMachine.open(db, { onFatal: (error) => fatal.push(error) });
  const entry = (index: number, request: KvRequest): Entry => ({ index, term: 1, type: 0, data: encodeKvCommand({ id: index, request }) });
  await machine.apply([entry(1, { type: 'put', key: bytes('a'), value: bytes('1') })]);
  await machine.whenWritten();
  const realBatch = db.batch.bind(db);
  let failures = 1;
  (db as unknown as { batch: unknown }).batch = (...args: unknown[]) => {
    if (failures-- > 0) return Promise.reject(Object.assign(new Error('EIO: injected'), { code: 'EIO' }));
    return (realBatch as (...a: unknown[]) => Promise<void>)(...args);
  };
  // Write-behind: the apply resolves before its write fails.
  const results = await machine.apply([entry(2, { type: 'put', key: bytes('a'), value: bytes('2') }), entry(3, { type: 'deleteRange', key: bytes('a') })]);
  assert.deepEqual(results.map((result) => result.response?.revision), [3, 4]);
  const isIoError = (error: unknown): boolean => isStrataError(error, ErrorCode.IO_ERROR);
  await assert.rejects(machine.whenWritten(), isIoError);
  assert.equal(fatal.length, 1);
  assert.ok(isIoError(fatal[0]));
  assert.equal(((fatal[0] as Error).cause as { code?: string }).code, 'EIO');
  await assert.rejects(machine.apply([entry(4, { type: 'put', key: bytes('b'), value: bytes('1') })]), isIoError);
  await assert.rejects(machine.range({ type: 'range', key: bytes('a') }), isIoError);
  await assert.rejects(machine.range({ type: 'range', key: bytes('a'), rangeEnd: bytes('\0') }), isIoError);
  await assert.rejects(machine.sync(), isIoError);
  // LevelDB still holds the state of index 1, from which the driver would replay the log.
  const survivor = await KvStateMachine.open(db);
  assert.equal(survivor.appliedIndex(), 1);
  assert.equal((await survivor.range({ type: 'range', key: bytes('a') })).kvs[0]?.version, 1);
  await assert.rejects(machine.close(), isIoError);
  assert.equal(db.status, 'closed');
  assert.equal(fatal.length, 1, 'the failure is reported once');
});

test('losing the last batches in a crash converges once the log is re-applied', async () => {
  const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
  const random = new SeededRandom(seed);
  try {
    const log: Entry[] = [];
    const ENTRIES = 400;
    for (let index = 1; index <= ENTRIES; index += 1) {
      const empty = random.chance(1, 20); // a new leader's no-op
      log.push({ index, term: 1, type: 0, data: empty ? new Uint8Array(0) : encodeKvCommand({ id: index, request: randomRequest(random) }) });
    }
    // The reference applies everything in batches, never crashing.
    const referenceDb = newLevel();
    const referenceMachine = await KvStateMachine.open(referenceDb);
    // The victim crashes now and then: its database goes back to an image taken earlier.
    let victimDb = newLevel();
    let victim = await KvStateMachine.open(victimDb);
    let image = await copyLevel(victimDb);
    let applied = 0;
    const CRASHES_MAX = 20;
    let crashes = 0;
    const deadline = Date.now() + 30_000; // each pass applies at least one entry; this bounds the time too
    while (applied < ENTRIES && Date.now() < deadline) {
      const end = Math.min(ENTRIES, applied + 1 + random.intBelow(25));
      const batch = log.slice(applied, end);
      const [victimResults, referenceResults] = [await victim.apply(batch), await referenceMachine.apply(batch)];
      assert.deepEqual(
        victimResults.map((result) => [result.index, result.response?.revision, result.error?.code]),
        referenceResults.map((result) => [result.index, result.response?.revision, result.error?.code]),
      );
      applied = end;
      if (random.chance(1, 4)) image = await copyLevel(victimDb);
      // At least one crash, whatever the seed (seed 77677 drew none): forced half way if none came.
      if (crashes < CRASHES_MAX && (random.chance(1, 5) || (crashes === 0 && applied >= ENTRIES / 2))) {
        crashes += 1;
        victimDb = image;
        image = await copyLevel(victimDb);
        victim = await KvStateMachine.open(victimDb);
        assert.ok(victim.appliedIndex() <= applied);
        // The driver replays the log from the start; applied entries are skipped.
        await victim.apply(log.slice(0, applied));
        assert.equal(victim.appliedIndex(), applied);
      }
    }
    assert.equal(applied, ENTRIES, 'the run ended on its time bound');
    await victim.whenWritten();
    await referenceMachine.whenWritten();
    assert.equal(victim.revision(), referenceMachine.revision());
    assert.deepEqual(await dump(victimDb), await dump(referenceDb));
    assert.ok(crashes > 0, 'the run should crash at least once');
  } catch (error) {
    console.error(`state machine crash test failed with seed ${seed}; replay with STRATAKV_SEED=${seed}`);
    throw error;
  }
});

// compareKeyGroups (the changed-key verify of the etcd switch) over two in-memory sorted key
// sets: every difference among the changed keys is found, whatever the layout of the keys
// around them, and a layout of writers' keys with gaps between them costs few reads.
// Seeded: COMPARE_TEST_SEED overrides the seed, and a failing test prints the one to rerun with.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { compareKeyGroups, prefixRuns } from '../../../src/migrate/copy/copy-switch-etcd.ts';
import type { KeyRange, SourceKv } from '../../../src/migrate/copy/copy-ends.ts';
import type { CopyDifference } from '../../../src/migrate/copy/copy-verify.ts';
import { SeededRandom } from '../../../src/util/random.ts';

const SEED = Number(process.env['COMPARE_TEST_SEED'] ?? 5_117);
assert.ok(Number.isSafeInteger(SEED), `COMPARE_TEST_SEED must be an integer, not ${process.env['COMPARE_TEST_SEED']}`);
const REVISION = 1_000;

function seededTest(name: string, offset: number, body: (seed: number) => Promise<void>): void {
  test(`${name} (seed ${SEED}+${offset})`, async () => {
    try {
      await body(SEED + offset);
    } catch (error) {
      console.error(`compare-key-groups: "${name}" failed; rerun with COMPARE_TEST_SEED=${SEED}`);
      throw error;
    }
  });
}

const kvOf = (key: string, modRevision: number, value = `v${modRevision}`): SourceKv => ({
  key: Buffer.from(key),
  value: Buffer.from(value),
  createRevision: 1,
  modRevision,
  version: 1,
  lease: 0n,
});

/** Side is one cluster's keys, sorted, read as a range with a limit (etcd's `more`). */
class Side {
  readonly sorted: SourceKv[];
  reads = 0;
  keysRead = 0;
  inFlight = 0;
  inFlightMax = 0;
  constructor(kvs: Iterable<SourceKv>) {
    this.sorted = [...kvs].sort((a, b) => Buffer.compare(a.key, b.key));
  }
  read(range: KeyRange, limit: number): { kvs: SourceKv[]; more: boolean; revision: number } {
    assert.ok(limit > 0);
    this.reads += 1;
    // The first key at or after range.key (binary search), then up to limit + 1 keys before rangeEnd.
    let low = 0;
    let high = this.sorted.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (Buffer.compare((this.sorted[middle] as SourceKv).key, range.key) < 0) low = middle + 1;
      else high = middle;
    }
    const kvs: SourceKv[] = [];
    let more = false;
    for (let at = low; at < this.sorted.length && Buffer.compare((this.sorted[at] as SourceKv).key, range.rangeEnd) < 0; at += 1) {
      if (kvs.length === limit) {
        more = true;
        break;
      }
      kvs.push(this.sorted[at] as SourceKv);
    }
    this.keysRead += kvs.length;
    return { kvs, more, revision: REVISION };
  }
}

/** writersKeys: 16 writers' keys `<prefix><writer>/<seq>` (unpadded), seqs 0..total-1; those from changedFrom on changed. */
function writersKeys(prefix: string, total: number, changedFrom: number): { kvs: SourceKv[]; changed: string[] } {
  const kvs: SourceKv[] = [];
  const changed: string[] = [];
  for (let writer = 0; writer < 16; writer += 1) {
    for (let seq = 0; seq < total; seq += 1) {
      const key = `${prefix}${writer}/${seq}`;
      kvs.push(kvOf(key, seq < changedFrom ? 1 : 2));
      if (seq >= changedFrom) changed.push(key);
    }
  }
  return { kvs, changed };
}

/** paddedKeys: keys `k/<6-digit n>` for n below `count`, all unchanged; every `every`th one listed as changed. */
function paddedKeys(count: number, every: number): { kvs: SourceKv[]; changed: string[] } {
  const kvs: SourceKv[] = [];
  const changed: string[] = [];
  for (let at = 0; at < count; at += 1) {
    const key = `k/${String(at).padStart(6, '0')}`;
    kvs.push(kvOf(key, 1));
    if (at % every === 0) changed.push(key);
  }
  return { kvs, changed };
}

async function compare(ours: Side, theirs: Side, changed: readonly string[]): Promise<{ differences: CopyDifference[]; keysCompared: number }> {
  const differences: CopyDifference[] = [];
  const result = await compareKeyGroups(
    changed.map((key) => Buffer.from(key)),
    async (range, limit) => {
      // A read takes a turn of the event loop, as a call does: reads may overlap.
      ours.inFlight += 1;
      ours.inFlightMax = Math.max(ours.inFlightMax, ours.inFlight);
      await new Promise((resolve) => setImmediate(resolve));
      ours.inFlight -= 1;
      return ours.read(range, limit);
    },
    async (range, at, limit) => {
      assert.equal(at, REVISION, 'theirs is read at the revision ours answered');
      return theirs.read(range, limit);
    },
    differences,
  );
  assert.equal(result.lowestRevision, changed.length === 0 ? Number.POSITIVE_INFINITY : REVISION);
  return { differences, keysCompared: result.keysCompared };
}

seededTest('every difference among the changed keys is found, among unchanged keys of any density', 0, async (seed) => {
  const random = new SeededRandom(seed);
  for (let round = 0; round < 20; round += 1) {
    const keyCount = 200 + random.intBelow(6_000);
    const base = new Map<string, SourceKv>();
    for (let at = 0; at < keyCount; at += 1) {
      // Unpadded numbers under a few prefixes: changed keys interleave with unchanged ones.
      const key = `p${random.intBelow(4)}/${random.intBelow(100_000)}`;
      base.set(key, kvOf(key, 1 + random.intBelow(REVISION - 1)));
    }
    const theirs = new Map(base);
    const ours = new Map(base);
    const changed = new Set<string>();
    const expected = new Map<string, CopyDifference['kind']>();
    // A changed-key density from one in 2 to one in 500.
    const density = 2 + random.intBelow(499);
    for (const key of base.keys()) {
      if (!random.chance(1, density)) continue;
      changed.add(key);
      const fault = random.intBelow(10);
      if (fault === 0) {
        ours.delete(key);
        expected.set(key, 'missing');
      } else if (fault === 1) {
        theirs.delete(key);
        expected.set(key, 'extra');
      } else if (fault === 2) {
        ours.set(key, kvOf(key, REVISION - 1, 'stale'));
        expected.set(key, 'different');
      }
    }
    // A run of keys the source has and the copy lacks (a lost DeleteRange's opposite): many
    // missing in one read's range.
    if (random.chance(1, 2)) {
      for (let at = 0; at < 3_000; at += 1) {
        const key = `p9/${at}`;
        theirs.set(key, kvOf(key, REVISION - 2));
        changed.add(key);
        expected.set(key, 'missing');
      }
    }
    const sortedChanged = [...changed];
    const { differences } = await compare(new Side(ours.values()), new Side(theirs.values()), sortedChanged);
    const found = new Map(differences.map((difference) => [Buffer.from(difference.key).toString(), difference.kind]));
    // Differences past DIFFERENCES_LISTED_MAX are not listed; every listed one is real.
    for (const [key, kind] of found) assert.equal(kind, expected.get(key), `round ${round}: ${key} reported ${kind}`);
    if (expected.size <= differences.length || differences.length < 100) {
      assert.deepEqual(new Map([...found].sort()), new Map([...expected].sort()), `round ${round}: density 1/${density}, ${keyCount} keys`);
    }
  }
});

test('writers\' keys with gaps between them: the gaps cost a read each, not a cascade', async () => {
  // 16 writers, keys w<c>/<seq> unpadded; seqs 0..11,999 exist, 12,000..14,499 changed: after a
  // writer's last changed key ("14499") come its 4-digit keys "1450".."9999" before the next writer's.
  const { kvs, changed } = writersKeys('w', 14_500, 12_000);
  const ours = new Side(kvs);
  const theirs = new Side(kvs);
  const { differences, keysCompared } = await compare(ours, theirs, changed);
  assert.deepEqual(differences, []);
  assert.ok(keysCompared >= changed.length);
  // 40,000 changed keys in groups of 256 are 157 groups; each writer boundary may cost one read more.
  assert.ok(ours.reads <= 157 + 2 * 16, `reads of ours: ${ours.reads}`);
  assert.ok(ours.keysRead <= 2 * changed.length, `keys read of ours: ${ours.keysRead} for ${changed.length} changed`);
});

test('sparse changes come down to small reads', async () => {
  const { kvs, changed } = paddedKeys(200_000, 1_000);
  const ours = new Side(kvs);
  const { differences } = await compare(ours, new Side(kvs), changed);
  assert.deepEqual(differences, []);
  // 200 changed keys, each alone among 1,000: the reads must not fetch thousands per changed key.
  assert.ok(ours.keysRead <= 200 * 40, `keys read of ours: ${ours.keysRead} for ${changed.length} changed`);
});

test('a short window of 16 writers\' fresh keys: the keys between writers are not read', async () => {
  // The bench's last window before the pause: 16 writers, keys w<c>/<seq> unpadded, seqs
  // 0..5,999 exist and 5,800..5,999 changed. Between one writer's last changed key ("5999") and
  // the next writer's first ("5800") lie ~5,000 unchanged keys ("6".."9999" of one writer, "0".."57"
  // of the next): a read that runs into them compares keys nobody changed.
  const { kvs, changed } = writersKeys('load/c', 6_000, 5_800);
  const ours = new Side(kvs);
  const { differences } = await compare(ours, new Side(kvs), changed);
  assert.deepEqual(differences, []);
  // "58", "580".."589", "59", "590".."599" sit among each writer's changed keys: 22 of 200.
  assert.ok(ours.keysRead <= 1.25 * changed.length, `keys read of ours: ${ours.keysRead} for ${changed.length} changed`);
  assert.ok(ours.reads <= 2 * 16, `reads of ours: ${ours.reads}`);
});

test('prefixRuns cuts at writer boundaries and counter wraps, and not inside a run of keys', () => {
  const keys = (names: readonly string[]): Uint8Array[] => names.map((name) => Buffer.from(name)).sort((a, b) => Buffer.compare(a, b));
  const names: string[] = [];
  for (let seq = 9_950; seq < 10_150; seq += 1) names.push(`load/c3/${seq}`);
  for (let seq = 5_800; seq < 6_000; seq += 1) names.push(`load/c4/${seq}`);
  const runs = prefixRuns(keys(names)).map((run) => run.map((key) => Buffer.from(key).toString()));
  // c3's keys sort as "10000".."10149" then "9950".."9999" (everything else of c3 lies between); then c4's.
  assert.deepEqual(runs.map((run) => [run[0], run.at(-1), run.length]), [
    ['load/c3/10000', 'load/c3/10149', 150],
    ['load/c3/9950', 'load/c3/9999', 50],
    ['load/c4/5800', 'load/c4/5999', 200],
  ]);
  // Keys without such structure (random names) stay one run.
  const random = new SeededRandom(SEED);
  const scattered = keys(Array.from({ length: 500 }, () => `k/${random.intBelow(1_000_000_000).toString(36)}`));
  assert.equal(prefixRuns(scattered).length, 1);
});

test('a small window (a few fresh keys per writer): a read pair per writer, read in parallel', async () => {
  // The bench's pass during the quiet window: 113 changed keys among 16 writers' ~100k. As one
  // group they were read one range after another, each across the other writers' keys (1.6 s).
  const { kvs, changed } = writersKeys('load/c', 6_007, 6_000);
  const ours = new Side(kvs);
  const { differences, keysCompared } = await compare(ours, new Side(kvs), changed);
  assert.deepEqual(differences, []);
  assert.ok(keysCompared >= changed.length);
  assert.ok(ours.reads <= 16, `reads of ours: ${ours.reads}`);
  assert.ok(ours.keysRead <= 2 * changed.length, `keys read of ours: ${ours.keysRead} for ${changed.length} changed`);
  assert.ok(ours.inFlightMax >= 4, `reads in flight at most: ${ours.inFlightMax}`);
});

test('one group whose reads come back in parts is read by several workers at once', async () => {
  // Keys without prefix structure (one run), changed sparsely: the first read covers a part,
  // the rest comes back halved; idle workers take the halves instead of having ended.
  const { kvs, changed } = paddedKeys(20_000, 100);
  const ours = new Side(kvs);
  const { differences } = await compare(ours, new Side(kvs), changed.slice(0, 200));
  assert.deepEqual(differences, []);
  assert.ok(ours.inFlightMax >= 4, `reads in flight at most: ${ours.inFlightMax}`);
});

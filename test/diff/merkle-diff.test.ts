// The Merkle diff in process (src/diff/merkle-diff.ts over ViewTrees of real KvStateMachines
// on memory-level): two stores of 100,000 keys with 10 planted differences give exactly those
// 10 (missing, extra, changed); equal stores compare the root only; a difference of revisions
// alone is one on `full` and none on `content`; a prefix diff names only the keys in the
// prefix; the bound on differences truncates; a side that answers out of protocol is
// CORRUPTION; a side whose leaf keys do not sum to its leaf is reported.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { DigestTreeSource, KeyDifference } from '../../src/diff/index.ts';
import { describeDifferences, merkleDiff, prefixRange, ViewTree } from '../../src/diff/index.ts';
import type { Entry } from '../../src/raft/index.ts';
import type { DigestView, KeyValue, KvRequest, KvStateMachine } from '../../src/storage/index.ts';
import { encodeKvCommand, FANOUT, leafOf, openMemoryKvStateMachine, TREE_DEPTH } from '../../src/storage/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';

const KEYS = 100_000;
const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');
const bytes = (value: string): Uint8Array => Buffer.from(value, 'utf8');
const keyName = (n: number): string => `user/${String(n).padStart(6, '0')}`;

/** Feeder applies requests to a state machine as committed entries, in batches. */
class Feeder {
  index = 0;
  readonly machine: KvStateMachine;
  constructor(machine: KvStateMachine) {
    this.machine = machine;
  }
  async apply(requests: readonly KvRequest[], batch = 2_000): Promise<void> {
    for (let start = 0; start < requests.length; start += batch) {
      const entries: Entry[] = requests.slice(start, start + batch).map((request) => {
        this.index += 1;
        return { index: this.index, term: 1, type: 0, data: encodeKvCommand({ id: this.index, request }) };
      });
      await this.machine.apply(entries);
    }
  }
}

const put = (key: string, value: string): KvRequest => ({ type: 'put', key: bytes(key), value: bytes(value) });
const del = (key: string): KvRequest => ({ type: 'deleteRange', key: bytes(key) });

const shape = (differences: readonly KeyDifference[]): string[] => differences.map((difference) => `${difference.kind} ${text(difference.key)}`);

describe('two stores of 100,000 keys', () => {
  let a: Feeder;
  let b: Feeder;
  let equalView: DigestView;
  let plantedView: DigestView;
  let viewA: DigestView;
  const planted: string[] = [];

  before(async () => {
    a = new Feeder(await openMemoryKvStateMachine());
    b = new Feeder(await openMemoryKvStateMachine());
    const requests = Array.from({ length: KEYS }, (_, n) => put(keyName(n), `value of ${n}`));
    await a.apply(requests);
    // B as another cluster holding the same data: other revisions (a key written twice first).
    await b.apply([put(keyName(7), 'first'), ...requests.slice().reverse()]);
    equalView = b.machine.openDigestView();
    const random = new SeededRandom(seed);
    const chosen = new Set<number>();
    while (chosen.size < 10) chosen.add(random.intBelow(KEYS));
    const [m1, m2, m3, e1, e2, e3, d1, d2, d3, d4] = [...chosen];
    const changes: KvRequest[] = [];
    for (const n of [m1, m2, m3] as number[]) {
      changes.push(del(keyName(n)));
      planted.push(`missing ${keyName(n)}`);
    }
    for (const n of [e1, e2, e3] as number[]) {
      changes.push(put(`${keyName(n)}/extra`, 'only in B'));
      planted.push(`extra ${keyName(n)}/extra`);
    }
    for (const n of [d1, d2, d3, d4] as number[]) {
      changes.push(put(keyName(n), `changed ${n}`));
      planted.push(`different ${keyName(n)}`);
    }
    planted.sort((x, y) => Buffer.compare(bytes(x.split(' ')[1] ?? ''), bytes(y.split(' ')[1] ?? '')));
    await b.apply(changes);
    plantedView = b.machine.openDigestView();
    viewA = a.machine.openDigestView();
  });

  after(async () => {
    for (const view of [equalView, plantedView, viewA]) await view?.close();
    await a?.machine.close();
    await b?.machine.close();
  });

  test('10 planted differences (missing, extra, changed value) give exactly those 10, on content', async () => {
    const treeA = await ViewTree.open(viewA, { hash: 'content' });
    const treeB = await ViewTree.open(plantedView, { hash: 'content' });
    const result = await merkleDiff(treeA, treeB);
    assert.deepEqual(shape(result.differences), planted, `seed ${seed}`);
    assert.equal(result.equal, false);
    assert.equal(result.truncated, false);
    assert.deepEqual(result.inconsistencies, []);
    assert.ok(result.leavesCompared <= 10);
    assert.equal(result.differingNodes.length, TREE_DEPTH);
    assert.equal(result.rounds, TREE_DEPTH + 1, 'one round per level, one for the leaves');
    // Only differing subtrees were descended: at most 10 parents a level after the first.
    assert.ok(result.sumsCompared <= FANOUT * (1 + 10 * (TREE_DEPTH - 1)), `${result.sumsCompared} sums compared`);
    // And the values: what each side holds.
    const described = await describeDifferences(treeA, treeB, result.differences, { valueBytesMax: 8 });
    for (const difference of described) {
      const n = text(difference.key);
      if (difference.kind === 'missing') assert.ok(difference.a !== undefined && difference.b === undefined, n);
      if (difference.kind === 'extra') assert.ok(difference.a === undefined && text(difference.b?.value ?? new Uint8Array()) === 'only in ', n);
      if (difference.kind === 'different') {
        assert.equal(difference.a?.valueBytes, `value of ${Number(n.slice(5))}`.length);
        assert.equal(text(difference.b?.value ?? new Uint8Array()), 'changed ');
        assert.ok((difference.b?.modRevision ?? 0) > (difference.a?.modRevision ?? 0));
      }
    }
  });

  test('equal data: no difference on content, only the roots compared; on full the revisions differ', async () => {
    const treeA = await ViewTree.open(viewA, { hash: 'content' });
    const treeB = await ViewTree.open(equalView, { hash: 'content' });
    const result = await merkleDiff(treeA, treeB);
    assert.equal(result.equal, true);
    assert.equal(result.rounds, 0);
    assert.equal(result.sumsCompared, 0);
    assert.deepEqual(result.differences, []);
    // The same pair on full: every key's revisions differ (B wrote key 7 twice first), so the
    // bound stops the diff.
    const full = await merkleDiff(treeA.withHash('full'), treeB.withHash('full'), { differencesMax: 500 });
    assert.equal(full.truncated, true);
    assert.equal(full.differences.length, 500);
    assert.ok(full.differences.every((difference) => difference.kind === 'different'));
  });

  test('a prefix diff names only the keys in the prefix, and exactly those', async () => {
    const inPrefix = planted.filter((line) => (line.split(' ')[1] ?? '').startsWith('user/01'));
    const range = prefixRange(bytes('user/01'));
    const keysRead: number[] = [];
    const treeA = await ViewTree.open(viewA, { hash: 'content', range, onKeys: (count) => keysRead.push(count) });
    const treeB = await ViewTree.open(plantedView, { hash: 'content', range });
    assert.equal(treeA.root.keyCount, 10_000);
    assert.ok(keysRead.includes(10_000), 'the range read reported its progress');
    const result = await merkleDiff(treeA, treeB);
    assert.deepEqual(shape(result.differences), inPrefix, `seed ${seed}`);
    assert.deepEqual(result.inconsistencies, []);
  });
});

describe('small stores', () => {
  test('replicas: a key written twice with the same value differs on full, not on content', async () => {
    const a = new Feeder(await openMemoryKvStateMachine());
    const b = new Feeder(await openMemoryKvStateMachine());
    await a.apply([put('x', '1'), put('y', '2'), put('z', '3')]);
    await b.apply([put('x', '1'), put('y', '2'), put('y', '2'), put('z', '3')]);
    const viewA = a.machine.openDigestView();
    const viewB = b.machine.openDigestView();
    try {
      const full = await merkleDiff(await ViewTree.open(viewA, { hash: 'full' }), await ViewTree.open(viewB, { hash: 'full' }));
      // y: other mod revision and version; z: other create and mod revisions.
      assert.deepEqual(shape(full.differences), ['different y', 'different z']);
      const content = await merkleDiff(await ViewTree.open(viewA, { hash: 'content' }), await ViewTree.open(viewB, { hash: 'content' }));
      assert.equal(content.equal, true);
    } finally {
      await viewA.close();
      await viewB.close();
      await a.machine.close();
      await b.machine.close();
    }
  });

  test('an empty side: every key of the other is missing or extra', async () => {
    const a = new Feeder(await openMemoryKvStateMachine());
    const b = new Feeder(await openMemoryKvStateMachine());
    await a.apply([put('k1', 'v'), put('k2', 'v')]);
    const viewA = a.machine.openDigestView();
    const viewB = b.machine.openDigestView();
    try {
      const treeA = await ViewTree.open(viewA, { hash: 'content' });
      const treeB = await ViewTree.open(viewB, { hash: 'content' });
      assert.deepEqual(shape((await merkleDiff(treeA, treeB)).differences), ['missing k1', 'missing k2']);
      assert.deepEqual(shape((await merkleDiff(treeB, treeA)).differences), ['extra k1', 'extra k2']);
    } finally {
      await viewA.close();
      await viewB.close();
      await a.machine.close();
      await b.machine.close();
    }
  });

  test('a side that answers out of protocol is CORRUPTION; one whose leaf keys miss a key is reported inconsistent', async () => {
    const a = new Feeder(await openMemoryKvStateMachine());
    const b = new Feeder(await openMemoryKvStateMachine());
    await a.apply([put('k1', 'v'), put('k2', 'v')]);
    await b.apply([put('k1', 'v'), put('k2', 'w')]);
    const viewA = a.machine.openDigestView();
    const viewB = b.machine.openDigestView();
    try {
      const treeA = await ViewTree.open(viewA, { hash: 'content' });
      const treeB = await ViewTree.open(viewB, { hash: 'content' });
      const short: DigestTreeSource = { root: treeB.root, children: async (level, parents) => (await treeB.children(level, parents)).subarray(1), leafKeys: (leaves) => treeB.leafKeys(leaves), values: (keys, max) => treeB.values(keys, max) };
      await assert.rejects(merkleDiff(treeA, short), (error) => isStrataError(error, ErrorCode.CORRUPTION));
      // B's index "loses" k2 (as a damaged replica's might): its leaf's keys no longer sum to the leaf.
      const leafK2 = leafOf(bytes('k2'));
      const lossy: DigestTreeSource = {
        root: treeB.root,
        children: (level, parents) => treeB.children(level, parents),
        leafKeys: async (leaves) => (await treeB.leafKeys(leaves)).map((list, index) => (leaves[index] === leafK2 ? list.filter((item) => text(item.key) !== 'k2') : list)),
        values: (keys, max) => treeB.values(keys, max),
      };
      const result = await merkleDiff(treeA, lossy);
      assert.deepEqual(shape(result.differences), ['missing k2']);
      assert.deepEqual(result.inconsistencies, [{ kind: 'leaf-keys', side: 'b', leaf: leafK2 }]);
      assert.equal(result.equal, false);
    } finally {
      await viewA.close();
      await viewB.close();
      await a.machine.close();
      await b.machine.close();
    }
  });

  test('a value as a diff reads it: cut to the bytes asked for, with its size and counters', async () => {
    const a = new Feeder(await openMemoryKvStateMachine());
    await a.apply([put('k', 'a long value'), put('k', 'a longer value')]);
    const view = a.machine.openDigestView();
    try {
      const tree = await ViewTree.open(view, { hash: 'full' });
      const [found, absent] = await tree.values([bytes('k'), bytes('nothing')], 4);
      const expected: Partial<KeyValue> & { valueBytes: number } = { createRevision: 2, modRevision: 3, version: 2, lease: 0n, valueBytes: 14 };
      assert.deepEqual({ ...found, key: undefined, value: text(found?.value ?? new Uint8Array()) }, { ...expected, key: undefined, value: 'a lo' });
      assert.equal(absent, undefined);
    } finally {
      await view.close();
      await a.machine.close();
    }
  });
});

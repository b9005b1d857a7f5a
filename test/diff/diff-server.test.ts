// The diff's serving side without gRPC (src/diff/diff-server.ts, diff-protocol.ts): the leaf-key
// encoding round-trips and refuses damaged bytes; a leaf-keys answer is bounded by bytes but
// always carries one whole leaf; a range tree is read once and kept, evicted beyond
// RANGE_TREES_MAX and read again when asked for after, dropped with its pin; and requests out
// of bounds are INVALID_ARGUMENT naming the field.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { LeafKeyHash } from '../../src/diff/index.ts';
import { decodeLeafKeys, DiffServer, encodeLeafKeys, parseLeafKeysRequest, parseNodesRequest, parseTree, prefixRange, RANGE_TREES_MAX, StateMachineDigestPins, ViewTree, WireDigestHash } from '../../src/diff/index.ts';
import type { Entry } from '../../src/raft/index.ts';
import { encodeKvCommand, leafOf, openMemoryKvStateMachine } from '../../src/storage/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';

const hash = (byte: number): Uint8Array => new Uint8Array(16).fill(byte);

test('leaf keys round-trip through their encoding; damaged bytes are CORRUPTION', () => {
  const lists: LeafKeyHash[][] = [[{ key: Buffer.from('a'), hash: hash(1) }, { key: new Uint8Array(200).fill(7), hash: hash(2) }], [], [{ key: new Uint8Array(0), hash: hash(3) }]];
  const bytes = encodeLeafKeys(lists);
  // Counts 2, 0, 1; lengths 1, 200 (two varint bytes), 0.
  assert.equal(bytes.byteLength, 3 + (1 + 1 + 16) + (2 + 200 + 16) + (1 + 0 + 16));
  const decoded = decodeLeafKeys(bytes, 3, 'test');
  assert.deepEqual(decoded.map((list) => list.map((item) => [Buffer.from(item.key).toString('hex'), item.hash[0]])), lists.map((list) => list.map((item) => [Buffer.from(item.key).toString('hex'), item.hash[0]])));
  const corrupt = (error: unknown): boolean => isStrataError(error, ErrorCode.CORRUPTION);
  assert.throws(() => decodeLeafKeys(bytes.subarray(0, bytes.byteLength - 1), 3, 'test'), corrupt);
  assert.throws(() => decodeLeafKeys(bytes, 2, 'test'), corrupt, 'bytes left after the leaves asked for');
  assert.throws(() => decodeLeafKeys(bytes, 4, 'test'), corrupt);
  assert.throws(() => decodeLeafKeys(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 1, 'test'), corrupt, 'a varint that never ends');
});

test('requests out of bounds are INVALID_ARGUMENT naming the field', () => {
  const tree = { pin_id: 'a1', hash: WireDigestHash.FULL };
  const field = (name: string) => (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === name;
  assert.throws(() => parseTree(undefined), field('tree'));
  assert.throws(() => parseTree({ ...tree, pin_id: '' }), field('tree.pin_id'));
  assert.throws(() => parseTree({ ...tree, range_end: Buffer.from('x') }), field('tree.range_end'));
  assert.deepEqual(parseTree({ ...tree, key: Buffer.from('k'), range_end: new Uint8Array(0) }).range?.key, Buffer.from('k'));
  assert.throws(() => parseNodesRequest({ tree, level: 5, parents: [0] }), field('level'));
  assert.throws(() => parseNodesRequest({ tree, level: 1, parents: [] }), field('parents'));
  assert.throws(() => parseNodesRequest({ tree, level: 1, parents: [1] }), field('parents'));
  assert.throws(() => parseNodesRequest({ tree, level: 4, parents: [4096] }), field('parents'));
  assert.equal(parseNodesRequest({ tree, level: 4, parents: [4095] }).parents[0], 4095);
  assert.throws(() => parseLeafKeysRequest({ tree, leaves: [-1] }), field('leaves'));
});

async function machineWith(keys: readonly string[]) {
  const machine = await openMemoryKvStateMachine();
  const entries: Entry[] = keys.map((key, index) => ({ index: index + 1, term: 1, type: 0, data: encodeKvCommand({ id: index + 1, request: { type: 'put', key: Buffer.from(key), value: Buffer.from('v') } }) }));
  await machine.apply(entries);
  return machine;
}

test('a leaf-keys answer stops at the byte bound, but carries at least one whole leaf', async () => {
  // Keys in two leaves: pick keys until two leaves hold three keys each.
  const byLeaf = new Map<number, string[]>();
  for (let n = 0; byLeaf.size < 2 || [...byLeaf.values()].filter((keys) => keys.length >= 3).length < 2; n += 1) {
    const key = `k${n}`;
    const leaf = leafOf(Buffer.from(key));
    if (byLeaf.size >= 2 && !byLeaf.has(leaf)) continue;
    byLeaf.set(leaf, [...(byLeaf.get(leaf) ?? []), key]);
  }
  const machine = await machineWith([...byLeaf.values()].flat());
  const view = machine.openDigestView();
  try {
    const tree = await ViewTree.open(view, { hash: 'content' });
    const leaves = [...byLeaf.keys()];
    assert.equal((await tree.leafKeysBounded(leaves, 1)).length, 1, 'one whole leaf over the bound');
    assert.equal((await tree.leafKeysBounded(leaves, 1)).at(0)?.length, byLeaf.get(leaves[0] ?? -1)?.length);
    assert.equal((await tree.leafKeysBounded(leaves, 1_000_000)).length, 2);
  } finally {
    await view.close();
    await machine.close();
  }
});

test('a range tree is read once and kept; beyond RANGE_TREES_MAX the oldest is evicted and read again when asked for; release drops it', async () => {
  const keys = Array.from({ length: 30_000 }, (_, n) => `p${n % 10}/${n}`);
  const machine = await machineWith(keys);
  const pins = new StateMachineDigestPins(machine, { clusterId: 1, memberId: 1 });
  const server = new DiffServer({ pins });
  try {
    const pin = await server.pin('applied', { timeoutMs: 1_000 });
    const treeOf = (prefix: string) => ({ pinId: pin.pin_id, hash: 'content' as const, range: prefixRange(Buffer.from(prefix)) });
    const reads: string[] = [];
    const open = async (prefix: string): Promise<number> => {
      let progress = 0;
      const root = await server.open(treeOf(prefix), { timeoutMs: 1_000 }, () => (progress += 1));
      reads.push(`${prefix}:${progress}`);
      return root.key_count;
    };
    // 3,000 keys a prefix: no progress message (every 10,000), so count reads by a big range.
    const whole = { pinId: pin.pin_id, hash: 'content' as const, range: prefixRange(Buffer.from('p')) };
    let progress = 0;
    assert.equal((await server.open(whole, { timeoutMs: 1_000 }, () => (progress += 1))).key_count, 30_000);
    assert.equal(progress, 3, 'read once: progress at 10,000, 20,000 and 30,000 keys');
    await server.open(whole, { timeoutMs: 1_000 }, () => (progress += 1));
    assert.equal(progress, 3, 'kept: not read again');
    // The whole range's answers match a tree read directly.
    const view = await pins.view(pin.pin_id, { timeoutMs: 1_000 });
    const direct = await ViewTree.open(view, { hash: 'content', range: whole.range });
    assert.deepEqual((await server.nodes(whole, 2, [0, 5], { timeoutMs: 1_000 })).sums, await direct.children(2, [0, 5]));
    // Fill the cache with other ranges: the whole range is the least recently used, then evicted.
    for (let n = 0; n < RANGE_TREES_MAX; n += 1) assert.equal(await open(`p${n}`), 3_000);
    await server.open(whole, { timeoutMs: 1_000 }, () => (progress += 1));
    assert.equal(progress, 6, 'evicted, then read again');
    assert.deepEqual(reads.length, RANGE_TREES_MAX);
    // Released: the pin is gone, and so is every range of it.
    await server.release(pin.pin_id);
    await assert.rejects(server.nodes(whole, 1, [0], { timeoutMs: 1_000 }), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === 'pin_id');
  } finally {
    server.close();
    await pins.close();
    await machine.close();
  }
});

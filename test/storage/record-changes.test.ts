// KvStateMachineOptions.recordChanges: each applied command reports the keys it changed, each
// with its state after (every counter) or as deleted — what the reverse copy into etcd writes.
// Compared against what a range read of the same state machine answers after each command.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { EntryType } from '../../src/raft/types.ts';
import { encodeKvCommand, openMemoryKvStateMachine, type KvRequest, type KvStateMachine } from '../../src/storage/index.ts';

const bytes = (text: string): Uint8Array => Buffer.from(text);
const text = (value: Uint8Array): string => Buffer.from(value).toString('utf8');

async function applyOne(kv: KvStateMachine, index: number, request: KvRequest) {
  const [result] = await kv.apply([{ index, term: 1, type: EntryType.Normal, data: encodeKvCommand({ id: index, request }) }]);
  assert.ok(result !== undefined);
  return result;
}

test('recordChanges reports each command\'s changed keys with their counters; nothing for a no-op or a refusal', async () => {
  const kv = await openMemoryKvStateMachine({ recordChanges: true });
  try {
    let index = 1;
    const put = await applyOne(kv, index++, { type: 'put', key: bytes('a'), value: bytes('1') });
    assert.deepEqual(
      put.changes?.map((change) => ({ key: text(change.key), value: change.put === undefined ? null : text(change.put.value), mod: change.put?.modRevision, create: change.put?.createRevision, version: change.put?.version })),
      [{ key: 'a', value: '1', mod: 2, create: 2, version: 1 }],
    );
    await applyOne(kv, index++, { type: 'put', key: bytes('b'), value: bytes('2') });
    // A txn: a compare that holds, a put over an existing key and a delete, in one revision.
    const txn = await applyOne(kv, index++, {
      type: 'txn',
      compare: [{ target: 'version', result: 'equal', key: bytes('a'), number: 1 }],
      success: [{ type: 'put', key: bytes('a'), value: bytes('3') }, { type: 'deleteRange', key: bytes('b') }, { type: 'range', key: bytes('a') }],
      failure: [],
    });
    assert.deepEqual(
      txn.changes?.map((change) => ({ key: text(change.key), deleted: change.put === undefined, mod: change.put?.modRevision, version: change.put?.version })),
      [
        { key: 'a', deleted: false, mod: 4, version: 2 },
        { key: 'b', deleted: true, mod: undefined, version: undefined },
      ],
    );
    const stored = await kv.range({ type: 'range', key: bytes('a') });
    const after = txn.changes?.[0]?.put;
    assert.deepEqual(after === undefined ? undefined : { ...after, key: text(after.key), value: text(after.value) }, { key: 'a', value: '3', createRevision: 2, modRevision: 4, version: 2, lease: 0n });
    assert.equal(stored.kvs[0]?.modRevision, 4);
    // A delete of nothing and a read-only txn change nothing: no revision, no changes.
    const none = await applyOne(kv, index++, { type: 'deleteRange', key: bytes('zzz') });
    assert.deepEqual(none.changes, []);
    const readOnly = await applyOne(kv, index++, { type: 'txn', compare: [], success: [{ type: 'range', key: bytes('a') }], failure: [] });
    assert.deepEqual(readOnly.changes, []);
    assert.equal(kv.revision(), 4);
    // A refused command (a key over the limit) reports its error and no change.
    const refused = await applyOne(kv, index++, { type: 'put', key: new Uint8Array(2 * 1024 * 1024), value: bytes('x') });
    assert.ok(refused.error !== undefined);
    assert.deepEqual(refused.changes, []);
    // A DeleteRange over several keys reports each.
    for (const key of ['p/1', 'p/2', 'p/3']) await applyOne(kv, index++, { type: 'put', key: bytes(key), value: bytes('p') });
    const wide = await applyOne(kv, index++, { type: 'deleteRange', key: bytes('p/'), rangeEnd: bytes('p0') });
    assert.deepEqual(wide.changes?.map((change) => [text(change.key), change.put === undefined]), [['p/1', true], ['p/2', true], ['p/3', true]]);
  } finally {
    await kv.close();
  }
});

test('without recordChanges, results carry no changes', async () => {
  const kv = await openMemoryKvStateMachine();
  try {
    const put = await applyOne(kv, 1, { type: 'put', key: bytes('a'), value: bytes('1') });
    assert.equal(put.changes, undefined);
  } finally {
    await kv.close();
  }
});

// The state machine conformance suite: etcd's KV semantics, checked against every backend
// (memory-level, classic-level, and classic-level behind a fault-injecting wrapper).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Entry } from '../../src/raft/types.ts';
import type { ApplyResult, KvStateMachine } from '../../src/storage/kv-state-machine.ts';
import type { Compare, KeyValue, KvRequest, KvResponse, RangeResponse, TxnOperation } from '../../src/storage/kv-types.ts';
import { encodeKvCommand } from '../../src/storage/kv-command-codec.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import type { StrataError } from '../../src/util/errors.ts';

/**
 * KvHarness opens a fresh state machine and reopens one as after a restart; `log` is every
 * entry committed so far, which a restarted node re-applies (a no-op for what it kept).
 */
export interface KvHarness {
  open(): Promise<KvStateMachine>;
  reopen(machine: KvStateMachine, log: readonly Entry[]): Promise<KvStateMachine>;
}

const text = new TextEncoder();
/** bytes turns a string into key or value bytes. */
export const bytes = (value: string): Uint8Array => text.encode(value);
const str = (value: Uint8Array): string => new TextDecoder().decode(value);

/** Driver feeds requests to a state machine as consecutive committed entries. */
export class Driver {
  machine: KvStateMachine;
  readonly entries: Entry[] = [];
  private nextId = 1;

  constructor(machine: KvStateMachine) {
    this.machine = machine;
  }

  entry(request: KvRequest): Entry {
    const index = this.entries.length + 1;
    const entry: Entry = { index, term: 1, type: 0, data: encodeKvCommand({ id: this.nextId++, request }) };
    this.entries.push(entry);
    return entry;
  }

  async applyAll(requests: readonly KvRequest[]): Promise<ApplyResult[]> {
    return this.machine.apply(requests.map((request) => this.entry(request)));
  }

  async run(request: KvRequest): Promise<KvResponse> {
    const [result] = await this.applyAll([request]);
    assert.ok(result !== undefined);
    if (result.error !== undefined) throw result.error;
    assert.ok(result.response !== undefined);
    return result.response;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.machine.range({ type: 'range', key: bytes(key) })).kvs[0];
  }
}

const put = (key: string, value: string, prevKv = false): TxnOperation => ({ type: 'put', key: bytes(key), value: bytes(value), ...(prevKv ? { prevKv } : {}) });
const keys = (response: RangeResponse): string[] => response.kvs.map((kv) => str(kv.key));
const code = (expected: ErrorCode) => (error: unknown) => isStrataError(error, expected);

/** describeKvConformance registers the suite for one backend. */
export function describeKvConformance(name: string, harness: KvHarness): void {
  describe(`KV state machine conformance: ${name}`, () => {
    test('a fresh store is at revision 1 with nothing applied', async () => {
      const machine = await harness.open();
      assert.equal(machine.revision(), 1);
      assert.equal(machine.appliedIndex(), 0);
      assert.deepEqual((await machine.range({ type: 'range', key: bytes('\0'), rangeEnd: bytes('\0') })).kvs, []);
      await machine.close();
    });

    test('Put bumps the revision every time and keeps create/mod revision and version', async () => {
      const driver = new Driver(await harness.open());
      assert.equal((await driver.run(put('a', '1'))).revision, 2);
      const second = await driver.run(put('a', '2', true));
      assert.equal(second.revision, 3);
      assert.equal(second.type === 'put' ? str(second.prevKv?.value ?? new Uint8Array()) : '', '1');
      assert.equal((await driver.run(put('a', '2'))).revision, 4); // same value still bumps
      const kv = await driver.get('a');
      assert.deepEqual({ create: kv?.createRevision, mod: kv?.modRevision, version: kv?.version, value: str(kv?.value ?? new Uint8Array()) }, { create: 2, mod: 4, version: 3, value: '2' });
      await driver.machine.close();
    });

    test('a delete resets the version and the create revision', async () => {
      const driver = new Driver(await harness.open());
      await driver.run(put('k', 'v'));
      await driver.run(put('k', 'v'));
      const deleted = await driver.run({ type: 'deleteRange', key: bytes('k'), prevKv: true });
      assert.ok(deleted.type === 'deleteRange');
      assert.equal(deleted.deleted, 1);
      assert.equal(deleted.revision, 4);
      assert.equal(deleted.prevKvs[0]?.version, 2);
      await driver.run(put('k', 'w'));
      const kv = await driver.get('k');
      assert.deepEqual([kv?.createRevision, kv?.modRevision, kv?.version], [5, 5, 1]);
      await driver.machine.close();
    });

    test('a DeleteRange that deletes nothing does not bump the revision', async () => {
      const driver = new Driver(await harness.open());
      await driver.run(put('a', '1'));
      const response = await driver.run({ type: 'deleteRange', key: bytes('zzz'), rangeEnd: bytes('\0') });
      assert.ok(response.type === 'deleteRange');
      assert.equal(response.deleted, 0);
      assert.equal(response.revision, 2);
      assert.equal(driver.machine.revision(), 2);
      await driver.machine.close();
    });

    test("Range follows etcd's range_end conventions, limit, count_only and keys_only", async () => {
      const driver = new Driver(await harness.open());
      await driver.applyAll(['a', 'ab', 'abc', 'b', 'c'].map((key) => put(key, `v-${key}`)));
      const range = (key: string, rangeEnd?: string, extra: object = {}) =>
        driver.machine.range({ type: 'range', key: bytes(key), ...(rangeEnd === undefined ? {} : { rangeEnd: bytes(rangeEnd) }), ...extra });
      assert.deepEqual(keys(await range('a')), ['a']);
      assert.deepEqual(keys(await range('a', 'b')), ['a', 'ab', 'abc']);
      assert.deepEqual(keys(await range('ab', 'ac')), ['ab', 'abc']); // prefix "ab"
      assert.deepEqual(keys(await range('b', '\0')), ['b', 'c']);
      assert.deepEqual(keys(await range('\0', '\0')), ['a', 'ab', 'abc', 'b', 'c']);
      assert.deepEqual(keys(await range('c', 'a')), []);
      assert.deepEqual(keys(await range('nope')), []);
      const limited = await range('a', '\0', { limit: 2 });
      assert.deepEqual([keys(limited), limited.more, limited.count], [['a', 'ab'], true, 5]);
      const unlimited = await range('a', '\0', { limit: -1, revision: -5 });
      assert.deepEqual([unlimited.kvs.length, unlimited.more], [5, false]); // etcd: <= 0 means none / current
      await assert.rejects(range('a', 'b', { limit: 1.5 }), code(ErrorCode.INVALID_ARGUMENT));
      const counted = await range('a', 'b', { countOnly: true });
      assert.deepEqual([counted.kvs.length, counted.count, counted.more], [0, 3, false]);
      const keysOnly = await range('a', 'b', { keysOnly: true });
      assert.deepEqual(keysOnly.kvs.map((kv) => kv.value.byteLength), [0, 0, 0]);
      assert.equal(keysOnly.revision, 6);
      await driver.machine.close();
    });

    test('Range at another revision is FUTURE_REVISION or COMPACTED (no history is kept)', async () => {
      const driver = new Driver(await harness.open());
      await driver.run(put('a', '1'));
      await driver.run(put('a', '2'));
      await assert.rejects(driver.machine.range({ type: 'range', key: bytes('a'), revision: 9 }), code(ErrorCode.FUTURE_REVISION));
      await assert.rejects(driver.machine.range({ type: 'range', key: bytes('a'), revision: 2 }), code(ErrorCode.COMPACTED));
      assert.equal((await driver.machine.range({ type: 'range', key: bytes('a'), revision: 3 })).count, 1);
      await driver.machine.close();
    });

    test('Txn compares value, version, create and mod revision with =, !=, <, >', async () => {
      const driver = new Driver(await harness.open());
      await driver.run(put('k', 'm')); // rev 2
      await driver.run(put('k', 'm')); // rev 3, version 2
      const check = async (compare: Compare): Promise<boolean> => {
        const response = await driver.run({ type: 'txn', compare: [compare], success: [], failure: [] });
        assert.ok(response.type === 'txn');
        return response.succeeded;
      };
      const key = bytes('k');
      assert.equal(await check({ target: 'value', result: 'equal', key, value: bytes('m') }), true);
      assert.equal(await check({ target: 'value', result: 'less', key, value: bytes('n') }), true);
      assert.equal(await check({ target: 'value', result: 'greater', key, value: bytes('n') }), false);
      assert.equal(await check({ target: 'version', result: 'equal', key, number: 2 }), true);
      assert.equal(await check({ target: 'version', result: 'notEqual', key, number: 2 }), false);
      assert.equal(await check({ target: 'createRevision', result: 'equal', key, number: 2 }), true);
      assert.equal(await check({ target: 'modRevision', result: 'greater', key, number: 2 }), true);
      assert.equal(await check({ target: 'modRevision', result: 'less', key, number: 3 }), false);
      // A missing key compares as zeros, except that a value compare always fails.
      const missing = bytes('missing');
      assert.equal(await check({ target: 'version', result: 'equal', key: missing, number: 0 }), true);
      assert.equal(await check({ target: 'createRevision', result: 'less', key: missing, number: 1 }), true);
      assert.equal(await check({ target: 'value', result: 'notEqual', key: missing, value: bytes('x') }), false);
      assert.equal(await check({ target: 'value', result: 'equal', key: missing, value: new Uint8Array(0) }), false);
      assert.equal(driver.machine.revision(), 3); // read-only Txns do not bump
      await driver.machine.close();
    });

    test('a Txn is one revision, and its reads see its own writes', async () => {
      const driver = new Driver(await harness.open());
      await driver.run(put('x', '0'));
      const response = await driver.run({
        type: 'txn',
        compare: [{ target: 'version', result: 'greater', key: bytes('x'), number: 0 }],
        success: [put('a', '1'), put('b', '2'), { type: 'range', key: bytes('a'), rangeEnd: bytes('c') }, { type: 'deleteRange', key: bytes('x') }],
        failure: [put('f', 'f')],
      });
      assert.ok(response.type === 'txn');
      assert.equal(response.succeeded, true);
      assert.equal(response.revision, 3);
      const read = response.responses[2];
      assert.ok(read?.type === 'range');
      assert.deepEqual(read.kvs.map((kv) => [str(kv.key), kv.modRevision]), [['a', 3], ['b', 3]]);
      assert.equal((await driver.get('x')), undefined);
      assert.equal((await driver.get('f')), undefined);
      const failed = await driver.run({
        type: 'txn',
        compare: [{ target: 'value', result: 'equal', key: bytes('a'), value: bytes('nope') }],
        success: [put('s', 's')],
        failure: [{ type: 'deleteRange', key: bytes('nothing-here') }],
      });
      assert.ok(failed.type === 'txn');
      assert.deepEqual([failed.succeeded, failed.revision], [false, 3]); // a delete of nothing is no change
      await driver.machine.close();
    });

    test('a Txn compare over a range needs every key to match', async () => {
      const driver = new Driver(await harness.open());
      await driver.applyAll([put('p/1', 'a'), put('p/2', 'a'), put('q', 'b')]);
      const txn = async (value: string): Promise<boolean> => {
        const response = await driver.run({
          type: 'txn',
          compare: [{ target: 'value', result: 'equal', key: bytes('p/'), rangeEnd: bytes('p0'), value: bytes(value) }],
          success: [],
          failure: [],
        });
        return response.type === 'txn' && response.succeeded;
      };
      assert.equal(await txn('a'), true);
      await driver.run(put('p/3', 'c'));
      assert.equal(await txn('a'), false);
      await driver.machine.close();
    });

    test("limits and rules refuse requests with etcd's codes, changing nothing", async () => {
      const driver = new Driver(await harness.open());
      const refused = async (request: KvRequest): Promise<StrataError> => {
        const [result] = await driver.applyAll([request]);
        assert.ok(result?.error !== undefined, 'expected a refusal');
        return result.error;
      };
      assert.equal((await refused({ type: 'put', key: new Uint8Array(0), value: bytes('v') })).code, ErrorCode.KEY_NOT_PROVIDED);
      assert.equal((await refused({ type: 'range', key: new Uint8Array(0) })).code, ErrorCode.KEY_NOT_PROVIDED);
      assert.equal((await refused({ type: 'put', key: bytes('k'), value: new Uint8Array(1.5 * 1024 * 1024 + 1) })).code, ErrorCode.REQUEST_TOO_LARGE);
      const many = Array.from({ length: 129 }, (_, i) => put(`k${i}`, 'v'));
      assert.equal((await refused({ type: 'txn', compare: [], success: many, failure: [] })).code, ErrorCode.TOO_MANY_OPERATIONS);
      assert.equal((await refused({ type: 'txn', compare: [], success: [put('d', '1'), put('d', '2')], failure: [] })).code, ErrorCode.DUPLICATE_KEY);
      const inDelete: KvRequest = { type: 'txn', compare: [], success: [{ type: 'deleteRange', key: bytes('a'), rangeEnd: bytes('c') }, put('b', '1')], failure: [] };
      assert.equal((await refused(inDelete)).code, ErrorCode.DUPLICATE_KEY);
      const futureRead: KvRequest = { type: 'txn', compare: [], success: [put('w', '1'), { type: 'range', key: bytes('w'), revision: 99 }], failure: [] };
      assert.equal((await refused(futureRead)).code, ErrorCode.FUTURE_REVISION);
      assert.equal(driver.machine.revision(), 1);
      assert.equal(await driver.get('w'), undefined);
      assert.equal(driver.machine.appliedIndex(), 7); // refused entries are still applied (as no-ops)
      // 128 operations are fine.
      const response = await driver.run({ type: 'txn', compare: [], success: many.slice(0, 128), failure: [] });
      assert.equal(response.revision, 2);
      await driver.machine.close();
    });

    test('re-applying entries at or below the applied index is a no-op', async () => {
      const driver = new Driver(await harness.open());
      await driver.applyAll([put('a', '1'), put('b', '1'), put('a', '2')]);
      driver.entry(put('c', '1'));
      driver.entry({ type: 'deleteRange', key: bytes('a') });
      const results = await driver.machine.apply(driver.entries);
      assert.deepEqual(results.map((result) => result.index), [4, 5]);
      assert.equal(driver.machine.revision(), 6);
      assert.deepEqual(await driver.machine.apply(driver.entries), []);
      assert.equal(driver.machine.revision(), 6);
      await driver.machine.close();
    });

    test('empty and configuration entries advance the applied index only', async () => {
      const machine = await harness.open();
      const results = await machine.apply([
        { index: 1, term: 1, type: 0, data: new Uint8Array(0) },
        { index: 2, term: 1, type: 1, data: Uint8Array.of(1, 2, 3) },
      ]);
      assert.deepEqual(results, []);
      assert.equal(machine.appliedIndex(), 2);
      assert.equal(machine.revision(), 1);
      await machine.close();
    });

    test('applied state survives a reopen', async () => {
      const driver = new Driver(await harness.open());
      await driver.applyAll([put('a', '1'), put('b', '2'), { type: 'deleteRange', key: bytes('b') }]);
      await driver.machine.sync();
      driver.machine = await harness.reopen(driver.machine, driver.entries);
      assert.equal(driver.machine.appliedIndex(), 3);
      assert.equal(driver.machine.revision(), 4);
      assert.equal(str((await driver.get('a'))?.value ?? new Uint8Array()), '1');
      assert.equal(await driver.get('b'), undefined);
      await driver.machine.close();
    });
  });
}

// Mirror mode in the state machine (kv-types.ts: MirrorRequest), on memory-level and on
// LevelDB: mirrorBegin's conditions, mirrorApply setting the source's counters and revision
// exactly under a compare-and-set, client writes refused with MIRROR_READ_ONLY while reads are
// served, mirrorEnd handing the store back at the reached revision; the state kept across a
// reopen, in every LevelDB image the write-behind can leave (with the data of the same applied
// index), in snapshot views and through restore(); equal digests and equal refusals on every
// replica fed the same entries.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { MemoryLevel } from 'memory-level';
import type { Entry } from '../../src/raft/types.ts';
import { encodeKvCommand } from '../../src/storage/kv-command-codec.ts';
import { MIRROR_KEY, META_KEY, decodeMetaState } from '../../src/storage/kv-keys.ts';
import type { ApplyResult, KvLevel } from '../../src/storage/kv-state-machine.ts';
import { INITIAL_REVISION, KvStateMachine } from '../../src/storage/kv-state-machine.ts';
import type { KvRequest, KvResponse, MirrorPut, MirrorResponse, PutRequest } from '../../src/storage/kv-types.ts';
import { digestRootsEqual } from '../../src/storage/state-digest.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import type { StrataError } from '../../src/util/errors.ts';
import { restoreView } from './restore-view.ts';

const bytes = (value: string): Uint8Array => new TextEncoder().encode(value);
const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : new TextDecoder().decode(value));
const everything = { type: 'range', key: bytes('\0'), rangeEnd: bytes('\0') } as const;
const mirrorPut = (key: string, value: string, createRevision: number, modRevision: number, version: number, lease = 0n): MirrorPut => ({
  key: bytes(key),
  value: bytes(value),
  createRevision,
  modRevision,
  version,
  lease,
});
const begin = (state: string, requireEmpty = true, requireRevision?: number): KvRequest => ({
  type: 'mirrorBegin',
  state: bytes(state),
  requireEmpty,
  ...(requireRevision === undefined ? {} : { requireRevision }),
});
const mirrorApply = (expectState: string, state: string, revision: number, puts: MirrorPut[], deletes: string[] = []): KvRequest => ({
  type: 'mirrorApply',
  expectState: bytes(expectState),
  state: bytes(state),
  revision,
  puts,
  deletes: deletes.map(bytes),
});
const end = (expectState: string): KvRequest => ({ type: 'mirrorEnd', expectState: bytes(expectState) });
const put = (key: string, value: string): PutRequest => ({ type: 'put', key: bytes(key), value: bytes(value) });
// ETCD_LEASE is a lease id as etcd grants them (etcdctl lease grant gave it): the member id in
// the top bits, far beyond 2^53; LEASE_MAX is the largest int64.
const ETCD_LEASE = 2156839707291722977n;
const LEASE_MAX = 2n ** 63n - 1n;

// Feeder applies requests to one state machine as consecutive committed entries, and keeps the log.
class Feeder {
  readonly entries: Entry[] = [];
  machine: KvStateMachine;

  constructor(machine: KvStateMachine) {
    this.machine = machine;
  }

  entry(request: KvRequest): Entry {
    const index = this.entries.length + 1;
    const entry: Entry = { index, term: 2, type: 0, data: encodeKvCommand({ id: index, request }) };
    this.entries.push(entry);
    return entry;
  }

  async apply(requests: readonly KvRequest[]): Promise<ApplyResult[]> {
    return this.machine.apply(requests.map((request) => this.entry(request)));
  }

  async run(request: KvRequest): Promise<KvResponse> {
    const [result] = await this.apply([request]);
    assert.ok(result !== undefined);
    if (result.error !== undefined) throw result.error;
    assert.ok(result.response !== undefined);
    return result.response;
  }

  // refused applies one request that must be refused with `code`, and checks that it changed
  // nothing but the applied index.
  async refused(request: KvRequest, code: ErrorCode): Promise<StrataError> {
    const before = await snapshotOf(this.machine);
    const [result] = await this.apply([request]);
    assert.ok(result?.error !== undefined, `${request.type} was not refused`);
    assert.ok(isStrataError(result.error, code), `${request.type}: ${result.error.code} ${result.error.message}, expected ${code}`);
    assert.equal(result.response, undefined);
    assert.deepEqual(await snapshotOf(this.machine), before, `${request.type}: a refusal changes nothing`);
    return result.error;
  }
}

// snapshotOf is the whole observable state but the applied index: keys with counters, the revision, the mirror state and the digest.
async function snapshotOf(machine: KvStateMachine): Promise<{ kvs: string[]; revision: number; mirror: string | undefined; digest: string }> {
  const response = await machine.range(everything);
  return {
    kvs: response.kvs.map((kv) => `${text(kv.key)}=${text(kv.value)}@${kv.createRevision}/${kv.modRevision}/${kv.version}/${kv.lease}`),
    revision: machine.revision(),
    mirror: text(machine.mirrorState()),
    digest: Buffer.from(machine.stateDigest().digest.full).toString('hex'),
  };
}

const root = mkdtempSync(path.join(tmpdir(), 'stratakv-kv-mirror-'));
after(() => rmSync(root, { recursive: true, force: true }));
let databases = 0;

type Backend = 'memory-level' | 'LevelDB';
const newLevel = (backend: Backend): KvLevel => {
  databases += 1;
  return backend === 'memory-level'
    ? new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' })
    : new ClassicLevel<Uint8Array, Uint8Array>(path.join(root, `db-${databases}`), { keyEncoding: 'view', valueEncoding: 'view' });
};

for (const backend of ['memory-level', 'LevelDB'] as const) {
  describe(`mirror mode on ${backend}`, () => {
    const open = async (): Promise<Feeder> => new Feeder(await KvStateMachine.open(newLevel(backend)));
    // reopen closes the state machine (its pending writes land) and opens a new one on the same database.
    const reopen = async (feeder: Feeder, db: KvLevel): Promise<void> => {
      await feeder.machine.close();
      feeder.machine = await KvStateMachine.open(db);
    };

    test('mirrorBegin on an empty store makes it a mirror at revision 1; a second one is MIRROR_CONFLICT', async () => {
      const feeder = await open();
      assert.equal(feeder.machine.mirrorState(), undefined);
      const response = (await feeder.run(begin('s0'))) as MirrorResponse;
      assert.deepEqual([response.type, response.revision, text(response.state)], ['mirrorBegin', INITIAL_REVISION, 's0']);
      assert.equal(text(feeder.machine.mirrorState()), 's0');
      assert.equal(feeder.machine.revision(), INITIAL_REVISION);
      await feeder.refused(begin('s1'), ErrorCode.MIRROR_CONFLICT);
      await feeder.refused(begin('s0', false), ErrorCode.MIRROR_CONFLICT);
      // The accessor hands out a copy: the applied state cannot be changed through it.
      (feeder.machine.mirrorState() as Uint8Array)[0] = 0;
      assert.equal(text(feeder.machine.mirrorState()), 's0');
      await feeder.machine.close();
    });

    test('mirrorBegin with requireEmpty is refused on a store with keys or past revision 1; requireRevision must match', async () => {
      const feeder = await open();
      await feeder.run(put('a', '1'));
      await feeder.refused(begin('s'), ErrorCode.MIRROR_CONFLICT);
      await feeder.run({ type: 'deleteRange', key: bytes('a') });
      // No key left, but the store has a history: not empty.
      await feeder.refused(begin('s'), ErrorCode.MIRROR_CONFLICT);
      await feeder.refused(begin('s', false, 2), ErrorCode.MIRROR_CONFLICT);
      // A store fenced at revision 3 (nothing written since) may become a mirror of its source.
      const response = (await feeder.run(begin('s', false, 3))) as MirrorResponse;
      assert.deepEqual([response.revision, text(feeder.machine.mirrorState())], [3, 's']);
      // Within one batch: a Put, then a mirrorBegin that requires an empty store sees the Put.
      const other = await open();
      const results = await other.apply([put('x', '1'), begin('s')]);
      assert.ok(isStrataError(results[1]?.error, ErrorCode.MIRROR_CONFLICT));
      assert.equal(other.machine.mirrorState(), undefined);
      await feeder.machine.close();
      await other.machine.close();
    });

    test('mirrorApply sets the puts with exactly the given counters, deletes keys, moves the revision and the state', async () => {
      const feeder = await open();
      await feeder.run(begin('s0'));
      const before = feeder.machine.stateDigest().digest;
      const first = (await feeder.run(mirrorApply('s0', 's1', 100, [mirrorPut('a', 'va', 7, 90, 4, 12345n), mirrorPut('b', 'vb', 100, 100, 1)]))) as MirrorResponse;
      assert.deepEqual([first.type, first.revision, text(first.state)], ['mirrorApply', 100, 's1']);
      assert.deepEqual(await snapshotOf(feeder.machine).then(({ kvs, revision, mirror }) => ({ kvs, revision, mirror })), {
        kvs: ['a=va@7/90/4/12345', 'b=vb@100/100/1/0'],
        revision: 100,
        mirror: 's1',
      });
      assert.ok(!digestRootsEqual(feeder.machine.stateDigest().digest, before), 'the digest moved');
      assert.equal(feeder.machine.stateDigest().digest.keyCount, 2);
      const range = await feeder.machine.range({ type: 'range', key: bytes('a') });
      assert.equal(range.revision, 100);
      // Overwrites take the given counters as they are (not computed from the old ones);
      // deleting an absent key is fine; the same revision again is not "backwards".
      await feeder.run(mirrorApply('s1', 's2', 100, [mirrorPut('a', 'va2', 3, 50, 1)], ['b', 'absent']));
      assert.deepEqual((await snapshotOf(feeder.machine)).kvs, ['a=va2@3/50/1/0']);
      assert.equal(feeder.machine.revision(), 100);
      assert.equal(feeder.machine.stateDigest().digest.keyCount, 1);
      await feeder.machine.close();
    });

    test('a compare-and-set that does not hold is MIRROR_CONFLICT, including the retry of a batch that landed', async () => {
      const feeder = await open();
      await feeder.refused(mirrorApply('', 's1', 5, []), ErrorCode.MIRROR_CONFLICT);
      await feeder.refused(end(''), ErrorCode.MIRROR_CONFLICT);
      await feeder.run(begin('s0'));
      const batch = mirrorApply('s0', 's1', 5, [mirrorPut('k', 'v', 5, 5, 1)]);
      await feeder.run(batch);
      // A copier that resumes and sends the same batch again: it applied once, the retry is refused.
      const error = await feeder.refused(batch, ErrorCode.MIRROR_CONFLICT);
      // The message says what was expected and what was found, by length and hash prefix.
      assert.match(error.message, /expected 2 bytes, SHA-256 [0-9a-f]{16}, found 2 bytes, SHA-256 [0-9a-f]{16}/);
      await feeder.refused(mirrorApply('s0-other', 's2', 6, []), ErrorCode.MIRROR_CONFLICT);
      await feeder.refused(end('s0'), ErrorCode.MIRROR_CONFLICT);
      assert.equal(text(feeder.machine.mirrorState()), 's1');
      await feeder.machine.close();
    });

    test('mirrorApply never moves the revision back (MIRROR_CONFLICT)', async () => {
      const feeder = await open();
      await feeder.run(begin('s0'));
      await feeder.run(mirrorApply('s0', 's1', 50, []));
      assert.equal(feeder.machine.revision(), 50);
      await feeder.refused(mirrorApply('s1', 's2', 49, [mirrorPut('k', 'v', 2, 2, 1)]), ErrorCode.MIRROR_CONFLICT);
      await feeder.machine.close();
    });

    test('while a mirror: client Puts, DeleteRanges and writing Txns are MIRROR_READ_ONLY; Range and read-only Txns are served', async () => {
      const feeder = await open();
      await feeder.run(begin('s0'));
      await feeder.run(mirrorApply('s0', 's1', 10, [mirrorPut('a', '1', 4, 9, 2)]));
      await feeder.refused(put('a', '2'), ErrorCode.MIRROR_READ_ONLY);
      await feeder.refused(put('new', '2'), ErrorCode.MIRROR_READ_ONLY);
      await feeder.refused({ type: 'deleteRange', key: bytes('a') }, ErrorCode.MIRROR_READ_ONLY);
      // A DeleteRange that would delete nothing is a write all the same.
      await feeder.refused({ type: 'deleteRange', key: bytes('absent') }, ErrorCode.MIRROR_READ_ONLY);
      // A write in either branch refuses the Txn, whichever branch the compares pick.
      const compareTrue = { target: 'version', result: 'equal', key: bytes('a'), number: 2 } as const;
      await feeder.refused({ type: 'txn', compare: [compareTrue], success: [{ type: 'range', key: bytes('a') }], failure: [{ type: 'put', key: bytes('a'), value: bytes('x') }] }, ErrorCode.MIRROR_READ_ONLY);
      await feeder.refused({ type: 'txn', compare: [], success: [{ type: 'deleteRange', key: bytes('a') }], failure: [] }, ErrorCode.MIRROR_READ_ONLY);
      const txn = (await feeder.run({ type: 'txn', compare: [compareTrue], success: [{ type: 'range', key: bytes('a') }], failure: [{ type: 'range', key: bytes('b') }] })) as Extract<KvResponse, { type: 'txn' }>;
      assert.equal(txn.succeeded, true);
      assert.equal(txn.revision, 10);
      const inTxn = txn.responses[0] as Extract<KvResponse, { type: 'range' }>;
      assert.deepEqual(inTxn.kvs.map((kv) => [text(kv.key), text(kv.value), kv.modRevision]), [['a', '1', 9]]);
      const range = (await feeder.run({ type: 'range', key: bytes('a') })) as Extract<KvResponse, { type: 'range' }>;
      assert.deepEqual([range.count, range.revision], [1, 10]);
      assert.equal((await feeder.machine.range({ type: 'range', key: bytes('a') })).kvs[0]?.version, 2);
      await feeder.machine.close();
    });

    test('mirrorEnd makes the store writable at the revision reached: the next Put is revision + 1', async () => {
      const feeder = await open();
      await feeder.run(begin('s0'));
      await feeder.run(mirrorApply('s0', 's1', 70, [mirrorPut('a', '1', 30, 60, 5)]));
      const ended = (await feeder.run(end('s1'))) as MirrorResponse;
      assert.deepEqual([ended.type, ended.revision, ended.state], ['mirrorEnd', 70, undefined]);
      assert.equal(feeder.machine.mirrorState(), undefined);
      assert.equal(((await feeder.run(put('a', '2'))) as Extract<KvResponse, { type: 'put' }>).revision, 71);
      assert.equal(((await feeder.run(put('b', '1'))) as Extract<KvResponse, { type: 'put' }>).revision, 72);
      // A copied key goes on from its copied counters.
      assert.deepEqual((await snapshotOf(feeder.machine)).kvs, ['a=2@30/71/6/0', 'b=1@72/72/1/0']);
      // No mirror any more: the copier's requests conflict, and a new copy may begin only with requireEmpty false.
      await feeder.refused(mirrorApply('s1', 's2', 80, []), ErrorCode.MIRROR_CONFLICT);
      await feeder.refused(end('s1'), ErrorCode.MIRROR_CONFLICT);
      await feeder.machine.close();
    });

    test('within one batch each entry sees the mirror state the entries before it left', async () => {
      const feeder = await open();
      const results = await feeder.apply([put('early', '1'), begin('s0', false), put('refused', '1'), mirrorApply('s0', 's1', 9, [mirrorPut('m', '1', 9, 9, 1)]), end('s1'), put('late', '1')]);
      assert.deepEqual(
        results.map((result) => result.error?.code ?? result.response?.revision),
        [2, 2, ErrorCode.MIRROR_READ_ONLY, 9, 9, 10],
      );
      assert.deepEqual((await snapshotOf(feeder.machine)).kvs, ['early=1@2/2/1/0', 'late=1@10/10/1/0', 'm=1@9/9/1/0']);
      assert.equal(feeder.machine.mirrorState(), undefined);
      await feeder.machine.close();
    });

    test('the mirror state survives a reopen with its data, and its end does too', async () => {
      const db = newLevel(backend);
      const feeder = new Feeder(await KvStateMachine.open(db));
      await feeder.run(begin('s0'));
      await feeder.run(mirrorApply('s0', 's1', 12, [mirrorPut('a', '1', 3, 12, 2)]));
      const applied = await snapshotOf(feeder.machine);
      await reopen(feeder, db);
      assert.deepEqual(await snapshotOf(feeder.machine), applied);
      assert.equal(feeder.machine.appliedIndex(), 2);
      await feeder.refused(put('a', '2'), ErrorCode.MIRROR_READ_ONLY);
      await feeder.run(end('s1'));
      await reopen(feeder, db);
      assert.equal(feeder.machine.mirrorState(), undefined);
      assert.equal(((await feeder.run(put('a', '2'))) as Extract<KvResponse, { type: 'put' }>).revision, 13);
      await feeder.machine.close();
    });

    test('a snapshot view carries the mirror state it captured, and restore() makes a mirror of it', async () => {
      const feeder = await open();
      await feeder.run(begin('s0'));
      await feeder.run(mirrorApply('s0', 's1', 40, [mirrorPut('a', '1', 3, 30, 2), mirrorPut('b', '2', 40, 40, 1)]));
      const view = feeder.machine.openSnapshotView();
      // What happens after the capture is not in the view.
      await feeder.run(end('s1'));
      assert.equal(text(view.mirror), 's1');
      const restoredDb = newLevel(backend);
      const restored = new Feeder(await restoreView(view, restoredDb));
      assert.equal(text(restored.machine.mirrorState()), 's1');
      assert.ok(digestRootsEqual(restored.machine.stateDigest().digest, view.digest));
      // The restored member goes on with the log after the snapshot's index, as its source did.
      restored.entries.push(...feeder.entries.slice(0, view.appliedIndex));
      const refusedThere = await restored.apply([put('a', 'x')]);
      assert.ok(isStrataError(refusedThere[0]?.error, ErrorCode.MIRROR_READ_ONLY));
      // ...and after a reopen it is still a mirror (restore wrote the state with sync).
      await restored.machine.close();
      const reopened = await KvStateMachine.open(restoredDb);
      assert.equal(text(reopened.mirrorState()), 's1');
      assert.equal(reopened.revision(), 40);
      await reopened.close();
      await feeder.machine.close();
    });

    test('a lease id beyond 2^53 is kept exactly: mirror put, range, Txn compares, a reopen, a snapshot and restore()', async () => {
      const db = newLevel(backend);
      const feeder = new Feeder(await KvStateMachine.open(db));
      await feeder.run(begin('s0'));
      await feeder.run(mirrorApply('s0', 's1', 40, [mirrorPut('etcd', '1', 3, 30, 2, ETCD_LEASE), mirrorPut('max', '2', 40, 40, 1, LEASE_MAX), mirrorPut('none', '3', 40, 40, 1)]));
      const leases = async (machine: KvStateMachine): Promise<bigint[]> => (await machine.range(everything)).kvs.map((kv) => kv.lease);
      assert.deepEqual(await leases(feeder.machine), [ETCD_LEASE, LEASE_MAX, 0n]);
      // Txn compares on the lease are exact: the neighbours of an id beyond 2^53 are other ids.
      const holds = async (key: string, result: 'equal' | 'notEqual' | 'less' | 'greater', lease: bigint): Promise<boolean> => {
        const response = await feeder.run({ type: 'txn', compare: [{ target: 'lease', result, key: bytes(key), lease }], success: [], failure: [] });
        return (response as Extract<KvResponse, { type: 'txn' }>).succeeded;
      };
      assert.deepEqual(
        [await holds('etcd', 'equal', ETCD_LEASE), await holds('etcd', 'equal', ETCD_LEASE + 1n), await holds('etcd', 'less', ETCD_LEASE + 1n), await holds('etcd', 'greater', ETCD_LEASE - 1n)],
        [true, false, true, true],
      );
      assert.deepEqual([await holds('max', 'equal', LEASE_MAX), await holds('max', 'greater', -(2n ** 63n)), await holds('absent', 'equal', 0n), await holds('none', 'less', 1n)], [true, true, true, true]);
      const view = feeder.machine.openSnapshotView();
      const restored = await restoreView(view, newLevel(backend));
      assert.deepEqual(await leases(restored), [ETCD_LEASE, LEASE_MAX, 0n]);
      assert.ok(digestRootsEqual(restored.stateDigest().digest, feeder.machine.stateDigest().digest));
      await restored.close();
      await reopen(feeder, db);
      assert.deepEqual(await leases(feeder.machine), [ETCD_LEASE, LEASE_MAX, 0n]);
      await feeder.machine.close();
    });

    test('restore() without a mirror state makes a writable store', async () => {
      const restored = await KvStateMachine.restore(newLevel(backend), {
        appliedIndex: 5,
        appliedTerm: 1,
        revision: 4,
        records: (async function* () {})(),
        keyCount: 0,
        digest: undefined,
        mirror: undefined,
      });
      assert.equal(restored.mirrorState(), undefined);
      const feeder = new Feeder(restored);
      for (let index = 1; index <= 5; index += 1) feeder.entry(put('skipped', 'x'));
      assert.equal(((await feeder.run(put('a', '1'))) as Extract<KvResponse, { type: 'put' }>).revision, 5);
      await restored.close();
    });
  });
}

describe('mirror mode across replicas', () => {
  // A sequence with every kind of outcome: accepted mirror requests, conflicts, read-only
  // refusals, reads, and client writes after the end.
  const SCRIPT: KvRequest[][] = [
    [put('before', '0'), begin('s0')],
    [begin('s0', false), mirrorApply('s0', 's1', 20, [mirrorPut('a', '1', 5, 18, 3, ETCD_LEASE), mirrorPut('b', '2', 20, 20, 1)], ['before'])],
    [put('c', '3'), mirrorApply('s0', 's1', 20, []), { type: 'range', key: bytes('a') }, { type: 'deleteRange', key: bytes('b') }],
    [mirrorApply('s1', 's2', 19, []), mirrorApply('s1', 's2', 25, [mirrorPut('c', '3', 25, 25, 1)], ['a'])],
    [end('s1'), end('s2'), put('d', '4'), { type: 'txn', compare: [], success: [put('e', '5')], failure: [] }],
  ];

  test('replicas fed the same entries give the same results, the same data and equal digests (memory-level and LevelDB)', async () => {
    const replicas = [new Feeder(await KvStateMachine.open(newLevel('memory-level'))), new Feeder(await KvStateMachine.open(newLevel('LevelDB')))];
    const outcomes: string[][] = replicas.map(() => []);
    for (const batch of SCRIPT) {
      for (const [i, replica] of replicas.entries()) {
        const results = await replica.apply(batch);
        (outcomes[i] as string[]).push(...results.map((result) => result.error?.code ?? `${result.response?.type}@${result.response?.revision}`));
      }
    }
    assert.deepEqual(outcomes[0], outcomes[1]);
    assert.deepEqual(outcomes[0], [
      // Not empty: refused; then without requireEmpty.
      'put@2', ErrorCode.MIRROR_CONFLICT,
      'mirrorBegin@2', 'mirrorApply@20',
      ErrorCode.MIRROR_READ_ONLY, ErrorCode.MIRROR_CONFLICT, 'range@20', ErrorCode.MIRROR_READ_ONLY,
      ErrorCode.MIRROR_CONFLICT, 'mirrorApply@25',
      ErrorCode.MIRROR_CONFLICT, 'mirrorEnd@25', 'put@26', 'txn@27',
    ]);
    const [first, second] = await Promise.all(replicas.map((replica) => snapshotOf(replica.machine)));
    assert.deepEqual(first, second);
    assert.deepEqual(first?.kvs, ['b=2@20/20/1/0', 'c=3@25/25/1/0', 'd=4@26/26/1/0', 'e=5@27/27/1/0']);
    for (const replica of replicas) await replica.machine.close();
  });

  test('the digest covers the copied counters: one version apart, the digests differ', async () => {
    const digestAfter = async (version: number): Promise<Uint8Array> => {
      const feeder = new Feeder(await KvStateMachine.open(newLevel('memory-level')));
      await feeder.run(begin('s0'));
      await feeder.run(mirrorApply('s0', 's1', 9, [mirrorPut('k', 'v', 2, 9, version)]));
      const digest = feeder.machine.stateDigest().digest.full;
      await feeder.machine.close();
      return digest;
    };
    assert.deepEqual(await digestAfter(3), await digestAfter(3));
    assert.notDeepEqual(await digestAfter(3), await digestAfter(4));
  });

  test('the digest covers the lease id exactly: equal on two replicas (memory-level and LevelDB), different from lease 0 and from the next id', async () => {
    const digestAfter = async (backend: Backend, lease: bigint): Promise<string> => {
      const feeder = new Feeder(await KvStateMachine.open(newLevel(backend)));
      await feeder.run(begin('s0'));
      await feeder.run(mirrorApply('s0', 's1', 9, [mirrorPut('k', 'v', 2, 9, 3, lease)]));
      const digest = Buffer.from(feeder.machine.stateDigest().digest.full).toString('hex');
      await feeder.machine.close();
      return digest;
    };
    for (const lease of [ETCD_LEASE, LEASE_MAX]) {
      const onMemory = await digestAfter('memory-level', lease);
      assert.equal(await digestAfter('LevelDB', lease), onMemory, `lease ${lease}: two replicas`);
      assert.notEqual(await digestAfter('memory-level', 0n), onMemory, `lease ${lease}: lease 0`);
      assert.notEqual(await digestAfter('memory-level', lease - 1n), onMemory, `lease ${lease}: its neighbour`);
    }
  });
});

describe('mirror mode and the write-behind', () => {
  // Every LevelDB image the write-behind leaves (one per batch written, as a crash could keep
  // any of them) holds the mirror state and the data of one applied index: reopened, it is
  // exactly the state a model replica had at that index.
  test('every LevelDB image holds the mirror state with the data and META of the same applied index', async () => {
    const db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    const images: MemoryLevel<Uint8Array, Uint8Array>[] = [];
    const realBatch = db.batch.bind(db) as (...args: unknown[]) => Promise<void>;
    let held: (() => void)[] = [];
    // Each batch waits until the test lets it land, so that applies pile up behind it (group commit).
    (db as unknown as { batch: (...args: unknown[]) => Promise<void> }).batch = async (...args: unknown[]) => {
      await new Promise<void>((resolve) => held.push(resolve));
      await realBatch(...args);
      images.push(await copyLevel(db));
    };
    const releaseAll = async (): Promise<void> => {
      for (let round = 0; round < 8; round += 1) {
        const waiting = held;
        held = [];
        for (const release of waiting) release();
        for (let turn = 0; turn < 4; turn += 1) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    };
    const feeder = new Feeder(await KvStateMachine.open(db as unknown as KvLevel));
    const model = new Feeder(await KvStateMachine.open(newLevel('memory-level')));
    const expected = new Map<number, Awaited<ReturnType<typeof snapshotOf>>>([[0, await snapshotOf(model.machine)]]);
    const batches: KvRequest[][] = [
      [put('a', '1')],
      [begin('s0', false)],
      [mirrorApply('s0', 's1', 10, [mirrorPut('a', '2', 2, 9, 2), mirrorPut('b', '1', 10, 10, 1)])],
      [mirrorApply('s1', 's2', 12, [mirrorPut('c', '1', 12, 12, 1)], ['b']), put('refused', '1')],
      [end('s2')],
      [put('d', '1')],
    ];
    for (const [i, batch] of batches.entries()) {
      await feeder.apply(batch);
      for (const result of await model.apply(batch)) assert.ok(result.index > 0);
      expected.set(model.machine.appliedIndex(), await snapshotOf(model.machine));
      // Let the writes land only now and then: several applies ride one batch.
      if (i % 2 === 1) await releaseAll();
    }
    await releaseAll();
    await feeder.machine.whenWritten();
    assert.ok(images.length >= 3, `${images.length} images`);
    const seen = new Set<number>();
    for (const image of images) {
      const meta = decodeMetaState((await image.get(META_KEY)) as Uint8Array);
      const reopened = await KvStateMachine.open(image as unknown as KvLevel);
      assert.equal(reopened.appliedIndex(), meta.appliedIndex);
      assert.deepEqual(await snapshotOf(reopened), expected.get(meta.appliedIndex), `the image at index ${meta.appliedIndex}`);
      // The driver replays the log after it: the image comes back to the same end state.
      await reopened.apply(feeder.entries);
      assert.deepEqual(await snapshotOf(reopened), await snapshotOf(feeder.machine));
      seen.add(meta.appliedIndex);
      await reopened.close();
    }
    assert.ok([...seen].some((index) => expected.get(index)?.mirror !== undefined), 'some image holds a mirror state');
    await feeder.machine.close();
    await model.machine.close();
  });

  test('a stored mirror state that fails its CRC is CORRUPTION at open', async () => {
    const db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
    const feeder = new Feeder(await KvStateMachine.open(db as unknown as KvLevel));
    await feeder.run(begin('s0'));
    await feeder.machine.close();
    await db.open();
    const stored = (await db.get(MIRROR_KEY)) as Uint8Array;
    const damaged = stored.slice();
    damaged[damaged.byteLength - 1] = (damaged[damaged.byteLength - 1] as number) ^ 1;
    await db.put(MIRROR_KEY, damaged);
    await db.close();
    await assert.rejects(KvStateMachine.open(db as unknown as KvLevel), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
  });
});

async function copyLevel(source: MemoryLevel<Uint8Array, Uint8Array>): Promise<MemoryLevel<Uint8Array, Uint8Array>> {
  const copy = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
  await copy.open();
  const pairs = await source.iterator().all();
  if (pairs.length > 0) await copy.batch(pairs.map(([key, value]) => ({ type: 'put' as const, key, value })));
  return copy;
}

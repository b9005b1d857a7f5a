// The state digest (src/storage/state-digest.ts) and the checks built on it
// (kv-digest-check.ts): the sums are order-independent and exact; apply() keeps them equal
// to a digest computed from the data; a checkpoint entry reports the digest exactly at its
// index; and open() refuses data that is not what was applied — a value rewritten through
// LevelDB with valid checksums, a batch missing between two others, a byte flipped in
// LevelDB's own log and in a table file — naming the check and, where it can, the key.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { MemoryLevel } from 'memory-level';
import type { Entry } from '../../src/raft/types.ts';
import { CHECKPOINT_FORMAT, encodeKvCommand } from '../../src/storage/kv-command-codec.ts';
import { META_KEY, decodeMetaState, digestLeafKey, encodeStoredValue, hashIndexKey, storageKey } from '../../src/storage/kv-keys.ts';
import type { KvLevel, KvSnapshotRecord } from '../../src/storage/kv-state-machine.ts';
import { KvStateMachine } from '../../src/storage/kv-state-machine.ts';
import type { KvRequest } from '../../src/storage/kv-types.ts';
import { DigestSums, EMPTY_DIGEST_ROOT, FANOUT, LEAF_COUNT, TREE_DEPTH, digestRootsEqual, keyDigestOf, keyHashesOf, keyHashesOfReference, leafOf } from '../../src/storage/state-digest.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
const root = mkdtempSync(path.join(tmpdir(), 'stratakv-digest-'));
after(() => rmSync(root, { recursive: true, force: true }));
let databases = 0;
const newLocation = (): string => path.join(root, `db-${(databases += 1)}`);
const classic = (location: string): KvLevel => new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view' });
const memory = (): KvLevel => new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });

class Feeder {
  index = 0;
  readonly machine: KvStateMachine;
  constructor(machine: KvStateMachine) {
    this.machine = machine;
  }
  async apply(requests: readonly (KvRequest | 'checkpoint')[]) {
    const entries: Entry[] = requests.map((request) => {
      this.index += 1;
      const data = request === 'checkpoint' ? Uint8Array.of(CHECKPOINT_FORMAT, 1, 2, 3) : encodeKvCommand({ id: this.index, request });
      return { index: this.index, term: 2, type: 0, data };
    });
    return this.machine.apply(entries);
  }
}

const put = (key: string, value: string): KvRequest => ({ type: 'put', key: bytes(key), value: bytes(value) });
const del = (key: string, rangeEnd?: string): KvRequest => ({ type: 'deleteRange', key: bytes(key), ...(rangeEnd === undefined ? {} : { rangeEnd: bytes(rangeEnd) }) });

// randomRequests makes a seeded mix of puts, overwrites, deletes and range deletes over few keys.
function randomRequests(random: SeededRandom, count: number): KvRequest[] {
  const requests: KvRequest[] = [];
  for (let i = 0; i < count; i += 1) {
    const key = `key-${random.intBelow(40)}`;
    const roll = random.intBelow(10);
    if (roll < 7) requests.push(put(key, `v${random.intBelow(1_000_000)}`.repeat((1 + random.intBelow(20 - 1)))));
    else if (roll < 9) requests.push(del(key));
    else requests.push(del(`key-${random.intBelow(20)}`, `key-${(20 + random.intBelow(40 - 20))}`));
  }
  return requests;
}

// digestFromData computes the root from what a full read of the state returns.
async function digestFromData(machine: KvStateMachine) {
  const sums = new DigestSums();
  const view = machine.openSnapshotView();
  for await (const batch of view.records()) {
    for (const record of batch) {
      const { decodeStoredValue } = await import('../../src/storage/kv-keys.ts');
      const stored = decodeStoredValue(record.value);
      sums.add(leafOf(record.key), keyHashesOf(record.key, stored.value, stored), 1);
    }
  }
  return sums.root();
}

async function expectCorruption(promise: Promise<unknown>, check: string): Promise<Error & { details?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isStrataError(error, ErrorCode.CORRUPTION), `expected CORRUPTION, got ${String(error)}`);
    assert.equal((error.details as Record<string, unknown> | undefined)?.['check'], check, `expected check ${check}: ${error.message}`);
    return error as Error & { details?: Record<string, unknown> };
  }
  assert.fail(`expected CORRUPTION (${check}), but it succeeded`);
}

describe('digest sums', () => {
  test('order-independent, and adding then removing returns to the start', () => {
    const random = new SeededRandom(seed);
    const keys = Array.from({ length: 200 }, (_, i) => ({ key: bytes(`k${i}`), value: bytes(`value ${random.intBelow(1e9)}`) }));
    const hashes = keys.map(({ key, value }) => ({ leaf: leafOf(key), hashes: keyHashesOf(key, value, { createRevision: 2, modRevision: 3, version: 1, lease: 0n }) }));
    const forward = new DigestSums();
    for (const { leaf, hashes: h } of hashes) forward.add(leaf, h, 1);
    const backward = new DigestSums();
    for (const { leaf, hashes: h } of [...hashes].reverse()) backward.add(leaf, h, 1);
    assert.ok(digestRootsEqual(forward.root(), backward.root()), `seed ${seed}`);
    assert.ok(digestRootsEqual(forward.root(), forward.leavesRoot()));
    for (const { leaf, hashes: h } of hashes) forward.add(leaf, h, -1);
    assert.ok(digestRootsEqual(forward.root(), EMPTY_DIGEST_ROOT));
    // Counting a key twice does not cancel out (sums, not XOR).
    const twice = new DigestSums();
    const first = hashes[0];
    assert.ok(first !== undefined);
    twice.add(first.leaf, first.hashes, 1);
    twice.add(first.leaf, first.hashes, 1);
    assert.ok(!digestRootsEqual(twice.root(), EMPTY_DIGEST_ROOT));
  });

  test('the addon computes exactly the JavaScript definition of the hashes and the leaf', () => {
    const random = new SeededRandom(seed);
    for (let i = 0; i < 300; i += 1) {
      const key = Uint8Array.from({ length: 1 + random.intBelow(40) }, () => random.intBelow(256));
      const value = Uint8Array.from({ length: random.intBelow(3000) }, () => random.intBelow(256));
      // Leases: none, small, and etcd's (member id in the top bits), up to the largest u64.
      const leases = [0n, 1n, 2156839707291722977n, 2n ** 63n - 1n, 2n ** 64n - 1n, BigInt(random.intBelow(2 ** 31)) * BigInt(random.intBelow(2 ** 31) + 1)];
      const counters = { createRevision: 1 + random.intBelow(1e9), modRevision: 2 ** 40 + random.intBelow(1e9), version: random.intBelow(1e6), lease: leases[random.intBelow(leases.length)] ?? 0n };
      const native = keyDigestOf(key, value, counters);
      const reference = keyHashesOfReference(key, value, counters);
      assert.deepEqual([Buffer.from(native.hashes.full).toString('hex'), Buffer.from(native.hashes.content).toString('hex')], [Buffer.from(reference.full).toString('hex'), Buffer.from(reference.content).toString('hex')], `seed ${seed}`);
      assert.equal(native.leaf, leafOf(key));
    }
  });

  test('the hashes of lease 0 and of small leases are byte-identical to those computed when the lease was a number', () => {
    // Computed before the lease became a bigint (a u64 LE then as now): stored digests and
    // snapshots made before stay valid. So are the stored values' bytes.
    const key = bytes('golden/key');
    const value = bytes('golden value');
    const golden: [bigint, string, string][] = [
      [0n, '5a1f6f4305b36b8a0fa8f812a3a716ef', '02eac0bb4a5a1f6f4305b36b8a0fa8f812a3a716ef8be0234a68477ae915b0467f1e4ae3340300000000000000110000000000000002000000000000000000000000000000676f6c64656e2076616c7565'],
      [1n, '73a2552c880e349c856a18bb50954041', '02aff5089173a2552c880e349c856a18bb509540418be0234a68477ae915b0467f1e4ae3340300000000000000110000000000000002000000000000000100000000000000676f6c64656e2076616c7565'],
      [127n, '8aa40b34e5d26ec49749f1cb383a8ea0', '022678e8688aa40b34e5d26ec49749f1cb383a8ea08be0234a68477ae915b0467f1e4ae3340300000000000000110000000000000002000000000000007f00000000000000676f6c64656e2076616c7565'],
      [2n ** 32n + 5n, '6dd8173adc96364e9592d7d22ae3c6b3', '0227b625016dd8173adc96364e9592d7d22ae3c6b38be0234a68477ae915b0467f1e4ae3340300000000000000110000000000000002000000000000000500000001000000676f6c64656e2076616c7565'],
      [2n ** 53n - 1n, '1cd25dc48b64fe2f8f8892745d98e12b', '02268084f31cd25dc48b64fe2f8f8892745d98e12b8be0234a68477ae915b0467f1e4ae334030000000000000011000000000000000200000000000000ffffffffffff1f00676f6c64656e2076616c7565'],
    ];
    for (const [lease, full, stored] of golden) {
      const counters = { createRevision: 3, modRevision: 17, version: 2, lease };
      const native = keyDigestOf(key, value, counters);
      assert.equal(Buffer.from(native.hashes.full).toString('hex'), full, `lease ${lease}: the addon`);
      assert.equal(Buffer.from(native.hashes.content).toString('hex'), '8be0234a68477ae915b0467f1e4ae334');
      assert.equal(native.leaf, 57007);
      assert.equal(Buffer.from(keyHashesOfReference(key, value, counters).full).toString('hex'), full, `lease ${lease}: the reference`);
      assert.equal(Buffer.from(encodeStoredValue(key, { ...counters, value })).toString('hex'), stored, `lease ${lease}: the stored value`);
    }
  });

  test("an etcd lease id beyond 2^53 is hashed exactly: it differs from lease 0 and from its neighbours", () => {
    const key = bytes('k');
    const value = bytes('v');
    const full = (lease: bigint): string => Buffer.from(keyHashesOf(key, value, { createRevision: 2, modRevision: 3, version: 1, lease }).full).toString('hex');
    const etcd = 2156839707291722977n;
    const seen = new Set([full(0n), full(etcd), full(etcd - 1n), full(etcd + 1n), full(2n ** 63n - 1n), full(2n ** 63n - 2n)]);
    assert.equal(seen.size, 6, 'six leases, six hashes (a double would merge neighbours beyond 2^53)');
    assert.equal(full(etcd), Buffer.from(keyHashesOfReference(key, value, { createRevision: 2, modRevision: 3, version: 1, lease: etcd }).full).toString('hex'));
  });

  test('the full hash covers the revisions, the content hash does not', () => {
    const key = bytes('k');
    const value = bytes('v');
    const a = keyHashesOf(key, value, { createRevision: 2, modRevision: 3, version: 1, lease: 0n });
    const b = keyHashesOf(key, value, { createRevision: 2, modRevision: 4, version: 1, lease: 0n });
    assert.notDeepEqual(a.full, b.full);
    assert.deepEqual(a.content, b.content);
    assert.notDeepEqual(keyHashesOf(key, bytes('w'), { createRevision: 2, modRevision: 3, version: 1, lease: 0n }).content, a.content);
  });

  test('each inner node is the sum of its children, down to the leaves', () => {
    const sums = new DigestSums();
    for (let i = 0; i < 500; i += 1) sums.add(leafOf(bytes(`k${i}`)), keyHashesOf(bytes(`k${i}`), bytes('v'), { createRevision: i + 2, modRevision: i + 2, version: 1, lease: 0n }), 1);
    assert.equal(FANOUT ** TREE_DEPTH, LEAF_COUNT);
    const top = sums.children(1, 0, 'full');
    const total = new DigestSums();
    // The sum of the root's children is the root: add them as if they were keys of leaf 0.
    for (const child of top) total.add(0, { full: child, content: new Uint8Array(16) }, 1);
    assert.deepEqual(total.root().full, sums.root().full);
    // A node of level 3 against its 16 leaves.
    const leafSums = sums.children(TREE_DEPTH, 5, 'content');
    for (let child = 0; child < FANOUT; child += 1) assert.deepEqual(leafSums[child], sums.leaf(5 * FANOUT + child).content);
  });
});

describe('the state machine keeps its digest', () => {
  for (const backend of ['memory-level', 'classic-level'] as const) {
    test(`apply keeps the digest equal to the data's, however the writes are batched (${backend}, seeded)`, async () => {
      const random = new SeededRandom(seed);
      const requests = randomRequests(random, 400);
      const one = new Feeder(await KvStateMachine.open(backend === 'memory-level' ? memory() : classic(newLocation())));
      const other = new Feeder(await KvStateMachine.open(memory()));
      for (let start = 0; start < requests.length; start += 50) await one.apply(requests.slice(start, start + 50));
      for (const request of requests) await other.apply([request]);
      const digest = one.machine.stateDigest().digest;
      assert.ok(digestRootsEqual(digest, other.machine.stateDigest().digest), `seed ${seed}`);
      assert.ok(digestRootsEqual(digest, await digestFromData(one.machine)), `seed ${seed}: digest equals the data's`);
      await one.machine.close();
      await other.machine.close();
    });
  }

  test('a checkpoint entry reports the digest exactly at its index, in the middle of a batch', async () => {
    const feeder = new Feeder(await KvStateMachine.open(memory()));
    const results = await feeder.apply([put('a', '1'), put('b', '2'), 'checkpoint', put('a', '3'), del('b')]);
    const checkpoint = results.find((result) => result.checkpoint !== undefined)?.checkpoint;
    assert.ok(checkpoint !== undefined);
    assert.equal(checkpoint.appliedIndex, 3);
    assert.equal(checkpoint.revision, 3);
    const reference = new Feeder(await KvStateMachine.open(memory()));
    await reference.apply([put('a', '1'), put('b', '2')]);
    assert.ok(digestRootsEqual(checkpoint.digest, reference.machine.stateDigest().digest));
    assert.equal(checkpoint.digest.keyCount, 2);
    assert.ok(!digestRootsEqual(checkpoint.digest, feeder.machine.stateDigest().digest), 'the batch went on after the checkpoint');
    assert.equal(feeder.machine.stateDigest().digest.keyCount, 1);
  });

  test('two clusters with the same data have equal content roots and different full roots', async () => {
    const one = new Feeder(await KvStateMachine.open(memory()));
    const other = new Feeder(await KvStateMachine.open(memory()));
    await one.apply([put('a', '1'), put('b', '2')]);
    await other.apply([put('x', '0'), del('x'), put('b', '2'), put('a', '1')]);
    const a = one.machine.stateDigest().digest;
    const b = other.machine.stateDigest().digest;
    assert.ok(digestRootsEqual(a, b, 'content'));
    assert.ok(!digestRootsEqual(a, b, 'full'));
  });

  test('restore rebuilds the digest and refuses records that do not sum to the snapshot\'s', async () => {
    const feeder = new Feeder(await KvStateMachine.open(memory()));
    await feeder.apply(randomRequests(new SeededRandom(seed), 100));
    const view = feeder.machine.openSnapshotView();
    const records: KvSnapshotRecord[] = [];
    for await (const batch of view.records()) records.push(...batch);
    async function* once(list: KvSnapshotRecord[]) {
      yield list;
    }
    const content = { appliedIndex: view.appliedIndex, appliedTerm: view.appliedTerm, revision: view.revision, keyCount: records.length, mirror: undefined };
    const restored = await KvStateMachine.restore(memory(), { ...content, records: once(records), digest: view.digest });
    assert.ok(digestRootsEqual(restored.stateDigest().digest, view.digest));
    await restored.close();
    // One record's value changed, re-encoded validly: the count and order hold, the digest does not.
    const first = records[0];
    assert.ok(first !== undefined);
    const tampered = [{ key: first.key, value: encodeStoredValue(first.key, { createRevision: 2, modRevision: 2, version: 1, lease: 0n, value: bytes('changed') }) }, ...records.slice(1)];
    await assert.rejects(KvStateMachine.restore(memory(), { ...content, records: once(tampered), digest: view.digest }), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
    await feeder.machine.close();
  });
});

describe('open() refuses data that is not what was applied', () => {
  // build writes `batches` batches of puts on LevelDB and closes it; each batch lands before the next.
  async function build(location: string, batches: number, valueBytes = 64): Promise<void> {
    const feeder = new Feeder(await KvStateMachine.open(classic(location)));
    const random = new SeededRandom(seed);
    for (let batch = 0; batch < batches; batch += 1) {
      const requests: KvRequest[] = [];
      for (let i = 0; i < 4; i += 1) requests.push(put(`key-${batch}-${i}`, `${random.intBelow(1e9)}`.padEnd(valueBytes, 'x')));
      await feeder.apply(requests);
      await feeder.machine.whenWritten();
    }
    await feeder.machine.close();
  }

  test('a clean reopen verifies every key', async () => {
    const location = newLocation();
    await build(location, 20);
    const machine = await KvStateMachine.open(classic(location));
    assert.equal(machine.openVerification()?.keys, 80);
    await machine.close();
  });

  test('a value rewritten through LevelDB with valid checksums: data-vs-leaves, naming the key', async () => {
    const location = newLocation();
    await build(location, 10);
    const db = classic(location);
    await db.open();
    await db.put(storageKey(bytes('key-3-2')), encodeStoredValue(bytes('key-3-2'), { createRevision: 5, modRevision: 5, version: 1, lease: 0n, value: bytes('rewritten') }));
    await db.close();
    const error = await expectCorruption(KvStateMachine.open(classic(location)), 'data-vs-leaves');
    assert.match(error.message, /key-3-2.*value differs from its recorded hash/);
    // Without the check at open it opens (the check is what refuses it).
    const unchecked = await KvStateMachine.open(classic(location), { verifyAtOpen: false });
    await unchecked.close();
  });

  test('a batch missing between two others (its keys, index entries and leaves): leaves-vs-root', async () => {
    const location = newLocation();
    const feeder = new Feeder(await KvStateMachine.open(classic(location)));
    await feeder.apply([put('first', '1')]);
    await feeder.machine.whenWritten();
    const db = (feeder.machine as unknown as { db: KvLevel }).db;
    const leaf = leafOf(bytes('middle'));
    const leafBefore = await db.get(digestLeafKey(leaf));
    await feeder.apply([put('middle', '2')]);
    await feeder.machine.whenWritten();
    // A later batch that does not touch the middle key's leaf.
    let later = 'later';
    for (let i = 0; leafOf(bytes(later)) === leaf; i += 1) later = `later-${i}`;
    await feeder.apply([put(later, '3')]);
    await feeder.machine.close();
    // Undo exactly what the middle batch wrote (and the later one did not rewrite), as LevelDB
    // does when it skips a corrupt block of its log on recovery.
    const raw = classic(location);
    await raw.open();
    await raw.batch([
      { type: 'del', key: storageKey(bytes('middle')) },
      { type: 'del', key: hashIndexKey(leaf, bytes('middle')) },
      leafBefore === undefined ? { type: 'del', key: digestLeafKey(leaf) } : { type: 'put', key: digestLeafKey(leaf), value: leafBefore },
    ]);
    const meta = decodeMetaState((await raw.get(META_KEY)) as Uint8Array);
    assert.equal(meta.appliedIndex, 3, 'the applied index still says 3');
    await raw.close();
    await expectCorruption(KvStateMachine.open(classic(location), { verifyAtOpen: false }), 'leaves-vs-root');
  });

  test('a byte flipped in the middle of LevelDB\'s own log: open refuses (LevelDB alone would drop the block and serve the rest)', async () => {
    const location = newLocation();
    // About 200 KiB of batches, below LevelDB's 4 MiB write buffer: all of it stays in its .log.
    await build(location, 200, 256);
    const logs = readdirSync(location).filter((name) => name.endsWith('.log'));
    const log = logs.map((name) => path.join(location, name)).sort((a, b) => statSync(b).size - statSync(a).size)[0];
    assert.ok(log !== undefined && statSync(log).size > 100_000, `LevelDB's log holds the batches (${logs.join(', ')})`);
    const content = readFileSync(log);
    const offset = Math.floor(content.byteLength / 2);
    content[offset] = (content[offset] as number) ^ 0x40;
    writeFileSync(log, content);
    const error = await expectCorruption(KvStateMachine.open(classic(location)), 'leaves-vs-root').catch(async () =>
      expectCorruption(KvStateMachine.open(classic(location)), 'data-vs-leaves'),
    );
    assert.match(error.message, /state machine integrity/);
  });

  test('a byte flipped in a LevelDB table file: open refuses', async () => {
    const location = newLocation();
    await build(location, 300, 512);
    // A reopen turns LevelDB's log into a table file.
    const again = await KvStateMachine.open(classic(location));
    await again.close();
    const tables = readdirSync(location).filter((name) => name.endsWith('.ldb'));
    assert.ok(tables.length > 0, 'LevelDB wrote a table');
    const table = tables.map((name) => path.join(location, name)).sort((a, b) => statSync(b).size - statSync(a).size)[0] as string;
    const content = readFileSync(table);
    // 64 bytes, not one: a single byte may land in a block's CRC, which LevelDB does not check
    // on reads (verify_checksums is off) and which leaves the data right.
    const offset = Math.floor(content.byteLength / 3);
    for (let i = 0; i < 64; i += 1) content[offset + i] = (content[offset + i] as number) ^ 0x01;
    writeFileSync(table, content);
    try {
      const machine = await KvStateMachine.open(classic(location));
      await machine.close();
      assert.fail('open accepted a damaged table');
    } catch (error) {
      assert.ok(isStrataError(error, ErrorCode.CORRUPTION), `expected CORRUPTION, got ${String(error)}`);
      assert.ok(['read-failed', 'data-vs-leaves', 'malformed', 'index-vs-leaves', 'leaves-vs-root'].includes(String(error.details?.['check'])), String(error.details?.['check']));
    }
  });

  test('a database written before the digest gets one built at open, equal to the applied one', async () => {
    const location = newLocation();
    const feeder = new Feeder(await KvStateMachine.open(classic(location)));
    await feeder.apply(randomRequests(new SeededRandom(seed), 200));
    const expected = feeder.machine.stateDigest().digest;
    await feeder.machine.close();
    // Turn it into the old layout: no index, no leaves, META in format 1.
    const raw = classic(location);
    await raw.open();
    const old: { type: 'del'; key: Uint8Array }[] = [];
    for await (const key of raw.keys({ gte: Uint8Array.of(0x64), lt: Uint8Array.of(0x69) })) old.push({ type: 'del', key: key as Uint8Array });
    const meta = decodeMetaState((await raw.get(META_KEY)) as Uint8Array);
    const v1 = new Uint8Array(25);
    const view = new DataView(v1.buffer);
    v1[0] = 1;
    view.setUint32(1, meta.appliedIndex, true);
    view.setUint32(9, meta.appliedTerm, true);
    view.setUint32(17, meta.revision, true);
    await raw.batch([...old, { type: 'put', key: META_KEY, value: v1 }]);
    await raw.close();
    const upgraded = await KvStateMachine.open(classic(location));
    assert.ok(digestRootsEqual(upgraded.stateDigest().digest, expected), `seed ${seed}`);
    await upgraded.close();
    const checked = await KvStateMachine.open(classic(location));
    assert.ok(digestRootsEqual(checked.stateDigest().digest, expected));
    await checked.close();
  });

  test('a snapshot view of data changed below the state machine fails at its end', async () => {
    const location = newLocation();
    const feeder = new Feeder(await KvStateMachine.open(classic(location)));
    await feeder.apply([put('a', '1'), put('b', '2'), put('c', '3')]);
    await feeder.machine.whenWritten();
    const db = (feeder.machine as unknown as { db: KvLevel }).db;
    await db.put(storageKey(bytes('b')), encodeStoredValue(bytes('b'), { createRevision: 3, modRevision: 3, version: 1, lease: 0n, value: bytes('X') }));
    const view = feeder.machine.openSnapshotView();
    await assert.rejects(
      (async () => {
        for await (const batch of view.records()) assert.ok(batch.length > 0);
      })(),
      (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION) && /not what it applied/.test(error.message),
    );
    await feeder.machine.close();
  });
});

describe('digest views', () => {
  for (const backend of ['memory-level', 'classic-level'] as const) {
    test(`a view pins the sums, the index and the values while apply goes on (${backend})`, async () => {
      const feeder = new Feeder(await KvStateMachine.open(backend === 'memory-level' ? memory() : classic(newLocation())));
      await feeder.apply([put('a', '1'), put('b', '2'), put('c', '3')]);
      await feeder.machine.whenWritten();
      await feeder.apply([put('b', '22'), del('c'), put('d', '4')]); // pending, perhaps not in LevelDB yet
      const view = feeder.machine.openDigestView();
      const pinned = feeder.machine.stateDigest().digest;
      await feeder.apply([put('a', 'changed'), del('d'), put('e', '5')]);
      await feeder.machine.whenWritten();
      assert.ok(digestRootsEqual(view.sums.root(), pinned));
      const keys = await view.leafKeys(0, LEAF_COUNT);
      assert.deepEqual(keys.map((item) => new TextDecoder().decode(item.key)).sort(), ['a', 'b', 'd']);
      for (const item of keys) assert.equal(item.leaf, leafOf(item.key));
      // The recorded hashes sum to the pinned leaves.
      const sums = new DigestSums();
      for (const item of keys) sums.add(item.leaf, item.hashes, 1);
      assert.ok(digestRootsEqual(sums.root(), pinned));
      const b = await view.get(bytes('b'));
      assert.equal(new TextDecoder().decode(b?.value), '22');
      assert.equal(new TextDecoder().decode((await view.get(bytes('a')))?.value), '1');
      assert.equal(await view.get(bytes('c')), undefined);
      assert.equal(await view.get(bytes('e')), undefined);
      const leafOfB = leafOf(bytes('b'));
      assert.deepEqual((await view.leafKeys(leafOfB, leafOfB + 1)).map((item) => new TextDecoder().decode(item.key)), ['b']);
      await view.close();
      await feeder.machine.close();
    });
  }
});

test('a digest view sums a range of keys at its index (the tree of a diff restricted to a prefix)', async () => {
  const feeder = new Feeder(await KvStateMachine.open(classic(newLocation())));
  await feeder.apply([put('app/a', '1'), put('app/b', '2'), put('other', '3')]);
  await feeder.machine.whenWritten();
  await feeder.apply([put('app/c', '4'), del('app/a')]);
  const view = feeder.machine.openDigestView();
  await feeder.apply([put('app/d', 'later')]);
  const sums = await view.rangeSums(bytes('app/'), bytes('app0'));
  const reference = new Feeder(await KvStateMachine.open(memory()));
  await reference.apply([put('x', '0'), put('x', '1'), put('app/b', '2'), put('app/c', '4')]);
  await reference.apply([del('x')]);
  // Same keys with the same values: equal content roots (the revisions differ).
  assert.ok(digestRootsEqual(sums.root(), reference.machine.stateDigest().digest, 'content'));
  assert.equal(sums.root().keyCount, 2);
  assert.equal((await view.rangeSums(bytes('other'), new Uint8Array(0))).root().keyCount, 1);
  await view.close();
  await feeder.machine.close();
  await reference.machine.close();
});

test('a state machine that skipped its digest (benchmarks only) is refused by a later open that keeps one', async () => {
  const location = newLocation();
  const feeder = new Feeder(await KvStateMachine.open(classic(location), { unsafeSkipDigest: true }));
  await feeder.apply([put('a', '1'), put('b', '2')]);
  assert.ok(digestRootsEqual(feeder.machine.stateDigest().digest, EMPTY_DIGEST_ROOT), 'no digest kept');
  const view = feeder.machine.openSnapshotView();
  let records = 0;
  for await (const batch of view.records()) records += batch.length;
  assert.equal(records, 2, 'its snapshot views are not checked');
  await feeder.machine.close();
  await expectCorruption(KvStateMachine.open(classic(location)), 'data-vs-leaves');
});

describe('damaged stored values are never served', () => {
  // damage flips a byte of a key's stored value in place, as a decayed block would.
  async function damage(machine: KvStateMachine, key: string): Promise<void> {
    await machine.whenWritten();
    const db = (machine as unknown as { db: KvLevel }).db;
    const bytes = (await db.get(storageKey(bytes_(key)))) as Uint8Array;
    const copy = bytes.slice();
    copy[copy.byteLength - 1] = (copy[copy.byteLength - 1] as number) ^ 0x20;
    await db.put(storageKey(bytes_(key)), copy);
  }
  const bytes_ = bytes;

  test('a read of a value that fails its CRC32c is CORRUPTION, one key or a range', async () => {
    const feeder = new Feeder(await KvStateMachine.open(classic(newLocation())));
    await feeder.apply([put('a', 'alpha'), put('b', 'beta')]);
    await damage(feeder.machine, 'b');
    const refused = (error: unknown): boolean => isStrataError(error, ErrorCode.CORRUPTION) && error.details?.['check'] === 'stored-value-crc';
    await assert.rejects(feeder.machine.range({ type: 'range', key: bytes('b') }), refused);
    await assert.rejects(feeder.machine.range({ type: 'range', key: bytes('a'), rangeEnd: bytes('z') }), refused);
    assert.equal(new TextDecoder().decode((await feeder.machine.range({ type: 'range', key: bytes('a') })).kvs[0]?.value), 'alpha');
    await feeder.machine.close();
  });

  test('an apply that reads a damaged value stops the state machine: outcomes unknown, nothing served, no crash', async () => {
    const corruptions: string[] = [];
    const feeder = new Feeder(await KvStateMachine.open(classic(newLocation()), { onCorrupt: (error) => corruptions.push(error.message) }));
    await feeder.apply([put('a', '1'), put('b', '2')]);
    await damage(feeder.machine, 'b');
    const results = await feeder.apply([put('c', '3'), put('b', '22'), put('d', '4')]);
    assert.deepEqual(results.map((result) => result.error?.code), [ErrorCode.TIMEOUT, ErrorCode.TIMEOUT, ErrorCode.TIMEOUT], 'every outcome of the batch is unknown');
    assert.equal(corruptions.length, 1);
    assert.ok(feeder.machine.corruption() !== undefined);
    assert.equal(feeder.machine.appliedIndex(), 2, 'nothing of the batch was applied');
    const later = await feeder.apply([put('e', '5'), 'checkpoint']);
    assert.deepEqual(later.map((result) => result.error?.code), [ErrorCode.TIMEOUT], 'later commands too; a checkpoint reports nothing');
    await assert.rejects(feeder.machine.range({ type: 'range', key: bytes('a') }), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
    assert.throws(() => feeder.machine.openSnapshotView(), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
    assert.equal(corruptions.length, 1, 'reported once');
    await feeder.machine.close();
  });

  test('a database written before the per-value CRC (format 1 values) is still read', async () => {
    const machine = await KvStateMachine.restore(memory(), {
      appliedIndex: 3,
      appliedTerm: 1,
      revision: 2,
      keyCount: 1,
      digest: undefined,
      mirror: undefined,
      records: (async function* () {
        yield [{ key: bytes('old'), value: Uint8Array.of(1, ...new Uint8Array(8).fill(0).map((_, i) => (i === 0 ? 2 : 0)), ...new Uint8Array(8).map((_, i) => (i === 0 ? 2 : 0)), ...new Uint8Array(8).map((_, i) => (i === 0 ? 1 : 0)), ...new Uint8Array(8), 104, 105) }];
      })(),
    });
    const kv = (await machine.range({ type: 'range', key: bytes('old') })).kvs[0];
    assert.deepEqual([new TextDecoder().decode(kv?.value), kv?.createRevision, kv?.modRevision, kv?.version], ['hi', 2, 2, 1]);
    await machine.close();
  });
});

// mirrorReplay (kv-types.ts: MirrorRequest) and DigestView.range, on LevelDB: a target that
// replays a source's entries' data, in chunks of any size, reaches exactly the source's
// revision after every chunk and, at the end, the same keys with every counter and lease and
// the same state digest — from an empty store, and from a store filled by mirrorApply with the
// pages of a view pinned on the source while the source went on. Also: the compare-and-set
// (nothing done on a mismatch), client writes still refused on the mirror, a mirror request or
// a non-command among the commands refused INVALID_ARGUMENT naming it, the bound on the count,
// a restart and a snapshot round trip keeping state and mirror state, the index a mirror answer
// carries, and why the target's limits must be at least the source's. Seeded: a failing run
// prints its seed; STRATAKV_SEED=<seed> replays it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ClassicLevel } from 'classic-level';
import type { Entry } from '../../src/raft/types.ts';
import { CHECKPOINT_FORMAT, NODE_COMMAND_FORMAT, decodeKvCommand, encodeKvCommand } from '../../src/storage/kv-command-codec.ts';
import type { ApplyResult, DigestView, KvLevel, KvStateMachineOptions } from '../../src/storage/kv-state-machine.ts';
import { DIGEST_VIEW_RANGE_LIMIT_MAX, INITIAL_REVISION, KvStateMachine } from '../../src/storage/kv-state-machine.ts';
import type { Compare, KeyValue, KvRequest, KvResponse, MirrorPut, MirrorResponse, TxnOperation } from '../../src/storage/kv-types.ts';
import { DEFAULT_KV_LIMITS, MIRROR_REPLAY_COMMANDS_MAX } from '../../src/storage/kv-types.ts';
import { encodeValidKvCommand, validateKvRequest } from '../../src/storage/kv-validation.ts';
import { digestRootsEqual } from '../../src/storage/state-digest.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import type { StrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';
import { restoreView } from './restore-view.ts';

const bytes = (value: string): Uint8Array => new Uint8Array(Buffer.from(value, 'latin1'));
const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : Buffer.from(value).toString('latin1'));
const EVERY_KEY = { key: bytes('\0'), rangeEnd: bytes('\0') };
const put = (key: string, value: string, prevKv = false): KvRequest => ({ type: 'put', key: bytes(key), value: bytes(value), ...(prevKv ? { prevKv } : {}) });
const begin = (state: string): KvRequest => ({ type: 'mirrorBegin', state: bytes(state), requireEmpty: true });
const replay = (expectState: string, state: string, commands: readonly Uint8Array[]): KvRequest => ({ type: 'mirrorReplay', expectState: bytes(expectState), state: bytes(state), commands });
// A lease id as etcd grants them: far beyond 2^53.
const ETCD_LEASE = 2156839707291722977n;

const root = mkdtempSync(path.join(tmpdir(), 'stratakv-mirror-replay-'));
after(() => rmSync(root, { recursive: true, force: true }));
let databases = 0;
const newPath = (): string => {
  databases += 1;
  return path.join(root, `db-${databases}`);
};
const openLevel = (location: string): KvLevel => new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view' });

// Machine is a state machine on LevelDB fed consecutive committed entries; it keeps its log.
class Machine {
  readonly entries: Entry[] = [];
  readonly location: string;
  readonly options: KvStateMachineOptions;
  machine!: KvStateMachine;

  private constructor(location: string, options: KvStateMachineOptions) {
    this.location = location;
    this.options = options;
  }

  static async open(options: KvStateMachineOptions = {}): Promise<Machine> {
    const opened = new Machine(newPath(), options);
    opened.machine = await KvStateMachine.open(openLevel(opened.location), options);
    return opened;
  }

  // data is the entry data of a request exactly as a client's proposal carries it (not
  // validated: refused commands are in the log too, and a replay must refuse them again).
  data(request: KvRequest): Uint8Array {
    return encodeKvCommand({ id: this.entries.length + 1, request });
  }

  async apply(datas: readonly Uint8Array[]): Promise<ApplyResult[]> {
    const batch = datas.map((data): Entry => ({ index: this.entries.length + 1, term: 3, type: 0, data }));
    const entries: Entry[] = [];
    for (const [offset, entry] of batch.entries()) entries.push({ ...entry, index: this.entries.length + 1 + offset });
    this.entries.push(...entries);
    return this.machine.apply(entries);
  }

  async run(request: KvRequest): Promise<KvResponse> {
    const [result] = await this.apply([this.data(request)]);
    assert.ok(result !== undefined);
    if (result.error !== undefined) throw result.error;
    assert.ok(result.response !== undefined);
    return result.response;
  }

  async refused(request: KvRequest, code: ErrorCode): Promise<StrataError> {
    const before = await observed(this.machine);
    const [result] = await this.apply([this.data(request)]);
    assert.ok(result?.error !== undefined, `${request.type} was not refused`);
    assert.ok(isStrataError(result.error, code), `${request.type}: ${result.error.code} ${result.error.message}, expected ${code}`);
    assert.deepEqual(await observed(this.machine), before, `${request.type}: a refusal changes nothing`);
    return result.error;
  }

  async reopen(): Promise<void> {
    await this.machine.close();
    this.machine = await KvStateMachine.open(openLevel(this.location), this.options);
  }
}

// Observed is everything a client or a diff can see, but the applied index.
interface Observed {
  readonly kvs: string[];
  readonly revision: number;
  readonly mirror: string | undefined;
  readonly digest: string;
  readonly keyCount: number;
}

const describeKv = (kv: KeyValue): string => `${text(kv.key)}=${text(kv.value)}@${kv.createRevision}/${kv.modRevision}/${kv.version}/${kv.lease}`;

async function observed(machine: KvStateMachine): Promise<Observed> {
  const response = await machine.range({ type: 'range', ...EVERY_KEY });
  const { digest } = machine.stateDigest();
  return {
    kvs: response.kvs.map(describeKv),
    revision: machine.revision(),
    mirror: text(machine.mirrorState()),
    digest: Buffer.from(digest.full).toString('hex'),
    keyCount: digest.keyCount,
  };
}

// ---- the seeded workload ----

const KEYS = Array.from({ length: 12 }, (_, i) => `k${i.toString().padStart(2, '0')}`);

// Workload draws client requests whose outcomes depend on the state: compares that hold and
// that fail, deletes of present and absent keys, and requests the rules refuse at apply.
class Workload {
  private readonly random: SeededRandom;
  private step = 0;

  constructor(random: SeededRandom) {
    this.random = random;
  }

  private key(): string {
    return this.random.pick(KEYS);
  }

  private value(): string {
    this.step += 1;
    return `v${this.step}-${'x'.repeat(this.random.intBelow(40))}`;
  }

  private rangeEnd(key: string): Uint8Array | undefined {
    switch (this.random.intBelow(4)) {
      case 0:
        return undefined;
      case 1:
        return bytes('\0');
      case 2:
        return bytes(`${key.slice(0, 2)}\x7f`);
      default:
        return bytes(this.key());
    }
  }

  private compare(current: ReadonlyMap<string, KeyValue>): Compare {
    const key = this.key();
    const found = current.get(key);
    const result = this.random.pick(['equal', 'notEqual', 'less', 'greater'] as const);
    const near = (value: number): number => Math.max(0, value + this.random.intBelow(3) - 1);
    const over = this.random.chance(1, 5) ? { rangeEnd: bytes(`${key.slice(0, 2)}\x7f`) } : {};
    switch (this.random.intBelow(5)) {
      case 0:
        return { target: 'value', result, key: bytes(key), ...over, value: this.random.chance(2, 3) && found !== undefined ? found.value : bytes(this.value()) };
      case 1:
        return { target: 'version', result, key: bytes(key), ...over, number: near(found?.version ?? 0) };
      case 2:
        return { target: 'createRevision', result, key: bytes(key), ...over, number: near(found?.createRevision ?? 0) };
      case 3:
        return { target: 'modRevision', result, key: bytes(key), ...over, number: near(found?.modRevision ?? 0) };
      default:
        return { target: 'lease', result, key: bytes(key), ...over, lease: this.random.chance(1, 2) ? (found?.lease ?? 0n) : ETCD_LEASE + BigInt(this.random.intBelow(3)) };
    }
  }

  private operation(): TxnOperation {
    switch (this.random.intBelow(3)) {
      case 0:
        return { type: 'put', key: bytes(this.key()), value: bytes(this.value()), ...(this.random.chance(1, 2) ? { prevKv: true } : {}) };
      case 1: {
        const key = this.key();
        const rangeEnd = this.rangeEnd(key);
        return { type: 'deleteRange', key: bytes(key), ...(rangeEnd === undefined ? {} : { rangeEnd }) };
      }
      default:
        return { type: 'range', key: bytes(this.key()), ...(this.random.chance(1, 2) ? { rangeEnd: bytes('\0') } : {}) };
    }
  }

  // next draws a request; `current` is the source's state now (what compares are built from).
  next(current: ReadonlyMap<string, KeyValue>, revision: number): KvRequest {
    const kind = this.random.intBelow(100);
    if (kind < 35) return put(this.key(), this.value(), this.random.chance(1, 3));
    if (kind < 50) {
      const key = this.key();
      const rangeEnd = this.rangeEnd(key);
      return { type: 'deleteRange', key: bytes(key), ...(rangeEnd === undefined ? {} : { rangeEnd }), ...(this.random.chance(1, 2) ? { prevKv: true } : {}) };
    }
    if (kind < 80) {
      const branch = (): TxnOperation[] => {
        // Distinct keys per branch, so that most Txns pass the duplicate-key rule.
        const operations: TxnOperation[] = [];
        const used = new Set<string>();
        for (let i = this.random.intBelow(4); i > 0; i -= 1) {
          const operation = this.operation();
          const name = text(operation.key) ?? '';
          if (operation.type === 'put' && used.has(name)) continue;
          used.add(name);
          operations.push(operation);
        }
        return operations;
      };
      return { type: 'txn', compare: Array.from({ length: this.random.intBelow(3) }, () => this.compare(current)), success: branch(), failure: branch() };
    }
    if (kind < 84) return { type: 'range', key: bytes(this.key()), rangeEnd: bytes('\0'), ...(this.random.chance(1, 2) ? { limit: 2 } : {}) };
    // Refused at apply, on the source and again in a replay: the log holds them all the same.
    switch (this.random.intBelow(6)) {
      case 0:
        return { type: 'put', key: new Uint8Array(0), value: bytes('empty key') };
      case 1:
        return { type: 'txn', compare: [], success: Array.from({ length: DEFAULT_KV_LIMITS.txnOperationsMax + 1 }, (_, i) => put(`many-${i}`, 'x') as TxnOperation), failure: [] };
      case 2:
        return { type: 'txn', compare: [], success: [put('dup', '1') as TxnOperation, put('dup', '2') as TxnOperation], failure: [] };
      case 3:
        // A read at a future revision inside a Txn: FUTURE_REVISION before anything is written.
        return { type: 'txn', compare: [], success: [put(this.key(), this.value()) as TxnOperation, { type: 'range', key: bytes(this.key()), revision: revision + 5 }], failure: [] };
      case 4:
        return { type: 'range', key: bytes(this.key()), revision: Math.max(1, revision - 1) };
      default:
        return { type: 'deleteRange', key: new Uint8Array(0) };
    }
  }
}

async function stateMap(machine: KvStateMachine): Promise<Map<string, KeyValue>> {
  const response = await machine.range({ type: 'range', ...EVERY_KEY });
  return new Map(response.kvs.map((kv) => [text(kv.key) ?? '', kv]));
}

// Outcomes counts what the source's commands did, to check that the workload covers its cases.
interface Outcomes {
  refused: number;
  txnSucceeded: number;
  txnFailed: number;
}

// runSource applies `count` workload commands to `source` in batches of random size; it answers
// each command's data with the source's revision after it.
async function runSource(source: Machine, workload: Workload, random: SeededRandom, count: number, outcomes?: Outcomes): Promise<{ data: Uint8Array; revision: number }[]> {
  const log: { data: Uint8Array; revision: number }[] = [];
  while (log.length < count) {
    const size = Math.min(count - log.length, 1 + random.intBelow(6));
    // Compares are drawn against the state before the batch: later ones in it may fail.
    const current = await stateMap(source.machine);
    const datas = Array.from({ length: size }, () => source.data(workload.next(current, source.machine.revision())));
    let revision = source.machine.revision();
    const results = await source.apply(datas);
    assert.equal(results.length, datas.length);
    for (const [i, result] of results.entries()) {
      // A refusal leaves the revision where it was.
      revision = result.response?.revision ?? revision;
      log.push({ data: datas[i] as Uint8Array, revision });
      if (outcomes === undefined) continue;
      if (result.error !== undefined) outcomes.refused += 1;
      if (result.response?.type === 'txn') {
        if (result.response.succeeded) outcomes.txnSucceeded += 1;
        else outcomes.txnFailed += 1;
      }
    }
    assert.equal(revision, source.machine.revision());
  }
  return log;
}

// replayOnto replays `log` onto `target` (a mirror holding `state`) in chunks of random size,
// checking the revision after every chunk; answers the final mirror state.
async function replayOnto(target: Machine, log: readonly { data: Uint8Array; revision: number }[], random: SeededRandom, state: string): Promise<string> {
  let current = state;
  for (let start = 0; start < log.length; ) {
    const end = Math.min(log.length, start + 1 + random.intBelow(random.chance(1, 5) ? 60 : 8));
    const chunk = log.slice(start, end);
    const next = `replayed-${end}`;
    const [result] = await target.apply([target.data(replay(current, next, chunk.map((item) => item.data)))]);
    assert.ok(result?.response !== undefined, `replay of ${start}..${end}: ${result?.error?.code} ${result?.error?.message}`);
    const response = result.response as MirrorResponse;
    const expected = (chunk[chunk.length - 1] as { revision: number }).revision;
    assert.deepEqual([response.type, response.revision, text(response.state), response.index], ['mirrorReplay', expected, next, result.index], `after entries ${start}..${end}`);
    assert.equal(target.machine.revision(), expected);
    current = next;
    start = end;
  }
  return current;
}

function seeded(name: string, run: (random: SeededRandom) => Promise<void>): void {
  test(name, async () => {
    const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
    try {
      await run(new SeededRandom(seed));
    } catch (error) {
      console.error(`"${name}" failed with seed ${seed}; replay with STRATAKV_SEED=${seed}`);
      throw error;
    }
  });
}

const COMMANDS = 400;

describe('a replay reaches the source exactly', () => {
  seeded('from an empty store: the revision after every chunk, then every key, counter and the digest', async (random) => {
    const source = await Machine.open();
    const outcomes: Outcomes = { refused: 0, txnSucceeded: 0, txnFailed: 0 };
    const log = await runSource(source, new Workload(random), random, COMMANDS, outcomes);
    assert.ok(outcomes.refused > 0 && outcomes.txnSucceeded > 0 && outcomes.txnFailed > 0, `the workload covers refusals and both Txn branches: ${JSON.stringify(outcomes)}`);
    const target = await Machine.open();
    await target.run(begin('begun'));
    const state = await replayOnto(target, log, random, 'begun');
    const [want, got] = [await observed(source.machine), await observed(target.machine)];
    assert.deepEqual({ ...got, mirror: undefined }, { ...want, mirror: undefined });
    assert.equal(got.mirror, state);
    assert.ok(digestRootsEqual(source.machine.stateDigest().digest, target.machine.stateDigest().digest));
    // The workload wrote (refusals and both Txn branches are checked above). The keys left at
    // the end may be none: a seed (81066) whose last DeleteRanges emptied the store.
    assert.ok(want.revision > COMMANDS / 4, `a workload that wrote: ${want.kvs.length} keys, revision ${want.revision}`);
    await source.machine.close();
    await target.machine.close();
  });

  seeded('from the pages of a view pinned on a source that went on (with leases), then the commands after it', async (random) => {
    const workload = new Workload(random);
    const source = await Machine.open();
    // The source holds leases: it was itself a copy of an etcd cluster once.
    await source.run(begin('earlier copy'));
    // Leased keys the workload writes (a Put detaches the lease; lease compares read them), and
    // some it never reaches, kept to the end.
    const leasedKeys = [...KEYS.filter((_, i) => i % 3 === 0), 'a-lease-0', 'a-lease-1'];
    const leased: MirrorPut[] = leasedKeys.map((key, i) => ({ key: bytes(key), value: bytes(`leased-${i}`), createRevision: 3 + i, modRevision: 10 + i, version: 1 + i, lease: ETCD_LEASE + BigInt(i) }));
    await source.run({ type: 'mirrorApply', expectState: bytes('earlier copy'), state: bytes('earlier copy'), revision: 40, puts: leased, deletes: [] });
    await source.run({ type: 'mirrorEnd', expectState: bytes('earlier copy') });
    await runSource(source, workload, random, 150);
    // Pinned right after an apply: part of the view is still in the write-behind's layer.
    const view = source.machine.openDigestView();
    const pinnedRevision = view.revision;
    const target = await Machine.open();
    await target.run(begin('scanning'));
    // The source goes on while the view is scanned in pages of random size.
    const log: { data: Uint8Array; revision: number }[] = [];
    let from = new Uint8Array(0);
    for (let more = true; more; ) {
      log.push(...(await runSource(source, workload, random, random.intBelow(20))));
      const page = await view.range(from, bytes('\0'), 1 + random.intBelow(5));
      more = page.more;
      if (page.kvs.length > 0) {
        await target.run({ type: 'mirrorApply', expectState: bytes('scanning'), state: bytes('scanning'), revision: pinnedRevision, puts: page.kvs, deletes: [] });
        from = Uint8Array.of(...(page.kvs[page.kvs.length - 1] as KeyValue).key, 0);
      }
    }
    await view.close();
    assert.equal(target.machine.revision(), pinnedRevision);
    log.push(...(await runSource(source, workload, random, COMMANDS - log.length)));
    await replayOnto(target, log, random, 'scanning');
    const [want, got] = [await observed(source.machine), await observed(target.machine)];
    assert.deepEqual({ ...got, mirror: undefined }, { ...want, mirror: undefined });
    assert.ok(digestRootsEqual(source.machine.stateDigest().digest, target.machine.stateDigest().digest));
    assert.ok(want.kvs.includes(`a-lease-0=leased-4@7/14/5/${ETCD_LEASE + 4n}`), 'a lease came through the pages exactly');
    await source.machine.close();
    await target.machine.close();
  });
});

describe('mirrorReplay refuses and keeps', () => {
  const sourceCommands = (source: Machine): Uint8Array[] => [source.data(put('a', '1')), source.data(put('b', '2')), source.data({ type: 'deleteRange', key: bytes('a') })];

  test('a wrong expected state, or a store that is not a mirror: MIRROR_CONFLICT, nothing done', async () => {
    const target = await Machine.open();
    const commands = sourceCommands(target);
    await target.refused(replay('', 'x', commands), ErrorCode.MIRROR_CONFLICT);
    await target.run(begin('s1'));
    await target.refused(replay('s0', 's2', commands), ErrorCode.MIRROR_CONFLICT);
    const answer = (await target.run(replay('s1', 's2', commands))) as MirrorResponse;
    assert.deepEqual([answer.revision, text(answer.state)], [INITIAL_REVISION + 3, 's2']);
    // The same replay again (a copier that retried one that landed) is refused.
    await target.refused(replay('s1', 's2', commands), ErrorCode.MIRROR_CONFLICT);
    await target.machine.close();
  });

  test('client writes on the mirror stay refused, also in the batch right after a replay; reads are served', async () => {
    const target = await Machine.open();
    await target.run(begin('s1'));
    const results = await target.apply([target.data(replay('s1', 's2', [target.data(put('a', '1'))])), target.data(put('b', '2')), target.data({ type: 'txn', compare: [], success: [put('c', '3') as TxnOperation], failure: [] })]);
    assert.deepEqual(
      results.map((result) => result.error?.code ?? result.response?.type),
      ['mirrorReplay', ErrorCode.MIRROR_READ_ONLY, ErrorCode.MIRROR_READ_ONLY],
    );
    await target.refused(put('b', '2'), ErrorCode.MIRROR_READ_ONLY);
    assert.deepEqual((await observed(target.machine)).kvs, ['a=1@2/2/1/0']);
    await target.machine.close();
  });

  test('a mirror request, a non-command or a malformed one among the commands: INVALID_ARGUMENT naming it, nothing done', async () => {
    const target = await Machine.open();
    await target.run(begin('s1'));
    const good = target.data(put('a', '1'));
    const bad: [string, Uint8Array][] = [
      ['a mirrorApply', target.data({ type: 'mirrorApply', expectState: bytes('s1'), state: bytes('s1'), revision: 9, puts: [], deletes: [] })],
      ['a mirrorBegin', target.data(begin('x'))],
      ['a mirrorEnd', target.data({ type: 'mirrorEnd', expectState: bytes('s1') })],
      ['a mirrorReplay', target.data(replay('s1', 's2', [good]))],
      ['a node command', Uint8Array.of(NODE_COMMAND_FORMAT, 1, 2, 3)],
      ['a checkpoint', Uint8Array.of(CHECKPOINT_FORMAT)],
      ['empty data', new Uint8Array(0)],
      ['a truncated command', good.subarray(0, good.byteLength - 1)],
    ];
    for (const [what, data] of bad) {
      const request = replay('s1', 's2', [good, good, data]);
      const isField = (error: unknown): boolean => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === 'commands[2]';
      assert.throws(() => validateKvRequest(request), isField, what);
      assert.throws(() => encodeValidKvCommand({ id: 1, request }), isField, what);
      const error = await target.refused(request, ErrorCode.INVALID_ARGUMENT);
      assert.equal(error.details['field'], 'commands[2]', what);
    }
    await target.machine.close();
  });

  test('bounds: at most MIRROR_REPLAY_COMMANDS_MAX commands, the whole request within the request limit, states within theirs', () => {
    const one = encodeKvCommand({ id: 1, request: put('a', '1') });
    const isField = (field: string) => (error: unknown): boolean => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === field;
    validateKvRequest(replay('s', 's', Array.from({ length: MIRROR_REPLAY_COMMANDS_MAX }, () => one)));
    assert.throws(() => validateKvRequest(replay('s', 's', Array.from({ length: MIRROR_REPLAY_COMMANDS_MAX + 1 }, () => one))), isField('commands'));
    assert.throws(() => validateKvRequest({ type: 'mirrorReplay', expectState: new Uint8Array(8 * 1024 + 1), state: bytes('s'), commands: [] }), isField('expectState'));
    assert.throws(() => validateKvRequest({ type: 'mirrorReplay', expectState: bytes('s'), state: new Uint8Array(8 * 1024 + 1), commands: [] }), isField('state'));
    const large = encodeKvCommand({ id: 1, request: { type: 'put', key: bytes('k'), value: new Uint8Array(600 * 1024) } });
    encodeValidKvCommand({ id: 1, request: replay('s', 's', [large, large]) });
    assert.throws(() => encodeValidKvCommand({ id: 1, request: replay('s', 's', [large, large, large]) }), (error: unknown) => isStrataError(error, ErrorCode.REQUEST_TOO_LARGE));
  });

  test('the entry encoding round-trips to the same bytes, and every truncation is CORRUPTION', () => {
    const commands = [encodeKvCommand({ id: 7, request: put('a', '1') }), new Uint8Array(0), encodeKvCommand({ id: 8, request: { type: 'deleteRange', key: bytes('a'), rangeEnd: bytes('\0') } })];
    const command = { id: 42, request: replay('expected', 'next', commands) };
    const data = encodeKvCommand(command);
    assert.deepEqual(decodeKvCommand(data), command);
    assert.deepEqual(encodeKvCommand(decodeKvCommand(data)), data);
    for (let length = 0; length < data.byteLength; length += 1) assert.throws(() => decodeKvCommand(data.subarray(0, length)), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
    // A mirrorReplay is a top-level request only: inside a Txn it is CORRUPTION.
    const txn = encodeKvCommand({ id: 1, request: { type: 'txn', compare: [], success: [put('a', '1') as TxnOperation], failure: [] } });
    const kindAt = txn.indexOf(1, 1 + 8 + 1 + 4 + 4);
    const nested = Uint8Array.of(...txn.subarray(0, kindAt), 8, ...txn.subarray(kindAt + 1));
    assert.throws(() => decodeKvCommand(nested), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
  });

  test('a restart and a snapshot round trip keep the replayed state and the mirror state', async () => {
    const target = await Machine.open();
    await target.run(begin('s1'));
    await target.run(replay('s1', 's2', [target.data(put('a', '1')), target.data(put('b', '2')), target.data(put('a', '3'))]));
    const before = await observed(target.machine);
    assert.deepEqual(before.kvs, ['a=3@2/4/2/0', 'b=2@3/3/1/0']);
    await target.reopen();
    assert.deepEqual(await observed(target.machine), before);
    // The replay goes on after the restart from the state it stored.
    await target.run(replay('s2', 's3', [target.data({ type: 'deleteRange', key: bytes('b') })]));
    const replayed = await observed(target.machine);
    assert.equal(replayed.revision, 5);
    const view = target.machine.openSnapshotView();
    const restored = await restoreView(view, openLevel(newPath()));
    assert.deepEqual(await observed(restored), replayed);
    await restored.close();
    await target.machine.close();
  });

  test('a command refused on the source is refused in the replay; a target with lower limits would diverge (why the copier checks them)', async () => {
    const wide: KvRequest = { type: 'txn', compare: [], success: Array.from({ length: 5 }, (_, i) => put(`w${i}`, 'x') as TxnOperation), failure: [] };
    const source = await Machine.open();
    await source.run(wide);
    assert.equal(source.machine.revision(), 2);
    const same = await Machine.open();
    const narrow = await Machine.open({ limits: { ...DEFAULT_KV_LIMITS, txnOperationsMax: 4 } });
    for (const target of [same, narrow]) {
      await target.run(begin('s'));
      await target.run(replay('s', 't', [source.data(wide)]));
    }
    assert.equal(same.machine.revision(), 2);
    assert.equal(narrow.machine.revision(), 1, 'refused (TOO_MANY_OPERATIONS) on the narrow target only');
    for (const machine of [source, same, narrow]) await machine.machine.close();
  });
});

describe('DigestView.range', () => {
  // A source with leases, part of it still in the write-behind's layer when pinned.
  async function pinned(): Promise<{ source: Machine; view: DigestView; want: KeyValue[] }> {
    const source = await Machine.open();
    await source.run(begin('c'));
    const leased: MirrorPut[] = ['a', 'b/1', 'b/2', 'c'].map((key, i) => ({ key: bytes(key), value: bytes(`v-${key}`), createRevision: 2 + i, modRevision: 5 + i, version: 1 + i, lease: i % 2 === 0 ? ETCD_LEASE + BigInt(i) : 0n }));
    await source.run({ type: 'mirrorApply', expectState: bytes('c'), state: bytes('c'), revision: 20, puts: leased, deletes: [] });
    await source.run({ type: 'mirrorEnd', expectState: bytes('c') });
    await source.machine.whenWritten();
    await source.apply(['b/3', 'd', 'e\xff', 'a'].map((key) => source.data(put(key, `w-${key}`))));
    await source.apply([source.data({ type: 'deleteRange', key: bytes('c') })]);
    const view = source.machine.openDigestView();
    const want = (await source.machine.range({ type: 'range', ...EVERY_KEY })).kvs.slice();
    // The source goes on: the view does not.
    await source.apply(['a', 'b/1', 'f', 'b/25'].map((key) => source.data(put(key, 'later'))));
    await source.apply([source.data({ type: 'deleteRange', key: bytes('d') })]);
    await source.machine.whenWritten();
    return { source, view, want };
  }

  test('pages of every limit put together are the state at the pin, every counter and lease included', async () => {
    const { source, view, want } = await pinned();
    assert.deepEqual(want.map((kv) => text(kv.key)), ['a', 'b/1', 'b/2', 'b/3', 'd', 'e\xff']);
    for (const limit of [1, 2, 3, 5, 6, 7, DIGEST_VIEW_RANGE_LIMIT_MAX]) {
      const got: KeyValue[] = [];
      let from = new Uint8Array(0);
      for (let more = true, pages = 0; more; pages += 1) {
        assert.ok(pages <= want.length, 'paging ends');
        const page = await view.range(from, bytes('\0'), limit);
        assert.ok(page.kvs.length <= limit);
        got.push(...page.kvs);
        more = page.more;
        assert.equal(more, got.length < want.length, `limit ${limit}: more after ${got.length} keys`);
        if (page.kvs.length > 0) from = Uint8Array.of(...(page.kvs[page.kvs.length - 1] as KeyValue).key, 0);
      }
      assert.deepEqual(got.map(describeKv), want.map(describeKv), `limit ${limit}`);
    }
    assert.ok(want.some((kv) => kv.lease === ETCD_LEASE + 2n), 'a lease beyond 2^53 came through exactly');
    await view.close();
    await source.machine.close();
  });

  test("etcd's range rules: one key, a prefix, from a key on, an empty range; and a byte bound", async () => {
    const { source, view, want } = await pinned();
    const keysOf = async (key: string, rangeEnd: string, limit = 100, bytesMax?: number): Promise<(string | undefined)[]> =>
      (await view.range(bytes(key), bytes(rangeEnd), limit, bytesMax === undefined ? {} : { bytesMax })).kvs.map((kv) => text(kv.key));
    assert.deepEqual(await keysOf('b/2', ''), ['b/2']);
    assert.deepEqual(await keysOf('c', ''), [], 'deleted before the pin');
    assert.deepEqual(await keysOf('f', ''), [], 'written after the pin');
    assert.deepEqual(await keysOf('b/', 'b0'), ['b/1', 'b/2', 'b/3']);
    assert.deepEqual(await keysOf('b/3', '\0'), ['b/3', 'd', 'e\xff']);
    assert.deepEqual(await keysOf('\0', '\0'), want.map((kv) => text(kv.key)));
    assert.deepEqual(await keysOf('d', 'a'), [], 'an end at or below the key is empty');
    // At least one key whatever the bound; then no more than it.
    assert.deepEqual(await keysOf('a', '\0', 100, 1), ['a']);
    const pairBytes = (key: string): number => key.length + (want.find((kv) => text(kv.key) === key)?.value.byteLength ?? 0);
    const page = await view.range(bytes('a'), bytes('\0'), 100, { bytesMax: pairBytes('a') + pairBytes('b/1') });
    assert.deepEqual([page.kvs.map((kv) => text(kv.key)), page.more], [['a', 'b/1'], true]);
    const single = await view.range(bytes('a'), bytes(''), 1);
    assert.deepEqual([single.kvs.length, single.more], [1, false]);
    await view.close();
    await source.machine.close();
  });
});

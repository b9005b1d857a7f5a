// The copier against a stratakv source: a real state machine driven through its log
// (state-machine-log-source.ts) copied into a real state machine kept as a mirror
// (state-machine-target.ts). The scan of a pinned view, then the source's log replayed
// (mirrorReplay) under a seeded mix of client commands: puts, deletes over ranges, txns whose
// compares hold or fail, commands the state machine refuses, and entries that carry no KV
// command. Resumes after stops at seeded moments, lost answers and broken log streams; a
// pinned view lost mid-scan; the log compacted past a stopped copier; checkpoints that ask
// for pins (`copy verify`); a switch's fence. Every run ends with a full comparison: every
// key's value, create and mod revision, version and lease, the revisions, and the state
// digests (which also prove that nothing was applied twice: a command replayed twice moves
// the revision and the counters). Two tests hold the copier to its pinned view: a stop mid-scan
// keeps it for the resume, and a refused begin releases it.
//
// Seeded: COPY_TEST_SEED overrides the seed, and a failing test prints the one to rerun with.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { decodeCopyState, encodeCopyState, fenceState, runCopy, type CopyEvent, type CopyOptions, type CopyResult, type CopyState } from '../../../src/migrate/copy/index.ts';
import { digestRootsEqual, formatDigest, type Compare, type DigestView, type KeyValue, type KvRequest, type TxnRequest } from '../../../src/storage/index.ts';
import { ErrorCode, isStrataError } from '../../../src/util/errors.ts';
import { SeededRandom } from '../../../src/util/random.ts';
import { StateMachineLogSource, type NoiseKind, type SourceWrite } from './state-machine-log-source.ts';
import { StateMachineTarget, type TargetFault } from './state-machine-target.ts';

const SEED = Number(process.env['COPY_TEST_SEED'] ?? 16_201);
assert.ok(Number.isSafeInteger(SEED), `COPY_TEST_SEED must be an integer, not ${process.env['COPY_TEST_SEED']}`);
/** KEY_SPACE is how many k/NNNNN keys the load picks from (the preload writes the first 2,000 or fewer). */
const KEY_SPACE = 2_400;
/** A lease id as etcd hands them out (above 2^53): no key of a stratakv source holds one, so a compare on it fails. */
const ETCD_LEASE = 2156839707291722977n;
/** RUN_MS_MAX bounds every copier run a test waits for. */
const RUN_MS_MAX = 60_000;
const ENDPOINTS = ['source-0:2379'];
const ENCODER = new TextEncoder();
const bytes = (text: string): Uint8Array => ENCODER.encode(text);
const text = (value: Uint8Array): string => Buffer.from(value).toString('utf8');
const keyOf = (n: number): Uint8Array => bytes(`k/${String(n).padStart(5, '0')}`);
const EVERY_KEY = { type: 'range', key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) } as const;

/** seededTest runs `body` with its own seed, derived from SEED, and names the seed to rerun with when it fails. */
function seededTest(name: string, offset: number, body: (seed: number) => Promise<void>, options: { readonly todo?: string } = {}): void {
  test(`${name} (seed ${SEED}+${offset})`, options, async () => {
    try {
      await body(SEED + offset);
    } catch (error) {
      if (options.todo === undefined) console.error(`copier-stratakv: "${name}" failed; rerun with COPY_TEST_SEED=${SEED}`);
      throw error;
    }
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** within waits for `promise`, failing the test with `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting until ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** preload writes `keys` keys k/00000.. (a tenth of them twice, so versions differ), in batches. */
async function preload(source: StateMachineLogSource, keys: number): Promise<void> {
  const requests: KvRequest[] = [];
  for (let n = 0; n < keys; n += 1) requests.push({ type: 'put', key: keyOf(n), value: bytes(`initial-${n}`) });
  for (let n = 0; n < keys; n += 10) requests.push({ type: 'put', key: keyOf(n), value: bytes(`again-${n}`) });
  for (let at = 0; at < requests.length; at += 1_000) {
    const written = await source.writeMany(requests.slice(at, at + 1_000));
    assert.ok(written.every((one) => one.error === undefined), 'the preload applied');
  }
  await source.appendNoise('empty');
}

/** LoadTally counts what a client load did on the source (the tests check that each kind happened). */
interface LoadTally {
  writes: number;
  txnsSucceeded: number;
  txnsFailed: number;
  refused: Map<string, number>;
  noise: number;
}

function newTally(): LoadTally {
  return { writes: 0, txnsSucceeded: 0, txnsFailed: 0, refused: new Map(), noise: 0 };
}

/** record adds one write's outcome to the tally. */
function record(tally: LoadTally, written: SourceWrite): void {
  if (written.error !== undefined) {
    tally.refused.set(written.error.code, (tally.refused.get(written.error.code) ?? 0) + 1);
    return;
  }
  tally.writes += 1;
  if (written.response?.type === 'txn') {
    if (written.response.succeeded) tally.txnsSucceeded += 1;
    else tally.txnsFailed += 1;
  }
}

/**
 * clientLoad applies `count` seeded client commands on the source, yielding to the event loop
 * between them so that a running copier interleaves: puts (with and without prevKv), deletes
 * of one key and of ranges, txns, commands the state machine refuses, entries without a KV
 * command, and keys outside k/.
 */
async function clientLoad(source: StateMachineLogSource, random: SeededRandom, count: number, tally: LoadTally = newTally()): Promise<LoadTally> {
  const noises: readonly NoiseKind[] = ['empty', 'conf-change', 'node-command', 'checkpoint'];
  for (let at = 0; at < count; at += 1) {
    const roll = random.intBelow(100);
    const key = keyOf(random.intBelow(KEY_SPACE));
    if (roll < 28) {
      record(tally, await source.write({ type: 'put', key, value: bytes(`v${at}-${random.intBelow(1_000)}`), prevKv: random.chance(1, 2) }));
    } else if (roll < 38) {
      record(tally, await source.write({ type: 'deleteRange', key, prevKv: random.chance(1, 2) }));
    } else if (roll < 43) {
      const from = random.intBelow(KEY_SPACE - 20);
      record(tally, await source.write({ type: 'deleteRange', key: keyOf(from), rangeEnd: keyOf(from + 1 + random.intBelow(15)) }));
    } else if (roll < 78) {
      record(tally, await source.write(await txnRequest(source, random, at)));
    } else if (roll < 84) {
      record(tally, await source.write(refusedRequest(random, at)));
    } else if (roll < 90) {
      await source.appendNoise(noises[random.intBelow(noises.length)] ?? 'empty');
      tally.noise += 1;
    } else {
      record(tally, await source.write({ type: 'put', key: bytes(`n/${random.intBelow(300)}`), value: bytes(`outside-${at}`) }));
    }
    await new Promise((resolve) => setImmediate(resolve));
    if (at % 25 === 24) await sleep(1 + random.intBelow(4));
  }
  return tally;
}

/**
 * txnRequest builds a txn whose compare is meant to hold or fail (read from the source's state
 * now: no one else writes it), on the value, version, create or mod revision, or lease, and
 * now and then one over a range whose outcome is not predicted.
 */
async function txnRequest(source: StateMachineLogSource, random: SeededRandom, at: number): Promise<TxnRequest> {
  const key = keyOf(random.intBelow(KEY_SPACE));
  const current: KeyValue | undefined = (await source.kv.range({ type: 'range', key })).kvs[0];
  const hold = random.chance(1, 2);
  let compare: Compare;
  switch (random.intBelow(6)) {
    case 0:
      compare = current === undefined || !hold ? { target: 'value', result: 'equal', key, value: bytes('never-written') } : { target: 'value', result: 'equal', key, value: current.value };
      break;
    case 1:
      compare = { target: 'version', result: 'equal', key, number: (current?.version ?? 0) + (hold ? 0 : 1) };
      break;
    case 2:
      compare = { target: 'createRevision', result: hold ? 'less' : 'greater', key, number: (current?.createRevision ?? 0) + (hold ? 1 : 0) };
      break;
    case 3:
      compare = { target: 'modRevision', result: hold ? 'equal' : 'greater', key, number: current?.modRevision ?? 0 };
      break;
    case 4:
      compare = { target: 'lease', result: 'equal', key, lease: hold ? 0n : ETCD_LEASE };
      break;
    default: {
      const from = random.intBelow(KEY_SPACE - 10);
      compare = { target: 'version', result: 'greater', key: keyOf(from), rangeEnd: keyOf(from + 5), number: random.intBelow(3) };
    }
  }
  let other = keyOf(random.intBelow(KEY_SPACE));
  if (text(other) === text(key)) other = bytes(`${text(key)}/other`);
  return {
    type: 'txn',
    compare: [compare, ...(random.chance(1, 4) ? [{ target: 'lease', result: 'notEqual', key: other, lease: ETCD_LEASE } as const] : [])],
    success: [
      { type: 'put', key, value: bytes(`t${at}`), prevKv: true },
      { type: 'deleteRange', key: other },
      { type: 'range', key: keyOf(0), rangeEnd: keyOf(20), limit: 3 },
    ],
    failure: random.chance(1, 3) ? [] : [{ type: 'put', key: other, value: bytes(`f${at}`) }],
  };
}

/** refusedRequest is a command the state machine refuses at apply (validation): it changes nothing, here or when replayed. */
function refusedRequest(random: SeededRandom, at: number): KvRequest {
  switch (random.intBelow(3)) {
    case 0:
      return { type: 'put', key: new Uint8Array(0), value: bytes(`no key ${at}`) };
    case 1:
      return { type: 'deleteRange', key: new Uint8Array(0) };
    default: {
      const key = keyOf(random.intBelow(KEY_SPACE));
      return { type: 'txn', compare: [], success: [{ type: 'put', key, value: bytes('a') }, { type: 'put', key, value: bytes('b') }], failure: [] };
    }
  }
}

/** view of a key for comparisons, printable. */
function shown(kv: KeyValue): { key: string; value: string; createRevision: number; modRevision: number; version: number; lease: bigint } {
  return { key: text(kv.key), value: text(kv.value), createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version, lease: kv.lease };
}

/** assertSame compares every key and counter of the source and the target, their revisions and their state digests. */
async function assertSame(source: StateMachineLogSource, target: StateMachineTarget): Promise<void> {
  const expected = await source.kv.range(EVERY_KEY);
  const mirrored = await target.kv.range(EVERY_KEY);
  assert.equal(mirrored.count, expected.count, 'as many keys on both sides');
  for (const [at, kv] of expected.kvs.entries()) {
    const other = mirrored.kvs[at];
    assert.ok(other !== undefined, `the target holds a key at position ${at}`);
    assert.deepEqual(shown(other), shown(kv));
  }
  assert.equal(target.kv.revision(), source.kv.revision(), 'the target is at the source\'s revision');
  const sourceDigest = source.kv.stateDigest().digest;
  const targetDigest = target.kv.stateDigest().digest;
  assert.ok(digestRootsEqual(sourceDigest, targetDigest), `state digests differ: source ${formatDigest(sourceDigest.full)} (${sourceDigest.keyCount} keys), target ${formatDigest(targetDigest.full)} (${targetDigest.keyCount} keys)`);
  assert.ok(digestRootsEqual(sourceDigest, targetDigest, 'content'), 'content digests equal');
}

/** viewKeys reads every key of a pinned view. */
async function viewKeys(view: DigestView): Promise<ReturnType<typeof shown>[]> {
  const keys: ReturnType<typeof shown>[] = [];
  let from = Uint8Array.of(0);
  for (let page = 0; page < 100; page += 1) {
    const answer = await view.range(from, Uint8Array.of(0), 1_000);
    keys.push(...answer.kvs.map(shown));
    const last = answer.kvs[answer.kvs.length - 1];
    if (!answer.more || last === undefined) return keys;
    from = new Uint8Array([...last.key, 0]);
  }
  throw new Error('a view of more than 100 pages');
}

function copyOptions(source: StateMachineLogSource, target: StateMachineTarget, extra: Partial<CopyOptions> & { readonly signal: AbortSignal }): CopyOptions {
  return { logSource: source, target, sourceKind: 'stratakv', sourceEndpoints: ENDPOINTS, pageKeys: 100, progressIntervalMs: 20, ...extra };
}

/** catchUp resumes the copy and runs it until it holds everything the source committed. */
async function catchUp(source: StateMachineLogSource, target: StateMachineTarget, extra: Partial<CopyOptions> = {}): Promise<CopyResult> {
  const result = await runCopy(copyOptions(source, target, { signal: AbortSignal.timeout(RUN_MS_MAX), stopWhenCaughtUp: true, resumeOnly: true, ...extra }));
  assert.equal(result.reason, 'caught-up');
  assert.equal(result.state.phase, 'tailing');
  assert.equal(result.state.appliedIndex, source.lastIndex, 'every entry of the source is applied');
  return result;
}

function targetState(target: StateMachineTarget): CopyState {
  const state = target.kv.mirrorState();
  assert.ok(state !== undefined, 'the target is a mirror');
  return decodeCopyState(state);
}

describe('copy from a stratakv source (its log replayed) into a mirror state machine', () => {
  seededTest('scan of a pinned view, then the log replayed under client commands: every key, counter, revision and the digest equal', 0, async (seed) => {
    const random = new SeededRandom(seed);
    const source = await StateMachineLogSource.open({ seed });
    const target = await StateMachineTarget.open(16 * 1024);
    await preload(source, 2_000);
    const events: CopyEvent[] = [];
    let scanDone: () => void = () => undefined;
    const scanned = new Promise<void>((resolve) => (scanDone = resolve));
    const stop = new AbortController();
    const running = runCopy(
      copyOptions(source, target, {
        signal: stop.signal,
        onEvent: (event) => {
          events.push(event);
          if (event.kind === 'scan-done') scanDone();
        },
      }),
    );
    // Half the load while the scan reads its pinned view, half while the copier follows the log.
    const tally = await clientLoad(source, random, 300);
    await within(scanned, RUN_MS_MAX, 'the scan ended');
    await clientLoad(source, random, 400, tally);
    stop.abort();
    const stopped = await running;
    assert.equal(stopped.reason, 'stopped');
    const last = await catchUp(source, target);

    assert.equal(last.state.rescans, 0, 'nothing forced a re-scan');
    assert.ok(events.some((event) => event.kind === 'scanned'), 'the scan went page by page');
    assert.ok(events.some((event) => event.kind === 'applied' && event.events > 0), 'the tail replayed commands');
    assert.ok(tally.txnsSucceeded > 0 && tally.txnsFailed > 0, `txns took both branches (${tally.txnsSucceeded} / ${tally.txnsFailed})`);
    assert.ok((tally.refused.get(ErrorCode.KEY_NOT_PROVIDED) ?? 0) > 0, 'the source refused commands without a key');
    assert.ok(tally.noise > 0, 'entries without a KV command were in the log');
    assert.equal(source.openViews(), 0, 'the scan released its pinned view');
    await assertSame(source, target);
    source.close();
    target.close();
  });

  seededTest('stopped at 5 seeded moments (one mid-scan), answers and requests lost, log streams broken: each resume ends equal, nothing applied twice', 1, async (seed) => {
    const random = new SeededRandom(seed);
    const source = await StateMachineLogSource.open({ seed });
    const target = await StateMachineTarget.open(8 * 1024);
    await preload(source, 2_000);
    // Each run has its own slice of the load, begun with it and going on after its stop.
    const loadRandom = new SeededRandom(seed + 1_000);
    const tally = newTally();
    let faultsPushed = 0;
    let streamsBroken = 0;
    for (let stopAt = 0; stopAt < 5; stopAt += 1) {
      const stop = new AbortController();
      // A lost answer after the entry applied and a request lost before it, in seeded order
      // and at seeded moments of the run: the copier must find out which from the state. A
      // fault whose moment comes after the stop is armed for the next run.
      const pending = new Map<NodeJS.Timeout, TargetFault>();
      const armed: TargetFault[] = random.chance(1, 2) ? ['drop-answer', 'drop-request'] : ['drop-request', 'drop-answer'];
      for (const [at, fault] of armed.entries()) {
        const timer = setTimeout(() => {
          pending.delete(timer);
          target.faults.push(fault);
        }, at * 20 + random.intBelow(120));
        pending.set(timer, fault);
        faultsPushed += 1;
      }
      if (stopAt > 0 && random.chance(2, 3)) {
        source.breakStreamAfter(random.intBelow(6));
        streamsBroken += 1;
      }
      // The first stop lands mid-scan (after a seeded number of its batches), the others at seeded times.
      const stopAfterBatches = 2 + random.intBelow(6);
      let batches = 0;
      const running = runCopy(
        copyOptions(source, target, {
          signal: stop.signal,
          pageKeys: 50,
          onEvent: (event) => {
            if (stopAt === 0 && event.kind === 'scanned' && ++batches === stopAfterBatches) stop.abort();
          },
        }),
      );
      const writes = clientLoad(source, loadRandom, 160, tally);
      if (stopAt > 0) {
        await sleep(20 + random.intBelow(200));
        stop.abort();
      }
      const stopped = await within(running, RUN_MS_MAX, `copier run ${stopAt} stopped`);
      await writes;
      for (const [timer, fault] of pending) {
        clearTimeout(timer);
        target.faults.push(fault);
      }
      assert.equal(stopped.reason, 'stopped');
      if (stopAt === 0) assert.equal(stopped.state.phase, 'copying', 'the first stop came mid-scan');
    }
    const last = await catchUp(source, target, { pageKeys: 50 });
    assert.ok(target.faults.length < faultsPushed, 'faults were injected');
    assert.ok(streamsBroken === 0 || source.streamsOpened > 1, 'the tail reopened the log stream');
    assert.ok(tally.writes > 0);
    assert.ok(last.state.appliedIndex === source.lastIndex);
    await assertSame(source, target);
    source.close();
    target.close();
  });

  seededTest(
    'a stop mid-scan keeps the scan\'s pinned view: the resume reads on from it, without a re-scan',
    7,
    async (seed) => {
      const source = await StateMachineLogSource.open({ seed });
      const target = await StateMachineTarget.open(8 * 1024);
      await preload(source, 2_000);
      const stop = new AbortController();
      const stopAfterBatches = 2 + new SeededRandom(seed).intBelow(6);
      let batches = 0;
      const stopped = await runCopy(
        copyOptions(source, target, {
          signal: stop.signal,
          pageKeys: 50,
          onEvent: (event) => {
            if (event.kind === 'scanned' && ++batches === stopAfterBatches) stop.abort();
          },
        }),
      );
      assert.equal(stopped.reason, 'stopped');
      assert.equal(stopped.state.phase, 'copying');
      const pin = stopped.state.scan?.pin;
      assert.ok(pin !== undefined, 'the state records the scan\'s pinned view');
      assert.ok(source.viewOf(pin) !== undefined, 'the stopped copier left the pinned view its state records');
      const resumed = await catchUp(source, target, { pageKeys: 50 });
      assert.equal(resumed.state.rescans, 0, 'the resume read on from the pinned view');
      assert.equal(source.scansRefused, 0);
      await assertSame(source, target);
      source.close();
      target.close();
    },
  );

  seededTest(
    'a target that holds keys is refused (MIRROR_CONFLICT), and the view pinned for the scan is released',
    8,
    async (seed) => {
      const source = await StateMachineLogSource.open({ seed });
      await preload(source, 50);
      const target = await StateMachineTarget.open();
      await target.applyClient({ type: 'put', key: bytes('already/here'), value: bytes('a key of the target\'s own') });
      await assert.rejects(
        runCopy(copyOptions(source, target, { signal: AbortSignal.timeout(RUN_MS_MAX) })),
        (error: unknown) => isStrataError(error, ErrorCode.MIRROR_CONFLICT),
      );
      assert.equal(target.kv.mirrorState(), undefined, 'nothing began');
      // Each refused `copy create` would otherwise hold one of the source member's DIGEST_VIEWS_MAX views.
      assert.equal(source.openViews(), 0, 'no view left pinned on the source');
      source.close();
      target.close();
    },
  );

  seededTest('a pinned view lost mid-scan: the copier scans again, and a key deleted between the two pins is gone from the target', 2, async (seed) => {
    const source = await StateMachineLogSource.open({ seed });
    const target = await StateMachineTarget.open(8 * 1024);
    await preload(source, 2_000);
    const deleted = keyOf(10);
    const added = bytes('n/between-the-pins');
    const events: CopyEvent[] = [];
    let batches = 0;
    let dropped = false;
    const result = await runCopy(
      copyOptions(source, target, {
        signal: AbortSignal.timeout(RUN_MS_MAX),
        stopWhenCaughtUp: true,
        pageKeys: 50,
        onEvent: (event) => {
          events.push(event);
          // The source queues its commands: the delete and the put apply before any pin the
          // copier asks for after this, and the views are gone at once.
          if (event.kind === 'scanned' && ++batches === 4) {
            void source.write({ type: 'deleteRange', key: deleted });
            void source.write({ type: 'put', key: added, value: bytes('after the first pin') });
            void source.dropPins();
            dropped = true;
          }
        },
      }),
    );
    assert.ok(dropped, 'the pins were dropped mid-scan');
    assert.equal(result.reason, 'caught-up');
    assert.equal(result.state.rescans, 1, 'one re-scan');
    assert.ok(events.some((event) => event.kind === 'rescan'), 'the copier said it scans again');
    assert.ok(source.scansRefused > 0, 'a scan of the lost view was refused');
    assert.equal((await target.kv.range({ type: 'range', key: deleted })).count, 0, 'the key deleted between the pins is gone from the target');
    assert.equal((await target.kv.range({ type: 'range', key: added })).count, 1, 'the key put between the pins is on the target');
    assert.equal(source.openViews(), 0, 'the second scan released its pinned view');
    await assertSame(source, target);
    source.close();
    target.close();
  });

  seededTest('the log compacted past a stopped copier: on resume it scans again and ends equal', 3, async (seed) => {
    const random = new SeededRandom(seed);
    const source = await StateMachineLogSource.open({ seed });
    const target = await StateMachineTarget.open(8 * 1024);
    await preload(source, 600);
    const first = await runCopy(copyOptions(source, target, { signal: AbortSignal.timeout(RUN_MS_MAX), stopWhenCaughtUp: true }));
    assert.equal(first.reason, 'caught-up');
    assert.equal(first.state.rescans, 0);
    const stoppedAt = first.state.appliedIndex ?? 0;
    assert.equal(stoppedAt, source.lastIndex);
    // While no copier runs: client commands, a delete of a copied key, then the log compacted
    // past where the copier stopped.
    await clientLoad(source, random, 150);
    const deleted = keyOf(5);
    assert.equal((await source.write({ type: 'deleteRange', key: deleted })).error, undefined);
    // Past the copier's log hold, as a member over compactionLogBytesMax (or after the hold expired) does.
    source.compact(source.lastIndex - 5, { pastHolds: true });
    await assert.rejects(
      async () => {
        for await (const _batch of source.follow(stoppedAt + 1)) break;
      },
      (error: unknown) => isStrataError(error, ErrorCode.COMPACTED),
      'the log no longer holds the copier\'s next index',
    );
    const events: CopyEvent[] = [];
    const second = await catchUp(source, target, { onEvent: (event) => events.push(event) });
    assert.equal(second.state.rescans, 1, 'one re-scan');
    assert.ok(events.some((event) => event.kind === 'rescan'));
    assert.equal((await target.kv.range({ type: 'range', key: deleted })).count, 0, 'the key deleted while the copier was stopped is gone');
    await assertSame(source, target);
    source.close();
    target.close();
  });

  seededTest('checkpoints that ask for pins: the copier pins the target exactly at each, with the source view\'s digest and keys', 4, async (seed) => {
    const random = new SeededRandom(seed);
    const source = await StateMachineLogSource.open({ seed });
    const target = await StateMachineTarget.open(16 * 1024);
    await preload(source, 800);
    const wanted = new Set<number>();
    let allPinned: () => void = () => undefined;
    const recorded = new Promise<void>((resolve) => (allPinned = resolve));
    const stop = new AbortController();
    const running = runCopy(
      copyOptions(source, target, {
        signal: stop.signal,
        onEvent: (event) => {
          if (!('state' in event) || wanted.size < 2) return;
          const pinnedAt = new Set((event.state.verifyPins ?? []).map((pin) => pin.sourceIndex));
          if ([...wanted].every((index) => pinnedAt.has(index))) allPinned();
        },
      }),
    );
    // One checkpoint alone while the copier follows; one right behind a burst of commands in
    // the same apply, so that the copier reads them in one go and must apply them before it pins.
    await clientLoad(source, random, 150);
    const alone = await source.pinnedCheckpoint();
    wanted.add(alone.pin.index);
    await clientLoad(source, random, 100);
    const burst: KvRequest[] = [];
    for (let at = 0; at < 40; at += 1) {
      burst.push(random.chance(3, 4) ? { type: 'put', key: keyOf(random.intBelow(KEY_SPACE)), value: bytes(`burst-${at}`) } : { type: 'deleteRange', key: keyOf(random.intBelow(KEY_SPACE)) });
    }
    const behindBurst = await source.pinnedCheckpoint(burst);
    wanted.add(behindBurst.pin.index);
    await clientLoad(source, random, 100);
    await within(recorded, RUN_MS_MAX, `the copier recorded verify pins at source indexes ${[...wanted].join(', ')}`);
    stop.abort();
    assert.equal((await running).reason, 'stopped');
    await catchUp(source, target);

    for (const checkpoint of [alone, behindBurst]) {
      const verifyPin = targetState(target).verifyPins?.find((pin) => pin.sourceIndex === checkpoint.pin.index);
      assert.ok(verifyPin !== undefined, `the state records the verify pin at source index ${checkpoint.pin.index}`);
      const targetView = target.pins.get(verifyPin.pinId);
      const sourceView = source.viewOf(checkpoint.pin);
      assert.ok(targetView !== undefined && sourceView !== undefined, 'both views are pinned');
      assert.equal(verifyPin.revision, checkpoint.pin.revision, 'pinned at the checkpoint\'s revision');
      assert.equal(targetView.revision, sourceView.revision);
      const sourceRoot = sourceView.sums.root();
      const targetRoot = targetView.sums.root();
      assert.ok(digestRootsEqual(sourceRoot, checkpoint.digestAt.digest), 'the source\'s view is the state its checkpoint reported');
      assert.equal(targetRoot.keyCount, sourceRoot.keyCount, 'as many keys in both views');
      assert.ok(digestRootsEqual(targetRoot, sourceRoot), `the views' digests differ at source index ${checkpoint.pin.index}: source ${formatDigest(sourceRoot.full)}, target ${formatDigest(targetRoot.full)}`);
      assert.deepEqual(await viewKeys(targetView), await viewKeys(sourceView), 'the views hold the same keys');
      await source.release(checkpoint.pin);
    }
    assert.notEqual(source.kv.revision(), behindBurst.pin.revision, 'the source went on after the checkpoints');
    await assertSame(source, target);
    source.close();
    target.close();
  });

  seededTest('a switch\'s fence: the copier stops there (source-fenced), equal to the source at the fence; later writes are refused and never replayed', 5, async (seed) => {
    const random = new SeededRandom(seed);
    const source = await StateMachineLogSource.open({ seed });
    const target = await StateMachineTarget.open(16 * 1024);
    await preload(source, 300);
    const running = runCopy(copyOptions(source, target, { signal: AbortSignal.timeout(RUN_MS_MAX) }));
    await clientLoad(source, random, 150);
    const switchId = 'f00dfeed01';
    const fence = await source.fence(
      encodeCopyState(fenceState({ mirrorEndpoints: ['mirror-0:2379'], mirrorClusterId: 'a1b2c3d4', direction: 'reverse', mirrorIndexBefore: 0, switchId, startedAtMs: 1, nowMs: 1 })),
    );
    const revisionAtFence = source.kv.revision();
    // After the fence: client writes, which the source refuses at apply, a read-only txn, and noise.
    for (let at = 0; at < 20; at += 1) {
      const key = keyOf(random.intBelow(KEY_SPACE));
      const request: KvRequest =
        at % 3 === 0
          ? { type: 'put', key, value: bytes(`after-fence-${at}`) }
          : at % 3 === 1
            ? { type: 'deleteRange', key: keyOf(0), rangeEnd: keyOf(KEY_SPACE) }
            : await txnRequest(source, random, at);
      const written = await source.write(request);
      assert.ok(isStrataError(written.error, ErrorCode.MIRROR_READ_ONLY), `a write after the fence is refused MIRROR_READ_ONLY (${written.error?.code ?? 'applied'})`);
    }
    const readOnly = await source.write({ type: 'txn', compare: [], success: [{ type: 'range', key: keyOf(0), rangeEnd: keyOf(10) }], failure: [] });
    assert.equal(readOnly.error, undefined, 'a read-only txn is served');
    await source.appendNoise('empty');
    assert.equal(source.kv.revision(), revisionAtFence, 'nothing changed the source after the fence');

    const fenced = await running;
    assert.equal(fenced.reason, 'source-fenced');
    assert.equal(fenced.state.appliedIndex, fence.index, 'every entry up to the fence is applied');
    assert.equal(fenced.state.sourceFencedAt, fence.index);
    assert.equal(targetState(target).sourceFencedAt, fence.index, 'the target\'s state records the fence');
    await assertSame(source, target);

    // Again: at once, nothing replayed. This switch's catch-up is let through the source's
    // mirror state; any other copier is refused (the source is itself a mirror now).
    const requestsBefore = target.mirrorRequests;
    const stateBefore = target.kv.mirrorState();
    const again = await runCopy(copyOptions(source, target, { signal: AbortSignal.timeout(RUN_MS_MAX), switchId }));
    assert.equal(again.reason, 'source-fenced');
    assert.equal(again.state.appliedIndex, fence.index);
    assert.equal(target.mirrorRequests, requestsBefore, 'no request was sent');
    assert.deepEqual(target.kv.mirrorState(), stateBefore);
    await assert.rejects(
      runCopy(copyOptions(source, target, { signal: AbortSignal.timeout(RUN_MS_MAX) })),
      (error: unknown) => isStrataError(error, ErrorCode.MIRROR_CONFLICT),
    );
    assert.equal(target.mirrorRequests, requestsBefore, 'the refused copier sent nothing');
    await assertSame(source, target);
    source.close();
    target.close();
  });

  seededTest('refusals: a stratakv copy with a prefix (INVALID_ARGUMENT), a resume against another cluster (MIRROR_CONFLICT)', 6, async (seed) => {
    const source = await StateMachineLogSource.open({ seed });
    await preload(source, 50);
    const target = await StateMachineTarget.open();
    await assert.rejects(
      runCopy(copyOptions(source, target, { signal: AbortSignal.timeout(RUN_MS_MAX), prefix: bytes('k/') })),
      (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === 'prefix',
    );
    assert.equal(target.kv.mirrorState(), undefined, 'nothing began');
    assert.equal(source.openViews(), 0, 'no view left pinned');

    const copied = await runCopy(copyOptions(source, target, { signal: AbortSignal.timeout(RUN_MS_MAX), stopWhenCaughtUp: true }));
    assert.equal(copied.reason, 'caught-up');
    const other = await StateMachineLogSource.open({ seed, clusterId: 'b0b0b0b0b0b0b0b0' });
    await preload(other, 50);
    const stateBefore = target.kv.mirrorState();
    await assert.rejects(
      runCopy(copyOptions(other, target, { signal: AbortSignal.timeout(RUN_MS_MAX) })),
      (error: unknown) => isStrataError(error, ErrorCode.MIRROR_CONFLICT) && /cluster/.test(error.message),
    );
    assert.deepEqual(target.kv.mirrorState(), stateBefore, 'the target is untouched');
    assert.equal(other.openViews(), 0);
    source.close();
    other.close();
    target.close();
  });
});

// The Snapshotter's decisions, each shown failing without its rule: how far the log is
// compacted (the catch-up tail, a snapshot being sent, a live follower's match, the byte
// cap, log holds), and the failure breaker (a member whose snapshots keep failing backs off, says so in
// its status and keeps serving); and, on real RaftNodes, an install under steady writes with
// a tiny catch-up tail converges without a snapshot loop.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RaftNode } from '../../src/node/index.ts';
import type { SnapshotPolicy, SnapshotterHost } from '../../src/node/snapshotter.ts';
import { Snapshotter } from '../../src/node/snapshotter.ts';
import type { LogHoldCommand } from '../../src/node/log-holds.ts';
import { LogHolds } from '../../src/node/log-holds.ts';
import type { Logger, ProgressStatus, RaftStatus } from '../../src/raft/index.ts';
import { MemorySnapshotStore } from '../../src/snapshot/index.ts';
import type { SnapshotInfo, SnapshotSource, SnapshotStore } from '../../src/snapshot/index.ts';
import { MemoryLogStore, NODE_COMMAND_FORMAT, openMemoryKvStateMachine } from '../../src/storage/index.ts';
import type { KvStateMachine } from '../../src/storage/index.ts';
import { ErrorCode, StrataError, VirtualClock } from '../../src/util/index.ts';
import { SILENT_LOGGER } from '../../src/raft/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { RaftNode as Node } from '../../src/node/index.ts';
import { ELECTION_MS, HEARTBEAT_MS, leaderOf, put, read, startCluster, track, virtualDriver } from './fixture.ts';

const progress = (match: number, recentActive: boolean, state: ProgressStatus['state'] = 'replicate'): ProgressStatus => ({ match, next: match + 1, state, isLearner: false, recentActive });

function leaderStatus(followers: readonly ProgressStatus[]): RaftStatus {
  const map = new Map<number, ProgressStatus>([[1, progress(1_000, true)]]);
  followers.forEach((follower, position) => map.set(position + 2, follower));
  return {
    id: 1, term: 2, vote: 1, commit: 1_000, applied: 1_000, leaderId: 1, role: 'leader', lastIndex: 1_000, leadTransferee: 0,
    config: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false },
    progress: map,
  };
}

async function hostWith(options: {
  status: RaftStatus;
  sending?: number[];
  log?: MemoryLogStore;
  holds?: LogHolds;
  wallClockMs?: () => number;
  logger?: Logger;
}): Promise<{ host: SnapshotterHost; stateMachine: KvStateMachine }> {
  const log = options.log ?? new MemoryLogStore();
  if (log.lastIndex() === 0) log.saveSync({ entries: Array.from({ length: 1_000 }, (_, i) => ({ index: i + 1, term: 2, type: 0, data: new Uint8Array(10) })) });
  const stateMachine = await openMemoryKvStateMachine();
  const clock = new VirtualClock();
  return {
    stateMachine,
    host: {
      clock,
      logger: options.logger ?? SILENT_LOGGER,
      log,
      snapshots: new MemorySnapshotStore({ clock }),
      capture: () => ({ view: stateMachine.openSnapshotView(), confState: options.status.config, membership: { members: [], removed: [], published: [] } }),
      stateMachine: () => stateMachine,
      appliedIndex: () => 1_000,
      raftStatus: () => options.status,
      sendingIndexes: () => options.sending ?? [],
      logHolds: () => options.holds?.list() ?? [],
      wallClockMs: options.wallClockMs ?? (() => 0),
      onSaved: () => undefined,
    },
  };
}

const snapshotAt = (index: number): Pick<SnapshotInfo, 'index' | 'byteLength'> => ({ index, byteLength: 4096 * 3 });

describe('how far the log is compacted', () => {
  test('a follower keeps the catch-up tail behind the snapshot', async () => {
    const status = { ...leaderStatus([]), role: 'follower' as const, progress: new Map() };
    const { host } = await hostWith({ status });
    assert.equal(new Snapshotter(host, { catchUpEntries: 100 }).compactionIndex(snapshotAt(900)), 800);
    assert.equal(new Snapshotter(host, { catchUpEntries: 5_000 }).compactionIndex(snapshotAt(900)), 0);
  });

  test('never past a snapshot being sent', async () => {
    const { host } = await hostWith({ status: leaderStatus([progress(990, true), progress(990, true)]), sending: [300] });
    assert.equal(new Snapshotter(host, { catchUpEntries: 10 }).compactionIndex(snapshotAt(900)), 300);
  });

  test("a leader keeps what a live follower still needs, below the byte cap; not for a follower that is gone or installing", async () => {
    const live = await hostWith({ status: leaderStatus([progress(990, true), progress(400, true)]) });
    assert.equal(new Snapshotter(live.host, { catchUpEntries: 10 }).compactionIndex(snapshotAt(900)), 400);
    const gone = await hostWith({ status: leaderStatus([progress(990, true), progress(400, false)]) });
    assert.equal(new Snapshotter(gone.host, { catchUpEntries: 10 }).compactionIndex(snapshotAt(900)), 890);
    const installing = await hostWith({ status: leaderStatus([progress(990, true), progress(400, true, 'snapshot')]) });
    assert.equal(new Snapshotter(installing.host, { catchUpEntries: 10 }).compactionIndex(snapshotAt(900)), 890);
  });

  test('over the byte cap, a live follower no longer holds the log back', async () => {
    const { host } = await hostWith({ status: leaderStatus([progress(990, true), progress(400, true)]) });
    const snapshotter = new Snapshotter(host, { catchUpEntries: 10, compactionLogBytesMax: 1_000 });
    snapshotter.noteAppended(Array.from({ length: 1_000 }, (_, i) => ({ index: i + 1, data: new Uint8Array(10) })));
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 890);
  });

  test('the tail grows with the write rate and the snapshot size', async () => {
    const { host } = await hostWith({ status: { ...leaderStatus([]), role: 'follower' as const, progress: new Map() } });
    const clock = host.clock as VirtualClock;
    const snapshotter = new Snapshotter(host, { catchUpEntries: 10, sendBytesPerSecond: 1024 * 1024, restoreBytesPerSecondAssumed: 1024 * 1024 });
    // 1,000 entries a second for 10 s.
    for (let second = 0; second <= 10; second += 1) {
      snapshotter.noteApplied(second * 1_000);
      clock.setTimeout(() => undefined, 1_000);
      clock.runNext();
    }
    assert.ok(Math.abs(snapshotter.writeRateEntriesPerSecond() - 1_000) < 1, `rate ${snapshotter.writeRateEntriesPerSecond()}`);
    // 10 MiB at 1 MiB/s to send and 1 MiB/s to restore, plus 5 s: 25 s x 1,000/s x 2.
    assert.equal(snapshotter.catchUpTailEntries(10 * 1024 * 1024), 50_000);
    assert.equal(snapshotter.catchUpTailEntries(0), 10_000);
  });
});

describe('log holds', () => {
  const follower = (): RaftStatus => ({ ...leaderStatus([]), role: 'follower' as const, progress: new Map() });
  const hold = (consumer: string, index: number, expiresAtMs: number): LogHoldCommand => ({ type: 'logHold', consumer, index, expiresAtMs });

  test('an unexpired hold stops compaction at its index - 1; expired, moved or released, it no longer does', async () => {
    const holds = new LogHolds();
    let nowMs = 1_000;
    const { host } = await hostWith({ status: follower(), holds, wallClockMs: () => nowMs });
    const snapshotter = new Snapshotter(host, { catchUpEntries: 10 });
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 890, 'without a hold: the catch-up tail');
    holds.apply(hold('copy-a', 500, 61_000), nowMs);
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 499, 'entry 500 stays');
    assert.equal(snapshotter.compactionLimit(snapshotAt(900)).heldBy?.consumer, 'copy-a');
    assert.equal(snapshotter.status().logHolds, 1);
    assert.equal(snapshotter.status().logHoldIndexLowest, 500);
    nowMs = 60_999;
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 499, 'held until its deadline');
    nowMs = 61_000;
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 890, 'expired at its deadline');
    assert.equal(snapshotter.status().logHolds, 0);
    assert.equal(snapshotter.status().logHoldIndexLowest, undefined);
    holds.apply(hold('copy-a', 600, 120_000), nowMs);
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 599, 'renewed at a new index: it replaces the old one');
    holds.apply(hold('copy-a', 0, 0), nowMs);
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 890, 'released');
    assert.equal(holds.size, 0);
  });

  test('the lowest hold wins on any member; a hold above the limit changes nothing; one at a compacted index keeps nothing', async () => {
    const holds = new LogHolds();
    const log = new MemoryLogStore();
    const leader = await hostWith({ status: leaderStatus([progress(990, true), progress(990, true)]), holds, log });
    const snapshotter = new Snapshotter(leader.host, { catchUpEntries: 10 });
    holds.apply(hold('copy-a', 700, 10_000), 0);
    holds.apply(hold('copy-b', 400, 10_000), 0);
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 399, 'the lowest of two holds, on a leader');
    const onFollower = await hostWith({ status: follower(), holds });
    assert.equal(new Snapshotter(onFollower.host, { catchUpEntries: 10 }).compactionIndex(snapshotAt(900)), 399, 'and on a follower');
    holds.apply(hold('copy-a', 0, 0), 0);
    holds.apply(hold('copy-b', 0, 0), 0);
    holds.apply(hold('copy-c', 950, 10_000), 0);
    const above = snapshotter.compactionLimit(snapshotAt(900));
    assert.equal(above.index, 890, 'a hold above the catch-up tail holds nothing back');
    assert.equal(above.heldBy, undefined);
    log.createSnapshot(300, follower().config, new Uint8Array(0));
    log.compact(300);
    holds.apply(hold('copy-c', 200, 10_000), 0);
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 890, 'entries 200..300 are gone: the hold keeps nothing');
    holds.apply(hold('copy-c', 301, 10_000), 0);
    assert.equal(snapshotter.compactionIndex(snapshotAt(900)), 300, 'the first entry held: nothing more is compacted');
  });

  test('over the byte cap a hold is ignored, and the next one up holds', async () => {
    const holds = new LogHolds();
    const { host } = await hostWith({ status: follower(), holds });
    // 1,000 entries of 10 bytes: 6,000 or more after 400, about 2,300 after 800.
    const snapshotter = new Snapshotter(host, { catchUpEntries: 10, compactionLogBytesMax: 3_000 });
    snapshotter.noteAppended(Array.from({ length: 1_000 }, (_, i) => ({ index: i + 1, data: new Uint8Array(10) })));
    holds.apply(hold('copy-far-behind', 400, 10_000), 0);
    const ignored = snapshotter.compactionLimit(snapshotAt(900));
    assert.equal(ignored.index, 890);
    assert.deepEqual(ignored.holdsIgnored.map((one) => one.consumer), ['copy-far-behind']);
    holds.apply(hold('copy-near', 800, 10_000), 0);
    const held = snapshotter.compactionLimit(snapshotAt(900));
    assert.equal(held.index, 799);
    assert.equal(held.heldBy?.consumer, 'copy-near');
    assert.deepEqual(held.holdsIgnored.map((one) => one.consumer), ['copy-far-behind']);
    const uncapped = new Snapshotter(host, { catchUpEntries: 10 });
    uncapped.noteAppended(Array.from({ length: 1_000 }, (_, i) => ({ index: i + 1, data: new Uint8Array(10) })));
    assert.equal(uncapped.compactionIndex(snapshotAt(900)), 399, 'under the default cap (1 GiB) the lower hold holds');
  });

  test('a snapshot taken under holds compacts the log to the hold, and warns once about the hold past the cap, naming its consumer', async () => {
    const holds = new LogHolds();
    const warnings: { message: string; fields: Record<string, unknown> | undefined }[] = [];
    const logger: Logger = { debug() {}, info() {}, warn: (message, fields) => warnings.push({ message, fields }) };
    // 1,000 entries of 10 bytes the state machine skips (they are not KV commands), all applied,
    // so that a snapshot is taken at 1,000.
    const log = new MemoryLogStore();
    const data = new Uint8Array(10);
    data[0] = NODE_COMMAND_FORMAT;
    log.saveSync({ entries: Array.from({ length: 1_000 }, (_, i) => ({ index: i + 1, term: 2, type: 0, data })) });
    const { host, stateMachine } = await hostWith({ status: follower(), holds, log, logger });
    await stateMachine.apply(log.entries(1, 1_001, Number.POSITIVE_INFINITY));
    const snapshotter = new Snapshotter(host, { catchUpEntries: 10, compactionLogBytesMax: 3_000 });
    snapshotter.noteAppended(log.entries(1, 1_001, Number.POSITIVE_INFINITY));
    holds.apply(hold('copy-far-behind', 400, 10_000), 0);
    holds.apply(hold('copy-near', 800, 10_000), 0);
    const info = await snapshotter.takeNow();
    assert.equal(info.index, 1_000);
    assert.equal(log.firstIndex(), 800, 'compacted through 799: entry 800 is held');
    const holdWarnings = warnings.filter((warning) => warning.message.startsWith('a log hold is ignored'));
    assert.equal(holdWarnings.length, 1, JSON.stringify(warnings));
    assert.equal(holdWarnings[0]?.fields?.['consumer'], 'copy-far-behind');
    await snapshotter.stop();
  });
});

// FailingStore is a snapshot store whose creates fail while `failing` is set.
class FailingStore extends MemorySnapshotStore {
  failing = true;
  creates = 0;
  override async create(source: SnapshotSource, options?: Parameters<SnapshotStore['create']>[1]): Promise<SnapshotInfo> {
    this.creates += 1;
    if (this.failing) throw new StrataError(ErrorCode.IO_ERROR, 'no space left on device (test)');
    return super.create(source, options);
  }
}

// startSolo starts a one-member cluster on `clock` whose snapshots go to `store`.
async function startSolo(driver: ReturnType<typeof virtualDriver>, clock: VirtualClock, store: SnapshotStore, snapshotPolicy: Partial<SnapshotPolicy>): Promise<RaftNode> {
  const network = new MemoryNetwork();
  return track(
    await driver.settle(
      Node.start({
        name: 'solo',
        initialCluster: [{ name: 'solo', peerUrls: ['http://solo.test:2380'] }],
        initialClusterState: 'new',
        initialClusterToken: 'solo',
        advertisePeerUrls: ['http://solo.test:2380'],
        advertiseClientUrls: ['http://solo.test:2379'],
        heartbeatIntervalMs: HEARTBEAT_MS,
        electionTimeoutMs: ELECTION_MS,
        clock,
        storage: async () => ({ log: new MemoryLogStore(), stateMachine: await openMemoryKvStateMachine(), snapshots: store }),
        snapshotPolicy,
        createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock }),
      }),
    ),
    driver,
  );
}

describe('the failure breaker', () => {
  test('after 3 failures in a row snapshots back off, status says so, the member keeps serving; a success closes it', async () => {
    const clock = new VirtualClock();
    const driver = virtualDriver(clock);
    const store = new FailingStore({ clock });
    const node = await startSolo(driver, clock, store, { snapshotCount: 10, failuresBeforeBackoff: 3, backoffMsBase: 60_000 });
    await driver.until('the member leads', () => node.status().role === 'leader');
    for (let i = 0; i < 60; i += 1) await driver.settle(put(node, `k${i}`, 'v'));
    await driver.until('three snapshots failed', () => node.status().snapshots.consecutiveFailures >= 3);
    const open = node.status().snapshots;
    assert.ok(open.backoffRemainingMs > 0, 'the breaker is open');
    assert.match(open.lastError ?? '', /no space left/);
    assert.equal(open.latest, undefined, 'no snapshot was listed');
    assert.equal(open.compactedThrough, 0, 'nothing was compacted without a snapshot');
    const creates = store.creates;
    // While it is open, more writes start no snapshot, and the member keeps serving.
    for (let i = 0; i < 60; i += 1) await driver.settle(put(node, `more${i}`, 'v'));
    assert.equal(store.creates, creates, 'no snapshot is attempted while the breaker is open');
    assert.equal(await driver.settle(read(node, 'more59')), 'v');
    // Once the back-off passes and the disk is healthy again, the next attempt succeeds.
    store.failing = false;
    await driver.advance(61_000);
    await driver.settle(put(node, 'after', 'v'));
    await driver.until('a snapshot succeeded', () => node.status().snapshots.latest !== undefined);
    assert.equal(node.status().snapshots.consecutiveFailures, 0);
    assert.ok(node.status().snapshots.compactedThrough >= 0);
  });
});

describe('a state machine that cannot be read', () => {
  // Found by test/integration/corruption-running.test.ts: a snapshot due by count while the
  // member's state machine was corrupt (waiting for its rebuild) rejected a promise nobody read,
  // and the unhandled rejection stopped the member under the operator's `member rebuild`.
  test('a snapshot due while the state is corrupt fails like any failed snapshot, without an unhandled rejection', async () => {
    const { host } = await hostWith({ status: { ...leaderStatus([]), role: 'follower' as const, progress: new Map() } });
    const corrupt = new StrataError(ErrorCode.CORRUPTION, 'state machine: a stored value fails its CRC32c');
    const snapshotter = new Snapshotter({ ...host, capture: () => Promise.reject(corrupt) }, { snapshotCount: 10 });
    snapshotter.noteApplied(1_000);
    await assert.rejects(snapshotter.takeNow(), (error: unknown) => error instanceof StrataError && error.code === ErrorCode.UNAVAILABLE && /CRC32c/.test(error.message));
    assert.ok(snapshotter.status().consecutiveFailures >= 1);
    assert.equal(snapshotter.status().latest, undefined);
  });
});

// SlowStore is a snapshot store whose creates take `createMs` of the clock's time.
class SlowStore extends MemorySnapshotStore {
  creates = 0;
  private readonly slowClock: VirtualClock;
  private readonly createMs: number;
  constructor(clock: VirtualClock, createMs: number) {
    super({ clock });
    this.slowClock = clock;
    this.createMs = createMs;
  }
  override async create(source: SnapshotSource, options?: Parameters<SnapshotStore['create']>[1]): Promise<SnapshotInfo> {
    this.creates += 1;
    await new Promise<void>((resolve) => this.slowClock.setTimeout(resolve, this.createMs));
    return super.create(source, options);
  }
}

describe('the duty cycle', () => {
  test('snapshots that take 1 s start at most every 10 s, however many entries arrive', async () => {
    const clock = new VirtualClock();
    const driver = virtualDriver(clock);
    const store = new SlowStore(clock, 1_000);
    const node = await startSolo(driver, clock, store, { snapshotCount: 10, snapshotDutyCycleMax: 0.1 });
    await driver.until('the member leads', () => node.status().role === 'leader');
    const startMs = clock.now();
    // 30 s of writes, 20 a second: 60 snapshots' worth by the count alone.
    for (let i = 0; i < 600; i += 1) {
      await driver.settle(put(node, `k${i % 40}`, `v${i}`));
      await driver.advance(50);
    }
    const elapsedS = (clock.now() - startMs) / 1_000;
    assert.ok(elapsedS >= 30, `${elapsedS} s passed`);
    assert.ok(store.creates >= 2 && store.creates <= Math.ceil(elapsedS / 10) + 1, `${store.creates} snapshots in ${elapsedS} s`);
  });
});

describe('an installed snapshot counts in the duty cycle', () => {
  test('after a 2 s restore, the next snapshot waits 18 s, although --snapshot-count is long past', async () => {
    const { host } = await hostWith({ status: { ...leaderStatus([]), role: 'follower' as const, progress: new Map() } });
    const clock = host.clock as VirtualClock;
    const advance = (ms: number): void => {
      clock.setTimeout(() => undefined, ms);
      clock.runNext();
    };
    const snapshotter = new Snapshotter(host, { snapshotCount: 10, snapshotDutyCycleMax: 0.1 });
    snapshotter.noteInstalled(500, 2_000);
    snapshotter.noteApplied(1_000);
    assert.equal(snapshotter.status().taking, false, 'no snapshot right after the install');
    advance(17_000);
    snapshotter.noteApplied(1_000);
    assert.equal(snapshotter.status().taking, false, 'none 17 s after it');
    advance(1_000);
    snapshotter.noteApplied(1_000);
    assert.equal(snapshotter.status().taking, true, 'one 18 s after it');
    await snapshotter.stop();
  });
});

describe('catch-up under steady writes', () => {
  test('a member behind a compacted log catches up by one snapshot or two while writes go on, with a tiny catch-up tail', async () => {
    // No duty-cycle limit: virtual time barely moves while the puts are applied.
    const policy = { snapshotCount: 20, catchUpEntries: 1, sendBytesPerSecond: 1024 * 1024, restoreBytesPerSecondAssumed: 1024 * 1024 * 1024, snapshotDutyCycleMax: 1 };
    const transports = new Map<number, MemoryTransport>();
    const { nodes, driver, network } = await startCluster({ snapshotPolicy: policy, transports, createTransport: (net, identity) => new MemoryTransport(net, identity) });
    const leader = leaderOf(nodes);
    const lagging = nodes.find((node) => node !== leader) as RaftNode;
    network.isolate(lagging.memberId);
    // Enough state that a send takes seconds at 1 MiB/s past its first chunk's burst: 1,000 keys x 8 KiB.
    const value = 'x'.repeat(8192);
    for (let i = 0; i < 1_000; i += 1) await driver.settle(put(leader, `key-${i}`, value));
    await driver.until('the leader compacted past the lagging member', () => leader.status().snapshots.compactedThrough > lagging.status().lastIndex);
    const healedMs = driver.clock.now();
    network.heal();
    // A steady writer for the whole catch-up: one put every 5 ms (virtual), bounded.
    let writes = 0;
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 4_000 && writing; i += 1) {
        await put(leader, `live-${i % 50}`, `w${i}`);
        writes += 1;
        await new Promise<void>((resolve) => driver.clock.setTimeout(resolve, 5));
      }
    })();
    await driver.until('the lagging member caught up under load', () => lagging.status().appliedIndex >= leader.status().appliedIndex - 5, 60_000);
    writing = false;
    const catchUpMs = driver.clock.now() - healedMs;
    await driver.settle(writer);
    const sends = (transports.get(leader.memberId) as MemoryTransport).snapshotStats.sends;
    assert.ok(catchUpMs > 3_000, `the send took time at its rate (${catchUpMs} ms)`);
    assert.ok(writes > 200, `the writer kept writing during the catch-up (${writes} writes)`);
    assert.ok(sends >= 1 && sends <= 2, `the leader sent ${sends} snapshots: a snapshot loop sends one after another`);
  });
});

// The migration executor on real RaftNodes in virtual time (the MigrationCluster twin in
// node-cluster.ts): a whole move from three members to three others; a run killed after each
// step (before the journal says so) and run again; a rollback from each step before the old
// members are removed, which restores the original voters. Writes go on during every run, and
// every acknowledged write is read back at the end.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { MigrationRecord, StepName } from '../../src/migrate/index.ts';
import { MOVE_STEPS, decodeRecord, rollbackMigration, runMigration } from '../../src/migrate/index.ts';
import { RaftNode } from '../../src/node/index.ts';
import { ErrorCode, isStrataError, sleep } from '../../src/util/index.ts';
import type { TestNodes } from '../node/fixture.ts';
import { peerUrl, put, read, startCluster, track } from '../node/fixture.ts';
import { nodesCluster } from './node-cluster.ts';

const NEW_NAMES = ['m1', 'm2', 'm3'];
// Bounds the writes a background writer makes during one run.
const WRITES_MAX = 400;

interface Moving {
  readonly testNodes: TestNodes;
  readonly all: RaftNode[];
  readonly fresh: RaftNode[];
  readonly stopped: Set<RaftNode>;
}

async function startMoving(): Promise<Moving> {
  const testNodes = await startCluster({ nodeOptions: { integrityCheckPolicy: { checkpointEntries: 0, checkpointIntervalMs: 0 } } });
  const { nodes, driver, options } = testNodes;
  for (let index = 0; index < 30; index += 1) await driver.settle(put(nodes[0] as RaftNode, `before/${index}`, `v${index}`));
  const everyone = [...nodes.map((node) => ({ name: node.name, peerUrls: [peerUrl(node.name)] })), ...NEW_NAMES.map((name) => ({ name, peerUrls: [peerUrl(name)] }))];
  // The new members start before they are added, as `serve --join` does once it has learned the cluster.
  const fresh = await Promise.all(NEW_NAMES.map(async (name) => track(await RaftNode.start(options(name, 'existing', everyone)), driver)));
  const stopped = new Set<RaftNode>();
  const all = [...nodes, ...fresh];
  for (const node of all) void node.whenStopped().then(() => stopped.add(node));
  return { testNodes, all, fresh, stopped };
}

const targets = NEW_NAMES.map((name) => ({ name, peerUrls: [peerUrl(name)] }));
const waitingProbe = (url: string): Promise<{ waiting: true; name: string; zone: string }> => Promise.resolve({ waiting: true, name: new URL(url).hostname.split('.')[0] ?? '', zone: 'b' });

// writer puts keys through whichever member answers until told to stop; answers the keys acknowledged.
function startWriter(moving: Moving): { stop: () => Promise<string[]> } {
  let stopping = false;
  const acknowledged: string[] = [];
  const run = (async () => {
    for (let index = 0; index < WRITES_MAX && !stopping; index += 1) {
      const live = moving.all.filter((node) => !moving.stopped.has(node) && !node.status().removed && !node.status().isLearner);
      const node = live[index % Math.max(1, live.length)];
      if (node === undefined) break;
      try {
        await put(node, `during/${index}`, `w${index}`);
        acknowledged.push(`during/${index}`);
      } catch {
        // Not acknowledged: not checked (the history checker of the real-process test checks those).
      }
      await sleep(moving.testNodes.driver.clock, 5);
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      await run;
      return acknowledged;
    },
  };
}

async function checkEnd(moving: Moving, voterNames: readonly string[], acknowledged: readonly string[]): Promise<void> {
  const { driver } = moving.testNodes;
  const voters = moving.all.filter((node) => voterNames.includes(node.name));
  await driver.until('the voters agree on the configuration', () => voters.every((node) => node.configuration().votersOutgoing.length === 0 && node.configuration().voters.length === voterNames.length));
  const ids = voters.map((node) => node.memberId).sort();
  for (const node of voters) assert.deepEqual([...node.configuration().voters].sort(), ids);
  const reader = voters[0] as RaftNode;
  assert.equal(await driver.settle(read(reader, 'before/29')), 'v29');
  for (const key of acknowledged) assert.notEqual(await driver.settle(read(reader, key)), undefined, `acknowledged ${key} is there`);
}

async function journal(moving: Moving): Promise<MigrationRecord> {
  const cluster = nodesCluster(() => moving.all, moving.stopped);
  const info = await moving.testNodes.driver.settle(cluster.readJournal());
  assert.ok(info.record !== undefined);
  return decodeRecord(info.record);
}

describe('migration executor (in-memory members, virtual time)', () => {
  test('a whole move: three old voters to three new ones; the old ones stop by themselves; one leader transfer', async () => {
    const moving = await startMoving();
    const { driver } = moving.testNodes;
    const cluster = nodesCluster(() => moving.all, moving.stopped);
    const writer = startWriter(moving);
    const steps: StepName[] = [];
    const done = await driver.settle(
      runMigration(cluster, { targets, probeJoiner: waitingProbe, clock: driver.clock, onEvent: (event) => (event.type === 'step-done' ? steps.push(event.step) : undefined) }),
      120_000,
    );
    const acknowledged = await driver.settle(writer.stop(), 60_000);
    assert.deepEqual(steps, [...MOVE_STEPS]);
    assert.equal(done.record.next, undefined);
    assert.ok(acknowledged.length > 0);
    await checkEnd(moving, NEW_NAMES, acknowledged);
    const old = moving.testNodes.nodes;
    await driver.until('the old members stopped', () => old.every((node) => moving.stopped.has(node)), 30_000);
    assert.ok(moving.fresh.some((node) => node.status().role === 'leader'));
    const record = await journal(moving);
    assert.equal(record.next, undefined);
    assert.equal(record.log.filter((item) => item.step === 'transfer-leader').length, 1);
  });

  for (const killedAfter of MOVE_STEPS) {
    test(`a run killed after ${killedAfter} (before the journal says so) resumes and finishes`, async () => {
      const moving = await startMoving();
      const { driver } = moving.testNodes;
      const cluster = nodesCluster(() => moving.all, moving.stopped);
      const writer = startWriter(moving);
      const killed = new Error(`killed after ${killedAfter}`);
      await assert.rejects(
        driver.settle(
          runMigration(cluster, {
            targets,
            probeJoiner: waitingProbe,
            clock: driver.clock,
            beforeJournalWrite: (step) => {
              if (step === killedAfter) throw killed;
            },
          }),
          120_000,
        ),
        (error) => error === killed,
      );
      assert.equal((await journal(moving)).next, killedAfter);
      // Run again with no targets: it resumes from the journal.
      const done = await driver.settle(runMigration(cluster, { targets: [], probeJoiner: waitingProbe, clock: driver.clock }), 120_000);
      assert.equal(done.record.next, undefined);
      const acknowledged = await driver.settle(writer.stop(), 60_000);
      await checkEnd(moving, NEW_NAMES, acknowledged);
    });
  }

  for (const killedAfter of MOVE_STEPS.slice(0, MOVE_STEPS.indexOf('remove-old'))) {
    test(`rollback after a run killed after ${killedAfter} restores the original voters`, async () => {
      const moving = await startMoving();
      const { driver } = moving.testNodes;
      const cluster = nodesCluster(() => moving.all, moving.stopped);
      const writer = startWriter(moving);
      const killed = new Error('killed');
      await assert.rejects(
        driver.settle(runMigration(cluster, { targets, probeJoiner: waitingProbe, clock: driver.clock, beforeJournalWrite: (step) => {
          if (step === killedAfter) throw killed;
        } }), 120_000),
        (error) => error === killed,
      );
      const record = await driver.settle(rollbackMigration(cluster, { clock: driver.clock }), 120_000);
      assert.equal(record.next, undefined);
      const acknowledged = await driver.settle(writer.stop(), 60_000);
      const oldNames = moving.testNodes.nodes.map((node) => node.name);
      await checkEnd(moving, oldNames, acknowledged);
      // The new members are gone from the configuration (removed, or learners of a move back that then removed them).
      for (const node of moving.testNodes.nodes) for (const fresh of moving.fresh) assert.ok(!node.configuration().learners.includes(fresh.memberId));
      // Rolling back again finds nothing to undo.
      await assert.rejects(driver.settle(rollbackMigration(cluster, { clock: driver.clock })), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
    });
  }
});

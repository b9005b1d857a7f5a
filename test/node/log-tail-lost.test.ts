// A member whose WAL lost its tail while it was down (whole records cut off, so no torn tail to
// find) must refuse to start rather than rejoin: its state machine has applied entries its log
// no longer holds. Found by asking what the chaos harness's disk nemesis should expect of a
// truncated WAL (issue 15); before the check the member started, and apply would have skipped
// the new entries written at the lost indexes.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { RaftNode } from '../../src/node/index.ts';
import type { RaftNodeOptions } from '../../src/node/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { ErrorCode, isStrataError, SYSTEM_CLOCK } from '../../src/util/index.ts';
import { walRecordEnds } from '../integration/level-corruption.ts';
import { leaderOf, peerUrl, put, systemDriver, track } from './fixture.ts';

const directories: string[] = [];
after(() => {
  for (const directory of directories) rmSync(directory, { recursive: true, force: true });
});

function options(directory: string, network: MemoryNetwork, name: string, cluster: readonly { name: string; peerUrls: string[] }[]): RaftNodeOptions {
  return {
    name,
    dataDir: join(directory, name),
    initialCluster: cluster,
    initialClusterState: 'new',
    initialClusterToken: 'log-tail-test',
    advertisePeerUrls: [peerUrl(name)],
    advertiseClientUrls: [`http://${name}.test:2379`],
    heartbeatIntervalMs: 20,
    electionTimeoutMs: 200,
    clock: SYSTEM_CLOCK,
    createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
  };
}


test('a member whose WAL lost whole records at its tail refuses to start, naming both indexes; an untouched member restarts', async () => {
  const directory = mkdtempSync(join(tmpdir(), 'stratakv-log-tail-'));
  directories.push(directory);
  const driver = systemDriver();
  const network = new MemoryNetwork();
  const cluster = ['n1', 'n2', 'n3'].map((name) => ({ name, peerUrls: [peerUrl(name)] }));
  const nodes = await Promise.all(cluster.map((member) => RaftNode.start(options(directory, network, member.name, cluster))));
  for (const node of nodes) track(node, driver);
  await driver.until('a leader is known everywhere', () => nodes.every((node) => node.status().leaderId !== 0));
  const leader = leaderOf(nodes);
  for (let i = 0; i < 60; i += 1) await driver.settle(put(leader, `k${i % 20}`, `v${i}`));
  const [damaged, untouched] = nodes.filter((node) => node !== leader) as [RaftNode, RaftNode];
  const target = leader.status().appliedIndex;
  await driver.until('the followers applied every put', () => damaged.status().appliedIndex >= target && untouched.status().appliedIndex >= target);
  const appliedIndex = damaged.status().appliedIndex;
  await driver.settle(damaged.stop());
  await driver.settle(untouched.stop());

  // Cut the last 30 whole records off the newest segment: a clean cut, no torn tail.
  const walDirectory = join(directory, damaged.name, 'member', 'wal');
  const newest = readdirSync(walDirectory).filter((name) => name.endsWith('.wal')).sort().pop();
  assert.ok(newest !== undefined, 'the member has a WAL segment');
  const segment = join(walDirectory, newest);
  const ends = walRecordEnds(readFileSync(segment));
  assert.ok(ends.length > 40, `the segment holds records (${ends.length})`);
  truncateSync(segment, ends[ends.length - 31]);

  await assert.rejects(RaftNode.start(options(directory, network, damaged.name, cluster)), (error: unknown) => {
    assert.ok(isStrataError(error, ErrorCode.CORRUPTION), String(error));
    assert.equal(error.details['check'], 'log-behind-state-machine');
    assert.equal(error.details['appliedIndex'], appliedIndex);
    assert.ok((error.details['lastIndex'] as number) < appliedIndex);
    assert.match(error.message, /lost entries/);
    return true;
  });
  const restarted = await RaftNode.start(options(directory, network, untouched.name, cluster));
  track(restarted, driver);
  assert.ok(restarted.status().appliedIndex >= 0);
  await driver.settle(restarted.stop());
  await driver.settle(leader.stop());
});

// The container layer of the chaos harness (issue 15), end to end: the Docker engine, the
// FROM-scratch member image, a network of the run's own and three `stratakv serve` members in
// containers that reach each other by name. From the host: a leader is elected and serves a
// put; a follower killed with SIGKILL comes back from its data folder and serves what was
// written meanwhile; a paused leader is replaced, and rejoins after unpause. At the end no
// container or network of the run is left. Skips (outside CI) when Docker cannot run here.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { EtcdClient } from '../../src/client/index.ts';
import { makeWaitFor } from '../integration/cluster-process.ts';
import { logLinePattern } from '../obs/log-records.ts';
import { cleanupStaleChaos, listChaosResources, startChaosNetwork, startMemberContainer, type ChaosNetwork, type MemberContainer } from './containers.ts';
import { chaosSkipReason, ensureDockerEngine, isEngineUnavailable } from './docker-engine.ts';
import { buildMemberImage } from './image.ts';

const MEMBER_NAMES = ['n1', 'n2', 'n3'];
const CLIENT_PORT = 2379;
const PEER_PORT = 2380;
// A member's JSON log line (src/obs/logger.ts) with the message `serving`.
const READY_LINE = logLinePattern('serving');
const START_TIMEOUT_MS = 20_000;
const LEADER_TIMEOUT_MS = 15_000;
const CATCH_UP_TIMEOUT_MS = 10_000;
const CALL_TIMEOUT_MS = 1_500;
const TEST_TIMEOUT_MS = 180_000;

const waitFor = makeWaitFor(100);
const decoder = new TextDecoder();

function endpointOf(member: MemberContainer): string {
  return `${member.ip()}:${CLIENT_PORT}`;
}

// leaderAmong answers the member all of `members` agree is the leader, or undefined for now.
async function leaderAmong(members: readonly MemberContainer[]): Promise<MemberContainer | undefined> {
  const client = new EtcdClient({ endpoints: members.map(endpointOf), timeoutMs: CALL_TIMEOUT_MS });
  try {
    const statuses = await client.statusAll({ timeoutMs: CALL_TIMEOUT_MS });
    const answered = statuses.flatMap((result) => (result.ok ? [result.status] : []));
    const leaders = new Set(answered.map((status) => status.leaderId));
    if (answered.length !== members.length || leaders.size !== 1 || leaders.has(0n)) return undefined;
    const leaderEndpoint = answered.find((status) => status.memberId === [...leaders][0])?.endpoint;
    return members.find((member) => endpointOf(member) === leaderEndpoint);
  } catch {
    return undefined;
  } finally {
    client.close();
  }
}

// servedValue answers what one member serves for `key` from its own state (a serializable get).
async function servedValue(member: MemberContainer, key: string): Promise<string | undefined> {
  const client = new EtcdClient({ endpoints: [endpointOf(member)], timeoutMs: CALL_TIMEOUT_MS });
  try {
    const answer = await client.get(key, { serializable: true });
    const kv = answer.kvs[0];
    return kv === undefined ? undefined : decoder.decode(kv.value);
  } catch {
    return undefined;
  } finally {
    client.close();
  }
}

const skip = chaosSkipReason();

test('members in containers: elect, serve, survive kill -9 and a paused leader, and leave nothing behind', { skip, timeout: TEST_TIMEOUT_MS }, async (t) => {
  const startedAt = performance.now();
  const log = (line: string): void => t.diagnostic(`${((performance.now() - startedAt) / 1000).toFixed(1)}s ${line}`);
  const engine = await ensureDockerEngine({ log });
  if (isEngineUnavailable(engine)) {
    t.skip(chaosSkipReason(engine.unavailable));
    return;
  }
  const folder = mkdtempSync(join(tmpdir(), 'stratakv-chaos-test-'));
  let network: ChaosNetwork | undefined;
  const members: MemberContainer[] = [];
  try {
    await cleanupStaleChaos({ log });
    const image = await buildMemberImage({ log });
    network = await startChaosNetwork({ log });
    const chaosNetwork = network;
    const addresses = MEMBER_NAMES.map(() => chaosNetwork.allocateAddress());
    const initialCluster = MEMBER_NAMES.map((name) => `${name}=http://${name}:${PEER_PORT}`).join(',');
    const clusterStartedAt = performance.now();
    members.push(
      ...(await Promise.all(
        MEMBER_NAMES.map((name, index) =>
          startMemberContainer({
            network: chaosNetwork,
            image,
            name,
            ipv4Address: addresses[index] ?? '',
            dataDir: join(folder, name),
            readyLine: READY_LINE,
            startTimeoutMs: START_TIMEOUT_MS,
            command: [
              'cmd/stratakv.js', 'serve',
              `--name=${name}`,
              '--data-dir=/data',
              `--listen-client-urls=http://0.0.0.0:${CLIENT_PORT}`,
              `--advertise-client-urls=http://${addresses[index] ?? ''}:${CLIENT_PORT}`,
              `--listen-peer-urls=http://0.0.0.0:${PEER_PORT}`,
              `--initial-advertise-peer-urls=http://${name}:${PEER_PORT}`,
              `--initial-cluster=${initialCluster}`,
              '--initial-cluster-state=new',
              `--initial-cluster-token=${chaosNetwork.runId}`,
              '--heartbeat-interval=50',
              '--election-timeout=500',
            ],
          }),
        ),
      )),
    );
    for (const [index, member] of members.entries()) assert.equal(member.ip(), addresses[index], `${member.name} has the address it was given`);
    const leader = await waitFor('a leader all three members agree on', LEADER_TIMEOUT_MS, () => leaderAmong(members));
    log(`cluster: 3 members up and ${leader.name} leads, ${Math.round(performance.now() - clusterStartedAt)} ms after the first start`);

    const client = new EtcdClient({ endpoints: members.map(endpointOf), timeoutMs: 5_000 });
    try {
      await client.put('chaos/1', 'one');
      assert.equal(decoder.decode((await client.get('chaos/1')).kvs[0]?.value), 'one');

      // kill -9 a follower, write while it is down, start it again: it serves the write from its own state.
      const follower = members.find((member) => member !== leader);
      assert.ok(follower !== undefined);
      await follower.kill();
      assert.equal(follower.state, 'exited');
      assert.equal(await follower.inspectState(), 'exited');
      await client.put('chaos/2', 'written while a follower was down');
      const addressBefore = follower.ip();
      await follower.start();
      assert.equal(follower.ip(), addressBefore, 'a restarted member keeps its fixed address');
      await waitFor(`${follower.name} to serve chaos/2 after its restart`, CATCH_UP_TIMEOUT_MS, () => servedValue(follower, 'chaos/2'));
      assert.match(await follower.logs(), new RegExp(`start #2[\\s\\S]*(${READY_LINE.source})`), 'the log file has both starts');
      log(`kill -9: ${follower.name} restarted and caught up`);

      // Pause the leader: the other two elect a new one and take writes; after unpause the old leader rejoins.
      await leader.pause();
      assert.equal(leader.paused, true);
      const others = members.filter((member) => member !== leader);
      const newLeader = await waitFor('a new leader while the old one is paused', LEADER_TIMEOUT_MS, () => leaderAmong(others));
      assert.notEqual(newLeader, leader);
      const majorityClient = new EtcdClient({ endpoints: others.map(endpointOf), timeoutMs: 5_000 });
      try {
        await majorityClient.put('chaos/3', 'written while the leader was paused');
      } finally {
        majorityClient.close();
      }
      await leader.unpause();
      assert.equal(leader.running, true);
      const agreed = await waitFor('all three to agree on a leader after unpause', LEADER_TIMEOUT_MS, () => leaderAmong(members));
      assert.notEqual(agreed, undefined);
      await waitFor(`${leader.name} to serve chaos/3 after unpause`, CATCH_UP_TIMEOUT_MS, () => servedValue(leader, 'chaos/3'));
      log(`pause: ${newLeader.name} took over from ${leader.name}, which rejoined`);
    } finally {
      client.close();
    }
  } catch (error) {
    const logs = await Promise.all(members.map(async (member) => `--- ${member.name} (${member.logPath}):\n${await member.logTail().catch((failure: unknown) => String(failure))}`));
    throw new Error(`${(error as Error).message}\n${logs.join('\n')}`, { cause: error });
  } finally {
    const runId = network?.runId;
    try {
      await network?.close();
      await cleanupStaleChaos({ log });
      if (runId !== undefined) {
        const left = await listChaosResources(runId);
        assert.deepEqual(left, { containers: [], networks: [] }, `nothing of run ${runId} is left`);
      }
    } finally {
      rmSync(folder, { recursive: true, force: true });
      await engine.stop();
    }
  }
});

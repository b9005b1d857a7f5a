// Defects a review of the driver found (issue 11), each reproduced: every promise RaftNode
// hands out settles by its result, its deadline, its AbortSignal or stop(). Each wait is
// bounded in virtual time, so a promise that never settles fails the test instead of hanging it.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryTransport } from '../../src/transport/index.ts';
import { ErrorCode, isStrataError, StrataError } from '../../src/util/index.ts';
import { encoder, leaderOf, peerUrl, put, startCluster } from './fixture.ts';

// Virtual ms: far beyond every deadline in these tests, so 'still waiting' means never.
const SETTLED_WITHIN_MS = 2_000;

// outcome turns a call into how it settled ('ok' or the error's code), attached at once so
// that an early rejection is never unhandled.
function outcome(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'ok',
    (error: unknown) => (isStrataError(error) ? error.code : String(error)),
  );
}

describe('RaftNode defects (issue 11)', () => {
  test('a linearizable read waiting for apply on a lagging follower honours its deadline, its signal, and stop()', async () => {
    const { network, nodes, driver } = await startCluster();
    const leader = leaderOf(nodes);
    const lagging = nodes.find((node) => node !== leader);
    assert.ok(lagging !== undefined);
    // The follower hears heartbeats and read-index answers but no entries: it knows the
    // leader's commit index and can never apply up to it.
    network.setDropFilter((message) => message.to === lagging.memberId && message.type === 'append' && message.entries.length > 0);
    await driver.settle(put(leader, 'k', 'v'));
    const deadline = outcome(lagging.kv({ type: 'range', key: encoder.encode('k') }, { timeoutMs: 300 }));
    const controller = new AbortController();
    const aborted = outcome(lagging.kv({ type: 'range', key: encoder.encode('k') }, { timeoutMs: 10_000, signal: controller.signal }));
    driver.clock.setTimeout(() => controller.abort(), 100);
    const atStop = outcome(lagging.kv({ type: 'range', key: encoder.encode('k') }, { timeoutMs: 10_000 }));
    assert.equal(await driver.settle(deadline, SETTLED_WITHIN_MS), ErrorCode.TIMEOUT);
    assert.equal(await driver.settle(aborted, SETTLED_WITHIN_MS), ErrorCode.CANCELED);
    const stopped = lagging.stop({ transferLeadership: false });
    assert.equal(await driver.settle(atStop, SETTLED_WITHIN_MS), ErrorCode.STOPPED);
    await driver.settle(stopped);
    network.setDropFilter(undefined);
  });

  test('a membership change that cannot commit ends at its deadline', async () => {
    const { network, nodes, driver } = await startCluster();
    const leader = leaderOf(nodes);
    // Cut off from both followers, the leader appends the change but nobody acknowledges it.
    network.isolate(leader.memberId);
    const change = outcome(leader.addMember([peerUrl('n9')], true, { timeoutMs: 300 }));
    assert.equal(await driver.settle(change, SETTLED_WITHIN_MS), ErrorCode.TIMEOUT);
    network.heal();
  });

  test('two learner additions at once: the second is checked against the table after the first applied, and refused', async () => {
    const { nodes, driver } = await startCluster();
    const leader = leaderOf(nodes);
    const first = outcome(leader.addMember([peerUrl('n4')], true, { timeoutMs: 2_000 }));
    const second = outcome(leader.addMember([peerUrl('n5')], true, { timeoutMs: 2_000 }));
    assert.deepEqual(await driver.settle(Promise.all([first, second])), ['ok', ErrorCode.TOO_MANY_LEARNERS]);
    assert.equal(leader.members().filter((member) => member.isLearner).length, 1);
  });

  test('a NOT_LEADER answer that arrives while the member stops does not leave the write unsettled', async () => {
    const transports = new Map<number, HeldForwardTransport>();
    const { nodes, driver } = await startCluster({ transports, createTransport: (network, identity) => new HeldForwardTransport(network, identity) });
    const leader = leaderOf(nodes);
    const follower = nodes.find((node) => node !== leader);
    assert.ok(follower !== undefined);
    const transport = transports.get(follower.memberId);
    assert.ok(transport !== undefined);
    transport.holdForwards = true;
    const write = outcome(put(follower, 'held', 'v'));
    await driver.until('the write is on its way to the leader', () => transport.heldForwards.length === 1);
    const stopping = follower.stop({ transferLeadership: false });
    // The leader's answer comes back during the stop: it had lost leadership.
    for (const reject of transport.heldForwards) reject(new StrataError(ErrorCode.NOT_LEADER, 'etcdserver: not leader'));
    await driver.settle(stopping);
    // It had been passed on when the stop began, so its outcome is unknown (TIMEOUT), not "server stopped".
    assert.equal(await driver.settle(write, SETTLED_WITHIN_MS), ErrorCode.TIMEOUT);
  });
});

// HeldForwardTransport holds this member's forwarding calls ('propose') until the test answers them.
class HeldForwardTransport extends MemoryTransport {
  holdForwards = false;
  readonly heldForwards: ((error: StrataError) => void)[] = [];
  override request(...args: Parameters<MemoryTransport['request']>): Promise<Uint8Array> {
    if (this.holdForwards && args[1] === 'propose') return new Promise((_resolve, reject) => this.heldForwards.push(reject));
    return super.request(...args);
  }
}

// Found by the seeded cluster simulation (seed 7100181) once joint replacements ran: a leader
// that applied its own removal hands over only when every remaining voter has acknowledged the
// removal, and until then refuses writes with MEMBER_REMOVED. A write a healthy follower passed
// to it failed with MEMBER_REMOVED, as if the follower had been removed; nothing was proposed,
// so it is passed on to the next leader instead.
describe('RaftNode defects found by the cluster simulation', () => {
  test('a write forwarded to a leader that was just removed goes to the next leader instead of failing with MEMBER_REMOVED', async () => {
    const { network, nodes, driver } = await startCluster({ size: 4 });
    const leader = leaderOf(nodes);
    const [follower, cutOff] = nodes.filter((node) => node !== leader);
    assert.ok(follower !== undefined && cutOff !== undefined);
    await driver.settle(put(follower, 'before', 'v'));
    // The removed leader cannot reach one remaining voter, so its hand-over waits.
    network.disconnect(leader.memberId, cutOff.memberId);
    await driver.settle(leader.removeMember(leader.memberId));
    await driver.until('the leader applied its own removal', () => leader.status().removed);
    assert.equal(follower.status().leaderId, leader.memberId);
    const write = outcome(follower.kv({ type: 'put', key: encoder.encode('during'), value: encoder.encode('v') }, { timeoutMs: 1_500 }));
    await driver.advance(300);
    network.reconnect(leader.memberId, cutOff.memberId);
    assert.equal(await driver.settle(write, SETTLED_WITHIN_MS), 'ok');
    assert.notEqual(follower.status().leaderId, leader.memberId);
  });
});

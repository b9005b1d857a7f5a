// Log holds (src/node/log-holds.ts): the logHold node command's encoding and checks, the
// table each member applies it to (renew, move, release, expiry, the bound), and on real
// RaftNodes (virtual time) a hold placed through a follower that every member applies and
// honours across several snapshots (where it alone keeps the entry) until it is released or
// expires.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { RaftNode } from '../../src/node/index.ts';
import type { LogHoldCommand } from '../../src/node/log-holds.ts';
import { checkLogHoldRequest, LOG_HOLD_CONSUMER_BYTES_MAX, LOG_HOLD_TTL_MS_MAX, LOG_HOLDS_MAX, LogHolds } from '../../src/node/log-holds.ts';
import { decodeNodeCommand, encodeNodeCommand } from '../../src/node/node-command.ts';
import { isKvCommand, NODE_COMMAND_FORMAT } from '../../src/storage/index.ts';
import { AssertionFailure } from '../../src/util/assert.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import type { Driver } from './fixture.ts';
import { leaderOf, put, startCluster } from './fixture.ts';

const hold = (consumer: string, index: number, expiresAtMs: number): LogHoldCommand => ({ type: 'logHold', consumer, index, expiresAtMs });

// encodeRaw encodes what a damaged or foreign entry could hold, bypassing encodeNodeCommand's checks.
function encodeRaw(value: unknown): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(value));
  const data = new Uint8Array(json.byteLength + 1);
  data[0] = NODE_COMMAND_FORMAT;
  data.set(json, 1);
  return data;
}

const isCode = (code: ErrorCode, field?: string) => (error: unknown): boolean => isStrataError(error, code) && (field === undefined || error.details['field'] === field);

describe('the logHold node command', () => {
  test('encodes as a node command (the KV state machine and the copiers skip it) and decodes to itself', () => {
    for (const command of [hold('copy-1f2e', 12_345, 1_700_000_000_000), hold('ü'.repeat(32), 1, 1), hold('c', 0, 0)]) {
      const data = encodeNodeCommand(command);
      assert.equal(data[0], NODE_COMMAND_FORMAT);
      assert.equal(isKvCommand(data), false);
      assert.deepEqual(decodeNodeCommand(data), command);
    }
  });

  test('a malformed one is CORRUPTION when decoded, and an assertion when encoded', () => {
    const good = { type: 'logHold', consumer: 'copy', index: 5, expiresAtMs: 10 };
    const malformed: Record<string, unknown>[] = [
      { ...good, consumer: '' },
      { ...good, consumer: 'x'.repeat(LOG_HOLD_CONSUMER_BYTES_MAX + 1) },
      { ...good, consumer: 'é'.repeat(LOG_HOLD_CONSUMER_BYTES_MAX / 2 + 1) },
      { ...good, consumer: 'a\nb' },
      { ...good, consumer: 7 },
      { ...good, index: -1 },
      { ...good, index: 1.5 },
      { ...good, index: 2 ** 53 },
      { ...good, index: '5' },
      { ...good, expiresAtMs: -1 },
      { ...good, expiresAtMs: undefined },
    ];
    for (const value of malformed) {
      assert.throws(() => decodeNodeCommand(encodeRaw(value)), isCode(ErrorCode.CORRUPTION), JSON.stringify(value));
      assert.throws(() => encodeNodeCommand(value as unknown as LogHoldCommand), AssertionFailure, JSON.stringify(value));
    }
    assert.equal(decodeNodeCommand(encodeRaw({ ...good, consumer: 'x'.repeat(LOG_HOLD_CONSUMER_BYTES_MAX) })).type, 'logHold', '64 bytes is allowed');
  });

  test('a request is refused INVALID_ARGUMENT naming the field', () => {
    checkLogHoldRequest('copy', 1, 1);
    checkLogHoldRequest('copy', 1, LOG_HOLD_TTL_MS_MAX);
    checkLogHoldRequest('copy', 0, 0);
    assert.throws(() => checkLogHoldRequest('', 1, 1_000), isCode(ErrorCode.INVALID_ARGUMENT, 'consumer'));
    assert.throws(() => checkLogHoldRequest('x'.repeat(65), 1, 1_000), isCode(ErrorCode.INVALID_ARGUMENT, 'consumer'));
    assert.throws(() => checkLogHoldRequest('tab\there', 1, 1_000), isCode(ErrorCode.INVALID_ARGUMENT, 'consumer'));
    assert.throws(() => checkLogHoldRequest('\ud800', 1, 1_000), isCode(ErrorCode.INVALID_ARGUMENT, 'consumer'));
    assert.throws(() => checkLogHoldRequest('copy', -1, 1_000), isCode(ErrorCode.INVALID_ARGUMENT, 'index'));
    assert.throws(() => checkLogHoldRequest('copy', 0.5, 1_000), isCode(ErrorCode.INVALID_ARGUMENT, 'index'));
    assert.throws(() => checkLogHoldRequest('copy', 1, 0), isCode(ErrorCode.INVALID_ARGUMENT, 'ttl_ms'));
    assert.throws(() => checkLogHoldRequest('copy', 1, LOG_HOLD_TTL_MS_MAX + 1), isCode(ErrorCode.INVALID_ARGUMENT, 'ttl_ms'));
    assert.throws(() => checkLogHoldRequest('copy', 0, LOG_HOLD_TTL_MS_MAX + 1), isCode(ErrorCode.INVALID_ARGUMENT, 'ttl_ms'));
  });
});

describe('the holds a member applies', () => {
  test('a hold is renewed or moved by the next command of its consumer, released by index 0, and expires by the wall clock', () => {
    const holds = new LogHolds();
    assert.deepEqual(holds.apply(hold('a', 100, 5_000), 0), {});
    assert.deepEqual(holds.apply(hold('b', 50, 2_000), 0), {});
    assert.deepEqual(holds.unexpired(0).map((one) => [one.consumer, one.index]), [['b', 50], ['a', 100]], 'lowest index first');
    holds.apply(hold('b', 150, 9_000), 1_000);
    assert.deepEqual(holds.unexpired(1_000).map((one) => [one.consumer, one.index]), [['a', 100], ['b', 150]], 'moved');
    assert.deepEqual(holds.unexpired(5_000).map((one) => one.consumer), ['b'], 'a expired at its deadline');
    holds.apply(hold('b', 0, 0), 1_000);
    assert.deepEqual(holds.unexpired(1_000).map((one) => one.consumer), ['a'], 'b released');
    holds.apply(hold('a', 100, 4_000), 4_000);
    assert.equal(holds.size, 0, 'a command that expired already (replayed after a restart) holds nothing: as a release');
  });

  test(`at most ${LOG_HOLDS_MAX} consumers: another is refused UNAVAILABLE until one expires; known ones are always renewed`, () => {
    const holds = new LogHolds();
    for (let i = 0; i < LOG_HOLDS_MAX; i += 1) assert.deepEqual(holds.apply(hold(`c${i}`, 10 + i, i === 0 ? 1_000 : 60_000), 0), {});
    assert.equal(holds.admits('new', 0), false);
    assert.equal(holds.admits('c5', 0), true);
    const refused = holds.apply(hold('new', 5, 60_000), 500);
    assert.ok(refused.error !== undefined && isStrataError(refused.error, ErrorCode.UNAVAILABLE), 'refused');
    assert.equal(holds.size, LOG_HOLDS_MAX);
    assert.equal(holds.unexpired(500).some((one) => one.consumer === 'new'), false, 'nothing changed');
    assert.deepEqual(holds.apply(hold('c5', 20, 70_000), 500), {}, 'a known consumer renews when the table is full');
    assert.equal(holds.admits('new', 1_000), true, 'c0 expired');
    assert.deepEqual(holds.apply(hold('new', 5, 60_000), 1_000), {}, 'the expired hold is dropped to make room');
    assert.equal(holds.size, LOG_HOLDS_MAX);
    assert.equal(holds.unexpired(1_000)[0]?.consumer, 'new');
  });
});

describe('log holds on real members', () => {
  // Snapshots every 20 entries, with a tail of at least 5 (in virtual time the tail sized by the
  // write rate is a few hundred entries): the writes go on until a member's snapshot is far
  // enough past the hold that, without it, the member would have compacted past it.
  const policy = { snapshotCount: 20, catchUpEntries: 5, snapshotDutyCycleMax: 1 };
  const PUTS_MAX = 2_000;

  // putUntil puts keys on `node` until `done` holds, at most PUTS_MAX.
  async function putUntil(driver: Driver, node: RaftNode, prefix: string, what: string, done: () => boolean): Promise<void> {
    for (let i = 0; i < PUTS_MAX && !done(); i += 1) await driver.settle(put(node, `${prefix}-${i % 10}`, `v${i}`));
    assert.ok(done(), `${PUTS_MAX} puts and still not ${what}`);
  }

  // pastHold: the member's newest snapshot minus its catch-up tail is past `index`: only a hold keeps `index`.
  const pastHold = (node: RaftNode, index: number): boolean => {
    const { latest, catchUpEntries } = node.status().snapshots;
    return latest !== undefined && latest.index - catchUpEntries > index + 10;
  };

  test('a hold placed through a follower holds every member\'s log across snapshots until it is released', async () => {
    const { nodes, driver } = await startCluster({ snapshotPolicy: policy });
    const leader = leaderOf(nodes);
    const follower = nodes.find((node) => node !== leader) as RaftNode;
    await putUntil(driver, leader, 'before', 'ten entries', () => leader.status().appliedIndex >= 10);
    const heldIndex = leader.status().appliedIndex + 1;
    const answer = await driver.settle(follower.holdLog('copy-test', heldIndex, 600_000));
    assert.equal(answer.expiresAtMs, Math.floor(driver.clock.now()) + 600_000, 'the proposer\'s wall clock (the virtual clock here) plus the ttl');
    await driver.until('every member applied the hold', () => nodes.every((node) => node.logHoldList().some((one) => one.consumer === 'copy-test' && one.index === heldIndex)));
    await putUntil(driver, leader, 'held', 'every member took several snapshots past the hold', () =>
      nodes.every((node) => pastHold(node, heldIndex) && (node.status().snapshots.latest?.index ?? 0) >= heldIndex + 3 * policy.snapshotCount),
    );
    for (const node of nodes) {
      const { compactedThrough, logHolds, logHoldIndexLowest, latest } = node.status().snapshots;
      assert.ok(compactedThrough <= heldIndex - 1, `member ${node.name} compacted through ${compactedThrough}, past the hold at ${heldIndex}`);
      assert.ok((latest?.index ?? 0) >= heldIndex + 3 * policy.snapshotCount, 'several snapshots were taken meanwhile');
      assert.equal(logHolds, 1);
      assert.equal(logHoldIndexLowest, heldIndex);
      assert.equal(node.readCommittedEntries(heldIndex, heldIndex, 1_024).length, 1, `member ${node.name} still holds entry ${heldIndex}`);
    }
    await driver.settle(follower.holdLog('copy-test', 0, 0));
    await driver.until('every member applied the release', () => nodes.every((node) => node.logHoldList().length === 0));
    await putUntil(driver, leader, 'released', 'every member compacted past the released hold', () => nodes.every((node) => node.status().snapshots.compactedThrough > heldIndex));
  });

  test('a hold expires by the wall clock; a bad consumer is refused before anything is proposed', async () => {
    const { nodes, driver } = await startCluster({ snapshotPolicy: policy });
    const leader = leaderOf(nodes);
    await putUntil(driver, leader, 'before', 'five entries', () => leader.status().appliedIndex >= 5);
    const lastBefore = leader.status().lastIndex;
    await assert.rejects(driver.settle(leader.holdLog('', 1, 1_000)), isCode(ErrorCode.INVALID_ARGUMENT, 'consumer'));
    await assert.rejects(driver.settle(leader.holdLog('copy', 1, LOG_HOLD_TTL_MS_MAX + 1)), isCode(ErrorCode.INVALID_ARGUMENT, 'ttl_ms'));
    assert.equal(leader.status().lastIndex, lastBefore, 'nothing was proposed');
    const heldIndex = leader.status().appliedIndex + 1;
    const ttlMs = 60_000;
    const { expiresAtMs } = await driver.settle(leader.holdLog('copy-short', heldIndex, ttlMs));
    await putUntil(driver, leader, 'held', 'the leader snapshotted past the hold', () => pastHold(leader, heldIndex));
    assert.ok(driver.clock.now() < expiresAtMs, 'the writes took less than the ttl (virtual time)');
    assert.ok(leader.status().snapshots.compactedThrough <= heldIndex - 1, 'held while unexpired');
    await driver.advance(expiresAtMs - driver.clock.now() + 1);
    assert.deepEqual(leader.logHoldList(), [], 'expired');
    await putUntil(driver, leader, 'expired', 'the leader compacted past the expired hold', () => leader.status().snapshots.compactedThrough > heldIndex);
  });
});

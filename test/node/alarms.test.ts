// The alarm parts on their own: AlarmSet (deterministic, bounded), the alarm node command and
// the member table a snapshot carries (the 3-field form of snapshots from before alarms still
// reads), and BackendQuota (etcd's cost, a size measured at most once per second, a compaction
// measured before the next check). Alarms in running clusters: alarms-cluster.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Packr } from 'msgpackr';
import { ALARMS_MAX, AlarmSet, describeAlarm } from '../../src/node/alarms.ts';
import { BackendQuota, QUOTA_BACKEND_BYTES_DEFAULT, QUOTA_KV_OVERHEAD_BYTES, QUOTA_SIZE_MAX_AGE_MS, quotaBytesFor, quotaCost } from '../../src/node/backend-quota.ts';
import { decodeNodeCommand, encodeNodeCommand } from '../../src/node/node-command.ts';
import { decodeMembershipState, decodeSnapshotDescriptor, encodeMembershipState, encodeSnapshotDescriptor } from '../../src/node/snapshot-descriptor.ts';
import { isKvCommand, NODE_COMMAND_FORMAT } from '../../src/storage/index.ts';
import { SILENT_LOGGER } from '../../src/raft/index.ts';
import { ErrorCode, isStrataError, VirtualClock } from '../../src/util/index.ts';

const encoder = new TextEncoder();

describe('AlarmSet', () => {
  test('activate and deactivate answer whether the set changed; list is ordered by member, then type', () => {
    const set = new AlarmSet();
    assert.equal(set.activate(7, 'CORRUPT'), true);
    assert.equal(set.activate(7, 'CORRUPT'), false, 'raising a raised alarm changes nothing');
    assert.equal(set.activate(3, 'NOSPACE'), true);
    assert.equal(set.activate(7, 'NOSPACE'), true);
    assert.equal(set.activate(0, 'CORRUPT'), true);
    assert.deepEqual(set.list(), [
      { memberId: 0, alarm: 'CORRUPT' },
      { memberId: 3, alarm: 'NOSPACE' },
      { memberId: 7, alarm: 'NOSPACE' },
      { memberId: 7, alarm: 'CORRUPT' },
    ]);
    assert.ok(set.has(7, 'CORRUPT') && set.hasType('NOSPACE') && !set.has(3, 'CORRUPT'));
    assert.deepEqual(set.ofType('NOSPACE'), [{ memberId: 3, alarm: 'NOSPACE' }, { memberId: 7, alarm: 'NOSPACE' }]);
    assert.equal(set.deactivate(3, 'CORRUPT'), false, 'clearing an alarm that is not raised is a no-op');
    assert.equal(set.deactivate(7, 'CORRUPT'), true);
    assert.deepEqual(set.deactivateAll('NOSPACE'), [{ memberId: 3, alarm: 'NOSPACE' }, { memberId: 7, alarm: 'NOSPACE' }]);
    assert.equal(set.hasType('NOSPACE'), false);
    assert.deepEqual(set.list(), [{ memberId: 0, alarm: 'CORRUPT' }]);
  });

  test('the set is bounded: an activation past ALARMS_MAX changes nothing', () => {
    const set = new AlarmSet();
    for (let id = 1; id <= ALARMS_MAX; id += 1) assert.equal(set.activate(id, 'NOSPACE'), true);
    assert.equal(set.activate(ALARMS_MAX + 1, 'NOSPACE'), false);
    assert.equal(set.size, ALARMS_MAX);
    assert.equal(set.has(ALARMS_MAX + 1, 'NOSPACE'), false);
  });

  test('restore replaces the set; a bad member id or type is a programming error', () => {
    const set = new AlarmSet();
    set.activate(1, 'NOSPACE');
    set.restore([{ memberId: 9, alarm: 'CORRUPT' }]);
    assert.deepEqual(set.list(), [{ memberId: 9, alarm: 'CORRUPT' }]);
    assert.throws(() => set.activate(-1, 'NOSPACE'));
    assert.throws(() => set.activate(1.5, 'NOSPACE'));
    assert.throws(() => set.activate(1, 'NONE' as 'NOSPACE'));
  });

  test('an alarm reads as etcd writes an AlarmMember', () => {
    assert.equal(describeAlarm({ memberId: 3319814642761, alarm: 'NOSPACE' }), 'memberID:3319814642761 alarm:NOSPACE ');
  });
});

describe('the alarm node command', () => {
  test('round-trips, and is not a KV command', () => {
    for (const command of [
      { type: 'alarm', action: 'activate', memberId: 0x1234, alarm: 'NOSPACE' },
      { type: 'alarm', action: 'deactivate', memberId: 0, alarm: 'CORRUPT' },
    ] as const) {
      const data = encodeNodeCommand(command);
      assert.equal(data[0], NODE_COMMAND_FORMAT);
      assert.equal(isKvCommand(data), false);
      assert.deepEqual(decodeNodeCommand(data), command);
    }
  });

  test('a malformed alarm command is CORRUPTION', () => {
    const raw = (value: unknown): Uint8Array => Uint8Array.of(NODE_COMMAND_FORMAT, ...encoder.encode(JSON.stringify(value)));
    for (const bad of [
      { type: 'alarm', action: 'arm', memberId: 1, alarm: 'NOSPACE' },
      { type: 'alarm', action: 'activate', memberId: -1, alarm: 'NOSPACE' },
      { type: 'alarm', action: 'activate', memberId: '1', alarm: 'NOSPACE' },
      { type: 'alarm', action: 'activate', memberId: 1, alarm: 'NONE' },
      { type: 'alarm', action: 'activate', memberId: 1 },
      { type: 'alarms', action: 'activate', memberId: 1, alarm: 'NOSPACE' },
    ]) {
      assert.throws(() => decodeNodeCommand(raw(bad)), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION), JSON.stringify(bad));
    }
    assert.throws(() => decodeNodeCommand(Uint8Array.of(NODE_COMMAND_FORMAT, 0x7b)), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
  });
});

describe('the member table a snapshot carries', () => {
  const member = { id: 0xabc, name: 'n1', peerUrls: ['http://n1:2380'], clientUrls: ['http://n1:2379'], isLearner: false, zone: '' };
  const table = { members: [member], removed: [5], published: [0xabc] };

  test('carries the alarms, in the footer and in the descriptor', () => {
    const alarms = [{ memberId: 0, alarm: 'CORRUPT' as const }, { memberId: 0xabc, alarm: 'NOSPACE' as const }];
    assert.deepEqual(decodeMembershipState(encodeMembershipState({ ...table, alarms })), { ...table, alarms });
    const descriptor = { snapshotId: '0000000000000002-0000000000000010', byteLength: 4096, sha256: 'ab'.repeat(32), membership: { ...table, alarms } };
    assert.deepEqual(decodeSnapshotDescriptor(encodeSnapshotDescriptor(descriptor)), descriptor);
  });

  test('a table without alarms is written in the 3-field form, which older snapshots have and which still reads', () => {
    const packr = new Packr({ useRecords: false, moreTypes: false });
    const encoded = encodeMembershipState({ ...table, alarms: [] });
    const fields = (packr.unpack(encoded) as unknown[])[1] as unknown[];
    assert.equal(fields.length, 3);
    // Bytes as a snapshot from before alarms wrote them.
    const old = packr.pack([1, [[[member.id, member.name, member.peerUrls, member.clientUrls, member.isLearner]], [5], [0xabc]]]);
    const decoded = decodeMembershipState(old);
    assert.equal(decoded.alarms, undefined);
    assert.deepEqual(decoded, table);
  });

  test('a malformed alarm list is CORRUPTION', () => {
    const packr = new Packr({ useRecords: false, moreTypes: false });
    for (const alarms of [[[1, 'NONE']], [[-1, 'NOSPACE']], [[1]], 'NOSPACE', Array.from({ length: ALARMS_MAX + 1 }, (_, index) => [index + 1, 'NOSPACE'])]) {
      const bytes = packr.pack([1, [[], [], [], alarms]]);
      assert.throws(() => decodeMembershipState(bytes), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION), JSON.stringify(alarms).slice(0, 60));
    }
  });
});

describe('BackendQuota', () => {
  const put = (key: string, valueBytes: number) => ({ type: 'put' as const, key: encoder.encode(key), value: new Uint8Array(valueBytes) });

  test('the flag as etcd reads it: 0 is 2 GiB, negative disables the quota', () => {
    assert.equal(quotaBytesFor(undefined), QUOTA_BACKEND_BYTES_DEFAULT);
    assert.equal(quotaBytesFor(0), 2 * 1024 * 1024 * 1024);
    assert.equal(quotaBytesFor(4096), 4096);
    assert.equal(quotaBytesFor(-1), Number.POSITIVE_INFINITY);
  });

  test("a write costs as in etcd: a Put its key, value and overhead; a Txn its costlier branch's Puts; reads and deletes nothing", () => {
    assert.equal(quotaCost(put('abc', 100)), 3 + 100 + QUOTA_KV_OVERHEAD_BYTES);
    const range = { type: 'range' as const, key: encoder.encode('a') };
    const remove = { type: 'deleteRange' as const, key: encoder.encode('a') };
    assert.equal(quotaCost(range), 0);
    assert.equal(quotaCost(remove), 0);
    assert.equal(quotaCost({ type: 'txn', compare: [], success: [range, remove], failure: [remove] }), 0);
    assert.equal(quotaCost({ type: 'txn', compare: [], success: [put('a', 10), range], failure: [put('bb', 50), put('c', 1)] }), 2 + 50 + 1 + 1 + 2 * QUOTA_KV_OVERHEAD_BYTES);
  });

  test('the size is measured in the background, at most once per QUOTA_SIZE_MAX_AGE_MS', async () => {
    const clock = new VirtualClock();
    let size = 0;
    let measurements = 0;
    const quota = new BackendQuota({ clock, logger: SILENT_LOGGER, measure: async () => ((measurements += 1), size) }, 10_000);
    assert.equal(quota.available(100), true);
    await quota.idle();
    assert.equal(measurements, 1);
    size = 9_950;
    // Stale only after QUOTA_SIZE_MAX_AGE_MS: the cached size answers meanwhile.
    for (let i = 0; i < 50; i += 1) assert.equal(quota.available(100), true);
    await quota.idle();
    assert.equal(measurements, 1, 'no measurement within the age limit');
    await clock.run({ untilMs: QUOTA_SIZE_MAX_AGE_MS });
    assert.equal(quota.available(100), true, 'the stale size answers while the new one is measured');
    await quota.idle();
    assert.equal(measurements, 2);
    assert.equal(quota.sizeBytes, 9_950);
    assert.equal(quota.available(49), true);
    assert.equal(quota.available(50), false, 'size + cost must stay below the quota, as in etcd');
    assert.equal(quota.available(0), true, 'what costs nothing always fits');
  });

  test('after a compaction the size is measured again before the next check', async () => {
    const clock = new VirtualClock();
    let size = 20_000;
    const quota = new BackendQuota({ clock, logger: SILENT_LOGGER, measure: async () => size }, 10_000);
    quota.refreshIfStale();
    await quota.idle();
    assert.equal(quota.available(1), false);
    let finish: () => void = () => undefined;
    const compaction = new Promise<void>((resolve) => (finish = resolve));
    const settled = quota.settleAfter(compaction);
    assert.ok(quota.whenSettled !== undefined, 'checks wait while the compaction runs');
    size = 1_000;
    finish();
    await settled;
    assert.equal(quota.whenSettled, undefined);
    assert.equal(quota.available(1), true, 'the size after the compaction is the one checked');
    // A failed compaction is logged, and the size is measured all the same.
    size = 2_000;
    await quota.settleAfter(Promise.reject(new Error('LevelDB refused')));
    assert.equal(quota.sizeBytes, 2_000);
  });

  test('a disabled quota never measures and always fits', async () => {
    let measurements = 0;
    const quota = new BackendQuota({ clock: new VirtualClock(), logger: SILENT_LOGGER, measure: async () => ((measurements += 1), 1e12) }, quotaBytesFor(-1));
    assert.equal(quota.enabled, false);
    assert.equal(quota.available(1e9), true);
    quota.refreshIfStale();
    await quota.idle();
    assert.equal(measurements, 0);
  });
});

// Admin.LogHold end to end with real processes: a 3-member cluster that snapshots every 300
// entries and keeps a catch-up tail of at least 50 (as copy-stratakv.test.ts's source), a hold
// at index I placed through the copier's LogCopySource (stratakvSource.hold, any member), then
// 2,400 writes: several snapshots on every member, each of which, without the hold, would have
// compacted past I (every member logs that the hold held its compaction back). A follow from
// I + 1 on every member still gets entries from I + 1. Once the hold is released, more writes
// let every member compact past I, and the same follow answers COMPACTED, as it would have
// without the hold.
//
// The writes are paced (PUTS_PER_SECOND): the catch-up tail grows with the measured write rate
// (about 10 s of writes), and at full speed it alone would keep I for the whole test.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { EtcdClient } from '../../src/client/index.ts';
import { stratakvSource } from '../../src/migrate/copy/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import type { MemberProcess } from './cluster-process.ts';
import { sleep, TestCluster } from './cluster-process.ts';
import { readLogRecords } from '../obs/log-records.ts';

const SERVE_ARGS = ['--snapshot-count=300', '--snapshot-catchup-entries=50'];
const CONSUMER = 'log-hold-it';
const HOLD_TTL_MS = 10 * 60_000;
const HELD_WRITES = 2_400;
const PUTS_PER_SECOND = 120;
/** RELEASED_ROUNDS_MAX bounds the rounds of SNAPSHOT_COUNT writes after the release. */
const RELEASED_ROUNDS_MAX = 20;
const SNAPSHOT_COUNT = 300;
const WAIT_MS_MAX = 60_000;

/** putPaced puts `count` keys under `prefix`, at most PUTS_PER_SECOND a second. */
async function putPaced(client: EtcdClient, prefix: string, count: number): Promise<void> {
  const startedMs = Date.now();
  for (let i = 0; i < count; i += 1) {
    await client.put(`${prefix}/${i % 200}`, `v${i}`, { timeoutMs: 10_000 });
    const dueMs = startedMs + ((i + 1) * 1_000) / PUTS_PER_SECOND;
    if (Date.now() < dueMs) await sleep(dueMs - Date.now());
  }
}

/** logFields answers the fields of the member's log lines with `message` (a line cut by a concurrent write is read whole next time). */
function logFields(member: MemberProcess, message: string): Readonly<Record<string, unknown>>[] {
  return readLogRecords(member.logPath)
    .filter((record) => record.name === member.name && record.msg === message)
    .map((record) => record.fields);
}

/** firstBatch follows the member's log from `fromIndex` and answers the first index it sends, or the error (COMPACTED). */
async function firstBatch(member: MemberProcess, fromIndex: number): Promise<{ index: number } | { error: unknown }> {
  const source = stratakvSource([member.endpoint]);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 20_000);
  try {
    for await (const batch of source.follow(fromIndex, controller.signal)) {
      if (batch.kind === 'entries') return { index: batch.entries[0]?.index ?? 0 };
    }
    return { error: new Error('the follow ended') };
  } catch (error) {
    return { error };
  } finally {
    clearTimeout(timer);
    controller.abort();
    source.close();
  }
}

describe('log holds on a 3-process cluster', () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start(3, { serveArgs: SERVE_ARGS });
  });

  after(async () => {
    await cluster?.stop();
  });

  test('a held index stays in every member\'s log through several snapshots; released, it is compacted', { timeout: 240_000 }, async () => {
    const client = cluster.client(10_000);
    const source = stratakvSource(cluster.endpoints());
    try {
      await putPaced(client, 'before', 50);
      const statuses = await client.statusAll({ timeoutMs: 5_000 });
      const heldIndex = Math.max(...statuses.flatMap((answer) => (answer.ok ? [answer.status.raftAppliedIndex] : [])));
      assert.ok(heldIndex > 50, `the members applied the first writes (${heldIndex})`);
      await assert.rejects(source.hold('', heldIndex, HOLD_TTL_MS), (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === 'consumer');
      await source.hold(CONSUMER, heldIndex, HOLD_TTL_MS);

      await putPaced(client, 'held', HELD_WRITES);
      for (const member of cluster.members) {
        const deadline = Date.now() + WAIT_MS_MAX;
        let saved: Record<string, unknown>[] = [];
        let held: Record<string, unknown>[] = [];
        for (let poll = 0; Date.now() < deadline && poll < WAIT_MS_MAX / 250; poll += 1) {
          saved = logFields(member, 'snapshot saved').filter((fields) => Number(fields['index']) > heldIndex);
          held = logFields(member, 'compaction held back by a log hold').filter((fields) => fields['consumer'] === CONSUMER);
          if (saved.length >= 3 && held.length >= 1) break;
          await sleep(250);
        }
        assert.ok(saved.length >= 3, `${member.name} took ${saved.length} snapshots past ${heldIndex}`);
        assert.ok(held.length >= 1, `${member.name}'s compaction was held back by the hold: without it, it would have compacted past ${heldIndex}`);
        for (const fields of saved) assert.ok(Number(fields['compactedThrough']) <= heldIndex - 1, `${member.name} compacted through ${String(fields['compactedThrough'])}, past the hold at ${heldIndex}`);
        const read = await firstBatch(member, heldIndex + 1);
        assert.deepEqual(read, { index: heldIndex + 1 }, `${member.name} streams its log from ${heldIndex + 1}`);
      }

      await source.hold(CONSUMER, 0, 0);
      const compacted = new Set<string>();
      for (let round = 0; round < RELEASED_ROUNDS_MAX && compacted.size < cluster.members.length; round += 1) {
        await putPaced(client, `released-${round}`, SNAPSHOT_COUNT);
        for (const member of cluster.members) {
          if (compacted.has(member.name)) continue;
          const read = await firstBatch(member, heldIndex + 1);
          if ('error' in read) {
            assert.ok(isStrataError(read.error, ErrorCode.COMPACTED), `${member.name}: ${String(read.error)}`);
            compacted.add(member.name);
          }
        }
      }
      assert.equal(compacted.size, cluster.members.length, `released, every member compacted past ${heldIndex} and a follow from ${heldIndex + 1} answers COMPACTED (${[...compacted].join(',')})`);
    } finally {
      source.close();
      client.close();
    }
  });
});

// --quota-backend-bytes and the NOSPACE alarm in a real 3-process cluster of `stratakv serve`,
// with the real etcdctl: past the quota a Put is refused with etcd's "database space exceeded"
// and the member raises NOSPACE, which `etcdctl alarm list` (and `stratakv alarm list`, and
// Status' errors) show; gets and deletes keep working while Puts stay refused; after the keys
// are deleted and `etcdctl alarm disarm` (which has every member compact its LevelDB, giving
// the deleted space back), Puts work again; `etcdctl defrag` compacts one member likewise.
//
// Members are stopped by PID in `after`; STRATAKV_KEEP_TEST_DATA keeps their directories.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { EtcdClient } from '../../src/client/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/index.ts';
import { etcdctl, etcdctlSkipReason, TestCluster } from './cluster-process.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
const QUOTA_BYTES = 4 * 1024 * 1024;
const VALUE_BYTES = 100 * 1024;
// Far more than the quota holds: the loop ends at the first refusal.
const PUTS_MAX = 400;
const NO_SPACE_TEXT = 'etcdserver: mvcc: database space exceeded';
const ALARM_LINE = /^memberID:(\d+) alarm:NOSPACE $/;

const skip = etcdctlSkipReason();
let cluster: TestCluster | undefined;
after(async () => {
  await cluster?.stop();
});

describe('the NOSPACE alarm in a cluster of stratakv processes', { skip }, () => {
  test('past --quota-backend-bytes Puts are refused and NOSPACE raised; gets and deletes work; after deletes and alarm disarm Puts work again', { timeout: 90_000 }, async () => {
    cluster = await TestCluster.start(3, { serveArgs: [`--quota-backend-bytes=${QUOTA_BYTES}`] });
    const endpoints = cluster.endpoints();
    // One endpoint for the etcdctl steps: each answer is then that member's, applied there.
    const [first] = endpoints as [string];
    const client = cluster.client(10_000);
    try {
      let refusedAt: number | undefined;
      for (let i = 0; i < PUTS_MAX && refusedAt === undefined; i += 1) {
        try {
          await client.put(`big/${String(i).padStart(4, '0')}`, randomBytes(VALUE_BYTES));
        } catch (error) {
          assert.ok(isStrataError(error, ErrorCode.NO_SPACE), `put ${i} failed with ${String(error)}`);
          refusedAt = i;
        }
      }
      assert.ok(refusedAt !== undefined, `${PUTS_MAX} puts of ${VALUE_BYTES} bytes fit a quota of ${QUOTA_BYTES}`);
      assert.ok(refusedAt * VALUE_BYTES >= QUOTA_BYTES / 2, `refused after only ${refusedAt} puts`);

      const refused = etcdctl([first], ['put', 'small', 'value']);
      assert.notEqual(refused.status, 0);
      assert.match(refused.stderr, new RegExp(NO_SPACE_TEXT));

      const list = etcdctl([first], ['alarm', 'list']);
      assert.equal(list.status, 0, list.stderr);
      const alarmLines = list.stdout.split('\n').filter((line) => line !== '');
      assert.ok(alarmLines.length >= 1 && alarmLines.every((line) => ALARM_LINE.test(line)), `etcdctl alarm list printed ${JSON.stringify(list.stdout)}`);
      const raisedBy = alarmLines.map((line) => BigInt(ALARM_LINE.exec(line)?.[1] ?? '0'));
      const ours = spawnSync(process.execPath, [CLI, 'alarm', 'list', `--endpoints=${first}`], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(ours.status, 0, ours.stderr);
      assert.equal(ours.stdout, list.stdout, 'stratakv alarm list prints what etcdctl prints');
      const statuses = await client.statusAll();
      for (const result of statuses) {
        assert.ok(result.ok, `status of ${result.endpoint}`);
        assert.ok(result.ok && result.status.errors.some((text) => ALARM_LINE.test(text)), `${result.endpoint} lists the alarm in Status errors`);
        assert.ok(result.ok && result.status.dbSizeBytes >= QUOTA_BYTES / 2, `${result.endpoint} reports its measured size`);
      }
      assert.ok(raisedBy.every((id) => statuses.some((result) => result.ok && result.status.memberId === id)), 'the alarm names a member');

      const got = etcdctl([first], ['get', 'big/0000', '--keys-only']);
      assert.equal(got.status, 0, got.stderr);
      assert.equal(got.stdout.split('\n')[0], 'big/0000');
      const deleted = etcdctl([first], ['del', 'big/', '--prefix']);
      assert.equal(deleted.status, 0, deleted.stderr);
      assert.equal(deleted.stdout.trim(), String(refusedAt));
      // Deleting frees nothing by itself: the alarm stays until it is disarmed.
      const stillRefused = etcdctl([first], ['put', 'small', 'value']);
      assert.match(stillRefused.stderr, new RegExp(NO_SPACE_TEXT));
      // etcdctl defrag compacts the member it is sent to, as etcd's recovery recipe expects.
      const defrag = etcdctl([first], ['defrag']);
      assert.equal(defrag.status, 0, defrag.stderr);
      assert.match(defrag.stdout, new RegExp(`Finished defragmenting etcd member\\[${first}\\]`));
      const defragmented = await client.status(first);
      assert.ok(defragmented.dbSizeBytes < QUOTA_BYTES / 2, `defrag left ${defragmented.dbSizeBytes} bytes`);

      const disarm = etcdctl([first], ['alarm', 'disarm']);
      assert.equal(disarm.status, 0, disarm.stderr);
      assert.equal(disarm.stdout, list.stdout, 'disarm prints the alarms it cleared');
      const afterDisarm = etcdctl([first], ['alarm', 'list']);
      assert.equal(afterDisarm.stdout, '');
      const accepted = etcdctl([first], ['put', 'small', 'value']);
      assert.equal(accepted.status, 0, accepted.stderr);
      assert.equal(accepted.stdout.trim(), 'OK');
      // Every member gave the deleted space back, and takes Puts of the size that filled it.
      for (const endpoint of endpoints) {
        const one = new EtcdClient({ endpoints: [endpoint], timeoutMs: 10_000 });
        try {
          await one.put(`after/${endpoint}`, randomBytes(VALUE_BYTES));
        } finally {
          one.close();
        }
      }
      for (const result of await client.statusAll()) {
        assert.ok(result.ok && result.status.dbSizeBytes < QUOTA_BYTES / 2, `${result.endpoint} compacted: ${result.ok ? result.status.dbSizeBytes : '?'} bytes`);
        assert.ok(result.ok && !result.status.errors.some((text) => ALARM_LINE.test(text)));
      }
    } finally {
      client.close();
    }
  });
});

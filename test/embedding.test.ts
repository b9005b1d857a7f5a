// The embedding API (src/index.ts) as an application uses it: openCluster() with no options,
// typed KV calls, errors with stable codes; and three members replicating over real gRPC
// peer connections on 127.0.0.1, with one of them serving etcd's API to an EtcdClient.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { EtcdClient, ErrorCode, isStrataError, openCluster } from '../src/index.ts';
import type { StrataKv } from '../src/index.ts';
import { freePort } from './integration/cluster-process.ts';

const decoder = new TextDecoder();

test('openCluster() with no options: a single in-memory member with typed KV calls', async () => {
  const kv = await openCluster();
  try {
    const first = await kv.put('app/a', '1');
    assert.equal(first.revision, 2);
    await kv.put('app/b', '2');
    await kv.put('other', '3');
    const a = await kv.get('app/a');
    assert.equal(decoder.decode(a?.value), '1');
    assert.equal(a?.version, 1);
    assert.equal(await kv.get('missing'), undefined);
    const prefix = await kv.range('app/', { prefix: true });
    assert.deepEqual(prefix.kvs.map((pair) => decoder.decode(pair.key)), ['app/a', 'app/b']);
    const all = await kv.range('', { fromKey: true, countOnly: true });
    assert.equal(all.count, 3);
    const txn = await kv.txn({
      compare: [{ target: 'version', result: 'equal', key: new TextEncoder().encode('app/a'), number: 1 }],
      success: [{ type: 'put', key: new TextEncoder().encode('app/a'), value: new TextEncoder().encode('1b') }],
    });
    assert.equal(txn.succeeded, true);
    const deleted = await kv.delete('app/', { prefix: true, prevKv: true });
    assert.equal(deleted.deleted, 2);
    assert.deepEqual(deleted.prevKvs.map((pair) => decoder.decode(pair.value)), ['1b', '2']);
    await assert.rejects(kv.put('', 'x'), (error) => isStrataError(error, ErrorCode.KEY_NOT_PROVIDED));
    assert.equal(kv.status().role, 'leader');
    assert.equal(kv.members().length, 1);
  } finally {
    await kv.close();
  }
});

test('three embedded members replicate over gRPC; one serves etcd API clients', async () => {
  const directory = mkdtempSync(join(tmpdir(), 'stratakv-embedded-'));
  const ports = [await freePort(), await freePort(), await freePort()];
  const clientPort = await freePort();
  const initialCluster = ports.map((port, index) => ({ name: `e${index + 1}`, peerUrls: [`http://127.0.0.1:${port}`] }));
  const members: StrataKv[] = [];
  try {
    members.push(
      ...(await Promise.all(
        ports.map((port, index) =>
          openCluster({
            name: `e${index + 1}`,
            dataDir: join(directory, `e${index + 1}`),
            peerUrl: `http://127.0.0.1:${port}`,
            initialCluster,
            clusterToken: 'embedded-test',
            heartbeatIntervalMs: 20,
            electionTimeoutMs: 200,
            ...(index === 0 ? { clientUrls: [`http://127.0.0.1:${clientPort}`] } : {}),
          }),
        ),
      )),
    );
    const [first, second, third] = members;
    assert.ok(first !== undefined && second !== undefined && third !== undefined);
    // Published before openCluster() resolved (etcd's ReadyNotify): e1's client URL is listed.
    assert.deepEqual(first.members().find((member) => member.name === 'e1')?.clientUrls, [`http://127.0.0.1:${clientPort}`]);
    await second.put('shared', 'from e2');
    assert.equal(decoder.decode((await third.get('shared'))?.value), 'from e2');
    const client = new EtcdClient({ endpoints: [`127.0.0.1:${clientPort}`] });
    try {
      await client.put('via-grpc', 'ok');
      const answer = await client.get('shared');
      assert.equal(decoder.decode(answer.kvs[0]?.value), 'from e2');
    } finally {
      client.close();
    }
    assert.equal(decoder.decode((await second.get('via-grpc'))?.value), 'ok');
  } finally {
    await Promise.all(members.map((member) => member.close()));
    rmSync(directory, { recursive: true, force: true });
  }
});

test('an embedded member on disk snapshots, compacts its log, and restarts from the snapshot and the tail', async () => {
  const directory = mkdtempSync(join(tmpdir(), 'stratakv-embedded-snapshot-'));
  const saved: number[] = [];
  try {
    const options = {
      dataDir: join(directory, 'solo'),
      // No duty-cycle limit: 300 puts may take less time than the limit would leave between two snapshots.
      snapshotPolicy: { snapshotCount: 50, catchUpEntries: 10, snapshotDutyCycleMax: 1 },
      hooks: { onSnapshotSaved: (info: { readonly index: number }) => saved.push(info.index) },
    };
    const first = await openCluster(options);
    let status;
    try {
      for (let i = 0; i < 300; i += 1) await first.put(`key-${i % 120}`, `value-${i}`);
      status = first.status();
      assert.ok(saved.length >= 2, `snapshots were saved at ${saved.join(', ')}`);
      assert.ok(status.snapshots.compactedThrough > 0, 'the log was compacted');
    } finally {
      // A member left open keeps the test process alive: close it whatever happened.
      await first.close();
    }
    const second = await openCluster(options);
    try {
      for (let i = 180; i < 300; i += 1) assert.equal(new TextDecoder().decode((await second.get(`key-${i % 120}`))?.value), `value-${i}`);
      assert.ok(second.status().appliedIndex >= status.appliedIndex);
    } finally {
      await second.close();
    }
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});

test('an embedded member on disk with a small quotaBackendBytes refuses Puts with NO_SPACE and raises NOSPACE; deletes and a disarm bring Puts back', async () => {
  const directory = mkdtempSync(join(tmpdir(), 'stratakv-embedded-quota-'));
  const raised: string[] = [];
  const quotaBytes = 512 * 1024;
  const kv = await openCluster({ dataDir: join(directory, 'solo'), quotaBackendBytes: quotaBytes, hooks: { onAlarm: (change) => raised.push(`${change.action} ${change.alarm}`) } });
  try {
    const value = new Uint8Array(32 * 1024).map((_, index) => (index * 7919) % 251);
    let refusals = 0;
    // The size is measured at most once a second: write until a refusal, within a bounded number of Puts.
    // A pause every 20 Puts lets measurements happen on a loaded machine too (about 3 s in all).
    for (let i = 0; i < 2_000 && refusals === 0; i += 1) {
      if (i % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 30));
      await kv.put(`big/${i}`, value).catch((error: unknown) => {
        assert.ok(isStrataError(error, ErrorCode.NO_SPACE), String(error));
        refusals += 1;
      });
    }
    assert.equal(refusals, 1, `Puts of 32 KiB never passed a quota of ${quotaBytes} bytes`);
    assert.deepEqual(await kv.alarms(), [{ memberId: kv.status().memberId, alarm: 'NOSPACE' }]);
    assert.deepEqual(raised, ['activate NOSPACE']);
    await assert.rejects(kv.put('small', 'v'), (error) => isStrataError(error, ErrorCode.NO_SPACE));
    assert.ok((await kv.get('big/0')) !== undefined, 'reads are served');
    await kv.delete('big/', { prefix: true });
    await kv.disarmAlarm(kv.status().memberId, 'NOSPACE');
    assert.deepEqual(await kv.alarms(), []);
    await kv.put('small', 'v');
    await kv.put('big/again', value);
    assert.deepEqual(raised, ['activate NOSPACE', 'deactivate NOSPACE']);
  } finally {
    await kv.close();
    rmSync(directory, { recursive: true, force: true });
  }
});

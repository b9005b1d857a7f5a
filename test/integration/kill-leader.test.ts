// Kill -9 the leader of a 3-process cluster while 8 clients write: a new leader takes over,
// writes go on, and every write that was acknowledged is there at the end — on the
// survivors, and on the killed member once it restarts from its data directory.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { EtcdClient } from '../../src/client/index.ts';
import { TestCluster } from './cluster-process.ts';

const WRITERS = 8;
const WRITES_PER_WRITER_MAX = 5_000;
const LOAD_BEFORE_KILL_MS = 1_500;
const LOAD_AFTER_KILL_MS = 4_000;

let cluster: TestCluster | undefined;
after(async () => {
  await cluster?.stop();
});

const decoder = new TextDecoder();

async function readAll(client: EtcdClient, options: { serializable: boolean }): Promise<Map<string, string>> {
  const answer = await client.get('w/', { prefix: true, serializable: options.serializable, timeoutMs: 10_000 });
  return new Map(answer.kvs.map((kv) => [decoder.decode(kv.key), decoder.decode(kv.value)]));
}

test('kill -9 the leader under a write load: a new leader takes over and no acknowledged write is lost', async () => {
  cluster = await TestCluster.start(3);
  const oldLeader = await cluster.waitForLeader();
  const client = cluster.client(3_000);
  const acknowledged = new Map<string, string>();
  const failures = new Map<string, number>();
  let acknowledgedAfterKill = 0;
  let killed = false;
  const loadEndsAt = Date.now() + LOAD_BEFORE_KILL_MS + LOAD_AFTER_KILL_MS;

  const writer = async (writerIndex: number): Promise<void> => {
    for (let sequence = 0; sequence < WRITES_PER_WRITER_MAX && Date.now() < loadEndsAt; sequence += 1) {
      const key = `w/${writerIndex}/${sequence}`;
      const value = `value-${writerIndex}-${sequence}`;
      try {
        await client.put(key, value);
        acknowledged.set(key, value);
        if (killed) acknowledgedAfterKill += 1;
      } catch (error) {
        const code = (error as { code?: string }).code ?? 'unknown';
        failures.set(code, (failures.get(code) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  const killer = async (): Promise<void> => {
    await new Promise((resolve) => setTimeout(resolve, LOAD_BEFORE_KILL_MS));
    await cluster?.kill(oldLeader);
    killed = true;
  };
  await Promise.all([...Array.from({ length: WRITERS }, (_, index) => writer(index)), killer()]);

  assert.ok(killed);
  assert.ok(acknowledged.size > 0, 'writes were acknowledged');
  assert.ok(acknowledgedAfterKill > 0, `writes were acknowledged after the kill (failures: ${JSON.stringify([...failures])})`);
  const newLeader = await cluster.waitForLeader();
  assert.notEqual(newLeader.name, oldLeader.name);

  // Every acknowledged write is on the survivors (a linearizable read through the leader).
  const stored = await readAll(client, { serializable: false });
  let missing = 0;
  for (const [key, value] of acknowledged) if (stored.get(key) !== value) missing += 1;
  assert.equal(missing, 0, `${missing} of ${acknowledged.size} acknowledged writes are missing or wrong`);
  client.close();

  // The killed member restarts from its data directory and catches up.
  const restarted = cluster.restart(oldLeader);
  await cluster.waitForLeader();
  const restartedClient = new (client.constructor as new (options: { endpoints: string[]; timeoutMs: number }) => EtcdClient)({ endpoints: [restarted.endpoint], timeoutMs: 5_000 });
  try {
    let restartedMissing = acknowledged.size;
    for (let attempt = 0; attempt < 100 && restartedMissing > 0; attempt += 1) {
      const local = await readAll(restartedClient, { serializable: true });
      restartedMissing = 0;
      for (const [key, value] of acknowledged) if (local.get(key) !== value) restartedMissing += 1;
      if (restartedMissing > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(restartedMissing, 0, `the restarted member lacks ${restartedMissing} acknowledged writes`);
  } finally {
    restartedClient.close();
  }
  console.log(`kill -9: ${acknowledged.size} writes acknowledged (${acknowledgedAfterKill} after the kill), failures ${JSON.stringify([...failures])}`);
});

// create-child.ts — the process that disk-snapshot-store.test.ts kills with SIGKILL.
//
// Usage: node create-child.ts DIRECTORY FIRST_INDEX SEED
// It opens the store in DIRECTORY and creates snapshots at FIRST_INDEX, FIRST_INDEX + 1, ...
// (term 1), printing "created <id> <sha256>" once each create() resolved (the snapshot is
// durable and listed), and keeping the two newest, until it is killed or reaches its bounds.
// Record values are a function of (index, key number), so a reader could check them.
import { writeSync } from 'node:fs';

import { DiskSnapshotStore } from '../../src/snapshot/disk-snapshot-store.ts';
import type { SnapshotRecord } from '../../src/snapshot/snapshot-store.ts';
import { SeededRandom } from '../../src/util/random.ts';

const [directory, firstIndexText, seedText] = process.argv.slice(2);
if (directory === undefined || firstIndexText === undefined || seedText === undefined) {
  console.error('usage: create-child.ts DIRECTORY FIRST_INDEX SEED');
  process.exit(2);
}
const random = new SeededRandom(Number(seedText));
const CREATES_MAX = 50;
const RUN_MS_MAX = 20_000;
const BATCH_RECORDS = 256;
const started = Date.now();

const store = await DiskSnapshotStore.open(directory, { blockBytesTarget: 64 * 1024 });
for (let create = 0; create < CREATES_MAX && Date.now() - started < RUN_MS_MAX; create += 1) {
  const index = Number(firstIndexText) + create;
  const count = 2_000 + random.intBelow(6_000);
  const info = await store.create({
    metadata: { index, term: 1, confState: { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }, revision: index, members: new Uint8Array(0) },
    async *records() {
      for (let at = 0; at < count; at += BATCH_RECORDS) {
        const batch: SnapshotRecord[] = [];
        for (let i = at; i < Math.min(count, at + BATCH_RECORDS); i += 1) {
          batch.push({ key: new TextEncoder().encode(`k${String(i).padStart(8, '0')}`), value: new Uint8Array(1024).fill((index + i) & 0xff) });
        }
        yield batch;
      }
    },
  });
  writeSync(1, `created ${info.id} ${info.sha256}\n`);
  await store.retain(2);
}
await store.close();

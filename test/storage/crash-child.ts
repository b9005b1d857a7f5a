// crash-child.ts — the process that test/storage/crash-process.test.ts kills with SIGKILL.
//
// Usage: node crash-child.ts DIRECTORY RUN SEED
// It reopens the log in DIRECTORY, then appends batches of entries as fast as it can,
// printing "ack N" once every entry up to N is durable (save resolved), until it is killed
// or reaches its bounds. Entry data is a function of (index, term) so a reader can check it.
import { writeSync } from 'node:fs';
import { DiskLogStore } from '../../src/storage/disk-log-store.ts';
import { NodeFileSystem } from '../../src/storage/file-system.ts';
import { SeededRandom } from '../../src/util/random.ts';
import { crashEntry } from './crash-entry.ts';

const [directory, runText, seedText] = process.argv.slice(2);
if (directory === undefined || runText === undefined || seedText === undefined) {
  console.error('usage: crash-child.ts DIRECTORY RUN SEED');
  process.exit(2);
}
const term = Number(runText);
const random = new SeededRandom(Number(seedText));
const SAVES_MAX = 100_000;
const RUN_MS_MAX = 20_000;
const quiet = { debug() {}, info() {}, warn() {} };

const log = DiskLogStore.openSync({ fileSystem: new NodeFileSystem(), directory, logger: quiet, segmentBytesMax: 64 * 1024 });
const started = Date.now();
// Several saves in flight at once, as a driver pipelining Readys would have: group commit.
const IN_FLIGHT_MAX = 4;
let next = log.lastIndex() + 1;
let inFlight: Promise<void>[] = [];
for (let save = 0; save < SAVES_MAX && Date.now() - started < RUN_MS_MAX; save += 1) {
  const count = 1 + random.intBelow(20);
  const entries = Array.from({ length: count }, (_, i) => crashEntry(next + i, term, random.intBelow(300)));
  const last = next + count - 1;
  next = last + 1;
  inFlight.push(
    log.save({ entries, hardState: { term, vote: 1, commit: last } }).then(() => {
      writeSync(1, `ack ${last}\n`);
    }),
  );
  if (inFlight.length >= IN_FLIGHT_MAX) {
    await inFlight[0];
    inFlight = inFlight.slice(1);
  }
  if (random.chance(1, 50) && log.lastIndex() - log.firstIndex() > 200) log.compact(log.lastIndex() - 100);
}
await Promise.all(inFlight);
await log.close();

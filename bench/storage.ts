// bench/storage.ts — what the durable log costs against what the disk allows.
//
//   npm run bench:storage          (BENCH_ROUNDS=5 BENCH_ROUND_MS=1000 by default)
//
// For batch sizes of 1, 16 and 256 entries of 100 bytes it measures, in alternating rounds
// on the same disk in the same run: a bare write+fdatasync loop of the same bytes (the
// physical limit), DiskLogStore.save() awaited one at a time, LevelDB used as the log (a
// synchronous write batch per append: the alternative layout), and the log over a file
// system that does no I/O (its JavaScript cost alone). Then group commit under 64
// concurrent writers, and the state machine's apply rate into LevelDB. Figures are medians
// over the rounds with [min–max]; the run ends with one JSON line per figure.
import { spawnSync } from 'node:child_process';
import { closeSync, fdatasync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import type { Entry, HardState, Logger } from '../src/raft/types.ts';
import { DiskLogStore } from '../src/storage/disk-log-store.ts';
import type { StorageFileSystem } from '../src/storage/file-system.ts';
import { entryRecordBytes } from '../src/storage/log-record.ts';
import { CountingFileSystem, NullFileSystem } from './storage/counting-file-system.ts';
import { median, spread, timeConcurrent, timeLoop, timeLoopSync } from './storage/measure.ts';
import type { Rate } from './storage/measure.ts';
import { benchApply } from './storage/apply.ts';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const ROUND_MS = Number(process.env['BENCH_ROUND_MS'] ?? 1000);
const BATCHES = [1, 16, 256] as const;
const ENTRY_DATA_BYTES = 100;
const CONCURRENT_WRITERS = 64;
const PIPELINED_SAVES = 2;
const QUIET: Logger = { debug() {}, info() {}, warn() {} };
const HARD_STATE_RECORD_BYTES = 8 + 1 + 24;

const root = mkdtempSync(path.join(tmpdir(), 'stratakv-bench-storage-'));
let directories = 0;
function freshDirectory(): string {
  directories += 1;
  return path.join(root, `run-${directories}`);
}

// Entries share one data buffer: making payloads is the proposer's cost, not the log's.
const ENTRY_DATA = new Uint8Array(ENTRY_DATA_BYTES).fill(0x5a);
function makeBatch(first: number, count: number): Entry[] {
  const entries: Entry[] = [];
  for (let i = 0; i < count; i += 1) entries.push({ index: first + i, term: 1, type: 0, data: ENTRY_DATA });
  return entries;
}

function bareFdatasync(batch: number): Rate {
  const file = path.join(root, `bare-${batch}-${directories++}`);
  const fd = openSync(file, 'w');
  const bytes = new Uint8Array(batch * entryRecordBytes(makeBatch(1, 1)[0] as Entry) + HARD_STATE_RECORD_BYTES).fill(7);
  let position = 0;
  const result = timeLoopSync(ROUND_MS, () => {
    writeSync(fd, bytes, 0, bytes.byteLength, position);
    position += bytes.byteLength;
    fdatasyncSync(fd);
  });
  closeSync(fd);
  rmSync(file);
  return result;
}

// The same loop with fdatasync on the thread pool, as the log does it: the gap between the
// two bare loops is what Node's thread-pool hop costs, not the log.
async function bareAsyncFdatasync(batch: number): Promise<Rate> {
  const file = path.join(root, `bare-async-${batch}-${directories++}`);
  const fd = openSync(file, 'w');
  const bytes = new Uint8Array(batch * entryRecordBytes(makeBatch(1, 1)[0] as Entry) + HARD_STATE_RECORD_BYTES).fill(7);
  let position = 0;
  const result = await timeLoop(ROUND_MS, () => {
    writeSync(fd, bytes, 0, bytes.byteLength, position);
    position += bytes.byteLength;
    return new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error === null ? resolve() : reject(error))));
  });
  closeSync(fd);
  rmSync(file);
  return result;
}

// A node compacts its log after snapshots; the bench keeps about as much as a node would.
const LOG_KEPT_ENTRIES_MAX = 200_000;

// logAppends awaits one save at a time (inFlight 1), or keeps `inFlight` saves outstanding
// the way a driver that prepares its next Ready during an fsync does.
async function logAppends(batch: number, fileSystem: StorageFileSystem, inFlight = 1): Promise<Rate> {
  const log = DiskLogStore.openSync({ fileSystem, directory: freshDirectory(), logger: QUIET });
  let next = 1;
  const step = (): Promise<void> => {
    const entries = makeBatch(next, batch);
    next += batch;
    const hardState: HardState = { term: 1, vote: 1, commit: next - 1 };
    if (log.lastIndex() - log.firstIndex() > LOG_KEPT_ENTRIES_MAX) log.compact(log.lastIndex() - LOG_KEPT_ENTRIES_MAX / 2);
    return log.save({ entries, hardState });
  };
  const result = inFlight === 1 ? await timeLoop(ROUND_MS, step) : await timeConcurrent(ROUND_MS, inFlight, step);
  await log.close();
  return result;
}

async function levelDbAppends(batch: number): Promise<Rate> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(freshDirectory(), { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  let next = 1;
  const result = await timeLoop(ROUND_MS, () => {
    const operations = makeBatch(next, batch).map((entry) => {
      const key = new Uint8Array(8);
      new DataView(key.buffer).setBigUint64(0, BigInt(entry.index));
      return { type: 'put' as const, key, value: entry.data };
    });
    next += batch;
    return db.batch(operations, { sync: true });
  });
  await db.close();
  return result;
}

async function groupCommit(): Promise<{ entries: Rate; fdatasyncsPerSecond: number }> {
  const fileSystem = new CountingFileSystem();
  const log = DiskLogStore.openSync({ fileSystem, directory: freshDirectory(), logger: QUIET });
  let next = 1;
  const before = fileSystem.fdatasyncCount;
  const entries = await timeConcurrent(ROUND_MS, CONCURRENT_WRITERS, () => {
    const batch = makeBatch(next, 1);
    next += 1;
    return log.save({ entries: batch });
  });
  const fdatasyncsPerSecond = ((fileSystem.fdatasyncCount - before) * 1000) / entries.wallMs;
  await log.close();
  return { entries, fdatasyncsPerSecond };
}

// settleDisk writes back every dirty page (sync(1)) so the next figure starts on a quiet disk.
function settleDisk(): void {
  spawnSync('sync');
}

interface BatchFigures {
  pipelined: number[];
  bare: number[];
  bareAsync: number[];
  log: number[];
  logCpu: number[];
  levelDb: number[];
  jsOnly: number[];
}

async function main(): Promise<void> {
  console.log(`bench:storage — ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}, files in ${root}`);
  console.log(`${ROUNDS} rounds of ${ROUND_MS} ms per figure, alternating; entries of ${ENTRY_DATA_BYTES} bytes; one save = one durable step`);
  const figures = new Map<number, BatchFigures>();
  for (const batch of BATCHES) figures.set(batch, { pipelined: [], bare: [], bareAsync: [], log: [], logCpu: [], levelDb: [], jsOnly: [] });
  const nodeFileSystem = new CountingFileSystem();
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const batch of BATCHES) {
      const f = figures.get(batch) as BatchFigures;
      // Each figure starts on a settled disk, and the order rotates every round, so that one
      // measurement's leftover writeback (LevelDB's unsynced compactions above all) does not
      // always land on the same neighbour.
      const steps: (() => Promise<void>)[] = [
        async () => void f.bare.push(bareFdatasync(batch).perSecond),
        async () => void f.bareAsync.push((await bareAsyncFdatasync(batch)).perSecond),
        async () => {
          const log = await logAppends(batch, nodeFileSystem);
          f.log.push(log.perSecond);
          f.logCpu.push(log.userCpuFraction);
        },
        async () => void f.levelDb.push((await levelDbAppends(batch)).perSecond),
        async () => void f.pipelined.push((await logAppends(batch, nodeFileSystem, PIPELINED_SAVES)).perSecond),
      ];
      for (let step = 0; step < steps.length; step += 1) {
        settleDisk();
        await (steps[(step + round) % steps.length] as () => Promise<void>)();
      }
      f.jsOnly.push((await logAppends(batch, new NullFileSystem())).perSecond);
    }
    process.stdout.write(`  round ${round + 1}/${ROUNDS} done\n`);
  }
  const json: string[] = [];
  console.log(`\nbatch | bare fdatasync/s | bare async fdatasync/s | log saves/s (% of the better bare, paired by round) | log MB/s | log user CPU | LevelDB sync batches/s | log without I/O saves/s | log, ${PIPELINED_SAVES} saves in flight, saves/s (% of bare)`);
  for (const batch of BATCHES) {
    const f = figures.get(batch) as BatchFigures;
    const bytesPerSave = batch * (ENTRY_DATA_BYTES + 26) + HARD_STATE_RECORD_BYTES;
    // The physical limit of a round is the better of the two bare loops: under load either
    // can come out ahead, and the log is held to whichever did.
    const bareBest = f.bare.map((value, i) => Math.max(value, f.bareAsync[i] as number));
    const ratios = f.log.map((value, i) => value / (bareBest[i] as number));
    const mbPerSecond = (median(f.log) * bytesPerSave) / 1e6;
    console.log(
      `${String(batch).padStart(5)} | ${spread(f.bare)} | ${spread(f.bareAsync)} | ${spread(f.log)} (${(median(ratios) * 100).toFixed(0)} %) | ${mbPerSecond.toFixed(2)} | ` +
        `${(median(f.logCpu) * 100).toFixed(0)} % | ${spread(f.levelDb)} | ${spread(f.jsOnly)} | ${spread(f.pipelined)} ` +
        `(${(median(f.pipelined.map((value, i) => value / (bareBest[i] as number))) * 100).toFixed(0)} %)`,
    );
    json.push(
      JSON.stringify({
        batch,
        appendsPerSecond: Math.round(median(f.log)),
        entriesPerSecond: Math.round(median(f.log) * batch),
        bareFdatasyncPerSecond: Math.round(median(bareBest)),
        bareSyncFdatasyncPerSecond: Math.round(median(f.bare)),
        bareAsyncFdatasyncPerSecond: Math.round(median(f.bareAsync)),
        ratioToBare: Number(median(ratios).toFixed(3)),
        mbPerSecond: Number(mbPerSecond.toFixed(3)),
        logUserCpuFraction: Number(median(f.logCpu).toFixed(3)),
        levelDbSyncBatchesPerSecond: Math.round(median(f.levelDb)),
        withoutIoAppendsPerSecond: Math.round(median(f.jsOnly)),
        pipelinedEntriesPerSecond: Math.round(median(f.pipelined) * batch),
        pipelinedRatioToBare: Number(median(f.pipelined.map((value, i) => value / (bareBest[i] as number))).toFixed(3)),
        appendsPerSecondMin: Math.round(Math.min(...f.log)),
        appendsPerSecondMax: Math.round(Math.max(...f.log)),
        rounds: ROUNDS,
      }),
    );
  }
  const group: { entries: number[]; syncs: number[] } = { entries: [], syncs: [] };
  for (let round = 0; round < ROUNDS; round += 1) {
    const result = await groupCommit();
    group.entries.push(result.entries.perSecond);
    group.syncs.push(result.fdatasyncsPerSecond);
  }
  console.log(`\ngroup commit, ${CONCURRENT_WRITERS} writers of 1 entry: ${spread(group.entries)} entries/s with ${spread(group.syncs)} fdatasync/s`);
  json.push(
    JSON.stringify({
      groupCommitWriters: CONCURRENT_WRITERS,
      entriesPerSecond: Math.round(median(group.entries)),
      fdatasyncPerSecond: Math.round(median(group.syncs)),
      rounds: ROUNDS,
    }),
  );
  const apply = await benchApply({ rounds: ROUNDS, roundMs: ROUND_MS, directory: freshDirectory });
  console.log(`\nstate machine apply into LevelDB (batches of ${apply.batch} Put entries): ${spread(apply.entriesPerSecond)} entries/s`);
  json.push(JSON.stringify({ stateMachineApplyEntriesPerSecond: Math.round(median(apply.entriesPerSecond)), applyBatch: apply.batch, rounds: ROUNDS }));
  console.log('');
  for (const line of json) console.log(line);
}

try {
  await main();
} finally {
  rmSync(root, { recursive: true, force: true });
}

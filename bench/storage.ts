// bench/storage.ts — what the durable log costs against what the disk allows.
//
//   npm run bench:storage     (BENCH_SLICES=15 BENCH_SLICE_MS=200 BENCH_ROUNDS=5 BENCH_ROUND_MS=1000)
//
// For batch sizes of 1, 16 and 256 entries of 100 bytes, on the same disk in the same run:
//  - bare: a write+fdatasync loop of the same bytes per step, with fdatasync called
//    synchronously and on the thread pool (the physical limit is the better of the two);
//  - log: DiskLogStore.save() of one batch plus the hard state, awaited one at a time;
//  - log, 2 in flight: the same with two saves outstanding, as a driver that prepares its
//    next Ready during an fsync has;
// interleaved in short slices with the order rotating, so that the disk's moods (it is shared
// with other work) fall on all of them alike; figures are medians over the slices with
// [min–max], and the log's share of the bare rate is the median of per-slice ratios. Then,
// measured on their own: LevelDB used as the log (a synchronous batch per append: the
// alternative layout), the log over a file system that does no I/O (its JavaScript cost),
// group commit under 64 concurrent writers, and the state machine's apply rate into
// LevelDB. The run ends with one JSON line per batch size and per other figure.
import { spawnSync } from 'node:child_process';
import { closeSync, fdatasync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import type { Entry, HardState, Logger } from '../src/raft/types.ts';
import { DiskLogStore } from '../src/storage/disk-log-store.ts';
import type { StorageFileSystem } from '../src/storage/file-system.ts';
import { entryRecordBytes } from '../src/storage/log-record.ts';
import { benchApply } from './storage/apply.ts';
import { CountingFileSystem, NullFileSystem } from './storage/counting-file-system.ts';
import { median, spread, timeConcurrent, timeLoop, timeLoopSync } from './storage/measure.ts';
import type { Rate } from './storage/measure.ts';

const SLICES = Number(process.env['BENCH_SLICES'] ?? 15);
const SLICE_MS = Number(process.env['BENCH_SLICE_MS'] ?? 200);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const ROUND_MS = Number(process.env['BENCH_ROUND_MS'] ?? 1000);
const BATCHES = [1, 16, 256] as const;
const ENTRY_DATA_BYTES = 100;
const CONCURRENT_WRITERS = 64;
const PIPELINED_SAVES = 2;
// A node compacts its log after snapshots; the bench keeps about as much as a node would.
const LOG_KEPT_ENTRIES_MAX = 200_000;
const QUIET: Logger = { debug() {}, info() {}, warn() {} };
const HARD_STATE_RECORD_BYTES = 8 + 1 + 24;

const root = mkdtempSync(path.join(tmpdir(), 'stratakv-bench-storage-'));
let files = 0;
function freshPath(): string {
  files += 1;
  return path.join(root, `f-${files}`);
}

// Entries share one data buffer: making payloads is the proposer's cost, not the log's.
const ENTRY_DATA = new Uint8Array(ENTRY_DATA_BYTES).fill(0x5a);
function makeBatch(first: number, count: number): Entry[] {
  const entries: Entry[] = [];
  for (let i = 0; i < count; i += 1) entries.push({ index: first + i, term: 1, type: 0, data: ENTRY_DATA });
  return entries;
}

function saveBytes(batch: number): number {
  return batch * entryRecordBytes(makeBatch(1, 1)[0] as Entry) + HARD_STATE_RECORD_BYTES;
}

// settleDisk writes back every dirty page (sync(1)) so the next figures start on a quiet disk.
function settleDisk(): void {
  spawnSync('sync');
}

/** A contestant measures its rate over one slice of time, keeping its state between slices. */
interface Contestant {
  readonly name: string;
  slice(durationMs: number): Promise<Rate>;
  close(): Promise<void>;
}

function bareContestant(batch: number, asynchronous: boolean): Contestant {
  const fd = openSync(freshPath(), 'w');
  const bytes = new Uint8Array(saveBytes(batch)).fill(7);
  let position = 0;
  const write = (): void => {
    writeSync(fd, bytes, 0, bytes.byteLength, position);
    position += bytes.byteLength;
  };
  return {
    name: asynchronous ? 'bare async' : 'bare sync',
    slice: (durationMs) =>
      asynchronous
        ? timeLoop(durationMs, () => {
            write();
            return new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error === null ? resolve() : reject(error))));
          })
        : Promise.resolve(
            timeLoopSync(durationMs, () => {
              write();
              fdatasyncSync(fd);
            }),
          ),
    close: () => {
      closeSync(fd);
      return Promise.resolve();
    },
  };
}

function logContestant(batch: number, fileSystem: StorageFileSystem, inFlight: number): Contestant {
  const log = DiskLogStore.openSync({ fileSystem, directory: freshPath(), logger: QUIET });
  let next = 1;
  const step = (): Promise<void> => {
    const entries = makeBatch(next, batch);
    next += batch;
    const hardState: HardState = { term: 1, vote: 1, commit: next - 1 };
    if (log.lastIndex() - log.firstIndex() > LOG_KEPT_ENTRIES_MAX) log.compact(log.lastIndex() - LOG_KEPT_ENTRIES_MAX / 2);
    return log.save({ entries, hardState });
  };
  return {
    name: inFlight === 1 ? 'log' : `log ${inFlight} in flight`,
    slice: (durationMs) => (inFlight === 1 ? timeLoop(durationMs, step) : timeConcurrent(durationMs, inFlight, step)),
    close: () => log.close(),
  };
}

async function levelDbAppends(batch: number): Promise<Rate> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(freshPath(), { keyEncoding: 'view', valueEncoding: 'view' });
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
  const log = DiskLogStore.openSync({ fileSystem, directory: freshPath(), logger: QUIET });
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

interface BatchResult {
  readonly batch: number;
  readonly bareSync: number[];
  readonly bareAsync: number[];
  readonly log: number[];
  readonly logCpu: number[];
  readonly pipelined: number[];
  readonly levelDb: number[];
  readonly withoutIo: number[];
}

async function measureBatch(batch: number): Promise<BatchResult> {
  settleDisk();
  const nodeFileSystem = new NodeFileSystemForBench();
  const contestants = [
    bareContestant(batch, false),
    bareContestant(batch, true),
    logContestant(batch, nodeFileSystem, 1),
    logContestant(batch, nodeFileSystem, PIPELINED_SAVES),
  ];
  const rates: Rate[][] = contestants.map(() => []);
  for (let slice = 0; slice < SLICES; slice += 1) {
    for (let turn = 0; turn < contestants.length; turn += 1) {
      const which = (turn + slice) % contestants.length;
      (rates[which] as Rate[]).push(await (contestants[which] as Contestant).slice(SLICE_MS));
    }
  }
  for (const contestant of contestants) await contestant.close();
  const [bareSync, bareAsync, log, pipelined] = rates as [Rate[], Rate[], Rate[], Rate[]];
  const levelDb: number[] = [];
  const withoutIo: number[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    settleDisk();
    levelDb.push((await levelDbAppends(batch)).perSecond);
    const nullLog = logContestant(batch, new NullFileSystem(), 1);
    withoutIo.push((await nullLog.slice(ROUND_MS)).perSecond);
    await nullLog.close();
  }
  return {
    batch,
    bareSync: bareSync.map((rate) => rate.perSecond),
    bareAsync: bareAsync.map((rate) => rate.perSecond),
    log: log.map((rate) => rate.perSecond),
    logCpu: log.map((rate) => rate.userCpuFraction),
    pipelined: pipelined.map((rate) => rate.perSecond),
    levelDb,
    withoutIo,
  };
}

// The log's NodeFileSystem; a class of its own only to keep the name in profiles.
class NodeFileSystemForBench extends CountingFileSystem {}

async function main(): Promise<void> {
  console.log(`bench:storage — ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}, files in ${root}`);
  console.log(
    `${SLICES} interleaved slices of ${SLICE_MS} ms per contestant and batch size; ${ROUNDS} rounds of ${ROUND_MS} ms for the other figures; ` +
      `entries of ${ENTRY_DATA_BYTES} bytes; one save = one durable step (entries + hard state, one fdatasync)`,
  );
  const json: string[] = [];
  console.log(
    `\nbatch | bare sync fdatasync/s | bare async fdatasync/s | log saves/s (% of the better bare, per slice) | log MB/s | log user CPU | ` +
      `log ${PIPELINED_SAVES} in flight saves/s (% of bare) | LevelDB sync batches/s | log without I/O saves/s`,
  );
  for (const batch of BATCHES) {
    const r = await measureBatch(batch);
    const bareBest = r.bareSync.map((value, i) => Math.max(value, r.bareAsync[i] as number));
    const ratios = r.log.map((value, i) => value / (bareBest[i] as number));
    const pipelinedRatios = r.pipelined.map((value, i) => value / (bareBest[i] as number));
    const mbPerSecond = (median(r.log) * saveBytes(batch)) / 1e6;
    console.log(
      `${String(batch).padStart(5)} | ${spread(r.bareSync)} | ${spread(r.bareAsync)} | ${spread(r.log)} (${(median(ratios) * 100).toFixed(0)} %) | ` +
        `${mbPerSecond.toFixed(2)} | ${(median(r.logCpu) * 100).toFixed(0)} % | ${spread(r.pipelined)} (${(median(pipelinedRatios) * 100).toFixed(0)} %) | ` +
        `${spread(r.levelDb)} | ${spread(r.withoutIo)}`,
    );
    json.push(
      JSON.stringify({
        batch,
        appendsPerSecond: Math.round(median(r.log)),
        entriesPerSecond: Math.round(median(r.log) * batch),
        bareFdatasyncPerSecond: Math.round(median(bareBest)),
        ratioToBare: Number(median(ratios).toFixed(3)),
        mbPerSecond: Number(mbPerSecond.toFixed(3)),
        appendsPerSecondMin: Math.round(Math.min(...r.log)),
        appendsPerSecondMax: Math.round(Math.max(...r.log)),
        bareSyncFdatasyncPerSecond: Math.round(median(r.bareSync)),
        bareAsyncFdatasyncPerSecond: Math.round(median(r.bareAsync)),
        logUserCpuFraction: Number(median(r.logCpu).toFixed(3)),
        pipelinedAppendsPerSecond: Math.round(median(r.pipelined)),
        pipelinedRatioToBare: Number(median(pipelinedRatios).toFixed(3)),
        levelDbSyncBatchesPerSecond: Math.round(median(r.levelDb)),
        withoutIoAppendsPerSecond: Math.round(median(r.withoutIo)),
        slices: SLICES,
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
    JSON.stringify({ groupCommitWriters: CONCURRENT_WRITERS, entriesPerSecond: Math.round(median(group.entries)), fdatasyncPerSecond: Math.round(median(group.syncs)), rounds: ROUNDS }),
  );
  const apply = await benchApply({ rounds: ROUNDS, roundMs: ROUND_MS, directory: freshPath });
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

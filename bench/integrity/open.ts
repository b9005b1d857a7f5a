// bench:integrity, verification at open: what `KvStateMachine.open()` costs per GiB when it
// checks every stored key against the state digest before the member may serve, beside the
// same LevelDB read without any of stratakv's work, and the disk's own read rate.
//
// The state machine is filled once through apply() of put commands (random values: LevelDB's
// compression leaves them their size), synced, compacted by LevelDB (compactRange: the layout
// of a member that has run a while) and closed. Then every round runs, in an order that
// rotates each round:
//  - verify:   evict the LevelDB files from the page cache, then openDiskKvStateMachine()
//              (verifyAtOpen on, the default: every 'k' key read, decoded and hashed, every
//              index entry read, the sums compared) and close; then once more with the files
//              now in the page cache ("warm"): the CPU part alone;
//  - iterate:  the same two passes with classic-level alone: open, read every key and value of
//              the whole database in batches of 1,024 (nextv), nothing done with them, close —
//              the floor a check that reads everything could reach with this engine;
//  - open:     evicted, openDiskKvStateMachine() with verifyAtOpen off (LevelDB's open and
//              the stored leaves checked against the root: what is left without the scan);
//  - dd:       dd iflag=direct bs=4M of every file of the database: the disk's read rate.
// Eviction is per file, posix_fadvise(DONTNEED) through `dd iflag=nocache count=0` after a
// sync, checked with fincore where it is installed (the resident bytes left are reported).
// Seconds per GiB are over the database's size on disk (its files' bytes).
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { join } from 'node:path';

import { ClassicLevel } from 'classic-level';

import type { Entry } from '../../src/raft/index.ts';
import { EntryType } from '../../src/raft/index.ts';
import { encodeKvCommand, openDiskKvStateMachine, type KvStateMachine } from '../../src/storage/index.ts';
import { folderFiles } from './members.ts';

/** OpenFigures are every round's seconds (and the check's own report). */
export interface OpenFigures {
  readonly keys: number;
  readonly valueBytes: number;
  dbBytes: number;
  dbFiles: number;
  /** Keys and bytes the verification read (keys + stored values), from openVerification(). */
  verifiedKeys: number;
  verifiedBytes: number;
  fillSeconds: number;
  compactSeconds: number;
  readonly verifyColdS: number[];
  readonly verifyWarmS: number[];
  /** openVerification().durationMs of the cold opens: the data scan alone (the index read after it is not in it). */
  readonly verifyScanColdS: number[];
  readonly iterateColdS: number[];
  readonly iterateWarmS: number[];
  readonly openNoVerifyColdS: number[];
  readonly ddDirectS: number[];
  /** Bytes still resident after each eviction (fincore), NaN when fincore is missing. */
  readonly residentAfterEvictBytes: number[];
}

/** OpenOptions: where, the state's size, the rounds. */
export interface OpenOptions {
  readonly folder: string;
  readonly keys: number;
  readonly valueBytes: number;
  readonly rounds: number;
  readonly log: (line: string) => void;
}

const FILL_ENTRIES_PER_APPLY = 1_024;
const ITERATE_BATCH_KEYS = 1_024;
const DD_TIMEOUT_MS = 600_000;
const SYNC_TIMEOUT_MS = 120_000;
const GIB = 2 ** 30;

function rotate<T>(items: readonly T[], by: number): T[] {
  return items.map((_, index) => items[(index + by) % items.length] as T);
}

/** openKeyOf is key number `index` of the open phase's state (fixed width: key order is number order). */
export function openKeyOf(index: number): Buffer {
  return Buffer.from(`state/${index.toString().padStart(10, '0')}`);
}

async function fill(machine: KvStateMachine, keys: number, valueBytes: number, log: (line: string) => void): Promise<void> {
  const values = Buffer.alloc(FILL_ENTRIES_PER_APPLY * valueBytes);
  let reported = 0;
  for (let first = 0; first < keys; first += FILL_ENTRIES_PER_APPLY) {
    const count = Math.min(FILL_ENTRIES_PER_APPLY, keys - first);
    randomFillSync(values, 0, count * valueBytes);
    const entries: Entry[] = [];
    for (let offset = 0; offset < count; offset += 1) {
      const index = first + offset + 1;
      // encodeKvCommand answers a view of a scratch buffer: copied before the next call.
      const data = encodeKvCommand({ id: index, request: { type: 'put', key: openKeyOf(first + offset), value: values.subarray(offset * valueBytes, (offset + 1) * valueBytes) } }).slice();
      entries.push({ index, term: 1, type: EntryType.Normal, data });
    }
    await machine.apply(entries);
    if (first + count - reported >= keys / 4) {
      reported = first + count;
      log(`  filled ${reported} of ${keys} keys`);
    }
  }
  await machine.sync();
}

// evict syncs the folder and drops every file of `dir` from the page cache; answers the bytes
// still resident by fincore (NaN without fincore).
function evict(dir: string): number {
  spawnSync('sync', ['-f', dir], { timeout: SYNC_TIMEOUT_MS });
  const files = folderFiles(dir);
  for (const file of files) spawnSync('dd', [`if=${file.path}`, 'iflag=nocache', 'count=0', 'status=none'], { timeout: SYNC_TIMEOUT_MS });
  const fincore = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', ...files.map((file) => file.path)], { encoding: 'utf8', timeout: SYNC_TIMEOUT_MS });
  if (fincore.status !== 0 || fincore.error !== undefined) return Number.NaN;
  return fincore.stdout.split('\n').filter((line) => line.trim() !== '').reduce((sum, line) => sum + Number(line.trim()), 0);
}

// ddDirectSeconds reads every file of `dir` with dd iflag=direct and answers the sum of dd's own times.
function ddDirectSeconds(dir: string): number {
  let seconds = 0;
  for (const file of folderFiles(dir)) {
    if (file.bytes === 0) continue;
    const child = spawnSync('dd', [`if=${file.path}`, 'of=/dev/null', 'bs=4M', 'iflag=direct'], { encoding: 'utf8', timeout: DD_TIMEOUT_MS });
    if (child.status !== 0) throw new Error(`dd iflag=direct ${file.path} failed: ${child.stderr}`);
    const match = /copied, ([0-9.e-]+) s/.exec(child.stderr);
    if (match?.[1] === undefined) throw new Error(`dd said: ${child.stderr}`);
    seconds += Number(match[1]);
  }
  return seconds;
}

// iterate opens the LevelDB with classic-level alone and reads every pair; answers the pairs.
async function iterate(dir: string): Promise<number> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  let pairs = 0;
  try {
    const iterator = db.iterator();
    try {
      for (;;) {
        const batch = await iterator.nextv(ITERATE_BATCH_KEYS);
        if (batch.length === 0) break;
        pairs += batch.length;
      }
    } finally {
      await iterator.close();
    }
  } finally {
    await db.close();
  }
  return pairs;
}

/** measureOpen runs the open phase (see the file comment); the caller removes `folder`. */
export async function measureOpen(options: OpenOptions): Promise<OpenFigures> {
  const { folder, rounds, log } = options;
  const dir = join(folder, 'kv');
  const figures: OpenFigures = {
    keys: options.keys,
    valueBytes: options.valueBytes,
    dbBytes: 0,
    dbFiles: 0,
    verifiedKeys: 0,
    verifiedBytes: 0,
    fillSeconds: 0,
    compactSeconds: 0,
    verifyColdS: [],
    verifyWarmS: [],
    verifyScanColdS: [],
    iterateColdS: [],
    iterateWarmS: [],
    openNoVerifyColdS: [],
    ddDirectS: [],
    residentAfterEvictBytes: [],
  };
  const machine = await openDiskKvStateMachine(dir);
  try {
    const fillStarted = performance.now();
    await fill(machine, options.keys, options.valueBytes, log);
    figures.fillSeconds = (performance.now() - fillStarted) / 1000;
    const compactStarted = performance.now();
    await machine.compactStorage();
    figures.compactSeconds = (performance.now() - compactStarted) / 1000;
  } finally {
    await machine.close();
  }
  const files = folderFiles(dir);
  figures.dbBytes = files.reduce((sum, file) => sum + file.bytes, 0);
  figures.dbFiles = files.length;
  log(
    `  state machine: ${options.keys} keys × ${options.valueBytes} B filled in ${figures.fillSeconds.toFixed(1)} s, compacted in ${figures.compactSeconds.toFixed(1)} s; ` +
      `LevelDB ${(figures.dbBytes / GIB).toFixed(3)} GiB in ${figures.dbFiles} files`,
  );
  const perGiB = (seconds: number): string => `${(seconds / (figures.dbBytes / GIB)).toFixed(2)} s/GiB`;
  const evicted = (): string => {
    const resident = evict(dir);
    figures.residentAfterEvictBytes.push(resident);
    return Number.isFinite(resident) ? `${(resident / 2 ** 20).toFixed(1)} MiB resident after eviction` : 'fincore missing';
  };
  const timed = async <T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> => {
    const started = performance.now();
    const value = await work();
    return { seconds: (performance.now() - started) / 1000, value };
  };
  const openVerified = async (): Promise<{ seconds: number; scanS: number; keys: number; bytes: number }> => {
    const { seconds, value } = await timed(async () => {
      const opened = await openDiskKvStateMachine(dir);
      const verification = opened.openVerification();
      await opened.close();
      return verification;
    });
    if (value === undefined) throw new Error('open() reported no verification');
    return { seconds, scanS: value.durationMs / 1000, keys: value.keys, bytes: value.bytes };
  };
  const steps: Record<string, () => Promise<string>> = {
    verify: async () => {
      const state = evicted();
      const cold = await openVerified();
      const warm = await openVerified();
      figures.verifyColdS.push(cold.seconds);
      figures.verifyScanColdS.push(cold.scanS);
      figures.verifyWarmS.push(warm.seconds);
      figures.verifiedKeys = cold.keys;
      figures.verifiedBytes = cold.bytes;
      return `verified open: cold ${cold.seconds.toFixed(2)} s (${perGiB(cold.seconds)}; data scan ${cold.scanS.toFixed(2)} s; ${state}), warm ${warm.seconds.toFixed(2)} s (${perGiB(warm.seconds)}); ${cold.keys} keys, ${(cold.bytes / 1e6).toFixed(0)} MB read`;
    },
    iterate: async () => {
      const state = evicted();
      const cold = await timed(() => iterate(dir));
      const warm = await timed(() => iterate(dir));
      figures.iterateColdS.push(cold.seconds);
      figures.iterateWarmS.push(warm.seconds);
      return `classic-level full iteration: cold ${cold.seconds.toFixed(2)} s (${perGiB(cold.seconds)}; ${state}), warm ${warm.seconds.toFixed(2)} s (${perGiB(warm.seconds)}); ${cold.value} pairs`;
    },
    open: async () => {
      const state = evicted();
      const cold = await timed(async () => {
        const opened = await openDiskKvStateMachine(dir, { verifyAtOpen: false });
        await opened.close();
      });
      figures.openNoVerifyColdS.push(cold.seconds);
      return `open without verification: cold ${cold.seconds.toFixed(2)} s (${state})`;
    },
    dd: async () => {
      const seconds = ddDirectSeconds(dir);
      figures.ddDirectS.push(seconds);
      return `dd iflag=direct of the ${figures.dbFiles} files: ${seconds.toFixed(2)} s (${perGiB(seconds)}, ${(figures.dbBytes / seconds / 1e6).toFixed(0)} MB/s)`;
    },
  };
  for (let round = 0; round < rounds; round += 1) {
    for (const name of rotate(['verify', 'iterate', 'open', 'dd'], round)) {
      const line = await (steps[name] as () => Promise<string>)();
      log(`  round ${round + 1}/${rounds} ${line}`);
    }
  }
  return figures;
}

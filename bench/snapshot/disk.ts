// bench:snapshot, figures 1 and 2, in this process: a snapshot of a LevelDB state machine
// written to disk, read back and restored, each against dd on the same filesystem and with
// the same byte count, in interleaved rounds.
//
// The state machine is filled once through apply() of put commands (KvStateMachine, as a
// member fills it), then every round:
//  - writes: DiskSnapshotStore.create() end to end (its O_DIRECT read-back check included),
//    create() with readBack off, dd of the same MiB with oflag=direct + conv=fdatasync, and
//    dd with conv=fdatasync only, in an order that rotates each round;
//  - reads: the snapshot written in this round is read through open() + records() (every
//    block's CRC32c and the content's SHA-256: what a restore reads), restored into a fresh
//    LevelDB (restoreDiskKvStateMachine, fed by records()), and read by dd with iflag=direct;
//    rotated likewise;
//  - the storage engine's own rates, the ceilings of the two LevelDB ends: the state read
//    through a snapshot view with nothing done with the records (create's read half), and the
//    snapshot's records written by plain classic-level batches of the restore's size into a
//    fresh LevelDB, without restore()'s checks (restore's write half, with its read).
// Before each timed write the previous file is removed and the filesystem synced (dd.ts).
import { randomFillSync } from 'node:crypto';
import { ClassicLevel } from 'classic-level';
import { join } from 'node:path';

import type { ConfState, Entry } from '../../src/raft/index.ts';
import { EntryType } from '../../src/raft/index.ts';
import { DiskSnapshotStore, snapshotDigestRoot, type SnapshotInfo } from '../../src/snapshot/index.ts';
import { encodeKvCommand, openDiskKvStateMachine, RESTORE_BATCH_BYTES_MAX, restoreDiskKvStateMachine, type KvStateMachine } from '../../src/storage/index.ts';
import { ddReadMBps, ddWriteMBps, mibFor, removeAndSync, syncFolder } from './dd.ts';

/** DiskFigures are every round's value of each figure (MB/s = 10^6 bytes per second of the snapshot file's length). */
export interface DiskFigures {
  snapshotBytes: number;
  keyCount: number;
  fillSeconds: number;
  readonly createMBps: number[];
  readonly createNoReadBackMBps: number[];
  readonly verifyReadMBps: number[];
  readonly ddDirectWriteMBps: number[];
  readonly ddBufferedWriteMBps: number[];
  readonly recordsReadMBps: number[];
  readonly restoreMBps: number[];
  readonly ddDirectReadMBps: number[];
  readonly levelViewReadMBps: number[];
  readonly levelBatchWriteMBps: number[];
}

/** DiskOptions: the state's size and the rounds. */
export interface DiskOptions {
  readonly folder: string;
  readonly keys: number;
  readonly valueBytes: number;
  readonly rounds: number;
  readonly log: (line: string) => void;
}

const FILL_ENTRIES_PER_APPLY = 1_024;
const CONF_STATE: ConfState = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
const NO_MEMBERS = new Uint8Array(0);

/** keyOf is the preload's key number `index` (fixed width, so key order is number order). */
export function keyOf(prefix: string, index: number): Buffer {
  return Buffer.from(`${prefix}/${index.toString().padStart(10, '0')}`);
}

// fill applies `keys` puts of random `valueBytes` values (LevelDB compresses its blocks:
// random values keep the state's size what it says).
async function fill(machine: KvStateMachine, keys: number, valueBytes: number, log: (line: string) => void): Promise<void> {
  const values = Buffer.alloc(FILL_ENTRIES_PER_APPLY * valueBytes);
  let reported = 0;
  for (let first = 0; first < keys; first += FILL_ENTRIES_PER_APPLY) {
    const count = Math.min(FILL_ENTRIES_PER_APPLY, keys - first);
    randomFillSync(values, 0, count * valueBytes);
    const entries: Entry[] = [];
    for (let offset = 0; offset < count; offset += 1) {
      const index = first + offset + 1;
      // encodeKvCommand returns a view of a scratch buffer: copy it before the next call.
      const data = encodeKvCommand({ id: index, request: { type: 'put', key: keyOf('state', first + offset), value: values.subarray(offset * valueBytes, (offset + 1) * valueBytes) } }).slice();
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

/** measureDisk runs figures 1 and 2 (see the file comment) and removes everything it wrote. */
export async function measureDisk(options: DiskOptions): Promise<DiskFigures> {
  const { folder, rounds, log } = options;
  const machine = await openDiskKvStateMachine(join(folder, 'state'));
  const checked = await DiskSnapshotStore.open(join(folder, 'snap-checked'));
  const unchecked = await DiskSnapshotStore.open(join(folder, 'snap-unchecked'), { readBack: false });
  const ddPath = join(folder, 'dd.bin');
  const restorePath = join(folder, 'restored');
  let term = 0;
  const figures: DiskFigures = {
    snapshotBytes: 0,
    keyCount: 0,
    fillSeconds: 0,
    createMBps: [],
    createNoReadBackMBps: [],
    verifyReadMBps: [],
    ddDirectWriteMBps: [],
    ddBufferedWriteMBps: [],
    recordsReadMBps: [],
    restoreMBps: [],
    ddDirectReadMBps: [],
    levelViewReadMBps: [],
    levelBatchWriteMBps: [],
  };
  let snapshotBytes = 0;
  try {
    const fillStarted = performance.now();
    await fill(machine, options.keys, options.valueBytes, log);
    const fillSeconds = (performance.now() - fillStarted) / 1000;
    log(`  state machine filled: ${options.keys} keys × ${options.valueBytes} B in ${fillSeconds.toFixed(1)} s`);
    figures.fillSeconds = fillSeconds;
    // LevelDB compacts what the fill wrote on its own threads, in this process: round 1 would
    // pay for it. Wait (bounded) until this process is idle.
    const settled = await waitIdle();
    log(`  LevelDB's compactions after the fill: this process idle after ${(settled.waitedMs / 1000).toFixed(1)} s${settled.idle ? '' : ' (STILL BUSY: round 1 shares the CPU with them)'}`);

    // create writes a snapshot of the state with `store` and answers its info and seconds.
    const create = async (store: DiskSnapshotStore): Promise<{ info: SnapshotInfo; seconds: number }> => {
      await store.retain(0);
      syncFolder(folder);
      term += 1;
      const view = machine.openSnapshotView();
      const started = performance.now();
      const info = await store.create({
        metadata: { index: view.appliedIndex, term, confState: CONF_STATE, revision: view.revision, members: NO_MEMBERS },
        records: () => view.records(),
      });
      return { info, seconds: (performance.now() - started) / 1000 };
    };
    const mbps = (bytes: number, seconds: number): number => bytes / seconds / 1e6;

    for (let round = 0; round < rounds; round += 1) {
      let lastInfo: SnapshotInfo | undefined;
      let lastStore: DiskSnapshotStore | undefined;
      const writes: Record<string, () => Promise<string>> = {
        create: async () => {
          const { info, seconds } = await create(checked);
          lastInfo = info;
          lastStore = checked;
          snapshotBytes = info.byteLength;
          figures.createMBps.push(mbps(info.byteLength, seconds));
          return `create (with read-back) ${mbps(info.byteLength, seconds).toFixed(0)} MB/s (${info.byteLength} bytes, ${info.keyCount} keys, ${seconds.toFixed(2)} s)`;
        },
        createNoReadBack: async () => {
          const { info, seconds } = await create(unchecked);
          lastInfo = info;
          lastStore = unchecked;
          snapshotBytes = info.byteLength;
          figures.createNoReadBackMBps.push(mbps(info.byteLength, seconds));
          // The check create() skipped, as a separate read: open() + records() to the end.
          const verifyStarted = performance.now();
          await consume(unchecked, info);
          const verifySeconds = (performance.now() - verifyStarted) / 1000;
          figures.verifyReadMBps.push(mbps(info.byteLength, verifySeconds));
          return `create (readBack off) ${mbps(info.byteLength, seconds).toFixed(0)} MB/s, then open+records ${mbps(info.byteLength, verifySeconds).toFixed(0)} MB/s`;
        },
        ddDirect: async () => {
          const rate = ddWriteMBps(ddPath, folder, mibFor(snapshotBytes), true);
          figures.ddDirectWriteMBps.push(rate);
          return `dd oflag=direct conv=fdatasync ${rate.toFixed(0)} MB/s`;
        },
        ddBuffered: async () => {
          const rate = ddWriteMBps(ddPath, folder, mibFor(snapshotBytes), false);
          figures.ddBufferedWriteMBps.push(rate);
          return `dd conv=fdatasync ${rate.toFixed(0)} MB/s`;
        },
      };
      // Round 1 starts with create (no rotation yet): dd needs the snapshot's size.
      for (const name of rotate(['create', 'ddDirect', 'createNoReadBack', 'ddBuffered'], round)) {
        const line = await (writes[name] as () => Promise<string>)();
        removeAndSync(ddPath, folder);
        log(`  round ${round + 1}/${rounds} write: ${line}`);
      }
      const info = lastInfo;
      const store = lastStore;
      if (info === undefined || store === undefined) throw new Error('no snapshot was written in the round');

      const reads: Record<string, () => Promise<string>> = {
        records: async () => {
          const started = performance.now();
          await consume(store, info);
          const seconds = (performance.now() - started) / 1000;
          figures.recordsReadMBps.push(mbps(info.byteLength, seconds));
          return `open+records ${mbps(info.byteLength, seconds).toFixed(0)} MB/s`;
        },
        restore: async () => {
          removeAndSync(restorePath, folder);
          const started = performance.now();
          const reader = await store.open(info.id);
          let restored: KvStateMachine | undefined;
          try {
            restored = await restoreDiskKvStateMachine(restorePath, {
              appliedIndex: reader.metadata.index,
              appliedTerm: reader.metadata.term,
              revision: reader.metadata.revision,
              records: reader.records(),
              keyCount: info.keyCount,
              digest: snapshotDigestRoot(reader.metadata, reader.info.keyCount),
              mirror: reader.metadata.mirror,
            });
          } finally {
            await reader.close();
          }
          const seconds = (performance.now() - started) / 1000;
          await restored.close();
          removeAndSync(restorePath, folder);
          figures.restoreMBps.push(mbps(info.byteLength, seconds));
          return `restore into a fresh LevelDB ${mbps(info.byteLength, seconds).toFixed(0)} MB/s (${seconds.toFixed(2)} s, ${((info.keyCount / seconds) | 0)} keys/s)`;
        },
        ddRead: async () => {
          const rate = ddReadMBps(info.location, info.byteLength);
          figures.ddDirectReadMBps.push(rate);
          return `dd iflag=direct read ${rate.toFixed(0)} MB/s`;
        },
        levelRead: async () => {
          const view = machine.openSnapshotView();
          const started = performance.now();
          let keys = 0;
          try {
            for await (const batch of view.records()) keys += batch.length;
          } finally {
            await view.close();
          }
          const seconds = (performance.now() - started) / 1000;
          if (keys !== info.keyCount) throw new Error(`the view read ${keys} keys of ${info.keyCount}`);
          figures.levelViewReadMBps.push(mbps(info.byteLength, seconds));
          return `LevelDB view read alone ${mbps(info.byteLength, seconds).toFixed(0)} MB/s (${seconds.toFixed(2)} s)`;
        },
        levelWrite: async () => {
          removeAndSync(restorePath, folder);
          const started = performance.now();
          await plainLevelWrite(store, info, restorePath);
          const seconds = (performance.now() - started) / 1000;
          removeAndSync(restorePath, folder);
          figures.levelBatchWriteMBps.push(mbps(info.byteLength, seconds));
          return `plain classic-level batches of the records ${mbps(info.byteLength, seconds).toFixed(0)} MB/s (${seconds.toFixed(2)} s)`;
        },
      };
      for (const name of rotate(['records', 'restore', 'ddRead', 'levelRead', 'levelWrite'], round)) {
        const line = await (reads[name] as () => Promise<string>)();
        log(`  round ${round + 1}/${rounds} read: ${line}`);
      }
      figures.snapshotBytes = snapshotBytes;
      figures.keyCount = info.keyCount;
    }
  } finally {
    await checked.retain(0).catch(() => undefined);
    await unchecked.retain(0).catch(() => undefined);
    await checked.close();
    await unchecked.close();
    await machine.close();
    removeAndSync(ddPath, folder);
    removeAndSync(restorePath, folder);
  }
  return figures;
}

// plainLevelWrite writes snapshot `info`'s records into a new LevelDB at `location` with
// plain batches of RESTORE_BATCH_BYTES_MAX (one written while the next is gathered, as restore()
// does), then one synced write: restore()'s writes without its checks and decoding.
async function plainLevelWrite(store: DiskSnapshotStore, info: SnapshotInfo, location: string): Promise<void> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view', errorIfExists: true });
  const reader = await store.open(info.id);
  try {
    await db.open();
    let operations: { type: 'put'; key: Uint8Array; value: Uint8Array }[] = [];
    let bytes = 0;
    let writing: Promise<void> = Promise.resolve();
    for await (const batch of reader.records()) {
      for (const record of batch) {
        operations.push({ type: 'put', key: record.key, value: record.value });
        bytes += record.key.byteLength + record.value.byteLength;
        if (bytes >= RESTORE_BATCH_BYTES_MAX) {
          const full = operations;
          await writing;
          writing = db.batch(full);
          operations = [];
          bytes = 0;
        }
      }
    }
    await writing;
    await db.batch(operations, { sync: true });
  } finally {
    await reader.close();
    await db.close();
  }
}

// consume opens snapshot `info` and reads every record (each block's CRC32c and, at the end,
// the content's SHA-256 are checked by the reader).
async function consume(store: DiskSnapshotStore, info: SnapshotInfo): Promise<void> {
  const reader = await store.open(info.id);
  try {
    let keys = 0;
    for await (const batch of reader.records()) keys += batch.length;
    if (keys !== info.keyCount) throw new Error(`read ${keys} keys of ${info.keyCount}`);
  } finally {
    await reader.close();
  }
}

const IDLE_CPU_PERCENT_MAX = 10;
const IDLE_WINDOW_MS = 2_000;
const IDLE_TIMEOUT_MS = 180_000;

// waitIdle waits until this process (all its threads) used less than IDLE_CPU_PERCENT_MAX of a
// core over IDLE_WINDOW_MS, at most IDLE_TIMEOUT_MS.
async function waitIdle(): Promise<{ waitedMs: number; idle: boolean }> {
  const started = performance.now();
  while (performance.now() - started < IDLE_TIMEOUT_MS) {
    const before = process.cpuUsage();
    await new Promise((resolve) => setTimeout(resolve, IDLE_WINDOW_MS));
    const used = process.cpuUsage(before);
    if (((used.user + used.system) / 1000 / IDLE_WINDOW_MS) * 100 < IDLE_CPU_PERCENT_MAX) return { waitedMs: performance.now() - started, idle: true };
  }
  return { waitedMs: performance.now() - started, idle: false };
}

function rotate<T>(items: readonly T[], by: number): T[] {
  return items.map((_, index) => items[(index + by) % items.length] as T);
}

// bench:integrity, the log-delta stream against the snapshot stream: how fast one member hands
// out a state as the entries that built it (Admin.LogStream from index 1) and as a snapshot of
// it (etcd's Maintenance.Snapshot, what `etcdctl snapshot save` and `stratakv snapshot save`
// read), in the same run, from the same member, alternating each round.
//
// One single-member cluster that neither snapshots by count nor compacts its log
// (--snapshot-count and --snapshot-catchup-entries far above the preload; periodic integrity
// checkpoints by time off, so nothing is applied between rounds and every Maintenance.Snapshot
// serves the same snapshot file) gets `keys` keys of `valueBytes` random bytes, `putsPerEntry`
// puts per entry (a Txn; 1 is one put per entry, as most etcd clients write). Then a
// Maintenance.Snapshot is started and cancelled after its first message: the member writes the
// snapshot of everything applied (its creation time is reported; the streams below do not
// include it). Every round:
//  - delta: LogStreamClient (bench/log-delta/measure.ts) from index 1 to the applied index,
//    every chunk's CRC32c and continuity checked by the client; MB/s of entry data;
//  - snapshot: EtcdClient.snapshot() of the same member to the end (the SHA-256 trailer checked);
//    MB/s of the snapshot file's bytes, from the call's start and from its first message.
// Baselines, the same rounds: dd iflag=direct of the snapshot file and of the WAL's files (the
// disk's read rate of what each stream reads).
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { join } from 'node:path';

import { EtcdClient } from '../../src/client/index.ts';
import { status } from '../cluster/rpc.ts';
import { measureLogStream } from '../log-delta/measure.ts';
import { triggerSnapshot } from '../snapshot/etcd-calls.ts';
import { folderFiles, preloadTxns, startSolo, type SoloMember } from './members.ts';

/** StreamFigures: every round's rates and what was streamed. */
export interface StreamFigures {
  readonly keys: number;
  readonly valueBytes: number;
  readonly putsPerEntry: number;
  preloadSeconds: number;
  snapshotCreateSeconds: number;
  snapshotBytes: number;
  walBytes: number;
  entries: number;
  entryBytes: number;
  readonly deltaMBps: number[];
  readonly deltaEntriesPerSecond: number[];
  readonly deltaSeconds: number[];
  readonly snapshotMBps: number[];
  readonly snapshotAfterFirstByteMBps: number[];
  readonly snapshotSeconds: number[];
  readonly snapshotFirstByteMs: number[];
  readonly ddSnapshotMBps: number[];
  readonly ddWalMBps: number[];
}

/** StreamOptions: where, the state, the rounds, extra serve flags. */
export interface StreamOptions {
  readonly folder: string;
  readonly keys: number;
  readonly valueBytes: number;
  readonly putsPerEntry: number;
  readonly rounds: number;
  readonly serveFlags: readonly string[];
  readonly log: (line: string) => void;
}

const KEEP_EVERYTHING = ['--snapshot-count', '1000000000', '--snapshot-catchup-entries', '1000000000', '--integrity-check-interval', '0'];
const PRELOAD_CONCURRENCY = 64;
const PRELOAD_TIMEOUT_MS = 30 * 60_000;
const STATUS_DEADLINE_MS = 5_000;
const SNAPSHOT_IDLE_TIMEOUT_MS = 300_000;
const DD_TIMEOUT_MS = 600_000;

function ddReadSeconds(path: string): number {
  const child = spawnSync('dd', [`if=${path}`, 'of=/dev/null', 'bs=4M', 'iflag=direct'], { encoding: 'utf8', timeout: DD_TIMEOUT_MS });
  if (child.status !== 0) throw new Error(`dd iflag=direct ${path} failed: ${child.stderr}`);
  const match = /copied, ([0-9.e-]+) s/.exec(child.stderr);
  if (match?.[1] === undefined) throw new Error(`dd said: ${child.stderr}`);
  return Number(match[1]);
}

/** measureStreams runs the stream phase (see the file comment); stops its member on every way out. */
export async function measureStreams(options: StreamOptions): Promise<StreamFigures> {
  const { folder, rounds, log } = options;
  const figures: StreamFigures = {
    keys: options.keys,
    valueBytes: options.valueBytes,
    putsPerEntry: options.putsPerEntry,
    preloadSeconds: 0,
    snapshotCreateSeconds: 0,
    snapshotBytes: 0,
    walBytes: 0,
    entries: 0,
    entryBytes: 0,
    deltaMBps: [],
    deltaEntriesPerSecond: [],
    deltaSeconds: [],
    snapshotMBps: [],
    snapshotAfterFirstByteMBps: [],
    snapshotSeconds: [],
    snapshotFirstByteMs: [],
    ddSnapshotMBps: [],
    ddWalMBps: [],
  };
  let member: SoloMember | undefined;
  try {
    member = await startSolo(folder, 'stream', `bench-stream-${process.pid}`, [...KEEP_EVERYTHING, ...options.serveFlags]);
    const values = Buffer.alloc(options.valueBytes);
    const loaded = await preloadTxns({
      endpoint: member.endpoint,
      keys: options.keys,
      putsPerTxn: options.putsPerEntry,
      concurrency: PRELOAD_CONCURRENCY,
      timeoutMs: PRELOAD_TIMEOUT_MS,
      keyOf: (index) => Buffer.from(`stream/${index.toString().padStart(10, '0')}`),
      valueOf: () => randomFillSync(values),
      log,
      label: 'stream',
    });
    figures.preloadSeconds = loaded.seconds;
    figures.snapshotCreateSeconds = (await triggerSnapshot(member.endpoint)) / 1000;
    const appliedIndex = Number((await status(member.endpoint, STATUS_DEADLINE_MS)).raftAppliedIndex);
    const snapFiles = folderFiles(join(member.dataDir, 'member', 'snap')).filter((file) => file.path.endsWith('.snap'));
    const snapshotFile = snapFiles.sort((left, right) => right.bytes - left.bytes)[0];
    if (snapshotFile === undefined) throw new Error(`no snapshot file in ${member.dataDir}/member/snap after Maintenance.Snapshot`);
    const walFiles = folderFiles(join(member.dataDir, 'member', 'wal')).filter((file) => file.bytes > 0);
    figures.walBytes = walFiles.reduce((sum, file) => sum + file.bytes, 0);
    log(
      `  stream member: ${options.keys} keys × ${options.valueBytes} B, ${options.putsPerEntry} put(s) per entry, ${loaded.txns} entries preloaded in ${loaded.seconds.toFixed(0)} s; ` +
        `applied index ${appliedIndex}; snapshot written in ${figures.snapshotCreateSeconds.toFixed(1)} s (${snapFiles.length} file(s), the largest ${snapshotFile.bytes} bytes); WAL ${(figures.walBytes / 1e6).toFixed(0)} MB`,
    );
    const target = member;
    const steps: Record<string, () => Promise<string>> = {
      delta: async () => {
        const measured = await measureLogStream({ endpoints: [target.grpcTarget], fromIndex: 1, toIndex: appliedIndex });
        if (measured.snapshotBytes > 0 || measured.lastIndex !== appliedIndex) {
          throw new Error(`the delta stream answered ${measured.snapshotBytes} snapshot bytes and ended at ${measured.lastIndex}, not entries 1..${appliedIndex}`);
        }
        figures.entries = measured.entries;
        figures.entryBytes = measured.entryBytes;
        figures.deltaMBps.push(measured.megabytesPerSecond);
        figures.deltaEntriesPerSecond.push(measured.entries / measured.seconds);
        figures.deltaSeconds.push(measured.seconds);
        return `delta stream: ${measured.entries} entries, ${(measured.entryBytes / 1e6).toFixed(0)} MB of entry data in ${measured.seconds.toFixed(2)} s: ${measured.megabytesPerSecond.toFixed(0)} MB/s, ${(measured.entries / measured.seconds).toFixed(0)} entries/s`;
      },
      snapshot: async () => {
        const client = new EtcdClient({ endpoints: [target.endpoint], timeoutMs: SNAPSHOT_IDLE_TIMEOUT_MS });
        const started = performance.now();
        let firstMs = Number.NaN;
        let bytes = 0;
        try {
          for await (const chunk of client.snapshot(target.endpoint, { idleTimeoutMs: SNAPSHOT_IDLE_TIMEOUT_MS })) {
            if (Number.isNaN(firstMs)) firstMs = performance.now() - started;
            if (chunk.kind === 'data') bytes += chunk.bytes.byteLength;
          }
        } finally {
          client.close();
        }
        const seconds = (performance.now() - started) / 1000;
        figures.snapshotBytes = bytes;
        figures.snapshotMBps.push(bytes / seconds / 1e6);
        figures.snapshotAfterFirstByteMBps.push(bytes / (seconds - firstMs / 1000) / 1e6);
        figures.snapshotSeconds.push(seconds);
        figures.snapshotFirstByteMs.push(firstMs);
        return `snapshot stream: ${(bytes / 1e6).toFixed(0)} MB in ${seconds.toFixed(2)} s: ${(bytes / seconds / 1e6).toFixed(0)} MB/s (first message after ${firstMs.toFixed(0)} ms)`;
      },
      dd: async () => {
        const snapshotSeconds = ddReadSeconds(snapshotFile.path);
        const walSeconds = walFiles.reduce((sum, file) => sum + ddReadSeconds(file.path), 0);
        figures.ddSnapshotMBps.push(snapshotFile.bytes / snapshotSeconds / 1e6);
        figures.ddWalMBps.push(figures.walBytes / walSeconds / 1e6);
        return `dd iflag=direct: snapshot file ${(snapshotFile.bytes / snapshotSeconds / 1e6).toFixed(0)} MB/s, WAL ${(figures.walBytes / walSeconds / 1e6).toFixed(0)} MB/s`;
      },
    };
    for (let round = 0; round < rounds; round += 1) {
      const order = round % 2 === 0 ? ['delta', 'snapshot', 'dd'] : ['snapshot', 'delta', 'dd'];
      for (const name of order) log(`  round ${round + 1}/${rounds} ${await (steps[name] as () => Promise<string>)()}`);
    }
    return figures;
  } finally {
    await member?.stop();
  }
}

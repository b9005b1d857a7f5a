// bench:snapshot, figure 6: how long a member takes to restart with many entries in its log,
// before compaction and after.
//
// One single-member cluster gets `entries` puts of 100-byte values (one entry each) with
// --snapshot-count far above that, so nothing is snapshotted or compacted, and is stopped.
// A copy of its data folder is started with --snapshot-count 10000 and made to take a
// snapshot (Maintenance.Snapshot), which compacts its log to a short tail, and stopped: the
// same data, compacted. Then, in rounds (order rotating), each folder is started again and
// timed from spawn to its first answered Maintenance.Status and to its first answered
// linearizable Range of a preloaded key. The files are in the page cache on every start
// (they were just written or read), so this is the member's own work, not the disk's.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import type { LoadHarness } from '../cluster/harness.ts';
import { freePorts, sleep, tailOf } from '../cluster/processes.ts';
import { openClient, unary } from '../cluster/rpc.ts';
import { decodeRangeResponse, encodeRangeRequest, KV_RANGE } from '../cluster/wire.ts';
import { readLogLines, snapshotAndCompact, startSingle, tryStatus, type SingleMember } from './members.ts';

/** RestartFigures are every round's times, and what the two data folders held. */
export interface RestartFigures {
  readonly entries: number;
  readonly preloadSeconds: number;
  readonly uncompacted: FolderSize;
  readonly compacted: FolderSize;
  readonly compactedThrough: number;
  readonly snapshotIndex: number;
  readonly statusMs: { readonly uncompacted: number[]; readonly compacted: number[] };
  readonly getMs: { readonly uncompacted: number[]; readonly compacted: number[] };
  /** servingMs: from spawn to the member's "serving" log line; leaderMs: to its "became leader". */
  readonly servingMs: { readonly uncompacted: number[]; readonly compacted: number[] };
  readonly leaderMs: { readonly uncompacted: number[]; readonly compacted: number[] };
}

/** FolderSize is what a data folder holds: WAL bytes and snapshot files. */
export interface FolderSize {
  readonly walBytes: number;
  readonly snapshotFiles: number;
  readonly snapshotBytes: number;
}

/** RestartOptions: where, how many entries, rounds, and the load harness for the preload. */
export interface RestartOptions {
  readonly folder: string;
  readonly entries: number;
  readonly rounds: number;
  readonly harness: LoadHarness;
  readonly log: (line: string) => void;
}

const NO_SNAPSHOTS = ['--snapshot-count', '1000000000'];
const SNAPSHOT_COUNT_DEFAULT = ['--snapshot-count', '10000'];
const PRELOAD_VALUE_BYTES = 100;
const PRELOAD_CONCURRENCY = 64;
const PRELOAD_JOB_MS_MAX = 9 * 60_000;
const PRELOAD_JOBS_MAX = 4;
const START_TIMEOUT_MS = 300_000;
const POLL_MS = 20;
/** The snapshot should leave at most this many entries in the log (twice --snapshot-catchup-entries' default). */
const COMPACTED_TAIL_MAX = 10_000;

function folderBytes(path: string, depth = 0): number {
  if (depth > 4) return 0;
  let total = 0;
  let names: string[];
  try {
    names = readdirSync(path);
  } catch {
    return 0;
  }
  for (const name of names) {
    const stat = statSync(join(path, name));
    total += stat.isDirectory() ? folderBytes(join(path, name), depth + 1) : stat.size;
  }
  return total;
}

function sizeOf(dataDir: string): FolderSize {
  const snapDir = join(dataDir, 'member', 'snap');
  let snapshots: string[] = [];
  try {
    snapshots = readdirSync(snapDir).filter((name) => name.endsWith('.snap'));
  } catch {
    snapshots = [];
  }
  return {
    walBytes: folderBytes(join(dataDir, 'member', 'wal')),
    snapshotFiles: snapshots.length,
    snapshotBytes: snapshots.reduce((sum, name) => sum + statSync(join(snapDir, name)).size, 0),
  };
}

// untilAnswered polls `attempt` every POLL_MS until it answers true (bounded), failing at once if the member exits.
async function untilAnswered(member: SingleMember, attempt: () => Promise<boolean>): Promise<number> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await attempt())) {
    if (member.child.exitCode !== null || member.child.signalCode !== null) throw new Error(`the member exited (code ${member.child.exitCode}); its log ends:\n${tailOf(member.logPath)}`);
    if (Date.now() > deadline) throw new Error(`the member did not answer within ${START_TIMEOUT_MS} ms; its log ends:\n${tailOf(member.logPath)}`);
    await sleep(POLL_MS);
  }
  return performance.now() - member.spawnedAtMs;
}

async function getAnswers(endpoint: string, key: Buffer): Promise<boolean> {
  const client = openClient(endpoint);
  try {
    const answer = decodeRangeResponse(await unary(client, KV_RANGE, encodeRangeRequest(key), 1_000));
    return answer.kvCount === 1;
  } catch {
    return false;
  } finally {
    client.close();
  }
}

/** measureRestart runs figure 6 (see the file comment); the caller removes `folder`. */
export async function measureRestart(options: RestartOptions): Promise<RestartFigures> {
  const { folder, entries, rounds, harness, log } = options;
  const plainDir = join(folder, 'uncompacted.data');
  const compactedDir = join(folder, 'compacted.data');
  const [plainClient, plainPeer, compactedClient, compactedPeer] = await freePorts(4);
  const plainPorts = { client: plainClient ?? 0, peer: plainPeer ?? 0 };
  const compactedPorts = { client: compactedClient ?? 0, peer: compactedPeer ?? 0 };
  const getKey = Buffer.from('bench/restart0/0');

  // The preload: `entries` puts, one entry each, nothing compacted.
  let member = startSingle(plainDir, join(folder, 'preload.log'), plainPorts, NO_SNAPSHOTS);
  let preloadSeconds = 0;
  try {
    await untilAnswered(member, async () => (await tryStatus(member.endpoint)) !== undefined);
    const started = performance.now();
    let stored = 0;
    for (let job = 0; stored < entries; job += 1) {
      if (job >= PRELOAD_JOBS_MAX) throw new Error(`restart preload: ${stored} of ${entries} puts after ${PRELOAD_JOBS_MAX} jobs`);
      const result = await harness.run({
        operation: 'put',
        endpoints: [member.endpoint],
        channels: 1,
        concurrency: PRELOAD_CONCURRENCY,
        warmupMs: 0,
        durationMs: PRELOAD_JOB_MS_MAX,
        requestsMax: entries - stored,
        deadlineMs: 0,
        keyPrefix: `restart${job}`,
        getPrefix: 'restart0',
        getKeys: 1,
        valueBytes: PRELOAD_VALUE_BYTES,
        recordCompletions: false,
      });
      if (result.failed + result.ambiguous > 0) throw new Error(`restart preload: errors ${JSON.stringify(result.errors)}`);
      stored += result.completed;
      log(`  restart preload: ${stored} of ${entries} puts in ${((performance.now() - started) / 1000).toFixed(0)} s (${result.perSecond.toFixed(0)}/s)`);
    }
    preloadSeconds = (performance.now() - started) / 1000;
  } finally {
    await member.stop();
  }
  const uncompacted = sizeOf(plainDir);
  log(`  uncompacted folder: WAL ${(uncompacted.walBytes / 1e6).toFixed(1)} MB, ${uncompacted.snapshotFiles} snapshot file(s)`);

  // The same data, compacted: a copy, snapshotted under --snapshot-count 10000.
  const copy = spawnSync('cp', ['-a', plainDir, compactedDir], { encoding: 'utf8', timeout: 600_000 });
  if (copy.status !== 0) throw new Error(`cp -a failed: ${copy.stderr}`);
  member = startSingle(compactedDir, join(folder, 'compact.log'), compactedPorts, SNAPSHOT_COUNT_DEFAULT);
  let compaction;
  try {
    await untilAnswered(member, async () => (await tryStatus(member.endpoint)) !== undefined);
    compaction = await snapshotAndCompact({ name: 'solo', id: 0n, endpoint: member.endpoint, pid: member.child.pid ?? 0, logPath: member.logPath }, COMPACTED_TAIL_MAX, log);
  } finally {
    await member.stop();
  }
  const compacted = sizeOf(compactedDir);
  log(`  compacted folder: WAL ${(compacted.walBytes / 1e6).toFixed(1)} MB, ${compacted.snapshotFiles} snapshot file(s) of ${(compacted.snapshotBytes / 1e6).toFixed(1)} MB`);

  const figures: RestartFigures = {
    entries,
    preloadSeconds,
    uncompacted,
    compacted,
    compactedThrough: compaction.compactedThrough,
    snapshotIndex: compaction.index,
    statusMs: { uncompacted: [], compacted: [] },
    getMs: { uncompacted: [], compacted: [] },
    servingMs: { uncompacted: [], compacted: [] },
    leaderMs: { uncompacted: [], compacted: [] },
  };
  const sides = [
    { side: 'uncompacted' as const, dataDir: plainDir, ports: plainPorts, flags: NO_SNAPSHOTS },
    { side: 'compacted' as const, dataDir: compactedDir, ports: compactedPorts, flags: SNAPSHOT_COUNT_DEFAULT },
  ];
  for (let round = 0; round < rounds; round += 1) {
    for (const { side, dataDir, ports, flags } of round % 2 === 0 ? sides : [...sides].reverse()) {
      const logPath = join(folder, `${side}-${round}.log`);
      const spawnedEpochMs = Date.now();
      const started = startSingle(dataDir, logPath, ports, flags);
      try {
        const statusMs = await untilAnswered(started, async () => (await tryStatus(started.endpoint)) !== undefined);
        const getMs = await untilAnswered(started, () => getAnswers(started.endpoint, getKey));
        const lines = readLogLines(logPath);
        const loggedMs = (message: string): number => {
          const line = lines.find((candidate) => candidate.message === message);
          return line === undefined ? Number.NaN : line.atMs - spawnedEpochMs;
        };
        const servingMs = loggedMs('serving');
        const leaderMs = loggedMs('became leader');
        figures.statusMs[side].push(statusMs);
        figures.getMs[side].push(getMs);
        figures.servingMs[side].push(servingMs);
        figures.leaderMs[side].push(leaderMs);
        log(
          `  round ${round + 1}/${rounds} restart ${side.padEnd(11)}: Status after ${statusMs.toFixed(0)} ms, get after ${getMs.toFixed(0)} ms ` +
            `(logged "serving" after ${servingMs.toFixed(0)} ms, "became leader" after ${leaderMs.toFixed(0)} ms)`,
        );
      } finally {
        await started.stop();
      }
    }
  }
  return figures;
}

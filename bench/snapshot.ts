// bench/snapshot.ts — `npm run bench:snapshot`: the snapshot figures of issue 12 in one run,
// each beside its baseline measured in the same run, interleaved, on this machine.
//
// State: --keys keys (default 1,000,000) of --value-bytes random bytes (default 1024), about
// 1 GiB. Three phases, one after the other (one heavy thing at a time), --rounds rounds each:
//  1, 2. in this process (bench/snapshot/disk.ts): DiskSnapshotStore.create() of a LevelDB
//     state machine's snapshot view vs dd writing the same MiB (oflag=direct conv=fdatasync,
//     and conv=fdatasync alone); reading it back (open + records: every CRC32c and the
//     SHA-256) and restoring it into a fresh LevelDB vs dd iflag=direct reading the file;
//  3-5. on a 3-process cluster (bench/snapshot/cluster.ts): a new member joining the loaded
//     cluster (vs 2 × snapshot size ÷ dd's write rate + 5 s), put p99 while a snapshot is sent
//     vs without, and the leader's RSS while it sends;
//  6. a single member restarted with --keys puts in its log, before and after compaction
//     (bench/snapshot/restart.ts).
// The end is a Markdown table (medians, [min–max] over rounds, ratios of medians with the
// per-round ratios' range where the two sides alternate), the run's details, and JSON lines.
//
// Options: --keys N, --value-bytes B, --rounds R (default 3), --concurrency N (put load of
// figure 4, default 16), --window-ms N (the first window without a send; later ones last as
// long as the previous window with one), --restart-entries N (default --keys), --preload-txn-puts N
// (puts per Txn in the cluster preload; default keys ÷ 20,000 within 1..64: about 20,000
// entries, enough for the log to be compacted behind a snapshot, few enough to load fast), --serve-flags "…" (extra `stratakv serve` flags for every
// member, e.g. "--snapshot-send-rate-bytes 419430400"), --only disk,cluster,restart.
// STRATAKV_BENCH_NODE_ARGS passes flags to the members' node (--cpu-prof, say).
import { parseArgs } from 'node:util';

import { LoadHarness } from './cluster/harness.ts';
import { cleanupSync, installCleanupHandlers, makeTempFolder, removeTempFolder } from './cluster/processes.ts';
import { readRunHeader } from './cluster/run-header.ts';
import { loadAverage, median, printFooter, summarize } from './cluster/stats.ts';
import { measureCluster, type ClusterFigures } from './snapshot/cluster.ts';
import { keyOf, measureDisk, type DiskFigures } from './snapshot/disk.ts';
import { measureRestart, type RestartFigures } from './snapshot/restart.ts';

const { values: options } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    'value-bytes': { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '16' },
    'window-ms': { type: 'string' },
    'restart-entries': { type: 'string' },
    'preload-txn-puts': { type: 'string' },
    'serve-flags': { type: 'string', default: '' },
    only: { type: 'string', default: 'disk,cluster,restart' },
  },
});
const MIB = 2 ** 20;
const KEYS = Number(options.keys);
const VALUE_BYTES = Number(options['value-bytes']);
const ROUNDS = Number(options.rounds);
const CONCURRENCY = Number(options.concurrency);
const RESTART_ENTRIES = Number(options['restart-entries'] ?? KEYS);
const SERVE_FLAGS = options['serve-flags'].split(' ').filter((item) => item !== '');
// The cluster of figures 3-5 takes no snapshot by entry count (unless --serve-flags sets one):
// with etcd's 10,000 every member snapshots its 1 GiB state at the same index, all on these
// 2 cores, and whichever window that lands in, with a send or without, pays for it; figure 4
// would then measure snapshot creation (figure 1), not the send. The log-bytes trigger stays,
// and the benchmark asks for the snapshot it joins members from (Maintenance.Snapshot).
const CLUSTER_SNAPSHOT_COUNT = 1_000_000_000;
const CLUSTER_SERVE_FLAGS = SERVE_FLAGS.some((flag) => flag === '--snapshot-count' || flag.startsWith('--snapshot-count='))
  ? SERVE_FLAGS
  : [...SERVE_FLAGS, '--snapshot-count', String(CLUSTER_SNAPSHOT_COUNT)];
const PUTS_PER_TXN = Number(options['preload-txn-puts'] ?? Math.min(64, Math.max(1, Math.floor(KEYS / 20_000))));
const PHASES = new Set(options.only.split(',').map((item) => item.trim()));
const SEND_RATE_BYTES = sendRateFromFlags(SERVE_FLAGS);
const STATE_BYTES = KEYS * VALUE_BYTES;
// The first window without a send: about as long as a send of the state at the send rate.
const WINDOW_MS = Number(options['window-ms'] ?? Math.min(60_000, Math.max(3_000, Math.round((STATE_BYTES / SEND_RATE_BYTES) * 1000 + 2_000))));
const KEYS_MAX = 10_000_000;
const ROUNDS_MAX = 15;
const JOIN_BOUND_FIXED_S = 5;
if (!(Number.isInteger(KEYS) && KEYS >= 1_000 && KEYS <= KEYS_MAX)) throw new Error(`--keys must be 1000..${KEYS_MAX}`);
if (!(Number.isInteger(VALUE_BYTES) && VALUE_BYTES >= 1 && VALUE_BYTES <= 64 * 1024)) throw new Error('--value-bytes must be 1..65536');
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1 && ROUNDS <= ROUNDS_MAX)) throw new Error(`--rounds must be 1..${ROUNDS_MAX}`);
if (!(Number.isInteger(CONCURRENCY) && CONCURRENCY >= 1 && CONCURRENCY <= 1_024)) throw new Error('--concurrency must be 1..1024');
if (!(Number.isInteger(RESTART_ENTRIES) && RESTART_ENTRIES >= 1_000 && RESTART_ENTRIES <= KEYS_MAX)) throw new Error(`--restart-entries must be 1000..${KEYS_MAX}`);
if (!(Number.isInteger(PUTS_PER_TXN) && PUTS_PER_TXN >= 1 && PUTS_PER_TXN <= 128)) throw new Error('--preload-txn-puts must be 1..128');
if (!(WINDOW_MS >= 1_000 && WINDOW_MS <= 600_000)) throw new Error('--window-ms must be 1000..600000');
for (const phase of PHASES) if (!['disk', 'cluster', 'restart'].includes(phase)) throw new Error(`--only: unknown phase ${phase} (disk, cluster, restart)`);

function sendRateFromFlags(flags: readonly string[]): number {
  const index = flags.findIndex((flag) => flag === '--snapshot-send-rate-bytes' || flag.startsWith('--snapshot-send-rate-bytes='));
  if (index < 0) return 100 * MIB;
  const flag = flags[index] ?? '';
  return Number(flag.includes('=') ? flag.split('=')[1] : flags[index + 1]);
}

installCleanupHandlers();
const runHeader = await readRunHeader('snapshot');
const { startedAt, command, commit, machine, loadBefore, busyBeforePercent } = runHeader;
const dirty = runHeader.dirtyFiles.length > 0;
const log = (line: string): void => console.log(line);
console.log(`bench:snapshot ${startedAt.toISOString()}: ${command}`);
console.log(`  commit ${commit}${dirty ? ' (with uncommitted changes)' : ''}; ${machine}`);
console.log(
  `  state ${KEYS} keys × ${VALUE_BYTES} B (${(STATE_BYTES / MIB).toFixed(0)} MiB of values), ${ROUNDS} round(s); load average ${loadBefore}, ` +
    `CPUs ${busyBeforePercent.toFixed(0)} % busy with other work`,
);

let disk: DiskFigures | undefined;
let cluster: ClusterFigures | undefined;
let restart: RestartFigures | undefined;
const failures: string[] = [];
const harness = LoadHarness.start(1);
try {
  if (PHASES.has('disk')) {
    console.log('\nfigures 1, 2: snapshot write, read and restore in this process vs dd');
    const folder = makeTempFolder('stratakv-bench-snapshot-');
    try {
      disk = await measureDisk({ folder, keys: KEYS, valueBytes: VALUE_BYTES, rounds: ROUNDS, log });
    } catch (error) {
      failures.push(`figures 1, 2: ${describe(error)}`);
      console.log(`  FAILED: ${describe(error)}`);
    } finally {
      removeTempFolder(folder);
    }
  }
  if (PHASES.has('cluster')) {
    console.log('\nfigures 3-5: a member joins a 3-process cluster; put p99 and leader RSS while a snapshot is sent');
    try {
      cluster = await measureCluster({
        keys: KEYS,
        valueBytes: VALUE_BYTES,
        rounds: ROUNDS,
        concurrency: CONCURRENCY,
        windowMs: WINDOW_MS,
        putsPerTxn: PUTS_PER_TXN,
        serveFlags: CLUSTER_SERVE_FLAGS,
        sendRateBytes: SEND_RATE_BYTES,
        harness,
        keyOf,
        log,
      });
    } catch (error) {
      failures.push(`figures 3-5: ${describe(error)}`);
      console.log(`  FAILED: ${describe(error)}`);
    }
  }
  if (PHASES.has('restart')) {
    console.log('\nfigure 6: restart of a single member with many log entries, before and after compaction');
    const folder = makeTempFolder('stratakv-bench-snapshot-restart-');
    try {
      restart = await measureRestart({ folder, entries: RESTART_ENTRIES, rounds: ROUNDS, harness, log });
    } catch (error) {
      failures.push(`figure 6: ${describe(error)}`);
      console.log(`  FAILED: ${describe(error)}`);
    } finally {
      removeTempFolder(folder);
    }
  }
} finally {
  await harness.close();
  cleanupSync();
}
report();
if (failures.length > 0) process.exitCode = 1;

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function report(): void {
  const endedAt = new Date();
  const rows: string[][] = [];
  const json: object[] = [];
  const spread = (values: readonly number[], digits: number, scale = 1): string => {
    if (values.length === 0) return '–';
    const summary = summarize(values.map((value) => value / scale));
    return `${summary.median.toFixed(digits)} [${summary.min.toFixed(digits)}–${summary.max.toFixed(digits)}]`;
  };
  const ratioCell = (top: readonly number[], bottom: readonly number[]): string => {
    const ratio = median(top) / median(bottom);
    if (!Number.isFinite(ratio)) return '–';
    const perRound = top.length === bottom.length ? top.map((value, index) => value / (bottom[index] ?? Number.NaN)).filter(Number.isFinite) : [];
    return perRound.length > 1 ? `${ratio.toFixed(2)} [${Math.min(...perRound).toFixed(2)}–${Math.max(...perRound).toFixed(2)}]` : ratio.toFixed(2);
  };
  const verdict = (value: number, goal: number, atLeast: boolean): string => (!Number.isFinite(value) ? '–' : (atLeast ? value >= goal : value <= goal) ? 'met' : 'NOT met');
  const row = (
    figure: string,
    name: string,
    values: readonly number[],
    baselineName: string,
    baseline: readonly number[],
    unit: string,
    digits: number,
    goal?: { readonly text: string; readonly value: number; readonly atLeast: boolean; readonly on: 'ratio' | 'value' },
    scale = 1,
  ): void => {
    const ratio = median(values) / median(baseline);
    const checked = goal === undefined ? Number.NaN : goal.on === 'ratio' ? ratio : median(values) / scale;
    rows.push([
      figure,
      `${name} (${unit})`,
      spread(values, digits, scale),
      baselineName === '' ? '–' : `${baselineName}: ${spread(baseline, digits, scale)}`,
      baseline.length > 0 ? ratioCell(values, baseline) : '–',
      goal?.text ?? '–',
      goal === undefined ? '–' : verdict(checked, goal.value, goal.atLeast),
    ]);
    json.push({
      bench: 'snapshot',
      name,
      unit,
      median: median(values) / scale,
      min: values.length > 0 ? Math.min(...values) / scale : Number.NaN,
      max: values.length > 0 ? Math.max(...values) / scale : Number.NaN,
      runs: values.length,
      ...(baseline.length > 0 ? { baseline: baselineName, baselineMedian: median(baseline) / scale, ratio } : {}),
      ...(goal !== undefined ? { goal: goal.text, met: verdict(checked, goal.value, goal.atLeast) === 'met' } : {}),
    });
  };

  if (disk !== undefined) {
    const size = `${(disk.snapshotBytes / 1e6).toFixed(0)} MB file`;
    const ddDirect = `dd oflag=direct conv=fdatasync ${size}`;
    const ddBuffered = `dd conv=fdatasync ${size}`;
    const ddRead = `dd iflag=direct read`;
    const atLeast80 = { text: '≥ 0.80 × dd', value: 0.8, atLeast: true, on: 'ratio' as const };
    row('1', 'snapshot create, end to end (O_DIRECT write + read-back check)', disk.createMBps, ddDirect, disk.ddDirectWriteMBps, 'MB/s', 0, atLeast80);
    row('1', 'snapshot create, end to end', disk.createMBps, ddBuffered, disk.ddBufferedWriteMBps, 'MB/s', 0, atLeast80);
    row('1', 'snapshot create with readBack off', disk.createNoReadBackMBps, ddDirect, disk.ddDirectWriteMBps, 'MB/s', 0, atLeast80);
    row('1', 'its check as a separate read (open + records)', disk.verifyReadMBps, ddRead, disk.ddDirectReadMBps, 'MB/s', 0);
    row('2', 'restore read: open + records (CRC32c + SHA-256)', disk.recordsReadMBps, ddRead, disk.ddDirectReadMBps, 'MB/s', 0, atLeast80);
    row('2', 'full restore into a fresh LevelDB', disk.restoreMBps, ddRead, disk.ddDirectReadMBps, 'MB/s', 0, atLeast80);
    // The storage engine's own ends, measured in the same rounds: what create and restore could reach with LevelDB.
    row('1', 'snapshot create, end to end', disk.createMBps, 'LevelDB view read alone', disk.levelViewReadMBps, 'MB/s', 0);
    row('2', 'full restore into a fresh LevelDB', disk.restoreMBps, 'plain classic-level batches of the records', disk.levelBatchWriteMBps, 'MB/s', 0);
  }
  if (cluster !== undefined) {
    const joinSeconds = (joins: readonly ClusterFigures['quietJoins'][number][]): number[] => joins.map((join) => join.caughtUpMs / 1000);
    const sendBytes = (sample: ClusterFigures['quietJoins'][number]): number => sample.sends.reduce((sum, send) => sum + send.bytes, 0) || cluster!.compaction.bytes;
    // The issue's bound per round: 2 × (the snapshot's size ÷ dd's write rate that round) + 5 s.
    const bounds = cluster.quietJoins.map((join, index) => (2 * sendBytes(join)) / ((cluster!.ddDirectWriteMBps[index] ?? Number.NaN) * 1e6) + JOIN_BOUND_FIXED_S);
    row('3', 'new member joins the quiet cluster, spawn to caught up', joinSeconds(cluster.quietJoins), '2 × size ÷ dd write + 5 s', bounds, 's', 2, {
      text: '≤ 1.00 × bound',
      value: 1,
      atLeast: false,
      on: 'ratio',
    });
    const floors = cluster.quietJoins.map((join) => sendBytes(join) / SEND_RATE_BYTES);
    row('3', "leader's snapshot send (its log), quiet", cluster.quietJoins.flatMap((join) => join.sends.map((send) => send.ms / 1000)), `size ÷ send rate ${(SEND_RATE_BYTES / MIB).toFixed(0)} MiB/s`, floors, 's', 2);
    row('3', 'new member joins under the put load', joinSeconds(cluster.loadedJoins), '', [], 's', 2);
    row('4', 'put p99 while a snapshot is sent', cluster.withWindows.map((window) => window.p99Ms), 'without a send', cluster.withoutWindows.map((window) => window.p99Ms), 'ms', 1, {
      text: '≤ 1.20 × without',
      value: 1.2,
      atLeast: false,
      on: 'ratio',
    });
    row('4', 'put p50 while a snapshot is sent', cluster.withWindows.map((window) => window.p50Ms), 'without a send', cluster.withoutWindows.map((window) => window.p50Ms), 'ms', 1);
    row('4', 'puts/s while a snapshot is sent', cluster.withWindows.map((window) => window.perSecond), 'without a send', cluster.withoutWindows.map((window) => window.perSecond), 'puts/s', 0);
    const growth = (joins: readonly ClusterFigures['quietJoins'][number][]): number[] => joins.map((join) => join.rssDuringMaxBytes - join.rssBeforeMedianBytes);
    row('5', 'leader VmRSS growth while sending, quiet (max during − median before)', growth(cluster.quietJoins), '', [], 'MiB', 0, { text: '≤ 64 MiB', value: 64, atLeast: false, on: 'value' }, MIB);
    row('5', 'leader VmRSS growth while sending, under the put load', growth(cluster.loadedJoins), '', [], 'MiB', 0, undefined, MIB);
    const anonGrowth = (joins: readonly ClusterFigures['quietJoins'][number][]): number[] => joins.map((join) => join.anonDuringMaxBytes - join.anonBeforeMedianBytes);
    row('5', 'leader RssAnon growth while sending, quiet (VmRSS without mapped files)', anonGrowth(cluster.quietJoins), '', [], 'MiB', 0, undefined, MIB);
    row('5', 'leader RssAnon growth while sending, under the put load', anonGrowth(cluster.loadedJoins), '', [], 'MiB', 0, undefined, MIB);
    row('5', 'leader VmRSS before a join (median)', cluster.quietJoins.map((join) => join.rssBeforeMedianBytes), '', [], 'MiB', 0, undefined, MIB);
    row('5', 'leader RssAnon before a join (median)', cluster.quietJoins.map((join) => join.anonBeforeMedianBytes), '', [], 'MiB', 0, undefined, MIB);
  }
  if (restart !== undefined) {
    row('6', `restart with ${restart.entries} entries in the WAL: spawn to Status`, restart.statusMs.uncompacted, 'after compaction', restart.statusMs.compacted, 'ms', 0);
    row('6', `restart with ${restart.entries} entries in the WAL: spawn to linearizable get`, restart.getMs.uncompacted, 'after compaction', restart.getMs.compacted, 'ms', 0);
    row('6', 'restart: spawn to "serving" logged', restart.servingMs.uncompacted, 'after compaction', restart.servingMs.compacted, 'ms', 0);
    row('6', 'restart: spawn to "became leader" logged', restart.leaderMs.uncompacted, 'after compaction', restart.leaderMs.compacted, 'ms', 0);
  }

  console.log(`\n## bench:snapshot — ${startedAt.toISOString()} to ${endedAt.toISOString()}\n`);
  console.log(`- command: \`${command}\` (${ROUNDS} round(s))${SERVE_FLAGS.length > 0 ? `, serve flags \`${SERVE_FLAGS.join(' ')}\`` : ''}`);
  console.log(`- commit: \`${commit}\`${dirty ? ' with uncommitted changes in the tree' : ', clean tree'}`);
  console.log(`- machine: ${machine}`);
  console.log(`- state: ${KEYS} keys × ${VALUE_BYTES} B random values; load average before ${loadBefore}, after ${loadAverage()}; CPUs ${busyBeforePercent.toFixed(0)} % busy with other work before`);
  console.log('- MB/s are 10^6 bytes per second of the snapshot file\'s length; [min–max] over rounds; ratio = median ÷ baseline median, [per-round ratios]\n');
  console.log('| fig | figure | median [min–max] | baseline | ratio | goal | |');
  console.log('|---|---|---|---|---|---|---|');
  for (const cells of rows) console.log(`| ${cells.join(' | ')} |`);
  if (disk !== undefined) {
    console.log(`\n- figures 1, 2: snapshot file ${disk.snapshotBytes} bytes, ${disk.keyCount} keys; state machine filled in ${disk.fillSeconds.toFixed(1)} s (apply of put entries).`);
  }
  if (cluster !== undefined) {
    const c = cluster.compaction;
    console.log(
      `- figures 3-5: ${cluster.description}; preload ${cluster.preloadTxns} Txns of up to ${cluster.putsPerTxn} puts in ${cluster.preloadSeconds.toFixed(0)} s; ` +
        `leader snapshot at index ${c.index}, ${c.bytes} bytes, log compacted through ${c.compactedThrough}${c.quietWaitMs > 0 ? ` (after ${(c.quietWaitMs / 1000).toFixed(0)} s without writes)` : ''}; ` +
        `dd oflag=direct beside the members ${spread(cluster.ddDirectWriteMBps, 0)} MB/s; put load ${CONCURRENCY} outstanding, 100-byte values, to the leader; ` +
        `members started with \`${CLUSTER_SERVE_FLAGS.join(' ')}\`; the member joined under the load is a learner, the quiet one a voter; ` +
        `before each quiet join the members were left to finish their work for ${spread(cluster.settleWaitsMs, 1, 1000)} s (each under 10 % of a core over 2 s).`,
    );
    const sendFailures = [...cluster.quietJoins, ...cluster.loadedJoins].reduce((sum, join) => sum + join.sendFailures, 0);
    const noSend = [...cluster.quietJoins, ...cluster.loadedJoins].filter((join) => join.sends.length === 0).length;
    if (sendFailures > 0) console.log(`- ${sendFailures} snapshot send(s) failed and were retried (the leader's log says why).`);
    if (noSend > 0) console.log(`- ${noSend} join(s) logged no "snapshot sent" on the leader: they caught up from the log.`);
  }
  if (restart !== undefined) {
    console.log(
      `- figure 6: ${restart.entries} puts of 100 B (${restart.preloadSeconds.toFixed(0)} s); uncompacted WAL ${(restart.uncompacted.walBytes / 1e6).toFixed(1)} MB with ${restart.uncompacted.snapshotFiles} snapshot(s); ` +
        `compacted WAL ${(restart.compacted.walBytes / 1e6).toFixed(1)} MB (whole segments are dropped), ${restart.compacted.snapshotFiles} snapshot file(s) of ${(restart.compacted.snapshotBytes / 1e6).toFixed(1)} MB in all, ` +
        `the newest at index ${restart.snapshotIndex}, log compacted through ${restart.compactedThrough}.`,
    );
  }
  for (const failure of failures) console.log(`- FAILED: ${failure}`);
  json.push({ bench: 'snapshot', name: 'run', command, commit, dirty, machine, startedAt: startedAt.toISOString(), endedAt: endedAt.toISOString(), failures });
  printFooter('snapshot', json, {}, loadBefore, busyBeforePercent);
}

// bench/migrate-copy.ts — `npm run bench:migrate-copy`: issue 16's benchmark of `stratakv
// migrate copy`, from either source (--source):
//
// etcd (the default): a 3-member etcd 3.4 (Debian's) holding --keys keys of --value-bytes is
// copied into a fresh 3-member stratakv mirror by `stratakv migrate copy create` (the CLI, its
// own process), then the copier follows etcd while --clients clients write to it; last, `copy
// verify` compares everything. Each run uses fresh clusters. Figures, per run and as median
// [min–max]:
//   - the initial copy's MB/s (keys and values, from the copier's start to its "scan done"),
//     against a plain paginated read of the same keys (Range, 1,000 keys a page, at one
//     revision — what the copier's scan reads) measured just before and just after it in the
//     same run: the ratio says what writing the mirror costs over reading the source;
//   - the tail: the source's acknowledged write rate under the load, and the lag of the mirror
//     behind it, measured by probes: every 100 ms a put to etcd (a probe key) whose revision is
//     then waited for on the mirror (a linearizable count-only Range every 20 ms); the lag is
//     the time from the probe's acknowledgement to the first mirror answer at or past its
//     revision (so it includes up to one poll interval and the poll's own latency);
//   - the source's write rate under the same load with no copier, 10 s before the copy (the
//     copier shares the machine with both clusters, so the ratio includes its CPU);
//   - the catch-up after the load stops, and whether `copy verify` found the copy equal.
//
// stratakv: a 3-member stratakv cluster copied into another (the copier scans a pinned view,
// then replays the source's Raft log), the same figures (the plain read reads the current state:
// stratakv keeps no revision history), then, with the load still running, `copy verify` (a
// Merkle diff), `copy switch` and, after NEW_PRIMARY_SECONDS on the new primary, `copy reverse`:
// for each, the verb's writePauseMs and the pause the writers saw (the longest gap between
// acknowledged writes; the writers hold both clusters' endpoints and fail over on a mirror's
// refusal). bench/migrate/copy-stratakv-run.ts has the steps.
//
// Options: --source etcd|stratakv (etcd), --keys N (100000), --value-bytes B (256), --clients N
// (16), --put-bytes B (100), --tail-seconds S (30), --runs N (1), --results-file PATH,
// --no-results-file.

import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { EtcdClient } from '../src/client/index.ts';
import { etcdLauncher, REPOSITORY, stratakvLauncher, type RunningCluster } from './cluster/launchers.ts';
import { cleanupSync, installCleanupHandlers } from './cluster/processes.ts';
import { printRunHeader, readRunHeader, runHeaderMarkdown } from './cluster/run-header.ts';
import { loadAverage, median, percentileOfSorted } from './cluster/stats.ts';
import { stratakvMarkdown, stratakvRun, type StratakvRunConfig, type StratakvRunFigures } from './migrate/copy-stratakv-run.ts';
import { copierLines, copyCli, plainRead, preload, startCopier, startProbes, type Copier, type CopyRunFigures } from './migrate/copy-tools.ts';
import { startLoad } from './migrate/load.ts';
import { OUTCOME_OK } from './migrate/load-types.ts';

const { values: options } = parseArgs({
  options: {
    source: { type: 'string', default: 'etcd' },
    keys: { type: 'string', default: '100000' },
    'value-bytes': { type: 'string', default: '256' },
    clients: { type: 'string', default: '16' },
    'put-bytes': { type: 'string', default: '100' },
    'tail-seconds': { type: 'string', default: '30' },
    runs: { type: 'string', default: '1' },
    'results-file': { type: 'string' },
    'no-results-file': { type: 'boolean', default: false },
  },
});

const SOURCE = options.source;
if (SOURCE !== 'etcd' && SOURCE !== 'stratakv') throw new Error(`--source must be etcd or stratakv, not ${JSON.stringify(SOURCE)}`);
const KEYS = positive('keys');
const VALUE_BYTES = positive('value-bytes');
const CLIENTS = positive('clients');
const PUT_BYTES = positive('put-bytes');
const TAIL_SECONDS = positive('tail-seconds');
const RUNS = positive('runs');
const LOAD_ALONE_SECONDS = 10;
const PROBE_INTERVAL_MS = 100;
const POLL_INTERVAL_MS = 20;
const SCAN_TIMEOUT_MS = 30 * 60_000;
const CATCH_UP_TIMEOUT_MS = 10 * 60_000;
const MB = 1_000_000;

const STRATAKV_CONFIG: StratakvRunConfig = {
  keys: KEYS,
  valueBytes: VALUE_BYTES,
  clients: CLIENTS,
  putBytes: PUT_BYTES,
  tailSeconds: TAIL_SECONDS,
  loadAloneSeconds: LOAD_ALONE_SECONDS,
  probeIntervalMs: PROBE_INTERVAL_MS,
  pollIntervalMs: POLL_INTERVAL_MS,
  scanTimeoutMs: SCAN_TIMEOUT_MS,
  catchUpTimeoutMs: CATCH_UP_TIMEOUT_MS,
};

function positive(name: Exclude<keyof typeof options, 'source' | 'results-file' | 'no-results-file'>): number {
  const value = Number(options[name]);
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer, not ${String(options[name])}`);
  return value;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** RunFigures are one etcd run's results. */
interface RunFigures extends CopyRunFigures {
  readonly catchUpAfterLoadMs: number;
  readonly verifyEqual: boolean;
  readonly verifySeconds: number;
  readonly keysCompared: number;
  readonly failedPuts: number;
  readonly notes: readonly string[];
}

async function oneRun(run: number): Promise<RunFigures> {
  const notes: string[] = [];
  const source = await etcdLauncher().start();
  let target: RunningCluster | undefined;
  let copier: Copier | undefined;
  const sourceEndpoints = source.members.map((member) => member.endpoint);
  const sourceClient = new EtcdClient({ endpoints: sourceEndpoints, timeoutMs: 15_000 });
  try {
    target = await stratakvLauncher().start();
    await target.leader();
    await source.leader();
    const targetEndpoints = target.members.map((member) => member.endpoint);
    const targetClient = new EtcdClient({ endpoints: targetEndpoints, timeoutMs: 15_000, mirrorReader: true });
    try {
      const preloadStarted = performance.now();
      await preload(sourceClient, KEYS, VALUE_BYTES);
      console.log(`run ${run}: preloaded ${KEYS} keys × ${VALUE_BYTES} B in ${((performance.now() - preloadStarted) / 1000).toFixed(1)} s`);

      // The source's write rate under the same load with no copier: the tail's reference.
      const alone = await startLoad({ endpoints: sourceEndpoints, clients: CLIENTS, valueBytes: PUT_BYTES, autoSyncIntervalMs: 0, timeoutMs: 15_000, keyPrefix: 'alone', durationMsMax: (LOAD_ALONE_SECONDS + 60) * 1000, opsMax: 50_000_000 });
      await sleep(LOAD_ALONE_SECONDS * 1000);
      const aloneReport = await alone.stop();
      const aloneAcknowledged = aloneReport.outcomes.filter((outcome) => outcome === OUTCOME_OK).length;
      const aloneWritesPerSecond = aloneAcknowledged / ((Math.max(...aloneReport.endsMs) - Math.min(...aloneReport.startsMs)) / 1000);
      console.log(`run ${run}: the load alone (no copier): ${aloneWritesPerSecond.toFixed(0)} puts/s acknowledged`);

      const before = await plainRead(sourceClient, 'data/', true);
      console.log(`run ${run}: plain paginated read: ${(before.bytes / MB / before.seconds).toFixed(2)} MB/s (${(before.bytes / MB).toFixed(1)} MB in ${before.seconds.toFixed(2)} s)`);

      // The copy, as an operator runs it.
      const to = targetEndpoints.join(',');
      copier = startCopier(`etcd://${sourceEndpoints.join(',')}`, to);
      const scanDoneAt = await copier.waitFor(/scan done at revision/, SCAN_TIMEOUT_MS);
      const copySeconds = (scanDoneAt - copier.startedAt) / 1000;
      const copyMBps = before.bytes / MB / copySeconds;
      console.log(`run ${run}: copy scan: ${copyMBps.toFixed(2)} MB/s, ${(KEYS / copySeconds).toFixed(0)} keys/s (${copySeconds.toFixed(1)} s, process start included)`);

      const after = await plainRead(sourceClient, 'data/', true);
      console.log(`run ${run}: plain paginated read after: ${(after.bytes / MB / after.seconds).toFixed(2)} MB/s`);

      // The tail under the load, with probes.
      const load = await startLoad({ endpoints: sourceEndpoints, clients: CLIENTS, valueBytes: PUT_BYTES, autoSyncIntervalMs: 0, timeoutMs: 15_000, keyPrefix: 'load', durationMsMax: (TAIL_SECONDS + 60) * 1000, opsMax: 50_000_000 });
      const probes = startProbes({
        source: sourceClient,
        mirror: targetClient,
        intervalMs: PROBE_INTERVAL_MS,
        pollIntervalMs: POLL_INTERVAL_MS,
        probesMax: (TAIL_SECONDS * 1000) / PROBE_INTERVAL_MS + 10,
        drainTimeoutMs: CATCH_UP_TIMEOUT_MS,
      });
      await sleep(TAIL_SECONDS * 1000);
      const loadStopMs = performance.now();
      const report = await load.stop();
      const probed = await probes.stop();
      const catchUpAfterLoadMs = performance.now() - loadStopMs;
      let acknowledged = 0;
      let failedPuts = 0;
      for (const outcome of report.outcomes) {
        if (outcome === OUTCOME_OK) acknowledged += 1;
        else failedPuts += 1;
      }
      const loadSeconds = (Math.max(...report.endsMs) - Math.min(...report.startsMs)) / 1000;
      const sorted = Float64Array.from(probed.lagsMs).sort();
      const lagP50Ms = percentileOfSorted(sorted, 0.5);
      const lagP99Ms = percentileOfSorted(sorted, 0.99);
      const lagMaxMs = sorted[sorted.length - 1] ?? 0;
      if (probed.pollErrors > 0) notes.push(`${probed.pollErrors} mirror polls of the probes failed`);
      console.log(`run ${run}: tail: source ${(acknowledged / loadSeconds).toFixed(0)} puts/s acknowledged; lag p50 ${lagP50Ms.toFixed(0)} ms, p99 ${lagP99Ms.toFixed(0)} ms, max ${lagMaxMs.toFixed(0)} ms over ${probed.lagsMs.length} probes; caught up ${catchUpAfterLoadMs.toFixed(0)} ms after the load stopped`);

      // Stop the copier gracefully and verify.
      await copier.stop();
      const verified = await copyCli(['verify', '--to', to], CATCH_UP_TIMEOUT_MS);
      const verifyEqual = verified.json['equal'] === true;
      if (!verifyEqual) notes.push(`verify: ${JSON.stringify(verified.json).slice(0, 1_000)}`);
      console.log(`run ${run}: verify: ${verifyEqual ? 'equal' : 'NOT EQUAL'}, ${String(verified.json['keysCompared'])} keys in ${verified.seconds.toFixed(1)} s`);
      const retries = copierLines(copier, /retrying/, 3);
      if (retries.length > 0) notes.push(`the copier retried: ${retries.join(' | ')}`);
      return {
        readBeforeMBps: before.bytes / MB / before.seconds,
        readAfterMBps: after.bytes / MB / after.seconds,
        copyMBps,
        copyKeysPerSecond: KEYS / copySeconds,
        copySeconds,
        sourceWritesPerSecond: acknowledged / loadSeconds,
        aloneWritesPerSecond,
        lagP50Ms,
        lagP99Ms,
        lagMaxMs,
        probes: probed.lagsMs.length,
        probesUnseen: probed.unseen,
        catchUpAfterLoadMs,
        verifyEqual,
        verifySeconds: verified.seconds,
        keysCompared: Number(verified.json['keysCompared'] ?? 0),
        failedPuts,
        notes,
      };
    } finally {
      targetClient.close();
    }
  } finally {
    if (copier !== undefined) await copier.stop();
    sourceClient.close();
    await target?.stop();
    await source.stop();
  }
}

/** etcdMarkdown is the etcd source's results table (median [min–max]) and a line per run. */
function etcdMarkdown(runs: readonly RunFigures[]): string[] {
  const range = (pick: (run: RunFigures) => number, digits = 1): string => {
    const values = runs.map(pick);
    return `${median(values).toFixed(digits)} [${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}]`;
  };
  const markdown = [
    '| figure | value |',
    '|---|---|',
    `| initial copy, MB/s (keys + values; copier process start to "scan done") | ${range((run) => run.copyMBps, 2)} |`,
    `| plain paginated read of the source, MB/s (before / after the copy) | ${range((run) => run.readBeforeMBps, 2)} / ${range((run) => run.readAfterMBps, 2)} |`,
    `| copy ÷ plain read (the mean of before and after, per run) | ${range((run) => run.copyMBps / ((run.readBeforeMBps + run.readAfterMBps) / 2), 2)} |`,
    `| initial copy, keys/s | ${range((run) => run.copyKeysPerSecond, 0)} |`,
    `| source writes under the load while the copier follows, acknowledged puts/s (${CLIENTS} clients) | ${range((run) => run.sourceWritesPerSecond, 0)} |`,
    `| the same load with no copier (${LOAD_ALONE_SECONDS} s before the copy), puts/s; ratio with ÷ without | ${range((run) => run.aloneWritesPerSecond, 0)}; ${range((run) => run.sourceWritesPerSecond / run.aloneWritesPerSecond, 2)} |`,
    `| tail lag p50 / p99 / max, ms (probes every ${PROBE_INTERVAL_MS} ms, polled every ${POLL_INTERVAL_MS} ms) | ${range((run) => run.lagP50Ms, 0)} / ${range((run) => run.lagP99Ms, 0)} / ${range((run) => run.lagMaxMs, 0)} |`,
    `| caught up after the load stopped, ms | ${range((run) => run.catchUpAfterLoadMs, 0)} |`,
    `| copy verify | ${runs.map((run) => (run.verifyEqual ? `equal (${run.keysCompared} keys, ${run.verifySeconds.toFixed(1)} s)` : 'NOT EQUAL')).join('; ')} |`,
    `| failed or ambiguous puts of the load | ${runs.map((run) => run.failedPuts).join(', ')} |`,
    '',
  ];
  for (const [index, run] of runs.entries()) {
    markdown.push(`- run ${index + 1}: copy ${run.copySeconds.toFixed(1)} s; ${run.probes} probes seen${run.probesUnseen > 0 ? `, ${run.probesUnseen} never seen` : ''}`);
    for (const note of run.notes) markdown.push(`  - ${note}`);
  }
  return markdown;
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const header = await readRunHeader('migrate-copy');
  const command = `npm run bench:migrate-copy -- --source ${SOURCE} --keys ${KEYS} --value-bytes ${VALUE_BYTES} --clients ${CLIENTS} --put-bytes ${PUT_BYTES} --tail-seconds ${TAIL_SECONDS} --runs ${RUNS}`;
  printRunHeader(header, command);
  const loadBefore = loadAverage();
  const startedAt = new Date();
  const table: string[] = [];
  let described: string;
  if (SOURCE === 'etcd') {
    const runs: RunFigures[] = [];
    for (let run = 1; run <= RUNS; run += 1) runs.push(await oneRun(run));
    table.push(...etcdMarkdown(runs));
    described = '**Source:** etcd 3.4 (Debian), 3 members; **target:** stratakv, 3 members';
  } else {
    const runs: StratakvRunFigures[] = [];
    for (let run = 1; run <= RUNS; run += 1) runs.push(await stratakvRun(run, STRATAKV_CONFIG));
    table.push(...stratakvMarkdown(runs, STRATAKV_CONFIG));
    described =
      '**Source:** stratakv, 3 members; **target:** stratakv, 3 members; the load\'s clients hold both clusters\' endpoints (the source\'s first) with `failOverOnMirror`, a 15 s deadline a put';
  }
  const endedAt = new Date();
  const markdown: string[] = [];
  markdown.push(`## Run ${startedAt.toISOString().slice(0, 16).replace('T', ' ')}–${endedAt.toISOString().slice(11, 16)} UTC — source: ${SOURCE}`);
  markdown.push('');
  markdown.push(`- **Command:** \`${command}\``);
  markdown.push(`- ${described}; one machine; load average before: ${loadBefore}`);
  markdown.push(...runHeaderMarkdown(header));
  markdown.push(`- median [min–max] over ${RUNS} run(s), each on fresh clusters`);
  markdown.push('');
  markdown.push(...table);
  console.log('');
  console.log(markdown.join('\n'));
  if (!options['no-results-file']) {
    const path = options['results-file'] ?? join(REPOSITORY, 'bench', 'results', `migrate-copy-${startedAt.toISOString().slice(0, 10)}.md`);
    if (!existsSync(path)) {
      appendFileSync(
        path,
        `# bench:migrate-copy — ${startedAt.toISOString().slice(0, 10)}: etcd or stratakv copied into a stratakv mirror, then followed under load; for stratakv, switched and reversed under it (issue 16)\n\nEach run below was appended by \`npm run bench:migrate-copy\` as it ended; notes after a run were added by hand and say so.\n\n`,
      );
    }
    appendFileSync(path, `${markdown.join('\n')}\n\n`);
    console.log(`\nappended to ${path}`);
  }
}

main().then(
  () => {
    cleanupSync();
    process.exit(0);
  },
  (error: unknown) => {
    console.error(error);
    cleanupSync();
    process.exit(1);
  },
);

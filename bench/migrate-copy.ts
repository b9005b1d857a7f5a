// bench/migrate-copy.ts — `npm run bench:migrate-copy`: issue 16's benchmark. A 3-member etcd
// 3.4 (Debian's) holding --keys keys of --value-bytes is copied into a fresh 3-member stratakv
// mirror by `stratakv migrate copy create` (the CLI, its own process), then the copier follows
// etcd while --clients clients write to it; last, `copy verify` compares everything. Each run
// uses fresh clusters. Figures, per run and as median [min–max]:
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
// Options: --keys N (100000), --value-bytes B (256), --clients N (16), --put-bytes B (100),
// --tail-seconds S (30), --runs N (1), --results-file PATH, --no-results-file.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { EtcdClient } from '../src/client/index.ts';
import { etcdLauncher, REPOSITORY, STRATAKV_ENTRY, stratakvLauncher, type RunningCluster } from './cluster/launchers.ts';
import { cleanupSync, installCleanupHandlers, stopChild, trackChild } from './cluster/processes.ts';
import { printRunHeader, readRunHeader, runHeaderMarkdown } from './cluster/run-header.ts';
import { loadAverage, median, percentileOfSorted } from './cluster/stats.ts';
import { startLoad } from './migrate/load.ts';
import { OUTCOME_OK } from './migrate/load-types.ts';

const { values: options } = parseArgs({
  options: {
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

const KEYS = positive('keys');
const VALUE_BYTES = positive('value-bytes');
const CLIENTS = positive('clients');
const PUT_BYTES = positive('put-bytes');
const TAIL_SECONDS = positive('tail-seconds');
const RUNS = positive('runs');
const PAGE_KEYS = 1_000;
const LOAD_ALONE_SECONDS = 10;
const PROBE_INTERVAL_MS = 100;
const POLL_INTERVAL_MS = 20;
const SCAN_TIMEOUT_MS = 30 * 60_000;
const CATCH_UP_TIMEOUT_MS = 10 * 60_000;
const MB = 1_000_000;

function positive(name: keyof typeof options): number {
  const value = Number(options[name]);
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer, not ${String(options[name])}`);
  return value;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** RunFigures are one run's results. */
interface RunFigures {
  readonly readBeforeMBps: number;
  readonly readAfterMBps: number;
  readonly copyMBps: number;
  readonly copyKeysPerSecond: number;
  readonly copySeconds: number;
  readonly sourceWritesPerSecond: number;
  readonly aloneWritesPerSecond: number;
  readonly lagP50Ms: number;
  readonly lagP99Ms: number;
  readonly lagMaxMs: number;
  readonly probes: number;
  readonly probesUnseen: number;
  readonly catchUpAfterLoadMs: number;
  readonly verifyEqual: boolean;
  readonly verifySeconds: number;
  readonly keysCompared: number;
  readonly failedPuts: number;
  readonly notes: readonly string[];
}

/** plainRead reads every key of `prefix` at one revision in pages: the baseline for the copy's scan. */
async function plainRead(client: EtcdClient, prefix: string): Promise<{ bytes: number; seconds: number }> {
  const head = await client.get(prefix, { prefix: true, countOnly: true });
  const end = Buffer.from(prefix);
  end[end.length - 1] = (end[end.length - 1] ?? 0) + 1;
  let from: Uint8Array = Buffer.from(prefix);
  let bytes = 0;
  const started = performance.now();
  for (let page = 0; page < 1_000_000; page += 1) {
    const answer = await client.get(from, { rangeEnd: end, limit: PAGE_KEYS, revision: head.header.revision });
    for (const kv of answer.kvs) bytes += kv.key.byteLength + kv.value.byteLength;
    const last = answer.kvs[answer.kvs.length - 1];
    if (!answer.more || last === undefined) break;
    from = Buffer.concat([last.key, Buffer.of(0)]);
  }
  return { bytes, seconds: (performance.now() - started) / 1000 };
}

/** copyCli runs a `stratakv migrate copy` verb to its end and answers its JSON. */
function copyCli(args: readonly string[]): Record<string, unknown> {
  const result = spawnSync(process.execPath, [STRATAKV_ENTRY, 'migrate', 'copy', ...args, '-w', 'json'], { encoding: 'utf8', timeout: CATCH_UP_TIMEOUT_MS, maxBuffer: 256 * 1024 * 1024 });
  const line = result.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`stratakv migrate copy ${args.join(' ')}: no JSON (status ${String(result.status)}): ${result.stdout.slice(0, 500)} ${result.stderr.slice(0, 2_000)}`);
  }
}

async function oneRun(run: number): Promise<RunFigures> {
  const notes: string[] = [];
  const source = await etcdLauncher().start();
  let target: RunningCluster | undefined;
  let copier: ChildProcess | undefined;
  const sourceEndpoints = source.members.map((member) => member.endpoint);
  const sourceClient = new EtcdClient({ endpoints: sourceEndpoints, timeoutMs: 15_000 });
  try {
    target = await stratakvLauncher().start();
    await target.leader();
    await source.leader();
    const targetEndpoints = target.members.map((member) => member.endpoint);
    const targetClient = new EtcdClient({ endpoints: targetEndpoints, timeoutMs: 15_000 });
    try {
      // Preload: random values, 100 puts a txn, 4 txns in flight.
      const preloadStarted = performance.now();
      const value = Buffer.alloc(VALUE_BYTES);
      let next = 0;
      const loader = async (): Promise<void> => {
        while (next < KEYS) {
          const from = next;
          next = Math.min(KEYS, next + 100);
          const success = [];
          for (let at = from; at < next; at += 1) {
            for (let offset = 0; offset < VALUE_BYTES; offset += 4) value.writeUInt32LE((Math.random() * 0x1_0000_0000) >>> 0, Math.min(offset, VALUE_BYTES - 4));
            success.push({ type: 'put' as const, key: Buffer.from(`data/${String(at).padStart(8, '0')}`), value: Buffer.from(value) });
          }
          await sourceClient.txn({ type: 'txn', compare: [], success, failure: [] });
        }
      };
      await Promise.all([loader(), loader(), loader(), loader()]);
      console.log(`run ${run}: preloaded ${KEYS} keys × ${VALUE_BYTES} B in ${((performance.now() - preloadStarted) / 1000).toFixed(1)} s`);

      // The source's write rate under the same load with no copier: the tail's reference.
      const alone = await startLoad({ endpoints: sourceEndpoints, clients: CLIENTS, valueBytes: PUT_BYTES, autoSyncIntervalMs: 0, timeoutMs: 15_000, keyPrefix: 'alone', durationMsMax: (LOAD_ALONE_SECONDS + 60) * 1000, opsMax: 50_000_000 });
      await sleep(LOAD_ALONE_SECONDS * 1000);
      const aloneReport = await alone.stop();
      const aloneAcknowledged = aloneReport.outcomes.filter((outcome) => outcome === OUTCOME_OK).length;
      const aloneWritesPerSecond = aloneAcknowledged / ((Math.max(...aloneReport.endsMs) - Math.min(...aloneReport.startsMs)) / 1000);
      console.log(`run ${run}: the load alone (no copier): ${aloneWritesPerSecond.toFixed(0)} puts/s acknowledged`);

      const before = await plainRead(sourceClient, 'data/');
      console.log(`run ${run}: plain paginated read: ${(before.bytes / MB / before.seconds).toFixed(2)} MB/s (${(before.bytes / MB).toFixed(1)} MB in ${before.seconds.toFixed(2)} s)`);

      // The copy, as an operator runs it.
      const from = `etcd://${sourceEndpoints.join(',')}`;
      const to = targetEndpoints.join(',');
      const copyStarted = performance.now();
      copier = spawn(process.execPath, [STRATAKV_ENTRY, 'migrate', 'copy', 'create', '--from', from, '--to', to], { stdio: ['ignore', 'ignore', 'pipe'] });
      trackChild(copier);
      let stderr = '';
      copier.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      let scanDoneMs = 0;
      for (let poll = 0; poll * 50 < SCAN_TIMEOUT_MS && scanDoneMs === 0; poll += 1) {
        if (/scan done at revision/.test(stderr)) scanDoneMs = performance.now();
        else if (copier.exitCode !== null) throw new Error(`the copier exited during the scan: ${stderr.slice(-2_000)}`);
        else await sleep(50);
      }
      if (scanDoneMs === 0) throw new Error(`the scan did not end within ${SCAN_TIMEOUT_MS} ms`);
      const copySeconds = (scanDoneMs - copyStarted) / 1000;
      const copyMBps = before.bytes / MB / copySeconds;
      console.log(`run ${run}: copy scan: ${copyMBps.toFixed(2)} MB/s, ${(KEYS / copySeconds).toFixed(0)} keys/s (${copySeconds.toFixed(1)} s, process start included)`);

      const after = await plainRead(sourceClient, 'data/');
      console.log(`run ${run}: plain paginated read after: ${(after.bytes / MB / after.seconds).toFixed(2)} MB/s`);

      // The tail under the load, with probes.
      const load = await startLoad({ endpoints: sourceEndpoints, clients: CLIENTS, valueBytes: PUT_BYTES, autoSyncIntervalMs: 0, timeoutMs: 15_000, keyPrefix: 'load', durationMsMax: (TAIL_SECONDS + 60) * 1000, opsMax: 50_000_000 });
      const lags: number[] = [];
      let unseen = 0;
      let probing = true;
      const waiting: { revision: number; ackMs: number }[] = [];
      const prober = (async () => {
        for (let probe = 0; probing && probe < (TAIL_SECONDS * 1000) / PROBE_INTERVAL_MS + 10; probe += 1) {
          const started = performance.now();
          const put = await sourceClient.put('probe/heartbeat', String(probe));
          waiting.push({ revision: put.header.revision, ackMs: performance.now() });
          await sleep(Math.max(0, PROBE_INTERVAL_MS - (performance.now() - started)));
        }
      })();
      const poller = (async () => {
        while (probing || waiting.length > 0) {
          const answer = await targetClient.get('probe/heartbeat', { countOnly: true });
          const seenMs = performance.now();
          while (waiting.length > 0 && (waiting[0]?.revision ?? Infinity) <= answer.header.revision) {
            const probe = waiting.shift();
            if (probe !== undefined) lags.push(seenMs - probe.ackMs);
          }
          if (!probing && waiting.length > 0 && seenMs - (waiting[0]?.ackMs ?? seenMs) > CATCH_UP_TIMEOUT_MS) {
            unseen = waiting.length;
            break;
          }
          await sleep(POLL_INTERVAL_MS);
        }
      })();
      await sleep(TAIL_SECONDS * 1000);
      const loadStopMs = performance.now();
      const report = await load.stop();
      probing = false;
      await prober;
      await poller;
      const catchUpAfterLoadMs = performance.now() - loadStopMs;
      let acknowledged = 0;
      let failedPuts = 0;
      for (const outcome of report.outcomes) {
        if (outcome === OUTCOME_OK) acknowledged += 1;
        else failedPuts += 1;
      }
      const loadSeconds = (Math.max(...report.endsMs) - Math.min(...report.startsMs)) / 1000;
      const sorted = Float64Array.from(lags).sort();
      const lagP50Ms = percentileOfSorted(sorted, 0.5);
      const lagP99Ms = percentileOfSorted(sorted, 0.99);
      const lagMaxMs = sorted[sorted.length - 1] ?? 0;
      console.log(`run ${run}: tail: source ${(acknowledged / loadSeconds).toFixed(0)} puts/s acknowledged; lag p50 ${lagP50Ms.toFixed(0)} ms, p99 ${lagP99Ms.toFixed(0)} ms, max ${lagMaxMs.toFixed(0)} ms over ${lags.length} probes; caught up ${catchUpAfterLoadMs.toFixed(0)} ms after the load stopped`);

      // Stop the copier gracefully and verify.
      copier.kill('SIGTERM');
      await stopChild(copier);
      copier = undefined;
      const verifyStarted = performance.now();
      const verified = copyCli(['verify', '--to', to]);
      const verifySeconds = (performance.now() - verifyStarted) / 1000;
      const verifyEqual = verified['equal'] === true;
      if (!verifyEqual) notes.push(`verify: ${JSON.stringify(verified).slice(0, 1_000)}`);
      console.log(`run ${run}: verify: ${verifyEqual ? 'equal' : 'NOT EQUAL'}, ${String(verified['keysCompared'])} keys in ${verifySeconds.toFixed(1)} s`);
      if (/retrying/.test(stderr)) notes.push(`the copier retried: ${stderr.split('\n').filter((line) => /retrying/.test(line)).slice(0, 3).join(' | ')}`);
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
        probes: lags.length,
        probesUnseen: unseen,
        catchUpAfterLoadMs,
        verifyEqual,
        verifySeconds,
        keysCompared: Number(verified['keysCompared'] ?? 0),
        failedPuts,
        notes,
      };
    } finally {
      targetClient.close();
    }
  } finally {
    if (copier !== undefined) await stopChild(copier);
    sourceClient.close();
    await target?.stop();
    await source.stop();
  }
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const header = await readRunHeader('migrate-copy');
  const command = `npm run bench:migrate-copy -- --keys ${KEYS} --value-bytes ${VALUE_BYTES} --clients ${CLIENTS} --put-bytes ${PUT_BYTES} --tail-seconds ${TAIL_SECONDS} --runs ${RUNS}`;
  printRunHeader(header, command);
  const loadBefore = loadAverage();
  const startedAt = new Date();
  const runs: RunFigures[] = [];
  for (let run = 1; run <= RUNS; run += 1) runs.push(await oneRun(run));
  const endedAt = new Date();
  const range = (pick: (run: RunFigures) => number, digits = 1): string => {
    const values = runs.map(pick);
    return `${median(values).toFixed(digits)} [${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}]`;
  };
  const markdown: string[] = [];
  markdown.push(`## Run ${startedAt.toISOString().slice(0, 16).replace('T', ' ')}–${endedAt.toISOString().slice(11, 16)} UTC`);
  markdown.push('');
  markdown.push(`- **Command:** \`${command}\``);
  markdown.push(`- **Source:** etcd 3.4 (Debian), 3 members; **target:** stratakv, 3 members; one machine; load average before: ${loadBefore}`);
  markdown.push(...runHeaderMarkdown(header));
  markdown.push(`- median [min–max] over ${RUNS} run(s), each on fresh clusters`);
  markdown.push('');
  markdown.push('| figure | value |');
  markdown.push('|---|---|');
  markdown.push(`| initial copy, MB/s (keys + values; copier process start to "scan done") | ${range((run) => run.copyMBps, 2)} |`);
  markdown.push(`| plain paginated read of the source, MB/s (before / after the copy) | ${range((run) => run.readBeforeMBps, 2)} / ${range((run) => run.readAfterMBps, 2)} |`);
  markdown.push(`| copy ÷ plain read (the mean of before and after, per run) | ${range((run) => run.copyMBps / ((run.readBeforeMBps + run.readAfterMBps) / 2), 2)} |`);
  markdown.push(`| initial copy, keys/s | ${range((run) => run.copyKeysPerSecond, 0)} |`);
  markdown.push(`| source writes under the load while the copier follows, acknowledged puts/s (${CLIENTS} clients) | ${range((run) => run.sourceWritesPerSecond, 0)} |`);
  markdown.push(`| the same load with no copier (${LOAD_ALONE_SECONDS} s before the copy), puts/s; ratio with ÷ without | ${range((run) => run.aloneWritesPerSecond, 0)}; ${range((run) => run.sourceWritesPerSecond / run.aloneWritesPerSecond, 2)} |`);
  markdown.push(`| tail lag p50 / p99 / max, ms (probes every ${PROBE_INTERVAL_MS} ms, polled every ${POLL_INTERVAL_MS} ms) | ${range((run) => run.lagP50Ms, 0)} / ${range((run) => run.lagP99Ms, 0)} / ${range((run) => run.lagMaxMs, 0)} |`);
  markdown.push(`| caught up after the load stopped, ms | ${range((run) => run.catchUpAfterLoadMs, 0)} |`);
  markdown.push(`| copy verify | ${runs.map((run) => (run.verifyEqual ? `equal (${run.keysCompared} keys, ${run.verifySeconds.toFixed(1)} s)` : 'NOT EQUAL')).join('; ')} |`);
  markdown.push(`| failed or ambiguous puts of the load | ${runs.map((run) => run.failedPuts).join(', ')} |`);
  markdown.push('');
  for (const [index, run] of runs.entries()) {
    markdown.push(`- run ${index + 1}: copy ${run.copySeconds.toFixed(1)} s; ${run.probes} probes seen${run.probesUnseen > 0 ? `, ${run.probesUnseen} never seen` : ''}`);
    for (const note of run.notes) markdown.push(`  - ${note}`);
  }
  console.log('');
  console.log(markdown.join('\n'));
  if (!options['no-results-file']) {
    const path = options['results-file'] ?? join(REPOSITORY, 'bench', 'results', `migrate-copy-${startedAt.toISOString().slice(0, 10)}.md`);
    if (!existsSync(path)) {
      appendFileSync(path, `# bench:migrate-copy — ${startedAt.toISOString().slice(0, 10)}: etcd copied into a stratakv mirror, then followed under load (issue 16)\n\nEach run below was appended by \`npm run bench:migrate-copy\` as it ended; notes after a run were added by hand and say so.\n\n`);
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

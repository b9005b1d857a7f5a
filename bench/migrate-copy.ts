// bench/migrate-copy.ts — `npm run bench:migrate-copy`: issue 16's benchmark of `stratakv
// migrate copy`, from either source (--source):
//
// etcd (the default): a 3-member etcd 3.4 (Debian's) holding --keys keys of --value-bytes is
// copied into a fresh 3-member stratakv mirror by `stratakv migrate copy create` (the CLI, its
// own process), then the copier follows etcd while --clients clients write to it; then, with the
// load still running, `copy switch --from etcd://…` (the bench moves the writers to the mirror
// when the verb asks for it), the reverse copy into etcd while they write the new primary,
// `copy reverse` (the writers moved back), the forward copy resumed, and last `copy verify` and
// the two clusters' revisions compared. bench/migrate/copy-etcd-run.ts has the steps. Each run
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
//   - the switch and the reverse: each verb's writePauseMs and steps, and the pause the writers
//     saw (the longest gap between acknowledged writes); the reverse copy's lag, by the same
//     probes the other way (a put on the new primary, etcd polled), and the new primary's
//     write rate meanwhile;
//   - the forward copy's rescans when it resumes after the reverse (0: nothing scanned again),
//     the catch-up after the load stops, whether `copy verify` found the copy equal, and
//     whether etcd's and the mirror's revisions are equal.
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

import { REPOSITORY } from './cluster/launchers.ts';
import { cleanupSync, installCleanupHandlers } from './cluster/processes.ts';
import { printRunHeader, readRunHeader, runHeaderMarkdown } from './cluster/run-header.ts';
import { loadAverage } from './cluster/stats.ts';
import { etcdMarkdown, etcdRun, type EtcdRunFigures } from './migrate/copy-etcd-run.ts';
import { stratakvMarkdown, stratakvRun, type StratakvRunFigures } from './migrate/copy-stratakv-run.ts';
import type { CopyRunConfig } from './migrate/copy-tools.ts';

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

const CONFIG: CopyRunConfig = {
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
    const runs: EtcdRunFigures[] = [];
    for (let run = 1; run <= RUNS; run += 1) runs.push(await etcdRun(run, CONFIG));
    table.push(...etcdMarkdown(runs, CONFIG));
    described =
      '**Source:** etcd 3.4 (Debian), 3 members; **target:** stratakv, 3 members; the load: of every 10 writes of a client 6 puts of a fresh key, 2 deletes and 2 Txns (put and delete); its clients hold etcd\'s endpoints with `failOverOnMirror`, a 15 s deadline a put, and are moved (`EtcdClient.setEndpoints`) to the new primary when `copy switch` asks and back after `copy reverse`';
  } else {
    const runs: StratakvRunFigures[] = [];
    for (let run = 1; run <= RUNS; run += 1) runs.push(await stratakvRun(run, CONFIG));
    table.push(...stratakvMarkdown(runs, CONFIG));
    described =
      '**Source:** stratakv, 3 members; **target:** stratakv, 3 members; the load: of every 10 writes of a client 6 puts of a fresh key, 2 deletes and 2 Txns (put and delete); its clients hold both clusters\' endpoints (the source\'s first) with `failOverOnMirror`, a 15 s deadline a put';
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
        `# bench:migrate-copy — ${startedAt.toISOString().slice(0, 10)}: etcd or stratakv copied into a stratakv mirror, then followed under load, switched and reversed under it (issue 16)\n\nEach run below was appended by \`npm run bench:migrate-copy\` as it ended; notes after a run were added by hand and say so.\n\n`,
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

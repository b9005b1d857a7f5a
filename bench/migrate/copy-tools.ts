// What bench:migrate-copy does the same way for either source: the preload, the plain
// paginated read (the copy's baseline), the copier (`stratakv migrate copy create`, its own
// process), the other `copy` verbs (run to their end, JSON answer), and the lag probes of the
// tail. Every wait here is bounded in count and time; every process is recorded with
// bench/cluster/processes.ts, so cleanup ends it by PID.
import { spawn, type ChildProcess } from 'node:child_process';

import type { EtcdClient } from '../../src/client/index.ts';
import { STRATAKV_ENTRY } from '../cluster/launchers.ts';
import { percentileOfSorted } from '../cluster/stats.ts';
import { collectOutput, exited, sleep, stopChild, trackChild, type ChildOutput } from '../cluster/processes.ts';

/** PAGE_KEYS is the plain read's page, the copier's scan page. */
export const PAGE_KEYS = 1_000;
/** PRELOAD_TXN_PUTS and PRELOAD_IN_FLIGHT shape the preload: puts per txn, txns at once. */
const PRELOAD_TXN_PUTS = 100;
const PRELOAD_IN_FLIGHT = 4;
const PLAIN_READ_PAGES_MAX = 1_000_000;
const COPIER_POLL_MS = 50;
// How often copyCliPrompted looks for the verb's question (the operator's reaction time).
const PROMPT_POLL_MS = 10;
const PROBE_POLL_ERRORS_MAX = 1_000;

/** epochMs is the load worker's clock: epoch milliseconds with performance.now()'s resolution. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** preload puts `keys` keys `data/NNNNNNNN` of `valueBytes` random bytes, 100 a txn, 4 txns in flight. */
export async function preload(client: EtcdClient, keys: number, valueBytes: number): Promise<void> {
  if (!(keys >= 1 && valueBytes >= 4)) throw new Error(`preload: bad sizes ${keys} keys × ${valueBytes} B`);
  const value = Buffer.alloc(valueBytes);
  let next = 0;
  const loader = async (): Promise<void> => {
    while (next < keys) {
      const from = next;
      next = Math.min(keys, next + PRELOAD_TXN_PUTS);
      const success = [];
      for (let at = from; at < next; at += 1) {
        for (let offset = 0; offset < valueBytes; offset += 4) value.writeUInt32LE((Math.random() * 0x1_0000_0000) >>> 0, Math.min(offset, valueBytes - 4));
        success.push({ type: 'put' as const, key: Buffer.from(`data/${String(at).padStart(8, '0')}`), value: Buffer.from(value) });
      }
      await client.txn({ type: 'txn', compare: [], success, failure: [] });
    }
  };
  await Promise.all(Array.from({ length: PRELOAD_IN_FLIGHT }, () => loader()));
}

/**
 * plainRead reads every key of `prefix` in pages of PAGE_KEYS: the baseline for the copy's
 * scan. `atOneRevision` reads every page at the revision of a first count (etcd, which keeps
 * history); otherwise each page reads the current state (stratakv keeps none). The pages are
 * linearizable reads either way (EtcdClient's default, as etcdctl's).
 */
export async function plainRead(client: EtcdClient, prefix: string, atOneRevision: boolean): Promise<{ bytes: number; keys: number; seconds: number }> {
  const head = await client.get(prefix, { prefix: true, countOnly: true });
  const end = Buffer.from(prefix);
  end[end.length - 1] = (end[end.length - 1] ?? 0) + 1;
  let from: Uint8Array = Buffer.from(prefix);
  let bytes = 0;
  let keys = 0;
  const started = performance.now();
  for (let page = 0; page < PLAIN_READ_PAGES_MAX; page += 1) {
    const answer = await client.get(from, { rangeEnd: end, limit: PAGE_KEYS, ...(atOneRevision ? { revision: head.header.revision } : {}) });
    for (const kv of answer.kvs) bytes += kv.key.byteLength + kv.value.byteLength;
    keys += answer.kvs.length;
    const last = answer.kvs[answer.kvs.length - 1];
    if (!answer.more || last === undefined) break;
    from = Buffer.concat([last.key, Buffer.of(0)]);
  }
  return { bytes, keys, seconds: (performance.now() - started) / 1000 };
}

/** CopyRunConfig: a run's sizes and bounds (bench/migrate-copy.ts' options), whatever the source. */
export interface CopyRunConfig {
  readonly keys: number;
  readonly valueBytes: number;
  readonly clients: number;
  readonly putBytes: number;
  readonly tailSeconds: number;
  readonly loadAloneSeconds: number;
  readonly probeIntervalMs: number;
  readonly pollIntervalMs: number;
  readonly scanTimeoutMs: number;
  readonly catchUpTimeoutMs: number;
}

/** CopyCliAnswer is a finished `copy` verb: its exit status, its last JSON line and its stderr. */
export interface CopyCliAnswer {
  readonly status: number | null;
  readonly json: Record<string, unknown>;
  readonly stderr: string;
  readonly seconds: number;
  /** startedMs and endedMs: epoch ms around the process. */
  readonly startedMs: number;
  readonly endedMs: number;
}

/**
 * copyCli runs `stratakv migrate copy ARGS -w json` to its end (SIGKILL after `timeoutMs`) and
 * answers its last JSON line. It does not block the event loop (a running copier's output is
 * read meanwhile).
 */
export async function copyCli(args: readonly string[], timeoutMs: number): Promise<CopyCliAnswer> {
  const startedMs = epochMs();
  const child = spawn(process.execPath, [STRATAKV_ENTRY, 'migrate', 'copy', ...args, '-w', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = await collectOutput(child, timeoutMs);
  return cliAnswer(args, output, startedMs, epochMs());
}

/** PromptedCliAnswer is a finished `copy` verb that asked the operator once: when it asked and was answered (epoch ms). */
export interface PromptedCliAnswer extends CopyCliAnswer {
  readonly promptedMs: number;
  readonly answeredMs: number;
}

/**
 * copyCliPrompted runs `stratakv migrate copy ARGS -w json` with its stdin piped, as copyCli
 * does otherwise: once it prints `prompt` on stderr (`copy switch` of an etcd source asks for
 * the writers to be moved), `respond` runs (the operator's action) and the line it answers is
 * written to the verb's stdin. A verb that exits without asking is answered as it ended (its
 * status says why); a `respond` that throws ends the verb (SIGTERM) and throws.
 */
export async function copyCliPrompted(args: readonly string[], prompt: RegExp, respond: () => Promise<string>, timeoutMs: number): Promise<PromptedCliAnswer> {
  const startedMs = epochMs();
  const child = spawn(process.execPath, [STRATAKV_ENTRY, 'migrate', 'copy', ...args, '-w', 'json'], { stdio: ['pipe', 'pipe', 'pipe'] });
  // A verb that exits before it reads its answer must not make the write an unhandled error.
  child.stdin?.on('error', () => {});
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const collected = collectOutput(child, timeoutMs);
  let promptedMs = Number.NaN;
  let answeredMs = Number.NaN;
  for (let poll = 0; poll * PROMPT_POLL_MS <= timeoutMs; poll += 1) {
    if (prompt.test(stderr)) {
      promptedMs = epochMs();
      let line: string;
      try {
        line = await respond();
      } catch (error) {
        await stopChild(child);
        throw error;
      }
      child.stdin?.write(`${line}\n`);
      answeredMs = epochMs();
      break;
    }
    if (child.exitCode !== null || child.signalCode !== null) break;
    await sleep(PROMPT_POLL_MS);
  }
  const output = await collected;
  return { ...cliAnswer(args, output, startedMs, epochMs()), promptedMs, answeredMs };
}

// cliAnswer reads a finished verb's last stdout line as its JSON answer.
function cliAnswer(args: readonly string[], output: ChildOutput, startedMs: number, endedMs: number): CopyCliAnswer {
  const line = output.stdout.trim().split('\n').pop() ?? '';
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`stratakv migrate copy ${args.join(' ')}: no JSON (status ${String(output.code)}, signal ${String(output.signal)}): ${output.stdout.slice(0, 500)} ${output.stderr.slice(0, 2_000)}`);
  }
  return { status: output.code, json, stderr: output.stderr, seconds: (endedMs - startedMs) / 1000, startedMs, endedMs };
}

/** Copier is a `stratakv migrate copy create` running in the background. */
export interface Copier {
  readonly child: ChildProcess;
  /** startedAt: performance.now() at the spawn. */
  readonly startedAt: number;
  /** output is what it printed so far, stderr and stdout together. */
  output(): string;
  /** waitFor answers performance.now() when `pattern` is first seen; throws if it exits first or `timeoutMs` passes. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<number>;
  /** exitedWithin answers whether it exited within `timeoutMs`. */
  exitedWithin(timeoutMs: number): Promise<boolean>;
  /** stop ends it with SIGTERM (SIGKILL after a grace period): a graceful stop keeps its position. */
  stop(): Promise<void>;
}

/** startCopier starts `stratakv migrate copy create --from FROM --to TO`. */
export function startCopier(from: string, to: string): Copier {
  const startedAt = performance.now();
  const child = spawn(process.execPath, [STRATAKV_ENTRY, 'migrate', 'copy', 'create', '--from', from, '--to', to], { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  return {
    child,
    startedAt,
    output: () => output,
    async waitFor(pattern, timeoutMs) {
      for (let poll = 0; poll * COPIER_POLL_MS <= timeoutMs; poll += 1) {
        if (pattern.test(output)) return performance.now();
        if (child.exitCode !== null || child.signalCode !== null) break;
        await sleep(COPIER_POLL_MS);
      }
      if (pattern.test(output)) return performance.now();
      const how = child.exitCode !== null || child.signalCode !== null ? `exited (code ${String(child.exitCode)}, signal ${String(child.signalCode)})` : `did not print it within ${timeoutMs} ms`;
      throw new Error(`the copier ${from} → ${to} ${how} before ${String(pattern)}: ${output.slice(-2_000)}`);
    },
    async exitedWithin(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      try {
        return await Promise.race([exited(child).then(() => true as const), late]);
      } finally {
        clearTimeout(timer);
      }
    },
    stop: () => stopChild(child),
  };
}

/** copierLines answers the copier's lines that match `pattern` (the first `count`), for notes. */
export function copierLines(copier: Copier, pattern: RegExp, count: number): string[] {
  return copier
    .output()
    .split('\n')
    .filter((line) => pattern.test(line))
    .slice(0, count);
}

/** ProbeOptions shape the lag probes. */
export interface ProbeOptions {
  /** source takes the probe puts; mirror is read for their revisions (a mirrorReader client). */
  readonly source: EtcdClient;
  readonly mirror: EtcdClient;
  readonly intervalMs: number;
  readonly pollIntervalMs: number;
  /** probesMax bounds the probes; drainTimeoutMs bounds the wait for the last ones after stop. */
  readonly probesMax: number;
  readonly drainTimeoutMs: number;
  /**
   * hopeless, asked after each poll, answers why the mirror will never reach the probes (the
   * copier exited), or undefined: the probes then fail with that reason instead of waiting.
   */
  readonly hopeless?: () => string | undefined;
}

/** ProbeResult: each seen probe's lag (ms), the probes never seen, and the mirror reads that failed. */
export interface ProbeResult {
  readonly lagsMs: readonly number[];
  readonly unseen: number;
  readonly pollErrors: number;
}

/**
 * startProbes puts `probe/heartbeat` on the source every intervalMs and reads the mirror every
 * pollIntervalMs (a linearizable count-only Range); a probe's lag is the time from its put's
 * acknowledgement to the first mirror answer at or past its revision (so it includes up to one
 * poll interval and the poll's own latency). stop() ends the puts and waits until every probe
 * made is seen (bounded by drainTimeoutMs).
 */
export function startProbes(options: ProbeOptions): { stop(): Promise<ProbeResult> } {
  if (!(options.intervalMs > 0 && options.pollIntervalMs > 0 && options.probesMax > 0)) throw new Error('startProbes: bad options');
  const lagsMs: number[] = [];
  const waiting: { revision: number; ackMs: number }[] = [];
  let probing = true;
  let unseen = 0;
  let pollErrors = 0;
  let stoppedAt = Number.POSITIVE_INFINITY;
  const prober = (async () => {
    for (let probe = 0; probing && probe < options.probesMax; probe += 1) {
      const started = performance.now();
      const put = await options.source.put('probe/heartbeat', String(probe));
      waiting.push({ revision: put.header.revision, ackMs: performance.now() });
      await sleep(Math.max(0, options.intervalMs - (performance.now() - started)));
    }
  })();
  const poller = (async () => {
    while (probing || waiting.length > 0) {
      let revision: number;
      try {
        revision = (await options.mirror.get('probe/heartbeat', { countOnly: true })).header.revision;
      } catch (error) {
        pollErrors += 1;
        if (pollErrors > PROBE_POLL_ERRORS_MAX) throw error;
        await sleep(options.pollIntervalMs);
        continue;
      }
      const seenMs = performance.now();
      while (waiting.length > 0 && (waiting[0]?.revision ?? Infinity) <= revision) {
        const probe = waiting.shift();
        if (probe !== undefined) lagsMs.push(seenMs - probe.ackMs);
      }
      const why = waiting.length > 0 ? options.hopeless?.() : undefined;
      if (why !== undefined) throw new Error(`${waiting.length} probes will not reach the mirror (at revision ${revision}): ${why}`);
      if (!probing && waiting.length > 0 && seenMs - stoppedAt > options.drainTimeoutMs) {
        unseen = waiting.length;
        break;
      }
      await sleep(options.pollIntervalMs);
    }
  })();
  // A failure shows at stop(); until then it must not be an unhandled rejection.
  prober.catch(() => {});
  poller.catch(() => {});
  return {
    async stop() {
      probing = false;
      try {
        await prober;
      } finally {
        stoppedAt = performance.now();
      }
      await poller;
      return { lagsMs, unseen, pollErrors };
    },
  };
}

/** LagFigures summarize the probes' lags (ms): the median, the 99th percentile, the most. */
export interface LagFigures {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** lagFigures summarizes `result`'s lags (NaN with no probe seen). */
export function lagFigures(result: ProbeResult): LagFigures {
  const sorted = Float64Array.from(result.lagsMs).sort();
  if (sorted.length === 0) return { p50Ms: Number.NaN, p99Ms: Number.NaN, maxMs: Number.NaN };
  return { p50Ms: percentileOfSorted(sorted, 0.5), p99Ms: percentileOfSorted(sorted, 0.99), maxMs: sorted[sorted.length - 1] ?? Number.NaN };
}

/** CopyRunFigures are what every run measures, whatever the source: the reads, the copy, the load and the lag. */
export interface CopyRunFigures {
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
}

// Helpers of bench:snapshot for `stratakv serve` processes it runs itself: a member that
// joins a running cluster, a single member on a data folder of its own (restarted several
// times), the member's log lines, its RSS, its applied index, and a preload of many keys
// through Txns of several puts.
import type { ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join as joinPath } from 'node:path';

import { stratakvServeCommand, type Member, type RunningCluster } from '../cluster/launchers.ts';
import { CpuWindow } from '../cluster/process-cpu.ts';
import { freePorts, sleep, startChild, stopChild, tailOf } from '../cluster/processes.ts';
import { describeError, openClient, status, unary } from '../cluster/rpc.ts';
import { encodePutRequest, KV_PUT, type StatusResponse } from '../cluster/wire.ts';
import { readLogRecords } from '../../test/obs/log-records.ts';
import { encodeTxnPuts, KV_TXN, memberAdd, memberRemove, triggerSnapshot } from './etcd-calls.ts';

const STATUS_DEADLINE_MS = 1_000;
const POLL_MS = 50;
const JOIN_POLL_MS = 100;
const STOP_GRACE_MS = 30_000;
const PRELOAD_RETRIES_MAX = 5;
const PRELOAD_CALL_DEADLINE_MS = 60_000;
const PRELOAD_CHANNELS = 2;
const RSS_SAMPLES_MAX = 100_000;
/** RATE_WINDOW_MS: the snapshotter sizes the log tail it keeps from the write rate of the last 30 s (src/node/snapshotter.ts WRITE_RATE_WINDOW_MS). */
const RATE_WINDOW_MS = 30_000;
/** Spaced puts after a quiet RATE_WINDOW_MS replace the old rate samples (the snapshotter takes one per 30 s / 64). */
const SPACED_PUTS = 3;
const SPACED_PUT_GAP_MS = 700;

/** LogLine is one line of a member's log: its time (epoch ms), message and JSON fields. */
export interface LogLine {
  readonly atMs: number;
  readonly message: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** readLogLines parses a member's log (its JSON lines, test/obs/log-records.ts), from byte `fromByte`. */
export function readLogLines(path: string, fromByte = 0): LogLine[] {
  return readLogRecords(path, fromByte).map((record) => ({ atMs: Date.parse(record.ts), message: record.msg, fields: record.fields }));
}

/** logBytes is the current length of a log file (to read only what comes after). */
export function logBytes(path: string): number {
  try {
    return readFileSync(path).byteLength;
  } catch {
    return 0;
  }
}

/**
 * ProcessMemory is a process's resident set from /proc/PID/status: VmRSS, and its anonymous
 * part (RssAnon: heap, buffers). The rest is mostly file pages mapped in (LevelDB maps its
 * table files, so reading the whole state for a snapshot maps the whole state in); those
 * count in VmRSS but are page cache the kernel can take back.
 */
export interface ProcessMemory {
  readonly rssBytes: number;
  readonly anonBytes: number;
}

/** processMemory reads a process's VmRSS and RssAnon, NaN when it is gone. */
export function processMemory(pid: number): ProcessMemory {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): number => {
      const match = new RegExp(`${name}:\\s+(\\d+)\\s+kB`).exec(text);
      return match?.[1] === undefined ? Number.NaN : Number(match[1]) * 1024;
    };
    return { rssBytes: field('VmRSS'), anonBytes: field('RssAnon') };
  } catch {
    return { rssBytes: Number.NaN, anonBytes: Number.NaN };
  }
}

/** RssSampler samples one process's memory every `intervalMs` (bounded count) until stopped. */
export class RssSampler {
  readonly samples: ({ atMs: number } & ProcessMemory)[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(pid: number, intervalMs = 100) {
    const sample = (): void => {
      if (this.samples.length < RSS_SAMPLES_MAX) this.samples.push({ atMs: performance.now(), ...processMemory(pid) });
    };
    sample();
    this.timer = setInterval(sample, intervalMs);
  }

  /** between answers the samples of `kind` taken in [fromMs, toMs] (performance.now() times). */
  between(fromMs: number, toMs: number, kind: keyof ProcessMemory = 'rssBytes'): number[] {
    return this.samples.filter((sample) => sample.atMs >= fromMs && sample.atMs <= toMs && Number.isFinite(sample[kind])).map((sample) => sample[kind]);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * waitSettled waits until every process in `pids` used less than `cpuPercentMax` of a core over
 * a `windowMs` window (the members finished snapshots and compactions a load started), at most
 * `timeoutMs`; answers how long it waited and whether they settled.
 */
export async function waitSettled(pids: readonly number[], cpuPercentMax: number, windowMs: number, timeoutMs: number): Promise<{ waitedMs: number; settled: boolean }> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    const window = new CpuWindow(pids);
    await sleep(windowMs);
    if (window.stop().every((percent) => !(percent >= cpuPercentMax))) return { waitedMs: performance.now() - started, settled: true };
  }
  return { waitedMs: performance.now() - started, settled: false };
}

/** tryStatus answers a member's Status, or undefined when it does not answer (yet). */
export async function tryStatus(endpoint: string): Promise<StatusResponse | undefined> {
  try {
    return await status(endpoint, STATUS_DEADLINE_MS);
  } catch {
    return undefined;
  }
}

/** waitAllApplied waits (bounded) until every member's applied index is at least the leader's. */
export async function waitAllApplied(members: readonly Member[], leader: Member, timeoutMs: number): Promise<bigint> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const target = (await status(leader.endpoint, STATUS_DEADLINE_MS)).raftAppliedIndex;
    const answers = await Promise.all(members.map((member) => tryStatus(member.endpoint)));
    if (answers.every((answer) => answer !== undefined && answer.raftAppliedIndex >= target)) return target;
    if (Date.now() > deadline) throw new Error(`members did not all apply index ${target} within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** PreloadOptions: `keys` keys of `valueBytes` random bytes, `putsPerTxn` per Txn, `concurrency` Txns outstanding. */
export interface PreloadOptions {
  readonly endpoint: string;
  readonly prefix: string;
  readonly keys: number;
  readonly valueBytes: number;
  readonly putsPerTxn: number;
  readonly concurrency: number;
  readonly timeoutMs: number;
  readonly keyOf: (prefix: string, index: number) => Buffer;
  readonly log: (line: string) => void;
}

/** preload writes the keys through Txns of puts (a Txn that fails is retried, bounded; puts are idempotent). */
export async function preload(options: PreloadOptions): Promise<{ seconds: number; txns: number; retries: number }> {
  const clients = Array.from({ length: PRELOAD_CHANNELS }, (_, index) => openClient(options.endpoint, 100 + index));
  const started = performance.now();
  const deadline = Date.now() + options.timeoutMs;
  let next = 0;
  let done = 0;
  let txns = 0;
  let retries = 0;
  let reported = 0;
  const worker = async (worker: number): Promise<void> => {
    const values = Buffer.alloc(options.putsPerTxn * options.valueBytes);
    const client = clients[worker % clients.length] ?? clients[0];
    if (client === undefined) throw new Error('no client');
    while (next < options.keys) {
      if (Date.now() > deadline) throw new Error(`preload: ${done} of ${options.keys} keys after ${options.timeoutMs} ms`);
      const first = next;
      const count = Math.min(options.putsPerTxn, options.keys - first);
      next += count;
      randomFillSync(values, 0, count * options.valueBytes);
      const pairs = Array.from({ length: count }, (_, offset) => [options.keyOf(options.prefix, first + offset), values.subarray(offset * options.valueBytes, (offset + 1) * options.valueBytes)] as const);
      const request = encodeTxnPuts(pairs);
      for (let attempt = 0; ; attempt += 1) {
        try {
          await unary(client, KV_TXN, request, PRELOAD_CALL_DEADLINE_MS);
          break;
        } catch (error) {
          if (attempt >= PRELOAD_RETRIES_MAX) throw new Error(`preload: a Txn failed ${attempt + 1} times: ${describeError(error)}`);
          retries += 1;
          await sleep(500);
        }
      }
      txns += 1;
      done += count;
      if (done - reported >= options.keys / 10) {
        reported = done;
        const seconds = (performance.now() - started) / 1000;
        options.log(`  preloaded ${done} of ${options.keys} keys in ${seconds.toFixed(0)} s (${((done * options.valueBytes) / seconds / 1e6).toFixed(1)} MB/s of values)`);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, (_, index) => worker(index)));
  } finally {
    for (const client of clients) client.close();
  }
  return { seconds: (performance.now() - started) / 1000, txns, retries };
}

/** CompactionResult is what the member's log said of the snapshot it took. */
export interface CompactionResult {
  readonly index: number;
  readonly bytes: number;
  readonly compactedThrough: number;
  readonly snapshotMs: number;
  /** quietWaitMs: how long the bench let the member go without writes first (0 when not needed). */
  readonly quietWaitMs: number;
}

/**
 * snapshotAndCompact makes `member` take a snapshot of everything it applied (Maintenance.Snapshot)
 * and answers what its log says of it. The member compacts its log behind the snapshot but keeps
 * a tail sized from the write rate of the last 30 s (at least --snapshot-catchup-entries): right
 * after a fast preload that tail can cover the whole log, and a new member would catch up from
 * the log, not from a snapshot. With `quietFirst`, or when the first snapshot left more than
 * `tailEntriesMax` entries, the bench waits out the rate window, makes a few spaced puts (new
 * rate samples: a quiet cluster) and then takes the snapshot: the state of a cluster that was
 * loaded and then went quiet, whatever the preload's speed.
 */
export async function snapshotAndCompact(member: Member, tailEntriesMax: number, log: (line: string) => void, quietFirst = false): Promise<CompactionResult> {
  const logPath = member.logPath ?? '';
  let quietWaitMs = 0;
  const goQuiet = async (): Promise<void> => {
    const quietStarted = performance.now();
    await sleep(RATE_WINDOW_MS + 1_000);
    const client = openClient(member.endpoint);
    try {
      for (let put = 0; put < SPACED_PUTS; put += 1) {
        await unary(client, KV_PUT, encodePutRequest(Buffer.from(`bench/quiet/${put}`), Buffer.from('q')), 10_000);
        await sleep(SPACED_PUT_GAP_MS);
      }
    } finally {
      client.close();
    }
    quietWaitMs = performance.now() - quietStarted;
  };
  if (quietFirst) {
    log(`  waiting ${RATE_WINDOW_MS / 1000 + 1} s without writes, then ${SPACED_PUTS} spaced puts, before the snapshot (a cluster that went quiet)`);
    await goQuiet();
  }
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const from = logBytes(logPath);
    const snapshotMs = await triggerSnapshot(member.endpoint);
    // The log line follows the record (sync, compaction) closely; wait for it, bounded.
    let saved: LogLine | undefined;
    for (let wait = 0; wait < 200 && saved === undefined; wait += 1) {
      saved = readLogLines(logPath, from).find((line) => line.message === 'snapshot saved');
      if (saved === undefined) await sleep(POLL_MS);
    }
    if (saved === undefined) throw new Error(`${member.name} logged no "snapshot saved" after Maintenance.Snapshot; its log ends:\n${tailOf(logPath)}`);
    const result: CompactionResult = {
      index: Number(saved.fields['index']),
      bytes: Number(saved.fields['bytes']),
      compactedThrough: Number(saved.fields['compactedThrough']),
      snapshotMs,
      quietWaitMs,
    };
    log(`  ${member.name} took a snapshot at index ${result.index} (${result.bytes} bytes) in ${snapshotMs.toFixed(0)} ms; log compacted through ${result.compactedThrough}`);
    if (result.index - result.compactedThrough <= tailEntriesMax || attempt === 1) return result;
    log(`  the log keeps ${result.index - result.compactedThrough} entries (the tail sized from the preload's write rate): going quiet and taking another`);
    await goQuiet();
  }
  throw new Error('unreachable');
}

/** JoinResult is one member joining: when it started, and how long until it had applied the leader's index. */
export interface JoinResult {
  readonly name: string;
  readonly id: bigint;
  readonly startedAtMs: number;
  readonly caughtUpMs: number;
  readonly targetIndex: bigint;
  /** The leader's "snapshot sent" lines for this join: bytes and ms of each send. */
  readonly sends: readonly { bytes: number; ms: number }[];
  readonly sendFailures: number;
}

/** JoinOptions: the cluster, the new member's name, extra serve flags and the bound on the wait. */
export interface JoinOptions {
  readonly cluster: RunningCluster;
  readonly leader: Member;
  readonly name: string;
  readonly serveFlags: readonly string[];
  readonly timeoutMs: number;
  /** Add it as a learner (the quorum stays the old members'), not as a voter. */
  readonly learner?: boolean;
  /** Called once when the leader logged "snapshot sent" (or at the latest when the member caught up without one). */
  readonly onSent?: () => void;
}

/** JoinedMember is a member the bench added; leave() removes it from the cluster, stops it and removes its data. */
export interface JoinedMember extends JoinResult {
  leave(): Promise<void>;
}

/**
 * join adds a member (Cluster.MemberAdd on the leader), starts `stratakv serve` for it with
 * --initial-cluster-state existing and an empty data folder, and waits (bounded) until its
 * applied index reaches the leader's (read just before each check).
 */
export async function joinMember(options: JoinOptions): Promise<JoinedMember> {
  const { cluster, leader, name } = options;
  const folder = cluster.folder;
  if (folder === undefined || leader.logPath === undefined) throw new Error('join needs a process cluster');
  const [clientPort, peerPort] = await freePorts(2);
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const dataDir = joinPath(folder, `${name}.data`);
  const logPath = joinPath(folder, `${name}.log`);
  const leaderLogFrom = logBytes(leader.logPath);
  const id = await memberAdd(leader.endpoint, peerUrl, options.learner === true);
  const initialCluster = [...cluster.members.map((member) => `${member.name}=${member.peerUrl ?? ''}`), `${name}=${peerUrl}`].join(',');
  const { command, args } = stratakvServeCommand([
    '--name', name,
    '--data-dir', dataDir,
    '--listen-client-urls', clientUrl,
    '--advertise-client-urls', clientUrl,
    '--listen-peer-urls', peerUrl,
    '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', initialCluster,
    '--initial-cluster-state', 'existing',
    ...options.serveFlags,
  ]);
  const startedAtMs = performance.now();
  const child: ChildProcess = startChild(command, args, logPath);
  const leave = async (): Promise<void> => {
    try {
      const current = await cluster.leader();
      await memberRemove(current.endpoint, id);
    } finally {
      await stopChild(child, STOP_GRACE_MS);
      await rm(dataDir, { recursive: true, force: true });
    }
  };
  try {
    // The new member is asked every JOIN_POLL_MS; the leader only when the new member has reached
    // the index the leader last gave (its Status walks its data folder for dbSize: asking it
    // often would cost the leader the CPU the bench measures).
    const deadline = Date.now() + options.timeoutMs;
    let targetIndex = (await status(leader.endpoint, STATUS_DEADLINE_MS)).raftAppliedIndex;
    let sentNoted = options.onSent === undefined;
    const noteSent = (): void => {
      if (sentNoted) return;
      sentNoted = true;
      options.onSent?.();
    };
    while (true) {
      if (!sentNoted && leader.logPath !== undefined && readLogLines(leader.logPath, leaderLogFrom).some((line) => line.message === 'snapshot sent')) noteSent();
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited (code ${child.exitCode}); its log ends:\n${tailOf(logPath)}`);
      if (Date.now() > deadline) throw new Error(`${name} did not catch up within ${options.timeoutMs} ms; its log ends:\n${tailOf(logPath)}`);
      const own = await tryStatus(clientUrl);
      if (own !== undefined && own.raftAppliedIndex >= targetIndex) {
        const leaderStatus = await tryStatus(leader.endpoint);
        if (leaderStatus !== undefined) {
          const reached = own.raftAppliedIndex >= leaderStatus.raftAppliedIndex;
          targetIndex = leaderStatus.raftAppliedIndex;
          if (reached) break;
        }
      }
      await sleep(JOIN_POLL_MS);
    }
    noteSent();
    const caughtUpMs = performance.now() - startedAtMs;
    const leaderLines = readLogLines(leader.logPath, leaderLogFrom);
    // The sender's line (with `ms`); the transport logs one of its own without it.
    const sends = leaderLines.filter((line) => line.message === 'snapshot sent' && typeof line.fields['ms'] === 'number').map((line) => ({ bytes: Number(line.fields['bytes']), ms: Number(line.fields['ms']) }));
    const sendFailures = leaderLines.filter((line) => line.message === 'snapshot send failed').length;
    return { name, id, startedAtMs, caughtUpMs, targetIndex, sends, sendFailures, leave };
  } catch (error) {
    await leave().catch(() => undefined);
    throw error;
  }
}

/** SingleMember is a one-member cluster on a data folder the caller keeps between starts. */
export interface SingleMember {
  readonly child: ChildProcess;
  readonly endpoint: string;
  readonly logPath: string;
  readonly spawnedAtMs: number;
  stop(): Promise<void>;
}

/**
 * startSingle starts `stratakv serve` as the only member of a cluster on `dataDir`. A member's
 * id comes from its peer URLs, so a data folder is always started with the same `ports`.
 */
export function startSingle(dataDir: string, logPath: string, ports: { readonly client: number; readonly peer: number }, serveFlags: readonly string[]): SingleMember {
  const clientPort = ports.client;
  const peerPort = ports.peer;
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const { command, args } = stratakvServeCommand([
    '--name', 'solo',
    '--data-dir', dataDir,
    '--listen-client-urls', endpoint,
    '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peerUrl,
    '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `solo=${peerUrl}`,
    ...serveFlags,
  ]);
  const spawnedAtMs = performance.now();
  const child = startChild(command, args, logPath);
  return { child, endpoint, logPath, spawnedAtMs, stop: () => stopChild(child, STOP_GRACE_MS) };
}

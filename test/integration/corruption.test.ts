// A corrupt state machine is never served, in real 3-process clusters of `stratakv serve`
// with the real etcdctl (issue 13). For each of three corruptions of one stopped member's
// LevelDB — (a) one byte flipped in the middle of LevelDB's own `.log`, (b) a run of bytes
// flipped in the middle of its largest table, (c) one value rewritten through LevelDB itself
// (valid checksums) — the member, started again with the same flags, exits non-zero naming
// the check that failed (and, for (c), the key) and --repair-corrupt-state; the other two keep
// serving linearizable gets and puts with every key; started with --repair-corrupt-state it
// says so loudly, moves the damaged state machine to <data-dir>/corrupt/, rebuilds it from its
// own snapshot and log, catches up, and then holds exactly the cluster's data: equal
// `etcdctl endpoint hashkv` on all three, equal key counts on serializable reads, and an
// integrity checkpoint where all three members report the same digest, with no alarm.
//
// (c) is done on the member that leads when it is stopped: its rewritten value must never
// win. The first cluster runs with the default --snapshot-count (the repair replays the whole
// log), the second with --snapshot-count 300 (the repair restores the member's own snapshot,
// then replays the log after it; whether the log was also compacted behind the snapshot
// depends on the write rate). Each case also reads the kept state machine through LevelDB
// alone, to show the damage was real: keys missing or changed, or a LevelDB read error. A
// healthy cluster with --integrity-check-entries 50 raises no alarm (the divergence case is
// covered in-process, test/node/integrity-cluster.test.ts).
//
// Every wait and loop is bounded. Members are stopped by PID in `after`;
// STRATAKV_KEEP_TEST_DATA keeps their directories.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EtcdClient } from '../../src/client/index.ts';
import type { EndpointStatus } from '../../src/client/index.ts';
import type { DigestCheck } from '../../src/storage/kv-digest-check.ts';
import { etcdctl, etcdctlSkipReason, isRunning, makeWaitFor, sleep, TestCluster } from './cluster-process.ts';
import type { LaunchOptions, MemberProcess } from './cluster-process.ts';
import { readableLog, readLogRecords } from '../obs/log-records.ts';
import { flipLogByte, flipTableBytes, levelDamage, levelFiles, readStoredValue, rewriteStoredValue, stateMachineDirectory } from './level-corruption.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
const POLL_MS = 250;
/** A refused start must end within this (it reads ~1 MiB of state before it refuses). */
const REFUSED_EXIT_TIMEOUT_MS = 30_000;
const CATCH_UP_TIMEOUT_MS = 45_000;
const CONVERGE_TIMEOUT_MS = 20_000;
const CHECKPOINT_TIMEOUT_MS = 20_000;
const LOG_SETTLE_TIMEOUT_MS = 2_000;
const LOAD_CONCURRENCY = 8;
// 1,800 puts, 400 overwrites, 200 deletes: 1,600 keys.
const LOAD_PUTS = 1_800;
const LOAD_OVERWRITES = 400;
const LOAD_DELETES = 200;
const LOAD_KEYS = LOAD_PUTS - LOAD_DELETES;
const VALUE_BYTES = 120;
/** LevelDB's .log must span several 32 KiB blocks, so that the damaged one is in the middle. */
const LOG_BYTES_MIN = 256 * 1024;
const TABLE_FLIP_BYTES = 64;
const TABLE_BYTES_MIN = 64 * 1024;
const REFUSAL = /failed its integrity check \(([a-z-]+)\)/;
const REPAIR_BANNER = 'REPAIRING A CORRUPT STATE MACHINE (--repair-corrupt-state)';
const RESTORE_FROM_SNAPSHOT = "restoring the state machine from the log's snapshot";
const decoder = new TextDecoder();

const INTEGRITY_ARGS = ['--integrity-check-entries=50', '--integrity-check-interval=1000'];
const DEFAULT_SNAPSHOTS: LaunchOptions = { serveArgs: INTEGRITY_ARGS };
const SMALL_SNAPSHOTS: LaunchOptions = { serveArgs: [...INTEGRITY_ARGS, '--snapshot-count=300', '--snapshot-catchup-entries=50'] };

const clusters = new Set<TestCluster>();
after(async () => {
  for (const cluster of clusters) await cluster.stop();
  clusters.clear();
});

const waitFor = makeWaitFor(POLL_MS);

function logSize(member: MemberProcess): number {
  return existsSync(member.logPath) ? statSync(member.logPath).size : 0;
}

/** logSince is what the member's processes printed (stdout and stderr) from byte `offset` of its log, JSON log lines as text. */
function logSince(member: MemberProcess, offset: number): string {
  return existsSync(member.logPath) ? readableLog(readFileSync(member.logPath).subarray(offset).toString('utf8')) : '';
}

/** loggedServing tells whether the member logged `serving` from byte `offset` of its log. */
function loggedServing(member: MemberProcess, offset: number): boolean {
  return readLogRecords(member.logPath, offset).some((record) => record.name === member.name && record.msg === 'serving');
}

/**
 * settledLog waits, bounded, until an exited member's output has reached its log: the child's
 * pipes are closed ('exit' can come first) and the log file stopped growing (the harness
 * writes what it read from the pipes asynchronously).
 */
async function settledLog(member: MemberProcess, offset: number): Promise<string> {
  const deadline = Date.now() + LOG_SETTLE_TIMEOUT_MS;
  const closed = new Promise<void>((resolve) => {
    if (member.child.stdout?.closed !== false && member.child.stderr?.closed !== false) resolve();
    else member.child.once('close', () => resolve());
  });
  await Promise.race([closed, sleep(LOG_SETTLE_TIMEOUT_MS)]);
  let size = -1;
  for (let attempt = 0; Date.now() < deadline && attempt < LOG_SETTLE_TIMEOUT_MS / 50; attempt += 1) {
    const now = logSize(member);
    if (now === size) break;
    size = now;
    await sleep(50);
  }
  return logSince(member, offset);
}

/** snapshotsSaved are the fields of the member's 'snapshot saved' log lines. */
function snapshotsSaved(member: MemberProcess): Readonly<Record<string, unknown>>[] {
  return readLogRecords(member.logPath)
    .filter((record) => record.name === member.name && record.msg === 'snapshot saved')
    .map((record) => record.fields);
}

async function statusOf(member: MemberProcess): Promise<EndpointStatus | undefined> {
  if (!isRunning(member)) return undefined;
  const client = new EtcdClient({ endpoints: [member.endpoint], timeoutMs: 2_000 });
  try {
    return await client.status(member.endpoint, { timeoutMs: 2_000 });
  } catch {
    return undefined;
  } finally {
    client.close();
  }
}

/** leaderByEtcdctl is the member `etcdctl endpoint status` says leads (every running endpoint must answer and agree). */
function leaderByEtcdctl(cluster: TestCluster): MemberProcess | undefined {
  const result = etcdctl(cluster.endpoints(), ['endpoint', 'status', '-w', 'json']);
  if (result.status !== 0) return undefined;
  const statuses = JSON.parse(result.stdout) as { Endpoint: string; Status: { header: { member_id: number }; leader: number } }[];
  const leaders = new Set(statuses.map((status) => status.Status.leader));
  if (statuses.length !== cluster.endpoints().length || leaders.size !== 1) return undefined;
  const leading = statuses.find((status) => status.Status.header.member_id === status.Status.leader);
  return cluster.members.find((member) => member.endpoint === leading?.Endpoint);
}

/** waitCaughtUp waits until `member` has applied what the leader had applied just before. */
async function waitCaughtUp(cluster: TestCluster, member: MemberProcess): Promise<number> {
  let last = '';
  return waitFor(
    `${member.name} to reach the leader's applied index`,
    CATCH_UP_TIMEOUT_MS,
    async () => {
      if (!isRunning(member)) throw new Error(`${member.name} exited with ${member.child.exitCode}:\n${(await settledLog(member, 0)).slice(-6_000)}`);
      const leader = leaderByEtcdctl(cluster);
      const leaderStatus = leader === undefined ? undefined : await statusOf(leader);
      const status = await statusOf(member);
      last = `leader ${leader?.name ?? '?'} applied ${leaderStatus?.raftAppliedIndex ?? '?'}, ${member.name} applied ${status?.raftAppliedIndex ?? '(no answer)'}`;
      return leaderStatus !== undefined && status !== undefined && status.raftAppliedIndex >= leaderStatus.raftAppliedIndex ? status.raftAppliedIndex : undefined;
    },
    () => last,
  );
}

/**
 * refusedExitCode waits at most `timeoutMs` for a member started on a corrupt state machine to
 * exit, and answers its exit code. A member that logs it is serving, or is still running at
 * the deadline, is stopped and fails the test.
 */
async function refusedExitCode(cluster: TestCluster, member: MemberProcess, offset: number, timeoutMs: number): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; Date.now() < deadline && attempt < Math.ceil(timeoutMs / POLL_MS) + 1; attempt += 1) {
    if (!isRunning(member)) return member.exited;
    if (loggedServing(member, offset)) {
      await cluster.stopMember(member);
      assert.fail(`${member.name} started serving a corrupt state machine:\n${logSince(member, offset).slice(-4_000)}`);
    }
    await Promise.race([member.exited, sleep(POLL_MS)]);
  }
  if (!isRunning(member)) return member.exited;
  await cluster.stopMember(member);
  assert.fail(`${member.name} was still running ${timeoutMs} ms after it was started on a corrupt state machine:\n${logSince(member, offset).slice(-4_000)}`);
}

function valueFor(key: string, generation: number): string {
  const filler = createHash('sha256').update(`${key}/${generation}`).digest('hex');
  return `${key}@${generation}:${filler}${filler}`.slice(0, VALUE_BYTES);
}

/** Dataset is what the cluster must hold: every key the test wrote and its last value. */
class Dataset {
  readonly expected = new Map<string, string>();

  /** load writes LOAD_PUTS keys under `prefix`, overwrites the first LOAD_OVERWRITES and deletes the last LOAD_DELETES. */
  async load(client: EtcdClient, prefix: string): Promise<void> {
    const keys = Array.from({ length: LOAD_PUTS }, (_, index) => `${prefix}${index.toString().padStart(7, '0')}`);
    const operations: (() => Promise<void>)[] = [
      ...keys.map((key) => () => this.put(client, key, valueFor(key, 1))),
      ...keys.slice(0, LOAD_OVERWRITES).map((key) => () => this.put(client, key, valueFor(key, 2))),
      ...keys.slice(LOAD_PUTS - LOAD_DELETES).map((key) => async () => {
        const answer = await client.delete(key, { timeoutMs: 10_000 });
        assert.equal(answer.deleted, 1, `deleting ${key}`);
        this.expected.delete(key);
      }),
    ];
    // In phases, so that an overwrite or delete follows its put.
    const phases = [operations.slice(0, LOAD_PUTS), operations.slice(LOAD_PUTS)];
    for (const phase of phases) {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < phase.length) {
          const operation = phase[next] as () => Promise<void>;
          next += 1;
          await operation();
        }
      };
      await Promise.all(Array.from({ length: LOAD_CONCURRENCY }, () => worker()));
    }
  }

  async put(client: EtcdClient, key: string, value: string): Promise<void> {
    await client.put(key, value, { timeoutMs: 10_000 });
    this.expected.set(key, value);
  }

  /** putWithEtcdctl puts one key through etcdctl on `endpoints`. */
  putWithEtcdctl(endpoints: readonly string[], key: string, value: string): void {
    const result = etcdctl(endpoints, ['put', key, value]);
    assert.equal(result.status, 0, `etcdctl put ${key} on ${endpoints.join(',')}: ${result.stderr}`);
    assert.equal(result.stdout.trim(), 'OK');
    this.expected.set(key, value);
  }
}

/** countKeys counts every key through etcdctl on one endpoint (`consistency` l or s). */
function countKeys(endpoint: string, consistency: 'l' | 's'): number {
  const result = etcdctl([endpoint], ['get', '', '--prefix', '--keys-only', '-w', 'json', `--consistency=${consistency}`]);
  assert.equal(result.status, 0, `etcdctl get --prefix "" on ${endpoint}: ${result.stderr}`);
  const answer = JSON.parse(result.stdout) as { count?: number; kvs?: unknown[] };
  assert.equal(answer.kvs?.length ?? 0, answer.count ?? 0, 'etcdctl printed as many keys as it counted');
  return answer.count ?? 0;
}

/** getValue reads one key through etcdctl on one endpoint. */
function getValue(endpoint: string, key: string, consistency: 'l' | 's'): string | undefined {
  const result = etcdctl([endpoint], ['get', key, '--print-value-only', `--consistency=${consistency}`]);
  assert.equal(result.status, 0, `etcdctl get ${key} on ${endpoint}: ${result.stderr}`);
  return result.stdout === '' ? undefined : result.stdout.replace(/\n$/, '');
}

/** assertHolds compares everything a member serves (serializable: its own state) with the dataset. */
async function assertHolds(member: MemberProcess, dataset: Dataset): Promise<void> {
  const client = new EtcdClient({ endpoints: [member.endpoint], timeoutMs: 30_000 });
  let stored: Map<string, string>;
  try {
    const answer = await client.get('', { prefix: true, serializable: true, timeoutMs: 30_000 });
    stored = new Map(answer.kvs.map((kv) => [decoder.decode(kv.key), decoder.decode(kv.value)]));
  } finally {
    client.close();
  }
  const differences: string[] = [];
  for (const [key, value] of dataset.expected) if (stored.get(key) !== value) differences.push(`${key}: ${stored.has(key) ? 'different' : 'missing'}`);
  for (const key of stored.keys()) if (!dataset.expected.has(key)) differences.push(`${key}: extra`);
  assert.equal(differences.length, 0, `${member.name} differs from what was written in ${differences.length} keys (of ${dataset.expected.size}); first: ${differences.slice(0, 5).join('; ')}`);
}

interface HashKvAnswer {
  readonly Endpoint: string;
  readonly HashKV: { readonly header: { readonly revision: number; readonly member_id: number }; readonly hash: number };
}

/** waitHashKvAgree waits (bounded) until `etcdctl endpoint hashkv` answers one hash at one revision on every endpoint. */
async function waitHashKvAgree(endpoints: readonly string[]): Promise<{ hash: number; revision: number }> {
  let last = '';
  return waitFor(
    `etcdctl endpoint hashkv to agree on ${endpoints.join(',')}`,
    CONVERGE_TIMEOUT_MS,
    () => {
      const result = etcdctl(endpoints, ['endpoint', 'hashkv', '-w', 'json']);
      last = `${result.stdout} ${result.stderr}`;
      if (result.status !== 0) return undefined;
      const answers = JSON.parse(result.stdout) as HashKvAnswer[];
      const hashes = new Set(answers.map((answer) => answer.HashKV.hash));
      const revisions = new Set(answers.map((answer) => answer.HashKV.header.revision));
      if (answers.length !== endpoints.length || hashes.size !== 1 || revisions.size !== 1) return undefined;
      return { hash: answers[0]?.HashKV.hash ?? 0, revision: answers[0]?.HashKV.header.revision ?? 0 };
    },
    () => last,
  );
}

interface DigestReportLine {
  readonly type: string;
  readonly command?: { readonly type: string; readonly checkpointIndex: number; readonly memberId: number; readonly digest: string; readonly keyCount: number };
}

function stratakvLog(endpoint: string, fromIndex: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, 'log', '--from-index', String(fromIndex), '-w', 'json', `--endpoints=${endpoint}`], { encoding: 'utf8', timeout: 20_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`stratakv log --from-index ${fromIndex}: ${String(error)} ${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * waitCheckpointAgreed waits (bounded) for an integrity checkpoint after `afterIndex` where every
 * member in `memberIds` reported `keyCount` keys (read from the committed log with `stratakv
 * log`); at every checkpoint after `afterIndex` that they all reported, their digests must be
 * equal: the cross-replica check judged them all and found them equal. It answers the index.
 */
async function waitCheckpointAgreed(endpoint: string, afterIndex: number, memberIds: readonly number[], keyCount: number): Promise<number> {
  let last = '';
  return waitFor(
    `an integrity checkpoint after index ${afterIndex} where members ${memberIds.join(',')} report ${keyCount} keys`,
    CHECKPOINT_TIMEOUT_MS,
    async () => {
      const lines = (await stratakvLog(endpoint, afterIndex + 1)).split('\n').filter((line) => line !== '');
      const reports = new Map<number, Map<number, { digest: string; keyCount: number }>>();
      for (const line of lines) {
        const entry = JSON.parse(line) as DigestReportLine;
        if (entry.type !== 'node' || entry.command?.type !== 'digestReport') continue;
        const { checkpointIndex, memberId, digest } = entry.command;
        if (checkpointIndex <= afterIndex) continue;
        const byMember = reports.get(checkpointIndex) ?? new Map<number, { digest: string; keyCount: number }>();
        byMember.set(memberId, { digest, keyCount: entry.command.keyCount });
        reports.set(checkpointIndex, byMember);
      }
      const judged = [...reports].filter(([, byMember]) => memberIds.every((id) => byMember.has(id)));
      last = JSON.stringify(judged.slice(-3).map(([index, byMember]) => [index, [...byMember]]));
      for (const [index, byMember] of judged) {
        const digests = new Set([...byMember.values()].map((report) => report.digest));
        assert.equal(digests.size, 1, `members reported different digests at checkpoint ${index}: ${JSON.stringify([...byMember])}`);
      }
      const found = judged.find(([, byMember]) => [...byMember.values()].every((report) => report.keyCount === keyCount));
      return found?.[0];
    },
    () => last,
  );
}

function assertNoAlarm(endpoints: readonly string[]): void {
  const list = etcdctl(endpoints, ['alarm', 'list']);
  assert.equal(list.status, 0, list.stderr);
  assert.equal(list.stdout, '', `etcdctl alarm list shows no alarm: ${list.stdout}`);
}

/** ClusterContext is one cluster shared by the tests of a describe, with what it must hold. */
interface ClusterContext {
  readonly cluster: TestCluster;
  readonly options: LaunchOptions;
  readonly dataset: Dataset;
  readonly snapshots: 'none' | 'small';
}

async function startLoadedCluster(options: LaunchOptions, snapshots: ClusterContext['snapshots'], prefix: string): Promise<ClusterContext> {
  const startedMs = Date.now();
  const cluster = await TestCluster.start(3, options);
  clusters.add(cluster);
  const dataset = new Dataset();
  const client = cluster.client(10_000);
  try {
    await dataset.load(client, prefix);
  } finally {
    client.close();
  }
  assert.equal(dataset.expected.size, LOAD_KEYS);
  assert.equal(countKeys(cluster.endpoints()[0] as string, 'l'), LOAD_KEYS);
  console.log(`cluster (${snapshots === 'none' ? 'default --snapshot-count' : '--snapshot-count 300'}) started and loaded with ${LOAD_KEYS} keys in ${Date.now() - startedMs} ms`);
  return { cluster, options, dataset, snapshots };
}

/** Damage describes what a corruption did, and what the refusal must name. */
interface Damage {
  readonly description: string;
  readonly checks: readonly DigestCheck[];
  /** The key the refusal must name, and what the damaged state machine holds for it. */
  readonly rewritten?: { readonly key: string; readonly value: string; readonly original: string };
}

interface CaseOptions {
  readonly label: string;
  readonly victim: MemberProcess;
  /** The victim must be the leader when it is stopped. */
  readonly leader: boolean;
  /** Restart the victim once before the corruption (LevelDB then turns its .log into a table). */
  readonly restartFirst: boolean;
  /** Start it a second time without the flag after the refusal: it must refuse again. */
  readonly refuseTwice: boolean;
  corrupt(stateMachineDir: string): Promise<Damage>;
}

/**
 * runCorruptionCase stops the victim, corrupts it, shows the refusal, the survivors serving,
 * the repair and the convergence (see the file comment).
 */
async function runCorruptionCase(context: ClusterContext, options: CaseOptions): Promise<void> {
  const { cluster, dataset } = context;
  const phases: string[] = [];
  let phaseStartMs = Date.now();
  const phase = (name: string): void => {
    phases.push(`${name} ${Date.now() - phaseStartMs} ms`);
    phaseStartMs = Date.now();
  };
  let victim = options.victim;
  const survivors = cluster.members.filter((member) => member !== victim);
  const survivorEndpoints = survivors.map((member) => member.endpoint);
  const memberIds = await Promise.all(
    cluster.members.map(async (member) => Number((await waitFor(`${member.name}'s status`, 10_000, () => statusOf(member))).memberId)),
  );

  if (options.restartFirst) {
    assert.equal(await cluster.stopMember(victim), 0, `${victim.name} stops cleanly`);
    victim = cluster.restart(victim, context.options);
    await waitCaughtUp(cluster, victim);
    phase('restart');
  }
  await waitCaughtUp(cluster, victim);
  const victimWasLeader = leaderByEtcdctl(cluster) === victim;
  assert.equal(victimWasLeader, options.leader, `${victim.name} ${options.leader ? 'leads' : 'follows'} when it is stopped`);
  const heldWhenStopped = new Map(dataset.expected);
  const victimStatus = await waitFor(`${victim.name}'s status`, 10_000, () => statusOf(victim));
  assert.equal(await cluster.stopMember(victim), 0, `${victim.name} stops cleanly on SIGTERM`);
  const snapDir = join(victim.dataDir, 'member', 'snap');
  const snapshotFiles = existsSync(snapDir) ? readdirSync(snapDir).filter((name) => name.endsWith('.snap')) : [];
  const compactedThrough = Math.max(0, ...snapshotsSaved(victim).map((fields) => Number(fields['compactedThrough'] ?? 0)));
  if (context.snapshots === 'none') {
    assert.deepEqual(snapshotFiles, [], `${victim.name} has no snapshot: its repair replays the whole log`);
  } else {
    // Whether the log is also compacted behind it depends on the write rate (the catch-up
    // tail, src/node/snapshotter.ts); the repair restores the snapshot either way.
    assert.ok(snapshotFiles.length > 0, `${victim.name} has a snapshot file`);
  }

  const stateMachineDir = stateMachineDirectory(victim.dataDir);
  const damage = await options.corrupt(stateMachineDir);
  phase('stop and corrupt');

  // 1. Started with the same flags, it refuses, naming the check and the repair.
  const refusals = options.refuseTwice ? 2 : 1;
  let refusedCheck = '';
  for (let attempt = 0; attempt < refusals; attempt += 1) {
    const offset = logSize(victim);
    victim = cluster.restart(victim, context.options);
    const code = await refusedExitCode(cluster, victim, offset, REFUSED_EXIT_TIMEOUT_MS);
    const output = await settledLog(victim, offset);
    assert.notEqual(code, 0, `${victim.name} exits non-zero on a corrupt state machine (attempt ${attempt + 1}):\n${output}`);
    assert.ok(!loggedServing(victim, offset), `${victim.name} never served:\n${output}`);
    const refusal = REFUSAL.exec(output);
    assert.ok(refusal !== null, `${victim.name} names the integrity check that failed:\n${output}`);
    refusedCheck = refusal[1] as string;
    assert.ok((damage.checks as readonly string[]).includes(refusedCheck), `${damage.description}: the check ${refusedCheck} is one of ${damage.checks.join(', ')}`);
    assert.match(output, /--repair-corrupt-state/, 'the refusal says how to repair');
    if (damage.rewritten !== undefined) assert.ok(output.includes(JSON.stringify(damage.rewritten.key)), `the refusal names the key ${damage.rewritten.key}:\n${output}`);
  }
  phase(`refused ${refusals}x`);

  // 2. Meanwhile the other two serve, linearizably, with every key.
  dataset.putWithEtcdctl(survivorEndpoints, `during/${options.label}`, `written while ${victim.name} was down`);
  for (const endpoint of survivorEndpoints) {
    assert.equal(countKeys(endpoint, 'l'), dataset.expected.size, `${endpoint} counts every key`);
    assert.equal(getValue(endpoint, `during/${options.label}`, 'l'), `written while ${victim.name} was down`);
  }
  if (damage.rewritten !== undefined) {
    for (const endpoint of survivorEndpoints) assert.equal(getValue(endpoint, damage.rewritten.key, 'l'), damage.rewritten.original, 'the survivors serve the original value');
  }
  phase('survivors served');

  // 3. With --repair-corrupt-state it rebuilds from its own snapshot and log and catches up.
  const corruptDir = join(victim.dataDir, 'corrupt');
  const keptBefore = existsSync(corruptDir) ? readdirSync(corruptDir) : [];
  const repairOffset = logSize(victim);
  victim = cluster.restart(victim, { ...context.options, serveArgs: [...(context.options.serveArgs ?? []), '--repair-corrupt-state'] });
  const repairedAt = await waitCaughtUp(cluster, victim);
  const repairLog = logSince(victim, repairOffset);
  assert.ok(repairLog.includes(REPAIR_BANNER), `${victim.name} logs the repair loudly:\n${repairLog.slice(0, 4_000)}`);
  if (context.snapshots === 'small') assert.ok(repairLog.includes(RESTORE_FROM_SNAPSHOT), `${victim.name} restored its own snapshot:\n${repairLog.slice(0, 4_000)}`);
  else assert.ok(!repairLog.includes(RESTORE_FROM_SNAPSHOT), `${victim.name} replayed its log (it has no snapshot)`);
  phase('repaired and caught up');

  // A few more writes, through the repaired member too.
  for (let index = 0; index < 3; index += 1) dataset.putWithEtcdctl([victim.endpoint], `after/${options.label}/${index}`, `after the repair ${index}`);
  dataset.putWithEtcdctl(survivorEndpoints, `after/${options.label}/last`, 'after the repair, last');
  const endpoints = cluster.members.map((member) => member.endpoint);
  const agreed = await waitHashKvAgree(endpoints);
  assert.notEqual(agreed.hash, 0);
  for (const endpoint of endpoints) assert.equal(countKeys(endpoint, 's'), dataset.expected.size, `${endpoint} counts every key on a serializable read`);
  for (const member of cluster.members) await assertHolds(member, dataset);
  if (damage.rewritten !== undefined) {
    for (const endpoint of endpoints) assert.equal(getValue(endpoint, damage.rewritten.key, 's'), damage.rewritten.original, `${endpoint} serves the original value of ${damage.rewritten.key}`);
    assert.equal(getValue(victim.endpoint, damage.rewritten.key, 'l'), damage.rewritten.original);
  }
  const checkpoint = await waitCheckpointAgreed(survivorEndpoints[0] as string, repairedAt, memberIds, dataset.expected.size);
  assertNoAlarm(endpoints);
  phase('converged');

  // 4. The damaged state machine was kept under <data-dir>/corrupt/.
  const kept = readdirSync(corruptDir).filter((name) => !keptBefore.includes(name));
  assert.equal(kept.length, 1, `one damaged state machine kept in ${corruptDir}: ${readdirSync(corruptDir).join(', ')}`);
  const keptDir = join(corruptDir, kept[0] as string);
  assert.ok(existsSync(join(keptDir, 'CURRENT')), `${keptDir} is the LevelDB directory: ${readdirSync(keptDir).join(', ')}`);
  let keptDamage: string;
  if (damage.rewritten !== undefined) {
    keptDamage = `holds the rewritten value of ${damage.rewritten.key}`;
    assert.equal(await readStoredValue(keptDir, damage.rewritten.key), damage.rewritten.value, 'the kept state machine is the damaged one');
  } else {
    // What LevelDB alone would have served from the damaged state machine, had the check at open not refused it.
    keptDamage = await levelDamage(keptDir, heldWhenStopped);
    assert.notEqual(keptDamage, 'none', `${damage.description} left LevelDB serving wrong data (else the test corrupted nothing)`);
  }
  console.log(
    `${options.label}: ${damage.description} on ${victim.name} (${victimWasLeader ? 'the leader' : 'a follower'}, applied ${victimStatus.raftAppliedIndex}, ` +
      `${snapshotFiles.length} snapshot file(s), log compacted through ${compactedThrough}): refused with ${refusedCheck}; repaired at applied ${repairedAt}; ` +
      `hashkv ${agreed.hash} at revision ${agreed.revision} on all three; checkpoint ${checkpoint} agreed; kept state machine: ${keptDamage}; ${phases.join(', ')}`,
  );
}

const skip = etcdctlSkipReason();

describe('corruption of a member with the default --snapshot-count (the repair replays the whole log)', { skip }, () => {
  let context: ClusterContext | undefined;
  before(async () => {
    context = await startLoadedCluster(DEFAULT_SNAPSHOTS, 'none', 'a/');
  });

  test('a healthy cluster with --integrity-check-entries 50 raises no alarm and hashkv agrees', { timeout: 60_000 }, async () => {
    assert.ok(context !== undefined);
    const { cluster, dataset } = context;
    const endpoints = cluster.endpoints();
    const statuses = await Promise.all(cluster.members.map((member) => waitFor(`${member.name}'s status`, 10_000, () => statusOf(member))));
    const memberIds = statuses.map((status) => Number(status.memberId));
    const loadedAt = Math.max(...statuses.map((status) => status.raftAppliedIndex));
    const loaded = await waitHashKvAgree(endpoints);
    // The load committed thousands of entries, with a checkpoint every 50 judged by all three;
    // one more write is followed by a checkpoint (--integrity-check-interval) that sees it.
    dataset.putWithEtcdctl(endpoints, 'healthy/one-more', 'x');
    const checkpoint = await waitCheckpointAgreed(endpoints[0] as string, loadedAt, memberIds, dataset.expected.size);
    const next = await waitHashKvAgree(endpoints);
    // The hash follows the data: the write changed it, equally everywhere.
    assert.notEqual(next.hash, loaded.hash);
    assert.ok(next.revision > loaded.revision);
    assertNoAlarm(endpoints);
    for (const member of cluster.members) assert.equal((await statusOf(member))?.errors.length, 0, `${member.name} reports no problem in Status`);
    console.log(`healthy: hashkv ${loaded.hash} at revision ${loaded.revision} after the load, then ${next.hash} at ${next.revision}; checkpoint ${checkpoint} agreed by all three; no alarm`);
  });

  test("(a) one byte flipped in the middle of a follower's LevelDB .log", { timeout: 90_000 }, async () => {
    assert.ok(context !== undefined);
    const leader = await waitFor('a leader', 20_000, () => leaderByEtcdctl(context?.cluster as TestCluster));
    const followers = context.cluster.members.filter((member) => member !== leader);
    const victim = followers.find((member) => member.name === 'n3') ?? (followers[0] as MemberProcess);
    await runCorruptionCase(context, {
      label: 'log-byte',
      victim,
      leader: false,
      restartFirst: false,
      refuseTwice: true,
      corrupt: (directory) => {
        const flipped = flipLogByte(directory, LOG_BYTES_MIN);
        // LevelDB drops the damaged 32 KiB block and keeps the batches after it: the stored
        // leaves no longer sum to the root the last batch wrote (or the data to the leaves).
        return Promise.resolve({ description: `one byte flipped at ${flipped.offset} of ${flipped.fileBytes} in ${flipped.file.split('/').pop()}`, checks: ['leaves-vs-root', 'data-vs-leaves', 'index-vs-leaves'] });
      },
    });
  });

  test("(c) one value rewritten through LevelDB (valid checksums) on the member that leads", { timeout: 90_000 }, async () => {
    assert.ok(context !== undefined);
    const victim = await waitFor('a leader', 20_000, () => leaderByEtcdctl(context?.cluster as TestCluster));
    // A key that was overwritten, so its counters are not the first ones either.
    const key = 'a/0000123';
    const original = context.dataset.expected.get(key);
    assert.ok(original !== undefined);
    const rewrittenValue = 'ROTTEN: rewritten below stratakv';
    await runCorruptionCase(context, {
      label: 'rewritten-value',
      victim,
      leader: true,
      restartFirst: false,
      refuseTwice: false,
      corrupt: async (directory) => {
        const replaced = await rewriteStoredValue(directory, key, rewrittenValue);
        assert.equal(decoder.decode(replaced.value), original, 'the stopped leader held the value written');
        assert.equal(replaced.version, 2, 'the key was overwritten once');
        return { description: `the value of ${key} rewritten through LevelDB`, checks: ['data-vs-leaves'], rewritten: { key, value: rewrittenValue, original } };
      },
    });
  });
});

describe('corruption of a member with --snapshot-count 300 (the repair restores its own snapshot, then replays the log)', { skip }, () => {
  let context: ClusterContext | undefined;
  before(async () => {
    context = await startLoadedCluster(SMALL_SNAPSHOTS, 'small', 'b/');
  });

  test("(b) 64 bytes flipped in the middle of a follower's largest LevelDB table", { timeout: 120_000 }, async () => {
    assert.ok(context !== undefined);
    const leader = await waitFor('a leader', 20_000, () => leaderByEtcdctl(context?.cluster as TestCluster));
    const followers = context.cluster.members.filter((member) => member !== leader);
    const victim = followers.find((member) => member.name === 'n3') ?? (followers[0] as MemberProcess);
    await runCorruptionCase(context, {
      label: 'table-bytes',
      victim,
      leader: false,
      // The restart turns LevelDB's .log (everything written so far) into a table.
      restartFirst: true,
      refuseTwice: false,
      corrupt: (directory) => {
        const flipped = flipTableBytes(directory, TABLE_FLIP_BYTES, TABLE_BYTES_MIN);
        return Promise.resolve({
          description: `${TABLE_FLIP_BYTES} bytes flipped at ${flipped.offset} of ${flipped.fileBytes} in ${flipped.file.split('/').pop()} (files: ${levelFiles(directory)})`,
          checks: ['read-failed', 'data-vs-leaves', 'index-vs-leaves', 'malformed', 'leaves-vs-root'],
        });
      },
    });
  });
});

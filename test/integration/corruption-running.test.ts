// A member whose LevelDB tables rot while it runs raises CORRUPT and serves nothing, in a real
// 3-process cluster of `stratakv serve` with the real etcdctl (issue 13). The members scrub
// every SCRUB_INTERVAL_MS (--scrub-interval), unthrottled. The cluster holds KEYS values of
// VALUE_BYTES (more than LevelDB's 4 MiB write buffer, so every member has a table file); half
// of the values compress and half do not (in runs of VALUES_OF_A_KIND keys), so LevelDB stores
// both compressed and raw blocks. LevelDB reads without checking block CRCs: a damaged block
// fails to decompress or parse, or reads back as changed data; all must be caught. While the
// victim runs, a run of bytes is flipped every FLIP_STRIDE_BYTES in every table of its state
// machine (the writes land in the page cache that LevelDB's reads see; LevelDB's block cache
// holds only the few blocks that gets read, and a scan does not fill it), and, bounded in time:
//   1. `etcdctl alarm list` on the other two shows `alarm:CORRUPT` for the victim's member id,
//      and only for it, and the victim's log says its scrub found it;
//   2. the victim refuses serializable and linearizable gets and puts with "etcdserver: corrupt
//      cluster"; the other two serve gets (both consistencies) and puts;
//   3. once with a follower as the victim, once with the member that leads when it is damaged
//      (leadership then moves to a healthy member, and writes go on), and once more on a
//      follower with only RAW_FLIP_BYTES flipped inside one raw value, which LevelDB reads back
//      without an error: the scrub must find that the records no longer sum to the digest;
//   4. `stratakv member rebuild --member <victim>` exits 0; `etcdctl alarm list` is empty;
//      `stratakv check` exits 0 with one digest; the repaired member serves a put; `etcdctl
//      endpoint hashkv` agrees on all three at one revision; a serializable `etcdctl get
//      --prefix` of every key gives, on each member, exactly what was written: the damaged
//      member's data never wins.
// A last test: the others overwrite the keys of the victim's damaged table after its alarm,
// and the victim stays up (its state machine stops applying) until it is rebuilt.
//
// Every wait and loop is bounded. Members are stopped by PID in `after`;
// STRATAKV_KEEP_TEST_DATA keeps their directories.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { EtcdClient } from '../../src/client/index.ts';
import { ETCDCTL, etcdctl, etcdctlSkipReason, isRunning, makeWaitFor, TestCluster } from './cluster-process.ts';
import { readableLog } from '../obs/log-records.ts';
import type { EtcdctlResult, MemberProcess } from './cluster-process.ts';
import { flipTableRuns, flipWithinTables, levelFiles, stateMachineDirectory, tableBytes } from './level-corruption.ts';
import type { TableRuns } from './level-corruption.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
const SCRUB_INTERVAL_MS = 3_000;
/** Unthrottled in practice: a scrub of the whole state takes well under a second. */
const SCRUB_RATE_BYTES = 1024 * 1024 * 1024;
const SERVE_ARGS = [`--scrub-interval=${SCRUB_INTERVAL_MS}`, `--scrub-rate-bytes=${SCRUB_RATE_BYTES}`];
const KEYS = 2_000;
const VALUE_BYTES = 3 * 1024;
const PREFIX = 'r/';
const LOAD_CONCURRENCY = 16;
/** LevelDB flushes its 4 MiB write buffer into a table: every member must hold at least this much in tables. */
const TABLE_BYTES_MIN = 2 * 1024 * 1024;
const FLIP_STRIDE_BYTES = 16 * 1024;
const RUNS: TableRuns = { runBytes: 64, strideBytes: FLIP_STRIDE_BYTES, startBytes: 4 * 1024, tailBytes: 64 * 1024 };
const VALUES_OF_A_KIND = 100;
/** A value that does not compress, among others that do not, early (in the first table), read by no get (not in LevelDB's block cache). */
const RAW_VALUE_INDEX = 550;
const RAW_FLIP_OFFSET = 1_024;
const RAW_FLIP_BYTES = 16;
/** About the keys of the first table (4 MiB of LevelDB's write buffer, at VALUE_BYTES a value). */
const OVERWRITTEN_KEYS = 1_300;
/** The scrub's failure when every record reads and decodes but they do not sum to the digest. */
// Changed bytes that LevelDB reads back without an error: the value's own CRC32c (checked on
// every read) refuses it, or, failing that, the records do not sum to the digest.
const DIGEST_MISMATCH = /a stored value fails its CRC32c|the stored keys sum to digest [0-9a-f]+ \(\d+ keys\), the applied state's is [0-9a-f]+ \(\d+ keys\): this member's data is not what it applied/;
const POLL_MS = 250;
const TABLES_TIMEOUT_MS = 15_000;
/** A few scrub cycles: the alarm goes through Raft once a scrub found the damage. */
const ALARM_TIMEOUT_MS = 6 * SCRUB_INTERVAL_MS;
const LEADER_TIMEOUT_MS = 10_000;
const LOG_TIMEOUT_MS = 5_000;
const CONVERGE_TIMEOUT_MS = 20_000;
const REBUILD_TIMEOUT_MS = 60_000;
const ETCDCTL_BUFFER_BYTES = 64 * 1024 * 1024;
const CORRUPT_TEXT = 'etcdserver: corrupt cluster';
const SCRUB_FOUND = 'SCRUB FOUND CORRUPTION';

let cluster: TestCluster | undefined;
after(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const waitFor = makeWaitFor(POLL_MS);

function logSize(member: MemberProcess): number {
  return existsSync(member.logPath) ? statSync(member.logPath).size : 0;
}

/** logSince is what the member printed from byte `offset` of its log, JSON log lines as text (for `includes` and failure messages). */
function logSince(member: MemberProcess, offset: number): string {
  return existsSync(member.logPath) ? readableLog(readFileSync(member.logPath).subarray(offset).toString('utf8')) : '';
}

/** assertRunning fails the test, with the member's log, when its process has exited. */
function assertRunning(member: MemberProcess, offset: number): void {
  if (!isRunning(member)) assert.fail(`${member.name} exited (code ${member.child.exitCode}, signal ${member.child.signalCode}):\n${logSince(member, offset).slice(-6_000)}`);
}

/**
 * valueFor is the value of the key number `index`: those of even hundreds compress, those of
 * odd hundreds do not (in runs, so that LevelDB stores whole blocks of either kind: a block
 * compresses or stays raw as a whole).
 */
function valueFor(index: number): string {
  const key = `${PREFIX}${String(index).padStart(7, '0')}`;
  let text = `${key}:`;
  if (Math.floor(index / VALUES_OF_A_KIND) % 2 === 0) {
    const word = createHash('sha256').update(key).digest('hex').slice(0, 16);
    while (text.length < VALUE_BYTES) text += `${word} compresses well; `;
  } else {
    for (let round = 0; text.length < VALUE_BYTES; round += 1) text += createHash('sha256').update(`${key}/${round}`).digest('hex');
  }
  return text.slice(0, VALUE_BYTES);
}

/** etcdctlLarge runs etcdctl like etcdctl() with room for every key and value in its output. */
function etcdctlLarge(endpoints: readonly string[], args: readonly string[]): EtcdctlResult {
  const result = spawnSync(ETCDCTL, [`--endpoints=${endpoints.join(',')}`, '--command-timeout=20s', ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    encoding: 'utf8',
    timeout: 30_000,
    maxBuffer: ETCDCTL_BUFFER_BYTES,
  });
  assert.equal(result.error, undefined, `etcdctl ${args.join(' ')}: ${String(result.error)}`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** stratakv runs the stratakv CLI with a timeout. */
function stratakv(args: readonly string[], timeoutMs: number): EtcdctlResult {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: ETCDCTL_BUFFER_BYTES });
  assert.equal(result.error, undefined, `stratakv ${args.join(' ')}: ${String(result.error)}`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** memberIds maps each member's name to its id, as `etcdctl member list` gives it (decimal). */
function memberIds(endpoints: readonly string[]): Map<string, number> {
  const result = etcdctl(endpoints, ['member', 'list', '-w', 'json']);
  assert.equal(result.status, 0, result.stderr);
  const answer = JSON.parse(result.stdout) as { members: { ID: number; name: string }[] };
  return new Map(answer.members.map((member) => [member.name, member.ID]));
}

interface StatusAnswer {
  readonly Endpoint: string;
  readonly Status: { readonly header: { readonly member_id: number; readonly revision: number }; readonly leader: number; readonly raftAppliedIndex: number };
}

/** appliedIndex is the applied index `etcdctl endpoint status` reports for one endpoint (a member with a CORRUPT alarm answers Status too). */
function appliedIndex(endpoint: string): number | undefined {
  const result = etcdctl([endpoint], ['endpoint', 'status', '-w', 'json']);
  if (result.status !== 0) return undefined;
  const [status] = JSON.parse(result.stdout) as StatusAnswer[];
  return status?.Status.raftAppliedIndex;
}

/** leaderId is the leader every one of `endpoints` names in `etcdctl endpoint status`, or undefined while they do not agree. */
function leaderId(endpoints: readonly string[]): number | undefined {
  const result = etcdctl(endpoints, ['endpoint', 'status', '-w', 'json']);
  if (result.status !== 0) return undefined;
  const statuses = JSON.parse(result.stdout) as StatusAnswer[];
  const leaders = new Set(statuses.map((status) => status.Status.leader));
  if (statuses.length !== endpoints.length || leaders.size !== 1) return undefined;
  const [leader] = leaders;
  return leader === 0 ? undefined : leader;
}

interface HashKvAnswer {
  readonly Endpoint: string;
  readonly HashKV: { readonly header: { readonly revision: number }; readonly hash: number };
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

/** alarmLines is what `etcdctl alarm list` printed on `endpoints`, one alarm a line. */
function alarmLines(endpoints: readonly string[]): string[] {
  const result = etcdctl(endpoints, ['alarm', 'list']);
  assert.equal(result.status, 0, `etcdctl alarm list on ${endpoints.join(',')}: ${result.stderr}`);
  return result.stdout
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

/** Dataset is what the cluster must hold: every key the test wrote and its last value. */
class Dataset {
  readonly expected = new Map<string, string>();

  /** load puts the first `keys` keys through `members` (again, with `generation`, to overwrite them). */
  async load(members: readonly MemberProcess[], keys: number, generation: string): Promise<void> {
    const client = new EtcdClient({ endpoints: members.map((member) => member.endpoint), timeoutMs: 10_000 });
    try {
      let next = 0;
      const worker = async (): Promise<void> => {
        for (let round = 0; round < keys && next < keys; round += 1) {
          const index = next;
          next += 1;
          const key = `${PREFIX}${String(index).padStart(7, '0')}`;
          const value = `${generation}:${valueFor(index)}`;
          await client.put(key, value, { timeoutMs: 10_000 });
          this.expected.set(key, value);
        }
      };
      await Promise.all(Array.from({ length: LOAD_CONCURRENCY }, () => worker()));
    } finally {
      client.close();
    }
  }

  /** put puts one key through etcdctl on `endpoints`. */
  put(endpoints: readonly string[], key: string, value: string): void {
    const result = etcdctl(endpoints, ['put', key, value]);
    assert.equal(result.status, 0, `etcdctl put ${key} on ${endpoints.join(',')}: ${result.stderr}`);
    assert.equal(result.stdout.trim(), 'OK');
    this.expected.set(key, value);
  }
}

/** servedData is everything one endpoint serves on a serializable `etcdctl get --prefix ""` (its own state). */
function servedData(endpoint: string): Map<string, string> {
  const result = etcdctlLarge([endpoint], ['get', '', '--prefix', '-w', 'json', '--consistency=s']);
  assert.equal(result.status, 0, `etcdctl get --prefix "" on ${endpoint}: ${result.stderr}`);
  const answer = JSON.parse(result.stdout) as { count?: number; kvs?: { key: string; value?: string }[] };
  const kvs = answer.kvs ?? [];
  assert.equal(kvs.length, answer.count ?? 0, 'etcdctl printed as many keys as it counted');
  return new Map(kvs.map((kv) => [Buffer.from(kv.key, 'base64').toString('utf8'), Buffer.from(kv.value ?? '', 'base64').toString('utf8')]));
}

/** assertHolds compares what an endpoint serves with what was written. */
function assertHolds(name: string, served: ReadonlyMap<string, string>, dataset: Dataset): void {
  const differences: string[] = [];
  for (const [key, value] of dataset.expected) if (served.get(key) !== value) differences.push(`${key}: ${served.has(key) ? 'different' : 'missing'}`);
  for (const key of served.keys()) if (!dataset.expected.has(key)) differences.push(`${key}: extra`);
  assert.equal(differences.length, 0, `${name} differs from what was written in ${differences.length} keys (of ${dataset.expected.size}); first: ${differences.slice(0, 5).join('; ')}`);
}

/** assertRefused checks that an etcdctl call on the corrupt member failed with etcd's corrupt-cluster error. */
function assertRefused(result: EtcdctlResult, what: string): void {
  assert.notEqual(result.status, 0, `${what} was served: ${result.stdout}`);
  assert.ok(result.stderr.includes(CORRUPT_TEXT), `${what} was refused with ${JSON.stringify(CORRUPT_TEXT)}: ${result.stderr}`);
}

interface CheckJson {
  readonly verdict: string;
  readonly members: readonly { readonly name: string; readonly reported: boolean; readonly digest?: string; readonly keyCount?: number }[];
}

/** Damage says what was damaged, and what the scrub must report when only one kind of failure is possible. */
interface Damage {
  readonly description: string;
  readonly reason?: RegExp;
}

interface CaseOptions {
  readonly label: string;
  readonly victim: MemberProcess;
  readonly leads: boolean;
  /** Overwrite the keys of the first table through the others after the alarm (the victim applies them too). */
  readonly overwrite?: boolean;
  damage(directory: string): Damage;
}

/** damageEverywhere flips RUNS in every table of a state machine: blocks that no longer decompress or parse, and values that changed. */
function damageEverywhere(directory: string): Damage {
  const files = levelFiles(directory);
  const damage = flipTableRuns(directory, RUNS);
  assert.ok(damage.tableBytes >= TABLE_BYTES_MIN, `${damage.tableBytes} bytes of tables: ${files}`);
  assert.ok(damage.runs >= 32, `${damage.runs} runs flipped in ${files}`);
  return { description: `${damage.runs} runs of ${RUNS.runBytes} bytes flipped in ${damage.tables} table(s) of ${damage.tableBytes} bytes (${files})` };
}

/** runCase damages the victim's tables while it runs and shows the alarm, the refusals, the survivors serving, the rebuild and the convergence. */
async function runCase(running: TestCluster, dataset: Dataset, options: CaseOptions): Promise<void> {
  const { victim, label } = options;
  const phases: string[] = [];
  let phaseStartMs = Date.now();
  const phase = (name: string): void => {
    phases.push(`${name} ${Date.now() - phaseStartMs} ms`);
    phaseStartMs = Date.now();
  };
  const endpoints = running.members.map((member) => member.endpoint);
  const survivors = running.members.filter((member) => member !== victim);
  const survivorEndpoints = survivors.map((member) => member.endpoint);
  const ids = memberIds(endpoints);
  const victimId = ids.get(victim.name);
  assert.ok(victimId !== undefined, `${victim.name} is listed by etcdctl member list`);
  const leaderBefore = await waitFor('a leader all three agree on', LEADER_TIMEOUT_MS, () => leaderId(endpoints));
  assert.equal(leaderBefore === victimId, options.leads, `${victim.name} ${options.leads ? 'leads' : 'follows'} when it is damaged`);
  assert.deepEqual(alarmLines(endpoints), [], 'no alarm before the damage');
  const offset = logSize(victim);

  // The damage, while the victim runs.
  const damage = options.damage(stateMachineDirectory(victim.dataDir));
  assertRunning(victim, offset);
  phase('damage');

  // 1. Its scrub finds it: a CORRUPT alarm for the victim, and for no one else.
  let lines: string[] = [];
  await waitFor(
    `a CORRUPT alarm for ${victim.name}`,
    ALARM_TIMEOUT_MS,
    () => {
      assertRunning(victim, offset);
      lines = alarmLines(survivorEndpoints);
      return lines.length > 0 ? true : undefined;
    },
    () => `${victim.name} logged:\n${logSince(victim, offset).slice(-4_000)}`,
  );
  assert.deepEqual(lines, [`memberID:${victimId} alarm:CORRUPT`], `etcdctl alarm list names ${victim.name} (${victimId}) alone`);
  // The harness copies the member's output to its log file when this process's event loop
  // runs (not during the synchronous etcdctl calls): the line may land after the alarm.
  const found = await waitFor(
    `${victim.name} to log that its scrub found the damage`,
    LOG_TIMEOUT_MS,
    () => logSince(victim, offset).split('\n').find((line) => line.includes(SCRUB_FOUND)),
    () => logSince(victim, offset).slice(-4_000),
  );
  if (damage.reason !== undefined) assert.match(found, damage.reason, 'the scrub names the failure');
  phase('alarm');

  // 2. The victim serves nothing (once it applied its own alarm); the others serve.
  const probeKey = `${PREFIX}0000001`;
  await waitFor(`${victim.name} to refuse a serializable get`, 5_000, () => (etcdctl([victim.endpoint], ['get', probeKey, '--consistency=s']).status !== 0 ? true : undefined));
  assertRefused(etcdctl([victim.endpoint], ['get', probeKey, '--consistency=s']), `a serializable get on ${victim.name}`);
  assertRefused(etcdctl([victim.endpoint], ['get', probeKey, '--consistency=l']), `a linearizable get on ${victim.name}`);
  assertRefused(etcdctl([victim.endpoint], ['get', PREFIX, '--prefix', '--keys-only', '--consistency=s']), `a range on ${victim.name}`);
  assertRefused(etcdctl([victim.endpoint], ['put', `w/${label}/refused`, 'x']), `a put on ${victim.name}`);

  // 3. Leadership is (or stays) with a healthy member, and writes go on there.
  const leaderAfter = await waitFor(`a leader other than ${victim.name}`, LEADER_TIMEOUT_MS, () => {
    const leader = leaderId(endpoints);
    return leader !== undefined && leader !== victimId ? leader : undefined;
  });
  for (const member of survivors) {
    dataset.put([member.endpoint], `w/${label}/${member.name}`, `written on ${member.name} while ${victim.name} is corrupt`);
    for (const consistency of ['s', 'l']) {
      const got = etcdctl([member.endpoint], ['get', probeKey, '--print-value-only', `--consistency=${consistency}`]);
      assert.equal(got.status, 0, `a ${consistency} get on ${member.name}: ${got.stderr}`);
      assert.equal(got.stdout.replace(/\n$/, ''), dataset.expected.get(probeKey));
    }
  }
  assertRunning(victim, offset);
  phase('refused and served');
  if (options.overwrite === true) {
    await dataset.load(survivors, OVERWRITTEN_KEYS, 'overwritten');
    const applied = await waitFor(`${victim.name} to apply the overwrites`, CONVERGE_TIMEOUT_MS, () => {
      assertRunning(victim, offset);
      const indexes = endpoints.map((endpoint) => appliedIndex(endpoint));
      const [mine, ...others] = indexes;
      return mine !== undefined && others.every((other) => other !== undefined && mine >= other) ? mine : undefined;
    });
    phase(`${OVERWRITTEN_KEYS} keys overwritten, applied to ${applied}`);
  }

  // 4. The rebuild takes a healthy leader's snapshot and clears the alarm.
  const rebuild = stratakv(['member', 'rebuild', `--endpoints=${endpoints.join(',')}`, `--member=${victim.name}`, '--command-timeout=50s'], REBUILD_TIMEOUT_MS);
  assert.equal(rebuild.status, 0, `stratakv member rebuild --member ${victim.name} exits 0:\n${rebuild.stdout}\n${rebuild.stderr}\n${victim.name} logged:\n${logSince(victim, offset).slice(-4_000)}`);
  phase('rebuild');
  await waitFor('etcdctl alarm list to be empty on every member', 5_000, () => (endpoints.every((endpoint) => alarmLines([endpoint]).length === 0) ? true : undefined));
  const check = stratakv(['check', `--endpoints=${endpoints.join(',')}`, '-w', 'json'], 30_000);
  assert.equal(check.status, 0, `stratakv check exits 0:\n${check.stdout}\n${check.stderr}`);
  const verdict = JSON.parse(check.stdout) as CheckJson;
  assert.equal(verdict.verdict, 'agreed');
  assert.equal(verdict.members.length, 3);
  assert.ok(verdict.members.every((member) => member.reported), `every member reported: ${check.stdout}`);
  assert.equal(new Set(verdict.members.map((member) => member.digest)).size, 1, `one digest: ${check.stdout}`);
  dataset.put([victim.endpoint], `w/${label}/repaired`, `written on ${victim.name} after its rebuild`);
  const agreed = await waitHashKvAgree(endpoints);
  const served = running.members.map((member) => ({ member, data: servedData(member.endpoint) }));
  for (const { member, data } of served) assertHolds(member.name, data, dataset);
  phase('converged');
  console.log(
    `${label}: ${damage.description} on ${victim.name} (${options.leads ? 'the leader' : 'a follower'}); ` +
      `${found.trim().slice(0, 500)}; leader after ${leaderAfter.toString(16)}; ` +
      `rebuilt; check agreed on ${verdict.members[0]?.digest ?? '?'} (${verdict.members[0]?.keyCount ?? '?'} keys); hashkv ${agreed.hash} at revision ${agreed.revision} on all three; ${phases.join(', ')}`,
  );
}

/** chooseVictim picks the member that leads now, or a member that follows. */
async function chooseVictim(role: 'the leader' | 'a follower'): Promise<{ running: TestCluster; victim: MemberProcess }> {
  const running = cluster;
  assert.ok(running !== undefined, 'the cluster runs');
  const endpoints = running.members.map((member) => member.endpoint);
  const leader = await waitFor('a leader', LEADER_TIMEOUT_MS, () => leaderId(endpoints));
  const ids = memberIds(endpoints);
  const victim = running.members.find((member) => (ids.get(member.name) === leader) === (role === 'the leader'));
  assert.ok(victim !== undefined, `${role} is one of ${[...ids.keys()].join(', ')}`);
  return { running, victim };
}

const skip = etcdctlSkipReason();

describe('a member whose LevelDB tables are damaged while it runs (the scrubber)', { skip }, () => {
  const dataset = new Dataset();
  before(async () => {
    const startedMs = Date.now();
    cluster = await TestCluster.start(3, { serveArgs: SERVE_ARGS });
    await dataset.load(cluster.members, KEYS, 'loaded');
    assert.equal(dataset.expected.size, KEYS);
    const running = cluster;
    // LevelDB writes its full write buffer to a table in the background.
    await waitFor(
      'every member to hold its data in LevelDB tables',
      TABLES_TIMEOUT_MS,
      () => (running.members.every((member) => tableBytes(stateMachineDirectory(member.dataDir)) >= TABLE_BYTES_MIN) ? true : undefined),
      () => running.members.map((member) => `${member.name}: ${levelFiles(stateMachineDirectory(member.dataDir))}`).join('; '),
    );
    console.log(`cluster started and loaded with ${KEYS} keys of ${VALUE_BYTES} bytes in ${Date.now() - startedMs} ms`);
  });

  test('a follower raises CORRUPT, serves nothing, and is rebuilt', { timeout: 60_000 }, async () => {
    const { running, victim } = await chooseVictim('a follower');
    await runCase(running, dataset, { label: 'follower', victim, leads: false, damage: damageEverywhere });
  });

  test('the leader raises CORRUPT, hands leadership over, serves nothing, and is rebuilt', { timeout: 60_000 }, async () => {
    const { running, victim } = await chooseVictim('the leader');
    await runCase(running, dataset, { label: 'leader', victim, leads: true, damage: damageEverywhere });
  });

  test('a follower with one value changed in a raw table block (LevelDB reads it without an error) is caught by its CRC or the digest', { timeout: 60_000 }, async () => {
    const { running, victim } = await chooseVictim('a follower');
    const key = `${PREFIX}${String(RAW_VALUE_INDEX).padStart(7, '0')}`;
    await runCase(running, dataset, {
      label: 'raw-value',
      victim,
      leads: false,
      damage: (directory) => {
        const value = dataset.expected.get(key);
        assert.ok(value !== undefined);
        const files = levelFiles(directory);
        const flipped = flipWithinTables(directory, new TextEncoder().encode(value), RAW_FLIP_OFFSET, RAW_FLIP_BYTES);
        assert.ok(flipped >= 1, `the value of ${key} is stored as it is in a table: ${files}`);
        return { description: `${RAW_FLIP_BYTES} bytes of the value of ${key} flipped in ${flipped} table block(s) (${files})`, reason: DIGEST_MISMATCH };
      },
    });
  });

  // The member keeps taking part in Raft after its alarm, and an overwrite whose read of the
  // old value hits a damaged block stops its state machine (outcomes unknown, nothing served)
  // instead of aborting the process, so `stratakv member rebuild` can reach it.
  test(
    'a follower with a CORRUPT alarm stays up while the others overwrite its damaged keys, and is rebuilt',
    { timeout: 60_000 },
    async () => {
      const { running, victim } = await chooseVictim('a follower');
      await runCase(running, dataset, { label: 'overwrite', victim, leads: false, overwrite: true, damage: damageEverywhere });
    },
  );
});

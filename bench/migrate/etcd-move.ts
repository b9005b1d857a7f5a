// One etcd run of bench:migrate: etcd's own way to move a cluster, scripted as an operator
// would with etcdctl (Debian's etcd 3.4.23), under the same load and the same leader watch as
// stratakv (timeline.ts):
//   for each new member in turn (etcd 3.4 allows one learner at a time, and has no
//   --experimental-max-learners):
//     `etcdctl member add NAME --peer-urls=URL --learner`, start the member with
//     `--initial-cluster-state existing` and the cluster string member add printed, then
//     `etcdctl member promote ID` every PROMOTE_PAUSE_MS until etcd accepts it (it refuses a
//     learner that is not yet in sync with the leader);
//   then `etcdctl move-leader` to the first new member, and `etcdctl member remove` of each old
//   member (a removed etcd member stops by itself; the bench waits for its process to exit).
// The three old members hold the same state as stratakv's (state.ts), with
// --quota-backend-bytes raised to QUOTA_BACKEND_BYTES: bbolt keeps a 4 KiB value in two pages,
// so 1 GiB of values takes about 2 GiB, etcd's default quota.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { EtcdClient } from '../../src/client/index.ts';
import type { Member } from '../cluster/launchers.ts';
import { collectOutput, exited, freePorts, makeTempFolder, removeTempFolder, sleep, startChild, stopChild, tailOf, type ChildOutput } from '../cluster/processes.ts';
import { hostPort } from '../cluster/rpc.ts';
import type { Interval } from './analysis.ts';
import { checkAcknowledged } from './acknowledged.ts';
import { dbSizeOf, loadState, nicedCommand, type RunSettings, type SystemRun } from './state.ts';
import { MOVE_MS_MAX, runTimeline, type MoveOutcome } from './timeline.ts';
import { describeZoneBytes, openZone } from './zones.ts';

/** ETCD_BINARY and ETCDCTL_BINARY are Debian's etcd-server and etcd-client. */
export const ETCD_BINARY = '/usr/bin/etcd';
export const ETCDCTL_BINARY = '/usr/bin/etcdctl';
/** QUOTA_BACKEND_BYTES: etcd's recommended maximum, 8 GiB (see the file comment). */
const QUOTA_BACKEND_BYTES = 8 * 2 ** 30;
const CLUSTER_SIZE = 3;
const NEW_MEMBERS = 3;
const START_TIMEOUT_MS = 60_000;
const POLL_MS = 100;
const ETCDCTL_TIMEOUT_MS = 60_000;
const ETCDCTL_COMMAND_TIMEOUT = '30s';
const PROMOTE_PAUSE_MS = 500;
const STEP_ATTEMPTS_MAX = 20;
const STEP_PAUSE_MS = 500;
/** START_ATTEMPTS_MAX bounds how often one new member is started. */
const START_ATTEMPTS_MAX = 5;
/** OLD_EXIT_WAIT_MS: how long a removed member is given to stop by itself before the bench stops it. */
const OLD_EXIT_WAIT_MS = 5_000;

/** etcdUnavailable says why the etcd run cannot happen here, or undefined. */
export function etcdUnavailable(): string | undefined {
  if (!existsSync(ETCD_BINARY)) return `${ETCD_BINARY} is not installed (apt-get install etcd-server)`;
  if (!existsSync(ETCDCTL_BINARY)) return `${ETCDCTL_BINARY} is not installed (apt-get install etcd-client)`;
  return undefined;
}

interface EtcdProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly endpoint: string;
  readonly logPath: string;
}

function etcdArgs(spec: { name: string; dataDir: string; clientUrl: string; listenPeerUrl: string; advertisePeerUrl: string; initialCluster: string; state: 'new' | 'existing'; token: string }): string[] {
  return [
    '--name', spec.name,
    '--data-dir', spec.dataDir,
    '--listen-client-urls', spec.clientUrl,
    '--advertise-client-urls', spec.clientUrl,
    '--listen-peer-urls', spec.listenPeerUrl,
    '--initial-advertise-peer-urls', spec.advertisePeerUrl,
    '--initial-cluster', spec.initialCluster,
    '--initial-cluster-state', spec.state,
    '--initial-cluster-token', spec.token,
    '--quota-backend-bytes', String(QUOTA_BACKEND_BYTES),
    '--logger', 'zap',
    '--log-level', 'warn',
  ];
}

// etcdctl runs Debian's etcdctl (API v3) without blocking the bench's event loop (the leader watch runs there).
async function etcdctl(endpoints: readonly string[], args: readonly string[]): Promise<ChildOutput> {
  const child = spawn(ETCDCTL_BINARY, [`--endpoints=${endpoints.join(',')}`, `--command-timeout=${ETCDCTL_COMMAND_TIMEOUT}`, ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return collectOutput(child, ETCDCTL_TIMEOUT_MS);
}

// etcdctlStep runs one etcdctl command until it succeeds, at most STEP_ATTEMPTS_MAX times (etcd refuses a change for a moment now and then: "unhealthy cluster").
async function etcdctlStep(endpoints: readonly string[], args: readonly string[], notes: string[]): Promise<ChildOutput> {
  const refusals = new Map<string, number>();
  let last: ChildOutput | undefined;
  for (let attempt = 1; attempt <= STEP_ATTEMPTS_MAX; attempt += 1) {
    last = await etcdctl(endpoints, args);
    if (last.code === 0) break;
    const reason = last.stderr.trim().split('\n').pop() ?? '';
    refusals.set(reason, (refusals.get(reason) ?? 0) + 1);
    await sleep(STEP_PAUSE_MS);
  }
  const what = `etcdctl ${args.slice(0, 3).join(' ')}`;
  const refused = [...refusals].map(([reason, count]) => `${count} × ${reason}`).join('; ');
  if (last?.code !== 0) throw new Error(`${what} failed ${STEP_ATTEMPTS_MAX} times: ${refused}`);
  if (refusals.size > 0) notes.push(`${what}: refused before it was accepted, every ${STEP_PAUSE_MS} ms: ${refused}`);
  return last;
}

// addLearner runs `etcdctl member add NAME --peer-urls=URL --learner` until it succeeds; an
// attempt whose answer was lost (a timeout) may have added the member already, which the next
// attempt hears as "Peer URLs already exists": then the member list says its id, and the
// cluster string is made from the list as etcdctl would print it.
async function addLearner(voters: readonly string[], spec: { readonly name: string; readonly advertisePeerUrl: string }, notes: string[]): Promise<{ id: string; initialCluster: string }> {
  const refusals = new Map<string, number>();
  for (let attempt = 1; attempt <= STEP_ATTEMPTS_MAX; attempt += 1) {
    const answer = await etcdctl(voters, ['member', 'add', spec.name, `--peer-urls=${spec.advertisePeerUrl}`, '--learner']);
    const refused = [...refusals].map(([reason, count]) => `${count} × ${reason}`).join('; ');
    if (answer.code === 0) {
      const id = /Member\s+([0-9a-f]+)\s+added/.exec(answer.stdout)?.[1];
      const initialCluster = /ETCD_INITIAL_CLUSTER="([^"]*)"/.exec(answer.stdout)?.[1];
      if (id === undefined || initialCluster === undefined) throw new Error(`etcdctl member add printed no member id or cluster:\n${answer.stdout}`);
      if (refusals.size > 0) notes.push(`etcdctl member add ${spec.name}: refused before it was accepted, every ${STEP_PAUSE_MS} ms: ${refused}`);
      return { id, initialCluster };
    }
    const reason = answer.stderr.trim().split('\n').pop() ?? '';
    refusals.set(reason, (refusals.get(reason) ?? 0) + 1);
    if (/already exists/i.test(reason)) {
      const client = new EtcdClient({ endpoints: voters, timeoutMs: 10_000 });
      try {
        const members = await client.memberList();
        const added = members.find((member) => member.peerUrls.includes(spec.advertisePeerUrl));
        if (added !== undefined) {
          notes.push(`etcdctl member add ${spec.name}: an earlier attempt had added it (${refused}); its id and the cluster string come from the member list`);
          const initialCluster = members.map((member) => `${member === added ? spec.name : member.name}=${member.peerUrls[0] ?? ''}`).join(',');
          return { id: added.id.toString(16), initialCluster };
        }
      } finally {
        client.close();
      }
    }
    await sleep(STEP_PAUSE_MS);
  }
  throw new Error(`etcdctl member add ${spec.name} failed ${STEP_ATTEMPTS_MAX} times: ${[...refusals].map(([reason, count]) => `${count} × ${reason}`).join('; ')}`);
}

// lastError is the last error a member's log names (its "error" field), for a note.
function lastError(logPath: string): string {
  const lines = tailOf(logPath, 5).split('\n').reverse();
  for (const line of lines) {
    const match = /"error":"((?:[^"\\]|\\.)*)"/.exec(line);
    if (match?.[1] !== undefined) return match[1].replace(/\{ClusterID:.*\}:/, '{…}:').slice(0, 200);
  }
  return 'no error logged';
}

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** runEtcd runs one etcd move (see the file comment); every process it started is stopped on the way out. */
export async function runEtcd(settings: RunSettings): Promise<SystemRun> {
  const { log } = settings;
  const folder = makeTempFolder('stratakv-bench-migrate-etcd-');
  const processes: EtcdProcess[] = [];
  let zone: Awaited<ReturnType<typeof openZone>> | undefined;
  try {
    const version = (await new Promise<string>((resolve) => {
      const child = spawn(ETCD_BINARY, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let text = '';
      child.stdout?.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.once('close', () => resolve(text.split('\n')[0]?.trim() ?? 'etcd'));
    })) || 'etcd';
    const token = `bench-migrate-${process.pid}-${Date.now()}`;
    const ports = await freePorts(2 * CLUSTER_SIZE);
    const names = Array.from({ length: CLUSTER_SIZE }, (_, index) => `n${index + 1}`);
    const peerUrls = names.map((_, index) => `http://127.0.0.1:${ports[2 * index + 1] ?? 0}`);
    const initialCluster = names.map((name, index) => `${name}=${peerUrls[index] ?? ''}`).join(',');
    for (const [index, name] of names.entries()) {
      const clientUrl = `http://127.0.0.1:${ports[2 * index] ?? 0}`;
      const logPath = join(folder, `${name}.log`);
      const args = etcdArgs({ name, dataDir: join(folder, `${name}.data`), clientUrl, listenPeerUrl: peerUrls[index] ?? '', advertisePeerUrl: peerUrls[index] ?? '', initialCluster, state: 'new', token });
      processes.push({ name, child: startChild(ETCD_BINARY, args, logPath), endpoint: hostPort(clientUrl), logPath });
    }
    const members = await waitForMembers(processes);
    const leader = await leaderOf(members);
    log(`  ${version}, ${CLUSTER_SIZE} members (--quota-backend-bytes ${QUOTA_BACKEND_BYTES}); leader ${leader.name}`);
    const loaded = await loadState(members, leader, settings.keys, settings.valueBytes, log);
    const dbSizeBytes = await dbSizeOf(hostPort(leader.endpoint));

    const newPorts = await freePorts(2 * NEW_MEMBERS);
    const newPeerPorts = Array.from({ length: NEW_MEMBERS }, (_, index) => newPorts[2 * index + 1] ?? 0);
    zone = await openZone(newPeerPorts, settings.zoneDelayMs);
    const newSpecs = Array.from({ length: NEW_MEMBERS }, (_, index) => ({
      name: `b${index + 1}`,
      clientUrl: `http://127.0.0.1:${newPorts[2 * index] ?? 0}`,
      listenPeerUrl: `http://127.0.0.1:${newPeerPorts[index] ?? 0}`,
      advertisePeerUrl: zone?.advertisePeerUrls[index] ?? '',
    }));
    const oldEndpoints = members.map((member) => hostPort(member.endpoint));
    const keyPrefix = `load/${Date.now().toString(36)}`;
    const exitedBySelf: string[] = [];

    const timeline = await runTimeline({
      load: settings.load,
      loadEndpoints: oldEndpoints,
      watchEndpoints: [...oldEndpoints, ...newSpecs.map((spec) => hostPort(spec.clientUrl))],
      keyPrefix,
      warmupMs: settings.warmupMs,
      beforeMs: settings.beforeMs,
      move: () => manualProcedure({ members, newSpecs, folder, token, processes, exitedBySelf, nice: settings.newMembersNice, log }),
      watched: () => [
        ...processes.map((proc) => ({ group: proc.name.startsWith('n') ? 'old members' : 'new members', pid: proc.child.pid ?? 0 })),
        ...(zone?.pid === undefined ? [] : [{ group: 'zone proxy', pid: zone.pid }]),
      ],
      log,
    });
    const newEndpoints = newSpecs.map((spec) => hostPort(spec.clientUrl));
    const acknowledged = await checkAcknowledged(newEndpoints, keyPrefix, timeline.report);
    const notes: string[] = [];
    notes.push(...(await describeZoneBytes(zone)));
    return {
      system: 'etcd',
      description: `${version}, ${CLUSTER_SIZE} members → 3 new members, by etcdctl member add --learner / promote / move-leader / member remove`,
      keys: settings.keys,
      valueBytes: settings.valueBytes,
      preloadSeconds: loaded.seconds,
      dbSizeBytes,
      timeline,
      acknowledged,
      oldMembers: `${exitedBySelf.length} of ${members.length} old members exited by themselves within ${OLD_EXIT_WAIT_MS / 1000} s of their member remove${exitedBySelf.length < members.length ? ' (the procedure stopped the others, SIGTERM)' : ''}`,
      notes,
    };
  } finally {
    await Promise.all(processes.map((proc) => stopChild(proc.child)));
    await zone?.close();
    removeTempFolder(folder);
  }
}

async function waitForMembers(processes: readonly EtcdProcess[]): Promise<Member[]> {
  const client = new EtcdClient({ endpoints: processes.map((proc) => proc.endpoint), timeoutMs: 1_000 });
  const deadline = Date.now() + START_TIMEOUT_MS;
  try {
    while (true) {
      const dead = processes.find((proc) => proc.child.exitCode !== null);
      if (dead !== undefined) throw new Error(`etcd ${dead.name} exited while starting:\n${tailOf(dead.logPath)}`);
      const results = await client.statusAll();
      if (results.every((result) => result.ok && result.status.leaderId !== 0n)) {
        return processes.map((proc, index) => {
          const result = results[index];
          return { name: proc.name, id: result?.ok === true ? result.status.memberId : 0n, endpoint: `http://${proc.endpoint}`, pid: proc.child.pid ?? 0, logPath: proc.logPath };
        });
      }
      if (Date.now() > deadline) throw new Error(`etcd: no leader within ${START_TIMEOUT_MS} ms`);
      await sleep(POLL_MS);
    }
  } finally {
    client.close();
  }
}

async function leaderOf(members: readonly Member[]): Promise<Member> {
  const client = new EtcdClient({ endpoints: members.map((member) => hostPort(member.endpoint)), timeoutMs: 5_000 });
  try {
    const results = await client.statusAll();
    const leaderId = results.find((result) => result.ok)?.status.leaderId;
    const leader = members.find((member) => member.id === leaderId);
    if (leader === undefined) throw new Error('etcd: no leader found');
    return leader;
  } finally {
    client.close();
  }
}

interface ProcedureOptions {
  readonly members: readonly Member[];
  readonly newSpecs: readonly { name: string; clientUrl: string; listenPeerUrl: string; advertisePeerUrl: string }[];
  readonly folder: string;
  readonly token: string;
  /** nice: the new members' nice value (RunSettings.newMembersNice). */
  readonly nice: number;
  readonly processes: EtcdProcess[];
  /** exitedBySelf: the old members whose process ended by itself after member remove. */
  readonly exitedBySelf: string[];
  readonly log: (line: string) => void;
}

// manualProcedure is the scripted procedure of the file comment; it records each step's times.
async function manualProcedure(options: ProcedureOptions): Promise<MoveOutcome> {
  const steps: Interval[] = [];
  const catchUp: Interval[] = [];
  const notes: string[] = [];
  const voters = options.members.map((member) => hostPort(member.endpoint));
  const newIds: string[] = [];
  const deadlineMs = epochMs() + MOVE_MS_MAX;
  const step = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const fromMs = epochMs();
    const result = await work();
    steps.push({ name, fromMs, toMs: epochMs() });
    return result;
  };
  try {
    for (const spec of options.newSpecs) {
      const addFromMs = epochMs();
      const { id, initialCluster } = await step(`member add --learner ${spec.name}`, () => addLearner(voters, spec, notes));
      const logPath = join(options.folder, `${spec.name}.log`);
      const dataDir = join(options.folder, `${spec.name}.data`);
      const startMember = (): EtcdProcess => {
        const args = etcdArgs({ name: spec.name, dataDir, clientUrl: spec.clientUrl, listenPeerUrl: spec.listenPeerUrl, advertisePeerUrl: spec.advertisePeerUrl, initialCluster, state: 'existing', token: options.token });
        const niced = nicedCommand(options.nice, ETCD_BINARY, args);
        const started: EtcdProcess = { name: spec.name, child: startChild(niced.command, niced.args, logPath), endpoint: hostPort(spec.clientUrl), logPath };
        options.processes.push(started);
        return started;
      };
      let member = await step(`start ${spec.name}`, () => Promise.resolve(startMember()));
      let starts = 1;
      const tries = await step(`member promote ${spec.name}`, async () => {
        for (let attempt = 1; epochMs() < deadlineMs; attempt += 1) {
          // A member that could not start (it may have read the member list from a peer that had
          // not applied its addition yet: "member count is unequal") is started again, as an operator would.
          if (member.child.exitCode !== null || member.child.signalCode !== null) {
            if (starts >= START_ATTEMPTS_MAX) throw new Error(`${spec.name} exited ${starts} times:\n${tailOf(logPath, 3)}`);
            notes.push(`${spec.name} exited after its start (${lastError(logPath)}); started again`);
            rmSync(dataDir, { recursive: true, force: true });
            member = startMember();
            starts += 1;
          }
          const answer = await etcdctl(voters, ['member', 'promote', id]);
          if (answer.code === 0) return attempt;
          const reason = answer.stderr.trim().split('\n').pop() ?? '';
          if (!/in sync with leader/.test(reason)) notes.push(`member promote ${spec.name} attempt ${attempt}: ${reason}`);
          await sleep(PROMOTE_PAUSE_MS);
        }
        throw new Error(`${spec.name} was not promoted within ${MOVE_MS_MAX} ms`);
      });
      const promotedMs = epochMs();
      catchUp.push({ name: `${spec.name}: member add → promoted`, fromMs: addFromMs, toMs: promotedMs });
      notes.push(`${spec.name} (${id}): added, started${starts > 1 ? ` (${starts} times)` : ''} and promoted in ${((promotedMs - addFromMs) / 1000).toFixed(1)} s, ${tries} promote attempt(s)`);
      options.log(`    ${spec.name} promoted after ${((promotedMs - addFromMs) / 1000).toFixed(1)} s (${tries} promote attempts)`);
      voters.push(hostPort(spec.clientUrl));
      newIds.push(id);
    }
    const target = newIds[0] ?? '';
    await step('move-leader', () => etcdctlStep(voters, ['move-leader', target], notes));
    const newEndpoints = options.newSpecs.map((spec) => hostPort(spec.clientUrl));
    for (const member of options.members) {
      await step(`member remove ${member.name}`, async () => {
        await etcdctlStep(newEndpoints, ['member', 'remove', member.id.toString(16)], notes);
        // A removed member stops by itself; an operator stops one that does not.
        const proc = options.processes.find((candidate) => candidate.name === member.name);
        if (proc === undefined) return;
        let timer: NodeJS.Timeout | undefined;
        const bySelf = await Promise.race([exited(proc.child).then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), OLD_EXIT_WAIT_MS)))]);
        clearTimeout(timer);
        if (bySelf) options.exitedBySelf.push(member.name);
        else await stopChild(proc.child);
      });
    }
    return { ok: true, steps, catchUp, notes };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error), steps, catchUp, notes };
  }
}

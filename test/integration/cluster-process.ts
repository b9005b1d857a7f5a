// Real `stratakv serve` processes on 127.0.0.1 for integration tests: start a cluster, add a
// member, kill one with SIGKILL, stop them all (by PID, SIGTERM then SIGKILL), and run the
// real `etcdctl` against them. Every wait is bounded.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, createWriteStream, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdClient } from '../../src/client/index.ts';
import { assert } from '../../src/util/assert.ts';
import { freePorts } from '../client/etcd-process.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
/** START_TIMEOUT_MS bounds how long a cluster may take to elect a leader. */
export const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 50;

/** ETCDCTL is Debian's etcdctl when installed. */
export const ETCDCTL = '/usr/bin/etcdctl';

/** requireEtcdctl tells whether tests may run; in CI a missing etcdctl is a failure, not a skip. */
export function etcdctlSkipReason(): string | undefined {
  if (existsSync(ETCDCTL)) return undefined;
  if (process.env.CI === 'true') throw new Error(`${ETCDCTL} is missing: .ci/run installs Debian's etcd-client`);
  return `${ETCDCTL} is not installed (Debian package etcd-client)`;
}

/** PORT_PICKS_MAX bounds the picks TestCluster.start makes to find each distinct port. */
const PORT_PICKS_MAX = 20;

/** freePort asks the kernel for a free port on 127.0.0.1 (see freePorts). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  assert(port !== undefined, 'freePorts(1) gives one port');
  return port;
}

/** LaunchOptions are a member's timing flags and any further `stratakv serve` flags. */
export interface LaunchOptions {
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  /** More `stratakv serve` flags, appended after the ones launch() sets (e.g. `--snapshot-count=1000`). */
  readonly serveArgs?: readonly string[];
}

/** MemberProcess is one running `stratakv serve`. */
export interface MemberProcess {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly endpoint: string;
  readonly dataDir: string;
  readonly logPath: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** TestCluster is a set of member processes sharing one temporary directory. */
export class TestCluster {
  readonly directory: string;
  readonly members: MemberProcess[] = [];
  private readonly token: string;

  private constructor(directory: string, token: string) {
    this.directory = directory;
    this.token = token;
  }

  /**
   * start launches `size` members of a new cluster and waits for a leader. Ports come from
   * `pickPort` (the kernel's free ports by default; a test with many connections of its own,
   * whose ephemeral ports could take a port between its pick and its bind, passes its own range).
   */
  static async start(size: number, options: LaunchOptions = {}, pickPort: () => Promise<number> = freePort): Promise<TestCluster> {
    const cluster = new TestCluster(mkdtempSync(join(tmpdir(), 'stratakv-it-')), `it-${process.pid}-${Date.now()}`);
    // The kernel may hand the same free port to two calls in a row: each port is picked once.
    const picked = new Set<number>();
    const pickDistinct = async (): Promise<number> => {
      for (let attempt = 0; attempt < PORT_PICKS_MAX; attempt += 1) {
        const port = await pickPort();
        if (!picked.has(port)) {
          picked.add(port);
          return port;
        }
      }
      throw new Error(`no distinct free port in ${PORT_PICKS_MAX} picks`);
    };
    const specs = [];
    for (let index = 1; index <= size; index += 1) {
      specs.push({ name: `n${index}`, clientPort: await pickDistinct(), peerPort: await pickDistinct() });
    }
    const initialCluster = specs.map((spec) => `${spec.name}=http://127.0.0.1:${spec.peerPort}`).join(',');
    try {
      for (const spec of specs) {
        cluster.launch(spec.name, spec.clientPort, spec.peerPort, initialCluster, 'new', options);
      }
      await cluster.waitForLeader();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** launch starts one member process with etcd's flags. */
  launch(
    name: string,
    clientPort: number,
    peerPort: number,
    initialCluster: string,
    state: 'new' | 'existing',
    options: LaunchOptions = {},
  ): MemberProcess {
    const clientUrl = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const dataDir = join(this.directory, name);
    const logPath = join(this.directory, `${name}.log`);
    const args = [
      CLI,
      'serve',
      `--name=${name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-state=${state}`,
      `--initial-cluster-token=${this.token}`,
    ];
    return this.spawnMember({ name, clientUrl, peerUrl, endpoint: `127.0.0.1:${clientPort}`, dataDir, logPath }, args, options);
  }

  // spawnMember starts `stratakv serve` with `args` and the timing flags, logging to the member's log, and records it (replacing a member of the same name).
  private spawnMember(member: Omit<MemberProcess, 'child' | 'exited'>, args: readonly string[], options: LaunchOptions): MemberProcess {
    const timing = [`--heartbeat-interval=${options.heartbeatMs ?? 50}`, `--election-timeout=${options.electionMs ?? 500}`, ...(options.serveArgs ?? [])];
    const child = spawn(process.execPath, [...args, ...timing], { stdio: ['ignore', 'pipe', 'pipe'] });
    const log = createWriteStream(member.logPath, { flags: 'a' });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === null ? null : -1))));
    const started: MemberProcess = { ...member, child, exited };
    const existing = this.members.findIndex((candidate) => candidate.name === member.name);
    if (existing >= 0) this.members[existing] = started;
    else this.members.push(started);
    return started;
  }

  /**
   * launchJoining starts a member with --join: it waits until it is added to the cluster at
   * `joinUrls`. Its peers reach it at `advertisePeerUrl` (a proxy's, for a remote zone), it
   * listens on `peerPort`.
   */
  launchJoining(name: string, spec: { readonly clientPort: number; readonly peerPort: number; readonly advertisePeerUrl: string; readonly joinUrls: readonly string[]; readonly zone?: string }, options: LaunchOptions = {}): MemberProcess {
    const clientUrl = `http://127.0.0.1:${spec.clientPort}`;
    const dataDir = join(this.directory, name);
    const logPath = join(this.directory, `${name}.log`);
    const args = [
      CLI,
      'serve',
      `--name=${name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${spec.peerPort}`,
      `--initial-advertise-peer-urls=${spec.advertisePeerUrl}`,
      `--join=${spec.joinUrls.join(',')}`,
      ...(spec.zone !== undefined ? [`--zone=${spec.zone}`] : []),
    ];
    return this.spawnMember({ name, clientUrl, peerUrl: spec.advertisePeerUrl, endpoint: `127.0.0.1:${spec.clientPort}`, dataDir, logPath }, args, options);
  }

  /** restart starts a stopped member again on its data directory (with `options`, none by default). */
  restart(member: MemberProcess, options: LaunchOptions = {}): MemberProcess {
    const clientPort = Number(new URL(member.clientUrl).port);
    const peerPort = Number(new URL(member.peerUrl).port);
    return this.launch(member.name, clientPort, peerPort, this.initialCluster(), 'new', options);
  }

  /** initialCluster is the --initial-cluster value for the members started so far. */
  initialCluster(): string {
    return this.members.map((member) => `${member.name}=${member.peerUrl}`).join(',');
  }

  /** endpoints lists the client endpoints (host:port) of running members. */
  endpoints(): string[] {
    return this.members.filter((member) => member.child.exitCode === null && member.child.signalCode === null).map((member) => member.endpoint);
  }

  /** client opens an EtcdClient on the running members. */
  client(timeoutMs = 5_000): EtcdClient {
    return new EtcdClient({ endpoints: this.endpoints(), timeoutMs });
  }

  /** waitForLeader polls Status on every running member until all agree on one leader. */
  async waitForLeader(timeoutMs = START_TIMEOUT_MS): Promise<MemberProcess> {
    const deadline = Date.now() + timeoutMs;
    let lastProblem = 'no answer yet';
    while (Date.now() < deadline) {
      for (const member of this.members) {
        if (member.child.exitCode !== null) throw new Error(`member ${member.name} exited with ${member.child.exitCode}:\n${this.logOf(member)}`);
      }
      const client = this.client(1_000);
      try {
        const statuses = await client.statusAll({ timeoutMs: 1_000 });
        const answered = statuses.flatMap((result) => (result.ok ? [result.status] : []));
        const leaders = new Set(answered.map((status) => status.leaderId));
        if (answered.length === this.endpoints().length && leaders.size === 1 && !leaders.has(0n)) {
          const leaderId = [...leaders][0];
          const endpoint = answered.find((status) => status.memberId === leaderId)?.endpoint;
          const member = this.members.find((candidate) => candidate.endpoint === endpoint);
          if (member !== undefined) return member;
        }
        lastProblem = JSON.stringify(statuses, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString(16) : value));
      } catch (error) {
        lastProblem = String(error);
      } finally {
        client.close();
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS * 4));
    }
    throw new Error(`no leader agreed on within ${timeoutMs} ms: ${lastProblem}`);
  }

  /** kill sends SIGKILL to a member (by its PID) and waits for it to exit. */
  async kill(member: MemberProcess): Promise<void> {
    if (member.child.pid !== undefined && member.child.exitCode === null) process.kill(member.child.pid, 'SIGKILL');
    await member.exited;
  }

  /** stopMember sends SIGTERM and waits (SIGKILL after STOP_TIMEOUT_MS). */
  async stopMember(member: MemberProcess): Promise<number | null> {
    if (member.child.exitCode !== null || member.child.signalCode !== null) return member.exited;
    if (member.child.pid !== undefined) process.kill(member.child.pid, 'SIGTERM');
    const timer = setTimeout(() => {
      if (member.child.pid !== undefined && member.child.exitCode === null) process.kill(member.child.pid, 'SIGKILL');
    }, STOP_TIMEOUT_MS);
    try {
      return await member.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** stop stops every member and removes the directory (kept when STRATAKV_KEEP_TEST_DATA is set). */
  async stop(): Promise<void> {
    await Promise.all(this.members.map((member) => this.stopMember(member)));
    if (process.env.STRATAKV_KEEP_TEST_DATA === undefined) rmSync(this.directory, { recursive: true, force: true });
  }

  /** logOf returns a member's log so far (for failure messages). */
  logOf(member: MemberProcess): string {
    return existsSync(member.logPath) ? readFileSync(member.logPath, 'utf8').slice(-4_000) : '(no log)';
  }
}

/** EtcdctlResult is what one etcdctl run printed. */
export interface EtcdctlResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** etcdctlAsync runs etcdctl without blocking this process's event loop (which may serve a test's proxies meanwhile). */
export function etcdctlAsync(endpoints: readonly string[], args: readonly string[]): Promise<EtcdctlResult> {
  return new Promise((resolve) => {
    const child = spawn(ETCDCTL, [`--endpoints=${endpoints.join(',')}`, '--command-timeout=5s', ...args], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** etcdctl runs the real etcdctl (API v3) with a timeout, blocking this process until it ends. */
export function etcdctl(endpoints: readonly string[], args: readonly string[], input?: string): EtcdctlResult {
  const result = spawnSync(ETCDCTL, [`--endpoints=${endpoints.join(',')}`, '--command-timeout=5s', ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    input: input ?? '',
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

// Real `stratakv serve` processes on 127.0.0.1 for integration tests: start a cluster, add a
// member, kill one with SIGKILL, stop them all (by PID, SIGTERM then SIGKILL), and run the
// real `etcdctl` against them; and what the tests around them share: free ports (the kernel's,
// or a range a test file keeps to itself) and bounded polling. Every wait is bounded.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdClient } from '../../src/client/index.ts';
import { assert } from '../../src/util/assert.ts';
import { freePorts } from '../client/etcd-process.ts';
import { readableLog } from '../obs/log-records.ts';

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

// portIsFree tells whether 127.0.0.1:port can be bound now.
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * PortRange hands out ports from a range that one test file keeps to itself, below the
 * kernel's ephemeral ports, each probed free just before: for a member that binds its port
 * late (a joining member binds its client port only once added), or a test whose own
 * connections could take a port picked from the ephemeral range before a member binds it.
 * Probing starts at a place that depends on the process id and goes on where it last stopped.
 */
export class PortRange {
  readonly first: number;
  readonly last: number;
  // Invariant: 0 <= step; the next port probed is first + (pid + step) mod the range's size.
  private step = 0;

  constructor(first: number, last: number) {
    assert(Number.isInteger(first) && first > 0, 'a port range starts at a port');
    assert(Number.isInteger(last) && last >= first && last <= 65_535, 'a port range ends at a port after its first');
    this.first = first;
    this.last = last;
  }

  /** take answers `count` ports of the range that are free now, probing each port of the range at most once. */
  async take(count: number): Promise<number[]> {
    const size = this.last - this.first + 1;
    assert(Number.isInteger(count) && count >= 1 && count <= size, 'take asks for 1 to size ports');
    const ports: number[] = [];
    for (let probed = 0; probed < size && ports.length < count; probed += 1) {
      const port = this.first + ((process.pid + this.step) % size);
      this.step += 1;
      if (await portIsFree(port)) ports.push(port);
    }
    if (ports.length < count) throw new Error(`only ${ports.length} of ${count} ports free in ${this.first}-${this.last}`);
    return ports;
  }
}

/** sleep waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * WaitFor polls `probe` until it answers something other than undefined, for at most
 * `timeoutMs`; on a timeout it fails naming `description`, with what `explain` says.
 */
export type WaitFor = <T>(description: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, explain?: () => string) => Promise<T>;

/** makeWaitFor answers a WaitFor that asks its probe every `pollMs` (each test file keeps its own pace). */
export function makeWaitFor(pollMs: number): WaitFor {
  assert(Number.isInteger(pollMs) && pollMs > 0, 'makeWaitFor polls every positive number of ms');
  return async <T>(description: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, explain?: () => string): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; Date.now() < deadline && attempt < Math.ceil(timeoutMs / pollMs) + 1; attempt += 1) {
      const answer = await probe();
      if (answer !== undefined) return answer;
      await sleep(pollMs);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}${explain === undefined ? '' : `: ${explain()}`}`);
  };
}

/** LaunchOptions are a member's timing flags and any further `stratakv serve` flags. */
export interface LaunchOptions {
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  /** More `stratakv serve` flags, appended after the ones launch() sets (e.g. `--snapshot-count=1000`). */
  readonly serveArgs?: readonly string[];
  /** Serve /metrics, /health and the status page on a metrics URL of its own per member (MemberProcess.metricsUrl). */
  readonly metrics?: boolean;
  /** The metrics port of a member launched alone (launch(), restart()); start() picks one per member when `metrics` is set. */
  readonly metricsPort?: number;
  /** Environment variables set for the member on top of this process's (e.g. OTEL_* for tracing). */
  readonly env?: Readonly<Record<string, string>>;
}

/** MemberProcess is one running `stratakv serve`. */
export interface MemberProcess {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly endpoint: string;
  readonly dataDir: string;
  readonly logPath: string;
  /** --listen-metrics-urls' URL when the member serves metrics. */
  readonly metricsUrl?: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** isRunning tells whether a member's process has neither exited nor been ended by a signal. */
export function isRunning(member: MemberProcess): boolean {
  return member.child.exitCode === null && member.child.signalCode === null;
}

// MemberListen is what every member is started with, whichever way: its name, its client
// port, and the peer URL it listens on and the one it advertises (a proxy's, for a remote zone).
interface MemberListen {
  readonly name: string;
  readonly clientPort: number;
  readonly listenPeerUrl: string;
  readonly advertisePeerUrl: string;
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
      specs.push({ name: `n${index}`, clientPort: await pickDistinct(), peerPort: await pickDistinct(), metricsPort: options.metrics === true ? await pickDistinct() : undefined });
    }
    const initialCluster = specs.map((spec) => `${spec.name}=http://127.0.0.1:${spec.peerPort}`).join(',');
    try {
      for (const spec of specs) {
        cluster.launch(spec.name, spec.clientPort, spec.peerPort, initialCluster, 'new', spec.metricsPort === undefined ? options : { ...options, metricsPort: spec.metricsPort });
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
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const bootstrap = [`--initial-cluster=${initialCluster}`, `--initial-cluster-state=${state}`, `--initial-cluster-token=${this.token}`];
    return this.spawnMember({ name, clientPort, listenPeerUrl: peerUrl, advertisePeerUrl: peerUrl }, bootstrap, options);
  }

  /**
   * spawnMember starts `stratakv serve` with the flags every member has (name, data directory
   * and log in this cluster's directory, client and peer URLs), then `flags`, then the timing
   * flags and `options.serveArgs`; it records the member (replacing one of the same name).
   */
  private spawnMember(listen: MemberListen, flags: readonly string[], options: LaunchOptions): MemberProcess {
    const { name } = listen;
    const clientUrl = `http://127.0.0.1:${listen.clientPort}`;
    const dataDir = join(this.directory, name);
    const logPath = join(this.directory, `${name}.log`);
    const args = [
      CLI,
      'serve',
      `--name=${name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${listen.listenPeerUrl}`,
      `--initial-advertise-peer-urls=${listen.advertisePeerUrl}`,
      ...flags,
    ];
    const metricsUrl = options.metricsPort === undefined ? undefined : `http://127.0.0.1:${options.metricsPort}`;
    if (metricsUrl !== undefined) args.push(`--listen-metrics-urls=${metricsUrl}`);
    const timing = [`--heartbeat-interval=${options.heartbeatMs ?? 50}`, `--election-timeout=${options.electionMs ?? 500}`, ...(options.serveArgs ?? [])];
    const child = spawn(process.execPath, [...args, ...timing], { stdio: ['ignore', 'pipe', 'pipe'], ...(options.env !== undefined ? { env: { ...process.env, ...options.env } } : {}) });
    const log = createWriteStream(logPath, { flags: 'a' });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === null ? null : -1))));
    const started: MemberProcess = { name, clientUrl, peerUrl: listen.advertisePeerUrl, endpoint: `127.0.0.1:${listen.clientPort}`, dataDir, logPath, ...(metricsUrl !== undefined ? { metricsUrl } : {}), child, exited };
    const existing = this.members.findIndex((candidate) => candidate.name === name);
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
    const joinFlags = [`--join=${spec.joinUrls.join(',')}`, ...(spec.zone !== undefined ? [`--zone=${spec.zone}`] : [])];
    const listen = { name, clientPort: spec.clientPort, listenPeerUrl: `http://127.0.0.1:${spec.peerPort}`, advertisePeerUrl: spec.advertisePeerUrl };
    return this.spawnMember(listen, joinFlags, options);
  }

  /** restart starts a stopped member again on its data directory (with `options`, none by default). */
  restart(member: MemberProcess, options: LaunchOptions = {}): MemberProcess {
    const clientPort = Number(new URL(member.clientUrl).port);
    const peerPort = Number(new URL(member.peerUrl).port);
    const metricsPort = member.metricsUrl === undefined ? undefined : Number(new URL(member.metricsUrl).port);
    return this.launch(member.name, clientPort, peerPort, this.initialCluster(), 'new', metricsPort === undefined || options.metricsPort !== undefined ? options : { ...options, metricsPort });
  }

  /** initialCluster is the --initial-cluster value for the members started so far. */
  initialCluster(): string {
    return this.members.map((member) => `${member.name}=${member.peerUrl}`).join(',');
  }

  /** endpoints lists the client endpoints (host:port) of running members. */
  endpoints(): string[] {
    return this.members.filter(isRunning).map((member) => member.endpoint);
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

  /** logOf returns the end of a member's log so far, its JSON lines rendered as text (for failure messages). */
  logOf(member: MemberProcess): string {
    return existsSync(member.logPath) ? readableLog(readFileSync(member.logPath, 'utf8')).slice(-4_000) : '(no log)';
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

// Real etcd for tests: start single members or a cluster on 127.0.0.1 with ports from a
// port-0 probe and a temporary data directory, wait until they have a leader, and stop every
// process by its PID. Tests that need etcd call `etcdOrSkip` first: without /usr/bin/etcd
// they skip with a message, except in CI, where a missing etcd is a failure.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdClient } from '../../src/client/index.ts';

/** ETCD_BINARY is where the tests look for etcd (CI installs it there too). */
export const ETCD_BINARY = '/usr/bin/etcd';
/** READY_ATTEMPTS_MAX bounds the wait for a started cluster to elect a leader (×READY_PAUSE_MS). */
export const READY_ATTEMPTS_MAX = 200;
const READY_PAUSE_MS = 50;
const STDERR_TAIL_BYTES_MAX = 8192;

/**
 * etcdSkipReason is the `skip` option for suites that need etcd: a message when etcd is
 * missing here, or false. In CI (CI=true) it is always false, so a missing etcd fails the
 * suite (startEtcdCluster throws) instead of passing it silently.
 */
/** ETCDCTL_TIMEOUT_MS bounds one etcdctl run of the tests. */
export const ETCDCTL_TIMEOUT_MS = 20_000;

/** etcdctlMissing says why etcdctl cannot run here, or undefined; in CI it must run. */
export function etcdctlMissing(): string | undefined {
  try {
    execFileSync('etcdctl', ['version'], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: ETCDCTL_TIMEOUT_MS, stdio: 'pipe' });
    return undefined;
  } catch (error) {
    const message = `etcdctl is not installed or does not run (${(error as Error).message})`;
    if (process.env['CI'] === 'true') throw new Error(message, { cause: error });
    return message;
  }
}

export function etcdSkipReason(): string | false {
  if (existsSync(ETCD_BINARY) || process.env['CI'] === 'true') return false;
  return `${ETCD_BINARY} is not installed; skipping the tests against real etcd`;
}

/** freePorts asks the kernel for `count` distinct free ports on 127.0.0.1 (by binding port 0), then releases them. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let index = 0; index < count; index++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((server) => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

/** EtcdMember is one running etcd process. */
export interface EtcdMember {
  readonly name: string;
  readonly clientEndpoint: string;
  readonly peerUrl: string;
  readonly process: ChildProcess;
  /** The last bytes etcd wrote to stderr, for failure messages. */
  stderrTail(): string;
}

/** EtcdCluster is a set of etcd members sharing a temporary directory. */
export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  readonly endpoints: readonly string[];
  /** kill stops one member by its PID (SIGKILL) and waits for it to exit. */
  kill(member: EtcdMember): Promise<void>;
  /** stop kills every member still running and removes the data directory. */
  stop(): Promise<void>;
}

/** EtcdClusterOptions adjust the members started by startEtcdCluster. */
export interface EtcdClusterOptions {
  /** More etcd flags for every member (e.g. --experimental-watch-progress-notify-interval=500ms). */
  readonly extraArgs?: readonly string[];
}

/** startEtcdCluster starts `size` members as one new cluster and waits until every member knows a leader. */
export async function startEtcdCluster(size: number, options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  if (!existsSync(ETCD_BINARY)) throw new Error(`${ETCD_BINARY} is missing; install etcd-server (CI installs it)`);
  const directory = mkdtempSync(join(tmpdir(), 'stratakv-etcd-'));
  const ports = await freePorts(2 * size);
  const specs = Array.from({ length: size }, (_, index) => ({
    name: `m${index + 1}`,
    clientUrl: `http://127.0.0.1:${ports[2 * index]}`,
    peerUrl: `http://127.0.0.1:${ports[2 * index + 1]}`,
  }));
  const initialCluster = specs.map((spec) => `${spec.name}=${spec.peerUrl}`).join(',');
  const members: EtcdMember[] = [];
  const exited = new Set<ChildProcess>();
  const cluster: EtcdCluster = {
    members,
    endpoints: specs.map((spec) => spec.clientUrl.slice('http://'.length)),
    async kill(member) {
      if (exited.has(member.process) || member.process.pid === undefined) return;
      const gone = new Promise<void>((resolve) => member.process.once('exit', () => resolve()));
      process.kill(member.process.pid, 'SIGKILL');
      await gone;
    },
    async stop() {
      await Promise.all(members.map((member) => cluster.kill(member)));
      rmSync(directory, { recursive: true, force: true });
    },
  };
  try {
    for (const spec of specs) {
      const child = spawn(
        ETCD_BINARY,
        [
          '--name', spec.name,
          '--data-dir', join(directory, spec.name),
          '--listen-client-urls', spec.clientUrl,
          '--advertise-client-urls', spec.clientUrl,
          '--listen-peer-urls', spec.peerUrl,
          '--initial-advertise-peer-urls', spec.peerUrl,
          '--initial-cluster', initialCluster,
          '--initial-cluster-state', 'new',
          '--initial-cluster-token', `stratakv-test-${ports[0]}`,
          '--heartbeat-interval', '50',
          '--election-timeout', '500',
          '--logger', 'zap',
          '--log-level', 'error',
          ...(options.extraArgs ?? []),
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let tail = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        tail = (tail + chunk).slice(-STDERR_TAIL_BYTES_MAX);
      });
      child.once('exit', () => exited.add(child));
      members.push({
        name: spec.name,
        clientEndpoint: spec.clientUrl.slice('http://'.length),
        peerUrl: spec.peerUrl,
        process: child,
        stderrTail: () => tail,
      });
    }
    await waitForLeader(cluster, exited);
    return cluster;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

async function waitForLeader(cluster: EtcdCluster, exited: ReadonlySet<ChildProcess>): Promise<void> {
  const client = new EtcdClient({ endpoints: cluster.endpoints, timeoutMs: 1000 });
  try {
    for (let attempt = 1; attempt <= READY_ATTEMPTS_MAX; attempt++) {
      const dead = cluster.members.find((member) => exited.has(member.process));
      if (dead !== undefined) throw new Error(`etcd ${dead.name} exited while starting:\n${dead.stderrTail()}`);
      const results = await client.statusAll();
      if (results.every((result) => result.ok && result.status.leaderId !== 0n)) return;
      await new Promise((resolve) => setTimeout(resolve, READY_PAUSE_MS));
    }
    throw new Error(`etcd did not elect a leader after ${READY_ATTEMPTS_MAX} checks:\n${cluster.members.map((member) => member.stderrTail()).join('\n')}`);
  } finally {
    client.close();
  }
}

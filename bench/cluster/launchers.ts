// Launchers for the systems the cluster benchmarks compare, behind one interface: start() gives
// the client endpoints, the members' ids and a way to find the leader; stop() ends the
// processes by PID and removes their data folders.
//
//  - echo: one grpc-js server process whose Put and Range answer at once (echo-server.ts):
//    the ceiling of the client harness on this machine;
//  - etcd: three `etcd` processes (Debian's etcd-server) on 127.0.0.1 with fresh data folders;
//  - stratakv: three `node cmd/stratakv.js serve` processes with etcd's flag names.
// A cluster counts as started when every member answers Maintenance.Status naming the same
// leader; that wait is bounded, and a member that exits meanwhile fails the start at once.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { freePorts, makeTempFolder, removeTempFolder, sleep, startChild, stopChild, tailOf } from './processes.ts';
import { startOtlpSink } from './otlp-sink.ts';
import { describeError, status } from './rpc.ts';

/** REPOSITORY is the root of the stratakv checkout. */
export const REPOSITORY = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ETCD_BINARY = '/usr/bin/etcd';
const CLUSTER_SIZE = 3;
const START_TIMEOUT_MS = 30_000;
const LEADER_TIMEOUT_MS = 15_000;
const STATUS_DEADLINE_MS = 1_000;
const POLL_MS = 100;

/**
 * SystemName names a benchmarked system. The stratakv-* variants are stratakv with
 * observability on (issue 17): metrics served on --listen-metrics-urls (and scraped by the
 * bench each second), or traces exported over OTLP to a sink (otlp-sink.ts) with every
 * request sampled (trace100) or 1 % (trace1); plain `stratakv` has neither.
 */
export type SystemName = 'echo' | 'etcd' | 'stratakv' | 'stratakv-metrics' | 'stratakv-trace1' | 'stratakv-trace100';

/** SYSTEM_NAMES lists every system --targets accepts. */
export const SYSTEM_NAMES: readonly SystemName[] = ['echo', 'etcd', 'stratakv', 'stratakv-metrics', 'stratakv-trace1', 'stratakv-trace100'];

/** Member is one server of a cluster: its name, its member id (0 for echo) and client endpoint. */
export interface Member {
  readonly name: string;
  readonly id: bigint;
  readonly endpoint: string;
  /** pid is the member's process, for its CPU time (process-cpu.ts). */
  readonly pid: number;
  /** peerUrl, dataDir and logPath: where a process member listens to peers, keeps its data and logs (absent for echo). */
  readonly peerUrl?: string;
  readonly dataDir?: string;
  readonly logPath?: string;
  /** metricsUrl: where the member serves /metrics, when it does (stratakv-metrics). */
  readonly metricsUrl?: string;
}

/** RunningCluster is a started system. */
export interface RunningCluster {
  readonly system: SystemName;
  /** description says what runs (version, member count), for the report. */
  readonly description: string;
  readonly members: readonly Member[];
  /** folder is the cluster's temporary folder (removed by stop()), for members added later. */
  readonly folder?: string;
  /** leader asks every member for its status and returns the member they agree leads (bounded). */
  leader(timeoutMs?: number): Promise<Member>;
  /** stop ends the processes by PID and removes the data folders. */
  stop(): Promise<void>;
}

/** Launcher starts one system; unavailable() says why it cannot run here, or undefined. */
export interface Launcher {
  readonly system: SystemName;
  unavailable(): string | undefined;
  start(): Promise<RunningCluster>;
}

/** ClusterStartError is a start that did not produce a working cluster; the message says why. */
export class ClusterStartError extends Error {
  override readonly name = 'ClusterStartError';
}

const here = dirname(fileURLToPath(import.meta.url));

/** echoLauncher starts the echo server (echo-server.ts) as its own process. */
export function echoLauncher(): Launcher {
  return {
    system: 'echo',
    unavailable: () => undefined,
    async start() {
      const folder = makeTempFolder('stratakv-bench-echo-');
      const [port] = await freePorts(1);
      if (port === undefined) throw new ClusterStartError('no free port');
      const logPath = join(folder, 'echo.log');
      const child = startChild(process.execPath, [join(here, 'echo-server.ts'), String(port)], logPath, { cwd: REPOSITORY });
      const endpoint = `http://127.0.0.1:${port}`;
      const member: Member = { name: 'echo', id: 0n, endpoint, pid: child.pid ?? 0 };
      try {
        // The echo server writes "listening" once bound; its proto may still be on the way.
        const deadline = Date.now() + START_TIMEOUT_MS + 60_000;
        while (!tailOf(logPath, 50).includes('listening')) {
          if (child.exitCode !== null) throw new ClusterStartError(`echo server exited:\n${tailOf(logPath)}`);
          if (Date.now() > deadline) throw new ClusterStartError(`echo server did not start:\n${tailOf(logPath)}`);
          await sleep(POLL_MS);
        }
      } catch (error) {
        await stopChild(child);
        removeTempFolder(folder);
        throw error;
      }
      const description = tailOf(logPath, 50).split('\n').find((line) => line.includes('listening')) ?? 'echo';
      return {
        system: 'echo',
        description: description.replace(/^.*listening[^(]*/, 'grpc-js echo server ').trim(),
        members: [member],
        leader: () => Promise.resolve(member),
        async stop() {
          await stopChild(child);
          removeTempFolder(folder);
        },
      };
    },
  };
}

interface MemberCommand {
  readonly command: string;
  readonly args: readonly string[];
  /** The environment, when not this process's. */
  readonly env?: NodeJS.ProcessEnv;
}

interface MemberSpec {
  readonly name: string;
  readonly dataDir: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly initialCluster: string;
  /** A free port's URL the member may serve metrics on. */
  readonly metricsUrl: string;
}

/** etcdFlags are the etcd flags both etcd and `stratakv serve` take for one member. */
function etcdFlags(spec: MemberSpec): string[] {
  return [
    '--name', spec.name,
    '--data-dir', spec.dataDir,
    '--listen-client-urls', spec.clientUrl,
    '--advertise-client-urls', spec.clientUrl,
    '--listen-peer-urls', spec.peerUrl,
    '--initial-advertise-peer-urls', spec.peerUrl,
    '--initial-cluster', spec.initialCluster,
    '--initial-cluster-state', 'new',
  ];
}

/** etcdLauncher starts three etcd members from /usr/bin/etcd. */
export function etcdLauncher(): Launcher {
  return {
    system: 'etcd',
    unavailable: () => (existsSync(ETCD_BINARY) ? undefined : `${ETCD_BINARY} is not installed (apt-get install etcd-server)`),
    start: () => {
      const version = spawnSync(ETCD_BINARY, ['--version'], { encoding: 'utf8', timeout: 10_000 }).stdout.split('\n')[0] ?? 'etcd';
      // One token for the whole cluster: members with different tokens form different clusters.
      const token = `bench-${process.pid}-${Date.now()}`;
      return startProcessCluster('etcd', version.trim(), (spec) => ({
        command: ETCD_BINARY,
        args: [...etcdFlags(spec), '--initial-cluster-token', token, '--logger', 'zap', '--log-level', 'warn'],
      }));
    },
  };
}

/** STRATAKV_ENTRY is the stratakv command line's entry point. */
export const STRATAKV_ENTRY = join(REPOSITORY, 'cmd', 'stratakv.js');

/** StratakvLaunchOptions: extra `serve` flags for every member (`--snapshot-count 10000`, say), and observability. */
export interface StratakvLaunchOptions {
  readonly serveFlags?: readonly string[];
  /** The variant's name (default 'stratakv'). */
  readonly system?: SystemName;
  /** Serve metrics on each member's metricsUrl. */
  readonly metrics?: boolean;
  /** Export traces to an OTLP sink started with the cluster, sampling this fraction of requests. */
  readonly traceRatio?: number;
}

/** stratakvLauncher starts three `node cmd/stratakv.js serve` members with etcd's flags (and `options.serveFlags`). */
export function stratakvLauncher(options: StratakvLaunchOptions = {}): Launcher {
  const serveFlags = options.serveFlags ?? [];
  const system = options.system ?? 'stratakv';
  const traceRatio = options.traceRatio;
  return {
    system,
    unavailable: () => (existsSync(STRATAKV_ENTRY) ? undefined : `${STRATAKV_ENTRY} is missing`),
    start: async () => {
      const sink = traceRatio === undefined ? undefined : await startOtlpSink();
      const env =
        sink === undefined
          ? undefined
          : {
              ...process.env,
              OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint,
              OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
              OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
              OTEL_TRACES_SAMPLER_ARG: String(traceRatio),
            };
      const observed = [
        ...(options.metrics === true ? ['metrics on /metrics, scraped each second'] : []),
        ...(traceRatio !== undefined ? [`traces sampled ${traceRatio * 100} % exported over OTLP/HTTP protobuf to a sink`] : []),
      ];
      try {
        const cluster = await startProcessCluster(
          system,
          `stratakv serve (${process.execPath} ${process.version})${serveFlags.length > 0 ? ` ${serveFlags.join(' ')}` : ''}${observed.length > 0 ? `, ${observed.join(', ')}` : ''}`,
          (spec) => ({
            ...stratakvServeCommand([...etcdFlags(spec), ...serveFlags, ...(options.metrics === true ? ['--listen-metrics-urls', spec.metricsUrl] : [])]),
            ...(env !== undefined ? { env } : {}),
          }),
          { metrics: options.metrics === true },
        );
        return sink === undefined ? cluster : { ...cluster, stop: async () => { await cluster.stop(); await sink.close(); } };
      } catch (error) {
        await sink?.close();
        throw error;
      }
    },
  };
}

/**
 * stratakvServeCommand is the command that runs `stratakv serve` with `serveArgs` as the
 * launchers run it (this node, with STRATAKV_BENCH_NODE_ARGS), for members started by hand.
 */
export function stratakvServeCommand(serveArgs: readonly string[]): { readonly command: string; readonly args: readonly string[] } {
  // STRATAKV_BENCH_NODE_ARGS passes flags to the members' node (--cpu-prof, say).
  return { command: process.execPath, args: [...nodeArgsFromEnvironment(), STRATAKV_ENTRY, 'serve', ...serveArgs] };
}

function nodeArgsFromEnvironment(): string[] {
  return (process.env.STRATAKV_BENCH_NODE_ARGS ?? '').split(' ').filter((item) => item !== '');
}

async function startProcessCluster(system: SystemName, description: string, commandFor: (spec: MemberSpec) => MemberCommand, options: { readonly metrics?: boolean } = {}): Promise<RunningCluster> {
  const folder = makeTempFolder(`stratakv-bench-${system}-`);
  const ports = await freePorts(CLUSTER_SIZE * 3);
  const metricsUrls = Array.from({ length: CLUSTER_SIZE }, (_, index) => `http://127.0.0.1:${ports[2 * CLUSTER_SIZE + index]}`);
  const names = Array.from({ length: CLUSTER_SIZE }, (_, index) => `n${index + 1}`);
  const peerUrls = names.map((_, index) => `http://127.0.0.1:${ports[CLUSTER_SIZE + index]}`);
  const clientUrls = names.map((_, index) => `http://127.0.0.1:${ports[index]}`);
  const initialCluster = names.map((name, index) => `${name}=${peerUrls[index]}`).join(',');
  const children: ChildProcess[] = [];
  const logs: string[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(children.map((child) => stopChild(child)));
    removeTempFolder(folder);
  };
  try {
    for (const [index, name] of names.entries()) {
      const spec: MemberSpec = {
        name,
        dataDir: join(folder, `${name}.data`),
        clientUrl: clientUrls[index] ?? '',
        peerUrl: peerUrls[index] ?? '',
        initialCluster,
        metricsUrl: metricsUrls[index] ?? '',
      };
      const { command, args, env } = commandFor(spec);
      const logPath = join(folder, `${name}.log`);
      logs.push(logPath);
      children.push(startChild(command, args, logPath, { cwd: REPOSITORY, ...(env !== undefined ? { env } : {}) }));
    }
    const exitedMember = (): string | undefined => {
      const index = children.findIndex((child) => child.exitCode !== null || child.signalCode !== null);
      if (index < 0) return undefined;
      const child = children[index];
      return `${system} member ${names[index]} exited (code ${child?.exitCode}, signal ${child?.signalCode}); its log ends:\n${tailOf(logs[index] ?? '')}`;
    };
    // Members: each one's id comes from its own Status header.
    const members: Member[] = [];
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (const [index, name] of names.entries()) {
      const endpoint = clientUrls[index] ?? '';
      let lastError = 'no answer yet';
      while (true) {
        const exitMessage = exitedMember();
        if (exitMessage !== undefined) throw new ClusterStartError(exitMessage);
        if (Date.now() > deadline) {
          throw new ClusterStartError(`${system} member ${name} did not answer Maintenance.Status within ${START_TIMEOUT_MS} ms (${lastError}); its log ends:\n${tailOf(logs[index] ?? '')}`);
        }
        try {
          const answer = await status(endpoint, STATUS_DEADLINE_MS);
          members.push({
            name,
            id: answer.header.memberId,
            endpoint,
            pid: children[index]?.pid ?? 0,
            peerUrl: peerUrls[index] ?? '',
            dataDir: join(folder, `${name}.data`),
            logPath: logs[index] ?? '',
            ...(options.metrics === true ? { metricsUrl: metricsUrls[index] ?? '' } : {}),
          });
          break;
        } catch (error) {
          lastError = describeError(error);
          await sleep(POLL_MS);
        }
      }
    }
    const cluster: RunningCluster = {
      system,
      description: `${description}, ${CLUSTER_SIZE} members`,
      members,
      folder,
      leader: (timeoutMs = LEADER_TIMEOUT_MS) => findLeader(system, members, timeoutMs, exitedMember),
      stop: stopAll,
    };
    await cluster.leader(START_TIMEOUT_MS);
    return cluster;
  } catch (error) {
    await stopAll();
    throw error;
  }
}

async function findLeader(system: SystemName, members: readonly Member[], timeoutMs: number, exitedMember: () => string | undefined): Promise<Member> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (true) {
    const exitMessage = exitedMember();
    if (exitMessage !== undefined) throw new ClusterStartError(exitMessage);
    try {
      const answers = await Promise.all(members.map((member) => status(member.endpoint, STATUS_DEADLINE_MS)));
      const leaderIds = new Set(answers.map((answer) => answer.leader));
      const [leaderId] = leaderIds;
      const leader = members.find((member) => member.id === leaderId);
      if (leaderIds.size === 1 && leader !== undefined && leaderId !== 0n) return leader;
      last = `members name leaders ${[...leaderIds].map((id) => id.toString(16)).join(', ')}`;
    } catch (error) {
      last = describeError(error);
    }
    if (Date.now() > deadline) throw new ClusterStartError(`${system}: no agreed leader within ${timeoutMs} ms (${last})`);
    await sleep(POLL_MS);
  }
}

/** launcherFor returns the launcher of a system. */
/**
 * startTargets starts a cluster of each system in turn, skipping (with the reason printed and
 * recorded in `skipped`) a system that is not installed or does not form a working cluster.
 * `prepare` runs on each started cluster (a preload, say) before it counts as started.
 */
export async function startTargets(
  systems: readonly SystemName[],
  clusters: RunningCluster[],
  skipped: Record<string, string>,
  prepare: (cluster: RunningCluster) => Promise<void> = async () => undefined,
): Promise<void> {
  for (const system of systems) {
    const launcher = launcherFor(system);
    const reason = launcher.unavailable();
    if (reason !== undefined) {
      skipped[system] = reason;
      console.log(`${system}: skipped — ${reason}`);
      continue;
    }
    try {
      const started = Date.now();
      const cluster = await launcher.start();
      const leader = await cluster.leader();
      console.log(`${system}: ${cluster.description}; started in ${Date.now() - started} ms, leader ${leader.name} at ${leader.endpoint}`);
      await prepare(cluster);
      clusters.push(cluster);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      skipped[system] = message.split('\n')[0] ?? message;
      console.log(`${system}: skipped — could not start a working cluster: ${message}`);
    }
  }
  if (clusters.length === 0) throw new Error('no target could run');
}

export function launcherFor(system: SystemName): Launcher {
  switch (system) {
    case 'echo':
      return echoLauncher();
    case 'etcd':
      return etcdLauncher();
    case 'stratakv':
      return stratakvLauncher();
    case 'stratakv-metrics':
      return stratakvLauncher({ system, metrics: true });
    case 'stratakv-trace1':
      return stratakvLauncher({ system, traceRatio: 0.01 });
    case 'stratakv-trace100':
      return stratakvLauncher({ system, traceRatio: 1 });
  }
}

/** parseTargets parses "--targets echo,etcd,stratakv". */
export function parseTargets(text: string): SystemName[] {
  const systems: SystemName[] = [];
  for (const part of text.split(',').map((item) => item.trim()).filter((item) => item !== '')) {
    const system = SYSTEM_NAMES.find((name) => name === part);
    if (system === undefined) throw new Error(`--targets: unknown system ${JSON.stringify(part)} (${SYSTEM_NAMES.join(', ')})`);
    if (!systems.includes(system)) systems.push(system);
  }
  if (systems.length === 0) throw new Error('--targets: none given');
  return systems;
}

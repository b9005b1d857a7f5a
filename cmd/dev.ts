// `stratakv dev`: a local 3-member cluster on 127.0.0.1 for trying stratakv out. Each member
// is its own `stratakv serve` process (as in production), with its data in a folder of the
// working directory, so stopping and starting again resumes the same cluster. Ctrl-C stops
// the members gracefully (SIGTERM to each, by PID) and waits for them.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EtcdClient } from '../src/client/index.ts';
import type { LogFormat, LogLevel } from '../src/obs/index.ts';
import { parseLogFormat, parseLogLevel, UsageError } from './serve-flags.ts';
import { listenForStopSignals } from './stop-signals.ts';

const CLI = fileURLToPath(new URL('./stratakv.js', import.meta.url));
/** DEV_MEMBERS is how many members the dev cluster has. */
export const DEV_MEMBERS = 3;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

/** DEV_USAGE documents `stratakv dev`. */
export const DEV_USAGE = `usage: stratakv dev [--data-dir DIR] [--base-port PORT] [--log-level debug|info|warn|error] [--log-format text|json]

Starts a local ${DEV_MEMBERS}-member cluster on 127.0.0.1 (each member its own process).
  --data-dir   where the members keep their data and logs (default ./stratakv-dev)
  --base-port  member i (0, 1, 2) serves clients on PORT+2i and peers on PORT+2i+1, and its metrics,
               /health and status page on PORT+6+i (default 2379)
  --log-level  the members' log level (default info; logs go to DIR/<name>.log)
  --log-format the members' log lines: text, for a person (default), or json as serve writes by default
Ctrl-C stops the cluster; the data is kept, so running it again resumes the same cluster.`;

interface DevOptions {
  readonly dataDir: string;
  readonly basePort: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
}

function parseDevFlags(args: readonly string[]): DevOptions {
  let dataDir = 'stratakv-dev';
  let basePort = 2379;
  let logLevel: LogLevel = 'info';
  // Text, unlike serve's default: the dev cluster is for a person reading DIR/<name>.log.
  let logFormat: LogFormat = 'text';
  for (let index = 0; index < args.length; index += 1) {
    const argument = args[index] ?? '';
    const [flag, inline] = argument.includes('=') ? [argument.slice(0, argument.indexOf('=')), argument.slice(argument.indexOf('=') + 1)] : [argument, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      index += 1;
      const next = args[index];
      if (next === undefined) throw new UsageError(flag, `flag needs an argument: ${flag}`);
      return next;
    };
    switch (flag) {
      case '--data-dir':
        dataDir = value();
        break;
      case '--base-port': {
        const text = value();
        const port = Number(text);
        if (!Number.isInteger(port) || port < 1 || port > 65_535 - 3 * DEV_MEMBERS) throw new UsageError(flag, `invalid value "${text}" for flag ${flag}: a port from 1 to ${65_535 - 3 * DEV_MEMBERS}`);
        basePort = port;
        break;
      }
      case '--log-level':
        logLevel = parseLogLevel(flag, value());
        break;
      case '--log-format':
        logFormat = parseLogFormat(flag, value());
        break;
      default:
        throw new UsageError(flag, `unknown flag: ${flag}`);
    }
  }
  return { dataDir: resolve(dataDir), basePort, logLevel, logFormat };
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

interface DevMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  /** Where /metrics, /health and the status page are served. */
  readonly metricsUrl: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
}

/** runDev runs the dev cluster until Ctrl-C (or a member fails); returns the exit code. */
export async function runDev(args: readonly string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(DEV_USAGE);
    return 0;
  }
  const options = parseDevFlags(args);
  const specs = Array.from({ length: DEV_MEMBERS }, (_, index) => ({
    name: `n${index + 1}`,
    clientPort: options.basePort + 2 * index,
    peerPort: options.basePort + 2 * index + 1,
    metricsPort: options.basePort + 2 * DEV_MEMBERS + index,
  }));
  for (const spec of specs) {
    for (const port of [spec.clientPort, spec.peerPort, spec.metricsPort]) {
      if (!(await portIsFree(port))) {
        console.error(`stratakv dev: port ${port} on 127.0.0.1 is in use (another etcd or stratakv?); choose others with --base-port`);
        return 1;
      }
    }
  }
  mkdirSync(options.dataDir, { recursive: true });
  const resuming = specs.some((spec) => existsSync(join(options.dataDir, spec.name, 'member')));
  const initialCluster = specs.map((spec) => `${spec.name}=http://127.0.0.1:${spec.peerPort}`).join(',');
  const members: DevMember[] = specs.map((spec) => {
    const clientUrl = `http://127.0.0.1:${spec.clientPort}`;
    const peerUrl = `http://127.0.0.1:${spec.peerPort}`;
    const metricsUrl = `http://127.0.0.1:${spec.metricsPort}`;
    const log = createWriteStream(join(options.dataDir, `${spec.name}.log`), { flags: 'a' });
    const child = spawn(
      process.execPath,
      [
        CLI,
        'serve',
        `--name=${spec.name}`,
        `--data-dir=${join(options.dataDir, spec.name)}`,
        `--listen-client-urls=${clientUrl}`,
        `--advertise-client-urls=${clientUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--listen-metrics-urls=${metricsUrl}`,
        `--initial-cluster=${initialCluster}`,
        '--initial-cluster-state=new',
        '--initial-cluster-token=stratakv-dev',
        `--log-level=${options.logLevel}`,
        `--log-format=${options.logFormat}`,
      ],
      // Their own process group: Ctrl-C reaches dev, which stops them in order.
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    return { name: spec.name, clientUrl, peerUrl, metricsUrl, child, exited };
  });

  let stopping = false;
  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const member of members) {
      if (member.child.pid !== undefined && member.child.exitCode === null) process.kill(member.child.pid, 'SIGTERM');
    }
    const killer = setTimeout(() => {
      for (const member of members) if (member.child.pid !== undefined && member.child.exitCode === null) process.kill(member.child.pid, 'SIGKILL');
    }, STOP_TIMEOUT_MS);
    await Promise.all(members.map((member) => member.exited));
    clearTimeout(killer);
  };
  const stopSignals = listenForStopSignals((signal) => console.error(`stratakv dev: ${signal} again; already stopping (members that do not stop within ${STOP_TIMEOUT_MS} ms are killed)`));
  const signalled = stopSignals.first.then((signal) => (signal === 'SIGINT' ? 'interrupted' : signal === 'SIGTERM' ? 'terminated' : 'hung up'));
  const memberFailed = Promise.race(members.map((member) => member.exited.then((code) => `member ${member.name} exited with code ${code} (see ${join(options.dataDir, `${member.name}.log`)})`)));

  const endpoints = members.map((member) => member.clientUrl.replace('http://', ''));
  const ready = waitForLeader(endpoints);
  const first = await Promise.race([ready.then(() => 'ready'), signalled, memberFailed]);
  if (first !== 'ready') {
    console.error(`stratakv dev: ${first}`);
    await stopAll();
    stopSignals.dispose();
    return isStopSignalReason(first) ? 0 : 1;
  }
  console.log(`stratakv dev: a ${DEV_MEMBERS}-member cluster is up (${resuming ? 'resumed from' : 'data in'} ${options.dataDir})`);
  for (const member of members) console.log(`  ${member.name}  client ${member.clientUrl}  peer ${member.peerUrl}  metrics ${member.metricsUrl}  pid ${member.child.pid}  log ${join(options.dataDir, `${member.name}.log`)}`);
  console.log('');
  console.log('try:');
  console.log(`  ETCDCTL_API=3 etcdctl --endpoints=${endpoints.join(',')} put hello world`);
  console.log(`  ETCDCTL_API=3 etcdctl --endpoints=${endpoints.join(',')} get hello`);
  console.log(`  npx stratakv members --endpoints=${endpoints.join(',')}`);
  console.log(`  curl -s ${members[0]?.clientUrl ?? ''}/health`);
  console.log(`status page: ${members[0]?.metricsUrl ?? ''}/ (metrics at /metrics, each member on its own port)`);
  console.log('Ctrl-C stops the cluster (the data is kept: run it again to resume).');

  const reason = await Promise.race([signalled, memberFailed]);
  if (!stopping) {
    console.log(`stratakv dev: ${reason}; stopping the members`);
    await stopAll();
  }
  stopSignals.dispose();
  console.log('stratakv dev: stopped');
  return isStopSignalReason(reason) ? 0 : 1;
}

function isStopSignalReason(reason: string): boolean {
  return reason === 'interrupted' || reason === 'terminated' || reason === 'hung up';
}

async function waitForLeader(endpoints: readonly string[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  const client = new EtcdClient({ endpoints, timeoutMs: 1_000 });
  try {
    while (Date.now() < deadline) {
      const statuses = await client.statusAll({ timeoutMs: 1_000 }).catch(() => []);
      const leaders = new Set(statuses.flatMap((result) => (result.ok ? [result.status.leaderId] : [])));
      if (statuses.length === endpoints.length && statuses.every((result) => result.ok) && leaders.size === 1 && !leaders.has(0n)) return;
      await new Promise((done) => setTimeout(done, 200));
    }
    throw new Error(`no leader was elected within ${START_TIMEOUT_MS} ms`);
  } finally {
    client.close();
  }
}

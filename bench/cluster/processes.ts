// Child processes of the cluster benchmarks: started here, ended here by their PID only.
//
// Every child is recorded when spawned and removed when it exits; on an error, Ctrl-C or
// SIGTERM the benchmark ends exactly those PIDs (SIGTERM, then SIGKILL after a grace period)
// and removes the temporary folders it made. Nothing is ever ended by name.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

const children = new Set<ChildProcess>();
const folders = new Set<string>();
const STOP_GRACE_MS = 3_000;
// Where removeTempFolder copies the members' *.log files first (keepLogsIn); none by default.
let keptLogsFolder: string | undefined;
const PORTS_MAX = 64;

/** startChild spawns `command` with stdout and stderr appended to `logPath`, and records it. */
export function startChild(command: string, args: readonly string[], logPath: string, options: SpawnOptions = {}): ChildProcess {
  const log = openSync(logPath, 'a');
  try {
    const child = spawn(command, args, { stdio: ['ignore', log, log], ...options });
    children.add(child);
    child.once('exit', () => children.delete(child));
    child.once('error', () => children.delete(child));
    return child;
  } finally {
    closeSync(log);
  }
}

/** trackChild records a child started elsewhere (fork) so that cleanup ends it too. */
export function trackChild(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

/** exited resolves when `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** stopChild ends `child` by its PID: SIGTERM, then SIGKILL if it is still there after a grace period. */
export async function stopChild(child: ChildProcess, graceMs = STOP_GRACE_MS): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

/** ChildOutput is what a child printed on stdout and stderr, and how it ended. */
export interface ChildOutput {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * collectOutput records `child` (spawned with stdout and stderr piped), gathers what it prints
 * and waits for it to exit; a child still running after `timeoutMs` is ended with SIGKILL.
 */
export async function collectOutput(child: ChildProcess, timeoutMs: number): Promise<ChildOutput> {
  trackChild(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited(child);
  clearTimeout(timer);
  return { code: child.exitCode, signal: child.signalCode, stdout, stderr };
}

/** makeTempFolder makes a temporary folder that cleanup removes. */
export function makeTempFolder(prefix: string): string {
  const folder = mkdtempSync(join(tmpdir(), prefix));
  folders.add(folder);
  return folder;
}

/**
 * keepLogsIn makes removeTempFolder copy each folder's *.log files (the members' logs) into
 * `folder`/<the temporary folder's name>/ before removing it: a run that went wrong can then
 * be read afterwards.
 */
export function keepLogsIn(folder: string): void {
  keptLogsFolder = folder;
}

/** removeTempFolder removes a folder made by makeTempFolder (after copying its logs, see keepLogsIn). */
export function removeTempFolder(folder: string): void {
  copyKeptLogs(folder);
  rmSync(folder, { recursive: true, force: true });
  folders.delete(folder);
}

// copyKeptLogs copies a temporary folder's *.log files where keepLogsIn said, if it did.
function copyKeptLogs(folder: string): void {
  if (keptLogsFolder !== undefined && existsSync(folder)) {
    const logs = readdirSync(folder).filter((name) => name.endsWith('.log'));
    if (logs.length > 0) {
      const into = join(keptLogsFolder, basename(folder));
      mkdirSync(into, { recursive: true });
      for (const name of logs) copyFileSync(join(folder, name), join(into, name));
    }
  }
}

/** cleanupSync ends every recorded child with SIGKILL and removes every temporary folder (for exit paths). */
export function cleanupSync(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
  for (const folder of folders) {
    copyKeptLogs(folder);
    rmSync(folder, { recursive: true, force: true });
  }
  folders.clear();
}

/** installCleanupHandlers ends recorded children and removes folders on exit, Ctrl-C and SIGTERM. */
export function installCleanupHandlers(): void {
  process.once('exit', cleanupSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping the benchmark's own processes and removing its folders`);
      cleanupSync();
      process.exit(130);
    });
  }
}

/**
 * freePorts finds `count` distinct free ports on 127.0.0.1 by binding port 0. All are held
 * open until every one is found, so no two are the same; another program may still take one
 * before the server binds it, which the launchers notice as a failed start.
 */
export async function freePorts(count: number): Promise<number[]> {
  if (!(count >= 1 && count <= PORTS_MAX)) throw new Error(`freePorts: bad count ${count}`);
  const servers = [];
  const ports: number[] = [];
  try {
    for (let index = 0; index < count; index++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('freePorts: no port');
      ports.push(address.port);
    }
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
  return ports;
}

/** tailOf returns the last `lines` lines of a log file (for error messages). */
export function tailOf(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** sleep waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

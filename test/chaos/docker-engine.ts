// The Docker engine the chaos harness runs its members in (issue 15). A Docker that already
// answers (DOCKER_HOST, or /var/run/docker.sock) is used as it is. Otherwise the harness
// starts Debian's dockerd (package docker.io) itself, as root, with everything of its own
// under folders of ours: the data root (images, containers) in ENGINE_DATA_ROOT, kept across
// runs so that built images stay cached; the exec root, socket and pidfile in ENGINE_RUN_DIR.
// It never touches a system Docker's state.
//
// Sharing: test files may run in parallel processes, each calling ensureDockerEngine. Each
// process that uses the harness's own dockerd registers its PID in ENGINE_USERS_DIR; stop()
// removes the registration and stops that dockerd (SIGTERM to its PID, then SIGKILL) only when
// no other live process is registered, so one test file never pulls the engine from under
// another. A start lock lets one process at a time start it; the others wait for it to
// answer. A Docker we did not start (system, DOCKER_HOST) is never stopped.
//
// testcontainers reads DOCKER_HOST and its TESTCONTAINERS_* settings when it first connects,
// so ensureDockerEngine sets them before anything here loads it; loadTestcontainers() is the
// one way the harness imports it, and refuses to before the engine is known.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';

import type * as Testcontainers from 'testcontainers';

/** DOCKERD_PATH is Debian's dockerd (package docker.io). */
export const DOCKERD_PATH = '/usr/sbin/dockerd';
/** SYSTEM_DOCKER_SOCKET is where a system Docker listens. */
export const SYSTEM_DOCKER_SOCKET = '/var/run/docker.sock';
/** ENGINE_DATA_ROOT is our dockerd's --data-root: persistent, so images are cached across runs. */
export const ENGINE_DATA_ROOT = '/var/lib/stratakv-chaos/docker';
/** ENGINE_LOG_PATH is our dockerd's output, appended to across runs (rotated past ENGINE_LOG_BYTES_MAX). */
export const ENGINE_LOG_PATH = '/var/lib/stratakv-chaos/dockerd.log';
/** ENGINE_RUN_DIR holds our dockerd's exec root, socket, pidfile and users. */
export const ENGINE_RUN_DIR = '/run/stratakv-chaos';
/** ENGINE_SOCKET is our dockerd's API socket. */
export const ENGINE_SOCKET = join(ENGINE_RUN_DIR, 'docker.sock');
/** ENGINE_PIDFILE is our dockerd's --pidfile. */
export const ENGINE_PIDFILE = join(ENGINE_RUN_DIR, 'dockerd.pid');
/** ENGINE_USERS_DIR holds one file per process using our dockerd, named by its PID. */
export const ENGINE_USERS_DIR = join(ENGINE_RUN_DIR, 'users');
const ENGINE_START_LOCK = join(ENGINE_RUN_DIR, 'starting.pid');
const START_LOCK_ATTEMPTS_MAX = 10;
const ENGINE_EXEC_ROOT = join(ENGINE_RUN_DIR, 'exec');

/** ENGINE_START_TIMEOUT_MS bounds the wait for a dockerd we started to answer /_ping. */
export const ENGINE_START_TIMEOUT_MS = 30_000;
/** ENGINE_STOP_TIMEOUT_MS bounds the wait for our dockerd to exit after SIGTERM, before SIGKILL. */
export const ENGINE_STOP_TIMEOUT_MS = 15_000;
const ENGINE_KILL_TIMEOUT_MS = 5_000;
const PING_TIMEOUT_MS = 2_000;
const POLL_MS = 100;
const ENGINE_LOG_BYTES_MAX = 10 * 1024 * 1024;
const LOG_TAIL_BYTES = 3_000;

/** EngineLog receives one line about what the harness does (starting dockerd, reusing one). */
export type EngineLog = (line: string) => void;

/** DockerEngine is a Docker that answers, and how to let go of it. */
export interface DockerEngine {
  /** The DOCKER_HOST it answers on (also set in process.env). */
  readonly dockerHost: string;
  /** Whether this process started the dockerd (false: a system Docker, or ours started by another run). */
  readonly startedByUs: boolean;
  /** The harness's own dockerd's PID; absent for a Docker that is not ours. */
  readonly pid?: number;
  /**
   * stop lets go of the engine: for the harness's own dockerd, it unregisters this process and
   * ends the dockerd by its PID (SIGTERM, ≤ ENGINE_STOP_TIMEOUT_MS, then SIGKILL) when no other
   * live process uses it. A Docker that is not ours is left alone. Rejects only when the
   * dockerd is still alive after SIGKILL.
   */
  stop(): Promise<void>;
}

/** EngineUnavailable says why no Docker could be had here. */
export interface EngineUnavailable {
  readonly unavailable: string;
}

/** isEngineUnavailable tells an EngineUnavailable from a DockerEngine. */
export function isEngineUnavailable(engine: DockerEngine | EngineUnavailable): engine is EngineUnavailable {
  return 'unavailable' in engine;
}

/**
 * chaosSkipReason is the `skip` option of chaos tests, in the manner of etcdctlSkipReason:
 * a message when this machine cannot run Docker (not root, no dockerd), or `engineUnavailable`
 * (what ensureDockerEngine answered) when given; undefined when tests may run. In CI (CI=true)
 * .ci/run installs docker.io and runs as root, so any reason to skip is a failure: it throws.
 */
export function chaosSkipReason(engineUnavailable?: string): string | undefined {
  const reason = engineUnavailable ?? machineSkipReason();
  if (reason === undefined) return undefined;
  if (process.env.CI === 'true') throw new Error(`the chaos harness cannot run Docker in CI: ${reason} (.ci/run installs docker.io and runs as root)`);
  return reason;
}

function machineSkipReason(): string | undefined {
  if (process.platform !== 'linux') return `Docker members need Linux, not ${process.platform}`;
  if (process.getuid?.() !== 0) return 'the chaos harness runs dockerd and nftables, which need root';
  if (!existsSync(DOCKERD_PATH) && process.env.DOCKER_HOST === undefined && !existsSync(SYSTEM_DOCKER_SOCKET)) {
    return `${DOCKERD_PATH} is not installed (Debian package docker.io)`;
  }
  return undefined;
}

/**
 * ensureDockerEngine answers a Docker that answers /_ping: the one at DOCKER_HOST or
 * /var/run/docker.sock, or the harness's own dockerd (started now unless it already runs);
 * or why none could be had. It sets DOCKER_HOST, TESTCONTAINERS_RYUK_DISABLED=true (nothing
 * reaps: the harness removes what it made by label) and TESTCONTAINERS_HOST_OVERRIDE=localhost
 * (without it testcontainers, seeing /.dockerenv, pulls alpine to find the host).
 */
export async function ensureDockerEngine(options: { readonly log: EngineLog }): Promise<DockerEngine | EngineUnavailable> {
  const { log } = options;
  const machineReason = machineSkipReason();
  if (machineReason !== undefined) return { unavailable: machineReason };

  const candidates = [...(process.env.DOCKER_HOST === undefined ? [] : [process.env.DOCKER_HOST]), `unix://${SYSTEM_DOCKER_SOCKET}`];
  for (const dockerHost of candidates) {
    if (dockerHost === `unix://${ENGINE_SOCKET}`) continue; // ours: below, with its users
    if (await pingDocker(dockerHost)) {
      log(`docker: using the Docker that answers at ${dockerHost}`);
      return useEngine({ dockerHost, startedByUs: false, stop: async () => undefined });
    }
  }

  const dockerHost = `unix://${ENGINE_SOCKET}`;
  if (!existsSync(DOCKERD_PATH)) return { unavailable: `no Docker answers (${candidates.join(', ')}) and ${DOCKERD_PATH} is not installed (Debian package docker.io)` };
  mkdirSync(ENGINE_USERS_DIR, { recursive: true });
  const deadline = Date.now() + ENGINE_START_TIMEOUT_MS;
  let locked = false;
  for (let attempt = 0; attempt < START_LOCK_ATTEMPTS_MAX && !locked; attempt += 1) {
    if (await pingDocker(dockerHost)) {
      const pid = ourDockerdPid();
      log(`docker: using the harness's dockerd already running at ${dockerHost} (PID ${pid ?? 'unknown'})`);
      return useEngine(ownEngine(dockerHost, false, pid));
    }
    locked = takeStartLock();
    if (locked) break;
    // Another process is starting it: wait for it to answer, or for that process to give up.
    const holder = startLockHolder();
    if (await waitForPing(dockerHost, deadline, () => holder !== undefined && startLockHolder() === holder)) continue;
    if (Date.now() >= deadline) return { unavailable: `process ${holder ?? '?'} was starting the harness's dockerd, which did not answer on ${ENGINE_SOCKET} within ${ENGINE_START_TIMEOUT_MS} ms; see ${ENGINE_LOG_PATH}` };
  }
  if (!locked) return { unavailable: `could not take ${ENGINE_START_LOCK} to start dockerd in ${START_LOCK_ATTEMPTS_MAX} attempts (other processes kept starting it)` };
  try {
    // Whoever held the lock before us may have started it meanwhile.
    if (await pingDocker(dockerHost)) return useEngine(ownEngine(dockerHost, false, ourDockerdPid()));
    const started = await startDockerd(log);
    if ('unavailable' in started) return started;
    return useEngine(ownEngine(dockerHost, true, started.pid));
  } finally {
    releaseStartLock();
  }
}

// The start lock (ENGINE_START_LOCK, holding the starter's PID) lets one process at a time
// start our dockerd: two started together both see the socket answer, but one of them has
// died on the pidfile. A lock whose holder is dead is taken over.
function takeStartLock(): boolean {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      writeFileSync(ENGINE_START_LOCK, `${process.pid}\n`, { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (startLockHolder() !== undefined) return false;
    try {
      unlinkSync(ENGINE_START_LOCK); // its holder died while starting
    } catch {
      // Another process took it over first.
    }
  }
  return false;
}

// startLockHolder answers the live process holding the start lock, if any.
function startLockHolder(): number | undefined {
  try {
    const pid = Number(readFileSync(ENGINE_START_LOCK, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function releaseStartLock(): void {
  try {
    if (Number(readFileSync(ENGINE_START_LOCK, 'utf8').trim()) === process.pid) unlinkSync(ENGINE_START_LOCK);
  } catch {
    // Already gone.
  }
}

// useEngine points this process (and testcontainers, when it is loaded) at the engine.
function useEngine(engine: DockerEngine): DockerEngine {
  process.env.DOCKER_HOST = engine.dockerHost;
  process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  process.env.TESTCONTAINERS_HOST_OVERRIDE = 'localhost';
  return engine;
}

/**
 * loadTestcontainers imports testcontainers, once ensureDockerEngine has pointed the
 * environment at an engine (it reads DOCKER_HOST when it first connects and keeps that client).
 */
export async function loadTestcontainers(): Promise<typeof Testcontainers> {
  if (process.env.DOCKER_HOST === undefined || process.env.TESTCONTAINERS_RYUK_DISABLED !== 'true') {
    throw new Error('loadTestcontainers: call ensureDockerEngine first (DOCKER_HOST and TESTCONTAINERS_RYUK_DISABLED must be set before testcontainers connects)');
  }
  return import('testcontainers');
}

/** DockerClient is testcontainers' dockerode, for what testcontainers has no call for (pause, kill, build output). */
export type DockerClient = Awaited<ReturnType<typeof Testcontainers.getContainerRuntimeClient>>['container']['dockerode'];

/** dockerClient answers testcontainers' dockerode for the engine ensureDockerEngine chose. */
export async function dockerClient(): Promise<DockerClient> {
  const testcontainers = await loadTestcontainers();
  return (await testcontainers.getContainerRuntimeClient()).container.dockerode;
}

// ownEngine is the harness's dockerd as used by this process: registered as a user until stop().
function ownEngine(dockerHost: string, startedByUs: boolean, pid: number | undefined): DockerEngine {
  liveUsers(); // forgets the users that died without stop()
  const userFile = join(ENGINE_USERS_DIR, String(process.pid));
  writeFileSync(userFile, `${new Date().toISOString()}\n`);
  let stopping: Promise<void> | undefined;
  return {
    dockerHost,
    startedByUs,
    ...(pid === undefined ? {} : { pid }),
    stop: () => {
      stopping ??= stopOwnEngine(userFile, pid);
      return stopping;
    },
  };
}

async function stopOwnEngine(userFile: string, pid: number | undefined): Promise<void> {
  try {
    unlinkSync(userFile);
  } catch {
    // Already gone: someone cleared the users folder; nothing else to undo.
  }
  // The PID must still be our dockerd's: a pidfile can outlive its process, and PIDs are reused.
  if (pid === undefined || !isOurDockerd(pid)) return;
  const others = liveUsers().filter((user) => user !== process.pid);
  if (others.length > 0) return; // the last of them stops it
  signal(pid, 'SIGTERM');
  if (await waitForExit(pid, ENGINE_STOP_TIMEOUT_MS)) return;
  signal(pid, 'SIGKILL');
  if (!(await waitForExit(pid, ENGINE_KILL_TIMEOUT_MS))) throw new Error(`dockerd PID ${pid} is still alive ${ENGINE_KILL_TIMEOUT_MS} ms after SIGKILL`);
}

// signal sends a signal to a process that may have exited meanwhile.
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

// isOurDockerd tells whether `pid` is a live dockerd serving our socket (its command line names it).
function isOurDockerd(pid: number): boolean {
  try {
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return commandLine[0] === DOCKERD_PATH && commandLine.includes(`unix://${ENGINE_SOCKET}`);
  } catch {
    return false;
  }
}

// liveUsers lists the PIDs registered in ENGINE_USERS_DIR that are alive, removing the others.
function liveUsers(): number[] {
  const alive: number[] = [];
  for (const name of existsSync(ENGINE_USERS_DIR) ? readdirSync(ENGINE_USERS_DIR) : []) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) alive.push(pid);
    else {
      try {
        unlinkSync(join(ENGINE_USERS_DIR, name));
      } catch {
        // Removed by another process meanwhile.
      }
    }
  }
  return alive;
}

// startDockerd starts our dockerd in a session of its own (it outlives this process if this
// process dies; the next run finds it by its socket) and waits for it to answer.
async function startDockerd(log: EngineLog): Promise<{ readonly pid: number } | EngineUnavailable> {
  const runningPid = ourDockerdPid();
  if (runningPid !== undefined) {
    // Ours, running, yet it did not answer: a second one would die on the pidfile. Not ours
    // to kill (this process did not start it), so say so.
    return { unavailable: `dockerd PID ${runningPid} (${ENGINE_PIDFILE}) is running but does not answer on ${ENGINE_SOCKET}; see ${ENGINE_LOG_PATH}` };
  }
  mkdirSync(ENGINE_DATA_ROOT, { recursive: true });
  mkdirSync(ENGINE_EXEC_ROOT, { recursive: true });
  rotateEngineLog();
  const logStartBytes = existsSync(ENGINE_LOG_PATH) ? statSync(ENGINE_LOG_PATH).size : 0;
  const logFd = openSync(ENGINE_LOG_PATH, 'a');
  const args = ['--data-root', ENGINE_DATA_ROOT, '--exec-root', ENGINE_EXEC_ROOT, '--host', `unix://${ENGINE_SOCKET}`, '--pidfile', ENGINE_PIDFILE];
  log(`docker: starting ${DOCKERD_PATH} ${args.join(' ')} (log: ${ENGINE_LOG_PATH})`);
  const startedAt = performance.now();
  let child;
  try {
    child = spawn(DOCKERD_PATH, args, { detached: true, stdio: ['ignore', logFd, logFd] });
  } finally {
    closeSync(logFd);
  }
  let exitedWith: string | undefined;
  child.once('exit', (code, signal) => (exitedWith = signal === null ? `exit code ${String(code)}` : `signal ${signal}`));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  child.unref();
  const pid = child.pid;
  if (pid === undefined) {
    const error = await spawnError;
    return { unavailable: `could not start ${DOCKERD_PATH}: ${error.message}` };
  }
  const answered = await waitForPing(`unix://${ENGINE_SOCKET}`, Date.now() + ENGINE_START_TIMEOUT_MS, () => exitedWith === undefined);
  if (answered) {
    log(`docker: dockerd PID ${pid} answers after ${Math.round(performance.now() - startedAt)} ms`);
    return { pid };
  }
  const tail = engineLogTail(logStartBytes);
  if (exitedWith === undefined) {
    // It runs but never answered: it is ours, so end it rather than leave it half-started.
    signal(pid, 'SIGKILL');
    await waitForExit(pid, ENGINE_KILL_TIMEOUT_MS);
    return { unavailable: `dockerd PID ${pid} did not answer on ${ENGINE_SOCKET} within ${ENGINE_START_TIMEOUT_MS} ms (killed); ${ENGINE_LOG_PATH} ends with:\n${tail}` };
  }
  return { unavailable: `dockerd ended (${exitedWith}) before answering on ${ENGINE_SOCKET}; ${ENGINE_LOG_PATH} ends with:\n${tail}` };
}

function rotateEngineLog(): void {
  if (existsSync(ENGINE_LOG_PATH) && statSync(ENGINE_LOG_PATH).size > ENGINE_LOG_BYTES_MAX) renameSync(ENGINE_LOG_PATH, `${ENGINE_LOG_PATH}.old`);
}

function engineLogTail(fromBytes: number): string {
  try {
    const text = readFileSync(ENGINE_LOG_PATH).subarray(fromBytes).toString('utf8');
    return text.slice(-LOG_TAIL_BYTES);
  } catch (error) {
    return `(could not read it: ${(error as Error).message})`;
  }
}

// ourDockerdPid answers the PID in our pidfile if it is our dockerd, running.
function ourDockerdPid(): number | undefined {
  const pid = readPidfile();
  return pid !== undefined && isOurDockerd(pid) ? pid : undefined;
}

function readPidfile(): number | undefined {
  try {
    const pid = Number(readFileSync(ENGINE_PIDFILE, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(POLL_MS);
  }
  return !isAlive(pid);
}

// waitForPing asks /_ping every POLL_MS until it answers, the deadline passes or `keepWaiting` says no.
async function waitForPing(dockerHost: string, deadline: number, keepWaiting: () => boolean): Promise<boolean> {
  while (Date.now() < deadline) {
    if (await pingDocker(dockerHost)) return true;
    if (!keepWaiting()) return pingDocker(dockerHost);
    await sleep(POLL_MS);
  }
  return false;
}

/**
 * pingDocker tells whether the Docker API at `dockerHost` (unix:///path or tcp://host:port)
 * answers GET /_ping with 200 within PING_TIMEOUT_MS. Never rejects.
 */
export function pingDocker(dockerHost: string): Promise<boolean> {
  let target: { socketPath: string } | { host: string; port: number };
  if (dockerHost.startsWith('unix://')) {
    const socketPath = dockerHost.slice('unix://'.length);
    if (!existsSync(socketPath)) return Promise.resolve(false);
    target = { socketPath };
  } else if (dockerHost.startsWith('tcp://') || dockerHost.startsWith('http://')) {
    const url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
    target = { host: url.hostname, port: Number(url.port || 2375) };
  } else {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const call = request({ ...target, path: '/_ping', method: 'GET', timeout: PING_TIMEOUT_MS }, (response) => {
      response.resume();
      response.once('end', () => resolve(response.statusCode === 200));
      response.once('error', () => resolve(false));
    });
    call.once('timeout', () => call.destroy(new Error('ping timed out')));
    call.once('error', () => resolve(false));
    call.end();
  });
}

/**
 * withDeadline settles as `work` does, or rejects after timeoutMs naming `what` (for the
 * Docker calls that take no AbortSignal). A late rejection of `work` is swallowed, so
 * nothing goes unhandled.
 */
export function withDeadline<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  work.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} took longer than ${timeoutMs} ms`)), timeoutMs);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

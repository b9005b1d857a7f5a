// Headless Chromium for tests: load a page, let its scripts run for a budget of virtual time,
// and answer the DOM as it is then (dumpDom) or a PNG of the window (screenshot).
//
// Each call runs one `chromium --headless` process with a fresh --user-data-dir (removed
// afterwards), so runs share no profile, cache or cookies. --virtual-time-budget makes the page's
// timers run as fast as the CPU allows: a 7 s budget sees three 2 s refreshes in well under a
// second of wall time, and virtual time waits while a fetch is in flight, so a slow test server
// costs wall time, never a missed refresh. A hard wall-clock timeout bounds every call: on
// timeout the whole process group (Chromium forks a zygote, a renderer, a GPU process) is
// killed by its id, the process having been started as the leader of its own group.
//
// We run as root, hence --no-sandbox. Debian's /usr/bin/chromium is a shell wrapper that execs
// /usr/lib/chromium/chromium, so the process we start is Chromium itself.
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** CHROMIUM_PATHS are where findChromium looks, in order, after $STRATAKV_CHROMIUM. */
export const CHROMIUM_PATHS = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome-stable', '/usr/bin/google-chrome'] as const;

/** CHROMIUM_MISSING is the reason a test gives when it skips for want of Chromium. */
export const CHROMIUM_MISSING = 'headless Chromium not found (apt-get install chromium, or set STRATAKV_CHROMIUM to its path): browser test skipped';

/** BUDGET_MS_MAX bounds the virtual time one call may ask for. */
export const BUDGET_MS_MAX = 120_000;
/** TIMEOUT_GRACE_MS is the wall time a call gets beyond its budget before it is killed: start-up on a loaded machine, and fetches. */
export const TIMEOUT_GRACE_MS = 30_000;
/** DOM_BYTES_MAX bounds what dumpDom reads from Chromium's stdout. */
export const DOM_BYTES_MAX = 32 * 1024 * 1024;
/** STDERR_BYTES_KEPT is how much of Chromium's stderr (its tail) a failure reports. */
export const STDERR_BYTES_KEPT = 64 * 1024;

/** ChromiumRunOptions: the virtual time the page runs for, and the wall-clock limit (default budget + TIMEOUT_GRACE_MS). */
export interface ChromiumRunOptions {
  readonly budgetMs: number;
  readonly timeoutMs?: number;
}

/** ScreenshotOptions adds the window size, in CSS pixels (the device scale factor is 1). */
export interface ScreenshotOptions extends ChromiumRunOptions {
  readonly width: number;
  readonly height: number;
}

/** findChromium answers the path of a headless-capable Chromium, or undefined when none is installed. */
export function findChromium(): string | undefined {
  const fromEnvironment = process.env['STRATAKV_CHROMIUM'];
  const candidates = fromEnvironment === undefined || fromEnvironment === '' ? CHROMIUM_PATHS : [fromEnvironment];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // Not here; try the next.
    }
  }
  return undefined;
}

/** dumpDom loads `url`, runs it for `budgetMs` of virtual time, and answers the serialized DOM. */
export async function dumpDom(url: string, options: ChromiumRunOptions): Promise<string> {
  const { stdout } = await runChromium(['--dump-dom', url], options);
  if (stdout.length === 0) throw new Error(`chromium --dump-dom ${url} printed nothing`);
  return stdout;
}

/** screenshot loads `url` in a `width`×`height` window, runs it for `budgetMs` of virtual time, and writes a PNG to `path`; answers the PNG's size. */
export async function screenshot(url: string, path: string, options: ScreenshotOptions): Promise<{ widthPx: number; heightPx: number }> {
  if (!(Number.isInteger(options.width) && options.width > 0 && options.width <= 8192)) throw new RangeError(`screenshot width ${options.width} is not in 1..8192`);
  if (!(Number.isInteger(options.height) && options.height > 0 && options.height <= 8192)) throw new RangeError(`screenshot height ${options.height} is not in 1..8192`);
  const target = resolve(path);
  // A PNG left by an earlier run must not pass for this one.
  await rm(target, { force: true });
  const { stderr } = await runChromium([
    `--screenshot=${target}`, `--window-size=${options.width},${options.height}`, '--hide-scrollbars', '--force-device-scale-factor=1', url,
  ], options);
  const size = await readPngSize(target);
  if (size === undefined) throw new Error(`chromium --screenshot did not write a PNG to ${target}\n${describeStderr(stderr)}`);
  return size;
}

async function runChromium(args: readonly string[], options: ChromiumRunOptions): Promise<{ stdout: string; stderr: string }> {
  const executable = findChromium();
  if (executable === undefined) throw new Error(CHROMIUM_MISSING);
  if (!(Number.isInteger(options.budgetMs) && options.budgetMs >= 0 && options.budgetMs <= BUDGET_MS_MAX)) {
    throw new RangeError(`budgetMs ${options.budgetMs} is not in 0..${BUDGET_MS_MAX}`);
  }
  const timeoutMs = options.timeoutMs ?? options.budgetMs + TIMEOUT_GRACE_MS;
  if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs ${timeoutMs} must be positive`);
  const runDir = await mkdtemp(join(tmpdir(), 'stratakv-chromium-'));
  // HOME and the XDG directories point into the run's directory too: Chromium otherwise writes a
  // crash database under ~/.config/chromium and dconf's cache under ~/.cache.
  const environment = { ...process.env, HOME: runDir, XDG_CONFIG_HOME: join(runDir, 'config'), XDG_CACHE_HOME: join(runDir, 'cache') };
  try {
    return await runInGroup(executable, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', `--user-data-dir=${join(runDir, 'profile')}`,
      `--virtual-time-budget=${options.budgetMs}`, '--no-first-run', '--no-default-browser-check', '--disable-extensions',
      '--disable-background-networking', '--disable-sync', '--disable-component-update', '--mute-audio', ...args,
    ], environment, timeoutMs);
  } finally {
    await killCrashHandlers(runDir);
    await rm(runDir, { recursive: true, force: true, maxRetries: 3, retryDelay: 100 });
  }
}

function runInGroup(executable: string, args: readonly string[], environment: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, rejectPromise) => {
    // detached: the child leads a new process group, so one kill by its id ends all its helpers.
    const child = spawn(executable, args, { detached: true, env: environment, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdoutChunks: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';
    let failure: string | undefined;
    const killGroup = (why?: string): void => {
      if (why !== undefined) failure ??= why;
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // The group is already gone.
      }
    };
    const timer = setTimeout(() => killGroup(`timed out after ${timeoutMs} ms (killed process group ${child.pid})`), timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      stdoutBytes += chunk.byteLength;
      if (stdoutBytes > DOM_BYTES_MAX) killGroup(`printed more than ${DOM_BYTES_MAX} bytes`);
      else stdoutChunks.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_BYTES_KEPT);
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      rejectPromise(new Error(`cannot start ${executable}: ${error.message}`, { cause: error }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      // Chromium's helpers (zygote, utility processes) outlive the browser by a moment; end them
      // now, by the group we started, so no run leaves a process behind.
      killGroup();
      const command = `${executable} ${args.filter((arg) => !arg.startsWith('--user-data-dir=')).join(' ')}`;
      if (failure !== undefined) rejectPromise(new Error(`${command}: ${failure}\n${describeStderr(stderr)}`));
      else if (code !== 0) rejectPromise(new Error(`${command}: exited with ${code ?? signal}\n${describeStderr(stderr)}`));
      else resolvePromise({ stdout: Buffer.concat(stdoutChunks).toString('utf8'), stderr });
    });
  });
}

/**
 * killCrashHandlers ends the crash handlers of a run. Debian's build starts chrome_crashpad_handler
 * in a session of its own, out of reach of the group kill (and --disable-crashpad-for-testing
 * makes this build's network service crash), so they are found by the run's unique directory,
 * which their command line names, and killed by their ids.
 */
async function killCrashHandlers(runDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let commandLine: string;
    try {
      commandLine = await readFile(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!commandLine.includes('crashpad') || !commandLine.includes(runDir)) continue;
    try {
      process.kill(Number(entry), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** describeStderr keeps the lines of Chromium's stderr that can explain a failure: in a container without D-Bus every run logs dozens of D-Bus errors, and Debian's wrapper a shell warning. */
function describeStderr(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  const noise = /dbus|DBus|\/usr\/bin\/chromium: \d+: \[/;
  const kept = lines.filter((line) => !noise.test(line));
  const omitted = lines.length - kept.length;
  return `chromium stderr (${omitted} D-Bus/wrapper lines omitted):\n${kept.slice(-40).join('\n')}`;
}

async function readPngSize(path: string): Promise<{ widthPx: number; heightPx: number } | undefined> {
  let file;
  try {
    file = await open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const header = Buffer.alloc(24);
    const { bytesRead } = await file.read(header, 0, 24, 0);
    const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    if (bytesRead < 24 || !header.subarray(0, 8).equals(signature) || header.toString('latin1', 12, 16) !== 'IHDR') return undefined;
    return { widthPx: header.readUInt32BE(16), heightPx: header.readUInt32BE(20) };
  } finally {
    await file.close();
  }
}

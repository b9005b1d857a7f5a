// `stratakv dev` as a person runs it: the cluster comes up, prints its endpoints and an
// etcdctl example, serves, and stops cleanly (every member process gone) on SIGINT.
// It runs twice where the machine has a Node older than the engines (Node 20 here): started
// by that Node, the launcher runs the CLI in a Node 24 child, and a SIGINT sent to the
// launcher's PID alone (as `kill -INT`, or CI without a terminal) must reach the cluster.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import { test } from 'node:test';
import { etcdctl, etcdctlSkipReason, freePort } from '../integration/cluster-process.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;

// freePortRange finds `count` consecutive ports free on 127.0.0.1 now (bounded attempts).
async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const base = await freePort();
    let free = true;
    for (let offset = 1; offset < count && free; offset += 1) free = await portIsFree(base + offset);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** olderNode finds a node on PATH older than the engines (>= 22.22), the machine's own Node 20 here. */
function olderNode(): string | undefined {
  for (const directory of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(directory, 'node');
    try {
      accessSync(candidate, constants.X_OK);
    } catch {
      continue;
    }
    const version = spawnSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8', timeout: 10_000 }).stdout.trim();
    const [major = 0, minor = 0] = version.split('.').map(Number);
    if (major > 0 && (major < 22 || (major === 22 && minor < 22))) return candidate;
  }
  return undefined;
}

const OLDER_NODE = olderNode();
const LAUNCHERS: ReadonlyArray<readonly [string, string | undefined, string | undefined]> = [
  ['this Node', process.execPath, undefined],
  ['a Node older than the engines (the launcher runs Node 24 as its child)', OLDER_NODE, OLDER_NODE === undefined ? 'no node older than 22.22 on PATH' : undefined],
];

// How the stop arrives: `kill -INT PID`; or a terminal's Ctrl-C, which reaches the whole
// foreground process group (the launcher passes it on as well, so its child gets it twice),
// pressed a second time while the members are stopping.
const STOPS: ReadonlyArray<readonly [string, (pid: number) => void]> = [
  ['SIGINT to its PID', (pid) => process.kill(pid, 'SIGINT')],
  [
    'SIGINT to its process group, twice (Ctrl-C at a terminal, pressed again)',
    (pid) => {
      process.kill(-pid, 'SIGINT');
      setTimeout(() => {
        try {
          process.kill(-pid, 'SIGINT');
        } catch {
          // Already gone: the stop was quicker than the second press.
        }
      }, 100);
    },
  ],
];

for (const [launchedBy, nodeBinary, noOlderNode] of LAUNCHERS) for (const [stopHow, stop] of STOPS) {
  test(`stratakv dev, started by ${launchedBy}, starts 3 members, prints endpoints and an etcdctl example, and stops cleanly on ${stopHow}`, { skip: etcdctlSkipReason() ?? noOlderNode }, async () => {
    assert.ok(nodeBinary !== undefined);
    const directory = mkdtempSync(join(tmpdir(), 'stratakv-dev-test-'));
    // Nine consecutive free ports (dev uses base .. base+8): other tests run at the same time.
    const basePort = await freePortRange(9);
    // Its own process group, so the SIGINT below reaches the launcher alone, not its child.
    const child = spawn(nodeBinary, [CLI, 'dev', `--base-port=${basePort}`], { cwd: directory, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 30_000;
      while (!output.includes('Ctrl-C stops the cluster') && child.exitCode === null && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.match(output, /a 3-member cluster is up/, output);
      assert.match(output, /etcdctl --endpoints=127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+ put hello world/);
      assert.ok(existsSync(join(directory, 'stratakv-dev', 'n1', 'member')), 'data lives in ./stratakv-dev');
      const endpoints = /--endpoints=(\S+) put hello world/.exec(output)?.[1]?.split(',') ?? [];
      assert.equal(endpoints.length, 3);
      assert.equal(etcdctl(endpoints, ['put', 'hello', 'world']).stdout, 'OK\n');
      assert.equal(etcdctl(endpoints, ['get', 'hello']).stdout, 'hello\nworld\n');
      const pids = [...output.matchAll(/pid (\d+)/g)].map((match) => Number(match[1]));
      assert.equal(pids.length, 3);
      // The status page and /health, at the URLs it printed.
      const page = /status page: (http:\/\/\S+)\//.exec(output)?.[1];
      assert.ok(page !== undefined, output);
      const html = await (await fetch(`${page}/`, { signal: AbortSignal.timeout(10_000) })).text();
      for (const name of ['n1', 'n2', 'n3']) assert.match(html, new RegExp(`>${name}<`));
      assert.deepEqual(await (await fetch(`${page}/health`, { signal: AbortSignal.timeout(10_000) })).json(), { health: 'true', reason: '' });

      assert.ok(child.pid !== undefined);
      stop(child.pid);
      const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 20_000))]);
      assert.equal(code, 0, output);
      assert.match(output, /stratakv dev: stopped/);
      for (const pid of pids) assert.equal(isAlive(pid), false, `member process ${pid} is gone`);
    } finally {
      if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      rmSync(directory, { recursive: true, force: true });
    }
  });
}


// Crash tests with real processes: a child appends under load and is killed with SIGKILL at
// a random moment; on restart every acknowledged entry is there and the log is intact.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DiskLogStore } from '../../src/storage/disk-log-store.ts';
import { NodeFileSystem } from '../../src/storage/file-system.ts';
import { SeededRandom } from '../../src/util/random.ts';
import { isCrashEntryIntact } from './crash-entry.ts';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'crash-child.ts');
const FATAL_CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fatal-child.ts');
const KILLS = 6;
const CHILD_WAIT_MS_MAX = 15_000;

// runUntilKilled starts the child, kills it after `killAfterMs` of appending, and returns the
// highest index it acknowledged.
function runUntilKilled(directory: string, run: number, seed: number, killAfterMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, directory, String(run), String(seed)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let acknowledged = 0;
    let buffered = '';
    let killTimer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const match = /^ack (\d+)$/.exec(line);
        if (match !== null) acknowledged = Math.max(acknowledged, Number(match[1]));
        // Start the kill clock at the first acknowledgement: start-up time varies a lot.
        if (killTimer === undefined) killTimer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    const watchdog = setTimeout(() => child.kill('SIGKILL'), CHILD_WAIT_MS_MAX);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(watchdog);
      if (killTimer !== undefined) clearTimeout(killTimer);
      resolve(acknowledged);
    });
  });
}

test('SIGKILL at random points never loses an acknowledged entry', async () => {
  const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
  const random = new SeededRandom(seed);
  const directory = mkdtempSync(path.join(tmpdir(), 'stratakv-crash-'));
  after(() => rmSync(directory, { recursive: true, force: true }));
  let acknowledgedMax = 0;
  try {
    for (let run = 1; run <= KILLS; run += 1) {
      const acknowledged = await runUntilKilled(directory, run, seed + run, 20 + random.intBelow(400));
      acknowledgedMax = Math.max(acknowledgedMax, acknowledged);
      const log = DiskLogStore.openSync({ fileSystem: new NodeFileSystem(), directory, logger: { debug() {}, info() {}, warn() {} } });
      assert.ok(acknowledged > 0, `run ${run} acknowledged nothing`);
      assert.ok(log.lastIndex() >= acknowledgedMax, `run ${run}: acknowledged ${acknowledgedMax}, recovered ${log.lastIndex()}`);
      assert.ok(log.initialState().hardState.commit >= acknowledgedMax, 'the hard state saved with the entries survives');
      let previousTerm = 0;
      for (let index = log.firstIndex(); index <= log.lastIndex(); index += 1) {
        const [entry] = log.entries(index, index + 1, Infinity);
        assert.ok(entry !== undefined && entry.index === index, `entry ${index} missing`);
        assert.ok(isCrashEntryIntact(entry), `entry ${index} is damaged`);
        assert.ok(entry.term >= previousTerm, `terms go back at ${index}`);
        previousTerm = entry.term;
      }
      await log.close();
    }
  } catch (error) {
    console.error(`process crash test failed with seed ${seed}; replay with STRATAKV_SEED=${seed}`);
    throw error;
  }
});

test('an fdatasync error stops the process (the default fatal handler aborts)', async () => {
  // Run in a scratch directory so that a core dump, if the machine writes one, lands there.
  const scratch = mkdtempSync(path.join(tmpdir(), 'stratakv-fatal-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  const { signal, stdout } = await new Promise<{ signal: NodeJS.Signals | null; stdout: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [FATAL_CHILD], { cwd: scratch, stdio: ['ignore', 'pipe', 'ignore'] });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (output += chunk));
    const watchdog = setTimeout(() => child.kill('SIGKILL'), CHILD_WAIT_MS_MAX);
    child.on('error', reject);
    child.on('close', (_code, closeSignal) => {
      clearTimeout(watchdog);
      resolve({ signal: closeSignal, stdout: output });
    });
  });
  assert.equal(signal, 'SIGABRT');
  assert.equal(stdout, '');
});

// Running `stratakv migrate copy ...` from the end-to-end copy tests (copy-etcd, copy-stratakv):
// to its end with its JSON answer, and a seeded random stream for their schedules.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { SeededRandom } from '../../src/util/random.ts';

/** COPY_CLI is the stratakv CLI's entry point. */
export const COPY_CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;

/** copyCli runs `stratakv migrate copy ...` to its end (bounded by timeoutMs) and answers its last JSON line (-w json). */
export function copyCli(args: readonly string[], timeoutMs: number): { status: number | null; json: Record<string, unknown>; stderr: string } {
  const result = spawnSync(process.execPath, [COPY_CLI, 'migrate', 'copy', ...args, '-w', 'json'], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  const line = result.stdout.trim().split('\n').pop() ?? '';
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(line) as Record<string, unknown>;
  } catch {
    assert.fail(`stratakv migrate copy ${args.join(' ')} printed no JSON (status ${String(result.status)}): ${result.stdout}\n${result.stderr}`);
  }
  return { status: result.status, json, stderr: result.stderr };
}

/** seeded is a stream of numbers in [0, 1) from a seed. */
export function seeded(seed: number): () => number {
  const random = new SeededRandom(seed);
  return () => random.nextUint32() / 0x1_0000_0000;
}

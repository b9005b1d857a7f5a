// The CLI entry point starts under the running Node and answers usage errors with exit 2.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

const entry = new URL('../../cmd/stratakv.js', import.meta.url).pathname;

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('stratakv version prints the package version', () => {
  const result = run('version');
  assert.equal(result.status, 0);
  assert.match(result.stdout, /^stratakv \d+\.\d+\.\d+ \(node /);
});

test('an unknown command is a usage error (exit 2) that names it', () => {
  const result = run('frobnicate');
  assert.equal(result.status, 2);
  assert.match(result.stderr, /frobnicate/);
});

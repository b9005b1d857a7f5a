// `stratakv migrate`'s command line: --to's parsing, usage errors before anything is asked of a
// cluster (exit 2), an unreachable cluster (exit 1 with the next command to run), the test
// failpoint's format, and the catch-up progress line. The migration itself is tested with
// real processes in test/integration/migrate.test.ts.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

import { formatLearner, parseTargets } from '../../cmd/migrate-verb.ts';
import { UsageError } from '../../cmd/serve-flags.ts';

const entry = new URL('../../cmd/stratakv.js', import.meta.url).pathname;

function run(args: readonly string[], env: Readonly<Record<string, string>> = {}): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('--to reads NAME=PEER_URL pairs; a name given twice gets both URLs; anything else is a usage error naming --to', () => {
  assert.deepEqual(parseTargets('b1=http://10.0.0.1:2380,b2=http://10.0.0.2:2380,b1=http://10.0.1.1:2380'), [
    { name: 'b1', peerUrls: ['http://10.0.0.1:2380', 'http://10.0.1.1:2380'] },
    { name: 'b2', peerUrls: ['http://10.0.0.2:2380'] },
  ]);
  for (const bad of ['b1', '=http://x:1', 'b1=', 'b1=10.0.0.1:2380', 'b1=https://x:1', 'b1=http://x:99999']) {
    assert.throws(() => parseTargets(bad), (error: unknown) => error instanceof UsageError && error.flag === '--to', bad);
  }
});

test('usage errors exit 2 before any cluster is asked: an unknown subcommand, plan without --to, a bad flag, a bad failpoint', () => {
  for (const args of [['migrate', 'dance'], ['migrate', 'plan', '--endpoints=127.0.0.1:1'], ['migrate', 'run', '--bogus'], ['migrate', 'run', '-w', 'yaml']]) {
    const result = run(args);
    assert.equal(result.status, 2, `${args.join(' ')}: ${result.stderr}`);
  }
  const failpoint = run(['migrate', 'run', '--endpoints=127.0.0.1:1'], { STRATAKV_MIGRATE_FAILPOINT: 'explode' });
  assert.equal(failpoint.status, 2, failpoint.stderr);
  assert.match(failpoint.stderr, /kill-before-journal:STEP/);
});

test('an unreachable cluster: exit 1, the error and its code, and the command that resumes; as JSON with -w json', () => {
  const text = run(['migrate', 'status', '--endpoints=127.0.0.1:1']);
  assert.equal(text.status, 1);
  assert.match(text.stderr, /\((UNAVAILABLE|TIMEOUT)\)/);
  const json = run(['migrate', 'run', '--endpoints=127.0.0.1:1', '-w', 'json']);
  assert.equal(json.status, 1);
  const answer = JSON.parse(json.stdout) as { result: string; code: string; next: string };
  assert.equal(answer.result, 'failed');
  // Nothing answers: the reads wait out an election's worth of attempts, then give up.
  assert.ok(answer.code === 'UNAVAILABLE' || answer.code === 'TIMEOUT', answer.code);
  assert.equal(answer.next, 'stratakv migrate run --endpoints 127.0.0.1:1');
});

test('a learner\'s progress line: snapshot bytes, or log entries behind with the closing rate, and an ETA once a rate is known', () => {
  const snapshot = formatLearner({ id: 1, name: 'b1', match: 0, lastIndex: 900, snapshot: { acknowledgedBytes: 512 * 1024 * 1024, byteLength: 1024 * 1024 * 1024 }, caughtUp: false }, { entriesPerSecond: 0, bytesPerSecond: 64 * 1024 * 1024 });
  assert.match(snapshot, /\[#{12}\.{12}\] snapshot 512\.0 \/ 1024\.0 MiB {2}64\.0 MiB\/s {2}ETA 8 s/);
  const log = formatLearner({ id: 2, name: 'b2', match: 800, lastIndex: 1000, snapshot: undefined, caughtUp: false }, { entriesPerSecond: 0, bytesPerSecond: 0 });
  assert.match(log, /log 800 \/ 1000 entries \(200 behind, closing 0\/s\) {2}ETA --/);
  assert.match(formatLearner({ id: 3, name: 'b3', match: 1000, lastIndex: 1000, snapshot: undefined, caughtUp: true }, { entriesPerSecond: 0, bytesPerSecond: 0 }), /caught up \(entry 1000\)/);
});

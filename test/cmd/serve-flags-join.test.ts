// serve's own flags for live migration: --zone (a member's zone label) and --join (start a
// member that waits until a running cluster adds it), with their checks and conflicts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseServeFlags, UsageError } from '../../cmd/serve-flags.ts';

function refusal(args: readonly string[]): UsageError {
  try {
    parseServeFlags(args);
  } catch (error) {
    assert.ok(error instanceof UsageError, `expected a UsageError, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${JSON.stringify(args)} to be refused`);
}

test('--zone takes 1 to 63 of A-Z a-z 0-9 . _ -; none by default', () => {
  assert.equal(parseServeFlags([]).zone, '');
  for (const zone of ['a', 'eu-west-1a', 'zone_B.2', 'x'.repeat(63)]) assert.equal(parseServeFlags([`--zone=${zone}`]).zone, zone);
  assert.equal(parseServeFlags(['--zone', 'b']).zone, 'b');
  for (const zone of ['', 'x'.repeat(64), 'with space', 'a/b', 'zone:1', 'é']) {
    assert.equal(refusal([`--zone=${zone}`]).flag, '--zone', JSON.stringify(zone));
  }
  assert.equal(refusal(['--zone']).flag, '--zone');
});

test('--join reads client URLs, makes the member an existing one, and --join-timeout bounds the wait', () => {
  const options = parseServeFlags([
    '--name=n4',
    '--initial-advertise-peer-urls=http://10.0.0.4:2380',
    '--join', 'http://10.0.0.1:2379,http://10.0.0.2:2379/',
    '--join-timeout=30000',
    '--zone=b',
  ]);
  assert.deepEqual(options.join, ['http://10.0.0.1:2379', 'http://10.0.0.2:2379']);
  assert.equal(options.joinTimeoutMs, 30_000);
  assert.equal(options.zone, 'b');
  // Never a bootstrap, even before the cluster's own list and token are known.
  assert.equal(options.initialClusterState, 'existing');
  assert.deepEqual(options.initialCluster, [{ name: 'n4', peerUrls: ['http://10.0.0.4:2380'] }]);
  assert.equal(parseServeFlags(['--join=http://127.0.0.1:2379']).joinTimeoutMs, 0);
  assert.deepEqual(parseServeFlags([]).join, []);
});

test('--join refuses bad URLs and a bad timeout, naming the flag', () => {
  assert.equal(refusal(['--join=']).flag, '--join');
  assert.equal(refusal(['--join=127.0.0.1:2379']).flag, '--join');
  assert.equal(refusal(['--join=https://127.0.0.1:2379']).flag, '--join');
  assert.equal(refusal(['--join=http://127.0.0.1:2379,http://127.0.0.1:2379']).flag, '--join');
  assert.equal(refusal(['--join=http://127.0.0.1:2379', '--join-timeout=-1']).flag, '--join-timeout');
  assert.equal(refusal(['--join=http://127.0.0.1:2379', '--join-timeout=soon']).flag, '--join-timeout');
  assert.equal(refusal(['--join-timeout=1000']).flag, '--join-timeout');
});

test('--join conflicts with each --initial-cluster* flag, which the usage error names', () => {
  const join = '--join=http://127.0.0.1:2379';
  assert.equal(refusal([join, '--initial-cluster=default=http://localhost:2380']).flag, '--initial-cluster');
  assert.equal(refusal([join, '--initial-cluster-state=existing']).flag, '--initial-cluster-state');
  assert.equal(refusal(['--initial-cluster-token=t', join]).flag, '--initial-cluster-token');
  assert.match(refusal([join, '--initial-cluster-state=new']).message, /--initial-cluster-state cannot be used with --join/);
});

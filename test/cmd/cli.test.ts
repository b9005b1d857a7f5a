// The CLI entry point starts under the running Node and answers usage errors with exit 2;
// its client verbs are checked against a real etcd member.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { EtcdClient } from '../../src/client/index.ts';
import { etcdSkipReason, freePorts, startEtcdCluster, type EtcdCluster } from '../client/etcd-process.ts';

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

// ---- serve's flags and the client verbs ----

test('serve refuses a bad flag with a usage error (exit 2) that names it', () => {
  const unknown = run('serve', '--bogus=1');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /--bogus/);
  const election = run('serve', '--heartbeat-interval', '100', '--election-timeout', '400');
  assert.equal(election.status, 2);
  assert.match(election.stderr, /--election-timeout/);
  const format = run('serve', '--log-format=pretty');
  assert.equal(format.status, 2);
  assert.match(format.stderr, /--log-format/);
});

test('dev refuses a bad --log-format or --log-level with a usage error (exit 2) that names it', () => {
  const format = run('dev', '--log-format', 'pretty');
  assert.equal(format.status, 2);
  assert.match(format.stderr, /invalid value "pretty" for flag --log-format: must be json, text or console/);
  const level = run('dev', '--log-level=verbose');
  assert.equal(level.status, 2);
  assert.match(level.stderr, /--log-level/);
});

test('client verbs refuse malformed command lines with exit 2 before connecting', () => {
  const cases: [string[], RegExp][] = [
    [['get'], /KEY/],
    [['put', 'k'], /VALUE/],
    [['put', 'k', 'v', 'extra'], /extra/],
    [['get', 'k', '--bogus'], /--bogus/],
    [['get', 'k', '--limit', 'x'], /--limit/],
    [['get', 'k', '-w', 'yaml'], /--write-out/],
    [['get', 'k', '--prefix', '--from-key'], /--from-key/],
    [['del', 'k', '--endpoints', 'https://127.0.0.1:2379'], /--endpoints/],
    [['status', '--command-timeout', 'soon'], /--command-timeout/],
    [['alarm'], /list\|disarm/],
    [['alarm', 'arm'], /alarm list or alarm disarm/],
  ];
  for (const [args, named] of cases) {
    const result = run(...args);
    assert.equal(result.status, 2, args.join(' '));
    assert.match(result.stderr, named, args.join(' '));
  }
});

test('help lists serve and the client verbs', () => {
  const result = run('help');
  assert.equal(result.status, 0);
  for (const verb of ['serve', 'dev', 'put', 'get', 'del', 'status', 'members', '--endpoints']) assert.ok(result.stdout.includes(verb), verb);
});

describe('client verbs against a real etcd member', { skip: etcdSkipReason() }, () => {
  let cluster: EtcdCluster;
  let endpoints: string;

  before(async () => {
    cluster = await startEtcdCluster(1);
    endpoints = `--endpoints=${cluster.endpoints.join(',')}`;
  });
  after(async () => {
    await cluster?.stop();
  });

  test('put, get, get -w json, keys only and del', () => {
    assert.deepEqual(run('put', 'cli/a', 'one', endpoints), { status: 0, stdout: 'OK\n', stderr: '' });
    assert.equal(run('put', endpoints, 'cli/b', 'two').status, 0);
    assert.equal(run('get', 'cli/a', endpoints).stdout, 'cli/a\none\n');
    assert.equal(run('get', 'cli/', '--prefix', endpoints).stdout, 'cli/a\none\ncli/b\ntwo\n');
    assert.equal(run('get', 'cli/', '--prefix', '--limit=1', endpoints).stdout, 'cli/a\none\n');
    assert.equal(run('get', 'cli/b', '--from-key', '--keys-only', endpoints).stdout, 'cli/b\n\n');
    const json = run('get', 'cli/', '--prefix', '-w', 'json', '--serializable', endpoints);
    assert.equal(json.status, 0);
    const document = JSON.parse(json.stdout) as { header: { revision: number }; kvs: { key: string; value: string }[]; count: number };
    assert.equal(document.count, 2);
    assert.deepEqual(document.kvs.map((kv) => Buffer.from(kv.key, 'base64').toString()), ['cli/a', 'cli/b']);
    assert.equal(Buffer.from(document.kvs[0]?.value ?? '', 'base64').toString(), 'one');
    assert.ok(document.header.revision > 1);
    assert.equal(run('get', 'cli/missing', endpoints).stdout, '');
    assert.deepEqual(run('del', 'cli/', '--prefix', endpoints), { status: 0, stdout: '2\n', stderr: '' });
    assert.equal(run('get', 'cli/', '--prefix', endpoints).stdout, '');
    assert.equal(run('put', endpoints, '--', '-dash', 'v').status, 0);
    assert.equal(run('get', endpoints, '--', '-dash').stdout, '-dash\nv\n');
  });

  test('alarm list and alarm disarm print nothing when no alarm is raised, as etcdctl does', () => {
    assert.deepEqual(run('alarm', 'list', endpoints), { status: 0, stdout: '', stderr: '' });
    assert.deepEqual(run('alarm', 'disarm', endpoints), { status: 0, stdout: '', stderr: '' });
  });

  test('status and members print tables with the member id in hex', async () => {
    const client = new EtcdClient({ endpoints: cluster.endpoints });
    let memberHex: string;
    try {
      memberHex = (await client.status(cluster.endpoints[0] ?? '')).memberId.toString(16);
    } finally {
      client.close();
    }
    const status = run('status', endpoints);
    assert.equal(status.status, 0);
    assert.match(status.stdout, /\| +ENDPOINT +\| +ID +\|/);
    assert.match(status.stdout, new RegExp(`\\| ${cluster.endpoints[0]} \\| +${memberHex} \\|`));
    assert.match(status.stdout, /\| +true \| +false \|/);
    const members = run('members', endpoints);
    assert.equal(members.status, 0);
    assert.match(members.stdout, new RegExp(`\\| +${memberHex} \\| started \\| +m1 \\|`));
    // etcd has no Admin.ClusterInfo: the table comes from MemberList, with the zone column empty.
    assert.match(members.stdout, /\| +IS LEARNER \| ZONE \|\n/);
    assert.match(members.stdout, /\| +false \| {6}\|\n/);
  });

  test('an operating error exits 1 with the error code; a dead endpoint in status is reported', async () => {
    const [deadPort] = await freePorts(1);
    const failed = run('get', 'k', `--endpoints=127.0.0.1:${deadPort}`, '--command-timeout=300ms');
    assert.equal(failed.status, 1);
    assert.match(failed.stderr, /^stratakv get: .*\(TIMEOUT\)\n$/);
    const empty = run('put', '', 'v', endpoints);
    assert.equal(empty.status, 1);
    assert.match(empty.stderr, /\(KEY_NOT_PROVIDED\)/);
    const partial = run('status', `--endpoints=${cluster.endpoints[0]},127.0.0.1:${deadPort}`, '--command-timeout', '2s');
    assert.equal(partial.status, 1);
    assert.ok(partial.stdout.includes(`| ${cluster.endpoints[0]} |`));
    assert.match(partial.stderr, new RegExp(`127\\.0\\.0\\.1:${deadPort}: .*\\((UNAVAILABLE|TIMEOUT)\\)`));
  });
});

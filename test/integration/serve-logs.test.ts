// What a real `stratakv serve` process writes: by default every line it prints is a JSON log
// line (etcd's shape, src/obs/logger.ts), its `serving` line with the member's fields among
// them, and a refusal to start is one too; with --log-format text the lines a person reads.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';

import { freePort, makeWaitFor, TestCluster } from './cluster-process.ts';
import type { MemberProcess } from './cluster-process.ts';
import { parseLogLine, readLogRecords } from '../obs/log-records.ts';
import type { LogRecord } from '../obs/log-records.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const LEVELS = ['debug', 'info', 'warn', 'error', 'fatal'];
const LOG_WAIT_MS = 10_000;

const waitFor = makeWaitFor(50);
const clusters: TestCluster[] = [];
after(async () => {
  await Promise.all(clusters.map((cluster) => cluster.stop()));
});

/** loggedRecord waits until the member logged a line with `msg`, and answers it. */
function loggedRecord(cluster: TestCluster, member: MemberProcess, msg: string): Promise<LogRecord> {
  return waitFor(`${member.name} to log ${JSON.stringify(msg)}`, LOG_WAIT_MS, () => readLogRecords(member.logPath).find((record) => record.msg === msg), () => cluster.logOf(member));
}

test('serve writes only JSON log lines by default, with its serving line and its fields', async () => {
  const cluster = await TestCluster.start(1);
  clusters.push(cluster);
  const member = cluster.members[0] as MemberProcess;
  const serving = await loggedRecord(cluster, member, 'serving');
  assert.equal(serving.level, 'info');
  assert.equal(serving.name, member.name);
  assert.match(serving.ts, ISO_TIME);
  assert.match(String(serving.fields['member']), /^[0-9a-f]{1,16}$/);
  assert.match(String(serving.fields['cluster']), /^[0-9a-f]{1,16}$/);
  assert.deepEqual(serving.fields['clientUrls'], [member.clientUrl]);
  assert.deepEqual(serving.fields['peerUrls'], [member.peerUrl]);
  assert.equal(serving.fields['dataDir'], member.dataDir);

  // A stop adds its lines; then everything the process printed (stdout and stderr) is read.
  assert.equal(await cluster.stopMember(member), 0);
  await loggedRecord(cluster, member, 'stopped');
  const lines = readFileSync(member.logPath, 'utf8').split('\n').filter((line) => line !== '');
  assert.ok(lines.length >= 3, cluster.logOf(member));
  for (const line of lines) {
    const record = parseLogLine(line);
    assert.ok(record !== undefined, `not a JSON log line: ${line}`);
    assert.ok(LEVELS.includes(record.level), line);
    assert.match(record.ts, ISO_TIME, line);
    assert.ok(!Number.isNaN(Date.parse(record.ts)), line);
    assert.equal(record.name, member.name, line);
    assert.notEqual(record.msg, '', line);
  }
  const records = lines.map((line) => parseLogLine(line) as LogRecord);
  const at = (msg: string): number => records.findIndex((record) => record.msg === msg);
  assert.ok(at('serving') >= 0 && at('serving') < at('stopped'), 'serving, then stopped');
  assert.ok(records.some((record) => record.msg.startsWith('stopping: ')), 'the stop says why');

  // 2. Started again as another member on that data dir, it refuses: the refusal is a JSON line too.
  const peerUrl = `http://127.0.0.1:${await freePort()}`;
  const clientUrl = `http://127.0.0.1:${await freePort()}`;
  const refused = spawnSync(
    process.execPath,
    [CLI, 'serve', '--name=other', `--data-dir=${member.dataDir}`, `--listen-client-urls=${clientUrl}`, `--advertise-client-urls=${clientUrl}`, `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=other=${peerUrl}`],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(refused.status, 1, refused.stderr);
  assert.equal(refused.stdout, '');
  const refusal = refused.stderr.split('\n').filter((line) => line !== '').map((line) => parseLogLine(line));
  assert.ok(refusal.every((record) => record !== undefined), `only JSON log lines:\n${refused.stderr}`);
  const last = refusal.at(-1);
  assert.equal(last?.level, 'error');
  assert.equal(last?.name, 'other');
  assert.equal(last?.fields['code'], 'INVALID_ARGUMENT');
  assert.match(last?.msg ?? '', /--name "other" does not match the member "n1" stored in /);

  // 3. A peer port already taken: grpc-js's own complaint (the peer transport binds through it)
  // is a JSON line too, then the refusal. (The client port is bound by our own listener, which
  // shares it between gRPC and /health: its refusal is ours alone.)
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const takenUrl = `http://127.0.0.1:${(taken.address() as AddressInfo).port}`;
    const busy = spawnSync(
      process.execPath,
      [CLI, 'serve', '--name=busy', `--data-dir=${member.dataDir}-busy`, `--listen-client-urls=${clientUrl}`, `--advertise-client-urls=${clientUrl}`, `--listen-peer-urls=${takenUrl}`, `--initial-advertise-peer-urls=${takenUrl}`, `--initial-cluster=busy=${takenUrl}`],
      { encoding: 'utf8', timeout: 30_000 },
    );
    assert.equal(busy.status, 1, busy.stderr);
    const busyRecords = busy.stderr.split('\n').filter((line) => line !== '').map((line) => parseLogLine(line));
    assert.ok(busyRecords.every((record) => record !== undefined), `only JSON log lines:\n${busy.stderr}`);
    assert.ok(busyRecords.some((record) => record?.fields['component'] === 'grpc'), `grpc-js's line is among them:\n${busy.stderr}`);
    assert.match(busyRecords.at(-1)?.msg ?? '', /^cannot listen on http:\/\/127\.0\.0\.1:\d+/);
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
});

test('serve --log-format text writes the text lines, and --log-level warn drops the info ones', async () => {
  const cluster = await TestCluster.start(1, { serveArgs: ['--log-format=text'] });
  clusters.push(cluster);
  const member = cluster.members[0] as MemberProcess;
  const text = (): string => readFileSync(member.logPath, 'utf8');
  const serving = await waitFor('the text serving line', LOG_WAIT_MS, () => text().split('\n').find((line) => / \[n1\] serving \{/.test(line)), text);
  const [time, level, name, message, fields] = /^(\S+) (\w+) +\[([^\]]+)\] (serving) (\{.*\})$/.exec(serving)?.slice(1) ?? [];
  assert.match(time ?? '', ISO_TIME);
  assert.equal(level, 'info');
  assert.equal(name, 'n1');
  assert.equal(message, 'serving');
  assert.deepEqual((JSON.parse(fields ?? '{}') as Record<string, unknown>)['clientUrls'], [member.clientUrl]);
  assert.equal(parseLogLine(serving), undefined, 'not a JSON line');

  // The same member at --log-level warn: a clean start and stop log nothing below warn.
  assert.equal(await cluster.stopMember(member), 0);
  const before = text().length;
  const quiet = cluster.restart(member, { serveArgs: ['--log-format=text', '--log-level=warn'] });
  await cluster.waitForLeader();
  assert.equal(await cluster.stopMember(quiet), 0);
  const lines = text().slice(before).split('\n').filter((line) => line !== '');
  for (const line of lines) assert.match(line, /^\S+Z (warn |error|fatal) \[n1\] /, line);
});

// `stratakv serve --join` and `--zone` with real processes: three members in zone a hold data;
// a fourth is started with --join and --zone b before anyone adds it, and waits: no client
// port, its peer port answering only Join.Waiting (name and zone); a MemberAdd (a learner, with its peer URL) lets it start; it catches up (a key
// written before it was added reads from it, serializable), `stratakv members` shows its zone
// b beside the others' a; restarted with the same flags it starts from its data (--join
// ignored), and a voter restarted with another --zone republishes it.
//
// The joining member's ports come from JOIN_PORTS, a range no other test uses and below the
// kernel's ephemeral ports (the others' come from freePort), probed free before use: it binds
// its client port only once added, and nothing else may take it meanwhile. Every wait is bounded;
// members are stopped by PID in `after`; STRATAKV_KEEP_TEST_DATA keeps their directories.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ClusterInfoClient, EtcdClient, probeJoiner } from '../../src/client/index.ts';
import { makeWaitFor, PortRange, TestCluster } from './cluster-process.ts';
import type { MemberProcess } from './cluster-process.ts';
import { readableLog } from '../obs/log-records.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
/** JOIN_PORTS: this test's own range (no other test uses fixed ports here). */
const JOIN_PORTS = new PortRange(21_400, 21_599);
const POLL_MS = 200;
const WAIT_MS = 30_000;
const STOP_MS = 10_000;

const waitFor = makeWaitFor(POLL_MS);

/** listening tells whether something accepts connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

interface Joiner {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly logPath: string;
}

function logOf(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}

async function stopProcess(child: ChildProcess, exited: Promise<number | null>): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  }, STOP_MS);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** MemberRow is one row of `stratakv members`' table. */
interface MemberRow {
  readonly id: string;
  readonly status: string;
  readonly name: string;
  readonly peerUrls: string;
  readonly isLearner: string;
  readonly zone: string;
}

function members(endpoints: readonly string[]): { readonly status: number | null; readonly rows: MemberRow[]; readonly output: string } {
  const result = spawnSync(process.execPath, [CLI, 'members', `--endpoints=${endpoints.join(',')}`], { encoding: 'utf8', timeout: 20_000 });
  const rows = result.stdout
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .slice(1)
    .map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()))
    .map(([id = '', status = '', name = '', peerUrls = '', , isLearner = '', zone = '']) => ({ id, status, name, peerUrls, isLearner, zone }));
  return { status: result.status, rows, output: `${result.stdout}${result.stderr}` };
}

describe('--join and --zone with real processes', () => {
  let cluster: TestCluster | undefined;
  let joiner: Joiner | undefined;
  after(async () => {
    if (joiner !== undefined) await stopProcess(joiner.child, joiner.exited);
    await cluster?.stop();
  });

  test('a member started with --join waits, serving no client, until it is added; then it catches up, shows its zone, and restarts from its data', { timeout: 180_000 }, async () => {
    cluster = await TestCluster.start(3, { serveArgs: ['--zone=a'] });
    const running = cluster;
    const writer = running.client(10_000);
    try {
      await writer.put('before/join', 'written before the member was added');
    } finally {
      writer.close();
    }

    const [clientPort, peerPort, deadPort] = await JOIN_PORTS.take(3);
    assert.ok(clientPort !== undefined && peerPort !== undefined && deadPort !== undefined);
    const clientUrl = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const endpoint = `127.0.0.1:${clientPort}`;
    const dataDir = join(running.directory, 'n4');
    const logPath = join(running.directory, 'n4.log');
    const joinUrls = running.members.map((member) => member.clientUrl).join(',');
    const launch = (): Joiner => {
      const child = spawn(
        process.execPath,
        [
          CLI,
          'serve',
          '--name=n4',
          `--data-dir=${dataDir}`,
          `--listen-client-urls=${clientUrl}`,
          `--advertise-client-urls=${clientUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--join=${joinUrls}`,
          '--zone=b',
          '--heartbeat-interval=50',
          '--election-timeout=500',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const log = createWriteStream(logPath, { flags: 'a' });
      child.stdout?.pipe(log);
      child.stderr?.pipe(log);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === null ? null : -1))));
      return { child, exited, logPath };
    };
    const explain = (): string => readableLog(logOf(logPath)).slice(-3_000);

    // 1. Started before anyone added it: it waits, serving no client, its peer port saying who waits there.
    joiner = launch();
    await waitFor('n4 to say it waits to be added', WAIT_MS, () => (logOf(logPath).includes('waiting to be added') ? true : undefined), explain);
    assert.match(logOf(logPath), new RegExp(peerUrl.replaceAll('.', '\\.')), 'the waiting line names its peer URL');
    assert.equal(joiner.child.exitCode, null, 'still running');
    assert.equal(await listening(clientPort), false, 'no client port while waiting');
    const waiting = await probeJoiner(peerUrl);
    assert.ok(waiting.waiting, `Join.Waiting answers on the peer URL: ${waiting.waiting ? '' : waiting.reason}`);
    assert.equal(waiting.name, 'n4');
    assert.equal(waiting.zone, 'b');
    assert.deepEqual(waiting.peerUrls, [peerUrl]);
    assert.equal(members([running.members[0]?.endpoint ?? '']).rows.length, 3);

    // 2. Added as a learner with its peer URL: it starts and catches up.
    const admin = running.client(10_000);
    try {
      const added = await admin.memberAdd([peerUrl], { isLearner: true });
      assert.equal(added.member.isLearner, true);
    } finally {
      admin.close();
    }
    const own = new EtcdClient({ endpoints: [endpoint], timeoutMs: 2_000 });
    try {
      const value = await waitFor(
        'n4 to serve the key written before it was added',
        WAIT_MS,
        async () => {
          const answer = await own.get('before/join', { serializable: true }).catch(() => undefined);
          const found = answer?.kvs[0];
          return found === undefined ? undefined : new TextDecoder().decode(found.value);
        },
        explain,
      );
      assert.equal(value, 'written before the member was added');
    } finally {
      own.close();
    }
    assert.match(logOf(logPath), /added to the cluster; starting as an existing member/);

    // 3. `stratakv members` shows its zone b beside the others' a (asked of an old member).
    const shown = await waitFor(
      'members to show n4 started in zone b',
      WAIT_MS,
      () => {
        const listed = members([running.members[0]?.endpoint ?? '']);
        const row = listed.rows.find((candidate) => candidate.peerUrls === peerUrl);
        return listed.status === 0 && row?.status === 'started' && row.zone === 'b' ? listed : undefined;
      },
      () => members([running.members[0]?.endpoint ?? '']).output,
    );
    assert.equal(shown.rows.length, 4);
    assert.deepEqual(shown.rows.map((row) => `${row.name}:${row.zone}:${row.isLearner}`).sort(), ['n1:a:false', 'n2:a:false', 'n3:a:false', 'n4:b:true']);
    assert.match(shown.output, /\| +ZONE +\|/);
    // The joined member answers the same.
    assert.deepEqual(members([endpoint]).rows.map((row) => row.zone).sort(), ['a', 'a', 'a', 'b']);
    // ClusterInfo passes over an endpoint that does not answer, and answers the token and ids.
    const info = new ClusterInfoClient({ endpoints: [`127.0.0.1:${deadPort}`, endpoint], timeoutMs: 5_000 });
    try {
      const answer = await info.clusterInfo();
      assert.equal(answer.endpoint, endpoint);
      assert.equal(answer.members.length, 4);
      assert.equal(answer.members.find((member) => member.peerUrls.includes(peerUrl))?.id, answer.memberId);
      assert.match(answer.clusterToken, /^it-/);
      assert.notEqual(answer.leaderId, 0);
    } finally {
      info.close();
    }

    // 4. Restarted with the same flags: --join is ignored and it starts from its data.
    const logBefore = logOf(logPath).length;
    assert.equal(await stopProcess(joiner.child, joiner.exited), 0);
    const writerAgain = running.client(10_000);
    try {
      await writerAgain.put('after/restart', 'written while n4 was down');
    } finally {
      writerAgain.close();
    }
    joiner = launch();
    const again = new EtcdClient({ endpoints: [endpoint], timeoutMs: 2_000 });
    try {
      await waitFor(
        'n4 to serve the key written while it was down',
        WAIT_MS,
        async () => ((await again.get('after/restart', { serializable: true }).catch(() => undefined))?.kvs.length === 1 ? true : undefined),
        explain,
      );
      assert.equal((await again.get('before/join', { serializable: true })).kvs.length, 1);
    } finally {
      again.close();
    }
    const restartLog = logOf(logPath).slice(logBefore);
    assert.match(restartLog, /--join ignored: the data dir holds this member, which joined before/);
    assert.doesNotMatch(restartLog, /waiting to be added/);
    assert.equal(members([endpoint]).rows.length, 4);

    // 5. A voter restarted with another zone republishes it.
    const n1 = running.members[0] as MemberProcess;
    assert.equal(await running.stopMember(n1), 0);
    running.restart(n1, { serveArgs: ['--zone=c'] });
    await waitFor(
      'n1 to republish zone c',
      WAIT_MS,
      () => {
        const row = members([endpoint]).rows.find((candidate) => candidate.name === 'n1');
        return row?.zone === 'c' ? true : undefined;
      },
      () => running.logOf(n1),
    );
  });
});

// `stratakv serve --join` (cmd/serve-join.ts): what a joining member learns from one
// ClusterInfo answer, what it refuses, and how it waits (every poll, logging while it waits,
// retrying an unreachable cluster, bounded by --join-timeout or a stop), and a restart that
// starts from join.json without asking. The real processes are in
// test/integration/join-zone.test.ts.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { planJoin, readJoinState, resolveJoin, writeJoinState } from '../../cmd/serve-join.ts';
import type { JoinContext } from '../../cmd/serve-join.ts';
import { parseServeFlags } from '../../cmd/serve-flags.ts';
import type { ClusterInfo, ClusterInfoMember } from '../../src/client/index.ts';
import { clusterIdFor, memberIdFor } from '../../src/node/index.ts';
import type { Logger } from '../../src/raft/index.ts';
import { ErrorCode, isStrataError, StrataError } from '../../src/util/errors.ts';

const TOKEN = 'join-test';
const SELF = { name: 'n4', peerUrls: ['http://10.0.0.4:2380'] };

function member(name: string, peerUrl: string, started: boolean, options: Partial<ClusterInfoMember> = {}): ClusterInfoMember {
  return {
    id: memberIdFor([peerUrl], TOKEN),
    name: started ? name : '',
    peerUrls: [peerUrl],
    clientUrls: started ? [peerUrl.replace(':2380', ':2379')] : [],
    isLearner: false,
    zone: started ? 'a' : '',
    ...options,
  };
}

const VOTERS = [member('n1', 'http://10.0.0.1:2380', true), member('n2', 'http://10.0.0.2:2380', true), member('n3', 'http://10.0.0.3:2380', true)];

function answer(members: readonly ClusterInfoMember[], overrides: Partial<ClusterInfo> = {}): ClusterInfo {
  return {
    clusterId: clusterIdFor(TOKEN),
    clusterToken: TOKEN,
    leaderId: VOTERS[0]?.id ?? 0,
    members: [...members].sort((a, b) => a.id - b.id),
    removedIds: [],
    memberId: VOTERS[0]?.id ?? 0,
    endpoint: '10.0.0.1:2379',
    ...overrides,
  };
}

const added = member('', SELF.peerUrls[0] ?? '', false, { isLearner: true });

function refusedWith(code: ErrorCode, run: () => unknown): void {
  assert.throws(run, (error: unknown) => isStrataError(error, code), code);
}

describe('planJoin', () => {
  test('waits while the cluster does not list this member', () => {
    assert.equal(planJoin(answer(VOTERS), SELF), undefined);
  });

  test('once listed: the token, the ids, and every member with its name, this one under --name, the unstarted ones nameless', () => {
    const unstarted = member('', 'http://10.0.0.5:2380', false);
    const joined = planJoin(answer([...VOTERS, added, unstarted]), SELF);
    assert.ok(joined !== undefined);
    assert.equal(joined.clusterToken, TOKEN);
    assert.equal(joined.clusterId, clusterIdFor(TOKEN));
    assert.equal(joined.memberId, memberIdFor(SELF.peerUrls, TOKEN));
    const byUrl = new Map(joined.initialCluster.map((entry) => [entry.peerUrls[0], entry.name]));
    assert.equal(byUrl.size, 5);
    assert.equal(byUrl.get('http://10.0.0.1:2380'), 'n1');
    assert.equal(byUrl.get(SELF.peerUrls[0]), 'n4');
    assert.equal(byUrl.get('http://10.0.0.5:2380'), '');
  });

  test('its peer URLs are recognized in any order', () => {
    const urls = ['http://10.0.0.4:2380', 'http://10.0.1.4:2380'];
    const listed = { ...added, id: memberIdFor(urls, TOKEN), peerUrls: [...urls].reverse() };
    assert.ok(planJoin(answer([...VOTERS, listed]), { name: 'n4', peerUrls: urls }) !== undefined);
  });

  test('refuses peer URLs of a removed member: a removed id never returns', () => {
    refusedWith(ErrorCode.MEMBER_REMOVED, () => planJoin(answer(VOTERS, { removedIds: [memberIdFor(SELF.peerUrls, TOKEN)] }), SELF));
  });

  test('refuses a member that shares one of its peer URLs', () => {
    const sharing = { ...member('', 'http://10.0.0.9:2380', false), peerUrls: ['http://10.0.0.9:2380', SELF.peerUrls[0] ?? ''] };
    refusedWith(ErrorCode.PEER_URL_EXISTS, () => planJoin(answer([...VOTERS, sharing]), SELF));
  });

  test('refuses a listed member that has started before (its data is elsewhere), as etcd does', () => {
    refusedWith(ErrorCode.INVALID_ARGUMENT, () => planJoin(answer([...VOTERS, { ...added, name: 'n4', clientUrls: ['http://10.0.0.4:2379'] }]), SELF));
  });

  test('refuses a cluster whose ids do not derive from its token', () => {
    refusedWith(ErrorCode.CLUSTER_ID_MISMATCH, () => planJoin(answer([...VOTERS, added], { clusterId: clusterIdFor('another') }), SELF));
    refusedWith(ErrorCode.CLUSTER_ID_MISMATCH, () => planJoin(answer([...VOTERS, { ...added, id: 12345 }]), SELF));
  });
});

describe('resolveJoin', () => {
  const directories: string[] = [];
  after(() => {
    for (const directory of directories) rmSync(directory, { recursive: true, force: true });
  });
  const dataDir = (): string => {
    const directory = mkdtempSync(join(tmpdir(), 'stratakv-join-'));
    directories.push(directory);
    return join(directory, 'n4.etcd');
  };
  const flags = (dir: string, ...more: string[]): ReturnType<typeof parseServeFlags> =>
    parseServeFlags(['--name=n4', `--data-dir=${dir}`, `--initial-advertise-peer-urls=${SELF.peerUrls[0]}`, '--join=http://10.0.0.1:2379,http://10.0.0.2:2379', ...more]);
  const recorder = (): { logger: Logger; lines: string[] } => {
    const lines: string[] = [];
    const log = (message: string): void => {
      lines.push(message);
    };
    return { logger: { debug: log, info: log, warn: log }, lines };
  };
  const context = (logger: Logger, ask: NonNullable<JoinContext['ask']>, signal = new AbortController().signal): JoinContext => ({ logger, signal, ask, pollMs: 1, logEveryMs: 0 });

  test('without --join the options are the flags', async () => {
    const options = parseServeFlags([]);
    assert.equal(await resolveJoin(options, { logger: recorder().logger, signal: new AbortController().signal }), options);
  });

  test('asks until listed, retrying an unreachable cluster, then starts as an existing member and records what it learned', async () => {
    const dir = dataDir();
    const { logger, lines } = recorder();
    const answers: (ClusterInfo | StrataError)[] = [
      new StrataError(ErrorCode.UNAVAILABLE, 'connection refused'),
      answer(VOTERS),
      new StrataError(ErrorCode.TIMEOUT, 'no answer'),
      answer(VOTERS),
      answer([...VOTERS, added]),
    ];
    let asked = 0;
    const options = await resolveJoin(
      flags(dir, '--zone=b'),
      context(logger, () => {
        const next = answers[asked++];
        assert.ok(next !== undefined, 'asked after being listed');
        return next instanceof StrataError ? Promise.reject(next) : Promise.resolve(next);
      }),
    );
    assert.equal(asked, answers.length);
    assert.ok(options !== undefined);
    assert.equal(options.initialClusterState, 'existing');
    assert.equal(options.initialClusterToken, TOKEN);
    assert.equal(options.initialCluster.length, 4);
    assert.equal(options.zone, 'b');
    assert.equal(lines.filter((line) => line.includes('does not answer')).length, 2);
    assert.equal(lines.filter((line) => line.includes('waiting to be added')).length, 2);
    assert.equal(readJoinState(dir)?.clusterToken, TOKEN);

    // A restart finds join.json and asks nobody (--join is ignored, and says so).
    const again = recorder();
    const restarted = await resolveJoin(flags(dir, '--zone=c'), context(again.logger, () => assert.fail('a restart asked the cluster')));
    assert.deepEqual(restarted, { ...options, zone: 'c' });
    assert.ok(again.lines.some((line) => line.startsWith('--join ignored')));
  });

  test('whileWaiting runs around a real wait only, and its end runs however the wait ends', async () => {
    const { logger } = recorder();
    const events: string[] = [];
    const whileWaiting = (): Promise<() => Promise<void>> => {
      events.push('start');
      return Promise.resolve(() => {
        events.push('end');
        return Promise.resolve();
      });
    };
    const dir = dataDir();
    const options = await resolveJoin(flags(dir), { ...context(logger, () => Promise.resolve(answer([...VOTERS, added]))), whileWaiting });
    assert.ok(options !== undefined);
    assert.deepEqual(events.splice(0), ['start', 'end']);
    await resolveJoin(flags(dir), { ...context(logger, () => assert.fail('a restart asked the cluster')), whileWaiting });
    assert.deepEqual(events.splice(0), [], 'a restart from join.json does not wait');
    await assert.rejects(resolveJoin(flags(dataDir()), { ...context(logger, () => Promise.resolve(answer(VOTERS, { removedIds: [added.id] }))), whileWaiting }));
    assert.deepEqual(events.splice(0), ['start', 'end']);
  });

  test('a data dir holding member state without join.json starts as it is', async () => {
    const dir = dataDir();
    mkdirSync(join(dir, 'member'), { recursive: true });
    const { logger, lines } = recorder();
    const options = flags(dir);
    assert.equal(await resolveJoin(options, context(logger, () => assert.fail('asked the cluster'))), options);
    assert.ok(lines.some((line) => line.startsWith('--join ignored')));
  });

  test('a cluster without ClusterInfo (etcd) is refused at once; a refusal of planJoin stops the wait', async () => {
    const { logger } = recorder();
    await assert.rejects(
      resolveJoin(flags(dataDir()), context(logger, () => Promise.reject(new StrataError(ErrorCode.UNIMPLEMENTED, 'no Admin service')))),
      (error: unknown) => isStrataError(error, ErrorCode.UNIMPLEMENTED),
    );
    await assert.rejects(
      resolveJoin(flags(dataDir()), context(logger, () => Promise.resolve(answer(VOTERS, { removedIds: [added.id] })))),
      (error: unknown) => isStrataError(error, ErrorCode.MEMBER_REMOVED),
    );
  });

  test('--join-timeout ends the wait with TIMEOUT; a stop ends it with undefined', async () => {
    const { logger } = recorder();
    await assert.rejects(
      resolveJoin(flags(dataDir(), '--join-timeout=20'), context(logger, () => Promise.resolve(answer(VOTERS)))),
      (error: unknown) => isStrataError(error, ErrorCode.TIMEOUT),
    );
    const controller = new AbortController();
    let asked = 0;
    const stopped = await resolveJoin(
      flags(dataDir()),
      context(
        logger,
        () => {
          asked += 1;
          if (asked === 3) controller.abort();
          return Promise.resolve(answer(VOTERS));
        },
        controller.signal,
      ),
    );
    assert.equal(stopped, undefined);
    assert.equal(asked, 3);
  });

  test('a malformed join.json is CORRUPTION, not a silent new join', () => {
    const dir = dataDir();
    writeJoinState(dir, { clusterId: 1, clusterToken: 't', memberId: 2, initialCluster: [{ name: 'n4', peerUrls: ['http://10.0.0.4:2380'] }] }, []);
    assert.equal(readJoinState(dir)?.memberId, 2);
    writeFileSync(join(dir, 'join.json'), '{"version":1}');
    assert.throws(() => readJoinState(dir), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
  });
});

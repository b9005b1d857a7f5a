// `stratakv log` against one real in-memory member served over gRPC: one line per entry with
// the decoded summary (put, delete, txn, the member's publish, its bootstrap conf change), the
// snapshot as one line when the index asked for is compacted, -w json as one object per line,
// --follow printing new commits until stopped, usage errors before any connection, and the
// real launcher dispatching the verb.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';

import type { LogIo } from '../../cmd/log-verb.ts';
import { runLogVerb } from '../../cmd/log-verb.ts';
import { UsageError } from '../../cmd/serve-flags.ts';
import { RaftNode } from '../../src/node/index.ts';
import type { EtcdServer } from '../../src/server/index.ts';
import { RaftNodeBackend, raftNodeLogSource, startEtcdServer } from '../../src/server/index.ts';
import { MemoryLogStore, openMemoryKvStateMachine } from '../../src/storage/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { SYSTEM_CLOCK } from '../../src/util/index.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
const WAIT_MS_MAX = 15_000;

let node: RaftNode;
let server: EtcdServer;
let endpoint: string;
let log: MemoryLogStore;
// Indexes of the entries this test wrote, in order: put a, put b (300 bytes), delete [a, c), txn.
const written: number[] = [];

async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS_MAX;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}: ${JSON.stringify(node.status().snapshots)} applied ${node.streamCommittedIndex()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

before(async () => {
  const network = new MemoryNetwork();
  const peerUrls = ['http://log.cli.test:2380'];
  node = await RaftNode.start({
    name: 'solo',
    initialCluster: [{ name: 'solo', peerUrls }],
    initialClusterState: 'new',
    initialClusterToken: 'log-cli-test',
    advertisePeerUrls: peerUrls,
    advertiseClientUrls: [],
    heartbeatIntervalMs: 20,
    electionTimeoutMs: 200,
    clock: SYSTEM_CLOCK,
    snapshotPolicy: { snapshotCount: 100, catchUpEntries: 10, snapshotDutyCycleMax: 1 },
    createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
    storage: async () => {
      log = new MemoryLogStore();
      return { log, stateMachine: await openMemoryKvStateMachine() };
    },
  });
  await until('the member leads and published itself', () => node.status().role === 'leader' && node.members().some((member) => member.name === 'solo'));
  const write = async (request: Parameters<RaftNode['kv']>[0]): Promise<void> => {
    await node.kv(request);
    written.push(node.streamCommittedIndex());
  };
  await write({ type: 'put', key: Buffer.from('a'), value: Buffer.from('1') });
  await write({ type: 'put', key: Buffer.from('b'), value: Buffer.alloc(300, 1) });
  await write({ type: 'deleteRange', key: Buffer.from('a'), rangeEnd: Buffer.from('c') });
  await write({
    type: 'txn',
    compare: [{ key: Buffer.from('x'), target: 'version', result: 'equal', number: 0 }],
    success: [{ type: 'put', key: Buffer.from('x'), value: Buffer.from('1') }],
    failure: [{ type: 'range', key: Buffer.from('x') }],
  });
  server = await startEtcdServer({ backend: new RaftNodeBackend(node, 'test'), logSource: raftNodeLogSource(node), listenUrls: ['http://127.0.0.1:0'], maxRequestBytes: 1024 * 1024 });
  endpoint = (server.urls[0] ?? '').replace('http://', '');
});

after(async () => {
  await server?.close({ force: true });
  await node?.stop({ transferLeadership: false });
});

async function cli(args: string[], signal?: AbortSignal, onLine?: (line: string) => void): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: LogIo = {
    out: (line) => {
      out.push(line);
      onLine?.(line);
    },
    err: (line) => err.push(line),
    ...(signal === undefined ? {} : { signal }),
  };
  const code = await runLogVerb(args, io);
  return { code, out, err };
}

test('log prints one line per entry: index, term, kind and what it does', async () => {
  const { code, out, err } = await cli(['--endpoints', endpoint, '--from-index', '1']);
  assert.equal(code, 0, err.join('\n'));
  assert.deepEqual(err, []);
  const byIndex = new Map(out.map((line) => [Number(line.split(' ')[0]), line]));
  const [putA, putB, del, txn] = written;
  assert.match(byIndex.get(putA ?? 0) ?? '', /^\d+ \d+ put key="a" value-bytes=1$/);
  assert.match(byIndex.get(putB ?? 0) ?? '', /^\d+ \d+ put key="b" value-bytes=300$/);
  assert.match(byIndex.get(del ?? 0) ?? '', /^\d+ \d+ delete key="a" range-end="c"$/);
  assert.match(byIndex.get(txn ?? 0) ?? '', /^\d+ \d+ txn compares=1 success=\[put\] failure=\[range\]$/);
  assert.match(out[0] ?? '', /^1 1 conf-change auto addVoter:[0-9a-f]+/, 'the bootstrap configuration is entry 1');
  assert.ok(out.some((line) => / node \{"type":"publish".*"name":"solo"/.test(line)), 'the member publishing itself');
  assert.ok(out.some((line) => / empty$/.test(line)), "the leader's empty entry");
  assert.deepEqual([...byIndex.keys()], Array.from({ length: out.length }, (_, offset) => offset + 1), 'every index once, in order');
});

test('-w json prints one object per entry', async () => {
  const from = written[0] ?? 1;
  const { code, out } = await cli(['--endpoints', endpoint, '--from-index', String(from), '--to-index', String(from + 1), '-w', 'json']);
  assert.equal(code, 0);
  const objects = out.map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.deepEqual(objects.map((object) => [object['index'], object['type'], object['key'], object['value_bytes']]), [
    [from, 'put', Buffer.from('a').toString('base64'), 1],
    [from + 1, 'put', Buffer.from('b').toString('base64'), 300],
  ]);
});

test('a compacted index prints the snapshot as one line, then the entries after it', async () => {
  for (let n = 0; n < 150; n += 1) await node.kv({ type: 'put', key: Buffer.from(`more/${n}`), value: Buffer.from('v') });
  await until('a snapshot was taken', () => (node.status().snapshots.latest?.index ?? 0) >= 100);
  const latest = node.status().snapshots.latest?.index ?? 0;
  if (log.firstIndex() <= 50) log.compact(50);
  const { code, out, err } = await cli(['--endpoints', endpoint, '--from-index', '2']);
  assert.equal(code, 0, err.join('\n'));
  assert.match(out[0] ?? '', /^snapshot index=(\d+) term=\d+ revision=\d+ bytes=\d+ sha256=[0-9a-f]{64} file-sha256=[0-9a-f]{64} id=[0-9a-f-]+$/);
  const snapshotIndex = Number(/index=(\d+)/.exec(out[0] ?? '')?.[1]);
  assert.ok(snapshotIndex >= latest, `the latest snapshot (${snapshotIndex} >= ${latest})`);
  assert.equal(Number((out[1] ?? '').split(' ')[0]), snapshotIndex + 1, 'entries continue right after it');
  assert.equal(Number((out.at(-1) ?? '').split(' ')[0]), node.streamCommittedIndex());
});

test('--follow prints new commits until stopped, then exits 0', async () => {
  const abort = new AbortController();
  let sawNew = (): void => undefined;
  const seen = new Promise<void>((resolve) => (sawNew = resolve));
  const running = cli(['--endpoints', endpoint, '--from-index', String(node.streamCommittedIndex() + 1), '--follow'], abort.signal, (line) => {
    if (line.includes('key="followed"')) sawNew();
  });
  await node.kv({ type: 'put', key: Buffer.from('followed'), value: Buffer.from('yes') });
  await seen;
  abort.abort();
  const { code, out } = await running;
  assert.equal(code, 0);
  assert.match(out.at(-1) ?? '', /put key="followed" value-bytes=3$/);
});

test('malformed command lines are usage errors naming the flag, before any connection', async () => {
  const cases: [string[], RegExp][] = [
    [[], /--from-index/],
    [['--from-index', '0'], /--from-index/],
    [['--from-index', 'x'], /--from-index/],
    [['--from-index', '1', '-w', 'yaml'], /--write-out/],
    [['--from-index', '1', '--bogus'], /--bogus/],
    [['--from-index', '1', 'extra'], /extra/],
  ];
  for (const [args, named] of cases) {
    await assert.rejects(cli(['--endpoints', '127.0.0.1:1', ...args]), (error) => error instanceof UsageError && named.test(error.message), args.join(' '));
  }
});

test('an operating error is printed with its code and exits 1', async () => {
  const { code, err } = await cli(['--endpoints', endpoint, '--from-index', '1', '--max-chunk-bytes', '100']);
  assert.equal(code, 1);
  assert.match(err[0] ?? '', /^stratakv log: .*max_chunk_bytes.* \(INVALID_ARGUMENT\)$/);
});

test('the launcher runs `stratakv log` (help lists it; -w json through a separate process)', async () => {
  const run = (...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(process.execPath, [CLI, ...args], { timeout: 30_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr }),
      );
    });
  const help = await run('help');
  assert.match(help.stdout, /^ {2}log --from-index N/m);
  const usage = await run('log');
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--from-index/);
  const from = node.streamCommittedIndex();
  const result = await run('log', '--endpoints', endpoint, '--from-index', String(from), '-w', 'json');
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { index: number }).index), [from]);
});

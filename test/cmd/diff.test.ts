// `stratakv diff` against two stores served over gRPC (bench/diff/measure.ts's fixture: two
// KvStateMachines of 5,000 keys with 6 planted differences, compared as two clusters): one
// line per difference with its values, then the summary; exit 1 when they differ and 0 when
// equal; -w json as one document; --prefix; the progress line only when asked for; usage
// errors before any connection; an operating error with its code and exit 2; and the real
// launcher dispatching the verb.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';

import type { DiffStores, ServedPins } from '../../bench/diff/measure.ts';
import { buildDiffStores, serveDigestPins } from '../../bench/diff/measure.ts';
import type { DiffIo } from '../../cmd/diff-verb.ts';
import { EXIT_DIFFERENT, EXIT_EQUAL, EXIT_TROUBLE, reportLines, runDiffVerb } from '../../cmd/diff-verb.ts';
import type { DiffReport } from '../../src/client/index.ts';
import { UsageError } from '../../cmd/serve-flags.ts';
import { StateMachineDigestPins } from '../../src/diff/index.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;

let stores: DiffStores;
let a: ServedPins;
let b: ServedPins;
let a2: ServedPins;

before(async () => {
  stores = await buildDiffStores({ keys: 5_000, differences: 6, seed: 7 });
  a = await serveDigestPins(new StateMachineDigestPins(stores.a, { clusterId: 0xa, memberId: 0xa1 }));
  b = await serveDigestPins(new StateMachineDigestPins(stores.b, { clusterId: 0xb, memberId: 0xb1 }));
  // A second server over the same store: the same content, another "cluster".
  a2 = await serveDigestPins(new StateMachineDigestPins(stores.a, { clusterId: 0xc, memberId: 0xc1 }));
});

after(async () => {
  await a?.close();
  await b?.close();
  await a2?.close();
  await stores?.close();
});

async function cli(args: readonly string[], withProgress = false): Promise<{ code: number; out: string[]; err: string[]; progress: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const progress: string[] = [];
  const io: DiffIo = { out: (line) => out.push(line), err: (line) => err.push(line), ...(withProgress ? { progress: (text: string) => progress.push(text) } : {}) };
  const code = await runDiffVerb(args, io);
  return { code, out, err, progress };
}

test('one line per planted difference with its values, then the summary; exit 1', async () => {
  const { code, out, err, progress } = await cli(['--endpoints', a.endpoint, '--against', b.endpoint, '--value-bytes', '8']);
  assert.equal(code, EXIT_DIFFERENT);
  assert.deepEqual(err, []);
  assert.deepEqual(progress, [], 'no progress line unless on a terminal');
  assert.equal(out.length, stores.planted.length + 1);
  for (const [index, planted] of stores.planted.entries()) {
    const [kind, key] = planted.split(' ');
    const line = out[index] ?? '';
    assert.ok(line.startsWith(`${kind} ${JSON.stringify(key)}`), line);
    if (kind === 'missing') assert.match(line, / a:"value \d+[ 0-9]*"…\(32 B\)$/);
    if (kind === 'extra') assert.match(line, / b:"only in "…\(9 B\)$/);
    if (kind === 'different') assert.match(line, / a:"value \d+[ 0-9]*"…\(32 B\) b:"changed "…\(\d+ B\)$/);
  }
  const summary = out.at(-1) ?? '';
  assert.match(summary, /^6 differences \(2 missing, 2 extra, 2 different\): clusters compared on key and value; /);
  assert.ok(summary.includes(`A ${a.endpoint} member a1 index ${stores.a.appliedIndex()} revision ${stores.a.revision()} keys 5000`), summary);
  assert.match(summary, /\d+ leaves compared in 5 rounds, \d+ calls, [\d.]+ k?B sent, [\d.]+ k?B received, [\d.]+ s$/);
});

test('equal contents: only the summary; exit 0', async () => {
  const { code, out } = await cli(['--endpoints', a.endpoint, '--against', a2.endpoint]);
  assert.equal(code, EXIT_EQUAL);
  assert.equal(out.length, 1);
  assert.match(out[0] ?? '', /^equal: clusters compared on key and value; .* 0 leaves compared in 0 rounds/);
});

test('-w json: one document with sizes, revisions and base64 keys', async () => {
  const { code, out } = await cli(['--endpoints', a.endpoint, '--against', b.endpoint, '-w', 'json', '--max-differences', '4', '--value-bytes', '8']);
  assert.equal(code, EXIT_DIFFERENT);
  assert.equal(out.length, 1);
  const document = JSON.parse(out[0] ?? '') as {
    equal: boolean;
    mode: string;
    hash: string;
    truncated: boolean;
    max_differences: number;
    a: { member_id: string; index: number; key_count: number };
    differences: { kind: string; key: string; a: { value_bytes: number; mod_revision: number; value_truncated: boolean } | null; b: unknown }[];
    stats: { bytes_sent: number; bytes_received: number; rounds: number; differing_nodes: number[] };
  };
  assert.deepEqual({ equal: document.equal, mode: document.mode, hash: document.hash, truncated: document.truncated, max: document.max_differences }, { equal: false, mode: 'clusters', hash: 'content', truncated: true, max: 4 });
  assert.deepEqual({ member: document.a.member_id, keys: document.a.key_count }, { member: 'a1', keys: 5_000 });
  assert.equal(document.differences.length, 4);
  for (const difference of document.differences) {
    const line = `${difference.kind} ${Buffer.from(difference.key, 'base64').toString()}`;
    assert.ok(stores.planted.includes(line), line);
    if (difference.kind !== 'extra') {
      assert.equal(difference.a?.value_bytes, 32);
      assert.equal(difference.a?.value_truncated, true);
      assert.ok((difference.a?.mod_revision ?? 0) > 1);
    } else {
      assert.equal(difference.a, null);
    }
  }
  assert.ok(document.stats.bytes_sent > 0 && document.stats.bytes_received > document.stats.bytes_sent);
  assert.equal(document.stats.differing_nodes.length, 4);
});

test('--prefix: only the differences under it; the progress line when asked for', async () => {
  const first = stores.planted[0] ?? '';
  const key = first.slice(first.indexOf(' ') + 1);
  const prefix = key.slice(0, 'user/000NN'.length);
  const { code, out, progress } = await cli(['--endpoints', a.endpoint, '--against', b.endpoint, '--prefix', prefix], true);
  assert.equal(code, EXIT_DIFFERENT);
  const expected = stores.planted.filter((line) => line.slice(line.indexOf(' ') + 1).startsWith(prefix));
  assert.deepEqual(
    out.slice(0, -1).map((line) => line.slice(0, line.indexOf('"', line.indexOf('"') + 1) + 1)),
    expected.map((line) => `${line.slice(0, line.indexOf(' '))} ${JSON.stringify(line.slice(line.indexOf(' ') + 1))}`),
  );
  assert.ok((out.at(-1) ?? '').includes(` prefix ${JSON.stringify(prefix)};`), out.at(-1));
  assert.ok(progress.length > 0 && progress.every((text) => text.startsWith('\r\x1b[K')), 'a progress line, redrawn in place');
  assert.equal(progress.at(-1), '\r\x1b[K', 'cleared before the output');
});

test('malformed command lines are usage errors naming the flag, before any connection', async () => {
  const cases: [string[], RegExp][] = [
    [[], /--against/],
    [['--against', 'nohost'], /--against/],
    [['--against', '127.0.0.1:1', '-w', 'yaml'], /--write-out/],
    [['--against', '127.0.0.1:1', '--mode', 'both'], /--mode/],
    [['--against', '127.0.0.1:1', '--max-differences', '0'], /--max-differences/],
    [['--against', '127.0.0.1:1', '--value-bytes', '70000'], /--value-bytes/],
    [['--against', '127.0.0.1:1', '--bogus'], /--bogus/],
    [['--against', '127.0.0.1:1', 'extra'], /extra/],
  ];
  for (const [args, named] of cases) {
    await assert.rejects(cli(['--endpoints', '127.0.0.1:1', ...args]), (error) => error instanceof UsageError && named.test(error.message), args.join(' '));
  }
});

test('an operating error is printed with its code and exits 2', async () => {
  // Two "clusters" cannot be compared as replicas.
  const { code, err } = await cli(['--endpoints', a.endpoint, '--against', b.endpoint, '--mode', 'replicas']);
  assert.equal(code, EXIT_TROUBLE);
  assert.match(err[0] ?? '', /^stratakv diff: .*replica diff needs two members of one cluster.* \(INVALID_ARGUMENT\)$/);
});

test('the launcher runs `stratakv diff` and exits with its code', async () => {
  const { code, stdout } = await new Promise<{ code: number; stdout: string }>((resolve) => {
    execFile(process.execPath, [CLI, 'diff', '--endpoints', a.endpoint, '--against', b.endpoint, '-w', 'json'], { timeout: 30_000, killSignal: 'SIGKILL' }, (error, stdout) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout }),
    );
  });
  assert.equal(code, EXIT_DIFFERENT);
  assert.equal((JSON.parse(stdout) as { differences: unknown[] }).differences.length, 6);
});

test('replica lines show the counters the full hash covers; a cut value stays text; binary keys are hex', () => {
  const side = { endpoint: '127.0.0.1:1', clusterId: 1, memberId: 0xab, pinId: 'i9', index: 9, revision: 5, keyCount: 2 };
  const value = (text: string, modRevision: number, valueBytes: number) => ({ key: new Uint8Array(), value: Buffer.from(text), valueBytes, createRevision: 2, modRevision, version: 1, lease: 0n });
  const report: DiffReport = {
    mode: 'replicas',
    hash: 'full',
    a: side,
    b: { ...side, endpoint: '127.0.0.1:2', memberId: 0xcd },
    prefix: undefined,
    equal: false,
    // "é" is two bytes: a value cut after its first byte shows the text before it.
    differences: [
      { kind: 'different', key: Buffer.from('k'), leaf: 1, a: value('h\u00e9'.slice(0, 2), 3, 9), b: { ...value('h', 4, 9), value: Buffer.from([0x68, 0xc3]) } },
      { kind: 'missing', key: Uint8Array.of(0, 255), leaf: 2, a: value('v', 3, 1), b: undefined },
    ],
    truncated: false,
    differencesMax: 10,
    inconsistencies: [{ kind: 'leaf-keys', side: 'b', leaf: 7 }],
    stats: { bytesSent: 10, bytesReceived: 20, calls: 9, rounds: 5, sumsCompared: 64, leavesCompared: 2, keysReceived: 3, differingNodes: [1, 1, 1, 2], seconds: 0.01 },
  };
  const lines = reportLines(report);
  assert.deepEqual(lines.slice(0, 3), [
    'different "k" a:"h\u00e9"…(9 B, create 2, mod 3, version 1) b:"h"…(9 B, create 2, mod 4, version 1)',
    'missing 0x00ff a:"v"(1 B, create 2, mod 3, version 1)',
    "inconsistent B leaf 7: its keys' hashes do not sum to its digest leaf (a damaged digest index on that member)",
  ]);
  assert.match(lines[3] ?? '', /^2 differences \(1 missing, 0 extra, 1 different\): replicas at checkpoint 9, compared on full contents; A 127\.0\.0\.1:1 member ab index 9 /);
});

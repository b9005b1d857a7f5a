// EtcdClient.watch against real etcd (3.4 in CI): events grouped by whole revisions with the
// counters a Range answers, prevKv, prefix and range watches, history replay, compaction,
// progress (requested, periodic and the stream's own interval), a transaction too large for
// one message, back-pressure, the idle timeout on a frozen member, clean ends (close, abort,
// break, the client closing, a process that exits by itself), and on a 3-member cluster: a
// member killed mid-watch, resumed on another from lastRevision + 1 with no gap and no
// duplicate, and a member without a leader ending its watch (hasleader).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test, type TestContext } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import { EtcdClient, type ClientLogger, type WatchBatch, type WatchEvent, type WatchStream } from '../../src/client/index.ts';
import { loadEtcdServices } from '../../src/client/wire.ts';
import { ErrorCode, isStrataError, type StrataError } from '../../src/util/errors.ts';
import { etcdSkipReason, startEtcdCluster, type EtcdCluster, type EtcdMember } from './etcd-process.ts';

/** WAIT_MS bounds every wait for a batch, an error or a process in these tests. */
const WAIT_MS = 15_000;
/** BATCHES_MAX bounds every read loop. */
const BATCHES_MAX = 10_000;

const text = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? new Uint8Array()).toString('utf8');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// recordingLogger keeps the client's diagnostics, to show what happened on the wire.
function recordingLogger(): ClientLogger & { readonly lines: { message: string; fields: Readonly<Record<string, unknown>> }[] } {
  const lines: { message: string; fields: Readonly<Record<string, unknown>> }[] = [];
  const record = (message: string, fields: Readonly<Record<string, unknown>> = {}): void => {
    lines.push({ message, fields });
  };
  return { lines, debug: record, warn: record };
}

// nextWithin answers the stream's next result, or fails the test after `ms`.
async function nextWithin(stream: WatchStream, ms = WAIT_MS): Promise<IteratorResult<WatchBatch, undefined>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no batch from ${stream.endpoint} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([stream.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// eventBatchesUntil reads until an event at `revision` or later has been yielded; progress batches are left out.
async function eventBatchesUntil(stream: WatchStream, revision: number): Promise<WatchEvent[][]> {
  const batches: WatchEvent[][] = [];
  const deadline = performance.now() + WAIT_MS;
  for (let read = 0; read < BATCHES_MAX; read++) {
    const result = await nextWithin(stream, Math.max(1, deadline - performance.now()));
    assert.equal(result.done, false, `the stream ended before revision ${revision}`);
    if (result.value.kind !== 'events') continue;
    batches.push([...result.value.events]);
    if ((result.value.events.at(-1)?.kv.modRevision ?? 0) >= revision) return batches;
  }
  assert.fail(`more than ${BATCHES_MAX} batches before revision ${revision}`);
}

// failureOf reads until the stream throws; answers the error and the events yielded before it.
async function failureOf(stream: WatchStream, ms = WAIT_MS): Promise<{ error: StrataError; events: WatchEvent[] }> {
  const events: WatchEvent[] = [];
  const deadline = performance.now() + ms;
  for (let read = 0; read < BATCHES_MAX; read++) {
    let result: IteratorResult<WatchBatch, undefined>;
    try {
      result = await nextWithin(stream, Math.max(1, deadline - performance.now()));
    } catch (error) {
      assert.ok(isStrataError(error), `expected a StrataError, got ${String(error)}`);
      return { error, events };
    }
    assert.equal(result.done, false, 'the stream ended without an error');
    if (result.value.kind === 'events') events.push(...result.value.events);
  }
  assert.fail(`more than ${BATCHES_MAX} batches and no error`);
}

// progressWithin reads until a progress batch at `revision` or later; answers every batch read.
async function progressWithin(stream: WatchStream, revision: number, ms = WAIT_MS): Promise<WatchBatch[]> {
  const batches: WatchBatch[] = [];
  const deadline = performance.now() + ms;
  for (let read = 0; read < BATCHES_MAX; read++) {
    const result = await nextWithin(stream, Math.max(1, deadline - performance.now()));
    assert.equal(result.done, false, 'the stream ended');
    batches.push(result.value);
    if (result.value.kind === 'progress' && result.value.revision >= revision) return batches;
  }
  assert.fail(`no progress at ${revision} in ${BATCHES_MAX} batches`);
}

const revisionsOf = (events: readonly WatchEvent[]): number[] => events.map((event) => event.kv.modRevision);

// stopped waits until the kernel reports process `pid` stopped (state T), so that a request sent
// after it cannot be answered by threads that had not yet been stopped.
async function stopped(pid: number): Promise<void> {
  for (let check = 0; check < 100; check++) {
    const state = /\) (\w)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
    if (state === 'T') return;
    await sleep(10);
  }
  assert.fail(`process ${pid} did not stop`);
}

// compact compacts etcd's history up to `revision` (KV.Compact; the client has no call for it).
async function compact(endpoint: string, revision: number): Promise<void> {
  const method = loadEtcdServices().kv['Compact'];
  assert.ok(method !== undefined);
  const channel = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  try {
    await new Promise((resolve, reject) => {
      channel.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, { revision, physical: true }, { deadline: Date.now() + WAIT_MS }, (error, value) =>
        error === null ? resolve(value) : reject(error),
      );
    });
  } finally {
    channel.close();
  }
}

describe('watch against a single etcd member', { skip: etcdSkipReason() }, () => {
  let cluster: EtcdCluster;
  let endpoint: string;
  let client: EtcdClient;
  const clients: EtcdClient[] = [];
  const newClient = (logger?: ClientLogger): EtcdClient => {
    const created = new EtcdClient({ endpoints: [endpoint], timeoutMs: 5000, ...(logger === undefined ? {} : { logger }) });
    clients.push(created);
    return created;
  };
  const head = async (): Promise<number> => (await client.get('any')).header.revision;

  before(async () => {
    cluster = await startEtcdCluster(1);
    endpoint = cluster.endpoints[0] ?? '';
    client = newClient();
  });
  after(async () => {
    for (const created of clients) created.close();
    await cluster?.stop();
  });

  test('options are checked', () => {
    for (const startRevision of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => client.watch({ key: 'k', startRevision }), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT), String(startRevision));
    }
    assert.throws(() => client.watch({ key: 'k', startRevision: 1, idleTimeoutMs: 0 }), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => client.watch({ key: 'k', startRevision: 1, prefix: true, fromKey: true }), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
  });

  test('puts, deletes and a txn arrive grouped by revision, with the counters a Range answers', async () => {
    const start = (await head()) + 1;
    const stream = client.watch({ key: 'ev/', prefix: true, startRevision: start });
    try {
      const puts = [await client.put('ev/a', '1'), await client.put('ev/a', '2'), await client.put('ev/b', '1')];
      const txn = await client.txn({
        type: 'txn',
        compare: [],
        success: [
          { type: 'put', key: Buffer.from('ev/c'), value: Buffer.from('c') },
          { type: 'put', key: Buffer.from('ev/d'), value: Buffer.from('d') },
          { type: 'deleteRange', key: Buffer.from('ev/a') },
        ],
        failure: [],
      });
      const deleted = await client.delete('ev/b');
      const batches = await eventBatchesUntil(stream, deleted.revision);
      // Each revision lies in one batch.
      const revisionBatch = new Map<number, number>();
      batches.forEach((events, index) => {
        for (const event of events) {
          const seen = revisionBatch.get(event.kv.modRevision);
          assert.ok(seen === undefined || seen === index, `revision ${event.kv.modRevision} is split across batches`);
          revisionBatch.set(event.kv.modRevision, index);
        }
      });
      const events = batches.flat();
      assert.deepEqual(revisionsOf(events), [...puts.map((put) => put.revision), txn.revision, txn.revision, txn.revision, deleted.revision]);
      assert.deepEqual(
        events.map((event) => `${event.type} ${text(event.kv.key)}`),
        ['put ev/a', 'put ev/a', 'put ev/b', 'put ev/c', 'put ev/d', 'delete ev/a', 'delete ev/b'],
      );
      for (const event of events.filter((candidate) => candidate.type === 'put')) {
        const read = (await client.get(event.kv.key, { revision: event.kv.modRevision })).kvs[0];
        const counters = (kv: typeof read) => [text(kv?.key), text(kv?.value), kv?.createRevision, kv?.modRevision, kv?.version, kv?.lease];
        assert.deepEqual(counters(event.kv), counters(read));
      }
      const secondA = events[1];
      assert.equal(secondA?.kv.version, 2);
      assert.equal(secondA?.kv.createRevision, puts[0]?.revision);
      assert.equal(secondA?.kv.lease, 0n);
      assert.equal(events[5]?.kv.modRevision, txn.revision);
      assert.equal(events[5]?.prevKv, undefined);
      assert.equal(stream.lastRevision, deleted.revision);
      assert.equal(stream.lastEventRevision, deleted.revision);
    } finally {
      stream.close();
    }
  });

  test('prevKv reports each pair as it was before the event', async () => {
    const start = (await head()) + 1;
    const stream = client.watch({ key: 'pk', startRevision: start, prevKv: true });
    try {
      await client.put('pk', 'v1');
      await client.put('pk', 'v2');
      const deleted = await client.delete('pk');
      const events = (await eventBatchesUntil(stream, deleted.revision)).flat();
      assert.deepEqual(
        events.map((event) => [event.type, text(event.kv.value), event.prevKv === undefined ? null : text(event.prevKv.value)]),
        [
          ['put', 'v1', null],
          ['put', 'v2', 'v1'],
          ['delete', '', 'v2'],
        ],
      );
      assert.equal(events[2]?.prevKv?.version, 2);
    } finally {
      stream.close();
    }
  });

  test('prefix, range and fromKey watches see only their keys', async () => {
    const start = (await head()) + 1;
    const prefixed = client.watch({ key: 'rg/', prefix: true, startRevision: start });
    const ranged = client.watch({ key: 'rg/b', rangeEnd: 'rg/d', startRevision: start });
    const fromKey = client.watch({ key: 'rg/c', fromKey: true, startRevision: start });
    try {
      let last = 0;
      for (const key of ['rf', 'rg/a', 'rg/b', 'rg/c', 'rg/d', 'rh']) last = (await client.put(key, key)).revision;
      const keys = async (stream: WatchStream, lastKey: string): Promise<string[]> => {
        const seen: string[] = [];
        for (let read = 0; read < BATCHES_MAX && seen.at(-1) !== lastKey; read++) {
          const result = await nextWithin(stream);
          if (result.done !== true && result.value.kind === 'events') seen.push(...result.value.events.map((event) => text(event.kv.key)));
        }
        return seen;
      };
      assert.deepEqual(await keys(prefixed, 'rg/d'), ['rg/a', 'rg/b', 'rg/c', 'rg/d']);
      assert.deepEqual(await keys(ranged, 'rg/c'), ['rg/b', 'rg/c']);
      assert.deepEqual(await keys(fromKey, 'rh'), ['rg/c', 'rg/d', 'rh']);
      assert.equal(fromKey.lastRevision, last);
    } finally {
      prefixed.close();
      ranged.close();
      fromKey.close();
    }
  });

  test('a start revision in the past replays the history, then follows', async () => {
    const written: number[] = [];
    for (let index = 0; index < 20; index++) written.push((await client.put(`hist/${index % 3}`, String(index))).revision);
    const stream = client.watch({ key: 'hist/', prefix: true, startRevision: written[5] ?? 0 });
    try {
      const replayed = (await eventBatchesUntil(stream, written.at(-1) ?? 0)).flat();
      assert.deepEqual(revisionsOf(replayed), written.slice(5));
      assert.deepEqual(replayed.map((event) => text(event.kv.value)), written.slice(5).map((_, index) => String(index + 5)));
      const more = await client.put('hist/0', 'after');
      const followed = (await eventBatchesUntil(stream, more.revision)).flat();
      assert.deepEqual(revisionsOf(followed), [more.revision]);
    } finally {
      stream.close();
    }
  });

  test('requestProgress answers the current revision with no events', async () => {
    const start = (await head()) + 1;
    const stream = client.watch({ key: 'quiet/', prefix: true, startRevision: start });
    try {
      stream.requestProgress();
      const first = await progressWithin(stream, start - 1);
      assert.ok(first.every((batch) => batch.kind === 'progress'));
      // A write elsewhere moves the store, not the watch: the next answer names it, with no events.
      const elsewhere = await client.put('not-quiet', 'x');
      stream.requestProgress();
      const second = await progressWithin(stream, elsewhere.revision);
      assert.ok(second.every((batch) => batch.kind === 'progress'), JSON.stringify(second));
      assert.equal(second.at(-1)?.revision, elsewhere.revision);
      assert.equal(stream.lastRevision, elsewhere.revision);
      assert.equal(stream.lastEventRevision, start - 1);
    } finally {
      stream.close();
    }
  });

  test('with progressNotifyIntervalMs a quiet watch yields progress by itself', async () => {
    const current = await head();
    const stream = client.watch({ key: 'quiet-interval/', prefix: true, startRevision: current + 1, progressNotifyIntervalMs: 100 });
    try {
      for (let count = 0; count < 3; count++) {
        const result = await nextWithin(stream, 5000);
        assert.equal(result.done, false);
        assert.equal(result.value?.kind, 'progress');
        assert.ok((result.value?.revision ?? 0) >= current);
      }
    } finally {
      stream.close();
    }
  });

  test('a requested progress may overtake the history it covers (etcd#15220); the history still comes whole and in order', async (t: TestContext) => {
    const written: number[] = [];
    for (let index = 0; index < 30; index++) written.push((await client.put(`over/${index % 4}`, String(index))).revision);
    const logger = recordingLogger();
    const stream = newClient(logger).watch({ key: 'over/', prefix: true, startRevision: written[0] ?? 0 });
    try {
      stream.requestProgress();
      const batches: WatchBatch[] = [];
      for (let read = 0; read < BATCHES_MAX; read++) {
        const result = await nextWithin(stream);
        if (result.done === true) break;
        batches.push(result.value);
        const events = batches.flatMap((batch) => (batch.kind === 'events' ? batch.events : []));
        if ((events.at(-1)?.kv.modRevision ?? 0) >= (written.at(-1) ?? 0)) break;
      }
      const events = batches.flatMap((batch) => (batch.kind === 'events' ? batch.events : []));
      assert.deepEqual(revisionsOf(events), written);
      assert.equal(stream.lastEventRevision, written.at(-1));
      const overtaken = batches.findIndex((batch) => batch.kind === 'progress') < batches.findIndex((batch) => batch.kind === 'events');
      const warned = logger.lines.some((line) => line.message.includes('15220'));
      assert.equal(warned, overtaken && batches.some((batch) => batch.kind === 'progress' && batch.revision >= (written[0] ?? 0)));
      t.diagnostic(overtaken ? 'this etcd answered the progress request before the history (etcd#15220)' : 'this etcd held the progress answer behind the history');
    } finally {
      stream.close();
    }
  });

  test('a transaction too large for one message (128 keys, with prevKv) is one batch, joined from fragments', async (t: TestContext) => {
    // 128 × 11 KiB stays under etcd's 1.5 MiB request limit; with prevKv the watch response is
    // twice that, over --max-request-bytes, so etcd cuts it into fragments.
    const keys = 128;
    const value = (fill: number): Buffer => Buffer.alloc(11 * 1024, fill);
    const operations = (fill: number): { type: 'put'; key: Buffer; value: Buffer }[] =>
      Array.from({ length: keys }, (_, index) => ({ type: 'put' as const, key: Buffer.from(`big/${String(index).padStart(3, '0')}`), value: value(fill) }));
    const start = (await head()) + 1;
    const logger = recordingLogger();
    const live = newClient(logger).watch({ key: 'big/', prefix: true, startRevision: start, prevKv: true });
    try {
      const first = await client.txn({ type: 'txn', compare: [], success: operations(1), failure: [] });
      const second = await client.txn({ type: 'txn', compare: [], success: operations(2), failure: [] });
      const replay = newClient(logger).watch({ key: 'big/', prefix: true, startRevision: start, prevKv: true });
      try {
        for (const stream of [live, replay]) {
          const batches = await eventBatchesUntil(stream, second.revision);
          const batchOf = new Map<number, number>();
          const counts = new Map<number, number>();
          batches.forEach((events, index) => {
            for (const event of events) {
              const revision = event.kv.modRevision;
              assert.ok((batchOf.get(revision) ?? index) === index, `revision ${revision} is split across batches`);
              batchOf.set(revision, index);
              counts.set(revision, (counts.get(revision) ?? 0) + 1);
            }
          });
          assert.deepEqual([...counts], [
            [first.revision, keys],
            [second.revision, keys],
          ]);
          const last = batches.at(-1)?.at(-1);
          assert.equal(last?.prevKv?.value[0], 1);
          assert.equal(last?.kv.value[0], 2);
        }
      } finally {
        replay.close();
      }
      const joins = logger.lines.filter((line) => line.message === 'watch: joined a fragmented response');
      assert.ok(joins.length >= 2, `etcd sent no fragments: ${JSON.stringify(logger.lines)}`);
      assert.ok(joins.every((line) => Number(line.fields['fragments']) >= 2));
      t.diagnostic(`fragments joined: ${joins.map((line) => `${String(line.fields['fragments'])} pieces/${String(line.fields['events'])} events`).join(', ')}`);
    } finally {
      live.close();
    }
  });

  test('a caller that does not read pauses the stream; everything then arrives in order', async () => {
    const logger = recordingLogger();
    const start = (await head()) + 1;
    const stream = newClient(logger).watch({ key: 'slow/', prefix: true, startRevision: start });
    try {
      // Confirmed and caught up, so each put below comes as its own response.
      stream.requestProgress();
      await progressWithin(stream, start - 1);
      const written: number[] = [];
      for (let index = 0; index < 200; index++) written.push((await client.put(`slow/${index % 10}`, 'x'.repeat(1024))).revision);
      const paused = logger.lines.find((line) => line.message === 'watch: the caller is behind; paused reading');
      assert.ok(paused !== undefined, 'the stream never paused');
      assert.ok(Number(paused.fields['queued']) <= 64, JSON.stringify(paused.fields));
      const events = (await eventBatchesUntil(stream, written.at(-1) ?? 0)).flat();
      assert.deepEqual(revisionsOf(events), written);
    } finally {
      stream.close();
    }
  });

  test('close, abort and leaving a loop end the iteration cleanly', async () => {
    const start = (await head()) + 1;
    const closed = client.watch({ key: 'end/', prefix: true, startRevision: start });
    const pending = closed.next();
    closed.close();
    assert.deepEqual(await pending, { done: true, value: undefined });
    closed.close();
    assert.deepEqual(await closed.next(), { done: true, value: undefined });

    const controller = new AbortController();
    const aborted = client.watch({ key: 'end/', prefix: true, startRevision: start, signal: controller.signal });
    const waiting = aborted.next();
    controller.abort();
    assert.deepEqual(await waiting, { done: true, value: undefined });

    const already = client.watch({ key: 'end/', prefix: true, startRevision: start, signal: controller.signal });
    assert.deepEqual(await already.next(), { done: true, value: undefined });

    const looped = client.watch({ key: 'end/', prefix: true, startRevision: start });
    const put = await client.put('end/x', '1');
    let seen = 0;
    for await (const batch of looped) {
      if (batch.kind === 'events') seen += batch.events.length;
      if (seen > 0) break;
    }
    assert.equal(seen, 1);
    assert.equal(looped.lastRevision, put.revision);
    assert.deepEqual(await looped.next(), { done: true, value: undefined });
    // The client is unharmed: its calls and its next watch work.
    assert.equal((await client.get('end/x')).count, 1);
  });

  test('closing the client ends an open watch with STOPPED', async () => {
    const own = newClient();
    const stream = own.watch({ key: 'stop/', prefix: true, startRevision: (await head()) + 1 });
    const pending = stream.next();
    own.close();
    await assert.rejects(pending, (error) => isStrataError(error, ErrorCode.STOPPED));
    assert.deepEqual(await stream.next(), { done: true, value: undefined });
    assert.throws(() => own.watch({ key: 'stop/', startRevision: 1 }), (error) => isStrataError(error, ErrorCode.STOPPED));
  });

  test('a compacted start revision is COMPACTED with compactRevision', async () => {
    const first = await client.put('cp/x', '1');
    await client.put('cp/x', '2');
    const third = await client.put('cp/x', '3');
    await compact(endpoint, third.revision);
    const stream = client.watch({ key: 'cp/', prefix: true, startRevision: first.revision });
    const { error, events } = await failureOf(stream);
    assert.equal(error.code, ErrorCode.COMPACTED, error.message);
    assert.equal(error.details['compactRevision'], third.revision);
    assert.equal(error.details['lastRevision'], first.revision - 1);
    assert.deepEqual(events, []);
    // From the compaction on, the history is there.
    const after = client.watch({ key: 'cp/', prefix: true, startRevision: third.revision });
    try {
      assert.deepEqual(revisionsOf((await eventBatchesUntil(after, third.revision)).flat()), [third.revision]);
    } finally {
      after.close();
    }
  });

  test('a frozen member is TIMEOUT after a progress request, or after the progress interval', async () => {
    const member = cluster.members[0];
    assert.ok(member?.process.pid !== undefined);
    const start = (await head()) + 1;
    const asked = client.watch({ key: 'frozen/', prefix: true, startRevision: start, idleTimeoutMs: 300 });
    const interval = client.watch({ key: 'frozen/', prefix: true, startRevision: start, idleTimeoutMs: 300, progressNotifyIntervalMs: 200 });
    try {
      for (const stream of [asked, interval]) {
        stream.requestProgress();
        await progressWithin(stream, start - 1);
      }
      process.kill(member.process.pid, 'SIGSTOP');
      await stopped(member.process.pid);
      asked.requestProgress();
      const startedAt = performance.now();
      const [askedFailure, intervalFailure] = await Promise.all([failureOf(asked, 5000), failureOf(interval, 5000)]);
      for (const { error } of [askedFailure, intervalFailure]) {
        assert.equal(error.code, ErrorCode.TIMEOUT, error.message);
        assert.equal(error.details['lastRevision'], start - 1);
      }
      assert.ok(performance.now() - startedAt < 3000);
    } finally {
      process.kill(member.process.pid, 'SIGCONT');
      asked.close();
      interval.close();
    }
    assert.equal((await client.get('frozen/', { prefix: true })).count, 0);
  });

  // runChild runs `lines` as an ES module in a new Node process and answers its exit code and output.
  async function runChild(lines: readonly string[]): Promise<{ code: number | null; output: string }> {
    const clientModule = pathToFileURL(join(import.meta.dirname, '../../src/client/index.ts')).href;
    const script = [`import { EtcdClient } from ${JSON.stringify(clientModule)};`, ...lines].join('\n');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('exit', resolve);
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the process did not exit within ${WAIT_MS} ms: ${output}`));
      }, WAIT_MS);
    }).finally(() => clearTimeout(timer));
    return { code, output };
  }

  for (const ending of ['abort', 'client-close'] as const) {
    test(`a process whose watch ended (${ending}) exits by itself: nothing is left open`, async () => {
      const { code, output } = await runChild([
        `const client = new EtcdClient({ endpoints: [${JSON.stringify(endpoint)}] });`,
        `const head = (await client.get('any')).header.revision;`,
        'const controller = new AbortController();',
        `const stream = client.watch({ key: 'child/', prefix: true, startRevision: head + 1, signal: controller.signal, progressNotifyIntervalMs: 50, idleTimeoutMs: 60000 });`,
        'const first = await stream.next();',
        'const pending = stream.next();',
        ending === 'abort' ? 'controller.abort(); client.close();' : 'client.close();',
        'const last = await pending.then((result) => String(result.done), (error) => error.code);',
        'console.log(JSON.stringify({ first: first.value?.kind, last }));',
      ]);
      assert.equal(code, 0, output);
      assert.deepEqual(JSON.parse(output.trim()), { first: 'progress', last: ending === 'abort' ? 'true' : ErrorCode.STOPPED });
    });
  }
});

describe('watch on a 3-member etcd cluster', { skip: etcdSkipReason() }, () => {
  let cluster: EtcdCluster;
  const clients: EtcdClient[] = [];
  const newClient = (endpoints: readonly string[], timeoutMs = 5000): EtcdClient => {
    const created = new EtcdClient({ endpoints, timeoutMs });
    clients.push(created);
    return created;
  };
  // Set by the first test: the member left standing with the leader, and the leader.
  let leader: EtcdMember;
  let follower: EtcdMember;

  before(async () => {
    cluster = await startEtcdCluster(3, { extraArgs: ['--experimental-watch-progress-notify-interval=500ms'] });
  });
  after(async () => {
    for (const created of clients) created.close();
    await cluster?.stop();
  });

  test('etcd\'s periodic progress notifications arrive without a request', async () => {
    const client = newClient(cluster.endpoints);
    const current = (await client.get('any')).header.revision;
    const stream = client.watch({ key: 'periodic/', prefix: true, startRevision: current + 1 });
    try {
      const result = await nextWithin(stream, 5000);
      assert.equal(result.value?.kind, 'progress');
      assert.ok((result.value?.revision ?? 0) >= current);
    } finally {
      stream.close();
    }
  });

  test('a member killed mid-watch is UNAVAILABLE naming the last revision; a watch from there on another member has no gap and no duplicate', async () => {
    const statuses = await newClient(cluster.endpoints).statusAll();
    const leaderEndpoint = statuses.find((result) => result.ok && result.status.memberId === result.status.leaderId)?.endpoint;
    const members = cluster.members;
    leader = members.find((member) => member.clientEndpoint === leaderEndpoint) ?? assert.fail('no leader');
    const followers = members.filter((member) => member !== leader);
    // The victim is a follower, so the writes go on without an election.
    const victim = followers[0] ?? assert.fail('no follower');
    follower = followers[1] ?? assert.fail('one follower');
    const watcher = newClient([victim.clientEndpoint, follower.clientEndpoint, leader.clientEndpoint]);
    const writer = newClient([leader.clientEndpoint, follower.clientEndpoint], 10_000);

    const start = (await writer.get('seq/')).header.revision + 1;
    const first = watcher.watch({ key: 'seq/', prefix: true, startRevision: start });
    assert.equal(first.endpoint, victim.clientEndpoint);
    const written: { revision: number; value: string }[] = [];
    const puts = 60;
    const writing = (async () => {
      for (let index = 0; index < puts; index++) {
        const value = String(index);
        written.push({ revision: (await writer.put(`seq/${index % 7}`, value)).revision, value });
        await sleep(5);
      }
    })();
    try {
      const seen: WatchEvent[] = [];
      for (let read = 0; read < BATCHES_MAX && seen.length < 15; read++) {
        const result = await nextWithin(first);
        if (result.done !== true && result.value.kind === 'events') seen.push(...result.value.events);
      }
      await cluster.kill(victim);
      const { error, events } = await failureOf(first);
      seen.push(...events);
      assert.equal(error.code, ErrorCode.UNAVAILABLE, error.message);
      assert.equal(error.details['endpoint'], victim.clientEndpoint);
      const lastRevision = error.details['lastRevision'];
      assert.equal(typeof lastRevision, 'number');
      assert.equal(lastRevision, first.lastRevision);
      assert.ok((seen.at(-1)?.kv.modRevision ?? start - 1) <= Number(lastRevision));
      await writing;

      const second = watcher.watch({ key: 'seq/', prefix: true, startRevision: Number(lastRevision) + 1 });
      try {
        assert.notEqual(second.endpoint, victim.clientEndpoint);
        const rest = (await eventBatchesUntil(second, written.at(-1)?.revision ?? 0)).flat();
        const all = [...seen, ...rest];
        assert.deepEqual(revisionsOf(all), written.map((put) => put.revision));
        assert.deepEqual(all.map((event) => text(event.kv.value)), written.map((put) => put.value));
      } finally {
        second.close();
      }
    } finally {
      first.close();
      await writing.catch(() => undefined);
    }
  });

  test('a member without a leader ends its watch UNAVAILABLE (hasleader), and refuses a new one', async () => {
    assert.ok(leader !== undefined && follower !== undefined, 'runs after the kill test');
    const client = newClient([follower.clientEndpoint]);
    const start = (await client.get('any', { serializable: true })).header.revision + 1;
    const stream = client.watch({ key: 'orphan/', prefix: true, startRevision: start });
    try {
      stream.requestProgress();
      await progressWithin(stream, start - 1);
      await cluster.kill(leader);
      // etcd cancels a hasleader stream after three election timeouts without a leader.
      const { error } = await failureOf(stream, 20_000);
      assert.equal(error.code, ErrorCode.UNAVAILABLE, error.message);
      assert.ok(isStrataError(error.cause, ErrorCode.NO_LEADER), String(error.cause));
      const refused = client.watch({ key: 'orphan/', prefix: true, startRevision: start });
      const { error: again } = await failureOf(refused);
      assert.equal(again.code, ErrorCode.UNAVAILABLE, again.message);
      assert.ok(isStrataError(again.cause, ErrorCode.NO_LEADER), String(again.cause));
    } finally {
      stream.close();
    }
  });
});

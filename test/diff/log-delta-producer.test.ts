// LogDeltaProducer and LogDeltaCursor together, without gRPC, on a VirtualClock (no real
// timers): the window holds at most 4 unacknowledged chunks (and waits for the transport's
// drain), a consumer silent for the stall time is dropped with TIMEOUT, a following stream
// heartbeats and wakes on a commit, a compacted index gets the snapshot then the entries, a
// snapshot broken off is resumed at the bytes verified with its file SHA-256 still checked,
// and bad requests are refused naming the field.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import type { ChunkSink, LogChunk, LogDeltaEvent, LogDeltaSnapshot, LogDeltaSource, LogStreamStart, SnapshotMeta } from '../../src/diff/index.ts';
import { ACK_STALL_MS_MAX, ChunkKind, HEARTBEAT_INTERVAL_MS, LogDeltaCursor, LogDeltaProducer, WINDOW_CHUNKS_MAX } from '../../src/diff/index.ts';
import type { Entry } from '../../src/raft/index.ts';
import { EntryType, limitEntriesBySize } from '../../src/raft/index.ts';
import type { TimerId } from '../../src/util/index.ts';
import { ErrorCode, isStrataError, settleMacrotasks, StrataError, VirtualClock } from '../../src/util/index.ts';

const BLOCK_BYTES = 64 * 1024;

// MemorySource is a member's committed log in memory: entries 1..committed, compacted below
// `first`, with one snapshot file (whole BLOCK_BYTES blocks) at first - 1.
class MemorySource implements LogDeltaSource {
  readonly clock: VirtualClock;
  readonly entries: Entry[] = [];
  first = 1;
  removed = false;
  snapshot: { meta: SnapshotMeta; bytes: Uint8Array } | undefined;
  snapshotReads = 0;
  // How long opening the snapshot takes (taking one may take a while).
  openDelayMs = 0;
  readonly waiters = new Set<() => void>();

  constructor(clock: VirtualClock) {
    this.clock = clock;
  }

  append(count: number, dataBytes: number): void {
    for (let n = 0; n < count; n += 1) {
      const index = this.entries.length + 1;
      this.entries.push({ index, term: 2, type: EntryType.Normal, data: new Uint8Array(dataBytes).fill(index % 251) });
    }
    for (const wake of [...this.waiters]) wake();
  }

  compactThrough(index: number, snapshotBytes: number): void {
    const bytes = new Uint8Array(snapshotBytes);
    for (let at = 0; at < bytes.byteLength; at += 1) bytes[at] = (at * 7 + index) % 256;
    const id = `0000000000000002-${index.toString(16).padStart(16, '0')}`;
    this.snapshot = { meta: { id, index, term: 2, revision: index, byteLength: snapshotBytes, sha256: 'cd'.repeat(32) }, bytes };
    this.first = index + 1;
  }

  committedIndex(): number {
    return this.entries.length;
  }

  firstIndex(): number {
    return this.first;
  }

  readCommittedEntries(from: number, toInclusive: number, maxBytes: number): readonly Entry[] {
    assert.ok(toInclusive <= this.committedIndex(), 'never read past the commit index');
    if (from < this.first) throw new StrataError(ErrorCode.COMPACTED, `${from} is compacted`);
    return limitEntriesBySize(this.entries.slice(from - 1, toInclusive), maxBytes);
  }

  async openSnapshot(): Promise<LogDeltaSnapshot> {
    if (this.openDelayMs > 0) await new Promise<void>((resolve) => this.clock.setTimeout(resolve, this.openDelayMs));
    const snapshot = this.snapshot;
    assert.ok(snapshot !== undefined, 'a compacted log has a snapshot');
    return {
      meta: snapshot.meta,
      read: async (offset, maxBytes) => {
        this.snapshotReads += 1;
        assert.equal(offset % BLOCK_BYTES, 0, 'reads start on a block boundary');
        const blocks = Math.max(1, Math.floor(maxBytes / BLOCK_BYTES));
        return snapshot.bytes.slice(offset, Math.min(snapshot.bytes.byteLength, offset + blocks * BLOCK_BYTES));
      },
      close: async () => undefined,
    };
  }

  waitForCommit(afterIndex: number, options: { readonly signal: AbortSignal; readonly timeoutMs: number }): Promise<boolean> {
    if (this.committedIndex() > afterIndex) return Promise.resolve(true);
    return new Promise((resolve, reject) => {
      const finish = (result: boolean | Error): void => {
        this.waiters.delete(wake);
        this.clock.clearTimeout(timer);
        options.signal.removeEventListener('abort', onAbort);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      const wake = (): void => {
        if (this.committedIndex() > afterIndex) finish(true);
      };
      const onAbort = (): void => finish(new StrataError(ErrorCode.CANCELED, 'cancelled'));
      const timer: TimerId = this.clock.setTimeout(() => finish(false), options.timeoutMs);
      options.signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(wake);
    });
  }

  isRemoved(): boolean {
    return this.removed;
  }
}

// Call is one producer call with a sink that records chunks; `drain` holds sends when set.
class Call {
  readonly chunks: LogChunk[] = [];
  readonly abort = new AbortController();
  readonly producer: LogDeltaProducer;
  readonly outcome: Promise<unknown>;
  heldSend: (() => void) | undefined;
  holdSends = false;

  constructor(source: MemorySource, start: LogStreamStart) {
    const sink: ChunkSink = {
      send: (chunk) => {
        this.chunks.push(chunk);
        if (!this.holdSends) return Promise.resolve();
        return new Promise<void>((resolve) => (this.heldSend = resolve));
      },
    };
    this.producer = new LogDeltaProducer({ start, source, sink, clock: source.clock, signal: this.abort.signal });
    this.outcome = this.producer.run().then(
      (summary) => ({ summary }),
      (error: unknown) => ({ error }),
    );
  }
}

const settle = (): Promise<void> => settleMacrotasks(4);

function start(fields: Partial<LogStreamStart> & { fromIndex: number }): LogStreamStart {
  return { follow: false, toIndex: 0, maxChunkBytes: 0, ...fields };
}

// consume feeds every chunk not yet seen to the cursor and acknowledges it; answers the events.
function consume(call: Call, cursor: LogDeltaCursor, seen: { count: number }): LogDeltaEvent[] {
  const events: LogDeltaEvent[] = [];
  while (seen.count < call.chunks.length) {
    const chunk = call.chunks[seen.count] as LogChunk;
    seen.count += 1;
    events.push(...cursor.accept(chunk));
    call.producer.acknowledge({ sequence: chunk.sequence, verifiedIndex: cursor.verifiedIndex });
  }
  return events;
}

test('back-pressure: a consumer that acknowledges nothing gets at most the window, then TIMEOUT', async () => {
  const clock = new VirtualClock();
  const source = new MemorySource(clock);
  source.append(200, 100_000);
  const call = new Call(source, start({ fromIndex: 1 }));
  await settle();
  assert.equal(call.chunks.length, WINDOW_CHUNKS_MAX, 'the window is full');
  await clock.run({ untilMs: ACK_STALL_MS_MAX - 1, settle });
  assert.equal(call.chunks.length, WINDOW_CHUNKS_MAX, 'nothing more without acknowledgements');
  // One acknowledgement makes room for exactly one more chunk (the window stays full).
  call.producer.acknowledge({ sequence: 1, verifiedIndex: call.chunks[0]?.lastIndex ?? 0 });
  await settle();
  assert.equal(call.chunks.length, WINDOW_CHUNKS_MAX + 1);
  await clock.run({ untilMs: clock.now() + ACK_STALL_MS_MAX, settle });
  const outcome = (await call.outcome) as { error?: unknown };
  assert.ok(isStrataError(outcome.error, ErrorCode.TIMEOUT), String(outcome.error));
  assert.equal(call.chunks.length, WINDOW_CHUNKS_MAX + 1);
});

test("the transport's flow control holds the stream: nothing is cut while a send waits for drain", async () => {
  const clock = new VirtualClock();
  const source = new MemorySource(clock);
  source.append(50, 100_000);
  const call = new Call(source, start({ fromIndex: 1 }));
  call.holdSends = true;
  const cursor = new LogDeltaCursor({ fromIndex: 1, follow: false, toIndex: 0, maxChunkBytes: 0 });
  cursor.beginCall('test');
  const seen = { count: 0 };
  await settle();
  consume(call, cursor, seen);
  await settle();
  assert.equal(call.chunks.length, 1, 'acknowledged, but the transport has not drained');
  for (let drains = 0; drains < 100 && !cursor.ended; drains += 1) {
    call.heldSend?.();
    await settle();
    consume(call, cursor, seen);
  }
  assert.ok(cursor.ended);
  assert.equal(cursor.verifiedIndex, 50);
});

test('following: heartbeats while nothing commits, and a commit is sent at once', async () => {
  const clock = new VirtualClock();
  const source = new MemorySource(clock);
  source.append(3, 10);
  const call = new Call(source, start({ fromIndex: 2, follow: true }));
  const cursor = new LogDeltaCursor({ fromIndex: 2, follow: true, toIndex: 0, maxChunkBytes: 0 });
  cursor.beginCall('test');
  const seen = { count: 0 };
  await settle();
  assert.deepEqual(consume(call, cursor, seen).map((event) => event.type), ['entries']);
  await clock.run({ untilMs: HEARTBEAT_INTERVAL_MS * 3, settle });
  const heartbeats = consume(call, cursor, seen);
  assert.deepEqual(heartbeats.map((event) => event.type), ['heartbeat', 'heartbeat', 'heartbeat']);
  assert.ok(heartbeats.every((event) => event.type === 'heartbeat' && event.lastIndex === 3));
  const before = clock.now();
  source.append(2, 10);
  await settle();
  const events = consume(call, cursor, seen);
  assert.equal(clock.now(), before, 'no time passed: woken by the commit');
  assert.deepEqual(events.map((event) => event.type === 'entries' && [event.firstIndex, event.lastIndex]), [[4, 5]]);
  call.abort.abort();
  const outcome = (await call.outcome) as { error?: unknown };
  assert.ok(isStrataError(outcome.error, ErrorCode.CANCELED));
});

test('a compacted index gets the snapshot, then the entries after it; broken off mid-snapshot, it resumes at the bytes verified', async () => {
  const clock = new VirtualClock();
  const source = new MemorySource(clock);
  source.append(120, 1_000);
  source.compactThrough(100, 40 * BLOCK_BYTES);
  const cursor = new LogDeltaCursor({ fromIndex: 10, follow: false, toIndex: 0, maxChunkBytes: 0 });
  const events: LogDeltaEvent[] = [];

  // First call: broken off after a few snapshot chunks.
  const first = new Call(source, cursor.beginCall('first'));
  const seen = { count: 0 };
  await settle();
  events.push(...consume(first, cursor, seen));
  first.abort.abort();
  await first.outcome;
  const received = events.filter((event) => event.type === 'snapshot-data').reduce((sum, event) => sum + (event.type === 'snapshot-data' ? event.bytes.byteLength : 0), 0);
  assert.ok(received > 0 && received < 40 * BLOCK_BYTES, `part of the snapshot arrived (${received} bytes)`);
  assert.equal(cursor.verifiedIndex, 9, 'a partial snapshot moves nothing');

  // Second call: offers the snapshot at the bytes verified, and the producer resumes it, after
  // heartbeats while the snapshot is slow to open (they do not make the cursor give it up).
  source.openDelayMs = HEARTBEAT_INTERVAL_MS * 2.5;
  const request = cursor.beginCall('second');
  assert.deepEqual(request.resumeSnapshot, { id: source.snapshot?.meta.id, offset: received });
  const second = new Call(source, request);
  const seen2 = { count: 0 };
  await clock.run({ untilMs: clock.now() + source.openDelayMs, settle });
  for (let round = 0; round < 100 && !cursor.ended; round += 1) {
    await settle();
    events.push(...consume(second, cursor, seen2));
  }
  assert.ok(cursor.ended);
  const types = events.map((event) => event.type);
  assert.deepEqual(types.filter((type) => type === 'heartbeat').length, 2, 'two heartbeats while the snapshot opened');
  assert.equal(types.filter((type) => type === 'snapshot-begin').length, 2);
  assert.ok(!types.includes('snapshot-abandoned'));
  const begins = events.filter((event) => event.type === 'snapshot-begin');
  assert.deepEqual(begins.map((event) => event.type === 'snapshot-begin' && event.resumedAt), [0, received]);
  const data = Buffer.concat(events.flatMap((event) => (event.type === 'snapshot-data' ? [event.bytes] : [])));
  assert.ok(data.equals(source.snapshot?.bytes ?? new Uint8Array(0)), 'every snapshot byte exactly once, in order');
  const end = events.find((event) => event.type === 'snapshot-end');
  assert.equal(end?.type === 'snapshot-end' && end.fileSha256, createHash('sha256').update(data).digest('hex'));
  const entries = events.flatMap((event) => (event.type === 'entries' ? event.entries.map((entry) => entry.index) : []));
  assert.deepEqual(entries, Array.from({ length: 20 }, (_, offset) => 101 + offset), 'then 101..120, each once');
  assert.equal(cursor.verifiedIndex, 120);
});

test('a damaged chunk is refused naming it, and the next call resumes with nothing lost or repeated', async () => {
  const clock = new VirtualClock();
  const source = new MemorySource(clock);
  source.append(400, 2_000);
  const cursor = new LogDeltaCursor({ fromIndex: 1, follow: false, toIndex: 0, maxChunkBytes: 0 });
  const first = new Call(source, cursor.beginCall('first'));
  await settle();
  const good = cursor.accept(first.chunks[0] as LogChunk);
  const damaged = first.chunks[1] as LogChunk;
  const payload = damaged.payload.slice();
  payload[100] = (payload[100] ?? 0) ^ 0x10;
  assert.throws(() => cursor.accept({ ...damaged, payload }), (error) => isStrataError(error, ErrorCode.CORRUPTION) && error.details['sequence'] === 2);
  first.abort.abort();
  await first.outcome;
  const through = cursor.verifiedIndex;
  assert.equal(good[0]?.type === 'entries' && good[0].lastIndex, through);

  const indexes: number[] = good.flatMap((event) => (event.type === 'entries' ? event.entries.map((entry) => entry.index) : []));
  const second = new Call(source, cursor.beginCall('second'));
  const seen = { count: 0 };
  for (let round = 0; round < 200 && !cursor.ended; round += 1) {
    await settle();
    for (const event of consume(second, cursor, seen)) if (event.type === 'entries') indexes.push(...event.entries.map((entry) => entry.index));
  }
  assert.deepEqual(indexes, Array.from({ length: 400 }, (_, offset) => offset + 1));
});

test('bad requests are refused naming the field: follow on a removed member, an ack of a chunk never sent', async () => {
  const clock = new VirtualClock();
  const source = new MemorySource(clock);
  source.append(5, 10);
  source.removed = true;
  const follow = new Call(source, start({ fromIndex: 1, follow: true }));
  const refused = (await follow.outcome) as { error?: unknown };
  assert.ok(isStrataError(refused.error, ErrorCode.INVALID_ARGUMENT) && refused.error.details['field'] === 'follow', String(refused.error));

  source.removed = false;
  const call = new Call(source, start({ fromIndex: 1, follow: true }));
  await settle();
  call.producer.acknowledge({ sequence: 99, verifiedIndex: 0 });
  const outcome = (await call.outcome) as { error?: unknown };
  assert.ok(isStrataError(outcome.error, ErrorCode.INVALID_ARGUMENT) && outcome.error.details['field'] === 'ack.sequence', String(outcome.error));
});

test('a stream without follow ends with an end chunk at the commit index it started with', async () => {
  const clock = new VirtualClock();
  const source = new MemorySource(clock);
  source.append(10, 10);
  const call = new Call(source, start({ fromIndex: 4 }));
  await settle();
  source.append(5, 10);
  await settle();
  const last = call.chunks.at(-1);
  assert.equal(last?.kind, ChunkKind.End);
  assert.equal(last?.lastIndex, 10);
  const outcome = (await call.outcome) as { summary?: { entries: number } };
  assert.equal(outcome.summary?.entries, 7);
});

test('a partial snapshot the next call does not continue is abandoned, then the newer one arrives whole', async () => {
  const clock = new VirtualClock();
  const source = new MemorySource(clock);
  source.append(130, 1_000);
  source.compactThrough(100, 40 * BLOCK_BYTES);
  const cursor = new LogDeltaCursor({ fromIndex: 1, follow: false, toIndex: 0, maxChunkBytes: 0 });
  const first = new Call(source, cursor.beginCall('first'));
  await settle();
  const events = consume(first, cursor, { count: 0 });
  first.abort.abort();
  await first.outcome;
  const old = source.snapshot?.meta;
  source.compactThrough(110, 8 * BLOCK_BYTES); // a newer snapshot replaced it meanwhile
  const second = new Call(source, cursor.beginCall('second'));
  const seen = { count: 0 };
  for (let round = 0; round < 100 && !cursor.ended; round += 1) {
    await settle();
    events.push(...consume(second, cursor, seen));
  }
  const abandoned = events.findIndex((event) => event.type === 'snapshot-abandoned');
  assert.ok(abandoned > 0);
  assert.equal(events[abandoned]?.type === 'snapshot-abandoned' && events[abandoned].snapshot.id, old?.id);
  const next = events[abandoned + 1];
  assert.ok(next?.type === 'snapshot-begin' && next.resumedAt === 0 && next.snapshot.index === 110);
  const after = events.slice(abandoned + 1);
  const data = Buffer.concat(after.flatMap((event) => (event.type === 'snapshot-data' ? [event.bytes] : [])));
  assert.ok(data.equals(source.snapshot?.bytes ?? new Uint8Array(0)));
  assert.deepEqual(
    after.flatMap((event) => (event.type === 'entries' ? event.entries.map((entry) => entry.index) : [])),
    Array.from({ length: 20 }, (_, offset) => 111 + offset),
  );
});

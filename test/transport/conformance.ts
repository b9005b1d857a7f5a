// The Transport conformance suite: GrpcTransport and MemoryTransport run these same tests
// (test/transport/grpc-transport.test.ts, memory-transport.test.ts). Waiting is done on
// events (a promise that resolves when the expected messages arrived); the few waits for a
// link to notice a peer is gone are bounded loops. The snapshot stream cases use an in-test
// payload (SnapshotTestPayload: seeded blocks of 1 MiB + 4096·k bytes) and sink
// (SnapshotTestSink: checks that writes are contiguous, keeps the bytes, can fail or stall on
// a chosen write); a sink outlives its streams, as the driver keeps partial receives.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Message, NodeId, SnapshotMessage } from '../../src/raft/index.ts';
import type { TransportLimits } from '../../src/transport/limits.ts';
import type { SnapshotStats } from '../../src/transport/snapshot-stream.ts';
import type { PeerRequestKind, SnapshotPayload, SnapshotSink, Transport, TransportHandlers } from '../../src/transport/transport.ts';
import { SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX } from '../../src/transport/transport.ts';
import { ErrorCode, StrataError, isStrataError } from '../../src/util/errors.ts';

/** TransportHarness creates transports of one implementation for the suite. */
export interface TransportHarness {
  /** create makes an unstarted transport for `id`. */
  create(id: NodeId, options?: { limits?: Partial<TransportLimits>; clusterId?: number }): Transport;
  /** urlOf is the URL peers use for a started transport. */
  urlOf(transport: Transport): string;
  /** connected resolves once `from` can send to peer `to` (its stream is up). */
  connected(from: Transport, to: NodeId): Promise<void>;
  /** queued is how many messages `transport` holds for `peer`. */
  queued(transport: Transport, peer: NodeId): number;
  /** snapshotStats are the transport's snapshot counters. */
  snapshotStats(transport: Transport): SnapshotStats;
}

/** TEST_TIMEOUT_MS fails a test that hangs instead of hanging the run. */
export const TEST_TIMEOUT_MS = 30_000;

/** Recorder is a TransportHandlers that records what arrives and lets a test wait for it. */
export class Recorder implements TransportHandlers {
  readonly batches: Message[][] = [];
  readonly messages: Message[] = [];
  readonly unreachable: NodeId[] = [];
  private waiters: Array<{ done: () => boolean; resolve: () => void }> = [];
  requestHandler: (from: NodeId, kind: PeerRequestKind, body: Uint8Array, signal: AbortSignal) => Promise<Uint8Array> =
    (_from, _kind, body) => Promise.resolve(body);
  /** Every onSnapshot call, in order. */
  readonly snapshotOpens: Array<{ from: NodeId; message: SnapshotMessage; byteLength: number; signal: AbortSignal }> = [];
  snapshotHandler: (from: NodeId, message: SnapshotMessage, byteLength: number, signal: AbortSignal) => Promise<SnapshotSink> = () =>
    Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, 'this test receives no snapshots'));

  onMessages(messages: readonly Message[]): void {
    this.batches.push([...messages]);
    this.messages.push(...messages);
    this.check();
  }

  onUnreachable(peer: NodeId): void {
    this.unreachable.push(peer);
    this.check();
  }

  onRequest(from: NodeId, kind: PeerRequestKind, body: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    return this.requestHandler(from, kind, body, signal);
  }

  onSnapshot(from: NodeId, message: SnapshotMessage, byteLength: number, signal: AbortSignal): Promise<SnapshotSink> {
    this.snapshotOpens.push({ from, message, byteLength, signal });
    const sink = this.snapshotHandler(from, message, byteLength, signal);
    this.check();
    return sink;
  }

  /** until resolves once `done()` holds (checked whenever something arrives). */
  until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ done, resolve }));
  }

  private check(): void {
    const ready = this.waiters.filter((waiter) => waiter.done());
    this.waiters = this.waiters.filter((waiter) => !waiter.done());
    for (const waiter of ready) waiter.resolve();
  }
}

/** heartbeat makes a small message whose `commit` numbers it. */
export function heartbeat(from: NodeId, to: NodeId, commit: number): Message {
  return { type: 'heartbeat', from, to, term: 1, commit, context: undefined };
}

/** sampleMessages has one message of every type, with every optional field both ways. */
export function sampleMessages(from: NodeId, to: NodeId): Message[] {
  const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
  return [
    {
      type: 'append', from, to, term: 3, logTerm: 2, index: 10, commit: 9,
      entries: [
        { term: 3, index: 11, type: 0, data: bytes(100, 1) },
        { term: 3, index: 12, type: 1, data: bytes(0, 0) },
        { term: 2 ** 40, index: 2 ** 53 - 1, type: 0, data: bytes(3, 9) },
      ],
    },
    { type: 'append', from, to, term: 3, logTerm: 0, index: 0, commit: 0, entries: [] },
    { type: 'appendResponse', from, to, term: 3, index: 12, reject: false, rejectHint: 0, logTerm: 0 },
    { type: 'appendResponse', from, to, term: 3, index: 12, reject: true, rejectHint: 7, logTerm: 2 },
    { type: 'vote', from, to, term: 4, logTerm: 3, index: 12, leaderTransfer: true },
    { type: 'preVote', from, to, term: 5, logTerm: 3, index: 12, leaderTransfer: false },
    { type: 'voteResponse', from, to, term: 4, reject: false, commit: 0, commitTerm: 0 },
    { type: 'preVoteResponse', from, to, term: 5, reject: true, commit: 11, commitTerm: 3 },
    {
      type: 'snapshot', from, to, term: 6,
      snapshot: {
        metadata: {
          index: 100, term: 5,
          confState: { voters: [1, 2, 3], learners: [4], votersOutgoing: [1, 2, 5], learnersNext: [5], autoLeave: true },
        },
        data: bytes(5000, 3),
      },
    },
    {
      type: 'snapshot', from, to, term: 6,
      snapshot: {
        metadata: { index: 1, term: 1, confState: { voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } },
        data: bytes(0, 0),
      },
    },
    { type: 'heartbeat', from, to, term: 6, commit: 99, context: undefined },
    { type: 'heartbeat', from, to, term: 6, commit: 99, context: bytes(8, 5) },
    { type: 'heartbeat', from, to, term: 6, commit: 99, context: bytes(0, 0) },
    { type: 'heartbeatResponse', from, to, term: 6, context: undefined },
    { type: 'heartbeatResponse', from, to, term: 6, context: bytes(8, 5) },
    { type: 'timeoutNow', from, to, term: 6 },
    { type: 'readIndex', from, to, term: 6, context: bytes(16, 2) },
    { type: 'readIndexResponse', from, to, term: 6, index: 120, context: bytes(16, 2) },
  ];
}

/** SNAPSHOT_SUITE_TIMEOUT_MS bounds the snapshot cases together (a few take seconds by design: rate, stalls). */
export const SNAPSHOT_SUITE_TIMEOUT_MS = 120_000;

/** MIB is a mebibyte. */
export const MIB = 1024 * 1024;
/** FAST_BYTES_PER_SECOND is a rate no test notices (1 GiB/s). */
export const FAST_BYTES_PER_SECOND = 1024 * MIB;

/** snapshotMessage is a Raft snapshot message whose data is a small descriptor, as the driver's is. */
export function snapshotMessage(from: NodeId, to: NodeId, index: number): SnapshotMessage {
  return {
    type: 'snapshot', from, to, term: 3,
    snapshot: {
      metadata: { index, term: 2, confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } },
      data: Uint8Array.from([0x53, 0x4e, index & 0xff]),
    },
  };
}

/**
 * SnapshotTestPayload is a seeded snapshot file of blocks of 1 MiB + 4096·k bytes. It records
 * its reads, counts the read buffers not yet acknowledged (acknowledged() is the send's
 * onProgress), the bytes read again below the highest offset read, and can fail one read.
 */
export class SnapshotTestPayload implements SnapshotPayload {
  readonly byteLength: number;
  readonly data: Uint8Array;
  readonly blockStarts: number[] = [];
  readonly reads: Array<{ offset: number; length: number }> = [];
  /** The read (by index) that rejects with CORRUPTION, as a payload that failed its own check. */
  failRead: number | undefined;
  bytesReadAgain = 0;
  outstandingMax = 0;
  private outstanding: number[] = [];
  private readHighWater = 0;

  constructor(byteLength: number, seed: number) {
    assert.ok(byteLength % 4096 === 0);
    this.byteLength = byteLength;
    this.data = new Uint8Array(byteLength);
    const words = new Uint32Array(this.data.buffer);
    let x = seed | 1;
    for (let i = 0; i < words.length; i += 1) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
    let offset = 0;
    let k = seed;
    while (offset < byteLength) {
      this.blockStarts.push(offset);
      k = (k * 1103515245 + 12345) & 0x3f;
      offset = Math.min(byteLength, offset + MIB + 4096 * k);
    }
  }

  /** largestBlock is the longest block (what one read returns at chunkBytes 1 MiB). */
  get largestBlock(): number {
    let largest = 0;
    for (const [i, start] of this.blockStarts.entries()) largest = Math.max(largest, (this.blockStarts[i + 1] ?? this.byteLength) - start);
    return largest;
  }

  read(offset: number, maxBytes: number): Promise<Uint8Array> {
    const index = this.reads.length;
    const first = this.blockStarts.indexOf(offset);
    assert.ok(first >= 0, `read at ${offset}, not a block boundary`);
    let end = this.blockStarts[first + 1] ?? this.byteLength;
    for (let next = first + 1; next < this.blockStarts.length; next += 1) {
      const blockEnd = this.blockStarts[next + 1] ?? this.byteLength;
      if (blockEnd - offset > maxBytes) break;
      end = blockEnd;
    }
    this.reads.push({ offset, length: end - offset });
    if (index === this.failRead) return Promise.reject(new StrataError(ErrorCode.CORRUPTION, `block at ${offset} failed its CRC`));
    this.bytesReadAgain += Math.max(0, Math.min(end, this.readHighWater) - offset);
    this.readHighWater = Math.max(this.readHighWater, end);
    this.outstanding.push(end);
    this.outstandingMax = Math.max(this.outstandingMax, this.outstanding.length);
    return Promise.resolve(this.data.slice(offset, end));
  }

  /** acknowledged drops the buffers the receiver acknowledged (the send's onProgress). */
  acknowledged(bytes: number): void {
    this.outstanding = this.outstanding.filter((end) => end > bytes);
  }
}

/**
 * SnapshotTestSink receives one snapshot: it checks that writes come in order from its
 * verified bytes, keeps the bytes, and runs a test's hook before each write and at finish.
 */
export class SnapshotTestSink implements SnapshotSink {
  readonly bytes: Uint8Array;
  readonly writes: Array<{ offset: number; length: number }> = [];
  finishCalls = 0;
  abortCalls = 0;
  /** Writes that did not follow the verified bytes (a transport bug); tests assert none. */
  readonly outOfOrder: string[] = [];
  /** Runs before write number `index` takes effect; a throw (or rejection) fails that write. */
  writeHook: ((index: number, offset: number) => Promise<void> | void) | undefined;
  finishHook: (() => Promise<void> | void) | undefined;
  private verified = 0;

  constructor(byteLength: number) {
    this.bytes = new Uint8Array(byteLength);
  }

  verifiedBytes(): number {
    return this.verified;
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    const index = this.writes.length;
    this.writes.push({ offset, length: bytes.byteLength });
    // The transport writes in order from where the sink said it is; anything else is a bug.
    if (offset !== this.verified || offset + bytes.byteLength > this.bytes.byteLength) {
      this.outOfOrder.push(`write of ${bytes.byteLength} at ${offset} with ${this.verified} verified`);
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'write out of order');
    }
    await this.writeHook?.(index, offset);
    this.bytes.set(bytes, offset);
    this.verified = offset + bytes.byteLength;
  }

  async finish(): Promise<void> {
    this.finishCalls += 1;
    await this.finishHook?.();
  }

  abort(): Promise<void> {
    this.abortCalls += 1;
    return Promise.resolve();
  }
}

/** sameBytes compares two large byte arrays without deepEqual's cost. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** aborted resolves once `signal` aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** never is a promise that does not settle (a stalled sink). */
export function never(): Promise<void> {
  return new Promise<void>(() => {});
}

function rejectsWith(code: ErrorCode): (error: unknown) => boolean {
  return (error) => {
    assert.ok(isStrataError(error), `expected a StrataError ${code}, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface Member {
  readonly transport: Transport;
  readonly recorder: Recorder;
}

/** describeTransportConformance registers the suite for one implementation. */
export function describeTransportConformance(name: string, harness: TransportHarness): void {
  async function startMembers(ids: readonly NodeId[], limits?: Partial<TransportLimits>): Promise<Member[]> {
    const members: Member[] = [];
    for (const id of ids) {
      const transport = harness.create(id, limits === undefined ? {} : { limits });
      const recorder = new Recorder();
      await transport.start(recorder);
      members.push({ transport, recorder });
    }
    for (const a of members) {
      for (const b of members) if (a !== b) a.transport.setPeer(b.transport.localId, [harness.urlOf(b.transport)]);
    }
    for (const a of members) {
      for (const b of members) if (a !== b) await harness.connected(a.transport, b.transport.localId);
    }
    return members;
  }

  async function closeAll(members: readonly Member[]): Promise<void> {
    for (const member of members) await member.transport.close();
  }

  function pair(members: Member[]): [Member, Member] {
    const [a, b] = members;
    assert.ok(a !== undefined && b !== undefined);
    return [a, b];
  }

  describe(`Transport conformance: ${name}`, { timeout: TEST_TIMEOUT_MS }, () => {
    test('messages arrive in the order sent, both ways', async () => {
      const members = await startMembers([1, 2]);
      const [a, b] = pair(members);
      const count = 300;
      for (let i = 0; i < count; i += 1) {
        a.transport.send([heartbeat(1, 2, i)]);
        b.transport.send([heartbeat(2, 1, i)]);
        if (i % 7 === 0) await turn();
      }
      await b.recorder.until(() => b.recorder.messages.length === count);
      await a.recorder.until(() => a.recorder.messages.length === count);
      assert.deepEqual(b.recorder.messages.map((m) => (m.type === 'heartbeat' ? m.commit : -1)), [...Array(count).keys()]);
      assert.deepEqual(a.recorder.messages.map((m) => (m.type === 'heartbeat' ? m.commit : -1)), [...Array(count).keys()]);
      assert.deepEqual(a.recorder.unreachable, []);
      assert.deepEqual(b.recorder.unreachable, []);
      await closeAll(members);
    });

    test('messages sent in one turn arrive as one batch', async () => {
      const members = await startMembers([1, 2]);
      const [a, b] = pair(members);
      a.transport.send([heartbeat(1, 2, 0), heartbeat(1, 2, 1)]);
      a.transport.send([heartbeat(1, 2, 2)]);
      a.transport.send([heartbeat(1, 2, 3), heartbeat(1, 2, 4)]);
      await b.recorder.until(() => b.recorder.messages.length === 5);
      assert.equal(b.recorder.batches.length, 1);
      await closeAll(members);
    });

    test('a batch over the frame maximum is split, in order', async () => {
      const frameBytesMax = 8 * 1024;
      const members = await startMembers([1, 2], { frameBytesMax });
      const [a, b] = pair(members);
      const entries = Array.from({ length: 64 }, (_, i) => ({ term: 1, index: i + 1, type: 0 as const, data: new Uint8Array(1000).fill(i) }));
      const messages: Message[] = entries.map((entry) => ({
        type: 'append', from: 1, to: 2, term: 1, logTerm: 1, index: entry.index - 1, commit: 0, entries: [entry],
      }));
      a.transport.send(messages);
      await b.recorder.until(() => b.recorder.messages.length === messages.length);
      assert.deepEqual(b.recorder.messages, messages);
      assert.ok(b.recorder.batches.length >= 8, `expected the batch split, got ${b.recorder.batches.length} frames`);
      for (const batch of b.recorder.batches) assert.ok(batch.length <= 8);
      await closeAll(members);
    });

    test('frames beyond the in-flight maximum wait in the queue and still arrive in order', async () => {
      const members = await startMembers([1, 2], { framesInFlightMax: 1, frameBytesMax: 1024 });
      const [a, b] = pair(members);
      const messages: Message[] = Array.from({ length: 200 }, (_, i) => ({
        type: 'append', from: 1, to: 2, term: 1, logTerm: 1, index: i, commit: 0,
        entries: [{ term: 1, index: i + 1, type: 0, data: new Uint8Array(500).fill(i & 0xff) }],
      }));
      a.transport.send(messages);
      await b.recorder.until(() => b.recorder.messages.length === messages.length);
      assert.deepStrictEqual(b.recorder.messages, messages);
      assert.ok(b.recorder.batches.length >= 100);
      assert.deepEqual(a.recorder.unreachable, []);
      await closeAll(members);
    });

    test('every message type round-trips exactly', async () => {
      const members = await startMembers([1, 2]);
      const [a, b] = pair(members);
      const forward = sampleMessages(1, 2);
      const backward = sampleMessages(2, 1);
      a.transport.send(forward);
      b.transport.send(backward);
      await b.recorder.until(() => b.recorder.messages.length === forward.length);
      await a.recorder.until(() => a.recorder.messages.length === backward.length);
      assert.deepStrictEqual(b.recorder.messages, forward);
      assert.deepStrictEqual(a.recorder.messages, backward);
      for (const message of b.recorder.messages) {
        if (message.type === 'heartbeat' && message.commit === 99) assert.ok('context' in message);
      }
      await closeAll(members);
    });

    test('messages to an unknown peer are dropped and reported, rate-limited', async () => {
      const members = await startMembers([1, 2]);
      const [a] = pair(members);
      a.transport.send([heartbeat(1, 9, 0), heartbeat(1, 9, 1)]);
      a.transport.send([heartbeat(1, 9, 2)]);
      await a.recorder.until(() => a.recorder.unreachable.length > 0);
      await turn();
      a.transport.send([heartbeat(1, 9, 3)]);
      await turn();
      // Within one interval (100 ms by default) the peer is reported once; the assertion
      // holds however slow the machine is, because a slower run only spaces reports further.
      assert.ok(a.recorder.unreachable.length <= 2);
      assert.deepEqual([...new Set(a.recorder.unreachable)], [9]);
      await closeAll(members);
    });

    test('a full queue drops the excess and reports the peer; the queue never passes its maximum', async () => {
      const queueMessagesMax = 8;
      const members = await startMembers([1, 2], { queueMessagesMax });
      const [a, b] = pair(members);
      for (let round = 0; round < 5; round += 1) {
        const batch: Message[] = [];
        for (let i = 0; i < 100; i += 1) batch.push(heartbeat(1, 2, round * 100 + i));
        a.transport.send(batch);
        assert.ok(harness.queued(a.transport, 2) <= queueMessagesMax);
        await b.recorder.until(() => b.recorder.messages.length === (round + 1) * queueMessagesMax);
      }
      await a.recorder.until(() => a.recorder.unreachable.length > 0);
      assert.deepEqual([...new Set(a.recorder.unreachable)], [2]);
      // Exactly the first queueMessagesMax of each round got through, in order.
      const expected: number[] = [];
      for (let round = 0; round < 5; round += 1) for (let i = 0; i < queueMessagesMax; i += 1) expected.push(round * 100 + i);
      assert.deepEqual(b.recorder.messages.map((m) => (m.type === 'heartbeat' ? m.commit : -1)), expected);
      await closeAll(members);
    });

    test('a byte-limited queue still accepts one message larger than its maximum', async () => {
      const members = await startMembers([1, 2], { queueBytesMax: 1024 });
      const [a, b] = pair(members);
      const big: Message = {
        type: 'append', from: 1, to: 2, term: 1, logTerm: 0, index: 0, commit: 0,
        entries: [{ term: 1, index: 1, type: 0, data: new Uint8Array(4096).fill(7) }],
      };
      a.transport.send([big, heartbeat(1, 2, 1)]);
      await b.recorder.until(() => b.recorder.messages.length === 1);
      await a.recorder.until(() => a.recorder.unreachable.length === 1);
      assert.deepStrictEqual(b.recorder.messages, [big]);
      await closeAll(members);
    });

    test('request returns the answer of the peer handler', async () => {
      const members = await startMembers([1, 2]);
      const [a, b] = pair(members);
      const seen: Array<[NodeId, PeerRequestKind]> = [];
      b.recorder.requestHandler = (from, kind, body) => {
        seen.push([from, kind]);
        return Promise.resolve(Uint8Array.from([...body].reverse()));
      };
      const answer = await a.transport.request(2, 'propose', Uint8Array.from([1, 2, 3]));
      assert.deepStrictEqual(answer, Uint8Array.from([3, 2, 1]));
      const empty = await a.transport.request(2, 'status', new Uint8Array(0));
      assert.deepStrictEqual(empty, new Uint8Array(0));
      assert.deepEqual(seen, [[1, 'propose'], [1, 'status']]);
      await closeAll(members);
    });

    test("request carries the peer's StrataError: code, message and details", async () => {
      const members = await startMembers([1, 2]);
      const [a, b] = pair(members);
      b.recorder.requestHandler = () => Promise.reject(new StrataError(ErrorCode.NOT_LEADER, 'not the leader', { details: { leaderId: 3, hint: 'x' } }));
      await assert.rejects(a.transport.request(2, 'propose', new Uint8Array(1)), (error: unknown) => {
        assert.ok(isStrataError(error, ErrorCode.NOT_LEADER));
        assert.equal(error.message, 'not the leader');
        assert.deepEqual(error.details, { leaderId: 3, hint: 'x' });
        return true;
      });
      b.recorder.requestHandler = () => Promise.reject(new Error('a bug'));
      await assert.rejects(a.transport.request(2, 'member', new Uint8Array(1)), rejectsWith(ErrorCode.UNAVAILABLE));
      b.recorder.requestHandler = () => {
        throw new StrataError(ErrorCode.COMPACTED, 'thrown synchronously');
      };
      await assert.rejects(a.transport.request(2, 'read', new Uint8Array(1)), rejectsWith(ErrorCode.COMPACTED));
      await closeAll(members);
    });

    test('request times out with TIMEOUT, and the peer handler sees its signal abort', async () => {
      const members = await startMembers([1, 2]);
      const [a, b] = pair(members);
      let handlerAborted!: () => void;
      const aborted = new Promise<void>((resolve) => (handlerAborted = resolve));
      b.recorder.requestHandler = (_from, _kind, _body, signal) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            handlerAborted();
            reject(new StrataError(ErrorCode.CANCELED, 'aborted'));
          });
        });
      await assert.rejects(a.transport.request(2, 'propose', new Uint8Array(1), { timeoutMs: 50 }), rejectsWith(ErrorCode.TIMEOUT));
      await aborted;
      await closeAll(members);
    });

    test('request aborted by its signal fails with CANCELED', async () => {
      const members = await startMembers([1, 2]);
      const [a, b] = pair(members);
      let started!: () => void;
      const handlerStarted = new Promise<void>((resolve) => (started = resolve));
      b.recorder.requestHandler = (_from, _kind, _body, signal) =>
        new Promise((_resolve, reject) => {
          started();
          signal.addEventListener('abort', () => reject(new StrataError(ErrorCode.CANCELED, 'aborted')));
        });
      const controller = new AbortController();
      const pending = a.transport.request(2, 'propose', new Uint8Array(1), { signal: controller.signal });
      await handlerStarted;
      controller.abort();
      await assert.rejects(pending, rejectsWith(ErrorCode.CANCELED));
      await assert.rejects(a.transport.request(2, 'propose', new Uint8Array(1), { signal: controller.signal }), rejectsWith(ErrorCode.CANCELED));
      await closeAll(members);
    });

    test('request to an unknown peer fails with UNAVAILABLE', async () => {
      const members = await startMembers([1, 2]);
      const [a] = pair(members);
      await assert.rejects(a.transport.request(9, 'status', new Uint8Array(0)), rejectsWith(ErrorCode.UNAVAILABLE));
      await closeAll(members);
    });

    test('removePeer drops the peer: sends are reported unreachable, requests fail UNAVAILABLE', async () => {
      const members = await startMembers([1, 2, 3]);
      const [a, b] = pair(members);
      a.transport.removePeer(2);
      a.transport.send([heartbeat(1, 2, 0), heartbeat(1, 3, 0)]);
      await a.recorder.until(() => a.recorder.unreachable.includes(2));
      await assert.rejects(a.transport.request(2, 'status', new Uint8Array(0)), rejectsWith(ErrorCode.UNAVAILABLE));
      const c = members[2];
      assert.ok(c !== undefined);
      await c.recorder.until(() => c.recorder.messages.length === 1);
      assert.equal(b.recorder.messages.length, 0);
      a.transport.removePeer(2); // idempotent
      await closeAll(members);
    });

    test('a removed member is not learned again from its messages until setPeer sets it again', async () => {
      const members = await startMembers([1, 2]);
      const [a, b] = pair(members);
      await harness.connected(b.transport, 1);
      a.transport.removePeer(2);
      // b still knows a and keeps sending; none of it reaches a, and a does not learn b back.
      for (let attempt = 0; attempt < 20; attempt += 1) {
        b.transport.send([heartbeat(2, 1, attempt)]);
        await delay(5);
      }
      assert.deepEqual(a.recorder.messages, []);
      a.transport.send([heartbeat(1, 2, 0)]);
      await a.recorder.until(() => a.recorder.unreachable.includes(2));
      a.transport.setPeer(2, [harness.urlOf(b.transport)]);
      for (let attempt = 0; attempt < 500 && a.recorder.messages.length === 0; attempt += 1) {
        b.transport.send([heartbeat(2, 1, 100 + attempt)]);
        await delay(10);
      }
      assert.ok(a.recorder.messages.length > 0, 'after setPeer the member is heard again');
      await closeAll(members);
    });

    test('close fails pending requests with UNAVAILABLE, is idempotent, and peers see it', async () => {
      const members = await startMembers([1, 2]);
      const [a, b] = pair(members);
      b.recorder.requestHandler = (_from, _kind, _body, signal) =>
        new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new StrataError(ErrorCode.CANCELED, 'aborted'))));
      const pending = a.transport.request(2, 'propose', new Uint8Array(1));
      await turn();
      await Promise.all([a.transport.close(), a.transport.close()]);
      await assert.rejects(pending, rejectsWith(ErrorCode.UNAVAILABLE));
      await assert.rejects(a.transport.request(2, 'propose', new Uint8Array(1)), rejectsWith(ErrorCode.UNAVAILABLE));
      a.transport.send([heartbeat(1, 2, 0)]); // ignored after close, never throws
      // b notices the closed peer (a broken stream) within a bounded number of attempts.
      for (let attempt = 0; attempt < 500 && b.recorder.unreachable.length === 0; attempt += 1) {
        b.transport.send([heartbeat(2, 1, attempt)]);
        await delay(10);
      }
      assert.deepEqual([...new Set(b.recorder.unreachable)], [1]);
      assert.deepEqual(a.recorder.messages, []);
      await closeAll(members);
    });

    // A member that has not yet applied the change that added a new member must still answer
    // it: when the new member leads, the lagging one can only catch up by answering it (the
    // seeded cluster simulation found a cluster stuck this way). etcd's transport learns a
    // remote from the sender's headers; ours learns it from the sender's stream.
    for (const [known, unknown] of [
      [1, 2],
      [2, 1],
    ] as const) {
      test(`a member not yet known locally (id ${unknown}, known to ${known}) is learned from its messages and answered`, async () => {
        const knowing = harness.create(known);
        const lagging = harness.create(unknown);
        const recorderKnowing = new Recorder();
        const recorderLagging = new Recorder();
        await knowing.start(recorderKnowing);
        await lagging.start(recorderLagging);
        // Only `knowing` knows `lagging` (the newer member knows the older one).
        knowing.setPeer(unknown, [harness.urlOf(lagging)]);
        await harness.connected(knowing, unknown);
        knowing.send([heartbeat(known, unknown, 7)]);
        await recorderLagging.until(() => recorderLagging.messages.length === 1);
        // The lagging member answers at once, before its own membership lists the other.
        lagging.send([heartbeat(unknown, known, 0)]);
        await recorderKnowing.until(() => recorderKnowing.messages.length === 1);
        assert.deepEqual(recorderLagging.unreachable, []);
        await knowing.close();
        await lagging.close();
      });
    }
  });

  describe(`Transport conformance, snapshot streams: ${name}`, { timeout: SNAPSHOT_SUITE_TIMEOUT_MS }, () => {
    const SNAPSHOT_BYTES = 10 * MIB;

    // receiveInto makes `member` receive every snapshot into `sink` (the same sink across
    // streams, as the driver keeps a partial receive for the next stream of that snapshot).
    function receiveInto(member: Member, sink: SnapshotTestSink): void {
      member.recorder.snapshotHandler = () => Promise.resolve(sink);
    }

    test('a snapshot arrives whole, chunk by chunk, in order; finish runs once; the Raft message reaches the receiver', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(SNAPSHOT_BYTES, 11);
      const sink = new SnapshotTestSink(SNAPSHOT_BYTES);
      receiveInto(b, sink);
      const message = snapshotMessage(1, 2, 500);
      const progress: number[] = [];
      await a.transport.sendSnapshot(message, payload, { bytesPerSecond: FAST_BYTES_PER_SECOND, onProgress: (bytes) => progress.push(bytes) });
      assert.ok(sameBytes(sink.bytes, payload.data), 'the received bytes are the sent ones');
      assert.equal(sink.finishCalls, 1);
      assert.equal(sink.abortCalls, 0);
      assert.deepEqual(sink.outOfOrder, []);
      assert.ok(sink.writes.length >= 5, `10 MiB in chunks of at most 2 MiB: ${sink.writes.length} writes`);
      for (const write of sink.writes) assert.ok(write.length <= 2 * MIB);
      assert.equal(b.recorder.snapshotOpens.length, 1);
      const opened = b.recorder.snapshotOpens[0];
      assert.equal(opened?.from, 1);
      assert.equal(opened?.byteLength, SNAPSHOT_BYTES);
      assert.deepStrictEqual(opened?.message, message);
      assert.equal(opened?.signal.aborted, false, 'a stream that finished is not aborted');
      assert.equal(progress.at(-1), SNAPSHOT_BYTES);
      assert.deepEqual(progress, [...progress].sort((x, y) => x - y));
      assert.deepEqual(b.recorder.messages, [], 'the sink, not onMessages, hands the message to Raft');
      const stats = harness.snapshotStats(a.transport);
      assert.equal(stats.attempts, 1);
      assert.equal(stats.bytesSent, SNAPSHOT_BYTES);
      assert.equal(stats.bytesResent, 0);
      await closeAll([a, b]);
    });

    test('an empty snapshot is opened and finished with no chunk', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const sink = new SnapshotTestSink(0);
      receiveInto(b, sink);
      await a.transport.sendSnapshot(snapshotMessage(1, 2, 7), new SnapshotTestPayload(0, 1));
      assert.equal(sink.finishCalls, 1);
      assert.deepEqual(sink.writes, []);
      await closeAll([a, b]);
    });

    test('the sender holds at most window + 1 chunk buffers, and drops them as they are acknowledged', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(SNAPSHOT_BYTES, 12);
      const sink = new SnapshotTestSink(SNAPSHOT_BYTES);
      // A slow disk on the receiver: the window fills up.
      sink.writeHook = () => delay(5);
      receiveInto(b, sink);
      await a.transport.sendSnapshot(snapshotMessage(1, 2, 501), payload, {
        bytesPerSecond: FAST_BYTES_PER_SECOND,
        chunkBytes: MIB,
        onProgress: (bytes) => payload.acknowledged(bytes),
      });
      assert.ok(sameBytes(sink.bytes, payload.data));
      assert.ok(payload.outstandingMax <= SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX + 1, `${payload.outstandingMax} buffers held at once`);
      assert.ok(payload.outstandingMax >= 2, 'the window was used');
      await closeAll([a, b]);
    });

    test('a sink that fails UNAVAILABLE mid-stream: the next stream resumes at its verified bytes, not at 0', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(SNAPSHOT_BYTES, 13);
      const sink = new SnapshotTestSink(SNAPSHOT_BYTES);
      let failed = false;
      sink.writeHook = (index) => {
        if (index === 4 && !failed) {
          failed = true;
          throw new StrataError(ErrorCode.UNAVAILABLE, 'disk busy');
        }
      };
      const resumedAt: number[] = [];
      b.recorder.snapshotHandler = () => {
        resumedAt.push(sink.verifiedBytes());
        return Promise.resolve(sink);
      };
      await a.transport.sendSnapshot(snapshotMessage(1, 2, 502), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND, chunkBytes: MIB });
      assert.ok(sameBytes(sink.bytes, payload.data));
      assert.equal(sink.finishCalls, 1);
      assert.deepEqual(sink.outOfOrder, []);
      assert.equal(resumedAt.length, 2);
      assert.equal(resumedAt[0], 0);
      assert.ok((resumedAt[1] ?? 0) >= 4 * MIB, `resumed at ${resumedAt[1]}`);
      assert.equal(payload.reads.filter((read) => read.offset === 0).length, 1, 'byte 0 was read once');
      const window = SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX * payload.largestBlock;
      assert.ok(payload.bytesReadAgain < window, `${payload.bytesReadAgain} bytes read again`);
      assert.ok(harness.snapshotStats(a.transport).bytesResent < window);
      assert.equal(sink.abortCalls, 0, 'the transport never aborts a sink');
      await closeAll([a, b]);
    });

    test('a sink that finds a chunk corrupt: the chunk is refused and sent again on the next stream', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(SNAPSHOT_BYTES, 14);
      const sink = new SnapshotTestSink(SNAPSHOT_BYTES);
      let failed = false;
      sink.writeHook = (index) => {
        if (index === 3 && !failed) {
          failed = true;
          throw new StrataError(ErrorCode.CORRUPTION, 'block CRC mismatch');
        }
      };
      receiveInto(b, sink);
      await a.transport.sendSnapshot(snapshotMessage(1, 2, 503), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND, chunkBytes: MIB });
      assert.ok(sameBytes(sink.bytes, payload.data));
      assert.equal(b.recorder.snapshotOpens.length, 2);
      assert.equal(harness.snapshotStats(a.transport).attempts, 2);
      assert.ok(harness.snapshotStats(a.transport).bytesResent < SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX * payload.largestBlock);
      await closeAll([a, b]);
    });

    test('a write that stalls is given up on after the progress timeout; the next stream resumes', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(SNAPSHOT_BYTES, 15);
      const sink = new SnapshotTestSink(SNAPSHOT_BYTES);
      let stalled = false;
      // A disk that hangs once; the sink gives up when its stream's signal aborts.
      sink.writeHook = async (index) => {
        if (index !== 4 || stalled) return;
        stalled = true;
        const signal = b.recorder.snapshotOpens.at(-1)?.signal;
        assert.ok(signal !== undefined);
        await aborted(signal);
        throw new StrataError(ErrorCode.CANCELED, 'the stream ended');
      };
      receiveInto(b, sink);
      await a.transport.sendSnapshot(snapshotMessage(1, 2, 504), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND, chunkBytes: MIB, progressTimeoutMs: 300 });
      assert.ok(sameBytes(sink.bytes, payload.data));
      assert.equal(b.recorder.snapshotOpens[0]?.signal.aborted, true, 'the abandoned stream aborted its signal');
      // A loaded machine may time out a slow ack too: whatever the attempts, none starts over
      // at 0, and each sends again at most what was on the wire when it ended.
      const stats = harness.snapshotStats(a.transport);
      assert.ok(stats.attempts >= 2);
      assert.equal(b.recorder.snapshotOpens.length, stats.attempts);
      assert.ok(stats.bytesResent < (stats.attempts - 1) * SNAPSHOT_UNACKNOWLEDGED_CHUNKS_MAX * payload.largestBlock);
      assert.equal(payload.reads.filter((read) => read.offset === 0).length, 1, 'byte 0 was read once');
      await closeAll([a, b]);
    });

    test('a payload read failing CORRUPTION fails the send with CORRUPTION, and the receiver never finishes', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(SNAPSHOT_BYTES, 16);
      payload.failRead = 3;
      const sink = new SnapshotTestSink(SNAPSHOT_BYTES);
      receiveInto(b, sink);
      await assert.rejects(
        a.transport.sendSnapshot(snapshotMessage(1, 2, 505), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND, chunkBytes: MIB }),
        rejectsWith(ErrorCode.CORRUPTION),
      );
      const opened = b.recorder.snapshotOpens[0];
      assert.ok(opened !== undefined);
      await aborted(opened.signal); // the receiver saw the stream end...
      assert.equal(sink.finishCalls, 0); // ...and never finished
      assert.equal(b.recorder.snapshotOpens.length, 1, 'no retry after the payload failed');
      assert.ok(sink.verifiedBytes() <= 3 * payload.largestBlock);
      await closeAll([a, b]);
    });

    test("the receiver's finish() error reaches the sender with its code, not retried", async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(4 * MIB, 17);
      const sink = new SnapshotTestSink(payload.byteLength);
      sink.finishHook = () => {
        throw new StrataError(ErrorCode.IO_ERROR, 'fsync failed', { details: { path: '/data/snap' } });
      };
      receiveInto(b, sink);
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 2, 506), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND }), (error: unknown) => {
        assert.ok(isStrataError(error, ErrorCode.IO_ERROR));
        assert.deepEqual(error.details, { path: '/data/snap' });
        return true;
      });
      assert.equal(sink.finishCalls, 1);
      assert.equal(harness.snapshotStats(a.transport).attempts, 1);
      await closeAll([a, b]);
    });

    test("onSnapshot's StrataError refuses the stream and reaches the sender with its code", async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      b.recorder.snapshotHandler = () => Promise.reject(new StrataError(ErrorCode.SNAPSHOT_TEMPORARILY_UNAVAILABLE, 'installing another'));
      await assert.rejects(
        a.transport.sendSnapshot(snapshotMessage(1, 2, 507), new SnapshotTestPayload(MIB, 18)),
        rejectsWith(ErrorCode.SNAPSHOT_TEMPORARILY_UNAVAILABLE),
      );
      b.recorder.snapshotHandler = () => {
        throw new StrataError(ErrorCode.CONF_CHANGE_REFUSED, 'thrown synchronously');
      };
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 2, 508), new SnapshotTestPayload(MIB, 18)), rejectsWith(ErrorCode.CONF_CHANGE_REFUSED));
      await closeAll([a, b]);
    });

    test('the signal cancels a send at once with CANCELED; the receiver sees its stream end, its sink kept', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(SNAPSHOT_BYTES, 19);
      const sink = new SnapshotTestSink(SNAPSHOT_BYTES);
      const controller = new AbortController();
      sink.writeHook = (index) => {
        if (index === 2) controller.abort();
      };
      receiveInto(b, sink);
      await assert.rejects(
        a.transport.sendSnapshot(snapshotMessage(1, 2, 509), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND, chunkBytes: MIB, signal: controller.signal }),
        rejectsWith(ErrorCode.CANCELED),
      );
      const opened = b.recorder.snapshotOpens[0];
      assert.ok(opened !== undefined);
      await aborted(opened.signal);
      assert.equal(sink.finishCalls, 0);
      assert.equal(sink.abortCalls, 0);
      await assert.rejects(
        a.transport.sendSnapshot(snapshotMessage(1, 2, 510), payload, { signal: controller.signal }),
        rejectsWith(ErrorCode.CANCELED),
      );
      assert.equal(b.recorder.snapshotOpens.length, 1, 'an aborted signal opens no stream');
      await closeAll([a, b]);
    });

    test('a stalled receiver fails the send with UNAVAILABLE after stalledAttemptsMax progress timeouts', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(SNAPSHOT_BYTES, 20);
      const sink = new SnapshotTestSink(SNAPSHOT_BYTES);
      sink.writeHook = () => never();
      receiveInto(b, sink);
      const progressTimeoutMs = 100;
      const stalledAttemptsMax = 3;
      const started = performance.now();
      await assert.rejects(
        a.transport.sendSnapshot(snapshotMessage(1, 2, 511), payload, {
          bytesPerSecond: FAST_BYTES_PER_SECOND,
          chunkBytes: MIB,
          progressTimeoutMs,
          stalledAttemptsMax,
        }),
        rejectsWith(ErrorCode.UNAVAILABLE),
      );
      // A lower bound only: a slow machine takes longer, never shorter.
      assert.ok(performance.now() - started >= stalledAttemptsMax * progressTimeoutMs - 5);
      assert.equal(harness.snapshotStats(a.transport).attempts, stalledAttemptsMax);
      // The hung write holds the peer's later streams (one sink call at a time): no second write.
      assert.ok(sink.writes.length <= 1);
      await closeAll([a, b]);
    });

    test('the rate limit holds: 8 MiB at 4 MiB/s in chunks of 1 MiB takes at least 1.75 s', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(8 * MIB, 21);
      // Blocks of exactly 1 MiB: the bucket starts with one chunk, then refills 1 MiB per 250 ms.
      payload.blockStarts.splice(0, payload.blockStarts.length, ...Array.from({ length: 8 }, (_, i) => i * MIB));
      const sink = new SnapshotTestSink(payload.byteLength);
      receiveInto(b, sink);
      const started = performance.now();
      await a.transport.sendSnapshot(snapshotMessage(1, 2, 512), payload, { bytesPerSecond: 4 * MIB, chunkBytes: MIB });
      const elapsedMs = performance.now() - started;
      assert.ok(elapsedMs >= 1_740, `took ${elapsedMs} ms`); // timers may fire a millisecond early; never an upper bound
      assert.ok(sameBytes(sink.bytes, payload.data));
      await closeAll([a, b]);
    });

    test('a rate given as a function is asked again as the send goes: 1 MiB at 4 MiB/s, then the rest at 1 GiB/s', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(8 * MIB, 24);
      payload.blockStarts.splice(0, payload.blockStarts.length, ...Array.from({ length: 8 }, (_, i) => i * MIB));
      const sink = new SnapshotTestSink(payload.byteLength);
      receiveInto(b, sink);
      let asked = 0;
      const started = performance.now();
      // The first chunk goes at once (a full bucket), the second waits 250 ms at 4 MiB/s; from
      // then on the function answers a rate no test notices.
      const rate = (): number => {
        asked += 1;
        return performance.now() - started < 200 ? 4 * MIB : FAST_BYTES_PER_SECOND;
      };
      await a.transport.sendSnapshot(snapshotMessage(1, 2, 513), payload, { bytesPerSecond: rate, chunkBytes: MIB });
      const elapsedMs = performance.now() - started;
      assert.ok(elapsedMs >= 240, `the slow start held (${elapsedMs} ms)`);
      assert.ok(elapsedMs < 1_740, `the rest went at the faster rate (${elapsedMs} ms; 8 MiB at 4 MiB/s would take 1.75 s)`);
      assert.ok(asked > 2, `asked more than once (${asked})`);
      assert.ok(sameBytes(sink.bytes, payload.data));
      await assert.rejects(
        a.transport.sendSnapshot(snapshotMessage(1, 2, 514), payload, { bytesPerSecond: () => 0 }),
        (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT),
      );
      await closeAll([a, b]);
    });

    test('one stream per peer at a time: a second send to the same peer is refused until the first is done, then succeeds', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const first = new SnapshotTestSink(4 * MIB);
      const second = new SnapshotTestSink(4 * MIB);
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      first.writeHook = (index) => (index === 0 ? released : undefined);
      b.recorder.snapshotHandler = (_from, message) => Promise.resolve(message.snapshot.metadata.index === 601 ? first : second);
      const payloadOne = new SnapshotTestPayload(4 * MIB, 22);
      const payloadTwo = new SnapshotTestPayload(4 * MIB, 23);
      const sendOne = a.transport.sendSnapshot(snapshotMessage(1, 2, 601), payloadOne, { bytesPerSecond: FAST_BYTES_PER_SECOND });
      await b.recorder.until(() => b.recorder.snapshotOpens.length === 1);
      const sendTwo = a.transport.sendSnapshot(snapshotMessage(1, 2, 602), payloadTwo, {
        bytesPerSecond: FAST_BYTES_PER_SECOND,
        stalledAttemptsMax: 50,
      });
      for (let attempt = 0; attempt < 500 && harness.snapshotStats(b.transport).incomingRefused === 0; attempt += 1) await delay(10);
      assert.ok(harness.snapshotStats(b.transport).incomingRefused >= 1);
      release();
      await sendOne;
      await sendTwo;
      assert.ok(sameBytes(first.bytes, payloadOne.data));
      assert.ok(sameBytes(second.bytes, payloadTwo.data));
      await closeAll([a, b]);
    });

    test('sendSnapshot fails UNAVAILABLE to an unknown peer, INVALID_ARGUMENT for bad options, UNAVAILABLE on close', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      const payload = new SnapshotTestPayload(SNAPSHOT_BYTES, 24);
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 9, 700), payload), rejectsWith(ErrorCode.UNAVAILABLE));
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 2, 701), payload, { chunkBytes: 1024 }), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 2, 701), payload, { chunkBytes: 8 * MIB }), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 2, 701), payload, { bytesPerSecond: 0 }), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 2, 701), payload, { progressTimeoutMs: -1 }), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 2, 701), payload, { stalledAttemptsMax: 0 }), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      assert.equal(b.recorder.snapshotOpens.length, 0);
      const sink = new SnapshotTestSink(SNAPSHOT_BYTES);
      sink.writeHook = (index) => (index === 1 ? never() : undefined);
      receiveInto(b, sink);
      const pending = a.transport.sendSnapshot(snapshotMessage(1, 2, 702), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND });
      await b.recorder.until(() => b.recorder.snapshotOpens.length === 1);
      for (let attempt = 0; attempt < 500 && sink.writes.length < 2; attempt += 1) await delay(5);
      await a.transport.close();
      await assert.rejects(pending, rejectsWith(ErrorCode.UNAVAILABLE));
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 2, 703), payload), rejectsWith(ErrorCode.UNAVAILABLE));
      await closeAll([a, b]);
    });

    test('a member that removed the sender refuses its snapshot with MEMBER_REMOVED', async () => {
      const [a, b] = pair(await startMembers([1, 2]));
      b.transport.removePeer(1);
      receiveInto(b, new SnapshotTestSink(MIB));
      await assert.rejects(a.transport.sendSnapshot(snapshotMessage(1, 2, 800), new SnapshotTestPayload(MIB, 25)), rejectsWith(ErrorCode.MEMBER_REMOVED));
      assert.equal(b.recorder.snapshotOpens.length, 0);
      await closeAll([a, b]);
    });

    test('a member serves a snapshot from a member it does not know', async () => {
      const sender = harness.create(1);
      const receiver = harness.create(2);
      const recorderSender = new Recorder();
      const recorderReceiver = new Recorder();
      await sender.start(recorderSender);
      await receiver.start(recorderReceiver);
      sender.setPeer(2, [harness.urlOf(receiver)]);
      const sink = new SnapshotTestSink(2 * MIB);
      recorderReceiver.snapshotHandler = () => Promise.resolve(sink);
      const payload = new SnapshotTestPayload(2 * MIB, 26);
      await sender.sendSnapshot(snapshotMessage(1, 2, 900), payload, { bytesPerSecond: FAST_BYTES_PER_SECOND });
      assert.ok(sameBytes(sink.bytes, payload.data));
      await sender.close();
      await receiver.close();
    });
  });
}

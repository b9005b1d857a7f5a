// The Transport conformance suite: GrpcTransport and MemoryTransport run these same tests
// (test/transport/grpc-transport.test.ts, memory-transport.test.ts). Waiting is done on
// events (a promise that resolves when the expected messages arrived); the few waits for a
// link to notice a peer is gone are bounded loops.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Message, NodeId } from '../../src/raft/index.ts';
import type { TransportLimits } from '../../src/transport/limits.ts';
import type { PeerRequestKind, Transport, TransportHandlers } from '../../src/transport/transport.ts';
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
}

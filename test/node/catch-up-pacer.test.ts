// CatchUpPacer on a virtual clock: a learner's appends leave at the rate, in order, with
// heartbeats never overtaking them; unpaced peers are never held; release and stop.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CatchUpPacer } from '../../src/node/catch-up-pacer.ts';
import type { Message, NodeId } from '../../src/raft/index.ts';
import { messageSizeBytes } from '../../src/transport/index.ts';
import { VirtualClock } from '../../src/util/index.ts';

const KIB = 1024;

function append(to: NodeId, index: number, bytes: number): Message {
  return { type: 'append', from: 1, to, term: 2, logTerm: 2, index, commit: index, entries: [{ index: index + 1, term: 2, type: 0, data: new Uint8Array(bytes) }] };
}

function heartbeat(to: NodeId): Message {
  return { type: 'heartbeat', from: 1, to, term: 2, commit: 0, context: new Uint8Array(0) } as unknown as Message;
}

function setUp(rateBytesPerSecond: number): { clock: VirtualClock; pacer: CatchUpPacer; sent: { atMs: number; message: Message }[] } {
  const clock = new VirtualClock();
  const sent: { atMs: number; message: Message }[] = [];
  const pacer = new CatchUpPacer({ clock, bytesPerSecond: () => rateBytesPerSecond, send: (messages) => messages.forEach((message) => sent.push({ atMs: clock.now(), message })) });
  return { clock, pacer, sent };
}

function runTimers(clock: VirtualClock, untilMs: number): void {
  for (let step = 0; step < 100_000 && clock.now() <= untilMs; step += 1) {
    if (!clock.runNext()) break;
  }
}

test('a learner gets 1 MiB of appends at 1 MiB/s in about a second, in order; a voter is never held', async () => {
  const { clock, pacer, sent } = setUp(1024 * KIB);
  const learner = 4;
  const voter = 2;
  const messages: Message[] = [];
  for (let i = 0; i < 64; i += 1) messages.push(append(learner, i, 16 * KIB), append(voter, i, 16 * KIB));
  messages.splice(10, 0, heartbeat(learner));
  const now = pacer.pace(messages, new Set([learner]));
  assert.equal(now.filter((message) => message.to === voter).length, 64, 'every message to the voter leaves at once');
  assert.ok(now.filter((message) => message.to === learner).length <= 6, 'the bucket holds 50 ms of the rate: a few appends at first');
  runTimers(clock, 5_000);
  const toLearner = [...now.filter((message) => message.to === learner).map((message) => ({ atMs: 0, message })), ...sent];
  assert.equal(toLearner.length, 65);
  assert.deepEqual(
    toLearner.map(({ message }) => (message.type === 'append' ? message.index : 'heartbeat')),
    messages.filter((message) => message.to === learner).map((message) => (message.type === 'append' ? message.index : 'heartbeat')),
    'in the order offered',
  );
  const lastMs = (toLearner[toLearner.length - 1] as { atMs: number }).atMs;
  const bytes = messages.filter((message) => message.to === learner).reduce((sum, message) => sum + messageSizeBytes(message), 0);
  const expectedMs = (bytes / (1024 * KIB)) * 1_000;
  assert.ok(lastMs >= expectedMs - 100 && lastMs <= expectedMs + 100, `the last append left at ${lastMs} ms, the rate says ${expectedMs.toFixed(0)} ms`);
  assert.equal(pacer.queuedMessages, 0);
});

test('release sends what waits for a promoted learner at once; stop drops the rest', async () => {
  const { clock, pacer, sent } = setUp(64 * KIB);
  const messages = Array.from({ length: 20 }, (_, i) => append(4, i, 16 * KIB)).concat(Array.from({ length: 20 }, (_, i) => append(5, i, 16 * KIB)));
  pacer.pace(messages, new Set([4, 5]));
  const waiting = pacer.queuedMessages;
  assert.ok(waiting >= 30, `${waiting} wait`);
  pacer.releaseAllBut(new Set([5]));
  assert.ok(sent.some(({ message }) => message.to === 4), 'the promoted learner got its messages');
  assert.equal(pacer.queuedMessages, waiting - sent.length);
  // Later messages to the released peer are not held when it is no longer paced.
  assert.equal(pacer.pace([append(4, 99, 16 * KIB)], new Set([5])).length, 1);
  pacer.stop();
  assert.equal(pacer.queuedMessages, 0);
  const before = sent.length;
  runTimers(clock, 60_000);
  assert.equal(sent.length, before, 'nothing leaves after stop');
});

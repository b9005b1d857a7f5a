// The log-delta stream's chunk-size controller (src/diff/chunk-size-controller.ts), replayed
// on acknowledgement times alone: it grows ×1.5 on a fast consumer up to 4 MiB, shrinks ×0.7
// when the consumer slows down, settles where a chunk comes back within the round-trip target
// without oscillating, stays within 64 KiB–4 MiB (or the consumer's maximum), does not blame
// a chunk's size for the time it queued behind others, and ignores chunks cut short.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { ChunkVerdict } from '../../src/diff/index.ts';
import { CHUNK_BYTES_INITIAL, CHUNK_BYTES_MAX, CHUNK_BYTES_MIN, ChunkSizeController, ROUND_TRIP_TARGET_MS } from '../../src/diff/index.ts';

// Pipe is a consumer reached over a link: a chunk alone in flight is acknowledged floorMs plus
// its bytes at bytesPerMs after it was sent. One chunk in flight at a time.
class Pipe {
  nowMs = 0;
  bytesPerMs: number;
  floorMs: number;
  constructor(bytesPerMs: number, floorMs: number) {
    this.bytesPerMs = bytesPerMs;
    this.floorMs = floorMs;
  }

  send(controller: ChunkSizeController, bytes = controller.chunkBytes): ChunkVerdict {
    const sentAtMs = this.nowMs;
    this.nowMs += this.floorMs + bytes / this.bytesPerMs;
    return controller.onAcknowledged({ bytes, sizedFor: controller.chunkBytes, sentAtMs, ackedAtMs: this.nowMs });
  }
}

test('the first verdicts are exact: ×1.5 after a fast chunk, ×0.7 after a slow one', () => {
  const fast = new ChunkSizeController();
  assert.equal(fast.chunkBytes, CHUNK_BYTES_INITIAL);
  assert.equal(new Pipe(100_000, 1).send(fast), 'fast');
  assert.equal(fast.chunkBytes, CHUNK_BYTES_INITIAL * 1.5);

  const slow = new ChunkSizeController();
  // 256 KiB at 1,000 bytes/ms takes 262 ms on its own: over the 250 ms target.
  assert.equal(new Pipe(1_000, 20).send(slow), 'slow');
  assert.equal(slow.chunkBytes, Math.round(CHUNK_BYTES_INITIAL * 0.7));
});

test('a fast consumer grows chunks to 4 MiB, and no further', () => {
  const controller = new ChunkSizeController();
  const pipe = new Pipe(100_000, 1);
  const sizes: number[] = [];
  for (let ack = 0; ack < 12; ack += 1) {
    pipe.send(controller);
    sizes.push(controller.chunkBytes);
  }
  assert.equal(sizes[6], CHUNK_BYTES_MAX, `4 MiB after 7 fast chunks: ${sizes.join(', ')}`);
  assert.ok(sizes.every((size, index) => index === 0 || size >= (sizes[index - 1] ?? 0)), 'never shrinks on a steady fast pipe');
  assert.equal(controller.chunkBytes, CHUNK_BYTES_MAX);
});

test('a slow consumer settles on a size that comes back within the target, without oscillating', () => {
  const controller = new ChunkSizeController();
  const pipe = new Pipe(1_000, 20);
  const verdicts: ChunkVerdict[] = [];
  for (let ack = 0; ack < 40; ack += 1) verdicts.push(pipe.send(controller));
  const size = controller.chunkBytes;
  assert.ok(size < CHUNK_BYTES_INITIAL && size >= CHUNK_BYTES_MIN, `settled at ${size}`);
  assert.ok(pipe.floorMs + size / pipe.bytesPerMs <= ROUND_TRIP_TARGET_MS, 'a chunk of the settled size comes back within the target');
  assert.ok(pipe.floorMs + (1.5 * size) / pipe.bytesPerMs > ROUND_TRIP_TARGET_MS, 'and a 1.5× one would not');
  assert.deepEqual(verdicts.slice(-20), new Array(20).fill('steady'), `no oscillation: ${verdicts.join(' ')}`);
});

test('a consumer that slows down shrinks the chunks ×0.7 until they fit the target again, then they grow back', () => {
  const controller = new ChunkSizeController();
  const pipe = new Pipe(100_000, 1);
  for (let ack = 0; ack < 10; ack += 1) pipe.send(controller);
  assert.equal(controller.chunkBytes, CHUNK_BYTES_MAX);
  pipe.bytesPerMs = 5_000; // 20× slower: a 4 MiB chunk takes 840 ms
  const shrinking: number[] = [];
  for (let ack = 0; ack < 6; ack += 1) {
    assert.equal(pipe.send(controller), 'slow', `ack ${ack} after the slowdown`);
    shrinking.push(controller.chunkBytes);
  }
  const expected: number[] = [];
  for (let size = CHUNK_BYTES_MAX; expected.length < 6; ) expected.push((size = Math.round(size * 0.7)));
  assert.deepEqual(shrinking, expected);
  for (let ack = 0; ack < 30; ack += 1) pipe.send(controller);
  assert.ok(pipe.floorMs + controller.chunkBytes / pipe.bytesPerMs <= ROUND_TRIP_TARGET_MS, `fits the target at ${controller.chunkBytes}`);
  pipe.bytesPerMs = 100_000;
  for (let ack = 0; ack < 30; ack += 1) pipe.send(controller);
  assert.equal(controller.chunkBytes, CHUNK_BYTES_MAX, 'the consumer recovered: chunks grow back');
});

test('sizes stay within 64 KiB and the consumer maximum', () => {
  const crawling = new ChunkSizeController();
  const pipe = new Pipe(10, 100);
  for (let ack = 0; ack < 30; ack += 1) pipe.send(crawling);
  assert.equal(crawling.chunkBytes, CHUNK_BYTES_MIN);

  const capped = new ChunkSizeController({ bytesMax: 128 * 1024 });
  assert.equal(capped.chunkBytes, 128 * 1024, 'the initial size is capped too');
  for (let ack = 0; ack < 10; ack += 1) new Pipe(100_000, 1).send(capped);
  assert.equal(capped.chunkBytes, 128 * 1024);
  assert.throws(() => new ChunkSizeController({ bytesMax: CHUNK_BYTES_MIN - 1 }), /bytesMax/);
  assert.throws(() => new ChunkSizeController({ bytesMax: CHUNK_BYTES_MAX + 1 }), /bytesMax/);
});

test('queueing behind earlier chunks is not blamed on a chunk: four in flight, round trips ×4, still fast', () => {
  const controller = new ChunkSizeController();
  const bytes = controller.chunkBytes;
  // Four chunks sent at once and acknowledged 10 ms apart: each took 10 ms of the pipe, but
  // the last one's round trip is 40 ms.
  const verdicts = [10, 20, 30, 40].map((ackedAtMs) => controller.onAcknowledged({ bytes, sizedFor: bytes, sentAtMs: 0, ackedAtMs }));
  assert.deepEqual(verdicts, ['fast', 'fast', 'fast', 'fast']);
});

test('chunks cut short (the log ran out) and control chunks are not judged', () => {
  const controller = new ChunkSizeController();
  // A 2 KiB chunk acknowledged a whole second later: a following stream waiting for writes.
  assert.equal(controller.onAcknowledged({ bytes: 2048, sizedFor: controller.chunkBytes, sentAtMs: 0, ackedAtMs: 1_000 }), 'not-judged');
  assert.equal(controller.onAcknowledged({ bytes: 0, sizedFor: controller.chunkBytes, sentAtMs: 1_000, ackedAtMs: 3_000 }), 'not-judged');
  assert.equal(controller.chunkBytes, CHUNK_BYTES_INITIAL);
  assert.equal(controller.throughputBytesPerMs, 0);
});

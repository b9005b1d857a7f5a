// The SnapshotStore conformance suite: DiskSnapshotStore and MemorySnapshotStore run these
// same tests (disk-snapshot-store.test.ts, memory-snapshot-store.test.ts). It covers the
// contract of src/snapshot/snapshot-store.ts: round trips, metadata, readBlocks, receive in
// any chunking, resume, corruption in transit, leases, retention, refusals and abort.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { ConfState } from '../../src/raft/types.ts';
import {
  SNAPSHOT_FOOTER_BYTES,
  SNAPSHOT_MEMBERS_BYTES_MAX,
  decodeSnapshotFooter,
  encodeSnapshotFooter,
} from '../../src/snapshot/snapshot-format.ts';
import { RECEIVE_RECORDS_BUFFERED_BYTES_MAX, RECEIVES_MAX, SNAPSHOT_NOT_FOUND_CODE } from '../../src/snapshot/snapshot-store-parts.ts';
import {
  snapshotId,
  type ReceivedRecordStream,
  type SnapshotFileMetadata,
  type SnapshotInfo,
  type SnapshotReader,
  type SnapshotRecord,
  type SnapshotSource,
  type SnapshotStore,
} from '../../src/snapshot/snapshot-store.ts';
import { ErrorCode, isStrataError, type StrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';
import { VirtualClock } from '../../src/util/virtual-clock.ts';

/** SnapshotStoreHarness opens stores for the suite. */
export interface SnapshotStoreHarness {
  /** open makes a fresh, empty store timed by `clock`, with data blocks of about `blockBytesTarget`. */
  open(options: { clock: VirtualClock; blockBytesTarget: number }): Promise<SnapshotStore>;
  /** reopen ends `store`'s process (close, or a crash) and opens what it keeps again. */
  reopen(store: SnapshotStore): Promise<SnapshotStore>;
}

// Small blocks, so that a few thousand records make many blocks.
const SMALL_BLOCK_BYTES = 16 * 1024;
const CONF: ConfState = { voters: [1, 2, 3], learners: [4], votersOutgoing: [], learnersNext: [], autoLeave: false };
const SEED = Number(process.env['STRATAKV_SEED'] ?? 20_261_207);

function metadata(index: number, term = 3): SnapshotFileMetadata {
  return { index, term, confState: CONF, revision: index * 10 + 7, members: Uint8Array.from([0xa1, index & 0xff, 0x00, 0xff]) };
}

function key(i: number): Uint8Array {
  return new TextEncoder().encode(`key/${String(i).padStart(8, '0')}`);
}

function value(i: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let at = 0; at < length; at += 1) bytes[at] = (i * 31 + at * 7) & 0xff;
  return bytes;
}

function smallRecords(count: number): SnapshotRecord[] {
  return Array.from({ length: count }, (_, i) => ({ key: key(i), value: value(i, i % 97) }));
}

// A source yielding `records` in batches of `batchSize`; counts how it was used.
function sourceOf(meta: SnapshotFileMetadata, records: readonly SnapshotRecord[], batchSize = 333): SnapshotSource & { closed: boolean; started: boolean } {
  const source = {
    metadata: meta,
    closed: false,
    started: false,
    async *records(): AsyncIterable<readonly SnapshotRecord[]> {
      source.started = true;
      try {
        for (let at = 0; at < records.length; at += batchSize) yield records.slice(at, at + batchSize);
      } finally {
        source.closed = true;
      }
    },
  };
  return source;
}

async function readAll(reader: SnapshotReader): Promise<SnapshotRecord[]> {
  const all: SnapshotRecord[] = [];
  for await (const batch of reader.records()) all.push(...batch);
  return all;
}

function assertSameRecords(actual: readonly SnapshotRecord[], expected: readonly SnapshotRecord[]): void {
  assert.equal(actual.length, expected.length, 'record count');
  for (let i = 0; i < expected.length; i += 1) {
    const a = actual[i];
    const e = expected[i];
    assert.ok(a !== undefined && e !== undefined);
    assert.ok(Buffer.compare(a.key, e.key) === 0, `key ${i}`);
    assert.ok(Buffer.compare(a.value, e.value) === 0, `value ${i}`);
  }
}

async function readWholeFile(reader: SnapshotReader, random: SeededRandom | undefined): Promise<Uint8Array[]> {
  const pieces: Uint8Array[] = [];
  let offset = 0;
  for (let call = 0; call < 100_000; call += 1) {
    const maxBytes = random === undefined ? 1 << 20 : 1 + random.intBelow(96 * 1024);
    const piece = await reader.readBlocks(offset, maxBytes);
    if (piece.byteLength === 0) break;
    assert.equal(piece.byteLength % 4096, 0, 'readBlocks returns whole blocks');
    pieces.push(piece.slice());
    offset += piece.byteLength;
  }
  assert.equal(offset, reader.info.byteLength, 'readBlocks covers the file');
  return pieces;
}

function concat(pieces: readonly Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(pieces));
}

function rejectsWith(code: ErrorCode): (error: unknown) => boolean {
  return (error) => {
    assert.ok(isStrataError(error, code), `expected ${code}, got ${String(error)}`);
    return true;
  };
}

/** describeSnapshotStoreConformance registers the suite for one implementation. */
export function describeSnapshotStoreConformance(name: string, harness: SnapshotStoreHarness): void {
  describe(`SnapshotStore conformance: ${name}`, () => {
    const fresh = async (blockBytesTarget = SMALL_BLOCK_BYTES): Promise<{ store: SnapshotStore; clock: VirtualClock }> => {
      const clock = new VirtualClock(1_000);
      return { store: await harness.open({ clock, blockBytesTarget }), clock };
    };

    test('an empty snapshot round-trips: header and footer only', async () => {
      const { store } = await fresh();
      assert.deepEqual(store.list(), []);
      const info = await store.create(sourceOf(metadata(5), []));
      assert.equal(info.id, snapshotId(3, 5));
      assert.equal(info.keyCount, 0);
      assert.equal(info.byteLength, 8192);
      assert.match(info.sha256, /^[0-9a-f]{64}$/);
      assert.deepEqual(store.list(), [info]);
      assert.deepEqual(store.get(info.id), info);
      const reader = await store.open(info.id);
      assert.deepEqual(await readAll(reader), []);
      assert.deepEqual(reader.metadata, metadata(5));
      await reader.close();
      await reader.close();
      await store.close();
    });

    test('10,000 small records round-trip with their metadata, and survive a reopen', async () => {
      const { store: first } = await fresh();
      const records = smallRecords(10_000);
      const progress: number[] = [];
      const info = await first.create(sourceOf(metadata(42, 7), records), { onProgress: (p) => progress.push(p.bytesDone) });
      assert.equal(info.keyCount, 10_000);
      assert.equal(info.index, 42);
      assert.equal(info.term, 7);
      assert.equal(info.revision, 427);
      assert.equal(info.byteLength % 4096, 0);
      assert.ok(info.byteLength > 10 * SMALL_BLOCK_BYTES, 'many blocks');
      assert.ok(progress.length > 0 && progress.every((done, i) => i === 0 || done >= (progress[i - 1] ?? 0)), 'progress only grows');
      const store = await harness.reopen(first);
      assert.deepEqual(store.list(), [info]);
      const reader = await store.open(info.id);
      assert.deepEqual(reader.info, info);
      assert.deepEqual(reader.metadata, metadata(42, 7));
      assertSameRecords(await readAll(reader), records);
      await reader.close();
      await store.close();
    });

    test('values of 1.5 MiB make blocks larger than the target and round-trip', async () => {
      const { store } = await fresh(1 << 20);
      const big = 1.5 * (1 << 20);
      const records = [
        { key: key(1), value: value(1, 10) },
        { key: key(2), value: value(2, big) },
        { key: key(3), value: value(3, big) },
        { key: key(4), value: value(4, 5) },
        { key: key(5), value: value(5, big) },
      ];
      const info = await store.create(sourceOf(metadata(9), records, 2));
      assert.equal(info.keyCount, 5);
      const reader = await store.open(info.id);
      assertSameRecords(await readAll(reader), records);
      // Each big record is one block, and readBlocks hands it out whole even when asked for less.
      const header = await reader.readBlocks(0, 4096);
      assert.equal(header.byteLength, 4096);
      const first = await reader.readBlocks(4096, 4096);
      const second = await reader.readBlocks(4096 + first.byteLength, 4096);
      assert.ok(second.byteLength > big, `a big block comes whole (${second.byteLength} bytes)`);
      await reader.close();
      await store.close();
    });

    test('readBlocks covers the file exactly, and its bytes received elsewhere make the same snapshot', async () => {
      const random = new SeededRandom(SEED);
      const { store } = await fresh();
      const records = smallRecords(3_000);
      const info = await store.create(sourceOf(metadata(11), records));
      const reader = await store.open(info.id);
      const pieces = await readWholeFile(reader, random);
      await assert.rejects(reader.readBlocks(4096 + 512, 8192), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(reader.readBlocks(info.byteLength + 4096, 8192), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      assert.equal((await reader.readBlocks(info.byteLength, 8192)).byteLength, 0, 'empty at the end');
      await reader.close();
      const bytes = concat(pieces);
      assert.equal(bytes.byteLength, info.byteLength);

      const { store: other } = await fresh();
      const receiver = await other.receive(info.id, bytes.byteLength);
      assert.equal(receiver.verifiedBytes, 0);
      let offset = 0;
      for (const piece of pieces) {
        await receiver.write(offset, piece);
        offset += piece.byteLength;
        assert.equal(receiver.verifiedBytes, offset, 'whole blocks are verified as they arrive');
      }
      const received = await receiver.finish();
      assert.equal(received.sha256, info.sha256);
      assert.equal(received.keyCount, info.keyCount);
      assert.equal(received.byteLength, info.byteLength);
      assert.deepEqual(other.list().map((listed) => listed.id), [info.id]);
      const copy = await other.open(info.id);
      assert.deepEqual(concat(await readWholeFile(copy, undefined)), bytes, 'byte for byte the same file');
      assertSameRecords(await readAll(copy), records);
      await copy.close();
      await receiver.abort(); // harmless after finish
      await store.close();
      await other.close();
    });

    test('receive takes chunks of any size', async () => {
      const random = new SeededRandom(SEED + 1);
      const { store } = await fresh();
      const info = await store.create(sourceOf(metadata(12), smallRecords(2_000)));
      const reader = await store.open(info.id);
      const bytes = concat(await readWholeFile(reader, undefined));
      await reader.close();
      for (const chunkMax of [1, 777, 5000, 70_000]) {
        const { store: other } = await fresh();
        // Chunks of one byte: only a prefix, to keep the test quick.
        const part = chunkMax === 1 ? 20_000 : bytes.byteLength;
        const receiver = await other.receive(info.id, bytes.byteLength);
        for (let at = 0; at < part; ) {
          const length = Math.min(part - at, 1 + random.intBelow(chunkMax));
          await receiver.write(at, bytes.subarray(at, at + length));
          at += length;
          assert.equal(receiver.verifiedBytes % 4096, 0);
          assert.ok(receiver.verifiedBytes <= at);
        }
        if (part === bytes.byteLength) assert.equal((await receiver.finish()).sha256, info.sha256);
        else await receiver.abort();
        await other.close();
      }
      await store.close();
    });

    test('a receive broken off resumes at verifiedBytes, without the bytes before it', async () => {
      const random = new SeededRandom(SEED + 2);
      const { store } = await fresh();
      const info = await store.create(sourceOf(metadata(13), smallRecords(3_000)));
      const reader = await store.open(info.id);
      const bytes = concat(await readWholeFile(reader, undefined));
      await reader.close();
      const { store: other } = await fresh();
      const first = await other.receive(info.id, bytes.byteLength);
      const sent = Math.floor(bytes.byteLength * 0.6) + 123; // not on a block boundary
      for (let at = 0; at < sent; ) {
        const length = Math.min(sent - at, 1 + random.intBelow(10_000));
        await first.write(at, bytes.subarray(at, at + length));
        at += length;
      }
      // The transfer breaks: no abort, no finish. A new receive of the same id and length resumes.
      const second = await other.receive(info.id, bytes.byteLength);
      const resumeAt = second.verifiedBytes;
      assert.ok(resumeAt > 0 && resumeAt < bytes.byteLength, `resumes inside the file (${resumeAt})`);
      assert.ok(resumeAt <= sent && resumeAt % 4096 === 0);
      await assert.rejects(second.write(0, bytes.subarray(0, 4096)), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(first.write(sent, bytes.subarray(sent, sent + 10)), rejectsWith(ErrorCode.CANCELED), 'the old receiver is taken over');
      // The bytes before resumeAt are never sent again: zeros stand in for them here.
      const tail = new Uint8Array(bytes.byteLength);
      tail.set(bytes.subarray(resumeAt), resumeAt);
      for (let at = resumeAt; at < bytes.byteLength; ) {
        const length = Math.min(bytes.byteLength - at, 1 + random.intBelow(30_000));
        await second.write(at, tail.subarray(at, at + length));
        at += length;
      }
      const received = await second.finish();
      assert.equal(received.sha256, info.sha256);
      // A receive of another length starts over.
      await store.close();
      await other.close();
    });

    test('a flipped bit in a received chunk is CORRUPTION naming the block; verifiedBytes stays at the last good block', async () => {
      const { store } = await fresh();
      const info = await store.create(sourceOf(metadata(14), smallRecords(3_000)));
      const reader = await store.open(info.id);
      const bytes = concat(await readWholeFile(reader, undefined));
      await reader.close();
      const damaged = bytes.slice();
      const flipAt = Math.floor(bytes.byteLength / 2) + 17;
      damaged[flipAt] = (damaged[flipAt] ?? 0) ^ 0x10;
      const { store: other } = await fresh();
      const receiver = await other.receive(info.id, bytes.byteLength);
      let failure: StrataError | undefined;
      for (let at = 0; at < bytes.byteLength && failure === undefined; ) {
        const length = Math.min(bytes.byteLength - at, 50_000);
        try {
          await receiver.write(at, damaged.subarray(at, at + length));
        } catch (error) {
          assert.ok(isStrataError(error, ErrorCode.CORRUPTION), String(error));
          failure = error;
        }
        at += length;
      }
      assert.ok(failure !== undefined, 'the flip is caught');
      const { offset, blockSequence } = failure.details as { offset: number; blockSequence: number };
      assert.equal(typeof blockSequence, 'number');
      assert.ok(offset <= flipAt && flipAt - offset < 2 * SMALL_BLOCK_BYTES, 'the block holding the flip is named');
      assert.match(failure.message, new RegExp(`block ${blockSequence} at offset ${offset}`));
      assert.equal(receiver.verifiedBytes, offset, 'verified up to the bad block');
      // The sender resends from verifiedBytes, good bytes this time.
      for (let at = receiver.verifiedBytes; at < bytes.byteLength; ) {
        const length = Math.min(bytes.byteLength - at, 50_000);
        await receiver.write(at, bytes.subarray(at, at + length));
        at += length;
      }
      assert.equal((await receiver.finish()).sha256, info.sha256);
      await store.close();
      await other.close();
    });

    test('finish with a wrong SHA-256 in the footer is CORRUPTION and lists nothing', async () => {
      const { store } = await fresh();
      const info = await store.create(sourceOf(metadata(15), smallRecords(500)));
      const reader = await store.open(info.id);
      const bytes = concat(await readWholeFile(reader, undefined));
      await reader.close();
      // A footer that passes its own CRC but carries another digest.
      const footerOffset = bytes.byteLength - SNAPSHOT_FOOTER_BYTES;
      const footer = decodeSnapshotFooter(bytes.subarray(footerOffset), 'test', footerOffset);
      const wrong = footer.sha256.slice();
      wrong[0] = (wrong[0] ?? 0) ^ 1;
      const forged = bytes.slice();
      forged.set(encodeSnapshotFooter({ ...footer, sha256: wrong }), footerOffset);
      const { store: other } = await fresh();
      const receiver = await other.receive(info.id, forged.byteLength);
      await receiver.write(0, forged);
      assert.equal(receiver.verifiedBytes, forged.byteLength, 'each block passes on its own');
      await assert.rejects(receiver.finish(), rejectsWith(ErrorCode.CORRUPTION));
      assert.equal(other.get(info.id), undefined);
      assert.deepEqual(other.list(), []);
      // The receive is gone: a new one starts from the beginning.
      const again = await other.receive(info.id, bytes.byteLength);
      assert.equal(again.verifiedBytes, 0);
      await again.write(0, bytes);
      assert.equal((await again.finish()).sha256, info.sha256);
      await store.close();
      await other.close();
    });

    test('finish before the last byte is refused, and the receive goes on', async () => {
      const { store } = await fresh();
      const info = await store.create(sourceOf(metadata(16), smallRecords(100)));
      const reader = await store.open(info.id);
      const bytes = concat(await readWholeFile(reader, undefined));
      await reader.close();
      const { store: other } = await fresh();
      const receiver = await other.receive(info.id, bytes.byteLength);
      await receiver.write(0, bytes.subarray(0, 4096));
      await assert.rejects(receiver.finish(), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(receiver.write(4096, new Uint8Array(bytes.byteLength - 4096 + 10)), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await receiver.write(4096, bytes.subarray(4096));
      assert.equal((await receiver.finish()).id, info.id);
      await store.close();
      await other.close();
    });

    // The bytes of a snapshot of `records`, made by `store`.
    const fileOf = async (store: SnapshotStore, meta: SnapshotFileMetadata, records: readonly SnapshotRecord[]): Promise<{ info: SnapshotInfo; bytes: Uint8Array }> => {
      const info = await store.create(sourceOf(meta, records));
      const reader = await store.open(info.id);
      const bytes = concat(await readWholeFile(reader, undefined));
      await reader.close();
      return { info, bytes };
    };

    // Reads a records() stream to its end (or failure) beside the writes.
    const drain = (stream: AsyncIterable<readonly SnapshotRecord[]>): Promise<SnapshotRecord[]> =>
      (async () => {
        const all: SnapshotRecord[] = [];
        for await (const batch of stream) all.push(...batch);
        return all;
      })();

    test('records() streams the content while it is received, across a resume, and ends only after finish checked the whole', async () => {
      const random = new SeededRandom(SEED + 11);
      const { store } = await fresh();
      const records = smallRecords(3_000);
      const { info, bytes } = await fileOf(store, metadata(21), records);
      const { store: other } = await fresh();
      const first = await other.receive(info.id, bytes.byteLength);
      const stream = first.records();
      assert.ok(stream !== undefined, 'a fresh receive streams its records');
      assert.equal(first.records(), undefined, 'one stream per receive');
      let ended = false;
      const read = drain(stream).then((all) => {
        ended = true;
        return all;
      });
      const sent = Math.floor(bytes.byteLength * 0.5) + 99;
      for (let at = 0; at < sent; ) {
        const length = Math.min(sent - at, 1 + random.intBelow(20_000));
        await first.write(at, bytes.subarray(at, at + length));
        at += length;
      }
      // Broken off; resumed by a new receive, which feeds the same stream.
      const second = await other.receive(info.id, bytes.byteLength);
      assert.equal(second.records(), undefined, 'a resumed receive has its stream already');
      for (let at = second.verifiedBytes; at < bytes.byteLength; ) {
        const length = Math.min(bytes.byteLength - at, 1 + random.intBelow(20_000));
        await second.write(at, bytes.subarray(at, at + length));
        at += length;
      }
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(ended, false, 'every byte is in, but the whole is not checked before finish()');
      assert.equal(stream.footer, undefined);
      assert.equal((await second.finish()).sha256, info.sha256);
      assertSameRecords(await read, records);
      const footer = (stream as ReceivedRecordStream).footer; // narrowed to undefined above
      assert.equal(footer?.keyCount, records.length);
      assert.equal(footer?.metadata.revision, metadata(21).revision);
      await store.close();
      await other.close();
    });

    test('records() fails when the receive is aborted, and when its footer fails the check', async () => {
      const { store } = await fresh();
      const { info, bytes } = await fileOf(store, metadata(22), smallRecords(2_000));
      const { store: other } = await fresh();
      const aborted = await other.receive(info.id, bytes.byteLength);
      const abortedStream = aborted.records();
      assert.ok(abortedStream !== undefined);
      // Checked from the start: the stream fails while the test awaits something else.
      const abortedRead = assert.rejects(drain(abortedStream), rejectsWith(ErrorCode.CANCELED));
      await aborted.write(0, bytes.subarray(0, Math.floor(bytes.byteLength / 2)));
      await aborted.abort();
      await abortedRead;

      // A footer whose SHA-256 is wrong: the stream delivered every block, then fails.
      const footerOffset = bytes.byteLength - SNAPSHOT_FOOTER_BYTES;
      const footer = decodeSnapshotFooter(bytes.subarray(footerOffset), 'test', footerOffset);
      const badFooter = encodeSnapshotFooter({ ...footer, sha256: new Uint8Array(32).fill(7) });
      const tampered = Uint8Array.from(bytes);
      tampered.set(badFooter, footerOffset);
      const receiver = await other.receive(info.id, bytes.byteLength);
      const stream = receiver.records();
      assert.ok(stream !== undefined);
      const read = assert.rejects(drain(stream), rejectsWith(ErrorCode.CORRUPTION));
      await receiver.write(0, tampered);
      await assert.rejects(receiver.finish(), rejectsWith(ErrorCode.CORRUPTION));
      await read;
      assert.equal(stream.footer, undefined);
      assert.equal(other.list().length, 0);
      await store.close();
      await other.close();
    });

    test('records() is not offered once data blocks were received without it', async () => {
      const { store } = await fresh();
      const { info, bytes } = await fileOf(store, metadata(23), smallRecords(2_000));
      const { store: other } = await fresh();
      const headerOnly = await other.receive(info.id, bytes.byteLength);
      await headerOnly.write(0, bytes.subarray(0, 4096));
      assert.ok(headerOnly.records() !== undefined, 'the header holds no records: a stream taken now still sees them all');
      await headerOnly.abort();
      const plain = await other.receive(info.id, bytes.byteLength);
      const first = 64 * 1024;
      await plain.write(0, bytes.subarray(0, first));
      assert.ok(plain.verifiedBytes > 4096);
      assert.equal(plain.records(), undefined, 'data blocks were checked without a stream');
      await plain.write(first, bytes.subarray(first));
      assert.equal((await plain.finish()).sha256, info.sha256);
      await store.close();
      await other.close();
    });

    test(`records() holds write() while more than ${RECEIVE_RECORDS_BUFFERED_BYTES_MAX >> 20} MiB wait for its reader, and frees it when the reader stops`, async () => {
      const { store } = await fresh(256 * 1024);
      // About 3 × the buffer bound of content.
      const records = Array.from({ length: 800 }, (_, i) => ({ key: key(i), value: value(i, 32 * 1024) }));
      const { info, bytes } = await fileOf(store, metadata(25), records);
      const { store: other } = await fresh(256 * 1024);
      const receiver = await other.receive(info.id, bytes.byteLength);
      const stream = receiver.records();
      assert.ok(stream !== undefined);
      const iterator = stream[Symbol.asyncIterator]();
      const chunk = 1 << 20;
      let at = 0;
      let held = false;
      for (let writes = 0; at < bytes.byteLength && writes < 64; writes += 1) {
        const length = Math.min(chunk, bytes.byteLength - at);
        const write = receiver.write(at, bytes.subarray(at, at + length));
        at += length;
        const settled = await Promise.race([write.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 200))]);
        if (!settled) {
          held = true;
          assert.ok(at > RECEIVE_RECORDS_BUFFERED_BYTES_MAX, `held only beyond the bound (after ${at} bytes)`);
          // Reading makes room: the write goes through once the buffer is back within the bound.
          let written = false;
          void write.then(() => {
            written = true;
          });
          for (let reads = 0; !written && reads < 200; reads += 1) {
            const next = await iterator.next();
            assert.equal(next.done, false);
            await new Promise((resolve) => setImmediate(resolve));
          }
          assert.ok(written, 'reading released the write');
          await write;
          break;
        }
      }
      assert.ok(held, 'a reader that does not read holds the writer');
      // The reader stops: the rest is taken without waiting.
      await iterator.return?.();
      for (; at < bytes.byteLength; ) {
        const length = Math.min(chunk, bytes.byteLength - at);
        await receiver.write(at, bytes.subarray(at, at + length));
        at += length;
      }
      assert.equal((await receiver.finish()).sha256, info.sha256);
      await store.close();
      await other.close();
    });

    test(`at most ${RECEIVES_MAX} receives are kept: the oldest is dropped`, async () => {
      const { store } = await fresh();
      const receivers = [];
      for (let index = 1; index <= RECEIVES_MAX + 1; index += 1) {
        const receiver = await store.receive(snapshotId(1, index), 3 * 4096);
        receivers.push(receiver);
      }
      const oldest = receivers[0];
      assert.ok(oldest !== undefined);
      await assert.rejects(oldest.write(0, new Uint8Array(10)), rejectsWith(ErrorCode.CANCELED));
      for (const receiver of receivers.slice(1)) await receiver.abort();
      await assert.rejects(store.receive('not-an-id', 8192), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(store.receive(snapshotId(1, 1), 8191), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await store.close();
    });

    test('a lease protects from retain until it expires on the clock', async () => {
      const { store, clock } = await fresh();
      const infos: SnapshotInfo[] = [];
      for (const index of [1, 2, 3]) infos.push(await store.create(sourceOf(metadata(index), smallRecords(10))));
      const [oldest, middle] = infos;
      assert.ok(oldest !== undefined && middle !== undefined);
      const lease = store.lease(oldest.id, 1_000);
      assert.equal(lease.id, oldest.id);
      assert.deepEqual(await store.retain(1), [middle.id], 'the leased one stays');
      await clock.run({ untilMs: clock.now() + 600 });
      lease.renew(1_000);
      await clock.run({ untilMs: clock.now() + 600 });
      assert.deepEqual(await store.retain(1), [], 'renewed: still live');
      await clock.run({ untilMs: clock.now() + 500 });
      assert.deepEqual(await store.retain(1), [oldest.id], 'expired');
      assert.deepEqual(store.list().map((info) => info.index), [3]);
      lease.renew(1_000); // the snapshot is gone: renewing pins nothing, and does not throw
      lease.release();
      lease.release();
      assert.throws(() => store.lease(oldest.id, 1_000), rejectsWith(SNAPSHOT_NOT_FOUND_CODE));
      assert.throws(() => store.lease(infos[2]?.id ?? '', 0), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await store.close();
    });

    test('a released lease no longer protects', async () => {
      const { store } = await fresh();
      const old = await store.create(sourceOf(metadata(1), []));
      await store.create(sourceOf(metadata(2), []));
      const lease = store.lease(old.id, 60_000);
      assert.deepEqual(await store.retain(1), []);
      lease.release();
      assert.deepEqual(await store.retain(1), [old.id]);
      await store.close();
    });

    test('retain keeps the newest N and the protected ids', async () => {
      const { store: first } = await fresh();
      const ids = [];
      for (const index of [4, 1, 3, 2, 5]) ids.push((await first.create(sourceOf(metadata(index), smallRecords(5)))).id);
      assert.deepEqual(first.list().map((info) => info.index), [5, 4, 3, 2, 1], 'newest first');
      const deleted = await first.retain(2, [snapshotId(3, 1)]);
      assert.deepEqual(deleted.sort(), [snapshotId(3, 2), snapshotId(3, 3)].sort());
      assert.deepEqual(first.list().map((info) => info.index), [5, 4, 1]);
      await assert.rejects(first.retain(-1), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      const store = await harness.reopen(first);
      assert.deepEqual(store.list().map((info) => info.index), [5, 4, 1], 'deletions are durable');
      assert.deepEqual(await store.retain(0), [snapshotId(3, 5), snapshotId(3, 4), snapshotId(3, 1)]);
      await assert.rejects(store.open(snapshotId(3, 5)), rejectsWith(SNAPSHOT_NOT_FOUND_CODE));
      await store.close();
    });

    test('records out of order are refused, and nothing is listed', async () => {
      const { store } = await fresh();
      const records = smallRecords(2_000);
      const swapped = [...records];
      const a = swapped[1500];
      const b = swapped[1501];
      assert.ok(a !== undefined && b !== undefined);
      swapped[1500] = b;
      swapped[1501] = a;
      const source = sourceOf(metadata(20), swapped);
      await assert.rejects(store.create(source), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      assert.ok(source.closed, 'the source is closed');
      const duplicate = sourceOf(metadata(21), [...records.slice(0, 10), ...records.slice(9, 20)]);
      await assert.rejects(store.create(duplicate), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      assert.deepEqual(store.list(), []);
      const tooBig = { ...metadata(22), members: new Uint8Array(SNAPSHOT_MEMBERS_BYTES_MAX + 1) };
      await assert.rejects(store.create(sourceOf(tooBig, [])), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      assert.deepEqual(store.list(), []);
      await store.close();
    });

    test('a create aborted by its signal is CANCELED and lists nothing, even when the source hangs', async () => {
      const { store } = await fresh();
      const controller = new AbortController();
      const records = smallRecords(5_000);
      const aborting: SnapshotSource = {
        metadata: metadata(30),
        async *records() {
          for (let at = 0; at < records.length; at += 100) {
            if (at === 2_000) controller.abort();
            yield records.slice(at, at + 100);
          }
        },
      };
      await assert.rejects(store.create(aborting, { signal: controller.signal }), rejectsWith(ErrorCode.CANCELED));
      assert.deepEqual(store.list(), []);
      const hanging = new AbortController();
      const stuck: SnapshotSource = {
        metadata: metadata(31),
        async *records() {
          yield records.slice(0, 10);
          await new Promise(() => undefined); // never yields again
        },
      };
      const creating = store.create(stuck, { signal: hanging.signal });
      await new Promise((resolve) => setImmediate(resolve));
      hanging.abort();
      await assert.rejects(creating, rejectsWith(ErrorCode.CANCELED));
      assert.deepEqual(store.list(), []);
      // The store still works.
      assert.equal((await store.create(sourceOf(metadata(30), records))).keyCount, records.length);
      await store.close();
    });

    test('create of a listed id returns it without reading the source', async () => {
      const { store } = await fresh();
      const info = await store.create(sourceOf(metadata(40), smallRecords(50)));
      const again = sourceOf(metadata(40), smallRecords(60));
      assert.deepEqual(await store.create(again), info);
      assert.equal(again.started, false);
      await assert.rejects(store.open('nonsense'), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(store.open(snapshotId(3, 41)), rejectsWith(SNAPSHOT_NOT_FOUND_CODE));
      await store.close();
    });

    test('a reader closed mid-read stops with STOPPED; readers of a closed store too', async () => {
      const { store } = await fresh();
      const info = await store.create(sourceOf(metadata(50), smallRecords(5_000)));
      const reader = await store.open(info.id);
      let batches = 0;
      await assert.rejects(
        (async () => {
          for await (const batch of reader.records()) {
            assert.ok(batch.length > 0);
            batches += 1;
            if (batches === 2) await reader.close();
          }
        })(),
        rejectsWith(ErrorCode.STOPPED),
      );
      const second = await store.open(info.id);
      await store.close();
      await assert.rejects(second.readBlocks(0, 4096), rejectsWith(ErrorCode.STOPPED));
      await second.close();
    });
  });
}

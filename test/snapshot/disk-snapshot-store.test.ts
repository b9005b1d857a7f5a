// DiskSnapshotStore: the conformance suite, plus what only files do: bit rot found at open
// (set aside as .corrupt, reported, never deleted), rot found by a read, temporaries removed
// at open, and SIGKILL of a process in the middle of a create.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { Logger } from '../../src/raft/types.ts';
import { DiskSnapshotStore, verifySnapshotFile } from '../../src/snapshot/disk-snapshot-store.ts';
import { decodeSnapshotFooter, encodeSnapshotFooter } from '../../src/snapshot/snapshot-format.ts';
import { HASH_WORKER_CONTENT_BYTES_MIN } from '../../src/snapshot/snapshot-hasher.ts';
import { snapshotId, type SnapshotRecord, type SnapshotSource, type SnapshotStore } from '../../src/snapshot/snapshot-store.ts';
import type { Clock } from '../../src/util/clock.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';
import { temporaryDirectory } from '../native/temporary-directory.ts';
import { describeSnapshotStoreConformance } from './snapshot-store-conformance.ts';

const root = temporaryDirectory('snapshot');
let directories = 0;
function freshDirectory(): string {
  directories += 1;
  return join(root, `store-${directories}`);
}

const reopenOptions = new Map<SnapshotStore, { directory: string; blockBytesTarget: number; clock: Clock }>();

describeSnapshotStoreConformance('disk', {
  open: async ({ clock, blockBytesTarget }) => {
    const directory = freshDirectory();
    const store = await DiskSnapshotStore.open(directory, { clock, blockBytesTarget });
    reopenOptions.set(store, { directory, blockBytesTarget, clock });
    return store;
  },
  reopen: async (store) => {
    const options = reopenOptions.get(store);
    assert.ok(options !== undefined);
    await store.close();
    const reopened = await DiskSnapshotStore.open(options.directory, { clock: options.clock, blockBytesTarget: options.blockBytesTarget });
    reopenOptions.set(reopened, options);
    return reopened;
  },
});

const CONF = { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
const BLOCK = 8192;

function source(index: number, count: number): SnapshotSource {
  return {
    metadata: { index, term: 1, confState: CONF, revision: index, members: new Uint8Array(8) },
    async *records() {
      for (let at = 0; at < count; at += 200) {
        const batch: SnapshotRecord[] = [];
        for (let i = at; i < Math.min(count, at + 200); i += 1) batch.push({ key: new TextEncoder().encode(`k${String(i).padStart(6, '0')}`), value: new Uint8Array(40).fill(i & 0xff) });
        yield batch;
      }
    },
  };
}

function recordingLogger(): Logger & { warnings: { message: string; fields: Record<string, unknown> | undefined }[] } {
  const warnings: { message: string; fields: Record<string, unknown> | undefined }[] = [];
  return { warnings, debug() {}, info() {}, warn: (message, fields) => warnings.push({ message, fields }) };
}

function flipBit(path: string, offset: number, bit: number): void {
  const descriptor = openSync(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    readSync(descriptor, byte, 0, 1, offset);
    byte[0] = (byte[0] ?? 0) ^ (1 << bit);
    writeSync(descriptor, byte, 0, 1, offset);
  } finally {
    closeSync(descriptor);
  }
}

describe('DiskSnapshotStore', () => {
  for (const where of ['header', 'data', 'footer'] as const) {
    test(`a bit flipped in the ${where} of a .snap file: reopen sets it aside as .corrupt and reports it`, async () => {
      const directory = freshDirectory();
      const first = await DiskSnapshotStore.open(directory, { blockBytesTarget: BLOCK });
      const bad = await first.create(source(10, 2_000));
      const good = await first.create(source(11, 100));
      await first.close();
      const offset = where === 'header' ? 9 : where === 'footer' ? bad.byteLength - 4096 + 30 : 4096 + 5 * BLOCK + 1234;
      flipBit(bad.location, offset, 2);
      const logger = recordingLogger();
      const store = await DiskSnapshotStore.open(directory, { blockBytesTarget: BLOCK, logger });
      assert.deepEqual(store.list().map((info) => info.id), [good.id]);
      assert.ok(!existsSync(bad.location));
      const aside = `${bad.location}.corrupt`;
      assert.ok(existsSync(aside), 'renamed, not deleted');
      assert.equal(logger.warnings.length, 1);
      assert.equal(logger.warnings[0]?.fields?.['path'], bad.location);
      assert.equal(logger.warnings[0]?.fields?.['block'], where);
      await assert.rejects(store.open(bad.id), (error) => isStrataError(error));
      await assert.rejects(verifySnapshotFile(aside), (error) => {
        assert.ok(isStrataError(error, ErrorCode.CORRUPTION), String(error));
        assert.equal(error.details['location'], aside);
        assert.equal(error.details['block'], where);
        if (where === 'data') {
          assert.equal(error.details['blockSequence'], 5);
          assert.equal(error.details['offset'], 4096 + 5 * BLOCK);
          assert.match(error.message, new RegExp(`block 5 at offset ${4096 + 5 * BLOCK} fails its CRC32c`));
        }
        return true;
      });
      // A second damaged file of the same name does not replace the first one set aside.
      await store.close();
      writeFileSync(bad.location, 'not a snapshot');
      const again = await DiskSnapshotStore.open(directory, { blockBytesTarget: BLOCK, logger });
      assert.ok(existsSync(aside) && existsSync(`${aside}.1`));
      await again.close();
    });
  }

  test('large snapshots (hashed on the worker thread) round-trip, two at once, and a forged SHA-256 is caught at open', async () => {
    const directory = freshDirectory();
    const store = await DiskSnapshotStore.open(directory, { blockBytesTarget: 1 << 20 });
    const big = (index: number): SnapshotSource => ({
      metadata: { index, term: 1, confState: CONF, revision: index, members: new Uint8Array(0) },
      async *records() {
        for (let at = 0; at < 10_000; at += 500) {
          const batch: SnapshotRecord[] = [];
          for (let i = at; i < at + 500; i += 1) batch.push({ key: new TextEncoder().encode(`k${String(i).padStart(6, '0')}`), value: new Uint8Array(1024).fill((i + index) & 0xff) });
          yield batch;
        }
      },
    });
    // Two at once: one hashes on the worker, the other inline; both must be right.
    const [first, second] = await Promise.all([store.create(big(1)), store.create(big(2))]);
    assert.ok(first.byteLength > (HASH_WORKER_CONTENT_BYTES_MIN + 4096) && second.byteLength > (HASH_WORKER_CONTENT_BYTES_MIN + 4096));
    assert.notEqual(first.sha256, second.sha256);
    for (const info of [first, second]) {
      const reader = await store.open(info.id);
      let count = 0;
      for await (const batch of reader.records()) {
        for (const record of batch) assert.equal(record.value[0], (Number(new TextDecoder().decode(record.key).slice(1)) + info.index) & 0xff);
        count += batch.length;
      }
      assert.equal(count, 10_000);
      await reader.close();
    }
    await store.close();
    // The same file with a footer that passes its CRC but names another digest.
    const bytes = readFileSync(first.location);
    const footerOffset = bytes.byteLength - 4096;
    const footer = decodeSnapshotFooter(bytes.subarray(footerOffset), 'test', footerOffset);
    const wrong = footer.sha256.slice();
    wrong[31] = (wrong[31] ?? 0) ^ 0x80;
    writeFileSync(first.location, Buffer.concat([bytes.subarray(0, footerOffset), encodeSnapshotFooter({ ...footer, sha256: wrong })]));
    const logger = recordingLogger();
    const reopened = await DiskSnapshotStore.open(directory, { logger });
    assert.deepEqual(reopened.list().map((info) => info.id), [second.id]);
    assert.equal(logger.warnings[0]?.fields?.['block'], 'file');
    assert.match(String(logger.warnings[0]?.fields?.['reason']), /SHA-256/);
    await reopened.close();
  });

  test('a block that rots after listing is refused by records() and readBlocks(), naming file and block', async () => {
    const store = await DiskSnapshotStore.open(freshDirectory(), { blockBytesTarget: BLOCK });
    const info = await store.create(source(20, 3_000));
    const blockOffset = 4096 + 7 * BLOCK;
    flipBit(info.location, blockOffset + 100, 0);
    const reader = await store.open(info.id);
    let seen = 0;
    await assert.rejects(
      (async () => {
        for await (const batch of reader.records()) seen += batch.length;
      })(),
      (error) => {
        assert.ok(isStrataError(error, ErrorCode.CORRUPTION));
        assert.equal(error.details['location'], info.location);
        assert.equal(error.details['blockSequence'], 7);
        assert.equal(error.details['offset'], blockOffset);
        return true;
      },
    );
    assert.ok(seen > 0, 'the blocks before it were read');
    await assert.rejects(reader.readBlocks(4096, 1 << 20), (error) => isStrataError(error, ErrorCode.CORRUPTION) && error.details['offset'] === blockOffset);
    assert.equal((await reader.readBlocks(4096, 2 * BLOCK)).byteLength, 2 * BLOCK, 'the good blocks still read');
    await reader.close();
    await store.close();
  });

  test('open removes temporaries of creates and receives, and leaves other files', async () => {
    const directory = freshDirectory();
    mkdirSync(directory, { recursive: true });
    const id = snapshotId(1, 5);
    writeFileSync(join(directory, `.${id}.snap.0123456789ab.tmp`), 'half');
    writeFileSync(join(directory, `.receive-${id}.part`), 'half');
    writeFileSync(join(directory, 'notes.txt'), 'kept');
    const store = await DiskSnapshotStore.open(directory);
    assert.deepEqual(readdirSync(directory).sort(), ['notes.txt']);
    assert.deepEqual(store.list(), []);
    await store.close();
    await assert.rejects(store.create(source(1, 1)), (error) => isStrataError(error, ErrorCode.STOPPED));
  });

  test('a create stopped by close() rejects with STOPPED and leaves no temporary', async () => {
    const directory = freshDirectory();
    const store = await DiskSnapshotStore.open(directory, { blockBytesTarget: BLOCK });
    let release: () => void = () => undefined;
    const creating = store.create({
      metadata: source(1, 0).metadata,
      async *records() {
        yield [{ key: Uint8Array.of(1), value: new Uint8Array(10_000) }];
        await new Promise<void>((resolve) => (release = resolve));
      },
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await store.close();
    release();
    await assert.rejects(creating, (error) => isStrataError(error, ErrorCode.STOPPED));
    assert.deepEqual(readdirSync(directory), []);
  });

  test('SIGKILL during creates: reopening lists only whole, verified snapshots, keeps the last acknowledged one, leaves no temporary', async () => {
    const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
    const random = new SeededRandom(seed);
    const directory = freshDirectory();
    const child = join(fileURLToPath(new URL('.', import.meta.url)), 'create-child.ts');
    const KILLS = 4;
    let nextIndex = 1;
    let acknowledged: { id: string; sha256: string } | undefined;
    // Kills that found a create's temporary on disk: the test is about those.
    let killsInsideCreate = 0;
    try {
      for (let run = 0; run < KILLS; run += 1) {
        const killAfterMs = random.intBelow(150);
        const created = await runUntilKilled(child, directory, nextIndex, seed + run, killAfterMs);
        assert.ok(created.length > 0, `run ${run}: the child created nothing before the kill`);
        acknowledged = created[created.length - 1];
        nextIndex += created.length + 1;
        if (readdirSync(directory).some((name) => name.startsWith('.'))) killsInsideCreate += 1;
        const logger = recordingLogger();
        const store = await DiskSnapshotStore.open(directory, { logger });
        assert.deepEqual(logger.warnings, [], 'a killed process leaves nothing damaged');
        const listed = store.list();
        assert.ok(acknowledged !== undefined);
        const last = store.get(acknowledged.id);
        assert.ok(last !== undefined, `run ${run}: the last acknowledged snapshot ${acknowledged.id} is listed`);
        assert.equal(last.sha256, acknowledged.sha256);
        for (const info of listed) assert.equal((await verifySnapshotFile(info.location)).footer.sha256.byteLength, 32);
        const reader = await store.open(acknowledged.id);
        let count = 0;
        for await (const batch of reader.records()) count += batch.length;
        assert.equal(count, last.keyCount);
        await reader.close();
        await store.close();
        assert.deepEqual(readdirSync(directory).filter((name) => name.startsWith('.')), [], 'no temporary is left');
      }
      assert.ok(killsInsideCreate > 0, 'at least one kill landed inside a create');
    } catch (error) {
      console.error(`snapshot kill test failed with seed ${seed}; replay with STRATAKV_SEED=${seed}`);
      throw error;
    }
  });
});

const CHILD_WAIT_MS_MAX = 20_000;

// runUntilKilled starts the child and kills it `killAfterMs` after its first acknowledged
// create (start-up time varies a lot), returning what it acknowledged.
function runUntilKilled(child: string, directory: string, firstIndex: number, seed: number, killAfterMs: number): Promise<{ id: string; sha256: string }[]> {
  return new Promise((resolve, reject) => {
    const process_ = spawn(process.execPath, [child, directory, String(firstIndex), String(seed)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const created: { id: string; sha256: string }[] = [];
    let buffered = '';
    let killTimer: NodeJS.Timeout | undefined;
    process_.stdout.setEncoding('utf8');
    process_.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const match = /^created (\S+) ([0-9a-f]{64})$/.exec(line);
        if (match?.[1] !== undefined && match[2] !== undefined) created.push({ id: match[1], sha256: match[2] });
        if (killTimer === undefined) killTimer = setTimeout(() => process_.kill('SIGKILL'), killAfterMs);
      }
    });
    const watchdog = setTimeout(() => process_.kill('SIGKILL'), CHILD_WAIT_MS_MAX);
    process_.on('error', reject);
    process_.on('close', () => {
      clearTimeout(watchdog);
      if (killTimer !== undefined) clearTimeout(killTimer);
      resolve(created);
    });
  });
}

// Aligned file I/O: O_DIRECT where the filesystem allows it (and saying so), whole-block
// rules, bounce buffers for unaligned memory, close() waiting for running calls, errors,
// and the event loop staying free while a large write runs on the pool.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { isStrataError } from '../../src/util/errors.ts';
import { AlignedFile, allocateAligned, DIRECT_IO_ALIGNMENT_BYTES, syncDirectory } from '../../src/native/index.ts';
import { temporaryDirectory } from './temporary-directory.ts';

const directory = temporaryDirectory('aligned-file');
const BLOCK = DIRECT_IO_ALIGNMENT_BYTES;

function filled(length: number, seed: number): Uint8Array {
  const { bytes } = allocateAligned(length);
  for (let index = 0; index < length; index++) bytes[index] = (index * 131 + seed) & 0xff;
  return bytes;
}

describe('AlignedFile', () => {
  for (const direct of [true, false]) {
    it(`writes and reads whole blocks at offsets (direct: ${direct})`, async () => {
      const path = join(directory, `round-trip-${direct}.bin`);
      const file = await AlignedFile.open(path, { write: true, create: true, direct });
      if (!direct) assert.equal(file.ioMode, 'buffered');
      // Whatever the filesystem allowed, the mode is one of the two and says so.
      assert.ok(file.ioMode === 'direct' || file.ioMode === 'buffered');
      const first = filled(4 * BLOCK, 1);
      const second = filled(2 * BLOCK, 2);
      await Promise.all([file.writeAt(first, 0), file.writeAt(second, 4 * BLOCK)]);
      await file.datasync();
      const back = allocateAligned(8 * BLOCK).bytes;
      assert.equal(await file.readAt(back, 0), 6 * BLOCK, 'a read past the end returns what there was');
      assert.deepEqual(back.subarray(0, 4 * BLOCK), first);
      assert.deepEqual(back.subarray(4 * BLOCK, 6 * BLOCK), second);
      await file.truncate(5 * BLOCK + 123);
      await file.close();
      assert.equal(statSync(path).size, 5 * BLOCK + 123);
    });
  }

  it('uses O_DIRECT on the disk holding the temporary directory when it can', async (context) => {
    const file = await AlignedFile.open(join(directory, 'mode.bin'), { write: true, create: true, direct: true });
    await file.close();
    if (file.ioMode !== 'direct') context.diagnostic(`filesystem of ${directory} refused O_DIRECT: buffered I/O was used`);
  });

  it('accepts memory that is not page-aligned (through an aligned bounce buffer)', async () => {
    const path = join(directory, 'unaligned-memory.bin');
    const file = await AlignedFile.open(path, { write: true, create: true, direct: true });
    const backing = new Uint8Array(3 * BLOCK + 1);
    const source = backing.subarray(1); // one byte off any alignment
    source.fill(0x5a);
    await file.writeAt(source, BLOCK);
    const target = new Uint8Array(3 * BLOCK + 1).subarray(1);
    assert.equal(await file.readAt(target, BLOCK), 3 * BLOCK);
    assert.ok(target.every((byte) => byte === 0x5a));
    await file.close();
    assert.equal(readFileSync(path).length, 4 * BLOCK);
  });

  it('reserves disk blocks with allocate(), which also sets the length', async (context) => {
    const path = join(directory, 'allocated.bin');
    const file = await AlignedFile.open(path, { write: true, create: true, direct: true });
    const allocated = await file.allocate(64 * BLOCK);
    if (allocated) assert.equal(statSync(path).size, 64 * BLOCK);
    else context.diagnostic(`filesystem of ${directory} cannot preallocate`);
    await file.writeAt(filled(BLOCK, 3), 10 * BLOCK);
    await assert.rejects(file.allocate(0), (error) => isStrataError(error, 'INVALID_ARGUMENT'));
    await file.close();
  });

  it('refuses offsets and lengths that are not whole blocks with INVALID_ARGUMENT', async () => {
    const file = await AlignedFile.open(join(directory, 'rules.bin'), { write: true, create: true, direct: false });
    const invalid = (error: unknown): boolean => isStrataError(error, 'INVALID_ARGUMENT');
    await assert.rejects(file.writeAt(allocateAligned(BLOCK).bytes, 1), invalid);
    await assert.rejects(file.writeAt(allocateAligned(BLOCK + 1).bytes, 0), invalid);
    await assert.rejects(file.readAt(allocateAligned(100).bytes, 0), invalid);
    await assert.rejects(file.truncate(-1), invalid);
    await file.close();
  });

  it('waits for running calls before closing the descriptor', async () => {
    const file = await AlignedFile.open(join(directory, 'close-waits.bin'), { write: true, create: true, direct: true });
    const settled: number[] = [];
    const writes = Array.from({ length: 8 }, (_, index) =>
      file.writeAt(filled(16 * BLOCK, index), index * 16 * BLOCK).then(() => settled.push(index)),
    );
    await file.close();
    assert.equal(settled.length, 8, 'every write settled before close() resolved');
    await Promise.all(writes);
    await file.close(); // twice is harmless
    assert.equal(statSync(join(directory, 'close-waits.bin')).size, 8 * 16 * BLOCK);
  });

  it('keeps the event loop serving while a large write runs', async () => {
    const file = await AlignedFile.open(join(directory, 'large.bin'), { write: true, create: true, direct: true });
    const data = filled(32 << 20, 9);
    let finished = false;
    const write = file.writeAt(data, 0).then(() => file.datasync()).then(() => (finished = true));
    let turns = 0;
    // Bounded: at most 3 turns of the event loop are looked at.
    while (turns < 3) {
      await new Promise((resolve) => setImmediate(resolve));
      turns++;
    }
    assert.equal(finished, false, 'the event loop turned while 32 MiB were being written and synced');
    await write;
    await file.close();
  });

  it('reports system errors as IO_ERROR with the system code', async () => {
    await assert.rejects(
      AlignedFile.open(join(directory, 'missing', 'x.bin')),
      (error) => isStrataError(error, 'IO_ERROR') && error.details.systemCode === 'ENOENT',
    );
    const path = join(directory, 'exclusive.bin');
    const file = await AlignedFile.open(path, { write: true, create: true, exclusive: true });
    await file.close();
    await assert.rejects(
      AlignedFile.open(path, { write: true, create: true, exclusive: true }),
      (error) => isStrataError(error, 'IO_ERROR') && error.details.systemCode === 'EEXIST',
    );
    await syncDirectory(directory);
    await assert.rejects(
      syncDirectory(join(directory, 'missing')),
      (error) => isStrataError(error, 'IO_ERROR') && error.details.systemCode === 'ENOENT',
    );
  });
});

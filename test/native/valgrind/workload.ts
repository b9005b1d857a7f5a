// The addon's work under valgrind (run by test/native/valgrind/run.sh, not by the test
// runner): every entry point, with bounded sizes, so memcheck sees each native path once
// or a few times. It checks results as it goes and exits non-zero on a wrong one.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  AlignedFile,
  AtomicFileWriter,
  allocateAligned,
  crc32c,
  crc32cImplementations,
  crc32cWith,
  mapFile,
  nativeMemoryStats,
} from '../../../src/native/index.ts';
import { setExternalBuffersAllowedForTesting } from '../../../src/native/testing.ts';

const GC_ROUNDS_MAX = 20;
const gc = (globalThis as { gc?: () => void }).gc;
assert.ok(gc !== undefined, 'run with --expose-gc');

const directory = mkdtempSync(join(tmpdir(), 'stratakv-valgrind-'));
try {
  // CRC32c: every kernel valgrind's CPU model offers, over lengths that reach every stage.
  const data = Uint8Array.from({ length: 80_000 }, (_, index) => (index * 7) & 0xff);
  for (const implementation of crc32cImplementations()) {
    for (const length of [0, 1, 7, 63, 255, 256, 1000, 24_577, 79_000]) {
      assert.equal(crc32cWith(implementation, data.subarray(3, 3 + length)), crc32c(data.subarray(3, 3 + length)));
    }
  }
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);

  // Aligned buffers, with and without external memory; mappings, closed and dropped.
  const path = join(directory, 'mapped.bin');
  writeFileSync(path, data.subarray(0, 3 * 4096));
  for (const external of [true, false]) {
    setExternalBuffersAllowedForTesting(external);
    for (let index = 0; index < 8; index++) allocateAligned(4096 * (index + 1)).bytes.fill(index);
    const closed = mapFile(path);
    assert.equal(closed.bytes[5], data[5]);
    closed.close();
    assert.equal(mapFile(path).bytes[6], data[6]); // dropped unclosed: the finalizer unmaps
  }
  setExternalBuffersAllowedForTesting(true);

  // File I/O: direct and buffered, unaligned memory through the bounce buffer, a pinned mapping.
  const file = await AlignedFile.open(join(directory, 'file.bin'), { write: true, create: true, direct: true });
  assert.equal(await file.allocate(8 * 4096), true);
  await file.writeAt(allocateAligned(8192).bytes.fill(1), 0);
  await file.writeAt(new Uint8Array(4097).subarray(1), 8192);
  const mapping = mapFile(path);
  const pinnedWrite = file.writeAt(mapping.bytes, 3 * 4096);
  mapping.close();
  await pinnedWrite;
  await file.datasync();
  const back = new Uint8Array(6 * 4096);
  assert.equal(await file.readAt(back, 0), 6 * 4096);
  await file.truncate(5 * 4096);
  await file.close();
  const writer = await AtomicFileWriter.create(join(directory, 'atomic.bin'));
  await writer.writeAt(allocateAligned(4096).bytes, 0);
  await writer.commit(100);
  await assert.rejects(AlignedFile.open(join(directory, 'missing', 'x')));

  for (let round = 0; round < GC_ROUNDS_MAX && nativeMemoryStats().regions > 0; round++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(nativeMemoryStats().regions, 0, 'every region was returned');
  console.log('valgrind workload: ok');
} finally {
  rmSync(directory, { recursive: true, force: true });
}

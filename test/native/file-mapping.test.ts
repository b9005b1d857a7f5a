// Read-only file mappings: content, close() that leaves no dangling view, private stores,
// errors, the copying fallback, and a mapping pinned by a native write running on it.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { AssertionFailure } from '../../src/util/assert.ts';
import { isStrataError } from '../../src/util/errors.ts';
import { AlignedFile, mapFile, nativeMemoryStats } from '../../src/native/index.ts';
import { setExternalBuffersAllowedForTesting } from '../../src/native/testing.ts';
import { temporaryDirectory } from './temporary-directory.ts';

const directory = temporaryDirectory('mapping');

function fileOf(name: string, content: Uint8Array): string {
  const path = join(directory, name);
  writeFileSync(path, content);
  return path;
}

const pattern = (length: number): Uint8Array => Uint8Array.from({ length }, (_, index) => (index * 31 + 7) & 0xff);

describe('mapFile', () => {
  it('maps the file content and detaches every view on close()', () => {
    const content = pattern(10_000);
    const mapping = mapFile(fileOf('content.bin', content));
    assert.equal(mapping.external, true);
    assert.equal(mapping.byteLength, content.length);
    assert.deepEqual(mapping.bytes, content);
    const view = mapping.bytes.subarray(100, 200);
    const before = nativeMemoryStats();
    mapping.close();
    assert.equal(mapping.closed, true);
    assert.equal(view.byteLength, 0, 'a view over a closed mapping is empty, not dangling');
    assert.equal(view[0], undefined);
    assert.equal(nativeMemoryStats().regions, before.regions - 1, 'close() unmapped at once');
    assert.throws(() => mapping.bytes, AssertionFailure);
    mapping.close(); // twice is harmless
  });

  it('keeps stores into the mapping private to the process', () => {
    const content = pattern(4096);
    const path = fileOf('private.bin', content);
    const mapping = mapFile(path);
    mapping.bytes.fill(0);
    assert.deepEqual(new Uint8Array(readFileSync(path)), content);
    mapping.close();
  });

  it('maps an empty file', () => {
    const mapping = mapFile(fileOf('empty.bin', new Uint8Array(0)));
    assert.equal(mapping.byteLength, 0);
    mapping.close();
  });

  it('reports a missing file or a directory as IO_ERROR with the system code', () => {
    assert.throws(
      () => mapFile(join(directory, 'missing.bin')),
      (error) => isStrataError(error, 'IO_ERROR') && error.details.systemCode === 'ENOENT',
    );
    assert.throws(() => mapFile(directory), (error) => isStrataError(error, 'IO_ERROR') && error.details.systemCode === 'EISDIR');
  });

  it('copies the file when external buffers are refused, and still detaches on close()', () => {
    const content = pattern(5000);
    const path = fileOf('copy.bin', content);
    setExternalBuffersAllowedForTesting(false);
    try {
      const mapping = mapFile(path);
      assert.equal(mapping.external, false);
      assert.deepEqual(mapping.bytes, content);
      const view = mapping.bytes;
      mapping.close();
      assert.equal(view.byteLength, 0);
    } finally {
      setExternalBuffersAllowedForTesting(true);
    }
  });

  it('keeps the memory of a closed mapping until a native write reading it finishes', async () => {
    const content = pattern(64 * 4096);
    const mapping = mapFile(fileOf('source.bin', content));
    const file = await AlignedFile.open(join(directory, 'copy-of-source.bin'), { write: true, create: true });
    const before = nativeMemoryStats();
    const write = file.writeAt(mapping.bytes, 0);
    mapping.close(); // detached for JavaScript; the write still holds the pages
    const during = nativeMemoryStats();
    assert.equal(during.regions, before.regions, 'pinned memory is not returned yet');
    assert.equal(during.pinned, before.pinned + 1);
    await write;
    assert.equal(nativeMemoryStats().regions, before.regions - 1, 'returned once the write settled');
    await file.close();
    assert.deepEqual(new Uint8Array(readFileSync(join(directory, 'copy-of-source.bin'))), content);
  });
});

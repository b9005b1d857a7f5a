// Page-aligned buffers: alignment, zero fill, bounds, the copying fallback used under a V8
// sandbox, and finalizers that return the memory (checked in a child run with --expose-gc).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

import { isStrataError } from '../../src/util/errors.ts';
import {
  ALIGNED_BUFFER_BYTES_MAX,
  DIRECT_IO_ALIGNMENT_BYTES,
  alignmentOffset,
  allocateAligned,
  nativeMemoryStats,
  pageBytes,
} from '../../src/native/index.ts';
import { setExternalBuffersAllowedForTesting } from '../../src/native/testing.ts';

describe('allocateAligned', () => {
  it('returns zeroed, page-aligned memory of the asked length', () => {
    assert.ok(pageBytes() >= DIRECT_IO_ALIGNMENT_BYTES);
    assert.equal(pageBytes() % DIRECT_IO_ALIGNMENT_BYTES, 0);
    for (const length of [1, 100, 4095, 4096, 4097, 65_536, 1_000_003]) {
      const { bytes, external } = allocateAligned(length);
      assert.equal(external, true);
      assert.equal(bytes.byteLength, length);
      assert.equal(alignmentOffset(bytes, pageBytes()), 0, `length ${length}`);
      assert.ok(bytes.every((byte) => byte === 0));
      bytes.fill(0xab); // the whole length is writable
    }
  });

  it('counts its memory while JavaScript holds it', () => {
    const before = nativeMemoryStats();
    const { bytes } = allocateAligned(8192);
    const during = nativeMemoryStats();
    assert.equal(during.regions, before.regions + 1);
    assert.equal(during.bytes, before.bytes + 8192);
    assert.equal(bytes.byteLength, 8192);
  });

  it('refuses lengths out of bounds with INVALID_ARGUMENT', () => {
    for (const length of [-1, 1.5, ALIGNED_BUFFER_BYTES_MAX + 1, Number.NaN]) {
      assert.throws(() => allocateAligned(length), (error) => isStrataError(error, 'INVALID_ARGUMENT'));
    }
    assert.equal(allocateAligned(0).bytes.byteLength, 0);
  });

  it('falls back to an ordinary copy when external buffers are refused', () => {
    setExternalBuffersAllowedForTesting(false);
    try {
      const before = nativeMemoryStats();
      const { bytes, external } = allocateAligned(10_000);
      assert.equal(external, false);
      assert.equal(bytes.byteLength, 10_000);
      assert.ok(bytes.every((byte) => byte === 0));
      assert.deepEqual(nativeMemoryStats(), before);
    } finally {
      setExternalBuffersAllowedForTesting(true);
    }
  });

  it('runs its finalizers: a child with --expose-gc gets all memory back', () => {
    const child = spawnSync(process.execPath, ['--expose-gc', 'test/native/fixtures/finalizers.ts'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(child.status, 0, child.stderr);
    const report = JSON.parse(child.stdout.trim().split('\n').at(-1) ?? '{}') as {
      before: { regions: number };
      during: { regions: number };
      after: { regions: number; bytes: number };
    };
    assert.equal(report.during.regions, report.before.regions + 64 + 4, 'buffers and mappings were held');
    assert.equal(report.after.regions, report.before.regions, 'every finalizer ran and returned its memory');
  });
});

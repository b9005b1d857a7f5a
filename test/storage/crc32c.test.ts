// CRC32c against published check values (RFC 3720 appendix B.4) and the LevelDB mask.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32c, maskCrc32c, unmaskCrc32c } from '../../src/native/index.ts';

test('crc32c matches the standard check value and RFC 3720 vectors', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(crc32c(ascending), 0x46dd794e);
});

test('crc32c continues from an initial value', () => {
  const data = new TextEncoder().encode('hello, stratakv');
  assert.equal(crc32c(data.subarray(5), crc32c(data.subarray(0, 5))), crc32c(data));
});

test('maskCrc32c is inverted by unmaskCrc32c and changes the value', () => {
  for (const crc of [0, 1, 0xe3069283, 0xffffffff, 0x80000000]) {
    assert.equal(unmaskCrc32c(maskCrc32c(crc)), crc);
    assert.notEqual(maskCrc32c(crc), crc);
  }
});

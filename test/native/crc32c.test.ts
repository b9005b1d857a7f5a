// CRC32c through the addon: every kernel this CPU runs against the standard check value,
// the RFC 3720 (iSCSI) test vectors, and a plain JavaScript reference on random buffers of
// every length 0..4096 at unaligned offsets; chaining over arbitrary splits; LevelDB masks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { AssertionFailure } from '../../src/util/assert.ts';
import { SeededRandom } from '../../src/util/random.ts';
import {
  crc32c,
  crc32cImplementation,
  crc32cImplementations,
  crc32cWith,
  maskCrc32c,
  unmaskCrc32c,
  type Crc32cImplementation,
} from '../../src/native/index.ts';

// The reference: bit-at-a-time over the reflected polynomial, as written in RFC 3720 B.4.
function referenceCrc32c(data: Uint8Array, seed = 0): number {
  let crc = ~seed >>> 0;
  for (const byte of data) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return ~crc >>> 0;
}

const SEED = Number(process.env.STRATAKV_TEST_SEED ?? 0x5eed_c3c) >>> 0;

function randomBytes(random: SeededRandom, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let index = 0; index < length; index++) bytes[index] = random.intBelow(256);
  return bytes;
}

function withSeed(check: () => void): void {
  try {
    check();
  } catch (error) {
    console.error(`crc32c test failed with seed ${SEED} (rerun with STRATAKV_TEST_SEED=${SEED})`);
    throw error;
  }
}

const implementations = crc32cImplementations();

describe('crc32c', () => {
  it('runs the table kernel everywhere and picks the fastest kernel as its default', () => {
    assert.ok(implementations.includes('table'));
    // The list runs slowest first, and each CPU runs kernels of one architecture only.
    assert.equal(crc32cImplementation(), implementations.at(-1));
    if (process.arch === 'x64') assert.ok(implementations.includes('sse42'), 'every x86-64 CPU in use has SSE4.2');
  });

  it('gives the standard check value e3069283 for "123456789"', () => {
    const check = new TextEncoder().encode('123456789');
    assert.equal(crc32c(check), 0xe3069283);
    for (const implementation of implementations) assert.equal(crc32cWith(implementation, check), 0xe3069283, implementation);
  });

  it('matches the RFC 3720 B.4 test vectors', () => {
    const ascending = Uint8Array.from({ length: 32 }, (_, index) => index);
    const descending = Uint8Array.from({ length: 32 }, (_, index) => 31 - index);
    // prettier-ignore
    const readCommand = Uint8Array.from([
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
      0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]);
    const vectors: [string, Uint8Array, number][] = [
      ['32 bytes of zeros', new Uint8Array(32), 0x8a9136aa],
      ['32 bytes of ones', new Uint8Array(32).fill(0xff), 0x62a8ab43],
      ['32 ascending bytes', ascending, 0x46dd794e],
      ['32 descending bytes', descending, 0x113fdb5c],
      ['an iSCSI read command', readCommand, 0xd9963a56],
    ];
    for (const [name, data, expected] of vectors) {
      assert.equal(referenceCrc32c(data), expected, `reference: ${name}`);
      for (const implementation of implementations) assert.equal(crc32cWith(implementation, data), expected, `${implementation}: ${name}`);
    }
  });

  it('matches the reference on random buffers of every length 0..4096 at unaligned offsets', () => {
    withSeed(() => {
      const random = new SeededRandom(SEED);
      const pool = randomBytes(random, 4096 + 64);
      for (let length = 0; length <= 4096; length++) {
        const offset = random.intBelow(64);
        const view = pool.subarray(offset, offset + length);
        const expected = referenceCrc32c(view);
        for (const implementation of implementations) {
          assert.equal(crc32cWith(implementation, view), expected, `${implementation}, length ${length}, offset ${offset}`);
        }
      }
    });
  });

  it('matches the reference on long buffers that reach every kernel stage', () => {
    withSeed(() => {
      const random = new SeededRandom(SEED ^ 0x1234);
      // Past 3 × 8192 bytes the three-stream kernel takes long slices; the folding kernel
      // crosses its 256-byte main loop, 64-byte and 16-byte tails at every length mod 256.
      const pool = randomBytes(random, 3 * 8192 * 3 + 4096);
      const lengths = [24_576, 24_577, 24_576 + 767, 49_152 + 255, 3 * 8192 * 3, 65_536 + 129];
      for (let round = 0; round < 24; round++) lengths.push(random.intBelow(pool.length - 64));
      for (const length of lengths) {
        const offset = random.intBelow(64);
        const view = pool.subarray(offset, offset + length);
        const expected = referenceCrc32c(view);
        for (const implementation of implementations) {
          assert.equal(crc32cWith(implementation, view), expected, `${implementation}, length ${length}, offset ${offset}`);
        }
      }
    });
  });

  it('chains over arbitrary splits: crc32c(b, crc32c(a)) === crc32c(a ‖ b)', () => {
    withSeed(() => {
      const random = new SeededRandom(SEED ^ 0xc4a1);
      const data = randomBytes(random, 20_000);
      const whole = referenceCrc32c(data);
      for (let round = 0; round < 200; round++) {
        const implementation: Crc32cImplementation = random.pick(implementations);
        let crc = 0;
        let position = 0;
        const pieces = 1 + random.intBelow(8);
        for (let piece = 0; piece < pieces && position < data.length; piece++) {
          const end = piece === pieces - 1 ? data.length : position + random.intBelow(data.length - position + 1);
          crc = crc32cWith(implementation, data.subarray(position, end), crc);
          position = end;
        }
        if (position < data.length) crc = crc32c(data.subarray(position), crc);
        assert.equal(crc, whole, `${implementation}, round ${round}`);
      }
    });
  });

  it('masks and unmasks the LevelDB way', () => {
    assert.equal(maskCrc32c(0), 0xa282ead8);
    const random = new SeededRandom(SEED);
    for (let round = 0; round < 1000; round++) {
      const crc = random.nextUint32();
      assert.equal(unmaskCrc32c(maskCrc32c(crc)), crc);
      if (crc !== 0) assert.notEqual(maskCrc32c(crc), crc);
    }
  });

  it('refuses a seed that is not an unsigned 32-bit integer', () => {
    const data = new Uint8Array(4);
    assert.throws(() => crc32c(data, -1), AssertionFailure);
    assert.throws(() => crc32c(data, 2 ** 32), AssertionFailure);
    assert.throws(() => crc32c(data, 1.5), AssertionFailure);
  });
});

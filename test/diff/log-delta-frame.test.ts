// The log-delta stream's framing (src/diff/log-delta-frame.ts): chunks seal and verify, the
// entries and snapshot payloads round-trip, and damage of any kind is refused with CORRUPTION
// naming the chunk: a bit flipped in the payload, a header field altered (the CRC covers the
// position too), payloads that do not hold what their range says.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { LogChunk } from '../../src/diff/index.ts';
import { ChunkKind, decodeEntries, decodeSnapshotMeta, encodeEntries, encodeSnapshotMeta, sealChunk, verifyChunk } from '../../src/diff/index.ts';
import type { Entry } from '../../src/raft/index.ts';
import { EntryType } from '../../src/raft/index.ts';
import { isStrataError } from '../../src/util/index.ts';

const entries: Entry[] = [
  { index: 41, term: 3, type: EntryType.Normal, data: new Uint8Array(0) },
  { index: 42, term: 3, type: EntryType.Normal, data: Uint8Array.from([1, 2, 3, 4, 5]) },
  { index: 43, term: 4, type: EntryType.ConfChange, data: new TextEncoder().encode('{"v":1}') },
  { index: 44, term: 2 ** 40, type: EntryType.Normal, data: new Uint8Array(70_000).fill(7) },
];

function entriesChunk(sequence = 5): LogChunk {
  return sealChunk({ sequence, kind: ChunkKind.Entries, firstIndex: 41, lastIndex: 44, snapshotOffset: 0, commitIndex: 50, payload: encodeEntries(entries) });
}

// isCorruptionOf: CORRUPTION whose details and message name chunk `sequence`.
function isCorruptionOf(sequence: number): (error: unknown) => boolean {
  return (error) => isStrataError(error, 'CORRUPTION') && error.details['sequence'] === sequence && error.message.includes(`chunk ${sequence} `);
}

test('an entries chunk seals, verifies and decodes to the same entries (views of the payload)', () => {
  const chunk = entriesChunk();
  verifyChunk(chunk);
  const decoded = decodeEntries(chunk);
  assert.deepEqual(
    decoded.map((entry) => ({ ...entry, data: Buffer.from(entry.data).toString('hex') })),
    entries.map((entry) => ({ ...entry, data: Buffer.from(entry.data).toString('hex') })),
  );
  assert.equal(decoded[3]?.data.buffer, chunk.payload.buffer, 'entry data are views of the payload');
});

test('a bit flipped anywhere in the payload is refused with CORRUPTION naming the chunk', () => {
  const chunk = entriesChunk(9);
  for (const byte of [0, 17, 30, chunk.payload.byteLength - 1]) {
    for (const bit of [0, 7]) {
      const payload = chunk.payload.slice();
      payload[byte] = (payload[byte] ?? 0) ^ (1 << bit);
      assert.throws(() => verifyChunk({ ...chunk, payload }), isCorruptionOf(9), `byte ${byte} bit ${bit}`);
    }
  }
});

test('the CRC covers the position: a renumbered chunk, a changed range, offset or commit index fail it', () => {
  const chunk = entriesChunk(9);
  for (const altered of [{ sequence: 10 }, { firstIndex: 40 }, { lastIndex: 45 }, { snapshotOffset: 4096 }, { commitIndex: 51 }, { kind: ChunkKind.Heartbeat }] as const) {
    const sequence = 'sequence' in altered ? altered.sequence : 9;
    assert.throws(() => verifyChunk({ ...chunk, ...altered }), isCorruptionOf(sequence), JSON.stringify(altered));
  }
  assert.throws(() => verifyChunk({ ...chunk, crc32c: chunk.crc32c ^ 1 }), isCorruptionOf(9));
});

test('an entries payload that does not hold exactly its range is CORRUPTION (with a valid CRC)', () => {
  const payload = encodeEntries(entries);
  const reseal = (fields: Partial<LogChunk>): LogChunk => sealChunk({ sequence: 2, kind: ChunkKind.Entries, firstIndex: 41, lastIndex: 44, snapshotOffset: 0, commitIndex: 44, payload, ...fields });
  assert.throws(() => decodeEntries(reseal({ firstIndex: 40 })), isCorruptionOf(2), 'starts at another index');
  assert.throws(() => decodeEntries(reseal({ lastIndex: 45 })), isCorruptionOf(2), 'ends short of its last index');
  assert.throws(() => decodeEntries(reseal({ payload: payload.subarray(0, payload.byteLength - 1) })), isCorruptionOf(2), 'truncated data');
  assert.throws(() => decodeEntries(reseal({ payload: payload.subarray(0, 10) })), isCorruptionOf(2), 'truncated header');
  assert.throws(() => decodeEntries(reseal({ payload: new Uint8Array(0), lastIndex: 41 })), isCorruptionOf(2), 'empty');
  const badType = payload.slice();
  badType[16] = 9;
  assert.throws(() => decodeEntries(reseal({ payload: badType })), isCorruptionOf(2), 'unknown entry type');
});

test('snapshot metadata round-trips and must match the chunk it is in', () => {
  const meta = { id: '0000000000000003-0000000000000064', index: 100, term: 3, revision: 57, byteLength: 3 * 4096, sha256: 'ab'.repeat(32) };
  const chunk = sealChunk({ sequence: 1, kind: ChunkKind.SnapshotBegin, firstIndex: 100, lastIndex: 100, snapshotOffset: 0, commitIndex: 120, payload: encodeSnapshotMeta(meta) });
  verifyChunk(chunk);
  assert.deepEqual(decodeSnapshotMeta(chunk), meta);
  const elsewhere = sealChunk({ ...chunk, firstIndex: 99, lastIndex: 99 });
  assert.throws(() => decodeSnapshotMeta(elsewhere), isCorruptionOf(1));
  const short = sealChunk({ ...chunk, payload: chunk.payload.subarray(0, 40) });
  assert.throws(() => decodeSnapshotMeta(short), isCorruptionOf(1));
});

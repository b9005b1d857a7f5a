// The mirror state in a snapshot's footer (format 4): written only when there is one (other
// files keep their format, so older code still reads them), short states as they are and
// long ones deflated, read back whole through the format and a store; it fits beside the
// largest member table the journal allows; and a footer that carries it wrongly is CORRUPTION.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { deflateRawSync } from 'node:zlib';

import { Packr, Unpackr } from 'msgpackr';

import { crc32c, maskCrc32c } from '../../src/native/index.ts';
import { MemorySnapshotStore } from '../../src/snapshot/memory-snapshot-store.ts';
import {
  SNAPSHOT_CONF_NODES_MAX,
  SNAPSHOT_FORMAT_VERSION,
  SNAPSHOT_FORMAT_VERSION_DEFLATED_MEMBERS,
  SNAPSHOT_FORMAT_VERSION_MIRROR,
  SNAPSHOT_MEMBERS_INLINE_BYTES_MAX,
  decodeSnapshotFooter,
  encodeSnapshot,
  encodeSnapshotFooter,
  verifySnapshotBytes,
} from '../../src/snapshot/snapshot-format.ts';
import type { SnapshotFileMetadata, SnapshotRecord } from '../../src/snapshot/snapshot-store.ts';
import { MIRROR_STATE_BYTES_MAX, MIRROR_STATE_FOOTER_BYTES_MAX } from '../../src/storage/kv-types.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';

const METADATA: SnapshotFileMetadata = {
  index: 77,
  term: 5,
  confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false },
  revision: 900,
  members: Uint8Array.of(1, 2, 3),
};
const RECORDS: SnapshotRecord[] = Array.from({ length: 20 }, (_, i) => ({ key: new TextEncoder().encode(`k${String(i).padStart(3, '0')}`), value: Uint8Array.of(i) }));
const copyState = (endpoints: number): Uint8Array =>
  new TextEncoder().encode(JSON.stringify({ format: 1, phase: 'copying', source: { kind: 'etcd', endpoints: Array.from({ length: endpoints }, (_, i) => `etcd-${i}.example.internal:2379`) }, appliedRevision: 0 }));

const footerOf = (bytes: Uint8Array): Uint8Array => bytes.subarray(bytes.byteLength - 4096);
const versionOf = (bytes: Uint8Array): number => new DataView(bytes.buffer, bytes.byteOffset + bytes.byteLength - 4096 + 8, 4).getUint32(0, true);
const mapOf = (bytes: Uint8Array): Record<string, unknown> => {
  const footer = footerOf(bytes);
  const length = new DataView(footer.buffer, footer.byteOffset + 12, 4).getUint32(0, true);
  return new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(footer.subarray(16, 16 + length)) as Record<string, unknown>;
};

// sealFooter writes a footer block by hand: `map` under `version`, with its CRC.
function sealFooter(version: number, map: Record<string, unknown>): Uint8Array {
  const encoded = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true }).pack(map);
  const block = new Uint8Array(4096);
  const view = new DataView(block.buffer);
  block.set(Buffer.from('STRKVEND', 'latin1'), 0);
  view.setUint32(8, version, true);
  view.setUint32(12, encoded.byteLength, true);
  block.set(encoded, 16);
  view.setUint32(16 + encoded.byteLength, maskCrc32c(crc32c(block.subarray(0, 16 + encoded.byteLength))), true);
  return block;
}

const corrupt = (error: unknown): boolean => isStrataError(error, ErrorCode.CORRUPTION);

describe('the mirror state in the snapshot footer', () => {
  test('a short state is stored as it is (format 4) and read back; no state keeps the old formats and no field', () => {
    const mirror = copyState(3);
    assert.ok(mirror.byteLength <= MIRROR_STATE_FOOTER_BYTES_MAX);
    const bytes = encodeSnapshot({ metadata: { ...METADATA, mirror }, createdAtMs: 1 }, RECORDS);
    assert.equal(versionOf(bytes), SNAPSHOT_FORMAT_VERSION_MIRROR);
    assert.deepEqual(new Uint8Array(mapOf(bytes)['mirror'] as Uint8Array), mirror, 'readable in a dump');
    assert.deepEqual(verifySnapshotBytes(bytes, 'mirror.snap').metadata, { ...METADATA, mirror });
    // An empty state is a state (a mirror), not its absence.
    const empty = encodeSnapshot({ metadata: { ...METADATA, mirror: new Uint8Array(0) }, createdAtMs: 1 }, RECORDS);
    assert.deepEqual(verifySnapshotBytes(empty, 'empty.snap').metadata.mirror, new Uint8Array(0));

    for (const metadata of [METADATA, { ...METADATA, mirror: undefined }]) {
      const plain = encodeSnapshot({ metadata, createdAtMs: 1 }, RECORDS);
      assert.equal(versionOf(plain), SNAPSHOT_FORMAT_VERSION);
      assert.ok(!('mirror' in mapOf(plain)) && !('mirrorDeflated' in mapOf(plain)));
      const read = verifySnapshotBytes(plain, 'plain.snap').metadata;
      assert.ok(!('mirror' in read));
      assert.deepEqual(read, METADATA);
    }
    // A long member table without a mirror is format 3 as before.
    const longTable = new TextEncoder().encode('member '.repeat(SNAPSHOT_MEMBERS_INLINE_BYTES_MAX));
    assert.equal(versionOf(encodeSnapshot({ metadata: { ...METADATA, members: longTable }, createdAtMs: 1 }, [])), SNAPSHOT_FORMAT_VERSION_DEFLATED_MEMBERS);
    // With a mirror it is format 4, the table still deflated.
    const both = encodeSnapshot({ metadata: { ...METADATA, members: longTable, mirror }, createdAtMs: 1 }, []);
    assert.equal(versionOf(both), SNAPSHOT_FORMAT_VERSION_MIRROR);
    assert.ok('membersDeflated' in mapOf(both));
    assert.deepEqual(verifySnapshotBytes(both, 'both.snap').metadata, { ...METADATA, members: longTable, mirror });
  });

  test('a long state is stored deflated, up to MIRROR_STATE_BYTES_MAX, and read back whole', () => {
    const mirror = new TextEncoder().encode(JSON.stringify({ log: 'step done; '.repeat(MIRROR_STATE_BYTES_MAX) }).slice(0, MIRROR_STATE_BYTES_MAX));
    const bytes = encodeSnapshot({ metadata: { ...METADATA, mirror }, createdAtMs: 1 }, RECORDS);
    assert.equal(versionOf(bytes), SNAPSHOT_FORMAT_VERSION_MIRROR);
    assert.ok(!('mirror' in mapOf(bytes)));
    assert.ok((mapOf(bytes)['mirrorDeflated'] as Uint8Array).byteLength < MIRROR_STATE_FOOTER_BYTES_MAX);
    assert.deepEqual(verifySnapshotBytes(bytes, 'long.snap').metadata.mirror, mirror);
    // Over the bound it is refused when written; a state that does not deflate into the footer too.
    assert.throws(() => encodeSnapshot({ metadata: { ...METADATA, mirror: new Uint8Array(MIRROR_STATE_BYTES_MAX + 1) }, createdAtMs: 1 }, []), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
    assert.throws(
      () => encodeSnapshot({ metadata: { ...METADATA, mirror: randomBytes(MIRROR_STATE_BYTES_MAX) }, createdAtMs: 1 }, []),
      (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && /mirror state 8192 bytes, \d+ deflated/.test(error.message),
    );
  });

  test('the largest state src/storage lets through fits beside a member table with the largest journal record', () => {
    // The member table after a migration: the journal record (at most 2048 bytes deflated: random
    // bytes, which do not deflate) and a member list of five, deflated together as the footer does.
    const memberList = new TextEncoder().encode(
      Array.from({ length: 5 }, (_, i) => `member-${i} https://10.20.30.${i}:2380 https://10.20.30.${i}:2379 zone-${i % 3}`).join(';'),
    );
    const members = Uint8Array.from([...memberList, ...randomBytes(2048)]);
    assert.ok(deflateRawSync(members).byteLength > 2048);
    const huge = 2 ** 52;
    const mirror = randomBytes(MIRROR_STATE_FOOTER_BYTES_MAX);
    const metadata: SnapshotFileMetadata = {
      ...METADATA,
      index: huge,
      term: huge,
      revision: huge,
      confState: { voters: [huge, huge + 1, huge + 2, huge + 3, huge + 4], learners: [huge + 5], votersOutgoing: [], learnersNext: [], autoLeave: false },
      members,
      digest: { full: randomBytes(16), content: randomBytes(16) },
      mirror,
    };
    const bytes = encodeSnapshot({ metadata, createdAtMs: huge }, RECORDS);
    const read = verifySnapshotBytes(bytes, 'crowded.snap').metadata;
    assert.deepEqual(read.mirror, new Uint8Array(mirror));
    assert.deepEqual(read.members, members);
    // About 480 bytes are left at this worst case (3588 of 4076 used when written).
    const used = new DataView(footerOf(bytes).buffer, footerOf(bytes).byteOffset + 12, 4).getUint32(0, true);
    assert.ok(16 + used + 4 <= 4096, `${used} bytes of metadata`);
    // A configuration at its own bounds as well is too much: refused when written, never cut.
    const crowded = { ...metadata, confState: { ...metadata.confState, learners: Array.from({ length: SNAPSHOT_CONF_NODES_MAX }, (_, i) => huge + i) } };
    assert.throws(() => encodeSnapshot({ metadata: crowded, createdAtMs: 1 }, []), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
  });

  test('a store keeps it: created, listed, opened and read back', async () => {
    const store = new MemorySnapshotStore();
    const mirror = copyState(32);
    const info = await store.create({
      metadata: { ...METADATA, mirror },
      async *records() {
        yield RECORDS;
      },
    });
    const reader = await store.open(info.id);
    try {
      assert.deepEqual(reader.metadata.mirror, mirror);
    } finally {
      await reader.close();
    }
    await store.close();
  });

  test('a footer that carries it wrongly is CORRUPTION', () => {
    const valid = mapOf(encodeSnapshot({ metadata: METADATA, createdAtMs: 1 }, []));
    const read = (version: number, map: Record<string, unknown>): unknown => decodeSnapshotFooter(sealFooter(version, map), 'hand.snap', 4096);
    // The hand-made footer itself is good, with or without a mirror.
    assert.equal((read(4, valid) as ReturnType<typeof decodeSnapshotFooter>).metadata.mirror, undefined);
    assert.deepEqual((read(4, { ...valid, mirror: Uint8Array.of(1, 2) }) as ReturnType<typeof decodeSnapshotFooter>).metadata.mirror, Uint8Array.of(1, 2));
    // Before format 4 there is no mirror: a field there is damage, not something to drop.
    for (const version of [1, 2, 3]) assert.throws(() => read(version, { ...valid, mirror: Uint8Array.of(1) }), corrupt, `format ${version}`);
    assert.throws(() => read(4, { ...valid, mirror: 'text' }), corrupt);
    assert.throws(() => read(4, { ...valid, mirror: Uint8Array.of(1), mirrorDeflated: deflateRawSync(Uint8Array.of(1)) }), corrupt);
    assert.throws(() => read(4, { ...valid, mirrorDeflated: Uint8Array.of(0xff, 0xff, 0xff) }), corrupt);
    // (A raw state over the bound cannot fit in a footer block; a deflated one can claim to be.)
    assert.throws(() => read(4, { ...valid, mirrorDeflated: deflateRawSync(new Uint8Array(MIRROR_STATE_BYTES_MAX + 1)) }), corrupt);
    // A format this code does not know is refused (as older code refuses format 4).
    assert.throws(() => read(SNAPSHOT_FORMAT_VERSION_MIRROR + 1, valid), corrupt);
    // The encoder's own footer round-trips through the decoder.
    const footer = decodeSnapshotFooter(footerOf(encodeSnapshot({ metadata: { ...METADATA, mirror: copyState(1) }, createdAtMs: 1 }, [])), 'x', 0);
    assert.deepEqual(decodeSnapshotFooter(encodeSnapshotFooter(footer), 'y', 0), footer);
  });
});

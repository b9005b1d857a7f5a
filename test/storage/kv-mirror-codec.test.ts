// The mirror requests (kv-types.ts: MirrorRequest) in the entry encoding and in validation:
// every shape round-trips to exactly the bytes it came from, damaged bytes (any truncation,
// seeded bit flips, counts that cannot fit, unknown flags, a mirror request inside a Txn) are
// CORRUPTION and never another exception, and validation refuses what the state machine must
// never apply, with INVALID_ARGUMENT naming the field.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { decodeKvCommand, encodeKvCommand } from '../../src/storage/kv-command-codec.ts';
import type { KvCommand, KvLimits, KvRequest, MirrorPut } from '../../src/storage/kv-types.ts';
import { DEFAULT_KV_LIMITS, MIRROR_STATE_BYTES_MAX, MIRROR_STATE_FOOTER_BYTES_MAX } from '../../src/storage/kv-types.ts';
import { encodeValidKvCommand, validateKvRequest } from '../../src/storage/kv-validation.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';

const b = (value: string): Uint8Array => new TextEncoder().encode(value);
const put = (key: string, fields: Partial<MirrorPut> = {}): MirrorPut => ({ key: b(key), value: b(`v-${key}`), createRevision: 3, modRevision: 5, version: 2, lease: 0n, ...fields });

const MIRROR_COMMANDS: KvCommand[] = [
  { id: 1, request: { type: 'mirrorBegin', state: b('{"phase":"copying"}'), requireEmpty: true } },
  { id: 2, request: { type: 'mirrorBegin', state: new Uint8Array(0), requireEmpty: false, requireRevision: 2 ** 40 } },
  { id: 3, request: { type: 'mirrorBegin', state: b('s'), requireEmpty: true, requireRevision: 1 } },
  {
    id: 4,
    request: {
      type: 'mirrorApply',
      expectState: b('s1'),
      state: b('s2'),
      revision: 2 ** 50,
      puts: [put('a'), put('b', { value: new Uint8Array(0), createRevision: 1, modRevision: 2 ** 50, version: 2 ** 33, lease: 2156839707291722977n }), put('c', { lease: 2n ** 63n - 1n })],
      deletes: [b('c'), b('\0\xff')],
    },
  },
  { id: 5, request: { type: 'mirrorApply', expectState: new Uint8Array(0), state: new Uint8Array(0), revision: 1, puts: [], deletes: [] } },
  { id: 6, request: { type: 'mirrorEnd', expectState: b('the end') } },
];

const corrupt = (error: unknown): boolean => isStrataError(error, ErrorCode.CORRUPTION);
const invalidField = (field: string) => (error: unknown): boolean => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && (error.details as { field?: string }).field === field;

test('every mirror request shape round-trips, and its bytes are the one encoding of it', () => {
  for (const command of MIRROR_COMMANDS) {
    const data = encodeKvCommand(command);
    const decoded = decodeKvCommand(data);
    assert.deepEqual(decoded, command);
    assert.deepEqual(encodeKvCommand(decoded), data, `${command.request.type} re-encodes to the same bytes`);
  }
  // The optional requireRevision is left out, not written as 0: absent and 0 stay apart.
  const absent = encodeKvCommand({ id: 1, request: { type: 'mirrorBegin', state: b('s'), requireEmpty: false } });
  const zero = encodeKvCommand({ id: 1, request: { type: 'mirrorBegin', state: b('s'), requireEmpty: false, requireRevision: 0 } });
  assert.equal(zero.byteLength, absent.byteLength + 8);
  assert.equal((decodeKvCommand(zero).request as { requireRevision?: number }).requireRevision, 0);
});

test('every truncation of a mirror command, and a trailing byte, is CORRUPTION', () => {
  for (const command of MIRROR_COMMANDS) {
    const data = encodeKvCommand(command);
    for (let length = 0; length < data.byteLength; length += 1) assert.throws(() => decodeKvCommand(data.subarray(0, length)), corrupt, `${command.request.type} cut at ${length}`);
    assert.throws(() => decodeKvCommand(Uint8Array.of(...data, 0)), corrupt);
  }
});

test('seeded bit flips in any command decode to some command or fail with CORRUPTION, nothing else', () => {
  const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
  const random = new SeededRandom(seed);
  const all: KvCommand[] = [...MIRROR_COMMANDS, { id: 7, request: { type: 'txn', compare: [], success: [{ type: 'put', key: b('k'), value: b('v') }], failure: [] } }];
  let refused = 0;
  for (let round = 0; round < 3_000; round += 1) {
    const data = encodeKvCommand(all[random.intBelow(all.length)] as KvCommand).slice();
    const flips = 1 + random.intBelow(3);
    for (let flip = 0; flip < flips; flip += 1) {
      const at = random.intBelow(data.byteLength);
      data[at] = (data[at] as number) ^ (1 << random.intBelow(8));
    }
    try {
      decodeKvCommand(data);
    } catch (error) {
      assert.ok(corrupt(error), `seed ${seed}, round ${round}: ${String(error)}`);
      refused += 1;
    }
  }
  assert.ok(refused > 0, `seed ${seed}: some flips are refused`);
});

test('damaged mirror fields are CORRUPTION: unknown flags, counts the bytes cannot hold, a mirror request inside a Txn', () => {
  const begin = encodeKvCommand(MIRROR_COMMANDS[0] as KvCommand);
  // u8 format | u64 id | u8 kind | u8 flags
  const flags = 1 + 8 + 1;
  const unknownFlag = begin.slice();
  unknownFlag[flags] = 0x80 | (unknownFlag[flags] as number);
  assert.throws(() => decodeKvCommand(unknownFlag), corrupt);

  const empty = encodeKvCommand(MIRROR_COMMANDS[4] as KvCommand);
  // ... | bytes expectState (4) | bytes state (4) | u64 revision | u32 putCount
  const putCount = 1 + 8 + 1 + 4 + 4 + 8;
  const huge = empty.slice();
  new DataView(huge.buffer).setUint32(putCount, 0xffff_ffff, true);
  assert.throws(() => decodeKvCommand(huge), corrupt);
  const one = empty.slice();
  new DataView(one.buffer).setUint32(putCount, 1, true);
  assert.throws(() => decodeKvCommand(one), corrupt);

  // A Txn whose success branch holds a mirrorEnd (kind 7): encoded by hand, never by the encoder.
  const txn = encodeKvCommand({ id: 1, request: { type: 'txn', compare: [], success: [{ type: 'put', key: b('k'), value: b('v') }], failure: [] } });
  const end = encodeKvCommand(MIRROR_COMMANDS[5] as KvCommand).subarray(1 + 8);
  // txn = u8 kind | u32 compares (0) | u32 success count (1) | put | u32 failure count (0)
  const head = txn.subarray(0, 1 + 8 + 1 + 4 + 4);
  assert.throws(() => decodeKvCommand(Uint8Array.of(...head, ...end, 0, 0, 0, 0)), corrupt);
});

test('validation: the mirror state and expectState within MIRROR_STATE_BYTES_MAX', () => {
  const big = new Uint8Array(MIRROR_STATE_BYTES_MAX + 1);
  assert.throws(() => validateKvRequest({ type: 'mirrorBegin', state: big, requireEmpty: true }), invalidField('state'));
  assert.throws(() => validateKvRequest({ type: 'mirrorEnd', expectState: big }), invalidField('expectState'));
  assert.throws(() => validateKvRequest({ type: 'mirrorApply', expectState: big, state: b('s'), revision: 2, puts: [], deletes: [] }), invalidField('expectState'));
  assert.throws(() => validateKvRequest({ type: 'mirrorApply', expectState: b('s'), state: big, revision: 2, puts: [], deletes: [] }), invalidField('state'));
  validateKvRequest({ type: 'mirrorBegin', state: new Uint8Array(MIRROR_STATE_BYTES_MAX), requireEmpty: true });
  assert.throws(() => validateKvRequest({ type: 'mirrorBegin', state: b('s'), requireEmpty: true, requireRevision: 0 }), invalidField('requireRevision'));
  assert.throws(() => validateKvRequest({ type: 'mirrorBegin', state: b('s'), requireEmpty: true, requireRevision: 1.5 }), invalidField('requireRevision'));
});

test('validation: mirrorApply keys, counters and revision, each refusal naming its field', () => {
  const limits: KvLimits = { ...DEFAULT_KV_LIMITS, keyBytesMax: 8, valueBytesMax: 16 };
  const apply = (fields: Partial<Extract<KvRequest, { type: 'mirrorApply' }>>): KvRequest => ({ type: 'mirrorApply', expectState: b('s'), state: b('t'), revision: 9, puts: [], deletes: [], ...fields });
  const cases: [string, KvRequest][] = [
    ['revision', apply({ revision: 0 })],
    ['revision', apply({ revision: Number.MAX_SAFE_INTEGER + 1 })],
    ['puts[0].key', apply({ puts: [put('')] })],
    ['puts[1].key', apply({ puts: [put('a'), put('much-too-long')] })],
    ['puts[0].value', apply({ puts: [put('a', { value: new Uint8Array(17) })] })],
    ['puts[0].createRevision', apply({ puts: [put('a', { createRevision: 0 })] })],
    ['puts[0].modRevision', apply({ puts: [put('a', { createRevision: 6, modRevision: 5 })] })],
    ['puts[0].modRevision', apply({ puts: [put('a', { modRevision: 10 })] })],
    ['puts[0].version', apply({ puts: [put('a', { version: 0 })] })],
    ['puts[0].lease', apply({ puts: [put('a', { lease: -1n })] })],
    ['puts[0].lease', apply({ puts: [put('a', { lease: 2n ** 63n })] })],
    ['puts[0].lease', apply({ puts: [put('a', { lease: 2n ** 64n - 1n })] })],
    ['puts[0].lease', apply({ puts: [put('a', { lease: 5 as unknown as bigint })] })],
    ['deletes[0]', apply({ deletes: [new Uint8Array(0)] })],
    ['deletes[0]', apply({ deletes: [b('much-too-long')] })],
    ['puts[1].key', apply({ puts: [put('a'), put('a')] })],
    ['deletes[1]', apply({ deletes: [b('a'), b('a')] })],
    ['deletes[0]', apply({ puts: [put('a')], deletes: [b('a')] })],
  ];
  for (const [field, request] of cases) assert.throws(() => validateKvRequest(request, limits), invalidField(field), `${field}: ${JSON.stringify(request, (_, value: unknown) => (value instanceof Uint8Array ? Buffer.from(value).toString() : typeof value === 'bigint' ? `${value}n` : value))}`);
  // The edges that hold: modRevision equal to the revision, createRevision equal to modRevision, lease 0 and 2^63 - 1.
  validateKvRequest(apply({ puts: [put('a', { createRevision: 9, modRevision: 9, version: 1, lease: 0n })], deletes: [b('b')] }), limits);
  validateKvRequest(apply({ puts: [put('a', { lease: 2n ** 63n - 1n })] }), limits);
});

test('before proposing: a mirror batch over the request limit is REQUEST_TOO_LARGE, and a state no footer could carry is refused', () => {
  const limits: KvLimits = { ...DEFAULT_KV_LIMITS, requestBytesMax: 4_096 };
  const puts = (count: number): MirrorPut[] => Array.from({ length: count }, (_, i) => put(`key-${String(i).padStart(4, '0')}`, { value: new Uint8Array(100) }));
  const request = (count: number): KvRequest => ({ type: 'mirrorApply', expectState: b('s'), state: b('t'), revision: 9, puts: puts(count), deletes: [] });
  assert.ok(encodeValidKvCommand({ id: 1, request: request(20) }, limits).byteLength <= 4_096);
  assert.throws(() => encodeValidKvCommand({ id: 1, request: request(40) }, limits), (error: unknown) => isStrataError(error, ErrorCode.REQUEST_TOO_LARGE));

  // A long state that deflates well is fine (the footer stores it deflated); random bytes are not.
  const text = b(JSON.stringify({ endpoints: Array.from({ length: 40 }, (_, i) => `etcd-${i}.example.internal:2379`) }));
  assert.ok(text.byteLength > MIRROR_STATE_FOOTER_BYTES_MAX);
  encodeValidKvCommand({ id: 1, request: { type: 'mirrorBegin', state: text, requireEmpty: true } });
  const noise = new Uint8Array(randomBytes(MIRROR_STATE_FOOTER_BYTES_MAX + 1));
  assert.throws(() => encodeValidKvCommand({ id: 1, request: { type: 'mirrorBegin', state: noise, requireEmpty: true } }), invalidField('state'));
  assert.throws(() => encodeValidKvCommand({ id: 1, request: { type: 'mirrorApply', expectState: b('s'), state: noise, revision: 2, puts: [], deletes: [] } }), invalidField('state'));
  // The expected state is only compared, never stored: any length up to the bound is fine.
  encodeValidKvCommand({ id: 1, request: { type: 'mirrorEnd', expectState: noise } });
  // At apply the footer rule is not checked again (validateKvRequest alone passes it).
  validateKvRequest({ type: 'mirrorBegin', state: noise, requireEmpty: true });
});

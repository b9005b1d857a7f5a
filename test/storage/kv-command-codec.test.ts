// The entry encoding of KV commands: every request shape round-trips, bad bytes are CORRUPTION,
// and validation before encoding refuses oversized requests.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeKvCommand, encodeKvCommand, kvCommandType } from '../../src/storage/kv-command-codec.ts';
import type { KvCommand } from '../../src/storage/kv-types.ts';
import { encodeValidKvCommand } from '../../src/storage/kv-validation.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';

const b = (value: string): Uint8Array => new TextEncoder().encode(value);

const COMMANDS: KvCommand[] = [
  { id: 1, request: { type: 'put', key: b('k'), value: b('v') } },
  { id: 2 ** 40, request: { type: 'put', key: b('k'), value: new Uint8Array(0), prevKv: true } },
  { id: 3, request: { type: 'range', key: b('a'), rangeEnd: b('\0'), limit: 10, revision: 7, keysOnly: true, countOnly: true, serializable: true } },
  { id: 4, request: { type: 'range', key: b('a') } },
  { id: 5, request: { type: 'deleteRange', key: b('a'), rangeEnd: b('b'), prevKv: true } },
  {
    id: 6,
    request: {
      type: 'txn',
      compare: [
        { target: 'value', result: 'notEqual', key: b('x'), value: b('y') },
        { target: 'modRevision', result: 'less', key: b('x'), rangeEnd: b('z'), number: -3 },
        { target: 'lease', result: 'equal', key: b('l'), lease: 5n },
        { target: 'lease', result: 'greater', key: b('l'), lease: 2156839707291722977n },
        { target: 'lease', result: 'less', key: b('l'), lease: -(2n ** 63n) },
        { target: 'lease', result: 'notEqual', key: b('l'), lease: 2n ** 63n - 1n },
      ],
      success: [{ type: 'put', key: b('p'), value: b('q') }, { type: 'range', key: b('r') }],
      failure: [{ type: 'deleteRange', key: b('d') }],
    },
  },
];

test('every request shape round-trips through the entry encoding', () => {
  for (const command of COMMANDS) assert.deepEqual(decodeKvCommand(encodeKvCommand(command)), command);
});

test('kvCommandType reads the request type alone, for every shape, and refuses what is no KV command', () => {
  const mirror: KvCommand[] = [
    { id: 7, request: { type: 'mirrorBegin', state: b('s'), requireEmpty: true } },
    { id: 8, request: { type: 'mirrorEnd', expectState: b('s') } },
    { id: 9, request: { type: 'mirrorReplay', expectState: b('s'), state: b('t'), commands: [encodeKvCommand(COMMANDS[0] as KvCommand)] } },
  ];
  for (const command of [...COMMANDS, ...mirror]) assert.equal(kvCommandType(encodeKvCommand(command)), command.request.type);
  const data = encodeKvCommand(COMMANDS[0] as KvCommand);
  for (const bad of [data.subarray(0, 9), Uint8Array.of(9, ...data.subarray(1)), Uint8Array.of(...data.subarray(0, 9), 99, ...data.subarray(10))]) {
    assert.throws(() => kvCommandType(bad), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
  }
});

test('malformed entry data is CORRUPTION', () => {
  const data = encodeKvCommand(COMMANDS[5] as KvCommand);
  for (const bad of [data.subarray(0, data.byteLength - 1), Uint8Array.of(9, ...data.subarray(1)), Uint8Array.of(...data, 0)]) {
    assert.throws(() => decodeKvCommand(bad), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
  }
});

test('a lease compare within the safe integers keeps the bytes it had when the operand was a number; a wider one is an i64', () => {
  // Encoded before lease ids were bigints: compares on lease 5 and -3 (target 4, an f64 each).
  const before = '010900000000000000040200000004000a000000676f6c64656e2f6b657900000000000000000000144004020a000000676f6c64656e2f6b65790000000000000000000008c00000000000000000';
  const key = b('golden/key');
  const command: KvCommand = {
    id: 9,
    request: { type: 'txn', compare: [{ target: 'lease', result: 'equal', key, lease: 5n }, { target: 'lease', result: 'less', key, lease: -3n }], success: [], failure: [] },
  };
  assert.equal(Buffer.from(encodeKvCommand(command)).toString('hex'), before);
  assert.deepEqual(decodeKvCommand(Uint8Array.from(Buffer.from(before, 'hex'))), command);
  // Beyond 2^53: target 5 and the int64, little-endian.
  const wide = encodeKvCommand({ id: 9, request: { type: 'txn', compare: [{ target: 'lease', result: 'equal', key, lease: 2156839707291722977n }], success: [], failure: [] } });
  const operand = Buffer.from(wide).subarray(wide.byteLength - 8 - 8, wide.byteLength - 8);
  assert.equal(wide[1 + 8 + 1 + 4], 5, 'the wide lease target');
  assert.equal(operand.readBigInt64LE(0), 2156839707291722977n);
  // A wide compare holding a safe integer has another encoding already: CORRUPTION.
  const nonCanonical = Uint8Array.from(wide);
  new DataView(nonCanonical.buffer).setBigInt64(wide.byteLength - 16, 5n, true);
  assert.throws(() => decodeKvCommand(nonCanonical), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
  // Validation takes any int64 operand (etcd's Compare.lease), as a bigint only.
  const compareOn = (lease: bigint): KvCommand => ({ id: 1, request: { type: 'txn', compare: [{ target: 'lease', result: 'equal', key, lease }], success: [], failure: [] } });
  for (const lease of [-(2n ** 63n), 2n ** 63n - 1n]) encodeValidKvCommand(compareOn(lease));
  for (const lease of [2n ** 63n, -(2n ** 63n) - 1n, 5 as unknown as bigint]) {
    assert.throws(() => encodeValidKvCommand(compareOn(lease)), (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT), String(lease));
  }
});

test('a mirror put keeps its lease id as a full u64, exactly', () => {
  // Encoded before lease ids were bigints, with lease 2^32 + 5: the bytes are the same.
  const before = '010900000000000000060000000001000000011400000000000000010000000a000000676f6c64656e2f6b65790c000000676f6c64656e2076616c7565030000000000000011000000000000000200000000000000050000000100000000000000';
  const put = { key: b('golden/key'), value: b('golden value'), createRevision: 3, modRevision: 17, version: 2, lease: 2n ** 32n + 5n };
  const command: KvCommand = { id: 9, request: { type: 'mirrorApply', expectState: new Uint8Array(0), state: Uint8Array.of(1), revision: 20, puts: [put], deletes: [] } };
  assert.equal(Buffer.from(encodeKvCommand(command)).toString('hex'), before);
  for (const lease of [2156839707291722977n, 2n ** 63n - 1n]) {
    const wide: KvCommand = { ...command, request: { ...command.request, puts: [{ ...put, lease }] } as KvCommand['request'] };
    assert.deepEqual(decodeKvCommand(encodeKvCommand(wide)), wide);
  }
});

test('a request over the size limit is refused before it is encoded into the log', () => {
  const limits = { requestBytesMax: 100, keyBytesMax: 1000, valueBytesMax: 1000, txnOperationsMax: 128 };
  assert.equal(encodeValidKvCommand({ id: 1, request: { type: 'put', key: b('k'), value: new Uint8Array(50) } }, limits).byteLength, 70);
  assert.throws(
    () => encodeValidKvCommand({ id: 1, request: { type: 'put', key: b('k'), value: new Uint8Array(90) } }, limits),
    (error: unknown) => isStrataError(error, ErrorCode.REQUEST_TOO_LARGE),
  );
});

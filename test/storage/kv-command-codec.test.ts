// The entry encoding of KV commands: every request shape round-trips, bad bytes are CORRUPTION,
// and validation before encoding refuses oversized requests.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeKvCommand, encodeKvCommand } from '../../src/storage/kv-command-codec.ts';
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
      ],
      success: [{ type: 'put', key: b('p'), value: b('q') }, { type: 'range', key: b('r') }],
      failure: [{ type: 'deleteRange', key: b('d') }],
    },
  },
];

test('every request shape round-trips through the entry encoding', () => {
  for (const command of COMMANDS) assert.deepEqual(decodeKvCommand(encodeKvCommand(command)), command);
});

test('malformed entry data is CORRUPTION', () => {
  const data = encodeKvCommand(COMMANDS[5] as KvCommand);
  for (const bad of [data.subarray(0, data.byteLength - 1), Uint8Array.of(9, ...data.subarray(1)), Uint8Array.of(...data, 0)]) {
    assert.throws(() => decodeKvCommand(bad), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
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

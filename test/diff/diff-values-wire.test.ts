// DiffValues on the wire: a key's lease id (etcd's are int64 beyond 2^53) leaves the server
// exactly (toWireValue, protobufjs's encoder with the server's options) and arrives exactly at
// the diff client (its DiffValues decoder, DIFF_VALUES_LOADER_OPTIONS, then fromWireValue);
// the answer's other integers read as before, and one that is not an integer is CORRUPTION.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as protoLoader from '@grpc/proto-loader';

import type { DiffValue, WireValue } from '../../src/diff/index.ts';
import { ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS, ADMIN_SERVICE_NAME, DIFF_VALUES_LOADER_OPTIONS, fromWireValue, toWireValue } from '../../src/diff/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';

const valuesMethod = (options: protoLoader.Options): protoLoader.MethodDefinition<object, object> => {
  const service = protoLoader.loadSync(ADMIN_PROTO_FILE, options)[ADMIN_SERVICE_NAME] as protoLoader.ServiceDefinition;
  const method = service['DiffValues'];
  assert.ok(method !== undefined);
  return method as protoLoader.MethodDefinition<object, object>;
};

test('a lease id beyond 2^53 crosses DiffValues exactly; the counters and absent values read as before', () => {
  const server = valuesMethod(ADMIN_PROTO_LOADER_OPTIONS);
  const client = valuesMethod(DIFF_VALUES_LOADER_OPTIONS);
  const key = Buffer.from('k');
  const values: (DiffValue | undefined)[] = [
    ...[2156839707291722977n, 2n ** 63n - 1n, 0n, 5n].map((lease, index): DiffValue => ({ key, value: Buffer.from('v'), valueBytes: 3 + index, createRevision: 2, modRevision: Number.MAX_SAFE_INTEGER, version: 7, lease })),
    undefined,
  ];
  const bytes = server.responseSerialize({ values: values.map(toWireValue) });
  const answer = client.responseDeserialize(bytes) as { values: WireValue[] };
  assert.deepEqual(
    answer.values.map((wire) => fromWireValue(key, wire)),
    values.map((value) => (value === undefined ? undefined : { ...value, value: Buffer.from('v') })),
  );
  // The server's own decoder (longs: Number) would have rounded the id.
  const rounded = server.responseDeserialize(bytes) as { values: { lease: number }[] };
  assert.notEqual(BigInt(rounded.values[0]?.lease ?? 0), 2156839707291722977n);
});

test('a DiffValue whose integers are not ones this diff reads is CORRUPTION naming the field', () => {
  const wire = (fields: Partial<WireValue>): WireValue => ({ found: true, value: Buffer.alloc(0), value_bytes: '1', create_revision: '2', mod_revision: '3', version: '4', lease: '5', ...fields });
  assert.equal(fromWireValue(Buffer.from('k'), wire({}))?.lease, 5n);
  for (const [field, bad] of [
    ['lease', { lease: '-1' }],
    ['lease', { lease: '9223372036854775808' }],
    ['lease', { lease: '12x' }],
    ['mod_revision', { mod_revision: '9007199254740992' }],
    ['version', { version: '-4' }],
  ] as const) {
    assert.throws(
      () => fromWireValue(Buffer.from('k'), wire(bad)),
      (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION) && error.details['field'] === field,
      JSON.stringify(bad),
    );
  }
});

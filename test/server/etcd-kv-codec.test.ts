// The hand-written KV codec (etcd-kv-codec.ts) against protobufjs, which it replaces on the
// hot path: requests that protobufjs encodes decode to the objects protobufjs decodes them
// to, responses encode to protobufjs's bytes, and malformed requests are refused with the
// documented problem and offset. The randomized parts are seeded: a run prints its seed, and
// STRATAKV_SEED=<seed> replays it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { Client, GrpcObject, MethodDefinition, ServiceDefinition, ServiceError } from '@grpc/grpc-js';
import { credentials, loadPackageDefinition, makeGenericClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

import {
  decodeDeleteRangeRequest,
  decodePutRequest,
  decodeRangeRequest,
  encodeDeleteRangeResponse,
  encodePutResponse,
  encodeRangeResponse,
  GROUP_DEPTH_MAX,
  ProtoDecodeProblem,
  withExactCompareLeases,
} from '../../src/server/etcd-kv-codec.ts';
import type { EtcdServer } from '../../src/server/index.ts';
import { startEtcdServer } from '../../src/server/index.ts';
import { ETCD_PROTO_FILE, ETCD_PROTO_LOADER_OPTIONS, loadEtcdServices } from '../../src/server/proto-loading.ts';
import type { WireKeyValue, WireOperationHeader, WireTxnRequest } from '../../src/server/etcd-wire.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { GrpcStatus } from '../../src/util/etcd-errors.ts';
import { SeededRandom } from '../../src/util/random.ts';
import type { SingleMember } from './single-member.ts';
import { freeClientUrl, startSingleMember } from './single-member.ts';

const seed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);

// The untouched definitions, straight from @grpc/proto-loader: protobufjs is the reference.
const protobufjs = (loadPackageDefinition(loadSync(ETCD_PROTO_FILE, ETCD_PROTO_LOADER_OPTIONS))['etcdserverpb'] as GrpcObject)['KV'] as unknown as { service: ServiceDefinition };
const reference = protobufjs.service;
const method = (name: string): MethodDefinition<object, object> => {
  const definition = reference[name];
  assert.ok(definition !== undefined, `KV has no ${name}`);
  return definition;
};

// protobufjs with 64-bit integers as decimal text: the reference for a lease id, which the
// codec reads exactly (a bigint) where longs: Number rounds.
const exactReference = (loadPackageDefinition(loadSync(ETCD_PROTO_FILE, { ...ETCD_PROTO_LOADER_OPTIONS, longs: String }))['etcdserverpb'] as GrpcObject)['KV'] as unknown as { service: ServiceDefinition };
const exactMethod = (name: string): MethodDefinition<object, object> => {
  const definition = exactReference.service[name];
  assert.ok(definition !== undefined, `KV has no ${name}`);
  return definition;
};

// referenceDecode is protobufjs's decode of a request with the lease as the codec reads it:
// the same int64, exactly, as a bigint.
function referenceDecode(name: string, buffer: Buffer): object {
  const decoded = method(name).requestDeserialize(buffer) as Record<string, unknown>;
  if (name === 'Put' && 'lease' in decoded) decoded['lease'] = BigInt((exactMethod(name).requestDeserialize(buffer) as { lease: string }).lease);
  return decoded;
}

type Decode = (buffer: Buffer) => object;
type Encode = (response: never) => Buffer;
type FieldKind = 'bytes' | 'int64' | 'lease' | 'enum' | 'bool';

interface RequestCodec {
  readonly name: 'Put' | 'Range' | 'DeleteRange';
  readonly decode: Decode;
  readonly fields: readonly (readonly [string, FieldKind])[];
}

// Field lists in field-number order (field i + 1), as in rpc.proto.
const REQUESTS: readonly RequestCodec[] = [
  {
    name: 'Put',
    decode: decodePutRequest,
    fields: [['key', 'bytes'], ['value', 'bytes'], ['lease', 'lease'], ['prev_kv', 'bool'], ['ignore_value', 'bool'], ['ignore_lease', 'bool']],
  },
  {
    name: 'Range',
    decode: decodeRangeRequest,
    fields: [
      ['key', 'bytes'], ['range_end', 'bytes'], ['limit', 'int64'], ['revision', 'int64'], ['sort_order', 'enum'], ['sort_target', 'enum'],
      ['serializable', 'bool'], ['keys_only', 'bool'], ['count_only', 'bool'], ['min_mod_revision', 'int64'], ['max_mod_revision', 'int64'],
      ['min_create_revision', 'int64'], ['max_create_revision', 'int64'],
    ],
  },
  { name: 'DeleteRange', decode: decodeDeleteRangeRequest, fields: [['key', 'bytes'], ['range_end', 'bytes'], ['prev_kv', 'bool']] },
];

const RESPONSES: readonly { readonly name: 'Put' | 'Range' | 'DeleteRange'; readonly encode: Encode }[] = [
  { name: 'Put', encode: encodePutResponse },
  { name: 'Range', encode: encodeRangeResponse },
  { name: 'DeleteRange', encode: encodeDeleteRangeResponse },
];

// Bounds of the randomized runs.
const REQUEST_CASES = 3000;
const RESPONSE_CASES = 3000;
const MUTATION_CASES = 5000;
const BYTES_LENGTH_MAX = 64;
const KVS_MAX = 5;
const UNKNOWN_FIELDS_MAX = 3;

function randomBytes(random: SeededRandom): Buffer {
  const length = random.chance(1, 5) ? 0 : random.intBelow(BYTES_LENGTH_MAX + 1);
  const bytes = Buffer.alloc(length);
  for (let index = 0; index < length; index += 1) bytes[index] = random.intBelow(256);
  return bytes;
}

// randomSafeInteger favours the edges: 0, one-byte values, the 32-bit and 53-bit limits, negatives.
function randomSafeInteger(random: SeededRandom): number {
  switch (random.intBelow(8)) {
    case 0: return 0;
    case 1: return random.intBelow(0x80);
    case 2: return random.pick([0x7f, 0x80, 0x3fff, 0x4000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x1_0000_0000, Number.MAX_SAFE_INTEGER]);
    case 3: return -random.pick([1, 2, 0x80, 0x7fff_ffff, 0x8000_0000, 0x1_0000_0000, Number.MAX_SAFE_INTEGER]);
    case 4: return random.intBelow(0x1_0000_0000);
    case 5: return -random.intBelow(0x1_0000_0000);
    default: {
      const magnitude = random.intBelow(0x20_0000) * 0x1_0000_0000 + random.nextUint32();
      return random.chance(1, 3) ? -magnitude : magnitude;
    }
  }
}

// randomLease is any int64 as a bigint, favouring etcd's ids (beyond 2^53) and the edges.
function randomLease(random: SeededRandom): bigint {
  switch (random.intBelow(4)) {
    case 0: return BigInt(randomSafeInteger(random));
    case 1: return random.pick([2156839707291722977n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), -1n]);
    default: return BigInt.asIntN(64, (BigInt(random.nextUint32()) << 32n) | BigInt(random.nextUint32()));
  }
}

function randomEnum(random: SeededRandom): number {
  if (random.chance(3, 4)) return random.intBelow(5);
  return random.pick([-1, -2147483648, 2147483647, 1000]);
}

function randomRequest(random: SeededRandom, codec: RequestCodec): Record<string, unknown> {
  const request: Record<string, unknown> = {};
  for (const [name, kind] of codec.fields) {
    if (random.chance(1, 2)) continue;
    switch (kind) {
      case 'bytes': request[name] = randomBytes(random); break;
      case 'int64': request[name] = randomSafeInteger(random); break;
      case 'lease': request[name] = randomLease(random); break;
      case 'enum': request[name] = randomEnum(random); break;
      case 'bool': request[name] = random.chance(1, 2); break;
    }
  }
  return request;
}

function varint(value: bigint): Buffer {
  const bytes: number[] = [];
  let remaining = BigInt.asUintN(64, value);
  while (remaining > 0x7fn) {
    bytes.push(Number(remaining & 0x7fn) | 0x80);
    remaining >>= 7n;
  }
  bytes.push(Number(remaining));
  return Buffer.from(bytes);
}

function tag(fieldNumber: number, wireType: number): Buffer {
  return varint(BigInt(fieldNumber) * 8n + BigInt(wireType));
}

// randomUnknownField is a field numbered past the message's fields, of any wire type.
function randomUnknownField(random: SeededRandom, fieldNumberMin: number, groupDepth = 0): Buffer {
  const fieldNumber = random.chance(1, 2) ? fieldNumberMin + random.intBelow(100) : fieldNumberMin + random.intBelow(0x1fff_ffff - fieldNumberMin + 1);
  const wireType = random.pick(groupDepth < 2 ? [0, 1, 2, 3, 5] : [0, 1, 2, 5]);
  switch (wireType) {
    case 0: return Buffer.concat([tag(fieldNumber, 0), varint(BigInt(random.nextUint32()) << BigInt(random.intBelow(33)))]);
    case 1: return Buffer.concat([tag(fieldNumber, 1), randomFixed(random, 8)]);
    case 2: {
      const bytes = randomBytes(random);
      return Buffer.concat([tag(fieldNumber, 2), varint(BigInt(bytes.length)), bytes]);
    }
    case 3: {
      const inner = Array.from({ length: random.intBelow(3) }, () => randomUnknownField(random, 1, groupDepth + 1));
      return Buffer.concat([tag(fieldNumber, 3), ...inner, tag(fieldNumber, 4)]);
    }
    default: return Buffer.concat([tag(fieldNumber, 5), randomFixed(random, 4)]);
  }
}

function randomFixed(random: SeededRandom, length: number): Buffer {
  return Buffer.from(Array.from({ length }, () => random.intBelow(256)));
}

function randomKeyValue(random: SeededRandom): WireKeyValue {
  return {
    key: randomBytes(random),
    create_revision: randomSafeInteger(random),
    mod_revision: randomSafeInteger(random),
    version: randomSafeInteger(random),
    value: random.chance(1, 2) ? randomBytes(random) : new Uint8Array(randomBytes(random)),
    lease: randomLease(random),
  };
}

function randomHeader(random: SeededRandom): WireOperationHeader {
  if (random.chance(1, 3)) return { revision: randomSafeInteger(random) };
  return { cluster_id: Math.abs(randomSafeInteger(random)), member_id: Math.abs(randomSafeInteger(random)), revision: randomSafeInteger(random), raft_term: Math.abs(randomSafeInteger(random)) };
}

function randomKeyValues(random: SeededRandom): WireKeyValue[] {
  return Array.from({ length: random.chance(1, 3) ? 0 : random.intBelow(KVS_MAX + 1) }, () => randomKeyValue(random));
}

function randomResponse(random: SeededRandom, name: 'Put' | 'Range' | 'DeleteRange'): Record<string, unknown> {
  switch (name) {
    case 'Put': return random.chance(1, 2) ? { header: randomHeader(random) } : { header: randomHeader(random), prev_kv: randomKeyValue(random) };
    case 'Range': return { header: randomHeader(random), kvs: randomKeyValues(random), more: random.chance(1, 2), count: Math.abs(randomSafeInteger(random)) };
    case 'DeleteRange': return { header: randomHeader(random), deleted: Math.abs(randomSafeInteger(random)), prev_kvs: randomKeyValues(random) };
  }
}

// withSeed runs a randomized check and names the seed in any failure.
function withSeed(check: (random: SeededRandom) => void): void {
  try {
    check(new SeededRandom(seed));
  } catch (error) {
    throw new Error(`failed with seed ${seed} (replay: STRATAKV_SEED=${seed})`, { cause: error });
  }
}

// refusal runs `decode` and answers the StrataError it must throw.
function refusal(decode: Decode, hex: string): { problem: unknown; offset: unknown } {
  try {
    decode(Buffer.from(hex.replaceAll(' ', ''), 'hex'));
  } catch (error) {
    assert.ok(isStrataError(error, ErrorCode.INVALID_ARGUMENT), `expected an INVALID_ARGUMENT StrataError, got ${String(error)}`);
    return { problem: error.details['problem'], offset: error.details['offset'] };
  }
  return assert.fail(`${hex} was accepted`);
}

describe(`KV codec against protobufjs (seed ${seed})`, () => {
  test('requests that protobufjs encodes decode to what protobufjs decodes, unknown fields included', () => {
    withSeed((random) => {
      for (let round = 0; round < REQUEST_CASES; round += 1) {
        const codec = random.pick(REQUESTS);
        const encoded = method(codec.name).requestSerialize(randomRequest(random, codec));
        const parts = [encoded];
        const unknownFields = random.chance(1, 3) ? random.intBelow(UNKNOWN_FIELDS_MAX + 1) : 0;
        for (let index = 0; index < unknownFields; index += 1) {
          const field = randomUnknownField(random, codec.fields.length + 1);
          if (random.chance(1, 2)) parts.unshift(field);
          else parts.push(field);
        }
        const buffer = Buffer.concat(parts);
        assert.deepStrictEqual(codec.decode(buffer), referenceDecode(codec.name, buffer), `${codec.name} request ${buffer.toString('hex')}`);
      }
    });
  });

  test('responses encode to the bytes protobufjs writes', () => {
    withSeed((random) => {
      for (let round = 0; round < RESPONSE_CASES; round += 1) {
        const { name, encode } = random.pick(RESPONSES);
        const response = randomResponse(random, name);
        const ours = encode(response as never);
        const theirs = method(name).responseSerialize(response);
        assert.equal(ours.toString('hex'), theirs.toString('hex'), `${name} response ${JSON.stringify(response, (_, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value))}`);
      }
    });
  });

  test('mutated requests are decoded or refused with a documented problem, never anything else', () => {
    const problems = new Set<unknown>(Object.values(ProtoDecodeProblem));
    withSeed((random) => {
      for (let round = 0; round < MUTATION_CASES; round += 1) {
        const codec = random.pick(REQUESTS);
        const buffer = Buffer.from(method(codec.name).requestSerialize(randomRequest(random, codec)));
        const mutations = 1 + random.intBelow(3);
        for (let index = 0; index < mutations && buffer.length > 0; index += 1) buffer[random.intBelow(buffer.length)] = random.intBelow(256);
        const mutated = random.chance(1, 4) ? buffer.subarray(0, random.intBelow(buffer.length + 1)) : buffer;
        let decoded: object;
        try {
          decoded = codec.decode(mutated);
        } catch (error) {
          assert.ok(isStrataError(error, ErrorCode.INVALID_ARGUMENT), `${mutated.toString('hex')}: ${String(error)}`);
          assert.ok(problems.has(error.details['problem']), `${mutated.toString('hex')}: problem ${String(error.details['problem'])}`);
          const offset = error.details['offset'];
          assert.ok(typeof offset === 'number' && offset >= 0 && offset <= mutated.length, `${mutated.toString('hex')}: offset ${String(offset)}`);
          continue;
        }
        // What is accepted means what it says: protobufjs re-encodes it, and it decodes the same.
        // (Mutated bytes are not compared with protobufjs's decode: protobufjs misreads some
        // non-canonical varints, see "protobufjs quirks" below.)
        assert.deepStrictEqual(codec.decode(method(codec.name).requestSerialize(decoded)), decoded, mutated.toString('hex'));
      }
    });
  });
});

describe('KV codec: fixed cases', () => {
  test('negative int64 (10-byte varints) decode exactly, down to -(2^53 - 1)', () => {
    assert.deepStrictEqual(decodeRangeRequest(Buffer.from('20 ffffffffffffffffff01'.replaceAll(' ', ''), 'hex')), { revision: -1 });
    const lowest = Buffer.concat([tag(4, 0), varint(-BigInt(Number.MAX_SAFE_INTEGER))]);
    assert.deepStrictEqual(decodeRangeRequest(lowest), { revision: -Number.MAX_SAFE_INTEGER });
    assert.deepStrictEqual(decodeRangeRequest(lowest), method('Range').requestDeserialize(lowest));
    const highest = Buffer.concat([tag(4, 0), varint(BigInt(Number.MAX_SAFE_INTEGER))]);
    assert.deepStrictEqual(decodeRangeRequest(highest), { revision: Number.MAX_SAFE_INTEGER });
    // An enum is an int32: a negative one is a 10-byte varint whose low 32 bits count.
    assert.deepStrictEqual(decodeRangeRequest(Buffer.concat([tag(5, 0), varint(-2n)])), { sort_order: -2 });
  });

  test('a lease id is read exactly as a bigint over the whole int64 range (etcd grants ids beyond 2^53)', () => {
    for (const lease of [0n, 1n, 2n ** 53n - 1n, 2n ** 53n + 1n, 2156839707291722977n, 2n ** 63n - 1n, -1n, -(2n ** 63n)]) {
      const buffer = Buffer.concat([tag(3, 0), varint(lease)]);
      assert.deepStrictEqual(decodePutRequest(buffer), { lease }, `lease ${lease}`);
      assert.deepStrictEqual(decodePutRequest(buffer), referenceDecode('Put', buffer), `lease ${lease}`);
    }
    // 2^63 on the wire is the int64 -2^63, as protobufjs and etcd read it.
    assert.deepStrictEqual(decodePutRequest(Buffer.from('18 80808080808080808001'.replaceAll(' ', ''), 'hex')), { lease: -(2n ** 63n) });
  });

  test('a response carries a lease id exactly, as protobufjs writes the same int64', () => {
    for (const lease of [0n, 0x7fn, 0x7fff_ffffn, 0x8000_0000n, 2156839707291722977n, 2n ** 63n - 1n, -1n]) {
      const kv: WireKeyValue = { key: Buffer.from('k'), create_revision: 2, mod_revision: 3, version: 1, value: Buffer.from('v'), lease };
      const response = { header: { revision: 3 }, kvs: [kv], more: false, count: 1 };
      const ours = encodeRangeResponse(response);
      assert.equal(ours.toString('hex'), method('Range').responseSerialize(response).toString('hex'), `lease ${lease}`);
      const decoded = exactMethod('Range').responseDeserialize(ours) as { kvs: { lease: string }[] };
      assert.equal(decoded.kvs[0]?.lease, lease.toString(), `lease ${lease}`);
    }
    assert.equal(encodeRangeResponse({ header: { revision: 3 }, kvs: [{ key: Buffer.alloc(0), create_revision: 0, mod_revision: 0, version: 0, value: Buffer.alloc(0), lease: 2156839707291722977n }], more: false, count: 1 }).toString('hex'), '0a021803' + '12140a00100018002000' + '2a00' + '30e1c9d2f494c9a8f71d' + '18002001');
    assert.throws(() => encodeRangeResponse({ header: { revision: 3 }, kvs: [{ key: Buffer.alloc(0), create_revision: 0, mod_revision: 0, version: 0, value: Buffer.alloc(0), lease: 2n ** 63n }], more: false, count: 1 }), { name: 'AssertionFailure' });
  });

  test("a Txn's compares carry their lease operand exactly: protobufjs rounds it, withExactCompareLeases reads it again", () => {
    const txn = loadEtcdServices().kv['Txn'];
    assert.ok(txn !== undefined);
    const LEASE = 4;
    const request = {
      compare: [
        { target: LEASE, result: 0, key: Buffer.from('a'), lease: 2156839707291722977n },
        { target: 0, result: 0, key: Buffer.from('b'), version: 3 },
        { target: LEASE, result: 2, key: Buffer.from('c'), lease: 2n ** 63n - 1n, range_end: Buffer.from('d') },
        { target: LEASE, result: 1, key: Buffer.from('e'), lease: -(2n ** 63n) },
        { target: LEASE, result: 0, key: Buffer.from('f'), lease: 5n },
      ],
      success: [{ request_range: { key: Buffer.from('a') } }],
      failure: [{ request_put: { key: Buffer.from('z'), value: Buffer.from('v') } }],
    };
    const buffer = method('Txn').requestSerialize(request);
    const rounded = method('Txn').requestDeserialize(buffer) as WireTxnRequest;
    assert.equal(rounded.compare?.[0]?.lease, Number(2156839707291722977n) as unknown as bigint, 'protobufjs rounds (longs: Number)');
    const decoded = txn.requestDeserialize(buffer) as WireTxnRequest;
    assert.deepStrictEqual(decoded.compare?.map((compare) => compare.lease), [2156839707291722977n, undefined, 2n ** 63n - 1n, -(2n ** 63n), 5n]);
    assert.ok(!Object.hasOwn(decoded.compare?.[1] ?? {}, 'lease'), 'a compare without a lease has none');
    assert.deepStrictEqual(decoded.compare?.[2]?.range_end, Buffer.from('d'));
    assert.deepStrictEqual({ ...decoded, compare: [] }, { ...rounded, compare: [] }, 'everything else is protobufjs\'s');
    // Without a lease compare, protobufjs's answer is taken as it is.
    const plain = method('Txn').requestSerialize({ compare: [{ target: 0, key: Buffer.from('b'), version: 3 }] });
    assert.deepStrictEqual(txn.requestDeserialize(plain), method('Txn').requestDeserialize(plain));
    // The last occurrence of the lease wins, as in protobufjs; unknown fields are skipped.
    const compare = Buffer.concat([tag(2, 0), varint(4n), tag(8, 0), varint(1n), tag(99, 2), varint(1n), Buffer.from('x'), tag(8, 0), varint(2n ** 62n)]);
    const message = Buffer.concat([tag(1, 2), varint(BigInt(compare.length)), compare, tag(7, 0), varint(1n)]);
    assert.deepStrictEqual((txn.requestDeserialize(message) as WireTxnRequest).compare?.[0]?.lease, 2n ** 62n);
    // A lease with the wrong wire type is refused, as the codec refuses it elsewhere.
    const wrong = Buffer.concat([tag(8, 2), varint(0n)]);
    // (protobufjs reads field 8 as an int64 whatever its wire type: it shows a lease.)
    assert.throws(() => withExactCompareLeases({ compare: [{ lease: 0n }] }, Buffer.concat([tag(1, 2), varint(BigInt(wrong.length)), wrong])), (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['problem'] === ProtoDecodeProblem.WRONG_WIRE_TYPE);
  });

  test('absent fields stay absent; present default values are kept, as protobufjs keeps them', () => {
    assert.deepStrictEqual(decodePutRequest(Buffer.alloc(0)), {});
    const buffer = Buffer.from('0a0018002000', 'hex');
    assert.deepStrictEqual(decodePutRequest(buffer), { key: Buffer.alloc(0), lease: 0n, prev_kv: false });
    assert.deepStrictEqual(decodePutRequest(buffer), referenceDecode('Put', buffer));
    // The last occurrence of a field wins.
    assert.deepStrictEqual(decodeDeleteRangeRequest(Buffer.from('0a01610a0162', 'hex')), { key: Buffer.from('b') });
  });

  test('unknown fields of every wire type, groups included, are skipped', () => {
    const unknown = Buffer.concat([
      tag(7, 0), varint(-1n), // a 10-byte varint
      tag(8, 1), Buffer.alloc(8, 0xff),
      tag(9, 2), varint(3n), Buffer.from('xyz'),
      tag(10, 3), tag(1, 0), varint(5n), tag(2, 3), tag(2, 4), tag(10, 4), // nested groups
      tag(11, 5), Buffer.alloc(4, 0xff),
      tag(0x1fff_ffff, 0), varint(1n), // the highest field number
    ]);
    const buffer = Buffer.concat([Buffer.from('0a0161', 'hex'), unknown, Buffer.from('2001', 'hex')]);
    assert.deepStrictEqual(decodePutRequest(buffer), { key: Buffer.from('a'), prev_kv: true });
    assert.deepStrictEqual(decodePutRequest(buffer), referenceDecode('Put', buffer));
    const deleteRange = Buffer.concat([tag(4, 0), varint(1n), Buffer.from('1801', 'hex')]);
    assert.deepStrictEqual(decodeDeleteRangeRequest(deleteRange), { prev_kv: true });
    const range = Buffer.concat([tag(14, 2), varint(0n), Buffer.from('4001', 'hex')]);
    assert.deepStrictEqual(decodeRangeRequest(range), { keys_only: true });
  });

  test('bytes fields are views of the request buffer', () => {
    const buffer = Buffer.from('0a0161120162', 'hex');
    const decoded = decodePutRequest(buffer);
    assert.ok(Buffer.isBuffer(decoded.key));
    assert.equal(decoded.key.buffer, buffer.buffer);
    assert.equal(decoded.key.byteOffset, buffer.byteOffset + 2);
  });

  test('every malformed request is refused with its problem and byte offset', () => {
    const tooDeep = Buffer.concat([...Array.from({ length: GROUP_DEPTH_MAX + 1 }, () => tag(15, 3))]).toString('hex');
    const cases: readonly (readonly [Decode, string, ProtoDecodeProblem, number])[] = [
      [decodePutRequest, '80', ProtoDecodeProblem.TRUNCATED_VARINT, 0], // a tag cut short
      [decodePutRequest, '0a0161 18 80', ProtoDecodeProblem.TRUNCATED_VARINT, 4], // a value cut short
      [decodeRangeRequest, '18', ProtoDecodeProblem.TRUNCATED_VARINT, 1], // no value at all
      [decodePutRequest, '0a 05 6162', ProtoDecodeProblem.LENGTH_PAST_END, 1],
      [decodePutRequest, '0a', ProtoDecodeProblem.TRUNCATED_VARINT, 1], // no length at all
      [decodePutRequest, '0a 8080808010', ProtoDecodeProblem.LENGTH_PAST_END, 1], // a length past 32 bits
      [decodePutRequest, '7a 05 6162', ProtoDecodeProblem.LENGTH_PAST_END, 1], // an unknown field's length
      [decodePutRequest, '79 01020304', ProtoDecodeProblem.LENGTH_PAST_END, 1], // fixed64 cut short
      [decodePutRequest, '7d 0102', ProtoDecodeProblem.LENGTH_PAST_END, 1], // fixed32 cut short
      [decodePutRequest, '0e', ProtoDecodeProblem.INVALID_WIRE_TYPE, 0], // wire type 6
      [decodeRangeRequest, '1801 0f', ProtoDecodeProblem.INVALID_WIRE_TYPE, 2], // wire type 7
      [decodePutRequest, '18 ffffffffffffffffffff01', ProtoDecodeProblem.VARINT_TOO_LONG, 1], // 11 bytes
      [decodePutRequest, '18 ffffffffffffffffff02', ProtoDecodeProblem.VARINT_OVERFLOW, 1], // a 65th bit
      [decodeRangeRequest, '18 80808080808080808001', ProtoDecodeProblem.UNSAFE_INTEGER, 1], // 2^63 is -2^63
      [decodeRangeRequest, '20 80808080808080 10', ProtoDecodeProblem.UNSAFE_INTEGER, 1], // 2^53
      [decodeRangeRequest, '0a00 20 8080808080808070', ProtoDecodeProblem.UNSAFE_INTEGER, 3], // 7 * 2^53
      [decodeRangeRequest, `20 ${varint(-(2n ** 53n)).toString('hex')}`, ProtoDecodeProblem.UNSAFE_INTEGER, 1], // -2^53
      [decodePutRequest, '0805', ProtoDecodeProblem.WRONG_WIRE_TYPE, 0], // key as a varint
      [decodeRangeRequest, '1a00', ProtoDecodeProblem.WRONG_WIRE_TYPE, 0], // limit as bytes
      [decodeDeleteRangeRequest, '1d00000000', ProtoDecodeProblem.WRONG_WIRE_TYPE, 0], // prev_kv as fixed32
      [decodePutRequest, '0001', ProtoDecodeProblem.INVALID_FIELD_NUMBER, 0],
      [decodePutRequest, '8080808080 01', ProtoDecodeProblem.INVALID_FIELD_NUMBER, 0], // a tag past 32 bits
      [decodePutRequest, '7c', ProtoDecodeProblem.UNMATCHED_END_GROUP, 0], // an end without a start
      [decodePutRequest, '7b 8401', ProtoDecodeProblem.UNMATCHED_END_GROUP, 1], // group 15 ended by 16
      [decodePutRequest, '7b 7801', ProtoDecodeProblem.UNTERMINATED_GROUP, 0],
      [decodePutRequest, tooDeep, ProtoDecodeProblem.GROUP_TOO_DEEP, GROUP_DEPTH_MAX],
    ];
    for (const [decode, hex, problem, offset] of cases) {
      assert.deepStrictEqual(refusal(decode, hex), { problem, offset }, hex);
    }
  });

  test('responses: defaults are written as protobufjs writes them, empty repeated fields are not', () => {
    const full = { cluster_id: 0, member_id: 2, revision: 0, raft_term: 0 };
    // 0a08 header {08 00, 10 02, 18 00, 20 00}; kvs left out; 1800 more=false; 2000 count=0.
    assert.equal(encodeRangeResponse({ header: full, kvs: [], more: false, count: 0 }).toString('hex'), '0a08080010021800200018002000');
    assert.equal(encodePutResponse({ header: { revision: 3 } }).toString('hex'), '0a021803');
    assert.equal(encodeDeleteRangeResponse({ header: { revision: -1 }, deleted: 0, prev_kvs: [] }).toString('hex'), '0a0b18ffffffffffffffffff011000');
    const kv = { key: Buffer.alloc(0), create_revision: 0, mod_revision: 0, version: 0, value: new Uint8Array(0), lease: 0n };
    assert.equal(encodePutResponse({ header: { revision: 3 }, prev_kv: kv }).toString('hex'), '0a021803120c0a001000180020002a003000');
    for (const response of [{ header: { revision: 3 }, prev_kv: kv }, { header: { revision: 3 } }]) {
      assert.equal(encodePutResponse(response).toString('hex'), method('Put').responseSerialize(response).toString('hex'));
    }
  });

  test('a response number that is not a safe integer is a programmer error', () => {
    assert.throws(() => encodePutResponse({ header: { revision: 2 ** 53 } }), { name: 'AssertionFailure' });
    assert.throws(() => encodePutResponse({ header: { revision: 1.5 } }), { name: 'AssertionFailure' });
  });
});

describe('KV codec: protobufjs quirks this codec does not copy', () => {
  test('protobufjs rounds an int64 past 2^53; the codec refuses it', () => {
    const buffer = Buffer.concat([tag(4, 0), varint(2n ** 53n + 1n)]);
    assert.deepStrictEqual(method('Range').requestDeserialize(buffer), { revision: 2 ** 53 });
    assert.equal(refusal(decodeRangeRequest, buffer.toString('hex')).problem, ProtoDecodeProblem.UNSAFE_INTEGER);
  });

  test('protobufjs misreads a non-canonical 6-byte tag; the codec reads it', () => {
    // Field 1 (key) with its tag padded to six bytes: protobufjs skips five bytes past the
    // fifth whatever they hold, so it reads past the end.
    const padded = Buffer.from('8a808080800003616263', 'hex');
    assert.throws(() => method('Put').requestDeserialize(padded), RangeError);
    assert.deepStrictEqual(decodePutRequest(padded), { key: Buffer.from('abc') });
  });

  test('protobufjs reads a field with the wrong wire type as if it were right; the codec refuses it', () => {
    assert.deepStrictEqual(method('Put').requestDeserialize(Buffer.from('0800', 'hex')), { key: Buffer.alloc(0) });
    assert.equal(refusal(decodePutRequest, '0800').problem, ProtoDecodeProblem.WRONG_WIRE_TYPE);
  });

  test('a bool is true for any non-zero varint (protobufjs looks at the low 32 bits only)', () => {
    const buffer = Buffer.concat([tag(4, 0), varint(2n ** 32n)]);
    assert.deepStrictEqual(method('Put').requestDeserialize(buffer), { prev_kv: false });
    assert.deepStrictEqual(decodePutRequest(buffer), { prev_kv: true });
  });
});

describe('KV codec in the server', () => {
  let member: SingleMember;
  let server: EtcdServer;
  let raw: Client;
  let etcd: Client;

  before(async () => {
    const clientUrl = await freeClientUrl();
    member = await startSingleMember({ name: 'one', peerUrls: ['http://127.0.0.1:2380'], clientUrls: [clientUrl] });
    server = await startEtcdServer({ backend: member.backend, listenUrls: [clientUrl], maxRequestBytes: 1024 * 1024 });
    const address = (server.urls[0] ?? '').replace('http://', '');
    // A client that sends and receives raw bytes, to send what no protobuf encoder would.
    const identity = (buffer: Buffer): Buffer => buffer;
    const rawMethod = (name: string): MethodDefinition<Buffer, Buffer> => ({
      path: method(name).path,
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    });
    const Raw = makeGenericClientConstructor({ Put: rawMethod('Put'), Range: rawMethod('Range'), DeleteRange: rawMethod('DeleteRange') }, 'RawKV');
    raw = new Raw(address, credentials.createInsecure());
    const Etcd = makeGenericClientConstructor(reference, 'KV');
    etcd = new Etcd(address, credentials.createInsecure());
  });

  after(async () => {
    raw.close();
    etcd.close();
    await server.close({ force: true });
    await member.stop();
  });

  const call = (client: Client, name: string, request: unknown): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, (...args: unknown[]) => void>)[name];
      fn?.call(client, request, (error: ServiceError | null, response: unknown) => (error === null ? resolve(response) : reject(error)));
    });

  test('the server uses the codec for Put, Range and DeleteRange, and Txn reads its lease compares again, with the same paths', () => {
    const kv = loadEtcdServices().kv;
    for (const [name, decode, encode] of [['Put', decodePutRequest, encodePutResponse], ['Range', decodeRangeRequest, encodeRangeResponse], ['DeleteRange', decodeDeleteRangeRequest, encodeDeleteRangeResponse]] as const) {
      assert.equal(kv[name]?.requestDeserialize, decode);
      assert.equal(kv[name]?.responseSerialize, encode);
      assert.equal(kv[name]?.path, method(name).path);
      assert.equal(kv[name]?.originalName, method(name).originalName);
    }
    assert.equal(kv['Txn']?.path, method('Txn').path);
    assert.notEqual(kv['Txn']?.requestDeserialize, undefined);
    assert.deepStrictEqual(Object.keys(kv), Object.keys(reference));
  });

  test('a malformed request is answered INTERNAL and the server keeps serving', async () => {
    for (const [name, hex] of [['Put', '0a05'], ['Range', '20ffffffffffffffffffff01'], ['DeleteRange', '0e']] as const) {
      const error = await call(raw, name, Buffer.from(hex, 'hex')).then(
        () => assert.fail(`${name} ${hex} was accepted`),
        (caught: ServiceError) => caught,
      );
      assert.equal(error.code, GrpcStatus.INTERNAL, `${name} ${hex}: ${error.details}`);
    }
    const put = (await call(etcd, 'Put', { key: Buffer.from('after'), value: Buffer.from('malformed') })) as { header: { revision: number } };
    const range = (await call(etcd, 'Range', { key: Buffer.from('after') })) as { kvs: { value: Buffer }[]; count: number; more: boolean };
    assert.equal(range.count, 1);
    assert.equal(range.more, false);
    assert.equal(range.kvs[0]?.value.toString(), 'malformed');
    const deleted = (await call(etcd, 'DeleteRange', { key: Buffer.from('after'), prev_kv: true })) as { deleted: number; prev_kvs: { mod_revision: number }[] };
    assert.equal(deleted.deleted, 1);
    assert.equal(deleted.prev_kvs[0]?.mod_revision, put.header.revision);
  });

  test('a negative revision decodes and reaches the service, which reads at the current revision as etcd does', async () => {
    await call(etcd, 'Put', { key: Buffer.from('negative'), value: Buffer.from('revision') });
    const request = Buffer.concat([Buffer.from('0a086e65676174697665', 'hex'), tag(4, 0), varint(-5n)]);
    const answer = (await call(raw, 'Range', request)) as Buffer;
    const range = method('Range').responseDeserialize(answer) as { header: { revision: number }; kvs: { value: Buffer }[] };
    assert.equal(range.header.revision, member.backend.header().revision);
    assert.equal(range.kvs[0]?.value.toString(), 'revision');
  });
});

// The message codec: every message type round-trips exactly; untrusted bytes either decode
// to well-formed messages or fail with INVALID_ARGUMENT, never anything else. The random
// parts are seeded (STRATAKV_SEED overrides the seed) and print their seed on failure.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Packr } from 'msgpackr';
import type { ConfState, Entry, Message, NodeId } from '../../src/raft/index.ts';
import { decodeErrorDetails, decodeMessages, encodeErrorDetails, encodeMessages, MESSAGE_TRACE_ENTRIES_MAX, MESSAGE_TRACEPARENT_CHARS_MAX, messageSizeBytes } from '../../src/transport/message-codec.ts';
import type { MessageTrace, TracedMessage } from '../../src/transport/message-codec.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';
import { sampleMessages } from './conformance.ts';

const SEED = process.env.STRATAKV_SEED === undefined ? 20_261_124 : Number(process.env.STRATAKV_SEED);
const ROUND_TRIP_BATCHES = 1_000;
const CORRUPTIONS = 5_000;

const raw = new Packr({ useRecords: false });

function withSeed(seed: number, run: (random: SeededRandom) => void): void {
  try {
    run(new SeededRandom(seed));
  } catch (error) {
    console.error(`message-codec: failed with seed ${seed} (rerun with STRATAKV_SEED=${seed})`);
    throw error;
  }
}

function randomInteger(random: SeededRandom): number {
  switch (random.intBelow(4)) {
    case 0: return 0;
    case 1: return random.intBelow(256);
    case 2: return random.nextUint32();
    default: return random.intBelow(0x20_0000) * 0x1_0000_0000 + random.nextUint32(); // up to 2^53 - 1
  }
}

function randomBytes(random: SeededRandom, max: number): Uint8Array {
  const bytes = new Uint8Array(random.intBelow(max + 1));
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = random.intBelow(256);
  return bytes;
}

function randomNodes(random: SeededRandom): NodeId[] {
  return Array.from({ length: random.intBelow(6) }, () => 1 + random.intBelow(1000));
}

function randomMessage(random: SeededRandom): Message {
  const from = 1 + random.intBelow(7);
  const to = 1 + random.intBelow(7);
  const term = randomInteger(random);
  const context = (): Uint8Array | undefined => (random.chance(1, 3) ? undefined : randomBytes(random, 32));
  switch (random.intBelow(12)) {
    case 0: {
      const entries: Entry[] = Array.from({ length: random.intBelow(10) }, () => ({
        term: randomInteger(random), index: randomInteger(random), type: random.chance(1, 5) ? 1 : 0, data: randomBytes(random, 300),
      }));
      return { type: 'append', from, to, term, logTerm: randomInteger(random), index: randomInteger(random), commit: randomInteger(random), entries };
    }
    case 1:
      return { type: 'appendResponse', from, to, term, index: randomInteger(random), reject: random.chance(1, 2), rejectHint: randomInteger(random), logTerm: randomInteger(random) };
    case 2:
    case 3:
      return { type: random.chance(1, 2) ? 'vote' : 'preVote', from, to, term, logTerm: randomInteger(random), index: randomInteger(random), leaderTransfer: random.chance(1, 2) };
    case 4:
    case 5:
      return { type: random.chance(1, 2) ? 'voteResponse' : 'preVoteResponse', from, to, term, reject: random.chance(1, 2), commit: randomInteger(random), commitTerm: randomInteger(random) };
    case 6: {
      const confState: ConfState = { voters: randomNodes(random), learners: randomNodes(random), votersOutgoing: randomNodes(random), learnersNext: randomNodes(random), autoLeave: random.chance(1, 2) };
      return { type: 'snapshot', from, to, term, snapshot: { metadata: { index: randomInteger(random), term: randomInteger(random), confState }, data: randomBytes(random, 2000) } };
    }
    case 7:
      return { type: 'heartbeat', from, to, term, commit: randomInteger(random), context: context() };
    case 8:
      return { type: 'heartbeatResponse', from, to, term, context: context() };
    case 9:
      return { type: 'timeoutNow', from, to, term };
    case 10:
      return { type: 'readIndex', from, to, term, context: randomBytes(random, 32) };
    default:
      return { type: 'readIndexResponse', from, to, term, index: randomInteger(random), context: randomBytes(random, 32) };
  }
}

function expectInvalid(bytes: Uint8Array, field?: string): void {
  assert.throws(() => decodeMessages(bytes), (error: unknown) => {
    assert.ok(isStrataError(error, ErrorCode.INVALID_ARGUMENT), `expected INVALID_ARGUMENT, got ${String(error)}`);
    if (field !== undefined) assert.equal(error.details.field, field);
    return true;
  });
}

describe('message codec', () => {
  test('every message type round-trips exactly, optional fields included', () => {
    const messages = sampleMessages(1, 2);
    const decoded = decodeMessages(encodeMessages(messages));
    assert.deepStrictEqual(decoded, messages);
    for (const message of decoded) {
      if (message.type === 'heartbeat' || message.type === 'heartbeatResponse') assert.ok(Object.hasOwn(message, 'context'));
    }
    assert.deepStrictEqual(decodeMessages(encodeMessages([])), []);
  });

  test('random batches round-trip exactly (seeded)', () => {
    withSeed(SEED, (random) => {
      for (let i = 0; i < ROUND_TRIP_BATCHES; i += 1) {
        const batch = Array.from({ length: random.intBelow(8) }, () => randomMessage(random));
        assert.deepStrictEqual(decodeMessages(encodeMessages(batch)), batch);
        for (const message of batch) assert.ok(messageSizeBytes(message) > 0);
      }
    });
  });

  test('corrupt bytes decode to well-formed messages or fail with INVALID_ARGUMENT (seeded)', () => {
    withSeed(SEED + 1, (random) => {
      const valid = encodeMessages(sampleMessages(1, 2));
      let rejected = 0;
      for (let i = 0; i < CORRUPTIONS; i += 1) {
        let bytes: Uint8Array;
        switch (random.intBelow(4)) {
          case 0: { // flip a few bytes of a valid batch
            bytes = valid.slice();
            for (let flips = 1 + random.intBelow(4); flips > 0; flips -= 1) bytes[random.intBelow(bytes.length)] = random.intBelow(256);
            break;
          }
          case 1: // truncate
            bytes = valid.slice(0, random.intBelow(valid.length));
            break;
          case 2: { // a valid batch of a random message with trailing garbage or a byte changed
            bytes = encodeMessages([randomMessage(random)]).slice();
            bytes[random.intBelow(bytes.length)] = random.intBelow(256);
            break;
          }
          default: // noise
            bytes = randomBytes(random, 64);
        }
        let decoded: Message[];
        try {
          decoded = decodeMessages(bytes);
        } catch (error) {
          assert.ok(isStrataError(error, ErrorCode.INVALID_ARGUMENT), `corruption ${i}: expected INVALID_ARGUMENT, got ${String(error)}`);
          rejected += 1;
          continue;
        }
        // Whatever decoded is well-formed: it survives another round trip unchanged.
        assert.deepStrictEqual(decodeMessages(encodeMessages(decoded)), decoded, `corruption ${i}`);
      }
      assert.ok(rejected > CORRUPTIONS / 2, `only ${rejected} of ${CORRUPTIONS} corruptions were rejected`);
      // Garbage never leaves the decoder in a state that changes later results.
      assert.deepStrictEqual(decodeMessages(valid), sampleMessages(1, 2));
    });
  });

  test('each malformed field is named', () => {
    expectInvalid(raw.pack({ a: 1 }), 'batch');
    expectInvalid(raw.pack([]), 'batch');
    expectInvalid(raw.pack([2]), 'version');
    expectInvalid(raw.pack([1, 'x']), 'message');
    expectInvalid(raw.pack([1, [1, 2]]), 'message');
    expectInvalid(raw.pack([1, [99, 1, 2, 3]]), 'type');
    expectInvalid(raw.pack([1, [9, -1, 2, 3]]), 'from');
    expectInvalid(raw.pack([1, [9, 1, 2.5, 3]]), 'to');
    expectInvalid(raw.pack([1, [9, 1, 2, 2 ** 60]]), 'term');
    expectInvalid(raw.pack([1, [9, 1, 2, 3, 4]]), 'message');
    expectInvalid(raw.pack([1, [0, 1, 2, 3, 0, 0, 0, 1, 1, 0]]), 'entries');
    expectInvalid(raw.pack([1, [0, 1, 2, 3, 0, 0, 0, 1, 1, 2, new Uint8Array(1)]]), 'entries[0].type');
    expectInvalid(raw.pack([1, [0, 1, 2, 3, 0, 0, 0, 1, 1, 0, 'text']]), 'entries[0].data');
    expectInvalid(raw.pack([1, [1, 1, 2, 3, 0, 1, 0, 0]]), 'reject');
    expectInvalid(raw.pack([1, [10, 1, 2, 3, null]]), 'context');
    expectInvalid(raw.pack([1, [7, 1, 2, 3, 0, 'x']]), 'context');
    expectInvalid(raw.pack([1, [6, 1, 2, 3, 1, 1, [1, -2], [], [], [], false, new Uint8Array(0)]]), 'snapshot.confState.voters[1]');
    expectInvalid(raw.pack([1, [6, 1, 2, 3, 1, 1, [], [], {}, [], false, new Uint8Array(0)]]), 'snapshot.confState.votersOutgoing');
    expectInvalid(Uint8Array.from([0xc1]), 'batch');
  });

  test('an append carries trace context in one more slot when it has some, and only then', () => {
    const entries: Entry[] = [
      { term: 2, index: 7, type: 0, data: Uint8Array.of(1) },
      { term: 2, index: 8, type: 0, data: Uint8Array.of(2) },
    ];
    const plain: Message = { type: 'append', from: 1, to: 2, term: 2, logTerm: 2, index: 6, commit: 6, entries };
    const trace: MessageTrace = {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      entries: [{ index: 8, traceparent: '00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01' }],
    };
    const traced: TracedMessage = { ...plain, trace };
    const [decodedPlain, decodedTraced] = decodeMessages(encodeMessages([plain, traced]));
    assert.deepStrictEqual(decodedPlain, plain);
    assert.ok(!Object.hasOwn(decodedPlain as object, 'trace'), 'an append without trace context decodes without the field');
    assert.deepStrictEqual(decodedTraced, traced);
    assert.equal(encodeMessages([plain]).byteLength, encodeMessages([{ ...plain, trace: undefined } as TracedMessage]).byteLength, 'an undefined trace adds nothing');
    assert.ok(messageSizeBytes(traced) > messageSizeBytes(plain));
    const header = [0, 1, 2, 3, 0, 0, 0];
    expectInvalid(raw.pack([1, [...header, 'x']]), 'trace');
    expectInvalid(raw.pack([1, [...header, ['tp', 1]]]), 'trace');
    expectInvalid(raw.pack([1, [...header, [5]]]), 'trace.traceparent');
    expectInvalid(raw.pack([1, [...header, ['x'.repeat(MESSAGE_TRACEPARENT_CHARS_MAX + 1)]]]), 'trace.traceparent');
    expectInvalid(raw.pack([1, [...header, ['tp', -1, 'tp']]]), 'trace[0].index');
    expectInvalid(raw.pack([1, [...header, ['tp', 1, null]]]), 'trace[0].traceparent');
    const tooMany = ['tp', ...Array.from({ length: MESSAGE_TRACE_ENTRIES_MAX + 1 }, (_, at) => [at, 'tp']).flat()];
    expectInvalid(raw.pack([1, [...header, tooMany]]), 'trace');
  });

  test('error details round-trip, and anything unusable becomes {}', () => {
    assert.deepEqual(decodeErrorDetails(encodeErrorDetails({ leaderId: 3, name: 'x', list: [1, 2] })), { leaderId: 3, name: 'x', list: [1, 2] });
    assert.deepEqual(decodeErrorDetails(encodeErrorDetails({})), {});
    assert.deepEqual(decodeErrorDetails(raw.pack([1, 2])), {});
    assert.deepEqual(decodeErrorDetails(Uint8Array.from([0xc1])), {});
  });
});

// bench/transport.ts — the peer transport's cost: the codec on the hot path (an append of
// 64 entries of 100 bytes), and two GrpcTransports in one process over 127.0.0.1:
// ping-pong round trips of a 1-entry append (each direction of the one stream), unary
// request round trips, and the throughput of 64-entry appends with a window of appends in
// flight. Prints a table, then one JSON line per result.
//
// Run: scripts/node24.sh node bench/transport.ts [--quick]

import type { Entry, Message } from '../src/raft/index.ts';
import { GrpcTransport } from '../src/transport/grpc-transport.ts';
import { decodeMessages, encodeMessages } from '../src/transport/message-codec.ts';
import type { TransportHandlers } from '../src/transport/transport.ts';
import { ErrorCode, StrataError } from '../src/util/errors.ts';
import { SeededRandom } from '../src/util/random.ts';

const QUICK = process.argv.includes('--quick');
const CODEC_ITERATIONS = QUICK ? 2_000 : 20_000;
const PING_PONG_ROUNDS = QUICK ? 1_000 : 10_000;
const REQUEST_ROUNDS = QUICK ? 500 : 5_000;
const THROUGHPUT_APPENDS = QUICK ? 2_000 : 20_000;
const THROUGHPUT_WINDOW = 32;
const ENTRY_BYTES = 100;

interface Result {
  readonly name: string;
  readonly unit: string;
  readonly p50?: number;
  readonly p99?: number;
  readonly mean?: number;
  readonly perSecond?: number;
  readonly note?: string;
}

function entries(count: number, firstIndex: number): Entry[] {
  return Array.from({ length: count }, (_, i) => ({ term: 7, index: firstIndex + i, type: 0 as const, data: new Uint8Array(ENTRY_BYTES).fill(i & 0xff) }));
}

function append(from: number, to: number, count: number, firstIndex: number): Message {
  return { type: 'append', from, to, term: 7, logTerm: 7, index: firstIndex - 1, commit: firstIndex - 1, entries: entries(count, firstIndex) };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;
}

function summarize(name: string, samplesUs: number[]): Result {
  samplesUs.sort((a, b) => a - b);
  const mean = samplesUs.reduce((sum, value) => sum + value, 0) / samplesUs.length;
  return { name, unit: 'µs', p50: percentile(samplesUs, 50), p99: percentile(samplesUs, 99), mean };
}

function benchCodec(count: number): Result[] {
  const batch = [append(1, 2, count, 1000)];
  const bytes = encodeMessages(batch);
  for (let i = 0; i < CODEC_ITERATIONS / 10; i += 1) decodeMessages(encodeMessages(batch));
  const encode: number[] = [];
  const decode: number[] = [];
  const both: number[] = [];
  for (let i = 0; i < CODEC_ITERATIONS; i += 1) {
    const t0 = performance.now();
    const encoded = encodeMessages(batch);
    const t1 = performance.now();
    decodeMessages(encoded);
    const t2 = performance.now();
    encode.push((t1 - t0) * 1000);
    decode.push((t2 - t1) * 1000);
    both.push((t2 - t0) * 1000);
  }
  const note = `${bytes.byteLength} bytes encoded`;
  return [
    { ...summarize(`codec encode, ${count}-entry append`, encode), note },
    { ...summarize(`codec decode, ${count}-entry append`, decode), note },
    { ...summarize(`codec encode+decode, ${count}-entry append`, both), note },
  ];
}

/** Pair holds two started, connected transports whose handlers the benchmark swaps. */
interface Pair {
  readonly a: GrpcTransport;
  readonly b: GrpcTransport;
  onA: (messages: readonly Message[]) => void;
  onB: (messages: readonly Message[]) => void;
}

async function startPair(): Promise<Pair> {
  const a = new GrpcTransport({ localId: 1, clusterId: 9, listenUrls: ['http://127.0.0.1:0'], random: new SeededRandom(1) });
  const b = new GrpcTransport({ localId: 2, clusterId: 9, listenUrls: ['http://127.0.0.1:0'], random: new SeededRandom(2) });
  const pair: Pair = { a, b, onA: () => {}, onB: () => {} };
  const handlers = (side: 'a' | 'b'): TransportHandlers => ({
    onMessages: (messages) => (side === 'a' ? pair.onA(messages) : pair.onB(messages)),
    onUnreachable: (peer) => console.error(`bench: ${side} reports peer ${peer} unreachable (messages dropped)`),
    onRequest: (_from, _kind, body) => Promise.resolve(body),
    onSnapshot: () => Promise.reject(new StrataError(ErrorCode.UNAVAILABLE, 'the benchmark receives no snapshots')),
  });
  await a.start(handlers('a'));
  await b.start(handlers('b'));
  a.setPeer(2, [b.boundUrls[0] as string]);
  b.setPeer(1, [a.boundUrls[0] as string]);
  await a.whenConnected(2);
  await b.whenConnected(1);
  return pair;
}

/** pingPong: `sender` sends a 1-entry append, the other answers, `rounds` times in sequence. */
async function pingPong(pair: Pair, initiator: 'a' | 'b', rounds: number): Promise<number[]> {
  const [from, to] = initiator === 'a' ? [pair.a, pair.b] : [pair.b, pair.a];
  const samples: number[] = [];
  await new Promise<void>((resolve) => {
    let round = 0;
    let startedAt = 0;
    const ping = (): void => {
      startedAt = performance.now();
      from.send([append(from.localId, to.localId, 1, round + 1)]);
    };
    const onPing = (messages: readonly Message[]): void => {
      for (const message of messages) {
        if (message.type !== 'append') continue;
        to.send([{ type: 'appendResponse', from: to.localId, to: from.localId, term: 7, index: message.index + 1, reject: false, rejectHint: 0, logTerm: 0 }]);
      }
    };
    const onPong = (): void => {
      samples.push((performance.now() - startedAt) * 1000);
      round += 1;
      if (round === rounds) resolve();
      else ping();
    };
    if (initiator === 'a') {
      pair.onB = onPing;
      pair.onA = onPong;
    } else {
      pair.onA = onPing;
      pair.onB = onPong;
    }
    ping();
  });
  return samples;
}

async function requestRoundTrips(pair: Pair, rounds: number): Promise<number[]> {
  const samples: number[] = [];
  const body = new Uint8Array(ENTRY_BYTES);
  for (let i = 0; i < rounds; i += 1) {
    const t0 = performance.now();
    await pair.a.request(2, 'propose', body);
    samples.push((performance.now() - t0) * 1000);
  }
  return samples;
}

/** throughput streams 64-entry appends from a to b with THROUGHPUT_WINDOW unacknowledged at most. */
async function throughput(pair: Pair, appends: number): Promise<Result> {
  const entriesPerAppend = 64;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let acknowledged = 0;
    const fill = (): void => {
      const batch: Message[] = [];
      while (sent < appends && sent - acknowledged < THROUGHPUT_WINDOW) {
        batch.push(append(1, 2, entriesPerAppend, sent * entriesPerAppend + 1));
        sent += 1;
      }
      if (batch.length > 0) pair.a.send(batch);
    };
    pair.onB = (messages) => {
      const last = messages[messages.length - 1];
      if (last?.type !== 'append') return;
      pair.b.send([{ type: 'appendResponse', from: 2, to: 1, term: 7, index: last.index + last.entries.length, reject: false, rejectHint: 0, logTerm: 0 }]);
    };
    pair.onA = (messages) => {
      for (const message of messages) {
        if (message.type !== 'appendResponse') continue;
        acknowledged = Math.max(acknowledged, Math.ceil((message.index - 1) / entriesPerAppend));
      }
      if (acknowledged >= appends) resolve();
      else fill();
    };
    fill();
  });
  const seconds = (performance.now() - started) / 1000;
  const entriesPerSecond = (appends * entriesPerAppend) / seconds;
  return {
    name: `throughput, 64-entry appends (window ${THROUGHPUT_WINDOW})`,
    unit: 'entries/s',
    perSecond: entriesPerSecond,
    note: `${Math.round(appends / seconds)} appends/s, ${((entriesPerSecond * ENTRY_BYTES) / 1e6).toFixed(1)} MB/s of entry data`,
  };
}

function format(value: number | undefined): string {
  if (value === undefined) return '';
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(2);
}

async function main(): Promise<void> {
  const results: Result[] = [...benchCodec(64), ...benchCodec(1)];
  const pair = await startPair();
  try {
    await pingPong(pair, 'a', Math.min(500, PING_PONG_ROUNDS)); // warm up
    results.push(summarize('round trip, 1-entry append, dialler first', await pingPong(pair, 'a', PING_PONG_ROUNDS)));
    results.push(summarize('round trip, 1-entry append, acceptor first', await pingPong(pair, 'b', PING_PONG_ROUNDS)));
    await requestRoundTrips(pair, Math.min(200, REQUEST_ROUNDS)); // warm up
    results.push(summarize('unary request round trip, 100-byte body', await requestRoundTrips(pair, REQUEST_ROUNDS)));
    await throughput(pair, Math.min(200, THROUGHPUT_APPENDS)); // warm up
    results.push(await throughput(pair, THROUGHPUT_APPENDS));
  } finally {
    await pair.a.close();
    await pair.b.close();
  }

  const header = ['benchmark', 'p50', 'p99', 'mean', 'per second', 'unit', 'note'];
  const rows = results.map((r) => [r.name, format(r.p50), format(r.p99), format(r.mean), format(r.perSecond), r.unit, r.note ?? '']);
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, i) => (i === 0 || i >= 5 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  console.log(`node ${process.version}, ${QUICK ? 'quick' : 'full'} run`);
  console.log(line(header));
  console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const row of rows) console.log(line(row));
  console.log();
  for (const result of results) console.log(JSON.stringify({ bench: 'transport', ...result }));
}

await main();

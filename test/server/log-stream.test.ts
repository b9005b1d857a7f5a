// The log-delta stream end to end: Admin.LogStream served by startEtcdServer over three real
// in-memory RaftNodes (memory log, memory-level, MemoryTransport, snapshots every 150 entries,
// the logs then compacted behind the latest snapshot)
// and read with the real LogStreamClient over gRPC. It checks that the entries from N are the
// log's; that a compacted N gives the snapshot (a file `stratakv snapshot` verifies) and then
// exactly the entries after it; that a consumer killed mid-stream and started again from its
// last verified index, or broken off by a member's server going away, gets exactly the rest;
// that following delivers new commits; that a consumer that does not acknowledge gets no more
// than the window; and that bad requests are refused naming the field.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { measureLogStream } from '../../bench/log-delta/measure.ts';
import type { LogStreamEvent } from '../../src/client/index.ts';
import { LogStreamClient } from '../../src/client/index.ts';
import type { WireLogChunk, WireLogStreamRequest } from '../../src/diff/index.ts';
import { ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS, ADMIN_SERVICE_NAME, CODE_METADATA_KEY, FIELD_METADATA_KEY, WINDOW_CHUNKS_MAX } from '../../src/diff/index.ts';
import { RaftNode, verifySavedSnapshot } from '../../src/node/index.ts';
import type { RaftNodeOptions } from '../../src/node/index.ts';
import type { Entry } from '../../src/raft/index.ts';
import type { EtcdServer } from '../../src/server/index.ts';
import { RaftNodeBackend, raftNodeLogSource, startEtcdServer } from '../../src/server/index.ts';
import { decodeKvCommand, MemoryLogStore, openMemoryKvStateMachine } from '../../src/storage/index.ts';
import type { PutRequest } from '../../src/storage/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { SYSTEM_CLOCK } from '../../src/util/index.ts';

const MEMBERS = ['a', 'b', 'c'];
const WRITES = 600;
const WAIT_MS_MAX = 15_000;

let nodes: RaftNode[] = [];
const servers: EtcdServer[] = [];
let leader: RaftNode;
let follower: RaftNode;
let leaderEndpoint: string;
let followerEndpoint: string;
let directory: string;
// Each member's log, to compact it: the snapshotter keeps a catch-up tail sized by the measured
// write rate (seconds of writes), which would make how much a test's log is compacted depend on
// the machine's speed.
const logs = new Map<string, MemoryLogStore>();

const peerUrl = (name: string): string => `http://${name}.log-stream.test:2380`;

function memberOptions(network: MemoryNetwork, name: string): RaftNodeOptions {
  return {
    name,
    initialCluster: MEMBERS.map((member) => ({ name: member, peerUrls: [peerUrl(member)] })),
    initialClusterState: 'new',
    initialClusterToken: 'log-stream-test',
    advertisePeerUrls: [peerUrl(name)],
    advertiseClientUrls: [],
    heartbeatIntervalMs: 20,
    electionTimeoutMs: 200,
    clock: SYSTEM_CLOCK,
    // Small counts so that the log is compacted behind snapshots during the test.
    snapshotPolicy: { snapshotCount: 150, catchUpEntries: 40, snapshotDutyCycleMax: 1 },
    createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
    storage: async () => {
      const log = new MemoryLogStore();
      logs.set(name, log);
      return { log, stateMachine: await openMemoryKvStateMachine() };
    },
  };
}

async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS_MAX;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}: ${JSON.stringify(nodes.map((node) => ({ applied: node.streamCommittedIndex(), first: node.logFirstIndex(), snapshots: node.status().snapshots })))}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function put(key: string, value: Uint8Array): Promise<unknown> {
  return leader.kv({ type: 'put', key: Buffer.from(key), value }, { timeoutMs: 10_000 });
}

// valueOf gives write `n` a value of varied size: most small, some of 200 KB (several chunks'
// worth of entries, and entries larger than the smallest chunk size).
function valueOf(n: number): Uint8Array {
  return Buffer.alloc(n % 50 === 7 ? 200_000 : 100 + (n % 13) * 37, n % 256);
}

before(async () => {
  const network = new MemoryNetwork();
  nodes = await Promise.all(MEMBERS.map((name) => RaftNode.start(memberOptions(network, name))));
  await until('a leader is known everywhere', () => nodes.every((node) => node.leaderId() !== 0));
  const found = nodes.find((node) => node.status().role === 'leader');
  assert.ok(found !== undefined);
  leader = found;
  follower = nodes.find((node) => node !== leader) as RaftNode;
  for (let n = 0; n < WRITES; n += 1) await put(`key/${String(n).padStart(4, '0')}`, valueOf(n));
  await until('every member applied every write and has a snapshot', () => nodes.every((node) => node.streamCommittedIndex() === leader.streamCommittedIndex() && (node.status().snapshots.latest?.index ?? 0) > 300));
  for (const [index, node] of nodes.entries()) {
    const latest = node.status().snapshots.latest?.index ?? 0;
    const log = logs.get(MEMBERS[index] ?? '');
    assert.ok(log !== undefined);
    // Through 200: entries 201.. stay for the tests that read the log, and the latest snapshot
    // is the one a compacted index gets.
    if (log.firstIndex() <= 200 && latest > 200) log.compact(200);
  }
  for (let n = WRITES; n < WRITES + 100; n += 1) await put(`key/${String(n).padStart(4, '0')}`, valueOf(n));
  await until('every member applied every write', () => nodes.every((node) => node.streamCommittedIndex() === leader.streamCommittedIndex()));
  for (const node of [leader, follower]) {
    servers.push(await startEtcdServer({ backend: new RaftNodeBackend(node, 'test'), logSource: raftNodeLogSource(node), listenUrls: ['http://127.0.0.1:0'], maxRequestBytes: 1.5 * 1024 * 1024 }));
  }
  leaderEndpoint = (servers[0]?.urls[0] ?? '').replace('http://', '');
  followerEndpoint = (servers[1]?.urls[0] ?? '').replace('http://', '');
  directory = mkdtempSync(join(tmpdir(), 'stratakv-log-stream-'));
});

after(async () => {
  for (const server of servers) await server.close({ force: true });
  for (const node of nodes) await node.stop({ transferLeadership: false });
  if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
});

// logOf reads the member's own log from..to, the reference the stream must equal.
function logOf(node: RaftNode, from: number, to: number): Entry[] {
  const entries: Entry[] = [];
  for (let next = from; next <= to; ) {
    const read = node.readCommittedEntries(next, to, 64 * 1024 * 1024);
    entries.push(...read);
    next += read.length;
  }
  return entries;
}

const shape = (entries: readonly Entry[]): string[] => entries.map((entry) => `${entry.index}/${entry.term}/${entry.type}/${Buffer.from(entry.data).toString('base64')}`);

async function collect(stream: AsyncIterable<LogStreamEvent>, stopAfter?: (event: LogStreamEvent) => boolean): Promise<LogStreamEvent[]> {
  const events: LogStreamEvent[] = [];
  for await (const event of stream) {
    events.push(event);
    if (stopAfter?.(event) === true) break;
  }
  return events;
}

const entriesOf = (events: readonly LogStreamEvent[]): Entry[] => events.flatMap((event) => (event.type === 'entries' ? event.entries : []));

test('the entries from N are the log: same indexes, terms, types and bytes, from leader and follower alike', async () => {
  for (const [node, endpoint] of [[leader, leaderEndpoint], [follower, followerEndpoint]] as const) {
    const from = node.logFirstIndex() + 3;
    const end = node.streamCommittedIndex();
    const client = new LogStreamClient({ endpoints: [endpoint] });
    try {
      const events = await collect(client.stream({ fromIndex: from, maxChunkBytes: 64 * 1024 }));
      assert.deepEqual(shape(entriesOf(events)), shape(logOf(node, from, end)));
      assert.ok(events.filter((event) => event.type === 'entries').length > 3, 'several chunks');
      assert.deepEqual(events.at(-1)?.type === 'end' && events.at(-1), { ...events.at(-1), type: 'end', lastIndex: end });
      assert.ok(!events.some((event) => event.type.startsWith('snapshot')), 'no snapshot: N is in the log');
    } finally {
      client.close();
    }
  }
});

test('a compacted N gives the snapshot, a file snapshot verify accepts, then exactly the entries after it', async () => {
  assert.ok(leader.logFirstIndex() > 2, 'the log was compacted');
  const client = new LogStreamClient({ endpoints: [followerEndpoint] });
  try {
    const events = await collect(client.stream({ fromIndex: 2 }));
    const begin = events[0];
    assert.equal(begin?.type, 'snapshot-begin');
    const end = events.find((event) => event.type === 'snapshot-end');
    assert.ok(end?.type === 'snapshot-end');
    const snapshotIndex = end.snapshot.index;
    const data = Buffer.concat(events.flatMap((event) => (event.type === 'snapshot-data' ? [event.bytes] : [])));
    assert.equal(data.byteLength, end.snapshot.byteLength);
    // The file followed by its SHA-256 is what `stratakv snapshot save` writes.
    const path = join(directory, 'streamed.snapshot');
    writeFileSync(path, Buffer.concat([data, Buffer.from(end.fileSha256, 'hex')]));
    const verified = await verifySavedSnapshot(path);
    assert.equal(verified.info.index, snapshotIndex);
    assert.equal(verified.info.sha256, end.snapshot.sha256);
    assert.equal(verified.footer.metadata.revision, end.snapshot.revision);
    const entries = entriesOf(events);
    assert.equal(entries[0]?.index, snapshotIndex + 1, 'entries start right after the snapshot');
    assert.deepEqual(shape(entries), shape(logOf(follower, snapshotIndex + 1, entries.at(-1)?.index ?? 0)));
  } finally {
    client.close();
  }
});

test('a consumer killed mid-stream and started again from its last verified index gets exactly the rest', async () => {
  const from = leader.logFirstIndex();
  const end = leader.streamCommittedIndex();
  const client = new LogStreamClient({ endpoints: [leaderEndpoint] });
  try {
    // Killed after its third chunk: iteration stops, the call is cancelled.
    let chunks = 0;
    const first = await collect(client.stream({ fromIndex: from, toIndex: end, maxChunkBytes: 64 * 1024 }), (event) => event.type === 'entries' && ++chunks === 3);
    const verified = first.at(-1)?.type === 'entries' ? (first.at(-1) as { lastIndex: number }).lastIndex : 0;
    assert.ok(verified > from && verified < end, `stopped in the middle (${verified} of ${from}..${end})`);
    const rest = await collect(client.stream({ fromIndex: verified + 1, toIndex: end }));
    assert.deepEqual(shape([...entriesOf(first), ...entriesOf(rest)]), shape(logOf(leader, from, end)), 'no gap, no repeat');
  } finally {
    client.close();
  }
});

test('the client resumes by itself on the next endpoint when a member goes away mid-stream', async () => {
  // A server of its own over the follower, closed in the middle of the stream.
  const doomed = await startEtcdServer({ backend: new RaftNodeBackend(follower, 'test'), logSource: raftNodeLogSource(follower), listenUrls: ['http://127.0.0.1:0'], maxRequestBytes: 1024 * 1024 });
  const doomedEndpoint = (doomed.urls[0] ?? '').replace('http://', '');
  const from = Math.max(leader.logFirstIndex(), follower.logFirstIndex());
  const end = leader.streamCommittedIndex();
  const client = new LogStreamClient({ endpoints: [doomedEndpoint, leaderEndpoint] });
  try {
    const events: LogStreamEvent[] = [];
    let closeMs = Number.NaN;
    for await (const event of client.stream({ fromIndex: from, toIndex: end, maxChunkBytes: 64 * 1024 })) {
      events.push(event);
      if (events.length === 2) {
        // The consumer is between two events (its stream paused): the server must still close
        // at once, ending the open stream, and not wait for it.
        const startedMs = Date.now();
        await doomed.close({ force: true });
        closeMs = Date.now() - startedMs;
      }
    }
    const endpoints = [...new Set(events.filter((event) => event.type === 'entries').map((event) => event.endpoint))];
    assert.ok(closeMs < 5_000, `the server closed in ${closeMs} ms with a stream open`);
    assert.deepEqual(endpoints, [doomedEndpoint, leaderEndpoint], 'the stream moved to the other member');
    assert.deepEqual(shape(entriesOf(events)), shape(logOf(leader, from, end)), 'no gap, no repeat across the break');
  } finally {
    client.close();
    await doomed.close({ force: true });
  }
});

test('following delivers new commits as they are applied', async () => {
  const client = new LogStreamClient({ endpoints: [followerEndpoint] });
  const abort = new AbortController();
  try {
    const from = follower.streamCommittedIndex() + 1;
    const keys: string[] = [];
    const reading = (async () => {
      for await (const event of client.stream({ fromIndex: from, follow: true, signal: abort.signal })) {
        for (const entry of event.type === 'entries' ? event.entries : []) {
          if (entry.data.byteLength === 0 || entry.data[0] !== 1) continue;
          keys.push(Buffer.from((decodeKvCommand(entry.data).request as PutRequest).key).toString());
          if (keys.length === 5) return;
        }
      }
    })();
    for (let n = 0; n < 5; n += 1) await put(`follow/${n}`, Buffer.from(`v${n}`));
    await reading;
    assert.deepEqual(keys, ['follow/0', 'follow/1', 'follow/2', 'follow/3', 'follow/4']);
  } finally {
    abort.abort();
    client.close();
  }
});

// rawCall opens Admin.LogStream without LogStreamClient (which would acknowledge, and check
// its requests before sending them).
function rawCall(endpoint: string): { client: grpc.Client; call: grpc.ClientDuplexStream<WireLogStreamRequest, WireLogChunk> } {
  const definition = protoLoader.loadSync(ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS);
  const method = (definition[ADMIN_SERVICE_NAME] as protoLoader.ServiceDefinition)['LogStream'] as protoLoader.MethodDefinition<WireLogStreamRequest, WireLogChunk>;
  const client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  return { client, call: client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, new grpc.Metadata(), {}) };
}

test('back-pressure: a consumer that acknowledges nothing gets no more than the window, and one ack lets one more through', async () => {
  const { client, call } = rawCall(leaderEndpoint);
  const chunks: WireLogChunk[] = [];
  call.on('data', (chunk: WireLogChunk) => chunks.push(chunk));
  call.on('error', () => undefined);
  try {
    call.write({ start: { from_index: leader.logFirstIndex(), max_chunk_bytes: 64 * 1024 } });
    await until('the window is full', () => chunks.length >= WINDOW_CHUNKS_MAX);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(chunks.length, WINDOW_CHUNKS_MAX, 'nothing beyond the window');
    call.write({ ack: { sequence: 1, verified_index: chunks[0]?.last_index ?? 0 } });
    await until('one more chunk', () => chunks.length > WINDOW_CHUNKS_MAX);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(chunks.length, WINDOW_CHUNKS_MAX + 1, 'exactly one more');
  } finally {
    call.cancel();
    client.close();
  }
});

test('bad requests end the call with INVALID_ARGUMENT naming the field', async () => {
  const cases: [WireLogStreamRequest, string][] = [
    [{ start: { from_index: 0 } }, 'from_index'],
    [{ start: { from_index: 5, max_chunk_bytes: 1000 } }, 'max_chunk_bytes'],
    [{ start: { from_index: 5, to_index: 2 } }, 'to_index'],
    [{ ack: { sequence: 1 } }, 'ack'],
  ];
  for (const [request, field] of cases) {
    const { client, call } = rawCall(leaderEndpoint);
    try {
      const error = await new Promise<grpc.ServiceError>((resolve) => {
        call.on('data', () => undefined);
        call.on('error', resolve);
        call.write(request);
      });
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(request));
      assert.equal(error.metadata.get(CODE_METADATA_KEY)[0], 'INVALID_ARGUMENT');
      assert.equal(error.metadata.get(FIELD_METADATA_KEY)[0], field);
      assert.match(error.details, new RegExp(field));
    } finally {
      client.close();
    }
  }
  const client = new LogStreamClient({ endpoints: [leaderEndpoint] });
  await assert.rejects(collect(client.stream({ fromIndex: 0 })), (error) => error instanceof Error && 'code' in error && error.code === 'INVALID_ARGUMENT' && /from_index/.test(error.message));
  client.close();
});

test('measureLogStream reports the bytes and seconds of a stream (for the integrity benchmark)', async () => {
  const result = await measureLogStream({ endpoints: [leaderEndpoint], fromIndex: 1 });
  assert.ok(result.snapshotBytes > 0, 'index 1 is compacted: a snapshot came first');
  assert.ok(result.entries > 0 && result.entryBytes > 0);
  assert.equal(result.bytes, result.entryBytes + result.snapshotBytes);
  assert.ok(result.seconds > 0 && result.megabytesPerSecond > 0);
  assert.ok(result.lastIndex >= WRITES);
});

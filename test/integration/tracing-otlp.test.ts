// Traces out of real `stratakv serve` processes: the test runs an OTLP/HTTP receiver (JSON),
// starts a 3-member cluster whose OTEL_* variables point at it, sends ONE Put to a follower with
// a W3C traceparent in its gRPC metadata (as an etcd client that propagates context does), and
// waits for the trace: the follower's server, propose and forward spans, the leader's propose
// span under the forward, its persist / commit / apply spans linked to that propose span, and
// a follower's persist span under the leader's append. Every wait is bounded.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import { TestCluster } from './cluster-process.ts';
import type { MemberProcess } from './cluster-process.ts';
import { putWithMetadata } from '../obs/raw-put.ts';

// How long the spans of the put may take to arrive (the members export every 100 ms).
const SPANS_TIMEOUT_MS = 20_000;
const RECEIVED_BYTES_MAX = 16 * 1024 * 1024;
const RECEIVED_SPANS_MAX = 100_000;

/** ReceivedSpan is one span as an OTLP/JSON export names it, with its member. */
interface ReceivedSpan {
  readonly member: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: number;
  readonly links: readonly { readonly traceId: string; readonly spanId: string }[];
  readonly attributes: Readonly<Record<string, unknown>>;
}

// OtlpReceiver answers POST /v1/traces (OTLP/HTTP, JSON) and keeps what it receives, bounded.
class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  requests = 0;
  private readonly server: Server;

  constructor() {
    this.server = createServer((request, response) => this.receive(request, response));
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    assert.ok(address !== null && typeof address === 'object');
    return `http://127.0.0.1:${address.port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private receive(request: IncomingMessage, response: ServerResponse): void {
    const chunks: Buffer[] = [];
    let bytes = 0;
    request.on('data', (chunk: Buffer) => {
      bytes += chunk.byteLength;
      if (bytes <= RECEIVED_BYTES_MAX) chunks.push(chunk);
    });
    request.on('end', () => {
      this.requests += 1;
      if (request.method !== 'POST' || request.url !== '/v1/traces' || !String(request.headers['content-type']).includes('json')) {
        response.writeHead(404).end();
        return;
      }
      try {
        this.keep(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        response.writeHead(400).end();
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  }

  // keep reads an ExportTraceServiceRequest in OTLP's JSON mapping (ids in hex).
  private keep(body: unknown): void {
    const resourceSpans = (body as { resourceSpans?: unknown[] }).resourceSpans ?? [];
    for (const resourceSpan of resourceSpans as { resource?: { attributes?: Attribute[] }; scopeSpans?: { spans?: Record<string, unknown>[] }[] }[]) {
      const resource = attributesOf(resourceSpan.resource?.attributes);
      for (const scope of resourceSpan.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          if (this.spans.length >= RECEIVED_SPANS_MAX) return;
          this.spans.push({
            member: String(resource['service.instance.id']),
            traceId: String(span.traceId),
            spanId: String(span.spanId),
            parentSpanId: String(span.parentSpanId ?? ''),
            name: String(span.name),
            kind: Number(span.kind),
            links: ((span.links as { traceId: string; spanId: string }[] | undefined) ?? []).map((link) => ({ traceId: link.traceId, spanId: link.spanId })),
            attributes: attributesOf(span.attributes as Attribute[] | undefined),
          });
        }
      }
    }
  }
}

interface Attribute {
  readonly key: string;
  readonly value: Readonly<Record<string, unknown>>;
}

function attributesOf(list: readonly Attribute[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) out[key] = value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue;
  return out;
}

// OTLP's span kinds (SPAN_KIND_*): INTERNAL 1, SERVER 2, CLIENT 3.
const KIND_INTERNAL = 1;
const KIND_SERVER = 2;
const KIND_CLIENT = 3;

const receiver = new OtlpReceiver();
let cluster: TestCluster | undefined;
let leader: MemberProcess | undefined;

before(async () => {
  const endpoint = await receiver.start();
  cluster = await TestCluster.start(3, {
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_TRACES_SAMPLER: 'always_on',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_SERVICE_NAME: 'stratakv-it',
    },
  });
  leader = await cluster.waitForLeader();
});

after(async () => {
  await cluster?.stop();
  await receiver.close();
});

test('one put through a follower: the trace holds both members\' spans, linked, under the client\'s traceparent', async () => {
  assert.ok(cluster !== undefined && leader !== undefined);
  const follower = cluster.members.find((member) => member !== leader) as MemberProcess;
  const otherFollower = cluster.members.find((member) => member !== leader && member !== follower) as MemberProcess;
  const traceId = randomBytes(16).toString('hex');
  const clientSpanId = randomBytes(8).toString('hex');
  await putWithMetadata(follower.endpoint, 'traced-key', 'traced-value', { traceparent: `00-${traceId}-${clientSpanId}-01` });

  const inTrace = (): ReceivedSpan[] => receiver.spans.filter((span) => span.traceId === traceId);
  const find = (member: MemberProcess, name: string): ReceivedSpan | undefined => inTrace().find((span) => span.member === member.name && span.name === name);
  const wanted: [MemberProcess, string][] = [
    [follower, 'etcdserverpb.KV/Put'],
    [follower, 'raft.propose'],
    [follower, 'raft.forward'],
    [leader, 'raft.propose'],
    [leader, 'raft.persist'],
    [leader, 'raft.replicate'],
    [leader, 'raft.commit'],
    [leader, 'raft.apply'],
    [follower, 'raft.persist'],
    [follower, 'raft.apply'],
    [otherFollower, 'raft.persist'],
  ];
  const deadline = Date.now() + SPANS_TIMEOUT_MS;
  while (Date.now() < deadline && !wanted.every(([member, name]) => find(member, name) !== undefined)) await new Promise((resolve) => setTimeout(resolve, 100));
  const missing = wanted.filter(([member, name]) => find(member, name) === undefined).map(([member, name]) => `${member.name}:${name}`);
  assert.deepEqual(missing, [], `spans of trace ${traceId} missing after ${SPANS_TIMEOUT_MS} ms (received ${receiver.spans.length} spans in ${receiver.requests} exports: ${inTrace().map((span) => `${span.member}:${span.name}`).join(', ')})`);

  const server = find(follower, 'etcdserverpb.KV/Put') as ReceivedSpan;
  assert.equal(server.kind, KIND_SERVER);
  assert.equal(server.parentSpanId, clientSpanId, 'the server span continues the client\'s traceparent');
  assert.equal(server.attributes['rpc.method'], 'Put');
  const followerPropose = find(follower, 'raft.propose') as ReceivedSpan;
  assert.equal(followerPropose.kind, KIND_INTERNAL);
  assert.equal(followerPropose.parentSpanId, server.spanId);
  const forward = find(follower, 'raft.forward') as ReceivedSpan;
  assert.equal(forward.kind, KIND_CLIENT);
  assert.equal(forward.parentSpanId, followerPropose.spanId);

  const leaderPropose = find(leader, 'raft.propose') as ReceivedSpan;
  assert.equal(leaderPropose.kind, KIND_SERVER);
  assert.equal(leaderPropose.parentSpanId, forward.spanId, 'across members: the leader\'s propose span is the follower\'s forward span\'s child');
  for (const name of ['raft.persist', 'raft.commit', 'raft.apply', 'raft.replicate']) {
    const span = find(leader, name) as ReceivedSpan;
    assert.equal(span.parentSpanId, leaderPropose.spanId, `the leader's ${name} is under the put's propose span`);
    assert.ok(span.links.some((link) => link.traceId === traceId && link.spanId === leaderPropose.spanId), `the leader's ${name} links to the put's propose span`);
  }
  const replicates = new Set(inTrace().filter((span) => span.member === leader?.name && span.name === 'raft.replicate').map((span) => span.spanId));
  for (const member of [follower, otherFollower]) {
    const persist = find(member, 'raft.persist') as ReceivedSpan;
    assert.ok(replicates.has(persist.parentSpanId), `${member.name}'s persist span is under the leader's append to it`);
    assert.ok(persist.links.some((link) => link.spanId === leaderPropose.spanId), `${member.name}'s persist span links to the put's propose span on the leader`);
  }
  const followerApply = find(follower, 'raft.apply') as ReceivedSpan;
  assert.equal(followerApply.parentSpanId, leaderPropose.spanId);
  assert.deepEqual(new Set(inTrace().map((span) => span.member)), new Set(cluster.members.map((member) => member.name)), 'every member has spans in the trace');
});

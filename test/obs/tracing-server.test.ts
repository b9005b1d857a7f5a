// The etcd KV server's spans, on an embedded member (openCluster with a tracer and a client
// URL): a Put that carries a W3C traceparent joins the client's trace and its write is traced
// under the server span; a refused Put ends its span with ERROR and the error's code; an
// unsampled traceparent records nothing; an embedded call traces its write under the
// traceParent it is given.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Tracer } from '@opentelemetry/api';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { InMemorySpanExporter, ParentBasedSampler, AlwaysOnSampler, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { openCluster } from '../../src/index.ts';
import type { StrataKv } from '../../src/index.ts';
import { freeClientUrl } from '../server/single-member.ts';
import { putWithMetadata } from './raw-put.ts';

// Spans arrive through a SimpleSpanProcessor: a bounded wait lets the last ones end.
const SPANS_WAIT_MS = 5_000;
const REQUEST_BYTES_MAX = 1_024;

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }), spanProcessors: [new SimpleSpanProcessor({ exporter })] });
const tracer: Tracer = provider.getTracer('stratakv');
let store: StrataKv | undefined;
let endpoint = '';

before(async () => {
  const url = await freeClientUrl();
  endpoint = new URL(url).host;
  store = await openCluster({ tracer, clientUrls: [url], limits: { requestBytesMax: REQUEST_BYTES_MAX } });
});

after(async () => {
  await store?.close();
  await provider.shutdown();
});

async function spansOf(traceId: string, until: (spans: ReadableSpan[]) => boolean): Promise<ReadableSpan[]> {
  const deadline = Date.now() + SPANS_WAIT_MS;
  for (;;) {
    const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
    if (until(spans) || Date.now() > deadline) return spans;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const named = (spans: readonly ReadableSpan[], name: string): ReadableSpan | undefined => spans.find((span) => span.name === name);

describe('the KV server\'s spans', () => {
  test('a Put with a traceparent: a SERVER span under the client\'s, and its write traced under it', async () => {
    const traceId = randomBytes(16).toString('hex');
    const clientSpanId = randomBytes(8).toString('hex');
    await putWithMetadata(endpoint, 'k', 'v', { traceparent: `00-${traceId}-${clientSpanId}-01` });
    const spans = await spansOf(traceId, (found) => ['etcdserverpb.KV/Put', 'raft.propose', 'raft.persist', 'raft.commit', 'raft.apply'].every((name) => named(found, name) !== undefined));
    const server = named(spans, 'etcdserverpb.KV/Put');
    assert.ok(server !== undefined, `the server span (got ${spans.map((span) => span.name).join(', ')})`);
    assert.equal(server.kind, SpanKind.SERVER);
    assert.equal(server.parentSpanContext?.spanId, clientSpanId);
    assert.equal(server.parentSpanContext?.isRemote, true);
    assert.deepEqual({ ...server.attributes }, { 'rpc.system': 'grpc', 'rpc.service': 'etcdserverpb.KV', 'rpc.method': 'Put', 'rpc.grpc.status_code': 0 });
    assert.equal(server.status.code, SpanStatusCode.UNSET);
    const propose = named(spans, 'raft.propose');
    assert.ok(propose !== undefined);
    assert.equal(propose.parentSpanContext?.spanId, server.spanContext().spanId);
    for (const name of ['raft.persist', 'raft.commit', 'raft.apply']) {
      const batch = named(spans, name);
      assert.ok(batch !== undefined, name);
      assert.equal(batch.parentSpanContext?.spanId, propose.spanContext().spanId);
      assert.deepEqual(batch.links.map((link) => link.context.spanId), [propose.spanContext().spanId]);
    }
  });

  test('a refused Put ends its server span with status ERROR, the gRPC status and the error code', async () => {
    const traceId = randomBytes(16).toString('hex');
    await assert.rejects(putWithMetadata(endpoint, 'big', 'x'.repeat(2 * REQUEST_BYTES_MAX), { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` }));
    const [server] = await spansOf(traceId, (found) => found.length > 0);
    assert.ok(server !== undefined);
    assert.equal(server.name, 'etcdserverpb.KV/Put');
    assert.equal(server.status.code, SpanStatusCode.ERROR);
    assert.equal(server.attributes['stratakv.error.code'], 'REQUEST_TOO_LARGE');
    assert.equal(server.attributes['rpc.grpc.status_code'], 3, 'INVALID_ARGUMENT, as etcd answers it');
  });

  test('an unsampled traceparent records nothing', async () => {
    const traceId = randomBytes(16).toString('hex');
    await putWithMetadata(endpoint, 'quiet', 'v', { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-00` });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(await spansOf(traceId, () => true), []);
  });

  test('an embedded put is traced under the traceParent it is given', async () => {
    assert.ok(store !== undefined);
    const parent = tracer.startSpan('application');
    await store.put('embedded', 'v', { traceParent: parent.spanContext() });
    parent.end();
    const spans = await spansOf(parent.spanContext().traceId, (found) => named(found, 'raft.apply') !== undefined);
    assert.equal(named(spans, 'raft.propose')?.parentSpanContext?.spanId, parent.spanContext().spanId);
    assert.ok(named(spans, 'raft.apply') !== undefined);
  });
});

// Traces through real RaftNodes on the memory twins (test/node/fixture.ts), each member with a
// tracer of its own (an in-memory exporter, one resource per member): the spans of a write made
// through a follower and how they link, the bound on links, and that nothing is traced when the
// caller's trace is not sampled or the member has no tracer.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Attributes, Span, SpanContext, Tracer } from '@opentelemetry/api';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { AlwaysOnSampler, InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { SPAN_LINKS_MAX, ATTR_LINKS_DROPPED, ATTR_RAFT_TRACED_ENTRIES, batchSpanOptions } from '../../src/obs/index.ts';
import type { RaftNode } from '../../src/node/index.ts';
import type { TracedMessage } from '../../src/transport/index.ts';
import { CountingTransport, encoder, leaderOf, startCluster } from '../node/fixture.ts';
import type { MemoryNetwork } from '../../src/transport/index.ts';
import type { Clock } from '../../src/util/index.ts';
import { unpack } from 'msgpackr';

// MemberTracers gives each member a tracer whose spans name it (service.instance.id), all
// exported to one in-memory exporter.
class MemberTracers {
  readonly exporter = new InMemorySpanExporter();
  private readonly providers: TracerProvider[] = [];

  tracerFor(name: string): Tracer {
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'stratakv', 'service.instance.id': name }),
      sampler: new AlwaysOnSampler(),
      spanProcessors: [new SimpleSpanProcessor({ exporter: this.exporter })],
    });
    this.providers.push(provider);
    return provider.getTracer('stratakv');
  }

  spans(): ReadableSpan[] {
    return this.exporter.getFinishedSpans();
  }
}

const memberOf = (span: ReadableSpan): string => String(span.resource.attributes['service.instance.id']);
const idOf = (context: SpanContext): string => `${context.traceId}/${context.spanId}`;
const parentOf = (span: ReadableSpan): string | undefined => (span.parentSpanContext === undefined ? undefined : idOf(span.parentSpanContext));
const linksOf = (span: ReadableSpan): string[] => span.links.map((link) => idOf(link.context));

function putThrough(node: RaftNode, key: string, parent: Span | undefined): ReturnType<RaftNode['kv']> {
  return node.kv(
    { type: 'put', key: encoder.encode(key), value: encoder.encode('v') },
    { timeoutMs: 5_000, ...(parent !== undefined ? { traceParent: parent.spanContext() } : {}) },
  );
}

describe('tracing through RaftNodes', () => {
  test('a put through a follower: propose, forward, the leader\'s propose and batches, the followers\' batches, all linked in one trace', async () => {
    const tracers = new MemberTracers();
    const { nodes, driver } = await startCluster({ memberOptions: (name) => ({ tracer: tracers.tracerFor(name) }) });
    const leader = leaderOf(nodes);
    const follower = nodes.find((node) => node !== leader) as RaftNode;
    const client = tracers.tracerFor('client').startSpan('client put', { kind: SpanKind.CLIENT }, ROOT_CONTEXT);
    const answer = await driver.settle(putThrough(follower, 'traced', client));
    client.end();
    assert.equal(answer.type, 'put');
    const traceId = client.spanContext().traceId;
    const inTrace = (): ReadableSpan[] => tracers.spans().filter((span) => span.spanContext().traceId === traceId);
    const find = (member: string, name: string): ReadableSpan | undefined => inTrace().find((span) => memberOf(span) === member && span.name === name);
    const others = nodes.filter((node) => node !== leader).map((node) => node.name);
    // Every member applies the write; the followers' apply spans end after the leader answered.
    await driver.until('every member applied the put in the trace', () => [leader.name, ...others].every((name) => find(name, 'raft.apply') !== undefined));

    const followerPropose = find(follower.name, 'raft.propose');
    assert.ok(followerPropose !== undefined, 'the follower proposes');
    assert.equal(followerPropose.kind, SpanKind.INTERNAL);
    assert.equal(parentOf(followerPropose), idOf(client.spanContext()));
    const forward = find(follower.name, 'raft.forward');
    assert.ok(forward !== undefined, 'the follower forwards');
    assert.equal(forward.kind, SpanKind.CLIENT);
    assert.equal(parentOf(forward), idOf(followerPropose.spanContext()));
    assert.equal(forward.attributes['raft.leader_id'], leader.memberId.toString(16));

    const leaderPropose = find(leader.name, 'raft.propose');
    assert.ok(leaderPropose !== undefined, 'the leader proposes the forwarded write');
    assert.equal(leaderPropose.kind, SpanKind.SERVER);
    assert.equal(parentOf(leaderPropose), idOf(forward.spanContext()), 'the leader\'s propose span is the follower\'s forward span\'s child');
    assert.equal(leaderPropose.attributes['raft.from_id'], follower.memberId.toString(16));
    assert.equal(typeof leaderPropose.attributes['raft.index'], 'number');
    const proposeId = idOf(leaderPropose.spanContext());

    for (const name of ['raft.persist', 'raft.commit', 'raft.apply']) {
      const span = find(leader.name, name);
      assert.ok(span !== undefined, `the leader has ${name}`);
      assert.equal(parentOf(span), proposeId, `${name} is under the write's propose span`);
      assert.deepEqual(linksOf(span), [proposeId], `${name} links to the write's propose span`);
      assert.equal(span.attributes[ATTR_RAFT_TRACED_ENTRIES], 1);
    }
    const replicates = inTrace().filter((span) => memberOf(span) === leader.name && span.name === 'raft.replicate');
    assert.deepEqual(new Set(replicates.map((span) => span.attributes['raft.peer_id'])), new Set(nodes.filter((node) => node !== leader).map((node) => node.memberId.toString(16))), 'an append to each follower');
    for (const span of replicates) {
      assert.equal(span.kind, SpanKind.CLIENT);
      assert.deepEqual(linksOf(span), [proposeId]);
    }
    for (const name of others) {
      const persist = find(name, 'raft.persist');
      assert.ok(persist !== undefined, `follower ${name} persists under the leader's append`);
      assert.ok(replicates.some((span) => idOf(span.spanContext()) === parentOf(persist)), 'its parent is the leader\'s replicate span');
      assert.deepEqual(linksOf(persist), [proposeId], 'it links to the write\'s propose span on the leader');
      for (const later of ['raft.commit', 'raft.apply']) {
        const span = find(name, later);
        assert.ok(span !== undefined, `follower ${name} has ${later}`);
        assert.equal(parentOf(span), proposeId);
        assert.deepEqual(linksOf(span), [proposeId]);
      }
    }
    assert.equal(followerPropose.status.code, SpanStatusCode.UNSET, 'the answered write ends its spans without error');
  });

  test('a refused write ends its propose span with status ERROR and the error code', async () => {
    const tracers = new MemberTracers();
    const { nodes, driver } = await startCluster({ size: 1, memberOptions: (name) => ({ tracer: tracers.tracerFor(name) }) });
    const node = nodes[0] as RaftNode;
    const client = tracers.tracerFor('client').startSpan('client put', {}, ROOT_CONTEXT);
    // The write is proposed as kv() is called; its signal then settles it with CANCELED.
    const controller = new AbortController();
    const pending = node.kv({ type: 'put', key: encoder.encode('k'), value: encoder.encode('v') }, { signal: controller.signal, traceParent: client.spanContext() });
    controller.abort();
    await assert.rejects(driver.settle(pending), { code: 'CANCELED' });
    client.end();
    await driver.until('the propose span ended', () => tracers.spans().some((span) => span.name === 'raft.propose'));
    const propose = tracers.spans().find((span) => span.name === 'raft.propose') as ReadableSpan;
    assert.equal(propose.status.code, SpanStatusCode.ERROR);
    assert.equal(propose.attributes['stratakv.error.code'], 'CANCELED');
    assert.equal(propose.attributes['error.type'], 'CANCELED');
  });

  test('a batch span links to at most SPAN_LINKS_MAX writes and counts the others', () => {
    const contexts = Array.from({ length: SPAN_LINKS_MAX + 5 }, (_, at) => ({ traceId: 'a'.repeat(32), spanId: at.toString(16).padStart(16, '0'), traceFlags: 1 }));
    const options = batchSpanOptions(contexts, { attributes: { x: 1 } as Attributes });
    assert.equal(options.links?.length, SPAN_LINKS_MAX);
    assert.equal(options.attributes?.[ATTR_LINKS_DROPPED], 5);
    assert.equal(options.attributes?.[ATTR_RAFT_TRACED_ENTRIES], SPAN_LINKS_MAX + 5);
  });

  test('unsampled callers and writes with no trace make no span, and nothing is carried between members', async () => {
    const calls: string[] = [];
    const spy: Tracer = {
      startSpan: (name) => {
        calls.push(name);
        return trace.wrapSpanContext({ traceId: '1'.repeat(32), spanId: '2'.repeat(16), traceFlags: 0 });
      },
      startActiveSpan: (() => {
        calls.push('startActiveSpan');
        throw new Error('stratakv never uses the active context');
      }) as Tracer['startActiveSpan'],
    };
    const observed = observeTraffic();
    // Background work (integrity checkpoints, snapshots) makes root spans of its own: none runs here.
    const { nodes, driver, network } = await startCluster({
      nodeOptions: { tracer: spy, integrityCheckPolicy: { checkpointEntries: 0, checkpointIntervalMs: 0 } },
      createTransport: observed.createTransport,
    });
    observed.watch(network);
    const leader = leaderOf(nodes);
    const follower = nodes.find((node) => node !== leader) as RaftNode;
    const unsampled = trace.wrapSpanContext({ traceId: '3'.repeat(32), spanId: '4'.repeat(16), traceFlags: 0 });
    for (let round = 0; round < 5; round += 1) {
      await driver.settle(putThrough(follower, `f${round}`, round % 2 === 0 ? unsampled : undefined));
      await driver.settle(putThrough(leader, `l${round}`, round % 2 === 0 ? unsampled : undefined));
    }
    await driver.advance(200);
    assert.deepEqual(calls, [], 'the tracer is never called');
    assert.ok(observed.proposeCalls() > 0, 'writes were forwarded');
    assert.equal(observed.tracedForwards(), 0, 'no forwarded write carries a traceparent');
    assert.ok(observed.appends() > 0, 'appends were sent');
    assert.equal(observed.tracedAppends(), 0, 'no append carries trace context');
  });

  test('without a tracer nothing is carried between members', async () => {
    const observed = observeTraffic();
    const { nodes, driver, network } = await startCluster({ createTransport: observed.createTransport });
    observed.watch(network);
    const leader = leaderOf(nodes);
    const follower = nodes.find((node) => node !== leader) as RaftNode;
    const sampled = trace.wrapSpanContext({ traceId: '5'.repeat(32), spanId: '6'.repeat(16), traceFlags: 1 });
    for (let round = 0; round < 3; round += 1) await driver.settle(putThrough(follower, `k${round}`, sampled));
    assert.ok(observed.proposeCalls() > 0);
    assert.equal(observed.tracedForwards(), 0);
    assert.ok(observed.appends() > 0);
    assert.equal(observed.tracedAppends(), 0);
  });
});

// observeTraffic counts the forwarding calls (and those carrying a traceparent) and the appends
// with entries (and those carrying trace context) that cross the memory network.
function observeTraffic() {
  let proposeCalls = 0;
  let tracedForwards = 0;
  let appends = 0;
  let tracedAppends = 0;
  class Observed extends CountingTransport {
    override request(...args: Parameters<CountingTransport['request']>): Promise<Uint8Array> {
      if (args[1] === 'propose') {
        proposeCalls += 1;
        // [hops, data] per write; a third item is its forward span's traceparent.
        tracedForwards += (unpack(args[2]) as unknown[][]).filter((item) => item.length === 3).length;
      }
      return super.request(...args);
    }
  }
  return {
    createTransport: (network: MemoryNetwork, identity: { localId: number; clusterId: number; clock: Clock }) => new Observed(network, identity),
    watch(network: MemoryNetwork): void {
      network.setDropFilter((message) => {
        if (message.type === 'append' && message.entries.length > 0) {
          appends += 1;
          if ((message as TracedMessage).trace !== undefined) tracedAppends += 1;
        }
        return false;
      });
    },
    proposeCalls: () => proposeCalls,
    tracedForwards: () => tracedForwards,
    appends: () => appends,
    tracedAppends: () => tracedAppends,
  };
}

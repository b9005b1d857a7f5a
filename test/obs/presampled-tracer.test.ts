// The root sampling decision of parentbased_traceidratio made before the SDK is asked
// (tracing.ts presampledTracer): roots are drawn at the ratio, and the SDK sees only those;
// spans with a parent always go to the SDK (its ParentBased sampler follows the parent).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { context, INVALID_SPAN_CONTEXT, trace, TraceFlags, type Span, type Tracer } from '@opentelemetry/api';

import { presampledTracer, rootSampleRatio } from '../../src/obs/index.ts';

const DRAWS = 20_000;

function spyTracer(): { tracer: Tracer; calls: () => number } {
  let calls = 0;
  const made = trace.wrapSpanContext({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED });
  const tracer: Tracer = {
    startSpan: () => {
      calls += 1;
      return made;
    },
    startActiveSpan: (() => assert.fail('not used')) as Tracer['startActiveSpan'],
  };
  return { tracer, calls: () => calls };
}

test('roots are drawn at the ratio; the rest cost no SDK call', () => {
  const spy = spyTracer();
  const unsampled: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
  const tracer = presampledTracer(spy.tracer, 0.01, unsampled, (ctx) => trace.getSpanContext(ctx) !== undefined);
  let skipped = 0;
  for (let index = 0; index < DRAWS; index += 1) {
    const span = tracer.startSpan('root', undefined, index % 2 === 0 ? undefined : context.active());
    if (span === unsampled) skipped += 1;
  }
  // 1 % of 20,000 is 200; the binomial's spread is ~14, so 100..320 fails only by a mistake.
  assert.ok(spy.calls() >= 100 && spy.calls() <= 320, `SDK asked ${spy.calls()} times`);
  assert.equal(skipped + spy.calls(), DRAWS);
});

test('a span with a parent always goes to the SDK, sampled parent or not', () => {
  const spy = spyTracer();
  const tracer = presampledTracer(spy.tracer, 0, trace.wrapSpanContext(INVALID_SPAN_CONTEXT), (ctx) => trace.getSpanContext(ctx) !== undefined);
  const parent = trace.setSpanContext(context.active(), { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.NONE });
  for (let index = 0; index < 10; index += 1) tracer.startSpan('child', undefined, parent);
  assert.equal(spy.calls(), 10);
  tracer.startSpan('forced root', { root: true }, parent);
  assert.equal(spy.calls(), 10, 'root: true ignores the parent, and ratio 0 draws none');
});

test('only parentbased_traceidratio below 1 is taken over', () => {
  assert.equal(rootSampleRatio({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01' }), 0.01);
  assert.equal(rootSampleRatio({ OTEL_TRACES_SAMPLER: 'PARENTBASED_TRACEIDRATIO', OTEL_TRACES_SAMPLER_ARG: '0.5' }), 0.5);
  assert.equal(rootSampleRatio({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio' }), undefined, 'the SDK\'s default ratio is 1: nothing to take over');
  assert.equal(rootSampleRatio({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: 'x' }), undefined);
  assert.equal(rootSampleRatio({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01' }), undefined, 'plain traceidratio stays the SDK\'s');
  assert.equal(rootSampleRatio({}), undefined);
});

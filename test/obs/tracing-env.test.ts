// startTracing and the environment: which OTEL_* settings turn tracing on, that off loads
// nothing of the SDK (checked in a child process whose module resolutions are recorded), and
// that on starts traces only (no metrics reader), hands out a working tracer and shuts down
// within its bound. W3C traceparent parsing is checked here too.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { formatTraceparent, parseTraceparent, tracingDecision } from '../../src/obs/index.ts';

const OBS_INDEX = new URL('../../src/obs/index.ts', import.meta.url).href;

// runChild runs an ES module snippet under this Node with `env` (PATH only besides), and
// answers the JSON it prints last.
function runChild(source: string, env: Record<string, string>): Record<string, unknown> {
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', source], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(result.status, 0, `child failed: ${result.stderr}`);
  const lines = result.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] as string) as Record<string, unknown>;
}

describe('tracing from the environment', () => {
  test('tracingDecision: an exporter or an OTLP endpoint turns it on; disabled, none or always_off turn it off', () => {
    const on = (env: Record<string, string>): boolean => tracingDecision(env).enabled;
    assert.equal(on({}), false, 'nothing asked for');
    assert.equal(on({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), true);
    assert.equal(on({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' }), true);
    assert.equal(on({ OTEL_TRACES_EXPORTER: 'otlp' }), true);
    assert.equal(on({ OTEL_TRACES_EXPORTER: 'console' }), true);
    assert.equal(on({ OTEL_TRACES_EXPORTER: ' ' }), false, 'blank is unset');
    assert.equal(on({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), false);
    assert.equal(on({ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }), false);
    assert.equal(on({ OTEL_SDK_DISABLED: 'TRUE', OTEL_TRACES_EXPORTER: 'otlp' }), false);
    assert.equal(on({ OTEL_SDK_DISABLED: 'false', OTEL_TRACES_EXPORTER: 'otlp' }), true);
    assert.equal(on({ OTEL_TRACES_SAMPLER: 'always_off', OTEL_TRACES_EXPORTER: 'otlp' }), false);
    assert.equal(on({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01', OTEL_TRACES_EXPORTER: 'otlp' }), true);
  });

  test('off: startTracing answers undefined and loads nothing of the SDK', () => {
    const answer = runChild(
      `import { registerHooks } from 'node:module';
       const resolved = [];
       registerHooks({ resolve(specifier, context, next) { resolved.push(specifier); return next(specifier, context); } });
       const { startTracing } = await import(${JSON.stringify(OBS_INDEX)});
       const handle = await startTracing({ memberName: 'n1' });
       console.log(JSON.stringify({ off: handle === undefined, sdk: resolved.filter((s) => /@opentelemetry\\/(sdk|exporter|resources|otlp|instrumentation)/.test(s)), api: resolved.includes('@opentelemetry/api') }));`,
      { OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' },
    );
    assert.equal(answer.off, true);
    assert.deepEqual(answer.sdk, [], 'no SDK module was even resolved');
    assert.equal(answer.api, true, 'the API (no-op without an SDK) is what the hot path types and checks against');
  });

  test('on: traces only (no metrics reader), a recording tracer, a bounded shutdown', () => {
    const answer = runChild(
      `import { metrics } from '@opentelemetry/api';
       const { startTracing } = await import(${JSON.stringify(OBS_INDEX)});
       const handle = await startTracing({ memberName: 'n1', memberId: 'abc', shutdownTimeoutMs: 2000 });
       const span = handle.tracer.startSpan('probe');
       const recording = span.isRecording();
       span.end();
       const meterProvider = metrics.getMeterProvider().constructor.name;
       const started = Date.now();
       await handle.shutdown();
       console.log(JSON.stringify({ on: handle !== undefined, reason: handle.reason, recording, meterProvider, shutdownMs: Date.now() - started }));`,
      // Port 9 (discard) on loopback: nothing answers, so the export fails and shutdown must not wait for it.
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TIMEOUT: '60000' },
    );
    assert.equal(answer.on, true);
    assert.match(String(answer.reason), /127\.0\.0\.1:9/);
    assert.equal(answer.recording, true, 'the default sampler (parentbased_always_on) records a root span');
    assert.equal(answer.meterProvider, 'NoopMeterProvider', 'no metrics reader was started');
    assert.ok(Number(answer.shutdownMs) < 5_000, `shutdown took ${String(answer.shutdownMs)} ms`);
  });

  test('W3C traceparent: parsed when well-formed, refused otherwise, written back the same', () => {
    const value = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const context = parseTraceparent(value, 'congo=t61rcWkgMzE');
    assert.ok(context !== undefined);
    assert.equal(context.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(context.spanId, 'b7ad6b7169203331');
    assert.equal(context.traceFlags, 1);
    assert.equal(context.isRemote, true);
    assert.equal(context.traceState?.get('congo'), 't61rcWkgMzE');
    assert.equal(formatTraceparent(context), value);
    assert.equal(parseTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00')?.traceFlags, 0);
    for (const bad of [
      undefined,
      42,
      '',
      '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331',
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
      'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra',
    ]) {
      assert.equal(parseTraceparent(bad), undefined, `refuses ${String(bad)}`);
    }
    assert.equal(parseTraceparent('01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future')?.spanId, 'b7ad6b7169203331', 'a later version\'s extra fields are ignored');
  });
});

// createLogger: etcd-shaped JSON lines through pino (level label, ISO `ts`, name, msg, fields
// flattened), the renderings of bigints, bytes and errors, the reserved-key rule, level
// filtering, the text format's line, child loggers, bounds, and the synchronous write that
// lets the last line before an abort reach stderr.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { createLogger, grpcLogSink, LOG_ITEMS_MAX, LOG_VALUE_DEPTH_MAX, RENAMED_FIELD_PREFIX, RESERVED_LOG_KEYS } from '../../src/obs/index.ts';
import type { LogFormat, LogLevel, StructuredLogger } from '../../src/obs/index.ts';
import { ErrorCode, StrataError } from '../../src/util/errors.ts';
import { logLinePattern, parseLogLine, readableLog } from './log-records.ts';

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const LOGGER_MODULE = new URL('../../src/obs/index.ts', import.meta.url).href;

/** capture answers a logger writing to memory, and the lines it wrote. */
function capture(level: LogLevel = 'debug', format: LogFormat = 'json', name = 'm1'): { logger: StructuredLogger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ name, level, format, destination: { write: (line) => lines.push(line) } });
  return { logger, lines };
}

function only(lines: readonly string[]): Record<string, unknown> {
  assert.equal(lines.length, 1, lines.join(''));
  const line = lines[0] ?? '';
  assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), 'one line, ending in a newline');
  return JSON.parse(line) as Record<string, unknown>;
}

test('a JSON line is etcd-shaped: level label, ISO ts, name, msg first, then the fields at top level', () => {
  const { logger, lines } = capture();
  const before = Date.now();
  logger.info('serving', { member: '8e9e05c52164694d', clientUrls: ['http://127.0.0.1:2379'], term: 3, leader: true, none: null });
  const record = only(lines);
  assert.deepEqual(Object.keys(record), ['level', 'ts', 'name', 'msg', 'member', 'clientUrls', 'term', 'leader', 'none']);
  assert.equal(record['level'], 'info');
  assert.match(String(record['ts']), ISO_TIME);
  const atMs = Date.parse(String(record['ts']));
  assert.ok(atMs >= before - 1 && atMs <= Date.now() + 1, 'ts is now');
  assert.equal(record['name'], 'm1');
  assert.equal(record['msg'], 'serving');
  assert.equal(record['member'], '8e9e05c52164694d');
  assert.deepEqual(record['clientUrls'], ['http://127.0.0.1:2379']);
  assert.equal(record['term'], 3);
  assert.equal(record['leader'], true);
  assert.equal(record['none'], null);
  // No pid, no hostname, no numeric level: only what etcd's lines have.
  assert.equal(lines[0]?.includes('"pid"'), false);
  assert.equal(lines[0]?.includes('"hostname"'), false);
});

test('every level writes its label; a line without fields has only the four keys', () => {
  const { logger, lines } = capture();
  logger.debug('d');
  logger.info('i');
  logger.warn('w');
  logger.error('e');
  logger.fatal('f');
  const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.deepEqual(records.map((record) => record['level']), ['debug', 'info', 'warn', 'error', 'fatal']);
  assert.deepEqual(records.map((record) => record['msg']), ['d', 'i', 'w', 'e', 'f']);
  for (const record of records) assert.deepEqual(Object.keys(record), ['level', 'ts', 'name', 'msg']);
});

test('a bigint is its decimal string and bytes are their length, never their content', () => {
  const { logger, lines } = capture();
  logger.info('values', {
    memberId: 0x8e9e05c52164694dn,
    negative: -5n,
    key: new TextEncoder().encode('secret'),
    buffer: Buffer.from([1, 2, 3]),
    nested: { ids: [1n, 2n], empty: new Uint8Array(0) },
  });
  const record = only(lines);
  assert.equal(record['memberId'], '10276657743932975437');
  assert.equal(record['negative'], '-5');
  assert.equal(record['key'], '<6 bytes>');
  assert.equal(record['buffer'], '<3 bytes>');
  assert.deepEqual(record['nested'], { ids: ['1', '2'], empty: '<0 bytes>' });
  assert.equal(lines[0]?.includes('secret'), false);
});

test('an Error is its message, code, details, stack and cause', () => {
  const { logger, lines } = capture();
  const cause = new Error('EIO: i/o error, fdatasync');
  Object.assign(cause, { code: 'EIO' });
  const error = new StrataError(ErrorCode.IO_ERROR, 'the log could not be synced', { cause, details: { segment: 7n } });
  logger.fatal('fatal storage error, stopping', { error, plain: new Error('plain') });
  const record = only(lines);
  const rendered = record['error'] as Record<string, unknown>;
  assert.equal(rendered['message'], 'the log could not be synced');
  assert.equal(rendered['code'], ErrorCode.IO_ERROR);
  assert.deepEqual(rendered['details'], { segment: '7' });
  assert.match(String(rendered['stack']), /the log could not be synced\n\s+at /);
  const renderedCause = rendered['cause'] as Record<string, unknown>;
  assert.equal(renderedCause['message'], 'EIO: i/o error, fdatasync');
  assert.equal(renderedCause['code'], 'EIO');
  assert.equal(typeof renderedCause['stack'], 'string');
  const plain = record['plain'] as Record<string, unknown>;
  assert.deepEqual(Object.keys(plain), ['message', 'stack'], 'no code or details when the error has none');
  // Under the name pino keeps for errors (`err`), an error is rendered the same way.
  const { logger: second, lines: secondLines } = capture();
  second.warn('failed', { err: new Error('boom') });
  assert.equal((only(secondLines)['err'] as Record<string, unknown>)['message'], 'boom');
});

test('a field named like a reserved key is written with the prefix and never clobbers the line', () => {
  assert.deepEqual(RESERVED_LOG_KEYS, ['level', 'ts', 'name', 'msg']);
  assert.equal(RENAMED_FIELD_PREFIX, 'field_');
  const { logger, lines } = capture('info');
  logger.info('renamed', { level: 'debug', ts: 0, name: 'n2', msg: 'other', kept: 1 });
  const record = only(lines);
  assert.equal(record['level'], 'info');
  assert.match(String(record['ts']), ISO_TIME);
  assert.equal(record['name'], 'm1');
  assert.equal(record['msg'], 'renamed');
  assert.equal(record['field_level'], 'debug');
  assert.equal(record['field_ts'], 0);
  assert.equal(record['field_name'], 'n2');
  assert.equal(record['field_msg'], 'other');
  assert.equal(record['kept'], 1);
  // Each key once in the raw line: no duplicate a reader would resolve either way.
  assert.equal(lines[0]?.match(/"name":/g)?.length, 1);
  // A renamed field whose new name is taken is prefixed again: nothing is lost.
  lines.length = 0;
  logger.info('both', { name: 'n2', field_name: 'given' });
  const both = only(lines);
  assert.equal(both['field_name'], 'given');
  assert.equal(both['field_field_name'], 'n2');
});

test('lines below the level are not written, and isLevelEnabled says so', () => {
  const { logger, lines } = capture('warn');
  logger.debug('debug');
  logger.info('info');
  logger.warn('warn');
  logger.error('error');
  logger.fatal('fatal');
  assert.deepEqual(lines.map((line) => (JSON.parse(line) as { msg: string }).msg), ['warn', 'error', 'fatal']);
  assert.equal(logger.isLevelEnabled('info'), false);
  assert.equal(logger.isLevelEnabled('warn'), true);
  for (const level of ['debug', 'info', 'warn', 'error'] as const) {
    const { logger: atLevel, lines: written } = capture(level);
    atLevel.debug('x');
    atLevel.info('x');
    atLevel.warn('x');
    atLevel.error('x');
    assert.equal(written.length, 4 - ['debug', 'info', 'warn', 'error'].indexOf(level), level);
  }
});

test('the text format keeps the line a person read before: ts level [name] msg {fields}', () => {
  const { logger, lines } = capture('debug', 'text');
  logger.info('serving', { member: 'abc', id: 5n, key: new Uint8Array(2) });
  logger.warn('removed');
  logger.error('failed', { name: 'n2' });
  assert.equal(lines.length, 3);
  // The level is padded to five characters, so messages line up.
  assert.match(lines[0] ?? '', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z info {2}\[m1\] serving \{"member":"abc","id":"5","key":"<2 bytes>"\}\n$/);
  assert.match(lines[1] ?? '', /^\S+Z warn {2}\[m1\] removed\n$/);
  assert.match(lines[2] ?? '', /^\S+Z error \[m1\] failed \{"field_name":"n2"\}\n$/);
});

test('readableLog renders a JSON line as the text format does, and leaves other lines alone', () => {
  const json = capture('info', 'json');
  const text = capture('info', 'text');
  for (const logger of [json.logger, text.logger]) logger.info('snapshot saved', { index: 42n, ms: 3, reason: 'a "quoted" word' });
  const withoutTime = (line: string): string => line.replace(/^\S+ /, '');
  assert.equal(withoutTime(readableLog(json.lines[0]?.trimEnd() ?? '')), withoutTime(text.lines[0]?.trimEnd() ?? ''));
  assert.equal(readableLog('not json\n{"half":'), 'not json\n{"half":');
  const record = parseLogLine(json.lines[0]?.trimEnd() ?? '');
  assert.deepEqual(record && { level: record.level, name: record.name, msg: record.msg, fields: record.fields }, { level: 'info', name: 'm1', msg: 'snapshot saved', fields: { index: '42', ms: 3, reason: 'a "quoted" word' } });
  assert.ok(logLinePattern('snapshot saved').test(json.lines[0] ?? ''));
  assert.ok(!logLinePattern('snapshot').test(json.lines[0] ?? ''), 'the whole message, not a prefix');
});

test('a child logger adds its fields to every line; a call\'s own field of the same name wins', () => {
  const { logger, lines } = capture();
  const peer = logger.child({ peer: 2n, stream: 'raft' });
  peer.info('connected');
  peer.warn('dropped', { peer: 'override', count: 3 });
  peer.child({ name: 'inner' }).info('nested');
  const [first, second, third] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.deepEqual(first, { level: 'info', ts: first?.['ts'], name: 'm1', msg: 'connected', peer: '2', stream: 'raft' });
  assert.equal(second?.['peer'], 'override');
  assert.equal(second?.['count'], 3);
  assert.equal(lines[1]?.match(/"peer":/g)?.length, 1, 'the name is written once');
  assert.equal(third?.['name'], 'm1');
  assert.equal(third?.['field_name'], 'inner');
  assert.equal(third?.['stream'], 'raft');
});

test('values are bounded: cycles, depth and long collections; functions and undefined are left out', () => {
  const { logger, lines } = capture();
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic['self'] = cyclic;
  let deep: Record<string, unknown> = { leaf: true };
  for (let level = 0; level < LOG_VALUE_DEPTH_MAX + 5; level += 1) deep = { deeper: deep };
  const shared = { x: 1 };
  logger.info('bounded', {
    cyclic,
    deep,
    long: Array.from({ length: LOG_ITEMS_MAX + 10 }, (_, index) => index),
    set: new Set([1, 2]),
    map: new Map<unknown, unknown>([[1n, 'one'], ['two', 2]]),
    twice: [shared, shared],
    callback: () => 1,
    missing: undefined,
    at: new Date(0),
    parsed: JSON.parse('{"__proto__":{"polluted":true},"ok":1}') as unknown,
  });
  const record = only(lines);
  assert.deepEqual(record['cyclic'], { a: 1, self: '[circular]' });
  assert.ok(JSON.stringify(record['deep']).includes('[too deep]'));
  const long = record['long'] as unknown[];
  assert.equal(long.length, LOG_ITEMS_MAX + 1);
  assert.equal(long.at(-1), '[10 more]');
  assert.deepEqual(record['set'], [1, 2]);
  assert.deepEqual(record['map'], { 1: 'one', two: 2 });
  assert.deepEqual(record['twice'], [{ x: 1 }, { x: 1 }], 'a value met twice (not a cycle) is written twice');
  assert.equal('callback' in record, false);
  assert.equal('missing' in record, false);
  assert.equal(record['at'], '1970-01-01T00:00:00.000Z');
  assert.ok(lines[0]?.includes('"parsed":{"__proto__":{"polluted":true},"ok":1}'), 'a key named __proto__ is written as a key');
});

test('grpcLogSink writes grpc-js\'s console-style messages as log lines tagged component grpc', () => {
  const { logger, lines } = capture('info');
  const sink = grpcLogSink(logger);
  sink.error('No address added out of total %s resolved', 1, { port: 2379 });
  sink.info('subchannel connected');
  sink.debug('below the level');
  const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(records.length, 2);
  assert.deepEqual(records[0], { level: 'error', ts: records[0]?.['ts'], name: 'm1', msg: 'No address added out of total 1 resolved { port: 2379 }', component: 'grpc' });
  assert.equal(records[1]?.['level'], 'info');
  assert.equal(records[1]?.['msg'], 'subchannel connected');
});

test('a logger refuses a bad configuration (an assertion: a programmer error)', () => {
  assert.throws(() => createLogger({ name: '', level: 'info', format: 'json' }), /a logger has a name/);
  assert.throws(() => createLogger({ name: 'm1', level: 'verbose' as LogLevel, format: 'json' }), /unknown log level/);
  assert.throws(() => createLogger({ name: 'm1', level: 'info', format: 'pretty' as LogFormat }), /unknown log format/);
});

test('by default lines go to stderr synchronously: the line logged just before process.abort() is there', () => {
  // A child process logs, then aborts at once (as the fsync-failure handler of `serve` does):
  // nothing may be left in a buffer or a worker thread. Its folder catches a core file, if any.
  const folder = mkdtempSync(join(tmpdir(), 'stratakv-logger-'));
  try {
    for (const format of ['json', 'text'] as const) {
      const script = [
        `import { createLogger } from ${JSON.stringify(LOGGER_MODULE)};`,
        `const logger = createLogger({ name: 'm1', level: 'info', format: ${JSON.stringify(format)} });`,
        "for (let index = 0; index < 200; index += 1) logger.info('filler', { index, padding: 'x'.repeat(200) });",
        "logger.fatal('fatal storage error, stopping', { error: new Error('fdatasync failed') });",
        'process.abort();',
      ].join('\n');
      const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: folder, encoding: 'utf8', timeout: 30_000 });
      assert.equal(result.signal, 'SIGABRT', result.stderr);
      assert.equal(result.stdout, '', 'nothing on stdout');
      // Node prints its own report of the abort after our lines.
      const logged = result.stderr.split('----- Native stack trace -----')[0] ?? '';
      const lines = logged.split('\n').filter((line) => line !== '');
      if (format === 'json') {
        const records = lines.map((line) => parseLogLine(line));
        assert.ok(records.every((record) => record !== undefined), `every line is a JSON log line:\n${result.stderr.slice(-2_000)}`);
        assert.equal(records.length, 201);
        assert.equal(records.at(-1)?.msg, 'fatal storage error, stopping');
        assert.equal(records.at(-1)?.level, 'fatal');
        assert.equal((records.at(-1)?.fields['error'] as { message?: string } | undefined)?.message, 'fdatasync failed');
      } else {
        assert.equal(lines.length, 201);
        assert.match(lines.at(-1) ?? '', /^\S+Z fatal \[m1\] fatal storage error, stopping \{"error":\{"message":"fdatasync failed"/);
      }
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});

// Structured logs through pino. One event is one line on stderr (fd 2, as etcd logs): by
// default a JSON object shaped like etcd's zap output,
//
//   {"level":"info","ts":"2026-12-06T18:40:00.123Z","name":"m1","msg":"serving","member":"8e9e05c52164694d",...}
//
// or, for a person at a terminal (--log-format text), the line stratakv printed before pino:
//
//   2026-12-06T18:40:00.123Z info  [m1] serving {"member":"8e9e05c52164694d",...}
//
// The Raft core, storage and the driver log through the Logger interface of src/raft; a
// StructuredLogger is one, plus `error`, `fatal` and `child`.
//
// Writes are synchronous (a SonicBoom destination with `sync: true`, no worker-thread
// transport): a line is in the kernel when the call returns, so the line logged just before
// an fsync failure aborts the process (src/storage/fatal.ts) is not lost. Text lines are
// formatted here from the JSON line pino made, not by pino-pretty: the shape stays exactly the
// one above, and no formatting machinery runs off the calling thread.

import { pino } from 'pino';
import type { DestinationStream, Level as PinoLevel, Logger as PinoLogger } from 'pino';

import type { Logger } from '../raft/index.ts';
import { assert } from '../util/index.ts';

/** LogLevel is the least severe level a logger writes, as etcd's --log-level. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
// The levels --log-level accepts, least severe first (cmd/serve-flags.ts keeps the same list
// without importing this module, so that the client verbs do not load pino).
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** LogFormat is how a line looks: `json` (etcd's default) or `text` for a terminal. */
export type LogFormat = 'json' | 'text';
const LOG_FORMATS: readonly LogFormat[] = ['json', 'text'];

/** LogFields are the structured fields of one event (or a child logger's bindings). */
export type LogFields = Readonly<Record<string, unknown>>;

/** LogSink receives finished lines, each ending in "\n"; tests capture lines with one. */
export interface LogSink {
  write(line: string): void;
}

/** LoggerOptions configure createLogger. */
export interface LoggerOptions {
  /** The member's name, written as `name` on every line. */
  readonly name: string;
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** Where lines go: a file descriptor (default 2, stderr) or a sink. */
  readonly destination?: number | LogSink;
}

/** StructuredLogger is the Logger of src/raft plus the levels above warn and child loggers. */
export interface StructuredLogger extends Logger {
  error(message: string, fields?: LogFields): void;
  /** fatal logs the last line before the process stops (always written: it is above every LogLevel). */
  fatal(message: string, fields?: LogFields): void;
  /** child answers a logger that adds `fields` to every line (a call's own field of the same name wins). */
  child(fields: LogFields): StructuredLogger;
  /** isLevelEnabled tells whether a line at `level` would be written (to skip building costly fields). */
  isLevelEnabled(level: LogLevel): boolean;
}

/**
 * RESERVED_LOG_KEYS are the keys every line has. A field of one of these names is written as
 * RENAMED_FIELD_PREFIX + its name (`{ name: 'n2' }` → `"field_name":"n2"`), so that it can
 * never overwrite the line's own level, time, member name or message.
 */
export const RESERVED_LOG_KEYS: readonly string[] = ['level', 'ts', 'name', 'msg'];
/** RENAMED_FIELD_PREFIX is put before a field whose name is reserved (see RESERVED_LOG_KEYS). */
export const RENAMED_FIELD_PREFIX = 'field_';

/** LOG_VALUE_DEPTH_MAX bounds how deep a field's value is written; deeper values are `[too deep]`. */
export const LOG_VALUE_DEPTH_MAX = 8;
/** LOG_ITEMS_MAX bounds the items of one array, set, map or object written; the rest are counted. */
export const LOG_ITEMS_MAX = 100;

const STDERR_FD = 2;

/**
 * createLogger answers a StructuredLogger writing lines at or above `level` in `format` to
 * `destination` (stderr by default), each tagged with `name`.
 */
export function createLogger(options: LoggerOptions): StructuredLogger {
  assert(options.name !== '', 'a logger has a name');
  assert(LOG_LEVELS.includes(options.level), `unknown log level ${String(options.level)}`);
  assert(LOG_FORMATS.includes(options.format), `unknown log format ${String(options.format)}`);
  const sink: DestinationStream =
    options.destination === undefined || typeof options.destination === 'number'
      ? pino.destination({ dest: options.destination ?? STDERR_FD, sync: true })
      : options.destination;
  const stream: DestinationStream = options.format === 'json' ? sink : { write: (line: string) => sink.write(formatTextLine(line)) };
  const base = pino(
    {
      level: options.level,
      // No pid or hostname: etcd's lines have neither, and the name says which member it is.
      base: { name: options.name },
      messageKey: 'msg',
      // Values arrive already rendered (toLogValue); pino's own error serializer would redo `err`.
      serializers: { err: (value: unknown) => value },
      timestamp: () => `,"ts":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
  return wrap(base, {});
}

// wrap answers the StructuredLogger over `base` that adds `bindings` to every line. Bindings are
// merged into each line's fields rather than made a pino child, so a name given twice is
// written once (a pino child would write it twice, and a reader would keep either).
function wrap(base: PinoLogger, bindings: LogFields): StructuredLogger {
  const write = (level: PinoLevel, message: string, fields: LogFields | undefined): void => {
    if (!base.isLevelEnabled(level)) return;
    // The message is the record's first key, so the line reads level, ts, name, msg, fields.
    base[level](renderRecord(message, bindings, fields));
  };
  return {
    debug: (message, fields) => write('debug', message, fields),
    info: (message, fields) => write('info', message, fields),
    warn: (message, fields) => write('warn', message, fields),
    error: (message, fields) => write('error', message, fields),
    fatal: (message, fields) => write('fatal', message, fields),
    child: (fields) => wrap(base, { ...bindings, ...fields }),
    isLevelEnabled: (level) => base.isLevelEnabled(level),
  };
}

// renderRecord builds what pino writes for one event: the message, then the bindings and the
// fields (a field overrides a binding of the same name), each value made JSON-safe.
function renderRecord(message: string, bindings: LogFields, fields: LogFields | undefined): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...bindings, ...fields };
  // No prototype: a field named `__proto__` is a field like any other.
  const record: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  record['msg'] = message;
  for (const [key, value] of Object.entries(merged)) {
    const rendered = toLogValue(value, 0, new Set());
    if (rendered === undefined) continue;
    record[outputKey(key, merged)] = rendered;
  }
  return record;
}

// outputKey is where field `key` is written: its own name, or for a reserved name the prefixed
// one, prefixed again while the event has a field of that name too (bounded by the fields).
function outputKey(key: string, fields: Record<string, unknown>): string {
  if (!RESERVED_LOG_KEYS.includes(key)) return key;
  let renamed = `${RENAMED_FIELD_PREFIX}${key}`;
  for (let attempt = 0; attempt < Object.keys(fields).length && Object.hasOwn(fields, renamed); attempt += 1) renamed = `${RENAMED_FIELD_PREFIX}${renamed}`;
  return renamed;
}

// toLogValue makes a field's value JSON-safe: a bigint is its decimal string, bytes are
// `<N bytes>` (never their content), an Error is its message, code, details, stack and cause,
// a Map an object and a Set an array; depth and items are bounded (LOG_VALUE_DEPTH_MAX,
// LOG_ITEMS_MAX) and a cycle is `[circular]`. Functions and undefined are left out, as JSON does.
function toLogValue(value: unknown, depth: number, seen: Set<object>): unknown {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'symbol':
      return value.toString();
    case 'undefined':
    case 'function':
      return undefined;
    case 'object':
      break;
  }
  if (value === null) return null;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `<${value.byteLength} bytes>`;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (depth >= LOG_VALUE_DEPTH_MAX) return '[too deep]';
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    if (value instanceof Error) return errorValue(value, depth, seen);
    if (Array.isArray(value) || value instanceof Set) return listValue(value, depth, seen);
    if (value instanceof Map) return objectValue(value.entries(), value.size, depth, seen);
    const withJson = value as { toJSON?: unknown };
    if (typeof withJson.toJSON === 'function') return toLogValue((withJson.toJSON as () => unknown).call(value), depth + 1, seen);
    const keys = Object.keys(value);
    return objectValue(
      keys.map((key) => [key, (value as Record<string, unknown>)[key]] as const),
      keys.length,
      depth,
      seen,
    );
  } finally {
    // Only the path from the root counts: a value shared by two fields is written twice, as JSON would.
    seen.delete(value);
  }
}

function errorValue(error: Error, depth: number, seen: Set<object>): Record<string, unknown> {
  const rendered: Record<string, unknown> = { message: error.message };
  const { code, details } = error as { code?: unknown; details?: unknown };
  if (code !== undefined) rendered['code'] = toLogValue(code, depth + 1, seen);
  if (details !== undefined && !(typeof details === 'object' && details !== null && Object.keys(details).length === 0)) {
    rendered['details'] = toLogValue(details, depth + 1, seen);
  }
  if (error.stack !== undefined) rendered['stack'] = error.stack;
  if (error.cause !== undefined) rendered['cause'] = toLogValue(error.cause, depth + 1, seen);
  return rendered;
}

function listValue(items: Iterable<unknown>, depth: number, seen: Set<object>): unknown[] {
  const rendered: unknown[] = [];
  let count = 0;
  for (const item of items) {
    count += 1;
    if (count > LOG_ITEMS_MAX) continue;
    // Inside an array JSON writes null for what it cannot write; keep the positions.
    rendered.push(toLogValue(item, depth + 1, seen) ?? null);
  }
  if (count > LOG_ITEMS_MAX) rendered.push(`[${count - LOG_ITEMS_MAX} more]`);
  return rendered;
}

function objectValue(entries: Iterable<readonly [unknown, unknown]>, size: number, depth: number, seen: Set<object>): Record<string, unknown> {
  const rendered: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  let count = 0;
  for (const [key, item] of entries) {
    count += 1;
    if (count > LOG_ITEMS_MAX) break;
    const value = toLogValue(item, depth + 1, seen);
    if (value !== undefined) rendered[typeof key === 'string' ? key : String(toLogValue(key, depth + 1, seen))] = value;
  }
  if (size > LOG_ITEMS_MAX) rendered['[more]'] = size - LOG_ITEMS_MAX;
  return rendered;
}

// formatTextLine turns one JSON line of this logger into the text format's line:
// `ts level [name] msg {fields}` (the fields as JSON, left out when there are none).
function formatTextLine(jsonLine: string): string {
  const { level, ts, name, msg, ...fields } = JSON.parse(jsonLine) as Record<string, unknown>;
  const extra = Object.keys(fields).length === 0 ? '' : ` ${JSON.stringify(fields)}`;
  return `${String(ts)} ${String(level).padEnd(5)} [${String(name)}] ${String(msg)}${extra}\n`;
}

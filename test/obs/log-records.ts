// Reading what a `stratakv serve` process logged, for the tests and benchmarks that watch a
// member's log: its stderr is one JSON object per line (src/obs/logger.ts), which is parsed
// here rather than matched as text, so that a harness waits for a message (`msg`), not for a
// spelling of the line. A line that is not such an object (a harness's own note, a crash's
// stack trace, a line cut short by a concurrent read) is skipped by the parsers and kept as it
// is by readableLog.

import { existsSync, readFileSync } from 'node:fs';

/** LogRecord is one parsed log line: the keys every line has, and the rest as fields. */
export interface LogRecord {
  readonly level: string;
  readonly ts: string;
  /** The member's name (--name). */
  readonly name: string;
  readonly msg: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** parseLogLine answers the record of one JSON log line, or undefined for any other line. */
export function parseLogLine(line: string): LogRecord | undefined {
  if (!line.startsWith('{')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const { level, ts, name, msg, ...fields } = parsed as Record<string, unknown>;
  if (typeof level !== 'string' || typeof ts !== 'string' || typeof name !== 'string' || typeof msg !== 'string') return undefined;
  return { level, ts, name, msg, fields };
}

/** parseLogRecords answers the records of the JSON log lines in `text`, in order. */
export function parseLogRecords(text: string): LogRecord[] {
  return text.split('\n').flatMap((line) => {
    const record = parseLogLine(line);
    return record === undefined ? [] : [record];
  });
}

/** readLogRecords parses the log file at `path` from byte `fromByte` ([] while it does not exist). */
export function readLogRecords(path: string, fromByte = 0): LogRecord[] {
  if (!existsSync(path)) return [];
  return parseLogRecords(readFileSync(path).subarray(fromByte).toString('utf8'));
}

/**
 * readableLog renders `text` for a person and for "does the log mention X" checks: each JSON
 * log line as the text format writes it (`ts level [name] msg {fields}`), strings unescaped;
 * every other line as it is.
 */
export function readableLog(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      const record = parseLogLine(line);
      if (record === undefined) return line;
      const extra = Object.keys(record.fields).length === 0 ? '' : ` ${JSON.stringify(record.fields)}`;
      return `${record.ts} ${record.level.padEnd(5)} [${record.name}] ${record.msg}${extra}`;
    })
    .join('\n');
}

/**
 * logLinePattern answers a RegExp that matches a raw JSON log line whose message is exactly one
 * of `messages`, for harnesses that can only test lines with a pattern (testcontainers' log
 * wait, the chaos harness's LogFollower).
 */
export function logLinePattern(...messages: readonly string[]): RegExp {
  const alternatives = messages.map((message) => `"msg":${JSON.stringify(message).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[,}]`);
  return new RegExp(alternatives.join('|'));
}

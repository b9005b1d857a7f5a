// Structured logs for people: one line per event on stderr, `time level message {fields}`.
// The Raft core, storage and the driver all log through the Logger interface of src/raft.

import type { Logger } from '../raft/index.ts';

/** LogLevel is how much a ConsoleLogger prints. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** createConsoleLogger returns a Logger that writes lines at or above `level` to stderr, tagged with `name`. */
export function createConsoleLogger(level: LogLevel, name: string): Logger & { error(message: string, fields?: Record<string, unknown>): void } {
  const write = (at: LogLevel, message: string, fields?: Record<string, unknown>): void => {
    if (RANK[at] < RANK[level]) return;
    const extra = fields === undefined || Object.keys(fields).length === 0 ? '' : ` ${safeJson(fields)}`;
    process.stderr.write(`${new Date().toISOString()} ${at.padEnd(5)} [${name}] ${message}${extra}\n`);
  };
  return {
    debug: (message, fields) => write('debug', message, fields),
    info: (message, fields) => write('info', message, fields),
    warn: (message, fields) => write('warn', message, fields),
    error: (message, fields) => write('error', message, fields),
  };
}

function safeJson(fields: Record<string, unknown>): string {
  try {
    return JSON.stringify(fields, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value instanceof Uint8Array ? `<${value.byteLength} bytes>` : value));
  } catch {
    return '{"fields":"unserializable"}';
  }
}

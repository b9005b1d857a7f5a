// Small JSON files a member keeps in its data directory (member/identity.json, join.json,
// member/state-machine.json): read whole or refused, replaced whole. A write goes to a
// temporary file, is fsynced, renamed over the file and the directory is fsynced, so a crash
// leaves the old file or the new one, never a part. A file that does not parse is CORRUPTION
// naming the file; what its fields must be is for each file's reader to check.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ErrorCode, StrataError } from '../util/errors.ts';

/**
 * readJsonStateFile answers the parsed content of `path`, or undefined when there is no such
 * file. Content that is not JSON is a StrataError CORRUPTION (details.path) with the parse
 * error as its cause.
 */
export function readJsonStateFile(path: string): unknown {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch (error) {
    throw new StrataError(ErrorCode.CORRUPTION, `${path} is not valid JSON`, { cause: error, details: { path } });
  }
}

/**
 * writeJsonStateFile writes `value` to `path` as indented JSON, durably (replaceFileDurably),
 * making its directory first if it is missing.
 */
export function writeJsonStateFile(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  replaceFileDurably(path, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * replaceFileDurably replaces `path` with `text`: a temporary file beside it, fsync, rename,
 * directory fsync. A crash leaves the old file or the new one, whole. The directory must exist.
 */
export function replaceFileDurably(path: string, text: string): void {
  const temporary = `${path}.tmp`;
  const fd = openSync(temporary, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  const directoryFd = openSync(dirname(path), 'r');
  try {
    fsyncSync(directoryFd);
  } finally {
    closeSync(directoryFd);
  }
}

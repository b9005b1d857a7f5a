// What happens when the disk fails under the log: the process stops.
//
// After a failed fsync the kernel may already have dropped the dirty pages and marked them
// clean, so a retry can "succeed" without the data ever reaching the disk (the 2018
// PostgreSQL fsync lesson). The only safe reaction is to stop and recover from what is
// durable. Tests replace the handler to observe the failure instead of dying, and `stratakv
// serve` replaces it with one that logs the error through its logger (src/obs) first.

import { writeSync } from 'node:fs';

/** FatalHandler is called once when the store hits an error it cannot survive. */
export type FatalHandler = (error: Error) => void;

const STDERR_FD = 2;

/**
 * abortOnFatal is the default FatalHandler, for an embedder that gave none: say why on stderr
 * and abort the process at once. It is a last gasp, not a logger: src/storage sits beside
 * src/obs and cannot use it, the process is about to die, so the line is written with one
 * synchronous write(2) that needs no stream, buffer or event loop turn to reach the file.
 */
export const abortOnFatal: FatalHandler = (error) => {
  try {
    writeSync(STDERR_FD, `stratakv: fatal storage error, stopping: ${error.stack ?? error.message}\n`);
  } finally {
    process.abort();
  }
};

// What happens when the disk fails under the log: the process stops.
//
// After a failed fsync the kernel may already have dropped the dirty pages and marked them
// clean, so a retry can "succeed" without the data ever reaching the disk (the 2018
// PostgreSQL fsync lesson). The only safe reaction is to stop and recover from what is
// durable. Tests replace the handler to observe the failure instead of dying.

/** FatalHandler is called once when the store hits an error it cannot survive. */
export type FatalHandler = (error: Error) => void;

/** abortOnFatal is the default FatalHandler: log the error and abort the process at once. */
export const abortOnFatal: FatalHandler = (error) => {
  console.error(`stratakv: fatal storage error, stopping: ${error.stack ?? error.message}`);
  process.abort();
};

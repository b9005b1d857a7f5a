// The public surface of src/obs: logging (traces and metrics arrive with their issue).
export { createConsoleLogger } from './logger.ts';
export type { LogLevel } from './logger.ts';

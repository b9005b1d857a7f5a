// The version in package.json, the one place `stratakv version` and Maintenance.Status read it.
import { readFileSync } from 'node:fs';

/** packageVersion is stratakv's version from package.json. */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

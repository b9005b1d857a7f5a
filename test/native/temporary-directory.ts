// A fresh directory per test file under the system's temporary folder, removed at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/** temporaryDirectory makes a directory that is removed when the test file ends. */
export function temporaryDirectory(prefix: string): string {
  const directory = mkdtempSync(join(tmpdir(), `stratakv-${prefix}-`));
  after(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

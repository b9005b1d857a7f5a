// run-tests.ts — runs every test file under test/ with Node's built-in runner.
//
// Test files are `*.test.ts`. Files under test/**/slow/ are included too; nothing is
// skipped silently. Extra arguments are passed to `node --test` (e.g. --test-name-pattern).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function collectTestFiles(directory: string, found: string[]): string[] {
  for (const name of readdirSync(directory).sort()) {
    const path = join(directory, name);
    if (statSync(path).isDirectory()) collectTestFiles(path, found);
    else if (name.endsWith('.test.ts')) found.push(path);
  }
  return found;
}

const files = collectTestFiles('test', []);
if (files.length === 0) {
  console.error('run-tests: no test files found under test/');
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...process.argv.slice(2), ...files], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);

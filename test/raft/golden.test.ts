// Golden script tests for named Raft scenarios. Each file in testdata/ is a script with its
// expected output; UPDATE_GOLDEN=1 rewrites them (review the diff before committing).
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runScript } from './script.ts';

const directory = join(import.meta.dirname, 'testdata');
const update = process.env['UPDATE_GOLDEN'] === '1';

for (const name of readdirSync(directory).filter((file) => file.endsWith('.txt')).sort()) {
  test(`golden script ${name}`, () => {
    const path = join(directory, name);
    const expected = readFileSync(path, 'utf8');
    const actual = runScript(expected);
    if (update) {
      writeFileSync(path, actual);
      return;
    }
    assert.equal(actual, expected, `${name} differs; rerun with UPDATE_GOLDEN=1 and review the diff`);
  });
}

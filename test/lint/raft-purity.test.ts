// The ESLint rule that keeps src/raft pure (ARCHITECTURE.md, "Layers") must
// actually fire: each forbidden construct, linted as if it were a file in src/raft, is an
// error, and the same code outside src/raft is not.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ESLint } from 'eslint';

const eslint = new ESLint({ cwd: new URL('../..', import.meta.url).pathname });

async function ruleIdsFor(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  assert.ok(result !== undefined);
  return result.messages.map((message) => message.ruleId ?? `fatal: ${message.message}`);
}

const FORBIDDEN: ReadonlyArray<readonly [string, string, string]> = [
  ['a node: module', "import { readFileSync } from 'node:fs';\nexport const f = readFileSync;\n", 'no-restricted-imports'],
  ['a package', "import { pack } from 'msgpackr';\nexport const f = pack;\n", 'no-restricted-imports'],
  ['another src area', "import { x } from '../storage/index.ts';\nexport const f = x;\n", 'no-restricted-imports'],
  ['Date', 'export const now = Date.now();\n', 'no-restricted-globals'],
  ['Math.random', 'export const r = Math.random();\n', 'no-restricted-properties'],
  ['setTimeout', 'export const t = setTimeout(() => {}, 1);\n', 'no-restricted-globals'],
  ['setInterval', 'export const t = setInterval(() => {}, 1);\n', 'no-restricted-globals'],
  ['process', 'export const env = process.env;\n', 'no-restricted-globals'],
  ['Promise', 'export const p = Promise.resolve(1);\n', 'no-restricted-globals'],
  ['an async function', 'export async function f(): Promise<number> {\n  return 1;\n}\n', 'no-restricted-syntax'],
];

for (const [what, code, rule] of FORBIDDEN) {
  test(`src/raft may not use ${what}`, async () => {
    const inRaft = await ruleIdsFor(code, 'src/raft/purity-probe.ts');
    assert.ok(inRaft.includes(rule), `expected ${rule} in src/raft, got ${JSON.stringify(inRaft)}`);
    const elsewhere = await ruleIdsFor(code, 'src/node/purity-probe.ts');
    assert.ok(!elsewhere.includes(rule), `${rule} must apply only to src/raft, got ${JSON.stringify(elsewhere)}`);
  });
}

test('src/raft may import src/util and its own files', async () => {
  const code = "import { assert } from '../util/assert.ts';\nimport type { Entry } from './types.ts';\nexport function f(e: Entry): void {\n  assert(e.index > 0);\n}\n";
  assert.deepEqual(await ruleIdsFor(code, 'src/raft/purity-probe.ts'), []);
});

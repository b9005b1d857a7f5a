// The layers of ARCHITECTURE.md hold: every import of src/ and cmd/ points down, no area is
// missing from the list, and no areas import each other in a cycle. The planted cases prove
// the check fires: each adds one bad file to the real tree and expects the sentence naming it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { areaCycles, importEdges, layeringViolations, parseLayers, projectRoot, projectSources } from './import-graph.ts';

const layers = parseLayers(readFileSync(join(projectRoot, 'ARCHITECTURE.md'), 'utf8'));
const realTree = projectSources(projectRoot);

// An upward import also closes a cycle with the downward imports already there; those cycle
// sentences come last, and the tests count the others.
function withoutCycles(violations: readonly string[]): string[] {
  return violations.filter((violation) => !violation.startsWith('the areas '));
}

function withPlanted(path: string, source: string): Map<string, string> {
  assert.ok(!realTree.has(path), `the planted file ${path} must be new`);
  return new Map([...realTree, [path, source]]);
}

test('the imports of src/ and cmd/ keep the layers of ARCHITECTURE.md', () => {
  assert.ok(realTree.size > 50, `expected the whole tree, read ${realTree.size} files`);
  assert.deepEqual(layeringViolations(layers, realTree), []);
});

test('ARCHITECTURE.md lists every area of src/ and cmd/ that exists', () => {
  const listed = new Set(layers.rows.flat());
  for (const area of ['cmd', 'src/index.ts', 'src/server', 'src/client', 'src/node', 'src/raft', 'src/storage', 'src/transport', 'src/native', 'src/util']) {
    assert.ok(listed.has(area), `${area} is missing from the layers block`);
  }
});

test('a planted upward import fails: src/util importing src/server', () => {
  const violations = layeringViolations(layers, withPlanted('src/util/planted.ts', "import { startEtcdServer } from '../server/index.ts';\nexport const f = startEtcdServer;\n"));
  assert.equal(withoutCycles(violations).length, 1, violations.join('\n'));
  assert.match(violations[0] ?? '', /^src\/util\/planted\.ts:1 imports '\.\.\/server\/index\.ts': src\/server is above src\/util/);
  assert.match(violations.at(-1) ?? '', /^the areas .*src\/server.*src\/util import each other in a cycle$/);
});

test('a planted upward import hidden as a type-only import, a re-export or a dynamic import fails too', () => {
  const cases = [
    "import type { RaftNode } from '../node/index.ts';\nexport type N = RaftNode;\n",
    "export { RaftNode } from '../node/index.ts';\n",
    "export async function f(): Promise<unknown> {\n  return import('../node/raft-node.ts');\n}\n",
    "import {\n  RaftNode,\n} from\n  '../node/index.ts';\nexport const n = RaftNode;\n",
  ];
  for (const source of cases) {
    const violations = layeringViolations(layers, withPlanted('src/storage/planted.ts', source));
    assert.equal(withoutCycles(violations).length, 1, `${source}\n${violations.join('\n')}`);
    assert.match(violations[0] ?? '', /src\/node is above src\/storage in ARCHITECTURE.md's layers; imports point down/);
  }
});

test('an import commented out is not an edge', () => {
  const violations = layeringViolations(layers, withPlanted('src/util/planted.ts', "// import { x } from '../server/index.ts';\nexport const f = 1;\n"));
  assert.deepEqual(violations, []);
});

test('areas on the same row may not import each other: src/client importing src/server', () => {
  const violations = layeringViolations(layers, withPlanted('src/client/planted.ts', "import type { Member } from '../server/index.ts';\nexport type M = Member;\n"));
  assert.equal(violations.length, 1, violations.join('\n'));
  assert.match(violations[0] ?? '', /src\/client and src\/server share a row/);
});

test('a cycle between areas is named, besides the upward edge that makes it', () => {
  // src/native imports src/util already; src/util importing src/native closes the cycle that
  // issue 10 removed (importing src/util used to load the N-API addon's wrapper).
  const violations = layeringViolations(layers, withPlanted('src/util/planted.ts', "export { crc32c } from '../native/index.ts';\n"));
  assert.equal(violations.length, 2, violations.join('\n'));
  assert.match(violations[0] ?? '', /src\/native is above src\/util/);
  assert.equal(violations[1], 'the areas src/native, src/util import each other in a cycle');
});

test('an area missing from ARCHITECTURE.md fails, and so does shipped code importing a test', () => {
  const unlisted = layeringViolations(layers, withPlanted('src/newarea/index.ts', "import { assert } from '../util/index.ts';\nexport const f = assert;\n"));
  assert.deepEqual(unlisted, ["src/newarea is not placed in ARCHITECTURE.md's layers: add it to the row where it belongs"]);
  const intoTests = layeringViolations(layers, withPlanted('src/node/planted.ts', "import { x } from '../../test/raft/harness.ts';\nexport const f = x;\n"));
  assert.equal(intoTests.length, 1, intoTests.join('\n'));
  assert.match(intoTests[0] ?? '', /outside src\/ and cmd\/ \(test\/raft\/harness\.ts\)/);
});

test('the parser of the layers block refuses a missing block and an area listed twice', () => {
  assert.throws(() => parseLayers('# no block here\n'), /no ```layers block/);
  assert.throws(() => parseLayers('```layers\ncmd\nsrc/util cmd\n```\n'), /list cmd twice/);
  assert.deepEqual(parseLayers('```layers\n# comment\ncmd  # top\n\nsrc/a src/b\n```\n').rows, [['cmd'], ['src/a', 'src/b']]);
});

test('areaCycles finds a three-area cycle and nothing in a chain', () => {
  const files = new Map([
    ['src/a/x.ts', "import '../b/x.ts';\n"],
    ['src/b/x.ts', "import '../c/x.ts';\n"],
    ['src/c/x.ts', "import '../a/x.ts';\n"],
    ['src/d/x.ts', "import '../a/x.ts';\n"],
  ]);
  assert.deepEqual(areaCycles(importEdges(files)), [['src/a', 'src/b', 'src/c']]);
  files.set('src/c/x.ts', '');
  assert.deepEqual(areaCycles(importEdges(files)), []);
});

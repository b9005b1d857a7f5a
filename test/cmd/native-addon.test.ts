// The CLI builds the native addon on first use when `npm ci` did not (--ignore-scripts, an
// addon deleted by hand): one line says so, and a failed build stops the command with a line
// naming the addon. A stand-in build script keeps the real addon untouched.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { ensureNativeAddon } from '../../cmd/native-addon.ts';

function scratch(): { directory: string; addonPath: string; [Symbol.dispose](): void } {
  const directory = mkdtempSync(join(tmpdir(), 'stratakv-native-addon-test-'));
  return { directory, addonPath: join(directory, 'stratakv_native.node'), [Symbol.dispose]: () => rmSync(directory, { recursive: true, force: true }) };
}

test('an addon that is there is used as it is: no build, nothing said', () => {
  using folder = scratch();
  writeFileSync(folder.addonPath, 'built');
  const said: string[] = [];
  const buildScript = join(folder.directory, 'build.sh');
  writeFileSync(buildScript, 'echo must-not-run > "$(dirname "$0")/ran"; exit 1\n');
  assert.equal(ensureNativeAddon('serve', { addonPath: folder.addonPath, buildScript, say: (line) => said.push(line) }), true);
  assert.deepEqual(said, []);
  assert.equal(existsSync(join(folder.directory, 'ran')), false);
});

test('a missing addon is built once, with one line saying so, and the command goes on', () => {
  using folder = scratch();
  const buildScript = join(folder.directory, 'build.sh');
  writeFileSync(buildScript, `[ "$1" = --if-missing ] || exit 3\nprintf built > ${JSON.stringify(folder.addonPath)}\n`);
  const said: string[] = [];
  assert.equal(ensureNativeAddon('dev', { addonPath: folder.addonPath, buildScript, say: (line) => said.push(line) }), true);
  assert.equal(said.length, 1, said.join('\n'));
  assert.match(said[0] ?? '', /^stratakv dev: the native addon is not built yet; building it now with .*build\.sh/);
  assert.equal(existsSync(folder.addonPath), true);
});

test('a failed build stops the command with a line naming the addon and the failure', () => {
  using folder = scratch();
  const buildScript = join(folder.directory, 'build.sh');
  writeFileSync(buildScript, 'echo "build-native: missing: make" >&2\nexit 1\n');
  const said: string[] = [];
  assert.equal(ensureNativeAddon('serve', { addonPath: folder.addonPath, buildScript, say: (line) => said.push(line) }), false);
  assert.equal(said.length, 2, said.join('\n'));
  assert.match(said[1] ?? '', /^stratakv serve: cannot run without the native addon \(.*stratakv_native\.node\); its build failed \(exit code 1\)/);
});

test('a build that exits 0 without producing the addon is a failure too', () => {
  using folder = scratch();
  const buildScript = join(folder.directory, 'build.sh');
  writeFileSync(buildScript, 'exit 0\n');
  const said: string[] = [];
  assert.equal(ensureNativeAddon('serve', { addonPath: folder.addonPath, buildScript, say: (line) => said.push(line) }), false);
  assert.match(said[1] ?? '', /cannot run without the native addon/);
});

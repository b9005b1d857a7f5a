// No dependency runs code at install time (no compiling, no downloading): every package in
// the lockfile that declares an install script is denied in package.json's allowScripts
// (npm >= 11.16 honours it; it skips scripts of packages not listed, with a warning). The
// native dependencies load the prebuilt binaries they ship at run time instead
// (classic-level, msgpackr-extract through node-gyp-build), so the scripts are not needed.
// Our own addon is built by the root package's `prepare` script (scripts/build-native.sh).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const root = new URL('../../', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  allowScripts?: Record<string, boolean | string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8')) as {
  packages: Record<string, { hasInstallScript?: boolean; optional?: boolean }>;
};

test('every dependency with an install script is denied in allowScripts', () => {
  const withScripts = Object.entries(lock.packages)
    .filter(([path, entry]) => path !== '' && entry.hasInstallScript === true)
    .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
  assert.ok(withScripts.length > 0, 'the lockfile lists classic-level, which has an install script');
  for (const name of withScripts) {
    assert.equal(manifest.allowScripts?.[name], false, `${name} has an install script; deny it in package.json's allowScripts (npm install-scripts deny ${name})`);
  }
});

test('the addon is built by our own prepare script, and its build tools are runtime dependencies', () => {
  assert.match(manifest.scripts.prepare ?? '', /^bash scripts\/build-native\.sh --if-missing$/);
  // The CLI builds the addon on first use when `npm ci` did not, so what the build needs must
  // be there in a production install too.
  assert.ok(manifest.dependencies['node-gyp'] !== undefined);
  assert.ok(manifest.dependencies['node-addon-api'] !== undefined);
  assert.equal(manifest.devDependencies.sse4_crc32, undefined, 'sse4_crc32 compiles at install time');
});

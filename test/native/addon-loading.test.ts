// Loading the addon: importing src/native never fails; without a build, the first call that
// needs the addon fails with NATIVE_UNAVAILABLE (and a message saying how to build it).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { temporaryDirectory } from './temporary-directory.ts';

describe('addon loading', () => {
  it('reports a missing addon as NATIVE_UNAVAILABLE on first use', () => {
    const missing = join(temporaryDirectory('addon-loading'), 'not-built.node');
    const child = spawnSync(process.execPath, ['test/native/fixtures/unavailable.ts'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, STRATAKV_NATIVE_ADDON: missing },
    });
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout.trim()), { code: 'NATIVE_UNAVAILABLE' });
  });
});

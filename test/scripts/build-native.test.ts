// scripts/build-native.sh names every missing build tool and the apt line that installs
// them, before node-gyp could fail three screens later. Run with a PATH that holds only the
// few commands the script needs before its check (bash, dirname), so python3, make and every
// C++ compiler are missing; it must stop there, having built nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const SCRIPT = new URL('../../scripts/build-native.sh', import.meta.url).pathname;

function which(command: string): string {
  const found = spawnSync('bash', ['-c', `command -v ${command}`], { encoding: 'utf8' }).stdout.trim();
  assert.ok(found !== '', `${command} is needed to run this test`);
  return found;
}

test('build-native.sh names python3, make and a C++ compiler when they are missing, with the apt line', () => {
  const bin = mkdtempSync(join(tmpdir(), 'stratakv-build-native-test-'));
  try {
    for (const command of ['bash', 'dirname']) symlinkSync(which(command), join(bin, command));
    const result = spawnSync(join(bin, 'bash'), [SCRIPT], { encoding: 'utf8', env: { PATH: bin, HOME: bin }, timeout: 30_000 });
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /cannot build the native addon; missing:/);
    assert.match(result.stderr, /- python3 /);
    assert.match(result.stderr, /- make\n/);
    assert.match(result.stderr, /- a C\+\+ compiler \(g\+\+ or clang\+\+\)/);
    assert.match(result.stderr, /apt-get install python3 make g\+\+/);
    assert.doesNotMatch(result.stderr, /building native\/|gyp ERR/);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});

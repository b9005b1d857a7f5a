#!/usr/bin/env node
// stratakv — the command-line entry point. This file is plain JavaScript so that any Node
// can start it: when the running Node is older than the project's engines (>= 22.22), it
// fetches Node 24 through scripts/node24.sh and re-executes itself there; then it loads
// the TypeScript CLI (cmd/main.ts), which Node >= 22.22 runs directly.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [major, minor] = process.versions.node.split('.').map(Number);
const supported = major > 22 || (major === 22 && minor >= 22);

if (!supported) {
  if (process.env.STRATAKV_REEXEC === '1') {
    console.error(`stratakv: Node ${process.versions.node} is too old and Node 24 could not be started`);
    process.exit(1);
  }
  const found = spawnSync('bash', [join(here, '..', 'scripts', 'node24.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (found.status !== 0) {
    console.error('stratakv: needs Node >= 22.22 and could not fetch Node 24 (see scripts/node24.sh)');
    process.exit(1);
  }
  const nodeBinary = join(found.stdout.trim(), 'node');
  const child = spawnSync(nodeBinary, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, STRATAKV_REEXEC: '1' },
  });
  process.exit(child.status ?? 1);
} else {
  const { main } = await import('./main.ts');
  process.exitCode = await main(process.argv.slice(2));
}

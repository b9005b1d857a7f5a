#!/usr/bin/env node
// stratakv — the command-line entry point. This file is plain JavaScript so that any Node
// can start it: when the running Node is older than the project's engines (>= 22.22), it
// fetches Node 24 through scripts/node24.sh and runs itself there as a child process; then
// it loads the TypeScript CLI (cmd/main.ts), which Node >= 22.22 runs directly.
//
// The child gets every signal that stops a program (Ctrl-C, SIGTERM, SIGHUP) sent to this
// process by PID, not only those sent to the terminal's process group: otherwise `kill PID`
// of `npx stratakv dev` would end this launcher and leave the cluster running, orphaned.
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [major, minor] = process.versions.node.split('.').map(Number);
const supported = major > 22 || (major === 22 && minor >= 22);
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];

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
  const child = spawn(nodeBinary, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, STRATAKV_REEXEC: '1' },
  });
  for (const signal of FORWARDED_SIGNALS) {
    // A Ctrl-C at a terminal reaches both processes; the child decides what it means (dev
    // stops its members gracefully), so this process only passes it on and waits.
    process.on(signal, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    });
  }
  child.on('error', (error) => {
    console.error(`stratakv: could not start ${nodeBinary}: ${error.message}`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal !== null) {
      // End the same way the child did, so a caller sees the signal, not a made-up code.
      for (const forwarded of FORWARDED_SIGNALS) process.removeAllListeners(forwarded);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
} else {
  const { main } = await import('./main.ts');
  process.exitCode = await main(process.argv.slice(2));
}

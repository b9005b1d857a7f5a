// runModuleScript runs an ES module script in a child Node process and answers its exit code
// and output (stdout and stderr together), killing it (SIGKILL, by its PID) when it has not
// exited by `deadlineMs`: the leak tests use it to see that a proxy's close() leaves nothing
// that keeps a process alive.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

/** runModuleScript runs `script` (see the file comment); asserts that the child exited on its own with code 0. */
export async function runModuleScript(script: string, deadlineMs: number): Promise<string> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (bytes: Buffer) => { output += bytes.toString(); });
  child.stderr.on('data', (bytes: Buffer) => { output += bytes.toString(); });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let killer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'hung'>((resolve) => {
    killer = setTimeout(() => resolve('hung'), deadlineMs);
  });
  const outcome = await Promise.race([exit, deadline]);
  clearTimeout(killer);
  if (outcome === 'hung') {
    child.kill('SIGKILL');
    await exit;
  }
  assert.notEqual(outcome, 'hung', `the child did not exit on its own; output:\n${output}`);
  assert.equal(outcome, 0, output);
  return output;
}

// Crash safety of the writer: a file appears under its final name complete or not at all.
// commit() = fdatasync, close, rename, directory fsync; a writer killed with SIGKILL in the
// middle leaves the final name as it was (absent, or the previous complete file).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { AtomicFileWriter, allocateAligned, isAtomicWriterTemporary } from '../../src/native/index.ts';
import { temporaryDirectory } from './temporary-directory.ts';

const directory = temporaryDirectory('atomic');
const KILL_WAIT_MS_MAX = 30_000;

// killWriterMidway starts the fixture, waits until it has written its first block, kills it.
async function killWriterMidway(finalPath: string): Promise<string> {
  const child = spawn(process.execPath, ['test/native/fixtures/killed-writer.ts', finalPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const temporaryPath = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('writer did not start in time')), KILL_WAIT_MS_MAX);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /^writing (.+)$/m.exec(output);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`writer exited early with ${code}: ${output}`)));
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  assert.ok(child.pid !== undefined);
  process.kill(child.pid, 'SIGKILL');
  await exited;
  return temporaryPath;
}

describe('AtomicFileWriter', () => {
  it('publishes the file whole on commit() and leaves no temporary file', async () => {
    const finalPath = join(directory, 'committed.snap');
    const writer = await AtomicFileWriter.create(finalPath);
    const block = allocateAligned(8192).bytes.fill(0x42);
    await writer.writeAt(block, 0);
    await writer.writeAt(block, 8192);
    assert.equal(existsSync(finalPath), false, 'nothing under the final name before commit()');
    await writer.commit(8192 + 100);
    const written = readFileSync(finalPath);
    assert.equal(written.length, 8192 + 100);
    assert.ok(written.every((byte) => byte === 0x42));
    assert.deepEqual(readdirSync(directory).filter(isAtomicWriterTemporary), []);
    await writer.abort(); // after commit: harmless, and the file stays
    assert.equal(existsSync(finalPath), true);
  });

  it('reserves expectedBytes up front and cuts the file back to what was written', async () => {
    const finalPath = join(directory, 'preallocated.snap');
    const writer = await AtomicFileWriter.create(finalPath, { expectedBytes: 16 * 4096 });
    await writer.writeAt(allocateAligned(2 * 4096).bytes.fill(1), 0);
    await writer.commit();
    assert.equal(statSync(finalPath).size, 2 * 4096);
  });

  it('leaves the previous file untouched when aborted', async () => {
    const finalPath = join(directory, 'aborted.snap');
    writeFileSync(finalPath, 'previous');
    const writer = await AtomicFileWriter.create(finalPath);
    await writer.writeAt(allocateAligned(4096).bytes, 0);
    await writer.abort();
    assert.equal(readFileSync(finalPath, 'utf8'), 'previous');
    assert.equal(existsSync(writer.temporaryPath), false);
  });

  it('a writer killed mid-write leaves no file under the final name', async () => {
    const finalPath = join(directory, 'killed.snap');
    const temporaryPath = await killWriterMidway(finalPath);
    assert.equal(existsSync(finalPath), false);
    assert.equal(existsSync(temporaryPath), true, 'the half file stays under its temporary name');
    assert.ok(isAtomicWriterTemporary(temporaryPath.slice(directory.length + 1)));
  });

  it('a writer killed mid-write leaves the previous complete file under the final name', async () => {
    const finalPath = join(directory, 'replaced.snap');
    writeFileSync(finalPath, 'previous complete file');
    await killWriterMidway(finalPath);
    assert.equal(readFileSync(finalPath, 'utf8'), 'previous complete file');
  });
});

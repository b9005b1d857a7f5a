// fatal-child.ts — a process whose log hits an fdatasync error with the default fatal
// handler; test/storage/crash-process.test.ts checks that it aborts rather than going on.
import { DiskLogStore } from '../../src/storage/disk-log-store.ts';
import { FaultyFileSystem } from '../../src/storage/faulty-file-system.ts';

const disk = new FaultyFileSystem({ seed: 1 });
const log = DiskLogStore.openSync({ fileSystem: disk, directory: '/wal', logger: { debug() {}, info() {}, warn() {} } });
disk.failFdatasync(1);
try {
  await log.save({ entries: [{ index: 1, term: 1, type: 0, data: new Uint8Array(8) }] });
} catch {
  // The default handler aborts before this rejection could be seen.
}
console.log('still running after a failed fdatasync');
process.exit(0);

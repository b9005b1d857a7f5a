// Runs the LogStore conformance suite against all three implementations.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import type { Logger } from '../../src/raft/types.ts';
import { DiskLogStore } from '../../src/storage/disk-log-store.ts';
import { FaultyFileSystem } from '../../src/storage/faulty-file-system.ts';
import { NodeFileSystem } from '../../src/storage/file-system.ts';
import type { LogStore } from '../../src/storage/log-store.ts';
import { MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { describeLogStoreConformance } from './log-store-conformance.ts';

const QUIET: Logger = { debug() {}, info() {}, warn() {} };
// A failed fsync would abort the process; here it fails the test instead, showing the cause.
const onFatal = (error: Error): void => {
  console.error('fatal storage error in test', error, error.cause);
};

describeLogStoreConformance('memory', {
  open: () => new MemoryLogStore(),
  reopen: (store) => Promise.resolve(store),
});

const root = mkdtempSync(path.join(tmpdir(), 'stratakv-log-'));
after(() => rmSync(root, { recursive: true, force: true }));
let directories = 0;
const nodeFileSystem = new NodeFileSystem();
const diskOptions = new Map<LogStore, { directory: string }>();

describeLogStoreConformance('disk', {
  open: () => {
    directories += 1;
    const directory = path.join(root, `log-${directories}`);
    // Small segments and a small cache so that rolling, deletion and disk reads all happen.
    const store = DiskLogStore.openSync({ fileSystem: nodeFileSystem, directory, logger: QUIET, onFatal, segmentBytesMax: 2048, cacheBytesMax: 256 });
    diskOptions.set(store, { directory });
    return store;
  },
  reopen: async (store) => {
    const { directory } = diskOptions.get(store) as { directory: string };
    await store.close();
    const reopened = DiskLogStore.openSync({ fileSystem: nodeFileSystem, directory, logger: QUIET, onFatal, segmentBytesMax: 2048, cacheBytesMax: 256 });
    diskOptions.set(reopened, { directory });
    return reopened;
  },
});

const faultyDisks = new Map<LogStore, FaultyFileSystem>();
describeLogStoreConformance('fault-injecting disk (reopen = crash, unsynced writes lost)', {
  open: () => {
    const disk = new FaultyFileSystem({ seed: 1 });
    const store = DiskLogStore.openSync({ fileSystem: disk, directory: '/log', logger: QUIET, onFatal, segmentBytesMax: 1024, cacheBytesMax: 128 });
    faultyDisks.set(store, disk);
    return store;
  },
  reopen: (store) => {
    const disk = faultyDisks.get(store) as FaultyFileSystem;
    disk.crash('lose');
    const reopened = DiskLogStore.openSync({ fileSystem: disk, directory: '/log', logger: QUIET, onFatal, segmentBytesMax: 1024, cacheBytesMax: 128 });
    faultyDisks.set(reopened, disk);
    return Promise.resolve(reopened);
  },
});

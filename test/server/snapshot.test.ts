// Maintenance.Snapshot over one real in-memory RaftNode (RaftNodeBackend): the real etcdctl
// saves a file that is our snapshot followed by its SHA-256, exactly as it saves etcd's;
// EtcdClient.snapshot streams the same bytes; a client that stops reading holds the server
// back (bounded memory) and a cancel releases the snapshot; a block that fails its check ends
// the call with CORRUPTION. Without etcdctl the etcdctl test skips, except in CI where it fails.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { EtcdClient, SNAPSHOT_DIGEST_BYTES } from '../../src/client/index.ts';
import { verifySavedSnapshot } from '../../src/node/index.ts';
import type { BackendSnapshot, EtcdBackend, EtcdServer } from '../../src/server/index.ts';
import { SNAPSHOT_CALLS_MAX, SNAPSHOT_READ_BYTES_MAX, startEtcdServer } from '../../src/server/index.ts';
import { ErrorCode, isStrataError, StrataError } from '../../src/util/errors.ts';
import { ETCDCTL, etcdctlSkipReason } from '../integration/cluster-process.ts';
import type { SingleMember } from './single-member.ts';
import { freeClientUrl, startSingleMember } from './single-member.ts';

const ETCDCTL_TIMEOUT_MS = 20_000;
const KEYS = 40;
const VALUE_BYTES = 2048;
// A client paused on its first chunk lets the server read this far at most (its read, the
// send window, grpc-js's and the kernel's buffers): far below the fake snapshot's length.
const PAUSED_READ_BYTES_MAX = 96 * 1024 * 1024;
const FAKE_SNAPSHOT_BYTES = 512 * 1024 * 1024;
const WAIT_STEP_MS = 50;
const WAIT_STEPS_MAX = 100;

const skipEtcdctl = etcdctlSkipReason();
let member: SingleMember;
let directory: string;

before(async () => {
  member = await startSingleMember({ name: 'one', peerUrls: ['http://127.0.0.1:2380'], clientUrls: [await freeClientUrl()] });
  for (let index = 0; index < KEYS; index += 1) {
    await member.node.kv({ type: 'put', key: Buffer.from(`key/${String(index).padStart(3, '0')}`), value: Buffer.alloc(VALUE_BYTES, index) });
  }
  directory = mkdtempSync(join(tmpdir(), 'stratakv-snapshot-server-'));
});

after(async () => {
  await member.stop();
  rmSync(directory, { recursive: true, force: true });
});

// withBackend serves `backend` for one test on a fresh port.
async function withBackend<T>(backend: EtcdBackend, run: (endpoint: string) => Promise<T>): Promise<T> {
  const server: EtcdServer = await startEtcdServer({ backend, listenUrls: [await freeClientUrl()], maxRequestBytes: 1.5 * 1024 * 1024 });
  try {
    return await run((server.urls[0] ?? '').replace('http://', ''));
  } finally {
    await server.close({ force: true });
  }
}

// A backend whose snapshot() is `snapshot` and everything else the member's.
function backendWith(snapshot: EtcdBackend['snapshot']): EtcdBackend {
  const backend = Object.create(member.backend) as EtcdBackend & { snapshot: EtcdBackend['snapshot'] };
  backend.snapshot = snapshot;
  return backend;
}

function etcdctl(endpoint: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      ETCDCTL,
      ['--endpoints', endpoint, '--dial-timeout=5s', '--command-timeout=10s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: ETCDCTL_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
    );
  });
}

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  for (let step = 0; step < WAIT_STEPS_MAX; step += 1) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, WAIT_STEP_MS));
  }
  assert.fail(`${what} did not happen within ${WAIT_STEP_MS * WAIT_STEPS_MAX} ms`);
}

test('etcdctl snapshot save writes our snapshot followed by its SHA-256', { skip: skipEtcdctl }, async () => {
  await withBackend(member.backend, async (endpoint) => {
    const file = join(directory, 'etcdctl.db');
    const run = await etcdctl(endpoint, ['snapshot', 'save', file]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, `Snapshot saved at ${file}\n`);
    const bytes = readFileSync(file);
    // etcdutl's test for a digest at the end (a bbolt file is whole 512-byte pages).
    assert.equal(bytes.byteLength % 512, SNAPSHOT_DIGEST_BYTES);
    const body = bytes.subarray(0, bytes.byteLength - SNAPSHOT_DIGEST_BYTES);
    assert.deepEqual(createHash('sha256').update(body).digest(), bytes.subarray(body.byteLength));
    const verified = await verifySavedSnapshot(file);
    assert.equal(verified.hasTrailer, true);
    assert.equal(verified.footer.keyCount, KEYS);
    assert.equal(verified.footer.metadata.revision, member.node.revision());
    assert.equal(existsSync(`${file}.part`), false);
  });
});

test('EtcdClient.snapshot streams the file, then its digest, and the snapshot is closed', async () => {
  let closes = 0;
  const backend = backendWith(async (options) => {
    const snapshot = await member.backend.snapshot(options);
    return { ...snapshot, read: (offset, maxBytes) => snapshot.read(offset, maxBytes), close: () => (closes += 1, snapshot.close()) };
  });
  await withBackend(backend, async (endpoint) => {
    const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 10_000 });
    try {
      const data: Uint8Array[] = [];
      const kinds: string[] = [];
      let header;
      for await (const chunk of client.snapshot(endpoint)) {
        kinds.push(chunk.kind);
        header = chunk.header;
        if (chunk.kind === 'data') data.push(chunk.bytes);
      }
      assert.equal(kinds.at(-1), 'sha256');
      assert.equal(kinds.filter((kind) => kind === 'sha256').length, 1);
      const file = Buffer.concat(data);
      assert.equal(file.byteLength % 4096, 0);
      assert.equal(header?.memberId, BigInt(member.node.memberId));
    } finally {
      client.close();
    }
  });
  await waitFor('the snapshot close', () => closes === 1);
});

test('a client that stops reading holds the server back, and its cancel releases the snapshot', async () => {
  let readBytes = 0;
  let closed = false;
  const fake: BackendSnapshot = {
    info: { id: 'fake', index: 1, term: 1, revision: 1, byteLength: FAKE_SNAPSHOT_BYTES },
    version: 'test',
    read: async (offset, maxBytes) => {
      const length = Math.min(maxBytes, FAKE_SNAPSHOT_BYTES - offset);
      readBytes += length;
      return Buffer.alloc(length, offset % 251);
    },
    close: async () => {
      closed = true;
    },
  };
  await withBackend(backendWith(async () => fake), async (endpoint) => {
    const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 10_000 });
    try {
      const chunks = client.snapshot(endpoint);
      const first = await chunks.next();
      assert.equal(first.done, false);
      // Paused here: the server must stop reading once its window and the buffers are full.
      let previous = -1;
      await waitFor('the server to stall', () => {
        const stalled = readBytes === previous && readBytes > 0;
        previous = readBytes;
        return stalled;
      });
      assert.ok(readBytes <= PAUSED_READ_BYTES_MAX, `the server read ${readBytes} bytes for a paused client`);
      assert.equal(closed, false);
      await chunks.return();
      await waitFor('the snapshot close after the cancel', () => closed);
      assert.ok(readBytes < FAKE_SNAPSHOT_BYTES);
    } finally {
      client.close();
    }
  });
});

describe('failures', () => {
  test('a block that fails its check ends the call with CORRUPTION, and the snapshot is closed', async () => {
    let closed = false;
    const fake: BackendSnapshot = {
      info: { id: 'fake', index: 1, term: 1, revision: 1, byteLength: 3 * SNAPSHOT_READ_BYTES_MAX },
      version: 'test',
      read: async (offset, maxBytes) => {
        if (offset > 0) throw new StrataError(ErrorCode.CORRUPTION, 'snapshot fake: block 3 fails its CRC32c');
        return Buffer.alloc(maxBytes);
      },
      close: async () => {
        closed = true;
      },
    };
    await withBackend(backendWith(async () => fake), async (endpoint) => {
      const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 10_000 });
      try {
        await assert.rejects(
          async () => {
            for await (const chunk of client.snapshot(endpoint)) assert.equal(chunk.kind, 'data');
          },
          (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION),
        );
      } finally {
        client.close();
      }
    });
    await waitFor('the snapshot close', () => closed);
  });

  test('calls past SNAPSHOT_CALLS_MAX are refused with UNAVAILABLE; a cancel while taking settles', async () => {
    let taking = 0;
    const backend = backendWith(
      (options) =>
        new Promise((_resolve, reject) => {
          taking += 1;
          options?.signal?.addEventListener('abort', () => reject(new StrataError(ErrorCode.CANCELED, 'etcdserver: request canceled')));
        }),
    );
    await withBackend(backend, async (endpoint) => {
      const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 10_000 });
      const controller = new AbortController();
      try {
        const waiting = Array.from({ length: SNAPSHOT_CALLS_MAX }, () => client.snapshot(endpoint, { signal: controller.signal }).next());
        await waitFor('every call to be taking its snapshot', () => taking === SNAPSHOT_CALLS_MAX);
        await assert.rejects(client.snapshot(endpoint).next(), (error: unknown) => isStrataError(error, ErrorCode.UNAVAILABLE));
        controller.abort();
        for (const call of waiting) await assert.rejects(call, (error: unknown) => isStrataError(error, ErrorCode.CANCELED));
      } finally {
        client.close();
      }
    });
  });

  test('a snapshot that cannot be taken answers its error', async () => {
    const backend = backendWith(async () => {
      throw new StrataError(ErrorCode.STOPPED, 'etcdserver: server stopped');
    });
    await withBackend(backend, async (endpoint) => {
      const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 10_000 });
      try {
        await assert.rejects(
          async () => {
            for await (const chunk of client.snapshot(endpoint)) assert.fail(`no chunk expected, got ${chunk.kind}`);
          },
          (error: unknown) => isStrataError(error, ErrorCode.STOPPED),
        );
      } finally {
        client.close();
      }
    });
  });
});

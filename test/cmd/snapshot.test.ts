// `stratakv snapshot save|status|restore` against one real in-memory member served over gRPC
// (and, for the refusal of a bbolt file, a real etcd): a saved file verifies with the right
// key count and revision, a raw <id>.snap is accepted, a bit flip is refused naming the file
// and the block, a restored three-member cluster serves identical keys, values and revisions,
// and a restore refuses a non-empty data directory and a corrupt file without creating anything.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { SnapshotIo } from '../../cmd/snapshot-verbs.ts';
import { runSnapshotVerb } from '../../cmd/snapshot-verbs.ts';
import type { SnapshotVerb } from '../../cmd/snapshot-verbs.ts';
import { UsageError } from '../../cmd/serve-flags.ts';
import { RaftNode, restoreDataDir, verifySavedSnapshot } from '../../src/node/index.ts';
import type { EtcdServer } from '../../src/server/index.ts';
import { RaftNodeBackend, startEtcdServer } from '../../src/server/index.ts';
import type { KeyValue, RangeResponse } from '../../src/storage/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { ErrorCode, isStrataError, SYSTEM_CLOCK } from '../../src/util/index.ts';
import { etcdSkipReason, startEtcdCluster } from '../client/etcd-process.ts';
import type { SingleMember } from '../server/single-member.ts';
import { freeClientUrl, startSingleMember } from '../server/single-member.ts';

const CLI = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
const CLI_TIMEOUT_MS = 30_000;
// Enough data for several 1 MiB blocks, so the bit flip lands in a data block in the middle.
const KEYS = 400;
const VALUE_BYTES = 8 * 1024;
const OVERWRITTEN = 50;
const DELETED = 20;
const LIVE_KEYS = KEYS - DELETED;
const RESTORED_TOKEN = 'restored-cluster';
const READY_STEPS_MAX = 200;
const READY_STEP_MS = 50;
const SIZE_ATTEMPTS_MAX = 40;

let member: SingleMember;
let server: EtcdServer;
let endpoint: string;
let directory: string;
let savedFile: string;

const keyOf = (index: number): Buffer => Buffer.from(`key/${String(index).padStart(4, '0')}`);

before(async () => {
  const clientUrl = await freeClientUrl();
  member = await startSingleMember({ name: 'source', peerUrls: ['http://127.0.0.1:2380'], clientUrls: [clientUrl] });
  for (let index = 0; index < KEYS; index += 1) await member.node.kv({ type: 'put', key: keyOf(index), value: Buffer.alloc(VALUE_BYTES, index) });
  for (let index = 0; index < OVERWRITTEN; index += 1) await member.node.kv({ type: 'put', key: keyOf(index), value: Buffer.from(`second ${index}`) });
  for (let index = KEYS - DELETED; index < KEYS; index += 1) await member.node.kv({ type: 'deleteRange', key: keyOf(index) });
  server = await startEtcdServer({ backend: member.backend, listenUrls: [clientUrl], maxRequestBytes: 1.5 * 1024 * 1024 });
  endpoint = (server.urls[0] ?? '').replace('http://', '');
  directory = mkdtempSync(join(tmpdir(), 'stratakv-snapshot-cli-'));
  savedFile = join(directory, 'saved.snapshot');
});

after(async () => {
  await server?.close({ force: true });
  await member?.stop();
  rmSync(directory, { recursive: true, force: true });
});

interface Run {
  readonly code: number;
  readonly out: string[];
  readonly err: string[];
}

// cli runs a snapshot verb in this process (the member serves from this process too).
async function cli(verb: SnapshotVerb, ...args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: SnapshotIo = { out: (line) => out.push(line), err: (line) => err.push(line) };
  const code = await runSnapshotVerb(verb, args, io);
  return { code, out, err };
}

// spawnCli runs the real launcher as a separate process, asynchronously (the member it talks
// to serves from this process's event loop).
function spawnCli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: CLI_TIMEOUT_MS, killSignal: 'SIGKILL' }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr }),
    );
  });
}

function everything(): { type: 'range'; key: Uint8Array; rangeEnd: Uint8Array } {
  return { type: 'range', key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };
}

function comparable(kvs: readonly KeyValue[]): unknown[] {
  return kvs.map((kv) => [Buffer.from(kv.key).toString(), createHash('sha256').update(kv.value).digest('hex'), kv.createRevision, kv.modRevision, kv.version]);
}

function flipByte(path: string, offset: number): void {
  const bytes = readFileSync(path);
  bytes[offset] = (bytes[offset] ?? 0) ^ 0x10;
  writeFileSync(path, bytes);
}

describe('save and status', () => {
  test('snapshot save writes a file that status verifies, with the key count and revision', async () => {
    const saved = await cli('save', savedFile, '--endpoints', endpoint, '-w', 'json');
    assert.equal(saved.code, 0, saved.err.join('\n'));
    assert.equal(existsSync(`${savedFile}.part`), false);
    const summary = JSON.parse(saved.out.join('')) as { totalKey: number; revision: number; hasTrailer: boolean };
    assert.equal(summary.totalKey, LIVE_KEYS);
    assert.equal(summary.revision, member.node.revision());
    assert.equal(summary.hasTrailer, true);

    const status = await cli('status', savedFile, '-w', 'json');
    assert.equal(status.code, 0, status.err.join('\n'));
    const described = JSON.parse(status.out.join('')) as { totalKey: number; revision: number; totalSize: number; index: number; verified: boolean; blocks: number };
    assert.equal(described.totalKey, LIVE_KEYS);
    assert.equal(described.revision, member.node.revision());
    assert.equal(described.totalSize, statSync(savedFile).size);
    assert.equal(described.verified, true);
    assert.ok(described.blocks >= 3, `${described.blocks} data blocks`);
    assert.ok(described.index <= member.node.status().appliedIndex);
  });

  test('the stratakv process saves and prints like etcdctl; status prints a table', async () => {
    const file = join(directory, 'process.snapshot');
    const saved = await spawnCli('snapshot', 'save', file, `--endpoints=${endpoint}`);
    assert.equal(saved.code, 0, saved.stderr);
    assert.equal(saved.stdout, `Snapshot saved at ${file}\n`);
    // No terminal here: no progress bar either.
    assert.equal(saved.stderr, '');
    const status = await spawnCli('snapshot', 'status', file);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /TOTAL KEYS/);
    assert.ok(status.stdout.includes(` ${LIVE_KEYS} `));
  });

  test('the process answers usage errors with exit 2, naming what is wrong', async () => {
    const twoEndpoints = await spawnCli('snapshot', 'save', join(directory, 'never'), `--endpoints=${endpoint},${endpoint}`);
    assert.equal(twoEndpoints.code, 2);
    assert.match(twoEndpoints.stderr, /--endpoints/);
    const unknown = await spawnCli('snapshot', 'frobnicate', 'x');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /frobnicate/);
    assert.equal(existsSync(join(directory, 'never')), false);
  });

  test('a raw <id>.snap (no trailer) is accepted too', async () => {
    const bytes = readFileSync(savedFile);
    const raw = join(directory, 'raw.snap');
    writeFileSync(raw, bytes.subarray(0, bytes.byteLength - 32));
    const verified = await verifySavedSnapshot(raw);
    assert.equal(verified.hasTrailer, false);
    assert.equal(verified.footer.keyCount, LIVE_KEYS);
    assert.equal((await cli('status', raw)).code, 0);
  });

  test('a bit flip in the middle fails status, naming the file and the block', async () => {
    const damaged = join(directory, 'damaged.snapshot');
    writeFileSync(damaged, readFileSync(savedFile));
    flipByte(damaged, Math.floor(statSync(damaged).size / 2));
    const status = await cli('status', damaged);
    assert.equal(status.code, 1);
    assert.equal(status.out.length, 0);
    assert.ok(status.err.join('\n').includes(damaged));
    assert.ok(status.err.join('\n').endsWith(`(${ErrorCode.CORRUPTION})`));
    await assert.rejects(verifySavedSnapshot(damaged), (error: unknown) => {
      assert.ok(isStrataError(error, ErrorCode.CORRUPTION));
      assert.equal(error.details['location'], damaged);
      assert.equal(error.details['block'], 'data');
      assert.equal(typeof error.details['blockSequence'], 'number');
      return true;
    });
  });

  test('a wrong trailer and a file that is not a stratakv snapshot are refused', async () => {
    const badTrailer = join(directory, 'bad-trailer.snapshot');
    const bytes = readFileSync(savedFile);
    writeFileSync(badTrailer, bytes);
    flipByte(badTrailer, bytes.byteLength - 1);
    await assert.rejects(verifySavedSnapshot(badTrailer), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));

    // What etcdctl saves from etcd: bbolt pages, then their SHA-256.
    const foreign = join(directory, 'bbolt.db');
    const pages = randomBytes(4 * 4096);
    writeFileSync(foreign, Buffer.concat([pages, createHash('sha256').update(pages).digest()]));
    const status = await cli('status', foreign);
    assert.equal(status.code, 1);
    assert.ok(status.err.join('\n').endsWith(`(${ErrorCode.INVALID_ARGUMENT})`));
  });

  test('usage errors come before anything is read or written', async () => {
    await assert.rejects(cli('save', join(directory, 'x'), '--endpoints', `${endpoint},${endpoint}`), (error: unknown) => error instanceof UsageError && error.flag === '--endpoints');
    await assert.rejects(cli('status'), UsageError);
    await assert.rejects(cli('status', savedFile, '-w', 'yaml'), (error: unknown) => error instanceof UsageError && error.flag === '--write-out');
    await assert.rejects(
      cli('restore', savedFile, '--name', 'a', '--initial-cluster', 'b=http://127.0.0.1:1'),
      (error: unknown) => error instanceof UsageError && error.flag === '--initial-cluster',
    );
    assert.equal(existsSync(join(directory, 'x')), false);
    assert.equal(existsSync('a.etcd'), false);
  });
});

describe('restore', () => {
  test('a three-member cluster restored from one file serves identical keys, values and revisions', async () => {
    const names = ['r1', 'r2', 'r3'];
    const peerUrl = (name: string): string => `http://127.0.0.1:${23_800 + names.indexOf(name)}`;
    const initialCluster = names.map((name) => `${name}=${peerUrl(name)}`).join(',');
    for (const name of names) {
      const restored = await cli(
        'restore',
        savedFile,
        `--data-dir=${join(directory, name)}`,
        `--name=${name}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-advertise-peer-urls=${peerUrl(name)}`,
        `--initial-cluster-token=${RESTORED_TOKEN}`,
      );
      assert.equal(restored.code, 0, restored.err.join('\n'));
      assert.deepEqual(readdirSync(join(directory, name)), ['member']);
    }
    const source = await member.node.kv(everything());
    const network = new MemoryNetwork();
    const nodes = await Promise.all(names.map((name) => startRestored(network, name, names.map((other) => ({ name: other, peerUrls: [peerUrl(other)] })))));
    try {
      // Every member holds the file's state before any election: compare each one's own.
      for (const node of nodes) {
        const local = (await node.kv({ ...everything(), serializable: true })) as RangeResponse;
        assert.deepEqual(comparable(local.kvs), comparable((source as RangeResponse).kvs));
        assert.equal(node.revision(), member.node.revision());
      }
      await waitFor('a leader', () => nodes.some((node) => node.status().role === 'leader'));
      const first = nodes[0] as RaftNode;
      const read = (await first.kv(everything())) as RangeResponse;
      assert.equal(read.kvs.length, LIVE_KEYS);
      assert.deepEqual(comparable(read.kvs), comparable((source as RangeResponse).kvs));
      // The new cluster writes on from the file's revision.
      const put = await first.kv({ type: 'put', key: Buffer.from('after-restore'), value: Buffer.from('yes') });
      assert.equal(put.revision, member.node.revision() + 1);
      const members = first.members();
      assert.deepEqual(members.map((record) => record.name).sort(), names);
      // Status reports the state machine's real size on disk. The members go on writing (the
      // integrity checker's checkpoints and reports, LevelDB's own log): compare while the
      // directory holds still across the status call.
      const backend = new RaftNodeBackend(first, 'test');
      const kvDirectory = join(directory, 'r1', 'member', 'kv');
      let matched = false;
      for (let attempt = 0; attempt < SIZE_ATTEMPTS_MAX && !matched; attempt += 1) {
        const before = directoryBytes(kvDirectory);
        const status = await backend.status();
        const after = directoryBytes(kvDirectory);
        assert.ok(status.dbSizeBytes > 0);
        if (before === after) {
          assert.equal(status.dbSizeBytes, before);
          matched = true;
        } else {
          await new Promise((resolve) => setTimeout(resolve, READY_STEP_MS));
        }
      }
      assert.ok(matched, `the kv directory held still across a status call within ${SIZE_ATTEMPTS_MAX} attempts`);
    } finally {
      await Promise.all(nodes.map((node) => node.stop({ transferLeadership: false })));
    }
  });

  test('restore refuses a non-empty data directory and a corrupt file, creating nothing', async () => {
    const occupied = join(directory, 'occupied');
    mkdirSync(occupied);
    writeFileSync(join(occupied, 'keep'), 'mine');
    const flags = ['--name=solo', '--initial-cluster=solo=http://127.0.0.1:2390', '--initial-advertise-peer-urls=http://127.0.0.1:2390'];
    const refused = await cli('restore', savedFile, `--data-dir=${occupied}`, ...flags);
    assert.equal(refused.code, 1);
    assert.ok(refused.err.join('\n').endsWith(`(${ErrorCode.INVALID_ARGUMENT})`));
    assert.deepEqual(readdirSync(occupied), ['keep']);

    const corrupt = join(directory, 'corrupt.snapshot');
    writeFileSync(corrupt, readFileSync(savedFile));
    flipByte(corrupt, Math.floor(statSync(corrupt).size / 2));
    const before = readdirSync(directory).sort();
    const fresh = join(directory, 'never-made');
    await assert.rejects(
      restoreDataDir({
        snapshotPath: corrupt,
        dataDir: fresh,
        name: 'solo',
        initialCluster: [{ name: 'solo', peerUrls: ['http://127.0.0.1:2390'] }],
        advertisePeerUrls: ['http://127.0.0.1:2390'],
        initialClusterToken: RESTORED_TOKEN,
      }),
      (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION),
    );
    const viaCli = await cli('restore', corrupt, `--data-dir=${fresh}`, ...flags);
    assert.equal(viaCli.code, 1);
    assert.equal(existsSync(fresh), false);
    assert.deepEqual(readdirSync(directory).sort(), before);
  });
});

describe('against real etcd', { skip: etcdSkipReason() }, () => {
  test('an etcd snapshot (bbolt) is refused after its digest checked, leaving no file', async () => {
    const cluster = await startEtcdCluster(1);
    try {
      const file = join(directory, 'from-etcd.db');
      const saved = await cli('save', file, '--endpoints', cluster.endpoints[0] ?? '');
      assert.equal(saved.code, 1);
      assert.ok(saved.err.join('\n').endsWith(`(${ErrorCode.INVALID_ARGUMENT})`), saved.err.join('\n'));
      assert.equal(existsSync(file), false);
      assert.equal(existsSync(`${file}.part`), false);
    } finally {
      await cluster.stop();
    }
  });
});

// startRestored starts a member on a restored data directory, as `stratakv serve` would with
// the same flags (--initial-cluster-state new: its log is not empty, so it does not bootstrap).
function startRestored(network: MemoryNetwork, name: string, initialCluster: readonly { name: string; peerUrls: readonly string[] }[]): Promise<RaftNode> {
  const local = initialCluster.find((entry) => entry.name === name);
  assert.ok(local !== undefined);
  return RaftNode.start({
    name,
    dataDir: join(directory, name),
    initialCluster,
    initialClusterState: 'new',
    initialClusterToken: RESTORED_TOKEN,
    advertisePeerUrls: local.peerUrls,
    advertiseClientUrls: [],
    heartbeatIntervalMs: 50,
    electionTimeoutMs: 500,
    clock: SYSTEM_CLOCK,
    createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
  });
}

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  for (let step = 0; step < READY_STEPS_MAX; step += 1) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, READY_STEP_MS));
  }
  assert.fail(`${what} within ${READY_STEPS_MAX * READY_STEP_MS} ms`);
}

function directoryBytes(path: string): number {
  return readdirSync(path).reduce((total, name) => {
    const info = statSync(join(path, name));
    return total + (info.isFile() ? info.size : 0);
  }, 0);
}

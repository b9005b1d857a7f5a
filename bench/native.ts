// bench/native.ts — `npm run bench:native`: the native addon against the alternatives, side
// by side in one run on this machine.
//
// 1. CRC32c throughput (GB/s) over one 64 MiB buffer: every kernel of ours, @node-rs/crc32
//    (prebuilt, a devDependency) and sse4_crc32 (each said to be unavailable, with the reason,
//    when it does not load). sse4_crc32 compiles with node-gyp at install time, which a fresh
//    machine without internet cannot do, so it is not a devDependency: it is measured only
//    where someone installed it by hand (`npm install --no-save sse4_crc32` with Node's
//    headers at hand), and otherwise reported as absent.
// 2. Sequential write throughput (MB/s) of a FILE_BYTES file ending in fdatasync, on the
//    disk holding --dir (default: the system temporary folder): our aligned writer with
//    O_DIRECT (when allowed) and without, `dd bs=1M conv=fdatasync` (dd's own reported time),
//    Node's fs.write of 1 MiB blocks + fdatasync, and, when fio is installed, fio's O_DIRECT
//    with io_uring and 16 blocks in flight: the disk's own direct-I/O ceiling, for context.
//    Our writer uses --block-mib blocks with --queue-depth of them in flight, after reserving
//    the file's blocks (fallocate): 2 MiB × 3 wrote fastest with O_DIRECT on this machine's
//    virtio disk (4 MiB × 2 and 8 MiB × 2 came close; 32 MiB × 1 and 1 MiB × 4 did not), and
//    leave one of libuv's 4 threads free.
//    Before each timed write the previous file is removed and the filesystem synced (the disk
//    is mounted with online discard: a deletion's discards would otherwise bill the next run).
// Runs alternate between contenders so machine noise spreads over all of them; each figure
// is the median of its runs with min–max beside it. The last lines are JSON, one per figure.
//
// Options: --runs N (default 21 for CRC, 5 for writes), --file-mib N (default 256), --dir PATH,
// --block-mib N (default 2), --queue-depth N (default 3).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import {
  AlignedFile,
  allocateAligned,
  crc32cImplementations,
  crc32cImplementation,
  crc32cWith,
} from '../src/native/index.ts';
import { formatSummary, summarize, type Summary } from './native/stats.ts';

const { values: options } = parseArgs({
  options: {
    runs: { type: 'string' },
    'file-mib': { type: 'string', default: '256' },
    'block-mib': { type: 'string', default: '2' },
    'queue-depth': { type: 'string', default: '3' },
    dir: { type: 'string', default: tmpdir() },
  },
});
const CRC_BYTES = 64 << 20;
const CRC_RUNS = Number(options.runs ?? 21); // cheap (ms each), and many runs steady the median on a busy machine
const WRITE_RUNS = Number(options.runs ?? 5);
const FILE_BYTES = Number(options['file-mib']) << 20;
const BLOCK_BYTES = Number(options['block-mib']) << 20; // our writer's block
const QUEUE_DEPTH = Number(options['queue-depth']); // our writer's blocks in flight (libuv's pool has 4 threads)
const BASELINE_BLOCK_BYTES = 1 << 20; // dd bs=1M and Node's fs.write
const RUNS_MAX = 50;
const QUEUE_DEPTH_MAX = 16;
if (!(CRC_RUNS >= 1 && CRC_RUNS <= RUNS_MAX)) throw new Error('bad --runs');
if (!(BLOCK_BYTES >= BASELINE_BLOCK_BYTES && FILE_BYTES % BLOCK_BYTES === 0)) throw new Error('bad --block-mib or --file-mib');
if (!(QUEUE_DEPTH >= 1 && QUEUE_DEPTH <= QUEUE_DEPTH_MAX)) throw new Error('bad --queue-depth');

interface Figure {
  readonly name: string;
  readonly unit: string;
  readonly summary: Summary;
  readonly note?: string;
}
const figures: Figure[] = [];

function report(name: string, unit: string, values: readonly number[], note?: string): void {
  const figure: Figure = { name, unit, summary: summarize(values), ...(note === undefined ? {} : { note }) };
  figures.push(figure);
  console.log(`  ${name.padEnd(34)} ${formatSummary(figure.summary, unit === 'GB/s' ? 2 : 0)} ${unit}${note ? `  [${note}]` : ''}`);
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

// ---- CRC32c -------------------------------------------------------------------------------

type CrcFunction = (data: Uint8Array) => number;
const require = createRequire(import.meta.url);
const unavailable: Record<string, string> = {};

function loadComparison(name: string, load: () => CrcFunction, absentReason = 'not installed'): CrcFunction | undefined {
  try {
    return load();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    unavailable[name] =
      code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND'
        ? `absent: ${absentReason}`
        : error instanceof Error
          ? (error.message.split('\n')[0] ?? '')
          : String(error);
    return undefined;
  }
}

async function benchCrc(): Promise<void> {
  const data = allocateAligned(CRC_BYTES).bytes;
  for (let index = 0; index < data.length; index += 4096) data[index] = index & 0xff;
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const contenders = new Map<string, CrcFunction>();
  for (const implementation of [...crc32cImplementations()].reverse()) {
    contenders.set(`stratakv ${implementation}`, (bytes) => crc32cWith(implementation, bytes));
  }
  const nodeRs = loadComparison('@node-rs/crc32', () => {
    const module = require('@node-rs/crc32') as { crc32c(input: Uint8Array, initial?: number): number };
    return (bytes) => module.crc32c(bytes as Buffer);
  });
  if (nodeRs !== undefined) contenders.set('@node-rs/crc32 crc32c', nodeRs);
  const sse4 = loadComparison('sse4_crc32', () => {
    const module = require('sse4_crc32') as { calculate(input: Buffer, initial?: number): number; hardware_support: boolean };
    if (!module.hardware_support) throw new Error('sse4_crc32 loaded without hardware support');
    return (bytes) => module.calculate(bytes as Buffer);
  }, 'not installed (it compiles with node-gyp at install time, so it is not a devDependency)');
  if (sse4 !== undefined) contenders.set('sse4_crc32 calculate', sse4);

  const expected = crc32cWith('table', data);
  const results = new Map<string, number[]>();
  for (const [name, run] of contenders) {
    if (run(buffer) >>> 0 !== expected) throw new Error(`${name} computed a different CRC32c`);
    results.set(name, []);
  }
  for (let round = 0; round < CRC_RUNS; round++) {
    for (const [name, run] of contenders) {
      const start = process.hrtime.bigint();
      run(buffer);
      results.get(name)?.push(CRC_BYTES / seconds(start) / 1e9);
    }
  }
  console.log(`CRC32c over ${CRC_BYTES >> 20} MiB (default kernel here: ${crc32cImplementation()}):`);
  for (const [name, values] of results) report(`crc32c ${name}`, 'GB/s', values);
  for (const [name, reason] of Object.entries(unavailable)) console.log(`  ${name.padEnd(34)} unavailable: ${reason}`);
}

// ---- sequential writes --------------------------------------------------------------------

async function writeAligned(path: string, direct: boolean): Promise<string> {
  const file = await AlignedFile.open(path, { write: true, create: true, truncate: true, direct });
  // A snapshot writer knows its size roughly; reserving it spares ext4 an allocation per write.
  await file.allocate(FILE_BYTES);
  // Buffered writes only copy into the page cache: concurrent ones contend for the inode lock.
  const depth = direct ? QUEUE_DEPTH : 1;
  const blocks = Array.from({ length: depth }, () => allocateAligned(BLOCK_BYTES).bytes.fill(0x5a));
  const count = FILE_BYTES / BLOCK_BYTES;
  let next = 0;
  // QUEUE_DEPTH lanes, each writing its own buffer at the next free offset.
  await Promise.all(
    blocks.map(async (block) => {
      while (next < count) {
        const index = next++;
        await file.writeAt(block, index * BLOCK_BYTES);
      }
    }),
  );
  await file.datasync();
  await file.close();
  return file.ioMode;
}

async function writeNodeFs(path: string): Promise<void> {
  const handle = await open(path, 'w');
  const block = Buffer.alloc(BASELINE_BLOCK_BYTES, 0x5a);
  for (let offset = 0; offset < FILE_BYTES; offset += BASELINE_BLOCK_BYTES) {
    await handle.write(block, 0, BASELINE_BLOCK_BYTES, offset);
  }
  await handle.datasync();
  await handle.close();
}

// writeFio measures the disk's own O_DIRECT ceiling (io_uring, 16 in flight) when fio is
// installed (`apt-get install fio`); undefined otherwise. It is context, not a contender.
function writeFio(path: string): number | undefined {
  const child = spawnSync(
    'fio',
    ['--name=ceiling', `--filename=${path}`, '--rw=write', `--bs=${BLOCK_BYTES}`, `--size=${FILE_BYTES}`, '--direct=1',
      '--ioengine=io_uring', '--iodepth=16', '--fallocate=native', '--end_fsync=1', '--output-format=json'],
    { encoding: 'utf8', timeout: 300_000 },
  );
  if (child.error !== undefined || child.status !== 0) return undefined;
  const report = JSON.parse(child.stdout) as { jobs?: { write?: { bw_bytes?: number } }[] };
  const bytesPerSecond = report.jobs?.[0]?.write?.bw_bytes;
  return bytesPerSecond === undefined ? undefined : bytesPerSecond / 1e6;
}

function writeDd(path: string): number {
  const child = spawnSync('dd', ['if=/dev/zero', `of=${path}`, 'bs=1M', `count=${FILE_BYTES / BASELINE_BLOCK_BYTES}`, 'conv=fdatasync'], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (child.status !== 0) throw new Error(`dd failed: ${child.stderr}`);
  // "268435456 bytes (268 MB, 256 MiB) copied, 0.52 s, 516 MB/s": dd's own time, without spawning.
  const match = /copied, ([0-9.]+) s/.exec(child.stderr);
  if (match?.[1] === undefined) throw new Error(`dd said: ${child.stderr}`);
  return Number(match[1]);
}

async function benchWrites(): Promise<void> {
  const directory = mkdtempSync(join(options.dir, 'stratakv-bench-native-'));
  const path = join(directory, 'write.bin');
  const results = { ours: [] as number[], oursBuffered: [] as number[], dd: [] as number[], node: [] as number[], fio: [] as number[] };
  let mode = '';
  try {
    for (let round = 0; round < WRITE_RUNS; round++) {
      // Rotate the order so no contender always runs right after another's writeback.
      const order = (['ours', 'dd', 'oursBuffered', 'node', 'fio'] as const).map((_, index, all) => all[(index + round) % all.length] ?? 'ours');
      for (const contender of order) {
        rmSync(path, { force: true });
        spawnSync('sync', ['-f', directory], { timeout: 60_000 });
        const start = process.hrtime.bigint();
        if (contender === 'fio') {
          const megabytesPerSecond = writeFio(path);
          if (megabytesPerSecond !== undefined) results.fio.push(megabytesPerSecond);
          continue;
        }
        if (contender === 'ours') mode = await writeAligned(path, true);
        else if (contender === 'oursBuffered') await writeAligned(path, false);
        else if (contender === 'node') await writeNodeFs(path);
        const elapsed = contender === 'dd' ? writeDd(path) : seconds(start);
        results[contender].push(FILE_BYTES / elapsed / 1e6);
      }
    }
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
  console.log(`Sequential write of ${FILE_BYTES >> 20} MiB + fdatasync in ${options.dir}:`);
  report(`write stratakv AlignedFile ${mode}`, 'MB/s', results.ours, `fallocate, ${BLOCK_BYTES >> 20} MiB blocks × ${QUEUE_DEPTH} in flight`);
  report('write stratakv AlignedFile buffered', 'MB/s', results.oursBuffered, `direct: false, fallocate, ${BLOCK_BYTES >> 20} MiB blocks, one at a time`);
  report('write dd conv=fdatasync', 'MB/s', results.dd, 'baseline, bs=1M');
  report('write node fs.write+fdatasync', 'MB/s', results.node, '1 MiB blocks, one at a time');
  if (results.fio.length > 0) {
    report('write fio O_DIRECT io_uring', 'MB/s', results.fio, `the disk's direct-I/O ceiling: ${BLOCK_BYTES >> 20} MiB blocks × 16 in flight`);
  } else {
    console.log(`  ${'write fio O_DIRECT io_uring'.padEnd(34)} unavailable: fio is not installed (apt-get install fio)`);
  }
  const percentOfDd = (values: number[]): string =>
    ((summarize(values).median / summarize(results.dd).median) * 100).toFixed(0);
  console.log(`  aligned writer / dd (medians): ${mode} ${percentOfDd(results.ours)} %, buffered ${percentOfDd(results.oursBuffered)} %`);
}

console.log(
  `bench:native on ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, node ${process.version}, ` +
    `load average ${loadavg().map((load) => load.toFixed(2)).join(' ')} (other work on this machine makes figures noisy)`,
);
await benchCrc();
await benchWrites();
console.log(`load average at the end: ${loadavg().map((load) => load.toFixed(2)).join(' ')}`);
for (const figure of figures) {
  console.log(JSON.stringify({ bench: 'native', name: figure.name, unit: figure.unit, ...figure.summary, ...(figure.note ? { note: figure.note } : {}) }));
}
for (const [name, reason] of Object.entries(unavailable)) console.log(JSON.stringify({ bench: 'native', name: `crc32c ${name}`, unavailable: reason }));

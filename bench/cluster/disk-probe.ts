// The disk's own rate, measured in the same run as the systems: `writers` loops, each
// appending 4 KiB to its own file and calling fdatasync, as the members of a 3-node cluster
// on one machine do when each persists a Raft entry batch. A put cannot be acknowledged
// faster than a follower's fdatasync, and no system that persists before it answers can go
// without a pause longer than the disk's own longest fdatasync.
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { latencySummary, type LatencySummary } from './stats.ts';

const BLOCK_BYTES = 4_096;
// Each file wraps around after this many bytes, so that the probe's files stay small.
const FILE_BYTES_MAX = 64 * 1024 * 1024;
const SYNCS_PER_WRITER_MAX = 200_000;

/** DiskProbeResult is the fdatasync latency seen by all writers together. */
export interface DiskProbeResult {
  readonly writers: number;
  readonly syncs: number;
  readonly syncsPerSecond: number;
  readonly latencyMs: LatencySummary;
}

/** probeFdatasync runs `writers` write+fdatasync loops in `folder` for `durationMs`. */
export async function probeFdatasync(folder: string, writers: number, durationMs: number): Promise<DiskProbeResult> {
  const block = Buffer.alloc(BLOCK_BYTES, 0x5a);
  const latencies: number[] = [];
  const startMs = performance.now();
  const deadlineMs = startMs + durationMs;
  const loops = Array.from({ length: writers }, async (_, writer) => {
    const path = join(folder, `disk-probe-${writer}.dat`);
    const file = await open(path, 'w');
    try {
      let position = 0;
      for (let sync = 0; sync < SYNCS_PER_WRITER_MAX && performance.now() < deadlineMs; sync += 1) {
        const before = performance.now();
        await file.write(block, 0, BLOCK_BYTES, position);
        await file.datasync();
        latencies.push(performance.now() - before);
        position = (position + BLOCK_BYTES) % FILE_BYTES_MAX;
      }
    } finally {
      await file.close();
      await rm(path, { force: true });
    }
  });
  await Promise.all(loops);
  const elapsedMs = performance.now() - startMs;
  return { writers, syncs: latencies.length, syncsPerSecond: (latencies.length / elapsedMs) * 1_000, latencyMs: latencySummary(Float64Array.from(latencies)) };
}

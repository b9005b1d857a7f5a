// The disk's own rates for bench:snapshot, from dd in the same folder as the snapshot files:
// a write of N MiB from /dev/zero ending in fdatasync, with O_DIRECT and without, and an
// O_DIRECT read of a file. Each figure is dd's own elapsed time (printed on stderr), so
// starting the process is not billed. Before a timed write the previous file is removed and
// the filesystem synced (the project's disk is mounted with online discard: a deletion's
// discards would otherwise be billed to the next write, as bench/native.ts notes).
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';

const DD_TIMEOUT_MS = 600_000;
const SYNC_TIMEOUT_MS = 120_000;
const MIB = 1 << 20;

/** syncFolder runs `sync -f folder`: the filesystem's dirty data and pending discards are flushed. */
export function syncFolder(folder: string): void {
  spawnSync('sync', ['-f', folder], { timeout: SYNC_TIMEOUT_MS });
}

/** removeAndSync removes `path` (if there) and syncs its filesystem, so the next timed write starts clean. */
export function removeAndSync(path: string, folder: string): void {
  rmSync(path, { recursive: true, force: true });
  syncFolder(folder);
}

function ddSeconds(args: readonly string[]): number {
  const child = spawnSync('dd', args, { encoding: 'utf8', timeout: DD_TIMEOUT_MS });
  if (child.error !== undefined) throw new Error(`dd ${args.join(' ')}: ${child.error.message}`);
  if (child.status !== 0) throw new Error(`dd ${args.join(' ')} failed: ${child.stderr}`);
  // "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 2.1 s, 511 MB/s"
  const match = /copied, ([0-9.]+) s/.exec(child.stderr);
  if (match?.[1] === undefined) throw new Error(`dd said: ${child.stderr}`);
  return Number(match[1]);
}

/** mibFor is the whole MiB count dd writes to match `bytes` (rounded up). */
export function mibFor(bytes: number): number {
  return Math.ceil(bytes / MIB);
}

/**
 * ddWriteMBps writes `mib` MiB of zeros to `path` (bs=1M, conv=fdatasync, with oflag=direct
 * when `direct`) and answers MB/s (10^6 bytes per second of dd's time). The file is removed
 * and the folder synced first; the file is left for the caller to remove.
 */
export function ddWriteMBps(path: string, folder: string, mib: number, direct: boolean): number {
  removeAndSync(path, folder);
  const seconds = ddSeconds(['if=/dev/zero', `of=${path}`, 'bs=1M', `count=${mib}`, 'conv=fdatasync', ...(direct ? ['oflag=direct'] : [])]);
  return (mib * MIB) / seconds / 1e6;
}

/** ddReadMBps reads `path` with O_DIRECT (bs=4M iflag=direct) to /dev/null and answers MB/s over `bytes`. */
export function ddReadMBps(path: string, bytes: number): number {
  const seconds = ddSeconds([`if=${path}`, 'of=/dev/null', 'bs=4M', 'iflag=direct']);
  return bytes / seconds / 1e6;
}

// CPU time of benchmarked server processes, from /proc (Linux): what each member spends per
// request, measured around a window, so that figures can be read against the machine's cores.
import { readFileSync } from 'node:fs';

// USER_HZ: /proc reports utime and stime in clock ticks of 1/100 s on every Linux ABI Node runs on.
const TICKS_PER_SECOND = 100;

/** processCpuMs answers a process's user + system CPU time in ms (all threads), or NaN if it is gone. */
export function processCpuMs(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return Number.NaN;
  }
  // The command name (field 2) is in parentheses and may contain spaces: count fields after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
  const userTicks = Number(fields[11]);
  const systemTicks = Number(fields[12]);
  return ((userTicks + systemTicks) * 1_000) / TICKS_PER_SECOND;
}

/** CpuWindow measures the CPU time a set of processes spend between start and stop. */
export class CpuWindow {
  private readonly pids: readonly number[];
  private readonly startCpuMs: number[];
  private readonly startWallMs: number;

  constructor(pids: readonly number[]) {
    this.pids = pids;
    this.startCpuMs = pids.map(processCpuMs);
    this.startWallMs = performance.now();
  }

  /** stop answers each process's CPU use over the window, in percent of one core. */
  stop(): number[] {
    const wallMs = performance.now() - this.startWallMs;
    return this.pids.map((pid, index) => ((processCpuMs(pid) - (this.startCpuMs[index] ?? Number.NaN)) / wallMs) * 100);
  }
}

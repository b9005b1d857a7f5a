// Where the CPU went in each window of a move: every SAMPLE_MS the machine's busy and total
// clock ticks (/proc/stat) and each watched process's CPU time (/proc/PID/stat) are sampled, so
// that any window cut afterwards gets, per group of processes (the old members, the new ones,
// the load), the cores it used, and the machine's own total — on 2 cores shared with other
// work, a window in which the cores were saturated is read differently.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

import { processCpuMs } from '../cluster/process-cpu.ts';

/** SAMPLE_MS is the interval between samples. */
export const SAMPLE_MS = 1_000;
const SAMPLES_MAX = 20_000;

/** WatchedProcess is one process to sample and the group it counts in. */
export interface WatchedProcess {
  readonly group: string;
  readonly pid: number;
}

interface Sample {
  readonly atMs: number;
  readonly busyTicks: number;
  readonly totalTicks: number;
  /** cpuMs by pid; a process gone keeps its last value. */
  readonly cpuMs: ReadonlyMap<number, number>;
  readonly groups: ReadonlyMap<number, string>;
}

/** CpuFigures are one window's CPU use in cores (1.0 = one core busy all the window). */
export interface CpuFigures {
  readonly machineCores: number;
  readonly byGroup: Readonly<Record<string, number>>;
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.slice(0, 8).reduce((sum, value) => sum + value, 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/** CpuSampler samples until stopped; `watched` is asked at each sample (processes come and go). */
export class CpuSampler {
  readonly #samples: Sample[] = [];
  readonly #watched: () => readonly WatchedProcess[];
  readonly #timer: NodeJS.Timeout;
  readonly #last = new Map<number, number>();
  readonly #groups = new Map<number, string>();

  constructor(watched: () => readonly WatchedProcess[]) {
    this.#watched = watched;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), SAMPLE_MS);
  }

  #sample(): void {
    if (this.#samples.length >= SAMPLES_MAX) return;
    for (const process of this.#watched()) {
      this.#groups.set(process.pid, process.group);
      const cpuMs = processCpuMs(process.pid);
      if (Number.isFinite(cpuMs)) this.#last.set(process.pid, cpuMs);
    }
    const ticks = machineTicks();
    this.#samples.push({ atMs: performance.timeOrigin + performance.now(), busyTicks: ticks.busy, totalTicks: ticks.total, cpuMs: new Map(this.#last), groups: new Map(this.#groups) });
  }

  /** stop ends the sampling (one last sample first). */
  stop(): void {
    clearInterval(this.#timer);
    this.#sample();
  }

  /** window answers the CPU use between the samples nearest inside [fromMs, toMs]; undefined when fewer than two fall there. */
  window(fromMs: number, toMs: number): CpuFigures | undefined {
    const inside = this.#samples.filter((sample) => sample.atMs >= fromMs - SAMPLE_MS / 2 && sample.atMs <= toMs + SAMPLE_MS / 2);
    const first = inside[0];
    const last = inside[inside.length - 1];
    if (first === undefined || last === undefined || last === first) return undefined;
    const wallMs = last.atMs - first.atMs;
    const byGroup: Record<string, number> = {};
    for (const [pid, cpuMs] of last.cpuMs) {
      const group = last.groups.get(pid) ?? 'other';
      const before = first.cpuMs.get(pid) ?? 0;
      byGroup[group] = (byGroup[group] ?? 0) + (cpuMs - before) / wallMs;
    }
    const cores = cpus().length;
    const machineCores = last.totalTicks > first.totalTicks ? ((last.busyTicks - first.busyTicks) / (last.totalTicks - first.totalTicks)) * cores : Number.NaN;
    return { machineCores, byGroup };
  }
}

/** describeCpu prints a window's CPU use: "2.0 of 2 cores busy: old members 0.9, …". */
export function describeCpu(figures: CpuFigures | undefined): string {
  if (figures === undefined) return 'CPU not sampled';
  const groups = Object.entries(figures.byGroup).map(([group, cores]) => `${group} ${cores.toFixed(2)}`);
  const ours = Object.values(figures.byGroup).reduce((sum, cores) => sum + cores, 0);
  return `${figures.machineCores.toFixed(2)} of ${cpus().length} cores busy: ${groups.join(', ')}, the rest (the bench, migrate/etcdctl, kernel threads, other work) ${(figures.machineCores - ours).toFixed(2)}`;
}

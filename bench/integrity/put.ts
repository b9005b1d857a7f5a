// bench:integrity, put throughput with the state digest on and off, and what periodic
// cross-replica checks do to it: several 3-process stratakv clusters that differ only in their
// serve flags run side by side, and every round gives each one put window, in an order that
// rotates each round (so a slow moment of the shared machine falls on all of them alike).
//
// The configurations (bench/integrity.ts names them):
//  - off:     --unsafe-no-state-digest, no checkpoints (the baseline: no digest at all);
//  - on:      the digest, no checkpoints (--integrity-check-entries 0 --integrity-check-interval 0):
//             the digest's own cost is on ÷ off;
//  - default: the digest with the default checkpoints (every 10,000 entries or 60 s): what ships;
//  - checks:  the digest with a checkpoint every `checkEntries` entries (interval off): what
//             checks cost at a rate high enough to see, against `on`.
// A window is a closed loop of `concurrency` puts of fresh keys with `valueBytes` values to the
// leader (the client harness in its own process), after a warm-up; it reports puts/s, p50, p99
// and the members' CPU per put (all three members, /proc, over warm-up and window).
// After the rounds, `etcdctl endpoint hashkv` on every member: the clusters with the digest
// answer one non-zero hash per cluster, the one without answers 0 (no digest kept).
import type { LoadHarness } from '../cluster/harness.ts';
import { stratakvLauncher, type RunningCluster } from '../cluster/launchers.ts';
import { CpuWindow } from '../cluster/process-cpu.ts';
import { readLogLines } from '../snapshot/members.ts';
import { etcdctlHashKv, type HashKvAnswer } from './members.ts';

/** PutConfig is one cluster's name and its serve flags. */
export interface PutConfig {
  readonly name: string;
  readonly description: string;
  readonly serveFlags: readonly string[];
}

/** PutWindow is one window's figures. */
export interface PutWindow {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly completed: number;
  /** All members' CPU per completed put, µs (warm-up included in the CPU, at about the same rate). */
  readonly membersCpuUsPerPut: number;
  readonly clientCpuPercent: number;
}

/** PutFigures: every configuration's windows, by round, and the hashkv check. */
export interface PutFigures {
  readonly configs: readonly PutConfig[];
  readonly windows: Record<string, PutWindow[]>;
  readonly hashKv: Record<string, HashKvAnswer[]>;
  readonly descriptions: Record<string, string>;
  /** Snapshots the members logged ("snapshot saved") over the phase: count and total ms, all three members. */
  readonly snapshots: Record<string, { count: number; totalMs: number; largestBytes: number }>;
}

/** PutOptions: the configurations, rounds and the load. */
export interface PutOptions {
  readonly configs: readonly PutConfig[];
  readonly rounds: number;
  readonly concurrency: number;
  readonly valueBytes: number;
  readonly windowMs: number;
  readonly warmupMs: number;
  readonly harness: LoadHarness;
  readonly log: (line: string) => void;
}

const REQUESTS_MAX = 10_000_000;

function rotate<T>(items: readonly T[], by: number): T[] {
  return items.map((_, index) => items[(index + by) % items.length] as T);
}

/** measurePut runs the put phase (see the file comment); stops every cluster on every way out. */
export async function measurePut(options: PutOptions): Promise<PutFigures> {
  const { configs, rounds, harness, log } = options;
  const clusters = new Map<string, RunningCluster>();
  const figures: PutFigures = { configs, windows: {}, hashKv: {}, descriptions: {}, snapshots: {} };
  try {
    for (const config of configs) {
      const started = performance.now();
      const cluster = await stratakvLauncher({ serveFlags: config.serveFlags }).start();
      clusters.set(config.name, cluster);
      figures.windows[config.name] = [];
      figures.descriptions[config.name] = cluster.description;
      log(`  ${config.name}: ${cluster.description}; started in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    for (let round = 0; round < rounds; round += 1) {
      for (const config of rotate(configs, round)) {
        const cluster = clusters.get(config.name) as RunningCluster;
        const leader = await cluster.leader();
        const pids = cluster.members.map((member) => member.pid);
        const cpu = new CpuWindow(pids);
        const result = await harness.run({
          operation: 'put',
          endpoints: [leader.endpoint],
          channels: 1,
          concurrency: options.concurrency,
          warmupMs: options.warmupMs,
          durationMs: options.windowMs,
          requestsMax: REQUESTS_MAX,
          deadlineMs: 0,
          keyPrefix: `put/r${round}`,
          getPrefix: 'put',
          getKeys: 1,
          valueBytes: options.valueBytes,
          recordCompletions: false,
        });
        const cpuPercent = cpu.stop().reduce((sum, percent) => sum + percent, 0);
        const window: PutWindow = {
          perSecond: result.perSecond,
          p50Ms: result.latency.p50,
          p99Ms: result.latency.p99,
          errors: result.failed + result.ambiguous,
          completed: result.completed,
          membersCpuUsPerPut: (cpuPercent * 10_000) / result.perSecond,
          clientCpuPercent: result.clientCpuPercent,
        };
        figures.windows[config.name]?.push(window);
        log(
          `  round ${round + 1}/${rounds} ${config.name.padEnd(8)} ${window.perSecond.toFixed(0).padStart(6)} puts/s, p50 ${window.p50Ms.toFixed(1)} ms, p99 ${window.p99Ms.toFixed(1)} ms, ` +
            `members ${window.membersCpuUsPerPut.toFixed(0)} µs CPU/put, client ${window.clientCpuPercent.toFixed(0)} % CPU${window.errors > 0 ? `, ${window.errors} errors` : ''}`,
        );
      }
    }
    for (const config of configs) {
      const cluster = clusters.get(config.name) as RunningCluster;
      const answers = etcdctlHashKv(cluster.members.map((member) => member.endpoint));
      figures.hashKv[config.name] = answers;
      log(`  etcdctl endpoint hashkv, ${config.name}: ${answers.map((answer) => (answer.hash === undefined ? `error (${answer.error ?? '?'})` : String(answer.hash))).join(', ')}`);
      // The members snapshot their whole state every --snapshot-count entries (with the digest,
      // a snapshot view is checked against it as it is read): their share of the CPU grows with the state.
      const saved = cluster.members.flatMap((member) => readLogLines(member.logPath ?? '').filter((line) => line.message === 'snapshot saved' && typeof line.fields['ms'] === 'number'));
      const snapshots = {
        count: saved.length,
        totalMs: saved.reduce((sum, line) => sum + Number(line.fields['ms']), 0),
        largestBytes: Math.max(0, ...saved.map((line) => Number(line.fields['bytes']))),
      };
      figures.snapshots[config.name] = snapshots;
      log(`  ${config.name}: the members logged ${snapshots.count} snapshots, ${(snapshots.totalMs / 1000).toFixed(1)} s in all, the largest ${snapshots.largestBytes} bytes`);
    }
    return figures;
  } finally {
    for (const cluster of clusters.values()) await cluster.stop();
  }
}

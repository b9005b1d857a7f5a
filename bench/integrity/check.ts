// bench:integrity, one cross-replica check: how long it takes and how many log entries it adds.
// A check proposes a checkpoint entry; every member applies it, reads its digest at that index
// (O(1)) and proposes a report; the call ends when the leader has applied every member's
// report. Two ways, periodic checkpoints off in both so that only the measured checks run:
//  - measureProcessCheck: Admin.Check (IntegrityClient, what `stratakv check` calls) on the
//    leader of a 3-process cluster, quiet and beside a put load from the client harness;
//  - measureCheck: RaftNode.checkIntegrity() on three RaftNodes in this process, each on disk
//    (its own data folder: the durable log, LevelDB, fdatasync as in production) on the
//    in-memory transport (no gRPC hop), quiet and beside an in-process put load.
// Quiet and loaded alternate, `checks` per side per round. What periodic checks cost the
// foreground is the put phase's `checks` and `default` configurations.
import { join } from 'node:path';

import { IntegrityClient } from '../../src/client/index.ts';
import { RaftNode } from '../../src/node/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { SYSTEM_CLOCK } from '../../src/util/index.ts';
import type { LoadHarness } from '../cluster/harness.ts';
import { stratakvLauncher } from '../cluster/launchers.ts';
import { hostPort } from '../cluster/rpc.ts';
import { median } from '../cluster/stats.ts';
import { waitAllApplied as waitAllMembersApplied } from '../snapshot/members.ts';

/** CheckSample is one side's checks in one round. */
export interface CheckSample {
  /** Each checkIntegrity() call, ms. */
  readonly checkMs: number[];
  /** Entries the leader applied per check (checkpoint + reports), measured quiet only (load adds entries). */
  readonly entriesPerCheck: number;
  /** Puts completed per second during the side's checks (0 when quiet). */
  readonly putsPerSecond: number;
}

/** CheckFigures are every round's samples. */
export interface CheckFigures {
  readonly quiet: CheckSample[];
  readonly loaded: CheckSample[];
  readonly verdicts: Record<string, number>;
  readonly preloadKeys: number;
}

/** CheckOptions: where, how many checks, the load. */
export interface CheckOptions {
  readonly folder: string;
  readonly rounds: number;
  readonly checks: number;
  readonly loadConcurrency: number;
  readonly preloadKeys: number;
  readonly log: (line: string) => void;
}

const HEARTBEAT_MS = 100;
const ELECTION_MS = 1_000;
const CALL_TIMEOUT_MS = 30_000;
const LEADER_WAIT_MS_MAX = 30_000;
const PRELOAD_CONCURRENCY = 32;
const VALUE = new Uint8Array(100).fill(0x61);
const SETTLE_WAIT_MS_MAX = 10_000;

const peerUrl = (name: string): string => `http://${name}.bench:2380`;

/** measureCheck runs the check phase (see the file comment); stops the nodes on every way out. */
export async function measureCheck(options: CheckOptions): Promise<CheckFigures> {
  const { rounds, log } = options;
  const network = new MemoryNetwork();
  const cluster = ['c1', 'c2', 'c3'].map((name) => ({ name, peerUrls: [peerUrl(name)] }));
  const nodes: RaftNode[] = [];
  try {
    for (const member of cluster) {
      nodes.push(
        await RaftNode.start({
          name: member.name,
          dataDir: join(options.folder, `${member.name}.data`),
          initialCluster: cluster,
          initialClusterState: 'new',
          initialClusterToken: 'bench-integrity-check',
          advertisePeerUrls: member.peerUrls,
          advertiseClientUrls: [`http://${member.name}.bench:2379`],
          heartbeatIntervalMs: HEARTBEAT_MS,
          electionTimeoutMs: ELECTION_MS,
          integrityCheckPolicy: { checkpointEntries: 0, checkpointIntervalMs: 0 },
          createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
        }),
      );
    }
    const leader = await waitForLeader(nodes);
    log(`  3 RaftNodes on disk in this process (memory transport), leader ${leader.status().name}`);
    await putLoop(leader, options.preloadKeys, PRELOAD_CONCURRENCY, 'pre', () => false);
    log(`  preloaded ${options.preloadKeys} keys`);
    const figures: CheckFigures = { quiet: [], loaded: [], verdicts: {}, preloadKeys: options.preloadKeys };
    const runChecks = async (): Promise<number[]> => {
      const times: number[] = [];
      for (let check = 0; check < options.checks; check += 1) {
        const started = performance.now();
        const state = await leader.checkIntegrity({ timeoutMs: CALL_TIMEOUT_MS });
        times.push(performance.now() - started);
        figures.verdicts[state.verdict] = (figures.verdicts[state.verdict] ?? 0) + 1;
        if (state.verdict !== 'agreed' || state.reports.length !== nodes.length) {
          throw new Error(`a check answered ${state.verdict} with ${state.reports.length} reports: ${JSON.stringify(state)}`);
        }
      }
      return times;
    };
    for (let round = 0; round < rounds; round += 1) {
      for (const side of round % 2 === 0 ? (['quiet', 'loaded'] as const) : (['loaded', 'quiet'] as const)) {
        if (side === 'quiet') {
          await waitAllApplied(nodes);
          const before = leader.status().appliedIndex;
          const times = await runChecks();
          await waitAllApplied(nodes);
          const entriesPerCheck = (leader.status().appliedIndex - before) / options.checks;
          figures.quiet.push({ checkMs: times, entriesPerCheck, putsPerSecond: 0 });
          log(`  round ${round + 1}/${rounds} quiet:  ${options.checks} checks, median ${median(times).toFixed(2)} ms [${Math.min(...times).toFixed(2)}–${Math.max(...times).toFixed(2)}], ${entriesPerCheck.toFixed(1)} entries each`);
        } else {
          let stop = false;
          let puts = 0;
          const started = performance.now();
          const load = putLoop(leader, Number.MAX_SAFE_INTEGER, options.loadConcurrency, `load${round}`, () => stop, () => (puts += 1));
          let times: number[];
          try {
            times = await runChecks();
          } finally {
            stop = true;
            await load;
          }
          const putsPerSecond = puts / ((performance.now() - started) / 1000);
          figures.loaded.push({ checkMs: times, entriesPerCheck: Number.NaN, putsPerSecond });
          log(`  round ${round + 1}/${rounds} loaded: ${options.checks} checks, median ${median(times).toFixed(2)} ms [${Math.min(...times).toFixed(2)}–${Math.max(...times).toFixed(2)}] beside ${putsPerSecond.toFixed(0)} puts/s`);
        }
      }
    }
    return figures;
  } finally {
    for (const node of nodes) await node.stop({ transferLeadership: false }).catch(() => undefined);
  }
}

async function waitForLeader(nodes: readonly RaftNode[]): Promise<RaftNode> {
  const deadline = Date.now() + LEADER_WAIT_MS_MAX;
  while (Date.now() < deadline) {
    const leader = nodes.find((node) => node.status().role === 'leader');
    if (leader !== undefined && nodes.every((node) => node.status().leaderId === leader.memberId)) return leader;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no leader within ${LEADER_WAIT_MS_MAX} ms`);
}

async function waitAllApplied(nodes: readonly RaftNode[]): Promise<void> {
  const deadline = Date.now() + SETTLE_WAIT_MS_MAX;
  while (Date.now() < deadline) {
    const target = Math.max(...nodes.map((node) => node.status().commitIndex));
    if (nodes.every((node) => node.status().appliedIndex >= target)) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`the members did not apply the same index within ${SETTLE_WAIT_MS_MAX} ms`);
}

// putLoop keeps `concurrency` puts outstanding on `leader` until `count` were made or stop() says so.
async function putLoop(leader: RaftNode, count: number, concurrency: number, prefix: string, stop: () => boolean, onPut: () => void = () => undefined): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count && !stop()) {
      const key = new TextEncoder().encode(`${prefix}/${next}`);
      next += 1;
      await leader.kv({ type: 'put', key, value: VALUE }, { timeoutMs: CALL_TIMEOUT_MS });
      onPut();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** ProcessCheckFigures are the checks through Admin.Check on a 3-process cluster, by round. */
export interface ProcessCheckFigures {
  readonly description: string;
  readonly quiet: CheckSample[];
  readonly loaded: CheckSample[];
  /** Put p99 of the loaded windows (checks back to back beside the puts), ms. */
  readonly loadedPutP99Ms: number[];
  readonly verdicts: Record<string, number>;
}

/** ProcessCheckOptions: the rounds, checks per side, the put load beside the loaded ones. */
export interface ProcessCheckOptions {
  readonly rounds: number;
  readonly checks: number;
  readonly loadConcurrency: number;
  readonly serveFlags: readonly string[];
  readonly harness: LoadHarness;
  readonly log: (line: string) => void;
}

const PROCESS_LOAD_WINDOW_MS_MAX = 120_000;
const APPLIED_WAIT_MS_MAX = 30_000;

/**
 * measureProcessCheck times IntegrityClient.check() (Admin.Check, what `stratakv check` calls)
 * on the leader of a 3-process cluster with periodic checkpoints off: `checks` in a row on the
 * quiet cluster, then `checks` in a row while the client harness keeps `loadConcurrency` puts
 * outstanding on the leader (the load's window ends with the last check), alternating the order
 * each round. Entries per check: the leader's applied index before and after the quiet ones.
 */
export async function measureProcessCheck(options: ProcessCheckOptions): Promise<ProcessCheckFigures> {
  const { rounds, harness, log } = options;
  const cluster = await stratakvLauncher({ serveFlags: [...options.serveFlags, '--integrity-check-entries', '0', '--integrity-check-interval', '0'] }).start();
  const client = new IntegrityClient();
  try {
    const figures: ProcessCheckFigures = { description: cluster.description, quiet: [], loaded: [], loadedPutP99Ms: [], verdicts: {} };
    log(`  ${cluster.description}`);
    const runChecks = async (endpoint: string): Promise<number[]> => {
      const times: number[] = [];
      for (let check = 0; check < options.checks; check += 1) {
        const started = performance.now();
        const answer = await client.check([endpoint], { timeoutMs: CALL_TIMEOUT_MS });
        times.push(performance.now() - started);
        figures.verdicts[answer.verdict] = (figures.verdicts[answer.verdict] ?? 0) + 1;
        if (answer.verdict !== 'agreed' || answer.reports.length !== cluster.members.length) {
          throw new Error(`Admin.Check answered ${answer.verdict} with ${answer.reports.length} reports`);
        }
      }
      return times;
    };
    for (let round = 0; round < rounds; round += 1) {
      for (const side of round % 2 === 0 ? (['quiet', 'loaded'] as const) : (['loaded', 'quiet'] as const)) {
        const leader = await cluster.leader();
        const target = hostPort(leader.endpoint);
        if (side === 'quiet') {
          const before = await waitAllMembersApplied(cluster.members, leader, APPLIED_WAIT_MS_MAX);
          const times = await runChecks(target);
          const after = await waitAllMembersApplied(cluster.members, leader, APPLIED_WAIT_MS_MAX);
          const entriesPerCheck = Number(after - before) / options.checks;
          figures.quiet.push({ checkMs: times, entriesPerCheck, putsPerSecond: 0 });
          log(`  round ${round + 1}/${rounds} quiet:  ${options.checks} checks, median ${median(times).toFixed(2)} ms [${Math.min(...times).toFixed(2)}–${Math.max(...times).toFixed(2)}], ${entriesPerCheck.toFixed(1)} entries each`);
        } else {
          const running = harness.startJob({
            operation: 'put',
            endpoints: [leader.endpoint],
            channels: 1,
            concurrency: options.loadConcurrency,
            warmupMs: 500,
            durationMs: PROCESS_LOAD_WINDOW_MS_MAX,
            requestsMax: 10_000_000,
            deadlineMs: 0,
            keyPrefix: `check/r${round}`,
            getPrefix: 'check',
            getKeys: 1,
            valueBytes: 100,
            recordCompletions: false,
          });
          let times: number[];
          try {
            await running.measuring;
            times = await runChecks(target);
          } finally {
            running.stop();
          }
          const result = await running.result;
          figures.loaded.push({ checkMs: times, entriesPerCheck: Number.NaN, putsPerSecond: result.perSecond });
          figures.loadedPutP99Ms.push(result.latency.p99);
          log(
            `  round ${round + 1}/${rounds} loaded: ${options.checks} checks, median ${median(times).toFixed(2)} ms [${Math.min(...times).toFixed(2)}–${Math.max(...times).toFixed(2)}] ` +
              `beside ${result.perSecond.toFixed(0)} puts/s (p99 ${result.latency.p99.toFixed(1)} ms)`,
          );
        }
      }
    }
    return figures;
  } finally {
    client.close();
    await cluster.stop();
  }
}

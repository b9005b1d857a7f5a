// The seeded simulation of real RaftNodes (issue 11): 3 or 5 members, each the production
// driver with its DiskLogStore on a fault-injecting disk (FaultyFileSystem) and its KV state
// machine on memory-level, talking over MemoryTransport, all on one VirtualClock. A seed
// decides everything — the cluster, the link model, the clients' operations and the faults —
// so a failing seed prints itself and replays exactly.
//
// A run has a fault phase (safety) and a healed phase (liveness):
//   faults   message loss, duplication, delays (some longer than an election), and so
//            reordering; partitions (one member cut off, majority/minority, a bridge); crash
//            and restart (a power cut on the member's disk: unsynced writes lost or torn);
//            slow disks (fdatasync held); leader transfers
//   clients  put, linearizable and serializable get, CAS (a Txn) and delete, with deadlines
//            and AbortSignals, against any member, recorded for the linearizability checker
//   healed   every link restored, every member up; clients stop; the cluster must converge
// and then it checks:
//   - the client history is linearizable (test/linearizability), per key, with one more
//     linearizable read of every key after healing (an acknowledged write lost everywhere
//     shows as a stale final read);
//   - every read, serializable ones included, returns a value some client wrote to its key,
//     the same value wherever one (key, modRevision) is read, and a member's serializable
//     reads never go back in revision;
//   - Log Matching on the durable logs of the live members up to the commit index;
//   - every acknowledged write is on every replica: all replicas hold the same keys, values
//     and revisions, and the same revision;
//   - election safety: no two members led in one term; within one incarnation a member's
//     term, applied index and revision never go back, and it never applies past its commit
//     index (sampled every half heartbeat);
//   - every promise a live member handed out settled; every queue stayed within its bound.

import { MemoryLevel } from 'memory-level';

import type { NodeQueues } from '../../../src/node/index.ts';
import { memberIdFor, PROPOSALS_FORWARDING_MAX, PROPOSALS_HELD_MAX, PROPOSALS_IN_FLIGHT_MAX, PROPOSALS_QUEUED_MAX, RaftNode, READS_PENDING_MAX } from '../../../src/node/index.ts';
import type { Entry, Logger, Message } from '../../../src/raft/index.ts';
import type { DeleteRangeResponse, KeyValue, KvLevel, KvResponse, LogStore, RangeResponse, TxnResponse } from '../../../src/storage/index.ts';
import { DiskLogStore, FaultyFileSystem, KvStateMachine } from '../../../src/storage/index.ts';
import { MemorySnapshotStore } from '../../../src/snapshot/index.ts';
import type { SnapshotPolicy } from '../../../src/node/snapshotter.ts';
import type { LinkTraffic } from '../../../src/transport/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../../src/transport/index.ts';
import { isStrataError, SeededRandom, settleMacrotasks, VirtualClock } from '../../../src/util/index.ts';
import { checkLinearizability, formatVerdict, HistoryRecorder } from '../../linearizability/index.ts';
import type { PendingOperation } from '../../linearizability/index.ts';
import { ProcessClock } from './process-clock.ts';

const HEARTBEAT_MS = 10;
const ELECTION_MS = 100;
const KEYS = ['a', 'b', 'c', 'd'];
// The client id of the reads after healing (the workload's clients are 0..3).
const FINAL_READ_CLIENT = 100;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
// Real event-loop turns between two virtual tasks: the disk and memory-level finish their
// promise chains in a few turns. Deterministic: no real timer or I/O is involved.
const REAL_TURNS_PER_TASK = 2;
/** TRACE_LINES_MAX bounds the trace kept for a failing seed's report. */
export const TRACE_LINES_MAX = 400;

/** ClusterSimOptions shape one run; the seed picks everything else. */
export interface ClusterSimOptions {
  readonly faultPhaseMs?: number;
  /** How long the healed cluster has to converge. */
  readonly healPhaseMs?: number;
  /** Every trace line goes here as it happens (replaying a seed with --trace). */
  readonly trace?: (line: string) => void;
  /** Bounds the linearizability search (steps). */
  readonly checkStepsMax?: number;
}

/** ClusterSimStats counts what a run did. */
export interface ClusterSimStats {
  members: number;
  operations: number;
  acknowledged: number;
  unknown: number;
  crashes: number;
  partitions: number;
  transfers: number;
  diskStalls: number;
  replacements: number;
  snapshotsSaved: number;
  snapshotsInstalled: number;
  /** Of snapshotsInstalled, those restored beside their receive (the rest from the received file). */
  snapshotsRestoredWhileReceiving: number;
  linearizability: 'linearizable' | 'unknown';
  virtualMs: number;
}

/** ClusterSimResult is a run's verdict: ok, or the first check that failed, with the trace's tail. */
export interface ClusterSimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly failure?: string;
  readonly stats: ClusterSimStats;
  readonly traceTail: readonly string[];
}

interface SimMember {
  readonly name: string;
  readonly peerUrl: string;
  readonly disk: FaultyFileSystem;
  level: MemoryLevel<Uint8Array, Uint8Array>;
  crashedLevel: MemoryLevel<Uint8Array, Uint8Array> | undefined;
  // Its snapshots: they survive a crash, except what was not finished (MemorySnapshotStore.crash).
  readonly snapshots: MemorySnapshotStore;
  restarting: boolean;
  // How it starts: the founders bootstrap a `new` cluster; a member added later joins an `existing` one.
  initialCluster: readonly { readonly name: string; readonly peerUrls: readonly string[] }[];
  initialClusterState: 'new' | 'existing';
  // Removed from the cluster: never restarted, left out of the checks.
  retired: boolean;
  node: RaftNode | undefined;
  clock: ProcessClock | undefined;
  transport: MemoryTransport | undefined;
  // This incarnation's log, read by the log-matching check.
  log: LogStore | undefined;
  // Client calls this incarnation has not answered; a crash answers them as unknown.
  readonly outstanding: Set<PendingCall>;
  restarts: number;
  // How many times it started (0: a newcomer the membership task has not started yet).
  incarnations: number;
  // What the sampler last saw of it.
  seen: { node: RaftNode | undefined; term: number; appliedIndex: number; revision: number };
}

interface PendingCall {
  readonly member: SimMember;
  readonly node: RaftNode;
  readonly what: string;
  readonly sinceMs: number;
  settled: boolean;
  onCrash: () => void;
}

class SimFailure extends Error {}

/** runClusterSimulation runs one seed and reports what its checks found. */
export async function runClusterSimulation(seed: number, options: ClusterSimOptions = {}): Promise<ClusterSimResult> {
  const run = new ClusterRun(seed, options);
  try {
    await run.execute();
    return { seed, ok: true, stats: run.stats, traceTail: [] };
  } catch (error) {
    const failure = error instanceof SimFailure ? error.message : error instanceof Error ? `${error.name}: ${error.message}\n${error.stack ?? ''}` : String(error);
    return { seed, ok: false, failure, stats: run.stats, traceTail: run.traceTail() };
  } finally {
    await run.dispose();
  }
}

class ClusterRun {
  readonly stats: ClusterSimStats;
  private readonly seed: number;
  private readonly options: ClusterSimOptions;
  private readonly random: SeededRandom;
  private readonly clock = new VirtualClock();
  private readonly network = new MemoryNetwork();
  private readonly members: SimMember[] = [];
  private readonly recorder: HistoryRecorder;
  private readonly trace: string[] = [];
  // What reads are checked against beyond linearizability (serializable reads may be stale,
  // so they are not in the history): the values ever written to each key, the value each
  // (key, modRevision) was first read with, and the revision each member last served.
  private readonly written = new Set<string>();
  private readonly readAtRevision = new Map<string, string>();
  private readonly servedRevision = new WeakMap<RaftNode, number>();
  private readonly leadersByTerm = new Map<number, string>();
  private faultsOn = true;
  private changingMembers = false;
  private clientsOn = true;
  private failure: string | undefined;
  // The link model of this seed.
  private readonly lossRate: number;
  private readonly duplicateRate: number;
  private readonly delayMsMax: number;
  private readonly longDelayRate: number;
  private readonly snapshotPolicy: Partial<SnapshotPolicy>;

  constructor(seed: number, options: ClusterSimOptions) {
    this.seed = seed;
    this.options = options;
    this.random = new SeededRandom(seed);
    this.recorder = new HistoryRecorder(() => this.clock.now());
    const size = this.random.intBelow(2) === 0 ? 3 : 5;
    this.stats = { members: size, operations: 0, acknowledged: 0, unknown: 0, crashes: 0, partitions: 0, transfers: 0, diskStalls: 0, replacements: 0, snapshotsSaved: 0, snapshotsInstalled: 0, snapshotsRestoredWhileReceiving: 0, linearizability: 'linearizable', virtualMs: 0 };
    this.lossRate = [0, 0.01, 0.05, 0.1][this.random.intBelow(4)] ?? 0;
    this.duplicateRate = [0, 0.01, 0.05][this.random.intBelow(3)] ?? 0;
    this.delayMsMax = [0, 2, 10, 30][this.random.intBelow(4)] ?? 0;
    this.longDelayRate = [0, 0.002, 0.01][this.random.intBelow(3)] ?? 0;
    // Small counts, so that snapshots, compaction and installs from the leader all happen
    // within a run; a tail as short as a few entries makes lagging members need snapshots.
    this.snapshotPolicy = {
      snapshotCount: [10, 30, 100, 400][this.random.intBelow(4)] ?? 100,
      catchUpEntries: [1, 5, 20, 100][this.random.intBelow(4)] ?? 5,
      sendBytesPerSecond: 64 * 1024 * 1024,
      restoreBytesPerSecondAssumed: 1024 * 1024 * 1024,
      // Virtual time barely moves while a burst is applied: a duty-cycle limit would leave
      // most seeds with one early snapshot. Some seeds keep etcd-like pacing.
      snapshotDutyCycleMax: this.random.intBelow(4) === 0 ? 0.1 : 1,
    };
    for (let index = 0; index < size; index += 1) this.members.push(this.newMember());
    const founders = this.members.map((member) => ({ name: member.name, peerUrls: [member.peerUrl] }));
    for (const member of this.members) member.initialCluster = founders;
  }

  private newMember(): SimMember {
    const index = this.members.length;
    const name = `n${index + 1}`;
    return {
      name,
      peerUrl: `http://${name}.sim:2380`,
      disk: new FaultyFileSystem({ seed: this.seed * 31 + index }),
      level: newLevel(),
      crashedLevel: undefined,
      snapshots: new MemorySnapshotStore({ clock: this.clock }),
      restarting: false,
      initialCluster: [],
      initialClusterState: 'new',
      retired: false,
      node: undefined,
      clock: undefined,
      transport: undefined,
      log: undefined,
      outstanding: new Set(),
      restarts: 0,
      incarnations: 0,
      seen: { node: undefined, term: 0, appliedIndex: 0, revision: 0 },
    };
  }

  traceTail(): string[] {
    return this.trace.slice(-TRACE_LINES_MAX);
  }

  private note(line: string): void {
    const stamped = `[${this.clock.now().toFixed(1).padStart(8)}] ${line}`;
    this.trace.push(stamped);
    if (this.trace.length > 4 * TRACE_LINES_MAX) this.trace.splice(0, this.trace.length - TRACE_LINES_MAX);
    this.options.trace?.(stamped);
  }

  private fail(message: string): never {
    this.failure ??= message;
    throw new SimFailure(message);
  }

  async execute(): Promise<void> {
    this.note(`seed ${this.seed}: ${this.members.length} members, loss ${this.lossRate}, duplicates ${this.duplicateRate}, delay ≤ ${this.delayMsMax} ms, long delays ${this.longDelayRate}`);
    this.network.setLinkModel((from, to, traffic) => this.linkDelays(from, to, traffic));
    for (const member of this.members) await this.start(member);
    const faultPhaseMs = this.options.faultPhaseMs ?? 3_000;
    const healPhaseMs = this.options.healPhaseMs ?? 6_000;
    const clients = Array.from({ length: 4 }, (_, client) => this.client(client));
    void this.faults();
    this.sampler().catch((error: unknown) => {
      if (!(error instanceof SimFailure)) this.failure ??= `sampler failed: ${String(error)}`;
    });
    await this.runFor(faultPhaseMs);
    this.heal();
    // Clients keep going while the cluster heals, then stop; each finishes its call.
    await this.runFor(ELECTION_MS * 5);
    this.clientsOn = false;
    try {
      await this.runUntil('every client finished its last call', () => clients.every((client) => client.done), healPhaseMs);
    } catch (error) {
      this.failure = undefined;
      this.checkPromisesSettled(); // names the call that never settled, if that is why
      throw error;
    }
    await this.converge(healPhaseMs);
    await this.finalReads();
    this.checkPromisesSettled();
    // Entries committed since (a member publishing itself late, an integrity checkpoint and
    // its reports) are applied everywhere before replicas and member tables are compared.
    await this.converge(healPhaseMs);
    await this.checkReplicas();
    this.checkLogs();
    this.checkHistory();
    this.stats.virtualMs = this.clock.now();
    if (this.failure !== undefined) throw new SimFailure(this.failure);
  }

  async dispose(): Promise<void> {
    this.faultsOn = false;
    this.clientsOn = false;
    for (const member of this.members) {
      member.clock?.kill();
      await member.transport?.close();
    }
  }

  // ---------------------------------------------------------------- members

  private async start(member: SimMember): Promise<void> {
    const clock = new ProcessClock(this.clock);
    const level = member.level;
    const onFatal = (error: Error): void => {
      if (member.clock !== clock) return; // a zombie of a crashed incarnation
      this.note(`${member.name} fatal: ${error.message}`);
      this.crash(member, 'fatal error');
    };
    member.clock = clock;
    const node = await RaftNode.start({
      name: member.name,
      initialCluster: member.initialCluster,
      initialClusterState: member.initialClusterState,
      initialClusterToken: 'sim',
      advertisePeerUrls: [member.peerUrl],
      advertiseClientUrls: [`http://${member.name}.sim:2379`],
      heartbeatIntervalMs: HEARTBEAT_MS,
      electionTimeoutMs: ELECTION_MS,
      clock,
      random: new SeededRandom(this.random.intBelow(2 ** 31)),
      onFatal,
      storage: async () => {
        const log = DiskLogStore.openSync({ fileSystem: member.disk, directory: `/${member.name}`, onFatal, logger: this.storageLogger(member) });
        member.log = log;
        return {
          log,
          stateMachine: await KvStateMachine.open(level as unknown as KvLevel, { onFatal }),
          snapshots: member.snapshots,
          restorer: {
            // An installed snapshot's state machine becomes the member's level: what a restart reopens.
            restore: async (content) => {
              const restoredLevel = newLevel();
              const stateMachine = await KvStateMachine.restore(restoredLevel as unknown as KvLevel, content, { onFatal });
              return {
                stateMachine,
                commit: async () => {
                  if (member.clock === clock) member.level = restoredLevel;
                },
                discard: () => stateMachine.close(),
              };
            },
          },
        };
      },
      snapshotPolicy: this.snapshotPolicy,
      hooks: {
        onSnapshotSaved: (info) => {
          this.stats.snapshotsSaved += 1;
          this.note(`${member.name} snapshot saved ${info.id} (${info.keyCount} keys, ${info.byteLength} bytes)`);
        },
        onSnapshotInstalled: (info) => {
          this.stats.snapshotsInstalled += 1;
          if (info.restoredWhileReceiving) this.stats.snapshotsRestoredWhileReceiving += 1;
          this.note(`${member.name} snapshot installed ${info.snapshotId} at ${info.index}${info.restoredWhileReceiving ? ' (restored while received)' : ' (restored from the file)'}`);
        },
      },
      createTransport: ({ localId, clusterId }) => {
        const transport = new MemoryTransport(this.network, { localId, clusterId, clock });
        member.transport = transport;
        return transport;
      },
    });
    if (member.clock !== clock) {
      // Crashed while starting (a fatal error in its first Ready).
      return;
    }
    member.node = node;
    member.incarnations += 1;
    this.note(`${member.name} started (incarnation ${member.incarnations}, id ${node.memberId.toString(16)})`);
    // A member stops by itself only once removed (after its grace period); it is then gone
    // for good, like the process of a removed etcd member.
    void node.whenStopped().then(() => {
      if (member.node !== node || member.clock !== clock) return; // crashed, or the run is over
      if (!node.status().removed) this.failure ??= `${member.name} stopped by itself without being removed`;
      this.note(`${member.name} stopped by itself (removed)`);
      member.retired = true;
      member.node = undefined;
      member.transport = undefined;
      member.log = undefined;
      clock.kill();
      member.clock = undefined;
    });
  }

  // restartInBackground restarts a crashed member from a timer; a failure is the seed's.
  private restartInBackground(member: SimMember): void {
    this.restart(member).catch((error: unknown) => {
      this.failure ??= `restarting ${member.name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
    });
  }

  // The log's own notices (a torn tail truncated at recovery, say) go into the trace.
  private storageLogger(member: SimMember): Logger {
    const note = (level: string) => (message: string, fields?: Record<string, unknown>): void => this.note(`${member.name} storage ${level}: ${message}${fields === undefined ? '' : ` ${JSON.stringify(fields)}`}`);
    return { debug: () => undefined, info: note('info'), warn: note('warn') };
  }

  private crash(member: SimMember, why: string): void {
    if (member.clock === undefined || !member.clock.isAlive) return;
    this.stats.crashes += 1;
    member.clock.kill();
    void member.transport?.close();
    const mode = this.random.intBelow(2) === 0 ? 'lose' : 'tear';
    const report = member.disk.crash(mode);
    member.snapshots.crash();
    this.note(`${member.name} CRASH (${why}, disk ${mode}: ${report.files.map((file) => `${file.path} kept ${file.keptWrites} lost ${file.lostWrites}${file.torn ? ' torn' : ''}`).join('; ') || 'nothing unsynced'})`);
    for (const call of [...member.outstanding]) call.onCrash();
    member.outstanding.clear();
    member.node = undefined;
    member.clock = undefined;
    member.transport = undefined;
    member.log = undefined;
    // What LevelDB had written survives the process; the restart reads a copy of it.
    member.crashedLevel = member.level;
  }

  private async restart(member: SimMember): Promise<void> {
    if (member.clock !== undefined || member.restarting || member.retired) return;
    member.restarting = true;
    try {
      member.restarts += 1;
      if (member.crashedLevel !== undefined) {
        member.level = await copyLevel(member.crashedLevel);
        member.crashedLevel = undefined;
      }
      await this.start(member);
    } finally {
      member.restarting = false;
    }
  }

  private up(): SimMember[] {
    return this.members.filter((member) => !member.retired && member.node !== undefined && member.clock?.isAlive === true);
  }

  // voters is the voter set as the leader (or any member up) has applied it.
  private voters(): SimMember[] {
    const up = this.up();
    const view = up.find((member) => member.node?.status().role === 'leader') ?? up[0];
    const records = view?.node?.members() ?? [];
    const voterIds = new Set(records.filter((record) => !record.isLearner).map((record) => record.id));
    return this.members.filter((member) => !member.retired && voterIds.has(memberIdFor([member.peerUrl], 'sim')));
  }

  // ---------------------------------------------------------------- the network

  private linkDelays(_from: number, _to: number, traffic: LinkTraffic): readonly number[] {
    if (!this.faultsOn) return [0];
    const random = this.random;
    const chance = (rate: number): boolean => rate > 0 && random.intBelow(1_000_000) < rate * 1_000_000;
    if (chance(this.lossRate)) return [];
    const delay = (): number => {
      if (chance(this.longDelayRate)) return ELECTION_MS + random.intBelow(3 * ELECTION_MS); // outlives an election
      return this.delayMsMax === 0 ? 0 : random.intBelow(this.delayMsMax + 1);
    };
    // Peer calls are retried by gRPC as a whole, not duplicated frame by frame.
    if (traffic.kind === 'frame' && chance(this.duplicateRate)) return [delay(), delay() + random.intBelow(4 * ELECTION_MS)];
    return [delay()];
  }

  private heal(): void {
    this.faultsOn = false;
    this.network.heal();
    this.network.setLinkModel(undefined);
    for (const member of this.members) member.disk.resumeFdatasync();
    this.note('HEAL: links restored, disks resumed, crashed members restart');
    // Only members that ran before: a newcomer not yet added is the membership task's to start.
    for (const member of this.members) if (member.clock === undefined && member.incarnations > 0) this.restartInBackground(member);
  }

  // ---------------------------------------------------------------- faults

  private async faults(): Promise<void> {
    const random = this.random;
    for (let step = 0; step < 10_000 && this.faultsOn; step += 1) {
      await this.sleep(20 + random.intBelow(200));
      if (!this.faultsOn) return;
      const action = random.intBelow(11);
      const up = this.up();
      const voters = this.voters();
      const votersUp = voters.filter((member) => up.includes(member));
      if (action <= 1) {
        this.partition();
      } else if (action === 2) {
        this.network.heal();
        this.note('partitions healed');
      } else if (action === 3 && votersUp.length - 1 > voters.length / 2) {
        // Never so many down that the voters left are no majority: the healed phase must converge.
        const victim = up[random.intBelow(up.length)] as SimMember;
        if (voters.includes(victim) === false && up.length <= 1) continue;
        this.crash(victim, 'killed');
        const downMs = 20 + random.intBelow(400);
        this.clock.setTimeout(() => {
          if (this.faultsOn) this.restartInBackground(victim);
        }, downMs);
      } else if (action === 4 && up.length > 0) {
        const member = up[random.intBelow(up.length)] as SimMember;
        this.stats.diskStalls += 1;
        member.disk.pauseFdatasync();
        const stallMs = 5 + random.intBelow(3 * ELECTION_MS);
        this.note(`${member.name} disk stalls for ${stallMs} ms`);
        this.clock.setTimeout(() => member.disk.resumeFdatasync(), stallMs);
      } else if (action === 5) {
        const leader = up.find((member) => member.node?.status().role === 'leader');
        const targets = up.filter((member) => member !== leader);
        if (leader?.node !== undefined && targets.length > 0) {
          const target = targets[random.intBelow(targets.length)] as SimMember;
          const targetNode = target.node;
          if (targetNode !== undefined) {
            this.stats.transfers += 1;
            this.note(`transfer leadership ${leader.name} -> ${target.name}`);
            leader.node.transferLeadership(targetNode.memberId, { timeoutMs: 2 * ELECTION_MS }).catch((error: unknown) => this.note(`transfer ended: ${codeOf(error)}`));
          }
        }
      } else if (action === 10 && !this.changingMembers && this.stats.replacements < 2) {
        void this.replaceMember();
      }
    }
  }

  // replaceMember moves the cluster off one voter onto a new member: add the newcomer as a
  // learner, start it, then either as etcd operators do it (promote it once it has caught up,
  // remove the old voter) or as `stratakv migrate` will, in one joint-consensus change that
  // promotes the one and removes the other, leaving the joint configuration by itself or by
  // an explicit leave. The old voter then stops by itself. Each step is retried (faults make
  // calls fail or time out, and a timed-out change may still be applied), and the task carries
  // on into the healed phase until it is done.
  private async replaceMember(): Promise<void> {
    this.changingMembers = true;
    try {
      const voters = this.voters();
      if (voters.length < 3) return;
      const victim = voters[this.random.intBelow(voters.length)] as SimMember;
      const newcomer = this.newMember();
      newcomer.initialClusterState = 'existing';
      this.members.push(newcomer);
      this.stats.replacements += 1;
      const newcomerId = memberIdFor([newcomer.peerUrl], 'sim');
      const victimId = memberIdFor([victim.peerUrl], 'sim');
      const way = (['in steps', 'joint, leaving by itself', 'joint, leaving explicitly'] as const)[this.random.intBelow(3)] as string;
      this.note(`membership: replace ${victim.name} with ${newcomer.name} ${way}`);
      const joint = (): boolean => {
        const view = this.up().find((member) => member.node?.status().role === 'leader');
        return (view?.node?.configuration().votersOutgoing.length ?? 0) > 0;
      };
      const listed = (id: number): { isLearner: boolean } | undefined => {
        const view = this.up().find((member) => member.node?.status().role === 'leader');
        return view?.node?.members().find((record) => record.id === id);
      };
      const attempt = async (what: string, call: (node: RaftNode) => Promise<unknown>): Promise<void> => {
        const up = this.up();
        const via = up[this.random.intBelow(Math.max(1, up.length))];
        if (via?.node === undefined) return;
        // An operator's call to a member that crashes is answered by the lost connection.
        const outcome = await this.callSurvivingCrash(via, via.node, `membership: ${what}`, call(via.node));
        this.note(`membership: ${what} via ${via.name}: ${outcome}`);
      };
      for (let round = 0; round < 200 && this.failure === undefined; round += 1) {
        const record = listed(newcomerId);
        if (record === undefined && newcomer.node === undefined) {
          await attempt(`add ${newcomer.name} as a learner`, (node) => node.addMember([newcomer.peerUrl], true, { timeoutMs: 500 }));
        } else if (record !== undefined && newcomer.node === undefined && newcomer.clock === undefined) {
          const view = this.up().find((member) => member.node?.status().role === 'leader');
          newcomer.initialCluster = (view?.node?.members() ?? []).map((member) => ({ name: member.name === '' ? (this.members.find((m) => memberIdFor([m.peerUrl], 'sim') === member.id)?.name ?? `m${member.id}`) : member.name, peerUrls: member.peerUrls }));
          await this.start(newcomer);
        } else if (record?.isLearner === true && way !== 'in steps') {
          const leave = way === 'joint, leaving by itself' ? 'auto' : 'explicit';
          await attempt(`promote ${newcomer.name} and remove ${victim.name} (leave ${leave})`, (node) =>
            node.replaceMembers({ promote: [newcomerId], remove: [victimId], leave }, { timeoutMs: 500 }),
          );
        } else if (joint()) {
          // A joint configuration that leaves by itself is waited for; otherwise it is left here.
          if (way === 'joint, leaving explicitly') await attempt('leave the joint configuration', (node) => node.leaveJointConfiguration({ timeoutMs: 500 }));
        } else if (record?.isLearner === true) {
          await attempt(`promote ${newcomer.name}`, (node) => node.promoteMember(newcomerId, { timeoutMs: 500 }));
        } else if (record !== undefined && listed(victimId) !== undefined) {
          await attempt(`remove ${victim.name}`, (node) => node.removeMember(victimId, { timeoutMs: 500 }));
        } else if (record !== undefined && listed(victimId) === undefined && this.up().some((member) => member.node?.status().role === 'leader')) {
          victim.retired = true;
          this.note(`membership: ${victim.name} retired`);
          return;
        }
        await this.sleep(20 + this.random.intBelow(80));
      }
      this.note('membership: replacement gave up after 200 rounds');
    } finally {
      this.changingMembers = false;
    }
  }

  private partition(): void {
    const random = this.random;
    const ids = this.members.map((member) => member.node?.memberId).filter((id): id is number => id !== undefined);
    if (ids.length < 3) return;
    this.stats.partitions += 1;
    this.network.heal();
    const shuffled = ids.map((id) => ({ id, key: random.intBelow(1_000) })).sort((a, b) => a.key - b.key).map((entry) => entry.id);
    const kind = random.intBelow(3);
    if (kind === 0) {
      const [lonely] = shuffled;
      if (lonely !== undefined) this.network.isolate(lonely);
      this.note(`partition: ${this.nameOf(lonely)} cut off`);
    } else if (kind === 1) {
      const minority = shuffled.slice(0, Math.floor(ids.length / 2));
      const majority = shuffled.slice(minority.length);
      for (const a of minority) for (const b of majority) this.network.disconnect(a, b);
      this.note(`partition: {${minority.map((id) => this.nameOf(id)).join(',')}} | {${majority.map((id) => this.nameOf(id)).join(',')}}`);
    } else {
      // A bridge: the first sees everyone; the others only see the first.
      const [bridge, ...rest] = shuffled;
      for (let i = 0; i < rest.length; i += 1) for (let j = i + 1; j < rest.length; j += 1) this.network.disconnect(rest[i] as number, rest[j] as number);
      this.note(`partition: bridge through ${this.nameOf(bridge)}`);
    }
  }

  private nameOf(id: number | undefined): string {
    return this.members.find((member) => member.node?.memberId === id)?.name ?? String(id);
  }

  // ---------------------------------------------------------------- clients

  private client(client: number): { done: boolean } {
    const state = { done: false };
    const loop = async (): Promise<void> => {
      const random = this.random;
      for (let sequence = 0; sequence < 100_000 && this.clientsOn; sequence += 1) {
        const up = this.up();
        if (up.length === 0) {
          await this.sleep(10);
          continue;
        }
        const member = up[random.intBelow(up.length)] as SimMember;
        await this.operation(client, sequence, member);
        await this.sleep(random.intBelow(15));
      }
    };
    loop().then(
      () => (state.done = true),
      (error: unknown) => {
        state.done = true;
        this.failure ??= `client ${client} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
      },
    );
    return state;
  }

  private async operation(client: number, sequence: number, member: SimMember): Promise<void> {
    const node = member.node;
    if (node === undefined) return;
    const random = this.random;
    const key = KEYS[random.intBelow(KEYS.length)] as string;
    const value = `${client}.${sequence}`;
    const timeoutMs = 100 + random.intBelow(1_500);
    const controller = random.intBelow(10) === 0 ? new AbortController() : undefined;
    if (controller !== undefined) this.clock.setTimeout(() => controller.abort(), random.intBelow(timeoutMs));
    const callOptions = { timeoutMs, ...(controller !== undefined ? { signal: controller.signal } : {}) };
    const kind = random.intBelow(10);
    this.stats.operations += 1;
    const keyBytes = encoder.encode(key);
    if (kind <= 2 || kind === 7 || kind === 8) this.written.add(`${key}=${value}`);
    if (kind <= 2) {
      const op = this.recorder.invoke(client, { kind: 'write', key, value });
      await this.call(member, node, `${member.name} put ${key}=${value}`, node.kv({ type: 'put', key: keyBytes, value: encoder.encode(value) }, callOptions), op, () => this.recorder.ok(op));
    } else if (kind <= 5) {
      const op = this.recorder.invoke(client, { kind: 'read', key });
      await this.call(member, node, `${member.name} get ${key}`, node.kv({ type: 'range', key: keyBytes }, callOptions), op, (response) => {
        const found = this.checkRead(member, node, key, response as RangeResponse, false);
        this.recorder.ok(op, { value: found === undefined ? null : decoder.decode(found.value) });
      });
    } else if (kind === 6) {
      // Serializable: may be stale, so not in the history; checkRead holds it to what it can promise.
      await this.call(member, node, `${member.name} sget ${key}`, node.kv({ type: 'range', key: keyBytes, serializable: true }, callOptions), undefined, (response) => {
        this.checkRead(member, node, key, response as RangeResponse, true);
      });
    } else if (kind <= 8) {
      const expected = random.intBelow(3) === 0 ? null : `${random.intBelow(4)}.${Math.max(0, sequence - random.intBelow(20))}`;
      const op = this.recorder.invoke(client, { kind: 'cas', key, expected, value });
      const compare =
        expected === null
          ? { target: 'version' as const, result: 'equal' as const, key: keyBytes, number: 0 }
          : { target: 'value' as const, result: 'equal' as const, key: keyBytes, value: encoder.encode(expected) };
      await this.call(
        member,
        node,
        `${member.name} cas ${key} ${expected ?? '∅'}→${value}`,
        node.kv({ type: 'txn', compare: [compare], success: [{ type: 'put', key: keyBytes, value: encoder.encode(value) }], failure: [] }, callOptions),
        op,
        (response) => this.recorder.ok(op, { succeeded: (response as TxnResponse).succeeded }),
      );
    } else {
      const op = this.recorder.invoke(client, { kind: 'delete', key });
      await this.call(member, node, `${member.name} del ${key}`, node.kv({ type: 'deleteRange', key: keyBytes }, callOptions), op, (response) => {
        const deleted = (response as DeleteRangeResponse).deleted;
        this.recorder.ok(op, { deleted: deleted === 0 ? 0 : 1 });
      });
    }
  }

  // checkRead holds every read, serializable ones included, to what any read promises: a
  // value some client wrote to that key, at a modRevision no later than the revision served,
  // the same value whenever (key, modRevision) is read on any member (a revision names one
  // write: two values at one revision mean replicas diverged), and, on one member, a served
  // revision that never goes back (within one incarnation: an unsynced apply may be lost).
  private checkRead(member: SimMember, node: RaftNode, key: string, response: RangeResponse, serializable: boolean): KeyValue | undefined {
    const kind = serializable ? 'serializable read' : 'read';
    const found = response.kvs[0];
    if (found !== undefined) {
      const value = decoder.decode(found.value);
      if (!this.written.has(`${key}=${value}`)) this.fail(`${member.name}: a ${kind} of ${key} returned ${value}, which no client wrote to it`);
      if (found.modRevision > response.revision) this.fail(`${member.name}: a ${kind} of ${key} returned modRevision ${found.modRevision} past the revision ${response.revision} it served`);
      const at = `${key}@${found.modRevision}`;
      const earlier = this.readAtRevision.get(at);
      if (earlier === undefined) this.readAtRevision.set(at, value);
      else if (earlier !== value) this.fail(`${member.name}: a ${kind} of ${key} at modRevision ${found.modRevision} returned ${value}; an earlier read there returned ${earlier}`);
    }
    if (serializable) {
      const last = this.servedRevision.get(node) ?? 0;
      if (response.revision < last) this.fail(`${member.name}: a serializable read served revision ${response.revision} after one served ${last}`);
      this.servedRevision.set(node, response.revision);
    }
    return found;
  }

  // callSurvivingCrash waits for a call to a member, or for that member's crash; it answers 'ok', an error code, or 'lost'.
  private async callSurvivingCrash(member: SimMember, node: RaftNode, what: string, promise: Promise<unknown>): Promise<string> {
    let resolveCrash: () => void = () => undefined;
    const crashed = new Promise<string>((resolve) => (resolveCrash = () => resolve('lost')));
    const pending: PendingCall = { member, node, what, sinceMs: this.clock.now(), settled: false, onCrash: resolveCrash };
    member.outstanding.add(pending);
    const outcome = await Promise.race([promise.then(() => 'ok', (error: unknown) => codeOf(error)), crashed]);
    pending.settled = true;
    member.outstanding.delete(pending);
    return outcome;
  }

  // call waits for one client call; a crash of its member answers it as unknown (the
  // connection is lost), and so does any error (a timed-out write may still be applied).
  private async call(member: SimMember, node: RaftNode, what: string, promise: Promise<KvResponse>, op: PendingOperation | undefined, onOk: (response: KvResponse) => void): Promise<void> {
    let resolveCrash: () => void = () => undefined;
    const crashed = new Promise<'crashed'>((resolve) => (resolveCrash = () => resolve('crashed')));
    const pending: PendingCall = { member, node, what, sinceMs: this.clock.now(), settled: false, onCrash: resolveCrash };
    member.outstanding.add(pending);
    const outcome = await Promise.race([
      promise.then(
        (response) => ({ response }),
        (error: unknown) => ({ error }),
      ),
      crashed,
    ]);
    pending.settled = true;
    member.outstanding.delete(pending);
    this.note(`${what}: ${outcome === 'crashed' ? 'lost with its member' : 'response' in outcome ? describeResponse(outcome.response) : codeOf(outcome.error)}`);
    if (outcome === 'crashed') {
      if (op !== undefined) this.recorder.unknown(op);
      this.stats.unknown += 1;
      return;
    }
    if ('response' in outcome) {
      this.stats.acknowledged += 1;
      if (op !== undefined) onOk(outcome.response);
      return;
    }
    if (!isStrataError(outcome.error)) this.fail(`${what}: not a StrataError: ${String(outcome.error)}`);
    if (op !== undefined) this.recorder.unknown(op);
    this.stats.unknown += 1;
  }

  // ---------------------------------------------------------------- sampling and checks

  private async sampler(): Promise<void> {
    for (let step = 0; step < 1_000_000 && this.failure === undefined; step += 1) {
      await this.sleep(HEARTBEAT_MS / 2);
      if (!this.clientsOn && !this.faultsOn && step % 4 !== 0) continue;
      for (const member of this.up()) {
        const node = member.node as RaftNode;
        const status = node.status();
        if (status.role === 'leader') {
          const other = this.leadersByTerm.get(status.term);
          if (other !== undefined && other !== member.name) this.fail(`election safety: ${other} and ${member.name} both led term ${status.term}`);
          if (other === undefined) this.note(`${member.name} leads term ${status.term}`);
          this.leadersByTerm.set(status.term, member.name);
        }
        // Within one incarnation the term, the applied index and the revision never go back.
        // Across a crash the term may: a term learned and never acted on need not be durable
        // (only what a vote or an acknowledgement promised is persisted before it leaves).
        const seen = member.seen;
        if (seen.node === node && status.term < seen.term) this.fail(`${member.name}: term went back from ${seen.term} to ${status.term}`);
        if (seen.node === node && status.appliedIndex < seen.appliedIndex) this.fail(`${member.name}: applied index went back from ${seen.appliedIndex} to ${status.appliedIndex}`);
        if (seen.node === node && status.revision < seen.revision) this.fail(`${member.name}: revision went back from ${seen.revision} to ${status.revision}`);
        if (status.appliedIndex > status.commitIndex) this.fail(`${member.name}: applied ${status.appliedIndex} past commit ${status.commitIndex}`);
        member.seen = { node, term: status.term, appliedIndex: status.appliedIndex, revision: status.revision };
        checkBounds(member.name, node.queues(), (message) => this.fail(message));
      }
    }
  }

  private async converge(withinMs: number): Promise<void> {
    await this.runUntil(
      'every member of the configuration is up and applied everything the leader committed',
      () => {
        if (this.changingMembers) return false;
        const up = this.up();
        const leader = up.find((member) => member.node?.status().role === 'leader');
        if (leader?.node === undefined) return false;
        const configured = new Set(leader.node.members().map((record) => record.id));
        // Every member published its name (a member that joined late retries until it did),
        // so that the member tables compared after healing are final.
        if (leader.node.members().some((record) => record.name === '')) return false;
        // No configuration stays joint once the replacement that entered it is done.
        if (leader.node.configuration().votersOutgoing.length > 0) return false;
        const commit = leader.node.status().commitIndex;
        for (const member of this.members) {
          if (member.retired || !configured.has(memberIdFor([member.peerUrl], 'sim'))) continue;
          const status = member.node?.status();
          if (status === undefined || !up.includes(member)) return false;
          if (status.appliedIndex !== commit || status.commitIndex !== commit) return false;
        }
        return true;
      },
      withinMs,
    );
  }

  private checkPromisesSettled(): void {
    for (const member of this.members) {
      for (const call of member.outstanding) {
        if (!call.settled && member.node === call.node) {
          this.fail(`every promise settles: "${call.what}", made at ${call.sinceMs.toFixed(1)} ms, was never settled by its live member (now ${this.clock.now().toFixed(1)} ms)`);
        }
      }
    }
  }

  // finalReads reads every key once more, linearizably, once the cluster has converged, and
  // puts the reads in the history: an acknowledged write that every replica lost then shows
  // as a read of an older value, which replica equality alone cannot see.
  private async finalReads(): Promise<void> {
    for (const key of KEYS) {
      const up = this.up();
      const member = up[this.random.intBelow(up.length)];
      if (member?.node === undefined) this.fail('final reads: no member is up');
      const node = member.node;
      const op = this.recorder.invoke(FINAL_READ_CLIENT, { kind: 'read', key });
      let response: RangeResponse;
      try {
        response = (await this.settle(node.kv({ type: 'range', key: encoder.encode(key) }, { timeoutMs: 10 * ELECTION_MS }), `the final read of ${key} on ${member.name}`)) as RangeResponse;
      } catch (error) {
        this.fail(`the final read of ${key} on ${member.name} failed after healing: ${codeOf(error)}`);
      }
      const found = this.checkRead(member, node, key, response, false);
      this.recorder.ok(op, { value: found === undefined ? null : decoder.decode(found.value) });
    }
  }

  private async checkReplicas(): Promise<void> {
    const contents: { name: string; revision: number; pairs: string }[] = [];
    for (const member of this.up()) {
      const node = member.node as RaftNode;
      const response = await this.settle(
        node.kv({ type: 'range', key: new Uint8Array([0]), rangeEnd: new Uint8Array([0xff]), serializable: true }),
        `${member.name} lists its keys`,
      );
      const range = response as RangeResponse;
      const pairs = range.kvs.map((kv) => `${decoder.decode(kv.key)}=${decoder.decode(kv.value)}@${kv.modRevision}/v${kv.version}`).join(' ');
      contents.push({ name: member.name, revision: node.revision(), pairs });
    }
    const [first, ...rest] = contents;
    for (const other of rest) {
      if (first === undefined) break;
      if (other.revision !== first.revision || other.pairs !== first.pairs) {
        this.fail(`replicas differ after healing:\n  ${first.name} rev ${first.revision}: ${first.pairs}\n  ${other.name} rev ${other.revision}: ${other.pairs}`);
      }
    }
    // The member tables agree too: a member that installed a snapshot has the snapshot's
    // table (names, peer and client URLs, learner flags), not the one it had before.
    const tables = this.up().map((member) => ({
      name: member.name,
      table: (member.node as RaftNode)
        .members()
        .map((record) => `${record.id.toString(16)}:${record.name}:${record.peerUrls.join(',')}:${record.clientUrls.join(',')}:${record.isLearner ? 'learner' : 'voter'}`)
        .join(' '),
    }));
    const [firstTable, ...otherTables] = tables;
    for (const other of otherTables) {
      if (firstTable !== undefined && other.table !== firstTable.table) {
        this.fail(`member tables differ after healing:\n  ${firstTable.name}: ${firstTable.table}\n  ${other.name}: ${other.table}`);
      }
    }
  }

  // checkLogs is Raft's Log Matching and State Machine Safety on the durable logs after
  // healing: every live member of the configuration holds, up to the leader's commit index,
  // the same entries (term, type and bytes) as every other, from the first index all still have.
  private checkLogs(): void {
    const logs: { name: string; log: LogStore }[] = [];
    for (const member of this.up()) {
      if (member.retired || member.log === undefined) continue;
      logs.push({ name: member.name, log: member.log });
    }
    const commit = Math.min(...this.up().map((member) => member.node?.status().commitIndex ?? 0));
    const first = Math.max(1, ...logs.map(({ log }) => log.firstIndex()));
    if (logs.length < 2 || commit < first) return;
    for (const { name, log } of logs) if (log.lastIndex() < commit) this.fail(`log matching: ${name}'s durable log ends at ${log.lastIndex()}, before the commit index ${commit}`);
    const [reference, ...others] = logs.map(({ name, log }) => ({ name, entries: log.entries(first, commit + 1, Number.POSITIVE_INFINITY) }));
    if (reference === undefined) return;
    for (const other of others) {
      for (let offset = 0; offset < reference.entries.length; offset += 1) {
        const a = reference.entries[offset] as Entry;
        const b = other.entries[offset];
        if (b === undefined || a.index !== b.index || a.term !== b.term || a.type !== b.type || Buffer.compare(a.data, b.data) !== 0) {
          this.fail(`log matching: at index ${a.index} ${reference.name} holds term ${a.term} and ${other.name} ${b === undefined ? 'nothing' : `index ${b.index} term ${b.term}${b.term === a.term ? ' with other bytes' : ''}`}`);
        }
      }
    }
  }

  private checkHistory(): void {
    const verdict = checkLinearizability(this.recorder.history(), { stepsMax: this.options.checkStepsMax ?? 2_000_000 });
    if (verdict.result === 'not-linearizable') this.fail(['the client history is not linearizable:', ...formatVerdict(verdict)].join('\n'));
    this.stats.linearizability = verdict.result === 'unknown' ? 'unknown' : 'linearizable';
  }

  // ---------------------------------------------------------------- time

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimeout(resolve, ms));
  }

  private async runFor(ms: number): Promise<void> {
    const endMs = this.clock.now() + ms;
    for (let tasks = 0; tasks < 50_000_000; tasks += 1) {
      if (this.failure !== undefined) throw new SimFailure(this.failure);
      const due = this.clock.nextDueMs();
      if (due === undefined || due > endMs) break;
      this.clock.runNext();
      await settleMacrotasks(REAL_TURNS_PER_TASK);
    }
    await this.clock.run({ untilMs: endMs, settle: () => settleMacrotasks(REAL_TURNS_PER_TASK) });
  }

  private async runUntil(what: string, condition: () => boolean, withinMs: number): Promise<void> {
    const endMs = this.clock.now() + withinMs;
    for (let tasks = 0; tasks < 50_000_000; tasks += 1) {
      if (this.failure !== undefined) throw new SimFailure(this.failure);
      await settleMacrotasks(REAL_TURNS_PER_TASK);
      if (condition()) return;
      const due = this.clock.nextDueMs();
      if (due === undefined || due > endMs) break;
      this.clock.runNext();
    }
    this.fail(`liveness: not ${what} within ${withinMs} virtual ms of healing\n${this.describeMembers()}`);
  }

  private describeMembers(): string {
    return this.members
      .map((member) => {
        const status = member.node?.status();
        const state = member.retired ? 'retired' : member.clock?.isAlive === true ? 'up' : 'down';
        if (status === undefined) return `  ${member.name}: ${state}, not running`;
        const queues = member.node?.queues();
        return `  ${member.name}: ${state} ${status.role} term ${status.term} leader ${this.nameOf(status.leaderId)} commit ${status.commitIndex} applied ${status.appliedIndex} last ${status.lastIndex}${status.isLearner ? ' learner' : ''}${status.removed ? ' removed' : ''} members ${(member.node?.members() ?? []).map((record) => record.name || record.id.toString(16)).join(',')} queues ${JSON.stringify(queues)}`;
      })
      .join('\n');
  }

  private async settle<T>(promise: Promise<T>, what: string): Promise<T> {
    let done = false;
    const watched = promise.finally(() => (done = true));
    watched.catch(() => undefined);
    await this.runUntil(what, () => done, 5_000);
    return watched;
  }
}

function checkBounds(name: string, queues: NodeQueues, fail: (message: string) => never): void {
  const { proposals } = queues;
  if (proposals.queued > PROPOSALS_QUEUED_MAX) fail(`${name}: ${proposals.queued} queued proposals, over ${PROPOSALS_QUEUED_MAX}`);
  if (proposals.held > PROPOSALS_HELD_MAX) fail(`${name}: ${proposals.held} held proposals, over ${PROPOSALS_HELD_MAX}`);
  if (proposals.forwarding > PROPOSALS_FORWARDING_MAX) fail(`${name}: ${proposals.forwarding} forwarding, over ${PROPOSALS_FORWARDING_MAX}`);
  if (proposals['in-flight'] > PROPOSALS_IN_FLIGHT_MAX) fail(`${name}: ${proposals['in-flight']} in flight, over ${PROPOSALS_IN_FLIGHT_MAX}`);
  if (queues.reads > READS_PENDING_MAX) fail(`${name}: ${queues.reads} reads, over ${READS_PENDING_MAX}`);
}

function newLevel(): MemoryLevel<Uint8Array, Uint8Array> {
  return new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
}

// copyLevel copies what a member's LevelDB holds into a new one for its next incarnation, so
// that writes the crashed incarnation still had in flight cannot land after the restart.
async function copyLevel(level: MemoryLevel<Uint8Array, Uint8Array>): Promise<MemoryLevel<Uint8Array, Uint8Array>> {
  const copy = newLevel();
  const entries = await level.iterator().all();
  if (entries.length > 0) await copy.batch(entries.map(([key, value]) => ({ type: 'put' as const, key, value })));
  return copy;
}

function describeResponse(response: KvResponse): string {
  switch (response.type) {
    case 'put':
      return `ok rev ${response.revision}`;
    case 'range':
      return `ok ${response.kvs.map((kv) => `${decoder.decode(kv.value)}@${kv.modRevision}`).join(',') || '∅'} rev ${response.revision}`;
    case 'deleteRange':
      return `ok deleted ${response.deleted} rev ${response.revision}`;
    case 'txn':
      return `ok ${response.succeeded ? 'succeeded' : 'failed'} rev ${response.revision}`;
    case 'mirrorBegin':
    case 'mirrorApply':
    case 'mirrorEnd':
    case 'mirrorReplay':
      return `ok ${response.type} rev ${response.revision}`;
  }
}

function codeOf(error: unknown): string {
  return isStrataError(error) ? error.code : String(error);
}

/** messageSummary is a short text for a Raft message in a trace. */
export function messageSummary(message: Message): string {
  return `${message.type} ${message.from}->${message.to} t${message.term}`;
}


// The parameters of one simulated run, all drawn from the run's seed. Nothing here comes
// from the command line or the environment: a seed alone names a run, so the replay
// command (`npm run sim -- --seeds 1 --from <seed> --trace`) reproduces exactly what a
// test saw.

import { RAFT_CONFIG_DEFAULTS } from '../../../src/raft/index.ts';
import type { SeededRandom } from '../../../src/util/index.ts';
import type { DiskKind } from './sim-disk.ts';

/** NODE_IDS_MAX bounds the universe of node ids a run may use (initial voters plus joiners). */
export const NODE_IDS_MAX = 8;

/** RaftTuning is the part of the Raft configuration a run varies. */
export interface RaftTuning {
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly readOnlyOption: 'safe' | 'leaseBased';
  readonly maxInflightMessages: number;
  readonly maxInflightBytes: number;
  readonly maxEntriesBytesPerMessage: number;
  readonly maxUncommittedBytes: number;
  readonly maxCommittedBytesPerReady: number;
}

/** NetworkFaults are the per-message fault rates of the simulated network, in per mille. */
export interface NetworkFaults {
  readonly lossPerMille: number;
  readonly duplicatePerMille: number;
  /** Messages that take up to LONG_DELAY_FACTOR times the usual delay: heavy reordering. */
  readonly longDelayPerMille: number;
  /** The usual one-way delay is 1..delayStepsMax steps. */
  readonly delayStepsMax: number;
  /**
   * Whether each directed link delivers in order (as one TCP stream does); duplicates and
   * long delays still arrive late. Off, delays reorder freely.
   */
  readonly inOrder: boolean;
  /**
   * Messages held back heldDelayStepsMin..heldDelayStepsMax steps, longer than an election
   * timeout, then delivered (a stalled connection that recovers): a vote or append response
   * reaches a node that has moved on to a later term or a later election.
   */
  readonly heldPerMille: number;
  /** Messages delivered once more after a held delay (a late retransmission of an old copy). */
  readonly lateDuplicatePerMille: number;
  /** The shortest held delay: one election timeout of the run, in steps. */
  readonly heldDelayStepsMin: number;
  /** The longest held delay: HELD_DELAY_ELECTION_TIMEOUTS_MAX randomized election timeouts. */
  readonly heldDelayStepsMax: number;
}

/** ActionRates are the per-step chances (per mille) of each injected action in the fault phase. */
export interface ActionRates {
  readonly proposePerMille: number;
  readonly confChangePerMille: number;
  readonly transferPerMille: number;
  readonly crashPerMille: number;
  readonly partitionPerMille: number;
  readonly snapshotPerMille: number;
  readonly readIndexPerMille: number;
  readonly campaignPerMille: number;
  /**
   * Faults aimed at the worst moments: crash a node whose vote or new entries are not yet
   * durable, or cut a leader off right after it appended entries, so that divergent logs
   * (Figure 8) and lost votes arise far more often than random faults make them.
   */
  readonly targetedFaultPerMille: number;
  /**
   * Late duplicates aimed at the worst moment: the network delivers again its copies of
   * old vote and append responses to a node that is campaigning (any old response when no
   * node is), so that responses from an earlier term or election reach a later one.
   */
  readonly replayPerMille: number;
}

/**
 * BootstrapMode is how the initial voters learn their first configuration:
 * 'config' passes RaftConfig.voters (the configuration lives in no log entry and no
 * snapshot); 'snapshot' writes it to the disk as a snapshot at index 1 before the first
 * start, so a joiner always begins from a snapshot that carries the configuration.
 */
export type BootstrapMode = 'config' | 'snapshot';

/** SimOptions is everything that shapes one run. */
export interface SimOptions {
  readonly seed: number;
  readonly voterCount: 3 | 5;
  readonly bootstrap: BootstrapMode;
  /** Ids 1..nodeIdCount exist; ids above voterCount start empty and may join. */
  readonly nodeIdCount: number;
  readonly raft: RaftTuning;
  readonly network: NetworkFaults;
  readonly actions: ActionRates;
  /** The chance (per mille) that a live node ticks in a step: its clock drifts randomly. */
  readonly tickPerMille: number;
  /** Persisting a Ready completes 0..persistDelayStepsMax steps after it is taken. */
  readonly persistDelayStepsMax: number;
  /** What nodes persist into: the in-memory reference log or the real segment log on a faulty disk. */
  readonly disk: DiskKind;
  /** Steps of the fault phase (safety under faults). */
  readonly faultSteps: number;
  /** The liveness bound after healing, in election timeouts. */
  readonly healElectionTimeouts: number;
}

/** HEAL_ELECTION_TIMEOUTS_MAX is the liveness bound: a healed cluster converges within it. */
export const HEAL_ELECTION_TIMEOUTS_MAX = 50;

/** FAULT_STEPS is the length of the fault phase of every run (tuned for ~2,000 seeds in CI). */
export const FAULT_STEPS = 2_000;

/**
 * HELD_DELAY_ELECTION_TIMEOUTS_MAX bounds a held message's delay, in the longest randomized
 * election timeouts (2 * electionTicks ticks): long enough that an election, or several,
 * happens while it waits.
 */
export const HELD_DELAY_ELECTION_TIMEOUTS_MAX = 3;

/** HELD_PER_MILLE_MAX bounds the per-message rates of held messages and of late duplicates. */
export const HELD_PER_MILLE_MAX = 20;

/** REPLAY_PER_MILLE_MAX bounds the per-step rate of replayed old responses. */
export const REPLAY_PER_MILLE_MAX = 60;

/**
 * electionTimeoutSteps is how many steps `ticks` ticks take on average, for a node that
 * ticks in tickPerMille of the steps.
 */
export function electionTimeoutSteps(ticks: number, tickPerMille: number): number {
  return Math.ceil((ticks * 1000) / tickPerMille);
}

/** deriveSimOptions draws a run's parameters from its seeded random source. */
export function deriveSimOptions(seed: number, random: SeededRandom): SimOptions {
  const voterCount = random.chance(1, 2) ? 3 : 5;
  const bootstrap: BootstrapMode = random.chance(1, 3) ? 'config' : 'snapshot';
  const nodeIdCount = Math.min(NODE_IDS_MAX, voterCount + 1 + random.intBelow(3));
  // Most runs use the defaults for flow control; a fraction squeezes each limit so probing,
  // paused progress and one-entry messages are exercised too.
  const squeeze = (): boolean => random.chance(1, 4);
  const checkQuorum = random.chance(1, 2);
  const raft: RaftTuning = {
    electionTicks: 8 + random.intBelow(9),
    heartbeatTicks: 1 + random.intBelow(3),
    preVote: random.chance(1, 2),
    checkQuorum,
    // Lease-based reads rely on the leader stepping down without a quorum (check-quorum).
    readOnlyOption: checkQuorum && random.chance(1, 2) ? 'leaseBased' : 'safe',
    maxInflightMessages: squeeze() ? 1 + random.intBelow(4) : RAFT_CONFIG_DEFAULTS.maxInflightMessages,
    maxInflightBytes: squeeze() ? 64 + random.intBelow(512) : RAFT_CONFIG_DEFAULTS.maxInflightBytes,
    maxEntriesBytesPerMessage: squeeze() ? 1 + random.intBelow(200) : RAFT_CONFIG_DEFAULTS.maxEntriesBytesPerMessage,
    maxUncommittedBytes: squeeze() ? 256 + random.intBelow(2048) : RAFT_CONFIG_DEFAULTS.maxUncommittedBytes,
    maxCommittedBytesPerReady: squeeze() ? 1 + random.intBelow(300) : RAFT_CONFIG_DEFAULTS.maxCommittedBytesPerReady,
  };
  const lossPerMille = random.chance(1, 4) ? 0 : random.intBelow(200);
  const duplicatePerMille = random.chance(1, 3) ? 0 : random.intBelow(100);
  const longDelayPerMille = random.chance(1, 3) ? 0 : random.intBelow(50);
  const delayStepsMax = 1 + random.intBelow(8);
  const inOrder = random.chance(1, 4);
  const actions: Omit<ActionRates, 'replayPerMille'> = {
    proposePerMille: 40 + random.intBelow(260),
    confChangePerMille: random.chance(1, 5) ? 0 : random.intBelow(25),
    transferPerMille: random.chance(1, 3) ? 0 : random.intBelow(12),
    crashPerMille: random.chance(1, 4) ? 0 : random.intBelow(10),
    partitionPerMille: random.chance(1, 4) ? 0 : random.intBelow(10),
    snapshotPerMille: random.chance(1, 4) ? 0 : random.intBelow(40),
    readIndexPerMille: random.chance(1, 3) ? 0 : random.intBelow(60),
    campaignPerMille: random.chance(1, 2) ? 0 : random.intBelow(4),
    targetedFaultPerMille: random.chance(1, 3) ? 0 : random.intBelow(30),
  };
  const diskKind: DiskKind = random.chance(1, 2) ? 'faulty-disk' : 'memory';
  const tickPerMille = 200 + random.intBelow(150);
  const persistDelayStepsMax = random.intBelow(7);
  // What follows is drawn last, so every parameter above is what the seed drew before late
  // messages and one-entry appends existed.
  // A run in five sends one entry per append, as with large values: a follower then learns
  // the leader's commit index from appends that end far below it, the case §5.3's commit
  // rule (min(leaderCommit, index of last new entry)) is about.
  const oneEntryPerAppend = random.chance(1, 5);
  const replayPerMille = random.chance(1, 3) ? 0 : 1 + random.intBelow(REPLAY_PER_MILLE_MAX);
  const network: NetworkFaults = {
    lossPerMille,
    duplicatePerMille,
    longDelayPerMille,
    delayStepsMax,
    inOrder,
    heldPerMille: random.chance(1, 3) ? 0 : 1 + random.intBelow(HELD_PER_MILLE_MAX),
    lateDuplicatePerMille: random.chance(1, 3) ? 0 : 1 + random.intBelow(HELD_PER_MILLE_MAX),
    heldDelayStepsMin: electionTimeoutSteps(raft.electionTicks, tickPerMille),
    heldDelayStepsMax: electionTimeoutSteps(2 * raft.electionTicks * HELD_DELAY_ELECTION_TIMEOUTS_MAX, tickPerMille),
  };
  return {
    seed,
    voterCount,
    bootstrap,
    nodeIdCount,
    raft: oneEntryPerAppend ? { ...raft, maxEntriesBytesPerMessage: 1 } : raft,
    network,
    actions: { ...actions, replayPerMille },
    tickPerMille,
    persistDelayStepsMax,
    disk: diskKind,
    faultSteps: FAULT_STEPS,
    healElectionTimeouts: HEAL_ELECTION_TIMEOUTS_MAX,
  };
}

/** describeSimOptions is a one-line summary of a run's parameters for its trace header. */
export function describeSimOptions(options: SimOptions): string {
  const { raft, network, actions } = options;
  return [
    `seed=${options.seed} voters=${options.voterCount} ids=${options.nodeIdCount} bootstrap=${options.bootstrap}`,
    `election=${raft.electionTicks} heartbeat=${raft.heartbeatTicks} preVote=${raft.preVote} checkQuorum=${raft.checkQuorum} readOnly=${raft.readOnlyOption}`,
    `inflight=${raft.maxInflightMessages}/${raft.maxInflightBytes}B msgBytes=${raft.maxEntriesBytesPerMessage} uncommitted=${raft.maxUncommittedBytes} readyBytes=${raft.maxCommittedBytesPerReady}`,
    `loss=${network.lossPerMille}‰ dup=${network.duplicatePerMille}‰ longDelay=${network.longDelayPerMille}‰ delay<=${network.delayStepsMax}${network.inOrder ? ' inOrder' : ''} held=${network.heldPerMille}‰ lateDup=${network.lateDuplicatePerMille}‰ heldDelay=${network.heldDelayStepsMin}..${network.heldDelayStepsMax}`,
    `propose=${actions.proposePerMille}‰ conf=${actions.confChangePerMille}‰ transfer=${actions.transferPerMille}‰ crash=${actions.crashPerMille}‰ partition=${actions.partitionPerMille}‰ snapshot=${actions.snapshotPerMille}‰ read=${actions.readIndexPerMille}‰ campaign=${actions.campaignPerMille}‰ targeted=${actions.targetedFaultPerMille}‰ replay=${actions.replayPerMille}‰`,
    `tick=${options.tickPerMille}‰ persistDelay<=${options.persistDelayStepsMax} faultSteps=${options.faultSteps} disk=${options.disk}`,
  ].join('\n  ');
}

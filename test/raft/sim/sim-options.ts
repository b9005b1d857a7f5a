// The parameters of one simulated run, all drawn from the run's seed. Nothing here comes
// from the command line or the environment: a seed alone names a run, so the replay
// command (`npm run sim -- --seeds 1 --from <seed> --trace`) reproduces exactly what a
// test saw.

import { RAFT_CONFIG_DEFAULTS } from '../../../src/raft/index.ts';
import type { SeededRandom } from '../../../src/util/index.ts';

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
}

/**
 * BootstrapMode is how the initial voters learn their first configuration:
 * 'config' passes RaftConfig.voters (the configuration lives in no log entry and no
 * snapshot); 'snapshot' writes it to the disk as a snapshot at index 1 before the first
 * start, so a joiner always begins from a snapshot that carries the configuration.
 */
export type BootstrapMode = 'config' | 'snapshot';

/**
 * SimVariant switches on behaviour that a plain seed does not exercise because it trips a
 * known core bug; the replay command of a failure under a variant names its flag.
 */
export interface SimVariant {
  /**
   * Let fresh nodes join after a 'config' bootstrap. Off by default: the core installs
   * RaftConfig.voters without writing them to the log, so a joiner that catches up from the
   * log (not a snapshot) replays the conf changes onto an empty configuration and reaches
   * a different one (see the simulator report; e.g. seed 4 with this flag).
   */
  readonly joinAfterConfigBootstrap: boolean;
  /**
   * Report only a quarter of dropped messages, and only to their sender (reportUnreachable),
   * as a transport that misses some failures would. Off by default, where both ends of a
   * link notice every drop (a broken stream is seen from both sides). The core needs the
   * reports: a leader whose appends to a follower in 'replicate' state, or the answers to
   * them, were lost with a full inflight window sends that follower nothing but heartbeats
   * from then on (see the simulator report; e.g. seeds 11 and 38 with this flag).
   */
  readonly silentDrops: boolean;
}

/** DEFAULT_SIM_VARIANT is the variant `npm test` and a plain `npm run sim` use. */
export const DEFAULT_SIM_VARIANT: SimVariant = { joinAfterConfigBootstrap: false, silentDrops: false };

/** SIM_VARIANT_FLAGS maps each variant switch to its CLI flag. */
export const SIM_VARIANT_FLAGS: Readonly<Record<keyof SimVariant, string>> = {
  joinAfterConfigBootstrap: '--join-after-config-bootstrap',
  silentDrops: '--silent-drops',
};

/** variantFlags renders the CLI flags that select `variant`. */
export function variantFlags(variant: SimVariant): string[] {
  return (Object.keys(SIM_VARIANT_FLAGS) as Array<keyof SimVariant>).filter((key) => variant[key]).map((key) => SIM_VARIANT_FLAGS[key]);
}

/** SimOptions is everything that shapes one run. */
export interface SimOptions {
  readonly seed: number;
  readonly variant: SimVariant;
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
  /** Steps of the fault phase (safety under faults). */
  readonly faultSteps: number;
  /** The liveness bound after healing, in election timeouts. */
  readonly healElectionTimeouts: number;
}

/** HEAL_ELECTION_TIMEOUTS_MAX is the liveness bound: a healed cluster converges within it. */
export const HEAL_ELECTION_TIMEOUTS_MAX = 50;

/** FAULT_STEPS is the length of the fault phase of every run (tuned for ~2,000 seeds in CI). */
export const FAULT_STEPS = 1_200;

/** deriveSimOptions draws a run's parameters from its seeded random source. */
export function deriveSimOptions(seed: number, random: SeededRandom, variant: SimVariant = DEFAULT_SIM_VARIANT): SimOptions {
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
  const network: NetworkFaults = {
    lossPerMille: random.chance(1, 4) ? 0 : random.intBelow(200),
    duplicatePerMille: random.chance(1, 3) ? 0 : random.intBelow(100),
    longDelayPerMille: random.chance(1, 3) ? 0 : random.intBelow(50),
    delayStepsMax: 1 + random.intBelow(8),
    inOrder: random.chance(1, 4),
  };
  const actions: ActionRates = {
    proposePerMille: 40 + random.intBelow(260),
    confChangePerMille: random.chance(1, 5) ? 0 : random.intBelow(25),
    transferPerMille: random.chance(1, 3) ? 0 : random.intBelow(12),
    crashPerMille: random.chance(1, 4) ? 0 : random.intBelow(10),
    partitionPerMille: random.chance(1, 4) ? 0 : random.intBelow(10),
    snapshotPerMille: random.chance(1, 4) ? 0 : random.intBelow(40),
    readIndexPerMille: random.chance(1, 3) ? 0 : random.intBelow(60),
    campaignPerMille: random.chance(1, 2) ? 0 : random.intBelow(4),
  };
  return {
    seed,
    variant,
    voterCount,
    bootstrap,
    nodeIdCount,
    raft,
    network,
    actions,
    tickPerMille: 200 + random.intBelow(150),
    persistDelayStepsMax: random.intBelow(7),
    faultSteps: FAULT_STEPS,
    healElectionTimeouts: HEAL_ELECTION_TIMEOUTS_MAX,
  };
}

/** describeSimOptions is a one-line summary of a run's parameters for its trace header. */
export function describeSimOptions(options: SimOptions): string {
  const { raft, network, actions } = options;
  return [
    `seed=${options.seed} voters=${options.voterCount} ids=${options.nodeIdCount} bootstrap=${options.bootstrap} ${variantFlags(options.variant).join(' ')}`.trimEnd(),
    `election=${raft.electionTicks} heartbeat=${raft.heartbeatTicks} preVote=${raft.preVote} checkQuorum=${raft.checkQuorum} readOnly=${raft.readOnlyOption}`,
    `inflight=${raft.maxInflightMessages}/${raft.maxInflightBytes}B msgBytes=${raft.maxEntriesBytesPerMessage} uncommitted=${raft.maxUncommittedBytes} readyBytes=${raft.maxCommittedBytesPerReady}`,
    `loss=${network.lossPerMille}‰ dup=${network.duplicatePerMille}‰ longDelay=${network.longDelayPerMille}‰ delay<=${network.delayStepsMax}${network.inOrder ? ' inOrder' : ''}`,
    `propose=${actions.proposePerMille}‰ conf=${actions.confChangePerMille}‰ transfer=${actions.transferPerMille}‰ crash=${actions.crashPerMille}‰ partition=${actions.partitionPerMille}‰ snapshot=${actions.snapshotPerMille}‰ read=${actions.readIndexPerMille}‰ campaign=${actions.campaignPerMille}‰`,
    `tick=${options.tickPerMille}‰ persistDelay<=${options.persistDelayStepsMax} faultSteps=${options.faultSteps}`,
  ].join('\n  ');
}

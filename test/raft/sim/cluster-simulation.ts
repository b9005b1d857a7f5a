// One seeded run of a simulated cluster: a fault phase (safety under loss, duplication,
// reordering, messages held back past an election timeout, late copies of old responses,
// partitions, crashes, proposals, configuration changes, leader transfers, snapshots and
// reads), then a healed phase (liveness: a leader among the voters, and a fresh proposal
// applied by every live voter, within a bounded number of ticks). The
// invariants are checked after every step. Everything is drawn from one SeededRandom, so
// a seed names a run exactly.

import type { ConfChange, ConfChangeSingle, ConfState, Entry, Index, Message, NodeId, ReadState, SnapshotMessage, Term } from '../../../src/raft/index.ts';
import { EntryType } from '../../../src/raft/index.ts';
import { ErrorCode, SeededRandom, isStrataError } from '../../../src/util/index.ts';
import { InvariantChecker, SimulationFailure, describeConfState, failInvariant } from './invariant-checker.ts';
import { SimNetwork } from './sim-network.ts';
import type { DropReason, LateKind } from './sim-network.ts';
import { SimNode } from './sim-node.ts';
import type { SimNodeHost } from './sim-node.ts';
import { deriveSimOptions, describeSimOptions } from './sim-options.ts';
import type { RaftTuning, SimOptions } from './sim-options.ts';
import { TraceRing } from './trace-ring.ts';

/** PROPOSAL_BATCH_MAX bounds the entries one injected proposal carries. */
export const PROPOSAL_BATCH_MAX = 4;
/** PROPOSAL_PADDING_BYTES_MAX bounds the random padding of a proposal's data. */
export const PROPOSAL_PADDING_BYTES_MAX = 48;
/** CRASH_DOWN_STEPS_MAX bounds how long a crashed node stays down in the fault phase. */
export const CRASH_DOWN_STEPS_MAX = 300;
/** REMOVED_NODE_LINGER_STEPS_MAX bounds how long a removed node keeps running. */
export const REMOVED_NODE_LINGER_STEPS_MAX = 200;
/** SNAPSHOT_TAIL_KEEP_MAX bounds the log entries kept below a snapshot when compacting. */
export const SNAPSHOT_TAIL_KEEP_MAX = 12;
/** LOG_PAIR_CHECKS_PER_STEP is how many pairs of logs are sampled for log matching each step. */
export const LOG_PAIR_CHECKS_PER_STEP = 2;
/**
 * PROPOSAL_BACKLOG_MAX is the driver's back-pressure: no new proposals while the leader holds
 * this many uncommitted entries. Without it a run with one-entry messages, one inflight
 * append and one-entry Readies piles up more than the liveness bound can drain.
 */
export const PROPOSAL_BACKLOG_MAX = 64;
/** PENDING_READS_MAX bounds the ReadIndex requests awaiting an answer; more are not issued. */
export const PENDING_READS_MAX = 1_024;
/** HEAL_LEAVE_JOINT_EVERY_STEPS paces proposals that leave an explicit joint configuration after healing. */
export const HEAL_LEAVE_JOINT_EVERY_STEPS = 25;

const MARKER_PREFIX = 'heal-marker:';
const PROPOSAL_PREFIX = 'p:';
const textEncoder = new TextEncoder();

/** SimStats count what a run exercised, for the coverage summary. */
export interface SimStats {
  steps: number;
  healSteps: number;
  leaderChanges: number;
  confChangesApplied: number;
  jointConfigs: number;
  snapshotsTaken: number;
  snapshotsSent: number;
  transfersRequested: number;
  transfersCompleted: number;
  crashes: number;
  restarts: number;
  partitions: number;
  proposalsAccepted: number;
  proposalsRefused: number;
  entriesApplied: number;
  readStatesChecked: number;
  messagesSent: number;
  messagesDropped: number;
  messagesDuplicated: number;
  messagesLate: number;
}

/** SimFailureReport is what a failed run reports: the invariant, the detail and the recent trace. */
export interface SimFailureReport {
  readonly invariant: string;
  readonly detail: string;
  readonly traceTail: readonly string[];
  readonly options: string;
}

/** SimResult is the outcome of one seed. */
export interface SimResult {
  readonly seed: number;
  readonly stats: SimStats;
  readonly failure: SimFailureReport | undefined;
}

/** replayCommand is the one command that replays a seed exactly, with the full trace. */
export function replayCommand(seed: number): string {
  return `npm run sim -- --seeds 1 --from ${seed} --trace`;
}

interface ScheduledEvent {
  readonly step: number;
  readonly node: NodeId;
  readonly kind: 'restart' | 'stop';
}

/** REMOVED_NODE_STOP_RETRY_STEPS is how long a removed node waits before checking again whether it may stop. */
export const REMOVED_NODE_STOP_RETRY_STEPS = 50;

interface PendingRead {
  readonly minimumIndex: Index;
  readonly node: NodeId;
}

/** runSimulation runs one seed; `stream` receives every trace line as it happens (--trace). */
export function runSimulation(seed: number, stream?: (line: string) => void): SimResult {
  const simulation = new ClusterSimulation(seed, stream);
  return simulation.run();
}

class ClusterSimulation implements SimNodeHost {
  readonly checker: InvariantChecker;
  readonly trace: TraceRing;
  readonly random: SeededRandom;
  readonly tuning: RaftTuning;
  private readonly options: SimOptions;
  private readonly network: SimNetwork;
  private readonly nodes: SimNode[] = [];
  private readonly stats: SimStats = {
    steps: 0, healSteps: 0, leaderChanges: 0, confChangesApplied: 0, jointConfigs: 0, snapshotsTaken: 0,
    snapshotsSent: 0, transfersRequested: 0, transfersCompleted: 0, crashes: 0, restarts: 0, partitions: 0,
    proposalsAccepted: 0, proposalsRefused: 0, entriesApplied: 0, readStatesChecked: 0, messagesSent: 0,
    messagesDropped: 0, messagesDuplicated: 0, messagesLate: 0,
  };
  private step = 0;
  private scheduled: ScheduledEvent[] = [];
  // The sender's incarnation for each snapshot message in flight, so reportSnapshot goes only
  // to the incarnation that sent it.
  private readonly snapshotSenders = new Map<SnapshotMessage, number>();
  private readonly pendingReads = new Map<string, PendingRead>();
  private readonly markerAppliedBy = new Map<string, Set<NodeId>>();
  /** Nodes removed from the configuration, with the index of the entry that removed them. */
  private readonly retired = new Map<NodeId, Index>();
  private globalConf: ConfState;
  private globalConfIndex: Index = 0;
  private proposalCounter = 0;
  private readCounter = 0;
  private transferTarget: NodeId = 0;
  private markerTerm: Term = 0;
  private lastReportedCommit: Index = 0;

  constructor(seed: number, stream?: (line: string) => void) {
    this.random = new SeededRandom(seed);
    this.options = deriveSimOptions(seed, this.random);
    this.tuning = this.options.raft;
    this.checker = new InvariantChecker(this.options.bootstrap === 'config' ? this.options.voterCount : 0);
    this.trace = new TraceRing(stream);
    this.network = new SimNetwork(this.random, this.options.network, {
      onDrop: (message, reason) => this.onDrop(message, reason),
      onLate: (message, kind, dueStep, sentStep) => this.onLate(message, kind, dueStep, sentStep),
    });
    const voters: NodeId[] = [];
    for (let id = 1; id <= this.options.voterCount; id += 1) voters.push(id);
    for (let id = 1; id <= this.options.nodeIdCount; id += 1) {
      const disk = { kind: this.options.disk, seed: this.random.nextUint32() };
      this.nodes.push(new SimNode(id, id <= this.options.voterCount ? { voters, mode: this.options.bootstrap } : undefined, this, disk));
    }
    this.globalConf = { voters, learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
  }

  run(): SimResult {
    try {
      this.trace.recordText(0, `options ${describeSimOptions(this.options)}`);
      for (const node of this.nodes) if (node.id <= this.options.voterCount) node.start(0);
      for (let i = 0; i < this.options.faultSteps; i += 1) this.runStep(true);
      this.heal();
      const stepsPerTick = Math.ceil(1000 / this.options.tickPerMille);
      const healStepsMax = this.options.healElectionTimeouts * this.tuning.electionTicks * stepsPerTick;
      for (let i = 0; i < healStepsMax; i += 1) {
        this.runStep(false);
        this.stats.healSteps += 1;
        if (this.isConverged()) return this.result(undefined);
      }
      failInvariant('liveness', `no convergence within ${this.options.healElectionTimeouts} election timeouts (${healStepsMax} steps) after healing: ${this.describeCluster()}`);
    } catch (error) {
      return this.result(this.reportOf(error));
    }
  }

  // ------------------------------------------------------------------ SimNodeHost

  send(message: Message, incarnation: number): void {
    this.trace.recordMessage(this.step, 'send', message);
    if (message.type === 'snapshot') {
      this.stats.snapshotsSent += 1;
      this.snapshotSenders.set(message, incarnation);
    }
    this.network.send(this.step, message);
  }

  onConfApplied(node: NodeId, index: Index, confState: ConfState): void {
    if (index <= this.globalConfIndex) return;
    this.trace.recordText(this.step, `config at ${index} (first applied by node ${node}): ${describeConfState(confState)}`);
    this.stats.confChangesApplied += 1;
    if (confState.votersOutgoing.length > 0) this.stats.jointConfigs += 1;
    const after = membersOf(confState);
    for (const id of membersOf(this.globalConf)) {
      if (after.has(id) || this.retired.has(id)) continue;
      // A removed node keeps running for a while (it may not know it was removed), then
      // stops — but not before every remaining voter durably knows the removal is committed:
      // a voter that does not still counts the removed node in its quorum (etcd delays the
      // removed member's shutdown for the same reason).
      this.retired.set(id, index);
      this.scheduled.push({ step: this.step + this.random.intBelow(REMOVED_NODE_LINGER_STEPS_MAX), node: id, kind: 'stop' });
    }
    this.globalConf = confState;
    this.globalConfIndex = index;
  }

  onApplied(node: NodeId, entry: Entry): void {
    this.stats.entriesApplied += 1;
    if (entry.type !== EntryType.Normal || entry.data.byteLength === 0) return;
    const text = Buffer.from(entry.data).toString('latin1');
    if (!text.startsWith(MARKER_PREFIX)) return;
    let appliedBy = this.markerAppliedBy.get(text);
    if (appliedBy === undefined) {
      appliedBy = new Set();
      this.markerAppliedBy.set(text, appliedBy);
    }
    appliedBy.add(node);
  }

  onReadState(node: NodeId, readState: ReadState): void {
    const key = Buffer.from(readState.context).toString('hex');
    const pending = this.pendingReads.get(key);
    if (pending === undefined) return;
    this.pendingReads.delete(key);
    this.stats.readStatesChecked += 1;
    // Linearizable reads (ReadIndex, thesis §6.4): the read index covers every entry committed
    // before the read was requested. Lease-based reads assume bounded clock drift, which the
    // simulator does not give them, so only 'safe' reads are held to it.
    if (this.tuning.readOnlyOption === 'safe' && readState.index < pending.minimumIndex) {
      failInvariant('linearizable read', `node ${node} got read index ${readState.index}, but ${pending.minimumIndex} was committed before the read was requested at node ${pending.node}`);
    }
  }

  // ------------------------------------------------------------------ the step

  private runStep(faulty: boolean): void {
    this.step += 1;
    this.stats.steps += 1;
    this.runScheduled();
    for (const message of this.network.takeDue(this.step)) this.deliver(message);
    for (const node of this.nodes) {
      if (node.isRunning && this.random.intBelow(1000) < this.options.tickPerMille) node.core.tick();
    }
    if (faulty) this.injectFaultPhaseActions();
    else this.injectHealPhaseActions();
    const persistDelay = (): number => this.random.intBelow(this.options.persistDelayStepsMax + 1);
    for (const node of this.nodes) if (node.isRunning) node.handleReady(this.step, persistDelay);
    this.checkInvariants();
  }

  private deliver(message: Message): void {
    const node = this.nodes[message.to - 1];
    if (node === undefined || !node.isRunning) {
      this.network.dropDelivery(message);
      return;
    }
    this.trace.recordMessage(this.step, 'recv', message);
    if (message.type === 'snapshot') {
      const pending = node.describePending();
      if (pending !== '') this.trace.recordText(this.step, `node ${node.id} steps a snapshot while ${pending}`);
    }
    this.network.countDelivered();
    // Only an append whose leader commit is past its last entry can tempt a follower to
    // commit what the append did not verify; status() is not free, so only those are checked.
    if (message.type === 'append' && message.commit > message.index + message.entries.length) {
      const commitBefore = node.core.status().commit;
      node.core.step(message);
      this.checker.observeAppendCommit(node.id, message, commitBefore, node.core.status().commit);
      return;
    }
    node.core.step(message);
    if (message.type === 'snapshot') this.reportSnapshot(message, true);
  }

  private onLate(message: Message, kind: LateKind, dueStep: number, sentStep: number): void {
    const sent = sentStep === this.step ? '' : `sent at step ${sentStep}, `;
    this.trace.recordMessage(this.step, `${kind} (${sent}due at step ${dueStep})`, message);
  }

  private onDrop(message: Message, reason: DropReason): void {
    this.trace.recordMessage(this.step, `drop(${reason})`, message);
    if (message.type === 'snapshot') this.reportSnapshot(message, false);
    // A transport notices some failures, not all: the sender hears of a quarter of the drops.
    const sender = this.nodes[message.from - 1];
    if (sender !== undefined && sender.isRunning && this.random.chance(1, 4)) sender.core.reportUnreachable(message.to);
  }

  private reportSnapshot(message: SnapshotMessage, ok: boolean): void {
    const incarnation = this.snapshotSenders.get(message);
    if (incarnation === undefined) return;
    this.snapshotSenders.delete(message);
    const sender = this.nodes[message.from - 1];
    if (sender === undefined || !sender.isRunning || sender.incarnation !== incarnation) return;
    this.trace.recordText(this.step, `node ${message.from} reportSnapshot(${message.to}, ${ok})`);
    sender.core.reportSnapshot(message.to, ok);
  }

  private runScheduled(): void {
    if (this.scheduled.length === 0) return;
    const due = this.scheduled.filter((event) => event.step <= this.step);
    if (due.length === 0) return;
    this.scheduled = this.scheduled.filter((event) => event.step > this.step);
    for (const event of due) {
      const node = this.nodeById(event.node);
      if (event.kind === 'stop') {
        if (this.mayStopRemoved(node.id)) this.stopNode(node, 'stops (removed from the configuration)');
        else this.scheduled.push({ step: this.step + REMOVED_NODE_STOP_RETRY_STEPS, node: node.id, kind: 'stop' });
      } else if (node.lifecycle === 'crashed' && (!this.retired.has(node.id) || !this.mayStopRemoved(node.id))) {
        this.restartNode(node);
      }
    }
  }

  private checkInvariants(): void {
    const live = this.nodes.filter((node) => node.isRunning);
    // Leadership first, against what was committed before this step's observations.
    for (const node of live) {
      if (!node.observeLeadership(this.step)) continue;
      const status = node.status;
      if (status === undefined) continue;
      this.stats.leaderChanges += 1;
      this.trace.recordText(this.step, `node ${node.id} is the new leader of t${status.term}`);
      if (this.transferTarget !== 0) {
        if (this.transferTarget === node.id) this.stats.transfersCompleted += 1;
        this.transferTarget = 0;
      }
    }
    for (const node of live) {
      const status = node.status;
      if (status !== undefined) this.checker.observeCommit(status.commit, status.term);
    }
    if (this.checker.maxCommitIndex > this.lastReportedCommit) {
      this.lastReportedCommit = this.checker.maxCommitIndex;
      this.trace.recordText(this.step, `commit reaches ${this.lastReportedCommit}`);
    }
    if (live.length < 2) return;
    for (let i = 0; i < LOG_PAIR_CHECKS_PER_STEP; i += 1) {
      const a = this.random.intBelow(live.length);
      const b = (a + 1 + this.random.intBelow(live.length - 1)) % live.length;
      this.checker.checkLogPair(live[a] as SimNode, live[b] as SimNode, this.random);
    }
  }

  // ------------------------------------------------------------------ actions

  private injectFaultPhaseActions(): void {
    const rates = this.options.actions;
    const roll = (perMille: number): boolean => perMille > 0 && this.random.intBelow(1000) < perMille;
    if (roll(rates.proposePerMille)) this.proposeData();
    if (roll(rates.confChangePerMille)) this.proposeConfChange();
    if (roll(rates.transferPerMille)) this.transferLeader();
    if (roll(rates.crashPerMille)) this.crashRandomNode();
    if (roll(rates.targetedFaultPerMille)) this.injectTargetedFault();
    if (roll(rates.replayPerMille)) this.replayOldResponses();
    if (roll(rates.partitionPerMille)) this.changePartition();
    if (roll(rates.snapshotPerMille)) this.snapshotRandomNode();
    if (roll(rates.readIndexPerMille)) this.requestRead();
    if (roll(rates.campaignPerMille)) {
      const node = this.randomLiveNode();
      if (node !== undefined) {
        this.trace.recordText(this.step, `node ${node.id} campaign()`);
        node.core.campaign();
      }
    }
  }

  private injectHealPhaseActions(): void {
    const leader = this.currentLeader();
    if (leader === undefined || leader.status === undefined) return;
    const status = leader.status;
    const config = status.config;
    if (config.votersOutgoing.length > 0 && !config.autoLeave && this.step % HEAL_LEAVE_JOINT_EVERY_STEPS === 0) {
      this.tryConfChange(leader, { transition: 'auto', changes: [] });
    }
    if (this.markerTerm === status.term) return;
    const marker = `${MARKER_PREFIX}${status.term}:${this.step}`;
    if (this.tryPropose(leader, [textEncoder.encode(marker)])) {
      this.markerTerm = status.term;
      this.trace.recordText(this.step, `node ${leader.id} proposes ${marker}`);
    }
  }

  private proposeData(): void {
    // Mostly at the leader; sometimes at any node, which must refuse unless it leads.
    const target = this.random.chance(9, 10) ? this.currentLeader() ?? this.randomLiveNode() : this.randomLiveNode();
    if (target === undefined) return;
    const status = target.status;
    if (status !== undefined && status.lastIndex - status.commit >= PROPOSAL_BACKLOG_MAX) return;
    const count = 1 + this.random.intBelow(PROPOSAL_BATCH_MAX);
    const batch: Uint8Array[] = [];
    for (let i = 0; i < count; i += 1) {
      this.proposalCounter += 1;
      const padding = '.'.repeat(this.random.intBelow(PROPOSAL_PADDING_BYTES_MAX + 1));
      batch.push(textEncoder.encode(`${PROPOSAL_PREFIX}${this.proposalCounter}${padding}`));
    }
    this.tryPropose(target, batch);
  }

  private tryPropose(node: SimNode, batch: readonly Uint8Array[]): boolean {
    try {
      if (batch.length === 1) node.core.propose(batch[0] as Uint8Array);
      else node.core.proposeBatch(batch);
      this.stats.proposalsAccepted += batch.length;
      return true;
    } catch (error) {
      if (!isExpectedRefusal(error)) throw error;
      this.stats.proposalsRefused += batch.length;
      return false;
    }
  }

  private proposeConfChange(): void {
    const leader = this.currentLeader();
    if (leader === undefined || leader.status === undefined) return;
    const change = this.chooseConfChange(leader.status.config);
    if (change === undefined) return;
    for (const single of change.changes) {
      const joiner = this.nodeById(single.nodeId);
      if (single.type !== 'removeNode' && joiner.lifecycle === 'unstarted') joiner.start(this.step);
    }
    this.tryConfChange(leader, change);
  }

  private tryConfChange(leader: SimNode, change: ConfChange): void {
    const text = change.changes.length === 0 ? 'leave joint' : change.changes.map((c) => `${c.type}(${c.nodeId})`).join(' ');
    try {
      const { index } = leader.core.proposeConfChange(change);
      this.trace.recordText(this.step, `node ${leader.id} proposes conf change ${change.transition} ${text} at ${index}`);
    } catch (error) {
      if (!isExpectedRefusal(error)) throw error;
      this.trace.recordText(this.step, `node ${leader.id} refuses conf change ${change.transition} ${text}: ${(error as Error).message}`);
    }
  }

  // Chooses a membership change that keeps the cluster able to make progress: never below one
  // voter, rarely below three, never re-adding a removed id (a removed node's stale state
  // must not vote again, which is why etcd forbids reusing ids too).
  private chooseConfChange(config: ConfState): ConfChange | undefined {
    if (config.votersOutgoing.length > 0) {
      return config.autoLeave ? undefined : { transition: 'auto', changes: [] };
    }
    const fresh = this.nodes.filter((node) => node.lifecycle === 'unstarted').map((node) => node.id);
    const voters = config.voters;
    const learners = config.learners;
    const canShrink = voters.length > 3 || (voters.length > 1 && this.random.chance(1, 4));
    const choices: Array<() => ConfChange | undefined> = [];
    const single = (change: ConfChangeSingle): ConfChange => ({ transition: 'auto', changes: [change] });
    if (fresh.length > 0) {
      choices.push(() => single({ type: 'addLearner', nodeId: this.random.pick(fresh) }));
      if (this.random.chance(1, 3)) choices.push(() => single({ type: 'addVoter', nodeId: this.random.pick(fresh) }));
    }
    if (learners.length > 0) {
      choices.push(() => single({ type: 'addVoter', nodeId: this.random.pick(learners) }));
      choices.push(() => single({ type: 'removeNode', nodeId: this.random.pick(learners) }));
    }
    if (canShrink) {
      choices.push(() => single({ type: 'removeNode', nodeId: this.random.pick(voters) }));
      choices.push(() => single({ type: 'addLearner', nodeId: this.random.pick(voters) }));
    }
    const incoming = [...learners, ...fresh];
    if (incoming.length > 0 && voters.length > 1) {
      choices.push(() => ({
        transition: this.random.pick(['implicit', 'explicit', 'auto'] as const),
        changes: [
          { type: 'addVoter', nodeId: this.random.pick(incoming) },
          this.random.chance(1, 2)
            ? { type: 'removeNode', nodeId: this.random.pick(voters) }
            : { type: 'addLearner', nodeId: this.random.pick(voters) },
        ],
      }));
    }
    if (choices.length === 0) return undefined;
    return this.random.pick(choices)();
  }

  private transferLeader(): void {
    const leader = this.currentLeader();
    if (leader === undefined || leader.status === undefined) return;
    const { voters, learners } = leader.status.config;
    // Mostly another voter; now and then a learner or the leader itself, which must be ignored.
    const target = this.random.chance(9, 10) || learners.length === 0 ? this.random.pick(voters) : this.random.pick(learners);
    this.stats.transfersRequested += 1;
    this.transferTarget = target;
    this.trace.recordText(this.step, `node ${leader.id} transferLeader(${target})`);
    try {
      leader.core.transferLeader(target);
    } catch (error) {
      if (!isExpectedRefusal(error) && !isStrataError(error, ErrorCode.INVALID_ARGUMENT)) throw error;
    }
  }

  // Crashes a node at the worst moment, or cuts a leader off right after it appended.
  private injectTargetedFault(): void {
    if (this.random.chance(1, 2)) {
      const risky = this.nodes.filter((node) => node.isRunning && node.losesPromiseOnCrash);
      if (risky.length > 0) this.crashNode(this.random.pick(risky));
      return;
    }
    const leader = this.currentLeader();
    if (leader === undefined) return;
    const others = this.nodes.filter((node) => node.id !== leader.id && node.lifecycle !== 'unstarted').map((node) => node.id);
    if (others.length === 0) return;
    this.stats.partitions += 1;
    this.network.heal();
    this.network.partition([leader.id], others);
    this.network.partition(others, [leader.id]);
    this.trace.recordText(this.step, `partition: leader ${leader.id} cut off; links down ${this.network.describeLinksDown()}`);
  }

  // A late duplicate at the worst moment: the network delivers again its copies of the old
  // responses addressed to a campaigning node (votes from an earlier election reach a later
  // one); with no election under way, a copy of one old response to anyone.
  private replayOldResponses(): void {
    const remembered = this.network.rememberedResponses();
    if (remembered.length === 0) return;
    const campaigning = this.nodes.filter((node) => {
      if (!node.isRunning) return false;
      const role = node.core.currentRole();
      return role === 'candidate' || role === 'preCandidate';
    });
    if (campaigning.length === 0) {
      this.network.replay(this.step, this.random.pick(remembered));
      return;
    }
    const target = this.random.pick(campaigning).id;
    for (const copy of remembered) if (copy.message.to === target) this.network.replay(this.step, copy);
  }

  private crashRandomNode(): void {
    const node = this.randomLiveNode();
    if (node === undefined) return;
    this.crashNode(node);
  }

  private crashNode(node: SimNode): void {
    this.stats.crashes += 1;
    node.crash(this.step, 'crashes');
    node.lifecycle = 'crashed';
    this.scheduled.push({ step: this.step + 1 + this.random.intBelow(CRASH_DOWN_STEPS_MAX), node: node.id, kind: 'restart' });
  }

  private restartNode(node: SimNode): void {
    this.stats.restarts += 1;
    node.start(this.step);
  }

  private stopNode(node: SimNode, why: string): void {
    if (node.lifecycle === 'running') node.crash(this.step, why);
    else this.trace.recordText(this.step, `node ${node.id} ${why}`);
    node.lifecycle = 'stopped';
  }

  private changePartition(): void {
    this.network.heal();
    const ids = this.nodes.filter((node) => node.lifecycle !== 'unstarted' && node.lifecycle !== 'stopped').map((node) => node.id);
    const kind = this.random.intBelow(4);
    if (kind > 0 && ids.length >= 2) {
      this.stats.partitions += 1;
      const shuffled = [...ids];
      for (let i = shuffled.length - 1; i > 0; i -= 1) {
        const j = this.random.intBelow(i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j] as NodeId, shuffled[i] as NodeId];
      }
      const cut = kind === 1 ? 1 : 1 + this.random.intBelow(shuffled.length - 1);
      const sideA = shuffled.slice(0, cut);
      const sideB = shuffled.slice(cut);
      this.network.partition(sideA, sideB);
      // kind 3 is asymmetric: A cannot reach B, but B still reaches A.
      if (kind !== 3) this.network.partition(sideB, sideA);
    }
    this.trace.recordText(this.step, `partition: links down ${this.network.describeLinksDown()}`);
  }

  private snapshotRandomNode(): void {
    const node = this.randomLiveNode();
    if (node === undefined) return;
    const tail = this.random.chance(1, 3) ? 0 : this.random.intBelow(SNAPSHOT_TAIL_KEEP_MAX + 1);
    if (node.takeSnapshot(this.step, tail)) this.stats.snapshotsTaken += 1;
  }

  private requestRead(): void {
    const node = this.randomLiveNode();
    if (node === undefined || this.pendingReads.size >= PENDING_READS_MAX) return;
    this.readCounter += 1;
    const context = new Uint8Array(4);
    new DataView(context.buffer).setUint32(0, this.readCounter);
    const minimumIndex = this.checker.maxCommitIndex;
    try {
      node.core.readIndex(context);
      this.pendingReads.set(Buffer.from(context).toString('hex'), { minimumIndex, node: node.id });
    } catch (error) {
      if (!isExpectedRefusal(error)) throw error;
    }
  }

  // ------------------------------------------------------------------ healing and liveness

  private heal(): void {
    this.trace.recordText(this.step, `heal: network whole, no loss, in order, nothing more held back; restarting crashed members; config ${describeConfState(this.globalConf)}`);
    this.network.heal();
    // Healed links behave like TCP streams: nothing lost, duplicated or reordered.
    // Messages already held back still arrive, late, after healing.
    this.network.setFaults({
      ...this.options.network,
      lossPerMille: 0,
      duplicatePerMille: 0,
      longDelayPerMille: 0,
      heldPerMille: 0,
      lateDuplicatePerMille: 0,
      inOrder: true,
    });
    // Removed nodes the remaining voters may still need (see onConfApplied) keep running
    // (or are restarted) and stop later, once the removal is durable on every voter.
    this.scheduled = this.scheduled.filter((event) => event.kind === 'stop');
    for (const node of this.nodes) {
      if (this.retired.has(node.id)) {
        if (this.mayStopRemoved(node.id)) {
          if (node.lifecycle !== 'stopped' && node.lifecycle !== 'unstarted') this.stopNode(node, 'stops (removed from the configuration)');
        } else if (node.lifecycle === 'crashed') {
          this.restartNode(node);
        }
      } else if (node.lifecycle === 'crashed') {
        this.restartNode(node);
      }
    }
  }

  // A removed node may stop once every voter of the current configuration has a durable
  // commit index at or past the entry that removed it.
  private mayStopRemoved(id: NodeId): boolean {
    const removalIndex = this.retired.get(id);
    if (removalIndex === undefined) return true;
    for (const voter of [...this.globalConf.voters, ...this.globalConf.votersOutgoing]) {
      if (voter === id) continue;
      const durableCommit = this.nodeById(voter).storage.initialState().hardState.commit;
      if (durableCommit < removalIndex) return false;
    }
    return true;
  }

  // Converged: a leader that is a voter of its own configuration, and one heal marker that
  // every voter of that configuration is running and has applied.
  private isConverged(): boolean {
    const leader = this.currentLeader();
    if (leader === undefined || leader.status === undefined) return false;
    const config = leader.status.config;
    const voters = new Set([...config.voters, ...config.votersOutgoing]);
    if (!voters.has(leader.id)) return false;
    for (const appliedBy of this.markerAppliedBy.values()) {
      let all = true;
      for (const voter of voters) {
        if (!appliedBy.has(voter) || !this.nodeById(voter).isRunning) all = false;
      }
      if (all) return true;
    }
    return false;
  }

  // ------------------------------------------------------------------ helpers

  private currentLeader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const node of this.nodes) {
      if (!node.isRunning || node.status?.role !== 'leader') continue;
      if (best === undefined || (node.status.term > (best.status?.term ?? 0))) best = node;
    }
    return best;
  }

  private randomLiveNode(): SimNode | undefined {
    const live = this.nodes.filter((node) => node.isRunning);
    return live.length === 0 ? undefined : this.random.pick(live);
  }

  private nodeById(id: NodeId): SimNode {
    const node = this.nodes[id - 1];
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  private describeCluster(): string {
    const lines = this.nodes.map((node) => {
      const status = node.isRunning ? node.status : undefined;
      if (status === undefined) return `node ${node.id} ${node.lifecycle}`;
      const progress = [...status.progress].map(([peer, p]) => `${peer}:${p.state} match=${p.match} next=${p.next}${p.recentActive ? '' : ' inactive'}`);
      const progressText = progress.length === 0 ? '' : ` progress{${progress.join('; ')}}`;
      return `node ${node.id} ${status.role} t${status.term} leader=${status.leaderId} commit=${status.commit} applied=${node.appliedIndex}/core ${status.applied} disk=${node.storage.firstIndex()}..${node.storage.lastIndex()} last=${status.lastIndex} hasReady=${node.core.hasReady()} config{${describeConfState(status.config)}}${progressText}`;
    });
    const markers = [...this.markerAppliedBy].map(([marker, by]) => `${marker} applied by ${[...by].join(',')}`);
    return `\n    ${lines.join('\n    ')}\n    markers: ${markers.length === 0 ? 'none applied' : markers.join('; ')}`;
  }

  private reportOf(error: unknown): SimFailureReport {
    const options = describeSimOptions(this.options);
    if (error instanceof SimulationFailure) {
      return { invariant: error.invariant, detail: error.message, traceTail: this.trace.lines(), options };
    }
    const detail = error instanceof Error ? `${error.name}: ${error.message}\n${error.stack ?? ''}` : String(error);
    return { invariant: 'no exceptions (the core or the simulator threw)', detail, traceTail: this.trace.lines(), options };
  }

  private result(failure: SimFailureReport | undefined): SimResult {
    const counters = this.network.counters;
    this.stats.messagesSent = counters.sent;
    this.stats.messagesDropped = counters.dropped;
    this.stats.messagesDuplicated = counters.duplicated;
    this.stats.messagesLate = counters.late;
    return { seed: this.options.seed, stats: this.stats, failure };
  }
}

function membersOf(confState: ConfState): Set<NodeId> {
  return new Set([...confState.voters, ...confState.learners, ...confState.votersOutgoing, ...confState.learnersNext]);
}

// Refusals a caller must expect from the core: not the leader, a transfer under way, too
// much uncommitted, a configuration change refused or one still pending.
function isExpectedRefusal(error: unknown): boolean {
  return (
    isStrataError(error, ErrorCode.NOT_LEADER) ||
    isStrataError(error, ErrorCode.LEADER_TRANSFER_IN_PROGRESS) ||
    isStrataError(error, ErrorCode.PROPOSAL_DROPPED) ||
    isStrataError(error, ErrorCode.CONF_CHANGE_REFUSED) ||
    isStrataError(error, ErrorCode.CONF_CHANGE_PENDING)
  );
}

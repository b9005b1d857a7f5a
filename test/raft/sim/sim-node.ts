// One simulated node: a Raft core driven exactly as the driver contract says (see Ready in
// src/raft/types.ts), a MemoryLogStorage standing for its disk, and a state machine.
//
// Persisting a Ready is asynchronous: it completes a few steps after the Ready is taken,
// while the node keeps receiving messages and ticks. A crash discards the core, the Ready
// being persisted and the state machine; only what reached the storage survives.

import type { ConfState, Entry, Index, Message, NodeId, Ready, ReadState, Role, Term } from '../../../src/raft/index.ts';
import {
  EMPTY_CONF_STATE,
  EntryType,
  Raft,
  RAFT_CONFIG_DEFAULTS,
  SILENT_LOGGER,
  decodeConfChange,
} from '../../../src/raft/index.ts';
import type { RaftStatus } from '../../../src/raft/index.ts';
import { SeededRandom } from '../../../src/util/index.ts';
import type { InvariantChecker, LogView } from './invariant-checker.ts';
import { failInvariant } from './invariant-checker.ts';
import type { BootstrapMode, RaftTuning } from './sim-options.ts';
import { SimDisk } from './sim-disk.ts';
import type { DiskKind } from './sim-disk.ts';
import { SimStateMachine } from './sim-state-machine.ts';
import type { TraceRing } from './trace-ring.ts';

/** NodeBootstrap is how an initial voter learns the first configuration. */
export interface NodeBootstrap {
  readonly voters: readonly NodeId[];
  readonly mode: BootstrapMode;
}

/** BOOTSTRAP_TERM is the term of the entry a 'snapshot' bootstrap writes at index 1. */
export const BOOTSTRAP_TERM = 1;

/** NodeLifecycle is where a simulated node stands. */
export type NodeLifecycle = 'unstarted' | 'running' | 'crashed' | 'stopped';

/** SimNodeHost is what a node needs from the simulation around it. */
export interface SimNodeHost {
  readonly checker: InvariantChecker;
  readonly trace: TraceRing;
  readonly tuning: RaftTuning;
  /** random seeds each incarnation's own Raft random source. */
  readonly random: SeededRandom;
  send(message: Message, incarnation: number): void;
  onConfApplied(node: NodeId, index: Index, confState: ConfState): void;
  onApplied(node: NodeId, entry: Entry): void;
  onReadState(node: NodeId, readState: ReadState): void;
}

interface PendingPersist {
  readonly ready: Ready;
  readonly dueStep: number;
}

/** SimNode is one member of the simulated cluster, across its crashes and restarts. */
export class SimNode implements LogView {
  readonly id: NodeId;
  /** storage is the node's disk: it survives crashes. */
  readonly storage: SimDisk;
  lifecycle: NodeLifecycle = 'unstarted';
  /** incarnation counts starts; a message's sender must be in the same incarnation for reports. */
  incarnation = 0;
  /** status is the core's status as of the last observe(). */
  status: RaftStatus | undefined;
  private raft: Raft | undefined;
  private pending: PendingPersist | undefined;
  private machine = new SimStateMachine();
  private confState: ConfState = EMPTY_CONF_STATE;
  private lastCommit: Index = 0;
  private lastRole: Role | undefined;
  private lastLeader: NodeId = 0;
  private readonly bootstrap: NodeBootstrap | undefined;
  private readonly host: SimNodeHost;

  /** `bootstrap` is set for the initial voters; joiners start with an empty configuration. */
  constructor(id: NodeId, bootstrap: NodeBootstrap | undefined, host: SimNodeHost, disk: { kind: DiskKind; seed: number }) {
    this.id = id;
    this.bootstrap = bootstrap;
    this.host = host;
    this.storage = new SimDisk(disk.kind, disk.seed, `/node-${id}`);
  }

  /** isRunning tells whether the node has a live core. */
  get isRunning(): boolean {
    return this.lifecycle === 'running';
  }

  /** core returns the live Raft core; only for running nodes. */
  get core(): Raft {
    if (this.raft === undefined) throw new Error(`node ${this.id} is not running`);
    return this.raft;
  }

  /** appliedIndex is the state machine's applied index in this incarnation. */
  get appliedIndex(): Index {
    return this.machine.appliedIndex;
  }

  /** lastIndex is the core's last log index as of the last observe(). */
  get lastIndex(): Index {
    return this.status?.lastIndex ?? 0;
  }

  /** logTermAt reads the core's log view. */
  logTermAt(index: Index): Term | undefined {
    return this.core.logTermAt(index);
  }

  /** start creates a core on the surviving storage (a first start or a restart after a crash). */
  start(step: number): void {
    if (this.incarnation === 0 && this.bootstrap?.mode === 'snapshot') this.writeBootstrapSnapshot(this.bootstrap.voters);
    this.incarnation += 1;
    const snapshot = this.storage.snapshot();
    this.machine = SimStateMachine.restore(snapshot.data);
    if (this.machine.appliedIndex !== snapshot.metadata.index) {
      failInvariant('snapshot integrity', `node ${this.id} restarts from a snapshot at ${snapshot.metadata.index} whose data says ${this.machine.appliedIndex}`);
    }
    const stored = this.storage.initialState().confState;
    const bootstrapVoters = stored.voters.length === 0 && stored.learners.length === 0 ? this.bootstrap?.voters : undefined;
    this.confState = bootstrapVoters === undefined ? stored : { ...EMPTY_CONF_STATE, voters: bootstrapVoters };
    this.raft = new Raft({
      ...RAFT_CONFIG_DEFAULTS,
      ...this.host.tuning,
      id: this.id,
      storage: this.storage,
      random: new SeededRandom(this.host.random.nextUint32()),
      ...(bootstrapVoters === undefined ? {} : { voters: bootstrapVoters }),
      applied: snapshot.metadata.index,
      logger: SILENT_LOGGER,
    });
    this.lifecycle = 'running';
    this.pending = undefined;
    this.lastCommit = 0;
    this.lastRole = undefined;
    this.lastLeader = 0;
    this.status = this.raft.status();
    const hard = this.storage.initialState().hardState;
    this.host.trace.recordText(step, `node ${this.id} starts (incarnation ${this.incarnation}) t${hard.term} vote=${hard.vote} commit=${hard.commit} applied=${snapshot.metadata.index} log=${this.storage.firstIndex()}..${this.storage.lastIndex()}`);
  }

  /** crash discards the core, the Ready being persisted and the state machine. */
  crash(step: number, why: string): void {
    const lost = this.pending === undefined ? '' : ` (lost an unpersisted Ready with ${this.pending.ready.entries.length} entries)`;
    this.host.trace.recordText(step, `node ${this.id} ${why}${lost}`);
    this.raft = undefined;
    this.pending = undefined;
    this.status = undefined;
    this.machine = new SimStateMachine();
    // On the durable store a crash is a power cut of its file system, then real recovery.
    this.storage.crash(this.host.random.chance(1, 2) ? 'tear' : 'lose');
  }

  /**
   * handleReady completes a due persist and takes the next Ready when there is none
   * outstanding; `persistDelaySteps` is when the new Ready's persist completes.
   */
  handleReady(step: number, persistDelaySteps: () => number): void {
    // Two rounds at most: a zero-delay persist may make the next Ready available at once.
    for (let round = 0; round < 2 && this.raft !== undefined; round += 1) {
      if (this.pending !== undefined) {
        if (this.pending.dueStep > step) {
          // A driver may send Ready.messages' kind at once while a Ready is persisted
          // (takeMessages); half the time this one does, so both ways are checked.
          if (this.host.random.chance(1, 2)) for (const message of this.core.takeMessages()) this.host.send(message, this.incarnation);
          return;
        }
        this.completePersist(step, this.pending.ready);
        this.pending = undefined;
      }
      if (!this.raft.hasReady()) return;
      const ready = this.raft.ready();
      this.takeReady(step, ready);
      // Only a Ready that needs an fsync waits for the disk; the rest completes at once.
      this.pending = { ready, dueStep: ready.mustSync ? step + persistDelaySteps() : step };
    }
  }

  /**
   * losesPromiseOnCrash tells whether crashing now would lose something others may already
   * rely on: a vote, or entries a leader has sent out before persisting them.
   */
  get losesPromiseOnCrash(): boolean {
    if (this.pending === undefined) return false;
    const { hardState, entries, messages } = this.pending.ready;
    return (hardState !== undefined && hardState.vote !== 0) || (entries.length > 0 && messages.length > 0);
  }

  /** describePending names the Ready being persisted, for the trace ('' when there is none). */
  describePending(): string {
    if (this.pending === undefined) return '';
    const { entries, committedEntries } = this.pending.ready;
    const range = (list: readonly Entry[]): string => (list.length === 0 ? 'none' : `${list[0]?.index}..${list.at(-1)?.index}`);
    return `a Ready is being persisted (entries ${range(entries)}, committed ${range(committedEntries)})`;
  }

  /** observeLeadership reports leadership to the checker; it returns true for a new (term, leader). */
  observeLeadership(step: number): boolean {
    const status = this.core.status();
    this.status = status;
    if (status.commit < this.lastCommit) {
      failInvariant('commit monotonic', `node ${this.id} commit went from ${this.lastCommit} back to ${status.commit}`);
    }
    if (status.commit > status.lastIndex) {
      failInvariant('commit within log', `node ${this.id} commit ${status.commit} is past its last index ${status.lastIndex}`);
    }
    if (this.machine.appliedIndex > status.commit) {
      failInvariant('apply only committed', `node ${this.id} applied ${this.machine.appliedIndex} but its commit is ${status.commit}`);
    }
    this.lastCommit = status.commit;
    if (status.role !== this.lastRole || status.leaderId !== this.lastLeader) {
      this.host.trace.recordText(step, `node ${this.id} is ${status.role} in t${status.term} (leader ${status.leaderId}) commit=${status.commit} last=${status.lastIndex}`);
      this.lastRole = status.role;
      this.lastLeader = status.leaderId;
    }
    return status.role === 'leader' && this.host.checker.observeLeader(this.id, status.term, this.incarnation, this);
  }

  /**
   * takeSnapshot snapshots the applied state and compacts the log, keeping `tailKeep`
   * entries below the snapshot so slightly lagging followers still get entries. Returns
   * whether a snapshot was taken.
   */
  takeSnapshot(step: number, tailKeep: number): boolean {
    const index = this.machine.appliedIndex;
    if (index <= this.storage.snapshot().metadata.index) return false;
    const compactIndex = index - tailKeep;
    this.storage.snapshotAndCompact(index, this.confState, this.machine.encode(), compactIndex >= this.storage.firstIndex() ? compactIndex : undefined);
    this.host.trace.recordText(step, `node ${this.id} snapshots at ${index}, log now ${this.storage.firstIndex()}..${this.storage.lastIndex()}`);
    return true;
  }

  // The etcd-style bootstrap, folded into a snapshot: one committed entry at index 1 in
  // BOOTSTRAP_TERM, applied, snapshotted with the initial configuration and compacted, so the
  // configuration is on disk and every joiner catches up from a snapshot that carries it.
  private writeBootstrapSnapshot(voters: readonly NodeId[]): void {
    const entry: Entry = { index: 1, term: BOOTSTRAP_TERM, type: EntryType.Normal, data: new Uint8Array(0) };
    const hardState = { term: BOOTSTRAP_TERM, vote: 0, commit: 1 };
    const machine = new SimStateMachine();
    machine.apply(entry);
    this.host.checker.observeLogEntries(this.id, [entry], 0);
    this.host.checker.observeApply(this.id, entry, machine);
    this.storage.persist({ snapshot: undefined, entries: [entry], hardState });
    this.host.checker.observePersistedHardState(this.id, hardState);
    this.storage.snapshotAndCompact(1, { ...EMPTY_CONF_STATE, voters }, machine.encode(), 1);
    this.storage.flush();
  }

  private takeReady(step: number, ready: Ready): void {
    const first = ready.entries[0];
    if (first !== undefined) {
      this.host.checker.observeLogEntries(this.id, ready.entries, first.index > 1 ? this.core.logTermAt(first.index - 1) : 0);
    }
    for (const message of ready.messages) this.host.send(message, this.incarnation);
    for (const readState of ready.readStates) this.host.onReadState(this.id, readState);
    if (ready.softState !== undefined && ready.softState.role === 'leader') {
      this.host.trace.recordText(step, `node ${this.id} Ready: leader, ${ready.entries.length} entries to persist`);
    }
  }

  private completePersist(step: number, ready: Ready): void {
    const raft = this.core;
    this.storage.persist({ snapshot: ready.snapshot, entries: ready.entries, hardState: ready.hardState });
    if (ready.snapshot !== undefined) {
      const snapshot = ready.snapshot;
      this.machine = SimStateMachine.restore(snapshot.data);
      this.host.checker.observeSnapshotRestore(this.id, snapshot, this.machine);
      this.confState = snapshot.metadata.confState;
      this.host.trace.recordText(step, `node ${this.id} installs snapshot ${snapshot.metadata.index}/t${snapshot.metadata.term}`);
    }
    if (ready.hardState !== undefined) this.host.checker.observePersistedHardState(this.id, ready.hardState);
    for (const message of ready.messagesAfterPersist) this.host.send(message, this.incarnation);
    for (const entry of ready.committedEntries) this.apply(step, raft, entry);
    raft.advance(ready);
  }

  private apply(step: number, raft: Raft, entry: Entry): void {
    if (entry.index !== this.machine.appliedIndex + 1) {
      failInvariant('apply in order', `node ${this.id} applies ${entry.index} after ${this.machine.appliedIndex}`);
    }
    if (entry.index > this.storage.lastIndex()) {
      failInvariant('persist before apply', `node ${this.id} applies ${entry.index} but its disk ends at ${this.storage.lastIndex()}`);
    }
    if (entry.type === EntryType.ConfChange) {
      const confState = raft.applyConfChange(decodeConfChange(entry.data));
      this.confState = confState;
      this.host.checker.observeConfApplied(this.id, entry.index, confState);
      this.host.onConfApplied(this.id, entry.index, confState);
    }
    this.machine.apply(entry);
    this.host.checker.observeApply(this.id, entry, this.machine);
    this.host.onApplied(this.id, entry);
    if (entry.type === EntryType.ConfChange) this.host.trace.recordText(step, `node ${this.id} applies conf change at ${entry.index}`);
  }
}

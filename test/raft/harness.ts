// A small synchronous cluster harness for the Raft core's scripted and unit tests: each
// node persists into a MemoryLogStorage as soon as it hands out a Ready, and messages wait
// in a mailbox until a test delivers them, so a test controls every interleaving. (The
// seeded simulator in test/raft/sim/ is the randomized, fault-injecting counterpart.)

import { assert } from '../../src/util/assert.ts';
import { SeededRandom } from '../../src/util/random.ts';
import type { ConfState, Entry, Message, NodeId, RaftConfig, ReadState, Ready } from '../../src/raft/index.ts';
import { EntryType, MemoryLogStorage, Raft, RAFT_CONFIG_DEFAULTS, decodeConfChange } from '../../src/raft/index.ts';

/** HarnessNode is one member of a harness cluster. */
export interface HarnessNode {
  id: NodeId;
  raft: Raft;
  storage: MemoryLogStorage;
  applied: Entry[];
  readStates: ReadState[];
  confStates: ConfState[];
}

/** HarnessOptions tunes the nodes a Harness creates. */
export type HarnessOptions = Partial<Omit<RaftConfig, 'id' | 'storage' | 'random' | 'voters' | 'learners'>>;

/** Harness drives a set of Raft nodes with explicit message delivery. */
export class Harness {
  readonly nodes = new Map<NodeId, HarnessNode>();
  /** Messages sent and not yet delivered, in send order. */
  mailbox: Message[] = [];
  /** Pairs (from->to) whose messages are dropped on delivery. */
  readonly cut = new Set<string>();
  private readonly options: HarnessOptions;

  constructor(voters: readonly NodeId[], options: HarnessOptions = {}, learners: readonly NodeId[] = []) {
    this.options = options;
    for (const id of [...voters, ...learners]) this.addNode(id, voters, learners);
  }

  /** addNode creates a node; with no voters it starts empty and learns its config from the log. */
  addNode(id: NodeId, voters: readonly NodeId[], learners: readonly NodeId[] = []): HarnessNode {
    assert(!this.nodes.has(id), `node ${id} exists`);
    const storage = new MemoryLogStorage();
    const node: HarnessNode = { id, raft: this.makeRaft(id, storage, voters, learners), storage, applied: [], readStates: [], confStates: [] };
    this.nodes.set(id, node);
    return node;
  }

  /** restart replaces a node's Raft with a new one built from what it persisted. */
  restart(id: NodeId): void {
    const node = this.node(id);
    node.raft = this.makeRaft(id, node.storage, [], [], node.storage.snapshot().metadata.index);
    node.applied = node.applied.filter((entry) => entry.index <= node.storage.snapshot().metadata.index);
  }

  private makeRaft(id: NodeId, storage: MemoryLogStorage, voters: readonly NodeId[], learners: readonly NodeId[], applied = 0): Raft {
    return new Raft({
      ...RAFT_CONFIG_DEFAULTS,
      preVote: false,
      checkQuorum: false,
      ...this.options,
      id,
      storage,
      random: new SeededRandom(id),
      voters,
      learners,
      applied,
    });
  }

  node(id: NodeId): HarnessNode {
    const node = this.nodes.get(id);
    assert(node !== undefined, `no node ${id}`);
    return node;
  }

  /** persist writes a Ready's snapshot, entries and hard state into a node's storage. */
  persist(id: NodeId, ready: Ready): void {
    const node = this.node(id);
    if (ready.snapshot !== undefined) {
      node.storage.applySnapshot(ready.snapshot);
      const snapshotIndex = ready.snapshot.metadata.index;
      node.applied = node.applied.filter((entry) => entry.index <= snapshotIndex);
    }
    node.storage.append(ready.entries);
    if (ready.hardState !== undefined) node.storage.setHardState(ready.hardState);
  }

  /** processReady persists, sends and applies every node's pending Ready (synchronously). */
  processReady(): boolean {
    let progressed = false;
    for (const node of this.nodes.values()) {
      let rounds = 0;
      while (node.raft.hasReady() && rounds < 100) {
        rounds += 1;
        progressed = true;
        const ready = node.raft.ready();
        this.mailbox.push(...ready.messages);
        this.persist(node.id, ready);
        this.mailbox.push(...ready.messagesAfterPersist);
        for (const entry of ready.committedEntries) {
          node.applied.push(entry);
          if (entry.type === EntryType.ConfChange) node.confStates.push(node.raft.applyConfChange(decodeConfChange(entry.data)));
        }
        node.readStates.push(...ready.readStates);
        node.raft.advance(ready);
      }
    }
    return progressed;
  }

  /** deliver delivers every message in the mailbox now (messages they cause wait). Returns them. */
  deliver(filter: (message: Message) => boolean = () => true): Message[] {
    const now = this.mailbox.filter(filter);
    this.mailbox = this.mailbox.filter((message) => !filter(message));
    for (const message of now) {
      if (this.cut.has(`${message.from}->${message.to}`)) continue;
      const target = this.nodes.get(message.to);
      if (target !== undefined) target.raft.step(message);
    }
    return now;
  }

  /** stabilize delivers messages and processes Readies until nothing moves (bounded). */
  stabilize(roundsMax = 1000): Message[] {
    const delivered: Message[] = [];
    for (let round = 0; round < roundsMax; round += 1) {
      const readied = this.processReady();
      if (this.mailbox.length === 0 && !readied) return delivered;
      delivered.push(...this.deliver());
    }
    throw new Error(`cluster did not stabilize in ${roundsMax} rounds`);
  }

  /** isolate cuts a node off from every other node in both directions. */
  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}->${other}`);
      this.cut.add(`${other}->${id}`);
    }
  }

  /** heal removes every cut. */
  heal(): void {
    this.cut.clear();
  }

  /** tick ticks one node `count` times. */
  tick(id: NodeId, count = 1): void {
    for (let i = 0; i < count; i += 1) this.node(id).raft.tick();
  }

  /** leader returns the id of the node that believes it leads in the highest term, if any. */
  leader(): NodeId | undefined {
    let best: { id: NodeId; term: number } | undefined;
    for (const node of this.nodes.values()) {
      const status = node.raft.status();
      if (status.role === 'leader' && (best === undefined || status.term > best.term)) best = { id: node.id, term: status.term };
    }
    return best?.id;
  }

  /** appliedData is what a node applied, as strings, skipping empty entries and conf changes. */
  appliedData(id: NodeId): string[] {
    return this.node(id)
      .applied.filter((entry) => entry.type === EntryType.Normal && entry.data.byteLength > 0)
      .map((entry) => new TextDecoder().decode(entry.data));
  }
}

/** bytes encodes a string as UTF-8. */
export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

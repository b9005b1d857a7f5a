// In-memory stratakv clusters for the client's tests: real RaftNodes on the memory twins (a
// MemoryTransport on a MemoryNetwork, the memory log, memory-level) on SYSTEM_CLOCK, each
// served by startEtcdServer over RaftNodeBackend, the production backend, on a real port of
// 127.0.0.1 that it also advertises as its client URL (published to the member table as
// `stratakv serve` does). Members can be added (as learners that are then started, or
// without starting), promoted, removed and stopped, so a test can run a live migration
// against a real EtcdClient.
//
// Waiting is driven by events, not by a poll: every node hook and every `notify()` (a test's
// client logger calls it) re-checks what `until` waits for, within WAIT_MS_MAX.

import assert from 'node:assert/strict';

import { RaftNode } from '../../src/node/index.ts';
import type { RaftNodeOptions } from '../../src/node/index.ts';
import type { EtcdServer } from '../../src/server/index.ts';
import { RaftNodeBackend, startEtcdServer } from '../../src/server/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { SYSTEM_CLOCK } from '../../src/util/index.ts';
import { freePorts } from './etcd-process.ts';

/** WAIT_MS_MAX bounds every wait of these tests (elections, catching up, a member's grace period). */
export const WAIT_MS_MAX = 15_000;
// Timing: fast enough for tests, slow enough that a loaded machine does not start elections.
const HEARTBEAT_INTERVAL_MS = 50;
// A removed member stops 3 election timeouts later (REMOVED_GRACE_ELECTIONS), well within WAIT_MS_MAX.
const ELECTION_TIMEOUT_MS = 500;
const VERSION = '3.4.0+stratakv.client-test';
const MAX_REQUEST_BYTES = 1024 * 1024;

/** ServedMember is one member: its node, its server, and how a client reaches it. */
export interface ServedMember {
  readonly name: string;
  readonly peerUrl: string;
  /** host:port, as EtcdClient lists it. */
  readonly endpoint: string;
  readonly node: RaftNode;
  /** How many Cluster.MemberList calls this member's server has answered. */
  memberListCalls(): number;
  /** running: the node has not stopped (by stop(), or by itself after its removal). */
  running(): boolean;
  /** stop stops the node, then the server (as a `stratakv serve` process exits); idempotent. */
  stop(): Promise<void>;
}

/** MemoryCluster is a set of members on one MemoryNetwork under one cluster token. */
export class MemoryCluster {
  readonly members: ServedMember[] = [];
  readonly #network = new MemoryNetwork();
  readonly #token: string;
  readonly #listeners = new Set<() => void>();

  private constructor(token: string) {
    this.#token = token;
  }

  /** start starts a new cluster of `names` and resolves once every member knows the leader and has published itself. */
  static async start(token: string, names: readonly string[]): Promise<MemoryCluster> {
    const cluster = new MemoryCluster(token);
    const initialCluster = names.map((name) => ({ name, peerUrls: [cluster.peerUrl(name)] }));
    const ports = await freePorts(names.length);
    const started = await Promise.all(names.map((name, index) => cluster.#startMember(name, ports[index] ?? 0, { initialCluster, initialClusterState: 'new' })));
    await cluster.until('every member knows the leader and is published', () =>
      started.every((member) => member.node.leaderId() !== 0 && cluster.#published(member)),
    );
    return cluster;
  }

  peerUrl(name: string): string {
    return `http://${name}.${this.#token}.test:2380`;
  }

  /** leader is the member that leads now (by its own status). */
  leader(): ServedMember {
    const leader = this.members.find((member) => member.running() && !member.node.status().removed && member.node.status().role === 'leader');
    assert.ok(leader !== undefined, 'a member leads');
    return leader;
  }

  /** member is the started member named `name`. */
  member(name: string): ServedMember {
    const found = this.members.find((member) => member.name === name);
    assert.ok(found !== undefined, `member ${name} was started`);
    return found;
  }

  /**
   * addLearner adds `name` as a learner through the leader, starts it (joining the cluster
   * that exists) and resolves once it has published itself and caught up with the leader.
   */
  async addLearner(name: string): Promise<ServedMember> {
    const leader = this.leader().node;
    const [port] = await freePorts(1);
    await leader.addMember([this.peerUrl(name)], true, { timeoutMs: WAIT_MS_MAX });
    const initialCluster = [...this.members.filter((member) => member.running() && !member.node.status().removed).map((member) => ({ name: member.name, peerUrls: [member.peerUrl] })), { name, peerUrls: [this.peerUrl(name)] }];
    const member = await this.#startMember(name, port ?? 0, { initialCluster, initialClusterState: 'existing' });
    await this.until(`${name} has published itself and caught up`, () => this.#published(member) && member.node.status().appliedIndex >= this.leader().node.status().commitIndex);
    return member;
  }

  /** until waits until `condition` holds, re-checking it at every event, for at most withinMs. */
  async until(what: string, condition: () => boolean, withinMs = WAIT_MS_MAX): Promise<void> {
    if (condition()) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let listener: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        listener = () => {
          if (condition()) resolve();
        };
        this.#listeners.add(listener);
        timer = setTimeout(() => reject(new Error(`timed out after ${withinMs} ms waiting until ${what}`)), withinMs);
      });
    } finally {
      clearTimeout(timer);
      if (listener !== undefined) this.#listeners.delete(listener);
    }
  }

  /** notify re-checks what `until` waits for (node hooks call it; tests call it from a client's logger). */
  notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  /** stop stops every member. */
  async stop(): Promise<void> {
    await Promise.all(this.members.map((member) => member.stop()));
  }

  // Published: every running member has applied the member's name and client URLs (an
  // initial member's name is known from the start; its client URLs only once it publishes).
  #published(member: ServedMember): boolean {
    const running = this.members.filter((other) => other.running() && !other.node.status().removed);
    return running.every((other) => other.node.members().some((record) => record.id === member.node.memberId && record.name === member.name && record.clientUrls.length > 0));
  }

  async #startMember(name: string, port: number, join: Pick<RaftNodeOptions, 'initialCluster' | 'initialClusterState'>): Promise<ServedMember> {
    assert.ok(port > 0, 'a free port');
    const clientUrl = `http://127.0.0.1:${port}`;
    const network = this.#network;
    const notify = (): void => this.notify();
    const node = await RaftNode.start({
      ...join,
      name,
      initialClusterToken: this.#token,
      advertisePeerUrls: [this.peerUrl(name)],
      advertiseClientUrls: [clientUrl],
      heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
      electionTimeoutMs: ELECTION_TIMEOUT_MS,
      version: VERSION,
      clock: SYSTEM_CLOCK,
      createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
      hooks: { onApplied: notify, onRoleChange: notify, onRemoved: notify, onStopping: notify },
    });
    let stopped = false;
    void node.whenStopped().then(() => {
      stopped = true;
      notify();
    });
    const backend = new RaftNodeBackend(node, VERSION);
    let memberLists = 0;
    // The production backend, with MemberList counted (bound to the backend, so it runs as is).
    const counted = new Proxy(backend, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== 'function') return value;
        if (property === 'memberList') {
          return (...args: unknown[]) => {
            memberLists += 1;
            notify();
            return (value as (...parameters: unknown[]) => unknown).apply(target, args);
          };
        }
        return (value as (...parameters: unknown[]) => unknown).bind(target);
      },
    });
    let server: EtcdServer;
    try {
      server = await startEtcdServer({ backend: counted, listenUrls: [clientUrl], maxRequestBytes: MAX_REQUEST_BYTES });
    } catch (error) {
      await node.stop({ transferLeadership: false });
      throw error;
    }
    let stopping: Promise<void> | undefined;
    const member: ServedMember = {
      name,
      peerUrl: this.peerUrl(name),
      endpoint: `127.0.0.1:${port}`,
      node,
      memberListCalls: () => memberLists,
      running: () => !stopped,
      stop: () => {
        stopping ??= (async () => {
          await node.stop({ transferLeadership: false });
          await server.close({ force: true });
        })();
        return stopping;
      },
    };
    this.members.push(member);
    return member;
  }
}

// The fixture for RaftNode tests: clusters of real RaftNodes on the in-memory twins
// (MemoryTransport on a MemoryNetwork, the memory log, memory-level), on a VirtualClock by
// default: no real timers, no polling. Time moves only while a test waits through its
// driver — settle(promise), until(condition), advance(ms) — and every wait is bounded in
// virtual time, so a promise that never settles fails the test at once instead of hanging.
// A test that also needs real I/O (a gRPC server) passes SYSTEM_CLOCK; the driver then waits
// in real time, bounded the same way.

import assert from 'node:assert/strict';
import { afterEach } from 'node:test';
import { RaftNode } from '../../src/node/index.ts';
import type { RaftNodeOptions } from '../../src/node/index.ts';
import type { KvResponse, RangeResponse } from '../../src/storage/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import type { Clock } from '../../src/util/index.ts';
import { SYSTEM_CLOCK, settleMacrotasks, VirtualClock } from '../../src/util/index.ts';

export const HEARTBEAT_MS = 10;
export const ELECTION_MS = 100;
export const encoder = new TextEncoder();
export const decoder = new TextDecoder();
/** WAIT_MS_MAX is how long (virtual or real) a fixture wait lasts at most unless told otherwise. */
export const WAIT_MS_MAX = 10_000;
// Bounds the virtual tasks one wait may run (a runaway scheduler fails the test).
const WAIT_TASKS_MAX = 1_000_000;
// Real event-loop turns given to promises between two virtual tasks: the memory log and
// memory-level finish their work in a few turns of their own.
const REAL_TURNS_PER_TASK = 3;

/** Driver moves a test's time: virtual time under a VirtualClock, real time under SYSTEM_CLOCK. */
export interface Driver {
  readonly clock: Clock;
  /** settle waits (at most withinMs) until `promise` settles and returns its value or throws its error. */
  settle<T>(promise: Promise<T>, withinMs?: number): Promise<T>;
  /** until waits (at most withinMs) until `condition` holds. */
  until(what: string, condition: () => boolean, withinMs?: number): Promise<void>;
  /** advance lets `ms` pass. */
  advance(ms: number): Promise<void>;
}

/** virtualDriver drives a VirtualClock: it runs tasks one at a time until what it waits for holds. */
export function virtualDriver(clock: VirtualClock): Driver {
  const runUntil = async (what: string, done: () => boolean, withinMs: number): Promise<void> => {
    const endMs = clock.now() + withinMs;
    for (let tasks = 0; tasks < WAIT_TASKS_MAX; tasks += 1) {
      await settleMacrotasks(REAL_TURNS_PER_TASK);
      if (done()) return;
      const due = clock.nextDueMs();
      if (due === undefined || due > endMs) {
        assert.fail(`still waiting ${withinMs} virtual ms later until ${what}${due === undefined ? ' (nothing left to run)' : ''}`);
      }
      clock.runNext();
    }
    assert.fail(`more than ${WAIT_TASKS_MAX} tasks while waiting until ${what}`);
  };
  return {
    clock,
    async settle<T>(promise: Promise<T>, withinMs = WAIT_MS_MAX): Promise<T> {
      let settled = false;
      const watched = promise.finally(() => (settled = true));
      watched.catch(() => undefined);
      await runUntil('a call settles', () => settled, withinMs);
      return watched;
    },
    until: (what, condition, withinMs = WAIT_MS_MAX) => runUntil(what, condition, withinMs),
    async advance(ms: number): Promise<void> {
      await clock.run({ untilMs: clock.now() + ms, settle: () => settleMacrotasks(REAL_TURNS_PER_TASK) });
    },
  };
}

/** systemDriver waits in real time, polling conditions every 5 ms. */
export function systemDriver(): Driver {
  return {
    clock: SYSTEM_CLOCK,
    async settle<T>(promise: Promise<T>, withinMs = WAIT_MS_MAX): Promise<T> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`a call did not settle within ${withinMs} ms`)), withinMs)));
      try {
        return await Promise.race([promise, late]);
      } finally {
        clearTimeout(timer);
      }
    },
    async until(what: string, condition: () => boolean, withinMs = WAIT_MS_MAX): Promise<void> {
      const deadline = Date.now() + withinMs;
      while (!condition()) {
        if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    advance: (ms: number) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
}

export interface TestNodes {
  readonly network: MemoryNetwork;
  readonly nodes: RaftNode[];
  readonly driver: Driver;
  readonly options: (name: string, state: 'new' | 'existing', cluster: readonly { name: string; peerUrls: string[] }[]) => RaftNodeOptions;
}

/** running lists the nodes each test started, with their drivers; they are stopped after it. */
const running: { readonly node: RaftNode; readonly driver: Driver }[] = [];
afterEach(async () => {
  const stopping = running.splice(0);
  for (const { node, driver } of stopping) await driver.settle(node.stop({ transferLeadership: false }));
});

/** track adds a node started by a test to those stopped after it. */
export function track(node: RaftNode, driver: Driver): RaftNode {
  running.push({ node, driver });
  return node;
}

export function peerUrl(name: string): string {
  return `http://${name}.test:2380`;
}

// CountingTransport counts the forwarding calls ('propose') a member makes.
export class CountingTransport extends MemoryTransport {
  proposeCalls = 0;
  override request(...args: Parameters<MemoryTransport['request']>): Promise<Uint8Array> {
    if (args[1] === 'propose') this.proposeCalls += 1;
    return super.request(...args);
  }
}

/** TransportFactory builds one member's MemoryTransport on the test's network, with the test's clock. */
export type TransportFactory<T extends MemoryTransport> = (network: MemoryNetwork, identity: { localId: number; clusterId: number; clock: Clock }) => T;

/** ClusterOptions shape a test cluster; by default 3 members on a VirtualClock. */
export interface ClusterOptions<T extends MemoryTransport> {
  readonly size?: number;
  readonly transports?: Map<number, T>;
  readonly createTransport?: TransportFactory<T>;
  /** 'system' runs on real time (for tests that also do real I/O). */
  readonly clock?: 'virtual' | 'system';
  /** Snapshot triggers and log retention for every member (small counts make snapshots happen in a test). */
  readonly snapshotPolicy?: RaftNodeOptions['snapshotPolicy'];
  /** More options for every member (integrity checks, scrubbing, ...). */
  readonly nodeOptions?: Partial<RaftNodeOptions>;
  /** More options for the member named `name` (n1, n2, ...): a tracer of its own, say. */
  readonly memberOptions?: (name: string) => Partial<RaftNodeOptions>;
}

/** startCluster starts `size` members of a new cluster and waits until every one knows the leader. */
export async function startCluster<T extends MemoryTransport = CountingTransport>(clusterOptions: ClusterOptions<T> = {}): Promise<TestNodes> {
  const size = clusterOptions.size ?? 3;
  const transports = clusterOptions.transports ?? new Map<number, T>();
  const createTransport: TransportFactory<T> = clusterOptions.createTransport ?? ((network, identity) => new CountingTransport(network, identity) as unknown as T);
  const driver = clusterOptions.clock === 'system' ? systemDriver() : virtualDriver(new VirtualClock());
  const network = new MemoryNetwork();
  const cluster = Array.from({ length: size }, (_, index) => ({ name: `n${index + 1}`, peerUrls: [peerUrl(`n${index + 1}`)] }));
  const options = (name: string, state: 'new' | 'existing', initialCluster: readonly { name: string; peerUrls: string[] }[]): RaftNodeOptions => ({
    name,
    initialCluster,
    initialClusterState: state,
    initialClusterToken: 'node-test',
    advertisePeerUrls: [peerUrl(name)],
    advertiseClientUrls: [`http://${name}.test:2379`],
    heartbeatIntervalMs: HEARTBEAT_MS,
    electionTimeoutMs: ELECTION_MS,
    clock: driver.clock,
    ...(clusterOptions.snapshotPolicy !== undefined ? { snapshotPolicy: clusterOptions.snapshotPolicy } : {}),
    ...clusterOptions.nodeOptions,
    ...clusterOptions.memberOptions?.(name),
    createTransport: ({ localId, clusterId }) => {
      const transport = createTransport(network, { localId, clusterId, clock: driver.clock });
      transports.set(localId, transport);
      return transport;
    },
  });
  const nodes = await Promise.all(cluster.map((member) => RaftNode.start(options(member.name, 'new', cluster))));
  for (const node of nodes) track(node, driver);
  await driver.until('every member knows the leader', () => nodes.every((node) => node.status().leaderId !== 0));
  return { network, nodes, driver, options };
}

export function leaderOf(nodes: readonly RaftNode[]): RaftNode {
  const leader = nodes.find((node) => node.status().role === 'leader');
  assert.ok(leader !== undefined, 'a leader exists');
  return leader;
}

export function put(node: RaftNode, key: string, value: string): Promise<KvResponse> {
  return node.kv({ type: 'put', key: encoder.encode(key), value: encoder.encode(value) }, { timeoutMs: 5_000 });
}

export async function read(node: RaftNode, key: string, serializable = false): Promise<string | undefined> {
  const response = (await node.kv({ type: 'range', key: encoder.encode(key), serializable })) as RangeResponse;
  const found = response.kvs[0];
  return found === undefined ? undefined : decoder.decode(found.value);
}

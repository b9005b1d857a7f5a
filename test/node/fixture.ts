// The fixture for RaftNode tests: clusters of real RaftNodes on the in-memory twins
// (MemoryTransport on a MemoryNetwork, the memory log, memory-level). Real timers with short
// intervals; every wait is bounded.

import assert from 'node:assert/strict';
import { afterEach } from 'node:test';
import { RaftNode } from '../../src/node/index.ts';
import type { RaftNodeOptions } from '../../src/node/index.ts';
import type { KvResponse, RangeResponse } from '../../src/storage/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';

export const HEARTBEAT_MS = 10;
export const ELECTION_MS = 100;
export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

export interface TestNodes {
  readonly network: MemoryNetwork;
  readonly nodes: RaftNode[];
  readonly options: (name: string, state: 'new' | 'existing', cluster: readonly { name: string; peerUrls: string[] }[]) => RaftNodeOptions;
}

/** running lists the nodes each test started; they are stopped after it. */
export let running: RaftNode[] = [];
afterEach(async () => {
  await Promise.all(running.map((node) => node.stop({ transferLeadership: false })));
  running = [];
});

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

/** TransportFactory builds one member's MemoryTransport on the test's network. */
export type TransportFactory<T extends MemoryTransport> = (network: MemoryNetwork, identity: { localId: number; clusterId: number }) => T;

export async function startCluster<T extends MemoryTransport = CountingTransport>(
  size: number,
  transports = new Map<number, T>(),
  createTransport: TransportFactory<T> = (network, identity) => new CountingTransport(network, identity) as unknown as T,
): Promise<TestNodes> {
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
    createTransport: ({ localId, clusterId }) => {
      const transport = createTransport(network, { localId, clusterId });
      transports.set(localId, transport);
      return transport;
    },
  });
  const nodes = await Promise.all(cluster.map((member) => RaftNode.start(options(member.name, 'new', cluster))));
  running.push(...nodes);
  await Promise.all(nodes.map((node) => node.waitForLeader({ timeoutMs: 5_000 })));
  return { network, nodes, options };
}

export function leaderOf(nodes: readonly RaftNode[]): RaftNode {
  const leader = nodes.find((node) => node.status().role === 'leader');
  assert.ok(leader !== undefined, 'a leader exists');
  return leader;
}

export async function waitUntil(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function put(node: RaftNode, key: string, value: string): Promise<KvResponse> {
  return node.kv({ type: 'put', key: encoder.encode(key), value: encoder.encode(value) }, { timeoutMs: 5_000 });
}

export async function read(node: RaftNode, key: string, serializable = false): Promise<string | undefined> {
  const response = (await node.kv({ type: 'range', key: encoder.encode(key), serializable })) as RangeResponse;
  const found = response.kvs[0];
  return found === undefined ? undefined : decoder.decode(found.value);
}


// The server tests' backend: one real RaftNode in memory, started as openCluster() starts a
// single in-memory member (the memory log and memory-level, a MemoryTransport on a
// MemoryNetwork of its own), on SYSTEM_CLOCK because the tests do real gRPC I/O, and served
// through RaftNodeBackend, the production backend. startSingleMember resolves once the
// member leads and its published attributes (name, client URLs) are applied, which is when
// etcd starts serving clients; startJoiningMember starts a second real member on the same
// network, for membership tests that need a member that runs.

import { RaftNode } from '../../src/node/index.ts';
import type { InitialClusterMember, RaftNodeOptions } from '../../src/node/index.ts';
import { RaftNodeBackend } from '../../src/server/index.ts';
import type { KvLimits } from '../../src/storage/index.ts';
import { DEFAULT_KV_LIMITS } from '../../src/storage/index.ts';
import { MemoryNetwork, MemoryTransport } from '../../src/transport/index.ts';
import { SYSTEM_CLOCK } from '../../src/util/index.ts';
import { freePorts } from '../client/etcd-process.ts';

/** SINGLE_MEMBER_TOKEN is the cluster token of every test member (member ids derive from it). */
export const SINGLE_MEMBER_TOKEN = 'stratakv-server-test';
/** SINGLE_MEMBER_VERSION is what Maintenance.Status reports. */
export const SINGLE_MEMBER_VERSION = '3.4.0+stratakv.test';
// openCluster()'s timing.
const HEARTBEAT_INTERVAL_MS = 100;
const ELECTION_TIMEOUT_MS = 1_000;
/** READY_WAIT_MS_MAX bounds how long a member may take to be ready. */
export const READY_WAIT_MS_MAX = 10_000;

/** SingleMemberOptions configure the member; every field has openCluster()'s default. */
export interface SingleMemberOptions {
  readonly name?: string;
  /** Advertised peer URLs (default openCluster's http://127.0.0.1:2380); the member id derives from them. */
  readonly peerUrls?: readonly string[];
  /** Advertised client URLs, published to the member table (see freeClientUrl). */
  readonly clientUrls?: readonly string[];
  readonly limits?: Partial<KvLimits>;
}

/** SingleMember is a running member, its backend, and what a joining member needs. */
export interface SingleMember {
  readonly node: RaftNode;
  readonly backend: RaftNodeBackend;
  readonly network: MemoryNetwork;
  readonly initialCluster: readonly InitialClusterMember[];
  /** stop stops the member (idempotent). */
  stop(): Promise<void>;
}

/**
 * freeClientUrl asks the kernel for a free port on 127.0.0.1: the member must advertise its
 * client URL before the server listens on it, as with `stratakv serve`.
 */
export async function freeClientUrl(): Promise<string> {
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error('freePorts(1) gave no port');
  return `http://127.0.0.1:${port}`;
}

/** startSingleMember starts one member of a new cluster and resolves once it is ready (see the file comment). */
export async function startSingleMember(options: SingleMemberOptions = {}): Promise<SingleMember> {
  const name = options.name ?? 'default';
  const peerUrls = options.peerUrls ?? ['http://127.0.0.1:2380'];
  const network = new MemoryNetwork();
  const initialCluster = [{ name, peerUrls }];
  const node = await startReady({
    ...memberOptions(network, { name, peerUrls, clientUrls: options.clientUrls ?? [] }),
    initialCluster,
    initialClusterState: 'new',
    limits: { ...DEFAULT_KV_LIMITS, ...options.limits },
  }, (started) => started.status().role === 'leader');
  return { node, backend: new RaftNodeBackend(node, SINGLE_MEMBER_VERSION), network, initialCluster, stop: () => node.stop() };
}

/**
 * startJoiningMember starts a member that `first` has already added (MemberAdd with these
 * peer URLs), as `--initial-cluster-state existing` does, and resolves once it has caught up
 * with the leader's log and published its attributes.
 */
export async function startJoiningMember(first: SingleMember, options: { readonly name: string; readonly peerUrls: readonly string[] }): Promise<RaftNode> {
  const leader = first.node;
  return startReady({
    ...memberOptions(first.network, { ...options, clientUrls: [] }),
    initialCluster: [...first.initialCluster, { name: options.name, peerUrls: options.peerUrls }],
    initialClusterState: 'existing',
  }, (started) => started.status().appliedIndex >= leader.status().commitIndex);
}

function memberOptions(network: MemoryNetwork, member: { readonly name: string; readonly peerUrls: readonly string[]; readonly clientUrls: readonly string[] }): Omit<RaftNodeOptions, 'initialCluster' | 'initialClusterState'> {
  return {
    name: member.name,
    initialClusterToken: SINGLE_MEMBER_TOKEN,
    advertisePeerUrls: member.peerUrls,
    advertiseClientUrls: member.clientUrls,
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    electionTimeoutMs: ELECTION_TIMEOUT_MS,
    version: SINGLE_MEMBER_VERSION,
    clock: SYSTEM_CLOCK,
    createTransport: ({ localId, clusterId }) => new MemoryTransport(network, { localId, clusterId, clock: SYSTEM_CLOCK }),
  };
}

// startReady starts a node and waits, woken by its hooks rather than by polling, until it has
// published its name and `ready` holds; a node that is not ready in time is stopped.
async function startReady(options: RaftNodeOptions, ready: (node: RaftNode) => boolean): Promise<RaftNode> {
  let check: () => void = () => undefined;
  const node = await RaftNode.start({ ...options, hooks: { onApplied: () => check(), onRoleChange: () => check() } });
  const published = (): boolean => node.members().some((member) => member.id === node.memberId && member.name === options.name);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      check = () => {
        if (published() && ready(node)) resolve();
      };
      timer = setTimeout(() => reject(new Error(`member ${options.name} was not ready within ${READY_WAIT_MS_MAX} ms: ${JSON.stringify(node.status())}`)), READY_WAIT_MS_MAX);
      check();
    });
  } catch (error) {
    await node.stop({ transferLeadership: false });
    throw error;
  } finally {
    clearTimeout(timer);
    check = () => undefined;
  }
  return node;
}

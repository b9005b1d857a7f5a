// A stratakv cluster for the chaos harness: one container per member on a Docker network the
// run creates (containers.ts), peer traffic through the host's peer fabric (peer-fabric.ts:
// per-link delay, jitter, cuts) and partitions and packet loss in an nftables table of the
// run's own (nft.ts). Clients in the host reach each member through a fixed 127.0.0.1 front
// that follows the member's container IP, so a restart that changes the IP changes nothing
// for them, and the members advertise those fronts as their client URLs.
//
// The cluster keeps the network faults that are on (cut pairs, lossy pairs) and installs them
// again whenever a member's IP changes, so a restarted member stays on its side of a
// partition.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { EtcdClient, normalizeEndpoint } from '../../src/client/index.ts';
import type { EndpointStatus } from '../../src/client/index.ts';
import { startChaosNetwork, startMemberContainer, type ChaosNetwork, type MemberContainer } from './containers.ts';
import { NftFirewall, lossRules, partitionRules, type NftRules } from './nft.ts';
import { startPeerFabric, type PeerFabric } from './peer-fabric.ts';

/** PEER_PORT and CLIENT_PORT are the ports members listen on inside their containers. */
export const PEER_PORT = 2380;
export const CLIENT_PORT = 2379;
const MEMBER_START_TIMEOUT_MS = 30_000;
const READY_LINE = /serving/;

/** ChaosMember is one member: its container and its names. */
export interface ChaosMember {
  readonly name: string;
  readonly container: MemberContainer;
  /** hostDataDir: the member's data dir on the host, bind-mounted at /data (its --data-dir). */
  readonly hostDataDir: string;
}

/** ChaosClusterOptions configures ChaosCluster.start. */
export interface ChaosClusterOptions {
  readonly image: string;
  readonly size: number;
  readonly seed: number;
  /** folder: the run's folder on the host (data dirs, logs). */
  readonly folder: string;
  /** serveFlags: extra `stratakv serve` flags for every member. */
  readonly serveFlags?: readonly string[];
  readonly log: (line: string) => void;
}

/** Pair is an unordered pair of member names. */
export type Pair = readonly [string, string];

/** ChaosCluster is a running cluster (see the file comment). */
export class ChaosCluster {
  readonly members: ChaosMember[];
  readonly network: ChaosNetwork;
  readonly fabric: PeerFabric;
  readonly firewall: NftFirewall;
  readonly #log: (line: string) => void;
  // The network faults on, by the fault that made them.
  readonly #partitions = new Map<number, Pair[]>();
  readonly #losses = new Map<number, { pairs: Pair[]; percent: number }>();

  private constructor(members: ChaosMember[], network: ChaosNetwork, fabric: PeerFabric, firewall: NftFirewall, log: (line: string) => void) {
    this.members = members;
    this.network = network;
    this.fabric = fabric;
    this.firewall = firewall;
    this.#log = log;
  }

  /** start creates the network, the fabric and the members, and waits until each has started. */
  static async start(options: ChaosClusterOptions): Promise<ChaosCluster> {
    const names = Array.from({ length: options.size }, (_, index) => `n${index + 1}`);
    const network = await startChaosNetwork({ log: options.log });
    let fabric: PeerFabric | undefined;
    const firewall = new NftFirewall();
    const members: ChaosMember[] = [];
    try {
      fabric = await startPeerFabric({ listenHost: network.gatewayIp, members: names, seed: options.seed, peerPort: PEER_PORT, clientPort: CLIENT_PORT });
      const initialCluster = names.map((name) => `${name}=${fabric?.peerUrlOf(name) ?? ''}`).join(',');
      const starting = names.map(async (name) => {
        const hostDataDir = join(options.folder, name);
        mkdirSync(hostDataDir, { recursive: true });
        const command = [
          'cmd/stratakv.js',
          'serve',
          '--name', name,
          '--data-dir', '/data',
          '--listen-client-urls', `http://0.0.0.0:${CLIENT_PORT}`,
          '--advertise-client-urls', fabric?.clientUrlOf(name) ?? '',
          '--listen-peer-urls', `http://0.0.0.0:${PEER_PORT}`,
          '--initial-advertise-peer-urls', fabric?.peerUrlOf(name) ?? '',
          '--initial-cluster', initialCluster,
          '--initial-cluster-token', `chaos-${options.seed}`,
          '--initial-cluster-state', 'new',
          ...(options.serveFlags ?? []),
        ];
        const container = await startMemberContainer({ network, image: options.image, name, command, dataDir: hostDataDir, readyLine: READY_LINE, startTimeoutMs: MEMBER_START_TIMEOUT_MS });
        fabric?.setMemberIp(name, container.ip());
        return { name, container, hostDataDir };
      });
      const settled = await Promise.allSettled(starting);
      for (const result of settled) if (result.status === 'fulfilled') members.push(result.value);
      const failed = settled.find((result) => result.status === 'rejected');
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
      members.sort((a, b) => a.name.localeCompare(b.name));
      return new ChaosCluster(members, network, fabric, firewall, options.log);
    } catch (error) {
      await Promise.allSettled(members.map((member) => member.container.remove()));
      await fabric?.close();
      firewall.close();
      await network.close();
      throw error;
    }
  }

  member(name: string): ChaosMember {
    const member = this.members.find((candidate) => candidate.name === name);
    if (member === undefined) throw new Error(`no member named ${name} (members: ${this.members.map((each) => each.name).join(', ')})`);
    return member;
  }

  /** clientEndpoints are the members' 127.0.0.1 fronts. */
  clientEndpoints(): string[] {
    return this.members.map((member) => this.fabric.clientEndpointOf(member.name));
  }

  /** client makes an EtcdClient over `endpoints` (every member by default); the caller closes it. */
  client(options: { readonly endpoints?: readonly string[]; readonly timeoutMs: number }): EtcdClient {
    return new EtcdClient({ endpoints: options.endpoints ?? this.clientEndpoints(), timeoutMs: options.timeoutMs });
  }

  /** statusAll asks every member's Status (each bounded); a member that does not answer has no status. */
  async statusAll(timeoutMs: number): Promise<{ name: string; status: EndpointStatus | undefined }[]> {
    const client = this.client({ timeoutMs });
    try {
      const answers = await client.statusAll({ timeoutMs });
      const statusOf = (name: string): EndpointStatus | undefined => {
        const answer = answers.find((each) => normalizeEndpoint(each.endpoint) === normalizeEndpoint(this.fabric.clientEndpointOf(name)));
        return answer?.ok === true ? answer.status : undefined;
      };
      return this.members.map((member) => ({ name: member.name, status: statusOf(member.name) }));
    } finally {
      client.close();
    }
  }

  /** leaderName answers the member the answering majority names as leader, if any. */
  async leaderName(timeoutMs: number): Promise<string | undefined> {
    const statuses = await this.statusAll(timeoutMs);
    const votes = new Map<bigint, number>();
    const idToName = new Map<bigint, string>();
    for (const { name, status } of statuses) {
      if (status === undefined) continue;
      idToName.set(BigInt(status.memberId), name);
      const leader = BigInt(status.leaderId);
      if (leader !== 0n) votes.set(leader, (votes.get(leader) ?? 0) + 1);
    }
    let best: bigint | undefined;
    for (const [id, count] of votes) if (best === undefined || count > (votes.get(best) ?? 0)) best = id;
    return best === undefined ? undefined : idToName.get(best);
  }

  /** memberRestarted tells the fabric and the firewall a member's (maybe new) IP after a start. */
  memberRestarted(name: string): void {
    this.fabric.setMemberIp(name, this.member(name).container.ip());
    this.#installNetworkFaults();
  }

  /**
   * addPartition cuts `pairs` for fault `id`; removePartition(id) heals that fault's pairs only,
   * so overlapping partitions each end when their own fault does.
   */
  addPartition(id: number, pairs: readonly Pair[]): string {
    this.#partitions.set(id, [...pairs]);
    return this.#installNetworkFaults();
  }

  removePartition(id: number): string {
    this.#partitions.delete(id);
    return this.#installNetworkFaults();
  }

  /** addLoss makes `pairs` lossy for fault `id`; removeLoss(id) ends that fault's loss only. */
  addLoss(id: number, pairs: readonly Pair[], percent: number): string {
    this.#losses.set(id, { pairs: [...pairs], percent });
    return this.#installNetworkFaults();
  }

  removeLoss(id: number): string {
    this.#losses.delete(id);
    return this.#installNetworkFaults();
  }

  /** clearNetworkFaults ends every partition and loss. */
  clearNetworkFaults(): string {
    this.#partitions.clear();
    this.#losses.clear();
    return this.#installNetworkFaults();
  }

  #installNetworkFaults(): string {
    if (this.#partitions.size === 0 && this.#losses.size === 0) {
      this.firewall.heal();
      return 'healed';
    }
    const addressing = this.fabric.addressing();
    const cutPairs = [...this.#partitions.values()].flat();
    const rules: NftRules = {
      drop: partitionRules(cutPairs, addressing).drop,
      loss: [...this.#losses.values()].flatMap(({ pairs, percent }) => lossRules(pairs, addressing, percent).loss),
    };
    const text = this.firewall.apply(rules);
    this.#log(`  nft: ${cutPairs.length} cut pair(s) from ${this.#partitions.size} partition(s), ${this.#losses.size} lossy fault(s)`);
    return text;
  }

  /** close removes every container, the fabric, the firewall table and the network. */
  async close(): Promise<void> {
    const results = await Promise.allSettled(this.members.map((member) => member.container.remove()));
    this.firewall.close();
    await this.fabric.close();
    await this.network.close();
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }
}

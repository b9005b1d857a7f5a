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
//
// Members come and go during a run: startJoiner starts a new member (a fresh name n4, n5, ...,
// never reused; a fresh data dir; new fabric listeners, since a removed member's peer URL is
// refused forever) with `stratakv serve --join`, which waits, serving nothing, until someone
// adds it (the nemesis with MemberAdd, or `stratakv migrate`); retireMember drops a member that
// left the cluster (its container, its listeners, its pairs in the network faults). `members`
// is always the current list, and everything that asks the cluster (statusAll, leaderName,
// client, clientEndpoints) asks the current members.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { EtcdClient, normalizeEndpoint } from '../../src/client/index.ts';
import type { EndpointStatus } from '../../src/client/index.ts';
import { startChaosNetwork, startMemberContainer, type ChaosNetwork, type MemberContainer } from './containers.ts';
import { NftFirewall, lossRules, partitionRules, type NftRules } from './nft.ts';
import { startPeerFabric, type PeerFabric } from './peer-fabric.ts';
import { logLinePattern } from '../obs/log-records.ts';

/** JOIN_WAITING_MESSAGE is what `serve --join` logs once its peer URLs answer Join.Waiting (cmd/serve.ts). */
const JOIN_WAITING_MESSAGE = '--join: the peer URLs answer Join.Waiting until this member is added';

/** PEER_PORT and CLIENT_PORT are the ports members listen on inside their containers. */
export const PEER_PORT = 2380;
export const CLIENT_PORT = 2379;
const MEMBER_START_TIMEOUT_MS = 30_000;
/** READY_LINE: a member is up once it logs `serving` (a JSON log line, src/obs/logger.ts). */
const READY_LINE = logLinePattern('serving');
/** JOINER_READY_LINE: a joining member is up once it waits to be added (or, on a restart after it was added, serves). */
const JOINER_READY_LINE = logLinePattern(JOIN_WAITING_MESSAGE, 'serving');

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
  readonly network: ChaosNetwork;
  readonly fabric: PeerFabric;
  readonly firewall: NftFirewall;
  readonly #options: ChaosClusterOptions;
  readonly #log: (line: string) => void;
  // The current members, by name number. Invariant: every one is in fabric.members.
  #members: ChaosMember[];
  // The number of the last name given out (n1 ... nK); names are never reused.
  #lastMemberNumber: number;
  // The network faults on, by the fault that made them.
  readonly #partitions = new Map<number, Pair[]>();
  readonly #losses = new Map<number, { pairs: Pair[]; percent: number }>();

  private constructor(members: ChaosMember[], network: ChaosNetwork, fabric: PeerFabric, firewall: NftFirewall, options: ChaosClusterOptions) {
    this.#members = members;
    this.network = network;
    this.fabric = fabric;
    this.firewall = firewall;
    this.#options = options;
    this.#log = options.log;
    this.#lastMemberNumber = members.length;
  }

  /** folder is the run's folder on the host (data dirs, logs). */
  get folder(): string {
    return this.#options.folder;
  }

  /** members are the current members, sorted by name number (a copy: members change during the run). */
  get members(): readonly ChaosMember[] {
    return [...this.#members];
  }

  /** start creates the network, the fabric and the members, and waits until each has started. */
  static async start(options: ChaosClusterOptions): Promise<ChaosCluster> {
    const names = Array.from({ length: options.size }, (_, index) => `n${index + 1}`);
    const network = await startChaosNetwork({ log: options.log });
    let fabric: PeerFabric | undefined;
    const firewall = new NftFirewall();
    const members: ChaosMember[] = [];
    try {
      // passHostDials: `stratakv migrate` probes new members' peer URLs from the host.
      const started = await startPeerFabric({ listenHost: network.gatewayIp, members: names, seed: options.seed, peerPort: PEER_PORT, clientPort: CLIENT_PORT, passHostDials: true });
      fabric = started;
      const initialCluster = names.map((name) => `${name}=${started.peerUrlOf(name)}`).join(',');
      const starting = names.map(async (name) => {
        const hostDataDir = join(options.folder, name);
        mkdirSync(hostDataDir, { recursive: true });
        const command = memberCommand(name, started, options, [
          '--initial-cluster', initialCluster,
          '--initial-cluster-token', `chaos-${options.seed}`,
          '--initial-cluster-state', 'new',
        ]);
        const container = await startMemberContainer({ network, image: options.image, name, command, dataDir: hostDataDir, readyLine: READY_LINE, startTimeoutMs: MEMBER_START_TIMEOUT_MS });
        started.setMemberIp(name, container.ip());
        return { name, container, hostDataDir };
      });
      const settled = await Promise.allSettled(starting);
      for (const result of settled) if (result.status === 'fulfilled') members.push(result.value);
      const failed = settled.find((result) => result.status === 'rejected');
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
      members.sort((a, b) => memberNumber(a.name) - memberNumber(b.name));
      return new ChaosCluster(members, network, started, firewall, options);
    } catch (error) {
      await Promise.allSettled(members.map((member) => member.container.remove()));
      await fabric?.close();
      firewall.close();
      await network.close();
      throw error;
    }
  }

  member(name: string): ChaosMember {
    const member = this.#members.find((candidate) => candidate.name === name);
    if (member === undefined) throw new Error(`no member named ${name} (members: ${this.#members.map((each) => each.name).join(', ')})`);
    return member;
  }

  /** hasMember tells whether `name` is a current member (not retired). */
  hasMember(name: string): boolean {
    return this.#members.some((member) => member.name === name);
  }

  /**
   * startJoiner starts a new member under the next name (n4, n5, ...) with a fresh data dir,
   * new fabric listeners and `stratakv serve --join` at the current members' client ports
   * (inside the network: http://<name>:2379), and answers it once it waits to be added
   * (Join.Waiting). It is a member of this cluster from then on (partitions and kills may
   * meet it); the caller adds it to the Raft cluster (MemberAdd, or stratakv migrate).
   */
  async startJoiner(options: { readonly zone?: string } = {}): Promise<ChaosMember> {
    this.#lastMemberNumber += 1;
    const name = `n${this.#lastMemberNumber}`;
    const joinUrls = this.#members.map((member) => `http://${member.name}:${CLIENT_PORT}`);
    if (joinUrls.length === 0) throw new Error(`cannot start ${name} with --join: the cluster has no member left`);
    await this.fabric.addMember(name);
    try {
      const hostDataDir = join(this.#options.folder, name);
      mkdirSync(hostDataDir, { recursive: true });
      const command = memberCommand(name, this.fabric, this.#options, ['--join', joinUrls.join(','), ...(options.zone === undefined ? [] : ['--zone', options.zone])]);
      const container = await startMemberContainer({ network: this.network, image: this.#options.image, name, command, dataDir: hostDataDir, readyLine: JOINER_READY_LINE, startTimeoutMs: MEMBER_START_TIMEOUT_MS });
      const member = { name, container, hostDataDir };
      this.#members = [...this.#members, member].sort((a, b) => memberNumber(a.name) - memberNumber(b.name));
      this.memberRestarted(name);
      return member;
    } catch (error) {
      await this.fabric.removeMember(name);
      throw error;
    }
  }

  /**
   * retireMember drops a member that left the Raft cluster: removes its container (killing it
   * if it still runs), closes its fabric listeners and takes its pairs out of the network
   * faults. Its data dir and log stay in the run's folder.
   */
  async retireMember(name: string): Promise<void> {
    const member = this.member(name);
    await member.container.remove();
    this.#members = this.#members.filter((candidate) => candidate !== member);
    await this.fabric.removeMember(name);
    this.#installNetworkFaults();
  }

  /** clientEndpoints are the members' 127.0.0.1 fronts. */
  clientEndpoints(): string[] {
    return this.#members.map((member) => this.fabric.clientEndpointOf(member.name));
  }

  /**
   * client makes an EtcdClient over `endpoints` (every current member by default); the caller
   * closes it. With autoSyncIntervalMs it follows the cluster's members (MemberList answers
   * the fronts, which the host reaches).
   */
  client(options: { readonly endpoints?: readonly string[]; readonly timeoutMs: number; readonly autoSyncIntervalMs?: number }): EtcdClient {
    return new EtcdClient({ endpoints: options.endpoints ?? this.clientEndpoints(), timeoutMs: options.timeoutMs, ...(options.autoSyncIntervalMs === undefined ? {} : { autoSyncIntervalMs: options.autoSyncIntervalMs }) });
  }

  /** statusAll asks every member's Status (each bounded); a member that does not answer has no status. */
  async statusAll(timeoutMs: number): Promise<{ name: string; status: EndpointStatus | undefined }[]> {
    const members = this.#members;
    const client = this.client({ endpoints: members.map((member) => this.fabric.clientEndpointOf(member.name)), timeoutMs });
    try {
      const answers = await client.statusAll({ timeoutMs });
      const statusOf = (name: string): EndpointStatus | undefined => {
        const answer = answers.find((each) => normalizeEndpoint(each.endpoint) === normalizeEndpoint(this.fabric.clientEndpointOf(name)));
        return answer?.ok === true ? answer.status : undefined;
      };
      return members.map((member) => ({ name: member.name, status: statusOf(member.name) }));
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
    // A fault's pairs with a member that has left since are left out (its addresses are gone).
    const current = (pair: Pair): boolean => this.hasMember(pair[0]) && this.hasMember(pair[1]);
    const cutPairs = [...this.#partitions.values()].flat().filter(current);
    const rules: NftRules = {
      drop: partitionRules(cutPairs, addressing).drop,
      loss: [...this.#losses.values()].flatMap(({ pairs, percent }) => lossRules(pairs.filter(current), addressing, percent).loss),
    };
    const text = this.firewall.apply(rules);
    this.#log(`  nft: ${cutPairs.length} cut pair(s) from ${this.#partitions.size} partition(s), ${this.#losses.size} lossy fault(s)`);
    return text;
  }

  /** close removes every container, the fabric, the firewall table and the network. */
  async close(): Promise<void> {
    const results = await Promise.allSettled(this.#members.map((member) => member.container.remove()));
    this.firewall.close();
    await this.fabric.close();
    await this.network.close();
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }
}

// memberCommand is a member's `node` arguments: serve with its name, ports and fabric URLs, the
// cluster's extra flags, and `how` it starts (--initial-cluster ... or --join ...).
function memberCommand(name: string, fabric: PeerFabric, options: ChaosClusterOptions, how: readonly string[]): string[] {
  return [
    'cmd/stratakv.js',
    'serve',
    '--name', name,
    '--data-dir', '/data',
    '--listen-client-urls', `http://0.0.0.0:${CLIENT_PORT}`,
    '--advertise-client-urls', fabric.clientUrlOf(name),
    '--listen-peer-urls', `http://0.0.0.0:${PEER_PORT}`,
    '--initial-advertise-peer-urls', fabric.peerUrlOf(name),
    ...how,
    ...(options.serveFlags ?? []),
  ];
}

// memberNumber is K of the name nK, for ordering n2 before n10.
function memberNumber(name: string): number {
  return Number(/^n(\d+)$/.exec(name)?.[1] ?? Number.NaN);
}

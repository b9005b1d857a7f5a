// peer-fabric.ts — the chaos harness's peer fabric: every member's peer traffic passes through
// listeners of ours in the test process, which delay, cut or blackhole each member pair.
//
// Each member X in a container advertises the peer URL http://<gateway IP>:<pX>: a TcpProxy
// (../net/tcp-proxy.ts) listens there and forwards each connection to X's current container
// IP at the peer port (2380). A connection's source address is the container IP of the member
// that dialled, so the proxy puts it on the link named after that member (classify), and the
// fabric keeps each unordered pair {A, X} on two proxy links: "A" on X's proxy (A dialled X:
// up is A → X) and "X" on A's proxy (X dialled A: up is X → A). A fault on the pair is set on
// both, so it holds whichever side dialled and however many connections there are.
//
// Each member also has a client front on 127.0.0.1:<port> forwarding to its container IP at
// the client port (2379), with no faults, so clients in the host keep one endpoint per member
// across restarts that change the container's IP; members advertise those as client URLs.
//
// Members can come and go during a run (a member replaced, a migration onto new members):
// addMember binds a new member's two listeners, removeMember closes a member's listeners and
// forgets its pairs. A name is never used twice: a removed member's peer URL is refused by the
// cluster forever, so its successor needs a new name and new ports anyway.
//
// What it guarantees:
// - A member's ports are bound by startPeerFabric or addMember, before the member starts, and
//   never change while it is a member.
// - A connection from an address that is no member's current IP is refused (reset) and counted
//   (connectionsUnknownSource), except the host's own dials with passHostDials (below). A
//   connection to a member with no IP yet is refused.
// - With passHostDials, a connection whose source is an address of this host (the host itself
//   dialling a peer URL: `stratakv migrate`'s Join.Waiting probe of a new member) passes on the
//   link HOST_LINK, which never has faults. Not only listenHost: Docker's masquerade rule
//   rewrites the host's dials to its own bridge address (they leave through lo, not the bridge)
//   to the address of another interface.
// - setMemberIp retargets new connections. When an IP changes, every connection to the member
//   (dialled or held) and every connection from its old address is reset, as the kernel of a
//   restarted host would: a member restarted elsewhere does not keep its predecessor's streams.
//   Until setMemberIp is called, connections to a stopped member hang as they would on a real
//   network (no reset comes from a vanished host).
// - Link faults: a delay applies per direction (setOneWayDelay), a cut resets the pair's
//   connections and refuses new ones, a blackhole holds them silently; restoreLink clears all
//   of a pair's faults and restoreAll every pair's. Faults outlive IP changes (they are kept
//   by member name).
// - After close() (idempotent; settles when every listener and socket is closed), the fault
//   methods and setMemberIp do nothing, so a nemesis may race the teardown.
import net from 'node:net';
import os from 'node:os';
import { DELAY_MS_MAX, startTcpProxy } from '../net/tcp-proxy.ts';
import type { TcpProxy, TcpProxyLinkMode, TcpProxyRestoreOptions } from '../net/tcp-proxy.ts';
import type { FabricAddressing } from './nft.ts';

/** PEER_PORT_DEFAULT and CLIENT_PORT_DEFAULT are the ports members listen on in their containers. */
export const PEER_PORT_DEFAULT = 2380;
export const CLIENT_PORT_DEFAULT = 2379;

/** MEMBERS_MAX bounds the members of one fabric at a time (each costs two listeners). */
export const MEMBERS_MAX = 64;
/** MEMBER_NAMES_MAX bounds the names a fabric ever gives out (members added over a run included). */
export const MEMBER_NAMES_MAX = 1024;
/** HOST_LINK is the link of the host's own dials to peer listeners (passHostDials); it never has faults. */
export const HOST_LINK = '@host';

const MEMBER_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** PeerFabricErrorCode is the catalogue of PeerFabricError codes. */
export type PeerFabricErrorCode =
  /** A member name is not one of the fabric's members. */
  | 'FABRIC_UNKNOWN_MEMBER'
  /** An argument is malformed: an IP, a delay, a pair of one member, a seed, a port. */
  | 'FABRIC_ARGUMENT_INVALID'
  /** A listener could not bind (the address is not on this host, the port is taken). */
  | 'FABRIC_LISTEN_FAILED'
  /** addMember after close(). */
  | 'FABRIC_CLOSED';

/** PeerFabricError is an error of the fabric with a stable code and the failing cause. */
export class PeerFabricError extends Error {
  override readonly name = 'PeerFabricError';
  readonly code: PeerFabricErrorCode;

  constructor(code: PeerFabricErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** PeerFabricOptions configures startPeerFabric. */
export interface PeerFabricOptions {
  /** listenHost is the gateway IP of the members' network: the peer listeners bind there. */
  readonly listenHost: string;
  /** members are the member names, in the order their ports are bound. */
  readonly members: readonly string[];
  /** seed (an integer in [0, 2^32)) makes the jitter replay; print it when a run fails. */
  readonly seed: number;
  /** peerPort is the port members listen on for peers in their containers; 2380 by default. */
  readonly peerPort?: number;
  /** clientPort is the port members listen on for clients in their containers; 2379 by default. */
  readonly clientPort?: number;
  /** clientListenHost is where the client fronts listen; 127.0.0.1 by default. */
  readonly clientListenHost?: string;
  /**
   * passHostDials lets connections from this host's own addresses (the host dialling a peer
   * URL) pass on the link HOST_LINK instead of refusing them; false by default.
   */
  readonly passHostDials?: boolean;
}

/** PeerFabricLinkStats is one member pair's faults and traffic; a sorts before b. */
export interface PeerFabricLinkStats {
  readonly a: string;
  readonly b: string;
  readonly mode: TcpProxyLinkMode;
  readonly delayMsAToB: number;
  readonly jitterMsAToB: number;
  readonly delayMsBToA: number;
  readonly jitterMsBToA: number;
  /** connectionsOpen counts the pair's connections held or open, whichever side dialled. */
  readonly connectionsOpen: number;
  readonly connectionsTotal: number;
  /** connectionsRefused counts the pair's connections reset on accept (a cut link). */
  readonly connectionsRefused: number;
  /** bytesAToB counts bytes relayed from a to b; bytesBToA the other way. */
  readonly bytesAToB: number;
  readonly bytesBToA: number;
}

/** PeerFabricMemberStats is one member's addresses and its listeners' counters. */
export interface PeerFabricMemberStats {
  readonly name: string;
  readonly ip: string | null;
  readonly peerUrl: string;
  readonly clientEndpoint: string;
  /** peerConnectionsRefused counts connections to the member's peer listener reset on accept. */
  readonly peerConnectionsRefused: number;
  readonly clientConnectionsOpen: number;
  readonly clientConnectionsTotal: number;
  readonly clientConnectionsRefused: number;
}

/** PeerFabricStats is a snapshot of the fabric. */
export interface PeerFabricStats {
  readonly links: readonly PeerFabricLinkStats[];
  readonly members: readonly PeerFabricMemberStats[];
  /** connectionsUnknownSource counts peer connections refused because no member has their source IP. */
  readonly connectionsUnknownSource: number;
}

/** PeerFabric is a running fabric; see the file header and startPeerFabric. */
export interface PeerFabric {
  readonly seed: number;
  readonly gatewayIp: string;
  /** members are the current members' names, in the order they were bound. */
  readonly members: readonly string[];
  /**
   * addMember binds a peer listener and a client front for a new member (no IP until
   * setMemberIp) and makes its pairs with every current member. Rejects with
   * FABRIC_ARGUMENT_INVALID for a name in use or used before, FABRIC_LISTEN_FAILED when a
   * listener cannot bind (nothing is left open), FABRIC_CLOSED after close().
   */
  addMember(name: string): Promise<void>;
  /**
   * removeMember closes the member's listeners (resetting their connections), resets the
   * connections it dialled to others, and forgets its pairs and faults; the name is not given
   * out again. Settles when its listeners are closed.
   */
  removeMember(name: string): Promise<void>;
  /** peerUrlOf is the member's peer URL (http://<gateway>:<port>), for its flags and the cluster's. */
  peerUrlOf(name: string): string;
  /** peerPortOf is the port of the member's peer listener on the gateway (for nft rules). */
  peerPortOf(name: string): number;
  /** clientEndpointOf is the member's client front, `127.0.0.1:port`. */
  clientEndpointOf(name: string): string;
  /** clientUrlOf is http://<client front>, for --advertise-client-urls. */
  clientUrlOf(name: string): string;
  /** memberIpOf is the member's container IP as last set, or null. */
  memberIpOf(name: string): string | null;
  /**
   * setMemberIp sets the member's container IP (null: it has none, e.g. stopped); see the
   * file header. An IP another member held is taken from it (that member has none until set).
   */
  setMemberIp(name: string, ip: string | null): void;
  /** setLinkDelay delays each direction of the pair by oneWayMs plus a seeded jitter in [0, jitterMs). */
  setLinkDelay(a: string, b: string, oneWayMs: number, jitterMs?: number): void;
  /** setOneWayDelay delays only bytes from `from` to `to`. */
  setOneWayDelay(from: string, to: string, delayMs: number, jitterMs?: number): void;
  /** cutLink resets the pair's connections and refuses new ones until restored. */
  cutLink(a: string, b: string): void;
  /** blackholeLink holds the pair's bytes silently (no reset, no dial) until restored. */
  blackholeLink(a: string, b: string): void;
  /**
   * restoreLink clears all of the pair's faults: the cut or blackhole (what a blackhole held
   * is released, or with { drop: true } reset) and the delays.
   */
  restoreLink(a: string, b: string, options?: TcpProxyRestoreOptions): void;
  /** restoreAll is restoreLink for every pair. */
  restoreAll(options?: TcpProxyRestoreOptions): void;
  /** addressing is what nft.ts's partitionRules and lossRules need, from the fabric's view. */
  addressing(): FabricAddressing;
  stats(): PeerFabricStats;
  /** close stops every listener and resets every connection; idempotent. */
  close(): Promise<void>;
}

/**
 * startPeerFabric binds one peer listener (on listenHost) and one client front (on 127.0.0.1)
 * per member, on ports the system picks, and returns the fabric. Members have no IP until
 * setMemberIp. Rejects with FABRIC_LISTEN_FAILED if a listener cannot bind (listenHost must
 * be an address of this host: create the network before the fabric), leaving nothing open.
 */
export async function startPeerFabric(options: PeerFabricOptions): Promise<PeerFabric> {
  const listenHost = checkIp(options.listenHost, 'listenHost');
  const clientListenHost = checkIp(options.clientListenHost ?? '127.0.0.1', 'clientListenHost');
  const peerPort = checkPort(options.peerPort ?? PEER_PORT_DEFAULT, 'peerPort');
  const clientPort = checkPort(options.clientPort ?? CLIENT_PORT_DEFAULT, 'clientPort');
  const seed = options.seed;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
    throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `seed ${seed} is not an integer in [0, 2^32)`);
  }
  const names = [...options.members];
  if (names.length === 0 || names.length > MEMBERS_MAX) {
    throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `a fabric has 1 to ${MEMBERS_MAX} members, not ${names.length}`);
  }
  for (const name of names) checkName(name);
  if (new Set(names).size !== names.length) {
    throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `member names repeat: ${names.join(', ')}`);
  }

  const fabric = new RunningPeerFabric({ seed, gatewayIp: listenHost, clientListenHost, peerPort, clientPort, passHostDials: options.passHostDials === true });
  try {
    for (const name of names) await fabric.addMember(name);
  } catch (error) {
    await fabric.close();
    throw error;
  }
  return fabric;
}

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !MEMBER_NAME_PATTERN.test(name)) {
    throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `member name ${JSON.stringify(name)} is not a name ([A-Za-z0-9_.-]{1,64})`);
  }
}

interface MemberState {
  readonly name: string;
  readonly peerProxy: TcpProxy;
  readonly clientProxy: TcpProxy;
  // Invariant: ip !== null iff memberByIp.get(ip) === name.
  ip: string | null;
}

interface DirectionDelay {
  delayMs: number;
  jitterMs: number;
}

// PairFaults are the faults of one unordered pair; a sorts before b.
interface PairFaults {
  readonly a: string;
  readonly b: string;
  mode: TcpProxyLinkMode;
  readonly aToB: DirectionDelay;
  readonly bToA: DirectionDelay;
}

class RunningPeerFabric implements PeerFabric {
  readonly seed: number;
  readonly gatewayIp: string;
  readonly #clientListenHost: string;
  readonly #peerPort: number;
  readonly #clientPort: number;
  readonly #passHostDials: boolean;
  // The current members, in the order they were bound.
  private readonly memberStates = new Map<string, MemberState>();
  // Invariant: every key of memberStates is in namesUsed; namesUsed.size <= MEMBER_NAMES_MAX.
  readonly #namesUsed = new Set<string>();
  private readonly memberByIp = new Map<string, string>();
  // One entry per unordered pair of current members; keyed by pairKey.
  private readonly pairs = new Map<string, PairFaults>();
  private closing: Promise<void> | null = null;

  constructor(config: { seed: number; gatewayIp: string; clientListenHost: string; peerPort: number; clientPort: number; passHostDials: boolean }) {
    this.seed = config.seed;
    this.gatewayIp = config.gatewayIp;
    this.#clientListenHost = config.clientListenHost;
    this.#peerPort = config.peerPort;
    this.#clientPort = config.clientPort;
    this.#passHostDials = config.passHostDials;
  }

  get members(): readonly string[] {
    return [...this.memberStates.keys()];
  }

  async addMember(name: string): Promise<void> {
    checkName(name);
    if (this.closing !== null) throw new PeerFabricError('FABRIC_CLOSED', `the fabric is closed; cannot add member ${name}`);
    if (this.#namesUsed.has(name)) throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `member name ${name} is in use or was used before (names are never reused)`);
    if (this.memberStates.size >= MEMBERS_MAX) throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `a fabric has at most ${MEMBERS_MAX} members at a time`);
    if (this.#namesUsed.size >= MEMBER_NAMES_MAX) throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `a fabric gives out at most ${MEMBER_NAMES_MAX} member names`);
    // Reserved before the first await, so two adds of one name cannot both bind.
    const stream = this.#namesUsed.size;
    this.#namesUsed.add(name);
    const classify = (remoteAddress: string): string | null => {
      const address = normalizeIp(remoteAddress);
      return this.memberByIp.get(address) ?? (this.#passHostDials && isHostAddress(address) ? HOST_LINK : null);
    };
    const peerProxy = await listen(`the peer listener of ${name} on ${this.gatewayIp}`, () => startTcpProxy({
      listenHost: this.gatewayIp,
      targetHost: null,
      targetPort: this.#peerPort,
      seed: deriveSeed(this.seed, 2 * stream),
      classify,
    }));
    let clientProxy: TcpProxy;
    try {
      clientProxy = await listen(`the client front of ${name} on ${this.#clientListenHost}`, () => startTcpProxy({
        listenHost: this.#clientListenHost,
        targetHost: null,
        targetPort: this.#clientPort,
        seed: deriveSeed(this.seed, 2 * stream + 1),
      }));
    } catch (error) {
      await peerProxy.close();
      throw error;
    }
    // close() may have begun while the listeners bound: they are not the fabric's yet, so close them here.
    if (this.closing !== null) {
      await Promise.all([peerProxy.close(), clientProxy.close()]);
      throw new PeerFabricError('FABRIC_CLOSED', `the fabric closed while member ${name} was being added`);
    }
    for (const other of this.memberStates.keys()) {
      const [a, b] = other < name ? [other, name] : [name, other];
      this.pairs.set(pairKey(a, b), { a, b, mode: 'pass', aToB: { delayMs: 0, jitterMs: 0 }, bToA: { delayMs: 0, jitterMs: 0 } });
    }
    this.memberStates.set(name, { name, peerProxy, clientProxy, ip: null });
  }

  async removeMember(name: string): Promise<void> {
    const member = this.member(name);
    if (this.closing !== null) return;
    // Its pairs' faults are cleared on both sides (what a blackhole held is dropped), then forgotten.
    for (const [key, faults] of [...this.pairs]) {
      if (faults.a !== name && faults.b !== name) continue;
      this.restorePair(faults, { drop: true });
      this.pairs.delete(key);
    }
    // What it dialled to the others goes with it.
    for (const other of this.memberStates.values()) if (other !== member) other.peerProxy.resetConnections(name);
    if (member.ip !== null) this.memberByIp.delete(member.ip);
    member.ip = null;
    this.memberStates.delete(name);
    await Promise.all([member.peerProxy.close(), member.clientProxy.close()]);
  }

  peerUrlOf(name: string): string {
    return `http://${hostPort(this.gatewayIp, this.member(name).peerProxy.port)}`;
  }

  peerPortOf(name: string): number {
    return this.member(name).peerProxy.port;
  }

  clientEndpointOf(name: string): string {
    return this.member(name).clientProxy.address;
  }

  clientUrlOf(name: string): string {
    return `http://${this.clientEndpointOf(name)}`;
  }

  memberIpOf(name: string): string | null {
    return this.member(name).ip;
  }

  setMemberIp(name: string, ip: string | null): void {
    const member = this.member(name);
    const address = ip === null ? null : normalizeIp(checkIp(ip, `the IP of member ${name}`));
    if (this.closing !== null || member.ip === address) return;
    if (address !== null) {
      const holder = this.memberByIp.get(address);
      if (holder !== undefined) this.setMemberIp(holder, null);
    }
    if (member.ip !== null) {
      // The member moved: what went to or came from its old address belongs to a dead process.
      this.memberByIp.delete(member.ip);
      member.peerProxy.resetConnections();
      member.clientProxy.resetConnections();
      for (const other of this.memberStates.values()) other.peerProxy.resetConnections(name);
    }
    member.ip = address;
    if (address !== null) this.memberByIp.set(address, name);
    member.peerProxy.setTarget(address);
    member.clientProxy.setTarget(address);
  }

  setLinkDelay(a: string, b: string, oneWayMs: number, jitterMs = 0): void {
    const faults = this.pair(a, b);
    checkDelay(oneWayMs, jitterMs);
    if (this.closing !== null) return;
    faults.aToB.delayMs = oneWayMs;
    faults.aToB.jitterMs = jitterMs;
    faults.bToA.delayMs = oneWayMs;
    faults.bToA.jitterMs = jitterMs;
    this.pushDelays(faults);
  }

  setOneWayDelay(from: string, to: string, delayMs: number, jitterMs = 0): void {
    const faults = this.pair(from, to);
    checkDelay(delayMs, jitterMs);
    if (this.closing !== null) return;
    const direction = from === faults.a ? faults.aToB : faults.bToA;
    direction.delayMs = delayMs;
    direction.jitterMs = jitterMs;
    this.pushDelays(faults);
  }

  cutLink(a: string, b: string): void {
    const faults = this.pair(a, b);
    if (this.closing !== null) return;
    faults.mode = 'cut';
    this.member(faults.b).peerProxy.cutLink(faults.a);
    this.member(faults.a).peerProxy.cutLink(faults.b);
  }

  blackholeLink(a: string, b: string): void {
    const faults = this.pair(a, b);
    if (this.closing !== null) return;
    faults.mode = 'blackhole';
    this.member(faults.b).peerProxy.blackholeLink(faults.a);
    this.member(faults.a).peerProxy.blackholeLink(faults.b);
  }

  restoreLink(a: string, b: string, options: TcpProxyRestoreOptions = {}): void {
    const faults = this.pair(a, b);
    if (this.closing !== null) return;
    this.restorePair(faults, options);
  }

  restoreAll(options: TcpProxyRestoreOptions = {}): void {
    if (this.closing !== null) return;
    for (const faults of this.pairs.values()) this.restorePair(faults, options);
  }

  addressing(): FabricAddressing {
    const memberIps: Record<string, string | null> = {};
    const fabricPorts: Record<string, number> = {};
    for (const member of this.memberStates.values()) {
      memberIps[member.name] = member.ip;
      fabricPorts[member.name] = member.peerProxy.port;
    }
    return { gatewayIp: this.gatewayIp, memberIps, fabricPorts };
  }

  stats(): PeerFabricStats {
    const links: PeerFabricLinkStats[] = [];
    for (const faults of this.pairs.values()) {
      // On b's proxy the link "a" carries connections a dialled (up: a → b); on a's, those b dialled.
      const dialledByA = this.member(faults.b).peerProxy.linkStats(faults.a);
      const dialledByB = this.member(faults.a).peerProxy.linkStats(faults.b);
      links.push({
        a: faults.a,
        b: faults.b,
        mode: faults.mode,
        delayMsAToB: faults.aToB.delayMs,
        jitterMsAToB: faults.aToB.jitterMs,
        delayMsBToA: faults.bToA.delayMs,
        jitterMsBToA: faults.bToA.jitterMs,
        connectionsOpen: dialledByA.connectionsOpen + dialledByB.connectionsOpen,
        connectionsTotal: dialledByA.connectionsTotal + dialledByB.connectionsTotal,
        connectionsRefused: dialledByA.connectionsRefused + dialledByB.connectionsRefused,
        bytesAToB: dialledByA.bytesUp + dialledByB.bytesDown,
        bytesBToA: dialledByA.bytesDown + dialledByB.bytesUp,
      });
    }
    let connectionsUnknownSource = 0;
    const members: PeerFabricMemberStats[] = [];
    for (const member of this.memberStates.values()) {
      const peer = member.peerProxy.stats();
      const client = member.clientProxy.stats();
      connectionsUnknownSource += peer.connectionsUnclassified;
      members.push({
        name: member.name,
        ip: member.ip,
        peerUrl: this.peerUrlOf(member.name),
        clientEndpoint: this.clientEndpointOf(member.name),
        peerConnectionsRefused: peer.connectionsRefused,
        clientConnectionsOpen: client.connectionsOpen,
        clientConnectionsTotal: client.connectionsTotal,
        clientConnectionsRefused: client.connectionsRefused,
      });
    }
    return { links, members, connectionsUnknownSource };
  }

  close(): Promise<void> {
    this.closing ??= Promise.all(
      [...this.memberStates.values()].flatMap((member) => [member.peerProxy.close(), member.clientProxy.close()]),
    ).then(() => undefined);
    return this.closing;
  }

  private restorePair(faults: PairFaults, options: TcpProxyRestoreOptions): void {
    faults.aToB.delayMs = 0;
    faults.aToB.jitterMs = 0;
    faults.bToA.delayMs = 0;
    faults.bToA.jitterMs = 0;
    this.pushDelays(faults);
    faults.mode = 'pass';
    this.member(faults.b).peerProxy.restoreLink(faults.a, options);
    this.member(faults.a).peerProxy.restoreLink(faults.b, options);
  }

  // pushDelays sets the pair's delays on both proxy links: on b's proxy, link "a" goes up from
  // a to b; on a's proxy, link "b" goes up from b to a.
  private pushDelays(faults: PairFaults): void {
    this.member(faults.b).peerProxy.setLinkDelay(faults.a, {
      upDelayMs: faults.aToB.delayMs,
      upJitterMs: faults.aToB.jitterMs,
      downDelayMs: faults.bToA.delayMs,
      downJitterMs: faults.bToA.jitterMs,
    });
    this.member(faults.a).peerProxy.setLinkDelay(faults.b, {
      upDelayMs: faults.bToA.delayMs,
      upJitterMs: faults.bToA.jitterMs,
      downDelayMs: faults.aToB.delayMs,
      downJitterMs: faults.aToB.jitterMs,
    });
  }

  private member(name: string): MemberState {
    const member = this.memberStates.get(name);
    if (member === undefined) {
      throw new PeerFabricError('FABRIC_UNKNOWN_MEMBER', `no member named ${JSON.stringify(name)} (members: ${this.members.join(', ')})`);
    }
    return member;
  }

  private pair(a: string, b: string): PairFaults {
    this.member(a);
    this.member(b);
    if (a === b) throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `a link joins two members, not ${a} and itself`);
    const faults = this.pairs.get(pairKey(a, b));
    if (faults === undefined) throw new Error(`the fabric has no entry for the pair ${a}–${b}`);
    return faults;
  }
}

// listen starts one proxy, turning a bind failure into FABRIC_LISTEN_FAILED naming the listener.
async function listen(what: string, start: () => Promise<TcpProxy>): Promise<TcpProxy> {
  try {
    return await start();
  } catch (error) {
    throw new PeerFabricError('FABRIC_LISTEN_FAILED', `could not bind ${what}: ${String(error)}`, { cause: error });
  }
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

function hostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

// isHostAddress tells whether `address` belongs to one of this host's interfaces (read at each
// call: a network made during the run adds one).
function isHostAddress(address: string): boolean {
  return Object.values(os.networkInterfaces()).some((entries) => (entries ?? []).some((entry) => normalizeIp(entry.address) === address));
}

// normalizeIp maps an IPv4-mapped IPv6 address (what a dual-stack socket reports) to IPv4, so
// a source classifies the same whichever way the listener was bound.
function normalizeIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped?.[1] ?? ip.toLowerCase();
}

function checkIp(ip: unknown, what: string): string {
  if (typeof ip !== 'string' || net.isIP(ip) === 0) {
    throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `${what} ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
  }
  return ip;
}

function checkPort(port: unknown, what: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `${what} ${JSON.stringify(port)} is not a port in [1, 65535]`);
  }
  return port;
}

// checkDelay refuses what tcp-proxy.ts would assert on, with the fabric's error code.
function checkDelay(delayMs: number, jitterMs: number): void {
  if (!Number.isFinite(delayMs) || delayMs < 0 || !Number.isFinite(jitterMs) || jitterMs < 0 || delayMs + jitterMs > DELAY_MS_MAX) {
    throw new PeerFabricError('FABRIC_ARGUMENT_INVALID', `a delay of ${delayMs} ms with ${jitterMs} ms of jitter is not within [0, ${DELAY_MS_MAX}] ms`);
  }
}

// deriveSeed gives each listener an independent 32-bit seed from the fabric's (a splitmix32 step).
function deriveSeed(seed: number, stream: number): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b1) + Math.imul(stream + 1, 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

// Tests for the peer fabric (peer-fabric.ts), on loopback only. Every 127.0.0.0/8 address is
// local on Linux, so each fake member gets its own address: its peer and client servers listen
// there (as in its container), and its dials to the fabric are bound to it (localAddress), so
// the fabric classifies them by source exactly as it does container IPs. Checked: bytes pass
// both ways whoever dials, and per-pair stats count them in the right direction; a delay
// applies to its pair only and to its direction only; a cut resets the pair's connections
// (both dial directions) and refuses new ones while other pairs work; a blackhole holds
// silently; restore clears every fault; an IP change retargets and resets the old address's
// connections; unknown sources and members without an IP are refused; a member added during
// the run gets ports and pairs of its own and a removed one takes its listeners, connections
// and pairs with it, its name never given out again; the host's own dials pass only with
// passHostDials; close() leaves nothing.
// Delays give lower bounds; the few upper bounds compare against a delay of 300 ms and more,
// which an undelayed loopback round trip does not approach even on a loaded machine.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startPeerFabric, type PeerFabric } from './peer-fabric.ts';
import { runModuleScript } from '../net/child-script.ts';

const TEST_TIMEOUT_MS = 30_000;
const BOUNDED = { timeout: TEST_TIMEOUT_MS };
const WAIT_MS_MAX = 10_000;
const POLL_INTERVAL_MS = 5;
const PORT_ATTEMPTS_MAX = 20;
const CHILD_EXIT_DEADLINE_MS = 15_000;
// A wait for silence: a held or delayed byte must not arrive within it. It only ever makes a
// check weaker, never flaky.
const SILENCE_MS = 200;

const MEMBER_IPS = { a: '127.0.0.2', b: '127.0.0.3', c: '127.0.0.4' } as const;
const MOVED_IP = '127.0.0.5';
const STRANGER_IP = '127.0.0.9';
const SEED = 41;

function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}

/** waitFor polls `predicate` until it holds, failing after WAIT_MS_MAX with `what`. */
async function waitFor(predicate: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + WAIT_MS_MAX;
  while (!predicate()) {
    assert.ok(performance.now() < deadline, `timed out after ${WAIT_MS_MAX} ms waiting for ${what}`);
    await sleep(POLL_INTERVAL_MS);
  }
}

/** EchoServer stands for a member's server: it echoes, and notes when bytes arrived. */
class EchoServer {
  readonly sockets = new Set<net.Socket>();
  accepted = 0;
  lastDataAtMs = 0;
  private readonly server = net.createServer({ noDelay: true });

  constructor() {
    this.server.on('connection', (socket) => {
      this.accepted += 1;
      this.sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('data', (bytes: Buffer) => {
        this.lastDataAtMs = performance.now();
        socket.write(bytes);
      });
    });
  }

  /** listen binds host:port and resolves false if the port is taken there. */
  listen(host: string, port: number): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        if (error.code === 'EADDRINUSE') resolve(false);
        else reject(error);
      };
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve(true);
      });
    });
  }

  get port(): number {
    const address = this.server.address();
    assert.ok(address !== null && typeof address === 'object', 'the server is listening');
    return address.port;
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => {
      if (!this.server.listening) resolve();
      else this.server.close(() => resolve());
    });
  }
}

/**
 * startServers starts one echo server per address, all on one port (as members in containers
 * share 2380), retrying with another port when one is taken on some address.
 */
async function startServers(ips: readonly string[]): Promise<{ port: number; servers: Map<string, EchoServer> }> {
  for (let attempt = 0; attempt < PORT_ATTEMPTS_MAX; attempt += 1) {
    const servers = new Map<string, EchoServer>();
    let port = 0;
    let bound = true;
    for (const ip of ips) {
      const server = new EchoServer();
      servers.set(ip, server);
      if (!(await server.listen(ip, port))) {
        bound = false;
        break;
      }
      port = server.port;
    }
    if (bound) return { port, servers };
    await Promise.all([...servers.values()].map((server) => server.close()));
  }
  throw new Error(`no port was free on all of ${ips.join(', ')} after ${PORT_ATTEMPTS_MAX} attempts`);
}

/** Client is a connected socket that keeps what it receives. */
class Client {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  received = Buffer.alloc(0);
  lastDataAtMs = 0;
  private ended = false;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    socket.on('data', (bytes: Buffer) => {
      this.lastDataAtMs = performance.now();
      this.received = Buffer.concat([this.received, bytes]);
    });
    this.closed = new Promise((resolve) => socket.on('close', () => {
      this.ended = true;
      resolve();
    }));
  }

  get isClosed(): boolean {
    return this.ended;
  }

  /** untilReceived waits until `bytes` bytes arrived in all; fails if the socket closes first or after WAIT_MS_MAX. */
  async untilReceived(bytes: number): Promise<void> {
    await waitFor(() => {
      assert.ok(this.received.length >= bytes || !this.ended, `closed after ${this.received.length} of ${bytes} bytes`);
      return this.received.length >= bytes;
    }, `${bytes} bytes`);
  }

  /** roundTripMs writes `text` and resolves with the time until its echo arrived. */
  async roundTripMs(text: string): Promise<number> {
    const expected = this.received.length + text.length;
    const startMs = performance.now();
    this.socket.write(text);
    await this.untilReceived(expected);
    return performance.now() - startMs;
  }
}

/** dial connects from `fromIp` to the fabric listener at `endpoint` (`host:port` or a URL). */
function dial(endpoint: string, fromIp: string): Promise<Client> {
  const url = new URL(endpoint.includes('://') ? endpoint : `tcp://${endpoint}`);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port), localAddress: fromIp, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect from ${fromIp} to ${endpoint} did not finish within ${WAIT_MS_MAX} ms`));
    }, WAIT_MS_MAX);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(new Client(socket));
    });
  });
}

/** dialRefused tells whether a dial is reset before any byte comes back (the fabric refused it). */
async function dialRefused(endpoint: string, fromIp: string): Promise<boolean> {
  let client: Client;
  try {
    client = await dial(endpoint, fromIp);
  } catch {
    return true;
  }
  client.socket.write('knock');
  await Promise.race([client.closed, sleep(WAIT_MS_MAX)]);
  const refused = client.isClosed && client.received.length === 0;
  client.socket.destroy();
  return refused;
}

/** Cluster is the fake members' servers and a fabric in front of them; close() ends all. */
class Cluster {
  readonly clients: Client[] = [];
  readonly fabric: PeerFabric;
  readonly peerServers: Map<string, EchoServer>;
  readonly clientServers: Map<string, EchoServer>;

  constructor(fabric: PeerFabric, peerServers: Map<string, EchoServer>, clientServers: Map<string, EchoServer>) {
    this.fabric = fabric;
    this.peerServers = peerServers;
    this.clientServers = clientServers;
  }

  /** dialPeer opens a connection from member `from` to member `to` through the fabric. */
  async dialPeer(from: keyof typeof MEMBER_IPS, to: string, fromIp: string = MEMBER_IPS[from]): Promise<Client> {
    const client = await dial(this.fabric.peerUrlOf(to), fromIp);
    this.clients.push(client);
    return client;
  }

  peerServer(ip: string | undefined): EchoServer {
    const server = ip === undefined ? undefined : this.peerServers.get(ip);
    assert.ok(server !== undefined, `a peer server listens on ${ip}`);
    return server;
  }

  async close(): Promise<void> {
    for (const client of this.clients) client.socket.destroy();
    await this.fabric.close();
    await Promise.all([...this.peerServers.values(), ...this.clientServers.values()].map((server) => server.close()));
  }
}

async function startCluster(): Promise<Cluster> {
  const ips = [...Object.values(MEMBER_IPS), MOVED_IP];
  const peers = await startServers(ips);
  const clients = await startServers(ips);
  const fabric = await startPeerFabric({
    listenHost: '127.0.0.1',
    members: Object.keys(MEMBER_IPS),
    seed: SEED,
    peerPort: peers.port,
    clientPort: clients.port,
  });
  for (const [name, ip] of Object.entries(MEMBER_IPS)) fabric.setMemberIp(name, ip);
  return new Cluster(fabric, peers.servers, clients.servers);
}

function linkOf(fabric: PeerFabric, a: string, b: string) {
  const link = fabric.stats().links.find((candidate) => candidate.a === a && candidate.b === b);
  assert.ok(link !== undefined, `the fabric reports the pair ${a}–${b}`);
  return link;
}

describe('peer fabric', () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster();
  });
  after(async () => {
    await cluster.close();
  });

  test('checks its arguments with stable codes', BOUNDED, async () => {
    const start = (overrides: object) => startPeerFabric({ listenHost: '127.0.0.1', members: ['a'], seed: 1, ...overrides });
    await assert.rejects(start({ listenHost: 'gateway' }), { code: 'FABRIC_ARGUMENT_INVALID' });
    await assert.rejects(start({ members: [] }), { code: 'FABRIC_ARGUMENT_INVALID' });
    await assert.rejects(start({ members: ['a', 'a'] }), { code: 'FABRIC_ARGUMENT_INVALID' });
    await assert.rejects(start({ members: ['a b'] }), { code: 'FABRIC_ARGUMENT_INVALID' });
    await assert.rejects(start({ seed: -1 }), { code: 'FABRIC_ARGUMENT_INVALID' });
    await assert.rejects(start({ peerPort: 0 }), { code: 'FABRIC_ARGUMENT_INVALID' });
    // An address of no interface here: the network was not created first.
    await assert.rejects(start({ listenHost: '192.0.2.77' }), { code: 'FABRIC_LISTEN_FAILED' });
    const { fabric } = cluster;
    assert.throws(() => fabric.peerUrlOf('z'), { code: 'FABRIC_UNKNOWN_MEMBER' });
    assert.throws(() => fabric.cutLink('a', 'z'), { code: 'FABRIC_UNKNOWN_MEMBER' });
    assert.throws(() => fabric.cutLink('a', 'a'), { code: 'FABRIC_ARGUMENT_INVALID' });
    assert.throws(() => fabric.setMemberIp('a', '127.0.0'), { code: 'FABRIC_ARGUMENT_INVALID' });
    assert.throws(() => fabric.setLinkDelay('a', 'b', -1), { code: 'FABRIC_ARGUMENT_INVALID' });
    assert.throws(() => fabric.setLinkDelay('a', 'b', 1, Number.NaN), { code: 'FABRIC_ARGUMENT_INVALID' });
  });

  test('names a peer URL, a port and a client front per member, and the addressing for nft', BOUNDED, () => {
    const { fabric } = cluster;
    const ports = new Set<number>();
    for (const name of fabric.members) {
      const port = fabric.peerPortOf(name);
      assert.equal(fabric.peerUrlOf(name), `http://127.0.0.1:${port}`);
      assert.match(fabric.clientEndpointOf(name), /^127\.0\.0\.1:\d+$/);
      assert.equal(fabric.clientUrlOf(name), `http://${fabric.clientEndpointOf(name)}`);
      ports.add(port).add(Number(fabric.clientEndpointOf(name).split(':')[1]));
    }
    assert.equal(ports.size, 2 * fabric.members.length, 'every listener has a port of its own');
    assert.deepEqual(fabric.addressing(), {
      gatewayIp: '127.0.0.1',
      memberIps: { a: MEMBER_IPS.a, b: MEMBER_IPS.b, c: MEMBER_IPS.c },
      fabricPorts: { a: fabric.peerPortOf('a'), b: fabric.peerPortOf('b'), c: fabric.peerPortOf('c') },
    });
  });

  test('carries bytes both ways whoever dials, counts them per direction, and fronts the client port', BOUNDED, async () => {
    const { fabric } = cluster;
    const before = linkOf(fabric, 'a', 'b');
    const aDialsB = await cluster.dialPeer('a', 'b');
    await aDialsB.roundTripMs('ab-12345');
    const bDialsA = await cluster.dialPeer('b', 'a');
    await bDialsA.roundTripMs('ba-1');
    const after = linkOf(fabric, 'a', 'b');
    // a's 8 bytes go to b and come back; b's 4 bytes go to a and come back.
    assert.equal(after.bytesAToB - before.bytesAToB, 8 + 4);
    assert.equal(after.bytesBToA - before.bytesBToA, 8 + 4);
    assert.equal(after.connectionsTotal - before.connectionsTotal, 2);
    assert.equal(after.connectionsOpen, before.connectionsOpen + 2);

    const front = await dial(fabric.clientEndpointOf('c'), '127.0.0.1');
    cluster.clients.push(front);
    await front.roundTripMs('get');
    assert.equal(cluster.clientServers.get(MEMBER_IPS.c)?.accepted, 1);
    aDialsB.socket.destroy();
    bDialsA.socket.destroy();
  });

  test('a pair\'s delay applies to that pair only, and a one-way delay to its direction only', BOUNDED, async () => {
    const { fabric } = cluster;
    const delayMs = 300;
    fabric.setLinkDelay('a', 'b', delayMs, 20);
    try {
      const ab = await cluster.dialPeer('a', 'b');
      const ba = await cluster.dialPeer('b', 'a');
      const ac = await cluster.dialPeer('a', 'c');
      assert.ok((await ab.roundTripMs('x')) >= 2 * delayMs, 'a → b → a pays both delays');
      assert.ok((await ba.roundTripMs('y')) >= 2 * delayMs, 'b → a → b pays both delays');
      const undelayedMs = Math.min(await ac.roundTripMs('1'), await ac.roundTripMs('2'), await ac.roundTripMs('3'));
      assert.ok(undelayedMs < delayMs, `a → c → a took ${undelayedMs} ms; the a–b delay leaked onto it`);
      const link = linkOf(fabric, 'a', 'b');
      assert.deepEqual([link.delayMsAToB, link.jitterMsAToB, link.delayMsBToA, link.jitterMsBToA], [delayMs, 20, delayMs, 20]);

      // Only b → a is slow now: whoever dialled, bytes from a reach b's server fast and the
      // echo back to a is slow. Both servers and clients are in this process: one clock.
      fabric.restoreLink('a', 'b');
      fabric.setOneWayDelay('b', 'a', delayMs);
      for (const [client, serverIp] of [[await cluster.dialPeer('a', 'b'), MEMBER_IPS.b], [await cluster.dialPeer('b', 'a'), MEMBER_IPS.a]] as const) {
        const server = cluster.peerServer(serverIp);
        const sentAtMs = performance.now();
        await client.roundTripMs('one-way');
        const outboundMs = server.lastDataAtMs - sentAtMs;
        const returnMs = client.lastDataAtMs - server.lastDataAtMs;
        // One side of each connection is the fabric's target, so which of the two is slow
        // depends on who dialled; the member direction is what must be delayed.
        const [fastMs, slowMs] = serverIp === MEMBER_IPS.b ? [outboundMs, returnMs] : [returnMs, outboundMs];
        assert.ok(slowMs >= delayMs, `b → a took ${slowMs} ms, expected >= ${delayMs}`);
        assert.ok(fastMs < delayMs, `a → b took ${fastMs} ms, but only b → a is delayed`);
      }
    } finally {
      fabric.restoreAll();
    }
    const restored = linkOf(fabric, 'a', 'b');
    assert.deepEqual([restored.mode, restored.delayMsAToB, restored.delayMsBToA], ['pass', 0, 0]);
  });

  test('a cut resets the pair\'s connections both ways and refuses new ones; other pairs go on', BOUNDED, async () => {
    const { fabric } = cluster;
    const ab = await cluster.dialPeer('a', 'b');
    const ba = await cluster.dialPeer('b', 'a');
    const ac = await cluster.dialPeer('a', 'c');
    const cb = await cluster.dialPeer('c', 'b');
    for (const client of [ab, ba, ac, cb]) await client.roundTripMs('up');
    const refusedBefore = linkOf(fabric, 'a', 'b').connectionsRefused;

    fabric.cutLink('b', 'a');
    await ab.closed;
    await ba.closed;
    assert.equal(linkOf(fabric, 'a', 'b').mode, 'cut');
    assert.ok(await dialRefused(fabric.peerUrlOf('b'), MEMBER_IPS.a), 'a new a → b connection is refused');
    assert.ok(await dialRefused(fabric.peerUrlOf('a'), MEMBER_IPS.b), 'a new b → a connection is refused');
    assert.equal(linkOf(fabric, 'a', 'b').connectionsRefused - refusedBefore, 2);
    await ac.roundTripMs('still');
    await cb.roundTripMs('still');
    assert.equal(ac.isClosed || cb.isClosed, false);

    fabric.restoreLink('a', 'b');
    await (await cluster.dialPeer('a', 'b')).roundTripMs('again');
    await (await cluster.dialPeer('b', 'a')).roundTripMs('again');
  });

  test('a blackhole holds the pair silently, and restoring releases what it held', BOUNDED, async () => {
    const { fabric } = cluster;
    const ab = await cluster.dialPeer('a', 'b');
    const ac = await cluster.dialPeer('a', 'c');
    await ab.roundTripMs('<');
    fabric.blackholeLink('a', 'b');
    ab.socket.write('held');
    const late = await cluster.dialPeer('b', 'a');
    late.socket.write('held too');
    await ac.roundTripMs('meanwhile');
    await sleep(SILENCE_MS);
    assert.equal(ab.received.toString(), '<');
    assert.equal(late.received.length, 0);
    assert.equal(ab.isClosed || late.isClosed, false, 'a blackhole resets nothing');

    fabric.restoreLink('a', 'b');
    await ab.untilReceived('<held'.length);
    await late.untilReceived('held too'.length);
    assert.equal(ab.received.toString(), '<held');
    assert.equal(late.received.toString(), 'held too');
  });

  test('refuses unknown sources and members without an IP, and counts them', BOUNDED, async () => {
    const { fabric } = cluster;
    const unknownBefore = fabric.stats().connectionsUnknownSource;
    assert.ok(await dialRefused(fabric.peerUrlOf('a'), STRANGER_IP), 'a stranger is refused');
    assert.equal(fabric.stats().connectionsUnknownSource, unknownBefore + 1);

    fabric.setMemberIp('c', null);
    try {
      assert.equal(fabric.memberIpOf('c'), null);
      assert.ok(await dialRefused(fabric.peerUrlOf('c'), MEMBER_IPS.a), 'a member without an IP is not dialled');
      assert.ok(await dialRefused(fabric.clientEndpointOf('c'), '127.0.0.1'), 'nor is its client front');
      assert.ok(await dialRefused(fabric.peerUrlOf('a'), MEMBER_IPS.c), 'its old address is a stranger now');
    } finally {
      fabric.setMemberIp('c', MEMBER_IPS.c);
    }
    await (await cluster.dialPeer('c', 'a')).roundTripMs('back');
  });

  test('an IP change retargets, resets the old address\'s connections, and keeps the pair\'s faults', BOUNDED, async () => {
    const { fabric } = cluster;
    const toB = await cluster.dialPeer('a', 'b');
    const fromB = await cluster.dialPeer('b', 'c');
    const unrelated = await cluster.dialPeer('a', 'c');
    for (const client of [toB, fromB, unrelated]) await client.roundTripMs('before');
    const movedServer = cluster.peerServer(MOVED_IP);
    const acceptedBefore = movedServer.accepted;
    fabric.cutLink('b', 'c');
    try {
      fabric.setMemberIp('b', MOVED_IP);
      await toB.closed;
      await fromB.closed;
      await unrelated.roundTripMs('untouched');

      const toMoved = await cluster.dialPeer('a', 'b');
      await toMoved.roundTripMs('moved');
      assert.equal(movedServer.accepted, acceptedBefore + 1, 'the new connection reached b at its new address');
      // b at its new address is still b: its pair with c is still cut, its pair with a is not.
      assert.ok(await dialRefused(fabric.peerUrlOf('c'), MOVED_IP), 'b → c stays cut after the move');
      await (await cluster.dialPeer('b', 'a', MOVED_IP)).roundTripMs('b from its new address');
      assert.ok(await dialRefused(fabric.peerUrlOf('a'), MEMBER_IPS.b), 'b\'s old address is a stranger');

      // Taking an address another member holds leaves that member without one.
      fabric.setMemberIp('c', MOVED_IP);
      assert.equal(fabric.memberIpOf('b'), null);
      assert.equal(fabric.memberIpOf('c'), MOVED_IP);
    } finally {
      fabric.restoreAll();
      fabric.setMemberIp('c', MEMBER_IPS.c);
      fabric.setMemberIp('b', MEMBER_IPS.b);
    }
    await (await cluster.dialPeer('b', 'c')).roundTripMs('restored');
  });
  test('a member added during the run gets new ports and pairs; a removed one is gone and its name is not reused', BOUNDED, async () => {
    const { fabric } = cluster;
    await fabric.addMember('d');
    try {
      assert.deepEqual(fabric.members, ['a', 'b', 'c', 'd']);
      assert.ok(!['a', 'b', 'c'].some((name) => fabric.peerPortOf(name) === fabric.peerPortOf('d')), 'd has a port of its own');
      assert.ok(await dialRefused(fabric.peerUrlOf('d'), MEMBER_IPS.a), 'no IP yet: refused');
      fabric.setMemberIp('d', MOVED_IP);
      const toD = await cluster.dialPeer('a', 'd');
      await toD.roundTripMs('to d');
      const fromD = await dial(fabric.peerUrlOf('a'), MOVED_IP);
      cluster.clients.push(fromD);
      await fromD.roundTripMs('from d');
      fabric.setLinkDelay('a', 'd', 20);
      assert.equal(linkOf(fabric, 'a', 'd').delayMsAToB, 20);
      assert.equal(fabric.addressing().fabricPorts.d, fabric.peerPortOf('d'));

      const port = fabric.peerPortOf('d');
      await fabric.removeMember('d');
      await toD.closed;
      await fromD.closed;
      assert.deepEqual(fabric.members, ['a', 'b', 'c']);
      assert.ok(!fabric.stats().links.some((link) => link.a === 'd' || link.b === 'd'), 'its pairs are forgotten');
      assert.equal(fabric.addressing().fabricPorts.d, undefined);
      assert.ok(await dialRefused(`127.0.0.1:${port}`, MEMBER_IPS.a), 'its listener is closed');
      assert.ok(await dialRefused(fabric.peerUrlOf('a'), MOVED_IP), 'its address is a stranger now');
      await assert.rejects(fabric.addMember('d'), { code: 'FABRIC_ARGUMENT_INVALID' });
      await assert.rejects(fabric.addMember('a'), { code: 'FABRIC_ARGUMENT_INVALID' });
      assert.throws(() => fabric.peerUrlOf('d'), { code: 'FABRIC_UNKNOWN_MEMBER' });
    } finally {
      if (fabric.members.includes('d')) await fabric.removeMember('d');
    }
    await (await cluster.dialPeer('b', 'a')).roundTripMs('the others go on');
  });

  test('the host\'s own dials are refused, unless passHostDials lets them pass on the host link', BOUNDED, async () => {
    assert.ok(await dialRefused(cluster.fabric.peerUrlOf('a'), '127.0.0.1'), 'refused by default');
    const fabric = await startPeerFabric({ listenHost: '127.0.0.1', members: ['a'], seed: 5, peerPort: cluster.peerServer(MEMBER_IPS.a).port, passHostDials: true });
    try {
      fabric.setMemberIp('a', MEMBER_IPS.a);
      const client = await dial(fabric.peerUrlOf('a'), '127.0.0.1');
      try {
        await client.roundTripMs('probe');
      } finally {
        client.socket.destroy();
      }
      assert.equal(fabric.stats().connectionsUnknownSource, 0);
    } finally {
      await fabric.close();
    }
    await assert.rejects(fabric.addMember('b'), { code: 'FABRIC_CLOSED' });
  });
});

test('close() resets everything, refuses afterwards, and leaves no handle behind', BOUNDED, async () => {
  const moduleUrl = new URL('./peer-fabric.ts', import.meta.url).href;
  // In a child process, so that its list of active handles is the fabric's alone.
  const script = `
    import net from 'node:net';
    import { startPeerFabric } from ${JSON.stringify(moduleUrl)};
    const server = net.createServer((socket) => { socket.on('error', () => {}); socket.pipe(socket); });
    await new Promise((resolve) => server.listen(0, '127.0.0.2', resolve));
    const fabric = await startPeerFabric({ listenHost: '127.0.0.1', members: ['a', 'b'], seed: 3, peerPort: server.address().port });
    fabric.setMemberIp('a', '127.0.0.3');
    fabric.setMemberIp('b', '127.0.0.2');
    fabric.setLinkDelay('a', 'b', 50, 50);
    const socket = net.connect({ host: '127.0.0.1', port: fabric.peerPortOf('b'), localAddress: '127.0.0.3' });
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('in flight');
    await new Promise((resolve) => setTimeout(resolve, 10));
    const closing = fabric.close();
    if (fabric.close() !== closing) throw new Error('close() is not idempotent');
    await closing;
    fabric.cutLink('a', 'b');
    fabric.setMemberIp('a', '127.0.0.4');
    fabric.restoreAll();
    await new Promise((resolve) => (socket.closed ? resolve() : socket.once('close', resolve)));
    const refused = await new Promise((resolve) => {
      const late = net.connect({ host: '127.0.0.1', port: fabric.peerPortOf('b') });
      late.once('error', (error) => resolve(error.code));
      late.once('connect', () => { late.destroy(); resolve('connected'); });
    });
    await new Promise((resolve) => server.close(resolve));
    const leftOver = () => process.getActiveResourcesInfo().filter((name) => name === 'Timeout' || name.startsWith('TCP'));
    for (let turn = 0; turn < 20 && leftOver().length > 0; turn += 1) await new Promise((resolve) => setImmediate(resolve));
    console.log(JSON.stringify({ refused, leftOver: leftOver(), open: fabric.stats().links[0].connectionsOpen }));
  `;
  const output = await runModuleScript(script, CHILD_EXIT_DEADLINE_MS);
  assert.deepEqual(JSON.parse(output.trim()), { refused: 'ECONNREFUSED', leftOver: [], open: 0 });
});

// Tests for the nftables firewall (nft.ts).
//
// The rule text is checked everywhere: what partitionRules and lossRules produce, and that
// malformed input is refused (with NFT_RULE_INVALID) before nft runs.
//
// As root with nft, the real thing runs: the test builds the chaos harness's network in small
// (a bridge on the host, as Docker's network is, with the gateway address on it; three network
// namespaces as the member containers, each on a veth in the bridge) and starts the real peer
// fabric on the gateway. In each namespace a small agent (a node child process) serves an echo
// on the peer port (the member), a relay (a byte pipe to an address the host names, so the
// host can make the member dial out) and a UDP echo. nft runs in the host, so the rules see
// exactly the paths the harness has: member → fabric (input), fabric → member (output), and
// member → member over the bridge (forward, with br_netfilter). Checked: a connection works;
// a partition of a pair stalls it (and a new one) while another pair goes on, with the rules'
// counters showing the drops; heal() lets TCP resume; a 50 % loss rule loses a bounded share of
// UDP datagrams each way; and no table of ours is left. Everything the test creates is removed
// in `after`, also when a test or the setup fails.
//
// Without root or nft these tests are skipped, saying why; under CI (CI=true) a missing nft
// is a failure instead, since CI is meant to run them.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  NO_RULES,
  NftFirewall,
  combineRules,
  lossRules,
  nftAvailable,
  partitionRules,
  removeLeftoverTables,
  renderRuleset,
  type FabricAddressing,
  type NftRules,
} from './nft.ts';
import { startPeerFabric, type PeerFabric } from './peer-fabric.ts';

const TEST_TIMEOUT_MS = 60_000;
const BOUNDED = { timeout: TEST_TIMEOUT_MS };
const COMMAND_TIMEOUT_MS = 10_000;
const AGENT_READY_MS_MAX = 15_000;
const AGENT_EXIT_MS_MAX = 5_000;
// TCP retransmits with a growing backoff (0.2 s, 0.4 s, 0.8 s, ... and 1 s, 3 s for a SYN), so
// bytes held by a short partition arrive within a few seconds of healing.
const RESUME_MS_MAX = 20_000;
const WAIT_MS_MAX = 10_000;
const POLL_INTERVAL_MS = 10;
// A wait for silence: a dropped byte must not arrive within it. It only ever makes a check weaker.
const SILENCE_MS = 500;

const PEER_PORT = 2380;
const RELAY_PORT = 9000;
const UDP_ECHO_PORT = 9001;
const LOSS_PERCENT = 50;
const DATAGRAMS = 400;
// 400 draws at 50 %: the standard deviation is 10, so [120, 280] is 8 of them each side.
const DATAGRAMS_LOST_MIN = 120;
const DATAGRAMS_LOST_MAX = 280;
const DATAGRAM_BATCH = 20;
const QUIET_MS = 300;

// 10.213.K.0/24: private, and outside Docker's default pools (172.17–31/16, 192.168/20).
const SUBNET_PREFIX = '10.213';
const MEMBERS = ['a', 'b', 'c'] as const;
type Member = (typeof MEMBERS)[number];

// The agent runs in a member's namespace: an echo on the peer port, a relay that reads
// "host port\n" and then pipes the connection there, and a UDP echo. It exits when its stdin
// closes, so it cannot outlive the test process.
const AGENT_SCRIPT = `
import net from 'node:net';
import dgram from 'node:dgram';
const echo = net.createServer((socket) => { socket.on('error', () => {}); socket.pipe(socket); });
const relay = net.createServer((client) => {
  client.on('error', () => {});
  let header = Buffer.alloc(0);
  const onData = (bytes) => {
    header = Buffer.concat([header, bytes]);
    const end = header.indexOf(10);
    if (end < 0) return;
    client.off('data', onData);
    const [host, port] = header.subarray(0, end).toString().split(' ');
    const upstream = net.connect({ host, port: Number(port) });
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    const rest = header.subarray(end + 1);
    if (rest.length > 0) upstream.write(rest);
    client.pipe(upstream);
    upstream.pipe(client);
  };
  client.on('data', onData);
});
const udp = dgram.createSocket('udp4');
udp.on('message', (message, from) => udp.send(message, from.port, from.address));
await Promise.all([
  new Promise((resolve) => echo.listen(${PEER_PORT}, '0.0.0.0', resolve)),
  new Promise((resolve) => relay.listen(${RELAY_PORT}, '0.0.0.0', resolve)),
  new Promise((resolve) => udp.bind(${UDP_ECHO_PORT}, '0.0.0.0', resolve)),
]);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.stdout.write('ready\\n');
`;

function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}

async function waitFor(predicate: () => boolean, what: string, waitMsMax = WAIT_MS_MAX): Promise<void> {
  const deadline = performance.now() + waitMsMax;
  while (!predicate()) {
    assert.ok(performance.now() < deadline, `timed out after ${waitMsMax} ms waiting for ${what}`);
    await sleep(POLL_INTERVAL_MS);
  }
}

/** run runs a setup command to completion (bounded) and returns its stdout; errors name the command. */
function run(file: string, args: readonly string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`${file} ${args.join(' ')} failed: ${stderr || String(error)}`, { cause: error });
  }
}

// ---------------------------------------------------------------------------------------------
// Rule text, everywhere.

const ADDRESSING: FabricAddressing = {
  gatewayIp: '10.9.0.1',
  memberIps: { a: '10.9.0.2', b: '10.9.0.3', c: null },
  fabricPorts: { a: 40001, b: 40002, c: 40003 },
};

describe('nft rules', () => {
  test('partitionRules drops both fabric legs that name both members, both ways, and the direct path', () => {
    const rules = partitionRules([['a', 'b']], ADDRESSING);
    assert.deepEqual(rules, {
      drop: [
        { fromIp: '10.9.0.2', toIp: '10.9.0.1', protocol: 'tcp', toPort: 40002, hooks: ['input'] },
        { fromIp: '10.9.0.1', fromPort: 40002, toIp: '10.9.0.2', protocol: 'tcp', hooks: ['output'] },
        { fromIp: '10.9.0.2', toIp: '10.9.0.3', hooks: ['forward'] },
        { fromIp: '10.9.0.3', toIp: '10.9.0.1', protocol: 'tcp', toPort: 40001, hooks: ['input'] },
        { fromIp: '10.9.0.1', fromPort: 40001, toIp: '10.9.0.3', protocol: 'tcp', hooks: ['output'] },
        { fromIp: '10.9.0.3', toIp: '10.9.0.2', hooks: ['forward'] },
      ],
      loss: [],
    });
    // c has no IP: only b's paths towards c exist.
    assert.deepEqual(partitionRules([['c', 'b']], ADDRESSING).drop, [
      { fromIp: '10.9.0.3', toIp: '10.9.0.1', protocol: 'tcp', toPort: 40003, hooks: ['input'] },
      { fromIp: '10.9.0.1', fromPort: 40003, toIp: '10.9.0.3', protocol: 'tcp', hooks: ['output'] },
    ]);
  });

  test('lossRules puts the percentage on the same paths; 0 % is no rule', () => {
    const rules = lossRules([['a', 'b']], ADDRESSING, 30);
    assert.equal(rules.drop.length, 0);
    assert.equal(rules.loss.length, 6);
    assert.ok(rules.loss.every((match) => match.percent === 30));
    assert.deepEqual(lossRules([['a', 'b']], ADDRESSING, 0), { drop: [], loss: [] });
  });

  test('renders one transaction that replaces the table, with every rule in its hook\'s chain', () => {
    const text = renderRuleset('t_1', combineRules(partitionRules([['a', 'b']], ADDRESSING), lossRules([['a', 'c']], ADDRESSING, 25)));
    assert.ok(text.startsWith('table inet t_1\ndelete table inet t_1\ntable inet t_1 {\n'), text);
    for (const hook of ['input', 'output', 'forward']) {
      assert.ok(text.includes(`\tchain ${hook} {\n\t\ttype filter hook ${hook} priority -10; policy accept;\n`), text);
    }
    assert.ok(text.includes('ip saddr 10.9.0.2 ip daddr 10.9.0.1 tcp dport 40002 counter drop comment "drop 0"'), text);
    assert.ok(text.includes('ip saddr 10.9.0.1 ip daddr 10.9.0.2 tcp sport 40003 numgen random mod 100 < 25 counter drop comment "loss 1"'), text);
    assert.equal(text.match(/comment "drop \d+"/g)?.length, 6);
    // A rule without hooks goes in all three chains; a port without a protocol matches TCP and UDP.
    const everywhere = renderRuleset('t_1', { drop: [{ toIp: 'fd00::9', toPort: 53 }], loss: [] });
    assert.equal(everywhere.match(/ip6 daddr fd00::9 meta l4proto \{ tcp, udp \} th dport 53 counter drop/g)?.length, 3);
    assert.equal(renderRuleset('t_1', { drop: [], loss: [{ toIp: '10.0.0.1', percent: 0 }] }), 'table inet t_1\ndelete table inet t_1\n');
  });

  test('refuses malformed input before anything runs', () => {
    const refuse = (rules: NftRules): void => {
      assert.throws(() => renderRuleset('t_1', rules), { name: 'NftError', code: 'NFT_RULE_INVALID' });
    };
    refuse({ drop: [{ fromIp: '10.0.0.1; flush ruleset' }], loss: [] });
    refuse({ drop: [{ fromIp: '10.0.0.256' }], loss: [] });
    refuse({ drop: [{ fromIp: '' }], loss: [] });
    refuse({ drop: [{ toPort: 80 }], loss: [] });
    refuse({ drop: [{ fromIp: '10.0.0.1', toIp: '::1' }], loss: [] });
    refuse({ drop: [{ fromIp: '10.0.0.1', toPort: 0 }], loss: [] });
    refuse({ drop: [{ fromIp: '10.0.0.1', fromPort: 65536 }], loss: [] });
    refuse({ drop: [{ fromIp: '10.0.0.1', toPort: 1.5 }], loss: [] });
    refuse({ drop: [{ fromIp: '10.0.0.1', protocol: 'icmp' as 'tcp' }], loss: [] });
    refuse({ drop: [{ fromIp: '10.0.0.1', hooks: [] }], loss: [] });
    refuse({ drop: [{ fromIp: '10.0.0.1', hooks: ['prerouting' as 'input'] }], loss: [] });
    refuse({ drop: [], loss: [{ fromIp: '10.0.0.1', percent: 101 }] });
    refuse({ drop: [], loss: [{ fromIp: '10.0.0.1', percent: 12.5 }] });
    assert.throws(() => renderRuleset('t 1', { drop: [], loss: [] }), { code: 'NFT_RULE_INVALID' });
    assert.throws(() => partitionRules([['a', 'a']], ADDRESSING), { code: 'NFT_RULE_INVALID' });
    assert.throws(() => partitionRules([['a', 'z']], ADDRESSING), { code: 'NFT_RULE_INVALID' });
    assert.throws(() => partitionRules([['a', 'b']], { ...ADDRESSING, gatewayIp: 'gateway' }), { code: 'NFT_RULE_INVALID' });
    assert.throws(() => partitionRules([['a', 'b']], { ...ADDRESSING, memberIps: { a: '10.9.0.2', b: '10.9.0.300' } }), { code: 'NFT_RULE_INVALID' });
    assert.throws(() => partitionRules([['a', 'b']], { ...ADDRESSING, fabricPorts: { a: 1, b: -2 } }), { code: 'NFT_RULE_INVALID' });
    assert.throws(() => lossRules([['a', 'b']], ADDRESSING, -1), { code: 'NFT_RULE_INVALID' });
    assert.throws(() => new NftFirewall({ netns: 'x; reboot' }), { code: 'NFT_RULE_INVALID' });
  });
});

// ---------------------------------------------------------------------------------------------
// The real thing, as root.

const availability = nftAvailable();
const ipInstalled = (() => {
  try {
    run('ip', ['-V']);
    return true;
  } catch {
    return false;
  }
})();
const skipReason = !availability.available ? availability.reason : !ipInstalled ? 'the ip command (iproute2) is not installed' : undefined;
const mustRun = process.env.CI === 'true' && !availability.available && availability.missing !== 'root';

if (mustRun) {
  test('nft is available under CI', () => {
    assert.fail(`CI=true but nftables cannot run here: ${skipReason}`);
  });
}

/** Agent is the child process in a member's namespace (see AGENT_SCRIPT). */
interface Agent {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  output: string;
}

/** Lab is the network the test builds; each field is set once made, so teardown removes what exists. */
class Lab {
  readonly tag = `skc${process.pid % 100_000}`;
  readonly bridge = `${this.tag}br`;
  readonly subnet: string;
  readonly gatewayIp: string;
  readonly namespaces: string[] = [];
  readonly agents = new Map<Member, Agent>();
  bridgeMade = false;

  constructor() {
    this.subnet = freeSubnet();
    this.gatewayIp = `${this.subnet}.1`;
  }

  ipOf(member: Member): string {
    return `${this.subnet}.${2 + MEMBERS.indexOf(member)}`;
  }

  namespaceOf(member: Member): string {
    return `${this.tag}-${member}`;
  }

  async build(): Promise<void> {
    run('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    this.bridgeMade = true;
    run('ip', ['addr', 'add', `${this.gatewayIp}/24`, 'dev', this.bridge]);
    run('ip', ['link', 'set', this.bridge, 'up']);
    for (const member of MEMBERS) {
      const namespace = this.namespaceOf(member);
      const hostEnd = `${this.tag}${member}`;
      run('ip', ['netns', 'add', namespace]);
      this.namespaces.push(namespace);
      // The veth's other end is made inside the namespace, so deleting the namespace deletes both.
      run('ip', ['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', namespace]);
      run('ip', ['link', 'set', hostEnd, 'master', this.bridge, 'up']);
      run('ip', ['-n', namespace, 'addr', 'add', `${this.ipOf(member)}/24`, 'dev', 'eth0']);
      run('ip', ['-n', namespace, 'link', 'set', 'eth0', 'up']);
      run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
    }
    await Promise.all(MEMBERS.map((member) => this.startAgent(member)));
  }

  private async startAgent(member: Member): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', this.namespaceOf(member), process.execPath, '--input-type=module', '-e', AGENT_SCRIPT], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const agent: Agent = {
      child,
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
      output: '',
    };
    this.agents.set(member, agent);
    child.stdin?.on('error', () => {});
    child.stdout?.on('data', (bytes: Buffer) => { agent.output += bytes.toString(); });
    child.stderr?.on('data', (bytes: Buffer) => { agent.output += bytes.toString(); });
    await waitFor(() => {
      assert.equal(child.exitCode, null, `the agent of ${member} exited: ${agent.output}`);
      return agent.output.includes('ready\n');
    }, `the agent of ${member} to listen`, AGENT_READY_MS_MAX);
  }

  /** teardown stops the agents and removes the namespaces and the bridge; it tries every step. */
  async teardown(): Promise<void> {
    const failures: string[] = [];
    await Promise.all([...this.agents.entries()].map(async ([member, agent]) => {
      if (agent.child.exitCode !== null || agent.child.signalCode !== null) return;
      agent.child.stdin?.end();
      let timer: NodeJS.Timeout | undefined;
      const exitedInTime = await Promise.race([
        agent.exited.then(() => true),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), AGENT_EXIT_MS_MAX);
        }),
      ]);
      clearTimeout(timer);
      if (!exitedInTime) {
        failures.push(`the agent of ${member} (pid ${agent.child.pid}) did not exit on stdin's end; killed`);
        agent.child.kill('SIGKILL');
        await agent.exited;
      }
    }));
    for (const namespace of this.namespaces) {
      try {
        run('ip', ['netns', 'del', namespace]);
      } catch (error) {
        failures.push(String(error));
      }
    }
    if (this.bridgeMade) {
      try {
        run('ip', ['link', 'del', this.bridge]);
      } catch (error) {
        failures.push(String(error));
      }
    }
    const namespacesLeft = run('ip', ['netns', 'list']).split('\n').filter((line) => line.startsWith(`${this.tag}-`));
    if (namespacesLeft.length > 0) failures.push(`namespaces left: ${namespacesLeft.join(', ')}`);
    assert.deepEqual(failures, [], 'the lab was torn down');
  }
}

// freeSubnet picks 10.213.K (K from the pid, then onwards) that no address or route here uses.
function freeSubnet(): string {
  const used = run('ip', ['-4', '-o', 'addr', 'show']) + run('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (let step = 0; step < 250; step += 1) {
    const candidate = `${SUBNET_PREFIX}.${1 + ((process.pid + step) % 250)}`;
    if (!used.includes(`${candidate}.`)) return candidate;
  }
  throw new Error(`no free /24 in ${SUBNET_PREFIX}.0.0/16`);
}

/** Stream is a test connection to an agent's relay, on to wherever the relay was told. */
class Stream {
  readonly socket: net.Socket;
  received = '';
  closed = false;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    socket.on('data', (bytes: Buffer) => { this.received += bytes.toString(); });
    socket.on('close', () => { this.closed = true; });
  }

  /** send writes `text` and waits until the echo of everything sent so far is back. */
  async echo(text: string, waitMsMax = WAIT_MS_MAX): Promise<void> {
    const expected = this.received.length + text.length;
    this.socket.write(text);
    await this.untilReceived(expected, waitMsMax);
  }

  async untilReceived(length: number, waitMsMax = WAIT_MS_MAX): Promise<void> {
    await waitFor(() => {
      assert.ok(!this.closed || this.received.length >= length, `the stream closed after ${this.received.length} of ${length} bytes`);
      return this.received.length >= length;
    }, `${length} echoed bytes`, waitMsMax);
  }
}

/** openStream connects to `member`'s relay and has it dial host:port from inside its namespace. */
async function openStream(lab: Lab, member: Member, host: string, port: number, streams: Stream[]): Promise<Stream> {
  const socket = net.connect({ host: lab.ipOf(member), port: RELAY_PORT, noDelay: true });
  const stream = new Stream(socket);
  streams.push(stream);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`connect to the relay of ${member} did not finish within ${WAIT_MS_MAX} ms`)), WAIT_MS_MAX);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  socket.write(`${host} ${port}\n`);
  return stream;
}

/** udpEchoes sends DATAGRAMS numbered datagrams from the gateway to `to`'s UDP echo and counts the echoes. */
async function udpEchoes(lab: Lab, to: Member): Promise<number> {
  const socket = dgram.createSocket('udp4');
  const echoed = new Set<number>();
  let lastEchoAtMs = performance.now();
  socket.on('message', (message) => {
    echoed.add(Number(message.toString()));
    lastEchoAtMs = performance.now();
  });
  try {
    await new Promise<void>((resolve) => socket.bind(0, lab.gatewayIp, resolve));
    for (let index = 0; index < DATAGRAMS; index += 1) {
      socket.send(String(index), UDP_ECHO_PORT, lab.ipOf(to));
      // Paced in small batches, so that no socket buffer overflows and only our rule loses any.
      if (index % DATAGRAM_BATCH === DATAGRAM_BATCH - 1) await sleep(2);
    }
    await waitFor(() => echoed.size === DATAGRAMS || performance.now() - lastEchoAtMs > QUIET_MS, 'the echoes to stop');
    return echoed.size;
  } finally {
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

function lossCounter(firewall: NftFirewall): number {
  return firewall.counters().filter((counter) => counter.kind === 'loss').reduce((sum, counter) => sum + counter.packets, 0);
}

function firstCounterPackets(firewall: NftFirewall): number {
  const [first] = firewall.counters();
  assert.ok(first !== undefined, 'the firewall has a rule');
  return first.packets;
}

function dropCounter(firewall: NftFirewall): number {
  return firewall.counters().filter((counter) => counter.kind === 'drop').reduce((sum, counter) => sum + counter.packets, 0);
}

function tablesOfOurs(): string[] {
  return run('nft', ['list', 'tables']).split('\n').filter((line) => line.includes(`stratakv_chaos_${process.pid}_`));
}

describe('nft in network namespaces (root)', { skip: skipReason ?? false }, () => {
  let lab: Lab | undefined;
  let fabric: PeerFabric | undefined;
  let firewall: NftFirewall | undefined;
  const streams: Stream[] = [];

  before(async () => {
    lab = new Lab();
    await lab.build();
    fabric = await startPeerFabric({ listenHost: lab.gatewayIp, members: [...MEMBERS], seed: 7, peerPort: PEER_PORT });
    for (const member of MEMBERS) fabric.setMemberIp(member, lab.ipOf(member));
    firewall = new NftFirewall();
  }, { timeout: TEST_TIMEOUT_MS });

  after(async () => {
    for (const stream of streams) stream.socket.destroy();
    const failures: unknown[] = [];
    try {
      firewall?.close();
    } catch (error) {
      failures.push(error);
    }
    await fabric?.close();
    try {
      await lab?.teardown();
    } catch (error) {
      failures.push(error);
    }
    assert.deepEqual(tablesOfOurs(), [], 'no table of ours is left');
    if (failures.length > 0) throw failures[0];
  }, { timeout: TEST_TIMEOUT_MS });

  function parts(): { lab: Lab; fabric: PeerFabric; firewall: NftFirewall } {
    assert.ok(lab !== undefined && fabric !== undefined && firewall !== undefined, 'the lab was built');
    return { lab, fabric, firewall };
  }

  test('a partition of a pair stalls its connections through the fabric, other pairs go on, and heal lets TCP resume', BOUNDED, async () => {
    const { lab, fabric, firewall } = parts();
    const addressing = fabric.addressing();
    const ab = await openStream(lab, 'a', lab.gatewayIp, fabric.peerPortOf('b'), streams);
    const ba = await openStream(lab, 'b', lab.gatewayIp, fabric.peerPortOf('a'), streams);
    const ac = await openStream(lab, 'a', lab.gatewayIp, fabric.peerPortOf('c'), streams);
    for (const stream of [ab, ba, ac]) await stream.echo('before;');
    assert.equal(fabric.stats().connectionsUnknownSource, 0, 'the fabric knew every source address');

    const text = firewall.apply(partitionRules([['a', 'b']], addressing));
    assert.ok(text.includes(`ip saddr ${lab.ipOf('a')} ip daddr ${lab.gatewayIp} tcp dport ${fabric.peerPortOf('b')}`), text);
    assert.equal(tablesOfOurs().length, 1);
    ab.socket.write('during;');
    ba.socket.write('during;');
    const late = await openStream(lab, 'a', lab.gatewayIp, fabric.peerPortOf('b'), streams);
    late.socket.write('late;');
    await ac.echo('unaffected;');
    await sleep(SILENCE_MS);
    assert.equal(ab.received, 'before;', 'a → b is cut');
    assert.equal(ba.received, 'before;', 'b → a is cut');
    assert.equal(late.received, '', 'a new a → b connection cannot get through');
    assert.ok(dropCounter(firewall) > 0, 'the drop rules saw packets');

    assert.equal(firewall.heal(), `table inet ${firewall.tableName}\ndelete table inet ${firewall.tableName}\n`);
    assert.deepEqual(tablesOfOurs(), []);
    assert.deepEqual(firewall.counters(), []);
    await ab.untilReceived('before;during;'.length, RESUME_MS_MAX);
    await ba.untilReceived('before;during;'.length, RESUME_MS_MAX);
    await late.untilReceived('late;'.length, RESUME_MS_MAX);
    assert.equal(ab.received, 'before;during;');
    await ab.echo('after;');
  });

  test('a partition also cuts the direct path between the containers (forward, with br_netfilter)', BOUNDED, async (t) => {
    const { lab, fabric, firewall } = parts();
    const bridged = readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', { encoding: 'utf8', flag: 'r' }).trim() === '1';
    if (!bridged) {
      t.skip('bridged traffic does not pass netfilter here (br_netfilter is not loaded or bridge-nf-call-iptables is 0)');
      return;
    }
    const direct = await openStream(lab, 'a', lab.ipOf('b'), PEER_PORT, streams);
    try {
      await direct.echo('before;', SILENCE_MS * 4);
    } catch {
      t.skip('the bridge does not forward between the namespaces here (another FORWARD policy drops it, e.g. Docker\'s)');
      return;
    }
    firewall.apply(partitionRules([['a', 'b']], fabric.addressing()));
    try {
      direct.socket.write('during;');
      await sleep(SILENCE_MS);
      assert.equal(direct.received, 'before;');
      assert.ok(firewall.counters().some((counter) => counter.hook === 'forward' && counter.packets > 0), 'the forward rules saw packets');
    } finally {
      firewall.heal();
    }
    await direct.untilReceived('before;during;'.length, RESUME_MS_MAX);
  });

  test(`a ${LOSS_PERCENT} % loss rule loses a bounded share of datagrams, each way`, BOUNDED, async () => {
    const { lab, firewall } = parts();
    assert.equal(await udpEchoes(lab, 'c'), DATAGRAMS, 'without rules nothing is lost');
    const ways: Array<{ what: string; rules: NftRules }> = [
      { what: 'to the member (output)', rules: { drop: [], loss: [{ fromIp: lab.gatewayIp, toIp: lab.ipOf('c'), protocol: 'udp', toPort: UDP_ECHO_PORT, percent: LOSS_PERCENT }] } },
      { what: 'from the member (input)', rules: { drop: [], loss: [{ fromIp: lab.ipOf('c'), fromPort: UDP_ECHO_PORT, toIp: lab.gatewayIp, protocol: 'udp', percent: LOSS_PERCENT }] } },
    ];
    for (const { what, rules } of ways) {
      firewall.apply(rules);
      try {
        const echoed = await udpEchoes(lab, 'c');
        const lost = lossCounter(firewall);
        assert.ok(DATAGRAMS - echoed >= DATAGRAMS_LOST_MIN && DATAGRAMS - echoed <= DATAGRAMS_LOST_MAX,
          `${what}: ${DATAGRAMS - echoed} of ${DATAGRAMS} lost, expected [${DATAGRAMS_LOST_MIN}, ${DATAGRAMS_LOST_MAX}]`);
        assert.ok(lost >= DATAGRAMS_LOST_MIN && lost <= DATAGRAMS - echoed, `${what}: the rule counted ${lost} drops for ${DATAGRAMS - echoed} lost`);
      } finally {
        firewall.heal();
      }
    }
    assert.equal(await udpEchoes(lab, 'c'), DATAGRAMS, 'healed: nothing is lost');
  });

  test('a rejected batch leaves the previous rules, and failures name the command', BOUNDED, () => {
    const { lab } = parts();
    // A wrapper that passes everything to nft, but spoils the batch's last line while the
    // marker file exists: the kernel then refuses the whole transaction.
    const folder = mkdtempSync(join(tmpdir(), 'stratakv-nft-'));
    const marker = join(folder, 'spoil');
    const wrapper = join(folder, 'nft');
    writeFileSync(wrapper, `#!/bin/sh\nif [ "$1" = "-f" ] && [ -e ${marker} ]; then { cat; echo 'spoiled line'; } | nft "$@"; else nft "$@"; fi\n`, { mode: 0o755 });
    const firewall = new NftFirewall({ nftPath: wrapper });
    try {
      firewall.apply({ drop: [{ fromIp: '192.0.2.200', toIp: lab.gatewayIp, protocol: 'tcp', toPort: 9 }], loss: [] });
      writeFileSync(marker, '');
      assert.throws(() => firewall.apply({ drop: [{ fromIp: '192.0.2.201' }], loss: [] }), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'NFT_COMMAND_FAILED');
        assert.match(error.message, /-f -/);
        assert.match(error.message, /spoiled/);
        return true;
      });
      const counters = firewall.counters();
      assert.equal(counters.length, 3, 'the first rule, in each of the three chains, is still there');
      assert.ok(counters.every((counter) => counter.kind === 'drop' && counter.index === 0));
      rmSync(marker);
    } finally {
      firewall.close();
      rmSync(folder, { recursive: true, force: true });
    }
    assert.deepEqual(tablesOfOurs().filter((line) => line.endsWith(firewall.tableName)), []);

    const missing = new NftFirewall({ nftPath: '/nonexistent/nft' });
    assert.throws(() => missing.apply(NO_RULES), { code: 'NFT_COMMAND_FAILED', message: /nonexistent\/nft.*not installed/ });
    assert.throws(() => missing.close(), { code: 'NFT_COMMAND_FAILED' });
    const nowhere = new NftFirewall({ netns: `${lab.tag}-none` });
    assert.throws(() => nowhere.heal(), { code: 'NFT_COMMAND_FAILED', message: /ip netns exec/ });
    assert.throws(() => nowhere.close(), { code: 'NFT_COMMAND_FAILED' });
  });

  test('removeLeftoverTables removes the tables of processes that are gone, and only those', BOUNDED, () => {
    // A pid that ran and exited: spawnSync waits for it, and pids are not reused at once.
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    assert.ok(gone !== undefined && gone !== process.pid);
    const orphan = `stratakv_chaos_${gone}_1`;
    const live = new NftFirewall();
    try {
      live.apply({ drop: [{ fromIp: '192.0.2.202' }], loss: [] });
      run('nft', ['add', 'table', 'inet', orphan]);
      const removed = removeLeftoverTables();
      assert.ok(removed.includes(orphan), `removed ${removed.join(', ')}`);
      assert.ok(!removed.includes(live.tableName));
      const tables = run('nft', ['list', 'tables']);
      assert.ok(!tables.includes(orphan));
      assert.ok(tables.includes(live.tableName));
    } finally {
      live.close();
      // Whatever happened above, the made-up table goes (declaring it first makes the delete safe).
      execFileSync('nft', ['-f', '-'], { input: `table inet ${orphan}\ndelete table inet ${orphan}\n`, timeout: COMMAND_TIMEOUT_MS });
    }
  });

  test('the netns option runs nft inside a namespace; close() removes the table and refuses more', BOUNDED, async () => {
    const { lab } = parts();
    const namespace = lab.namespaceOf('c');
    const inside = new NftFirewall({ netns: namespace });
    const tablesInside = (): string => run('ip', ['netns', 'exec', namespace, 'nft', 'list', 'tables']);
    try {
      inside.apply({ drop: [{ toIp: lab.ipOf('c'), protocol: 'udp', toPort: UDP_ECHO_PORT, hooks: ['input'] }], loss: [] });
      assert.ok(tablesInside().includes(inside.tableName));
      assert.deepEqual(tablesOfOurs().filter((line) => line.endsWith(inside.tableName)), [], 'not in the host');
      assert.equal(await udpEchoes(lab, 'c'), 0, 'c\'s own input chain drops every datagram');
      assert.equal(firstCounterPackets(inside), DATAGRAMS);
    } finally {
      inside.close();
    }
    assert.ok(!tablesInside().includes(inside.tableName));
    assert.throws(() => inside.apply(NO_RULES), { code: 'NFT_CLOSED' });
    assert.throws(() => inside.heal(), { code: 'NFT_CLOSED' });
    assert.throws(() => inside.counters(), { code: 'NFT_CLOSED' });
    inside.close();
    assert.equal(await udpEchoes(lab, 'c'), DATAGRAMS);
  });
});

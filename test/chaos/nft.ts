// nft.ts — partitions and packet loss for the chaos harness, as rules in an nftables table of
// our own.
//
// What it guarantees:
// - An NftFirewall owns exactly one table, `inet stratakv_chaos_<pid>_<n>`, and never reads,
//   changes or deletes any other table (Docker's, the host's, another run's).
// - apply() replaces the table's whole content in one `nft -f -` transaction: the kernel
//   switches from the old rules to the new ones atomically, so no packet ever sees a mix, and
//   a rejected batch leaves the previous rules in place.
// - heal() removes the table (idempotent), so after it no rule of ours is left. close() heals
//   and refuses further use. A process that exits with a live firewall (an uncaught error, an
//   assertion) heals it in an 'exit' hook; a SIGKILLed one leaves its table behind, which
//   removeLeftoverTables() deletes on a later run (tables of pids that no longer run).
// - Every nft command is bounded by a timeout and fails with an NftError naming the command,
//   its exit status and nft's stderr. Calls are synchronous (10–30 ms each), so they never
//   interleave and can run in an 'exit' hook; the event loop stalls for that long.
// - Input is checked before nft runs: an IP must be a literal IPv4 or IPv6 address, a port an
//   integer in [1, 65535], a percentage an integer in [0, 100], and every rule must name at
//   least one address, so a rule can never drop all of the host's traffic.
//
// The table has three base chains, on the input, output and forward hooks (priority -10,
// before Docker's filter chains at 0; policy accept). A packet passes exactly one of them
// (input: to this host; output: from this host; forward: routed or, with br_netfilter, bridged
// between two containers), so a loss rule present on all three still draws once per packet.
//
// Paths of a member pair under the peer fabric (peer-fabric.ts). Member A reaches member X by
// dialling the fabric's listener for X on the gateway (G:pX); the fabric dials X's container
// at X:2380. Seen by this host's netfilter:
//   A → G:pX          input   (A's bytes to X, and A's acks)
//   G:pX → A          output  (X's bytes to A, relayed by the fabric)
//   G → X:2380        output  the fabric's onward leg: its source is always G, whoever dialled,
//   X:2380 → G        input   so it cannot tell A's traffic from B's and is never matched
//   A → X             forward direct container-to-container traffic (none is expected)
// and the same with A and X swapped (X dials G:pA). Dropping the four legs that name both ends
// (A ↔ G:pX, X ↔ G:pA) and the direct path both ways silences the pair completely: the onward
// legs then carry nothing of theirs, since all they relay comes from or goes to a dropped leg.
// Established connections are cut too (no conntrack accept comes before our chains); TCP
// retransmits, and resumes once the rules are removed unless it gave up meanwhile.
import { execFileSync } from 'node:child_process';
import net from 'node:net';

/** NFT_COMMAND_TIMEOUT_MS bounds one nft command; a slower one is killed and reported. */
export const NFT_COMMAND_TIMEOUT_MS = 10_000;

/** NFT_RULES_MAX bounds the rules of one apply (each rule may land in up to three chains). */
export const NFT_RULES_MAX = 10_000;

/** NFT_TABLE_PREFIX starts the name of every table an NftFirewall makes. */
export const NFT_TABLE_PREFIX = 'stratakv_chaos_';

// Docker's filter chains hook at priority 0; ours come first, so a drop here is final whatever
// Docker accepts later.
const CHAIN_PRIORITY = -10;
const NFT_OUTPUT_BYTES_MAX = 16 * 1024 * 1024;
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** NftErrorCode is the catalogue of NftError codes. */
export type NftErrorCode =
  /** A rule, an address, a port, a percentage or a name is malformed; nothing was run. */
  | 'NFT_RULE_INVALID'
  /** nft (or ip netns exec) could not be started or exited with an error. */
  | 'NFT_COMMAND_FAILED'
  /** nft did not finish within its timeout and was killed. */
  | 'NFT_TIMEOUT'
  /** The firewall was closed. */
  | 'NFT_CLOSED';

/** NftError is an operating error of the firewall, with a stable code and the failing cause. */
export class NftError extends Error {
  override readonly name = 'NftError';
  readonly code: NftErrorCode;

  constructor(code: NftErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** NftHook is a netfilter hook our table has a base chain on. */
export type NftHook = 'input' | 'output' | 'forward';

/** NFT_HOOKS lists the hooks in the order their chains are written. */
export const NFT_HOOKS: readonly NftHook[] = ['input', 'output', 'forward'];

/**
 * PacketMatch describes packets by addresses and ports; an absent field matches anything.
 * At least one of fromIp and toIp is required, and both must be of one family. A port
 * without a protocol matches TCP and UDP. hooks limits the chains the rule is put in (all
 * three by default; a packet only ever passes one of them).
 */
export interface PacketMatch {
  readonly fromIp?: string;
  readonly toIp?: string;
  readonly fromPort?: number;
  readonly toPort?: number;
  readonly protocol?: 'tcp' | 'udp';
  readonly hooks?: readonly NftHook[];
}

/** LossMatch drops `percent` percent of the matching packets, each drawn independently. */
export interface LossMatch extends PacketMatch {
  /** percent is an integer in [0, 100]; 0 installs no rule. */
  readonly percent: number;
}

/** NftRules is the whole content of a firewall: packets to drop always and packets to lose. */
export interface NftRules {
  readonly drop: readonly PacketMatch[];
  readonly loss: readonly LossMatch[];
}

/** NO_RULES is the empty rule set; applying it removes the table. */
export const NO_RULES: NftRules = { drop: [], loss: [] };

/**
 * FabricAddressing is what partitionRules and lossRules need to know of the members: the
 * gateway IP (the host's address on the members' network, where the fabric listens), each
 * member's container IP (null while it has none, e.g. stopped) and each member's fabric port.
 */
export interface FabricAddressing {
  readonly gatewayIp: string;
  readonly memberIps: Readonly<Record<string, string | null>>;
  readonly fabricPorts: Readonly<Record<string, number>>;
}

/** MemberPair is an unordered pair of member names: a link. */
export type MemberPair = readonly [string, string];

/** NftRuleCounter is what one installed rule has matched so far. */
export interface NftRuleCounter {
  readonly kind: 'drop' | 'loss';
  /** index is the rule's position in the `drop` or `loss` list of the last apply. */
  readonly index: number;
  readonly hook: NftHook;
  readonly packets: number;
  readonly bytes: number;
}

/** NftFirewallOptions configures an NftFirewall. */
export interface NftFirewallOptions {
  /** netns runs nft inside that network namespace (`ip netns exec`); the host's by default. */
  readonly netns?: string;
  /** nftPath is the nft binary; `nft` on PATH by default. */
  readonly nftPath?: string;
  /** commandTimeoutMs bounds each nft command; NFT_COMMAND_TIMEOUT_MS by default. */
  readonly commandTimeoutMs?: number;
}

let tablesMade = 0;
// Firewalls not yet closed: the 'exit' hook heals them.
const liveFirewalls = new Set<NftFirewall>();
let exitHookInstalled = false;

/**
 * NftFirewall owns one nft table and installs partition and loss rules in it; see the file
 * header for its guarantees.
 */
export class NftFirewall {
  /** tableName is the table's name (family inet); print it when a run fails. */
  readonly tableName: string;
  readonly netns: string | null;
  private readonly nftPath: string;
  private readonly commandTimeoutMs: number;
  private closed = false;

  constructor(options: NftFirewallOptions = {}) {
    if (options.netns !== undefined && !NAME_PATTERN.test(options.netns)) {
      throw new NftError('NFT_RULE_INVALID', `netns ${JSON.stringify(options.netns)} is not a namespace name ([A-Za-z0-9_.-]{1,64})`);
    }
    const commandTimeoutMs = options.commandTimeoutMs ?? NFT_COMMAND_TIMEOUT_MS;
    if (!Number.isSafeInteger(commandTimeoutMs) || commandTimeoutMs <= 0) {
      throw new NftError('NFT_RULE_INVALID', `commandTimeoutMs ${commandTimeoutMs} is not a positive integer`);
    }
    tablesMade += 1;
    this.tableName = `${NFT_TABLE_PREFIX}${process.pid}_${tablesMade}`;
    this.netns = options.netns ?? null;
    this.nftPath = options.nftPath ?? 'nft';
    this.commandTimeoutMs = commandTimeoutMs;
    liveFirewalls.add(this);
    installExitHook();
  }

  /**
   * apply replaces the table's rules with `rules` in one transaction and returns the text it
   * gave nft (for the run's history). Rules that select nothing (no drop, no loss above 0 %)
   * remove the table instead, as heal() does. A malformed rule throws NFT_RULE_INVALID before
   * anything runs; a rejected batch throws NFT_COMMAND_FAILED and leaves the old rules.
   */
  apply(rules: NftRules): string {
    this.assertOpen();
    const text = renderRuleset(this.tableName, rules);
    this.runNft(['-f', '-'], text);
    return text;
  }

  /** heal removes the table and every rule in it; idempotent; returns the text it gave nft. */
  heal(): string {
    this.assertOpen();
    return this.removeTable();
  }

  /** counters reads what each installed rule has matched ([] when no table is installed). */
  counters(): NftRuleCounter[] {
    this.assertOpen();
    const listing = this.runNft(['-j', 'list', 'tables'], null);
    if (!listTableNames(listing).includes(this.tableName)) return [];
    return parseCounters(this.runNft(['-j', 'list', 'table', 'inet', this.tableName], null));
  }

  /** close heals and refuses any further call; idempotent. Throws if the table cannot be removed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    liveFirewalls.delete(this);
    this.removeTable();
  }

  private removeTable(): string {
    // Declaring the table first makes the delete succeed whether or not it exists.
    const text = `table inet ${this.tableName}\ndelete table inet ${this.tableName}\n`;
    this.runNft(['-f', '-'], text);
    return text;
  }

  private assertOpen(): void {
    if (this.closed) throw new NftError('NFT_CLOSED', `the firewall of table inet ${this.tableName} is closed`);
  }

  private runNft(args: readonly string[], input: string | null): string {
    const [file, argv] = this.netns === null
      ? [this.nftPath, [...args]]
      : ['ip', ['netns', 'exec', this.netns, this.nftPath, ...args]];
    return runCommand(file, argv, input, this.commandTimeoutMs);
  }
}

/**
 * removeLeftoverTables deletes the tables NftFirewalls of processes that no longer run left
 * behind (a SIGKILLed run), and returns their names. Tables of live processes are kept.
 */
export function removeLeftoverTables(options: { netns?: string; nftPath?: string } = {}): string[] {
  const nftPath = options.nftPath ?? 'nft';
  const run = (args: string[], input: string | null): string => options.netns === undefined
    ? runCommand(nftPath, args, input, NFT_COMMAND_TIMEOUT_MS)
    : runCommand('ip', ['netns', 'exec', options.netns, nftPath, ...args], input, NFT_COMMAND_TIMEOUT_MS);
  const removed: string[] = [];
  for (const name of listTableNames(run(['-j', 'list', 'tables'], null))) {
    const match = new RegExp(`^${NFT_TABLE_PREFIX}(\\d+)_\\d+$`).exec(name);
    if (match === null || processRuns(Number(match[1]))) continue;
    run(['-f', '-'], `table inet ${name}\ndelete table inet ${name}\n`);
    removed.push(name);
  }
  return removed;
}

/**
 * NftAvailability says whether the firewall can work here, and if not, what is missing: root,
 * the nft binary, or a working nft (it ran but failed, e.g. without CAP_NET_ADMIN).
 */
export type NftAvailability =
  | { readonly available: true }
  | { readonly available: false; readonly missing: 'root' | 'nft' | 'working-nft'; readonly reason: string };

/**
 * nftAvailable tells whether we are root and nft runs (and may list the ruleset), without
 * changing anything; the reason names what is missing.
 */
export function nftAvailable(options: { nftPath?: string } = {}): NftAvailability {
  const uid = process.getuid?.();
  if (uid !== 0) return { available: false, missing: 'root', reason: `nftables needs root (uid is ${uid ?? 'unknown'})` };
  try {
    runCommand(options.nftPath ?? 'nft', ['list', 'tables'], null, NFT_COMMAND_TIMEOUT_MS);
    return { available: true };
  } catch (error) {
    const notInstalled = ((error as { cause?: NodeJS.ErrnoException }).cause)?.code === 'ENOENT';
    return { available: false, missing: notInstalled ? 'nft' : 'working-nft', reason: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * partitionRules returns the drop rules that cut every pair in `pairs` both ways, on every
 * path in the file header (the fabric legs that name both ends, and the direct path). Paths
 * that need the IP of a member without one (null) are left out: nothing can travel them; apply
 * the rules again once it has an IP. Throws NFT_RULE_INVALID for an unknown member, a pair of
 * one member, or a malformed address or port.
 */
export function partitionRules(pairs: readonly MemberPair[], addressing: FabricAddressing): NftRules {
  return { drop: pairs.flatMap((pair) => pairPaths(pair, addressing)), loss: [] };
}

/**
 * lossRules returns rules that lose `percent` percent of the packets on every path of each
 * pair, each direction drawn independently: a byte between the two members meets one draw.
 */
export function lossRules(pairs: readonly MemberPair[], addressing: FabricAddressing, percent: number): NftRules {
  checkPercent(percent);
  if (percent === 0) return NO_RULES;
  return { drop: [], loss: pairs.flatMap((pair) => pairPaths(pair, addressing)).map((match) => ({ ...match, percent })) };
}

/** combineRules concatenates rule sets, e.g. a partition and a lossy link. */
export function combineRules(...sets: readonly NftRules[]): NftRules {
  return { drop: sets.flatMap((set) => set.drop), loss: sets.flatMap((set) => set.loss) };
}

/** renderRuleset returns the nft batch that replaces table inet `tableName` with `rules`. */
export function renderRuleset(tableName: string, rules: NftRules): string {
  if (!NAME_PATTERN.test(tableName)) throw invalid(`table name ${JSON.stringify(tableName)} is not a name ([A-Za-z0-9_.-]{1,64})`);
  const count = rules.drop.length + rules.loss.length;
  if (count > NFT_RULES_MAX) throw invalid(`${count} rules exceed NFT_RULES_MAX (${NFT_RULES_MAX})`);
  const chains = new Map<NftHook, string[]>(NFT_HOOKS.map((hook) => [hook, []]));
  rules.drop.forEach((match, index) => {
    const text = `${renderMatch(match, `drop[${index}]`)} counter drop comment "drop ${index}"`;
    for (const hook of hooksOf(match, `drop[${index}]`)) chains.get(hook)?.push(text);
  });
  rules.loss.forEach((match, index) => {
    checkPercent(match.percent, `loss[${index}]`);
    if (match.percent === 0) return;
    const text = `${renderMatch(match, `loss[${index}]`)} numgen random mod 100 < ${match.percent} counter drop comment "loss ${index}"`;
    for (const hook of hooksOf(match, `loss[${index}]`)) chains.get(hook)?.push(text);
  });
  const removal = `table inet ${tableName}\ndelete table inet ${tableName}\n`;
  if ([...chains.values()].every((lines) => lines.length === 0)) return removal;
  const body = NFT_HOOKS.map((hook) => [
    `\tchain ${hook} {`,
    `\t\ttype filter hook ${hook} priority ${CHAIN_PRIORITY}; policy accept;`,
    ...(chains.get(hook) ?? []).map((line) => `\t\t${line}`),
    '\t}',
  ].join('\n'));
  return `${removal}table inet ${tableName} {\n${body.join('\n')}\n}\n`;
}

// pairPaths returns the matches of every path between the two members of `pair`, both ways.
function pairPaths(pair: MemberPair, addressing: FabricAddressing): PacketMatch[] {
  const [a, b] = pair;
  if (a === b) throw invalid(`pair ${a}–${b} names one member twice`);
  checkIp(addressing.gatewayIp, 'gatewayIp');
  const paths: PacketMatch[] = [];
  for (const [from, to] of [[a, b], [b, a]] as const) {
    const fromIp = memberIpOf(from, addressing);
    const toIp = memberIpOf(to, addressing);
    const toFabricPort = fabricPortOf(to, addressing);
    if (fromIp === null) continue;
    // `from` dials the fabric's listener for `to`; the replies (and `to`'s relayed bytes) return.
    paths.push({ fromIp, toIp: addressing.gatewayIp, protocol: 'tcp', toPort: toFabricPort, hooks: ['input'] });
    paths.push({ fromIp: addressing.gatewayIp, fromPort: toFabricPort, toIp: fromIp, protocol: 'tcp', hooks: ['output'] });
    if (toIp !== null) paths.push({ fromIp, toIp, hooks: ['forward'] });
  }
  return paths;
}

function memberIpOf(member: string, addressing: FabricAddressing): string | null {
  if (!Object.hasOwn(addressing.memberIps, member)) throw invalid(`member ${member} has no entry in memberIps`);
  const ip = addressing.memberIps[member];
  if (ip === null || ip === undefined) return null;
  checkIp(ip, `the IP of member ${member}`);
  return ip;
}

function fabricPortOf(member: string, addressing: FabricAddressing): number {
  if (!Object.hasOwn(addressing.fabricPorts, member)) throw invalid(`member ${member} has no entry in fabricPorts`);
  const port = addressing.fabricPorts[member];
  checkPort(port, `the fabric port of member ${member}`);
  return port as number;
}

function hooksOf(match: PacketMatch, what: string): readonly NftHook[] {
  const hooks = match.hooks ?? NFT_HOOKS;
  if (hooks.length === 0) throw invalid(`${what}: hooks is empty`);
  for (const hook of hooks) if (!NFT_HOOKS.includes(hook)) throw invalid(`${what}: ${JSON.stringify(hook)} is not a hook (${NFT_HOOKS.join(', ')})`);
  return [...new Set(hooks)];
}

// renderMatch writes the match part of a rule; every value in it has been checked, so no
// text from the caller reaches nft unvalidated.
function renderMatch(match: PacketMatch, what: string): string {
  if (match.fromIp === undefined && match.toIp === undefined) {
    throw invalid(`${what}: names no address (fromIp or toIp), so it would match all of the host's traffic`);
  }
  const families = new Set<4 | 6>();
  const parts: string[] = [];
  for (const [field, ip] of [['saddr', match.fromIp], ['daddr', match.toIp]] as const) {
    if (ip === undefined) continue;
    const family = checkIp(ip, `${what}: ${field === 'saddr' ? 'fromIp' : 'toIp'}`);
    families.add(family);
    parts.push(`${family === 4 ? 'ip' : 'ip6'} ${field} ${ip}`);
  }
  if (families.size > 1) throw invalid(`${what}: fromIp ${match.fromIp} and toIp ${match.toIp} are of different families`);
  const protocol = match.protocol;
  if (protocol !== undefined && protocol !== 'tcp' && protocol !== 'udp') {
    throw invalid(`${what}: protocol ${JSON.stringify(protocol)} is not tcp or udp`);
  }
  const ports: string[] = [];
  for (const [field, port] of [['sport', match.fromPort], ['dport', match.toPort]] as const) {
    if (port === undefined) continue;
    checkPort(port, `${what}: ${field === 'sport' ? 'fromPort' : 'toPort'}`);
    ports.push(`${protocol ?? 'th'} ${field} ${port}`);
  }
  if (protocol === undefined && ports.length > 0) parts.push('meta l4proto { tcp, udp }');
  else if (protocol !== undefined && ports.length === 0) parts.push(`meta l4proto ${protocol}`);
  return [...parts, ...ports].join(' ');
}

function checkIp(ip: unknown, what: string): 4 | 6 {
  if (typeof ip === 'string') {
    if (net.isIPv4(ip)) return 4;
    if (net.isIPv6(ip) && !ip.includes('%')) return 6;
  }
  throw invalid(`${what} ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
}

function checkPort(port: unknown, what: string): void {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(`${what} ${JSON.stringify(port)} is not a port in [1, 65535]`);
  }
}

function checkPercent(percent: unknown, what = 'percent'): void {
  if (typeof percent !== 'number' || !Number.isInteger(percent) || percent < 0 || percent > 100) {
    throw invalid(`${what}: percent ${JSON.stringify(percent)} is not an integer in [0, 100]`);
  }
}

function invalid(message: string): NftError {
  return new NftError('NFT_RULE_INVALID', message);
}

// runCommand runs one command to completion within timeoutMs and returns its stdout.
function runCommand(file: string, args: readonly string[], input: string | null, timeoutMs: number): string {
  const command = [file, ...args].join(' ');
  try {
    return execFileSync(file, args, {
      input: input ?? '',
      encoding: 'utf8',
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      maxBuffer: NFT_OUTPUT_BYTES_MAX,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { status?: number | null; signal?: string | null; stderr?: string };
    const stderr = typeof failure.stderr === 'string' ? failure.stderr.trim() : '';
    if (failure.code === 'ETIMEDOUT') {
      throw new NftError('NFT_TIMEOUT', `${command} did not finish within ${timeoutMs} ms and was killed`, { cause: error });
    }
    if (failure.code === 'ENOENT') {
      throw new NftError('NFT_COMMAND_FAILED', `${command}: ${file} is not installed (not found on PATH)`, { cause: error });
    }
    const status = failure.status ?? `signal ${failure.signal ?? 'unknown'}`;
    const shown = input === null || input.length === 0 ? '' : `\ninput was:\n${input}`;
    throw new NftError('NFT_COMMAND_FAILED', `${command} failed (exit ${status}): ${stderr || failure.message}${shown}`, { cause: error });
  }
}

function listTableNames(listingJson: string): string[] {
  const names: string[] = [];
  for (const item of parseNftJson(listingJson)) {
    const table = (item as { table?: { family?: unknown; name?: unknown } }).table;
    if (table !== undefined && table.family === 'inet' && typeof table.name === 'string') names.push(table.name);
  }
  return names;
}

function parseCounters(tableJson: string): NftRuleCounter[] {
  const counters: NftRuleCounter[] = [];
  for (const item of parseNftJson(tableJson)) {
    const rule = (item as { rule?: { chain?: unknown; comment?: unknown; expr?: unknown } }).rule;
    if (rule === undefined || typeof rule.comment !== 'string' || !Array.isArray(rule.expr)) continue;
    const comment = /^(drop|loss) (\d+)$/.exec(rule.comment);
    const hook = NFT_HOOKS.find((candidate) => candidate === rule.chain);
    if (comment === null || hook === undefined) continue;
    for (const expression of rule.expr as unknown[]) {
      const counter = (expression as { counter?: { packets?: unknown; bytes?: unknown } }).counter;
      if (counter === undefined || typeof counter.packets !== 'number' || typeof counter.bytes !== 'number') continue;
      counters.push({ kind: comment[1] as 'drop' | 'loss', index: Number(comment[2]), hook, packets: counter.packets, bytes: counter.bytes });
    }
  }
  return counters;
}

function parseNftJson(text: string): unknown[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new NftError('NFT_COMMAND_FAILED', `nft -j printed something that is not JSON: ${text.slice(0, 200)}`, { cause: error });
  }
  const items = (parsed as { nftables?: unknown }).nftables;
  return Array.isArray(items) ? items : [];
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const firewall of [...liveFirewalls]) {
      try {
        firewall.close();
      } catch (error) {
        // Reported, not thrown: the process is exiting, and removeLeftoverTables() cleans up later.
        process.stderr.write(`nft: could not remove table inet ${firewall.tableName} on exit: ${String(error)}\n`);
      }
    }
  });
}

// The nemesis: turns each FaultPlan of the schedule into actions on the cluster, and back.
// start() does the fault and answers its heal(); both are written to the fault log with the
// history's clock, so the report can put every anomaly next to the faults that were on.
//
//   kill        SIGKILL the container (leader, a follower, or any), start it again at the end.
//   pause       freeze the container (cgroup freezer), thaw it at the end.
//   partition   nftables drops between groups: isolate the leader or one member, a majority
//               from a minority, or a bridge (A sees everyone, the two sides around it don't
//               see each other). Heal removes the drops.
//   latency     through the peer fabric: slow links (some pairs), a slow member (all its
//               pairs), cut links (connections reset, new ones refused); lossy links are nft
//               packet drops (real loss: TCP retransmits). Heal restores the links.
//   disk        with a follower stopped (SIGKILL), flip bytes in the middle of its Raft log
//               (WAL), its newest snapshot file or a LevelDB table or log, then start it. It must
//               refuse to start, or start and raise an alarm — or, where the flip hit bytes it
//               never reads, serve correct data (the history and the final digest check prove
//               it). At the end: a refused member gets its whole data dir back as it was at the
//               kill (it never ran on the damaged copy, so this is its own durable state) and
//               starts; a member that started is rebuilt from the leader's state
//               (`stratakv member rebuild`'s call) and the alarm disarmed.
//   membership  move leadership to another member (etcd's MoveLeader) during the other faults.
//
// A flip never lands in the last 4 KiB of a WAL segment: a damaged tail is the one thing a
// member repairs silently (a torn write left by a crash), and truncating records it had
// acknowledged would be a disk that lies about fsync, which Raft does not tolerate.
import { cpSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { IntegrityClient } from '../../src/client/index.ts';
import { flipBytes, flipLogByte, flipTableBytes, stateMachineDirectory } from '../integration/level-corruption.ts';
import type { ChaosCluster, ChaosMember, Pair } from './chaos-cluster.ts';
import { describePlan, type FaultPlan } from './schedule.ts';

/** FaultEvent is one line of the fault log. */
export interface FaultEvent {
  readonly atMs: number;
  readonly ordinal: number;
  readonly phase: 'start' | 'heal' | 'note';
  readonly text: string;
}

/** NemesisContext is what the nemesis works with. */
export interface NemesisContext {
  readonly cluster: ChaosCluster;
  readonly now: () => number;
  readonly log: (line: string) => void;
  readonly events: FaultEvent[];
  /** callTimeoutMs bounds each call the nemesis makes to the cluster. */
  readonly callTimeoutMs: number;
  /**
   * busy: members a kill, pause or disk fault holds until its heal. No other such fault picks
   * them: a disk fault's verdict (refused or serving) and its repair are only right if nothing
   * else stopped or restarted the member meanwhile.
   */
  readonly busy: Set<string>;
}

const WAL_TAIL_SPARED_BYTES = 4096;
/** MOVE_LEADER_TIMEOUT_MS bounds a transfer, which may meet slow links and a catching-up target. */
const MOVE_LEADER_TIMEOUT_MS = 10_000;
const DISK_OBSERVE_MS = 6_000;
const OBSERVE_POLL_MS = 250;
const REBUILD_TIMEOUT_MS = 60_000;

function record(context: NemesisContext, plan: FaultPlan, phase: FaultEvent['phase'], text: string): void {
  const event = { atMs: context.now(), ordinal: plan.ordinal, phase, text };
  context.events.push(event);
  context.log(`  [${(event.atMs / 1000).toFixed(1)} s] #${plan.ordinal} ${phase}: ${text}`);
}

function pickOf<T>(items: readonly T[], pick: number): T {
  const item = items[pick % items.length];
  if (item === undefined) throw new Error('pickOf: nothing to pick from');
  return item;
}

/** LinkFault is a latency fault on the fabric's pairs (delay and jitter, or cut). */
interface LinkFault {
  readonly ordinal: number;
  readonly pairs: readonly Pair[];
  readonly cut: boolean;
  readonly delayMs: number;
  readonly jitterMs: number;
}

const linkFaults = new WeakMap<ChaosCluster, Map<number, LinkFault>>();

function linkFaultsOf(cluster: ChaosCluster): Map<number, LinkFault> {
  let faults = linkFaults.get(cluster);
  if (faults === undefined) {
    faults = new Map();
    linkFaults.set(cluster, faults);
  }
  return faults;
}

const samePair = (a: Pair, b: Pair): boolean => (a[0] === b[0] && a[1] === b[1]) || (a[0] === b[1] && a[1] === b[0]);

/** applyLinkFault sets `fault` on its pairs (only those in `only`, when given). A cut wins over a delay; delays of two faults on one pair: the later set wins. */
function applyLinkFault(cluster: ChaosCluster, fault: LinkFault, only?: readonly Pair[]): void {
  for (const pair of fault.pairs) {
    if (only !== undefined && !only.some((each) => samePair(each, pair))) continue;
    if (fault.cut) cluster.fabric.cutLink(pair[0], pair[1]);
    else cluster.fabric.setLinkDelay(pair[0], pair[1], fault.delayMs, fault.jitterMs);
  }
}

/** pairsBetween lists every pair with one member in `left` and one in `right`. */
export function pairsBetween(left: readonly string[], right: readonly string[]): Pair[] {
  const pairs: Pair[] = [];
  for (const a of left) for (const b of right) if (a !== b) pairs.push([a, b]);
  return pairs;
}

/** allPairs lists every unordered pair of `names`. */
export function allPairs(names: readonly string[]): Pair[] {
  const pairs: Pair[] = [];
  for (let i = 0; i < names.length; i += 1) for (let j = i + 1; j < names.length; j += 1) pairs.push([names[i] ?? '', names[j] ?? '']);
  return pairs;
}

/** rotate answers `names` rotated left by `by` (a seeded shuffle-free choice of groups). */
function rotate(names: readonly string[], by: number): string[] {
  const shift = by % names.length;
  return [...names.slice(shift), ...names.slice(0, shift)];
}

/** chooseTarget picks a running, unpaused member that no other fault holds, by role; undefined when none fits. */
async function chooseTarget(context: NemesisContext, plan: FaultPlan, role: 'leader' | 'follower' | 'any'): Promise<string | undefined> {
  const free = context.cluster.members.filter((member) => member.container.running && !member.container.paused && !context.busy.has(member.name)).map((member) => member.name);
  if (free.length === 0) return undefined;
  if (role === 'any') return pickOf(free, plan.pick);
  const leader = await context.cluster.leaderName(context.callTimeoutMs).catch(() => undefined);
  if (role === 'leader') return leader !== undefined && free.includes(leader) ? leader : undefined;
  const followers = free.filter((name) => name !== leader);
  return followers.length > 0 ? pickOf(followers, plan.pick) : undefined;
}

/**
 * holdMember picks a member by `role`, holds it (busy) and does `act` to it; the answer undoes
 * it and frees the member. No member fits: a note, and nothing to undo.
 */
async function holdMember(
  context: NemesisContext,
  plan: FaultPlan,
  role: 'leader' | 'follower' | 'any',
  steps: { act: (member: ChaosMember) => Promise<void>; started: (target: string) => string; undo: (member: ChaosMember) => Promise<string> },
): Promise<() => Promise<void>> {
  const target = await chooseTarget(context, plan, role);
  if (target === undefined) {
    record(context, plan, 'note', `${describePlan(plan)}: no member fits (down, paused or held by another fault); nothing to do`);
    return async () => undefined;
  }
  const member = context.cluster.member(target);
  const heal = hold(context, target, async () => record(context, plan, 'heal', await steps.undo(member)));
  try {
    await steps.act(member);
  } catch (error) {
    context.busy.delete(target);
    throw error;
  }
  record(context, plan, 'start', `${describePlan(plan)}: ${steps.started(target)}`);
  return heal;
}

/** hold marks `target` busy and answers a heal that frees it after `heal`. */
function hold(context: NemesisContext, target: string, heal: () => Promise<void>): () => Promise<void> {
  context.busy.add(target);
  return async () => {
    try {
      await heal();
    } finally {
      context.busy.delete(target);
    }
  };
}

/** startFault does `plan` now and answers its heal (see the file comment). */
export async function startFault(context: NemesisContext, plan: FaultPlan): Promise<() => Promise<void>> {
  const { cluster } = context;
  const names = cluster.members.map((member) => member.name);
  const role = (variant: string): 'leader' | 'follower' | 'any' => (variant.endsWith('-leader') ? 'leader' : variant.endsWith('-follower') ? 'follower' : 'any');
  switch (plan.nemesis) {
    case 'kill':
      return holdMember(context, plan, role(plan.variant), {
        act: (member) => member.container.kill(),
        started: (target) => `SIGKILL ${target}`,
        undo: async (member) => {
          await member.container.start();
          cluster.memberRestarted(member.name);
          return `${member.name} started again (ip ${member.container.ip()})`;
        },
      });
    case 'pause':
      return holdMember(context, plan, role(plan.variant), {
        act: (member) => member.container.pause(),
        started: (target) => `paused ${target}`,
        undo: async (member) => {
          await member.container.unpause();
          return `${member.name} resumed`;
        },
      });
    case 'partition': {
      let pairs: Pair[];
      let text: string;
      if (plan.variant === 'isolate-leader' || plan.variant === 'isolate-one') {
        const target = (await chooseTarget(context, plan, plan.variant === 'isolate-leader' ? 'leader' : 'any')) ?? pickOf(names, plan.pick);
        pairs = pairsBetween([target], names.filter((name) => name !== target));
        text = `${target} | ${names.filter((name) => name !== target).join(' ')}`;
      } else if (plan.variant === 'majority-minority') {
        const order = rotate(names, plan.pick);
        const minority = order.slice(0, Math.floor((names.length - 1) / 2));
        const majority = order.slice(minority.length);
        pairs = pairsBetween(minority, majority);
        text = `${minority.join(' ')} | ${majority.join(' ')}`;
      } else {
        // bridge: the middle member sees both sides; the sides don't see each other.
        const order = rotate(names, plan.pick);
        const bridge = order[0] ?? '';
        const rest = order.slice(1);
        const left = rest.slice(0, Math.ceil(rest.length / 2));
        const right = rest.slice(left.length);
        pairs = pairsBetween(left, right);
        text = `${left.join(' ')} | ${right.join(' ')}, bridged by ${bridge}`;
      }
      cluster.addPartition(plan.ordinal, pairs);
      record(context, plan, 'start', `${describePlan(plan)}: ${text}`);
      return async () => {
        cluster.removePartition(plan.ordinal);
        record(context, plan, 'heal', 'partition healed');
      };
    }
    case 'latency': {
      const pairsAll = allPairs(names);
      let pairs: Pair[];
      if (plan.variant === 'slow-member') {
        const target = pickOf(names, plan.pick);
        pairs = pairsBetween([target], names.filter((name) => name !== target));
      } else {
        const count = 1 + (plan.pick % pairsAll.length);
        const shift = (plan.pick >>> 8) % pairsAll.length;
        pairs = [...pairsAll.slice(shift), ...pairsAll.slice(0, shift)].slice(0, count);
      }
      const listed = pairs.map(([a, b]) => `${a}–${b}`).join(' ');
      if (plan.variant === 'lossy-links') {
        cluster.addLoss(plan.ordinal, pairs, plan.lossPercent);
        record(context, plan, 'start', `${describePlan(plan)}: ${listed}`);
        return async () => {
          cluster.removeLoss(plan.ordinal);
          record(context, plan, 'heal', 'loss removed');
        };
      }
      const fault: LinkFault = { ordinal: plan.ordinal, pairs, cut: plan.variant === 'cut-links', delayMs: plan.delayMs, jitterMs: plan.jitterMs };
      linkFaultsOf(cluster).set(plan.ordinal, fault);
      applyLinkFault(cluster, fault);
      record(context, plan, 'start', `${describePlan(plan)}: ${listed}`);
      return async () => {
        const faults = linkFaultsOf(cluster);
        faults.delete(plan.ordinal);
        // A pair's restore clears all its faults; the other faults still on for it are set again.
        for (const [a, b] of pairs) cluster.fabric.restoreLink(a, b);
        for (const other of faults.values()) applyLinkFault(cluster, other, pairs);
        record(context, plan, 'heal', 'links restored');
      };
    }
    case 'membership': {
      const leader = await cluster.leaderName(context.callTimeoutMs).catch(() => undefined);
      const candidates = cluster.members.filter((member) => member.name !== leader && member.container.running && !member.container.paused).map((member) => member.name);
      if (leader === undefined || candidates.length === 0) {
        record(context, plan, 'note', `${describePlan(plan)}: no leader or no running follower; nothing to do`);
        return async () => undefined;
      }
      const target = pickOf(candidates, plan.pick);
      const client = cluster.client({ timeoutMs: MOVE_LEADER_TIMEOUT_MS });
      try {
        const statuses = await cluster.statusAll(context.callTimeoutMs);
        const targetId = statuses.find((entry) => entry.name === target)?.status?.memberId;
        if (targetId === undefined) {
          record(context, plan, 'note', `${describePlan(plan)}: ${target} did not answer Status; no transfer`);
        } else {
          await client.moveLeader(BigInt(targetId));
          record(context, plan, 'start', `${describePlan(plan)}: moved leadership from ${leader} to ${target}`);
        }
      } catch (error) {
        record(context, plan, 'note', `${describePlan(plan)}: move-leader to ${target} failed: ${(error as Error).message}`);
      } finally {
        client.close();
      }
      return async () => undefined;
    }
    case 'disk':
      return startDiskFault(context, plan);
  }
}

/** damageFile flips bytes as the variant says; answers what it did, or undefined when there was nothing to damage. */
function damage(dataDir: string, variant: string, pick: number): string | undefined {
  const memberDir = join(dataDir, 'member');
  if (variant === 'flip-wal') {
    const walDir = join(memberDir, 'wal');
    const segments = existsSync(walDir) ? readdirSync(walDir).map((name) => join(walDir, name)).filter((path) => statSync(path).isFile() && statSync(path).size > 2 * WAL_TAIL_SPARED_BYTES) : [];
    if (segments.length === 0) return undefined;
    const path = pickOf(segments.sort(), pick);
    const bytes = statSync(path).size;
    const offset = (pick >>> 4) % (bytes - WAL_TAIL_SPARED_BYTES);
    flipBytes(path, offset, 1);
    return `flipped 1 byte at ${offset} of ${path.slice(dataDir.length + 1)} (${bytes} bytes)`;
  }
  if (variant === 'flip-snapshot') {
    const snapDir = join(memberDir, 'snap');
    const snapshots = existsSync(snapDir) ? readdirSync(snapDir).filter((name) => name.endsWith('.snap')).sort() : [];
    const newest = snapshots[snapshots.length - 1];
    if (newest === undefined) return undefined;
    const path = join(snapDir, newest);
    const bytes = statSync(path).size;
    const offset = (pick >>> 4) % bytes;
    flipBytes(path, offset, 1);
    return `flipped 1 byte at ${offset} of member/snap/${newest} (${bytes} bytes)`;
  }
  const levelDir = stateMachineDirectory(dataDir);
  try {
    const flipped = pick % 2 === 0 ? flipTableBytes(levelDir, 16, 1) : flipLogByte(levelDir, 1);
    return `flipped ${flipped.length} byte(s) at ${flipped.offset} of ${flipped.file} (${flipped.fileBytes} bytes)`;
  } catch {
    return undefined; // no LevelDB table or log big enough to damage
  }
}

async function startDiskFault(context: NemesisContext, plan: FaultPlan): Promise<() => Promise<void>> {
  const target = await chooseTarget(context, plan, 'follower');
  if (target === undefined) {
    record(context, plan, 'note', `${describePlan(plan)}: no follower fits (down, paused or held by another fault); nothing to do`);
    return async () => undefined;
  }
  context.busy.add(target);
  try {
    const heal = await damageAndObserve(context, plan, target);
    return hold(context, target, heal);
  } catch (error) {
    context.busy.delete(target);
    throw error;
  }
}

async function damageAndObserve(context: NemesisContext, plan: FaultPlan, target: string): Promise<() => Promise<void>> {
  const { cluster } = context;
  const member = cluster.member(target);
  await member.container.kill();
  const backup = `${member.hostDataDir}.before-damage`;
  rmSync(backup, { recursive: true, force: true });
  cpSync(member.hostDataDir, backup, { recursive: true });
  const done = damage(member.hostDataDir, plan.variant, plan.pick);
  if (done === undefined) {
    rmSync(backup, { recursive: true, force: true });
    await member.container.start();
    cluster.memberRestarted(target);
    record(context, plan, 'note', `${describePlan(plan)}: ${target} had no such file; restarted undamaged`);
    return async () => undefined;
  }
  record(context, plan, 'start', `${describePlan(plan)}: ${target} stopped; ${done}; starting it`);
  let outcome: 'refused' | 'alarm' | 'serving' = 'serving';
  try {
    await member.container.start();
    cluster.memberRestarted(target);
  } catch (error) {
    outcome = 'refused';
    record(context, plan, 'note', `${target} did not start: ${(error as Error).message.split('\n')[0] ?? ''}`);
  }
  const deadline = context.now() + DISK_OBSERVE_MS;
  while (outcome === 'serving' && context.now() < deadline) {
    if (!member.container.running) {
      outcome = 'refused';
      break;
    }
    const client = cluster.client({ timeoutMs: context.callTimeoutMs });
    try {
      const alarms = await client.alarmList();
      if (alarms.length > 0) outcome = 'alarm';
    } catch {
      // no answer now; look again
    } finally {
      client.close();
    }
    if (outcome === 'serving') await new Promise((resolve) => setTimeout(resolve, OBSERVE_POLL_MS));
  }
  const logTail = (await member.container.logs().catch(() => '')).split('\n').filter((line) => /corrupt|refus|checksum|crc|digest|alarm/i.test(line)).slice(-2).join(' / ');
  record(context, plan, 'note', `${target}: ${outcome}${logTail === '' ? '' : ` — ${logTail.slice(0, 300)}`}`);
  return async () => {
    if (outcome === 'refused' || !member.container.running) {
      if (member.container.running) await member.container.kill();
      rmSync(member.hostDataDir, { recursive: true, force: true });
      cpSync(backup, member.hostDataDir, { recursive: true });
      rmSync(backup, { recursive: true, force: true });
      await member.container.start();
      cluster.memberRestarted(target);
      record(context, plan, 'heal', `${target}'s data dir put back as it was at the kill; started`);
      return;
    }
    rmSync(backup, { recursive: true, force: true });
    if (outcome === 'alarm') {
      const integrity = new IntegrityClient();
      try {
        await integrity.rebuild(cluster.fabric.clientEndpointOf(target), { timeoutMs: REBUILD_TIMEOUT_MS });
      } finally {
        integrity.close();
      }
      const client = cluster.client({ timeoutMs: context.callTimeoutMs });
      try {
        const cleared = await client.alarmDisarm();
        record(context, plan, 'heal', `${target} rebuilt from the leader's state; ${cleared.length} alarm(s) disarmed`);
      } finally {
        client.close();
      }
      return;
    }
    record(context, plan, 'heal', `${target} served on (the damaged bytes were not read, or were repaired)`);
  };
}

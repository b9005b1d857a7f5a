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
//               (WAL), its newest snapshot file or a LevelDB table or log, or cut half the
//               records off its WAL's tail (it must then refuse: its state machine is past the
//               log's end), then start it. It must
//               refuse to start, or start and raise an alarm — or, where the flip hit bytes it
//               never reads, serve correct data (the history and the final digest check prove
//               it). At the end: a refused member gets its whole data dir back as it was at the
//               kill (it never ran on the damaged copy, so this is its own durable state) and
//               starts; a member that started is rebuilt from the leader's state
//               (`stratakv member rebuild`'s call) and the alarm disarmed.
//   membership  move leadership to another member (etcd's MoveLeader) during the other faults;
//               or replace a follower: MemberRemove, then a new member (new name, fresh data
//               dir, new peer URL) started with --join, added as a learner and promoted.
//   migrate     start as many new members as there are voters (--join, zone b) and move the
//               cluster onto them with `stratakv migrate run`, again while it fails; drop the
//               old members once they stopped by themselves.
//   Both membership changes are permanent: their heal waits for their last steps (bounded)
//   and records what the cluster was left with.
//
// A flip never lands in the last 4 KiB of a WAL segment: a damaged tail is the one thing a
// member repairs silently (a torn write left by a crash), and truncating records it had
// acknowledged would be a disk that lies about fsync, which Raft does not tolerate.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { IntegrityClient, type ClusterMember, type EtcdClient } from '../../src/client/index.ts';
import { logLinePattern } from '../obs/log-records.ts';
import { flipBytes, flipLogByte, flipTableBytes, stateMachineDirectory, walRecordEnds } from '../integration/level-corruption.ts';
import type { ChaosCluster, ChaosMember, Pair } from './chaos-cluster.ts';
import { describePlan, type FaultPlan } from './schedule.ts';

/** FaultEvent is one line of the fault log. */
export interface FaultEvent {
  readonly atMs: number;
  readonly ordinal: number;
  /** finding: the nemesis saw the cluster do what it must not (a run with one fails). */
  readonly phase: 'start' | 'heal' | 'note' | 'finding';
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
/** TRUNCATE_RECORDS_MIN: a segment with fewer records is not cut (too young for a cut to reach applied entries surely). */
const TRUNCATE_RECORDS_MIN = 400;

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
    // A member that left the cluster since the fault began has no links any more.
    if (!cluster.hasMember(pair[0]) || !cluster.hasMember(pair[1])) continue;
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
  const heal = hold(context, plan, target, async () => record(context, plan, 'heal', await steps.undo(member)));
  try {
    await steps.act(member);
  } catch (error) {
    context.busy.delete(target);
    throw error;
  }
  record(context, plan, 'start', `${describePlan(plan)}: ${steps.started(target)}`);
  return heal;
}

/**
 * hold marks `target` busy and answers a heal that frees it after `heal`. A member that left
 * the cluster meanwhile (a migration moved off it) is not healed: it is gone, and starting it
 * again would only bring back a removed member.
 */
function hold(context: NemesisContext, plan: FaultPlan, target: string, heal: () => Promise<void>): () => Promise<void> {
  context.busy.add(target);
  return async () => {
    try {
      if (!context.cluster.hasMember(target)) {
        record(context, plan, 'heal', `${target} left the cluster meanwhile; nothing to undo`);
        return;
      }
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
        for (const [a, b] of pairs) if (cluster.hasMember(a) && cluster.hasMember(b)) cluster.fabric.restoreLink(a, b);
        for (const other of faults.values()) applyLinkFault(cluster, other, pairs);
        record(context, plan, 'heal', 'links restored');
      };
    }
    case 'membership': {
      if (plan.variant === 'replace-member') return startReplaceMember(context, plan);
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
    case 'migrate':
      return startMigrate(context, plan);
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
  if (variant === 'truncate-wal') {
    // Whole records cut off the newest segment's tail: no torn record for recovery to find.
    // Half its records go, hundreds of entries, far more than a follower has written but not
    // applied at any moment, so the member's state machine is past the log's end and it must
    // refuse to start (a cut of only unapplied entries would be a disk that lost synced
    // writes, which Raft does not survive; see the file comment).
    const walDir = join(memberDir, 'wal');
    const segments = existsSync(walDir) ? readdirSync(walDir).filter((name) => name.endsWith('.wal')).sort() : [];
    const newest = segments[segments.length - 1];
    if (newest === undefined) return undefined;
    const path = join(walDir, newest);
    const ends = walRecordEnds(readFileSync(path));
    if (ends.length < TRUNCATE_RECORDS_MIN) return undefined;
    const keep = ends[Math.floor(ends.length / 2) - 1] ?? 0;
    const bytes = statSync(path).size;
    truncateSync(path, keep);
    return `cut ${ends.length - Math.floor(ends.length / 2)} whole records (${bytes - keep} bytes) off the tail of member/wal/${newest}`;
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
    return hold(context, plan, target, heal);
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
  // A log cut below what the member applied leaves no byte to misread: it must refuse.
  if (plan.variant === 'truncate-wal' && outcome !== 'refused') record(context, plan, 'finding', `${target} started on a WAL that lost applied entries (${outcome}): it must refuse`);
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

// ---- membership changes: replace-member and migrate ----
//
// Both change who the members are, for good: the heal does not undo them, it waits for the
// change's last steps (bounded) and records where it got. One change at a time per cluster
// (a second one meanwhile is a note): a replacement and a migration at once would fight over
// the learner slot and the member list. Other faults go on meanwhile and may hit old and new
// members alike; that is the point.

/** MEMBER_CALL_TIMEOUT_MS bounds each membership call (MemberList, MemberAdd, ...). */
const MEMBER_CALL_TIMEOUT_MS = 5_000;
/** REMOVE_TIMEOUT_MS bounds the retries of a replacement's MemberRemove; past it nothing changed. */
const REMOVE_TIMEOUT_MS = 20_000;
/** REPLACE_FINISH_TIMEOUT_MS bounds the rest of a replacement: the removed member's exit, the new member's start, add, catch-up and promotion. */
const REPLACE_FINISH_TIMEOUT_MS = 90_000;
/** REMOVED_EXIT_WAIT_MS: how long a removed member gets to stop by itself (it serves a grace period of 3 election timeouts first). */
const REMOVED_EXIT_WAIT_MS = 15_000;
const MEMBER_RETRY_PAUSE_MS = 500;
/** MIGRATE_ATTEMPT_TIMEOUT_MS bounds one `stratakv migrate run` (it is killed past it). */
const MIGRATE_ATTEMPT_TIMEOUT_MS = 180_000;
/** MIGRATE_TIMEOUT_MS bounds all the attempts of one migrate fault. */
const MIGRATE_TIMEOUT_MS = 300_000;
/** MIGRATE_ATTEMPTS_MAX bounds the runs of `stratakv migrate run` of one fault. */
const MIGRATE_ATTEMPTS_MAX = 6;
const MIGRATE_RETRY_PAUSE_MS = 2_000;
/** ROLLBACK_ATTEMPTS_MAX bounds the runs of `stratakv migrate rollback` after a migration that did not finish. */
const ROLLBACK_ATTEMPTS_MAX = 3;
/** MIGRATE_ZONE is the zone of the members a migration moves to (the old ones have none). */
const MIGRATE_ZONE = 'b';
const CLI_PATH = new URL('../../cmd/stratakv.js', import.meta.url).pathname;
const CLI_OUTPUT_CHARS_MAX = 1_000_000;

// The membership change in progress on each cluster, by its fault's description.
const changesInProgress = new WeakMap<ChaosCluster, string>();

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function errorText(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = ((error as Error).message ?? String(error)).split('\n')[0] ?? '';
  return typeof code === 'string' ? `${code}: ${message}` : message;
}

/** listedMember finds the member with `peerUrl` in the cluster's member list (undefined: not listed). */
async function listedMember(client: EtcdClient, peerUrl: string): Promise<ClusterMember | undefined> {
  const members = await client.memberList({ timeoutMs: MEMBER_CALL_TIMEOUT_MS });
  return members.find((member) => member.peerUrls.includes(peerUrl));
}

/**
 * retryUntil calls `attempt` until it answers something other than undefined or the deadline
 * passes (undefined then); a thrown error is kept as `lastError` and the attempt made again.
 */
async function retryUntil<T>(deadlineMs: number, now: () => number, attempt: () => Promise<T | undefined>, state: { lastError: string }): Promise<T | undefined> {
  while (now() < deadlineMs) {
    try {
      const answer = await attempt();
      if (answer !== undefined) return answer;
    } catch (error) {
      state.lastError = errorText(error);
    }
    await sleep(MEMBER_RETRY_PAUSE_MS);
  }
  return undefined;
}

/** beginChange takes the cluster's membership-change slot for `plan`; false (and a note) when another change holds it. */
function beginChange(context: NemesisContext, plan: FaultPlan): boolean {
  const other = changesInProgress.get(context.cluster);
  if (other !== undefined) {
    record(context, plan, 'note', `${describePlan(plan)}: another membership change is in progress (${other}); nothing to do`);
    return false;
  }
  changesInProgress.set(context.cluster, describePlan(plan));
  return true;
}

/**
 * startReplaceMember removes a running follower (MemberRemove), and then, in the background,
 * waits (bounded) for it to stop by itself, drops its container and listeners, starts a new
 * member under a new name with --join, adds it as a learner, waits until it serves and
 * promotes it (retrying while it is not caught up). The heal waits for that and records where
 * it got; a new member never added within the bound is dropped again, so the cluster is left
 * one member short rather than with a member that cannot serve.
 */
async function startReplaceMember(context: NemesisContext, plan: FaultPlan): Promise<() => Promise<void>> {
  const { cluster } = context;
  if (!beginChange(context, plan)) return async () => undefined;
  let finishing: Promise<void> | undefined;
  try {
    const target = await chooseTarget(context, plan, 'follower');
    if (target === undefined) {
      record(context, plan, 'note', `${describePlan(plan)}: no follower fits (down, paused or held by another fault); nothing to do`);
      return async () => undefined;
    }
    context.busy.add(target);
    const peerUrl = cluster.fabric.peerUrlOf(target);
    const client = cluster.client({ timeoutMs: MEMBER_CALL_TIMEOUT_MS });
    const state = { lastError: '' };
    // The id of the member once a MemberRemove was sent for it (its answer may be lost).
    let triedId: bigint | undefined;
    let removedId: bigint | undefined;
    try {
      // A MemberRemove whose answer was lost may have happened: the member list decides.
      removedId = await retryUntil(context.now() + REMOVE_TIMEOUT_MS, context.now, async () => {
        const member = await listedMember(client, peerUrl);
        if (member === undefined && triedId !== undefined) return triedId;
        if (member === undefined) throw new Error(`${target} is not in the member list`);
        triedId = member.id;
        await client.memberRemove(member.id, { timeoutMs: MEMBER_CALL_TIMEOUT_MS });
        return member.id;
      }, state);
      if (removedId === undefined && triedId !== undefined) {
        // Sent but unconfirmed: one last look, with the time a faulted cluster may need.
        const listed = await listedMember(client, peerUrl).then((member) => member !== undefined, () => undefined);
        if (listed === false) removedId = triedId;
        else if (listed === undefined) {
          record(context, plan, 'note', `${describePlan(plan)}: MemberRemove of ${target} was sent but could not be confirmed either way (last: ${state.lastError}); ${target} is left as it is`);
          context.busy.delete(target);
          return async () => undefined;
        }
      }
    } finally {
      client.close();
    }
    if (removedId === undefined) {
      context.busy.delete(target);
      record(context, plan, 'note', `${describePlan(plan)}: could not remove ${target} within ${REMOVE_TIMEOUT_MS} ms (last: ${state.lastError}); nothing changed`);
      return async () => undefined;
    }
    record(context, plan, 'start', `${describePlan(plan)}: removed ${target} (${removedId.toString(16)}) from the cluster`);
    finishing = finishReplacement(context, plan, target)
      .catch((error: unknown) => record(context, plan, 'heal', `replacement of ${target} stopped: ${errorText(error)}; members now ${cluster.members.map((member) => member.name).join(' ')}`))
      .finally(() => {
        context.busy.delete(target);
        changesInProgress.delete(cluster);
      });
    const finished = finishing;
    return async () => {
      await finished;
    };
  } finally {
    if (finishing === undefined) changesInProgress.delete(cluster);
  }
}

async function finishReplacement(context: NemesisContext, plan: FaultPlan, target: string): Promise<void> {
  const { cluster } = context;
  const deadlineMs = context.now() + REPLACE_FINISH_TIMEOUT_MS;
  const removed = cluster.member(target);
  const exited = await removed.container.exitedWithin(REMOVED_EXIT_WAIT_MS);
  await cluster.retireMember(target);
  record(context, plan, 'note', `${target} ${exited ? 'stopped by itself' : `still ran ${REMOVED_EXIT_WAIT_MS} ms after its removal (or was paused or partitioned off)`}; its container and listeners are gone`);

  const joiner = await cluster.startJoiner();
  context.busy.add(joiner.name);
  try {
    const peerUrl = cluster.fabric.peerUrlOf(joiner.name);
    record(context, plan, 'note', `${joiner.name} started with --join (fresh data dir, peer URL ${peerUrl}); adding it as a learner`);
    const client = cluster.client({ timeoutMs: MEMBER_CALL_TIMEOUT_MS });
    const state = { lastError: '' };
    try {
      // MemberAdd, unless an earlier attempt whose answer was lost did it.
      const added = await retryUntil(deadlineMs, context.now, async () => {
        const listed = await listedMember(client, peerUrl);
        if (listed !== undefined) return listed;
        return (await client.memberAdd([peerUrl], { isLearner: true, timeoutMs: MEMBER_CALL_TIMEOUT_MS })).member;
      }, state);
      if (added === undefined) {
        await cluster.retireMember(joiner.name);
        record(context, plan, 'heal', `${joiner.name} was not added within ${REPLACE_FINISH_TIMEOUT_MS} ms (last: ${state.lastError}); dropped it: the cluster is left one member short (${cluster.members.map((member) => member.name).join(' ')})`);
        return;
      }
      record(context, plan, 'note', `${joiner.name} added as learner ${added.id.toString(16)}; waiting until it serves`);
      // Its JSON `serving` line, not any line with the word (its waiting line says "serving nothing until then").
      const serving = await joiner.container.waitForOutput(logLinePattern('serving'), Math.max(1, deadlineMs - context.now())).then(() => true, (error: unknown) => {
        state.lastError = errorText(error);
        return false;
      });
      // Promote while the learner is not caught up (LEARNER_NOT_READY) or the cluster is faulted.
      const promoted = serving
        ? await retryUntil(deadlineMs, context.now, async () => {
          const listed = await listedMember(client, peerUrl);
          if (listed === undefined) throw new Error(`${joiner.name} is no longer listed`);
          if (!listed.isLearner) return listed;
          await client.memberPromote(added.id, { timeoutMs: MEMBER_CALL_TIMEOUT_MS });
          return undefined; // the next round's list confirms it
        }, state)
        : undefined;
      const members = cluster.members.map((member) => member.name).join(' ');
      if (promoted === undefined) {
        record(context, plan, 'heal', `${joiner.name} is ${serving ? 'serving but still a learner' : 'added but not serving'} after ${REPLACE_FINISH_TIMEOUT_MS} ms (last: ${state.lastError}); left so: members ${members}`);
        return;
      }
      record(context, plan, 'heal', `${joiner.name} promoted to voter; ${target} replaced; members ${members}`);
    } finally {
      client.close();
    }
  } finally {
    context.busy.delete(joiner.name);
  }
}

/** CliRun is how one `stratakv migrate ...` child ended. */
interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

/** runMigrateCli runs `node cmd/stratakv.js migrate <args>` as a child, SIGKILLed after timeoutMs; it always settles. */
function runMigrateCli(args: readonly string[], timeoutMs: number): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_PATH, 'migrate', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => (stdout = (stdout + chunk.toString()).slice(-CLI_OUTPUT_CHARS_MAX)));
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-CLI_OUTPUT_CHARS_MAX)));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: `${stderr}\n${error.message}`, timedOut });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** lastJson parses the last line of `text` that is a JSON object (the verb's -w json answer). */
function lastJson(text: string): Record<string, unknown> | undefined {
  for (const line of text.trim().split('\n').reverse()) {
    if (!line.startsWith('{')) continue;
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

interface JournalRecord {
  readonly id?: string;
  readonly next?: string;
  readonly from?: readonly { readonly name: string }[];
  readonly to?: readonly { readonly name: string }[];
  readonly log?: readonly { readonly step: string; readonly startedAtMs: number; readonly doneAtMs: number }[];
}

/** summarizeRecord is one line about a migration journal record: its members and its steps' times. */
function summarizeRecord(record: JournalRecord | undefined): string {
  if (record === undefined) return 'no record';
  const steps = (record.log ?? []).map((item) => `${item.step} ${((item.doneAtMs - item.startedAtMs) / 1000).toFixed(1)} s`).join(', ');
  return `${record.id ?? '?'} ${(record.from ?? []).map((spec) => spec.name).join(' ')} → ${(record.to ?? []).map((spec) => spec.name).join(' ')}, next ${record.next ?? 'none (finished)'}; steps: ${steps || 'none yet'}`;
}

/**
 * startMigrate starts as many new members as the cluster has (new names, --join, zone b) and,
 * in the background, runs `stratakv migrate run --to ...` onto them, again while it fails
 * (bounded); once it is done the old members have stopped by themselves and are dropped. The
 * heal waits for all of it and records where it got.
 */
async function startMigrate(context: NemesisContext, plan: FaultPlan): Promise<() => Promise<void>> {
  const { cluster } = context;
  if (!beginChange(context, plan)) return async () => undefined;
  let running: Promise<void> | undefined;
  try {
    // The voters move; a member that is not one (a learner left by a change that did not finish) stays out of it.
    const client = cluster.client({ timeoutMs: MEMBER_CALL_TIMEOUT_MS });
    const listed = await client.memberList().then((members) => members, (error: unknown) => errorText(error)).finally(() => client.close());
    if (typeof listed === 'string') {
      record(context, plan, 'note', `${describePlan(plan)}: MemberList did not answer (${listed}); nothing to do`);
      return async () => undefined;
    }
    const from = cluster.members.filter((member) => listed.some((entry) => !entry.isLearner && entry.peerUrls.includes(cluster.fabric.peerUrlOf(member.name)))).map((member) => member.name);
    if (from.length === 0) {
      record(context, plan, 'note', `${describePlan(plan)}: no voter of the member list is a member here; nothing to do`);
      return async () => undefined;
    }
    const started = await Promise.allSettled(from.map(() => cluster.startJoiner({ zone: MIGRATE_ZONE })));
    const joiners = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value.name] : []));
    const failed = started.find((result) => result.status === 'rejected');
    if (failed !== undefined) {
      for (const name of joiners) await cluster.retireMember(name);
      record(context, plan, 'note', `${describePlan(plan)}: could not start the new members: ${errorText((failed as PromiseRejectedResult).reason)}; nothing changed`);
      return async () => undefined;
    }
    const to = joiners.map((name) => `${name}=${cluster.fabric.peerUrlOf(name)}`).join(',');
    record(context, plan, 'start', `${describePlan(plan)}: started ${joiners.join(' ')} with --join (zone ${MIGRATE_ZONE}); migrating ${from.join(' ')} → ${joiners.join(' ')}`);
    running = migrate(context, plan, { from, joiners, to })
      .catch((error: unknown) => record(context, plan, 'heal', `migration stopped: ${errorText(error)}; members now ${cluster.members.map((member) => member.name).join(' ')}`))
      .finally(() => changesInProgress.delete(cluster));
    const finished = running;
    return async () => {
      await finished;
    };
  } finally {
    if (running === undefined) changesInProgress.delete(cluster);
  }
}

async function migrate(context: NemesisContext, plan: FaultPlan, move: { readonly from: readonly string[]; readonly joiners: readonly string[]; readonly to: string }): Promise<void> {
  const { cluster } = context;
  const deadlineMs = context.now() + MIGRATE_TIMEOUT_MS;
  const ours = (record: JournalRecord | undefined): boolean => record !== undefined && (record.to ?? []).map((spec) => spec.name).join(' ') === move.joiners.join(' ');
  let done = false;
  for (let attempt = 1; attempt <= MIGRATE_ATTEMPTS_MAX && !done && context.now() < deadlineMs; attempt += 1) {
    const endpoints = `--endpoints=${cluster.clientEndpoints().join(',')}`;
    let args = ['run', endpoints, `--to=${move.to}`, '-w', 'json'];
    if (attempt > 1) {
      // A failed run may have recorded the migration, or even finished it: the journal says.
      const status = await runMigrateCli(['status', endpoints, '-w', 'json'], MEMBER_CALL_TIMEOUT_MS * 2);
      const answer = lastJson(status.stdout);
      const record = answer?.record as JournalRecord | null | undefined;
      if (status.code === 0 && ours(record ?? undefined) && answer?.inProgress === false) {
        recordNote(context, plan, `the journal says the migration finished: ${summarizeRecord(record ?? undefined)}`);
        done = true;
        break;
      }
      if (status.code === 0 && answer?.inProgress === true && ours(record ?? undefined)) args = ['run', endpoints, '-w', 'json'];
    }
    const run = await runMigrateCli(args, Math.max(1, Math.min(MIGRATE_ATTEMPT_TIMEOUT_MS, deadlineMs - context.now())));
    writeFileSync(join(cluster.folder, `migrate-${plan.ordinal}-${attempt}.log`), `$ stratakv migrate ${args.join(' ')}\n--- exit ${run.code ?? run.signal ?? '?'}${run.timedOut ? ' (killed: timeout)' : ''}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`);
    const answer = lastJson(run.stdout);
    const how = args.includes(`--to=${move.to}`) ? 'run --to' : 'run (resume)';
    if (run.code === 0) {
      recordNote(context, plan, `migrate ${how}, attempt ${attempt}: ${String(answer?.result ?? 'done')}: ${summarizeRecord(answer?.record as JournalRecord | undefined)}`);
      done = true;
      break;
    }
    const why = run.timedOut ? `killed after ${MIGRATE_ATTEMPT_TIMEOUT_MS} ms` : answer !== undefined ? `${String(answer.code ?? '?')}: ${String(answer.error ?? '').replace(/\s+/g, ' ').slice(0, 300)}` : `exit ${run.code ?? run.signal ?? '?'}: ${run.stderr.trim().split('\n').slice(-1)[0] ?? ''}`;
    recordNote(context, plan, `migrate ${how}, attempt ${attempt} failed (${why}); ${attempt < MIGRATE_ATTEMPTS_MAX ? 'again' : 'giving up'}`);
    await sleep(MIGRATE_RETRY_PAUSE_MS);
  }
  if (!done) {
    await giveUpMigration(context, plan, move);
    return;
  }
  // The old members were removed and stop by themselves; the harness drops them, not as faults.
  const gone = await Promise.all(move.from.filter((name) => cluster.hasMember(name)).map(async (name) => {
    const exited = await cluster.member(name).container.exitedWithin(REMOVED_EXIT_WAIT_MS);
    await cluster.retireMember(name);
    return exited ? name : `${name} (removed by us: still running)`;
  }));
  record(context, plan, 'heal', `old members dropped: ${gone.join(', ')}; members now ${cluster.members.map((member) => member.name).join(' ')}`);
}

/**
 * giveUpMigration undoes a migration that did not finish: `stratakv migrate rollback` (bounded
 * attempts) if one was recorded, then drops the new members the cluster does not list (never
 * added, or removed by the rollback). A rollback refused after the old members were removed
 * leaves the cluster as it is, recorded.
 */
async function giveUpMigration(context: NemesisContext, plan: FaultPlan, move: { readonly joiners: readonly string[] }): Promise<void> {
  const { cluster } = context;
  const endpoints = (): string => `--endpoints=${cluster.clientEndpoints().join(',')}`;
  const status = await runMigrateCli(['status', endpoints(), '-w', 'json'], MEMBER_CALL_TIMEOUT_MS * 2);
  const answer = lastJson(status.stdout);
  recordNote(context, plan, `migration NOT finished within ${MIGRATE_TIMEOUT_MS} ms / ${MIGRATE_ATTEMPTS_MAX} runs; journal: ${answer === undefined ? `unreadable (${status.stderr.trim().split('\n').slice(-1)[0] ?? ''})` : summarizeRecord((answer.record ?? undefined) as JournalRecord | undefined)}`);
  if (answer?.inProgress !== false) {
    for (let attempt = 1; attempt <= ROLLBACK_ATTEMPTS_MAX; attempt += 1) {
      const rollback = await runMigrateCli(['rollback', endpoints(), '-w', 'json'], MIGRATE_ATTEMPT_TIMEOUT_MS);
      writeFileSync(join(cluster.folder, `migrate-${plan.ordinal}-rollback-${attempt}.log`), `--- exit ${rollback.code ?? rollback.signal ?? '?'}\n--- stdout\n${rollback.stdout}\n--- stderr\n${rollback.stderr}`);
      const result = lastJson(rollback.stdout);
      recordNote(context, plan, `migrate rollback, attempt ${attempt}: ${rollback.code === 0 ? `${String(result?.result ?? 'done')}: ${summarizeRecord(result?.record as JournalRecord | undefined)}` : `failed (${String(result?.code ?? rollback.code ?? rollback.signal)}: ${String(result?.error ?? '').replace(/\s+/g, ' ').slice(0, 300)})`}`);
      if (rollback.code === 0 || String(result?.code ?? '') === 'INVALID_ARGUMENT') break;
      await sleep(MIGRATE_RETRY_PAUSE_MS);
    }
  }
  const client = cluster.client({ timeoutMs: MEMBER_CALL_TIMEOUT_MS });
  const state = { lastError: '' };
  const listed = await retryUntil(context.now() + REMOVE_TIMEOUT_MS, context.now, () => client.memberList(), state).finally(() => client.close());
  if (listed === undefined) {
    record(context, plan, 'heal', `MemberList did not answer (last: ${state.lastError}); members left as they are: ${cluster.members.map((member) => member.name).join(' ')}`);
    return;
  }
  const unlisted = move.joiners.filter((name) => cluster.hasMember(name) && !listed.some((entry) => entry.peerUrls.includes(cluster.fabric.peerUrlOf(name))));
  for (const name of unlisted) await cluster.retireMember(name);
  record(context, plan, 'heal', `dropped the new members the cluster does not list (${unlisted.join(' ') || 'none'}); members now ${cluster.members.map((member) => member.name).join(' ')}`);
}

/** recordNote records a note of a change's progress. */
function recordNote(context: NemesisContext, plan: FaultPlan, text: string): void {
  record(context, plan, 'note', text);
}

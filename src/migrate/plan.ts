// Planning a migration: from what the cluster says now (its leader's view of replication, its
// alarms, its journal) and what the new members say (a probe of each one's peer URL while it
// waits to be added), the exact steps a run would take, or why it must not run. Pure: the
// gathering is done by the caller (planMigration in migration-run.ts), so every rule here is
// tested without a cluster.
//
// A plan is refused (the migration would start on a cluster it could hurt) when: the cluster
// has no leader, a voter is not reachable or not active, an alarm is raised, another migration
// is in progress (a different target in the journal), a new member is neither a member
// already nor waiting to be added under the name given, a name or peer URL is given twice or
// belongs to another member, or (with requireZoneSpread) the new voters would have a majority
// in one zone or a member with no zone.

import type { MigrationMemberInfo, ReplicationInfo } from '../client/index.ts';
import type { MemberSpec, MigrationRecord, StepName } from './migration-record.ts';
import { MOVE_STEPS, RECORD_FORMAT } from './migration-record.ts';

/** TARGETS_MAX bounds the members a migration moves to. */
export const TARGETS_MAX = 9;

/** TargetSpec is one new member as the operator names it (--to NAME=PEER_URL). */
export interface TargetSpec {
  readonly name: string;
  readonly peerUrls: readonly string[];
}

/** JoinProbe is what a new member's peer URL answered: waiting to be added (its name and zone), or nothing. */
export type JoinProbe = { readonly waiting: true; readonly name: string; readonly zone: string } | { readonly waiting: false; readonly reason: string };

/** PlannedStep is one step of a plan, with what it will do in words. */
export interface PlannedStep {
  readonly step: StepName;
  readonly does: string;
  /** Done already (a resumed migration): listed, not run again. */
  readonly done: boolean;
}

/** Plan is a plan's outcome: the record to run (new, or the journal's to resume), its steps, and what refuses or warns. */
export interface Plan {
  readonly record: MigrationRecord | undefined;
  readonly resuming: boolean;
  readonly steps: readonly PlannedStep[];
  readonly refusals: readonly string[];
  readonly warnings: readonly string[];
}

/** PlanInput is everything a plan is made from. */
export interface PlanInput {
  readonly replication: ReplicationInfo;
  readonly alarms: readonly { readonly memberId: string; readonly alarm: string }[];
  readonly journal: MigrationRecord | undefined;
  /** The targets named (empty: resume what the journal holds). */
  readonly targets: readonly TargetSpec[];
  /** A probe per target, by name (absent for targets that are members already). */
  readonly probes: ReadonlyMap<string, JoinProbe>;
  readonly requireZoneSpread: boolean;
  readonly nowMs: number;
  readonly newId: () => string;
}

/** makePlan makes a plan (see the file comment). */
export function makePlan(input: PlanInput): Plan {
  const refusals: string[] = [];
  const warnings: string[] = [];
  const { replication } = input;
  const hex = (id: number): string => id.toString(16);
  const nameOf = (id: number): string => replication.members.find((member) => member.id === id)?.name || hex(id);

  // The cluster's health.
  for (const voter of replication.voters) {
    if (voter === replication.leaderId) continue;
    const peer = replication.peers.find((candidate) => candidate.id === voter);
    if (peer === undefined || !peer.recentActive || peer.rttMs === undefined) refusals.push(`voter ${nameOf(voter)} (${hex(voter)}) is not reachable from the leader: the cluster is not healthy`);
  }
  if (replication.votersOutgoing.length > 0 && input.journal === undefined) refusals.push('the cluster is in a joint configuration that no migration started; leave it first');
  for (const alarm of input.alarms) refusals.push(`alarm ${alarm.alarm} is raised for member ${alarm.memberId}: resolve it first (stratakv alarm list)`);

  const inProgress = input.journal !== undefined && input.journal.next !== undefined ? input.journal : undefined;
  if (inProgress !== undefined) {
    if (input.targets.length > 0 && !sameTargets(inProgress.to, input.targets)) {
      refusals.push(`another migration (${inProgress.id}) is in progress, to ${inProgress.to.map((spec) => spec.name).join(', ')}; resume it (stratakv migrate run) or roll it back (stratakv migrate rollback)`);
      return { record: undefined, resuming: false, steps: [], refusals, warnings };
    }
    // Resuming: the health of the cluster is what it is mid-migration; only alarms and reachability refuse.
    return { record: inProgress, resuming: true, steps: describe(inProgress, nameOf), refusals, warnings };
  }
  if (input.targets.length === 0) {
    refusals.push('no migration is in progress; name the new members with --to NAME=PEER_URL,...');
    return { record: undefined, resuming: false, steps: [], refusals, warnings };
  }
  if (input.targets.length > TARGETS_MAX) refusals.push(`${input.targets.length} new members is more than ${TARGETS_MAX}`);

  // The targets.
  const to: MemberSpec[] = [];
  const seenUrls = new Set<string>();
  for (const target of input.targets) {
    if (to.some((spec) => spec.name === target.name)) refusals.push(`new member ${target.name} is named twice`);
    for (const url of target.peerUrls) {
      if (seenUrls.has(url)) refusals.push(`peer URL ${url} is given twice`);
      seenUrls.add(url);
    }
    const member = findMember(replication.members, target.peerUrls);
    if (member !== undefined) {
      if (member.name !== '' && member.name !== target.name) refusals.push(`peer URL ${target.peerUrls.join(',')} belongs to member ${member.name}, not ${target.name}`);
      to.push({ name: target.name, peerUrls: target.peerUrls, id: member.id, zone: member.zone });
      continue;
    }
    const clash = replication.members.find((candidate) => candidate.peerUrls.some((url) => target.peerUrls.includes(url)));
    if (clash !== undefined) refusals.push(`peer URL of ${target.name} is used by member ${clash.name || hex(clash.id)} with other URLs`);
    const probe = input.probes.get(target.name);
    if (probe === undefined || !probe.waiting) {
      refusals.push(`new member ${target.name} at ${target.peerUrls.join(',')} is not started or not reachable (${probe !== undefined && !probe.waiting ? probe.reason : 'no answer'}); start it with stratakv serve --join`);
      to.push({ name: target.name, peerUrls: target.peerUrls, id: 0, zone: '' });
      continue;
    }
    if (probe.name !== target.name) refusals.push(`the member waiting at ${target.peerUrls.join(',')} is named ${probe.name}, not ${target.name}`);
    to.push({ name: target.name, peerUrls: target.peerUrls, id: 0, zone: probe.zone });
  }

  // Zones: a majority of the new voters in one zone loses quorum with that zone.
  const zoneCounts = new Map<string, number>();
  for (const spec of to) zoneCounts.set(spec.zone, (zoneCounts.get(spec.zone) ?? 0) + 1);
  const majority = Math.floor(to.length / 2) + 1;
  for (const [zone, count] of zoneCounts) {
    if (count < majority || to.length < 2) continue;
    const text = zone === '' ? `${count} of the ${to.length} new voters have no zone` : `${count} of the ${to.length} new voters are in zone ${zone}: losing that zone loses the cluster's quorum`;
    if (input.requireZoneSpread) refusals.push(text);
    else warnings.push(text);
  }

  const from: MemberSpec[] = replication.voters.map((id) => {
    const member = replication.members.find((candidate) => candidate.id === id);
    return { name: member?.name ?? '', peerUrls: member?.peerUrls ?? [], id, zone: member?.zone ?? '' };
  });
  if (to.every((spec) => spec.id !== 0 && replication.voters.includes(spec.id)) && from.length === to.length) refusals.push('the new members are the voters already: nothing to migrate');
  const record: MigrationRecord = {
    format: RECORD_FORMAT,
    id: input.newId(),
    kind: 'move',
    from,
    to,
    next: MOVE_STEPS[0],
    startedAtMs: input.nowMs,
    updatedAtMs: input.nowMs,
    log: [],
  };
  return { record, resuming: false, steps: describe(record, nameOf), refusals, warnings };
}

/** describe lists a record's steps in words, marking those done. */
export function describe(record: MigrationRecord, nameOf: (id: number) => string = (id) => id.toString(16)): PlannedStep[] {
  const names = (specs: readonly MemberSpec[]): string => specs.map((spec) => spec.name || nameOf(spec.id)).join(', ');
  const toOnly = record.to.filter((spec) => !record.from.some((old) => old.id !== 0 && old.id === spec.id));
  const fromOnly = record.from.filter((spec) => !record.to.some((target) => target.id !== 0 && target.id === spec.id));
  const texts: Record<StepName, string> = {
    'add-learners': `add ${toOnly.map((spec) => `${spec.name} (${spec.peerUrls.join(',')}${spec.zone !== '' ? `, zone ${spec.zone}` : ''})`).join(', ')} as learners, in one go`,
    'catch-up': `wait until ${names(toOnly)} have caught up with the leader by snapshot and log (no snapshot in flight, applied within a few entries of the leader)`,
    'verify-before': `verify that every member's state digest is equal at one checkpoint index`,
    'swap-voters': `one joint-consensus change: voters {${names(record.from)}} -> {${names(record.to)}}; ${names(fromOnly)} become learners when it is left`,
    'transfer-leader': `transfer leadership to the best of ${names(record.to)} (caught up, no snapshot in flight, lowest round trip), unless one leads already`,
    'leave-joint': `leave the joint configuration: the voters are ${names(record.to)}`,
    'remove-old': `remove ${names(fromOnly)} (they stop by themselves)`,
    'remove-learners': `remove the learners ${names(toOnly)} that the migration added`,
    'verify-after': `verify that every member's state digest is equal at one checkpoint index`,
  };
  const steps = record.kind === 'move' ? MOVE_STEPS : (['remove-learners', 'verify-after'] as const);
  const nextAt = record.next === undefined ? steps.length : steps.indexOf(record.next as never);
  return steps.map((step, at) => ({ step, does: texts[step], done: at < nextAt }));
}

function sameTargets(specs: readonly MemberSpec[], targets: readonly TargetSpec[]): boolean {
  if (specs.length !== targets.length) return false;
  return targets.every((target) => specs.some((spec) => spec.name === target.name && spec.peerUrls.length === target.peerUrls.length && spec.peerUrls.every((url) => target.peerUrls.includes(url))));
}

function findMember(members: readonly MigrationMemberInfo[], peerUrls: readonly string[]): MigrationMemberInfo | undefined {
  return members.find((member) => member.peerUrls.length === peerUrls.length && member.peerUrls.every((url) => peerUrls.includes(url)));
}

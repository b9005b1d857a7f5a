// The cluster's alarms (etcd's alarm store): which member raised which alarm. Like the member
// table, the set is driver state replicated through the Raft log: it changes only when an
// `alarm` node command (node-command.ts) is applied, or when the driver itself decides at apply
// time (which every member decides alike), so every member holds the same set at the same
// applied index. A snapshot carries it (snapshot-descriptor.ts), since the log before the
// snapshot is compacted; a restart rebuilds it from the latest snapshot and the log after it.
//
// What an alarm does is decided by RaftNode (src/node/README.md, Alarms):
//   NOSPACE  (any member)   Put, and a Txn with a Put in either branch, are refused everywhere.
//   CORRUPT  (member id M)  member M serves no KV call at all, and does not stay leader.
//   CORRUPT  (member id 0)  the cluster has no majority digest: writes are refused everywhere.
//
// Invariant: no two records are equal; list() is ordered by member id, then alarm type.
// Bound: ALARMS_MAX records; an activation past it changes nothing (deterministically, since
// every member holds the same set).

import { assert } from '../util/assert.ts';

/** AlarmType is an alarm etcd knows (etcdserverpb.AlarmType without NONE). */
export type AlarmType = 'NOSPACE' | 'CORRUPT';

/** ALARM_TYPES lists the alarm types in etcd's enum order (NOSPACE = 1, CORRUPT = 2). */
export const ALARM_TYPES: readonly AlarmType[] = ['NOSPACE', 'CORRUPT'];

/** AlarmAction is what an alarm command does. */
export type AlarmAction = 'activate' | 'deactivate';

/** AlarmRecord is one raised alarm: etcd's AlarmMember. Member id 0 stands for the whole cluster. */
export interface AlarmRecord {
  readonly memberId: number;
  readonly alarm: AlarmType;
}

/** AlarmChange is one change to the set, as applied. */
export interface AlarmChange extends AlarmRecord {
  readonly action: AlarmAction;
}

/** CLUSTER_ALARM_MEMBER_ID is the member id of an alarm about the whole cluster (CORRUPT: no majority digest). */
export const CLUSTER_ALARM_MEMBER_ID = 0;

/** ALARMS_MAX bounds the set: two alarm types for every member a table may hold, and then some. */
export const ALARMS_MAX = 256;

/** isAlarmType tells whether `value` is an AlarmType. */
export function isAlarmType(value: unknown): value is AlarmType {
  return value === 'NOSPACE' || value === 'CORRUPT';
}

/** isAlarmMemberId tells whether `value` can name an alarm's member (0 for the cluster, or a member id). */
export function isAlarmMemberId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * describeAlarm writes an alarm as etcd writes an AlarmMember (its protobuf text form, in
 * Status' `errors` and in `etcdctl alarm list`): "memberID:<decimal id> alarm:NOSPACE ", with
 * etcd's trailing space, so that a script written against etcd matches it.
 */
export function describeAlarm(record: AlarmRecord): string {
  return `memberID:${record.memberId} alarm:${record.alarm} `;
}

/** AlarmSet is the set of raised alarms (see the file comment). */
export class AlarmSet {
  // Keyed by alarmKey(memberId, alarm).
  private readonly records = new Map<string, AlarmRecord>();

  /** size is how many alarms are raised. */
  get size(): number {
    return this.records.size;
  }

  /** list answers every raised alarm, ordered by member id, then type (NOSPACE first). */
  list(): AlarmRecord[] {
    return [...this.records.values()].sort(compareAlarms);
  }

  /** ofType answers the raised alarms of one type, in list() order. */
  ofType(alarm: AlarmType): AlarmRecord[] {
    return this.list().filter((record) => record.alarm === alarm);
  }

  /** has tells whether `memberId` has raised `alarm`. */
  has(memberId: number, alarm: AlarmType): boolean {
    return this.records.has(alarmKey(memberId, alarm));
  }

  /** hasType tells whether any member has raised `alarm`. */
  hasType(alarm: AlarmType): boolean {
    for (const record of this.records.values()) if (record.alarm === alarm) return true;
    return false;
  }

  /**
   * activate raises `alarm` for `memberId`; answers whether the set changed (false when it was
   * raised already, or the set is full).
   */
  activate(memberId: number, alarm: AlarmType): boolean {
    assert(isAlarmMemberId(memberId), `an alarm's member id is 0 or a member id, not ${memberId}`);
    assert(isAlarmType(alarm), `unknown alarm type ${String(alarm)}`);
    const key = alarmKey(memberId, alarm);
    if (this.records.has(key) || this.records.size >= ALARMS_MAX) return false;
    this.records.set(key, { memberId, alarm });
    return true;
  }

  /** deactivate clears `alarm` of `memberId`; answers whether it was raised. */
  deactivate(memberId: number, alarm: AlarmType): boolean {
    assert(isAlarmMemberId(memberId), `an alarm's member id is 0 or a member id, not ${memberId}`);
    assert(isAlarmType(alarm), `unknown alarm type ${String(alarm)}`);
    return this.records.delete(alarmKey(memberId, alarm));
  }

  /** deactivateAll clears every alarm of one type; answers the records cleared, in list() order. */
  deactivateAll(alarm: AlarmType): AlarmRecord[] {
    const cleared = this.ofType(alarm);
    for (const record of cleared) this.records.delete(alarmKey(record.memberId, record.alarm));
    return cleared;
  }

  /** restore replaces the set with a snapshot's (at most ALARMS_MAX records; duplicates collapse). */
  restore(records: readonly AlarmRecord[]): void {
    assert(records.length <= ALARMS_MAX, `a snapshot with ${records.length} alarms`);
    this.records.clear();
    for (const record of records) this.activate(record.memberId, record.alarm);
  }
}

function alarmKey(memberId: number, alarm: AlarmType): string {
  return `${memberId}/${alarm}`;
}

function compareAlarms(a: AlarmRecord, b: AlarmRecord): number {
  return a.memberId - b.memberId || ALARM_TYPES.indexOf(a.alarm) - ALARM_TYPES.indexOf(b.alarm);
}

// What a Raft Snapshot's `data` holds in stratakv: not the state (that is the snapshot file,
// streamed beside the Raft messages and kept by src/snapshot) but a small descriptor naming
// the file, its length and hash, and the member table at the snapshot's index. It is written
// into the log's snapshot record, so a restart knows which file its state machine may need
// and rebuilds the member table (and the alarms beside it) without the compacted log.

import { Packr } from 'msgpackr';
import { ErrorCode, StrataError } from '../util/index.ts';
import type { AlarmRecord } from './alarms.ts';
import { ALARMS_MAX, isAlarmMemberId, isAlarmType } from './alarms.ts';
import type { MemberRecord, MembershipState } from './membership.ts';
import { MEMBERS_MAX, REMOVED_IDS_KEPT_MAX } from './membership.ts';
import { checkJournalState } from './migration-journal.ts';

/** SnapshotDescriptor is the data of a Raft Snapshot. */
export interface SnapshotDescriptor {
  /** The snapshot file's id in the snapshot store (src/snapshot's snapshotId). */
  readonly snapshotId: string;
  readonly byteLength: number;
  /** SHA-256 of the file's content, hex. */
  readonly sha256: string;
  readonly membership: MembershipState;
}

const DESCRIPTOR_FORMAT = 1;
const packr = new Packr({ useRecords: false, moreTypes: false });

/** encodeMembershipState encodes the member table (as a snapshot file's footer carries it). */
export function encodeMembershipState(state: MembershipState): Uint8Array {
  return packr.pack([DESCRIPTOR_FORMAT, membershipFields(state)]);
}

/** decodeMembershipState reads encodeMembershipState's bytes; CORRUPTION when malformed. */
export function decodeMembershipState(bytes: Uint8Array): MembershipState {
  const value = unpack(bytes, 'member table');
  if (!Array.isArray(value) || value[0] !== DESCRIPTOR_FORMAT) throw malformed('member table', 'bad format');
  return membershipFrom(value[1]);
}

/** encodeSnapshotDescriptor encodes a descriptor for Snapshot.data. */
export function encodeSnapshotDescriptor(descriptor: SnapshotDescriptor): Uint8Array {
  return packr.pack([DESCRIPTOR_FORMAT, descriptor.snapshotId, descriptor.byteLength, descriptor.sha256, membershipFields(descriptor.membership)]);
}

/** decodeSnapshotDescriptor reads Snapshot.data; CORRUPTION when malformed. */
export function decodeSnapshotDescriptor(bytes: Uint8Array): SnapshotDescriptor {
  const value = unpack(bytes, 'snapshot descriptor');
  if (!Array.isArray(value) || value.length !== 5 || value[0] !== DESCRIPTOR_FORMAT) throw malformed('snapshot descriptor', 'bad format');
  const [, snapshotId, byteLength, sha256, membership] = value as unknown[];
  if (typeof snapshotId !== 'string' || !/^[0-9a-f]{16}-[0-9a-f]{16}$/.test(snapshotId)) throw malformed('snapshot descriptor', 'bad snapshot id');
  if (typeof byteLength !== 'number' || !Number.isSafeInteger(byteLength) || byteLength <= 0) throw malformed('snapshot descriptor', 'bad length');
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) throw malformed('snapshot descriptor', 'bad SHA-256');
  return { snapshotId, byteLength, sha256, membership: membershipFrom(membership) };
}

// The table is [members, removed, published], and [..., alarms] when alarms are raised: a
// table without alarms is written in the 3-field form that snapshots had before alarms
// existed, and both forms are read.
function membershipFields(state: MembershipState): unknown[] {
  const fields: unknown[] = [
    // A member's zone is a sixth element, left out when it has none: the 5-element form that
    // tables had before zones existed, which is read with zone ''.
    state.members.map((member) => [member.id, member.name, [...member.peerUrls], [...member.clientUrls], member.isLearner, ...(member.zone === '' ? [] : [member.zone])]),
    [...state.removed],
    [...state.published],
  ];
  const alarms = state.alarms ?? [];
  // The migration journal is a fifth field, after the alarms (then written even when empty).
  if (alarms.length > 0 || state.journal !== undefined) fields.push(alarms.map((record) => [record.memberId, record.alarm]));
  if (state.journal !== undefined) fields.push({ version: state.journal.version, ...(state.journal.record !== undefined ? { record: state.journal.record } : {}) });
  return fields;
}

function membershipFrom(value: unknown): MembershipState {
  if (!Array.isArray(value) || value.length < 3 || value.length > 5) throw malformed('member table', 'not a table');
  const [members, removed, published, alarms, journal] = value as unknown[];
  if (!Array.isArray(members) || members.length > MEMBERS_MAX) throw malformed('member table', 'bad members');
  if (!isIdList(removed, REMOVED_IDS_KEPT_MAX) || !isIdList(published, MEMBERS_MAX)) throw malformed('member table', 'bad id list');
  const table = { members: members.map(memberFrom), removed, published };
  const journalState = checkJournalState(journal);
  return { ...table, ...(alarms === undefined ? {} : { alarms: alarmsFrom(alarms) }), ...(journalState === undefined ? {} : { journal: journalState }) };
}

function alarmsFrom(value: unknown): AlarmRecord[] {
  if (!Array.isArray(value) || value.length > ALARMS_MAX) throw malformed('member table', 'bad alarm list');
  return value.map((item: unknown) => {
    if (!Array.isArray(item) || item.length !== 2) throw malformed('member table', 'bad alarm');
    const [memberId, alarm] = item as unknown[];
    if (!isAlarmMemberId(memberId) || !isAlarmType(alarm)) throw malformed('member table', `bad alarm ${JSON.stringify(item)}`);
    return { memberId, alarm };
  });
}

function memberFrom(value: unknown): MemberRecord {
  if (!Array.isArray(value) || (value.length !== 5 && value.length !== 6)) throw malformed('member table', 'bad member');
  const [id, name, peerUrls, clientUrls, isLearner, zone = ''] = value as unknown[];
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) throw malformed('member table', 'bad member id');
  if (typeof name !== 'string' || !isStringList(peerUrls) || !isStringList(clientUrls) || typeof isLearner !== 'boolean' || typeof zone !== 'string') {
    throw malformed('member table', `bad member ${id.toString(16)}`);
  }
  return { id, name, peerUrls, clientUrls, isLearner, zone };
}

function isIdList(value: unknown, max: number): value is number[] {
  return Array.isArray(value) && value.length <= max && value.every((id) => typeof id === 'number' && Number.isSafeInteger(id) && id > 0);
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.length <= 64 && value.every((item) => typeof item === 'string');
}

function unpack(bytes: Uint8Array, what: string): unknown {
  try {
    return packr.unpack(bytes);
  } catch (error) {
    throw new StrataError(ErrorCode.CORRUPTION, `malformed ${what}: ${String(error)}`, { cause: error });
  }
}

function malformed(what: string, why: string): StrataError {
  return new StrataError(ErrorCode.CORRUPTION, `malformed ${what}: ${why}`);
}

// Commands for the driver itself that travel through the Raft log next to KV commands (a
// member publishing its name, an alarm raised or cleared, a digest report, the migration
// journal, a log hold). The first byte is NODE_COMMAND_FORMAT (src/storage), which the KV state machine skips; the rest
// is JSON: these commands are rare, tiny, and worth reading in a log dump.

import type { DigestReport } from './integrity-checks.ts';
import { checkDigestReport } from './integrity-checks.ts';
import { NODE_COMMAND_FORMAT } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { AlarmAction, AlarmType } from './alarms.ts';
import { isAlarmMemberId, isAlarmType } from './alarms.ts';
import type { LogHoldCommand } from './log-holds.ts';
import { checkLogHoldCommand, logHoldCommandProblem } from './log-holds.ts';
import type { JournalCommand } from './migration-journal.ts';
import { checkJournalCommand } from './migration-journal.ts';

/**
 * PublishCommand records a member's name, client URLs and zone once it has started (etcd's
 * publish). `zone` is left out when the member has none, so such a command is byte for byte
 * what members wrote before zones existed, and those decode with no zone.
 */
export interface PublishCommand {
  readonly type: 'publish';
  readonly memberId: number;
  readonly name: string;
  readonly clientUrls: readonly string[];
  /** The member's zone label (membership.ts's isZoneName); absent: none. */
  readonly zone?: string;
}

/**
 * AlarmCommand raises or clears an alarm (etcd's AlarmRequest ACTIVATE and DEACTIVATE, which
 * etcd also applies through its log). Member id 0 stands for the whole cluster.
 */
export interface AlarmCommand {
  readonly type: 'alarm';
  readonly action: AlarmAction;
  readonly memberId: number;
  readonly alarm: AlarmType;
}

/** NodeCommand is any command the driver applies. */
export type NodeCommand = PublishCommand | AlarmCommand | DigestReport | JournalCommand | LogHoldCommand;

/** MemberContext is what a membership ConfChange carries in its context. */
export interface MemberContext {
  readonly peerUrls: readonly string[];
  readonly name: string;
}

/** encodeNodeCommand encodes a command for an entry's data. */
export function encodeNodeCommand(command: NodeCommand): Uint8Array {
  // What every member would refuse as CORRUPTION when applying it must never be proposed.
  if (command.type === 'logHold') {
    const problem = logHoldCommandProblem({ ...command });
    assert(problem === undefined, `a logHold command is checked before it is proposed: ${problem ?? ''}`);
  }
  const json = new TextEncoder().encode(JSON.stringify(command));
  const data = new Uint8Array(json.byteLength + 1);
  data[0] = NODE_COMMAND_FORMAT;
  data.set(json, 1);
  return data;
}

/** decodeNodeCommand decodes an entry's data; malformed bytes are CORRUPTION (they passed a CRC). */
export function decodeNodeCommand(data: Uint8Array): NodeCommand {
  const value = parseJson(data.subarray(1), 'node command');
  if (value === null || typeof value !== 'object') throw malformed('node command is not an object');
  const command = value as Record<string, unknown>;
  if (command.type === 'alarm') return alarmCommandFrom(command);
  if (command.type === 'digestReport') return checkDigestReport(command);
  if (command.type === 'journal') return checkJournalCommand(command);
  if (command.type === 'logHold') return checkLogHoldCommand(command);
  if (command.type !== 'publish') throw malformed(`unknown node command type ${JSON.stringify(command.type)}`);
  if (typeof command.memberId !== 'number' || !Number.isSafeInteger(command.memberId)) throw malformed('publish: bad memberId');
  if (typeof command.name !== 'string') throw malformed('publish: bad name');
  if (!isStringArray(command.clientUrls)) throw malformed('publish: bad clientUrls');
  if (command.zone !== undefined && typeof command.zone !== 'string') throw malformed('publish: bad zone');
  const zone = command.zone === undefined || command.zone === '' ? {} : { zone: command.zone };
  return { type: 'publish', memberId: command.memberId, name: command.name, clientUrls: command.clientUrls, ...zone };
}

function alarmCommandFrom(command: Record<string, unknown>): AlarmCommand {
  if (command.action !== 'activate' && command.action !== 'deactivate') throw malformed(`alarm: bad action ${JSON.stringify(command.action)}`);
  if (!isAlarmMemberId(command.memberId)) throw malformed('alarm: bad memberId');
  if (!isAlarmType(command.alarm)) throw malformed(`alarm: bad alarm ${JSON.stringify(command.alarm)}`);
  return { type: 'alarm', action: command.action, memberId: command.memberId, alarm: command.alarm };
}

/** encodeMemberContext encodes a ConfChange context. */
export function encodeMemberContext(context: MemberContext): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(context));
}

/** decodeMemberContext decodes a ConfChange context; undefined for bootstrap changes, which have none. */
export function decodeMemberContext(data: Uint8Array | undefined): MemberContext | undefined {
  if (data === undefined || data.byteLength === 0) return undefined;
  const value = parseJson(data, 'member context');
  if (value === null || typeof value !== 'object') throw malformed('member context is not an object');
  const context = value as Record<string, unknown>;
  if (!isStringArray(context.peerUrls)) throw malformed('member context: bad peerUrls');
  if (typeof context.name !== 'string') throw malformed('member context: bad name');
  return { peerUrls: context.peerUrls, name: context.name };
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    throw new StrataError(ErrorCode.CORRUPTION, `${what} is not valid JSON`, { cause: error });
  }
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

function malformed(message: string): StrataError {
  return new StrataError(ErrorCode.CORRUPTION, message);
}

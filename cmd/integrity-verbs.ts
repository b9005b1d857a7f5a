// `stratakv check` and `stratakv member rebuild`: the cluster's integrity checks (src/client's
// IntegrityClient over the Admin service).
//   check: one member proposes a checkpoint through Raft; every member reports its state
//     digest at that index; prints each member's revision, key count and digest and the
//     verdict. Exit 0 when every member agrees, 1 when a member differs, the cluster has no
//     majority or not every member reported in time, 2 for a usage error.
//   member rebuild --member NAME: that member discards its state and installs the leader's
//     snapshot (checked), then a checkpoint compares it with the others; agreeing with the
//     majority clears its CORRUPT alarm. Exit 0 when it agrees, 1 otherwise.

import type { IntegrityCheck } from '../src/client/index.ts';
import { EtcdClient, IntegrityClient, normalizeEndpoint } from '../src/client/index.ts';
import { ErrorCode, StrataError } from '../src/util/errors.ts';
import type { FlagKind } from './client-verbs.ts';
import { DEFAULT_ENDPOINTS, parseCommandArgs, parseDuration, parseEndpoints, writeOut } from './client-verbs.ts';
import { UsageError } from './serve-flags.ts';

/** INTEGRITY_USAGE is the help of the integrity verbs. */
export const INTEGRITY_USAGE = `  check [--endpoints E] [--command-timeout 30s] [-w simple|json]
                                       every member's state digest at one checkpoint agreed
                                       through Raft, and the verdict (exit 1 unless all agree)
  member rebuild --member NAME [--endpoints E] [--command-timeout 5m] [-w simple|json]
                                       the member discards its state, installs the leader's
                                       snapshot and, when it then agrees, its CORRUPT alarm is cleared`;

const CHECK_FLAGS: Readonly<Record<string, FlagKind>> = { endpoints: 'value', 'command-timeout': 'value', 'write-out': 'value', w: 'value' };
const REBUILD_FLAGS: Readonly<Record<string, FlagKind>> = { ...CHECK_FLAGS, member: 'value' };

/** IntegrityIo is where the verbs write. */
export interface IntegrityIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

function timeoutOf(flags: ReadonlyMap<string, string | true>, fallbackMs: number): number {
  const text = flags.get('command-timeout');
  return typeof text === 'string' ? parseDuration('--command-timeout', text) : fallbackMs;
}

function formatOf(flags: ReadonlyMap<string, string | true>): string {
  const short = flags.get('w');
  const merged = new Map(flags);
  if (typeof short === 'string') merged.set('write-out', short);
  return writeOut(merged, ['simple', 'json']);
}

/** runCheckVerb runs `stratakv check`. */
export async function runCheckVerb(args: readonly string[], io: IntegrityIo): Promise<number> {
  const { flags } = parseCommandArgs('check', args, CHECK_FLAGS, []);
  const endpointsFlag = flags.get('endpoints');
  const endpoints = parseEndpoints(typeof endpointsFlag === 'string' ? endpointsFlag : DEFAULT_ENDPOINTS);
  const timeoutMs = timeoutOf(flags, 30_000);
  const format = formatOf(flags);
  const client = new IntegrityClient();
  try {
    const check = await client.check(endpoints.map((endpoint) => normalizeEndpoint(endpoint)), { timeoutMs });
    const names = await memberNames(endpoints, timeoutMs);
    if (format === 'json') io.out(JSON.stringify(checkJson(check, names)));
    else for (const line of checkLines(check, names)) io.out(line);
    return check.verdict === 'agreed' ? 0 : 1;
  } finally {
    client.close();
  }
}

/** runMemberVerb runs `stratakv member <sub>` (rebuild). */
export async function runMemberVerb(args: readonly string[], io: IntegrityIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'rebuild') throw new UsageError(sub ?? 'member', `unknown member command ${JSON.stringify(sub ?? '')}: one of rebuild (see also: stratakv members)`);
  const { flags } = parseCommandArgs('member rebuild', rest, REBUILD_FLAGS, []);
  const name = flags.get('member');
  if (typeof name !== 'string' || name === '') throw new UsageError('--member', 'member rebuild needs --member NAME (the member to rebuild)');
  const endpointsFlag = flags.get('endpoints');
  const endpoints = parseEndpoints(typeof endpointsFlag === 'string' ? endpointsFlag : DEFAULT_ENDPOINTS);
  const timeoutMs = timeoutOf(flags, 5 * 60_000);
  const format = formatOf(flags);
  const etcd = new EtcdClient({ endpoints, timeoutMs: Math.min(timeoutMs, 30_000) });
  let target: { id: number; endpoint: string } | undefined;
  let names: Map<number, string>;
  try {
    const members = await etcd.memberList();
    names = new Map(members.map((member) => [Number(member.id), member.name]));
    const member = members.find((candidate) => candidate.name === name || Number(candidate.id).toString(16) === name);
    if (member === undefined) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `no member named ${JSON.stringify(name)} (members: ${members.map((candidate) => candidate.name || Number(candidate.id).toString(16)).join(', ')})`);
    const url = member.clientUrls[0];
    if (url === undefined) throw new StrataError(ErrorCode.UNAVAILABLE, `member ${name} has published no client URL: it is not running, or has not started serving`);
    target = { id: Number(member.id), endpoint: normalizeEndpoint(url) };
  } finally {
    await etcd.close();
  }
  const client = new IntegrityClient();
  try {
    io.err(`rebuilding member ${name} (${target.id.toString(16)}) at ${target.endpoint} from the leader's snapshot...`);
    const result = await client.rebuild(target.endpoint, { timeoutMs });
    if (format === 'json') io.out(JSON.stringify({ member: name, memberId: target.id.toString(16), snapshotId: result.snapshotId, snapshotIndex: result.snapshotIndex, agrees: result.agrees, alarmCleared: result.alarmCleared, check: checkJson(result.check, names) }));
    else {
      io.out(`member ${name} rebuilt from snapshot ${result.snapshotId} (index ${result.snapshotIndex})`);
      for (const line of checkLines(result.check, names)) io.out(line);
      io.out(result.agrees ? (result.alarmCleared ? 'it agrees with the majority: its CORRUPT alarm is cleared' : 'it agrees with the majority') : 'it does NOT agree with the majority: its alarm stays');
    }
    return result.agrees ? 0 : 1;
  } finally {
    client.close();
  }
}

async function memberNames(endpoints: readonly string[], timeoutMs: number): Promise<Map<number, string>> {
  const etcd = new EtcdClient({ endpoints, timeoutMs: Math.min(timeoutMs, 10_000) });
  try {
    return new Map((await etcd.memberList()).map((member) => [Number(member.id), member.name]));
  } catch {
    return new Map();
  } finally {
    await etcd.close();
  }
}

function nameOf(names: ReadonlyMap<number, string>, id: number): string {
  const name = names.get(id);
  return name !== undefined && name !== '' ? name : id.toString(16);
}

/** checkLines is the simple output of a check: one line per member, then the verdict. */
export function checkLines(check: IntegrityCheck, names: ReadonlyMap<number, string>): string[] {
  const lines = [`checkpoint at index ${check.index} (run by ${nameOf(names, check.memberId)})`];
  const reported = new Set(check.reports.map((report) => report.memberId));
  for (const report of check.reports) {
    const role = check.learners.includes(report.memberId) ? 'learner' : 'voter';
    const mark = check.corrupt.includes(report.memberId) ? '  DIFFERS' : '';
    lines.push(`${nameOf(names, report.memberId).padEnd(12)} ${role.padEnd(7)} revision ${report.revision} keys ${report.keyCount} digest ${report.digest}${mark}`);
  }
  for (const id of [...check.voters, ...check.learners]) if (!reported.has(id)) lines.push(`${nameOf(names, id).padEnd(12)} did not report in time`);
  const verdict =
    check.verdict === 'agreed'
      ? 'verdict: every member that reported agrees with the majority'
      : check.verdict === 'corrupt-members'
        ? `verdict: ${check.corrupt.map((id) => nameOf(names, id)).join(', ')} differ${check.corrupt.length === 1 ? 's' : ''} from the majority (CORRUPT alarm raised)`
        : check.verdict === 'no-majority'
          ? 'verdict: no digest has a majority of the voters (the cluster refuses writes)'
          : 'verdict: not enough members reported in time to decide';
  lines.push(verdict);
  return lines;
}

function checkJson(check: IntegrityCheck, names: ReadonlyMap<number, string>): object {
  return {
    index: check.index,
    verdict: check.verdict,
    runBy: nameOf(names, check.memberId),
    members: [...check.voters, ...check.learners].map((id) => {
      const report = check.reports.find((item) => item.memberId === id);
      return {
        id: id.toString(16),
        name: nameOf(names, id),
        learner: check.learners.includes(id),
        ...(report === undefined ? { reported: false } : { reported: true, revision: report.revision, keyCount: report.keyCount, digest: report.digest }),
        differs: check.corrupt.includes(id),
      };
    }),
    majority: check.majority ?? null,
  };
}

// The CLI verbs that talk to a running cluster (put, get, del, status, members, alarm). They take
// etcdctl's flags and print what etcdctl prints for a person at a terminal, so an operator
// who knows one knows the other; `get -w json` prints etcdctl's JSON for scripts.

import { ClusterInfoClient, EtcdClient, normalizeEndpoint, type EndpointStatus } from '../src/client/index.ts';
import { ErrorCode, StrataError } from '../src/util/errors.ts';
import { UsageError } from './serve-flags.ts';

/** DEFAULT_ENDPOINTS is where client verbs look for a cluster when --endpoints is not given (etcdctl's default). */
export const DEFAULT_ENDPOINTS = '127.0.0.1:2379';
/** DEFAULT_COMMAND_TIMEOUT is etcdctl's --command-timeout default. */
export const DEFAULT_COMMAND_TIMEOUT = '5s';

/** CLIENT_VERBS are the verbs this file runs. */
export const CLIENT_VERBS = ['put', 'get', 'del', 'status', 'members', 'alarm'] as const;
/** ClientVerb is one of CLIENT_VERBS. */
export type ClientVerb = (typeof CLIENT_VERBS)[number];

/** CLIENT_USAGE describes the client verbs for the help text. */
export const CLIENT_USAGE = `  put KEY VALUE                        store VALUE under KEY (prints OK)
  get KEY [--prefix | --from-key] [--limit N] [--keys-only] [--serializable] [-w simple|json]
                                       print matching keys, each followed by its value
  del KEY [--prefix | --from-key]      delete, printing how many keys were deleted
  status                               status of every endpoint, as a table
  members                              the cluster's members, as a table (with their zones)
  alarm list | alarm disarm            the alarms raised (NOSPACE, CORRUPT); disarm clears them all

client flags:
  --endpoints HOST:PORT,...            (default ${DEFAULT_ENDPOINTS})
  --command-timeout DURATION           deadline of the command, e.g. 500ms, 5s, 1m (default ${DEFAULT_COMMAND_TIMEOUT})
  A "--" ends the flags, for keys that start with "-".`;

/** FlagKind says whether a flag stands alone (boolean) or takes a value. */
export type FlagKind = 'boolean' | 'value';

const COMMON_FLAGS: Readonly<Record<string, FlagKind>> = { endpoints: 'value', 'command-timeout': 'value' };
const VERB_FLAGS: Readonly<Record<ClientVerb, Readonly<Record<string, FlagKind>>>> = {
  put: {},
  get: { prefix: 'boolean', 'from-key': 'boolean', limit: 'value', 'keys-only': 'boolean', serializable: 'boolean', 'write-out': 'value' },
  del: { prefix: 'boolean', 'from-key': 'boolean' },
  status: { 'write-out': 'value' },
  members: { 'write-out': 'value' },
  alarm: {},
};
const SHORT_FLAGS: Readonly<Record<string, string>> = { w: 'write-out' };
const POSITIONALS: Readonly<Record<ClientVerb, readonly string[]>> = {
  put: ['KEY', 'VALUE'],
  get: ['KEY'],
  del: ['KEY'],
  status: [],
  members: [],
  alarm: ['list|disarm'],
};

/** ParsedCommand is a command line split into positionals and flags (by their long names). */
export interface ParsedCommand {
  readonly positionals: readonly string[];
  readonly flags: ReadonlyMap<string, string | true>;
}

/** parseClientArgs splits a client verb's arguments into positionals and known flags; anything else is a UsageError. */
export function parseClientArgs(verb: ClientVerb, args: readonly string[]): ParsedCommand {
  return parseCommandArgs(verb, args, { ...COMMON_FLAGS, ...VERB_FLAGS[verb] }, POSITIONALS[verb]);
}

/**
 * parseCommandArgs splits `verb`'s arguments into exactly the `expected` positionals and
 * the `known` flags (etcdctl's forms: --flag=value, --flag value, -w); anything else is a
 * UsageError naming it.
 */
export function parseCommandArgs(verb: string, args: readonly string[], known: Readonly<Record<string, FlagKind>>, expected: readonly string[]): ParsedCommand {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  let flagsEnded = false;
  for (let index = 0; index < args.length; index++) {
    const argument = args[index] ?? '';
    if (flagsEnded || !argument.startsWith('-') || argument === '-') {
      positionals.push(argument);
      continue;
    }
    if (argument === '--') {
      flagsEnded = true;
      continue;
    }
    const isShort = !argument.startsWith('--');
    const body = argument.slice(isShort ? 1 : 2);
    const equals = body.indexOf('=');
    const written = equals === -1 ? body : body.slice(0, equals);
    const name = isShort ? SHORT_FLAGS[written] : written;
    const kind = name === undefined ? undefined : known[name];
    if (name === undefined || kind === undefined) throw new UsageError(argument.split('=')[0] ?? argument, `unknown flag ${argument.split('=')[0] ?? argument}`);
    if (kind === 'boolean') {
      if (equals !== -1) {
        const text = body.slice(equals + 1);
        if (text !== 'true' && text !== 'false') throw new UsageError(`--${name}`, `invalid value ${JSON.stringify(text)} for flag --${name}: true or false`);
        if (text === 'true') flags.set(name, true);
        else flags.delete(name);
      } else {
        flags.set(name, true);
      }
      continue;
    }
    let value: string;
    if (equals !== -1) {
      value = body.slice(equals + 1);
    } else {
      const next = args[index + 1];
      if (next === undefined) throw new UsageError(`--${name}`, `flag needs an argument: --${name}`);
      value = next;
      index++;
    }
    flags.set(name, value);
  }
  if (positionals.length < expected.length) {
    throw new UsageError(expected[positionals.length] ?? 'argument', `${verb} needs ${expected.join(' ')}; ${expected[positionals.length] ?? 'an argument'} is missing`);
  }
  if (positionals.length > expected.length) {
    throw new UsageError(positionals[expected.length] ?? 'argument', `${verb}: unexpected argument ${JSON.stringify(positionals[expected.length])}`);
  }
  return { positionals, flags };
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** parseDuration reads a Go duration (etcdctl's --command-timeout: "5s", "500ms", "1m30s") as whole milliseconds. */
export function parseDuration(flag: string, text: string): number {
  const invalid = new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: a duration such as 500ms, 5s or 1m`);
  if (!/^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) throw invalid;
  let totalMs = 0;
  for (const match of text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g)) {
    totalMs += Number(match[1]) * (DURATION_UNITS_MS[match[2] ?? ''] ?? Number.NaN);
  }
  const rounded = Math.ceil(totalMs);
  if (!Number.isSafeInteger(rounded) || rounded <= 0) throw invalid;
  return rounded;
}

/** parseEndpoints checks --endpoints (host:port or http://host:port, comma-separated). */
export function parseEndpoints(text: string): string[] {
  const endpoints = text.split(',').map((part) => part.trim());
  for (const endpoint of endpoints) {
    try {
      normalizeEndpoint(endpoint);
    } catch (error) {
      if (error instanceof StrataError) throw new UsageError('--endpoints', `invalid value ${JSON.stringify(text)} for flag --endpoints: ${error.message}`);
      throw error;
    }
  }
  return endpoints;
}

/** writeOut is -w/--write-out's value, one of `allowed` (the first is the default). */
export function writeOut(flags: ReadonlyMap<string, string | true>, allowed: readonly string[]): string {
  const format = flags.get('write-out');
  const chosen = typeof format === 'string' ? format : (allowed[0] ?? 'simple');
  if (!allowed.includes(chosen)) throw new UsageError('--write-out', `invalid value ${JSON.stringify(chosen)} for flag --write-out: one of ${allowed.join(', ')}`);
  return chosen;
}

/** ClientOutput is where a client verb writes: the CLI passes the process's streams, tests may capture. */
export interface ClientOutput {
  out(line: string): void;
  err(line: string): void;
}

/**
 * runClientVerb runs one client verb and answers its exit code: 0, or 1 after an operating
 * error (printed as `stratakv <verb>: <message> (<CODE>)`). A malformed command line throws
 * UsageError before any connection is made.
 */
export async function runClientVerb(verb: ClientVerb, args: readonly string[], output: ClientOutput): Promise<number> {
  const { positionals, flags } = parseClientArgs(verb, args);
  const endpointsFlag = flags.get('endpoints');
  const endpoints = parseEndpoints(typeof endpointsFlag === 'string' ? endpointsFlag : DEFAULT_ENDPOINTS);
  const timeoutFlag = flags.get('command-timeout');
  const timeoutMs = parseDuration('--command-timeout', typeof timeoutFlag === 'string' ? timeoutFlag : DEFAULT_COMMAND_TIMEOUT);
  if (flags.has('prefix') && flags.has('from-key')) throw new UsageError('--from-key', '--prefix and --from-key cannot be used together');
  if (verb === 'alarm' && positionals[0] !== 'list' && positionals[0] !== 'disarm') {
    throw new UsageError(positionals[0] ?? 'alarm', `alarm: unknown command ${JSON.stringify(positionals[0])}; use alarm list or alarm disarm`);
  }
  let limit: number | undefined;
  const limitFlag = flags.get('limit');
  if (typeof limitFlag === 'string') {
    limit = Number(limitFlag);
    if (!/^[0-9]+$/.test(limitFlag) || !Number.isSafeInteger(limit)) throw new UsageError('--limit', `invalid value ${JSON.stringify(limitFlag)} for flag --limit: a non-negative integer`);
  }
  const format = writeOut(flags, verb === 'get' ? ['simple', 'json'] : verb === 'status' || verb === 'members' ? ['table'] : ['simple']);

  const client = new EtcdClient({ endpoints, timeoutMs });
  try {
    switch (verb) {
      case 'put': {
        await client.put(positionals[0] ?? '', positionals[1] ?? '');
        output.out('OK');
        return 0;
      }
      case 'get': {
        const answer = await client.get(positionals[0] ?? '', {
          ...(flags.has('prefix') ? { prefix: true } : {}),
          ...(flags.has('from-key') ? { fromKey: true } : {}),
          ...(limit === undefined ? {} : { limit }),
          ...(flags.has('keys-only') ? { keysOnly: true } : {}),
          ...(flags.has('serializable') ? { serializable: true } : {}),
        });
        if (format === 'json') {
          output.out(rangeJson(answer));
          return 0;
        }
        for (const kv of answer.kvs) {
          output.out(Buffer.from(kv.key).toString('utf8'));
          // etcdctl prints an empty line in place of the value for --keys-only.
          output.out(flags.has('keys-only') ? '' : Buffer.from(kv.value).toString('utf8'));
        }
        return 0;
      }
      case 'del': {
        const answer = await client.delete(positionals[0] ?? '', {
          ...(flags.has('prefix') ? { prefix: true } : {}),
          ...(flags.has('from-key') ? { fromKey: true } : {}),
        });
        output.out(String(answer.deleted));
        return 0;
      }
      case 'status': {
        const results = await client.statusAll();
        const statuses = results.flatMap((result) => (result.ok ? [result.status] : []));
        for (const result of results) {
          if (!result.ok) output.err(`stratakv status: ${result.endpoint}: ${result.error.message} (${result.error.code})`);
        }
        if (statuses.length > 0) output.out(statusTable(statuses));
        return statuses.length === results.length ? 0 : 1;
      }
      case 'alarm': {
        // etcdctl prints each alarm as etcd's AlarmMember text: "memberID:<decimal> alarm:<TYPE> ".
        const alarms = positionals[0] === 'list' ? await client.alarmList() : await client.alarmDisarm();
        for (const alarm of alarms) output.out(`memberID:${alarm.memberId} alarm:${alarm.alarm} `);
        return 0;
      }
      case 'members': {
        const members = await membersWithZones(client, endpoints, timeoutMs);
        output.out(
          table(
            ['ID', 'STATUS', 'NAME', 'PEER ADDRS', 'CLIENT ADDRS', 'IS LEARNER', 'ZONE'],
            members.map((member) => [
              hexId(member.id),
              member.name === '' ? 'unstarted' : 'started',
              member.name,
              member.peerUrls.join(','),
              member.clientUrls.join(','),
              String(member.isLearner),
              member.zone,
            ]),
          ),
        );
        return 0;
      }
    }
  } catch (error) {
    if (!(error instanceof StrataError)) throw error;
    output.err(`stratakv ${verb}: ${error.message} (${error.code})`);
    return 1;
  } finally {
    client.close();
  }
}

function hexId(id: bigint | number): string {
  return id.toString(16);
}

/** MemberRow is one row of `members`. */
interface MemberRow {
  readonly id: bigint | number;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
  readonly zone: string;
}

// membersWithZones asks stratakv's Admin.ClusterInfo, which carries the zones; real etcd has no
// Admin service (UNIMPLEMENTED), and then etcd's MemberList answers with the zones empty. The
// zone column comes after etcdctl's, so scripts that read etcdctl's columns read ours.
async function membersWithZones(client: EtcdClient, endpoints: readonly string[], timeoutMs: number): Promise<MemberRow[]> {
  const info = new ClusterInfoClient({ endpoints, timeoutMs });
  try {
    return [...(await info.clusterInfo()).members];
  } catch (error) {
    if (!(error instanceof StrataError) || error.code !== ErrorCode.UNIMPLEMENTED) throw error;
  } finally {
    info.close();
  }
  return (await client.memberList()).map((member) => ({ ...member, zone: '' }));
}

/** humanBytes prints a size the way etcdctl does (go-humanize's SI units: "20 kB"). */
export function humanBytes(bytes: number): string {
  if (bytes < 10) return `${bytes} B`;
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  const exponent = Math.min(units.length - 1, Math.floor(Math.log(bytes) / Math.log(1000)));
  const value = bytes / 1000 ** exponent;
  return `${value < 10 ? value.toFixed(1) : value.toFixed(0)} ${units[exponent] ?? 'B'}`;
}

function statusTable(statuses: readonly EndpointStatus[]): string {
  return table(
    ['ENDPOINT', 'ID', 'VERSION', 'DB SIZE', 'IS LEADER', 'IS LEARNER', 'RAFT TERM', 'RAFT INDEX', 'RAFT APPLIED INDEX', 'ERRORS'],
    statuses.map((status) => [
      status.endpoint,
      hexId(status.memberId),
      status.version,
      humanBytes(status.dbSizeBytes),
      String(status.leaderId !== 0n && status.leaderId === status.memberId),
      String(status.isLearner),
      String(status.raftTerm),
      String(status.raftIndex),
      String(status.raftAppliedIndex),
      status.errors.join(', '),
    ]),
  );
}

/** table draws rows under a header in etcdctl's boxed table style. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const rule = `+${widths.map((width) => '-'.repeat(width + 2)).join('+')}+`;
  const line = (cells: readonly string[], center: boolean): string =>
    `|${cells
      .map((cell, column) => {
        const width = widths[column] ?? 0;
        if (!center) return ` ${cell.padStart(width)} `;
        const left = Math.floor((width - cell.length) / 2);
        return ` ${' '.repeat(left)}${cell}${' '.repeat(width - cell.length - left)} `;
      })
      .join('|')}|`;
  return [rule, line(header, true), rule, ...rows.map((row) => line(row, false)), rule].join('\n');
}

/** rangeJson prints a get answer as etcdctl's `-w json` does: snake_case, bytes in base64, 64-bit ids as JSON numbers. */
function rangeJson(answer: Awaited<ReturnType<EtcdClient['get']>>): string {
  const raw = (value: bigint | number): unknown => (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON(String(value));
  const base64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');
  const document: Record<string, unknown> = {
    header: {
      cluster_id: raw(answer.header.clusterId),
      member_id: raw(answer.header.memberId),
      revision: answer.header.revision,
      raft_term: answer.header.raftTerm,
    },
  };
  // etcd leaves out fields at their zero value (omitempty), and so does etcdctl's JSON.
  if (answer.kvs.length > 0) {
    document['kvs'] = answer.kvs.map((kv) => ({
      key: base64(kv.key),
      create_revision: kv.createRevision,
      mod_revision: kv.modRevision,
      version: kv.version,
      ...(kv.value.length > 0 ? { value: base64(kv.value) } : {}),
      ...(kv.lease !== 0n ? { lease: raw(kv.lease) } : {}),
    }));
  }
  if (answer.more) document['more'] = true;
  if (answer.count !== 0) document['count'] = answer.count;
  return JSON.stringify(document);
}

/** isClientVerb tells whether `verb` is one of CLIENT_VERBS. */
export function isClientVerb(verb: string): verb is ClientVerb {
  return (CLIENT_VERBS as readonly string[]).includes(verb);
}


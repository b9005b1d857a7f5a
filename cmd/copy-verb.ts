// `stratakv migrate copy create|status|verify|switch|reverse|complete|cancel`: copy a whole
// cluster (etcd or stratakv) into a new stratakv cluster kept as a read-only mirror with the
// source's revisions, follow it, verify it, and (for a stratakv source) switch the writes over
// and back (src/migrate/copy; the switch verbs are cmd/copy-switch-verb.ts). Every form prints, last, the command to run next; `-w json`
// prints one JSON object with the same facts and `next`. Exit codes: 0 done, 1 refused or
// failed (or, for verify, differences found), 2 usage error.

import { normalizeEndpoint } from '../src/client/index.ts';
import {
  cancelCopy,
  describePhase,
  copyStatus,
  decodeCopyState,
  etcdSource,
  mirrorTarget,
  runCopy,
  stratakvSource,
  verifyCopy,
  type CopyEvent,
  type CopySource,
  type CopyState,
  type CopyStatus,
  type LogCopySource,
  type VerifyReport,
} from '../src/migrate/copy/index.ts';
import { runEtcdSwitch, runEtcdTarget, type EtcdSwitchFlags } from './copy-etcd-verb.ts';
import { runComplete, runMerkleVerify, runSwitch } from './copy-switch-verb.ts';
import { isStrataError } from '../src/util/errors.ts';
import type { FlagKind } from './client-verbs.ts';
import { parseCommandArgs, parseEndpoints, writeOut } from './client-verbs.ts';
import type { MigrateIo } from './migrate-verb.ts';
import { PROGRESS_BAR_WIDTH } from './progress-bar.ts';
import { UsageError } from './serve-flags.ts';

/** COPY_USAGE is the help of `stratakv migrate copy`. */
export const COPY_USAGE = `  migrate copy create --from etcd://H:P,...|stratakv://H:P,... --to H:P,... [--prefix P] [--until-caught-up] [-w simple|json]
                                       make the cluster at --to (new, empty) a read-only mirror of the
                                       source with the source's revisions: copy, then follow its changes
                                       until stopped (Ctrl-C); run again to resume where it stopped
                                       (--prefix: etcd sources only; a stratakv source is copied whole)
  migrate copy status --to H:P,... [-w simple|json]
                                       the copy's phase, lag (revisions, entries, seconds), progress, ETA
  migrate copy verify --to H:P,... [--from URL] [-w simple|json]
                                       compare every key, value and revision with the source (a Merkle
                                       diff at one checkpoint for stratakv; key by key for etcd); lists
                                       every difference (exit 1 if any)
  migrate copy switch --to H:P,... [--from stratakv://H:P,...] [-w simple|json]
                                       stratakv source: fence it, replay to the fence, verify, make --to
                                       writable, and make the source a read-only mirror of it (reverse copy)
  migrate copy switch --to H:P,... [--from etcd://H:P,...] [--writers-moved] [--quiet-ms N] [--quiet-timeout-ms N]
                                       etcd source: verify, ask for the writers to be moved (type "moved",
                                       or --writers-moved), wait until etcd is quiet for N ms (300), verify
                                       what changed, make --to writable; etcd then follows it (reverse copy)
  migrate copy create|status|verify|complete --to etcd://H:P,... [--from stratakv://H:P,...]
                                       after an etcd switch: run, show, verify or end etcd's reverse copy
  migrate copy reverse --to etcd://H:P,... [--from stratakv://H:P,...]
                                       after an etcd switch: the writes back to etcd (--from becomes its mirror)
  migrate copy reverse --to H:P,... [--from stratakv://H:P,...] [-w simple|json]
                                       after a switch: the same back (--to is the old source)
  migrate copy complete --to H:P,... [-w simple|json]
                                       after a switch: end the reverse copy (--to, the old source, stays
                                       read-only; no copier resumes it)
  migrate copy cancel --to H:P,... [-w simple|json]
                                       before a switch: delete the copied keys and leave mirror mode
                                       (the source is never written)`;

const COMMON: Readonly<Record<string, FlagKind>> = { to: 'value', 'write-out': 'value', w: 'value' };
const FLAGS: Readonly<Record<string, Readonly<Record<string, FlagKind>>>> = {
  create: { ...COMMON, from: 'value', prefix: 'value', 'until-caught-up': 'boolean' },
  status: { ...COMMON, from: 'value' },
  verify: { ...COMMON, from: 'value' },
  switch: { ...COMMON, from: 'value', 'writers-moved': 'boolean', 'quiet-ms': 'value', 'quiet-timeout-ms': 'value' },
  reverse: { ...COMMON, from: 'value' },
  complete: COMMON,
  cancel: COMMON,
};
const SUBCOMMANDS = ['create', 'status', 'verify', 'switch', 'reverse', 'complete', 'cancel'] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];
// How often a following copier prints a line when stderr is not a terminal.
const REPORT_INTERVAL_MS = 5_000;

/** SourceUrl is a parsed --from. */
interface SourceUrl {
  readonly kind: 'etcd' | 'stratakv';
  readonly endpoints: readonly string[];
}

/** parseSourceUrl reads `etcd://H:P,H:P` or `stratakv://H:P,...`. */
export function parseSourceUrl(text: string): SourceUrl {
  const match = /^(etcd|stratakv):\/\/(.+)$/.exec(text.trim());
  if (match === null) throw new UsageError('--from', `invalid value ${JSON.stringify(text)} for flag --from: want etcd://HOST:PORT,... or stratakv://HOST:PORT,...`);
  const kind = match[1] as 'etcd' | 'stratakv';
  const endpoints = parseEndpoints(match[2] ?? '').map((endpoint) => normalizeEndpoint(endpoint));
  return { kind, endpoints };
}

/** runCopyCommand runs `stratakv migrate copy <sub> ...`; answers the exit code. */
export async function runCopyCommand(args: readonly string[], io: MigrateIo): Promise<number> {
  const [subText, ...rest] = args;
  if (!(SUBCOMMANDS as readonly string[]).includes(subText ?? '')) {
    throw new UsageError(subText ?? 'copy', `unknown migrate copy command ${JSON.stringify(subText ?? '')}: one of ${SUBCOMMANDS.join(', ')}`);
  }
  const sub = subText as Subcommand;
  const { flags } = parseCommandArgs(`migrate copy ${sub}`, rest, FLAGS[sub] ?? COMMON, []);
  const merged = new Map(flags);
  const short = flags.get('w');
  if (typeof short === 'string') merged.set('write-out', short);
  const format = writeOut(merged, ['simple', 'json']);
  const toText = flags.get('to');
  if (typeof toText !== 'string') throw new UsageError('--to', `migrate copy ${sub} needs --to HOST:PORT,... (the mirror cluster)`);
  const fromText = flags.get('from');
  let from = typeof fromText === 'string' ? parseSourceUrl(fromText) : undefined;
  if (/^etcd:\/\//.test(toText.trim())) {
    // The reverse copy after the switch of an etcd source: etcd follows the new primary.
    const etcdEndpoints = parseSourceUrl(toText).endpoints;
    try {
      return await runEtcdTarget(sub, etcdEndpoints, from, flags.get('until-caught-up') === true, format, io);
    } catch (error) {
      if (!isStrataError(error)) throw error;
      if (format === 'json') io.out(JSON.stringify({ result: 'failed', code: error.code, error: error.message, next: null }));
      else io.err(`stratakv migrate copy ${sub}: ${error.message} (${error.code})\n`);
      return 1;
    }
  }
  const targetEndpoints = parseEndpoints(toText).map((endpoint) => normalizeEndpoint(endpoint));
  if (sub === 'create' && from === undefined) throw new UsageError('--from', 'migrate copy create needs --from etcd://HOST:PORT,... or stratakv://HOST:PORT,...');
  const prefixText = flags.get('prefix');
  const prefix = typeof prefixText === 'string' ? Buffer.from(prefixText) : undefined;
  if (prefix !== undefined && prefix.byteLength === 0) throw new UsageError('--prefix', '--prefix must not be empty (leave it out to copy every key)');
  const target = mirrorTarget(targetEndpoints);
  const next = (command: string, withFrom = false): string =>
    `stratakv migrate copy ${command}${withFrom && from !== undefined ? ` --from ${from.kind}://${from.endpoints.join(',')}` : ''} --to ${targetEndpoints.join(',')}`;
  let source: CopySource | undefined;
  let logSource: LogCopySource | undefined;
  const openSource = (url: SourceUrl): CopySource => {
    if (url.kind === 'stratakv') throw new UsageError('--from', 'internal: a stratakv source is read through its log');
    source = etcdSource(url.endpoints);
    return source;
  };
  const openLogSource = (url: SourceUrl): LogCopySource => {
    logSource = stratakvSource(url.endpoints);
    return logSource;
  };
  // The source a command without --from works on: the one the mirror's state names.
  const sourceFromState = async (): Promise<SourceUrl | undefined> => {
    const view = await target.read();
    if (view.state === undefined) return undefined;
    const state = decodeCopyState(view.state);
    return { kind: state.source.kind, endpoints: state.source.endpoints };
  };
  try {
    switch (sub) {
      case 'create': {
        const progress = new CopyProgress(io, format === 'json');
        const url = from as SourceUrl;
        const result = await runCopy({
          ...(url.kind === 'stratakv' ? { logSource: openLogSource(url) } : { source: openSource(url) }),
          target,
          sourceKind: (from as SourceUrl).kind,
          sourceEndpoints: (from as SourceUrl).endpoints,
          ...(prefix === undefined ? {} : { prefix }),
          signal: io.signal ?? new AbortController().signal,
          stopWhenCaughtUp: flags.get('until-caught-up') === true,
          onEvent: (event) => progress.event(event),
        });
        progress.clear();
        const nextCommand = result.reason === 'switched' || result.reason === 'source-fenced' ? next('status') : next('verify');
        if (format === 'json') io.out(JSON.stringify({ result: result.reason, state: result.state, next: nextCommand }));
        else {
          io.out(`copy ${result.state.copyId}: ${describeReason(result.reason)} at source revision ${result.state.appliedRevision}${result.state.appliedIndex === undefined ? '' : `, index ${result.state.appliedIndex}`} (${describeState(result.state)})`);
          io.out(`resume with: ${next('create', true)}`);
          io.out(`next: ${nextCommand}`);
        }
        return 0;
      }
      case 'status': {
        from ??= await sourceFromState();
        const status = await copyStatus(target, from === undefined ? undefined : from.kind === 'stratakv' ? openLogSource(from) : openSource(from));
        const nextCommand = nextAfterStatus(status.state, next, targetEndpoints);
        if (format === 'json') io.out(JSON.stringify({ ...statusJson(status), next: nextCommand }));
        else printStatus(io, status, nextCommand);
        return 0;
      }
      case 'verify': {
        from ??= await sourceFromState();
        if (from === undefined) throw new UsageError('--from', 'the target is not a mirror, and no --from was given');
        if (from.kind === 'stratakv') return await runMerkleVerify(target, from.endpoints, format, io, next('switch'), next('create', true));
        const report = await verifyCopy({
          source: openSource(from),
          target,
          ...(io.signal === undefined ? {} : { signal: io.signal }),
          onPage: (page) => {
            if (format !== 'json' && io.isTerminal) io.err(`\rcompared ${page.keysCompared} keys, ${page.differencesCount} differences, at revision ${page.revision}   `);
          },
        });
        if (format !== 'json' && io.isTerminal) io.err('\n');
        const nextCommand = report.equal ? next('status') : next('create', true);
        if (format === 'json') io.out(JSON.stringify({ ...verifyJson(report), next: nextCommand }));
        else printVerify(io, report, nextCommand);
        return report.equal ? 0 : 1;
      }
      case 'switch':
      case 'reverse': {
        from ??= await sourceFromState();
        if (from === undefined) {
          throw new UsageError(
            '--from',
            `the cluster at --to is not a mirror, and no --from was given: ${sub} needs the other cluster (--from stratakv://HOST:PORT,...); a ${sub} interrupted after this cluster took writes finishes when run again with --from`,
          );
        }
        if (from.kind === 'etcd') {
          if (sub === 'reverse') throw new UsageError('--to', 'after the switch of an etcd source, `copy reverse --from stratakv://NEW --to etcd://OLD` moves the writes back');
          return await runEtcdSwitch(target, targetEndpoints, from.endpoints, etcdSwitchFlags(flags), format, io);
        }
        return await runSwitch(sub, target, targetEndpoints, from.endpoints, format, io);
      }
      case 'complete':
        return await runComplete(target, targetEndpoints, format, io);
      case 'cancel': {
        const result = await cancelCopy(target, io.signal === undefined ? {} : { signal: io.signal });
        if (format === 'json') io.out(JSON.stringify({ result: 'cancelled', copyId: result.state.copyId, keysDeleted: result.keysDeleted, next: null }));
        else io.out(`copy ${result.state.copyId} cancelled: ${result.keysDeleted} copied keys deleted; the cluster takes writes again (the source was not changed)`);
        return 0;
      }
    }
  } catch (error) {
    if (!isStrataError(error)) throw error;
    const resume = sub === 'create' ? next('create', true) : sub === 'cancel' || sub === 'switch' || sub === 'reverse' ? next(sub, sub !== 'cancel') : undefined;
    if (format === 'json') io.out(JSON.stringify({ result: 'failed', code: error.code, error: error.message, next: resume ?? null }));
    else {
      io.err(`stratakv migrate copy ${sub}: ${error.message} (${error.code})\n`);
      if (resume !== undefined) io.err(`the target keeps its position; resume with: ${resume}\n`);
    }
    return 1;
  } finally {
    target.close();
    (source as CopySource | undefined)?.close();
    (logSource as LogCopySource | undefined)?.close();
  }
  return 0;
}

function etcdSwitchFlags(flags: ReadonlyMap<string, string | boolean>): EtcdSwitchFlags {
  const milliseconds = (name: string): number | undefined => {
    const text = flags.get(name);
    if (typeof text !== 'string') return undefined;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 0 || value > 3_600_000) throw new UsageError(`--${name}`, `invalid value ${JSON.stringify(text)} for flag --${name}: want whole milliseconds, 0 to 3600000`);
    return value;
  };
  const quietMs = milliseconds('quiet-ms');
  const quietTimeoutMs = milliseconds('quiet-timeout-ms');
  return { writersMoved: flags.get('writers-moved') === true, ...(quietMs === undefined ? {} : { quietMs }), ...(quietTimeoutMs === undefined ? {} : { quietTimeoutMs }) };
}

function describeReason(reason: string): string {
  switch (reason) {
    case 'caught-up':
      return 'caught up';
    case 'switched':
      return 'stepped aside for a `copy switch`';
    case 'source-fenced':
      return 'reached the source\'s fence (a switch)';
    default:
      return 'stopped';
  }
}

function nextAfterStatus(state: CopyState, next: (command: string, withFrom?: boolean) => string, targetEndpoints: readonly string[]): string {
  if (state.phase === 'copying') return next('status');
  if (state.phase === 'switching') return next('switch');
  if (state.phase === 'completed' || state.phase === 'fenced') return `stratakv migrate copy status --to ${targetEndpoints.join(',')}`;
  if ((state.direction ?? 'forward') === 'reverse') return `stratakv migrate copy complete --to ${targetEndpoints.join(',')}`;
  return next('verify');
}

/** formatKeyProgress is a scan's bar: keys copied of the total, the rate and the time left. */
export function formatKeyProgress(keysDone: number, keysTotal: number, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? (keysDone * 1000) / elapsedMs : 0;
  const fraction = keysTotal > 0 ? Math.min(1, keysDone / keysTotal) : 1;
  const filled = Math.round(fraction * PROGRESS_BAR_WIDTH);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(PROGRESS_BAR_WIDTH - filled)}]`;
  const eta = rate > 0 && keysTotal > keysDone ? `, ETA ${Math.ceil((keysTotal - keysDone) / rate)} s` : '';
  return `keys ${bar} ${`${Math.floor(fraction * 100)}%`.padStart(4)}  ${keysDone} / ${keysTotal}  ${rate.toFixed(0)} keys/s${eta}`;
}

function describeState(state: CopyState): string {
  const scan = state.scan;
  const phase = scan === null ? `following the source, ${state.rescans} re-scans` : `scanning at revision ${scan.revision}: ${scan.keysCopied} of ${scan.keysTotal} keys`;
  return `${phase}; ${state.leasedPuts} puts carried an etcd lease`;
}

function statusJson(status: CopyStatus): Record<string, unknown> {
  return {
    copyId: status.state.copyId,
    phase: status.state.phase,
    source: status.state.source,
    prefix: status.state.prefix === null ? null : Buffer.from(status.state.prefix, 'base64').toString('utf8'),
    appliedRevision: status.state.appliedRevision,
    targetRevision: status.targetRevision,
    sourceRevision: status.sourceRevision ?? null,
    sourceError: status.sourceError ?? null,
    lagRevisions: status.lagRevisions ?? null,
    lagEntries: status.lagEntries ?? null,
    appliedIndex: status.state.appliedIndex ?? null,
    direction: status.state.direction ?? 'forward',
    lagSeconds: status.lagSeconds ?? null,
    scan: status.scan ?? null,
    idleSeconds: status.idleSeconds,
    rescans: status.state.rescans,
    leasedPuts: status.state.leasedPuts,
  };
}

function printStatus(io: MigrateIo, status: CopyStatus, nextCommand: string): void {
  const { state } = status;
  io.out(`copy ${state.copyId} from ${state.source.kind}://${state.source.endpoints.join(',')} (cluster ${state.source.clusterId})${state.prefix === null ? '' : `, prefix ${JSON.stringify(Buffer.from(state.prefix, 'base64').toString('utf8'))}`}`);
  if (status.scan !== undefined && state.scan !== null) {
    io.out(`  phase: scanning the source at revision ${state.scan.revision}${state.scan.deleteMissing ? ' (a re-scan after a compaction)' : ''}`);
    io.out(`  ${formatKeyProgress(status.scan.keysCopied, status.scan.keysTotal, state.updatedAtMs - state.scan.startedAtMs)}`);
    io.out(`  ${status.scan.keysPerSecond.toFixed(0)} keys/s${status.scan.etaSeconds === undefined ? '' : `, about ${Math.ceil(status.scan.etaSeconds)} s left`}`);
  } else if (state.phase !== 'tailing') {
    io.out(`  phase: ${describePhase(state)}`);
  } else {
    io.out(`  phase: following the source${state.direction === 'reverse' ? ' (the reverse copy after a switch)' : ''}; applied up to ${state.appliedIndex === undefined ? `revision ${state.appliedRevision}` : `index ${state.appliedIndex}`} (target at revision ${status.targetRevision})`);
    if (status.sourceRevision !== undefined) {
      const entries = status.lagEntries === undefined ? '' : `, ${status.lagEntries} log entries`;
      io.out(`  lag: ${status.lagRevisions ?? '?'} revisions${entries}, ${status.lagSeconds === undefined ? 'never caught up yet' : `${status.lagSeconds.toFixed(1)} s`} (source at revision ${status.sourceRevision})`);
    }
  }
  if (status.sourceError !== undefined) io.out(`  the source did not answer: ${status.sourceError}`);
  if (status.idleSeconds > 30) io.out(`  no copier has written for ${status.idleSeconds.toFixed(0)} s: is \`migrate copy create\` running?`);
  if (state.leasedPuts > 0) io.out(`  ${state.leasedPuts} puts carried an etcd lease: stratakv keeps such keys but does not expire them (no Lease API yet)`);
  io.out(`next: ${nextCommand}`);
}

function verifyJson(report: VerifyReport): Record<string, unknown> {
  return {
    equal: report.equal,
    keysCompared: report.keysCompared,
    bytesCompared: report.bytesCompared,
    differencesCount: report.differencesCount,
    differences: report.differences.map((difference) => ({
      key: Buffer.from(difference.key).toString('utf8'),
      kind: difference.kind,
      fields: difference.fields,
      revision: difference.revision,
    })),
    fromRevision: report.fromRevision,
    toRevision: report.toRevision,
    leasedKeys: report.leasedKeys,
  };
}

function printVerify(io: MigrateIo, report: VerifyReport, nextCommand: string): void {
  const at = report.fromRevision === report.toRevision ? `revision ${report.fromRevision}` : `revisions ${report.fromRevision}..${report.toRevision} (page by page)`;
  io.out(`${report.equal ? 'equal' : 'NOT equal'}: ${report.keysCompared} keys compared at ${at} (values, create and mod revisions, versions, leases)`);
  for (const difference of report.differences) {
    io.out(`  ${difference.kind.padEnd(9)} ${JSON.stringify(Buffer.from(difference.key).toString('utf8'))}${difference.fields.length > 0 ? `: ${difference.fields.join(', ')}` : ''} (at revision ${difference.revision})`);
  }
  if (report.differencesCount > report.differences.length) io.out(`  ... and ${report.differencesCount - report.differences.length} more`);
  if (report.leasedKeys > 0) io.out(`  ${report.leasedKeys} keys carry an etcd lease (kept; stratakv does not expire them)`);
  io.out(`next: ${nextCommand}`);
}

// CopyProgress draws a running copy: a bar while scanning, a line every few seconds while following.
class CopyProgress {
  readonly #io: MigrateIo;
  readonly #quiet: boolean;
  #lastLineAtMs = 0;
  #drawn = false;

  constructor(io: MigrateIo, quiet: boolean) {
    this.#io = io;
    this.#quiet = quiet;
  }

  event(event: CopyEvent): void {
    if (this.#quiet) return;
    const nowMs = Date.now();
    switch (event.kind) {
      case 'began':
      case 'resumed':
        this.#line(`${event.kind === 'began' ? 'began' : 'resumed'} copy ${event.state.copyId}: ${describeState(event.state)}`);
        return;
      case 'scan-done':
        this.#line(`scan done at revision ${event.state.appliedRevision}; following the source`);
        return;
      case 'rescan':
        this.#line(`scanning again at revision ${event.state.scan?.revision ?? '?'}, deleting what the source dropped: ${event.reason}`);
        return;
      case 'retry':
        this.#line(`retrying (${event.what}, attempt ${event.attempt}): ${event.error.message}`);
        return;
      case 'scanned': {
        const scan = event.state.scan;
        if (scan === null) return;
        const text = formatKeyProgress(scan.keysCopied, scan.keysTotal, nowMs - scan.startedAtMs);
        if (this.#io.isTerminal) {
          this.#io.err(`\r${text}   `);
          this.#drawn = true;
        } else if (nowMs - this.#lastLineAtMs >= REPORT_INTERVAL_MS) {
          this.#lastLineAtMs = nowMs;
          this.#io.err(`${text}\n`);
        }
        return;
      }
      case 'applied':
        if (nowMs - this.#lastLineAtMs >= REPORT_INTERVAL_MS) {
          this.#lastLineAtMs = nowMs;
          this.#line(`applied up to source ${event.state.appliedIndex === undefined ? `revision ${event.state.appliedRevision}` : `index ${event.state.appliedIndex}`}`);
        }
        return;
    }
  }

  #line(text: string): void {
    this.clear();
    this.#io.err(`${text}\n`);
  }

  clear(): void {
    if (this.#drawn) this.#io.err('\n');
    this.#drawn = false;
  }
}

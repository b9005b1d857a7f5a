// `stratakv diff`: the keys that differ between two members, by the Merkle diff (src/client's
// DiffClient). Side A (--endpoints) is the reference: a key on A and not on B is `missing`,
// one on B only `extra`, one on both with other contents `different`. Two members of one
// cluster are compared as replicas (at one checkpoint index, revisions included); members of
// two clusters on key and value only, each at its applied state. One line per difference, then
// a summary line; -w json prints one JSON document instead. The exit code is diff(1)'s: 0
// equal, 1 different, 2 trouble (an operating error, or a malformed command line).

import type { DiffClientProgress, DiffMode, DiffReport } from '../src/client/index.ts';
import { DiffClient } from '../src/client/index.ts';
import type { DescribedDifference, DiffValue, Inconsistency } from '../src/diff/index.ts';
import { DIFFERENCES_MAX, VALUE_BYTES_MAX } from '../src/diff/index.ts';
import { StrataError } from '../src/util/errors.ts';
import type { FlagKind } from './client-verbs.ts';
import { DEFAULT_ENDPOINTS, humanBytes, parseCommandArgs, parseDuration, parseEndpoints, writeOut } from './client-verbs.ts';
import { PROGRESS_REDRAW_MS_MIN } from './progress-bar.ts';
import { UsageError } from './serve-flags.ts';

/** EXIT_EQUAL, EXIT_DIFFERENT, EXIT_TROUBLE are diff's exit codes (diff(1)'s). */
export const EXIT_EQUAL = 0;
export const EXIT_DIFFERENT = 1;
export const EXIT_TROUBLE = 2;

/** DIFF_VALUE_BYTES_DEFAULT is how much of a differing value is shown by default. */
export const DIFF_VALUE_BYTES_DEFAULT = 32;

const DIFF_USAGE_FULL = `usage: stratakv diff --endpoints A --against B [flags]

Prints the keys that differ between member A and member B, by comparing their state
digests (Merkle trees): only differing subtrees are descended, then the keys of differing
leaves exchanged. A is the reference:
  missing KEY a:VALUE             on A, not on B
  extra KEY b:VALUE               on B, not on A
  different KEY a:VALUE b:VALUE   on both, with other contents
then a summary line (the pinned indexes and revisions, what was compared and sent).
A and B in one cluster are compared as replicas: at one checkpoint agreed through Raft,
on key, value, revisions, version and lease. A and B in two clusters are compared on key
and value only, each at its applied state.

flags:
  --endpoints HOST:PORT,...            member A (more endpoints: tried in order if one is down)
                                       (default ${DEFAULT_ENDPOINTS})
  --against HOST:PORT,...              member B; required
  --prefix P                           only keys that start with P (each member reads them once)
  --mode auto|replicas|clusters        replicas: full contents at one checkpoint (one cluster);
                                       clusters: key and value only (default auto: by cluster id)
  --max-differences N                  list at most N differences (default ${DIFFERENCES_MAX})
  --value-bytes N                      show at most N bytes of each value (default ${DIFF_VALUE_BYTES_DEFAULT})
  --call-timeout DURATION              deadline of each call (default 30s)
  -w, --write-out simple|json          lines, or one JSON document (keys and values in base64)

exit codes: 0 equal, 1 differences found, 2 error`;

const DIFF_FLAGS: Readonly<Record<string, FlagKind>> = {
  endpoints: 'value',
  against: 'value',
  prefix: 'value',
  mode: 'value',
  'max-differences': 'value',
  'value-bytes': 'value',
  'call-timeout': 'value',
  'write-out': 'value',
};

/** DiffIo is where `stratakv diff` writes; `progress` (a terminal's stderr) gets the progress line. */
export interface DiffIo {
  out(line: string): void;
  err(line: string): void;
  progress?(text: string): void;
  readonly signal?: AbortSignal;
}

/**
 * runDiffVerb runs `stratakv diff` with `args` and answers its exit code (EXIT_EQUAL,
 * EXIT_DIFFERENT, or EXIT_TROUBLE after an operating error, printed as
 * `stratakv diff: <message> (<CODE>)`). A malformed command line throws UsageError.
 */
export async function runDiffVerb(args: readonly string[], io: DiffIo): Promise<number> {
  const { flags } = parseCommandArgs('diff', args, DIFF_FLAGS, []);
  const endpointsFlag = flags.get('endpoints');
  const endpoints = parseEndpoints(typeof endpointsFlag === 'string' ? endpointsFlag : DEFAULT_ENDPOINTS);
  const againstFlag = flags.get('against');
  if (typeof againstFlag !== 'string') throw new UsageError('--against', 'diff needs --against HOST:PORT (the member to compare with)');
  let against: string[];
  try {
    against = parseEndpoints(againstFlag);
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError('--against', error.message.replaceAll('--endpoints', '--against'));
    throw error;
  }
  const prefixFlag = flags.get('prefix');
  const prefix = typeof prefixFlag === 'string' ? Buffer.from(prefixFlag, 'utf8') : undefined;
  const modeFlag = flags.get('mode');
  const modeText = typeof modeFlag === 'string' ? modeFlag : 'auto';
  if (modeText !== 'auto' && modeText !== 'replicas' && modeText !== 'clusters') throw new UsageError('--mode', `invalid value ${JSON.stringify(modeText)} for flag --mode: auto, replicas or clusters`);
  const mode: DiffMode | undefined = modeText === 'auto' ? undefined : modeText;
  const differencesMax = countFlag(flags, 'max-differences', DIFFERENCES_MAX, 1, Number.MAX_SAFE_INTEGER);
  const valueBytesMax = countFlag(flags, 'value-bytes', DIFF_VALUE_BYTES_DEFAULT, 0, VALUE_BYTES_MAX);
  const timeoutFlag = flags.get('call-timeout');
  const callTimeoutMs = parseDuration('--call-timeout', typeof timeoutFlag === 'string' ? timeoutFlag : '30s');
  const format = writeOut(flags, ['simple', 'json']);

  const progress = io.progress === undefined ? undefined : new DiffProgressLine(io.progress);
  const client = new DiffClient();
  try {
    const report = await client.diff({
      endpoints,
      against,
      differencesMax,
      valueBytesMax,
      callTimeoutMs,
      ...(prefix === undefined ? {} : { prefix }),
      ...(mode === undefined ? {} : { mode }),
      ...(io.signal === undefined ? {} : { signal: io.signal }),
      ...(progress === undefined ? {} : { onProgress: (event: DiffClientProgress) => progress.update(event) }),
    });
    progress?.clear();
    if (format === 'json') io.out(JSON.stringify(reportJson(report)));
    else for (const line of reportLines(report)) io.out(line);
    return report.equal ? EXIT_EQUAL : EXIT_DIFFERENT;
  } catch (error) {
    progress?.clear();
    if (!(error instanceof StrataError)) throw error;
    io.err(`stratakv diff: ${error.message} (${error.code})`);
    return EXIT_TROUBLE;
  } finally {
    client.close();
  }
}

/** runDiffCommand is `stratakv diff` as main.ts runs it: stdout, stderr, a progress line on a terminal, Ctrl-C cancelling. */
export async function runDiffCommand(args: readonly string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(DIFF_USAGE_FULL);
    return 0;
  }
  const { listenForStopSignals } = await import('./stop-signals.ts');
  const controller = new AbortController();
  const signals = listenForStopSignals(() => undefined);
  void signals.first.then(() => controller.abort());
  try {
    return await runDiffVerb(args, {
      out: (line) => process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
      ...(process.stderr.isTTY ? { progress: (text: string) => process.stderr.write(text) } : {}),
      signal: controller.signal,
    });
  } finally {
    signals.dispose();
  }
}

/** reportLines is the simple output: one line per difference and inconsistency, then the summary. */
export function reportLines(report: DiffReport): string[] {
  const lines: string[] = [];
  const counters = report.mode === 'replicas';
  for (const difference of report.differences) lines.push(differenceLine(difference, counters));
  for (const inconsistency of report.inconsistencies) lines.push(inconsistencyLine(inconsistency));
  if (report.truncated) lines.push(`more than ${report.differencesMax} differences: only the first ${report.differencesMax} found are listed (see --max-differences)`);
  lines.push(summaryLine(report));
  return lines;
}

function differenceLine(difference: DescribedDifference, counters: boolean): string {
  const key = textOf(difference.key);
  const a = difference.a === undefined ? '' : ` a:${valueText(difference.a, counters)}`;
  const b = difference.b === undefined ? '' : ` b:${valueText(difference.b, counters)}`;
  return `${difference.kind} ${key}${a}${b}`;
}

// valueText shows a value as `"text"(12 B)`, cut values with `…`, and for replicas the
// counters the full hash covers.
function valueText(value: DiffValue, counters: boolean): string {
  const cut = value.value.byteLength < value.valueBytes ? '…' : '';
  const shown = cut === '' ? value.value : withoutCutCharacter(value.value);
  const details = counters ? `${value.valueBytes} B, create ${value.createRevision}, mod ${value.modRevision}, version ${value.version}${value.lease === 0n ? '' : `, lease ${value.lease.toString(16)}`}` : `${value.valueBytes} B`;
  return `${textOf(shown)}${cut}(${details})`;
}

// withoutCutCharacter drops the bytes of a UTF-8 character cut off at the end of `bytes` (a value
// cut to --value-bytes), so that text stays text.
function withoutCutCharacter(bytes: Uint8Array): Uint8Array {
  for (let back = 1; back <= Math.min(3, bytes.byteLength); back += 1) {
    const byte = bytes[bytes.byteLength - back] as number;
    if (byte < 0x80) return bytes;
    if (byte >= 0xc0) {
      const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
      return back < length ? bytes.subarray(0, bytes.byteLength - back) : bytes;
    }
  }
  return bytes;
}

function inconsistencyLine(inconsistency: Inconsistency): string {
  switch (inconsistency.kind) {
    case 'leaf-keys':
      return `inconsistent ${inconsistency.side.toUpperCase()} leaf ${inconsistency.leaf}: its keys' hashes do not sum to its digest leaf (a damaged digest index on that member)`;
    case 'root':
      return `inconsistent roots: the roots differ but no node of level ${inconsistency.level} does (a root that is not the sum of its leaves)`;
  }
}

function summaryLine(report: DiffReport): string {
  const counts = { missing: 0, extra: 0, different: 0 };
  for (const difference of report.differences) counts[difference.kind] += 1;
  const total = report.differences.length;
  const found = report.equal ? 'equal' : `${report.truncated ? 'more than ' : ''}${total} difference${total === 1 ? '' : 's'} (${counts.missing} missing, ${counts.extra} extra, ${counts.different} different)`;
  const what = report.mode === 'replicas' ? `replicas at checkpoint ${report.a.index}, compared on full contents` : 'clusters compared on key and value';
  const side = (name: string, side: DiffReport['a']): string => `${name} ${side.endpoint} member ${side.memberId.toString(16)} index ${side.index} revision ${side.revision} keys ${side.keyCount}`;
  const prefix = report.prefix === undefined ? '' : ` prefix ${textOf(report.prefix)};`;
  const stats = report.stats;
  return (
    `${found}: ${what};${prefix} ${side('A', report.a)}; ${side('B', report.b)}; ` +
    `${stats.leavesCompared} leaves compared in ${stats.rounds} rounds, ${stats.calls} calls, ${humanBytes(stats.bytesSent)} sent, ${humanBytes(stats.bytesReceived)} received, ${stats.seconds.toFixed(2)} s`
  );
}

/** reportJson is the -w json document. */
export function reportJson(report: DiffReport): Record<string, unknown> {
  const side = (side: DiffReport['a']): Record<string, unknown> => ({
    endpoint: side.endpoint,
    cluster_id: side.clusterId.toString(16),
    member_id: side.memberId.toString(16),
    pin_id: side.pinId,
    index: side.index,
    revision: side.revision,
    key_count: side.keyCount,
  });
  const value = (value: DiffValue | undefined): Record<string, unknown> | null =>
    value === undefined
      ? null
      : {
          value: base64(value.value),
          value_bytes: value.valueBytes,
          value_truncated: value.value.byteLength < value.valueBytes,
          create_revision: value.createRevision,
          mod_revision: value.modRevision,
          version: value.version,
          // A JSON number with every digit (etcd's lease ids are beyond 2^53), as etcdctl prints it.
          lease: (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON(value.lease.toString()),
        };
  const stats = report.stats;
  return {
    equal: report.equal,
    mode: report.mode,
    hash: report.hash,
    ...(report.prefix === undefined ? {} : { prefix: base64(report.prefix) }),
    a: side(report.a),
    b: side(report.b),
    differences: report.differences.map((difference) => ({ kind: difference.kind, key: base64(difference.key), a: value(difference.a), b: value(difference.b) })),
    truncated: report.truncated,
    max_differences: report.differencesMax,
    inconsistencies: report.inconsistencies,
    stats: {
      bytes_sent: stats.bytesSent,
      bytes_received: stats.bytesReceived,
      calls: stats.calls,
      rounds: stats.rounds,
      sums_compared: stats.sumsCompared,
      leaves_compared: stats.leavesCompared,
      keys_received: stats.keysReceived,
      differing_nodes: stats.differingNodes,
      seconds: stats.seconds,
    },
  };
}

// DiffProgressLine draws what the diff is doing on one terminal line, at most every
// PROGRESS_REDRAW_MS_MIN (a phase change is drawn at once).
class DiffProgressLine {
  readonly #write: (text: string) => void;
  readonly #keysRead = { a: 0, b: 0 };
  #lastDrawMs = Number.NEGATIVE_INFINITY;
  #lastPhase = '';
  #drawn = false;

  constructor(write: (text: string) => void) {
    this.#write = write;
  }

  update(event: DiffClientProgress): void {
    const text = this.#text(event);
    const nowMs = performance.now();
    if (event.phase === this.#lastPhase && nowMs - this.#lastDrawMs < PROGRESS_REDRAW_MS_MIN) return;
    this.#lastPhase = event.phase;
    this.#lastDrawMs = nowMs;
    this.#write(`\r\x1b[K${text}`);
    this.#drawn = true;
  }

  clear(): void {
    if (this.#drawn) this.#write('\r\x1b[K');
    this.#drawn = false;
  }

  #text(event: DiffClientProgress): string {
    switch (event.phase) {
      case 'pin':
        return event.mode === 'replicas' ? 'diff: pinning a checkpoint through Raft' : 'diff: pinning both applied states';
      case 'open':
        this.#keysRead[event.side] = event.keysRead;
        return `diff: reading the prefix: A ${this.#keysRead.a.toLocaleString('en-US')} keys, B ${this.#keysRead.b.toLocaleString('en-US')} keys`;
      case 'descend':
        return `diff: level ${event.level}/4, ${event.nodes} differing node${event.nodes === 1 ? '' : 's'} above`;
      case 'leaves':
        return `diff: leaves ${event.leavesDone}/${event.leavesTotal}, ${event.differences} differences`;
      case 'values':
        return `diff: reading the values of ${event.differences} keys`;
    }
  }
}

function countFlag(flags: ReadonlyMap<string, string | true>, name: string, fallback: number, min: number, max: number): number {
  const text = flags.get(name);
  if (typeof text !== 'string') return fallback;
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) throw new UsageError(`--${name}`, `invalid value ${JSON.stringify(text)} for flag --${name}: an integer from ${min} to ${max}`);
  return value;
}

// textOf shows bytes as a JSON string when they are printable UTF-8, else as hex.
function textOf(bytes: Uint8Array): string {
  const text = Buffer.from(bytes).toString('utf8');
  // eslint-disable-next-line no-control-regex
  if (Buffer.from(text, 'utf8').equals(bytes) && !/[\u0000-\u001f\u007f]/.test(text)) return JSON.stringify(text);
  return `0x${Buffer.from(bytes).toString('hex')}`;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

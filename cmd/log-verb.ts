// `stratakv log`: the cluster's committed Raft log from an index, through the log-delta stream
// (src/client's LogStreamClient), one line per entry: its index, term, kind and what it does
// (a put's key and value size, a delete's range, a txn's shape, a node command, a membership
// change). When the index asked for is compacted, the member's snapshot comes first, shown as
// one line once it is whole and verified. With --follow it keeps printing new commits until
// Ctrl-C; with -w json each line is one JSON object, for scripts.

import type { LogStreamEvent } from '../src/client/index.ts';
import { LogStreamClient } from '../src/client/index.ts';
import type { SnapshotMeta } from '../src/diff/index.ts';
import { decodeNodeCommand } from '../src/node/index.ts';
import type { Entry } from '../src/raft/index.ts';
import { decodeConfChange, EntryType } from '../src/raft/index.ts';
import type { KvRequest, TxnOperation } from '../src/storage/index.ts';
import { decodeKvCommand, isKvCommand, NODE_COMMAND_FORMAT } from '../src/storage/index.ts';
import { StrataError } from '../src/util/errors.ts';
import type { FlagKind } from './client-verbs.ts';
import { DEFAULT_ENDPOINTS, parseCommandArgs, parseDuration, parseEndpoints, writeOut } from './client-verbs.ts';
import { UsageError } from './serve-flags.ts';

const LOG_USAGE_FULL = `usage: stratakv log --from-index N [flags]

Prints the cluster's committed Raft log from index N: one line per entry
("INDEX TERM KIND SUMMARY"), the snapshot first when N is compacted.

flags:
  --from-index N                       the first index (>= 1); required
  --to-index N                         the last index (default: the commit index now)
  --follow                             keep printing new commits until interrupted
  --max-chunk-bytes N                  the largest chunk (65536..4194304; default 4 MiB)
  -w, --write-out simple|json          one line per entry, or one JSON object per line
  --endpoints HOST:PORT,...            (default ${DEFAULT_ENDPOINTS}); a broken stream resumes on the next
  --reconnect-timeout DURATION         give up resuming after this long without progress (default 30s)`;

const LOG_FLAGS: Readonly<Record<string, FlagKind>> = {
  endpoints: 'value',
  'from-index': 'value',
  'to-index': 'value',
  follow: 'boolean',
  'max-chunk-bytes': 'value',
  'write-out': 'value',
  'reconnect-timeout': 'value',
};

/** LogIo is where `stratakv log` writes; `out` may return a promise to hold the stream back (a slow pipe). */
export interface LogIo {
  out(line: string): void | Promise<void>;
  err(line: string): void;
  /** Ends the stream (Ctrl-C); the command then exits 0. */
  readonly signal?: AbortSignal;
}

/**
 * runLogVerb runs `stratakv log` with `args` and answers its exit code: 0 at the stream's end
 * (or when `io.signal` stops a following one), 1 after an operating error (printed as
 * `stratakv log: <message> (<CODE>)`). A malformed command line throws UsageError.
 */
export async function runLogVerb(args: readonly string[], io: LogIo): Promise<number> {
  const { flags } = parseCommandArgs('log', args, LOG_FLAGS, []);
  const endpointsFlag = flags.get('endpoints');
  const endpoints = parseEndpoints(typeof endpointsFlag === 'string' ? endpointsFlag : DEFAULT_ENDPOINTS);
  const fromIndex = indexFlag(flags, 'from-index');
  if (fromIndex === undefined) throw new UsageError('--from-index', 'log needs --from-index N (the first index, >= 1)');
  if (fromIndex < 1) throw new UsageError('--from-index', `invalid value ${fromIndex} for flag --from-index: the first entry is 1`);
  const toIndex = indexFlag(flags, 'to-index');
  const maxChunkBytes = indexFlag(flags, 'max-chunk-bytes');
  const reconnectFlag = flags.get('reconnect-timeout');
  const reconnectTimeoutMs = parseDuration('--reconnect-timeout', typeof reconnectFlag === 'string' ? reconnectFlag : '30s');
  const format = writeOut(flags, ['simple', 'json']);
  const follow = flags.has('follow');

  const client = new LogStreamClient({ endpoints });
  try {
    const events = client.stream({
      fromIndex,
      follow,
      reconnectTimeoutMs,
      ...(toIndex === undefined ? {} : { toIndex }),
      ...(maxChunkBytes === undefined ? {} : { maxChunkBytes }),
      ...(io.signal === undefined ? {} : { signal: io.signal }),
    });
    for await (const event of events) {
      const line = format === 'json' ? eventJson(event) : eventText(event);
      if (line !== undefined) for (const text of line) await io.out(text);
    }
    return 0;
  } catch (error) {
    if (!(error instanceof StrataError)) throw error;
    if (io.signal?.aborted === true) return 0;
    io.err(`stratakv log: ${error.message} (${error.code})`);
    return 1;
  } finally {
    client.close();
  }
}

/**
 * runLogCommand is `stratakv log` as main.ts runs it: stdout (waiting when a pipe is full, so
 * a slow reader holds the stream back), and a stop signal (Ctrl-C) ending a following stream.
 */
export async function runLogCommand(args: readonly string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(LOG_USAGE_FULL);
    return 0;
  }
  const { listenForStopSignals } = await import('./stop-signals.ts');
  const controller = new AbortController();
  const signals = listenForStopSignals(() => undefined);
  void signals.first.then(() => controller.abort());
  try {
    return await runLogVerb(args, {
      out: (line) => {
        if (process.stdout.write(`${line}\n`)) return;
        return new Promise<void>((resolve) => process.stdout.once('drain', resolve));
      },
      err: (line) => process.stderr.write(`${line}\n`),
      signal: controller.signal,
    });
  } finally {
    signals.dispose();
  }
}

function indexFlag(flags: ReadonlyMap<string, string | true>, name: string): number | undefined {
  const text = flags.get(name);
  if (typeof text !== 'string') return undefined;
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(value)) throw new UsageError(`--${name}`, `invalid value ${JSON.stringify(text)} for flag --${name}: a non-negative integer`);
  return value;
}

// eventText answers the lines one event prints in the simple format (none for heartbeats,
// the end, and the snapshot's parts before it is whole).
function eventText(event: LogStreamEvent): string[] | undefined {
  switch (event.type) {
    case 'entries':
      return event.entries.map((entry) => {
        const summary = describeEntry(entry);
        return `${entry.index} ${entry.term} ${summary.kind}${summary.text === '' ? '' : ` ${summary.text}`}`;
      });
    case 'snapshot-end': {
      const { snapshot } = event;
      return [`snapshot index=${snapshot.index} term=${snapshot.term} revision=${snapshot.revision} bytes=${snapshot.byteLength} sha256=${snapshot.sha256} file-sha256=${event.fileSha256} id=${snapshot.id}`];
    }
    case 'snapshot-begin':
    case 'snapshot-data':
    case 'snapshot-abandoned':
    case 'heartbeat':
    case 'end':
      return undefined;
  }
}

function eventJson(event: LogStreamEvent): string[] | undefined {
  switch (event.type) {
    case 'entries':
      return event.entries.map((entry) => {
        const summary = describeEntry(entry);
        return JSON.stringify({ index: entry.index, term: entry.term, type: summary.kind, ...summary.json });
      });
    case 'snapshot-end':
      return [JSON.stringify({ type: 'snapshot', ...snapshotJson(event.snapshot), file_sha256: event.fileSha256 })];
    case 'snapshot-begin':
    case 'snapshot-data':
    case 'snapshot-abandoned':
    case 'heartbeat':
    case 'end':
      return undefined;
  }
}

function snapshotJson(snapshot: SnapshotMeta): Record<string, unknown> {
  return { id: snapshot.id, index: snapshot.index, term: snapshot.term, revision: snapshot.revision, bytes: snapshot.byteLength, sha256: snapshot.sha256 };
}

/** EntrySummary is what one entry prints: its kind, a text for people, fields for JSON. */
export interface EntrySummary {
  readonly kind: string;
  readonly text: string;
  readonly json: Record<string, unknown>;
}

/**
 * describeEntry decodes one entry's data: a KV command (src/storage), a node command
 * (src/node), a membership change (src/raft), the empty entry a new leader appends, or data
 * of another format (shown by its first byte and length).
 */
export function describeEntry(entry: Entry): EntrySummary {
  try {
    if (entry.type === EntryType.ConfChange) {
      const change = decodeConfChange(entry.data);
      const changes = change.changes.map((single) => `${single.type}:${single.nodeId.toString(16)}`);
      const context = change.context === undefined ? undefined : Buffer.from(change.context).toString('utf8');
      return {
        kind: 'conf-change',
        text: `${change.transition} ${changes.length === 0 ? 'leave-joint' : changes.join(',')}${context === undefined ? '' : ` context=${context}`}`,
        json: { transition: change.transition, changes: change.changes.map((single) => ({ type: single.type, node_id: single.nodeId.toString(16) })), ...(context === undefined ? {} : { context }) },
      };
    }
    if (entry.data.byteLength === 0) return { kind: 'empty', text: '', json: {} };
    if (entry.data[0] === NODE_COMMAND_FORMAT) {
      const command = decodeNodeCommand(entry.data);
      return { kind: 'node', text: JSON.stringify(command), json: { command } };
    }
    if (!isKvCommand(entry.data)) return { kind: 'data', text: `format=${entry.data[0] ?? 0} bytes=${entry.data.byteLength}`, json: { format: entry.data[0] ?? 0, bytes: entry.data.byteLength } };
    return describeRequest(decodeKvCommand(entry.data).request);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { kind: 'undecodable', text: `bytes=${entry.data.byteLength} (${reason})`, json: { bytes: entry.data.byteLength, reason } };
  }
}

function describeRequest(request: KvRequest): EntrySummary {
  switch (request.type) {
    case 'put':
      return {
        kind: 'put',
        text: `key=${textOf(request.key)} value-bytes=${request.value.byteLength}`,
        json: { key: base64(request.key), value_bytes: request.value.byteLength },
      };
    case 'deleteRange':
      return {
        kind: 'delete',
        text: `key=${textOf(request.key)}${request.rangeEnd === undefined ? '' : ` range-end=${textOf(request.rangeEnd)}`}`,
        json: { key: base64(request.key), ...(request.rangeEnd === undefined ? {} : { range_end: base64(request.rangeEnd) }) },
      };
    case 'range':
      return {
        kind: 'range',
        text: `key=${textOf(request.key)}${request.rangeEnd === undefined ? '' : ` range-end=${textOf(request.rangeEnd)}`}`,
        json: { key: base64(request.key), ...(request.rangeEnd === undefined ? {} : { range_end: base64(request.rangeEnd) }) },
      };
    case 'txn': {
      const shape = (operations: readonly TxnOperation[]): string => operations.map((operation) => describeRequest(operation).kind).join(',');
      return {
        kind: 'txn',
        text: `compares=${request.compare.length} success=[${shape(request.success)}] failure=[${shape(request.failure)}]`,
        json: {
          compares: request.compare.length,
          success: request.success.map((operation) => ({ type: describeRequest(operation).kind, ...describeRequest(operation).json })),
          failure: request.failure.map((operation) => ({ type: describeRequest(operation).kind, ...describeRequest(operation).json })),
        },
      };
    }
    // The copier's mirror commands (src/migrate/copy): the shape only, not the state's bytes.
    case 'mirrorBegin':
    case 'mirrorEnd':
      return { kind: request.type, text: '', json: {} };
    case 'mirrorApply':
      return {
        kind: request.type,
        text: `revision=${request.revision} puts=${request.puts.length} deletes=${request.deletes.length}`,
        json: { revision: request.revision, puts: request.puts.length, deletes: request.deletes.length },
      };
    case 'mirrorReplay':
      return { kind: request.type, text: `commands=${request.commands.length}`, json: { commands: request.commands.length } };
  }
}

// textOf shows a key as a JSON string when it is printable UTF-8, else as hex.
function textOf(bytes: Uint8Array): string {
  const text = Buffer.from(bytes).toString('utf8');
  // eslint-disable-next-line no-control-regex
  if (Buffer.from(text, 'utf8').equals(bytes) && !/[\u0000-\u001f\u007f]/.test(text)) return JSON.stringify(text);
  return `0x${Buffer.from(bytes).toString('hex')}`;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

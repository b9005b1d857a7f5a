// `stratakv snapshot save|status|restore`: etcdctl's `snapshot save` and etcdutl's `snapshot
// status` and `snapshot restore`, for stratakv's snapshot files.
//
// save streams Maintenance.Snapshot from one member into FILE.part (the bytes, then the
// SHA-256 the stream ends with, as etcdctl writes them), checks the digest as it arrives,
// then checks the whole file as a stratakv snapshot (every block's CRC32c, the footer, the
// content's SHA-256), makes it durable and renames it to FILE. FILE.part is removed on any
// failure. An etcd member's snapshot is a bbolt file: it is refused after its digest checked.
//
// status checks a file completely (a saved file, or a raw <id>.snap from a data directory)
// and prints what its footer says. restore makes one member's data directory of a NEW
// cluster from a file (src/node/restore-data-dir.ts); every member of the new cluster is
// restored from the same file with its own --name and --initial-advertise-peer-urls.
//
// A progress bar goes to stderr while bytes move, only when stderr is a terminal.

import { closeSync, fsyncSync, openSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

import { EtcdClient, SNAPSHOT_DIGEST_BYTES } from '../src/client/index.ts';
import type { RestoredDataDir, RestorePhase, VerifiedSnapshot } from '../src/node/index.ts';
import { formatMemberId, restoreDataDir, verifySavedSnapshot } from '../src/node/index.ts';
import { decodeMembershipState } from '../src/node/snapshot-descriptor.ts';
import { ErrorCode, StrataError } from '../src/util/errors.ts';
import type { ClientOutput, FlagKind, ParsedCommand } from './client-verbs.ts';
import { DEFAULT_ENDPOINTS, humanBytes, parseCommandArgs, parseDuration, parseEndpoints, table, writeOut } from './client-verbs.ts';
import { ensureNativeAddon } from './native-addon.ts';
import { ProgressBar } from './progress-bar.ts';
import { parseServeFlags, UsageError } from './serve-flags.ts';
import { SNAPSHOT_IDLE_TIMEOUT_DEFAULT } from './snapshot-usage.ts';

/** SNAPSHOT_VERBS are the sub-commands of `stratakv snapshot`. */
export const SNAPSHOT_VERBS = ['save', 'status', 'restore'] as const;
/** SnapshotVerb is one of SNAPSHOT_VERBS. */
export type SnapshotVerb = (typeof SNAPSHOT_VERBS)[number];

/** SnapshotIo is where the snapshot verbs write, and what stops them. */
export interface SnapshotIo extends ClientOutput {
  /** Draws the progress bar (raw text, no newline); given only when stderr is a terminal. */
  readonly progress?: (text: string) => void;
  /** Aborts the verb (Ctrl-C): a save removes FILE.part, a restore what it built. */
  readonly signal?: AbortSignal;
  /** Builds the native addon when missing (CRC32c checks need it); the CLI's own by default. */
  readonly ensureNative?: () => boolean;
}

const RESTORE_SERVE_FLAGS = ['data-dir', 'name', 'initial-cluster', 'initial-advertise-peer-urls', 'initial-cluster-token'] as const;
const FLAGS: Readonly<Record<SnapshotVerb, Readonly<Record<string, FlagKind>>>> = {
  save: { endpoints: 'value', 'command-timeout': 'value', 'write-out': 'value' },
  status: { 'write-out': 'value' },
  restore: { ...Object.fromEntries(RESTORE_SERVE_FLAGS.map((name) => [name, 'value' as const])), 'write-out': 'value' },
};

/** isSnapshotVerb tells whether `verb` is one of SNAPSHOT_VERBS. */
export function isSnapshotVerb(verb: string | undefined): verb is SnapshotVerb {
  return (SNAPSHOT_VERBS as readonly (string | undefined)[]).includes(verb);
}

/**
 * runSnapshotVerb runs `stratakv snapshot <verb> ...` and answers its exit code: 0, or 1 after
 * an operating error (printed as `stratakv snapshot <verb>: <message> (<CODE>)`). A malformed
 * command line throws UsageError before anything is read or written.
 */
export async function runSnapshotVerb(verb: SnapshotVerb, args: readonly string[], io: SnapshotIo): Promise<number> {
  const command = parseCommandArgs(`snapshot ${verb}`, args, FLAGS[verb], ['FILE']);
  const file = command.positionals[0] ?? '';
  if (file === '') throw new UsageError('FILE', `snapshot ${verb}: FILE must not be empty`);
  const run = prepare(verb, file, command, io);
  if (!(io.ensureNative ?? (() => ensureNativeAddon(`snapshot ${verb}`)))()) return 1;
  try {
    await run();
    return 0;
  } catch (error) {
    if (!(error instanceof StrataError)) throw error;
    io.err(`stratakv snapshot ${verb}: ${error.message} (${error.code})`);
    return 1;
  }
}

// prepare checks the whole command line (UsageError) and answers the work to do.
function prepare(verb: SnapshotVerb, file: string, command: ParsedCommand, io: SnapshotIo): () => Promise<void> {
  const { flags } = command;
  switch (verb) {
    case 'save': {
      const endpointsFlag = flags.get('endpoints');
      const endpoints = parseEndpoints(typeof endpointsFlag === 'string' ? endpointsFlag : DEFAULT_ENDPOINTS);
      const endpoint = endpoints[0];
      if (endpoints.length !== 1 || endpoint === undefined) {
        // etcdctl's wording, after the flag's name.
        throw new UsageError('--endpoints', `--endpoints: snapshot must be requested to one selected node, not multiple [${endpoints.join(' ')}]`);
      }
      const timeoutFlag = flags.get('command-timeout');
      const idleTimeoutMs = parseDuration('--command-timeout', typeof timeoutFlag === 'string' ? timeoutFlag : SNAPSHOT_IDLE_TIMEOUT_DEFAULT);
      const format = writeOut(flags, ['simple', 'json']);
      return () => save({ file, endpoint, idleTimeoutMs, json: format === 'json' }, io);
    }
    case 'status': {
      const format = writeOut(flags, ['table', 'json', 'simple']);
      return () => status(file, format, io);
    }
    case 'restore': {
      const format = writeOut(flags, ['simple', 'json']);
      // serve's parser, so that the restored member's ids and defaults are exactly those
      // `stratakv serve` computes from the same flags.
      const serveArgs = RESTORE_SERVE_FLAGS.flatMap((name) => {
        const value = flags.get(name);
        return typeof value === 'string' ? [`--${name}=${value}`] : [];
      });
      const serve = parseServeFlags(serveArgs);
      return () =>
        restore(
          {
            snapshotPath: file,
            dataDir: serve.dataDir,
            name: serve.name,
            initialCluster: serve.initialCluster,
            advertisePeerUrls: serve.initialAdvertisePeerUrls,
            initialClusterToken: serve.initialClusterToken,
          },
          format === 'json',
          io,
        );
    }
  }
}

// ---- save ----

interface SaveRequest {
  readonly file: string;
  readonly endpoint: string;
  readonly idleTimeoutMs: number;
  readonly json: boolean;
}

async function save(request: SaveRequest, io: SnapshotIo): Promise<void> {
  const { file, endpoint } = request;
  const partPath = `${file}.part`;
  const bar = io.progress === undefined ? undefined : new ProgressBar(io.progress, `saving ${file}`);
  const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: request.idleTimeoutMs });
  let handle: FileHandle | undefined;
  try {
    handle = await fileOperation('create', partPath, () => open(partPath, 'w', 0o600));
    let version = '';
    for await (const chunk of client.snapshot(endpoint, { idleTimeoutMs: request.idleTimeoutMs, ...signalOption(io) })) {
      await fileOperation('write', partPath, () => writeAll(handle as FileHandle, chunk.bytes));
      version = chunk.version;
      const digestBytes = chunk.kind === 'sha256' ? SNAPSHOT_DIGEST_BYTES : 0;
      bar?.update(chunk.receivedBytes + digestBytes, chunk.totalBytes + SNAPSHOT_DIGEST_BYTES);
    }
    const written = handle;
    await fileOperation('sync', partPath, () => written.sync());
    handle = undefined;
    await fileOperation('close', partPath, () => written.close());
    bar?.phase(`checking ${file}`);
    const verified = await verifySavedSnapshot(partPath, { ...signalOption(io), ...progressOption(bar) });
    await fileOperation('rename', partPath, () => rename(partPath, file));
    syncDirectory(dirname(file));
    bar?.clear();
    if (request.json) io.out(JSON.stringify({ ...snapshotSummary(verified, file), endpoint, version }));
    else io.out(`Snapshot saved at ${file}`);
  } catch (error) {
    bar?.clear();
    await handle?.close().catch(() => undefined);
    await rm(partPath, { force: true });
    throw error;
  } finally {
    client.close();
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  // Each pass writes at least one byte (a zero-byte write of a non-empty buffer is an error
  // for a regular file), so at most bytes.byteLength passes.
  for (let at = 0; at < bytes.byteLength; ) {
    const { bytesWritten } = await handle.write(bytes, at, bytes.byteLength - at);
    if (bytesWritten <= 0) throw new Error(`wrote nothing at ${at} of ${bytes.byteLength} bytes`);
    at += bytesWritten;
  }
}

// ---- status ----

async function status(file: string, format: string, io: SnapshotIo): Promise<void> {
  const bar = io.progress === undefined ? undefined : new ProgressBar(io.progress, `checking ${file}`);
  let verified: VerifiedSnapshot;
  try {
    verified = await verifySavedSnapshot(file, { ...signalOption(io), ...progressOption(bar) });
  } finally {
    bar?.clear();
  }
  const summary = snapshotSummary(verified, file);
  const shortHash = verified.fileSha256.slice(0, 16);
  switch (format) {
    case 'json':
      io.out(JSON.stringify(summary));
      return;
    case 'simple':
      // etcdutl's order (hash, revision, total keys, total size), then ours.
      io.out([shortHash, summary.revision, summary.totalKey, humanBytes(summary.totalSize), summary.index, summary.term, 'verified'].join(', '));
      return;
    default:
      io.out(
        table(
          ['HASH', 'REVISION', 'TOTAL KEYS', 'TOTAL SIZE', 'INDEX', 'TERM', 'MEMBERS', 'VERIFIED'],
          [[shortHash, String(summary.revision), String(summary.totalKey), humanBytes(summary.totalSize), String(summary.index), String(summary.term), String(summary.members.length), 'true']],
        ),
      );
  }
}

/** SnapshotSummary is what `snapshot status -w json` (and `save -w json`) print about a checked file. */
interface SnapshotSummary {
  readonly path: string;
  /** SHA-256 of the snapshot's bytes (a saved file's trailer), hex. */
  readonly hash: string;
  readonly revision: number;
  readonly totalKey: number;
  /** The file's size in bytes, trailer included. */
  readonly totalSize: number;
  readonly index: number;
  readonly term: number;
  readonly snapshotId: string;
  readonly snapshotBytes: number;
  readonly hasTrailer: boolean;
  readonly blocks: number;
  /** SHA-256 of the content before the footer (the footer's own), hex. */
  readonly contentSha256: string;
  readonly createdAt: string;
  readonly voters: readonly string[];
  readonly members: readonly { readonly id: string; readonly name: string; readonly peerUrls: readonly string[]; readonly isLearner: boolean }[];
  readonly verified: true;
}

function snapshotSummary(verified: VerifiedSnapshot, path: string): SnapshotSummary {
  const { footer, info } = verified;
  // The member table is part of what was checked: a footer whose table does not decode is damaged.
  const membership = decodeMembershipState(footer.metadata.members);
  return {
    path,
    hash: verified.fileSha256,
    revision: footer.metadata.revision,
    totalKey: footer.keyCount,
    totalSize: verified.fileBytes,
    index: footer.metadata.index,
    term: footer.metadata.term,
    snapshotId: info.id,
    snapshotBytes: verified.snapshotBytes,
    hasTrailer: verified.hasTrailer,
    blocks: footer.blockCount,
    contentSha256: info.sha256,
    createdAt: new Date(footer.createdAtMs).toISOString(),
    voters: footer.metadata.confState.voters.map(formatMemberId),
    members: membership.members.map((member) => ({ id: formatMemberId(member.id), name: member.name, peerUrls: member.peerUrls, isLearner: member.isLearner })),
    verified: true,
  };
}

// ---- restore ----

const PHASE_LABELS: Readonly<Record<RestorePhase, string>> = { verify: 'checking', copy: 'copying', restore: 'restoring' };

async function restore(options: Parameters<typeof restoreDataDir>[0], json: boolean, io: SnapshotIo): Promise<void> {
  const bar = io.progress === undefined ? undefined : new ProgressBar(io.progress, `${PHASE_LABELS.verify} ${options.snapshotPath}`);
  let phase: RestorePhase = 'verify';
  let restored: RestoredDataDir;
  try {
    restored = await restoreDataDir({
      ...options,
      ...signalOption(io),
      ...(bar === undefined
        ? {}
        : {
            onProgress: (progress) => {
              if (progress.phase !== phase) {
                phase = progress.phase;
                bar.phase(`${PHASE_LABELS[phase]} ${options.snapshotPath}`);
              }
              bar.update(progress.bytesDone, progress.bytesTotal);
            },
          }),
    });
  } finally {
    bar?.clear();
  }
  const { snapshot } = restored;
  if (json) {
    io.out(
      JSON.stringify({
        ...snapshotSummary(snapshot, options.snapshotPath),
        dataDir: restored.dataDir,
        name: options.name,
        memberId: formatMemberId(restored.memberId),
        clusterId: formatMemberId(restored.clusterId),
        newMembers: restored.members.map((member) => ({ id: formatMemberId(member.id), name: member.name, peerUrls: member.peerUrls })),
      }),
    );
    return;
  }
  const { metadata } = snapshot.footer;
  io.out(
    `Restored ${options.snapshotPath} (index ${metadata.index}, term ${metadata.term}, revision ${metadata.revision}, ${snapshot.footer.keyCount} keys) ` +
      `into ${restored.dataDir} as member ${options.name} (${formatMemberId(restored.memberId)}) of new cluster ${formatMemberId(restored.clusterId)} ` +
      `with ${restored.members.length} member${restored.members.length === 1 ? '' : 's'}`,
  );
}

// ---- helpers ----

function signalOption(io: SnapshotIo): { signal?: AbortSignal } {
  return io.signal === undefined ? {} : { signal: io.signal };
}

function progressOption(bar: ProgressBar | undefined): { onProgress?: (progress: { bytesDone: number; bytesTotal: number }) => void } {
  return bar === undefined ? {} : { onProgress: (progress) => bar.update(progress.bytesDone, progress.bytesTotal) };
}

// fileOperation runs a file system call on FILE or FILE.part, reporting a failure as IO_ERROR
// naming the file (a missing directory, a full disk) rather than a bare errno.
async function fileOperation<T>(what: string, path: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof StrataError) throw error;
    throw new StrataError(ErrorCode.IO_ERROR, `cannot ${what} ${path}: ${(error as Error).message}`, { cause: error, details: { path } });
  }
}

// The rename is durable once the directory that holds FILE is.
function syncDirectory(directory: string): void {
  try {
    const fd = openSync(directory, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    throw new StrataError(ErrorCode.IO_ERROR, `cannot sync directory ${directory}: ${(error as Error).message}`, { cause: error, details: { path: directory } });
  }
}

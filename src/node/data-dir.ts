// The member's storage, opened once at start: its identity (<data-dir>/member/identity.json),
// the durable Raft log (<data-dir>/member/wal), the snapshots (<data-dir>/member/snap) and the
// KV state machine (<data-dir>/member/kv, or the directory state-machine.json names once a
// snapshot was installed); or all in memory without a data directory; or what the caller
// supplies (the simulator runs DiskLogStore on a fault-injecting disk and the state machine
// on memory-level).
//
// A snapshot install restores the state machine into a fresh directory while the old one
// serves; once the log records the snapshot, state-machine.json is replaced atomically to
// name the new directory and the old one is deleted. A crash anywhere leaves either the old
// state machine (behind the log's snapshot: it is restored again at the next start, below)
// or the new one. At start, a state machine behind the log's snapshot (its entries are
// compacted away) is restored from that snapshot's file before anything is served.
//
// It decides whether this start bootstraps a new cluster: only an empty log with
// --initial-cluster-state new does, and then this member must be in --initial-cluster.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Index, Logger, Term } from '../raft/index.ts';
import type { ReceivedRecordStream, SnapshotStore } from '../snapshot/index.ts';
import { DiskSnapshotStore, MemorySnapshotStore, snapshotDigestRoot } from '../snapshot/index.ts';
import type { KvSnapshotContent, KvStateMachine, KvStateMachineOptions, LogStore } from '../storage/index.ts';
import {
  DEFAULT_KV_LIMITS,
  DiskLogStore,
  MemoryLogStore,
  NodeFileSystem,
  openDiskKvStateMachine,
  openMemoryKvStateMachine,
  restoreDiskKvStateMachine,
  restoreMemoryKvStateMachine,
} from '../storage/index.ts';
import { assert, ErrorCode, isStrataError, StrataError, SYSTEM_CLOCK } from '../util/index.ts';
import { replaceFileDurably } from './json-state-file.ts';
import { clusterIdFor, memberIdFor } from './member-identity.ts';
import type { MemberIdentity } from './member-state-file.ts';
import { readMemberIdentity, writeMemberIdentity } from './member-state-file.ts';
import type { InitialMember } from './membership.ts';
import type { RaftNodeOptions } from './raft-node-options.ts';
import { decodeSnapshotDescriptor } from './snapshot-descriptor.ts';

/** CORRUPT_STATE_DIRECTORY is where --repair-corrupt-state moves a state machine that failed its check (inside the data dir). */
export const CORRUPT_STATE_DIRECTORY = 'corrupt';

/** DB_SIZE_FILES_MAX bounds the files dbSizeBytes looks at. */
export const DB_SIZE_FILES_MAX = 10_000;

/** RestoredStateMachine is a state machine built from a snapshot beside the one serving. */
export interface RestoredStateMachine {
  readonly stateMachine: KvStateMachine;
  /** commit makes it the member's state machine across restarts; call it after the old one is closed. */
  commit(): Promise<void>;
  /** discard closes it and removes its files. */
  discard(): Promise<void>;
}

/** StateMachineRestorer builds state machines from snapshot content, in a fresh place each time. */
export interface StateMachineRestorer {
  restore(content: KvSnapshotContent): Promise<RestoredStateMachine>;
}

/** StorageTimings receive the storage's timings (the member's metrics: member-metrics.ts StorageTimingSink). */
export interface StorageTimings {
  readonly onSynced: (durationMs: number) => void;
  readonly onBatchWritten: (durationMs: number) => void;
}

/** MemberStorage is what a member runs on. */
export interface MemberStorage {
  readonly identity: MemberIdentity;
  readonly log: LogStore;
  readonly stateMachine: KvStateMachine;
  readonly snapshots: SnapshotStore;
  readonly restorer: StateMachineRestorer;
  /** This start bootstraps a new cluster's configuration. */
  readonly freshCluster: boolean;
}

/** openMemberStorage opens (or creates) the member's identity, log and state machine from its options. */
export async function openMemberStorage(options: RaftNodeOptions, timings?: StorageTimings): Promise<MemberStorage> {
  const token = options.initialClusterToken;
  const initialMembers: InitialMember[] = options.initialCluster.map((member) => ({
    id: memberIdFor(member.peerUrls, token),
    name: member.name,
    peerUrls: [...member.peerUrls],
  }));
  const derived: MemberIdentity = {
    memberId: memberIdFor(options.advertisePeerUrls, token),
    clusterId: clusterIdFor(token),
    name: options.name,
    initialMembers,
  };
  const limits = options.limits ?? DEFAULT_KV_LIMITS;
  // RaftNodeOptions.onFatal reaches the stores too: a failed fdatasync or LevelDB write calls
  // the store's handler first (stratakv serve's logs the error before it aborts).
  const onFatal = options.onFatal !== undefined ? { onFatal: options.onFatal } : {};
  const machineOptions: KvStateMachineOptions = {
    limits,
    ...onFatal,
    ...(options.unsafeSkipDigest === true ? { unsafeSkipDigest: true } : {}),
    ...(timings !== undefined ? { onBatchWritten: timings.onBatchWritten } : {}),
  };
  let identity = derived;
  const clock = options.clock ?? SYSTEM_CLOCK;
  // A snapshot's footer says when it was made: wall time for a real member; a simulated one
  // keeps its clock's time, so that a seed replays exactly.
  const memorySnapshots = (): MemorySnapshotStore => new MemorySnapshotStore({ clock, ...(clock === SYSTEM_CLOCK ? { wallClockMs: () => Date.now() } : {}) });
  let log: LogStore;
  let stateMachine: KvStateMachine;
  let snapshots: SnapshotStore;
  let restorer: StateMachineRestorer;
  if (options.storage !== undefined) {
    const supplied = await options.storage();
    ({ log, stateMachine } = supplied);
    snapshots = supplied.snapshots ?? memorySnapshots();
    restorer = supplied.restorer ?? memoryRestorer(machineOptions);
  } else if (options.dataDir === undefined) {
    log = new MemoryLogStore();
    stateMachine = await openMemoryKvStateMachine(machineOptions);
    snapshots = memorySnapshots();
    restorer = memoryRestorer(machineOptions);
  } else {
    const stored = readMemberIdentity(options.dataDir);
    if (stored !== undefined && stored.name !== options.name) {
      throw new StrataError(
        ErrorCode.INVALID_ARGUMENT,
        `--name ${JSON.stringify(options.name)} does not match the member ${JSON.stringify(stored.name)} stored in ${options.dataDir}`,
        { details: { dataDir: options.dataDir } },
      );
    }
    if (stored === undefined) writeMemberIdentity(options.dataDir, derived);
    identity = stored ?? derived;
    log = DiskLogStore.openSync({
      fileSystem: new NodeFileSystem(),
      directory: join(options.dataDir, 'member', 'wal'),
      ...onFatal,
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
      ...(timings !== undefined ? { onSynced: timings.onSynced } : {}),
    });
    const memberDir = join(options.dataDir, 'member');
    const current = readStateMachinePointer(memberDir);
    await removeStaleStateMachines(memberDir, current, options.logger);
    stateMachine = await openCheckedStateMachine(options.dataDir, memberDir, current, machineOptions, options.repairCorruptState === true, options.logger);
    snapshots = await DiskSnapshotStore.open(join(memberDir, 'snap'), { clock, ...(options.logger !== undefined ? { logger: options.logger } : {}) });
    restorer = diskRestorer(memberDir, current, machineOptions);
  }
  stateMachine = await catchUpWithLogSnapshot({ log, stateMachine, snapshots, restorer, ...(options.logger !== undefined ? { logger: options.logger } : {}) });
  // An entry is applied only once it is durable in the log, and applied entries are never
  // truncated: a state machine ahead of the log means the log lost entries this member had
  // written and acknowledged (its tail cut off, or a disk that lost synced writes). Starting
  // anyway would skip the new entries written at those indexes (apply skips what it has
  // applied) and could count this member towards a quorum for entries it does not have.
  if (stateMachine.appliedIndex() > log.lastIndex()) {
    const appliedIndex = stateMachine.appliedIndex();
    const lastIndex = log.lastIndex();
    await log.close();
    await stateMachine.close();
    throw new StrataError(
      ErrorCode.CORRUPTION,
      `the state machine has applied up to index ${appliedIndex}, past the log's last entry ${lastIndex}: the log lost entries this member had written ` +
        '(its tail was cut, or the disk lost synced writes); it must not rejoin without them: restore the member from a snapshot (stratakv snapshot restore) or remove and re-add it',
      { details: { check: 'log-behind-state-machine', appliedIndex, lastIndex } },
    );
  }
  const logIsEmpty = log.lastIndex() === 0 && log.initialState().hardState.term === 0;
  const freshCluster = logIsEmpty && options.initialClusterState === 'new';
  if (freshCluster && !identity.initialMembers.some((member) => member.id === identity.memberId)) {
    await log.close();
    await stateMachine.close();
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `member ${options.name} is not in --initial-cluster with its advertised peer URLs`);
  }
  return { identity, log, stateMachine, snapshots, restorer, freshCluster };
}

// catchUpWithLogSnapshot restores the state machine from the log's snapshot when it is
// behind it: the entries between them are compacted away, so replaying cannot catch up (a
// crash during an install, or a state machine lost with its directory).
async function catchUpWithLogSnapshot(storage: {
  readonly log: LogStore;
  readonly stateMachine: KvStateMachine;
  readonly snapshots: SnapshotStore;
  readonly restorer: StateMachineRestorer;
  readonly logger?: Logger;
}): Promise<KvStateMachine> {
  const { log, stateMachine, snapshots, restorer, logger } = storage;
  const snapshot = log.snapshot();
  if (snapshot.metadata.index <= stateMachine.appliedIndex()) return stateMachine;
  const descriptor = decodeSnapshotDescriptor(snapshot.data);
  if (snapshots.get(descriptor.snapshotId) === undefined) {
    throw new StrataError(
      ErrorCode.CORRUPTION,
      `the state machine is at index ${stateMachine.appliedIndex()}, behind the log's snapshot at ${snapshot.metadata.index}, ` +
        `and snapshot ${descriptor.snapshotId} is missing or failed its check: restore the member from a snapshot (stratakv snapshot restore) or remove and re-add it`,
      { details: { appliedIndex: stateMachine.appliedIndex(), snapshotIndex: snapshot.metadata.index, snapshotId: descriptor.snapshotId } },
    );
  }
  logger?.info('restoring the state machine from the log\'s snapshot', { appliedIndex: stateMachine.appliedIndex(), snapshotId: descriptor.snapshotId });
  const restored = await restoreFromSnapshot(snapshots, restorer, descriptor.snapshotId, snapshot.metadata.index);
  await stateMachine.close();
  await restored.commit();
  return restored.stateMachine;
}

/** restoreFromSnapshot builds a state machine from a stored snapshot, checking that it is the one expected at `index`. */
export async function restoreFromSnapshot(snapshots: SnapshotStore, restorer: StateMachineRestorer, snapshotId: string, index: number): Promise<RestoredStateMachine> {
  const reader = await snapshots.open(snapshotId);
  try {
    if (reader.metadata.index !== index) {
      throw new StrataError(ErrorCode.CORRUPTION, `snapshot ${snapshotId} holds index ${reader.metadata.index}, expected ${index}`, {
        details: { snapshotId, index: reader.metadata.index, expected: index },
      });
    }
    return await restorer.restore({
      appliedIndex: reader.metadata.index,
      appliedTerm: reader.metadata.term,
      revision: reader.metadata.revision,
      records: reader.records(),
      keyCount: reader.info.keyCount,
      digest: snapshotDigestRoot(reader.metadata, reader.info.keyCount),
      mirror: reader.metadata.mirror,
    });
  } finally {
    await reader.close();
  }
}

/**
 * restoreWhileReceiving restores from a receive's records() stream, beside the transfer:
 * the state machine is built as the blocks come in, and is whole only once the stream ended,
 * that is once the receive checked the whole file (counts and SHA-256). The key count, the
 * revision and the mirror state come from that checked footer, read by restore() after the
 * records ended.
 */
export function restoreWhileReceiving(restorer: StateMachineRestorer, stream: ReceivedRecordStream, index: Index, term: Term): Promise<RestoredStateMachine> {
  const footer = (): NonNullable<ReceivedRecordStream['footer']> => {
    const checked = stream.footer;
    assert(checked !== undefined, 'a streamed restore reads the footer after the stream ended');
    if (checked.metadata.index !== index) {
      throw new StrataError(ErrorCode.CORRUPTION, `received snapshot holds index ${checked.metadata.index}, expected ${index}`, {
        details: { index: checked.metadata.index, expected: index },
      });
    }
    return checked;
  };
  return restorer.restore({
    appliedIndex: index,
    appliedTerm: term,
    get revision() {
      return footer().metadata.revision;
    },
    records: stream,
    get keyCount() {
      return footer().keyCount;
    },
    get digest() {
      const checked = footer();
      return snapshotDigestRoot(checked.metadata, checked.keyCount);
    },
    get mirror() {
      return footer().metadata.mirror;
    },
  });
}

function memoryRestorer(machineOptions: KvStateMachineOptions): StateMachineRestorer {
  return {
    async restore(content) {
      const stateMachine = await restoreMemoryKvStateMachine(content, machineOptions);
      return { stateMachine, commit: async () => undefined, discard: () => stateMachine.close() };
    },
  };
}

/** STATE_MACHINE_POINTER_FILE names the state machine's directory inside <data-dir>/member once a snapshot was installed. */
export const STATE_MACHINE_POINTER_FILE = 'state-machine.json';
const DEFAULT_STATE_MACHINE_DIRECTORY = 'kv';
const RESTORED_DIRECTORY_PATTERN = /^kv-[0-9a-f]{16}-[0-9a-f]{8}$/;

function readStateMachinePointer(memberDir: string): string {
  const path = join(memberDir, STATE_MACHINE_POINTER_FILE);
  if (!existsSync(path)) return DEFAULT_STATE_MACHINE_DIRECTORY;
  let directory: unknown;
  try {
    directory = (JSON.parse(readFileSync(path, 'utf8')) as { directory?: unknown }).directory;
  } catch (error) {
    throw new StrataError(ErrorCode.CORRUPTION, `${path} is not valid JSON`, { cause: error, details: { path } });
  }
  if (typeof directory !== 'string' || !RESTORED_DIRECTORY_PATTERN.test(directory)) {
    throw new StrataError(ErrorCode.CORRUPTION, `${path} does not name a state machine directory`, { details: { path } });
  }
  return directory;
}

// writeStateMachinePointer replaces state-machine.json durably: temporary file, fsync,
// rename, directory fsync. A crash leaves the old pointer or the new one, whole.
function writeStateMachinePointer(memberDir: string, directory: string): void {
  replaceFileDurably(join(memberDir, STATE_MACHINE_POINTER_FILE), `${JSON.stringify({ directory })}\n`);
}

// removeStaleStateMachines deletes restored directories that are not the current one: an
// install that failed or was cut short by a crash, or the old state machine of one that
// completed.
// openCheckedStateMachine opens the state machine, which checks its data against its digest
// before anything can be served. A failure refuses to start, naming the check and what to do;
// with --repair-corrupt-state (the operator's opt-in) the state machine is moved aside, kept
// for inspection, and an empty one takes its place: the start then rebuilds it from this
// member's own snapshot (checked: SHA-256 and digest) and log (checked: CRC32c), as after a
// snapshot install, and the cluster's next integrity checkpoint compares it with the others.
async function openCheckedStateMachine(
  dataDir: string,
  memberDir: string,
  current: string,
  machineOptions: KvStateMachineOptions,
  repair: boolean,
  logger: Logger | undefined,
): Promise<KvStateMachine> {
  const location = join(memberDir, current);
  try {
    const stateMachine = await openDiskKvStateMachine(location, machineOptions);
    const verification = stateMachine.openVerification();
    if (verification !== undefined) {
      logger?.info('state machine verified against its digest', {
        keys: verification.keys,
        bytes: verification.bytes,
        durationMs: Math.round(verification.durationMs),
      });
    }
    return stateMachine;
  } catch (error) {
    if (!isStrataError(error, ErrorCode.CORRUPTION)) throw error;
    const check = typeof error.details?.['check'] === 'string' ? error.details['check'] : 'state machine';
    if (!repair) {
      throw new StrataError(
        ErrorCode.CORRUPTION,
        `the state machine in ${location} failed its integrity check (${check}), so this member refuses to serve it: ${error.message}. ` +
          'To repair it, restart this member with --repair-corrupt-state (it moves the damaged state aside and rebuilds it from ' +
          "this member's snapshot and log), or remove the member from the cluster (etcdctl member remove) and add it back with an empty data directory.",
        { cause: error, details: { ...error.details, location, dataDir } },
      );
    }
    const aside = join(dataDir, CORRUPT_STATE_DIRECTORY, `${current}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    logger?.warn('REPAIRING A CORRUPT STATE MACHINE (--repair-corrupt-state): moving it aside and rebuilding it from this member\'s snapshot and log', {
      location,
      movedTo: aside,
      check,
      reason: error.message,
    });
    await mkdir(join(dataDir, CORRUPT_STATE_DIRECTORY), { recursive: true });
    await rename(location, aside);
    return openDiskKvStateMachine(location, machineOptions);
  }
}

async function removeStaleStateMachines(memberDir: string, current: string, logger: Logger | undefined): Promise<void> {
  const names = await readdir(memberDir).catch(() => [] as string[]);
  for (const name of names.slice(0, DB_SIZE_FILES_MAX)) {
    const stale = (RESTORED_DIRECTORY_PATTERN.test(name) || name === DEFAULT_STATE_MACHINE_DIRECTORY) && name !== current;
    if (!stale) continue;
    logger?.info('removing a state machine directory that is not in use', { directory: join(memberDir, name) });
    await rm(join(memberDir, name), { recursive: true, force: true });
  }
}

function diskRestorer(memberDir: string, initial: string, machineOptions: KvStateMachineOptions): StateMachineRestorer {
  let current = initial;
  return {
    async restore(content) {
      const name = `kv-${content.appliedIndex.toString(16).padStart(16, '0')}-${randomBytes(4).toString('hex')}`;
      const location = join(memberDir, name);
      let stateMachine: KvStateMachine;
      try {
        stateMachine = await restoreDiskKvStateMachine(location, content, machineOptions);
      } catch (error) {
        await rm(location, { recursive: true, force: true });
        throw error;
      }
      return {
        stateMachine,
        commit: async () => {
          writeStateMachinePointer(memberDir, name);
          const previous = current;
          current = name;
          await rm(join(memberDir, previous), { recursive: true, force: true });
        },
        discard: async () => {
          await stateMachine.close().catch(() => undefined);
          await rm(location, { recursive: true, force: true });
        },
      };
    },
  };
}

/** dbSizeBytes is the size of the state machine's files under a data directory (0 without one). */
export async function dbSizeBytes(dataDir: string | undefined): Promise<number> {
  if (dataDir === undefined) return 0;
  const memberDir = join(dataDir, 'member');
  const directory = join(memberDir, existsSync(memberDir) ? readStateMachinePointer(memberDir) : DEFAULT_STATE_MACHINE_DIRECTORY);
  let total = 0;
  const names = await readdir(directory).catch(() => [] as string[]);
  for (const name of names.slice(0, DB_SIZE_FILES_MAX)) {
    const info = await stat(join(directory, name)).catch(() => undefined);
    if (info?.isFile() === true) total += info.size;
  }
  return total;
}

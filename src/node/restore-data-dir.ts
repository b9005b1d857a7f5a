// restoreDataDir: etcdutl's `snapshot restore` for stratakv. From one snapshot file it makes
// the data directory of one member of a NEW cluster, exactly as that member would find it
// after having taken the snapshot itself (data-dir.ts opens it):
//
//   <data-dir>/member/identity.json   this member of the new cluster (ids from its peer URLs and the token)
//   <data-dir>/member/snap/<id>.snap  the snapshot file, through DiskSnapshotStore.receive (checked again)
//   <data-dir>/member/kv              the KV state machine restored from the snapshot's records
//   <data-dir>/member/wal             a Raft log holding only the snapshot: index and term as in
//                                     the file, the new members as voters, commit = index
//
// The keys, values and revisions are the file's; the cluster (ids, members, configuration)
// is the new one. Every member of the new cluster is restored from the same file, each with
// its own name and peer URLs, then started with `stratakv serve` and the same flags: its log
// is not empty, so it does not bootstrap again, and the member table comes from the log's
// snapshot (names from --initial-cluster; each member publishes its client URLs when it starts).
//
// Nothing is touched before the whole file has been checked (verifySavedSnapshot) and the
// data directory found absent or empty. The member directory is then built beside its final
// name (`<data-dir>/.restore-<random>/member`), made durable, and renamed into place, so a
// failure or a crash never leaves a `<data-dir>/member` that a member could start on half
// made; a failure removes what was built (and the data directory, when this call created it).

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { mkdir, opendir, rename, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';

import type { ConfState, Snapshot } from '../raft/index.ts';
import { DiskSnapshotStore, snapshotDigestRoot } from '../snapshot/index.ts';
import type { KvLimits } from '../storage/index.ts';
import { DEFAULT_KV_LIMITS, DiskLogStore, NodeFileSystem, restoreDiskKvStateMachine } from '../storage/index.ts';
import { ErrorCode, StrataError } from '../util/index.ts';
import { clusterIdFor, memberIdFor } from './member-identity.ts';
import { writeMemberIdentity } from './member-state-file.ts';
import type { MemberRecord } from './membership.ts';
import { MEMBERS_MAX } from './membership.ts';
import type { InitialClusterMember } from './raft-node-options.ts';
import type { VerifiedSnapshot } from '../snapshot/index.ts';
import { openForReading, readSnapshotBytes, SAVED_SNAPSHOT_READ_BYTES, verifySavedSnapshot } from '../snapshot/index.ts';
import { encodeSnapshotDescriptor } from './snapshot-descriptor.ts';

/** RestorePhase is the step a restore is in: checking the file, copying it into the store, filling the state machine. */
export type RestorePhase = 'verify' | 'copy' | 'restore';

/** RestoreProgress is reported as each phase moves on. */
export interface RestoreProgress {
  readonly phase: RestorePhase;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

/** RestoreDataDirOptions are etcdutl's restore flags, parsed. */
export interface RestoreDataDirOptions {
  /** The snapshot file: saved (with its SHA-256 trailer) or a raw `<id>.snap`. */
  readonly snapshotPath: string;
  /** --data-dir: must not exist, or be empty. */
  readonly dataDir: string;
  /** --name: this member, which must be in initialCluster at advertisePeerUrls. */
  readonly name: string;
  /** --initial-cluster: every member of the new cluster. */
  readonly initialCluster: readonly InitialClusterMember[];
  /** --initial-advertise-peer-urls: this member's peer URLs (its id derives from them). */
  readonly advertisePeerUrls: readonly string[];
  /** --initial-cluster-token: the new cluster's (ids derive from it; give each cluster its own). */
  readonly initialClusterToken: string;
  /** Limits for the restored state machine (default DEFAULT_KV_LIMITS). */
  readonly limits?: KvLimits;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: RestoreProgress) => void;
}

/** RestoredDataDir says what was made. */
export interface RestoredDataDir {
  readonly dataDir: string;
  readonly snapshot: VerifiedSnapshot;
  readonly memberId: number;
  readonly clusterId: number;
  /** The new cluster's members, as the log's snapshot records them. */
  readonly members: readonly MemberRecord[];
}

/**
 * restoreDataDir makes `dataDir` for one member of a new cluster from a snapshot file (see
 * the file comment). INVALID_ARGUMENT for a data directory that is not empty, a member not in
 * the cluster at its URLs, or a file that is not a stratakv snapshot; CORRUPTION naming the
 * file and block for a damaged file; CANCELED on abort. On any failure nothing is left behind.
 */
export async function restoreDataDir(options: RestoreDataDirOptions): Promise<RestoredDataDir> {
  const members = newClusterMembers(options);
  const memberId = memberIdFor(options.advertisePeerUrls, options.initialClusterToken);
  const clusterId = clusterIdFor(options.initialClusterToken);
  const createdDataDir = !(await checkEmptyDataDir(options.dataDir));
  const snapshot = await verifySavedSnapshot(options.snapshotPath, {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    onProgress: (progress) => options.onProgress?.({ phase: 'verify', ...progress }),
  });
  throwIfAborted(options.signal);
  // Checked again: the directory may have changed while the file was read.
  await checkEmptyDataDir(options.dataDir);
  await mkdir(options.dataDir, { recursive: true });
  const staging = join(options.dataDir, `.restore-${randomBytes(4).toString('hex')}`);
  let placed = false;
  try {
    await mkdir(staging);
    writeMemberIdentity(staging, {
      memberId,
      clusterId,
      name: options.name,
      initialMembers: members.map((member) => ({ id: member.id, name: member.name, peerUrls: [...member.peerUrls] })),
    });
    const memberDir = join(staging, 'member');
    await fillStoreAndStateMachine(snapshot, memberDir, options);
    await writeRaftLog(snapshot, members, join(memberDir, 'wal'));
    syncDirectory(memberDir);
    await rename(memberDir, join(options.dataDir, 'member'));
    placed = true;
    syncDirectory(options.dataDir);
    await rmdir(staging);
    syncDirectory(options.dataDir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (createdDataDir) await rm(options.dataDir, { recursive: true, force: true });
    else if (placed) await rm(join(options.dataDir, 'member'), { recursive: true, force: true });
    throw error;
  }
  return { dataDir: options.dataDir, snapshot, memberId, clusterId, members };
}

// newClusterMembers checks the flags as etcd does at bootstrap (this member is in the cluster
// at exactly its advertised peer URLs) and derives the members' ids from the new token.
function newClusterMembers(options: RestoreDataDirOptions): MemberRecord[] {
  if (options.initialClusterToken === '') throw invalid('--initial-cluster-token must not be empty');
  if (options.initialCluster.length === 0 || options.initialCluster.length > MEMBERS_MAX) {
    throw invalid(`--initial-cluster must name 1 to ${MEMBERS_MAX} members, not ${options.initialCluster.length}`);
  }
  const local = options.initialCluster.find((member) => member.name === options.name);
  if (local === undefined) throw invalid(`member ${JSON.stringify(options.name)} is not in --initial-cluster`);
  if ([...local.peerUrls].sort().join(',') !== [...options.advertisePeerUrls].sort().join(',')) {
    throw invalid(`--initial-cluster gives ${options.name} ${local.peerUrls.join(',')}, not --initial-advertise-peer-urls ${options.advertisePeerUrls.join(',')}`);
  }
  const members = options.initialCluster.map((member) => ({
    id: memberIdFor(member.peerUrls, options.initialClusterToken),
    name: member.name,
    peerUrls: [...member.peerUrls],
    clientUrls: [],
    isLearner: false,
    // Zones come back as the members start and publish.
    zone: '',
  }));
  if (new Set(members.map((member) => member.id)).size !== members.length) throw invalid('--initial-cluster gives two members the same peer URLs');
  return members.sort((a, b) => a.id - b.id);
}

// checkEmptyDataDir refuses a data directory with anything in it (one entry is enough to
// tell); answers whether it exists.
async function checkEmptyDataDir(dataDir: string): Promise<boolean> {
  let first: string | undefined;
  try {
    const directory = await opendir(dataDir);
    try {
      first = (await directory.read())?.name;
    } finally {
      await directory.close().catch(() => undefined);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw invalid(`cannot use --data-dir ${dataDir}: ${(error as Error).message}`, error);
  }
  if (first !== undefined) {
    throw invalid(`--data-dir ${dataDir} is not empty (it holds ${first}): a restore makes a new member and never overwrites one`, undefined, { dataDir });
  }
  return true;
}

// fillStoreAndStateMachine writes the snapshot into a new DiskSnapshotStore with receive(),
// which checks every block again and lists the file under the store's own name, then fills
// the state machine from the listed file's records.
async function fillStoreAndStateMachine(snapshot: VerifiedSnapshot, memberDir: string, options: RestoreDataDirOptions): Promise<void> {
  const store = await DiskSnapshotStore.open(join(memberDir, 'snap'));
  try {
    const id = await copyIntoStore(snapshot, store, options);
    const reader = await store.open(id);
    try {
      const stateMachine = await restoreDiskKvStateMachine(
        join(memberDir, 'kv'),
        {
          appliedIndex: reader.metadata.index,
          appliedTerm: reader.metadata.term,
          revision: reader.metadata.revision,
          records: reader.records({
            ...(options.signal === undefined ? {} : { signal: options.signal }),
            onProgress: (progress) => options.onProgress?.({ phase: 'restore', bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal ?? snapshot.snapshotBytes }),
          }),
          keyCount: reader.info.keyCount,
          digest: snapshotDigestRoot(reader.metadata, reader.info.keyCount),
          // A snapshot of a mirror restores a mirror (it refuses client writes until switched over).
          mirror: reader.metadata.mirror,
        },
        { limits: options.limits ?? DEFAULT_KV_LIMITS },
      );
      await stateMachine.close();
    } finally {
      await reader.close();
    }
  } finally {
    await store.close();
  }
}

// copyIntoStore copies the snapshot's bytes (not the trailer) into `store`; answers its id.
async function copyIntoStore(snapshot: VerifiedSnapshot, store: DiskSnapshotStore, options: RestoreDataDirOptions): Promise<string> {
  const receiver = await store.receive(snapshot.info.id, snapshot.snapshotBytes);
  const file = await openForReading(snapshot.path);
  try {
    // Each pass copies one read (at least one alignment unit), so the loop is bounded by the file's length.
    for (let offset = 0; offset < snapshot.snapshotBytes; ) {
      throwIfAborted(options.signal);
      const bytes = await readSnapshotBytes(file, snapshot.path, offset, Math.min(SAVED_SNAPSHOT_READ_BYTES, snapshot.snapshotBytes - offset));
      await receiver.write(offset, bytes);
      offset += bytes.byteLength;
      options.onProgress?.({ phase: 'copy', bytesDone: offset, bytesTotal: snapshot.snapshotBytes });
    }
  } catch (error) {
    await receiver.abort().catch(() => undefined);
    throw error;
  } finally {
    await file.close();
  }
  const listed = await receiver.finish();
  if (listed.sha256 !== snapshot.info.sha256 || listed.byteLength !== snapshot.snapshotBytes) {
    throw new StrataError(ErrorCode.CORRUPTION, `${snapshot.path} changed while it was restored (its copy in ${store.directory} differs)`, {
      details: { location: snapshot.path },
    });
  }
  return listed.id;
}

// writeRaftLog makes the log a member finds after its own snapshot at the file's index: the
// snapshot (the new configuration, a descriptor naming the file and the new member table) and
// a hard state that has committed it. No vote: the new cluster's first election is at term + 1.
async function writeRaftLog(snapshot: VerifiedSnapshot, members: readonly MemberRecord[], directory: string): Promise<void> {
  const { index, term } = snapshot.footer.metadata;
  const confState: ConfState = { voters: members.map((member) => member.id), learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
  const raftSnapshot: Snapshot = {
    metadata: { index, term, confState },
    data: encodeSnapshotDescriptor({
      snapshotId: snapshot.info.id,
      byteLength: snapshot.snapshotBytes,
      sha256: snapshot.info.sha256,
      membership: { members, removed: [], published: [] },
    }),
  };
  const log = DiskLogStore.openSync({ fileSystem: new NodeFileSystem(), directory });
  try {
    log.saveSync({ snapshot: raftSnapshot, hardState: { term, vote: 0, commit: index } });
  } finally {
    await log.close();
  }
}

function syncDirectory(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the restore was cancelled');
}

function invalid(message: string, cause?: unknown, details?: Record<string, unknown>): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, message, { ...(cause === undefined ? {} : { cause }), ...(details === undefined ? {} : { details }) });
}

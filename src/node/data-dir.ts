// The member's storage, opened once at start: its identity (<data-dir>/member/identity.json),
// the durable Raft log (<data-dir>/member/wal) and the KV state machine (<data-dir>/member/kv);
// or all in memory without a data directory; or what the caller supplies (the simulator runs
// DiskLogStore on a fault-injecting disk and the state machine on memory-level).
//
// It decides whether this start bootstraps a new cluster: only an empty log with
// --initial-cluster-state new does, and then this member must be in --initial-cluster.

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { KvStateMachine, LogStore } from '../storage/index.ts';
import { DEFAULT_KV_LIMITS, DiskLogStore, MemoryLogStore, NodeFileSystem, openDiskKvStateMachine, openMemoryKvStateMachine } from '../storage/index.ts';
import { ErrorCode, StrataError } from '../util/index.ts';
import { clusterIdFor, memberIdFor } from './member-identity.ts';
import type { MemberIdentity } from './member-state-file.ts';
import { readMemberIdentity, writeMemberIdentity } from './member-state-file.ts';
import type { InitialMember } from './membership.ts';
import type { RaftNodeOptions } from './raft-node-options.ts';

/** DB_SIZE_FILES_MAX bounds the files dbSizeBytes looks at. */
export const DB_SIZE_FILES_MAX = 10_000;

/** MemberStorage is what a member runs on. */
export interface MemberStorage {
  readonly identity: MemberIdentity;
  readonly log: LogStore;
  readonly stateMachine: KvStateMachine;
  /** This start bootstraps a new cluster's configuration. */
  readonly freshCluster: boolean;
}

/** openMemberStorage opens (or creates) the member's identity, log and state machine from its options. */
export async function openMemberStorage(options: RaftNodeOptions): Promise<MemberStorage> {
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
  let identity = derived;
  let log: LogStore;
  let stateMachine: KvStateMachine;
  if (options.storage !== undefined) {
    ({ log, stateMachine } = await options.storage());
  } else if (options.dataDir === undefined) {
    log = new MemoryLogStore();
    stateMachine = await openMemoryKvStateMachine({ limits });
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
    log = DiskLogStore.openSync({ fileSystem: new NodeFileSystem(), directory: join(options.dataDir, 'member', 'wal'), ...(options.logger !== undefined ? { logger: options.logger } : {}) });
    stateMachine = await openDiskKvStateMachine(join(options.dataDir, 'member', 'kv'), { limits });
  }
  const logIsEmpty = log.lastIndex() === 0 && log.initialState().hardState.term === 0;
  const freshCluster = logIsEmpty && options.initialClusterState === 'new';
  if (freshCluster && !identity.initialMembers.some((member) => member.id === identity.memberId)) {
    await log.close();
    await stateMachine.close();
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `member ${options.name} is not in --initial-cluster with its advertised peer URLs`);
  }
  return { identity, log, stateMachine, freshCluster };
}

/** dbSizeBytes is the size of the state machine's files under a data directory (0 without one). */
export async function dbSizeBytes(dataDir: string | undefined): Promise<number> {
  if (dataDir === undefined) return 0;
  const directory = join(dataDir, 'member', 'kv');
  let total = 0;
  const names = await readdir(directory).catch(() => [] as string[]);
  for (const name of names.slice(0, DB_SIZE_FILES_MAX)) {
    const info = await stat(join(directory, name)).catch(() => undefined);
    if (info?.isFile() === true) total += info.size;
  }
  return total;
}

// MigrationCluster: what a migration needs of the cluster it moves, as one interface over the
// Admin service's clients (the journal, replication, membership steps, leader transfer, the
// integrity check) and etcd's alarm list. The executor and the planner take it, so their
// rules are written once against it; clusterOver() is the one implementation, over gRPC.
//
// The endpoints follow the cluster: after each step the migration adds the client URLs of
// every member it learned (followEndpoints), so that once the old members are gone it still
// reaches the new ones, and a resumed run given only old or only new endpoints finds the rest.

import { EtcdClient, IntegrityClient, MigrationClient } from '../client/index.ts';
import type { IntegrityCheck, JournalInfo, MemberChange, MigrationMemberInfo, ReplicationInfo } from '../client/index.ts';
import { ErrorCode, isStrataError, StrataError } from '../util/errors.ts';

/** MigrationCluster is the cluster as a migration sees it (see the file comment). */
export interface MigrationCluster {
  readJournal(): Promise<JournalInfo>;
  writeJournal(expectedVersion: number, record: string | undefined): Promise<number>;
  replication(): Promise<ReplicationInfo>;
  changeMembers(change: MemberChange): Promise<{ members: MigrationMemberInfo[]; addedId: number }>;
  transferLeader(targetId: number): Promise<void>;
  check(timeoutMs: number): Promise<IntegrityCheck>;
  alarms(): Promise<readonly { readonly memberId: string; readonly alarm: string }[]>;
  /** followEndpoints puts the client URLs of these members (the cluster now) first among the endpoints tried. */
  followEndpoints(members: readonly MigrationMemberInfo[]): void;
  readonly endpoints: readonly string[];
  close(): void;
}

/** MEMBER_CHANGE_TIMEOUT_MS is one membership step's deadline (a joint change waits for its entry's commit on both halves). */
export const MEMBER_CHANGE_TIMEOUT_MS = 30_000;
/** TRANSFER_TIMEOUT_MS is a leader transfer's deadline. */
export const TRANSFER_TIMEOUT_MS = 10_000;
/** ENDPOINTS_FOLLOWED_MAX bounds the endpoints a migration tries. */
export const ENDPOINTS_FOLLOWED_MAX = 64;

/** ELECTION_WAIT_ATTEMPTS_MAX bounds how often a read is tried again while no member leads. */
export const ELECTION_WAIT_ATTEMPTS_MAX = 40;
/** ELECTION_WAIT_MS is the pause between those attempts. */
export const ELECTION_WAIT_MS = 250;

/** whileElecting runs a call that only reads, again while no endpoint could answer it (an election, a leader transfer), up to ELECTION_WAIT_ATTEMPTS_MAX times. */
export async function whileElecting<T>(call: () => Promise<T>): Promise<T> {
  let last: unknown;
  for (let attempt = 0; attempt < ELECTION_WAIT_ATTEMPTS_MAX; attempt += 1) {
    try {
      return await call();
    } catch (error) {
      last = error;
      if (!isStrataError(error) || (error.code !== ErrorCode.NOT_LEADER && error.code !== ErrorCode.UNAVAILABLE && error.code !== ErrorCode.NO_LEADER && error.code !== ErrorCode.TIMEOUT)) throw error;
      await new Promise((resolve) => setTimeout(resolve, ELECTION_WAIT_MS));
    }
  }
  throw last;
}

/** clusterOver is the MigrationCluster over gRPC, starting from `endpoints` (host:port). */
export function clusterOver(endpoints: readonly string[]): MigrationCluster {
  if (endpoints.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a migration needs at least one endpoint', { details: { field: 'endpoints' } });
  let known = [...new Set(endpoints)];
  const migration = new MigrationClient(known);
  const integrity = new IntegrityClient();
  let etcd: EtcdClient | undefined;
  const etcdClient = (): EtcdClient => (etcd ??= new EtcdClient({ endpoints: known, timeoutMs: 5_000 }));
  return {
    get endpoints() {
      return known;
    },
    readJournal: () => whileElecting(() => migration.readJournal()),
    writeJournal: (expectedVersion, record) => migration.writeJournal(expectedVersion, record),
    replication: () => whileElecting(() => migration.replication()),
    changeMembers: (change) => migration.changeMembers(change, { timeoutMs: MEMBER_CHANGE_TIMEOUT_MS }),
    transferLeader: (targetId) => migration.transferLeader(targetId, { timeoutMs: TRANSFER_TIMEOUT_MS }),
    check: (timeoutMs) => integrity.check(known, { timeoutMs }),
    alarms: async () => (await etcdClient().alarmList()).map((alarm) => ({ memberId: alarm.memberId.toString(16), alarm: alarm.alarm })),
    followEndpoints: (members) => {
      // The members' own endpoints first (the cluster as it is now), then the others known.
      const urls = members.flatMap((member) => member.clientUrls.map((url) => url.replace(/^http:\/\//, '')));
      const next = [...new Set([...urls, ...known])].slice(0, ENDPOINTS_FOLLOWED_MAX);
      if (next.length === known.length && next.every((endpoint, at) => known[at] === endpoint)) return;
      known = next;
      migration.setEndpoints(known);
      etcd?.close();
      etcd = undefined;
    },
    close: () => {
      migration.close();
      integrity.close();
      etcd?.close();
    },
  };
}

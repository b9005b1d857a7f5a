// `stratakv serve --join CLIENT_URLS`: a new member that joins a running cluster without being
// told its members or token. While it waits it serves no client and no Raft traffic (its peer
// port answers only Join.Waiting, for `stratakv migrate plan`: serve.ts's whileWaiting): every
// JOIN_POLL_MS it asks the cluster (Admin.ClusterInfo, through any of the URLs) whether a
// member with this member's advertised peer URLs has been added — by someone else's MemberAdd,
// usually as a learner — and logs every JOIN_LOG_EVERY_MS that it is still waiting, and for
// which peer URLs. Once listed, it starts as `--initial-cluster-state existing` with
// `--initial-cluster` built from the member list it was answered and that cluster's token.
// The leader reaches it as soon as its peer port is bound: until then the leader's sends fail
// and are retried, as for any member that is down.
//
// A member's states: waiting (not listed; the cluster unreachable is logged and retried, never
// fatal) → joined (listed: what it learned is written to <data-dir>/join.json before the
// member starts) → started. A start that finds join.json (a restart, or a crash after the
// write) starts from it and ignores --join, as etcd ignores --initial-cluster once its data
// dir exists; a data dir that holds member state without it is started as it is. Refused,
// with the reason: a cluster that is not stratakv (no ClusterInfo), peer URLs that belong to
// a removed member (a removed id never returns) or partly to another member, a listed member
// that has started before (its data is not in this data dir: etcd's "member has already been
// bootstrapped"), a cluster whose ids do not derive from its token, and --join-timeout.

import { pauseOrAbort } from '../src/util/clock.ts';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterInfo } from '../src/client/index.ts';
import { ClusterInfoClient } from '../src/client/index.ts';
import { clusterIdFor, formatMemberId, memberIdFor } from '../src/node/index.ts';
import { readJsonStateFile, writeJsonStateFile } from '../src/node/json-state-file.ts';
import type { Logger } from '../src/raft/index.ts';
import { ErrorCode, isStrataError, StrataError } from '../src/util/errors.ts';
import type { InitialClusterMember, ServeOptions } from './serve-flags.ts';

/** JOIN_POLL_MS is how often a waiting member asks the cluster whether it was added. */
export const JOIN_POLL_MS = 500;
/** JOIN_LOG_EVERY_MS is how often a waiting member says that it still waits. */
export const JOIN_LOG_EVERY_MS = 10_000;
/** JOIN_ASK_TIMEOUT_MS bounds one ClusterInfo round over the --join URLs. */
export const JOIN_ASK_TIMEOUT_MS = 2_000;
/** JOIN_STATE_FILE is where a joined member keeps what it learned, inside its data dir. */
export const JOIN_STATE_FILE = 'join.json';
const JOIN_STATE_VERSION = 1;

/** JoinedCluster is what a member learned when the cluster listed it. */
export interface JoinedCluster {
  readonly clusterId: number;
  readonly clusterToken: string;
  readonly memberId: number;
  /** Every member the answer listed (with a peer URL), this one under its --name. */
  readonly initialCluster: readonly InitialClusterMember[];
}

/** JoinContext is what resolveJoin runs with; `ask` and the timings are replaceable for tests. */
export interface JoinContext {
  readonly logger: Logger;
  /** Aborted: stop waiting (resolveJoin answers undefined). */
  readonly signal: AbortSignal;
  /** One ClusterInfo round (default: a ClusterInfoClient over options.join). */
  readonly ask?: (signal: AbortSignal) => Promise<ClusterInfo>;
  readonly pollMs?: number;
  readonly logEveryMs?: number;
  /**
   * Called when the member starts waiting (not on a restart from its data); the function it
   * answers is called when the wait ends, however it ends, before the member starts.
   */
  readonly whileWaiting?: () => Promise<() => Promise<void>>;
}

/**
 * resolveJoin answers the options to start a member with: `options` itself without --join;
 * with --join, the options of an existing member of the cluster that listed this one, once it
 * does (or from join.json on a restart). Undefined when `context.signal` aborted the wait.
 * Refusals (see the file comment) are StrataErrors.
 */
export async function resolveJoin(options: ServeOptions, context: JoinContext): Promise<ServeOptions | undefined> {
  if (options.join.length === 0) return options;
  const { logger } = context;
  const recorded = readJoinState(options.dataDir);
  if (recorded !== undefined) {
    logger.info('--join ignored: the data dir holds this member, which joined before; starting from its data', {
      dataDir: options.dataDir,
      cluster: formatMemberId(recorded.clusterId),
      member: formatMemberId(recorded.memberId),
    });
    return joinedOptions(options, recorded);
  }
  if (existsSync(join(options.dataDir, 'member'))) {
    logger.warn('--join ignored: the data dir already holds member state; starting from it as an existing member', { dataDir: options.dataDir });
    return options;
  }
  const endWaiting = await context.whileWaiting?.();
  let joined: JoinedCluster | undefined;
  try {
    joined = await waitUntilAdded(options, context);
  } finally {
    await endWaiting?.();
  }
  if (joined === undefined) return undefined;
  writeJoinState(options.dataDir, joined, options.join);
  return joinedOptions(options, joined);
}

function joinedOptions(options: ServeOptions, joined: JoinedCluster): ServeOptions {
  return { ...options, initialCluster: joined.initialCluster, initialClusterState: 'existing', initialClusterToken: joined.clusterToken };
}

async function waitUntilAdded(options: ServeOptions, context: JoinContext): Promise<JoinedCluster | undefined> {
  const { logger, signal } = context;
  const pollMs = context.pollMs ?? JOIN_POLL_MS;
  const logEveryMs = context.logEveryMs ?? JOIN_LOG_EVERY_MS;
  const client = context.ask === undefined ? new ClusterInfoClient({ endpoints: options.join, timeoutMs: JOIN_ASK_TIMEOUT_MS }) : undefined;
  const ask = context.ask ?? ((abort: AbortSignal) => (client as ClusterInfoClient).clusterInfo({ signal: abort }));
  const peerUrls = options.initialAdvertisePeerUrls;
  const startedMs = Date.now();
  let loggedMs = Number.NEGATIVE_INFINITY;
  try {
    // Bounded by --join-timeout, or by the operator (a stop signal) when it is 0.
    for (;;) {
      if (signal.aborted) return undefined;
      if (options.joinTimeoutMs > 0 && Date.now() - startedMs >= options.joinTimeoutMs) {
        throw new StrataError(ErrorCode.TIMEOUT, `--join: not added to the cluster at ${options.join.join(',')} within --join-timeout ${options.joinTimeoutMs} ms; add it with: ${addHint(options)}`, {
          details: { peerUrls: [...peerUrls] },
        });
      }
      let info: ClusterInfo;
      try {
        info = await ask(signal);
      } catch (error) {
        if (signal.aborted) return undefined;
        if (isStrataError(error, ErrorCode.UNIMPLEMENTED)) {
          throw new StrataError(
            ErrorCode.UNIMPLEMENTED,
            `--join: ${error.message}; --join needs a stratakv cluster (to join etcd, give --initial-cluster and --initial-cluster-state existing)`,
            { cause: error },
          );
        }
        if (!isStrataError(error)) throw error;
        if (Date.now() - loggedMs >= logEveryMs) {
          loggedMs = Date.now();
          logger.warn('--join: the cluster does not answer; asking again', { endpoints: [...options.join], reason: `${error.message} (${error.code})` });
        }
        await pauseOrAbort(pollMs, signal);
        continue;
      }
      const joined = planJoin(info, { name: options.name, peerUrls });
      if (joined !== undefined) {
        logger.info('--join: added to the cluster; starting as an existing member', {
          cluster: formatMemberId(joined.clusterId),
          member: formatMemberId(joined.memberId),
          members: joined.initialCluster.length,
          askedAt: info.endpoint,
        });
        return joined;
      }
      if (Date.now() - loggedMs >= logEveryMs) {
        loggedMs = Date.now();
        logger.info('--join: waiting to be added to the cluster (serving nothing until then)', {
          cluster: formatMemberId(info.clusterId),
          peerUrls: [...peerUrls],
          endpoints: [...options.join],
          add: addHint(options),
        });
      }
      await pauseOrAbort(pollMs, signal);
    }
  } finally {
    client?.close();
  }
}

/**
 * planJoin reads one ClusterInfo answer for the member `self` (its --name and advertised peer
 * URLs): undefined while the cluster does not list it, what it learned once it does, and a
 * StrataError when it must not join (see the file comment).
 */
export function planJoin(info: ClusterInfo, self: { readonly name: string; readonly peerUrls: readonly string[] }): JoinedCluster | undefined {
  const cluster = formatMemberId(info.clusterId);
  if (clusterIdFor(info.clusterToken) !== info.clusterId) {
    throw new StrataError(
      ErrorCode.CLUSTER_ID_MISMATCH,
      `--join: cluster ${cluster} does not derive its id from the token its member ${formatMemberId(info.memberId)} runs with (restored from a snapshot with another --initial-cluster-token?); members joining it cannot derive its ids`,
      { details: { clusterId: cluster } },
    );
  }
  const memberId = memberIdFor(self.peerUrls, info.clusterToken);
  if (info.removedIds.includes(memberId)) {
    throw new StrataError(
      ErrorCode.MEMBER_REMOVED,
      `--join: member ${formatMemberId(memberId)} (peer URLs ${self.peerUrls.join(',')}) was removed from cluster ${cluster}, and a removed member never returns: start this member with new peer URLs and add those`,
      { details: { memberId: formatMemberId(memberId) } },
    );
  }
  const own = info.members.find((member) => sameUrls(member.peerUrls, self.peerUrls));
  const sharing = info.members.find((member) => member !== own && member.peerUrls.some((url) => self.peerUrls.includes(url)));
  if (sharing !== undefined) {
    throw new StrataError(
      ErrorCode.PEER_URL_EXISTS,
      `--join: member ${formatMemberId(sharing.id)} of cluster ${cluster} has peer URLs ${sharing.peerUrls.join(',')}, which share a URL with this member's ${self.peerUrls.join(',')}`,
      { details: { memberId: formatMemberId(sharing.id) } },
    );
  }
  if (own === undefined) return undefined;
  if (own.id !== memberId) {
    throw new StrataError(
      ErrorCode.CLUSTER_ID_MISMATCH,
      `--join: cluster ${cluster} lists these peer URLs as member ${formatMemberId(own.id)}, but in it they derive member ${formatMemberId(memberId)}: its ids do not derive from its token`,
      { details: { memberId: formatMemberId(own.id) } },
    );
  }
  if (own.clientUrls.length > 0) {
    throw new StrataError(
      ErrorCode.INVALID_ARGUMENT,
      `--join: member ${formatMemberId(own.id)} of cluster ${cluster} has already started once (it published client URLs ${own.clientUrls.join(',')}), and its data is not in this data dir: ` +
        'start it on its own data dir, or remove it and add it again under new peer URLs',
      { details: { memberId: formatMemberId(own.id) } },
    );
  }
  // Members not started yet keep their empty name (the member table shows them as unstarted
  // until they publish theirs); a member without peer URLs has no id to derive and is left out.
  const initialCluster = info.members
    .filter((member) => member.peerUrls.length > 0)
    .map((member) => (member.id === own.id ? { name: self.name, peerUrls: [...self.peerUrls] } : { name: member.name, peerUrls: [...member.peerUrls] }));
  return { clusterId: info.clusterId, clusterToken: info.clusterToken, memberId, initialCluster };
}

function sameUrls(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
}

function addHint(options: ServeOptions): string {
  return `etcdctl --endpoints=${options.join.join(',')} member add ${options.name} --learner --peer-urls=${options.initialAdvertisePeerUrls.join(',')}`;
}


/** joinStatePath is where a data dir keeps what its member learned when it joined. */
export function joinStatePath(dataDir: string): string {
  return join(dataDir, JOIN_STATE_FILE);
}

/** readJoinState reads join.json; undefined when the member never joined with --join. */
export function readJoinState(dataDir: string): JoinedCluster | undefined {
  const path = joinStatePath(dataDir);
  const value = readJsonStateFile(path);
  if (value === undefined) return undefined;
  const state = value as Partial<Record<keyof JoinedCluster | 'version', unknown>> | null;
  const isId = (id: unknown): id is number => typeof id === 'number' && Number.isSafeInteger(id) && id > 0;
  const isMember = (member: unknown): member is InitialClusterMember => {
    const candidate = member as Partial<Record<keyof InitialClusterMember, unknown>> | null;
    return (
      candidate !== null &&
      typeof candidate === 'object' &&
      typeof candidate.name === 'string' &&
      Array.isArray(candidate.peerUrls) &&
      candidate.peerUrls.length > 0 &&
      candidate.peerUrls.every((url) => typeof url === 'string')
    );
  };
  if (
    state === null ||
    typeof state !== 'object' ||
    state.version !== JOIN_STATE_VERSION ||
    !isId(state.clusterId) ||
    !isId(state.memberId) ||
    typeof state.clusterToken !== 'string' ||
    state.clusterToken === '' ||
    !Array.isArray(state.initialCluster) ||
    !state.initialCluster.every(isMember)
  ) {
    throw new StrataError(ErrorCode.CORRUPTION, `${path} does not describe a joined cluster (version ${JOIN_STATE_VERSION}: clusterId, clusterToken, memberId, initialCluster)`, { details: { path } });
  }
  return { clusterId: state.clusterId, clusterToken: state.clusterToken, memberId: state.memberId, initialCluster: state.initialCluster };
}

/** writeJoinState writes join.json durably: temporary file, fsync, rename, directory fsync. */
export function writeJoinState(dataDir: string, joined: JoinedCluster, joinedVia: readonly string[]): void {
  writeJsonStateFile(joinStatePath(dataDir), { version: JOIN_STATE_VERSION, ...joined, joinedVia });
}

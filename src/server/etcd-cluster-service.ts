// etcdserverpb.Cluster: MemberList, MemberAdd, MemberRemove and MemberPromote over an
// EtcdBackend; MemberUpdate answers UNIMPLEMENTED.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';

import { ErrorCode, StrataError } from '../util/errors.ts';
import type { EtcdBackend, Member } from './backend.ts';
import type { WireMember, WireMemberAddRequest, WireMemberIdRequest, WireResponseHeader } from './etcd-wire.ts';
import type { EtcdServerLogger } from './unary-call.ts';
import { unaryCall } from './unary-call.ts';

/** MEMBER_PEER_URLS_MAX bounds the peer URLs one MemberAdd may name. */
export const MEMBER_PEER_URLS_MAX = 16;

/** createClusterService implements etcdserverpb.Cluster. */
export function createClusterService(backend: EtcdBackend, logger: EtcdServerLogger | undefined): UntypedServiceImplementation {
  const hasLeader = (): boolean => backend.hasLeader();
  // etcd's cluster answers carry no revision: they do not touch the key-value store.
  const header = (): WireResponseHeader => {
    const info = backend.header();
    return { cluster_id: info.clusterId, member_id: info.memberId, revision: 0, raft_term: info.raftTerm };
  };

  const memberList = async (_wire: unknown, signal: AbortSignal) => {
    const answer = await backend.memberList({ signal });
    return { header: header(), members: encodeMembers(answer.members) };
  };

  const memberAdd = async (wire: WireMemberAddRequest, signal: AbortSignal) => {
    const peerUrls = wire.peerURLs ?? [];
    checkPeerUrls(peerUrls);
    const answer = await backend.memberAdd({ peerUrls, isLearner: wire.isLearner === true }, { signal });
    return { header: header(), member: encodeMember(answer.member), members: encodeMembers(answer.members) };
  };

  const memberRemove = async (wire: WireMemberIdRequest, signal: AbortSignal) => {
    const answer = await backend.memberRemove(wire.ID ?? 0, { signal });
    return { header: header(), members: encodeMembers(answer.members) };
  };

  const memberPromote = async (wire: WireMemberIdRequest, signal: AbortSignal) => {
    const answer = await backend.memberPromote(wire.ID ?? 0, { signal });
    return { header: header(), members: encodeMembers(answer.members) };
  };

  const memberUpdate = (): Promise<never> =>
    Promise.reject(new StrataError(ErrorCode.UNIMPLEMENTED, 'member update: changing a member\'s peer URLs is not supported by stratakv yet (remove the member and add it again)'));

  return {
    MemberList: unaryCall('Cluster.MemberList', memberList, logger, hasLeader),
    MemberAdd: unaryCall('Cluster.MemberAdd', memberAdd, logger, hasLeader),
    MemberRemove: unaryCall('Cluster.MemberRemove', memberRemove, logger, hasLeader),
    MemberPromote: unaryCall('Cluster.MemberPromote', memberPromote, logger, hasLeader),
    MemberUpdate: unaryCall('Cluster.MemberUpdate', memberUpdate, logger, hasLeader),
  };
}

/** encodeMembers is a member list as etcd answers it: sorted by id. */
export function encodeMembers(members: readonly Member[]): WireMember[] {
  return members.map(encodeMember).sort((a, b) => a.ID - b.ID);
}

/** encodeMember is etcdserverpb.Member. */
export function encodeMember(member: Member): WireMember {
  return { ID: member.id, name: member.name, peerURLs: member.peerUrls, clientURLs: member.clientUrls, isLearner: member.isLearner };
}

// checkPeerUrls is etcd's types.NewURLs check: each URL is http(s)://host:port with nothing
// else; a failure is etcd's ErrGRPCMemberBadURLs.
function checkPeerUrls(peerUrls: readonly string[]): void {
  const bad = (why: string): StrataError =>
    new StrataError(ErrorCode.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid', { details: { peerUrls, why } });
  if (peerUrls.length === 0) throw bad('no peer URLs');
  if (peerUrls.length > MEMBER_PEER_URLS_MAX) throw bad(`more than ${MEMBER_PEER_URLS_MAX} peer URLs`);
  for (const text of peerUrls) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw bad(`${text} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(`${text}: scheme must be http or https`);
    if (url.port === '' || url.hostname === '') throw bad(`${text}: needs host:port`);
    if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') throw bad(`${text}: must not have a path`);
  }
}

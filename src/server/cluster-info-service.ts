// Admin.ClusterInfo (proto/stratakv/admin.proto): the cluster as the member asked has applied
// it — its id and token, the leader it knows, the members with their zones, the ids removed —
// answered from the member's own table without a Raft round (serializable, as etcd's
// MemberList; it may lag the leader by the entries it has not applied yet). Any member
// answers, a learner too, so a member started with `stratakv serve --join` can ask whichever
// of the cluster's client URLs it was given whether it has been added, and under which token.
// Errors travel as the other admin methods' do (the catalogue code in `stratakv-code`).

import type { handleUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';

import type { MemberRecord } from '../node/index.ts';
import { unary } from './diff-service.ts';
import type { EtcdServerLogger } from './unary-call.ts';

/** ClusterInfoNode is what the service needs of a member (RaftNode has it). */
export interface ClusterInfoNode {
  readonly memberId: number;
  readonly clusterId: number;
  /** The --initial-cluster-token the member runs with (member ids derive from it). */
  readonly clusterToken: string;
  leaderId(): number;
  members(): readonly MemberRecord[];
  removedMemberIds(): readonly number[];
}

/** WireClusterInfoMember is admin.proto's ClusterInfoMember. */
export interface WireClusterInfoMember {
  id: number;
  name: string;
  peer_urls: string[];
  client_urls: string[];
  is_learner: boolean;
  zone: string;
}

/** toWireMember turns a member record into admin.proto's ClusterInfoMember. */
export function toWireMember(member: MemberRecord): WireClusterInfoMember {
  return { id: member.id, name: member.name, peer_urls: [...member.peerUrls], client_urls: [...member.clientUrls], is_learner: member.isLearner, zone: member.zone };
}

/** WireClusterInfoResponse is admin.proto's ClusterInfoResponse. */
export interface WireClusterInfoResponse {
  cluster_id: number;
  cluster_token: string;
  leader_id: number;
  members: WireClusterInfoMember[];
  member_id: number;
  removed_ids: number[];
}

/** toWireClusterInfo is the node's answer as a ClusterInfoResponse. */
export function toWireClusterInfo(node: ClusterInfoNode): WireClusterInfoResponse {
  return {
    cluster_id: node.clusterId,
    cluster_token: node.clusterToken,
    leader_id: node.leaderId(),
    members: node.members().map(toWireMember),
    member_id: node.memberId,
    removed_ids: [...node.removedMemberIds()],
  };
}

/** createClusterInfoService implements ClusterInfo over `node`. */
export function createClusterInfoService(options: { readonly node: ClusterInfoNode; readonly logger?: EtcdServerLogger | undefined }): UntypedServiceImplementation {
  const { node, logger } = options;
  const clusterInfo: handleUnaryCall<object, WireClusterInfoResponse> = unary('Admin.ClusterInfo', logger, () => Promise.resolve(toWireClusterInfo(node)));
  return { ClusterInfo: clusterInfo };
}

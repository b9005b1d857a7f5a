// The shapes of etcd's messages as the services see them after @grpc/proto-loader decodes
// them with the options in proto-loading.ts: field names as in the .proto (keepCase), int64
// and uint64 as numbers, bytes as Buffer, enums as numbers, and absent fields undefined
// (defaults: false, so nothing is filled in per request). Only the fields stratakv reads or
// writes are listed; the .proto files in proto/etcd are the full contract.
// The exception is a key's lease id (etcd's int64 ids are above 2^53): a bigint, read and
// written exactly by the hand-written codec (etcd-kv-codec.ts), set exactly into a Txn's
// compares after protobufjs decodes it (proto-loading.ts), and given to protobufjs as a bigint
// when it encodes (its fromObject reads one exactly, through Long.fromValue).

/** WireResponseHeader is etcdserverpb.ResponseHeader. */
export interface WireResponseHeader {
  cluster_id: number;
  member_id: number;
  revision: number;
  raft_term: number;
}

/** WireKeyValue is mvccpb.KeyValue. */
export interface WireKeyValue {
  key: Uint8Array;
  create_revision: number;
  mod_revision: number;
  version: number;
  value: Uint8Array;
  lease: bigint;
}

/** WireRangeRequest is etcdserverpb.RangeRequest. */
export interface WireRangeRequest {
  key?: Uint8Array;
  range_end?: Uint8Array;
  limit?: number;
  revision?: number;
  sort_order?: number;
  sort_target?: number;
  serializable?: boolean;
  keys_only?: boolean;
  count_only?: boolean;
  min_mod_revision?: number;
  max_mod_revision?: number;
  min_create_revision?: number;
  max_create_revision?: number;
}

/** WirePutRequest is etcdserverpb.PutRequest. */
export interface WirePutRequest {
  key?: Uint8Array;
  value?: Uint8Array;
  /**
   * A bigint from the hand-written codec; a number inside a Txn (protobufjs, rounded: only
   * whether it is 0 matters, and no other int64 rounds to 0).
   */
  lease?: bigint | number;
  prev_kv?: boolean;
  ignore_value?: boolean;
  ignore_lease?: boolean;
}

/** WireDeleteRangeRequest is etcdserverpb.DeleteRangeRequest. */
export interface WireDeleteRangeRequest {
  key?: Uint8Array;
  range_end?: Uint8Array;
  prev_kv?: boolean;
}

/** WireRequestOp is etcdserverpb.RequestOp (a oneof: at most one field is set). */
export interface WireRequestOp {
  request_range?: WireRangeRequest | null;
  request_put?: WirePutRequest | null;
  request_delete_range?: WireDeleteRangeRequest | null;
  request_txn?: WireTxnRequest | null;
}

/** WireCompare is etcdserverpb.Compare. */
export interface WireCompare {
  result?: number;
  target?: number;
  key?: Uint8Array;
  version?: number;
  create_revision?: number;
  mod_revision?: number;
  value?: Uint8Array;
  /** Exact: the Txn deserializer replaces protobufjs's rounded number (proto-loading.ts). */
  lease?: bigint;
  range_end?: Uint8Array;
}

/** WireTxnRequest is etcdserverpb.TxnRequest. */
export interface WireTxnRequest {
  compare?: WireCompare[];
  success?: WireRequestOp[];
  failure?: WireRequestOp[];
}

/** WireOperationHeader is the header of a response inside a Txn: etcd sets only the revision. */
export type WireOperationHeader = WireResponseHeader | { revision: number };

/** WireRangeResponse is etcdserverpb.RangeResponse. */
export interface WireRangeResponse {
  header: WireOperationHeader;
  kvs: WireKeyValue[];
  more: boolean;
  count: number;
}

/** WirePutResponse is etcdserverpb.PutResponse. */
export interface WirePutResponse {
  header: WireOperationHeader;
  prev_kv?: WireKeyValue;
}

/** WireDeleteRangeResponse is etcdserverpb.DeleteRangeResponse. */
export interface WireDeleteRangeResponse {
  header: WireOperationHeader;
  deleted: number;
  prev_kvs: WireKeyValue[];
}

/** WireResponseOp is etcdserverpb.ResponseOp. */
export type WireResponseOp =
  | { response_range: WireRangeResponse }
  | { response_put: WirePutResponse }
  | { response_delete_range: WireDeleteRangeResponse };

/** WireTxnResponse is etcdserverpb.TxnResponse. */
export interface WireTxnResponse {
  header: WireResponseHeader;
  succeeded: boolean;
  responses: WireResponseOp[];
}

/** WireMember is etcdserverpb.Member. */
export interface WireMember {
  ID: number;
  name: string;
  peerURLs: readonly string[];
  clientURLs: readonly string[];
  isLearner: boolean;
}

/** WireMemberAddRequest is etcdserverpb.MemberAddRequest. */
export interface WireMemberAddRequest {
  peerURLs?: string[];
  isLearner?: boolean;
}

/** WireMemberIdRequest is MemberRemoveRequest, MemberPromoteRequest and MemberUpdateRequest's id. */
export interface WireMemberIdRequest {
  ID?: number;
}

/** WireMoveLeaderRequest is etcdserverpb.MoveLeaderRequest. */
export interface WireMoveLeaderRequest {
  targetID?: number;
}

/** WireAlarmType is etcdserverpb.AlarmType. */
export const WireAlarmType = { NONE: 0, NOSPACE: 1, CORRUPT: 2 } as const;

/** WireAlarmAction is etcdserverpb.AlarmRequest.AlarmAction. */
export const WireAlarmAction = { GET: 0, ACTIVATE: 1, DEACTIVATE: 2 } as const;

/** WireAlarmRequest is etcdserverpb.AlarmRequest (enums as numbers; absent fields are 0). */
export interface WireAlarmRequest {
  action?: number;
  memberID?: number;
  alarm?: number;
}

/** WireAlarmMember is etcdserverpb.AlarmMember. */
export interface WireAlarmMember {
  memberID: number;
  alarm: number;
}

/** WireAlarmResponse is etcdserverpb.AlarmResponse. */
export interface WireAlarmResponse {
  header: WireResponseHeader;
  alarms: WireAlarmMember[];
}

/** WireHashKVRequest is etcdserverpb.HashKVRequest. */
export interface WireHashKVRequest {
  revision?: string | number;
}

/** WireHashKVResponse is etcdserverpb.HashKVResponse. */
export interface WireHashKVResponse {
  header: WireResponseHeader;
  hash: number;
  compactRevision: number;
}

/** WireDefragmentResponse is etcdserverpb.DefragmentResponse. */
export interface WireDefragmentResponse {
  header: WireResponseHeader;
}

/** WireStatusResponse is etcdserverpb.StatusResponse. */
export interface WireStatusResponse {
  header: WireResponseHeader;
  version: string;
  dbSize: number;
  leader: number;
  raftIndex: number;
  raftTerm: number;
  raftAppliedIndex: number;
  errors: readonly string[];
  dbSizeInUse: number;
  isLearner: boolean;
}

/** WireSnapshotResponse is etcdserverpb.SnapshotResponse (the header only on a stream's first message). */
export interface WireSnapshotResponse {
  header?: WireResponseHeader;
  remaining_bytes: number;
  blob: Uint8Array;
  version: string;
}

/** RangeSortOrder is etcdserverpb.RangeRequest.SortOrder. */
export const RangeSortOrder = { NONE: 0, ASCEND: 1, DESCEND: 2 } as const;

/** RangeSortTarget is etcdserverpb.RangeRequest.SortTarget. */
export const RangeSortTarget = { KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4 } as const;

/** WireCompareResult is etcdserverpb.Compare.CompareResult. */
export const WireCompareResult = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;

/** WireCompareTarget is etcdserverpb.Compare.CompareTarget. */
export const WireCompareTarget = { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } as const;

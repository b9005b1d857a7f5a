// The KV requests the state machine applies and the answers it gives, with etcd's semantics
// (etcdserverpb's Put/Range/DeleteRange/Txn, without leases, sorting or history for now).
// Keys and values are bytes. Revisions, versions and counts are safe integers; a key's lease
// id is a bigint (etcd's ids are int64 and nearly always above 2^53: the member id fills the
// top bits).

/** LEASE_ID_MAX is the largest lease id: etcd's are int64 and positive, so [0, 2^63); 0 is none. */
export const LEASE_ID_MAX = 2n ** 63n - 1n;

/** KeyValue is one stored pair with etcd's per-key counters. */
export interface KeyValue {
  readonly key: Uint8Array;
  /** Empty for keys-only reads. */
  readonly value: Uint8Array;
  /** The revision of the Put that created the key (since its last delete). */
  readonly createRevision: number;
  /** The revision of the last Put to the key. */
  readonly modRevision: number;
  /** How many Puts the key has had since it was created; a delete resets it. */
  readonly version: number;
  /**
   * The key's lease id, 0n for none (0 to LEASE_ID_MAX). stratakv grants no leases yet: only a
   * mirror put (src/migrate/copy) sets one, the source cluster's id, kept exactly.
   */
  readonly lease: bigint;
}

/** PutRequest stores `value` under `key`. */
export interface PutRequest {
  readonly type: 'put';
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  /** Return the pair as it was before the Put. */
  readonly prevKv?: boolean;
}

/**
 * RangeRequest reads [key, rangeEnd). As in etcd: an empty rangeEnd reads the one key; a
 * rangeEnd of a single zero byte reads every key >= key (and key "\0" with it reads all);
 * a prefix range is [prefix, prefix with its last byte incremented).
 */
export interface RangeRequest {
  readonly type: 'range';
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array;
  /** The most keys to return; 0 means no limit. `count` still counts them all. */
  readonly limit?: number;
  /** Read at this revision; 0 means the current one. Older ones are compacted (no history yet). */
  readonly revision?: number;
  /** Return keys without values. */
  readonly keysOnly?: boolean;
  /** Return only the count. */
  readonly countOnly?: boolean;
  /** A serializable read may be answered from this replica's applied state. */
  readonly serializable?: boolean;
}

/** DeleteRangeRequest deletes [key, rangeEnd) with RangeRequest's conventions. */
export interface DeleteRangeRequest {
  readonly type: 'deleteRange';
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array;
  /** Return the deleted pairs. */
  readonly prevKv?: boolean;
}

/** CompareTarget is the field of a key a Txn compare looks at. */
export type CompareTarget = 'value' | 'version' | 'createRevision' | 'modRevision' | 'lease';
/** CompareResult is how a Txn compare relates the field to its operand. */
export type CompareResult = 'equal' | 'notEqual' | 'less' | 'greater';

/**
 * Compare is one condition of a Txn. Over a range (rangeEnd set) every key must satisfy it.
 * On a missing key, numeric targets compare against 0 and a value compare is always false.
 * The counters' operand is a safe integer (`number`); the lease's is etcd's int64 exactly
 * (`lease`, a bigint in [-2^63, 2^63): etcd compares any int64, though ids are positive).
 */
export type Compare =
  | { readonly target: 'value'; readonly result: CompareResult; readonly key: Uint8Array; readonly rangeEnd?: Uint8Array; readonly value: Uint8Array }
  | {
      readonly target: Exclude<CompareTarget, 'value' | 'lease'>;
      readonly result: CompareResult;
      readonly key: Uint8Array;
      readonly rangeEnd?: Uint8Array;
      readonly number: number;
    }
  | { readonly target: 'lease'; readonly result: CompareResult; readonly key: Uint8Array; readonly rangeEnd?: Uint8Array; readonly lease: bigint };

/** TxnOperation is one request inside a Txn branch (nested Txns are not supported). */
export type TxnOperation = PutRequest | RangeRequest | DeleteRangeRequest;

/** TxnRequest runs `success` if every compare holds, else `failure`, as one revision. */
export interface TxnRequest {
  readonly type: 'txn';
  readonly compare: readonly Compare[];
  readonly success: readonly TxnOperation[];
  readonly failure: readonly TxnOperation[];
}

/**
 * MirrorPut sets a key exactly as the source cluster holds it: value and counters are the
 * source's, not computed here (src/migrate/copy keeps revisions across clusters).
 */
export interface MirrorPut {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The source's lease id (0n: none; at most LEASE_ID_MAX), kept exactly: stratakv has no Lease API yet. */
  readonly lease: bigint;
}

/**
 * MirrorRequest is proposed only by the cross-cluster copier (src/migrate/copy), never by a
 * client of the KV API. While the state machine holds a mirror state (bytes the copier owns:
 * its phase and source position), client Puts, DeleteRanges and Txns with a write in either
 * branch are refused with MIRROR_READ_ONLY, deterministically at apply. Each request is a
 * compare-and-set on that state (MIRROR_CONFLICT when it differs), so a copier killed with a
 * proposal in flight cannot apply a batch twice after it resumes.
 *
 * - mirrorBegin: become a mirror. Refused if a mirror state exists, if `requireEmpty` and the
 *   store holds any key or is past INITIAL_REVISION, or if `requireRevision` is set and differs
 *   from the current revision (a source fenced at the switch: nothing written since).
 * - mirrorApply: with the state equal to `expectState`: delete `deletes`, set `puts` exactly,
 *   move the revision to `revision` (never backwards: refused with MIRROR_CONFLICT if lower,
 *   the store being ahead of the copier), and store `state`, all in one atomic step. Every
 *   put's modRevision and createRevision are at most `revision`.
 * - mirrorEnd: with the state equal to `expectState`, drop it: the cluster takes writes again,
 *   continuing from the revision reached.
 * - mirrorReplay: with the state equal to `expectState`: apply `commands` — each the data of one
 *   Raft entry of a stratakv source that carried a KV command, byte for byte — in order, each
 *   exactly as the source applied it (validated with this store's limits, then executed; a
 *   refusal is a no-op as it was there), except that a mirror does not refuse them; then store
 *   `state`, all in one atomic step. The revision moves once per command that wrote, as on the
 *   source, so from the same starting state the store reaches the source's revisions, counters
 *   and state digest exactly (apply is deterministic). Replaying rather than shipping the
 *   effects is what makes them equal; it assumes this store's limits are at least the
 *   source's (a command refused on one side only would diverge: the copier checks the limits)
 *   and that the source was not a mirror over the commands replayed (a mirror request among
 *   them is refused INVALID_ARGUMENT). At most MIRROR_REPLAY_COMMANDS_MAX commands.
 */
export type MirrorRequest =
  | { readonly type: 'mirrorBegin'; readonly state: Uint8Array; readonly requireEmpty: boolean; readonly requireRevision?: number }
  | {
      readonly type: 'mirrorApply';
      readonly expectState: Uint8Array;
      readonly state: Uint8Array;
      readonly revision: number;
      readonly puts: readonly MirrorPut[];
      readonly deletes: readonly Uint8Array[];
    }
  | { readonly type: 'mirrorEnd'; readonly expectState: Uint8Array }
  | { readonly type: 'mirrorReplay'; readonly expectState: Uint8Array; readonly state: Uint8Array; readonly commands: readonly Uint8Array[] };

/** MirrorResponse answers a MirrorRequest: the revision after it and the mirror state now (undefined after mirrorEnd). */
export interface MirrorResponse {
  readonly type: MirrorRequest['type'];
  readonly revision: number;
  readonly state: Uint8Array | undefined;
  /**
   * The Raft index of the entry that applied the request: what the state and the revision go
   * with in this cluster's log. KvStateMachine.apply always sets it; it is absent only in
   * answers made elsewhere (a copier's stand-in target).
   */
  readonly index?: number;
}

/**
 * MIRROR_REPLAY_COMMANDS_MAX bounds the commands of one mirrorReplay (the request's encoded
 * size is bounded too, by the request byte limit, as every request's).
 */
export const MIRROR_REPLAY_COMMANDS_MAX = 10_000;

/** MIRROR_STATE_BYTES_MAX bounds a mirror state (it travels in every snapshot's footer: see MIRROR_STATE_FOOTER_BYTES_MAX). */
export const MIRROR_STATE_BYTES_MAX = 8 * 1024;

/**
 * MIRROR_STATE_FOOTER_BYTES_MAX is what a snapshot's footer keeps for the mirror state: the
 * footer is one 4096-byte block that also holds the configuration and the member table (with
 * a migration journal of up to 2 KiB deflated). A state longer than this is stored deflated,
 * and one that does not deflate to this is refused before it is proposed (INVALID_ARGUMENT,
 * field `state`), as the journal is: accepted, it would make every later snapshot fail, so the
 * log would never be compacted again. Not checked again at apply: deflate's output may differ
 * between zlib builds, and apply must not.
 */
export const MIRROR_STATE_FOOTER_BYTES_MAX = 1024;

/** KvRequest is anything the state machine applies. */
export type KvRequest = PutRequest | RangeRequest | DeleteRangeRequest | TxnRequest | MirrorRequest;

/** KvCommand is what a Raft entry carries: a request and the id its proposer waits on. */
export interface KvCommand {
  readonly id: number;
  readonly request: KvRequest;
}

/** PutResponse answers a Put. */
export interface PutResponse {
  readonly type: 'put';
  readonly revision: number;
  readonly prevKv?: KeyValue;
}

/** RangeResponse answers a Range. */
export interface RangeResponse {
  readonly type: 'range';
  readonly revision: number;
  readonly kvs: readonly KeyValue[];
  /** Whether keys beyond `limit` exist. */
  readonly more: boolean;
  /** How many keys the range holds (ignoring limit). */
  readonly count: number;
}

/** DeleteRangeResponse answers a DeleteRange. */
export interface DeleteRangeResponse {
  readonly type: 'deleteRange';
  readonly revision: number;
  readonly deleted: number;
  readonly prevKvs: readonly KeyValue[];
}

/** TxnOperationResponse is the answer to one TxnOperation. */
export type TxnOperationResponse = PutResponse | RangeResponse | DeleteRangeResponse;

/** TxnResponse answers a Txn. */
export interface TxnResponse {
  readonly type: 'txn';
  readonly revision: number;
  readonly succeeded: boolean;
  readonly responses: readonly TxnOperationResponse[];
}

/** KvResponse is any answer. */
export type KvResponse = PutResponse | RangeResponse | DeleteRangeResponse | TxnResponse | MirrorResponse;

/** KvLimits bounds requests; the defaults are etcd's. */
export interface KvLimits {
  /** The largest encoded request (etcd --max-request-bytes, 1.5 MiB). */
  readonly requestBytesMax: number;
  /** The largest key. */
  readonly keyBytesMax: number;
  /** The largest value. */
  readonly valueBytesMax: number;
  /** The most compares, or operations in one branch, of a Txn (etcd --max-txn-ops, 128). */
  readonly txnOperationsMax: number;
}

/** DEFAULT_KV_LIMITS are etcd's default limits. */
export const DEFAULT_KV_LIMITS: KvLimits = {
  requestBytesMax: 1.5 * 1024 * 1024,
  keyBytesMax: 1.5 * 1024 * 1024,
  valueBytesMax: 1.5 * 1024 * 1024,
  txnOperationsMax: 128,
};

// EtcdClient speaks etcd's v3 gRPC API to a list of endpoints — real etcd or stratakv. Each
// call has one deadline (the client's timeout, or the caller's signal); inside it, the call is
// retried on another endpoint only where that is safe (retry-policy.ts) with bounded attempts
// and backoff. Calls that must reach the leader (MoveLeader) find it with Status, as etcdctl
// does. Errors are StrataErrors with the catalogue's codes and the endpoint that answered.
//
// With autoSyncIntervalMs the client follows the cluster's members as etcd clientv3's
// AutoSyncInterval does: every interval, and when a call finds its endpoints unavailable or
// hears from a member that it was removed or is stopping, it asks MemberList and replaces its
// endpoints with the client URLs of the started voters. A live migration that replaces every
// member therefore moves clients that were given only the old endpoints.
//
// Connections: one gRPC channel per endpoint (#connections). A call holds a lease on every
// channel it uses until it settles. A channel is in one of two states:
//   listed   — its endpoint is in the picker's list; it stays open until close().
//   retiring — its endpoint is no longer listed (or never was: status() of any endpoint);
//              it is closed when its last lease is released, or by the next list change.
// Invariant: a channel with leases is open (until close()); an unlisted channel without
// leases is closed and out of the map.

import { createHash } from 'node:crypto';

import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { fromGrpcStatus } from '../util/etcd-errors.ts';
import type { DeleteRangeResponse, PutResponse, RangeResponse, TxnRequest, TxnResponse } from '../storage/kv-types.ts';
import { ENDPOINTS_MAX, EndpointPicker, normalizeEndpoint } from './endpoint-picker.ts';
import { ATTEMPTS_MAX, backoffMs, isMirrorRefusal, isRetryable, MIRROR_READER_METADATA, mirrorBackoffMs, type CallKind } from './retry-policy.ts';
import {
  decodeAlarms,
  decodeDeleteRange,
  decodeMember,
  decodeMembers,
  decodePut,
  decodeRange,
  decodeSnapshotResponse,
  decodeStatus,
  decodeTxn,
  encodeDeleteRange,
  encodePut,
  encodeRange,
  encodeTxn,
  loadEtcdServices,
  prefixEnd,
  toBuffer,
  type Bytes,
  type ClusterAlarm,
  type ClusterMember,
  type EndpointStatus,
  type EtcdServices,
  type MemberId,
  type ResponseHeader,
  type WithHeader,
} from './wire.ts';
import { checkWatchOptions, EtcdWatchStream, type WatchOptions, type WatchStream } from './watch-stream.ts';

/** DEFAULT_TIMEOUT_MS is a call's deadline when neither the client nor the call sets one (etcdctl's 5s). */
export const DEFAULT_TIMEOUT_MS = 5000;
/** REQUEST_BYTES_MAX is the largest request the client sends (etcd's client default, 2 MiB). */
export const REQUEST_BYTES_MAX = 2 * 1024 * 1024;
/** RESPONSE_BYTES_MAX is the largest answer the client accepts (etcd's client default, 2 GiB - 1). */
export const RESPONSE_BYTES_MAX = 2 ** 31 - 1;
/** STATUS_ALL_ATTEMPTS_MAX bounds the attempts per endpoint of statusAll, so one dead member does not hold up the answer. */
export const STATUS_ALL_ATTEMPTS_MAX = 2;
/** LEADER_ATTEMPTS_MAX bounds how often a leader-only call rediscovers the leader after "not leader". */
export const LEADER_ATTEMPTS_MAX = 3;
/**
 * CONNECTIONS_MAX bounds the client's open channels: every listed endpoint's, plus those of
 * endpoints no longer listed that calls in flight still use.
 */
export const CONNECTIONS_MAX = 2 * ENDPOINTS_MAX;
/** WATCH_STREAMS_MAX bounds the watches one client has open at once. */
export const WATCH_STREAMS_MAX = 256;
/** SYNC_ON_FAILURE_INTERVAL_MS_MIN is the least time between two syncs started by failed calls. */
export const SYNC_ON_FAILURE_INTERVAL_MS_MIN = 500;
/**
 * DEFAULT_CONNECT_TIMEOUT_MS is how long a call waits for a connection to one endpoint before
 * it tries the next one, when it has another to try. A member on a network answers a connect
 * in milliseconds; one that was killed (its address gone) or is frozen does not answer at all,
 * and grpc-js would hold the call until its deadline waiting for the connection.
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 1000;
// Bounds the connectivity changes a call follows while it waits for a connection.
const CONNECT_STATE_CHANGES_MAX = 16;

/** ClientLogger receives the client's diagnostics (retries, endpoint switches). */
export interface ClientLogger {
  debug(message: string, fields?: Readonly<Record<string, unknown>>): void;
  warn(message: string, fields?: Readonly<Record<string, unknown>>): void;
}

/** MIRROR_REFUSALS_MAX bounds the mirror refusals one call passes over (failOverOnMirror); the deadline ends it first. */
export const MIRROR_REFUSALS_MAX = 10_000;

/** EtcdClientOptions configures an EtcdClient. */
export interface EtcdClientOptions {
  /** Where the cluster answers: `host:port` or `http://host:port` (TLS is not supported yet). */
  readonly endpoints: readonly string[];
  /** Each call's deadline in milliseconds, retries included (default DEFAULT_TIMEOUT_MS). */
  readonly timeoutMs?: number;
  /**
   * Follow the cluster's members (etcd clientv3's AutoSyncInterval): every this many
   * milliseconds, and after calls that find the endpoints failing, replace the endpoints with
   * the client URLs of the started voters (see sync). 0 or absent: off, as in etcd.
   */
  readonly autoSyncIntervalMs?: number;
  /**
   * How long a call waits for a connection to an endpoint before it moves on to the next one
   * (default DEFAULT_CONNECT_TIMEOUT_MS). The request was not sent, so writes move on too.
   * With one endpoint, or a call bound to one, the call waits until its deadline.
   */
  readonly connectTimeoutMs?: number;
  /**
   * Read a read-only mirror (a cluster a `stratakv migrate copy` fills) linearizably: such a
   * cluster refuses linearizable reads by default, because its data lags the source's (as
   * etcd's learners refuse them). The copier and `copy verify` read their mirror this way.
   * Serializable reads never need it.
   */
  readonly mirrorReader?: boolean;
  /**
   * Treat a mirror's refusal (MIRROR_READ_ONLY: nothing was done) as a reason to try the next
   * endpoint, backing off (mirrorBackoffMs: 25 ms doubling to 100 ms) until the deadline: a client given the endpoints of both clusters of
   * a copy follows the writes across `copy switch` and `copy reverse`.
   */
  readonly failOverOnMirror?: boolean;
  readonly logger?: ClientLogger;
}

/** CallOptions bound one call: its own deadline, or a signal that cancels it. */
export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Overrides the client's timeoutMs for this call. */
  readonly timeoutMs?: number;
}

/** PutOptions are put's options. */
export interface PutOptions extends CallOptions {
  /** Answer the pair as it was before the put. */
  readonly prevKv?: boolean;
}

/** RangeOptions choose which keys get and delete cover; at most one of rangeEnd, prefix and fromKey. */
export interface RangeOptions extends CallOptions {
  /** Cover [key, rangeEnd). */
  readonly rangeEnd?: Bytes;
  /** Cover every key that starts with `key`. */
  readonly prefix?: boolean;
  /** Cover every key >= `key`. */
  readonly fromKey?: boolean;
}

/** GetOptions are get's options. */
export interface GetOptions extends RangeOptions {
  /** The most keys to answer; 0 means no limit. */
  readonly limit?: number;
  /** Answer keys without values. */
  readonly keysOnly?: boolean;
  /** Answer only the count. */
  readonly countOnly?: boolean;
  /** Allow the answering member to use its local state (may be stale; works without a leader). */
  readonly serializable?: boolean;
  /** Read at this revision; 0 means the current one. */
  readonly revision?: number;
  /** Only keys whose mod revision is at least this (etcd's min_mod_revision filter; the server reads the whole range to apply it). */
  readonly minModRevision?: number;
}

/** DeleteOptions are delete's options. */
export interface DeleteOptions extends RangeOptions {
  /** Answer the deleted pairs. */
  readonly prevKv?: boolean;
}

/** MemberAddOptions are memberAdd's options. */
export interface MemberAddOptions extends CallOptions {
  /** Add the member as a learner (a non-voting member that catches up first). */
  readonly isLearner?: boolean;
}

/** MemberAddResult is the added member and the member list after the change. */
export interface MemberAddResult {
  readonly member: ClusterMember;
  readonly members: readonly ClusterMember[];
}

/** SNAPSHOT_DIGEST_BYTES is the length of the SHA-256 that ends a Maintenance.Snapshot stream. */
export const SNAPSHOT_DIGEST_BYTES = 32;

/** SnapshotOptions are snapshot's options. */
export interface SnapshotOptions {
  /** Cancels the stream. */
  readonly signal?: AbortSignal;
  /**
   * How long to wait for each message, the first included (the server may write the snapshot
   * before it sends anything); the time the caller spends on a chunk does not count. Default:
   * the client's timeoutMs.
   */
  readonly idleTimeoutMs?: number;
}

/** SnapshotChunk is one piece of a Maintenance.Snapshot stream, in order. */
export interface SnapshotChunk {
  /**
   * 'data': the snapshot's bytes. 'sha256': the last chunk, the SHA-256 of all of them as the
   * server sent it (etcd's file ends with it); yielded only once it matched what was received.
   */
  readonly kind: 'data' | 'sha256';
  readonly bytes: Uint8Array;
  /** The snapshot's length (the data bytes, without the digest), known from the first message. */
  readonly totalBytes: number;
  /** Data bytes received so far, this chunk's included. */
  readonly receivedBytes: number;
  /** The first message's header (zeros from servers that send none, such as etcd 3.4). */
  readonly header: ResponseHeader;
  /** The server's version (SnapshotResponse.version); empty from etcd before 3.6. */
  readonly version: string;
}

/** EndpointStatusResult is one endpoint's status, or why it could not be had. */
export type EndpointStatusResult =
  | { readonly ok: true; readonly endpoint: string; readonly status: EndpointStatus }
  | { readonly ok: false; readonly endpoint: string; readonly error: StrataError };

// One call's budget: when it must be done, and what may cancel it first.
interface CallContext {
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
}

// How #call picks endpoints and how far it goes.
interface CallRoute {
  /** Every attempt goes to this endpoint (listed or not); otherwise the picker chooses. */
  readonly endpoint?: string;
  readonly attemptsMax?: number;
  /** Whether failures may start a sync (off for the sync's own MemberList). */
  readonly syncOnFailure?: boolean;
}

// One channel and the calls that use it.
interface Connection {
  readonly endpoint: string;
  readonly channel: grpc.Client;
  // Invariant: leases >= 0.
  leases: number;
}

type ServiceName = keyof EtcdServices;

/** EtcdClient is a client of etcd's v3 API over gRPC, with endpoint failover and safe retries. */
export class EtcdClient {
  readonly #picker: EndpointPicker;
  readonly #timeoutMs: number;
  readonly #connectTimeoutMs: number;
  // 0: auto-sync is off.
  readonly #autoSyncIntervalMs: number;
  readonly #logger: ClientLogger | undefined;
  readonly #services: EtcdServices;
  // Invariant: #connections.size <= CONNECTIONS_MAX (see the file comment for the states).
  readonly #connections = new Map<string, Connection>();
  // The watches open now; each holds a lease on its channel. Invariant: size <= WATCH_STREAMS_MAX.
  readonly #watches = new Set<EtcdWatchStream>();
  #autoSyncTimer: ReturnType<typeof setTimeout> | undefined;
  // The automatic sync running now, if any: timer and failures share it (one at a time).
  #autoSyncRunning: Promise<void> | undefined;
  // performance.now() when the last sync started; failures start one at most every SYNC_ON_FAILURE_INTERVAL_MS_MIN.
  #lastSyncStartedAt = -Infinity;
  // Syncs are numbered as they start; an answer older than one already applied is dropped.
  // Invariant: #syncsApplied <= #syncsStarted.
  #syncsStarted = 0;
  #syncsApplied = 0;
  #closed = false;
  readonly #mirrorReader: boolean;
  readonly #failOverOnMirror: boolean;

  constructor(options: EtcdClientOptions) {
    if (!Array.isArray(options.endpoints)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'endpoints must be an array');
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `timeoutMs must be a positive integer, not ${String(timeoutMs)}`);
    }
    const autoSyncIntervalMs = options.autoSyncIntervalMs ?? 0;
    if (!Number.isSafeInteger(autoSyncIntervalMs) || autoSyncIntervalMs < 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `autoSyncIntervalMs must be a non-negative integer, not ${String(autoSyncIntervalMs)}`);
    }
    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    if (!Number.isSafeInteger(connectTimeoutMs) || connectTimeoutMs <= 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `connectTimeoutMs must be a positive integer, not ${String(connectTimeoutMs)}`);
    }
    this.#picker = new EndpointPicker(options.endpoints);
    this.#timeoutMs = timeoutMs;
    this.#connectTimeoutMs = connectTimeoutMs;
    this.#mirrorReader = options.mirrorReader === true;
    this.#failOverOnMirror = options.failOverOnMirror === true;
    this.#autoSyncIntervalMs = autoSyncIntervalMs;
    this.#logger = options.logger;
    this.#services = loadEtcdServices();
    this.#scheduleAutoSync();
  }

  /** endpoints lists the client's endpoints as host:port; sync may replace them. */
  get endpoints(): readonly string[] {
    return this.#picker.endpoints;
  }

  /**
   * sync replaces the endpoints with the cluster's, now: MemberList, then the client URLs of
   * every member that has started (published its name) and is not a learner, as etcd
   * clientv3's Sync does. URLs the client cannot use (https, TLS not being supported) are
   * left out. An answer with no usable URL leaves the list as it was. The preferred endpoint
   * stays preferred if it is still listed. Calls in flight go on; a connection to an endpoint
   * no longer listed is closed once no call uses it. Answers the endpoints after the sync.
   */
  async sync(options: CallOptions = {}): Promise<readonly string[]> {
    const context = this.#context(options);
    return this.#sync(context, ATTEMPTS_MAX);
  }

  // ---- KV ----

  /** put stores `value` under `key`. Retried only when the put provably did not run. */
  /**
   * setEndpoints points the client at other endpoints: an application moving its writers to
   * another cluster (the switch of `stratakv migrate copy` from etcd asks for it). Calls from
   * now on go there; calls in flight finish where they are. INVALID_ARGUMENT for an unusable
   * list (empty, too long, a malformed endpoint).
   */
  setEndpoints(endpoints: readonly string[]): void {
    this.#setEndpoints(endpoints.map((endpoint) => normalizeEndpoint(endpoint)));
  }

  async put(key: Bytes, value: Bytes, options: PutOptions = {}): Promise<WithHeader<PutResponse>> {
    const context = this.#context(options);
    const request = encodePut({ type: 'put', key: toBuffer(key), value: toBuffer(value), ...(options.prevKv === true ? { prevKv: true } : {}) });
    return decodePut(await this.#call('kv', 'Put', 'write', request, context));
  }

  /** get reads `key`, or a range of keys (rangeEnd, prefix or fromKey). Linearizable unless `serializable`. */
  async get(key: Bytes, options: GetOptions = {}): Promise<WithHeader<RangeResponse>> {
    const context = this.#context(options);
    for (const name of ['limit', 'revision', 'minModRevision'] as const) {
      const value = options[name];
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${name} must be a non-negative integer, not ${String(value)}`);
      }
    }
    const { key: start, rangeEnd } = rangeOf(key, options);
    const request = encodeRange({
      type: 'range',
      key: start,
      ...(rangeEnd === undefined ? {} : { rangeEnd }),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
      ...(options.revision === undefined ? {} : { revision: options.revision }),
      ...(options.keysOnly === true ? { keysOnly: true } : {}),
      ...(options.countOnly === true ? { countOnly: true } : {}),
      ...(options.serializable === true ? { serializable: true } : {}),
    });
    const filtered = options.minModRevision === undefined || options.minModRevision === 0 ? request : { ...request, minModRevision: options.minModRevision };
    return decodeRange(await this.#call('kv', 'Range', 'read', filtered, context));
  }

  /** delete removes `key`, or a range of keys. Retried only when the delete provably did not run. */
  async delete(key: Bytes, options: DeleteOptions = {}): Promise<WithHeader<DeleteRangeResponse>> {
    const context = this.#context(options);
    const { key: start, rangeEnd } = rangeOf(key, options);
    const request = encodeDeleteRange({
      type: 'deleteRange',
      key: start,
      ...(rangeEnd === undefined ? {} : { rangeEnd }),
      ...(options.prevKv === true ? { prevKv: true } : {}),
    });
    return decodeDeleteRange(await this.#call('kv', 'DeleteRange', 'write', request, context));
  }

  /** txn runs a transaction. One that only reads is retried like a read; one that writes, like a write. */
  async txn(request: TxnRequest, options: CallOptions = {}): Promise<WithHeader<TxnResponse>> {
    const context = this.#context(options);
    if (request?.type !== 'txn') throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'txn needs a TxnRequest (type "txn")');
    const writes = [...request.success, ...request.failure].some((operation) => operation.type !== 'range');
    return decodeTxn(await this.#call('kv', 'Txn', writes ? 'write' : 'read', encodeTxn(request), context));
  }

  // ---- Maintenance ----

  /** status asks one endpoint (listed or not) for its member's status; retried on that endpoint only. */
  async status(endpoint: string, options: CallOptions = {}): Promise<EndpointStatus> {
    const context = this.#context(options);
    const target = normalizeEndpoint(endpoint);
    return this.#statusOf(target, context);
  }

  /** statusAll asks every endpoint for its status at once; each answer is a status or the error. */
  async statusAll(options: CallOptions = {}): Promise<EndpointStatusResult[]> {
    const context = this.#context(options);
    return this.#statusAll(context);
  }

  /** moveLeader hands leadership to the voter `targetId`; it is sent to the leader, found with Status. */
  async moveLeader(targetId: MemberId | number, options: CallOptions = {}): Promise<void> {
    const context = this.#context(options);
    const request = { targetID: memberIdText(targetId) };
    for (let attempt = 1; ; attempt++) {
      const leader = await this.#findLeader(context);
      try {
        await this.#call('maintenance', 'MoveLeader', 'write', request, context, { endpoint: leader });
        return;
      } catch (error) {
        // "not leader" is refused before anything is proposed: leadership moved since Status
        // answered. Look again, a bounded number of times.
        if (!(error instanceof StrataError && error.code === ErrorCode.NOT_LEADER) || attempt >= LEADER_ATTEMPTS_MAX) throw error;
        this.#logger?.debug('moveLeader: the member was no longer leader; looking again', { endpoint: leader, attempt });
      }
    }
  }

  /**
   * snapshot streams Maintenance.Snapshot from `endpoint` (one member, as etcdctl insists):
   * the chunks in order, then the digest, which is checked here (CORRUPTION when it does not
   * match, or when the stream ends early or its byte counts disagree). It is never retried:
   * the caller has already used the bytes. Stopping the iteration early cancels the stream.
   * CANCELED on abort, TIMEOUT when a message takes longer than `idleTimeoutMs`.
   */
  async *snapshot(endpoint: string, options: SnapshotOptions = {}): AsyncGenerator<SnapshotChunk, void, undefined> {
    const context = this.#context({ ...(options.signal === undefined ? {} : { signal: options.signal }) });
    const idleTimeoutMs = options.idleTimeoutMs ?? this.#timeoutMs;
    if (!Number.isSafeInteger(idleTimeoutMs) || idleTimeoutMs <= 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `idleTimeoutMs must be a positive integer, not ${String(idleTimeoutMs)}`);
    }
    const target = normalizeEndpoint(endpoint);
    const method = this.#services.maintenance['Snapshot'];
    if (method === undefined) throw new Error('rpc.proto has no method maintenance.Snapshot');
    // The stream holds its channel until it ends, so a sync does not close it underneath.
    const connection = this.#lease(target);
    let call: grpc.ClientReadableStream<unknown>;
    try {
      call = connection.channel.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, {}, new grpc.Metadata(), {});
    } catch (error) {
      this.#release(connection);
      throw error;
    }
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const armIdleTimer = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        call.cancel();
      }, idleTimeoutMs);
    };
    const onAbort = (): void => call.cancel();
    context.signal?.addEventListener('abort', onAbort, { once: true });
    const receiver = new SnapshotStreamCheck(target);
    try {
      armIdleTimer();
      for await (const message of call as AsyncIterable<unknown>) {
        const chunk = receiver.take(decodeSnapshotResponse(message));
        // The caller's time on a chunk (writing it to disk) is not the server's silence.
        clearTimeout(timer);
        yield chunk;
        armIdleTimer();
      }
    } catch (error) {
      if (!isServiceError(error)) throw error;
      if (timedOut) throw new StrataError(ErrorCode.TIMEOUT, `Snapshot: no message for ${idleTimeoutMs} ms`, { details: { endpoint: target } });
      if (isAborted(context) && error.code === grpc.status.CANCELLED) throw new StrataError(ErrorCode.CANCELED, 'Snapshot was cancelled', { details: { endpoint: target } });
      throw withEndpoint(fromGrpcStatus(error.code, error.details), target);
    } finally {
      clearTimeout(timer);
      context.signal?.removeEventListener('abort', onAbort);
      call.cancel();
      this.#release(connection);
    }
    receiver.end();
  }

  // ---- Watch ----

  /**
   * watch follows the changes to `options.key`, or to a range of keys (rangeEnd, prefix or fromKey),
   * from `options.startRevision`, on the preferred endpoint: one Watch stream, asking the
   * member to end it when it has no leader. The answer is a WatchStream (watch-stream.ts): an
   * async iterator of batches of whole revisions and of progress notifications. It is never
   * moved to another endpoint: when it fails (UNAVAILABLE, TIMEOUT) the preferred endpoint
   * moves on, and the caller opens a new watch from the error's details.lastRevision + 1.
   * close(), the signal or leaving a for-await loop ends it cleanly; closing the client ends
   * it with STOPPED.
   */
  watch(options: WatchOptions): WatchStream {
    if (this.#closed) throw new StrataError(ErrorCode.STOPPED, 'the client is closed');
    const { idleTimeoutMs, progressNotifyIntervalMs } = checkWatchOptions(options);
    const { key: start, rangeEnd } = rangeOf(options.key, options);
    if (this.#watches.size >= WATCH_STREAMS_MAX) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `more than ${WATCH_STREAMS_MAX} watches open at once`);
    const method = this.#services.watch['Watch'];
    if (method === undefined) throw new Error('rpc.proto has no method watch.Watch');
    const endpoint = this.#picker.current();
    const connection = this.#lease(endpoint);
    let released = false;
    const stream: EtcdWatchStream = new EtcdWatchStream({
      endpoint,
      create: {
        key: start,
        ...(rangeEnd === undefined ? {} : { rangeEnd }),
        startRevision: options.startRevision,
        prevKv: options.prevKv === true,
        progressNotify: true,
        fragment: true,
      },
      timeoutMs: options.timeoutMs ?? this.#timeoutMs,
      idleTimeoutMs,
      progressNotifyIntervalMs,
      signal: options.signal,
      logger: this.#logger,
      open: (metadata) => connection.channel.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, metadata, {}),
      onEnd: (endpointFailed) => {
        assert(!released, 'a watch releases its lease once');
        released = true;
        this.#watches.delete(stream);
        if (endpointFailed) this.#picker.reportFailure(endpoint);
        this.#release(connection);
      },
    });
    this.#watches.add(stream);
    assert(this.#watches.size <= WATCH_STREAMS_MAX, 'open watches are bounded');
    stream.start();
    return stream;
  }

  // ---- Alarms ----

  /** alarmList answers every alarm raised in the cluster (etcdctl alarm list). */
  async alarmList(options: CallOptions = {}): Promise<ClusterAlarm[]> {
    const context = this.#context(options);
    return decodeAlarms(await this.#call('maintenance', 'Alarm', 'read', { action: 'GET', memberID: '0', alarm: 'NONE' }, context));
  }

  /**
   * alarmDisarm clears `alarm`, or, without one, every alarm raised, each with its own
   * request, as etcdctl alarm disarm does; answers the alarms it cleared.
   */
  async alarmDisarm(alarm?: ClusterAlarm, options: CallOptions = {}): Promise<ClusterAlarm[]> {
    const context = this.#context(options);
    const targets = alarm !== undefined ? [alarm] : decodeAlarms(await this.#call('maintenance', 'Alarm', 'read', { action: 'GET', memberID: '0', alarm: 'NONE' }, context));
    const cleared: ClusterAlarm[] = [];
    for (const target of targets) {
      if (target.memberId < 0n || target.memberId >= 2n ** 64n) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `an alarm's member id is a 64-bit integer, not ${target.memberId}`);
      const request = { action: 'DEACTIVATE', memberID: target.memberId.toString(), alarm: target.alarm };
      cleared.push(...decodeAlarms(await this.#call('maintenance', 'Alarm', 'write', request, context)));
    }
    return cleared;
  }

  // ---- Cluster ----

  /** memberList answers every member of the cluster. */
  async memberList(options: CallOptions = {}): Promise<ClusterMember[]> {
    const context = this.#context(options);
    return decodeMembers(await this.#call('cluster', 'MemberList', 'read', { linearizable: true }, context));
  }

  /** memberAdd adds a member at `peerUrls` (a learner with isLearner). */
  async memberAdd(peerUrls: readonly string[], options: MemberAddOptions = {}): Promise<MemberAddResult> {
    const context = this.#context(options);
    if (!Array.isArray(peerUrls) || peerUrls.length === 0 || peerUrls.some((url) => typeof url !== 'string' || url === '')) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'memberAdd needs at least one peer URL');
    }
    const answer = await this.#call('cluster', 'MemberAdd', 'write', { peerURLs: [...peerUrls], isLearner: options.isLearner === true }, context);
    return { member: decodeMember((answer as { member?: unknown }).member), members: decodeMembers(answer) };
  }

  /** memberRemove removes the member `id`; answers the member list after the change. */
  async memberRemove(id: MemberId | number, options: CallOptions = {}): Promise<ClusterMember[]> {
    const context = this.#context(options);
    return decodeMembers(await this.#call('cluster', 'MemberRemove', 'write', { ID: memberIdText(id) }, context));
  }

  /** memberPromote makes the learner `id` a voter (refused until it has caught up). */
  async memberPromote(id: MemberId | number, options: CallOptions = {}): Promise<ClusterMember[]> {
    const context = this.#context(options);
    return decodeMembers(await this.#call('cluster', 'MemberPromote', 'write', { ID: memberIdText(id) }, context));
  }

  /** close stops auto-sync, ends open watches with STOPPED and closes every connection; later calls fail with STOPPED. Calling it twice is harmless. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#autoSyncTimer);
    this.#autoSyncTimer = undefined;
    for (const stream of [...this.#watches]) stream.stop(new StrataError(ErrorCode.STOPPED, 'the client is closed'));
    for (const connection of this.#connections.values()) connection.channel.close();
    this.#connections.clear();
  }

  // ---- internals ----

  #context(options: CallOptions): CallContext {
    if (this.#closed) throw new StrataError(ErrorCode.STOPPED, 'the client is closed');
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `timeoutMs must be a positive integer, not ${String(timeoutMs)}`);
    }
    if (options.signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the call was cancelled before it started');
    return { deadline: performance.now() + timeoutMs, signal: options.signal };
  }

  async #statusOf(endpoint: string, context: CallContext, attemptsMax = ATTEMPTS_MAX): Promise<EndpointStatus> {
    return decodeStatus(endpoint, await this.#call('maintenance', 'Status', 'read', {}, context, { endpoint, attemptsMax }));
  }

  async #statusAll(context: CallContext): Promise<EndpointStatusResult[]> {
    return Promise.all(
      this.#picker.endpoints.map(async (endpoint): Promise<EndpointStatusResult> => {
        try {
          return { ok: true, endpoint, status: await this.#statusOf(endpoint, context, STATUS_ALL_ATTEMPTS_MAX) };
        } catch (error) {
          if (!(error instanceof StrataError)) throw error;
          return { ok: false, endpoint, error };
        }
      }),
    );
  }

  /**
   * #findLeader answers the leader's endpoint: the listed endpoint whose member is the leader
   * by its own Status, else the leader's first client URL from MemberList.
   */
  async #findLeader(context: CallContext): Promise<string> {
    const results = await this.#statusAll(context);
    let leaderId = 0n;
    for (const result of results) {
      if (!result.ok) continue;
      if (result.status.leaderId !== 0n && result.status.memberId === result.status.leaderId) {
        this.#picker.prefer(result.endpoint);
        return result.endpoint;
      }
      if (result.status.leaderId !== 0n) leaderId = result.status.leaderId;
    }
    if (leaderId === 0n) {
      const failed = results.find((result) => !result.ok);
      throw new StrataError(ErrorCode.NO_LEADER, 'no endpoint knows a leader', {
        details: { endpoints: this.#picker.endpoints },
        ...(failed !== undefined && !failed.ok ? { cause: failed.error } : {}),
      });
    }
    const members = decodeMembers(await this.#call('cluster', 'MemberList', 'read', { linearizable: false }, context));
    const leader = members.find((member) => member.id === leaderId);
    const url = leader?.clientUrls[0];
    if (url === undefined) {
      throw new StrataError(ErrorCode.NO_LEADER, `the leader ${leaderId.toString(16)} publishes no client URL`, { details: { leaderId } });
    }
    return normalizeEndpoint(url);
  }

  // ---- following the members ----

  /**
   * #sync runs one MemberList and applies its answer (see sync). Failures of its MemberList
   * never start another sync.
   */
  async #sync(context: CallContext, attemptsMax: number): Promise<readonly string[]> {
    const number = ++this.#syncsStarted;
    this.#lastSyncStartedAt = performance.now();
    const answer = await this.#call('cluster', 'MemberList', 'read', { linearizable: true }, context, { attemptsMax, syncOnFailure: false });
    if (this.#closed) throw new StrataError(ErrorCode.STOPPED, 'the client is closed');
    // A sync that started later has already answered: its list is the newer one.
    if (number < this.#syncsApplied) return this.#picker.endpoints;
    this.#syncsApplied = number;
    assert(this.#syncsApplied <= this.#syncsStarted, 'a sync is applied only after it started');
    const endpoints = this.#endpointsOf(decodeMembers(answer));
    if (endpoints.length === 0) {
      this.#logger?.warn('sync: no started voter publishes a usable client URL; the endpoints stay as they are', { endpoints: this.#picker.endpoints });
      return this.#picker.endpoints;
    }
    this.#setEndpoints(endpoints);
    return this.#picker.endpoints;
  }

  // #endpointsOf is clientv3's Sync rule: the client URLs of members that have started (a name
  // is published once the member runs) and vote (a learner refuses most calls). Normalized,
  // without duplicates, at most ENDPOINTS_MAX.
  #endpointsOf(members: readonly ClusterMember[]): string[] {
    const endpoints: string[] = [];
    for (const member of members) {
      if (member.name === '' || member.isLearner) continue;
      for (const url of member.clientUrls) {
        let endpoint: string;
        try {
          endpoint = normalizeEndpoint(url);
        } catch (error) {
          if (!(error instanceof StrataError)) throw error;
          this.#logger?.warn('sync: a member\'s client URL is not usable; leaving it out', { member: member.name, url, reason: error.message });
          continue;
        }
        if (!endpoints.includes(endpoint)) endpoints.push(endpoint);
      }
    }
    if (endpoints.length > ENDPOINTS_MAX) {
      this.#logger?.warn(`sync: the members publish ${endpoints.length} client URLs; using the first ${ENDPOINTS_MAX}`, {});
      endpoints.length = ENDPOINTS_MAX;
    }
    return endpoints;
  }

  #setEndpoints(endpoints: readonly string[]): void {
    const before = this.#picker.endpoints;
    if (!this.#picker.setEndpoints(endpoints)) return;
    const after = this.#picker.endpoints;
    this.#logger?.debug(`endpoints changed: ${before.join(',')} -> ${after.join(',')}`, { before, after });
    for (const connection of [...this.#connections.values()]) {
      if (connection.leases === 0 && !after.includes(connection.endpoint)) this.#retire(connection);
    }
  }

  #scheduleAutoSync(): void {
    if (this.#autoSyncIntervalMs === 0 || this.#closed) return;
    assert(this.#autoSyncTimer === undefined, 'one auto-sync timer at a time');
    this.#autoSyncTimer = setTimeout(() => {
      this.#autoSyncTimer = undefined;
      // The next interval starts when this sync ends, so syncs never pile up behind a slow one.
      void this.#autoSync().then(() => this.#scheduleAutoSync());
    }, this.#autoSyncIntervalMs);
    // The timer alone must not keep the process alive.
    this.#autoSyncTimer.unref();
  }

  /** #autoSync joins the automatic sync running now, or starts one; it never rejects. */
  #autoSync(): Promise<void> {
    if (this.#autoSyncRunning !== undefined) return this.#autoSyncRunning;
    if (this.#closed) return Promise.resolve();
    // Its own budget, not a caller's: several calls may wait for it. One attempt per
    // endpoint: a sync is a quick look, and the timer or the next failure tries again.
    const context: CallContext = { deadline: performance.now() + this.#timeoutMs, signal: undefined };
    const running = this.#sync(context, Math.max(1, this.#picker.endpoints.length))
      .then(
        () => undefined,
        (error: unknown) => {
          if (!(error instanceof StrataError)) throw error;
          if (!this.#closed) this.#logger?.debug('auto-sync failed; the endpoints stay as they are', { code: error.code, reason: error.message });
        },
      )
      .finally(() => {
        this.#autoSyncRunning = undefined;
      });
    this.#autoSyncRunning = running;
    return running;
  }

  /**
   * #syncAfterFailure starts an automatic sync (or joins the one running) and waits for it,
   * within the call's deadline, so that the call's next attempts use the members the cluster
   * has now. Failures start one at most every SYNC_ON_FAILURE_INTERVAL_MS_MIN.
   */
  async #syncAfterFailure(context: CallContext): Promise<void> {
    if (this.#autoSyncIntervalMs === 0 || this.#closed) return;
    if (this.#autoSyncRunning === undefined && performance.now() - this.#lastSyncStartedAt < SYNC_ON_FAILURE_INTERVAL_MS_MIN) return;
    await waitWithin(this.#autoSync(), context);
  }

  // ---- connections ----

  /** #lease answers the channel to `endpoint`, opening it if needed; the caller must #release it. */
  #lease(endpoint: string): Connection {
    let connection = this.#connections.get(endpoint);
    if (connection === undefined) {
      if (this.#connections.size >= CONNECTIONS_MAX) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `more than ${CONNECTIONS_MAX} connections`, { details: { endpoint } });
      }
      const channel = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
        'grpc.max_send_message_length': REQUEST_BYTES_MAX,
        'grpc.max_receive_message_length': RESPONSE_BYTES_MAX,
        // A member that comes back should be used again within a second, not grpc's two minutes.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        'grpc.enable_channelz': 0,
      });
      connection = { endpoint, channel, leases: 0 };
      this.#connections.set(endpoint, connection);
    }
    connection.leases += 1;
    return connection;
  }

  /** #release ends one lease; the channel of an endpoint that is not listed closes with its last lease. */
  #release(connection: Connection): void {
    assert(connection.leases > 0, 'a lease is released once');
    connection.leases -= 1;
    if (connection.leases === 0 && !this.#picker.endpoints.includes(connection.endpoint)) this.#retire(connection);
  }

  #retire(connection: Connection): void {
    assert(connection.leases === 0, 'a channel in use is not closed');
    // After close() the map is empty and the channel already closed.
    if (this.#connections.get(connection.endpoint) !== connection) return;
    this.#connections.delete(connection.endpoint);
    connection.channel.close();
    this.#logger?.debug('closed the connection to an endpoint no longer listed', { endpoint: connection.endpoint });
  }

  /**
   * #call sends one request, retrying where the policy allows until the attempts or the
   * deadline run out. With `route.endpoint` every attempt goes there; otherwise attempts start
   * at the preferred endpoint and a retryable failure moves on to the next. With auto-sync on,
   * a member that says it was removed or is stopping, or a round in which every endpoint was
   * unavailable, starts a sync before the next attempt.
   */
  async #call(service: ServiceName, methodName: string, kind: CallKind, request: object, context: CallContext, route: CallRoute = {}): Promise<unknown> {
    const method = this.#services[service][methodName];
    if (method === undefined) throw new Error(`rpc.proto has no method ${service}.${methodName}`);
    const fixedEndpoint = route.endpoint;
    const attemptsMax = route.attemptsMax ?? ATTEMPTS_MAX;
    const syncOnFailure = route.syncOnFailure !== false && fixedEndpoint === undefined;
    // The channels this call has used; held until it settles, so a sync cannot close them under it.
    const leased = new Map<string, Connection>();
    let lastError: StrataError | undefined;
    // Consecutive UNAVAILABLE answers: as many as there are endpoints means none is usable.
    let unavailableInRow = 0;
    // Mirror refusals (failOverOnMirror): they do not use up attemptsMax (a switch's pause is
    // waited out until the deadline), and the client backs off once per round of endpoints,
    // not before each one, so it finds the cluster that takes writes as soon as it does.
    let mirrorRefusals = 0;
    try {
      for (let attempt = 1; attempt <= attemptsMax + mirrorRefusals; attempt++) {
        if (this.#closed) throw new StrataError(ErrorCode.STOPPED, 'the client is closed');
        const endpoint = fixedEndpoint ?? this.#picker.current();
        if (isAborted(context)) {
          throw new StrataError(ErrorCode.CANCELED, `${methodName} was cancelled`, { details: { endpoint }, cause: lastError });
        }
        if (performance.now() >= context.deadline) throw timeoutError(methodName, endpoint, lastError);
        let connection = leased.get(endpoint);
        if (connection === undefined) {
          connection = this.#lease(endpoint);
          leased.set(endpoint, connection);
        }
        try {
          // With another endpoint to go to, do not wait on a connection that does not come.
          if (fixedEndpoint === undefined && this.#picker.endpoints.length > 1) await this.#awaitConnection(connection, context);
          return await this.#unary(connection, method, request, context);
        } catch (error) {
          if (!isServiceError(error)) throw error;
          if (isAborted(context) && error.code === grpc.status.CANCELLED) {
            throw new StrataError(ErrorCode.CANCELED, `${methodName} was cancelled`, { details: { endpoint }, cause: lastError });
          }
          if (error.code === grpc.status.DEADLINE_EXCEEDED && performance.now() >= context.deadline) {
            throw timeoutError(methodName, endpoint, lastError ?? withEndpoint(fromGrpcStatus(error.code, error.details), endpoint));
          }
          const failure = withEndpoint(fromGrpcStatus(error.code, error.details), endpoint);
          const mirrorRefused = this.#failOverOnMirror && isMirrorRefusal(error.code, error.details) && mirrorRefusals < MIRROR_REFUSALS_MAX;
          if (mirrorRefused) mirrorRefusals += 1;
          if ((!isRetryable(kind, error.code, error.details) && !mirrorRefused) || attempt === attemptsMax + mirrorRefusals) throw failure;
          lastError = failure;
          if (fixedEndpoint === undefined) this.#picker.reportFailure(endpoint);
          this.#logger?.debug(`${methodName} failed; retrying`, { endpoint, attempt, code: failure.code, details: error.details });
          unavailableInRow = error.code === grpc.status.UNAVAILABLE ? unavailableInRow + 1 : 0;
          // A member that left the cluster or is stopping will not serve again; a round with
          // no usable endpoint may mean they all left. Either way, ask who the members are now.
          const leaving = failure.code === ErrorCode.MEMBER_REMOVED || failure.code === ErrorCode.STOPPED;
          const noneUsable = unavailableInRow >= this.#picker.endpoints.length;
          if (syncOnFailure && (leaving || noneUsable)) {
            if (noneUsable) unavailableInRow = 0;
            await this.#syncAfterFailure(context);
          }
          // The first round tries each endpoint at once; after that every retry waits, longer
          // each time, so a cluster that is briefly without a leader is not hammered. (After a
          // sync the count is the new list's.)
          const endpointCount = fixedEndpoint === undefined ? this.#picker.endpoints.length : 1;
          if (mirrorRefused) {
            if (mirrorRefusals % endpointCount === 0) await pause(mirrorBackoffMs(mirrorRefusals / endpointCount), context);
          } else if (attempt >= endpointCount) {
            await pause(backoffMs(attempt - endpointCount + 1), context);
          }
        }
      }
    } finally {
      for (const connection of leased.values()) this.#release(connection);
    }
    throw lastError ?? new Error('unreachable: the retry loop ended without an error');
  }

  /**
   * #awaitConnection returns once the channel is ready, or has failed (the call then fails at
   * once with grpc's own error). A channel still connecting after connectTimeoutMs (or at the
   * deadline) fails with UNAVAILABLE "No connection established": the request never left.
   */
  async #awaitConnection(connection: Connection, context: CallContext): Promise<void> {
    const channel = connection.channel.getChannel();
    const startedAt = performance.now();
    const waitUntil = Math.min(context.deadline, startedAt + this.#connectTimeoutMs);
    for (let change = 0; change < CONNECT_STATE_CHANGES_MAX; change++) {
      const state = channel.getConnectivityState(true);
      if (state !== grpc.connectivityState.IDLE && state !== grpc.connectivityState.CONNECTING) return;
      const remainingMs = waitUntil - performance.now();
      if (remainingMs <= 0 || isAborted(context)) break;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          context.signal?.removeEventListener('abort', done);
          resolve();
        };
        context.signal?.addEventListener('abort', done, { once: true });
        channel.watchConnectivityState(state, Date.now() + remainingMs, done);
      });
    }
    if (isAborted(context)) return; // #unary answers CANCELLED at once
    const waitedMs = Math.round(performance.now() - startedAt);
    throw Object.assign(new Error(`No connection established to ${connection.endpoint} within ${waitedMs} ms`), {
      code: grpc.status.UNAVAILABLE,
      details: `No connection established within ${waitedMs} ms`,
      metadata: new grpc.Metadata(),
    });
  }

  // #metadata is every call's: the mirror-reader mark when asked for.
  #metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.#mirrorReader) metadata.set(MIRROR_READER_METADATA, '1');
    return metadata;
  }

  #unary(connection: Connection, method: protoLoader.MethodDefinition<object, object>, request: object, context: CallContext): Promise<unknown> {
    assert(connection.leases > 0, 'a call uses a leased channel');
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + Math.max(1, context.deadline - performance.now()));
      const call = connection.channel.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        this.#metadata(),
        { deadline },
        (error, response) => {
          context.signal?.removeEventListener('abort', onAbort);
          if (error !== null) reject(error);
          else resolve(response);
        },
      );
      function onAbort(): void {
        call.cancel();
      }
      context.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

// SnapshotStreamCheck follows one Maintenance.Snapshot stream: the first message gives the
// length (its blob plus remaining_bytes), every data message must agree with the count so
// far, and the one message after the data must be their SHA-256.
class SnapshotStreamCheck {
  readonly #endpoint: string;
  readonly #hash = createHash('sha256');
  #totalBytes: number | undefined;
  #receivedBytes = 0;
  #header: ResponseHeader | undefined;
  #version = '';
  #digestSeen = false;

  constructor(endpoint: string) {
    this.#endpoint = endpoint;
  }

  take(message: ReturnType<typeof decodeSnapshotResponse>): SnapshotChunk {
    if (this.#digestSeen) throw this.#corrupt('a message followed the SHA-256');
    if (this.#totalBytes === undefined) {
      this.#totalBytes = message.remainingBytes + message.blob.byteLength;
      this.#header = message.header;
      this.#version = message.version;
    }
    const totalBytes = this.#totalBytes;
    const base = { totalBytes, header: this.#header ?? message.header, version: this.#version };
    if (this.#receivedBytes < totalBytes) {
      this.#receivedBytes += message.blob.byteLength;
      if (this.#receivedBytes > totalBytes || message.remainingBytes !== totalBytes - this.#receivedBytes) {
        throw this.#corrupt(`remaining_bytes ${message.remainingBytes} after ${this.#receivedBytes} of ${totalBytes} bytes`);
      }
      this.#hash.update(message.blob);
      return { kind: 'data', bytes: message.blob, receivedBytes: this.#receivedBytes, ...base };
    }
    if (message.blob.byteLength !== SNAPSHOT_DIGEST_BYTES || message.remainingBytes !== 0) {
      throw this.#corrupt(`the message after the data holds ${message.blob.byteLength} bytes, not the ${SNAPSHOT_DIGEST_BYTES}-byte SHA-256`);
    }
    const digest = this.#hash.digest();
    if (!digest.equals(message.blob)) {
      throw this.#corrupt(`the SHA-256 of the ${totalBytes} bytes received is ${digest.toString('hex')}, the server sent ${Buffer.from(message.blob).toString('hex')}`);
    }
    this.#digestSeen = true;
    return { kind: 'sha256', bytes: message.blob, receivedBytes: this.#receivedBytes, ...base };
  }

  /** end checks that the stream was whole. */
  end(): void {
    if (this.#digestSeen) return;
    throw this.#corrupt(`the stream ended after ${this.#receivedBytes} of ${this.#totalBytes ?? '?'} bytes, without the SHA-256`);
  }

  #corrupt(why: string): StrataError {
    return new StrataError(ErrorCode.CORRUPTION, `Snapshot from ${this.#endpoint}: ${why}`, { details: { endpoint: this.#endpoint } });
  }
}

function isAborted(context: CallContext): boolean {
  return context.signal?.aborted === true;
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number' && 'details' in error;
}

function withEndpoint(error: StrataError, endpoint: string): StrataError {
  return new StrataError(error.code, error.message, { details: { ...error.details, endpoint } });
}

function timeoutError(methodName: string, endpoint: string, lastError: StrataError | undefined): StrataError {
  const why = lastError === undefined ? '' : ` (last error: ${lastError.message})`;
  return new StrataError(ErrorCode.TIMEOUT, `${methodName} did not finish before its deadline${why}`, {
    details: { endpoint },
    ...(lastError === undefined ? {} : { cause: lastError }),
  });
}

/** waitWithin waits for `promise` (which must not reject), but no longer than the deadline; an abort ends it early. */
function waitWithin(promise: Promise<void>, context: CallContext): Promise<void> {
  const waitMs = Math.max(0, context.deadline - performance.now());
  return new Promise((resolve) => {
    const timer = setTimeout(done, waitMs);
    void promise.then(done);
    function done(): void {
      clearTimeout(timer);
      context.signal?.removeEventListener('abort', done);
      resolve();
    }
    context.signal?.addEventListener('abort', done, { once: true });
  });
}

/** pause waits `ms`, but no longer than the deadline; an abort ends it early (the loop then reports it). */
function pause(ms: number, context: CallContext): Promise<void> {
  const waitMs = Math.max(0, Math.min(ms, context.deadline - performance.now()));
  return new Promise((resolve) => {
    const timer = setTimeout(done, waitMs);
    function done(): void {
      clearTimeout(timer);
      context.signal?.removeEventListener('abort', done);
      resolve();
    }
    context.signal?.addEventListener('abort', done, { once: true });
  });
}

function memberIdText(id: MemberId | number): string {
  if (typeof id === 'number' && (!Number.isSafeInteger(id) || id <= 0)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a member id is a positive integer, not ${String(id)}`);
  }
  if (typeof id === 'bigint' && (id <= 0n || id >= 2n ** 64n)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a member id is a positive 64-bit integer, not ${id}`);
  }
  if (typeof id !== 'number' && typeof id !== 'bigint') throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a member id is a bigint or a number');
  return id.toString();
}

/** rangeOf turns a key and its range options into etcd's [key, rangeEnd). */
function rangeOf(key: Bytes, options: RangeOptions): { key: Uint8Array; rangeEnd?: Uint8Array } {
  if (typeof key !== 'string' && !(key instanceof Uint8Array)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a key is a string or a Uint8Array');
  const chosen = [options.rangeEnd !== undefined, options.prefix === true, options.fromKey === true].filter(Boolean).length;
  if (chosen > 1) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'choose at most one of rangeEnd, prefix and fromKey');
  const start = toBuffer(key);
  if (options.rangeEnd !== undefined) return { key: start, rangeEnd: toBuffer(options.rangeEnd) };
  // etcd reads an empty prefix, or from an empty key, as "every key": ["\0", "\0").
  const everything = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };
  if (options.prefix === true) return start.length === 0 ? everything : { key: start, rangeEnd: prefixEnd(start) };
  if (options.fromKey === true) return start.length === 0 ? everything : { key: start, rangeEnd: Uint8Array.of(0) };
  return { key: start };
}

// stratakv's public surface for applications: embed a replicated KV store in-process with
// openCluster() (typed put/get/range/delete/txn and cluster calls, no gRPC needed locally),
// or talk to a running cluster with EtcdClient.

import type { Meter } from '@opentelemetry/api';
import type { Tracer } from '@opentelemetry/api';
import { prefixEnd } from './client/index.ts';
import { RaftNode } from './node/index.ts';
import type { AlarmRecord, AlarmType, MemberRecord, NodeCallOptions, NodeStatus, RaftNodeHooks, InitialClusterMember, SnapshotPolicy } from './node/index.ts';
import type { Logger } from './raft/index.ts';
import { RaftNodeBackend, raftNodeDigestPins, raftNodeLogSource, startEtcdServer } from './server/index.ts';
import type { EtcdServer } from './server/index.ts';
import type { Compare, DeleteRangeResponse, KeyValue, KvLimits, PutResponse, RangeResponse, TxnOperation, TxnResponse } from './storage/index.ts';
import { DEFAULT_KV_LIMITS } from './storage/index.ts';
import { GrpcTransport, MemoryNetwork, MemoryTransport } from './transport/index.ts';
import { ErrorCode, StrataError } from './util/errors.ts';

export { StrataError, ErrorCode, isStrataError } from './util/errors.ts';
export { EtcdClient, LogStreamClient } from './client/index.ts';
export type { EtcdClientOptions, LogStreamClientOptions, LogStreamEvent, LogStreamOptions } from './client/index.ts';
export type { KeyValue, PutResponse, RangeResponse, DeleteRangeResponse, TxnResponse, Compare, TxnOperation, KvLimits } from './storage/index.ts';
export type { AlarmChange, AlarmRecord, AlarmType, MemberRecord, NodeStatus, RaftNodeHooks, InitialClusterMember, SnapshotPolicy } from './node/index.ts';

/** Bytes is a key or value: a string (UTF-8) or raw bytes. */
export type Bytes = string | Uint8Array;

/** OpenClusterOptions configures an embedded member; with none, a single in-memory member. */
export interface OpenClusterOptions {
  /** This member's name (default "default"). */
  readonly name?: string;
  /** Where the member keeps its data; omitted, everything lives in memory and is lost on close(). */
  readonly dataDir?: string;
  /**
   * The URL this member listens on for its peers and advertises to them (http://host:port).
   * Omitted, the member runs alone with no network at all.
   */
  readonly peerUrl?: string;
  /** The members of a new cluster, this one included (default: this member alone). */
  readonly initialCluster?: readonly InitialClusterMember[];
  /** `new` (default) bootstraps a cluster; `existing` joins one that added this member. */
  readonly initialClusterState?: 'new' | 'existing';
  /** Gives the cluster its id; use one per cluster (default "stratakv-embedded"). */
  readonly clusterToken?: string;
  readonly heartbeatIntervalMs?: number;
  readonly electionTimeoutMs?: number;
  readonly limits?: Partial<KvLimits>;
  /**
   * etcd's --quota-backend-bytes: past this size of the state machine on disk, Puts are
   * refused with NO_SPACE and a NOSPACE alarm is raised. 0 or absent: 2 GiB; negative: no quota.
   */
  readonly quotaBackendBytes?: number;
  /** Also serve etcd's gRPC API here (http://host:port), for etcdctl and other processes. */
  readonly clientUrls?: readonly string[];
  readonly logger?: Logger;
  /**
   * Lifecycle callbacks (RaftNodeHooks; README "Lifecycle hooks"): onStarted, onRoleChange
   * (became leader / follower / candidate, or learned a new leader), onSnapshotSaved,
   * onSnapshotInstalled, onAlarm (raised or cleared), onMigrationStep, onStopping, onRemoved,
   * onApplied. Each is called synchronously on the member's event loop and must not throw.
   */
  readonly hooks?: RaftNodeHooks;
  /**
   * An OpenTelemetry meter (from the application's MeterProvider): the member's metrics, with
   * etcd's names (src/obs metrics.ts), are created from it and exported by whatever reader the
   * application configured (a Prometheus exporter, OTLP). Absent, nothing is counted.
   */
  readonly meter?: Meter;
  /**
   * When snapshots are taken and how much log is kept (etcd's --snapshot-count and
   * --snapshot-catchup-entries are snapshotCount and catchUpEntries; defaults 10,000 and 5,000).
   */
  readonly snapshotPolicy?: Partial<SnapshotPolicy>;
  /**
   * An OpenTelemetry tracer for this member's spans (src/obs/README.md): each write whose
   * `traceParent` (a call option) is a sampled span context is traced through Raft, and with
   * clientUrls each etcd KV call is a server span. Absent: no tracing.
   */
  readonly tracer?: Tracer;
}

/** RangeOptions select keys as etcd does: one key, [key, rangeEnd), a prefix, or everything from key. */
export interface RangeOptions extends NodeCallOptions {
  readonly rangeEnd?: Bytes;
  readonly prefix?: boolean;
  readonly fromKey?: boolean;
  readonly limit?: number;
  readonly keysOnly?: boolean;
  readonly countOnly?: boolean;
  /** Answer from this member's applied state without confirming leadership (may be stale). */
  readonly serializable?: boolean;
}

const encoder = new TextEncoder();

function toBytes(value: Bytes): Uint8Array {
  return typeof value === 'string' ? encoder.encode(value) : value;
}

// etcd's conventions: a prefix range ends at the prefix with its last byte incremented; a
// "\0" range end means "every key from key on".
function rangeEndOf(key: Uint8Array, options: RangeOptions): Uint8Array | undefined {
  const chosen = [options.rangeEnd !== undefined, options.prefix === true, options.fromKey === true].filter(Boolean).length;
  if (chosen > 1) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'choose at most one of rangeEnd, prefix and fromKey');
  if (options.rangeEnd !== undefined) return toBytes(options.rangeEnd);
  if (options.fromKey === true) return Uint8Array.of(0);
  return options.prefix === true ? prefixEnd(key) : undefined;
}

/** StrataKv is an embedded cluster member with a typed KV API. */
export class StrataKv {
  /** node is the underlying driver, for status and advanced use. */
  readonly node: RaftNode;
  private readonly server: EtcdServer | undefined;

  private constructor(node: RaftNode, server: EtcdServer | undefined) {
    this.node = node;
    this.server = server;
  }

  /** open starts the member; see openCluster. */
  static async open(options: OpenClusterOptions = {}): Promise<StrataKv> {
    const name = options.name ?? 'default';
    const peerUrl = options.peerUrl;
    const network = peerUrl === undefined ? new MemoryNetwork() : undefined;
    const advertisedPeerUrl = peerUrl ?? 'http://127.0.0.1:2380';
    if (peerUrl === undefined && (options.initialCluster?.length ?? 1) > 1) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a member of a multi-member cluster needs a peerUrl');
    }
    const limits = { ...DEFAULT_KV_LIMITS, ...options.limits };
    const node = await RaftNode.start({
      name,
      ...(options.dataDir !== undefined ? { dataDir: options.dataDir } : {}),
      initialCluster: options.initialCluster ?? [{ name, peerUrls: [advertisedPeerUrl] }],
      initialClusterState: options.initialClusterState ?? 'new',
      initialClusterToken: options.clusterToken ?? 'stratakv-embedded',
      advertisePeerUrls: [advertisedPeerUrl],
      advertiseClientUrls: options.clientUrls ?? [],
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 100,
      electionTimeoutMs: options.electionTimeoutMs ?? 1_000,
      limits,
      ...(options.quotaBackendBytes !== undefined ? { quotaBackendBytes: options.quotaBackendBytes } : {}),
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
      ...(options.hooks !== undefined ? { hooks: options.hooks } : {}),
      ...(options.meter !== undefined ? { meter: options.meter } : {}),
      ...(options.snapshotPolicy !== undefined ? { snapshotPolicy: options.snapshotPolicy } : {}),
      ...(options.tracer !== undefined ? { tracer: options.tracer } : {}),
      createTransport: ({ localId, clusterId }) =>
        network !== undefined
          ? new MemoryTransport(network, { localId, clusterId })
          : new GrpcTransport({ localId, clusterId, listenUrls: [advertisedPeerUrl], ...(options.logger !== undefined ? { logger: options.logger } : {}) }),
    });
    let server: EtcdServer | undefined;
    if (options.clientUrls !== undefined && options.clientUrls.length > 0) {
      try {
        server = await startEtcdServer({ backend: new RaftNodeBackend(node, 'embedded'), logSource: raftNodeLogSource(node), digestPins: raftNodeDigestPins(node), integrity: node, clusterInfo: node, migration: node, listenUrls: options.clientUrls, maxRequestBytes: limits.requestBytesMax, ...(options.tracer !== undefined ? { tracer: options.tracer } : {}) });
      } catch (error) {
        await node.stop({ transferLeadership: false });
        throw error;
      }
    }
    return new StrataKv(node, server);
  }

  /** put stores `value` under `key` and resolves once the write is committed and applied. */
  async put(key: Bytes, value: Bytes, options: NodeCallOptions & { readonly prevKv?: boolean } = {}): Promise<PutResponse> {
    const response = await this.node.kv({ type: 'put', key: toBytes(key), value: toBytes(value), ...(options.prevKv === true ? { prevKv: true } : {}) }, options);
    return response as PutResponse;
  }

  /** get reads one key (linearizable unless `serializable`); undefined when it does not exist. */
  async get(key: Bytes, options: NodeCallOptions & { readonly serializable?: boolean } = {}): Promise<KeyValue | undefined> {
    const response = await this.range(key, options);
    return response.kvs[0];
  }

  /** range reads keys with etcd's Range semantics. */
  range(key: Bytes, options: RangeOptions = {}): Promise<RangeResponse> {
    const start = toBytes(key);
    const rangeEnd = rangeEndOf(start, options);
    return this.node.range(
      {
        type: 'range',
        key: start.length === 0 && rangeEnd !== undefined ? Uint8Array.of(0) : start,
        ...(rangeEnd !== undefined ? { rangeEnd } : {}),
        ...(options.limit !== undefined ? { limit: options.limit } : {}),
        ...(options.keysOnly === true ? { keysOnly: true } : {}),
        ...(options.countOnly === true ? { countOnly: true } : {}),
        ...(options.serializable === true ? { serializable: true } : {}),
      },
      options,
    );
  }

  /** delete removes one key or a range; answers how many were deleted. */
  async delete(key: Bytes, options: RangeOptions & { readonly prevKv?: boolean } = {}): Promise<DeleteRangeResponse> {
    const start = toBytes(key);
    const rangeEnd = rangeEndOf(start, options);
    const response = await this.node.kv(
      { type: 'deleteRange', key: start, ...(rangeEnd !== undefined ? { rangeEnd } : {}), ...(options.prevKv === true ? { prevKv: true } : {}) },
      options,
    );
    return response as DeleteRangeResponse;
  }

  /** txn runs `success` if every compare holds, else `failure`, atomically at one revision. */
  async txn(
    request: { readonly compare: readonly Compare[]; readonly success: readonly TxnOperation[]; readonly failure?: readonly TxnOperation[] },
    options: NodeCallOptions = {},
  ): Promise<TxnResponse> {
    const response = await this.node.kv({ type: 'txn', compare: request.compare, success: request.success, failure: request.failure ?? [] }, options);
    return response as TxnResponse;
  }

  /** members lists the cluster's members as this member knows them. */
  members(): MemberRecord[] {
    return this.node.members();
  }

  /** addMember adds a member (a learner by default: promote it once it has caught up). */
  addMember(peerUrls: readonly string[], options: NodeCallOptions & { readonly isLearner?: boolean } = {}): Promise<{ member: MemberRecord; members: MemberRecord[] }> {
    return this.node.addMember(peerUrls, options.isLearner ?? true, options);
  }

  /** removeMember removes a member. */
  removeMember(id: number, options: NodeCallOptions = {}): Promise<MemberRecord[]> {
    return this.node.removeMember(id, options);
  }

  /** promoteMember makes a caught-up learner a voter. */
  promoteMember(id: number, options: NodeCallOptions = {}): Promise<MemberRecord[]> {
    return this.node.promoteMember(id, options);
  }

  /** transferLeadership hands leadership to another voter (this member must lead). */
  transferLeadership(id: number, options: NodeCallOptions = {}): Promise<void> {
    return this.node.transferLeadership(id, options);
  }

  /** alarms lists the alarms raised in the cluster (NOSPACE, CORRUPT; member id 0 is the whole cluster). */
  alarms(options: NodeCallOptions = {}): Promise<AlarmRecord[]> {
    return this.node.alarmList(options);
  }

  /** disarmAlarm clears an alarm (etcdctl alarm disarm clears every listed one this way). */
  async disarmAlarm(memberId: number, alarm: AlarmType, options: NodeCallOptions = {}): Promise<void> {
    await this.node.changeAlarm('deactivate', memberId, alarm, options);
  }

  /** status reports this member's view of itself and the cluster. */
  status(): NodeStatus {
    return this.node.status();
  }

  /** waitForLeader resolves with the leader's id once one is known. */
  waitForLeader(options: NodeCallOptions = {}): Promise<number> {
    return this.node.waitForLeader(options);
  }

  /** waitPublished resolves once this member's name and client URLs are in the member list (etcd's ReadyNotify). */
  waitPublished(options: NodeCallOptions = {}): Promise<void> {
    return this.node.waitPublished(options);
  }

  /** close stops the member (handing leadership over first when it leads) and its etcd API. */
  async close(): Promise<void> {
    await this.node.stop();
    await this.server?.close({ force: true });
  }
}

/**
 * openCluster starts an embedded member. With no options it is a single in-memory member,
 * ready for put/get at once; give `dataDir` to keep data, and `peerUrl` + `initialCluster`
 * to replicate across processes or machines.
 */
export async function openCluster(options: OpenClusterOptions = {}): Promise<StrataKv> {
  const store = await StrataKv.open(options);
  try {
    await store.waitForLeader();
    // As etcd's ReadyNotify: the member list shows this member by name from the start.
    await store.waitPublished();
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

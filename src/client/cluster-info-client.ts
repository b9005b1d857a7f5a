// ClusterInfoClient: Admin.ClusterInfo (proto/stratakv/admin.proto), the cluster as one member
// has applied it — its id and token, the leader that member knows, the members with their
// zones, and the ids removed — for `stratakv members`, for `stratakv serve --join` (which
// waits until the cluster lists it) and for embedders. One call has one deadline: the
// endpoints are tried in turn, starting from the one that answered last, each with its share
// of the time left; an endpoint that cannot answer (UNAVAILABLE, TIMEOUT, STOPPED) is passed
// over, any other error is the answer. Errors are StrataErrors with the member's catalogue
// code (the `stratakv-code` trailer) and the endpoint; real etcd, which has no Admin service,
// answers UNIMPLEMENTED.

import { ErrorCode, StrataError } from '../util/errors.ts';
import { AdminCalls } from './admin-calls.ts';
import { EndpointPicker } from './endpoint-picker.ts';

/** CLUSTER_INFO_TIMEOUT_MS_DEFAULT is a call's deadline when none is given. */
export const CLUSTER_INFO_TIMEOUT_MS_DEFAULT = 5_000;

/** ClusterInfoMember is one member as the answering member has applied it. */
export interface ClusterInfoMember {
  readonly id: number;
  /** Empty until the member has started and published it. */
  readonly name: string;
  readonly peerUrls: readonly string[];
  /** Empty until the member has started and published them. */
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
  /** Its --zone as it last published it; '' for none. */
  readonly zone: string;
}

/** ClusterInfo is one member's answer. */
export interface ClusterInfo {
  readonly clusterId: number;
  /** The --initial-cluster-token the answering member runs with: member ids derive from it and the peer URLs. */
  readonly clusterToken: string;
  /** The leader the answering member knows; 0 when none. */
  readonly leaderId: number;
  /** Ordered by id. */
  readonly members: readonly ClusterInfoMember[];
  /** Ids removed from the cluster (the newest ones); a removed id never returns. */
  readonly removedIds: readonly number[];
  /** The member that answered, and its endpoint. */
  readonly memberId: number;
  readonly endpoint: string;
}

/** ClusterInfoClientOptions configure a ClusterInfoClient. */
export interface ClusterInfoClientOptions {
  /** host:port or http://host:port, 1 to ENDPOINTS_MAX. */
  readonly endpoints: readonly string[];
  /** A call's deadline when the call gives none (CLUSTER_INFO_TIMEOUT_MS_DEFAULT). */
  readonly timeoutMs?: number;
}

/** ClusterInfoCallOptions bound one call. */
export interface ClusterInfoCallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** WireMember is admin.proto's ClusterInfoMember as proto-loader gives it. */
export interface WireMember {
  id: number;
  name: string;
  peer_urls: string[];
  client_urls: string[];
  is_learner: boolean;
  zone: string;
}

interface WireClusterInfo {
  cluster_id: number;
  cluster_token: string;
  leader_id: number;
  members: WireMember[];
  member_id: number;
  removed_ids: number[];
}

/** ClusterInfoClient calls ClusterInfo (see the file comment). */
export class ClusterInfoClient {
  readonly #picker: EndpointPicker;
  readonly #timeoutMs: number;
  readonly #calls = new AdminCalls(['ClusterInfo']);

  constructor(options: ClusterInfoClientOptions) {
    this.#picker = new EndpointPicker(options.endpoints);
    this.#timeoutMs = options.timeoutMs ?? CLUSTER_INFO_TIMEOUT_MS_DEFAULT;
    checkTimeout(this.#timeoutMs);
  }

  /** endpoints lists the endpoints, normalized to host:port. */
  get endpoints(): readonly string[] {
    return this.#picker.endpoints;
  }

  /** clusterInfo asks the first endpoint that answers (see the file comment). */
  async clusterInfo(options: ClusterInfoCallOptions = {}): Promise<ClusterInfo> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    checkTimeout(timeoutMs);
    const deadline = Date.now() + timeoutMs;
    const count = this.#picker.endpoints.length;
    let last: StrataError | undefined;
    for (let attempt = 0; attempt < count; attempt += 1) {
      if (options.signal?.aborted === true) throw canceled();
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) break;
      const endpoint = this.#picker.current();
      // A black-holed endpoint must not take the whole deadline from the ones after it.
      const attemptMs = Math.max(1, Math.floor(remainingMs / (count - attempt)));
      try {
        const wire = await abortable(this.#calls.call<WireClusterInfo>(endpoint, 'ClusterInfo', {}, attemptMs), options.signal);
        this.#picker.prefer(endpoint);
        return fromWire(wire, endpoint);
      } catch (error) {
        if (!(error instanceof StrataError) || !canPassOver(error)) throw error;
        last = error;
        this.#picker.reportFailure(endpoint);
      }
    }
    throw last ?? new StrataError(ErrorCode.TIMEOUT, `ClusterInfo: no endpoint answered within ${timeoutMs} ms`, { details: { endpoints: [...this.#picker.endpoints] } });
  }

  /** close closes the connections. */
  close(): void {
    this.#calls.close();
  }
}

// canPassOver tells whether an endpoint's error means it cannot answer (another may).
function canPassOver(error: StrataError): boolean {
  return error.code === ErrorCode.UNAVAILABLE || error.code === ErrorCode.TIMEOUT || error.code === ErrorCode.STOPPED;
}

function checkTimeout(timeoutMs: number): void {
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `timeoutMs must be a positive integer, not ${timeoutMs}`);
}

function canceled(): StrataError {
  return new StrataError(ErrorCode.CANCELED, 'ClusterInfo was cancelled');
}

// abortable settles with `call`, or with CANCELED once `signal` aborts (the call itself ends by
// its deadline, or when the client is closed).
function abortable<T>(call: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return call;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(canceled());
    signal.addEventListener('abort', onAbort, { once: true });
    call.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/** fromWireMember reads admin.proto's ClusterInfoMember. */
export function fromWireMember(member: WireMember): ClusterInfoMember {
  return { id: member.id, name: member.name, peerUrls: member.peer_urls, clientUrls: member.client_urls, isLearner: member.is_learner, zone: member.zone };
}

function fromWire(wire: WireClusterInfo, endpoint: string): ClusterInfo {
  const malformed = (what: string): StrataError => new StrataError(ErrorCode.UNAVAILABLE, `${endpoint} answered a malformed ClusterInfo: ${what}`, { details: { endpoint } });
  const isId = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
  if (!isId(wire.cluster_id) || !isId(wire.member_id)) throw malformed('bad cluster or member id');
  if (typeof wire.cluster_token !== 'string' || wire.cluster_token === '') throw malformed('no cluster token');
  const members = wire.members.map((member): ClusterInfoMember => {
    if (!isId(member.id)) throw malformed('bad member id');
    return fromWireMember(member);
  });
  if (!wire.removed_ids.every(isId)) throw malformed('bad removed id');
  return {
    clusterId: wire.cluster_id,
    clusterToken: wire.cluster_token,
    leaderId: wire.leader_id,
    members,
    removedIds: wire.removed_ids,
    memberId: wire.member_id,
    endpoint,
  };
}

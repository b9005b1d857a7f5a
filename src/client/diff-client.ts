// DiffClient runs the Merkle diff (src/diff/merkle-diff.ts) between two stratakv members over
// the Admin service's Diff* methods (proto/stratakv/admin.proto): `stratakv diff` prints its
// report, embedders and the integrity benchmark call it directly.
//
// diff() goes:
//   1. hello: the first endpoint of each side that answers gives its cluster and member id
//      (later endpoints of a side are only tried when earlier ones fail);
//   2. pin: one cluster id on both sides → a replica diff: one checkpoint is pinned through
//      Raft from side A's member (every member pins its view at that index), both members are
//      asked for that pin, and the `full` hashes are compared. Two cluster ids → a cluster
//      diff: each member pins its applied state, and the `content` hashes (key and value) are
//      compared;
//   3. open the two trees (for --prefix, each member reads the prefix once: progress);
//   4. the descent and the leaf keys (merkleDiff: one round of two parallel calls per level);
//   5. the values of the differing keys (cut to valueBytesMax), for showing them;
//   6. release both pins, however the diff ended.
// It counts what went over the wire: every request and response message (protobuf bytes plus
// gRPC's 5-byte message header; HTTP/2 framing and headers are not seen here), the calls and
// the seconds. Errors are StrataErrors with the member's catalogue code and the endpoint.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type {
  DescribedDifference,
  DiffMethod,
  DiffProgress,
  DiffValue,
  DigestHash,
  DigestTreeSource,
  Inconsistency,
  LeafKeyHash,
  MerkleDiffResult,
  TreeName,
  TreeRoot,
  WireHelloResponse,
  WireLeafKeysResponse,
  WireNodesResponse,
  WireOpenProgress,
  WirePinResponse,
  WireValuesResponse,
} from '../diff/index.ts';
import {
  ADMIN_PROTO_FILE,
  ADMIN_PROTO_LOADER_OPTIONS,
  ADMIN_SERVICE_NAME,
  decodeLeafKeys,
  describeDifferences,
  DIFF_METHODS,
  DIFF_TIMEOUT_MS_MAX,
  DIFF_VALUES_LOADER_OPTIONS,
  DIFFERENCES_MAX,
  fromWireValue,
  merkleDiff,
  prefixRange,
  toWireTree,
  VALUE_BYTES_DEFAULT,
  WirePinAt,
} from '../diff/index.ts';
import { DIGEST_BYTES } from '../storage/index.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { adminCallError } from './admin-calls.ts';
import { normalizeEndpoint } from './endpoint-picker.ts';
import type { ClientLogger } from './etcd-client.ts';

/** DIFF_CALL_TIMEOUT_MS_DEFAULT is the deadline of one diff call (the open of a prefix excepted). */
export const DIFF_CALL_TIMEOUT_MS_DEFAULT = 30_000;
/** DIFF_OPEN_TIMEOUT_MS_DEFAULT is the deadline of opening a tree (reading a prefix may take minutes). */
export const DIFF_OPEN_TIMEOUT_MS_DEFAULT = 10 * 60_000;
/** DIFF_MESSAGE_BYTES_MAX is the largest answer the client accepts (a leaf of large keys goes whole). */
export const DIFF_MESSAGE_BYTES_MAX = 64 * 1024 * 1024;
/** GRPC_MESSAGE_HEADER_BYTES is gRPC's length-prefix of each message (counted as wire bytes). */
export const GRPC_MESSAGE_HEADER_BYTES = 5;

/** DiffMode: `replicas` (one cluster: one checkpoint, full hashes) or `clusters` (applied states, content hashes). */
export type DiffMode = 'replicas' | 'clusters';

/** DiffOptions say what to compare. Side A (`endpoints`) is the reference: `missing` keys are on A and not on B. */
export interface DiffOptions {
  /** Side A: one member (more endpoints are tried in order when one does not answer). */
  readonly endpoints: readonly string[];
  /** Side B, the same way. */
  readonly against: readonly string[];
  /** Only keys with this prefix (each member reads them once). */
  readonly prefix?: Uint8Array;
  /** Default: `replicas` when both members report one cluster id, else `clusters`. */
  readonly mode?: DiffMode;
  /** Collect at most this many differences (default DIFFERENCES_MAX). */
  readonly differencesMax?: number;
  /** Fetch this much of each differing value (default VALUE_BYTES_DEFAULT); 0 fetches sizes and revisions only. */
  readonly valueBytesMax?: number;
  /** Skip fetching values altogether (the benchmark's bare descent). */
  readonly skipValues?: boolean;
  /** Deadline of each call (default DIFF_CALL_TIMEOUT_MS_DEFAULT). */
  readonly callTimeoutMs?: number;
  /** Deadline of opening a tree (default DIFF_OPEN_TIMEOUT_MS_DEFAULT). */
  readonly openTimeoutMs?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: DiffClientProgress) => void;
  /**
   * Compare these views, pinned by the caller (`pin()`), instead of pinning: side A's on
   * `pins.a.endpoint`, B's on `pins.b.endpoint` (`endpoints` and `against` are then ignored),
   * with the given hashes. The caller releases them. A cross-cluster copy compares a source
   * checkpoint with the target's view pinned where the copier replayed it (`full`: the
   * revisions are the source's on both sides).
   */
  readonly pins?: { readonly a: PinnedView; readonly b: PinnedView; readonly hash: DigestHash };
}

/** PinnedView names a view pinned on one member. */
export interface PinnedView {
  readonly endpoint: string;
  readonly pinId: string;
}

/** DiffClientProgress tells where diff() is. */
export type DiffClientProgress =
  | { readonly phase: 'pin'; readonly mode: DiffMode }
  | { readonly phase: 'open'; readonly side: 'a' | 'b'; readonly keysRead: number; readonly done: boolean }
  | DiffProgress
  | { readonly phase: 'values'; readonly differences: number };

/** DiffSide is what one side of a diff was. */
export interface DiffSide {
  readonly endpoint: string;
  readonly clusterId: number;
  readonly memberId: number;
  readonly pinId: string;
  /** The applied index and revision of the pinned view. */
  readonly index: number;
  readonly revision: number;
  /** Keys in the tree compared (in the prefix, with --prefix). */
  readonly keyCount: number;
}

/** DiffWireStats is what a diff cost. */
export interface DiffWireStats {
  /** Request bytes sent (protobuf messages plus gRPC's 5-byte message headers). */
  readonly bytesSent: number;
  /** Response bytes received, the same way. */
  readonly bytesReceived: number;
  readonly calls: number;
  /** Rounds of the descent and leaf exchange (each one parallel call per side). */
  readonly rounds: number;
  readonly sumsCompared: number;
  readonly leavesCompared: number;
  readonly keysReceived: number;
  /** Differing nodes per level 1..4. */
  readonly differingNodes: readonly number[];
  readonly seconds: number;
}

/** DiffReport is a diff's outcome. */
export interface DiffReport {
  readonly mode: DiffMode;
  readonly hash: DigestHash;
  readonly a: DiffSide;
  readonly b: DiffSide;
  readonly prefix: Uint8Array | undefined;
  /** No difference and no inconsistency. */
  readonly equal: boolean;
  /** Sorted by key; `a` and `b` are the values (undefined without values, or where a side lacks the key). */
  readonly differences: readonly DescribedDifference[];
  /** More than differencesMax differences: only the first found are listed. */
  readonly truncated: boolean;
  readonly differencesMax: number;
  readonly inconsistencies: readonly Inconsistency[];
  readonly stats: DiffWireStats;
}

/** DiffClientOptions configure a DiffClient. */
export interface DiffClientOptions {
  readonly logger?: ClientLogger;
}

// Counters of one diff.
interface Wire {
  sent: number;
  received: number;
  calls: number;
}

type Methods = Readonly<Record<DiffMethod, protoLoader.MethodDefinition<object, object>>>;

/** DiffClient compares two stratakv members (see the file comment). */
export class DiffClient {
  readonly #logger: ClientLogger | undefined;
  readonly #methods: Methods;
  readonly #connections = new Map<string, grpc.Client>();
  #closed = false;

  constructor(options: DiffClientOptions = {}) {
    this.#logger = options.logger;
    this.#methods = loadDiffMethods();
  }

  /**
   * diff compares side A with side B (see the file comment). It rejects with
   * INVALID_ARGUMENT for a bad option, UNAVAILABLE when no endpoint of a side answers, the
   * member's error otherwise (for example UNIMPLEMENTED from a member that does not serve
   * the diff), CANCELED on abort.
   */
  async diff(options: DiffOptions): Promise<DiffReport> {
    const startedMs = performance.now();
    const given = options.pins;
    const endpointsA = given === undefined ? checkEndpoints('endpoints', options.endpoints) : checkEndpoints('pins.a.endpoint', [given.a.endpoint]);
    const endpointsB = given === undefined ? checkEndpoints('against', options.against) : checkEndpoints('pins.b.endpoint', [given.b.endpoint]);
    const callTimeoutMs = positive('callTimeoutMs', options.callTimeoutMs ?? DIFF_CALL_TIMEOUT_MS_DEFAULT);
    const openTimeoutMs = positive('openTimeoutMs', options.openTimeoutMs ?? DIFF_OPEN_TIMEOUT_MS_DEFAULT);
    const differencesMax = positive('differencesMax', options.differencesMax ?? DIFFERENCES_MAX);
    const valueBytesMax = options.valueBytesMax ?? VALUE_BYTES_DEFAULT;
    if (!Number.isSafeInteger(valueBytesMax) || valueBytesMax < 0) throw invalid('valueBytesMax', `must be a non-negative integer, not ${String(valueBytesMax)}`);
    const range = options.prefix === undefined || options.prefix.byteLength === 0 ? undefined : prefixRange(options.prefix);
    const wire: Wire = { sent: 0, received: 0, calls: 0 };
    const call = { wire, timeoutMs: callTimeoutMs, signal: options.signal };

    const [helloA, helloB] = await Promise.all([this.#hello(endpointsA, call), this.#hello(endpointsB, call)]);
    const mode: DiffMode = options.mode ?? (helloA.hello.cluster_id === helloB.hello.cluster_id ? 'replicas' : 'clusters');
    if (given === undefined && mode === 'replicas' && helloA.hello.cluster_id !== helloB.hello.cluster_id) {
      throw invalid('mode', `a replica diff needs two members of one cluster; ${helloA.endpoint} is in cluster ${helloA.hello.cluster_id.toString(16)}, ${helloB.endpoint} in ${helloB.hello.cluster_id.toString(16)}`);
    }
    const hash: DigestHash = given?.hash ?? (mode === 'replicas' ? 'full' : 'content');
    options.onProgress?.({ phase: 'pin', mode });
    // The pins made, released whatever happens next.
    const pinned: { endpoint: string; pinId: string }[] = [];
    let found: Omit<DiffReport, 'stats'> & { readonly result: MerkleDiffResult };
    try {
      let pinA: WirePinResponse;
      let pinB: WirePinResponse;
      if (given !== undefined) {
        // The caller's pins: index and revision come with the trees below.
        pinA = { pin_id: given.a.pinId, index: 0, revision: 0 };
        pinB = { pin_id: given.b.pinId, index: 0, revision: 0 };
      } else if (mode === 'replicas') {
        pinA = await this.#call<WirePinResponse>(helloA.endpoint, 'DiffPin', { at: WirePinAt.CHECKPOINT, timeout_ms: Math.min(callTimeoutMs, DIFF_TIMEOUT_MS_MAX) }, call);
        pinned.push({ endpoint: helloA.endpoint, pinId: pinA.pin_id });
        if (helloB.endpoint !== helloA.endpoint) pinned.push({ endpoint: helloB.endpoint, pinId: pinA.pin_id });
        pinB = pinA;
      } else {
        const pinOf = async (endpoint: string): Promise<WirePinResponse> => {
          const pin = await this.#call<WirePinResponse>(endpoint, 'DiffPin', { at: WirePinAt.APPLIED }, call);
          pinned.push({ endpoint, pinId: pin.pin_id });
          return pin;
        };
        [pinA, pinB] = await Promise.all([pinOf(helloA.endpoint), pinOf(helloB.endpoint)]);
      }
      const open = { ...call, timeoutMs: openTimeoutMs };
      const [treeA, treeB] = await Promise.all([
        this.#open(helloA.endpoint, 'a', { pinId: pinA.pin_id, hash, ...(range === undefined ? {} : { range }) }, open, options.onProgress),
        this.#open(helloB.endpoint, 'b', { pinId: pinB.pin_id, hash, ...(range === undefined ? {} : { range }) }, open, options.onProgress),
      ]);
      const result = await merkleDiff(treeA.source, treeB.source, { differencesMax, ...(options.signal === undefined ? {} : { signal: options.signal }), ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }) });
      let differences: readonly DescribedDifference[];
      if (options.skipValues === true || result.differences.length === 0) {
        differences = result.differences.map((difference) => ({ ...difference, a: undefined, b: undefined }));
      } else {
        options.onProgress?.({ phase: 'values', differences: result.differences.length });
        differences = await describeDifferences(treeA.source, treeB.source, result.differences, { valueBytesMax, ...(options.signal === undefined ? {} : { signal: options.signal }) });
      }
      const side = (hello: { endpoint: string; hello: WireHelloResponse }, pin: WirePinResponse, tree: OpenedTree): DiffSide => ({
        endpoint: hello.endpoint,
        clusterId: hello.hello.cluster_id,
        memberId: hello.hello.member_id,
        pinId: pin.pin_id,
        index: tree.index,
        revision: tree.revision,
        keyCount: tree.source.root.keyCount,
      });
      found = {
        mode,
        hash,
        a: side(helloA, pinA, treeA),
        b: side(helloB, pinB, treeB),
        prefix: range === undefined ? undefined : options.prefix,
        equal: result.equal,
        differences,
        truncated: result.truncated,
        differencesMax,
        inconsistencies: result.inconsistencies,
        result,
      };
    } finally {
      await Promise.all(
        pinned.map(async ({ endpoint, pinId }) => {
          try {
            await this.#call(endpoint, 'DiffRelease', { pin_id: pinId }, { ...call, signal: undefined });
          } catch (error) {
            // The pin expires on its own after five minutes unused.
            this.#logger?.debug('diff: releasing a pin failed', { endpoint, pinId, reason: error instanceof Error ? error.message : String(error) });
          }
        }),
      );
    }
    // The stats include the releases.
    const { result, ...report } = found;
    return {
      ...report,
      stats: {
        bytesSent: wire.sent,
        bytesReceived: wire.received,
        calls: wire.calls,
        rounds: result.rounds,
        sumsCompared: result.sumsCompared,
        leavesCompared: result.leavesCompared,
        keysReceived: result.keysReceived,
        differingNodes: result.differingNodes,
        seconds: (performance.now() - startedMs) / 1000,
      },
    };
  }

  /**
   * pin pins a view on the member at `endpoint`: its applied state now (`applied`), or a
   * checkpoint through Raft at which every member of its cluster pins (`checkpoint`, pin id
   * `i<index>`). The caller releases it (`release`); unused pins expire after five minutes.
   */
  async pin(endpoint: string, at: 'applied' | 'checkpoint', options: { readonly signal?: AbortSignal; readonly timeoutMs?: number } = {}): Promise<{ readonly pinId: string; readonly index: number; readonly revision: number }> {
    const timeoutMs = options.timeoutMs ?? DIFF_CALL_TIMEOUT_MS_DEFAULT;
    const call = { wire: { sent: 0, received: 0, calls: 0 }, timeoutMs, signal: options.signal };
    const request = at === 'checkpoint' ? { at: WirePinAt.CHECKPOINT, timeout_ms: Math.min(timeoutMs, DIFF_TIMEOUT_MS_MAX) } : { at: WirePinAt.APPLIED };
    const answer = await this.#call<WirePinResponse>(normalizeEndpoint(endpoint), 'DiffPin', request, call);
    return { pinId: answer.pin_id, index: Number(answer.index), revision: Number(answer.revision) };
  }

  /** release drops a pin made by `pin` (a pin already gone is no error). */
  async release(endpoint: string, pinId: string, options: { readonly timeoutMs?: number } = {}): Promise<void> {
    const call = { wire: { sent: 0, received: 0, calls: 0 }, timeoutMs: options.timeoutMs ?? DIFF_CALL_TIMEOUT_MS_DEFAULT, signal: undefined };
    await this.#call(normalizeEndpoint(endpoint), 'DiffRelease', { pin_id: pinId }, call);
  }

  /** close closes every connection; a diff running fails. Twice is harmless. */
  close(): void {
    this.#closed = true;
    for (const connection of this.#connections.values()) connection.close();
    this.#connections.clear();
  }

  // #hello asks each endpoint in turn until one answers.
  async #hello(endpoints: readonly string[], call: CallContext): Promise<{ endpoint: string; hello: WireHelloResponse }> {
    let last: unknown;
    for (const endpoint of endpoints) {
      try {
        return { endpoint, hello: await this.#call<WireHelloResponse>(endpoint, 'DiffHello', {}, call) };
      } catch (error) {
        if (error instanceof StrataError && (error.code === ErrorCode.UNAVAILABLE || error.code === ErrorCode.TIMEOUT) && call.signal?.aborted !== true) {
          last = error;
          continue;
        }
        throw error;
      }
    }
    throw new StrataError(ErrorCode.UNAVAILABLE, `diff: no endpoint of ${endpoints.join(',')} answered`, { details: { endpoints: endpoints.join(',') }, cause: last });
  }

  // #open opens a tree on `endpoint`: the progress of a range read, then its root.
  async #open(endpoint: string, side: 'a' | 'b', tree: TreeName, call: CallContext, onProgress: DiffOptions['onProgress']): Promise<OpenedTree> {
    const method = this.#methods.DiffOpen;
    const messages = this.#stream<WireOpenProgress>(endpoint, method, { tree: toWireTree(tree), timeout_ms: Math.min(call.timeoutMs, DIFF_TIMEOUT_MS_MAX) }, call);
    for await (const message of messages) {
      if (!message.done) {
        onProgress?.({ phase: 'open', side, keysRead: message.keys_read, done: false });
        continue;
      }
      const root = message.root ?? new Uint8Array(0);
      if (root.byteLength !== DIGEST_BYTES) throw new StrataError(ErrorCode.CORRUPTION, `diff: ${endpoint} answered a root of ${root.byteLength} bytes`, { details: { endpoint } });
      onProgress?.({ phase: 'open', side, keysRead: message.keys_read, done: true });
      const source = new RemoteTree(endpoint, tree, { keyCount: message.key_count, sum: root }, (name, request) => this.#call(endpoint, name, request, call));
      return { source, index: message.index, revision: message.revision };
    }
    throw new StrataError(ErrorCode.UNAVAILABLE, `diff: ${endpoint} ended the open of a tree without its root`, { details: { endpoint } });
  }

  /** #call makes one unary call, counting its bytes. */
  #call<Response>(endpoint: string, name: DiffMethod, request: object, context: CallContext): Promise<Response> {
    if (this.#closed) return Promise.reject(new StrataError(ErrorCode.STOPPED, 'the client is closed'));
    if (context.signal?.aborted === true) return Promise.reject(new StrataError(ErrorCode.CANCELED, 'the diff was cancelled'));
    const method = this.#methods[name];
    const wire = context.wire;
    wire.calls += 1;
    return new Promise<Response>((resolve, reject) => {
      const onAbort = (): void => pending.cancel();
      const pending = this.#connection(endpoint).makeUnaryRequest(
        method.path,
        (message: object) => countSent(wire, method.requestSerialize(message)),
        (bytes: Buffer) => method.responseDeserialize(countReceived(wire, bytes)),
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + context.timeoutMs },
        (error, response) => {
          context.signal?.removeEventListener('abort', onAbort);
          if (error !== null) reject(this.#failure(error, endpoint, name, context.signal));
          else resolve(response as Response);
        },
      );
      context.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  // #stream makes one server-streaming call, counting its bytes.
  async *#stream<Message>(endpoint: string, method: protoLoader.MethodDefinition<object, object>, request: object, context: CallContext): AsyncGenerator<Message> {
    if (this.#closed) throw new StrataError(ErrorCode.STOPPED, 'the client is closed');
    const wire = context.wire;
    wire.calls += 1;
    const pending = this.#connection(endpoint).makeServerStreamRequest(
      method.path,
      (message: object) => countSent(wire, method.requestSerialize(message)),
      (bytes: Buffer) => method.responseDeserialize(countReceived(wire, bytes)),
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + context.timeoutMs },
    );
    const onAbort = (): void => pending.cancel();
    context.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const message of pending as AsyncIterable<Message>) yield message;
    } catch (error) {
      throw this.#failure(error, endpoint, 'DiffOpen', context.signal);
    } finally {
      context.signal?.removeEventListener('abort', onAbort);
      pending.cancel();
    }
  }

  // #failure turns a call's error into a StrataError naming the endpoint.
  #failure(error: unknown, endpoint: string, name: DiffMethod, signal: AbortSignal | undefined): StrataError {
    if (signal?.aborted === true) return new StrataError(ErrorCode.CANCELED, 'the diff was cancelled', { details: { endpoint } });
    if (error instanceof StrataError) return error;
    if (!isServiceError(error)) return new StrataError(ErrorCode.UNAVAILABLE, `diff: ${name} to ${endpoint} failed: ${String(error)}`, { details: { endpoint }, cause: error });
    return adminCallError(error, endpoint, `diff: ${name}`);
  }

  #connection(endpoint: string): grpc.Client {
    let connection = this.#connections.get(endpoint);
    if (connection === undefined) {
      connection = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
        'grpc.max_receive_message_length': DIFF_MESSAGE_BYTES_MAX,
        'grpc.enable_channelz': 0,
      });
      this.#connections.set(endpoint, connection);
    }
    return connection;
  }
}

interface CallContext {
  readonly wire: Wire;
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
}

interface OpenedTree {
  readonly source: RemoteTree;
  readonly index: number;
  readonly revision: number;
}

// RemoteCall makes one call to the tree's member.
type RemoteCall = (name: DiffMethod, request: object) => Promise<unknown>;

// RemoteTree is one side of merkleDiff over the wire.
class RemoteTree implements DigestTreeSource {
  readonly root: TreeRoot;
  readonly #endpoint: string;
  readonly #name: TreeName;
  readonly #call: RemoteCall;

  constructor(endpoint: string, name: TreeName, root: TreeRoot, call: RemoteCall) {
    this.#endpoint = endpoint;
    this.#name = name;
    this.root = root;
    this.#call = call;
  }

  async children(level: number, parents: readonly number[]): Promise<Uint8Array> {
    const answer = (await this.#call('DiffNodes', { tree: toWireTree(this.#name), level, parents })) as WireNodesResponse;
    return answer.sums ?? new Uint8Array(0);
  }

  async leafKeys(leaves: readonly number[]): Promise<LeafKeyHash[][]> {
    const answer = (await this.#call('DiffLeafKeys', { tree: toWireTree(this.#name), leaves })) as WireLeafKeysResponse;
    const answered = answer.leaves_answered;
    if (!Number.isInteger(answered) || answered < 1 || answered > leaves.length) {
      throw new StrataError(ErrorCode.CORRUPTION, `diff: ${this.#endpoint} answered ${answered} leaves when asked for ${leaves.length}`, { details: { endpoint: this.#endpoint } });
    }
    return decodeLeafKeys(answer.keys ?? new Uint8Array(0), answered, `diff: ${this.#endpoint}`);
  }

  async values(keys: readonly Uint8Array[], valueBytesMax: number): Promise<(DiffValue | undefined)[]> {
    const answer = (await this.#call('DiffValues', { pin_id: this.#name.pinId, keys, value_bytes_max: valueBytesMax })) as WireValuesResponse;
    const values = answer.values ?? [];
    if (values.length !== keys.length) throw new StrataError(ErrorCode.CORRUPTION, `diff: ${this.#endpoint} answered ${values.length} values for ${keys.length} keys`, { details: { endpoint: this.#endpoint } });
    return values.map((value, index) => fromWireValue(keys[index] as Uint8Array, value, `diff: ${this.#endpoint}`));
  }
}

let methods: Methods | undefined;

// loadDiffMethods loads admin.proto's Diff* methods once per process. DiffValues comes from a
// second load that decodes 64-bit integers as decimal text (DIFF_VALUES_LOADER_OPTIONS), so
// that a key's lease id arrives exactly.
function loadDiffMethods(): Methods {
  if (methods !== undefined) return methods;
  const definition = protoLoader.loadSync(ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS);
  const service = definition[ADMIN_SERVICE_NAME] as protoLoader.ServiceDefinition | undefined;
  const exact = protoLoader.loadSync(ADMIN_PROTO_FILE, DIFF_VALUES_LOADER_OPTIONS)[ADMIN_SERVICE_NAME] as protoLoader.ServiceDefinition | undefined;
  const found: Partial<Record<DiffMethod, protoLoader.MethodDefinition<object, object>>> = {};
  for (const name of DIFF_METHODS) {
    const method = name === 'DiffValues' ? exact?.[name] : service?.[name];
    if (method === undefined) throw new Error(`admin.proto has no method ${ADMIN_SERVICE_NAME}.${name}`);
    found[name] = method as protoLoader.MethodDefinition<object, object>;
  }
  methods = found as Methods;
  return methods;
}

function countSent(wire: Wire, bytes: Buffer): Buffer {
  wire.sent += bytes.byteLength + GRPC_MESSAGE_HEADER_BYTES;
  return bytes;
}

function countReceived(wire: Wire, bytes: Buffer): Buffer {
  wire.received += bytes.byteLength + GRPC_MESSAGE_HEADER_BYTES;
  return bytes;
}

function checkEndpoints(name: string, endpoints: readonly string[]): string[] {
  if (!Array.isArray(endpoints) || endpoints.length === 0) throw invalid(name, 'must name at least one endpoint');
  return endpoints.map((endpoint) => normalizeEndpoint(endpoint));
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw invalid(name, `must be a positive integer, not ${String(value)}`);
  return value;
}

function invalid(field: string, why: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, `diff: ${field} ${why}`, { details: { field } });
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number' && 'details' in error;
}

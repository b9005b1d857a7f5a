// AdminCalls: unary calls to the Admin service (proto/stratakv/admin.proto) over one
// connection per endpoint, with the failure of a call turned into a StrataError that carries
// the member's catalogue code (the `stratakv-code` trailer) and the endpoint. The clients of
// the Admin service's unary methods (integrity, migration, mirror) share it. `callFirst` is the
// failover of a call any member answers: the endpoints in turn from the preferred one, passing
// over those that cannot answer (ADMIN_PASS_OVER_CODES), within one deadline.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS, ADMIN_SERVICE_NAME, CODE_METADATA_KEY, FIELD_METADATA_KEY } from '../diff/index.ts';
import { ErrorCode, isErrorCode, StrataError } from '../util/errors.ts';
import { ETCD_ERRORS, fromGrpcStatus } from '../util/etcd-errors.ts';
import type { EndpointPicker } from './endpoint-picker.ts';

/** ADMIN_CONNECTIONS_MAX bounds the connections one AdminCalls keeps open. */
export const ADMIN_CONNECTIONS_MAX = 64;
/**
 * ADMIN_DEADLINE_GRACE_MS: a call's gRPC deadline passes the timeout it asks of the member by
 * this much, so that the member's own answer (TIMEOUT with its reason) arrives first.
 */
export const ADMIN_DEADLINE_GRACE_MS = 2_000;
/** ADMIN_ATTEMPT_MS_MIN: callFirst tries no further endpoint with less than this left of its deadline. */
export const ADMIN_ATTEMPT_MS_MIN = 50;

/**
 * ADMIN_PASS_OVER_CODES say "this endpoint cannot answer; another may": callFirst tries the
 * next endpoint after them, and answers any other error as it is.
 */
export const ADMIN_PASS_OVER_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.UNAVAILABLE,
  ErrorCode.TIMEOUT,
  ErrorCode.NOT_LEADER,
  ErrorCode.STOPPED,
  ErrorCode.MEMBER_REMOVED,
  ErrorCode.CORRUPT_ALARM,
  ErrorCode.NO_LEADER,
]);

/** AdminCallOptions bound a callFirst: one deadline for every endpoint tried, and an AbortSignal. */
export interface AdminCallOptions {
  /** What the member may take (sent as the request's timeout_ms); the call ends ADMIN_DEADLINE_GRACE_MS later at the latest. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
}

/** AdminCalls makes unary Admin calls to any endpoint (see the file comment). */
export class AdminCalls {
  readonly #connections = new Map<string, grpc.Client>();
  readonly #methods = new Map<string, protoLoader.MethodDefinition<object, object>>();

  /** `serviceName` is a service of admin.proto (default stratakv.admin.Admin). */
  constructor(methodNames: readonly string[], serviceName: string = ADMIN_SERVICE_NAME) {
    const definition = protoLoader.loadSync(ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS);
    const service = definition[serviceName] as protoLoader.ServiceDefinition | undefined;
    for (const name of methodNames) {
      const found = service?.[name];
      if (found === undefined) throw new Error(`admin.proto has no method ${serviceName}.${name}`);
      this.#methods.set(name, found as protoLoader.MethodDefinition<object, object>);
    }
  }

  /**
   * call calls `name` on `endpoint` with a deadline; a failure is a StrataError naming the
   * endpoint. `signal` cancels the call (CANCELED).
   */
  call<Response>(endpoint: string, name: string, request: object, deadlineMs: number, signal?: AbortSignal): Promise<Response> {
    const method = this.#methods.get(name);
    if (method === undefined) throw new Error(`AdminCalls was not given method ${name}`);
    if (signal?.aborted === true) return Promise.reject(canceled(endpoint, name));
    return new Promise<Response>((resolve, reject) => {
      const onAbort = (): void => call.cancel();
      const call = this.#connection(endpoint).makeUnaryRequest(
        method.path,
        (message: object) => method.requestSerialize(message),
        (bytes: Buffer) => method.responseDeserialize(bytes),
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (error, response) => {
          signal?.removeEventListener('abort', onAbort);
          if (error === null) resolve(response as Response);
          else reject(signal?.aborted === true ? canceled(endpoint, name) : adminCallError(error, endpoint, name));
        },
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * callFirst calls `name` on `picker`'s endpoints, from the preferred one, each at most once,
   * until one answers: an endpoint that fails with one of ADMIN_PASS_OVER_CODES is reported to
   * the picker and passed over; any other error is the answer. Every attempt fits in one
   * deadline: `request(timeoutMs)` builds the request with the time the member may take, what
   * is left of `options.timeoutMs`. Answers the response and the endpoint that gave it; when
   * no endpoint answered, the last pass-over error.
   */
  async callFirst<Response>(picker: EndpointPicker, name: string, request: (timeoutMs: number) => object, options: AdminCallOptions): Promise<{ value: Response; endpoint: string }> {
    const deadline = Date.now() + options.timeoutMs;
    const endpoints = picker.endpoints.length;
    let last: StrataError | undefined;
    for (let attempt = 0; attempt < endpoints; attempt += 1) {
      const remainingMs = deadline - Date.now();
      if (remainingMs < ADMIN_ATTEMPT_MS_MIN) break;
      const endpoint = picker.current();
      try {
        return { value: await this.call<Response>(endpoint, name, request(remainingMs), remainingMs + ADMIN_DEADLINE_GRACE_MS, options.signal), endpoint };
      } catch (error) {
        if (!(error instanceof StrataError) || !ADMIN_PASS_OVER_CODES.has(error.code)) throw error;
        picker.reportFailure(endpoint);
        last = error;
      }
    }
    throw last ?? new StrataError(ErrorCode.TIMEOUT, `no endpoint answered ${name} within ${options.timeoutMs} ms`);
  }

  /** close closes the connections. */
  close(): void {
    for (const connection of this.#connections.values()) connection.close();
    this.#connections.clear();
  }

  #connection(endpoint: string): grpc.Client {
    let connection = this.#connections.get(endpoint);
    if (connection === undefined) {
      if (this.#connections.size >= ADMIN_CONNECTIONS_MAX) {
        const [oldest, client] = this.#connections.entries().next().value as [string, grpc.Client];
        client.close();
        this.#connections.delete(oldest);
      }
      connection = new grpc.Client(endpoint, grpc.credentials.createInsecure(), { 'grpc.enable_channelz': 0 });
      this.#connections.set(endpoint, connection);
    }
    return connection;
  }
}

function canceled(endpoint: string, name: string): StrataError {
  return new StrataError(ErrorCode.CANCELED, `${name} to ${endpoint}: ${ETCD_ERRORS.CANCELED.message ?? 'request canceled'}`, { details: { endpoint } });
}

/** adminCallError turns a failed Admin call into a StrataError: the member's code when it sent one, else the gRPC status's. */
export function adminCallError(error: grpc.ServiceError, endpoint: string, name: string): StrataError {
  const code = error.metadata?.get(CODE_METADATA_KEY)[0];
  const field = error.metadata?.get(FIELD_METADATA_KEY)[0];
  if (typeof code === 'string' && isErrorCode(code)) {
    return new StrataError(code, `${endpoint}: ${error.details}`, { details: { endpoint, grpcCode: error.code, ...(typeof field === 'string' ? { field } : {}) } });
  }
  if (error.code === grpc.status.DEADLINE_EXCEEDED) return new StrataError(ErrorCode.TIMEOUT, `${name} to ${endpoint} passed its deadline`, { details: { endpoint } });
  if (error.code === grpc.status.UNIMPLEMENTED) return new StrataError(ErrorCode.UNIMPLEMENTED, `${endpoint} does not serve ${name} (not stratakv, or an older version)`, { details: { endpoint } });
  const mapped = fromGrpcStatus(error.code, error.details);
  return new StrataError(mapped.code, `${endpoint}: ${mapped.message}`, { details: { ...mapped.details, endpoint }, cause: mapped });
}

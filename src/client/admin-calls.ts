// AdminCalls: unary calls to the Admin service (proto/stratakv/admin.proto) over one
// connection per endpoint, with the failure of a call turned into a StrataError that carries
// the member's catalogue code (the `stratakv-code` trailer) and the endpoint. The clients of
// the Admin service's unary methods (integrity, migration) share it.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { ADMIN_PROTO_FILE, ADMIN_PROTO_LOADER_OPTIONS, ADMIN_SERVICE_NAME, CODE_METADATA_KEY, FIELD_METADATA_KEY } from '../diff/index.ts';
import { ErrorCode, isErrorCode, StrataError } from '../util/errors.ts';
import { fromGrpcStatus } from '../util/etcd-errors.ts';

/** ADMIN_CONNECTIONS_MAX bounds the connections one AdminCalls keeps open. */
export const ADMIN_CONNECTIONS_MAX = 64;

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

  /** call calls `name` on `endpoint` with a deadline; a failure is a StrataError naming the endpoint. */
  call<Response>(endpoint: string, name: string, request: object, deadlineMs: number): Promise<Response> {
    const method = this.#methods.get(name);
    if (method === undefined) throw new Error(`AdminCalls was not given method ${name}`);
    return new Promise<Response>((resolve, reject) => {
      this.#connection(endpoint).makeUnaryRequest(
        method.path,
        (message: object) => method.requestSerialize(message),
        (bytes: Buffer) => method.responseDeserialize(bytes),
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (error, response) => {
          if (error !== null) reject(adminCallError(error, endpoint, name));
          else resolve(response as Response);
        },
      );
    });
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

// Which endpoint a call goes to. etcd's clientv3 keeps one connection per endpoint and, when
// one fails, moves on to the next; we do the same with an explicit "preferred" endpoint that
// every call starts from, so a healthy cluster sees its calls on one connection (in order)
// and a failed member is left behind by the first call that notices.

import { ErrorCode, StrataError } from '../util/errors.ts';

/** ENDPOINTS_MAX bounds the endpoint list of one client (and the connections it may open). */
export const ENDPOINTS_MAX = 64;

/**
 * normalizeEndpoint turns `host:port` or `http://host:port` into `host:port`, the gRPC target.
 * TLS (https://) is not supported yet; anything else is INVALID_ARGUMENT naming the endpoint.
 */
export function normalizeEndpoint(text: string): string {
  const invalid = (why: string): StrataError =>
    new StrataError(ErrorCode.INVALID_ARGUMENT, `invalid endpoint ${JSON.stringify(text)}: ${why}`, { details: { endpoint: text } });
  const trimmed = text.trim();
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(trimmed)?.[1]?.toLowerCase();
  if (scheme === 'https' || scheme === 'unixs') throw invalid('TLS is not supported yet; use http:// or host:port');
  if (scheme !== undefined && scheme !== 'http') throw invalid('an endpoint is host:port or http://host:port');
  const rest = scheme === undefined ? trimmed : trimmed.slice('http://'.length);
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})\/?$/.exec(rest);
  if (match === null) throw invalid('an endpoint is host:port or http://host:port');
  const port = Number(match[2]);
  if (port < 1 || port > 65535) throw invalid(`port ${port} is out of range`);
  return `${match[1] ?? ''}:${port}`;
}

/**
 * EndpointPicker chooses the endpoint a call tries next; failures move the choice on. The list
 * can be replaced (setEndpoints, when the client follows the cluster's members): the preferred
 * endpoint stays preferred while it is listed.
 */
export class EndpointPicker {
  // Invariant: 1 <= #endpoints.length <= ENDPOINTS_MAX, normalized, without duplicates.
  #endpoints: readonly string[];
  // Invariant: 0 <= #preferred < #endpoints.length.
  #preferred = 0;

  constructor(endpoints: readonly string[]) {
    this.#endpoints = normalizeList(endpoints);
  }

  /** endpoints lists every endpoint, normalized to host:port, without duplicates. */
  get endpoints(): readonly string[] {
    return this.#endpoints;
  }

  /** current is the endpoint the next call starts from. */
  current(): string {
    const endpoint = this.#endpoints[this.#preferred];
    if (endpoint === undefined) throw new Error('EndpointPicker: preferred index out of range');
    return endpoint;
  }

  /**
   * reportFailure moves past `endpoint` if it is still the preferred one. Calls that fail on
   * the same endpoint at once move the choice only once, so they do not skip a healthy one.
   */
  reportFailure(endpoint: string): void {
    if (this.#endpoints[this.#preferred] === endpoint) {
      this.#preferred = (this.#preferred + 1) % this.#endpoints.length;
    }
  }

  /** prefer makes `endpoint` the one calls start from (for example, the leader), if it is listed. */
  prefer(endpoint: string): void {
    const index = this.#endpoints.indexOf(endpoint);
    if (index !== -1) this.#preferred = index;
  }

  /**
   * setEndpoints replaces the list, with the constructor's checks (INVALID_ARGUMENT when it is
   * empty, longer than ENDPOINTS_MAX or holds an endpoint that is not host:port). The preferred
   * endpoint stays preferred if it is still listed, so a healthy connection is kept; otherwise
   * calls start from the first. Answers whether the list changed (order included).
   */
  setEndpoints(endpoints: readonly string[]): boolean {
    const next = normalizeList(endpoints);
    const preferred = this.current();
    const changed = next.length !== this.#endpoints.length || next.some((endpoint, index) => endpoint !== this.#endpoints[index]);
    this.#endpoints = next;
    this.#preferred = Math.max(0, next.indexOf(preferred));
    return changed;
  }
}

// normalizeList checks an endpoint list and answers it normalized, in order, without duplicates.
function normalizeList(endpoints: readonly string[]): readonly string[] {
  if (endpoints.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'at least one endpoint is needed');
  if (endpoints.length > ENDPOINTS_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${endpoints.length} endpoints is more than ${ENDPOINTS_MAX}`);
  }
  const normalized: string[] = [];
  for (const endpoint of endpoints.map(normalizeEndpoint)) {
    if (!normalized.includes(endpoint)) normalized.push(endpoint);
  }
  return Object.freeze(normalized);
}

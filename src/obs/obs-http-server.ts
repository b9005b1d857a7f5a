// The plain-HTTP side of a member: /metrics, /health, /version, the status page (/) and its
// data (/status.json). `createObsRequestHandler` answers a request on any server: the
// metrics URLs' own (`startObsHttpServer`, etcd's --listen-metrics-urls) and, for /health and
// /version, the client URLs, where the gRPC server hands HTTP/1.1 connections over
// (src/server's listener sniffs the first bytes).

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

import { ErrorCode, StrataError } from '../util/errors.ts';
import { checkHealth, type HealthSource } from './health.ts';
import type { MetricsRegistry } from './prometheus.ts';

/** ObsRoutes says what a handler serves; a route left out answers 404. */
export interface ObsRoutes {
  /** /health (etcd's; health.ts). */
  readonly health?: HealthSource;
  /** /version: etcd's {"etcdserver":…,"etcdcluster":…}. */
  readonly version?: () => { readonly etcdserver: string; readonly etcdcluster: string };
  /** /metrics. */
  readonly metrics?: MetricsRegistry;
  /** /status/member: this member's own row of the status page (the client URLs answer it, for the other members' pages). */
  readonly member?: () => Promise<unknown>;
  /** /status.json: the status page's data (a JSON-serializable document). */
  readonly status?: () => Promise<unknown>;
  /** /: the status page (HTML). */
  readonly page?: () => Promise<string>;
}

/** OBS_LISTEN_URLS_MAX bounds the metrics URLs one member listens on. */
export const OBS_LISTEN_URLS_MAX = 16;

/** createObsRequestHandler answers GET/HEAD requests for `routes`; every request is answered, errors with 500. */
export function createObsRequestHandler(routes: ObsRoutes): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    const answered = route(routes, request, response);
    answered.catch((error: unknown) => {
      if (!response.headersSent) sendText(response, 500, `internal error: ${(error as Error).message}\n`);
      else response.destroy();
    });
  };
}

async function route(routes: ObsRoutes, request: IncomingMessage, response: ServerResponse): Promise<void> {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('allow', 'GET, HEAD');
    sendText(response, 405, `method ${request.method ?? '?'} not allowed; use GET\n`);
    return;
  }
  const url = new URL(request.url ?? '/', 'http://member');
  switch (url.pathname) {
    case '/health': {
      if (routes.health === undefined) break;
      const answer = await checkHealth(routes.health, url.searchParams);
      sendJson(response, answer.health === 'true' ? 200 : 503, answer);
      return;
    }
    case '/version':
      if (routes.version === undefined) break;
      sendJson(response, 200, routes.version());
      return;
    case '/metrics':
      if (routes.metrics === undefined) break;
      routes.metrics.serveScrape(request, response);
      return;
    case '/status/member':
      if (routes.member === undefined) break;
      response.setHeader('cache-control', 'no-store');
      sendJson(response, 200, await routes.member());
      return;
    case '/status.json':
      if (routes.status === undefined) break;
      response.setHeader('cache-control', 'no-store');
      sendJson(response, 200, await routes.status());
      return;
    case '/':
      if (routes.page === undefined) break;
      response.setHeader('cache-control', 'no-store');
      send(response, 200, 'text/html; charset=utf-8', await routes.page());
      return;
    default:
      break;
  }
  sendText(response, 404, `no ${url.pathname} here\n`);
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  send(response, status, 'application/json', `${JSON.stringify(body)}\n`);
}

function sendText(response: ServerResponse, status: number, body: string): void {
  send(response, status, 'text/plain; charset=utf-8', body);
}

function send(response: ServerResponse, status: number, contentType: string, body: string): void {
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

/** ObsHttpServer is a running metrics server. */
export interface ObsHttpServer {
  /** The URLs with the ports actually bound, in the order given. */
  readonly urls: readonly string[];
  /** close stops listening and ends open connections. */
  close(): Promise<void>;
}

/**
 * startObsHttpServer listens on every URL of `listenUrls` (http://host:port; port 0 picks one)
 * with `handler`. A URL that is not http://host:port is INVALID_ARGUMENT; one that cannot be
 * bound rejects with the cause, and nothing is left listening.
 */
export async function startObsHttpServer(listenUrls: readonly string[], handler: (request: IncomingMessage, response: ServerResponse) => void): Promise<ObsHttpServer> {
  if (listenUrls.length === 0 || listenUrls.length > OBS_LISTEN_URLS_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `metrics URLs: give 1 to ${OBS_LISTEN_URLS_MAX}, got ${listenUrls.length}`);
  }
  const addresses = listenUrls.map(parseMetricsUrl);
  const servers: Server[] = [];
  const urls: string[] = [];
  const closeAll = (): Promise<void> =>
    Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    ).then(() => undefined);
  try {
    for (const [index, address] of addresses.entries()) {
      const server = createServer({ keepAliveTimeout: 5_000, requestTimeout: 10_000, headersTimeout: 5_000 }, handler);
      servers.push(server);
      const port = await new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(address.port, address.hostname, () => {
          server.off('error', reject);
          const bound = server.address();
          resolve(typeof bound === 'object' && bound !== null ? bound.port : address.port);
        });
      }).catch((error: unknown) => {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `cannot listen on ${listenUrls[index] ?? '?'}: ${(error as Error).message}`, { cause: error });
      });
      urls.push(`http://${address.host}:${port}`);
    }
  } catch (error) {
    await closeAll();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return { urls, close: () => (closing ??= closeAll()) };
}

// parseMetricsUrl reads etcd's --listen-metrics-urls form, http://host:port (https needs TLS,
// which stratakv does not serve yet). `host` keeps IPv6 brackets for the URL; `hostname` is for listen().
function parseMetricsUrl(text: string): { host: string; hostname: string; port: number } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `metrics URL ${JSON.stringify(text)} is not a URL (want http://host:port)`);
  }
  if (url.protocol !== 'http:') throw new StrataError(ErrorCode.INVALID_ARGUMENT, `metrics URL ${text}: scheme must be http (TLS is not supported yet)`);
  if (url.port === '' && !/:0\/?$/.test(text)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `metrics URL ${text}: give a port`);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '') {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `metrics URL ${text}: want http://host:port with nothing after the port`);
  }
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host: url.hostname, hostname, port: Number(url.port === '' ? 0 : url.port) };
}

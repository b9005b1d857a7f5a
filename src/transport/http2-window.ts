// http2-window.ts — widening the HTTP/2 receive windows of a grpc-js server.
//
// Why: HTTP/2 lets a sender have at most the receiver's window in flight, per stream and per
// connection, and both start at 65,535 bytes. grpc-js's server never raises them (its
// 'grpc-node.flow_control_window' option is read by channels only, as of 1.14), so every
// stream a server receives runs at most 64 KiB per round trip: 1.0 MB/s across a 20 ms
// one-way link, measured through test/net/tcp-proxy.ts, against 160 MB/s with a 16 MiB
// window. That made a snapshot to a member in another zone take minutes per 100 MB, and log
// catch-up was bounded the same way. Go's gRPC (and so etcd) grows its windows up to 16 MiB
// by its bandwidth-delay estimate; we set the same ceiling at once.
//
// How: grpc-js keeps the node:http2 servers it binds in a private map (`http2Servers`). For
// each, every session (a connection) gets SETTINGS_INITIAL_WINDOW_SIZE (each stream's window;
// the change applies to streams already open too) and a connection window of the same size.
// The private field is checked: if a grpc-js upgrade removes it, the call throws, and the
// transport tests fail rather than the windows silently shrinking back.
//
// What it costs: a receiver may hold up to the window of bytes it has not read per stream,
// bounded by the connection window per peer connection. Our readers consume eagerly, and
// the snapshot stream's own window (4 unacknowledged chunks) stays the tighter bound there.

import type { ServerHttp2Session } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
import { assert } from '../util/index.ts';

/** HTTP2_WINDOW_BYTES is the per-stream and per-connection receive window our servers offer. */
export const HTTP2_WINDOW_BYTES = 16 * 1024 * 1024;

interface Http2ServerLike {
  on(event: 'session', listener: (session: ServerHttp2Session) => void): unknown;
}

interface Http2ServerEntry {
  readonly sessions?: Set<ServerHttp2Session>;
}

const widened = new WeakSet<object>();

/**
 * widenHttp2Windows raises the receive windows of every connection `server` accepts from now
 * on (and of those already open) to `windowBytes`. Call it after each bindAsync resolved;
 * calling it again is harmless (each node:http2 server is widened once).
 */
export function widenHttp2Windows(server: Server, windowBytes: number = HTTP2_WINDOW_BYTES): void {
  assert(Number.isSafeInteger(windowBytes) && windowBytes >= 65_535 && windowBytes <= 2 ** 31 - 1, 'windowBytes must be a valid HTTP/2 window');
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  assert(
    servers instanceof Map,
    'grpc-js Server has no http2Servers map; its internals changed, so src/transport/http2-window.ts cannot widen the HTTP/2 windows',
  );
  for (const [http2Server, entry] of servers as Map<Http2ServerLike, Http2ServerEntry>) {
    if (widened.has(http2Server)) continue;
    widened.add(http2Server);
    http2Server.on('session', (session) => widenSession(session, windowBytes));
    for (const session of entry.sessions ?? []) widenSession(session, windowBytes);
  }
}

function widenSession(session: ServerHttp2Session, windowBytes: number): void {
  if (session.destroyed || session.closed) return;
  try {
    session.settings({ initialWindowSize: windowBytes });
    session.setLocalWindowSize(windowBytes);
  } catch {
    // The session closed between the check and the call (ERR_HTTP2_INVALID_SESSION): there is
    // nothing left to widen.
  }
}

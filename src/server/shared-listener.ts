// One port for gRPC and plain HTTP, as etcd's client URLs serve both (cmux): /health and
// /version answer curl there, and etcd clients speak gRPC. Every connection is told apart by
// its first bytes: HTTP/2 opens with the connection preface "PRI * HTTP/2.0", which no HTTP/1
// request line begins with. HTTP/2 connections go to the gRPC server through its connection
// injector (grpc-js's supported way to hand it sockets), the rest to a node:http server that
// never listens itself. Only the first bytes of each connection are looked at; the requests
// themselves take the usual paths.

import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';

import { ServerCredentials, type Server } from '@grpc/grpc-js';

/** FIRST_BYTES_TIMEOUT_MS: a connection that sends nothing this long after it opened is closed. */
export const FIRST_BYTES_TIMEOUT_MS = 10_000;

const HTTP2_PREFACE_START = Buffer.from('PRI ');

/** SharedListener is the listening side of startEtcdServer when plain HTTP shares its ports. */
export interface SharedListener {
  /** The ports bound, in the order of the addresses. */
  readonly ports: readonly number[];
  /** close stops accepting and ends idle HTTP connections; gRPC's own shutdown ends its sessions. */
  close(): Promise<void>;
  /** destroy ends every connection at once. */
  destroy(): void;
}

/** listenSharingHttp listens on every address, handing HTTP/2 connections to `server` and HTTP/1.x ones to `httpHandler`. */
export async function listenSharingHttp(
  server: Server,
  addresses: readonly { readonly host: string; readonly port: number }[],
  httpHandler: (request: IncomingMessage, response: ServerResponse) => void,
): Promise<SharedListener> {
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const http = createHttpServer({ keepAliveTimeout: 5_000, requestTimeout: 10_000, headersTimeout: 5_000 }, httpHandler);
  const sockets = new Set<Socket>();
  const listeners: NetServer[] = [];

  const route = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setNoDelay(true);
    const timer = setTimeout(() => socket.destroy(), FIRST_BYTES_TIMEOUT_MS);
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const compared = Math.min(head.length, HTTP2_PREFACE_START.length);
      const maybeHttp2 = head.subarray(0, compared).equals(HTTP2_PREFACE_START.subarray(0, compared));
      if (maybeHttp2 && head.length < HTTP2_PREFACE_START.length) return; // wait for the rest of "PRI "
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onEarlyError);
      socket.pause();
      if (maybeHttp2) {
        socket.unshift(head);
        injector.injectConnection(socket);
      } else {
        http.emit('connection', socket);
        socket.emit('data', head);
        socket.resume();
      }
    };
    const onEarlyError = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.on('data', onData);
    socket.on('error', onEarlyError);
  };

  const closeListeners = (): Promise<void> =>
    Promise.all(listeners.map((listener) => new Promise<void>((resolve) => listener.close(() => resolve())))).then(() => undefined);
  const ports: number[] = [];
  try {
    for (const address of addresses) {
      const listener = createNetServer({ noDelay: true }, route);
      listeners.push(listener);
      const hostname = address.host.startsWith('[') ? address.host.slice(1, -1) : address.host;
      ports.push(
        await new Promise<number>((resolve, reject) => {
          listener.once('error', reject);
          listener.listen(address.port, hostname, () => {
            listener.off('error', reject);
            const bound = listener.address();
            resolve(typeof bound === 'object' && bound !== null ? bound.port : address.port);
          });
        }),
      );
    }
  } catch (error) {
    for (const listener of listeners) listener.close();
    injector.destroy();
    throw error;
  }

  let closing: Promise<void> | undefined;
  return {
    ports,
    close: () => {
      closing ??= (async () => {
        // The gRPC server's own shutdown ends its sessions (the injector's HTTP/2 server is
        // among those it closes); the listeners report closed once every socket has ended.
        const closed = closeListeners();
        http.closeAllConnections();
        await closed;
      })();
      return closing;
    },
    destroy: () => {
      for (const socket of sockets) socket.destroy();
      http.closeAllConnections();
      injector.destroy();
      for (const listener of listeners) listener.close();
    },
  };
}

// measureDiff: what a Merkle diff costs, for the integrity benchmark (issue 13's "diff bytes on
// the wire and seconds for 1 and for 100 differences among 1M keys; goal for 1: <= 64 KiB,
// <= 2 s"). It runs the real DiffClient against two endpoints (members of one cluster, or of
// two clusters) and answers the bytes both ways, the calls, the rounds and the seconds. Given
// `countSocketBytes`, the client talks to each member through a local TCP proxy that counts
// every byte of the connection (HTTP/2 framing and headers included), beside the client's own
// count of messages.
//
// The in-process fixture (buildDiffStores, serveDigestPins) makes two KvStateMachines on
// memory-level with `keys` equal keys and `differences` planted ones (a third each missing,
// extra, changed), each served behind a real gRPC server with only the Admin service's Diff*
// methods over StateMachineDigestPins: two "clusters" that a cluster diff compares on content.

import { createServer, connect } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';

import { Server, ServerCredentials } from '@grpc/grpc-js';

import type { DiffReport } from '../../src/client/index.ts';
import { DiffClient } from '../../src/client/index.ts';
import { StateMachineDigestPins } from '../../src/diff/index.ts';
import type { Entry } from '../../src/raft/index.ts';
import { createDiffService, loadAdminService } from '../../src/server/index.ts';
import type { KvRequest, KvStateMachine } from '../../src/storage/index.ts';
import { encodeKvCommand, openMemoryKvStateMachine } from '../../src/storage/index.ts';
import { SeededRandom } from '../../src/util/random.ts';

/** DiffMeasureOptions say what to diff. */
export interface DiffMeasureOptions {
  readonly endpoints: readonly string[];
  readonly against: readonly string[];
  readonly prefix?: Uint8Array;
  /** Also count every byte of the connections, through a counting proxy per endpoint. */
  readonly countSocketBytes?: boolean;
  /** Skip fetching the differing values (the bare descent and key exchange). */
  readonly skipValues?: boolean;
}

/** DiffMeasurement is what one diff found and cost. */
export interface DiffMeasurement {
  readonly differences: number;
  /** Request and response messages (protobuf plus gRPC's 5-byte headers), as DiffClient counts them. */
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** Every byte of the TCP connections (with countSocketBytes), both ways. */
  readonly socketBytesSent: number | undefined;
  readonly socketBytesReceived: number | undefined;
  readonly calls: number;
  readonly rounds: number;
  readonly seconds: number;
  readonly report: DiffReport;
}

/** measureDiff runs one diff and answers its cost (see the file comment). */
export async function measureDiff(options: DiffMeasureOptions): Promise<DiffMeasurement> {
  const proxies: CountingProxy[] = [];
  const through = async (endpoints: readonly string[]): Promise<string[]> => {
    if (options.countSocketBytes !== true) return [...endpoints];
    const out: string[] = [];
    for (const endpoint of endpoints) {
      const proxy = await startCountingProxy(endpoint);
      proxies.push(proxy);
      out.push(proxy.endpoint);
    }
    return out;
  };
  const client = new DiffClient();
  try {
    const report = await client.diff({
      endpoints: await through(options.endpoints),
      against: await through(options.against),
      ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
      ...(options.skipValues === true ? { skipValues: true } : {}),
    });
    client.close();
    // The proxies see the last bytes (the connections' goodbyes) once the client is closed.
    await new Promise((resolve) => setTimeout(resolve, 20));
    return {
      differences: report.differences.length,
      bytesSent: report.stats.bytesSent,
      bytesReceived: report.stats.bytesReceived,
      socketBytesSent: options.countSocketBytes === true ? proxies.reduce((total, proxy) => total + proxy.bytesSent, 0) : undefined,
      socketBytesReceived: options.countSocketBytes === true ? proxies.reduce((total, proxy) => total + proxy.bytesReceived, 0) : undefined,
      calls: report.stats.calls,
      rounds: report.stats.rounds,
      seconds: report.stats.seconds,
      report,
    };
  } finally {
    client.close();
    for (const proxy of proxies) await proxy.close();
  }
}

/** CountingProxy forwards one local port to an endpoint and counts the bytes each way. */
export interface CountingProxy {
  readonly endpoint: string;
  /** Client to member. */
  readonly bytesSent: number;
  /** Member to client. */
  readonly bytesReceived: number;
  close(): Promise<void>;
}

/** startCountingProxy starts a CountingProxy in front of `endpoint` (host:port). */
export async function startCountingProxy(endpoint: string): Promise<CountingProxy> {
  const colon = endpoint.lastIndexOf(':');
  const host = endpoint.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(endpoint.slice(colon + 1));
  const counts = { sent: 0, received: 0 };
  const sockets = new Set<Socket>();
  const server: NetServer = createServer((inbound) => {
    const outbound = connect(port, host);
    sockets.add(inbound);
    sockets.add(outbound);
    inbound.on('data', (chunk: Buffer) => {
      counts.sent += chunk.byteLength;
    });
    outbound.on('data', (chunk: Buffer) => {
      counts.received += chunk.byteLength;
    });
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    const end = (): void => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on('error', end);
    outbound.on('error', end);
    inbound.on('close', end);
    outbound.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    get bytesSent() {
      return counts.sent;
    },
    get bytesReceived() {
      return counts.received;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** ServedPins is a gRPC server answering the diff from one pin source. */
export interface ServedPins {
  readonly endpoint: string;
  close(): Promise<void>;
}

/** serveDigestPins serves the Admin service's Diff* methods over `pins` on a free local port (nothing else). */
export async function serveDigestPins(pins: StateMachineDigestPins): Promise<ServedPins> {
  const server = new Server({ 'grpc.enable_channelz': 0 });
  const service = createDiffService({ pins });
  server.addService(loadAdminService(), service.implementation);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
  });
  return {
    endpoint: `127.0.0.1:${port}`,
    close: async () => {
      service.close();
      await pins.close();
      server.forceShutdown();
    },
  };
}

/** DiffStores are two state machines that differ in `planted` keys. */
export interface DiffStores {
  readonly a: KvStateMachine;
  readonly b: KvStateMachine;
  /** The planted differences as `stratakv diff` prints their kind and key: `missing KEY`, sorted by key. */
  readonly planted: readonly string[];
  close(): Promise<void>;
}

/** diffKeyName is the n-th key of the fixture (user/0000042). */
export const diffKeyName = (n: number): string => `user/${String(n).padStart(7, '0')}`;

/**
 * buildDiffStores makes the fixture's two stores: `keys` keys on both (written in another
 * order on B, so revisions differ as between two clusters), then `differences` planted on B:
 * deleted (missing), added (extra), rewritten (different), in turn.
 */
export async function buildDiffStores(options: { readonly keys: number; readonly differences: number; readonly seed?: number; readonly valueBytes?: number }): Promise<DiffStores> {
  const random = new SeededRandom(options.seed ?? 1);
  const valueOf = (n: number): string => `value ${n} `.padEnd(options.valueBytes ?? 32, '.');
  const a = await openMemoryKvStateMachine();
  const b = await openMemoryKvStateMachine();
  const feed = async (machine: KvStateMachine, requests: Iterable<KvRequest>): Promise<void> => {
    let index = machine.appliedIndex();
    let batch: Entry[] = [];
    for (const request of requests) {
      index += 1;
      batch.push({ index, term: 1, type: 0, data: encodeKvCommand({ id: index, request }) });
      if (batch.length === 2_000) {
        await machine.apply(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await machine.apply(batch);
  };
  const puts = function* (from: number, to: number, step: number): Generator<KvRequest> {
    for (let n = from; n !== to; n += step) yield { type: 'put', key: Buffer.from(diffKeyName(n)), value: Buffer.from(valueOf(n)) };
  };
  await feed(a, puts(0, options.keys, 1));
  await feed(b, puts(options.keys - 1, -1, -1));
  const chosen = new Set<number>();
  while (chosen.size < Math.min(options.differences, options.keys)) chosen.add(random.intBelow(options.keys));
  const planted: string[] = [];
  const changes: KvRequest[] = [];
  for (const [turn, n] of [...chosen].entries()) {
    if (turn % 3 === 0) {
      changes.push({ type: 'deleteRange', key: Buffer.from(diffKeyName(n)) });
      planted.push(`missing ${diffKeyName(n)}`);
    } else if (turn % 3 === 1) {
      changes.push({ type: 'put', key: Buffer.from(`${diffKeyName(n)}/extra`), value: Buffer.from('only in B') });
      planted.push(`extra ${diffKeyName(n)}/extra`);
    } else {
      changes.push({ type: 'put', key: Buffer.from(diffKeyName(n)), value: Buffer.from(`changed ${n}`) });
      planted.push(`different ${diffKeyName(n)}`);
    }
  }
  await feed(b, changes);
  await a.whenWritten();
  await b.whenWritten();
  planted.sort((x, y) => Buffer.compare(Buffer.from(x.slice(x.indexOf(' ') + 1)), Buffer.from(y.slice(y.indexOf(' ') + 1))));
  return {
    a,
    b,
    planted,
    close: async () => {
      await a.close();
      await b.close();
    },
  };
}

/** InProcessDiffMeasurement is measureDiff's answer for the in-process fixture, with the build time. */
export interface InProcessDiffMeasurement extends DiffMeasurement {
  readonly keys: number;
  readonly planted: readonly string[];
  readonly buildSeconds: number;
}

/**
 * measureInProcessDiff builds the fixture (buildDiffStores), serves both stores over gRPC
 * on localhost, and measures one cluster diff between them.
 */
export async function measureInProcessDiff(options: { readonly keys: number; readonly differences: number; readonly seed?: number; readonly countSocketBytes?: boolean; readonly skipValues?: boolean }): Promise<InProcessDiffMeasurement> {
  const buildStartedMs = performance.now();
  const stores = await buildDiffStores(options);
  const buildSeconds = (performance.now() - buildStartedMs) / 1000;
  const servedA = await serveDigestPins(new StateMachineDigestPins(stores.a, { clusterId: 0xa, memberId: 0xa1 }));
  const servedB = await serveDigestPins(new StateMachineDigestPins(stores.b, { clusterId: 0xb, memberId: 0xb1 }));
  try {
    const measurement = await measureDiff({
      endpoints: [servedA.endpoint],
      against: [servedB.endpoint],
      ...(options.countSocketBytes === true ? { countSocketBytes: true } : {}),
      ...(options.skipValues === true ? { skipValues: true } : {}),
    });
    return { ...measurement, keys: options.keys, planted: stores.planted, buildSeconds };
  } finally {
    await servedA.close();
    await servedB.close();
    await stores.close();
  }
}

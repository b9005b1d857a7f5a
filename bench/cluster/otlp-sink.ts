// An OTLP/HTTP receiver that keeps nothing: the traced bench targets export their spans here,
// so tracing costs what exporting costs (serializing, a POST per batch) without a collector's
// own CPU on this machine. It answers every POST to /v1/traces with 200 and an empty body
// (an empty ExportTraceServiceResponse in protobuf and in JSON alike) and counts what came.

import { createServer, type Server } from 'node:http';

/** OtlpSink is a running receiver. */
export interface OtlpSink {
  /** The endpoint for OTEL_EXPORTER_OTLP_ENDPOINT (http://127.0.0.1:port). */
  readonly endpoint: string;
  /** Export requests and their bytes received so far. */
  readonly received: { requests: number; bytes: number };
  close(): Promise<void>;
}

/** startOtlpSink starts a receiver on a free port of 127.0.0.1. */
export async function startOtlpSink(): Promise<OtlpSink> {
  const received = { requests: 0, bytes: 0 };
  const server: Server = createServer((request, response) => {
    request.on('data', (chunk: Buffer) => (received.bytes += chunk.length));
    request.on('end', () => {
      if (request.method === 'POST') received.requests += 1;
      response.writeHead(request.method === 'POST' ? 200 : 405, { 'content-length': 0 });
      response.end();
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : 0);
    });
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// putWithMetadata sends etcdserverpb.KV/Put straight over gRPC with the metadata given (a W3C
// traceparent, as an etcd client that propagates context sends it): the request is encoded
// by hand (key and value are protobuf fields 1 and 2), the reply is not decoded.

import * as grpc from '@grpc/grpc-js';

// A protobuf varint (lengths here stay far below 2^31).
function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  bytes.push(rest);
  return bytes;
}

function bytesField(number: number, bytes: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(number << 3) | 2, ...varint(bytes.byteLength)]), bytes]);
}

/** putWithMetadata resolves once the member answered the Put, or rejects with the gRPC error. */
export function putWithMetadata(endpoint: string, key: string, value: string, metadata: Readonly<Record<string, string>>, timeoutMs = 10_000): Promise<void> {
  const request = Buffer.concat([bytesField(1, Buffer.from(key)), bytesField(2, Buffer.from(value))]);
  const client = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  const sent = new grpc.Metadata();
  for (const [name, text] of Object.entries(metadata)) sent.set(name, text);
  return new Promise<void>((resolve, reject) => {
    client.makeUnaryRequest(
      '/etcdserverpb.KV/Put',
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      request,
      sent,
      { deadline: Date.now() + timeoutMs },
      (error) => {
        client.close();
        if (error === null) resolve();
        else reject(error);
      },
    );
  });
}

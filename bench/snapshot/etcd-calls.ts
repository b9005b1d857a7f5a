// The etcd calls bench:snapshot makes besides Put and Range, encoded by hand like
// bench/cluster/wire.ts (field numbers from etcd's api/etcdserverpb/rpc.proto, v3.4):
// Txn of several puts (the preload), Cluster.MemberAdd and MemberRemove (a member joins and
// leaves), and the start of a Maintenance.Snapshot stream (which makes the member take a
// snapshot of everything it applied; the bench reads one message and cancels).
import type { Client, ClientReadableStream } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';

import { openClient, unary } from '../cluster/rpc.ts';
import { decodeFields, encodeBytesFields, encodePutRequest } from '../cluster/wire.ts';

/** KV_TXN and the other paths are etcd's gRPC method paths. */
export const KV_TXN = '/etcdserverpb.KV/Txn';
export const CLUSTER_MEMBER_ADD = '/etcdserverpb.Cluster/MemberAdd';
export const CLUSTER_MEMBER_REMOVE = '/etcdserverpb.Cluster/MemberRemove';
export const MAINTENANCE_SNAPSHOT = '/etcdserverpb.Maintenance/Snapshot';

/** TXN_PUTS_MAX is etcd's default --max-txn-ops (stratakv's txnOperationsMax). */
export const TXN_PUTS_MAX = 128;
const CALL_DEADLINE_MS = 30_000;
const SNAPSHOT_FIRST_MESSAGE_MS_MAX = 300_000;
const identity = (bytes: Buffer): Buffer => bytes;

/** encodeTxnPuts encodes TxnRequest{success 2: RequestOp{request_put 2: PutRequest}} with no compares. */
export function encodeTxnPuts(pairs: readonly (readonly [Uint8Array, Uint8Array])[]): Buffer {
  if (!(pairs.length >= 1 && pairs.length <= TXN_PUTS_MAX)) throw new Error(`encodeTxnPuts: ${pairs.length} puts (1..${TXN_PUTS_MAX})`);
  return encodeBytesFields(pairs.map(([key, value]) => [2, encodeBytesFields([[2, encodePutRequest(key, value)]])] as const));
}

/** memberAdd calls Cluster.MemberAdd on `endpoint` (a learner when `isLearner`) and answers the new member's id. */
export async function memberAdd(endpoint: string, peerUrl: string, isLearner = false): Promise<bigint> {
  const client = openClient(endpoint);
  try {
    // MemberAddRequest{peerURLs 1, isLearner 2}
    const response = await unary(client, CLUSTER_MEMBER_ADD, encodeBytesFields([[1, Buffer.from(peerUrl)]], isLearner ? [[2, 1]] : []), CALL_DEADLINE_MS);
    // MemberAddResponse{header 1, member 2: Member{ID 1, …}, members 3}
    const member = decodeFields(response).find((field) => field.number === 2 && 'bytes' in field);
    const id = member !== undefined && 'bytes' in member ? decodeFields(member.bytes).find((field) => field.number === 1 && 'varint' in field) : undefined;
    if (id === undefined || !('varint' in id)) throw new Error('MemberAdd answered no member id');
    return id.varint;
  } finally {
    client.close();
  }
}

/** memberRemove calls Cluster.MemberRemove{ID 1} on `endpoint`. */
export async function memberRemove(endpoint: string, id: bigint): Promise<void> {
  const client = openClient(endpoint);
  try {
    await unary(client, CLUSTER_MEMBER_REMOVE, encodeBytesFields([], [[1, Number(id)]]), CALL_DEADLINE_MS);
  } finally {
    client.close();
  }
}

/**
 * triggerSnapshot starts Maintenance.Snapshot on `endpoint`: the member takes a snapshot of
 * what it applied (and compacts its log behind it) before it sends the first message; the
 * call is cancelled once that message arrives. Resolves with the milliseconds it took.
 */
export async function triggerSnapshot(endpoint: string): Promise<number> {
  const client: Client = openClient(endpoint);
  const started = performance.now();
  try {
    await new Promise<void>((resolve, reject) => {
      const stream: ClientReadableStream<Buffer> = client.makeServerStreamRequest(MAINTENANCE_SNAPSHOT, identity, identity, Buffer.alloc(0), new Metadata(), {
        deadline: Date.now() + SNAPSHOT_FIRST_MESSAGE_MS_MAX,
      });
      let settled = false;
      stream.on('data', () => {
        if (settled) return;
        settled = true;
        resolve();
        stream.cancel();
      });
      stream.on('error', (error: Error) => {
        if (!settled) reject(error);
        settled = true;
      });
      stream.on('end', () => {
        if (!settled) reject(new Error('Maintenance.Snapshot ended without a message'));
        settled = true;
      });
    });
  } finally {
    client.close();
  }
  return performance.now() - started;
}

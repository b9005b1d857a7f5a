// Members for bench:integrity that it runs itself: single-member clusters (the diff's and the
// stream's; each with a token of its own, so that two of them are two clusters with two
// cluster ids, as a cluster diff needs), a preload of many keys through Txns of several puts
// whose values the caller chooses (equal values on the clusters a diff compares), a delete,
// and `etcdctl endpoint hashkv` (the check that the digest-off cluster really kept none).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { freePorts, sleep, tailOf } from '../cluster/processes.ts';
import { describeError, hostPort, openClient, unary } from '../cluster/rpc.ts';
import { encodeBytesFields, encodePutRequest, KV_PUT } from '../cluster/wire.ts';
import { encodeTxnPuts, KV_TXN } from '../snapshot/etcd-calls.ts';
import { startSingle, tryStatus, type SingleMember } from '../snapshot/members.ts';

const START_TIMEOUT_MS = 120_000;
const POLL_MS = 50;
const CALL_DEADLINE_MS = 60_000;
const PRELOAD_RETRIES_MAX = 5;
const PRELOAD_CHANNELS = 2;
const ETCDCTL = '/usr/bin/etcdctl';
const ETCDCTL_TIMEOUT_MS = 30_000;
const FOLDER_DEPTH_MAX = 6;

/** KV_DELETE_RANGE is etcd's DeleteRange method path. */
export const KV_DELETE_RANGE = '/etcdserverpb.KV/DeleteRange';

/** SoloMember is a started single-member cluster. */
export interface SoloMember extends SingleMember {
  readonly name: string;
  readonly dataDir: string;
  /** grpcTarget is the endpoint as host:port (DiffClient, LogStreamClient and the counting proxy take it). */
  readonly grpcTarget: string;
}

/**
 * startSolo starts `stratakv serve` as the only member of a cluster named by `token` in
 * `folder`/`name`.data and waits (bounded) until it answers Maintenance.Status naming itself leader.
 */
export async function startSolo(folder: string, name: string, token: string, serveFlags: readonly string[]): Promise<SoloMember> {
  const [client, peer] = await freePorts(2);
  const dataDir = join(folder, `${name}.data`);
  const logPath = join(folder, `${name}.log`);
  const member = startSingle(dataDir, logPath, { client: client ?? 0, peer: peer ?? 0 }, ['--initial-cluster-token', token, ...serveFlags]);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (true) {
    if (member.child.exitCode !== null || member.child.signalCode !== null) throw new Error(`${name} exited (code ${member.child.exitCode}); its log ends:\n${tailOf(logPath)}`);
    const answer = await tryStatus(member.endpoint);
    if (answer !== undefined && answer.leader !== 0n && answer.leader === answer.header.memberId) break;
    if (Date.now() > deadline) {
      await member.stop();
      throw new Error(`${name} did not lead within ${START_TIMEOUT_MS} ms; its log ends:\n${tailOf(logPath)}`);
    }
    await sleep(POLL_MS);
  }
  return { ...member, name, dataDir, grpcTarget: hostPort(member.endpoint) };
}

/** TxnPreloadOptions: `keys` keys named keyOf(i) with values valueOf(i), `putsPerTxn` per Txn, `concurrency` Txns outstanding. */
export interface TxnPreloadOptions {
  readonly endpoint: string;
  readonly keys: number;
  readonly putsPerTxn: number;
  readonly concurrency: number;
  readonly timeoutMs: number;
  readonly keyOf: (index: number) => Uint8Array;
  /** valueOf may answer a view of a scratch buffer: it is copied into the request at once. */
  readonly valueOf: (index: number) => Uint8Array;
  readonly log: (line: string) => void;
  readonly label: string;
}

/** preloadTxns writes the keys (a Txn that fails is retried, bounded: puts are idempotent) and answers the seconds and Txns. */
export async function preloadTxns(options: TxnPreloadOptions): Promise<{ seconds: number; txns: number; retries: number }> {
  const clients = Array.from({ length: PRELOAD_CHANNELS }, (_, index) => openClient(options.endpoint, 200 + index));
  const started = performance.now();
  const deadline = Date.now() + options.timeoutMs;
  let next = 0;
  let done = 0;
  let txns = 0;
  let retries = 0;
  let reported = 0;
  const worker = async (worker: number): Promise<void> => {
    const client = clients[worker % clients.length];
    if (client === undefined) throw new Error('no client');
    while (next < options.keys) {
      if (Date.now() > deadline) throw new Error(`${options.label} preload: ${done} of ${options.keys} keys after ${options.timeoutMs} ms`);
      const first = next;
      const count = Math.min(options.putsPerTxn, options.keys - first);
      next += count;
      const pairs = Array.from({ length: count }, (_, offset) => [options.keyOf(first + offset), Buffer.from(options.valueOf(first + offset))] as const);
      const request = encodeTxnPuts(pairs);
      for (let attempt = 0; ; attempt += 1) {
        try {
          await unary(client, KV_TXN, request, CALL_DEADLINE_MS);
          break;
        } catch (error) {
          if (attempt >= PRELOAD_RETRIES_MAX) throw new Error(`${options.label} preload: a Txn failed ${attempt + 1} times: ${describeError(error)}`);
          retries += 1;
          await sleep(500);
        }
      }
      txns += 1;
      done += count;
      if (done - reported >= options.keys / 4) {
        reported = done;
        options.log(`  ${options.label}: preloaded ${done} of ${options.keys} keys in ${((performance.now() - started) / 1000).toFixed(0)} s`);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, (_, index) => worker(index)));
  } finally {
    for (const client of clients) client.close();
  }
  return { seconds: (performance.now() - started) / 1000, txns, retries };
}

/** putKey puts one key (KV.Put) on `endpoint`. */
export async function putKey(endpoint: string, key: Uint8Array, value: Uint8Array): Promise<void> {
  const client = openClient(endpoint);
  try {
    await unary(client, KV_PUT, encodePutRequest(key, value), CALL_DEADLINE_MS);
  } finally {
    client.close();
  }
}

/** deleteKey deletes one key (KV.DeleteRange{key 1}) on `endpoint`. */
export async function deleteKey(endpoint: string, key: Uint8Array): Promise<void> {
  const client = openClient(endpoint);
  try {
    await unary(client, KV_DELETE_RANGE, encodeBytesFields([[1, key]]), CALL_DEADLINE_MS);
  } finally {
    client.close();
  }
}

/** HashKvAnswer is one endpoint's `etcdctl endpoint hashkv` line, or why there is none. */
export interface HashKvAnswer {
  readonly endpoint: string;
  readonly hash: number | undefined;
  readonly error?: string;
}

/**
 * etcdctlHashKv runs `etcdctl endpoint hashkv` (ETCDCTL_API=3, JSON output) against each
 * endpoint: a member that keeps no digest answers hash 0 (the first 32 bits of the empty root).
 * The endpoint is given as host:port: etcdctl 3.4's endpoint commands dial the endpoint text
 * as it is, so `http://host:port` becomes the HTTP/2 :authority, which Node's HTTP/2 server
 * refuses (RST_STREAM PROTOCOL_ERROR) where etcd's Go server takes it.
 */
export function etcdctlHashKv(endpoints: readonly string[]): HashKvAnswer[] {
  return endpoints.map((endpoint) => {
    const child = spawnSync(ETCDCTL, ['--endpoints', hostPort(endpoint), 'endpoint', 'hashkv', '-w', 'json'], {
      encoding: 'utf8',
      timeout: ETCDCTL_TIMEOUT_MS,
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    if (child.error !== undefined) return { endpoint, hash: undefined, error: child.error.message };
    if (child.status !== 0) return { endpoint, hash: undefined, error: (child.stderr || child.stdout).trim().split('\n')[0] ?? `exit ${child.status}` };
    // etcdctl prints protobuf's JSON, which leaves out a field at its zero value: a HashKV
    // without "hash" is hash 0.
    const match = /"hash":\s*(\d+)/.exec(child.stdout);
    if (match?.[1] !== undefined) return { endpoint, hash: Number(match[1]) };
    return child.stdout.includes('"HashKV"') ? { endpoint, hash: 0 } : { endpoint, hash: undefined, error: `no HashKV in ${child.stdout.trim()}` };
  });
}

/** folderFiles lists the regular files under `path` (bounded depth) with their sizes. */
export function folderFiles(path: string, depth = 0): { path: string; bytes: number }[] {
  if (depth > FOLDER_DEPTH_MAX) return [];
  let names: string[];
  try {
    names = readdirSync(path);
  } catch {
    return [];
  }
  const files: { path: string; bytes: number }[] = [];
  for (const name of names) {
    const full = join(path, name);
    const stat = statSync(full, { throwIfNoEntry: false });
    if (stat === undefined) continue;
    if (stat.isDirectory()) files.push(...folderFiles(full, depth + 1));
    else if (stat.isFile()) files.push({ path: full, bytes: stat.size });
  }
  return files;
}

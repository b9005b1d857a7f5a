// A single in-memory member (single-member.ts) served over real gRPC with every service the
// copy tests use: etcd's KV and the Admin service's mirror, log-stream and diff calls.

import type { EtcdServer } from '../../src/server/index.ts';
import { raftNodeDigestPins, raftNodeLogSource, startEtcdServer } from '../../src/server/index.ts';
import type { SingleMember } from './single-member.ts';
import { freeClientUrl, startSingleMember } from './single-member.ts';

/** Served is a member and its server. */
export interface Served {
  readonly member: SingleMember;
  readonly server: EtcdServer;
  /** host:port */
  readonly endpoint: string;
}

/** serveMember starts a member named `name` and serves it (the Admin service needs the log source and the pins). */
export async function serveMember(name: string): Promise<Served> {
  const clientUrl = await freeClientUrl();
  const member = await startSingleMember({ name, clientUrls: [clientUrl] });
  const server = await startEtcdServer({
    backend: member.backend,
    listenUrls: [clientUrl],
    maxRequestBytes: 1.5 * 1024 * 1024,
    logSource: raftNodeLogSource(member.node),
    digestPins: raftNodeDigestPins(member.node),
  });
  return { member, server, endpoint: (server.urls[0] ?? '').slice('http://'.length) };
}

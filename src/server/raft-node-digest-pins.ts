// raftNodeDigestPins: a RaftNode's digest views as the Merkle diff reads them (src/diff's
// DigestPinSource), through RaftNode's pin surface: pinDigestView (at the applied state, or at
// a checkpoint agreed through Raft, where every member pins its view under the same id),
// digestView (waiting for a checkpoint this member has not applied yet) and releaseDigestView.

import type { DigestPinSource } from '../diff/index.ts';
import type { RaftNode } from '../node/index.ts';

/** DigestPinningNode is the part of RaftNode this adapter uses (tests may give a stand-in). */
export type DigestPinningNode = Pick<RaftNode, 'clusterId' | 'memberId' | 'pinDigestView' | 'digestView' | 'releaseDigestView'>;

/** raftNodeDigestPins adapts `node` to DigestPinSource; pass it to startEtcdServer as `digestPins`. */
export function raftNodeDigestPins(node: DigestPinningNode): DigestPinSource {
  return {
    clusterId: node.clusterId,
    memberId: node.memberId,
    pin: (options) => node.pinDigestView({ at: options.at, timeoutMs: options.timeoutMs, ...(options.signal === undefined ? {} : { signal: options.signal }) }),
    view: (pinId, options) => node.digestView(pinId, { timeoutMs: options.timeoutMs, ...(options.signal === undefined ? {} : { signal: options.signal }) }),
    release: (pinId) => node.releaseDigestView(pinId),
  };
}

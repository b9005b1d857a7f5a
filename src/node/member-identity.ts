// How members and clusters get their ids. Ids are derived, not random, so that every member
// started with the same --initial-cluster computes the same ids without talking first, and a
// member that joins later (--initial-cluster-state existing) computes its own id from its
// advertised peer URLs, exactly as the leader did when the member was added.

import { createHash } from 'node:crypto';
import { assert } from '../util/assert.ts';

// 48 bits: well inside Number's safe integers, and far from collisions in any real cluster.
const ID_BYTES = 6;

function hashToId(parts: readonly string[]): number {
  const digest = createHash('sha256').update(parts.join('\n')).digest();
  let id = 0;
  for (let offset = 0; offset < ID_BYTES; offset += 1) id = id * 256 + (digest[offset] ?? 0);
  // 0 means "no node" to Raft; the chance is 2^-48, but an id must never be 0.
  return id === 0 ? 1 : id;
}

/**
 * memberIdFor derives a member id from its peer URLs and the cluster token (etcd derives it
 * from the same two inputs). The same URLs in the same cluster give the same id, so a removed
 * member cannot come back under its old URLs (the cluster refuses the old id).
 */
export function memberIdFor(peerUrls: readonly string[], clusterToken: string): number {
  assert(peerUrls.length > 0, 'a member needs at least one peer URL');
  return hashToId(['member', clusterToken, ...[...peerUrls].sort()]);
}

/**
 * clusterIdFor derives the cluster id from the cluster token alone, so that a member joining
 * later knows it without asking: give every cluster its own --initial-cluster-token (as etcd
 * advises) and two clusters can never exchange messages by mistake.
 */
export function clusterIdFor(clusterToken: string): number {
  return hashToId(['cluster', clusterToken]);
}

/** formatMemberId shows an id as etcd does: lower-case hex without leading zeros. */
export function formatMemberId(id: number): string {
  return id.toString(16);
}

// Quorum arithmetic over majority and joint configurations (after etcd-io/raft's quorum/).
// Kept apart from progress tracking so the rules "a majority of each half" and "commit is
// the highest index a quorum has" can be read and tested on their own.

import { assert } from '../util/assert.ts';
import type { Index, NodeId } from './types.ts';

/** VoteResult is the outcome of counting votes. */
export type VoteResult = 'pending' | 'won' | 'lost';

/**
 * majorityCommittedIndex returns the largest index that a majority of `voters` have
 * acknowledged, according to `ackedIndex`. An empty voter set commits everything
 * (Infinity), so that a joint config with an empty half is decided by the other half.
 */
export function majorityCommittedIndex(voters: ReadonlySet<NodeId>, ackedIndex: (id: NodeId) => Index): Index {
  const count = voters.size;
  if (count === 0) return Number.POSITIVE_INFINITY;
  const acked: Index[] = [];
  for (const id of voters) acked.push(ackedIndex(id));
  acked.sort((a, b) => b - a);
  // With acked sorted descending, the entry at position quorum-1 is held by a majority.
  const quorum = Math.floor(count / 2) + 1;
  const committed = acked[quorum - 1];
  assert(committed !== undefined, 'quorum position within voters');
  return committed;
}

/** majorityVoteResult counts granted (true) and rejected (false) votes among `voters`. */
export function majorityVoteResult(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.size === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === undefined) missing += 1;
    else if (vote) granted += 1;
  }
  const quorum = Math.floor(voters.size / 2) + 1;
  if (granted >= quorum) return 'won';
  if (granted + missing >= quorum) return 'pending';
  return 'lost';
}

/** JointConfig is the incoming and outgoing voter sets; outgoing is empty when not joint. */
export interface JointConfig {
  readonly incoming: ReadonlySet<NodeId>;
  readonly outgoing: ReadonlySet<NodeId>;
}

/** jointCommittedIndex is the smaller of the two halves' committed indexes (§6, joint consensus). */
export function jointCommittedIndex(config: JointConfig, ackedIndex: (id: NodeId) => Index): Index {
  const incoming = majorityCommittedIndex(config.incoming, ackedIndex);
  const outgoing = majorityCommittedIndex(config.outgoing, ackedIndex);
  return Math.min(incoming, outgoing);
}

/** jointVoteResult wins only when both halves win, and loses when either loses. */
export function jointVoteResult(config: JointConfig, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const incoming = majorityVoteResult(config.incoming, votes);
  const outgoing = majorityVoteResult(config.outgoing, votes);
  if (incoming === outgoing) return incoming;
  if (incoming === 'lost' || outgoing === 'lost') return 'lost';
  return 'pending';
}

/** jointVoterIds lists every voter of either half once. */
export function jointVoterIds(config: JointConfig): Set<NodeId> {
  const ids = new Set<NodeId>(config.incoming);
  for (const id of config.outgoing) ids.add(id);
  return ids;
}

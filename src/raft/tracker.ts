// The leader's view of the cluster: the membership configuration (possibly joint), one
// Progress per member, and the votes of the current election (after etcd-io/raft's
// tracker/tracker.go).

import { assert } from '../util/assert.ts';
import { Progress } from './progress.ts';
import type { JointConfig, VoteResult } from './quorum.ts';
import { jointCommittedIndex, jointVoteResult, jointVoterIds } from './quorum.ts';
import type { ConfState, Index, NodeId } from './types.ts';

/** TrackerConfig is a membership configuration. */
export interface TrackerConfig {
  readonly voters: JointConfig;
  // Invariant: learners and voters (either half) are disjoint.
  readonly learners: ReadonlySet<NodeId>;
  // Invariant: learnersNext are outgoing voters that become learners when joint is left;
  // they are in voters.outgoing and not in voters.incoming.
  readonly learnersNext: ReadonlySet<NodeId>;
  readonly autoLeave: boolean;
}

/** ProgressTracker holds configuration, progress and votes. */
export class ProgressTracker {
  config: TrackerConfig;
  progress: Map<NodeId, Progress> = new Map();
  votes: Map<NodeId, boolean> = new Map();
  readonly inflightCountMax: number;
  readonly inflightBytesMax: number;

  constructor(inflightCountMax: number, inflightBytesMax: number) {
    this.inflightCountMax = inflightCountMax;
    this.inflightBytesMax = inflightBytesMax;
    this.config = emptyTrackerConfig();
  }

  /** isJoint tells whether the configuration is joint. */
  isJoint(): boolean {
    return this.config.voters.outgoing.size > 0;
  }

  /** voterIds lists every voter of either half. */
  voterIds(): Set<NodeId> {
    return jointVoterIds(this.config.voters);
  }

  /** isVoter tells whether id votes in either half. */
  isVoter(id: NodeId): boolean {
    return this.config.voters.incoming.has(id) || this.config.voters.outgoing.has(id);
  }

  /** committed is the highest index a quorum has persisted (match indexes). */
  committed(): Index {
    const committed = jointCommittedIndex(this.config.voters, (id) => this.progress.get(id)?.match ?? 0);
    // An empty configuration commits nothing: Infinity only means "this half has no say".
    return Number.isFinite(committed) ? committed : 0;
  }

  /** recordVote records a vote once; later votes from the same node are ignored. */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  /** resetVotes forgets the votes of the previous election. */
  resetVotes(): void {
    this.votes = new Map();
  }

  /** tallyVotes counts the recorded votes against the configuration. */
  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voterIds()) {
      const vote = this.votes.get(id);
      if (vote === true) granted += 1;
      else if (vote === false) rejected += 1;
    }
    return { granted, rejected, result: jointVoteResult(this.config.voters, this.votes) };
  }

  /** quorumActive tells whether a quorum of voters has been recently active. */
  quorumActive(): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const [id, progress] of this.progress) {
      if (!progress.isLearner) votes.set(id, progress.recentActive);
    }
    return jointVoteResult(this.config.voters, votes) === 'won';
  }

  /** confState describes the configuration for snapshots and the application. */
  confState(): ConfState {
    return {
      voters: sortedIds(this.config.voters.incoming),
      learners: sortedIds(this.config.learners),
      votersOutgoing: sortedIds(this.config.voters.outgoing),
      learnersNext: sortedIds(this.config.learnersNext),
      autoLeave: this.config.autoLeave,
    };
  }

  /** newProgress makes the progress for a node added to the configuration. */
  newProgress(next: Index, isLearner: boolean): Progress {
    assert(next >= 1, 'next index starts at 1');
    return new Progress({
      next,
      match: 0,
      isLearner,
      inflightCountMax: this.inflightCountMax,
      inflightBytesMax: this.inflightBytesMax,
    });
  }
}

/** emptyTrackerConfig is the configuration of a node with no members. */
export function emptyTrackerConfig(): TrackerConfig {
  return {
    voters: { incoming: new Set(), outgoing: new Set() },
    learners: new Set(),
    learnersNext: new Set(),
    autoLeave: false,
  };
}

/** sortedIds lists a set of ids in ascending order (configs are compared and printed). */
export function sortedIds(ids: ReadonlySet<NodeId>): NodeId[] {
  return [...ids].sort((a, b) => a - b);
}

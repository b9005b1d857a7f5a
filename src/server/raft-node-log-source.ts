// raftNodeLogSource: a RaftNode's committed log as the log-delta stream reads it (src/diff's
// LogDeltaSource), through RaftNode's read-only stream surface, and the log holds its
// consumers place (Admin.LogHold, through RaftNode.holdLog).

import type { LogDeltaSource } from '../diff/index.ts';
import type { RaftNode } from '../node/index.ts';

/** raftNodeLogSource adapts `node` to LogDeltaSource; pass it to startEtcdServer as `logSource`. */
export function raftNodeLogSource(node: RaftNode): LogDeltaSource {
  return {
    committedIndex: () => node.streamCommittedIndex(),
    firstIndex: () => node.logFirstIndex(),
    readCommittedEntries: (from, toInclusive, maxBytes) => node.readCommittedEntries(from, toInclusive, maxBytes),
    openSnapshot: async (options) => {
      const stream = await node.openSnapshotForStream(options.id === undefined ? {} : { id: options.id });
      const { id, index, term, revision, byteLength, sha256 } = stream.info;
      return {
        meta: { id, index, term, revision, byteLength, sha256 },
        read: (offset, maxBytes) => stream.read(offset, maxBytes),
        close: () => stream.close(),
      };
    },
    waitForCommit: (afterIndex, options) => node.waitForApplied(afterIndex, options),
    isRemoved: () => node.status().removed,
    holdLog: async (consumer, index, ttlMs, options) => ({ memberId: node.memberId, ...(await node.holdLog(consumer, index, ttlMs, options)) }),
  };
}

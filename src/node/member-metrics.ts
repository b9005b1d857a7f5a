// The driver's side of a member's metrics (src/obs/metrics.ts): the storage timings that
// reach the metrics once they exist, a migration record read for them, and the heartbeat
// round trips etcd_network_peer_round_trip_time_seconds is made of.
//
// Round trips: a leader sends every follower a heartbeat each heartbeat interval, and the
// follower answers at once; the time from the first heartbeat sent since the last answer to
// the next answer is the round trip (network, both transports' queues, the follower's step).
// etcd measures its peers with a separate prober; ours costs no extra message.

import type { Message, NodeId } from '../raft/index.ts';
import type { MemberMetrics, MigrationMetricView } from '../obs/index.ts';

/** StorageTimingSink forwards the storage's timings to the metrics, once the node created them. */
export class StorageTimingSink {
  /** Set by the node when it has metrics; until then (and without metrics) timings are dropped. */
  target: MemberMetrics | undefined;

  /** The DiskLogStore's onSynced. */
  readonly onSynced = (durationMs: number): void => this.target?.walSynced(durationMs / 1000);
  /** The KvStateMachine's onBatchWritten. */
  readonly onBatchWritten = (durationMs: number): void => this.target?.backendCommitted(durationMs / 1000);
}

/** migrationMetricView reads the journal's record with `describe` (src/migrate's format); undefined when there is none or it cannot be read. */
export function migrationMetricView(record: string | undefined, describe: ((record: string) => MigrationMetricView | undefined) | undefined): MigrationMetricView | undefined {
  if (record === undefined || describe === undefined) return undefined;
  try {
    return describe(record);
  } catch {
    return undefined;
  }
}

/** HeartbeatTimer turns heartbeats and their answers into round-trip samples. */
export class HeartbeatTimer {
  readonly #metrics: MemberMetrics;
  readonly #now: () => number;
  // Per peer: when the first heartbeat unanswered so far left (ms on `now`'s clock).
  readonly #sentMs = new Map<NodeId, number>();

  constructor(metrics: MemberMetrics, now: () => number) {
    this.#metrics = metrics;
    this.#now = now;
  }

  /** sent notes the heartbeats among messages about to leave. */
  sent(messages: readonly Message[]): void {
    for (const message of messages) {
      if (message.type === 'heartbeat' && !this.#sentMs.has(message.to)) this.#sentMs.set(message.to, this.#now());
    }
  }

  /** received records a round trip for each heartbeat answer among messages that arrived. */
  received(messages: readonly Message[]): void {
    for (const message of messages) {
      if (message.type !== 'heartbeatResponse') continue;
      const sentMs = this.#sentMs.get(message.from);
      if (sentMs === undefined) continue;
      this.#sentMs.delete(message.from);
      this.#metrics.peerRoundTrip(message.from.toString(16), Math.max(0, this.#now() - sentMs) / 1000);
    }
  }

  /** forget drops a removed peer's pending heartbeat. */
  forget(peer: NodeId): void {
    this.#sentMs.delete(peer);
  }
}

// SnapshotSender: the leader's snapshot sends to followers that fell behind the compacted log
// (or new members). Raft emits a snapshot message; instead of riding the message stream, the
// snapshot file it names is streamed by the transport (chunked, CRC32c per chunk, resumable,
// rate-limited: slower while the leader serves clients), and Raft is told how it went
// (reportSnapshot).
//
// A send is: waiting for its file (lease taken, reader opened) → streaming → settled. While
// it runs, its snapshot is leased (renewed as bytes are acknowledged), so retention never
// deletes it, and its index is reported to the snapshotter, which never compacts the log
// past it (the follower needs the entries after it).
//
// The rate limit is the leader's, shared: n sends each run at 1/n of it (asked again before
// every chunk, so a send speeds up when another ends).
//
// Invariants: at most `sendsMax` sends run at once and at most one per follower; a message
// for a follower that already has a send running is dropped (Raft holds the follower in its
// snapshot state until reportSnapshot, so it does not ask twice), and one beyond `sendsMax`
// is reported failed at once (Raft probes the follower again and asks later). Every send
// settles: by result, by the transport's progress timeouts, or by failAll() on stop.

import type { Tracer } from '@opentelemetry/api';
import { SpanKind } from '@opentelemetry/api';
import { ATTR_RAFT_PEER, ATTR_SNAPSHOT_BYTES, ATTR_SNAPSHOT_ID, ATTR_SNAPSHOT_INDEX, withSpan } from '../obs/index.ts';
import type { Index, Logger, NodeId, SnapshotMessage } from '../raft/index.ts';
import type { SnapshotLease, SnapshotStore } from '../snapshot/index.ts';
import type { Transport } from '../transport/index.ts';
import type { Clock } from '../util/index.ts';
import { decodeSnapshotDescriptor } from './snapshot-descriptor.ts';

/** SnapshotSenderOptions builds a SnapshotSender. */
export interface SnapshotSenderOptions {
  readonly transport: Transport;
  readonly snapshots: SnapshotStore;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly sendsMax: number;
  /**
   * The rate the running sends share, asked again before each chunk (it follows the leader's
   * load): each of n sends runs at 1/n of it, so adding new members at once (a migration adds
   * three learners) costs the leader no more than adding one.
   */
  readonly bytesPerSecond: () => number;
  readonly leaseMs: number;
  /** Tells Raft whether the snapshot reached the follower. */
  readonly report: (peer: NodeId, ok: boolean) => void;
  /** Each send is a `snapshot.send` span; undefined: no tracing. */
  readonly tracer?: Tracer | undefined;
}

/** SnapshotSendStatus is one running send, for status(). */
export interface SnapshotSendStatus {
  readonly peer: NodeId;
  readonly index: Index;
  readonly snapshotId: string;
  readonly acknowledgedBytes: number;
  readonly byteLength: number;
}

interface RunningSend {
  readonly peer: NodeId;
  readonly index: Index;
  readonly snapshotId: string;
  readonly byteLength: number;
  acknowledgedBytes: number;
  readonly abort: AbortController;
}

/** SnapshotSender runs the leader's snapshot sends; see the header of this file. */
export class SnapshotSender {
  private readonly options: SnapshotSenderOptions;
  private readonly running = new Map<NodeId, RunningSend>();
  private closed = false;

  constructor(options: SnapshotSenderOptions) {
    this.options = options;
  }

  /** sending lists the sends running now. */
  sending(): SnapshotSendStatus[] {
    return [...this.running.values()].map(({ peer, index, snapshotId, acknowledgedBytes, byteLength }) => ({ peer, index, snapshotId, acknowledgedBytes, byteLength }));
  }

  /** sendingIndexes are the indexes of the snapshots being sent (the log is not compacted past them). */
  sendingIndexes(): Index[] {
    return [...this.running.values()].map((send) => send.index);
  }

  /** send starts streaming the snapshot a Raft message names to its follower. */
  send(message: SnapshotMessage): void {
    void this.sendAndWait(message);
  }

  /**
   * sendAndWait sends like send() and resolves whether the follower took the snapshot (false
   * too when a send to it already runs, or too many do): a member rebuilding its state asks
   * for the leader's snapshot this way, outside Raft's own snapshot state.
   */
  sendAndWait(message: SnapshotMessage): Promise<boolean> {
    const peer = message.to;
    if (this.closed || this.running.has(peer)) return Promise.resolve(false);
    if (this.running.size >= this.options.sendsMax) {
      this.options.logger.debug('snapshot send deferred: too many sends running', { to: peer, running: this.running.size });
      this.options.report(peer, false);
      return Promise.resolve(false);
    }
    let snapshotId: string;
    let byteLength: number;
    try {
      ({ snapshotId, byteLength } = decodeSnapshotDescriptor(message.snapshot.data));
    } catch (error) {
      this.options.logger.warn('a snapshot message carries a malformed descriptor', { to: peer, reason: String(error) });
      this.options.report(peer, false);
      return Promise.resolve(false);
    }
    const send: RunningSend = { peer, index: message.snapshot.metadata.index, snapshotId, byteLength, acknowledgedBytes: 0, abort: new AbortController() };
    this.running.set(peer, send);
    return this.run(send, message).then(
      (ok) => {
        this.settle(send, ok);
        return ok;
      },
      (error: unknown) => {
        this.options.logger.warn('snapshot send failed', { to: peer, snapshotId, reason: String(error) });
        this.settle(send, false);
        return false;
      },
    );
  }

  /** cancel stops the send to `peer` (it was removed, or is no longer a follower of ours). */
  cancel(peer: NodeId): void {
    this.running.get(peer)?.abort.abort();
  }

  /** failAll stops every send; each is reported failed. No send starts afterwards. */
  failAll(): void {
    this.closed = true;
    for (const send of this.running.values()) send.abort.abort();
  }

  private settle(send: RunningSend, ok: boolean): void {
    if (this.running.get(send.peer) === send) this.running.delete(send.peer);
    this.options.report(send.peer, ok);
  }

  private run(send: RunningSend, message: SnapshotMessage): Promise<boolean> {
    const attributes = { [ATTR_RAFT_PEER]: send.peer.toString(16), [ATTR_SNAPSHOT_ID]: send.snapshotId, [ATTR_SNAPSHOT_INDEX]: send.index, [ATTR_SNAPSHOT_BYTES]: send.byteLength };
    return withSpan(this.options.tracer, 'snapshot.send', { attributes, kind: SpanKind.CLIENT }, async (span) => {
      const ok = await this.stream(send, message);
      span?.setAttribute('stratakv.snapshot.sent', ok);
      return ok;
    });
  }

  private async stream(send: RunningSend, message: SnapshotMessage): Promise<boolean> {
    const { snapshots, transport, logger } = this.options;
    let lease: SnapshotLease;
    try {
      lease = snapshots.lease(send.snapshotId, this.options.leaseMs);
    } catch (error) {
      // Retention deleted it after a newer snapshot was recorded: Raft asks again with that one.
      logger.info('snapshot to send is gone; a newer one will be sent', { to: send.peer, snapshotId: send.snapshotId, reason: String(error) });
      return false;
    }
    try {
      const reader = await snapshots.open(send.snapshotId);
      try {
        const startedMs = this.options.clock.now();
        logger.info('sending snapshot', { to: send.peer, snapshotId: send.snapshotId, bytes: send.byteLength });
        await transport.sendSnapshot(
          message,
          { byteLength: reader.info.byteLength, read: (offset, maxBytes) => reader.readBlocks(offset, maxBytes) },
          {
            signal: send.abort.signal,
            bytesPerSecond: () => this.options.bytesPerSecond() / Math.max(1, this.running.size),
            onProgress: (acknowledgedBytes) => {
              send.acknowledgedBytes = acknowledgedBytes;
              lease.renew(this.options.leaseMs);
            },
          },
        );
        logger.info('snapshot sent', { to: send.peer, snapshotId: send.snapshotId, bytes: send.byteLength, ms: this.options.clock.now() - startedMs });
        return true;
      } finally {
        await reader.close();
      }
    } finally {
      lease.release();
    }
  }
}

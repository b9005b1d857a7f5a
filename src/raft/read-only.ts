// Pending ReadIndex requests (Raft thesis §6.4): the leader records its commit index when a
// read arrives, confirms it is still leader by a heartbeat round that carries the request's
// context, and releases the read once a quorum has answered (after etcd-io/raft's read_only.go).

import { assert } from '../util/assert.ts';
import type { Index, NodeId } from './types.ts';

/** ReadIndexRequest is one read waiting for its heartbeat quorum. */
export interface ReadIndexRequest {
  readonly index: Index;
  readonly from: NodeId;
  readonly context: Uint8Array;
  readonly acks: Set<NodeId>;
}

/** PENDING_READS_MAX bounds the reads waiting for a heartbeat quorum on one leader. */
export const PENDING_READS_MAX = 65_536;

/** contextKey turns a request context into a map key. */
export function contextKey(context: Uint8Array): string {
  let key = '';
  for (const byte of context) key += String.fromCharCode(byte);
  return key;
}

/** ReadOnlyQueue holds the reads a leader has not yet confirmed, oldest first. */
export class ReadOnlyQueue {
  private readonly pending = new Map<string, ReadIndexRequest>();
  private queue: string[] = [];

  get size(): number {
    return this.queue.length;
  }

  /** add records a read at `index`; a context already pending is ignored. Returns false when full. */
  add(index: Index, from: NodeId, context: Uint8Array): boolean {
    const key = contextKey(context);
    if (this.pending.has(key)) return true;
    if (this.queue.length >= PENDING_READS_MAX) return false;
    this.pending.set(key, { index, from, context, acks: new Set() });
    this.queue.push(key);
    return true;
  }

  /** recordAck notes that `id` answered the heartbeat carrying `context`; returns the ackers. */
  recordAck(id: NodeId, context: Uint8Array): ReadonlySet<NodeId> | undefined {
    const request = this.pending.get(contextKey(context));
    if (request === undefined) return undefined;
    request.acks.add(id);
    return request.acks;
  }

  /**
   * release removes and returns every request up to and including the one with `context`:
   * a quorum confirming a later heartbeat confirms the earlier reads too.
   */
  release(context: Uint8Array): ReadIndexRequest[] {
    const key = contextKey(context);
    const position = this.queue.indexOf(key);
    if (position < 0) return [];
    const released: ReadIndexRequest[] = [];
    for (const releasedKey of this.queue.slice(0, position + 1)) {
      const request = this.pending.get(releasedKey);
      assert(request !== undefined, 'queued read has a pending entry');
      released.push(request);
      this.pending.delete(releasedKey);
    }
    this.queue = this.queue.slice(position + 1);
    return released;
  }

  /** lastContext is the newest pending context, carried by the next heartbeat round. */
  lastContext(): Uint8Array | undefined {
    const key = this.queue[this.queue.length - 1];
    return key === undefined ? undefined : this.pending.get(key)?.context;
  }

  /** clear drops every pending read (the leader stepped down; they must be retried). */
  clear(): void {
    this.pending.clear();
    this.queue = [];
  }
}

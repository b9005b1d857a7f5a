// Flow control for one follower: the appends sent but not yet acknowledged, bounded by a
// count and by bytes (after etcd-io/raft's tracker/inflights.go).

import { assert } from '../util/assert.ts';
import type { Index } from './types.ts';

/**
 * Inflights is a FIFO of (last index, bytes) of unacknowledged appends. When it is full the
 * leader stops sending appends to that follower until acknowledgements free room.
 */
export class Inflights {
  private readonly lastIndexes: Index[] = [];
  private readonly sizesBytes: number[] = [];
  private head = 0;
  private totalBytes = 0;
  readonly countMax: number;
  readonly bytesMax: number;

  constructor(countMax: number, bytesMax: number) {
    assert(countMax > 0, 'inflight count limit must be positive');
    assert(bytesMax > 0, 'inflight bytes limit must be positive');
    this.countMax = countMax;
    this.bytesMax = bytesMax;
  }

  /** count is the number of appends in flight. */
  get count(): number {
    return this.lastIndexes.length - this.head;
  }

  /** bytes is the total size of appends in flight. */
  get bytes(): number {
    return this.totalBytes;
  }

  /** add records an append whose last entry is `lastIndex`. */
  add(lastIndex: Index, sizeBytes: number): void {
    assert(!this.full(), 'cannot add to full inflights');
    const previous = this.lastIndexes[this.lastIndexes.length - 1];
    assert(previous === undefined || this.count === 0 || lastIndex > previous, 'inflight indexes must increase');
    this.lastIndexes.push(lastIndex);
    this.sizesBytes.push(sizeBytes);
    this.totalBytes += sizeBytes;
  }

  /** freeLE frees every append whose last index is <= index. */
  freeLE(index: Index): void {
    while (this.head < this.lastIndexes.length && (this.lastIndexes[this.head] as Index) <= index) {
      this.totalBytes -= this.sizesBytes[this.head] as number;
      this.head += 1;
    }
    // Compact occasionally so the arrays stay bounded by roughly twice the window.
    if (this.head > 0 && (this.head >= this.countMax || this.head === this.lastIndexes.length)) {
      this.lastIndexes.splice(0, this.head);
      this.sizesBytes.splice(0, this.head);
      this.head = 0;
    }
    assert(this.totalBytes >= 0, 'inflight bytes never negative');
  }

  /** full tells whether no more appends may be sent. */
  full(): boolean {
    return this.count >= this.countMax || this.totalBytes >= this.bytesMax;
  }

  /** reset forgets everything in flight. */
  reset(): void {
    this.lastIndexes.length = 0;
    this.sizesBytes.length = 0;
    this.head = 0;
    this.totalBytes = 0;
  }
}

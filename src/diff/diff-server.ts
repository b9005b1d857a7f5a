// DiffServer: the serving side of the Merkle diff on one member, without gRPC: each method
// answers one call of admin.proto's Diff* (checked requests in, wire answers out) from the
// member's DigestPinSource. src/server's diff-service.ts connects it to grpc-js.
//
// A call names a tree: a pin, a hash and maybe a key range. The whole state's tree is the
// pinned view's own sums (nothing to read or keep). A range's tree is read once (a full read
// of the range at the pinned index, DiffOpen) and kept for the calls that follow, in a
// bounded cache:
//   computing (the read runs; later calls for the same tree share it) → kept (its sums, and
//   the index they were read at) → dropped (released with its pin, evicted as the least
//   recently used beyond RANGE_TREES_MAX, unused for PIN_IDLE_MS_MAX, or read at another
//   index than the pin's view now shows). Invariant: ranges.size <= RANGE_TREES_MAX; a
//   computing entry is never evicted (UNAVAILABLE when all are computing). A call that finds
//   its range dropped reads it again: slower, never wrong.
// Every call goes through the pin source (view()), so a pin in use stays alive there.

import type { DigestSums } from '../storage/index.ts';
import type { Clock } from '../util/clock.ts';
import { SYSTEM_CLOCK } from '../util/clock.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { DigestPin, DigestPinSource, PinAt } from './digest-pins.ts';
import { PIN_IDLE_MS_MAX } from './digest-pins.ts';
import type { TreeName, WireHelloResponse, WireLeafKeysResponse, WireNodesResponse, WireOpenProgress, WirePinResponse, WireValuesResponse } from './diff-protocol.ts';
import { encodeLeafKeys, OPEN_PROGRESS_KEYS, toWireValue } from './diff-protocol.ts';
import { ViewTree } from './view-tree.ts';

/** RANGE_TREES_MAX bounds the range trees a member keeps (about 2 MiB each). */
export const RANGE_TREES_MAX = 8;

/** DiffCallOptions: how long a call may wait for a checkpoint pin, and its cancel. */
export interface DiffCallOptions {
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

interface RangeEntry {
  /** The index the range was read at: a pin id names one state, this guards against a reused id. */
  readonly index: number;
  readonly sums: Promise<DigestSums>;
  computing: boolean;
  lastUsedMs: number;
}

/** DiffServer answers the diff's calls on one member (see the file comment). */
export class DiffServer {
  readonly #pins: DigestPinSource;
  readonly #clock: Clock;
  // Insertion order is use order: a use moves an entry to the end.
  readonly #ranges = new Map<string, RangeEntry>();

  constructor(options: { readonly pins: DigestPinSource; readonly clock?: Clock }) {
    this.#pins = options.pins;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
  }

  hello(): WireHelloResponse {
    return { cluster_id: this.#pins.clusterId, member_id: this.#pins.memberId };
  }

  async pin(at: PinAt, options: DiffCallOptions): Promise<WirePinResponse> {
    const pin: DigestPin = await this.#pins.pin({ at, ...options });
    return { pin_id: pin.pinId, index: pin.index, revision: pin.revision };
  }

  /** open answers the tree's root, reporting a range read's progress through `onProgress` every OPEN_PROGRESS_KEYS keys. */
  async open(name: TreeName, options: DiffCallOptions, onProgress: (keysRead: number) => void): Promise<WireOpenProgress> {
    const tree = await this.#tree(name, options, onProgress);
    return { keys_read: 0, done: true, index: tree.view.appliedIndex, revision: tree.view.revision, key_count: tree.root.keyCount, root: tree.root.sum };
  }

  async nodes(name: TreeName, level: number, parents: readonly number[], options: DiffCallOptions): Promise<WireNodesResponse> {
    const tree = await this.#tree(name, options, undefined);
    return { sums: await tree.children(level, parents) };
  }

  async leafKeys(name: TreeName, leaves: readonly number[], options: DiffCallOptions): Promise<WireLeafKeysResponse> {
    const tree = await this.#tree(name, options, undefined);
    const lists = await tree.leafKeys(leaves);
    return { leaves_answered: lists.length, keys: encodeLeafKeys(lists) };
  }

  async values(pinId: string, keys: readonly Uint8Array[], valueBytesMax: number, options: DiffCallOptions): Promise<WireValuesResponse> {
    const tree = await this.#tree({ pinId, hash: 'full' }, options, undefined);
    const values = await tree.values(keys, valueBytesMax);
    return { values: values.map(toWireValue) };
  }

  async release(pinId: string): Promise<void> {
    for (const [key, entry] of [...this.#ranges]) if (key.startsWith(`${pinId}\u0000`) && !entry.computing) this.#ranges.delete(key);
    await this.#pins.release(pinId);
  }

  /** close forgets every range tree (the pins are the source's). */
  close(): void {
    this.#ranges.clear();
  }

  async #tree(name: TreeName, options: DiffCallOptions, onProgress: ((keysRead: number) => void) | undefined): Promise<ViewTree> {
    const view = await this.#pins.view(name.pinId, options);
    const range = name.range;
    if (range === undefined) return ViewTree.open(view, { hash: name.hash });
    const nowMs = this.#clock.now();
    this.#dropStale(nowMs);
    const key = `${name.pinId}\u0000${Buffer.from(range.key).toString('hex')}\u0000${Buffer.from(range.rangeEnd).toString('hex')}`;
    let entry = this.#ranges.get(key);
    if (entry !== undefined && entry.index !== view.appliedIndex) {
      this.#ranges.delete(key);
      entry = undefined;
    }
    if (entry === undefined) {
      this.#makeRoom();
      let keysRead = 0;
      const computed = ViewTree.open(view, {
        hash: name.hash,
        range,
        onKeys: (count) => {
          // The state machine reports every 10,000 keys; pass on each OPEN_PROGRESS_KEYS step.
          if (count - keysRead >= OPEN_PROGRESS_KEYS) {
            keysRead = count;
            onProgress?.(count);
          }
        },
      }).then((tree) => tree.sums);
      const created: RangeEntry = { index: view.appliedIndex, sums: computed, computing: true, lastUsedMs: nowMs };
      entry = created;
      this.#ranges.set(key, created);
      computed.then(
        () => {
          created.computing = false;
        },
        () => {
          if (this.#ranges.get(key) === created) this.#ranges.delete(key);
        },
      );
    } else {
      this.#ranges.delete(key);
      this.#ranges.set(key, entry);
    }
    entry.lastUsedMs = nowMs;
    // The kept sums, read through the view the pin has now (a kept view object may be closed).
    return ViewTree.over(view, await entry.sums, { hash: name.hash, range });
  }

  // #makeRoom evicts the least recently used kept range tree when the cache is full.
  #makeRoom(): void {
    if (this.#ranges.size < RANGE_TREES_MAX) return;
    for (const [key, entry] of this.#ranges) {
      if (entry.computing) continue;
      this.#ranges.delete(key);
      return;
    }
    throw new StrataError(ErrorCode.UNAVAILABLE, `${RANGE_TREES_MAX} key ranges are being read for diffs here already; retry later`);
  }

  #dropStale(nowMs: number): void {
    for (const [key, entry] of [...this.#ranges]) if (!entry.computing && nowMs - entry.lastUsedMs >= PIN_IDLE_MS_MAX) this.#ranges.delete(key);
  }
}

// The two ends of a cross-cluster copy as the copier sees them: a source it reads (etcd, or
// another stratakv cluster) and a target it fills through mirror requests. The copier and
// `copy verify` are written once against these; etcd-source.ts and mirror-target.ts are the
// gRPC implementations, and the tests run the copier against real etcd and a real state
// machine.

import type { MirrorPut, MirrorRequest, MirrorResponse } from '../../storage/index.ts';

/** SourceKv is one key as the source holds it, with its counters (etcd's mvccpb.KeyValue). */
export type SourceKv = MirrorPut;

/** KeyRange is [key, rangeEnd) with etcd's conventions (rangeEnd [0] = every key >= key). */
export interface KeyRange {
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
}

/** SourcePage is one page of a scan: keys in order, whether more follow, the revision it was read at. */
export interface SourcePage {
  readonly kvs: readonly SourceKv[];
  readonly more: boolean;
  readonly revision: number;
}

/** SourceEvent is one change: a put (kv as after it) or a delete (kv.key, kv.modRevision = the delete's revision). */
export interface SourceEvent {
  readonly type: 'put' | 'delete';
  readonly kv: SourceKv;
}

/**
 * SourceTailBatch is what a tail yields: the events of whole revisions in order (a revision
 * is never split across batches), or a progress mark: everything up to `revision` was sent.
 */
export type SourceTailBatch =
  | { readonly kind: 'events'; readonly events: readonly SourceEvent[] }
  | { readonly kind: 'progress'; readonly revision: number };

/** SourceTail is one open change stream. Errors end the iteration: COMPACTED, UNAVAILABLE, TIMEOUT. */
export interface SourceTail extends AsyncIterable<SourceTailBatch> {
  /** Ask the source for a progress mark (answered in order with the events). */
  requestProgress(): void;
  close(): void;
}

/** CopySource is the cluster copied from. */
export interface CopySource {
  /** The source's cluster id (hex) and current revision, from a linearizable answer. */
  head(signal?: AbortSignal): Promise<{ readonly clusterId: string; readonly revision: number }>;
  /** How many keys `range` holds at `revision`; COMPACTED if the source compacted past it. */
  count(range: KeyRange, revision: number, signal?: AbortSignal): Promise<number>;
  /** Up to `limit` keys of `range` at `revision` (0: the current one), in key order; COMPACTED if compacted past it. */
  page(range: KeyRange, revision: number, limit: number, signal?: AbortSignal): Promise<SourcePage>;
  /**
   * Whether any key of `range` live at `atRevision` was written after `afterRevision`, and how
   * many keys `range` holds at `atRevision`: with the target's count, this proves the target
   * equal to the source at `atRevision` without trusting a progress mark (copier.ts).
   */
  changedSince(range: KeyRange, afterRevision: number, atRevision: number, signal?: AbortSignal): Promise<{ readonly changed: boolean; readonly count: number }>;
  /** The changes to `range` from `startRevision` on. */
  tail(range: KeyRange, startRevision: number, signal?: AbortSignal): SourceTail;
  close(): void;
}

/** TargetView is the target's mirror state and revision, read linearizably. */
export interface TargetView {
  readonly state: Uint8Array | undefined;
  readonly revision: number;
}

/** CopyTarget is the mirror cluster. Mirror requests are compare-and-set (src/storage's MirrorRequest). */
export interface CopyTarget {
  read(signal?: AbortSignal): Promise<TargetView>;
  mirror(request: MirrorRequest, signal?: AbortSignal): Promise<MirrorResponse>;
  /** Up to `limit` keys of `range` in the target's applied state (a linearizable read), keys only when asked. */
  page(range: KeyRange, limit: number, options: { readonly keysOnly: boolean; readonly signal?: AbortSignal }): Promise<SourcePage>;
  /** How many keys `range` holds in the target's applied state (a linearizable read). */
  count(range: KeyRange, signal?: AbortSignal): Promise<number>;
  /** The largest mirror request the target takes, in encoded bytes (its request limit). */
  readonly requestBytesMax: number;
  close(): void;
}

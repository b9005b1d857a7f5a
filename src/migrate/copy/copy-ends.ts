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
  /**
   * `range` at `revision` (0: the current one) cut into consecutive ranges of about `pageKeys`
   * keys each, when the source can list its keys more cheaply than it pages them (etcd 3.4
   * walks a limited Range's whole rest: etcdPageRanges). Only bounds: a key written later falls
   * into one of them all the same.
   */
  pageRanges?(range: KeyRange, revision: number, pageKeys: number, signal?: AbortSignal): Promise<KeyRange[]>;
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
  /**
   * Up to `limit` keys of `range` in the target's applied state (a linearizable read), keys only
   * when asked; `serializable`: whichever member answers, from its own applied state, without a
   * round of the leader's (the answer's revision says what it had applied).
   */
  page(range: KeyRange, limit: number, options: { readonly keysOnly: boolean; readonly serializable?: boolean; readonly signal?: AbortSignal }): Promise<SourcePage>;
  /** How many keys `range` holds in the target's applied state (a linearizable read). */
  count(range: KeyRange, signal?: AbortSignal): Promise<number>;
  /** The largest mirror request the target takes, in encoded bytes (its request limit). */
  readonly requestBytesMax: number;
  /** Pin the applied state of a target member (the first that answers), for a Merkle diff. */
  pin(signal?: AbortSignal): Promise<PinnedSourceView>;
  release(pin: PinnedSourceView): Promise<void>;
  close(): void;
}

/** LogEntry is one committed entry of a stratakv source's Raft log, as the log stream sends it. */
export interface LogEntry {
  readonly index: number;
  /** The entry's bytes (a KV command, a checkpoint, a membership change, or empty). */
  readonly data: Uint8Array;
  /** Whether it is a normal entry (a conf change is not replayed). */
  readonly normal: boolean;
}

/** LogBatch is what a stratakv source's log tail yields: committed entries in order, or that nothing new is committed. */
export type LogBatch =
  | { readonly kind: 'entries'; readonly entries: readonly LogEntry[]; readonly commitIndex: number }
  | { readonly kind: 'idle'; readonly lastIndex: number; readonly commitIndex: number };

/** SourceHead is where a stratakv source stands now (a linearizable read). */
export interface LogSourceHead {
  readonly clusterId: string;
  readonly revision: number;
  /** The applied index the answer went with. */
  readonly index: number;
  /** The source's own mirror state: a source that is a mirror (or fenced by a switch) has one. */
  readonly mirrorState: Uint8Array | undefined;
}

/** PinnedSourceView is a view of the source pinned on one member (see copy-state.ts's SourcePin). */
export interface PinnedSourceView {
  readonly endpoint: string;
  readonly pinId: string;
  readonly index: number;
  readonly revision: number;
}

/**
 * LogCopySource is a stratakv cluster copied from: a scan of a view pinned on one member (the
 * whole state at one log index), then its Raft log from the next index, whose KV commands the
 * target replays (mirrorReplay) to the same revisions and digest. A pinned view that is gone
 * (expired, its member restarted) and a log compacted past the copier's index are COMPACTED:
 * the copier scans again.
 */
export interface LogCopySource {
  head(signal?: AbortSignal): Promise<LogSourceHead>;
  /** How many keys `range` holds now (for the progress bar of a scan). */
  count(range: KeyRange, signal?: AbortSignal): Promise<number>;
  /** Pin the applied state of a member (the first that answers). */
  pin(signal?: AbortSignal): Promise<PinnedSourceView>;
  /** Up to `limit` keys of `range` in the pinned view, with every counter; COMPACTED when the pin is gone. */
  scan(pin: PinnedSourceView, range: KeyRange, limit: number, signal?: AbortSignal): Promise<SourcePage>;
  release(pin: PinnedSourceView): Promise<void>;
  /** The committed entries from `fromIndex` on, following; COMPACTED when the log no longer holds `fromIndex`. */
  follow(fromIndex: number, signal?: AbortSignal): AsyncIterable<LogBatch>;
  /** A checkpoint through the source's Raft at which every source member pins its view (`copy verify`). */
  checkpoint(signal?: AbortSignal): Promise<PinnedSourceView>;
  /**
   * Have every source member keep its log from `index` on for `ttlMs` for `consumer` (a log
   * hold: one per consumer, the next replaces it; index 0 releases it), so that a follow from
   * `index` still finds it after the copier was down; resolves once applied. Renew it well
   * within `ttlMs` (at most an hour). A member whose log from `index` on passed its byte cap
   * ignores it. INVALID_ARGUMENT for a bad consumer (1..64 bytes), index or ttl.
   */
  hold(consumer: string, index: number, ttlMs: number, signal?: AbortSignal): Promise<void>;
  close(): void;
}

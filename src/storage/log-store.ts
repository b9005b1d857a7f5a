// The durable Raft log as the driver sees it: the core's read interface plus the writes.

import type { LogStorage } from '../raft/storage.ts';
import type { ConfState, Entry, HardState, Index, Snapshot } from '../raft/types.ts';

/**
 * SaveRequest is one durable step, normally one Raft Ready: install `snapshot` (replacing
 * the log), append `entries` (replacing any stored suffix they overlap), record `hardState`.
 * Entries before the log's first index are skipped, as MemoryLogStorage.append does.
 */
export interface SaveRequest {
  readonly hardState?: HardState;
  readonly entries?: readonly Entry[];
  readonly snapshot?: Snapshot;
}

/**
 * LogStore is a Raft log that the core reads synchronously and the driver writes.
 *
 * Reads (the LogStorage methods) show exactly what is durable: a save's effects appear when
 * its promise resolves, never before. compact() and createSnapshot() take effect for reads
 * at once and become durable with the next save(), saveSync() or sync(): losing them in a
 * crash only means a longer log or an older snapshot, never lost entries.
 * Entries passed to save() are kept by reference and must not be mutated afterwards.
 */
export interface LogStore extends LogStorage {
  /**
   * save persists one step and resolves once it is durable. Saves that arrive while a
   * flush is in flight are written together and covered by the next single fdatasync.
   * Rejects with INVALID_ARGUMENT for a snapshot not newer than the current one, and with
   * IO_ERROR once the store has failed.
   */
  save(request: SaveRequest): Promise<void>;
  /** saveSync is save() for synchronous callers (the simulator): it returns once durable. */
  saveSync(request: SaveRequest): void;
  /** sync makes earlier compact() and createSnapshot() calls durable (and waits for the files they freed to be removed). */
  sync(): Promise<void>;
  /** compact discards entries before `index` (which becomes the dummy); COMPACTED if already gone. */
  compact(index: Index): void;
  /**
   * createSnapshot records a snapshot of the applied state at `index` (still in the log) and
   * returns it; SNAPSHOT_TEMPORARILY_UNAVAILABLE if it is not newer than the current one.
   */
  createSnapshot(index: Index, confState: ConfState, data: Uint8Array): Snapshot;
  /** close waits for pending saves and releases the files. */
  close(): Promise<void>;
}

/** isEmptySaveRequest tells whether a request writes nothing. */
export function isEmptySaveRequest(request: SaveRequest): boolean {
  return request.hardState === undefined && request.snapshot === undefined && (request.entries?.length ?? 0) === 0;
}

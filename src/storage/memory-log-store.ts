// The in-memory LogStore: MemoryLogStorage behind the durable-log API, for tests and the
// simulator when no disk faults are wanted. "Durable" means "in this object".

import { MemoryLogStorage } from '../raft/storage.ts';
import type { InitialState } from '../raft/storage.ts';
import type { ConfState, Entry, Index, Snapshot, Term } from '../raft/types.ts';
import { EMPTY_CONF_STATE } from '../raft/types.ts';
import { assert } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { LogStore, SaveRequest } from './log-store.ts';

/** MemoryLogStore is a LogStore kept in memory, the reference for the conformance suite. */
export class MemoryLogStore implements LogStore {
  private readonly storage: MemoryLogStorage;
  private closed = false;

  constructor(confState: ConfState = EMPTY_CONF_STATE) {
    this.storage = new MemoryLogStorage(confState);
  }

  initialState(): InitialState {
    return this.storage.initialState();
  }

  entries(lo: Index, hi: Index, maxBytes: number): readonly Entry[] {
    return this.storage.entries(lo, hi, maxBytes);
  }

  term(index: Index): Term {
    return this.storage.term(index);
  }

  firstIndex(): Index {
    return this.storage.firstIndex();
  }

  lastIndex(): Index {
    return this.storage.lastIndex();
  }

  snapshot(): Snapshot {
    return this.storage.snapshot();
  }

  save(request: SaveRequest): Promise<void> {
    try {
      this.saveSync(request);
    } catch (error) {
      if (error instanceof StrataError) return Promise.reject(error);
      throw error;
    }
    // Resolve on a later tick, as a disk would, so callers cannot depend on synchronous acks.
    return new Promise((resolve) => setImmediate(resolve));
  }

  saveSync(request: SaveRequest): void {
    assert(!this.closed, 'save on a closed log');
    const entries = request.entries ?? [];
    for (let i = 1; i < entries.length; i += 1) {
      assert((entries[i] as Entry).index === (entries[i - 1] as Entry).index + 1, 'save: entries are not contiguous');
    }
    if (request.snapshot !== undefined) {
      const current = this.storage.snapshot().metadata.index;
      if (request.snapshot.metadata.index <= current) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `snapshot at ${request.snapshot.metadata.index} is not newer than ${current}`);
      }
      this.storage.applySnapshot(request.snapshot);
    }
    this.storage.append(entries);
    if (request.hardState !== undefined) this.storage.setHardState(request.hardState);
  }

  sync(): Promise<void> {
    return Promise.resolve();
  }

  compact(index: Index): void {
    this.storage.compact(index);
  }

  createSnapshot(index: Index, confState: ConfState, data: Uint8Array): Snapshot {
    return this.storage.createSnapshot(index, confState, data);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

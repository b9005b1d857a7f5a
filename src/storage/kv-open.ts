// Opening the KV state machine on its two backends with the encodings it requires.

import { ClassicLevel } from 'classic-level';
import { MemoryLevel } from 'memory-level';
import type { KvSnapshotContent, KvStateMachineOptions } from './kv-state-machine.ts';
import { KvStateMachine } from './kv-state-machine.ts';

/** openDiskKvStateMachine opens (or creates) the state machine in a LevelDB directory. */
export function openDiskKvStateMachine(location: string, options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
  return KvStateMachine.open(new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view' }), options);
}

/** openMemoryKvStateMachine opens an empty state machine in memory (tests, the simulator). */
export function openMemoryKvStateMachine(options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
  return KvStateMachine.open(new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), options);
}

/**
 * restoreDiskKvStateMachine creates the state machine in a new, empty LevelDB directory from
 * a snapshot's content (see KvStateMachine.restore); the caller removes the directory if it
 * rejects.
 */
export async function restoreDiskKvStateMachine(location: string, content: KvSnapshotContent, options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view', errorIfExists: true });
  try {
    return await KvStateMachine.restore(db, content, options);
  } catch (error) {
    await db.close();
    throw error;
  }
}

/** restoreMemoryKvStateMachine creates an in-memory state machine from a snapshot's content. */
export async function restoreMemoryKvStateMachine(content: KvSnapshotContent, options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
  return KvStateMachine.restore(new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), content, options);
}

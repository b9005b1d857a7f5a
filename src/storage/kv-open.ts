// Opening the KV state machine on its two backends with the encodings it requires.

import { ClassicLevel } from 'classic-level';
import { MemoryLevel } from 'memory-level';
import type { KvStateMachineOptions } from './kv-state-machine.ts';
import { KvStateMachine } from './kv-state-machine.ts';

/** openDiskKvStateMachine opens (or creates) the state machine in a LevelDB directory. */
export function openDiskKvStateMachine(location: string, options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
  return KvStateMachine.open(new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view' }), options);
}

/** openMemoryKvStateMachine opens an empty state machine in memory (tests, the simulator). */
export function openMemoryKvStateMachine(options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
  return KvStateMachine.open(new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' }), options);
}

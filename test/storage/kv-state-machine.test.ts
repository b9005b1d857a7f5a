// Runs the state machine conformance suite on memory-level and on classic-level (LevelDB).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { MemoryLevel } from 'memory-level';
import { KvStateMachine } from '../../src/storage/kv-state-machine.ts';
import { describeKvConformance } from './kv-state-machine-conformance.ts';

const memoryDatabases = new Map<KvStateMachine, MemoryLevel<Uint8Array, Uint8Array>>();
const openMemory = async (db: MemoryLevel<Uint8Array, Uint8Array>): Promise<KvStateMachine> => {
  const machine = await KvStateMachine.open(db);
  memoryDatabases.set(machine, db);
  return machine;
};

describeKvConformance('memory-level', {
  open: () => openMemory(new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' })),
  // A MemoryLevel lives as long as the object: "reopen" is a new state machine on the same database.
  reopen: (machine) => openMemory(memoryDatabases.get(machine) as MemoryLevel<Uint8Array, Uint8Array>),
});

const root = mkdtempSync(path.join(tmpdir(), 'stratakv-kv-'));
after(() => rmSync(root, { recursive: true, force: true }));
let databases = 0;
const locations = new Map<KvStateMachine, string>();
const openAt = async (location: string): Promise<KvStateMachine> => {
  const machine = await KvStateMachine.open(new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view' }));
  locations.set(machine, location);
  return machine;
};

describeKvConformance('classic-level (LevelDB)', {
  open: () => {
    databases += 1;
    return openAt(path.join(root, `db-${databases}`));
  },
  reopen: async (machine) => {
    await machine.close();
    return openAt(locations.get(machine) as string);
  },
});

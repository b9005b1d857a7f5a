// Runs the state machine conformance suite on memory-level and on classic-level (LevelDB).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { MemoryLevel } from 'memory-level';
import { KvStateMachine } from '../../src/storage/kv-state-machine.ts';
import { SeededRandom } from '../../src/util/random.ts';
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

// The fault-injecting backend: memory-level whose "disk" keeps an image after every batch; a
// reopen is a crash that goes back to a random earlier image (the state machine writes
// without sync, so the last batches may be lost) and then re-applies the log, as the driver
// does on restart.
const faultySeed = Number(process.env['STRATAKV_SEED'] ?? Date.now() % 1_000_000);
const faultyRandom = new SeededRandom(faultySeed);
const images = new Map<KvStateMachine, MemoryLevel<Uint8Array, Uint8Array>[]>();

async function copyLevel(source: MemoryLevel<Uint8Array, Uint8Array>): Promise<MemoryLevel<Uint8Array, Uint8Array>> {
  const copy = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
  await copy.open();
  const pairs = await source.iterator().all();
  if (pairs.length > 0) await copy.batch(pairs.map(([key, value]) => ({ type: 'put' as const, key, value })));
  return copy;
}

async function openImaged(db: MemoryLevel<Uint8Array, Uint8Array>, history: MemoryLevel<Uint8Array, Uint8Array>[]): Promise<KvStateMachine> {
  const machine = await KvStateMachine.open(db);
  const batch = db.batch.bind(db) as (...args: unknown[]) => Promise<void>;
  (db as unknown as { batch: (...args: unknown[]) => Promise<void> }).batch = async (...args: unknown[]) => {
    await batch(...args);
    history.push(await copyLevel(db));
  };
  images.set(machine, history);
  return machine;
}

describeKvConformance(`fault-injecting (crash loses recent batches, log re-applied; seed ${faultySeed})`, {
  open: async () => {
    const db = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    return openImaged(db, [await copyLevel(db)]);
  },
  reopen: async (machine, log) => {
    const history = images.get(machine) as MemoryLevel<Uint8Array, Uint8Array>[];
    const survivor = history[faultyRandom.intBelow(history.length)] as MemoryLevel<Uint8Array, Uint8Array>;
    const reopened = await openImaged(await copyLevel(survivor), history);
    await reopened.apply(log);
    return reopened;
  },
});

// The state machine's apply rate into LevelDB, for bench/storage.ts: batches of committed
// Put entries over a working set of keys, each batch one atomic LevelDB write.
import type { Entry } from '../../src/raft/types.ts';
import { encodeKvCommand } from '../../src/storage/kv-command-codec.ts';
import { openDiskKvStateMachine } from '../../src/storage/kv-open.ts';
import { timeLoop } from './measure.ts';

const APPLY_BATCH = 256;
const KEYS = 10_000;
const VALUE_BYTES = 100;

/** benchApply measures entries applied per second into LevelDB, once per round. */
export async function benchApply(options: { rounds: number; roundMs: number; directory: () => string }): Promise<{ batch: number; entriesPerSecond: number[] }> {
  const entriesPerSecond: number[] = [];
  const value = new Uint8Array(VALUE_BYTES).fill(0x61);
  for (let round = 0; round < options.rounds; round += 1) {
    const machine = await openDiskKvStateMachine(options.directory());
    let index = 0;
    const rate = await timeLoop(options.roundMs, () => {
      const entries: Entry[] = [];
      for (let i = 0; i < APPLY_BATCH; i += 1) {
        index += 1;
        const key = new TextEncoder().encode(`key-${(index * 7919) % KEYS}`);
        entries.push({ index, term: 1, type: 0, data: encodeKvCommand({ id: index, request: { type: 'put', key, value } }) });
      }
      return machine.apply(entries);
    });
    entriesPerSecond.push(rate.perSecond * APPLY_BATCH);
    await machine.close();
  }
  return { batch: APPLY_BATCH, entriesPerSecond };
}

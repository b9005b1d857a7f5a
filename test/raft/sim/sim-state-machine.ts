// The state machine each simulated node applies committed entries to. It keeps no values,
// only a hash chain over everything applied, so two nodes that applied the same entries
// in the same order hold the same chain value at the same index — and a snapshot (which is
// just the encoded chain) can be checked against what every other node applied.

import type { Entry, Index } from '../../../src/raft/index.ts';
import { assert } from '../../../src/util/index.ts';

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const SNAPSHOT_DATA_BYTES = 12;

/** hashBytes is 32-bit FNV-1a over `data`, continuing from `hash`. */
export function hashBytes(data: Uint8Array, hash: number = FNV_OFFSET): number {
  let h = hash;
  for (let i = 0; i < data.length; i += 1) h = Math.imul(h ^ (data[i] as number), FNV_PRIME) >>> 0;
  return h;
}

function hashNumber(value: number, hash: number): number {
  let h = hash;
  let rest = value;
  // Four bytes of a 32-bit value and the high part: terms and indexes stay far below 2^53.
  for (let i = 0; i < 6; i += 1) {
    h = Math.imul(h ^ (rest & 0xff), FNV_PRIME) >>> 0;
    rest = Math.floor(rest / 256);
  }
  return h;
}

/** entryHash identifies an entry's content (type and data), independent of its position. */
export function entryHash(entry: Entry): number {
  return hashBytes(entry.data, hashNumber(entry.type, FNV_OFFSET));
}

/** SimStateMachine is a node's applied state: the index it reached and a hash chain. */
export class SimStateMachine {
  /** appliedIndex is the index of the last entry applied (or restored from a snapshot). */
  appliedIndex: Index;
  /** chain hashes every entry applied so far, in order. */
  chain: number;

  constructor(appliedIndex: Index = 0, chain: number = FNV_OFFSET) {
    this.appliedIndex = appliedIndex;
    this.chain = chain;
  }

  /** restore rebuilds a state machine from snapshot data (empty data: the initial state). */
  static restore(data: Uint8Array): SimStateMachine {
    if (data.byteLength === 0) return new SimStateMachine();
    assert(data.byteLength === SNAPSHOT_DATA_BYTES, `snapshot data has ${data.byteLength} bytes`);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const index = view.getUint32(0) * 0x1_0000_0000 + view.getUint32(4);
    return new SimStateMachine(index, view.getUint32(8));
  }

  /** apply folds one committed entry into the chain; the caller checks the order. */
  apply(entry: Entry): void {
    this.chain = hashNumber(entry.term, hashNumber(entry.index, hashBytes(entry.data, hashNumber(entry.type, this.chain))));
    this.appliedIndex = entry.index;
  }

  /** encode is the snapshot data of this state. */
  encode(): Uint8Array {
    const data = new Uint8Array(SNAPSHOT_DATA_BYTES);
    const view = new DataView(data.buffer);
    view.setUint32(0, Math.floor(this.appliedIndex / 0x1_0000_0000));
    view.setUint32(4, this.appliedIndex >>> 0);
    view.setUint32(8, this.chain);
    return data;
  }
}

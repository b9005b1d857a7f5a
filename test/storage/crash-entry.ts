// The entries the crash child writes, derived from (index, term) so the parent can check them.
import type { Entry } from '../../src/raft/types.ts';

/** crashEntry builds the entry at `index` of `term` with `size` bytes of checkable data. */
export function crashEntry(index: number, term: number, size: number): Entry {
  const data = new Uint8Array(size + 4);
  new DataView(data.buffer).setUint32(0, size);
  for (let i = 0; i < size; i += 1) data[4 + i] = (index * 7 + term * 13 + i) & 0xff;
  return { index, term, type: 0, data };
}

/** isCrashEntryIntact tells whether an entry read back is exactly what crashEntry wrote. */
export function isCrashEntryIntact(entry: Entry): boolean {
  if (entry.data.byteLength < 4) return false;
  const size = new DataView(entry.data.buffer, entry.data.byteOffset).getUint32(0);
  const expected = crashEntry(entry.index, entry.term, size);
  return Buffer.compare(expected.data, entry.data) === 0;
}

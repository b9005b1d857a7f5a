// The revision checks catch each kind of violation they name, and pass a consistent record.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { checkRevisions } from './checks.ts';
import type { MutationRecord, ReadRecord } from './workload.ts';

const put = (client: number, key: string, value: string, invokeMs: number, returnMs: number, revision: number): MutationRecord => ({ client, key, value, invokeMs, returnMs, revision });
const read = (client: number, key: string, value: string | null, modRevision: number, headerRevision: number, invokeMs: number, returnMs: number): ReadRecord => ({ client, key, value, modRevision, headerRevision, invokeMs, returnMs });

describe('chaos revision checks', () => {
  const consistent = [put(1, 'a', 'x', 0, 10, 2), put(2, 'b', 'y', 5, 12, 3), put(1, 'a', 'z', 20, 30, 4)];

  it('pass a consistent record, concurrent mutations in either order', () => {
    const report = checkRevisions([...consistent, put(3, 'c', 'w', 1, 40, 5)], [read(2, 'a', 'z', 4, 5, 31, 35), read(3, 'b', null, 0, 4, 31, 33)], { linearizableReads: true });
    assert.deepEqual(report, { ok: true, violations: 0, lines: [] });
  });

  it('flag two mutations with one revision', () => {
    const report = checkRevisions([...consistent, put(3, 'c', 'w', 1, 40, 3)], [], { linearizableReads: true });
    assert.equal(report.violations, 1);
    assert.match(report.lines[0] ?? '', /two acknowledged mutations answered revision 3/);
  });

  it('flag a revision out of real-time order', () => {
    const report = checkRevisions([put(1, 'a', 'x', 0, 10, 5), put(2, 'a', 'y', 11, 20, 4)], [], { linearizableReads: true });
    assert.equal(report.violations, 1);
    assert.match(report.lines[0] ?? '', /out of real-time order/);
  });

  it('flag a read that found a value at another revision than its write', () => {
    const report = checkRevisions(consistent, [read(2, 'a', 'x', 3, 4, 31, 35)], { linearizableReads: false });
    assert.equal(report.violations, 1);
    assert.match(report.lines[0] ?? '', /read a=x at mod revision 3/);
  });

  it('flag a linearizable read older than an acknowledged mutation, and not a serializable one', () => {
    const stale = [read(2, 'b', 'y', 3, 3, 31, 35)];
    const linearizable = checkRevisions(consistent, stale, { linearizableReads: true });
    assert.equal(linearizable.violations, 1);
    assert.match(linearizable.lines[0] ?? '', /stale read/);
    assert.equal(checkRevisions(consistent, stale, { linearizableReads: false }).violations, 0);
  });
});

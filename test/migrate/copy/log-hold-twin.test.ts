// The test twin's log holds (state-machine-log-source.ts) agree with a member's: hold() puts a
// logHold node command in the log (a follow sees it, and the copier's classify skips it) and
// compact() stops at an unexpired hold's index - 1, until the hold expires or is released, or
// unless the test compacts past it as a member over its log byte cap does.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { classify } from '../../../src/migrate/copy/copier.ts';
import type { LogEntry } from '../../../src/migrate/copy/index.ts';
import { decodeNodeCommand } from '../../../src/node/node-command.ts';
import { ErrorCode, isStrataError } from '../../../src/util/errors.ts';
import { StateMachineLogSource } from './state-machine-log-source.ts';

const put = (key: string, value: string) => ({ type: 'put' as const, key: Buffer.from(key), value: Buffer.from(value) });

// firstEntries follows the source from `fromIndex` and answers its first batch's entries, or the error.
async function firstEntries(source: StateMachineLogSource, fromIndex: number): Promise<{ readonly entries?: readonly LogEntry[]; readonly error?: unknown }> {
  const controller = new AbortController();
  try {
    for await (const batch of source.follow(fromIndex, controller.signal)) if (batch.kind === 'entries') return { entries: batch.entries };
    return { error: new Error('the follow ended') };
  } catch (error) {
    return { error };
  } finally {
    controller.abort();
  }
}

describe('the twin\'s log holds', () => {
  test('a hold is a node command in the log that the copier skips, and compact stops at it until it is released', async () => {
    const source = await StateMachineLogSource.open({ seed: 7, wallClockMs: () => 1_000 });
    try {
      await source.writeMany(Array.from({ length: 20 }, (_, i) => put(`k${i}`, 'v')));
      await source.hold('copy-a', 10, 60_000);
      const holdIndex = source.lastIndex;
      const { entries } = await firstEntries(source, holdIndex);
      const entry = entries?.[0] as LogEntry;
      assert.equal(entry.index, holdIndex);
      assert.deepEqual(decodeNodeCommand(entry.data), { type: 'logHold', consumer: 'copy-a', index: 10, expiresAtMs: 61_000 });
      assert.equal(classify(entry), 'skip', 'the copier does not replay it');
      assert.deepEqual(source.holds(), [{ consumer: 'copy-a', index: 10, expiresAtMs: 61_000 }]);

      await source.writeMany(Array.from({ length: 20 }, (_, i) => put(`k${i}`, 'w')));
      assert.equal(source.compact(30), 9, 'clipped at the hold: entry 10 stays');
      assert.equal((await firstEntries(source, 10)).entries?.[0]?.index, 10, 'a follow from the held index gets it');
      assert.ok(isStrataError((await firstEntries(source, 9)).error, ErrorCode.COMPACTED), 'below the hold is compacted');

      await source.hold('copy-a', 0, 0);
      assert.deepEqual(source.holds(), []);
      assert.equal(source.compact(30), 30, 'released: compacted as asked');
    } finally {
      source.close();
    }
  });

  test('an expired hold holds nothing; pastHolds compacts past an unexpired one, as a member over its byte cap', async () => {
    let nowMs = 1_000;
    const source = await StateMachineLogSource.open({ seed: 8, wallClockMs: () => nowMs });
    try {
      await source.writeMany(Array.from({ length: 30 }, (_, i) => put(`k${i}`, 'v')));
      await source.hold('copy-a', 5, 10_000);
      await source.hold('copy-b', 12, 60_000);
      assert.equal(source.compact(3), 3, 'below every hold: as asked');
      assert.equal(source.compact(20), 4, 'the lowest hold wins');
      nowMs = 11_000;
      assert.equal(source.compact(20), 11, 'copy-a expired; copy-b holds');
      assert.equal(source.compact(20, { pastHolds: true }), 20, 'past the holds');
      assert.ok(isStrataError((await firstEntries(source, 12)).error, ErrorCode.COMPACTED));
      await assert.rejects(source.hold('', 25, 1_000), (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === 'consumer');
    } finally {
      source.close();
    }
  });
});

// The scrubber's own rules, with a host whose state machine refuses to be read (corrupt,
// waiting for its rebuild): a scheduled scrub then ends quietly instead of leaving a rejected
// promise nobody reads (found by test/integration/corruption-running.test.ts, where the
// unhandled rejection stopped the member while the operator rebuilt it). The scrub of real
// data is tested in test/node/integrity-cluster.test.ts and with real processes.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Scrubber } from '../../src/node/scrubber.ts';
import { SILENT_LOGGER } from '../../src/raft/index.ts';
import { ErrorCode, isStrataError, StrataError, VirtualClock } from '../../src/util/index.ts';
import { virtualDriver } from './fixture.ts';

test('a scheduled scrub of a state machine that refuses to be read ends without an unhandled rejection; the next is scheduled', async () => {
  const clock = new VirtualClock();
  const driver = virtualDriver(clock);
  let opened = 0;
  let raised = 0;
  const scrubber = new Scrubber(
    {
      clock,
      logger: SILENT_LOGGER,
      openView: () => {
        opened += 1;
        return Promise.reject(new StrataError(ErrorCode.CORRUPTION, 'state machine: a stored value fails its CRC32c'));
      },
      onCorrupt: () => {
        raised += 1;
        return Promise.resolve();
      },
    },
    { cycleMs: 1_000, rateBytesPerSecond: 1024 },
  );
  scrubber.start();
  await driver.advance(3_500);
  assert.equal(opened, 3, 'one scrub per cycle, each ended');
  assert.equal(raised, 0, 'the alarm is the apply path\'s to raise: a state that cannot be opened is not scrubbed');
  await assert.rejects(driver.settle(scrubber.scrubNow()), (error: unknown) => isStrataError(error, ErrorCode.UNAVAILABLE));
  await driver.settle(scrubber.stop());
});

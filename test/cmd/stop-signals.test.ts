// serve and dev stop on the first SIGINT, SIGTERM or SIGHUP and survive the repeats that a
// terminal's Ctrl-C and the launcher's forwarding produce. Real signals, sent to this process.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { listenForStopSignals, STOP_SIGNALS, type StopSignal } from '../../cmd/stop-signals.ts';

async function untilDelivered(): Promise<void> {
  // A signal is delivered by the event loop, not synchronously by kill().
  await new Promise((resolve) => setTimeout(resolve, 50));
}

for (const signal of STOP_SIGNALS) {
  test(`the first ${signal} starts the stop; a repeat is reported, not fatal`, async () => {
    const repeats: StopSignal[] = [];
    const stopSignals = listenForStopSignals((repeat) => repeats.push(repeat));
    try {
      process.kill(process.pid, signal);
      assert.equal(await stopSignals.first, signal);
      process.kill(process.pid, 'SIGINT');
      process.kill(process.pid, signal);
      await untilDelivered();
      assert.deepEqual(repeats.sort(), [signal, 'SIGINT'].sort());
    } finally {
      stopSignals.dispose();
    }
  });
}

test('dispose removes every listener it added', () => {
  const before = STOP_SIGNALS.map((signal) => process.listenerCount(signal));
  const stopSignals = listenForStopSignals(() => {});
  assert.deepEqual(STOP_SIGNALS.map((signal) => process.listenerCount(signal)), before.map((count) => count + 1));
  stopSignals.dispose();
  assert.deepEqual(STOP_SIGNALS.map((signal) => process.listenerCount(signal)), before);
});

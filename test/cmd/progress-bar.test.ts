// The progress bar's text and its redraw bound, on an injected clock.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatProgress, PROGRESS_BAR_WIDTH, PROGRESS_REDRAW_MS_MIN, ProgressBar } from '../../cmd/progress-bar.ts';

test('formatProgress shows the bar, the percentage, the bytes and the rate', () => {
  assert.equal(formatProgress('saving f', 500_000, 1_000_000, 1_000), `saving f [${'#'.repeat(PROGRESS_BAR_WIDTH / 2)}${'.'.repeat(PROGRESS_BAR_WIDTH / 2)}]  50%  500.0 kB / 1.0 MB  500.0 kB/s`);
  assert.equal(formatProgress('saving f', 2_500_000, undefined, 0), 'saving f 2.5 MB');
});

test('ProgressBar redraws at most once per PROGRESS_REDRAW_MS_MIN, always at the end, and clears its line', () => {
  let nowMs = 0;
  const written: string[] = [];
  const bar = new ProgressBar((text) => written.push(text), 'copying', () => nowMs);
  bar.update(1, 100);
  nowMs += PROGRESS_REDRAW_MS_MIN - 1;
  bar.update(2, 100);
  assert.equal(written.length, 1);
  bar.update(100, 100);
  assert.equal(written.length, 2);
  assert.ok(written.every((text) => text.startsWith('\r')));
  bar.clear();
  assert.equal(written.at(-1), '\r\x1b[K');
  bar.clear();
  assert.equal(written.length, 3);
});

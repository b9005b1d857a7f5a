// A one-line progress bar for long CLI operations (snapshot save and restore): bytes done,
// the total when known, and the rate. It rewrites one line of a terminal with "\r" and is
// only ever given a terminal: a caller whose stderr is a file or a pipe gets no bar at all,
// so logs and scripts never see the carriage returns.

/** PROGRESS_REDRAW_MS_MIN bounds how often the bar is redrawn (a terminal write per chunk would cost more than the chunk). */
export const PROGRESS_REDRAW_MS_MIN = 100;
/** PROGRESS_BAR_WIDTH is the bar's width in characters. */
export const PROGRESS_BAR_WIDTH = 30;

/** ProgressBar draws `label [#####.....]  45%  12.3 MB / 27.0 MB  8.1 MB/s` on one line. */
export class ProgressBar {
  readonly #write: (text: string) => void;
  readonly #now: () => number;
  #label: string;
  #startedMs: number;
  #lastDrawMs = Number.NEGATIVE_INFINITY;
  #drawn = false;

  /** `write` puts text on the terminal as it is (no newline added); `now` is for tests. */
  constructor(write: (text: string) => void, label: string, now: () => number = () => performance.now()) {
    this.#write = write;
    this.#now = now;
    this.#label = label;
    this.#startedMs = now();
  }

  /** phase starts a new step under a new label; its rate counts from now. */
  phase(label: string): void {
    this.#label = label;
    this.#startedMs = this.#now();
    this.#lastDrawMs = Number.NEGATIVE_INFINITY;
  }

  /** update redraws the bar, at most once per PROGRESS_REDRAW_MS_MIN unless the work is done. */
  update(bytesDone: number, bytesTotal: number | undefined): void {
    const nowMs = this.#now();
    const done = bytesTotal !== undefined && bytesDone >= bytesTotal;
    if (!done && nowMs - this.#lastDrawMs < PROGRESS_REDRAW_MS_MIN) return;
    this.#lastDrawMs = nowMs;
    this.#write(`\r\x1b[K${formatProgress(this.#label, bytesDone, bytesTotal, nowMs - this.#startedMs)}`);
    this.#drawn = true;
  }

  /** clear removes the bar, leaving the line empty for what is printed next. */
  clear(): void {
    if (this.#drawn) this.#write('\r\x1b[K');
    this.#drawn = false;
  }
}

/** formatProgress is the bar's text (without the carriage return). */
export function formatProgress(label: string, bytesDone: number, bytesTotal: number | undefined, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? `${formatBytes((bytesDone * 1000) / elapsedMs)}/s` : '';
  if (bytesTotal === undefined || bytesTotal <= 0) return `${label} ${formatBytes(bytesDone)}  ${rate}`.trimEnd();
  const fraction = Math.min(1, Math.max(0, bytesDone / bytesTotal));
  const filled = Math.round(fraction * PROGRESS_BAR_WIDTH);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(PROGRESS_BAR_WIDTH - filled)}]`;
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  return `${label} ${bar} ${percent}  ${formatBytes(bytesDone)} / ${formatBytes(bytesTotal)}  ${rate}`.trimEnd();
}

// SI units with one decimal, as the rest of the CLI prints sizes.
function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit] ?? 'B'}`;
}

// The scrubber: every `cycleMs` (default 24 h) it re-reads the whole applied state at one
// index, at most `rateBytesPerSecond`, and checks it against the state digest kept on apply
// (the snapshot view's records() fail with CORRUPTION when they do not sum to it). It finds
// what the check at open would find, without a restart: decay of data at rest that LevelDB's
// checksums missed, a table block that no longer reads. On a failure the member raises a
// CORRUPT alarm for itself (through Raft: it then serves nothing and hands leadership over).
//
// A scrub holds a LevelDB snapshot for its duration (a few minutes per GiB at the default
// rate), so overwritten data is kept that long; it is abandoned when the state machine is
// replaced (a snapshot install) or the member stops, and starts over at the next cycle.

import type { Tracer } from '@opentelemetry/api';
import { withSpan } from '../obs/index.ts';
import type { Logger } from '../raft/index.ts';
import type { KvSnapshotView } from '../storage/index.ts';
import type { Clock } from '../util/index.ts';
import { assert, ErrorCode, isStrataError, StrataError } from '../util/index.ts';

/** ScrubPolicy says how often and how fast the scrubber reads. */
export interface ScrubPolicy {
  /** Milliseconds between the end of one scrub (or the start) and the next; 0 turns scrubbing off. */
  readonly cycleMs: number;
  /** Bytes read per second at most. */
  readonly rateBytesPerSecond: number;
}

/** DEFAULT_SCRUB_POLICY: once a day, at 16 MiB/s. */
export const DEFAULT_SCRUB_POLICY: ScrubPolicy = { cycleMs: 24 * 60 * 60 * 1000, rateBytesPerSecond: 16 * 1024 * 1024 };

/** ScrubReport describes the last scrub that ended. */
export interface ScrubReport {
  readonly index: number;
  readonly keys: number;
  readonly bytes: number;
  readonly durationMs: number;
  /** Undefined when the data matched its digest. */
  readonly failure?: string | undefined;
}

/** ScrubberHost is what the scrubber needs of its member. */
export interface ScrubberHost {
  readonly clock: Clock;
  readonly logger: Logger;
  /** openView opens a snapshot view of the applied state between two applies. */
  openView(): Promise<KvSnapshotView>;
  /** onCorrupt raises this member's CORRUPT alarm. */
  onCorrupt(reason: string): Promise<void>;
  /** onReport: a scrub ended (metrics). */
  onReport?(report: ScrubReport): void;
}

/** Scrubber runs the scrub cycle (see the file comment). */
export class Scrubber {
  private readonly host: ScrubberHost;
  private readonly policy: ScrubPolicy;
  private readonly tracer: Tracer | undefined;
  private timer: ReturnType<Clock['setTimeout']> | undefined;
  private running: { abort: AbortController; done: Promise<ScrubReport | undefined> } | undefined;
  private stopped = false;
  private last: ScrubReport | undefined;

  constructor(host: ScrubberHost, policy: ScrubPolicy, tracer?: Tracer) {
    assert(Number.isFinite(policy.cycleMs) && policy.cycleMs >= 0, 'scrub cycleMs must be non-negative');
    assert(Number.isFinite(policy.rateBytesPerSecond) && policy.rateBytesPerSecond > 0, 'scrub rateBytesPerSecond must be positive');
    this.host = host;
    this.policy = policy;
    this.tracer = tracer;
  }

  /** start schedules the first scrub one cycle from now (the state was checked at open). */
  start(): void {
    this.schedule();
  }

  /** lastReport describes the last scrub that ended. */
  lastReport(): ScrubReport | undefined {
    return this.last;
  }

  /** scrubNow runs a scrub now (after the one running) and answers its report. */
  async scrubNow(): Promise<ScrubReport> {
    if (this.stopped) throw new StrataError(ErrorCode.STOPPED, 'etcdserver: server stopped');
    await this.running?.done.catch(() => undefined);
    const report = await this.run();
    if (report === undefined) throw new StrataError(ErrorCode.UNAVAILABLE, 'the scrub was abandoned (the state machine was replaced or the member stops)');
    return report;
  }

  /** abandon stops a scrub in progress (its state machine is about to be replaced) and waits for it. */
  async abandon(): Promise<void> {
    this.running?.abort.abort();
    await this.running?.done.catch(() => undefined);
  }

  /** stop abandons a scrub in progress; none starts again. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.host.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.abandon();
  }

  private schedule(): void {
    if (this.stopped || this.policy.cycleMs === 0) return;
    this.timer = this.host.clock.setTimeout(() => {
      this.timer = undefined;
      // A scheduled scrub's promise has no reader: its failure is logged, never left unhandled.
      void this.run()
        .catch((error: unknown) => this.host.logger.warn('a scheduled scrub failed', { reason: String(error) }))
        .finally(() => this.schedule());
    }, this.policy.cycleMs);
  }

  private run(): Promise<ScrubReport | undefined> {
    const abort = new AbortController();
    const done = withSpan(this.tracer, 'integrity.scrub', {}, async (span) => {
      const report = await this.scrub(abort.signal);
      if (report === undefined) span?.setAttribute('stratakv.scrub.abandoned', true);
      else span?.setAttributes({ 'stratakv.scrub.keys': report.keys, 'stratakv.scrub.bytes': report.bytes, 'stratakv.scrub.corrupt': report.failure !== undefined });
      return report;
    }).finally(() => {
      if (this.running?.abort === abort) this.running = undefined;
    });
    this.running = { abort, done };
    return done;
  }

  private async scrub(signal: AbortSignal): Promise<ScrubReport | undefined> {
    const startedMs = this.host.clock.now();
    let view: KvSnapshotView;
    try {
      view = await this.host.openView();
    } catch (error) {
      // A state machine that refuses to be read is corrupt already (its alarm is raised, it
      // waits for its rebuild): there is nothing to scrub.
      if (signal.aborted || isStrataError(error, ErrorCode.CORRUPTION)) return undefined;
      throw error;
    }
    let keys = 0;
    let bytes = 0;
    let failure: string | undefined;
    try {
      for await (const batch of view.records()) {
        for (const record of batch) bytes += record.key.byteLength + record.value.byteLength;
        keys += batch.length;
        if (signal.aborted) return undefined;
        // Pace: no faster than the rate since the start.
        const aheadMs = (bytes / this.policy.rateBytesPerSecond) * 1000 - (this.host.clock.now() - startedMs);
        if (aheadMs > 0) await this.sleep(aheadMs, signal);
        if (signal.aborted) return undefined;
      }
    } catch (error) {
      if (signal.aborted) return undefined;
      // A digest that does not match, or LevelDB failing to read a block: either way this
      // member's data cannot be trusted.
      failure = isStrataError(error, ErrorCode.CORRUPTION) ? error.message : `reading the state failed: ${String(error)}`;
    } finally {
      await view.close();
    }
    const report: ScrubReport = { index: view.appliedIndex, keys, bytes, durationMs: this.host.clock.now() - startedMs, failure };
    this.last = report;
    this.host.onReport?.(report);
    if (failure === undefined) {
      this.host.logger.info('scrub: the state matches its digest', { index: view.appliedIndex, keys, bytes, durationMs: report.durationMs });
    } else {
      this.host.logger.warn('SCRUB FOUND CORRUPTION: this member raises a CORRUPT alarm for itself and stops serving', { index: view.appliedIndex, reason: failure });
      await this.host.onCorrupt(failure).catch((error: unknown) => this.host.logger.warn('raising the CORRUPT alarm after a scrub failed', { reason: String(error) }));
    }
    return report;
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.host.clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        this.host.clock.clearTimeout(timer);
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

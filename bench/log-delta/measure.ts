// measureLogStream: the log-delta stream's throughput from one cluster, for the integrity
// benchmark (issue 13's "the delta stream's MB/s against the snapshot stream's"), which runs
// it beside Maintenance.Snapshot on the same state. It consumes the stream from an index to
// its end (no follow) through the real LogStreamClient, checking every chunk as a consumer
// does, and counts what arrived.

import { LogStreamClient } from '../../src/client/index.ts';
import type { LogStreamEvent } from '../../src/client/index.ts';

/** LogStreamMeasureOptions say what to stream. */
export interface LogStreamMeasureOptions {
  readonly endpoints: readonly string[];
  readonly fromIndex: number;
  /** Default: the commit index when the stream starts. */
  readonly toIndex?: number;
  readonly maxChunkBytes?: number;
  /** Called for each event (a benchmark may decode entries to include the consumer's cost). */
  readonly onEvent?: (event: LogStreamEvent) => void;
}

/** LogStreamMeasurement is what one stream delivered and how long it took. */
export interface LogStreamMeasurement {
  readonly entries: number;
  /** Entry data bytes. */
  readonly entryBytes: number;
  /** Snapshot file bytes (when fromIndex was compacted). */
  readonly snapshotBytes: number;
  /** entryBytes + snapshotBytes. */
  readonly bytes: number;
  readonly seconds: number;
  /** bytes / seconds / 1e6. */
  readonly megabytesPerSecond: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
}

/** measureLogStream streams from `fromIndex` to the end and answers the bytes and seconds (see the file comment). */
export async function measureLogStream(options: LogStreamMeasureOptions): Promise<LogStreamMeasurement> {
  const client = new LogStreamClient({ endpoints: options.endpoints });
  let entries = 0;
  let entryBytes = 0;
  let snapshotBytes = 0;
  let lastIndex = options.fromIndex - 1;
  const startedMs = performance.now();
  try {
    const stream = client.stream({
      fromIndex: options.fromIndex,
      ...(options.toIndex === undefined ? {} : { toIndex: options.toIndex }),
      ...(options.maxChunkBytes === undefined ? {} : { maxChunkBytes: options.maxChunkBytes }),
    });
    for await (const event of stream) {
      options.onEvent?.(event);
      if (event.type === 'entries') {
        entries += event.entries.length;
        for (const entry of event.entries) entryBytes += entry.data.byteLength;
        lastIndex = event.lastIndex;
      } else if (event.type === 'snapshot-data') {
        snapshotBytes += event.bytes.byteLength;
      } else if (event.type === 'snapshot-end') {
        lastIndex = event.snapshot.index;
      }
    }
  } finally {
    client.close();
  }
  const seconds = (performance.now() - startedMs) / 1000;
  const bytes = entryBytes + snapshotBytes;
  return { entries, entryBytes, snapshotBytes, bytes, seconds, megabytesPerSecond: bytes / Math.max(seconds, 1e-9) / 1e6, firstIndex: options.fromIndex, lastIndex };
}

// etcdSource reads an etcd cluster (or any server of etcd's v3 API) for a copy: Range at a
// fixed revision, paginated, for the scan (etcd keeps every revision until it is compacted, so
// the pages form one consistent picture); Watch from the next revision for the tail, with
// progress requests so the copier learns the source's revision when nothing in range changes.

import { EtcdClient, type WatchStream } from '../../client/index.ts';
import { ErrorCode, StrataError } from '../../util/errors.ts';
import type { CopySource, KeyRange, SourcePage, SourceTail, SourceTailBatch } from './copy-ends.ts';

/** SOURCE_CALL_TIMEOUT_MS is the deadline of one read of the source. */
export const SOURCE_CALL_TIMEOUT_MS = 10_000;
/** WATCH_IDLE_TIMEOUT_MS: a change stream that answers nothing for this long (progress requests included) is given up and opened again. */
export const WATCH_IDLE_TIMEOUT_MS = 10_000;

/** etcdSource is the CopySource over etcd's API at `endpoints` (host:port). */
export function etcdSource(endpoints: readonly string[], options: { readonly client?: EtcdClient } = {}): CopySource {
  const client = options.client ?? new EtcdClient({ endpoints, timeoutMs: SOURCE_CALL_TIMEOUT_MS, autoSyncIntervalMs: 30_000 });
  const owned = options.client === undefined;
  return {
    async head(signal) {
      const answer = await client.get(Uint8Array.of(0), { countOnly: true, limit: 1, ...(signal === undefined ? {} : { signal }) });
      return { clusterId: answer.header.clusterId.toString(16), revision: answer.header.revision };
    },
    async count(range, revision, signal) {
      const answer = await client.get(range.key, { rangeEnd: range.rangeEnd, countOnly: true, revision, ...(signal === undefined ? {} : { signal }) });
      return answer.count;
    },
    async page(range: KeyRange, revision: number, limit: number, signal?: AbortSignal): Promise<SourcePage> {
      const answer = await client.get(range.key, { rangeEnd: range.rangeEnd, limit, revision, ...(signal === undefined ? {} : { signal }) });
      return { kvs: answer.kvs, more: answer.more, revision: answer.header.revision };
    },
    async changedSince(range, afterRevision, atRevision, signal) {
      const withSignal = signal === undefined ? {} : { signal };
      const changed = await client.get(range.key, { rangeEnd: range.rangeEnd, revision: atRevision, minModRevision: afterRevision + 1, keysOnly: true, limit: 1, ...withSignal });
      const counted = await client.get(range.key, { rangeEnd: range.rangeEnd, revision: atRevision, countOnly: true, ...withSignal });
      return { changed: changed.kvs.length > 0, count: counted.count };
    },
    tail(range, startRevision, signal): SourceTail {
      const stream = client.watch({
        key: range.key,
        rangeEnd: range.rangeEnd,
        startRevision,
        idleTimeoutMs: WATCH_IDLE_TIMEOUT_MS,
        ...(signal === undefined ? {} : { signal }),
      });
      return tailOver(stream);
    },
    close() {
      if (owned) client.close();
    },
  };
}

function tailOver(stream: WatchStream): SourceTail {
  return {
    requestProgress: () => stream.requestProgress(),
    close: () => stream.close(),
    async *[Symbol.asyncIterator](): AsyncGenerator<SourceTailBatch> {
      for await (const batch of stream) {
        if (batch.kind === 'progress') {
          yield { kind: 'progress', revision: batch.revision };
          continue;
        }
        yield {
          kind: 'events',
          events: batch.events.map((event) => {
            if (event.type !== 'put' && event.type !== 'delete') throw new StrataError(ErrorCode.CORRUPTION, `the source sent a watch event of type ${String(event.type)}`);
            return { type: event.type, kv: event.kv };
          }),
        };
      }
    },
  };
}

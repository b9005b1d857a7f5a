// etcdSource reads an etcd cluster (or any server of etcd's v3 API) for a copy: Range at a
// fixed revision, paginated, for the scan (etcd keeps every revision until it is compacted, so
// the pages form one consistent picture); Watch from the next revision for the tail, with
// progress requests so the copier learns the source's revision when nothing in range changes.

import { EtcdClient, type WatchStream } from '../../client/index.ts';
import { keyAfter } from './copier.ts';
import { ErrorCode, StrataError } from '../../util/errors.ts';
import type { CopySource, KeyRange, SourcePage, SourceTail, SourceTailBatch } from './copy-ends.ts';

/** SOURCE_CALL_TIMEOUT_MS is the deadline of one read of the source. */
export const SOURCE_CALL_TIMEOUT_MS = 10_000;
/** WATCH_IDLE_TIMEOUT_MS: a change stream that answers nothing for this long (progress requests included) is given up and opened again. */
export const WATCH_IDLE_TIMEOUT_MS = 10_000;

/** BOUNDS_PAGE_KEYS is how many keys one keys-only read of etcdPageRanges lists. */
export const BOUNDS_PAGE_KEYS = 50_000;

/**
 * etcdPageRanges cuts `range` at `revision` into ranges of at most `pageKeys` keys each, exact
 * (every key of the range in exactly one, in order), by listing the keys only.
 *
 * Why: etcd 3.4 answers a Range with a limit by collecting every key from its start to its
 * rangeEnd in its index and only then applying the limit (and counting them all), so paging N
 * keys `pageKeys` at a time walks N²/(2·pageKeys) keys. Listing keys only, BOUNDS_PAGE_KEYS at
 * a time, costs a few such walks (332k keys: 2.2 s here); each page then names its own end and
 * walks only its own keys (~8 ms for 1,000 keys of 100 bytes).
 */
export async function etcdPageRanges(client: EtcdClient, range: KeyRange, revision: number, pageKeys: number, signal?: AbortSignal): Promise<KeyRange[]> {
  const ranges: KeyRange[] = [];
  let pageStart = range.key;
  let inPage = 0;
  let from = range.key;
  for (let read = 0; ; read += 1) {
    const answer = await client.get(from, { rangeEnd: range.rangeEnd, revision, limit: BOUNDS_PAGE_KEYS, keysOnly: true, ...(signal === undefined ? {} : { signal }) });
    for (const kv of answer.kvs) {
      if (inPage === pageKeys) {
        ranges.push({ key: pageStart, rangeEnd: kv.key });
        pageStart = kv.key;
        inPage = 0;
      }
      inPage += 1;
    }
    const last = answer.kvs.at(-1);
    if (!answer.more || last === undefined) break;
    from = keyAfter(last.key);
  }
  ranges.push({ key: pageStart, rangeEnd: range.rangeEnd });
  return ranges;
}

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
    async pageRanges(range, revision, pageKeys, signal) {
      return await etcdPageRanges(client, range, revision, pageKeys, signal);
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

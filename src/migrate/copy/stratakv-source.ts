// stratakvSource reads a stratakv cluster for a copy: a view pinned on one member (the whole
// state at one log index, read page by page with every counter: Admin.MirrorScan), then its
// Raft log from the next index (Admin.LogStream, following), whose KV commands the target
// replays to the same revisions and state digest. A stratakv cluster keeps no history of
// revisions, so the pinned view is what etcd's Range at a fixed revision is to an etcd source.
// A log hold (Admin.LogHold) keeps the source's log from the copier's position while the
// copier is down, so that it resumes from the log rather than by scanning again.

import { DiffClient, EtcdClient, LogStreamClient, MirrorClient, normalizeEndpoint } from '../../client/index.ts';
import { EntryType } from '../../raft/index.ts';
import { ErrorCode, isStrataError, StrataError } from '../../util/errors.ts';
import type { KeyRange, LogBatch, LogCopySource, LogSourceHead, PinnedSourceView, SourcePage } from './copy-ends.ts';

/** LOG_SOURCE_CALL_TIMEOUT_MS is the deadline of one call to a stratakv source. */
export const LOG_SOURCE_CALL_TIMEOUT_MS = 10_000;
/** LOG_IDLE_TIMEOUT_MS: a log stream silent this long (the server sends heartbeats every 2 s) is resumed on another member. */
export const LOG_IDLE_TIMEOUT_MS = 10_000;

/** stratakvSource is the LogCopySource over the stratakv cluster at `endpoints` (host:port). */
export function stratakvSource(endpoints: readonly string[]): LogCopySource {
  const mirror = new MirrorClient({ endpoints, timeoutMs: LOG_SOURCE_CALL_TIMEOUT_MS });
  const kv = new EtcdClient({ endpoints, timeoutMs: LOG_SOURCE_CALL_TIMEOUT_MS });
  const diff = new DiffClient();
  const log = new LogStreamClient({ endpoints });
  // Pins are made on the first member that answers (a pin lives on its member).
  const eachMember = async <T>(what: string, ordered: readonly string[], call: (endpoint: string) => Promise<T>, signal: AbortSignal | undefined): Promise<T> => {
    let last: unknown;
    for (const endpoint of ordered) {
      if (signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, `${what} was cancelled`);
      try {
        return await call(endpoint);
      } catch (error) {
        if (!isStrataError(error) || !PASS_OVER.has(error.code)) throw error;
        last = error;
      }
    }
    throw new StrataError(ErrorCode.UNAVAILABLE, `${what}: no member of ${endpoints.join(',')} answered (last: ${last instanceof Error ? last.message : String(last)})`, { cause: last });
  };
  return {
    async head(signal): Promise<LogSourceHead> {
      const view = await mirror.read({ ...(signal === undefined ? {} : { signal }) });
      return { clusterId: view.header.clusterId.toString(16), revision: view.revision, index: view.index, mirrorState: view.state };
    },
    async count(range, signal) {
      return (await kv.get(range.key, { rangeEnd: range.rangeEnd, countOnly: true, ...(signal === undefined ? {} : { signal }) })).count;
    },
    async pin(signal) {
      // The leader's first: a follower that falls behind may be sent a snapshot, and installing
      // it drops the member's pins (the scan would start again).
      const ordered = await leaderFirst(kv, endpoints, signal);
      return await eachMember('pin a view of the source', ordered, async (endpoint) => ({ endpoint, ...(await diff.pin(endpoint, 'applied', { ...(signal === undefined ? {} : { signal }), timeoutMs: LOG_SOURCE_CALL_TIMEOUT_MS })) }), signal);
    },
    async scan(pin: PinnedSourceView, range: KeyRange, limit: number, signal?: AbortSignal): Promise<SourcePage> {
      try {
        const page = await mirror.scan(pin.endpoint, { pinId: pin.pinId, key: range.key, rangeEnd: range.rangeEnd, limit, ...(signal === undefined ? {} : { signal }) });
        return { kvs: page.puts, more: page.more, revision: pin.revision };
      } catch (error) {
        // The view is gone (expired, released, its member restarted or installed a snapshot):
        // what a compaction is to an etcd scan. The copier scans again from a new pin.
        if (isStrataError(error, ErrorCode.INVALID_ARGUMENT) && error.details['field'] === 'pin_id') {
          throw new StrataError(ErrorCode.COMPACTED, `the source's pinned view ${pin.pinId} on ${pin.endpoint} is gone: ${error.message}`, { details: { pinId: pin.pinId, compactRevision: pin.revision }, cause: error });
        }
        // A member that is down takes its pin with it.
        if (isStrataError(error) && (error.code === ErrorCode.UNAVAILABLE || error.code === ErrorCode.STOPPED)) {
          throw new StrataError(ErrorCode.UNAVAILABLE, `the member holding the source's pinned view (${pin.endpoint}) does not answer: ${error.message}`, { details: { pinId: pin.pinId, endpoint: pin.endpoint }, cause: error });
        }
        throw error;
      }
    },
    async release(pin) {
      try {
        await diff.release(pin.endpoint, pin.pinId, { timeoutMs: LOG_SOURCE_CALL_TIMEOUT_MS });
      } catch {
        // It expires on its own after five minutes unused.
      }
    },
    follow(fromIndex, signal): AsyncIterable<LogBatch> {
      return {
        async *[Symbol.asyncIterator](): AsyncGenerator<LogBatch> {
          for await (const event of log.stream({ fromIndex, follow: true, idleTimeoutMs: LOG_IDLE_TIMEOUT_MS, ...(signal === undefined ? {} : { signal }) })) {
            switch (event.type) {
              case 'entries':
                yield {
                  kind: 'entries',
                  entries: event.entries.map((entry) => ({ index: entry.index, data: entry.data, normal: entry.type === EntryType.Normal })),
                  commitIndex: event.commitIndex,
                };
                break;
              case 'heartbeat':
                yield { kind: 'idle', lastIndex: event.lastIndex, commitIndex: event.commitIndex };
                break;
              case 'snapshot-begin':
                // The log no longer holds fromIndex: only a snapshot could follow.
                throw new StrataError(ErrorCode.COMPACTED, `the source compacted its log past index ${fromIndex} (it offers snapshot ${event.snapshot.index} instead)`, {
                  details: { compactIndex: event.snapshot.index, fromIndex },
                });
              case 'snapshot-data':
              case 'snapshot-end':
              case 'snapshot-abandoned':
                break;
              case 'end':
                throw new StrataError(ErrorCode.UNAVAILABLE, `the source's log stream ended at index ${event.lastIndex}`);
              default:
                break;
            }
          }
          throw new StrataError(ErrorCode.UNAVAILABLE, 'the source\'s log stream ended');
        },
      };
    },
    async hold(consumer, index, ttlMs, signal) {
      await log.hold(consumer, index, ttlMs, { timeoutMs: LOG_SOURCE_CALL_TIMEOUT_MS, ...(signal === undefined ? {} : { signal }) });
    },
    async checkpoint(signal) {
      return await eachMember('pin a checkpoint of the source', endpoints, async (endpoint) => ({ endpoint, ...(await diff.pin(endpoint, 'checkpoint', { ...(signal === undefined ? {} : { signal }), timeoutMs: 30_000 })) }), signal);
    },
    close() {
      mirror.close();
      kv.close();
      diff.close();
      log.close();
    },
  };
}

/** leaderFirst orders the endpoints with the leader's first (as the members' statuses say; unchanged when none says). */
async function leaderFirst(kv: EtcdClient, endpoints: readonly string[], signal: AbortSignal | undefined): Promise<string[]> {
  try {
    const statuses = await kv.statusAll({ ...(signal === undefined ? {} : { signal }), timeoutMs: 2_000 });
    for (const answer of statuses) {
      if (!answer.ok || answer.status.memberId === 0n || answer.status.memberId !== answer.status.leaderId) continue;
      const leader = endpoints.find((endpoint) => normalizeEndpoint(endpoint) === normalizeEndpoint(answer.endpoint)) ?? answer.endpoint;
      return [leader, ...endpoints.filter((endpoint) => endpoint !== leader)];
    }
  } catch {
    // Any order will do.
  }
  return [...endpoints];
}

// Failures after which the next member is asked.
const PASS_OVER: ReadonlySet<string> = new Set([ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.STOPPED, ErrorCode.NO_LEADER, ErrorCode.MEMBER_REMOVED]);

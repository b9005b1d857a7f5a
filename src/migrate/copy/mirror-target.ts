// mirrorTarget is the CopyTarget over a stratakv cluster: the mirror calls of its Admin
// service (MirrorRead, MirrorWrite: src/client/mirror-client.ts) and linearizable Ranges of
// etcd's KV API for the pages verify and the re-scan read.

import { DiffClient, EtcdClient, MIRROR_REQUEST_BYTES_MAX_DEFAULT, MirrorClient } from '../../client/index.ts';
import { ErrorCode, isStrataError, StrataError } from '../../util/errors.ts';
import type { CopyTarget, KeyRange, PinnedSourceView, SourcePage, TargetView } from './copy-ends.ts';

/** TARGET_CALL_TIMEOUT_MS is the deadline of one call to the target (a mirror write waits for its commit). */
export const TARGET_CALL_TIMEOUT_MS = 10_000;

/** mirrorTarget is the CopyTarget over the cluster at `endpoints` (host:port). */
export function mirrorTarget(endpoints: readonly string[], options: { readonly requestBytesMax?: number } = {}): CopyTarget {
  const mirror = new MirrorClient({ endpoints, timeoutMs: TARGET_CALL_TIMEOUT_MS });
  const kv = new EtcdClient({ endpoints, timeoutMs: TARGET_CALL_TIMEOUT_MS, mirrorReader: true });
  const diff = new DiffClient();
  return {
    requestBytesMax: options.requestBytesMax ?? MIRROR_REQUEST_BYTES_MAX_DEFAULT,
    async read(signal): Promise<TargetView> {
      const view = await mirror.read({ signal });
      return { state: view.state, revision: view.revision };
    },
    async mirror(request, signal) {
      const answer = await mirror.write(request, { signal });
      return { type: answer.type, revision: answer.revision, state: answer.state };
    },
    async page(range: KeyRange, limit: number, pageOptions): Promise<SourcePage> {
      const answer = await kv.get(range.key, { rangeEnd: range.rangeEnd, limit, keysOnly: pageOptions.keysOnly, serializable: pageOptions.serializable === true, ...(pageOptions.signal === undefined ? {} : { signal: pageOptions.signal }) });
      return { kvs: answer.kvs, more: answer.more, revision: answer.header.revision };
    },
    async count(range: KeyRange, signal?: AbortSignal): Promise<number> {
      return (await kv.get(range.key, { rangeEnd: range.rangeEnd, countOnly: true, ...(signal === undefined ? {} : { signal }) })).count;
    },
    async pin(signal?: AbortSignal): Promise<PinnedSourceView> {
      let last: unknown;
      for (const endpoint of endpoints) {
        try {
          return { endpoint, ...(await diff.pin(endpoint, 'applied', { ...(signal === undefined ? {} : { signal }), timeoutMs: TARGET_CALL_TIMEOUT_MS })) };
        } catch (error) {
          if (!isStrataError(error) || (error.code !== ErrorCode.UNAVAILABLE && error.code !== ErrorCode.TIMEOUT && error.code !== ErrorCode.STOPPED)) throw error;
          last = error;
        }
      }
      throw new StrataError(ErrorCode.UNAVAILABLE, `pin a view of the target: no member of ${endpoints.join(',')} answered (last: ${last instanceof Error ? last.message : String(last)})`, { cause: last });
    },
    async release(pin: PinnedSourceView): Promise<void> {
      try {
        await diff.release(pin.endpoint, pin.pinId, { timeoutMs: TARGET_CALL_TIMEOUT_MS });
      } catch {
        // It expires on its own.
      }
    },
    close() {
      mirror.close();
      kv.close();
      diff.close();
    },
  };
}

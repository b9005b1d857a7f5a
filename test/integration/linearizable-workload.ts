// A client workload for tests with real processes: N clients, each its own EtcdClient, doing
// linearizable reads, writes, compare-and-sets and deletes on a few keys, every operation
// recorded (ok / fail / unknown) for the project's linearizability checker. Values are unique
// per operation. A call that fails is recorded as unknown (the checker lets it have happened
// or not) and counted by its error code, so a test can also demand that none failed.
//
// Bounded: each client stops after OPERATIONS_PER_CLIENT_MAX operations or when stopped.

import type { EtcdClient } from '../../src/client/index.ts';
import { SeededRandom } from '../../src/util/index.ts';
import { HistoryRecorder } from '../linearizability/index.ts';
import type { History } from '../linearizability/index.ts';

/** OPERATIONS_PER_CLIENT_MAX bounds one client's operations. */
export const OPERATIONS_PER_CLIENT_MAX = 20_000;

/** WorkloadResult is what a stopped workload did. */
export interface WorkloadResult {
  readonly history: History;
  readonly ok: number;
  readonly failed: number;
  /** Failures by error code (every failure is recorded as unknown for the checker). */
  readonly failures: ReadonlyMap<string, number>;
  /** The acknowledged writes' (and CASes') last values by key, in acknowledgement order. */
  readonly lastAcknowledged: ReadonlyMap<string, string>;
}

/** Workload is a running workload. */
export interface Workload {
  stop(): Promise<WorkloadResult>;
  /** okCount is how many operations succeeded so far (to wait for progress). */
  okCount(): number;
}

const decoder = new TextDecoder();

/** startWorkload starts one loop per client over `keys` (see the file comment). */
export function startWorkload(clients: readonly EtcdClient[], options: { readonly keys: readonly string[]; readonly seed: number; readonly pauseMs?: number }): Workload {
  const recorder = new HistoryRecorder(() => performance.now());
  const random = new SeededRandom(options.seed);
  let stopping = false;
  let ok = 0;
  let failed = 0;
  const failures = new Map<string, number>();
  const lastAcknowledged = new Map<string, string>();
  const noteFailure = (error: unknown): void => {
    failed += 1;
    const code = (error as { code?: string }).code ?? String(error);
    failures.set(code, (failures.get(code) ?? 0) + 1);
  };
  const loop = async (client: EtcdClient, clientId: number): Promise<void> => {
    const seen = new Map<string, string | null>();
    for (let sequence = 0; sequence < OPERATIONS_PER_CLIENT_MAX && !stopping; sequence += 1) {
      const key = options.keys[random.intBelow(options.keys.length)] ?? 'k';
      const value = `c${clientId}-${sequence}`;
      const dice = random.intBelow(100);
      try {
        if (dice < 35) {
          const op = recorder.invoke(clientId, { kind: 'write', key, value });
          try {
            await client.put(key, value);
            recorder.ok(op);
            lastAcknowledged.set(key, value);
            seen.set(key, value);
          } catch (error) {
            recorder.unknown(op);
            throw error;
          }
        } else if (dice < 70) {
          const op = recorder.invoke(clientId, { kind: 'read', key });
          try {
            const answer = await client.get(key);
            const found = answer.kvs[0];
            const read = found === undefined ? null : decoder.decode(found.value);
            recorder.ok(op, { value: read });
            seen.set(key, read);
          } catch (error) {
            recorder.unknown(op);
            throw error;
          }
        } else if (dice < 90) {
          const expected = seen.get(key) ?? null;
          const op = recorder.invoke(clientId, { kind: 'cas', key, expected, value });
          try {
            const keyBytes = Buffer.from(key);
            const answer = await client.txn({
              type: 'txn',
              compare: expected === null ? [{ target: 'version', result: 'equal', key: keyBytes, number: 0 }] : [{ target: 'value', result: 'equal', key: keyBytes, value: Buffer.from(expected) }],
              success: [{ type: 'put', key: keyBytes, value: Buffer.from(value) }],
              failure: [],
            });
            recorder.ok(op, { succeeded: answer.succeeded });
            if (answer.succeeded) {
              lastAcknowledged.set(key, value);
              seen.set(key, value);
            }
          } catch (error) {
            recorder.unknown(op);
            throw error;
          }
        } else {
          const op = recorder.invoke(clientId, { kind: 'delete', key });
          try {
            const answer = await client.delete(key);
            recorder.ok(op, { deleted: answer.deleted > 0 ? 1 : 0 });
            lastAcknowledged.delete(key);
            seen.set(key, null);
          } catch (error) {
            recorder.unknown(op);
            throw error;
          }
        }
        ok += 1;
      } catch (error) {
        noteFailure(error);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      if (options.pauseMs !== undefined && options.pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    }
  };
  const running = Promise.all(clients.map((client, index) => loop(client, index + 1)));
  return {
    okCount: () => ok,
    stop: async () => {
      stopping = true;
      await running;
      return { history: recorder.history(), ok, failed, failures, lastAcknowledged };
    },
  };
}

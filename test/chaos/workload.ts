// The chaos harness's clients: N loops in the test process, each with its own EtcdClient and a
// deadline on every call, doing linearizable reads, writes, compare-and-sets and deletes on a
// few keys. Every operation is recorded for the project's checker as ok, fail (it definitely
// did not take effect) or unknown (timed out, connection lost: it may have taken effect), and
// every acknowledged mutation keeps the revision its answer carried, for the revision checks.
//
// The outcome of a failed mutation is `fail` only for error codes that a member gives before it
// proposes anything (a refused request: alarms, bad input). The client retries a write on
// another endpoint only where the first attempt cannot have taken effect (retry-policy.ts), so
// the code of the last attempt decides. Everything else is `unknown`; a failed read is `fail`
// (a read changes nothing, so the checker may drop it).
//
// `readsLabelledLinearizable: 'serializable'` is the teeth switch: reads are sent as serializable
// (a member answers from its own state, possibly stale) while the history still calls them
// linearizable, so the checker must flag the run when a partitioned member serves old values.
//
// Bounded: each client stops after OPERATIONS_PER_CLIENT_MAX operations or when stopped; stop()
// waits for the calls in flight, each of which ends by its deadline.
import type { EtcdClient } from '../../src/client/index.ts';
import { SeededRandom } from '../../src/util/index.ts';
import { HistoryRecorder, valueFromBytes } from '../linearizability/index.ts';
import type { History } from '../linearizability/index.ts';

/** OPERATIONS_PER_CLIENT_MAX bounds one client's operations. */
export const OPERATIONS_PER_CLIENT_MAX = 200_000;

/** DEFINITE_FAILURE_CODES are the codes a member answers before proposing: the write did not happen. */
export const DEFINITE_FAILURE_CODES: ReadonlySet<string> = new Set([
  'INVALID_ARGUMENT',
  'KEY_NOT_PROVIDED',
  'REQUEST_TOO_LARGE',
  'TOO_MANY_OPERATIONS',
  'DUPLICATE_KEY',
  'NO_SPACE',
  'CORRUPT_ALARM',
]);

/** MutationRecord is an acknowledged mutation that changed the store, with its revision. */
export interface MutationRecord {
  readonly client: number;
  readonly key: string;
  /** value written, or null for a delete. */
  readonly value: string | null;
  readonly invokeMs: number;
  readonly returnMs: number;
  /** revision: the answer's header revision, the store revision the mutation made. */
  readonly revision: number;
}

/** ReadRecord is an acknowledged read, with the key's mod revision (0 when absent) and the answer's revision. */
export interface ReadRecord {
  readonly client: number;
  readonly key: string;
  /** value found, or null when the key was absent. */
  readonly value: string | null;
  readonly modRevision: number;
  readonly headerRevision: number;
  readonly invokeMs: number;
  readonly returnMs: number;
}

/** WorkloadCounts counts outcomes. */
export interface WorkloadCounts {
  ok: number;
  fail: number;
  unknown: number;
}

/** WorkloadResult is what a stopped workload did. */
export interface WorkloadResult {
  readonly history: History;
  /** keysUsed: every key an operation touched. */
  readonly keysUsed: readonly string[];
  readonly counts: WorkloadCounts;
  /** failures by error code, for ok-less operations (fail and unknown alike). */
  readonly failures: ReadonlyMap<string, number>;
  readonly mutations: readonly MutationRecord[];
  readonly reads: readonly ReadRecord[];
}

/** WorkloadOptions configures startWorkload. */
export interface WorkloadOptions {
  /**
   * keys: how many keys are in use at a time. Every keyRotateMs the workload moves on to a
   * fresh set (`<prefix><generation>/<i>`), as Jepsen's independent keys do: the checker's cost
   * grows with the operations and the unknown writes of one key, so a long run stays checkable.
   */
  readonly keys: number;
  readonly keyPrefix: string;
  readonly keyRotateMs: number;
  readonly seed: number;
  /** now: the clock of the history and of the fault log (milliseconds, monotonic). */
  readonly now: () => number;
  /** deadlineMs: each call's deadline. */
  readonly deadlineMs: number;
  /** reads: 'linearizable' (the default) or 'serializable' (still recorded as linearizable: the teeth run). */
  readonly reads?: 'linearizable' | 'serializable';
  /** readClients: clients used for reads instead of the loop's own (the teeth run points them at one member). */
  readonly readClients?: readonly EtcdClient[];
  /** pauseMs: a pause after each operation, to keep the history's concurrency checkable. */
  readonly pauseMs?: number;
}

/** Workload is a running workload. */
export interface Workload {
  /**
   * stop ends the loops; then, with `finalReader`, reads every key once more (linearizable,
   * recorded like any read, FINAL_READ_ATTEMPTS_MAX attempts each), so the checker proves that
   * the last acknowledged write of every key survived the run.
   */
  stop(options?: { readonly finalReader?: EtcdClient }): Promise<WorkloadResult>;
  counts(): WorkloadCounts;
}

const FAILURE_PAUSE_MS = 50;
/** FINAL_READ_ATTEMPTS_MAX bounds the attempts of each final read. */
export const FINAL_READ_ATTEMPTS_MAX = 5;
/** FINAL_READ_CLIENT is the client id of the final reads in the history. */
export const FINAL_READ_CLIENT = 0;

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error instanceof Error ? error.message.slice(0, 60) : String(error);
}

/** startWorkload starts one loop per client over `keys` (see the file comment). */
export function startWorkload(clients: readonly EtcdClient[], options: WorkloadOptions): Workload {
  const recorder = new HistoryRecorder(options.now);
  const random = new SeededRandom(options.seed);
  const counts: WorkloadCounts = { ok: 0, fail: 0, unknown: 0 };
  const failures = new Map<string, number>();
  const mutations: MutationRecord[] = [];
  const reads: ReadRecord[] = [];
  const serializable = options.reads === 'serializable';
  const keysUsed = new Set<string>();
  let stopping = false;

  const loop = async (client: EtcdClient, clientId: number): Promise<void> => {
    const readClient = options.readClients?.[(clientId - 1) % options.readClients.length] ?? client;
    const seen = new Map<string, string | null>();
    const call = { timeoutMs: options.deadlineMs };
    for (let sequence = 0; sequence < OPERATIONS_PER_CLIENT_MAX && !stopping; sequence += 1) {
      const generation = Math.floor(options.now() / options.keyRotateMs);
      const key = `${options.keyPrefix}${generation}/${random.intBelow(options.keys)}`;
      keysUsed.add(key);
      const value = `c${clientId}-${sequence}`;
      const dice = random.intBelow(100);
      let failed = false;
      const settleFailure = (op: Parameters<HistoryRecorder['fail']>[0], error: unknown, isRead: boolean): void => {
        const code = codeOf(error);
        failures.set(code, (failures.get(code) ?? 0) + 1);
        if (isRead || DEFINITE_FAILURE_CODES.has(code)) {
          recorder.fail(op);
          counts.fail += 1;
        } else {
          recorder.unknown(op);
          counts.unknown += 1;
        }
        failed = true;
      };
      if (dice < 35) {
        const op = recorder.invoke(clientId, { kind: 'write', key, value });
        try {
          const answer = await client.put(key, value, call);
          recorder.ok(op);
          counts.ok += 1;
          mutations.push({ client: clientId, key, value, invokeMs: op.invokeTime, returnMs: options.now(), revision: answer.header.revision });
          seen.set(key, value);
        } catch (error) {
          settleFailure(op, error, false);
        }
      } else if (dice < 70) {
        const op = recorder.invoke(clientId, { kind: 'read', key });
        try {
          const answer = await readClient.get(key, { ...call, serializable });
          const found = answer.kvs[0];
          const read = found === undefined ? null : valueFromBytes(found.value);
          recorder.ok(op, { value: read });
          counts.ok += 1;
          reads.push({ client: clientId, key, value: read, modRevision: found?.modRevision ?? 0, headerRevision: answer.header.revision, invokeMs: op.invokeTime, returnMs: options.now() });
          seen.set(key, read);
        } catch (error) {
          settleFailure(op, error, true);
        }
      } else if (dice < 90) {
        const expected = seen.get(key) ?? null;
        const op = recorder.invoke(clientId, { kind: 'cas', key, expected, value });
        try {
          const keyBytes = Buffer.from(key);
          const answer = await client.txn(
            {
              type: 'txn',
              compare:
                expected === null
                  ? [{ target: 'version', result: 'equal', key: keyBytes, number: 0 }]
                  : [{ target: 'value', result: 'equal', key: keyBytes, value: Buffer.from(expected, 'latin1') }],
              success: [{ type: 'put', key: keyBytes, value: Buffer.from(value) }],
              failure: [],
            },
            call,
          );
          recorder.ok(op, { succeeded: answer.succeeded });
          counts.ok += 1;
          if (answer.succeeded) {
            mutations.push({ client: clientId, key, value, invokeMs: op.invokeTime, returnMs: options.now(), revision: answer.header.revision });
            seen.set(key, value);
          }
        } catch (error) {
          settleFailure(op, error, false);
        }
      } else {
        const op = recorder.invoke(clientId, { kind: 'delete', key });
        try {
          const answer = await client.delete(key, call);
          const deleted = answer.deleted > 0 ? 1 : 0;
          recorder.ok(op, { deleted });
          counts.ok += 1;
          if (deleted === 1) mutations.push({ client: clientId, key, value: null, invokeMs: op.invokeTime, returnMs: options.now(), revision: answer.header.revision });
          seen.set(key, null);
        } catch (error) {
          settleFailure(op, error, false);
        }
      }
      const pauseMs = failed ? FAILURE_PAUSE_MS : (options.pauseMs ?? 0);
      if (pauseMs > 0 && !stopping) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  };
  const running = Promise.all(clients.map((client, index) => loop(client, index + 1)));
  return {
    counts: () => ({ ...counts }),
    stop: async (stopOptions = {}) => {
      stopping = true;
      await running;
      const reader = stopOptions.finalReader;
      for (const key of reader === undefined ? [] : [...keysUsed].sort()) {
        for (let attempt = 1; attempt <= FINAL_READ_ATTEMPTS_MAX; attempt += 1) {
          const op = recorder.invoke(FINAL_READ_CLIENT, { kind: 'read', key });
          try {
            const answer = await (reader as EtcdClient).get(key, { timeoutMs: options.deadlineMs });
            const found = answer.kvs[0];
            recorder.ok(op, { value: found === undefined ? null : valueFromBytes(found.value) });
            counts.ok += 1;
            break;
          } catch (error) {
            recorder.fail(op);
            counts.fail += 1;
            const code = codeOf(error);
            failures.set(`final read: ${code}`, (failures.get(`final read: ${code}`) ?? 0) + 1);
          }
        }
      }
      return { history: recorder.history(), keysUsed: [...keysUsed].sort(), counts: { ...counts }, failures, mutations, reads };
    },
  };
}

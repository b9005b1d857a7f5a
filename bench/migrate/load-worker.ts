// The write load of bench:migrate, in a process of its own (forked by load.ts) so that the
// bench's own work (status polls, the migration's child, analysis) does not delay it: N
// clients, each its own EtcdClient (the stratakv client, with auto-sync so that it follows the
// cluster onto new members), each putting a fresh key after another, one at a time (or, with
// `mix: 'mixed'`, puts, deletes and Txns: LoadStart.mix). A "move"
// points every client at other endpoints (bench:migrate-copy moves the writers when `copy
// switch` of an etcd source asks for it, and back after `copy reverse`). Every put
// is recorded: when it started and ended (epoch ms) and how it ended — acknowledged, failed
// (the server refused it before doing anything: it did not happen) or ambiguous (it may or may
// not have happened). After a failure a client pauses FAILURE_PAUSE_MS and goes on.
//
// Bounded: the load ends on "stop", after durationMsMax, or after opsMax puts in all.
import { EtcdClient } from '../../src/client/index.ts';
import { ErrorCode, isStrataError, type StrataError } from '../../src/util/errors.ts';
import { OUTCOME_AMBIGUOUS, OUTCOME_FAILED, OUTCOME_OK, type LoadCommand, type LoadFailureSample, type LoadMessage, type LoadStart } from './load-types.ts';

const CLIENTS_MAX = 256;
const FAILURE_SAMPLES_MAX = 1_000;
const FAILURE_PAUSE_MS = 20;
const INITIAL_ROWS = 1 << 16;

// Refusals made before the server did anything with the put: it did not happen. Every other
// error (a timeout, a leader change, a stopped member, a broken connection) leaves it unknown.
const REFUSED: ReadonlySet<string> = new Set<string>([
  ErrorCode.NO_LEADER,
  ErrorCode.NOT_LEADER,
  ErrorCode.PROPOSAL_DROPPED,
  ErrorCode.NO_SPACE,
  ErrorCode.MEMBER_REMOVED,
  // A read-only mirror's refusal (a copy's target, or a source a switch fenced).
  ErrorCode.MIRROR_READ_ONLY,
  ErrorCode.NOT_SUPPORTED_FOR_LEARNER,
  ErrorCode.CORRUPT_ALARM,
  ErrorCode.INVALID_ARGUMENT,
  ErrorCode.REQUEST_TOO_LARGE,
  ErrorCode.KEY_NOT_PROVIDED,
]);

// etcd's "raft proposal dropped" (a proposal its Raft refused, as during a leader transfer)
// says the put was not applied, but reaches the client as a bare UNAVAILABLE; the message is
// all that tells it apart (bench/cluster/load-client.ts does the same).
const DEFINITE_MESSAGES: readonly RegExp[] = [/raft proposal dropped/i];

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

function send(message: LoadMessage): void {
  process.send?.(message);
}

// Rows grows three typed arrays together (one row per finished put).
class Rows {
  count = 0;
  startsMs = new Float64Array(INITIAL_ROWS);
  endsMs = new Float64Array(INITIAL_ROWS);
  outcomes = new Uint8Array(INITIAL_ROWS);
  clientOf = new Uint8Array(INITIAL_ROWS);

  add(client: number, startMs: number, endMs: number, outcome: number): void {
    if (this.count === this.startsMs.length) {
      const grow = <T extends Float64Array | Uint8Array>(array: T, make: (length: number) => T): T => {
        const grown = make(array.length * 2);
        grown.set(array);
        return grown;
      };
      this.startsMs = grow(this.startsMs, (length) => new Float64Array(length));
      this.endsMs = grow(this.endsMs, (length) => new Float64Array(length));
      this.outcomes = grow(this.outcomes, (length) => new Uint8Array(length));
      this.clientOf = grow(this.clientOf, (length) => new Uint8Array(length));
    }
    this.startsMs[this.count] = startMs;
    this.endsMs[this.count] = endMs;
    this.outcomes[this.count] = outcome;
    this.clientOf[this.count] = client;
    this.count += 1;
  }
}

let stopRequested = false;
let running = false;
// The wait after each put ("pace"), 0 by default.
let paceMs = 0;
// The running load's clients, for "move" (none when no load runs).
let runningClients: readonly EtcdClient[] = [];

async function runLoad(job: LoadStart): Promise<void> {
  if (!(job.clients >= 1 && job.clients <= CLIENTS_MAX)) throw new Error(`bad client count ${job.clients}`);
  if (job.endpoints.length === 0) throw new Error('no endpoints');
  const clients = Array.from(
    { length: job.clients },
    () => new EtcdClient({ endpoints: job.endpoints, timeoutMs: job.timeoutMs, autoSyncIntervalMs: job.autoSyncIntervalMs, failOverOnMirror: job.failOverOnMirror === true }),
  );
  runningClients = clients;
  const value = Buffer.alloc(job.valueBytes, 0x6d);
  const mixed = job.mix === 'mixed';
  const rows = new Rows();
  const errors: Record<string, number> = {};
  const failures: LoadFailureSample[] = [];
  const acknowledgedByClient = new Array<number>(job.clients).fill(0);
  const ambiguousByClient = new Array<number>(job.clients).fill(0);
  const deadlineMs = performance.now() + job.durationMsMax;
  let stoppedBy: 'stop' | 'duration' | 'ops' = 'stop';
  const keepGoing = (): boolean => {
    if (stopRequested) return false;
    if (performance.now() >= deadlineMs) {
      stoppedBy = 'duration';
      return false;
    }
    if (rows.count >= job.opsMax) {
      stoppedBy = 'ops';
      return false;
    }
    return true;
  };
  const loop = async (client: EtcdClient, index: number): Promise<void> => {
    const keyOf = (seq: number): Buffer => Buffer.from(`${job.keyPrefix}/c${index}/${seq}`);
    for (let seq = 0; keepGoing(); seq += 1) {
      const kind = mixed ? seq % 10 : 0;
      const startMs = epochMs();
      try {
        if (kind < 6) {
          await client.put(keyOf(seq), value);
        } else if (kind < 8) {
          await client.delete(keyOf(seq - 5));
        } else {
          const put = { type: 'put' as const, key: keyOf(seq), value };
          await client.txn({ type: 'txn', compare: [{ target: 'version', result: 'greater', key: keyOf(seq - 3), number: 0 }], success: [put, { type: 'deleteRange', key: keyOf(seq - 4) }], failure: [put] });
        }
        rows.add(index, startMs, epochMs(), OUTCOME_OK);
        acknowledgedByClient[index] = (acknowledgedByClient[index] ?? 0) + 1;
      } catch (error) {
        const endMs = epochMs();
        const code = isStrataError(error) ? error.code : 'NOT_A_STRATA_ERROR';
        const message = isStrataError(error) ? (error as StrataError).message : String(error);
        const ambiguous = !REFUSED.has(code) && !DEFINITE_MESSAGES.some((pattern) => pattern.test(message));
        rows.add(index, startMs, endMs, ambiguous ? OUTCOME_AMBIGUOUS : OUTCOME_FAILED);
        if (ambiguous) ambiguousByClient[index] = (ambiguousByClient[index] ?? 0) + 1;
        const kind = `${code}: ${message.slice(0, 160)}`;
        errors[kind] = (errors[kind] ?? 0) + 1;
        if (failures.length < FAILURE_SAMPLES_MAX) failures.push({ client: index, startMs, endMs, code, message: message.slice(0, 300), ambiguous });
        await new Promise((resolve) => setTimeout(resolve, FAILURE_PAUSE_MS));
      }
      if (paceMs > 0) await new Promise((resolve) => setTimeout(resolve, paceMs));
    }
  };
  const loops = clients.map((client, index) => loop(client, index));
  send({ type: 'ready', atMs: epochMs() });
  await Promise.all(loops);
  runningClients = [];
  const endpointsAtEnd = clients.map((client) => [...client.endpoints]);
  for (const client of clients) client.close();
  send({
    type: 'report',
    startsMs: rows.startsMs.slice(0, rows.count),
    endsMs: rows.endsMs.slice(0, rows.count),
    outcomes: rows.outcomes.slice(0, rows.count),
    clientOf: rows.clientOf.slice(0, rows.count),
    acknowledgedByClient,
    ambiguousByClient,
    errors,
    failures,
    endpointsAtEnd,
    stoppedBy,
  });
}

// move points every client of the running load at `endpoints`; puts in flight finish where they are.
function move(endpoints: readonly string[]): void {
  if (runningClients.length === 0) throw new Error('move: no load is running');
  for (const client of runningClients) client.setEndpoints(endpoints);
  send({ type: 'moved', atMs: epochMs() });
}

process.on('message', (command: LoadCommand) => {
  if (command.type === 'pace') {
    paceMs = command.delayMs;
    return;
  }
  if (command.type === 'stop') {
    stopRequested = true;
    return;
  }
  if (command.type === 'move') {
    try {
      move(command.endpoints);
    } catch (error) {
      send({ type: 'error', message: error instanceof Error ? error.message : String(error) });
    }
    return;
  }
  if (running) {
    send({ type: 'error', message: 'a load is already running' });
    return;
  }
  running = true;
  stopRequested = false;
  runLoad(command).then(
    () => {
      running = false;
    },
    (error: unknown) => {
      running = false;
      send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    },
  );
});
process.on('disconnect', () => process.exit(0));

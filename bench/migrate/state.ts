// The state both systems hold before they are moved: `keys` keys of `valueBytes` random bytes
// (LevelDB and bbolt would compress zeros), written through Txns of several puts by parallel
// workers (bench/snapshot/members.ts preload), then a wait until every member has applied them
// and the members' CPU has settled (snapshots and compactions the load started are done).
// Also: the run's settings and result types shared by the two systems.
import { EtcdClient } from '../../src/client/index.ts';
import type { Member } from '../cluster/launchers.ts';
import { preload, waitAllApplied, waitSettled } from '../snapshot/members.ts';
import type { Timeline } from './timeline.ts';

const PRELOAD_CONCURRENCY = 8;
const PRELOAD_TIMEOUT_MS = 60 * 60_000;
/** TXN_BYTES_TARGET sizes the preload's Txns (well under both systems' 1.5 MiB request limit). */
const TXN_BYTES_TARGET = 256 * 1024;
const TXN_PUTS_MAX = 128;
const APPLIED_TIMEOUT_MS = 10 * 60_000;
const SETTLED_CPU_PERCENT_MAX = 15;
const SETTLED_WINDOW_MS = 2_000;
const SETTLE_TIMEOUT_MS = 180_000;

/** stateKeyOf is the preload's key number `index` (fixed width). */
export function stateKeyOf(prefix: string, index: number): Buffer {
  return Buffer.from(`${prefix}/${index.toString().padStart(10, '0')}`);
}

/** loadState writes the state through `leader` and waits for every member to apply it and settle; answers what it took. */
export async function loadState(members: readonly Member[], leader: Member, keys: number, valueBytes: number, log: (line: string) => void): Promise<{ seconds: number; settleSeconds: number; settled: boolean }> {
  const putsPerTxn = Math.max(1, Math.min(TXN_PUTS_MAX, Math.floor(TXN_BYTES_TARGET / valueBytes)));
  const loaded = await preload({
    endpoint: leader.endpoint,
    prefix: 'state',
    keys,
    valueBytes,
    putsPerTxn,
    concurrency: PRELOAD_CONCURRENCY,
    timeoutMs: PRELOAD_TIMEOUT_MS,
    keyOf: stateKeyOf,
    log,
  });
  log(`  preload: ${keys} keys × ${valueBytes} B in ${loaded.txns} Txns of up to ${putsPerTxn} puts, ${loaded.seconds.toFixed(0)} s (${((keys * valueBytes) / loaded.seconds / 1e6).toFixed(1)} MB/s), ${loaded.retries} retries`);
  const settleStarted = performance.now();
  await waitAllApplied(members, leader, APPLIED_TIMEOUT_MS);
  const settled = await waitSettled(members.map((member) => member.pid), SETTLED_CPU_PERCENT_MAX, SETTLED_WINDOW_MS, SETTLE_TIMEOUT_MS);
  const settleSeconds = (performance.now() - settleStarted) / 1000;
  log(`  every member applied the preload; ${settled.settled ? 'settled' : 'NOT settled'} (each under ${SETTLED_CPU_PERCENT_MAX} % of a core) after ${settleSeconds.toFixed(0)} s`);
  return { seconds: loaded.seconds, settleSeconds, settled: settled.settled };
}

/** dbSizeOf answers a member's database size from Maintenance.Status (NaN when it does not answer). */
export async function dbSizeOf(endpoint: string): Promise<number> {
  const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 5_000 });
  try {
    return (await client.status(endpoint)).dbSizeBytes;
  } catch {
    return Number.NaN;
  } finally {
    client.close();
  }
}

/** RunSettings are one run's settings, the same for both systems. */
export interface RunSettings {
  readonly keys: number;
  readonly valueBytes: number;
  readonly load: { readonly clients: number; readonly valueBytes: number; readonly autoSyncIntervalMs: number; readonly timeoutMs: number };
  readonly warmupMs: number;
  /** beforeMs: how long the load runs (after the warm-up) before the move. */
  readonly beforeMs: number;
  /** zoneDelayMs: one-way delay on the new members' peer links (0: no proxy). */
  readonly zoneDelayMs: number;
  /**
   * newMembersNice: the nice value the new members are started with (0: as the old ones). Every
   * member here shares two cores; on separate machines (the point of a zone move) the new
   * members' catch-up would not take the old members' CPU. A high value (19) models that for
   * both systems alike: the new members get the CPU the old ones and the load leave.
   */
  readonly newMembersNice: number;
  readonly log: (line: string) => void;
}

/** AcknowledgedCheck compares, per client, the keys found with the puts acknowledged (and ambiguous). */
export interface AcknowledgedCheck {
  readonly checked: boolean;
  /** missing: acknowledged puts whose keys are not there (must be 0). */
  readonly missing: number;
  /** extra: keys beyond the acknowledged ones (at most the ambiguous puts). */
  readonly extra: number;
  readonly text: string;
}

/** SystemRun is one run of one system. */
export interface SystemRun {
  readonly system: 'stratakv' | 'etcd';
  readonly description: string;
  readonly keys: number;
  readonly valueBytes: number;
  readonly preloadSeconds: number;
  /** dbSizeBytes: the leader's database size (Maintenance.Status) before the move. */
  readonly dbSizeBytes: number;
  readonly timeline: Timeline;
  readonly acknowledged: AcknowledgedCheck;
  /** oldMembers: whether the old members' processes exited by themselves, and when. */
  readonly oldMembers: string;
  readonly notes: readonly string[];
}

/** nicedCommand wraps `command args` in `nice -n N` when N > 0 (the whole process, every thread, starts at that priority). */
export function nicedCommand(nice: number, command: string, args: readonly string[]): { command: string; args: readonly string[] } {
  return nice === 0 ? { command, args } : { command: '/usr/bin/nice', args: ['-n', String(nice), command, ...args] };
}

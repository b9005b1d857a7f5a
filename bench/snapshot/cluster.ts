// bench:snapshot, figures 3 to 5, on a 3-process stratakv cluster:
//  3. a new member holding nothing joins the cluster holding `keys` keys: Cluster.MemberAdd,
//     `stratakv serve --initial-cluster-state existing`, timed from spawn until its applied
//     index reaches the leader's (the leader sends it its snapshot, it restores, then catches
//     up from the log);
//  4. put p99 (closed loop, `concurrency` outstanding, 100-byte values, to the leader) in
//     windows without a snapshot send and windows while a new member joins (so receives the
//     snapshot), alternating: without, with, without, with …. The member joined under load is
//     a learner (Cluster.MemberAdd isLearner, as etcd advises and migrations do): a voter would
//     change the quorum to 3 of 4 for the whole window, which is not the send's cost. The
//     window with a send lasts from the new member's spawn until the leader logs "snapshot
//     sent" (the send includes the new member's restore, which runs beside the transfer);
//  5. the leader's RSS (VmRSS, every 100 ms) before a join and while it sends.
// Every round: a fresh snapshot on the leader (Maintenance.Snapshot; from round 2), one join
// on the quiet cluster (figures 3 and 5), a window without, a window
// with a join under load (figure 4; its join time and RSS are reported too). A joined member is
// removed (MemberRemove), stopped and its folder deleted before the next step, so the cluster
// is back to its three members; each join uses new peer URLs (an id is never reused).
import { copyFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';

import type { LoadHarness, MergedResult } from '../cluster/harness.ts';
import { stratakvLauncher, type RunningCluster } from '../cluster/launchers.ts';
import { sleep } from '../cluster/processes.ts';
import { median } from '../cluster/stats.ts';
import { ddWriteMBps, mibFor, removeAndSync } from './dd.ts';
import { joinMember, preload, RssSampler, snapshotAndCompact, waitAllApplied, waitSettled, type CompactionResult, type JoinResult } from './members.ts';

/** ClusterFigures are every round's values. */
export interface ClusterFigures {
  readonly description: string;
  readonly preloadSeconds: number;
  readonly preloadTxns: number;
  readonly putsPerTxn: number;
  readonly compaction: CompactionResult;
  /** Figure 3: joins on the quiet cluster. */
  readonly quietJoins: JoinSample[];
  /** Figure 4: p99 and rate of the windows, and the joins under load. */
  readonly withoutWindows: WindowSample[];
  readonly withWindows: WindowSample[];
  readonly loadedJoins: JoinSample[];
  /** dd oflag=direct conv=fdatasync of the snapshot's size in the cluster's folder, once per round before the quiet join. */
  readonly ddDirectWriteMBps: number[];
  /** How long each round waited for the members to be idle before its quiet join. */
  readonly settleWaitsMs: number[];
}

/** JoinSample is one join with the leader's RSS around it. */
export interface JoinSample extends Omit<JoinResult, 'id'> {
  readonly rssBeforeMedianBytes: number;
  readonly rssDuringMaxBytes: number;
  /** The same for RssAnon (VmRSS without mapped files: LevelDB maps its tables). */
  readonly anonBeforeMedianBytes: number;
  readonly anonDuringMaxBytes: number;
}

/** WindowSample is one put window. */
export interface WindowSample {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly perSecond: number;
  readonly windowMs: number;
  readonly errors: number;
}

/** ClusterOptions: the state's size, the rounds, the load and extra serve flags. */
export interface ClusterOptions {
  readonly keys: number;
  readonly valueBytes: number;
  readonly rounds: number;
  readonly concurrency: number;
  readonly windowMs: number;
  readonly putsPerTxn: number;
  readonly serveFlags: readonly string[];
  /** sendRateBytes is the members' --snapshot-send-rate-bytes (for the bound on a join's wait). */
  readonly sendRateBytes: number;
  readonly harness: LoadHarness;
  readonly keyOf: (prefix: string, index: number) => Buffer;
  readonly log: (line: string) => void;
}

const PRELOAD_CONCURRENCY = 16;
const PRELOAD_TIMEOUT_MS = 30 * 60_000;
const APPLIED_TIMEOUT_MS = 300_000;
/** A join may take JOIN_TIMEOUT_FACTOR × (send at the send rate + 5 s), within [JOIN_TIMEOUT_MS_MIN, JOIN_TIMEOUT_MS_MAX]. */
const JOIN_TIMEOUT_FACTOR = 20;
const JOIN_TIMEOUT_MS_MIN = 120_000;
const JOIN_TIMEOUT_MS_MAX = 10 * 60_000;
const RSS_BEFORE_MS = 3_000;
const PUT_VALUE_BYTES = 100;
const WARMUP_MS = 1_000;
/** A window under load lasts until the join ends, at most this long. */
const WITH_WINDOW_MS_MAX = JOIN_TIMEOUT_MS_MAX;
/** Members count as idle when each used less than this much of a core over SETTLED_WINDOW_MS. */
const SETTLED_CPU_PERCENT_MAX = 10;
const SETTLED_WINDOW_MS = 2_000;
const SETTLE_TIMEOUT_MS = 180_000;
/** The snapshot should leave at most this many entries in the leader's log. */
const COMPACTED_TAIL_MAX = 10_000;

/** measureCluster runs figures 3 to 5 (see the file comment); stops the cluster on every way out. */
export async function measureCluster(options: ClusterOptions): Promise<ClusterFigures> {
  const { rounds, harness, log } = options;
  const cluster: RunningCluster = await stratakvLauncher({ serveFlags: options.serveFlags }).start();
  let failed = true;
  try {
    let leader = await cluster.leader();
    log(`  ${cluster.description}; leader ${leader.name}`);
    const loaded = await preload({
      endpoint: leader.endpoint,
      prefix: 'state',
      keys: options.keys,
      valueBytes: options.valueBytes,
      putsPerTxn: options.putsPerTxn,
      concurrency: PRELOAD_CONCURRENCY,
      timeoutMs: PRELOAD_TIMEOUT_MS,
      keyOf: options.keyOf,
      log,
    });
    log(`  preload: ${options.keys} keys in ${loaded.txns} Txns of up to ${options.putsPerTxn} puts, ${loaded.seconds.toFixed(0)} s, ${loaded.retries} retries`);
    leader = await cluster.leader();
    await waitAllApplied(cluster.members, leader, APPLIED_TIMEOUT_MS);
    const compaction = await snapshotAndCompact(leader, COMPACTED_TAIL_MAX, log, true);
    if (compaction.compactedThrough < 1) log('  WARNING: the leader kept its whole log: a new member will catch up from the log, not from a snapshot');
    const joinTimeoutMs = Math.min(
      JOIN_TIMEOUT_MS_MAX,
      Math.max(JOIN_TIMEOUT_MS_MIN, JOIN_TIMEOUT_FACTOR * ((compaction.bytes / options.sendRateBytes) * 1000 + 5_000)),
    );

    const figures: ClusterFigures = {
      description: cluster.description,
      preloadSeconds: loaded.seconds,
      preloadTxns: loaded.txns,
      putsPerTxn: options.putsPerTxn,
      compaction,
      quietJoins: [],
      withoutWindows: [],
      withWindows: [],
      loadedJoins: [],
      ddDirectWriteMBps: [],
      settleWaitsMs: [],
    };
    let joins = 0;
    // joinOnce joins a member while `sampler` watches the leader; RSS "before" is the median
    // of [beforeFromMs, beforeToMs], "during" the largest sample from spawn to caught up.
    // The caller calls leave() (after ending its load, so that the removal is not in a window).
    const joinOnce = async (
      sampler: RssSampler,
      beforeFromMs: number,
      beforeToMs: number,
      how: { readonly learner: boolean; readonly onSent?: () => void },
    ): Promise<{ sample: JoinSample; leave: () => Promise<void> }> => {
      joins += 1;
      const joined = await joinMember({ cluster, leader, name: `j${joins}`, serveFlags: options.serveFlags, timeoutMs: joinTimeoutMs, ...how });
      const endedAtMs = joined.startedAtMs + joined.caughtUpMs;
      const { id: _id, leave, ...result } = joined;
      const sample: JoinSample = {
        ...result,
        rssBeforeMedianBytes: median(sampler.between(beforeFromMs, beforeToMs)),
        rssDuringMaxBytes: Math.max(...sampler.between(joined.startedAtMs, endedAtMs)),
        anonBeforeMedianBytes: median(sampler.between(beforeFromMs, beforeToMs, 'anonBytes')),
        anonDuringMaxBytes: Math.max(...sampler.between(joined.startedAtMs, endedAtMs, 'anonBytes')),
      };
      return { sample, leave };
    };
    // quietFirst watches the leader for RSS_BEFORE_MS with nothing running, then calls `then` with the sampler.
    const quietFirst = async <T>(then: (sampler: RssSampler, beforeFromMs: number, beforeToMs: number) => Promise<T>): Promise<T> => {
      leader = await cluster.leader();
      const sampler = new RssSampler(leader.pid);
      try {
        const beforeFromMs = performance.now();
        await sleep(RSS_BEFORE_MS);
        return await then(sampler, beforeFromMs, performance.now());
      } finally {
        sampler.stop();
      }
    };
    const describeJoin = (sample: JoinSample): string => {
      const sends = sample.sends.map((send) => `${(send.bytes / 1e6).toFixed(0)} MB in ${(send.ms / 1000).toFixed(1)} s (${(send.bytes / send.ms / 1000).toFixed(0)} MB/s)`).join(', ');
      return (
        `${sample.name} caught up (applied index ${sample.targetIndex}) ${(sample.caughtUpMs / 1000).toFixed(2)} s after spawn; ` +
        `snapshot sends: ${sends === '' ? 'none' : sends}${sample.sendFailures > 0 ? `, ${sample.sendFailures} failed` : ''}; ` +
        `leader RSS ${(sample.rssBeforeMedianBytes / 2 ** 20).toFixed(0)} MiB before, max ${(sample.rssDuringMaxBytes / 2 ** 20).toFixed(0)} MiB during ` +
        `(RssAnon ${(sample.anonBeforeMedianBytes / 2 ** 20).toFixed(0)} → ${(sample.anonDuringMaxBytes / 2 ** 20).toFixed(0)} MiB)`
      );
    };
    const window = (result: MergedResult): WindowSample => ({
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      maxMs: result.latency.max,
      perSecond: result.perSecond,
      windowMs: result.windowMs,
      errors: result.failed + result.ambiguous,
    });
    const describeWindow = (sample: WindowSample): string =>
      `${sample.perSecond.toFixed(0)} puts/s, p50 ${sample.p50Ms.toFixed(1)} ms, p99 ${sample.p99Ms.toFixed(1)} ms, max ${sample.maxMs.toFixed(0)} ms over ${(sample.windowMs / 1000).toFixed(1)} s${sample.errors > 0 ? `, ${sample.errors} errors` : ''}`;
    const putJob = (round: number, kind: string, durationMs: number) => ({
      operation: 'put' as const,
      endpoints: [leader.endpoint],
      channels: 1,
      concurrency: options.concurrency,
      warmupMs: WARMUP_MS,
      durationMs,
      requestsMax: 10_000_000,
      deadlineMs: 0,
      keyPrefix: `load/r${round}/${kind}`,
      getPrefix: 'load',
      getKeys: 1,
      valueBytes: PUT_VALUE_BYTES,
      recordCompletions: false,
    });

    const folder = cluster.folder ?? '';
    const ddPath = `${folder}/dd.bin`;
    for (let round = 0; round < rounds; round += 1) {
      if (round > 0) {
        // The previous round's load left the log far past the last snapshot: a fresh one, so
        // that the quiet join measures a snapshot install, not a long replay of that load.
        leader = await cluster.leader();
        await snapshotAndCompact(leader, Number.MAX_SAFE_INTEGER, log);
      }
      // The load of the previous round starts snapshots (every --snapshot-count entries) that
      // go on after it: the quiet join and its dd wait until the members are idle (bounded).
      const settle = await waitSettled(cluster.members.map((member) => member.pid), SETTLED_CPU_PERCENT_MAX, SETTLED_WINDOW_MS, SETTLE_TIMEOUT_MS);
      figures.settleWaitsMs.push(settle.waitedMs);
      log(`  round ${round + 1}/${rounds} members ${settle.settled ? 'idle' : 'STILL BUSY'} after ${(settle.waitedMs / 1000).toFixed(1)} s`);
      const ddRate = ddWriteMBps(ddPath, folder, mibFor(compaction.bytes), true);
      removeAndSync(ddPath, folder);
      figures.ddDirectWriteMBps.push(ddRate);
      log(`  round ${round + 1}/${rounds} dd oflag=direct conv=fdatasync of ${mibFor(compaction.bytes)} MiB beside the members: ${ddRate.toFixed(0)} MB/s`);
      const quietJoin = await quietFirst((sampler, from, to) => joinOnce(sampler, from, to, { learner: false }));
      await quietJoin.leave();
      const quiet = quietJoin.sample;
      figures.quietJoins.push(quiet);
      log(`  round ${round + 1}/${rounds} quiet join: ${describeJoin(quiet)}`);

      leader = await cluster.leader();
      // A window without a send lasts as long as the last window with one (the first: --window-ms).
      const previous = figures.withWindows.at(-1);
      const withoutMs = Math.max(1_000, Math.round(previous?.windowMs ?? options.windowMs));
      const without = window(await harness.run(putJob(round, 'without', withoutMs)));
      figures.withoutWindows.push(without);
      log(`  round ${round + 1}/${rounds} window without a send: ${describeWindow(without)}`);

      const { withSend, loadedJoin } = await quietFirst(async (sampler, from, to) => {
        const running = harness.startJob(putJob(round, 'with', WITH_WINDOW_MS_MAX));
        let joined: { sample: JoinSample; leave: () => Promise<void> };
        try {
          await running.measuring;
          // The window is the send: it ends when the leader logged "snapshot sent" (the
          // learner's catch-up from the log afterwards is not the send's cost).
          joined = await joinOnce(sampler, from, to, { learner: true, onSent: () => running.stop() });
        } catch (error) {
          // join() removed and stopped its member already.
          running.stop();
          await running.result.catch(() => undefined);
          throw error;
        }
        running.stop();
        let result: MergedResult;
        try {
          result = await running.result;
        } finally {
          await joined.leave();
        }
        return { withSend: window(result), loadedJoin: joined.sample };
      });
      figures.withWindows.push(withSend);
      figures.loadedJoins.push(loadedJoin);
      log(`  round ${round + 1}/${rounds} window with a send: ${describeWindow(withSend)}`);
      log(`  round ${round + 1}/${rounds} join under load: ${describeJoin(loadedJoin)}`);
    }
    failed = false;
    return figures;
  } finally {
    if (failed || process.env['STRATAKV_BENCH_KEEP_LOGS'] === '1') keepLogs(cluster, log);
    await cluster.stop();
  }
}

// keepLogs copies the members' logs (not their data) out of the cluster's folder before it is
// removed, so that a failed run can be read afterwards; the folder is named in the output.
function keepLogs(cluster: RunningCluster, log: (line: string) => void): void {
  if (cluster.folder === undefined) return;
  try {
    const kept = mkdtempSync(joinPath(tmpdir(), 'stratakv-bench-snapshot-logs-'));
    for (const name of readdirSync(cluster.folder).filter((entry) => entry.endsWith('.log'))) copyFileSync(joinPath(cluster.folder, name), joinPath(kept, name));
    log(`  the members' logs are kept in ${kept}`);
  } catch (error) {
    log(`  could not keep the members' logs: ${String(error)}`);
  }
}

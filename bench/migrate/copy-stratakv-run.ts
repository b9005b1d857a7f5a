// One run of bench:migrate-copy with a stratakv source (`--source stratakv`): two fresh
// 3-member stratakv clusters, the source preloaded, then, in order —
//   1. the load alone on the source (no copier), the write rate's reference;
//   2. a plain paginated read of the source (linearizable pages of its current state: stratakv
//      keeps no revision history), the copy (`copy create --from stratakv://…` to its "scan
//      done"), the plain read again;
//   3. the tail: --clients writers (load.ts with failOverOnMirror: EtcdClients and both
//      clusters' endpoints, the source's first) and the lag probes;
//   4. `copy verify` (a Merkle diff at a source checkpoint) while the load runs;
//   5. `copy switch` while the load runs: the JSON's writePauseMs (fence → writable) and the
//      pause the writers saw (the longest gap between two successive acknowledged writes of
//      any writer around it) and their writes that failed or timed out;
//   6. the reverse copier (new primary → old source), the load NEW_PRIMARY_SECONDS on the new
//      primary, `copy reverse` (the same two figures);
//   7. the forward copier again, the load stopped, the catch-up, a last `copy verify`.
// Every wait is bounded; the caller's cleanup ends every process if a step throws.
import { EtcdClient } from '../../src/client/index.ts';
import { stratakvLauncher, type RunningCluster } from '../cluster/launchers.ts';
import { sleep } from '../cluster/processes.ts';
import { median } from '../cluster/stats.ts';
import { startLoad, windowFigures } from './load.ts';
import { moveFigures, stepAside, waitForMirror, type MoveFigures } from './copy-moves.ts';
import { copierLines, copyCli, epochMs, lagFigures, plainRead, preload, startCopier, startProbes, type Copier, type CopyCliAnswer, type CopyRunConfig, type CopyRunFigures } from './copy-tools.ts';
import type { RunningLoad } from './load.ts';
import { OUTCOME_OK } from './load-types.ts';

/** NEW_PRIMARY_SECONDS: how long the load runs on the new primary between the switch and the reverse. */
export const NEW_PRIMARY_SECONDS = 10;
/** WRITE_TIMEOUT_MS: each put's deadline, retries and mirror fail-over included. */
const WRITE_TIMEOUT_MS = 15_000;
const COPIER_START_TIMEOUT_MS = 60_000;
const LOAD_OPS_MAX = 50_000_000;
const NOTE_LINES_MAX = 3;
const MB = 1_000_000;

/** VerifyFigures are one `copy verify` (Merkle). */
export interface VerifyFigures {
  readonly equal: boolean;
  readonly keyCount: number;
  readonly seconds: number;
  readonly waitedSeconds: number;
}

/** StratakvRunFigures are one run's results. */
export interface StratakvRunFigures extends CopyRunFigures {
  readonly tailVerify: VerifyFigures;
  readonly switched: MoveFigures;
  readonly newPrimaryWritesPerSecond: number;
  readonly reversed: MoveFigures;
  readonly catchUpAfterLoadMs: number;
  readonly finalVerify: VerifyFigures;
  readonly failedPuts: number;
  readonly notes: readonly string[];
}

function verifyFigures(answer: CopyCliAnswer, what: string, notes: string[]): VerifyFigures {
  const equal = answer.json['equal'] === true;
  if (!equal) notes.push(`${what}: ${JSON.stringify(answer.json).slice(0, 1_000)}`);
  return { equal, keyCount: Number(answer.json['keyCount'] ?? 0), seconds: answer.seconds, waitedSeconds: Number(answer.json['waitedSeconds'] ?? 0) };
}

/** move runs `copy switch|reverse --to TO` and checks that it switched. */
async function move(verb: 'switch' | 'reverse', to: string, timeoutMs: number): Promise<CopyCliAnswer> {
  const answer = await copyCli([verb, '--to', to], timeoutMs);
  if (answer.status !== 0 || answer.json['result'] !== 'switched') throw new Error(`copy ${verb} --to ${to} failed (status ${String(answer.status)}): ${JSON.stringify(answer.json)} ${answer.stderr.slice(-2_000)}`);
  return answer;
}

/** stratakvRun runs one `--source stratakv` run on fresh clusters. */
export async function stratakvRun(run: number, config: CopyRunConfig): Promise<StratakvRunFigures> {
  const notes: string[] = [];
  const copiers: { label: string; copier: Copier }[] = [];
  const say = (text: string): void => console.log(`run ${run} (stratakv): ${text}`);
  let load: RunningLoad | undefined;
  let target: RunningCluster | undefined;
  let targetClient: EtcdClient | undefined;
  const source = await stratakvLauncher().start();
  const sourceEndpoints = source.members.map((member) => member.endpoint);
  const sourceClient = new EtcdClient({ endpoints: sourceEndpoints, timeoutMs: WRITE_TIMEOUT_MS });
  try {
    // The ports are found free by binding port 0 (launchers.ts); the source's are bound by now.
    target = await stratakvLauncher().start();
    await Promise.all([source.leader(), target.leader()]);
    const targetEndpoints = target.members.map((member) => member.endpoint);
    targetClient = new EtcdClient({ endpoints: targetEndpoints, timeoutMs: WRITE_TIMEOUT_MS, mirrorReader: true });
    const from = sourceEndpoints.join(',');
    const to = targetEndpoints.join(',');

    const preloadStarted = performance.now();
    await preload(sourceClient, config.keys, config.valueBytes);
    say(`preloaded ${config.keys} keys × ${config.valueBytes} B in ${((performance.now() - preloadStarted) / 1000).toFixed(1)} s`);

    // The load with no copier, the tail's reference: the source's endpoints only (the target is
    // not a mirror yet, and would take a write that failed over to it).
    const loadJob = { clients: config.clients, valueBytes: config.putBytes, autoSyncIntervalMs: 0, timeoutMs: WRITE_TIMEOUT_MS, opsMax: LOAD_OPS_MAX, failOverOnMirror: true, mix: 'mixed' as const };
    const alone = await startLoad({ ...loadJob, endpoints: sourceEndpoints, keyPrefix: 'alone', durationMsMax: (config.loadAloneSeconds + 60) * 1000 });
    await sleep(config.loadAloneSeconds * 1000);
    const aloneReport = await alone.stop();
    const aloneAcknowledged = aloneReport.outcomes.filter((outcome) => outcome === OUTCOME_OK).length;
    const aloneWritesPerSecond = aloneAcknowledged / ((Math.max(...aloneReport.endsMs) - Math.min(...aloneReport.startsMs)) / 1000);
    say(`the load alone (no copier): ${aloneWritesPerSecond.toFixed(0)} writes/s acknowledged`);

    const before = await plainRead(sourceClient, 'data/', false);
    say(`plain paginated read: ${(before.bytes / MB / before.seconds).toFixed(2)} MB/s (${(before.bytes / MB).toFixed(1)} MB, ${before.keys} keys in ${before.seconds.toFixed(2)} s)`);

    // ---- the initial copy ----
    const forward = startCopier(`stratakv://${from}`, to);
    copiers.push({ label: 'forward', copier: forward });
    const scanDone = await forward.waitFor(/scan done at revision/, config.scanTimeoutMs);
    const copySeconds = (scanDone - forward.startedAt) / 1000;
    const copyMBps = before.bytes / MB / copySeconds;
    say(`copy scan: ${copyMBps.toFixed(2)} MB/s, ${(config.keys / copySeconds).toFixed(0)} keys/s (${copySeconds.toFixed(1)} s, process start included)`);

    const after = await plainRead(sourceClient, 'data/', false);
    say(`plain paginated read after: ${(after.bytes / MB / after.seconds).toFixed(2)} MB/s`);

    // ---- the tail: writers with both clusters' endpoints (the source's first), and probes ----
    load = await startLoad({ ...loadJob, endpoints: [...sourceEndpoints, ...targetEndpoints], keyPrefix: 'load', durationMsMax: (config.tailSeconds + 600) * 1000 });
    const tailFromMs = epochMs();
    const probes = startProbes({
      source: sourceClient,
      mirror: targetClient,
      intervalMs: config.probeIntervalMs,
      pollIntervalMs: config.pollIntervalMs,
      probesMax: (config.tailSeconds * 1000) / config.probeIntervalMs + 10,
      drainTimeoutMs: config.catchUpTimeoutMs,
    });
    await sleep(config.tailSeconds * 1000);
    const tailToMs = epochMs();
    const probed = await probes.stop();
    const { p50Ms: lagP50Ms, p99Ms: lagP99Ms, maxMs: lagMaxMs } = lagFigures(probed);
    if (probed.pollErrors > 0) notes.push(`${probed.pollErrors} mirror polls of the probes failed`);
    say(`tail: lag p50 ${lagP50Ms.toFixed(0)} ms, p99 ${lagP99Ms.toFixed(0)} ms, max ${lagMaxMs.toFixed(0)} ms over ${probed.lagsMs.length} probes`);

    // ---- verify and switch while the load runs ----
    const tailVerifyAnswer = await copyCli(['verify', '--to', to], config.catchUpTimeoutMs);
    const tailVerify = verifyFigures(tailVerifyAnswer, 'verify under the load', notes);
    say(`verify under the load: ${tailVerify.equal ? 'equal' : 'NOT EQUAL'}, ${tailVerify.keyCount} keys in ${tailVerify.seconds.toFixed(1)} s (${tailVerify.waitedSeconds.toFixed(1)} s waiting for the checkpoint)`);

    const switchAnswer = await move('switch', to, config.catchUpTimeoutMs);
    say(`switch: writePauseMs ${Number(switchAnswer.json['writePauseMs']).toFixed(0)}, ${switchAnswer.seconds.toFixed(1)} s in all`);
    await stepAside(forward, 'forward', notes);
    const reverse = startCopier(`stratakv://${to}`, from);
    copiers.push({ label: 'reverse', copier: reverse });
    await reverse.waitFor(/(began|resumed) copy/, COPIER_START_TIMEOUT_MS);
    const newPrimaryFromMs = epochMs();
    await sleep(NEW_PRIMARY_SECONDS * 1000);
    const reverseAnswer = await move('reverse', from, config.catchUpTimeoutMs);
    say(`reverse: writePauseMs ${Number(reverseAnswer.json['writePauseMs']).toFixed(0)}, ${reverseAnswer.seconds.toFixed(1)} s in all`);
    await stepAside(reverse, 'reverse', notes);
    const again = startCopier(`stratakv://${from}`, to);
    copiers.push({ label: 'forward, after the reverse', copier: again });
    await again.waitFor(/(began|resumed) copy/, COPIER_START_TIMEOUT_MS);

    // ---- the end: stop the load, catch up, verify ----
    const loadStopMs = performance.now();
    const report = await load.stop();
    load = undefined;
    const head = await sourceClient.get('probe/heartbeat', { countOnly: true });
    const caughtUp = await waitForMirror(targetClient, head.header.revision, config.pollIntervalMs, config.catchUpTimeoutMs);
    const catchUpAfterLoadMs = caughtUp - loadStopMs;
    const finalVerify = verifyFigures(await copyCli(['verify', '--to', to], config.catchUpTimeoutMs), 'the last verify', notes);
    say(`caught up ${catchUpAfterLoadMs.toFixed(0)} ms after the load stopped; last verify: ${finalVerify.equal ? 'equal' : 'NOT EQUAL'}, ${finalVerify.keyCount} keys in ${finalVerify.seconds.toFixed(1)} s`);
    await again.stop();

    const switched = moveFigures(switchAnswer, report);
    const reversed = moveFigures(reverseAnswer, report);
    const tail = windowFigures(report, tailFromMs, tailToMs);
    const newPrimary = windowFigures(report, newPrimaryFromMs, reverseAnswer.startedMs);
    const failedPuts = report.outcomes.length - report.outcomes.filter((outcome) => outcome === OUTCOME_OK).length;
    if (failedPuts > 0) notes.push(`the load's failures: ${JSON.stringify(report.errors).slice(0, 1_000)}`);
    say(
      `source ${tail.acknowledgedPerSecond.toFixed(0)} writes/s in the tail; switch: writers' longest gap ${switched.clientPauseMs.toFixed(0)} ms (from ${switched.gapAtSeconds.toFixed(1)} s into the verb), ${switched.notAcknowledged} not acknowledged; ` +
        `new primary ${newPrimary.acknowledgedPerSecond.toFixed(0)} writes/s; reverse: writers' longest gap ${reversed.clientPauseMs.toFixed(0)} ms (from ${reversed.gapAtSeconds.toFixed(1)} s), ${reversed.notAcknowledged} not acknowledged; ${failedPuts} writes failed in all`,
    );
    for (const { label, copier } of copiers) {
      const lines = copierLines(copier, /retrying|failed|error/i, NOTE_LINES_MAX);
      if (lines.length > 0) notes.push(`the ${label} copier said: ${lines.join(' | ')}`);
    }
    return {
      readBeforeMBps: before.bytes / MB / before.seconds,
      readAfterMBps: after.bytes / MB / after.seconds,
      copyMBps,
      copyKeysPerSecond: config.keys / copySeconds,
      copySeconds,
      sourceWritesPerSecond: tail.acknowledgedPerSecond,
      aloneWritesPerSecond,
      lagP50Ms,
      lagP99Ms,
      lagMaxMs,
      probes: probed.lagsMs.length,
      probesUnseen: probed.unseen,
      tailVerify,
      switched,
      newPrimaryWritesPerSecond: newPrimary.acknowledgedPerSecond,
      reversed,
      catchUpAfterLoadMs,
      finalVerify,
      failedPuts,
      notes,
    };
  } finally {
    if (load !== undefined) await load.stop().catch(() => undefined);
    for (const { copier } of copiers) await copier.stop();
    sourceClient.close();
    targetClient?.close();
    await target?.stop();
    await source.stop();
  }
}

/** stratakvMarkdown is the results table of `runs` (median [min–max]) and a line per run. */
export function stratakvMarkdown(runs: readonly StratakvRunFigures[], config: CopyRunConfig): string[] {
  const range = (pick: (run: StratakvRunFigures) => number, digits = 1): string => {
    const values = runs.map(pick);
    return `${median(values).toFixed(digits)} [${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}]`;
  };
  const verifyText = (verify: VerifyFigures): string => (verify.equal ? `equal (${verify.keyCount} keys, ${verify.seconds.toFixed(1)} s)` : 'NOT EQUAL');
  const lines = [
    '| figure | value |',
    '|---|---|',
    `| initial copy, MB/s (keys + values; copier process start to "scan done") | ${range((run) => run.copyMBps, 2)} |`,
    `| plain paginated read of the source, MB/s (linearizable pages of the current state; before / after the copy) | ${range((run) => run.readBeforeMBps, 2)} / ${range((run) => run.readAfterMBps, 2)} |`,
    `| copy ÷ plain read (the mean of before and after, per run) | ${range((run) => run.copyMBps / ((run.readBeforeMBps + run.readAfterMBps) / 2), 2)} |`,
    `| initial copy, keys/s | ${range((run) => run.copyKeysPerSecond, 0)} |`,
    `| source writes under the load while the copier follows, acknowledged writes/s (${config.clients} clients, ${config.tailSeconds} s) | ${range((run) => run.sourceWritesPerSecond, 0)} |`,
    `| the same load with no copier (${config.loadAloneSeconds} s before the copy), writes/s; ratio with ÷ without | ${range((run) => run.aloneWritesPerSecond, 0)}; ${range((run) => run.sourceWritesPerSecond / run.aloneWritesPerSecond, 2)} |`,
    `| tail lag p50 / p99 / max, ms (probes every ${config.probeIntervalMs} ms, polled every ${config.pollIntervalMs} ms) | ${range((run) => run.lagP50Ms, 0)} / ${range((run) => run.lagP99Ms, 0)} / ${range((run) => run.lagMaxMs, 0)} |`,
    `| copy verify under the load (Merkle, at a source checkpoint) | ${runs.map((run) => verifyText(run.tailVerify)).join('; ')} |`,
    `| copy switch under the load: writePauseMs (fence → writable) / longest gap between acknowledged writes, ms | ${range((run) => run.switched.writePauseMs, 0)} / ${range((run) => run.switched.clientPauseMs, 0)} |`,
    `| copy switch: the verb's whole time, s; writes failed or timed out during it | ${range((run) => run.switched.verbSeconds, 1)}; ${runs.map((run) => run.switched.notAcknowledged).join(', ')} |`,
    `| writes on the new primary, reverse copier following, writes/s (${NEW_PRIMARY_SECONDS} s) | ${range((run) => run.newPrimaryWritesPerSecond, 0)} |`,
    `| copy reverse under the load: writePauseMs / longest gap between acknowledged writes, ms | ${range((run) => run.reversed.writePauseMs, 0)} / ${range((run) => run.reversed.clientPauseMs, 0)} |`,
    `| copy reverse: the verb's whole time, s; writes failed or timed out during it | ${range((run) => run.reversed.verbSeconds, 1)}; ${runs.map((run) => run.reversed.notAcknowledged).join(', ')} |`,
    `| forward copier caught up after the load stopped, ms | ${range((run) => run.catchUpAfterLoadMs, 0)} |`,
    `| last copy verify | ${runs.map((run) => verifyText(run.finalVerify)).join('; ')} |`,
    `| failed or ambiguous writes of the load (tail to end) | ${runs.map((run) => run.failedPuts).join(', ')} |`,
    '',
  ];
  for (const [index, run] of runs.entries()) {
    const moved = (what: string, figures: MoveFigures): string =>
      `${what} paused writes ${figures.writePauseMs.toFixed(0)} ms (writers' longest gap ${figures.clientPauseMs.toFixed(0)} ms, from ${figures.gapAtSeconds.toFixed(1)} s into the ${figures.verbSeconds.toFixed(1)} s verb)${figures.verifiedEqual ? ', verified equal at the fence' : ', NOT verified equal'}`;
    lines.push(`- run ${index + 1}: copy ${run.copySeconds.toFixed(1)} s; ${run.probes} probes seen${run.probesUnseen > 0 ? `, ${run.probesUnseen} never seen` : ''}; ${moved('switch', run.switched)}; ${moved('reverse', run.reversed)}`);
    for (const note of run.notes) lines.push(`  - ${note}`);
  }
  return lines;
}

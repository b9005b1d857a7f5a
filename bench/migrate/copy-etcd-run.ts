// One run of bench:migrate-copy with an etcd source (`--source etcd`, the default): a fresh
// 3-member etcd 3.4 (Debian's) and a fresh 3-member stratakv cluster, etcd preloaded, then, in
// order —
//   1. the load alone on etcd (no copier), the write rate's reference;
//   2. a plain paginated read of etcd (Range pages at one revision, what the copier's scan
//      reads), the copy (`copy create --from etcd://…` to its "scan done"), the read again;
//   3. the tail: --clients writers on etcd (load.ts: EtcdClients with failOverOnMirror, so that
//      a mirror's refusal is retried until a switch ends) and the lag probes (a put on etcd,
//      polled on the mirror);
//   4. `copy switch --from etcd://…` while the load runs: it verifies every key, then asks for
//      the writers to be moved; the bench moves them (a LoadMove: EtcdClient.setEndpoints to
//      the mirror's endpoints) and answers "moved"; the verb waits for etcd to be quiet,
//      catches up, verifies what changed and makes the mirror writable. Figures: its
//      writePauseMs ("moved" → writable) and steps, deltaKeys, the pause the writers saw (the
//      longest gap between two successive acknowledged writes of any writer around it) and
//      their writes that failed or timed out. The forward copier exits by itself;
//   5. the reverse copy (`copy create --from stratakv://… --to etcd://…`): once it has loaded
//      etcd, the time it takes to catch up with the writes made since the switch, then its lag
//      for REVERSE_SECONDS, by probes the other way (a put on the new primary, polled on etcd;
//      the two clusters hold equal revisions), the new primary's write rate meanwhile, and
//      `copy status --to etcd://…` at the end;
//   6. `copy reverse --to etcd://…` while the load runs (the same figures; the writers are
//      moved back to etcd once it exits, so their pause runs to then). The reverse copier
//      exits by itself at the fence;
//   7. the forward copier again (it resumes from the revision both hold), the load stopped, the
//      catch-up, `copy create --until-caught-up` (its state's rescans: 0 when nothing was
//      scanned again), `copy verify`, and etcd's and the mirror's revisions compared.
// Every wait is bounded; the caller's cleanup ends every process if a step throws.
import { EtcdClient } from '../../src/client/index.ts';
import { etcdLauncher, stratakvLauncher, type RunningCluster } from '../cluster/launchers.ts';
import { sleep } from '../cluster/processes.ts';
import { median } from '../cluster/stats.ts';
import { copierGone, moveFigures, stepAside, waitForMirror, type MoveFigures } from './copy-moves.ts';
import { copierLines, copyCli, copyCliPrompted, epochMs, lagFigures, plainRead, preload, startCopier, startProbes, type Copier, type CopyCliAnswer, type CopyRunConfig, type CopyRunFigures, type LagFigures } from './copy-tools.ts';
import { startLoad, windowFigures, type RunningLoad } from './load.ts';
import { OUTCOME_OK, type LoadReport } from './load-types.ts';

/** REVERSE_SECONDS: how long the reverse copy's lag is probed while the writers write the new primary. */
export const REVERSE_SECONDS = 15;
/** REVERSE_WRITES_PER_SECOND is the write rate the writers are paced to once the writes moved to the new primary. */
export const REVERSE_WRITES_PER_SECOND = 200;
/** WRITE_TIMEOUT_MS: each put's deadline, retries and mirror refusals included. */
const WRITE_TIMEOUT_MS = 15_000;
const COPIER_START_TIMEOUT_MS = 60_000;
const REPLICA_LOAD_TIMEOUT_MS = 300_000;
const LOAD_OPS_MAX = 50_000_000;
const NOTE_LINES_MAX = 3;
const COPIER_OUTPUT_SHOWN_CHARS = 3_000;
const MB = 1_000_000;
/** MOVE_PROMPT is what `copy switch` of an etcd source prints when the writers are to move. */
const MOVE_PROMPT = /move the writers/;

/** Step is one entry of an etcd switch's or reverse's `steps`: when it ended, in ms from the verb's start. */
export interface Step {
  readonly step: string;
  readonly atMs: number;
}

/** EtcdMoveFigures are one `copy switch` or `copy reverse` of an etcd copy under the load. */
export interface EtcdMoveFigures extends MoveFigures {
  readonly deltaKeys: number;
  readonly steps: readonly Step[];
}

/** EtcdRunFigures are one etcd run's results. */
export interface EtcdRunFigures extends CopyRunFigures {
  readonly switched: EtcdMoveFigures;
  /** reverseBacklogMs: from the reverse copy's "loaded" until etcd held what the new primary held then. */
  readonly reverseBacklogMs: number;
  readonly reverseLag: LagFigures;
  readonly reverseProbes: number;
  readonly reverseProbesUnseen: number;
  readonly newPrimaryWritesPerSecond: number;
  /** reverseStatus: `copy status --to etcd://…` after the probes: lagRevisions, exactRevisions. */
  readonly reverseStatus: { readonly lagRevisions: number; readonly exactRevisions: boolean };
  readonly reversed: EtcdMoveFigures;
  /** rescans: the forward copy's state.rescans once resumed after the reverse. */
  readonly rescans: number;
  readonly catchUpAfterLoadMs: number;
  readonly verifyEqual: boolean;
  readonly verifySeconds: number;
  readonly keysCompared: number;
  /** etcdRevision and mirrorRevision: the two clusters' revisions at the end (equal when every command became one etcd revision). */
  readonly etcdRevision: number;
  readonly mirrorRevision: number;
  readonly failedPuts: number;
  readonly notes: readonly string[];
}

/** etcdMoveFigures reads an etcd switch's or reverse's answer (see moveFigures). */
function etcdMoveFigures(answer: CopyCliAnswer, report: LoadReport, untilMs?: number): EtcdMoveFigures {
  const steps = Array.isArray(answer.json['steps']) ? (answer.json['steps'] as Step[]) : [];
  return { ...moveFigures(answer, report, untilMs), deltaKeys: Number(answer.json['deltaKeys'] ?? Number.NaN), steps };
}

/** checkAnswer throws unless the verb exited 0 with `result`. */
function checkAnswer(what: string, answer: CopyCliAnswer, result: string): void {
  if (answer.status !== 0 || answer.json['result'] !== result) throw new Error(`${what} failed (status ${String(answer.status)}): ${JSON.stringify(answer.json).slice(0, 2_000)} ${answer.stderr.slice(-2_000)}`);
}

/** stepAtMs answers when the step `name` ended, in ms from the verb's start; NaN if it is not listed. */
export function stepAtMs(steps: readonly Step[], name: string): number {
  return steps.find((step) => step.step === name)?.atMs ?? Number.NaN;
}

/**
 * stepTimes answers each step's time in ms from the step `origin` (the operator's confirmation
 * of a switch, the fence of a reverse): the first of that name listed after it (a step such as
 * delta-verified also comes in rounds before it). NaN for a step, or an origin, not listed.
 */
export function stepTimes(steps: readonly Step[], origin: string, names: readonly string[]): number[] {
  const at = steps.findIndex((step) => step.step === origin);
  if (at < 0) return names.map(() => Number.NaN);
  const after = steps.slice(at);
  const from = after[0]?.atMs ?? Number.NaN;
  return names.map((name) => stepAtMs(after, name) - from);
}

/** describeLoad sums up a load's report: its writes, the longest gap between acknowledgements, its errors. */
function describeLoad(report: LoadReport): string {
  if (report.outcomes.length === 0) return 'no writes';
  // A loop, not Math.min(...): a long load has more rows than a call takes arguments.
  const whole = windowFigures(report, report.startsMs.reduce((least, ms) => Math.min(least, ms)), report.endsMs.reduce((most, ms) => Math.max(most, ms)));
  const acknowledged = report.outcomes.filter((outcome) => outcome === OUTCOME_OK).length;
  return (
    `${acknowledged} writes acknowledged, ${report.outcomes.length - acknowledged} failed or ambiguous (${report.ambiguousByClient.reduce((sum, count) => sum + count, 0)} ambiguous); ` +
    `the longest gap between acknowledgements ${whole.longestGapMs.toFixed(0)} ms, from ${new Date(whole.longestGapFromMs).toISOString()}; errors ${JSON.stringify(report.errors).slice(0, 1_000)}`
  );
}

/** etcdRun runs one `--source etcd` run on fresh clusters. */
export async function etcdRun(run: number, config: CopyRunConfig): Promise<EtcdRunFigures> {
  const notes: string[] = [];
  const copiers: { label: string; copier: Copier }[] = [];
  const say = (text: string): void => console.log(`run ${run} (etcd): ${text}`);
  let load: RunningLoad | undefined;
  let target: RunningCluster | undefined;
  let targetClient: EtcdClient | undefined;
  let primaryClient: EtcdClient | undefined;
  const source = await etcdLauncher().start();
  const sourceEndpoints = source.members.map((member) => member.endpoint);
  const sourceClient = new EtcdClient({ endpoints: sourceEndpoints, timeoutMs: WRITE_TIMEOUT_MS });
  try {
    target = await stratakvLauncher().start();
    await Promise.all([source.leader(), target.leader()]);
    const targetEndpoints = target.members.map((member) => member.endpoint);
    // The mirror read as a mirror (the probes, the catch-up, the last revision), and written as
    // the new primary (the reverse copy's probes).
    targetClient = new EtcdClient({ endpoints: targetEndpoints, timeoutMs: WRITE_TIMEOUT_MS, mirrorReader: true });
    primaryClient = new EtcdClient({ endpoints: targetEndpoints, timeoutMs: WRITE_TIMEOUT_MS });
    const from = `etcd://${sourceEndpoints.join(',')}`;
    const to = targetEndpoints.join(',');

    const preloadStarted = performance.now();
    await preload(sourceClient, config.keys, config.valueBytes);
    say(`preloaded ${config.keys} keys × ${config.valueBytes} B in ${((performance.now() - preloadStarted) / 1000).toFixed(1)} s`);

    // The source's write rate under the same load with no copier: the tail's reference.
    const loadJob = { clients: config.clients, valueBytes: config.putBytes, autoSyncIntervalMs: 0, timeoutMs: WRITE_TIMEOUT_MS, opsMax: LOAD_OPS_MAX, failOverOnMirror: true, mix: 'mixed' as const };
    const alone = await startLoad({ ...loadJob, endpoints: sourceEndpoints, keyPrefix: 'alone', durationMsMax: (config.loadAloneSeconds + 60) * 1000 });
    await sleep(config.loadAloneSeconds * 1000);
    const aloneReport = await alone.stop();
    const aloneAcknowledged = aloneReport.outcomes.filter((outcome) => outcome === OUTCOME_OK).length;
    const aloneWritesPerSecond = aloneAcknowledged / ((Math.max(...aloneReport.endsMs) - Math.min(...aloneReport.startsMs)) / 1000);
    say(`the load alone (no copier): ${aloneWritesPerSecond.toFixed(0)} writes/s acknowledged`);

    const before = await plainRead(sourceClient, 'data/', true);
    say(`plain paginated read: ${(before.bytes / MB / before.seconds).toFixed(2)} MB/s (${(before.bytes / MB).toFixed(1)} MB in ${before.seconds.toFixed(2)} s)`);

    // ---- the initial copy, as an operator runs it ----
    const forward = startCopier(from, to);
    copiers.push({ label: 'forward', copier: forward });
    const scanDoneAt = await forward.waitFor(/scan done at revision/, config.scanTimeoutMs);
    const copySeconds = (scanDoneAt - forward.startedAt) / 1000;
    const copyMBps = before.bytes / MB / copySeconds;
    say(`copy scan: ${copyMBps.toFixed(2)} MB/s, ${(config.keys / copySeconds).toFixed(0)} keys/s (${copySeconds.toFixed(1)} s, process start included)`);

    const after = await plainRead(sourceClient, 'data/', true);
    say(`plain paginated read after: ${(after.bytes / MB / after.seconds).toFixed(2)} MB/s`);

    // ---- the tail under the load, with probes ----
    load = await startLoad({ ...loadJob, endpoints: sourceEndpoints, keyPrefix: 'load', durationMsMax: (config.tailSeconds + 600) * 1000 });
    const running = load;
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
    // The probes write etcd: they end before the switch, which waits for etcd to be quiet.
    const probed = await probes.stop();
    const tailLag = lagFigures(probed);
    if (probed.pollErrors > 0) notes.push(`${probed.pollErrors} mirror polls of the probes failed`);
    say(`tail: lag p50 ${tailLag.p50Ms.toFixed(0)} ms, p99 ${tailLag.p99Ms.toFixed(0)} ms, max ${tailLag.maxMs.toFixed(0)} ms over ${probed.lagsMs.length} probes`);

    // ---- the switch while the load runs: the bench is the operator ----
    let movedMs = Number.NaN;
    const switchAnswer = await copyCliPrompted(
      ['switch', '--from', from, '--to', to],
      MOVE_PROMPT,
      async () => {
        movedMs = await running.move(targetEndpoints);
        return 'moved';
      },
      config.catchUpTimeoutMs,
    );
    checkAnswer(`copy switch --from ${from} --to ${to}`, switchAnswer, 'switched');
    say(
      `switch: writePauseMs ${Number(switchAnswer.json['writePauseMs']).toFixed(0)} ("moved" → writable), deltaKeys ${String(switchAnswer.json['deltaKeys'])}, ${switchAnswer.seconds.toFixed(1)} s in all; ` +
        `asked ${((switchAnswer.promptedMs - switchAnswer.startedMs) / 1000).toFixed(1)} s in, writers moved in ${(movedMs - switchAnswer.promptedMs).toFixed(0)} ms; steps ${JSON.stringify(switchAnswer.json['steps'])}; passes ${JSON.stringify(switchAnswer.json['passes'])}`,
    );
    // The reverse copy writes etcd one Txn per command, in order (a compare-and-set chain that
    // etcd, running concurrent requests in any order, mostly refuses when pipelined): a few
    // hundred commands/s here, under what 16 unpaced writers put into the new primary. From
    // here the writers are paced to REVERSE_WRITES_PER_SECOND so that the reverse copy can
    // follow them and `copy reverse` finishes; the figures say so.
    running.pace(Math.round((config.clients * 1000) / REVERSE_WRITES_PER_SECOND));
    say(`the writers paced to ~${REVERSE_WRITES_PER_SECOND} writes/s for the reverse copy`);
    await stepAside(forward, 'forward', notes);

    // ---- the reverse copy while the writers write the new primary ----
    const reverse = startCopier(`stratakv://${to}`, from);
    copiers.push({ label: 'reverse', copier: reverse });
    // The replica loads every key of etcd first (about 200k keys by then: 40–70 s under the load here).
    const loadedAt = await reverse.waitFor(/reverse copy: loaded/, REPLICA_LOAD_TIMEOUT_MS);
    const primaryHead = await primaryClient.get('probe/heartbeat', { countOnly: true });
    const backlogCaughtUp = await waitForMirror(sourceClient, primaryHead.header.revision, config.pollIntervalMs, config.catchUpTimeoutMs, () => copierGone(reverse, 'reverse'));
    const reverseBacklogMs = backlogCaughtUp - loadedAt;
    say(`reverse copy: loaded ${((loadedAt - reverse.startedAt) / 1000).toFixed(1)} s after its start; etcd caught up with the new primary's revision ${primaryHead.header.revision} ${reverseBacklogMs.toFixed(0)} ms later`);
    const newPrimaryFromMs = epochMs();
    const reverseProbes = startProbes({
      source: primaryClient,
      mirror: sourceClient,
      intervalMs: config.probeIntervalMs,
      pollIntervalMs: config.pollIntervalMs,
      probesMax: (REVERSE_SECONDS * 1000) / config.probeIntervalMs + 10,
      drainTimeoutMs: config.catchUpTimeoutMs,
      hopeless: () => copierGone(reverse, 'reverse'),
    });
    await sleep(REVERSE_SECONDS * 1000);
    const newPrimaryToMs = epochMs();
    const probesStoppedAt = performance.now();
    const reverseProbed = await reverseProbes.stop();
    const probesDrainedMs = performance.now() - probesStoppedAt;
    const reverseLag = lagFigures(reverseProbed);
    if (reverseProbed.pollErrors > 0) notes.push(`${reverseProbed.pollErrors} etcd polls of the reverse probes failed`);
    const status = await copyCli(['status', '--to', from], config.catchUpTimeoutMs);
    const reverseStatus = { lagRevisions: Number(status.json['lagRevisions'] ?? Number.NaN), exactRevisions: status.json['exactRevisions'] === true };
    if (status.status !== 0 || !reverseStatus.exactRevisions) notes.push(`copy status --to etcd: ${JSON.stringify(status.json).slice(0, 1_000)}`);
    say(
      `reverse copy: lag p50 ${reverseLag.p50Ms.toFixed(0)} ms, p99 ${reverseLag.p99Ms.toFixed(0)} ms, max ${reverseLag.maxMs.toFixed(0)} ms over ${reverseProbed.lagsMs.length} probes (${reverseProbed.unseen} never seen, ${reverseProbed.pollErrors} polls failed, drained in ${probesDrainedMs.toFixed(0)} ms); ` +
        `status: lagRevisions ${reverseStatus.lagRevisions}, exactRevisions ${String(reverseStatus.exactRevisions)}`,
    );

    // ---- back to etcd while the load runs ----
    const reverseAnswer = await copyCli(['reverse', '--from', `stratakv://${to}`, '--to', from], config.catchUpTimeoutMs);
    checkAnswer(`copy reverse --from stratakv://${to} --to ${from}`, reverseAnswer, 'reversed');
    const movedBackMs = await running.move(sourceEndpoints);
    say(`reverse: writePauseMs ${Number(reverseAnswer.json['writePauseMs']).toFixed(0)} (fence → etcd writable), ${reverseAnswer.seconds.toFixed(1)} s in all, writers moved back ${(movedBackMs - reverseAnswer.endedMs).toFixed(0)} ms after its exit; steps ${JSON.stringify(reverseAnswer.json['steps'])}; passes ${JSON.stringify(reverseAnswer.json['passes'])}`);
    await stepAside(reverse, 'reverse', notes, /source-fenced/);

    // ---- the forward copy resumes; the end: stop the load, catch up, verify ----
    const again = startCopier(from, to);
    copiers.push({ label: 'forward, after the reverse', copier: again });
    await again.waitFor(/(began|resumed) copy/, COPIER_START_TIMEOUT_MS);
    const loadStopMs = performance.now();
    const report = await load.stop();
    load = undefined;
    const head = await sourceClient.get('probe/heartbeat', { countOnly: true });
    const caughtUp = await waitForMirror(targetClient, head.header.revision, config.pollIntervalMs, config.catchUpTimeoutMs, () => copierGone(again, 'forward'));
    const catchUpAfterLoadMs = caughtUp - loadStopMs;
    await again.stop();
    const resumed = await copyCli(['create', '--from', from, '--to', to, '--until-caught-up'], config.catchUpTimeoutMs);
    const resumedState = resumed.json['state'] as { rescans?: unknown } | undefined;
    const rescans = Number(resumedState?.rescans ?? Number.NaN);
    if (resumed.status !== 0 || resumed.json['result'] !== 'caught-up') notes.push(`copy create --until-caught-up after the reverse: ${JSON.stringify(resumed.json).slice(0, 1_000)}`);
    const verified = await copyCli(['verify', '--to', to], config.catchUpTimeoutMs);
    const verifyEqual = verified.json['equal'] === true;
    if (!verifyEqual) notes.push(`verify: ${JSON.stringify(verified.json).slice(0, 1_000)}`);
    const etcdHead = await sourceClient.get('probe/heartbeat');
    const mirrorHead = await targetClient.get('probe/heartbeat');
    const etcdRevision = etcdHead.header.revision;
    const mirrorRevision = mirrorHead.header.revision;
    if (etcdRevision !== mirrorRevision) notes.push(`the revisions differ at the end: etcd ${etcdRevision}, the mirror ${mirrorRevision}`);
    say(
      `caught up ${catchUpAfterLoadMs.toFixed(0)} ms after the load stopped; resumed with ${rescans} rescans; verify: ${verifyEqual ? 'equal' : 'NOT EQUAL'}, ${String(verified.json['keysCompared'])} keys in ${verified.seconds.toFixed(1)} s; ` +
        `revisions: etcd ${etcdRevision}, mirror ${mirrorRevision}`,
    );

    const switched = etcdMoveFigures(switchAnswer, report);
    const reversed = etcdMoveFigures(reverseAnswer, report, movedBackMs);
    const tail = windowFigures(report, tailFromMs, tailToMs);
    const newPrimary = windowFigures(report, newPrimaryFromMs, newPrimaryToMs);
    const failedPuts = report.outcomes.length - report.outcomes.filter((outcome) => outcome === OUTCOME_OK).length;
    if (failedPuts > 0) notes.push(`the load's failures: ${JSON.stringify(report.errors).slice(0, 1_000)}`);
    const bare = (endpoints: readonly string[]): string => endpoints.map((endpoint) => endpoint.replace(/^https?:\/\//, '')).join(',');
    const notOnEtcd = report.endpointsAtEnd.filter((endpoints) => bare(endpoints) !== bare(sourceEndpoints)).length;
    if (notOnEtcd > 0) notes.push(`${notOnEtcd} clients ended on other endpoints than etcd's (${bare(sourceEndpoints)}): ${JSON.stringify(report.endpointsAtEnd[0])}`);
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
      lagP50Ms: tailLag.p50Ms,
      lagP99Ms: tailLag.p99Ms,
      lagMaxMs: tailLag.maxMs,
      probes: probed.lagsMs.length,
      probesUnseen: probed.unseen,
      switched,
      reverseBacklogMs,
      reverseLag,
      reverseProbes: reverseProbed.lagsMs.length,
      reverseProbesUnseen: reverseProbed.unseen,
      newPrimaryWritesPerSecond: newPrimary.acknowledgedPerSecond,
      reverseStatus,
      reversed,
      rescans,
      catchUpAfterLoadMs,
      verifyEqual,
      verifySeconds: verified.seconds,
      keysCompared: Number(verified.json['keysCompared'] ?? 0),
      etcdRevision,
      mirrorRevision,
      failedPuts,
      notes,
    };
  } catch (error) {
    // What the copiers said, and what the writers saw, tell why a step failed.
    for (const { label, copier } of copiers) console.error(`run ${run} (etcd): the ${label} copier's last output (exit code ${String(copier.child.exitCode)}):\n${copier.output().slice(-COPIER_OUTPUT_SHOWN_CHARS)}`);
    if (load !== undefined) {
      const report = await load.stop().catch(() => undefined);
      load = undefined;
      if (report !== undefined) console.error(`run ${run} (etcd): the load until the failure: ${describeLoad(report)}`);
    }
    throw error;
  } finally {
    if (load !== undefined) await load.stop().catch(() => undefined);
    for (const { copier } of copiers) await copier.stop();
    sourceClient.close();
    targetClient?.close();
    primaryClient?.close();
    await target?.stop();
    await source.stop();
  }
}

// The steps of the switch after the operator's "moved", and of the reverse after its fence.
const SWITCH_STEPS = ['quiet', 'caught-up', 'delta-verified', 'state-written', 'writable'] as const;
const REVERSE_STEPS = ['caught-up', 'delta-verified', 'state-written', 'writable'] as const;

/** etcdMarkdown is the etcd source's results table (median [min–max]) and a line per run. */
export function etcdMarkdown(runs: readonly EtcdRunFigures[], config: CopyRunConfig): string[] {
  const range = (pick: (run: EtcdRunFigures) => number, digits = 1): string => {
    const values = runs.map(pick);
    return `${median(values).toFixed(digits)} [${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}]`;
  };
  const stepsRange = (pick: (run: EtcdRunFigures) => readonly Step[], origin: string, names: readonly string[]): string =>
    names.map((name, index) => `${name} ${range((run) => stepTimes(pick(run), origin, names)[index] ?? Number.NaN, 0)}`).join('; ');
  const lines = [
    '| figure | value |',
    '|---|---|',
    `| initial copy, MB/s (keys + values; copier process start to "scan done") | ${range((run) => run.copyMBps, 2)} |`,
    `| plain paginated read of the source, MB/s (before / after the copy) | ${range((run) => run.readBeforeMBps, 2)} / ${range((run) => run.readAfterMBps, 2)} |`,
    `| copy ÷ plain read (the mean of before and after, per run) | ${range((run) => run.copyMBps / ((run.readBeforeMBps + run.readAfterMBps) / 2), 2)} |`,
    `| initial copy, keys/s | ${range((run) => run.copyKeysPerSecond, 0)} |`,
    `| source writes under the load while the copier follows, acknowledged writes/s (${config.clients} clients, ${config.tailSeconds} s) | ${range((run) => run.sourceWritesPerSecond, 0)} |`,
    `| the same load with no copier (${config.loadAloneSeconds} s before the copy), writes/s; ratio with ÷ without | ${range((run) => run.aloneWritesPerSecond, 0)}; ${range((run) => run.sourceWritesPerSecond / run.aloneWritesPerSecond, 2)} |`,
    `| tail lag p50 / p99 / max, ms (probes every ${config.probeIntervalMs} ms, polled every ${config.pollIntervalMs} ms) | ${range((run) => run.lagP50Ms, 0)} / ${range((run) => run.lagP99Ms, 0)} / ${range((run) => run.lagMaxMs, 0)} |`,
    `| copy switch under the load: writePauseMs ("moved" → writable) / writers' longest gap between acknowledged writes, ms | ${range((run) => run.switched.writePauseMs, 0)} / ${range((run) => run.switched.clientPauseMs, 0)} |`,
    `| copy switch: steps, ms after "moved" | ${stepsRange((run) => run.switched.steps, 'confirmed', SWITCH_STEPS)} |`,
    `| copy switch, before the writers move: the first verify (every key) done / the question asked, s from the verb's start; keys verified again after the quiet window (deltaKeys) | ${range((run) => stepAtMs(run.switched.steps, 'verified') / 1000, 1)} / ${range((run) => stepAtMs(run.switched.steps, 'confirm-wanted') / 1000, 1)}; ${range((run) => run.switched.deltaKeys, 0)} |`,
    `| copy switch: the verb's whole time, s; writes failed or timed out during it | ${range((run) => run.switched.verbSeconds, 1)}; ${runs.map((run) => run.switched.notAcknowledged).join(', ')} |`,
    `| reverse copy: from its "loaded" to etcd holding the new primary's revision then, ms | ${range((run) => run.reverseBacklogMs, 0)} |`,
    `| reverse copy lag p50 / p99 / max, ms (a put on the new primary every ${config.probeIntervalMs} ms, etcd polled every ${config.pollIntervalMs} ms, ${REVERSE_SECONDS} s) | ${range((run) => run.reverseLag.p50Ms, 0)} / ${range((run) => run.reverseLag.p99Ms, 0)} / ${range((run) => run.reverseLag.maxMs, 0)} |`,
    `| writes on the new primary, reverse copy following, writes/s (${REVERSE_SECONDS} s; the writers paced to ~${REVERSE_WRITES_PER_SECOND} writes/s from the switch on) | ${range((run) => run.newPrimaryWritesPerSecond, 0)} |`,
    `| \`copy status --to etcd://…\` after that: lagRevisions; exactRevisions | ${runs.map((run) => `${run.reverseStatus.lagRevisions}; ${String(run.reverseStatus.exactRevisions)}`).join(', ')} |`,
    `| copy reverse under the load: writePauseMs (fence → etcd writable) / writers' longest gap (until moved back to etcd), ms | ${range((run) => run.reversed.writePauseMs, 0)} / ${range((run) => run.reversed.clientPauseMs, 0)} |`,
    `| copy reverse: the verify before the fence (etcd against a pinned view of the new primary) done / the fence, s from the verb's start | ${range((run) => stepAtMs(run.reversed.steps, 'verified') / 1000, 1)} / ${range((run) => stepAtMs(run.reversed.steps, 'fenced') / 1000, 1)} |`,
    `| copy reverse: steps, ms after the fence | ${stepsRange((run) => run.reversed.steps, 'fenced', REVERSE_STEPS)} |`,
    `| copy reverse: the verb's whole time, s; writes failed or timed out during it (until moved back) | ${range((run) => run.reversed.verbSeconds, 1)}; ${runs.map((run) => run.reversed.notAcknowledged).join(', ')} |`,
    `| forward copy resumed after the reverse: rescans | ${runs.map((run) => run.rescans).join(', ')} |`,
    `| forward copier caught up after the load stopped, ms | ${range((run) => run.catchUpAfterLoadMs, 0)} |`,
    `| copy verify | ${runs.map((run) => (run.verifyEqual ? `equal (${run.keysCompared} keys, ${run.verifySeconds.toFixed(1)} s)` : 'NOT EQUAL')).join('; ')} |`,
    `| etcd's and the mirror's revisions at the end | ${runs.map((run) => (run.etcdRevision === run.mirrorRevision ? `equal (${run.etcdRevision})` : `DIFFER (etcd ${run.etcdRevision}, mirror ${run.mirrorRevision})`)).join('; ')} |`,
    `| failed or ambiguous writes of the load (tail to end) | ${runs.map((run) => run.failedPuts).join(', ')} |`,
    '',
  ];
  for (const [index, run] of runs.entries()) {
    const steps = (figures: EtcdMoveFigures): string => figures.steps.map((step) => `${step.step} ${step.atMs}`).join(', ');
    const moved = (what: string, figures: EtcdMoveFigures): string =>
      `${what} paused writes ${figures.writePauseMs.toFixed(0)} ms (writers' longest gap ${figures.clientPauseMs.toFixed(0)} ms, from ${figures.gapAtSeconds.toFixed(1)} s into the ${figures.verbSeconds.toFixed(1)} s verb; steps, ms from its start: ${steps(figures)})`;
    lines.push(`- run ${index + 1}: copy ${run.copySeconds.toFixed(1)} s; ${run.probes} probes seen${run.probesUnseen > 0 ? `, ${run.probesUnseen} never seen` : ''}; ${run.reverseProbes} reverse probes seen${run.reverseProbesUnseen > 0 ? `, ${run.reverseProbesUnseen} never seen` : ''}; ${moved('switch', run.switched)}; ${moved('reverse', run.reversed)}`);
    for (const note of run.notes) lines.push(`  - ${note}`);
  }
  return lines;
}

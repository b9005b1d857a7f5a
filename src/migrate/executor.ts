// The executor: runs a journaled migration record step by step against a MigrationCluster.
// Before each step it reads nothing but the cluster itself: every step looks at what the
// cluster is now and does only what is missing (add a learner not yet a member, promote only
// while not swapped, transfer only if no new voter leads, ...), so a run killed between
// "did it" and "wrote that it did" repeats the step harmlessly. After each step it writes the
// record with the next step through Raft, compare-and-set on the journal's version: a second
// process running the same migration finds JOURNAL_CONFLICT, reads the journal again and
// goes on from there (or stops, if the record it finds is another migration's).
//
// Nothing here times out a migration as a whole. A step that makes no progress for
// `stallTimeoutMs` (catch-up) or fails its bounded attempts stops the run with a StrataError
// that says what it waited for; the journal keeps the step, so `run` resumes it and
// `rollback` undoes it.

import type { Tracer } from '@opentelemetry/api';
import type { IntegrityCheck, MigrationMemberInfo, ReplicationInfo } from '../client/index.ts';
import { ATTR_MIGRATION_ID, ATTR_MIGRATION_STEP, sampledContext, withSpan } from '../obs/index.ts';
import type { Clock } from '../util/clock.ts';
import { sleep } from '../util/clock.ts';
import { ErrorCode, isStrataError, StrataError } from '../util/errors.ts';
import type { MigrationCluster } from './migration-cluster.ts';
import type { MemberSpec, MigrationRecord, StepName } from './migration-record.ts';
import { decodeRecord, encodeRecord, withStepDone } from './migration-record.ts';

/** CAUGHT_UP_LAG_ENTRIES: a learner this close to the leader's last index (and applied as far) has caught up. */
export const CAUGHT_UP_LAG_ENTRIES = 256;
/** STALL_TIMEOUT_MS_DEFAULT: catch-up gives up after this long without any learner moving. */
export const STALL_TIMEOUT_MS_DEFAULT = 5 * 60_000;
/** POLL_INTERVAL_MS is how often catch-up asks the leader for progress. */
export const POLL_INTERVAL_MS = 250;
/** STEPS_PER_RUN_MAX bounds the steps one run takes (a move has 8). */
export const STEPS_PER_RUN_MAX = 32;
/** VERIFY_ATTEMPTS_MAX bounds the checkpoints a verify step asks for before it gives up. */
export const VERIFY_ATTEMPTS_MAX = 20;
/** VERIFY_CHECK_TIMEOUT_MS is one checkpoint's wait for every member's report. */
export const VERIFY_CHECK_TIMEOUT_MS = 10_000;
/** ATTEMPTS_MAX bounds the attempts of one membership step or transfer. */
export const ATTEMPTS_MAX = 10;
/** CATCH_UP_POLLS_MAX bounds the polls of one catch-up (the stall timeout ends it first). */
export const CATCH_UP_POLLS_MAX = 10_000_000;

/** LearnerProgress is one learner's catch-up, for progress bars. */
export interface LearnerProgress {
  readonly id: number;
  readonly name: string;
  readonly match: number;
  readonly lastIndex: number;
  readonly snapshot: { readonly acknowledgedBytes: number; readonly byteLength: number } | undefined;
  readonly caughtUp: boolean;
}

/** MigrationEvent is what a run reports as it goes. */
export type MigrationEvent =
  | { readonly type: 'step-started'; readonly step: StepName; readonly record: MigrationRecord }
  | { readonly type: 'step-done'; readonly step: StepName; readonly detail: string; readonly record: MigrationRecord; readonly elapsedMs: number }
  | { readonly type: 'catch-up'; readonly learners: readonly LearnerProgress[]; readonly elapsedMs: number }
  | { readonly type: 'note'; readonly text: string };

/** ExecutorOptions configure a run. */
export interface ExecutorOptions {
  readonly clock: Clock;
  readonly onEvent?: (event: MigrationEvent) => void;
  readonly stallTimeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Test hook: called after a step is done and before the journal says so, to kill a run there. */
  readonly beforeJournalWrite?: (step: StepName) => Promise<void> | void;
  /** A run is a `migrate.run` span, each step a `migrate.<step>` span in it; absent: no tracing. */
  readonly tracer?: Tracer | undefined;
}

/** runRecord runs `record` (at journal `version`) to its end; answers the last record and version. */
export function runRecord(cluster: MigrationCluster, start: { record: MigrationRecord; version: number }, options: ExecutorOptions): Promise<{ record: MigrationRecord; version: number }> {
  const attributes = { [ATTR_MIGRATION_ID]: start.record.id, 'stratakv.migration.kind': start.record.kind };
  return withSpan(options.tracer, 'migrate.run', { attributes }, (span) => runSteps(cluster, start, options, span === undefined ? undefined : sampledContext(span)));
}

async function runSteps(
  cluster: MigrationCluster,
  start: { record: MigrationRecord; version: number },
  options: ExecutorOptions,
  runContext: ReturnType<typeof sampledContext>,
): Promise<{ record: MigrationRecord; version: number }> {
  let { record, version } = start;
  for (let taken = 0; taken < STEPS_PER_RUN_MAX && record.next !== undefined; taken += 1) {
    if (options.signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the migration was interrupted; run it again to resume');
    const step = record.next;
    // The step log keeps wall-clock times (an operator reads them as dates); durations come from the clock.
    const startedAtMs = Date.now();
    const startedClockMs = options.clock.now();
    options.onEvent?.({ type: 'step-started', step, record });
    const stepAttributes = { [ATTR_MIGRATION_ID]: record.id, [ATTR_MIGRATION_STEP]: step };
    const { detail, record: updated } = await withSpan(options.tracer, `migrate.${step}`, { attributes: stepAttributes, parent: runContext }, () => runStep(cluster, record, step, options));
    await options.beforeJournalWrite?.(step);
    const done = withStepDone(updated, step, { startedAtMs, nowMs: Math.max(startedAtMs, Date.now()) }, detail);
    try {
      version = await cluster.writeJournal(version, encodeRecord(done));
    } catch (error) {
      if (!isStrataError(error, ErrorCode.JOURNAL_CONFLICT)) throw error;
      // Another run wrote first (or our own write landed and its answer was lost): go on from the journal.
      const journal = await cluster.readJournal();
      if (journal.record === undefined) throw new StrataError(ErrorCode.JOURNAL_CONFLICT, 'the migration journal was cleared while this run went on; stopping');
      const found = decodeRecord(journal.record);
      if (found.id !== record.id) throw new StrataError(ErrorCode.JOURNAL_CONFLICT, `the journal now holds migration ${found.id}, not ${record.id}; stopping`);
      version = journal.version;
      record = found;
      continue;
    }
    record = done;
    options.onEvent?.({ type: 'step-done', step, detail, record, elapsedMs: options.clock.now() - startedClockMs });
  }
  return { record, version };
}

async function runStep(cluster: MigrationCluster, record: MigrationRecord, step: StepName, options: ExecutorOptions): Promise<{ detail: string; record: MigrationRecord }> {
  switch (step) {
    case 'add-learners':
      return addLearners(cluster, record);
    case 'catch-up':
      return { detail: await catchUp(cluster, record, options), record };
    case 'verify-before':
    case 'verify-after':
      return { detail: await verify(cluster, options), record };
    case 'swap-voters':
      return { detail: await swapVoters(cluster, record), record };
    case 'transfer-leader':
      return { detail: await transferLeader(cluster, record), record };
    case 'leave-joint':
      return { detail: await leaveJoint(cluster), record };
    case 'remove-old':
      return { detail: await removeMembers(cluster, record.from.filter((spec) => !record.to.some((target) => target.id === spec.id))), record };
    case 'remove-learners':
      return { detail: await removeMembers(cluster, record.to.filter((spec) => !record.from.some((old) => old.id === spec.id))), record };
  }
}

// addLearners adds every new member that is not a member yet, as a learner; the record
// learns their ids (derived by the cluster from the peer URLs and its token).
async function addLearners(cluster: MigrationCluster, record: MigrationRecord): Promise<{ detail: string; record: MigrationRecord }> {
  let replication = await cluster.replication();
  const to: MemberSpec[] = [];
  const added: string[] = [];
  for (const spec of record.to) {
    const member = memberWithUrls(replication.members, spec.peerUrls);
    if (member !== undefined) {
      to.push({ ...spec, id: member.id });
      continue;
    }
    const learners = replication.members.filter((candidate) => candidate.isLearner).length;
    const addedId = await withAttempts(`adding ${spec.name} as a learner`, async () => {
      try {
        return (await cluster.changeMembers({ op: 'add-learner', peerUrls: spec.peerUrls, learnersMax: learners + record.to.length })).addedId;
      } catch (error) {
        // An attempt whose answer was lost added it already.
        if (!isStrataError(error, ErrorCode.PEER_URL_EXISTS)) throw error;
        const found = memberWithUrls((await cluster.replication()).members, spec.peerUrls);
        if (found === undefined) throw error;
        return found.id;
      }
    });
    to.push({ ...spec, id: addedId });
    added.push(`${spec.name}=${addedId.toString(16)}`);
    replication = await cluster.replication();
  }
  return { detail: added.length === 0 ? 'every new member was a member already' : `added ${added.join(', ')}`, record: { ...record, to } };
}

// catchUp waits until every new member that is a learner has caught up: replicating (no
// snapshot in flight), within CAUGHT_UP_LAG_ENTRIES of the leader's last index, and applied
// that far. It reports each learner's progress as it goes and gives up only when nothing
// moved for the stall timeout.
async function catchUp(cluster: MigrationCluster, record: MigrationRecord, options: ExecutorOptions): Promise<string> {
  const stallTimeoutMs = options.stallTimeoutMs ?? STALL_TIMEOUT_MS_DEFAULT;
  const startedMs = options.clock.now();
  let lastMoveMs = startedMs;
  let lastSignature = '';
  for (let poll = 0; poll < CATCH_UP_POLLS_MAX; poll += 1) {
    if (options.signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the migration was interrupted; run it again to resume');
    const replication = await cluster.replication();
    cluster.followEndpoints(replication.members);
    const learners = record.to
      .map((spec) => ({ spec, peer: replication.peers.find((peer) => peer.id === spec.id) }))
      .filter(({ spec, peer }) => peer !== undefined && peer.isLearner && spec.id !== replication.leaderId);
    const progress: LearnerProgress[] = learners.map(({ spec, peer }) => {
      const current = peer as NonNullable<typeof peer>;
      const caughtUp =
        current.state === 'replicate' &&
        current.snapshot === undefined &&
        replication.lastIndex - current.match <= CAUGHT_UP_LAG_ENTRIES &&
        current.appliedIndex !== undefined &&
        replication.commitIndex - current.appliedIndex <= CAUGHT_UP_LAG_ENTRIES;
      return { id: spec.id, name: spec.name, match: current.match, lastIndex: replication.lastIndex, snapshot: current.snapshot, caughtUp };
    });
    options.onEvent?.({ type: 'catch-up', learners: progress, elapsedMs: options.clock.now() - startedMs });
    if (progress.every((item) => item.caughtUp)) {
      return `${progress.length} learner(s) caught up in ${Math.round((options.clock.now() - startedMs) / 100) / 10} s`;
    }
    const signature = progress.map((item) => `${item.match}/${item.snapshot?.acknowledgedBytes ?? -1}`).join(',');
    if (signature !== lastSignature) {
      lastSignature = signature;
      lastMoveMs = options.clock.now();
    } else if (options.clock.now() - lastMoveMs > stallTimeoutMs) {
      const behind = progress.filter((item) => !item.caughtUp).map((item) => `${item.name} (match ${item.match} of ${item.lastIndex}${item.snapshot !== undefined ? `, snapshot ${item.snapshot.acknowledgedBytes}/${item.snapshot.byteLength} bytes` : ''})`);
      throw new StrataError(ErrorCode.TIMEOUT, `catch-up made no progress for ${Math.round(stallTimeoutMs / 1000)} s: ${behind.join(', ')}; the migration stays at this step (run resumes it, rollback undoes it)`);
    }
    await sleep(options.clock, POLL_INTERVAL_MS);
  }
  throw new StrataError(ErrorCode.TIMEOUT, 'catch-up polled too often');
}

// verify asks for checkpoints until one has every member's report, all equal.
async function verify(cluster: MigrationCluster, options: ExecutorOptions): Promise<string> {
  // Ask the members of the cluster as it is now (not one that was just removed).
  cluster.followEndpoints((await cluster.replication()).members);
  let last: IntegrityCheck | undefined;
  for (let attempt = 0; attempt < VERIFY_ATTEMPTS_MAX; attempt += 1) {
    if (options.signal?.aborted === true) throw new StrataError(ErrorCode.CANCELED, 'the migration was interrupted; run it again to resume');
    let check: IntegrityCheck;
    try {
      check = await cluster.check(VERIFY_CHECK_TIMEOUT_MS);
    } catch (error) {
      if (!isStrataError(error) || (error.code !== ErrorCode.UNAVAILABLE && error.code !== ErrorCode.TIMEOUT && error.code !== ErrorCode.NOT_LEADER)) throw error;
      await sleep(options.clock, POLL_INTERVAL_MS);
      continue;
    }
    last = check;
    if (check.verdict === 'corrupt-members' || check.verdict === 'no-majority') {
      throw new StrataError(ErrorCode.CORRUPTION, `the members' state digests differ at index ${check.index} (${check.verdict}: ${check.corrupt.map((id) => id.toString(16)).join(', ')}); the migration stops here (stratakv check, stratakv member rebuild)`, {
        details: { index: check.index, verdict: check.verdict },
      });
    }
    const everyone = [...check.voters, ...check.learners];
    const reported = new Set(check.reports.map((report) => report.memberId));
    const digests = new Set(check.reports.map((report) => report.digest));
    if (check.verdict === 'agreed' && everyone.every((id) => reported.has(id)) && digests.size === 1) {
      const sample = check.reports[0];
      return `${everyone.length} members agree at index ${check.index} (revision ${sample?.revision ?? 0}, ${sample?.keyCount ?? 0} keys, digest ${sample?.digest ?? ''})`;
    }
    await sleep(options.clock, POLL_INTERVAL_MS);
  }
  const missing = last === undefined ? 'no checkpoint answered' : `the last checkpoint (index ${last.index}) had ${last.reports.length} of ${last.voters.length + last.learners.length} reports`;
  throw new StrataError(ErrorCode.TIMEOUT, `could not verify every member's digest in ${VERIFY_ATTEMPTS_MAX} checkpoints: ${missing}`);
}

// swapVoters makes the record's `to` the voters in one joint change (the `from` voters are
// demoted to learners, so a rollback can move back to them). Done already when the incoming
// voters are `to`; a different joint configuration (a rollback's move back finds its
// migration's) is left first.
async function swapVoters(cluster: MigrationCluster, record: MigrationRecord): Promise<string> {
  const target = new Set(record.to.map((spec) => spec.id));
  for (let attempt = 0; attempt < ATTEMPTS_MAX; attempt += 1) {
    const replication = await cluster.replication();
    if (sameSet(replication.voters, target)) return replication.votersOutgoing.length > 0 ? 'the joint configuration was entered already' : 'the voters were swapped already';
    if (replication.votersOutgoing.length > 0) {
      await cluster.changeMembers({ op: 'leave' });
      continue;
    }
    const promote = [...target].filter((id) => !replication.voters.includes(id));
    const demote = replication.voters.filter((id) => !target.has(id));
    const missing = promote.filter((id) => !replication.learners.includes(id));
    if (missing.length > 0) throw new StrataError(ErrorCode.MEMBER_NOT_FOUND, `members ${missing.map((id) => id.toString(16)).join(', ')} are not learners of the cluster; the swap needs them caught up as learners`);
    try {
      await cluster.changeMembers({ op: 'replace', promote, remove: [], demote });
      return `entered the joint configuration: promoted ${promote.map((id) => id.toString(16)).join(', ')}, demoted ${demote.map((id) => id.toString(16)).join(', ')}`;
    } catch (error) {
      // A learner fell behind again under load: wait a moment and ask again.
      // A retry of a change whose first answer was lost finds the joint configuration entered (CONF_CHANGE_REFUSED): the next look says.
      if (![ErrorCode.LEARNER_NOT_READY, ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE, ErrorCode.CONF_CHANGE_REFUSED, ErrorCode.CONF_CHANGE_PENDING].includes(error instanceof StrataError ? (error.code as never) : (undefined as never))) throw error;
    }
  }
  throw new StrataError(ErrorCode.TIMEOUT, `the voter swap did not happen in ${ATTEMPTS_MAX} attempts`);
}

// transferLeader hands leadership to the best new voter: caught up (highest match), no
// snapshot in flight, reachable, lowest round trip. Nothing to do when a new voter leads.
async function transferLeader(cluster: MigrationCluster, record: MigrationRecord): Promise<string> {
  const target = new Set(record.to.map((spec) => spec.id));
  for (let attempt = 0; attempt < ATTEMPTS_MAX; attempt += 1) {
    const replication = await cluster.replication();
    cluster.followEndpoints(replication.members);
    if (target.has(replication.leaderId)) return `${nameIn(record, replication.leaderId)} leads already`;
    const best = bestTransferee(replication, target);
    if (best === undefined) throw new StrataError(ErrorCode.UNAVAILABLE, 'no new voter is fit to lead (each is behind, receiving a snapshot or unreachable)');
    try {
      await cluster.transferLeader(best.id);
      return `leadership moved from ${nameIn(record, replication.leaderId)} to ${nameIn(record, best.id)} (round trip ${best.rttMs.toFixed(1)} ms)`;
    } catch (error) {
      // Leadership may have moved anyway (the answer was lost): the next look says.
      if (!isStrataError(error) || (error.code !== ErrorCode.TIMEOUT && error.code !== ErrorCode.UNAVAILABLE && error.code !== ErrorCode.NOT_LEADER && error.code !== ErrorCode.LEADER_CHANGED)) throw error;
    }
  }
  throw new StrataError(ErrorCode.TIMEOUT, `leadership did not move to a new voter in ${ATTEMPTS_MAX} attempts`);
}

/** bestTransferee picks the new voter a leader should hand over to (see transferLeader), or undefined. */
export function bestTransferee(replication: ReplicationInfo, target: ReadonlySet<number>): { id: number; rttMs: number } | undefined {
  const fit = replication.peers.filter((peer) => target.has(peer.id) && replication.voters.includes(peer.id) && peer.snapshot === undefined && peer.rttMs !== undefined && peer.state === 'replicate');
  if (fit.length === 0) return undefined;
  const bestMatch = Math.max(...fit.map((peer) => peer.match));
  const caughtUp = fit.filter((peer) => peer.match >= bestMatch - CAUGHT_UP_LAG_ENTRIES);
  caughtUp.sort((a, b) => (a.rttMs ?? 0) - (b.rttMs ?? 0) || b.match - a.match);
  const chosen = caughtUp[0];
  return chosen === undefined ? undefined : { id: chosen.id, rttMs: chosen.rttMs ?? 0 };
}

async function leaveJoint(cluster: MigrationCluster): Promise<string> {
  const replication = await cluster.replication();
  if (replication.votersOutgoing.length === 0) return 'the joint configuration was left already';
  await withAttempts('leaving the joint configuration', () => cluster.changeMembers({ op: 'leave' }));
  return 'left the joint configuration';
}

// removeMembers removes each member still in the cluster (one change each).
async function removeMembers(cluster: MigrationCluster, specs: readonly MemberSpec[]): Promise<string> {
  const removed: string[] = [];
  for (const spec of specs) {
    const replication = await cluster.replication();
    cluster.followEndpoints(replication.members.filter((member) => !specs.some((gone) => gone.id === member.id)));
    const member = replication.members.find((candidate) => candidate.id === spec.id) ?? memberWithUrls(replication.members, spec.peerUrls);
    if (member === undefined) continue;
    await withAttempts(`removing ${spec.name}`, async () => {
      try {
        return await cluster.changeMembers({ op: 'remove', id: member.id });
      } catch (error) {
        if (isStrataError(error, ErrorCode.MEMBER_NOT_FOUND)) return undefined;
        throw error;
      }
    });
    removed.push(spec.name || member.id.toString(16));
  }
  return removed.length === 0 ? 'nothing left to remove' : `removed ${removed.join(', ')}`;
}

// withAttempts retries a membership step refused for a passing reason (another change pending, a timeout while the leader changed).
async function withAttempts<T>(what: string, step: () => Promise<T>): Promise<T> {
  let last: unknown;
  for (let attempt = 0; attempt < ATTEMPTS_MAX; attempt += 1) {
    try {
      return await step();
    } catch (error) {
      last = error;
      if (!isStrataError(error) || (error.code !== ErrorCode.TIMEOUT && error.code !== ErrorCode.UNAVAILABLE && error.code !== ErrorCode.CONF_CHANGE_PENDING && error.code !== ErrorCode.LEADER_CHANGED)) throw error;
    }
  }
  throw new StrataError(ErrorCode.TIMEOUT, `${what} failed ${ATTEMPTS_MAX} times`, { cause: last });
}

function memberWithUrls(members: readonly MigrationMemberInfo[], peerUrls: readonly string[]): MigrationMemberInfo | undefined {
  return members.find((member) => member.peerUrls.length === peerUrls.length && member.peerUrls.every((url) => peerUrls.includes(url)));
}

function sameSet(ids: readonly number[], set: ReadonlySet<number>): boolean {
  return ids.length === set.size && ids.every((id) => set.has(id));
}

function nameIn(record: MigrationRecord, id: number): string {
  return [...record.to, ...record.from].find((spec) => spec.id === id)?.name || id.toString(16);
}

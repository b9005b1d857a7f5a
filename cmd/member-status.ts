// What `stratakv serve` shows about its cluster over plain HTTP: /health's checks on this
// member, this member's own row (/status/member, on its client URLs), and the status page's
// document (/status.json on the metrics URLs), which asks every other member for its row at
// its client URL, as `etcdctl endpoint status --cluster` asks every member.
//
// The document is assembled where everything it needs is known (cmd sits above src/node,
// src/migrate and src/obs); the page itself is src/obs's.

import { checkHealth, type HealthSource, type MemberStatusRow, type MigrationStatusView, type StatusDocument } from '../src/obs/index.ts';
import type { RaftNode } from '../src/node/index.ts';
import { decodeRecord, stepsOf } from '../src/migrate/index.ts';
import { decodeCopyState, type CopyPhase } from '../src/migrate/copy/index.ts';
import type { MigrationRecord } from '../src/migrate/index.ts';

/** PEER_STATUS_TIMEOUT_MS bounds the wait for another member's row. */
export const PEER_STATUS_TIMEOUT_MS = 1_000;
/** MEMBER_STATUS_PATH is where a member answers its own row on its client URLs. */
export const MEMBER_STATUS_PATH = '/status/member';

/** healthSource is /health's view of `node` (a mirror answers the read as the copier's reads are). */
export function healthSource(node: RaftNode): HealthSource {
  return {
    alarmTypes: () => node.alarms().map((record) => record.alarm),
    hasLeader: () => node.leaderId() !== 0,
    linearizableRead: async (timeoutMs) => {
      await node.range({ type: 'range', key: new TextEncoder().encode('health'), countOnly: true }, { timeoutMs, mirrorReader: true });
    },
  };
}

/** ownRow is this member's row, from its own state. */
export async function ownRow(node: RaftNode): Promise<MemberStatusRow> {
  const status = node.status();
  const record = node.members().find((member) => member.id === node.memberId);
  const snapshots = status.snapshots;
  const sending = snapshots.sending[0];
  const snapshotState = snapshots.taking
    ? 'saving'
    : status.receivingSnapshot
      ? 'receiving'
      : sending !== undefined
        ? 'sending'
        : snapshots.backoffRemainingMs > 0
          ? 'backing-off'
          : 'idle';
  const snapshotDetail =
    sending !== undefined
      ? `to ${sending.peer.toString(16)}: ${Math.round((100 * sending.acknowledgedBytes) / Math.max(1, sending.byteLength))}% of ${sending.byteLength} bytes`
      : snapshots.lastError;
  return {
    id: node.memberId.toString(16),
    name: node.name,
    zone: record?.zone ?? '',
    role: status.role === 'leader' ? 'leader' : status.isLearner ? 'learner' : status.role === 'follower' ? 'follower' : 'candidate',
    clientUrls: record?.clientUrls ?? [],
    reachable: true,
    term: status.term,
    commitIndex: status.commitIndex,
    appliedIndex: status.appliedIndex,
    dbSizeBytes: await node.dbSizeBytes().catch(() => 0),
    snapshot: { index: snapshots.latest?.index ?? 0, state: snapshotState, ...(snapshotDetail !== undefined ? { detail: snapshotDetail } : {}) },
    alarms: status.alarms.filter((alarm) => alarm.memberId === node.memberId).map((alarm) => alarm.alarm),
  };
}

/** statusDocument is the status page's data: the cluster as this member sees it, every member's row, the migration. */
export async function statusDocument(node: RaftNode, version: string): Promise<StatusDocument> {
  const status = node.status();
  const members = node.members();
  const rows = await Promise.all(
    members.map(async (member): Promise<MemberStatusRow> => {
      if (member.id === node.memberId) return ownRow(node);
      const base = { id: member.id.toString(16), name: member.name, zone: member.zone, clientUrls: member.clientUrls, alarms: [] as string[] };
      const url = member.clientUrls[0];
      if (url === undefined) return { ...base, role: member.isLearner ? 'learner' : 'unknown', reachable: false, error: 'not started yet (no client URL published)' };
      try {
        const answer = await fetch(new URL(MEMBER_STATUS_PATH, url), { signal: AbortSignal.timeout(PEER_STATUS_TIMEOUT_MS) });
        if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
        return { ...(await answer.json() as MemberStatusRow), reachable: true };
      } catch (error) {
        return { ...base, role: member.isLearner ? 'learner' : 'unknown', reachable: false, error: `${url}: ${(error as Error).message}` };
      }
    }),
  );
  const leaderRow = rows.find((row) => row.role === 'leader');
  const leaderCommit = leaderRow?.commitIndex ?? status.commitIndex;
  const withLag = rows
    .map((row) => (row.appliedIndex === undefined ? row : { ...row, lagEntries: Math.max(0, leaderCommit - row.appliedIndex) }))
    // Voters first, then learners; by name within each, so a refresh never reorders the table.
    .sort((a, b) => Number(a.role === 'learner') - Number(b.role === 'learner') || a.name.localeCompare(b.name));
  const journal = node.migrationJournalNow();
  const mirror = node.mirrorStateNow();
  const migration = journal !== undefined ? migrationView(journal, withLag, leaderCommit) : mirror !== undefined ? copyView(mirror) : undefined;
  return {
    generatedAt: new Date().toISOString(),
    self: { id: node.memberId.toString(16), name: node.name },
    cluster: { id: node.clusterId.toString(16), leaderId: status.leaderId === 0 ? '' : status.leaderId.toString(16), term: status.term, revision: status.revision, version },
    health: await checkHealth(healthSource(node), new URLSearchParams()),
    members: withLag,
    alarms: status.alarms.map((alarm) => ({ memberId: alarm.memberId.toString(16), alarm: alarm.alarm })),
    ...(migration !== undefined ? { migration } : {}),
  };
}

/** describeMigration reads a journal record for the metrics (undefined when it cannot be read). */
export function describeMigration(text: string): MigrationStatusView | undefined {
  try {
    return viewOf(decodeRecord(text));
  } catch {
    return undefined;
  }
}

function viewOf(record: MigrationRecord): MigrationStatusView {
  const steps = stepsOf(record.kind);
  const done = record.next === undefined;
  const step = done ? steps.length : steps.indexOf(record.next as (typeof steps)[number]) + 1;
  const last = record.log.at(-1);
  return {
    id: record.id,
    kind: record.rollbackOf !== undefined ? 'move back' : record.kind,
    state: done ? 'done' : 'running',
    phase: record.next ?? 'done',
    step,
    steps: steps.length,
    stepNames: [...steps],
    progress: { done: done ? steps.length : step - 1, total: steps.length, unit: 'steps' },
    ...(last !== undefined ? { detail: `${last.step}: ${last.detail}` } : {}),
    startedAt: new Date(record.startedAtMs).toISOString(),
    updatedAt: new Date(record.updatedAtMs).toISOString(),
  };
}

// migrationView adds what the rows tell about the step running: while learners catch up,
// how far the slowest of the joining members has applied of the leader's log (in entries).
function migrationView(text: string, rows: readonly MemberStatusRow[], leaderCommit: number): MigrationStatusView | undefined {
  let record: MigrationRecord;
  try {
    record = decodeRecord(text);
  } catch {
    return undefined;
  }
  const view = viewOf(record);
  if (view.phase !== 'catch-up') return view;
  const joining = new Set(record.to.map((spec) => spec.name));
  const applied = rows.filter((row) => joining.has(row.name) && row.appliedIndex !== undefined).map((row) => row.appliedIndex as number);
  if (applied.length === 0) return view;
  return { ...view, progress: { done: Math.min(...applied), total: leaderCommit, unit: 'entries' } };
}

// COPY_PHASES are a copy's phases in order, as the page's step track shows them.
const COPY_PHASES: readonly CopyPhase[] = ['copying', 'tailing', 'switching', 'fenced', 'completed'];

/**
 * copyView describes the copy this cluster is the target (or, after a switch, the source) of,
 * from the copy state its mirror mode keeps (`stratakv migrate copy`): its phase, and how far
 * it is (keys copied while scanning, then the source's revisions applied); undefined when the
 * state cannot be read.
 */
export function copyView(bytes: Uint8Array): MigrationStatusView | undefined {
  let state;
  try {
    state = decodeCopyState(bytes);
  } catch {
    return undefined;
  }
  const step = COPY_PHASES.indexOf(state.phase) + 1;
  return {
    id: state.copyId,
    kind: `copy ${state.direction ?? 'forward'} from ${state.source.kind} ${state.source.endpoints.slice(0, 3).join(',')}`,
    state: state.phase === 'completed' ? 'done' : 'running',
    phase: state.phase,
    step,
    steps: COPY_PHASES.length,
    stepNames: [...COPY_PHASES],
    ...(state.phase === 'copying' && state.scan !== null && state.scan.keysTotal > 0
      ? { progress: { done: state.scan.keysCopied, total: state.scan.keysTotal, unit: 'keys' } }
      : state.sourceRevisionSeen > 0
        ? { progress: { done: state.appliedRevision, total: state.sourceRevisionSeen, unit: 'source revisions' } }
        : {}),
    detail: `rescans ${state.rescans}${state.caughtUpAtMs > 0 ? `, last caught up ${new Date(state.caughtUpAtMs).toISOString()}` : ''}`,
    startedAt: new Date(state.createdAtMs).toISOString(),
    updatedAt: new Date(state.updatedAtMs).toISOString(),
  };
}

// The migration's journal record: what `stratakv migrate` keeps in the cluster (through Raft,
// src/node/migration-journal.ts) so that any machine can resume it or roll it back. It names
// the members the cluster moves from and to, and the next step to run; every step is
// idempotent (it looks at the cluster before acting), so a process killed anywhere between
// "did the step" and "wrote that it did" runs the step again harmlessly.
//
// A record is a *move* from one voter set to another: the forward migration, and the move
// back that a rollback after the voter swap becomes (the old members are still learners then,
// caught up, so moving back to them is the same steps in the other direction). A rollback
// before the swap only removes the learners it added.

import { ErrorCode, StrataError } from '../util/errors.ts';

/** RECORD_FORMAT is the record's format number. */
export const RECORD_FORMAT = 1;
/** STEP_LOG_MAX bounds the step log a record keeps (the newest are kept): a move and a rollback and a move again fit, and the record stays well inside what a snapshot carries (JOURNAL_RECORD_DEFLATED_BYTES_MAX). */
export const STEP_LOG_MAX = 24;

/** MOVE_STEPS are a move's steps, in order. */
export const MOVE_STEPS = [
  'add-learners',
  'catch-up',
  'verify-before',
  'swap-voters',
  'transfer-leader',
  'leave-joint',
  'remove-old',
  'verify-after',
] as const;
/** ABORT_STEPS are a rollback's steps before the swap: the learners it added go. */
export const ABORT_STEPS = ['remove-learners', 'verify-after'] as const;

/** StepName is one step of a move or an abort. */
export type StepName = (typeof MOVE_STEPS)[number] | (typeof ABORT_STEPS)[number];

/** RecordKind: a move (forward, or back after a rollback past the swap), or the abort of one before its swap. */
export type RecordKind = 'move' | 'abort';

/** MemberSpec names one member of a plan: its name, peer URLs, and id once known (0 before it is added). */
export interface MemberSpec {
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly id: number;
  readonly zone: string;
}

/** StepLogItem is one finished step, for status and the note an operator reads. */
export interface StepLogItem {
  readonly step: StepName;
  readonly startedAtMs: number;
  readonly doneAtMs: number;
  readonly detail: string;
}

/** MigrationRecord is the journal's record (see the file comment). */
export interface MigrationRecord {
  readonly format: typeof RECORD_FORMAT;
  /** Random, for telling two migrations apart in logs. */
  readonly id: string;
  readonly kind: RecordKind;
  /** A move back after a rollback: the original migration's id. */
  readonly rollbackOf?: string | undefined;
  /** The voters the move starts from and the members it ends with. */
  readonly from: readonly MemberSpec[];
  readonly to: readonly MemberSpec[];
  /** The next step to run; undefined once every step is done. */
  readonly next: StepName | undefined;
  readonly startedAtMs: number;
  readonly updatedAtMs: number;
  readonly log: readonly StepLogItem[];
}

/** stepsOf lists a record's steps in order. */
export function stepsOf(kind: RecordKind): readonly StepName[] {
  return kind === 'move' ? MOVE_STEPS : ABORT_STEPS;
}

/** stepAfter is the step after `step` in a record of `kind`, or undefined after the last. */
export function stepAfter(kind: RecordKind, step: StepName): StepName | undefined {
  const steps = stepsOf(kind);
  const at = steps.indexOf(step);
  if (at < 0) throw new Error(`step ${step} is not a step of a ${kind}`);
  return steps[at + 1];
}

/** isBeforeSwap tells whether a move has not yet swapped its voters (a rollback then only removes the learners). */
export function isBeforeSwap(record: MigrationRecord): boolean {
  if (record.kind !== 'move' || record.next === undefined) return false;
  return MOVE_STEPS.indexOf(record.next as (typeof MOVE_STEPS)[number]) <= MOVE_STEPS.indexOf('swap-voters');
}

/** encodeRecord encodes a record for the journal. */
export function encodeRecord(record: MigrationRecord): string {
  return JSON.stringify(record);
}

/** decodeRecord reads a journal record; INVALID_ARGUMENT naming what is wrong. */
export function decodeRecord(text: string): MigrationRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalid('the journal record is not JSON', error);
  }
  if (value === null || typeof value !== 'object') throw invalid('the journal record is not an object');
  const record = value as Record<string, unknown>;
  if (record.format !== RECORD_FORMAT) throw invalid(`the journal record has format ${JSON.stringify(record.format)}; this stratakv reads format ${RECORD_FORMAT}`);
  if (typeof record.id !== 'string') throw invalid('the journal record has no id');
  if (record.kind !== 'move' && record.kind !== 'abort') throw invalid(`the journal record's kind ${JSON.stringify(record.kind)} is unknown`);
  const steps = stepsOf(record.kind);
  if (record.next !== undefined && !steps.includes(record.next as StepName)) throw invalid(`the journal record's next step ${JSON.stringify(record.next)} is unknown`);
  if (!isSpecList(record.from) || !isSpecList(record.to)) throw invalid('the journal record has malformed member lists');
  if (typeof record.startedAtMs !== 'number' || typeof record.updatedAtMs !== 'number' || !Array.isArray(record.log)) throw invalid('the journal record has malformed times or log');
  return value as MigrationRecord;
}

/** withStepDone answers the record after `step` finished (the next step, the log entry). */
export function withStepDone(record: MigrationRecord, step: StepName, times: { readonly startedAtMs: number; readonly nowMs: number }, detail: string): MigrationRecord {
  if (record.next !== step) throw new Error(`withStepDone: the record's next step is ${String(record.next)}, not ${step}`);
  const log = [...record.log, { step, startedAtMs: times.startedAtMs, doneAtMs: times.nowMs, detail }].slice(-STEP_LOG_MAX);
  return { ...record, next: stepAfter(record.kind, step), updatedAtMs: times.nowMs, log };
}

function isSpecList(value: unknown): value is MemberSpec[] {
  return (
    Array.isArray(value) &&
    value.every((item: unknown) => {
      if (item === null || typeof item !== 'object') return false;
      const spec = item as Record<string, unknown>;
      return typeof spec.name === 'string' && Array.isArray(spec.peerUrls) && spec.peerUrls.every((url) => typeof url === 'string') && typeof spec.id === 'number' && typeof spec.zone === 'string';
    })
  );
}

function invalid(message: string, cause?: unknown): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, message, cause === undefined ? {} : { cause });
}

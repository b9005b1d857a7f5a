// The migration journal: one record that a `stratakv migrate` process keeps in the cluster
// itself, through Raft, so that any machine can see, resume or roll back a migration after
// the process that started it died (cluster-api#3978: a crash between two steps must not
// block every retry).
//
// The driver keeps it beside the member table and the alarms (a snapshot carries it). Its
// content is opaque here: src/migrate owns the record's format; this part only guarantees
// that writes are compare-and-set on a version that every applied write increases by one,
// so two writers (a resumed run and a stale one) cannot both succeed from the same version.
// A write whose expected version is not the applied one changes nothing and is answered
// JOURNAL_CONFLICT, on every member alike (the check runs as the entry is applied).
//
// Invariant: version counts the writes applied, including clears (record undefined).

import { deflateRawSync } from 'node:zlib';

import { ErrorCode, StrataError } from '../util/errors.ts';

/** JOURNAL_RECORD_BYTES_MAX bounds the record (a plan of a few members and its step log). */
export const JOURNAL_RECORD_BYTES_MAX = 64 * 1024;

/**
 * JOURNAL_RECORD_DEFLATED_BYTES_MAX bounds the record once deflated: every snapshot carries it
 * in its footer's member table (src/snapshot stores a long table deflated, and the footer is
 * one 4096-byte block beside the configuration and the member list). A record that could not
 * be snapshotted is refused when written, rather than making every later snapshot fail. A
 * finished 3-to-3 move's record is about 1.9 KB, 0.8 KB deflated.
 */
export const JOURNAL_RECORD_DEFLATED_BYTES_MAX = 2048;

/** JournalCommand is the node command that writes the journal: set `record`, or clear it when undefined. */
export interface JournalCommand {
  readonly type: 'journal';
  readonly expectedVersion: number;
  readonly record?: string | undefined;
}

/** JournalState is the journal at one applied index, as a snapshot carries it. */
export interface JournalState {
  readonly version: number;
  readonly record?: string | undefined;
}

/** checkJournalCommand validates a decoded journal command (malformed bytes passed a CRC: CORRUPTION). */
export function checkJournalCommand(command: Record<string, unknown>): JournalCommand {
  const bad = (why: string): never => {
    throw new StrataError(ErrorCode.CORRUPTION, `journal command: ${why}`);
  };
  if (!isVersion(command.expectedVersion)) bad('bad expectedVersion');
  if (command.record !== undefined && typeof command.record !== 'string') bad('bad record');
  return { type: 'journal', expectedVersion: command.expectedVersion as number, record: command.record as string | undefined };
}

/** checkJournalState validates a journal state read from a snapshot descriptor. */
export function checkJournalState(value: unknown): JournalState | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object') throw new StrataError(ErrorCode.CORRUPTION, 'snapshot descriptor: bad journal');
  const state = value as Record<string, unknown>;
  if (!isVersion(state.version)) throw new StrataError(ErrorCode.CORRUPTION, 'snapshot descriptor: bad journal version');
  if (state.record !== undefined && state.record !== null && typeof state.record !== 'string') throw new StrataError(ErrorCode.CORRUPTION, 'snapshot descriptor: bad journal record');
  return { version: state.version as number, ...(typeof state.record === 'string' ? { record: state.record } : {}) };
}

/** checkJournalWrite refuses a write before it is proposed: a bad version or a record over the bound. */
export function checkJournalWrite(expectedVersion: number, record: string | undefined): void {
  if (!isVersion(expectedVersion)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `journal: expected version must be a non-negative integer, got ${expectedVersion}`);
  if (record !== undefined && Buffer.byteLength(record) > JOURNAL_RECORD_BYTES_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `journal: the record is ${Buffer.byteLength(record)} bytes, more than ${JOURNAL_RECORD_BYTES_MAX}`);
  }
  const deflatedBytes = record === undefined ? 0 : deflateRawSync(Buffer.from(record)).byteLength;
  if (deflatedBytes > JOURNAL_RECORD_DEFLATED_BYTES_MAX) {
    throw new StrataError(
      ErrorCode.INVALID_ARGUMENT,
      `journal: the record is ${deflatedBytes} bytes deflated, more than the ${JOURNAL_RECORD_DEFLATED_BYTES_MAX} a snapshot's member table can carry`,
    );
  }
}

/** MigrationJournal is the journal as applied on this member. */
export class MigrationJournal {
  private state: JournalState = { version: 0 };

  /** current answers the journal as applied here. */
  current(): JournalState {
    return this.state;
  }

  /** restore replaces the journal with a snapshot's (absent: none ever written). */
  restore(state: JournalState | undefined): void {
    this.state = state ?? { version: 0 };
  }

  /** apply applies a committed write: the new version, or JOURNAL_CONFLICT (and nothing changed). */
  apply(command: JournalCommand): { version: number } | { error: StrataError } {
    if (command.expectedVersion !== this.state.version) {
      return {
        error: new StrataError(ErrorCode.JOURNAL_CONFLICT, `the journal is at version ${this.state.version}, the write expected ${command.expectedVersion}`, {
          details: { version: this.state.version, expectedVersion: command.expectedVersion },
        }),
      };
    }
    this.state = { version: this.state.version + 1, ...(command.record !== undefined ? { record: command.record } : {}) };
    return { version: this.state.version };
  }
}

function isVersion(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

// The copier's position, kept in the target cluster as its mirror state (src/storage's
// MirrorRequest): every batch the copier applies writes the data and the next state in one
// Raft entry, compare-and-set on the state before it. So the state says exactly what the
// target holds: a copier killed anywhere resumes from it, with nothing lost and nothing
// applied twice, and `copy status` on any machine reads the same facts.
//
// JSON, not a binary layout: it is small (bounded by MIRROR_STATE_BYTES_MAX), rare (one per
// batch), and an operator reading a log dump or a snapshot footer can read it.

import { deflateRawSync } from 'node:zlib';

import { MIRROR_STATE_BYTES_MAX, MIRROR_STATE_FOOTER_BYTES_MAX } from '../../storage/index.ts';
import { ErrorCode, StrataError } from '../../util/errors.ts';

/** COPY_STATE_FORMAT versions the JSON below. */
export const COPY_STATE_FORMAT = 1;
/**
 * REVERSE_STATE_KEY is the etcd key that holds a reverse copy's state. It is a key like any
 * other to both clusters (the forward copy copies it; after a switch the reverse copy writes
 * it in every Txn), and verify leaves it out: its value and counters differ by design.
 */
export const REVERSE_STATE_KEY = new TextEncoder().encode('stratakv.io/migrate/reverse-copy');
/** COPY_ENDPOINTS_MAX bounds the source endpoints kept in the state. */
export const COPY_ENDPOINTS_MAX = 16;
/**
 * STATE_KEY_BYTES_MAX bounds a key kept in the state (the scan's next key, the prefix): the
 * state must deflate into a snapshot footer's MIRROR_STATE_FOOTER_BYTES_MAX. A longer next key
 * is kept as its first STATE_KEY_BYTES_MAX bytes, which sort at or before it: a resume then
 * reads a few keys again, and setting a key to the source's value twice changes nothing.
 */
export const STATE_KEY_BYTES_MAX = 256;

/** CopySourceKind is what the copy reads from. */
export type CopySourceKind = 'etcd' | 'stratakv';

/** CopySourceSpec says which cluster the target mirrors. */
export interface CopySourceSpec {
  readonly kind: CopySourceKind;
  /** host:port of the source's members, as given to `copy create` (the copier may learn more). */
  readonly endpoints: readonly string[];
  /** The source's cluster id (hex) when the copy began: a resume against another cluster is refused. */
  readonly clusterId: string;
}

/**
 * CopyPhase: `copying` scans the source at one revision (the first copy, or a re-scan after the
 * source compacted past the copier's position); `tailing` applies the source's changes from
 * `appliedRevision + 1` on (a stratakv source: from log index `appliedIndex + 1`);
 * `switching`: a `copy switch` owns the copy (copiers stop and do not resume); `fenced`: this
 * cluster was the source of a switch and is read-only while the switch finishes (it becomes
 * the reverse copy's `tailing` mirror, or writable again if the switch is undone);
 * `completed`: `copy complete` ended the copy (the cluster stays read-only; no copier resumes).
 */
export type CopyPhase = 'copying' | 'tailing' | 'switching' | 'fenced' | 'completed';

/** CopyDirection: `forward` was begun by `copy create`; `reverse` by a switch (it keeps the old source following the new primary). */
export type CopyDirection = 'forward' | 'reverse';

/** SourcePin is the pinned view of a stratakv source a scan reads (on one member: the pin lives there). */
export interface SourcePin {
  readonly endpoint: string;
  readonly pinId: string;
  /** The source's log index and revision the view holds. */
  readonly index: number;
  readonly revision: number;
}

/**
 * VerifyPin: the target's applied view pinned exactly where the source's checkpoint
 * `sourceIndex` (a `copy verify` asked for it) was replayed, so a Merkle diff compares both
 * clusters at that one point while the copy goes on.
 */
export interface VerifyPin {
  readonly sourceIndex: number;
  readonly endpoint: string;
  readonly pinId: string;
  readonly revision: number;
  readonly atMs: number;
}

/** VERIFY_PINS_MAX bounds the verify pins a state keeps (newest last). */
export const VERIFY_PINS_MAX = 4;

/** ScanPosition is where a scan of the source stands. */
export interface ScanPosition {
  /** The source revision the scan reads at. */
  readonly revision: number;
  /** The next key to read (base64); every key before it, in range, is copied. */
  readonly nextKey: string;
  readonly keysCopied: number;
  readonly bytesCopied: number;
  /** Keys in range at `revision` (etcd's count), for the progress bar. */
  readonly keysTotal: number;
  /**
   * A re-scan (after a compaction) also deletes the target's keys that the source no longer
   * holds; the first scan of an empty target has nothing to delete.
   */
  readonly deleteMissing: boolean;
  readonly startedAtMs: number;
  /** A stratakv source: the pinned view read (absent for etcd, which reads at `revision`). */
  readonly pin?: SourcePin;
}

/** CopyState is the mirror state's content (see the file comment). */
export interface CopyState {
  readonly format: typeof COPY_STATE_FORMAT;
  /** Random id of this copy: a second `copy create` with other flags is told apart from a resume. */
  readonly copyId: string;
  readonly source: CopySourceSpec;
  /** The copied key range: [key, rangeEnd), both base64 (etcd's conventions: rangeEnd "AA==" is "every key >= key"). */
  readonly range: { readonly key: string; readonly rangeEnd: string };
  /** The prefix given to `copy create`, base64, or null for every key. */
  readonly prefix: string | null;
  readonly phase: CopyPhase;
  /** Set while `phase` is `copying`. */
  readonly scan: ScanPosition | null;
  /** The source revision the target holds everything up to (0 until the first scan ends). */
  readonly appliedRevision: number;
  /** The latest source revision the copier has heard of (a watch header or progress notification). */
  readonly sourceRevisionSeen: number;
  /** When the target last held everything up to `sourceRevisionSeen` (ms since the epoch); 0: never. */
  readonly caughtUpAtMs: number;
  /** Puts applied that carried an etcd lease (stratakv has no Lease API: the keys stay after the lease ends). */
  readonly leasedPuts: number;
  /** Scans after the first one, each caused by a source compaction. */
  readonly rescans: number;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
  /** Absent: `forward`. */
  readonly direction?: CopyDirection;
  /** A stratakv source: the source log index the target holds every command up to. */
  readonly appliedIndex?: number;
  /** A stratakv source: the highest commit index the source reported. */
  readonly commitIndexSeen?: number;
  /** A stratakv source: the index of the source's fence (a switch's mirrorBegin), once the copy reached it; nothing after it is replayed. */
  readonly sourceFencedAt?: number;
  /** A stratakv source: target views pinned at checkpoints for `copy verify` (newest last). */
  readonly verifyPins?: readonly VerifyPin[];
  /** The switch that made this cluster the mirror (or the source, when fenced): when and what. */
  readonly switchInfo?: SwitchInfo;
}

/** SwitchInfo records a switch on the states it wrote. */
export interface SwitchInfo {
  readonly switchId: string;
  readonly startedAtMs: number;
  /** The state the mirror held before `switching` (base64): an undone switch puts it back. */
  readonly previousState?: string;
  /** The revision both clusters held when the new primary became writable. */
  readonly revision?: number;
  readonly switchedAtMs?: number;
}

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder('utf-8', { fatal: true });

/** encodeCopyState lays the state out as UTF-8 JSON; INVALID_ARGUMENT past MIRROR_STATE_BYTES_MAX. */
export function encodeCopyState(state: CopyState): Uint8Array {
  const bytes = ENCODER.encode(JSON.stringify(state));
  // The target checks the same before proposing (src/storage's kv-validation); checking here
  // first says what made the state large.
  const footerBytes = bytes.byteLength <= MIRROR_STATE_FOOTER_BYTES_MAX ? bytes.byteLength : deflateRawSync(bytes).byteLength;
  if (bytes.byteLength > MIRROR_STATE_BYTES_MAX || footerBytes > MIRROR_STATE_FOOTER_BYTES_MAX) {
    throw new StrataError(
      ErrorCode.INVALID_ARGUMENT,
      `the copy state is ${bytes.byteLength} bytes (${footerBytes} deflated), over ${MIRROR_STATE_BYTES_MAX} (${MIRROR_STATE_FOOTER_BYTES_MAX} deflated): too many or too long source endpoints?`,
      { details: { stateBytes: bytes.byteLength, footerBytes } },
    );
  }
  return bytes;
}

/**
 * decodeCopyState reads a mirror state written by this copier. A state that is not one (another
 * tool's, or damaged) is CORRUPTION naming the field, never guessed at.
 */
export function decodeCopyState(bytes: Uint8Array): CopyState {
  let value: unknown;
  try {
    value = JSON.parse(DECODER.decode(bytes));
  } catch (error) {
    throw bad(`is not UTF-8 JSON (${(error as Error).message})`);
  }
  if (value === null || typeof value !== 'object') throw bad('is not an object');
  const state = value as Record<string, unknown>;
  if (state['format'] !== COPY_STATE_FORMAT) throw bad(`has format ${JSON.stringify(state['format'])}, not ${COPY_STATE_FORMAT}`);
  text(state, 'copyId');
  const source = state['source'] as Record<string, unknown> | null;
  if (source === null || typeof source !== 'object') throw bad('has no source');
  if (source['kind'] !== 'etcd' && source['kind'] !== 'stratakv') throw bad(`source.kind is ${JSON.stringify(source['kind'])}`);
  if (!Array.isArray(source['endpoints']) || !source['endpoints'].every((endpoint) => typeof endpoint === 'string')) throw bad('source.endpoints is not a list of strings');
  text(source, 'clusterId', 'source.');
  const range = state['range'] as Record<string, unknown> | null;
  if (range === null || typeof range !== 'object') throw bad('has no range');
  text(range, 'key', 'range.');
  text(range, 'rangeEnd', 'range.');
  if (state['prefix'] !== null && typeof state['prefix'] !== 'string') throw bad('prefix is neither null nor a string');
  if (!PHASES.has(state['phase'] as string)) throw bad(`phase is ${JSON.stringify(state['phase'])}`);
  for (const field of ['appliedRevision', 'sourceRevisionSeen', 'caughtUpAtMs', 'leasedPuts', 'rescans', 'createdAtMs', 'updatedAtMs']) count(state, field);
  for (const field of ['appliedIndex', 'commitIndexSeen', 'sourceFencedAt']) if (state[field] !== undefined) count(state, field);
  if (state['direction'] !== undefined && state['direction'] !== 'forward' && state['direction'] !== 'reverse') throw bad(`direction is ${JSON.stringify(state['direction'])}`);
  if (source['kind'] === 'stratakv' && state['appliedIndex'] === undefined) throw bad('has a stratakv source but no appliedIndex');
  if (state['verifyPins'] !== undefined) {
    if (!Array.isArray(state['verifyPins'])) throw bad('verifyPins is not a list');
    for (const pin of state['verifyPins'] as Record<string, unknown>[]) {
      if (pin === null || typeof pin !== 'object') throw bad('verifyPins holds a non-object');
      for (const field of ['sourceIndex', 'revision', 'atMs']) count(pin, field, 'verifyPins[].');
      text(pin, 'endpoint', 'verifyPins[].');
      text(pin, 'pinId', 'verifyPins[].');
    }
  }
  const switchInfo = state['switchInfo'] as Record<string, unknown> | undefined;
  if (switchInfo !== undefined) {
    if (switchInfo === null || typeof switchInfo !== 'object') throw bad('switchInfo is not an object');
    text(switchInfo, 'switchId', 'switchInfo.');
    count(switchInfo, 'startedAtMs', 'switchInfo.');
  }
  const scan = state['scan'] as Record<string, unknown> | null;
  if (state['phase'] === 'copying') {
    if (scan === null || typeof scan !== 'object') throw bad('phase copying has no scan');
    for (const field of ['revision', 'keysCopied', 'bytesCopied', 'keysTotal', 'startedAtMs']) count(scan, field, 'scan.');
    text(scan, 'nextKey', 'scan.');
    if (typeof scan['deleteMissing'] !== 'boolean') throw bad('scan.deleteMissing is not a boolean');
    const pin = scan['pin'] as Record<string, unknown> | undefined;
    if (pin !== undefined) {
      if (pin === null || typeof pin !== 'object') throw bad('scan.pin is not an object');
      text(pin, 'endpoint', 'scan.pin.');
      text(pin, 'pinId', 'scan.pin.');
      count(pin, 'index', 'scan.pin.');
      count(pin, 'revision', 'scan.pin.');
    } else if (source['kind'] === 'stratakv') {
      throw bad('scans a stratakv source without a pinned view');
    }
  } else if (scan !== null) {
    throw bad(`phase ${String(state['phase'])} has a scan`);
  }
  return value as CopyState;
}

const PHASES: ReadonlySet<string> = new Set<CopyPhase>(['copying', 'tailing', 'switching', 'fenced', 'completed']);

/** sameBytes compares two mirror states byte for byte (undefined: none). */
export function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function text(record: Record<string, unknown>, field: string, path = ''): void {
  if (typeof record[field] !== 'string') throw bad(`${path}${field} is not a string`);
}

function count(record: Record<string, unknown>, field: string, path = ''): void {
  const value = record[field];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw bad(`${path}${field} is not a non-negative integer`);
}

function bad(why: string): StrataError {
  return new StrataError(ErrorCode.CORRUPTION, `the target's mirror state ${why}: it was not written by this version of stratakv migrate copy`, {
    details: { check: 'copy-state' },
  });
}

/** isStateKey: the reverse copy's own state key (never copied as data in either direction's verify, nor written as an effect). */
export function isStateKey(key: Uint8Array): boolean {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).equals(REVERSE_STATE_KEY);
}

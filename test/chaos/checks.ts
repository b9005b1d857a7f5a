// The checks a chaos run ends with, beside the linearizability checker:
//
// Revisions (checkRevisions). Every acknowledged mutation that changed the store made a new
// store revision, and its answer's header carries it. So:
//   - no two acknowledged mutations share a revision;
//   - revisions follow real time: if mutation a was acknowledged before mutation b was
//     invoked, a's revision is lower ("revisions increase with commit order");
//   - a read that found value v (values are unique) found it at the mod revision of the
//     mutation that wrote v, when that mutation was acknowledged;
//   - a linearizable read answers at a header revision no older than any mutation acknowledged
//     before the read was invoked.
// Each violation is listed with both operations, so a report says what went wrong and where.
//
// Lost writes (checkAcknowledgedSurvive): after healing, a final linearizable read of each key
// is part of the history, so the checker itself proves that no acknowledged write was lost;
// this function adds a plain statement of it per key for the report.
import type { MutationRecord, ReadRecord } from './workload.ts';

/** VIOLATIONS_LISTED_MAX bounds how many violations a report lists (the count is exact). */
export const VIOLATIONS_LISTED_MAX = 20;

/** RevisionReport is checkRevisions' answer. */
export interface RevisionReport {
  readonly ok: boolean;
  readonly violations: number;
  readonly lines: readonly string[];
}

function describeMutation(mutation: MutationRecord): string {
  const what = mutation.value === null ? `delete ${mutation.key}` : `put ${mutation.key}=${mutation.value}`;
  return `client ${mutation.client} ${what} [${mutation.invokeMs.toFixed(0)}, ${mutation.returnMs.toFixed(0)}] ms rev ${mutation.revision}`;
}

/** checkRevisions runs the revision checks of the file comment. */
export function checkRevisions(mutations: readonly MutationRecord[], reads: readonly ReadRecord[], options: { readonly linearizableReads: boolean }): RevisionReport {
  const lines: string[] = [];
  let violations = 0;
  const note = (line: string): void => {
    violations += 1;
    if (lines.length < VIOLATIONS_LISTED_MAX) lines.push(line);
  };

  const byRevision = new Map<number, MutationRecord>();
  for (const mutation of mutations) {
    const other = byRevision.get(mutation.revision);
    if (other !== undefined) note(`two acknowledged mutations answered revision ${mutation.revision}: ${describeMutation(other)}; ${describeMutation(mutation)}`);
    else byRevision.set(mutation.revision, mutation);
  }

  // Real-time order: sort by return time; for each mutation b, every mutation acknowledged
  // before b's invocation must have a lower revision. Keep the highest revision among the
  // mutations returned so far (a sweep over return times), compared at each invocation.
  const byReturn = [...mutations].sort((a, b) => a.returnMs - b.returnMs);
  const byInvoke = [...mutations].sort((a, b) => a.invokeMs - b.invokeMs);
  let returned = 0;
  let highest: MutationRecord | undefined;
  for (const mutation of byInvoke) {
    while (returned < byReturn.length && (byReturn[returned]?.returnMs ?? Infinity) < mutation.invokeMs) {
      const done = byReturn[returned];
      if (done !== undefined && (highest === undefined || done.revision > highest.revision)) highest = done;
      returned += 1;
    }
    if (highest !== undefined && highest.revision >= mutation.revision) {
      note(`revision out of real-time order: ${describeMutation(highest)} was acknowledged before ${describeMutation(mutation)} was invoked`);
    }
  }

  const writerOf = new Map<string, MutationRecord>();
  for (const mutation of mutations) if (mutation.value !== null) writerOf.set(`${mutation.key}\u0000${mutation.value}`, mutation);
  for (const read of reads) {
    if (read.value === null) continue;
    const writer = writerOf.get(`${read.key}\u0000${read.value}`);
    if (writer !== undefined && writer.revision !== read.modRevision) {
      note(`client ${read.client} read ${read.key}=${read.value} at mod revision ${read.modRevision}, but ${describeMutation(writer)}`);
    }
  }

  if (options.linearizableReads) {
    const readsByInvoke = [...reads].sort((a, b) => a.invokeMs - b.invokeMs);
    let done = 0;
    let newest: MutationRecord | undefined;
    for (const read of readsByInvoke) {
      while (done < byReturn.length && (byReturn[done]?.returnMs ?? Infinity) < read.invokeMs) {
        const mutation = byReturn[done];
        if (mutation !== undefined && (newest === undefined || mutation.revision > newest.revision)) newest = mutation;
        done += 1;
      }
      if (newest !== undefined && read.headerRevision < newest.revision) {
        note(`stale read: client ${read.client} read ${read.key} at header revision ${read.headerRevision} [${read.invokeMs.toFixed(0)} ms], after ${describeMutation(newest)} was acknowledged`);
      }
    }
  }
  return { ok: violations === 0, violations, lines };
}

// The parts of `stratakv migrate copy` that move the writes: `switch` (to the mirror), `reverse`
// (back to the old source, after a switch) and `complete` (end the copy after a switch), and
// the Merkle `verify` of a copy from a stratakv source. cmd/copy-verb.ts parses the command
// line and calls these. Every form prints, last, the command to run next.

import {
  completeCopy,
  describePhase,
  mirrorTarget,
  stratakvSource,
  switchCopy,
  verifyLogCopy,
  type CopyTarget,
  type MerkleVerifyReport,
  type SwitchEvent,
  type SwitchResult,
} from '../src/migrate/copy/index.ts';
import type { MigrateIo } from './migrate-verb.ts';

/** runSwitch runs `copy switch` or `copy reverse`: the mirror at `mirrorEndpoints` takes the writes of `sourceEndpoints`. */
export async function runSwitch(
  sub: 'switch' | 'reverse',
  mirror: CopyTarget,
  mirrorEndpoints: readonly string[],
  sourceEndpoints: readonly string[],
  format: string,
  io: MigrateIo,
): Promise<number> {
  const source = stratakvSource(sourceEndpoints);
  const sourceTarget = mirrorTarget(sourceEndpoints);
  const mirrorLog = stratakvSource(mirrorEndpoints);
  try {
    const result = await switchCopy({
      mirror,
      mirrorLog,
      mirrorEndpoints,
      source,
      sourceTarget,
      sourceEndpoints,
      expect: sub,
      signal: io.signal ?? new AbortController().signal,
      onEvent: (event) => {
        if (format !== 'json') reportSwitchEvent(io, event);
      },
    });
    const resume = `stratakv migrate copy create --from stratakv://${mirrorEndpoints.join(',')} --to ${sourceEndpoints.join(',')}`;
    if (format === 'json') io.out(JSON.stringify({ ...switchJson(result), resumeReverse: resume, next: `stratakv migrate copy complete --to ${sourceEndpoints.join(',')}` }));
    else printSwitch(io, sub, result, mirrorEndpoints, sourceEndpoints, resume);
    return 0;
  } finally {
    source.close();
    sourceTarget.close();
    mirrorLog.close();
  }
}

/** runComplete runs `copy complete` on the old source (the reverse copy's mirror). */
export async function runComplete(target: CopyTarget, targetEndpoints: readonly string[], format: string, io: MigrateIo): Promise<number> {
  const state = await completeCopy(target, io.signal === undefined ? {} : { signal: io.signal });
  if (format === 'json') io.out(JSON.stringify({ result: 'completed', copyId: state.copyId, phase: state.phase, next: null }));
  else {
    io.out(`copy ${state.copyId} completed: ${targetEndpoints.join(',')} is ${describePhase(state)}; it stays read-only with the data it held at revision ${state.appliedRevision}+`);
    io.out('next: nothing; the old cluster can be shut down and its machines reused');
  }
  return 0;
}

/** runMerkleVerify runs `copy verify` for a copy of a stratakv source. */
export async function runMerkleVerify(target: CopyTarget, sourceEndpoints: readonly string[], format: string, io: MigrateIo, nextIfEqual: string, nextIfNot: string): Promise<number> {
  const source = stratakvSource(sourceEndpoints);
  try {
    const report = await verifyLogCopy({
      source,
      target,
      ...(io.signal === undefined ? {} : { signal: io.signal }),
      onProgress: (progress) => {
        if (format !== 'json' && io.isTerminal && progress.phase === 'waiting') io.err(`\rwaiting for the copier to replay checkpoint ${progress.sourceIndex ?? '?'} (at ${progress.appliedIndex ?? '?'})   `);
      },
    });
    if (format !== 'json' && io.isTerminal) io.err('\n');
    const nextCommand = report.equal ? nextIfEqual : nextIfNot;
    if (format === 'json') io.out(JSON.stringify({ ...merkleJson(report), next: nextCommand }));
    else printMerkle(io, report, nextCommand);
    return report.equal ? 0 : 1;
  } finally {
    source.close();
  }
}

function reportSwitchEvent(io: MigrateIo, event: SwitchEvent): void {
  switch (event.kind) {
    case 'taken-over':
      io.err(`${event.resumed ? 'resuming' : 'began'} switch ${event.switchId}: the copy is taken over (a running copier steps aside)\n`);
      return;
    case 'caught-up':
      io.err(`caught up to source index ${event.appliedIndex}; fencing the source\n`);
      return;
    case 'fenced':
      io.err('the source is fenced: it refuses writes from here on\n');
      return;
    case 'replayed-to-fence':
      io.err(`replayed every command up to the fence (index ${event.appliedIndex}, revision ${event.revision})\n`);
      return;
    case 'verified':
      io.err(`verified: ${event.equal ? 'equal' : 'NOT equal'} (${event.keyCount} keys, Merkle diff of values and revisions)\n`);
      return;
    case 'writable':
      io.err(`the new primary takes writes at revision ${event.revision}${event.writePauseMs >= 0 ? ` (writes paused ${event.writePauseMs.toFixed(0)} ms)` : ''}\n`);
      return;
    case 'reverse-ready':
      io.err(`reverse copy set up from index ${event.fromIndex}\n`);
      return;
    case 'undone':
      io.err(`switch undone: ${event.why}\n`);
      return;
    case 'copier':
      if (event.event.kind === 'retry') io.err(`retrying (${event.event.what}, attempt ${event.event.attempt}): ${event.event.error.message}\n`);
      return;
  }
}

function switchJson(result: SwitchResult): Record<string, unknown> {
  return {
    result: 'switched',
    switchId: result.switchId,
    revision: result.revision,
    writePauseMs: result.writePauseMs ?? null,
    verified: result.verify === undefined ? null : { equal: result.verify.equal, keyCount: result.verify.a.keyCount, revision: result.verify.a.revision },
    reverseFromIndex: result.reverseFromIndex,
    reverseCopyId: result.reverseState.copyId,
  };
}

function printSwitch(io: MigrateIo, sub: 'switch' | 'reverse', result: SwitchResult, mirrorEndpoints: readonly string[], sourceEndpoints: readonly string[], resume: string): void {
  io.out(`${sub === 'switch' ? 'switched' : 'reversed'}: ${mirrorEndpoints.join(',')} takes writes at revision ${result.revision}${result.writePauseMs === undefined ? '' : `; writes paused ${result.writePauseMs.toFixed(0)} ms`}`);
  if (result.verify !== undefined) io.out(`  verified equal at the fence: ${result.verify.a.keyCount} keys (values, create and mod revisions, versions, leases)`);
  io.out(`  ${sourceEndpoints.join(',')} is now a read-only mirror of it (reverse copy ${result.reverseState.copyId}, from index ${result.reverseFromIndex})`);
  io.out(`  keep the reverse copy running: ${resume}`);
  io.out(`  move back: stratakv migrate copy reverse --to ${sourceEndpoints.join(',')}`);
  io.out(`next: stratakv migrate copy complete --to ${sourceEndpoints.join(',')}`);
}

function merkleJson(report: MerkleVerifyReport): Record<string, unknown> {
  return {
    equal: report.equal,
    method: 'merkle',
    sourceIndex: report.sourceIndex,
    revision: report.revision,
    keyCount: report.keyCount,
    differencesCount: report.diff.differences.length,
    truncated: report.diff.truncated,
    differences: report.diff.differences.map((difference) => ({ key: Buffer.from(difference.key).toString('utf8'), kind: difference.kind })),
    inconsistencies: report.diff.inconsistencies.length,
    waitedSeconds: report.waitedSeconds,
    bytesSent: report.diff.stats.bytesSent,
    bytesReceived: report.diff.stats.bytesReceived,
  };
}

function printMerkle(io: MigrateIo, report: MerkleVerifyReport, nextCommand: string): void {
  io.out(`${report.equal ? 'equal' : 'NOT equal'}: ${report.keyCount} keys compared by Merkle diff at source index ${report.sourceIndex}, revision ${report.revision} (values, create and mod revisions, versions, leases)`);
  for (const difference of report.diff.differences) io.out(`  ${difference.kind.padEnd(9)} ${JSON.stringify(Buffer.from(difference.key).toString('utf8'))}`);
  if (report.diff.truncated) io.out('  ... and more');
  if (report.diff.inconsistencies.length > 0) io.out(`  ${report.diff.inconsistencies.length} inconsistencies (a member's digest disagrees with its data: run \`stratakv check\`)`);
  io.out(`  ${report.diff.stats.bytesSent + report.diff.stats.bytesReceived} bytes exchanged; waited ${report.waitedSeconds.toFixed(1)} s for the copier to reach the checkpoint`);
  io.out(`next: ${nextCommand}`);
}

// The parts of `stratakv migrate copy` that write etcd: `switch` of a copy of an etcd source
// (the operator moves the writers; a quiet window proves it), the reverse copy that keeps etcd
// following the new primary (`create --to etcd://…`), its `status` and `complete`, and
// `reverse --to etcd://…` (the writes back to etcd). cmd/copy-verb.ts parses the command line
// and calls these. Every form prints, last, the command to run next.

import { EtcdClient } from '../src/client/index.ts';
import {
  etcdSource,
  mirrorTarget,
  readReverseState,
  reverseEtcdCopy,
  runEtcdReverse,
  stratakvSource,
  switchEtcdCopy,
  logHoldConsumer,
  releaseLogHold,
  verifyEtcdReverse,
  REVERSE_STATE_KEY,
  encodeCopyState,
  type CopyTarget,
  type EtcdSwitchEvent,
  type EtcdSwitchResult,
  type ReverseEvent,
} from '../src/migrate/copy/index.ts';
import { ErrorCode, StrataError } from '../src/util/errors.ts';
import type { MigrateIo } from './migrate-verb.ts';
import { UsageError } from './serve-flags.ts';

// How often a running reverse copy prints a line.
const REPORT_INTERVAL_MS = 5_000;
const CALL_TIMEOUT_MS = 10_000;

/** EtcdSwitchFlags are `copy switch`'s flags for an etcd source. */
export interface EtcdSwitchFlags {
  readonly writersMoved: boolean;
  readonly quietMs?: number;
  readonly quietTimeoutMs?: number;
}

/** runEtcdSwitch runs `copy switch --to MIRROR` of a copy of an etcd source. */
export async function runEtcdSwitch(mirror: CopyTarget, mirrorEndpoints: readonly string[], etcdEndpoints: readonly string[], flags: EtcdSwitchFlags, format: string, io: MigrateIo): Promise<number> {
  const source = etcdSource(etcdEndpoints);
  const etcd = new EtcdClient({ endpoints: etcdEndpoints, timeoutMs: CALL_TIMEOUT_MS });
  const mirrorLog = stratakvSource(mirrorEndpoints);
  try {
    const result = await switchEtcdCopy({
      mirror,
      mirrorLog,
      mirrorEndpoints,
      source,
      etcd,
      sourceEndpoints: etcdEndpoints,
      ...(flags.quietMs === undefined ? {} : { quietMs: flags.quietMs }),
      ...(flags.quietTimeoutMs === undefined ? {} : { quietTimeoutMs: flags.quietTimeoutMs }),
      signal: io.signal ?? new AbortController().signal,
      confirmWritersMoved: async () => {
        if (flags.writersMoved) return;
        io.err(`move the writers to ${mirrorEndpoints.join(',')} now (they are refused there until the switch ends, and retry); then type "moved" and Enter\n`);
        for (let lines = 0; lines < 1_000; lines += 1) {
          const line = io.readLine === undefined ? undefined : await io.readLine();
          if (line === undefined) throw new StrataError(ErrorCode.CANCELED, 'the switch was not confirmed (the input ended): nothing was changed; run it again, or with --writers-moved');
          if (line.trim() === 'moved') return;
          io.err('type "moved" once the writers write to the new endpoints (Ctrl-C cancels; nothing was changed yet)\n');
        }
        throw new StrataError(ErrorCode.CANCELED, 'the switch was not confirmed');
      },
      onEvent: (event) => reportEvent(io, event, format),
    });
    const resume = `stratakv migrate copy create --from stratakv://${mirrorEndpoints.join(',')} --to etcd://${etcdEndpoints.join(',')}`;
    if (format === 'json') io.out(JSON.stringify({ ...resultJson('switched', result), resumeReverse: resume, next: resume }));
    else {
      io.out(`switched: ${mirrorEndpoints.join(',')} takes writes at revision ${result.revision}${result.writePauseMs === undefined ? '' : `; writes paused ${result.writePauseMs.toFixed(0)} ms from the confirmation`}`);
      if (result.verify !== undefined) io.out(`  verified equal: ${result.verify.keysCompared} keys before the writers moved, then the ${result.deltaKeys} keys etcd changed since (values, create and mod revisions, versions, leases)`);
      if (result.leasedKeys > 0) io.out(`  ${result.leasedKeys} keys carry an etcd lease: etcd deletes them when the lease expires (its keep-alives moved with the writers), and the reverse copy stops at that write outside it`);
      io.out(`  etcd keeps following it once the reverse copy runs (its state is etcd's key ${JSON.stringify(Buffer.from(REVERSE_STATE_KEY).toString('utf8'))})`);
      io.out(`  move back: stratakv migrate copy reverse --from stratakv://${mirrorEndpoints.join(',')} --to etcd://${etcdEndpoints.join(',')}`);
      io.out(`next: ${resume}`);
    }
    return 0;
  } finally {
    source.close();
    etcd.close();
    mirrorLog.close();
  }
}

/** runEtcdTarget runs `copy create|status|complete|reverse|verify --to etcd://…`: the reverse copy after an etcd switch. */
export async function runEtcdTarget(
  sub: 'create' | 'status' | 'verify' | 'switch' | 'reverse' | 'complete' | 'cancel',
  etcdEndpoints: readonly string[],
  from: { readonly kind: 'etcd' | 'stratakv'; readonly endpoints: readonly string[] } | undefined,
  untilCaughtUp: boolean,
  format: string,
  io: MigrateIo,
): Promise<number> {
  if (from !== undefined && from.kind !== 'stratakv') throw new UsageError('--from', 'with --to etcd://…, --from is the stratakv cluster the writes were switched to (stratakv://HOST:PORT,...)');
  const etcd = new EtcdClient({ endpoints: etcdEndpoints, timeoutMs: CALL_TIMEOUT_MS });
  const to = `etcd://${etcdEndpoints.join(',')}`;
  try {
    const head = await readReverseState(etcd, io.signal);
    if (head === undefined) throw new StrataError(ErrorCode.MIRROR_CONFLICT, `${to} holds no reverse copy: \`copy switch\` of an etcd source sets one up`);
    const primaryEndpoints = from?.endpoints ?? head.state.source.endpoints;
    const fromUrl = `stratakv://${primaryEndpoints.join(',')}`;
    const signal = io.signal ?? new AbortController().signal;
    switch (sub) {
      case 'create': {
        const log = stratakvSource(primaryEndpoints);
        let lastReport = 0;
        try {
          const result = await runEtcdReverse({
            log,
            etcd,
            signal,
            stopWhenCaughtUp: untilCaughtUp,
            onEvent: (event) => {
              if (format === 'json') return;
              if (event.kind === 'loaded') io.err(`reverse copy: loaded ${event.keys} keys of etcd at revision ${event.revision} in ${event.ms.toFixed(0)} ms; following ${fromUrl} from index ${event.fromIndex}\n`);
              else if (event.kind === 'retry') io.err(`retrying (${event.what}, attempt ${event.attempt}): ${event.error.message}\n`);
              else if (event.kind === 'applied' && performance.now() - lastReport > REPORT_INTERVAL_MS) {
                lastReport = performance.now();
                io.err(`reverse copy: index ${event.state.appliedIndex ?? 0}, revision ${event.state.appliedRevision} (${event.txns} etcd txns)\n`);
              }
            },
          });
          // completed: `copy reverse` moved the writes back and the forward copy resumes from etcd.
          const nextCommand =
            result.reason === 'source-fenced'
              ? `stratakv migrate copy reverse --from ${fromUrl} --to ${to}`
              : result.reason === 'completed'
                ? `stratakv migrate copy create --from ${to} --to ${primaryEndpoints.join(',')}`
                : `stratakv migrate copy create --from ${fromUrl} --to ${to}`;
          if (format === 'json') io.out(JSON.stringify({ result: result.reason, state: result.state, etcdRevision: result.etcdRevision, next: nextCommand }));
          else {
            io.out(`reverse copy ${result.state.copyId}: ${result.reason} at index ${result.state.appliedIndex ?? 0}, revision ${result.state.appliedRevision} (etcd at ${result.etcdRevision})`);
            io.out(`next: ${nextCommand}`);
          }
          return 0;
        } finally {
          log.close();
        }
      }
      case 'status': {
        const log = stratakvSource(primaryEndpoints);
        try {
          const primary = await log.head(signal).catch((error: unknown) => error as Error);
          const exact = head.etcdRevision === head.stateModRevision;
          const json = {
            copyId: head.state.copyId,
            phase: head.state.phase,
            direction: 'reverse',
            source: head.state.source,
            appliedIndex: head.state.appliedIndex ?? null,
            appliedRevision: head.state.appliedRevision,
            etcdRevision: head.etcdRevision,
            sourceRevision: primary instanceof Error ? null : primary.revision,
            sourceIndex: primary instanceof Error ? null : primary.index,
            lagRevisions: primary instanceof Error ? null : Math.max(0, primary.revision - head.state.appliedRevision),
            // Caught up (nothing to copy): no lag; else the time since the last write it copied.
            lagSeconds: !(primary instanceof Error) && primary.revision <= head.state.appliedRevision ? 0 : (Date.now() - head.state.updatedAtMs) / 1000,
            exactRevisions: exact,
            sourceError: primary instanceof Error ? primary.message : null,
          };
          const nextCommand = head.state.phase === 'completed' ? null : `stratakv migrate copy reverse --from ${fromUrl} --to ${to}`;
          if (format === 'json') io.out(JSON.stringify({ ...json, next: nextCommand }));
          else {
            io.out(`reverse copy ${head.state.copyId} from ${fromUrl} (cluster ${head.state.source.clusterId}) into ${to}: ${head.state.phase}`);
            io.out(`  applied up to index ${json.appliedIndex ?? '?'}, revision ${json.appliedRevision}; etcd at revision ${head.etcdRevision}${exact ? '' : ' (etcd was written outside the reverse copy: revisions no longer match)'}`);
            if (primary instanceof Error) io.out(`  the new primary did not answer: ${primary.message}`);
            else io.out(`  lag: ${json.lagRevisions} revisions, ${json.lagSeconds.toFixed(1)} s (the new primary at revision ${primary.revision}, index ${primary.index})`);
            io.out(`next: ${nextCommand ?? 'nothing'}`);
          }
          return 0;
        } finally {
          log.close();
        }
      }
      case 'complete': {
        if (head.state.phase !== 'completed') {
          const done = { ...head.state, phase: 'completed' as const, updatedAtMs: Date.now() };
          const answer = await etcd.txn(
            { type: 'txn', compare: [{ target: 'modRevision', result: 'equal', key: REVERSE_STATE_KEY, number: head.stateModRevision }], success: [{ type: 'put', key: REVERSE_STATE_KEY, value: encodeCopyState(done) }], failure: [] },
            { signal },
          );
          if (!answer.succeeded) throw new StrataError(ErrorCode.MIRROR_CONFLICT, 'the reverse copy state changed meanwhile (a reverse copier is running? stop it first)');
        }
        // The new primary no longer keeps its log for this copy.
        const log = stratakvSource(primaryEndpoints);
        try {
          await releaseLogHold(log, logHoldConsumer('reverse-copy', head.state.copyId));
        } finally {
          log.close();
        }
        if (format === 'json') io.out(JSON.stringify({ result: 'completed', copyId: head.state.copyId, phase: 'completed', next: null }));
        else {
          io.out(`reverse copy ${head.state.copyId} completed: etcd no longer follows ${fromUrl}`);
          io.out('next: nothing; etcd can be shut down and its machines reused');
        }
        return 0;
      }
      case 'reverse': {
        const primary = mirrorTarget(primaryEndpoints);
        const primaryLog = stratakvSource(primaryEndpoints);
        const source = etcdSource(etcdEndpoints);
        try {
          const result = await reverseEtcdCopy({ primary, primaryLog, primaryEndpoints, source, etcd, sourceEndpoints: etcdEndpoints, signal, onEvent: (event) => reportEvent(io, event, format) });
          const resume = `stratakv migrate copy create --from ${to} --to ${primaryEndpoints.join(',')}`;
          if (format === 'json') io.out(JSON.stringify({ ...resultJson('reversed', result), resumeForward: resume, next: resume }));
          else {
            io.out(`reversed: etcd takes the writes again at revision ${result.revision}${result.writePauseMs === undefined ? '' : `; ${primaryEndpoints.join(',')} refused writes for ${result.writePauseMs.toFixed(0)} ms`}: move the writers back to ${etcdEndpoints.join(',')}`);
            io.out(`  ${primaryEndpoints.join(',')} is etcd's read-only mirror again, following it from revision ${result.revision} (no scan: the revisions are equal)`);
            io.out(`next: ${resume}`);
          }
          return 0;
        } finally {
          primary.close();
          primaryLog.close();
          source.close();
        }
      }
      case 'verify': {
        const primaryLog = stratakvSource(primaryEndpoints);
        try {
          const report = await verifyEtcdReverse({ primaryLog, etcd, signal });
          const nextCommand = report.equal ? `stratakv migrate copy reverse --from ${fromUrl} --to ${to}` : `stratakv migrate copy status --to ${to}`;
          if (format === 'json') {
            io.out(
              JSON.stringify({
                equal: report.equal,
                revision: report.revision,
                keysCompared: report.keysCompared,
                differencesCount: report.differences.length,
                differences: report.differences.map((difference) => ({ key: Buffer.from(difference.key).toString('utf8'), kind: difference.kind, fields: difference.fields })),
                next: nextCommand,
              }),
            );
          } else {
            io.out(`${report.equal ? 'equal' : 'NOT equal'}: ${report.keysCompared} keys of a pinned view of ${fromUrl} compared with etcd at revision ${report.revision} (values, create and mod revisions, versions, leases)`);
            for (const difference of report.differences) io.out(`  ${difference.kind.padEnd(9)} ${JSON.stringify(Buffer.from(difference.key).toString('utf8'))}${difference.fields.length > 0 ? `: ${difference.fields.join(', ')}` : ''}`);
            io.out(`next: ${nextCommand}`);
          }
          return report.equal ? 0 : 1;
        } finally {
          primaryLog.close();
        }
      }
      default:
        throw new UsageError('--to', `copy ${sub} does not take an etcd cluster as --to (the reverse copy's are create, status, verify, reverse and complete)`);
    }
  } finally {
    etcd.close();
  }
}

function resultJson(result: string, switched: EtcdSwitchResult): Record<string, unknown> {
  return {
    result,
    switchId: switched.switchId,
    revision: switched.revision,
    writePauseMs: switched.writePauseMs ?? null,
    verified: switched.verify === undefined ? null : { equal: switched.verify.equal, keysCompared: switched.verify.keysCompared },
    deltaKeys: switched.deltaKeys,
    leasedKeys: switched.leasedKeys,
    copyId: switched.state.copyId,
    steps: switched.steps,
    passes: switched.passes,
  };
}

function reportEvent(io: MigrateIo, event: EtcdSwitchEvent, format: string): void {
  // The prompt is the operator's cue: it goes to stderr in every format (confirmWritersMoved).
  if (format === 'json' && event.kind !== 'undone') return;
  switch (event.kind) {
    case 'verified':
      io.err(`verified: ${event.equal ? 'equal' : 'NOT equal'} (${event.keysCompared} keys, up to revision ${event.revision}, ${(event.ms / 1000).toFixed(1)} s)\n`);
      return;
    case 'quiet':
      io.err(`etcd is quiet at revision ${event.revision} (waited ${event.waitedMs.toFixed(0)} ms)\n`);
      return;
    case 'taken-over':
      io.err(`${event.resumed ? 'resuming' : 'began'} switch ${event.switchId}\n`);
      return;
    case 'caught-up':
      io.err(`caught up at revision ${event.revision}\n`);
      return;
    case 'fenced':
      io.err('the new primary is fenced: it refuses writes from here on\n');
      return;
    case 'delta-verified':
      io.err(`verified again: ${event.equal ? 'equal' : 'NOT equal'} (${event.full ? `every key, ${event.keysCompared}` : `the ${event.keysCompared} keys changed after revision ${event.fromRevision}`}, at revision ${event.revision})\n`);
      return;
    case 'writable':
      io.err(`writes go on at revision ${event.revision}${event.writePauseMs >= 0 ? ` (paused ${event.writePauseMs.toFixed(0)} ms)` : ''}\n`);
      return;
    case 'undone':
      io.err(`undone: ${event.why}\n`);
      return;
    case 'reverse':
      reportReverse(io, event.event);
      return;
    case 'copier':
      if (event.event.kind === 'retry') io.err(`retrying (${event.event.what}, attempt ${event.event.attempt}): ${event.event.error.message}\n`);
      return;
    default:
      return;
  }
}

function reportReverse(io: MigrateIo, event: ReverseEvent): void {
  if (event.kind === 'retry') io.err(`retrying (${event.what}, attempt ${event.attempt}): ${event.error.message}\n`);
  else if (event.kind === 'loaded') io.err(`reverse copy: loaded ${event.keys} keys at revision ${event.revision}\n`);
}

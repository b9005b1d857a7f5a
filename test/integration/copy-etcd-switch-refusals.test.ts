// What the switch of an etcd source refuses, and what it survives, with a real etcd (Debian's
// 3.4) and a real stratakv member, the switch run in-process (switchEtcdCopy) so that the test
// can act between its steps:
//   - etcd never goes quiet (its writers did not move): refused, nothing changed;
//   - a write reaches etcd right after the quiet window: the switch is undone, the copy follows
//     etcd again, and the write is copied (not lost);
//   - the mirror differs from etcd: refused before anything changes;
//   - a switch stopped after it took the copy over, run again while etcd is still written,
//     hands the copy back to its copier;
//   - a switch stopped after it wrote the reverse copy's state finishes when run again;
//   - the reverse copy writes a command that changed more keys than one etcd Txn takes (a
//     DeleteRange of 300 keys) as the operation it was, keeping the revisions equal;
//   - etcd written outside the reverse copy: the reverse copy and `copy reverse` refuse to go on.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { EtcdClient } from '../../src/client/index.ts';
import {
  decodeCopyState,
  encodeCopyState,
  EtcdReverse,
  etcdSource,
  mirrorTarget,
  readReverseState,
  REVERSE_STATE_KEY,
  reverseEtcdCopy,
  runCopy,
  runEtcdReverse,
  stratakvSource,
  switchEtcdCopy,
  type CopySource,
  type CopyTarget,
  type EtcdSwitchEvent,
  type LogCopySource,
} from '../../src/migrate/copy/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { etcdSkipReason, startEtcdCluster, type EtcdCluster } from '../client/etcd-process.ts';
import { TestCluster } from './cluster-process.ts';

const skip = etcdSkipReason() || false;

/** etcdProposals reads etcd_server_proposals_committed_total from the member's /metrics (its client URL). */
async function etcdProposals(endpoint: string): Promise<number> {
  const text = await (await fetch(`http://${endpoint.replace(/^https?:\/\//, '')}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith('etcd_server_proposals_committed_total '));
  assert.ok(line !== undefined, 'etcd serves etcd_server_proposals_committed_total');
  return Number(line.split(' ')[1]);
}
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('the switch of an etcd source: refusals and resumes', { skip }, () => {
  let etcdCluster: EtcdCluster;
  let cluster: TestCluster;
  let etcd: EtcdClient;
  let source: CopySource;
  let mirror: CopyTarget;
  let mirrorLog: LogCopySource;
  let primary: EtcdClient;

  before(async () => {
    etcdCluster = await startEtcdCluster(1);
    cluster = await TestCluster.start(1);
    await cluster.waitForLeader();
    etcd = new EtcdClient({ endpoints: etcdCluster.endpoints, timeoutMs: 10_000 });
    source = etcdSource(etcdCluster.endpoints);
    mirror = mirrorTarget(cluster.endpoints());
    mirrorLog = stratakvSource(cluster.endpoints());
    primary = new EtcdClient({ endpoints: cluster.endpoints(), timeoutMs: 10_000, mirrorReader: true });
    for (let at = 0; at < 500; at += 100) {
      const success = Array.from({ length: 100 }, (_, offset) => ({ type: 'put' as const, key: Buffer.from(`k/${String(at + offset).padStart(4, '0')}`), value: Buffer.from(`v${at + offset}`) }));
      await etcd.txn({ type: 'txn', compare: [], success, failure: [] });
    }
    const copied = await runCopy({ source, target: mirror, sourceKind: 'etcd', sourceEndpoints: etcdCluster.endpoints, signal: new AbortController().signal, stopWhenCaughtUp: true });
    assert.equal(copied.reason, 'caught-up');
  });
  after(async () => {
    primary?.close();
    mirrorLog?.close();
    mirror?.close();
    source?.close();
    etcd?.close();
    await cluster?.stop();
    await etcdCluster?.stop();
  });

  const switchOptions = (extra: { readonly onEvent?: (event: EtcdSwitchEvent) => void; readonly signal?: AbortSignal; readonly quietTimeoutMs?: number } = {}) => ({
    mirror,
    mirrorLog,
    mirrorEndpoints: cluster.endpoints(),
    source,
    etcd,
    sourceEndpoints: etcdCluster.endpoints,
    confirmWritersMoved: async () => undefined,
    quietMs: 300,
    signal: extra.signal ?? new AbortController().signal,
    ...(extra.quietTimeoutMs === undefined ? {} : { quietTimeoutMs: extra.quietTimeoutMs }),
    ...(extra.onEvent === undefined ? {} : { onEvent: extra.onEvent }),
  });

  const phase = async (): Promise<string | undefined> => {
    const view = await mirror.read();
    return view.state === undefined ? undefined : decodeCopyState(view.state).phase;
  };

  test('etcd never goes quiet: refused after the timeout, nothing changed', async () => {
    let writing = true;
    const writer = (async () => {
      for (let count = 0; writing && count < 200; count += 1) {
        await etcd.put('k/busy', `b${count}`);
        await sleep(100);
      }
    })();
    try {
      await assert.rejects(switchEtcdCopy(switchOptions({ quietTimeoutMs: 1_500 })), (error: unknown) => isStrataError(error, ErrorCode.UNAVAILABLE) && /still write/.test((error as Error).message));
    } finally {
      writing = false;
      await writer;
    }
    assert.equal(await phase(), 'tailing');
    assert.equal(await readReverseState(etcd), undefined, 'no reverse copy state in etcd');
    await assert.rejects(primary.put('k/x', 'refused'), (error: unknown) => isStrataError(error, ErrorCode.MIRROR_READ_ONLY));
  });

  test('a write to etcd right after the quiet window undoes the switch, and is copied', async () => {
    let late: Promise<unknown> | undefined;
    await assert.rejects(
      switchEtcdCopy(
        switchOptions({
          onEvent: (event) => {
            if (event.kind === 'quiet') late ??= etcd.put('k/late', 'written after the quiet window');
          },
        }),
      ),
      (error: unknown) => isStrataError(error, ErrorCode.MIRROR_CONFLICT) && /undone/.test((error as Error).message),
    );
    await late;
    assert.equal(await phase(), 'tailing', 'the copy follows etcd again');
    const caught = await runCopy({ source, target: mirror, sourceKind: 'etcd', sourceEndpoints: etcdCluster.endpoints, signal: new AbortController().signal, stopWhenCaughtUp: true });
    assert.equal(caught.reason, 'caught-up');
    const copied = await primary.get('k/late', { serializable: true });
    assert.equal(Buffer.from(copied.kvs[0]?.value ?? new Uint8Array()).toString(), 'written after the quiet window');
  });

  test('a mirror that differs from etcd is refused before anything changes', async () => {
    const view = await mirror.read();
    assert.ok(view.state !== undefined);
    const kept = await primary.get('k/0001', { serializable: true });
    const original = kept.kvs[0];
    assert.ok(original !== undefined);
    // Damage one key on the mirror, as a faulty copier would.
    await mirror.mirror({ type: 'mirrorApply', expectState: view.state, state: view.state, revision: view.revision, puts: [{ ...original, value: Buffer.from('damaged') }], deletes: [] });
    await assert.rejects(switchEtcdCopy(switchOptions()), (error: unknown) => isStrataError(error, ErrorCode.MIRROR_CONFLICT) && /differs/.test((error as Error).message));
    assert.equal(await phase(), 'tailing');
    assert.equal(await readReverseState(etcd), undefined);
    // Repair it, as a re-run copier would not (the key did not change on etcd): put it back by hand.
    const again = await mirror.read();
    assert.ok(again.state !== undefined);
    await mirror.mirror({ type: 'mirrorApply', expectState: again.state, state: again.state, revision: again.revision, puts: [original], deletes: [] });
  });

  test('a switch stopped after it took the copy over, run again while etcd is written, hands the copy back', async () => {
    const stop = new AbortController();
    await assert.rejects(
      switchEtcdCopy(
        switchOptions({
          signal: stop.signal,
          onEvent: (event) => {
            if (event.kind === 'taken-over') stop.abort();
          },
        }),
      ),
    );
    assert.equal(await phase(), 'switching');
    let writing = true;
    const writer = (async () => {
      for (let count = 0; writing && count < 200; count += 1) {
        await etcd.put('k/busy', `again ${count}`);
        await sleep(100);
      }
    })();
    try {
      await assert.rejects(switchEtcdCopy(switchOptions({ quietTimeoutMs: 1_500 })), (error: unknown) => isStrataError(error, ErrorCode.UNAVAILABLE));
    } finally {
      writing = false;
      await writer;
    }
    assert.equal(await phase(), 'tailing', 'the copy is its copier\'s again');
    const caught = await runCopy({ source, target: mirror, sourceKind: 'etcd', sourceEndpoints: etcdCluster.endpoints, signal: new AbortController().signal, stopWhenCaughtUp: true });
    assert.equal(caught.reason, 'caught-up');
  });

  test('a switch stopped after it wrote the reverse copy state finishes when run again', async () => {
    const stop = new AbortController();
    await assert.rejects(
      switchEtcdCopy(
        switchOptions({
          signal: stop.signal,
          onEvent: (event) => {
            if (event.kind === 'state-written') stop.abort();
          },
        }),
      ),
    );
    assert.equal(await phase(), 'switching');
    const reverse = await readReverseState(etcd);
    assert.equal(reverse?.state.phase, 'fenced');
    const finished = await switchEtcdCopy(switchOptions());
    assert.equal(finished.revision, reverse?.stateModRevision);
    assert.equal(await phase(), undefined, 'the new primary takes writes');
    await primary.put('k/after-switch', 'on stratakv');
  });

  test('the reverse copy writes a DeleteRange of 300 keys as one etcd revision; revisions stay equal', async () => {
    for (let at = 0; at < 300; at += 100) {
      const success = Array.from({ length: 100 }, (_, offset) => ({ type: 'put' as const, key: Buffer.from(`wide/${String(at + offset).padStart(4, '0')}`), value: Buffer.from('w') }));
      await primary.txn({ type: 'txn', compare: [], success, failure: [] });
    }
    const deleted = await primary.delete('wide/', { prefix: true });
    assert.equal(deleted.deleted, 300);
    await primary.put('k/last', 'last');
    const reversed = await runEtcdReverse({ log: mirrorLog, etcd, signal: new AbortController().signal, stopWhenCaughtUp: true });
    assert.equal(reversed.reason, 'caught-up');
    const ours = await primary.get('k/', { prefix: true });
    const theirs = await etcd.get('k/', { prefix: true });
    assert.equal(theirs.header.revision, ours.header.revision, 'etcd at the new primary\'s revision');
    assert.deepEqual(theirs.kvs, ours.kvs, 'every key and counter equal');
    assert.equal((await etcd.get('wide/', { prefix: true, countOnly: true })).count, 0);
  });

  test('a reverse copier behind another one applies what that one wrote to its replica and sends etcd nothing for it', async () => {
    // Two copiers of one reverse copy (`copy reverse` next to a running `copy create`): the one
    // behind must not send Txns the other already landed (each refused one is a Raft proposal).
    const behind = await EtcdReverse.open({ log: mirrorLog, etcd, signal: new AbortController().signal });
    assert.ok(behind instanceof EtcdReverse);
    try {
      for (let at = 0; at < 200; at += 1) await primary.put(`k/two-copiers/${String(at).padStart(3, '0')}`, `v${at}`);
      assert.equal((await runEtcdReverse({ log: mirrorLog, etcd, signal: new AbortController().signal, stopWhenCaughtUp: true })).reason, 'caught-up');
      const proposalsBefore = await etcdProposals(etcdCluster.endpoints[0] ?? '');
      const caughtUp = await behind.run({ stopWhenCaughtUp: true });
      const proposalsAfter = await etcdProposals(etcdCluster.endpoints[0] ?? '');
      assert.equal(caughtUp.reason, 'caught-up');
      const head = await readReverseState(etcd);
      assert.equal(caughtUp.state.appliedIndex, head?.state.appliedIndex, 'the one behind took the other\'s position');
      assert.ok(proposalsAfter - proposalsBefore <= 5, `etcd proposals while the copier behind caught up: ${proposalsAfter - proposalsBefore}`);
      // And it goes on from there with Txns of its own.
      await primary.put('k/two-copiers/after', 'written by the one that was behind');
      assert.equal((await behind.run({ stopWhenCaughtUp: true })).reason, 'caught-up');
      const ours = await primary.get('k/', { prefix: true });
      const theirs = await etcd.get('k/', { prefix: true });
      assert.equal(theirs.header.revision, ours.header.revision);
      assert.deepEqual(theirs.kvs, ours.kvs);
    } finally {
      await behind.close();
    }
  });

  test('`copy reverse` refuses to fence while the reverse copy is too far behind, and changes nothing', async () => {
    // The bound is set below any gap (-1): the refusal path, not the load that would reach it.
    await primary.put('k/before-refused-reverse', 'on stratakv');
    await assert.rejects(
      reverseEtcdCopy({ primary: mirror, primaryLog: mirrorLog, primaryEndpoints: cluster.endpoints(), source, etcd, sourceEndpoints: etcdCluster.endpoints, fenceBehindEntriesMax: -1, signal: new AbortController().signal }),
      (error: unknown) => isStrataError(error, ErrorCode.UNAVAILABLE) && /refused before the fence/.test((error as Error).message),
    );
    assert.equal(await phase(), undefined, 'not fenced: the new primary takes writes');
    await primary.put('k/after-refused-reverse', 'still on stratakv');
    const head = await readReverseState(etcd);
    assert.equal(head?.state.phase, 'tailing', 'the reverse copy goes on');
  });

  test('etcd written outside the reverse copy: the reverse copy and `copy reverse` refuse', async () => {
    await etcd.put('k/stray', 'a writer that did not move');
    await primary.put('k/more', 'on stratakv');
    await assert.rejects(runEtcdReverse({ log: mirrorLog, etcd, signal: new AbortController().signal, stopWhenCaughtUp: true }), (error: unknown) => isStrataError(error, ErrorCode.MIRROR_CONFLICT) && /outside the reverse copy/.test((error as Error).message));
    await assert.rejects(
      reverseEtcdCopy({ primary: mirror, primaryLog: mirrorLog, primaryEndpoints: cluster.endpoints(), source, etcd, sourceEndpoints: etcdCluster.endpoints, signal: new AbortController().signal }),
      (error: unknown) => isStrataError(error, ErrorCode.MIRROR_CONFLICT) && /outside the reverse copy/.test((error as Error).message),
    );
    assert.equal(await phase(), undefined, 'the new primary still takes writes');
    // `copy complete` ends the reverse copy (what the CLI does).
    const head = await readReverseState(etcd);
    assert.ok(head !== undefined);
    const done = await etcd.txn({
      type: 'txn',
      compare: [{ target: 'modRevision', result: 'equal', key: REVERSE_STATE_KEY, number: head.stateModRevision }],
      success: [{ type: 'put', key: REVERSE_STATE_KEY, value: encodeCopyState({ ...head.state, phase: 'completed' }) }],
      failure: [],
    });
    assert.equal(done.succeeded, true);
    assert.equal((await runEtcdReverse({ log: mirrorLog, etcd, signal: new AbortController().signal, stopWhenCaughtUp: true })).reason, 'completed');
  });
});

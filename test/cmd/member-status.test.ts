// What the status page says about a migration: a `stratakv migrate` journal record (its step,
// the step names, done or running) and a copy's state in mirror mode (phase, keys or revisions).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { copyView, describeMigration } from '../../cmd/member-status.ts';
import { encodeCopyState, type CopyState } from '../../src/migrate/copy/index.ts';
import { COPYING_STATE } from '../migrate/copy/copy-state-fixture.ts';
import { encodeRecord, MOVE_STEPS, RECORD_FORMAT, type MigrationRecord } from '../../src/migrate/index.ts';

const RECORD: MigrationRecord = {
  format: RECORD_FORMAT,
  id: 'a1b2c3',
  kind: 'move',
  from: [{ name: 'n1', peerUrls: ['http://a:2380'], id: 1, zone: 'a' }],
  to: [{ name: 'b1', peerUrls: ['http://b:2380'], id: 0, zone: 'b' }],
  next: 'swap-voters',
  startedAtMs: 1_700_000_000_000,
  updatedAtMs: 1_700_000_060_000,
  log: [{ step: 'verify-before', startedAtMs: 1_700_000_050_000, doneAtMs: 1_700_000_060_000, detail: 'equal at index 120' }],
};

test('a move\'s journal record shows its step of eight, the names, and the last step\'s detail', () => {
  const view = describeMigration(encodeRecord(RECORD));
  assert.deepEqual(view, {
    id: 'a1b2c3',
    kind: 'move',
    state: 'running',
    phase: 'swap-voters',
    step: 4,
    steps: 8,
    stepNames: [...MOVE_STEPS],
    progress: { done: 3, total: 8, unit: 'steps' },
    detail: 'verify-before: equal at index 120',
    startedAt: '2023-11-14T22:13:20.000Z',
    updatedAt: '2023-11-14T22:14:20.000Z',
  });
  assert.equal(describeMigration(encodeRecord({ ...RECORD, next: undefined }))?.state, 'done');
  assert.equal(describeMigration(encodeRecord({ ...RECORD, rollbackOf: 'zz' }))?.kind, 'move back');
  assert.equal(describeMigration('not json'), undefined, 'an unreadable record shows no migration rather than failing the page');
});

test('a copy target shows the copy\'s phase, and keys copied or revisions applied', () => {
  const copying: CopyState = {
    ...COPYING_STATE,
    source: { ...COPYING_STATE.source, endpoints: ['127.0.0.1:2379'] },
    scan: { ...(COPYING_STATE.scan as NonNullable<CopyState['scan']>), keysCopied: 700, keysTotal: 1_000 },
  };
  const first = copyView(encodeCopyState(copying));
  assert.equal(first?.phase, 'copying');
  assert.equal(first?.step, 1);
  assert.deepEqual(first?.progress, { done: 700, total: 1_000, unit: 'keys' });
  assert.match(first?.kind ?? '', /^copy forward from etcd 127\.0\.0\.1:2379/);
  const tailing = copyView(encodeCopyState({ ...copying, phase: 'tailing', scan: null, appliedRevision: 40, sourceRevisionSeen: 45 }));
  assert.equal(tailing?.step, 2);
  assert.deepEqual(tailing?.progress, { done: 40, total: 45, unit: 'source revisions' });
  assert.equal(copyView(encodeCopyState({ ...copying, phase: 'completed', scan: null }))?.state, 'done');
  assert.equal(copyView(new TextEncoder().encode('{')), undefined);
});

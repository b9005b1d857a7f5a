// The copy state kept in the target: it round-trips, refuses what another writer (or damage)
// left with CORRUPTION naming the field, and stays within what a snapshot footer can carry.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { prefixEnd } from '../../../src/client/index.ts';
import { COPY_STATE_FORMAT, decodeCopyState, encodeCopyState, keyAfter, type CopyState } from '../../../src/migrate/copy/index.ts';
import { ErrorCode, isStrataError } from '../../../src/util/errors.ts';

const STATE: CopyState = {
  format: COPY_STATE_FORMAT,
  copyId: '0123456789abcdef',
  source: { kind: 'etcd', endpoints: ['127.0.0.1:2379', '127.0.0.1:22379'], clusterId: 'cdf818194e3a8c32' },
  range: { key: Buffer.from('k/').toString('base64'), rangeEnd: Buffer.from('k0').toString('base64') },
  prefix: Buffer.from('k/').toString('base64'),
  phase: 'copying',
  scan: { revision: 42, nextKey: Buffer.from('k/0007').toString('base64'), keysCopied: 7, bytesCopied: 700, keysTotal: 100, deleteMissing: false, startedAtMs: 1_700_000_000_000 },
  appliedRevision: 0,
  sourceRevisionSeen: 42,
  caughtUpAtMs: 0,
  leasedPuts: 0,
  rescans: 0,
  createdAtMs: 1_700_000_000_000,
  updatedAtMs: 1_700_000_000_100,
};

test('a copy state round-trips', () => {
  assert.deepEqual(decodeCopyState(encodeCopyState(STATE)), STATE);
  const tailing: CopyState = { ...STATE, phase: 'tailing', scan: null, appliedRevision: 42 };
  assert.deepEqual(decodeCopyState(encodeCopyState(tailing)), tailing);
});

test('a state this copier did not write is CORRUPTION naming what is wrong', () => {
  const cases: [unknown, RegExp][] = [
    ['not json', /not UTF-8 JSON/],
    [{ ...STATE, format: 2 }, /format 2/],
    [{ ...STATE, phase: 'switching' }, /phase/],
    [{ ...STATE, scan: null }, /phase copying has no scan/],
    [{ ...STATE, appliedRevision: -1 }, /appliedRevision/],
    [{ ...STATE, source: { ...STATE.source, kind: 'zookeeper' } }, /source.kind/],
    [{ ...STATE, scan: { ...STATE.scan, nextKey: 7 } }, /scan.nextKey/],
  ];
  for (const [value, message] of cases) {
    const bytes = Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
    assert.throws(() => decodeCopyState(bytes), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION) && message.test(error.message), String(message));
  }
});

test('a state that would not fit a snapshot footer is refused before it is sent', () => {
  // Random names: the state is deflated, and repeated text would fit.
  const endpoints = Array.from({ length: 16 }, () => `${randomBytes(60).toString('hex')}.example:2379`);
  assert.throws(
    () => encodeCopyState({ ...STATE, source: { ...STATE.source, endpoints } }),
    (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && /deflated/.test(error.message),
  );
});

test('prefixEnd and keyAfter follow etcd and never change their argument', () => {
  const prefix = Buffer.from('a/');
  assert.deepEqual(Buffer.from(prefixEnd(prefix)), Buffer.from('a0'));
  assert.deepEqual(prefix, Buffer.from('a/'), 'the prefix is not changed (Buffer.slice shares memory)');
  assert.deepEqual(Buffer.from(prefixEnd(Uint8Array.of(0x61, 0xff))), Buffer.from([0x62]));
  assert.deepEqual(Buffer.from(prefixEnd(Uint8Array.of(0xff, 0xff))), Buffer.from([0]));
  assert.deepEqual(Buffer.from(keyAfter(Buffer.from('k'))), Buffer.from([0x6b, 0]));
});

// The copy state kept in the target: it round-trips, refuses what another writer (or damage)
// left with CORRUPTION naming the field, and stays within what a snapshot footer can carry.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { prefixEnd } from '../../../src/client/index.ts';
import { decodeCopyState, encodeCopyState, keyAfter, type CopyState } from '../../../src/migrate/copy/index.ts';
import { ErrorCode, isStrataError } from '../../../src/util/errors.ts';
import { COPYING_STATE } from './copy-state-fixture.ts';

const STATE: CopyState = COPYING_STATE;

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

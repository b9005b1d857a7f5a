// A copy state in its scan (a prefix copy from etcd), for the tests that read one.

import { COPY_STATE_FORMAT, type CopyState } from '../../../src/migrate/copy/index.ts';

/** COPYING_STATE is a copy 7 keys into scanning 100 under k/ from a 2-endpoint etcd. */
export const COPYING_STATE: CopyState = {
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

// The migration journal's write checks: a record over the byte bound, or one that would not fit
// in a snapshot's member table once deflated, is refused before it is proposed — with a clear
// error, instead of a journal that makes every later snapshot fail (the chaos harness, seed 2:
// "snapshot metadata: members must be at most 2048 bytes" after every finished migration).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';

import { JOURNAL_RECORD_BYTES_MAX, JOURNAL_RECORD_DEFLATED_BYTES_MAX, checkJournalWrite } from '../../src/node/migration-journal.ts';
import { encodeMembershipState } from '../../src/node/snapshot-descriptor.ts';
import { SNAPSHOT_MEMBERS_BYTES_MAX, encodeSnapshot, verifySnapshotBytes } from '../../src/snapshot/snapshot-format.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';

// The record a finished 3-to-3 move left in the chaos run of seed 2 (migrate-3-2.log), 1.9 KB.
const FINISHED_MOVE = JSON.stringify({
  format: 1,
  id: 'f2c9d57c3b7a0c75',
  kind: 'move',
  from: [1, 2, 3].map((n) => ({ name: `n${n}`, peerUrls: [`http://10.213.1.1:3738${n}`], id: 118366855172463 + n, zone: '' })),
  to: [4, 5, 6].map((n) => ({ name: `n${n}`, peerUrls: [`http://10.213.1.1:4012${n}`], id: 209607080554623 + n, zone: 'b' })),
  startedAtMs: 1796518027947,
  updatedAtMs: 1796518035156,
  log: [
    ['add-learners', 'added n4=bea2f394307f, n5=c204da16bb27, n6=9c038c230eb8'],
    ['catch-up', '3 learner(s) caught up in 1.5 s'],
    ['verify-before', '6 members agree at index 1787 (revision 1301, 14 keys, digest 70ffa2e50b397158f147e08842eade0c)'],
    ['swap-voters', 'entered the joint configuration: promoted bea2f394307f, c204da16bb27, 9c038c230eb8, demoted 6ba76e5b116f, 70ffd7fb8ef7, bba544a42d1e'],
    ['transfer-leader', 'leadership moved from n3 to n4 (round trip 44.6 ms)'],
    ['leave-joint', 'left the joint configuration'],
    ['remove-old', 'removed n1, n2, n3'],
    ['verify-after', '3 members agree at index 1912 (revision 1376, 17 keys, digest 33bc53a3a0d55c59d22a9a26c5a015b8)'],
  ].map(([step, detail], i) => ({ step, startedAtMs: 1796518028127 + i * 300, doneAtMs: 1796518028327 + i * 300, detail })),
});

describe('migration journal writes', () => {
  test('a finished move fits, and a snapshot carrying it with its member table can be written and read', () => {
    assert.doesNotThrow(() => checkJournalWrite(7, FINISHED_MOVE));
    const members = encodeMembershipState({
      members: [4, 5, 6].map((n) => ({ id: 209607080554623 + n, name: `n${n}`, peerUrls: [`http://10.213.1.1:4012${n}`], clientUrls: [`http://127.0.0.1:4400${n}`], isLearner: false, zone: 'b' })),
      removed: [118366855172464, 118366855172465, 118366855172466],
      published: [209607080554627, 209607080554628, 209607080554629],
      journal: { version: 9, record: FINISHED_MOVE },
    });
    assert.ok(members.byteLength > 2048, `the table is ${members.byteLength} bytes: more than the 2 KiB a footer used to take inline`);
    const bytes = encodeSnapshot(
      { metadata: { index: 1912, term: 4, confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }, revision: 1376, members }, createdAtMs: 1 },
      [],
    );
    assert.deepEqual(verifySnapshotBytes(bytes, 'after-migration.snap').metadata.members, new Uint8Array(members));
  });

  test('a record that would not fit in a snapshot is refused before it is proposed, saying why', () => {
    const incompressible = randomBytes(JOURNAL_RECORD_DEFLATED_BYTES_MAX).toString('base64');
    assert.throws(() => checkJournalWrite(1, incompressible), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && /deflated, more than the 2048 a snapshot's member table can carry/.test(error.message));
    assert.throws(() => checkJournalWrite(1, 'x'.repeat(JOURNAL_RECORD_BYTES_MAX + 1)), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && /more than 65536/.test(error.message));
    assert.ok(SNAPSHOT_MEMBERS_BYTES_MAX >= JOURNAL_RECORD_BYTES_MAX, 'a table carrying the largest record is within the snapshot bound before deflating');
  });
});

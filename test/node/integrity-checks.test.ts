// The tally of cross-replica integrity checkpoints (src/node/integrity-checks.ts): a value
// reported by a majority of the voters wins and every other reporter is named corrupt
// (voter, learner or leader alike); with every voter reported and no majority, the cluster
// has none; members that did not report are not judged.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DigestReport } from '../../src/node/integrity-checks.ts';
import { CHECKPOINTS_KEPT, CheckpointTally, checkDigestReport, judge } from '../../src/node/integrity-checks.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';

const GOOD = '0123456789abcdef0123456789abcdef';
const BAD = 'ffffffffffffffffffffffffffffffff';
const report = (memberId: number, digest = GOOD, revision = 10, keyCount = 5): DigestReport => ({ type: 'digestReport', checkpointIndex: 7, memberId, revision, keyCount, digest });

describe('judge', () => {
  test('a majority of the voters agreeing names every other reporter, the leader or a learner included', () => {
    const state = judge(7, [1, 2, 3], [4], [report(1, BAD), report(2), report(3), report(4, BAD)]);
    assert.equal(state.verdict, 'corrupt-members');
    assert.deepEqual(state.corrupt, [1, 4]);
    assert.equal(state.majority?.digest, GOOD);
  });

  test('two of three agreeing decide before the third reports; the third is judged when it does', () => {
    assert.equal(judge(7, [1, 2, 3], [], [report(1), report(2)]).verdict, 'agreed');
    assert.deepEqual(judge(7, [1, 2, 3], [], [report(1), report(2), report(3, BAD)]).corrupt, [3]);
  });

  test('learners do not make a majority', () => {
    const state = judge(7, [1, 2, 3], [4, 5], [report(1, BAD), report(4, BAD), report(5, BAD), report(2)]);
    assert.equal(state.verdict, 'pending');
    assert.deepEqual(state.corrupt, []);
  });

  test('a different revision or key count with the same digest is a different value', () => {
    assert.deepEqual(judge(7, [1, 2, 3], [], [report(1), report(2), report(3, GOOD, 11)]).corrupt, [3]);
    assert.deepEqual(judge(7, [1, 2, 3], [], [report(1), report(2), report(3, GOOD, 10, 6)]).corrupt, [3]);
  });

  test('every voter reported and no majority: no-majority; a split that cannot be decided any more too', () => {
    assert.equal(judge(7, [1, 2, 3], [], [report(1, BAD), report(2), report(3, '00000000000000000000000000000000')]).verdict, 'no-majority');
    assert.equal(judge(7, [1, 2], [], [report(1, BAD), report(2)]).verdict, 'no-majority');
    assert.equal(judge(7, [1, 2, 3, 4, 5], [], [report(1, BAD), report(2)]).verdict, 'pending');
    // 5 voters, 2+2 split, 1 left: 3 is still reachable.
    assert.equal(judge(7, [1, 2, 3, 4, 5], [], [report(1, BAD), report(2, BAD), report(3), report(4)]).verdict, 'pending');
    // 5 voters, 1+1+1+1 split, 1 left: nobody can reach 3.
    const digests = ['11', '22', '33', '44'].map((prefix) => prefix.padEnd(32, '0'));
    assert.equal(judge(7, [1, 2, 3, 4, 5], [], digests.map((digest, i) => report(i + 1, digest))).verdict, 'no-majority');
  });
});

describe('CheckpointTally', () => {
  test('counts a member\'s first report only, ignores unknown checkpoints and forgets the oldest', () => {
    const tally = new CheckpointTally();
    assert.equal(tally.onReport(report(1)), undefined, 'unknown checkpoint');
    tally.onCheckpoint(7, [1, 2, 3], []);
    tally.onReport(report(1, BAD));
    tally.onReport(report(1)); // a repeat does not replace the first
    const state = tally.onReport(report(2));
    assert.equal(state?.verdict, 'pending');
    assert.equal(tally.onReport(report(3))?.verdict, 'corrupt-members');
    for (let index = 100; index < 100 + CHECKPOINTS_KEPT; index += 1) tally.onCheckpoint(index, [1], []);
    assert.equal(tally.state(7), undefined, 'the oldest checkpoint is forgotten');
    assert.equal(tally.latest(), 100 + CHECKPOINTS_KEPT - 1);
  });

  test('a malformed report is CORRUPTION', () => {
    assert.throws(() => checkDigestReport({ checkpointIndex: 1, memberId: 2, revision: 3, keyCount: 4, digest: 'nothex' }), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
    assert.throws(() => checkDigestReport({ checkpointIndex: -1, memberId: 2, revision: 3, keyCount: 4, digest: GOOD }), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
    assert.deepEqual(checkDigestReport({ checkpointIndex: 1, memberId: 2, revision: 3, keyCount: 4, digest: GOOD }).memberId, 2);
  });
});

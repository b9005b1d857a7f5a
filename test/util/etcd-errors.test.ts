// The etcd error table round-trips: every catalogue code goes on the wire as etcd would send
// it and comes back as the same code (or, for an alias, as the code it shares a message with).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ErrorCode, isErrorCode, StrataError } from '../../src/util/errors.ts';
import { ETCD_ERRORS, fromGrpcStatus, GrpcStatus, toGrpcStatus } from '../../src/util/etcd-errors.ts';

test('every code round-trips through toGrpcStatus and fromGrpcStatus', () => {
  for (const code of Object.values(ErrorCode)) {
    const sent = toGrpcStatus(new StrataError(code, `detail for ${code}`));
    const mapping = ETCD_ERRORS[code];
    assert.equal(sent.code, mapping.status, code);
    const back = fromGrpcStatus(sent.code, sent.details);
    assert.equal(back.code, mapping.returnsAs ?? code, code);
    assert.equal(back.details['grpcCode'], sent.code, code);
  }
});

test('codes without an etcd message keep their own message', () => {
  for (const code of [ErrorCode.INVALID_ARGUMENT, ErrorCode.UNIMPLEMENTED, ErrorCode.IO_ERROR, ErrorCode.CONF_CHANGE_REFUSED]) {
    const sent = toGrpcStatus(new StrataError(code, 'what was wrong'));
    assert.ok(sent.details.endsWith('what was wrong'), code);
    assert.equal(fromGrpcStatus(sent.code, sent.details).message, 'what was wrong', code);
  }
});

// Here the etcd message is the contract: etcd clients match on it.
test('etcd errors carry etcd\'s status and exact message', () => {
  const expected: [ErrorCode, number, string][] = [
    [ErrorCode.KEY_NOT_PROVIDED, GrpcStatus.INVALID_ARGUMENT, 'etcdserver: key is not provided'],
    [ErrorCode.REQUEST_TOO_LARGE, GrpcStatus.INVALID_ARGUMENT, 'etcdserver: request is too large'],
    [ErrorCode.TOO_MANY_OPERATIONS, GrpcStatus.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request'],
    [ErrorCode.DUPLICATE_KEY, GrpcStatus.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'],
    [ErrorCode.COMPACTED, GrpcStatus.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted'],
    [ErrorCode.FUTURE_REVISION, GrpcStatus.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'],
    [ErrorCode.NOT_LEADER, GrpcStatus.FAILED_PRECONDITION, 'etcdserver: not leader'],
    [ErrorCode.NO_LEADER, GrpcStatus.UNAVAILABLE, 'etcdserver: no leader'],
    [ErrorCode.LEADER_CHANGED, GrpcStatus.UNAVAILABLE, 'etcdserver: leader changed'],
    [ErrorCode.TIMEOUT, GrpcStatus.UNAVAILABLE, 'etcdserver: request timed out'],
    [ErrorCode.STOPPED, GrpcStatus.UNAVAILABLE, 'etcdserver: server stopped'],
    [ErrorCode.CANCELED, GrpcStatus.CANCELLED, 'etcdserver: request canceled'],
    [ErrorCode.MEMBER_NOT_FOUND, GrpcStatus.NOT_FOUND, 'etcdserver: member not found'],
    [ErrorCode.PEER_URL_EXISTS, GrpcStatus.FAILED_PRECONDITION, 'etcdserver: Peer URLs already exists'],
    [ErrorCode.MEMBER_NOT_LEARNER, GrpcStatus.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member'],
    [ErrorCode.LEARNER_NOT_READY, GrpcStatus.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member which is in sync with leader'],
    [ErrorCode.TOO_MANY_LEARNERS, GrpcStatus.FAILED_PRECONDITION, 'etcdserver: too many learner members in cluster'],
    [ErrorCode.BAD_LEADER_TRANSFEREE, GrpcStatus.FAILED_PRECONDITION, 'etcdserver: bad leader transferee'],
    [ErrorCode.NOT_ENOUGH_STARTED_MEMBERS, GrpcStatus.FAILED_PRECONDITION, 'etcdserver: re-configuration failed due to not enough started members'],
    [ErrorCode.NOT_SUPPORTED_FOR_LEARNER, GrpcStatus.UNAVAILABLE, 'etcdserver: rpc not supported for learner'],
    [ErrorCode.PROPOSAL_DROPPED, GrpcStatus.RESOURCE_EXHAUSTED, 'etcdserver: too many requests'],
    [ErrorCode.CORRUPTION, GrpcStatus.DATA_LOSS, 'etcdserver: corrupt cluster'],
    [ErrorCode.CORRUPT_ALARM, GrpcStatus.DATA_LOSS, 'etcdserver: corrupt cluster'],
    [ErrorCode.NO_SPACE, GrpcStatus.RESOURCE_EXHAUSTED, 'etcdserver: mvcc: database space exceeded'],
    [ErrorCode.LEADER_TRANSFER_IN_PROGRESS, GrpcStatus.UNAVAILABLE, 'etcdserver: leader changed'],
  ];
  for (const [code, status, message] of expected) {
    assert.deepEqual(toGrpcStatus(new StrataError(code, 'ours')), { code: status, details: message }, code);
  }
});

test('unknown messages map by status code', () => {
  assert.equal(fromGrpcStatus(GrpcStatus.RESOURCE_EXHAUSTED, 'Received message larger than max (10 vs. 5)').code, ErrorCode.REQUEST_TOO_LARGE);
  assert.equal(fromGrpcStatus(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded').code, ErrorCode.TIMEOUT);
  assert.equal(fromGrpcStatus(GrpcStatus.CANCELLED, 'Cancelled on client').code, ErrorCode.CANCELED);
  assert.equal(fromGrpcStatus(GrpcStatus.UNAVAILABLE, 'No connection established').code, ErrorCode.UNAVAILABLE);
  assert.equal(fromGrpcStatus(GrpcStatus.UNIMPLEMENTED, 'unknown method').code, ErrorCode.UNIMPLEMENTED);
  assert.equal(fromGrpcStatus(GrpcStatus.DATA_LOSS, 'something').code, ErrorCode.CORRUPTION);
  assert.equal(fromGrpcStatus(GrpcStatus.UNAVAILABLE, 'etcdserver: request timed out, possibly due to previous leader failure').code, ErrorCode.TIMEOUT);
  assert.equal(fromGrpcStatus(99, 'from the future').code, ErrorCode.UNAVAILABLE);
  for (let status = 0; status <= 16; status++) assert.ok(fromGrpcStatus(status, 'x') instanceof StrataError);
});

test('non-StrataErrors: an abort is etcd\'s cancel, anything else UNKNOWN', () => {
  const abort = new DOMException('aborted', 'AbortError');
  assert.deepEqual(toGrpcStatus(abort), { code: GrpcStatus.CANCELLED, details: 'etcdserver: request canceled' });
  assert.deepEqual(toGrpcStatus(new Error('boom')), { code: GrpcStatus.UNKNOWN, details: 'boom' });
  assert.deepEqual(toGrpcStatus('text'), { code: GrpcStatus.UNKNOWN, details: 'text' });
});

test('isErrorCode accepts the catalogue codes and nothing else (codes arrive from peers)', () => {
  for (const code of Object.values(ErrorCode)) assert.ok(isErrorCode(code), code);
  for (const value of ['', 'not_found', 'NO_SUCH_CODE', 7, undefined, null]) assert.equal(isErrorCode(value), false, String(value));
});

// EndpointPicker: the preferred endpoint moves on after a failure and stays preferred when the
// list is replaced (setEndpoints, which sync uses) if it is still listed; the checks on a
// replacement are the constructor's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ENDPOINTS_MAX, EndpointPicker } from '../../src/client/endpoint-picker.ts';
import { isStrataError } from '../../src/util/errors.ts';

test('setEndpoints keeps the preferred endpoint when it is still listed', () => {
  const picker = new EndpointPicker(['a:1', 'b:1', 'c:1']);
  picker.reportFailure('a:1');
  assert.equal(picker.current(), 'b:1');
  assert.equal(picker.setEndpoints(['d:1', 'http://b:1', 'e:1']), true);
  assert.deepEqual(picker.endpoints, ['d:1', 'b:1', 'e:1']);
  assert.equal(picker.current(), 'b:1');
  // Failover goes on within the new list.
  picker.reportFailure('b:1');
  assert.equal(picker.current(), 'e:1');
});

test('setEndpoints starts from the first endpoint when the preferred one is gone', () => {
  const picker = new EndpointPicker(['a:1', 'b:1']);
  picker.prefer('b:1');
  picker.setEndpoints(['c:1', 'a:1']);
  assert.equal(picker.current(), 'c:1');
  // A failure reported for an endpoint no longer listed moves nothing.
  picker.reportFailure('b:1');
  assert.equal(picker.current(), 'c:1');
});

test('setEndpoints normalizes and deduplicates, and answers whether the list changed (order included)', () => {
  const picker = new EndpointPicker(['a:1', 'b:1']);
  assert.equal(picker.setEndpoints(['http://a:1/', 'a:1', 'b:1']), false);
  assert.deepEqual(picker.endpoints, ['a:1', 'b:1']);
  assert.equal(picker.setEndpoints(['b:1', 'a:1']), true);
  assert.deepEqual(picker.endpoints, ['b:1', 'a:1']);
  assert.equal(picker.setEndpoints(['b:1']), true);
  assert.deepEqual(picker.endpoints, ['b:1']);
});

test('setEndpoints refuses what the constructor refuses, and then leaves the list as it was', () => {
  const picker = new EndpointPicker(['a:1', 'b:1']);
  picker.prefer('b:1');
  const tooMany = Array.from({ length: ENDPOINTS_MAX + 1 }, (_, index) => `h${index}:1`);
  for (const bad of [[], tooMany, ['c:1', 'https://d:1'], ['no-port']]) {
    assert.throws(() => picker.setEndpoints(bad), (error) => isStrataError(error, 'INVALID_ARGUMENT'), JSON.stringify(bad).slice(0, 40));
    assert.deepEqual(picker.endpoints, ['a:1', 'b:1']);
    assert.equal(picker.current(), 'b:1');
  }
  assert.equal(picker.setEndpoints(tooMany.slice(0, ENDPOINTS_MAX)), true);
  assert.equal(picker.endpoints.length, ENDPOINTS_MAX);
});

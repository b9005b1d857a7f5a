// The client's retry rule (clientv3's): reads repeat after UNAVAILABLE; writes only when the
// failure proves they never ran. Also the endpoint syntax and etcd's prefix range end.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeEndpoint, prefixEnd } from '../../src/client/index.ts';
import { backoffMs, isRetryable, BACKOFF_MAX_MS, mirrorBackoffMs, MIRROR_BACKOFF_MAX_MS } from '../../src/client/retry-policy.ts';
import { GrpcStatus } from '../../src/util/etcd-errors.ts';
import { isStrataError } from '../../src/util/errors.ts';

const { UNAVAILABLE, DEADLINE_EXCEEDED, FAILED_PRECONDITION, INVALID_ARGUMENT, CANCELLED } = GrpcStatus;

test('reads are retried after any UNAVAILABLE, and nothing else', () => {
  assert.equal(isRetryable('read', UNAVAILABLE, 'Connection dropped'), true);
  assert.equal(isRetryable('read', UNAVAILABLE, 'etcdserver: request timed out'), true);
  assert.equal(isRetryable('read', DEADLINE_EXCEEDED, 'Deadline exceeded'), false);
  assert.equal(isRetryable('read', INVALID_ARGUMENT, 'etcdserver: key is not provided'), false);
});

test('writes are retried only when the request provably never ran', () => {
  assert.equal(isRetryable('write', UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED'), true);
  assert.equal(isRetryable('write', UNAVAILABLE, 'Stream refused by server'), true);
  assert.equal(isRetryable('write', UNAVAILABLE, 'etcdserver: no leader'), true);
  assert.equal(isRetryable('write', UNAVAILABLE, 'etcdserver: unhealthy cluster'), true);
  // Ambiguous: the request may have been proposed.
  assert.equal(isRetryable('write', UNAVAILABLE, 'Connection dropped'), false);
  assert.equal(isRetryable('write', UNAVAILABLE, 'etcdserver: request timed out'), false);
  assert.equal(isRetryable('write', UNAVAILABLE, 'etcdserver: leader changed'), false);
  assert.equal(isRetryable('write', DEADLINE_EXCEEDED, 'Deadline exceeded'), false);
  assert.equal(isRetryable('write', FAILED_PRECONDITION, 'etcdserver: not leader'), false);
});

test('backoff doubles up to its maximum', () => {
  assert.ok(backoffMs(2) === 2 * backoffMs(1));
  assert.equal(backoffMs(1000), BACKOFF_MAX_MS);
});

test('endpoints are host:port or http://host:port; https is refused', () => {
  assert.equal(normalizeEndpoint('127.0.0.1:2379'), '127.0.0.1:2379');
  assert.equal(normalizeEndpoint('http://localhost:2379/'), 'localhost:2379');
  assert.equal(normalizeEndpoint('[::1]:2379'), '[::1]:2379');
  for (const bad of ['https://localhost:2379', 'localhost', 'unix://x:1', 'http://a:0', 'a:70000', '']) {
    assert.throws(() => normalizeEndpoint(bad), (error) => isStrataError(error, 'INVALID_ARGUMENT'), bad);
  }
});

test('prefixEnd is etcd\'s GetPrefixRangeEnd', () => {
  assert.deepEqual([...prefixEnd(Buffer.from('ab'))], [...Buffer.from('ac')]);
  assert.deepEqual([...prefixEnd(Uint8Array.of(0x61, 0xff))], [0x62]);
  assert.deepEqual([...prefixEnd(Uint8Array.of(0xff, 0xff))], [0]);
});

test('a member refusing with "corrupt cluster" (its CORRUPT alarm) did nothing: reads and writes go to another member', () => {
  assert.equal(isRetryable('read', GrpcStatus.DATA_LOSS, 'etcdserver: corrupt cluster'), true);
  assert.equal(isRetryable('write', GrpcStatus.DATA_LOSS, 'etcdserver: corrupt cluster'), true);
  assert.equal(isRetryable('write', GrpcStatus.DATA_LOSS, 'something else was lost'), false);
});

test('a member that was removed refused the request before doing anything: writes go to another member; "server stopped" is retried for reads only', () => {
  const removed = 'etcdserver: the member has been permanently removed from the cluster';
  assert.equal(isRetryable('write', UNAVAILABLE, removed), true);
  assert.equal(isRetryable('read', UNAVAILABLE, removed), true);
  // Only as etcd sends it: the exact text with UNAVAILABLE.
  assert.equal(isRetryable('write', UNAVAILABLE, `${removed} (and more)`), false);
  assert.equal(isRetryable('write', CANCELLED, removed), false);
  // etcd also answers "server stopped" to a proposal it was waiting on: a write may have been applied.
  const stopped = 'etcdserver: server stopped';
  assert.equal(isRetryable('write', UNAVAILABLE, stopped), false);
  assert.equal(isRetryable('read', UNAVAILABLE, stopped), true);
});

test('a mirror refusal\'s backoff stays short: a switch\'s pause ends at one moment', () => {
  assert.equal(mirrorBackoffMs(2), 2 * mirrorBackoffMs(1));
  assert.equal(mirrorBackoffMs(1000), MIRROR_BACKOFF_MAX_MS);
  assert.ok(MIRROR_BACKOFF_MAX_MS <= 100);
});

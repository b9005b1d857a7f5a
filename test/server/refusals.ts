// What the server tests ask of a call that must be refused: the StrataError a client call
// failed with (never a success).

import assert from 'node:assert/strict';

import { StrataError } from '../../src/util/errors.ts';

/** strataRefusal answers the StrataError a MirrorClient, AdminCalls or EtcdClient call failed with. */
export async function strataRefusal(promise: Promise<unknown>): Promise<StrataError> {
  const error = await promise.then(
    () => assert.fail('expected a refusal'),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof StrataError, `a StrataError, got ${String(error)}`);
  return error;
}

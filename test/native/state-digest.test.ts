// The addon's stateKeyHashes (native/src/state-digest-binding.cc) and its lease argument: a
// u64 read exactly from a BigInt (etcd's lease ids are above 2^53), or from a safe-integer
// Number; a negative or wider BigInt, or a Number that is not a safe integer, is refused by
// the binding itself (ERR_STRATAKV_INVALID_ARGUMENT) and by the wrapper before it (an assertion).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { nativeAddon } from '../../src/native/addon.ts';
import { stateKeyHashes } from '../../src/native/index.ts';
import { keyHashesOfReference } from '../../src/storage/state-digest.ts';
import { AssertionFailure } from '../../src/util/assert.ts';

const key = new TextEncoder().encode('native/key');
const value = new TextEncoder().encode('native value');

function hashes(lease: bigint | number): string {
  const out = new Uint8Array(32);
  nativeAddon().stateKeyHashes(key, value, 5, 9, 3, lease, out);
  return Buffer.from(out).toString('hex');
}

function reference(lease: bigint): string {
  const { full, content } = keyHashesOfReference(key, value, { createRevision: 5, modRevision: 9, version: 3, lease });
  return Buffer.from(full).toString('hex') + Buffer.from(content).toString('hex');
}

function refusedByTheBinding(lease: unknown): void {
  const out = new Uint8Array(32);
  assert.throws(
    () => nativeAddon().stateKeyHashes(key, value, 5, 9, 3, lease as bigint, out),
    (error: unknown) => (error as { code?: unknown }).code === 'ERR_STRATAKV_INVALID_ARGUMENT',
    `lease ${String(lease)}`,
  );
}

describe('stateKeyHashes: the lease', () => {
  it('hashes a BigInt lease exactly over the whole u64 range, as the JavaScript reference does', () => {
    for (const lease of [0n, 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2156839707291722977n, 2n ** 63n - 1n, 2n ** 64n - 1n]) {
      assert.equal(hashes(lease), reference(lease), `lease ${lease}`);
    }
    assert.notEqual(hashes(2156839707291722977n), hashes(2156839707291722976n), 'neighbours beyond 2^53 differ');
  });

  it('takes a safe-integer Number as the BigInt of the same value', () => {
    for (const lease of [0, 1, 0x7f, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) assert.equal(hashes(lease), hashes(BigInt(lease)), `lease ${lease}`);
  });

  it('refuses a negative or wider BigInt, and a Number that is not a safe integer, in the binding', () => {
    for (const lease of [-1n, -(2n ** 63n), 2n ** 64n, 2n ** 70n, -1, 2 ** 53, 0.5, '1', undefined]) refusedByTheBinding(lease);
  });

  it('the wrapper asserts a BigInt u64 before calling the addon', () => {
    const out = new Uint8Array(32);
    assert.throws(() => stateKeyHashes(key, value, 5, 9, 3, -1n, out), AssertionFailure);
    assert.throws(() => stateKeyHashes(key, value, 5, 9, 3, 2n ** 64n, out), AssertionFailure);
    assert.throws(() => stateKeyHashes(key, value, 5, 9, 3, 1 as unknown as bigint, out), AssertionFailure);
    assert.equal(stateKeyHashes(key, value, 5, 9, 3, 2156839707291722977n, out), nativeAddon().stateKeyHashes(key, value, 5, 9, 3, 2156839707291722977n, new Uint8Array(32)));
  });
});

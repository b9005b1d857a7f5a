// The state digest's per-key hashes, computed by the addon (native/src/state-digest-binding.cc):
// src/storage/state-digest.ts defines them and keeps the JavaScript reference they must equal.

import { assert } from '../util/assert.ts';
import { nativeAddon } from './addon.ts';

const U64_MAX = 2n ** 64n - 1n;

/**
 * stateKeyHashes writes a stored key's full hash (16 bytes) then its content hash (16 bytes)
 * into `out` (32 bytes) and answers the key's leaf (the top 16 bits of its CRC32c). The lease
 * id is a u64, hashed exactly (etcd's ids are above 2^53).
 */
export function stateKeyHashes(key: Uint8Array, value: Uint8Array, createRevision: number, modRevision: number, version: number, lease: bigint, out: Uint8Array): number {
  assert(typeof lease === 'bigint', 'stateKeyHashes: the lease is a bigint');
  assert(lease >= 0n && lease <= U64_MAX, `stateKeyHashes: lease ${lease} is not a u64`);
  return nativeAddon().stateKeyHashes(key, value, createRevision, modRevision, version, lease, out);
}

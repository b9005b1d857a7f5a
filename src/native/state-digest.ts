// The state digest's per-key hashes, computed by the addon (native/src/state-digest-binding.cc):
// src/storage/state-digest.ts defines them and keeps the JavaScript reference they must equal.

import { nativeAddon } from './addon.ts';

/**
 * stateKeyHashes writes a stored key's full hash (16 bytes) then its content hash (16 bytes)
 * into `out` (32 bytes) and answers the key's leaf (the top 16 bits of its CRC32c).
 */
export function stateKeyHashes(key: Uint8Array, value: Uint8Array, createRevision: number, modRevision: number, version: number, lease: number, out: Uint8Array): number {
  return nativeAddon().stateKeyHashes(key, value, createRevision, modRevision, version, lease, out);
}

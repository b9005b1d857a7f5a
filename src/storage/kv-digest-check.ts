// Checking the state machine's data against its stored digest (state-digest.ts): at open,
// and by the scrubber. Three things must agree: the data (every 'k' key, hashed again), the
// digest's index ('h': each key's recorded hashes) and the stored leaves ('d'), and the
// stored leaves must sum to the root written with the applied index (META).
//
// What each disagreement means:
// - stored leaves do not sum to the root: LevelDB lost a batch between two it kept (a corrupt
//   block of its log is skipped on recovery): applied writes are missing.
// - the data does not sum to the stored leaves: a key's value or counters changed after it
//   was applied (a rewrite below stratakv, decay that LevelDB's checksums did not catch), or
//   writes were lost.
// - reading fails: LevelDB found a corrupt block (a damaged table file).
// A failure is CORRUPTION whose details name the check, the leaves and, where it can, the
// keys that differ.

import type { KvLevel } from './kv-state-machine.ts';
import { DIGEST_LEAF_RANGE, KEY_AREA_END, decodeStoredValue, hashIndexRange, leafOfDigestLeafKey, parseHashIndexKey, storageKey, userKeyOf, hashIndexKey } from './kv-keys.ts';
import type { DigestRoot, KeyHashes } from './state-digest.ts';
import { DigestSums, EMPTY_DIGEST_ROOT, LEAF_COUNT, decodeKeyHashes, digestRootsEqual, encodeKeyHashes, formatDigest, keyHashesOf, leafOf } from './state-digest.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';

/** DigestVerification reports one full check of the data against the digest. */
export interface DigestVerification {
  readonly keys: number;
  /** Bytes of keys and stored values read. */
  readonly bytes: number;
  readonly durationMs: number;
}

/** DigestCheck names the check that failed, in a CORRUPTION's details.check. */
export type DigestCheck = 'leaves-vs-root' | 'data-vs-leaves' | 'index-vs-leaves' | 'read-failed' | 'malformed';

const READ_BATCH_KEYS = 1_024;
/** BUILD_BATCH_BYTES_MAX bounds one LevelDB batch of index entries written when a digest is built. */
const BUILD_BATCH_BYTES_MAX = 4 * 1024 * 1024;
const NAMED_LEAVES_MAX = 16;
const NAMED_KEYS_MAX = 20;

/**
 * loadStoredDigest reads the stored leaves and checks that they sum to `root` (META's). It
 * reads at most LEAF_COUNT small values, so it runs at every open.
 */
export async function loadStoredDigest(db: KvLevel, root: DigestRoot | undefined): Promise<DigestSums> {
  const sums = new DigestSums();
  await readArea(db, DIGEST_LEAF_RANGE, (levelKey, value) => {
    const leaf = leafOfDigestLeafKey(levelKey);
    const leafSums = decodeKeyHashes(value);
    if (leafSums === undefined) throw corruption('malformed', `the stored digest leaf ${leaf} is malformed (${value.byteLength} bytes)`, { leaf });
    sums.setLeaf(leaf, leafSums);
  });
  sums.takeDirty();
  const expected = root ?? EMPTY_DIGEST_ROOT;
  sums.setRoot(expected);
  const leavesRoot = sums.leavesRoot();
  if (!digestRootsEqual(leavesRoot, expected) || !digestRootsEqual(leavesRoot, expected, 'content')) {
    throw corruption(
      'leaves-vs-root',
      `the stored digest leaves sum to ${formatDigest(leavesRoot.full)}, the root stored with the applied index is ${formatDigest(expected.full)}: ` +
        'LevelDB lost a batch of applied writes between two it kept (it skips a corrupt block of its log on recovery)',
      { leavesRoot: formatDigest(leavesRoot.full), root: formatDigest(expected.full) },
    );
  }
  return sums;
}

/** VerifyResult is what verifyStoredDigest computed. */
export interface VerifyResult {
  /** The digest computed from the data. */
  readonly sums: DigestSums;
  readonly verification: DigestVerification;
  /** When building (no stored digest): the index entries to write. Empty when checking. */
  readonly indexEntries: readonly { readonly levelKey: Uint8Array; readonly hashes: KeyHashes }[];
}

/**
 * verifyStoredDigest reads every key, hashes it, and compares the sums with `stored` (the
 * loaded leaves) and with the digest's index; CORRUPTION when anything differs. With
 * `stored` undefined it only builds the digest (and its index entries) from the data.
 */
export async function verifyStoredDigest(db: KvLevel, stored: DigestSums | undefined, now: () => number = () => performance.now()): Promise<VerifyResult> {
  const startedMs = now();
  const computed = new DigestSums();
  const indexEntries: { levelKey: Uint8Array; hashes: KeyHashes }[] = [];
  let keys = 0;
  let bytes = 0;
  await readArea(db, { gte: storageKey(new Uint8Array(0)), lt: KEY_AREA_END }, (levelKey, value) => {
    const key = userKeyOf(levelKey);
    const storedValue = decodeStored(key, value);
    const leaf = leafOf(key);
    const hashes = keyHashesOf(key, storedValue.value, storedValue);
    computed.add(leaf, hashes, 1);
    if (stored === undefined) indexEntries.push({ levelKey: hashIndexKey(leaf, key), hashes });
    keys += 1;
    bytes += levelKey.byteLength + value.byteLength;
  });
  computed.takeDirty();
  const verification = { keys, bytes, durationMs: now() - startedMs };
  if (stored === undefined) return { sums: computed, verification, indexEntries };

  const indexed = new DigestSums();
  await readArea(db, hashIndexRange(0, LEAF_COUNT), (levelKey, value) => {
    const { leaf } = parseHashIndexKey(levelKey);
    const hashes = decodeKeyHashes(value);
    if (hashes === undefined) throw corruption('malformed', `the digest index entry of a key in leaf ${leaf} is malformed`, { leaf });
    indexed.add(leaf, hashes, 1);
  });
  indexed.takeDirty();

  const dataLeaves: number[] = [];
  const indexLeaves: number[] = [];
  for (let leaf = 0; leaf < LEAF_COUNT; leaf += 1) {
    if (!computed.leafEquals(stored, leaf)) dataLeaves.push(leaf);
    if (!indexed.leafEquals(stored, leaf)) indexLeaves.push(leaf);
  }
  if (dataLeaves.length > 0 || computed.keyCount !== stored.keyCount) {
    const named = await nameDifferingKeys(db, dataLeaves.slice(0, NAMED_LEAVES_MAX));
    throw corruption(
      'data-vs-leaves',
      `${dataLeaves.length} of ${LEAF_COUNT} digest leaves differ from the data (${computed.keyCount} keys read, ${stored.keyCount} applied)` +
        (named.length > 0 ? `; keys: ${named.map((item) => `${JSON.stringify(item.key)} (${item.problem})`).join(', ')}` : '') +
        ': the data is not what this member applied (changed below stratakv, decayed, or writes lost)',
      { leaves: dataLeaves.slice(0, NAMED_LEAVES_MAX), leafCount: dataLeaves.length, keysRead: computed.keyCount, keysApplied: stored.keyCount, keys: named },
    );
  }
  if (indexLeaves.length > 0) {
    throw corruption('index-vs-leaves', `${indexLeaves.length} digest leaves differ from the digest's index of keys: the index is damaged`, {
      leaves: indexLeaves.slice(0, NAMED_LEAVES_MAX),
      leafCount: indexLeaves.length,
    });
  }
  return { sums: computed, verification, indexEntries };
}

/** writeIndexEntries writes built index entries in bounded batches. */
export async function writeIndexEntries(db: KvLevel, entries: readonly { readonly levelKey: Uint8Array; readonly hashes: KeyHashes }[]): Promise<void> {
  let operations: { type: 'put'; key: Uint8Array; value: Uint8Array }[] = [];
  let operationBytes = 0;
  for (const { levelKey, hashes } of entries) {
    operations.push({ type: 'put', key: levelKey, value: encodeKeyHashes(hashes) });
    operationBytes += levelKey.byteLength + 32;
    if (operationBytes >= BUILD_BATCH_BYTES_MAX) {
      await db.batch(operations);
      operations = [];
      operationBytes = 0;
    }
  }
  if (operations.length > 0) await db.batch(operations);
}

interface NamedKey {
  readonly key: string;
  readonly problem: 'value differs from its recorded hash' | 'recorded but missing' | 'present but never recorded';
}

// nameDifferingKeys compares, for a few differing leaves, each key's data with its recorded
// hashes, to name the keys at fault (a second read, only after a check failed).
async function nameDifferingKeys(db: KvLevel, leaves: readonly number[]): Promise<NamedKey[]> {
  if (leaves.length === 0) return [];
  const wanted = new Set(leaves);
  const recorded = new Map<string, Uint8Array>();
  for (const leaf of leaves) {
    await readArea(db, hashIndexRange(leaf, leaf + 1), (levelKey, value) => {
      recorded.set(Buffer.from(parseHashIndexKey(levelKey).userKey).toString('latin1'), value.slice(0, 16));
    });
  }
  const named: NamedKey[] = [];
  const seen = new Set<string>();
  await readArea(db, { gte: storageKey(new Uint8Array(0)), lt: KEY_AREA_END }, (levelKey, value) => {
    const key = userKeyOf(levelKey);
    if (!wanted.has(leafOf(key))) return;
    const mapKey = Buffer.from(key).toString('latin1');
    seen.add(mapKey);
    const storedValue = decodeStored(key, value);
    const full = recorded.get(mapKey);
    if (full === undefined) named.push({ key: printable(key), problem: 'present but never recorded' });
    else if (Buffer.compare(full, keyHashesOf(key, storedValue.value, storedValue).full) !== 0) named.push({ key: printable(key), problem: 'value differs from its recorded hash' });
  });
  for (const mapKey of recorded.keys()) if (!seen.has(mapKey)) named.push({ key: printable(Buffer.from(mapKey, 'latin1')), problem: 'recorded but missing' });
  return named.slice(0, NAMED_KEYS_MAX);
}

function printable(key: Uint8Array): string {
  return Buffer.from(key).toString('utf8');
}

function decodeStored(key: Uint8Array, value: Uint8Array): ReturnType<typeof decodeStoredValue> {
  try {
    return decodeStoredValue(value);
  } catch (error) {
    throw corruption('malformed', `the stored value of key ${JSON.stringify(printable(key))} is malformed`, { key: printable(key) }, error);
  }
}

// readArea visits every pair of a LevelDB range in order; a LevelDB read error is CORRUPTION.
async function readArea(db: KvLevel, range: { gte: Uint8Array; lt: Uint8Array }, visit: (key: Uint8Array, value: Uint8Array) => void): Promise<void> {
  const iterator = db.iterator({ gte: range.gte, lt: range.lt });
  // The next batch is read (on LevelDB's thread) while this one is hashed: one read in flight.
  const read = (): Promise<[Uint8Array, Uint8Array][]> =>
    (iterator.nextv(READ_BATCH_KEYS) as Promise<[Uint8Array, Uint8Array][]>).catch((error: unknown) => {
      throw corruption('read-failed', `reading the state machine's LevelDB failed: ${String((error as Error).message ?? error)}`, {}, error);
    });
  let next: Promise<[Uint8Array, Uint8Array][]> | undefined = read();
  try {
    for (;;) {
      const entries: [Uint8Array, Uint8Array][] = await next;
      next = undefined;
      if (entries.length === 0) return;
      next = read();
      for (const [key, value] of entries) visit(key, value);
    }
  } finally {
    // A visit that threw leaves a read in flight: it settles before the iterator closes.
    await next?.catch(() => undefined);
    await iterator.close();
  }
}

function corruption(check: DigestCheck, message: string, details: Record<string, unknown>, cause?: unknown): StrataError {
  return new StrataError(ErrorCode.CORRUPTION, `state machine integrity: ${message}`, { details: { check, ...details }, ...(cause === undefined ? {} : { cause }) });
}

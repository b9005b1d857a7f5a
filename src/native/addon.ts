// addon.ts — loads the compiled addon (native/build/Release/stratakv_native.node) once, on
// first use, and turns its Node-style errors into StrataError. Only this area's files import
// it; everything else goes through src/native/index.ts.
//
// Loading is lazy so that importing src/native never fails: a machine without a compiler can
// still run everything that does not touch the addon, and gets NATIVE_UNAVAILABLE (saying
// how to build it) only when it does.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { AssertionFailure } from '../util/assert.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';

/**
 * NATIVE_ADDON_PATH is where scripts/build-native.sh puts the addon, unless the environment
 * names another build in STRATAKV_NATIVE_ADDON (a debug or sanitizer build, or a test of
 * what happens when the addon is missing).
 */
export const NATIVE_ADDON_PATH =
  process.env.STRATAKV_NATIVE_ADDON ??
  fileURLToPath(new URL('../../native/build/Release/stratakv_native.node', import.meta.url));

// The addon's abiVersion this wrapper was written against (native/src/addon.cc).
const ABI_VERSION = 3;

/** NativeFileMapping is the addon's mapping handle (native/src/file-mapping.cc). */
export interface NativeFileMapping {
  readonly buffer: ArrayBuffer | undefined;
  readonly external: boolean;
  close(): void;
}

/** NativeFileHandle is the addon's open file (native/src/aligned-file.cc). */
export interface NativeFileHandle {
  readonly direct: boolean;
  readonly closed: boolean;
  readonly inFlight: number;
  writeAt(data: Uint8Array, offset: number): Promise<number>;
  readAt(target: Uint8Array, offset: number): Promise<number>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  allocate(length: number): Promise<boolean>;
  close(): Promise<void>;
}

/** NativeOpenOptions are openFile's flags; absent means false. */
export interface NativeOpenOptions {
  write?: boolean;
  create?: boolean;
  exclusive?: boolean;
  truncate?: boolean;
  direct?: boolean;
}

/** NativeAddon is the addon's export object. */
export interface NativeAddon {
  readonly abiVersion: number;
  crc32c(data: Uint8Array, seed?: number): number;
  /** The lease is a u64: a BigInt (or a safe-integer number), read exactly. */
  stateKeyHashes(key: Uint8Array, value: Uint8Array, createRevision: number, modRevision: number, version: number, lease: bigint | number, out: Uint8Array): number;
  crc32cWith(implementation: string, data: Uint8Array, seed?: number): number;
  crc32cImplementations(): string[];
  readonly crc32cBest: string;
  allocateAligned(byteLength: number): { buffer: ArrayBuffer; external: boolean };
  alignmentOffset(view: Uint8Array, alignment: number): number;
  regionStats(): { regions: number; bytes: number; pinned: number };
  setExternalBuffersAllowed(allowed: boolean): void;
  readonly pageBytes: number;
  readonly alignedBufferBytesMax: number;
  mapFile(path: string): NativeFileMapping;
  readonly mappingBytesMax: number;
  openFile(path: string, options: NativeOpenOptions): Promise<NativeFileHandle>;
  syncDirectory(directory: string): Promise<void>;
  renameAndSyncDirectory(from: string, to: string, directory: string): Promise<void>;
  readonly directIoAlignment: number;
  readonly ioBytesMax: number;
}

let loaded: NativeAddon | undefined;

/** nativeAddon returns the loaded addon, loading it on first use, or throws NATIVE_UNAVAILABLE. */
export function nativeAddon(): NativeAddon {
  if (loaded !== undefined) return loaded;
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as NativeAddon;
  } catch (cause) {
    throw new StrataError(
      ErrorCode.NATIVE_UNAVAILABLE,
      `the native addon does not load from ${NATIVE_ADDON_PATH}: build it with 'npm run build:native' ` +
        '(needs python3, make and a C++ compiler)',
      { cause, details: { path: NATIVE_ADDON_PATH } },
    );
  }
  if (addon.abiVersion !== ABI_VERSION) {
    throw new StrataError(
      ErrorCode.NATIVE_UNAVAILABLE,
      `the native addon at ${NATIVE_ADDON_PATH} is a stale build (abiVersion ${addon.abiVersion}, ` +
        `want ${ABI_VERSION}): rebuild it with 'npm run build:native'`,
      { details: { path: NATIVE_ADDON_PATH } },
    );
  }
  loaded = addon;
  return addon;
}

interface NodeStyleError {
  code?: unknown;
  syscall?: unknown;
  path?: unknown;
}

/**
 * nativeError turns an error thrown or rejected by the addon into what stratakv reports:
 * the addon's own argument and state checks are backstops behind this wrapper's, so they
 * are programmer errors (AssertionFailure); system call failures are IO_ERROR with the
 * errno name, the call and the path in `details`.
 */
export function nativeError(error: unknown, operation: string): Error {
  const { code, syscall, path } = (error ?? {}) as NodeStyleError;
  if (code === 'ERR_STRATAKV_INVALID_ARGUMENT' || code === 'ERR_STRATAKV_BUSY' || code === 'ERR_STRATAKV_CLOSED') {
    return new AssertionFailure(`${operation}: ${(error as Error).message}`);
  }
  if (typeof code === 'string' && typeof syscall === 'string') {
    return new StrataError(ErrorCode.IO_ERROR, `${operation}: ${(error as Error).message}`, {
      cause: error,
      details: { systemCode: code, syscall, path },
    });
  }
  return error instanceof Error ? error : new Error(String(error));
}

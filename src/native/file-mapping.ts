// file-mapping.ts — read-only mappings of whole files, for snapshot reads without copying.
//
// close() detaches the mapping's ArrayBuffer before unmapping it: every Uint8Array over it
// becomes empty, so no JavaScript can read unmapped memory. A native write still reading
// from the mapping keeps the memory until it finishes. Stores into the bytes are allowed
// but stay private to this process (MAP_PRIVATE): the file never changes through a mapping.
// Files must not be truncated while mapped (SIGBUS): snapshot files are immutable once named.
import { assert } from '../util/assert.ts';
import { nativeAddon, nativeError, type NativeFileMapping } from './addon.ts';

/** FileMapping is one mapped file. */
export class FileMapping {
  readonly path: string;
  /** byteLength is the file's length when it was mapped. */
  readonly byteLength: number;
  /** external is false when the runtime refused external memory and the file was copied instead. */
  readonly external: boolean;
  readonly #handle: NativeFileMapping;
  #bytes: Uint8Array | undefined;

  /** FileMapping's constructor is internal: use mapFile(). */
  constructor(path: string, handle: NativeFileMapping) {
    const buffer = handle.buffer;
    assert(buffer !== undefined, 'a new mapping has its buffer');
    this.path = path;
    this.#handle = handle;
    this.#bytes = new Uint8Array(buffer);
    this.byteLength = buffer.byteLength;
    this.external = handle.external;
  }

  /** bytes is the file's content; reading it after close() is a programmer error. */
  get bytes(): Uint8Array {
    assert(this.#bytes !== undefined, `mapping of ${this.path} is closed`);
    return this.#bytes;
  }

  /** closed tells whether close() was called. */
  get closed(): boolean {
    return this.#bytes === undefined;
  }

  /** close unmaps the file now instead of at garbage collection; closing twice is harmless. */
  close(): void {
    this.#bytes = undefined;
    this.#handle.close();
  }
}

/** mapFile maps the regular file at `path` read-only; IO_ERROR (details.systemCode) when it cannot. */
export function mapFile(path: string): FileMapping {
  assert(typeof path === 'string' && path.length > 0, 'mapFile: path must be a non-empty string');
  let handle: NativeFileMapping;
  try {
    handle = nativeAddon().mapFile(path);
  } catch (error) {
    throw nativeError(error, `mapFile ${path}`);
  }
  return new FileMapping(path, handle);
}

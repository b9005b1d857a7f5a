// snapshot-hasher.ts — the SHA-256 of a snapshot's content, computed beside the main thread.
//
// SHA-256 runs at about 1.1 GB/s on the project's machine, close to what its disk writes
// and reads: on the main thread it alone would cap create() and records() near the disk's
// rate, with everything else (encoding, CRCs, I/O completions) on top. A disk store
// therefore hashes large content on one worker thread of its own: the main thread copies
// each piece into a ring of shared slots (about 0.1 ms per MiB) and goes on; the worker
// hashes the slots in order. Small content (tests, small clusters) is hashed inline, which
// spares the worker's start-up; the memory store always hashes inline (no threads in the
// simulator).
//
// The ring: SLOTS slots of SLOT_BYTES in one SharedArrayBuffer, and an Int32Array of
// counters. The main thread writes slot `written % SLOTS` and then bumps `written`; the
// worker hashes slot `hashed % SLOTS` and then bumps `hashed`. Invariant:
// hashed <= written <= hashed + SLOTS. A slot of length -1 ends the session: the worker
// posts the digest. One session at a time per worker.

import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

import { assert } from '../util/assert.ts';

/** HASH_WORKER_SLOTS is the number of slots in a worker's ring. */
export const HASH_WORKER_SLOTS = 4;

/** HASH_WORKER_SLOT_BYTES is the size of one slot (4 MiB, one read or write unit). */
export const HASH_WORKER_SLOT_BYTES = 4 << 20;

/** HASH_WORKER_CONTENT_BYTES_MIN is the least content worth the worker (smaller is hashed inline). */
export const HASH_WORKER_CONTENT_BYTES_MIN = 8 << 20;

/** HASH_WORKER_WAIT_MS bounds one wait for a free slot, after which the session checks that its worker lives. */
export const HASH_WORKER_WAIT_MS = 1000;

// Atomics.waitAsync (ES2024) is in Node 24, not in the ES2023 library this project compiles against.
const waitAsync = (Atomics as unknown as {
  waitAsync(array: Int32Array, index: number, value: number, timeoutMs: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

// Control words.
const WRITTEN = 0;
const HASHED = 1;
const LENGTHS = 2;
const END_OF_SESSION = -1;

/** ContentHasher takes a snapshot's content in file order and gives its SHA-256. */
export interface ContentHasher {
  /** update hashes `bytes` next; they may be reused once the promise resolves. */
  update(bytes: Uint8Array): Promise<void>;
  /** digest ends the session and gives the SHA-256 of everything updated. */
  digest(): Promise<Uint8Array>;
  /** abandon ends the session without a digest (an operation that failed); harmless after digest. */
  abandon(): void;
}

/** InlineContentHasher hashes on the calling thread. */
export class InlineContentHasher implements ContentHasher {
  readonly #hash: Hash = createHash('sha256');

  async update(bytes: Uint8Array): Promise<void> {
    this.#hash.update(bytes);
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }

  abandon(): void {}
}

// The worker's code: plain JavaScript, evaluated, so it needs no file of its own.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const control = new Int32Array(workerData.control);
const data = new Uint8Array(workerData.data);
const { slots, slotBytes } = workerData;
parentPort.on('message', () => {
  const hash = createHash('sha256');
  for (;;) {
    const hashed = Atomics.load(control, ${HASHED});
    if (Atomics.load(control, ${WRITTEN}) === hashed) {
      Atomics.wait(control, ${WRITTEN}, hashed);
      continue;
    }
    const slot = hashed % slots;
    const length = Atomics.load(control, ${LENGTHS} + slot);
    if (length === ${END_OF_SESSION}) {
      Atomics.store(control, ${HASHED}, hashed + 1);
      parentPort.postMessage(hash.digest());
      return;
    }
    hash.update(data.subarray(slot * slotBytes, slot * slotBytes + length));
    Atomics.store(control, ${HASHED}, hashed + 1);
    Atomics.notify(control, ${HASHED});
  }
});
`;

/**
 * HashWorker is one worker thread that hashes one session at a time; a store keeps one and
 * falls back to InlineContentHasher while it is busy. It does not keep the process alive.
 */
export class HashWorker {
  readonly #control = new Int32Array(new SharedArrayBuffer((LENGTHS + HASH_WORKER_SLOTS) * Int32Array.BYTES_PER_ELEMENT));
  readonly #data = new Uint8Array(new SharedArrayBuffer(HASH_WORKER_SLOTS * HASH_WORKER_SLOT_BYTES));
  #worker: Worker | undefined;
  #session: WorkerSession | undefined;
  #failure: Error | undefined;
  #closed = false;

  /** busy tells whether a session is running (acquire() would give an inline hasher). */
  get busy(): boolean {
    return this.#session !== undefined;
  }

  /**
   * acquire starts a session on the worker, or gives an inline hasher when the worker is busy,
   * closed or broken. The hasher must end with digest() or abandon().
   */
  acquire(): ContentHasher {
    if (this.#session !== undefined || this.#closed || this.#failure !== undefined) return new InlineContentHasher();
    const worker = this.#start();
    Atomics.store(this.#control, WRITTEN, 0);
    Atomics.store(this.#control, HASHED, 0);
    const session = new WorkerSession(this.#control, this.#data, () => {
      if (this.#session !== session) return;
      this.#session = undefined;
      this.#worker?.unref();
    });
    this.#session = session;
    // Referenced while a session runs: the digest message is what the caller waits for, and
    // nothing else may be keeping the event loop alive then.
    worker.ref();
    worker.postMessage('start');
    return session;
  }

  /** close stops the worker; a session still running rejects. */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    this.#session?.fail(new Error('the hash worker was closed'));
    this.#session = undefined;
    if (worker !== undefined) await worker.terminate();
  }

  #start(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { control: this.#control.buffer, data: this.#data.buffer, slots: HASH_WORKER_SLOTS, slotBytes: HASH_WORKER_SLOT_BYTES },
    });
    worker.unref();
    worker.on('message', (digest: Uint8Array) => this.#session?.resolve(new Uint8Array(digest)));
    const broken = (error: Error): void => {
      this.#failure = error;
      this.#worker = undefined;
      this.#session?.fail(error);
      this.#session = undefined;
    };
    worker.on('error', broken);
    worker.on('exit', (code) => {
      if (!this.#closed) broken(new Error(`the hash worker exited with code ${code}`));
    });
    this.#worker = worker;
    return worker;
  }
}

// One session's side of the ring. Invariant: only this object writes slots while it is the session.
class WorkerSession implements ContentHasher {
  readonly #control: Int32Array;
  readonly #data: Uint8Array;
  readonly #ended: () => void;
  readonly #digest: Promise<Uint8Array>;
  #resolve: (digest: Uint8Array) => void = () => undefined;
  #reject: (error: Error) => void = () => undefined;
  #written = 0;
  #state: 'open' | 'ending' | 'done' = 'open';
  #failure: Error | undefined;

  constructor(control: Int32Array, data: Uint8Array, ended: () => void) {
    this.#control = control;
    this.#data = data;
    this.#ended = ended;
    this.#digest = new Promise<Uint8Array>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#digest.catch(() => undefined); // an abandoned session's outcome is nobody's
  }

  async update(bytes: Uint8Array): Promise<void> {
    assert(this.#state === 'open', 'ContentHasher.update after digest or abandon');
    for (let at = 0; at < bytes.byteLength; at += HASH_WORKER_SLOT_BYTES) {
      const piece = bytes.subarray(at, Math.min(bytes.byteLength, at + HASH_WORKER_SLOT_BYTES));
      const slot = await this.#freeSlot();
      this.#data.set(piece, slot * HASH_WORKER_SLOT_BYTES);
      this.#publish(slot, piece.byteLength);
    }
  }

  async digest(): Promise<Uint8Array> {
    assert(this.#state === 'open', 'ContentHasher.digest twice');
    await this.#end();
    return this.#digest;
  }

  abandon(): void {
    if (this.#state !== 'open') return;
    // The worker must still reach the end of the session before the next one starts.
    void this.#end().catch(() => undefined);
  }

  resolve(digest: Uint8Array): void {
    this.#state = 'done';
    this.#ended();
    this.#resolve(digest);
  }

  fail(error: Error): void {
    this.#state = 'done';
    this.#failure = error;
    this.#reject(error);
  }

  async #end(): Promise<void> {
    this.#state = 'ending';
    const slot = await this.#freeSlot();
    this.#publish(slot, END_OF_SESSION);
  }

  async #freeSlot(): Promise<number> {
    for (;;) {
      if (this.#failure !== undefined) throw this.#failure;
      const hashed = Atomics.load(this.#control, HASHED);
      if (this.#written - hashed < HASH_WORKER_SLOTS) return this.#written % HASH_WORKER_SLOTS;
      const waiting = waitAsync(this.#control, HASHED, hashed, HASH_WORKER_WAIT_MS);
      if (waiting.async) await waiting.value;
    }
  }

  #publish(slot: number, length: number): void {
    Atomics.store(this.#control, LENGTHS + slot, length);
    this.#written += 1;
    Atomics.store(this.#control, WRITTEN, this.#written);
    Atomics.notify(this.#control, WRITTEN);
  }
}

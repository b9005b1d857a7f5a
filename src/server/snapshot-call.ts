// Maintenance.Snapshot: the one server-streaming etcd call we serve. It sends a pinned
// snapshot file to the client as etcd's maintenanceServer.Snapshot does
// (server/etcdserver/api/v3rpc/maintenance.go): the file's bytes in chunks, each message
// saying how many bytes are still to come after it (remaining_bytes), then one last message
// whose blob is the SHA-256 of every byte sent, so that `etcdctl snapshot save` writes the
// file followed by its 32-byte digest. The file is ours (src/snapshot's format), not bbolt:
// etcdctl saves it, and `stratakv snapshot status|restore` read it.
//
// One call goes through: taking (backend.snapshot pins a snapshot) → sending (read whole
// blocks, hand them to grpc-js as messages, wait while the window is full) → trailer (the
// digest) → ended. A cancel (the client went away or its deadline passed), a read that fails
// its check, or a transport that stops taking bytes for SNAPSHOT_SEND_STALL_MS_MAX ends the
// call from any state; the snapshot is closed on every way out, so its lease is never held
// past the call. At most SNAPSHOT_CALLS_MAX calls run at once. Memory per call: one read
// (SNAPSHOT_READ_BYTES_MAX, or one longer block) plus at most SNAPSHOT_IN_FLIGHT_BYTES_MAX
// (and one message) handed to grpc-js and not yet written to the socket.

import { createHash } from 'node:crypto';

import type { handleServerStreamingCall, ServerWritableStream } from '@grpc/grpc-js';

import { ErrorCode, StrataError } from '../util/errors.ts';
import { ETCD_ERRORS, toGrpcStatus } from '../util/etcd-errors.ts';
import type { BackendSnapshot, EtcdBackend } from './backend.ts';
import { encodeHeader } from './etcd-request-mapping.ts';
import type { WireSnapshotResponse } from './etcd-wire.ts';
import type { EtcdServerLogger } from './unary-call.ts';
import { errorStatus, REQUIRE_LEADER_METADATA } from './unary-call.ts';

/**
 * SNAPSHOT_MESSAGE_BYTES_MAX bounds one message's blob (1 MiB). etcd sends 32 KiB; larger
 * messages cost less per byte, and 1 MiB stays well under the 4 MiB that most gRPC clients
 * accept by default.
 */
export const SNAPSHOT_MESSAGE_BYTES_MAX = 1024 * 1024;
/** SNAPSHOT_READ_BYTES_MAX is how much one read of the file asks for (whole blocks; one longer block comes alone). */
export const SNAPSHOT_READ_BYTES_MAX = 4 * 1024 * 1024;
/** SNAPSHOT_IN_FLIGHT_BYTES_MAX bounds the bytes handed to grpc-js and not yet written to the socket. */
export const SNAPSHOT_IN_FLIGHT_BYTES_MAX = 4 * 1024 * 1024;
/**
 * SNAPSHOT_SEND_STALL_MS_MAX: a call whose messages make no progress for this long is ended
 * with TIMEOUT, so a client that stops reading cannot pin a snapshot (and this call) forever.
 */
export const SNAPSHOT_SEND_STALL_MS_MAX = 30_000;

/**
 * SNAPSHOT_CALLS_MAX bounds the Snapshot calls one server runs at once (each holds a snapshot,
 * a read and a send window); more are refused with UNAVAILABLE, which clients may retry.
 */
export const SNAPSHOT_CALLS_MAX = 4;

const METHOD = 'Maintenance.Snapshot';
const NO_LEADER_STATUS = toGrpcStatus(new StrataError(ErrorCode.NO_LEADER, 'etcdserver: no leader'));

/**
 * snapshotCall serves Maintenance.Snapshot over `backend` (see the file comment). A call with
 * `hasleader: true` metadata is refused with UNAVAILABLE while this member knows no leader,
 * as etcd's stream interceptor does.
 */
export function snapshotCall(
  backend: EtcdBackend,
  logger: EtcdServerLogger | undefined,
  hasLeader: () => boolean,
): handleServerStreamingCall<unknown, WireSnapshotResponse> {
  // Invariant: 0 <= running <= SNAPSHOT_CALLS_MAX; a call counts from its start to its end.
  let running = 0;
  return (call) => {
    if (!hasLeader() && call.metadata.get(REQUIRE_LEADER_METADATA)[0] === 'true') {
      call.emit('error', NO_LEADER_STATUS);
      return;
    }
    if (running >= SNAPSHOT_CALLS_MAX) {
      call.emit('error', toGrpcStatus(new StrataError(ErrorCode.UNAVAILABLE, `${SNAPSHOT_CALLS_MAX} snapshots are being sent already; retry later`)));
      return;
    }
    running += 1;
    const controller = new AbortController();
    call.once('cancelled', () => controller.abort());
    sendSnapshot(call, backend, controller.signal)
      .then(
        () => call.end(),
        (error: unknown) => call.emit('error', errorStatus(METHOD, error, logger)),
      )
      .finally(() => {
        running -= 1;
      });
  };
}

async function sendSnapshot(call: ServerWritableStream<unknown, WireSnapshotResponse>, backend: EtcdBackend, signal: AbortSignal): Promise<void> {
  const snapshot = await backend.snapshot({ signal });
  const window = new SendWindow(call, signal);
  try {
    await streamFile(snapshot, backend, window, signal);
  } finally {
    window.dispose();
    await snapshot.close();
  }
}

async function streamFile(snapshot: BackendSnapshot, backend: EtcdBackend, window: SendWindow, signal: AbortSignal): Promise<void> {
  const { id, byteLength } = snapshot.info;
  const hash = createHash('sha256');
  let offset = 0;
  // etcd: "the first header in the snapshot stream indicates the point in time of the
  // snapshot": its revision is the snapshot's.
  let header: WireSnapshotResponse['header'] = encodeHeader(backend.header(), snapshot.info.revision);
  // Each read moves `offset` forward by at least one block (an empty read throws), so the
  // loop runs at most byteLength / SNAPSHOT_ALIGNMENT (4096) times.
  while (offset < byteLength) {
    if (signal.aborted) throw canceled();
    const bytes = await snapshot.read(offset, SNAPSHOT_READ_BYTES_MAX);
    if (bytes.byteLength === 0 || offset + bytes.byteLength > byteLength) {
      throw new StrataError(ErrorCode.CORRUPTION, `snapshot ${id}: a read at ${offset} answered ${bytes.byteLength} bytes of a ${byteLength}-byte file`, {
        details: { snapshotId: id, offset, byteLength },
      });
    }
    hash.update(bytes);
    for (let at = 0; at < bytes.byteLength; at += SNAPSHOT_MESSAGE_BYTES_MAX) {
      // A copy: the reader may reuse its buffer for the next read while grpc-js still holds
      // this message unserialized in its queue.
      const blob = Buffer.from(bytes.subarray(at, Math.min(bytes.byteLength, at + SNAPSHOT_MESSAGE_BYTES_MAX)));
      const remaining = byteLength - (offset + at + blob.byteLength);
      await window.send({ ...(header === undefined ? {} : { header }), remaining_bytes: remaining, blob, version: snapshot.version }, blob.byteLength);
      header = undefined;
    }
    offset += bytes.byteLength;
  }
  await window.send({ remaining_bytes: 0, blob: hash.digest(), version: snapshot.version }, 0);
}

// SendWindow hands messages to grpc-js and waits while more than SNAPSHOT_IN_FLIGHT_BYTES_MAX
// are not yet written or grpc-js asks for a drain. grpc-js calls a write's callback once the
// bytes reach the HTTP/2 stream, and never after a cancel: a wait also ends on abort, and on
// SNAPSHOT_SEND_STALL_MS_MAX without progress.
class SendWindow {
  readonly #call: ServerWritableStream<unknown, WireSnapshotResponse>;
  readonly #signal: AbortSignal;
  // Invariant: inFlightBytes is the blob bytes of messages written and not yet called back.
  #inFlightBytes = 0;
  #needsDrain = false;
  #wake: (() => void) | undefined;
  readonly #onDrain = (): void => {
    this.#needsDrain = false;
    this.#wake?.();
  };
  readonly #onAbort = (): void => this.#wake?.();

  constructor(call: ServerWritableStream<unknown, WireSnapshotResponse>, signal: AbortSignal) {
    this.#call = call;
    this.#signal = signal;
    call.on('drain', this.#onDrain);
    signal.addEventListener('abort', this.#onAbort);
  }

  async send(message: WireSnapshotResponse, blobBytes: number): Promise<void> {
    if (this.#signal.aborted) throw canceled();
    this.#inFlightBytes += blobBytes;
    const accepted = this.#call.write(message, () => {
      this.#inFlightBytes -= blobBytes;
      this.#wake?.();
    });
    if (!accepted) this.#needsDrain = true;
    await this.#waitForRoom();
  }

  dispose(): void {
    this.#call.off('drain', this.#onDrain);
    this.#signal.removeEventListener('abort', this.#onAbort);
    this.#wake = undefined;
  }

  #hasRoom(): boolean {
    return !this.#needsDrain && this.#inFlightBytes <= SNAPSHOT_IN_FLIGHT_BYTES_MAX;
  }

  #waitForRoom(): Promise<void> {
    if (this.#hasRoom()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (error?: StrataError): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        if (error === undefined) resolve();
        else reject(error);
      };
      const armStall = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          finish(new StrataError(ErrorCode.TIMEOUT, `the client took no snapshot bytes for ${SNAPSHOT_SEND_STALL_MS_MAX} ms`));
        }, SNAPSHOT_SEND_STALL_MS_MAX);
      };
      // Woken by a write's callback, a drain or the abort: each is progress or the end.
      this.#wake = () => {
        if (this.#signal.aborted) finish(canceled());
        else if (this.#hasRoom()) finish();
        else armStall();
      };
      armStall();
    });
  }
}

function canceled(): StrataError {
  return new StrataError(ErrorCode.CANCELED, ETCD_ERRORS.CANCELED.message ?? 'request canceled');
}

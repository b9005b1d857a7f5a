// A CopyTarget over one real KvStateMachine (memory-level), without Raft or gRPC: each mirror
// request is encoded as a log entry and applied, as a member applies it. The copier's tests
// use it to run against the real mirror semantics (compare-and-set, counters, refusals) with
// faults of their own: an answer lost after the entry applied, an entry never applied.

import { EntryType } from '../../../src/raft/types.ts';
import { encodeKvCommand, openMemoryKvStateMachine } from '../../../src/storage/index.ts';
import type { KvStateMachine, MirrorRequest, MirrorResponse } from '../../../src/storage/index.ts';
import type { CopyTarget, KeyRange, PinnedSourceView, SourcePage, TargetView } from '../../../src/migrate/copy/index.ts';
import type { DigestView } from '../../../src/storage/index.ts';
import { ErrorCode, StrataError } from '../../../src/util/errors.ts';

/** TargetFault is what happens to the next mirror request: lost before applying, or applied with its answer lost. */
export type TargetFault = 'drop-request' | 'drop-answer';

/** StateMachineTarget is the CopyTarget over a KvStateMachine; `faults` are consumed one per mirror request. */
export class StateMachineTarget implements CopyTarget {
  readonly requestBytesMax: number;
  readonly faults: TargetFault[] = [];
  mirrorRequests = 0;
  #index = 0;
  #nextId = 1;

  readonly kv: KvStateMachine;

  private constructor(kv: KvStateMachine, requestBytesMax: number) {
    this.kv = kv;
    this.requestBytesMax = requestBytesMax;
  }

  static async open(requestBytesMax = 256 * 1024): Promise<StateMachineTarget> {
    return new StateMachineTarget(await openMemoryKvStateMachine(), requestBytesMax);
  }

  async read(): Promise<TargetView> {
    return { state: this.kv.mirrorState(), revision: this.kv.revision() };
  }

  async mirror(request: MirrorRequest): Promise<MirrorResponse> {
    this.mirrorRequests += 1;
    const fault = this.faults.shift();
    if (fault === 'drop-request') throw new StrataError(ErrorCode.TIMEOUT, 'test: the request was lost before it was proposed');
    const response = await this.#apply(request);
    if (fault === 'drop-answer') throw new StrataError(ErrorCode.TIMEOUT, 'test: the answer was lost after the entry applied');
    return response as MirrorResponse;
  }

  /** applyClient applies a client request (as a client of the KV API would send it). */
  async applyClient(request: Parameters<typeof encodeKvCommand>[0]['request']): Promise<unknown> {
    return await this.#apply(request);
  }

  async page(range: KeyRange, limit: number, options: { readonly keysOnly: boolean }): Promise<SourcePage> {
    const answer = await this.kv.range({ type: 'range', key: range.key, rangeEnd: range.rangeEnd, limit, keysOnly: options.keysOnly });
    return { kvs: answer.kvs, more: answer.more, revision: answer.revision };
  }

  async count(range: KeyRange): Promise<number> {
    return (await this.kv.range({ type: 'range', key: range.key, rangeEnd: range.rangeEnd, countOnly: true })).count;
  }

  /** Views pinned by pin(), by pin id (a test may read them as a diff would). */
  readonly pins = new Map<string, DigestView>();

  async pin(): Promise<PinnedSourceView> {
    const view = this.kv.openDigestView();
    const pinId = `a${this.pins.size + 1}`;
    this.pins.set(pinId, view);
    return { endpoint: 'state-machine', pinId, index: view.appliedIndex, revision: view.revision };
  }

  async release(pin: PinnedSourceView): Promise<void> {
    await this.pins.get(pin.pinId)?.close();
    this.pins.delete(pin.pinId);
  }

  close(): void {
    for (const view of this.pins.values()) void view.close();
    this.pins.clear();
  }

  async #apply(request: Parameters<typeof encodeKvCommand>[0]['request']): Promise<unknown> {
    const id = this.#nextId++;
    this.#index += 1;
    const entry = { index: this.#index, term: 1, type: EntryType.Normal, data: encodeKvCommand({ id, request }) };
    const [result] = await this.kv.apply([entry]);
    if (result?.error !== undefined) throw result.error;
    return result?.response;
  }
}

// The integrity methods of stratakv.admin.Admin (proto/stratakv/admin.proto): Check asks the
// member it reaches for a cross-replica checkpoint (RaftNode.checkIntegrity) and answers every
// member's digest at that index and the verdict; Rebuild has the member it reaches discard its
// state and take the leader's (RaftNode.rebuildState). Errors travel as the other admin
// methods' do (the catalogue code in the `stratakv-code` trailer).

import type { handleUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';

import type { CheckpointState, DigestReport, RebuildReport } from '../node/index.ts';
import { unary } from './diff-service.ts';
import type { EtcdServerLogger } from './unary-call.ts';

/** CHECK_TIMEOUT_MS_MAX bounds a Check's or a Rebuild's timeout_ms. */
export const CHECK_TIMEOUT_MS_MAX = 10 * 60_000;

/** IntegrityNode is what the service needs of a member (RaftNode has it). */
export interface IntegrityNode {
  readonly memberId: number;
  checkIntegrity(options?: { readonly timeoutMs?: number; readonly signal?: AbortSignal }): Promise<CheckpointState>;
  rebuildState(options?: { readonly timeoutMs?: number; readonly signal?: AbortSignal }): Promise<RebuildReport>;
}

/** WireDigestReport is admin.proto's DigestReportWire. */
export interface WireDigestReport {
  member_id: number;
  revision: number;
  key_count: number;
  digest: string;
}

/** WireCheckResponse is admin.proto's CheckResponse. */
export interface WireCheckResponse {
  index: number;
  verdict: string;
  voters: number[];
  learners: number[];
  reports: WireDigestReport[];
  corrupt: number[];
  majority: WireDigestReport | null;
  member_id: number;
}

/** WireRebuildResponse is admin.proto's RebuildResponse. */
export interface WireRebuildResponse {
  snapshot_id: string;
  snapshot_index: number;
  check: WireCheckResponse;
  agrees: boolean;
  alarm_cleared: boolean;
}

/** toWireCheck turns a checkpoint's state into a CheckResponse. */
export function toWireCheck(state: CheckpointState, memberId: number): WireCheckResponse {
  const report = (item: Pick<DigestReport, 'revision' | 'keyCount' | 'digest'> & { memberId?: number }): WireDigestReport => ({
    member_id: item.memberId ?? 0,
    revision: item.revision,
    key_count: item.keyCount,
    digest: item.digest,
  });
  return {
    index: state.index,
    verdict: state.verdict,
    voters: [...state.voters],
    learners: [...state.learners],
    reports: state.reports.map((item) => report(item)),
    corrupt: [...state.corrupt],
    majority: state.majority === undefined ? null : report(state.majority),
    member_id: memberId,
  };
}

/** createIntegrityService implements Check and Rebuild over `node`. */
export function createIntegrityService(options: { readonly node: IntegrityNode; readonly logger?: EtcdServerLogger | undefined }): UntypedServiceImplementation {
  const { node, logger } = options;
  const timeoutOf = (request: { timeout_ms?: number }): number | undefined => {
    const value = request.timeout_ms ?? 0;
    return value > 0 ? Math.min(value, CHECK_TIMEOUT_MS_MAX) : undefined;
  };
  const check: handleUnaryCall<{ timeout_ms?: number }, WireCheckResponse> = unary('Admin.Check', logger, async (request: { timeout_ms?: number }, signal) => {
    const timeoutMs = timeoutOf(request);
    const state = await node.checkIntegrity({ signal, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
    return toWireCheck(state, node.memberId);
  });
  const rebuild: handleUnaryCall<{ timeout_ms?: number }, WireRebuildResponse> = unary('Admin.Rebuild', logger, async (request: { timeout_ms?: number }, signal) => {
    const timeoutMs = timeoutOf(request);
    const report = await node.rebuildState({ signal, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
    return { snapshot_id: report.snapshotId, snapshot_index: report.snapshotIndex, check: toWireCheck(report.checkpoint, node.memberId), agrees: report.agrees, alarm_cleared: report.alarmCleared };
  });
  return { Check: check, Rebuild: rebuild };
}

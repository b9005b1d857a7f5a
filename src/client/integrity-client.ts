// IntegrityClient: the Admin service's integrity methods (proto/stratakv/admin.proto) for
// `stratakv check` and `stratakv member rebuild`, and for embedders. check() asks the first
// endpoint that answers to run a checkpoint and answers every member's digest at its index;
// rebuild() asks one member to take the leader's state. Errors are StrataErrors with the
// member's catalogue code (the `stratakv-code` trailer) and the endpoint.

import { ErrorCode, StrataError } from '../util/errors.ts';
import { AdminCalls } from './admin-calls.ts';

/** IntegrityReport is one member's state digest at a checkpoint. */
export interface IntegrityReport {
  readonly memberId: number;
  readonly revision: number;
  readonly keyCount: number;
  /** The full root of the member's state digest, 32 hex digits. */
  readonly digest: string;
}

/** IntegrityCheck is a checkpoint's reports and verdict. */
export interface IntegrityCheck {
  readonly index: number;
  readonly verdict: 'agreed' | 'corrupt-members' | 'no-majority' | 'pending';
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  readonly reports: readonly IntegrityReport[];
  readonly corrupt: readonly number[];
  readonly majority: Omit<IntegrityReport, 'memberId'> | undefined;
  /** The member that ran it, and its endpoint. */
  readonly memberId: number;
  readonly endpoint: string;
}

/** RebuildResult is what a member's rebuild did. */
export interface RebuildResult {
  readonly snapshotId: string;
  readonly snapshotIndex: number;
  readonly check: IntegrityCheck;
  readonly agrees: boolean;
  readonly alarmCleared: boolean;
}

interface WireReport {
  member_id: number;
  revision: number;
  key_count: number;
  digest: string;
}

interface WireCheck {
  index: number;
  verdict: string;
  voters: number[];
  learners: number[];
  reports: WireReport[];
  corrupt: number[];
  majority: WireReport | null;
  member_id: number;
}

/** IntegrityClient calls Check and Rebuild (see the file comment). */
export class IntegrityClient {
  readonly #calls = new AdminCalls(['Check', 'Rebuild']);

  /** check runs a checkpoint through the first of `endpoints` that answers. */
  async check(endpoints: readonly string[], options: { readonly timeoutMs: number }): Promise<IntegrityCheck> {
    if (endpoints.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'check needs at least one endpoint', { details: { field: 'endpoints' } });
    let last: StrataError | undefined;
    for (const endpoint of endpoints) {
      try {
        const wire = await this.#calls.call<WireCheck>(endpoint, 'Check', { timeout_ms: options.timeoutMs }, options.timeoutMs + 5_000);
        return fromWireCheck(wire, endpoint);
      } catch (error) {
        last = error as StrataError;
        // Only an endpoint that cannot answer is passed over; an answer's error is the answer.
        if (!(error instanceof StrataError) || ![ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.CORRUPT_ALARM, ErrorCode.MEMBER_REMOVED, ErrorCode.STOPPED].includes(error.code as never)) throw error;
      }
    }
    throw last ?? new StrataError(ErrorCode.UNAVAILABLE, 'no endpoint answered');
  }

  /** rebuild asks the member at `endpoint` to take the leader's state. */
  async rebuild(endpoint: string, options: { readonly timeoutMs: number }): Promise<RebuildResult> {
    const wire = await this.#calls.call<{ snapshot_id: string; snapshot_index: number; check: WireCheck; agrees: boolean; alarm_cleared: boolean }>(
      endpoint,
      'Rebuild',
      { timeout_ms: options.timeoutMs },
      options.timeoutMs + 5_000,
    );
    return { snapshotId: wire.snapshot_id, snapshotIndex: wire.snapshot_index, check: fromWireCheck(wire.check, endpoint), agrees: wire.agrees, alarmCleared: wire.alarm_cleared };
  }

  /** close closes the connections. */
  close(): void {
    this.#calls.close();
  }
}

function fromWireCheck(wire: WireCheck, endpoint: string): IntegrityCheck {
  const report = (item: WireReport): IntegrityReport => ({ memberId: item.member_id, revision: item.revision, keyCount: item.key_count, digest: item.digest });
  const verdicts = ['agreed', 'corrupt-members', 'no-majority', 'pending'] as const;
  const verdict = verdicts.find((candidate) => candidate === wire.verdict);
  if (verdict === undefined) throw new StrataError(ErrorCode.UNAVAILABLE, `${endpoint} answered an unknown verdict ${JSON.stringify(wire.verdict)}`);
  const majority = wire.majority === null || wire.majority.digest === '' ? undefined : { revision: wire.majority.revision, keyCount: wire.majority.key_count, digest: wire.majority.digest };
  return {
    index: wire.index,
    verdict,
    voters: wire.voters,
    learners: wire.learners,
    reports: wire.reports.map(report),
    corrupt: wire.corrupt,
    majority,
    memberId: wire.member_id,
    endpoint,
  };
}

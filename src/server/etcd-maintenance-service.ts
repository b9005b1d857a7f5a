// etcdserverpb.Maintenance: Status, MoveLeader, Alarm, Defragment, HashKV and Snapshot
// (snapshot-call.ts) over an EtcdBackend. The other methods are not registered, so grpc-js
// answers them UNIMPLEMENTED.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';

import type { AlarmType } from '../node/index.ts';
import { ErrorCode, StrataError } from '../util/errors.ts';
import type { AlarmCall, EtcdBackend } from './backend.ts';
import { encodeHeader } from './etcd-request-mapping.ts';
import type { WireAlarmRequest, WireAlarmResponse, WireDefragmentResponse, WireHashKVRequest, WireHashKVResponse, WireMoveLeaderRequest, WireStatusResponse } from './etcd-wire.ts';
import { WireAlarmAction, WireAlarmType } from './etcd-wire.ts';
import { snapshotCall } from './snapshot-call.ts';
import type { EtcdServerLogger } from './unary-call.ts';
import { unaryCall } from './unary-call.ts';

/** createMaintenanceService implements etcdserverpb.Maintenance's Status, MoveLeader, Alarm, Defragment and Snapshot. */
export function createMaintenanceService(backend: EtcdBackend, logger: EtcdServerLogger | undefined): UntypedServiceImplementation {
  const hasLeader = (): boolean => backend.hasLeader();
  const status = async (_wire: unknown, signal: AbortSignal): Promise<WireStatusResponse> => {
    const answer = await backend.status({ signal });
    const info = backend.header();
    return {
      header: encodeHeader(info, info.revision),
      version: answer.version,
      dbSize: answer.dbSizeBytes,
      leader: answer.leaderId,
      raftIndex: answer.raftIndex,
      raftTerm: answer.raftTerm,
      raftAppliedIndex: answer.raftAppliedIndex,
      errors: answer.errors,
      dbSizeInUse: answer.dbSizeBytes,
      isLearner: answer.isLearner,
    };
  };

  const moveLeader = async (wire: WireMoveLeaderRequest, signal: AbortSignal) => {
    await backend.moveLeader(wire.targetID ?? 0, { signal });
    const info = backend.header();
    return { header: encodeHeader(info, info.revision) };
  };

  const alarm = async (wire: WireAlarmRequest, signal: AbortSignal): Promise<WireAlarmResponse> => {
    const alarms = await backend.alarm(decodeAlarmRequest(wire), { signal });
    const info = backend.header();
    return { header: encodeHeader(info, info.revision), alarms: alarms.map((record) => ({ memberID: record.memberId, alarm: WireAlarmType[record.alarm] })) };
  };

  const defragment = async (_wire: unknown, signal: AbortSignal): Promise<WireDefragmentResponse> => {
    await backend.defragment({ signal });
    const info = backend.header();
    return { header: encodeHeader(info, info.revision) };
  };

  const hashKv = async (wire: WireHashKVRequest, signal: AbortSignal): Promise<WireHashKVResponse> => {
    const answer = await backend.hashKv(Math.max(0, Number(wire.revision ?? 0)), { signal });
    return { header: encodeHeader(backend.header(), answer.revision), hash: answer.hash, compactRevision: answer.compactRevision };
  };

  return {
    Status: unaryCall('Maintenance.Status', status, logger, hasLeader),
    HashKV: unaryCall('Maintenance.HashKV', hashKv, logger, hasLeader),
    MoveLeader: unaryCall('Maintenance.MoveLeader', moveLeader, logger, hasLeader),
    Alarm: unaryCall('Maintenance.Alarm', alarm, logger, hasLeader),
    Defragment: unaryCall('Maintenance.Defragment', defragment, logger, hasLeader),
    Snapshot: snapshotCall(backend, logger, hasLeader),
  };
}

const ALARM_TYPE_BY_WIRE: ReadonlyMap<number, AlarmType | undefined> = new Map<number, AlarmType | undefined>([
  [WireAlarmType.NONE, undefined],
  [WireAlarmType.NOSPACE, 'NOSPACE'],
  [WireAlarmType.CORRUPT, 'CORRUPT'],
]);
const ALARM_ACTION_BY_WIRE: ReadonlyMap<number, AlarmCall['action']> = new Map<number, AlarmCall['action']>([
  [WireAlarmAction.GET, 'get'],
  [WireAlarmAction.ACTIVATE, 'activate'],
  [WireAlarmAction.DEACTIVATE, 'deactivate'],
]);

// decodeAlarmRequest maps etcd's AlarmRequest (absent fields are 0: GET, member 0, NONE);
// enum values etcd does not define, and member ids past 2^53, are INVALID_ARGUMENT.
function decodeAlarmRequest(wire: WireAlarmRequest): AlarmCall {
  const action = ALARM_ACTION_BY_WIRE.get(wire.action ?? WireAlarmAction.GET);
  if (action === undefined) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `unknown alarm action ${String(wire.action)}`);
  const alarmNumber = wire.alarm ?? WireAlarmType.NONE;
  if (!ALARM_TYPE_BY_WIRE.has(alarmNumber)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `unknown alarm type ${alarmNumber}`);
  const memberId = wire.memberID ?? 0;
  if (!Number.isSafeInteger(memberId) || memberId < 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `alarm member id ${String(wire.memberID)} is out of range`);
  return { action, memberId, alarm: ALARM_TYPE_BY_WIRE.get(alarmNumber) };
}

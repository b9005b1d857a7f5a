// etcdserverpb.Maintenance: Status, MoveLeader and Snapshot (snapshot-call.ts) over an
// EtcdBackend. The other methods are not registered, so grpc-js answers them UNIMPLEMENTED.

import type { UntypedServiceImplementation } from '@grpc/grpc-js';

import type { EtcdBackend } from './backend.ts';
import { encodeHeader } from './etcd-request-mapping.ts';
import type { WireMoveLeaderRequest, WireStatusResponse } from './etcd-wire.ts';
import { snapshotCall } from './snapshot-call.ts';
import type { EtcdServerLogger } from './unary-call.ts';
import { unaryCall } from './unary-call.ts';

/** createMaintenanceService implements etcdserverpb.Maintenance's Status, MoveLeader and Snapshot. */
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

  return {
    Status: unaryCall('Maintenance.Status', status, logger, hasLeader),
    MoveLeader: unaryCall('Maintenance.MoveLeader', moveLeader, logger, hasLeader),
    Snapshot: snapshotCall(backend, logger, hasLeader),
  };
}

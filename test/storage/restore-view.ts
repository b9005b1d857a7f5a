// restoreView fills a fresh database with what a snapshot view of a state machine holds (its
// records, digest and mirror state, read whole), as a member restores a snapshot: the storage
// tests use it to check that a restored store is the one captured.

import type { KvLevel, KvSnapshotRecord, KvSnapshotView } from '../../src/storage/index.ts';
import { KvStateMachine } from '../../src/storage/index.ts';

/** restoreView restores `view` into `db` (empty) and answers the restored state machine. */
export async function restoreView(view: KvSnapshotView, db: KvLevel): Promise<KvStateMachine> {
  const records: KvSnapshotRecord[] = [];
  for await (const batch of view.records()) records.push(...batch);
  return await KvStateMachine.restore(db, {
    appliedIndex: view.appliedIndex,
    appliedTerm: view.appliedTerm,
    revision: view.revision,
    records: (async function* () {
      yield records;
    })(),
    keyCount: records.length,
    digest: view.digest,
    mirror: view.mirror,
  });
}

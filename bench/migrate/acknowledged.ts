// After a move: is every acknowledged put there? Each client wrote `${prefix}/c${client}/${seq}`
// one put after another, so its rows in the load's report, in order, are its sequence numbers.
// The keys each client's prefix holds (a keys-only range on the members after the move) must
// include every acknowledged one; the others found may only be ambiguous puts that happened.
import { EtcdClient } from '../../src/client/index.ts';
import { OUTCOME_AMBIGUOUS, OUTCOME_OK, type LoadReport } from './load-types.ts';
import type { AcknowledgedCheck } from './state.ts';

const READ_TIMEOUT_MS = 60_000;

/** checkAcknowledged reads every client's keys through `endpoints` and compares them with the report. */
export async function checkAcknowledged(endpoints: readonly string[], keyPrefix: string, report: LoadReport): Promise<AcknowledgedCheck> {
  const client = new EtcdClient({ endpoints, timeoutMs: READ_TIMEOUT_MS });
  const decoder = new TextDecoder();
  let missing = 0;
  let extra = 0;
  let acknowledged = 0;
  try {
    for (let index = 0; index < report.acknowledgedByClient.length; index += 1) {
      const prefix = `${keyPrefix}/c${index}/`;
      const answer = await client.get(prefix, { prefix: true, keysOnly: true });
      const found = new Set(answer.kvs.map((kv) => decoder.decode(kv.key)));
      let seq = 0;
      for (let row = 0; row < report.clientOf.length; row += 1) {
        if (report.clientOf[row] !== index) continue;
        const key = `${prefix}${seq}`;
        const outcome = report.outcomes[row];
        if (outcome === OUTCOME_OK) {
          acknowledged += 1;
          if (!found.delete(key)) missing += 1;
        } else if (outcome === OUTCOME_AMBIGUOUS) found.delete(key);
        seq += 1;
      }
      // What is left was never put by this client as far as the report knows.
      extra += found.size;
    }
  } catch (error) {
    return { checked: false, missing: 0, extra: 0, text: `not checked: ${error instanceof Error ? error.message : String(error)}` };
  } finally {
    client.close();
  }
  return {
    checked: true,
    missing,
    extra,
    text: `${acknowledged} acknowledged puts: ${missing} missing after the move${extra > 0 ? `, ${extra} keys no put of the report made` : ''}`,
  };
}

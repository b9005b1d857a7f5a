// /health as etcd 3.5 answers it (etcdserver/api/etcdhttp/metrics.go), on the client URLs and
// the metrics URLs: {"health":"true","reason":""} with 200, or {"health":"false","reason":…}
// with 503 when an alarm is raised (unless ?exclude=NAME leaves it out), when the member
// knows no leader, or when a linearizable read does not come back in time (?serializable=true
// skips the read: the member only has to know a leader, as etcd's).

/** HEALTH_READ_TIMEOUT_MS bounds the read /health makes (etcd: 1 s past its request timeout; ours is bounded the same). */
export const HEALTH_READ_TIMEOUT_MS = 1_000;

/** HealthSource is what /health asks of a member. */
export interface HealthSource {
  /** The alarm types raised in the cluster (e.g. NOSPACE, CORRUPT), as applied here. */
  alarmTypes(): readonly string[];
  hasLeader(): boolean;
  /** A linearizable read through Raft; rejects when it cannot be served within `timeoutMs`. */
  linearizableRead(timeoutMs: number): Promise<void>;
}

/** HealthAnswer is the JSON body of /health. */
export interface HealthAnswer {
  readonly health: 'true' | 'false';
  readonly reason: string;
}

/** checkHealth answers /health for `query` (exclude=ALARM…, serializable=true). */
export async function checkHealth(source: HealthSource, query: URLSearchParams): Promise<HealthAnswer> {
  const excluded = new Set(query.getAll('exclude').map((name) => name.toUpperCase()));
  const raised = source.alarmTypes().filter((alarm) => !excluded.has(alarm));
  if (raised.length > 0) return { health: 'false', reason: `ALARM ${[...new Set(raised)].join(',')}` };
  if (!source.hasLeader()) return { health: 'false', reason: 'RAFT NO LEADER' };
  if (query.get('serializable') === 'true') return { health: 'true', reason: '' };
  try {
    await source.linearizableRead(HEALTH_READ_TIMEOUT_MS);
  } catch (error) {
    return { health: 'false', reason: `QGET ERROR: ${(error as Error).message}` };
  }
  return { health: 'true', reason: '' };
}

// The messages between bench:migrate and its load process (load-worker.ts).

/** LoadStart starts the write load: `clients` EtcdClients, each putting one value after another. */
export interface LoadStart {
  readonly type: 'start';
  /** endpoints are the members the clients start from; auto-sync moves them on. */
  readonly endpoints: readonly string[];
  readonly clients: number;
  readonly valueBytes: number;
  /** autoSyncIntervalMs: EtcdClient's auto-sync interval (follows the migration). */
  readonly autoSyncIntervalMs: number;
  /** timeoutMs: each put's deadline, retries included. */
  readonly timeoutMs: number;
  /**
   * failOverOnMirror: EtcdClient's option — given both clusters of a copy, a read-only mirror's
   * refusal moves a put on to the other cluster, so the writers follow `copy switch`; moved
   * (LoadMove) onto a mirror a switch is making writable, a put retries its refusal until the
   * switch ends or the deadline passes (default off).
   */
  readonly failOverOnMirror?: boolean;
  /** keyPrefix: client c writes `${keyPrefix}/c${c}/${seq}`, one fresh key per put. */
  readonly keyPrefix: string;
  /**
   * mix: 'puts' (the default) puts a fresh key each time; 'mixed' makes 6 of every 10 writes of
   * a client such puts, 2 deletes (of the key it put 5 writes before) and 2 Txns (if the key of
   * 3 writes before exists: put a fresh key and delete the one of 4 writes before; otherwise
   * put the fresh key): bench:migrate-copy's load, as issue 16 asks (puts, deletes, txns).
   * Acknowledged-key checks (acknowledged.ts) assume 'puts'.
   */
  readonly mix?: 'puts' | 'mixed';
  /** durationMsMax and opsMax bound the load if no stop comes. */
  readonly durationMsMax: number;
  readonly opsMax: number;
}

/** LoadStop ends the load: each client finishes the put it has in flight and stops. */
export interface LoadStop {
  readonly type: 'stop';
}

/**
 * LoadMove points every client at other endpoints (EtcdClient.setEndpoints), as an application
 * moves its writers when `copy switch` of an etcd source asks for it: puts from then on go
 * there; a put in flight finishes where it is. The load answers LoadMoved.
 */
export interface LoadMove {
  readonly type: 'move';
  readonly endpoints: readonly string[];
}

/** LoadPace makes every client wait `delayMs` after each put (0: none), to hold the load to a rate. */
export interface LoadPace {
  readonly type: 'pace';
  readonly delayMs: number;
}

/** LoadCommand is what the bench sends. */
export type LoadCommand = LoadStart | LoadStop | LoadMove | LoadPace;

/** OUTCOME_* are the values of LoadReport.outcomes. */
export const OUTCOME_OK = 0;
export const OUTCOME_FAILED = 1;
export const OUTCOME_AMBIGUOUS = 2;

/** LoadFailureSample is one failed or ambiguous put (the first FAILURE_SAMPLES_MAX are kept). */
export interface LoadFailureSample {
  readonly client: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly code: string;
  readonly message: string;
  readonly ambiguous: boolean;
}

/** LoadReport is everything the load did: one row per put, in the order the puts ended. */
export interface LoadReport {
  readonly type: 'report';
  /** startsMs and endsMs are epoch milliseconds (performance.timeOrigin + performance.now()). */
  readonly startsMs: Float64Array;
  readonly endsMs: Float64Array;
  /** outcomes: OUTCOME_OK, OUTCOME_FAILED (refused: the put did not happen) or OUTCOME_AMBIGUOUS. */
  readonly outcomes: Uint8Array;
  readonly clientOf: Uint8Array;
  /** acknowledged and ambiguous count each client's puts, for the check that acknowledged writes are there. */
  readonly acknowledgedByClient: readonly number[];
  readonly ambiguousByClient: readonly number[];
  /** errors counts failures by "CODE: message". */
  readonly errors: Readonly<Record<string, number>>;
  readonly failures: readonly LoadFailureSample[];
  /** endpointsAtEnd: each client's endpoints when it stopped (auto-sync's doing). */
  readonly endpointsAtEnd: readonly (readonly string[])[];
  /** stoppedBy: 'stop' (the bench), 'duration' or 'ops' (a bound). */
  readonly stoppedBy: 'stop' | 'duration' | 'ops';
}

/** LoadReady says the clients are made and the first puts are on their way. */
export interface LoadReady {
  readonly type: 'ready';
  readonly atMs: number;
}

/** LoadMoved says every client was pointed at the endpoints of a LoadMove, at `atMs` (epoch ms). */
export interface LoadMoved {
  readonly type: 'moved';
  readonly atMs: number;
}

/** LoadError is a load that could not run. */
export interface LoadError {
  readonly type: 'error';
  readonly message: string;
}

/** LoadMessage is what the load process sends. */
export type LoadMessage = LoadReport | LoadReady | LoadMoved | LoadError;

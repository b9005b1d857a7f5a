// The messages between the benchmark and its client-harness processes (load-client.ts).

/** LoadJob is one closed-loop run of the harness. */
export interface LoadJob {
  readonly type: 'job';
  /** operation: Put of a fresh key per request, or a linearizable Range of a preloaded key. */
  readonly operation: 'put' | 'get';
  /** endpoints: channels are spread over these in turn (one endpoint: all go to it). */
  readonly endpoints: readonly string[];
  /** channels is the number of grpc-js channels (HTTP/2 connections) this process opens. */
  readonly channels: number;
  /** concurrency is the number of requests outstanding at any time (closed loop). */
  readonly concurrency: number;
  readonly warmupMs: number;
  /** durationMs bounds the measured window; a "stop" message or requestsMax ends it sooner. */
  readonly durationMs: number;
  readonly requestsMax: number;
  /** deadlineMs is each request's gRPC deadline; 0 sets none (a per-call timer costs ~10 µs). */
  readonly deadlineMs: number;
  /** keyPrefix makes put keys unique ("bench/<keyPrefix>/<seq>"); gets read "bench/<getPrefix>/<seq mod getKeys>". */
  readonly keyPrefix: string;
  readonly getPrefix: string;
  readonly getKeys: number;
  readonly valueBytes: number;
  /** recordCompletions returns the time of every successful completion and every failure. */
  readonly recordCompletions: boolean;
}

/** StopMessage ends the current job's measured window early. */
export interface StopMessage {
  readonly type: 'stop';
}

/** Failure is one failed request: when it ended (epoch ms), how long it took, and the error. */
export interface Failure {
  readonly atMs: number;
  readonly latencyMs: number;
  readonly error: string;
  readonly ambiguous: boolean;
}

/** LoadResult is what one harness process measured in its window. */
export interface LoadResult {
  readonly type: 'result';
  readonly windowMs: number;
  /** windowStartMs and windowEndMs are epoch milliseconds (performance.timeOrigin-based). */
  readonly windowStartMs: number;
  readonly windowEndMs: number;
  /** completed counts successes that ended inside the window; latenciesMs are theirs. */
  readonly completed: number;
  readonly latenciesMs: Float64Array;
  /** errors counts failures in the window by "CODE: details"; ambiguous ones are also in ambiguous. */
  readonly errors: Record<string, number>;
  readonly ambiguous: number;
  readonly failed: number;
  /** wrongAnswers counts checked responses that did not hold what was asked for. */
  readonly wrongAnswers: number;
  readonly sent: number;
  /** completionsMs (epoch ms of each success, whole run) and failures when recordCompletions. */
  readonly completionsMs: Float64Array;
  readonly failures: readonly Failure[];
  /** unfinished counts requests still outstanding when the process gave up waiting. */
  readonly unfinished: number;
  /** cpuMs is the CPU time (user + system) this process used during the window. */
  readonly cpuMs: number;
}

/** LoadEvent is a progress message from the harness: the measured window has started. */
export interface LoadEvent {
  readonly type: 'measuring';
  readonly atMs: number;
}

/** LoadFailure is a job the harness could not run. */
export interface LoadFailure {
  readonly type: 'failure';
  readonly message: string;
}

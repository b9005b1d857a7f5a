// The client harness: one process, forked by harness.ts, that runs closed-loop load jobs over
// @grpc/grpc-js and reports what it measured. The same code and the same request bytes go to
// every target (echo, etcd, stratakv); only the endpoints differ.
//
// A job keeps `concurrency` requests outstanding over `channels` grpc-js channels (one HTTP/2
// connection each, taken in turn). After `warmupMs` the measured window opens; it closes after
// `durationMs`, after `requestsMax` completions, or on a "stop" message. Every success that
// ends inside the window counts, with its latency; afterwards the process stops issuing and
// waits (bounded) for the outstanding requests. Failures are counted by gRPC code and text;
// those whose outcome the client cannot know (deadline exceeded, unavailable, cancelled,
// unknown, internal — unless the message says the write was refused) are "ambiguous": the
// write may or may not have been applied.
import type { Client, ServiceError } from '@grpc/grpc-js';

import type { Failure, LoadEvent, LoadFailure, LoadJob, LoadResult, StopMessage } from './load-types.ts';
import { describeError, openClient, unaryRaw } from './rpc.ts';
import { decodeRangeResponse, encodePutRequest, encodeRangeRequest, KV_PUT, KV_RANGE } from './wire.ts';

const CONCURRENCY_MAX = 4_096;
const CHANNELS_MAX = 64;
const DURATION_MS_MAX = 10 * 60_000;
const REQUESTS_MAX = 10_000_000;
const CHECKED_RESPONSES = 64;
const DRAIN_GRACE_MS = 5_000;
/** Codes whose outcome is unknown to the client: the request may have been applied. */
const AMBIGUOUS_CODES = new Set([1 /* CANCELLED */, 2 /* UNKNOWN */, 4 /* DEADLINE_EXCEEDED */, 13 /* INTERNAL */, 14 /* UNAVAILABLE */]);
/**
 * Messages that say the write was not applied, whatever the code: etcd answers "raft proposal
 * dropped" (code UNKNOWN) when its Raft refused the entry, e.g. during a leader transfer.
 */
const DEFINITE_MESSAGES = [/proposal dropped/i, /not leader/i, /no leader/i];

/** errorKind is the error's description with per-call details (timings, addresses) removed, to count alike errors together. */
function errorKind(description: string): string {
  return description.replace(/Deadline exceeded after .*/, 'Deadline exceeded').replace(/,?\s*remote_addr=\S+/, '');
}

function isAmbiguous(error: ServiceError): boolean {
  if (!AMBIGUOUS_CODES.has(error.code)) return false;
  return !DEFINITE_MESSAGES.some((pattern) => pattern.test(error.details));
}

function send(message: LoadResult | LoadEvent | LoadFailure): void {
  process.send?.(message);
}

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

function checkJob(job: LoadJob): void {
  if (!(job.concurrency >= 1 && job.concurrency <= CONCURRENCY_MAX)) throw new Error(`bad concurrency ${job.concurrency}`);
  if (!(job.channels >= 1 && job.channels <= CHANNELS_MAX)) throw new Error(`bad channels ${job.channels}`);
  if (!(job.durationMs > 0 && job.durationMs <= DURATION_MS_MAX && job.warmupMs >= 0 && job.warmupMs <= DURATION_MS_MAX)) throw new Error('bad duration');
  if (!(job.requestsMax >= 1 && job.requestsMax <= REQUESTS_MAX)) throw new Error(`bad requestsMax ${job.requestsMax}`);
  if (job.endpoints.length === 0) throw new Error('no endpoints');
  if (job.operation === 'get' && !(job.getKeys >= 1)) throw new Error('gets need preloaded keys');
}

let stopCurrent: (() => void) | undefined;

async function runJob(job: LoadJob): Promise<LoadResult> {
  checkJob(job);
  const clients: Client[] = [];
  for (let index = 0; index < job.channels; index++) {
    clients.push(openClient(job.endpoints[index % job.endpoints.length] ?? '', index));
  }
  const value = Buffer.alloc(job.valueBytes, 0x62);
  const path = job.operation === 'put' ? KV_PUT : KV_RANGE;
  const getKeys = Array.from({ length: job.operation === 'get' ? job.getKeys : 0 }, (_, index) => encodeRangeRequest(Buffer.from(`bench/${job.getPrefix}/${index}`)));
  const makeRequest = (seq: number): Buffer =>
    job.operation === 'put' ? encodePutRequest(Buffer.from(`bench/${job.keyPrefix}/${seq}`), value) : (getKeys[seq % getKeys.length] ?? Buffer.alloc(0));

  let latencies = new Float64Array(Math.min(job.requestsMax, 1 << 16));
  let completions = new Float64Array(job.recordCompletions ? 1 << 16 : 0);
  let completionCount = 0;
  const failures: Failure[] = [];
  const errors: Record<string, number> = {};
  let completed = 0;
  let ambiguous = 0;
  let failed = 0;
  let wrongAnswers = 0;
  let checked = 0;
  let sent = 0;
  let seq = 0;
  let outstanding = 0;
  let measuring = false;
  let stopped = false;
  let windowStart = 0;
  let windowEnd = 0;
  let windowStartEpoch = 0;
  let windowEndEpoch = 0;
  let cpuStart = process.cpuUsage();
  let cpuMs = 0;
  let resolveDrained: () => void = () => {};
  const drained = new Promise<void>((resolve) => (resolveDrained = resolve));
  let resolveClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));

  const closeWindow = (): void => {
    if (stopped) return;
    stopped = true;
    if (measuring) {
      windowEnd = performance.now();
      windowEndEpoch = epochMs();
      const cpu = process.cpuUsage(cpuStart);
      cpuMs = (cpu.user + cpu.system) / 1000;
    }
    measuring = false;
    resolveClosed();
    if (outstanding === 0) resolveDrained();
  };
  const openWindow = (): void => {
    if (stopped) return;
    measuring = true;
    cpuStart = process.cpuUsage();
    windowStart = performance.now();
    windowStartEpoch = epochMs();
    send({ type: 'measuring', atMs: windowStartEpoch });
  };

  const issue = (channel: number): void => {
    if (stopped) {
      outstanding -= 1;
      if (outstanding === 0) resolveDrained();
      return;
    }
    const request = makeRequest(seq++);
    const started = performance.now();
    sent += 1;
    unaryRaw(clients[channel] ?? (clients[0] as Client), path, request, job.deadlineMs, (error: ServiceError | null, response?: Buffer) => {
      const ended = performance.now();
      const latency = ended - started;
      if (error === null) {
        if (job.operation === 'get' && checked < CHECKED_RESPONSES && response !== undefined) {
          checked += 1;
          const answer = decodeRangeResponse(response);
          if (answer.kvCount !== 1 || answer.firstValue?.length !== job.valueBytes) wrongAnswers += 1;
        }
        if (job.recordCompletions) {
          if (completionCount === completions.length) {
            const grown = new Float64Array(completions.length * 2);
            grown.set(completions);
            completions = grown;
          }
          completions[completionCount++] = performance.timeOrigin + ended;
        }
        if (measuring) {
          if (completed === latencies.length) {
            const grown = new Float64Array(latencies.length * 2);
            grown.set(latencies);
            latencies = grown;
          }
          latencies[completed++] = latency;
          if (completed >= job.requestsMax) closeWindow();
        }
      } else {
        const description = errorKind(describeError(error));
        const ambiguousOutcome = isAmbiguous(error);
        if (measuring || job.recordCompletions) {
          errors[description] = (errors[description] ?? 0) + 1;
          if (ambiguousOutcome) ambiguous += 1;
          else failed += 1;
        }
        if (job.recordCompletions && failures.length < 10_000) {
          failures.push({ atMs: performance.timeOrigin + ended, latencyMs: latency, error: description, ambiguous: ambiguousOutcome });
        }
      }
      issue(channel);
    });
  };

  const windowTimers: NodeJS.Timeout[] = [];
  stopCurrent = closeWindow;
  outstanding = job.concurrency;
  for (let worker = 0; worker < job.concurrency; worker++) issue(worker % clients.length);
  if (job.warmupMs > 0) windowTimers.push(setTimeout(openWindow, job.warmupMs));
  else openWindow();
  windowTimers.push(setTimeout(closeWindow, job.warmupMs + job.durationMs));
  await closed;
  for (const timer of windowTimers) clearTimeout(timer);
  stopCurrent = undefined;
  const drainTimer = setTimeout(resolveDrained, job.deadlineMs + DRAIN_GRACE_MS);
  await drained;
  clearTimeout(drainTimer);
  const unfinished = outstanding;
  for (const client of clients) client.close();
  return {
    type: 'result',
    windowMs: windowEnd - windowStart,
    windowStartMs: windowStartEpoch,
    windowEndMs: windowEndEpoch,
    completed,
    latenciesMs: latencies.slice(0, completed),
    errors,
    ambiguous,
    failed,
    wrongAnswers,
    sent,
    completionsMs: completions.slice(0, completionCount),
    failures,
    unfinished,
    cpuMs,
  };
}

let busy = false;
process.on('message', (message: LoadJob | StopMessage) => {
  if (message.type === 'stop') {
    stopCurrent?.();
    return;
  }
  if (busy) {
    send({ type: 'failure', message: 'a job is already running' });
    return;
  }
  busy = true;
  runJob(message).then(
    (result) => {
      busy = false;
      send(result);
    },
    (error: unknown) => {
      busy = false;
      send({ type: 'failure', message: error instanceof Error ? error.message : String(error) });
    },
  );
});
process.on('disconnect', () => process.exit(0));

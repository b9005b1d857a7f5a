// Watches who leads while a cluster is moved: every POLL_MS it asks every member, old and new,
// for Maintenance.Status (the same call for etcd and stratakv) and keeps, per poll, the leader
// named by the answer with the highest term. Leader changes are the changes in that sequence;
// a leader that lost and regained leadership between two polls is not seen (the terms are kept
// too: every election and every transfer raises the term).
import { EtcdClient } from '../../src/client/index.ts';

/** POLL_MS is the interval between two polls (one poll at a time). */
export const POLL_MS = 200;
const STATUS_TIMEOUT_MS = 1_000;
const SAMPLES_MAX = 100_000;

/** LeaderSample is one poll: when (epoch ms), the leader (0n: none known) and its term. */
export interface LeaderSample {
  readonly atMs: number;
  readonly leaderId: bigint;
  readonly term: number;
  readonly answered: number;
}

/** LeaderWatchResult is what a watch saw. */
export interface LeaderWatchResult {
  readonly samples: number;
  /** leaders: the leaders in the order seen, each with when it was first seen. */
  readonly leaders: readonly { readonly id: bigint; readonly atMs: number; readonly term: number }[];
  /** changes: how often the leader seen changed between polls that named one. */
  readonly changes: number;
  readonly firstTerm: number;
  readonly lastTerm: number;
  /** withoutLeaderMs: the time covered by polls in which no member named a leader. */
  readonly withoutLeaderMs: number;
}

/** LeaderWatch polls until stopped (bounded by SAMPLES_MAX). */
export class LeaderWatch {
  readonly #client: EtcdClient;
  readonly #samples: LeaderSample[] = [];
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #polling: Promise<void> = Promise.resolve();

  constructor(endpoints: readonly string[]) {
    this.#client = new EtcdClient({ endpoints, timeoutMs: STATUS_TIMEOUT_MS });
    this.#schedule(0);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped || this.#samples.length >= SAMPLES_MAX) return;
    this.#timer = setTimeout(() => {
      this.#polling = this.#poll().finally(() => this.#schedule(POLL_MS));
    }, delayMs);
  }

  async #poll(): Promise<void> {
    const atMs = performance.timeOrigin + performance.now();
    let results;
    try {
      results = await this.#client.statusAll({ timeoutMs: STATUS_TIMEOUT_MS });
    } catch {
      this.#samples.push({ atMs, leaderId: 0n, term: 0, answered: 0 });
      return;
    }
    let best: { leaderId: bigint; term: number } = { leaderId: 0n, term: -1 };
    let answered = 0;
    for (const result of results) {
      if (!result.ok) continue;
      answered += 1;
      const { leaderId, raftTerm } = result.status;
      if (leaderId !== 0n && raftTerm > best.term) best = { leaderId, term: raftTerm };
    }
    this.#samples.push({ atMs, leaderId: best.leaderId, term: Math.max(0, best.term), answered });
  }

  /** stop ends the polls and answers what they saw. */
  async stop(): Promise<LeaderWatchResult> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#polling;
    this.#client.close();
    return summarizeLeaders(this.#samples);
  }
}

/** summarizeLeaders turns the polls into the leaders seen and the number of changes. */
export function summarizeLeaders(samples: readonly LeaderSample[]): LeaderWatchResult {
  const leaders: { id: bigint; atMs: number; term: number }[] = [];
  let withoutLeaderMs = 0;
  for (const [index, sample] of samples.entries()) {
    if (sample.leaderId === 0n) {
      const next = samples[index + 1];
      if (next !== undefined) withoutLeaderMs += next.atMs - sample.atMs;
      continue;
    }
    if (leaders[leaders.length - 1]?.id !== sample.leaderId) leaders.push({ id: sample.leaderId, atMs: sample.atMs, term: sample.term });
  }
  const terms = samples.map((sample) => sample.term).filter((term) => term > 0);
  return {
    samples: samples.length,
    leaders,
    changes: Math.max(0, leaders.length - 1),
    firstTerm: terms[0] ?? 0,
    lastTerm: terms[terms.length - 1] ?? 0,
    withoutLeaderMs,
  };
}

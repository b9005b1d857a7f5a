// The fault schedule of a chaos run: a pure function of the seed, the nemeses and the run's
// length, so every run replays from its seed as far as the schedule goes. What the schedule
// cannot know in advance (which member leads when a fault starts) is chosen at run time from
// the fault's own `pick` number among the members that fit, and recorded in the fault log.
//
// Faults come one after another with short quiet gaps; with OVERLAP_PERCENT probability the
// next fault starts while the previous one is still on ("one or more at a time"), never more
// than FAULTS_AT_ONCE_MAX at once. Every fault has an end: the schedule's last fault heals at
// least HEAL_MARGIN_MS before the run's end, so the cluster gets time to converge.
import { SeededRandom } from '../../src/util/index.ts';

/** NEMESES are the fault families a run can enable (`--nemesis`). */
export const NEMESES = ['kill', 'pause', 'partition', 'latency', 'disk', 'membership', 'migrate'] as const;
export type Nemesis = (typeof NEMESES)[number];

/** Variants of each family; see nemesis.ts for what each does. */
export const VARIANTS: Readonly<Record<Nemesis, readonly string[]>> = {
  kill: ['kill-leader', 'kill-follower', 'kill-any'],
  pause: ['pause-leader', 'pause-follower', 'pause-any'],
  partition: ['isolate-leader', 'isolate-one', 'majority-minority', 'bridge'],
  latency: ['slow-links', 'slow-member', 'lossy-links', 'cut-links'],
  disk: ['flip-wal', 'flip-snapshot', 'flip-leveldb', 'truncate-wal'],
  membership: ['transfer-leader', 'replace-member'],
  migrate: ['migrate-all'],
};

/** FaultPlan is one scheduled fault. */
export interface FaultPlan {
  /** ordinal: the fault's number in the schedule, from 1. */
  readonly ordinal: number;
  readonly atMs: number;
  readonly durationMs: number;
  readonly nemesis: Nemesis;
  readonly variant: string;
  /** pick chooses among the members (or links) that fit when the fault starts: pick mod count. */
  readonly pick: number;
  /** delayMs / percent: a latency fault's one-way delay, a lossy link's loss. */
  readonly delayMs: number;
  readonly jitterMs: number;
  readonly lossPercent: number;
}

/** ScheduleOptions are what a schedule depends on (nothing else). */
export interface ScheduleOptions {
  readonly seed: number;
  readonly nemeses: readonly Nemesis[];
  readonly runMs: number;
  /** quietStartMs: no fault before this (the workload's warm-up). */
  readonly quietStartMs?: number;
}

export const QUIET_START_MS_DEFAULT = 3_000;
export const HEAL_MARGIN_MS = 5_000;
export const FAULT_MS_MIN = 1_500;
export const FAULT_MS_MAX = 8_000;
export const GAP_MS_MIN = 1_000;
export const GAP_MS_MAX = 4_000;
export const OVERLAP_PERCENT = 25;
export const FAULTS_AT_ONCE_MAX = 2;
/** FAULTS_MAX bounds a schedule (a 60-minute run has a few hundred faults). */
export const FAULTS_MAX = 10_000;

/** parseNemeses reads `--nemesis kill,pause,…` and refuses an unknown name. */
export function parseNemeses(text: string): Nemesis[] {
  const names = text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  if (names.length === 0) throw new Error('--nemesis: no nemesis given (choose from ' + NEMESES.join(', ') + ')');
  const nemeses: Nemesis[] = [];
  for (const name of names) {
    if (!(NEMESES as readonly string[]).includes(name)) throw new Error(`--nemesis: unknown nemesis ${JSON.stringify(name)} (choose from ${NEMESES.join(', ')})`);
    if (!nemeses.includes(name as Nemesis)) nemeses.push(name as Nemesis);
  }
  return nemeses;
}

/** buildSchedule makes the schedule (see the file comment). */
export function buildSchedule(options: ScheduleOptions): FaultPlan[] {
  if (options.nemeses.length === 0) return [];
  const random = new SeededRandom(options.seed);
  const between = (low: number, high: number): number => low + random.intBelow(high - low + 1);
  const plans: FaultPlan[] = [];
  const lastEndMs = options.runMs - HEAL_MARGIN_MS;
  let atMs = options.quietStartMs ?? QUIET_START_MS_DEFAULT;
  // Ends of the faults still on at atMs, to keep FAULTS_AT_ONCE_MAX.
  let onUntil: number[] = [];
  while (plans.length < FAULTS_MAX) {
    const durationMs = between(FAULT_MS_MIN, FAULT_MS_MAX);
    if (atMs + durationMs > lastEndMs) break;
    onUntil = onUntil.filter((endMs) => endMs > atMs);
    if (onUntil.length >= FAULTS_AT_ONCE_MAX) {
      atMs = Math.min(...onUntil);
      continue;
    }
    const nemesis = options.nemeses[random.intBelow(options.nemeses.length)] ?? 'kill';
    const variants = VARIANTS[nemesis];
    const variant = variants[random.intBelow(variants.length)] ?? variants[0] ?? '';
    plans.push({
      ordinal: plans.length + 1,
      atMs,
      durationMs,
      nemesis,
      variant,
      pick: random.intBelow(1 << 30),
      delayMs: between(20, 200),
      jitterMs: between(0, 50),
      lossPercent: between(5, 40),
    });
    onUntil.push(atMs + durationMs);
    atMs = random.intBelow(100) < OVERLAP_PERCENT ? atMs + between(GAP_MS_MIN, Math.max(GAP_MS_MIN, durationMs - 1)) : atMs + durationMs + between(GAP_MS_MIN, GAP_MS_MAX);
  }
  return plans;
}

/** describePlan is one line for the run's output and the fault log. */
export function describePlan(plan: FaultPlan): string {
  const extra =
    plan.nemesis === 'latency'
      ? plan.variant === 'lossy-links'
        ? ` ${plan.lossPercent}% loss`
        : plan.variant === 'cut-links'
          ? ''
          : ` ${plan.delayMs}±${plan.jitterMs} ms`
      : '';
  return `#${plan.ordinal} at ${(plan.atMs / 1000).toFixed(1)} s for ${(plan.durationMs / 1000).toFixed(1)} s: ${plan.nemesis}/${plan.variant}${extra}`;
}

// The fault schedule is a pure function of its options: the same seed gives the same faults,
// every fault ends before the heal margin, and no more than FAULTS_AT_ONCE_MAX are on at once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { buildSchedule, FAULTS_AT_ONCE_MAX, HEAL_MARGIN_MS, NEMESES, parseNemeses, VARIANTS } from './schedule.ts';

describe('chaos schedule', () => {
  it('replays from its seed and differs between seeds', () => {
    const options = { seed: 42, nemeses: [...NEMESES], runMs: 300_000 };
    assert.deepEqual(buildSchedule(options), buildSchedule(options));
    assert.notDeepEqual(buildSchedule(options), buildSchedule({ ...options, seed: 43 }));
  });

  it('keeps every fault inside the run, heals before the margin, and bounds the faults on at once', () => {
    for (let seed = 1; seed <= 200; seed += 1) {
      const runMs = 60_000 + seed * 1_000;
      const plans = buildSchedule({ seed, nemeses: [...NEMESES], runMs });
      assert.ok(plans.length > 0, `seed ${seed}: some faults`);
      for (const plan of plans) {
        assert.ok(plan.atMs >= 3_000 && plan.atMs + plan.durationMs <= runMs - HEAL_MARGIN_MS, `seed ${seed}: fault #${plan.ordinal} within the run`);
        assert.ok(VARIANTS[plan.nemesis].includes(plan.variant), `seed ${seed}: ${plan.variant} is a ${plan.nemesis} variant`);
        const onAtOnce = plans.filter((other) => other.atMs <= plan.atMs && other.atMs + other.durationMs > plan.atMs).length;
        assert.ok(onAtOnce <= FAULTS_AT_ONCE_MAX, `seed ${seed}: ${onAtOnce} faults on at ${plan.atMs} ms`);
      }
      for (let index = 1; index < plans.length; index += 1) assert.ok((plans[index]?.atMs ?? 0) >= (plans[index - 1]?.atMs ?? 0), `seed ${seed}: in time order`);
    }
  });

  it('uses only the nemeses it is given, and overlaps some faults', () => {
    const plans = buildSchedule({ seed: 7, nemeses: ['kill', 'partition'], runMs: 600_000 });
    assert.deepEqual(new Set(plans.map((plan) => plan.nemesis)), new Set(['kill', 'partition']));
    const overlapping = plans.filter((plan, index) => index > 0 && plan.atMs < (plans[index - 1]?.atMs ?? 0) + (plans[index - 1]?.durationMs ?? 0));
    assert.ok(overlapping.length > 0, 'at least one fault starts while another is on');
  });

  it('refuses an unknown nemesis with the names it knows', () => {
    assert.deepEqual(parseNemeses('kill, pause,kill'), ['kill', 'pause']);
    assert.throws(() => parseNemeses('kill,flood'), /unknown nemesis "flood" \(choose from kill, pause, partition, latency, disk, membership, migrate\)/);
    assert.throws(() => parseNemeses(' , '), /no nemesis given/);
  });
});
